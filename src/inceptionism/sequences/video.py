"""Dream a video frame by frame, each frame starting from the previous dream carried along the optical flow.

Per frame (all images (H, W, 3), values in [0, 1] unless uint8 is said):

1. The source frame S is shrunk to the dream scale (``dream_scale`` × its size): the network dreams there, and
   the detail it adds is scaled back up onto the full-size frame, as the engine carries detail up its octaves.
2. The first frame (and every frame at ``coherence`` 0) is dreamed alone with the config's ``steps``.
3. A later frame starts from its source plus the previous dream's detail (D − S of the previous frame, D as saved,
   uint8) warped along the flow from this frame to the previous one, times ``coherence``, times the
   forward–backward consistency mask (0 where the scene was hidden or newly revealed). It is then dreamed with
   ``frame_steps`` steps per octave: the carried detail is most of the picture already, which is where the
   speed comes from.

Frames are streamed: decoded, dreamed, cached (:class:`~inceptionism.sequences.cache.FrameCache`) and encoded one
at a time. What feeds the next frame is always the uint8 dream as cached, so a run resumed from the cache gives
the same video, bit for bit, as one that was never interrupted.
"""

from __future__ import annotations

import itertools
import json
import os
import time
from collections.abc import Callable, Container, Iterator
from dataclasses import asdict, dataclass, field
from fractions import Fraction
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from inceptionism.config import DreamConfig
from inceptionism.errors import ConfigError, ImageError
from inceptionism.io.messages import show
from inceptionism.sequences.cache import FrameCache, Note, cache_folder, print_note, source_identity
from inceptionism.sequences.flow import PRESETS, FlowEstimator, consistency_mask, grey, require_cv2, warp
from inceptionism.sequences.media import (
    VideoInfo,
    VideoWriter,
    check_video_output,
    frame_files,
    output_kind,
    probe,
    read_frames,
    require_av,
)

#: Dream settings a video uses where neither the command line, a preset nor a settings file gives one: fewer,
#: larger-stepped octaves than a still, which a video's frames, seen for 1/30 s each, can afford.
VIDEO_DEFAULTS: dict[str, Any] = {"octaves": 2, "steps": 8, "step_size": 0.02}

if TYPE_CHECKING:
    from inceptionism.engine import Callback

FrameHook = Callable[[int, np.ndarray], None]


def with_video_defaults(config: DreamConfig, given: Container[str]) -> DreamConfig:
    """``config`` with :data:`VIDEO_DEFAULTS` for the settings not in ``given`` (the ones the user chose)."""
    return config.replace(**{k: v for k, v in VIDEO_DEFAULTS.items() if k not in given}).validate()


@dataclass(frozen=True)
class VideoSettings:
    """How a video is dreamed, besides the dream's own :class:`DreamConfig`.

    ``coherence`` in [0, 1]: how much of the previous dream's detail is carried into the next frame (0: each
    frame dreamed alone). ``frame_steps``: steps per octave of every frame after the first (None: the config's
    ``steps``). ``dream_scale`` in (0, 1]: the size frames are dreamed at, relative to the video's. ``start`` and
    ``end``: the seconds of the input to dream (None: from its start, to its end). ``folder_fps``: the frame rate
    of a folder of images (a video file has its own). ``flow``: the DIS preset.
    """

    coherence: float = 0.9
    frame_steps: int | None = 1
    dream_scale: float = 0.5
    start: float | None = None
    end: float | None = None
    folder_fps: Fraction | None = None
    flow: str = "fast"

    def validate(self) -> VideoSettings:
        """Check every value; :class:`ConfigError` naming the first bad one."""
        if not 0 <= self.coherence <= 1:
            raise ConfigError(f"--coherence must be between 0 and 1, got {self.coherence:g}")
        if self.frame_steps is not None and self.frame_steps < 1:
            raise ConfigError(f"--frame-steps must be 1 or more, got {self.frame_steps}")
        if not 0 < self.dream_scale <= 1:
            raise ConfigError(f"--dream-scale must be greater than 0 and at most 1, got {self.dream_scale:g}")
        if self.start is not None and self.start < 0:
            raise ConfigError(f"--start must be 0 or more seconds, got {self.start:g}")
        if self.end is not None and self.end <= (self.start or 0):
            raise ConfigError(f"--end ({self.end:g} s) must come after --start ({self.start or 0:g} s)")
        if self.folder_fps is not None and self.folder_fps <= 0:
            raise ConfigError(f"--fps must be greater than 0, got {self.folder_fps}")
        if self.flow not in PRESETS:
            raise ConfigError(f"unknown flow preset {self.flow!r}; expected one of {', '.join(PRESETS)}")
        return self

    def record(self) -> dict[str, Any]:
        """JSON-ready: what goes in the output's settings and the cache key."""
        out = asdict(self)
        out["folder_fps"] = None if self.folder_fps is None else str(self.folder_fps)
        return out


