import pytest
import torch

from inceptionism.models.cpu.stem import StridedStem, input_gradient, is_strided_stem, subpixel_kernel

CASES = [  # channels in, kernel, stride, padding, input size
    (3, (3, 3), (2, 2), (0, 0), (45, 75)),  # InceptionV3's stem
    (3, (7, 7), (2, 2), (3, 3), (32, 33)),  # GoogLeNet's and ResNet's
    (3, (3, 3), (2, 2), (1, 1), (30, 41)),  # EfficientNet's
    (1, (5, 5), (3, 3), (1, 1), (20, 25)),
    (4, (1, 1), (2, 2), (0, 0), (9, 10)),  # every other pixel gets no gradient
    (3, (3, 5), (2, 1), (1, 2), (17, 12)),  # unequal strides
    (2, (4, 4), (4, 4), (0, 0), (16, 19)),  # patchify; the last rows get no gradient
]


@pytest.mark.parametrize("cin,kernel,stride,padding,size", CASES)
def test_subpixel_input_gradient_matches_autograd(cin, kernel, stride, padding, size):
    torch.manual_seed(0)
    weight = torch.randn(16, cin, *kernel)
    x = torch.randn(2, cin, *size, requires_grad=True)
    y = torch.nn.functional.conv2d(x, weight, None, stride, padding)
    grad = torch.randn_like(y)
    y.backward(grad)
    kernel_, first = subpixel_kernel(weight, stride, padding)
    for dtype, tol in ((torch.float32, 1e-5), (torch.bfloat16, 3e-2)):
        g = input_gradient(grad.to(dtype), kernel_.to(dtype), first, size, stride)
        assert g.shape == x.shape and g.dtype == dtype
        assert torch.allclose(g.float(), x.grad, rtol=tol, atol=tol * float(x.grad.abs().max())), dtype


def test_stem_module_forward_is_the_convolution_and_backward_its_gradient():
    torch.manual_seed(0)
    conv = torch.nn.Conv2d(3, 8, 7, stride=2, padding=3).requires_grad_(False)
    stem = StridedStem(conv)
    x = torch.randn(1, 3, 41, 50)
    xa, xb = x.clone().requires_grad_(True), x.clone().requires_grad_(True)
    a, b = conv(xa), stem(xb)
    assert torch.equal(a, b)
    g = torch.randn_like(a)
    a.backward(g)
    b.backward(g)
    assert torch.allclose(xa.grad, xb.grad, atol=1e-5)
    with torch.no_grad():  # a changed weight makes a new kernel
        conv.weight.mul_(2)
    xc = x.clone().requires_grad_(True)
    stem(xc).backward(g)
    assert torch.allclose(xc.grad, 2 * xa.grad, atol=1e-5)


def test_the_stem_guard_steps_aside_without_a_wanted_gradient():
    conv = torch.nn.Conv2d(3, 4, 5, stride=2)
    stem = StridedStem(conv)
    x = torch.randn(1, 3, 16, 16, requires_grad=True)
    assert type(stem(x).grad_fn).__name__ == "ConvolutionBackward0"  # weights that learn: autograd's own
    conv.requires_grad_(False)
    assert type(stem(x).grad_fn).__name__ == "_StemConvBackward"
    assert stem(x.detach()).grad_fn is None


def test_only_strided_convolutions_of_few_channels_are_stems():
    assert is_strided_stem(torch.nn.Conv2d(3, 64, 7, stride=2, padding=3))
    assert is_strided_stem(torch.nn.Conv2d(3, 32, 3, stride=2))
    assert not is_strided_stem(torch.nn.Conv2d(3, 32, 7))  # stride 1
    assert not is_strided_stem(torch.nn.Conv2d(16, 32, 7, stride=2))  # not an image
    assert not is_strided_stem(torch.nn.Conv2d(3, 32, 7, stride=2, dilation=2))
    with pytest.raises(ValueError, match="stem"):
        StridedStem(torch.nn.Conv2d(3, 8, 7))
