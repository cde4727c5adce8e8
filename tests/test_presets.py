import json
from pathlib import Path

import pytest

from inceptionism.cli import build_parser, config_from_args, main
from inceptionism.config import DreamConfig
from inceptionism.errors import ConfigError
from inceptionism.presets import builtin_names, list_presets, load_preset, preset


def test_builtins_load_and_validate():
    names = builtin_names()
    assert names[0] == "default"
    assert {"default", "seed", "classic", "subtle", "deep"} <= set(names)
    for p in list_presets():
        assert p.description, p.name
        p.config()  # every built-in is a valid config
    assert preset("default") == DreamConfig()


def test_seed_is_the_articles_recipe():
    seed = preset("seed")
    assert seed.model == "inception_v3" and seed.layers == ("mixed3", "mixed5")
    assert (seed.loss, seed.grad_norm, seed.octaves, seed.octave_scale, seed.steps) == ("mean", "std", 5, 1.3, 50)
    assert seed.jitter == 0


def test_unknown_name_suggests_one():
    with pytest.raises(ConfigError, match="unknown preset 'sed'; did you mean 'seed'"):
        preset("sed")


def test_users_own_file(tmp_path: Path):
    mine = tmp_path / "look.toml"
    mine.write_text('description = "mine"\nsteps = 7\nlayers = ["block8:0.5", "block10"]\n')
    cfg = preset(str(mine))
    assert cfg.steps == 7 and cfg.layers == ("block8:0.5", "block10")
    assert load_preset(mine).description == "mine"


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("stepz = 3\n", "unknown setting 'stepz'"),
        ("steps = 0\n", "--steps must be at least 1"),
        ("steps = [\n", "not valid TOML"),
    ],
)
def test_bad_user_file_names_the_problem(tmp_path: Path, text: str, message: str):
    bad = tmp_path / "bad.toml"
    bad.write_text(text)
    with pytest.raises(ConfigError, match=message):
        preset(bad)


def test_missing_file():
    with pytest.raises(ConfigError, match="not found"):
        preset("no/such/look.toml")


def test_resolution_order_defaults_preset_settings_flags(tmp_path: Path):
    look = tmp_path / "look.toml"
    look.write_text("steps = 7\nstep_size = 0.01\njitter = 5\n")
    settings = tmp_path / "s.json"
    settings.write_text(json.dumps({"step_size": 0.02, "jitter": 9}))
    args = build_parser().parse_args(
        ["dream", "in.png", "--preset", str(look), "--settings", str(settings), "--jitter", "11"]
    )
    cfg = config_from_args(args)
    assert cfg.steps == 7  # the preset's, nothing later set it
    assert cfg.step_size == 0.02  # the settings file beats the preset
    assert cfg.jitter == 11  # the flag beats both
    assert cfg.octave_scale == DreamConfig().octave_scale  # untouched: the default


def test_cli_lists_presets(capsys: pytest.CaptureFixture[str]):
    assert main(["presets"]) == 0
    out = capsys.readouterr().out
    for name in builtin_names():
        assert f"\n{name} " in f"\n{out}"
    assert "model=inception_v3" in out


def test_cli_unknown_preset_is_one_line(capsys: pytest.CaptureFixture[str], tmp_path: Path):
    src = tmp_path / "in.png"
    src.write_bytes(b"")
    assert main(["dream", str(src), "--preset", "nope"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "unknown preset 'nope'" in err
