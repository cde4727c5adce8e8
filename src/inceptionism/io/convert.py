"""Pixel modes: PIL images <-> float arrays, and the engine's result back to the input's mode.

Mode table (source mode after EXIF transpose -> mode returned by :func:`to_pil`):

==================================  ===================================================================
source                              result
==================================  ===================================================================
``RGB`` (and ``RGBX``, ``YCbCr``,   ``RGB``
``LAB``, ``HSV``)
16-bit RGB / RGBA (PNG, TIFF,       ``RGB`` / ``RGBA`` at 8 bits, carrying the 16-bit pixels in
``uint16`` arrays)                  ``info[HIGH_BIT_KEY]`` for :func:`~inceptionism.io.save_image`
``RGBA`` (and ``RGBa``, ``PA``)     ``RGBA``, the original alpha re-attached exactly
``L``, ``1``                        ``L``: the luminance (Rec. 601) of the result
``LA`` (and ``La``)                 ``LA``: luminance plus the original alpha
``I;16``, ``I;16L``, ``I;16B``,     ``I;16``: luminance x 65535, rounded (never through 8 bits). ``I``
``I;16N``, ``I``                    (32-bit ints, as some readers give 16-bit PNGs) is read as 0..65535,
                                    values outside clipped.
``F``                               ``F``: luminance as float in [0, 1] (the source is clipped to [0, 1])
``P`` without transparency          ``RGB``: a palette cannot hold a dream's colours
``P`` with transparency             ``RGBA``: the palette's transparency becomes a real alpha channel
``CMYK``                            ``CMYK`` (Pillow's naive RGB->CMYK; no colour management)
==================================  ===================================================================

:func:`for_format` then converts to what a file format can store: PNG has no CMYK (-> ``RGB``) and no float
(``F`` -> ``I;16``); JPEG has no alpha (``RGBA``/``LA`` are composited on white) and no 16 bits (-> ``L``);
WebP stores only ``RGB``/``RGBA``; TIFF stores every mode above.

An ICC profile in the input is carried to the output when the output's colour space (RGB, grey, CMYK) still
matches the profile's (read with ``ImageCms``); otherwise it is dropped.
"""

from __future__ import annotations

import io
from typing import TYPE_CHECKING

import numpy as np
import torch
from PIL import Image, ImageCms

if TYPE_CHECKING:
    from inceptionism.io.read import LoadedImage

GRAY16_MODES = frozenset({"I;16", "I;16L", "I;16B", "I;16N", "I"})
GRAY8_MODES = frozenset({"L", "1"})
GRAY_ALPHA_MODES = frozenset({"LA", "La"})
ALPHA_MODES = frozenset({"RGBA", "RGBa", "PA"})
_LUMA = (0.299, 0.587, 0.114)  # Rec. 601, the weights Pillow uses for RGB -> L

#: Key in a result image's ``info`` of its 16-bit pixels (``uint16`` ``HxWx3`` or ``HxWx4``), set by
#: :func:`to_pil` when the source had 16 bits per colour channel. The PIL image itself holds 8 bits (Pillow has
#: no 16-bit RGB mode); :func:`high_bit_pixels` gives the 16-bit pixels back only while they still match it.
HIGH_BIT_KEY = "inceptionism.pixels16"


def quantise(values: np.ndarray, scale: int, dtype: type[np.generic]) -> np.ndarray:
    """[0, 1] floats -> integers 0..scale, rounded to nearest (not truncated)."""
    return np.rint(np.clip(values.astype(np.float64), 0, 1) * scale).astype(dtype)


def to_u8(values: np.ndarray) -> np.ndarray:
    """[0, 1] floats -> uint8, rounded."""
    return quantise(values, 255, np.uint8)


