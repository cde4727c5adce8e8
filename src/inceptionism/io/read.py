"""Reading: a file, PIL image, array or tensor -> :class:`LoadedImage` (RGB float ``(1, 3, H, W)`` in [0, 1]).

Sizes are checked against ``max_pixels`` from the file header, before decoding (decompression bombs); the EXIF
orientation is applied; the alpha channel, the source mode, bit depth and ICC profile are kept aside so that
:func:`~inceptionism.io.to_pil` can give the result back in the input's mode. 16-bit RGB/RGBA PNG and TIFF files
are decoded at 16 bits (:mod:`inceptionism.io.highbit`). Multi-frame files (GIF, APNG, TIFF) are read from their
first frame. Colour-key transparency (``tRNS``) on RGB/L images is ignored.
"""

from __future__ import annotations

import contextlib
import os
import stat
import struct
import threading
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import png
import torch
from PIL import Image, ImageFile, ImageOps, UnidentifiedImageError

from inceptionism.errors import ImageError
from inceptionism.io import highbit
from inceptionism.io.convert import split_pil
from inceptionism.io.messages import reason, show

#: Largest image :func:`load_image` decodes unless told otherwise (100 megapixels, e.g. 10000 x 10000).
#: As a float tensor that is 100e6 x 3 x 4 bytes = 1.2 GB before the engine starts. The CLI's
#: ``--max-pixels`` raises or lowers the limit; ``None`` removes it.
DEFAULT_MAX_PIXELS = 100_000_000

_pillow_lock = threading.Lock()
_ORIENTATION = 0x0112
# EXIF orientation -> the transpose that makes the pixels upright (the table ImageOps.exif_transpose uses)
_UPRIGHT = {
    2: Image.Transpose.FLIP_LEFT_RIGHT,
    3: Image.Transpose.ROTATE_180,
    4: Image.Transpose.FLIP_TOP_BOTTOM,
    5: Image.Transpose.TRANSPOSE,
    6: Image.Transpose.ROTATE_270,
    7: Image.Transpose.TRANSVERSE,
    8: Image.Transpose.ROTATE_90,
}


@dataclass(frozen=True, eq=False)
class LoadedImage:
    """An image ready for the engine.

    ``rgb``: float32 tensor ``(1, 3, H, W)`` in ``[0, 1]`` (grey sources are repeated over the 3 channels).
    ``alpha``: float32 tensor ``(1, 1, H, W)`` in ``[0, 1]``, or ``None`` when the source has no transparency.
    ``mode``: the source's PIL mode after EXIF transpose (arrays, tensors and 16-bit colour files get the mode
    they correspond to: ``RGB`` or ``RGBA``). ``size``: ``(W, H)``. ``path``: the file read, if any.
    ``bit_depth``: bits per channel of the source (8, 16, or 32 for float). ``icc_profile``: the source's ICC
    profile bytes, if any. Compared by identity (tensors have no single truth value).
    """

    rgb: torch.Tensor
    alpha: torch.Tensor | None
    mode: str
    size: tuple[int, int]
    path: Path | None = None
    bit_depth: int = 8
    icc_profile: bytes | None = None


@contextlib.contextmanager
def pillow_limits() -> Iterator[None]:
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


def _stat_input(path: Path) -> None:
    shown = show(path)
    try:
        st = path.stat()
    except FileNotFoundError:
        raise ImageError(f"input image {shown} does not exist; check the path") from None
    except OSError as exc:
        raise ImageError(f"cannot read input image {shown}: {reason(exc)}") from exc
    if stat.S_ISDIR(st.st_mode):
        raise ImageError(f"input {shown} is a folder, not an image file; pass the path of an image file")
    if st.st_size == 0:
        raise ImageError(f"input image {shown} is empty (0 bytes); pass a valid image file")


def _open_file(path: Path, max_pixels: int | None) -> Image.Image:
    """Open, size-check (from the header, before decoding) and decode one image file."""
    _stat_input(path)
    shown = show(path)
    with pillow_limits():
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
                f"input image {shown} is too large ({reason(exc)}); pass --max-pixels to allow it"
            ) from exc
        except (OSError, SyntaxError, ValueError, EOFError) as exc:
            raise ImageError(f"cannot read input image {shown}: {reason(exc)}; check the file") from exc
        try:
            _check_pixels(im.width, im.height, max_pixels, f"input image {shown}")
            im.load()
        except ImageError:
            im.close()
            raise
        except Image.DecompressionBombError as exc:
            im.close()
            raise ImageError(
                f"input image {shown} is too large ({reason(exc)}); pass --max-pixels to allow it"
            ) from exc
        except (OSError, SyntaxError, ValueError, EOFError, IndexError) as exc:
            im.close()
            raise ImageError(
                f"input image {shown} is truncated or corrupt ({reason(exc)}); re-export or re-download it"
            ) from exc
    # the pixels are decoded: check again (a few formats only know their real size once loaded)
    _check_pixels(im.width, im.height, max_pixels, f"input image {shown}")
    return im


def _orientation(im: Image.Image) -> int:
    """The EXIF orientation tag (1 when absent or unreadable)."""
    try:
        value = im.getexif().get(_ORIENTATION, 1)
    except (OSError, SyntaxError, ValueError, KeyError, TypeError, IndexError, struct.error):
        return 1
    return value if isinstance(value, int) else 1


def _upright(im: Image.Image) -> Image.Image:
    """Apply the EXIF orientation, so the pixels are stored upright (the tag is not carried to the output)."""
    try:
        out = ImageOps.exif_transpose(im)
    except (OSError, SyntaxError, ValueError, KeyError, TypeError, IndexError, struct.error):
        # unreadable EXIF: keep the pixels as stored
        return im
    return im if out is None else out


