import resource
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from inceptionism.models.cpu.allocator import _glibc, release_free_memory, reuse_freed_memory

MB64 = 64 * 2**20 // 4  # float32 elements in 64 MiB: above glibc's largest mmap threshold


def _rss() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * resource.getpagesize()


REUSE = """
import resource
import torch
from inceptionism.models.cpu.allocator import reuse_freed_memory

MB64 = 64 * 2**20 // 4

def _cycles(n):
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    for _ in range(n):
        torch.empty(MB64).fill_(1.0)
    return (resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before) / n

def _rss():
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * resource.getpagesize()

pages = 64 * 2**20 // resource.getpagesize()
with reuse_freed_memory():
    _cycles(12)  # the heap grows a few times (small allocations split freed blocks; seen up to 7)...
    reused = _cycles(8) < pages * 0.05  # ...then every cycle reuses pages already faulted in
    held = _rss()
print(reused, _rss() < held - 32 * 2**20)  # handed back to the system when the run ends
"""


@pytest.mark.skipif(_glibc() is None, reason="glibc only")
def test_freed_memory_is_reused_within_a_run_and_returned_after():
    """In a fresh process, so that other tests' heaps do not count: the heap settles after a few cycles (small
    allocations in between split the freed blocks; 4 cycles were not always enough, 7 were seen)."""
    root = Path(__file__).parent.parent
    r = subprocess.run([sys.executable, "-c", REUSE], capture_output=True, text=True, timeout=120, cwd=root)
    assert r.returncode == 0, r.stderr
    assert r.stdout.split() == ["True", "True"]


@pytest.mark.skipif(_glibc() is None, reason="glibc only")
def test_free_memory_can_be_handed_back_within_a_run():
    with reuse_freed_memory():
        blocks = [torch.empty(MB64 // 4).fill_(1.0) for _ in range(8)]  # 128 MiB in 16 MiB blocks
        keep = torch.empty(1).fill_(1.0)  # on top of them: the heap cannot shrink from its end
        del blocks
        held = _rss()
        release_free_memory()  # between octaves: pages in the heap's middle go back too
        assert _rss() < held - 64 * 2**20
        del keep


class _FakeLibc:
    def __init__(self) -> None:
        self.calls: list[tuple[str, int, int]] = []

    def mallopt(self, param: int, value: int) -> int:
        self.calls.append(("mallopt", param, value))
        return 1

    def malloc_trim(self, pad: int) -> int:
        self.calls.append(("malloc_trim", pad, 0))
        return 1


def test_settings_are_set_once_and_restored_after_the_outermost_run(monkeypatch):
    from inceptionism.models.cpu import allocator

    libc = _FakeLibc()
    monkeypatch.setattr(allocator, "_glibc", lambda: libc)
    with reuse_freed_memory():
        with reuse_freed_memory():
            pass
        assert libc.calls == [
            ("mallopt", allocator.M_MMAP_MAX, 0),
            ("mallopt", allocator.M_TRIM_THRESHOLD, allocator.KEEP),
        ]
    restored = [("mallopt", p, v) for p, v in allocator.AFTER.items()] + [("malloc_trim", 0, 0)]
    assert libc.calls[2:] == restored
    libc.calls.clear()
    with reuse_freed_memory(enabled=False):
        pass
    assert libc.calls == []


def test_not_glibc_is_a_no_op(monkeypatch):
    monkeypatch.setattr(sys, "platform", "darwin")
    assert _glibc() is None


def test_a_cpu_dream_runs_inside_it(monkeypatch):
    from inceptionism.config import DreamConfig
    from inceptionism.engine import Dreamer, build_objective
    from inceptionism.models import load_model
    from inceptionism.models.cpu import allocator

    libc = _FakeLibc()
    monkeypatch.setattr(allocator, "_glibc", lambda: libc)
    model = load_model("efficientnet-lite0")
    cfg = DreamConfig(layers=("block3",), octaves=1, steps=1).validate()
    Dreamer(model, build_objective(cfg, model), cfg, torch.device("cpu")).run(torch.rand(1, 3, 48, 64))
    assert libc.calls[0] == ("mallopt", allocator.M_MMAP_MAX, 0)
    assert libc.calls[-1] == ("malloc_trim", 0, 0)
