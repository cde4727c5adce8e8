"""Shared fixtures: no test touches the network or the user's home; weight caches live in temporary folders.

Sections: network guard (autouse) · isolated home, caches and offline switches (autouse) · torch hub cache ·
random weights under official file names.
"""

from __future__ import annotations

import os
import site
import socket
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, NoReturn

import pytest
import torch
from torch import nn

from inceptionism.models import get_model_spec
from inceptionism.models.cpu import native
from inceptionism.models.spec import ModelSpec, StateDict
from inceptionism.models.weights import OFFLINE_ENV, hub_cache_path
from support import REAL_HOME

# ---------------------------------------------------------------------------------------------------------------
# Network guard: sockets are refused for the whole session; a test may inspect its attempts.


class NetworkDisabledError(OSError):
    """Raised by every outgoing connection or name lookup during tests."""


@pytest.fixture(scope="session", autouse=True)
def _network_guard() -> Iterator[list[str]]:
    """Block the network for the whole session (module- and session-scoped fixtures included)."""
    attempts: list[str] = []
    original_connect = socket.socket.connect

    def refuse(what: str, target: object) -> NoReturn:
        attempts.append(f"{what} {target!r}")
        raise NetworkDisabledError(f"network disabled in tests ({what} {target!r})")

    def connect(self: socket.socket, address: Any) -> None:
        if self.family == getattr(socket, "AF_UNIX", None):  # local IPC is not network
            return original_connect(self, address)
        refuse("connect", address)

    def connect_ex(self: socket.socket, address: object) -> int:
        refuse("connect_ex", address)

    def create_connection(address: object, *args: object, **kwargs: object) -> socket.socket:
        refuse("create_connection", address)

    def getaddrinfo(host: object, *args: object, **kwargs: object) -> list[object]:
        refuse("getaddrinfo", host)

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(socket.socket, "connect", connect)
        mp.setattr(socket.socket, "connect_ex", connect_ex)
        mp.setattr(socket, "create_connection", create_connection)
        mp.setattr(socket, "getaddrinfo", getaddrinfo)
        yield attempts


@pytest.fixture
def network_attempts(_network_guard: list[str]) -> list[str]:
    """The connections and name look-ups this test attempted (each one was refused)."""
    _network_guard.clear()
    return _network_guard


# ---------------------------------------------------------------------------------------------------------------
# Isolation (autouse): the home folder and every cache are temporary for the whole session, and the run is offline.
# Subprocesses inherit ``os.environ``, so a CLI run in a child process is isolated too. At the end, the real
# home's caches must be as they were.


WATCHED_CACHES = (".cache/torch", ".cache/inceptionism", ".cache/huggingface", ".torch")


def isolated_environment(root: Path) -> dict[str, str]:
    """Environment variables that keep caches, downloads and the home folder under ``root``."""
    home = root / "home"
    cache = home / ".cache"
    env = {
        "HOME": str(home),
        "XDG_CACHE_HOME": str(cache),
        "TORCH_HOME": str(cache / "torch"),
        "HF_HOME": str(cache / "huggingface"),
        "INCEPTIONISM_CACHE": str(root / "native"),
        "SE_CACHE_PATH": str(cache / "selenium"),  # selenium-manager's driver cache
        OFFLINE_ENV: "1",
        "HF_HUB_OFFLINE": "1",
        "TRANSFORMERS_OFFLINE": "1",
        "GRADIO_ANALYTICS_ENABLED": "False",
        "RAY_USAGE_STATS_ENABLED": "0",
        "PYTHONUSERBASE": site.getuserbase(),  # packages installed with --user stay importable
    }
    browsers = Path(os.environ.get("XDG_CACHE_HOME") or REAL_HOME / ".cache") / "ms-playwright"
    if "PLAYWRIGHT_BROWSERS_PATH" not in os.environ and browsers.is_dir():
        env["PLAYWRIGHT_BROWSERS_PATH"] = str(browsers)  # installed browsers are read, never written
    return env


def cache_listing(home: Path) -> dict[str, tuple[int, int]]:
    """(size, mtime in ns) of every file and folder under ``home``'s watched caches, by path relative to it."""
    listing = {}
    for name in WATCHED_CACHES:
        top = home / name
        for path in [top, *top.rglob("*")] if top.is_dir() else [top] if top.exists() else []:
            st = path.lstat()
            listing[str(path.relative_to(home))] = (st.st_size, st.st_mtime_ns)
    return listing


