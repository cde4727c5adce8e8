"""Video files and image-sequence folders in and out, streamed: frames are read and written one at a time.

:func:`probe` describes an input (:class:`VideoInfo`); :func:`read_frames` yields its frames as ``(H, W, 3)``
uint8 RGB arrays; :class:`VideoWriter` encodes frames to H.264 (``.mp4``, ``.mov``, ``.mkv``), a ``.gif`` or a
folder of PNGs, with the audio of a source file copied packet for packet where the container takes its codec
(re-encoded to AAC where it does not). Every output is written under a temporary name and moved into place when
it is complete, so a crash or Ctrl-C leaves no half-written output.

PyAV (``av``) is the ``[video]`` extra: it is imported when first needed, and its absence is one clear error.
"""

from __future__ import annotations

import contextlib
import os
import re
import secrets
import shutil
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from types import ModuleType, TracebackType
from typing import Any

import numpy as np
from PIL import Image

from inceptionism.errors import ImageError, InceptionismError
from inceptionism.io.messages import reason, show
from inceptionism.sequences.cache import print_note

Note = Callable[[str], None]

EXTRA_HINT = "pip install 'inceptionism[video]'"
#: Output containers written with H.264, and the FFmpeg muxer used for each.
VIDEO_CONTAINERS = {".mp4": "mp4", ".mov": "mov", ".mkv": "matroska"}
#: Image files a frame folder is read from.
FRAME_EXTENSIONS = (".png", ".jpg", ".jpeg", ".webp", ".tif", ".tiff", ".bmp")
#: The frame rate of a folder of images, which has none of its own, unless the caller gives one.
FOLDER_FPS = Fraction(30)
#: Name of the frames a folder output holds: frame_000000.png, frame_000001.png, …
FRAME_NAME = "frame_{:06d}.png"
_OUR_FRAME = re.compile(r"^frame_\d{6,}\.png$")
# H.264 encoders, best first; the av wheels ship libx264.
_H264_ENCODERS = ("libx264", "libopenh264", "h264")
# libx264 settings: CRF 18 keeps a dream's fine detail without visible loss; "medium" is x264's own default.
_X264_OPTIONS = {"crf": "18", "preset": "medium"}
_PNG_LEVEL = 3  # folder frames: written once, kept; a middle zlib level


def require_av() -> ModuleType:
    """The PyAV module, or an :class:`InceptionismError` naming the extra that provides it."""
    try:
        import av
    except ImportError:
        raise InceptionismError(f"video needs PyAV, which is not installed: {EXTRA_HINT}") from None
    return av


@dataclass(frozen=True)
class VideoInfo:
    """What :func:`probe` finds: frame rate, frame count, size, pixel format and audio of a video or folder.

    ``variable_fps``: the frames' timestamps are not evenly spaced; ``fps`` is then their average rate.
    A folder of images has ``FOLDER_FPS`` (or the rate given), pixel format ``rgb24`` and no audio.
    """

    fps: Fraction
    frames: int
    width: int
    height: int
    pix_fmt: str
    has_audio: bool
    variable_fps: bool

    @property
    def duration(self) -> float:
        """Seconds: frames / fps."""
        return float(self.frames / self.fps)


def natural_key(name: str) -> list[Any]:
    """Sort key for natural order: ``frame2`` before ``frame10`` (digit runs compare as numbers)."""
    return [int(part) if part.isdigit() else part.lower() for part in re.split(r"(\d+)", name)]


def frame_files(folder: Path) -> list[Path]:
    """The image files in ``folder``, in natural order (hidden files left out)."""
    files = [p for p in folder.iterdir() if p.suffix.lower() in FRAME_EXTENSIONS and not p.name.startswith(".")]
    return sorted(files, key=lambda p: natural_key(p.name))


def _read_image(path: Path) -> np.ndarray:
    try:
        with Image.open(path) as im:
            return np.asarray(im.convert("RGB")).copy()
    except (OSError, ValueError, Image.DecompressionBombError) as exc:
        raise ImageError(f"cannot read frame {show(path)}: {reason(exc)}") from exc


def _open_input(path: Path) -> Any:
    av = require_av()
    if not path.exists():
        raise ImageError(f"input {show(path)} does not exist")
    try:
        container = av.open(str(path), "r")
    except (av.FFmpegError, OSError, UnicodeDecodeError) as exc:
        raise ImageError(f"{show(path)} is not a video PyAV can read ({reason(exc)})") from exc
    if not container.streams.video:
        container.close()
        raise ImageError(f"{show(path)} has no video stream")
    return container


