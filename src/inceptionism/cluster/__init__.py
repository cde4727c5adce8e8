"""Jobs on a Ray cluster: batches, videos and zoom sweeps over many workers, surviving lost ones.

``--cluster ADDRESS`` (:mod:`.address`) starts or joins the cluster; :mod:`.workers` holds the actor that loads
the model once and dreams what it is sent; :mod:`.batch`, :mod:`.video` and :mod:`.zoom` split each job into
tasks. Ray (the ``[cluster]`` extra) is imported only when a job runs on a cluster: importing this package does
not import it.
"""

from __future__ import annotations

from inceptionism.cluster.address import ClusterAddress, parse_address

__all__ = ["ClusterAddress", "parse_address"]
