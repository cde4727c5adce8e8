"""Video: the command end to end (frames, rate, size, sound probed), spans, frame folders, coherence lowering
flicker, resume after an interruption equal to an uninterrupted run, and every bad input as one line."""

from __future__ import annotations

import builtins
import json
import sys
from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest
from clips import audio_packets, decode, make_clip
from PIL import Image

from inceptionism.cli import main
from inceptionism.config import DreamConfig
from inceptionism.errors import ConfigError, ImageError
from inceptionism.sequences.cache import cache_folder
from inceptionism.sequences.media import probe
from inceptionism.sequences.video import (
    VIDEO_DEFAULTS,
    FlickerMeter,
    VideoSettings,
    dream_video,
    span_indices,
    with_video_defaults,
)

av = pytest.importorskip("av")
pytest.importorskip("cv2")

TINY = DreamConfig(octaves=1, steps=2, min_size=16, jitter=8, step_size=0.03)
FAST = ["--octaves", "1", "--steps", "2", "--frame-steps", "1", "--min-size", "16", "--jitter", "8", "--quiet"]


@pytest.fixture(scope="module")
def clip(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_clip(tmp_path_factory.mktemp("clip") / "pan.mp4", frames=6)


def one_line_error(capsys: pytest.CaptureFixture[str], argv: list[str], match: str) -> None:
    assert main(argv) != 0
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and err.startswith("inceptionism: error:") and match in err, err


def test_video_command_keeps_rate_size_and_sound(clip, tmp_path, capsys):
    out = tmp_path / "dream.mp4"
    assert main(["video", str(clip), "-o", str(out), *FAST]) == 0
    assert capsys.readouterr().out.strip() == str(out)
    info = probe(out)
    assert (info.fps, info.frames, info.width, info.height, info.pix_fmt) == (24, 6, 64, 48, "yuv420p")
    codec, packets, seconds = audio_packets(clip)
    assert audio_packets(out) == (codec, packets, seconds)  # the sound copied packet for packet
    assert not cache_folder(out).exists()  # the cache goes once the video is in place
    with av.open(str(out)) as container:
        record = json.loads(container.metadata["comment"])
    assert record["video"]["coherence"] == VideoSettings().coherence and record["steps"] == 2
    dreams, sources = decode(out), decode(clip)
    assert np.abs(dreams[3].astype(int) - sources[3]).mean() > 2  # it dreamed


def test_span_folder_in_and_out(clip, tmp_path):
    notes: list[str] = []
    out = tmp_path / "frames"
    settings = VideoSettings(start=0.1, end=0.25)
    report = dream_video(clip, out, TINY, settings, quiet=True, note=notes.append)
    assert report.frames == report.dreamed == 4 and sorted(report.seconds) == [
        "cache", "decode", "dream", "encode", "flow",
    ]  # fmt: skip
    assert sorted(p.name for p in out.iterdir()) == [f"frame_{i:06d}.png" for i in range(4)]
    assert json.loads((tmp_path / "frames.json").read_text())["video"]["start"] == 0.1
    assert notes == ["a frame folder has no sound; the audio is not kept"]
    again = dream_video(out, tmp_path / "again.mkv", TINY, VideoSettings(folder_fps=Fraction(12)), quiet=True)
    info = probe(again.path)
    assert (info.frames, info.fps, info.has_audio) == (4, 12, False)


def test_coherence_lowers_flicker(tmp_path):
    slow_pan = make_clip(tmp_path / "slow.mp4", size=(96, 64), frames=5, step=1, audio=None)
    config = DreamConfig(octaves=2, steps=6, min_size=16, jitter=8, step_size=0.03)
    alone = dream_video(slow_pan, tmp_path / "alone.mp4", config, VideoSettings(coherence=0), quiet=True)
    carried = dream_video(slow_pan, tmp_path / "carried.mp4", config, VideoSettings(frame_steps=1), quiet=True)
    assert carried.flicker < 0.6 * alone.flicker
    assert carried.seconds["dream"] < alone.seconds["dream"]  # fewer steps after the first frame


def test_resume_equals_an_uninterrupted_run(clip, tmp_path):
    settings = VideoSettings(frame_steps=1)
    whole: dict[int, np.ndarray] = {}
    dream_video(clip, tmp_path / "whole.mp4", TINY, settings, quiet=True, on_frame=whole.__setitem__)

    def stop_after_three(index: int, frame: np.ndarray) -> None:
        if index == 2:
            raise KeyboardInterrupt

    out = tmp_path / "resumed.mp4"
    with pytest.raises(KeyboardInterrupt):
        dream_video(clip, out, TINY, settings, quiet=True, on_frame=stop_after_three)
    assert not out.exists() and not list(tmp_path.glob(".resumed.mp4.*.part"))  # nothing half-written
    assert len(list(cache_folder(out).glob("*.png"))) == 3
    resumed: dict[int, np.ndarray] = {}
    report = dream_video(clip, out, TINY, settings, quiet=True, on_frame=resumed.__setitem__)
    assert (report.frames, report.dreamed) == (6, 3)
    assert sorted(resumed) == sorted(whole) == list(range(6))
    for i in whole:
        assert np.array_equal(resumed[i], whole[i]), f"frame {i} differs"
    # The files are encoded from equal frames but need not be equal: libx264 does not encode the same frames to
    # the same stream every time (benchmarks/encode_repeat.py), so the frames are compared above, before encoding.
    assert len(decode(out)) == 6


def test_no_audio_odd_size_and_gif(tmp_path, capsys):
    silent = make_clip(tmp_path / "odd.mov", size=(65, 49), frames=3, audio=None, pix_fmt="yuv444p")
    out = tmp_path / "even.mp4"
    assert main(["video", str(silent), "-o", str(out), *FAST]) == 0
    assert "H.264 needs even sides" in capsys.readouterr().err
    info = probe(out)
    assert (info.width, info.height, info.frames, info.has_audio, info.pix_fmt) == (64, 48, 3, False, "yuv444p")
    assert main(["video", str(silent), "-o", str(tmp_path / "odd.gif"), *FAST, "--coherence", "0"]) == 0
    assert probe(tmp_path / "odd.gif").width == 65 and (tmp_path / "odd.gif.json").is_file()


def test_variable_frame_rate_is_said(tmp_path):
    clip = make_clip(tmp_path / "vfr.mp4", frames=4, audio=None, pts=[0, 1, 3, 4])
    notes: list[str] = []
    report = dream_video(clip, tmp_path / "out.mp4", TINY, VideoSettings(coherence=0), quiet=True, note=notes.append)
    assert report.frames == 4 and probe(report.path).fps == Fraction(18)
    assert len(notes) == 1 and "variable frame rate" in notes[0] and "18.000 fps" in notes[0]


def test_bad_inputs_are_one_line(clip, tmp_path, capsys):
    text = tmp_path / "notes.mp4"
    text.write_text("not a video")
    out = str(tmp_path / "out.mp4")
    one_line_error(capsys, ["video", str(text), "-o", out, *FAST], "is not a video PyAV can read")
    one_line_error(capsys, ["video", str(tmp_path / "missing.mp4"), "-o", out, *FAST], "does not exist")
    before = clip.read_bytes()
    one_line_error(capsys, ["video", str(clip), "-o", str(clip), *FAST], "refusing to overwrite the input")
    assert clip.read_bytes() == before
    one_line_error(capsys, ["video", str(clip), "-o", str(tmp_path / "out.avi"), *FAST], "use one of .mp4")
    for bad, match in [
        (["--coherence", "2"], "--coherence must be"),
        (["--frame-steps", "0"], "--frame-steps must be"),
        (["--dream-scale", "1.5"], "--dream-scale must be"),
        (["--start", "5"], "no frames between"),
        (["--start", "0.2", "--end", "0.1"], "--end (0.1 s) must come after --start (0.2 s)"),
        (["--fps", "12"], "--fps is for a folder"),
        (["--fps", "fast"], "--fps must be a number"),
    ]:
        one_line_error(capsys, ["video", str(clip), "-o", out, *FAST, *bad], match)
    (tmp_path / "empty").mkdir()
    one_line_error(capsys, ["video", str(tmp_path / "empty"), "-o", out, *FAST], "holds no frames")
    assert not Path(out).exists()


def test_missing_extra_is_one_line(clip, tmp_path, capsys, monkeypatch):
    real_import = builtins.__import__

    def no_av(name, *args, **kwargs):
        if name == "av":
            raise ImportError("No module named 'av'")
        return real_import(name, *args, **kwargs)

    monkeypatch.delitem(sys.modules, "av")
    monkeypatch.setattr(builtins, "__import__", no_av)
    one_line_error(capsys, ["video", str(clip), "-o", str(tmp_path / "o.mp4")], "pip install 'inceptionism[video]'")


def test_settings_defaults_and_flicker_meter():
    config = with_video_defaults(DreamConfig(), {"steps"})
    assert config.octaves == VIDEO_DEFAULTS["octaves"] and config.steps == DreamConfig().steps
    with pytest.raises(ConfigError, match="--dream-scale"):
        VideoSettings(dream_scale=0).validate()
    meter = FlickerMeter()
    source = np.zeros((4, 4, 3), np.uint8)
    meter.add(source, np.full((4, 4, 3), 10, np.uint8))
    meter.add(source, np.full((4, 4, 3), 10, np.uint8))  # the same detail: no flicker
    meter.add(source + 5, np.full((4, 4, 3), 66, np.uint8))  # detail 10 → 61
    assert meter.value == pytest.approx((0 + 51 / 255) / 2)
    info = probe_like(frames=5, fps=Fraction(10))
    assert span_indices(info, 0.1, 0.3) == [1, 2]
    with pytest.raises(ConfigError, match="no frames between"):
        span_indices(info, 0.6, None)
    with pytest.raises(ImageError):
        dream_video(Path("/nonexistent/in.mp4"), Path("/tmp/out.mp4"), TINY, VideoSettings())


def probe_like(frames: int, fps: Fraction):
    from inceptionism.sequences.media import VideoInfo

    return VideoInfo(fps, frames, 8, 8, "yuv420p", has_audio=False, variable_fps=False)


def test_first_frame_is_a_plain_dream(clip, tmp_path):
    """Coherence 0 and scale 1: each frame is the engine's dream of the source frame, nothing else mixed in."""
    from inceptionism.api import dream

    report = dream_video(clip, tmp_path / "f", TINY, VideoSettings(coherence=0, dream_scale=1, end=0.05), quiet=True)
    assert report.frames == 1
    frame = np.asarray(Image.open(tmp_path / "f" / "frame_000000.png"))
    source = decode(clip)[0]
    expected = np.asarray(dream(source.astype(np.float32) / 255, TINY).convert("RGB"))
    assert np.abs(frame.astype(int) - expected).max() <= 1  # rounding of detail added back to the uint8 source


def test_ctrl_c_says_where_the_frames_are(clip, tmp_path, capsys, monkeypatch):
    import inceptionism.sequences.video as video

    def interrupted(*args: object, **kwargs: object) -> None:
        raise KeyboardInterrupt

    monkeypatch.setattr(video, "dream_video", interrupted)
    out = tmp_path / "out.mp4"
    assert main(["video", str(clip), "-o", str(out), *FAST]) == 130
    err = capsys.readouterr().err
    assert f"finished frames are kept in {cache_folder(out)}; the same command continues" in err
