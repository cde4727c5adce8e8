import contextlib
import json
import subprocess
import sys

import pytest
import torch

from inceptionism.config import DreamConfig
from inceptionism.engine import Dreamer, build_objective
from inceptionism.errors import ConfigError
from inceptionism.memory import (
    MAX_TILE,
    MIN_TILE,
    RunPlan,
    is_out_of_memory,
    measure_bytes_per_pixel,
    parse_bytes,
    plan_tile,
)
from inceptionism.models import load_model
from inceptionism.models.cpu import PACKED_SHAPES
from inceptionism.objectives import layer


@pytest.mark.parametrize(
    ("text", "value"), [("2GB", 2e9), ("512MiB", 512 * 2**20), ("1.5g", 1.5e9), ("300M", 3e8), (10**9, 1e9)]
)
def test_parse_bytes(text, value):
    assert parse_bytes(text) == int(value)


@pytest.mark.parametrize("text", ["lots", "2XB", "-1GB", "1KB"])
def test_parse_bytes_rejects_nonsense_and_tiny_caps(text):
    with pytest.raises(ConfigError, match="--max-memory"):
        parse_bytes(text)


def test_bytes_per_pixel_is_measured_and_grows_with_depth():
    model = load_model()
    costs = [
        measure_bytes_per_pixel(model.extractor([n]), layer(n), torch.device("cpu"), contextlib.nullcontext())
        for n in ("block3", "block10", "head")
    ]
    assert 100 < costs[0] < costs[1] < costs[2] < 10_000


def test_plan_tile_fits_the_budget():
    cpu = torch.device("cpu")
    small = plan_tile(4000, 6000, 1000.0, cpu, max_memory=100 * 2**20)
    assert small.tile_size % 32 == 0 and MIN_TILE <= small.tile_size < 256
    assert small.tile_size**2 * 1000.0 * 2 <= 100 * 2**20
    assert plan_tile(4000, 6000, 1000.0, cpu, max_memory=None).tile_size <= MAX_TILE
    assert plan_tile(100, 150, 1000.0, cpu, max_memory=None).tile_size == 150  # never more than the image


def test_out_of_memory_is_recognised():
    assert is_out_of_memory(RuntimeError("DefaultCPUAllocator: can't allocate memory: you tried to allocate"))
    assert is_out_of_memory(torch.OutOfMemoryError("CUDA out of memory"))
    assert not is_out_of_memory(RuntimeError("shape mismatch"))


CHILD = r"""
import json, sys, torch
from inceptionism.config import DreamConfig
from inceptionism.engine import Dreamer, build_objective
from inceptionism.models import load_model

def rss(field):
    with open("/proc/self/status") as f:
        return next(int(l.split()[1]) * 1024 for l in f if l.startswith(field))

cap = sys.argv[1] if sys.argv[1] != "none" else None
side = int(sys.argv[2])
cfg = DreamConfig(octaves=2, steps=3, max_memory=cap).validate()  # steps reuse freed memory
model = load_model()
d = Dreamer(model, build_objective(cfg, model), cfg, torch.device("cpu"))
image = torch.rand(1, 3, side, side)
tile = d.tile_size(side, side)
with open("/proc/self/clear_refs", "w") as f:
    f.write("5")  # VmHWM from here: loading the model may have peaked higher than the run will
before = rss("VmRSS:")
out = d.run(image)
print(json.dumps({"tile": tile, "grown": rss("VmHWM:") - before, "shape": list(out.shape)}))
"""


def _child(cap, side=1024):
    args = [sys.executable, "-c", CHILD, cap, str(side)]
    r = subprocess.run(args, capture_output=True, text=True, timeout=600, check=True)
    return json.loads(r.stdout.strip().splitlines()[-1])


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")
def test_a_small_memory_cap_is_respected_and_the_run_completes():
    cap = 256 * 2**20
    capped = _child(str(cap))
    free = _child("none")
    assert capped["shape"] == free["shape"] == [1, 3, 1024, 1024]
    assert capped["tile"] < free["tile"]
    assert free["grown"] > cap  # without the cap the step needs more than the cap: the test can fail
    assert capped["grown"] < cap


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")
def test_the_cap_counts_the_image_buffers_of_a_large_image():
    """At 6 MP each fp32 copy of the image is 75 MB: the dream, its gradient and the blend weights take a good
    part of a 640 MB cap before any tile (a run that held the octave's base, the detail and rolled copies besides,
    and planned its tiles as if the whole cap were theirs, grew by over 1 GB here)."""
    cap = 640 * 2**20
    capped = _child(str(cap), side=2500)
    assert capped["shape"] == [1, 3, 2500, 2500]
    assert capped["grown"] < cap


