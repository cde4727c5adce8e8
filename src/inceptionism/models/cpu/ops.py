"""The PyTorch operators the CPU gradient program calls, in one place: oneDNN's private ones among them.

Each is the C++ callable behind an ``OpOverload`` (its ``_op``): calling it skips ``OpOverload.__call__``, a
Python frame per call. Private operators (``torch.ops.mkldnn.*``) may change or go in any PyTorch release: the
backend runs only on the versions :data:`.switch.TESTED_TORCH` names, and turns itself off if one raises.
"""

from __future__ import annotations

from typing import Any

import torch


def _native(overload: Any) -> Any:
    """The C++ callable behind an operator overload (the overload itself where it has none)."""
    return getattr(overload, "_op", overload)


def _mkldnn(name: str) -> Any | None:
    """``torch.ops.mkldnn.<name>.default``'s callable, or None where this build has no such operator."""
    return _native(getattr(torch.ops.mkldnn, name).default) if hasattr(torch.ops.mkldnn, name) else None


# oneDNN (private): convolutions with a fused activation on reordered weights, and the weight reorders.
CONV: Any = _mkldnn("_convolution_pointwise")
TRANSPOSED_CONV: Any = _mkldnn("_convolution_transpose_pointwise")
REORDER_CONV_WEIGHT: Any = _mkldnn("_reorder_convolution_weight")
REORDER_TRANSPOSED_CONV_WEIGHT: Any = _mkldnn("_reorder_convolution_transpose_weight")

# ATen: the kernels autograd itself calls for these gradients.
CONV_BACKWARD = _native(torch.ops.aten.convolution_backward.default)
THRESHOLD_BACKWARD = _native(torch.ops.aten.threshold_backward.default)
THRESHOLD_BACKWARD_INTO = _native(torch.ops.aten.threshold_backward.grad_input)
HARDTANH_BACKWARD = _native(torch.ops.aten.hardtanh_backward.default)
HARDTANH_BACKWARD_INTO = _native(torch.ops.aten.hardtanh_backward.grad_input)
MAX_POOL = _native(torch.ops.aten.max_pool2d_with_indices.default)
MAX_POOL_BACKWARD = _native(torch.ops.aten.max_pool2d_with_indices_backward.default)
ADAPTIVE_POOL = _native(torch.ops.aten._adaptive_avg_pool2d.default)
ADAPTIVE_POOL_BACKWARD = _native(torch.ops.aten._adaptive_avg_pool2d_backward.default)


def available() -> bool:
    """Whether this PyTorch has the oneDNN operators the program cannot run without."""
    return torch.backends.mkldnn.is_available() and CONV is not None
