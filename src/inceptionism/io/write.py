"""Writing: every file inceptionism writes (pictures, settings JSON) appears whole or not at all.

:func:`atomic_write` writes into a temporary file in the destination's folder and renames it over the
destination; :func:`save_image` picks the format from the extension, converts the picture to a mode the format
stores, embeds the settings and refuses to overwrite the input.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import stat
from collections.abc import Callable
from pathlib import Path
from typing import IO, Any

from PIL import Image

from inceptionism.errors import ImageError
from inceptionism.io import highbit
from inceptionism.io.convert import for_format, high_bit_pixels, icc_fits
from inceptionism.io.messages import reason, show
from inceptionism.io.metadata import SETTINGS_KEY, pillow_save_params, wrapped_settings

#: File extensions :func:`save_image` can write, and the Pillow format used for each.
SUPPORTED_EXTENSIONS: dict[str, str] = {
    ".png": "PNG",
    ".jpg": "JPEG",
    ".jpeg": "JPEG",
    ".webp": "WEBP",
    ".tif": "TIFF",
    ".tiff": "TIFF",
}

_JPEG_COMMENT_LIMIT = 65_000  # a JPEG COM segment holds at most 65533 bytes


def _temp_file(path: Path) -> tuple[Path, int]:
    """Create ``.<name>.<random>.part`` next to ``path`` (umask-respecting permissions)."""
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0)
    while True:
        temp = path.with_name(f".{path.name[:200]}.{secrets.token_hex(4)}.part")
        try:
            return temp, os.open(temp, flags, 0o666)
        except FileExistsError:
            continue


def _sync_folder(folder: Path) -> None:
    """Make a rename in ``folder`` durable (best effort; not every system can open a folder)."""
    if hasattr(os, "O_DIRECTORY"):
        with contextlib.suppress(OSError):
            dir_fd = os.open(folder, os.O_RDONLY | os.O_DIRECTORY)
            try:
                os.fsync(dir_fd)
            finally:
                os.close(dir_fd)


def atomic_write(path: str | os.PathLike[str], write: Callable[[IO[bytes]], object]) -> Path:
    """Call ``write(handle)`` on a temp file in ``path``'s folder, fsync, then ``os.replace`` it onto ``path``.

    On any exception (KeyboardInterrupt too) the temp file is removed and ``path`` is left as it was; the
    exception propagates. An existing file's permissions are kept. Returns ``path``.
    """
    path = Path(path)
    temp, fd = _temp_file(path)
    try:
        with os.fdopen(fd, "wb") as handle:
            write(handle)
            handle.flush()
            os.fsync(handle.fileno())
        with contextlib.suppress(OSError):  # keep an existing output's permissions
            os.chmod(temp, stat.S_IMODE(path.stat().st_mode))
        os.replace(temp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            temp.unlink()
        raise
    _sync_folder(path.parent)
    return path


def write_json(path: str | os.PathLike[str], data: Any) -> Path:
    """Write ``data`` as indented, key-sorted JSON (UTF-8, trailing newline) atomically; :class:`ImageError` if
    the file cannot be written."""
    path = Path(path)
    text = json.dumps(data, indent=2, sort_keys=True, ensure_ascii=False, allow_nan=False) + "\n"
    try:
        return atomic_write(path, lambda handle: handle.write(text.encode("utf-8")))
    except OSError as exc:
        raise ImageError(f"cannot write {show(path)}: {reason(exc)}") from exc


def format_for(path: Path) -> str:
    """The Pillow format name for ``path``'s extension; :class:`ImageError` for an unsupported one."""
    fmt = SUPPORTED_EXTENSIONS.get(path.suffix.lower())
    if fmt is None:
        wanted = ", ".join(sorted(SUPPORTED_EXTENSIONS))
        got = f"extension '{path.suffix}'" if path.suffix else "no extension"
        raise ImageError(f"cannot save {show(path)}: {got} is not supported; use one of {wanted}")
    return fmt


def _check_folder(path: Path) -> None:
    folder = path.parent
    shown = show(folder)
    if not folder.exists():
        raise ImageError(f"output folder {shown} does not exist; create it or choose another -o")
    if not folder.is_dir():
        raise ImageError(f"output folder {shown} is not a folder; choose another -o")
    if not os.access(folder, os.W_OK | os.X_OK):
        raise ImageError(f"output folder {shown} is not writable; choose another -o or fix its permissions")
    if path.is_dir():
        raise ImageError(f"output {show(path)} is a folder; give a file name, e.g. {show(path / 'dream.png')}")


