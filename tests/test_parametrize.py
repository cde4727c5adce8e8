"""Parametrisations: shapes, range, seeds, and the FFT one's low-frequency bias under ascent."""

import pytest
import torch

from inceptionism.parametrize import (
    COLOR_DECORRELATION,
    FFTImage,
    PixelImage,
    decorrelate_colors,
    high_frequency_share,
    parametrization,
    spectrum_scale,
)


def _gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


@pytest.mark.parametrize("cls", [FFTImage, PixelImage])
@pytest.mark.parametrize("size", [(32, 32), (33, 31), (17, 40)])
def test_image_shape_range_and_parameters(cls, size):
    p = cls(2, size, generator=_gen())
    x = p.image()
    assert x.shape == (2, 3, *size) and x.dtype == torch.float32
    assert float(x.detach().min()) > 0 and float(x.detach().max()) < 1
    params = p.parameters()
    assert params and all(t.is_leaf and t.requires_grad for t in params)
    x.sum().backward()
    assert all(t.grad is not None and t.grad.abs().sum() > 0 for t in params)


@pytest.mark.parametrize("name", ["fft", "pixel"])
def test_same_seed_same_image_other_seed_other_image(name):
    a = parametrization(name, 1, (24, 24), generator=_gen(3)).image()
    b = parametrization(name, 1, (24, 24), generator=_gen(3)).image()
    c = parametrization(name, 1, (24, 24), generator=_gen(4)).image()
    assert torch.equal(a, b)
    assert not torch.equal(a, c)


def test_starts_as_faint_noise_around_grey():
    for name in ("fft", "pixel"):
        x = parametrization(name, 1, (64, 64), generator=_gen()).image().detach()
        assert abs(float(x.mean()) - 0.5) < 0.01 and float(x.std()) < 0.02


def test_unknown_parametrisation_and_bad_shape():
    with pytest.raises(ValueError, match="unknown parametrisation 'wavelet'"):
        parametrization("wavelet", 1, (8, 8))
    with pytest.raises(ValueError, match="positive"):
        FFTImage(0, (8, 8))


def test_spectrum_scale_is_inverse_frequency_with_a_floor():
    s = spectrum_scale((16, 32))
    assert s.shape == (16, 17)
    assert float(s[0, 0]) == pytest.approx(32)  # the constant term: 1 / (1 / max(H, W))
    assert float(s[0, 1]) == pytest.approx(32)  # 1/32 cycles per pixel: at the floor
    assert float(s[0, 16]) == pytest.approx(2)  # Nyquist along x: 0.5 cycles per pixel
    assert float(s[8, 0]) == pytest.approx(2)


def test_decorrelate_colors_is_lucids_matrix():
    assert float(COLOR_DECORRELATION.norm(dim=0).max()) == pytest.approx(1)
    t = torch.zeros(1, 3, 2, 2)
    t[:, 0] = 1  # the first decorrelated axis (luminance) → roughly equal R, G and B
    rgb = decorrelate_colors(t)[0, :, 0, 0]
    assert torch.allclose(rgb, COLOR_DECORRELATION[:, 0])
    assert float(rgb.min()) > 0.9 * float(rgb.max())


def test_high_frequency_share_tells_noise_from_smooth():
    noise = torch.rand(1, 3, 64, 64, generator=_gen())
    yy, xx = torch.meshgrid(torch.arange(64.0), torch.arange(64.0), indexing="ij")
    smooth = (torch.sin(xx / 8) * torch.cos(yy / 11)).expand(1, 3, 64, 64)
    assert high_frequency_share(noise) == pytest.approx(0.8, abs=0.05)
    assert high_frequency_share(smooth) < 0.01


def _ascend(p, direction: torch.Tensor, steps: int = 30) -> torch.Tensor:
    """Adam on ``p``'s parameters towards a white-noise direction in pixel space (the gradient is pure noise)."""
    opt = torch.optim.Adam(p.parameters(), lr=0.05)
    for _ in range(steps):
        opt.zero_grad()
        (-(p.image() * direction).sum()).backward()
        opt.step()
    return p.image().detach()


def test_fft_ascent_puts_far_less_energy_in_high_frequencies_than_pixels():
    size = (64, 64)
    direction = torch.randn(1, 3, *size, generator=_gen(7))
    pixel = _ascend(PixelImage(1, size, generator=_gen()), direction)
    fft = _ascend(FFTImage(1, size, generator=_gen()), direction)
    pixel_share, fft_share = high_frequency_share(pixel), high_frequency_share(fft)
    assert pixel_share > 0.6  # pixel ascent copies the white-noise gradient: static
    assert fft_share < 0.5 * pixel_share  # Adam moves each coefficient alike: image power falls as 1/f²
