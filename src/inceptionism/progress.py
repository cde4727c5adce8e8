"""A progress bar on stderr (octave, step, score, ETA), fed by the engine's callback."""

from __future__ import annotations

import sys
from types import TracebackType

from tqdm import tqdm

from inceptionism.engine import Progress


class ProgressBar:
    """Callable context manager: ``with ProgressBar() as bar: dream(..., callback=bar)``."""

    def __init__(self, enabled: bool = True) -> None:
        self.enabled = enabled
        self._bar: tqdm | None = None

    def __enter__(self) -> ProgressBar:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if self._bar is not None:
            self._bar.close()

    def __call__(self, p: Progress) -> None:
        if not self.enabled:
            return
        if self._bar is None:
            self._bar = tqdm(total=p.total, file=sys.stderr, unit="step", dynamic_ncols=True, leave=True)
        h, w = p.size
        self._bar.set_description(f"octave {p.octave}/{p.octaves} {w}×{h} step {p.step}/{p.steps}", refresh=False)
        self._bar.set_postfix(score=f"{p.score:.3g}", tile=p.tile_size, refresh=False)
        self._bar.update(1)
