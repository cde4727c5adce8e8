"""A loaded network, and feature extractors that stop the forward pass at the deepest layer asked for.

Layers are chosen by readable name (``block10``), alias (``mixed3``) or dotted module path (``_blocks.10``).
Extraction uses torchvision's ``create_feature_extractor``: an FX graph holding only what the requested layers
need, so nothing past the deepest one runs, and no hooks are left behind.
"""

from __future__ import annotations

import copy
import difflib
import math
import re
from collections.abc import Sequence
from dataclasses import dataclass, field

import torch
from torch import fx, nn

from inceptionism.errors import ConfigError
from inceptionism.models.cpu import GradientBackend, compile_backend
from inceptionism.models.optimize import fast_graph, fold_preprocessing
from inceptionism.models.spec import ModelSpec, Preprocessing, WeightsSpec
from inceptionism.models.tracing import inline_modules, trace_features, unshare_in_place


@dataclass(frozen=True)
class LayerInfo:
    """One layer: readable name, module path, output channels and stride (input pixels per output pixel)."""

    name: str
    path: str
    channels: int
    stride: int | None


class _ChannelsLastGrad(torch.autograd.Function):
    """Identity whose backward hands on the gradient in channels_last.

    An objective's gradient (the expanded gradient of a mean, the zeros around a sliced channel) comes back in
    NCHW; added to the network's own channels_last gradients, it would turn every later addition into a slow,
    strided one (in bf16 on CPUs, many times slower).
    """

    @staticmethod
    def forward(ctx: object, x: torch.Tensor) -> torch.Tensor:
        return x.view_as(x)

    @staticmethod
    def backward(ctx: object, grad: torch.Tensor) -> torch.Tensor:
        return grad.contiguous(memory_format=torch.channels_last)


def channels_last_grad(x: torch.Tensor) -> torch.Tensor:
    """``x``, with its gradient made channels_last on the way back (4-D tensors only)."""
    if x.dim() != 4 or not x.requires_grad:
        return x
    out: torch.Tensor = _ChannelsLastGrad.apply(x)
    return out


class FeatureExtractor(nn.Module):
    """``forward(x)``: RGB (B, 3, H, W) in [0, 1] → ``{layer name: activation (B, C, h, w)}``.

    The model's own preprocessing runs inside, so callers always work in image space.
    """

    def __init__(
        self,
        graph: nn.Module,
        preprocessing: Preprocessing,
        layers: tuple[str, ...],
        channels_last: bool = False,
        dtype: torch.dtype | None = None,
        preprocessed: bool = False,
        backend: GradientBackend | None = None,
    ) -> None:
        super().__init__()
        self.graph = graph
        self.preprocessing = preprocessing
        self.preprocessed = preprocessed  # the graph's first convolution holds the preprocessing
        self.layers = layers
        self.channels_last = channels_last
        self.dtype = dtype
        self.backend = backend  # the graph compiled for CPU image gradients without autograd, if it can be

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        if not self.preprocessed:
            x = self.preprocessing(x)
        if self.dtype is not None:
            x = x.to(dtype=self.dtype)
        if self.channels_last:  # after the cast: in bf16, cast then copy takes half the time of both in one
            x = x.contiguous(memory_format=torch.channels_last)
        if self.backend is not None and self.backend.wants(x):
            return self.backend(x)  # its reverse takes feature gradients in any layout
        try:
            out: dict[str, torch.Tensor] = self.graph(x)
        except AssertionError as e:  # a network that checks its input (ViT takes 224×224 only): no dream at any size
            raise ConfigError(
                f"the network refused a {x.shape[-2]}×{x.shape[-1]} input ({e}); DeepDream needs one that takes "
                "images of any size, such as a convolutional network"
            ) from None
        if self.channels_last:
            out = {name: channels_last_grad(act) for name, act in out.items()}
        return out

    def with_autograd(self) -> FeatureExtractor:
        """This extractor (sharing its graph) with gradients always by autograd, never by the CPU backend."""
        other = copy.copy(self)
        other.backend = None
        return other


