"""ImageNet-1k class names, from torchvision's category list (the order every ImageNet classifier's logits use).

torchvision is imported only when a class is asked for: importing it takes about a second.
"""

from __future__ import annotations

import difflib
import functools

from inceptionism.errors import ConfigError


@functools.lru_cache(maxsize=1)
def categories() -> tuple[str, ...]:
    """The 1000 ImageNet class names, index order (``categories()[1] == "goldfish"``)."""
    from torchvision.models import ResNet50_Weights

    return tuple(ResNet50_Weights.IMAGENET1K_V1.meta["categories"])


@functools.lru_cache(maxsize=1)
def _by_name() -> dict[str, int]:
    return {_key(name): i for i, name in enumerate(categories())}


def _key(name: str) -> str:
    """Names compare without case, and ``_`` or ``-`` for spaces: ``Great_White_Shark`` is ``great white shark``."""
    return " ".join(name.lower().replace("_", " ").split())


def class_name(index: int) -> str:
    """The name of class ``index`` (0–999)."""
    return categories()[class_index(index)]


def class_index(target: int | str) -> int:
    """A class's index from its index (``1``, ``"1"``) or name (``"goldfish"``, ``"great white shark"``).

    Unknown names raise :class:`ConfigError` suggesting close ones (by spelling, then names containing the word).
    """
    count = len(categories())
    if isinstance(target, bool):
        raise ConfigError(f"bad class {target!r}: give a name or an index 0–{count - 1}")
    text = str(target).strip()
    if isinstance(target, int) or text.lstrip("-").isdigit():
        index = int(text)
        if not 0 <= index < count:
            raise ConfigError(f"class index {index} is out of range: ImageNet classes are 0–{count - 1}")
        return index
    key = _key(text)
    found = _by_name().get(key)
    if found is not None:
        return found
    names = categories()
    close = difflib.get_close_matches(key, [_key(n) for n in names], n=3, cutoff=0.75)
    if not close and key:
        close = [_key(n) for n in names if key in _key(n).split()][:3]
    hint = f"did you mean {' or '.join(repr(names[_by_name()[c]]) for c in close)}? " if close else ""
    raise ConfigError(f"unknown ImageNet class {text!r}; {hint}give a name or an index 0–{count - 1}")
