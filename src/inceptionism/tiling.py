"""Tiled gradients: any image size in bounded memory, full coverage, no seams.

The image is cut into equal, overlapping tiles. Each tile's score is weighted by its share of the image, so the
tiled objective approximates the whole-image one whatever the tile size. Gradients are blended with linear ramps
across the overlaps (a partition of unity), which hides the border effects of the convolutions; the engine's
random roll moves the tile borders every step. A single tile covering the image is exactly the untiled gradient.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch

ScoreBatch = Callable[[torch.Tensor], torch.Tensor]  # (B, 3, h, w) → (B,)


@dataclass(frozen=True)
class Tile:
    """A window of the image: rows ``y:y+h``, columns ``x:x+w``."""

    y: int
    x: int
    h: int
    w: int


def tile_starts(length: int, tile: int, overlap: int) -> list[int]:
    """Start offsets of evenly spread tiles of size ``min(tile, length)`` covering ``[0, length)``."""
    tile = min(tile, length)
    if tile >= length:
        return [0]
    overlap = min(overlap, tile - 1)
    n = -(-(length - overlap) // (tile - overlap))  # ceil
    n = max(n, 2)
    return [round(i * (length - tile) / (n - 1)) for i in range(n)]


def tile_grid(height: int, width: int, tile_size: int, overlap: int) -> list[Tile]:
    """Equal-sized tiles covering an image of ``height × width``, row by row."""
    th, tw = min(tile_size, height), min(tile_size, width)
    return [
        Tile(y, x, th, tw)
        for y in tile_starts(height, tile_size, overlap)
        for x in tile_starts(width, tile_size, overlap)
    ]


def _ramp(n: int, start_open: bool, end_open: bool, overlap: int, device: torch.device) -> torch.Tensor:
    """1-D weights: 1 inside, rising linearly over ``overlap`` px at each edge shared with a neighbour."""
    w = torch.ones(n, device=device)
    if overlap <= 0:
        return w
    k = min(overlap, n)
    ramp = (torch.arange(k, device=device, dtype=torch.float32) + 0.5) / k
    if start_open:
        w[:k] = torch.minimum(w[:k], ramp)
    if end_open:
        w[n - k :] = torch.minimum(w[n - k :], ramp.flip(0))
    return w


def blend_window(tile: Tile, height: int, width: int, overlap: int, device: torch.device) -> torch.Tensor:
    """(h, w) weights of ``tile``: ramps only at edges inside the image, so coverage sums are never zero."""
    wy = _ramp(tile.h, tile.y > 0, tile.y + tile.h < height, overlap, device)
    wx = _ramp(tile.w, tile.x > 0, tile.x + tile.w < width, overlap, device)
    return wy[:, None] * wx[None, :]


def tiled_gradient(
    image: torch.Tensor, score: ScoreBatch, tile_size: int, overlap: int, batch: int = 1
) -> tuple[torch.Tensor, float]:
    """Gradient of the image's score, computed tile by tile.

    ``image``: (1, 3, H, W). ``score`` maps a batch of tiles (B, 3, h, w) to (B,) scores. Returns the blended
    gradient (1, 3, H, W) and the mean tile score. ``batch`` tiles go through the network at once.
    """
    _, _, height, width = image.shape
    tiles = tile_grid(height, width, tile_size, overlap)
    if len(tiles) == 1:
        x = image.detach().requires_grad_(True)
        s = score(x)
        (grad,) = torch.autograd.grad(s.sum(), x)
        return grad, float(s.detach().sum())
    grad = torch.zeros_like(image)
    weight = torch.zeros(1, 1, height, width, device=image.device)
    total = 0.0
    share = tiles[0].h * tiles[0].w / (height * width)
    for i in range(0, len(tiles), batch):
        group = tiles[i : i + batch]
        x = torch.cat([image[:, :, t.y : t.y + t.h, t.x : t.x + t.w] for t in group]).detach().requires_grad_(True)
        s = score(x)
        (g,) = torch.autograd.grad(s.sum() * share, x)
        total += float(s.detach().sum())
        for t, gt in zip(group, g, strict=True):
            win = blend_window(t, height, width, overlap, image.device)
            grad[0, :, t.y : t.y + t.h, t.x : t.x + t.w] += gt * win
            weight[0, 0, t.y : t.y + t.h, t.x : t.x + t.w] += win
    return grad / weight, total / len(tiles)
