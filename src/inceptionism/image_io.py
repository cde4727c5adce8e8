"""Image files <-> tensors.

Reading turns a file (or an in-memory image, array or tensor) into a :class:`LoadedImage`: an RGB
float tensor of shape ``(1, 3, H, W)`` with values in ``[0, 1]``, plus the alpha channel (if any) kept
aside, the source mode and size. :func:`to_pil` turns the engine's result back into a PIL image with
the input's size and a mode that matches the input, and :func:`save_image` writes it atomically, with
the run's settings embedded as JSON.

Mode table (source mode after EXIF transpose -> mode returned by :func:`to_pil`):

==================================  ===================================================================
source                              result
==================================  ===================================================================
``RGB`` (and ``RGBX``, ``YCbCr``,   ``RGB``
``LAB``, ``HSV``)
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

:func:`save_image` then converts to what the file format can store: PNG has no CMYK (-> ``RGB``) and
no float (``F`` -> ``I;16``); JPEG has no alpha (``RGBA``/``LA`` are composited on white) and no 16
bits (-> ``L``); WebP stores only ``RGB``/``RGBA``; TIFF stores every mode above. 16-bit RGB files
(48-bit PNGs) reach us as 8-bit RGB: Pillow decodes them that way. Multi-frame files (GIF, APNG, TIFF)
are read from their first frame. Colour-key transparency (``tRNS``) on RGB/L images is ignored.

An ICC profile in the input is carried to the output when the output's colour space (RGB, grey, CMYK)
still matches the profile's; otherwise it is dropped.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import stat
import struct
import threading
import warnings
import xml.etree.ElementTree as ET
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

import numpy as np
import torch
from PIL import Image, ImageFile, ImageOps, PngImagePlugin, UnidentifiedImageError, features

from inceptionism.errors import ImageError

__all__ = [
    "DEFAULT_MAX_PIXELS",
    "SETTINGS_KEY",
    "SUPPORTED_EXTENSIONS",
    "LoadedImage",
    "check_output_path",
    "load_image",
    "read_settings",
    "save_image",
    "to_pil",
]

#: Largest image :func:`load_image` decodes unless told otherwise (100 megapixels, e.g. 10000 x 10000).
#: As a float tensor that is 100e6 x 3 x 4 bytes = 1.2 GB before the engine starts. The CLI's
#: ``--max-pixels`` raises or lowers the limit; ``None`` removes it.
DEFAULT_MAX_PIXELS = 100_000_000

#: Key of the PNG text chunk (and of the JSON object in JPEG comments / TIFF descriptions) holding
#: the settings.
SETTINGS_KEY = "inceptionism"

#: File extensions :func:`save_image` can write, and the Pillow format used for each.
SUPPORTED_EXTENSIONS: dict[str, str] = {
    ".png": "PNG",
    ".jpg": "JPEG",
    ".jpeg": "JPEG",
    ".webp": "WEBP",
    ".tif": "TIFF",
    ".tiff": "TIFF",
}

_XMP_NS = "urn:x-inceptionism:1.0/"
_GRAY16_MODES = frozenset({"I;16", "I;16L", "I;16B", "I;16N", "I"})
_GRAY8_MODES = frozenset({"L", "1"})
_GRAY_ALPHA_MODES = frozenset({"LA", "La"})
_ALPHA_MODES = frozenset({"RGBA", "RGBa", "PA"})
_LUMA = (0.299, 0.587, 0.114)  # Rec. 601, the weights Pillow uses for RGB -> L
_pillow_lock = threading.Lock()


@dataclass(frozen=True, eq=False)
class LoadedImage:
    """An image ready for the engine.

    ``rgb``: float32 tensor ``(1, 3, H, W)`` in ``[0, 1]`` (grey sources are repeated over the 3 channels).
    ``alpha``: float32 tensor ``(1, 1, H, W)`` in ``[0, 1]``, or ``None`` when the source has no transparency.
    ``mode``: the source's PIL mode after EXIF transpose (arrays and tensors get the mode they correspond to).
    ``size``: ``(W, H)``. ``path``: the file read, if any. ``bit_depth``: bits per channel of the source
    (8, 16, or 32 for float). ``icc_profile``: the source's ICC profile bytes, if any.
    Compared by identity (tensors have no single truth value).
    """

    rgb: torch.Tensor
    alpha: torch.Tensor | None
    mode: str
    size: tuple[int, int]
    path: Path | None = None
    bit_depth: int = 8
    icc_profile: bytes | None = None


# ----------------------------------------------------------------------------------------------------
# messages


def _show(path: object) -> str:
    """The path as it goes in a one-line message (control characters escaped)."""
    text = str(path)
    return text if text.isprintable() else repr(text)


def _reason(exc: BaseException) -> str:
    """An exception's message on one line."""
    text = " ".join(str(exc).split())
    return text or type(exc).__name__


