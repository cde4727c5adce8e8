"""Sample pixels and checks shared by the tests of inceptionism.io."""

from __future__ import annotations

import hashlib
import struct
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from inceptionism.errors import ImageError
from inceptionism.io import LoadedImage, load_image, save_image, to_pil

W, H = 24, 16
RNG = np.random.default_rng(1234)


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
