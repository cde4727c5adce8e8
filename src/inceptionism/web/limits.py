"""What one visitor may ask of the studio: upload size, pixel count, file types and work per job.

Every check raises :class:`~inceptionism.errors.ImageError` or :class:`~inceptionism.errors.ConfigError` with a
message the page shows as it is. Files are checked from their header only, before any pixel is decoded, so a
decompression bomb is refused at the cost of reading a few bytes.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from PIL import Image, UnidentifiedImageError

from inceptionism.config import DreamConfig
from inceptionism.errors import ConfigError, ImageError
from inceptionism.io.read import pillow_limits
from inceptionism.sequences.batch import dream_work

# Pillow format names the studio accepts, and how the page names them.
SUPPORTED_FORMATS = {"PNG": "PNG", "JPEG": "JPEG", "WEBP": "WebP", "TIFF": "TIFF", "BMP": "BMP", "GIF": "GIF"}
MB = 1_000_000


@dataclass(frozen=True)
class Limits:
    """Per-job limits of a studio; the defaults suit one CPU or one GPU shared by a few visitors.

    ``max_upload_bytes``: an uploaded file's size. ``max_pixels``: an image's width × height, from its header.
    ``max_work``: a job's pixel-steps (steps × pixels, summed over its octaves and, for a zoom, its frames).
    ``max_frames``: a zoom animation's frames.
    """

    max_upload_bytes: int = 20 * MB
    max_pixels: int = 4_000_000
    max_work: int = 2_000_000_000
    max_frames: int = 240

    def validate(self) -> Limits:
        for name in ("max_upload_bytes", "max_pixels", "max_work", "max_frames"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ConfigError(f"--{name.replace('_', '-')} must be a whole number, at least 1; got {value!r}")
        return self


def inside(path: str | os.PathLike[str], folder: str | os.PathLike[str]) -> bool:
    """Whether ``path`` resolves (links followed) to somewhere under ``folder``."""
    try:
        return Path(path).resolve().is_relative_to(Path(folder).resolve())
    except (OSError, RuntimeError):
        return False


def check_upload(path: Path, limits: Limits, what: str = "the upload") -> tuple[int, int]:
    """Check an uploaded file's size, type and pixel count from its header; returns its ``(height, width)``."""
    try:
        size = path.stat().st_size
    except OSError:
        raise ImageError(f"{what} could not be read; upload it again") from None
    if size > limits.max_upload_bytes:
        raise ImageError(
            f"{what} is {size / MB:.1f} MB, more than the limit of {limits.max_upload_bytes / MB:.1f} MB; "
            "upload a smaller file"
        )
    if size == 0:
        raise ImageError(f"{what} is empty; upload an image file")
    kinds = ", ".join(SUPPORTED_FORMATS.values())
    with pillow_limits():
        try:
            with Image.open(path) as im:
                fmt, width, height = im.format, im.width, im.height
        except (UnidentifiedImageError, OSError, SyntaxError, ValueError, EOFError):
            raise ImageError(f"{what} is not an image the studio can read; upload a {kinds} file") from None
    if fmt not in SUPPORTED_FORMATS:
        raise ImageError(f"{what} is a {fmt} file, which the studio does not take; upload a {kinds} file")
    if width * height > limits.max_pixels:
        raise ImageError(
            f"{what} is {width}×{height} = {width * height:,} pixels, more than the limit of "
            f"{limits.max_pixels:,}; shrink it first"
        )
    return height, width


def check_work(height: int, width: int, config: DreamConfig, limits: Limits, frames: int = 1) -> int:
    """A job's pixel-steps (``frames`` dreams of ``height × width`` with ``config``), refused over the limit."""
    if frames > limits.max_frames:
        raise ConfigError(f"{frames} frames is more than the limit of {limits.max_frames}; ask for fewer frames")
    work = dream_work(height, width, config) * frames
    if work > limits.max_work:
        raise ConfigError(
            f"this job is {work / 1e6:,.0f} million pixel-steps (steps × pixels over its octaves"
            f"{' and frames' if frames > 1 else ''}), more than the limit of {limits.max_work / 1e6:,.0f} million; "
            "lower the steps or octaves, or use a smaller image"
        )
    return work


__all__ = ["SUPPORTED_FORMATS", "Limits", "check_upload", "check_work", "inside"]
