"""The image gradient of a feature graph on CPUs without autograd: a forward program and its hand-written reverse.

A dream step needs one thing from the network: the gradient of a score with respect to the *image*. Autograd
records every operation of the forward pass and keeps each one's inputs for a backward pass that could also
give weight gradients. :class:`Backprop` compiles a traced feature graph (after :func:`.optimize.fast_graph`)
into two straight lists of steps instead:

- **forward**: every convolution runs through oneDNN with its weights reordered into oneDNN's own layout once
  per input shape (``mkldnn._convolution_pointwise``; eager PyTorch reorders them on every call) and the ReLU
  or ReLU6 after it fused in. Nothing is recorded, and each activation is freed once its last reader has run.
- **tape**: only what the reverse needs: the output of each activation (its mask) and the argmax of each max
  pool (a one-byte window offset where :mod:`.native`'s max pool runs, else ATen's int64 index). A
  convolution's input gradient needs no input, so none is kept.
- **reverse**: the input gradient of each step, in reverse order. A convolution's is its transposed convolution,
  run by oneDNN with weights packed for it once per shape (``convolution_backward``, which autograd calls,
  computes the same sums but reorders the weights on every call); a dense stride-1 convolution's is a forward
  convolution of the flipped kernel (the same sums; oneDNN sets it up for a new shape faster); the others are the
  kernels autograd would call (``threshold_backward``, ``max_pool2d_with_indices_backward``; the strided stem and
  depthwise rules of :mod:`.stem` and :mod:`.depthwise`), except max pools where the machine can build
  :mod:`.native`'s kernel (ATen's sums bit for bit, on every core). In bf16 the ReLU and its mask run on the raw 16-bit
  integers: a bf16 value is ``> 0`` exactly when its bits, read as an int16, are, and PyTorch's int16 kernels are
  vectorised where its bf16 ones convert every element.

The results are autograd's on the same graph: bit for bit in most tests, or a rounding apart where oneDNN
picks another fp32 algorithm for reordered weights. :meth:`Backprop.compile` returns ``None`` for a graph with a
node it has no rule for, and the extractor then keeps autograd; so do other devices, fp16, ``--compile`` and
calls that want no gradient. Measured: README "Speed and memory".
"""

from __future__ import annotations

import contextlib
import operator
from collections.abc import Callable, Iterator, Sequence
from typing import Any, cast

import torch
import torch.nn.functional as F
from torch import fx, nn

from inceptionism.models import depthwise, native, stem
from inceptionism.models.optimize import BoxFilter

CL = torch.channels_last
DTYPES = (torch.float32, torch.bfloat16)  # what oneDNN runs here (fp16 needs CPU support most lack)
PACKED_SHAPES = 4  # reordered weights kept per convolution: an octave's tile shapes, or a run's octaves

Slots = list[Any]  # one per graph node: its value (forward) or its gradient (reverse)
Forward = Callable[[Slots, Slots], None]  # (values, tape)
Reverse = Callable[[Slots, Slots], None]  # (gradients, tape)

_RELUS = (F.relu, torch.relu, torch.relu_)
_SPLITS = (torch.split, torch.functional.split)
_ADDS = (operator.add, operator.iadd, torch.add)
_CONVS = (nn.Conv2d, BoxFilter, stem.StridedStem, depthwise.StridedDepthwise)


def _native(overload: Any) -> Any:
    """The C++ callable behind an operator overload: calling it skips ``OpOverload.__call__``, a Python frame
    per call that cost about 1 ms of a 42 ms W0 step (py-spy)."""
    return getattr(overload, "_op", overload)


_FUSED_CONV = hasattr(torch.ops.mkldnn, "_convolution_pointwise")  # oneDNN's convolution with fused activations
_CONV: Any = _native(torch.ops.mkldnn._convolution_pointwise.default) if _FUSED_CONV else None
_TRANSPOSED_CONV: Any = (
    _native(torch.ops.mkldnn._convolution_transpose_pointwise.default)
    if hasattr(torch.ops.mkldnn, "_convolution_transpose_pointwise")
    else None
)
_CONV_BACKWARD = _native(torch.ops.aten.convolution_backward.default)
_THRESHOLD_BACKWARD = _native(torch.ops.aten.threshold_backward.default)
_THRESHOLD_BACKWARD_INTO = _native(torch.ops.aten.threshold_backward.grad_input)
_HARDTANH_BACKWARD = _native(torch.ops.aten.hardtanh_backward.default)
_HARDTANH_BACKWARD_INTO = _native(torch.ops.aten.hardtanh_backward.grad_input)
_MAX_POOL = _native(torch.ops.aten.max_pool2d_with_indices.default)
_MAX_POOL_BACKWARD = _native(torch.ops.aten.max_pool2d_with_indices_backward.default)
_ADAPTIVE_POOL = _native(torch.ops.aten._adaptive_avg_pool2d.default)
_ADAPTIVE_POOL_BACKWARD = _native(torch.ops.aten._adaptive_avg_pool2d_backward.default)
_INPUT_ONLY = [True, False, False]  # convolution_backward's output mask: no weight or bias gradients

