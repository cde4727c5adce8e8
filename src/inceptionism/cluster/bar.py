"""The driver's one progress bar for a cluster job: items done of all, throughput and time left, on stderr."""

from __future__ import annotations

import sys
import time

from tqdm import tqdm

from inceptionism.progress import BAR_FORMAT, _Bar, format_eta


class JobBar:
    """``frame 12/40 30% |███     | 1.6 frame/s, 00:17 left``: counts finished items (images or frames);
    throughput and ETA are from the items finished in this run (``done_before``, e.g. cached frames, excluded)."""

    def __init__(self, total: int, what: str, done_before: int = 0, enabled: bool = True) -> None:
        self.total = max(total, 1)
        self.what = what
        self.done = done_before
        self._before = done_before
        self._start = time.perf_counter()
        self._bar: _Bar | None = None
        if enabled:
            self._bar = _Bar("", total=self.total, file=sys.stderr, bar_format=BAR_FORMAT, dynamic_ncols=True)
            self._show()

    def __enter__(self) -> JobBar:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def rate(self) -> float | None:
        """Items per second in this run; None before the first."""
        new = self.done - self._before
        elapsed = time.perf_counter() - self._start
        return new / elapsed if new > 0 and elapsed > 0 else None

    def advance(self, count: int = 1) -> None:
        """``count`` more items finished."""
        self.done += count
        self._show()

    def drop(self, count: int = 1) -> None:
        """``count`` items will not be done after all (failed): out of the total."""
        self.total = max(self.total - count, 1)
        if self._bar is not None:
            self._bar.total = self.total
        self._show()

    def note(self, message: str) -> None:
        """A line on stderr above the bar."""
        if self._bar is not None:
            self._bar.write(message, file=sys.stderr)
        else:
            print(message, file=sys.stderr)

    def _show(self) -> None:
        if self._bar is None:
            return
        rate = self.rate()
        eta = None if rate is None else (self.total - self.done) / rate
        speed = "…" if rate is None else f"{rate:.2f} {self.what}/s"
        self._bar.set_description_str(f"{self.what} {min(self.done, self.total)}/{self.total}", refresh=False)
        self._bar.stats = f"{speed}, {tqdm.format_interval(round(time.perf_counter() - self._start))} elapsed, "
        self._bar.stats += format_eta(eta)
        self._bar.update(min(self.done, self.total) - self._bar.n)

    def close(self) -> None:
        """End the bar's line; safe to call twice."""
        if self._bar is not None:
            self._bar.close()
            self._bar = None


__all__ = ["JobBar"]
