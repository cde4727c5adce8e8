"""seamless: periodic resizing, the gradient of a tileable image, the seam measure."""

from __future__ import annotations

from typing import Literal

import pytest
import torch
from torch import nn

from inceptionism.seamless import (
    GradientFn,
    circular_pad,
    crop_margin,
    make_tileable,
    periodic_gradient,
    seam_error,
    wrap_resize,
)
from inceptionism.transforms import laplacian_normalize, resize, roll


@pytest.mark.parametrize(
    ("src", "dst"),
    [((20, 30), (28, 41)), ((28, 41), (20, 30)), ((57, 80), (40, 57)), ((10, 10), (3, 3)), ((5, 7), (64, 64))],
)
def test_wrap_resize_is_the_centre_of_a_resized_tiling(src: tuple[int, int], dst: tuple[int, int]) -> None:
    x = torch.rand(2, 3, *src, dtype=torch.float64)
    (h, w) = dst
    expected = resize(x.repeat(1, 1, 3, 3), (3 * h, 3 * w))[..., h : 2 * h, w : 2 * w]
    torch.testing.assert_close(wrap_resize(x, dst), expected, rtol=0, atol=1e-12)


def test_wrap_resize_matches_resize_away_from_the_edges() -> None:
    x = torch.rand(1, 3, 40, 60)
    for size in ((56, 84), (28, 42)):
        out, plain = wrap_resize(x, size), resize(x, size)
        torch.testing.assert_close(out[..., 4:-4, 4:-4], plain[..., 4:-4, 4:-4])
        assert not torch.allclose(out[..., 0, :], plain[..., 0, :])  # the edge reads the opposite edge


def test_wrap_resize_keeps_constants_dtype_and_same_size() -> None:
    x = torch.full((1, 3, 9, 13), 0.3)
    torch.testing.assert_close(wrap_resize(x, (31, 5)), torch.full((1, 3, 31, 5), 0.3))
    y = torch.rand(1, 3, 9, 13)
    assert wrap_resize(y, (9, 13)) is y
    assert wrap_resize(y.half(), (4, 4)).dtype == torch.float16


def test_wrap_resize_commutes_with_circular_shifts() -> None:
    x = torch.rand(1, 3, 16, 24, dtype=torch.float64)
    torch.testing.assert_close(wrap_resize(roll(x, 3, -5), (32, 48)), roll(wrap_resize(x, (32, 48)), 6, -10))
    torch.testing.assert_close(wrap_resize(roll(x, 4, -8), (8, 12)), roll(wrap_resize(x, (8, 12)), 2, -4))


def test_wrap_resize_bad_input() -> None:
    with pytest.raises(ValueError, match="B, C, H, W"):
        wrap_resize(torch.zeros(3, 4, 4), (2, 2))
    with pytest.raises(ValueError, match="positive"):
        wrap_resize(torch.zeros(1, 3, 4, 4), (0, 2))


def test_circular_pad_and_crop() -> None:
    x = torch.arange(12.0).view(1, 1, 3, 4)
    p = circular_pad(x, 5)  # wider than the image: wraps more than once
    assert p.shape == (1, 1, 13, 14)
    assert torch.equal(p[0, 0, 0, 0], x[0, 0, (0 - 5) % 3, (0 - 5) % 4])
    assert torch.equal(crop_margin(p, 5), x)
    assert circular_pad(x, 0).shape == x.shape and crop_margin(x, 0) is x
    with pytest.raises(ValueError, match="margin"):
        circular_pad(x, -1)


def _net(padding_mode: Literal["zeros", "circular"]) -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Conv2d(3, 4, 5, padding=2, padding_mode=padding_mode),
        nn.Tanh(),
        nn.Conv2d(4, 4, 3, padding=1, padding_mode=padding_mode),
    ).double()


def _gradient(net: nn.Module) -> GradientFn:
    def gradient(x: torch.Tensor) -> tuple[torch.Tensor, float]:
        x = x.detach().requires_grad_(True)
        score = net(x).square().mean()
        score.backward()
        assert x.grad is not None
        return x.grad, float(score.detach())

    return gradient


