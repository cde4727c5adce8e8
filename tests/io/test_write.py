"""Tests for inceptionism.io.write: atomic writes, supported formats, never overwriting the input."""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path
from typing import Any

import pytest
from PIL import Image
from samples import assert_one_line, sha

from inceptionism.errors import ImageError
from inceptionism.io import atomic_write, check_output_path, save_image, write_json

# ----------------------------------------------------------------------------------------------------
# saving


def test_save_returns_path_and_uses_umask_permissions(tmp_path: Path) -> None:
    out = save_image(Image.new("RGB", (4, 4)), str(tmp_path / "x.png"))
    assert out == tmp_path / "x.png" and out.is_file()
    umask = os.umask(0)
    os.umask(umask)
    assert stat.S_IMODE(out.stat().st_mode) == 0o666 & ~umask


def test_unsupported_extension(tmp_path: Path) -> None:
    with pytest.raises(ImageError) as exc:
        save_image(Image.new("RGB", (4, 4)), tmp_path / "x.bmp")
    message = assert_one_line(exc)
    assert "x.bmp" in message and ".png" in message and ".jpg" in message and ".tiff" in message
    assert not (tmp_path / "x.bmp").exists()


def test_missing_output_folder(tmp_path: Path) -> None:
    with pytest.raises(ImageError) as exc:
        save_image(Image.new("RGB", (4, 4)), tmp_path / "nope" / "x.png")
    message = assert_one_line(exc)
    assert "output folder" in message and "nope" in message and "does not exist" in message


def test_output_folder_not_writable(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(os, "access", lambda *args, **kwargs: False)
    with pytest.raises(ImageError) as exc:
        save_image(Image.new("RGB", (4, 4)), tmp_path / "x.png")
    message = assert_one_line(exc)
    assert "not writable" in message and str(tmp_path) in message


def test_output_is_a_directory(tmp_path: Path) -> None:
    (tmp_path / "d.png").mkdir()
    with pytest.raises(ImageError) as exc:
        save_image(Image.new("RGB", (4, 4)), tmp_path / "d.png")
    assert "folder" in assert_one_line(exc)


def _fake_save_then(folder: Path, exc: BaseException) -> Any:
    """A PIL save that writes a few bytes, then fails with ``exc``."""

    def fake_save(self: Image.Image, fp: Any, format: str | None = None, **params: Any) -> None:
        fp.write(b"\x89PNG partial data")
        fp.flush()
        parts = [p for p in folder.iterdir() if p.name.startswith(".") and p.name.endswith(".part")]
        assert len(parts) == 1  # the temp file lives next to the output
        raise exc

    return fake_save


@pytest.mark.parametrize("existing", [False, True])
def test_interrupted_save_leaves_nothing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, existing: bool) -> None:
    out = tmp_path / "out.png"
    if existing:
        Image.new("RGB", (4, 4), (1, 2, 3)).save(out)
        before = sha(out)
    monkeypatch.setattr(Image.Image, "save", _fake_save_then(tmp_path, KeyboardInterrupt()))
    with pytest.raises(KeyboardInterrupt):
        save_image(Image.new("RGB", (4, 4)), out, {"a": 1})
    assert not list(tmp_path.glob("*.part")) and not list(tmp_path.glob(".*.part"))
    if existing:
        assert sha(out) == before
    else:
        assert not out.exists()


def test_failed_save_is_image_error_and_leaves_nothing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(Image.Image, "save", _fake_save_then(tmp_path, OSError(28, "No space left on device")))
    with pytest.raises(ImageError) as exc:
        save_image(Image.new("RGB", (4, 4)), tmp_path / "out.jpg")
    message = assert_one_line(exc)
    assert "out.jpg" in message and "No space" in message
    assert list(tmp_path.iterdir()) == []