_memory_observers: list[Callable[[int], None]] = []


@contextlib.contextmanager
def observe_memory(observer: Callable[[int], None]) -> Iterator[None]:
    """Within: ``observer(bytes)`` after each forward run and each reverse of a program, with the most memory its
    tensors held at once (values, tape and gradients; shared storage counted once). Memory planning measures
    programs with it, and autograd graphs by the tensors they save."""
    _memory_observers.append(observer)
    try:
        yield
    finally:
        _memory_observers.remove(observer)


def held_bytes(*held: Any) -> int:
    """Bytes of the storages behind the tensors in ``held`` (nested lists, tuples and dicts), each once."""
    storages: dict[int, int] = {}
    stack = list(held)
    while stack:
        item = stack.pop()
        if isinstance(item, torch.Tensor):
            storage = item.untyped_storage()
            storages[storage.data_ptr()] = storage.nbytes()
        elif isinstance(item, (tuple, list)):
            stack.extend(item)
        elif isinstance(item, dict):
            stack.extend(item.values())
    return sum(storages.values())


class Unsupported(Exception):
    """A node :class:`Backprop` has no rule for."""


def available() -> bool:
    """Whether this PyTorch has the oneDNN operators the program runs on."""
    return torch.backends.mkldnn.is_available() and _FUSED_CONV


def relu_(x: torch.Tensor) -> torch.Tensor:
    """ReLU in place; bf16 on its int16 bits (negative values have the sign bit: they clamp to +0)."""
    (x.view(torch.int16) if x.dtype == torch.bfloat16 else x).clamp_min_(0)
    return x


def relu_mask(grad: torch.Tensor, out: torch.Tensor) -> torch.Tensor:
    """The gradient through a ReLU whose output was ``out``; bf16 on int16 bits (same values)."""
    if out.dtype == torch.bfloat16:
        masked: torch.Tensor = _THRESHOLD_BACKWARD(grad.view(torch.int16), out.view(torch.int16), 0)
        return masked.view(torch.bfloat16)
    result: torch.Tensor = _THRESHOLD_BACKWARD(grad, out, 0)
    return result


def relu6_mask(grad: torch.Tensor, out: torch.Tensor) -> torch.Tensor:
    """The gradient through a ReLU6 whose output was ``out`` (0 < out < 6 exactly where 0 < input < 6)."""
    result: torch.Tensor = _HARDTANH_BACKWARD(grad, out, 0.0, 6.0)
    return result


def relu_mask_(grad: torch.Tensor, out: torch.Tensor) -> torch.Tensor:
    """:func:`relu_mask` written into ``grad``."""
    if out.dtype == torch.bfloat16:
        bits = grad.view(torch.int16)
        _THRESHOLD_BACKWARD_INTO(bits, out.view(torch.int16), 0, grad_input=bits)
    else:
        _THRESHOLD_BACKWARD_INTO(grad, out, 0, grad_input=grad)
    return grad


def relu6_mask_(grad: torch.Tensor, out: torch.Tensor) -> torch.Tensor:
    """:func:`relu6_mask` written into ``grad``."""
    _HARDTANH_BACKWARD_INTO(grad, out, 0.0, 6.0, grad_input=grad)
    return grad


_MASKS = {"relu": relu_mask, "relu6": relu6_mask}
# Written into the gradient: it reads and writes the same cache lines where a new tensor is written cold, 20 % faster
# on large tensors; used where the gradient is the program's own (see Backprop._fresh).
_MASKS_IN_PLACE = {"relu": relu_mask_, "relu6": relu6_mask_}
_FUSED = {"relu": ("relu", []), "relu6": ("hardtanh", [0.0, 6.0]), None: ("none", [])}


