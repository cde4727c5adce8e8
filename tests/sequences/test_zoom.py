"""Zoom animations: the camera's warp, per-frame settings, resume == uninterrupted, outputs probed, bad inputs."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import inceptionism.api
from inceptionism.cli import main
from inceptionism.config import DreamConfig, parse_layers
from inceptionism.errors import ConfigError, InceptionismError
from inceptionism.sequences.cache import cache_folder
from inceptionism.sequences.schedule import Schedule
from inceptionism.sequences.zoom import Motion, ZoomSettings, parse_fps, parse_pan, run_zoom, warp

av = pytest.importorskip("av")

TINY = DreamConfig(octaves=1, steps=2, min_size=16, jitter=8)
FAST = ["--octaves", "1", "--steps", "1", "--min-size", "16", "--quiet"]


@pytest.fixture
def photo(tmp_path: Path) -> Path:
    yy, xx = np.mgrid[0:48, 0:64]
    rng = np.random.default_rng(0)
    img = np.stack([xx * 4, yy * 5, (xx + yy) * 2], -1) + rng.integers(0, 40, (48, 64, 3))
    path = tmp_path / "photo.png"
    Image.fromarray(np.clip(img, 0, 255).astype(np.uint8)).save(path)
    return path


def folder_frames(folder: Path) -> list[np.ndarray]:
    return [np.asarray(Image.open(p)) for p in sorted(folder.glob("frame_*.png"))]


def test_parse_pan_and_fps():
    assert parse_pan("2,-1.5") == (2.0, -1.5)
    for bad in ("2", "a,b", "1,2,3", "inf,0", ""):
        with pytest.raises(ConfigError, match="--pan"):
            parse_pan(bad)
    assert parse_fps("30000/1001") == Fraction(30000, 1001) and parse_fps("24") == 24
    for bad in ("fast", "0", "1/0", "1000"):
        with pytest.raises(ConfigError, match="--fps"):
            parse_fps(bad)


def test_motion_limits():
    Motion(zoom=0.5, rotate=-90).validate()
    with pytest.raises(ConfigError, match="--zoom must be between"):
        Motion(zoom=3).validate()
    with pytest.raises(ConfigError, match="--rotate"):
        Motion(rotate=100).validate()
    with pytest.raises(ConfigError, match="--pan-x must be a finite number"):
        Motion(pan_x=float("nan")).validate()


def test_warp_identity_pan_and_half_turn():
    image = torch.rand(1, 3, 12, 16, generator=torch.Generator().manual_seed(0))
    torch.testing.assert_close(warp(image, Motion(zoom=1.0)), image, atol=1e-5, rtol=0)
    panned = warp(image, Motion(zoom=1.0, pan_x=2, pan_y=1))  # the view moves right and down
    torch.testing.assert_close(panned[..., :-1, :-2], image[..., 1:, 2:], atol=1e-5, rtol=0)
    torch.testing.assert_close(warp(image, Motion(zoom=1.0, rotate=180)), image.flip(-1, -2), atol=1e-5, rtol=0)
    ramp = torch.linspace(0, 1, 16).expand(1, 3, 12, 16).contiguous()
    zoomed = warp(ramp, Motion(zoom=2.0))  # zooming in by 2 about the centre halves the slope, centre kept
    slope = zoomed[0, 0, 6, 5:11].diff()
    torch.testing.assert_close(slope, torch.full_like(slope, 0.5 / 15), atol=1e-5, rtol=0)
    assert zoomed[0, 0, 6, 7:9].mean() == pytest.approx(0.5, abs=1e-5)


def test_frame_settings_seed_frame_steps_and_schedule():
    schedule = Schedule.from_dict({"zoom": {"0": 1.0, "4": 1.2}, "steps": {"3": 7}, "layer.block10": {"0": 0.5}})
    s = ZoomSettings(frames=5, frame_steps=1, schedule=schedule).validate(TINY)
    first, second, fourth = (s.config_at(TINY, i, ("block12",)) for i in (0, 1, 3))
    assert (first.seed, first.steps, second.seed, second.steps, fourth.steps) == (0, 7, 1, 7, 7)
    assert parse_layers(second.layers) == [("block12", 1.0), ("block10", 0.5)]
    plain = ZoomSettings(frames=5, frame_steps=1)
    assert plain.config_at(TINY, 0).steps == 2 and plain.config_at(TINY, 1).steps == 1
    assert s.motion_at(2).zoom == pytest.approx(1.1) and s.motion_at(2).rotate == 0
    with pytest.raises(ConfigError, match="frame 4, but there are 4 frames"):
        ZoomSettings(frames=4, schedule=schedule).validate(TINY)


def test_interrupted_then_resumed_zoom_equals_an_uninterrupted_one(photo, tmp_path, monkeypatch):
    settings = ZoomSettings(frames=4, motion=Motion(zoom=1.1, rotate=3, pan_x=1), frame_steps=1)
    whole = run_zoom(photo, tmp_path / "whole", TINY, settings, quiet=True)

    def stop_after_frame_1(index: int, frame: np.ndarray) -> None:
        if index == 1:
            raise KeyboardInterrupt

    out = tmp_path / "resumed"
    with pytest.raises(KeyboardInterrupt):
        run_zoom(photo, out, TINY, settings, quiet=True, on_frame=stop_after_frame_1)
    assert not out.exists() and sorted(cache_folder(out).glob("*.png")) != []

    dreams = []
    real_dream = inceptionism.api.dream
    monkeypatch.setattr(inceptionism.api, "dream", lambda *a, **k: dreams.append(1) or real_dream(*a, **k))
    notes: list[str] = []
    run_zoom(photo, out, TINY, settings, quiet=True, note=notes.append)
    assert len(dreams) == 2 and notes == []  # frames 0 and 1 came from the cache
    a, b = folder_frames(whole), folder_frames(out)
    assert len(a) == len(b) == 4
    for x, y in zip(a, b, strict=True):
        np.testing.assert_array_equal(x, y)
    assert not (a[0] == a[3]).all()  # the camera moved
    assert not cache_folder(out).exists()  # removed once the output is written
    record = json.loads((tmp_path / "resumed.json").read_text())
    assert record["zoom"]["zoom"] == 1.1 and record["steps"] == 2


def test_mp4_and_gif_probe_back_with_frames_fps_size_and_settings(photo, tmp_path):
    schedule = tmp_path / "moves.toml"
    schedule.write_text('interpolation = "smooth"\n[zoom]\n0 = 1.0\n2 = 1.1\n')
    mp4 = tmp_path / "z.mp4"
    args = ["zoom", str(photo), "--frames", "3", "--fps", "12", "--schedule", str(schedule), *FAST]
    assert main([*args, "-o", str(mp4)]) == 0
    with av.open(str(mp4)) as container:
        stream = container.streams.video[0]
        assert (stream.average_rate, stream.width, stream.height) == (12, 64, 48)
        assert sum(1 for _ in container.decode(video=0)) == 3
        record = json.loads(container.metadata["comment"])
    assert record["zoom"]["schedule"]["zoom"] == {"0": 1.0, "2": 1.1, "interpolation": "smooth"}
    gif = tmp_path / "z.gif"
    assert main([*args, "-o", str(gif)]) == 0
    with av.open(str(gif)) as container:
        frames = list(container.decode(video=0))
        assert len(frames) == 3 and (frames[0].width, frames[0].height) == (64, 48)
        assert float(frames[1].time - frames[0].time) == pytest.approx(1 / 12, abs=0.01)
    assert json.loads((tmp_path / "z.gif.json").read_text())["zoom"]["fps"] == "12"


@pytest.mark.parametrize(
    ("extra", "schedule", "code", "message"),
    [
        (["--pan", "2"], None, 2, "--pan must be DX,DY"),
        (["--frames", "0"], None, 2, "--frames must be"),
        (["--zoom", "5"], None, 2, "--zoom must be between"),
        ([], '{"zoom": {"0": 1, "9": 1.1}}', 2, "key at frame 9, but there are 3 frames"),
        ([], '{"zooom": {"0": 1}}', 2, "unknown setting 'zooom'"),
        ([], '{"step_size": {"0": 0.01, "2": 5}}', 2, "frame 1: --step-size must be at most"),
    ],
)
def test_bad_inputs_are_one_line_and_write_nothing(photo, tmp_path, capsys, extra, schedule, code, message):
    args = ["zoom", str(photo), "-o", str(tmp_path / "z.mp4"), "--frames", "3", *FAST, *extra]
    if schedule is not None:
        (tmp_path / "s.json").write_text(schedule)
        args += ["--schedule", str(tmp_path / "s.json")]
    assert main(args) == code
    err = capsys.readouterr().err
    assert message in err and len(err.strip().splitlines()) == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(["photo.png", *(["s.json"] if schedule else [])])


def test_bad_outputs(photo, tmp_path, capsys):
    assert main(["zoom", str(photo), "-o", str(tmp_path / "z.avi"), *FAST]) == 1
    assert "cannot write" in capsys.readouterr().err
    gif = tmp_path / "in.gif"
    Image.open(photo).save(gif)
    assert main(["zoom", str(gif), "-o", str(gif), *FAST]) == 1
    assert "refusing to overwrite the input" in capsys.readouterr().err


def test_without_pyav_video_names_the_extra_but_a_frame_folder_works(photo, tmp_path, monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "av", None)  # import av now fails
    assert main(["zoom", str(photo), "-o", str(tmp_path / "z.mp4"), "--frames", "1", *FAST]) == 1
    assert "pip install 'inceptionism[video]'" in capsys.readouterr().err
    with pytest.raises(InceptionismError, match="video"):
        run_zoom(photo, tmp_path / "z.gif", TINY, ZoomSettings(frames=1), quiet=True)
    assert run_zoom(photo, tmp_path / "frames", TINY, ZoomSettings(frames=2), quiet=True).is_dir()
    assert len(folder_frames(tmp_path / "frames")) == 2


@pytest.mark.slow
def test_a_zoom_killed_with_sigkill_continues_to_the_same_frames(photo, tmp_path):
    out = tmp_path / "killed"
    # enough frames that the kill lands mid-run however fast the machine dreams the frames after the first
    cmd = [sys.executable, "-m", "inceptionism", "zoom", str(photo), "-o", str(out), "--frames", "16", *FAST]
    cmd += ["--zoom", "1.1", "--rotate", "2"]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 300
    while not (cache_folder(out) / "000001.png").exists() and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.01)
    proc.send_signal(signal.SIGKILL)
    assert proc.wait() == -signal.SIGKILL and not out.exists()  # killed mid-run: frames cached, no output
    resumed = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert resumed.returncode == 0, resumed.stderr
    cfg = DreamConfig(octaves=1, steps=1, min_size=16)
    whole = run_zoom(photo, tmp_path / "whole", cfg, ZoomSettings(frames=16, motion=Motion(1.1, 2)), quiet=True)
    for x, y in zip(folder_frames(whole), folder_frames(out), strict=True):
        np.testing.assert_array_equal(x, y)


def test_ctrl_c_says_the_same_command_continues(photo, tmp_path, monkeypatch, capsys):
    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr("inceptionism.sequences.zoom.run_zoom", interrupted)
    assert main(["zoom", str(photo), "-o", str(tmp_path / "z.mp4"), *FAST]) == 130
    err = capsys.readouterr().err
    assert "finished frames are kept in" in err and ".z.mp4.frames" in err and "the same command continues" in err
