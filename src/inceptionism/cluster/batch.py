"""A batch of images on a Ray cluster: one task per image, outputs written by the driver as they finish.

The driver reads each input's bytes and sends them with the task, and writes the PNG a worker sends back
atomically into the output folder, so workers on other machines need no shared folder. As on one machine,
outputs already there are skipped (a rerun after the driver was killed continues), a file that cannot be read
fails its task alone and is named in the summary, and a settings or weights error stops the batch.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from inceptionism.cluster.address import ClusterAddress, connect
from inceptionism.cluster.bar import JobBar
from inceptionism.cluster.workers import SOURCE_MARK, LostWorker, TaskResult, WorkerPool
from inceptionism.config import DreamConfig
from inceptionism.errors import ConfigError, ImageError, WeightsError
from inceptionism.io import atomic_write
from inceptionism.io.messages import reason, show
from inceptionism.sequences.batch import BatchResult, check_batch_output, output_paths


@dataclass
class ClusterBatchResult(BatchResult):
    """A :class:`~inceptionism.sequences.batch.BatchResult` plus one summary line per worker, the seconds until
    the workers were ready (cluster started, models loaded) and the seconds from then to the last image."""

    workers: list[str] = field(default_factory=list)
    ready_seconds: float = 0.0
    work_seconds: float = 0.0


Item = tuple[Path, Path, bytes]


def _items(todo: Sequence[tuple[Path, Path]], result: BatchResult, bar: JobBar) -> Iterator[Item]:
    """``(source, output, bytes)`` of each image to dream, read only when a worker is free for it; a file that
    cannot be read is reported here and skipped."""
    for src, out in todo:
        try:
            data = src.read_bytes()
        except OSError as exc:
            message = f"cannot read {show(src)}: {reason(exc)}"
            result.failed.append((src, message))
            bar.note(f"inceptionism: error: {message} (skipped)")
            bar.drop()
            continue
        yield src, out, data


def _submit(worker: Any, item: Item) -> Any:
    src, out, data = item
    return worker.dream_image.remote(src.name, data, out.name)


def run_cluster_batch(
    sources: Sequence[Path],
    out_dir: Path,
    config: DreamConfig,
    address: ClusterAddress,
    *,
    quiet: bool = False,
    overwrite: bool = False,
    on_written: Callable[[Path], None] | None = None,
    temp_dir: str | None = None,
) -> ClusterBatchResult:
    """Dream every image of ``sources`` into ``out_dir`` on the cluster at ``address``; the outputs are the same
    files :func:`~inceptionism.sequences.batch.run_batch` writes on one machine. ``on_written`` is called with
    each output as it is written (in the order they finish); ``temp_dir``: Ray's session folder of a local
    cluster."""
    config = config.validate()
    outputs = output_paths(sources, out_dir)
    check_batch_output(sources, outputs, out_dir, overwrite)
    result = ClusterBatchResult()
    todo = []
    for src, out in zip(sources, outputs, strict=True):
        if out.exists():
            result.skipped.append(out)
        else:
            todo.append((src, out))
    if not todo:
        return result
    began = time.perf_counter()
    with connect(address, temp_dir=temp_dir) as plan:
        pool = WorkerPool(plan, config.to_dict())
        result.ready_seconds = time.perf_counter() - began
        with JobBar(len(todo), "image", enabled=not quiet) as bar:
            items = _items(todo, result, bar)
            for (src, out, _), outcome in pool.map(items, _submit):
                _record(src, out, outcome, result, bar, on_written)
        result.work_seconds = time.perf_counter() - began - result.ready_seconds
        result.workers = pool.summary()
    return result


def _record(
    src: Path,
    out: Path,
    outcome: TaskResult | LostWorker,
    result: BatchResult,
    bar: JobBar,
    on_written: Callable[[Path], None] | None,
) -> None:
    """Write one finished image, or note its failure; a settings or weights error stops the batch."""
    if isinstance(outcome, LostWorker):
        message = f"its worker was lost more often than Ray restarts one ({outcome.message})"
    elif outcome.error is not None:
        if outcome.kind in ("config", "weights"):
            raise (ConfigError if outcome.kind == "config" else WeightsError)(outcome.error)
        message = outcome.error.replace(SOURCE_MARK, show(src))
    else:
        data: bytes = outcome.value
        try:
            atomic_write(out, lambda handle: handle.write(data))
        except OSError as exc:
            raise ImageError(f"cannot write {show(out)}: {reason(exc)}") from exc
        result.done.append(out)
        bar.advance()
        if on_written is not None:
            on_written(out)
        return
    result.failed.append((src, message))
    bar.note(f"inceptionism: error: {message} (skipped)")
    bar.drop()


__all__ = ["ClusterBatchResult", "run_cluster_batch"]