def test_save_replaces_existing_output(tmp_path: Path) -> None:
    out = tmp_path / "out.png"
    Image.new("RGB", (4, 4), (1, 2, 3)).save(out)
    save_image(Image.new("RGB", (6, 5), (9, 9, 9)), out)
    assert Image.open(out).size == (6, 5)
    assert [p.name for p in tmp_path.iterdir()] == ["out.png"]


# ----------------------------------------------------------------------------------------------------
# overwrite protection


def test_check_output_path(tmp_path: Path) -> None:
    src = tmp_path / "in.png"
    Image.new("RGB", (4, 4)).save(src)
    check_output_path(src, tmp_path / "out.png", overwrite=False)
    check_output_path(None, tmp_path / "out.png", overwrite=False)
    check_output_path(src, src, overwrite=True)
    for same in (src, tmp_path / "." / "in.png"):
        with pytest.raises(ImageError) as exc:
            check_output_path(src, same, overwrite=False)
        message = assert_one_line(exc)
        assert "refusing to overwrite the input" in message and "--overwrite" in message and "in.png" in message
    link = tmp_path / "link.png"
    link.symlink_to(src)
    with pytest.raises(ImageError, match="refusing"):
        check_output_path(link, src, overwrite=False)
    (tmp_path / "dir.png").mkdir()
    with pytest.raises(ImageError, match="folder"):
        check_output_path(src, tmp_path / "dir.png", overwrite=True)
    with pytest.raises(ImageError, match="does not exist"):
        check_output_path(src, tmp_path / "missing" / "o.png", overwrite=False)
    with pytest.raises(ImageError, match="not supported"):
        check_output_path(src, tmp_path / "o.gif", overwrite=False)


def test_save_refuses_to_overwrite_protected_input(tmp_path: Path) -> None:
    src = tmp_path / "in.png"
    Image.new("RGB", (4, 4), (5, 5, 5)).save(src)
    before = sha(src)
    with pytest.raises(ImageError, match="refusing to overwrite the input"):
        save_image(Image.new("RGB", (4, 4)), src, overwrite_input=src)
    assert sha(src) == before
    save_image(Image.new("RGB", (4, 4)), src)  # --overwrite given: no input to protect
    assert sha(src) != before


# ----------------------------------------------------------------------------------------------------
# atomic_write and write_json: the one way every file is written


def test_atomic_write_replaces_whole_or_not_at_all(tmp_path: Path) -> None:
    path = tmp_path / "f.bin"
    assert atomic_write(path, lambda handle: handle.write(b"first")) == path
    assert path.read_bytes() == b"first"

    def fails(handle: Any) -> None:
        handle.write(b"half")
        raise RuntimeError("disk on fire")

    with pytest.raises(RuntimeError, match="disk on fire"):
        atomic_write(path, fails)
    assert path.read_bytes() == b"first"
    assert [p.name for p in tmp_path.iterdir()] == ["f.bin"]


def test_atomic_write_keeps_an_existing_files_permissions(tmp_path: Path) -> None:
    path = tmp_path / "f.txt"
    path.write_text("old")
    path.chmod(0o600)
    atomic_write(path, lambda handle: handle.write(b"new"))
    assert path.read_text() == "new" and stat.S_IMODE(path.stat().st_mode) == 0o600


def test_write_json_is_sorted_utf8_and_atomic(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "settings.json"
    write_json(path, {"b": 1, "a": "ünï"})
    assert path.read_text(encoding="utf-8") == '{\n  "a": "ünï",\n  "b": 1\n}\n'
    assert json.loads(path.read_text(encoding="utf-8")) == {"a": "ünï", "b": 1}
    monkeypatch.setattr(os, "replace", lambda *a: (_ for _ in ()).throw(OSError(28, "No space left on device")))
    with pytest.raises(ImageError) as exc:
        write_json(path, {"c": 3})
    assert "settings.json" in assert_one_line(exc) and "No space" in str(exc.value)
    assert json.loads(path.read_text(encoding="utf-8")) == {"a": "ünï", "b": 1}
    assert [p.name for p in tmp_path.iterdir()] == ["settings.json"]
