"""The CPU gradient program's node rules: a table from a node's kind to a builder of its (forward, reverse) steps.

:func:`kind` names what a node is (``"conv"``, ``"relu"``, ``"max_pool"``, ``"cat"``…); :data:`RULES` maps that
name to a builder, which checks the node's arguments and returns its forward step and its reverse step (None:
no gradient flows through it). A node of no known kind, or with arguments a builder does not take, raises
:class:`~.conv.Unsupported` naming it, and the graph keeps autograd.

Steps work on slots, one per graph node: the forward's values and the tape (what the reverse needs), the
reverse's gradients.
"""

from __future__ import annotations

import operator
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any, cast

import torch
import torch.nn.functional as F
from torch import fx, nn

from inceptionism.models.cpu import native, ops
from inceptionism.models.cpu.conv import CL, CONVS, Conv, Unsupported, shape_only
from inceptionism.models.cpu.masks import MASKS, MASKS_IN_PLACE, relu_
from inceptionism.models.graph_match import activation, max_pool_params, pair, pair_or_none

if TYPE_CHECKING:
    from inceptionism.models.cpu.program import Program

Slots = list[Any]  # one per graph node: its value (forward) or its gradient (reverse)
Forward = Callable[[Slots, Slots], None]  # (values, tape)
Reverse = Callable[[Slots, Slots], None]  # (gradients, tape)
Steps = tuple[Forward, Reverse | None]
Rule = Callable[["Program", fx.Node, list[Any]], Steps]  # (program, node, arguments as slots) → steps

_FUNCTIONS: dict[Any, str] = {
    torch.cat: "cat",
    torch.split: "split",
    torch.functional.split: "split",
    operator.getitem: "getitem",
    operator.add: "add",
    operator.iadd: "add",
    torch.add: "add",
    torch.flatten: "flatten",
    F.adaptive_avg_pool2d: "adaptive_avg_pool",
}
_METHODS = {"flatten": "flatten_method", "mean": "mean"}


def kind(node: fx.Node, modules: dict[str, nn.Module]) -> str | None:
    """The rule a node needs, by what it is (not yet by its arguments); None if there is none."""
    if node.op == "placeholder":
        return "input"
    act = activation(node, modules)
    if act is not None:
        return act
    if max_pool_params(node, modules) is not None:
        return "max_pool"
    if node.op == "call_module":
        m = modules.get(str(node.target))
        if isinstance(m, CONVS):
            return "conv"
        if isinstance(m, (nn.Dropout, nn.Identity)) and not m.training:
            return "identity"
        if type(m) is nn.AdaptiveAvgPool2d:
            return "adaptive_avg_pool_module"
        return "linear" if type(m) is nn.Linear else None
    if node.op == "call_function":
        return _FUNCTIONS.get(node.target)
    if node.op == "call_method":
        return _METHODS.get(str(node.target))
    return None


def describe(node: fx.Node, modules: dict[str, nn.Module]) -> str:
    """What a node runs, for a message: ``module SiLU``, ``call_function <built-in function mul>``."""
    if node.op == "call_module":
        return f"module {type(modules.get(str(node.target))).__name__}"
    return f"{node.op} {getattr(node.target, '__name__', node.target)}"


def _function_kwargs(node: fx.Node, allowed: set[str]) -> None:
    if node.kwargs.keys() - allowed:
        raise Unsupported(f"{node.target} with {sorted(node.kwargs)}")


def accumulate(grads: Slots, slot: int, grad: torch.Tensor) -> None:
    """Add ``grad`` into slot ``slot`` (the first gradient is kept as it is)."""
    held = grads[slot]
    grads[slot] = grad if held is None else held + grad


# -- rules -------------------------------------------------------------------------------------------------------


def _input(p: Program, node: fx.Node, args: list[Any]) -> Steps:
    return (lambda values, tape: None), None


def _alias(i: int, src: int) -> tuple[Forward, Reverse]:
    def forward(values: Slots, tape: Slots) -> None:
        values[i] = values[src]

    def reverse(grads: Slots, tape: Slots) -> None:
        accumulate(grads, src, grads[i])

    return forward, reverse


def _identity(p: Program, node: fx.Node, args: list[Any]) -> Steps:
    return _alias(p.slot[node], args[0])


def _activation(p: Program, node: fx.Node, args: list[Any]) -> Steps:
    i, src, source, act = p.slot[node], args[0], node.args[0], cast(str, activation(node, p.modules))
    if source in p.fused:  # ran inside the convolution: the same value, the convolution masks
        return _alias(i, src)
    assert isinstance(source, fx.Node)
    in_place = p.owned(source)
    if act == "relu":
        run: Callable[[torch.Tensor], torch.Tensor] = relu_ if in_place else torch.relu
    else:
        run = (lambda x: x.clamp_(0, 6)) if in_place else (lambda x: x.clamp(0, 6))
    mask = MASKS[act]

    def forward(values: Slots, tape: Slots) -> None:
        values[i] = tape[i] = run(values[src])

    def reverse(grads: Slots, tape: Slots) -> None:
        accumulate(grads, src, mask(grads[i], tape[i]))

    return forward, reverse


