"""Objectives as composable values (after lucid): ``0.5 * layer("block8") + class_logit("goldfish") + 0.1 * tv()``.

An :class:`Objective` maps a :class:`Context` (the activations it asked for, ``{layer: (B, C, h, w)}``, and the
image they came from) to one score per batch item, shape (B,). The engine ascends it; it never knows what the
objective means. Every built-in objective has an exact :attr:`~Objective.expression`, and :func:`parse` reads one
back, so a picture's settings hold its whole objective:

    l2(block10)  mean(block12[7,31])  l2(block12[0:8])  l2(block12[top4])  cls(goldfish)  guide(block10)
    tv()  l2pull()  — joined with numbers, +, - and *: ``0.5 * l2(block12[7,31]) + l2(block10) + 0.1 * tv()``

Your own objectives come from the :func:`objective` decorator; they have no expression (settings cannot hold
Python code).
"""

from __future__ import annotations

import ast
import difflib
import json
import keyword
import math
import re
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch

from inceptionism.errors import ConfigError, InceptionismError

Activations = Mapping[str, torch.Tensor]
LayerFeatures = Callable[[str], torch.Tensor]  # layer name → its activations (1, C, h, w) on some image

LOSSES = ("mean", "l2")
DEFAULT_LOSS = "l2"  # the mean square: classic DeepDream; DreamConfig.loss uses it too
LOGITS = "logits"  # the pseudo-layer every registered model maps to its classifier output (B, classes)
GUIDE_CHUNK = 2**24  # (positions × guide positions) scores computed at once by guide(): 64 MB in fp32


@dataclass(frozen=True)
class Context(Mapping[str, torch.Tensor]):
    """What an objective sees: the activations it asked for and the image they came from.

    ``activations``: ``{layer: (B, C, h, w)}`` (``logits``: (B, classes)). ``image``: (B, 3, H, W) in [0, 1],
    the tile the activations came from, requiring grad; None where the caller passes activations only.
    ``original``: the same region of the octave's starting image, (B, 3, H, W) in [0, 1], or None.
    A context is also the mapping of its activations, so ``ctx["block10"]`` works as it did on a plain dict.
    """

    activations: Activations
    image: torch.Tensor | None = None
    original: torch.Tensor | None = None

    def __getitem__(self, name: str) -> torch.Tensor:
        return self.activations[name]

    def __iter__(self) -> Iterator[str]:
        return iter(self.activations)

    def __len__(self) -> int:
        return len(self.activations)


ScoreFn = Callable[[Context], torch.Tensor]


@dataclass(frozen=True)
class Objective:
    """A score to maximise: ``fn(context) -> (B,)``, the layers it reads and a readable description.

    ``expression``: the exact text :func:`parse` turns back into this objective; None for objectives made with
    :func:`objective` (Python code) and sums that contain one.
    """

    fn: ScoreFn
    layers: tuple[str, ...]
    description: str
    expression: str | None = None
    is_sum: bool = field(default=False, repr=False)  # a sum at the top: grouped in brackets when multiplied

    def __call__(self, context: Context | Activations) -> torch.Tensor:
        """Score (B,) of a context, or of plain activations (then image priors have no image to read)."""
        ctx = context if isinstance(context, Context) else Context(context)
        return self.fn(ctx)

    def __add__(self, other: Objective | float) -> Objective:
        if isinstance(other, bool) or not isinstance(other, (int, float, Objective)):
            return NotImplemented
        if not isinstance(other, Objective):
            if other == 0:
                return self
            c = float(other)
            return Objective(
                lambda x: self(x) + c,
                self.layers,
                f"{self.description} + {_number(c)}",
                _join(self.expression, f"{_number(c)}", " + "),
                is_sum=True,
            )
        return Objective(
            lambda x: self(x) + other(x),
            _union(self.layers, other.layers),
            f"{self.description} + {other.description}",
            _join(self.expression, other.expression, " + "),
            is_sum=True,
        )

    def __radd__(self, other: float) -> Objective:  # sum() starts from 0
        return self + other

    def __mul__(self, factor: float) -> Objective:
        if isinstance(factor, bool) or not isinstance(factor, (int, float)):
            return NotImplemented
        f = float(factor)
        text = _number(f)
        return Objective(
            lambda x: f * self(x),
            self.layers,
            f"{text} * {self._grouped(self.description)}",
            None if self.expression is None else f"{text} * {self._grouped(self.expression)}",
        )

    __rmul__ = __mul__

    def __neg__(self) -> Objective:
        return -1.0 * self

    def __sub__(self, other: Objective) -> Objective:
        if not isinstance(other, Objective):
            return NotImplemented
        return Objective(
            lambda x: self(x) - other(x),
            _union(self.layers, other.layers),
            f"{self.description} - {other._grouped(other.description)}",
            _join(self.expression, None if other.expression is None else other._grouped(other.expression), " - "),
            is_sum=True,
        )

    def _grouped(self, text: str) -> str:
        return f"({text})" if self.is_sum else text

    def __repr__(self) -> str:
        return f"Objective({self.description})"