# ----------------------------------------------------------------------------------------------------
# loading


@contextlib.contextmanager
def _our_pillow_limits() -> Iterator[None]:
    """Switch off Pillow's global decompression-bomb check (we do our own, with our limit) and make sure
    truncated files fail rather than being padded. Pillow only has process-wide switches, so they are
    set under a lock and restored afterwards."""
    with _pillow_lock, warnings.catch_warnings():
        warnings.simplefilter("ignore", Image.DecompressionBombWarning)
        saved = Image.MAX_IMAGE_PIXELS, ImageFile.LOAD_TRUNCATED_IMAGES
        Image.MAX_IMAGE_PIXELS = None
        ImageFile.LOAD_TRUNCATED_IMAGES = False
        try:
            yield
        finally:
            Image.MAX_IMAGE_PIXELS, ImageFile.LOAD_TRUNCATED_IMAGES = saved


def _check_pixels(width: int, height: int, max_pixels: int | None, what: str) -> None:
    if max_pixels is not None and width * height > max_pixels:
        raise ImageError(
            f"{what} is {width}x{height} = {width * height:,} pixels, more than the limit of {max_pixels:,}; "
            f"pass --max-pixels {width * height} (or max_pixels=) to allow it, or shrink the image first"
        )


def _open_file(path: Path, max_pixels: int | None) -> Image.Image:
    """Open, size-check (from the header, before decoding) and decode one image file."""
    shown = _show(path)
    try:
        st = path.stat()
    except FileNotFoundError:
        raise ImageError(f"input image {shown} does not exist; check the path") from None
    except OSError as exc:
        raise ImageError(f"cannot read input image {shown}: {_reason(exc)}") from exc
    if stat.S_ISDIR(st.st_mode):
        raise ImageError(f"input {shown} is a folder, not an image file; pass the path of an image file")
    if st.st_size == 0:
        raise ImageError(f"input image {shown} is empty (0 bytes); pass a valid image file")
    with _our_pillow_limits():
        try:
            im = Image.open(path)
        except UnidentifiedImageError:
            raise ImageError(
                f"{shown} is not an image Pillow can read; pass a PNG, JPEG, WebP, TIFF, BMP or GIF file"
            ) from None
        except PermissionError:
            raise ImageError(f"cannot read input image {shown}: permission denied; check its permissions") from None
        except Image.DecompressionBombError as exc:  # only if Pillow's own check ran anyway
            raise ImageError(
                f"input image {shown} is too large ({_reason(exc)}); pass --max-pixels to allow it"
            ) from exc
        except (OSError, SyntaxError, ValueError, EOFError) as exc:
            raise ImageError(f"cannot read input image {shown}: {_reason(exc)}; check the file") from exc
        try:
            _check_pixels(im.width, im.height, max_pixels, f"input image {shown}")
            im.load()
        except ImageError:
            im.close()
            raise
        except Image.DecompressionBombError as exc:
            im.close()
            raise ImageError(
                f"input image {shown} is too large ({_reason(exc)}); pass --max-pixels to allow it"
            ) from exc
        except (OSError, SyntaxError, ValueError, EOFError, IndexError) as exc:
            im.close()
            raise ImageError(
                f"input image {shown} is truncated or corrupt ({_reason(exc)}); re-export or re-download it"
            ) from exc
    # the pixels are decoded: check again (a few formats only know their real size once loaded)
    _check_pixels(im.width, im.height, max_pixels, f"input image {shown}")
    return im


def _upright(im: Image.Image) -> Image.Image:
    """Apply the EXIF orientation, so the pixels are stored upright (the tag is not carried to the output)."""
    try:
        out = ImageOps.exif_transpose(im)
    except (OSError, SyntaxError, ValueError, KeyError, TypeError, IndexError, struct.error):
        # unreadable EXIF: keep the pixels as stored
        return im
    return im if out is None else out


