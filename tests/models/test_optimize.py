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


class _PoolAfterReLU(torch.nn.Module):
    """Stems of VGG / GoogLeNet / InceptionV3 / ResNet: conv → ReLU (in place or not, or ReLU6) → max pool."""

    def __init__(self, act: str) -> None:
        super().__init__()
        self.conv = torch.nn.Conv2d(3, 8, 3)
        self.conv2 = torch.nn.Conv2d(8, 8, 3)
        self.act = act
        self.relu6 = torch.nn.ReLU6()
        self.pool = torch.nn.MaxPool2d(3, stride=2, ceil_mode=True)

    def forward(self, x):
        x = self.conv(x)
        if self.act == "inplace":
            x = torch.nn.functional.relu(x, inplace=True)
        elif self.act == "relu6":
            x = self.relu6(x)
        else:
            x = torch.relu(x)
        x = self.pool(x)
        y = torch.relu(self.conv2(x))
        return torch.nn.functional.max_pool2d(y, 2, padding=1)


@pytest.mark.parametrize("act", ["inplace", "relu6", "relu"])
def test_pool_before_activation_is_exact(act):
    from torch import fx

    from inceptionism.models.optimize import pool_before_activation

    torch.manual_seed(0)
    net = _PoolAfterReLU(act).eval().requires_grad_(False)
    graph = pool_before_activation(fx.symbolic_trace(net))
    order = [n.name for n in graph.graph.nodes]
    assert order.index("pool") < order.index("relu6" if act == "relu6" else "relu")  # the ReLU moved
    x = torch.randn(2, 3, 21, 26) * 4
    xa, xb = x.clone().requires_grad_(True), x.clone().requires_grad_(True)
    a, b = net(xa), graph(xb)
    assert torch.equal(a, b)
    a.square().sum().backward()
    b.square().sum().backward()
    assert torch.equal(xa.grad, xb.grad)


def test_pool_before_activation_leaves_a_shared_input_alone():
    from torch import fx

    from inceptionism.models.optimize import pool_before_activation

    class Net(torch.nn.Module):
        def forward(self, x):
            r = torch.relu(x)
            return torch.nn.functional.max_pool2d(r, 2).sum() + x.sum()  # x also used past the ReLU

    graph = pool_before_activation(fx.symbolic_trace(Net()))
    order = [n.op + str(n.target) for n in graph.graph.nodes]
    assert order.index("call_function" + str(torch.relu)) < order.index(
        "call_function" + str(torch.nn.functional.max_pool2d)
    )


def test_bf16_extractor_holds_bf16_weights_and_leaves_the_model_alone(lite0):
    ex = lite0.extractor(["block5"], dtype=torch.bfloat16)
    assert ex is lite0.extractor(["block5"], dtype=torch.bfloat16)
    assert ex is not lite0.extractor(["block5"])
    assert all(p.dtype == torch.bfloat16 for p in ex.parameters())
    assert lite0.module._conv_stem.weight.dtype == torch.float32
    x = torch.rand(1, 3, 64, 80)
    out = ex(x)["block5"]
    ref = lite0.extractor(["block5"])(x)["block5"]
    assert out.dtype == torch.bfloat16
    assert torch.allclose(out.float(), ref, atol=0.05 * float(ref.abs().max()))
    with pytest.raises(ValueError, match="fast"):
        lite0.extractor(["block5"], fast=False, dtype=torch.bfloat16)


def test_fast_extractor_stays_fast_in_train_mode(lite0):
    """torchvision's dual graph module would swap the unoptimised train graph back in on .train()."""
    ex = lite0.extractor(["block5"])
    ex.train()
    try:
        assert not any("bn" in str(n.target) for n in ex.graph.graph.nodes)
    finally:
        ex.eval()


def test_objective_gradients_come_back_channels_last():
    from inceptionism.models.features import channels_last_grad

    x = torch.rand(1, 8, 5, 7, requires_grad=True)
    h = x.contiguous(memory_format=torch.channels_last)
    seen = []
    h.register_hook(seen.append)
    channels_last_grad(h).mean().backward()  # the gradient of a mean is an expanded (stride 0) tensor
    (g,) = seen
    assert g.is_contiguous(memory_format=torch.channels_last) and g.stride(1) == 1
    assert torch.allclose(x.grad, torch.full_like(x, 1 / x.numel()))


def _assert_same_values_and_gradients(net, graph, x):
    """A rewritten graph computes what the network does, forward and backward (to rounding)."""
    xa, xb = x.clone().requires_grad_(True), x.clone().requires_grad_(True)
    a, b = net(xa), graph(xb)
    assert torch.allclose(a, b, atol=1e-6)
    a.square().sum().backward()
    b.square().sum().backward()
    assert torch.allclose(xa.grad, xb.grad, atol=1e-5)


class _Block(torch.nn.Module):
    """An Inception block's heads: three 1×1 convolutions of one input, each with its ReLU, and a pool branch."""

    def __init__(self) -> None:
        super().__init__()
        self.a, self.b, self.c = (torch.nn.Conv2d(6, n, 1) for n in (4, 3, 5))
        self.b2 = torch.nn.Conv2d(3, 4, 3, padding=1)
        self.d = torch.nn.Conv2d(6, 2, 1, bias=False)  # no ReLU: left alone
        self.six = torch.nn.Conv2d(6, 3, 1)

    def forward(self, x):
        a = torch.nn.functional.relu(self.a(x), inplace=True)
        b = torch.relu(self.b2(torch.relu(self.b(x))))
        c = torch.relu(self.c(x))
        six = torch.nn.functional.relu6(self.six(x))
        return torch.cat([a, b, c, self.d(x), six], 1)


