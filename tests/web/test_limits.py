"""Limits of the studio: upload size, file type, pixels from the header only, work per job; paths kept inside."""

from __future__ import annotations

from pathlib import Path

import pytest
from PIL import Image

from inceptionism.config import DreamConfig
from inceptionism.errors import ConfigError, ImageError
from inceptionism.sequences.batch import dream_work
from inceptionism.web.limits import Limits, check_upload, check_work, inside


def test_a_good_upload_gives_its_size(tmp_path: Path) -> None:
    path = tmp_path / "a.jpg"
    Image.new("RGB", (40, 30), "red").save(path)
    assert check_upload(path, Limits()) == (30, 40)


def test_oversize_upload_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "a.png"
    Image.new("RGB", (400, 300)).save(path)
    with pytest.raises(ImageError, match=r"more than the limit of 0\.0 MB; upload a smaller file"):
        check_upload(path, Limits(max_upload_bytes=100))


@pytest.mark.parametrize("content", [b"hello, not a picture", b"%PDF-1.4 ..."])
def test_non_image_is_refused(tmp_path: Path, content: bytes) -> None:
    path = tmp_path / "x.png"
    path.write_bytes(content)
    with pytest.raises(ImageError, match="not an image the studio can read; upload a PNG, JPEG"):
        check_upload(path, Limits())


def test_unsupported_image_type_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "x.ico"
    Image.new("RGB", (16, 16)).save(path, format="ICO")
    with pytest.raises(ImageError, match="ICO file, which the studio does not take"):
        check_upload(path, Limits())


def test_decompression_bomb_is_refused_from_its_header(tmp_path: Path) -> None:
    # A 20000 × 20000 PNG of one colour is a few hundred kB; decoding it would take 1.2 GB.
    path = tmp_path / "bomb.png"
    Image.new("L", (20000, 20000)).save(path, optimize=False)
    assert path.stat().st_size < 2_000_000
    with pytest.raises(ImageError, match="20000×20000 = 400,000,000 pixels, more than the limit of 4,000,000"):
        check_upload(path, Limits())


def test_work_limit_counts_steps_and_pixels() -> None:
    cfg = DreamConfig(steps=10, octaves=2)
    work = dream_work(300, 400, cfg)
    assert check_work(300, 400, cfg, Limits(max_work=work)) == work
    with pytest.raises(ConfigError, match=r"pixel-steps .* lower the steps or octaves, or use a smaller image"):
        check_work(300, 400, cfg, Limits(max_work=work - 1))
    with pytest.raises(ConfigError, match="and frames"):
        check_work(300, 400, cfg, Limits(max_work=work), frames=2)
    with pytest.raises(ConfigError, match="3 frames is more than the limit of 2"):
        check_work(30, 40, cfg, Limits(max_frames=2), frames=3)


def test_bad_limits_are_config_errors() -> None:
    with pytest.raises(ConfigError, match="--max-pixels must be a whole number, at least 1"):
        Limits(max_pixels=0).validate()


def test_inside_follows_links(tmp_path: Path) -> None:
    root = tmp_path / "root"
    root.mkdir()
    (root / "a").write_text("x")
    (root / "out").symlink_to(tmp_path)
    assert inside(root / "a", root)
    assert not inside(root / ".." / "root2", root)
    assert not inside(root / "out" / "elsewhere", root)
