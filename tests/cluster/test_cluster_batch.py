"""A batch on a real local Ray cluster of 2 workers (the CLI's --cluster) writes what one process writes; a bad
file fails alone, named in the summary with the user's path."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from inceptionism.cli import main
from inceptionism.config import DreamConfig
from inceptionism.sequences.batch import expand_inputs, run_batch

pytest.importorskip("ray")

TINY = DreamConfig(octaves=1, steps=1, min_size=16, jitter=8)
FAST = ["--octaves", "1", "--steps", "1", "--min-size", "16", "--jitter", "8", "--quiet"]


@pytest.fixture
def shots(tmp_path: Path) -> Path:
    folder = tmp_path / "shots"
    folder.mkdir()
    for seed in range(3):
        pixels = np.random.default_rng(seed).integers(0, 256, (40, 56, 3), dtype=np.uint8)
        Image.fromarray(pixels).save(folder / f"shot{seed}.png")
    (folder / "broken.jpg").write_bytes(b"not a jpeg")
    return folder


def pixels_and_settings(path: Path) -> tuple[np.ndarray, str]:
    with Image.open(path) as im:
        return np.asarray(im).copy(), im.info["inceptionism"]


@pytest.mark.slow
def test_two_workers_write_what_one_process_writes(shots, tmp_path, capsys):
    alone = run_batch(expand_inputs([str(shots)]), tmp_path / "alone", TINY, quiet=True)
    spread = tmp_path / "spread"
    assert main(["dream", str(shots), "-o", str(spread), "--cluster", "local:2", *FAST]) == 1  # one file failed
    captured = capsys.readouterr()
    assert sorted(captured.out.split()) == [str(spread / f"shot{i}.png") for i in range(3)]  # as they were written
    assert [p.name for p in alone.done] == [f"shot{i}.png" for i in range(3)]
    for out in alone.done:
        mine, theirs = pixels_and_settings(out), pixels_and_settings(spread / out.name)
        assert np.array_equal(mine[0], theirs[0]) and mine[1] == theirs[1]
    err = captured.err
    assert f"error: {shots / 'broken.jpg'} is not an image" in err  # the user's path, not the worker's temp copy
    assert "batch: 3 done, 0 skipped (already there), 1 failed (broken.jpg)" in err
    workers = [line for line in err.splitlines() if line.startswith("inceptionism: worker ")]
    assert len(workers) == 2 and all("1 thread)" in line for line in workers)
    assert sum(int(line.split("): ")[1].split(" tasks")[0]) for line in workers) == 4
