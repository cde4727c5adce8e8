import json

import pytest

from inceptionism.config import PRESETS, DreamConfig, parse_layers, preset
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
    with pytest.raises(ConfigError, match=words.replace("(", r"\(")):
        DreamConfig(**change).validate()


def test_unknown_setting_suggests_the_right_one():
    with pytest.raises(ConfigError, match="did you mean 'octaves'"):
        DreamConfig.from_dict({"octavs": 3})


def test_parse_layers_accepts_spaces_commas_and_weights():
    assert parse_layers(["block8:0.5,block10", "head:2"]) == [("block8", 0.5), ("block10", 1.0), ("head", 2.0)]
    assert parse_layers([]) == []


def test_presets():
    assert set(PRESETS) >= {"default", "seed", "classic"}
    seed = preset("seed")
    assert seed.model == "inception_v3" and seed.layers == ("mixed3", "mixed5")
    assert seed.loss == "mean" and seed.grad_norm == "std"
    with pytest.raises(ConfigError, match="unknown preset"):
        preset("nope")
