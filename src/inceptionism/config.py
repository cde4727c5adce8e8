"""DreamConfig: every setting of a dream, shared by the CLI, the Python API and the settings files.

A config is a plain dataclass that round-trips through JSON (``to_dict`` / ``from_dict``), so a picture's
settings, embedded in its PNG, reproduce it. ``validate`` turns every out-of-range value into one clear message.
"""

from __future__ import annotations

import dataclasses
import difflib
import math
import re
import warnings
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from inceptionism.errors import ConfigError
from inceptionism.objectives import DEFAULT_LOSS, LOSSES, check_expression, split_channels
from inceptionism.parametrize import PARAMS
from inceptionism.transforms import GRAD_NORMS

DEVICES = ("auto", "cpu", "cuda", "mps")
PRECISIONS = ("auto", "fp32", "bf16", "fp16")
DEFAULT_MAX_PIXELS = 100_000_000
# Step sizes, in [0, 1] pixels per step (the gradient normalised to mean |g| = 1). Above STEP_SIZE_WARN the photo
# is lost under rainbow noise; above STEP_SIZE_MAX the steps saturate the pixels and the dream is coloured static.
STEP_SIZE_WARN = 0.04
STEP_SIZE_MAX = 0.2
STEP_SIZE_ADVICE = f"usually 0.002 (subtle) to {STEP_SIZE_WARN:g} (strong)"
MAX_GRAD_BLUR = 64.0  # pixels; a wider blur leaves only the gradient's mean
MIN_NOISE_SIDE, MAX_NOISE_SIDE = 8, 16384
# Settings of the octave engine that --param fft (render.render) does not use: given with it, an error.
FFT_EXCLUDES = ("mask", "mask_layers", "keep_colors", "seamless", "grad_blur", "l2_pull")


class ConfigWarning(UserWarning):
    """A setting that is allowed but probably not what the user wants (e.g. a very large step size)."""


