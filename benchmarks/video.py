"""Video figures for inceptionism: speed at 720p, where a frame's time goes, flicker, flat memory. Plain script:
prints figures, asserts nothing.

    python benchmarks/video.py                    # everything (many minutes on 2 cores)
    python benchmarks/video.py --frames 12 --look out/   # fewer frames; a few output frames saved as PNG

The clip: a bundled photo (examples/coffee.jpg) enlarged and cropped along a path, a 1280×720 pan of --pan pixels
a frame to the right, at 30 fps, with a 440 Hz AAC tone. Every run is `dream_video`, the `inceptionism video`
command's own function, with the video defaults (--coherence, --frame-steps, --dream-scale, the video dream
settings) unless a row says otherwise, in its own process, so its peak RSS is its own.

speed    frames per second of the default run, and the share of its time in decoding, flow (flow, warp, mask),
         dreaming, encoding (the output file) and the frame cache (PNG frames saved for resuming).
flicker  the mean |(dream − source)_t − (dream − source)_{t−1}| over consecutive frames, in [0, 1] units, for
         --coherence 0 (each frame dreamed alone, with the full steps) and the default; and the same along the
         motion (the earlier detail warped by the source's flow first; :class:`WarpedFlicker`). On a pan, detail
         that moves with the scene changes at a fixed screen position too: the first figure has a floor there
         that grows with the pan's speed; the second has none.
memory   peak RSS of the default run on the clip and on one twice as long: frames are streamed, so flat.
cache    with --cache-ab N only: frames per second of N alternating pairs of default runs in this process, the
         frame cache's PNGs written with zlib's default strategy against Huffman-only (the default), and their
         medians.
"""

from __future__ import annotations

import argparse
import json
import platform
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
PHOTO = ROOT / "examples" / "coffee.jpg"
FPS = 30


def make_clip(path: Path, size: tuple[int, int], frames: int, pan: int) -> Path:
    """A ``size`` pan over the enlarged photo, ``pan`` pixels a frame, H.264 + AAC tone, at FPS."""
    import av

    w, h = size
    photo = Image.open(PHOTO).convert("RGB")
    scale = max((w + pan * frames) / photo.width, h / photo.height) * 1.02
    big = np.asarray(photo.resize((round(photo.width * scale), round(photo.height * scale)), Image.Resampling.LANCZOS))
    top = (big.shape[0] - h) // 2
    rate = 44100
    with av.open(str(path), "w") as out:
        video = out.add_stream("libx264", rate=FPS)
        video.width, video.height, video.pix_fmt = w, h, "yuv420p"
        sound = out.add_stream("aac", rate=rate)
        sound.layout = "mono"
        for i in range(frames):
            crop = np.ascontiguousarray(big[top : top + h, pan * i : pan * i + w])
            out.mux(video.encode(av.VideoFrame.from_ndarray(crop, format="rgb24")))
        out.mux(video.encode(None))
        n = round(rate * frames / FPS)
        tone = (0.3 * np.sin(2 * np.pi * 440 * np.arange(n) / rate)).astype(np.float32)[None]
        chunk = av.AudioFrame.from_ndarray(tone, format="fltp", layout="mono")
        chunk.sample_rate, chunk.pts = rate, 0
        out.mux(sound.encode(chunk))
        out.mux(sound.encode(None))
    return path


