"""Tests for finding and loading weights: source order, file formats, refusals, offline mode, failed downloads."""

from __future__ import annotations

import dataclasses
import hashlib
import os
import pickle
import socket
import urllib.request
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file
from torch import nn

from inceptionism.errors import WeightsError
from inceptionism.models import get_model_spec, load_model
from inceptionism.models.keras_h5 import KERAS_WEIGHTS_FILE, KERAS_WEIGHTS_URL
from inceptionism.models.spec import ModelSpec, Preprocessing, WeightsSpec
from inceptionism.models.weights import (
    OFFLINE_ENV,
    ResolvedWeights,
    find_weights_file,
    hub_cache_path,
    load_into,
    load_state_file,
    missing_weights_message,
    resolve_weights,
    source_file,
    weights_available,
    weights_identity,
)

TINY_FILE = "tiny-0123abcd.pth"
TINY_URL = f"https://download.pytorch.org/models/{TINY_FILE}"


def _tiny_module() -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4), nn.ReLU(), nn.Conv2d(4, 2, 1))


def _tiny_state(value: float) -> dict[str, torch.Tensor]:
    """A state dict for the tiny network whose first weight is filled with ``value`` (to tell files apart)."""
    state = _tiny_module().state_dict()
    state["0.weight"] = torch.full_like(state["0.weight"], value)
    return dict(state)


def _tiny_spec(packaged: Path | None = None) -> ModelSpec:
    return ModelSpec(
        name="tiny",
        builder=_tiny_module,
        weights=WeightsSpec(
            name="TINY",
            filename=TINY_FILE,
            preprocessing=Preprocessing(),
            url=TINY_URL,
            packaged=(lambda: packaged) if packaged is not None else None,
        ),
        layers={"conv": "0", "relu": "2"},
        default_layers=("relu",),
    )


def _first_weight(resolved: ResolvedWeights) -> float:
    return float(resolved.state_dict["0.weight"].flatten()[0])


@pytest.fixture
def online(monkeypatch: pytest.MonkeyPatch) -> None:
    """Downloads allowed by the environment (the sockets stay blocked)."""
    monkeypatch.delenv(OFFLINE_ENV, raising=False)