def _upright_array(pixels: np.ndarray, orientation: int) -> np.ndarray:
    """Apply an EXIF orientation to ``HxWxC`` ``uint16`` pixels (per channel, with Pillow's transposes)."""
    method = _UPRIGHT.get(orientation)
    if method is None:
        return pixels
    planes = [np.asarray(Image.fromarray(pixels[:, :, c]).transpose(method)) for c in range(pixels.shape[2])]
    return np.ascontiguousarray(np.stack(planes, axis=2), dtype=np.uint16)


def _loaded(
    rgb: np.ndarray, alpha: np.ndarray | None, mode: str, bits: int, path: Path | None, icc: object = None
) -> LoadedImage:
    """Build a :class:`LoadedImage` from ``HxWx3`` float32 colour and ``HxW`` float32 alpha (or None)."""
    height, width = rgb.shape[:2]
    return LoadedImage(
        rgb=torch.from_numpy(np.ascontiguousarray(rgb.transpose(2, 0, 1), dtype=np.float32))[None],
        alpha=None if alpha is None else torch.from_numpy(np.ascontiguousarray(alpha, dtype=np.float32))[None, None],
        mode=mode,
        size=(width, height),
        path=path,
        bit_depth=bits,
        icc_profile=icc if isinstance(icc, bytes) and icc else None,
    )


def _from_pil(im: Image.Image, path: Path | None, max_pixels: int | None) -> LoadedImage:
    _check_pixels(im.width, im.height, max_pixels, "input image" if path is None else f"input image {show(path)}")
    im = _upright(im)
    rgb, alpha, bits = split_pil(im)
    return _loaded(rgb, alpha, im.mode, bits, path, im.info.get("icc_profile"))


def _high_bit_pixels(im: Image.Image, path: Path) -> np.ndarray | None:
    """The file's 16-bit colour pixels, upright, or None if it is not such a file.

    The orientation comes from the PNG's EXIF, or from the TIFF's own tag (Pillow applies that one while it
    decodes a TIFF and then drops it, but ``tifffile`` gives the pixels as stored)."""
    try:
        if im.format == "PNG" and highbit.png_is_high_bit_colour(path):
            return _upright_array(highbit.read_png16(path), _orientation(im))
        if im.format == "TIFF" and highbit.tiff_is_high_bit_colour(dict(getattr(im, "tag_v2", {}))):
            stored = highbit.read_tiff16(path)
            return None if stored is None else _upright_array(*stored)
    except (OSError, ValueError, png.Error) as exc:
        raise ImageError(
            f"input image {show(path)} is truncated or corrupt ({reason(exc)}); re-export or re-download it"
        ) from exc
    return None


def _from_high_bit(pixels: np.ndarray, im: Image.Image, path: Path) -> LoadedImage:
    values = pixels.astype(np.float32) / np.float32(65535)
    alpha = values[:, :, 3] if values.shape[2] == 4 else None
    mode = "RGBA" if alpha is not None else "RGB"
    return _loaded(values[:, :, :3], alpha, mode, 16, path, im.info.get("icc_profile"))


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
    return _loaded(colour, alpha, mode, bits, None)


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


def _load_file(path: Path, max_pixels: int | None) -> LoadedImage:
    im = _open_file(path, max_pixels)
    try:
        pixels = _high_bit_pixels(im, path)
        return _from_pil(im, path, max_pixels) if pixels is None else _from_high_bit(pixels, im, path)
    finally:
        im.close()


def _load_pil(source: Image.Image, max_pixels: int | None) -> LoadedImage:
    filename = getattr(source, "filename", "")
    source_path = Path(filename) if isinstance(filename, (str, os.PathLike)) and str(filename) else None
    _check_pixels(source.width, source.height, max_pixels, "input image")
    with pillow_limits():
        try:
            source.load()
        except (OSError, SyntaxError, ValueError, EOFError) as exc:
            raise ImageError(
                f"input image {show(source_path or '(in memory)')} is truncated or corrupt "
                f"({reason(exc)}); re-export or re-download it"
            ) from exc
    return _from_pil(source, source_path, max_pixels)


def load_image(
    source: str | Path | Image.Image | np.ndarray | torch.Tensor,
    max_pixels: int | None = DEFAULT_MAX_PIXELS,
) -> LoadedImage:
    """Read an image into a :class:`LoadedImage` (RGB ``(1, 3, H, W)`` float32 in ``[0, 1]``, alpha aside).

    ``source``: a file path; a PIL image; an array ``HxW``, ``HxWx3`` or ``HxWx4`` of uint8 (0-255), uint16
    (0-65535) or float (0-1); or a float tensor ``(3, H, W)`` / ``(1, 3, H, W)`` in ``[0, 1]``. The EXIF
    orientation is applied. Images over ``max_pixels`` pixels (``None``: no limit) are refused from the file
    header, before decoding. 16-bit colour PNG/TIFF files and ``uint16`` arrays keep their 16 bits
    (``bit_depth=16``). Every problem raises :class:`ImageError`; the input is never modified.
    """
    if isinstance(source, (str, os.PathLike)):
        return _load_file(Path(source), max_pixels)
    if isinstance(source, Image.Image):
        return _load_pil(source, max_pixels)
    if isinstance(source, np.ndarray):
        return _from_array(source, max_pixels)
    if isinstance(source, torch.Tensor):
        return _from_tensor(source, max_pixels)
    raise ImageError(
        f"cannot read an image from a {type(source).__name__}; pass a path, PIL image, numpy array or torch tensor"
    )
