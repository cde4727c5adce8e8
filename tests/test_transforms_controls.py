"""Gradient controls in transforms: Laplacian-pyramid normalisation, Gaussian blur, the "laplacian" grad norm."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torchvision.transforms.functional as TF

from inceptionism.config import DreamConfig
from inceptionism.transforms import (
    GRAD_NORMS,
    ascend,
    gaussian_blur,
    gaussian_kernel1d,
    laplacian_normalize,
    normalize_gradient,
    roll,
)

# ---------------------------------------------------------------------------------------------------------------
# a hand computation of Mordvintsev's lap_normalize, one level, in plain numpy loops

K5 = np.outer([1, 4, 6, 4, 1], [1, 4, 6, 4, 1]) / 256.0


def _down_8(x: np.ndarray) -> np.ndarray:
    """TF conv2d(x, k5x5, stride 2, 'SAME') on 8×8: out 4×4, zero padding 1 before and 2 after."""
    xp = np.zeros((11, 11))
    xp[1:9, 1:9] = x
    lo = np.zeros((4, 4))
    for i in range(4):
        for j in range(4):
            lo[i, j] = sum(K5[a, b] * xp[2 * i + a, 2 * j + b] for a in range(5) for b in range(5))
    return lo


def _up_8(lo: np.ndarray) -> np.ndarray:
    """TF conv2d_transpose(lo, 4 * k5x5, (8, 8), stride 2, 'SAME'): every lo pixel spread back where it came
    from (padded position 2i + a is image position 2i + a - 1); what lands in the padding is dropped."""
    up = np.zeros((8, 8))
    for i in range(4):
        for j in range(4):
            for a in range(5):
                for b in range(5):
                    p, q = 2 * i + a - 1, 2 * j + b - 1
                    if 0 <= p < 8 and 0 <= q < 8:
                        up[p, q] += 4 * K5[a, b] * lo[i, j]
    return up


def _unit(band: np.ndarray) -> np.ndarray:
    return band / max(np.sqrt(np.mean(band**2)), 1e-10)


def _lap_normalize_1(x: np.ndarray) -> np.ndarray:
    lo = _down_8(x)
    hi = x - _up_8(lo)
    return _up_8(_unit(lo)) + _unit(hi)


def test_laplacian_one_level_matches_hand_computation() -> None:
    rng = np.random.default_rng(3)
    g = rng.normal(size=(8, 8))
    out = laplacian_normalize(torch.from_numpy(g)[None, None], levels=1)
    np.testing.assert_allclose(out[0, 0].numpy(), _lap_normalize_1(g), rtol=1e-12, atol=1e-12)


def test_laplacian_channels_are_independent_and_bands_normalised_over_all_of_them() -> None:
    # The notebook's normalize_std takes one RMS over the whole (1, H, W, 3) tensor: channels share it.
    rng = np.random.default_rng(4)
    g = rng.normal(size=(3, 8, 8)) * np.array([1.0, 5.0, 0.2])[:, None, None]
    out = laplacian_normalize(torch.from_numpy(g)[None], levels=1)[0].numpy()
    lo = [_down_8(c) for c in g]
    hi = [c - _up_8(low) for c, low in zip(g, lo, strict=True)]
    rms_lo = np.sqrt(np.mean(np.square(lo)))
    rms_hi = np.sqrt(np.mean(np.square(hi)))
    expected = np.stack([_up_8(low / rms_lo) + h / rms_hi for low, h in zip(lo, hi, strict=True)])
    np.testing.assert_allclose(out, expected, rtol=1e-12, atol=1e-12)


def test_laplacian_zero_levels_is_division_by_rms() -> None:
    g = torch.randn(1, 3, 5, 7, dtype=torch.float64)
    expected = g / g.square().mean().sqrt()
    torch.testing.assert_close(laplacian_normalize(g, levels=0), expected)


def test_laplacian_is_scale_invariant_and_sign_equivariant() -> None:
    g = torch.randn(1, 3, 40, 33, dtype=torch.float64)
    base = laplacian_normalize(g)
    torch.testing.assert_close(laplacian_normalize(1e-6 * g), base)
    torch.testing.assert_close(laplacian_normalize(-g), -base)


def test_laplacian_equalises_bands() -> None:
    # A gradient that is all fine detail plus a weak smooth ramp: the ramp's share grows after normalisation.
    y, x = torch.meshgrid(torch.linspace(0, 1, 64), torch.linspace(0, 1, 64), indexing="ij")
    smooth = 0.01 * (x + y)
    fine = torch.tensor([[1.0, -1.0], [-1.0, 1.0]]).repeat(32, 32)
    g = (smooth + fine).expand(1, 3, 64, 64)
    out = laplacian_normalize(g)
    blurred_in = gaussian_blur(g, 4.0)
    blurred_out = gaussian_blur(out, 4.0)
    assert blurred_out.abs().mean() / out.abs().mean() > 20 * blurred_in.abs().mean() / g.abs().mean()


@pytest.mark.parametrize("shape", [(1, 3, 8, 8), (2, 3, 37, 50), (1, 1, 1, 1), (1, 3, 2, 9), (1, 3, 300, 17)])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("wrap", [False, True])
def test_laplacian_shape_dtype(shape: tuple[int, int, int, int], dtype: torch.dtype, wrap: bool) -> None:
    g = torch.randn(shape, dtype=dtype)
    out = laplacian_normalize(g, wrap=wrap)
    assert out.shape == g.shape and out.dtype == dtype
    assert torch.isfinite(out).all()


def test_laplacian_zero_gradient_stays_zero() -> None:
    assert laplacian_normalize(torch.zeros(1, 3, 16, 16)).abs().max() == 0


def test_laplacian_batch_items_normalised_separately() -> None:
    a, b = torch.randn(1, 3, 16, 16, dtype=torch.float64), torch.randn(1, 3, 16, 16, dtype=torch.float64)
    both = laplacian_normalize(torch.cat([a, 100 * b]))
    torch.testing.assert_close(both, torch.cat([laplacian_normalize(a), laplacian_normalize(b)]))


def test_laplacian_wrap_commutes_with_roll() -> None:
    # Circular borders: shifting by a multiple of 2**levels shifts the result the same way.
    g = torch.randn(1, 3, 32, 48, dtype=torch.float64)
    torch.testing.assert_close(
        laplacian_normalize(roll(g, 16, -32), wrap=True), roll(laplacian_normalize(g, wrap=True), 16, -32)
    )


def test_laplacian_gradcheck() -> None:
    g = torch.randn(1, 2, 7, 6, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda t: laplacian_normalize(t, levels=2), (g,), fast_mode=True)
    assert torch.autograd.gradcheck(lambda t: laplacian_normalize(t, levels=2, wrap=True), (g,), fast_mode=True)


def test_laplacian_bad_input() -> None:
    with pytest.raises(ValueError, match="B, C, H, W"):
        laplacian_normalize(torch.zeros(3, 8, 8))
    with pytest.raises(ValueError, match="levels"):
        laplacian_normalize(torch.zeros(1, 3, 8, 8), levels=-1)


# ---------------------------------------------------------------------------------------------------------------
# Gaussian blur


def test_kernel_sums_to_one_and_is_symmetric() -> None:
    k = gaussian_kernel1d(1.7, torch.float64)
    assert k.numel() == 2 * 6 + 1
    torch.testing.assert_close(k.sum(), torch.tensor(1.0, dtype=torch.float64))
    torch.testing.assert_close(k, k.flip(0))


@pytest.mark.parametrize("sigma", [0.5, 1.0, 2.5])
def test_blur_reflect_matches_torchvision(sigma: float) -> None:
    x = torch.rand(2, 3, 31, 40)
    size = gaussian_kernel1d(sigma).numel()
    expected = TF.gaussian_blur(x, [size, size], [sigma, sigma])
    torch.testing.assert_close(gaussian_blur(x, sigma, "reflect"), expected, rtol=1e-5, atol=1e-6)


def test_blur_circular_matches_sum_of_rolls() -> None:
    x = torch.rand(1, 3, 12, 9, dtype=torch.float64)
    sigma = 1.3
    k = gaussian_kernel1d(sigma, torch.float64)
    r = k.numel() // 2
    expected = sum(k[i + r] * k[j + r] * roll(x, i, j) for i in range(-r, r + 1) for j in range(-r, r + 1))
    torch.testing.assert_close(gaussian_blur(x, sigma, "circular"), expected)


@pytest.mark.parametrize("padding", ["reflect", "circular"])
def test_blur_keeps_constants_and_handles_tiny_images(padding: str) -> None:
    x = torch.full((1, 3, 2, 3), 0.25)
    torch.testing.assert_close(gaussian_blur(x, 5.0, padding), x)  # radius 15 > the image: still fine
    torch.testing.assert_close(
        gaussian_blur(torch.full((1, 1, 1, 1), 0.5), 2.0, padding), torch.full((1, 1, 1, 1), 0.5)
    )


def test_blur_circular_keeps_sum_and_zeros_loses_it() -> None:
    x = torch.rand(1, 3, 16, 16, dtype=torch.float64)
    torch.testing.assert_close(gaussian_blur(x, 2.0, "circular").sum(), x.sum())
    assert gaussian_blur(x, 2.0, "zeros").sum() < x.sum()


def test_blur_zero_sigma_is_identity_and_bad_values_fail() -> None:
    x = torch.rand(1, 3, 4, 4)
    assert gaussian_blur(x, 0) is x
    for bad in (-1.0, float("nan"), float("inf")):
        with pytest.raises(ValueError, match="sigma"):
            gaussian_blur(x, bad)
    with pytest.raises(ValueError, match="padding"):
        gaussian_blur(x, 1.0, "mirror")
    with pytest.raises(ValueError, match="B, C, H, W"):
        gaussian_blur(x[0], 1.0)


def test_blur_gradcheck_and_dtype() -> None:
    x = torch.rand(1, 2, 6, 5, dtype=torch.float64, requires_grad=True)
    for padding in ("reflect", "circular", "zeros"):
        assert torch.autograd.gradcheck(lambda t, p=padding: gaussian_blur(t, 0.8, p), (x,), fast_mode=True)
    assert gaussian_blur(torch.rand(1, 3, 8, 8, dtype=torch.float16), 1.0).dtype == torch.float16


# ---------------------------------------------------------------------------------------------------------------
# "laplacian" as a gradient normalisation


def test_laplacian_is_a_grad_norm_choice() -> None:
    assert "laplacian" in GRAD_NORMS
    DreamConfig(grad_norm="laplacian").validate()


def test_ascend_laplacian_steps_by_the_normalised_gradient() -> None:
    image = torch.rand(1, 3, 24, 20, dtype=torch.float64) * 0.5 + 0.25
    g = torch.randn(1, 3, 24, 20, dtype=torch.float64)
    expected = (image + 0.01 * normalize_gradient(g, "laplacian")).clamp(0, 1)
    torch.testing.assert_close(ascend(image, g, 0.01, "laplacian"), expected)
    lap = laplacian_normalize(g)
    # the step's mean absolute size is step_size, as with mean_abs
    torch.testing.assert_close(normalize_gradient(g, "laplacian"), lap / lap.abs().mean(), rtol=1e-6, atol=1e-9)
    torch.testing.assert_close(
        (ascend(image, g, 0.01, "laplacian") - image).abs().mean().item(), 0.01, rtol=1e-6, atol=0
    )
    inplace = image.clone()
    ascend(inplace, g, 0.01, "laplacian", in_place=True)
    torch.testing.assert_close(inplace, expected)


def test_ascend_laplacian_wrap() -> None:
    image = torch.full((1, 3, 32, 32), 0.5, dtype=torch.float64)
    g = torch.randn(1, 3, 32, 32, dtype=torch.float64)
    lap = laplacian_normalize(g, wrap=True)
    expected = (image + 0.01 * lap / lap.abs().mean()).clamp(0, 1)
    torch.testing.assert_close(ascend(image, g, 0.01, "laplacian", wrap=True), expected)
    torch.testing.assert_close(normalize_gradient(g, "laplacian", wrap=True), lap / lap.abs().mean())
    assert not torch.allclose(ascend(image, g, 0.01, "laplacian"), expected)
