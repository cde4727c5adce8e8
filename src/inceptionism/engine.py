"""The dream itself: an octave loop around a gradient-ascent step. The one obvious place.

Data flows one way: RGB (1, 3, H, W) in [0, 1] → octave pyramid, smallest first → at each octave, steps of
(random roll → tiled gradient of the objective → roll back → normalise → step → clamp) → the detail the steps
added is carried up to the next octave → the full-size dream. The engine never knows which model it drives.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass

import torch

from inceptionism.allocator import release_free_memory, reuse_freed_memory
from inceptionism.config import DreamConfig, parse_layers
from inceptionism.devices import autocast, compute_dtype, pick_precision
from inceptionism.errors import InceptionismError
from inceptionism.memory import (
    IMAGE_BYTES_PER_PIXEL,
    INPUT_BYTES_PER_PIXEL,
    PACK_SHARE,
    TilePlan,
    free_memory,
    is_out_of_memory,
    measure_bytes_per_pixel,
    memory_budget,
    parse_bytes,
    plan_tile,
)
from inceptionism.models import DreamModel, FeatureExtractor
from inceptionism.models.backprop import PACKED_SHAPES
from inceptionism.objectives import Objective, layer
from inceptionism.tiling import tiled_gradient
from inceptionism.transforms import ascend, auto_octaves, octave_sizes, random_shift, resize


@dataclass(frozen=True)
class Progress:
    """Where a run is, passed to the callback after every step.

    ``image`` is set after the last step of each octave: the current dream, (1, 3, h, w) in [0, 1] on the CPU.
    """

    octave: int  # 1-based
    octaves: int
    step: int  # 1-based, within the octave
    steps: int
    done: int  # steps done in all
    total: int
    score: float
    size: tuple[int, int]  # (h, w) of this octave
    tile_size: int
    elapsed: float
    image: torch.Tensor | None = None


Callback = Callable[[Progress], None]

# Tile starts are multiples of this, the largest stride of common CNNs, so every tile samples the image on the
# network's own grid and tiled gradients match untiled ones (see tiling.tile_starts).
TILE_ALIGN = 32


def build_objective(config: DreamConfig, model: DreamModel) -> Objective:
    """The config's layers (or the model's defaults) as a weighted sum of whole-layer objectives."""
    items = parse_layers(config.layers) or [(name, 1.0) for name in model.spec.default_layers]
    for name, _ in items:
        model.resolve_layer(name)  # unknown names fail here, before any work
    terms = [layer(name, config.loss) if w == 1.0 else w * layer(name, config.loss) for name, w in items]
    return sum(terms[1:], start=terms[0])


class Dreamer:
    """Runs dreams of one model and objective on one device with one config.

    >>> dreamer = Dreamer(model, objective, config, torch.device("cpu"))
    >>> out = dreamer.run(image)  # (1, 3, H, W) in [0, 1]
    """

    def __init__(self, model: DreamModel, objective: Objective, config: DreamConfig, device: torch.device) -> None:
        self.model = model.to(device)
        self.objective = objective
        self.config = config
        self.device = device
        self.precision = pick_precision(config.precision, device)
        # bf16/fp16: weights held in that dtype (no per-call casts); autocast still guards ops that need fp32.
        self.extractor: FeatureExtractor = model.extractor(objective.layers, dtype=compute_dtype(self.precision))
        if config.compile:  # torch.compile traces the graph itself: autograd's gradient, not the CPU program's
            self.extractor = self.extractor.with_autograd()
        self._compiled = torch.compile(self.extractor, dynamic=True) if config.compile else None
        self._bytes_per_pixel: float | None = None
        self._batch = 1
        self._tile_cap: int | None = None  # set when a step ran out of memory: no larger tiles afterwards
        self._free: int | None = None  # bytes free when the run started
        self._input_pixels = 0  # the run's input: an fp32 copy the caller made for it, held to the end

    def score(self, x: torch.Tensor) -> torch.Tensor:
        """Objective per batch item (B,) for images (B, 3, h, w) in [0, 1]."""
        with autocast(self.precision, self.device):
            extractor = self._compiled if self._compiled is not None else self.extractor
            return self.objective(extractor(x)).float()

    def tile_size(self, height: int, width: int) -> int:
        """The configured tile size, or the largest that fits the memory budget (measured once per run)."""
        plan = self._plan(height, width)
        if plan is None:
            assert self.config.tile_size is not None
            return min(self.config.tile_size, self._tile_cap or self.config.tile_size)
        self._batch = plan.batch if self._tile_cap is None else 1
        return min(plan.tile_size, self._tile_cap or plan.tile_size)

    def _plan(self, height: int, width: int) -> TilePlan | None:
        """The memory plan for a ``height × width`` octave; None where the config fixes the tile size."""
        if self.config.tile_size is not None:
            return None
        if self._bytes_per_pixel is None:
            self._bytes_per_pixel = measure_bytes_per_pixel(
                self.extractor, self.objective, self.device, autocast(self.precision, self.device)
            )
        cap = parse_bytes(self.config.max_memory) if self.config.max_memory else None
        reserved = IMAGE_BYTES_PER_PIXEL * height * width + INPUT_BYTES_PER_PIXEL * self._input_pixels
        program = self.extractor.backprop
        if program is not None and self.device.type == "cpu":  # its reordered weights: one set per input shape
            per_shape = program.packed_bytes_per_shape()
            budget = memory_budget(self.device, cap, free=self._free)
            shapes = max(1, min(PACKED_SHAPES, int(PACK_SHARE * budget // max(per_shape, 1))))
            program.keep_shapes(shapes)  # the planned tile's shape at least; more where memory is plentiful
            reserved += shapes * per_shape
        return plan_tile(height, width, self._bytes_per_pixel, self.device, cap, free=self._free, reserved=reserved)

    def step(
        self, image: torch.Tensor, generator: torch.Generator, tile: int, in_place: bool = False
    ) -> tuple[torch.Tensor, float]:
        """One ascent step on (1, 3, h, w): roll, tiled gradient, roll back, normalise, step, clamp.

        ``in_place``: the step is written into ``image`` (a run's own dream: one image-sized buffer fewer to
        allocate every step, which kept a 9 MP run's heap from creeping up by fragments of freed dreams)."""
        cfg = self.config
        dy, dx = random_shift(cfg.jitter, generator)
        grad, score = tiled_gradient(
            image, self.score, tile, cfg.tile_overlap, batch=self._batch, align=TILE_ALIGN, shift=(dy, dx)
        )
        return ascend(image, grad, cfg.step_size, cfg.grad_norm, in_place), score

    def run(self, image: torch.Tensor, callback: Callback | None = None) -> torch.Tensor:
        """Dream on ``image`` (1, 3, H, W) in [0, 1]; returns the dream, same shape, on the CPU."""
        if image.dim() != 4 or image.shape[:2] != (1, 3):
            raise ValueError(f"expected an image of shape (1, 3, H, W), got {tuple(image.shape)}")
        with reuse_freed_memory(self.device.type == "cpu"):
            return self._run(image, callback)

    def _run(self, image: torch.Tensor, callback: Callback | None) -> torch.Tensor:
        cfg = self.config
        generator = torch.Generator().manual_seed(cfg.seed)
        self._free = free_memory(self.device)  # once: memory kept for reuse later in the run is ours anyway
        base = image.to(self.device, torch.float32)
        height, width = base.shape[-2:]
        self._input_pixels = height * width
        octaves = cfg.octaves or auto_octaves(height, width, cfg.octave_scale)
        sizes = octave_sizes(height, width, octaves, cfg.octave_scale, cfg.min_size)
        total = len(sizes) * cfg.steps
        detail: torch.Tensor | None = torch.zeros(1, 3, *sizes[0], device=self.device)
        start = time.perf_counter()
        dream = base
        full = self._plan(*sizes[-1])  # the full size planned first: a --max-memory too small fails before any work
        tight = cfg.max_memory is not None or (full is not None and full.tight)
        for o, size in enumerate(sizes):
            # Image-sized buffers are few: at 8K each is 400 MB. Only the dream is held through the steps; the
            # octave's base and the detail carried up are made when needed (the same values).
            assert detail is not None
            carried, detail = resize(detail, size), None  # the last octave's detail goes before the sum is made
            dream = (resize(base, size) + carried).clamp_(0.0, 1.0)
            del carried
            if tight:
                release_free_memory()  # the last octave's buffers, too small to serve this one, go back
            tile = self.tile_size(*size)  # planned per octave: a small octave may fit in one tile
            for s in range(cfg.steps):
                dream, score, tile = self._step_with_retry(dream, generator, tile)
                if callback is not None:
                    last = s == cfg.steps - 1
                    callback(
                        Progress(
                            octave=o + 1,
                            octaves=len(sizes),
                            step=s + 1,
                            steps=cfg.steps,
                            done=o * cfg.steps + s + 1,
                            total=total,
                            score=score,
                            size=size,
                            tile_size=tile,
                            elapsed=time.perf_counter() - start,
                            image=dream.detach().cpu() if last else None,
                        )
                    )
            if o < len(sizes) - 1:
                detail = dream - resize(base, size)  # what the steps added, carried up to the next octave
                dream = base  # drops this octave's dream before the next one is made
        return dream.detach().cpu()

    def _step_with_retry(
        self, image: torch.Tensor, generator: torch.Generator, tile: int
    ) -> tuple[torch.Tensor, float, int]:
        """A step; on out-of-memory, halve the tile and try again (the generator state is restored)."""
        while True:
            state = generator.get_state()
            try:
                out, score = self.step(image, generator, min(tile, max(image.shape[-2:])), in_place=True)
            except (RuntimeError, torch.OutOfMemoryError) as e:
                if not is_out_of_memory(e) or tile <= 64:
                    raise
                generator.set_state(state)
                self._batch = 1
                tile = max(64, min(tile, max(image.shape[-2:])) // 2 // 32 * 32)
                self._tile_cap = tile
                if self.device.type == "cuda":
                    torch.cuda.empty_cache()
                continue
            if not math.isfinite(score):
                raise InceptionismError("the objective became NaN or infinite; lower --step-size")
            return out, score, tile