@dataclass
class VideoReport:
    """What a run did: its output, frames, seconds spent per stage, and the flicker of the result.

    ``seconds`` keys: ``decode``, ``flow`` (flow, warp and mask), ``dream``, ``encode`` (writing the output),
    ``cache`` (saving and loading frames). ``flicker``: :class:`FlickerMeter`'s value, in [0, 1] units.
    """

    path: Path
    frames: int
    dreamed: int
    seconds: dict[str, float] = field(default_factory=dict)
    flicker: float = 0.0


class FlickerMeter:
    """Mean absolute change of a video's dream detail between consecutive frames.

    flicker = mean over t ≥ 1 of mean |(D_t − S_t) − (D_{t−1} − S_{t−1})|, with D the dreamed and S the source
    frame, uint8 scaled to [0, 1]. Detail that stays put (or moves with the scene) changes little; detail dreamed
    anew each frame changes everywhere.
    """

    def __init__(self) -> None:
        self._previous: np.ndarray | None = None
        self._total = 0.0
        self._count = 0

    def add(self, source: np.ndarray, dream: np.ndarray) -> None:
        """One frame, both (H, W, 3) uint8."""
        detail = dream.astype(np.int16) - source.astype(np.int16)
        if self._previous is not None:
            self._total += float(np.abs(detail - self._previous).mean()) / 255.0
            self._count += 1
        self._previous = detail

    @property
    def value(self) -> float:
        return self._total / self._count if self._count else 0.0


def _floats(frame: np.ndarray) -> np.ndarray:
    return frame.astype(np.float32) * np.float32(1 / 255)


def _tensor(image: np.ndarray) -> torch.Tensor:
    """(h, w, 3) float32 → (1, 3, h, w)."""
    return torch.from_numpy(np.ascontiguousarray(image)).permute(2, 0, 1)[None]


def _array(tensor: torch.Tensor) -> np.ndarray:
    """(1, 3, h, w) → (h, w, 3) float32."""
    return np.asarray(tensor[0].permute(1, 2, 0).float().numpy())


def _to_u8(image: np.ndarray) -> np.ndarray:
    """[0, 1] floats → uint8, rounded to nearest."""
    return np.asarray(np.clip(image * 255.0 + 0.5, 0, 255), dtype=np.uint8)


