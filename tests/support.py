"""Helpers the tests import by name (``from support import ...``): a module of its own, because ``conftest`` is
a name every test folder's conftest.py shares."""

from __future__ import annotations

from pathlib import Path

import torch

REAL_HOME = Path.home()  # read at import, before the session's fixture points HOME elsewhere


def assert_close_to_scale(actual: torch.Tensor, expected: torch.Tensor, rel: float = 1e-3) -> None:
    """Equal up to float32 rounding relative to the tensor's scale: extractors may fold BatchNorm into the
    convolutions and run channels_last, which reorders the arithmetic."""
    assert actual.shape == expected.shape
    error = float((actual - expected).abs().max())
    scale = float(expected.abs().max())
    assert error <= rel * scale, f"max abs difference {error:.3g} vs scale {scale:.3g}"
