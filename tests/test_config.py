import inspect
import json
import re
import warnings

import pytest

from inceptionism import objectives
from inceptionism.cli import build_parser, config_from_args, main
from inceptionism.config import STEP_SIZE_MAX, STEP_SIZE_WARN, ConfigWarning, DreamConfig, parse_layers
from inceptionism.errors import ConfigError


def test_defaults_validate_and_round_trip_through_json():
    cfg = DreamConfig(layers=("block8:0.5", "block10"), seed=7).validate()
    back = DreamConfig.from_dict(json.loads(json.dumps(cfg.to_dict())))
    assert back == cfg


@pytest.mark.parametrize(
    ("change", "words"),
    [
        ({"steps": -1}, "--steps must be at least 1"),
        ({"steps": 0}, "--steps"),
        ({"octaves": 0}, "--octaves must be at least 1"),
        ({"step_size": 0.0}, "--step-size must be greater than 0"),
        ({"step_size": -0.1}, "--step-size"),
        ({"step_size": float("nan")}, "finite"),
        ({"step_size": 5.0}, "--step-size must be at most 0.2, got 5 (usually 0.002 (subtle) to 0.04 (strong))"),
        ({"octave_scale": 1.0}, "--octave-scale must be greater than 1"),
        ({"tile_size": 8}, "--tile-size"),
        ({"jitter": -3}, "--jitter"),
        ({"loss": "max"}, "--loss must be one of"),
        ({"device": "tpu"}, "--device"),
        ({"precision": "int8"}, "--precision"),
        ({"max_memory": "lots"}, "--max-memory"),
        ({"layers": ("block10:x",)}, "layer weight"),
    ],
)
def test_invalid_values_get_a_clear_message(change, words):
    with pytest.raises(ConfigError, match=re.escape(words)):
        DreamConfig(**change).validate()


def test_unknown_setting_suggests_the_right_one():
    with pytest.raises(ConfigError, match="did you mean 'octaves'"):
        DreamConfig.from_dict({"octavs": 3})


def test_parse_layers_accepts_spaces_commas_and_weights():
    assert parse_layers(["block8:0.5,block10", "head:2"]) == [("block8", 0.5), ("block10", 1.0), ("head", 2.0)]
    assert parse_layers([]) == []


def test_a_large_step_size_warns_with_the_sensible_range():
    with pytest.warns(ConfigWarning, match=r"--step-size 0.1 is large: .* rainbow noise \(usually 0.002 .* to 0.04"):
        DreamConfig(step_size=0.1).validate()
    with pytest.warns(ConfigWarning):
        DreamConfig(step_size=STEP_SIZE_MAX).validate()  # the largest allowed


@pytest.mark.parametrize("step_size", [0.002, 0.005, 0.012, STEP_SIZE_WARN])
def test_sensible_step_sizes_are_quiet(step_size):
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        DreamConfig(step_size=step_size).validate()


def test_cli_refuses_a_step_size_that_makes_static_in_one_line(tmp_path, capsys):
    out = tmp_path / "out.png"
    code = main(["dream", str(tmp_path / "in.png"), "-o", str(out), "--step-size", "5", "--quiet"])
    captured = capsys.readouterr()
    assert code == 2 and captured.out == "" and not out.exists()
    assert captured.err.count("\n") == 1 and "--step-size must be at most 0.2" in captured.err


def test_cli_warns_about_a_large_step_size_as_the_api_does():
    args = build_parser().parse_args(["dream", "in.png", "--step-size", "0.1"])
    with pytest.warns(ConfigWarning, match="--step-size 0.1 is large"):
        assert config_from_args(args).step_size == 0.1


def test_one_default_loss_for_the_api_the_cli_and_the_objectives():
    cli_default = config_from_args(build_parser().parse_args(["dream", "in.png"])).loss
    assert DreamConfig().loss == cli_default == objectives.DEFAULT_LOSS
    for fn in (objectives.layer, objectives.channel, objectives.layers):
        assert inspect.signature(fn).parameters["loss"].default == objectives.DEFAULT_LOSS, fn.__name__


def test_an_fft_render_gets_enough_steps_unless_some_are_chosen():
    from inceptionism.api import make_config
    from inceptionism.cli import build_parser, config_from_args
    from inceptionism.config import FFT_STEPS

    assert make_config(noise="64x64", param="fft").steps == FFT_STEPS  # 12 octave steps would render grey mush
    assert make_config(noise="64x64", param="fft", steps=40).steps == 40
    assert make_config(noise="64x64", param="pixel").steps == DreamConfig().steps
    args = build_parser().parse_args(["dream", "--noise", "64x64", "--param", "fft", "-o", "x.png"])
    assert config_from_args(args).steps == FFT_STEPS
    args = build_parser().parse_args(["dream", "--noise", "64x64", "--param", "fft", "--steps", "9", "-o", "x.png"])
    assert config_from_args(args).steps == 9
