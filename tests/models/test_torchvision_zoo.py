"""Tests for the torchvision zoo: InceptionV3, GoogLeNet, VGG16/19, ResNet-50 and ``tv:*`` models.

No real weights are needed: each model gets random-init weights saved under its official file name in a temporary
torch hub cache, exactly where torchvision would have downloaded them; then it must load, dream and describe itself.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import torch

from inceptionism.config import DreamConfig
from inceptionism.engine import Dreamer, Progress, build_objective
from inceptionism.errors import ConfigError
from inceptionism.models import DreamModel, Preprocessing, get_model_spec, load_model
from inceptionism.models.features import torchvision_units
from inceptionism.models.spec import IMAGENET_MEAN, IMAGENET_STD
from inceptionism.models.tracing import inline_modules
from support import assert_close_to_scale

UNIT_RANGE = ((0.5, 0.5, 0.5), (0.5, 0.5, 0.5))
IMAGENET = (IMAGENET_MEAN, IMAGENET_STD)

# name → (official file name, preprocessing (mean, std), default layers)
ZOO = {
    "inception_v3": ("inception_v3_google-0cc3c7bd.pth", UNIT_RANGE, ("Mixed_6a", "Mixed_6c")),
    "googlenet": ("googlenet-1378be20.pth", UNIT_RANGE, ("inception4c",)),
    "vgg16": ("vgg16-397923af.pth", IMAGENET, ("relu4_3",)),
    "vgg19": ("vgg19-dcbb9e9d.pth", IMAGENET, ("relu4_4",)),
    "resnet50": ("resnet50-0676ba61.pth", IMAGENET, ("layer3",)),
    "tv:mobilenet_v3_small": ("mobilenet_v3_small-047dcff4.pth", IMAGENET, None),
    "tv:mobilenet_v2": ("mobilenet_v2-7ebf99e0.pth", IMAGENET, None),  # built of torchvision.ops units
}


# Zoo models whose graph holds operations without a backprop rule (hardswish, squeeze-excite): autograd runs them.
WITHOUT_PROGRAM = {"tv:mobilenet_v3_small"}


@dataclass(frozen=True)
class Loaded:
    model: DreamModel
    weights_path: Path
    torch_home: Path


@pytest.fixture(scope="module", params=list(ZOO))
def zoo(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory, hub_weights: Callable[..., Path]
) -> Iterator[Loaded]:
    """Random weights written to ``$TORCH_HOME/hub/checkpoints/<official name>``, then ``load_model(name)``."""
    name = request.param
    home = tmp_path_factory.mktemp("torch_home")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("TORCH_HOME", str(home))
        mp.setattr(torch.hub, "_hub_dir", None)
        path = hub_weights(get_model_spec(name))
        try:
            model = load_model(name, device="cpu")
            yield Loaded(model, path, home)
        finally:
            path.unlink()  # VGG files are ~550 MB: do not keep them in pytest's temporary folders


def _image(h: int = 96, w: int = 96) -> torch.Tensor:
    return torch.rand(1, 3, h, w, generator=torch.Generator().manual_seed(0))


# ---------------------------------------------------------------------------------------------------------------
# Every zoo model: load from the hub cache, dream, describe its layers


def test_loads_the_official_file_from_the_hub_cache(zoo: Loaded) -> None:
    model, path = zoo.model, zoo.weights_path
    filename = ZOO[model.name][0]
    spec = model.spec
    assert spec.weights.filename == filename
    assert spec.weights.url is not None and spec.weights.url.endswith("/" + filename)
    assert path == zoo.torch_home / "hub" / "checkpoints" / filename
    assert model.source == str(path)
    assert model.missing_keys == ()
    saved = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
    state = model.module.state_dict()
    assert state, "empty model"
    for key, value in state.items():  # every tensor the model keeps came from the file
        assert torch.equal(value, saved[key]), key
    assert not model.module.training
    assert not any(p.requires_grad for p in model.module.parameters())


def test_two_step_dream_raises_the_objective(zoo: Loaded) -> None:
    model = zoo.model
    config = DreamConfig(model=model.name, octaves=1, steps=2, jitter=0, tile_size=256, precision="fp32").validate()
    objective = build_objective(config, model)
    expected_layers = ZOO[model.name][2] or model.spec.default_layers
    assert objective.layers == expected_layers
    dreamer = Dreamer(model, objective, config, torch.device("cpu"))
    image = _image(80, 96)
    progress: list[Progress] = []
    with torch.no_grad():
        before = float(dreamer.score(image))
    dream = dreamer.run(image, callback=progress.append)
    with torch.no_grad():
        after = float(dreamer.score(dream))
    assert [p.step for p in progress] == [1, 2]
    assert progress[0].score == pytest.approx(before, rel=1e-4)  # step 1 reports the score it started from
    assert progress[1].score > progress[0].score
    assert after > progress[1].score
    assert after > before * 1.05, (before, after)
    assert dream.shape == image.shape
    assert float(dream.min()) >= 0.0 and float(dream.max()) <= 1.0
    assert not torch.equal(dream, image)
    assert torch.equal(progress[-1].image, dream)


def test_layer_info_lists_every_layer(zoo: Loaded) -> None:
    model = zoo.model
    infos = model.layer_info()
    assert [i.name for i in infos] == model.layer_names()
    assert len(infos) >= 5
    empty = [i.name for i in infos if i.channels <= 0]
    assert not empty, f"layers with no measured output: {empty}"
    by_name = {i.name: i for i in infos}
    for info in infos:
        assert info.path == model.resolve_layer(info.name)
        assert info.stride is None or info.stride >= 1
    for name in model.spec.default_layers:
        info = by_name[name]
        assert info.channels > 0 and info.stride is not None and info.stride >= 4
    if "logits" in by_name:
        assert (by_name["logits"].channels, by_name["logits"].stride) == (1000, None)


@torch.no_grad()
def test_preprocessing_follows_the_weights(zoo: Loaded) -> None:
    model = zoo.model
    mean, std = ZOO[model.name][1]
    assert model.preprocessing == Preprocessing(mean, std)
    assert model.spec.weights.preprocessing == model.preprocessing
    # The extractor takes [0, 1] RGB and normalises it itself, exactly once.
    layer = model.spec.default_layers[0]
    image = _image()
    normalised = (image - torch.tensor(mean).view(1, 3, 1, 1)) / torch.tensor(std).view(1, 3, 1, 1)
    seen: list[torch.Tensor] = []
    module = dict(model.module.named_modules())[model.resolve_layer(layer)]
    handle = module.register_forward_hook(lambda m, i, out: seen.append(out))
    try:
        model.module(normalised)
    finally:
        handle.remove()
    assert_close_to_scale(model.extractor([layer])(image)[layer], seen[0])


def _module_calls(extractor: torch.nn.Module) -> list[str]:
    return [str(n.target) for n in extractor.graph.graph.nodes if n.op == "call_module"]  # type: ignore[union-attr]


@torch.no_grad()
def test_extractor_stops_at_the_deepest_requested_layer(zoo: Loaded) -> None:
    model = zoo.model
    names = model.layer_names()
    index = len(names) // 3
    shallow = names[index]
    path = model.resolve_layer(shallow)
    inside = (path, path + ".")
    later = [model.resolve_layer(n) for n in names[index + 1 :]]
    later = [p for p in later if not p.startswith(path + ".")]  # sub-layers of the requested one are fine
    assert later
    plain, fast = model.extractor([shallow], fast=False), model.extractor([shallow])
    plain_calls, fast_calls = _module_calls(plain), _module_calls(fast)
    assert any(t == path or t.startswith(path + ".") for t in plain_calls), "the requested layer is not computed"
    for calls in (plain_calls, fast_calls):  # nothing of the deeper layers is in either graph
        deeper = [t for t in calls if any(t == p or t.startswith(p + ".") for p in later) and not t.startswith(inside)]
        assert not deeper, deeper[:5]
    units = torchvision_units(model.module)  # inlined in the fast graph: count their modules' calls in both
    inlined = inline_modules(copy.deepcopy(plain.graph), units)
    unfolded = [str(n.target) for n in inlined.graph.nodes if n.op == "call_module"]
    assert len(fast_calls) <= len(unfolded)  # BN folding only removes calls
    image = _image()
    out = fast(image)
    assert list(out) == [shallow]
    assert_close_to_scale(out[shallow], plain(image)[shallow])


def test_fast_extractor_gradient_matches_the_plain_graph(zoo: Loaded) -> None:
    """Every graph pass (BN folding, merged convolutions, pools moved, stems and depthwise convolutions with their
    own input gradients, preprocessing folded) keeps the image gradient in fp32."""
    model = zoo.model
    layers = list(model.spec.default_layers)
    plain, fast = model.extractor(layers, fast=False), model.extractor(layers)
    image = _image(80, 112)
    grads = []
    for extractor in (plain, fast):
        x = image.clone().requires_grad_(True)
        acts = extractor(x)
        sum(a.float().square().mean() for a in acts.values()).backward()
        grads.append(x.grad)
    # Relative L2, not max: rounding flips a few max-pool choices where two inputs nearly tie (ResNet's stem).
    error = float((grads[1] - grads[0]).norm() / grads[0].norm())
    assert error < 5e-3, error  # 1e-6–3e-5, ResNet 1e-3; a wrong pass gives order 1


def test_backprop_program_covers_the_zoo_and_matches_autograd(zoo: Loaded) -> None:
    """Every zoo graph compiles to a :class:`Backprop` program, down to the classifier, and its image gradient is
    autograd's on the same fast graph (the same kernels: equal, or a rounding apart), in fp32 and bf16."""
    model = zoo.model
    names = model.layer_names()
    image = _image(80, 112)
    for layers in (list(model.spec.default_layers), [names[len(names) // 2], names[-1]]):
        # bf16 down to ResNet-50's logits differs by up to 1e-2 (rounding flips max-pool winners in its stem, and
        # fifty layers carry them); a wrong rule gives order 1.
        for dtype, tolerance in ((None, 1e-5), (torch.bfloat16, 2e-2)):
            extractor = model.extractor(layers, dtype=dtype)
            assert (extractor.backend is None) == (model.name in WITHOUT_PROGRAM), (layers, dtype)
            if extractor.backend is None:
                continue
            without = extractor.with_autograd()
            grads = []
            for ex in (extractor, without):
                x = image.clone().requires_grad_(True)
                sum(a.float().square().mean() for a in ex(x).values()).backward()
                grads.append(x.grad)
            error = float((grads[0] - grads[1]).norm() / grads[1].norm())
            assert error < tolerance, (layers, dtype, error)


# ---------------------------------------------------------------------------------------------------------------
# Model-specific names and behaviour


@pytest.mark.parametrize("zoo", ["vgg16"], indirect=True)
def test_a_convolution_feature_is_its_output_even_when_an_in_place_relu_follows(zoo: Loaded) -> None:
    """VGG's ReLUs run in place; a requested convolution's feature must not come back rectified because a
    deeper layer was requested too (it did, before in-place operations on shared tensors were made out of place)."""
    model = zoo.model
    image = _image(64, 64)
    for fast in (False, True):
        alone = model.extractor(["conv3_1"], fast=fast)(image)["conv3_1"]
        with_deeper = model.extractor(["conv3_1", "relu4_1"], fast=fast)(image)
        assert alone.min() < 0
        assert_close_to_scale(with_deeper["conv3_1"], alone)
        assert with_deeper["relu4_1"].min() >= 0


@pytest.mark.parametrize("zoo", ["inception_v3"], indirect=True)
def test_inception_v3_keras_aliases(zoo: Loaded) -> None:
    model = zoo.model
    assert model.resolve_layer("mixed3") == "Mixed_6a"
    assert model.resolve_layer("mixed5") == "Mixed_6c"
    assert model.resolve_layer("mixed0") == "Mixed_5b"
    assert model.resolve_layer("mixed10") == "Mixed_7c"
    image = _image()
    keras = model.extractor(["mixed3", "mixed5"])(image)
    torch_names = model.extractor(["Mixed_6a", "Mixed_6c"])(image)
    assert list(keras) == ["mixed3", "mixed5"]
    assert_close_to_scale(keras["mixed3"], torch_names["Mixed_6a"])
    assert_close_to_scale(keras["mixed5"], torch_names["Mixed_6c"])
    config = DreamConfig(model="inception_v3", layers=("mixed3", "mixed5:0.5"))
    assert build_objective(config, model).layers == ("mixed3", "mixed5")
    with pytest.raises(ConfigError, match=r"unknown layer 'mixed11'.*did you mean"):
        model.resolve_layer("mixed11")


@pytest.mark.parametrize("zoo", ["googlenet"], indirect=True)
def test_googlenet_caffe_aliases(zoo: Loaded) -> None:
    model = zoo.model
    assert model.resolve_layer("inception_4c") == "inception4c"
    assert model.resolve_layer("inception_3a") == "inception3a"
    assert model.resolve_layer("inception_5b") == "inception5b"
    out = model.extractor(["inception_4c"])(_image())
    expected = model.extractor(["inception4c"])(_image())["inception4c"]
    assert_close_to_scale(out["inception_4c"], expected)
    (info,) = model.layer_info(["inception_4c"])
    assert (info.path, info.channels, info.stride) == ("inception4c", 512, 16)


@pytest.mark.parametrize("zoo", ["inception_v3", "googlenet"], indirect=True)
def test_google_ports_take_unit_range_input_once(zoo: Loaded) -> None:
    """[-1, 1] is applied by our preprocessing, so torchvision's own input transform must be off; aux heads dropped."""
    module = zoo.model.module
    assert module.transform_input is False
    assert module.aux_logits is False
    assert all(getattr(module, name, None) is None for name in ("AuxLogits", "aux1", "aux2"))


@pytest.mark.parametrize("zoo", ["vgg16", "vgg19"], indirect=True)
def test_vgg_layers_are_named_like_the_paper(zoo: Loaded) -> None:
    model = zoo.model
    if model.name == "vgg16":
        expected = {"conv1_1": "features.0", "relu1_1": "features.1", "relu4_3": "features.22", "pool5": "features.30"}
    else:
        expected = {"conv1_1": "features.0", "relu4_4": "features.26", "conv5_4": "features.34", "pool5": "features.36"}
    for name, path in expected.items():
        assert model.resolve_layer(name) == path
    assert model.resolve_layer("logits") == "classifier.6"
    (info,) = model.layer_info(["relu4_3" if model.name == "vgg16" else "relu4_4"])
    assert (info.channels, info.stride) == (512, 8)


@pytest.mark.parametrize("zoo", ["resnet50"], indirect=True)
def test_resnet50_layers(zoo: Loaded) -> None:
    model = zoo.model
    info = {i.name: i for i in model.layer_info(["stem", "layer1", "layer3", "layer3.5", "layer4"])}
    assert {n: (i.channels, i.stride) for n, i in info.items()} == {
        "stem": (64, 2),
        "layer1": (256, 4),
        "layer3": (1024, 16),
        "layer3.5": (1024, 16),
        "layer4": (2048, 32),
    }


def test_tv_prefix_reaches_registered_models() -> None:
    for name in ("googlenet", "inception_v3"):
        spec = get_model_spec(f"tv:{name}")
        assert spec.name == name
        assert spec.weights.preprocessing == Preprocessing(*UNIT_RANGE)
        assert spec.aliases == get_model_spec(name).aliases
    assert get_model_spec("tv:googlenet").aliases["inception_4c"] == "inception4c"


def test_tv_registered_name_loads_the_same_file(torch_home: Path, hub_weights: Callable[..., Path]) -> None:
    path = hub_weights("googlenet")
    model = load_model("tv:googlenet")
    assert model.name == "googlenet"
    assert model.source == str(path)
    assert model.preprocessing == Preprocessing(*UNIT_RANGE)


def test_tv_model_spec() -> None:
    spec = get_model_spec("tv:mobilenet_v3_small")
    assert spec.name == "tv:mobilenet_v3_small"
    assert spec.native_size == 224
    assert spec.weights.preprocessing == Preprocessing(*IMAGENET)
    assert "features.3" in spec.layers and spec.layers["features.3"] == "features.3"
    assert not any(path.count(".") > 1 for path in spec.layers.values())  # outline: two levels deep
    assert len(spec.weights.categories) == 1000
    assert spec.default_layers[0] in spec.layers


@pytest.mark.parametrize(
    ("name", "suggestion"),
    [("tv:mobilenet_v3_smal", "tv:mobilenet_v3_small"), ("tv:resnet5", "tv:resnet50"), ("tv:vgg_16", "tv:vgg16")],
)
def test_tv_unknown_name_suggests_close_names(name: str, suggestion: str) -> None:
    with pytest.raises(ConfigError, match="did you mean") as info:
        get_model_spec(name)
    message = str(info.value)
    assert f"unknown torchvision classification model {name.removeprefix('tv:')!r}" in message
    assert suggestion in message


@pytest.mark.parametrize("name", ["tv:qwertyuiop", "tv:fasterrcnn_resnet50_fpn", "tv:"])
def test_tv_names_that_are_not_classifiers(name: str) -> None:
    with pytest.raises(ConfigError, match="unknown torchvision classification model"):
        load_model(name)


# ---------------------------------------------------------------------------------------------------------------
# Preprocessing


@pytest.mark.parametrize("name", list(ZOO))
def test_spec_preprocessing(name: str) -> None:
    mean, std = ZOO[name][1]
    preprocessing = get_model_spec(name).weights.preprocessing
    assert preprocessing.mean == pytest.approx(mean)
    assert preprocessing.std == pytest.approx(std)
    expected = "RGB scaled to [-1, 1]" if (mean, std) == UNIT_RANGE else "RGB, ImageNet mean/std"
    assert preprocessing.describe() == expected


def test_imagenet_preprocessing_is_numerically_right() -> None:
    x = torch.rand(2, 3, 5, 7, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    y = Preprocessing()(x)
    assert y.dtype == torch.float64 and y.shape == x.shape
    for c in range(3):
        torch.testing.assert_close(y[:, c], (x[:, c] - IMAGENET_MEAN[c]) / IMAGENET_STD[c])
    ones = Preprocessing()(torch.ones(1, 3, 1, 1))
    torch.testing.assert_close(ones.flatten(), torch.tensor([(1 - 0.485) / 0.229, (1 - 0.456) / 0.224, 0.594 / 0.225]))


def test_unit_range_preprocessing_maps_to_minus_one_one() -> None:
    to_unit = Preprocessing(*UNIT_RANGE)
    x = torch.tensor([0.0, 0.25, 0.5, 1.0]).view(1, 1, 1, 4).expand(1, 3, 1, 4)
    torch.testing.assert_close(to_unit(x), torch.tensor([-1.0, -0.5, 0.0, 1.0]).view(1, 1, 1, 4).expand(1, 3, 1, 4))


def test_custom_preprocessing_describes_itself() -> None:
    p = Preprocessing((0.1, 0.2, 0.3), (1.0, 2.0, 4.0))
    assert p.describe() == "RGB, mean (0.1, 0.2, 0.3), std (1.0, 2.0, 4.0)"
    y = p(torch.ones(1, 3, 2, 2))
    torch.testing.assert_close(y[0, :, 0, 0], torch.tensor([0.9, 0.4, 0.175]))


def test_tv_densenet_loads_official_files_with_old_key_names(
    torch_home: Path, hub_weights: Callable[..., Path]
) -> None:
    spec = get_model_spec("tv:densenet121")
    state = spec.builder().state_dict()
    old = {k.replace(".norm1.", ".norm.1.").replace(".conv2.", ".conv.2."): v for k, v in state.items()}
    assert old != state  # the official file's layout really differs
    hub_weights(spec, old)
    model = load_model("tv:densenet121")
    assert all(torch.equal(model.module.state_dict()[k], v) for k, v in state.items())


def test_tv_layers_are_what_the_extractor_can_return(torch_home: Path, hub_weights: Callable[..., Path]) -> None:
    """torchvision's tracer keeps some modules whole (RegNet's stem): the modules inside are not listed, and one
    asked for by its path gets a message naming the module to pick instead of torchvision's error."""
    spec = get_model_spec("tv:regnet_x_400mf")
    assert "stem" in spec.layers and "stem.2" not in spec.layers
    assert "trunk_output.block1" in spec.layers
    hub_weights(spec)
    model = load_model("tv:regnet_x_400mf")
    assert model.extractor(["stem", "trunk_output.block1"]) is not None
    with pytest.raises(ConfigError, match=r"'stem\.2' is inside 'stem'.*pick 'stem'"):
        model.extractor(["stem.2"])


def test_a_network_fx_cannot_trace_gets_a_message(
    torch_home: Path, hub_weights: Callable[..., Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    """ViT asserts on its image size while torch.fx traces it: a one-line error, not an internal one."""
    import torchvision.models.feature_extraction as fe

    hub_weights("tv:squeezenet1_1")
    model = load_model("tv:squeezenet1_1")

    def refuse(*args: object, **kwargs: object) -> None:
        raise AssertionError("Wrong image height! Expected 224 but got Proxy(getitem_2)!")

    monkeypatch.setattr(fe, "create_feature_extractor", refuse)
    with pytest.raises(ConfigError, match=r"cannot be traced into a feature graph \(AssertionError: Wrong image"):
        model.extractor(["features.5"])
