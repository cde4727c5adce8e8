"""Where a job runs: ``--cluster ADDRESS`` parsed, and a Ray cluster started or joined for the job's length.

``local[:N]`` starts a Ray cluster of N workers on this machine (default: one per core), bound to 127.0.0.1 and
shut down with the job, the cores shared out between the workers (``local:NxT``: N workers of T threads each);
``auto`` joins the cluster named by ``RAY_ADDRESS`` (or the one ``ray start`` left running here);
``ray://host:port`` joins a remote cluster through Ray Client. Ray is imported only here and only when a job asks
for a cluster; Ray's usage statistics are off unless the user turned them on.
"""

from __future__ import annotations

import contextlib
import os
import re
from collections.abc import Iterator
from dataclasses import dataclass
from types import ModuleType
from typing import Any

from inceptionism.errors import ConfigError, InceptionismError

INSTALL_HINT = "pip install 'inceptionism[cluster]'"
_LOCAL = re.compile(r"^local(?::(\d+)(?:x(\d+))?)?$")


@dataclass(frozen=True)
class ClusterAddress:
    """A parsed ``--cluster`` value: ``kind`` is ``"local"``, ``"auto"`` or ``"remote"``; ``workers`` the local
    cluster's size (None: one per core) and ``threads`` each worker's (None: the cores shared out); ``url`` what
    :func:`ray.init` is given (None for a local cluster)."""

    kind: str
    workers: int | None = None
    url: str | None = None
    threads: int | None = None

    def __str__(self) -> str:
        if self.kind == "local":
            threads = "" if self.threads is None else f"x{self.threads}"
            return "local" if self.workers is None else f"local:{self.workers}{threads}"
        return self.url or self.kind


def parse_address(text: str) -> ClusterAddress:
    """``local``, ``local:N``, ``auto`` or ``ray://host:port`` → :class:`ClusterAddress`; :class:`ConfigError`
    for anything else."""
    value = text.strip()
    local = _LOCAL.match(value)
    if local:
        workers = int(local.group(1)) if local.group(1) else None
        threads = int(local.group(2)) if local.group(2) else None
        if workers is not None and workers < 1:
            raise ConfigError(f"--cluster local:N needs at least 1 worker, got {value!r}")
        if threads is not None and threads < 1:
            raise ConfigError(f"--cluster local:NxT needs at least 1 thread per worker, got {value!r}")
        return ClusterAddress("local", workers, threads=threads)
    if value == "auto":
        return ClusterAddress("auto", url="auto")
    if re.fullmatch(r"ray://[^\s/:]+:\d+/?", value):
        return ClusterAddress("remote", url=value.rstrip("/"))
    raise ConfigError(
        f"--cluster must be local, local:N, local:NxT, auto (the cluster in RAY_ADDRESS) or ray://HOST:PORT; "
        f"got {text!r}"
    )


def require_ray() -> ModuleType:
    """The ``ray`` module; :class:`InceptionismError` naming the extra to install when it is missing."""
    try:
        import ray
    except ImportError:
        raise InceptionismError(f"--cluster needs Ray, which is not installed: {INSTALL_HINT}") from None
    return ray


@dataclass(frozen=True)
class WorkerPlan:
    """One worker to start: torch threads, GPUs it holds (0 or 1), and the Ray node it is meant for (None:
    anywhere)."""

    threads: int
    gpus: int = 0
    node: str | None = None


def local_plan(
    workers: int | None, cores: int | None = None, gpus: int = 0, threads: int | None = None
) -> list[WorkerPlan]:
    """Workers of a local cluster: ``workers`` of them (None: one per GPU if there are any, else one per core),
    with ``threads`` each (None: the cores shared out between them so their torch threads do not fight, at
    least one each); the first ``gpus`` workers hold a GPU each."""
    cores = cores or os.cpu_count() or 1
    count = workers or gpus or cores
    each = threads or max(1, cores // count)
    return [WorkerPlan(threads=each, gpus=int(i < gpus)) for i in range(count)]


def cluster_plan(nodes: list[dict[str, Any]]) -> list[WorkerPlan]:
    """Workers of a joined cluster, from :func:`ray.nodes`: one per GPU (the node's cores shared between them),
    else one single-thread worker per core of each live node."""
    plan = []
    for node in nodes:
        if not node.get("Alive", False):
            continue
        resources = node.get("Resources", {})
        cpus, gpus = int(resources.get("CPU", 0)), int(resources.get("GPU", 0))
        if gpus:
            plan += [WorkerPlan(max(1, cpus // gpus), 1, node["NodeID"]) for _ in range(gpus)]
        else:
            plan += [WorkerPlan(1, 0, node["NodeID"]) for _ in range(cpus)]
    return plan


@contextlib.contextmanager
def connect(address: ClusterAddress, *, temp_dir: str | None = None) -> Iterator[list[WorkerPlan]]:
    """Start or join the cluster for the ``with`` block; yields the workers to start. A local cluster is shut
    down at the end (its processes also die with this one); a joined cluster is only disconnected from.

    ``temp_dir``: Ray's session folder for a local cluster (default Ray's own, ``/tmp/ray``).
    """
    ray = require_ray()
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    options: dict[str, Any] = {"include_dashboard": False, "log_to_driver": True, "configure_logging": False}
    plan: list[WorkerPlan]
    if address.kind == "local":
        import torch

        gpus = torch.cuda.device_count()
        plan = local_plan(address.workers, gpus=gpus, threads=address.threads)
        options.update(num_cpus=sum(w.threads for w in plan), num_gpus=gpus, _node_ip_address="127.0.0.1")
        if temp_dir is not None:
            options["_temp_dir"] = temp_dir
    if ray.is_initialized():
        raise InceptionismError("Ray is already initialised in this process; run the job in a fresh process")
    try:
        ray.init(address=address.url, **options)
    except Exception as exc:  # Ray raises ConnectionError, RuntimeError, ValueError… for an unreachable cluster
        raise InceptionismError(f"cannot start or reach the Ray cluster {address}: {exc}".splitlines()[0]) from exc
    try:
        if address.kind != "local":
            plan = cluster_plan(ray.nodes())
            if not plan:
                raise InceptionismError(f"the Ray cluster {address} has no CPUs or GPUs to run workers on")
        yield plan
    finally:
        ray.shutdown()


__all__ = [
    "INSTALL_HINT",
    "ClusterAddress",
    "WorkerPlan",
    "cluster_plan",
    "connect",
    "local_plan",
    "parse_address",
    "require_ray",
]
