"""A convolution node of the CPU gradient program: oneDNN-packed weights, a fused activation, its input gradient.

oneDNN picks its weight layout by input shape, and eager PyTorch reorders the weights on every call. Here they
are reordered once per shape and kept (:class:`Packs`), for the convolution and for its input gradient, which is
its transposed convolution (for a dense stride-1 convolution: a forward convolution of the flipped kernel, the
same sums, whose set-up for a new shape costs less; strided stems and low-precision strided depthwise
convolutions take the roads of :mod:`.stem` and :mod:`.depthwise`).
"""

from __future__ import annotations

import contextlib
import contextvars
from collections.abc import Callable, Iterator
from typing import Any

import torch
from torch import nn

from inceptionism.models.box_filter import BoxFilter
from inceptionism.models.cpu import depthwise, ops, stem

CL = torch.channels_last
PACKED_SHAPES = 4  # reordered weights kept per convolution by default: an octave's tile shapes, or a run's octaves
CONVS = (nn.Conv2d, BoxFilter, stem.StridedStem, depthwise.StridedDepthwise)  # modules the program runs as one
_FUSED = {"relu": ("relu", []), "relu6": ("hardtanh", [0.0, 6.0]), None: ("none", [])}
_INPUT_ONLY = [True, False, False]  # convolution_backward's output mask: no weight or bias gradients

# Shapes whose reordered weights each convolution keeps, in this context (a run sets it from its memory plan).
_packed_limit: contextvars.ContextVar[int] = contextvars.ContextVar("packed_limit", default=PACKED_SHAPES)


class Unsupported(Exception):
    """A node the program has no rule for."""


@contextlib.contextmanager
def packed_shapes(limit: int) -> Iterator[None]:
    """Within (this thread or task only): every convolution keeps reordered weights for at most ``limit``
    input shapes, dropping the least recently used; outside, :data:`PACKED_SHAPES`."""
    token = _packed_limit.set(max(1, limit))
    try:
        yield
    finally:
        _packed_limit.reset(token)


def shape_only(
    shape: torch.Size, dtype: torch.dtype, device: torch.device, layout: torch.memory_format = CL
) -> torch.Tensor:
    """An uninitialised stand-in for a forward input that was not kept: backward kernels read only its shape,
    dtype and layout."""
    return torch.empty(shape, dtype=dtype, device=device, memory_format=layout)


