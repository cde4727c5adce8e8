"""Tests for inceptionism.image_io: image files <-> tensors."""

from __future__ import annotations

import hashlib
import json
import os
import stat
import struct
import time
import warnings
import zlib
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from PIL import Image, ImageCms, ImageFile, PngImagePlugin, features

from inceptionism import image_io
from inceptionism.errors import ImageError
from inceptionism.image_io import (
    DEFAULT_MAX_PIXELS,
    LoadedImage,
    check_output_path,
    load_image,
    read_settings,
    save_image,
    to_pil,
)

W, H = 24, 16
RNG = np.random.default_rng(1234)


# ----------------------------------------------------------------------------------------------------
# helpers


def sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def u8(*channels: int) -> np.ndarray:
    shape = (H, W) if not channels else (H, W, *channels)
    return RNG.integers(0, 256, size=shape, dtype=np.uint8)


def u16() -> np.ndarray:
    a = RNG.integers(0, 65536, size=(H, W), dtype=np.uint16)
    a[0, :4] = [0, 1, 65534, 65535]  # the extremes survive exactly
    return a


def roundtrip(src: Path, out: Path) -> tuple[LoadedImage, Image.Image]:
    """load -> to_pil (no processing) -> save -> reopen."""
    before = sha(src)
    loaded = load_image(src)
    save_image(to_pil(loaded.rgb, loaded), out)
    assert sha(src) == before, "input file was modified"
    reopened = Image.open(out)
    reopened.load()
    return loaded, reopened


def assert_one_line(exc: pytest.ExceptionInfo[ImageError]) -> str:
    message = str(exc.value)
    assert "\n" not in message and "\r" not in message
    return message


def png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)


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


# ----------------------------------------------------------------------------------------------------
# EXIF orientation


def test_exif_orientation_6_is_applied(tmp_path: Path) -> None:
    data = np.zeros((20, 30, 3), np.uint8)
    data[:6, :6] = [255, 0, 0]  # red block top-left as stored
    exif = Image.Exif()
    exif[0x0112] = 6
    src = tmp_path / "rot.jpg"
    Image.fromarray(data).save(src, exif=exif, quality=95)
    loaded = load_image(src)
    assert loaded.size == (20, 30) and loaded.rgb.shape == (1, 3, 30, 20)
    # orientation 6 = rotate 90 degrees clockwise to display: top-left goes to top-right
    pixels = loaded.rgb[0].permute(1, 2, 0).numpy()
    assert pixels[2, 17, 0] > 0.8 and pixels[2, 17, 1] < 0.2
    assert pixels[2, 2, 0] < 0.2
    out = Image.open(save_image(to_pil(loaded.rgb, loaded), tmp_path / "out.jpg"))
    assert out.size == (20, 30)
    assert out.getexif().get(0x0112) in (None, 1)


# ----------------------------------------------------------------------------------------------------
# arrays, tensors, PIL images


@pytest.mark.parametrize(
    ("array", "mode", "bits"),
    [
        (u8(), "L", 8),
        (u8(1), "L", 8),
        (u8(3), "RGB", 8),
        (u8(4), "RGBA", 8),
        (u16(), "I;16", 16),
        (RNG.random((H, W, 3)), "RGB", 32),
        (RNG.random((H, W)).astype(np.float32), "F", 32),
    ],
)
def test_arrays(array: np.ndarray, mode: str, bits: int) -> None:
    before = array.copy()
    loaded = load_image(array)
    assert loaded.mode == mode and loaded.bit_depth == bits and loaded.size == (W, H)
    assert loaded.rgb.shape == (1, 3, H, W) and loaded.rgb.dtype == torch.float32
    loaded.rgb.mul_(0)  # no aliasing with the caller's array
    np.testing.assert_array_equal(array, before)


def test_array_values_scaled() -> None:
    assert float(load_image(np.full((2, 2), 255, np.uint8)).rgb.max()) == 1.0
    assert float(load_image(np.full((2, 2), 65535, np.uint16)).rgb.max()) == 1.0
    assert float(load_image(np.full((2, 2, 3), 0.25)).rgb.max()) == 0.25


@pytest.mark.parametrize(
    ("bad", "words"),
    [
        (np.zeros((4, 4, 5), np.uint8), "shape"),
        (np.zeros((1, 4, 4, 3), np.uint8), "shape"),
        (np.zeros((0, 4, 3), np.uint8), "no pixels"),
        (np.zeros((4, 4, 3), np.int64), "dtype"),
        (np.zeros((4, 4), bool), "dtype"),
        (np.full((4, 4, 3), 2.0), "[0, 1]"),
        (np.full((4, 4, 3), np.nan), "NaN"),
    ],
)
def test_bad_arrays(bad: np.ndarray, words: str) -> None:
    with pytest.raises(ImageError) as exc:
        load_image(bad)
    assert words in assert_one_line(exc)


