"""A zoom sweep on a real local Ray cluster: one animation per schedule, each as one process renders it."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from inceptionism.cli import main
from inceptionism.cluster.zoom import sweep_outputs
from inceptionism.config import DreamConfig
from inceptionism.errors import ConfigError
from inceptionism.sequences.schedule import Schedule
from inceptionism.sequences.zoom import ZoomSettings, run_zoom

pytest.importorskip("ray")

FAST = ["--octaves", "1", "--steps", "1", "--min-size", "16", "--jitter", "8", "--quiet"]


def test_sweep_outputs_are_named_after_their_schedules(tmp_path):
    assert sweep_outputs(tmp_path / "z.mp4", ["a/slow.toml", "fast.json"]) == [
        tmp_path / "z-slow.mp4",
        tmp_path / "z-fast.mp4",
    ]
    assert sweep_outputs(tmp_path / "frames", ["slow.toml"]) == [tmp_path / "frames-slow"]
    with pytest.raises(ConfigError, match="two schedules are named 'slow'"):
        sweep_outputs(tmp_path / "z.mp4", ["a/slow.toml", "b/slow.toml"])


def test_one_animation_cannot_be_split_and_says_so(tmp_path, capsys):
    photo = tmp_path / "p.png"
    Image.fromarray(np.zeros((48, 64, 3), np.uint8)).save(photo)
    assert main(["zoom", str(photo), "-o", str(tmp_path / "z"), "--cluster", "local:2", *FAST]) == 2
    assert "one zoom animation cannot be split" in capsys.readouterr().err
    s = tmp_path / "s.toml"
    s.write_text("[zoom]\n0 = 1.1\n")
    assert main(["zoom", str(photo), "-o", str(tmp_path / "z"), "--schedule", str(s), "--schedule", str(s), *FAST]) == 2
    assert "make a sweep: run it with --cluster" in capsys.readouterr().err


@pytest.mark.slow
def test_a_sweep_renders_each_schedule_as_one_process_does(tmp_path, capsys):
    photo = tmp_path / "p.png"
    pixels = np.random.default_rng(0).integers(0, 256, (48, 64, 3), dtype=np.uint8)
    Image.fromarray(pixels).save(photo)
    schedules = []
    for name, zoom in [("in", 1.1), ("out", 0.9)]:
        schedules.append(tmp_path / f"{name}.toml")
        schedules[-1].write_text(f"[zoom]\n0 = 1.0\n2 = {zoom}\n")
    args = ["zoom", str(photo), "-o", str(tmp_path / "z"), "--frames", "3", "--cluster", "local:2", *FAST]
    assert main([*args, "--schedule", str(schedules[0]), "--schedule", str(schedules[1])]) == 0
    captured = capsys.readouterr()
    assert sorted(captured.out.split()) == [str(tmp_path / "z-in"), str(tmp_path / "z-out")]
    assert "zoom sweep: 2 done, 0 skipped (already there), 0 failed" in captured.err

    config = DreamConfig(octaves=1, steps=1, min_size=16, jitter=8)
    alone = run_zoom(
        photo, tmp_path / "alone", config, ZoomSettings(frames=3, schedule=Schedule.load(schedules[1])), quiet=True
    )
    for a, b in zip(sorted(alone.glob("*.png")), sorted((tmp_path / "z-out").glob("*.png")), strict=True):
        assert np.array_equal(np.asarray(Image.open(a)), np.asarray(Image.open(b)))