def u16_to_u8(values: np.ndarray) -> np.ndarray:
    """uint16 -> uint8 by rounding value / 257 (65535 -> 255), the 8-bit view of 16-bit pixels."""
    return ((values.astype(np.uint32) * 255 + 32767) // 65535).astype(np.uint8)


def grey16(values: np.ndarray) -> Image.Image:
    """HxW floats in [0, 1] -> an ``I;16`` image (little-endian, whatever the host)."""
    return Image.fromarray(quantise(values, 65535, np.uint16).astype("<u2"))


def luminance(rgb: np.ndarray) -> np.ndarray:
    """HxWx3 -> HxW, Rec. 601 weights (the ones Pillow's RGB -> L uses)."""
    r, g, b = _LUMA
    return np.clip(rgb[:, :, 0] * r + rgb[:, :, 1] * g + rgb[:, :, 2] * b, 0, 1)


def split_pil(im: Image.Image) -> tuple[np.ndarray, np.ndarray | None, int]:
    """PIL image -> (rgb float32 HxWx3 in [0, 1], alpha float32 HxW or None, bit depth)."""
    mode = im.mode
    if mode in GRAY16_MODES:
        raw = np.asarray(im)
        grey = np.clip(raw.astype(np.float64), 0, 65535).astype(np.float32) / np.float32(65535)
        return np.repeat(grey[:, :, None], 3, axis=2), None, 16
    if mode == "F":
        grey = np.nan_to_num(np.asarray(im, dtype=np.float32), nan=0.0, posinf=1.0, neginf=0.0)
        return np.repeat(np.clip(grey, 0, 1)[:, :, None], 3, axis=2), None, 32
    if mode in GRAY8_MODES:
        grey = np.asarray(im.convert("L"), dtype=np.float32) / np.float32(255)
        return np.repeat(grey[:, :, None], 3, axis=2), None, 8
    if mode in GRAY_ALPHA_MODES:
        la = np.asarray(im.convert("LA"), dtype=np.float32) / np.float32(255)
        return np.repeat(la[:, :, :1], 3, axis=2), la[:, :, 1], 8
    if mode in ALPHA_MODES or (mode not in {"RGB", "CMYK"} and im.has_transparency_data):
        rgba = np.asarray(im.convert("RGBA"), dtype=np.float32) / np.float32(255)
        return rgba[:, :, :3], rgba[:, :, 3], 8
    rgb = np.asarray(im.convert("RGB"), dtype=np.float32) / np.float32(255)
    return rgb, None, 8


def icc_space(profile: bytes) -> str | None:
    """The colour space of an ICC profile ('RGB', 'GRAY', 'CMYK', ...), or None if it cannot be parsed."""
    try:
        space = ImageCms.ImageCmsProfile(io.BytesIO(profile)).profile.xcolor_space
    except (OSError, TypeError, ValueError, ImageCms.PyCMSError):
        return None
    return space.strip() or None


def icc_fits(profile: bytes | None, mode: str) -> bool:
    """Whether an ICC profile describes the colour space of an image in ``mode``."""
    if not profile:
        return False
    space = icc_space(profile)
    if mode in {"RGB", "RGBA"}:
        return space == "RGB"
    if mode in {"L", "LA", "I;16", "F", "1"}:
        return space == "GRAY"
    return mode == "CMYK" and space == "CMYK"


def _result_values(rgb: torch.Tensor, size: tuple[int, int]) -> np.ndarray:
    """(1, 3, H, W) or (3, H, W) float -> HxWx3 float32 in [0, 1] of ``size`` = (W, H) (bicubic if resized)."""
    if rgb.dim() == 3:
        rgb = rgb[None]
    if rgb.dim() != 4 or rgb.shape[0] != 1 or rgb.shape[1] != 3:
        raise ValueError(f"to_pil expects a (1, 3, H, W) or (3, H, W) tensor, got {tuple(rgb.shape)}")
    width, height = size
    tensor = torch.nan_to_num(rgb.detach().to("cpu", torch.float32), nan=0.0)
    if tuple(tensor.shape[2:]) != (height, width):
        tensor = torch.nn.functional.interpolate(
            tensor, size=(height, width), mode="bicubic", align_corners=False, antialias=True
        )
    values: np.ndarray = tensor.clamp_(0, 1)[0].permute(1, 2, 0).numpy()  # in place: the copy nan_to_num made
    return values


def _high_bit_colour(values: np.ndarray, alpha: np.ndarray | None) -> Image.Image:
    """16-bit RGB(A) result: an 8-bit PIL image carrying its 16-bit pixels in ``info[HIGH_BIT_KEY]``."""
    channels = [values] if alpha is None else [values, alpha[:, :, None]]
    pixels16 = quantise(np.concatenate(channels, axis=2), 65535, np.uint16)
    out = Image.fromarray(u16_to_u8(pixels16))
    out.info[HIGH_BIT_KEY] = pixels16
    return out


def to_pil(rgb: torch.Tensor, like: LoadedImage) -> Image.Image:
    """The engine's result -> a PIL image with ``like``'s size and mode (see the module's mode table).

    ``rgb``: float ``(1, 3, H, W)`` or ``(3, H, W)``, values clipped to ``[0, 1]``; if its size differs from
    ``like.size`` it is resized (bicubic, antialiased). Quantisation rounds to nearest. ``like.alpha`` is
    re-attached unchanged. A 16-bit colour source gives an 8-bit image that carries the 16-bit result in
    ``info[HIGH_BIT_KEY]``, which :func:`~inceptionism.io.save_image` writes to PNG and TIFF.
    """
    values = _result_values(rgb, like.size)
    alpha = None if like.alpha is None else like.alpha.detach().to("cpu", torch.float32)[0, 0].numpy()
    source = like.mode
    if source in GRAY16_MODES:
        out = grey16(luminance(values))
    elif source == "F":
        out = Image.fromarray(luminance(values).astype(np.float32))
    elif source in GRAY8_MODES or source in GRAY_ALPHA_MODES:
        grey = to_u8(luminance(values))
        if source in GRAY_ALPHA_MODES and alpha is not None:
            out = Image.fromarray(np.dstack([grey, to_u8(alpha)]))
        else:
            out = Image.fromarray(grey)
    elif source == "CMYK":
        out = Image.fromarray(to_u8(values)).convert("CMYK")
    elif like.bit_depth == 16 and source in {"RGB", "RGBA"}:
        out = _high_bit_colour(values, alpha)
    elif alpha is not None:
        out = Image.fromarray(np.dstack([to_u8(values), to_u8(alpha)]))
    else:
        out = Image.fromarray(to_u8(values))
    if like.icc_profile is not None and icc_fits(like.icc_profile, out.mode):
        out.info["icc_profile"] = like.icc_profile
    return out


def high_bit_pixels(image: Image.Image) -> np.ndarray | None:
    """The 16-bit pixels ``image`` carries (``uint16`` ``HxWx3``/``HxWx4``), or None.

    None also when the image was changed after :func:`to_pil` made it (resized, drawn on, converted): the
    16-bit pixels are only used while their 8-bit view is exactly the image's pixels.
    """
    pixels = image.info.get(HIGH_BIT_KEY)
    if not isinstance(pixels, np.ndarray) or pixels.dtype != np.uint16 or pixels.ndim != 3:
        return None
    expected_mode = {3: "RGB", 4: "RGBA"}.get(pixels.shape[2])
    if image.mode != expected_mode or pixels.shape[:2] != (image.height, image.width):
        return None
    return pixels if np.array_equal(np.asarray(image), u16_to_u8(pixels)) else None


def grey_floats(image: Image.Image) -> np.ndarray | None:
    """A 16-bit / 32-bit / float grey image as floats in [0, 1]; None for other modes."""
    if image.mode in GRAY16_MODES:
        return np.clip(np.asarray(image).astype(np.float64), 0, 65535) / 65535
    if image.mode == "F":
        return np.clip(np.nan_to_num(np.asarray(image, dtype=np.float64)), 0, 1)
    return None


def has_alpha(image: Image.Image) -> bool:
    """Whether the image has an alpha channel or palette / colour-key transparency."""
    return image.mode in ALPHA_MODES | GRAY_ALPHA_MODES or image.has_transparency_data


def on_white(image: Image.Image, mode: str) -> Image.Image:
    """Composite an image with alpha over white (``Image.alpha_composite``); ``mode`` 'RGB' or 'L'."""
    rgba = image.convert("RGBA")
    flat = Image.alpha_composite(Image.new("RGBA", rgba.size, (255, 255, 255, 255)), rgba).convert("RGB")
    return flat if mode == "RGB" else flat.convert("L")


def for_format(image: Image.Image, fmt: str) -> Image.Image:
    """Convert to a mode ``fmt`` (a Pillow format name) stores (module docstring); ``image`` itself if it fits."""
    mode = image.mode
    grey = grey_floats(image)
    if fmt in {"TIFF", "PNG"}:
        stored = {"1", "L", "LA", "RGB", "RGBA", "I;16"} | ({"CMYK", "F"} if fmt == "TIFF" else set())
        if mode in stored:
            return image
        if grey is not None:
            return grey16(grey)
        return image.convert("RGBA" if has_alpha(image) else "RGB")
    if fmt == "JPEG":
        if mode in {"L", "RGB", "CMYK"}:
            return image
        if grey is not None:
            return Image.fromarray(to_u8(grey))
        if mode in GRAY_ALPHA_MODES:
            return on_white(image, "L")
        if mode == "1":
            return image.convert("L")
        return on_white(image, "RGB") if has_alpha(image) else image.convert("RGB")
    # WEBP: RGB / RGBA only
    if mode in {"RGB", "RGBA"}:
        return image
    if grey is not None:
        return Image.fromarray(to_u8(grey)).convert("RGB")
    return image.convert("RGBA" if has_alpha(image) else "RGB")
