import hashlib
import json
import os
from pathlib import Path

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


# ---------------------------------------------------------------------------------------------------------------
# No local paths in pictures; 16-bit colour in, 16-bit colour out


def _strings(value):
    """Every string in a JSON value (keys and values)."""
    if isinstance(value, dict):
        for key, item in value.items():
            yield key
            yield from _strings(item)
    elif isinstance(value, list):
        for item in value:
            yield from _strings(item)
    elif isinstance(value, str):
        yield value


def test_pictures_name_the_weights_file_and_its_sha256_never_its_folder(rgb_array, tmp_path, monkeypatch):
    import shutil

    from inceptionism.cli import main
    from inceptionism.io import read_settings, save_image
    from inceptionism.models import get_model_spec, weights_available

    packaged = weights_available(get_model_spec("efficientnet-lite0"))
    assert packaged is not None
    folder = tmp_path / "some" / "dir"
    folder.mkdir(parents=True)
    weights = folder / "lite.pth"
    shutil.copyfile(packaged, weights)
    out = dream(rgb_array, weights=str(weights), **FAST)
    record = json.loads(out.info["inceptionism"])
    assert record["weights"] == "lite.pth"
    assert record["extra"]["weights_file"] == "lite.pth"
    assert record["extra"]["weights_sha256"] == hashlib.sha256(weights.read_bytes()).hexdigest()
    assert "weights_source" not in record["extra"]
    local = (str(tmp_path), str(Path(packaged).parent), str(Path.home()))
    assert not [s for s in _strings(record) if os.path.isabs(s) or any(folder in s for folder in local)]
    # without --weights (the packaged file): its name and digest, not its site-packages folder
    default = json.loads(dream(rgb_array, steps=1, octaves=1).info["inceptionism"])
    assert default["extra"]["weights_file"] == Path(packaged).name
    assert not [s for s in _strings(default) if os.path.isabs(s) or any(folder in s for folder in local)]

    # reproducing from the picture: the weights file named again, here found beside the user by its name
    src, picture, again = tmp_path / "in.png", tmp_path / "dream.png", tmp_path / "again.png"
    Image.fromarray(rgb_array).save(src)
    save_image(out, picture, record)  # a path and its array dream alike (test_dream_accepts_path_pil_array_and_tensor)
    assert read_settings(picture)["weights"] == "lite.pth"
    monkeypatch.chdir(folder)
    assert main(["dream", str(src), "-o", str(again), "--settings", str(picture), "--quiet"]) == 0
    assert np.array_equal(np.asarray(Image.open(again)), np.asarray(Image.open(picture)))
    assert read_settings(again)["extra"]["weights_sha256"] == record["extra"]["weights_sha256"]


@pytest.mark.parametrize("ext", [".png", ".tif"])
def test_16bit_colour_in_gives_16bit_colour_out_with_settings(tmp_path, ext):
    import tifffile

    from inceptionism.cli import main
    from inceptionism.io import read_settings, save_image
    from inceptionism.io.highbit import read_png16, write_png16

    # a smooth 16-bit gradient: its 8-bit view would have at most 256 levels per channel
    ramp = np.linspace(0, 1, 40 * 56, dtype=np.float64).reshape(40, 56)
    pixels = np.rint(np.dstack([ramp, ramp[::-1], ramp.T.reshape(40, 56)]) * 65535).astype(np.uint16)
    src = tmp_path / f"in{ext}"
    if ext == ".png":
        with src.open("wb") as handle:
            write_png16(handle, pixels, {}, None)
    else:
        tifffile.imwrite(src, pixels, photometric="rgb", metadata=None)
    before = src.read_bytes()

    def read16(path):
        return read_png16(path) if ext == ".png" else tifffile.imread(path)

    # the Python API: an 8-bit PIL image that inceptionism.io.save_image writes at 16 bits
    result = dream(src, **FAST)
    assert result.mode == "RGB" and result.size == (56, 40)
    api_out = save_image(result, tmp_path / f"api{ext}", json.loads(result.info["inceptionism"]))
    # the command line
    cli_out = tmp_path / f"cli{ext}"
    fast = ["--octaves", "2", "--steps", "2", "--min-size", "16", "--quiet"]
    assert main(["dream", str(src), "-o", str(cli_out), *fast]) == 0
    for out in (api_out, cli_out):
        values = read16(out)
        assert values.dtype == np.uint16 and values.shape == (40, 56, 3)
        assert len(np.unique(values)) > 256 and len(np.unique(values[..., 0])) > 256
        assert np.abs(values.astype(int) - pixels).mean() > 2 * 257  # it dreamed
        assert read_settings(out)["steps"] == 2
    np.testing.assert_array_equal(read16(api_out), read16(cli_out))
    assert src.read_bytes() == before
