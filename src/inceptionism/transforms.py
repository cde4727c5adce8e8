"""Pure tensor functions on (B, C, H, W) images: resizing, the octave pyramid, jitter, gradient normalisation."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

GRAD_NORMS = ("mean_abs", "std", "laplacian")


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
    """The factor (a 0-dim tensor) that gives a gradient a fixed size: 1 / (its mean absolute value or std).

    ``"laplacian"`` reshapes the gradient rather than scaling it (:func:`laplacian_normalize`); its scale is
    then the mean-absolute one, so ``step_size`` means the same with every method.
    """
    if method in ("mean_abs", "laplacian"):
        return 1 / (g.abs().mean() + eps)
    if method == "std":
        return 1 / (g.std() + eps)
    raise ValueError(f"unknown gradient normalisation {method!r}; choose one of {', '.join(GRAD_NORMS)}")


def normalize_gradient(
    g: torch.Tensor, method: str = "mean_abs", eps: float = 1e-8, wrap: bool = False
) -> torch.Tensor:
    """Scale a gradient so steps have a fixed size: divide by its mean absolute value or its std; with
    ``"laplacian"``, equalise its frequency bands first (:func:`laplacian_normalize`, circular borders if
    ``wrap``)."""
    if method == "laplacian":
        g = laplacian_normalize(g, wrap=wrap)
    return g * gradient_scale(g, method, eps)


def ascend(
    image: torch.Tensor,
    g: torch.Tensor,
    step_size: float,
    method: str,
    in_place: bool = False,
    wrap: bool = False,
    mask: torch.Tensor | None = None,
) -> torch.Tensor:
    """``clamp(image + step_size * normalize_gradient(g, method, wrap=wrap), 0, 1)`` in one pass over the image
    and one in place; ``in_place``: written into ``image`` (the same values); ``wrap``: a tileable image's
    Laplacian normalisation. ``mask`` (1, 1, H, W) in [0, 1] scales the step per pixel; the normalisation's
    scale comes from the whole, unmasked gradient (a mostly black mask must not enlarge the rest's steps)."""
    if method == "laplacian":
        g = laplacian_normalize(g, wrap=wrap)
    scale = step_size * gradient_scale(g, method)
    if mask is not None:
        g = g * mask
    out = image.addcmul_(g, scale) if in_place else torch.addcmul(image, g, scale)
    return out.clamp_(0.0, 1.0)


def pixels(size: tuple[int, int]) -> int:
    return math.prod(size)


PADDINGS = ("zeros", "reflect", "circular")


def _pad_index(n: int, before: int, after: int, padding: str, device: torch.device) -> torch.Tensor:
    """Indices into an axis of length ``n`` for positions ``-before … n+after-1``, wrapped or mirrored (without
    repeating the edge) so any pad width works, even one wider than the axis."""
    i = torch.arange(-before, n + after, device=device)
    if padding == "circular":
        return i.remainder(n)
    if n == 1:
        return torch.zeros_like(i)
    period = 2 * (n - 1)
    i = i.remainder(period)
    return torch.where(i >= n, period - i, i)


def pad(x: torch.Tensor, top: int, bottom: int, left: int, right: int, padding: str) -> torch.Tensor:
    """(B, C, H, W) → (B, C, top+H+bottom, left+W+right), padded with zeros, the mirror image (``"reflect"``,
    the edge pixel not repeated) or the opposite edge (``"circular"``); any width, even wider than the image."""
    if min(top, bottom, left, right) < 0:
        raise ValueError(f"pad widths must be >= 0, got {(top, bottom, left, right)}")
    if padding == "zeros":
        return F.pad(x, (left, right, top, bottom))
    if padding not in PADDINGS:
        raise ValueError(f"unknown padding {padding!r}; choose one of {', '.join(PADDINGS)}")
    h, w = x.shape[-2:]
    if max(top, bottom) < h and max(left, right) < w:  # torch's own kernels: the same values, far faster
        return F.pad(x, (left, right, top, bottom), mode=padding)
    rows = _pad_index(h, top, bottom, padding, x.device)
    cols = _pad_index(w, left, right, padding, x.device)
    return x.index_select(-2, rows).index_select(-1, cols)


def gaussian_kernel1d(
    sigma: float, dtype: torch.dtype = torch.float32, device: torch.device | None = None
) -> torch.Tensor:
    """The sampled Gaussian of standard deviation ``sigma`` px over ``±ceil(3 sigma)`` taps, summing to 1."""
    radius = max(1, math.ceil(3 * sigma))
    t = torch.arange(-radius, radius + 1, dtype=torch.float64)
    k = torch.exp(-0.5 * (t / sigma) ** 2)
    return (k / k.sum()).to(dtype=dtype, device=device)


def gaussian_blur(x: torch.Tensor, sigma: float, padding: str = "reflect") -> torch.Tensor:
    """Separable Gaussian blur of (B, C, H, W), each channel alone, same shape and dtype.

    ``sigma`` in pixels (0: ``x`` itself); ``padding``: ``"reflect"`` (mirror at the borders), ``"circular"``
    (the opposite edge, for tileable images) or ``"zeros"``. Smoothing a gradient keeps the dream's strokes
    broad: fine, high-frequency detail is what it removes.
    """
    if not math.isfinite(sigma) or sigma < 0:
        raise ValueError(f"blur sigma must be a finite number >= 0, got {sigma}")
    if x.dim() != 4:
        raise ValueError(f"expected a (B, C, H, W) tensor, got shape {tuple(x.shape)}")
    if sigma == 0:
        return x
    k = gaussian_kernel1d(sigma, x.dtype, x.device)
    r, c = k.numel() // 2, x.shape[1]
    out = F.conv2d(pad(x, r, r, 0, 0, padding), k.view(1, 1, -1, 1).expand(c, 1, -1, 1), groups=c)
    return F.conv2d(pad(out, 0, 0, r, r, padding), k.view(1, 1, 1, -1).expand(c, 1, 1, -1), groups=c)


# The 5-tap binomial kernel of Mordvintsev's DeepDream notebook (lap_split), as an outer product.
_BINOMIAL = (1.0, 4.0, 6.0, 4.0, 1.0)


def _binomial(c: int, dtype: torch.dtype, device: torch.device) -> torch.Tensor:
    """(C, 1, 5, 5) depthwise weights of the normalised 5×5 binomial kernel."""
    k = torch.tensor(_BINOMIAL, dtype=torch.float64)
    k2 = torch.outer(k, k) / k.sum() ** 2
    return k2.to(dtype=dtype, device=device).expand(c, 1, 5, 5)


def _same_pads(n: int) -> tuple[int, int, int]:
    """TensorFlow's ``SAME`` padding for a 5-tap, stride-2 convolution of length ``n``: (out, before, after)."""
    out = (n + 1) // 2
    total = 2 * (out - 1) + 5 - n
    return out, total // 2, total - total // 2


def _pyramid_down(x: torch.Tensor, wrap: bool) -> torch.Tensor:
    """Blur with the binomial kernel and keep every other pixel: (B, C, H, W) → (B, C, ceil(H/2), ceil(W/2))."""
    (_, top, bottom), (_, left, right) = _same_pads(x.shape[-2]), _same_pads(x.shape[-1])
    padded = pad(x, top, bottom, left, right, "circular" if wrap else "zeros")
    return F.conv2d(padded, _binomial(x.shape[1], x.dtype, x.device), stride=2, groups=x.shape[1])


def _fold(full: torch.Tensor, dim: int, start: int, n: int, wrap: bool) -> torch.Tensor:
    """Positions ``start … start+n-1`` of ``full`` along ``dim``; with ``wrap``, the positions outside are added
    onto the ones they were wrapped from (the adjoint of circular padding)."""
    if not wrap:
        return full.narrow(dim, start, n)
    shape = list(full.shape)
    shape[dim] = n
    index = (torch.arange(full.shape[dim], device=full.device) - start).remainder(n)
    return full.new_zeros(shape).index_add_(dim, index, full)


def _pyramid_up(lo: torch.Tensor, size: tuple[int, int], wrap: bool) -> torch.Tensor:
    """The adjoint of :func:`_pyramid_down` times 4 (TensorFlow's ``conv2d_transpose`` of the notebook): spreads
    (B, C, h, w) back onto ``size``, keeping a constant constant away from the borders."""
    c = lo.shape[1]
    full = F.conv_transpose2d(lo, 4 * _binomial(c, lo.dtype, lo.device), stride=2, groups=c)
    (_, top, _), (_, left, _) = _same_pads(size[0]), _same_pads(size[1])
    return _fold(_fold(full, -2, top, size[0], wrap), -1, left, size[1], wrap)


def laplacian_normalize(grad: torch.Tensor, levels: int = 4, eps: float = 1e-10, wrap: bool = False) -> torch.Tensor:
    """Mordvintsev's ``lap_normalize``: equalise a gradient's frequency bands. (B, C, H, W) → the same shape.

    The gradient is split into a Laplacian pyramid of ``levels`` detail bands and a low-pass residual (each
    split: binomial 5×5 blur and stride 2 down, its adjoint ×4 back up, the band the difference), each band is
    divided by its root mean square (the notebook's ``normalize_std``; per batch item, at least ``eps``), and
    the bands are added back up. Without the division the merge gives back ``grad`` exactly (up to rounding).
    The effect: coarse structure gets as large a step as fine detail, so dreams grow bigger, smoother forms.
    ``wrap``: circular borders (tileable images) instead of the notebook's zero padding.
    """
    if grad.dim() != 4:
        raise ValueError(f"expected a (B, C, H, W) gradient, got shape {tuple(grad.shape)}")
    if levels < 0:
        raise ValueError(f"levels must be >= 0, got {levels}")
    bands = []
    img = grad
    for _ in range(levels):
        lo = _pyramid_down(img, wrap)
        bands.append(img - _pyramid_up(lo, (img.shape[-2], img.shape[-1]), wrap))
        img = lo

    def unit(band: torch.Tensor) -> torch.Tensor:
        rms = band.square().mean(dim=(1, 2, 3), keepdim=True).sqrt()
        return band / rms.clamp_min(eps)

    out = unit(img)
    for band in reversed(bands):
        out = _pyramid_up(out, (band.shape[-2], band.shape[-1]), wrap) + unit(band)
    return out
