"""SHA-256 of files, computed once per file version (cached by path, size and modification time).

Pictures name the files they depend on (weights, guide images) by file name and SHA-256, never by their folder:
a shared picture must not reveal the user's folders, and the digest still identifies the exact file.
"""

from __future__ import annotations

import functools
import hashlib
import os
from pathlib import Path

_CHUNK = 1 << 20


@functools.lru_cache(maxsize=64)
def _digest(path: str, size: int, mtime_ns: int) -> str:
    del size, mtime_ns  # part of the cache key only: a changed file is hashed again
    sha = hashlib.sha256()
    with open(path, "rb") as handle:
        while chunk := handle.read(_CHUNK):
            sha.update(chunk)
    return sha.hexdigest()


def file_sha256(path: str | os.PathLike[str]) -> str:
    """Hex SHA-256 of the file's bytes; raises ``OSError`` if it cannot be read."""
    resolved = Path(path).resolve()
    st = resolved.stat()
    return _digest(str(resolved), st.st_size, st.st_mtime_ns)


def file_identity(path: str | os.PathLike[str]) -> dict[str, str]:
    """``{"file": name, "sha256": hex}``: what a picture's settings record about a file (no folder)."""
    return {"file": Path(path).name, "sha256": file_sha256(path)}
