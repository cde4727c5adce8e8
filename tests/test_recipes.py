"""Objectives from settings, on the real default network (efficientnet-lite0, offline weights)."""

import json
from pathlib import Path

import pytest
import torch
from PIL import Image

from inceptionism.config import DreamConfig
from inceptionism.engine import Dreamer
from inceptionism.errors import ConfigError, ImageError, InceptionismError
from inceptionism.io import load_image
from inceptionism.models import load_model
from inceptionism.objectives import Context, parse, strongest_channels
from inceptionism.recipes import (
    CUSTOM_OBJECTIVE,
    GUIDE_SHA256,
    apply_overrides,
    build_objective,
    fit_side,
    layer_features,
)
from inceptionism.transforms import resize

EXAMPLES = Path(__file__).parent.parent / "examples"
RUN = {"octaves": 1, "steps": 3, "jitter": 0, "precision": "fp32", "tile_size": 128}


@pytest.fixture(scope="module")
def lite0():
    return load_model("efficientnet-lite0")


@pytest.fixture(scope="module")
def photo():
    return resize(load_image(EXAMPLES / "chelsea.jpg").rgb, (72, 108))


def _features(model, x, name):
    with torch.no_grad():
        return model.extractor((name,), fast=False)(x)[name]


def _dream(model, image, **settings):
    cfg = DreamConfig(**{**RUN, **settings}).validate()
    return Dreamer(model, build_objective(cfg, model, image), cfg, torch.device("cpu")).run(image)


def test_fields_build_one_expression(lite0, photo):
    cfg = DreamConfig(layers=("block12[7,31]:0.5", "block10", "block8[0:4]:2"), classes=("goldfish",), tv=0.1)
    obj = build_objective(cfg, lite0, photo)
    assert obj.expression == "0.5 * l2(block12[7,31]) + l2(block10) + 2 * l2(block8[0:4]) + cls(goldfish) + 0.1 * tv()"
    assert obj.layers == ("block12", "block10", "block8", "logits")
    mean = build_objective(DreamConfig(layers=("block10",), loss="mean"), lite0)
    assert mean.expression == "mean(block10)"


def test_defaults_only_when_nothing_reads_the_network(lite0):
    assert build_objective(DreamConfig(), lite0).expression == "l2(block10)"
    assert build_objective(DreamConfig(tv=0.5), lite0).expression == "l2(block10) + 0.5 * tv()"
    assert build_objective(DreamConfig(classes=("1",)), lite0).expression == "cls(1)"


def test_the_expression_in_the_settings_rebuilds_the_same_objective(lite0, photo):
    built = build_objective(DreamConfig(layers=("block12[top4]:0.5", "block10"), classes=("tench",)), lite0, photo)
    cfg = DreamConfig(objective=built.expression).validate()
    again = build_objective(DreamConfig.from_dict(cfg.to_dict()), lite0, photo)
    assert again.expression == built.expression and again.description == built.description
    x = torch.rand(2, 3, 64, 64, generator=torch.Generator().manual_seed(0))
    acts = lite0.extractor(built.layers, fast=False)(x)
    assert torch.equal(again(Context(acts, x)), built(Context(acts, x)))


def test_top_k_is_chosen_once_on_the_input_image(lite0, photo):
    obj = build_objective(DreamConfig(layers=("block12[top3]",)), lite0, photo)
    expected = strongest_channels(_features(lite0, fit_side(photo, 224), "block12"), 3, "l2")
    assert obj.expression == "l2(block12[top3])"
    assert obj.description == f"l2(block12[top3 = {','.join(map(str, expected))}])"
    with pytest.raises(ConfigError, match="input image"):
        build_objective(DreamConfig(layers=("block12[top3]",)), lite0)


@pytest.mark.parametrize(
    ("settings", "words"),
    [
        ({"layers": ("block10[112]",)}, "channel 112 is out of range for layer 'block10', which has 112 channels"),
        ({"objective": "l2(block12[0:300])"}, "which has 192 channels"),
        ({"layers": ("blok10",)}, "did you mean 'block10'"),
        ({"objective": "0.5 * tv()"}, "reads no layer"),
        ({"guide": "g.png", "objective": "l2(block10)"}, "no guide(LAYER) term"),
        ({"extra": {CUSTOM_OBJECTIVE: "my peak"}}, "custom Python objective (my peak)"),
    ],
)
def test_what_does_not_fit_the_model_fails_before_any_work(lite0, tmp_path, monkeypatch, settings, words):
    monkeypatch.chdir(tmp_path)
    Image.new("RGB", (40, 30), "red").save(tmp_path / "g.png")  # the guide, where one is named
    with pytest.raises(InceptionismError) as caught:
        build_objective(DreamConfig(**settings), lite0)
    assert words in str(caught.value)


def test_an_unreadable_or_changed_guide_is_one_clear_error(lite0, tmp_path):
    bad = tmp_path / "notes.png"
    bad.write_text("not an image")
    with pytest.raises(ImageError, match="guide image"):
        build_objective(DreamConfig(guide=str(bad)), lite0)
    good = tmp_path / "g.jpg"
    good.write_bytes((EXAMPLES / "coffee.jpg").read_bytes())
    with pytest.raises(ConfigError, match="SHA-256 differs"):
        build_objective(DreamConfig(guide=str(good), extra={GUIDE_SHA256: "0" * 64}), lite0)


