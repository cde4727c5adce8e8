"""A video on a Ray cluster: split into segments, one per task, each starting K frames early.

A coherent video is sequential: every frame starts from the previous one's dream. So the frames are cut into
segments of ``segment`` frames, dreamed side by side; each segment's task starts ``warmup`` frames before its
first kept frame (those warm-up frames are dreamed and thrown away), so the detail carried along the flow has
settled by the first kept frame and the seam does not flicker more than the rest. The segment length is a
setting, not the number of workers, so the same command gives the same video on any cluster, and a rerun on a
different one continues from the same frame cache.

The driver decodes the input, sends each segment's source frames with its task, saves the frames that come back
in the :class:`~inceptionism.sequences.cache.FrameCache` and encodes them in order, with the sound copied as on
one machine. A worker killed mid-segment costs that segment: Ray restarts it and runs the segment again, which
gives the same frames. A driver killed mid-job costs the segments in flight: the rerun skips cached segments and
continues a partly cached one from its last cached frame, as saved, which is what it fed forward.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from inceptionism.cluster.address import ClusterAddress, connect
from inceptionism.cluster.bar import JobBar
from inceptionism.cluster.workers import LostWorker, TaskResult, WorkerPool
from inceptionism.config import DreamConfig
from inceptionism.errors import ConfigError, ImageError, InceptionismError
from inceptionism.io.messages import show
from inceptionism.sequences.cache import FrameCache, Note, cache_folder, print_note
from inceptionism.sequences.flow import require_cv2
from inceptionism.sequences.media import VideoWriter, probe, read_frames
from inceptionism.sequences.video import (
    FrameDreamer,
    FrameHook,
    VideoSettings,
    _input_identity,
    check_video_paths,
    output_writer,
    span_indices,
)

#: Frames per segment by default (5 s at 24 fps): long enough that the warm-up is a small share of the work.
SEGMENT_FRAMES = 120
#: Warm-up frames by default, chosen from the flicker at seams against inside segments (docs/scale-out.md): a
#: dream reinforces the detail it is carried, so a seam settles slowly; 24 frames halve its excess flicker.
WARMUP_FRAMES = 24


@dataclass(frozen=True)
class Segment:
    """Frames ``keep`` to ``end - 1`` are this segment's; its task dreams from ``start`` (≤ ``keep``)."""

    index: int
    start: int
    keep: int
    end: int


def plan_segments(count: int, segment: int, warmup: int) -> list[Segment]:
    """``count`` frames cut into segments of ``segment`` frames (the last may be shorter), each starting
    ``warmup`` frames early (the first from frame 0)."""
    if segment < 1:
        raise ConfigError(f"--segment must be 1 frame or more, got {segment}")
    if warmup < 0:
        raise ConfigError(f"--warmup must be 0 frames or more, got {warmup}")
    return [
        Segment(i, max(0, keep - warmup), keep, min(keep + segment, count))
        for i, keep in enumerate(range(0, count, segment))
    ]


@dataclass
class SegmentJob:
    """What a worker dreams: ``sources`` (T, H, W, 3) uint8, the frames from the task's start; the frames from
    ``keep_from`` on are sent back. ``previous``: (source, dream) of the frame before the first, uint8 as cached,
    when the task continues a partly cached segment (None: the first frame is dreamed alone)."""

    settings: VideoSettings
    sources: np.ndarray
    keep_from: int
    previous: tuple[np.ndarray, np.ndarray] | None = None


def dream_segment(dreamer: FrameDreamer, job: SegmentJob) -> np.ndarray:
    """Dream the job's frames in order, each from the previous one's dream; returns the kept ones,
    (T', H, W, 3) uint8."""
    previous = job.previous
    kept = []
    for t, source in enumerate(job.sources):
        dream = dreamer.dream(source, previous)
        if t >= job.keep_from:
            kept.append(dream)
        previous = (source, dream)
    return np.stack(kept)


class SeamMeter:
    """The flicker (:class:`~inceptionism.sequences.video.FlickerMeter`'s measure) at segment seams and inside
    segments, apart: the change of dream detail into each segment's first frame against into every other."""

    def __init__(self, seams: set[int]) -> None:
        self._seams = seams
        self._previous: np.ndarray | None = None
        self.at_seams: list[float] = []
        self.inside: list[float] = []

    def add(self, index: int, source: np.ndarray, dream: np.ndarray) -> None:
        """Frame ``index``; both (H, W, 3) uint8; frames come in order."""
        detail = dream.astype(np.int16) - source.astype(np.int16)
        if self._previous is not None:
            change = float(np.abs(detail - self._previous).mean()) / 255.0
            (self.at_seams if index in self._seams else self.inside).append(change)
        self._previous = detail

    @staticmethod
    def _mean(values: list[float]) -> float | None:
        return sum(values) / len(values) if values else None

    @property
    def seam(self) -> float | None:
        """Mean flicker into a segment's first frame, in [0, 1] units; None without seams."""
        return self._mean(self.at_seams)

    @property
    def within(self) -> float | None:
        """Mean flicker between the other consecutive frames; None for a one-frame video."""
        return self._mean(self.inside)


