"""colors: the YCbCr transform and keeping the input's colours."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from inceptionism.colors import from_luma_chroma, keep_colors, luma_range, to_luma_chroma


def _quantised(x: torch.Tensor) -> torch.Tensor:
    """What an 8-bit file holds: rounded to the nearest of 256 levels, back in [0, 1]."""
    return torch.round(x * 255) / 255


def test_round_trip_is_exact_in_float64() -> None:
    rgb = torch.rand(2, 3, 17, 13, dtype=torch.float64) * 3 - 1  # linear: any values, not only [0, 1]
    torch.testing.assert_close(from_luma_chroma(*to_luma_chroma(rgb)), rgb, rtol=0, atol=1e-15)


def test_known_colours() -> None:
    rgb = torch.tensor([[1.0, 1.0, 1.0], [0.5, 0.5, 0.5], [1.0, 0.0, 0.0], [0.0, 0.0, 1.0]], dtype=torch.float64)
    y, cb, cr = to_luma_chroma(rgb.T[None, :, :, None])
    torch.testing.assert_close(y.flatten(), torch.tensor([1.0, 0.5, 0.299, 0.114], dtype=torch.float64))
    torch.testing.assert_close(cb.flatten(), torch.tensor([0.0, 0.0, -0.299 / 1.772, 0.5], dtype=torch.float64))
    torch.testing.assert_close(cr.flatten(), torch.tensor([0.0, 0.0, 0.5, -0.114 / 1.402], dtype=torch.float64))


def test_luma_is_pillows() -> None:
    rgb8 = np.random.default_rng(0).integers(0, 256, (20, 30, 3), dtype=np.uint8)
    pillow = np.asarray(Image.fromarray(rgb8).convert("L"), dtype=np.float64)
    y, _, _ = to_luma_chroma(torch.from_numpy(rgb8.astype(np.float64)).permute(2, 0, 1)[None])
    assert np.abs(y[0, 0].numpy() - pillow).max() <= 0.5 + 1e-9  # Pillow rounds to integers


def test_keep_colors_keeps_the_inputs_chroma_within_8bit_rounding() -> None:
    gen = torch.Generator().manual_seed(1)
    original = _quantised(torch.rand(1, 3, 64, 48, generator=gen))
    dream = (original + 0.4 * torch.randn(1, 3, 64, 48, generator=gen)).clamp(0, 1)  # far off, colours too
    out = _quantised(keep_colors(dream, original))
    _, cb_out, cr_out = to_luma_chroma(out.double())
    _, cb_in, cr_in = to_luma_chroma(original.double())
    # each channel off by at most half a level; Cb and Cr weigh the channels' errors with weights summing to 1
    assert (cb_out - cb_in).abs().max() <= 0.5 / 255 + 1e-9
    assert (cr_out - cr_in).abs().max() <= 0.5 / 255 + 1e-9


def test_keep_colors_takes_the_dreams_luma_where_the_colour_allows() -> None:
    original = torch.full((1, 3, 4, 4), 0.5, dtype=torch.float64)
    original[:, 0] = 0.6  # a mild pink-grey: plenty of room for its luma to move
    dream = original.flip(1).clone() * 0.9
    out = keep_colors(dream, original)
    y_out, cb_out, cr_out = to_luma_chroma(out)
    y_dream, _, _ = to_luma_chroma(dream)
    _, cb_in, cr_in = to_luma_chroma(original)
    torch.testing.assert_close(y_out, y_dream)
    torch.testing.assert_close(cb_out, cb_in)
    torch.testing.assert_close(cr_out, cr_in)


def test_out_of_gamut_luma_is_limited_not_the_hue() -> None:
    red = torch.tensor([1.0, 0.0, 0.0], dtype=torch.float64).view(1, 3, 1, 1)
    white = torch.ones(1, 3, 1, 1, dtype=torch.float64)
    out = keep_colors(white, red)  # pure red cannot get brighter and stay pure red
    torch.testing.assert_close(out, red)
    grey_original = torch.full((1, 3, 1, 1), 0.3, dtype=torch.float64)
    torch.testing.assert_close(keep_colors(white, grey_original), white)  # grey can: it becomes white


def test_luma_range_holds_each_colours_own_luma() -> None:
    rgb = torch.rand(1, 3, 50, 50, dtype=torch.float64)
    y, cb, cr = to_luma_chroma(rgb)
    low, high = luma_range(cb, cr)
    assert (low <= y + 1e-12).all() and (y <= high + 1e-12).all()
    assert (low >= 0).all() and (high <= 1).all()
    inside = from_luma_chroma(low, cb, cr), from_luma_chroma(high, cb, cr)
    for edge in inside:
        assert edge.min() >= -1e-12 and edge.max() <= 1 + 1e-12


def test_keep_colors_result_in_range_and_inputs_untouched() -> None:
    original, dream = torch.rand(1, 3, 20, 20), torch.rand(1, 3, 20, 20)
    before = original.clone(), dream.clone()
    out = keep_colors(dream, original)
    assert out.dtype == torch.float32 and out.min() >= 0 and out.max() <= 1
    assert torch.equal(original, before[0]) and torch.equal(dream, before[1])


def test_keep_colors_bad_shapes() -> None:
    with pytest.raises(ValueError, match="differ in shape"):
        keep_colors(torch.rand(1, 3, 4, 4), torch.rand(1, 3, 4, 5))
    with pytest.raises(ValueError, match=r"\(B, 3, H, W\)"):
        keep_colors(torch.rand(1, 1, 4, 4), torch.rand(1, 1, 4, 4))
