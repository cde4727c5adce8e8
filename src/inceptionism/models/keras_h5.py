"""Load the official Keras InceptionV3 weights (legacy ``.h5`` layout) into torchvision's ``Inception3``.

The file users bring is ``inception_v3_weights_tf_dim_ordering_tf_kernels_notop.h5``, the weights behind
``tf.keras.applications.InceptionV3(include_top=False, weights="imagenet")``. Its layout (Keras' "legacy
h5" weights format): a root attribute ``layer_names``; one group per layer, with an attribute ``weight_names``
naming its datasets, e.g. ``conv2d_1/kernel:0`` (HWIO) or ``batch_normalization_1/moving_mean:0``.

Keras names layers by a per-session counter, so numbering may start anywhere (``conv2d``, ``conv2d_1``,
``conv2d_95``...). Layers are matched by the order in which Keras created them, i.e. their numeric suffix;
the order of ``layer_names`` is Keras' topological order, which differs from creation order inside blocks.

The Keras network is the same as torchvision's ``Inception3`` except for one thing: Keras' branch-pool
``AveragePooling2D(3, strides=1, padding="same")`` leaves the padding out of the average, while torchvision's
``F.avg_pool2d(x, 3, 1, 1)`` counts it. :func:`keras_compatible` rewrites a traced model to match Keras.
Keras models take inputs scaled as ``x / 127.5 - 1`` (values in [-1, 1]).
"""

from __future__ import annotations

import itertools
import re
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
import torchvision

from inceptionism.errors import WeightsError

if TYPE_CHECKING:
    import h5py

__all__ = [
    "KERAS_CONV_ORDER",
    "KERAS_MIXED_ALIASES",
    "KERAS_WEIGHTS_FILE",
    "KERAS_WEIGHTS_URL",
    "keras_compatible",
    "load_keras_inception_v3_h5",
    "save_keras_inception_v3_h5",
]

#: The file Keras itself downloads for ``InceptionV3(include_top=False, weights="imagenet")``, and where from.
KERAS_WEIGHTS_FILE = "inception_v3_weights_tf_dim_ordering_tf_kernels_notop.h5"
KERAS_WEIGHTS_URL = f"https://storage.googleapis.com/tensorflow/keras-applications/inception_v3/{KERAS_WEIGHTS_FILE}"


def keras_weights_hint() -> str:
    """The Keras route to InceptionV3 weights, for the message shown when no weights are found."""
    return (
        f"use Keras' weights: download {KERAS_WEIGHTS_URL} (Keras also keeps it in ~/.keras/models/) and pass "
        f"--weights {KERAS_WEIGHTS_FILE} (reading .h5 needs h5py: pip install 'inceptionism[keras]')"
    )


#: Keras InceptionV3 layer names of the concatenated blocks and the torchvision modules that compute them.
KERAS_MIXED_ALIASES: dict[str, str] = {
    "mixed0": "Mixed_5b",
    "mixed1": "Mixed_5c",
    "mixed2": "Mixed_5d",
    "mixed3": "Mixed_6a",
    "mixed4": "Mixed_6b",
    "mixed5": "Mixed_6c",
    "mixed6": "Mixed_6d",
    "mixed7": "Mixed_6e",
    "mixed8": "Mixed_7a",
    "mixed9": "Mixed_7b",
    "mixed10": "Mixed_7c",
}