def _probe_folder(folder: Path, fps: Fraction | None) -> VideoInfo:
    files = frame_files(folder)
    if not files:
        raise ImageError(f"folder {show(folder)} holds no frames ({', '.join(FRAME_EXTENSIONS)} files)")
    with Image.open(files[0]) as im:
        width, height = im.size
    return VideoInfo(fps or FOLDER_FPS, len(files), width, height, "rgb24", has_audio=False, variable_fps=False)


def probe(path: str | os.PathLike[str], *, folder_fps: Fraction | None = None) -> VideoInfo:
    """Describe the video file or image folder at ``path``; :class:`ImageError` if it has no frames to read.

    Counts the frames by reading the packets (not decoding them), so the count and the variable-rate check do not
    trust the container's header.
    """
    path = Path(path)
    if path.is_dir():
        return _probe_folder(path, folder_fps)
    av = require_av()
    container = _open_input(path)
    try:
        stream = container.streams.video[0]
        has_audio = bool(container.streams.audio)
        times = sorted(packet.pts for packet in container.demux(stream) if packet.pts is not None and packet.size > 0)
    except av.FFmpegError as exc:
        raise ImageError(f"{show(path)} cannot be read to its end ({reason(exc)})") from exc
    finally:
        container.close()
    if not times:
        raise ImageError(f"{show(path)} has no video frames")
    steps = np.diff(np.asarray(times, dtype=np.int64))
    variable = steps.size > 1 and int(steps.max() - steps.min()) > 1  # one tick of rounding is not variable
    rate = stream.average_rate or stream.guessed_rate or stream.base_rate
    if variable and len(times) > 1 and stream.time_base:
        span = (times[-1] - times[0]) * stream.time_base
        rate = Fraction(len(times) - 1) / span if span > 0 else rate
    if not rate:
        raise ImageError(f"{show(path)} has no frame rate")
    fps = Fraction(rate).limit_denominator(1001 * 1000)
    ctx = stream.codec_context
    pix_fmt = ctx.pix_fmt or "yuv420p"
    return VideoInfo(fps, len(times), ctx.width, ctx.height, pix_fmt, has_audio=has_audio, variable_fps=variable)


def _in_span(index: int, fps: Fraction, start: float | None, end: float | None) -> bool:
    """Whether frame ``index`` (shown from index / fps) falls in [start, end) seconds, half a frame of slack."""
    t = float(index / fps)
    half = 0.5 / float(fps)
    return (start is None or t + half >= start) and (end is None or t + half < end)


def _read_folder(
    folder: Path, fps: Fraction, start: float | None, end: float | None
) -> Iterator[tuple[int, np.ndarray]]:
    size: tuple[int, ...] | None = None
    for index, path in enumerate(frame_files(folder)):
        if not _in_span(index, fps, start, end):
            if end is not None and float(index / fps) >= end:
                return
            continue
        frame = _read_image(path)
        if size is not None and frame.shape != size:
            raise ImageError(
                f"frame {show(path)} is {frame.shape[1]}×{frame.shape[0]}, the first was {size[1]}×{size[0]}; "
                "every frame of a folder must have the same size"
            )
        size = frame.shape
        yield index, frame


def read_frames(
    path: str | os.PathLike[str],
    start: float | None = None,
    end: float | None = None,
    *,
    folder_fps: Fraction | None = None,
) -> Iterator[tuple[int, np.ndarray]]:
    """Frames of a video or image folder in [start, end) seconds: ``(index, (H, W, 3) uint8 RGB)``.

    ``index`` counts frames from the input's first (0-based), so a span's frames keep their place. Frames are
    decoded one at a time; none is held after it is yielded. A constant-rate video is seeked to ``start`` (the
    keyframe before it) rather than decoded from its beginning; a variable-rate one is decoded from its first
    frame and its span is chosen by the frames' own times.
    """
    path = Path(path)
    if path.is_dir():
        yield from _read_folder(path, folder_fps or FOLDER_FPS, start, end)
        return
    info = probe(path)
    av = require_av()
    container = _open_input(path)
    try:
        stream = container.streams.video[0]
        stream.thread_type = "AUTO"  # frame threads: decoding is a small share, but free on a second core
        origin, tb = stream.start_time or 0, stream.time_base
        # A constant rate seeks to the span and numbers frames by their time (a seek lands anywhere); a variable
        # rate decodes from the first frame and numbers them in order, since times then say nothing of a count.
        if start and tb and not info.variable_fps:
            container.seek(origin + int(start / tb), stream=stream, backward=True)
        last = -1
        for frame in container.decode(stream):
            timed = frame.pts is not None and tb
            seconds = float((frame.pts - origin) * tb) if timed else (last + 1) / float(info.fps)
            index = last + 1 if info.variable_fps or not timed else max(last + 1, round(seconds * info.fps))
            last = index
            if not info.variable_fps:
                seconds = float(index / info.fps)
            half = 0.5 / float(info.fps)
            if end is not None and seconds + half >= end:
                break
            if start is None or seconds + half >= start:
                yield index, frame.to_ndarray(format="rgb24")
    except av.FFmpegError as exc:
        raise ImageError(f"{show(path)} cannot be decoded ({reason(exc)})") from exc
    finally:
        container.close()