def test_periodic_gradient_is_the_gradient_of_the_endless_pattern() -> None:
    # The true gradient of a periodic image: the same network with circular padding. Receptive radius 3, so a
    # margin of 6 makes the zero-padded network's gradient exact (up to the mean over a larger area).
    x = torch.rand(1, 3, 12, 17, dtype=torch.float64)
    exact, _ = _gradient(_net("circular"))(x)
    margin = 6
    grad, _ = periodic_gradient(x, _gradient(_net("zeros")), margin)
    area = (12 + 2 * margin) * (17 + 2 * margin) / (12 * 17)
    torch.testing.assert_close(grad * area, exact)
    plain, _ = _gradient(_net("zeros"))(x)
    assert not torch.allclose(plain, exact)  # without the margin the edges see zeros


def _dream(x: torch.Tensor, seamless: bool, steps: int = 4) -> torch.Tensor:
    """A tiny two-octave dream with the toy network: what the engine does, with or without wrapping."""
    gradient = _gradient(_net("zeros"))
    sizes = [(24, 32), (48, 64)]
    base = x
    detail = torch.zeros(1, 3, *sizes[0], dtype=x.dtype)
    for size in sizes:
        scale = wrap_resize if seamless else resize
        octave_base = scale(base, size)
        dream = octave_base + scale(detail, size)
        for _ in range(steps):
            if seamless:
                g, _ = periodic_gradient(dream, gradient, 6)
            else:
                g, _ = gradient(dream)
            g = laplacian_normalize(g, levels=2, wrap=seamless)
            dream = (dream + 0.05 * g / g.abs().mean()).clamp(0, 1)
        detail = dream - octave_base
    return dream


def test_seamless_dream_wraps() -> None:
    gen = torch.Generator().manual_seed(0)
    noise = wrap_resize(torch.rand(1, 3, 12, 16, generator=gen, dtype=torch.float64), (48, 64))  # tileable start
    assert seam_error(noise) < 1.2
    seamless = _dream(noise, seamless=True)
    plain = _dream(noise, seamless=False)
    assert seam_error(seamless) < 1.5  # the seam is like any other pair of neighbours …
    assert seam_error(plain) > 2.5 * seam_error(seamless)  # … not so where the edges saw zero padding
    # the wrapped dream does not know where the edges are: shifting the start shifts the dream
    shifted = _dream(roll(noise, 8, 16), seamless=True)
    torch.testing.assert_close(shifted, roll(seamless, 8, 16))


def test_seam_error() -> None:
    gen = torch.Generator().manual_seed(1)
    tileable = wrap_resize(torch.rand(1, 3, 16, 16, generator=gen), (64, 64))
    assert 0.7 < seam_error(tileable) < 1.4
    assert seam_error(roll(tileable, 32, 32)) == pytest.approx(seam_error(tileable), rel=0.5)
    ramp = torch.linspace(0, 1, 32).expand(1, 1, 32, 32)
    assert seam_error(ramp) > 20  # 1/31 per step inside, a jump of 1 across the left/right seam
    assert seam_error(torch.ones(1, 3, 4, 4)) == 0
    with pytest.raises(ValueError, match="2 × 2"):
        seam_error(torch.ones(1, 3, 1, 4))


def test_make_tileable() -> None:
    gen = torch.Generator().manual_seed(2)
    y, x = torch.meshgrid(torch.linspace(0, 1, 40), torch.linspace(0, 1, 60), indexing="ij")
    photo = (0.5 * x + 0.3 * y + 0.05 * torch.rand(40, 60, generator=gen)).expand(1, 3, 40, 60).clone()
    before = photo.clone()
    out = make_tileable(photo, band=0.25)
    assert torch.equal(photo, before)  # the input is not touched
    assert seam_error(photo) > 5 and seam_error(out) < 2
    # more than a band (10 rows, 15 columns) from every edge: unchanged
    assert torch.equal(out[..., 11:-11, 16:-16], photo[..., 11:-11, 16:-16])
    # at the left and right edges (rows the vertical pass leaves alone): the picture's own middle columns
    assert torch.equal(out[..., 11:-11, 0], photo[..., 11:-11, 30])
    assert torch.equal(out[..., 11:-11, -1], photo[..., 11:-11, 29])


def test_make_tileable_whole_band_and_bad_values() -> None:
    photo = torch.rand(1, 3, 16, 16)
    out = make_tileable(photo, band=0.5)
    assert out.shape == photo.shape and torch.isfinite(out).all()
    for bad in (0.0, 0.6, -1.0):
        with pytest.raises(ValueError, match="band"):
            make_tileable(photo, band=bad)
