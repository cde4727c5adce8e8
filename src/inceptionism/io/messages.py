"""How paths and exceptions appear in the one-line messages of :class:`~inceptionism.errors.ImageError`."""

from __future__ import annotations


def show(path: object) -> str:
    """The path as it goes in a one-line message (control characters escaped)."""
    text = str(path)
    return text if text.isprintable() else repr(text)


def reason(exc: BaseException) -> str:
    """An exception's message on one line."""
    text = " ".join(str(exc).split())
    return text or type(exc).__name__
