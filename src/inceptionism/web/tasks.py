"""The studio's two kinds of work, as functions of checked inputs: a dream written as a PNG with its settings,
and a zoom animation written as an MP4. Independent of Gradio; each returns a :data:`~.jobs.Work` for a
:class:`~.jobs.Job`.

Inputs are files Gradio received (checked by :func:`~.limits.check_upload`); outputs go in a folder of the
job's own, under names made here: nothing the visitor typed becomes a path.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Mapping
from fractions import Fraction
from pathlib import Path
from typing import Any

import numpy as np

from inceptionism.config import DreamConfig
from inceptionism.engine import Progress
from inceptionism.errors import ConfigError, WeightsError
from inceptionism.sequences.batch import WorkBar
from inceptionism.web.jobs import Reporter, Work, preview_image
from inceptionism.web.limits import Limits, check_upload, check_work

# DreamConfig fields the page sets; everything else (device, weights files, memory, limits) is the server's.
FORM_FIELDS = (
    "model",
    "layers",
    "octaves",
    "steps",
    "step_size",
    "seed",
    "jitter",
    "classes",
    "tv",
    "l2_pull",
    "grad_norm",
    "grad_blur",
    "keep_colors",
    "seamless",
    "guide",
    "mask",
    "mask_layers",
    "mask_strength",
)
# Form fields that hold an uploaded file: a settings record names the file but cannot give it back.
FILE_FIELDS = {"guide": "guide image", "mask": "mask"}


def config_fields() -> set[str]:
    return {f.name for f in dataclasses.fields(DreamConfig)}


def config_from_form(values: Mapping[str, Any], preset: str | None, device: str = "auto") -> DreamConfig:
    """A validated config: ``preset`` (or the defaults), then the page's ``values`` (:data:`FORM_FIELDS`), then
    the server's device. ``octaves`` 0 or None means automatic; empty layers mean the model's defaults."""
    from inceptionism.api import make_config

    known = config_fields()
    settings = {k: v for k, v in values.items() if k in known and k in FORM_FIELDS}
    if not settings.get("octaves"):
        settings["octaves"] = None
    for key in ("steps", "seed", "jitter", "octaves"):
        if isinstance(settings.get(key), float) and float(settings[key]).is_integer():
            settings[key] = int(settings[key])
    for key in ("layers", "mask_layers", "classes"):
        settings[key] = tuple(str(x).strip() for x in settings.get(key) or () if str(x).strip())
    if settings["mask_layers"] and not settings.get("mask"):
        raise ConfigError("mask layers are dreamt where a mask is white: upload a mask, or clear the mask layers")
    return make_config(None, preset or None, **settings, device=device)


def form_from_settings(settings: Mapping[str, Any]) -> dict[str, Any]:
    """The page's values from a picture's settings (:func:`~inceptionism.io.read_settings`): the form's fields
    only (settings this version does not know are left out). The :data:`FILE_FIELDS` hold the file names the
    record gives, or None: the files themselves are not restored (the visitor uploads them again)."""
    try:
        cfg = DreamConfig.from_dict({k: v for k, v in settings.items() if k in config_fields()}).validate()
    except (ConfigError, TypeError) as exc:
        raise ConfigError(f"these settings do not fit this version: {exc}") from None
    values = {k: getattr(cfg, k) for k in FORM_FIELDS}
    for key in ("layers", "mask_layers", "classes"):
        values[key] = list(getattr(cfg, key))
    values["octaves"] = cfg.octaves or 0
    return values


def files_note(values: Mapping[str, Any]) -> str:
    """One line saying which files the loaded settings name and that they must be uploaded again; "" if none."""
    named = [f"a {what} ({Path(str(values[key])).name})" for key, what in FILE_FIELDS.items() if values.get(key)]
    if not named:
        return ""
    again = "them" if len(named) > 1 else "it"
    return f"They were made with {' and '.join(named)}: upload {again} again (files are not kept in settings)."


def require_weights(model: str) -> None:
    """Refuse a model whose weights are not on this server: the studio never downloads on a visitor's click."""
    from inceptionism.models import get_model_spec, weights_available
    from inceptionism.models.weights import missing_weights_message

    spec = get_model_spec(model)
    if weights_available(spec) is None:
        raise WeightsError(f"{missing_weights_message(spec)}; then restart the studio")


