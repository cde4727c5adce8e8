"""The channel atlas: one small visualisation from noise per channel of a layer, in a labelled grid.

Users pick channels by eye: each tile's label is the exact layer syntax that selects that channel
(``--layers 'block12[7]'``). Channels render as batches (one forward pass visualises :data:`CHUNK` of them);
the chunk size is fixed, so the same settings give the same atlas on any machine.
"""

from __future__ import annotations

import math
import re
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from PIL import Image, ImageDraw, ImageFont
from tqdm import tqdm

from inceptionism import __version__
from inceptionism.errors import ConfigError
from inceptionism.models import DreamModel
from inceptionism.models.weights import weights_identity
from inceptionism.render import LR, STANDARD, RenderProgress, Transforms, channel_batch, render

ATLAS_CHANNELS = 64  # channels shown when none are asked for: the layer's first ones
ATLAS_SIZE = 128
ATLAS_STEPS = 128
CHUNK = 16  # channels per forward pass: bounds memory (about 16 × a 144-px image's activations and gradients)

BACKGROUND = (20, 20, 20)
TEXT = (235, 235, 235)
GAP = 4  # pixels between tiles and around the grid
FONT_SIZE = 12


def parse_channels(text: str | None, count: int, layer: str) -> range:
    """``"A:B"`` (end-exclusive), ``"A:"``, ``":B"``, ``":"`` (all) or ``"N"`` → channels of a ``count``-channel layer.

    ``None`` gives the first :data:`ATLAS_CHANNELS` (or all, if fewer). Out-of-range or empty: :class:`ConfigError`.
    """
    if text is None:
        return range(min(ATLAS_CHANNELS, count))
    m = re.fullmatch(r"\s*(\d*)\s*(:?)\s*(\d*)\s*", text)
    if m is None or (not m.group(2) and not m.group(1)):
        raise ConfigError(f"bad --channels {text!r}: expected A:B (end-exclusive, e.g. 0:64), A: , :B or N")
    start = int(m.group(1)) if m.group(1) else 0
    stop = (int(m.group(3)) if m.group(3) else count) if m.group(2) else start + 1
    if start >= count or stop > count:
        raise ConfigError(f"--channels {text} is out of range: {layer} has {count} channels, numbered 0 to {count - 1}")
    if stop <= start:
        raise ConfigError(f"--channels {text} is empty: the end is exclusive, e.g. {start}:{start + 1}")
    return range(start, stop)


def channel_count(model: DreamModel, layer: str) -> int:
    """How many channels ``layer`` has; :class:`ConfigError` for an unknown layer or one with channels given."""
    if "[" in layer:
        name = layer.partition("[")[0]
        raise ConfigError(f"give the atlas a layer without channels: {name!r}, and pick channels with --channels")
    count = model.layer_info([layer])[0].channels
    if count == 0:
        raise ConfigError(f"layer {layer!r} of {model.name} gives no tensor; pick one `inceptionism layers` lists")
    return count


def atlas_settings(
    model: DreamModel, layer: str, channels: Sequence[int], *, size: int, steps: int, param: str, seed: int
) -> dict[str, Any]:
    """What is written into an atlas file so it can be made again."""
    listed = list(channels)
    contiguous = listed == list(range(listed[0], listed[-1] + 1)) if listed else False
    return {
        "command": "atlas",
        "version": __version__,
        "model": model.name,
        **weights_identity(model.source),  # the file's name and SHA-256, never its folder
        "layer": layer,
        "channels": f"{listed[0]}:{listed[-1] + 1}" if contiguous else listed,
        "size": size,
        "steps": steps,
        "param": param,
        "lr": LR,
        "seed": seed,
        "chunk": CHUNK,
    }


def channel_label(layer: str, index: int) -> str:
    """The layer syntax that selects one channel, as a user types it: ``block12[7]``."""
    return f"{layer}[{index}]"


@dataclass(frozen=True)
class AtlasProgress:
    """Where an atlas is: after every step of every chunk. ``channels``: the chunk being rendered."""

    done: int  # steps done in all chunks
    total: int
    channels: Sequence[int]
    score: float  # the chunk's mean


AtlasCallback = Callable[[AtlasProgress], None]


def render_channels(
    model: DreamModel,
    layer: str,
    channels: Sequence[int],
    *,
    size: int = ATLAS_SIZE,
    steps: int = ATLAS_STEPS,
    param: str = "fft",
    lr: float = LR,
    seed: int = 0,
    chunk: int = CHUNK,
    transforms: Transforms = STANDARD,
    callback: AtlasCallback | None = None,
) -> torch.Tensor:
    """One visualisation per channel: (N, 3, size, size) in [0, 1], N = len(channels), in their order.

    Renders ``chunk`` channels per batch; chunk ``k`` is seeded with ``seed + k``. ``callback`` gets an
    :class:`AtlasProgress` after every step.
    """
    if chunk < 1:
        raise ValueError(f"chunk must be at least 1, got {chunk}")
    indices = list(channels)
    tiles = []
    total = math.ceil(len(indices) / chunk) * steps
    for k, first in enumerate(range(0, len(indices), chunk)):
        part = indices[first : first + chunk]

        def relay(p: RenderProgress, offset: int = k * steps, part: list[int] = part) -> None:
            if callback is not None:
                callback(AtlasProgress(offset + p.step, total, part, p.score))

        out = render(
            model, channel_batch(layer, part), (size, size), param=param, steps=steps, lr=lr, seed=seed + k,
            batch=len(part), transforms=transforms, callback=relay,
        )  # fmt: skip
        tiles.append(out)
    return torch.cat(tiles) if tiles else torch.empty(0, 3, size, size)


