"""A sweep of zoom animations on a Ray cluster: one animation per task.

One zoom animation cannot be split: frame k is the dream of frame k - 1 moved by the camera, so no frame can
start before the one before it is finished, and a warm-up (as a video's segments have) cannot stand in for it,
because the feedback *is* the picture. What a cluster can run side by side is several animations: the same
input under several schedules (a sweep, to choose a look). Each task is :func:`~inceptionism.sequences.zoom.
run_zoom` with its own frame cache beside its output, so the input and outputs must be in a folder every worker
sees (any folder, on a local cluster). A worker killed mid-animation costs the frame it was dreaming: Ray runs
the task again and it continues from that animation's cache; outputs already there are skipped, so a rerun
after the driver was killed continues too.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from inceptionism.cluster.address import ClusterAddress, connect
from inceptionism.cluster.bar import JobBar
from inceptionism.cluster.workers import LostWorker, WorkerPool
from inceptionism.config import DreamConfig
from inceptionism.errors import ConfigError, ImageError, WeightsError
from inceptionism.io.messages import show
from inceptionism.sequences.media import output_kind
from inceptionism.sequences.schedule import Schedule
from inceptionism.sequences.zoom import ZoomSettings, check_zoom_output


def sweep_outputs(output: str | os.PathLike[str], schedules: Sequence[str | os.PathLike[str]]) -> list[Path]:
    """One output per schedule file: ``zoom.mp4`` with ``slow.toml`` → ``zoom-slow.mp4`` (a frame folder
    ``frames`` → ``frames-slow``); :class:`ConfigError` if two schedules share a name."""
    out = Path(output)
    names = [Path(s).stem for s in schedules]
    twice = next((n for n in names if names.count(n) > 1), None)
    if twice is not None:
        raise ConfigError(f"two schedules are named {twice!r}; a sweep names each output after its schedule")
    suffix = "" if output_kind(out) == "folder" else out.suffix
    stem = out.name[: len(out.name) - len(suffix)] if suffix else out.name
    return [out.with_name(f"{stem}-{name}{suffix}") for name in names]


@dataclass
class SweepResult:
    """What a sweep did: outputs written, outputs already there, ``(output, message)`` per failure, and one
    summary line per worker."""

    done: list[Path] = field(default_factory=list)
    skipped: list[Path] = field(default_factory=list)
    failed: list[tuple[Path, str]] = field(default_factory=list)
    workers: list[str] = field(default_factory=list)

    def summary(self) -> str:
        """One line: ``zoom sweep: 3 done, 1 skipped (already there), 0 failed``."""
        failed = f" ({', '.join(out.name for out, _ in self.failed)})" if self.failed else ""
        return (
            f"zoom sweep: {len(self.done)} done, {len(self.skipped)} skipped (already there), "
            f"{len(self.failed)} failed{failed}"
        )


def run_zoom_sweep(
    input_path: str | os.PathLike[str],
    output: str | os.PathLike[str],
    config: DreamConfig,
    settings: ZoomSettings,
    schedules: Sequence[str | os.PathLike[str]],
    address: ClusterAddress,
    *,
    quiet: bool = False,
    temp_dir: str | None = None,
) -> SweepResult:
    """Render the zoom animation of ``input_path`` once per schedule file, side by side on the cluster, into
    :func:`sweep_outputs` of ``output``. Every schedule is read and checked before any work."""
    src = Path(input_path).resolve()
    if not src.is_file():
        raise ImageError(f"input image {show(input_path)} does not exist; check the path")
    config = config.validate()
    outputs = sweep_outputs(output, schedules)
    jobs = []
    result = SweepResult()
    for schedule_file, out in zip(schedules, outputs, strict=True):
        job = replace(settings, schedule=Schedule.load(schedule_file)).validate(config)
        check_zoom_output(src, out)
        if out.exists():
            result.skipped.append(out)
        else:
            jobs.append((out.resolve(), job))
    if not jobs:
        return result
    with connect(address, temp_dir=temp_dir) as plan:
        pool = WorkerPool(plan, config.to_dict())
        with JobBar(len(jobs), "animation", enabled=not quiet) as bar:
            submit = _submitter(str(src))
            for (out, job), outcome in pool.map(jobs, submit, depth=1):
                if isinstance(outcome, LostWorker):
                    message = f"its worker was lost more often than Ray restarts one ({outcome.message})"
                elif outcome.error is not None:
                    if outcome.kind in ("config", "weights"):
                        raise (ConfigError if outcome.kind == "config" else WeightsError)(outcome.error)
                    message = outcome.error
                else:
                    pool.stats[outcome.slot].frames += job.frames
                    result.done.append(out)
                    bar.advance()
                    continue
                result.failed.append((out, message))
                bar.note(f"inceptionism: error: {show(out)}: {message}")
                bar.drop()
        result.workers = pool.summary()
    return result


def _submitter(src: str) -> Any:
    def submit(worker: Any, item: tuple[Path, ZoomSettings]) -> Any:
        out, job = item
        return worker.zoom.remote(src, str(out), job)

    return submit


__all__ = ["SweepResult", "run_zoom_sweep", "sweep_outputs"]
