"""Tests for loading Keras InceptionV3 legacy .h5 weights into torchvision's Inception3.

The TensorFlow tests run only where tensorflow is importable (a separate venv; see ``test_matches_keras``).
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import h5py
import numpy as np
import pytest
import torch
import torchvision
from torchvision.models.feature_extraction import create_feature_extractor

from inceptionism.errors import WeightsError
from inceptionism.models.keras_h5 import (
    KERAS_CONV_ORDER,
    KERAS_MIXED_ALIASES,
    keras_compatible,
    load_keras_inception_v3_h5,
    save_keras_inception_v3_h5,
)

RETURN_NODES = {"Mixed_6a": "mixed3", "Mixed_6c": "mixed5"}


def _inception() -> torchvision.models.Inception3:
    return torchvision.models.Inception3(aux_logits=False, transform_input=False, init_weights=False).eval()


def _randomise_bn(model: torch.nn.Module, generator: torch.Generator) -> None:
    """Give every batch norm non-trivial statistics (gamma stays 1, as in Keras' scale=False)."""
    for module in model.modules():
        if isinstance(module, torch.nn.BatchNorm2d):
            n = module.num_features
            module.bias.data = torch.randn(n, generator=generator) * 0.1
            module.running_mean = torch.randn(n, generator=generator) * 0.1
            module.running_var = torch.rand(n, generator=generator) + 0.5


@pytest.fixture(scope="module")
def state_dict() -> dict[str, torch.Tensor]:
    torch.manual_seed(0)
    model = _inception()
    _randomise_bn(model, torch.Generator().manual_seed(1))
    return dict(model.state_dict())


@pytest.fixture(scope="module")
def weights_file(state_dict: dict[str, torch.Tensor], tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("keras") / "inception_v3_notop.h5"
    save_keras_inception_v3_h5(state_dict, path)
    return path


@pytest.fixture
def copy(weights_file: Path, tmp_path: Path) -> Path:
    path = tmp_path / "copy.h5"
    shutil.copy(weights_file, path)
    return path


def _assert_same(loaded: dict[str, torch.Tensor], expected: dict[str, torch.Tensor]) -> None:
    want = {k: v for k, v in expected.items() if not k.startswith("fc.")}
    assert list(loaded) == list(want)
    for key, value in want.items():
        assert loaded[key].dtype == value.dtype, key
        assert torch.equal(loaded[key], value), key


def test_round_trip(weights_file: Path, state_dict: dict[str, torch.Tensor]) -> None:
    loaded = load_keras_inception_v3_h5(weights_file)
    _assert_same(loaded, state_dict)
    model = _inception()
    assert model.load_state_dict(loaded, strict=False).missing_keys == ["fc.weight", "fc.bias"]


def test_file_layout_is_keras_legacy(weights_file: Path) -> None:
    with h5py.File(weights_file, "r") as f:
        names = [n.decode() for n in f.attrs["layer_names"]]
        assert names[:4] == ["conv2d_1", "batch_normalization_1", "conv2d_2", "batch_normalization_2"]
        assert len(names) == 2 * 94
        assert list(f["conv2d_1"].attrs["weight_names"]) == [b"conv2d_1/kernel:0"]
        assert f["conv2d_1/conv2d_1/kernel:0"].shape == (3, 3, 3, 32)  # HWIO
        bn = [n.decode() for n in f["batch_normalization_94"].attrs["weight_names"]]
        assert bn == [f"batch_normalization_94/{w}:0" for w in ("beta", "moving_mean", "moving_variance")]


@pytest.mark.parametrize(("first_number", "with_gamma"), [(0, False), (95, True)])
def test_numbering_offset_and_gamma(
    first_number: int, with_gamma: bool, state_dict: dict[str, torch.Tensor], tmp_path: Path
) -> None:
    """Numbering may start at ``conv2d`` (no suffix) or anywhere; a stored gamma is used, not replaced by 1."""
    if with_gamma:
        state_dict = {**state_dict, "Mixed_7c.branch_pool.bn.weight": torch.full((192,), 2.0)}
    path = tmp_path / "w.h5"
    save_keras_inception_v3_h5(state_dict, path, first_number=first_number, with_gamma=with_gamma)
    with h5py.File(path, "r") as f:
        assert ("conv2d" in f) == (first_number == 0)
        assert f"conv2d_{first_number + 93}" in f
    _assert_same(load_keras_inception_v3_h5(path), state_dict)


def test_whole_model_file_with_model_weights_group(weights_file: Path, tmp_path: Path) -> None:
    path = tmp_path / "model.h5"
    with h5py.File(weights_file, "r") as src, h5py.File(path, "w") as dst:
        group = dst.create_group("model_weights")
        for key, value in src.attrs.items():
            group.attrs[key] = value
        for name in src:
            src.copy(src[name], group)
    assert load_keras_inception_v3_h5(path)["Conv2d_1a_3x3.conv.weight"].shape == (32, 3, 3, 3)


def _drop_layer(path: Path, layer: str) -> None:
    with h5py.File(path, "r+") as f:
        f.attrs["layer_names"] = np.array([n for n in f.attrs["layer_names"] if n.decode() != layer])
        del f[layer]


def test_missing_layer_in_the_middle(copy: Path) -> None:
    _drop_layer(copy, "conv2d_50")
    with pytest.raises(WeightsError, match="Conv2D layer number 50 is missing"):
        load_keras_inception_v3_h5(copy)


def test_missing_last_layer(copy: Path) -> None:
    _drop_layer(copy, "batch_normalization_94")
    with pytest.raises(WeightsError, match=r"expected 94 BatchNormalization layers .* found 93"):
        load_keras_inception_v3_h5(copy)


def test_wrong_shape(copy: Path) -> None:
    with h5py.File(copy, "r+") as f:
        del f["conv2d_8/conv2d_8/kernel:0"]  # Mixed_5b.branch5x5_2
        f["conv2d_8"].create_dataset("conv2d_8/kernel:0", data=np.zeros((3, 3, 64, 96), np.float32))
    with pytest.raises(WeightsError, match=r"conv2d_8/kernel has shape \(3, 3, 64, 96\), expected \(5, 5, 48, 64\)"):
        load_keras_inception_v3_h5(copy)


def test_wrong_bn_shape(copy: Path) -> None:
    with h5py.File(copy, "r+") as f:
        name = "batch_normalization_3/moving_variance:0"
        del f["batch_normalization_3"][name]
        f["batch_normalization_3"].create_dataset(name, data=np.ones(7, np.float32))
    with pytest.raises(WeightsError, match="batch_normalization_3/moving_variance has shape"):
        load_keras_inception_v3_h5(copy)


def test_not_h5(tmp_path: Path) -> None:
    path = tmp_path / "weights.h5"
    path.write_text("this is not HDF5\n")
    with pytest.raises(WeightsError, match="not a readable HDF5"):
        load_keras_inception_v3_h5(path)


def test_h5_but_not_keras(tmp_path: Path) -> None:
    path = tmp_path / "weights.h5"
    with h5py.File(path, "w") as f:
        f["x"] = np.zeros(3)
    with pytest.raises(WeightsError, match="not Keras weights"):
        load_keras_inception_v3_h5(path)


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(WeightsError, match="not found"):
        load_keras_inception_v3_h5(tmp_path / "nope.h5")


def test_error_messages_are_one_line(copy: Path) -> None:
    _drop_layer(copy, "conv2d_7")
    with pytest.raises(WeightsError) as info:
        load_keras_inception_v3_h5(copy)
    assert "\n" not in str(info.value)


def test_conv_order_covers_torchvision() -> None:
    modules = [n for n, m in _inception().named_modules() if type(m).__name__ == "BasicConv2d"]
    assert len(KERAS_CONV_ORDER) == len(set(KERAS_CONV_ORDER)) == 94
    assert sorted(KERAS_CONV_ORDER) == sorted(modules)


def test_aliases_name_torchvision_modules() -> None:
    names = dict(_inception().named_children())
    assert [f"mixed{i}" for i in range(11)] == list(KERAS_MIXED_ALIASES)
    assert all(v in names for v in KERAS_MIXED_ALIASES.values())


def test_keras_compatible_rewrites_avg_pools() -> None:
    model = _inception()
    extractor = create_feature_extractor(model, return_nodes=RETURN_NODES)
    x = torch.rand(1, 3, 75, 75) * 2 - 1
    with torch.no_grad():
        before = extractor(x)
        fixed = keras_compatible(extractor)
        after = fixed(x)
    assert fixed is extractor
    pools = [n for n in fixed.graph.nodes if n.target is torch.nn.functional.avg_pool2d]
    assert len(pools) == 5  # Mixed_5b/5c/5d and Mixed_6b/6c
    assert all(n.kwargs["count_include_pad"] is False for n in pools)
    assert not torch.equal(before["mixed5"], after["mixed5"])


def test_keras_compatible_matches_exclusive_average() -> None:
    class Pool(torch.nn.Module):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return torch.nn.functional.avg_pool2d(x, 3, 1, 1, False, True)

    graph = keras_compatible(torch.fx.symbolic_trace(Pool()))
    x = torch.ones(1, 1, 4, 5)
    assert torch.equal(graph(x), x)  # with padding counted, the border would be < 1


# --- against real Keras (TensorFlow needed) ---------------------------------------------------------------


def _keras_model_and_file(tmp_path: Path) -> tuple[Any, Path]:
    """A randomly initialised Keras InceptionV3 (notop) and its weights in the legacy h5 layout."""
    keras = pytest.importorskip("keras")
    pytest.importorskip("tensorflow")
    keras.utils.set_random_seed(0)
    model = keras.applications.InceptionV3(include_top=False, weights=None)
    rng = np.random.default_rng(0)
    for layer in model.layers:
        if isinstance(layer, keras.layers.Conv2D):
            (kernel,) = layer.get_weights()
            fan_in = np.prod(kernel.shape[:3])
            layer.set_weights([rng.normal(0, np.sqrt(2 / fan_in), kernel.shape).astype(np.float32)])
        elif isinstance(layer, keras.layers.BatchNormalization):
            n = layer.get_weights()[0].shape[0]
            values = {
                "beta": rng.normal(0, 0.1, n),
                "moving_mean": rng.normal(0, 0.1, n),
                "moving_variance": rng.uniform(0.5, 1.5, n),
            }
            layer.set_weights([values[w.name].astype(np.float32) for w in layer.weights])
    path = tmp_path / "keras_inception_v3_notop.h5"
    try:
        from keras.src.legacy.saving import legacy_h5_format  # Keras 3
    except ImportError:  # Keras 2 (tf.keras) writes the legacy layout itself
        model.save_weights(str(path), save_format="h5")
    else:
        with h5py.File(path, "w") as f:
            legacy_h5_format.save_weights_to_hdf5_group(f, model)
    return model, path


def _keras_number(name: str) -> int:
    """Keras' auto-naming counter: ``conv2d`` -> 0, ``conv2d_7`` -> 7."""
    head, _, tail = name.rpartition("_")
    return int(tail) if head and tail.isdigit() else 0


def _keras_features(keras_model: Any) -> Any:
    keras = pytest.importorskip("keras")
    outputs = [keras_model.get_layer(name).output for name in RETURN_NODES.values()]
    return keras.Model(keras_model.input, outputs)


@pytest.mark.tensorflow
@pytest.mark.filterwarnings("ignore::DeprecationWarning")
@pytest.mark.parametrize("size", [(299, 299), (225, 375)])
def test_matches_keras(size: tuple[int, int], tmp_path: Path) -> None:
    """Keras and the converted torch model agree on mixed3/mixed5 (run in a venv with tensorflow-cpu)."""
    keras_model, path = _keras_model_and_file(tmp_path)
    keras_features = _keras_features(keras_model)

    model = _inception()
    model.load_state_dict(load_keras_inception_v3_h5(path), strict=False)
    x = np.random.default_rng(1).uniform(-1, 1, (1, *size, 3)).astype(np.float32)
    expected = [np.asarray(t) for t in keras_features(x, training=False)]
    with torch.no_grad():
        inputs = torch.from_numpy(x).permute(0, 3, 1, 2)
        plain = create_feature_extractor(model, return_nodes=RETURN_NODES)(inputs)
        fixed = keras_compatible(create_feature_extractor(model, return_nodes=RETURN_NODES))(inputs)

    for name, want in zip(RETURN_NODES.values(), expected, strict=True):
        got = fixed[name].permute(0, 2, 3, 1).numpy()
        assert got.shape == want.shape
        err = float(np.abs(got - want).max())
        err_plain = float(np.abs(plain[name].permute(0, 2, 3, 1).numpy() - want).max())
        scale = float(np.abs(want).max())
        print(f"{size} {name}: max|keras| {scale:.3g}, max abs err {err:.3g} (fixed), {err_plain:.3g} (plain)")
        assert err <= 1e-3
        assert err_plain > 1e-2  # without keras_compatible the borders differ


@pytest.mark.tensorflow
@pytest.mark.filterwarnings("ignore::DeprecationWarning")
def test_loads_keras_whole_model_h5(tmp_path: Path) -> None:
    """A Keras ``model.save("x.h5")`` file (weights under ``model_weights``) loads like the weights file."""
    keras_model, path = _keras_model_and_file(tmp_path)
    whole = tmp_path / "model.h5"
    keras_model.save(str(whole))
    a, b = load_keras_inception_v3_h5(path), load_keras_inception_v3_h5(whole)
    assert all(torch.equal(a[k], b[k]) for k in a)


@pytest.mark.tensorflow
@pytest.mark.filterwarnings("ignore::DeprecationWarning")
def test_keras_reads_our_file(state_dict: dict[str, torch.Tensor], tmp_path: Path) -> None:
    """Keras loads a file written by save_keras_inception_v3_h5 (by layer name) and computes the same."""
    keras = pytest.importorskip("keras")
    pytest.importorskip("tensorflow")
    from keras.src.legacy.saving import legacy_h5_format

    keras_model = keras.applications.InceptionV3(include_top=False, weights=None)
    numbers = {
        kind: min(_keras_number(layer.name) for layer in keras_model.layers if isinstance(layer, cls))
        for kind, cls in (("conv", keras.layers.Conv2D), ("bn", keras.layers.BatchNormalization))
    }
    if numbers["conv"] != numbers["bn"]:
        pytest.skip(f"Keras numbered conv2d and batch_normalization layers differently here: {numbers}")
    path = tmp_path / "ours.h5"
    save_keras_inception_v3_h5(state_dict, path, first_number=numbers["conv"])
    with h5py.File(path, "r") as f:
        legacy_h5_format.load_weights_from_hdf5_group_by_name(f, keras_model)

    model = _inception()
    model.load_state_dict(state_dict)
    x = np.random.default_rng(2).uniform(-1, 1, (1, 160, 200, 3)).astype(np.float32)
    expected = [np.asarray(t) for t in _keras_features(keras_model)(x, training=False)]
    with torch.no_grad():
        got = keras_compatible(create_feature_extractor(model, return_nodes=RETURN_NODES))(
            torch.from_numpy(x).permute(0, 3, 1, 2)
        )
    for name, want in zip(RETURN_NODES.values(), expected, strict=True):
        assert float(np.abs(got[name].permute(0, 2, 3, 1).numpy() - want).max()) <= 1e-3


@pytest.mark.tensorflow
@pytest.mark.filterwarnings("ignore::DeprecationWarning")
def test_public_path_matches_keras(tmp_path: Path) -> None:
    """``load_model("inception_v3", weights=<.h5>)`` and its default (fast) extractor in image space match Keras."""
    from inceptionism.models import load_model

    keras_model, path = _keras_model_and_file(tmp_path)
    keras_features = _keras_features(keras_model)
    model = load_model("inception_v3", weights=path)
    assert model.preprocessing.mean == (0.5, 0.5, 0.5)  # Keras' x / 127.5 - 1
    image = np.random.default_rng(2).uniform(0, 1, (1, 225, 375, 3)).astype(np.float32)
    expected = [np.asarray(t) for t in keras_features(image * 2 - 1, training=False)]
    with torch.no_grad():
        got = model.extractor(["mixed3", "mixed5"])(torch.from_numpy(image).permute(0, 3, 1, 2))
    for name, want in zip(("mixed3", "mixed5"), expected, strict=True):
        err = float(np.abs(got[name].permute(0, 2, 3, 1).numpy() - want).max())
        print(f"public path {name}: max abs err {err:.3g}")
        assert err <= 1e-3
