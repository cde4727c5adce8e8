"""The dream itself: an octave loop around a gradient-ascent step. The one obvious place.

Data flows one way: RGB (1, 3, H, W) in [0, 1] → octave pyramid, smallest first → at each octave, steps of
(random roll → tiled gradient of the objective → roll back → normalise → step → clamp) → the detail the steps
added is carried up to the next octave → the full-size dream. The engine never knows which model it drives.
"""

from __future__ import annotations

import math
import time
import weakref
from collections.abc import Callable
from dataclasses import dataclass

import torch

from inceptionism import recipes
from inceptionism.colors import keep_colors
from inceptionism.config import DreamConfig
from inceptionism.devices import autocast, compute_dtype, pick_precision
from inceptionism.errors import InceptionismError
from inceptionism.mask import Note, blend_final, blend_gradients, load_mask, mask_at
from inceptionism.memory import RunPlan, free_memory, is_out_of_memory, measure_bytes_per_pixel, parse_bytes
from inceptionism.models import DreamModel, FeatureExtractor
from inceptionism.models.cpu import packed_shapes, release_free_memory, reuse_freed_memory
from inceptionism.objectives import Context, Objective
from inceptionism.seamless import circular_pad, make_tileable, periodic_gradient, wrap_resize
from inceptionism.tiling import ScoreWithOriginal, tiled_gradient
from inceptionism.transforms import ascend, auto_octaves, gaussian_blur, octave_sizes, random_shift, resize, roll


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
    # Work in pixel-steps: a step counts its octave's h * w, since a step's cost grows with its pixels. An ETA
    # from these (rather than from ``done / total``) does not undercount the large, late octaves.
    work_done: int = 0
    work_total: int = 0


Callback = Callable[[Progress], None]

# Tile starts are multiples of this, the largest stride of common CNNs, so every tile samples the image on the
# network's own grid and tiled gradients match untiled ones (see tiling.tile_starts).
TILE_ALIGN = 32
# A seamless dream's gradient is taken on the image padded with this many pixels of its opposite edges (a multiple
# of TILE_ALIGN), so the network sees the pattern continue across every edge (seamless.periodic_gradient).
SEAMLESS_MARGIN = 128


