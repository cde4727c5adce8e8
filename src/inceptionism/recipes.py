"""Objectives from settings: a :class:`DreamConfig`'s layers, channels, classes, guide and priors, or its
``objective`` expression, as one :class:`~inceptionism.objectives.Objective` checked against the model.

Precedence: ``config.objective``, when set, is the whole objective (a picture's settings record it, next to the
fields that made it); otherwise the fields build it. Options given on top of loaded settings
(:func:`apply_overrides`) that build an objective replace a recorded expression.

Data-dependent choices are made once, before the run: ``NAME[topK]`` picks the k strongest channels on the
input image, and ``guide(NAME)`` holds the guide image's features; both images are first fitted so that their
long side is between the model's native size and :data:`FEATURE_SIDE` pixels.
"""

from __future__ import annotations

import weakref
from collections.abc import Mapping
from typing import Any

import torch

from inceptionism.config import DreamConfig, parse_layers
from inceptionism.errors import ConfigError, ImageError
from inceptionism.models import DreamModel
from inceptionism.objectives import (
    Context,
    LayerFeatures,
    Objective,
    channels,
    class_logit,
    guide,
    l2pull,
    layer,
    parse,
    split_channels,
    top_channels,
    tv,
    weighted_sum,
)
from inceptionism.transforms import resize

FEATURE_SIDE = 512  # long side, in pixels, of the guide and of the image top-k channels are chosen on
CUSTOM_OBJECTIVE = "custom_objective"  # extra: the description of a Python objective that settings cannot hold
GUIDE_SHA256 = "guide_sha256"  # extra: the guide file's digest, checked when settings are reused
MASK_SHA256 = "mask_sha256"  # extra: the mask file's digest, likewise
# What --l2-pull 1 weighs l2pull() by: a mean squared difference in [0, 1]² is tiny beside a layer's l2, so 1 is a
# light pull, 10 a strong one and 100 all but holds the input (l2pull() in an expression takes raw weights).
L2_PULL_UNIT = 1e4
# Fields that build an objective; given on top of settings that record an expression, they replace it.
OBJECTIVE_FIELDS = ("layers", "loss", "classes", "tv", "l2_pull")


def build_objective(config: DreamConfig, model: DreamModel, image: torch.Tensor | None = None) -> Objective:
    """The config's objective for ``model``, checked by one small forward pass (unknown layers, channels out of
    range, class indices past the classifier fail here, before any work).

    ``image``: the input (1, 3, H, W) in [0, 1]; needed only for ``NAME[topK]`` channels.
    """
    custom = config.extra.get(CUSTOM_OBJECTIVE)
    if custom is not None and config.objective is None:
        raise ConfigError(
            f"these settings come from a dream with a custom Python objective ({custom}), which settings cannot "
            "hold; choose one with --objective or --layers"
        )
    image_features = layer_features(model, image) if image is not None else None
    guide_features = _guide_features(config, model) if config.guide else None
    if config.objective is not None:
        obj = _from_expression(config.objective, image_features, guide_features)
    else:
        obj = objective_from_fields(config, model, image_features, guide_features)
    check_objective(obj, model)
    return obj


def _from_expression(
    text: str, image_features: LayerFeatures | None, guide_features: LayerFeatures | None
) -> Objective:
    """``text`` parsed; a guide image that no ``guide(LAYER)`` term reads is an error, not silently unused."""
    if guide_features is None:
        return parse(text, image_features=image_features)
    features, asked = guide_features, []

    def guide_source(name: str) -> torch.Tensor:
        asked.append(name)
        return features(name)

    obj = parse(text, image_features=image_features, guide_features=guide_source)
    if not asked:
        raise ConfigError("a guide image is given, but the objective has no guide(LAYER) term to use it")
    return obj


def objective_from_fields(
    config: DreamConfig,
    model: DreamModel,
    image_features: LayerFeatures | None = None,
    guide_features: LayerFeatures | None = None,
) -> Objective:
    """``layers`` (with channels and weights; the model's defaults when no layer, class or guide is given) as
    ``loss`` terms, or as guide terms when a guide is given, plus ``classes`` and ``tv``."""
    items = parse_layers(config.layers)
    if not items and (config.guide or not config.classes):
        items = [(name, 1.0) for name in model.spec.default_layers]
    terms: list[tuple[float, Objective]] = []
    for text, weight in items:
        name, selection = split_channels(text)
        if guide_features is not None:
            if selection is not None:
                raise ConfigError(f"{text}: a guided dream uses whole layers; leave out the channels")
            terms.append((weight, guide(name, guide_features(name))))
        elif selection is None:
            terms.append((weight, layer(name, config.loss)))
        elif selection.top is None:
            terms.append((weight, channels(name, selection, config.loss)))
        elif image_features is None:
            raise ConfigError(f"{text} chooses channels on the input image: pass it to build_objective")
        else:
            terms.append((weight, top_channels(name, selection.top, image_features(name), config.loss)))
    terms += [(1.0, class_logit(c)) for c in config.classes]
    if config.tv:
        terms.append((config.tv, tv()))
    if config.l2_pull:
        terms.append((config.l2_pull * L2_PULL_UNIT, l2pull()))
    return weighted_sum(terms)


