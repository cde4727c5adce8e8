"""Keyframed schedules: exact at keys, linear midpoints, smoothstep's zero slope at keys, held outside; bad files."""

from __future__ import annotations

import json

import pytest

from inceptionism.config import DreamConfig, parse_layers
from inceptionism.errors import ConfigError
from inceptionism.sequences.schedule import Schedule, Track, schedulable


def test_linear_is_exact_at_keys_halfway_at_midpoints_and_holds_outside():
    track = Track(((10, 1.0), (20, 3.0), (40, -1.0)))
    assert [track.value(f) for f in (0, 10, 20, 40, 99)] == [1.0, 1.0, 3.0, -1.0, -1.0]
    assert track.value(15) == pytest.approx(2.0)
    assert track.value(30) == pytest.approx(1.0)
    assert track.value(12) == pytest.approx(1.4)


def test_smooth_has_zero_slope_at_keys_and_meets_linear_halfway():
    smooth = Track(((0, 0.0), (100, 1.0), (200, 0.0)), "smooth")
    linear = Track(smooth.keys)
    assert smooth.value(50) == pytest.approx(0.5) == linear.value(50)
    assert smooth.value(100) == 1.0
    for key in (0, 100, 200):
        before = smooth.value(key) - smooth.value(key - 1) if key else 0.0
        after = smooth.value(key + 1) - smooth.value(key)
        assert abs(before) < 1e-3 and abs(after) < 1e-3  # slope ~0 on both sides (linear's is 0.01 per frame)
    assert smooth.value(25) == pytest.approx(3 * 0.25**2 - 2 * 0.25**3)
    assert smooth.value(25) < linear.value(25)  # eases in


def test_toml_file_with_file_wide_and_per_setting_interpolation(tmp_path):
    path = tmp_path / "s.toml"
    path.write_text(
        'interpolation = "smooth"\n[zoom]\n0 = 1.0\n10 = 2.0\n'
        '[step_size]\n0 = 0.01\n10 = 0.02\ninterpolation = "linear"\n["layer.block10"]\n5 = 0.5\n'
    )
    s = Schedule.load(path)
    assert s.value("zoom", 5) == pytest.approx(1.5) and s.value("zoom", 2) < 1.2
    assert s.value("step_size", 2) == pytest.approx(0.012)
    assert s.value("layer.block10", 0) == 0.5
    assert s.to_dict()["zoom"] == {"0": 1.0, "10": 2.0, "interpolation": "smooth"}
    assert Schedule.from_dict(s.to_dict()).to_dict() == s.to_dict()  # the metadata form reads back


def test_json_file(tmp_path):
    path = tmp_path / "s.json"
    path.write_text(json.dumps({"rotate": {"0": 0, "4": 8}}))
    assert Schedule.load(path).value("rotate", 1) == pytest.approx(2.0)


def test_configure_applies_dream_settings_rounds_whole_numbers_and_weighs_layers():
    s = Schedule.from_dict(
        {
            "step_size": {"0": 0.01, "2": 0.03},
            "steps": {"0": 2, "2": 5},
            "layer.block10": {"0": 1, "2": 0},
            "zoom": {"0": 2},
        }
    )
    cfg = s.configure(DreamConfig(layers=("block8:0.5",)), 1, default_layers=("block12",))
    assert cfg.step_size == pytest.approx(0.02) and cfg.steps == 4  # 3.5 rounds to even: 4
    assert parse_layers(cfg.layers) == [("block8", 0.5), ("block10", 0.5)]
    defaults = s.configure(DreamConfig(), 2, default_layers=("block12",))
    assert parse_layers(defaults.layers) == [("block12", 1.0), ("block10", 0.0)]


def test_configure_names_the_frame_of_a_bad_value():
    s = Schedule.from_dict({"step_size": {"0": 0.01, "10": -0.01}})
    with pytest.raises(ConfigError, match=r"frame 8.*step-size"):
        s.configure(DreamConfig(), 8)


def test_check_rejects_unknown_settings_and_frames_out_of_range():
    known = schedulable(DreamConfig())
    assert {"zoom", "pan_x", "step_size", "steps", "octaves", "tv"} <= known
    assert "model" not in known and "compile" not in known
    with pytest.raises(ConfigError, match=r"unknown setting 'stepsize'.*did you mean 'step_size'"):
        Schedule.from_dict({"stepsize": {"0": 1}}).check(10, known)
    with pytest.raises(ConfigError, match="frame 10, but there are 10 frames"):
        Schedule.from_dict({"zoom": {"0": 1, "10": 2}}).check(10, known)
    Schedule.from_dict({"zoom": {"0": 1, "9": 2}, "layer.block12[7,31]": {"0": 1}}).check(10, known)
    with pytest.raises(ConfigError, match="no setting 'rotate'"):
        Schedule.from_dict({"zoom": {"0": 1}}).value("rotate", 0)


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ([1, 2], "table of settings"),
        ({}, "names no setting"),
        ({"zoom": 1.05}, "expected a table"),
        ({"zoom": {}}, "no keyframes"),
        ({"zoom": {"first": 1}}, "not a frame number"),
        ({"zoom": {"-1": 1}}, "out of range"),
        ({"zoom": {"0": "fast"}}, "expected a number"),
        ({"zoom": {"0": True}}, "expected a number"),
        ({"zoom": {"0": 1, "00": 2}}, "two keys at frame 0"),
        ({"zoom": {"0": 1}, "interpolation": "cubic"}, "must be one of linear, smooth"),
    ],
)
def test_bad_schedules_are_one_clear_error(data, message):
    with pytest.raises(ConfigError, match=message):
        Schedule.from_dict(data)


def test_bad_files_name_the_file(tmp_path):
    with pytest.raises(ConfigError, match="does not exist"):
        Schedule.load(tmp_path / "missing.toml")
    bad = tmp_path / "bad.toml"
    bad.write_text("[zoom\n")
    with pytest.raises(ConfigError, match=r"bad\.toml is not valid TOML"):
        Schedule.load(bad)
    unknown = tmp_path / "u.json"
    unknown.write_text('{"zoom": {"0": "x"}}')
    with pytest.raises(ConfigError, match=r"u\.json: setting 'zoom'"):
        Schedule.load(unknown)
