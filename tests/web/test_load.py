"""The studio under load: 20 jobs at once through the Gradio Python client, one device slot."""

from __future__ import annotations

import gc
import time
from pathlib import Path
from typing import Any

import pytest
from studio_server import TEST_LIMITS, photo, start_server, stop_server

from inceptionism.io import read_settings

client_api = pytest.importorskip("gradio_client", reason="needs gradio_client (the web extra)")

JOBS = 20
MEMORY_SLACK = 150 * 2**20  # allocator and caches: memory may settle a little above where it was


def submit(client: Any, image: Path, seed: int) -> Any:
    """One tiny dream (1 octave, 2 steps): the arguments of the /dream endpoint, in the page's order; the controls
    after the guide keep the page's defaults, and the mask, which has none, is None."""
    return client.submit(
        client_api.handle_file(str(image)),
        "efficientnet-lite0",
        "",
        [],
        1,
        2,
        0.012,
        seed,
        [],
        0.0,
        None,
        mask=None,
        api_name="/dream",
    )


def wait_queued(job: Any, timeout: float = 30) -> None:
    """Until the server has the job in its queue (so the next one is queued after it)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if job.status().code.name not in ("STARTING", "JOINING_QUEUE"):
            return
        time.sleep(0.02)
    raise AssertionError("the job never reached the queue")


@pytest.mark.slow
def test_twenty_jobs_complete_in_queue_order(tmp_path: Path, loopback: None, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TMPDIR", str(tmp_path))  # the server's folder, where the order of its results shows
    server = start_server(tmp_path, *TEST_LIMITS)
    try:
        (root,) = tmp_path.glob("inceptionism-serve-*")
        image = photo(tmp_path / "tiny.png", 64, 48)
        client = client_api.Client(server.url, verbose=False, download_files=str(tmp_path / "downloads"))
        submit(client, image, 999).result(timeout=120)  # warm: the model is loaded, the first allocations made
        gc.collect()
        before = server.rss()

        jobs = []
        for seed in range(JOBS):
            jobs.append(submit(client, image, seed))
            wait_queued(jobs[-1])
        for seed, job in enumerate(jobs):
            *_, download, _gallery = job.result(timeout=240)
            assert read_settings(download)["seed"] == seed
        assert server.alive()
        # The server wrote the results one at a time, in the order the jobs were queued.
        written = sorted(root.glob("jobs/*/dream-*.png"), key=lambda p: p.stat().st_mtime_ns)
        seeds = [int(p.stem.removeprefix("dream-")) for p in written if p.stem != "dream-999"]
        assert seeds == list(range(JOBS))
        time.sleep(1)
        after = server.rss()
        assert after < before + MEMORY_SLACK, f"server memory grew from {before >> 20} MB to {after >> 20} MB"
    finally:
        stop_server(server)