@dataclass
class DreamConfig:
    """All settings of one dream. Image-space values (``step_size``) are in units of [0, 1] pixels."""

    model: str = "efficientnet-lite0"
    weights: str | None = None
    layers: tuple[str, ...] = ()  # NAME, NAME[7,31], NAME[0:8] or NAME[top4], each with :WEIGHT or not; () = defaults
    loss: str = DEFAULT_LOSS
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
    compile: bool = False  # torch.compile the network; off by default, slower on CPUs (docs/performance.md)
    max_pixels: int = DEFAULT_MAX_PIXELS
    max_memory: str | None = None  # e.g. "2GB"; None: what the device has free
    objective: str | None = None  # an expression (objectives.parse); when set, the whole objective (recipes.py)
    classes: tuple[str, ...] = ()  # ImageNet classes whose logits to raise, by name or index
    guide: str | None = None  # guide image: the layers' terms become guide(LAYER), toward what it shows
    tv: float = 0.0  # weight of the total-variation prior, which smooths the dream
    l2_pull: float = 0.0  # weight of the L2 pull toward the input (at each octave's size): keeps the photo
    mask: str | None = None  # grayscale image: white dreams fully, black not at all (mask.py)
    mask_layers: tuple[str, ...] = ()  # with a mask: the layers dreamt where it is white; the objective elsewhere
    mask_strength: float = 1.0  # multiplies the mask, in [0, 1]
    keep_colors: bool = False  # dream the luminance only: the input's chroma is restored (colors.py)
    seamless: bool = False  # a tileable dream: its left edge continues the right, its top the bottom
    grad_blur: float = 0.0  # sigma in pixels of a Gaussian blur of each gradient: broader strokes
    noise: str | None = None  # "WxH": start from seeded noise of that size instead of an input image
    param: str = "pixel"  # with noise: "pixel" (the octave engine) or "fft" (lucid's render, render.py)
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
        if self.step_size > STEP_SIZE_MAX:
            raise ConfigError(
                f"--step-size must be at most {STEP_SIZE_MAX:g}, got {self.step_size:g} ({STEP_SIZE_ADVICE}); "
                "larger steps turn the picture into coloured static"
            )
        if self.step_size > STEP_SIZE_WARN:
            # Issued from this line (stacklevel 1) so Python's default filter shows it once per process, though
            # the CLI and the API each validate the same config.
            warnings.warn(
                f"--step-size {self.step_size:g} is large: above {STEP_SIZE_WARN:g} the picture turns into "
                f"rainbow noise ({STEP_SIZE_ADVICE})",
                ConfigWarning,
                stacklevel=1,
            )
        _finite("octave-scale", self.octave_scale)
        if self.octave_scale <= 1:
            raise ConfigError(f"--octave-scale must be greater than 1, got {self.octave_scale:g}")
        _choice("loss", self.loss, LOSSES)
        _choice("grad-norm", self.grad_norm, GRAD_NORMS)
        _choice("device", self.device.split(":")[0], DEVICES)
        _choice("precision", self.precision, PRECISIONS)
        parse_layers(self.layers)
        self._validate_objective()
        self._validate_image_controls()
        if self.max_memory is not None:
            from inceptionism.memory import parse_bytes

            parse_bytes(self.max_memory)
        return self

    def _validate_objective(self) -> None:
        if self.objective is not None:
            if not isinstance(self.objective, str):
                raise ConfigError(f"--objective must be an expression such as 'l2(block10)', got {self.objective!r}")
            check_expression(self.objective)
        if self.classes:
            from inceptionism.imagenet import class_index

            for c in self.classes:
                class_index(c)
        _finite("tv", self.tv)
        if self.tv < 0:
            raise ConfigError(f"--tv must be 0 or more, got {self.tv:g}")
        if self.guide is not None and (not isinstance(self.guide, str) or not self.guide.strip()):
            raise ConfigError(f"--guide must be an image file, got {self.guide!r}")
        _finite("l2-pull", self.l2_pull)
        if self.l2_pull < 0:
            raise ConfigError(f"--l2-pull must be 0 or more, got {self.l2_pull:g}")

    def _validate_image_controls(self) -> None:
        if self.mask is not None and (not isinstance(self.mask, str) or not self.mask.strip()):
            raise ConfigError(f"--mask must be a grayscale image file, got {self.mask!r}")
        if self.mask_layers:
            if self.mask is None:
                raise ConfigError("--mask-layers needs --mask: the layers dreamt where the mask is white")
            parse_layers(self.mask_layers)
        _finite("mask-strength", self.mask_strength)
        if not 0 <= self.mask_strength <= 1:
            raise ConfigError(f"--mask-strength must be between 0 and 1, got {self.mask_strength:g}")
        for name in ("keep_colors", "seamless"):
            if not isinstance(getattr(self, name), bool):
                raise ConfigError(f"--{name.replace('_', '-')} must be true or false, got {getattr(self, name)!r}")
        _finite("grad-blur", self.grad_blur)
        if not 0 <= self.grad_blur <= MAX_GRAD_BLUR:
            raise ConfigError(f"--grad-blur must be between 0 and {MAX_GRAD_BLUR:g} pixels, got {self.grad_blur:g}")
        _choice("param", self.param, PARAMS)
        if self.noise is not None:
            noise_size(self.noise)
        if self.param == "fft":
            if self.noise is None:
                raise ConfigError("--param fft renders from noise: give --noise WxH too (or use --param pixel)")
            engine_only = [f for f in FFT_EXCLUDES if getattr(self, f) != getattr(_DEFAULTS, f)]
            if engine_only:
                flag = "--" + engine_only[0].replace("_", "-")
                raise ConfigError(f"{flag} works in the octave engine, not in --param fft; use --param pixel")

    def replace(self, **changes: Any) -> DreamConfig:
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["layers"] = list(self.layers)
        d["classes"] = list(self.classes)
        d["mask_layers"] = list(self.mask_layers)
        if not d["extra"]:
            del d["extra"]
        return d

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> DreamConfig:
        """Build from a settings mapping; unknown keys are an error (a typo must not pass silently)."""
        known = {f.name for f in dataclasses.fields(cls)}
        data = {k: v for k, v in data.items() if k != "version"}
        unknown = [k for k in data if k not in known]
        if unknown:
            close = difflib.get_close_matches(unknown[0], known, n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            raise ConfigError(f"unknown setting {unknown[0]!r}{hint}")
        values = dict(data)
        for key in ("layers", "classes", "mask_layers"):
            if key in values:
                values[key] = tuple(values[key] or ())
        try:
            return cls(**values)
        except TypeError as e:
            raise ConfigError(f"bad settings: {e}") from e


_DEFAULTS = DreamConfig()


FFT_STEPS = 128  # lucid's render needs about this many Adam steps; the octave engine's 12 give grey mush


def render_steps(config: DreamConfig, steps_given: bool) -> DreamConfig:
    """``config`` with :data:`FFT_STEPS` steps for a ``param="fft"`` render whose steps nobody chose (the
    default step count is the octave engine's, far too few for a render from noise)."""
    if config.param == "fft" and not steps_given and config.steps == DreamConfig.steps:
        return config.replace(steps=FFT_STEPS)
    return config


def parse_layers(items: Iterable[str]) -> list[tuple[str, float]]:
    """``["block8:0.5,block10", "block12[7,31]:2"]`` → ``[("block8", 0.5), ("block10", 1.0), ("block12[7,31]", 2.0)]``.

    Terms are separated by spaces or commas outside brackets; a term is NAME, NAME[7,31], NAME[0:8] (channels 0
    to 7) or NAME[top4], then ``:WEIGHT`` or not. The channels are checked here and kept in the name
    (:func:`~inceptionism.objectives.split_channels` splits them off).
    """
    out: list[tuple[str, float]] = []
    for item in items:
        for part in _layer_terms(str(item)):
            if "]" in part:  # NAME[...] then :WEIGHT or nothing; a range's colon is inside the brackets
                head, _, tail = part.rpartition("]")
                name, sep, weight = head + "]", tail[:1], tail[1:]
                if sep not in ("", ":"):
                    raise ConfigError(f"bad layer {part!r}: expected NAME[...] or NAME[...]:WEIGHT")
            else:
                name, sep, weight = part.partition(":")
            if not name:
                raise ConfigError(f"bad layer {part!r}: expected NAME or NAME:WEIGHT")
            split_channels(name)
            try:
                w = float(weight) if sep else 1.0
            except ValueError:
                raise ConfigError(f"bad layer weight in {part!r}: expected NAME:NUMBER, e.g. block10:0.5") from None
            if not math.isfinite(w):
                raise ConfigError(f"bad layer weight in {part!r}: must be a finite number")
            out.append((name, w))
    return out


def _layer_terms(text: str) -> list[str]:
    """Split on spaces and commas outside brackets: ``"a:0.5,b[7, 31]"`` → ``["a:0.5", "b[7,31]"]``."""
    terms, current, depth = [], "", 0
    for ch in text:
        depth += (ch == "[") - (ch == "]")
        if depth < 0:
            break
        if depth == 0 and (ch == "," or ch.isspace()):
            terms.append(current)
            current = ""
        elif not (depth > 0 and ch.isspace()):
            current += ch
    terms.append(current)
    if depth != 0:
        raise ConfigError(f"bad layers {text!r}: its brackets [ ] do not match")
    return [t for t in terms if t]


def noise_size(text: str) -> tuple[int, int]:
    """``"512x384"`` (width × height, like an image's size) → ``(384, 512)`` as (h, w); each side 8 to 16384."""
    m = re.fullmatch(r"\s*(\d+)\s*[xX×]\s*(\d+)\s*", str(text))
    if not m:
        raise ConfigError(f"--noise must be a size WIDTHxHEIGHT such as 512x512, got {text!r}")
    w, h = int(m.group(1)), int(m.group(2))
    if not (MIN_NOISE_SIDE <= w <= MAX_NOISE_SIDE and MIN_NOISE_SIDE <= h <= MAX_NOISE_SIDE):
        raise ConfigError(f"--noise sides must be {MIN_NOISE_SIDE} to {MAX_NOISE_SIDE} pixels, got {w}x{h}")
    return h, w


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
