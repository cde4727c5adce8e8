"""Node matching on traced feature graphs, shared by the graph passes (:mod:`.optimize`) and the CPU gradient
program (:mod:`.cpu.program`): what counts as an activation, a max pool, a 1×1 convolution."""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import fx, nn

RELUS = (F.relu, torch.relu, torch.relu_)
MAX_POOLS = (F.max_pool2d, torch.max_pool2d)
_POOL_PARAMS = ("input", "kernel_size", "stride", "padding", "dilation", "ceil_mode", "return_indices")


def activation(node: fx.Node, modules: dict[str, nn.Module]) -> str | None:
    """``"relu"`` or ``"relu6"`` for an activation node (module, function or method), else None.

    Both are monotonic, so they commute with a max (:func:`.optimize.pool_before_activation`)."""
    if node.op == "call_module":
        m = modules.get(str(node.target))
        if type(m) is nn.ReLU:
            return "relu"
        return "relu6" if type(m) is nn.ReLU6 else None
    if node.op == "call_method":
        return "relu" if node.target in ("relu", "relu_") else None
    if node.op == "call_function":
        if node.target in RELUS:
            return "relu"
        return "relu6" if node.target is F.relu6 else None
    return None


def pair(v: Any) -> list[int]:
    """An int or a pair as ``[a, b]``."""
    return [int(i) for i in v] if isinstance(v, (tuple, list)) else [int(v), int(v)]


def pair_or_none(v: Any) -> list[int | None]:
    """An int, None or a pair of them as ``[a, b]`` (an adaptive pool's output size)."""
    return list(v) if isinstance(v, (tuple, list)) else [v, v]


def max_pool_params(node: fx.Node, modules: dict[str, nn.Module]) -> list[Any] | None:
    """``[kernel, stride, padding, dilation, ceil_mode]`` of a max-pool node returning values only, else None."""
    if node.op == "call_module":
        m = modules.get(str(node.target))
        if type(m) is not nn.MaxPool2d or m.return_indices:
            return None
        p: dict[str, Any] = {"kernel_size": m.kernel_size, "stride": m.stride, "padding": m.padding}
        p.update(dilation=m.dilation, ceil_mode=m.ceil_mode)
    elif node.op == "call_function" and node.target in MAX_POOLS:
        p = {**dict(zip(_POOL_PARAMS, node.args, strict=False)), **node.kwargs}
        if p.get("return_indices"):
            return None
    else:
        return None
    kernel = pair(p["kernel_size"])
    stride = pair(p.get("stride") or kernel)  # a pool's stride defaults to its kernel
    return [kernel, stride, pair(p.get("padding", 0)), pair(p.get("dilation", 1)), bool(p.get("ceil_mode"))]


def pointwise_conv(module: nn.Module | None) -> nn.Conv2d | None:
    """``module`` if it is a plain 1×1 convolution (stride 1, no padding, one group), else None."""
    if type(module) is not nn.Conv2d:
        return None
    plain = module.stride == (1, 1) and module.padding == (0, 0) and module.dilation == (1, 1)
    return module if module.kernel_size == (1, 1) and plain and module.groups == 1 else None