def _split_pil(im: Image.Image) -> tuple[np.ndarray, np.ndarray | None, int]:
    """PIL image -> (rgb float32 HxWx3 in [0, 1], alpha float32 HxW or None, bit depth)."""
    mode = im.mode
    alpha: np.ndarray | None = None
    if mode in _GRAY16_MODES:
        raw = np.asarray(im)
        grey = np.clip(raw.astype(np.float64), 0, 65535).astype(np.float32) / np.float32(65535)
        return np.repeat(grey[:, :, None], 3, axis=2), None, 16
    if mode == "F":
        grey = np.nan_to_num(np.asarray(im, dtype=np.float32), nan=0.0, posinf=1.0, neginf=0.0)
        return np.repeat(np.clip(grey, 0, 1)[:, :, None], 3, axis=2), None, 32
    if mode in _GRAY8_MODES:
        grey = np.asarray(im.convert("L"), dtype=np.float32) / np.float32(255)
        return np.repeat(grey[:, :, None], 3, axis=2), None, 8
    if mode in _GRAY_ALPHA_MODES:
        la = np.asarray(im.convert("LA"), dtype=np.float32) / np.float32(255)
        return np.repeat(la[:, :, :1], 3, axis=2), la[:, :, 1], 8
    if mode in _ALPHA_MODES or (mode not in {"RGB", "CMYK"} and im.has_transparency_data):
        rgba = np.asarray(im.convert("RGBA"), dtype=np.float32) / np.float32(255)
        alpha = rgba[:, :, 3]
        return rgba[:, :, :3], alpha, 8
    rgb = np.asarray(im.convert("RGB"), dtype=np.float32) / np.float32(255)
    return rgb, None, 8


def _from_pil(im: Image.Image, path: Path | None, max_pixels: int | None) -> LoadedImage:
    _check_pixels(im.width, im.height, max_pixels, "input image" if path is None else f"input image {_show(path)}")
    im = _upright(im)
    rgb, alpha, bits = _split_pil(im)
    icc = im.info.get("icc_profile")
    return LoadedImage(
        rgb=torch.from_numpy(np.ascontiguousarray(rgb.transpose(2, 0, 1)))[None],
        alpha=None if alpha is None else torch.from_numpy(np.ascontiguousarray(alpha))[None, None],
        mode=im.mode,
        size=(im.width, im.height),
        path=path,
        bit_depth=bits,
        icc_profile=icc if isinstance(icc, bytes) and icc else None,
    )


def _check_float_range(values: np.ndarray, what: str) -> np.ndarray:
    """Float values must be finite and in [0, 1] (a rounding hair outside is clipped)."""
    if not np.all(np.isfinite(values)):
        raise ImageError(f"{what} holds NaN or infinite values; pass finite values in [0, 1]")
    lo, hi = float(values.min()), float(values.max())
    if lo < -1e-6 or hi > 1 + 1e-6:
        raise ImageError(
            f"{what} has values from {lo:.4g} to {hi:.4g}; float images must be in [0, 1] "
            "(divide by 255 or 65535 first, or pass uint8/uint16)"
        )
    clipped: np.ndarray = np.clip(values, 0, 1)
    return clipped


def _from_array(array: np.ndarray, max_pixels: int | None) -> LoadedImage:
    shape_help = "pass HxW, HxWx3 or HxWx4 (also HxWx1, HxWx2)"
    if array.ndim == 2:
        array = array[:, :, None]
    if array.ndim != 3 or array.shape[2] not in (1, 2, 3, 4):
        raise ImageError(f"image array has shape {array.shape}; {shape_help}")
    height, width, channels = array.shape
    if height == 0 or width == 0:
        raise ImageError(f"image array has shape {array.shape}, with no pixels; {shape_help}")
    _check_pixels(width, height, max_pixels, "image array")
    if array.dtype == np.uint8:
        values, bits = array.astype(np.float32) / np.float32(255), 8
    elif array.dtype == np.uint16:
        values, bits = array.astype(np.float32) / np.float32(65535), 16
    elif np.issubdtype(array.dtype, np.floating):
        values, bits = _check_float_range(array.astype(np.float32), "image array"), 32
    else:
        raise ImageError(f"image array has dtype {array.dtype}; pass uint8 (0-255), uint16 (0-65535) or float (0-1)")
    colour = values[:, :, :3] if channels >= 3 else np.repeat(values[:, :, :1], 3, axis=2)
    alpha = values[:, :, channels - 1] if channels in (2, 4) else None
    if channels <= 2:
        mode = {1: "L", 2: "LA"}[channels] if bits == 8 or channels == 2 else ("I;16" if bits == 16 else "F")
    else:
        mode = "RGB" if channels == 3 else "RGBA"
    return LoadedImage(
        rgb=torch.from_numpy(np.ascontiguousarray(colour.transpose(2, 0, 1)))[None],
        alpha=None if alpha is None else torch.from_numpy(np.ascontiguousarray(alpha))[None, None],
        mode=mode,
        size=(width, height),
        bit_depth=bits,
    )


