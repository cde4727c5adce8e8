"""Tests for inceptionism.io.highbit: 16-bit RGB/RGBA PNG and TIFF in, the same format and depth out."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import png
import pytest
import tifffile
import torch
from PIL import Image, ImageCms, features
from samples import RNG, H, W, assert_one_line, sha

from inceptionism.errors import ImageError
from inceptionism.io import HIGH_BIT_KEY, high_bit_pixels, load_image, read_settings, save_image, to_pil
from inceptionism.io.highbit import png_is_high_bit_colour, read_png16, write_png16

SETTINGS = {"model": "m", "steps": 3, "layers": ["a", "b:0.5"], "note": "ünïcödé"}


def rgb16(channels: int = 3) -> np.ndarray:
    """Random 16-bit pixels whose 8-bit views collide: only 16 bits tell them apart."""
    data = RNG.integers(0, 65536, size=(H, W, channels), dtype=np.uint16)
    data[0, :4, 0] = [0, 1, 65534, 65535]
    return data


def write_png(path: Path, data: np.ndarray) -> Path:
    with path.open("wb") as handle:
        write_png16(handle, data, {}, None)
    return path


def read_png(path: Path) -> tuple[np.ndarray, int]:
    """Pixels and bit depth of a PNG, read with pypng (Pillow would give 8 bits)."""
    width, height, rows, info = png.Reader(filename=str(path)).read()
    pixels = np.vstack([np.asarray(row, dtype=np.uint16) for row in rows])
    return pixels.reshape(height, width, info["planes"]), info["bitdepth"]


def passthrough(src: Path, out: Path) -> Path:
    """load -> to_pil (no dream) -> save_image with settings; the input stays as it was."""
    before = sha(src)
    loaded = load_image(src)
    assert loaded.bit_depth == 16
    save_image(to_pil(loaded.rgb, loaded), out, SETTINGS)
    assert sha(src) == before
    return out


@pytest.mark.parametrize("channels", [3, 4])
def test_png_16bit_colour_roundtrips_exactly_with_settings(tmp_path: Path, channels: int) -> None:
    data = rgb16(channels)
    src = write_png(tmp_path / "in.png", data)
    assert png_is_high_bit_colour(src)
    loaded = load_image(src)
    assert loaded.mode == ("RGB" if channels == 3 else "RGBA") and loaded.size == (W, H)
    assert (loaded.alpha is not None) == (channels == 4)
    out = passthrough(src, tmp_path / "out.png")
    pixels, depth = read_png(out)
    assert depth == 16
    np.testing.assert_array_equal(pixels, data)
    assert read_settings(out) == SETTINGS


@pytest.mark.parametrize("channels", [3, 4])
def test_tiff_16bit_colour_roundtrips_exactly_with_settings(tmp_path: Path, channels: int) -> None:
    data = rgb16(channels)
    src = tmp_path / "in.tif"
    extrasamples = ("unassalpha",) if channels == 4 else None
    tifffile.imwrite(src, data, photometric="rgb", extrasamples=extrasamples, metadata=None)
    out = passthrough(src, tmp_path / "out.tiff")
    back = tifffile.imread(out)
    assert back.dtype == np.uint16
    np.testing.assert_array_equal(back, data)
    assert read_settings(out) == SETTINGS


def test_planar_tiff_is_read_as_pixels(tmp_path: Path) -> None:
    data = rgb16()
    src = tmp_path / "planar.tif"
    tifffile.imwrite(src, np.moveaxis(data, 2, 0), photometric="rgb", planarconfig="separate", metadata=None)
    loaded = load_image(src)
    np.testing.assert_array_equal(np.rint(loaded.rgb[0].permute(1, 2, 0).numpy() * 65535), data)


def test_uint16_array_gives_16bit_output(tmp_path: Path) -> None:
    data = rgb16()
    loaded = load_image(data)
    out = save_image(to_pil(loaded.rgb, loaded), tmp_path / "out.png")
    np.testing.assert_array_equal(read_png(out)[0], data)


def test_result_is_an_8bit_image_carrying_its_16bit_pixels(tmp_path: Path) -> None:
    src = write_png(tmp_path / "in.png", rgb16())
    loaded = load_image(src)
    result = to_pil(loaded.rgb * 0.5, loaded)
    assert result.mode == "RGB"
    pixels = high_bit_pixels(result)
    assert pixels is not None and pixels.dtype == np.uint16
    expected = np.rint(loaded.rgb[0].permute(1, 2, 0).numpy().astype(np.float64) * 0.5 * 65535)
    np.testing.assert_array_equal(pixels, expected)
    assert np.abs(np.asarray(result).astype(int) - pixels / 257).max() <= 0.5 + 1e-9
    # a copy keeps them; JPEG and WebP get the 8-bit image
    assert high_bit_pixels(result.copy()) is not None
    for ext in (".jpg", ".webp"):
        assert Image.open(save_image(result, tmp_path / f"out{ext}", SETTINGS)).mode == "RGB"
        assert read_settings(tmp_path / f"out{ext}") == SETTINGS


def test_edited_result_is_saved_from_its_8bit_pixels(tmp_path: Path) -> None:
    src = write_png(tmp_path / "in.png", rgb16())
    loaded = load_image(src)
    result = to_pil(loaded.rgb, loaded)
    result.paste((255, 0, 0), (0, 0, 4, 4))  # drawn on after the dream: the 16-bit pixels no longer match
    assert high_bit_pixels(result) is None
    out = save_image(result, tmp_path / "out.png")
    assert read_png(out)[1] == 8
    np.testing.assert_array_equal(np.asarray(Image.open(out)), np.asarray(result))
    resized = to_pil(loaded.rgb, loaded).resize((W // 2, H // 2))
    assert high_bit_pixels(resized) is None
    assert Image.open(save_image(resized, tmp_path / "small.png")).size == (W // 2, H // 2)


def test_16bit_result_has_more_than_256_levels(tmp_path: Path) -> None:
    ramp = np.linspace(0, 65535, W * H * 3).astype(np.uint16).reshape(H, W, 3)
    src = write_png(tmp_path / "ramp.png", ramp)
    loaded = load_image(src)
    out = save_image(to_pil(torch.sqrt(loaded.rgb), loaded), tmp_path / "out.png")
    pixels, depth = read_png(out)
    assert depth == 16 and len(np.unique(pixels)) > 256


def test_exif_orientation_applies_to_16bit_pixels(tmp_path: Path) -> None:
    data = rgb16()
    src = tmp_path / "rot.tif"
    tifffile.imwrite(src, data, photometric="rgb", metadata=None, extratags=[(274, "H", 1, 6, True)])
    loaded = load_image(src)
    assert loaded.size == (H, W) and loaded.bit_depth == 16
    # orientation 6: rotate 90 degrees clockwise to display
    expected = np.rot90(data, k=-1)
    np.testing.assert_array_equal(np.rint(loaded.rgb[0].permute(1, 2, 0).numpy() * 65535), expected)


def test_icc_profile_is_carried_in_16bit_files(tmp_path: Path) -> None:
    if not features.check("littlecms2"):
        pytest.skip("no littlecms")
    icc = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()
    src = tmp_path / "icc.tif"
    tifffile.imwrite(src, rgb16(), photometric="rgb", metadata=None, iccprofile=icc)
    loaded = load_image(src)
    assert loaded.icc_profile == icc
    for ext in (".png", ".tif"):
        out = save_image(to_pil(loaded.rgb, loaded), tmp_path / f"out{ext}")
        assert Image.open(out).info.get("icc_profile") == icc, ext


def test_png_chunks_before_pixels(tmp_path: Path) -> None:
    out = tmp_path / "x.png"
    with out.open("wb") as handle:
        write_png16(handle, rgb16(), {"inceptionism": json.dumps(SETTINGS, ensure_ascii=True)}, None)
    kinds = [kind for kind, _ in png.Reader(filename=str(out)).chunks()]
    assert kinds[0] == b"IHDR" and kinds.index(b"tEXt") < kinds.index(b"IDAT") and kinds[-1] == b"IEND"
    np.testing.assert_array_equal(read_png16(out), read_png(out)[0])


def test_corrupt_16bit_png_is_one_line(tmp_path: Path) -> None:
    src = write_png(tmp_path / "in.png", rgb16())
    cut = tmp_path / "cut.png"
    cut.write_bytes(src.read_bytes()[: src.stat().st_size * 2 // 3])
    with pytest.raises(ImageError) as exc:
        load_image(cut)
    assert "cut.png" in assert_one_line(exc)


def test_8bit_and_grey_pngs_are_not_high_bit(tmp_path: Path) -> None:
    Image.fromarray(RNG.integers(0, 256, (H, W, 3), dtype=np.uint8)).save(tmp_path / "rgb8.png")
    Image.fromarray(RNG.integers(0, 65536, (H, W), dtype=np.uint16)).save(tmp_path / "grey16.png")
    (tmp_path / "short.png").write_bytes(b"\x89PNG\r\n")
    assert not any(png_is_high_bit_colour(tmp_path / name) for name in ("rgb8.png", "grey16.png", "short.png"))
    assert HIGH_BIT_KEY not in to_pil(*(lambda x: (x.rgb, x))(load_image(tmp_path / "rgb8.png"))).info
