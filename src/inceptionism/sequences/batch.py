"""Batches: one settings set over a folder, a glob or a list of images.

``inceptionism dream shots/ -o dreams/`` dreams every image in natural order (``frame2`` before ``frame10``) with
the model loaded once, under one progress bar whose fill and ETA count pixels, not files. Outputs already there
are skipped, so a rerun continues an interrupted batch; a file that cannot be read is reported and skipped while
the rest go on; a summary (done / skipped / failed) ends the run.
"""

from __future__ import annotations

import glob
import json
import os
import re
import sys
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from PIL import Image
from tqdm import tqdm

from inceptionism.config import DreamConfig
from inceptionism.engine import Progress
from inceptionism.errors import ConfigError, ImageError, InceptionismError
from inceptionism.io import SUPPORTED_EXTENSIONS
from inceptionism.io.messages import reason, show
from inceptionism.io.read import pillow_limits
from inceptionism.progress import BAR_FORMAT, _Bar, format_eta
from inceptionism.transforms import auto_octaves, octave_sizes

#: Extensions a folder or glob is searched for (other files there are ignored).
IMAGE_EXTENSIONS = frozenset({".png", ".jpg", ".jpeg", ".webp", ".tif", ".tiff", ".bmp", ".gif"})
#: What a batch writes: PNG keeps the dream lossless and carries its settings.
OUTPUT_EXTENSION = ".png"

_DIGITS = re.compile(r"(\d+)")


def natural_key(path: Path) -> tuple[object, ...]:
    """Sort key for natural order: digit runs compare as numbers (``frame2`` < ``frame10``), text case-blind."""
    text = str(path)
    parts = tuple((0, int(p), "") if p.isdigit() else (1, 0, p.casefold()) for p in _DIGITS.split(text))
    return parts, text  # the text itself only breaks ties (frame02 and frame2; Frame and frame)


def is_batch(inputs: Sequence[str]) -> bool:
    """Whether the inputs are a batch: several, or one that is a folder or an unmatched glob pattern."""
    if len(inputs) != 1:
        return True
    path = Path(inputs[0])
    return path.is_dir() or (not path.exists() and glob.has_magic(inputs[0]))


def expand_inputs(inputs: Iterable[str]) -> list[Path]:
    """Image files named by ``inputs`` (files, folders, glob patterns), once each, in natural order.

    Folders and globs contribute the files with an image extension (:data:`IMAGE_EXTENSIONS`); a file named
    outright is kept whatever its extension. :class:`ImageError` if a name matches nothing or no image is found.
    """
    found: dict[Path, None] = {}
    for text in inputs:
        path = Path(text)
        if path.is_dir():
            matches = [p for p in path.iterdir() if p.suffix.lower() in IMAGE_EXTENSIONS and p.is_file()]
            if not matches:
                raise ImageError(f"folder {show(path)} has no images ({', '.join(sorted(IMAGE_EXTENSIONS))})")
        elif path.exists():
            matches = [path]
        elif glob.has_magic(text):
            hits = [Path(p) for p in glob.glob(text)]
            matches = [p for p in hits if p.suffix.lower() in IMAGE_EXTENSIONS and p.is_file()]
            if not matches:
                raise ImageError(f"no image matches {show(text)}; check the pattern (quote it for the shell)")
        else:
            raise ImageError(f"input image {show(path)} does not exist; check the path")
        for p in sorted(matches, key=natural_key):
            found.setdefault(p, None)
    return list(found)


def output_paths(sources: Sequence[Path], out_dir: Path) -> list[Path]:
    """``out_dir / <name>.png`` for each source; sources that would share a name keep their extension in it
    (``a.jpg`` → ``a.jpg.png``) so no output overwrites another."""
    stems = [s.stem for s in sources]
    return [
        out_dir / (f"{s.name}{OUTPUT_EXTENSION}" if stems.count(s.stem) > 1 else f"{s.stem}{OUTPUT_EXTENSION}")
        for s in sources
    ]