class FrameDreamer:
    """Dreams the frames of one video in order, each from the previous one's dream (see the module's docstring).

    ``config``: the first frame's dream; later frames use ``frame_steps`` steps per octave. The objective is built
    once, from the first frame, so a channel choice such as ``NAME[top4]`` stays the same all through the video.
    ``seconds`` accumulates the time in ``flow`` and ``dream``.
    """

    def __init__(self, model: Any, config: DreamConfig, settings: VideoSettings, device: torch.device) -> None:
        self.model = model
        self.config = config
        self.settings = settings
        self.device = device
        self.seconds = {"flow": 0.0, "dream": 0.0}
        self._flow = FlowEstimator(settings.flow)
        self._dreamers: dict[int, Any] = {}
        self._objective: Any = None

    @property
    def later_config(self) -> DreamConfig:
        """The config of the frames after the first: ``frame_steps`` steps per octave where detail is carried."""
        if self.settings.coherence > 0 and self.settings.frame_steps is not None:
            return self.config.replace(steps=self.settings.frame_steps)
        return self.config

    def _dreamer(self, config: DreamConfig) -> Any:
        from inceptionism.engine import Dreamer

        if config.steps not in self._dreamers:
            self._dreamers[config.steps] = Dreamer(self.model, self._objective, config, self.device)
        return self._dreamers[config.steps]

    def work_size(self, width: int, height: int) -> tuple[int, int]:
        """The (w, h) frames are dreamed at: ``dream_scale`` × the frame's, at least 32 pixels a side."""
        scale = self.settings.dream_scale
        return max(32, min(width, round(width * scale))), max(32, min(height, round(height * scale)))

    def _shrink(self, image: np.ndarray, size: tuple[int, int], detail: bool = False) -> np.ndarray:
        """``image`` at ``size`` (w, h): area-averaged (a frame), or bicubic for ``detail`` scaled up bicubic
        before, which this gives back nearly unchanged where area averaging would blur it every frame."""
        if image.shape[1::-1] == size:
            return image
        cv2 = require_cv2()
        return np.asarray(cv2.resize(image, size, interpolation=cv2.INTER_CUBIC if detail else cv2.INTER_AREA))

    def _grow(self, image: np.ndarray, size: tuple[int, int]) -> np.ndarray:
        if image.shape[1::-1] == size:
            return image
        cv2 = require_cv2()
        return np.asarray(cv2.resize(image, size, interpolation=cv2.INTER_CUBIC))

    def prepare(self, first: np.ndarray) -> None:
        """Build the objective from the first source frame ((H, W, 3) uint8), as it is dreamed."""
        from inceptionism.engine import build_objective

        small = _floats(self._shrink(first, self.work_size(first.shape[1], first.shape[0])))
        self._objective = build_objective(self.config, self.model, _tensor(small))

    def settings_record(self) -> dict[str, Any]:
        """The run's settings as a picture records them (:func:`inceptionism.api.settings_record`), plus the
        video settings under ``"video"``. After :meth:`prepare`."""
        from inceptionism.api import settings_record
        from inceptionism.devices import pick_precision

        precision = pick_precision(self.config.precision, self.device)
        record = settings_record(self.config, self.model, self._objective, precision)
        record["video"] = self.settings.record()
        return record

    def dream(
        self,
        source: np.ndarray,
        previous: tuple[np.ndarray, np.ndarray] | None = None,
        callback: Callback | None = None,
    ) -> np.ndarray:
        """Dream ``source`` (H, W, 3) uint8; ``previous``: the last frame's (source, dream), both uint8 as saved,
        or None for a frame dreamed alone. ``callback``: the engine's, per step. Returns (H, W, 3) uint8."""
        if self._objective is None:
            self.prepare(source)
        full = source.shape[1::-1]
        size = self.work_size(*full)
        shrunk = self._shrink(source, size)
        small = _floats(shrunk)
        carry = self.settings.coherence > 0 and previous is not None
        start = self._carried(small, shrunk, *previous) if carry and previous is not None else small
        began = time.perf_counter()
        dreamt = _array(self._dreamer(self.later_config if carry else self.config).run(_tensor(start), callback))
        self.seconds["dream"] += time.perf_counter() - began
        detail = self._grow(dreamt - small, full)
        return _to_u8(_floats(source) + detail)

    def _carried(
        self, small: np.ndarray, shrunk: np.ndarray, prev_source: np.ndarray, prev_dream: np.ndarray
    ) -> np.ndarray:
        """The start of a later frame: ``small`` (this frame at the dream scale, (h, w, 3) in [0, 1]; ``shrunk``
        the same in uint8) plus the previous dream's detail carried along the flow, weighted by coherence and the
        consistency mask; clamped to [0, 1]. ``prev_source``, ``prev_dream``: the last frame's, full size, uint8."""
        began = time.perf_counter()
        size = shrunk.shape[1::-1]
        detail = self._shrink(_floats(prev_dream) - _floats(prev_source), size, detail=True)
        here, there = grey(shrunk), grey(self._shrink(prev_source, size))
        backward = self._flow(here, there)  # where each pixel of this frame was in the previous one
        forward = self._flow(there, here)
        mask = consistency_mask(backward, forward)
        carried = warp(detail, backward) * (mask * np.float32(self.settings.coherence))[..., None]
        self.seconds["flow"] += time.perf_counter() - began
        return np.asarray(np.clip(small + carried, 0.0, 1.0), dtype=np.float32)