def activation(node: fx.Node, modules: dict[str, nn.Module]) -> str | None:
    """``"relu"`` or ``"relu6"`` for an activation node (module, function or method), else None."""
    if node.op == "call_module":
        m = modules.get(str(node.target))
        if type(m) is nn.ReLU:
            return "relu"
        return "relu6" if type(m) is nn.ReLU6 else None
    if node.op == "call_method":
        return "relu" if node.target in ("relu", "relu_") else None
    if node.op == "call_function":
        if node.target in _RELUS:
            return "relu"
        return "relu6" if node.target is F.relu6 else None
    return None


class _Conv:
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
        self.forward_weights = _Packs()  # reordered for the convolution, by input shape
        self.reverse_weights = _Packs()  # reordered for its transpose (the input gradient), by gradient shape

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
        y: torch.Tensor = _CONV(x, w, bias, self.padding, self.stride, self.dilation, groups, attr, scalars, "")
        return y

    def input_gradient(self, grad: torch.Tensor, x: torch.Size, dtype: torch.dtype) -> torch.Tensor:
        """The gradient with respect to an input of shape ``x`` from the output gradient ``grad`` (masked).

        It is the transposed convolution of ``grad``, run by oneDNN with weights reordered for it once per shape
        (for a dense stride-1 convolution: a forward convolution of the flipped kernel, whose set-up for a new
        shape costs less). ``convolution_backward`` computes the same sums (bit-equal in the tests) but reorders
        the weights on every call, which cost 3 ms of a 74 ms W0 step in fp32 and 2 ms of 42 in bf16."""
        if self.stem is not None:
            return self.stem.input_gradient(grad, (x[2], x[3]))
        grad = grad.contiguous(memory_format=CL)
        weight, _, groups = self.weights(grad)
        if self.strided_depthwise and dtype in depthwise.LOW_PRECISION:
            return depthwise.input_gradient(grad, weight, (x[2], x[3]), *self.pairs)
        pad = self.flipped_padding
        if pad is not None:
            w_t = self.reverse_weights.get(weight, grad.shape, lambda: self._reorder_flipped(weight, pad, grad.shape))
            gf: torch.Tensor = _CONV(grad, w_t, None, pad, [1, 1], [1, 1], 1, "none", [], "")
            return gf
        key = (grad.shape, x)
        transposed = self.reverse_weights.get(weight, key, lambda: self._reorder_transposed(weight, groups, *key))
        if transposed is not None:
            w, extra = transposed
            p, s, d = self.padding, self.stride, self.dilation
            g: torch.Tensor = _TRANSPOSED_CONV(grad, w, None, p, extra, s, d, groups, "none", [], "")
            return g
        shape_only = _shape_only(x, dtype, grad.device)
        gx: torch.Tensor = _CONV_BACKWARD(
            grad, shape_only, weight, None, self.stride, self.padding, self.dilation, False, [0, 0], groups, _INPUT_ONLY
        )[0]
        return gx

    def _reorder_flipped(self, weight: torch.Tensor, padding: list[int], grad: torch.Size) -> torch.Tensor:
        """The kernel flipped in space, its input and output channels swapped, reordered for a forward convolution
        of ``grad``: the transposed convolution's sums (bit for bit in the tests), which oneDNN sets up for a new
        shape 1.5–4× faster and runs as fast (W0, the default network, VGG16: whole steps unchanged)."""
        flipped = weight.flip(2, 3).transpose(0, 1).contiguous()
        return _reorder_for_forward(flipped, padding, [1, 1], [1, 1], 1, grad)

    def _reorder_transposed(
        self, weight: torch.Tensor, groups: int, grad: torch.Size, x: torch.Size
    ) -> tuple[torch.Tensor, list[int]] | None:
        """Weights reordered for the transposed convolution from ``grad`` to ``x``, and its output padding (the
        rows and columns a strided convolution skipped at the end); None where this build cannot run it."""
        if _TRANSPOSED_CONV is None:
            return None
        p, s, d, k = self.padding, self.stride, self.dilation, weight.shape[2:]
        extra = [x[i + 2] - ((grad[i + 2] - 1) * s[i] - 2 * p[i] + d[i] * (k[i] - 1) + 1) for i in (0, 1)]
        try:
            reorder = torch.ops.mkldnn._reorder_convolution_transpose_weight
            return reorder(weight, p, extra, s, d, groups, list(grad)), extra
        except RuntimeError:
            return None