@pytest.fixture(scope="session", autouse=True)
def _isolated_home(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, str]]:
    before = cache_listing(REAL_HOME)
    env = isolated_environment(tmp_path_factory.mktemp("isolated"))
    Path(env["HOME"]).mkdir()
    with pytest.MonkeyPatch.context() as mp:
        for key, value in env.items():
            mp.setenv(key, value)
        mp.setattr(torch.hub, "_hub_dir", None)  # a torch.hub.set_dir() would override TORCH_HOME
        native.reset()
        yield env
    native.reset()
    after = cache_listing(REAL_HOME)
    changed = sorted(k for k in before.keys() | after.keys() if before.get(k) != after.get(k))
    if changed:
        pytest.fail(f"the tests wrote into the real home {REAL_HOME}: {', '.join(changed[:10])}", pytrace=False)


@pytest.fixture
def isolated_env(_isolated_home: dict[str, str]) -> dict[str, str]:
    """The session's isolated environment variables (HOME, caches, offline switches)."""
    return dict(_isolated_home)


# ---------------------------------------------------------------------------------------------------------------
# Torch hub cache in a temporary folder.


@pytest.fixture
def torch_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """``$TORCH_HOME`` in a fresh temporary folder: the hub cache is ``<it>/hub/checkpoints``, empty."""
    home = tmp_path / "torch_home"
    home.mkdir()
    monkeypatch.setenv("TORCH_HOME", str(home))
    monkeypatch.setattr(torch.hub, "_hub_dir", None)  # a torch.hub.set_dir() elsewhere would override TORCH_HOME
    return home


# ---------------------------------------------------------------------------------------------------------------
# Random-init weights saved under a model's official file name.


def random_state_dict(spec: ModelSpec, seed: int = 0) -> StateDict:
    """A reproducible random-init state dict for ``spec``'s network.

    Each BatchNorm takes the mean and variance of its input on a batch of noise (in eval mode, shallow to deep),
    so activations keep a realistic scale: with the default statistics (mean 0, variance 1) deep random networks
    give vanishing activations and gradients.
    """
    torch.manual_seed(seed)
    module = spec.builder().eval()

    def calibrate(m: nn.Module, inputs: tuple[torch.Tensor, ...]) -> None:
        x = inputs[0].transpose(0, 1).flatten(1)  # (C, B·H·W)
        assert isinstance(m.running_mean, torch.Tensor) and isinstance(m.running_var, torch.Tensor)
        m.running_mean.copy_(x.mean(1))
        m.running_var.copy_(x.var(1) + 1e-3)

    hooks = [
        m.register_forward_pre_hook(calibrate)
        for m in module.modules()
        if isinstance(m, nn.modules.batchnorm._BatchNorm) and m.running_mean is not None
    ]
    if hooks:
        noise = torch.rand(2, 3, 128, 128, generator=torch.Generator().manual_seed(seed))
        with torch.no_grad():
            module(noise)
        for h in hooks:
            h.remove()
    return {k: v.detach().clone() for k, v in module.state_dict().items()}


def write_hub_weights(model: str | ModelSpec, state_dict: StateDict | None = None, seed: int = 0) -> Path:
    """Save ``state_dict`` (default: :func:`random_state_dict`) as ``hub_cache_path(<official file name>)``.

    Refuses to run unless ``$TORCH_HOME`` is set, so a test can never write into the user's real cache.
    """
    spec = get_model_spec(model) if isinstance(model, str) else model
    if not os.environ.get("TORCH_HOME"):
        raise RuntimeError("set TORCH_HOME to a temporary folder first (use the torch_home fixture)")
    path = hub_cache_path(spec.weights.filename)
    if not path.resolve().is_relative_to(Path(os.environ["TORCH_HOME"]).resolve()):
        raise RuntimeError(f"{path} is outside $TORCH_HOME; is torch.hub.set_dir() in effect?")
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save(state_dict if state_dict is not None else random_state_dict(spec, seed), path)
    return path


HubWeightsWriter = Callable[..., Path]


@pytest.fixture(scope="session")
def hub_weights() -> HubWeightsWriter:
    """``hub_weights("googlenet") -> path``: random weights in the hub cache of the current ``$TORCH_HOME``."""
    return write_hub_weights
