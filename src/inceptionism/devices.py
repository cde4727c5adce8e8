"""Choosing the device and the numeric precision of a run."""

from __future__ import annotations

import contextlib

import torch

from inceptionism.errors import ConfigError


def pick_device(name: str = "auto") -> torch.device:
    """``auto``: CUDA if present, then Apple's MPS, else the CPU. A named device must exist."""
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    try:
        device = torch.device(name)
    except RuntimeError:
        raise ConfigError(f"unknown device {name!r}; use auto, cpu, cuda, cuda:N or mps") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError("--device cuda asked for, but torch sees no CUDA GPU; use --device cpu")
    if device.type == "mps" and not torch.backends.mps.is_available():
        raise ConfigError("--device mps asked for, but this machine has no MPS; use --device cpu")
    return device


def cpu_has_native_bf16() -> bool:
    """True where the CPU computes bf16 in hardware (AVX512-BF16 or AMX); elsewhere bf16 is emulated and slow."""
    try:
        with open("/proc/cpuinfo") as f:
            flags = next((line for line in f if line.startswith("flags")), "")
    except OSError:
        return False
    return " avx512_bf16" in flags or " amx_bf16" in flags


def pick_precision(name: str, device: torch.device) -> str:
    """``auto``: the fastest precision that keeps the picture (figures: docs/performance.md).

    bf16 on CUDA GPUs that have it, else fp16; on CPUs bf16 where the hardware has it (elsewhere it is emulated
    and slower than fp32), else fp32; fp32 on Apple's MPS.
    """
    if name != "auto":
        return name
    if device.type == "cuda":
        return "bf16" if torch.cuda.is_bf16_supported() else "fp16"
    if device.type == "cpu" and cpu_has_native_bf16():
        return "bf16"
    return "fp32"


_DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16}


def compute_dtype(precision: str) -> torch.dtype | None:
    """The dtype a fast extractor holds its weights in for ``precision``; None for fp32."""
    return _DTYPES.get(precision)


def autocast(precision: str, device: torch.device) -> contextlib.AbstractContextManager[object]:
    """Autocast context for ``bf16``/``fp16`` on ``device``; a no-op for ``fp32``."""
    if precision == "fp32":
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.type, dtype=_DTYPES[precision])
