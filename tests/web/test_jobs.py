"""Jobs without a browser: updates in order, cancelling at the next step, one device slot, one-line errors,
the studio's tasks on the real default model, and old files swept."""

from __future__ import annotations

import os
import threading
import time
from pathlib import Path

import pytest
from PIL import Image
from studio_server import photo

from inceptionism.errors import ConfigError
from inceptionism.io import read_settings
from inceptionism.web.cleanup import sweep
from inceptionism.web.jobs import DeviceSlots, Job, JobBoard, Reporter, one_line
from inceptionism.web.limits import Limits
from inceptionism.web.tasks import config_from_form, dream_task, form_from_settings


def test_updates_arrive_in_order_and_end_with_the_result(tmp_path: Path) -> None:
    def work(r: Reporter) -> Path:
        r.progress(0.5, "half")
        r.preview(Image.new("RGB", (4, 4)))
        return tmp_path / "out.png"

    updates = list(Job(work, DeviceSlots()).start().updates(poll=0.01))
    assert [u.kind for u in updates] == ["progress", "preview", "done"]
    assert updates[0].fraction == 0.5 and updates[-1].result == tmp_path / "out.png"


def test_cancel_stops_at_the_next_report() -> None:
    steps = []
    running = threading.Event()

    def work(r: Reporter) -> Path:
        for i in range(10_000):
            running.set()
            r.progress(i / 10_000, "step")
            steps.append(i)
            time.sleep(0.001)
        return Path("never")

    job = Job(work, DeviceSlots()).start()
    running.wait(5)
    job.cancel()
    assert job.wait(5)
    assert list(job.updates(poll=0.01))[-1].text == "stopped"
    assert len(steps) < 10_000


def test_one_slot_runs_one_job_at_a_time() -> None:
    slots = DeviceSlots(1)

    def work(r: Reporter) -> Path:
        time.sleep(0.02)
        return Path("x")

    jobs = [Job(work, slots).start() for _ in range(6)]
    assert all(job.wait(10) for job in jobs)
    assert slots.peak == 1 and slots.busy == 0


def test_a_job_cancelled_while_waiting_never_runs() -> None:
    slots, ran = DeviceSlots(1), []
    gate = threading.Event()
    first = Job(lambda r: (gate.wait(5), Path("a"))[1], slots).start()
    second = Job(lambda r: (ran.append(1), Path("b"))[1], slots).start()
    second.cancel()
    gate.set()
    assert first.wait(5) and second.wait(5)
    assert ran == [] and list(second.updates(poll=0.01))[-1].text == "stopped"


def test_errors_reach_the_page_as_one_line(caplog: pytest.LogCaptureFixture) -> None:
    def user_error(r: Reporter) -> Path:
        raise ConfigError("--steps must be at least 1, got 0\nsecond line")

    def bug(r: Reporter) -> Path:
        raise KeyError("internal detail")

    assert list(Job(user_error, DeviceSlots()).start().updates(0.01))[-1].text == "--steps must be at least 1, got 0"
    end = list(Job(bug, DeviceSlots()).start().updates(0.01))[-1]
    assert end.kind == "error" and "internal detail" not in end.text and "server log" in end.text
    assert "internal detail" in caplog.text  # the traceback is in the server's log, not on the page
    assert one_line("") == "failed"


def test_board_cancels_a_sessions_jobs_only() -> None:
    board, gate = JobBoard(), threading.Event()
    a = Job(lambda r: (gate.wait(5), r.check(), Path("a"))[2], DeviceSlots(2)).start()
    b = Job(lambda r: (gate.wait(5), r.check(), Path("b"))[2], DeviceSlots(2)).start()
    board.add("tab-a", a)
    board.add("tab-b", b)
    assert board.cancel("tab-a") == 1
    gate.set()
    assert list(a.updates(0.01))[-1].text == "stopped"
    assert list(b.updates(0.01))[-1].kind == "done"
    board.remove("tab-a", a)
    assert board.running() == 1 and board.running("tab-a") == 0


