import pytest
import torch

from inceptionism.objectives import Objective, channel, layer, layers


@pytest.fixture
def acts():
    torch.manual_seed(0)
    return {"a": torch.randn(2, 4, 3, 3), "b": torch.randn(2, 5, 2, 2)}


def test_layer_losses(acts):
    assert torch.allclose(layer("a")(acts), acts["a"].flatten(1).mean(1))
    assert torch.allclose(layer("a", loss="l2")(acts), (acts["a"] ** 2).flatten(1).mean(1))
    assert layer("a")(acts).shape == (2,)
    with pytest.raises(ValueError, match="unknown loss"):
        layer("a", loss="max")


def test_objectives_compose_as_values(acts):
    obj = 0.5 * layer("a") + layer("b", "l2") - layer("a")
    expected = 0.5 * layer("a")(acts) + layer("b", "l2")(acts) - layer("a")(acts)
    assert torch.allclose(obj(acts), expected)
    assert obj.layers == ("a", "b")
    assert "0.5 * mean(a)" in obj.description and "l2(b)" in obj.description
    assert isinstance(sum([layer("a"), layer("b")]), Objective)


def test_channel(acts):
    assert torch.allclose(channel("a", 2)(acts), acts["a"][:, 2].flatten(1).mean(1))
    with pytest.raises(ValueError, match="out of range"):
        channel("a", 9)(acts)


def test_weighted_layers(acts):
    obj = layers({"a": 2.0, "b": 1.0})
    assert torch.allclose(obj(acts), 2 * layer("a")(acts) + layer("b")(acts))
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
    channel("a", 2)({"a": x}).sum().backward()
    assert torch.equal(x.grad[:, 2], torch.full((1, 3, 3), 1 / 9))
    assert not x.grad[:, [0, 1, 3]].any()
