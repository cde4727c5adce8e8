"""Native CPU kernels: C built at first use with the machine's compiler, cached, called through ctypes.

One kernel so far, max pooling (``maxpool.c``) for the CPU gradient program (:mod:`.program`): ATen's results
bit for bit, with the winners kept as one-byte window offsets instead of int64 indices, and a backward that runs
on every core (ATen's channels_last one runs on one core for a single image). Nothing here is needed: without a
compiler, or with ``INCEPTIONISM_NATIVE=0``, :func:`max_pool_supported` says no and the program calls ATen's kernels.

The library is built once per machine, compiler and source into ``$XDG_CACHE_HOME/inceptionism`` (else
``~/.cache/inceptionism``), or ``INCEPTIONISM_CACHE`` where set; a build goes to a temporary file that is renamed
into place, so processes building at once never load half a file.
"""

from __future__ import annotations

import ctypes
import hashlib
import logging
import os
import platform
import shlex
import shutil
import subprocess
import tempfile
import threading
from pathlib import Path
from typing import Any

import torch

log = logging.getLogger(__name__)

SOURCE = Path(__file__).with_name("maxpool.c")
VERSION = 1  # the source's inceptionism_maxpool_version()
FLAG_SETS = (
    ["-O3", "-march=native", "-fopenmp", "-shared", "-fPIC"],
    ["-O3", "-shared", "-fPIC"],  # a compiler without OpenMP or -march=native: one thread, generic vectors
)
MAX_WINDOW = 255  # window offsets are kept in one byte
_DTYPES = {torch.float32: "f32", torch.bfloat16: "bf16"}

_lock = threading.Lock()
_library: ctypes.CDLL | None = None
_tried = False


def cache_dir() -> Path:
    """Where built kernels are kept."""
    if os.environ.get("INCEPTIONISM_CACHE"):
        return Path(os.environ["INCEPTIONISM_CACHE"])
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "inceptionism"


def enabled() -> bool:
    return os.environ.get("INCEPTIONISM_NATIVE", "1") != "0"


def library() -> ctypes.CDLL | None:
    """The kernels, built on first call (about a second); None where they cannot be built or are disabled."""
    global _library, _tried
    if not enabled():
        return None
    with _lock:
        if not _tried:
            _tried = True
            _library = _load()
        return _library


def reset() -> None:
    """Forget the loaded library (tests: another cache folder, compiler or setting)."""
    global _library, _tried
    with _lock:
        _library, _tried = None, False


def _compiler() -> list[str] | None:
    """``$CC`` (split as a shell would: ``ccache gcc``), else the first of cc, gcc and clang on the path."""
    if os.environ.get("CC"):
        return shlex.split(os.environ["CC"])
    found = shutil.which("cc") or shutil.which("gcc") or shutil.which("clang")
    return [found] if found else None


def _load() -> ctypes.CDLL | None:
    compiler = _compiler()
    if compiler is None:
        log.info("native kernels off: no C compiler")
        return None
    try:
        version = subprocess.run([*compiler, "--version"], capture_output=True, text=True, timeout=60).stdout
    except (OSError, subprocess.SubprocessError) as e:
        log.info("native kernels off: %s", e)
        return None
    source = SOURCE.read_bytes()
    for flags in FLAG_SETS:  # -march=native: a build is for this CPU only, so the CPU is part of its name
        parts = [version, " ".join(flags), platform.machine(), _cpu()]
        key = hashlib.sha256(b"\0".join([source, *(p.encode() for p in parts)]))
        path = cache_dir() / f"maxpool-{key.hexdigest()[:16]}.so"
        try:
            if not path.exists():
                _build(compiler, flags, path)
            lib = ctypes.CDLL(str(path))
            if lib.inceptionism_maxpool_version() != VERSION:
                raise OSError(f"{path} is not version {VERSION}")
        except (OSError, subprocess.SubprocessError) as e:
            log.info("native kernels: %s failed with %s: %s", " ".join(compiler), " ".join(flags), e)
            continue
        _declare(lib)
        return lib
    return None


def _cpu() -> str:
    """The CPU's model and instruction sets (Linux), else what the platform says of it."""
    try:
        lines = Path("/proc/cpuinfo").read_text().splitlines()
    except OSError:
        return platform.processor()
    keys = ("model name", "flags", "Features", "CPU part")
    return "\n".join(sorted({line for line in lines if line.split(":")[0].strip() in keys}))


