"""The render loop from noise, its random transforms and the per-item channel objective (real default model)."""

import pytest
import torch

from inceptionism.errors import ConfigError
from inceptionism.models import load_model
from inceptionism.objectives import channel, layer
from inceptionism.render import NONE, STANDARD, Transforms, channel_batch, random_transform, render

LAYER = "block3"  # shallow: fast at tiny sizes


@pytest.fixture(scope="module")
def model():
    return load_model("efficientnet-lite0")


def _score(model, objective, images):
    with torch.no_grad():
        return objective(model.extractor(objective.layers)(images))


def test_random_transform_shape_grey_padding_and_gradient():
    x = torch.zeros(3, 3, 20, 30, requires_grad=True)
    t = Transforms(pad=5, jitter=0.0, scale=(1.0, 1.0), degrees=0.0)
    y = random_transform(x, torch.Generator().manual_seed(0), t)
    assert y.shape == (3, 3, 30, 40)
    assert torch.allclose(y[..., :5, :], torch.full_like(y[..., :5, :], 0.5))  # the padding is grey
    assert torch.allclose(y[..., 5:-5, 5:-5], x, atol=1e-6)  # no move: the image itself inside the padding
    y.sum().backward()
    assert x.grad is not None and float(x.grad.abs().sum()) > 0


def test_random_transform_without_moves_is_identity_and_draws_are_seeded():
    x = torch.rand(2, 3, 16, 16, generator=torch.Generator().manual_seed(1))
    assert torch.allclose(random_transform(x, torch.Generator().manual_seed(0), NONE), x, atol=1e-6)
    a = random_transform(x, torch.Generator().manual_seed(5), STANDARD)
    b = random_transform(x, torch.Generator().manual_seed(5), STANDARD)
    c = random_transform(x, torch.Generator().manual_seed(6), STANDARD)
    assert a.shape == (2, 3, 32, 32)
    assert torch.equal(a, b) and not torch.equal(a, c)
    twins = random_transform(x[:1].expand(2, -1, -1, -1), torch.Generator().manual_seed(5), STANDARD)
    assert not torch.equal(twins[0], twins[1])  # each item draws its own move


@pytest.mark.parametrize("param", ["fft", "pixel"])
def test_render_raises_the_objective(model, param):
    objective = layer(LAYER)
    before = render(model, objective, 32, param=param, steps=0)
    after = render(model, objective, 32, param=param, steps=12, lr=0.05)
    assert before.shape == after.shape == (1, 3, 32, 32)
    assert float(after.min()) >= 0 and float(after.max()) <= 1
    gain = float(_score(model, objective, after) - _score(model, objective, before))
    assert gain > 0.05, gain


def test_render_is_reproducible_by_seed_and_reports_progress(model):
    seen = []
    a = render(model, channel(LAYER, 3), 24, steps=3, seed=1, callback=seen.append)
    b = render(model, channel(LAYER, 3), 24, steps=3, seed=1)
    c = render(model, channel(LAYER, 3), 24, steps=3, seed=2)
    assert torch.equal(a, b) and not torch.equal(a, c)
    assert [p.step for p in seen] == [1, 2, 3] and all(p.steps == 3 for p in seen)
    assert seen[-1].elapsed >= seen[0].elapsed >= 0


def test_channel_batch_raises_each_items_own_channel_most(model):
    wanted = [5, 17]
    images = render(model, channel_batch(LAYER, wanted), 32, steps=15, batch=2, seed=0)
    acts = _score_acts(model, images)
    means = acts[:, wanted].mean(dim=(2, 3))  # (item, channel)
    assert means[0, 0] > means[1, 0] and means[1, 1] > means[0, 1], means


def _score_acts(model, images):
    with torch.no_grad():
        return model.extractor([LAYER])(images)[LAYER]


def test_channel_batch_scores_item_b_on_channel_b():
    acts = torch.zeros(2, 4, 3, 3)
    acts[0, 2] = 1.0
    acts[1, 2] = 5.0  # item 1's score reads channel 0, not 2
    acts[1, 0] = -1.0
    score = channel_batch("x", [2, 0])({"x": acts})
    assert score.tolist() == [1.0, -1.0]
    with pytest.raises(ValueError, match="must match"):
        channel_batch("x", [2])({"x": acts})
    with pytest.raises(ConfigError, match="beyond x's 4 channels"):
        channel_batch("x", [1, 4])({"x": acts})


@pytest.mark.parametrize(
    ("kwargs", "words"),
    [
        ({"param": "wavelet"}, "unknown parametrisation"),
        ({"steps": -1}, "steps"),
        ({"lr": 0.0}, "learning rate"),
        ({"batch": 0}, "batch"),
        ({"size": 4}, "too small"),
    ],
)
def test_bad_settings_are_config_errors(model, kwargs, words):
    with pytest.raises(ConfigError, match=words):
        render(model, layer(LAYER), **{"size": 16, **kwargs})


def test_unknown_layer_fails_before_any_work(model):
    with pytest.raises(ConfigError, match="unknown layer 'blok3'"):
        render(model, layer("blok3"), 16, steps=1)
