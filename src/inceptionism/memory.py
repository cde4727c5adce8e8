"""Memory-aware planning: choose the tile size from the memory available and the model's measured cost.

The cost is measured, not guessed: one step on a small probe tile records the bytes autograd saves for the
backward pass (``saved_tensors_hooks``), or the most the CPU backend's program holds at once, giving bytes per
input pixel for this model, these layers and this precision. The tile is the largest square whose cost fits
the budget (a share of the free memory, or ``--max-memory``). If a step still runs out of memory, the engine
halves the tile and retries. A run's figures live in its own :class:`RunPlan`.
"""

from __future__ import annotations

import math
import os
import re
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import nn

from inceptionism.errors import ConfigError
from inceptionism.models.cpu import PACKED_SHAPES, held_memory
from inceptionism.models.cpu import is_out_of_memory as is_out_of_memory
from inceptionism.objectives import Context

_UNITS = {"": 1, "B": 1, "K": 1e3, "KB": 1e3, "M": 1e6, "MB": 1e6, "G": 1e9, "GB": 1e9, "T": 1e12, "TB": 1e12}
_UNITS.update({"KIB": 2**10, "MIB": 2**20, "GIB": 2**30, "TIB": 2**40})

MIN_TILE = 64
MAX_TILE = 1024  # larger tiles gain nothing in speed on CPU or GPU, and cost memory
PROBE = 128
# Safety factor on the bytes autograd saves (gradients, the tile batch, allocator slack); room for networks
# other than the one it was measured on (docs/performance.md, "Notes moved from the code").
OVERHEAD = 2.0
# The CPU backend's program saves less than autograd, so the process grows by more per byte it holds (allocator
# slack across tile shapes, oneDNN's scratch memory): its peak counts double, so that OVERHEAD holds for both.
PROGRAM_SLACK = 2.0
MAX_BATCH = 8
FREE_SHARE = 0.5  # share of free memory a run takes by default
# Image-sized buffers a run holds at once, per pixel of the octave: the dream, its gradient, the tiles' blend
# weights (one channel), the next dream, and the allocator's slack between them (fp32 RGB: 12 bytes an image).
IMAGE_BYTES_PER_PIXEL = 5 * 12
INPUT_BYTES_PER_PIXEL = 12  # and the input, per pixel of the full size: the fp32 copy a dream reads from
PACK_SHARE = 0.25  # share of the budget the reordered weights may take before fewer shapes are kept


def parse_bytes(text: str | int) -> int:
    """``"2GB"``, ``"512MiB"``, ``"1.5g"``, ``1000000`` → bytes."""
    if isinstance(text, int):
        return text
    m = re.fullmatch(r"\s*([0-9]*\.?[0-9]+)\s*([a-zA-Z]*)\s*", str(text))
    unit = m.group(2).upper() if m else ""
    if not m or unit not in _UNITS:
        raise ConfigError(f"--max-memory must be a size like 2GB or 512MiB, got {text!r}")
    value = int(float(m.group(1)) * _UNITS[unit])
    if value < 64 * 2**20:
        raise ConfigError(f"--max-memory must be at least 64MiB, got {text!r}")
    return value


def free_memory(device: torch.device) -> int:
    """Bytes free now: the GPU's free memory, or the system's available RAM (cgroup limit respected)."""
    if device.type == "cuda":
        free, _total = torch.cuda.mem_get_info(device)
        return int(free)
    available = _meminfo_available()
    limit = _cgroup_limit()
    return min(available, limit) if limit else available


def _meminfo_available() -> int:
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    try:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        return 4 * 2**30


def _cgroup_limit() -> int | None:
    try:
        with open("/sys/fs/cgroup/memory.max") as f:
            text = f.read().strip()
        with open("/sys/fs/cgroup/memory.current") as f:
            used = int(f.read().strip())
        return int(text) - used if text != "max" else None
    except (OSError, ValueError):
        return None


@dataclass(frozen=True)
class TilePlan:
    """The tile size chosen, with the figures behind it."""

    tile_size: int
    budget: int
    bytes_per_pixel: float
    batch: int = 1  # tiles per forward pass
    reserved: int = 0  # bytes of the budget taken before any tile

    @property
    def tight(self) -> bool:
        """Whether a step takes over half the budget: memory freed between octaves is then handed back."""
        step = self.reserved + self.tile_size**2 * self.batch * self.bytes_per_pixel * OVERHEAD
        return step > self.budget / 2


def measure_bytes_per_pixel(extractor: nn.Module, score: object, device: torch.device, precision_ctx: object) -> float:
    """Bytes per input pixel that one step of ``extractor`` holds (probe tile of 128²): the tensors autograd
    saves for the backward pass, or the most the CPU backend's program holds at once (it saves less, so its
    working tensors count too)."""
    saved = 0

    def pack(t: torch.Tensor) -> torch.Tensor:
        nonlocal saved
        saved += t.numel() * t.element_size()
        return t

    x = torch.rand(1, 3, PROBE, PROBE, device=device, requires_grad=True)
    hooks = torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t)  # type: ignore[attr-defined]
    with hooks, held_memory() as program, precision_ctx:  # type: ignore[attr-defined]
        score(Context(extractor(x), x, x.detach())).sum().backward()  # type: ignore[operator]
    return max(saved + PROGRAM_SLACK * program.peak, 1) / PROBE**2