def _build(compiler: list[str], flags: list[str], path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    fd, tmp = tempfile.mkstemp(suffix=".so", dir=path.parent)
    os.close(fd)
    try:
        subprocess.run([*compiler, *flags, str(SOURCE), "-o", tmp], check=True, capture_output=True, timeout=300)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def _declare(lib: ctypes.CDLL) -> None:
    shape = [ctypes.c_long] * 12 + [ctypes.c_int]
    for name in ("max_pool_f32", "max_pool_bf16", "max_pool_backward_f32", "max_pool_backward_bf16"):
        fn = getattr(lib, name)
        fn.argtypes = [ctypes.c_void_p] * 3 + shape
        fn.restype = None


def pool_output_size(size: int, kernel: int, stride: int, padding: int, ceil_mode: bool) -> int:
    """ATen's output size of a max pool (dilation 1) along one dimension."""
    out = (size + 2 * padding - kernel + (stride - 1 if ceil_mode else 0)) // stride + 1
    if ceil_mode and (out - 1) * stride >= size + padding:  # the last window must start inside the input
        out -= 1
    return out


def max_pool_supported(x: torch.Tensor, params: list[Any]) -> bool:
    """Whether :func:`max_pool` runs ``max_pool2d(x, *params)`` (params: kernel, stride, padding, dilation,
    ceil_mode as lists). Anything else, invalid pools included (ATen gives their errors), stays with ATen."""
    return _output_size(x, params) is not None and library() is not None


def _output_size(x: torch.Tensor, params: list[Any]) -> tuple[int, int] | None:
    """The pool's output height and width where the kernel can run it (the library aside), else None."""
    kernel, stride, padding, dilation, ceil_mode = params
    if x.device.type != "cpu" or x.dtype not in _DTYPES or x.dim() != 4 or dilation != [1, 1]:
        return None
    if kernel[0] * kernel[1] > MAX_WINDOW or min(stride) < 1 or min(padding) < 0:
        return None
    if padding[0] > kernel[0] // 2 or padding[1] > kernel[1] // 2:
        return None
    oh, ow = (pool_output_size(x.shape[i + 2], kernel[i], stride[i], padding[i], ceil_mode) for i in (0, 1))
    return (oh, ow) if min(oh, ow) > 0 else None


def max_pool(x: torch.Tensor, params: list[Any]) -> tuple[torch.Tensor, torch.Tensor] | None:
    """``(values, winners)`` of ``max_pool2d(x, *params)``, channels_last; winners are uint8 window offsets.
    None where :func:`max_pool_supported` says no: the caller runs ATen's."""
    size = _output_size(x, params)
    lib = library() if size is not None else None
    if size is None or lib is None:
        return None
    x = x.contiguous(memory_format=torch.channels_last)
    n, c = x.shape[:2]
    y = torch.empty((n, c, *size), dtype=x.dtype, memory_format=torch.channels_last)
    winners = torch.empty((n, c, *size), dtype=torch.uint8, memory_format=torch.channels_last)
    fn = getattr(lib, f"max_pool_{_DTYPES[x.dtype]}")
    fn(x.data_ptr(), y.data_ptr(), winners.data_ptr(), *_shape(x.shape, y.shape, params))
    return y, winners


def max_pool_backward(grad: torch.Tensor, winners: torch.Tensor, x: torch.Size, params: list[Any]) -> torch.Tensor:
    """The gradient of an input of shape ``x`` from ``grad``, the gradient of :func:`max_pool`'s values."""
    lib = library()
    assert lib is not None
    grad = grad.contiguous(memory_format=torch.channels_last)
    gx = torch.empty(x, dtype=grad.dtype, memory_format=torch.channels_last)
    fn = getattr(lib, f"max_pool_backward_{_DTYPES[grad.dtype]}")
    fn(grad.data_ptr(), winners.data_ptr(), gx.data_ptr(), *_shape(x, grad.shape, params))
    return gx


def _shape(x: torch.Size, y: torch.Size, params: list[Any]) -> tuple[int, ...]:
    (kh, kw), (sh, sw), (ph, pw) = params[0], params[1], params[2]
    n, c, h, w = x
    return (n, h, w, c, y[2], y[3], kh, kw, sh, sw, ph, pw, torch.get_num_threads())
