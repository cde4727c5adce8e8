import re

import pytest
import torch
from torch import nn

from inceptionism import objectives as o
from inceptionism.errors import ConfigError, InceptionismError
from inceptionism.objectives import (
    ChannelSelection,
    Context,
    Objective,
    channel,
    channels,
    class_logit,
    guide,
    l2pull,
    layer,
    layers,
    objective,
    parse,
    parse_channels,
    split_channels,
    strongest_channels,
    top_channels,
    tv,
)


@pytest.fixture
def acts():
    torch.manual_seed(0)
    return {"a": torch.randn(2, 4, 3, 3), "b": torch.randn(2, 5, 2, 2)}


def test_layer_losses(acts):
    assert torch.allclose(layer("a", "mean")(acts), acts["a"].flatten(1).mean(1))
    assert torch.allclose(layer("a", loss="l2")(acts), (acts["a"] ** 2).flatten(1).mean(1))
    assert layer("a")(acts).shape == (2,)
    with pytest.raises(ValueError, match="unknown loss"):
        layer("a", loss="max")


def test_objectives_compose_as_values(acts):
    obj = 0.5 * layer("a", "mean") + layer("b", "l2") - layer("a", "mean")
    expected = 0.5 * layer("a", "mean")(acts) + layer("b", "l2")(acts) - layer("a", "mean")(acts)
    assert torch.allclose(obj(acts), expected)
    assert obj.layers == ("a", "b")
    assert obj.expression == obj.description == "0.5 * mean(a) + l2(b) - mean(a)"
    assert isinstance(sum([layer("a"), layer("b")]), Objective)
    assert (2 * (layer("a") + layer("b"))).expression == "2 * (l2(a) + l2(b))"
    assert (layer("a") - (layer("a") + 1)).expression == "l2(a) - (l2(a) + 1)"
    assert (-layer("a")).expression == "-1 * l2(a)"


def test_a_context_is_the_mapping_of_its_activations(acts):
    ctx = Context(acts, image=torch.rand(2, 3, 8, 8))
    assert ctx["a"] is acts["a"] and set(ctx) == {"a", "b"} and len(ctx) == 2
    assert torch.equal(layer("a")(ctx), layer("a")(acts))  # a plain dict is wrapped into a Context


def test_channel(acts):
    assert torch.allclose(channel("a", 2, "mean")(acts), acts["a"][:, 2].flatten(1).mean(1))
    assert channel("a", 2, "mean").expression == "mean(a[2])"
    with pytest.raises(ConfigError, match=r"channel 9 is out of range for layer 'a', which has 4 channels \(0–3\)"):
        channel("a", 9)(acts)


def test_channel_lists_and_ranges(acts):
    x = acts["a"]
    picked = channels("a", [3, 1], "l2")
    assert picked.expression == "l2(a[3,1])"
    assert torch.allclose(picked(acts), (x[:, [3, 1]] ** 2).flatten(1).mean(1))
    ranged = channels("a", range(1, 3), "mean")
    assert ranged.expression == "mean(a[1:3])"
    assert torch.allclose(ranged(acts), x[:, 1:3].flatten(1).mean(1))


def test_weighted_layers(acts):
    obj = layers({"a": 2.0, "b": 1.0}, "mean")
    assert obj.expression == "2 * mean(a) + mean(b)"
    assert torch.allclose(obj(acts), 2 * layer("a", "mean")(acts) + layer("b", "mean")(acts))
    with pytest.raises(ValueError):
        layers({})


