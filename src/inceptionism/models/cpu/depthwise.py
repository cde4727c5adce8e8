"""Strided depthwise convolutions in bf16/fp16 whose input gradient takes a faster road on CPUs (allclose).

oneDNN's low-precision input gradient of a strided depthwise convolution (EfficientNet's downsampling layers)
is many times slower than its forward pass on CPUs. Two roads around it (figures: docs/performance.md):

- **phases** (large gradients): each of the stride² phases of the input (every stride-th row and column, from
  one offset) gets its gradient from a stride-1 convolution of the output gradient with just the kernel taps
  that reach it, run in the low precision and written into its place.
- **fp32 route** (small gradients, less overhead): ``conv_transpose2d`` in fp32, cast back.

In fp32, and at stride 1, oneDNN's own gradient is as fast as any road tried (flipped-kernel forward included).
Weights must be frozen (no weight gradient is computed): the extractors freeze theirs.
"""

from __future__ import annotations

from typing import Any, TypeGuard, cast

import torch
import torch.nn.functional as F
from torch import nn

LOW_PRECISION = (torch.bfloat16, torch.float16)
PHASES_FROM = 2**21  # input-gradient elements from which phases beat the fp32 route (bf16)


def _phases(
    grad: torch.Tensor, weight: torch.Tensor, size: tuple[int, int], stride: tuple[int, int], padding: tuple[int, int]
) -> torch.Tensor:
    """Input gradient of a strided depthwise convolution, one stride-1 convolution per phase of the input."""
    (sh, sw), (ph, pw), (h, w) = stride, padding, size
    channels = grad.shape[1]
    out = torch.empty(
        grad.shape[0], channels, h, w, dtype=grad.dtype, device=grad.device, memory_format=torch.channels_last
    )
    for rh in range(sh):
        for rw in range(sw):
            i0, j0 = (rh - ph) % sh, (rw - pw) % sw  # the first input row and column of this phase
            rows, cols = len(range(i0, h, sh)), len(range(j0, w, sw))
            if rows == 0 or cols == 0:
                continue
            taps = weight[:, :, rh::sh, rw::sw]  # the kernel taps that land on this phase
            if taps.numel() == 0:
                out[:, :, i0::sh, j0::sw] = 0
                continue
            mh, mw = taps.shape[-2:]
            qh, qw = (i0 + ph - rh) // sh, (j0 + pw - rw) // sw  # the gradient row/column of its first pixel
            part = F.conv2d(grad, taps.flip(2, 3), None, 1, (mh - 1, mw - 1), 1, channels)
            part = part[:, :, qh : qh + rows, qw : qw + cols]
            if part.shape[-2:] != (rows, cols):  # input rows no window reads get no gradient
                part = F.pad(part, (0, cols - part.shape[-1], 0, rows - part.shape[-2]))
            out[:, :, i0::sh, j0::sw] = part
    return out


def _fp32_route(
    grad: torch.Tensor, weight: torch.Tensor, size: tuple[int, int], stride: tuple[int, int], padding: tuple[int, int]
) -> torch.Tensor:
    kh, kw = weight.shape[-2:]
    extra = [
        s - ((n - 1) * st - 2 * p + k)
        for s, n, st, p, k in zip(size, grad.shape[-2:], stride, padding, (kh, kw), strict=True)
    ]
    out = F.conv_transpose2d(grad.float(), weight.float(), None, stride, padding, extra, grad.shape[1])
    return out.to(grad.dtype)


def input_gradient(
    grad: torch.Tensor, weight: torch.Tensor, size: tuple[int, int], stride: tuple[int, int], padding: tuple[int, int]
) -> torch.Tensor:
    """The gradient of ``depthwise_conv(x)`` with respect to ``x`` (of spatial ``size``), given ``grad``."""
    if grad.shape[0] * grad.shape[1] * size[0] * size[1] >= PHASES_FROM:
        return _phases(grad, weight, size, stride, padding)
    return _fp32_route(grad, weight, size, stride, padding)


class _DepthwiseConv(torch.autograd.Function):
    @staticmethod
    def forward(  # type: ignore[override]
        ctx: Any,
        x: torch.Tensor,
        weight: torch.Tensor,
        bias: torch.Tensor | None,
        stride: tuple[int, int],
        padding: tuple[int, int],
    ) -> torch.Tensor:
        ctx.save_for_backward(weight)
        ctx.size, ctx.stride, ctx.padding = tuple(x.shape[-2:]), stride, padding
        return F.conv2d(x, weight, bias, stride, padding, 1, x.shape[1])

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[torch.Tensor, None, None, None, None]:  # type: ignore[override]
        (weight,) = ctx.saved_tensors
        grad = grad.contiguous(memory_format=torch.channels_last)
        return input_gradient(grad, weight, ctx.size, ctx.stride, ctx.padding), None, None, None, None


def _faster(x: torch.Tensor, weight: torch.Tensor, stride: tuple[int, int]) -> bool:
    """Whether our input gradient beats oneDNN's here: CPU, bf16/fp16, strided, frozen weights, grad wanted."""
    if x.device.type != "cpu" or x.dtype not in LOW_PRECISION or stride == (1, 1) or weight.requires_grad:
        return False
    return torch.is_grad_enabled() and x.requires_grad


def depthwise_conv2d(
    x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None, stride: tuple[int, int], padding: tuple[int, int]
) -> torch.Tensor:
    """``F.conv2d(x, weight, bias, stride, padding, groups=channels)`` (weight (C, 1, kh, kw)); see the module."""
    if _faster(x, weight, stride):
        return cast(torch.Tensor, _DepthwiseConv.apply(x, weight, bias, stride, padding))
    return F.conv2d(x, weight, bias, stride, padding, 1, x.shape[1])


def is_plain_strided(module: nn.Module | None) -> TypeGuard[nn.Conv2d]:
    """A plain ``nn.Conv2d`` (not a subclass), strided, zero padding given as numbers, no dilation."""
    if type(module) is not nn.Conv2d or module.padding_mode != "zeros" or isinstance(module.padding, str):
        return False
    return module.dilation == (1, 1) and max(module.stride) > 1


def is_strided_depthwise(module: nn.Module | None) -> bool:
    """A plain strided depthwise ``nn.Conv2d``: a filter per channel (:func:`is_plain_strided`)."""
    return is_plain_strided(module) and module.groups == module.in_channels == module.out_channels > 1


class StridedDepthwise(nn.Module):
    """A strided depthwise :class:`~torch.nn.Conv2d` run through :func:`depthwise_conv2d` (faster backward)."""

    def __init__(self, conv: nn.Conv2d) -> None:
        super().__init__()
        if not is_strided_depthwise(conv):
            raise ValueError(f"not a plain strided depthwise convolution: {conv}")
        self.conv = conv

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        c = self.conv
        return depthwise_conv2d(x, c.weight, c.bias, cast(tuple[int, int], c.stride), cast(tuple[int, int], c.padding))