def _from_tensor(tensor: torch.Tensor, max_pixels: int | None) -> LoadedImage:
    shape = tuple(tensor.shape)
    if tensor.dim() == 3:
        tensor = tensor[None]
    if tensor.dim() != 4 or tensor.shape[0] != 1 or tensor.shape[1] != 3:
        raise ImageError(f"image tensor has shape {shape}; pass (3, H, W) or (1, 3, H, W)")
    if not tensor.is_floating_point():
        raise ImageError(f"image tensor has dtype {tensor.dtype}; pass a float tensor with values in [0, 1]")
    height, width = int(tensor.shape[2]), int(tensor.shape[3])
    if height == 0 or width == 0:
        raise ImageError(f"image tensor has shape {shape}, with no pixels; pass (3, H, W) or (1, 3, H, W)")
    _check_pixels(width, height, max_pixels, "image tensor")
    values = _check_float_range(tensor.detach().to("cpu", torch.float32).numpy(), "image tensor")
    return LoadedImage(
        rgb=torch.from_numpy(np.array(values, dtype=np.float32)),  # a copy: the caller's tensor is never touched
        alpha=None,
        mode="RGB",
        size=(width, height),
        bit_depth=32,
    )


def load_image(
    source: str | Path | Image.Image | np.ndarray | torch.Tensor,
    max_pixels: int | None = DEFAULT_MAX_PIXELS,
) -> LoadedImage:
    """Read an image into a :class:`LoadedImage` (RGB ``(1, 3, H, W)`` float32 in ``[0, 1]``, alpha aside).

    ``source``: a file path; a PIL image; an array ``HxW``, ``HxWx3`` or ``HxWx4`` of uint8 (0-255), uint16
    (0-65535) or float (0-1); or a float tensor ``(3, H, W)`` / ``(1, 3, H, W)`` in ``[0, 1]``. The EXIF
    orientation is applied. Images over ``max_pixels`` pixels (``None``: no limit) are refused from the file
    header, before decoding. Every problem raises :class:`ImageError`; the input is never modified.
    """
    if isinstance(source, (str, os.PathLike)):
        path = Path(source)
        im = _open_file(path, max_pixels)
        try:
            return _from_pil(im, path, max_pixels)
        finally:
            im.close()
    if isinstance(source, Image.Image):
        filename = getattr(source, "filename", "")
        source_path = Path(filename) if isinstance(filename, (str, os.PathLike)) and str(filename) else None
        _check_pixels(source.width, source.height, max_pixels, "input image")
        with _our_pillow_limits():
            try:
                source.load()
            except (OSError, SyntaxError, ValueError, EOFError) as exc:
                raise ImageError(
                    f"input image {_show(source_path or '(in memory)')} is truncated or corrupt "
                    f"({_reason(exc)}); re-export or re-download it"
                ) from exc
        return _from_pil(source, source_path, max_pixels)
    if isinstance(source, np.ndarray):
        return _from_array(source, max_pixels)
    if isinstance(source, torch.Tensor):
        return _from_tensor(source, max_pixels)
    raise ImageError(
        f"cannot read an image from a {type(source).__name__}; pass a path, PIL image, numpy array or torch tensor"
    )


# ----------------------------------------------------------------------------------------------------
# tensor -> PIL


def _quantise(values: np.ndarray, scale: int, dtype: type[np.generic]) -> np.ndarray:
    """[0, 1] floats -> integers 0..scale, rounded to nearest (not truncated)."""
    return np.rint(np.clip(values.astype(np.float64), 0, 1) * scale).astype(dtype)