def test_tensors() -> None:
    t = torch.rand(3, H, W)
    before = t.clone()
    loaded = load_image(t)
    assert loaded.mode == "RGB" and loaded.rgb.shape == (1, 3, H, W) and loaded.alpha is None
    loaded.rgb.mul_(0)
    assert torch.equal(t, before)
    assert load_image(torch.rand(1, 3, H, W)).size == (W, H)


@pytest.mark.parametrize(
    ("bad", "words"),
    [
        (torch.rand(2, 3, 4, 4), "shape"),
        (torch.rand(4, 4), "shape"),
        (torch.rand(1, 4, 4, 4), "shape"),
        (torch.zeros(3, 4, 4, dtype=torch.uint8), "dtype"),
        (torch.full((3, 4, 4), -1.0), "[0, 1]"),
    ],
)
def test_bad_tensors(bad: torch.Tensor, words: str) -> None:
    with pytest.raises(ImageError) as exc:
        load_image(bad)
    assert words in assert_one_line(exc)


def test_unsupported_source_type() -> None:
    with pytest.raises(ImageError, match="list"):
        load_image([[0, 1]])  # type: ignore[arg-type]


def test_pil_image_source(tmp_path: Path) -> None:
    src = tmp_path / "in.png"
    Image.fromarray(u8(4)).save(src)
    with Image.open(src) as im:
        loaded = load_image(im)
    assert loaded.mode == "RGBA" and loaded.path == src
    in_memory = load_image(Image.new("LA", (5, 3)))
    assert in_memory.mode == "LA" and in_memory.path is None and in_memory.size == (5, 3)


# ----------------------------------------------------------------------------------------------------
# bad inputs


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(ImageError) as exc:
        load_image(tmp_path / "nope.png")
    message = assert_one_line(exc)
    assert "nope.png" in message and "does not exist" in message


def test_directory(tmp_path: Path) -> None:
    with pytest.raises(ImageError) as exc:
        load_image(tmp_path)
    message = assert_one_line(exc)
    assert str(tmp_path) in message and "folder" in message


def test_empty_file(tmp_path: Path) -> None:
    (tmp_path / "empty.png").write_bytes(b"")
    with pytest.raises(ImageError) as exc:
        load_image(tmp_path / "empty.png")
    message = assert_one_line(exc)
    assert "empty.png" in message and "empty" in message


def test_not_an_image(tmp_path: Path) -> None:
    (tmp_path / "notes.png").write_text("hello, this is text\n")
    with pytest.raises(ImageError) as exc:
        load_image(tmp_path / "notes.png")
    message = assert_one_line(exc)
    assert "notes.png" in message and "not an image" in message


