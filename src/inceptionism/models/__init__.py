"""The model zoo: a registry of :class:`ModelSpec` values and :func:`load_model` to get a ready network."""

from __future__ import annotations

from pathlib import Path

import torch

from inceptionism.models import efficientnet_lite as _efficientnet_lite  # noqa: F401  (registers models)
from inceptionism.models import torchvision_zoo as _torchvision_zoo  # noqa: F401  (registers models)
from inceptionism.models.features import DreamModel, FeatureExtractor, LayerInfo
from inceptionism.models.registry import get_model_spec, list_models, register_model
from inceptionism.models.spec import ModelSpec, Preprocessing, WeightsSpec
from inceptionism.models.weights import ResolvedWeights, load_into, resolve_weights, weights_available

__all__ = [
    "DreamModel",
    "FeatureExtractor",
    "LayerInfo",
    "ModelSpec",
    "Preprocessing",
    "WeightsSpec",
    "get_model_spec",
    "list_models",
    "load_model",
    "register_model",
    "weights_available",
]


def load_model(
    name: str = "efficientnet-lite0",
    weights: str | Path | None = None,
    device: torch.device | str | None = None,
    download: bool = True,
) -> DreamModel:
    """Build ``name`` and load its pretrained weights (never random): see :func:`resolve_weights` for the order."""
    spec = get_model_spec(name)
    resolved = resolve_weights(spec, weights, download=download)
    if spec.state_fixup is not None:
        resolved = ResolvedWeights(spec.state_fixup(resolved.state_dict), resolved.weights, resolved.source)
    module = spec.builder()
    load_into(module, resolved)
    missing = tuple(k for k in module.state_dict() if k not in resolved.state_dict)
    if spec.after_load is not None:
        spec.after_load(module)
    model = DreamModel(spec, module, resolved.weights, resolved.source, missing)
    if device is not None:
        model.to(device)
    return model
