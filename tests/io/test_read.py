"""Tests for inceptionism.io.read: files, arrays, tensors and PIL images in; bad inputs; the pixel limit."""

from __future__ import annotations

import struct
import time
import warnings
import zlib
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image, ImageFile
from samples import RNG, H, W, assert_one_line, png_chunk, u8, u16

from inceptionism.errors import ImageError
from inceptionism.io import DEFAULT_MAX_PIXELS, load_image, save_image, to_pil

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
