"""The Python API: ``inceptionism.dream(image, **settings) -> PIL.Image``, for scripts and notebooks."""

from __future__ import annotations

import functools
import json
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image

from inceptionism import __version__
from inceptionism.config import DreamConfig, preset
from inceptionism.devices import pick_device, pick_precision
from inceptionism.engine import Callback, Dreamer, build_objective
from inceptionism.image_io import load_image, to_pil
from inceptionism.models import DreamModel, load_model

ImageLike = str | Path | Image.Image | np.ndarray | torch.Tensor


@functools.lru_cache(maxsize=4)
def _cached_model(name: str, weights: str | None, device: str) -> DreamModel:
    return load_model(name, weights, device=device)


def get_model(name: str, weights: str | None = None, device: torch.device | str = "cpu") -> DreamModel:
    """A loaded model, cached per (name, weights, device) so a notebook loads each network once."""
    return _cached_model(name, weights, str(device))


def make_config(config: DreamConfig | None = None, preset_name: str | None = None, **settings: Any) -> DreamConfig:
    """``config`` (or a preset, or the defaults) with ``settings`` applied on top, validated."""
    base = config if config is not None else preset(preset_name) if preset_name else DreamConfig()
    if "layers" in settings and isinstance(settings["layers"], str):
        settings["layers"] = (settings["layers"],)
    if "layers" in settings:
        settings["layers"] = tuple(settings["layers"])
    return base.replace(**settings).validate()


def settings_record(config: DreamConfig, model: DreamModel, objective: str, precision: str) -> dict[str, Any]:
    """What is written beside a dream so it can be reproduced: the config plus version and resolved details."""
    record = config.to_dict()
    record["version"] = __version__
    record["objective"] = objective
    record.setdefault("extra", {}).update({"weights_source": model.source, "precision_used": precision})
    return record


def dream(
    image: ImageLike,
    config: DreamConfig | None = None,
    *,
    preset: str | None = None,
    callback: Callback | None = None,
    model: DreamModel | str | None = None,
    **settings: Any,
) -> Image.Image:
    """Dream on ``image`` (a path, PIL image, (H, W[, C]) array or (3, H, W) tensor in [0, 1]).

    Settings are :class:`DreamConfig` fields: ``dream("cat.jpg", layers=["block8:0.5", "block10"], steps=20)``.
    ``callback`` gets a :class:`~inceptionism.engine.Progress` after every step, with the image at each octave's
    end. ``model`` is a model name or an already loaded :class:`DreamModel` (reused, e.g. across a notebook).
    Returns a PIL image of the input's size and mode; its settings are in ``.info["inceptionism"]``.
    """
    if isinstance(model, str):
        settings["model"], model = model, None
    elif model is not None:
        settings["model"] = model.name
    cfg = make_config(config, preset, **settings)
    loaded = load_image(image, max_pixels=cfg.max_pixels)
    device = pick_device(cfg.device)
    net = model if model is not None else get_model(cfg.model, cfg.weights, device)
    objective = build_objective(cfg, net)
    dreamer = Dreamer(net, objective, cfg, device)
    result = dreamer.run(loaded.rgb, callback)
    out = to_pil(result, loaded)
    out.info["inceptionism"] = json.dumps(
        settings_record(cfg, net, objective.description, dreamer.precision), sort_keys=True
    )
    return out


__all__ = ["dream", "get_model", "make_config", "pick_precision", "settings_record"]