def torchvision_units(module: nn.Module) -> tuple[type[nn.Module], ...]:
    """The ``torchvision.ops`` modules that torchvision's tracer keeps whole and that trace as plain operations
    (none for a network that is not torchvision's: importing torchvision costs a second)."""
    if not type(module).__module__.startswith("torchvision."):
        return ()
    from torchvision.ops import Conv2dNormActivation, SqueezeExcitation, StochasticDepth

    return (Conv2dNormActivation, SqueezeExcitation, StochasticDepth)


def traced_paths(module: nn.Module) -> set[str] | None:
    """Every module path with a node of its own or inside it in the traced eval graph; None if it does not trace."""
    from torchvision.models.feature_extraction import get_graph_node_names

    try:
        _, nodes = get_graph_node_names(module.eval())
    except Exception:  # a network torch.fx cannot trace: keep every path (the extractor reports the failure)
        return None
    paths: set[str] = set()
    for node in nodes:
        parts = node.split(".")
        paths.update(".".join(parts[:i]) for i in range(1, len(parts) + 1))
    return paths


def _feature_graph(module: nn.Module, nodes: dict[str, str]) -> fx.GraphModule:
    """torchvision's extractor for torchvision's networks (it knows their quirks), ours for the rest."""
    if type(module).__module__.startswith("torchvision."):
        from torchvision.models.feature_extraction import create_feature_extractor

        try:
            return create_feature_extractor(module, return_nodes=nodes)
        except ValueError as e:  # a module inside one that torchvision's tracer keeps whole (RegNet's stem.2)
            missing = re.search(r"node: '([^']+)' is not present", str(e))
            if missing is None:
                raise
            path = missing.group(1)
            traced = traced_paths(module) or set()
            parts = path.split(".")
            outer = next(  # the deepest module around it that the graph has
                (p for p in (".".join(parts[:i]) for i in range(len(parts) - 1, 0, -1)) if p in traced), parts[0]
            )
            raise ConfigError(
                f"layer {path!r} is inside {outer!r}, which the feature extractor runs as one step; "
                f"pick {outer!r} or a layer that `inceptionism layers` lists"
            ) from None
        except Exception as e:  # torch.fx cannot follow it: ViT asserts on the image size while traced
            raise ConfigError(
                f"{type(module).__name__} cannot be traced into a feature graph ({type(e).__name__}: {e}); "
                "DeepDream needs a network torch.fx can follow, such as a convolutional one"
            ) from None
    return trace_features(module, nodes)


