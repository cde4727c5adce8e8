"""Tests for inceptionism.io.metadata: settings embedded in each format and read back."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from PIL import Image, PngImagePlugin
from samples import assert_one_line

from inceptionism.errors import ImageError
from inceptionism.io import SETTINGS_KEY, read_settings, save_image

# ----------------------------------------------------------------------------------------------------
# settings


SETTINGS = {
    "model": "inception_v3",
    "layers": ["mixed_5b", "mixed_6a"],
    "octaves": 4,
    "lr": 0.01,
    "text": "né",
}


@pytest.mark.parametrize("ext", [".png", ".jpg", ".jpeg", ".webp", ".tif"])
def test_settings_roundtrip_in_images(tmp_path: Path, ext: str) -> None:
    out = save_image(Image.new("RGB", (8, 8), (10, 20, 30)), tmp_path / f"out{ext}", SETTINGS)
    assert read_settings(out) == SETTINGS


def test_settings_png_chunk_is_plain_json(tmp_path: Path) -> None:
    out = save_image(Image.new("RGB", (8, 8)), tmp_path / "out.png", SETTINGS)
    assert json.loads(Image.open(out).info["inceptionism"]) == SETTINGS


def test_settings_roundtrip_json(tmp_path: Path) -> None:
    path = tmp_path / "s.json"
    path.write_text(json.dumps(SETTINGS))
    assert read_settings(path) == SETTINGS


def test_image_without_settings(tmp_path: Path) -> None:
    for name in ("plain.png", "plain.jpg"):
        Image.new("RGB", (4, 4)).save(tmp_path / name, **({"comment": "made by a camera"} if "jpg" in name else {}))
        with pytest.raises(ImageError) as exc:
            read_settings(tmp_path / name)
        message = assert_one_line(exc)
        assert name in message and "holds no inceptionism settings" in message


@pytest.mark.parametrize(
    ("name", "write", "words"),
    [
        ("bad.json", lambda p: p.write_text("{not json"), "not valid JSON"),
        ("list.json", lambda p: p.write_text("[1, 2]"), "not an object"),
        ("missing.json", lambda p: None, "does not exist"),
        ("text.png", lambda p: p.write_text("not a picture"), "neither"),
    ],
)
def test_bad_settings_files(tmp_path: Path, name: str, write: Any, words: str) -> None:
    path = tmp_path / name
    write(path)
    with pytest.raises(ImageError) as exc:
        read_settings(path)
    message = assert_one_line(exc)
    assert name in message and words in message


def test_png_with_bad_settings_json(tmp_path: Path) -> None:
    info = PngImagePlugin.PngInfo()
    info.add_text("inceptionism", "{broken")
    Image.new("RGB", (4, 4)).save(tmp_path / "b.png", pnginfo=info)
    with pytest.raises(ImageError, match="not valid JSON"):
        read_settings(tmp_path / "b.png")


def test_save_without_settings_embeds_nothing(tmp_path: Path) -> None:
    out = save_image(Image.new("RGB", (4, 4)), tmp_path / "x.png")
    assert "inceptionism" not in Image.open(out).info
    assert SETTINGS_KEY == "inceptionism"
