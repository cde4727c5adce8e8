"""torchvision's classification networks: the seed's InceptionV3, the classic GoogLeNet, VGG, ResNet, and ``tv:*``.

torchvision's own definitions are used, never copied. Each spec's preprocessing follows its weights: the Google
ports (InceptionV3, GoogLeNet) expect RGB in [-1, 1] — torchvision's ``transform_input=True`` converts ImageNet-
normalised input to exactly that, so we build them with ``transform_input=False`` and say so in the spec.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import TYPE_CHECKING

import torch
from torch import nn

from inceptionism.errors import ConfigError
from inceptionism.models.features import traced_paths
from inceptionism.models.registry import register_model
from inceptionism.models.spec import ModelSpec, Preprocessing, StateDict, WeightsSpec

if TYPE_CHECKING:
    import torchvision

# torchvision is imported where a spec is made, never at import: importing it is slow (it imports torch._dynamo),
# and the default network, defined here without torchvision, should not pay for it.

TO_UNIT_RANGE = Preprocessing(mean=(0.5, 0.5, 0.5), std=(0.5, 0.5, 0.5))


def _weights_spec(
    enum_value: torchvision.models.WeightsEnum,
    preprocessing: Preprocessing | None = None,
    optional_keys: tuple[str, ...] = (),
) -> WeightsSpec:
    """Our weights spec for one of torchvision's weight enums: URL, official file name, preprocessing."""
    url = enum_value.url
    if preprocessing is None:
        t = enum_value.transforms()
        preprocessing = Preprocessing(tuple(t.mean), tuple(t.std))  # type: ignore[arg-type]
    return WeightsSpec(
        name=str(enum_value).split(".")[-1],
        filename=Path(url).name,
        preprocessing=preprocessing,
        url=url,
        optional_keys=optional_keys,
        categories=tuple(enum_value.meta.get("categories", ())),
        description=f"torchvision {enum_value}",
    )


def _drop_aux(module: nn.Module) -> None:
    """Auxiliary classifiers are only for training; the dream never runs them."""
    if hasattr(module, "aux_logits"):
        module.aux_logits = False  # type: ignore[assignment]
    for name in ("AuxLogits", "aux1", "aux2"):
        if hasattr(module, name):
            setattr(module, name, None)


# ---------------------------------------------------------------------------------------------------------------
# InceptionV3 — the seed's model

INCEPTION_V3_BLOCKS = (
    "Conv2d_1a_3x3", "Conv2d_2a_3x3", "Conv2d_2b_3x3", "maxpool1", "Conv2d_3b_1x1", "Conv2d_4a_3x3", "maxpool2",
    "Mixed_5b", "Mixed_5c", "Mixed_5d", "Mixed_6a", "Mixed_6b", "Mixed_6c", "Mixed_6d", "Mixed_6e",
    "Mixed_7a", "Mixed_7b", "Mixed_7c",
)  # fmt: skip
# The seed's Keras names: mixed0 … mixed10.
KERAS_ALIASES = {f"mixed{i}": name for i, name in enumerate(INCEPTION_V3_BLOCKS[7:])}


def _keras_h5_loader(path: Path) -> tuple[StateDict, WeightsSpec]:
    from inceptionism.models.keras_h5 import load_keras_inception_v3_h5

    return load_keras_inception_v3_h5(path), KERAS_INCEPTION_V3


KERAS_INCEPTION_V3 = WeightsSpec(
    name="KERAS_IMAGENET",
    filename="inception_v3_weights_tf_dim_ordering_tf_kernels_notop.h5",
    preprocessing=TO_UNIT_RANGE,  # keras.applications.inception_v3.preprocess_input: x / 127.5 - 1
    optional_keys=("fc.", "AuxLogits."),
    description="Keras' ImageNet weights for InceptionV3 (include_top=False), converted on load",
)


def _keras_fixup(graph: torch.fx.GraphModule) -> torch.fx.GraphModule:
    from inceptionism.models.keras_h5 import keras_compatible

    return keras_compatible(graph)