def _same_file(a: Path, b: Path) -> bool:
    try:
        return os.path.samefile(a, b)
    except OSError:  # one of them does not exist (yet)
        return a.resolve() == b.resolve()


def check_writable(path: Path, input_path: Path | None = None) -> None:
    """Check that any file (e.g. a settings JSON) can be written at ``path`` and is not the input."""
    path = Path(path)
    _check_folder(path)
    if input_path is not None and _same_file(Path(input_path), path):
        raise ImageError(f"refusing to overwrite the input {show(input_path)}; choose another file")


def check_output_path(input_path: Path | None, output_path: Path, overwrite: bool) -> None:
    """Check, before a long run, that ``output_path`` can be written (raises :class:`ImageError` if not).

    Refused: an unsupported extension; an output that is a folder; a missing or read-only output folder; the
    input file itself (same file after resolving links), unless ``overwrite``.
    """
    output_path = Path(output_path)
    format_for(output_path)
    _check_folder(output_path)
    if input_path is not None and not overwrite and _same_file(Path(input_path), output_path):
        raise ImageError(f"refusing to overwrite the input {show(input_path)}; pass --overwrite or choose another -o")


def _high_bit_writer(
    image: Image.Image, fmt: str, settings_json: str | None, icc: bytes | None
) -> Callable[[IO[bytes]], None] | None:
    """A writer for the 16-bit pixels ``image`` carries, when ``fmt`` stores 16-bit colour; else None."""
    pixels = high_bit_pixels(image)
    if pixels is None or fmt not in {"PNG", "TIFF"}:
        return None
    icc = icc if icc is not None and icc_fits(icc, "RGB") else None
    if fmt == "PNG":
        text = {} if settings_json is None else {SETTINGS_KEY: settings_json}
        return lambda handle: highbit.write_png16(handle, pixels, text, icc)
    description = wrapped_settings(settings_json)
    return lambda handle: highbit.write_tiff16(handle, pixels, description, icc)


def _pillow_writer(
    image: Image.Image, fmt: str, settings_json: str | None, icc: bytes | None, quality: int
) -> Callable[[IO[bytes]], None]:
    """A writer of ``image`` through Pillow, converted to a mode ``fmt`` stores."""
    out = for_format(image, fmt)
    params = pillow_save_params(fmt, settings_json, icc if icc_fits(icc, out.mode) else None, quality)
    return lambda handle: out.save(handle, format=fmt, **params)


def save_image(
    image: Image.Image,
    path: str | Path,
    settings: dict[str, Any] | None = None,
    *,
    overwrite_input: Path | None = None,
    jpeg_quality: int = 95,
) -> Path:
    """Write ``image`` to ``path`` atomically, in the format its extension names; returns the path written.

    The image is converted to what the format can store (:mod:`inceptionism.io.convert`). A result of a 16-bit
    colour source (:data:`~inceptionism.io.convert.HIGH_BIT_KEY`) is written at 16 bits to ``.png`` and ``.tif``.
    ``settings`` (JSON-serialisable) is embedded: PNG text chunk ``inceptionism``; JPEG comment and TIFF
    description ``{"inceptionism": ...}``; WebP XMP. ``overwrite_input``: the input file to protect; writing
    over it raises :class:`ImageError` (pass ``None`` when the user allowed ``--overwrite``). ``jpeg_quality``
    also sets WebP's quality. No partial file is ever left: the old output stays untouched until the new one is
    complete.
    """
    path = Path(path)
    fmt = format_for(path)
    check_output_path(overwrite_input, path, overwrite=overwrite_input is None)
    if not 1 <= jpeg_quality <= 100:
        raise ValueError(f"jpeg_quality must be in 1..100, got {jpeg_quality}")
    settings_json = None if settings is None else json.dumps(settings, ensure_ascii=True, allow_nan=False)
    if fmt == "JPEG" and settings_json is not None and len(settings_json) > _JPEG_COMMENT_LIMIT:
        raise ImageError(f"settings too large to embed in the JPEG comment of {show(path)}; save as .png instead")
    icc = image.info.get("icc_profile")
    icc = icc if isinstance(icc, bytes) and icc else None
    write = _high_bit_writer(image, fmt, settings_json, icc) or _pillow_writer(
        image, fmt, settings_json, icc, jpeg_quality
    )
    try:
        atomic_write(path, write)
    except (OSError, ValueError) as exc:
        raise ImageError(f"cannot write {show(path)}: {reason(exc)}") from exc
    return path
