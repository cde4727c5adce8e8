"""Tests for inceptionism.io.digest: SHA-256 of files, cached per file version."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import pytest

from inceptionism.io import digest, file_identity, file_sha256


def test_digest_matches_hashlib_and_names_only_the_file(tmp_path: Path) -> None:
    path = tmp_path / "folder" / "weights.pth"
    path.parent.mkdir()
    path.write_bytes(os.urandom(3 << 20))  # several read chunks
    expected = hashlib.sha256(path.read_bytes()).hexdigest()
    assert file_sha256(path) == expected
    assert file_identity(path) == {"file": "weights.pth", "sha256": expected}


def test_digest_is_cached_until_the_file_changes(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "w.bin"
    path.write_bytes(b"one")
    first = file_sha256(path)
    reads: list[str] = []
    real_open = open
    monkeypatch.setattr(digest, "open", lambda *a, **k: reads.append(str(a[0])) or real_open(*a, **k), raising=False)
    assert file_sha256(path) == first and reads == []  # cached: not read again
    path.write_bytes(b"two!")  # another size (and modification time): hashed again
    assert file_sha256(path) == hashlib.sha256(b"two!").hexdigest() and len(reads) == 1


def test_missing_file_raises_oserror(tmp_path: Path) -> None:
    with pytest.raises(OSError):
        file_sha256(tmp_path / "nope")