def _h264_codec(av: ModuleType) -> str:
    for name in _H264_ENCODERS:
        with contextlib.suppress(Exception):
            av.codec.Codec(name, "w")
            return name
    raise InceptionismError(f"this PyAV build has no H.264 encoder; reinstall it: {EXTRA_HINT}")


def output_kind(path: Path) -> str:
    """``"video"``, ``"gif"`` or ``"folder"`` (no extension) for an output path; :class:`ImageError` otherwise."""
    suffix = path.suffix.lower()
    if suffix in VIDEO_CONTAINERS:
        return "video"
    if suffix == ".gif":
        return "gif"
    if not suffix:
        return "folder"
    known = ", ".join([*VIDEO_CONTAINERS, ".gif"])
    raise ImageError(f"cannot write {show(path)}: use one of {known}, or a name without extension for a frame folder")


def check_video_output(path: Path) -> None:
    """Check before a long run that ``path`` can be written as a video, GIF or frame folder."""
    kind = output_kind(path)
    folder = path.parent
    if not folder.is_dir():
        raise ImageError(f"output folder {show(folder)} does not exist; create it or choose another -o")
    if not os.access(folder, os.W_OK | os.X_OK):
        raise ImageError(f"output folder {show(folder)} is not writable; choose another -o")
    if kind != "folder" and path.is_dir():
        raise ImageError(f"output {show(path)} is a folder; give a file name such as {show(path / 'dream.mp4')}")
    if kind == "folder" and path.exists():
        if not path.is_dir():
            raise ImageError(f"output {show(path)} is a file; a name without extension is a frame folder")
        strangers = [p.name for p in path.iterdir() if not _OUR_FRAME.match(p.name)]
        if strangers:
            raise ImageError(
                f"output folder {show(path)} holds other files ({strangers[0]!r}, …); give a new or empty folder"
            )


def _temp_name(path: Path) -> Path:
    return path.with_name(f".{path.name[:200]}.{secrets.token_hex(4)}.part")


def _argb_palette(palette: list[int]) -> np.ndarray:
    """Pillow's flat RGB palette → the (256, 4) ARGB array PyAV wants for ``pal8`` frames."""
    rgb = np.zeros((256, 3), np.uint8)
    colours = np.asarray(palette, np.uint8).reshape(-1, 3)[:256]
    rgb[: len(colours)] = colours
    argb = np.empty((256, 4), np.uint8)
    argb[:, 0] = 255
    argb[:, 1:] = rgb  # PyAV swaps the bytes into native 32-bit ARGB words itself
    return argb


