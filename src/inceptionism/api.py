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
from inceptionism.config import DreamConfig, noise_size, render_steps
from inceptionism.devices import pick_device, pick_precision
from inceptionism.engine import Callback, Dreamer, Progress, build_objective, config_mask
from inceptionism.errors import ConfigError
from inceptionism.io import LoadedImage, file_sha256, load_image, to_pil
from inceptionism.mask import print_note
from inceptionism.models import DreamModel, load_model
from inceptionism.models.weights import weights_identity
from inceptionism.objectives import Objective
from inceptionism.recipes import CUSTOM_OBJECTIVE, GUIDE_SHA256, MASK_SHA256, apply_overrides, build_region_objective
from inceptionism.render import RenderProgress, noise_start, render

ImageLike = str | Path | Image.Image | np.ndarray | torch.Tensor


@functools.lru_cache(maxsize=4)
def _cached_model(name: str, weights: str | None, device: str) -> DreamModel:
    return load_model(name, weights, device=device)


def get_model(name: str, weights: str | None = None, device: torch.device | str = "cpu") -> DreamModel:
    """A loaded model, cached per (name, weights, device) so a notebook loads each network once."""
    return _cached_model(name, weights, str(device))


def make_config(config: DreamConfig | None = None, preset_name: str | None = None, **settings: Any) -> DreamConfig:
    """``config`` (or a preset, or the defaults) with ``settings`` applied on top, validated."""
    from inceptionism.presets import preset

    base = config if config is not None else preset(preset_name) if preset_name else DreamConfig()
    if "layers" in settings and isinstance(settings["layers"], str):
        settings["layers"] = (settings["layers"],)
    if "layers" in settings:
        settings["layers"] = tuple(settings["layers"])
    if isinstance(settings.get("mask_layers"), str):
        settings["mask_layers"] = (settings["mask_layers"],)
    if "mask_layers" in settings:
        settings["mask_layers"] = tuple(settings["mask_layers"])
    if isinstance(settings.get("classes"), (str, int)):
        settings["classes"] = (settings["classes"],)
    if "classes" in settings:
        settings["classes"] = tuple(str(c) for c in settings["classes"])
    return render_steps(apply_overrides(base, settings), "steps" in settings).validate()


def settings_record(config: DreamConfig, model: DreamModel, objective: Objective, precision: str) -> dict[str, Any]:
    """What is written beside a dream so it can be reproduced: the config plus version and resolved details."""
    record = config.to_dict()
    if config.weights is not None:  # the file's name only: a shared picture must not reveal the user's folders
        record["weights"] = Path(config.weights).name
    record["version"] = __version__
    record["objective"] = objective.expression  # the whole objective; None for a Python one, which cannot be held
    extra = record.setdefault("extra", {})
    extra.pop(CUSTOM_OBJECTIVE, None)
    if objective.expression is None:
        extra[CUSTOM_OBJECTIVE] = objective.description  # reusing these settings then asks for an objective
    if config.guide is not None:  # like the weights: the file's name and digest, not its folder
        record["guide"] = Path(config.guide).name
        extra[GUIDE_SHA256] = file_sha256(config.guide)
    if config.mask is not None:
        record["mask"] = Path(config.mask).name
        extra[MASK_SHA256] = file_sha256(config.mask)
    for key in ("weights_source", "weights_file", "weights_sha256"):  # a previous run's, read from its settings
        extra.pop(key, None)
    extra.update({**weights_identity(model.source), "precision_used": precision})
    return record