@register_model("inception_v3")
def inception_v3() -> ModelSpec:
    import torchvision
    from torchvision.models import Inception_V3_Weights

    return ModelSpec(
        name="inception_v3",
        builder=lambda: torchvision.models.inception_v3(
            weights=None, aux_logits=True, transform_input=False, init_weights=False
        ),
        weights=_weights_spec(Inception_V3_Weights.IMAGENET1K_V1, TO_UNIT_RANGE, optional_keys=("AuxLogits.",)),
        layers={**{name: name for name in INCEPTION_V3_BLOCKS}, "logits": "fc"},
        aliases=KERAS_ALIASES,
        default_layers=("Mixed_6a", "Mixed_6c"),
        native_size=299,
        look="the seed's network (Keras mixed3/mixed5 = Mixed_6a/Mixed_6c): dense eyes, arches, pagoda-like forms",
        file_loaders={".h5": _keras_h5_loader},
        graph_fixups={KERAS_INCEPTION_V3.name: _keras_fixup},
        after_load=_drop_aux,
    )


# ---------------------------------------------------------------------------------------------------------------
# GoogLeNet — the 2015 look

GOOGLENET_BLOCKS = (
    "conv1", "maxpool1", "conv2", "conv3", "maxpool2", "inception3a", "inception3b", "maxpool3",
    "inception4a", "inception4b", "inception4c", "inception4d", "inception4e", "maxpool4", "inception5a",
    "inception5b",
)  # fmt: skip


@register_model("googlenet")
def googlenet() -> ModelSpec:
    import torchvision
    from torchvision.models import GoogLeNet_Weights

    return ModelSpec(
        name="googlenet",
        builder=lambda: torchvision.models.googlenet(
            weights=None, aux_logits=True, transform_input=False, init_weights=False
        ),
        weights=_weights_spec(GoogLeNet_Weights.IMAGENET1K_V1, TO_UNIT_RANGE),
        layers={**{name: name for name in GOOGLENET_BLOCKS}, "logits": "fc"},
        # Caffe-style names from Google's 2015 notebook.
        aliases={f"inception_{n[9:]}": n for n in GOOGLENET_BLOCKS if n.startswith("inception")},
        default_layers=("inception4c",),
        native_size=224,
        look="the classic 2015 DeepDream network (inception_4c): dogs, eyes, birds (torchvision's BN port)",
        after_load=_drop_aux,
    )


# ---------------------------------------------------------------------------------------------------------------
# VGG — named like the papers: conv3_1, relu4_3, pool5


def _vgg_layers(features: nn.Sequential) -> dict[str, str]:
    names: dict[str, str] = {}
    block, conv = 1, 0
    for i, m in enumerate(features):
        if isinstance(m, nn.Conv2d):
            conv += 1
            names[f"conv{block}_{conv}"] = f"features.{i}"
        elif isinstance(m, nn.ReLU):
            names[f"relu{block}_{conv}"] = f"features.{i}"
        elif isinstance(m, nn.MaxPool2d):
            names[f"pool{block}"] = f"features.{i}"
            block, conv = block + 1, 0
    names["logits"] = "classifier.6"
    return names


def _vgg_spec(name: str, look: str) -> ModelSpec:
    from torchvision.models import get_model_builder, get_model_weights

    weights = get_model_weights(name).IMAGENET1K_V1  # type: ignore[attr-defined]
    builder = get_model_builder(name)
    with torch.device("meta"):  # only the layer structure is needed: no 550 MB of random weights
        features = builder(weights=None).features
    return ModelSpec(
        name=name,
        builder=lambda: builder(weights=None),
        weights=_weights_spec(weights),
        layers=_vgg_layers(features),
        default_layers=("relu4_3",) if name == "vgg16" else ("relu4_4",),
        native_size=224,
        look=look,
    )


