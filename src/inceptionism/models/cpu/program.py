"""The image gradient of a feature graph on CPUs without autograd: a forward program and its hand-written reverse.

A dream step needs one thing from the network: the gradient of a score with respect to the *image*. Autograd
records every operation of the forward pass and keeps each one's inputs for a backward pass that could also
give weight gradients. :class:`Program` compiles a traced feature graph (after :func:`..optimize.fast_graph`)
into two straight lists of steps instead, one (forward, reverse) pair per node from :data:`.rules.RULES`:

- **forward**: every convolution runs through oneDNN with its weights reordered into oneDNN's own layout once
  per input shape (:mod:`.conv`) and the ReLU or ReLU6 after it fused in. Nothing is recorded, and each
  activation is freed once its last reader has run.
- **tape**: only what the reverse needs: the output of each activation (its mask) and the argmax of each max
  pool (a one-byte window offset where :mod:`.native`'s max pool runs, else ATen's int64 index). A
  convolution's input gradient needs no input, so none is kept.
- **reverse**: the input gradient of each step, in reverse order: a convolution's transposed convolution on
  weights packed for it, the kernels autograd would call for the others (``threshold_backward``,
  ``max_pool2d_with_indices_backward``; the strided stem and depthwise roads of :mod:`.stem` and
  :mod:`.depthwise`), and :mod:`.native`'s max pool where the machine can build it.

The results are autograd's on the same graph: bit for bit in most tests, or a rounding apart where oneDNN
picks another fp32 algorithm for reordered weights.
"""

from __future__ import annotations

import contextlib
import contextvars
import operator
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, cast

import torch
from torch import fx, nn

from inceptionism.models.cpu.conv import CL, CONVS, Conv, Unsupported
from inceptionism.models.cpu.rules import RULES, Forward, Reverse, Slots, accumulate, describe, kind
from inceptionism.models.graph_match import activation, max_pool_params


@dataclass
class HeldMemory:
    """The most memory a program's tensors held at once (values, tape and gradients; storage counted once), in
    bytes, over the forward runs and reverses made while :func:`held_memory` was open."""

    peak: int = 0


_held: contextvars.ContextVar[HeldMemory | None] = contextvars.ContextVar("held_memory", default=None)


@contextlib.contextmanager
def held_memory() -> Iterator[HeldMemory]:
    """Within (this thread or task only), programs record the memory they hold: memory planning measures a
    program with it, and an autograd graph by the tensors it saves."""
    record = HeldMemory()
    token = _held.set(record)
    try:
        yield record
    finally:
        _held.reset(token)


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


class Program:
    """A compiled feature graph: :meth:`forward` gives the features and a tape, :meth:`reverse` the image gradient.

    Raises :class:`~.conv.Unsupported` for a graph with a node it has no rule for.
    """

    def __init__(self, graph: fx.GraphModule) -> None:
        self.modules = dict(graph.named_modules())
        self.nodes = list(graph.graph.nodes)
        self.slot = {n: i for i, n in enumerate(self.nodes)}
        placeholders = [n for n in self.nodes if n.op == "placeholder"]
        if len(placeholders) != 1:
            raise Unsupported("a graph with one input is needed")
        self.fused = self._fusions()
        self.convs: list[Conv] = []
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

    def _rule(self, node: fx.Node) -> tuple[Forward, Reverse | None]:
        rule = RULES.get(kind(node, self.modules) or "")
        if rule is None:
            raise Unsupported(describe(node, self.modules))
        args: list[Any] = [self.slot[a] if isinstance(a, fx.Node) else a for a in node.args]
        try:
            return rule(self, node, args)
        except Unsupported as e:  # the kind has a rule, but not for these arguments: the message names both
            raise Unsupported(f"{describe(node, self.modules)}: {e}") from None

    def _fusions(self) -> dict[fx.Node, str]:
        """Convolution nodes whose only reader is an activation: that activation runs inside them."""
        fused = {}
        for node in self.nodes:
            if node.op == "call_module" and len(node.users) == 1:
                m = self.modules.get(str(node.target))
                act = activation(next(iter(node.users)), self.modules)
                if act is not None and isinstance(m, CONVS):
                    fused[node] = act
        return fused

    def fresh(self, node: fx.Node) -> bool:
        """Whether ``node``'s gradient is always a new tensor that nothing else holds: its one reader is a
        convolution or a max pool, whose reverse makes a new tensor (an addition hands on the same tensor to both
        of its inputs; an objective's gradient may be a broadcast view)."""
        if len(node.users) != 1:
            return False
        user = next(iter(node.users))
        if max_pool_params(user, self.modules) is not None:
            return True
        return user.op == "call_module" and isinstance(self.modules.get(str(user.target)), CONVS)

    def owned(self, node: fx.Node) -> bool:
        """Whether ``node``'s value may change in place unseen: read once, and, if a view, its base too."""
        if len(node.users) != 1 or node.op == "placeholder":
            return False
        source = node.args[0] if node.args else None
        if node.op == "call_function" and node.target is operator.getitem:  # a part of a split: disjoint parts
            split = cast(fx.Node, source)
            return self.owned(cast(fx.Node, split.args[0]))
        if node.op == "call_function" and node.target is torch.flatten:
            return self.owned(cast(fx.Node, source))
        if activation(node, self.modules) is not None and source in self.fused:
            return True  # the convolution's own output
        if node.op == "call_module" and isinstance(self.modules[str(node.target)], (nn.Dropout, nn.Identity)):
            return self.owned(cast(fx.Node, source))
        return True

    def packed_bytes_per_shape(self) -> int:
        """Bytes the convolutions' reordered weights take for one input shape (both directions)."""
        return sum(conv.packed_bytes() for conv in self.convs)

    def forward(self, x: torch.Tensor) -> tuple[dict[str, torch.Tensor], Slots]:
        """The features of ``x`` (no autograd) and the tape :meth:`reverse` needs."""
        values: Slots = [None] * len(self.nodes)
        tape: Slots = [None] * len(self.nodes)
        values[self.input] = x
        record, peak = _held.get(), 0
        for step, released in self.forward_steps:
            step(values, tape)
            if record is not None:
                peak = max(peak, held_bytes(values, tape))
            for r in released:
                values[r] = None
        if record is not None:
            record.peak = max(record.peak, peak)
        return {name: values[s] for name, s in self.outputs.items()}, tape

    def reverse(self, tape: Slots, grads: dict[str, torch.Tensor | None]) -> torch.Tensor | None:
        """The gradient with respect to the input, given the gradients of the features (None: not used)."""
        slots: Slots = [None] * len(self.nodes)
        for name, s in self.outputs.items():
            g = grads.get(name)
            if g is not None:
                accumulate(slots, s, g.contiguous(memory_format=CL) if g.dim() == 4 else g)
        record, peak = _held.get(), 0
        for i, step in self.reverse_steps:
            if slots[i] is not None:
                step(slots, tape)
                if record is not None:
                    peak = max(peak, held_bytes(slots, tape))
                slots[i] = tape[i] = None  # freed as the reverse goes
        if record is not None:
            record.peak = max(record.peak, peak)
        result: torch.Tensor | None = slots[self.input]
        return result
