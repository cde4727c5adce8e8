"""Image parametrisations for feature visualisation from noise (after lucid's ``optvis/param``).

A parametrisation holds learnable tensors and maps them to an image batch ``(B, 3, H, W)`` in [0, 1]. The render
loop ascends an objective with respect to the parameters, not the pixels:

- :class:`PixelImage`: one value per pixel and channel. Every pixel moves on its own, so ascent from noise
  mostly builds high-frequency static the network happens to like.
- :class:`FFTImage`: lucid's Fourier parametrisation: a learnable spectrum scaled by 1/frequency, so every
  frequency changes at about the same rate in the image (in pixel space, low frequencies would be starved), and
  colours decorrelated (a step moves along ImageNet's principal colour axes, not R, G and B on their own).
  It gives recognisable forms where pixels give static.

Both squash with a sigmoid into [0, 1]. Randomness is explicit: the initial values come from a
``torch.Generator``.
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod

import torch

PARAMS = ("fft", "pixel")

# lucid's square root (by SVD) of ImageNet's 3×3 colour correlation matrix, from lucid/optvis/param/color.py
# (Apache-2.0); columns scaled so the largest has unit norm, as lucid does.
_COLOR_CORRELATION_SVD_SQRT = torch.tensor(
    [[0.26, 0.09, 0.02], [0.27, 0.00, -0.05], [0.27, -0.09, 0.03]], dtype=torch.float64
)
COLOR_DECORRELATION = (
    _COLOR_CORRELATION_SVD_SQRT / _COLOR_CORRELATION_SVD_SQRT.norm(dim=0).max()
).float()  # (3, 3): decorrelated colour → RGB

INIT_SD = 0.01  # lucid's standard deviation of the initial parameters


def decorrelate_colors(t: torch.Tensor) -> torch.Tensor:
    """(B, 3, H, W) in decorrelated colour space → (B, 3, H, W) in RGB (before the sigmoid)."""
    return torch.einsum("ij,bjhw->bihw", COLOR_DECORRELATION.to(t), t)


def _check_shape(batch: int, size: tuple[int, int]) -> tuple[int, int]:
    h, w = size
    if batch < 1 or h < 1 or w < 1:
        raise ValueError(f"batch and size must be positive, got batch {batch} and size {h}×{w}")
    return h, w


class Parametrization(ABC):
    """Learnable tensors that give an image batch ``(B, 3, H, W)`` in [0, 1]."""

    decorrelate: bool

    @abstractmethod
    def parameters(self) -> list[torch.Tensor]:
        """The tensors an optimiser updates (leaf tensors with ``requires_grad``)."""

    @abstractmethod
    def raw(self) -> torch.Tensor:
        """The image before colour mapping and sigmoid, (B, 3, H, W), unbounded."""

    def image(self) -> torch.Tensor:
        """The image batch (B, 3, H, W) in [0, 1], differentiable in the parameters."""
        t = self.raw()
        if self.decorrelate:
            t = decorrelate_colors(t)
        return torch.sigmoid(t)


class PixelImage(Parametrization):
    """One learnable value per pixel and channel: ``sigmoid(p)``, p ~ N(0, 0.01²) at the start.

    ``decorrelate``: read ``p`` in lucid's decorrelated colour space (off: plain pixels).
    """

    def __init__(
        self,
        batch: int,
        size: tuple[int, int],
        *,
        generator: torch.Generator | None = None,
        decorrelate: bool = False,
        sd: float = INIT_SD,
        device: torch.device | str = "cpu",
    ) -> None:
        h, w = _check_shape(batch, size)
        self.decorrelate = decorrelate
        init = torch.randn(batch, 3, h, w, generator=generator) * sd
        self.pixels = init.to(device).requires_grad_(True)

    def parameters(self) -> list[torch.Tensor]:
        return [self.pixels]

    def raw(self) -> torch.Tensor:
        return self.pixels


def spectrum_scale(size: tuple[int, int], decay_power: float = 1.0) -> torch.Tensor:
    """(H, W // 2 + 1): lucid's weight per rfft2 frequency, ``1 / max(f, 1 / max(H, W)) ** decay_power``.

    ``f`` is the frequency's magnitude in cycles per pixel; the floor keeps the constant term finite.
    """
    h, w = size
    fy = torch.fft.fftfreq(h, dtype=torch.float64)[:, None]
    fx = torch.fft.rfftfreq(w, dtype=torch.float64)[None, :]
    freqs = (fx * fx + fy * fy).sqrt()
    return (1.0 / freqs.clamp(min=1.0 / max(h, w)) ** decay_power).float()


class FFTImage(Parametrization):
    """lucid's Fourier parametrisation: ``sigmoid(decorrelate(irfft2(scale · spectrum) / 4))``.

    The spectrum is complex, (B, 3, H, W // 2 + 1), stored as real and imaginary parts ~ N(0, 0.01²);
    ``scale`` is :func:`spectrum_scale`. ``irfft2`` is orthonormal (lucid: unnormalised inverse times √(HW)).
    ``decorrelate``: off gives the Fourier parametrisation in plain RGB.
    """

    def __init__(
        self,
        batch: int,
        size: tuple[int, int],
        *,
        generator: torch.Generator | None = None,
        decorrelate: bool = True,
        decay_power: float = 1.0,
        sd: float = INIT_SD,
        device: torch.device | str = "cpu",
    ) -> None:
        h, w = _check_shape(batch, size)
        self.size = (h, w)
        self.decorrelate = decorrelate
        init = torch.randn(batch, 3, h, w // 2 + 1, 2, generator=generator) * sd
        self.spectrum = init.to(device).requires_grad_(True)
        self.scale = spectrum_scale((h, w), decay_power).to(device)

    def parameters(self) -> list[torch.Tensor]:
        return [self.spectrum]

    def raw(self) -> torch.Tensor:
        spectrum = torch.view_as_complex(self.spectrum) * self.scale
        # lucid divides by 4 so that the initial image's values suit the sigmoid.
        return torch.fft.irfftn(spectrum, s=self.size, dim=(-2, -1), norm="ortho") / 4


def parametrization(
    name: str,
    batch: int,
    size: tuple[int, int],
    *,
    generator: torch.Generator | None = None,
    device: torch.device | str = "cpu",
) -> Parametrization:
    """``"fft"`` (Fourier, decorrelated colour) or ``"pixel"`` (plain pixels), for ``batch`` images of ``size``."""
    if name == "fft":
        return FFTImage(batch, size, generator=generator, device=device)
    if name == "pixel":
        return PixelImage(batch, size, generator=generator, device=device)
    raise ValueError(f"unknown parametrisation {name!r}; choose one of {', '.join(PARAMS)}")


def high_frequency_share(images: torch.Tensor, cutoff: float = 0.25) -> float:
    """Share of the (mean-removed) spectral energy of ``images`` (B, C, H, W) above ``cutoff`` cycles per pixel.

    A measure of static: white noise puts about 80 % of its energy above 0.25; a photo a few percent.
    """
    x = images.detach().double()
    x = x - x.mean(dim=(-2, -1), keepdim=True)
    power = torch.fft.rfftn(x, dim=(-2, -1)).abs().square()
    h, w = x.shape[-2:]
    fy = torch.fft.fftfreq(h, dtype=torch.float64)[:, None]
    fx = torch.fft.rfftfreq(w, dtype=torch.float64)[None, :]
    high = (fx * fx + fy * fy).sqrt() > cutoff
    total = float(power.sum())
    return float(power[..., high].sum()) / total if total > 0 else math.nan
