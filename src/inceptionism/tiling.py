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

from inceptionism.transforms import roll

ScoreBatch = Callable[[torch.Tensor], torch.Tensor]  # (B, 3, h, w) → (B,)
# (tiles (B, 3, h, w), the same windows of the original (B, 3, h, w)) → (B,): objectives that read the original
ScoreWithOriginal = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


@dataclass(frozen=True)
class Tile:
    """A window of the image: rows ``y:y+h``, columns ``x:x+w``."""

    y: int
    x: int
    h: int
    w: int


def tile_length(length: int, tile: int, align: int = 1) -> int:
    """Tile extent along one axis: ``tile`` grown by less than ``align`` so the last tile also starts aligned."""
    if tile >= length:
        return length
    return tile + (length - tile) % align


def _count(length: int, size: int, overlap: int, align: int) -> int:
    """Tiles of ``size`` (``length - size`` a multiple of ``align``) needed to cover ``length`` with aligned starts
    and at least ``overlap`` px shared by neighbours: the largest aligned step keeping the overlap sets it."""
    span = (length - size) // align  # the last start, in units of align
    if span <= 0:
        return 1
    step = max(1, (size - overlap) // align)
    return -(-span // step) + 1


def tile_starts(length: int, tile: int, overlap: int, align: int = 1) -> list[int]:
    """Start offsets of evenly spread tiles of size ``tile_length(length, tile, align)`` covering ``[0, length)``.

    Every start is a multiple of ``align``: with ``align`` = the network's stride, each tile sees the image on the
    same sampling grid as the whole image would, so the tiled gradient matches the untiled one. Neighbours share
    at least ``overlap`` px.
    """
    size = tile_length(length, tile, align)
    if size >= length:
        return [0]
    overlap = min(overlap, size - 1)
    span = (length - size) // align
    n = min(_count(length, size, overlap, align), span + 1)
    return [round(i * span / (n - 1)) * align for i in range(n)]


def fitted_tile(length: int, tile: int, overlap: int, align: int = 1) -> int:
    """The smallest tile that covers ``length`` with as few tiles as ``tile`` needs (its size from
    :func:`tile_length`, so the last tile starts aligned).

    A 1500-px side cut by 1024-px tiles needs two of them either way; two 800-px tiles do it with 100 px of
    overlap instead of 548, so less of the network's work is done twice.
    """
    size = tile_length(length, tile, align)
    if size >= length:
        return length
    overlap = min(overlap, size - 1)
    n = _count(length, size, overlap, align)
    while size - align > overlap and _count(length, size - align, overlap, align) <= n:
        size -= align  # still n tiles, each one alignment step smaller
    return size


def tile_grid(height: int, width: int, tile_size: int, overlap: int, align: int = 1) -> list[Tile]:
    """Equal-sized tiles covering an image of ``height × width``, row by row, starts aligned to ``align``.

    Along each axis the tile is shrunk to :func:`fitted_tile`, so tiles overlap no more than they must.
    """
    ty, tx = fitted_tile(height, tile_size, overlap, align), fitted_tile(width, tile_size, overlap, align)
    th, tw = tile_length(height, ty, align), tile_length(width, tx, align)
    return [
        Tile(y, x, th, tw)
        for y in tile_starts(height, ty, overlap, align)
        for x in tile_starts(width, tx, overlap, align)
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


Window = list[tuple[slice, slice]]  # (rows or columns of the image, the same ones' place in the tile)


def _window(start: int, size: int, length: int) -> Window:
    """Rows (or columns) ``start … start+size-1`` of a circular axis of ``length``: one piece, or two where the
    window wraps round the end (its first part at the end of the image, the rest from its start)."""
    start %= length
    if start + size <= length:
        return [(slice(start, start + size), slice(0, size))]
    first = length - start
    return [(slice(start, length), slice(0, first)), (slice(0, size - first), slice(first, size))]


def _pieces(rows: Window, cols: Window) -> list[tuple[slice, slice, slice, slice]]:
    """(image rows, image columns, tile rows, tile columns) of each rectangle of a (wrapped) tile."""
    return [(r, c, tr, tc) for r, tr in rows for c, tc in cols]


def _crop(image: torch.Tensor, rows: Window, cols: Window) -> torch.Tensor:
    """The tile ``image[:, :, rows, cols]``: a view where it does not wrap, else a copy put together from pieces."""
    pieces = _pieces(rows, cols)
    if len(pieces) == 1:
        r, c, _, _ = pieces[0]
        return image[:, :, r, c]
    h, w = rows[-1][1].stop, cols[-1][1].stop
    out = image.new_empty(*image.shape[:2], h, w)
    for r, c, tr, tc in pieces:
        out[:, :, tr, tc] = image[:, :, r, c]
    return out


def _add_into(target: torch.Tensor, rows: Window, cols: Window, value: torch.Tensor) -> None:
    """``target[..., rows, cols] += value``, piece by piece where the window wraps."""
    for r, c, tr, tc in _pieces(rows, cols):
        target[..., r, c] += value[..., tr, tc]


def tiled_gradient(
    image: torch.Tensor,
    score: ScoreBatch | ScoreWithOriginal,
    tile_size: int,
    overlap: int,
    batch: int = 1,
    align: int = 1,
    shift: tuple[int, int] = (0, 0),
    original: torch.Tensor | None = None,
) -> tuple[torch.Tensor, float]:
    """Gradient of the image's score, computed tile by tile.

    ``image``: (1, 3, H, W). ``score`` maps a batch of tiles (B, 3, h, w) to (B,) scores. Returns the blended
    gradient (1, 3, H, W) and the mean tile score. ``batch`` tiles go through the network at once; tile
    starts are multiples of ``align`` (pass the network's stride).

    ``shift = (dy, dx)``: the gradient of the image circularly rolled by ``shift``, handed back unrolled, the same
    values as ``roll(tiled_gradient(roll(image, dy, dx)), -dy, -dx)``. Tiles are cut from the image with the
    shift in their coordinates, wrapping round its edges, so no rolled copy of the image or of its gradient is
    ever made (two image-sized buffers fewer at 8K: 0.8 GB).

    ``original``: an image of ``image``'s shape (the octave's input) cut with the same windows as the tiles and
    passed to ``score`` as its second argument, for objectives that compare the dream with it (``l2pull()``);
    ``score`` is then a :data:`ScoreWithOriginal`.
    """
    _, _, height, width = image.shape
    if original is not None and original.shape != image.shape:
        raise ValueError(f"original {tuple(original.shape)} and image {tuple(image.shape)} differ in shape")
    dy, dx = shift
    tiles = tile_grid(height, width, tile_size, overlap, align)

    def scored(x: torch.Tensor, o: torch.Tensor | None) -> torch.Tensor:
        return score(x) if o is None else score(x, o)  # type: ignore[call-arg]

    if len(tiles) == 1:
        x = roll(image, dy, dx).detach().requires_grad_(True)
        s = scored(x, None if original is None else roll(original, dy, dx))
        s.sum().backward()
        assert x.grad is not None
        return roll(x.grad, -dy, -dx), float(s.detach().sum())
    grad = torch.zeros(image.shape, dtype=image.dtype, device=image.device)  # NCHW whatever the image's layout
    weight = torch.zeros(1, 1, height, width, device=image.device)
    total = 0.0
    share = tiles[0].h * tiles[0].w / (height * width)
    for i in range(0, len(tiles), batch):
        group = tiles[i : i + batch]
        windows = [(_window(t.y - dy, t.h, height), _window(t.x - dx, t.w, width)) for t in group]
        x = torch.cat([_crop(image, rows, cols) for rows, cols in windows]).detach().requires_grad_(True)
        o = None if original is None else torch.cat([_crop(original, rows, cols) for rows, cols in windows])
        s = scored(x, o)
        (s.sum() * share).backward()
        g = x.grad
        assert g is not None
        total += float(s.detach().sum())
        for t, (rows, cols), gt in zip(group, windows, g, strict=True):
            win = blend_window(t, height, width, overlap, image.device)
            _add_into(grad[0], rows, cols, gt * win)
            _add_into(weight[0, 0], rows, cols, win)
    return grad.div_(weight), total / len(tiles)  # in place: at 8K each image-sized copy is 400 MB
