"""Jobs of the studio, independent of Gradio: a job runs in its own thread, reports progress and previews
through a queue, holds a device slot while it computes, and stops at its next step once cancelled.

Gradio's queue already orders the visitors and shows each one's position; the slots here make the limit hold
also while a cancelled job is finishing its last step, and the board lets Stop and a closed tab reach the job
of their session.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from PIL import Image

from inceptionism.engine import Progress
from inceptionism.errors import InceptionismError

log = logging.getLogger("inceptionism.web")


class Cancelled(InceptionismError):
    """Raised inside a job's work once it is cancelled (Stop, a closed tab, a server going down)."""


@dataclass(frozen=True)
class Update:
    """One message from a running job.

    ``kind``: ``"progress"`` (``fraction`` in [0, 1], ``text``), ``"preview"`` (``image``, RGB),
    ``"done"`` (``result``: the file written), ``"error"`` (``text``: one line for the page).
    """

    kind: str
    fraction: float = 0.0
    text: str = ""
    image: Image.Image | None = None
    result: Path | None = None


class Reporter:
    """Handed to a job's work: it reports through this, and :meth:`check` raises :class:`Cancelled` once the job
    is cancelled, so the work stops at its next report."""

    def __init__(self, updates: queue.Queue[Update], cancelled: threading.Event) -> None:
        self._updates = updates
        self._cancelled = cancelled

    def check(self) -> None:
        if self._cancelled.is_set():
            raise Cancelled("stopped")

    def progress(self, fraction: float, text: str) -> None:
        self.check()
        self._updates.put(Update("progress", fraction=min(max(fraction, 0.0), 1.0), text=text))

    def preview(self, image: Image.Image) -> None:
        self.check()
        self._updates.put(Update("preview", image=image))

    def dream_callback(self, base: float = 0.0, share: float = 1.0, label: str = "") -> Callable[[Progress], None]:
        """A dream callback that reports its progress as ``base + share × (its fraction)`` and its octave-end
        images as previews."""

        def callback(p: Progress) -> None:
            done = p.work_done / p.work_total if p.work_total else p.done / max(p.total, 1)
            h, w = p.size
            where = f"{label}octave {p.octave}/{p.octaves} ({w}×{h}), step {p.step}/{p.steps}"
            self.progress(base + share * done, where)
            if p.image is not None:
                self.preview(preview_image(p.image))

        return callback


def preview_image(rgb: Any) -> Image.Image:
    """A PIL RGB image from a ``(1, 3, h, w)`` tensor in [0, 1]."""
    array = (rgb[0].clamp(0, 1).permute(1, 2, 0) * 255).round().byte().numpy()
    return Image.fromarray(array, "RGB")


Work = Callable[[Reporter], Path]


class DeviceSlots:
    """At most ``count`` jobs compute at once (one per device by default)."""

    def __init__(self, count: int = 1) -> None:
        if count < 1:
            raise ValueError(f"need at least one slot, got {count}")
        self.count = count
        self._semaphore = threading.BoundedSemaphore(count)
        self._lock = threading.Lock()
        self.busy = 0  # slots in use now, for tests and logs
        self.peak = 0  # the most ever in use at once

    def __enter__(self) -> DeviceSlots:
        self._semaphore.acquire()
        with self._lock:
            self.busy += 1
            self.peak = max(self.peak, self.busy)
        return self

    def __exit__(self, *exc: object) -> None:
        with self._lock:
            self.busy -= 1
        self._semaphore.release()


class Job:
    """``work(reporter) -> Path`` run in a thread once a slot is free; read its :meth:`updates` to the end."""

    def __init__(self, work: Work, slots: DeviceSlots, name: str = "job") -> None:
        self.name = name
        self._work = work
        self._slots = slots
        self._updates: queue.Queue[Update] = queue.Queue()
        self._cancelled = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"inceptionism-{name}", daemon=True)
        self._end = Update("error", text="the job did not finish")

    def start(self) -> Job:
        self._thread.start()
        return self

    @property
    def finished(self) -> bool:
        """Started and ended (its last update is queued)."""
        return self._thread.ident is not None and not self._thread.is_alive()

    @property
    def cancelled(self) -> bool:
        return self._cancelled.is_set()

    def cancel(self) -> None:
        """Ask the job to stop; its work raises :class:`Cancelled` at its next report."""
        self._cancelled.set()

    def wait(self, timeout: float | None = None) -> bool:
        """Wait for the thread to end; whether it has."""
        self._thread.join(timeout)
        return not self._thread.is_alive()

    def _run(self) -> None:
        reporter = Reporter(self._updates, self._cancelled)
        try:
            with self._slots:
                reporter.check()  # cancelled while waiting for a slot: no work at all
                result = self._work(reporter)
            self._end = Update("done", fraction=1.0, text="done", result=result)
        except Cancelled:
            self._end = Update("error", text="stopped")
        except InceptionismError as exc:
            self._end = Update("error", text=one_line(str(exc)))
        except Exception:  # a bug, not the visitor's fault: logged in full on the server, one line on the page
            log.exception("job %s failed", self.name)
            self._end = Update("error", text="the job failed on the server (the server log has the details)")
        finally:
            self._updates.put(self._end)

    def updates(self, poll: float = 0.5) -> Iterator[Update]:
        """The job's updates in order, ending with ``"done"`` or ``"error"``."""
        while True:
            try:
                update = self._updates.get(timeout=poll)
            except queue.Empty:
                continue
            yield update
            if update.kind in ("done", "error"):
                return


def one_line(message: str) -> str:
    """The first line of a message, so nothing multi-line (let alone a traceback) reaches the page."""
    first = message.strip().splitlines()[0] if message.strip() else "failed"
    return first[:500]


class JobBoard:
    """The running jobs of each session (a browser tab), so Stop and a closed tab can cancel them."""

    def __init__(self) -> None:
        self._jobs: dict[str, set[Job]] = {}
        self._lock = threading.Lock()

    def add(self, session: str, job: Job) -> None:
        with self._lock:
            # Jobs whose page stopped listening before removing them (a cancelled event) end here.
            for key in list(self._jobs):
                self._jobs[key] = {j for j in self._jobs[key] if not j.finished}
                if not self._jobs[key]:
                    del self._jobs[key]
            self._jobs.setdefault(session, set()).add(job)

    def remove(self, session: str, job: Job) -> None:
        with self._lock:
            jobs = self._jobs.get(session)
            if jobs is not None:
                jobs.discard(job)
                if not jobs:
                    del self._jobs[session]

    def cancel(self, session: str, wait: float = 0.0) -> int:
        """Cancel every job of ``session``, waiting up to ``wait`` seconds for them to end; how many there were."""
        with self._lock:
            jobs = list(self._jobs.get(session, ()))
        for job in jobs:
            job.cancel()
        deadline = time.monotonic() + wait
        for job in jobs:
            job.wait(max(deadline - time.monotonic(), 0.0))
        return len(jobs)

    def cancel_all(self) -> None:
        with self._lock:
            jobs = [job for session in self._jobs.values() for job in session]
        for job in jobs:
            job.cancel()

    def running(self, session: str | None = None) -> int:
        with self._lock:
            if session is not None:
                return len(self._jobs.get(session, ()))
            return sum(len(jobs) for jobs in self._jobs.values())


__all__ = ["Cancelled", "DeviceSlots", "Job", "JobBoard", "Reporter", "Update", "one_line", "preview_image"]