def build_region_objective(
    config: DreamConfig, model: DreamModel, image: torch.Tensor | None = None
) -> Objective | None:
    """The objective dreamt where the mask is white (``config.mask_layers``, with the config's loss, ``tv`` and
    ``l2_pull``), checked like :func:`build_objective`; None without mask layers. ``image`` as there."""
    if not config.mask_layers:
        return None
    region = config.replace(layers=config.mask_layers, classes=(), guide=None, objective=None)
    image_features = layer_features(model, image) if image is not None else None
    obj = objective_from_fields(region, model, image_features)
    check_objective(obj, model)
    return obj


def check_objective(obj: Objective, model: DreamModel) -> None:
    """Run ``obj`` once on a small random image (no gradient): its layers must exist and its channels and
    classes fit them. Raises :class:`ConfigError` naming what does not fit.

    An expression that passed on a network passes again: it is remembered per network (while the network
    lives), so sequences that dream frame after frame check it once."""
    if not obj.layers:
        raise ConfigError(
            f"the objective {obj.description} reads no layer of the network, only the image; add one, e.g. "
            f"l2({model.spec.default_layers[0]})"
        )
    checked = _CHECKED.setdefault(model.module, set())
    if obj.expression is not None and obj.expression in checked:
        return
    probe_objective(obj, model)
    if obj.expression is not None:
        checked.add(obj.expression)


def probe_objective(obj: Objective, model: DreamModel) -> None:
    """``obj`` on a random image of the model's native size (no gradient; the image is its own original)."""
    extractor = model.extractor(obj.layers, fast=False)
    size = model.spec.native_size
    probe = torch.rand(1, 3, size, size, generator=torch.Generator().manual_seed(0)).to(_device(model))
    with torch.no_grad():
        obj(Context(extractor(probe), probe, probe))


# Expressions check_objective passed, per network module (weakly held: a freed network's entry goes with it).
_CHECKED: weakref.WeakKeyDictionary[torch.nn.Module, set[str]] = weakref.WeakKeyDictionary()


def layer_features(model: DreamModel, image: torch.Tensor) -> LayerFeatures:
    """``name → activations (1, C, h, w)`` (fp32, no gradient) of ``image`` (1, 3, H, W) in [0, 1], fitted to
    :func:`fit_side`; computed on first use of each layer, then kept."""
    x = fit_side(image, model.spec.native_size).to(_device(model), torch.float32)
    cache: dict[str, torch.Tensor] = {}

    def features(name: str) -> torch.Tensor:
        if name not in cache:
            with torch.no_grad():
                cache[name] = model.extractor((name,), fast=False)(x)[name].float()
        return cache[name]

    return features


def fit_side(image: torch.Tensor, native: int, largest: int = FEATURE_SIDE) -> torch.Tensor:
    """``image`` (1, 3, H, W) resized (aspect kept) so its long side is between ``native`` and ``largest``."""
    h, w = image.shape[-2:]
    long_side = max(h, w)
    target = min(max(long_side, native), largest)
    if target == long_side:
        return image
    scale = target / long_side
    return resize(image, (max(1, round(h * scale)), max(1, round(w * scale))))


def _guide_features(config: DreamConfig, model: DreamModel) -> LayerFeatures:
    from inceptionism.io import file_sha256, load_image

    assert config.guide is not None
    try:
        loaded = load_image(config.guide, max_pixels=config.max_pixels)
    except ImageError as e:
        raise ImageError(f"guide image: {e}") from None
    recorded = config.extra.get(GUIDE_SHA256)
    if recorded is not None and recorded != file_sha256(config.guide):
        raise ConfigError(
            f"the guide image {config.guide} is not the file these settings were made with (its SHA-256 differs); "
            "give --guide again to use it as it is now"
        )
    return layer_features(model, loaded.rgb)


def _device(model: DreamModel) -> torch.device:
    return next(model.module.parameters()).device


def apply_overrides(base: DreamConfig, changes: Mapping[str, Any]) -> DreamConfig:
    """``base`` with ``changes`` (not yet validated): explicit settings on top of loaded ones.

    Changes that build an objective (:data:`OBJECTIVE_FIELDS`) replace an expression recorded in ``base``; given
    together with an ``objective`` expression they are an error (one or the other). A new guide drops the old
    guide's recorded digest.
    """
    builds = [k for k in OBJECTIVE_FIELDS if k in changes]
    extra = dict(changes.get("extra", base.extra))
    values = dict(changes)
    if changes.get("objective") is not None and builds:
        raise ConfigError(f"--objective replaces --{builds[0].replace('_', '-')}: give one or the other")
    if builds or "objective" in changes:
        extra.pop(CUSTOM_OBJECTIVE, None)
        if "objective" not in changes:
            values["objective"] = None
    if "guide" in changes:
        extra.pop(GUIDE_SHA256, None)
    if "mask" in changes:
        extra.pop(MASK_SHA256, None)
    return base.replace(**values, extra=extra)
