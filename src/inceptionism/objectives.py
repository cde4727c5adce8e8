"""Objectives as composable values (after lucid): ``0.5 * layer("block8") + layer("block10", loss="l2")``.

An :class:`Objective` maps the activations ``{layer: (B, C, h, w)}`` to one score per batch item, shape (B,).
The engine ascends it; it never knows what the objective means. New objectives (channels, classes, guides, masks)
are new functions here, built with :func:`objective`.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import torch

Activations = Mapping[str, torch.Tensor]
ScoreFn = Callable[[Activations], torch.Tensor]

LOSSES = ("mean", "l2")


@dataclass(frozen=True)
class Objective:
    """A score to maximise: ``fn(activations) -> (B,)``, the layers it reads, and a readable description."""

    fn: ScoreFn
    layers: tuple[str, ...]
    description: str

    def __call__(self, activations: Activations) -> torch.Tensor:
        return self.fn(activations)

    def __add__(self, other: Objective | float) -> Objective:
        if isinstance(other, (int, float)):
            if other == 0:
                return self
            return Objective(lambda a: self(a) + other, self.layers, f"{self.description} + {other:g}")
        return Objective(
            lambda a: self(a) + other(a),
            tuple(dict.fromkeys(self.layers + other.layers)),
            f"{self.description} + {other.description}",
        )

    def __radd__(self, other: float) -> Objective:  # sum() starts from 0
        return self + other

    def __mul__(self, factor: float) -> Objective:
        if not isinstance(factor, (int, float)):
            return NotImplemented
        return Objective(lambda a: factor * self(a), self.layers, f"{factor:g} * {_group(self.description)}")

    __rmul__ = __mul__

    def __neg__(self) -> Objective:
        return -1.0 * self

    def __sub__(self, other: Objective) -> Objective:
        return self + (-other)

    def __repr__(self) -> str:
        return f"Objective({self.description})"


def _group(text: str) -> str:
    return f"({text})" if " + " in text else text


def objective(layers: Iterable[str], description: str) -> Callable[[ScoreFn], Objective]:
    """Decorator turning ``fn(activations) -> (B,)`` into an :class:`Objective`."""

    def wrap(fn: ScoreFn) -> Objective:
        return Objective(fn, tuple(layers), description)

    return wrap


class _Mean(torch.autograd.Function):
    """Mean over all but the batch dimension, in fp32, whose gradient stays a broadcast view.

    Autograd's own mean backward writes its gradient out in full, in NCHW, which the channels_last network then
    copies again (W0: 0.3 ms a step). This one hands back ``g / n`` expanded to the input's shape, which the
    next operation reads in whatever layout it likes.
    """

    @staticmethod
    def forward(ctx: Any, x: torch.Tensor) -> torch.Tensor:  # type: ignore[override]
        ctx.shape, ctx.dtype = x.shape, x.dtype
        return x.mean(dim=tuple(range(1, x.dim())), dtype=torch.float32)

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> torch.Tensor:  # type: ignore[override]
        shape = ctx.shape
        per_item = grad / math.prod(shape[1:])
        return per_item.to(ctx.dtype).view(-1, *[1] * (len(shape) - 1)).expand(shape)


def _reduce(x: torch.Tensor, loss: str) -> torch.Tensor:
    """(B, C, h, w) → (B,): mean of activations (the seed) or mean of squares (classic DeepDream).

    Reduced over dims, never flattened: flattening a channels_last activation would copy it, forward and back.
    """
    if loss == "l2":
        x = x.float()
        x = x * x
    out: torch.Tensor = _Mean.apply(x)
    return out


def layer(name: str, loss: str = "mean") -> Objective:
    """DeepDream on a whole layer: the mean (``"mean"``) or mean square (``"l2"``) of its activations."""
    if loss not in LOSSES:
        raise ValueError(f"unknown loss {loss!r}; choose one of {', '.join(LOSSES)}")

    @objective([name], f"{loss}({name})")
    def score(acts: Activations) -> torch.Tensor:
        return _reduce(acts[name], loss)

    return score


def channel(name: str, index: int, loss: str = "mean") -> Objective:
    """One channel of a layer: its mean (or mean square) activation."""
    if loss not in LOSSES:
        raise ValueError(f"unknown loss {loss!r}; choose one of {', '.join(LOSSES)}")

    @objective([name], f"{loss}({name}[{index}])")
    def score(acts: Activations) -> torch.Tensor:
        x = acts[name]
        if not 0 <= index < x.shape[1]:
            raise ValueError(f"channel {index} is out of range for {name}, which has {x.shape[1]} channels")
        return _reduce(x[:, index : index + 1], loss)

    return score


def layers(weights: Mapping[str, float] | Iterable[tuple[str, float]], loss: str = "mean") -> Objective:
    """Weighted sum of whole-layer objectives: ``{"block8": 0.5, "block10": 1.0}``."""
    items = list(weights.items()) if isinstance(weights, Mapping) else list(weights)
    if not items:
        raise ValueError("no layers given")
    return sum((w * layer(n, loss) if w != 1 else layer(n, loss) for n, w in items), start=0.0)  # type: ignore[return-value]