def seamless_margin(height: int, width: int) -> int:
    """The circular margin of a seamless step on ``height × width``: :data:`SEAMLESS_MARGIN`, or less for a small
    image (no more than its long side rounded up to :data:`TILE_ALIGN`: a wider margin repeats it)."""
    side = -(-max(height, width) // TILE_ALIGN) * TILE_ALIGN
    return min(SEAMLESS_MARGIN, side)


def config_mask(config: DreamConfig, height: int, width: int, note: Note | None = None) -> torch.Tensor | None:
    """The config's mask file fitted to a ``height × width`` input, times ``mask_strength``: (1, 1, H, W) in
    [0, 1], or None without one. ``note`` hears of a resize (the API tells the user once per picture; a video's
    frames do not repeat it). An unreadable or coloured file raises :class:`ConfigError`."""
    if config.mask is None:
        return None
    return load_mask(config.mask, (height, width), note).mul_(config.mask_strength)


def reads_original(objective: Objective) -> bool:
    """Whether ``objective`` may read ``Context.original`` (an ``l2pull()`` term, or Python code that might)."""
    return objective.expression is None or "l2pull(" in objective.expression


def build_objective(config: DreamConfig, model: DreamModel, image: torch.Tensor | None = None) -> Objective:
    """The config's objective, checked against ``model``: :func:`inceptionism.recipes.build_objective`."""
    return recipes.build_objective(config, model, image)


# Bytes per pixel measured by Dreamer._cost, per network module (weakly held: they go with the network).
_COSTS: weakref.WeakKeyDictionary[torch.nn.Module, dict[tuple[object, ...], float]] = weakref.WeakKeyDictionary()


class Dreamer:
    """Runs dreams of one model and objective on one device with one config.

    It holds configuration only: each run makes its own :class:`~inceptionism.memory.RunPlan` (free memory, tile
    cap, batch, packed shapes), and the model and its cached extractors come out of a run as they went in.

    >>> dreamer = Dreamer(model, objective, config, torch.device("cpu"))
    >>> out = dreamer.run(image)  # (1, 3, H, W) in [0, 1]
    """

    def __init__(
        self,
        model: DreamModel,
        objective: Objective,
        config: DreamConfig,
        device: torch.device,
        region: Objective | None = None,
    ) -> None:
        """``region``: the objective dreamt where the mask is white (``config.mask_layers``); built from the
        config when not given (then ``NAME[topK]`` channels cannot be chosen: no input image here)."""
        self.model = model.to(device)
        self.objective = objective
        self.config = config
        self.device = device
        self.precision = pick_precision(config.precision, device)
        if region is None and config.mask_layers:
            region = recipes.build_region_objective(config, model)
        self.region = region
        # bf16/fp16: weights held in that dtype (no per-call casts); autocast still guards ops that need fp32.
        self.extractor: FeatureExtractor = model.extractor(objective.layers, dtype=compute_dtype(self.precision))
        if config.compile:  # torch.compile traces the graph itself: autograd's gradient, not the CPU program's
            self.extractor = self.extractor.with_autograd()
        self._compiled = torch.compile(self.extractor, dynamic=True) if config.compile else None
        self._region_extractor = (
            model.extractor(region.layers, dtype=compute_dtype(self.precision)) if region is not None else None
        )

    def score(self, x: torch.Tensor, original: torch.Tensor | None = None) -> torch.Tensor:
        """Objective per batch item (B,) for images (B, 3, h, w) in [0, 1]; ``original``: the same windows of the
        octave's input (B, 3, h, w), for ``l2pull()``."""
        with autocast(self.precision, self.device):
            extractor = self._compiled if self._compiled is not None else self.extractor
            return self.objective(Context(extractor(x), x, original)).float()

    def region_score(self, x: torch.Tensor, original: torch.Tensor | None = None) -> torch.Tensor:
        """The region objective per batch item (B,), as :meth:`score`."""
        assert self.region is not None and self._region_extractor is not None
        with autocast(self.precision, self.device):
            return self.region(Context(self._region_extractor(x), x, original)).float()

    def tile_size(self, height: int, width: int) -> int:
        """The configured tile size, or the largest that fits the memory budget for a run on a ``height × width``
        image (a fresh plan: free memory now)."""
        return self.plan(height, width).tile_size(height, width)

    def plan(self, height: int, width: int) -> RunPlan:
        """A memory plan for one run on a ``height × width`` input, from the memory free now."""
        backend = self.extractor.backend
        fast = backend is not None and backend.active and self.device.type == "cpu"
        return RunPlan(
            device=self.device,
            tile_size_fixed=self.config.tile_size,
            max_memory=parse_bytes(self.config.max_memory) if self.config.max_memory else None,
            free=free_memory(self.device),
            input_pixels=height * width,
            bytes_per_pixel=self._bytes_per_pixel,
            packed_bytes_per_shape=backend.packed_bytes_per_shape() if fast and backend else None,
        )

    def _bytes_per_pixel(self) -> float:
        """What a step holds per input pixel: the most of the objective's and the region objective's (their
        gradients are taken one after the other)."""
        cost = self._cost(self.extractor, self.objective)
        if self.region is not None and self._region_extractor is not None:
            cost = max(cost, self._cost(self._region_extractor, self.region))
        return cost

    def _cost(self, extractor: FeatureExtractor, objective: Objective) -> float:
        """Bytes per pixel of one objective's step, measured once per network, layers, objective, precision,
        device and gradient road (CPU backend or autograd: they differ), then remembered while the network
        lives, so the frames of a sequence, each with its own Dreamer, measure it once."""
        backend = extractor.backend
        road = backend is not None and backend.active
        key = (objective.layers, objective.expression, self.precision, str(self.device), road, self.config.compile)
        costs = _COSTS.setdefault(self.model.module, {})
        if objective.expression is None or key not in costs:
            context = autocast(self.precision, self.device)
            cost = measure_bytes_per_pixel(extractor, objective, self.device, context)
            if objective.expression is None:  # Python code: nothing to recognise it by next time
                return cost
            costs[key] = cost
        return costs[key]

    def step(
        self,
        image: torch.Tensor,
        generator: torch.Generator,
        tile: int,
        in_place: bool = False,
        batch: int = 1,
        original: torch.Tensor | None = None,
        mask: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, float]:
        """One ascent step on (1, 3, h, w): roll, tiled gradient (``batch`` tiles per pass), roll back,
        blur, normalise, step, clamp.

        ``in_place``: the step is written into ``image`` (a run's own dream: one image-sized buffer fewer to
        allocate every step, which keeps a large run's heap from creeping up by fragments of freed dreams).
        ``original``: the octave's input (1, 3, h, w), for objectives that read it. ``mask`` (1, 1, h, w) in
        [0, 1]: the step's strength per pixel; with a region objective, where it dreams instead of the main one.
        """
        cfg = self.config
        shift = random_shift(cfg.jitter, generator)
        grad, score = self._gradient(self.score, image, original, tile, batch, shift)
        grad = self._blur(grad)
        if self.region is None:
            return ascend(image, grad, cfg.step_size, cfg.grad_norm, in_place, wrap=cfg.seamless, mask=mask), score
        if mask is None:
            raise ValueError("a region objective needs the mask that says where it dreams")
        inside, _ = self._gradient(self.region_score, image, original, tile, batch, shift)
        direction = blend_gradients(self._blur(inside), grad, mask, cfg.grad_norm)  # normalised per region
        out = image.add_(direction, alpha=cfg.step_size) if in_place else image + cfg.step_size * direction
        return out.clamp_(0.0, 1.0), score

    def _blur(self, grad: torch.Tensor) -> torch.Tensor:
        """The gradient smoothed by ``grad_blur`` (circular borders for a seamless dream)."""
        sigma = self.config.grad_blur
        return gaussian_blur(grad, sigma, "circular" if self.config.seamless else "reflect") if sigma else grad

    def _gradient(
        self,
        score: ScoreWithOriginal,
        image: torch.Tensor,
        original: torch.Tensor | None,
        tile: int,
        batch: int,
        shift: tuple[int, int],
    ) -> tuple[torch.Tensor, float]:
        """The tiled gradient (1, 3, h, w) of ``score`` on ``image`` rolled by ``shift``, rolled back; for a
        seamless dream, of the image padded with its opposite edges (the roll of a tileable image loses nothing,
        so it is made before the padding)."""
        cfg = self.config
        if not cfg.seamless:
            return tiled_gradient(image, score, tile, cfg.tile_overlap, batch, TILE_ALIGN, shift, original)
        dy, dx = shift
        margin = seamless_margin(*image.shape[-2:])
        padded = None if original is None else circular_pad(roll(original, dy, dx), margin)

        def gradient(x: torch.Tensor) -> tuple[torch.Tensor, float]:
            return tiled_gradient(x, score, tile, cfg.tile_overlap, batch, TILE_ALIGN, original=padded)

        grad, value = periodic_gradient(roll(image, dy, dx), gradient, margin)
        return roll(grad, -dy, -dx), value

    def _work_size(self, size: tuple[int, int]) -> tuple[int, int]:
        """The size the network sees for an octave of ``size``: with its circular margin when seamless."""
        if not self.config.seamless:
            return size
        margin = seamless_margin(*size)
        return size[0] + 2 * margin, size[1] + 2 * margin

    def run(
        self, image: torch.Tensor, callback: Callback | None = None, mask: torch.Tensor | None = None
    ) -> torch.Tensor:
        """Dream on ``image`` (1, 3, H, W) in [0, 1]; returns the dream, same shape, on the CPU.

        ``mask`` (1, 1, H, W) in [0, 1]: where and how strongly to dream (black pixels come out exactly as they
        went in); by default the config's mask file (:func:`config_mask`). With a region objective, where it dreams.
        """
        if image.dim() != 4 or image.shape[:2] != (1, 3):
            raise ValueError(f"expected an image of shape (1, 3, H, W), got {tuple(image.shape)}")
        if mask is None:
            mask = config_mask(self.config, *image.shape[-2:])
        elif mask.shape != (1, 1, *image.shape[-2:]):
            raise ValueError(f"mask must be (1, 1, {image.shape[-2]}, {image.shape[-1]}), got {tuple(mask.shape)}")
        if self.region is not None and mask is None:
            raise InceptionismError("--mask-layers needs --mask: the region where those layers are dreamt")
        with reuse_freed_memory(self.device.type == "cpu"):
            return self._run(image, callback, mask)

    def _run(self, image: torch.Tensor, callback: Callback | None, mask: torch.Tensor | None) -> torch.Tensor:
        cfg = self.config
        generator = torch.Generator().manual_seed(cfg.seed)
        base = image.to(self.device, torch.float32)
        if cfg.seamless:  # a tileable start: the edges continue each other from the first step
            base = make_tileable(base)
        if mask is not None:
            mask = mask.to(self.device, torch.float32)
        fit = wrap_resize if cfg.seamless else resize  # a tileable image stays tileable through the octaves
        originals = reads_original(self.objective) or (self.region is not None and reads_original(self.region))
        height, width = base.shape[-2:]
        plan = self.plan(*self._work_size((height, width)))  # this run's: free memory now, tile cap and batch
        octaves = cfg.octaves or auto_octaves(height, width, cfg.octave_scale)
        sizes = octave_sizes(height, width, octaves, cfg.octave_scale, cfg.min_size)
        total = len(sizes) * cfg.steps
        detail: torch.Tensor | None = torch.zeros(1, 3, *sizes[0], device=self.device)
        start = time.perf_counter()
        dream = base
        # The full size first: a --max-memory too small fails before any work.
        full = plan.tile_plan(*self._work_size(sizes[-1]))
        tight = cfg.max_memory is not None or (full is not None and full.tight)
        for o, size in enumerate(sizes):
            # Image-sized buffers are few: at 8K each is 400 MB. Only the dream is held through the steps; the
            # octave's base and the detail carried up are made when needed (the same values).
            assert detail is not None
            carried, detail = fit(detail, size), None  # the last octave's detail goes before the sum is made
            dream = (fit(base, size) + carried).clamp_(0.0, 1.0)
            del carried
            original = fit(base, size) if originals else None  # what l2pull() pulls toward
            octave_mask = mask_at(mask, size) if mask is not None else None
            if tight:
                release_free_memory()  # the last octave's buffers, too small to serve this one, go back
            tile = plan.tile_size(*self._work_size(size))  # planned per octave: a small octave may fit in one tile
            for s in range(cfg.steps):
                with packed_shapes(plan.packed_shapes):
                    dream, score, tile = self._step_with_retry(dream, generator, tile, plan, original, octave_mask)
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
                            work_done=cfg.steps * sum(h * w for h, w in sizes[:o]) + (s + 1) * size[0] * size[1],
                            work_total=cfg.steps * sum(h * w for h, w in sizes),
                        )
                    )
            if o < len(sizes) - 1:
                detail = dream - fit(base, size)  # what the steps added, carried up to the next octave
                dream = base  # drops this octave's dream before the next one is made
        return self._finish(dream, base, mask).detach().cpu()

    def _finish(self, dream: torch.Tensor, base: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
        """The last touches on the full-size dream: the input's colours put back (``keep_colors``), then, for a
        strength mask, the dream blended onto the input so black pixels are exactly the input's."""
        if self.config.keep_colors:
            dream = keep_colors(dream, base)
        if mask is not None and self.region is None:
            dream = blend_final(base, dream, mask)
        return dream

    def _step_with_retry(
        self,
        image: torch.Tensor,
        generator: torch.Generator,
        tile: int,
        plan: RunPlan,
        original: torch.Tensor | None = None,
        mask: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, float, int]:
        """A step; on out-of-memory, halve the tile and try again (the generator state is restored)."""
        while True:
            state = generator.get_state()
            h, w = image.shape[-2:]
            side = max(self._work_size((h, w)))
            try:
                out, score = self.step(
                    image, generator, min(tile, side), in_place=True, batch=plan.batch, original=original, mask=mask
                )
            except (RuntimeError, torch.OutOfMemoryError) as e:
                smaller = plan.shrink(tile, side) if is_out_of_memory(e) else None
                if smaller is None:
                    raise
                generator.set_state(state)
                tile = smaller
                if self.device.type == "cuda":
                    torch.cuda.empty_cache()
                continue
            if not math.isfinite(score):
                raise InceptionismError("the objective became NaN or infinite; lower --step-size")
            return out, score, tile
