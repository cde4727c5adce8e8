"""Zoom animations: the feedback loop of Google's DeepDream notebook.

Frame 0 is the dream of the input; frame k is the dream of frame k - 1 (as saved, uint8) zoomed, rotated and
panned a little: ``frame_k = dream(warp(frame_{k-1}))``. Details grow out of the dream and stream toward the
viewer. Any numeric setting can follow a keyframed schedule (:mod:`.schedule`), the camera's motion included.

Finished frames are kept in a :class:`~inceptionism.sequences.cache.FrameCache` beside the output, so a run
stopped by Ctrl-C, ``kill`` or a crash continues where it stopped when the same command runs again, and gives the
same animation as an uninterrupted run, bit for bit. The output (MP4/MOV/MKV, GIF or a folder of PNGs) is written
only when every frame is there, atomically; its settings (schedule included) go in a video's ``comment``
metadata, or beside a GIF or frame folder in ``<output>.json``.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from fractions import Fraction
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from inceptionism.config import DreamConfig
from inceptionism.errors import ConfigError, ImageError
from inceptionism.io.messages import show
from inceptionism.models import DreamModel
from inceptionism.sequences.batch import WorkBar, dream_work
from inceptionism.sequences.cache import FrameCache, Note, cache_folder, print_note, source_identity
from inceptionism.sequences.media import VideoWriter, check_video_output, output_kind, require_av
from inceptionism.sequences.schedule import MOTION, Schedule, schedulable

ZOOM_RANGE = (0.5, 2.0)  # per frame; beyond it the picture leaves (or fills) the frame within a few frames
ROTATE_LIMIT = 90.0  # degrees per frame
FPS_RANGE = (Fraction(1, 10), Fraction(240))


@dataclass(frozen=True)
class Motion:
    """The camera's move from one frame to the next.

    ``zoom``: scale per frame (> 1 zooms in, < 1 out); ``rotate``: degrees per frame, the picture turning
    counter-clockwise; ``pan_x``, ``pan_y``: pixels per frame the view moves right and down (the picture moves
    the other way).
    """

    zoom: float = 1.05
    rotate: float = 0.0
    pan_x: float = 0.0
    pan_y: float = 0.0

    def validate(self) -> Motion:
        """:class:`ConfigError` naming the first value out of range."""
        for name, value in asdict(self).items():
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
                raise ConfigError(f"--{name.replace('_', '-')} must be a finite number, got {value!r}")
        low, high = ZOOM_RANGE
        if not low <= self.zoom <= high:
            raise ConfigError(f"--zoom must be between {low:g} and {high:g} (a scale per frame), got {self.zoom:g}")
        if abs(self.rotate) > ROTATE_LIMIT:
            raise ConfigError(f"--rotate must be within ±{ROTATE_LIMIT:g} degrees per frame, got {self.rotate:g}")
        return self


def parse_pan(text: str) -> tuple[float, float]:
    """``"DX,DY"`` (pixels per frame) → ``(dx, dy)``; :class:`ConfigError` for anything else."""
    parts = text.split(",")
    try:
        if len(parts) != 2:
            raise ValueError
        dx, dy = (float(p) for p in parts)
    except ValueError:
        raise ConfigError(f"--pan must be DX,DY in pixels per frame, e.g. 2,-1; got {text!r}") from None
    if not (math.isfinite(dx) and math.isfinite(dy)):
        raise ConfigError(f"--pan must be finite numbers, got {text!r}")
    return dx, dy


def parse_fps(text: str) -> Fraction:
    """``"30"``, ``"29.97"`` or ``"30000/1001"`` → a :class:`Fraction`; :class:`ConfigError` if not a rate."""
    try:
        fps = Fraction(text.strip())
    except (ValueError, ZeroDivisionError):
        raise ConfigError(f"--fps must be a number of frames per second, e.g. 30 or 30000/1001; got {text!r}") from None
    low, high = FPS_RANGE
    if not low <= fps <= high:
        raise ConfigError(f"--fps must be between {float(low):g} and {float(high):g}, got {text}")
    return fps


def warp(image: torch.Tensor, motion: Motion) -> torch.Tensor:
    """``image`` (1, 3, H, W) in [0, 1] seen through the moved camera: zoomed about its centre, rotated, panned.

    Bilinear sampling; the borders a zoom-out, rotation or pan uncovers are filled by reflection. Same shape and
    range out.
    """
    _, _, h, w = image.shape
    angle = math.radians(motion.rotate)
    c, s = math.cos(angle) / motion.zoom, math.sin(angle) / motion.zoom
    # Output pixel p (from the centre) samples the input at R p / zoom + pan; in grid_sample's normalised
    # coordinates (x / (w / 2), y / (h / 2)) the rotation's off-diagonal terms take the aspect ratio.
    theta = torch.tensor(
        [[c, -s * h / w, 2 * motion.pan_x / w], [s * w / h, c, 2 * motion.pan_y / h]], dtype=torch.float32
    )
    grid = F.affine_grid(theta[None], [1, 3, h, w], align_corners=False)
    out = F.grid_sample(image.float(), grid, mode="bilinear", padding_mode="reflection", align_corners=False)
    return out.clamp_(0.0, 1.0)


@dataclass(frozen=True)
class ZoomSettings:
    """A zoom animation's own settings (the dream's are a :class:`DreamConfig`).

    ``frame_steps``: steps per octave for frames after the first (they start from a dream already; None: the
    config's ``steps``). A schedule's values override ``motion``, ``frame_steps`` and the config, per frame.
    """

    frames: int = 120
    fps: Fraction = Fraction(30)
    motion: Motion = field(default_factory=Motion)
    frame_steps: int | None = None
    schedule: Schedule | None = None

    def validate(self, config: DreamConfig) -> ZoomSettings:
        if isinstance(self.frames, bool) or not isinstance(self.frames, int) or self.frames < 1:
            raise ConfigError(f"--frames must be a whole number, at least 1; got {self.frames!r}")
        if self.frame_steps is not None and (not isinstance(self.frame_steps, int) or self.frame_steps < 1):
            raise ConfigError(f"--frame-steps must be a whole number, at least 1; got {self.frame_steps!r}")
        self.motion.validate()
        if self.schedule is not None:
            self.schedule.check(self.frames, schedulable(config))
        return self

    def motion_at(self, index: int) -> Motion:
        """The camera's move into frame ``index`` (scheduled values at that frame, else ``motion``'s)."""
        if self.schedule is None:
            return self.motion
        values = {k: self.schedule.value(k, index) for k in MOTION if k in self.schedule}
        try:
            return Motion(**{**asdict(self.motion), **values}).validate()
        except ConfigError as exc:
            raise ConfigError(f"schedule at frame {index}: {exc}") from None

    def config_at(self, config: DreamConfig, index: int, default_layers: tuple[str, ...] = ()) -> DreamConfig:
        """Frame ``index``'s dream settings: its own seed (``seed + index``), ``frame_steps`` after frame 0,
        then the schedule's values."""
        cfg = config.replace(seed=config.seed + index)
        if index > 0 and self.frame_steps is not None:
            cfg = cfg.replace(steps=self.frame_steps)
        if self.schedule is not None:
            return self.schedule.configure(cfg, index, default_layers)
        return cfg

    def record(self) -> dict[str, Any]:
        """The animation's settings as they go in the output's metadata and the cache's key."""
        out: dict[str, Any] = {
            "frames": self.frames,
            "fps": str(self.fps),
            "frame_steps": self.frame_steps,
            **asdict(self.motion),
        }
        if self.schedule is not None:
            out["schedule"] = self.schedule.to_dict()
        return out


