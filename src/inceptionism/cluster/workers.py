"""The workers of a cluster job, and the driver's side of them.

:class:`DreamWorker` is the body of a Ray actor: it loads the model once, keeps it, and dreams what it is sent
(an image's bytes, a video segment's frames, a zoom job). Per-item failures a user can act on (an unreadable
image) come back as a :class:`TaskResult` with ``error`` set instead of an exception, so a bad file fails its
task alone. :class:`WorkerPool` starts one actor per :class:`~inceptionism.cluster.address.WorkerPlan` and
streams items through them, at most ``depth`` queued on each; Ray restarts an actor whose process dies and
retries the task it was running (``max_restarts``, ``max_task_retries``), so a lost worker costs that task only.
"""

from __future__ import annotations

import os
import socket
import tempfile
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from inceptionism.cluster.address import WorkerPlan, require_ray
from inceptionism.errors import ConfigError, ImageError, InceptionismError, WeightsError

#: How often Ray restarts a worker whose process died, and retries the task it was running; beyond that the
#: task is reported failed (a task that kills its worker every time must not loop forever).
RESTARTS = 4
#: Stands for the input's path in a worker's error message; the driver puts the user's path back.
SOURCE_MARK = "\x00source\x00"

_ERRORS: dict[str, type[InceptionismError]] = {
    "config": ConfigError,
    "image": ImageError,
    "weights": WeightsError,
    "error": InceptionismError,
}


def _kind(exc: InceptionismError) -> str:
    for kind, cls in _ERRORS.items():
        if isinstance(exc, cls):
            return kind
    return "error"


@dataclass
class TaskResult:
    """What a worker sends back for one item: ``value`` (the item's product) or ``error`` (one line) with its
    ``kind`` (``"config"``, ``"image"``, ``"weights"``, ``"error"``); the worker's slot and process id, and the
    seconds it spent."""

    slot: int
    pid: int
    seconds: float
    value: Any = None
    error: str | None = None
    kind: str | None = None

    def raise_error(self) -> None:
        """Raise the error as the class the worker caught (the driver re-raises settings errors)."""
        if self.error is not None:
            raise _ERRORS.get(self.kind or "error", InceptionismError)(self.error)


@dataclass(frozen=True)
class WorkerInfo:
    """A worker as it reports itself: slot, process id, host name, torch device and threads."""

    slot: int
    pid: int
    host: str
    device: str
    threads: int


