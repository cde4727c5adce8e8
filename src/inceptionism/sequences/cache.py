"""Finished frames of a sequence (zoom, video), kept beside the output so an interrupted run continues.

The cache is a hidden folder next to the output, ``<out dir>/.<out name>.frames/``: one lossless PNG per finished
frame (``000000.png``, ``000001.png``, …) and ``manifest.json``, which holds the run's key (its settings, the
input's name, size and SHA-256, the schedule) and the tool's version. A rerun with the same key continues from the
frames there; a different key starts over and says so in one note line.

Resuming must give the same output as an uninterrupted run, bit for bit. So whatever feeds back into the next
frame is always the uint8 frame as saved (PNG is lossless: decoded back it is the same array), never the float
dream in memory; every frame is written whole (temp file + ``os.replace``) or not at all.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import re
import shutil
import sys
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from inceptionism import __version__
from inceptionism.errors import ImageError
from inceptionism.io import atomic_write, file_sha256, write_json
from inceptionism.io.messages import reason, show

MANIFEST = "manifest.json"
_FRAME = re.compile(r"^(\d{6,})\.png$")
# zlib level 1 and Huffman coding only (no string matching): frames are written once and read back at most once,
# so time matters more than size here; on dreamed frames Huffman-only is faster and smaller (docs/performance.md).
_PNG_LEVEL = 1
_PNG_STRATEGY: int | None = 2  # zlib's Z_HUFFMAN_ONLY; None: zlib's default strategy

Note = Callable[[str], None]


def print_note(message: str) -> None:
    """Print a note line on stderr, as the CLI does."""
    print(f"inceptionism: note: {message}", file=sys.stderr)


def cache_folder(output: str | os.PathLike[str]) -> Path:
    """Where the frames of a run writing ``output`` are kept: ``<out dir>/.<out name>.frames``."""
    out = Path(output)
    name = out.name or out.resolve().name  # "frames/" names the folder "frames"
    return out.parent / f".{name}.frames"


def source_identity(path: str | os.PathLike[str]) -> dict[str, Any]:
    """``{"name", "size", "sha256"}`` of an input file: what a cache key records about it (no folder)."""
    p = Path(path)
    try:
        return {"name": p.name, "size": p.stat().st_size, "sha256": file_sha256(p)}
    except OSError as exc:
        raise ImageError(f"cannot read {show(p)}: {reason(exc)}") from exc


def _canonical(value: Any) -> Any:
    """``value`` as JSON gives it back (tuples become lists, keys strings), so keys compare after a round trip."""
    return json.loads(json.dumps(value, sort_keys=True, allow_nan=False))


class FrameCache:
    """Finished frames of one run, by index (0-based).

    >>> cache = FrameCache(cache_folder("zoom.mp4"), {"settings": ..., "input": source_identity("in.png")})
    >>> if 3 not in cache: cache.save(3, frame)  # frame: (H, W, 3) uint8
    >>> cache.load(3)  # the same array
    >>> cache.remove()  # once the final output is written

    ``key`` must be JSON-serialisable. ``note`` receives the one line said when a different key starts over
    (default: printed on stderr).
    """

    def __init__(self, folder: str | os.PathLike[str], key: Mapping[str, Any], *, note: Note = print_note) -> None:
        self.folder = Path(folder)
        self.key = _canonical(dict(key))
        self._manifest = {"key": self.key, "version": __version__}
        try:
            self._open(note)
        except OSError as exc:
            raise ImageError(f"cannot use the frame cache {show(self.folder)}: {reason(exc)}") from exc

    def _open(self, note: Note) -> None:
        manifest = self.folder / MANIFEST
        if self.folder.is_dir():
            self._drop_partial_files()
            old = self._read_manifest(manifest)
            if old == self._manifest:
                return
            if old is not None or self.done():
                note(f"settings or input differ from the unfinished run cached in {show(self.folder)}; starting over")
            self._clear()
        self.folder.mkdir(parents=True, exist_ok=True)
        write_json(manifest, self._manifest)

    @staticmethod
    def _read_manifest(path: Path) -> Any:
        try:
            return json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError):  # missing or unreadable: treated as a different run
            return None

    def _drop_partial_files(self) -> None:
        """Temp files of writes a kill cut short (atomic_write removes them itself on an exception)."""
        for temp in self.folder.glob(".*.part"):
            with contextlib.suppress(OSError):
                temp.unlink()

    def _clear(self) -> None:
        for item in self.folder.iterdir():
            if item.is_dir() and not item.is_symlink():
                shutil.rmtree(item)
            else:
                item.unlink()

    def path(self, index: int) -> Path:
        """The PNG file of frame ``index``."""
        if index < 0:
            raise ValueError(f"frame index must be 0 or more, got {index}")
        return self.folder / f"{index:06d}.png"

    def __contains__(self, index: object) -> bool:
        return isinstance(index, int) and index >= 0 and self.path(index).is_file()

    def done(self) -> list[int]:
        """Indices of the finished frames, ascending."""
        found = (_FRAME.match(p.name) for p in self.folder.iterdir()) if self.folder.is_dir() else ()
        return sorted(int(m.group(1)) for m in found if m)

    def load(self, index: int) -> np.ndarray:
        """Frame ``index`` as saved: (H, W, 3) uint8."""
        path = self.path(index)
        try:
            with Image.open(path) as im:
                im.load()
                if im.mode != "RGB":
                    raise ValueError(f"mode {im.mode}, expected RGB")
                return np.asarray(im).copy()
        except (OSError, ValueError) as exc:
            raise ImageError(
                f"cached frame {show(path)} cannot be read ({reason(exc)}); delete {show(self.folder)} and run again"
            ) from exc

    def save(self, index: int, frame: np.ndarray) -> None:
        """Write frame ``index`` ((H, W, 3) uint8) atomically: after a kill it is there whole or not at all."""
        if frame.dtype != np.uint8 or frame.ndim != 3 or frame.shape[2] != 3:
            raise ValueError(f"expected an (H, W, 3) uint8 frame, got {frame.dtype} {frame.shape}")
        buffer = io.BytesIO()
        options = {} if _PNG_STRATEGY is None else {"compress_type": _PNG_STRATEGY}
        image = Image.fromarray(np.ascontiguousarray(frame), "RGB")
        image.save(buffer, format="PNG", compress_level=_PNG_LEVEL, **options)
        data = buffer.getvalue()
        try:
            atomic_write(self.path(index), lambda handle: handle.write(data))
        except OSError as exc:
            raise ImageError(f"cannot write the frame cache {show(self.folder)}: {reason(exc)}") from exc

    def remove(self) -> None:
        """Delete the cache folder (after the final output is written)."""
        shutil.rmtree(self.folder, ignore_errors=True)


__all__ = ["MANIFEST", "FrameCache", "cache_folder", "print_note", "source_identity"]
