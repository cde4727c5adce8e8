import json

import numpy as np
import pytest
import torch
from PIL import Image

import inceptionism
from inceptionism import DreamConfig, dream

FAST = {"octaves": 2, "steps": 2, "min_size": 16}


@pytest.fixture
def rgb_array():
    rng = np.random.default_rng(1)
    return rng.integers(0, 255, (40, 56, 3), dtype=np.uint8)


def test_dream_accepts_path_pil_array_and_tensor(rgb_array, tmp_path):
    path = tmp_path / "in.png"
    Image.fromarray(rgb_array).save(path)
    results = [
        dream(path, **FAST),
        dream(Image.fromarray(rgb_array), **FAST),
        dream(rgb_array, **FAST),
        dream(torch.from_numpy(rgb_array).permute(2, 0, 1).float() / 255, **FAST),
    ]
    for r in results:
        assert isinstance(r, Image.Image) and r.size == (56, 40) and r.mode == "RGB"
    assert np.array_equal(np.asarray(results[0]), np.asarray(results[1]))
    assert np.array_equal(np.asarray(results[0]), np.asarray(results[2]))
    assert np.abs(np.asarray(results[0]).astype(int) - rgb_array).mean() > 2  # it dreamed


def test_modes_survive(rgb_array):
    gray = Image.fromarray(rgb_array).convert("L")
    assert dream(gray, **FAST).mode == "L"
    rgba = Image.fromarray(rgb_array).convert("RGBA")
    alpha = np.linspace(0, 255, 56 * 40).astype(np.uint8).reshape(40, 56)
    rgba.putalpha(Image.fromarray(alpha))
    out = dream(rgba, **FAST)
    assert out.mode == "RGBA" and np.array_equal(np.asarray(out)[..., 3], alpha)


def test_settings_travel_with_the_picture_and_config_objects_work(rgb_array):
    cfg = DreamConfig(seed=11, **FAST)
    out = dream(rgb_array, cfg, steps=1)
    record = json.loads(out.info["inceptionism"])
    assert record["seed"] == 11 and record["steps"] == 1 and record["version"] == inceptionism.__version__
    again = dream(rgb_array, DreamConfig.from_dict(record))
    assert np.array_equal(np.asarray(out), np.asarray(again))


def test_callback_gets_octave_previews_for_notebooks(rgb_array):
    previews = []
    dream(rgb_array, callback=lambda p: p.image is not None and previews.append(p.image), **FAST)
    assert len(previews) == 2 and previews[-1].shape == (1, 3, 40, 56)


def test_bad_settings_raise_config_errors(rgb_array):
    with pytest.raises(inceptionism.ConfigError, match="--steps"):
        dream(rgb_array, steps=0)
    with pytest.raises(inceptionism.ConfigError, match="unknown model"):
        dream(rgb_array, model="nope")
