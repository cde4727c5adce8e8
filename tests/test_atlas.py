"""The channel atlas: channel ranges, the labelled grid, and ``inceptionism atlas`` end to end."""

import json
import subprocess
import sys

import numpy as np
import pytest
import torch
from PIL import Image

from inceptionism.atlas import (
    ATLAS_CHANNELS,
    BACKGROUND,
    atlas,
    atlas_grid,
    channel_count,
    channel_label,
    parse_channels,
    render_channels,
)
from inceptionism.cli import main
from inceptionism.errors import ConfigError
from inceptionism.models import load_model


@pytest.fixture(scope="module")
def model():
    return load_model("efficientnet-lite0")


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (None, range(0, 40)),
        ("0:8", range(0, 8)),
        ("30:", range(30, 40)),
        (":3", range(0, 3)),
        ("7", range(7, 8)),
        (":", range(40)),
    ],
)
def test_parse_channels(text, expected):
    assert parse_channels(text, 40, "block3") == expected


def test_default_is_the_first_64_channels():
    assert parse_channels(None, 192, "block12") == range(ATLAS_CHANNELS) == range(64)


@pytest.mark.parametrize(
    ("text", "words"),
    [
        ("0:41", "out of range: block3 has 40 channels, numbered 0 to 39"),
        ("40", "out of range"),
        ("5:5", "empty"),
        ("a:b", "expected A:B"),
        ("-1:3", "expected A:B"),
    ],
)
def test_bad_channels_say_why(text, words):
    with pytest.raises(ConfigError, match=words):
        parse_channels(text, 40, "block3")


def test_label_is_the_layer_syntax_and_parses_back():
    from inceptionism.config import parse_layers

    label = channel_label("block12", 7)
    assert label == "block12[7]"
    assert parse_layers([label]) == [("block12[7]", 1.0)]


def _tiles(n, size, seed=0):
    return torch.rand(n, 3, size, size, generator=torch.Generator().manual_seed(seed))


def test_grid_places_every_tile_with_its_label_underneath():
    tiles = _tiles(5, 32)
    labels = [channel_label("block3", c) for c in range(5)]
    sheet = atlas_grid(tiles, labels, title="a title")
    assert sheet.mode == "RGB"
    px = np.asarray(sheet)
    expected = (tiles.permute(0, 2, 3, 1) * 255).round().to(torch.uint8).numpy()
    # 5 tiles → 3 columns × 2 rows; find each tile's exact pixels in the sheet and text-coloured pixels below it.
    found = []
    for tile in expected:
        hits = np.argwhere((px[:-31, :-31] == tile[0, 0]).all(-1))
        spot = next((int(y), int(x)) for y, x in hits if np.array_equal(px[y : y + 32, x : x + 32], tile))
        found.append(spot)
        y, x = spot
        label_band = px[y + 32 : y + 32 + 18, x : x + 32]
        assert (label_band != BACKGROUND).any(axis=-1).sum() > 20  # text drawn under the tile
    rows = sorted({y for y, _ in found})
    cols = sorted({x for _, x in found})
    assert len(rows) == 2 and len(cols) == 3
    assert found[0][0] > 12  # below the title line
    assert found == sorted(found)  # row-major, in channel order


def test_grid_widens_cells_for_long_labels_and_checks_counts():
    narrow = atlas_grid(_tiles(2, 8), ["a", "b"])
    wide = atlas_grid(_tiles(2, 8), ["block15[300]", "block15[301]"])
    assert wide.width > narrow.width and wide.height == narrow.height
    with pytest.raises(ValueError, match="2 tiles but 1 labels"):
        atlas_grid(_tiles(2, 8), ["a"])


def test_render_channels_chunks_give_one_tile_per_channel(model):
    seen = []
    tiles = render_channels(model, "block3", [3, 0, 9], size=16, steps=2, chunk=2, callback=seen.append)
    assert tiles.shape == (3, 3, 16, 16)
    assert [p.done for p in seen] == [1, 2, 3, 4] and all(p.total == 4 for p in seen)
    assert [list(p.channels) for p in seen] == [[3, 0], [3, 0], [9], [9]]


def test_atlas_checks_layer_and_channels_before_work(model):
    with pytest.raises(ConfigError, match="out of range: block3 has 40 channels"):
        atlas(model, "block3", [0, 40], steps=1)
    with pytest.raises(ConfigError, match="unknown layer 'blok3'"):
        channel_count(model, "blok3")
    with pytest.raises(ConfigError, match="--channels"):
        channel_count(model, "block3[7]")


def _run_cli(*args):
    return subprocess.run(
        [sys.executable, "-m", "inceptionism", *map(str, args)], capture_output=True, text=True, timeout=300
    )


def test_cli_atlas_end_to_end(tmp_path):
    out = tmp_path / "atlas.png"
    r = _run_cli("atlas", "efficientnet-lite0", "block3", "-o", out, "--channels", "4:6", "--size", "24",
                 "--steps", "2", "--seed", "3")  # fmt: skip
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == str(out)
    assert "channels 4–5" in r.stderr  # the progress bar
    with Image.open(out) as im:
        assert im.mode == "RGB" and im.width >= 2 * 24 and im.height > 24
        record = json.loads(im.text["inceptionism"])
    assert record["command"] == "atlas" and record["layer"] == "block3" and record["channels"] == "4:6"
    assert record["seed"] == 3 and record["steps"] == 2 and record["param"] == "fft"
    assert list(tmp_path.iterdir()) == [out]  # no temporary file left behind


def test_cli_atlas_refuses_out_of_range_channels_in_one_line(tmp_path, capsys):
    out = tmp_path / "atlas.png"
    code = main(["atlas", "block3", "-o", str(out), "--channels", "0:999", "--quiet"])
    err = capsys.readouterr().err
    assert code != 0
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err
    assert "block3 has 40 channels" in err
    assert not out.exists()


def test_cli_atlas_refuses_an_unknown_layer_in_one_line(tmp_path, capsys):
    code = main(["atlas", "blok3", "-o", str(tmp_path / "a.png"), "--quiet"])
    err = capsys.readouterr().err
    assert code != 0 and len(err.strip().splitlines()) == 1 and "unknown layer 'blok3'" in err