class _AudioCopy:
    """The audio stream of a source file, fed into the output as the video advances (interleaved).

    Packets whose midpoint falls in the span are copied as they are (their timestamps shifted to start at 0), or
    decoded and re-encoded to AAC where the output container does not take the source's codec.
    """

    def __init__(self, av: ModuleType, output: Any, source: Path, span: tuple[float, float] | None, note: Note):
        self.av = av
        self.output = output
        self.input = av.open(str(source), "r")
        try:
            self._setup(span, note)
        except BaseException:
            self.input.close()
            raise

    def _setup(self, span: tuple[float, float] | None, note: Note) -> None:
        self.source = self.input.streams.audio[0]
        video = self.input.streams.video[0] if self.input.streams.video else None
        origin = float(video.start_time * video.time_base) if video and video.start_time and video.time_base else 0.0
        self.start = origin + (span[0] if span else 0.0)
        self.end = origin + span[1] if span else None
        # From the first frame on, everything before it is kept too (an AAC encoder's priming packet has a
        # negative time); a later start drops what comes before it.
        self.trim = span is not None and span[0] > 0
        name = self.source.codec_context.name
        self.copy = name in self.output.supported_codecs
        if self.copy:
            self.stream = self.output.add_stream_from_template(self.source)
        else:
            rate = self.source.codec_context.sample_rate or 48000
            self.stream = self.output.add_stream("aac", rate=rate)
            self.stream.layout = self.source.codec_context.layout.name or "stereo"
            self.resampler = self.av.AudioResampler(format="fltp", layout=self.stream.layout, rate=rate)
            note(f"the output container cannot hold {name} audio; the sound is re-encoded to AAC")
        if self.start > 0 and self.source.time_base:
            self.input.seek(int(self.start / self.source.time_base), stream=self.source, backward=True)
        self.packets = self.input.demux(self.source)
        self.done = self.flushed = False

    def feed(self, until: float | None) -> None:
        """Mux the source's packets up to ``until`` seconds of output time (all that are left: None)."""
        tb = self.source.time_base
        while not self.done:
            packet = next(self.packets, None)
            if packet is None or packet.pts is None:
                if packet is None:
                    self.done = True
                    break
                continue
            mid = float((packet.pts + (packet.duration or 0) / 2) * tb)
            if self.trim and mid < self.start:
                continue
            if self.end is not None and mid >= self.end:
                self.done = True
                break
            self._mux(packet, round(self.start / tb))
            if until is not None and mid - self.start >= until:
                break
        if self.done and not self.copy and not self.flushed:  # the resampler's and the encoder's last samples
            self.flushed = True
            for resampled in self.resampler.resample(None):
                for out in self.stream.encode(resampled):
                    self.output.mux(out)
            for out in self.stream.encode(None):
                self.output.mux(out)

    def _mux(self, packet: Any, offset: int) -> None:
        if self.copy:
            packet.pts -= offset
            if packet.dts is not None:
                packet.dts -= offset
            packet.stream = self.stream
            self.output.mux(packet)
            return
        for frame in packet.decode():
            frame.pts = None  # the encoder counts samples from 0
            for resampled in self.resampler.resample(frame):
                for out in self.stream.encode(resampled):
                    self.output.mux(out)

    def close(self) -> None:
        self.input.close()


