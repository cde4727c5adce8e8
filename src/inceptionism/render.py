"""Feature visualisation from noise: lucid's render loop (``optvis/render.py``) on our feature extractors.

No photo: a :mod:`~inceptionism.parametrize` parametrisation starts as faint noise; each step its image batch is
randomly padded, shifted, scaled and rotated (lucid's "standard transforms", which keep the picture from
exploiting one exact pixel grid), passed through the network, and Adam ascends the objective with respect to
the parameters. Same seed and settings, same picture.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from inceptionism.errors import ConfigError
from inceptionism.models import DreamModel
from inceptionism.objectives import Activations, Context, Objective, objective
from inceptionism.parametrize import PARAMS, parametrization

STEPS = 128
LR = 0.1  # Adam; lucid uses 0.05, which needs about twice the steps for the same contrast


@dataclass(frozen=True)
class Transforms:
    """Random augmentation per step and batch item, one bilinear warp (after lucid's standard transforms).

    The image is padded by ``pad`` pixels of grey (0.5) on each side, shifted by up to ``jitter`` pixels,
    scaled by a factor in ``scale`` and rotated by up to ``degrees`` either way. The network sees
    ``(H + 2·pad) × (W + 2·pad)`` whatever the draw, so its shape never changes from step to step.
    """

    pad: int = 8
    jitter: float = 6.0
    scale: tuple[float, float] = (0.9, 1.1)
    degrees: float = 10.0


STANDARD = Transforms()
NONE = Transforms(pad=0, jitter=0.0, scale=(1.0, 1.0), degrees=0.0)


def random_transform(x: torch.Tensor, generator: torch.Generator, t: Transforms = STANDARD) -> torch.Tensor:
    """(B, 3, H, W) in [0, 1] → (B, 3, H + 2·pad, W + 2·pad) in [0, 1], a random affine warp per item.

    Differentiable in ``x``. Draws 4 numbers per item from ``generator`` (a CPU generator).
    """
    b, _, h, w = x.shape
    ho, wo = h + 2 * t.pad, w + 2 * t.pad
    u = torch.rand(b, 4, generator=generator, dtype=torch.float64)
    scale = t.scale[0] + (t.scale[1] - t.scale[0]) * u[:, 0]
    angle = torch.deg2rad(t.degrees * (2 * u[:, 1] - 1))
    shift_x, shift_y = t.jitter * (2 * u[:, 2] - 1), t.jitter * (2 * u[:, 3] - 1)
    cos, sin = angle.cos() / scale, angle.sin() / scale
    # affine_grid maps output coordinates in [-1, 1] to input ones; in pixels from the centre, an output offset d
    # reads the input at rotate(d, -angle) / scale + shift. The size ratios convert between the two grids.
    theta = torch.stack(
        [
            torch.stack([cos * wo / w, sin * ho / w, 2 * shift_x / w], dim=1),
            torch.stack([-sin * wo / h, cos * ho / h, 2 * shift_y / h], dim=1),
        ],
        dim=1,
    ).to(x)
    grid = F.affine_grid(theta, [b, 3, ho, wo], align_corners=False)
    # Shifted so that grid_sample's zero padding is grey.
    return F.grid_sample(x - 0.5, grid, mode="bilinear", padding_mode="zeros", align_corners=False) + 0.5


def channel_batch(layer: str, indices: Sequence[int]) -> Objective:
    """Batch item ``b`` maximises the mean of channel ``indices[b]`` of ``layer`` (lucid's ``channel(batch=b)``).

    Scores (B,) with B = len(indices); one forward pass visualises several channels at once.
    """
    index = torch.tensor(list(indices), dtype=torch.long)
    if index.numel() == 0:
        raise ConfigError("no channels given")
    label = f"{indices[0]}" if len(indices) == 1 else f"{indices[0]}…{indices[-1]}"

    @objective([layer], f"mean({layer}[{label}] per item)")
    def score(acts: Activations) -> torch.Tensor:
        x = acts[layer]
        if x.shape[0] != len(index):
            raise ValueError(f"a batch of {x.shape[0]} images for {len(index)} channels; they must match")
        if int(index.max()) >= x.shape[1] or int(index.min()) < 0:
            raise ConfigError(f"channels {indices[0]}…{indices[-1]} go beyond {layer}'s {x.shape[1]} channels")
        picked = x[torch.arange(len(index), device=x.device), index.to(x.device)]  # (B, h, w), or (B,) for logits
        return picked.float().flatten(1).mean(dim=1)  # also (B,) outputs such as logits: flatten gives (B, 1)

    return score


@dataclass(frozen=True)
class RenderProgress:
    """Where a render is, passed to the callback after every step; ``score`` is the batch's mean."""

    step: int  # 1-based
    steps: int
    score: float
    elapsed: float


RenderCallback = Callable[[RenderProgress], None]


def _check(size: int | tuple[int, int], steps: int, lr: float, batch: int, param: str) -> tuple[int, int]:
    h, w = (size, size) if isinstance(size, int) else size
    if h < 8 or w < 8:
        raise ConfigError(f"size {h}×{w} is too small; use at least 8×8 pixels")
    if steps < 0:
        raise ConfigError(f"steps must be 0 or more, got {steps}")
    if not (lr > 0 and math.isfinite(lr)):
        raise ConfigError(f"learning rate must be a positive number, got {lr}")
    if batch < 1:
        raise ConfigError(f"batch must be at least 1, got {batch}")
    if param not in PARAMS:
        raise ConfigError(f"unknown parametrisation {param!r}; choose one of {', '.join(PARAMS)}")
    return h, w


def render(
    model: DreamModel,
    objective: Objective,
    size: int | tuple[int, int] = (128, 128),
    *,
    param: str = "fft",
    steps: int = STEPS,
    lr: float = LR,
    seed: int = 0,
    batch: int = 1,
    transforms: Transforms = STANDARD,
    callback: RenderCallback | None = None,
) -> torch.Tensor:
    """Visualise ``objective`` from noise: images (B, 3, h, w) in [0, 1] on the CPU, B = ``batch``.

    ``size``: (h, w) or one side. ``param``: ``"fft"`` (recognisable forms) or ``"pixel"`` (static).
    ``objective`` scores each batch item, shape (B,); all items are ascended together with Adam (``lr``).
    """
    h, w = _check(size, steps, lr, batch, param)
    for name in objective.layers:
        model.resolve_layer(name)  # unknown names fail here, before any work
    device = next(model.module.parameters()).device
    generator = torch.Generator().manual_seed(seed)
    image = parametrization(param, batch, (h, w), generator=generator, device=device)
    extractor = model.extractor(objective.layers)
    optimizer = torch.optim.Adam(image.parameters(), lr=lr)
    start = time.perf_counter()
    for step in range(1, steps + 1):
        optimizer.zero_grad(set_to_none=True)
        x = random_transform(image.image(), generator, transforms)
        score = objective(Context(extractor(x), x))
        (-score.sum()).backward()  # items are independent: the sum ascends each one
        optimizer.step()
        if callback is not None:
            callback(RenderProgress(step, steps, float(score.detach().mean()), time.perf_counter() - start))
    with torch.no_grad():
        return image.image().float().cpu()


NOISE_SPREAD = 0.2  # a noise start's values: grey 0.5 ± NOISE_SPREAD / 2, uniform


def noise_start(size: tuple[int, int], seed: int) -> torch.Tensor:
    """Seeded noise for the octave engine to start from (``--noise`` with ``--param pixel``): (1, 3, h, w) in
    [0.4, 0.6], mid-grey with uniform noise, so the ascent has contrast in every direction to grow from."""
    generator = torch.Generator().manual_seed(seed)
    return 0.5 + NOISE_SPREAD * (torch.rand(1, 3, *size, generator=generator) - 0.5)