def _reorder_for_forward(
    weight: torch.Tensor, padding: list[int], stride: list[int], dilation: list[int], groups: int, x: torch.Size
) -> torch.Tensor:
    """``weight`` reordered into oneDNN's layout for a forward convolution of an input of shape ``x``."""
    try:
        reorder = torch.ops.mkldnn._reorder_convolution_weight
        packed: torch.Tensor = reorder(weight, padding, stride, dilation, groups, list(x))
    except RuntimeError:  # a build without the reorder for this dtype: oneDNN reorders per call
        return weight
    return packed


class _Packs:
    """A convolution's weights reordered into oneDNN's layout for the last :data:`PACKED_SHAPES` shapes (or
    :meth:`keep`'s).

    oneDNN picks its layout by input shape: weights reordered for another shape run 3–20× slower. A changed
    weight (another tensor, or the same one written in place) is reordered anew."""

    def __init__(self) -> None:
        self._packed: dict[tuple[Any, ...], Any] = {}  # most recently used last
        self._last: tuple[tuple[Any, ...], Any] | None = None
        self.limit = PACKED_SHAPES

    def __len__(self) -> int:
        return len(self._packed)

    def keep(self, shapes: int) -> None:
        """Keep at most ``shapes`` shapes from now on (the least recently used go now)."""
        self.limit = max(1, shapes)
        self._evict(self.limit)

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
        if self._last is not None and self._last[0] == key:
            return self._last[1]
        if key in self._packed:
            packed = self._packed.pop(key)
        else:
            packed = reorder()
            self._evict(self.limit - 1)
        self._packed[key] = packed
        self._last = (key, packed)
        return packed


def _pair(v: Any) -> list[int]:
    return [int(i) for i in v] if isinstance(v, (tuple, list)) else [int(v), int(v)]


def _pair_or_none(v: Any) -> list[int | None]:
    return list(v) if isinstance(v, (tuple, list)) else [v, v]


_POOL_PARAMS = ("input", "kernel_size", "stride", "padding", "dilation", "ceil_mode", "return_indices")


def _pool_params(node: fx.Node, modules: dict[str, nn.Module]) -> list[Any] | None:
    """[kernel, stride, padding, dilation, ceil_mode] of a max-pool node, or None if it is not one."""
    if node.op == "call_module":
        m = modules.get(str(node.target))
        if type(m) is not nn.MaxPool2d or m.return_indices:
            return None
        p: dict[str, Any] = {"kernel_size": m.kernel_size, "stride": m.stride, "padding": m.padding}
        p.update(dilation=m.dilation, ceil_mode=m.ceil_mode)
    elif node.op == "call_function" and node.target in (F.max_pool2d, torch.max_pool2d):
        p = {**dict(zip(_POOL_PARAMS, node.args, strict=False)), **node.kwargs}
        if p.get("return_indices"):
            return None
    else:
        return None
    kernel = _pair(p["kernel_size"])
    stride = _pair(p.get("stride") or kernel)  # a pool's stride defaults to its kernel
    return [kernel, stride, _pair(p.get("padding", 0)), _pair(p.get("dilation", 1)), bool(p.get("ceil_mode"))]


