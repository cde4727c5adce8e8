"""ReLU and ReLU6 for the CPU gradient program, and their gradients given the activation's output (its mask).

In bf16 the ReLU and its mask run on the raw 16-bit integers: a bf16 value is ``> 0`` exactly when its bits,
read as an int16, are, and PyTorch's int16 kernels are vectorised where its bf16 ones convert every element.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from inceptionism.models.cpu import ops

Mask = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]  # (gradient, activation output) → masked gradient


def relu_(x: torch.Tensor) -> torch.Tensor:
    """ReLU in place; bf16 on its int16 bits (negative values have the sign bit: they clamp to +0)."""
    (x.view(torch.int16) if x.dtype == torch.bfloat16 else x).clamp_min_(0)
    return x


def relu_mask(grad: torch.Tensor, out: torch.Tensor) -> torch.Tensor:
    """The gradient through a ReLU whose output was ``out``; bf16 on int16 bits (same values)."""
    if out.dtype == torch.bfloat16:
        masked: torch.Tensor = ops.THRESHOLD_BACKWARD(grad.view(torch.int16), out.view(torch.int16), 0)
        return masked.view(torch.bfloat16)
    result: torch.Tensor = ops.THRESHOLD_BACKWARD(grad, out, 0)
    return result


def relu6_mask(grad: torch.Tensor, out: torch.Tensor) -> torch.Tensor:
    """The gradient through a ReLU6 whose output was ``out`` (0 < out < 6 exactly where 0 < input < 6)."""
    result: torch.Tensor = ops.HARDTANH_BACKWARD(grad, out, 0.0, 6.0)
    return result


def relu_mask_(grad: torch.Tensor, out: torch.Tensor) -> torch.Tensor:
    """:func:`relu_mask` written into ``grad``."""
    if out.dtype == torch.bfloat16:
        bits = grad.view(torch.int16)
        ops.THRESHOLD_BACKWARD_INTO(bits, out.view(torch.int16), 0, grad_input=bits)
    else:
        ops.THRESHOLD_BACKWARD_INTO(grad, out, 0, grad_input=grad)
    return grad


def relu6_mask_(grad: torch.Tensor, out: torch.Tensor) -> torch.Tensor:
    """:func:`relu6_mask` written into ``grad``."""
    ops.HARDTANH_BACKWARD_INTO(grad, out, 0.0, 6.0, grad_input=grad)
    return grad


MASKS: dict[str, Mask] = {"relu": relu_mask, "relu6": relu6_mask}
# Written into the gradient: it reads and writes the same cache lines where a new tensor is written cold (faster
# on large tensors); for a gradient the program alone holds (see Program.fresh).
MASKS_IN_PLACE: dict[str, Mask] = {"relu": relu_mask_, "relu6": relu6_mask_}
