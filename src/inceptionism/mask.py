"""Spatial masks: where, and how strongly, to dream.

A mask is a grayscale image read as a (1, 1, H, W) float tensor in [0, 1] at the input's size: white dreams at
full strength, black not at all, grey in between. Two uses:

* strength: each step is scaled per pixel (:func:`apply_mask_to_step`) and the result is blended back onto the
  input (:func:`blend_final`), so a black pixel comes out exactly as it went in;
* regions: a second objective dreams where the mask is white and the default one where it is black; their two
  gradients are each normalised over their own region and blended (:func:`blend_gradients`).
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageOps, UnidentifiedImageError

from inceptionism.errors import ConfigError
from inceptionism.io.messages import reason, show
from inceptionism.io.read import DEFAULT_MAX_PIXELS, pillow_limits
from inceptionism.transforms import GRAD_NORMS, laplacian_normalize, resize

MaskSource = str | os.PathLike[str] | Image.Image | np.ndarray | torch.Tensor
Note = Callable[[str], None]

# An RGB mask counts as grey when its channels differ by at most this many 8-bit levels: JPEG's chroma
# subsampling leaves a level or two of colour noise in a grey picture saved as RGB.
GREY_TOLERANCE = 2 / 255
_GREY16 = frozenset({"I;16", "I;16L", "I;16B", "I;16N", "I"})
_LUMA = np.array([0.299, 0.587, 0.114])  # Rec. 601, as Pillow's RGB → L


def print_note(message: str) -> None:
    """Print a note line on stderr, as the CLI does."""
    print(f"inceptionism: note: {message}", file=sys.stderr)


def _open(path: Path) -> Image.Image:
    """Open and decode a mask file, upright; every failure is a ConfigError naming the file."""
    shown = show(path)
    if not path.exists():
        raise ConfigError(f"mask {shown} does not exist; check the path")
    if path.is_dir():
        raise ConfigError(f"mask {shown} is a folder; pass a grayscale image file")
    with pillow_limits():  # truncated files fail; our own size limit instead of Pillow's
        try:
            im = Image.open(path)
            pixels = im.width * im.height
            if pixels <= DEFAULT_MAX_PIXELS:
                im.load()
        except UnidentifiedImageError:
            raise ConfigError(
                f"mask {shown} is not an image Pillow can read; pass a grayscale PNG, TIFF or JPEG"
            ) from None
        except (OSError, SyntaxError, ValueError, EOFError, IndexError) as exc:
            raise ConfigError(f"cannot read mask {shown}: {reason(exc)}") from None
    if pixels > DEFAULT_MAX_PIXELS:
        im.close()
        raise ConfigError(
            f"mask {shown} is {im.width}×{im.height}, over {DEFAULT_MAX_PIXELS:,} pixels; shrink it to the input's size"
        )
    return _upright(im)


def _upright(im: Image.Image) -> Image.Image:
    """The image turned as its EXIF orientation says, like the input (unreadable EXIF: as stored)."""
    try:
        out = ImageOps.exif_transpose(im)
    except (OSError, SyntaxError, ValueError, KeyError, TypeError, IndexError):
        return im
    return im if out is None else out


def _from_colour(rgb: np.ndarray, what: str) -> np.ndarray:
    """(H, W, 3) floats in [0, 1] whose channels are equal (within :data:`GREY_TOLERANCE`) → their luma."""
    spread = rgb.max(axis=2) - rgb.min(axis=2)
    if spread.size and spread.max() > GREY_TOLERANCE + 1e-9:
        y, x = np.unravel_index(int(np.argmax(spread)), spread.shape)
        r, g, b = (round(float(v) * 255) for v in rgb[y, x])
        raise ConfigError(
            f"{what} must be grayscale, but it has colour (pixel x={x}, y={y} is RGB {r},{g},{b}); "
            "save it as a grayscale image"
        )
    grey: np.ndarray = rgb @ _LUMA
    return grey


def _from_pil(im: Image.Image, what: str) -> np.ndarray:
    """A PIL image → (H, W) float64 in [0, 1]. Grey modes as they are, alpha ignored; colour modes only if grey."""
    mode = im.mode
    if mode in _GREY16:
        return np.clip(np.asarray(im).astype(np.float64), 0, 65535) / 65535
    if mode == "F":
        return _checked_floats(np.asarray(im, dtype=np.float64), what)
    if mode in ("1", "L", "LA", "La"):
        return np.asarray(im.convert("L"), dtype=np.float64) / 255
    rgb = np.asarray(im.convert("RGB"), dtype=np.float64) / 255
    return _from_colour(rgb, what)


def _checked_floats(values: np.ndarray, what: str) -> np.ndarray:
    if not np.all(np.isfinite(values)):
        raise ConfigError(f"{what} holds NaN or infinite values; pass values in [0, 1]")
    if values.size and (values.min() < -1e-6 or values.max() > 1 + 1e-6):
        raise ConfigError(
            f"{what} has values from {values.min():.4g} to {values.max():.4g}; a float mask must be in [0, 1]"
        )
    clipped: np.ndarray = np.clip(values, 0, 1)
    return clipped


def _from_array(array: np.ndarray, what: str) -> np.ndarray:
    """(H, W), (H, W, 1), (H, W, 3) or (H, W, 4) array of bool, uint8, uint16 or float in [0, 1] → (H, W)."""
    if array.ndim == 3 and array.shape[2] in (1, 2):
        array = array[:, :, 0]  # grey, or grey and alpha
    elif array.ndim == 3 and array.shape[2] == 4:
        array = array[:, :, :3]  # alpha ignored
    if not (array.ndim == 2 or (array.ndim == 3 and array.shape[2] == 3)) or 0 in array.shape:
        raise ConfigError(f"{what} has shape {array.shape}; pass an H×W grayscale array")
    if array.dtype == np.bool_:
        values = array.astype(np.float64)
    elif array.dtype == np.uint8:
        values = array.astype(np.float64) / 255
    elif array.dtype == np.uint16:
        values = array.astype(np.float64) / 65535
    elif np.issubdtype(array.dtype, np.floating):
        values = _checked_floats(array.astype(np.float64), what)
    else:
        raise ConfigError(f"{what} has dtype {array.dtype}; pass bool, uint8, uint16 or float (0-1)")
    return values if values.ndim == 2 else _from_colour(values, what)


def _read(source: MaskSource) -> tuple[np.ndarray, str]:
    """Any supported source → ((H, W) float64 in [0, 1], how to name it in messages)."""
    if isinstance(source, (str, os.PathLike)):
        what = f"mask {show(source)}"
        with _open(Path(source)) as im:
            return _from_pil(im, what), what
    if isinstance(source, Image.Image):
        return _from_pil(_upright(source), "mask"), "mask"
    if isinstance(source, torch.Tensor):
        t = source.detach().cpu()
        while t.dim() > 2 and t.shape[0] == 1:
            t = t[0]  # (1, 1, H, W) or (1, H, W) → (H, W)
        if t.dim() == 3 and t.shape[0] == 3:
            t = t.permute(1, 2, 0)  # a grey (3, H, W) image
        return _from_array(t.double().numpy() if t.is_floating_point() else t.numpy(), "mask tensor"), "mask"
    if isinstance(source, np.ndarray):
        return _from_array(source, "mask array"), "mask"
    raise ConfigError(f"cannot read a mask from a {type(source).__name__}; pass a path, PIL image, array or tensor")


def load_mask(source: MaskSource, size: tuple[int, int], note: Note | None = print_note) -> torch.Tensor:
    """Read a grayscale mask and fit it to an input of ``size = (h, w)``: (1, 1, h, w) float32 in [0, 1].

    ``source``: a file (modes 1, L, LA, I;16, I, F; RGB/P/… only when grey), a PIL image, an (H, W) array
    (bool, uint8, uint16, float in [0, 1]) or tensor. Alpha is ignored. A mask of another size is resized
    (bilinear, antialiased when shrinking) and ``note`` is told so in one line. Every problem — an unreadable
    file, a coloured image, values out of range — raises :class:`ConfigError` naming the mask.
    """
    values, what = _read(source)
    mask = torch.from_numpy(np.ascontiguousarray(values, dtype=np.float32))[None, None]
    h, w = size
    mh, mw = values.shape
    if (mh, mw) != (h, w):
        mask = resize(mask, (h, w)).clamp_(0.0, 1.0)
        if note is not None:
            stretched = "; stretched: its aspect ratio differs" if abs(mw * h - mh * w) > 0.01 * mh * w else ""
            note(f"{what} {mw}×{mh} resized to the input's {w}×{h}{stretched}")
    return mask


def _check_mask(mask: torch.Tensor, like: torch.Tensor) -> None:
    if mask.dim() != 4 or mask.shape[:2] != (1, 1) or mask.shape[-2:] != like.shape[-2:]:
        raise ValueError(f"mask must be (1, 1, {like.shape[-2]}, {like.shape[-1]}), got {tuple(mask.shape)}")


def mask_at(mask: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """The (1, 1, H, W) mask at an octave's ``size = (h, w)``, values kept in [0, 1]."""
    if tuple(mask.shape[-2:]) == tuple(size):
        return mask
    return resize(mask, size).clamp_(0.0, 1.0)


