"""Video files and frame folders in and out: probe, streamed reading, spans, the writer's kinds, audio copied
packet for packet (or re-encoded where the container cannot hold it), odd sizes, atomic outputs, bad inputs."""

from __future__ import annotations

import builtins
import sys
import types
from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest
from clips import audio_packets, decode, make_clip, pan_frames
from PIL import Image

from inceptionism.errors import ImageError, InceptionismError
from inceptionism.sequences.media import (
    FOLDER_FPS,
    VideoWriter,
    check_video_output,
    natural_key,
    output_kind,
    probe,
    read_frames,
    require_av,
)

av = pytest.importorskip("av")


@pytest.fixture(scope="module")
def clip(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_clip(tmp_path_factory.mktemp("clip") / "pan.mp4")


def write_all(path: Path, source: Path, **kwargs: object) -> Path:
    info = probe(source)
    with VideoWriter(path, info.fps, (info.width, info.height), **kwargs) as writer:  # type: ignore[arg-type]
        for _, frame in read_frames(source):
            writer.write(frame)
    return path


def test_probe_and_read(clip):
    info = probe(clip)
    assert (info.fps, info.frames, info.width, info.height) == (24, 8, 64, 48)
    assert info.pix_fmt == "yuv420p" and info.has_audio and not info.variable_fps
    assert info.duration == pytest.approx(8 / 24)
    frames = read_frames(clip)
    assert isinstance(frames, types.GeneratorType)  # streamed, not a list
    items = list(frames)
    assert [i for i, _ in items] == list(range(8))
    assert all(f.shape == (48, 64, 3) and f.dtype == np.uint8 for _, f in items)
    # The decoded frames are the pan (H.264 at default quality: close, not exact).
    assert np.abs(items[3][1].astype(int) - pan_frames()[3]).mean() < 8


def test_read_a_span(clip):
    assert [i for i, _ in read_frames(clip, start=0.1, end=0.25)] == [2, 3, 4, 5]
    assert [i for i, _ in read_frames(clip, start=0.25)] == [6, 7]
    whole = dict(read_frames(clip))
    for i, frame in read_frames(clip, start=0.2):  # seeking gives the same pictures as decoding from the start
        assert np.array_equal(frame, whole[i])


def test_natural_order_folder(tmp_path):
    folder = tmp_path / "frames"
    folder.mkdir()
    for n in (10, 2, 1):
        Image.fromarray(np.full((6, 8, 3), n, np.uint8)).save(folder / f"f{n}.png")
    (folder / "notes.txt").write_text("not a frame")
    assert sorted(["f10", "f2", "F1"], key=natural_key) == ["F1", "f2", "f10"]
    assert [int(f[0, 0, 0]) for _, f in read_frames(folder)] == [1, 2, 10]
    info = probe(folder)
    assert (info.frames, info.width, info.height, info.fps, info.has_audio) == (3, 8, 6, FOLDER_FPS, False)
    assert probe(folder, folder_fps=Fraction(12)).fps == 12
    assert [i for i, _ in read_frames(folder, start=1 / 30, folder_fps=None)] == [1, 2]
    Image.fromarray(np.zeros((7, 8, 3), np.uint8)).save(folder / "f11.png")
    with pytest.raises(ImageError, match="same size"):
        list(read_frames(folder))


def test_writer_copies_the_audio_packets(clip, tmp_path):
    out = write_all(tmp_path / "out.mp4", clip, audio_from=clip)
    info = probe(out)
    assert (info.fps, info.frames, info.width, info.height, info.has_audio) == (24, 8, 64, 48, True)
    codec, packets, seconds = audio_packets(clip)
    codec_out, packets_out, seconds_out = audio_packets(out)
    assert codec_out == codec == "aac"
    assert packets_out == packets  # copied, not re-encoded
    assert seconds_out == pytest.approx(seconds, abs=1 / 24)
    assert not list(tmp_path.glob(".*.part"))


def test_writer_keeps_the_span_of_audio(clip, tmp_path):
    info = probe(clip)
    out = tmp_path / "span.mkv"
    with VideoWriter(out, info.fps, (64, 48), audio_from=clip, audio_span=(2 / 24, 6 / 24)) as writer:
        for _, frame in read_frames(clip, start=2 / 24, end=6 / 24):
            writer.write(frame)
    assert probe(out).frames == 4
    codec, _, seconds = audio_packets(out)
    assert codec == "aac" and seconds == pytest.approx(4 / 24, abs=1 / 24)


def test_writer_reencodes_audio_the_container_cannot_hold(tmp_path):
    source = make_clip(tmp_path / "ulaw.mov", audio="pcm_mulaw")
    notes: list[str] = []
    out = write_all(tmp_path / "out.mp4", source, audio_from=source, note=notes.append)
    codec, _, seconds = audio_packets(out)
    assert codec == "aac" and seconds == pytest.approx(8 / 24, abs=0.15)  # AAC pads to whole 1024-sample frames
    assert notes == ["the output container cannot hold pcm_mulaw audio; the sound is re-encoded to AAC"]


def test_odd_size_is_cropped_with_one_note(tmp_path):
    source = make_clip(tmp_path / "odd.mov", size=(65, 49), audio=None, pix_fmt="yuv444p")
    notes: list[str] = []
    out = write_all(tmp_path / "even.mp4", source, pix_fmt="yuv444p", note=notes.append)
    info = probe(out)
    assert (info.width, info.height, info.frames, info.pix_fmt, info.has_audio) == (64, 48, 8, "yuv444p", False)
    assert len(notes) == 1 and "65×49" in notes[0] and "64×48" in notes[0]
    gif = write_all(tmp_path / "odd.gif", source, note=notes.append)  # a GIF keeps odd sides
    assert (probe(gif).width, probe(gif).height) == (65, 49) and len(notes) == 1


def test_gif_and_frame_folder(clip, tmp_path):
    notes: list[str] = []
    gif = write_all(tmp_path / "out.gif", clip, audio_from=clip, note=notes.append)
    frames = decode(gif)
    source = [f for _, f in read_frames(clip)]
    assert len(frames) == 8 and np.abs(frames[5].astype(int) - source[5]).mean() < 6  # a palette per frame
    assert notes == ["a GIF has no sound; the audio is not kept"]
    folder = write_all(tmp_path / "frames", clip)
    names = sorted(p.name for p in folder.iterdir())
    assert names == [f"frame_{i:06d}.png" for i in range(8)]
    assert np.array_equal(np.asarray(Image.open(folder / "frame_000005.png")), source[5])  # lossless
    (folder / "frame_000099.png").write_bytes(b"old")
    write_all(folder, clip)  # an earlier frame folder is replaced whole
    assert len(list(folder.iterdir())) == 8


def test_outputs_appear_whole_or_not_at_all(clip, tmp_path):
    out = tmp_path / "out.mp4"
    out.write_bytes(b"earlier output")
    for target in (out, tmp_path / "folder"):
        with pytest.raises(RuntimeError, match="crash"), VideoWriter(target, Fraction(24), (64, 48)) as writer:
            for _, frame in read_frames(clip, end=0.1):
                writer.write(frame)
            raise RuntimeError("crash")
    assert out.read_bytes() == b"earlier output" and not (tmp_path / "folder").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.mp4"]  # no temp file left
    with pytest.raises(ImageError, match="no frames"), VideoWriter(tmp_path / "empty.mp4", Fraction(24), (64, 48)):
        pass
    assert not (tmp_path / "empty.mp4").exists()
    with pytest.raises(ValueError, match=r"\(48, 64, 3\) uint8"), VideoWriter(out, Fraction(24), (64, 48)) as w:
        w.write(np.zeros((48, 63, 3), np.uint8))


def test_output_names(tmp_path):
    assert [output_kind(Path(p)) for p in ("a.MP4", "b.mkv", "c.mov", "d.gif", "frames")] == [
        "video", "video", "video", "gif", "folder",
    ]  # fmt: skip
    with pytest.raises(ImageError, match=r"use one of \.mp4, \.mov, \.mkv, \.gif"):
        output_kind(Path("out.avi"))
    with pytest.raises(ImageError, match="does not exist"):
        check_video_output(tmp_path / "missing" / "out.mp4")
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "holiday.jpg").write_bytes(b"x")
    with pytest.raises(ImageError, match="holds other files"):
        check_video_output(tmp_path / "mine")
    (tmp_path / "clips.mp4").mkdir()
    with pytest.raises(ImageError, match="is a folder"):
        check_video_output(tmp_path / "clips.mp4")