def _conv(p: Program, node: fx.Node, args: list[Any]) -> Steps:
    i, src = p.slot[node], args[0]
    conv = Conv(p.modules[str(node.target)], p.fused.get(node))
    p.convs.append(conv)
    act = conv.act or ""
    mask = (MASKS_IN_PLACE if p.fresh(next(iter(node.users))) else MASKS).get(act)

    def forward(values: Slots, tape: Slots) -> None:
        x = values[src]
        y = values[i] = conv.forward(x)
        tape[i] = (x.shape, x.dtype, y if mask is not None else None)

    def reverse(grads: Slots, tape: Slots) -> None:
        shape, dtype, out = tape[i]
        grad = grads[i] if mask is None else mask(grads[i], out)
        accumulate(grads, src, conv.input_gradient(grad, shape, dtype))

    return forward, reverse


def _max_pool(p: Program, node: fx.Node, args: list[Any]) -> Steps:
    i, src, params = p.slot[node], args[0], cast(list[Any], max_pool_params(node, p.modules))

    def forward(values: Slots, tape: Slots) -> None:
        x = values[src]
        # the native kernel where it runs: ATen's values, the winners as one-byte window offsets
        values[i], indices = native.max_pool(x, params) or ops.MAX_POOL(x, *params)
        tape[i] = (x.shape, x.dtype, indices)

    def reverse(grads: Slots, tape: Slots) -> None:
        shape, dtype, indices = tape[i]
        grad = grads[i]
        if indices.dtype == torch.uint8:  # the native kernel's winners
            accumulate(grads, src, native.max_pool_backward(grad.to(dtype), indices, shape, params))
            return
        stand_in = shape_only(shape, dtype, grad.device)
        accumulate(grads, src, ops.MAX_POOL_BACKWARD(grad, stand_in, *params, indices))

    return forward, reverse


def _spatial_mean(i: int, src: int, keepdim: bool) -> tuple[Forward, Reverse]:
    def mean(values: Slots, tape: Slots) -> None:
        x = values[src]
        tape[i] = x.shape
        values[i] = x.mean((2, 3), keepdim=keepdim)

    def mean_back(grads: Slots, tape: Slots) -> None:
        shape = tape[i]
        grad = grads[i] if keepdim else grads[i][:, :, None, None]
        accumulate(grads, src, grad.expand(shape) / (shape[2] * shape[3]))

    return mean, mean_back


def _adaptive_pool(i: int, src: int, output_size: Any) -> tuple[Forward, Reverse]:
    if pair_or_none(output_size) == [1, 1]:  # a mean, as PyTorch runs it
        return _spatial_mean(i, src, keepdim=True)
    if None in pair_or_none(output_size):
        raise Unsupported("an adaptive pool that keeps an input size")
    size = pair(output_size)

    def pool(values: Slots, tape: Slots) -> None:
        x = values[src]
        tape[i] = (x.shape, x.dtype, CL if x.is_contiguous(memory_format=CL) else torch.contiguous_format)
        values[i] = ops.ADAPTIVE_POOL(x, size)

    def pool_back(grads: Slots, tape: Slots) -> None:
        shape, dtype, layout = tape[i]
        grad = grads[i]
        stand_in = shape_only(shape, dtype, grad.device, layout)
        accumulate(grads, src, ops.ADAPTIVE_POOL_BACKWARD(grad, stand_in))

    return pool, pool_back


def _adaptive_pool_module(p: Program, node: fx.Node, args: list[Any]) -> Steps:
    module = cast(nn.AdaptiveAvgPool2d, p.modules[str(node.target)])
    return _adaptive_pool(p.slot[node], args[0], module.output_size)


def _adaptive_pool_function(p: Program, node: fx.Node, args: list[Any]) -> Steps:
    if len(args) != 2 or node.kwargs:
        raise Unsupported("adaptive_avg_pool2d with other than (input, output_size)")
    return _adaptive_pool(p.slot[node], args[0], node.args[1])


def _mean(p: Program, node: fx.Node, args: list[Any]) -> Steps:
    _function_kwargs(node, {"dim", "keepdim"})
    dims = node.kwargs.get("dim", args[1] if len(args) > 1 else None)
    keep = bool(node.kwargs.get("keepdim", args[2] if len(args) > 2 else False))
    if not (isinstance(dims, (list, tuple)) and sorted(dims) == [2, 3]):
        raise Unsupported(f"a mean over {dims}")
    return _spatial_mean(p.slot[node], args[0], keep)  # MNASNet's head: x.mean([2, 3])


def _linear(p: Program, node: fx.Node, args: list[Any]) -> Steps:
    m = cast(nn.Linear, p.modules[str(node.target)])
    i, src, weight, bias = p.slot[node], args[0], m.weight, m.bias

    def linear(values: Slots, tape: Slots) -> None:
        values[i] = F.linear(values[src], weight, bias)

    def linear_back(grads: Slots, tape: Slots) -> None:
        accumulate(grads, src, grads[i].to(weight.dtype) @ weight)

    return linear, linear_back


