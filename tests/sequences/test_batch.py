"""Batches: natural order, one bar by pixels, a rerun skips finished outputs, a bad file fails alone."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from inceptionism.api import dream
from inceptionism.cli import main
from inceptionism.config import DreamConfig
from inceptionism.engine import Progress
from inceptionism.errors import ImageError
from inceptionism.sequences.batch import (
    BatchResult,
    WorkBar,
    dream_work,
    expand_inputs,
    is_batch,
    natural_key,
    output_paths,
)

FAST = ["--octaves", "2", "--steps", "2", "--min-size", "16", "--quiet"]


def write_image(path: Path, seed: int, size: tuple[int, int] = (64, 48)) -> Path:
    pixels = np.random.default_rng(seed).integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)
    Image.fromarray(pixels).save(path)
    return path


@pytest.fixture
def shots(tmp_path: Path) -> Path:
    folder = tmp_path / "shots"
    folder.mkdir()
    for seed, name in enumerate(["frame10.png", "frame2.jpg", "frame1.png"]):
        write_image(folder / name, seed)
    (folder / "notes.txt").write_text("not an image")
    return folder


def test_natural_order_puts_frame2_before_frame10():
    names = ["frame10.png", "Frame2.png", "frame1.png", "frame02b.png", "a.png"]
    assert sorted(names, key=lambda n: natural_key(Path(n))) == [
        "a.png",
        "frame1.png",
        "Frame2.png",
        "frame02b.png",
        "frame10.png",
    ]


def test_expand_folder_glob_and_files_once_each_in_natural_order(shots):
    assert [p.name for p in expand_inputs([str(shots)])] == ["frame1.png", "frame2.jpg", "frame10.png"]
    assert [p.name for p in expand_inputs([str(shots / "*.png")])] == ["frame1.png", "frame10.png"]
    both = expand_inputs([str(shots / "frame10.png"), str(shots)])
    assert [p.name for p in both] == ["frame10.png", "frame1.png", "frame2.jpg"]
    assert is_batch([str(shots)]) and is_batch([str(shots / "*.png")]) and is_batch(["a.png", "b.png"])
    assert not is_batch([str(shots / "frame1.png")])


def test_expand_names_what_matched_nothing(shots, tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(ImageError, match="has no images"):
        expand_inputs([str(empty)])
    with pytest.raises(ImageError, match="no image matches"):
        expand_inputs([str(shots / "*.webp")])
    with pytest.raises(ImageError, match="does not exist"):
        expand_inputs([str(tmp_path / "missing.png")])


def test_outputs_that_would_share_a_name_keep_their_extension(tmp_path):
    out = output_paths([Path("a/x.jpg"), Path("b/x.png"), Path("y.tif")], tmp_path)
    assert [p.name for p in out] == ["x.jpg.png", "x.png.png", "y.png"]


def test_dream_work_is_the_engines_count():
    cfg = DreamConfig(octaves=2, steps=1, min_size=16)
    seen: list[Progress] = []
    dream(np.full((40, 56, 3), 0.5, np.float32), cfg, callback=seen.append)
    assert dream_work(40, 56, cfg) == seen[-1].work_total


def test_work_bar_counts_pixels_not_files():
    bar = WorkBar(total_work=1000, items=2, what="image", enabled=False)
    bar.begin(0, "small", 100)
    bar.end()
    assert bar.eta(100) is not None
    bar.begin(1, "big", 900)
    bar.end(counted=False)  # a failed image leaves the total
    assert bar.total == 100 and bar._done == 100


def test_batch_cli_writes_all_good_files_reports_the_bad_one_and_exits_nonzero(shots, tmp_path, capsys):
    (shots / "broken.png").write_bytes(b"not a png")
    out = tmp_path / "out"
    assert main(["dream", str(shots), "-o", str(out), *FAST]) == 1
    captured = capsys.readouterr()
    assert sorted(p.name for p in out.iterdir()) == ["frame1.png", "frame10.png", "frame2.png"]
    assert captured.out.splitlines() == [str(out / n) for n in ("frame1.png", "frame2.png", "frame10.png")]
    assert "broken.png" in captured.err and "3 done, 0 skipped (already there), 1 failed (broken.png)" in captured.err
    assert "Traceback" not in captured.err
    with Image.open(out / "frame1.png") as im:
        assert im.size == (64, 48) and "inceptionism" in im.info

    before = {p.name: p.stat().st_mtime_ns for p in out.iterdir()}
    (shots / "broken.png").unlink()
    write_image(shots / "frame3.png", 7)
    assert main(["dream", str(shots), "-o", str(out), *FAST]) == 0
    captured = capsys.readouterr()
    assert captured.out.splitlines() == [str(out / "frame3.png")]
    assert "1 done, 3 skipped" in captured.err
    assert all((out / name).stat().st_mtime_ns == t for name, t in before.items())  # finished ones untouched


def test_batch_bad_usage_is_one_line(shots, tmp_path, capsys):
    assert main(["dream", str(shots), *FAST]) == 2
    assert "-o FOLDER" in capsys.readouterr().err
    assert main(["dream", str(shots), "-o", str(tmp_path / "o"), "--settings-out", "s.json", *FAST]) == 2
    assert "--settings-out is for one input" in capsys.readouterr().err
    a_file = write_image(tmp_path / "file.png", 1)
    assert main(["dream", str(shots), "-o", str(a_file), *FAST]) == 1
    assert "is a file" in capsys.readouterr().err
    assert main(["dream", str(shots), "-o", str(tmp_path / "no" / "where"), *FAST]) == 1
    assert "does not exist" in capsys.readouterr().err
    assert main(["dream", str(shots), "-o", str(tmp_path / "dream.png"), *FAST]) == 1
    assert "-o names the output folder" in capsys.readouterr().err and not (tmp_path / "dream.png").exists()


def test_batch_refuses_to_write_over_its_inputs(shots, capsys):
    before = {p.name: p.read_bytes() for p in shots.iterdir()}
    assert main(["dream", str(shots), "-o", str(shots), *FAST]) == 1
    err = capsys.readouterr().err
    assert "refusing to overwrite the input" in err and len(err.strip().splitlines()) == 1
    assert {p.name: p.read_bytes() for p in shots.iterdir()} == before


def test_a_settings_error_stops_the_batch_at_once(shots, tmp_path, capsys):
    assert main(["dream", str(shots), "-o", str(tmp_path / "o"), "--layers", "nosuchlayer", *FAST]) == 2
    err = capsys.readouterr().err
    assert "nosuchlayer" in err and len(err.strip().splitlines()) == 1
    assert list((tmp_path / "o").iterdir()) == []


def test_batch_result_summary():
    r = BatchResult(done=[Path("a")], skipped=[], failed=[(Path("d/b.jpg"), "bad")])
    assert r.summary() == "batch: 1 done, 0 skipped (already there), 1 failed (b.jpg)"


def test_single_input_still_writes_one_file(shots, tmp_path, capsys):
    out = tmp_path / "one.png"
    assert main(["dream", str(shots / "frame1.png"), "-o", str(out), *FAST]) == 0
    assert capsys.readouterr().out.strip() == str(out) and out.is_file()
    assert os.path.getsize(out) > 0


def test_ctrl_c_in_a_batch_keeps_finished_outputs(shots, tmp_path, monkeypatch, capsys):
    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr("inceptionism.sequences.batch.run_batch", interrupted)
    assert main(["dream", str(shots), "-o", str(tmp_path / "o"), *FAST]) == 130
    assert "finished outputs are kept and the same command continues" in capsys.readouterr().err