def test_bad_inputs(tmp_path):
    text = tmp_path / "notes.mp4"
    text.write_text("not a video at all")
    with pytest.raises(ImageError, match="is not a video PyAV can read"):
        probe(text)
    with pytest.raises(ImageError, match="does not exist"):
        probe(tmp_path / "missing.mp4")
    sound = tmp_path / "tone.m4a"
    with av.open(str(sound), "w") as out:
        stream = out.add_stream("aac", rate=8000)
        chunk = av.AudioFrame.from_ndarray(np.zeros((1, 4096), np.float32), format="fltp", layout="mono")
        chunk.sample_rate = 8000
        out.mux(stream.encode(chunk))
        out.mux(stream.encode(None))
    with pytest.raises(ImageError, match="has no video stream"):
        probe(sound)
    empty = tmp_path / "empty.mp4"
    with av.open(str(empty), "w") as out:
        stream = out.add_stream("libx264", rate=24)
        stream.width, stream.height = 64, 48
        out.start_encoding()  # the header, then no frame (FFmpeg then drops the stream from the file)
    with pytest.raises(ImageError, match="has no video"):
        probe(empty)
    (tmp_path / "nothing").mkdir()
    with pytest.raises(ImageError, match="holds no frames"):
        probe(tmp_path / "nothing")


def test_variable_frame_rate_is_detected(tmp_path):
    clip = make_clip(tmp_path / "vfr.mp4", audio=None, pts=[0, 1, 3, 4, 6, 9, 10, 11])
    info = probe(clip)
    assert info.variable_fps and info.frames == 8
    assert info.fps == Fraction(7 * 24, 11)  # the average: 7 intervals over 11 ticks of 1/24 s
    assert [i for i, _ in read_frames(clip)] == list(range(8))  # each frame once, in order
    assert [i for i, _ in read_frames(clip, start=5 / 24, end=10 / 24)] == [4, 5]  # by the frames' own times


def test_missing_pyav_names_the_extra(monkeypatch):
    real_import = builtins.__import__

    def no_av(name, *args, **kwargs):
        if name == "av":
            raise ImportError("No module named 'av'")
        return real_import(name, *args, **kwargs)

    monkeypatch.delitem(sys.modules, "av")
    monkeypatch.setattr(builtins, "__import__", no_av)
    with pytest.raises(InceptionismError, match=r"video needs PyAV.*pip install 'inceptionism\[video\]'"):
        require_av()