def output_writer(
    out: Path, src: Path, info: VideoInfo, kind: str, indices: list[int], record: dict[str, Any], note: Note
) -> VideoWriter:
    """The writer of a dreamed video: the input's frame rate, size and pixel format, its sound over the span of
    ``indices`` (a video output only), and the settings ``record`` in the container's comment."""
    return VideoWriter(
        out,
        info.fps,
        (info.width, info.height),
        audio_from=src if info.has_audio and kind == "video" else None,
        audio_span=(float(indices[0] / info.fps), float((indices[-1] + 1) / info.fps)),
        pix_fmt=info.pix_fmt,
        metadata={"comment": json.dumps(record, sort_keys=True)} if kind == "video" else None,
        note=note,
    )


def check_video_paths(input_path: Path, output: Path) -> str:
    """Check, before any work, that ``input_path`` exists and ``output`` can be written and is not the input;
    returns the output's kind (``"video"``, ``"gif"``, ``"folder"``)."""
    if not input_path.exists():
        raise ImageError(f"input {show(input_path)} does not exist")
    check_video_output(output)
    kind = output_kind(output)
    if kind != "folder" or not input_path.is_dir():
        require_av()
    if output.resolve() == input_path.resolve() or (output.exists() and os.path.samefile(output, input_path)):
        raise ImageError(f"refusing to overwrite the input {show(input_path)}; choose another -o")
    return kind


def span_indices(info: VideoInfo, start: float | None, end: float | None) -> list[int]:
    """The input's frame indices in [start, end) seconds; :class:`ConfigError` if the span holds none."""
    fps = info.fps
    half = 0.5 / float(fps)
    indices = [
        i
        for i in range(info.frames)
        if (start is None or float(i / fps) + half >= start) and (end is None or float(i / fps) + half < end)
    ]
    if not indices:
        raise ConfigError(
            f"no frames between --start {start or 0:g} s and --end {end if end is not None else info.duration:g} s; "
            f"the input is {info.duration:.2f} s long"
        )
    return indices


def _input_identity(path: Path) -> dict[str, Any] | list[dict[str, Any]]:
    """What the cache key records of the input: a file's name, size and SHA-256, or a folder's frames'."""
    if path.is_dir():
        return [source_identity(p) for p in frame_files(path)]
    return source_identity(path)


def _timed(frames: Iterator[tuple[int, np.ndarray]], seconds: dict[str, float]) -> Iterator[tuple[int, np.ndarray]]:
    """``frames`` with the time spent producing each added to ``seconds["decode"]``."""
    while True:
        began = time.perf_counter()
        item = next(frames, None)
        seconds["decode"] += time.perf_counter() - began
        if item is None:
            return
        yield item