class WarpedFlicker:
    """Flicker along the motion: mean |(D − S)_t − warp((D − S)_{t−1})| where the flow is consistent, [0, 1] units.

    The issue's flicker compares detail at the same screen position, so detail that moves with the scene (what
    coherence aims at) still counts as change on a pan; this one follows the scene with the source frames' own
    flow (DIS "medium" at full size, forward–backward mask), so only detail that changes on the scene counts.
    Fed by ``dream_video``'s ``on_frame`` hook, reading the source frames alongside.
    """

    def __init__(self, source: str) -> None:
        from inceptionism.sequences.flow import FlowEstimator
        from inceptionism.sequences.media import read_frames

        self.sources = read_frames(source)
        self.flow = FlowEstimator("medium")
        self.previous: tuple[np.ndarray, np.ndarray] | None = None
        self.total = self.weight = 0.0

    def __call__(self, index: int, dream: np.ndarray) -> None:
        from inceptionism.sequences.flow import consistency_mask, grey, warp

        _, source = next(self.sources)
        detail = dream.astype(np.float32) - source
        if self.previous is not None:
            last_source, last_detail = self.previous
            here, there = grey(source), grey(last_source)
            backward, forward = self.flow(here, there), self.flow(there, here)
            mask = consistency_mask(backward, forward, soften=0)
            change = np.abs(detail - warp(last_detail, backward)).mean(axis=2)
            self.total += float((change * mask).sum()) / 255
            self.weight += float(mask.sum())
        self.previous = (source, detail)

    @property
    def value(self) -> float:
        return self.total / self.weight if self.weight else 0.0


def child(spec: str) -> None:
    """One run in this process: prints its report as JSON (with this process's peak RSS)."""
    import torch

    from inceptionism.config import DreamConfig
    from inceptionism.sequences.video import VideoSettings, dream_video, with_video_defaults

    args = json.loads(spec)
    config = with_video_defaults(DreamConfig(), ())
    settings = VideoSettings(**args["settings"])
    meter = WarpedFlicker(args["input"]) if args["warped"] else None
    began = time.perf_counter()
    cpu = time.process_time()
    report = dream_video(
        args["input"], args["output"], config, settings, quiet=True, note=lambda _: None, on_frame=meter
    )
    wall = time.perf_counter() - began
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    print(
        json.dumps(
            {
                "frames": report.frames,
                "wall": wall,
                "cpu": time.process_time() - cpu,
                "seconds": report.seconds,
                "flicker": report.flicker,
                "warped": meter.value if meter else None,
                "rss": rss,
                "threads": torch.get_num_threads(),
            }
        )
    )