@pytest.mark.parametrize("ext", [".png", ".jpg"])
def test_truncated_image_fails(tmp_path: Path, ext: str, monkeypatch: pytest.MonkeyPatch) -> None:
    src = tmp_path / f"whole{ext}"
    Image.fromarray(u8(3)).save(src)
    cut = tmp_path / f"cut{ext}"
    cut.write_bytes(src.read_bytes()[: src.stat().st_size * 2 // 3])
    # even if someone switched Pillow's global "pad truncated images" on, we refuse them
    monkeypatch.setattr(ImageFile, "LOAD_TRUNCATED_IMAGES", True)
    with pytest.raises(ImageError) as exc:
        load_image(cut)
    message = assert_one_line(exc)
    assert f"cut{ext}" in message and "truncated" in message
    assert ImageFile.LOAD_TRUNCATED_IMAGES is True  # restored


def test_newline_in_path_stays_one_line(tmp_path: Path) -> None:
    with pytest.raises(ImageError) as exc:
        load_image(tmp_path / "a\nb.png")
    assert_one_line(exc)


# ----------------------------------------------------------------------------------------------------
# pixel limit


def test_huge_header_is_refused_before_decoding(tmp_path: Path) -> None:
    ihdr = struct.pack(">IIBBBBB", 100_000, 100_000, 8, 2, 0, 0, 0)
    bomb = tmp_path / "bomb.png"
    bomb.write_bytes(
        b"\x89PNG\r\n\x1a\n"
        + png_chunk(b"IHDR", ihdr)
        + png_chunk(b"IDAT", zlib.compress(b"\x00" * 64))
        + png_chunk(b"IEND", b"")
    )
    assert bomb.stat().st_size < 200
    start = time.perf_counter()
    with pytest.raises(ImageError) as exc:
        load_image(bomb)
    assert time.perf_counter() - start < 1
    message = assert_one_line(exc)
    assert "bomb.png" in message and "--max-pixels" in message and "100000x100000" in message
    with pytest.raises(ImageError, match="--max-pixels"):
        load_image(bomb, max_pixels=10**9)


def test_max_pixels_is_ours_not_pillows(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    src = tmp_path / "small.png"
    Image.fromarray(u8(3)).save(src)
    with pytest.raises(ImageError, match="--max-pixels"):
        load_image(src, max_pixels=W * H - 1)
    assert load_image(src, max_pixels=W * H).size == (W, H)
    # Pillow's global limit neither refuses nor warns on our behalf
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 10)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert load_image(src, max_pixels=None).size == (W, H)
    assert Image.MAX_IMAGE_PIXELS == 10
    assert DEFAULT_MAX_PIXELS == 100_000_000
    with pytest.raises(ImageError, match="--max-pixels"):
        load_image(np.zeros((4, 4), np.uint8), max_pixels=15)


# ----------------------------------------------------------------------------------------------------
# saving


def test_save_returns_path_and_uses_umask_permissions(tmp_path: Path) -> None:
    out = save_image(Image.new("RGB", (4, 4)), str(tmp_path / "x.png"))
    assert out == tmp_path / "x.png" and out.is_file()
    umask = os.umask(0)
    os.umask(umask)
    assert stat.S_IMODE(out.stat().st_mode) == 0o666 & ~umask


def test_unsupported_extension(tmp_path: Path) -> None:
    with pytest.raises(ImageError) as exc:
        save_image(Image.new("RGB", (4, 4)), tmp_path / "x.bmp")
    message = assert_one_line(exc)
    assert "x.bmp" in message and ".png" in message and ".jpg" in message and ".tiff" in message
    assert not (tmp_path / "x.bmp").exists()


def test_missing_output_folder(tmp_path: Path) -> None:
    with pytest.raises(ImageError) as exc:
        save_image(Image.new("RGB", (4, 4)), tmp_path / "nope" / "x.png")
    message = assert_one_line(exc)
    assert "output folder" in message and "nope" in message and "does not exist" in message


def test_output_folder_not_writable(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(os, "access", lambda *args, **kwargs: False)
    with pytest.raises(ImageError) as exc:
        save_image(Image.new("RGB", (4, 4)), tmp_path / "x.png")
    message = assert_one_line(exc)
    assert "not writable" in message and str(tmp_path) in message


def test_output_is_a_directory(tmp_path: Path) -> None:
    (tmp_path / "d.png").mkdir()
    with pytest.raises(ImageError) as exc:
        save_image(Image.new("RGB", (4, 4)), tmp_path / "d.png")
    assert "folder" in assert_one_line(exc)


def _fake_save_then(folder: Path, exc: BaseException) -> Any:
    """A PIL save that writes a few bytes, then fails with ``exc``."""

    def fake_save(self: Image.Image, fp: Any, format: str | None = None, **params: Any) -> None:
        fp.write(b"\x89PNG partial data")
        fp.flush()
        parts = [p for p in folder.iterdir() if p.name.startswith(".") and p.name.endswith(".part")]
        assert len(parts) == 1  # the temp file lives next to the output
        raise exc

    return fake_save


@pytest.mark.parametrize("existing", [False, True])
def test_interrupted_save_leaves_nothing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, existing: bool) -> None:
    out = tmp_path / "out.png"
    if existing:
        Image.new("RGB", (4, 4), (1, 2, 3)).save(out)
        before = sha(out)
    monkeypatch.setattr(Image.Image, "save", _fake_save_then(tmp_path, KeyboardInterrupt()))
    with pytest.raises(KeyboardInterrupt):
        save_image(Image.new("RGB", (4, 4)), out, {"a": 1})
    assert not list(tmp_path.glob("*.part")) and not list(tmp_path.glob(".*.part"))
    if existing:
        assert sha(out) == before
    else:
        assert not out.exists()


def test_failed_save_is_image_error_and_leaves_nothing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(Image.Image, "save", _fake_save_then(tmp_path, OSError(28, "No space left on device")))
    with pytest.raises(ImageError) as exc:
        save_image(Image.new("RGB", (4, 4)), tmp_path / "out.jpg")
    message = assert_one_line(exc)
    assert "out.jpg" in message and "No space" in message
    assert list(tmp_path.iterdir()) == []


def test_save_replaces_existing_output(tmp_path: Path) -> None:
    out = tmp_path / "out.png"
    Image.new("RGB", (4, 4), (1, 2, 3)).save(out)
    save_image(Image.new("RGB", (6, 5), (9, 9, 9)), out)
    assert Image.open(out).size == (6, 5)
    assert [p.name for p in tmp_path.iterdir()] == ["out.png"]


# ----------------------------------------------------------------------------------------------------
# overwrite protection


def test_check_output_path(tmp_path: Path) -> None:
    src = tmp_path / "in.png"
    Image.new("RGB", (4, 4)).save(src)
    check_output_path(src, tmp_path / "out.png", overwrite=False)
    check_output_path(None, tmp_path / "out.png", overwrite=False)
    check_output_path(src, src, overwrite=True)
    for same in (src, tmp_path / "." / "in.png"):
        with pytest.raises(ImageError) as exc:
            check_output_path(src, same, overwrite=False)
        message = assert_one_line(exc)
        assert "refusing to overwrite the input" in message and "--overwrite" in message and "in.png" in message
    link = tmp_path / "link.png"
    link.symlink_to(src)
    with pytest.raises(ImageError, match="refusing"):
        check_output_path(link, src, overwrite=False)
    (tmp_path / "dir.png").mkdir()
    with pytest.raises(ImageError, match="folder"):
        check_output_path(src, tmp_path / "dir.png", overwrite=True)
    with pytest.raises(ImageError, match="does not exist"):
        check_output_path(src, tmp_path / "missing" / "o.png", overwrite=False)
    with pytest.raises(ImageError, match="not supported"):
        check_output_path(src, tmp_path / "o.gif", overwrite=False)


def test_save_refuses_to_overwrite_protected_input(tmp_path: Path) -> None:
    src = tmp_path / "in.png"
    Image.new("RGB", (4, 4), (5, 5, 5)).save(src)
    before = sha(src)
    with pytest.raises(ImageError, match="refusing to overwrite the input"):
        save_image(Image.new("RGB", (4, 4)), src, overwrite_input=src)
    assert sha(src) == before
    save_image(Image.new("RGB", (4, 4)), src)  # --overwrite given: no input to protect
    assert sha(src) != before


# ----------------------------------------------------------------------------------------------------
# settings


SETTINGS = {
    "model": "inception_v3",
    "layers": ["mixed_5b", "mixed_6a"],
    "octaves": 4,
    "lr": 0.01,
    "text": "né",
}


@pytest.mark.parametrize("ext", [".png", ".jpg", ".jpeg", ".webp", ".tif"])
def test_settings_roundtrip_in_images(tmp_path: Path, ext: str) -> None:
    out = save_image(Image.new("RGB", (8, 8), (10, 20, 30)), tmp_path / f"out{ext}", SETTINGS)
    assert read_settings(out) == SETTINGS


def test_settings_png_chunk_is_plain_json(tmp_path: Path) -> None:
    out = save_image(Image.new("RGB", (8, 8)), tmp_path / "out.png", SETTINGS)
    assert json.loads(Image.open(out).info["inceptionism"]) == SETTINGS


def test_settings_roundtrip_json(tmp_path: Path) -> None:
    path = tmp_path / "s.json"
    path.write_text(json.dumps(SETTINGS))
    assert read_settings(path) == SETTINGS


def test_image_without_settings(tmp_path: Path) -> None:
    for name in ("plain.png", "plain.jpg"):
        Image.new("RGB", (4, 4)).save(tmp_path / name, **({"comment": "made by a camera"} if "jpg" in name else {}))
        with pytest.raises(ImageError) as exc:
            read_settings(tmp_path / name)
        message = assert_one_line(exc)
        assert name in message and "holds no inceptionism settings" in message


@pytest.mark.parametrize(
    ("name", "write", "words"),
    [
        ("bad.json", lambda p: p.write_text("{not json"), "not valid JSON"),
        ("list.json", lambda p: p.write_text("[1, 2]"), "not an object"),
        ("missing.json", lambda p: None, "does not exist"),
        ("text.png", lambda p: p.write_text("not a picture"), "neither"),
    ],
)
def test_bad_settings_files(tmp_path: Path, name: str, write: Any, words: str) -> None:
    path = tmp_path / name
    write(path)
    with pytest.raises(ImageError) as exc:
        read_settings(path)
    message = assert_one_line(exc)
    assert name in message and words in message


def test_png_with_bad_settings_json(tmp_path: Path) -> None:
    info = PngImagePlugin.PngInfo()
    info.add_text("inceptionism", "{broken")
    Image.new("RGB", (4, 4)).save(tmp_path / "b.png", pnginfo=info)
    with pytest.raises(ImageError, match="not valid JSON"):
        read_settings(tmp_path / "b.png")


def test_save_without_settings_embeds_nothing(tmp_path: Path) -> None:
    out = save_image(Image.new("RGB", (4, 4)), tmp_path / "x.png")
    assert "inceptionism" not in Image.open(out).info
    assert image_io.SETTINGS_KEY == "inceptionism"