def test_gpus_batch_tiles_that_fit_and_cpus_do_not(monkeypatch):
    import inceptionism.memory as memory

    monkeypatch.setattr(memory, "free_memory", lambda device: 64 * 2**30)
    assert plan_tile(4000, 6000, 1000.0, torch.device("cpu"), max_memory=None).batch == 1
    roomy = plan_tile(4000, 6000, 1000.0, torch.device("cuda"), max_memory=None)
    assert roomy.tile_size == MAX_TILE and roomy.batch == memory.MAX_BATCH
    tight = plan_tile(4000, 6000, 1000.0, torch.device("cuda"), max_memory=3 * MAX_TILE**2 * 1000 * 2)
    assert tight.batch == 3


def test_reserved_memory_leaves_less_for_tiles_and_a_cap_too_small_says_what_it_needs():
    cpu = torch.device("cpu")
    cap = 400 * 2**20
    free = plan_tile(4000, 6000, 1000.0, cpu, max_memory=cap)
    less = plan_tile(4000, 6000, 1000.0, cpu, max_memory=cap, reserved=300 * 2**20)
    assert less.tile_size < free.tile_size and less.reserved == 300 * 2**20
    assert less.tile_size**2 * 1000.0 * 2 <= cap - less.reserved
    with pytest.raises(ConfigError, match=r"--max-memory 400MiB is too small .* allow at least 408MiB"):
        plan_tile(4000, 6000, 1000.0, cpu, max_memory=cap, reserved=cap)
    assert plan_tile(4000, 6000, 1000.0, cpu, max_memory=None, free=2**30, reserved=2**30).tile_size == MIN_TILE


def test_an_image_that_fits_one_tile_is_not_tiled():
    cpu = torch.device("cpu")
    plan = plan_tile(750, 1333, 1000.0, cpu, max_memory=None)  # 1.0 MP ≤ 1024²: one tile, though wider
    assert plan.tile_size == 1333
    assert plan_tile(750, 1333, 1000.0, cpu, max_memory=300 * 2**20).tile_size < 750


def _plan(**kw) -> RunPlan:
    figures = {"device": torch.device("cpu"), "tile_size_fixed": None, "max_memory": None, "free": 2**34}
    figures.update(input_pixels=0, bytes_per_pixel=lambda: 1000.0)
    return RunPlan(**{**figures, **kw})


def test_a_run_plan_caps_the_tile_after_out_of_memory_and_measures_once():
    measured: list[int] = []
    plan = _plan(bytes_per_pixel=lambda: measured.append(1) or 1000.0)
    assert plan.tile_size(2000, 3000) == MAX_TILE and plan.batch == 1
    assert plan.shrink(MAX_TILE, 3000) == 512 and plan.tile_cap == 512
    assert plan.tile_size(2000, 3000) == 512  # no larger tiles for the rest of the run
    assert plan.shrink(96, 3000) == MIN_TILE and plan.shrink(MIN_TILE, 3000) is None
    assert measured == [1]
    fixed = _plan(tile_size_fixed=300)
    assert fixed.tile_size(2000, 3000) == 300 and fixed.tile_plan(2000, 3000) is None
    assert fixed.shrink(300, 3000) == 128 and fixed.tile_size(2000, 3000) == 128


def test_a_run_plan_keeps_fewer_packed_shapes_where_memory_is_short_and_reserves_them():
    roomy = _plan(packed_bytes_per_shape=2**20)
    roomy.tile_size(2000, 3000)
    assert roomy.packed_shapes == PACKED_SHAPES
    short = _plan(packed_bytes_per_shape=2**28, max_memory=2**30)
    bare = _plan(max_memory=2**30)
    assert short.tile_size(2000, 3000) < bare.tile_size(2000, 3000)  # the packs' bytes are reserved
    assert short.packed_shapes == 1


def test_a_run_leaves_the_cached_model_and_the_dreamer_as_they_were(monkeypatch):
    """A run's tight plan keeps one packed shape per convolution while it lasts; the shared extractor keeps no
    trace of it, and the Dreamer holds no run state."""
    import inceptionism.memory as memory

    model = load_model()
    cfg = DreamConfig(layers=("block5",), octaves=2, steps=2, precision="fp32").validate()
    dreamer = Dreamer(model, build_objective(cfg, model), cfg, torch.device("cpu"))
    backend = dreamer.extractor.backend
    assert backend is not None
    convs = [c for c in backend.program.convs if c.fixed is not None]
    monkeypatch.setattr(memory, "PACK_SHARE", 1e-9)  # memory for one shape only
    kept: list[int] = []
    fields = set(vars(dreamer))
    dreamer.run(torch.rand(1, 3, 64, 96), callback=lambda p: kept.append(max(len(c.forward_weights) for c in convs)))
    assert set(kept) == {1}
    assert set(vars(dreamer)) == fields
    for side in (40, 48, 56, 64, 72):  # outside the run: the default number of shapes again
        x = torch.rand(1, 3, side, side, requires_grad=True)
        dreamer.extractor(x)["block5"].mean().backward()
    assert max(len(c.forward_weights) for c in convs) == PACKED_SHAPES