def _grey16(values: np.ndarray) -> Image.Image:
    """HxW floats in [0, 1] -> an ``I;16`` image (little-endian, whatever the host)."""
    return Image.fromarray(_quantise(values, 65535, np.uint16).astype("<u2"))


def _luminance(rgb: np.ndarray) -> np.ndarray:
    """HxWx3 -> HxW, Rec. 601 weights (the ones Pillow's RGB -> L uses)."""
    r, g, b = _LUMA
    return np.clip(rgb[:, :, 0] * r + rgb[:, :, 1] * g + rgb[:, :, 2] * b, 0, 1)


def _icc_space(profile: bytes) -> str | None:
    """The colour space of an ICC profile ('RGB', 'GRAY', 'CMYK', ...) from its header."""
    if len(profile) < 20:
        return None
    return profile[16:20].decode("ascii", "replace").strip() or None


def _icc_fits(profile: bytes | None, mode: str) -> bool:
    if not profile:
        return False
    space = _icc_space(profile)
    if mode in {"RGB", "RGBA"}:
        return space == "RGB"
    if mode in {"L", "LA", "I;16", "F", "1"}:
        return space == "GRAY"
    return mode == "CMYK" and space == "CMYK"


def to_pil(rgb: torch.Tensor, like: LoadedImage) -> Image.Image:
    """The engine's result -> a PIL image with ``like``'s size and mode (see the module's mode table).

    ``rgb``: float ``(1, 3, H, W)`` or ``(3, H, W)``, values clipped to ``[0, 1]``; if its size differs from
    ``like.size`` it is resized (bicubic, antialiased). Quantisation rounds to nearest. ``like.alpha`` is
    re-attached unchanged.
    """
    if rgb.dim() == 3:
        rgb = rgb[None]
    if rgb.dim() != 4 or rgb.shape[0] != 1 or rgb.shape[1] != 3:
        raise ValueError(f"to_pil expects a (1, 3, H, W) or (3, H, W) tensor, got {tuple(rgb.shape)}")
    width, height = like.size
    tensor = torch.nan_to_num(rgb.detach().to("cpu", torch.float32), nan=0.0)
    if tuple(tensor.shape[2:]) != (height, width):
        tensor = torch.nn.functional.interpolate(
            tensor, size=(height, width), mode="bicubic", align_corners=False, antialias=True
        )
    values = tensor.clamp_(0, 1)[0].permute(1, 2, 0).numpy()  # HxWx3 (in place: the copy nan_to_num made)
    alpha = None if like.alpha is None else like.alpha.detach().to("cpu", torch.float32)[0, 0].numpy()
    source = like.mode
    if source in _GRAY16_MODES:
        out = _grey16(_luminance(values))
    elif source == "F":
        out = Image.fromarray(_luminance(values).astype(np.float32))
    elif source in _GRAY8_MODES or source in _GRAY_ALPHA_MODES:
        grey = _quantise(_luminance(values), 255, np.uint8)
        if source in _GRAY_ALPHA_MODES and alpha is not None:
            out = Image.fromarray(np.dstack([grey, _quantise(alpha, 255, np.uint8)]))
        else:
            out = Image.fromarray(grey)
    elif source == "CMYK":
        out = Image.fromarray(_quantise(values, 255, np.uint8)).convert("CMYK")
    elif alpha is not None:
        out = Image.fromarray(np.dstack([_quantise(values, 255, np.uint8), _quantise(alpha, 255, np.uint8)]))
    else:
        out = Image.fromarray(_quantise(values, 255, np.uint8))
    if _icc_fits(like.icc_profile, out.mode):
        out.info["icc_profile"] = like.icc_profile
    return out


# ----------------------------------------------------------------------------------------------------
# saving


def _format_for(path: Path) -> str:
    fmt = SUPPORTED_EXTENSIONS.get(path.suffix.lower())
    if fmt is None:
        wanted = ", ".join(sorted(SUPPORTED_EXTENSIONS))
        got = f"extension '{path.suffix}'" if path.suffix else "no extension"
        raise ImageError(f"cannot save {_show(path)}: {got} is not supported; use one of {wanted}")
    return fmt