@pytest.mark.parametrize("loss", ["mean", "l2"])
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_layer_gradient_is_autograds_mean_gradient(loss, dtype):
    torch.manual_seed(0)
    x = torch.randn(2, 5, 4, 6).to(dtype).contiguous(memory_format=torch.channels_last)
    xa, xb = x.clone().requires_grad_(True), x.clone().requires_grad_(True)
    score = layer("a", loss)({"a": xa})
    y = xb.float()
    ref = (y * y if loss == "l2" else y).mean(dim=(1, 2, 3))
    assert score.dtype == torch.float32 and score.shape == (2,)
    assert torch.allclose(score, ref)
    (score * torch.tensor([1.0, 3.0])).sum().backward()
    (ref * torch.tensor([1.0, 3.0])).sum().backward()
    assert xa.grad.dtype == dtype and xa.grad.shape == x.shape
    assert torch.allclose(xa.grad.float(), xb.grad.float(), rtol=1e-2 if dtype == torch.bfloat16 else 1e-6)


def test_channel_gradient_touches_only_its_channel():
    x = torch.randn(1, 4, 3, 3, requires_grad=True)
    channel("a", 2, "mean")({"a": x}).sum().backward()
    assert torch.equal(x.grad[:, 2], torch.full((1, 3, 3), 1 / 9))
    assert not x.grad[:, [0, 1, 3]].any()


# --- channel selections -------------------------------------------------------------------------------------------


def test_parse_channels():
    assert parse_channels("7,31") == ChannelSelection((7, 31))
    assert parse_channels(" 0 : 3 ") == ChannelSelection((0, 1, 2), is_range=True)
    assert parse_channels("top4") == ChannelSelection(top=4)
    assert [parse_channels(t).text for t in ("7, 31", "0:3", "top4")] == ["7,31", "0:3", "top4"]
    assert split_channels("block12[0:8]") == ("block12", parse_channels("0:8"))
    assert split_channels("layer3.1") == ("layer3.1", None)


@pytest.mark.parametrize(
    ("text", "words"),
    [("x", "expected a list"), ("3:3", "start < end"), ("-1", "start at 0"), ("1,1", "twice"), ("top0", "at least 1"),
     ("1.5", "expected a list"), ("", "expected a list")],
)  # fmt: skip
def test_bad_channel_selections(text, words):
    with pytest.raises(ConfigError, match=words):
        parse_channels(text)


def test_bad_layer_brackets():
    for text in ("a[1", "[1]", "a[1]b"):
        with pytest.raises(ConfigError):
            split_channels(text)


def test_top_channels_are_the_strongest_on_the_reference():
    reference = torch.zeros(1, 6, 2, 2)
    reference[0, 4] = 3.0
    reference[0, 1] = -5.0  # strongest by mean square, weakest by mean
    reference[0, 2] = 1.0
    assert strongest_channels(reference, 2, "mean") == (4, 2)
    assert strongest_channels(reference, 2, "l2") == (1, 4)
    obj = top_channels("a", 2, reference, "mean")
    assert obj.expression == "mean(a[top2])" and obj.description == "mean(a[top2 = 4,2])"
    x = torch.randn(3, 6, 2, 2)
    assert torch.allclose(obj({"a": x}), x[:, [4, 2]].flatten(1).mean(1))
    with pytest.raises(ConfigError, match="more channels than layer 'a' has"):
        top_channels("a", 7, reference)


# --- classes, guides, priors --------------------------------------------------------------------------------------


def test_class_logit_by_name_or_index():
    logits = torch.randn(2, 1000)
    by_name, by_index = class_logit("goldfish"), class_logit(1)
    assert by_name.expression == "cls(goldfish)" and by_index.expression == "cls(1)"
    assert by_name.layers == ("logits",) and "goldfish" in by_index.description
    assert torch.equal(by_name({"logits": logits}), logits[:, 1])
    assert class_logit("Great_White_Shark").expression == 'cls("great white shark")'
    with pytest.raises(ConfigError, match="this network has 10 classes"):
        class_logit(20)({"logits": torch.zeros(1, 10)})


def _guide_reference(x: torch.Tensor, g: torch.Tensor) -> torch.Tensor:
    """Brute force: mean over positions of the max over guide positions of the dot product."""
    xs = x.flatten(2).transpose(1, 2)  # (B, P, C)
    gs = g.flatten(1).t()  # (Q, C)
    return (xs @ gs.t()).amax(dim=2).mean(dim=1)