def check_zoom_output(input_path: Path, output: str | os.PathLike[str]) -> str:
    """Check, before any work, that ``output`` can be written and needs nothing missing; returns its kind
    (``"video"``, ``"gif"`` or ``"folder"``, :func:`~inceptionism.sequences.media.output_kind`)."""
    out = Path(output)
    check_video_output(out)
    kind = output_kind(out)
    if kind != "folder":
        require_av()
    if out.resolve() == input_path.resolve():
        raise ImageError(f"refusing to overwrite the input {show(input_path)}; choose another -o")
    return kind


FrameHook = Callable[[int, np.ndarray], None]


def zoom_frames(
    image: torch.Tensor,
    config: DreamConfig,
    settings: ZoomSettings,
    cache: FrameCache,
    *,
    model: DreamModel,
    bar: WorkBar | None = None,
    on_frame: FrameHook | None = None,
) -> Iterator[np.ndarray]:
    """The animation's frames in order, (H, W, 3) uint8, streamed: cached frames are read back, missing ones
    dreamed (and cached) from the previous frame as saved. ``image``: the input, (1, 3, H, W) in [0, 1].

    ``on_frame(index, frame)`` is called with each frame once it is cached (a test stops a run there to resume
    it).
    """
    from inceptionism.api import dream

    defaults = tuple(model.spec.default_layers)
    previous: np.ndarray | None = None
    for index in range(settings.frames):
        if index in cache:
            frame = cache.load(index)
        else:
            if index == 0:
                start = image[0]
            else:
                assert previous is not None
                moved = warp(torch.from_numpy(previous).permute(2, 0, 1)[None].float() / 255, settings.motion_at(index))
                start = moved[0]
            cfg = settings.config_at(config, index, defaults)
            if bar is not None:
                h, w = start.shape[-2:]
                bar.begin(index, "", dream_work(h, w, cfg))
            picture = dream(start, cfg, model=model, callback=bar)
            frame = np.array(picture.convert("RGB"), dtype=np.uint8)
            cache.save(index, frame)
            if bar is not None:
                bar.end()
        if on_frame is not None:
            on_frame(index, frame)
        previous = frame
        yield frame


