"""Keyframed schedules: numeric settings that change over a sequence's frames.

A schedule file (TOML or JSON) maps a setting to its keyframes, ``frame: value``, with an interpolation for the
whole file or per setting::

    interpolation = "smooth"          # or "linear" (the default)

    [zoom]                            # motion: zoom, rotate, pan_x, pan_y
    0 = 1.02
    60 = 1.08

    [step_size]                       # any numeric DreamConfig setting: step_size, steps, octaves, tv, …
    0 = 0.006
    119 = 0.02
    interpolation = "linear"

    ["layer.block10"]                 # a layer's (or channel term's, "layer.block12[7,31]") weight
    0 = 1.0
    90 = 0.0

Between keys, ``linear`` interpolates linearly and ``smooth`` by smoothstep (a cubic Hermite curve with zero slope
at each key: the motion eases in and out). Before the first key and after the last the value holds. Whole-number
settings (steps, octaves, …) take the interpolated value rounded to the nearest integer.
"""

from __future__ import annotations

import bisect
import dataclasses
import difflib
import json
import math
import os
import sys
from collections.abc import Collection, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from inceptionism.config import DreamConfig, parse_layers
from inceptionism.errors import ConfigError
from inceptionism.io.messages import reason, show

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

INTERPOLATIONS = ("linear", "smooth")
#: Settings of the zoom animation's camera (not DreamConfig fields).
MOTION = ("zoom", "rotate", "pan_x", "pan_y")
LAYER_PREFIX = "layer."
_INTERPOLATION = "interpolation"
# DreamConfig fields that are numbers but not settings of a dream's look: scheduling them makes no sense.
_NOT_SCHEDULED = frozenset({"max_pixels"})


@dataclass(frozen=True)
class Track:
    """One setting's keyframes ``((frame, value), ...)``, frames ascending, and how to interpolate between them."""

    keys: tuple[tuple[int, float], ...]
    interpolation: str = "linear"

    def value(self, frame: int) -> float:
        """The value at ``frame`` (0 or more): exact at a key, interpolated between keys, held outside them."""
        frames = [f for f, _ in self.keys]
        i = bisect.bisect_right(frames, frame)
        if i == 0:
            return self.keys[0][1]
        if i == len(frames):
            return self.keys[-1][1]
        (f0, v0), (f1, v1) = self.keys[i - 1], self.keys[i]
        t = (frame - f0) / (f1 - f0)
        if self.interpolation == "smooth":
            t = t * t * (3.0 - 2.0 * t)
        return v0 + (v1 - v0) * t