def test_guide_scores_the_best_matching_guide_feature(monkeypatch):
    torch.manual_seed(0)
    g = torch.randn(1, 8, 5, 7)
    x = torch.randn(2, 8, 4, 3, requires_grad=True)
    obj = guide("a", g)
    assert obj.expression == "guide(a)"
    score = obj({"a": x})
    assert torch.allclose(score, _guide_reference(x, g[0]), atol=1e-5)
    monkeypatch.setattr(o, "GUIDE_CHUNK", 40)  # a few positions per chunk: the same matches
    assert torch.allclose(obj({"a": x}), score)
    score.sum().backward()
    best = (x.detach().flatten(2).transpose(1, 2) @ g.flatten(2)[0]).argmax(dim=2)  # (B, P)
    expected = g.flatten(2)[0].t()[best].transpose(1, 2).reshape(2, 8, 4, 3) / 12
    assert torch.allclose(x.grad, expected, atol=1e-6)  # each position pulled toward its guide feature
    with pytest.raises(ConfigError, match="channels"):
        obj({"a": torch.randn(1, 3, 2, 2)})


def test_tv_and_l2pull_read_the_image():
    flat, noisy = torch.full((1, 3, 8, 8), 0.5), torch.rand(1, 3, 8, 8)
    assert tv()(Context({}, flat)).item() == 0 and tv()(Context({}, noisy)).item() < 0
    checker = (torch.arange(8)[:, None] + torch.arange(8)[None]) % 2
    assert tv()(Context({}, checker.expand(1, 3, 8, 8).float())).item() == pytest.approx(-2.0)
    assert l2pull()(Context({}, noisy, original=noisy)).item() == 0
    assert l2pull()(Context({}, flat, original=flat + 0.1)).item() == pytest.approx(-0.01)
    assert tv().layers == () and tv().expression == "tv()" and l2pull().expression == "l2pull()"
    with pytest.raises(InceptionismError, match="called with activations only"):
        tv()({"a": noisy})
    with pytest.raises(InceptionismError, match="original image"):
        l2pull()(Context({}, noisy))


def _toy_context(x: torch.Tensor, original: torch.Tensor) -> Context:
    torch.manual_seed(1)
    conv = nn.Conv2d(3, 6, 3, padding=1)
    head = nn.Linear(6, 4)
    a = torch.relu(conv(x))
    return Context({"a": a, "logits": head(a.mean(dim=(2, 3)))}, image=x, original=original)


@pytest.mark.parametrize(
    "make",
    [
        lambda: layer("a"),
        lambda: channels("a", [1, 4], "mean"),
        lambda: top_channels("a", 2, torch.rand(1, 6, 2, 2)),
        lambda: class_logit(2),
        lambda: guide("a", torch.rand(1, 6, 3, 3)),
        lambda: 0.1 * tv() + layer("a"),
        lambda: tv(),
        lambda: l2pull(),
    ],
    ids=["layer", "channels", "top", "class", "guide", "tv+layer", "tv", "l2pull"],
)
def test_each_objective_rises_under_ascent(make):
    obj = make()
    gen = torch.Generator().manual_seed(0)
    original = torch.rand(1, 3, 12, 12, generator=gen)
    x = (original + 0.2 * torch.rand(1, 3, 12, 12, generator=gen)).clamp(0, 1)
    first = obj(_toy_context(x, original)).item()
    for _ in range(5):
        x.requires_grad_(True)
        obj(_toy_context(x, original)).sum().backward()
        x = (x + 0.01 * x.grad / x.grad.abs().mean()).detach()
    assert obj(_toy_context(x, original)).item() > first


