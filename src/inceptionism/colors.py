"""Luminance and chroma: dream the brightness, keep the input's colours.

The colour transform is YCbCr (ITU-R BT.601, full range, chroma centred on 0): linear, so exactly invertible up
to float rounding, with the same luma weights Pillow and :mod:`inceptionism.image_io` use for RGB → L.
"""

from __future__ import annotations

import torch

# BT.601 luma weights and the chroma scales that map B − Y and R − Y onto [−0.5, 0.5].
KR, KG, KB = 0.299, 0.587, 0.114
CB_SCALE = 2 * (1 - KB)  # 1.772
CR_SCALE = 2 * (1 - KR)  # 1.402


def _check_rgb(x: torch.Tensor, what: str) -> None:
    if x.dim() != 4 or x.shape[1] != 3:
        raise ValueError(f"{what} must be an RGB tensor of shape (B, 3, H, W), got {tuple(x.shape)}")


def to_luma_chroma(rgb: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """RGB (B, 3, H, W) → luma Y, chroma Cb, Cr, each (B, 1, H, W).

    For RGB in [0, 1]: Y in [0, 1], Cb and Cr in [−0.5, 0.5]. Linear: any float values are accepted.
    """
    _check_rgb(rgb, "rgb")
    r, g, b = rgb[:, 0:1], rgb[:, 1:2], rgb[:, 2:3]
    y = KR * r + KG * g + KB * b
    return y, (b - y) / CB_SCALE, (r - y) / CR_SCALE


def _chroma_offsets(cb: torch.Tensor, cr: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """What chroma adds to Y in each RGB channel: R = Y + dr, G = Y + dg, B = Y + db."""
    dr = CR_SCALE * cr
    db = CB_SCALE * cb
    dg = -(KR * dr + KB * db) / KG
    return dr, dg, db


def from_luma_chroma(y: torch.Tensor, cb: torch.Tensor, cr: torch.Tensor) -> torch.Tensor:
    """The inverse of :func:`to_luma_chroma`: Y, Cb, Cr (B, 1, H, W) → RGB (B, 3, H, W), not clipped."""
    dr, dg, db = _chroma_offsets(cb, cr)
    return torch.cat([y + dr, y + dg, y + db], dim=1)


def luma_range(cb: torch.Tensor, cr: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The luma interval ``[low, high]`` (each (B, 1, H, W)) over which these chroma values stay in the RGB cube.

    A saturated colour cannot be made white or black without losing its saturation: pure red (Cr = 0.5) allows
    Y only at 0.299. For the chroma of any RGB colour in [0, 1] the interval holds that colour's own Y.
    """
    dr, dg, db = _chroma_offsets(cb, cr)
    offsets = torch.cat([dr, dg, db], dim=1)
    low = (-offsets).amax(dim=1, keepdim=True).clamp_min(0.0)
    high = (1 - offsets).amin(dim=1, keepdim=True).clamp_max(1.0)
    return low, high


def keep_colors(dream: torch.Tensor, original: torch.Tensor) -> torch.Tensor:
    """The dream's luminance with the original's colour: (B, 3, H, W) in [0, 1], both the same shape.

    The dream's chroma is dropped and the original's Cb, Cr are put back exactly. Where the dream's luma and the
    original's chroma would leave the RGB cube (a saturated colour brightened to white, say), the luma is
    limited to what that colour allows (:func:`luma_range`) rather than each channel being clipped, so the
    chroma stays the original's everywhere: clipping channels would shift the hue. Up to float rounding the
    result's Cb, Cr equal the original's; after 8-bit quantisation, within half a level of it.
    """
    _check_rgb(dream, "dream")
    _check_rgb(original, "original")
    if dream.shape != original.shape:
        raise ValueError(f"dream {tuple(dream.shape)} and original {tuple(original.shape)} differ in shape")
    y, _, _ = to_luma_chroma(dream)
    _, cb, cr = to_luma_chroma(original)
    low, high = luma_range(cb, cr)
    y = torch.maximum(torch.minimum(y, high), low)
    return from_luma_chroma(y, cb, cr).clamp_(0.0, 1.0)  # only rounding hairs outside [0, 1] remain to clip
