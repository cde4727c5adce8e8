"""Image files in and out: read (:mod:`.read`), convert modes (:mod:`.convert`), 16-bit colour files
(:mod:`.highbit`), write atomically (:mod:`.write`), settings inside pictures (:mod:`.metadata`), file digests
(:mod:`.digest`).

Data flow: file -> :func:`load_image` -> :class:`LoadedImage` (RGB float ``(1, 3, H, W)`` in [0, 1], alpha,
mode, bit depth and ICC profile aside) -> the engine -> :func:`to_pil` (the input's size and mode) ->
:func:`save_image` (format from the extension, settings embedded, written atomically).
"""

from __future__ import annotations

from inceptionism.io.convert import HIGH_BIT_KEY, high_bit_pixels, to_pil
from inceptionism.io.digest import file_identity, file_sha256
from inceptionism.io.metadata import SETTINGS_KEY, read_settings
from inceptionism.io.read import DEFAULT_MAX_PIXELS, LoadedImage, load_image
from inceptionism.io.write import (
    SUPPORTED_EXTENSIONS,
    atomic_write,
    check_output_path,
    check_writable,
    save_image,
    write_json,
)

__all__ = [
    "DEFAULT_MAX_PIXELS",
    "HIGH_BIT_KEY",
    "SETTINGS_KEY",
    "SUPPORTED_EXTENSIONS",
    "LoadedImage",
    "atomic_write",
    "check_output_path",
    "check_writable",
    "file_identity",
    "file_sha256",
    "high_bit_pixels",
    "load_image",
    "read_settings",
    "save_image",
    "to_pil",
    "write_json",
]
