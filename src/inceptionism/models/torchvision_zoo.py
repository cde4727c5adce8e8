"""Placeholder, filled in by the model-zoo work."""
from __future__ import annotations

from inceptionism.errors import ConfigError
from inceptionism.models.spec import ModelSpec


def torchvision_spec(name: str) -> ModelSpec:
    raise ConfigError(f"torchvision model {name!r} is not supported yet")
