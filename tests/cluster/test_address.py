"""--cluster addresses and how a cluster's cores and GPUs become workers."""

from __future__ import annotations

import sys

import pytest

from inceptionism.cli import main
from inceptionism.cluster.address import (
    ClusterAddress,
    WorkerPlan,
    cluster_plan,
    local_plan,
    parse_address,
    require_ray,
)
from inceptionism.errors import ConfigError, InceptionismError


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("local", ClusterAddress("local")),
        ("local:3", ClusterAddress("local", 3)),
        ("local:2x1", ClusterAddress("local", 2, threads=1)),
        ("auto", ClusterAddress("auto", url="auto")),
        ("ray://head.example:10001", ClusterAddress("remote", url="ray://head.example:10001")),
    ],
)
def test_addresses(text, expected):
    assert parse_address(text) == expected
    assert str(parse_address(text)) == text


@pytest.mark.parametrize(
    "text", ["local:0", "local:x", "local:2x0", "local:x2", "remote", "http://head:8265", "ray://head", ""]
)
def test_bad_addresses_say_what_is_accepted(text):
    with pytest.raises(ConfigError, match=r"local, local:N, local:NxT, auto|at least 1 (worker|thread)"):
        parse_address(text)


def test_local_workers_share_the_cores():
    assert local_plan(2, cores=2) == [WorkerPlan(1), WorkerPlan(1)]
    assert local_plan(1, cores=2) == [WorkerPlan(2)]
    assert local_plan(None, cores=4) == [WorkerPlan(1)] * 4
    assert local_plan(3, cores=2) == [WorkerPlan(1)] * 3  # more workers than cores: one thread each
    assert local_plan(1, cores=2, threads=1) == [WorkerPlan(1)]
    assert local_plan(None, cores=8, gpus=2) == [WorkerPlan(4, 1), WorkerPlan(4, 1)]


def test_a_joined_cluster_gets_a_worker_per_gpu_else_per_core():
    nodes = [
        {"Alive": True, "NodeID": "a", "Resources": {"CPU": 16.0, "GPU": 4.0}},
        {"Alive": True, "NodeID": "b", "Resources": {"CPU": 2.0}},
        {"Alive": False, "NodeID": "c", "Resources": {"CPU": 64.0}},
    ]
    assert cluster_plan(nodes) == [WorkerPlan(4, 1, "a")] * 4 + [WorkerPlan(1, 0, "b")] * 2


def test_without_ray_one_line_names_the_extra(monkeypatch, capsys, tmp_path):
    monkeypatch.setitem(sys.modules, "ray", None)
    with pytest.raises(InceptionismError, match=r"pip install 'inceptionism\[cluster\]'"):
        require_ray()
    (tmp_path / "a.png").write_bytes(b"")
    assert main(["dream", str(tmp_path / "*.png"), "-o", str(tmp_path / "out"), "--cluster", "local:2"]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "inceptionism[cluster]" in err


def test_cluster_usage_errors_are_one_line(capsys, tmp_path):
    image = tmp_path / "a.png"
    image.write_bytes(b"")
    assert main(["dream", str(image), "--cluster", "local:2"]) == 2
    assert "--cluster is for a batch" in capsys.readouterr().err
    assert main(["dream", str(tmp_path), "-o", str(tmp_path / "o"), "--cluster", "mars"]) == 2
    assert "--cluster must be local" in capsys.readouterr().err
    assert main(["video", str(image), "-o", str(tmp_path / "v.mp4"), "--segment", "4"]) == 2
    assert "use them with --cluster" in capsys.readouterr().err


def test_without_cluster_ray_is_not_imported(tmp_path):
    import subprocess

    code = (
        "import sys; from inceptionism.cli import build_parser; build_parser(); "
        "import inceptionism.cluster.video, inceptionism.cluster.batch; sys.exit('ray' in sys.modules)"
    )
    assert subprocess.run([sys.executable, "-c", code], check=False).returncode == 0