def apply_mask_to_step(step: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """A step (B, C, H, W) scaled per pixel by ``mask`` (1, 1, H, W) in [0, 1]: zero where the mask is black.

    Scale the step, not the raw gradient: the gradient's normalisation must see the whole gradient, else a
    mostly black mask would blow up the step in its few white pixels.
    """
    _check_mask(mask, step)
    return step * mask.to(step.dtype)


def blend_final(original: torch.Tensor, dream: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """``original + mask * (dream - original)``, exactly ``original`` where the mask is 0 (and ``dream`` where
    it is 1). ``original``, ``dream``: (B, C, H, W); ``mask``: (1, 1, H, W) in [0, 1]."""
    if original.shape != dream.shape:
        raise ValueError(f"original {tuple(original.shape)} and dream {tuple(dream.shape)} differ in shape")
    _check_mask(mask, original)
    # lerp computes start + w * (end - start) for w < 0.5 (exact at 0) and end - (1 - w) * (end - start) above
    return torch.lerp(original, dream.to(original.dtype), mask.to(original.dtype))


def _region_normalized(g: torch.Tensor, weight: torch.Tensor, method: str) -> torch.Tensor:
    """``g * weight``, ``g`` scaled so its size over the region (``weight``, (1, 1, H, W)) is 1: its weighted mean
    absolute value, or its weighted std for ``"std"``."""
    total = weight.sum()
    if total == 0:
        return torch.zeros_like(g)
    n = total * g.shape[1]
    if method == "std":
        mean = (g * weight).sum() / n
        size = ((g - mean).square() * weight).sum().div(n).sqrt()
    elif method in ("mean_abs", "laplacian"):
        if method == "laplacian":
            g = laplacian_normalize(g)
        size = (g.abs() * weight).sum() / n
    else:
        raise ValueError(f"unknown gradient normalisation {method!r}; choose one of {', '.join(GRAD_NORMS)}")
    return g * (weight / (size + 1e-8))


def blend_gradients(inside: torch.Tensor, outside: torch.Tensor, mask: torch.Tensor, method: str) -> torch.Tensor:
    """One step's direction from two objectives' gradients (1, 3, H, W): ``inside`` where the mask (1, 1, H, W)
    is white, ``outside`` where it is black, mixed in between.

    Each gradient is normalised by ``method`` over its own region (weighted by ``mask`` or ``1 - mask``) before
    the blend, so both regions dream at the same strength whatever their layers' gradient sizes. The result is
    already normalised: the step is ``clamp(image + step_size * blend, 0, 1)``, without normalising again.
    """
    if inside.shape != outside.shape:
        raise ValueError(f"gradients differ in shape: {tuple(inside.shape)} and {tuple(outside.shape)}")
    _check_mask(mask, inside)
    m = mask.to(inside.dtype)
    return _region_normalized(inside, m, method) + _region_normalized(outside, 1 - m, method)