class Schedule:
    """Named :class:`Track` s: ``Schedule.load("moves.toml").value("zoom", 30)``."""

    def __init__(self, tracks: Mapping[str, Track]) -> None:
        self.tracks = dict(tracks)

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> Schedule:
        """Read a ``.toml`` or ``.json`` schedule file; :class:`ConfigError` for any problem, naming the file."""
        p = Path(path)
        try:
            text = p.read_text(encoding="utf-8")
        except FileNotFoundError:
            raise ConfigError(f"schedule file {show(p)} does not exist; check the path") from None
        except (OSError, UnicodeDecodeError) as exc:
            raise ConfigError(f"cannot read schedule file {show(p)}: {reason(exc)}") from exc
        try:
            data = tomllib.loads(text) if p.suffix.lower() == ".toml" else json.loads(text)
        except ValueError as exc:  # TOMLDecodeError and JSONDecodeError are ValueErrors
            kind = "TOML" if p.suffix.lower() == ".toml" else "JSON"
            raise ConfigError(f"schedule file {show(p)} is not valid {kind}: {reason(exc)}") from exc
        try:
            return cls.from_dict(data)
        except ConfigError as exc:
            raise ConfigError(f"schedule file {show(p)}: {exc}") from None

    @classmethod
    def from_dict(cls, data: Any) -> Schedule:
        """From ``{setting: {frame: value, ...[, "interpolation": ...]}, ["interpolation": ...]}``."""
        if not isinstance(data, Mapping):
            raise ConfigError('a schedule is a table of settings, e.g. {"zoom": {"0": 1.02, "60": 1.08}}')
        default = _interpolation(data.get(_INTERPOLATION, "linear"), "the file")
        tracks = {}
        for name, keys in data.items():
            if name == _INTERPOLATION:
                continue
            if not isinstance(keys, Mapping):
                raise ConfigError(f"setting {name!r}: expected a table of frame = value, got {keys!r}")
            how = _interpolation(keys.get(_INTERPOLATION, default), repr(name))
            points = sorted(_key(name, f, v) for f, v in keys.items() if f != _INTERPOLATION)
            if not points:
                raise ConfigError(f"setting {name!r} has no keyframes; give at least one frame = value")
            twice = [a for (a, _), (b, _) in zip(points, points[1:], strict=False) if a == b]
            if twice:
                raise ConfigError(f"setting {name!r} has two keys at frame {twice[0]}")
            tracks[str(name)] = Track(tuple(points), how)
        if not tracks:
            raise ConfigError("the schedule names no setting")
        return cls(tracks)

    def to_dict(self) -> dict[str, dict[str, Any]]:
        """The schedule in its file form (interpolation per setting), for an output's metadata."""
        return {
            name: {**{str(f): v for f, v in track.keys}, _INTERPOLATION: track.interpolation}
            for name, track in self.tracks.items()
        }

    def __contains__(self, setting: object) -> bool:
        return setting in self.tracks

    def value(self, setting: str, frame: int) -> float:
        """``setting``'s value at ``frame``; :class:`ConfigError` if the schedule has no such setting."""
        if setting not in self.tracks:
            raise ConfigError(f"the schedule has no setting {setting!r}; it has {', '.join(self.tracks)}")
        if frame < 0:
            raise ConfigError(f"frame {frame} is out of range: frames count from 0")
        return self.tracks[setting].value(frame)

    def check(self, frames: int, known: Collection[str]) -> None:
        """Every setting must be in ``known`` (or a ``layer.NAME``) and every key frame in ``0 .. frames - 1``."""
        for name, track in self.tracks.items():
            if name.startswith(LAYER_PREFIX):
                if not name[len(LAYER_PREFIX) :]:
                    raise ConfigError(f"schedule setting {name!r} names no layer; e.g. 'layer.block10'")
                parse_layers([name[len(LAYER_PREFIX) :]])
            elif name not in known:
                close = difflib.get_close_matches(name, list(known), n=1)
                hint = f" (did you mean {close[0]!r}?)" if close else ""
                raise ConfigError(
                    f"schedule: unknown setting {name!r}{hint}; schedulable: {', '.join(sorted(known))}, layer.NAME"
                )
            last = track.keys[-1][0]
            if last >= frames:
                raise ConfigError(
                    f"schedule: setting {name!r} has a key at frame {last}, but there are {frames} frames (0 to "
                    f"{frames - 1})"
                )

    def configure(self, config: DreamConfig, frame: int, default_layers: tuple[str, ...] = ()) -> DreamConfig:
        """``config`` with the scheduled dream settings at ``frame`` (motion settings are left to the caller),
        validated; a bad scheduled value is a :class:`ConfigError` naming the frame.

        ``default_layers``: the model's default layers, which a ``layer.NAME`` weight is applied to when the
        config names no layers.
        """
        changes: dict[str, Any] = {}
        extra = dict(config.extra)
        types = _numeric_fields()
        weights: dict[str, float] = {}
        for name in self.tracks:
            value = self.tracks[name].value(frame)
            if name.startswith(LAYER_PREFIX):
                weights[name[len(LAYER_PREFIX) :]] = value
            elif name in types:
                changes[name] = round(value) if types[name] is int else value
            elif name in extra:
                extra[name] = round(value) if isinstance(extra[name], int) else value
        if weights:
            changes["layers"] = _weighted_layers(config, weights, default_layers)
        try:
            return config.replace(**changes, extra=extra).validate()
        except ConfigError as exc:
            raise ConfigError(f"schedule at frame {frame}: {exc}") from None


def schedulable(config: DreamConfig) -> set[str]:
    """Names a schedule may use besides ``layer.NAME``: motion, numeric DreamConfig fields, numeric extras."""
    extras = {k for k, v in config.extra.items() if _is_number(v)}
    return set(MOTION) | set(_numeric_fields()) | extras


def _numeric_fields() -> dict[str, type]:
    """DreamConfig fields holding a number (``int | None`` included) → int or float."""
    out: dict[str, type] = {}
    for f in dataclasses.fields(DreamConfig):
        kinds = {part.strip() for part in str(f.type).split("|")}
        if f.name in _NOT_SCHEDULED or not kinds & {"int", "float"} or kinds - {"int", "float", "None"}:
            continue
        out[f.name] = float if "float" in kinds else int
    return out


def _weighted_layers(config: DreamConfig, weights: Mapping[str, float], default_layers: tuple[str, ...]) -> tuple:
    if config.objective is not None:
        raise ConfigError("layer.NAME schedules weigh --layers terms; they cannot change an --objective expression")
    items = parse_layers(config.layers)
    if not items and (config.guide or not config.classes):
        items = [(name, 1.0) for name in default_layers]
    found = dict(items)
    found.update(weights)  # a scheduled layer the config does not name is added to it
    return tuple(f"{name}:{weight!r}" for name, weight in found.items())


def _interpolation(value: object, where: str) -> str:
    if value not in INTERPOLATIONS:
        raise ConfigError(f"interpolation of {where} must be one of {', '.join(INTERPOLATIONS)}, got {value!r}")
    return str(value)


def _key(name: object, frame: object, value: object) -> tuple[int, float]:
    try:
        index = int(str(frame).strip())
    except ValueError:
        raise ConfigError(f"setting {name!r}: keyframe {frame!r} is not a frame number (0, 1, 2, …)") from None
    if index < 0:
        raise ConfigError(f"setting {name!r}: frame {index} is out of range: frames count from 0")
    if not _is_number(value) or not math.isfinite(float(value)):  # type: ignore[arg-type]
        raise ConfigError(f"setting {name!r} at frame {index}: expected a number, got {value!r}")
    return index, float(value)  # type: ignore[arg-type]


def _is_number(value: object) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


__all__ = ["INTERPOLATIONS", "LAYER_PREFIX", "MOTION", "Schedule", "Track", "schedulable"]
