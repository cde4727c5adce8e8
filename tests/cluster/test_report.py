"""The driver's bar and summaries: counts, throughput, restarts."""

from __future__ import annotations

from pathlib import Path

import pytest

from inceptionism.cluster.bar import JobBar
from inceptionism.cluster.video import ClusterVideoReport
from inceptionism.cluster.workers import TaskResult, WorkerInfo, WorkerStats
from inceptionism.errors import ConfigError


def test_job_bar_counts_items_and_drops_failures(capsys):
    with JobBar(5, "frame", done_before=2) as bar:
        assert bar.rate() is None  # nothing done in this run yet: cached items do not count
        bar.advance(2)
        assert bar.done == 4 and bar.rate() is not None and bar.rate() > 0
        bar.drop()
        assert bar.total == 4
        bar.note("a note")
    err = capsys.readouterr().err
    assert "a note" in err and "frame 4/4" in err and "frame/s" in err


def test_worker_lines_count_tasks_frames_and_restarts():
    stats = WorkerStats(WorkerInfo(0, 100, "node", "cuda:0", 4))
    assert stats.line() == "worker 1 (node pid 100, cuda:0, 4 threads): 0 tasks, 0.0 s dreaming"
    stats.items, stats.frames, stats.seconds, stats.pids = 3, 36, 12.5, {100, 250}
    assert (
        stats.line() == "worker 1 (node pid 100, cuda:0, 4 threads): 3 tasks, 36 frames, 12.5 s dreaming, restarted 1×"
    )


def test_video_summary_prints_both_flickers():
    report = ClusterVideoReport(Path("v.mp4"), 10, 4, 0.0612, 0.0357)
    assert report.summary() == "video: 10 frames (4 dreamed now); flicker at seams 0.0612, inside segments 0.0357"
    assert "seams –" in ClusterVideoReport(Path("v.mp4"), 1, 1).summary()


def test_a_task_error_is_raised_as_its_class():
    with pytest.raises(ConfigError, match="unknown layer"):
        TaskResult(0, 1, 0.0, error="unknown layer 'x'", kind="config").raise_error()
    TaskResult(0, 1, 0.0, value=1).raise_error()  # no error: nothing raised