def dream_task(source: Path, config: DreamConfig, out_dir: Path, limits: Limits) -> Work:
    """Dream on ``source`` with ``config``; the result is ``out_dir/dream-<seed>.png`` with its settings."""

    def work(reporter: Reporter) -> Path:
        from inceptionism.api import dream, get_model
        from inceptionism.devices import pick_device
        from inceptionism.io import save_image

        height, width = check_upload(source, limits)
        for key, what in FILE_FIELDS.items():
            if getattr(config, key) is not None:
                check_upload(Path(getattr(config, key)), limits, f"the {what}")
        check_work(height, width, config, limits)
        require_weights(config.model)
        reporter.progress(0.0, f"loading {config.model}")
        model = get_model(config.model, config.weights, pick_device(config.device))
        reporter.check()
        result = dream(source, config, model=model, callback=reporter.dream_callback())
        out = out_dir / f"dream-{config.seed}.png"
        save_image(result, out, json.loads(result.info["inceptionism"]))
        return out

    return work


@dataclasses.dataclass(frozen=True)
class ZoomRequest:
    """A zoom animation's settings from the page: frames, frames per second, zoom per frame, degrees of
    rotation per frame, steps per octave after the first frame."""

    frames: int = 24
    fps: int = 12
    zoom: float = 1.05
    rotate: float = 0.0
    frame_steps: int | None = None


def zoom_task(source: Path, config: DreamConfig, request: ZoomRequest, out_dir: Path, limits: Limits) -> Work:
    """A zoom animation of ``source``: ``out_dir/zoom.mp4`` with its settings in the video's comment."""

    def work(reporter: Reporter) -> Path:
        from inceptionism.api import get_model, settings_record
        from inceptionism.devices import pick_device, pick_precision
        from inceptionism.engine import build_objective
        from inceptionism.io import load_image
        from inceptionism.sequences.cache import FrameCache
        from inceptionism.sequences.media import VideoWriter, require_av
        from inceptionism.sequences.zoom import Motion, ZoomSettings, zoom_frames

        require_av()
        height, width = check_upload(source, limits)
        settings = ZoomSettings(
            frames=int(request.frames),
            fps=Fraction(int(request.fps)),
            motion=Motion(zoom=float(request.zoom), rotate=float(request.rotate)),
            frame_steps=int(request.frame_steps) if request.frame_steps else None,
        ).validate(config)
        check_work(height, width, config, limits, frames=settings.frames)
        loaded = load_image(source, max_pixels=limits.max_pixels)
        require_weights(config.model)
        reporter.progress(0.0, f"loading {config.model}")
        device = pick_device(config.device)
        model = get_model(config.model, config.weights, device)
        record = settings_record(
            config, model, build_objective(config, model, loaded.rgb), pick_precision(config.precision, device)
        )
        record["zoom"] = settings.record()
        cache = FrameCache(out_dir / "frames", {"settings": record}, note=lambda _: None)
        out = out_dir / "zoom.mp4"
        bar = _FrameBar(reporter, settings.frames)
        metadata = {"comment": json.dumps(record, sort_keys=True, allow_nan=False)}
        with VideoWriter(out, settings.fps, (width, height), metadata=metadata, note=lambda _: None) as writer:
            for index, frame in enumerate(zoom_frames(loaded.rgb, config, settings, cache, model=model, bar=bar)):
                writer.write(frame)
                reporter.preview(preview_image(_tensor(frame)))
                reporter.progress((index + 1) / settings.frames, f"frame {index + 1}/{settings.frames}")
        cache.remove()
        return out

    return work


def _tensor(frame: np.ndarray) -> Any:
    import torch

    return torch.from_numpy(frame).permute(2, 0, 1)[None].float() / 255


class _FrameBar(WorkBar):
    """The zoom's per-dream callback: reports each frame's steps, and stops a cancelled job between steps."""

    def __init__(self, reporter: Reporter, frames: int) -> None:
        super().__init__(1, frames, "frame", enabled=False)
        self._reporter = reporter
        self._frames = frames
        self._index = 0

    def begin(self, index: int, label: str, work: int) -> None:
        self._index = index

    def end(self, counted: bool = True) -> None:
        pass

    def __call__(self, p: Progress) -> None:
        done = p.work_done / p.work_total if p.work_total else p.done / max(p.total, 1)
        text = f"frame {self._index + 1}/{self._frames}, octave {p.octave}/{p.octaves}, step {p.step}/{p.steps}"
        self._reporter.progress((self._index + done) / self._frames, text)


__all__ = [
    "FILE_FIELDS",
    "FORM_FIELDS",
    "ZoomRequest",
    "config_from_form",
    "dream_task",
    "files_note",
    "form_from_settings",
    "require_weights",
    "zoom_task",
]