@pytest.fixture
def no_download(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Record calls to torch.hub.download_url_to_file (and fail them): the list must stay empty."""
    calls: list[str] = []

    def fake(url: str, dst: str, *args: object, **kwargs: object) -> None:
        calls.append(url)
        raise AssertionError(f"unexpected download of {url}")

    monkeypatch.setattr(torch.hub, "download_url_to_file", fake)
    return calls


# ---------------------------------------------------------------------------------------------------------------
# The network guard itself


def test_network_is_blocked_in_tests(network_attempts: list[str]) -> None:
    with pytest.raises(OSError, match="network disabled in tests"):
        socket.create_connection(("download.pytorch.org", 443), timeout=1)
    with pytest.raises(OSError, match="network disabled in tests"):
        socket.getaddrinfo("download.pytorch.org", 443)
    with pytest.raises(OSError, match="network disabled in tests"), socket.socket() as s:
        s.connect(("127.0.0.1", 9))
    with pytest.raises(OSError):
        urllib.request.urlopen("https://download.pytorch.org/models/", timeout=1)
    assert len(network_attempts) == 4
    assert any("download.pytorch.org" in a for a in network_attempts)


# ---------------------------------------------------------------------------------------------------------------
# Source order: explicit file, then packaged, then hub cache, then download


def test_source_order(tmp_path: Path, torch_home: Path, monkeypatch: pytest.MonkeyPatch, no_download: list) -> None:
    monkeypatch.setenv(OFFLINE_ENV, "1")
    explicit, packaged = tmp_path / "mine.pth", tmp_path / "packaged.pth"
    cached = hub_cache_path(TINY_FILE)
    cached.parent.mkdir(parents=True)
    torch.save(_tiny_state(1.0), explicit)
    torch.save(_tiny_state(2.0), packaged)
    torch.save(_tiny_state(3.0), cached)
    assert cached == torch_home / "hub" / "checkpoints" / TINY_FILE
    spec = _tiny_spec(packaged)

    r = resolve_weights(spec, explicit)
    assert (r.source, _first_weight(r)) == (str(explicit), 1.0)

    r = resolve_weights(spec)
    assert r.source == f"package file {packaged}"
    assert _first_weight(r) == 2.0
    assert weights_available(spec) == str(packaged)

    packaged.unlink()  # the package's file is gone: the hub cache is next
    r = resolve_weights(spec)
    assert (r.source, _first_weight(r)) == (str(cached), 3.0)
    assert weights_available(spec) == str(cached)

    cached.unlink()
    assert weights_available(spec) is None
    with pytest.raises(WeightsError, match="no weights for tiny"):
        resolve_weights(spec)
    assert no_download == []


def test_explicit_file_beats_packaged_for_a_registered_model(tmp_path: Path, torch_home: Path) -> None:
    spec = get_model_spec("efficientnet-lite0")
    assert weights_available(spec) is not None  # the package is installed
    torch.manual_seed(0)
    state = spec.builder().state_dict()
    mine = tmp_path / "lite0-mine.pth"
    torch.save(state, mine)
    model = load_model("efficientnet-lite0", weights=mine)
    assert model.source == str(mine)
    assert torch.equal(model.module._conv_stem.weight, state["_conv_stem.weight"])


def test_explicit_file_that_does_not_exist(tmp_path: Path) -> None:
    with pytest.raises(WeightsError, match="does not exist"):
        resolve_weights(_tiny_spec(), tmp_path / "nope.pth")


# ---------------------------------------------------------------------------------------------------------------
# Nothing available: offline message, no download attempt, failed downloads leave nothing behind


@pytest.mark.parametrize("name", ["resnet50", "googlenet"])
def test_offline_without_weights_names_url_cache_path_and_option(
    name: str, torch_home: Path, monkeypatch: pytest.MonkeyPatch, no_download: list, network_attempts: list
) -> None:
    monkeypatch.setenv(OFFLINE_ENV, "1")
    spec = get_model_spec(name)
    with pytest.raises(WeightsError) as info:
        load_model(name)
    message = str(info.value)
    assert spec.weights.url and spec.weights.url in message
    assert str(torch_home / "hub" / "checkpoints" / spec.weights.filename) in message
    assert "--weights" in message
    assert message == missing_weights_message(spec)
    assert no_download == [] and network_attempts == []


def test_download_false_never_downloads(torch_home: Path, online: None, no_download: list) -> None:
    with pytest.raises(WeightsError, match="--weights"):
        resolve_weights(get_model_spec("resnet50"), download=False)
    assert no_download == []


def test_blocked_download_fails_cleanly(torch_home: Path, online: None, network_attempts: list) -> None:
    spec = get_model_spec("resnet50")
    url = spec.weights.url
    assert url
    with pytest.raises(WeightsError) as info:
        load_model("resnet50")
    message = str(info.value)
    assert "could not download" in message
    assert url in message
    assert str(torch_home / "hub" / "checkpoints" / spec.weights.filename) in message
    assert "--weights" in message
    assert network_attempts, "the download was never attempted"
    checkpoints = torch_home / "hub" / "checkpoints"
    leftovers = list(checkpoints.iterdir()) if checkpoints.exists() else []
    assert leftovers == []  # no partial file, no temporary file


def test_blocked_download_of_a_custom_spec(torch_home: Path, online: None, network_attempts: list) -> None:
    with pytest.raises(WeightsError, match="could not download weights for tiny"):
        resolve_weights(_tiny_spec())
    assert any("download.pytorch.org" in a for a in network_attempts)
    assert not hub_cache_path(TINY_FILE).exists()
    assert list(hub_cache_path(TINY_FILE).parent.glob("*")) == []


def test_spec_without_url_suggests_package_or_option(torch_home: Path, online: None) -> None:
    spec = dataclasses.replace(_tiny_spec(), weights=WeightsSpec(name="TINY", filename=TINY_FILE))
    with pytest.raises(WeightsError, match=r"install its weights package or pass --weights FILE"):
        resolve_weights(spec)


# ---------------------------------------------------------------------------------------------------------------
# File formats


@pytest.mark.parametrize("suffix", [".pth", ".pt", ".bin", ".safetensors"])
def test_file_formats(tmp_path: Path, suffix: str) -> None:
    state = _tiny_state(0.25)
    path = tmp_path / f"weights{suffix}"
    if suffix == ".safetensors":
        save_file({k: v.contiguous() for k, v in state.items()}, str(path))
    else:
        torch.save(state, path)
    resolved = resolve_weights(_tiny_spec(), path)
    assert resolved.source == str(path)
    assert resolved.state_dict.keys() == state.keys()
    assert all(torch.equal(resolved.state_dict[k], v) for k, v in state.items())
    model = _tiny_module()
    load_into(model, resolved)
    assert torch.equal(model.state_dict()["0.weight"], state["0.weight"])


@pytest.mark.parametrize("key", ["state_dict", "model_state_dict", "model"])
def test_wrapped_state_dicts_load(tmp_path: Path, key: str) -> None:
    state = _tiny_state(0.5)
    path = tmp_path / "checkpoint.pth"
    torch.save({key: state, "epoch": 7, "best_acc": 0.75}, path)
    loaded = load_state_file(path)
    assert loaded.keys() == state.keys()
    assert torch.equal(loaded["0.weight"], state["0.weight"])


def test_module_prefix_is_stripped(tmp_path: Path) -> None:
    state = _tiny_state(0.5)
    path = tmp_path / "dataparallel.pth"
    torch.save({"state_dict": {f"module.{k}": v for k, v in state.items()}}, path)
    loaded = load_state_file(path)
    assert set(loaded) == set(state)
    model = _tiny_module()
    load_into(model, ResolvedWeights(loaded, _tiny_spec().weights, str(path)))
    assert torch.equal(model.state_dict()["0.weight"], state["0.weight"])


def test_missing_batchnorm_counters_are_accepted(tmp_path: Path) -> None:
    """Files saved before PyTorch 0.4.1 have no ``num_batches_tracked``; torch's strict load accepts them."""
    state = {k: v for k, v in _tiny_state(0.5).items() if not k.endswith("num_batches_tracked")}
    model = _tiny_module()
    load_into(model, ResolvedWeights(state, _tiny_spec().weights, "old.pth"))
    assert torch.equal(model.state_dict()["0.weight"], state["0.weight"])
    assert "1.num_batches_tracked" in state  # filled in, so nothing counts as missing afterwards


# ---------------------------------------------------------------------------------------------------------------
# Files that do not fit, or are not weights at all


def test_wrong_shape_is_refused(tmp_path: Path) -> None:
    state = _tiny_state(0.5)
    state["3.weight"] = torch.zeros(5, 4, 1, 1)  # 5 outputs instead of 2
    path = tmp_path / "wrong.pth"
    torch.save(state, path)
    with pytest.raises(WeightsError, match="wrong shape") as info:
        load_into(_tiny_module(), resolve_weights(_tiny_spec(), path))
    assert "3.weight" in str(info.value)
    assert "(5, 4, 1, 1)" in str(info.value)


def test_missing_keys_are_refused(tmp_path: Path) -> None:
    state = _tiny_state(0.5)
    del state["1.running_var"], state["3.bias"]
    path = tmp_path / "partial.pth"
    torch.save(state, path)
    with pytest.raises(WeightsError, match="2 missing keys") as info:
        load_into(_tiny_module(), resolve_weights(_tiny_spec(), path))
    assert "3.bias" in str(info.value)


def test_unexpected_keys_are_refused(tmp_path: Path) -> None:
    state = _tiny_state(0.5)
    state["4.weight"] = torch.zeros(1)
    with pytest.raises(WeightsError, match="1 unexpected keys"):
        load_into(_tiny_module(), ResolvedWeights(state, _tiny_spec().weights, "extra.pth"))


def test_registered_model_with_wrong_weights_file(tmp_path: Path) -> None:
    path = tmp_path / "tiny.pth"
    torch.save(_tiny_state(0.5), path)
    with pytest.raises(WeightsError, match=r"do not fit this model: \d+ missing keys"):
        load_model("efficientnet-lite0", weights=path)


_MARKER_NAME = "code-ran"


class _RunsCodeOnLoad:
    """Unpickling this calls os.system: a stand-in for a malicious checkpoint."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[object, tuple[str]]:
        return os.system, (f"touch '{self.marker}'",)


@pytest.mark.filterwarnings("ignore:Detected pickle protocol")
@pytest.mark.parametrize("writer", ["torch.save", "pickle.dump"])
def test_pickled_code_is_refused_and_never_runs(tmp_path: Path, writer: str) -> None:
    marker = tmp_path / _MARKER_NAME
    path = tmp_path / "evil.pth"
    payload = {"conv.weight": torch.zeros(1), "x": _RunsCodeOnLoad(marker)}
    if writer == "torch.save":
        torch.save(payload, path)
    else:
        path.write_bytes(pickle.dumps(payload, protocol=2))
    with pytest.raises(WeightsError, match="pickled Python objects"):
        load_state_file(path)
    with pytest.raises(WeightsError, match="pickled Python objects"):
        resolve_weights(_tiny_spec(), path)
    assert not marker.exists()


def test_whole_pickled_module_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "model.pth"
    torch.save(_tiny_module(), path)  # torch.save(model) instead of torch.save(model.state_dict())
    with pytest.raises(WeightsError, match=r"pickled Python objects.*torch.save\(model.state_dict\(\), path\)"):
        load_state_file(path)


@pytest.mark.parametrize(
    ("name", "content"),
    [
        ("notes.pth", b"these are not weights\n"),
        ("config.pt", b'{"lr": 0.1}'),
        ("empty.pth", b""),
        ("photo.bin", b"\xff\xd8\xff\xe0\x00\x10JFIF\x00"),
    ],
)
def test_non_weights_file_is_refused(tmp_path: Path, name: str, content: bytes) -> None:
    path = tmp_path / name
    path.write_bytes(content)
    with pytest.raises(WeightsError, match="is not a PyTorch weights file") as info:
        resolve_weights(_tiny_spec(), path)
    assert "pickled" not in str(info.value)  # not mistaken for a malicious pickle


def test_broken_safetensors_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "broken.safetensors"
    path.write_bytes(b"\x00" * 32)
    with pytest.raises(WeightsError, match="not a readable safetensors file"):
        load_state_file(path)


@pytest.mark.parametrize("content", [[torch.zeros(2)], torch.zeros(2), {"weights": [1, 2, 3]}])
def test_torch_file_without_a_state_dict_is_refused(tmp_path: Path, content: object) -> None:
    path = tmp_path / "other.pth"
    torch.save(content, path)
    with pytest.raises(WeightsError, match="does not hold a state dict"):
        load_state_file(path)


@pytest.mark.parametrize("with_metadata", [True, False])
def test_versioned_modules_load_from_official_and_plain_files(torch_home: Path, with_metadata: bool) -> None:
    """torchvision's MNASNet reads its state-dict version from the file's metadata and refuses to load without
    one: an official file's metadata is kept, and a plain dict gets the model's own versions."""
    import torchvision

    spec = get_model_spec("tv:mnasnet0_5")
    path = hub_cache_path(spec.weights.filename)
    path.parent.mkdir(parents=True, exist_ok=True)
    state = torchvision.models.mnasnet0_5().state_dict()  # an OrderedDict with _metadata, as torch.save writes
    torch.save(state if with_metadata else dict(state), path)
    assert hasattr(load_state_file(path), "_metadata") == with_metadata
    model = load_model("tv:mnasnet0_5", device="cpu")
    first = next(k for k in state if k.endswith("weight"))
    assert torch.equal(model.module.state_dict()[first], state[first])


# ---------------------------------------------------------------------------------------------------------------
# What a picture records about its weights: the file's name and SHA-256, never its folder


def test_bare_file_name_is_found_here_or_in_the_hub_cache(
    tmp_path: Path, torch_home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    cached = hub_cache_path("mine.pth")
    cached.parent.mkdir(parents=True)
    torch.save(_tiny_state(3.0), cached)
    assert find_weights_file("mine.pth") == cached  # not here: the hub cache
    torch.save(_tiny_state(1.0), tmp_path / "mine.pth")
    assert find_weights_file("mine.pth") == Path("mine.pth")  # here first
    assert _first_weight(resolve_weights(_tiny_spec(), "mine.pth")) == 1.0
    with pytest.raises(WeightsError) as info:
        find_weights_file("other.pth")
    message = str(info.value)
    assert "other.pth" in message and str(cached.parent) in message and "--weights" in message
    with pytest.raises(WeightsError, match="does not exist"):
        find_weights_file(tmp_path / "sub" / "mine.pth")  # a path with a folder is taken as it is


def test_weights_identity_names_the_file_and_its_sha256(tmp_path: Path) -> None:
    path = tmp_path / "deep" / "folder" / "w.pth"
    path.parent.mkdir(parents=True)
    torch.save(_tiny_state(1.0), path)
    sha = hashlib.sha256(path.read_bytes()).hexdigest()
    expected = {"weights_file": "w.pth", "weights_sha256": sha}
    assert weights_identity(str(path)) == expected
    assert weights_identity(f"package file {path}") == expected
    assert source_file(f"package file {path}") == path
    assert weights_identity("none found (structure only)") == {"weights_source": "none found (structure only)"}
    spec = _tiny_spec(packaged=path)
    assert weights_identity(resolve_weights(spec).source) == expected


def test_seed_model_offline_message_points_to_the_keras_file(torch_home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(OFFLINE_ENV, "1")
    spec = get_model_spec("inception_v3")
    with pytest.raises(WeightsError) as info:
        load_model("inception_v3")
    message = str(info.value)
    assert "\n" not in message and message == missing_weights_message(spec)
    assert spec.weights.url and spec.weights.url in message  # the .pth route
    assert f"--weights {KERAS_WEIGHTS_FILE}" in message and KERAS_WEIGHTS_URL in message  # the .h5 route
    assert "inceptionism[keras]" in message
    assert KERAS_WEIGHTS_FILE not in missing_weights_message(get_model_spec("resnet50"))