# The BasicConv2d submodules of each torchvision block, in the order Keras' ``inception_v3.py`` creates the
# matching conv2d/batch_normalization pairs. Spelled out rather than taken from torchvision's registration
# order, so the mapping does not silently follow a change in torchvision.
_STEM = ("Conv2d_1a_3x3", "Conv2d_2a_3x3", "Conv2d_2b_3x3", "Conv2d_3b_1x1", "Conv2d_4a_3x3")
_BLOCK_CONVS: dict[str, tuple[str, ...]] = {
    "A": (
        *("branch1x1", "branch5x5_1", "branch5x5_2"),
        *("branch3x3dbl_1", "branch3x3dbl_2", "branch3x3dbl_3", "branch_pool"),
    ),
    "B": ("branch3x3", "branch3x3dbl_1", "branch3x3dbl_2", "branch3x3dbl_3"),
    "C": (
        *("branch1x1", "branch7x7_1", "branch7x7_2", "branch7x7_3"),
        *(f"branch7x7dbl_{i}" for i in range(1, 6)),
        "branch_pool",
    ),
    "D": ("branch3x3_1", "branch3x3_2", "branch7x7x3_1", "branch7x7x3_2", "branch7x7x3_3", "branch7x7x3_4"),
    "E": (
        *("branch1x1", "branch3x3_1", "branch3x3_2a", "branch3x3_2b"),
        *("branch3x3dbl_1", "branch3x3dbl_2", "branch3x3dbl_3a", "branch3x3dbl_3b", "branch_pool"),
    ),
}
_BLOCKS = (
    ("Mixed_5b", "A"),
    ("Mixed_5c", "A"),
    ("Mixed_5d", "A"),
    ("Mixed_6a", "B"),
    ("Mixed_6b", "C"),
    ("Mixed_6c", "C"),
    ("Mixed_6d", "C"),
    ("Mixed_6e", "C"),
    ("Mixed_7a", "D"),
    ("Mixed_7b", "E"),
    ("Mixed_7c", "E"),
)
#: torchvision BasicConv2d module names in Keras' creation order (94 of them).
KERAS_CONV_ORDER: tuple[str, ...] = _STEM + tuple(
    f"{block}.{conv}" for block, kind in _BLOCKS for conv in _BLOCK_CONVS[kind]
)

_SUFFIX = re.compile(r"^(?P<prefix>.*?)(?:_(?P<num>\d+))?$")
_BN_NAMES = ("gamma", "beta", "moving_mean", "moving_variance")
_BN_TO_TORCH = {
    "gamma": "weight",
    "beta": "bias",
    "moving_mean": "running_mean",
    "moving_variance": "running_var",
}


def _reference_state_dict() -> dict[str, torch.Tensor]:
    """Shapes and dtypes of the target state dict (meta tensors, no memory, no init cost)."""
    with torch.device("meta"):
        model = torchvision.models.Inception3(aux_logits=False, transform_input=False, init_weights=False)
    return {k: v for k, v in model.state_dict().items() if not k.startswith(("fc.", "AuxLogits."))}


def _import_h5py() -> Any:
    try:
        import h5py
    except ImportError:
        raise WeightsError("reading Keras .h5 weights needs the h5py package: pip install h5py") from None
    return h5py


def _read_str_list(group: h5py.Group | h5py.File, name: str) -> list[str]:
    """Read a list-of-strings attribute, including Keras' chunked form (``name0``, ``name1``...)."""
    if name in group.attrs:
        values = list(group.attrs[name])
    else:
        values, chunk = [], 0
        while f"{name}{chunk}" in group.attrs:
            values.extend(group.attrs[f"{name}{chunk}"])
            chunk += 1
        if not chunk:
            raise KeyError(name)
    return [v.decode("utf8") if isinstance(v, bytes) else str(v) for v in values]


def _layer_number(layer: str) -> int:
    """Keras' creation counter from a layer name: ``conv2d`` -> 0, ``conv2d_12`` -> 12."""
    match = _SUFFIX.match(layer)
    assert match is not None  # the pattern matches any string
    return int(match["num"]) if match["num"] is not None else 0


def _short_name(weight_name: str) -> str:
    """``conv2d_1/kernel:0`` -> ``kernel``."""
    return weight_name.rsplit("/", 1)[-1].split(":", 1)[0]


def _sorted_layers(layers: dict[str, dict[str, np.ndarray]], kind: str, source: str) -> list[str]:
    """Layer names ordered by Keras' creation counter; raises on duplicates, gaps and a wrong count."""
    count = len(KERAS_CONV_ORDER)
    by_number: dict[int, str] = {}
    for name in layers:
        number = _layer_number(name)
        if number in by_number:
            raise WeightsError(
                f"{source}: {kind} layers {by_number[number]!r} and {name!r} have the same number; "
                "cannot tell their order"
            )
        by_number[number] = name
    numbers = sorted(by_number)
    for before, after in itertools.pairwise(numbers):
        if after != before + 1:
            raise WeightsError(
                f"{source}: {kind} layer number {before + 1} is missing "
                f"(found {by_number[before]!r} then {by_number[after]!r}); expected {count} in a row"
            )
    if len(numbers) != count:
        raise WeightsError(f"{source}: expected {count} {kind} layers of Keras InceptionV3, found {len(numbers)}")
    return [by_number[n] for n in numbers]