def test_merge_sibling_convs_is_one_wider_convolution():
    from torch import fx

    from inceptionism.models.optimize import merge_sibling_convs

    torch.manual_seed(0)
    net = _Block().double().eval().requires_grad_(False)  # float64 stands in for "not the default" (a GPU)
    graph = merge_sibling_convs(fx.symbolic_trace(net))
    convs = [m for m in graph.modules() if isinstance(m, torch.nn.Conv2d)]
    # a, b, c (ReLU) and d (no activation) merged; six (the other activation) and b2 (another input) stay
    assert sorted(c.out_channels for c in convs) == [3, 4, 14]
    assert all(p.dtype == torch.float64 for p in graph.parameters())
    _assert_same_values_and_gradients(net, graph, torch.randn(2, 6, 9, 11, dtype=torch.float64))


def test_merged_inception_extractor_matches_the_plain_graph():
    import torchvision

    from inceptionism.models.features import DreamModel
    from inceptionism.models.registry import get_model_spec

    torch.manual_seed(0)
    spec = get_model_spec("inception_v3")
    net = torchvision.models.inception_v3(weights=None, aux_logits=True, init_weights=False)
    model = DreamModel(spec, net, spec.weights, "random weights for a structural test")
    plain, fast = model.extractor(["Mixed_5c"], fast=False), model.extractor(["Mixed_5c"])
    assert fast.preprocessed and not plain.preprocessed  # its unpadded stem holds the preprocessing
    merged = sorted(m.out_channels for name, m in fast.graph.named_modules() if name.startswith("_merged"))
    assert merged == [208, 240]  # Mixed_5b: 64 + 48 + 64 + the pool branch's 32; Mixed_5c: … + 64
    x = torch.rand(1, 3, 107, 139)
    xa, xb = x.clone().requires_grad_(True), x.clone().requires_grad_(True)
    a, b = plain(xa)["Mixed_5c"], fast(xb)["Mixed_5c"]
    assert torch.allclose(a, b, rtol=1e-4, atol=1e-4 * float(a.detach().abs().max()))
    a.mean().backward()
    b.mean().backward()
    assert torch.allclose(xa.grad, xb.grad, rtol=1e-3, atol=1e-3 * float(xa.grad.abs().max()))


def test_lite_extractors_guard_their_strided_depthwise_convolutions(lite0):
    from inceptionism.models.cpu import StridedDepthwise

    def guarded(ex):
        return sum(isinstance(m, StridedDepthwise) for m in ex.modules())

    assert guarded(lite0.extractor(["block10"], dtype=torch.bfloat16)) == 3  # the stride-2 stages before block10
    assert guarded(lite0.extractor(["block10"])) == 3  # in fp32 the guard passes straight to the convolution


@pytest.mark.parametrize("include_pad", [True, False])
def test_conv_before_box_filter_is_exact(include_pad):
    import torch.nn.functional as F
    from torch import fx, nn

    from inceptionism.models.optimize import BoxFilter, avg_pool_as_conv, conv_before_box_filter

    class PoolBranch(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.conv = nn.Conv2d(6, 3, 1)

        def forward(self, x):
            return torch.relu(self.conv(F.avg_pool2d(x, 3, stride=1, padding=1, count_include_pad=include_pad)))

    torch.manual_seed(0)
    net = PoolBranch().eval().requires_grad_(False)
    graph = conv_before_box_filter(avg_pool_as_conv(fx.symbolic_trace(net)))
    kinds = [type(graph.get_submodule(str(n.target))).__name__ for n in graph.graph.nodes if n.op == "call_module"]
    assert kinds == ["Conv2d", "BoxFilter"]  # the convolution now runs first, on the 6 input channels
    assert all(m.bias is not None for m in graph.modules() if isinstance(m, BoxFilter))
    _assert_same_values_and_gradients(net, graph, torch.randn(2, 6, 9, 11))


@pytest.mark.parametrize("padding", [0, 1])
def test_fold_preprocessing_only_where_exact(padding):
    from torch import fx, nn

    from inceptionism.models.optimize import fold_preprocessing
    from inceptionism.models.spec import Preprocessing

    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv2d(3, 4, 3, stride=2, padding=padding), nn.ReLU(), nn.Conv2d(4, 2, 1)).eval()
    net.requires_grad_(False)
    pre = Preprocessing((0.4, 0.5, 0.6), (0.2, 0.25, 0.3))
    before = net[0].weight.clone()
    graph = fx.symbolic_trace(net)
    folded = fold_preprocessing(graph, *pre.affine())
    assert folded == (padding == 0)  # padding would be shifted too: left alone
    x = torch.rand(2, 3, 17, 20)
    xa, xb = x.clone().requires_grad_(True), x.clone().requires_grad_(True)
    a, b = net(pre(xa)), graph(xb if folded else pre(xb))
    assert torch.allclose(a, b, atol=1e-5)
    a.square().sum().backward()
    b.square().sum().backward()
    assert torch.allclose(xa.grad, xb.grad, atol=1e-4)
    assert torch.equal(net[0].weight, before)  # the traced model's own convolution is untouched


def test_lite_extractor_keeps_its_preprocessing(lite0):
    assert not lite0.extractor(["block10"]).preprocessed  # its stem is padded