def dream_work(height: int, width: int, config: DreamConfig) -> int:
    """Pixel-steps a dream of a ``height × width`` image costs with ``config`` (the engine's own count)."""
    octaves = config.octaves or auto_octaves(height, width, config.octave_scale)
    sizes = octave_sizes(height, width, octaves, config.octave_scale, config.min_size)
    return config.steps * sum(h * w for h, w in sizes)


def image_size(path: Path) -> tuple[int, int] | None:
    """``(height, width)`` from the file's header without decoding it; None if it cannot be read."""
    with pillow_limits():
        try:
            with Image.open(path) as im:
                return im.height, im.width
        except (OSError, SyntaxError, ValueError, EOFError):
            return None


class WorkBar:
    """One progress bar over many dreams (a batch's images, an animation's frames), on stderr.

    Its fill and ETA count pixel-steps, so a large image weighs more than a small one. Call :meth:`begin` before
    each dream with its planned work, pass the bar as the dream's callback, and :meth:`end` after it; notes go
    through :meth:`note` so they do not break the bar's line.
    """

    def __init__(self, total_work: int, items: int, what: str, enabled: bool = True) -> None:
        self.total = max(total_work, 1)
        self.items = items
        self.what = what
        self._done = 0  # work of the finished items
        self._item_work = 0
        self._label = ""
        self._start = time.perf_counter()
        self._bar: _Bar | None = None
        if enabled:
            self._bar = _Bar("ETA …", total=self.total, file=sys.stderr, bar_format=BAR_FORMAT, dynamic_ncols=True)

    def __enter__(self) -> WorkBar:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def begin(self, index: int, label: str, work: int) -> None:
        """Item ``index`` (0-based) starts; ``work``: its pixel-steps."""
        self._item_work = work
        self._label = f"{self.what} {index + 1}/{self.items} {label}".rstrip()
        self._show(self._done)

    def __call__(self, p: Progress) -> None:
        share = p.work_done / p.work_total if p.work_total else p.done / max(p.total, 1)
        self._show(self._done + round(self._item_work * share))

    def end(self, counted: bool = True) -> None:
        """The current item is over; ``counted=False`` takes its work out of the total (skipped or failed)."""
        if counted:
            self._done += self._item_work
        else:
            self.total = max(self.total - self._item_work, 1)
        self._item_work = 0
        self._show(self._done)

    def note(self, message: str) -> None:
        """A line on stderr above the bar."""
        if self._bar is not None:
            self._bar.write(message, file=sys.stderr)
        else:
            print(message, file=sys.stderr)

    def eta(self, done: int) -> float | None:
        """Seconds left at ``done`` pixel-steps, from the rate so far; None before any work is done."""
        if done <= 0:
            return None
        return (time.perf_counter() - self._start) / done * max(self.total - done, 0)

    def _show(self, done: int) -> None:
        if self._bar is None:
            return
        self._bar.total = self.total
        self._bar.set_description_str(self._label, refresh=False)
        elapsed = time.perf_counter() - self._start
        self._bar.stats = f"{tqdm.format_interval(round(elapsed))} elapsed, {format_eta(self.eta(done))}"
        self._bar.update(min(done, self.total) - self._bar.n)

    def close(self) -> None:
        """End the bar's line; safe to call twice."""
        if self._bar is not None:
            self._bar.close()
            self._bar = None


@dataclass
class BatchResult:
    """What a batch did: outputs written, outputs already there, and ``(source, message)`` for each failure."""

    done: list[Path] = field(default_factory=list)
    skipped: list[Path] = field(default_factory=list)
    failed: list[tuple[Path, str]] = field(default_factory=list)

    def summary(self) -> str:
        """One line: ``batch: 8 done, 2 skipped (already there), 1 failed (bad.jpg)``."""
        failed = f" ({', '.join(src.name for src, _ in self.failed)})" if self.failed else ""
        return (
            f"batch: {len(self.done)} done, {len(self.skipped)} skipped (already there), "
            f"{len(self.failed)} failed{failed}"
        )