class Conv:
    """A convolution node's module: oneDNN-packed weights, a fused activation, and its input-gradient rule."""

    def __init__(self, module: nn.Module, act: str | None) -> None:
        conv = module.conv if isinstance(module, (stem.StridedStem, depthwise.StridedDepthwise)) else module
        self.box: BoxFilter | None = None
        self.fixed: tuple[torch.Tensor, torch.Tensor | None, int] | None = None  # (weight, bias, groups)
        if isinstance(conv, BoxFilter):
            if not conv.is_convolution:
                raise Unsupported("an average pool that excludes its padding")
            self.box, self.stride, self.padding, self.dilation = conv, [1, 1], [conv.padding] * 2, [1, 1]
        elif type(conv) is nn.Conv2d and conv.padding_mode == "zeros" and not isinstance(conv.padding, str):
            self.stride, self.padding, self.dilation = list(conv.stride), list(conv.padding), list(conv.dilation)
            self.fixed = (conv.weight, conv.bias, conv.groups)  # the parameters themselves: .to() keeps them
        else:
            raise Unsupported(f"convolution {type(conv).__name__}")
        self.pairs = ((self.stride[0], self.stride[1]), (self.padding[0], self.padding[1]))  # for depthwise
        self.stem = module if isinstance(module, stem.StridedStem) else None
        self.strided_depthwise = isinstance(module, depthwise.StridedDepthwise)
        # A dense stride-1 convolution's input gradient is a forward convolution of the flipped, transposed kernel
        # with the complementary padding (None: another kind of convolution)
        self.flipped_padding: list[int] | None = None
        if self.fixed is not None and self.fixed[2] == 1 and self.stride == [1, 1] and self.dilation == [1, 1]:
            k = self.fixed[0].shape[2:]
            complement = [k[0] - 1 - self.padding[0], k[1] - 1 - self.padding[1]]
            self.flipped_padding = complement if min(complement) >= 0 else None
        self.act, (self.attr, self.scalars) = act, _FUSED[act]
        self.forward_weights = Packs()  # reordered for the convolution, by input shape
        self.reverse_weights = Packs()  # reordered for its transpose (the input gradient), by gradient shape

    def packed_bytes(self) -> int:
        """Bytes one shape's reordered weights take, both directions (a box filter's are made per call)."""
        if self.fixed is None:
            return 0
        weight = self.fixed[0]
        return 2 * weight.numel() * weight.element_size()

    def weights(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None, int]:
        """(weight, bias, groups) for input ``x``."""
        if self.fixed is not None:
            return self.fixed
        box = self.box
        assert box is not None
        return box.weight(x.shape[1], x.dtype, x.device), box.bias, x.shape[1]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        weight, bias, groups = self.weights(x)
        p, s, d = self.padding, self.stride, self.dilation
        w = self.forward_weights.get(weight, x.shape, lambda: _reorder_for_forward(weight, p, s, d, groups, x.shape))
        attr, scalars = self.attr, self.scalars
        y: torch.Tensor = ops.CONV(x, w, bias, self.padding, self.stride, self.dilation, groups, attr, scalars, "")
        return y

    def input_gradient(self, grad: torch.Tensor, x: torch.Size, dtype: torch.dtype) -> torch.Tensor:
        """The gradient with respect to an input of shape ``x`` from the output gradient ``grad`` (masked).

        It is the transposed convolution of ``grad``, run by oneDNN with weights reordered for it once per shape
        (for a dense stride-1 convolution: a forward convolution of the flipped kernel, whose set-up for a new
        shape costs less). ``convolution_backward`` computes the same sums (bit-equal in the tests) but reorders
        the weights on every call."""
        if self.stem is not None:
            return self.stem.input_gradient(grad, (x[2], x[3]))
        grad = grad.contiguous(memory_format=CL)
        weight, _, groups = self.weights(grad)
        if self.strided_depthwise and dtype in depthwise.LOW_PRECISION:
            return depthwise.input_gradient(grad, weight, (x[2], x[3]), *self.pairs)
        pad = self.flipped_padding
        if pad is not None:
            w_t = self.reverse_weights.get(weight, grad.shape, lambda: self._reorder_flipped(weight, pad, grad.shape))
            gf: torch.Tensor = ops.CONV(grad, w_t, None, pad, [1, 1], [1, 1], 1, "none", [], "")
            return gf
        key = (grad.shape, x)
        transposed = self.reverse_weights.get(weight, key, lambda: self._reorder_transposed(weight, groups, *key))
        if transposed is not None:
            w, extra = transposed
            p, s, d = self.padding, self.stride, self.dilation
            g: torch.Tensor = ops.TRANSPOSED_CONV(grad, w, None, p, extra, s, d, groups, "none", [], "")
            return g
        stand_in = shape_only(x, dtype, grad.device)
        gx: torch.Tensor = ops.CONV_BACKWARD(
            grad, stand_in, weight, None, self.stride, self.padding, self.dilation, False, [0, 0], groups, _INPUT_ONLY
        )[0]
        return gx

    def _reorder_flipped(self, weight: torch.Tensor, padding: list[int], grad: torch.Size) -> torch.Tensor:
        """The kernel flipped in space, its input and output channels swapped, reordered for a forward convolution
        of ``grad``: the transposed convolution's sums (bit for bit in the tests), which oneDNN sets up for a new
        shape faster and runs as fast."""
        flipped = weight.flip(2, 3).transpose(0, 1).contiguous()
        return _reorder_for_forward(flipped, padding, [1, 1], [1, 1], 1, grad)

    def _reorder_transposed(
        self, weight: torch.Tensor, groups: int, grad: torch.Size, x: torch.Size
    ) -> tuple[torch.Tensor, list[int]] | None:
        """Weights reordered for the transposed convolution from ``grad`` to ``x``, and its output padding (the
        rows and columns a strided convolution skipped at the end); None where this build cannot run it."""
        if ops.TRANSPOSED_CONV is None or ops.REORDER_TRANSPOSED_CONV_WEIGHT is None:
            return None
        p, s, d, k = self.padding, self.stride, self.dilation, weight.shape[2:]
        extra = [x[i + 2] - ((grad[i + 2] - 1) * s[i] - 2 * p[i] + d[i] * (k[i] - 1) + 1) for i in (0, 1)]
        try:
            return ops.REORDER_TRANSPOSED_CONV_WEIGHT(weight, p, extra, s, d, groups, list(grad)), extra
        except RuntimeError:
            return None


def _reorder_for_forward(
    weight: torch.Tensor, padding: list[int], stride: list[int], dilation: list[int], groups: int, x: torch.Size
) -> torch.Tensor:
    """``weight`` reordered into oneDNN's layout for a forward convolution of an input of shape ``x``."""
    if ops.REORDER_CONV_WEIGHT is None:
        return weight
    try:
        packed: torch.Tensor = ops.REORDER_CONV_WEIGHT(weight, padding, stride, dilation, groups, list(x))
    except RuntimeError:  # a build without the reorder for this dtype: oneDNN reorders per call
        return weight
    return packed


class Packs:
    """A convolution's weights reordered into oneDNN's layout for the last few input shapes: as many as
    :func:`packed_shapes` allows where :meth:`get` is called.

    oneDNN picks its layout by input shape: weights reordered for another shape run several times slower. A
    changed weight (another tensor, or the same one written in place) is reordered anew. The reordered weights
    are a cache shared by every run of the extractor; the limit is the caller's, never stored here."""

    def __init__(self) -> None:
        self._packed: dict[tuple[Any, ...], Any] = {}  # most recently used last
        self._last: tuple[tuple[Any, ...], Any] | None = None

    def __len__(self) -> int:
        return len(self._packed)

    def _evict(self, room: int) -> None:
        """Drop the least recently used shapes until at most ``room`` are left."""
        while len(self._packed) > room:
            key = next(iter(self._packed))
            del self._packed[key]
            if self._last is not None and self._last[0] == key:
                self._last = None

    def get(self, weight: torch.Tensor, shape: Any, reorder: Callable[[], Any]) -> Any:
        """The weights reordered for ``shape`` (by ``reorder``, when new)."""
        key = (weight.dtype, weight.device, weight.data_ptr(), weight._version, shape)
        limit = _packed_limit.get()
        if self._last is not None and self._last[0] == key:
            if len(self._packed) > limit:  # a lower limit than the last call's: the others go now
                self._evict(limit)
            return self._last[1]
        if key in self._packed:
            packed = self._packed.pop(key)
            self._evict(limit - 1)
        else:
            self._evict(limit - 1)  # before the new one is made: the memory planned for it is free
            packed = reorder()
        self._packed[key] = packed
        self._last = (key, packed)
        return packed