def test_a_class_objective_raises_its_logit_and_probability(lite0, photo):
    def goldfish(x):
        logits = _features(lite0, x, "logits")
        return logits[0, 1].item(), logits.softmax(dim=1)[0, 1].item()

    before = goldfish(photo)
    after = goldfish(_dream(lite0, photo, classes=("goldfish",)))
    assert after[0] > before[0] + 1 and after[1] > 2 * before[1]


def test_a_channel_objective_raises_its_channel_more_than_the_others(lite0, photo):
    def energy(x):
        return (_features(lite0, x, "block10") ** 2).mean(dim=(0, 2, 3))

    gain = energy(_dream(lite0, photo, layers=("block10[7]",))) - energy(photo)
    others = torch.cat([gain[:7], gain[8:]])
    assert gain[7] > 2 * others.max()


def test_a_guided_dream_moves_features_toward_the_guides(lite0, photo):
    guide_path = EXAMPLES / "coffee.jpg"
    guide_feats = layer_features(lite0, load_image(guide_path).rgb)("block10").mean(dim=(2, 3))

    def likeness(x):
        return torch.cosine_similarity(_features(lite0, x, "block10").mean(dim=(2, 3)), guide_feats).item()

    cfg = DreamConfig(guide=str(guide_path), layers=("block10",))
    assert build_objective(cfg, lite0).expression == "guide(block10)"
    out = _dream(lite0, photo, guide=str(guide_path), layers=("block10",))
    assert likeness(out) > likeness(photo) + 0.01
    guided = parse("guide(block10)", guide_features=layer_features(lite0, load_image(guide_path).rgb))
    with torch.no_grad():
        assert guided(_features_ctx(lite0, out)).item() > guided(_features_ctx(lite0, photo)).item()


def _features_ctx(model, x):
    return Context({"block10": _features(model, x, "block10")}, x)


def test_tv_smooths_the_dream(lite0, photo):
    def tv(x):
        return ((x[..., 1:, :] - x[..., :-1, :]).abs().mean() + (x[..., 1:] - x[..., :-1]).abs().mean()).item()

    plain, smooth = _dream(lite0, photo), _dream(lite0, photo, tv=50.0)
    assert tv(smooth) < tv(plain)


def test_fit_side_keeps_the_aspect():
    assert fit_side(torch.rand(1, 3, 100, 50), 224).shape[-2:] == (224, 112)
    assert fit_side(torch.rand(1, 3, 2000, 1000), 224).shape[-2:] == (512, 256)
    assert fit_side(torch.rand(1, 3, 300, 200), 224).shape[-2:] == (300, 200)


def test_overrides_replace_a_recorded_expression():
    recorded = DreamConfig(
        layers=("block8",), objective="l2(block8)", guide="a.png", extra={GUIDE_SHA256: "ab", CUSTOM_OBJECTIVE: "x"}
    )
    assert apply_overrides(recorded, {"steps": 3}).objective == "l2(block8)"
    changed = apply_overrides(recorded, {"layers": ("block10",)})
    assert changed.objective is None and changed.layers == ("block10",) and CUSTOM_OBJECTIVE not in changed.extra
    assert apply_overrides(recorded, {"tv": 0.1}).objective is None
    assert GUIDE_SHA256 not in apply_overrides(recorded, {"guide": "b.png"}).extra
    assert apply_overrides(recorded, {"objective": "cls(1)"}).objective == "cls(1)"
    with pytest.raises(ConfigError, match="--objective replaces --layers"):
        apply_overrides(recorded, {"objective": "cls(1)", "layers": ("block10",)})


def test_objective_settings_round_trip():
    cfg = DreamConfig(
        objective="0.5 * l2(block12[7,31]) + cls(goldfish)", classes=("goldfish", "1"), guide="g.png", tv=0.25
    ).validate()
    assert DreamConfig.from_dict(cfg.to_dict()) == cfg
    for bad, words in [
        ({"tv": -1.0}, "--tv"),
        ({"classes": ("goldfsh",)}, "goldfish"),
        ({"objective": "l2(x) / 2"}, "division"),
    ]:
        with pytest.raises(ConfigError, match=words):
            DreamConfig(**bad).validate()


def test_a_python_objective_is_recorded_as_such_and_its_settings_do_not_guess(lite0, photo):
    from inceptionism.api import dream
    from inceptionism.objectives import objective

    @objective(["block10"], "peak of block10")
    def peak(ctx):
        return ctx["block10"].float().amax(dim=(1, 2, 3))

    fast = {"steps": 1, "octaves": 1, "tile_size": 128, "precision": "fp32"}
    record = json.loads(dream(photo[0], model=lite0, objective=peak, **fast).info["inceptionism"])
    assert record["objective"] is None and record["extra"][CUSTOM_OBJECTIVE] == "peak of block10"
    with pytest.raises(ConfigError, match="custom Python objective"):
        build_objective(DreamConfig.from_dict(record), lite0)
    expression = json.loads(dream(photo[0], model=lite0, objective="cls(1)", **fast).info["inceptionism"])
    assert expression["objective"] == "cls(1)" and CUSTOM_OBJECTIVE not in expression["extra"]
