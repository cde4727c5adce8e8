"""Seamless (tileable) dreams: the image is treated as one period of an endless pattern.

For the left edge to continue the right one and the top the bottom, every operation that looks past an edge
must see the opposite edge there: octave resizing (:func:`wrap_resize`), the network's convolutions
(:func:`periodic_gradient`: the gradient of the image padded circularly) and any blur or Laplacian pyramid
(``padding="circular"``, ``wrap=True`` in :mod:`inceptionism.transforms`). The start must be tileable too: a
texture or noise, or a photo made so by :func:`make_tileable`. :func:`seam_error` measures the result.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch

from inceptionism.transforms import pad


def _periodic_taps(
    n_in: int, n_out: int, dtype: torch.dtype, device: torch.device
) -> tuple[torch.Tensor, torch.Tensor]:
    """Source indices and weights, each (n_out, K), resizing a periodic axis of ``n_in`` samples to ``n_out``.

    The same triangle filter as ``F.interpolate(mode="bilinear", align_corners=False)``: plain linear
    interpolation when enlarging, widened to ``n_in / n_out`` pixels when shrinking (``antialias=True``); the
    taps that fall off either end wrap round to the other.
    """
    scale = n_in / n_out
    support = max(scale, 1.0)  # the triangle's half-width, in source pixels
    k = 2 * math.ceil(support) + 1
    centre = (torch.arange(n_out, dtype=torch.float64) + 0.5) * scale
    taps = torch.floor(centre - support + 0.5)[:, None] + torch.arange(k, dtype=torch.float64)
    w = (1 - (taps + 0.5 - centre[:, None]).abs() / support).clamp_min(0)
    w = w / w.sum(dim=1, keepdim=True)
    index = taps.long().remainder(n_in)
    return index.to(device), w.to(dtype=dtype, device=device)


def _wrap_resize_axis(x: torch.Tensor, n_out: int, dim: int) -> torch.Tensor:
    """Resize dimension ``dim`` of ``x`` to ``n_out`` as a periodic signal, one tap at a time (memory: the
    output twice, whatever the number of taps)."""
    n_in = x.shape[dim]
    if n_in == n_out:
        return x
    index, weight = _periodic_taps(n_in, n_out, x.dtype, x.device)
    shape = [1] * x.dim()
    shape[dim] = n_out
    out = torch.zeros(0)
    for t in range(index.shape[1]):
        term = x.index_select(dim, index[:, t]) * weight[:, t].view(shape)
        out = term if t == 0 else out.add_(term)
    return out


def wrap_resize(image: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Resize (B, C, H, W) to ``size = (h, w)`` as one period of a pattern repeating in both directions.

    Away from the edges the values are :func:`~inceptionism.transforms.resize`'s (bilinear, antialiased when
    shrinking); at the edges the filter reads the opposite edge instead of repeating the border pixel, so a
    tileable image stays tileable through the octaves. The same as resizing a 3 × 3 tiling and keeping its centre.
    """
    if image.dim() != 4:
        raise ValueError(f"expected a (B, C, H, W) image, got shape {tuple(image.shape)}")
    h, w = size
    if h < 1 or w < 1:
        raise ValueError(f"size must be positive, got {size}")
    return _wrap_resize_axis(_wrap_resize_axis(image, h, -2), w, -1)


def circular_pad(image: torch.Tensor, margin: int) -> torch.Tensor:
    """(B, C, H, W) → (B, C, H + 2·margin, W + 2·margin): the image with ``margin`` pixels of its opposite edges
    around it (any margin, even wider than the image)."""
    if margin < 0:
        raise ValueError(f"margin must be >= 0, got {margin}")
    return pad(image, margin, margin, margin, margin, "circular")


def crop_margin(x: torch.Tensor, margin: int) -> torch.Tensor:
    """The centre of (B, C, H + 2·margin, W + 2·margin): undoes :func:`circular_pad`'s shape."""
    if margin == 0:
        return x
    return x[..., margin:-margin, margin:-margin]


GradientFn = Callable[[torch.Tensor], tuple[torch.Tensor, float]]  # (1, 3, h, w) → (gradient, score)


def periodic_gradient(image: torch.Tensor, gradient: GradientFn, margin: int) -> tuple[torch.Tensor, float]:
    """The gradient of a tileable image: ``gradient`` of the image padded circularly by ``margin``, centre kept.

    ``image``: (1, 3, H, W); ``gradient``: e.g. ``lambda x: tiled_gradient(x, score, ...)``. Every pixel's
    gradient then comes from activations that see the image's continuation across the edges, not the network's
    zero padding: exact once ``margin`` covers the layer's receptive field twice (the activations just outside
    the edge see that far), close to it well before. Keeping the centre, rather than adding the margin's
    gradients back onto the pixels they copy, counts each activation once. Costs the margin's extra pixels.
    """
    grad, score = gradient(circular_pad(image, margin))
    return crop_margin(grad, margin), score


def _edge_weight(n: int, band: float, dtype: torch.dtype, device: torch.device) -> torch.Tensor:
    """(n,) weights: 1 at both ends of an axis, falling linearly to 0 over ``band`` samples, 0 in between."""
    i = torch.arange(n, dtype=torch.float64)
    distance = torch.minimum(i, n - 1 - i)  # to the nearer end
    return (1 - distance / band).clamp_min(0).to(dtype=dtype, device=device)


def make_tileable(image: torch.Tensor, band: float = 0.25) -> torch.Tensor:
    """A tileable version of any picture (B, C, H, W), for a seamless dream to start from.

    Along each axis in turn, the picture is cross-faded with itself rolled by half its length, over ``band`` (a
    fraction of the side, at most 0.5) at both ends: at the edges it shows its own middle, whose neighbours
    continue across the seam, and the rolled copy's seam falls in the middle, where its weight is 0. Pixels
    farther than ``band`` from every edge are unchanged; within the band the two layers show through each other.
    """
    if image.dim() != 4:
        raise ValueError(f"expected a (B, C, H, W) image, got shape {tuple(image.shape)}")
    if not 0 < band <= 0.5:
        raise ValueError(f"band must be in (0, 0.5], got {band}")
    out = image
    for dim in (-1, -2):
        n = out.shape[dim]
        width = max(1.0, min(band * n, n // 2 - 1))  # 0 on the rolled copy's seam, in the middle
        w = _edge_weight(n, width, image.dtype, image.device)
        w = w.view(-1, 1) if dim == -2 else w
        out = torch.lerp(out, torch.roll(out, n // 2, dims=dim), w)
    return out


def seam_error(image: torch.Tensor) -> float:
    """How visible the wrap-around seams of (B, C, H, W) are: the mean absolute step across them (last column →
    first, last row → first) divided by the mean step between neighbouring pixels inside the image.

    About 1 for a tileable image (its seams look like any other pair of neighbours), much more for a photo
    whose opposite edges differ; 0 for a constant image.
    """
    if image.dim() != 4 or image.shape[-1] < 2 or image.shape[-2] < 2:
        raise ValueError(f"expected a (B, C, H, W) image of at least 2 × 2, got shape {tuple(image.shape)}")
    x = image.double()
    seams = torch.cat([(x[..., 0] - x[..., -1]).flatten(), (x[..., 0, :] - x[..., -1, :]).flatten()])
    inside = torch.cat([x.diff(dim=-1).flatten(), x.diff(dim=-2).flatten()])
    typical = float(inside.abs().mean())
    jump = float(seams.abs().mean())
    if typical == 0:
        return 0.0 if jump == 0 else math.inf
    return jump / typical
