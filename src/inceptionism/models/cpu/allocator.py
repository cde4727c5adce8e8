"""Keep freed memory for reuse while a dream runs (glibc on Linux; elsewhere a no-op).

glibc serves every allocation above 32 MB (and, until it adapts, above 128 kB) with a fresh ``mmap`` and hands
it back to the kernel when freed. A dream step allocates the same large activations on every step, so each step
would page-fault and zero hundreds of megabytes anew (a large share of a step: docs/performance.md). While a run
lasts, :func:`reuse_freed_memory` serves large blocks from the
heap and keeps what is freed for the next step; afterwards it restores the settings glibc would have grown into
and returns the free memory to the system (``malloc_trim``).
"""

from __future__ import annotations

import contextlib
import ctypes
import sys
import threading
from collections.abc import Iterator
from typing import Any

M_TRIM_THRESHOLD = -1
M_MMAP_THRESHOLD = -3
M_MMAP_MAX = -4

KEEP = 2**31 - 1  # trim threshold while running: keep everything freed (mallopt takes a C int)
# Afterwards: the values glibc's dynamic thresholds reach under PyTorch (mmap above 32 MB, trim above 64 MB).
AFTER = {M_MMAP_MAX: 65536, M_MMAP_THRESHOLD: 32 * 2**20, M_TRIM_THRESHOLD: 64 * 2**20}

_lock = threading.Lock()
_depth = 0


def _glibc() -> Any | None:
    """The C library if it is glibc (``mallopt`` and ``malloc_trim`` mean what we expect), else None."""
    if not sys.platform.startswith("linux"):
        return None
    try:
        libc = ctypes.CDLL("libc.so.6")
    except OSError:
        return None
    if not all(hasattr(libc, name) for name in ("gnu_get_libc_version", "mallopt", "malloc_trim")):
        return None
    return libc


@contextlib.contextmanager
def reuse_freed_memory(enabled: bool = True) -> Iterator[None]:
    """Within the block, large blocks come from the heap and freed memory is kept; nested uses are fine."""
    global _depth
    libc = _glibc() if enabled else None
    if libc is None:
        yield
        return
    with _lock:
        _depth += 1
        if _depth == 1:
            libc.mallopt(M_MMAP_MAX, 0)
            libc.mallopt(M_TRIM_THRESHOLD, KEEP)
    try:
        yield
    finally:
        with _lock:
            _depth -= 1
            if _depth == 0:
                for param, value in AFTER.items():
                    libc.mallopt(param, value)
                libc.malloc_trim(0)


def release_free_memory() -> None:
    """Within :func:`reuse_freed_memory`: hand the heap's free pages back to the system now (``malloc_trim``).

    Between octaves, where memory is tight: each octave's buffers are larger than the last one's, so much of what
    those freed cannot serve the next octave and only adds to its peak. It costs page faults when the memory is
    needed again, so runs with room to spare keep it (figures: docs/performance.md). Elsewhere, or off glibc,
    nothing happens.
    """
    libc = _glibc()
    with _lock:
        if libc is not None and _depth > 0:
            libc.malloc_trim(0)