def _check_folder(path: Path) -> None:
    folder = path.parent
    shown = _show(folder)
    if not folder.exists():
        raise ImageError(f"output folder {shown} does not exist; create it or choose another -o")
    if not folder.is_dir():
        raise ImageError(f"output folder {shown} is not a folder; choose another -o")
    if not os.access(folder, os.W_OK | os.X_OK):
        raise ImageError(f"output folder {shown} is not writable; choose another -o or fix its permissions")
    if path.is_dir():
        raise ImageError(f"output {_show(path)} is a folder; give a file name, e.g. {_show(path / 'dream.png')}")


def _same_file(a: Path, b: Path) -> bool:
    try:
        return os.path.samefile(a, b)
    except OSError:  # one of them does not exist (yet)
        return a.resolve() == b.resolve()


def check_writable(path: Path, input_path: Path | None = None) -> None:
    """Check that any file (e.g. a settings JSON) can be written at ``path`` and is not the input."""
    path = Path(path)
    _check_folder(path)
    if input_path is not None and _same_file(Path(input_path), path):
        raise ImageError(f"refusing to overwrite the input {_show(input_path)}; choose another file")


def check_output_path(input_path: Path | None, output_path: Path, overwrite: bool) -> None:
    """Check, before a long run, that ``output_path`` can be written (raises :class:`ImageError` if not).

    Refused: an unsupported extension; an output that is a folder; a missing or read-only output folder; the
    input file itself (same file after resolving links), unless ``overwrite``.
    """
    output_path = Path(output_path)
    _format_for(output_path)
    _check_folder(output_path)
    if input_path is not None and not overwrite and _same_file(Path(input_path), output_path):
        raise ImageError(f"refusing to overwrite the input {_show(input_path)}; pass --overwrite or choose another -o")


def _to_u8(values: np.ndarray) -> np.ndarray:
    return _quantise(values, 255, np.uint8)


def _grey_floats(image: Image.Image) -> np.ndarray | None:
    """A 16-bit / 32-bit / float grey image as floats in [0, 1]; None for other modes."""
    if image.mode in _GRAY16_MODES:
        return np.clip(np.asarray(image).astype(np.float64), 0, 65535) / 65535
    if image.mode == "F":
        return np.clip(np.nan_to_num(np.asarray(image, dtype=np.float64)), 0, 1)
    return None


def _on_white(image: Image.Image, mode: str) -> Image.Image:
    """Composite an image with alpha over white; ``mode`` 'RGB' or 'L'."""
    rgba = np.asarray(image.convert("RGBA" if mode == "RGB" else "LA"), dtype=np.float64) / 255
    colour, alpha = rgba[:, :, :-1], rgba[:, :, -1:]
    flat = _to_u8(colour * alpha + (1 - alpha))
    return Image.fromarray(flat if mode == "RGB" else flat[:, :, 0])


def _has_alpha(image: Image.Image) -> bool:
    return image.mode in _ALPHA_MODES | _GRAY_ALPHA_MODES or image.has_transparency_data


def _for_format(image: Image.Image, fmt: str) -> Image.Image:
    """Convert to a mode the format stores (see the module docstring); returns ``image`` itself if it fits."""
    mode = image.mode
    grey = _grey_floats(image)
    if fmt == "TIFF":
        if mode in {"1", "L", "LA", "RGB", "RGBA", "CMYK", "I;16", "F"}:
            return image
        if grey is not None:
            return _grey16(grey)
        return image.convert("RGBA" if _has_alpha(image) else "RGB")
    if fmt == "PNG":
        if mode in {"1", "L", "LA", "RGB", "RGBA", "I;16"}:
            return image
        if grey is not None:
            return _grey16(grey)
        return image.convert("RGBA" if _has_alpha(image) else "RGB")
    if fmt == "JPEG":
        if mode in {"L", "RGB", "CMYK"}:
            return image
        if grey is not None:
            return Image.fromarray(_to_u8(grey))
        if mode in _GRAY_ALPHA_MODES:
            return _on_white(image, "L")
        if mode == "1":
            return image.convert("L")
        return _on_white(image, "RGB") if _has_alpha(image) else image.convert("RGB")
    # WEBP: RGB / RGBA only
    if mode in {"RGB", "RGBA"}:
        return image
    if grey is not None:
        return Image.fromarray(_to_u8(grey)).convert("RGB")
    return image.convert("RGBA" if _has_alpha(image) else "RGB")


