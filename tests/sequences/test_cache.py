"""FrameCache: frames round-trip bit for bit, a same-key rerun continues, a different key starts over."""

from __future__ import annotations

import json

import numpy as np
import pytest

from inceptionism import __version__
from inceptionism.errors import ImageError
from inceptionism.sequences.cache import MANIFEST, FrameCache, cache_folder, source_identity


def frame(seed: int, h: int = 6, w: int = 5) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8)


def test_cache_folder_sits_beside_the_output(tmp_path):
    assert cache_folder(tmp_path / "out.mp4") == tmp_path / ".out.mp4.frames"
    assert cache_folder(tmp_path / "frames") == tmp_path / ".frames.frames"


def test_frames_round_trip_exactly_and_are_listed_in_order(tmp_path):
    cache = FrameCache(tmp_path / "c", {"a": 1})
    for i in (10, 2, 0):
        cache.save(i, frame(i))
    assert cache.done() == [0, 2, 10]
    assert 2 in cache and 3 not in cache and -1 not in cache and "2" not in cache
    np.testing.assert_array_equal(cache.load(10), frame(10))
    assert cache.load(10).dtype == np.uint8


def test_same_key_continues_different_key_starts_over_with_one_note(tmp_path):
    notes: list[str] = []
    key = {"settings": {"steps": 3, "layers": ("block10",)}, "input": {"name": "x.png"}}
    FrameCache(tmp_path / "c", key, note=notes.append).save(0, frame(0))
    again = FrameCache(tmp_path / "c", key, note=notes.append)  # tuples and lists compare equal after JSON
    assert again.done() == [0] and notes == []
    other = FrameCache(tmp_path / "c", {**key, "settings": {"steps": 4}}, note=notes.append)
    assert other.done() == [] and len(notes) == 1 and "starting over" in notes[0]
    manifest = json.loads((tmp_path / "c" / MANIFEST).read_text())
    assert manifest == {"key": {"settings": {"steps": 4}, "input": {"name": "x.png"}}, "version": __version__}


def test_a_new_version_starts_over(tmp_path):
    notes: list[str] = []
    cache = FrameCache(tmp_path / "c", {"a": 1})
    cache.save(0, frame(0))
    (tmp_path / "c" / MANIFEST).write_text(json.dumps({"key": {"a": 1}, "version": "0.0.0"}))
    assert FrameCache(tmp_path / "c", {"a": 1}, note=notes.append).done() == [] and len(notes) == 1


def test_leftover_temp_files_of_a_killed_write_are_dropped(tmp_path):
    cache = FrameCache(tmp_path / "c", {"a": 1})
    cache.save(0, frame(0))
    partial = tmp_path / "c" / ".000001.png.1234abcd.part"
    partial.write_bytes(b"\x89PNG half")
    again = FrameCache(tmp_path / "c", {"a": 1})
    assert not partial.exists() and again.done() == [0]


def test_save_rejects_a_non_uint8_frame_and_failed_write_leaves_nothing(tmp_path, monkeypatch):
    cache = FrameCache(tmp_path / "c", {})
    with pytest.raises(ValueError, match="uint8"):
        cache.save(0, frame(0).astype(np.float32))

    def broken(self, *args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr("PIL.Image.Image.save", broken)
    with pytest.raises(OSError):
        cache.save(1, frame(1))
    assert cache.done() == [] and list((tmp_path / "c").glob(".*.part")) == []


def test_a_corrupt_frame_is_one_clear_error(tmp_path):
    cache = FrameCache(tmp_path / "c", {})
    cache.path(0).write_bytes(b"not a png")
    with pytest.raises(ImageError, match=r"cannot be read.*delete"):
        cache.load(0)


def test_remove_deletes_the_folder(tmp_path):
    cache = FrameCache(tmp_path / "c", {})
    cache.save(0, frame(0))
    cache.remove()
    assert not (tmp_path / "c").exists()


def test_source_identity_names_the_file_without_its_folder(tmp_path):
    path = tmp_path / "in.bin"
    path.write_bytes(b"abc")
    ident = source_identity(path)
    assert ident["name"] == "in.bin" and ident["size"] == 3 and len(ident["sha256"]) == 64
    with pytest.raises(ImageError, match="cannot read"):
        source_identity(tmp_path / "missing.png")
