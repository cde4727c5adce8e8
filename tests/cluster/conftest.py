"""Cluster tests start real local Ray clusters: Ray's session folder is a short temporary one (its sockets'
paths must fit in 107 bytes), removed after each test; the sequences tests' clip maker is shared."""

from __future__ import annotations

import shutil
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "sequences"))  # clips.py


@pytest.fixture(autouse=True)
def ray_dir(monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """A fresh folder for Ray's session files (sockets, logs), deleted after the test; also ``$RAY_TMPDIR``, so
    a cluster started by the CLI, in this process or a child, puts its files there too."""
    folder = tempfile.mkdtemp(prefix="ray-")
    monkeypatch.setenv("RAY_TMPDIR", folder)
    yield folder
    shutil.rmtree(folder, ignore_errors=True)