class DreamWorker:
    """A Ray actor's body: one model, loaded at start and kept for every item it dreams.

    ``config``: :meth:`DreamConfig.to_dict` (plain data travels between processes); ``threads``: torch's and
    OpenCV's thread count in this process; ``slot``: the worker's number in the job (for the summary).
    """

    def __init__(self, config: dict[str, Any], threads: int, slot: int) -> None:
        import torch

        from inceptionism.config import DreamConfig
        from inceptionism.devices import pick_device

        torch.set_num_threads(threads)
        try:
            import cv2

            cv2.setNumThreads(threads)
        except ImportError:  # OpenCV is the [video] extra; a batch does without it
            pass
        self.slot = slot
        self.threads = threads
        self.config = DreamConfig.from_dict(config)
        self.device = pick_device(self.config.device)
        self.model: Any = None
        self._load_error: tuple[str, str] | None = None
        self._video: tuple[Any, Any] | None = None
        try:
            from inceptionism.api import get_model

            self.model = get_model(self.config.model, self.config.weights, self.device)
        except InceptionismError as exc:  # reported with the first item, as a one-line error
            self._load_error = (_kind(exc), str(exc))

    def hello(self) -> WorkerInfo:
        """Who this worker is (the driver's summary; a test finds the process to kill here)."""
        return WorkerInfo(self.slot, os.getpid(), socket.gethostname(), str(self.device), self.threads)

    def _result(self, began: float, value: Any = None, exc: InceptionismError | None = None) -> TaskResult:
        result = TaskResult(self.slot, os.getpid(), time.perf_counter() - began, value)
        if exc is not None:
            result.error, result.kind = str(exc), _kind(exc)
        return result

    def _failed_load(self, began: float) -> TaskResult | None:
        if self._load_error is None:
            return None
        kind, message = self._load_error
        return TaskResult(self.slot, os.getpid(), time.perf_counter() - began, error=message, kind=kind)

    def dream_image(self, name: str, data: bytes, out_name: str) -> TaskResult:
        """Dream an image file's ``data`` (its name: ``name``) into PNG bytes carrying the settings, as
        :func:`~inceptionism.sequences.batch.run_batch` writes them. The bytes travel, not the path, so a worker
        on another machine needs no shared folder."""
        import json

        from inceptionism.api import dream
        from inceptionism.io import save_image
        from inceptionism.io.messages import show

        began = time.perf_counter()
        failed = self._failed_load(began)
        if failed is not None:
            return failed
        with tempfile.TemporaryDirectory(prefix="inceptionism-") as tmp:
            src, out = Path(tmp) / name, Path(tmp) / out_name
            src.write_bytes(data)
            try:
                picture = dream(src, self.config, model=self.model)
                save_image(picture, out, json.loads(picture.info["inceptionism"]))
            except InceptionismError as exc:
                message = str(exc).replace(show(src), SOURCE_MARK)
                return self._result(began, exc=type(exc)(message))
            return self._result(began, out.read_bytes())

    def _video_dreamer(self, first: Any, settings: Any) -> Any:
        """The video's :class:`~inceptionism.sequences.video.FrameDreamer`, kept while the same video runs; its
        objective is built from the video's ``first`` frame ((H, W, 3) uint8), as on one machine."""
        from inceptionism.sequences.video import FrameDreamer

        key = (settings, first.shape, first.tobytes())
        if self._video is None or self._video[0] != key:
            dreamer = FrameDreamer(self.model, self.config, settings, self.device)
            dreamer.prepare(first)
            self._video = (key, dreamer)
        return self._video[1]

    def video_record(self, first: Any, settings: Any) -> TaskResult:
        """The settings a video's output records (:meth:`FrameDreamer.settings_record`)."""
        began = time.perf_counter()
        failed = self._failed_load(began)
        if failed is not None:
            return failed
        try:
            return self._result(began, self._video_dreamer(first, settings).settings_record())
        except InceptionismError as exc:
            return self._result(began, exc=exc)

    def dream_segment(self, first: Any, job: Any) -> TaskResult:
        """Dream a video segment (:class:`~inceptionism.cluster.video.SegmentJob`) of the video whose first frame
        is ``first``: its frames in order, each from the previous one's dream; returns the kept frames as one
        (T, H, W, 3) uint8 array."""
        from inceptionism.cluster.video import dream_segment

        began = time.perf_counter()
        failed = self._failed_load(began)
        if failed is not None:
            return failed
        try:
            return self._result(began, dream_segment(self._video_dreamer(first, job.settings), job))
        except InceptionismError as exc:
            return self._result(began, exc=exc)

    def zoom(self, input_path: str, output: str, settings: Any) -> TaskResult:
        """Render one zoom animation of a sweep with :func:`~inceptionism.sequences.zoom.run_zoom` (its own
        frame cache beside ``output``: the paths must be on a folder every worker sees)."""
        from inceptionism.sequences.zoom import run_zoom

        began = time.perf_counter()
        failed = self._failed_load(began)
        if failed is not None:
            return failed
        try:
            return self._result(began, str(run_zoom(input_path, output, self.config, settings, quiet=True)))
        except InceptionismError as exc:
            return self._result(began, exc=exc)


