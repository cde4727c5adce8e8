"""A progress bar on stderr (octave, size, step, score, ETA), fed by the engine's callback.

Steps are not equal: a step costs about its octave's pixels, so the last octave of a large image can take most of
the run. The bar's fill and its ETA count work in pixel-steps (:attr:`Progress.work_done`), and the ETA prices the
work left at the time per pixel-step measured in the current octave, which includes its tiling overheads.
"""

from __future__ import annotations

import sys
from types import TracebackType
from typing import Any

from tqdm import tqdm

from inceptionism.engine import Progress

BAR_FORMAT = "{desc} {percentage:3.0f}%|{bar}| {stats}"


def work(p: Progress) -> tuple[int, int]:
    """(done, total) in pixel-steps; in steps where the producer did not count pixels (``work_total`` 0)."""
    if p.work_total > 0:
        return p.work_done, p.work_total
    return p.done, p.total


class Eta:
    """Seconds left in a run, from its :class:`Progress` values in order.

    The work left (pixel-steps) times the time per pixel-step measured since the current octave began. The first
    octave's rate includes the run's start-up, so early estimates err long; each octave corrects them.
    """

    def __init__(self) -> None:
        self._octave = 0
        self._last = (0.0, 0)  # (elapsed, work done) at the last update
        self._start = (0.0, 0)  # the same at the end of the previous octave

    def update(self, p: Progress) -> float | None:
        """The estimate after ``p``; None while nothing has been measured."""
        done, total = work(p)
        if p.done == 1:  # a new run: nothing measured yet
            self._octave, self._last = 0, (0.0, 0)
        if p.octave != self._octave:
            self._octave, self._start = p.octave, self._last
        self._last = (p.elapsed, done)
        if done >= total:
            return 0.0
        seconds, measured = p.elapsed - self._start[0], done - self._start[1]
        if measured <= 0 or seconds < 0:
            return None
        return seconds / measured * (total - done)


def format_eta(seconds: float | None) -> str:
    """``"00:40 left"``; ``"ETA …"`` before the first estimate."""
    if seconds is None:
        return "ETA …"
    return f"{tqdm.format_interval(round(seconds))} left"


class _Bar(tqdm):  # type: ignore[misc]
    """tqdm with a ``{stats}`` field for its format: the run's own figures, without tqdm's ``", "`` postfix."""

    def __init__(self, stats: str, **kwargs: Any) -> None:
        self.stats = stats  # set before tqdm draws the bar for the first time
        super().__init__(**kwargs)

    @property
    def format_dict(self) -> dict[str, Any]:
        return {**super().format_dict, "stats": self.stats}


class ProgressBar:
    """Callable context manager: ``with ProgressBar() as bar: dream(..., callback=bar)``.

    Writes to stderr only (stdout is the output's path, for scripts); ``enabled=False`` writes nothing.
    """

    def __init__(self, enabled: bool = True) -> None:
        self.enabled = enabled
        self._bar: _Bar | None = None
        self._eta = Eta()

    def __enter__(self) -> ProgressBar:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def close(self) -> None:
        """End the bar's line; safe to call twice."""
        if self._bar is not None:
            self._bar.close()
            self._bar = None

    def __call__(self, p: Progress) -> None:
        if not self.enabled:
            return
        eta = self._eta.update(p)
        done, total = work(p)
        h, w = p.size
        where = f"octave {p.octave}/{p.octaves} {w}×{h} step {p.step}/{p.steps}"
        stats = f"score {p.score:.3g} · tile {p.tile_size} · {tqdm.format_interval(round(p.elapsed))} elapsed, "
        stats += format_eta(eta)
        if self._bar is not None and p.done == 1:  # the bar reused for a new run: a new line
            self.close()
        if self._bar is None:
            self._bar = _Bar(
                stats, total=total, desc=where, file=sys.stderr, bar_format=BAR_FORMAT, dynamic_ncols=True, leave=True
            )
        self._bar.set_description_str(where, refresh=False)
        self._bar.stats = stats
        self._bar.update(done - self._bar.n)