def _xmp_packet(text: str) -> bytes:
    root = ET.Element("{adobe:ns:meta/}xmpmeta")
    rdf = ET.SubElement(root, "{http://www.w3.org/1999/02/22-rdf-syntax-ns#}RDF")
    desc = ET.SubElement(rdf, "{http://www.w3.org/1999/02/22-rdf-syntax-ns#}Description")
    desc.set("{http://www.w3.org/1999/02/22-rdf-syntax-ns#}about", "")
    desc.set(f"{{{_XMP_NS}}}settings", text)
    ET.register_namespace("x", "adobe:ns:meta/")
    ET.register_namespace("rdf", "http://www.w3.org/1999/02/22-rdf-syntax-ns#")
    ET.register_namespace("inceptionism", _XMP_NS)
    packet: bytes = ET.tostring(root, encoding="utf-8")
    return packet


def _save_params(fmt: str, settings_json: str | None, icc: bytes | None, quality: int) -> dict[str, Any]:
    params: dict[str, Any] = {"icc_profile": icc or b""}  # b"": no profile, even if the image's info has one
    wrapped = None if settings_json is None else json.dumps({SETTINGS_KEY: json.loads(settings_json)})
    if fmt == "PNG":
        info = PngImagePlugin.PngInfo()
        if settings_json is not None:
            info.add_text(SETTINGS_KEY, settings_json)
        params["pnginfo"] = info
    elif fmt == "JPEG":
        params.update(quality=quality, subsampling=0 if quality >= 90 else 2)
        if wrapped is not None:
            params["comment"] = wrapped
    elif fmt == "WEBP":
        params["quality"] = quality
        if settings_json is not None:
            params["xmp"] = _xmp_packet(settings_json)
    elif fmt == "TIFF":
        if features.check("libtiff"):
            params["compression"] = "tiff_deflate"
        if wrapped is not None:
            params["description"] = wrapped
    return params


def _temp_file(path: Path) -> tuple[Path, int]:
    """Create ``.<name>.<random>.part`` next to ``path`` (umask-respecting permissions)."""
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0)
    while True:
        temp = path.with_name(f".{path.name[:200]}.{secrets.token_hex(4)}.part")
        try:
            return temp, os.open(temp, flags, 0o666)
        except FileExistsError:
            continue


