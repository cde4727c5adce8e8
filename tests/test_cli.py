"""The command line, end to end: subprocess for real runs, in-process ``main`` for the many bad inputs."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from inceptionism.cli import main
from support import REAL_HOME

FAST = ["--octaves", "2", "--steps", "2", "--min-size", "16", "--quiet"]


def run_cli(*args, timeout=240):
    return subprocess.run(
        [sys.executable, "-m", "inceptionism", *map(str, args)], capture_output=True, text=True, timeout=timeout
    )


@pytest.fixture
def photo(tmp_path):
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[0:48, 0:64]
    img = np.stack([xx * 4, yy * 5, (xx + yy) * 2], -1) + rng.integers(0, 40, (48, 64, 3))
    path = tmp_path / "photo.png"
    Image.fromarray(np.clip(img, 0, 255).astype(np.uint8)).save(path)
    return path


@pytest.mark.slow
def test_dream_end_to_end_writes_png_with_settings_and_reproduces(photo, tmp_path):
    out, settings = tmp_path / "dream.png", tmp_path / "settings.json"
    before = photo.read_bytes()
    r = run_cli("dream", photo, "-o", out, "--seed", "5", "--settings-out", settings, *FAST)
    assert r.returncode == 0, r.stderr
    assert photo.read_bytes() == before  # the input is never touched
    with Image.open(out) as im:
        assert im.size == (64, 48) and im.mode == "RGB"
        embedded = json.loads(im.text["inceptionism"])
        first = np.asarray(im)
    assert embedded["seed"] == 5 and embedded["model"] == "efficientnet-lite0" and embedded["version"]
    assert json.loads(settings.read_text()) == embedded
    # Settings from the PNG itself reproduce the run bit for bit; a JSON file does too.
    for source in (out, settings):
        again = tmp_path / f"again-{source.suffix[1:]}.png"
        assert main(["dream", str(photo), "-o", str(again), "--settings", str(source), "--quiet"]) == 0
        with Image.open(again) as im:
            assert np.array_equal(np.asarray(im), first)


def test_options_override_settings_file_and_layers_accept_weights(photo, tmp_path, capsys):
    settings = tmp_path / "s.json"
    settings.write_text(json.dumps({"steps": 1, "octaves": 1, "seed": 9}))
    out = tmp_path / "o.jpg"
    code = main(["dream", str(photo), "-o", str(out), "--settings", str(settings), "--seed", "2", "--quiet",
                 "--layers", "block8:0.5,block10", "head:0.1"])  # fmt: skip
    assert code == 0, capsys.readouterr().err
    with Image.open(out) as im:
        assert im.format == "JPEG" and im.size == (64, 48)
        record = json.loads(im.info["comment"])["inceptionism"]
    assert record["seed"] == 2 and record["steps"] == 1
    assert record["layers"] == ["block8:0.5,block10", "head:0.1"]
    assert "0.5 * l2(block8)" in record["objective"] and "0.1 * l2(head)" in record["objective"]


def _fails(capsys, argv, code, *words):
    assert main(argv) == code
    err = capsys.readouterr().err
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert "Traceback" not in err
    for w in words:
        assert w.lower() in err.lower(), err
    return err


def test_bad_files(photo, tmp_path, capsys):
    out = str(tmp_path / "o.png")
    (tmp_path / "empty.png").write_bytes(b"")
    (tmp_path / "notes.txt").write_text("not an image")
    data = photo.read_bytes()
    (tmp_path / "cut.png").write_bytes(data[: len(data) // 2])
    _fails(capsys, ["dream", str(tmp_path / "missing.jpg"), "-o", out], 1, "does not exist")
    _fails(capsys, ["dream", str(tmp_path), "-o", out], 1, "folder")
    _fails(capsys, ["dream", str(tmp_path / "empty.png"), "-o", out], 1, "empty")
    _fails(capsys, ["dream", str(tmp_path / "notes.txt"), "-o", out], 1, "not an image")
    _fails(capsys, ["dream", str(tmp_path / "cut.png"), "-o", out], 1, "truncated")
    _fails(capsys, ["dream", str(photo), "-o", out, "--max-pixels", "1000"], 1, "--max-pixels")
    assert not Path(out).exists()


def test_bad_outputs(photo, tmp_path, capsys):
    before = photo.read_bytes()
    _fails(capsys, ["dream", str(photo), "-o", str(photo)], 1, "overwrite")
    assert photo.read_bytes() == before
    _fails(capsys, ["dream", str(photo), "-o", str(tmp_path / "nope" / "o.png")], 1, "does not exist")
    _fails(capsys, ["dream", str(photo), "-o", str(tmp_path / "o.gif")], 1, ".png")
    if os.geteuid() != 0:  # root writes anywhere
        ro = tmp_path / "ro"
        ro.mkdir(mode=0o500)
        _fails(capsys, ["dream", str(photo), "-o", str(ro / "o.png")], 1, "writable")


def test_overwrite_flag_allows_replacing_the_input(photo, capsys):
    assert main(["dream", str(photo), "-o", str(photo), "--overwrite", *FAST]) == 0
    with Image.open(photo) as im:
        assert "inceptionism" in im.text


@pytest.mark.parametrize(
    ("args", "words"),
    [
        (["--steps", "-1"], "--steps"),
        (["--octaves", "0"], "--octaves"),
        (["--step-size", "0"], "--step-size"),
        (["--step-size", "-1"], "--step-size"),
        (["--octave-scale", "1"], "--octave-scale"),
        (["--model", "efficientnet-lite9"], "did you mean"),
        (["--layers", "blok10"], "did you mean 'block10'"),
        (["--steps", "many"], "invalid int"),
        (["--device", "quantum"], "--device"),
        (["--preset", "nope"], "unknown preset 'nope'"),
    ],
)
def test_bad_settings(photo, tmp_path, capsys, args, words):
    try:
        code = main(["dream", str(photo), "-o", str(tmp_path / "o.png"), *args])
    except SystemExit as e:  # argparse's own checks exit from inside parsing
        code = e.code
    assert code == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and words in err and "Traceback" not in err
    assert not (tmp_path / "o.png").exists()


def test_a_memory_cap_too_small_for_the_image_says_what_it_needs_before_any_work(tmp_path, capsys):
    big = tmp_path / "big.png"
    Image.fromarray(np.full((1400, 1400, 3), 128, np.uint8)).save(big)
    args = ["dream", str(big), "-o", str(tmp_path / "o.png"), "--max-memory", "100MiB", *FAST]
    _fails(capsys, args, 2, "--max-memory 100MiB is too small for a 1400×1400 dream")
    assert not (tmp_path / "o.png").exists()


def test_bad_settings_file(photo, tmp_path, capsys):
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    _fails(capsys, ["dream", str(photo), "-o", str(tmp_path / "o.png"), "--settings", str(bad)], 1, "json")
    typo = tmp_path / "typo.json"
    typo.write_text(json.dumps({"octavs": 2}))
    _fails(capsys, ["dream", str(photo), "-o", str(tmp_path / "o.png"), "--settings", str(typo)], 2, "octaves")


def test_ctrl_c_stops_cleanly_and_writes_nothing(photo, tmp_path):
    out = tmp_path / "o.png"
    big = tmp_path / "big.png"
    Image.open(photo).resize((320, 240)).save(big)
    proc = subprocess.Popen(
        [sys.executable, "-m", "inceptionism", "dream", str(big), "-o", str(out), "--steps", "200"],
        stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    assert proc.stderr is not None
    deadline = time.time() + 120
    while time.time() < deadline and "step" not in proc.stderr.read(64):
        pass
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130
    assert "interrupted" in err and "Traceback" not in err
    assert not out.exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["big.png", "photo.png"]  # no partial file


@pytest.mark.slow
def test_layers_and_models_commands():
    r = run_cli("layers", "efficientnet-lite0")
    assert r.returncode == 0, r.stderr
    rows = {line.split()[0]: line.split() for line in r.stdout.splitlines()[2:]}
    assert rows["block10"][1:3] == ["112", "16"] and rows["head"][1] == "1280"
    r = run_cli("models")
    assert r.returncode == 0 and "efficientnet-lite0" in r.stdout and "yes" in r.stdout
    assert "googlenet" in r.stdout and "inception_v3" in r.stdout
    r = run_cli("layers", "inception_v3")  # no weights here: the structure is still listed, with a note
    assert r.returncode == 0, r.stderr
    assert "Mixed_6a" in r.stdout and "mixed3" in r.stdout and "none found" in r.stdout
    assert "download" in r.stderr and r.stderr.count("\n") == 1
    r = run_cli("layers", "nosuchnet")
    assert r.returncode == 2 and r.stderr.count("\n") == 1 and "unknown model" in r.stderr


PROBE = """
import json, os, pathlib, torch
from inceptionism.models.cpu import native
print(json.dumps({"home": str(pathlib.Path.home()), "hub": torch.hub.get_dir(), "native": str(native.cache_dir()),
                  "offline": os.environ.get("INCEPTIONISM_OFFLINE")}))