class AtlasBar:
    """A progress bar on stderr for :func:`atlas`: ``with AtlasBar() as bar: atlas(..., callback=bar)``."""

    def __init__(self, enabled: bool = True) -> None:
        self.enabled = enabled
        self._bar: tqdm | None = None

    def __enter__(self) -> AtlasBar:
        return self

    def __exit__(self, *exc: object) -> None:
        if self._bar is not None:
            self._bar.close()

    def __call__(self, p: AtlasProgress) -> None:
        if not self.enabled:
            return
        if self._bar is None:
            self._bar = tqdm(total=p.total, file=sys.stderr, unit="step", dynamic_ncols=True, leave=True)
        self._bar.set_description(f"channels {p.channels[0]}–{p.channels[-1]}", refresh=False)
        self._bar.set_postfix(score=f"{p.score:.3g}", refresh=False)
        self._bar.update(1)


Font = ImageFont.FreeTypeFont | ImageFont.ImageFont


def _font(size: int) -> Font:
    try:
        return ImageFont.load_default(size=size)  # Pillow's built-in scalable font (needs FreeType)
    except (TypeError, OSError, ImportError):
        return ImageFont.load_default()


def _text_width(draw: ImageDraw.ImageDraw, text: str, font: Font) -> int:
    left, _, right, _ = draw.textbbox((0, 0), text, font=font)
    return math.ceil(right - left)


def atlas_grid(
    tiles: torch.Tensor, labels: Sequence[str], *, title: str = "", columns: int | None = None
) -> Image.Image:
    """Lay out ``tiles`` (N, 3, s, s) in [0, 1] as an RGB grid, each with its label centred under it.

    ``columns``: default ⌈√N⌉. Each cell is ``max(s, widest label)`` wide and ``s`` plus a label line high;
    ``title`` (optional) is a line above the grid.
    """
    n, _, th, tw = tiles.shape
    if n != len(labels):
        raise ValueError(f"{n} tiles but {len(labels)} labels")
    if n == 0:
        raise ValueError("no tiles to lay out")
    cols = columns or math.ceil(math.sqrt(n))
    rows = math.ceil(n / cols)
    font = _font(FONT_SIZE)
    probe = ImageDraw.Draw(Image.new("RGB", (1, 1)))
    label_w = max(_text_width(probe, text, font) for text in labels)
    line = FONT_SIZE + 6
    cell_w, cell_h = max(tw, label_w + 4), th + line
    title_h = line + GAP if title else 0
    width = GAP + cols * (cell_w + GAP)
    height = GAP + title_h + rows * (cell_h + GAP)
    if title:
        width = max(width, _text_width(probe, title, font) + 2 * GAP)
    sheet = Image.new("RGB", (width, height), BACKGROUND)
    draw = ImageDraw.Draw(sheet)
    if title:
        draw.text((GAP, GAP), title, fill=TEXT, font=font)
    pixels = (tiles.clamp(0, 1) * 255).round().to(torch.uint8).permute(0, 2, 3, 1).cpu().numpy()
    for i, (tile, text) in enumerate(zip(pixels, labels)):
        r, c = divmod(i, cols)
        x = GAP + c * (cell_w + GAP)
        y = GAP + title_h + r * (cell_h + GAP)
        sheet.paste(Image.fromarray(np.ascontiguousarray(tile)), (x + (cell_w - tw) // 2, y))
        draw.text((x + cell_w / 2, y + th + line / 2), text, fill=TEXT, font=font, anchor="mm")
    return sheet


def atlas(
    model: DreamModel,
    layer: str,
    channels: Sequence[int] | None = None,
    *,
    size: int = ATLAS_SIZE,
    steps: int = ATLAS_STEPS,
    param: str = "fft",
    lr: float = LR,
    seed: int = 0,
    callback: AtlasCallback | None = None,
) -> Image.Image:
    """The labelled atlas of ``layer``'s ``channels`` (default: its first :data:`ATLAS_CHANNELS`) as a PIL image.

    Unknown layers and out-of-range channels raise :class:`ConfigError` before any work.
    """
    count = channel_count(model, layer)
    picked = list(parse_channels(None, count, layer) if channels is None else channels)
    bad = [c for c in picked if not 0 <= c < count]
    if not picked:
        raise ConfigError("no channels to show; pick some, e.g. --channels 0:16")
    if bad:
        raise ConfigError(f"channel {bad[0]} is out of range: {layer} has {count} channels, numbered 0 to {count - 1}")
    tiles = render_channels(
        model, layer, picked, size=size, steps=steps, param=param, lr=lr, seed=seed, callback=callback
    )
    title = f"{model.name} {layer}: {len(picked)} of {count} channels, {param}, {steps} steps, seed {seed}"
    return atlas_grid(tiles, [channel_label(layer, c) for c in picked], title=title)