def _read_layers(path: Path) -> tuple[dict[str, dict[str, np.ndarray]], dict[str, dict[str, np.ndarray]]]:
    """Read the conv and batch-norm layers of a Keras legacy h5 weights file, each as {weight: array}."""
    h5py = _import_h5py()
    if not path.is_file():
        raise WeightsError(f"Keras weights file not found: {path}")
    try:
        file = h5py.File(path, "r")
    except OSError as exc:
        raise WeightsError(f"{path} is not a readable HDF5 (.h5) file: {exc}") from None
    convs: dict[str, dict[str, np.ndarray]] = {}
    norms: dict[str, dict[str, np.ndarray]] = {}
    with file:
        # A whole-model file (model.save("x.h5")) keeps the weights layout under "model_weights".
        root = file["model_weights"] if "model_weights" in file and "layer_names" not in file.attrs else file
        try:
            layer_names = _read_str_list(root, "layer_names")
        except KeyError:
            raise WeightsError(f"{path} is an HDF5 file but not Keras weights (no 'layer_names' attribute)") from None
        for layer in layer_names:
            if layer not in root:
                raise WeightsError(f"{path}: layer {layer!r} is listed in 'layer_names' but has no group")
            group = root[layer]
            try:
                weight_names = _read_str_list(group, "weight_names")
            except KeyError:
                continue
            try:
                weights = {_short_name(w): np.asarray(group[w], dtype=np.float32) for w in weight_names}
            except (KeyError, TypeError, ValueError) as exc:
                raise WeightsError(f"{path}: cannot read the weights of layer {layer!r}: {exc}") from None
            if "kernel" in weights and weights["kernel"].ndim == 4:
                convs[layer] = weights
            elif "moving_mean" in weights:
                norms[layer] = weights
    return convs, norms


def _check_shape(source: str, layer: str, weight: str, got: tuple[int, ...], want: tuple[int, ...]) -> None:
    if got != want:
        raise WeightsError(
            f"{source}: {layer}/{weight} has shape {got}, expected {want} for Keras InceptionV3 "
            "(is this an InceptionV3 weights file?)"
        )


def load_keras_inception_v3_h5(path: Path) -> dict[str, torch.Tensor]:
    """Convert a Keras InceptionV3 legacy ``.h5`` weights file into a torchvision ``Inception3`` state dict.

    The result has every key of ``Inception3(aux_logits=False).state_dict()`` except ``fc.weight`` and
    ``fc.bias``; load it with ``model.load_state_dict(sd, strict=False)`` or into a model without ``fc``.
    Raises :class:`WeightsError` when the file is missing, not HDF5, or does not fit the network.
    """
    path = Path(path)
    source = str(path)
    convs, norms = _read_layers(path)
    conv_layers = _sorted_layers(convs, "Conv2D", source)
    norm_layers = _sorted_layers(norms, "BatchNormalization", source)
    reference = _reference_state_dict()
    state: dict[str, torch.Tensor] = {}
    for module, conv_layer, norm_layer in zip(KERAS_CONV_ORDER, conv_layers, norm_layers, strict=True):
        want = tuple(reference[f"{module}.conv.weight"].shape)  # OIHW
        kernel = convs[conv_layer]["kernel"]
        _check_shape(source, conv_layer, "kernel", kernel.shape, (want[2], want[3], want[1], want[0]))
        state[f"{module}.conv.weight"] = torch.from_numpy(np.ascontiguousarray(kernel.transpose(3, 2, 0, 1)))

        weights = norms[norm_layer]
        unknown = sorted(set(weights) - set(_BN_NAMES))
        if unknown:
            raise WeightsError(f"{source}: batch-norm layer {norm_layer!r} has unexpected weights {unknown}")
        channels = (want[0],)
        for name in _BN_NAMES:
            if name not in weights:
                if name == "gamma":  # Keras InceptionV3 uses BatchNormalization(scale=False)
                    weights[name] = np.ones(channels, dtype=np.float32)
                else:
                    raise WeightsError(f"{source}: batch-norm layer {norm_layer!r} has no {name!r} weight")
            _check_shape(source, norm_layer, name, weights[name].shape, channels)
            state[f"{module}.bn.{_BN_TO_TORCH[name]}"] = torch.from_numpy(weights[name])
        if f"{module}.bn.num_batches_tracked" in reference:
            state[f"{module}.bn.num_batches_tracked"] = torch.tensor(0, dtype=torch.long)

    missing = sorted(set(reference) - set(state))
    if missing:  # only if torchvision's Inception3 changed shape under us
        raise WeightsError(f"{source}: the converted weights lack {len(missing)} tensors, e.g. {missing[0]}")
    return {key: state[key] for key in reference}