@dataclass
class ClusterVideoReport:
    """What a cluster video run did: output, frames, frames dreamed in this run, flicker at seams and inside
    segments (None where there were none), and one summary line per worker."""

    path: Path
    frames: int = 0
    dreamed: int = 0
    seam_flicker: float | None = None
    inside_flicker: float | None = None
    workers: list[str] = field(default_factory=list)

    def summary(self) -> str:
        """``video: 240 frames (120 dreamed now); flicker at seams 0.0123, inside segments 0.0118``."""

        def text(value: float | None) -> str:
            return "–" if value is None else f"{value:.4f}"

        return (
            f"video: {self.frames} frames ({self.dreamed} dreamed now); flicker at seams "
            f"{text(self.seam_flicker)}, inside segments {text(self.inside_flicker)}"
        )


class _Job:
    """The driver's state while a video runs: decoded sources not yet encoded, dreams waiting for their turn."""

    def __init__(self, segments: list[Segment], cache: FrameCache, settings: VideoSettings, count: int) -> None:
        self.segments = segments
        self.cache = cache
        self.settings = settings
        self.count = count
        self.cached = set(cache.done())
        self.sources: dict[int, np.ndarray] = {}
        self.dreams: dict[int, np.ndarray] = {}
        self.low = 0  # sources below this are not needed by any segment still to be sent
        self.encoded = 0

    def job(self, segment: Segment) -> SegmentJob | None:
        """The task for ``segment``: None if all its frames are cached; from its first missing frame, with the
        cached frame before it fed forward, if some are."""
        missing = [k for k in range(segment.keep, segment.end) if k not in self.cached]
        if not missing:
            return None
        first = missing[0]
        if first > segment.keep:  # continue from the last cached frame, exactly what it fed forward
            previous = (self.sources[first - 1], self.cache.load(first - 1))
            frames = np.stack([self.sources[k] for k in range(first, segment.end)])
            return SegmentJob(self.settings, frames, 0, previous)
        frames = np.stack([self.sources[k] for k in range(segment.start, segment.end)])
        return SegmentJob(self.settings, frames, segment.keep - segment.start)

    def jobs(self, frames: Any) -> Any:
        """``(segment, job)`` for each segment with frames to dream, as soon as its last source is decoded."""
        pending = list(self.segments)
        decoded = 0
        for k, (_, source) in enumerate(frames):
            if k >= self.count:  # a variable-rate file can decode more frames than its average rate says
                break
            self.sources[k] = source
            decoded = k + 1
            while pending and pending[0].end <= decoded:
                segment = pending.pop(0)
                self.low = pending[0].start if pending else decoded
                job = self.job(segment)
                if job is not None:
                    yield segment, job
        self.count = decoded  # fewer frames than probed: the last segments end early
        for segment in pending:
            if segment.keep < decoded:
                cut = Segment(segment.index, segment.start, segment.keep, decoded)
                job = self.job(cut)
                if job is not None:
                    yield cut, job
        self.low = decoded

    def finished(self, segment: Segment, kept: np.ndarray) -> int:
        """A segment's frames are back: cache them (whole files, each) and hold them for the encoder."""
        first = segment.end - len(kept)
        for offset, dream in enumerate(kept):
            k = first + offset
            if k not in self.cached:
                self.cache.save(k, dream)
                self.cached.add(k)
            self.dreams[k] = dream
        return len(kept)

    def flush(self, writer: VideoWriter, meter: SeamMeter, on_frame: FrameHook | None = None) -> None:
        """Encode every frame that is ready, in order, calling ``on_frame(index, dream)`` for each."""
        while self.encoded < self.count and (self.encoded in self.dreams or self.encoded in self.cached):
            k = self.encoded
            if k not in self.sources:  # decoding is behind: the frame comes with its source
                return
            dream = self.dreams.pop(k) if k in self.dreams else self.cache.load(k)
            writer.write(dream)
            meter.add(k, self.sources[k], dream)
            if on_frame is not None:
                on_frame(k, dream)
            self.encoded += 1
        for k in [k for k in self.sources if k < min(self.low, self.encoded)]:
            del self.sources[k]


