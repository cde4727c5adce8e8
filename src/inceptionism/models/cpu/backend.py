"""The CPU fast path as one gradient backend: compile a feature graph into one, or decline with a reason.

A :class:`GradientBackend` gives a graph's features, differentiable as autograd's are, with the image gradient
from the compiled :class:`~.program.Program`. It must never break a dream: it runs only where this PyTorch is
one it was tested with (:mod:`.switch`), and any error it raises at run time other than out-of-memory turns it
off for the rest of the process (one note on stderr) and the same features, or the same gradient, are computed
again by autograd on the graph it was compiled from. Out-of-memory is the caller's to handle (smaller tiles).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

import torch
from torch import fx

from inceptionism.models.cpu import ops, switch
from inceptionism.models.cpu.conv import Unsupported
from inceptionism.models.cpu.program import Program

log = logging.getLogger(__name__)

DTYPES = (torch.float32, torch.bfloat16)  # what oneDNN runs here (fp16 needs CPU support most lack)


def is_out_of_memory(e: BaseException) -> bool:
    """True for allocation failures (CUDA, MPS, CPU): those are never the fast path's fault."""
    if isinstance(e, torch.OutOfMemoryError):
        return True
    text = str(e)
    return isinstance(e, RuntimeError) and ("out of memory" in text or "can't allocate memory" in text)


@dataclass(frozen=True)
class Declined:
    """No backend for this graph, and why (an operation without a rule, an untested PyTorch…)."""

    reason: str


class GradientBackend:
    """A feature graph compiled for CPU image gradients without autograd.

    ``backend(x)``: ``{layer name: activation}`` for the network input ``x`` (B, C, H, W) in the graph's dtype;
    the activations are differentiable with respect to ``x``. Only for calls :meth:`wants`.
    """

    def __init__(self, program: Program, graph: fx.GraphModule) -> None:
        self.program = program
        self.graph = graph  # what autograd runs instead, if the program fails
        self.names = tuple(program.outputs)

    @property
    def active(self) -> bool:
        """Whether the fast path is on in this process (not turned off by a failure or the environment)."""
        return switch.failure() is None and not switch.disabled_by_environment()

    def wants(self, x: torch.Tensor) -> bool:
        """Whether ``x`` is for the backend: a CPU tensor in a dtype it runs, a gradient wanted, the path on."""
        if x.device.type != "cpu" or x.dtype not in DTYPES or not (torch.is_grad_enabled() and x.requires_grad):
            return False
        return self.active

    def packed_bytes_per_shape(self) -> int:
        """Bytes of reordered weights kept per input shape (how many shapes: :func:`~.conv.packed_shapes`)."""
        return self.program.packed_bytes_per_shape()

    def __call__(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        try:
            outs = _Features.apply(x, self)
        except Exception as e:
            if is_out_of_memory(e):
                raise
            switch.turn_off(switch.describe(e))
            with torch.enable_grad():
                features: dict[str, torch.Tensor] = self.graph(x)
            return features
        return dict(zip(self.names, outs, strict=True))

    def autograd_input_gradient(
        self, x: torch.Tensor, grads: tuple[torch.Tensor | None, ...], autocast: tuple[bool, torch.dtype]
    ) -> torch.Tensor:
        """The gradient with respect to ``x`` from the features' gradients ``grads``, by autograd on the graph."""
        enabled, dtype = autocast
        with torch.enable_grad(), torch.autocast("cpu", dtype=dtype, enabled=enabled):
            leaf = x.detach().requires_grad_()
            features = self.graph(leaf)
            used = [(features[n], g) for n, g in zip(self.names, grads, strict=True) if g is not None]
            (gx,) = torch.autograd.grad([f for f, _ in used], leaf, [g for _, g in used], allow_unused=True)
        return gx if gx is not None else torch.zeros_like(x)


class _Features(torch.autograd.Function):
    """The program's forward as one autograd node, whose backward is the program's reverse (or, if that fails,
    autograd's gradient of the same graph on the input kept for it)."""

    @staticmethod
    def forward(ctx: Any, x: torch.Tensor, backend: GradientBackend) -> tuple[torch.Tensor, ...]:  # type: ignore[override]
        features, tape = backend.program.forward(x)
        ctx.backend, ctx.tape, ctx.x = backend, tape, x
        ctx.autocast = (torch.is_autocast_enabled("cpu"), torch.get_autocast_dtype("cpu"))
        return tuple(features[n] for n in backend.names)

    @staticmethod
    def backward(ctx: Any, *grads: torch.Tensor | None) -> tuple[torch.Tensor | None, None]:  # type: ignore[override]
        backend: GradientBackend = ctx.backend
        tape, ctx.tape = ctx.tape, None  # once: the tape is freed as the reverse runs
        try:
            gx = backend.program.reverse(tape, dict(zip(backend.names, grads, strict=True)))
        except Exception as e:
            if is_out_of_memory(e):
                raise
            del tape
            switch.turn_off(switch.describe(e))
            gx = backend.autograd_input_gradient(ctx.x, grads, ctx.autocast)
        return gx, None


def compile_backend(graph: fx.GraphModule) -> GradientBackend | Declined:
    """``graph`` (a traced feature graph after :func:`~inceptionism.models.optimize.fast_graph`, one input,
    a dict of features out) as a :class:`GradientBackend`, or :class:`Declined` with the reason (logged at debug
    level; an untested PyTorch is also noted once on stderr, as the path is then off for every graph)."""
    untested = switch.untested_torch()
    if untested is not None:
        switch.note(untested)
        return _declined(untested)
    if switch.disabled_by_environment():
        return _declined(f"{switch.ENVIRONMENT}=0")
    if not ops.available():
        return _declined("this PyTorch has no oneDNN fused convolution")
    try:
        return GradientBackend(Program(graph), graph)
    except Unsupported as e:
        return _declined(f"no rule for {e}")


def _declined(reason: str) -> Declined:
    log.debug("fast CPU path declined: %s; this graph's gradients come from autograd", reason)
    return Declined(reason)
