"""Whether the CPU fast path may run in this process, and the one line that says when it may not.

It runs on the PyTorch versions it was tested with (:data:`TESTED_TORCH`; it calls private operators that a
release may change), unless ``INCEPTIONISM_FAST_CPU=0``. If it fails at run time with anything but
out-of-memory, :func:`turn_off` stops it for the rest of the process and says so once on stderr; dreams go on
with autograd, which computes the same gradients.
"""

from __future__ import annotations

import os
import re
import sys
import threading

import torch

# [first, after last) PyTorch (major, minor) releases the fast path's tests have passed on (2.13.0+cpu, 2.14.1);
# widen it only after running tests/models/cpu on the new release.
TESTED_TORCH = ((2, 13), (2, 15))
ENVIRONMENT = "INCEPTIONISM_FAST_CPU"

_lock = threading.Lock()
_failure: str | None = None  # why it was turned off at run time
_noted = False


def torch_version(text: str | None = None) -> tuple[int, int] | None:
    """(major, minor) of ``text`` (default: the running PyTorch's version), None if it does not parse."""
    m = re.match(r"(\d+)\.(\d+)", text if text is not None else torch.__version__)
    return (int(m.group(1)), int(m.group(2))) if m else None


def untested_torch() -> str | None:
    """Why this PyTorch is outside :data:`TESTED_TORCH`, or None if it is inside."""
    (lo, hi), version = TESTED_TORCH, torch_version()
    if version is not None and lo <= version < hi:
        return None
    tested = f">={lo[0]}.{lo[1]},<{hi[0]}.{hi[1]}"
    return f"torch {torch.__version__} is untested; tested: {tested}"


def disabled_by_environment() -> bool:
    """Whether ``INCEPTIONISM_FAST_CPU=0`` turns it off."""
    return os.environ.get(ENVIRONMENT, "1") == "0"


def failure() -> str | None:
    """Why the fast path was turned off at run time in this process, or None while it may run."""
    return _failure


def describe(error: BaseException) -> str:
    """``ExcType: first line of the message`` (PyTorch's messages run to many lines), at most 200 characters."""
    first = str(error).strip().splitlines()[0] if str(error).strip() else ""
    text = f"{type(error).__name__}: {first}" if first else type(error).__name__
    return text if len(text) <= 200 else text[:199] + "…"


def turn_off(reason: str) -> None:
    """Stop the fast path for the rest of the process (the first reason is kept) and say so once."""
    global _failure
    with _lock:
        if _failure is None:
            _failure = reason
    note(reason)


def note(reason: str) -> None:
    """``inceptionism: note: fast CPU path off (<reason>); using autograd`` on stderr, once per process."""
    global _noted
    with _lock:
        if _noted:
            return
        _noted = True
    print(f"inceptionism: note: fast CPU path off ({reason}); using autograd", file=sys.stderr)


def reset() -> None:
    """Forget a run-time failure and the note (tests)."""
    global _failure, _noted
    with _lock:
        _failure, _noted = None, False
