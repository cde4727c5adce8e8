import logging

import pytest
import torch
import torch.nn.functional as F
from torch import fx, nn

from inceptionism.models import load_model
from inceptionism.models.cpu import Declined, GradientBackend, compile_backend, held_memory, packed_shapes
from inceptionism.models.cpu.conv import PACKED_SHAPES, Conv
from inceptionism.models.cpu.masks import relu6_mask, relu6_mask_, relu_, relu_mask, relu_mask_
from inceptionism.models.cpu.program import Program, held_bytes
from inceptionism.models.optimize import fast_graph

CL = torch.channels_last


class Blocks(nn.Module):
    """The rules, in a graph the program supports throughout."""

    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Conv2d(3, 16, 3, stride=2, padding=1)
        self.a = nn.Conv2d(16, 8, 1)
        self.b = nn.Conv2d(16, 8, 1)
        self.c = nn.Conv2d(16, 16, 3, padding=1)
        self.e = nn.Conv2d(16, 8, 3, padding=1)
        self.f = nn.Conv2d(8, 4, 1)
        self.dw = nn.Conv2d(48, 48, 3, stride=2, padding=1, groups=48)
        self.d = nn.Conv2d(48, 48, 1, bias=False)
        self.bn = nn.BatchNorm2d(48)
        self.relu6 = nn.ReLU6()
        self.pool = nn.MaxPool2d(3, 2, ceil_mode=True)
        self.gap = nn.AdaptiveAvgPool2d(1)
        self.grid = nn.AdaptiveAvgPool2d((2, 3))
        self.drop = nn.Dropout()
        self.fc = nn.Linear(48, 5)

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        x = F.relu(self.stem(x), inplace=True)  # fused into the (sub-pixel) stem
        a, b = F.relu(self.a(x)), F.relu6(self.b(x))  # siblings: merged into one convolution, then split
        c = self.c(x)  # read three times below: neither fused nor changed in place
        pooled = F.avg_pool2d(c, 3, 1, 1)  # a box filter
        cat = torch.cat([a, b, torch.relu(c), pooled], 1)  # 48 channels
        down = self.relu6(self.dw(cat))  # a strided depthwise convolution, its ReLU6 fused
        res = self.bn(self.d(down))
        res += down  # in place, as torchvision's ResNet writes it
        out = self.pool(F.max_pool2d(res, 2, padding=1))  # two max pools, one padded, one with ceil_mode
        head = self.fc(self.drop(torch.flatten(self.gap(out), 1)))
        f = self.f(F.relu6(self.e(x)))  # a mask on a gradient only the program holds: applied in place
        pooled = F.adaptive_avg_pool2d(out, (2, 2)).flatten(start_dim=1)  # as functions and methods
        means = {"mean": out.mean([2, 3]), "mean_kept": out.mean((3, 2), keepdim=True)}  # MNASNet's head
        return {"c": c, "cat": cat, "out": out, "grid": self.grid(out), "head": head, "f": f, "pooled": pooled, **means}


def blocks_graph(dtype: torch.dtype) -> fx.GraphModule:
    torch.manual_seed(0)
    net = Blocks().eval()
    with torch.no_grad():  # a realistic BatchNorm
        net.bn.running_mean.uniform_(-0.5, 0.5)
        net.bn.running_var.uniform_(0.5, 2.0)
    graph = fx.symbolic_trace(net).requires_grad_(False)
    return fast_graph(graph, dtype)


def autograd_run(graph: fx.GraphModule, x: torch.Tensor, weights: dict[str, torch.Tensor]):
    x = x.clone().requires_grad_(True)
    out = graph(x)
    sum((w * out[k].float()).sum() for k, w in weights.items()).backward()
    return {k: v.detach() for k, v in out.items()}, x.grad


def compiled(graph: fx.GraphModule) -> GradientBackend:
    backend = compile_backend(graph)
    assert isinstance(backend, GradientBackend), backend
    return backend


def program_run(program: GradientBackend, x: torch.Tensor, weights: dict[str, torch.Tensor]):
    x = x.clone().requires_grad_(True)
    out = program(x)
    sum((w * out[k].float()).sum() for k, w in weights.items()).backward()
    return {k: v.detach() for k, v in out.items()}, x.grad


TOLERANCE = {torch.float32: 1e-5, torch.bfloat16: 5e-3}  # relative L2; a wrong rule is off by order 1