@register_model("vgg16")
def vgg16() -> ModelSpec:
    return _vgg_spec("vgg16", "painterly textures and animal parts, heavier on colour (relu4_3)")


@register_model("vgg19")
def vgg19() -> ModelSpec:
    return _vgg_spec("vgg19", "like vgg16, a little more structure (relu4_4)")


# ---------------------------------------------------------------------------------------------------------------
# ResNet-50


@register_model("resnet50")
def resnet50() -> ModelSpec:
    import torchvision
    from torchvision.models import ResNet50_Weights

    layers = {"stem": "relu", "pool": "maxpool"}
    for stage, blocks in ((1, 3), (2, 4), (3, 6), (4, 3)):
        layers[f"layer{stage}"] = f"layer{stage}"
        layers.update({f"layer{stage}.{b}": f"layer{stage}.{b}" for b in range(blocks)})
    layers["logits"] = "fc"
    return ModelSpec(
        name="resnet50",
        builder=lambda: torchvision.models.resnet50(weights=None),
        weights=_weights_spec(ResNet50_Weights.IMAGENET1K_V1),
        layers=layers,
        default_layers=("layer3",),
        native_size=224,
        look="crisp, dense object parts and fur at layer3; layer4 is abstract",
    )


# ---------------------------------------------------------------------------------------------------------------
# tv:<name> — any other torchvision classification model


def torchvision_spec(name: str) -> ModelSpec:
    """Spec for ``tv:<name>``: torchvision's builder and DEFAULT weights; layers by dotted module path."""
    import torchvision
    from torchvision.models import get_model_builder, get_model_weights

    classification = torchvision.models.list_models(module=torchvision.models)
    if name not in classification:
        import difflib

        close = difflib.get_close_matches(name, classification, n=3, cutoff=0.5)
        hint = f"did you mean {' or '.join('tv:' + c for c in close)}? " if close else ""
        raise ConfigError(
            f"unknown torchvision classification model {name!r}; {hint}see torchvision.models.list_models()"
        )
    builder = get_model_builder(name)
    weights = get_model_weights(name).DEFAULT  # type: ignore[attr-defined]
    probe = builder(weights=None)
    layers = _outline(probe)
    default = list(layers)[int(len(layers) * 0.6)]
    classifier = [path for path, m in probe.named_modules() if isinstance(m, nn.Linear)]
    if classifier:  # the last fully connected layer gives the class scores: cls() reads them as "logits"
        layers["logits"] = classifier[-1]
    return ModelSpec(
        name=f"tv:{name}",
        state_fixup=_densenet_keys if name.startswith("densenet") else None,
        builder=lambda: builder(weights=None),
        weights=_weights_spec(weights),
        layers=layers,
        default_layers=(default,),
        native_size=int(weights.transforms().crop_size[0]),
        look="torchvision model; default layer at 60% depth — pick layers with `inceptionism layers`",
    )


_OLD_DENSENET_KEY = re.compile(r"(denselayer\d+\.(?:norm|relu|conv))\.([12])\.")


def _densenet_keys(state: StateDict) -> StateDict:
    """Official DenseNet files predate the module names: ``norm.1`` → ``norm1``, ``conv.2`` → ``conv2``."""
    return {_OLD_DENSENET_KEY.sub(r"\1\2.", k): v for k, v in state.items()}


def _outline(module: nn.Module, depth: int = 2) -> dict[str, str]:
    """Module paths up to ``depth`` levels (``features``, ``features.3``), shallow to deep in definition order.

    Only paths the feature extractor can return: torchvision's tracer keeps some modules whole (RegNet's
    ``stem``), and the modules inside those are no node of the graph."""
    traced = traced_paths(module)
    out: dict[str, str] = {}
    for path, m in module.named_modules():
        shown = path and path.count(".") < depth and not isinstance(m, (nn.Dropout, nn.Identity, nn.Flatten))
        if shown and (traced is None or path in traced):
            out[path] = path
    return out