@dataclass
class DreamModel:
    """A network with its weights loaded, frozen (no weight gradients) and in eval mode."""

    spec: ModelSpec
    module: nn.Module
    weights: WeightsSpec
    source: str
    missing_keys: tuple[str, ...] = ()
    _extractors: dict[tuple[str, ...], FeatureExtractor] = field(default_factory=dict, repr=False)

    def __post_init__(self) -> None:
        self.module.eval().requires_grad_(False)

    @property
    def name(self) -> str:
        return self.spec.name

    @property
    def preprocessing(self) -> Preprocessing:
        return self.weights.preprocessing

    def layer_names(self) -> list[str]:
        """Readable layer names, shallow to deep."""
        return list(self.spec.layers)

    def resolve_layer(self, name: str) -> str:
        """Module path for a readable name, alias or dotted path; unknown names suggest close ones."""
        if name in self.spec.layers:
            path = self.spec.layers[name]
        elif name in self.spec.aliases:
            path = self.spec.layers.get(self.spec.aliases[name], self.spec.aliases[name])
        elif name in dict(self.module.named_modules()) and name:
            path = name
        else:
            known = [*self.spec.layers, *self.spec.aliases]
            close = difflib.get_close_matches(name, known, n=3, cutoff=0.6)
            hint = f"did you mean {' or '.join(repr(c) for c in close)}? " if close else ""
            raise ConfigError(
                f"unknown layer {name!r} for {self.name}; {hint}`inceptionism layers {self.name}` lists them"
            )
        if any(k == path or k.startswith(path + ".") for k in self.missing_keys):
            raise ConfigError(f"layer {name!r} of {self.name} has no weights in {self.source}")
        return path

    def extractor(self, layers: Sequence[str], fast: bool = True, dtype: torch.dtype | None = None) -> FeatureExtractor:
        """A feature extractor returning the activations of ``layers`` (cached per layers, speed and dtype).

        ``fast``: run :func:`~inceptionism.models.optimize.fast_graph` (BatchNorm folded, pools and 1×1
        convolutions rearranged, channels_last; same results, allclose), and fold the preprocessing into an
        unpadded first convolution. ``fast=False`` runs the network exactly as defined. ``dtype`` (fast only):
        hold the weights in that dtype (bf16, fp16) and cast the input to it, instead of autocast casting every
        weight on every call.
        """
        names = tuple(dict.fromkeys(layers))
        key = (*names, f"fast={fast}", str(dtype))
        if dtype is not None and not fast:
            raise ValueError("a dtype needs the fast extractor (the plain one keeps the network as loaded)")
        if not names:
            raise ConfigError("no layers given: name at least one (e.g. --layers " + self.spec.default_layers[0] + ")")
        if key not in self._extractors:
            nodes = {self.resolve_layer(name): name for name in names}
            graph = _feature_graph(self.module.eval(), nodes)
            fixup = self.spec.graph_fixups.get(self.weights.name)
            if fixup is not None:
                graph = fixup(graph)
            graph = unshare_in_place(graph)  # a returned feature is never changed by a later in-place ReLU
            graph.eval().requires_grad_(False)
            preprocessed = False
            if fast:  # on a copy of the (truncated) graph: the loaded model itself is never changed
                copied = copy.deepcopy(graph).eval()
                # A plain GraphModule of the eval graph: torchvision's dual module would swap the unoptimised
                # train graph back in on .train(), and a copy of it starts in train mode.
                plain = fx.GraphModule(copied, copied.graph).eval()
                # torchvision keeps its ops' units whole; inlined, their in-place activations are checked again
                plain = unshare_in_place(inline_modules(plain, torchvision_units(self.module)))
                preprocessed = fold_preprocessing(plain, *self.preprocessing.affine())
                graph = fast_graph(plain, dtype)
            backend = compile_backend(graph) if fast else None
            self._extractors[key] = FeatureExtractor(
                graph, self.preprocessing, names, channels_last=fast, dtype=dtype, preprocessed=preprocessed,
                backend=backend if isinstance(backend, GradientBackend) else None,
            )  # fmt: skip
        return self._extractors[key]

    def to(self, device: torch.device | str) -> DreamModel:
        """Move the network (and cached extractors, which share its parameters) to ``device``."""
        self.module.to(device)
        for ex in self._extractors.values():
            ex.to(device)
        return self

    @torch.no_grad()
    def layer_info(self, names: Sequence[str] | None = None) -> list[LayerInfo]:
        """Channels and stride of each layer, measured by one forward pass at the model's native size."""
        names = list(names) if names is not None else self.layer_names()
        paths = {name: self.resolve_layer(name) for name in names}
        modules = dict(self.module.named_modules())
        size = self.spec.native_size
        shapes: dict[str, torch.Size] = {}
        handles = []
        for name, path in paths.items():

            def hook(_m: nn.Module, _i: object, out: object, name: str = name) -> None:
                if isinstance(out, torch.Tensor):
                    shapes[name] = out.shape

            handles.append(modules[path].register_forward_hook(hook))
        try:
            device = next(self.module.parameters()).device
            self.module(self.preprocessing(torch.zeros(1, 3, size, size, device=device)))
        finally:
            for h in handles:
                h.remove()
        infos = []
        for name, path in paths.items():
            shape = shapes.get(name)
            channels = int(shape[1]) if shape is not None else 0
            # Nominal stride: unpadded convolutions (InceptionV3) make the exact ratio a little over a power of 2.
            stride = 2 ** round(math.log2(size / shape[-1])) if shape is not None and len(shape) == 4 else None
            infos.append(LayerInfo(name, path, channels, stride))
        return infos
