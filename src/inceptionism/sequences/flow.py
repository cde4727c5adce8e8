"""Optical flow between video frames, and warping along it: what carries a dream from one frame to the next.

Flow is OpenCV's DIS (dense inverse search), on grey uint8 frames. A flow field is ``(H, W, 2)`` float32: at each
pixel of the frame it belongs to, the ``(dx, dy)`` offset in pixels to where that pixel is found in the other
frame. :func:`warp` pulls an image along such a field; :func:`consistency_mask` marks where the forward and the
backward flow disagree (occluded or newly revealed regions), so nothing is smeared there.

OpenCV (``opencv-python-headless``) is the ``[video]`` extra, imported when first needed.
"""

from __future__ import annotations

from types import ModuleType
from typing import Any

import numpy as np

from inceptionism.errors import InceptionismError
from inceptionism.sequences.media import EXTRA_HINT

#: DIS presets by name. "fast" is the default: the dream's detail is coarse next to the flow's error.
PRESETS = ("ultrafast", "fast", "medium")
# Forward–backward check (Sundaram, Brox and Keutzer 2010, as in Ruder et al.'s video style transfer): a pixel is
# consistent where |f + b|² ≤ ALPHA (|f|² + |b|²) + BETA, the round trip returning to within a fraction of the
# motion plus half a pixel.
_ALPHA = 0.01
_BETA = 0.5


def require_cv2() -> ModuleType:
    """The OpenCV module, or an :class:`InceptionismError` naming the extra that provides it."""
    try:
        import cv2
    except ImportError:
        raise InceptionismError(f"video needs OpenCV, which is not installed: {EXTRA_HINT}") from None
    return cv2


def grey(frame: np.ndarray) -> np.ndarray:
    """(H, W, 3) RGB, uint8 or float in [0, 1] → (H, W) uint8 luma, what the flow is computed on."""
    cv2 = require_cv2()
    if frame.dtype != np.uint8:
        frame = np.clip(frame * 255.0 + 0.5, 0, 255).astype(np.uint8)
    return np.asarray(cv2.cvtColor(frame, cv2.COLOR_RGB2GRAY))


class FlowEstimator:
    """Dense optical flow between two frames, with one DIS instance reused (its buffers fit the frame size).

    >>> flow = FlowEstimator("fast")(grey(a), grey(b))  # (H, W, 2) float32: where each pixel of a is in b
    """

    def __init__(self, preset: str = "fast") -> None:
        if preset not in PRESETS:
            raise ValueError(f"unknown flow preset {preset!r}; expected one of {', '.join(PRESETS)}")
        cv2 = require_cv2()
        codes = {
            "ultrafast": cv2.DISOPTICAL_FLOW_PRESET_ULTRAFAST,
            "fast": cv2.DISOPTICAL_FLOW_PRESET_FAST,
            "medium": cv2.DISOPTICAL_FLOW_PRESET_MEDIUM,
        }
        self.preset = preset
        self._dis: Any = cv2.DISOpticalFlow_create(codes[preset])

    def __call__(self, source: np.ndarray, target: np.ndarray) -> np.ndarray:
        """Flow from ``source`` to ``target``, both (H, W) uint8: (H, W, 2) float32 offsets (dx, dy) in pixels."""
        if source.shape != target.shape or source.ndim != 2 or source.dtype != np.uint8:
            raise ValueError(f"expected two (H, W) uint8 frames of one size, got {source.shape} and {target.shape}")
        return np.asarray(self._dis.calc(source, target, None), dtype=np.float32)


def _sample_grid(flow: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Absolute sampling coordinates (map_x, map_y), each (H, W) float32, for offsets ``flow`` (H, W, 2)."""
    h, w = flow.shape[:2]
    xs, ys = np.meshgrid(np.arange(w, dtype=np.float32), np.arange(h, dtype=np.float32))
    return xs + flow[..., 0], ys + flow[..., 1]


def warp(image: np.ndarray, flow: np.ndarray) -> np.ndarray:
    """Pull ``image`` (H, W[, C]) along ``flow`` (H, W, 2): ``out[y, x] = image[y + dy, x + dx]``, bicubic.

    With ``flow`` from frame B to frame A, an image aligned with A comes out aligned with B. Samples outside the
    image take the nearest edge pixel. Same dtype and shape as ``image``. Bicubic rather than bilinear: a video
    warps its dream detail again every frame, and bilinear sampling at half-pixel offsets averages neighbours,
    which blurs the detail a little more each time.
    """
    if flow.shape[:2] != image.shape[:2] or flow.shape[2:] != (2,):
        raise ValueError(f"flow {flow.shape} does not match image {image.shape}")
    cv2 = require_cv2()
    map_x, map_y = _sample_grid(flow)
    return np.asarray(cv2.remap(image, map_x, map_y, cv2.INTER_CUBIC, borderMode=cv2.BORDER_REPLICATE))


def consistency_mask(backward: np.ndarray, forward: np.ndarray, soften: int = 3) -> np.ndarray:
    """Where the flow can be trusted, for content carried from frame A to frame B: (H, W) float32 in [0, 1].

    ``backward``: flow B → A, (H, W, 2); ``forward``: flow A → B. A pixel of B whose backward flow lands outside A
    (newly revealed at the border), or whose round trip B → A → B does not come back (occluded in A, or flow
    error), gets 0; the rest 1. ``soften`` > 0 blurs the mask's edges over about that many pixels so the carried
    detail fades in rather than ending at a seam.
    """
    if backward.shape != forward.shape or backward.shape[2:] != (2,):
        raise ValueError(f"flows {backward.shape} and {forward.shape} must both be (H, W, 2)")
    cv2 = require_cv2()
    h, w = backward.shape[:2]
    map_x, map_y = _sample_grid(backward)
    # The forward flow at where each pixel of B came from in A: a consistent pair cancels out.
    there = cv2.remap(forward, map_x, map_y, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
    round_trip = np.sum((backward + there) ** 2, axis=2)
    motion = np.sum(backward**2, axis=2) + np.sum(there**2, axis=2)
    inside = (map_x >= 0) & (map_x <= w - 1) & (map_y >= 0) & (map_y <= h - 1)
    mask = ((round_trip <= _ALPHA * motion + _BETA) & inside).astype(np.float32)
    if soften > 0:
        # Erode then blur: the mask only shrinks, so detail never bleeds into a region marked inconsistent.
        kernel = np.ones((2 * soften + 1, 2 * soften + 1), np.uint8)
        mask = cv2.blur(cv2.erode(mask, kernel), (2 * soften + 1, 2 * soften + 1))
    return np.asarray(mask, dtype=np.float32)


__all__ = ["PRESETS", "FlowEstimator", "consistency_mask", "grey", "require_cv2", "warp"]
