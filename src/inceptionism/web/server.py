"""``inceptionism serve``: start the studio on a loopback address, with its own temporary folder.

Gradio keeps uploads and served copies in ``GRADIO_TEMP_DIR``; the server points it at a folder of its own
(removed when the server stops) before importing Gradio, and turns analytics off.
"""

from __future__ import annotations

import os
import shutil
import signal
import tempfile
import threading
from pathlib import Path
from typing import TYPE_CHECKING

from inceptionism.errors import ConfigError
from inceptionism.web.limits import Limits

if TYPE_CHECKING:  # the app module imports Gradio, which must wait for the environment
    import gradio as gr

    from inceptionism.web.app import Studio

LOOPBACK = "127.0.0.1"


def prepare_environment(root: Path) -> None:
    """Point Gradio at ``root/gradio`` and keep it offline (no analytics, no run history in the browser).

    Uploads and served files follow ``GRADIO_TEMP_DIR`` when a Blocks is made, so this holds even if Gradio was
    imported before (a notebook); only Gradio features the studio does not use keep the folder read at import.
    A closed tab is noticed at the next heartbeat: every 5 s unless ``GRADIO_HEARTBEAT_INTERVAL`` says otherwise.
    """
    os.environ["GRADIO_TEMP_DIR"] = str(root / "gradio")
    os.environ["GRADIO_ANALYTICS_ENABLED"] = "False"
    os.environ["GRADIO_RUN_HISTORY"] = "False"
    os.environ.setdefault("GRADIO_HEARTBEAT_INTERVAL", "5")


def _stop_on_sigterm() -> None:
    """``kill`` (SIGTERM) stops the server like Ctrl+C, so its jobs are cancelled and its folder removed."""

    def stop(signum: int, frame: object) -> None:
        raise KeyboardInterrupt

    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, stop)


def serve(
    host: str = LOOPBACK,
    port: int = 7860,
    *,
    share: bool = False,
    concurrency: int = 1,
    limits: Limits | None = None,
    keep: float = 3600.0,
    device: str = "auto",
    root: Path | None = None,
) -> None:
    """Run the studio until interrupted; prints its URL. ``keep``: seconds uploads and results are kept.
    ``share``: also ask Gradio for a public link (off unless asked). ``root``: the server's folder (default: a new
    temporary one, removed at exit)."""
    if not 1 <= port <= 65535:
        raise ConfigError(f"--port must be between 1 and 65535, got {port}")
    if concurrency < 1:
        raise ConfigError(f"--concurrency must be at least 1, got {concurrency}")
    if keep <= 0:
        raise ConfigError(f"--keep must be more than 0 seconds, got {keep:g}")
    limits = (limits or Limits()).validate()
    own_root = root is None
    folder = Path(tempfile.mkdtemp(prefix="inceptionism-serve-")) if root is None else root
    folder.mkdir(parents=True, exist_ok=True)
    prepare_environment(folder)
    _stop_on_sigterm()
    from inceptionism.web.app import Studio, StudioOptions

    try:
        studio = Studio(folder, StudioOptions(limits, concurrency, device, keep))
        app = studio.build()
        app.queue(default_concurrency_limit=concurrency, max_size=StudioOptions().queue_size)
        _run(studio, app, host, port, share, keep)
    finally:
        if own_root:
            shutil.rmtree(folder, ignore_errors=True)


def _run(studio: Studio, app: gr.Blocks, host: str, port: int, share: bool, keep: float) -> None:
    """Serve ``app`` until interrupted; its jobs are cancelled and the sweeper stopped on the way out."""
    from inceptionism.web.cleanup import Sweeper

    limits = studio.limits
    sweeper = Sweeper(studio.jobs_dir, keep).start()
    try:
        _, local_url, share_url = app.launch(
            server_name=host,
            server_port=port,
            share=share,
            quiet=True,
            show_error=False,
            prevent_thread_lock=True,
            max_file_size=limits.max_upload_bytes,
            allowed_paths=[str(studio.jobs_dir)],
            footer_links=["api"],
            run_history=False,
            ssr_mode=False,
            mcp_server=False,
            pwa=False,
        )
        print(f"inceptionism studio: {local_url}", flush=True)
        if share_url:
            print(f"public link (anyone with it can use this server): {share_url}", flush=True)
        app.block_thread()
    except OSError as exc:
        raise ConfigError(f"cannot listen on {host}:{port}: {exc.strerror or exc}; try another --port") from None
    finally:
        studio.board.cancel_all()
        sweeper.stop()
        app.close()


__all__ = ["LOOPBACK", "prepare_environment", "serve"]
