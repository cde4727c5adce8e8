import pytest
import torch

from inceptionism.config import DreamConfig
from inceptionism.engine import Dreamer, build_objective
from inceptionism.models import load_model
from inceptionism.models.optimize import fold_batchnorm


@pytest.fixture(scope="module")
def lite0():
    return load_model("efficientnet-lite0")


def test_fast_extractor_matches_the_plain_graph(lite0):
    x = torch.rand(2, 3, 80, 96, generator=torch.Generator().manual_seed(0))
    plain = lite0.extractor(["block5", "block10"], fast=False)
    fast = lite0.extractor(["block5", "block10"], fast=True)
    assert not any(n.op == "call_module" and "bn" in str(n.target) for n in fast.graph.graph.nodes)
    assert any("bn" in str(n.target) for n in plain.graph.graph.nodes)
    a, b = plain(x), fast(x)
    for name in ("block5", "block10"):
        assert torch.allclose(a[name], b[name], rtol=1e-4, atol=1e-4 * float(a[name].abs().max()))
    xa, xb = x.clone().requires_grad_(True), x.clone().requires_grad_(True)
    plain(xa)["block10"].pow(2).mean().backward()
    fast(xb)["block10"].pow(2).mean().backward()
    assert torch.allclose(xa.grad, xb.grad, rtol=1e-3, atol=1e-3 * float(xa.grad.abs().max()))


def test_folding_leaves_the_loaded_model_untouched(lite0):
    before = {k: v.clone() for k, v in lite0.module.state_dict().items()}
    fold_batchnorm(lite0.extractor(["block3"], fast=False).graph)
    after = lite0.module.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)


def test_bf16_autocast_dreams_close_to_fp32(lite0):
    image = torch.rand(1, 3, 64, 96)
    outs = {}
    for precision in ("fp32", "bf16"):
        cfg = DreamConfig(octaves=1, steps=3, precision=precision).validate()
        outs[precision] = Dreamer(lite0, build_objective(cfg, lite0), cfg, torch.device("cpu")).run(image)
    mse = torch.mean((outs["fp32"] - outs["bf16"]) ** 2)
    psnr = 10 * torch.log10(1 / mse)
    assert psnr > 25  # the picture holds; the full-size comparison is in the README (benchmarks/bench.py W1)
    assert not torch.equal(outs["fp32"], outs["bf16"])  # bf16 really ran


def test_fast_extractor_does_not_touch_the_shared_weights(lite0):
    lite0.extractor(["block6"], fast=True)
    conv = lite0.module._conv_stem.weight  # (32, 3, 3, 3): NCHW and NHWC strides differ
    assert conv.is_contiguous()  # still NCHW: the fast graph converted its own copy


@pytest.mark.parametrize("include_pad", [True, False])
def test_avg_pool_as_conv_matches_avg_pool(include_pad):
    import torch.nn.functional as F
    from torch import fx, nn

    from inceptionism.models.optimize import avg_pool_as_conv

    class Net(nn.Module):
        def forward(self, x):
            box = F.avg_pool2d(x, kernel_size=3, stride=1, padding=1, count_include_pad=include_pad)
            return box + F.avg_pool2d(x, 2).mean()  # a pool with stride 2 is left alone

    x = torch.randn(2, 5, 9, 11, generator=torch.Generator().manual_seed(0), requires_grad=True)
    graph = avg_pool_as_conv(fx.symbolic_trace(Net()))
    targets = [n.target for n in graph.graph.nodes if n.op == "call_function"]
    modules = [m for m in graph.modules() if type(m).__name__ == "BoxFilter"]
    assert F.avg_pool2d in targets and len(modules) == 1
    assert torch.allclose(graph(x), Net()(x), atol=1e-6)
    (g1,) = torch.autograd.grad(graph(x).sum(), x)
    (g2,) = torch.autograd.grad(Net()(x).sum(), x)
    assert torch.allclose(g1, g2, atol=1e-6)
