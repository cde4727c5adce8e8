"""The image-space controls in real dreams: mask, region objective, keep colours, seamless, gradient blur, L2 pull,
noise starts; their fast path, their one-line errors and the per-call checks a sequence pays once."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from inceptionism import engine, recipes
from inceptionism.api import dream, get_model
from inceptionism.cli import main
from inceptionism.colors import to_luma_chroma
from inceptionism.config import DreamConfig
from inceptionism.engine import Dreamer, build_objective
from inceptionism.models.cpu.program import Program
from inceptionism.seamless import seam_error

FAST = {"octaves": 2, "steps": 2, "min_size": 16, "tile_size": 64}
CLI_FAST = ["--octaves", "2", "--steps", "2", "--min-size", "16", "--tile-size", "64", "--quiet"]


@pytest.fixture(scope="module")
def lite0():
    return get_model("efficientnet-lite0")


@pytest.fixture
def photo(tmp_path):
    """A colourful 64 × 48 picture with texture to dream on."""
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[0:48, 0:64]
    img = np.stack([xx * 4, yy * 5, (xx + yy) * 2], -1) + rng.integers(0, 40, (48, 64, 3))
    path = tmp_path / "photo.png"
    Image.fromarray(np.clip(img, 0, 255).astype(np.uint8)).save(path)
    return path


def _grey(path, values):
    Image.fromarray(np.asarray(values, dtype=np.uint8)).save(path)
    return path


def _pixels(path_or_image):
    im = path_or_image if isinstance(path_or_image, Image.Image) else Image.open(path_or_image)
    return np.asarray(im.convert("RGB"), dtype=np.int16)


def _change(a, b):
    return float(np.abs(a.astype(np.float64) - b).mean())


def test_keep_colors_leaves_the_inputs_chroma(photo):
    before = torch.from_numpy(_pixels(photo)).permute(2, 0, 1)[None].double() / 255
    plain = torch.from_numpy(_pixels(dream(photo, **FAST))).permute(2, 0, 1)[None].double() / 255
    kept = torch.from_numpy(_pixels(dream(photo, keep_colors=True, **FAST))).permute(2, 0, 1)[None].double() / 255
    _, cb0, cr0 = to_luma_chroma(before)
    y1, cb1, cr1 = to_luma_chroma(kept)
    _, cb2, _ = to_luma_chroma(plain)
    # 8-bit rounding of R, G and B moves Cb or Cr by at most half a level (their weights' magnitudes sum to 1).
    assert float((cb1 - cb0).abs().max()) <= 0.5 / 255 + 1e-9
    assert float((cr1 - cr0).abs().max()) <= 0.5 / 255 + 1e-9
    assert float((cb2 - cb0).abs().max()) > 10 / 255  # without it the dream brings its own colours
    assert float((y1 - to_luma_chroma(before)[0]).abs().mean()) > 2 / 255  # and the luminance was dreamt


def test_a_black_mask_leaves_its_pixels_exactly_as_they_were_in_the_written_file(photo, tmp_path):
    half = np.repeat([[0] * 32 + [255] * 32], 48, axis=0)  # black left half, white right half
    mask, out = _grey(tmp_path / "half.png", half), tmp_path / "out.png"
    assert main(["dream", str(photo), "-o", str(out), "--mask", str(mask), *CLI_FAST]) == 0
    before, after = _pixels(photo), _pixels(out)
    assert np.array_equal(after[:, :32], before[:, :32])
    assert _change(after[:, 32:], before[:, 32:]) > 3


def test_a_grey_mask_dreams_less_than_white(photo, tmp_path):
    before = _pixels(photo)
    change = {}
    for level in (255, 128):
        mask = _grey(tmp_path / f"m{level}.png", np.full((48, 64), level))
        change[level] = _change(_pixels(dream(photo, mask=str(mask), **FAST)), before)
    assert 0.5 < change[128] < 0.7 * change[255]


def test_mask_strength_scales_the_mask(photo, tmp_path):
    mask = str(_grey(tmp_path / "white.png", np.full((48, 64), 255)))
    before = _pixels(photo)
    full = _pixels(dream(photo, mask=mask, **FAST))
    assert np.array_equal(full, _pixels(dream(photo, **FAST)))  # a white mask changes nothing
    assert np.array_equal(_pixels(dream(photo, mask=mask, mask_strength=0.0, **FAST)), before)
    assert _change(_pixels(dream(photo, mask=mask, mask_strength=0.5, **FAST)), before) < 0.7 * _change(full, before)


def test_mask_layers_dream_another_objective_inside_the_mask_and_the_default_outside(photo, tmp_path):
    half = np.repeat([[0] * 32 + [255] * 32], 48, axis=0)  # black left half, white right half
    mask = str(_grey(tmp_path / "half.png", half))
    before = _pixels(photo)
    plain = _pixels(dream(photo, **FAST))
    region = _pixels(dream(photo, mask=mask, mask_layers=["block3"], **FAST))
    assert _change(region[:, :24], before[:, :24]) > 3  # the black side dreams too: the default objective
    assert _change(region[:, 40:], before[:, 40:]) > 3
    assert _change(region[:, 40:], plain[:, 40:]) > 2  # the white side another objective: another dream


def test_seamless_output_wraps(lite0, photo):
    image = torch.from_numpy(_pixels(photo)).permute(2, 0, 1)[None].float() / 255
    cfg = DreamConfig(**FAST, seamless=True).validate()
    out = Dreamer(lite0, build_objective(cfg, lite0), cfg, torch.device("cpu")).run(image)
    assert seam_error(image) > 3  # the photo's opposite edges differ
    assert seam_error(out) < 1.5  # the dream's do not, more than any neighbours
    assert (out - image).abs().mean() > 0.02


def test_grad_blur_smooths_the_dreams_strokes(photo):
    def roughness(path_or_image):
        change = _pixels(path_or_image).astype(np.float64) - _pixels(photo)
        return np.abs(np.diff(change, axis=1)).mean() / (np.abs(change).mean() + 1e-9)

    assert roughness(dream(photo, grad_blur=2.0, **FAST)) < 0.7 * roughness(dream(photo, **FAST))


def test_l2_pull_keeps_the_dream_near_the_input(photo):
    before = _pixels(photo)
    free = _change(_pixels(dream(photo, steps=4, octaves=1, jitter=0)), before)
    pulled = dream(photo, steps=4, octaves=1, jitter=0, l2_pull=30.0)
    assert _change(_pixels(pulled), before) < 0.6 * free


@pytest.mark.parametrize("param", ["pixel", "fft"])
def test_dreams_from_noise_have_the_size_given_and_follow_the_seed(param):
    a = dream(None, noise="40x24", param=param, steps=3, octaves=1, layers=["block10[3]"])
    assert a.size == (40, 24) and a.mode == "RGB"
    again = dream(None, noise="40x24", param=param, steps=3, octaves=1, layers=["block10[3]"])
    assert np.array_equal(_pixels(a), _pixels(again))
    other = dream(None, noise="40x24", param=param, steps=3, octaves=1, layers=["block10[3]"], seed=1)
    assert not np.array_equal(_pixels(a), _pixels(other))
    assert _pixels(a).std() > 2  # not a flat grey


@pytest.mark.slow
def test_the_cpu_gradient_program_runs_under_every_control(lite0, photo, tmp_path, monkeypatch):
    ran: list[int] = []
    reverse = Program.reverse
    monkeypatch.setattr(Program, "reverse", lambda self, *a: ran.append(1) or reverse(self, *a))
    ramp = np.linspace(0, 255, 64).round()[None].repeat(48, 0)
    image = torch.from_numpy(_pixels(photo)).permute(2, 0, 1)[None].float() / 255
    controls = {
        "layers": ("block10[3,7]",),
        "tv": 0.1,
        "l2_pull": 1.0,
        "grad_blur": 1.0,
        "grad_norm": "laplacian",
        "keep_colors": True,
        "mask_layers": ("block3",),
        "mask": str(_grey(tmp_path / "ramp.png", ramp)),
    }
    for extra in ({}, {"seamless": True}):
        cfg = DreamConfig(**{**FAST, **controls, **extra}).validate()
        dreamer = Dreamer(lite0, build_objective(cfg, lite0), cfg, torch.device("cpu"))
        assert dreamer.extractor.backend is not None and dreamer.extractor.backend.active
        ran.clear()
        dreamer.run(image)
        assert len(ran) >= 2 * 2 * 2  # octaves × steps × (objective and region), each on one tile or more


def test_a_second_dream_does_not_check_or_measure_the_same_objective_again(lite0, photo, monkeypatch):
    probes, measures = [], []
    probe, measure = recipes.probe_objective, engine.measure_bytes_per_pixel
    monkeypatch.setattr(recipes, "probe_objective", lambda *a: probes.append(1) or probe(*a))
    monkeypatch.setattr(engine, "measure_bytes_per_pixel", lambda *a: measures.append(1) or measure(*a))
    settings = {"octaves": 1, "steps": 1, "layers": ["block8[5]:0.25"], "tv": 0.125}  # an objective no test uses
    dream(photo, model=lite0, **settings)
    assert probes == [1] and measures == [1]
    dream(photo, model=lite0, **settings, seed=4)
    assert probes == [1] and measures == [1]
    dream(photo, model=lite0, **{**settings, "tv": 0.25})  # another objective: checked and measured
    assert probes == [1, 1] and measures == [1, 1]


def _fails(capsys, argv, *words):
    assert main(argv) != 0
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("inceptionism: error:"), err
    for word in words:
        assert word in err[0], err[0]


def test_bad_control_values_get_one_line_and_a_nonzero_exit(photo, tmp_path, capsys):
    out = str(tmp_path / "out.png")
    broken = tmp_path / "broken.png"
    broken.write_text("not an image")
    red = tmp_path / "red.png"
    Image.fromarray(np.full((48, 64, 3), (200, 10, 10), np.uint8)).save(red)
    grey = str(_grey(tmp_path / "grey.png", np.full((48, 64), 128)))
    dream_ = ["dream", str(photo), "-o", out, "--quiet"]
    _fails(capsys, [*dream_, "--mask", str(broken)], "mask", "not an image")
    _fails(capsys, [*dream_, "--mask", str(tmp_path / "missing.png")], "does not exist")
    _fails(capsys, [*dream_, "--mask", str(red)], "grayscale")
    _fails(capsys, [*dream_, "--mask-layers", "block3"], "--mask-layers needs --mask")
    _fails(capsys, [*dream_, "--mask", grey, "--mask-strength", "2"], "--mask-strength")
    _fails(capsys, [*dream_, "--mask", grey, "--mask-layers", "block99"], "block99")
    _fails(capsys, [*dream_, "--grad-blur", "-1"], "--grad-blur")
    _fails(capsys, [*dream_, "--l2-pull", "-1"], "--l2-pull")
    _fails(capsys, ["dream", "--noise", "64", "-o", out], "--noise", "WIDTHxHEIGHT")
    _fails(capsys, ["dream", "--noise", "4x4", "-o", out], "--noise sides")
    _fails(capsys, ["dream", "--noise", "64x64"], "-o")
    _fails(capsys, [*dream_, "--noise", "64x64"], "one or the other")
    _fails(capsys, [*dream_, "--param", "fft"], "--noise")
    _fails(capsys, ["dream", "--noise", "64x64", "--param", "fft", "--seamless", "-o", out], "--seamless")
    _fails(capsys, ["dream", "-o", out], "INPUT")
    _fails(capsys, [*dream_, "--mask", grey, "-o", grey, "--overwrite"], "overwrite")
    assert not (tmp_path / "out.png").exists()
