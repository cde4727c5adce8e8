"""The model registry: ``@register_model`` adds a spec factory; ``list_models("incep*")`` finds names.

Any torchvision classification model is reachable as ``tv:<name>`` without registration.
"""

from __future__ import annotations

import difflib
import fnmatch
from collections.abc import Callable

from inceptionism.errors import ConfigError
from inceptionism.models.spec import ModelSpec

SpecFactory = Callable[[], ModelSpec]
_REGISTRY: dict[str, SpecFactory] = {}
TORCHVISION_PREFIX = "tv:"


def register_model(name: str) -> Callable[[SpecFactory], SpecFactory]:
    """Decorator: register a function returning the :class:`ModelSpec` called ``name``."""

    def wrap(factory: SpecFactory) -> SpecFactory:
        if name in _REGISTRY:
            raise ValueError(f"model {name!r} is registered twice")
        _REGISTRY[name] = factory
        return factory

    return wrap


def list_models(pattern: str = "*") -> list[str]:
    """Registered model names matching a shell-style ``pattern``, in registration order."""
    return [name for name in _REGISTRY if fnmatch.fnmatch(name, pattern)]


def get_model_spec(name: str) -> ModelSpec:
    """The spec of a registered model, or of ``tv:<torchvision name>``; unknown names suggest close ones."""
    if name in _REGISTRY:
        return _REGISTRY[name]()
    if name.startswith(TORCHVISION_PREFIX):
        bare = name.removeprefix(TORCHVISION_PREFIX)
        if bare in _REGISTRY:  # tv:googlenet is our googlenet: its spec knows its preprocessing
            return _REGISTRY[bare]()
        from inceptionism.models.torchvision_zoo import torchvision_spec

        return torchvision_spec(bare)
    close = difflib.get_close_matches(name, list(_REGISTRY), n=3, cutoff=0.5)
    hint = f"did you mean {' or '.join(repr(c) for c in close)}? " if close else ""
    raise ConfigError(
        f"unknown model {name!r}; {hint}`inceptionism models` lists them (any torchvision model: tv:<name>)"
    )