def run(clip: Path, out: Path, warped: bool = False, **settings: object) -> dict:
    spec = json.dumps({"input": str(clip), "output": str(out), "settings": settings, "warped": warped})
    done = subprocess.run(
        [sys.executable, __file__, "--child", spec], capture_output=True, text=True, check=False, cwd=ROOT
    )
    if done.returncode != 0:
        raise SystemExit(f"run failed:\n{done.stderr}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def save_looks(video: Path, folder: Path, tag: str) -> list[Path]:
    """Frames 0, middle and last of ``video`` as PNGs in ``folder``, to look at."""
    import av

    folder.mkdir(parents=True, exist_ok=True)
    with av.open(str(video)) as container:
        frames = [f.to_ndarray(format="rgb24") for f in container.decode(video=0)]
    picks = sorted({0, len(frames) // 2, len(frames) - 1})
    paths = []
    for i in picks:
        path = folder / f"{tag}-{i:03d}.png"
        Image.fromarray(frames[i]).save(path)
        paths.append(path)
    return paths


def cache_ab(clip: Path, folder: Path, frames: int, pairs: int) -> None:
    """Frames per second with the frame cache's PNG strategy at zlib's default and at Huffman-only, alternating."""
    import statistics

    import inceptionism.sequences.cache as cache
    from inceptionism.config import DreamConfig
    from inceptionism.sequences.video import VideoSettings, dream_video, with_video_defaults

    config, kept = with_video_defaults(DreamConfig(), ()), cache._PNG_STRATEGY
    rates: dict[str, list[float]] = {"zlib default": [], "Huffman-only": []}
    try:
        for i in range(pairs):
            for name in list(rates)[:: 1 if i % 2 == 0 else -1]:
                cache._PNG_STRATEGY = None if name == "zlib default" else 2
                began = time.perf_counter()
                dream_video(clip, folder / f"ab-{i}-{len(rates[name])}.mp4", config, VideoSettings(), quiet=True)
                rates[name].append(frames / (time.perf_counter() - began))
                print(f"  pair {i + 1} {name:<13} {rates[name][-1]:.3f} frames/s", flush=True)
    finally:
        cache._PNG_STRATEGY = kept
    median = {k: statistics.median(v) for k, v in rates.items()}
    print(f"\ncache: medians of {pairs}: " + ", ".join(f"{k} {v:.3f} frames/s" for k, v in median.items()))
    print(f"  Huffman-only ÷ zlib default: {median['Huffman-only'] / median['zlib default']:.3f}×")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--child", help=argparse.SUPPRESS)
    parser.add_argument("--frames", type=int, default=24, help="frames of the speed clip [24]")
    parser.add_argument("--flicker-frames", type=int, default=10, help="frames of the flicker runs [10]")
    parser.add_argument("--size", default="1280x720", help="clip size WxH [1280x720]")
    parser.add_argument("--pan", type=int, default=1, help="pixels the view moves a frame [1]")
    parser.add_argument("--look", type=Path, help="save a few output frames here as PNG")
    parser.add_argument("--skip-memory", action="store_true", help="leave out the 2× longer memory run")
    parser.add_argument("--cache-ab", type=int, metavar="N", help="only the frame cache's A/B, N pairs of runs")
    args = parser.parse_args()
    if args.child:
        child(args.child)
        return
    w, h = (int(v) for v in args.size.lower().split("x"))
    from inceptionism.sequences.video import VIDEO_DEFAULTS, VideoSettings

    defaults = VideoSettings()
    machine = platform.processor() or platform.machine()
    print(f"machine: {machine}, {platform.system()}; python {platform.python_version()}")
    print(
        f"video defaults: coherence {defaults.coherence}, frame-steps {defaults.frame_steps}, dream-scale "
        f"{defaults.dream_scale}, flow {defaults.flow}; dream {VIDEO_DEFAULTS}"
    )
    with tempfile.TemporaryDirectory(prefix="inceptionism-video-") as tmp:
        folder = Path(tmp)
        clip = make_clip(folder / "pan.mp4", (w, h), args.frames, args.pan)
        if args.cache_ab:
            cache_ab(clip, folder, args.frames, args.cache_ab)
            return
        fast = run(clip, folder / "default.mp4")
        n, wall = fast["frames"], fast["wall"]
        print(f"\nspeed: {n} frames {w}×{h}, pan {args.pan} px/frame: {n / wall:.2f} frames/s "
              f"({wall / n:.2f} s a frame, process CPU {fast['cpu'] / n:.2f} s a frame, {fast['threads']} threads; "
              "the first frame, dreamed with the full steps, and the model's load included)")  # fmt: skip
        stages = fast["seconds"]
        total = sum(stages.values())
        shares = ", ".join(f"{k} {100 * v / wall:.1f} %" for k, v in stages.items())
        print(f"  share of the run's time: {shares}; other (model load, set-up) {100 * (wall - total) / wall:.1f} %")
        if args.look:
            for path in save_looks(folder / "default.mp4", args.look, "default"):
                print(f"  look: {path}")
        short = make_clip(folder / "short.mp4", (w, h), args.flicker_frames, args.pan)
        alone = run(short, folder / "alone.mp4", warped=True, coherence=0.0)
        coherent = run(short, folder / "coherent.mp4", warped=True)
        print(f"\nflicker over {args.flicker_frames} frames (coherence 0 ran at "
              f"{alone['frames'] / alone['wall']:.2f} frames/s):")  # fmt: skip
        for name, what in (("flicker", "the issue's, same screen position"), ("warped", "along the motion")):
            ratio = coherent[name] / alone[name] if alone[name] else float("nan")
            print(f"  {what}: --coherence 0 {alone[name]:.4f}, default {coherent[name]:.4f} ({ratio:.2f}×)")
        if args.look:
            for path in save_looks(folder / "alone.mp4", args.look, "alone"):
                print(f"  look: {path}")
        if not args.skip_memory:
            longer = make_clip(folder / "long.mp4", (w, h), 2 * args.frames, args.pan)
            twice = run(longer, folder / "long-out.mp4")
            mib = 1 << 20
            print(f"\nmemory: peak RSS {fast['rss'] / mib:.0f} MiB for {fast['frames']} frames, "
                  f"{twice['rss'] / mib:.0f} MiB for {twice['frames']} frames")  # fmt: skip


if __name__ == "__main__":
    main()