class VideoWriter:
    """Write frames ((H, W, 3) uint8 RGB) to an H.264 video, a GIF or a folder of PNGs, atomically.

    >>> with VideoWriter("out.mp4", Fraction(30), (640, 360), audio_from=Path("in.mp4")) as out:
    ...     for frame in frames:
    ...         out.write(frame)

    The kind follows the extension (:func:`output_kind`). H.264 needs even sides: an odd width or height is
    cropped by one pixel, said once through ``note``. ``pix_fmt``: the source's pixel format, kept where the
    encoder takes it (else ``yuv420p``). ``audio_from``: a file whose first audio stream is copied into the
    output; ``audio_span``: the seconds of it to keep, counted from its video's first frame. A GIF or a frame
    folder has no sound (said through ``note`` when there was some). Only a writer closed without an exception
    puts its output in place, replacing an earlier file or frame folder there.
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        fps: Fraction,
        size: tuple[int, int],
        audio_from: Path | None = None,
        audio_span: tuple[float, float] | None = None,
        *,
        pix_fmt: str | None = None,
        metadata: dict[str, str] | None = None,
        note: Note = print_note,
    ) -> None:
        self.path = Path(path)
        self.kind = output_kind(self.path)
        self.fps = Fraction(fps)
        self.size = (int(size[0]), int(size[1]))
        self.note = note
        self.frames = 0
        self.temp = _temp_name(self.path)
        self._container: Any = None
        self._stream: Any = None
        self._audio: _AudioCopy | None = None
        if self.fps <= 0:
            raise ValueError(f"fps must be positive, got {fps}")
        if min(self.size) < 1:
            raise ValueError(f"size must be positive, got {size}")
        check_video_output(self.path)
        if self.kind == "folder":
            self.temp.mkdir()
            if audio_from is not None:
                note("a frame folder has no sound; the audio is not kept")
            return
        self._open_container(audio_from, audio_span, pix_fmt, metadata or {})

    def _open_container(
        self,
        audio_from: Path | None,
        audio_span: tuple[float, float] | None,
        pix_fmt: str | None,
        metadata: dict[str, str],
    ) -> None:
        av = require_av()
        fmt = VIDEO_CONTAINERS.get(self.path.suffix.lower(), "gif")
        self._container = av.open(str(self.temp), "w", format=fmt)
        try:
            if self.kind == "gif":
                self._stream = self._container.add_stream("gif", rate=self.fps)
                self._stream.pix_fmt = "pal8"
                if audio_from is not None:
                    self.note("a GIF has no sound; the audio is not kept")
            else:
                self._stream = self._container.add_stream(_h264_codec(av), rate=self.fps)
                self._stream.pix_fmt = self._pix_fmt(pix_fmt)
                self._stream.options = dict(_X264_OPTIONS) if self._stream.codec_context.name == "libx264" else {}
                self._even_size()
                for key, value in metadata.items():
                    self._container.metadata[key] = value
                if audio_from is not None:
                    self._audio = _AudioCopy(av, self._container, Path(audio_from), audio_span, self.note)
            self._stream.width, self._stream.height = self._encoded_size()
        except BaseException:
            self._discard()
            raise

    def _pix_fmt(self, wanted: str | None) -> str:
        formats = {f.name for f in self._stream.codec_context.codec.video_formats or ()}
        if wanted is not None and wanted in formats:
            return wanted
        if wanted is not None and wanted not in ("rgb24", "yuvj420p"):
            self.note(f"the H.264 encoder cannot write pixel format {wanted}; writing yuv420p")
        return "yuv420p"

    def _even_size(self) -> None:
        w, h = self.size
        if w % 2 or h % 2:
            self.note(
                f"frames are {w}×{h}; H.264 needs even sides, so the video is {w - w % 2}×{h - h % 2} "
                "(the last odd column or row dropped)"
            )

    def _encoded_size(self) -> tuple[int, int]:
        w, h = self.size
        return (w - w % 2, h - h % 2) if self.kind == "video" else (w, h)

    def __enter__(self) -> VideoWriter:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if exc_type is None:
            self.close()
        else:
            self._discard()

    def write(self, frame: np.ndarray) -> None:
        """Append one frame: (H, W, 3) uint8 RGB of the writer's size (W, H)."""
        w, h = self.size
        if frame.dtype != np.uint8 or frame.shape != (h, w, 3):
            raise ValueError(f"expected a ({h}, {w}, 3) uint8 frame, got {frame.dtype} {frame.shape}")
        if self.kind == "folder":
            Image.fromarray(frame, "RGB").save(
                self.temp / FRAME_NAME.format(self.frames), format="PNG", compress_level=_PNG_LEVEL
            )
            self.frames += 1
            return
        av = require_av()
        if self.kind == "gif":
            # One palette per frame, from the frame itself (PyAV's own rgb→pal8 uses a fixed 3-3-2 palette).
            quantised = Image.fromarray(frame, "RGB").quantize(256, method=Image.Quantize.MEDIANCUT)
            pixels = np.asarray(quantised, np.uint8)
            out = av.VideoFrame.from_ndarray((pixels, _argb_palette(quantised.getpalette() or [])), format="pal8")
        else:
            ew, eh = self._encoded_size()
            out = av.VideoFrame.from_ndarray(np.ascontiguousarray(frame[:eh, :ew]), format="rgb24")
        out.pts = self.frames
        out.time_base = 1 / self.fps
        if self._audio is not None:
            self._audio.feed(float(self.frames / self.fps))
        for packet in self._stream.encode(out):
            self._container.mux(packet)
        self.frames += 1

    def close(self) -> Path:
        """Finish the output and move it into place; returns its path. A writer with no frames is an error."""
        if self.frames == 0:
            self._discard()
            raise ImageError(f"no frames to write to {show(self.path)}")
        try:
            if self._container is not None:
                for packet in self._stream.encode(None):
                    self._container.mux(packet)
                if self._audio is not None:
                    self._audio.feed(None)
                    self._audio.close()
                self._container.close()
                self._container = None
            self._move_into_place()
        except BaseException:
            self._discard()
            raise
        return self.path

    def _move_into_place(self) -> None:
        if self.kind != "folder":
            os.replace(self.temp, self.path)
            return
        old = None
        if self.path.exists():  # a frame folder written before (checked: only our frames): swapped out, then gone
            old = _temp_name(self.path)
            os.replace(self.path, old)
        os.replace(self.temp, self.path)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)

    def _discard(self) -> None:
        """Drop the unfinished output (temp file or folder); what was at ``path`` before stays."""
        if self._audio is not None:
            with contextlib.suppress(Exception):
                self._audio.close()
            self._audio = None
        if self._container is not None:
            with contextlib.suppress(Exception):
                self._container.close()
            self._container = None
        if self.temp.is_dir():
            shutil.rmtree(self.temp, ignore_errors=True)
        else:
            with contextlib.suppress(OSError):
                self.temp.unlink()


__all__ = [
    "EXTRA_HINT",
    "FOLDER_FPS",
    "FRAME_EXTENSIONS",
    "VIDEO_CONTAINERS",
    "VideoInfo",
    "VideoWriter",
    "check_video_output",
    "frame_files",
    "natural_key",
    "output_kind",
    "probe",
    "read_frames",
    "require_av",
]
