"""Cluster figures for inceptionism: batch throughput on a local Ray cluster, and the flicker at video segment
seams against inside segments for several warm-up lengths K. Plain script: prints figures, asserts nothing.

    python benchmarks/cluster.py                         # both (several minutes on 2 cores)
    python benchmarks/cluster.py --images 6 --rounds 1   # quicker
    python benchmarks/cluster.py --skip-video            # the batch figures only

batch    images per second on the same batch (crops of examples/coffee.jpg, --size, the default dream settings
         but --steps), for: the plain single-process run with 2 torch threads (``run_batch``, model loaded
         beforehand); 1 and 2 plain single-thread processes side by side, each dreaming its share (no Ray: what
         the machine itself gives two workers); a local cluster of 1 single-thread worker (``--cluster
         local:1x1``); and of 2 single-thread workers (``local:2x1``). A rate counts from the moment the workers
         are ready (models loaded) to the last image written; a cluster's seconds to get ready (Ray's start,
         model loads) are printed apart. The variants run in turn, --rounds times, and the medians are compared:
         2 workers ÷ 1 worker is the scaling (goal ≥ 1.8), against the machine's own for plain processes; 2
         workers ÷ plain 2 threads is what Ray costs against using both cores in one process.
seams    a --video-frames pan clip (benchmarks/video.py's) dreamed with the video defaults on ``local:2``, in
         segments of --segment frames, for each K in --warmups: the mean flicker (FlickerMeter's measure) into
         each segment's first frame against between the other frames, the frames dreamed (K per seam more),
         and the wall time; and the single-process run's flicker (no seams) for reference.

Measured on a shared machine these figures are noisy; run it on a quiet one for the record (docs/scale-out.md).
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(Path(__file__).resolve().parent))  # benchmarks/video.py's clip maker

from video import make_clip  # noqa: E402

from inceptionism.config import DreamConfig  # noqa: E402


def make_images(folder: Path, count: int, size: tuple[int, int]) -> list[Path]:
    """``count`` different ``size`` crops of the bundled photo, as PNG."""
    photo = np.asarray(Image.open(ROOT / "examples" / "coffee.jpg").convert("RGB"))
    w, h = size
    rng = np.random.default_rng(0)
    paths = []
    for i in range(count):
        y, x = int(rng.integers(0, photo.shape[0] - h)), int(rng.integers(0, photo.shape[1] - w))
        path = folder / f"image{i:03d}.png"
        Image.fromarray(np.ascontiguousarray(photo[y : y + h, x : x + w])).save(path)
        paths.append(path)
    return paths


def plain(sources: list[Path], out: Path, config: DreamConfig) -> float:
    """Images per second of the single-process batch with 2 threads (the model loaded before the clock)."""
    import torch

    from inceptionism.api import get_model
    from inceptionism.devices import pick_device
    from inceptionism.sequences.batch import run_batch

    torch.set_num_threads(2)
    get_model(config.model, config.weights, pick_device(config.device))
    began = time.perf_counter()
    run_batch(sources, out, config, quiet=True)
    return len(sources) / (time.perf_counter() - began)


def _plain_worker(sources: list[Path], out: Path, config: DreamConfig, barrier: Any) -> None:
    """One single-thread process of :func:`plain_processes`: load the model, wait for the others, dream."""
    import torch

    from inceptionism.api import get_model
    from inceptionism.devices import pick_device
    from inceptionism.sequences.batch import run_batch

    torch.set_num_threads(1)
    get_model(config.model, config.weights, pick_device(config.device))
    barrier.wait()
    run_batch(sources, out, config, quiet=True)


def plain_processes(sources: list[Path], out: Path, config: DreamConfig, processes: int) -> float:
    """Images per second of ``processes`` plain single-thread processes side by side, each dreaming its share
    of the batch (no Ray): what the machine itself gives two independent workers, the ceiling for a cluster."""
    import multiprocessing

    context = multiprocessing.get_context("spawn")
    barrier = context.Barrier(processes + 1)
    shares = [sources[i::processes] for i in range(processes)]
    workers = [
        context.Process(target=_plain_worker, args=(share, out / f"part{i}", config, barrier))
        for i, share in enumerate(shares)
    ]
    out.mkdir()
    for worker in workers:
        worker.start()
    barrier.wait()  # every model loaded
    began = time.perf_counter()
    for worker in workers:
        worker.join()
    seconds = time.perf_counter() - began
    if any(w.exitcode for w in workers) or len(list(out.glob("part*/*.png"))) != len(sources):
        raise RuntimeError("a plain process failed; see above")
    return len(sources) / seconds


def on_cluster(sources: list[Path], out: Path, config: DreamConfig, address: str, ray_dir: str) -> tuple[float, float]:
    """(images per second once the workers are ready, seconds to get ready) on a local cluster."""
    from inceptionism.cluster import parse_address
    from inceptionism.cluster.batch import run_cluster_batch

    result = run_cluster_batch(sources, out, config, parse_address(address), quiet=True, temp_dir=ray_dir)
    return len(result.done) / result.work_seconds, result.ready_seconds


def batch_figures(args: argparse.Namespace, tmp: Path) -> None:
    w, h = (int(v) for v in args.size.split("x"))
    (tmp / "in").mkdir()
    sources = make_images(tmp / "in", args.images, (w, h))
    config = DreamConfig(steps=args.steps)
    rates: dict[str, list[float]] = {
        "plain, 2 threads": [],
        "plain 1 process×1": [],
        "plain 2 processes×1": [],
        "local:1x1": [],
        "local:2x1": [],
    }
    ready: dict[str, list[float]] = {"local:1x1": [], "local:2x1": []}
    for r in range(args.rounds):
        for name in rates:
            out = tmp / f"out-{r}-{name.replace(' ', '').replace(',', '-').replace('×', 'x')}"
            if name == "plain, 2 threads":
                rates[name].append(plain(sources, out, config))
            elif name.startswith("plain"):
                rates[name].append(plain_processes(sources, out, config, 2 if "2 processes" in name else 1))
            else:
                rate, seconds = on_cluster(sources, out, config, name, str(tmp / "ray"))
                rates[name].append(rate)
                ready[name].append(seconds)
            print(f"  round {r + 1} {name:<18} {rates[name][-1]:.3f} images/s", flush=True)
    median = {k: statistics.median(v) for k, v in rates.items()}
    print(f"\nbatch: {args.images} images {w}×{h}, steps {args.steps}, {args.rounds} round(s), medians")
    for name, value in median.items():
        extra = f"  (ready after {statistics.median(ready[name]):.1f} s)" if name in ready else ""
        print(f"  {name:<18} {value:.3f} images/s{extra}")
    print(f"  2 workers ÷ 1 worker: {median['local:2x1'] / median['local:1x1']:.2f}×   (goal ≥ 1.8×)")
    machine = median["plain 2 processes×1"] / median["plain 1 process×1"]
    print(f"  the machine itself, 2 plain single-thread processes ÷ 1: {machine:.2f}×")
    print(f"  1 worker ÷ 1 plain process: {median['local:1x1'] / median['plain 1 process×1']:.2f}×")
    print(f"  2 workers ÷ plain 2 threads: {median['local:2x1'] / median['plain, 2 threads']:.2f}×")


def video_figures(args: argparse.Namespace, tmp: Path) -> None:
    from inceptionism.cluster import parse_address
    from inceptionism.cluster.video import plan_segments, run_cluster_video
    from inceptionism.sequences.video import VideoSettings, dream_video, with_video_defaults

    w, h = (int(v) for v in args.video_size.split("x"))
    clip = make_clip(tmp / "clip.mp4", (w, h), args.video_frames, args.pan)
    config = with_video_defaults(DreamConfig(), ())
    settings = VideoSettings()
    began = time.perf_counter()
    alone = dream_video(clip, tmp / "alone.mp4", config, settings, quiet=True)
    print(
        f"\nseams: {args.video_frames} frames {w}×{h}, pan {args.pan} px/frame, video defaults, segments of "
        f"{args.segment}; single process: flicker {alone.flicker:.4f}, {time.perf_counter() - began:.0f} s"
    )
    print(f"  {'K':>3} {'seams':>8} {'inside':>8} {'seam÷inside':>12} {'dreamed':>8} {'wall s':>7}")
    for k in (int(v) for v in args.warmups.split(",")):
        segments = plan_segments(args.video_frames, args.segment, k)
        dreamed = sum(s.end - s.start for s in segments)
        began = time.perf_counter()
        report = run_cluster_video(
            clip,
            tmp / f"k{k}.mp4",
            config,
            settings,
            parse_address("local:2"),
            segment=args.segment,
            warmup=k,
            quiet=True,
            temp_dir=str(tmp / "ray"),
        )
        wall = time.perf_counter() - began
        seam, inside = report.seam_flicker or 0.0, report.inside_flicker or 0.0
        ratio = seam / inside if inside else float("nan")
        print(f"  {k:>3} {seam:>8.4f} {inside:>8.4f} {ratio:>12.2f} {dreamed:>8} {wall:>7.0f}", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--images", type=int, default=24, help="images in the batch [24]")
    parser.add_argument("--size", default="512x384", help="image size WxH [512x384]")
    parser.add_argument("--steps", type=int, default=12, help="steps per octave of the batch's dreams [12]")
    parser.add_argument("--rounds", type=int, default=3, help="times each batch variant runs, in turn [3]")
    parser.add_argument("--video-frames", type=int, default=36, help="frames of the seam clip [36]")
    parser.add_argument("--video-size", default="192x144", help="seam clip size WxH [192x144]")
    parser.add_argument("--pan", type=int, default=1, help="pixels the clip's view moves a frame [1]")
    parser.add_argument("--segment", type=int, default=6, help="frames per segment in the seam runs [6]")
    parser.add_argument("--warmups", default="0,2,4,8", help="warm-up lengths K to compare [0,2,4,8]")
    parser.add_argument("--skip-batch", action="store_true", help="leave out the batch figures")
    parser.add_argument("--skip-video", action="store_true", help="leave out the seam figures")
    args = parser.parse_args()
    print(f"machine: {os.cpu_count()} cores, load average {os.getloadavg()[0]:.1f} at start")
    with tempfile.TemporaryDirectory(prefix="cluster-bench-") as folder:
        tmp = Path(folder)
        if not args.skip_batch:
            batch_figures(args, tmp)
        if not args.skip_video:
            video_figures(args, tmp)


if __name__ == "__main__":
    main()