def memory_budget(device: torch.device, max_memory: int | None, free: int | None = None) -> int:
    """Bytes a run may add: a share of the free memory, or ``max_memory`` if that is less."""
    budget = int((free if free is not None else free_memory(device)) * FREE_SHARE)
    return min(budget, max_memory) if max_memory is not None else budget


def plan_tile(
    height: int,
    width: int,
    bytes_per_pixel: float,
    device: torch.device,
    max_memory: int | None,
    free: int | None = None,
    reserved: int = 0,
) -> TilePlan:
    """Largest tile (a multiple of 32, 64…1024 px, at most the image) whose step fits the memory budget.

    ``reserved`` bytes of the budget are taken already (the image's own buffers, reordered weights). An image
    with no more pixels than such a tile is not tiled at all, even if one side is longer. A ``max_memory`` that
    leaves no room for the smallest tile is a :class:`ConfigError`; without one, the smallest tile is tried
    (and a step that runs out of memory is retried smaller).
    """
    budget = memory_budget(device, max_memory, free)
    room = budget - reserved
    smallest = MIN_TILE * MIN_TILE * bytes_per_pixel * OVERHEAD
    if max_memory is not None and room < smallest:
        need = (reserved + smallest) / 2**20
        raise ConfigError(
            f"--max-memory {max_memory / 2**20:.0f}MiB is too small for a {width}×{height} dream with this model: "
            f"the image's buffers and the network's weights take {reserved / 2**20:.0f}MiB before any tile; "
            f"allow at least {math.ceil(need)}MiB"
        )
    side = int(math.sqrt(max(room, 0) / (bytes_per_pixel * OVERHEAD)))
    side = max(MIN_TILE, min(MAX_TILE, side // 32 * 32))
    if height * width <= min(side, MAX_TILE) ** 2:  # the whole image fits in one tile's memory: no tiling
        side = max(height, width)
    side = min(side, max(height, width))
    # A GPU runs several tiles at once when they fit; on CPUs a batch gains nothing, so one tile at a time.
    batch = 1
    if device.type != "cpu":
        batch = int(max(1, min(MAX_BATCH, room // (side * side * bytes_per_pixel * OVERHEAD))))
    return TilePlan(side, budget, bytes_per_pixel, batch, reserved)


@dataclass
class RunPlan:
    """One run's memory plan: the figures it starts from and what the run has learnt since (a step that ran out
    of memory caps the tile). Made per run and changed only by it; the model and its extractors are not.

    ``tile_size``: the config's fixed tile, or None to plan it from ``bytes_per_pixel`` (called once, on first
    need). ``packed_bytes_per_shape``: the CPU backend's reordered weights per input shape (None: no backend).
    """

    device: torch.device
    tile_size_fixed: int | None
    max_memory: int | None
    free: int  # bytes free when the run started: memory the run keeps for reuse later is its own anyway
    input_pixels: int  # the run's input, an fp32 copy held to the end
    bytes_per_pixel: Callable[[], float]
    packed_bytes_per_shape: int | None = None
    batch: int = 1  # tiles per forward pass
    tile_cap: int | None = None  # set when a step ran out of memory: no larger tiles afterwards
    packed_shapes: int = PACKED_SHAPES  # input shapes whose reordered weights each convolution keeps
    _cost: float | None = None

    def tile_plan(self, height: int, width: int) -> TilePlan | None:
        """The plan for a ``height × width`` octave; None where the tile size is fixed."""
        if self.tile_size_fixed is not None:
            return None
        if self._cost is None:
            self._cost = self.bytes_per_pixel()
        reserved = IMAGE_BYTES_PER_PIXEL * height * width + INPUT_BYTES_PER_PIXEL * self.input_pixels
        per_shape = self.packed_bytes_per_shape
        if per_shape is not None:  # reordered weights: one set per input shape, the planned tile's at least
            budget = memory_budget(self.device, self.max_memory, free=self.free)
            self.packed_shapes = max(1, min(PACKED_SHAPES, int(PACK_SHARE * budget // max(per_shape, 1))))
            reserved += self.packed_shapes * per_shape
        return plan_tile(height, width, self._cost, self.device, self.max_memory, free=self.free, reserved=reserved)

    def tile_size(self, height: int, width: int) -> int:
        """The tile for a ``height × width`` octave (and :attr:`batch` for it): the fixed one or the largest that
        fits, never above :attr:`tile_cap`."""
        plan = self.tile_plan(height, width)
        size = self.tile_size_fixed if plan is None else plan.tile_size
        assert size is not None
        if plan is not None:
            self.batch = plan.batch if self.tile_cap is None else 1
        return min(size, self.tile_cap or size)

    def shrink(self, tile: int, side: int) -> int | None:
        """After a step with ``tile`` (on an image whose longer ``side`` it is capped to) ran out of memory: the
        tile to retry with, now the cap (one tile per pass); None where it is the smallest already."""
        if tile <= MIN_TILE:
            return None
        self.batch = 1
        self.tile_cap = max(MIN_TILE, min(tile, side) // 2 // 32 * 32)
        return self.tile_cap
