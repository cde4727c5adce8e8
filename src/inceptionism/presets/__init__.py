"""Presets: named recipes as TOML files, built in (this folder) or the user's own (``--preset my.toml``).

A preset file holds ``DreamConfig`` fields (``steps = 20``, ``layers = ["block10", "block13:0.5"]``) and an
optional ``description``. Settings resolve in one order everywhere: defaults ← preset ← settings file ← options
given explicitly (CLI flags or API keywords).
"""

from __future__ import annotations

import difflib
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from inceptionism.config import DreamConfig
from inceptionism.errors import ConfigError

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - Python 3.10
    import tomli as tomllib

BUILTIN_DIR = Path(__file__).parent


@dataclass(frozen=True)
class Preset:
    """A recipe: its name, a one-line description, and the settings it sets (a subset of DreamConfig's fields)."""

    name: str
    description: str
    settings: dict[str, Any]
    path: Path

    def config(self, base: DreamConfig | None = None) -> DreamConfig:
        """``base`` (or the defaults) with this preset's settings applied; unknown keys are an error."""
        start = base if base is not None else DreamConfig()
        try:
            return DreamConfig.from_dict({**start.to_dict(), **self.settings}).validate()
        except ConfigError as e:
            raise ConfigError(f"preset {self.name!r} ({self.path.name}): {e}") from None


def builtin_names() -> list[str]:
    """The built-in presets' names, ``default`` first, then alphabetical."""
    names = sorted(p.stem for p in BUILTIN_DIR.glob("*.toml"))
    return sorted(names, key=lambda n: (n != "default", n))


def load_preset(name_or_path: str | Path) -> Preset:
    """A built-in preset by name, or a user's TOML file by path (anything ending in ``.toml``, or an existing file)."""
    text = str(name_or_path)
    path = Path(text)
    if text.endswith(".toml") or path.is_file():
        if not path.is_file():
            raise ConfigError(f"preset file {text!r} not found")
        return _read(path, path.stem)
    if text not in builtin_names():
        close = difflib.get_close_matches(text, builtin_names(), n=1)
        hint = f"did you mean {close[0]!r}? " if close else ""
        raise ConfigError(
            f"unknown preset {text!r}; {hint}choose one of {', '.join(builtin_names())} or give a .toml file "
            "(`inceptionism presets` lists them)"
        )
    return _read(BUILTIN_DIR / f"{text}.toml", text)


def preset(name_or_path: str | Path) -> DreamConfig:
    """The defaults with a preset applied: ``preset("seed")``, ``preset("my-look.toml")``."""
    return load_preset(name_or_path).config()


def list_presets() -> list[Preset]:
    """Every built-in preset, ``default`` first."""
    return [load_preset(name) for name in builtin_names()]


def _read(path: Path, name: str) -> Preset:
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except OSError as e:
        raise ConfigError(f"cannot read preset {str(path)!r}: {e.strerror or e}") from None
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as e:
        raise ConfigError(f"preset {path.name!r} is not valid TOML: {e}") from None
    description = data.pop("description", "")
    if not isinstance(description, str):
        raise ConfigError(f"preset {path.name!r}: description must be a string")
    preset = Preset(name, description, data, path)
    preset.config()  # unknown or mistyped settings fail when the preset is loaded, naming it
    return preset


__all__ = ["BUILTIN_DIR", "Preset", "builtin_names", "list_presets", "load_preset", "preset"]
