"""Removing the studio's files: each job's folder once it is older than the time results are kept, and the
server's whole folder when it stops."""

from __future__ import annotations

import logging
import shutil
import threading
import time
from pathlib import Path

log = logging.getLogger("inceptionism.web")


def sweep(folder: Path, max_age: float, now: float | None = None) -> list[Path]:
    """Remove the entries of ``folder`` last modified more than ``max_age`` seconds ago; returns them."""
    now = time.time() if now is None else now
    removed = []
    try:
        entries = list(folder.iterdir())
    except FileNotFoundError:
        return []
    for entry in entries:
        try:
            if now - entry.lstat().st_mtime <= max_age:
                continue
            if entry.is_dir() and not entry.is_symlink():
                shutil.rmtree(entry)
            else:
                entry.unlink()
            removed.append(entry)
        except FileNotFoundError:
            continue
        except OSError as exc:  # in use or already half gone: the next sweep tries again
            log.warning("could not remove %s: %s", entry, exc)
    return removed


class Sweeper:
    """A daemon thread that sweeps ``folder`` every ``interval`` seconds until :meth:`stop`."""

    def __init__(self, folder: Path, max_age: float, interval: float | None = None) -> None:
        self.folder = folder
        self.max_age = max_age
        self.interval = interval if interval is not None else max(min(max_age / 4, 600.0), 1.0)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="inceptionism-sweeper", daemon=True)

    def start(self) -> Sweeper:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join()

    def _loop(self) -> None:
        while not self._stop.wait(self.interval):
            sweep(self.folder, self.max_age)


__all__ = ["Sweeper", "sweep"]