class Backprop:
    """A compiled feature graph: :meth:`forward` gives the features and a tape, :meth:`reverse` the image gradient.

    :meth:`__call__` wraps both in one autograd function, so the features stay differentiable for objectives.
    """

    def __init__(self, graph: fx.GraphModule) -> None:
        self.modules = dict(graph.named_modules())
        self.nodes = list(graph.graph.nodes)
        self.slot = {n: i for i, n in enumerate(self.nodes)}
        placeholders = [n for n in self.nodes if n.op == "placeholder"]
        if len(placeholders) != 1:
            raise Unsupported("a graph with one input is needed")
        self.fused = self._fusions()
        self.convs: list[_Conv] = []
        self.forward_steps: list[tuple[Forward, tuple[int, ...]]] = []
        self.reverse_steps: list[tuple[int, Reverse]] = []
        self.outputs: dict[str, int] = {}
        last_use = {n: max((self.nodes.index(u) for u in n.users), default=i) for i, n in enumerate(self.nodes)}
        returned = {a for n in self.nodes if n.op == "output" for a in cast(dict[str, fx.Node], n.args[0]).values()}
        for i, node in enumerate(self.nodes):
            if node.op == "output":
                self.outputs = {str(k): self.slot[v] for k, v in cast(dict[str, fx.Node], node.args[0]).items()}
                continue
            forward, reverse = self._rule(node)
            done = (n for n in self.nodes[: i + 1] if last_use[n] == i and n.op != "placeholder" and n not in returned)
            released = tuple(self.slot[n] for n in done)  # values no later step reads: freed after this one
            self.forward_steps.append((forward, released))
            if reverse is not None:
                self.reverse_steps.append((i, reverse))
        self.reverse_steps.reverse()
        self.input = self.slot[placeholders[0]]

    @classmethod
    def compile(cls, graph: fx.GraphModule) -> Backprop | None:
        """The program for ``graph``, or None where a node has no rule (the caller keeps autograd)."""
        if not available():
            return None
        try:
            return cls(graph)
        except Unsupported:
            return None

    def _fusions(self) -> dict[fx.Node, str]:
        """Convolution nodes whose only reader is an activation: that activation runs inside them."""
        fused = {}
        for node in self.nodes:
            if node.op == "call_module" and len(node.users) == 1:
                m = self.modules.get(str(node.target))
                act = activation(next(iter(node.users)), self.modules)
                if act is not None and isinstance(m, _CONVS):
                    fused[node] = act
        return fused

    def _fresh(self, node: fx.Node) -> bool:
        """Whether ``node``'s gradient is always a new tensor that nothing else holds: its one reader is a
        convolution or a max pool, whose reverse makes a new tensor (an addition hands on the same tensor to both
        of its inputs; an objective's gradient may be a broadcast view)."""
        if len(node.users) != 1:
            return False
        user = next(iter(node.users))
        if _pool_params(user, self.modules) is not None:
            return True
        return user.op == "call_module" and isinstance(self.modules.get(str(user.target)), _CONVS)

    def _owned(self, node: fx.Node) -> bool:
        """Whether ``node``'s value may change in place unseen: read once, and, if a view, its base too."""
        if len(node.users) != 1 or node.op == "placeholder":
            return False
        source = node.args[0] if node.args else None
        if node.op == "call_function" and node.target is operator.getitem:  # a part of a split: disjoint parts
            split = cast(fx.Node, source)
            return self._owned(cast(fx.Node, split.args[0]))
        if node.op == "call_function" and node.target is torch.flatten:
            return self._owned(cast(fx.Node, source))
        if activation(node, self.modules) is not None and source in self.fused:
            return True  # the convolution's own output
        if node.op == "call_module" and isinstance(self.modules[str(node.target)], (nn.Dropout, nn.Identity)):
            return self._owned(cast(fx.Node, source))
        return True

    # -- rules: (forward step, reverse step or None) per node ----------------------------------------------------

    def _rule(self, node: fx.Node) -> tuple[Forward, Reverse | None]:
        if node.op == "placeholder":
            return (lambda values, tape: None), None
        args: list[Any] = [self.slot[a] if isinstance(a, fx.Node) else a for a in node.args]
        act = activation(node, self.modules)
        if act is not None:
            return self._activation(node, args[0], act)
        pool = _pool_params(node, self.modules)
        if pool is not None:
            return self._max_pool(node, args[0], pool)
        if node.op == "call_module":
            return self._module(node, args)
        if node.op == "call_function" and not node.kwargs.keys() - {"dim"}:
            if node.target is torch.cat:
                return self._cat(node, int(cast(int, node.kwargs.get("dim", args[1] if len(args) > 1 else 0))))
            if node.target in _SPLITS:
                return self._split(node, args, int(cast(int, node.kwargs.get("dim", args[2] if len(args) > 2 else 0))))
            if node.target is operator.getitem and isinstance(node.args[1], int):
                return self._getitem(node, args[0], node.args[1])
            if node.target in _ADDS and len(args) == 2 and not node.kwargs:
                return self._add(node, args)
            if node.target is torch.flatten and len(args) == 2 and node.args[1] == 1:
                return self._flatten(node, args[0])
            if node.target is F.adaptive_avg_pool2d and len(args) == 2 and not node.kwargs:
                return self._adaptive_pool(self.slot[node], args[0], node.args[1])
        if node.op == "call_method" and node.target == "flatten" and not node.kwargs.keys() - {"start_dim"}:
            start = node.kwargs.get("start_dim", node.args[1] if len(node.args) > 1 else 0)
            if start == 1 and len(args) <= 2:  # x.flatten(1), RegNet's x.flatten(start_dim=1)
                return self._flatten(node, args[0])
        if node.op == "call_method" and not node.kwargs.keys() - {"dim", "keepdim"}:
            dims = node.kwargs.get("dim", args[1] if len(args) > 1 else None)
            keep = bool(node.kwargs.get("keepdim", args[2] if len(args) > 2 else False))
            if node.target == "mean" and isinstance(dims, (list, tuple)) and sorted(dims) == [2, 3]:
                return self._spatial_mean(self.slot[node], args[0], keep)  # MNASNet's head: x.mean([2, 3])
        raise Unsupported(f"{node.op} {node.target}")

    def _module(self, node: fx.Node, args: list[Any]) -> tuple[Forward, Reverse | None]:
        m = self.modules[str(node.target)]
        i, src = self.slot[node], args[0]
        if isinstance(m, _CONVS):
            conv = _Conv(m, self.fused.get(node))
            self.convs.append(conv)
            return self._conv(node, src, conv)
        if isinstance(m, (nn.Dropout, nn.Identity)) and not m.training:
            return self._alias(i, src)
        if type(m) is nn.AdaptiveAvgPool2d:
            return self._adaptive_pool(i, src, m.output_size)
        if type(m) is nn.Linear:
            weight, bias = m.weight, m.bias

            def linear(values: Slots, tape: Slots) -> None:
                values[i] = F.linear(values[src], weight, bias)

            def linear_back(grads: Slots, tape: Slots) -> None:
                _accumulate(grads, src, grads[i].to(weight.dtype) @ weight)

            return linear, linear_back
        raise Unsupported(f"module {type(m).__name__}")

    def _adaptive_pool(self, i: int, src: int, output_size: Any) -> tuple[Forward, Reverse]:
        if _pair_or_none(output_size) == [1, 1]:  # a mean, as PyTorch runs it
            return self._spatial_mean(i, src, keepdim=True)
        if None in _pair_or_none(output_size):
            raise Unsupported("an adaptive pool that keeps an input size")
        size = _pair(output_size)

        def pool(values: Slots, tape: Slots) -> None:
            x = values[src]
            tape[i] = (x.shape, x.dtype, CL if x.is_contiguous(memory_format=CL) else torch.contiguous_format)
            values[i] = _ADAPTIVE_POOL(x, size)

        def pool_back(grads: Slots, tape: Slots) -> None:
            shape, dtype, layout = tape[i]
            grad = grads[i]
            shape_only = _shape_only(shape, dtype, grad.device, layout)
            _accumulate(grads, src, _ADAPTIVE_POOL_BACKWARD(grad, shape_only))

        return pool, pool_back

    def _spatial_mean(self, i: int, src: int, keepdim: bool) -> tuple[Forward, Reverse]:
        def mean(values: Slots, tape: Slots) -> None:
            x = values[src]
            tape[i] = x.shape
            values[i] = x.mean((2, 3), keepdim=keepdim)

        def mean_back(grads: Slots, tape: Slots) -> None:
            shape = tape[i]
            grad = grads[i] if keepdim else grads[i][:, :, None, None]
            _accumulate(grads, src, grad.expand(shape) / (shape[2] * shape[3]))

        return mean, mean_back

    def _conv(self, node: fx.Node, src: int, conv: _Conv) -> tuple[Forward, Reverse]:
        i, act = self.slot[node], conv.act or ""
        mask = (_MASKS_IN_PLACE if self._fresh(next(iter(node.users))) else _MASKS).get(act)

        def forward(values: Slots, tape: Slots) -> None:
            x = values[src]
            y = values[i] = conv.forward(x)
            tape[i] = (x.shape, x.dtype, y if mask is not None else None)

        def reverse(grads: Slots, tape: Slots) -> None:
            shape, dtype, out = tape[i]
            grad = grads[i] if mask is None else mask(grads[i], out)
            _accumulate(grads, src, conv.input_gradient(grad, shape, dtype))

        return forward, reverse

    def _activation(self, node: fx.Node, src: int, act: str) -> tuple[Forward, Reverse | None]:
        i, source = self.slot[node], node.args[0]
        if source in self.fused:  # ran inside the convolution: the same value, the convolution masks
            return self._alias(i, src)
        assert isinstance(source, fx.Node)
        in_place = self._owned(source)
        if act == "relu":
            run: Callable[[torch.Tensor], torch.Tensor] = relu_ if in_place else torch.relu
        else:
            run = (lambda x: x.clamp_(0, 6)) if in_place else (lambda x: x.clamp(0, 6))
        mask = _MASKS[act]

        def forward(values: Slots, tape: Slots) -> None:
            values[i] = tape[i] = run(values[src])

        def reverse(grads: Slots, tape: Slots) -> None:
            _accumulate(grads, src, mask(grads[i], tape[i]))

        return forward, reverse

    def _max_pool(self, node: fx.Node, src: int, params: list[Any]) -> tuple[Forward, Reverse]:
        i = self.slot[node]

        def forward(values: Slots, tape: Slots) -> None:
            x = values[src]
            # the native kernel where it runs: ATen's values, the winners as one-byte window offsets
            values[i], indices = native.max_pool(x, params) or _MAX_POOL(x, *params)
            tape[i] = (x.shape, x.dtype, indices)

        def reverse(grads: Slots, tape: Slots) -> None:
            shape, dtype, indices = tape[i]
            grad = grads[i]
            if indices.dtype == torch.uint8:  # the native kernel's winners
                _accumulate(grads, src, native.max_pool_backward(grad.to(dtype), indices, shape, params))
                return
            shape_only = _shape_only(shape, dtype, grad.device)
            _accumulate(grads, src, _MAX_POOL_BACKWARD(grad, shape_only, *params, indices))

        return forward, reverse

    def _cat(self, node: fx.Node, dim: int) -> tuple[Forward, Reverse]:
        i = self.slot[node]
        srcs = [self.slot[a] for a in cast(Sequence[fx.Node], node.args[0])]

        def forward(values: Slots, tape: Slots) -> None:
            parts = [values[s] for s in srcs]
            tape[i] = [p.shape[dim] for p in parts]
            values[i] = torch.cat(parts, dim)

        def reverse(grads: Slots, tape: Slots) -> None:
            for s, part in zip(srcs, grads[i].split_with_sizes(tape[i], dim), strict=True):
                _accumulate(grads, s, part)

        return forward, reverse

    def _split(self, node: fx.Node, args: list[Any], dim: int) -> tuple[Forward, Reverse]:
        i, src, sizes = self.slot[node], args[0], args[1]
        # Tensor.split is a Python wrapper; split_with_sizes is not (and an int split size is rare)
        split = torch.Tensor.split_with_sizes if isinstance(sizes, (list, tuple)) else torch.Tensor.split

        def forward(values: Slots, tape: Slots) -> None:
            parts = values[i] = split(values[src], sizes, dim)
            tape[i] = [p.shape for p in parts]

        def reverse(grads: Slots, tape: Slots) -> None:  # grads[i]: {output index: gradient} from the getitems
            pieces, shapes = grads[i], tape[i]
            some = next(iter(pieces.values()))
            parts = [
                pieces[k] if k in pieces else torch.zeros(shape, dtype=some.dtype, device=some.device)
                for k, shape in enumerate(shapes)
            ]  # fmt: skip
            _accumulate(grads, src, torch.cat(parts, dim) if len(parts) > 1 else parts[0])

        return forward, reverse

    def _getitem(self, node: fx.Node, src: int, k: int) -> tuple[Forward, Reverse]:
        i = self.slot[node]

        def forward(values: Slots, tape: Slots) -> None:
            values[i] = values[src][k]

        def reverse(grads: Slots, tape: Slots) -> None:
            pieces = grads[src] = grads[src] or {}
            pieces[k] = grads[i] if k not in pieces else pieces[k] + grads[i]

        return forward, reverse

    def _add(self, node: fx.Node, args: list[Any]) -> tuple[Forward, Reverse]:
        i = self.slot[node]
        a, b = args
        first = node.args[0]
        if not (isinstance(first, fx.Node) and isinstance(node.args[1], fx.Node)):
            raise Unsupported("an addition of a constant")
        if node.target is operator.iadd and len(first.users) != 1:
            raise Unsupported("an in-place addition to a tensor read elsewhere")

        def forward(values: Slots, tape: Slots) -> None:
            values[i] = values[a] + values[b]

        def reverse(grads: Slots, tape: Slots) -> None:
            _accumulate(grads, a, grads[i])
            _accumulate(grads, b, grads[i])

        return forward, reverse

    def _flatten(self, node: fx.Node, src: int) -> tuple[Forward, Reverse]:
        i = self.slot[node]

        def forward(values: Slots, tape: Slots) -> None:
            x = values[src]
            tape[i] = x.shape
            values[i] = torch.flatten(x, 1)

        def reverse(grads: Slots, tape: Slots) -> None:
            _accumulate(grads, src, grads[i].reshape(tape[i]))

        return forward, reverse

    def _alias(self, i: int, src: int) -> tuple[Forward, Reverse]:
        def forward(values: Slots, tape: Slots) -> None:
            values[i] = values[src]

        def reverse(grads: Slots, tape: Slots) -> None:
            _accumulate(grads, src, grads[i])

        return forward, reverse

    # -- reordered weights ----------------------------------------------------------------------------------------

    def packed_bytes_per_shape(self) -> int:
        """Bytes the convolutions' reordered weights take for one input shape (both directions)."""
        return sum(conv.packed_bytes() for conv in self.convs)

    def keep_shapes(self, shapes: int) -> None:
        """Keep reordered weights for at most ``shapes`` input shapes per convolution (memory planning's lever:
        :data:`PACKED_SHAPES` by default, which lets repeated runs of one size reuse them)."""
        for conv in self.convs:
            conv.forward_weights.keep(shapes)
            conv.reverse_weights.keep(shapes)

    # -- running --------------------------------------------------------------------------------------------------

    def forward(self, x: torch.Tensor) -> tuple[dict[str, torch.Tensor], Slots]:
        """The features of ``x`` (no autograd) and the tape :meth:`reverse` needs."""
        values: Slots = [None] * len(self.nodes)
        tape: Slots = [None] * len(self.nodes)
        values[self.input] = x
        observed, peak = bool(_memory_observers), 0
        for step, released in self.forward_steps:
            step(values, tape)
            if observed:
                peak = max(peak, held_bytes(values, tape))
            for r in released:
                values[r] = None
        for observer in _memory_observers:
            observer(peak)
        return {name: values[s] for name, s in self.outputs.items()}, tape

    def reverse(self, tape: Slots, grads: dict[str, torch.Tensor | None]) -> torch.Tensor | None:
        """The gradient with respect to the input, given the gradients of the features (None: not used)."""
        slots: Slots = [None] * len(self.nodes)
        for name, s in self.outputs.items():
            g = grads.get(name)
            if g is not None:
                _accumulate(slots, s, g.contiguous(memory_format=CL) if g.dim() == 4 else g)
        observed, peak = bool(_memory_observers), 0
        for i, step in self.reverse_steps:
            if slots[i] is not None:
                step(slots, tape)
                if observed:
                    peak = max(peak, held_bytes(slots, tape))
                slots[i] = tape[i] = None  # freed as the reverse goes
        for observer in _memory_observers:
            observer(peak)
        result: torch.Tensor | None = slots[self.input]
        return result

    def __call__(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        names = tuple(self.outputs)
        outs = _Backprop.apply(x, self, names)
        return dict(zip(names, outs, strict=True))


def _shape_only(
    shape: torch.Size, dtype: torch.dtype, device: torch.device, layout: torch.memory_format = CL
) -> torch.Tensor:
    """An uninitialised stand-in for a forward input that was not kept: backward kernels read only its shape,
    dtype and layout."""
    return torch.empty(shape, dtype=dtype, device=device, memory_format=layout)


def _accumulate(grads: Slots, slot: int, grad: torch.Tensor) -> None:
    held = grads[slot]
    grads[slot] = grad if held is None else held + grad


class _Backprop(torch.autograd.Function):
    @staticmethod
    def forward(ctx: Any, x: torch.Tensor, program: Backprop, names: tuple[str, ...]) -> tuple[torch.Tensor, ...]:  # type: ignore[override]
        features, tape = program.forward(x)
        ctx.program, ctx.tape, ctx.names = program, tape, names
        return tuple(features[n] for n in names)

    @staticmethod
    def backward(ctx: Any, *grads: torch.Tensor | None) -> tuple[torch.Tensor | None, None, None]:  # type: ignore[override]
        program: Backprop = ctx.program
        tape, ctx.tape = ctx.tape, None  # once: the tape is freed as the reverse runs
        return program.reverse(tape, dict(zip(ctx.names, grads, strict=True))), None, None
