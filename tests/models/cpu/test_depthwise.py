import pytest
import torch

import inceptionism.models.cpu.depthwise as dw
from inceptionism.models.cpu.depthwise import StridedDepthwise, input_gradient, is_strided_depthwise


def reference(x, weight, stride, padding, grad):
    """fp32 autograd's input gradient of the depthwise convolution."""
    x = x.float().requires_grad_(True)
    y = torch.nn.functional.conv2d(x, weight.float(), None, stride, padding, 1, x.shape[1])
    y.backward(grad.float())
    return x.grad


CASES = [  # kernel, stride, padding, input size: odd and even sizes, no padding, kernels smaller than the stride
    ((3, 3), (2, 2), (1, 1), (33, 40)),
    ((5, 5), (2, 2), (2, 2), (32, 41)),
    ((3, 3), (2, 2), (0, 0), (26, 31)),
    ((5, 5), (2, 2), (0, 0), (30, 29)),
    ((3, 3), (3, 3), (1, 1), (20, 22)),
    ((1, 1), (2, 2), (0, 0), (9, 10)),  # every other pixel gets no gradient
    ((3, 5), (2, 1), (1, 2), (17, 12)),
]


@pytest.mark.parametrize("road", ["phases", "fp32"])
@pytest.mark.parametrize("kernel,stride,padding,size", CASES)
def test_input_gradient_matches_autograd(monkeypatch, road, kernel, stride, padding, size):
    monkeypatch.setattr(dw, "PHASES_FROM", 0 if road == "phases" else 2**62)
    torch.manual_seed(0)
    channels = 8
    weight = torch.randn(channels, 1, *kernel)
    x = torch.randn(2, channels, *size).contiguous(memory_format=torch.channels_last)
    y = torch.nn.functional.conv2d(x, weight, None, stride, padding, 1, channels)
    grad = torch.randn_like(y)
    ref = reference(x, weight, stride, padding, grad)
    for dtype, tol in ((torch.float32, 1e-5), (torch.bfloat16, 2e-2), (torch.float16, 2e-3)):
        g = input_gradient(grad.to(dtype), weight.to(dtype), size, stride, padding)
        assert g.dtype == dtype and g.shape == x.shape
        assert g.is_contiguous(memory_format=torch.channels_last)
        assert torch.allclose(g.float(), ref, rtol=tol, atol=tol * float(ref.abs().max())), (dtype, road)


def test_strided_depthwise_module_forward_is_the_convolution_and_backward_its_gradient():
    torch.manual_seed(0)
    conv = torch.nn.Conv2d(8, 8, 3, stride=2, padding=1, groups=8).requires_grad_(False).to(torch.bfloat16)
    x = torch.randn(1, 8, 64, 96).to(torch.bfloat16).contiguous(memory_format=torch.channels_last)
    xa, xb = x.clone().requires_grad_(True), x.clone().requires_grad_(True)
    a, b = conv(xa), StridedDepthwise(conv)(xb)
    assert torch.equal(a, b)
    g = torch.randn_like(a)
    b.backward(g)
    ref = reference(x, conv.weight, (2, 2), (1, 1), g)
    assert xb.grad.dtype == torch.bfloat16
    assert torch.allclose(xb.grad.float(), ref, rtol=2e-2, atol=2e-2 * float(ref.abs().max()))


def test_the_guard_steps_aside_where_onednn_is_fastest_or_no_gradient_is_wanted():
    conv = torch.nn.Conv2d(4, 4, 3, stride=2, padding=1, groups=4).requires_grad_(False)
    guard = StridedDepthwise(conv)
    x = torch.randn(1, 4, 16, 16, requires_grad=True)
    assert type(guard(x).grad_fn).__name__ == "ConvolutionBackward0"  # fp32: oneDNN's own gradient
    xb = x.detach().to(torch.bfloat16)
    conv.to(torch.bfloat16)
    assert guard(xb).grad_fn is None  # no gradient wanted
    assert type(guard(xb.requires_grad_(True)).grad_fn).__name__ == "_DepthwiseConvBackward"


def test_only_plain_strided_depthwise_convolutions_qualify():
    assert is_strided_depthwise(torch.nn.Conv2d(4, 4, 3, stride=2, groups=4))
    assert not is_strided_depthwise(torch.nn.Conv2d(4, 4, 3, stride=1, groups=4))  # stride 1
    assert not is_strided_depthwise(torch.nn.Conv2d(4, 8, 3, stride=2, groups=4))  # channel multiplier
    assert not is_strided_depthwise(torch.nn.Conv2d(4, 4, 3, stride=2, groups=2))  # grouped, not depthwise
    assert not is_strided_depthwise(torch.nn.Conv2d(4, 4, 3, stride=2, groups=4, dilation=2))
    assert not is_strided_depthwise(torch.nn.Conv2d(4, 4, 3, stride=2, groups=4, padding_mode="reflect"))
    with pytest.raises(ValueError, match="strided depthwise"):
        StridedDepthwise(torch.nn.Conv2d(4, 4, 3))