def run_cluster_video(
    input_path: str | os.PathLike[str],
    output: str | os.PathLike[str],
    config: DreamConfig,
    settings: VideoSettings,
    address: ClusterAddress,
    *,
    segment: int = SEGMENT_FRAMES,
    warmup: int = WARMUP_FRAMES,
    quiet: bool = False,
    note: Note = print_note,
    temp_dir: str | None = None,
    on_frame: FrameHook | None = None,
) -> ClusterVideoReport:
    """Dream the video (or frame folder) ``input_path`` into ``output`` on the cluster at ``address``, in
    segments of ``segment`` frames each started ``warmup`` frames early. Outputs, sound and the frame cache
    beside ``output`` are as :func:`~inceptionism.sequences.video.dream_video` has them; the cache key also
    holds ``segment`` and ``warmup``, which shape the frames. ``on_frame(index, dream)`` is called for every
    frame of the output, cached earlier or dreamed now, in order, as it is encoded."""
    src, out = Path(input_path), Path(output)
    config, settings = config.validate(), settings.validate()
    plan_segments(1, segment, warmup)  # its values checked before any work
    if settings.folder_fps is not None and not src.is_dir():
        raise ConfigError("--fps is for a folder of frames; a video file keeps its own frame rate")
    kind = check_video_paths(src, out)
    require_cv2()
    info = probe(src, folder_fps=settings.folder_fps)
    indices = span_indices(info, settings.start, settings.end)
    if info.has_audio and kind != "video":
        note(f"a {'GIF' if kind == 'gif' else 'frame folder'} has no sound; the audio is not kept")
    key = {
        "command": "video",
        "input": _input_identity(src),
        "settings": config.to_dict(),
        "video": settings.record(),
        "cluster": {"segment": segment, "warmup": warmup},
    }
    cache = FrameCache(cache_folder(out), key, note=note)
    frames = read_frames(src, settings.start, settings.end, folder_fps=settings.folder_fps)
    head = next(frames, None)
    if head is None:
        raise ImageError(f"{show(src)} has no frames to read between the given --start and --end")
    job = _Job(plan_segments(len(indices), segment, warmup), cache, settings, len(indices))
    report = ClusterVideoReport(out)
    meter = SeamMeter({s.keep for s in job.segments if s.keep > 0})
    with connect(address, temp_dir=temp_dir) as plan:
        if len(job.segments) < len(plan):
            note(
                f"{len(indices)} frames make {len(job.segments)} segment(s) of {segment} for {len(plan)} workers; "
                f"a smaller --segment keeps more of them busy"
            )
        pool = WorkerPool(plan, config.to_dict())
        ray = pool.ray
        first = ray.put(head[1])
        record = _settings_record(pool, first, settings)
        writer = output_writer(out, src, info, kind, indices, record, note)
        with writer, JobBar(len(indices), "frame", len(job.cached), enabled=not quiet) as bar:
            tasks = job.jobs(_chain(head, frames))
            for (seg, _), outcome in pool.map(tasks, lambda w, it: w.dream_segment.remote(first, it[1]), depth=1):
                count = job.finished(seg, _kept(seg, outcome))
                if isinstance(outcome, TaskResult):
                    pool.stats[outcome.slot].frames += count
                report.dreamed += count
                bar.advance(count)
                job.flush(writer, meter, on_frame)
            job.flush(writer, meter, on_frame)
            if job.encoded < job.count:
                raise InceptionismError(f"only {job.encoded} of {job.count} frames could be encoded")
        report.workers = pool.summary()
    if kind != "video":
        from inceptionism.io import write_json

        write_json(out.with_name(out.name + ".json"), record)
    cache.remove()
    report.frames = job.encoded
    report.seam_flicker, report.inside_flicker = meter.seam, meter.within
    return report


def _chain(head: tuple[int, np.ndarray], rest: Any) -> Any:
    yield head
    yield from rest


def _settings_record(pool: WorkerPool, first: Any, settings: VideoSettings) -> dict[str, Any]:
    """The settings the output records, as one machine records them: a worker builds the objective from the
    first frame (the driver has no model)."""
    result: TaskResult = pool.ray.get(pool.actors[0].video_record.remote(first, settings))
    result.raise_error()
    record: dict[str, Any] = result.value
    return record


def _kept(segment: Segment, outcome: TaskResult | LostWorker) -> np.ndarray:
    """The frames a segment's task sent back; a failed task stops the video (its frames cannot be skipped)."""
    if isinstance(outcome, LostWorker):
        raise InceptionismError(
            f"segment {segment.index + 1} (frames {segment.keep}–{segment.end - 1}) lost its worker more often "
            f"than Ray restarts one ({outcome.message}); the frames done are cached: run the command again"
        )
    outcome.raise_error()
    kept: np.ndarray = outcome.value
    return kept


__all__ = [
    "SEGMENT_FRAMES",
    "WARMUP_FRAMES",
    "ClusterVideoReport",
    "SeamMeter",
    "Segment",
    "SegmentJob",
    "dream_segment",
    "plan_segments",
    "run_cluster_video",
]
