"""Tests for inceptionism.io.convert: every source mode back to the same mode, per output format."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from PIL import Image, ImageCms, features
from samples import RNG, H, W, roundtrip, u8, u16

from inceptionism.io import LoadedImage, load_image, save_image, to_pil
from inceptionism.io.convert import icc_fits, icc_space

# ----------------------------------------------------------------------------------------------------
# round trips per mode (lossless formats: exact)


@pytest.mark.parametrize(
    ("mode", "array"),
    [("RGB", lambda: u8(3)), ("RGBA", lambda: u8(4)), ("L", lambda: u8()), ("LA", lambda: u8(2))],
)
def test_8bit_modes_roundtrip_png_exactly(tmp_path: Path, mode: str, array: Any) -> None:
    data = array()
    src = tmp_path / "in.png"
    Image.fromarray(data).save(src)
    loaded, out = roundtrip(src, tmp_path / "out.png")
    assert loaded.mode == mode and loaded.size == (W, H) and loaded.bit_depth == 8
    assert loaded.rgb.shape == (1, 3, H, W) and loaded.rgb.dtype == torch.float32
    assert float(loaded.rgb.min()) >= 0 and float(loaded.rgb.max()) <= 1
    assert (loaded.alpha is not None) == (mode in {"RGBA", "LA"})
    assert out.mode == mode and out.size == (W, H)
    np.testing.assert_array_equal(np.asarray(out), data)


def test_alpha_kept_separately_and_exactly(tmp_path: Path) -> None:
    data = u8(4)
    data[..., 3] = np.arange(W * H).reshape(H, W) % 256
    src = tmp_path / "a.png"
    Image.fromarray(data).save(src)
    loaded = load_image(src)
    assert loaded.alpha is not None and loaded.alpha.shape == (1, 1, H, W)
    # the dream changes the colours; the alpha stays the original
    out = to_pil(1 - loaded.rgb, loaded)
    assert out.mode == "RGBA"
    np.testing.assert_array_equal(np.asarray(out)[..., 3], data[..., 3])
    np.testing.assert_array_equal(np.asarray(out)[..., :3], 255 - data[..., :3])


def test_palette_without_transparency_becomes_rgb(tmp_path: Path) -> None:
    src = tmp_path / "p.png"
    pal = Image.fromarray(u8(3)).quantize(16)
    pal.save(src)
    loaded, out = roundtrip(src, tmp_path / "out.png")
    assert loaded.mode == "P" and loaded.alpha is None
    assert out.mode == "RGB"
    np.testing.assert_array_equal(np.asarray(out), np.asarray(pal.convert("RGB")))


def test_palette_with_transparency_becomes_rgba(tmp_path: Path) -> None:
    src = tmp_path / "pt.png"
    pal = Image.fromarray(u8(3)).quantize(16)
    pal.info["transparency"] = 3
    pal.save(src, transparency=3)
    loaded, out = roundtrip(src, tmp_path / "out.png")
    assert loaded.mode == "P" and loaded.alpha is not None
    assert out.mode == "RGBA"
    expected = np.asarray(Image.open(src).convert("RGBA"))
    np.testing.assert_array_equal(np.asarray(out), expected)
    assert (np.asarray(out)[..., 3] == 0).any()


def test_bilevel_becomes_l(tmp_path: Path) -> None:
    src = tmp_path / "b.png"
    Image.fromarray(u8() > 127).save(src)
    loaded, out = roundtrip(src, tmp_path / "out.png")
    assert loaded.mode == "1" and out.mode == "L"
    np.testing.assert_array_equal(np.asarray(out), np.asarray(Image.open(src).convert("L")))


def test_16bit_png_roundtrips_exactly(tmp_path: Path) -> None:
    data = u16()
    src = tmp_path / "g16.png"
    Image.fromarray(data).save(src)
    loaded, out = roundtrip(src, tmp_path / "out.png")
    assert loaded.mode.startswith("I") and loaded.bit_depth == 16
    assert out.mode == "I;16"
    np.testing.assert_array_equal(np.asarray(out), data)


def test_16bit_big_endian_tiff_roundtrips_exactly(tmp_path: Path) -> None:
    data = u16()
    src = tmp_path / "g16b.tif"
    Image.fromarray(data.astype(">u2")).save(src)
    loaded, out = roundtrip(src, tmp_path / "out.tif")
    assert loaded.mode == "I;16B"
    assert out.mode == "I;16"
    np.testing.assert_array_equal(np.asarray(out).astype(np.uint16), data)


def test_mode_i_is_taken_as_16bit(tmp_path: Path) -> None:
    data = u16()
    src = tmp_path / "i32.tif"
    Image.fromarray(data.astype(np.int32)).save(src)
    loaded, out = roundtrip(src, tmp_path / "out.png")
    assert loaded.mode == "I" and loaded.bit_depth == 16
    assert out.mode == "I;16"
    np.testing.assert_array_equal(np.asarray(out), data)


def test_float_mode_roundtrips_through_tiff(tmp_path: Path) -> None:
    data = RNG.random((H, W), dtype=np.float32)
    src = tmp_path / "f.tif"
    Image.fromarray(data).save(src)
    loaded, out = roundtrip(src, tmp_path / "out.tif")
    assert loaded.mode == "F" and loaded.bit_depth == 32
    assert out.mode == "F"
    np.testing.assert_allclose(np.asarray(out), data, atol=1e-6)


def test_float_saved_as_png_becomes_16bit(tmp_path: Path) -> None:
    data = RNG.random((H, W), dtype=np.float32)
    loaded = load_image(data)
    out = save_image(to_pil(loaded.rgb, loaded), tmp_path / "f.png")
    reopened = Image.open(out)
    assert reopened.mode == "I;16"
    np.testing.assert_allclose(np.asarray(reopened) / 65535, data, atol=1 / 65535)


def test_cmyk_jpeg_stays_cmyk(tmp_path: Path) -> None:
    src = tmp_path / "c.jpg"
    rgb = Image.fromarray(u8(3))
    rgb.convert("CMYK").save(src, quality=95)
    loaded, out = roundtrip(src, tmp_path / "out.jpg")
    assert loaded.mode == "CMYK" and loaded.alpha is None
    assert out.mode == "CMYK" and out.size == (W, H)
    seen = np.asarray(Image.open(src).convert("RGB"), dtype=float)
    assert np.abs(np.asarray(out.convert("RGB"), dtype=float) - seen).mean() < 6


def test_cmyk_saved_as_png_becomes_rgb(tmp_path: Path) -> None:
    src = tmp_path / "c.jpg"
    Image.fromarray(u8(3)).convert("CMYK").save(src)
    _, out = roundtrip(src, tmp_path / "out.png")
    assert out.mode == "RGB"


def test_rgb_jpeg_roundtrip_is_close(tmp_path: Path) -> None:
    src = tmp_path / "in.jpg"
    smooth = np.dstack([np.tile(np.linspace(0, 255, W), (H, 1))] * 3).astype(np.uint8)
    Image.fromarray(smooth).save(src, quality=95)
    loaded, out = roundtrip(src, tmp_path / "out.jpg")
    assert out.mode == "RGB" and out.size == (W, H)
    decoded = np.asarray(Image.open(src), dtype=float)
    assert np.abs(np.asarray(out, dtype=float) - decoded).mean() < 2
    np.testing.assert_allclose(loaded.rgb[0].permute(1, 2, 0).numpy() * 255, decoded, atol=1e-3)


def test_webp_rgba(tmp_path: Path) -> None:
    data = u8(4)
    src = tmp_path / "in.png"
    Image.fromarray(data).save(src)
    loaded = load_image(src)
    out = Image.open(save_image(to_pil(loaded.rgb, loaded), tmp_path / "out.webp"))
    assert out.mode == "RGBA" and out.size == (W, H)


def test_rgba_to_jpeg_is_composited_on_white(tmp_path: Path) -> None:
    data = np.zeros((H, W, 4), np.uint8)
    data[..., 0] = 200
    data[:, : W // 2, 3] = 0  # left half transparent
    data[:, W // 2 :, 3] = 255
    loaded = load_image(data)
    out = Image.open(save_image(to_pil(loaded.rgb, loaded), tmp_path / "out.jpg"))
    assert out.mode == "RGB"
    pixels = np.asarray(out, dtype=int)
    assert (np.abs(pixels[H // 2, 2] - [255, 255, 255]) <= 3).all()
    assert (np.abs(pixels[H // 2, W - 3] - [200, 0, 0]) <= 6).all()


def test_la_to_jpeg_is_grey(tmp_path: Path) -> None:
    loaded = load_image(u8(2))
    out = Image.open(save_image(to_pil(loaded.rgb, loaded), tmp_path / "out.jpg"))
    assert out.mode == "L"


@pytest.mark.parametrize(("ext", "mode"), [(".jpg", "L"), (".webp", "RGB")])
def test_16bit_to_8bit_formats_scales_not_clips(tmp_path: Path, ext: str, mode: str) -> None:
    # Pillow's own I;16 -> L conversion clips at 255 (all-white); ours scales by 257.
    data = np.full((H, W), 30000, np.uint16)
    loaded = load_image(data)
    out = Image.open(save_image(to_pil(loaded.rgb, loaded), tmp_path / f"out{ext}"))
    assert out.mode == mode
    assert abs(int(np.asarray(out).mean()) - round(30000 / 257)) <= 2


def test_luminance_result_for_grey_input(tmp_path: Path) -> None:
    src = tmp_path / "l.png"
    Image.fromarray(u8()).save(src)
    loaded = load_image(src)
    red = torch.zeros_like(loaded.rgb)
    red[:, 0] = 1
    out = to_pil(red, loaded)
    assert out.mode == "L"
    assert np.asarray(out).max() == round(0.299 * 255)


def test_to_pil_rounds_instead_of_truncating() -> None:
    loaded = load_image(np.zeros((2, 2, 3), np.uint8))
    out = to_pil(torch.full((1, 3, 2, 2), 10.6 / 255), loaded)
    assert np.asarray(out).max() == 11
    loaded16 = load_image(np.zeros((2, 2), np.uint16))
    out16 = to_pil(torch.full((1, 3, 2, 2), 1000.6 / 65535), loaded16)
    assert int(np.asarray(out16).max()) == 1001


def test_to_pil_clamps_and_resizes_to_input_size() -> None:
    loaded = load_image(u8(3))
    out = to_pil(torch.full((3, H * 2, W * 2), 2.0), loaded)
    assert out.size == (W, H) and out.mode == "RGB"
    assert np.asarray(out).min() == 255
    with pytest.raises(ValueError, match="tensor"):
        to_pil(torch.zeros(1, 4, H, W), loaded)


def test_icc_profile_is_carried(tmp_path: Path) -> None:
    if not features.check("littlecms2"):
        pytest.skip("no littlecms")
    icc = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()
    src = tmp_path / "icc.png"
    Image.fromarray(u8(3)).save(src, icc_profile=icc)
    loaded = load_image(src)
    assert loaded.icc_profile == icc
    for ext in (".png", ".jpg", ".webp", ".tif"):
        out = Image.open(save_image(to_pil(loaded.rgb, loaded), tmp_path / f"out{ext}"))
        assert out.info.get("icc_profile") == icc, ext
    # an RGB profile does not belong on a grey output
    grey = load_image(src)
    grey_like = LoadedImage(grey.rgb, None, "L", grey.size, None, 8, icc)
    out = Image.open(save_image(to_pil(grey.rgb, grey_like), tmp_path / "grey.png"))
    assert not out.info.get("icc_profile")


def test_icc_space_comes_from_imagecms_and_garbage_fits_nothing() -> None:
    if not features.check("littlecms2"):
        pytest.skip("no littlecms")
    srgb = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()
    assert icc_space(srgb) == "RGB"
    assert icc_fits(srgb, "RGBA") and not icc_fits(srgb, "L") and not icc_fits(srgb, "CMYK")
    garbage = b"not a profile" * 20
    assert icc_space(garbage) is None
    assert not any(icc_fits(garbage, mode) for mode in ("RGB", "L", "CMYK")) and not icc_fits(None, "RGB")