def dream_video(
    input_path: str | os.PathLike[str],
    output: str | os.PathLike[str],
    config: DreamConfig,
    settings: VideoSettings,
    *,
    quiet: bool = False,
    note: Note = print_note,
    on_frame: FrameHook | None = None,
) -> VideoReport:
    """Dream the video (or image folder) ``input_path`` into ``output``: .mp4/.mov/.mkv (H.264 at the input's
    frame rate, size and pixel format, its sound copied), .gif, or a folder of PNG frames (no extension).

    Finished frames are cached beside ``output``; a rerun with the same input and settings continues from them.
    The cache is removed once the output is in place. ``on_frame(index, dream)`` is called after each frame is
    cached (a test stops a run there). Returns a :class:`VideoReport`.
    """
    from inceptionism.api import get_model
    from inceptionism.devices import pick_device

    src, out = Path(input_path), Path(output)
    config, settings = config.validate(), settings.validate()
    if settings.folder_fps is not None and not src.is_dir():
        raise ConfigError("--fps is for a folder of frames; a video file keeps its own frame rate")
    kind = check_video_paths(src, out)
    require_cv2()
    info = probe(src, folder_fps=settings.folder_fps)
    indices = span_indices(info, settings.start, settings.end)
    if info.variable_fps:
        note(
            f"{show(src)} has a variable frame rate; its frames are written at a constant {float(info.fps):.3f} fps "
            "(their average), so their timing may shift slightly against the sound"
        )
    if info.has_audio and kind != "video":
        note(f"a {'GIF' if kind == 'gif' else 'frame folder'} has no sound; the audio is not kept")
    device = pick_device(config.device)
    dreamer = FrameDreamer(get_model(config.model, config.weights, device), config, settings, device)
    key = {"command": "video", "input": _input_identity(src), "settings": config.to_dict(), "video": settings.record()}
    cache = FrameCache(cache_folder(out), key, note=note)
    report = VideoReport(out, 0, 0, {"decode": 0.0, "flow": 0.0, "dream": 0.0, "encode": 0.0, "cache": 0.0})
    frames = _timed(read_frames(src, settings.start, settings.end, folder_fps=settings.folder_fps), report.seconds)
    head = next(frames, None)
    if head is None:
        raise ImageError(f"{show(src)} has no frames to read between the given --start and --end")
    dreamer.prepare(head[1])
    record = dreamer.settings_record()
    writer = output_writer(out, src, info, kind, indices, record, note)
    with writer:
        _run(itertools.chain([head], frames), len(indices), dreamer, cache, writer, report, quiet, on_frame)
        began = time.perf_counter()
    report.seconds["encode"] += time.perf_counter() - began  # the encoder's last frames, the move into place
    if kind != "video":  # a GIF or frame folder carries its settings beside it
        from inceptionism.io import write_json

        write_json(out.with_name(out.name + ".json"), record)
    cache.remove()
    for stage, seconds in dreamer.seconds.items():
        report.seconds[stage] += seconds
    return report


def _run(
    frames: Iterator[tuple[int, np.ndarray]],
    count: int,
    dreamer: FrameDreamer,
    cache: FrameCache,
    writer: VideoWriter,
    report: VideoReport,
    quiet: bool,
    on_frame: FrameHook | None,
) -> None:
    """The frame loop: each frame read from the cache or dreamed and cached, then encoded; fills ``report``."""
    from inceptionism.sequences.batch import WorkBar, dream_work

    cached = set(cache.done())
    w, h = dreamer.work_size(writer.size[0], writer.size[1])
    first, later = dreamer.config, dreamer.later_config
    work = sum(dream_work(h, w, first if k == 0 else later) for k in range(count) if k not in cached)
    flicker = FlickerMeter()
    previous: tuple[np.ndarray, np.ndarray] | None = None
    with WorkBar(work, count, "frame", enabled=not quiet) as bar:
        for k, (_, source) in enumerate(frames):
            if k >= count:  # a variable-rate file can decode more frames than its average rate says
                break
            began = time.perf_counter()
            if k in cached:
                dream = cache.load(k)
            else:
                bar.begin(k, "", dream_work(h, w, first if previous is None else later))
                dream = dreamer.dream(source, previous, callback=bar)
                bar.end()
                began = time.perf_counter()
                cache.save(k, dream)
                report.dreamed += 1
            report.seconds["cache"] += time.perf_counter() - began
            if on_frame is not None:
                on_frame(k, dream)
            began = time.perf_counter()
            writer.write(dream)
            report.seconds["encode"] += time.perf_counter() - began
            flicker.add(source, dream)
            previous = (source, dream)
            report.frames += 1
    report.flicker = flicker.value


__all__ = [
    "VIDEO_DEFAULTS",
    "FlickerMeter",
    "FrameDreamer",
    "VideoReport",
    "VideoSettings",
    "check_video_paths",
    "dream_video",
    "span_indices",
    "with_video_defaults",
]
