"""A video in segments on a real local Ray cluster: every frame and the sound; a worker killed mid-segment
(SIGKILL, found by its pid) changes nothing; a rerun after the driver is killed continues from the frame cache."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest
from clips import make_clip
from PIL import Image

from inceptionism.cli import main
from inceptionism.cluster import parse_address
from inceptionism.cluster.video import ClusterVideoReport, SeamMeter, plan_segments, run_cluster_video
from inceptionism.config import DreamConfig
from inceptionism.errors import ConfigError
from inceptionism.sequences.cache import cache_folder
from inceptionism.sequences.media import probe
from inceptionism.sequences.video import VideoSettings

pytest.importorskip("ray")
pytest.importorskip("av")
pytest.importorskip("cv2")

TINY = DreamConfig(octaves=1, steps=2, min_size=16, jitter=8, step_size=0.03)
SETTINGS = VideoSettings(frame_steps=1)
FRAMES, SEGMENT, WARMUP = 10, 3, 2
FAST = ["--octaves", "1", "--steps", "2", "--frame-steps", "1", "--min-size", "16", "--jitter", "8"]
CLI = ["--step-size", "0.03", "--cluster", "local:2", "--segment", str(SEGMENT), "--warmup", str(WARMUP), *FAST]


def worker_pids(method: str) -> list[int]:
    """Process ids of the Ray workers running ``DreamWorker.<method>`` now (Ray titles each ``ray::…``)."""
    pids = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            title = (entry / "cmdline").read_bytes().split(b"\0")[0].decode(errors="replace")
        except OSError:
            continue
        if title.startswith(f"ray::DreamWorker.{method}"):
            pids.append(int(entry.name))
    return pids


def differing(frames: list[np.ndarray], reference: list[np.ndarray]) -> list[int]:
    """Indices of the frames that differ between two runs' dreamed frames (as cached, before encoding: libx264
    does not encode the same frames to the same stream every time, docs/scale-out.md)."""
    assert len(frames) == len(reference)
    return [i for i, (a, b) in enumerate(zip(frames, reference, strict=True)) if not np.array_equal(a, b)]


def test_segments_start_warmup_frames_early_and_cover_every_frame_once():
    segments = plan_segments(10, 3, 2)
    assert [(s.start, s.keep, s.end) for s in segments] == [(0, 0, 3), (1, 3, 6), (4, 6, 9), (7, 9, 10)]
    assert plan_segments(4, 10, 8)[0].end == 4
    with pytest.raises(ConfigError, match="--segment"):
        plan_segments(10, 0, 2)
    with pytest.raises(ConfigError, match="--warmup"):
        plan_segments(10, 3, -1)


def test_seam_meter_keeps_seams_apart():
    meter = SeamMeter({2})
    zero = np.zeros((2, 2, 3), np.uint8)
    for index, level in enumerate([0, 0, 51, 51]):
        meter.add(index, zero, np.full((2, 2, 3), level, np.uint8))
    assert meter.seam == pytest.approx(0.2) and meter.within == 0.0


@pytest.fixture(scope="module")
def clip(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_clip(tmp_path_factory.mktemp("clip") / "clip.mp4", frames=FRAMES)


def dream_on_two_workers(clip: Path, out: Path, ray_dir: str) -> tuple[ClusterVideoReport, list[np.ndarray]]:
    """The clip dreamed into ``out`` on a local cluster of 2 workers in segments: the report and every frame as
    dreamed, in order (before encoding)."""
    frames: dict[int, np.ndarray] = {}
    report = run_cluster_video(
        clip,
        out,
        TINY,
        SETTINGS,
        parse_address("local:2"),
        segment=SEGMENT,
        warmup=WARMUP,
        quiet=True,
        temp_dir=ray_dir,
        on_frame=frames.__setitem__,
    )
    assert sorted(frames) == list(range(FRAMES))
    return report, [frames[k] for k in range(FRAMES)]


@pytest.fixture(scope="module")
def reference(clip: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[str], list[np.ndarray]]:
    """The clip dreamed on 2 workers without a fault: its output, the report's lines and the dreamed frames."""
    import shutil
    import tempfile

    out = tmp_path_factory.mktemp("reference") / "dream.mp4"
    ray_dir = tempfile.mkdtemp(prefix="ray-")
    try:
        report, frames = dream_on_two_workers(clip, out, ray_dir)
    finally:
        shutil.rmtree(ray_dir, ignore_errors=True)
    return out, [report.summary(), *report.workers], frames


@pytest.mark.slow
def test_video_in_segments_has_every_frame_and_its_sound(clip, reference):
    out, lines, _ = reference
    info = probe(out)
    assert info.frames == FRAMES and info.has_audio and (info.width, info.height) == (64, 48)
    assert lines[0].startswith(f"video: {FRAMES} frames ({FRAMES} dreamed now); flicker at seams 0.")
    assert len(lines) == 3 and sum(int(line.split("tasks, ")[1].split(" frames")[0]) for line in lines[1:]) == 10
    assert not cache_folder(out).exists()  # removed once the output is in place


@pytest.mark.slow
def test_a_worker_killed_mid_segment_costs_that_segment_only(clip, reference, tmp_path, ray_dir):
    killed: list[int] = []

    def kill_one() -> None:  # SIGKILL the first worker seen dreaming a segment
        deadline = time.monotonic() + 120
        while not killed and time.monotonic() < deadline:
            pids = worker_pids("dream_segment")
            if pids:
                os.kill(pids[0], signal.SIGKILL)
                killed.append(pids[0])
            time.sleep(0.05)

    killer = threading.Thread(target=kill_one, daemon=True)
    killer.start()
    out = tmp_path / "dream.mp4"
    report, frames = dream_on_two_workers(clip, out, ray_dir)
    killer.join(timeout=5)
    assert killed, "no worker was seen dreaming"
    assert report.frames == FRAMES and any("restarted 1×" in line for line in report.workers)
    assert probe(out).frames == FRAMES and probe(out).has_audio
    assert differing(frames, reference[2]) == []


@pytest.mark.slow
def test_a_rerun_after_the_driver_is_killed_continues_from_the_cache(clip, reference, tmp_path, capsys):
    out = tmp_path / "dream"  # a frame folder: PNGs, the dreamed frames exactly
    cache = cache_folder(out)
    command = [sys.executable, "-m", "inceptionism", "video", str(clip), "-o", str(out), *CLI, "--quiet"]
    driver = subprocess.Popen(command, start_new_session=True, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 240
        while len(list(cache.glob("0*.png"))) < SEGMENT and time.monotonic() < deadline and driver.poll() is None:
            time.sleep(0.05)
        os.kill(driver.pid, signal.SIGKILL)
        driver.wait()
    finally:
        with contextlib.suppress(ProcessLookupError):  # what it started and left behind, if anything
            os.killpg(driver.pid, signal.SIGKILL)
    cached = len(list(cache.glob("0*.png")))
    assert SEGMENT <= cached < FRAMES and not out.exists()

    assert main(["video", str(clip), "-o", str(out), *CLI, "--quiet"]) == 0
    err = capsys.readouterr().err
    assert f"video: {FRAMES} frames ({FRAMES - cached} dreamed now)" in err
    written = sorted(out.glob("*.png"))
    assert len(written) == FRAMES
    assert differing([np.asarray(Image.open(p).convert("RGB")) for p in written], reference[2]) == []