"""


def test_subprocesses_get_a_temporary_home_and_caches_and_stay_offline(isolated_env, photo, tmp_path):
    r = subprocess.run([sys.executable, "-c", PROBE], capture_output=True, text=True, timeout=120, check=True)
    seen = json.loads(r.stdout)
    assert seen["home"] == isolated_env["HOME"] != str(REAL_HOME)
    assert Path(seen["hub"]) == Path(isolated_env["TORCH_HOME"]) / "hub"
    assert seen["native"] == isolated_env["INCEPTIONISM_CACHE"] and seen["offline"] == "1"
    # A model whose weights are not packaged is not downloaded: one line says where to put the file.
    r = run_cli("dream", photo, "-o", tmp_path / "o.png", "--model", "inception_v3", *FAST)
    assert r.returncode != 0 and r.stderr.count("\n") == 1 and "Traceback" not in r.stderr
    assert "offline" in r.stderr and isolated_env["TORCH_HOME"] in r.stderr
    assert not (Path(isolated_env["TORCH_HOME"]) / "hub" / "checkpoints").exists()


def test_help_documents_every_option():
    r = run_cli("dream", "--help")
    assert r.returncode == 0
    for opt in ["-o", "--output", "--model", "--layers", "--octaves", "--octave-scale", "--steps", "--step-size",
                "--seed", "--tile-size", "--device", "--settings", "--settings-out", "--overwrite", "--max-pixels",
                "--max-memory", "--precision", "--preset", "--weights"]:  # fmt: skip
        assert opt in r.stdout


@pytest.mark.parametrize("kind", ["16bit", "cmyk", "palette", "exif", "gray"])
def test_every_mode_dreams_end_to_end(kind, tmp_path, capsys):
    rng = np.random.default_rng(3)
    rgb = rng.integers(0, 255, (40, 56, 3), dtype=np.uint8)
    src = tmp_path / ("in.jpg" if kind in ("cmyk", "exif") else "in.png")
    out = tmp_path / ("out.jpg" if kind == "cmyk" else "out.png")
    expected_size, expected_mode = (56, 40), {"16bit": "I;16", "cmyk": "CMYK", "palette": "RGB", "gray": "L"}
    if kind == "16bit":
        Image.fromarray(rgb[..., 0].astype(np.uint16) * 257).save(src)
    elif kind == "cmyk":
        Image.fromarray(rgb).convert("CMYK").save(src)
    elif kind == "palette":
        Image.fromarray(rgb).convert("P").save(src)
    elif kind == "gray":
        Image.fromarray(rgb).convert("L").save(src)
    else:  # EXIF orientation 6: stored 56×40, shown 40×56
        exif = Image.Exif()
        exif[0x0112] = 6
        Image.fromarray(rgb).save(src, exif=exif)
        expected_size = (40, 56)
    assert main(["dream", str(src), "-o", str(out), *FAST]) == 0, capsys.readouterr().err
    with Image.open(out) as im:
        assert im.size == expected_size
        assert im.mode == expected_mode.get(kind, "RGB")


# --- objectives: channels, classes, guides, priors, expressions (issue #15) -------------------------------------


@pytest.mark.parametrize(
    ("args", "code", "words"),
    [
        (["--class", "goldfsh"], 2, ["unknown imagenet class", "did you mean 'goldfish'"]),
        (["--class", "1000"], 2, ["out of range", "0–999"]),
        (["--layers", "block10[112]"], 2, ["channel 112", "block10", "112 channels"]),
        (["--layers", "block10[7,31"], 2, ["brackets"]),
        (["--guide", "missing.jpg"], 1, ["guide image", "does not exist"]),
        (["--guide", "photo.png", "--layers", "block10[1]"], 2, ["whole layers"]),
        (["--objective", "l2(block10) / 2"], 2, ["division", "not allowed"]),
        (["--objective", "cls(1)", "--layers", "block8"], 2, ["--objective replaces --layers"]),
        (["--tv", "-1"], 2, ["--tv"]),
    ],
)
def test_bad_objective_options_are_one_line(photo, tmp_path, capsys, monkeypatch, args, code, words):
    monkeypatch.chdir(tmp_path)
    out = tmp_path / "o.png"
    _fails(capsys, ["dream", str(photo), "-o", str(out), *FAST, *args], code, *words)
    assert not out.exists()


def test_objective_options_are_recorded_as_one_expression_that_reproduces(photo, tmp_path, capsys):
    out, again = tmp_path / "dream.png", tmp_path / "again.png"
    args = ["--layers", "block10[0:4]:0.5", "block8[top2]", "--class", "goldfish", "--tv", "0.1", "--tile-size", "64"]
    assert main(["dream", str(photo), "-o", str(out), *FAST, *args]) == 0, capsys.readouterr().err
    with Image.open(out) as im:
        record, first = json.loads(im.text["inceptionism"]), np.asarray(im)
    assert record["objective"] == "0.5 * l2(block10[0:4]) + l2(block8[top2]) + cls(goldfish) + 0.1 * tv()"
    assert record["classes"] == ["goldfish"] and record["tv"] == 0.1
    assert main(["dream", str(photo), "-o", str(again), "--settings", str(out), "--quiet"]) == 0
    with Image.open(again) as im:
        assert np.array_equal(np.asarray(im), first)
    # An option that builds an objective replaces the recorded expression.
    assert main(["dream", str(photo), "-o", str(again), "--settings", str(out), "--quiet", "--layers", "block8"]) == 0
    with Image.open(again) as im:
        assert json.loads(im.text["inceptionism"])["objective"] == "l2(block8) + cls(goldfish) + 0.1 * tv()"


def test_a_guided_dream_records_the_guides_name_and_digest(photo, tmp_path):
    from inceptionism.io import file_sha256

    guide = tmp_path / "guide.png"
    Image.new("RGB", (30, 20), (200, 30, 30)).save(guide)
    out = tmp_path / "o.png"
    assert main(["dream", str(photo), "-o", str(out), *FAST, "--guide", str(guide), "--layers", "block8"]) == 0
    with Image.open(out) as im:
        record = json.loads(im.text["inceptionism"])
    assert record["objective"] == "guide(block8)" and record["guide"] == "guide.png"
    assert record["extra"]["guide_sha256"] == file_sha256(guide)