def relative_error(actual: torch.Tensor, expected: torch.Tensor) -> float:
    return float((actual.float() - expected.float()).norm() / expected.float().norm())


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_program_equals_autograd_on_every_rule(dtype):
    """The same kernels as autograd: equal here, and at worst a rounding apart where oneDNN picks another
    algorithm for packed weights, or gradients are summed in another order."""
    graph = blocks_graph(dtype)
    program = compiled(graph)
    x = torch.rand(2, 3, 37, 45).to(dtype).contiguous(memory_format=CL)
    with torch.no_grad():
        shapes = {k: v.shape for k, v in graph(x).items()}
    gen = torch.Generator().manual_seed(1)
    weights = {k: torch.randn(s, generator=gen) for k, s in shapes.items()}
    for name in [*shapes, None]:  # each feature alone, then all at once
        chosen = weights if name is None else {name: weights[name]}
        ours, grad = program_run(program, x, chosen)
        theirs, ref = autograd_run(graph, x, chosen)
        for k in theirs:
            assert relative_error(ours[k], theirs[k]) <= TOLERANCE[dtype], k
        assert grad is not None and ref is not None
        assert grad.dtype == dtype and grad.shape == x.shape
        assert grad.is_contiguous(memory_format=CL)
        assert relative_error(grad, ref) < TOLERANCE[dtype], name


