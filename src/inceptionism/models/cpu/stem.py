"""Strided stem convolutions (the image's own, a few input channels) with a faster input gradient on CPUs.

The image gradient of a network is the input gradient of its stem: a strided convolution from 3 channels.
oneDNN computes it several times slower than the forward pass, because it has only 3 output channels to work
across.
Rewritten as a *sub-pixel* convolution it is one stride-1 convolution of the output gradient with stride² × 3
output channels, one per phase of the input (every stride-th row and column, from one offset) and colour,
followed by one copy that puts each phase in its place, in the image's own NCHW layout (same values, allclose).
Figures: docs/performance.md.

Weights must be frozen (no weight gradient is computed): the extractors freeze theirs.
"""

from __future__ import annotations

from typing import Any, cast

import torch
import torch.nn.functional as F
from torch import nn

from inceptionism.models.cpu.depthwise import is_plain_strided

MAX_CHANNELS = 4  # input channels up to which a convolution counts as a stem (RGB, RGBA)


def _taps(kernel: int, stride: int, padding: int) -> dict[int, list[int]]:
    """For each phase ``b`` of the input, the offsets ``m`` with ``gx[s*a + b] += w[b + p - s*m] * gy[a + m]``."""
    return {b: [m for m in range(-kernel, kernel + 1) if 0 <= b + padding - stride * m < kernel] for b in range(stride)}


Pair = tuple[int, int]


def subpixel_kernel(weight: torch.Tensor, stride: Pair, padding: Pair) -> tuple[torch.Tensor, Pair]:
    """The input gradient's stride-1 kernel (sh·sw·Cin, Cout, Lh, Lw) and its first offsets (M0h, M0w).

    Output channel ``(bh·sw + bw)·Cin + c`` is colour ``c`` of the input phase ``(bh, bw)``.
    """
    cout, cin, kh, kw = weight.shape
    taps = [_taps(k, s, p) for k, s, p in zip((kh, kw), stride, padding, strict=True)]
    first = [min(min(m, default=0) for m in t.values()) for t in taps]
    last = [max(max(m, default=0) for m in t.values()) for t in taps]
    lh, lw = (b - a + 1 for a, b in zip(first, last, strict=True))
    sh, sw = stride
    out = weight.new_zeros(sh, sw, cin, cout, lh, lw)
    for bh, mhs in taps[0].items():
        for mh in mhs:
            for bw, mws in taps[1].items():
                for mw in mws:
                    tap = weight[:, :, bh + padding[0] - sh * mh, bw + padding[1] - sw * mw]  # (Cout, Cin)
                    out[bh, bw, :, :, mh - first[0], mw - first[1]] = tap.t()
    kernel = out.reshape(sh * sw * cin, cout, lh, lw).contiguous(memory_format=torch.channels_last)
    return kernel, (first[0], first[1])


def input_gradient(
    grad: torch.Tensor, kernel: torch.Tensor, first: tuple[int, int], size: tuple[int, int], stride: tuple[int, int]
) -> torch.Tensor:
    """The gradient of ``conv(x)`` with respect to ``x`` (of spatial ``size``) from its sub-pixel kernel."""
    lo, pads = [-f for f in first], []
    for n, lo_, k, s, length in zip(grad.shape[-2:], lo, kernel.shape[-2:], stride, size, strict=True):
        rows = -(-length // s)  # output rows per phase needed to cover the input
        pads.append((lo_, rows - 1 - (n - 1) + (k - 1 - lo_)))  # before and after, so rows come out
    pad = [max(a, b, 0) for a, b in pads]  # symmetric padding for the convolution; the surplus is cropped
    out = F.conv2d(grad, kernel, None, 1, (pad[0], pad[1]))
    (sh, sw), (r0, c0) = stride, (p - a for p, (a, _) in zip(pad, pads, strict=True))
    rows, cols = (-(-length // st) for length, st in zip(size, stride, strict=True))
    out = out[:, :, r0 : r0 + rows, c0 : c0 + cols]
    # Channels (phase row, phase column, colour) to pixels: one copy, straight into NCHW, the image's layout.
    b, cin = out.shape[0], out.shape[1] // (sh * sw)
    phases = out.permute(0, 2, 3, 1).unflatten(3, (sh, sw, cin))  # (B, rows, cols, sh, sw, Cin)
    gx = phases.permute(0, 5, 1, 3, 2, 4).reshape(b, cin, rows * sh, cols * sw)
    return gx[:, :, : size[0], : size[1]]


class _StemConv(torch.autograd.Function):
    @staticmethod
    def forward(ctx: Any, x: torch.Tensor, stem: StridedStem) -> torch.Tensor:  # type: ignore[override]
        ctx.stem, ctx.size = stem, tuple(x.shape[-2:])
        c = stem.conv
        return F.conv2d(x, c.weight, c.bias, c.stride, c.padding)

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[torch.Tensor, None]:  # type: ignore[override]
        stem: StridedStem = ctx.stem
        return stem.input_gradient(grad, ctx.size), None


def is_strided_stem(module: nn.Module | None) -> bool:
    """A plain strided ``nn.Conv2d`` (:func:`~.depthwise.is_plain_strided`) from at most :data:`MAX_CHANNELS`."""
    return is_plain_strided(module) and module.groups == 1 and module.in_channels <= MAX_CHANNELS


class StridedStem(nn.Module):
    """A strided stem convolution whose input gradient, on CPUs, is a sub-pixel convolution (see the module)."""

    def __init__(self, conv: nn.Conv2d) -> None:
        super().__init__()
        if not is_strided_stem(conv):
            raise ValueError(f"not a plain strided stem convolution: {conv}")
        self.conv = conv
        self._kernels: dict[tuple[torch.dtype, torch.device, int, int], tuple[torch.Tensor, tuple[int, int]]] = {}

    def kernel(self, dtype: torch.dtype, device: torch.device) -> tuple[torch.Tensor, tuple[int, int]]:
        """The sub-pixel kernel and its first offsets, made once per weight version, dtype and device."""
        w = self.conv.weight
        key = (dtype, device, w.data_ptr(), w._version)
        if key not in self._kernels:
            stride, padding = cast(Pair, self.conv.stride), cast(Pair, self.conv.padding)
            kernel, first = subpixel_kernel(w.detach().float(), stride, padding)
            self._kernels = {key: (kernel.to(device, dtype), first)}
        return self._kernels[key]

    def input_gradient(self, grad: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
        """The gradient with respect to an input of spatial ``size`` from the output gradient ``grad``."""
        kernel, first = self.kernel(grad.dtype, grad.device)
        grad = grad.contiguous(memory_format=torch.channels_last)
        return input_gradient(grad, kernel, first, size, cast(Pair, self.conv.stride))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        wanted = torch.is_grad_enabled() and x.requires_grad and not self.conv.weight.requires_grad
        if x.device.type == "cpu" and wanted:
            return cast(torch.Tensor, _StemConv.apply(x, self))
        return self.conv(x)
