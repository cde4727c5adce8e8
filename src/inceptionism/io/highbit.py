"""16-bit colour files: RGB and RGBA PNG (with ``pypng``) and TIFF (with ``tifffile``).

Pillow decodes 16-bit colour PNG and TIFF files to 8 bits and cannot write them, so these files take this way
in and out. Arrays are ``uint16`` ``HxWx3`` (RGB) or ``HxWx4`` (RGBA, straight alpha). 16-bit TIFFs compressed
with a codec ``tifffile`` only has through ``imagecodecs`` (LZW, JPEG, ...) are left to Pillow, at 8 bits.
"""

from __future__ import annotations

import io
import struct
import zlib
from pathlib import Path
from typing import IO

import numpy as np
import png
import tifffile

_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
_PNG_RGB, _PNG_RGBA = 2, 6  # IHDR colour types


def png_is_high_bit_colour(path: Path) -> bool:
    """Whether ``path`` is a PNG with 16 bits per sample in RGB or RGBA (from its IHDR chunk)."""
    with path.open("rb") as handle:
        head = handle.read(29)
    if len(head) < 29 or not head.startswith(_PNG_SIGNATURE) or head[12:16] != b"IHDR":
        return False
    bit_depth, colour_type = head[24], head[25]
    return bit_depth == 16 and colour_type in (_PNG_RGB, _PNG_RGBA)


def tiff_is_high_bit_colour(tags: dict[int, object]) -> bool:
    """Whether TIFF tags (Pillow's ``tag_v2``) describe 16-bit unsigned RGB or RGBA samples."""
    bits, samples, photometric = tags.get(258), tags.get(277), tags.get(262)
    sample_format = tags.get(339, 1)
    if isinstance(bits, tuple):
        bits = bits[0] if len(set(bits)) == 1 else None
    if isinstance(sample_format, tuple):
        sample_format = sample_format[0]
    return bits == 16 and samples in (3, 4) and photometric == 2 and sample_format == 1


def read_png16(path: Path) -> np.ndarray:
    """Pixels of a 16-bit RGB/RGBA PNG as ``uint16`` ``HxWxC``. Colour-key transparency (``tRNS``) is ignored."""
    width, height, rows, info = png.Reader(filename=str(path)).read()
    channels = int(info["planes"])
    pixels = np.empty((height, width * channels), np.uint16)
    for index, row in enumerate(rows):
        pixels[index] = row
    return pixels.reshape(height, width, channels)


def read_tiff16(path: Path) -> tuple[np.ndarray, int] | None:
    """Pixels of the first page of a 16-bit RGB/RGBA TIFF as stored (``uint16`` ``HxWxC``) and its
    Orientation tag (1 if absent); None if ``tifffile`` lacks the page's codec (the caller then reads it with
    Pillow, at 8 bits)."""
    with tifffile.TiffFile(path) as tif:
        page = tif.pages[0]
        try:
            data = page.asarray()  # type: ignore[union-attr]
        except (ValueError, NotImplementedError):  # "requires the 'imagecodecs' package"
            return None
        separate = page.planarconfig == 2  # type: ignore[union-attr]
        tag = page.tags.get(274)  # type: ignore[union-attr]
    orientation = int(tag.value) if tag is not None else 1
    pixels = np.moveaxis(data, 0, -1) if separate else data
    return np.ascontiguousarray(pixels, dtype=np.uint16), orientation


def _png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)


def write_png16(handle: IO[bytes], pixels: np.ndarray, text: dict[str, str], icc_profile: bytes | None) -> None:
    """Write ``uint16`` ``HxWx3``/``HxWx4`` pixels as a 16-bit PNG with ``text`` as tEXt chunks (Latin-1) and
    ``icc_profile`` as an iCCP chunk, both before the pixel data."""
    height, width, channels = pixels.shape
    writer = png.Writer(width, height, greyscale=False, alpha=channels == 4, bitdepth=16, compression=6)
    extra = []
    if icc_profile:
        extra.append((b"iCCP", b"ICC profile\x00\x00" + zlib.compress(icc_profile)))
    for key, value in text.items():
        extra.append((b"tEXt", key.encode("latin-1") + b"\x00" + value.encode("latin-1")))
    chunks = list(png.Reader(bytes=_encode(writer, pixels)).chunks())
    handle.write(_PNG_SIGNATURE)
    for kind, data in chunks[:1] + extra + chunks[1:]:  # IHDR first, then ours, then the pixels
        handle.write(_png_chunk(kind, data))


def _encode(writer: png.Writer, pixels: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    writer.write_array(buffer, pixels.reshape(-1))
    return buffer.getvalue()


def write_tiff16(handle: IO[bytes], pixels: np.ndarray, description: str | None, icc_profile: bytes | None) -> None:
    """Write ``uint16`` ``HxWx3``/``HxWx4`` pixels as a deflate-compressed 16-bit TIFF; ``description`` goes in
    the ImageDescription tag, ``icc_profile`` in the InterColorProfile tag."""
    buffer = io.BytesIO()  # tifffile wants a named file or a buffer; the handle of a temp file from os.open has no name
    tifffile.imwrite(
        buffer,
        pixels,
        photometric="rgb",
        extrasamples=("unassalpha",) if pixels.shape[2] == 4 else None,
        compression="zlib",
        description=description,
        metadata=None,  # no tifffile JSON of its own in the description
        iccprofile=icc_profile or None,
    )
    handle.write(buffer.getbuffer())