def _write_atomically(path: Path, write: Callable[[IO[bytes]], None]) -> None:
    """Write via a temp file in the same folder, fsync, then ``os.replace``; on any exception (also
    KeyboardInterrupt) the temp file is removed and ``path`` is left as it was."""
    temp, fd = _temp_file(path)
    try:
        with os.fdopen(fd, "wb") as handle:
            write(handle)
            handle.flush()
            os.fsync(handle.fileno())
        with contextlib.suppress(OSError):  # keep an existing output's permissions
            os.chmod(temp, stat.S_IMODE(path.stat().st_mode))
        os.replace(temp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            temp.unlink()
        raise
    if hasattr(os, "O_DIRECTORY"):  # make the rename durable (best effort)
        with contextlib.suppress(OSError):
            dir_fd = os.open(path.parent, os.O_RDONLY | os.O_DIRECTORY)
            try:
                os.fsync(dir_fd)
            finally:
                os.close(dir_fd)


def save_image(
    image: Image.Image,
    path: str | Path,
    settings: dict[str, Any] | None = None,
    *,
    overwrite_input: Path | None = None,
    jpeg_quality: int = 95,
) -> Path:
    """Write ``image`` to ``path`` atomically, in the format its extension names; returns the path written.

    The image is converted to what the format can store (module docstring). ``settings`` (JSON-serialisable)
    is embedded: PNG text chunk ``inceptionism``; JPEG comment and TIFF description ``{"inceptionism": ...}``;
    WebP XMP. ``overwrite_input``: the input file to protect; writing over it raises :class:`ImageError`
    (pass ``None`` when the user allowed ``--overwrite``). ``jpeg_quality`` also sets WebP's quality.
    No partial file is ever left: the old output stays untouched until the new one is complete.
    """
    path = Path(path)
    fmt = _format_for(path)
    check_output_path(overwrite_input, path, overwrite=overwrite_input is None)
    if not 1 <= jpeg_quality <= 100:
        raise ValueError(f"jpeg_quality must be in 1..100, got {jpeg_quality}")
    settings_json = None if settings is None else json.dumps(settings, ensure_ascii=True, allow_nan=False)
    if fmt == "JPEG" and settings_json is not None and len(settings_json) > 65_000:
        raise ImageError(f"settings too large to embed in the JPEG comment of {_show(path)}; save as .png instead")
    out = _for_format(image, fmt)
    icc = image.info.get("icc_profile")
    icc = icc if isinstance(icc, bytes) and _icc_fits(icc, out.mode) else None
    params = _save_params(fmt, settings_json, icc, jpeg_quality)
    try:
        _write_atomically(path, lambda handle: out.save(handle, format=fmt, **params))
    except (OSError, ValueError) as exc:
        raise ImageError(f"cannot write {_show(path)}: {_reason(exc)}") from exc
    return path


# ----------------------------------------------------------------------------------------------------
# settings


def _parse_settings(text: str | bytes, where: str) -> dict[str, Any]:
    try:
        value = json.loads(text)
    except (ValueError, UnicodeDecodeError) as exc:
        raise ImageError(f"the settings in {where} are not valid JSON ({_reason(exc)}); fix or remove them") from exc
    if not isinstance(value, dict):
        raise ImageError(f"the settings in {where} are a JSON {type(value).__name__}, not an object; fix them")
    return value


def _unwrap(text: str | bytes, where: str) -> dict[str, Any] | None:
    """A JPEG comment / TIFF description of ours is ``{"inceptionism": {...}}``; anything else is not ours."""
    try:
        value = json.loads(text)
    except (ValueError, UnicodeDecodeError):
        if SETTINGS_KEY.encode() in (text if isinstance(text, bytes) else text.encode("utf-8", "replace")):
            raise ImageError(f"the inceptionism settings in {where} are not valid JSON; fix or remove them") from None
        return None
    if not isinstance(value, dict) or SETTINGS_KEY not in value:
        return None
    inner = value[SETTINGS_KEY]
    if not isinstance(inner, dict):
        raise ImageError(f"the inceptionism settings in {where} are not a JSON object; fix or remove them")
    return inner


def _xmp_settings(xmp: bytes | str) -> str | None:
    try:
        root = ET.fromstring(xmp)
    except ET.ParseError:
        return None
    for element in root.iter():
        value = element.get(f"{{{_XMP_NS}}}settings")
        if value is not None:
            return value
    return None


def read_settings(path: str | Path) -> dict[str, Any]:
    """Settings from a ``.json`` file, or embedded in an image written by :func:`save_image`."""
    path = Path(path)
    shown = _show(path)
    if not path.exists():
        raise ImageError(f"settings file {shown} does not exist; check the path")
    if path.is_dir():
        raise ImageError(f"settings file {shown} is a folder; pass a .json file or an image saved by inceptionism")
    if path.suffix.lower() == ".json":
        try:
            json_text = path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            raise ImageError(f"cannot read settings file {shown}: {_reason(exc)}") from exc
        return _parse_settings(json_text, shown)
    found: dict[str, Any] | None = None
    with _our_pillow_limits():
        try:
            with Image.open(path) as im:
                info = im.info
                if im.format == "PNG":
                    text: str | None = info.get(SETTINGS_KEY)
                    if text is None and im.width * im.height <= DEFAULT_MAX_PIXELS:
                        text = getattr(im, "text", {}).get(SETTINGS_KEY)  # chunks after the pixels
                    if text is not None:
                        found = _parse_settings(str(text), shown)
                elif "comment" in info:
                    found = _unwrap(info["comment"], shown)
                elif im.format == "WEBP" and "xmp" in info:
                    packet = _xmp_settings(info["xmp"])
                    found = None if packet is None else _parse_settings(packet, shown)
                elif im.format == "TIFF":
                    description = getattr(im, "tag_v2", {}).get(270)
                    found = None if description is None else _unwrap(str(description), shown)
        except UnidentifiedImageError:
            raise ImageError(f"{shown} is neither a .json settings file nor an image; pass one of those") from None
        except (OSError, SyntaxError, ValueError, EOFError) as exc:
            raise ImageError(f"cannot read settings from {shown}: {_reason(exc)}") from exc
    if found is None:
        raise ImageError(f"{shown} holds no inceptionism settings; pass a .json file or an image saved by inceptionism")
    return found