def _cat(p: Program, node: fx.Node, args: list[Any]) -> Steps:
    _function_kwargs(node, {"dim"})
    i, dim = p.slot[node], int(cast(int, node.kwargs.get("dim", args[1] if len(args) > 1 else 0)))
    srcs = [p.slot[a] for a in cast(Sequence[fx.Node], node.args[0])]

    def forward(values: Slots, tape: Slots) -> None:
        parts = [values[s] for s in srcs]
        tape[i] = [part.shape[dim] for part in parts]
        values[i] = torch.cat(parts, dim)

    def reverse(grads: Slots, tape: Slots) -> None:
        for s, part in zip(srcs, grads[i].split_with_sizes(tape[i], dim), strict=True):
            accumulate(grads, s, part)

    return forward, reverse


def _split(p: Program, node: fx.Node, args: list[Any]) -> Steps:
    _function_kwargs(node, {"dim"})
    i, src, sizes = p.slot[node], args[0], args[1]
    dim = int(cast(int, node.kwargs.get("dim", args[2] if len(args) > 2 else 0)))
    # Tensor.split is a Python wrapper; split_with_sizes is not (and an int split size is rare)
    split = torch.Tensor.split_with_sizes if isinstance(sizes, (list, tuple)) else torch.Tensor.split

    def forward(values: Slots, tape: Slots) -> None:
        parts = values[i] = split(values[src], sizes, dim)
        tape[i] = [part.shape for part in parts]

    def reverse(grads: Slots, tape: Slots) -> None:  # grads[i]: {output index: gradient} from the getitems
        pieces, shapes = grads[i], tape[i]
        some = next(iter(pieces.values()))
        parts = [
            pieces[k] if k in pieces else torch.zeros(shape, dtype=some.dtype, device=some.device)
            for k, shape in enumerate(shapes)
        ]  # fmt: skip
        accumulate(grads, src, torch.cat(parts, dim) if len(parts) > 1 else parts[0])

    return forward, reverse


def _getitem(p: Program, node: fx.Node, args: list[Any]) -> Steps:
    _function_kwargs(node, {"dim"})
    if not isinstance(node.args[1], int):
        raise Unsupported(f"an index {node.args[1]!r}")
    i, src, k = p.slot[node], args[0], node.args[1]

    def forward(values: Slots, tape: Slots) -> None:
        values[i] = values[src][k]

    def reverse(grads: Slots, tape: Slots) -> None:
        pieces = grads[src] = grads[src] or {}
        pieces[k] = grads[i] if k not in pieces else pieces[k] + grads[i]

    return forward, reverse


def _add(p: Program, node: fx.Node, args: list[Any]) -> Steps:
    if len(args) != 2 or node.kwargs:
        raise Unsupported(f"{node.target} with other than two tensors")
    i, (a, b), first = p.slot[node], args, node.args[0]
    if not (isinstance(first, fx.Node) and isinstance(node.args[1], fx.Node)):
        raise Unsupported("an addition of a constant")
    if node.target is operator.iadd and len(first.users) != 1:
        raise Unsupported("an in-place addition to a tensor read elsewhere")

    def forward(values: Slots, tape: Slots) -> None:
        values[i] = values[a] + values[b]

    def reverse(grads: Slots, tape: Slots) -> None:
        accumulate(grads, a, grads[i])
        accumulate(grads, b, grads[i])

    return forward, reverse


def _flatten_steps(i: int, src: int) -> tuple[Forward, Reverse]:
    def forward(values: Slots, tape: Slots) -> None:
        x = values[src]
        tape[i] = x.shape
        values[i] = torch.flatten(x, 1)

    def reverse(grads: Slots, tape: Slots) -> None:
        accumulate(grads, src, grads[i].reshape(tape[i]))

    return forward, reverse


def _flatten(p: Program, node: fx.Node, args: list[Any]) -> Steps:
    _function_kwargs(node, {"dim"})
    if len(args) != 2 or node.args[1] != 1:
        raise Unsupported("a flatten from other than dimension 1")
    return _flatten_steps(p.slot[node], args[0])


def _flatten_method(p: Program, node: fx.Node, args: list[Any]) -> Steps:
    _function_kwargs(node, {"start_dim"})
    start = node.kwargs.get("start_dim", node.args[1] if len(node.args) > 1 else 0)
    if start != 1 or len(args) > 2:  # x.flatten(1), RegNet's x.flatten(start_dim=1)
        raise Unsupported("a flatten from other than dimension 1")
    return _flatten_steps(p.slot[node], args[0])


RULES: dict[str, Rule] = {
    "input": _input,
    "relu": _activation,
    "relu6": _activation,
    "conv": _conv,
    "max_pool": _max_pool,
    "identity": _identity,
    "adaptive_avg_pool_module": _adaptive_pool_module,
    "adaptive_avg_pool": _adaptive_pool_function,
    "mean": _mean,
    "linear": _linear,
    "cat": _cat,
    "split": _split,
    "getitem": _getitem,
    "add": _add,
    "flatten": _flatten,
    "flatten_method": _flatten_method,
}
