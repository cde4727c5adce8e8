"""Tests for the model registry: listing, patterns, unknown names, registration."""

from __future__ import annotations

import fnmatch

import pytest

from inceptionism.errors import ConfigError
from inceptionism.models import ModelSpec, get_model_spec, list_models, register_model, registry

REGISTERED = (
    "efficientnet-lite0",
    "efficientnet-lite1",
    "efficientnet-lite2",
    "inception_v3",
    "googlenet",
    "vgg16",
    "vgg19",
    "resnet50",
)


@pytest.fixture
def scratch_registry(monkeypatch: pytest.MonkeyPatch) -> dict:
    """A copy of the registry, so registrations in a test do not leak into others."""
    copy = dict(registry._REGISTRY)
    monkeypatch.setattr(registry, "_REGISTRY", copy)
    return copy


def test_list_models_includes_every_registered_name() -> None:
    names = list_models()
    assert set(REGISTERED) <= set(names)
    assert len(names) == len(set(names))
    assert names == list_models("*")


def test_list_models_keeps_registration_order() -> None:
    names = list_models()
    lite = [names.index(f"efficientnet-lite{i}") for i in range(3)]
    assert lite == sorted(lite)
    assert names.index("vgg16") < names.index("vgg19")


@pytest.mark.parametrize(
    ("pattern", "expected", "excluded"),
    [
        ("efficientnet-lite*", {"efficientnet-lite0", "efficientnet-lite1", "efficientnet-lite2"}, {"googlenet"}),
        ("incep*", {"inception_v3"}, {"googlenet", "efficientnet-lite0"}),
        ("vgg1?", {"vgg16", "vgg19"}, {"resnet50"}),
        ("*net*", {"efficientnet-lite0", "googlenet", "resnet50"}, {"vgg16", "inception_v3"}),
        ("efficientnet-lite[02]", {"efficientnet-lite0", "efficientnet-lite2"}, {"efficientnet-lite1"}),
        ("googlenet", {"googlenet"}, {"inception_v3"}),
        ("nothing-like-this*", set(), set(REGISTERED)),
    ],
)
def test_list_models_patterns(pattern: str, expected: set[str], excluded: set[str]) -> None:
    found = list_models(pattern)
    assert expected <= set(found)
    assert not excluded & set(found)
    assert all(fnmatch.fnmatch(name, pattern) for name in found)
    assert found == [name for name in list_models() if name in found]  # registration order kept


@pytest.mark.parametrize("name", REGISTERED)
def test_every_registered_spec_is_consistent(name: str) -> None:
    spec = get_model_spec(name)
    assert isinstance(spec, ModelSpec)
    assert spec.name == name
    assert spec.weights.filename
    assert spec.default_layers
    for layer in spec.default_layers:  # defaults are readable names or aliases, never typos
        assert layer in spec.layers or layer in spec.aliases
    for alias, target in spec.aliases.items():
        assert target in spec.layers, f"alias {alias} → {target} points nowhere"
    assert spec.native_size >= 32


@pytest.mark.parametrize(
    ("name", "suggestion"),
    [("googlenett", "'googlenet'"), ("efficientnet-lite3", "'efficientnet-lite"), ("inception-v3", "'inception_v3'")],
)
def test_unknown_model_suggests_close_names(name: str, suggestion: str) -> None:
    with pytest.raises(ConfigError, match="did you mean") as info:
        get_model_spec(name)
    message = str(info.value)
    assert f"unknown model {name!r}" in message
    assert suggestion in message
    assert "tv:<name>" in message


def test_unknown_model_without_close_names() -> None:
    with pytest.raises(ConfigError, match="unknown model 'zzzzzz'") as info:
        get_model_spec("zzzzzz")
    assert "did you mean" not in str(info.value)


def test_unknown_model_is_a_config_error_and_value_error() -> None:
    with pytest.raises(ValueError):
        get_model_spec("no-such-model")


def test_register_model_adds_a_name(scratch_registry: dict) -> None:
    real = get_model_spec("googlenet")

    @register_model("test-only-net")
    def factory() -> ModelSpec:
        return real

    assert "test-only-net" in list_models()
    assert list_models("test-only-*") == ["test-only-net"]
    assert get_model_spec("test-only-net") is real
    assert factory() is real  # the decorator returns the factory unchanged


def test_register_model_rejects_duplicates(scratch_registry: dict) -> None:
    before = dict(scratch_registry)
    with pytest.raises(ValueError, match="'googlenet' is registered twice"):

        @register_model("googlenet")
        def again() -> ModelSpec:
            raise AssertionError("never called")

    assert scratch_registry == before  # the original entry is kept
