"""Helpers of the studio's tests: a studio server in a child process on a free loopback port, test pictures."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


@dataclass
class Server:
    """A studio running in a child process."""

    url: str
    process: subprocess.Popen[str]
    log: Path

    def rss(self) -> int:
        """The server's resident memory, bytes."""
        for line in Path(f"/proc/{self.process.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
        raise RuntimeError("no VmRSS")

    def alive(self) -> bool:
        return self.process.poll() is None


def start_server(tmp: Path, *options: str) -> Server:
    log = tmp / "server.log"
    env = {**os.environ, "GRADIO_HEARTBEAT_INTERVAL": "1", "PYTHONUNBUFFERED": "1"}
    port = free_port()
    with log.open("w") as out:
        process = subprocess.Popen(
            [sys.executable, "-m", "inceptionism", "serve", "--port", str(port), *options],
            stdout=subprocess.PIPE,
            stderr=out,
            text=True,
            env=env,
        )
    assert process.stdout is not None
    deadline = time.monotonic() + 120
    line = ""
    while time.monotonic() < deadline:
        line = process.stdout.readline()
        if line.startswith("inceptionism studio: ") or process.poll() is not None:
            break
    if not line.startswith("inceptionism studio: "):
        process.kill()
        raise RuntimeError(f"the studio did not start: {log.read_text()[-2000:]}")
    return Server(line.split(": ", 1)[1].strip(), process, log)


def stop_server(server: Server) -> None:
    server.process.terminate()
    try:
        server.process.wait(20)
    except subprocess.TimeoutExpired:
        server.process.kill()
        server.process.wait()


# Small limits so the refusals can be met with small files: 1 MB uploads, 0.3 megapixels.
TEST_LIMITS = ("--max-upload-mb", "1", "--max-pixels", "300000", "--device", "cpu")


def photo(path: Path, width: int, height: int, seed: int = 0) -> Path:
    """A smooth random picture (blurred noise), like a photo's low frequencies, saved as PNG."""
    rng = np.random.default_rng(seed)
    small = (rng.random((max(height // 16, 2), max(width // 16, 2), 3)) * 255).astype(np.uint8)
    Image.fromarray(small).resize((width, height), Image.BICUBIC).save(path)
    return path
