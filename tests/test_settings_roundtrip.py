"""Every creative control is recorded in the picture's settings, and dreaming again from them gives the same
pixels bit for bit: ``inceptionism dream INPUT --settings picture.png`` (no input for a dream from noise)."""

from __future__ import annotations

import hashlib
import json

import numpy as np
import pytest
from PIL import Image

from inceptionism.cli import main
from inceptionism.io import read_settings

FAST = ["--octaves", "2", "--steps", "2", "--min-size", "16", "--quiet"]

CONTROLS = {
    "channels": ["--layers", "block10[3,7]:0.5", "block8[top2]"],
    "class": ["--class", "goldfish"],
    "guide": ["--guide", "guide.png"],
    "mask": ["--mask", "half.png", "--mask-strength", "0.75"],
    "mask-layers": ["--mask", "half.png", "--mask-layers", "block3[0:4]"],
    "keep-colors": ["--keep-colors"],
    "seamless": ["--seamless"],
    "grad-blur": ["--grad-blur", "1.5"],
    "laplacian": ["--grad-norm", "laplacian"],
    "tv": ["--tv", "0.1"],
    "l2-pull": ["--l2-pull", "5"],
    "noise+pixel": ["--noise", "40x32", "--layers", "block10[3]"],
    "noise+fft": ["--noise", "40x32", "--param", "fft", "--steps", "4", "--layers", "block10[3]"],
}
RECORDED = {  # what each control leaves in the settings (besides reproducing)
    "channels": ("layers", ["block10[3,7]:0.5", "block8[top2]"]),
    "class": ("classes", ["goldfish"]),
    "guide": ("guide", "guide.png"),
    "mask": ("mask_strength", 0.75),
    "mask-layers": ("mask_layers", ["block3[0:4]"]),
    "keep-colors": ("keep_colors", True),
    "seamless": ("seamless", True),
    "grad-blur": ("grad_blur", 1.5),
    "laplacian": ("grad_norm", "laplacian"),
    "tv": ("tv", 0.1),
    "l2-pull": ("l2_pull", 5.0),
    "noise+pixel": ("noise", "40x32"),
    "noise+fft": ("param", "fft"),
}


@pytest.fixture
def folder(tmp_path, monkeypatch):
    """A folder with a photo, a guide and a mask, made the working folder: settings name files without folders."""
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[0:48, 0:64]
    photo = np.stack([xx * 4, yy * 5, (xx + yy) * 2], -1) + rng.integers(0, 40, (48, 64, 3))
    Image.fromarray(np.clip(photo, 0, 255).astype(np.uint8)).save(tmp_path / "photo.png")
    Image.fromarray(rng.integers(0, 256, (40, 40, 3), dtype=np.uint8)).save(tmp_path / "guide.png")
    half = np.repeat([[0] * 32 + [255] * 32], 48, axis=0).astype(np.uint8)
    Image.fromarray(half).save(tmp_path / "half.png")
    monkeypatch.chdir(tmp_path)
    return tmp_path


@pytest.mark.slow
@pytest.mark.parametrize("control", list(CONTROLS))
def test_each_control_reproduces_bit_for_bit_from_the_pictures_own_settings(folder, control, capsys):
    args = CONTROLS[control]
    inputs = [] if "--noise" in args else ["photo.png"]
    assert main(["dream", *inputs, "-o", "first.png", *FAST, *args]) == 0, capsys.readouterr().err
    settings = read_settings("first.png")
    key, value = RECORDED[control]
    assert settings[key] == value
    if "--mask" in args:
        assert settings["mask"] == "half.png"
        assert settings["extra"]["mask_sha256"] == hashlib.sha256((folder / "half.png").read_bytes()).hexdigest()
    assert main(["dream", *inputs, "-o", "again.png", "--settings", "first.png", "--quiet"]) == 0
    first, again = (np.asarray(Image.open(folder / name)) for name in ("first.png", "again.png"))
    assert np.array_equal(first, again)
    assert json.loads(json.dumps(read_settings("again.png"))) == settings


def test_a_changed_mask_file_is_refused_not_silently_used(folder, capsys):
    assert main(["dream", "photo.png", "-o", "first.png", *FAST, "--mask", "half.png"]) == 0
    Image.fromarray(np.full((48, 64), 255, np.uint8)).save(folder / "half.png")
    assert main(["dream", "photo.png", "-o", "again.png", "--settings", "first.png", "--quiet"]) != 0
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "half.png" in err[0] and "SHA-256" in err[0]
    # Naming the mask again uses the file as it is now.
    cmd = ["dream", "photo.png", "-o", "again.png", "--settings", "first.png", "--mask", "half.png", "--quiet"]
    assert main(cmd) == 0
