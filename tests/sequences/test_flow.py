"""Optical flow: DIS finds a known shift, warp pulls along it, the forward–backward mask marks what cannot be
carried (newly revealed borders, inconsistent flow)."""

from __future__ import annotations

import builtins
import sys

import numpy as np
import pytest
from clips import PHOTO
from PIL import Image

from inceptionism.errors import InceptionismError
from inceptionism.sequences.flow import PRESETS, FlowEstimator, consistency_mask, grey, require_cv2, warp

cv2 = pytest.importorskip("cv2")

SHIFT = (5, 2)  # the second view is the first moved by this many pixels right and down


@pytest.fixture(scope="module")
def views() -> tuple[np.ndarray, np.ndarray]:
    """Two 160×120 crops of a photo; the scene moves left by 5 and up by 2 pixels from ``a`` to ``b``."""
    photo = np.asarray(Image.open(PHOTO).convert("RGB"))
    dx, dy = SHIFT
    a = np.ascontiguousarray(photo[100:220, 150:310])
    b = np.ascontiguousarray(photo[100 + dy : 220 + dy, 150 + dx : 310 + dx])
    return a, b


def interior(x: np.ndarray, margin: int = 12) -> np.ndarray:
    return x[margin:-margin, margin:-margin]


@pytest.mark.parametrize("preset", PRESETS)
def test_flow_finds_a_shift(views, preset):
    a, b = views
    flow = FlowEstimator(preset)(grey(a), grey(b))  # pixel (x, y) of a is at (x - 5, y - 2) in b
    assert flow.shape == (120, 160, 2) and flow.dtype == np.float32
    dx, dy = SHIFT
    assert np.abs(interior(flow) - np.array([-dx, -dy], np.float32)).mean() < 0.5


def test_warp_moves_an_image_onto_the_other_view(views):
    a, b = views
    backward = FlowEstimator("fast")(grey(b), grey(a))  # where each pixel of b is in a
    moved = warp(a.astype(np.float32), backward)
    assert moved.dtype == np.float32 and moved.shape == a.shape
    before = np.abs(interior(a.astype(np.float32)) - interior(b)).mean()
    after = np.abs(interior(moved) - interior(b)).mean()
    assert after < 0.2 * before


def test_warp_with_exact_shift_and_zero_flow():
    image = np.arange(12 * 16 * 3, dtype=np.float32).reshape(12, 16, 3)
    assert np.array_equal(warp(image, np.zeros((12, 16, 2), np.float32)), image)
    shift = np.zeros((12, 16, 2), np.float32)
    shift[..., 0], shift[..., 1] = 2, 1  # out[y, x] = image[y + 1, x + 2]
    assert np.array_equal(warp(image, shift)[:-1, :-2], image[1:, 2:])
    with pytest.raises(ValueError, match="does not match"):
        warp(image, np.zeros((12, 15, 2), np.float32))


def test_mask_keeps_consistent_flow_and_drops_the_revealed_border():
    h, w = 40, 60
    backward = np.zeros((h, w, 2), np.float32)
    backward[..., 0] = 4  # each pixel of B was 4 pixels further right in A: the right edge of B is new
    forward = -backward
    hard = consistency_mask(backward, forward, soften=0)
    assert hard.dtype == np.float32 and hard.shape == (h, w)
    assert hard[:, : w - 5].min() == 1 and hard[:, w - 4 :].max() == 0
    soft = consistency_mask(backward, forward, soften=2)
    assert np.all(soft <= hard) and soft[:, :20].min() == 1  # softening only shrinks the mask


def test_mask_drops_inconsistent_flow():
    h, w = 30, 30
    backward = np.zeros((h, w, 2), np.float32)
    backward[..., 1] = 3
    forward = backward.copy()  # the round trip goes 6 pixels away instead of back: occlusion or error
    assert consistency_mask(backward, forward, soften=0).max() == 0
    half = -backward.copy()
    half[:, 15:] = 0  # right half: the forward flow says nothing moved there
    mask = consistency_mask(backward, half, soften=0)
    assert mask[: h - 3, :12].min() == 1 and mask[:, 17:].max() == 0 and mask[h - 3 :].max() == 0  # bottom: new


def test_bad_arguments():
    with pytest.raises(ValueError, match="unknown flow preset"):
        FlowEstimator("slowest")
    with pytest.raises(ValueError, match="uint8"):
        FlowEstimator()(np.zeros((8, 8), np.uint8), np.zeros((8, 9), np.uint8))
    with pytest.raises(ValueError, match="must both be"):
        consistency_mask(np.zeros((8, 8, 2), np.float32), np.zeros((8, 9, 2), np.float32))
    assert grey(np.zeros((4, 5, 3), np.float32)).shape == (4, 5)


def test_missing_opencv_names_the_extra(monkeypatch):
    real_import = builtins.__import__

    def no_cv2(name, *args, **kwargs):
        if name == "cv2":
            raise ImportError("No module named 'cv2'")
        return real_import(name, *args, **kwargs)

    monkeypatch.delitem(sys.modules, "cv2")
    monkeypatch.setattr(builtins, "__import__", no_cv2)
    with pytest.raises(InceptionismError, match=r"pip install 'inceptionism\[video\]'"):
        require_cv2()
