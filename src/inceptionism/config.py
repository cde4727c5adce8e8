"""DreamConfig: every setting of a dream, shared by the CLI, the Python API and the settings files.

A config is a plain dataclass that round-trips through JSON (``to_dict`` / ``from_dict``), so a picture's
settings, embedded in its PNG, reproduce it. ``validate`` turns every out-of-range value into one clear message.
"""

from __future__ import annotations

import dataclasses
import difflib
import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from inceptionism.errors import ConfigError
from inceptionism.objectives import LOSSES
from inceptionism.transforms import GRAD_NORMS

DEVICES = ("auto", "cpu", "cuda", "mps")
PRECISIONS = ("auto", "fp32", "bf16", "fp16")
DEFAULT_MAX_PIXELS = 100_000_000


@dataclass
class DreamConfig:
    """All settings of one dream. Image-space values (``step_size``) are in units of [0, 1] pixels."""

    model: str = "efficientnet-lite0"
    weights: str | None = None
    layers: tuple[str, ...] = ()  # "NAME" or "NAME:WEIGHT"; empty means the model's default layers
    loss: str = "l2"
    octaves: int | None = None  # None: enough that the smallest octave's short side is about 150 px
    octave_scale: float = 1.4
    min_size: int = 48
    steps: int = 12
    step_size: float = 0.012
    grad_norm: str = "mean_abs"
    jitter: int = 32
    seed: int = 0
    tile_size: int | None = None  # None: chosen from the memory available
    tile_overlap: int = 64
    device: str = "auto"
    precision: str = "auto"  # bf16 on GPUs and on CPUs with native bf16, else fp32 (devices.pick_precision)
    compile: bool = False  # torch.compile the network; pays off on GPUs, not on the CPUs measured (README)
    max_pixels: int = DEFAULT_MAX_PIXELS
    max_memory: str | None = None  # e.g. "2GB"; None: what the device has free
    extra: dict[str, Any] = field(default_factory=dict)  # settings of later features, kept on round trips

    def validate(self) -> DreamConfig:
        """Check every value; raise :class:`ConfigError` naming the first bad one and its valid range."""
        if self.octaves is not None:
            _positive_int("octaves", self.octaves)
        _positive_int("steps", self.steps)
        _positive_int("min-size", self.min_size)
        _positive_int("jitter", self.jitter, allow_zero=True)
        _positive_int("tile-overlap", self.tile_overlap, allow_zero=True)
        _positive_int("max-pixels", self.max_pixels)
        if self.tile_size is not None:
            _positive_int("tile-size", self.tile_size)
            if self.tile_size < 32:
                raise ConfigError(f"--tile-size must be at least 32 pixels, got {self.tile_size}")
        _finite("step-size", self.step_size)
        if self.step_size <= 0:
            raise ConfigError(f"--step-size must be greater than 0, got {self.step_size:g}")
        _finite("octave-scale", self.octave_scale)
        if self.octave_scale <= 1:
            raise ConfigError(f"--octave-scale must be greater than 1, got {self.octave_scale:g}")
        _choice("loss", self.loss, LOSSES)
        _choice("grad-norm", self.grad_norm, GRAD_NORMS)
        _choice("device", self.device.split(":")[0], DEVICES)
        _choice("precision", self.precision, PRECISIONS)
        parse_layers(self.layers)
        if self.max_memory is not None:
            from inceptionism.memory import parse_bytes

            parse_bytes(self.max_memory)
        return self

    def replace(self, **changes: Any) -> DreamConfig:
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["layers"] = list(self.layers)
        if not d["extra"]:
            del d["extra"]
        return d

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> DreamConfig:
        """Build from a settings mapping; unknown keys are an error (a typo must not pass silently)."""
        known = {f.name for f in dataclasses.fields(cls)}
        data = {k: v for k, v in data.items() if k not in ("version", "objective")}
        unknown = [k for k in data if k not in known]
        if unknown:
            close = difflib.get_close_matches(unknown[0], known, n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            raise ConfigError(f"unknown setting {unknown[0]!r}{hint}")
        values = dict(data)
        if "layers" in values:
            values["layers"] = tuple(values["layers"] or ())
        try:
            return cls(**values)
        except TypeError as e:
            raise ConfigError(f"bad settings: {e}") from e


PRESETS: dict[str, dict[str, Any]] = {
    "default": {},
    # The seed article's recipe (TF2 tutorial): InceptionV3 mixed3 + mixed5, loss = sum of layer means, gradient
    # divided by its std, step 0.01 in the network's [-1, 1] input space = 0.005 in [0, 1] pixels, and the
    # tutorial's octaves: 5 scales 1.3 apart (its range(-2, 3)), 50 steps each, no jitter.
    "seed": {
        "model": "inception_v3",
        "layers": ("mixed3", "mixed5"),
        "loss": "mean",
        "grad_norm": "std",
        "step_size": 0.005,
        "octaves": 5,
        "octave_scale": 1.3,
        "steps": 50,
        "jitter": 0,
    },
    # The classic 2015 look: GoogLeNet inception4c, L2 loss, Google's notebook settings.
    "classic": {
        "model": "googlenet",
        "layers": ("inception4c",),
        "loss": "l2",
        "octaves": 4,
        "octave_scale": 1.4,
        "steps": 10,
        "step_size": 0.006,
    },
}


def preset(name: str) -> DreamConfig:
    """A named preset as a config: ``default``, ``seed`` (the article's recipe), ``classic`` (GoogLeNet)."""
    if name not in PRESETS:
        raise ConfigError(f"unknown preset {name!r}; choose one of {', '.join(PRESETS)}")
    return DreamConfig.from_dict(PRESETS[name])


def parse_layers(items: Iterable[str]) -> list[tuple[str, float]]:
    """``["block8:0.5", "block10"]`` or ``["block8:0.5,block10"]`` → ``[("block8", 0.5), ("block10", 1.0)]``."""
    out: list[tuple[str, float]] = []
    for item in items:
        for part in str(item).replace(",", " ").split():
            name, sep, weight = part.partition(":")
            if not name:
                raise ConfigError(f"bad layer {part!r}: expected NAME or NAME:WEIGHT")
            try:
                w = float(weight) if sep else 1.0
            except ValueError:
                raise ConfigError(f"bad layer weight in {part!r}: expected NAME:NUMBER, e.g. block10:0.5") from None
            if not math.isfinite(w):
                raise ConfigError(f"bad layer weight in {part!r}: must be a finite number")
            out.append((name, w))
    return out


def _positive_int(name: str, value: object, allow_zero: bool = False) -> None:
    if isinstance(value, bool) or not isinstance(value, int):
        raise ConfigError(f"--{name} must be a whole number, got {value!r}")
    if value < 0 or (value == 0 and not allow_zero):
        bound = "0 or more" if allow_zero else "at least 1"
        raise ConfigError(f"--{name} must be {bound}, got {value}")


def _finite(name: str, value: object) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise ConfigError(f"--{name} must be a finite number, got {value!r}")


def _choice(name: str, value: str, choices: Iterable[str]) -> None:
    choices = tuple(choices)
    if value not in choices:
        raise ConfigError(f"--{name} must be one of {', '.join(choices)}, got {value!r}")