def test_dream_task_writes_png_with_settings_and_previews(tmp_path: Path) -> None:
    source = photo(tmp_path / "in.png", 140, 100)
    cfg = config_from_form({"octaves": 2, "steps": 2, "seed": 5, "layers": [], "classes": []}, None, "cpu")
    updates = list(Job(dream_task(source, cfg, tmp_path, Limits()), DeviceSlots()).start().updates(0.01))
    kinds = [u.kind for u in updates]
    assert kinds.count("preview") == 2 and kinds[-1] == "done"  # one preview per octave
    result = updates[-1].result
    assert result is not None and result.parent == tmp_path
    with Image.open(result) as im:
        assert im.size == (140, 100)
    assert read_settings(result)["seed"] == 5


def test_dream_task_leaves_the_masks_black_half_as_it_was(tmp_path: Path) -> None:
    import numpy as np

    source = photo(tmp_path / "in.png", 64, 48)
    mask = tmp_path / "mask.png"
    Image.fromarray(np.repeat([[0] * 32 + [255] * 32], 48, axis=0).astype(np.uint8)).save(mask)
    values = {"octaves": 1, "steps": 2, "mask": str(mask), "keep_colors": True, "grad_norm": "laplacian"}
    cfg = config_from_form(values, None, "cpu")
    end = list(Job(dream_task(source, cfg, tmp_path, Limits()), DeviceSlots()).start().updates(0.01))[-1]
    assert end.kind == "done" and end.result is not None
    with Image.open(source) as a, Image.open(end.result) as b:
        before, after = np.asarray(a.convert("RGB")), np.asarray(b.convert("RGB"))
    assert np.array_equal(after[:, :32], before[:, :32])  # black: not dreamt at all
    assert np.abs(after[:, 32:].astype(int) - before[:, 32:]).mean() > 1  # white: dreamt
    assert read_settings(end.result)["mask"] == "mask.png"


def test_dream_task_refuses_too_much_work(tmp_path: Path) -> None:
    source = photo(tmp_path / "in.png", 72, 56)
    cfg = config_from_form({"steps": 50}, None, "cpu")
    end = list(Job(dream_task(source, cfg, tmp_path, Limits(max_work=1000)), DeviceSlots()).start().updates(0.01))[-1]
    assert end.kind == "error" and "pixel-steps" in end.text


def test_form_round_trips_through_settings() -> None:
    cfg = config_from_form({"steps": 3.0, "seed": 9, "octaves": 0, "layers": ["block10:0.5"]}, "subtle", "cpu")
    assert cfg.steps == 3 and cfg.octaves is None and cfg.layers == ("block10:0.5",)
    values = form_from_settings({**cfg.to_dict(), "version": "x"})
    assert values["steps"] == 3 and values["octaves"] == 0 and values["layers"] == ["block10:0.5"]
    with pytest.raises(ConfigError, match="do not fit this version"):
        form_from_settings({"steps": 0})


def test_form_cannot_set_server_fields() -> None:
    cfg = config_from_form({"device": "cuda", "weights": "/etc/passwd", "max_pixels": 10**12}, None, "cpu")
    assert cfg.device == "cpu" and cfg.weights is None and cfg.max_pixels == ConfigDefaults.max_pixels


class ConfigDefaults:
    from inceptionism.config import DreamConfig

    max_pixels = DreamConfig().max_pixels


def test_sweep_removes_only_old_entries(tmp_path: Path) -> None:
    old, new = tmp_path / "old", tmp_path / "new"
    old.mkdir()
    (old / "dream.png").write_bytes(b"x")
    new.write_bytes(b"y")
    past = time.time() - 7200
    os.utime(old, (past, past))
    assert sweep(tmp_path, 3600) == [old]
    assert not old.exists() and new.exists()
    assert sweep(tmp_path / "missing", 1) == []


def test_board_cancel_can_wait_for_the_jobs_to_end() -> None:
    board, running = JobBoard(), threading.Event()

    def work(r: Reporter) -> Path:
        while True:
            running.set()
            r.progress(0.0, "step")
            time.sleep(0.05)

    job = Job(work, DeviceSlots()).start()
    board.add("tab", job)
    running.wait(5)
    assert board.cancel("tab", wait=5) == 1
    assert job.finished