def _union(a: tuple[str, ...], b: tuple[str, ...]) -> tuple[str, ...]:
    return tuple(dict.fromkeys(a + b))


def _join(a: str | None, b: str | None, op: str) -> str | None:
    return None if a is None or b is None else f"{a}{op}{b}"


def _number(x: float) -> str:
    """Shortest exact text of a weight: ``2``, ``0.5``, ``1e-05`` (``float(text) == x``)."""
    if x.is_integer() and abs(x) < 1e15:
        return str(int(x))
    return repr(x)


def _name(text: str) -> str:
    """A layer or class name as it appears in an expression: bare where Python reads it as a name, else quoted."""
    return text if text.isidentifier() and not keyword.iskeyword(text) else json.dumps(text)


def objective(layers: Iterable[str], description: str) -> Callable[[ScoreFn], Objective]:
    """Decorator turning ``fn(context) -> (B,)`` into an :class:`Objective` (with no expression).

    ``context`` is a :class:`Context`, which is also the mapping of activations, so ``fn(acts)`` written for a
    plain ``{layer: tensor}`` works unchanged.
    """

    def wrap(fn: ScoreFn) -> Objective:
        return Objective(fn, tuple(layers), description)

    return wrap


class _Mean(torch.autograd.Function):
    """Mean over all but the batch dimension, in fp32, whose gradient stays a broadcast view.

    Autograd's own mean backward writes its gradient out in full, in NCHW, which the channels_last network then
    copies again. This one hands back ``g / n`` expanded to the input's shape, which the next operation reads in
    whatever layout it likes.
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


def _check_loss(loss: str) -> None:
    if loss not in LOSSES:
        raise ConfigError(f"unknown loss {loss!r}; choose one of {', '.join(LOSSES)}")


def layer(name: str, loss: str = DEFAULT_LOSS) -> Objective:
    """DeepDream on a whole layer: the mean (``"mean"``) or mean square (``"l2"``) of its activations."""
    _check_loss(loss)
    text = f"{loss}({_name(name)})"

    def score(ctx: Context) -> torch.Tensor:
        return _reduce(ctx[name], loss)

    return Objective(score, (name,), text, text)


# ---------------------------------------------------------------------------------------------------------------
# Channels


@dataclass(frozen=True)
class ChannelSelection:
    """Which channels of a layer: a list (``7,31``), a range (``0:8``, end-exclusive) or the strongest k (``top4``).

    ``text`` is the canonical form written between the brackets of ``NAME[...]``.
    """

    indices: tuple[int, ...] = ()
    top: int | None = None
    is_range: bool = False

    @property
    def text(self) -> str:
        if self.top is not None:
            return f"top{self.top}"
        if self.is_range:
            return f"{self.indices[0]}:{self.indices[-1] + 1}"
        return ",".join(map(str, self.indices))


_TOP = re.compile(r"top(\d+)")
_SELECTION_HELP = "expected a list (7,31), a range (0:8, end excluded) or the strongest k (top4)"


def parse_channels(text: str, where: str = "") -> ChannelSelection:
    """The text between the brackets of ``NAME[...]`` → a :class:`ChannelSelection`; bad text: ConfigError."""
    spec = text.replace(" ", "")
    context = f" in {where!r}" if where else ""
    top = _TOP.fullmatch(spec)
    if top:
        k = int(top.group(1))
        if k < 1:
            raise ConfigError(f"top{k}{context}: k must be at least 1")
        return ChannelSelection(top=k)
    numbers = spec.split(":") if ":" in spec else spec.split(",")
    if not all(re.fullmatch(r"-?\d+", n) for n in numbers) or (":" in spec and len(numbers) != 2):
        raise ConfigError(f"bad channels [{text}]{context}: {_SELECTION_HELP}")
    values = [int(n) for n in numbers]
    if any(i < 0 for i in values):
        raise ConfigError(f"bad channels [{text}]{context}: channel numbers start at 0")
    if ":" in spec:
        start, end = values
        if start >= end:
            raise ConfigError(f"bad channel range [{text}]{context}: needs start < end, e.g. 0:8")
        return ChannelSelection(tuple(range(start, end)), is_range=True)
    if len(set(values)) != len(values):
        raise ConfigError(f"bad channels [{text}]{context}: a channel is listed twice")
    return ChannelSelection(tuple(values))


def split_channels(text: str) -> tuple[str, ChannelSelection | None]:
    """``"block12[7,31]"`` → ``("block12", selection)``; ``"block12"`` → ``("block12", None)``."""
    name, bracket, rest = text.partition("[")
    if not bracket:
        return text, None
    if not name or not rest.endswith("]") or "[" in rest or "]" in rest[:-1]:
        raise ConfigError(f"bad layer {text!r}: expected NAME, NAME[7,31], NAME[0:8] or NAME[top4]")
    return name, parse_channels(rest[:-1], where=text)


def _check_channels(name: str, indices: Sequence[int], channels: int) -> None:
    bad = [i for i in indices if i >= channels]
    if bad:
        raise ConfigError(
            f"channel {bad[0]} is out of range for layer {name!r}, which has {channels} channels (0–{channels - 1})"
        )


def channels(name: str, selection: Iterable[int] | ChannelSelection, loss: str = DEFAULT_LOSS) -> Objective:
    """Some channels of a layer: the mean (or mean square) of their activations.

    ``selection``: channel numbers (a ``range`` is written ``NAME[a:b]``) or a :class:`ChannelSelection`
    without ``top`` (for the strongest channels, see :func:`top_channels`).
    """
    _check_loss(loss)
    if isinstance(selection, ChannelSelection):
        if selection.top is not None:
            raise ValueError("top-k channels need the input image's activations: use top_channels()")
        sel = selection
    elif isinstance(selection, range) and selection.step == 1 and len(selection) > 0:
        sel = ChannelSelection(tuple(selection), is_range=True)
    else:
        sel = parse_channels(",".join(map(str, selection)))
    return _channels(name, sel.indices, loss, f"{loss}({_name(name)}[{sel.text}])", sel.is_range)


def _channels(name: str, indices: tuple[int, ...], loss: str, text: str, contiguous: bool) -> Objective:
    first, stop = indices[0], indices[-1] + 1
    index = torch.tensor(indices)

    def score(ctx: Context) -> torch.Tensor:
        x = ctx[name]
        _check_channels(name, indices, x.shape[1])
        picked = x[:, first:stop] if contiguous else x.index_select(1, index.to(x.device))  # a view when it can be
        return _reduce(picked, loss)

    return Objective(score, (name,), text, text)


def channel(name: str, index: int, loss: str = DEFAULT_LOSS) -> Objective:
    """One channel of a layer: its mean (or mean square) activation; written ``loss(NAME[index])``."""
    return channels(name, [index], loss)


def strongest_channels(activations: torch.Tensor, k: int, loss: str = DEFAULT_LOSS) -> tuple[int, ...]:
    """The ``k`` channels of ``activations`` (B, C, h, w) with the largest mean (or mean square), strongest first."""
    _check_loss(loss)
    x = activations.detach().float()
    per_channel = (x * x if loss == "l2" else x).mean(dim=(0, 2, 3))
    _check_channels("this layer", [k - 1], per_channel.numel())
    return tuple(int(i) for i in per_channel.topk(k).indices)


def top_channels(name: str, k: int, reference: torch.Tensor, loss: str = DEFAULT_LOSS) -> Objective:
    """The ``k`` strongest channels of a layer on a reference image, chosen once (deterministic across tiles).

    ``reference``: the layer's activations (1, C, h, w) on the image being dreamed (the engine's recipe uses the
    input image, long side at most 512 px). Written ``loss(NAME[topK])``; the description names the channels.
    """
    if reference.shape[1] < k:
        raise ConfigError(f"top{k} asks for more channels than layer {name!r} has ({reference.shape[1]})")
    picked = strongest_channels(reference, k, loss)
    text = f"{loss}({_name(name)}[top{k}])"
    obj = _channels(name, picked, loss, text, contiguous=False)
    return Objective(obj.fn, obj.layers, f"{loss}({_name(name)}[top{k} = {','.join(map(str, picked))}])", text)


# ---------------------------------------------------------------------------------------------------------------
# Classes, guides, image priors


def class_logit(target: int | str) -> Objective:
    """An ImageNet class's logit (before the softmax), by index (0–999) or name (``"goldfish"``).

    Reads the ``logits`` pseudo-layer, (B, classes). Written ``cls(goldfish)``; by index ``cls(1)``.
    """
    from inceptionism import imagenet

    index = imagenet.class_index(target)
    label = str(target) if isinstance(target, int) or str(target).strip().isdigit() else imagenet.class_name(index)
    text = f"cls({label if label.isdigit() else _name(label)})"

    def score(ctx: Context) -> torch.Tensor:
        logits = ctx[LOGITS]
        if index >= logits.shape[-1]:
            raise ConfigError(f"class {index} is out of range: this network has {logits.shape[-1]} classes")
        return logits[:, index].float()

    return Objective(score, (LOGITS,), f"cls({index}: {imagenet.class_name(index)})", text)


def guide(name: str, features: torch.Tensor) -> Objective:
    """Dream toward a guide image (Google's guided DeepDream): for each position of the layer, the dot product
    with the best-matching guide feature, averaged over positions.

    ``features``: the layer's activations on the guide image, (1, C, gh, gw) or (C, gh, gw). The product of
    positions and guide positions is computed in chunks of at most :data:`GUIDE_CHUNK` values.
    Written ``guide(NAME)``; the guide image itself is a separate setting.
    """
    g = features.detach().float()
    g = g.reshape(g.shape[-3], -1).t().contiguous()  # (Q, C): one row per guide position
    text = f"guide({_name(name)})"

    def score(ctx: Context) -> torch.Tensor:
        x = ctx[name]
        if x.shape[1] != g.shape[1]:
            raise ConfigError(f"the guide's {name} has {g.shape[1]} channels, the image's {x.shape[1]}")
        guide_rows = g.to(x.device)
        flat = x.float().flatten(2).transpose(1, 2)  # (B, P, C)
        best = _best_matches(flat.detach(), guide_rows)  # (B, P): the guide position each position matches
        matched = guide_rows[best]  # (B, P, C); max_q x·g_q = x·g_best, whose gradient is g_best
        return (flat * matched).sum(dim=2).mean(dim=1)

    return Objective(score, (name,), f"guide({_name(name)}, {g.shape[0]} guide positions)", text)


def _best_matches(x: torch.Tensor, g: torch.Tensor) -> torch.Tensor:
    """(B, P, C) × (Q, C) → (B, P) argmax over q of x_p · g_q, in chunks of positions to bound memory."""
    rows = max(1, GUIDE_CHUNK // max(g.shape[0] * x.shape[0], 1))
    return torch.cat([(x[:, i : i + rows] @ g.t()).argmax(dim=2) for i in range(0, x.shape[1], rows)], dim=1)


def _image(ctx: Context, what: str) -> torch.Tensor:
    if ctx.image is None:
        raise InceptionismError(f"{what} reads the image, but it was called with activations only: pass a Context")
    return ctx.image


def tv() -> Objective:
    """Total variation of the image, negated (ascent smooths): minus the mean absolute difference of
    neighbouring pixels, down and across, per batch item. Reads ``ctx.image`` (B, 3, H, W). Written ``tv()``."""

    def score(ctx: Context) -> torch.Tensor:
        x = _image(ctx, "tv()").float()
        down = (x[:, :, 1:] - x[:, :, :-1]).abs().mean(dim=(1, 2, 3))
        across = (x[:, :, :, 1:] - x[:, :, :, :-1]).abs().mean(dim=(1, 2, 3))
        return -(down + across)

    return Objective(score, (), "tv()", "tv()")


def l2pull() -> Objective:
    """An L2 pull toward the original: minus the mean squared difference between ``ctx.image`` and
    ``ctx.original`` (both (B, 3, H, W) in [0, 1]) per batch item. Written ``l2pull()``."""

    def score(ctx: Context) -> torch.Tensor:
        x = _image(ctx, "l2pull()")
        if ctx.original is None:
            raise InceptionismError(
                "l2pull() needs the original image, and its caller passed none "
                "(the dream engine does; render() from noise has no original)"
            )
        return -((x.float() - ctx.original.detach().float()) ** 2).mean(dim=(1, 2, 3))

    return Objective(score, (), "l2pull()", "l2pull()")


def layers(weights: Mapping[str, float] | Iterable[tuple[str, float]], loss: str = DEFAULT_LOSS) -> Objective:
    """Weighted sum of whole-layer objectives: ``{"block8": 0.5, "block10": 1.0}``."""
    items = list(weights.items()) if isinstance(weights, Mapping) else list(weights)
    if not items:
        raise ValueError("no layers given")
    return weighted_sum([(w, layer(n, loss)) for n, w in items])


def weighted_sum(terms: Sequence[tuple[float, Objective]]) -> Objective:
    """``w1 * o1 + w2 * o2 + …``, weights of 1 left out (``l2(block10)``, not ``1 * l2(block10)``)."""
    if not terms:
        raise ValueError("no objectives given")
    parts = [o if w == 1 else w * o for w, o in terms]
    total = parts[0]
    for p in parts[1:]:
        total = total + p
    return total


# ---------------------------------------------------------------------------------------------------------------
# Expressions


FUNCTIONS = ("mean", "l2", "cls", "guide", "tv", "l2pull")
_ALLOWED = "numbers, +, -, * and the functions " + ", ".join(f"{f}()" for f in FUNCTIONS)


def parse(
    text: str,
    *,
    image_features: LayerFeatures | None = None,
    guide_features: LayerFeatures | None = None,
) -> Objective:
    """An objective from its expression, e.g. ``0.5 * l2(block12[7,31]) + l2(block10) + 0.1 * tv()``.

    Read safely (Python's ``ast``, nothing evaluated): numbers, names, strings, + - *, unary minus and calls of
    the functions in :data:`FUNCTIONS`; anything else is a :class:`ConfigError` naming it. ``[topK]`` needs
    ``image_features`` (layer → activations (1, C, h, w) of the image being dreamed); ``guide(NAME)`` needs
    ``guide_features`` (the same, of the guide image). ``parse(o.expression)`` has ``o``'s expression and values.
    """
    source = text.strip()
    if not source:
        raise ConfigError("empty objective; e.g. --objective 'l2(block10) + 0.5 * cls(goldfish)'")
    try:
        tree = ast.parse(source, mode="eval")
    except SyntaxError as e:
        raise ConfigError(f"cannot read objective {source!r}: {e.msg} (column {e.offset})") from None
    value = _Reader(source, image_features, guide_features).read(tree.body)
    if not isinstance(value, Objective):
        raise ConfigError(f"objective {source!r} is a number; it needs a function such as l2(LAYER)")
    return value


def check_expression(text: str) -> None:
    """Check an expression's syntax, functions and names without a model (``[topK]`` and ``guide()`` included);
    raises :class:`ConfigError` as :func:`parse` would."""
    stand_in: LayerFeatures = lambda name: torch.zeros(1, 1 << 16, 1, 1)  # noqa: E731  (enough channels for topK)
    parse(text, image_features=stand_in, guide_features=stand_in)


Value = Objective | float


class _Reader:
    """Turns an expression's syntax tree into an objective, allowing only the whitelisted nodes."""

    def __init__(self, source: str, image: LayerFeatures | None, guide: LayerFeatures | None) -> None:
        self.source, self.image, self.guide = source, image, guide

    def fail(self, node: ast.AST, what: str) -> ConfigError:
        snippet = ast.get_source_segment(self.source, node) or what
        return ConfigError(f"{what} {snippet!r} is not allowed in an objective; use {_ALLOWED}")

    def read(self, node: ast.expr) -> Value:
        if isinstance(node, ast.Constant) and isinstance(node.value, (int, float)) and not isinstance(node.value, bool):
            return float(node.value)
        if isinstance(node, ast.UnaryOp) and isinstance(node.op, (ast.USub, ast.UAdd)):
            value = self.read(node.operand)
            return -value if isinstance(node.op, ast.USub) else value
        if isinstance(node, ast.BinOp) and isinstance(node.op, (ast.Add, ast.Sub, ast.Mult)):
            return self.binary(node)
        if isinstance(node, ast.Call):
            return self.call(node)
        if isinstance(node, ast.Name):
            raise ConfigError(f"bare name {node.id!r} in objective {self.source!r}; did you mean l2({node.id})?")
        raise self.fail(node, _describe(node))

    def binary(self, node: ast.BinOp) -> Value:
        a, b = self.read(node.left), self.read(node.right)
        if isinstance(node.op, ast.Mult):
            if isinstance(a, Objective) and isinstance(b, Objective):
                raise self.fail(node, "a product of two objectives")
            return a * b  # type: ignore[operator,no-any-return]
        if isinstance(node.op, ast.Add):
            return b + a if isinstance(b, Objective) and not isinstance(a, Objective) else a + b  # type: ignore[operator,no-any-return]
        if isinstance(b, Objective) and not isinstance(a, Objective):
            return -b + a
        return a - b  # type: ignore[operator,no-any-return]

    def call(self, node: ast.Call) -> Objective:
        if not isinstance(node.func, ast.Name):
            raise self.fail(node, "call")
        fn = node.func.id
        if fn not in FUNCTIONS:
            close = difflib.get_close_matches(fn, FUNCTIONS, n=1, cutoff=0.5)
            hint = f"did you mean {close[0]}()? " if close else ""
            raise ConfigError(f"unknown function {fn}() in objective {self.source!r}; {hint}use {_ALLOWED}")
        if node.keywords:
            raise self.fail(node, "a keyword argument in")
        args = node.args
        wanted = 0 if fn in ("tv", "l2pull") else 1
        if len(args) != wanted:
            raise ConfigError(f"{fn}() takes {'no argument' if wanted == 0 else 'one argument'}, got {len(args)}")
        if fn == "tv":
            return tv()
        if fn == "l2pull":
            return l2pull()
        if fn == "cls":
            return class_logit(self.class_target(args[0]))
        if fn == "guide":
            name = self.layer_name(args[0])
            if self.guide is None:
                raise ConfigError(f"guide({name}) needs a guide image: give --guide IMAGE")
            return guide(name, self.guide(name))
        return self.layer_term(args[0], fn)

    def layer_term(self, node: ast.expr, loss: str) -> Objective:
        if not isinstance(node, ast.Subscript):
            return layer(self.layer_name(node), loss)
        name = self.layer_name(node.value)
        selection = parse_channels(self.selection_text(node.slice), where=f"{name}[...]")
        if selection.top is None:
            return channels(name, selection, loss)
        if self.image is None:
            raise ConfigError(f"{name}[top{selection.top}] needs the image being dreamed to choose its channels")
        return top_channels(name, selection.top, self.image(name), loss)

    def selection_text(self, node: ast.expr) -> str:
        """The bracket's contents back as text: ``7,31``, ``0:8``, ``top4``; checked by :func:`parse_channels`."""
        if isinstance(node, ast.Tuple):
            return ",".join(self.selection_text(e) for e in node.elts)
        if isinstance(node, ast.Slice) and node.step is None and node.lower is not None and node.upper is not None:
            return f"{self.selection_text(node.lower)}:{self.selection_text(node.upper)}"
        if isinstance(node, ast.Constant) and isinstance(node.value, int) and not isinstance(node.value, bool):
            return str(node.value)
        if isinstance(node, ast.Name):
            return node.id
        raise ConfigError(f"bad channels [{ast.get_source_segment(self.source, node)}]: {_SELECTION_HELP}")

    def layer_name(self, node: ast.expr) -> str:
        """A layer: a name (``block10``), a dotted path (``features.denseblock1``) or a string (``"layer3.1"``)."""
        if isinstance(node, ast.Name):
            return node.id
        if isinstance(node, ast.Attribute):
            return f"{self.layer_name(node.value)}.{node.attr}"
        if isinstance(node, ast.Constant) and isinstance(node.value, str) and node.value:
            return node.value
        raise self.fail(node, "layer name")

    def class_target(self, node: ast.expr) -> int | str:
        if isinstance(node, ast.Constant) and isinstance(node.value, (int, str)) and not isinstance(node.value, bool):
            return node.value
        if isinstance(node, ast.Name):
            return node.id
        raise self.fail(node, "class")


_NODE_NAMES = {ast.IfExp: "conditional", ast.Compare: "comparison", ast.BoolOp: "and/or", ast.Subscript: "indexing"}


def _describe(node: ast.AST) -> str:
    """A readable name for a disallowed node: ``attribute``, ``division``, ``comparison``…"""
    if isinstance(node, ast.BinOp):
        return {ast.Div: "division", ast.Pow: "power", ast.FloorDiv: "division", ast.Mod: "modulo"}.get(
            type(node.op), "operator"
        )
    return _NODE_NAMES.get(type(node)) or re.sub(r"(?<!^)(?=[A-Z])", " ", type(node).__name__).lower()