def check_batch_output(sources: Sequence[Path], outputs: Sequence[Path], out_dir: Path, overwrite: bool) -> None:
    """Refuse, before any work, an output folder that cannot be made or written, or outputs over the inputs."""
    if out_dir.exists() and not out_dir.is_dir():
        raise ImageError(f"output {show(out_dir)} is a file; with several inputs, -o names a folder")
    if not out_dir.exists() and out_dir.suffix.lower() in SUPPORTED_EXTENSIONS:
        raise ImageError(
            f"a folder, glob or several inputs make a batch: -o names the output folder, not an image file like "
            f"{show(out_dir.name)}"
        )
    if not out_dir.exists():
        if not out_dir.parent.is_dir():
            raise ImageError(f"cannot create the output folder {show(out_dir)}: {show(out_dir.parent)} does not exist")
        try:
            out_dir.mkdir()
        except OSError as exc:
            raise ImageError(f"cannot create the output folder {show(out_dir)}: {reason(exc)}") from exc
    if not os.access(out_dir, os.W_OK | os.X_OK):
        raise ImageError(f"output folder {show(out_dir)} is not writable; choose another -o or fix its permissions")
    if not overwrite:
        resolved = {s.resolve() for s in sources}
        clash = next((o for o in outputs if o.resolve() in resolved), None)
        if clash is not None:
            raise ImageError(f"refusing to overwrite the input {show(clash)}; choose another -o or pass --overwrite")


def run_batch(
    sources: Sequence[Path],
    out_dir: Path,
    config: DreamConfig,
    *,
    quiet: bool = False,
    overwrite: bool = False,
    on_written: Callable[[Path], None] | None = None,
) -> BatchResult:
    """Dream every image of ``sources`` into ``out_dir`` with ``config``; returns what was done.

    Outputs already in ``out_dir`` are skipped. A source that cannot be read (:class:`ImageError`) or whose dream
    fails with a per-image :class:`InceptionismError` is reported and skipped; a :class:`ConfigError` (bad
    settings, e.g. an unknown layer) stops the batch, since it would fail every image. ``on_written`` is called
    with each output written (the CLI prints it on stdout).
    """
    from inceptionism.api import dream, get_model
    from inceptionism.devices import pick_device
    from inceptionism.io import save_image

    outputs = output_paths(sources, out_dir)
    check_batch_output(sources, outputs, out_dir, overwrite)
    result = BatchResult()
    todo = []
    for src, out in zip(sources, outputs, strict=True):
        if out.exists():
            result.skipped.append(out)
        else:
            size = image_size(src)
            todo.append((src, out, dream_work(*size, config) if size else 0))
    if not todo:
        return result
    model = get_model(config.model, config.weights, pick_device(config.device))  # once; a WeightsError stops here
    with WorkBar(sum(w for _, _, w in todo), len(todo), "image", enabled=not quiet) as bar:
        for i, (src, out, work) in enumerate(todo):
            bar.begin(i, src.name, work)
            try:
                picture = dream(src, config, model=model, callback=bar)
                record = json.loads(picture.info["inceptionism"])
                save_image(picture, out, record, overwrite_input=None if overwrite else src)
            except ConfigError:
                raise
            except InceptionismError as exc:
                bar.end(counted=False)
                result.failed.append((src, str(exc)))
                bar.note(f"inceptionism: error: {exc} (skipped)")
                continue
            bar.end()
            result.done.append(out)
            if on_written is not None:
                on_written(out)
    return result


__all__ = [
    "IMAGE_EXTENSIONS",
    "BatchResult",
    "WorkBar",
    "dream_work",
    "expand_inputs",
    "is_batch",
    "natural_key",
    "output_paths",
    "run_batch",
]