def test_custom_objectives_have_no_expression(acts):
    @objective(["a"], "max of a")
    def peak(ctx):
        return ctx["a"].amax(dim=(1, 2, 3))  # written for a plain mapping: a Context is one

    assert peak.expression is None and torch.equal(peak(acts), acts["a"].amax(dim=(1, 2, 3)))
    mixed = layer("b") + 0.5 * peak
    assert mixed.expression is None and mixed.description == "l2(b) + 0.5 * max of a"


# --- expressions --------------------------------------------------------------------------------------------------

ROUND_TRIP = [
    "l2(block10)",
    "0.5 * l2(block12[7,31]) + l2(block10) + 0.1 * tv() + cls(goldfish)",
    "mean(block12[0:8]) - 2 * (l2(block10) + cls(1))",
    'l2(block12[top3]) + -1 * l2pull() + cls("great white shark") + 0.25',
    'l2("layer3.1"[1,2]) + mean("features.3") + 1e-05 * tv()',
    "guide(block10) + 0.3 * guide(block12)",
]


@pytest.fixture
def env():
    torch.manual_seed(0)
    feats = {n: torch.randn(2, 32, 3, 3) for n in ("block10", "block12", "layer3.1", "features.3")}
    feats["logits"] = torch.randn(2, 1000)
    guide_feats = {n: torch.randn(1, 32, 4, 4) for n in ("block10", "block12")}
    return feats, (lambda n: feats[n][:1]), guide_feats.__getitem__


@pytest.mark.parametrize("text", ROUND_TRIP)
def test_expressions_round_trip(text, env):
    feats, image_features, guide_features = env
    obj = parse(text, image_features=image_features, guide_features=guide_features)
    assert obj.expression == text
    again = parse(obj.expression, image_features=image_features, guide_features=guide_features)
    ctx = Context(feats, image=torch.rand(2, 3, 6, 6), original=torch.rand(2, 3, 6, 6))
    assert again.expression == text and torch.allclose(again(ctx), obj(ctx))


def test_expressions_of_objectives_built_in_python_parse_back(env):
    feats, image_features, _ = env
    built = 0.5 * channels("block12", range(2, 6)) + class_logit("goldfish") - layer("block10", "mean") * 3 + 0.1 * tv()
    obj = parse(built.expression, image_features=image_features)
    ctx = Context(feats, image=torch.rand(2, 3, 6, 6))
    assert (
        obj.expression == built.expression == "0.5 * l2(block12[2:6]) + cls(goldfish) - 3 * mean(block10) + 0.1 * tv()"
    )
    assert torch.allclose(obj(ctx), built(ctx))
    assert parse("2 * 3 * l2(block10) + 1 + l2(features.denseblock1)").expression == (
        '6 * l2(block10) + 1 + l2("features.denseblock1")'
    )


@pytest.mark.parametrize(
    ("text", "words"),
    [
        ("l2(block10) / 2", "division"),
        ("__import__('os').system('true')", "not allowed"),
        ("l2(block10).real", "attribute"),
        ("l2(block10) * l2(block8)", "product of two objectives"),
        ("lx(block10)", "did you mean l2()"),
        ("3 + 4", "is a number"),
        ("block10", "did you mean l2(block10)"),
        ("l2(block10, block8)", "one argument"),
        ("tv(block10)", "no argument"),
        ("l2(loss=block10)", "keyword"),
        ("l2(block10[x])", "expected a list"),
        ("l2(block10[1::2])", "expected a list"),
        ("cls(goldfsh)", "did you mean 'goldfish'"),
        ("guide(block10)", "--guide"),
        ("l2(block10[top4])", "image being dreamed"),
        ("[l2(block10)]", "list"),
        ("l2(block10) +", "cannot read"),
        ("", "empty"),
    ],
)
def test_bad_expressions_name_what_is_wrong(text, words):
    with pytest.raises(ConfigError, match=re.escape(words)):
        parse(text)


def test_check_expression_needs_no_model():
    o.check_expression("l2(block12[top4]) + guide(block10) + cls(goldfish)")
    with pytest.raises(ConfigError):
        o.check_expression("l2(block10) ** 2")
