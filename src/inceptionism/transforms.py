"""Pure tensor functions on (B, C, H, W) images: resizing, the octave pyramid, jitter, gradient normalisation."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

GRAD_NORMS = ("mean_abs", "std")


def resize(x: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Bilinear resize of (B, C, H, W) to ``size = (h, w)``; antialiased when shrinking."""
    if tuple(x.shape[-2:]) == tuple(size):
        return x
    shrink = size[0] < x.shape[-2] or size[1] < x.shape[-1]
    return F.interpolate(x, size=size, mode="bilinear", align_corners=False, antialias=shrink)


def octave_sizes(height: int, width: int, octaves: int, scale: float, min_size: int = 32) -> list[tuple[int, int]]:
    """Sizes ``(h, w)`` of the octave pyramid, smallest first, the last one ``(height, width)``.

    Octave ``i`` (counting down from the full size) is the image shrunk by ``scale ** i``. Octaves whose short
    side would fall below ``min_size`` are dropped (the full size is always kept).
    """
    if octaves < 1:
        raise ValueError("octaves must be at least 1")
    if scale <= 1:
        raise ValueError("octave scale must be greater than 1")
    sizes = []
    for i in range(octaves - 1, -1, -1):
        f = scale**i
        h, w = max(1, round(height / f)), max(1, round(width / f))
        if i == 0 or min(h, w) >= min_size:
            sizes.append((h, w))
    return sizes


AUTO_SMALLEST = 150  # short side of the smallest octave when the count is automatic


def auto_octaves(height: int, width: int, scale: float, smallest: int = AUTO_SMALLEST) -> int:
    """How many octaves bring the image's short side down to about ``smallest`` pixels.

    The network sees structures of a fixed size in pixels, so a large photo needs more octaves than a small one
    for the dream to grow the same large forms (eyes, faces) rather than only fine texture.
    """
    short = min(height, width)
    if short <= smallest:
        return 1
    return 1 + round(math.log(short / smallest) / math.log(scale))


def roll(x: torch.Tensor, dy: int, dx: int) -> torch.Tensor:
    """Circular shift of the last two dimensions by ``(dy, dx)`` pixels (jitter that loses nothing)."""
    if dy == 0 and dx == 0:
        return x
    return torch.roll(x, shifts=(dy, dx), dims=(-2, -1))


def random_shift(jitter: int, generator: torch.Generator) -> tuple[int, int]:
    """A shift ``(dy, dx)`` drawn uniformly from ``[-jitter, jitter]²`` with the given generator."""
    if jitter <= 0:
        return 0, 0
    dy, dx = torch.randint(-jitter, jitter + 1, (2,), generator=generator).tolist()
    return int(dy), int(dx)


def gradient_scale(g: torch.Tensor, method: str = "mean_abs", eps: float = 1e-8) -> torch.Tensor:
    """The factor (a 0-dim tensor) that gives a gradient a fixed size: 1 / (its mean absolute value or std)."""
    if method == "mean_abs":
        return 1 / (g.abs().mean() + eps)
    if method == "std":
        return 1 / (g.std() + eps)
    raise ValueError(f"unknown gradient normalisation {method!r}; choose one of {', '.join(GRAD_NORMS)}")


def normalize_gradient(g: torch.Tensor, method: str = "mean_abs", eps: float = 1e-8) -> torch.Tensor:
    """Scale a gradient so steps have a fixed size: divide by its mean absolute value or its std."""
    return g * gradient_scale(g, method, eps)


def ascend(image: torch.Tensor, g: torch.Tensor, step_size: float, method: str, in_place: bool = False) -> torch.Tensor:
    """``clamp(image + step_size * normalize_gradient(g), 0, 1)`` in one pass over the image and one in place;
    ``in_place``: written into ``image`` (the same values)."""
    scale = step_size * gradient_scale(g, method)
    out = image.addcmul_(g, scale) if in_place else torch.addcmul(image, g, scale)
    return out.clamp_(0.0, 1.0)


def pixels(size: tuple[int, int]) -> int:
    return math.prod(size)