def save_keras_inception_v3_h5(
    state_dict: Mapping[str, torch.Tensor], path: Path, *, first_number: int = 1, with_gamma: bool = False
) -> None:
    """Write a torchvision ``Inception3`` state dict as a Keras InceptionV3 legacy ``.h5`` weights file.

    Layers are named ``conv2d_N`` / ``batch_normalization_N`` from ``first_number`` up, as Keras names them
    (``N == 0`` is written without suffix). Like Keras' InceptionV3 (``scale=False``) the batch-norm scale is
    dropped unless ``with_gamma``. ``fc`` and ``AuxLogits`` entries are ignored.
    """
    h5py = _import_h5py()
    missing = [f"{m}.conv.weight" for m in KERAS_CONV_ORDER if f"{m}.conv.weight" not in state_dict]
    if missing:
        raise WeightsError(f"state dict is not a torchvision Inception3 one: no {missing[0]!r}")
    bn_names = _BN_NAMES if with_gamma else _BN_NAMES[1:]

    def numbered(prefix: str, index: int) -> str:
        number = first_number + index
        return prefix if number == 0 else f"{prefix}_{number}"

    layers: list[tuple[str, dict[str, np.ndarray]]] = []
    for index, module in enumerate(KERAS_CONV_ORDER):
        kernel = state_dict[f"{module}.conv.weight"].detach().cpu().numpy().transpose(2, 3, 1, 0)
        layers.append((numbered("conv2d", index), {"kernel": kernel}))
        norm = {n: state_dict[f"{module}.bn.{_BN_TO_TORCH[n]}"].detach().cpu().numpy() for n in bn_names}
        layers.append((numbered("batch_normalization", index), norm))

    with h5py.File(Path(path), "w") as file:
        # Fixed-length byte strings, as in the official (Keras 2) files.
        file.attrs["layer_names"] = np.array([name.encode() for name, _ in layers])
        file.attrs["backend"] = b"tensorflow"
        file.attrs["keras_version"] = b"2.1.6"
        for name, weights in layers:
            group = file.create_group(name)
            group.attrs["weight_names"] = np.array([f"{name}/{w}:0".encode() for w in weights])
            for weight, value in weights.items():
                group.create_dataset(f"{name}/{weight}:0", data=np.ascontiguousarray(value, dtype=np.float32))


def keras_compatible(model: torch.fx.GraphModule) -> torch.fx.GraphModule:
    """Make a traced Inception3 average like Keras: every ``avg_pool2d`` call leaves padding out of the mean.

    Keras' ``AveragePooling2D(padding="same")`` divides by the number of real pixels under the window,
    torchvision's ``F.avg_pool2d(x, 3, 1, 1)`` by 9, which changes every border pixel. The graph is rewritten
    in place (``count_include_pad=False``), recompiled and returned. Pools without padding are unaffected.
    """
    changed = False
    for node in model.graph.nodes:
        if node.op != "call_function" or node.target is not torch.nn.functional.avg_pool2d:
            continue
        args = list(node.args)
        if len(args) > 5:  # (input, kernel_size, stride, padding, ceil_mode, count_include_pad, ...)
            args[5] = False
            node.args = tuple(args)
        else:
            node.kwargs = {**node.kwargs, "count_include_pad": False}
        changed = True
    if changed:
        model.recompile()
    return model
