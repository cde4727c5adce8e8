"""``inceptionism serve``: bad options in one line, files swept after --keep, its folder gone when it stops."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from studio_server import TEST_LIMITS, photo, start_server, stop_server

from inceptionism.cli import main
from inceptionism.io import read_settings

client_api = pytest.importorskip("gradio_client", reason="needs gradio_client (the web extra)")


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--port", "70000"], "--port must be between 1 and 65535, got 70000"),
        (["--concurrency", "0"], "--concurrency must be at least 1, got 0"),
        (["--max-pixels", "0"], "--max-pixels must be a whole number, at least 1; got 0"),
    ],
)
def test_bad_options_are_one_line(args: list[str], message: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["serve", *args]) != 0
    err = capsys.readouterr().err
    assert err.strip() == f"inceptionism: error: {message}"


@pytest.mark.slow
def test_results_are_swept_and_the_folder_removed_on_stop(
    tmp_path: Path, loopback: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TMPDIR", str(tmp_path))  # the server makes its folder here
    server = start_server(tmp_path, *TEST_LIMITS, "--keep", "3")
    try:
        (root,) = tmp_path.glob("inceptionism-serve-*")
        client = client_api.Client(server.url, verbose=False, download_files=str(tmp_path / "downloads"))
        image = client_api.handle_file(str(photo(tmp_path / "tiny.png", 64, 48)))
        arguments = (image, "efficientnet-lite0", "", [], 1, 1, 0.012, 3, [], 0.0, None)  # then the page's defaults
        outputs = client.predict(*arguments, mask=None, api_name="/dream")
        assert read_settings(outputs[2])["seed"] == 3
        jobs = root / "jobs"
        assert len(list(jobs.iterdir())) == 1
        deadline = time.monotonic() + 20
        while list(jobs.iterdir()) and time.monotonic() < deadline:
            time.sleep(0.5)
        assert list(jobs.iterdir()) == [], "the job's folder outlived --keep"
    finally:
        stop_server(server)
    assert server.process.returncode == 0
    assert not root.exists(), "the server's folder is left behind"