@dataclass
class WorkerStats:
    """One worker's share of a job, for the summary: items and frames done, seconds busy, process ids seen
    (more than one: Ray restarted it)."""

    info: WorkerInfo
    items: int = 0
    frames: int = 0
    seconds: float = 0.0
    pids: set[int] = field(default_factory=set)

    def line(self) -> str:
        restarts = len(self.pids - {self.info.pid}) if self.pids else 0
        again = f", restarted {restarts}×" if restarts else ""
        return (
            f"worker {self.info.slot + 1} ({self.info.host} pid {self.info.pid}, {self.info.device}, "
            f"{self.info.threads} thread{'s' if self.info.threads != 1 else ''}): {self.items} tasks, "
            f"{f'{self.frames} frames, ' if self.frames else ''}{self.seconds:.1f} s dreaming{again}"
        )


Item = TypeVar("Item")


class WorkerPool:
    """The job's workers: one :class:`DreamWorker` actor per plan, started at once, each loading the model.

    >>> pool = WorkerPool(plan, config.to_dict())
    >>> for item, outcome in pool.map(items, lambda worker, item: worker.dream_image.remote(*item)):
    ...     ...  # outcome: a TaskResult, or a LostWorker after Ray's retries ran out
    """

    def __init__(self, plan: list[WorkerPlan], config: dict[str, Any]) -> None:
        ray = require_ray()
        from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

        self.ray = ray
        remote = ray.remote(DreamWorker)
        self.actors = []
        for slot, worker in enumerate(plan):
            options: dict[str, Any] = {
                "num_cpus": worker.threads,
                "num_gpus": worker.gpus,
                "max_restarts": RESTARTS,
                "max_task_retries": RESTARTS,
            }
            if worker.node is not None:
                options["scheduling_strategy"] = NodeAffinitySchedulingStrategy(worker.node, soft=True)
            self.actors.append(remote.options(**options).remote(config, worker.threads, slot))
        infos = ray.get([a.hello.remote() for a in self.actors])
        self.stats = [WorkerStats(info) for info in infos]

    def map(
        self, items: Iterable[Item], submit: Callable[[Any, Item], Any], depth: int = 2
    ) -> Iterator[tuple[Item, TaskResult | LostWorker]]:
        """Run ``submit(actor, item)`` (an actor method's ``.remote(...)`` call) for every item, keeping at most
        ``depth`` items queued on each live worker; yields ``(item, outcome)`` as items finish, in any order.
        Items are drawn from ``items`` only as workers free up, so a generator may produce them lazily."""
        ray = self.ray
        source = iter(items)
        running: dict[Any, tuple[int, Item]] = {}
        load = [0] * len(self.actors)
        alive = set(range(len(self.actors)))
        exhausted = False
        while True:
            while not exhausted and alive:
                slot = min(alive, key=lambda s: load[s])
                if load[slot] >= depth:
                    break
                item = next(source, None)
                if item is None:
                    exhausted = True
                    break
                running[submit(self.actors[slot], item)] = (slot, item)
                load[slot] += 1
            if not running:
                if not exhausted and not alive:
                    raise InceptionismError("every worker of the cluster was lost; see Ray's log above")
                return
            (ref,), _ = ray.wait(list(running), num_returns=1)
            slot, item = running.pop(ref)
            load[slot] -= 1
            try:
                outcome: TaskResult | LostWorker = ray.get(ref)
            except ray.exceptions.RayActorError as exc:  # its restarts ran out: the worker is gone for good
                alive.discard(slot)
                outcome = LostWorker(slot, str(exc).splitlines()[0] if str(exc) else type(exc).__name__)
            if isinstance(outcome, TaskResult):
                stats = self.stats[outcome.slot]
                stats.items += 1
                stats.seconds += outcome.seconds
                stats.pids.add(outcome.pid)
            yield item, outcome

    def summary(self) -> list[str]:
        """One line per worker."""
        return [s.line() for s in self.stats]


@dataclass(frozen=True)
class LostWorker:
    """An item whose worker died more often than Ray restarts it; ``message``: Ray's first line."""

    slot: int
    message: str


__all__ = [
    "RESTARTS",
    "SOURCE_MARK",
    "DreamWorker",
    "LostWorker",
    "TaskResult",
    "WorkerInfo",
    "WorkerPool",
    "WorkerStats",
]
