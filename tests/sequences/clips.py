"""Tiny test clips made with PyAV: a bundled photo cropped along a path (a pan), with a sine-tone track."""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path

import numpy as np
from PIL import Image

PHOTO = Path(__file__).resolve().parents[2] / "examples" / "coffee.jpg"


def pan_frames(size: tuple[int, int] = (64, 48), frames: int = 8, step: int = 3) -> list[np.ndarray]:
    """``frames`` crops of the photo, (h, w, 3) uint8, moving right by ``step`` pixels a frame."""
    photo = np.asarray(Image.open(PHOTO).convert("RGB"))
    w, h = size
    return [np.ascontiguousarray(photo[120 : 120 + h, 200 + step * i : 200 + step * i + w]) for i in range(frames)]


def make_clip(
    path: Path,
    size: tuple[int, int] = (64, 48),
    frames: int = 8,
    fps: int = 24,
    audio: str | None = "aac",
    pix_fmt: str = "yuv420p",
    pts: list[int] | None = None,
    step: int = 3,
) -> Path:
    """Write a panning H.264 clip to ``path`` (its container from the extension), with a 440 Hz mono tone in
    ``audio``'s codec as long as the video (or no sound: None). ``pts``: frame times in 1/fps units (default
    0, 1, 2, …; uneven ones make a variable frame rate); ``step``: pixels the view moves right per frame."""
    import av

    rate = 8000 if audio == "pcm_mulaw" else 44100
    with av.open(str(path), "w") as out:
        video = out.add_stream("libx264", rate=fps)
        video.width, video.height, video.pix_fmt = size[0], size[1], pix_fmt
        if pts is not None:
            video.codec_context.time_base = Fraction(1, fps)
        sound = out.add_stream(audio, rate=rate) if audio else None
        if sound is not None:
            sound.layout = "mono"
        for i, image in enumerate(pan_frames(size, frames, step)):
            frame = av.VideoFrame.from_ndarray(image, format="rgb24")
            if pts is not None:
                frame.pts, frame.time_base = pts[i], Fraction(1, fps)
            out.mux(video.encode(frame))
        out.mux(video.encode(None))
        if sound is not None:
            n = round(rate * frames / fps)
            tone = (0.3 * np.sin(2 * np.pi * 440 * np.arange(n) / rate)).astype(np.float32)[None]
            fmt = sound.codec_context.codec.audio_formats[0].name
            samples = (tone * 32767).astype(np.int16) if fmt.startswith("s16") else tone
            chunk = av.AudioFrame.from_ndarray(samples, format=fmt, layout="mono")
            chunk.sample_rate, chunk.pts = rate, 0
            out.mux(sound.encode(chunk))
            out.mux(sound.encode(None))
    return path


def audio_packets(path: Path) -> tuple[str, list[bytes], float]:
    """(codec name, packet payloads, seconds from the first packet's start to the last's end) of the first audio
    stream."""
    import av

    with av.open(str(path)) as container:
        stream = container.streams.audio[0]
        packets = [p for p in container.demux(stream) if p.size]
        seconds = float((packets[-1].pts + packets[-1].duration - packets[0].pts) * stream.time_base)
        return stream.codec_context.name, [bytes(p) for p in packets], seconds


def decode(path: Path) -> list[np.ndarray]:
    """Every frame of a video, (h, w, 3) uint8."""
    import av

    with av.open(str(path)) as container:
        return [f.to_ndarray(format="rgb24") for f in container.decode(video=0)]
