"""The controls gallery stays true: every command parses with the CLI and resolves to a valid config, every input
and picture it names exists, every built-in preset with offline weights has a picture, and the table lists them
all. The dreams themselves are not run here (examples/make_gallery.py regenerates them)."""

import importlib.util
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from inceptionism.cli import build_parser, config_from_args
from inceptionism.io import read_settings
from inceptionism.presets import builtin_names

ROOT = Path(__file__).parent.parent


def _load_gallery():
    spec = importlib.util.spec_from_file_location("make_gallery", ROOT / "examples" / "make_gallery.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["make_gallery"] = module  # dataclasses look their module up by name
    spec.loader.exec_module(module)
    return module


gallery = _load_gallery()
ENTRIES = gallery.GALLERY_ENTRIES


def test_names_are_unique_and_pictures_live_in_the_gallery():
    names = [e.name for e in ENTRIES]
    assert len(names) == len(set(names))
    for e in ENTRIES:
        assert e.picture.parent == Path("examples/gallery")


@pytest.mark.parametrize("entry", ENTRIES, ids=lambda e: e.name)
def test_every_command_parses_and_its_config_is_valid(entry):
    args = build_parser().parse_args(entry.argv(entry.picture))  # SystemExit on a malformed option
    assert Path(args.output) == entry.picture
    if args.command == "dream":
        config_from_args(args)  # raises ConfigError on a bad value (unknown preset, bad layer syntax, …)


@pytest.mark.parametrize("entry", ENTRIES, ids=lambda e: e.name)
def test_every_input_and_picture_exists(entry):
    args = build_parser().parse_args(entry.argv(entry.picture))
    named = [*getattr(args, "input", []), getattr(args, "guide", None), getattr(args, "mask", None)]
    for path in filter(None, named):
        assert (ROOT / path).is_file(), f"{entry.name}: {path} is missing"
    assert (ROOT / entry.picture).is_file(), f"{entry.picture} is missing: run python examples/make_gallery.py"


@pytest.mark.parametrize("entry", [e for e in ENTRIES if e.args[0] == "dream"], ids=lambda e: e.name)
def test_every_dream_picture_carries_the_settings_of_its_command(entry):
    args = build_parser().parse_args(entry.argv(entry.picture))
    settings = read_settings(ROOT / entry.picture)
    expected = config_from_args(args).to_dict()
    for key in ("grad_norm", "steps", "step_size", "seamless", "keep_colors", "noise", "param"):
        if key in expected:
            assert settings[key] == expected[key], f"{entry.name}: {key} differs from its command"


@pytest.mark.parametrize("entry", [e for e in ENTRIES if e.tile > 1], ids=lambda e: e.name)
def test_a_tiled_picture_shows_its_tile_repeated(entry):
    with Image.open(ROOT / entry.picture) as im:
        left, right = im.crop((0, 0, im.width // 2, im.height)), im.crop((im.width // 2, 0, im.width, im.height))
        top, bottom = im.crop((0, 0, im.width, im.height // 2)), im.crop((0, im.height // 2, im.width, im.height))
        for a, b in ((left, right), (top, bottom)):
            b = b.resize(a.size)
            diff = np.abs(np.asarray(a, np.int16) - np.asarray(b, np.int16)).mean()
            assert diff < 8, f"{entry.name}: the halves differ by {diff:.1f} levels on average"


def test_tiling_repeats_and_scales_down():
    tile = Image.new("RGB", (500, 300), (200, 10, 10))
    out = gallery._tiled(tile, 2)
    assert out.size == (gallery.TILED_LONG_SIDE, round(600 * gallery.TILED_LONG_SIDE / 1000))


def test_every_offline_preset_has_a_picture():
    pictured = {e.name.removeprefix("preset-") for e in ENTRIES if e.name.startswith("preset-")}
    expected = set(builtin_names()) - {"default"} - set(gallery.PRESETS_WITHOUT_PICTURE)
    assert pictured == expected


def test_the_table_lists_every_picture_with_its_command():
    table = gallery.table()
    for e in ENTRIES:
        assert f"![{e.name}]({e.picture.as_posix()})" in table
        assert e.command().replace("|", "\\|") in table
    assert table.count("\n") == len(ENTRIES) + 1


def test_an_unknown_name_is_one_line():
    with pytest.raises(SystemExit, match="unknown picture 'mush'; choose from default"):
        gallery.entries_named(["mush"])


def test_the_mask_is_black_in_the_middle_and_white_at_the_corners(tmp_path):
    path = tmp_path / "mask.png"
    gallery.write_mask(path, (60, 40))
    with Image.open(path) as im:
        assert im.mode == "L" and im.size == (60, 40)
        assert im.getpixel((30, 20)) == 0 and im.getpixel((0, 0)) == 255
    assert path.stat().st_mode & 0o777 == 0o644  # written through a private temporary file, then shared


def test_the_gallery_readme_is_the_scripts_table():
    readme = (ROOT / "examples" / "gallery" / "README.md").read_text()
    assert readme == gallery.README_HEAD + gallery.table(folder="") + "\n", "run python examples/make_gallery.py"