def dream(
    image: ImageLike | None,
    config: DreamConfig | None = None,
    *,
    preset: str | None = None,
    callback: Callback | None = None,
    model: DreamModel | str | None = None,
    objective: Objective | str | None = None,
    **settings: Any,
) -> Image.Image:
    """Dream on ``image`` (a path, PIL image, (H, W[, C]) array or (3, H, W) tensor in [0, 1]), or from noise.

    Settings are :class:`DreamConfig` fields: ``dream("cat.jpg", layers=["block8:0.5", "block10"], steps=20)``.
    ``callback`` gets a :class:`~inceptionism.engine.Progress` after every step, with the image at each octave's
    end. ``model`` is a model name or an already loaded :class:`DreamModel` (reused, e.g. across a notebook).
    ``objective``: an expression (``"l2(block10) + cls(goldfish)"``) or an :class:`Objective`, used as it is;
    settings record its expression (one made with ``@objective`` has none: they record its description only).
    Returns a PIL image of the input's size and mode; its settings are in ``.info["inceptionism"]``. A 16-bit
    colour input (PNG, TIFF, ``uint16`` array) gives an 8-bit RGB(A) image (Pillow has no 16-bit colour mode) that
    carries the 16-bit result; :func:`inceptionism.io.save_image` writes that at 16 bits to ``.png`` and ``.tif``.

    From noise (feature visualisation): ``dream(None, noise="256x256", layers="block12[7]", param="fft")``; the
    ``seed`` makes the noise. ``param="pixel"`` runs the octave engine from it, ``"fft"`` lucid's Fourier
    parametrisation (:func:`inceptionism.render.render`, ``steps`` Adam steps): recognisable forms.
    A ``mask`` file (settings ``mask``, ``mask_strength``, ``mask_layers``) is read before any work.
    """
    if isinstance(model, str):
        settings["model"], model = model, None
    elif model is not None:
        settings["model"] = model.name
    given = objective if isinstance(objective, Objective) else None
    if objective is not None:
        settings["objective"] = objective if given is None else given.expression
    cfg = make_config(config, preset, **settings)
    loaded = _start_image(image, cfg)
    mask = _mask(cfg, loaded)  # before any work: a bad mask costs no model load
    device = pick_device(cfg.device)
    net = model if model is not None else get_model(cfg.model, cfg.weights, device)
    used = given if given is not None else build_objective(cfg, net, loaded.rgb)
    if cfg.param == "fft":
        result, precision = _render(net, used, cfg, loaded, callback), "fp32"
    else:
        region = build_region_objective(cfg, net, loaded.rgb)
        dreamer = Dreamer(net, used, cfg, device, region=region)
        result, precision = dreamer.run(loaded.rgb, callback, mask=mask), dreamer.precision
    out = to_pil(result, loaded)
    out.info["inceptionism"] = json.dumps(settings_record(cfg, net, used, precision), sort_keys=True)
    return out


def _start_image(image: ImageLike | None, cfg: DreamConfig) -> LoadedImage:
    """The input, or the seeded noise of ``cfg.noise``: one or the other."""
    if image is None:
        if cfg.noise is None:
            raise ConfigError("no input image: give one, or a size to start from noise (--noise 512x512)")
        return load_image(noise_start(noise_size(cfg.noise), cfg.seed), max_pixels=cfg.max_pixels)
    if cfg.noise is not None:
        raise ConfigError("--noise starts from noise instead of an input image: give one or the other")
    return load_image(image, max_pixels=cfg.max_pixels)


def _mask(cfg: DreamConfig, loaded: LoadedImage) -> torch.Tensor | None:
    """The config's mask at the input's size; refused if the file is not the one recorded settings name."""
    if cfg.mask is None:
        return None
    recorded = cfg.extra.get(MASK_SHA256)
    if recorded is not None and Path(cfg.mask).is_file() and recorded != file_sha256(cfg.mask):
        raise ConfigError(
            f"the mask {cfg.mask} is not the file these settings were made with (its SHA-256 differs); "
            "give --mask again to use it as it is now"
        )
    width, height = loaded.size
    return config_mask(cfg, height, width, note=print_note)


def _render(
    model: DreamModel, objective: Objective, cfg: DreamConfig, loaded: LoadedImage, callback: Callback | None
) -> torch.Tensor:
    """``--param fft``: lucid's render from noise at the noise's size, ``cfg.steps`` Adam steps, seeded by
    ``cfg.seed``; progress reported as one octave's :class:`Progress`."""
    h, w = loaded.rgb.shape[-2:]

    def report(p: RenderProgress) -> None:
        assert callback is not None
        work = h * w
        callback(
            Progress(
                octave=1,
                octaves=1,
                step=p.step,
                steps=p.steps,
                done=p.step,
                total=p.steps,
                score=p.score,
                size=(h, w),
                tile_size=max(h, w),
                elapsed=p.elapsed,
                work_done=p.step * work,
                work_total=p.steps * work,
            )
        )

    hook = report if callback is not None else None
    return render(model, objective, (h, w), param="fft", steps=cfg.steps, seed=cfg.seed, callback=hook)


__all__ = ["dream", "get_model", "make_config", "pick_precision", "settings_record"]