def test_returned_features_are_not_changed_by_later_in_place_activations():
    graph = blocks_graph(torch.float32)
    program = compiled(graph)
    x = torch.rand(1, 3, 32, 32).contiguous(memory_format=CL)
    with torch.no_grad():
        c = graph(x)["c"]
    assert c.min() < 0  # a ReLU reads it: had that run in place, the feature would have no negatives
    assert relative_error(program(x.requires_grad_(True))["c"].detach(), c) < TOLERANCE[torch.float32]

    class PartOfAFeature(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.conv = nn.Conv2d(3, 4, 3)

        def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
            f = self.conv(x)
            part, _ = torch.split(f, [2, 2], 1)
            return {"f": f, "part": F.relu(part)}  # a ReLU in place on ``part`` would change ``f``

    graph = fx.symbolic_trace(PartOfAFeature()).requires_grad_(False)
    program = compiled(graph)
    with torch.no_grad():
        f = graph(x)["f"]
    assert f.min() < 0
    out = program(x.clone().requires_grad_(True))
    assert relative_error(out["f"].detach(), f) < TOLERANCE[torch.float32]
    assert relative_error(out["part"].detach(), f[:, :2].relu()) < TOLERANCE[torch.float32]


def test_a_feature_left_out_of_the_score_gets_no_gradient_and_unused_split_parts_get_zeros():
    graph = blocks_graph(torch.float32)
    program = compiled(graph)
    x = torch.rand(1, 3, 32, 32).contiguous(memory_format=CL)
    for name in ("cat", "head"):
        ours = program_run(program, x, {name: torch.ones(1)})[1]
        theirs = autograd_run(graph, x, {name: torch.ones(1)})[1]
        assert torch.allclose(ours, theirs, rtol=1e-5, atol=1e-6 * float(theirs.abs().max()))


def test_a_node_without_a_rule_keeps_autograd_and_the_log_says_which(caplog):
    class Odd(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.conv = nn.Conv2d(3, 4, 3)

        def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
            return {"out": torch.sigmoid(self.conv(x))}

    class Sliced(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.conv = nn.Conv2d(3, 4, 3)

        def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
            return {"out": self.conv(x)[:, :2]}

    with caplog.at_level(logging.DEBUG, logger="inceptionism.models.cpu.backend"):
        odd = compile_backend(fx.symbolic_trace(Odd()))
        sliced = compile_backend(fx.symbolic_trace(Sliced()))
    assert odd == Declined("no rule for call_function sigmoid")
    assert isinstance(sliced, Declined) and sliced.reason.startswith("no rule for call_function getitem: an index")
    assert "fast CPU path declined: no rule for call_function sigmoid" in caplog.text  # which op, in the log


def test_bf16_relu_and_its_mask_on_int16_bits_equal_torch():
    values = torch.tensor([-3.0, -1e-30, -0.0, 0.0, 1e-30, 0.5, 7.0, 3e38, -3e38], dtype=torch.bfloat16)
    x = values.repeat(5)
    assert torch.equal(relu_(x.clone()), torch.relu(x))
    grad = torch.randn(x.shape).to(torch.bfloat16)
    out = torch.relu(x)
    expected = torch.ops.aten.threshold_backward(grad, out, 0)
    assert torch.equal(relu_mask(grad, out).view(torch.int16), expected.view(torch.int16))  # same bits
    assert relu_mask(grad, out).dtype == torch.bfloat16


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_masks_written_into_the_gradient_equal_the_new_ones(dtype):
    torch.manual_seed(0)
    out = (torch.randn(2, 8, 5, 6) * 4).clamp(0, 6).to(dtype).contiguous(memory_format=CL)
    out[0, 0] = 6.0  # the ReLU6 mask's closed end
    for mask, in_place in [(relu_mask, relu_mask_), (relu6_mask, relu6_mask_)]:
        grad = torch.randn(out.shape).to(dtype).contiguous(memory_format=CL)
        expected = mask(grad, out)
        written = in_place(grad, out)
        assert written is grad
        assert torch.equal(written, expected)


def test_weights_are_packed_per_input_shape_and_follow_weight_changes():
    torch.manual_seed(0)
    conv = nn.Conv2d(8, 16, 3, padding=1).requires_grad_(False)
    op = Conv(conv, "relu")
    for shape in [(1, 8, 10, 12), (2, 8, 7, 5), (1, 8, 10, 12), (1, 8, 4, 4), (1, 8, 5, 4), (1, 8, 6, 4)]:
        x = torch.randn(shape).contiguous(memory_format=CL)
        assert torch.allclose(op.forward(x), F.relu(conv(x)), atol=1e-5)
    assert len(op.forward_weights) == PACKED_SHAPES  # bounded: the oldest shapes are dropped
    with torch.no_grad():
        conv.weight.mul_(-1)
    x = torch.randn(1, 8, 6, 4).contiguous(memory_format=CL)
    assert torch.allclose(op.forward(x), F.relu(conv(x)), atol=1e-5)  # a changed weight is packed anew


def test_fewer_packed_shapes_can_be_kept_for_a_while_and_their_bytes_are_known():
    backend = compiled(blocks_graph(torch.float32))
    convs = [c for c in backend.program.convs if c.fixed is not None]
    assert backend.packed_bytes_per_shape() == sum(2 * c.fixed[0].numel() * 4 for c in convs) > 0

    def run(side: int) -> torch.Tensor:
        x = torch.rand(1, 3, side, side, requires_grad=True)
        backend(x)["out"].sum().backward()
        assert x.grad is not None and x.grad.abs().sum() > 0
        return x.grad

    for side in (17, 19, 21):  # three input shapes: three packs per convolution
        run(side)
    assert max(len(c.forward_weights) for c in convs) == 3
    with packed_shapes(1):  # the least recently used go, and later shapes replace the one kept
        run(21)
        assert max(max(len(c.forward_weights), len(c.reverse_weights)) for c in convs) == 1
        run(23)
        assert max(max(len(c.forward_weights), len(c.reverse_weights)) for c in convs) == 1
    for side in (17, 19, 21, 25, 27):  # outside: the default again, nothing of the limit kept
        run(side)
    assert max(len(c.forward_weights) for c in convs) == PACKED_SHAPES


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
@pytest.mark.parametrize(
    ("conv", "size"),
    [
        (nn.Conv2d(8, 12, 3, padding=1), (9, 11)),
        (nn.Conv2d(8, 12, 3, stride=2, padding=1), (9, 10)),  # odd and even sizes: output padding 0 and 1
        (nn.Conv2d(8, 12, (1, 7), padding=(0, 3)), (6, 13)),
        (nn.Conv2d(8, 12, 5, stride=3, padding=2, dilation=2), (17, 14)),
        (nn.Conv2d(8, 16, 3, padding=1, groups=4), (7, 7)),
        (nn.Conv2d(8, 8, 3, stride=2, groups=8), (10, 9)),  # depthwise, unpadded
        (nn.Conv2d(8, 12, 1), (6, 13)),
        (nn.Conv2d(8, 12, 1, stride=2), (7, 8)),
        (nn.Conv2d(8, 12, 3), (6, 7)),  # unpadded: the flipped kernel's padding is 2
        (nn.Conv2d(8, 12, (3, 5), padding=(2, 4)), (5, 6)),  # padded by k - 1: the flipped kernel needs none
        (nn.Conv2d(8, 12, 3, padding=3), (5, 6)),  # padded beyond the kernel: the transposed convolution
    ],
)
def test_input_gradient_is_the_transposed_convolution(conv, size, dtype):
    """The input gradient runs as oneDNN's transposed convolution with weights packed for it; it equals
    autograd's for strides that skip trailing rows (output padding), dilation and groups."""
    torch.manual_seed(0)
    conv = conv.requires_grad_(False).to(dtype).to(memory_format=CL)
    op = Conv(conv, None)
    x = torch.randn(2, 8, *size).to(dtype).contiguous(memory_format=CL).requires_grad_(True)
    y = conv(x)
    grad = torch.randn_like(y)
    (expected,) = torch.autograd.grad(y, x, grad)
    actual = op.input_gradient(grad, x.shape, dtype)
    assert actual.shape == x.shape and actual.dtype == dtype
    assert relative_error(actual, expected) < TOLERANCE[dtype]
    assert len(op.reverse_weights) == 1
    assert None not in op.reverse_weights._packed.values()  # the transposed convolution ran, not the fallback
    op.input_gradient(grad, x.shape, dtype)
    assert len(op.reverse_weights) == 1  # packed once per shape
    dense_stride_1 = conv.stride == (1, 1) and conv.dilation == (1, 1) and conv.groups == 1
    within = all(p < k for p, k in zip(conv.padding, conv.kernel_size, strict=True))
    assert (op.flipped_padding is not None) == (dense_stride_1 and within)


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
@pytest.mark.parametrize(("kernel", "padding"), [(1, 0), (3, 1), ((1, 7), (0, 3)), (5, 0)])
def test_flipped_kernel_input_gradient_equals_the_transposed_convolution(dtype, kernel, padding):
    """A dense stride-1 convolution's input gradient as a forward convolution of its flipped, transposed kernel:
    the same values as the transposed convolution it replaces, bit for bit, and new weights are packed anew."""
    torch.manual_seed(0)
    conv = nn.Conv2d(48, 80, kernel, padding=padding).requires_grad_(False).to(dtype).to(memory_format=CL)
    op = Conv(conv, None)
    assert op.flipped_padding is not None
    x = torch.zeros(1, 48, 13, 21).to(dtype).contiguous(memory_format=CL)
    grad = torch.randn(conv(x).shape).to(dtype).contiguous(memory_format=CL)
    actual = op.input_gradient(grad, x.shape, dtype)
    assert actual.shape == x.shape
    assert all(w.is_mkldnn for w in op.reverse_weights._packed.values())  # packed, not oneDNN's per-call fallback
    flipped, op.flipped_padding = op.flipped_padding, None
    assert torch.equal(actual, op.input_gradient(grad, x.shape, dtype))  # the transposed convolution
    op.flipped_padding = flipped
    conv.weight.mul_(2)  # changed in place: packed anew
    assert torch.equal(op.input_gradient(grad, x.shape, dtype), 2 * actual)


@pytest.fixture(scope="module")
def lite0():
    return load_model()


def test_extractor_runs_the_program_only_for_cpu_gradients(lite0, monkeypatch):
    extractor = lite0.extractor(["block5"])
    assert extractor.backend is not None
    calls = []
    real = Program.forward
    monkeypatch.setattr(Program, "forward", lambda self, x: calls.append(x.dtype) or real(self, x))
    x = torch.rand(1, 3, 64, 64)
    with torch.no_grad():
        plain = extractor(x)["block5"]
    assert calls == []  # no gradient wanted: the graph runs as it is
    out = extractor(x.clone().requires_grad_(True))["block5"]
    assert calls == [torch.float32]
    assert relative_error(out.detach(), plain) < TOLERANCE[torch.float32]
    fp16 = lite0.extractor(["block5"], dtype=torch.float16)
    fp16(x.clone().requires_grad_(True))
    assert calls == [torch.float32]  # fp16: no oneDNN program on most CPUs, so autograd
    assert lite0.extractor(["block5"], fast=False).backend is None


def test_extractor_gradient_with_and_without_the_program_is_the_same(lite0):
    for dtype in (None, torch.bfloat16):
        extractor = lite0.extractor(["block3", "block10"], dtype=dtype)
        without = extractor.with_autograd()
        x = torch.rand(1, 3, 96, 128)
        grads = []
        for ex in (extractor, without):
            xg = x.clone().requires_grad_(True)
            out = ex(xg)
            (out["block3"].float().mean() + out["block10"].float().square().mean()).backward()
            grads.append(xg.grad)
        assert relative_error(grads[0], grads[1]) < TOLERANCE[dtype or torch.float32], dtype


def test_the_memory_a_program_holds_is_measured_within_the_block_only(lite0):
    extractor = lite0.extractor(["block10"])
    x = torch.rand(1, 3, 64, 64, requires_grad=True)
    with held_memory() as forward:
        out = extractor(x)["block10"]
    assert forward.peak > 64 * 64 * 4  # the forward's peak: at least an fp32 image's worth
    with held_memory() as reverse:
        out.mean().backward()
    assert reverse.peak > out.numel() * 4  # the reverse's: at least the feature's gradient
    before = (forward.peak, reverse.peak)
    extractor(x)["block10"].square().mean().backward()
    assert (forward.peak, reverse.peak) == before  # nothing recorded outside the blocks


def test_held_bytes_counts_shared_storage_once():
    a = torch.zeros(10, 10)
    assert held_bytes([a, a[:5], (a.t(),)], {"k": a}) == 400
    assert held_bytes([a, torch.zeros(3, dtype=torch.bfloat16), None, 1.5]) == 406