def run_zoom(
    input_path: str | os.PathLike[str],
    output: str | os.PathLike[str],
    config: DreamConfig,
    settings: ZoomSettings,
    *,
    quiet: bool = False,
    note: Note = print_note,
    on_frame: FrameHook | None = None,
) -> Path:
    """Make the zoom animation of ``input_path`` into ``output`` (.mp4/.mov/.mkv, .gif or a folder of PNGs).

    Resumes from the frames cached beside ``output`` by an earlier run with the same input and settings; removes
    the cache once the output is written. Returns the output's path.
    """
    from inceptionism.api import get_model, settings_record
    from inceptionism.devices import pick_device, pick_precision
    from inceptionism.engine import build_objective
    from inceptionism.io import load_image

    src = Path(input_path)
    config = config.validate()
    settings = settings.validate(config)
    kind = check_zoom_output(src, output)
    loaded = load_image(src, max_pixels=config.max_pixels)
    if loaded.alpha is not None:
        note("the input's transparency is dropped: animation frames are opaque")
    device = pick_device(config.device)
    model = get_model(config.model, config.weights, device)
    defaults = tuple(model.spec.default_layers)
    for index in range(settings.frames):  # every frame's settings are checked before the first is dreamed
        settings.config_at(config, index, defaults)
        settings.motion_at(index)
    # The settings as recorded: weights and guide named by file name and SHA-256, the precision resolved.
    record = settings_record(
        config, model, build_objective(config, model, loaded.rgb), pick_precision(config.precision, device)
    )
    motion = settings.record()
    del motion["frames"], motion["fps"]  # frame k depends on frames 0..k only: a longer run can reuse them
    key = {"command": "zoom", "input": source_identity(src), "settings": record, "zoom": motion}
    cache = FrameCache(cache_folder(output), key, note=note)
    cached = set(cache.done())
    h, w = loaded.rgb.shape[-2:]
    todo = [i for i in range(settings.frames) if i not in cached]
    work = sum(dream_work(h, w, settings.config_at(config, i, defaults)) for i in todo)
    record = {**record, "zoom": settings.record()}
    with WorkBar(work, settings.frames, "frame", enabled=not quiet) as bar:
        frames = zoom_frames(loaded.rgb, config, settings, cache, model=model, bar=bar, on_frame=on_frame)
        written = _write(frames, output, kind, settings.fps, (w, h), record, note)
    cache.remove()
    return written


def _write(
    frames: Iterator[np.ndarray],
    output: str | os.PathLike[str],
    kind: str,
    fps: Fraction,
    size: tuple[int, int],
    record: dict[str, Any],
    note: Note,
) -> Path:
    """Stream ``frames`` into ``output``; the settings go in a video's ``comment`` metadata, else (GIF, frame
    folder) in a sidecar ``<output>.json``."""
    from inceptionism.io import write_json

    text = json.dumps(record, sort_keys=True, allow_nan=False)
    metadata = {"comment": text} if kind == "video" else None
    with VideoWriter(output, fps, size, metadata=metadata, note=note) as writer:
        for frame in frames:
            writer.write(frame)
    out = Path(output)
    if kind != "video":
        write_json(out.with_name(out.name + ".json"), record)
    return out


__all__ = [
    "Motion",
    "ZoomSettings",
    "check_zoom_output",
    "parse_fps",
    "parse_pan",
    "run_zoom",
    "warp",
    "zoom_frames",
]
