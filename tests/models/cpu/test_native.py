import os
from pathlib import Path

import pytest
import torch
from test_program import blocks_graph, compiled, program_run

from inceptionism.config import DreamConfig
from inceptionism.engine import Dreamer, build_objective
from inceptionism.models import load_model
from inceptionism.models.cpu import native

CL = torch.channels_last


@pytest.fixture
def fresh_native(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """The native library forgotten, with an empty cache folder; forgotten again afterwards."""
    monkeypatch.setenv("INCEPTIONISM_CACHE", str(tmp_path / "cache"))
    native.reset()
    yield tmp_path / "cache"
    native.reset()


def same_bits(a: torch.Tensor, b: torch.Tensor) -> bool:
    """Equal bit for bit (so -0 is not +0), NaN where the other has NaN (ATen's NaN bits depend on its path)."""
    if a.shape != b.shape or a.dtype != b.dtype:
        return False
    a, b = a.contiguous(memory_format=CL), b.contiguous(memory_format=CL)
    as_int = torch.int16 if a.dtype == torch.bfloat16 else torch.int32
    nan = a.isnan()
    return torch.equal(nan, b.isnan()) and torch.equal(a.view(as_int)[~nan], b.view(as_int)[~nan])


def awkward(shape: tuple[int, ...], dtype: torch.dtype, seed: int) -> torch.Tensor:
    """Values with many ties (halves), NaNs, signed zeros and infinities, channels_last."""
    gen = torch.Generator().manual_seed(seed)
    x = (torch.randn(shape, generator=gen) * 2).round() / 2
    x[0, 0, 0, :3] = float("nan")
    x[0, 1 % shape[1], :2, 1] = -0.0
    x[0, 2 % shape[1], 1, 1] = float("-inf")
    x[0, -1, -1, -1] = float("inf")
    x[..., shape[2] // 2, shape[3] // 2] = -0.0
    return x.to(dtype).contiguous(memory_format=CL)


POOLS = [  # kernel, stride, padding, ceil_mode: InceptionV3's and GoogLeNet's, VGG's, ResNet's, and odd ones
    ([3, 3], [2, 2], [0, 0], False),
    ([3, 3], [2, 2], [0, 0], True),
    ([2, 2], [2, 2], [0, 0], False),
    ([3, 3], [2, 2], [1, 1], False),
    ([3, 3], [1, 1], [1, 1], True),
    ([5, 3], [2, 3], [2, 1], True),
    ([1, 1], [2, 2], [0, 0], False),
    ([2, 3], [3, 1], [1, 0], False),
]
SHAPES = [(1, 64, 23, 31), (2, 35, 9, 12), (1, 3, 7, 8), (1, 48, 16, 15)]  # vector paths and leftover channels


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
@pytest.mark.parametrize("pool", POOLS)
def test_max_pool_and_its_gradient_equal_atens_bit_for_bit(dtype, pool):
    kernel, stride, padding, ceil_mode = pool
    params = [kernel, stride, padding, [1, 1], ceil_mode]
    for i, shape in enumerate(SHAPES):
        x = awkward(shape, dtype, seed=i)
        assert native.max_pool_supported(x, params)
        expected, indices = torch.ops.aten.max_pool2d_with_indices(x, *params)
        values, winners = native.max_pool(x, params)
        assert same_bits(values, expected), shape
        assert values.is_contiguous(memory_format=CL)
        assert winners.dtype == torch.uint8 and winners.shape == values.shape
        grad = awkward(tuple(values.shape), dtype, seed=10 + i)  # NaN and -0 gradients too
        expected_grad = torch.ops.aten.max_pool2d_with_indices_backward(grad, x, *params, indices)
        grad_in = native.max_pool_backward(grad, winners, x.shape, params)
        assert same_bits(grad_in, expected_grad), shape


def test_bf16_gradients_are_rounded_after_every_addition_as_atens_are():
    """One input wins four overlapping windows; its gradient is ((g1 + g2) + g3) + g4, rounded at each step,
    which differs from rounding the exact sum once."""
    x = torch.zeros(1, 32, 5, 5)
    x[:, :, 2, 2] = 1.0  # the winner of all four 3×3 windows (stride 2)
    x = x.to(torch.bfloat16).contiguous(memory_format=CL)
    params = [[3, 3], [2, 2], [0, 0], [1, 1], False]
    g = torch.tensor([1.0, 2**-8, 2**-8, 2**-8]).view(1, 1, 2, 2).expand(1, 32, 2, 2)
    grad = g.to(torch.bfloat16).contiguous(memory_format=CL)
    _, winners = native.max_pool(x, params)
    got = native.max_pool_backward(grad, winners, x.shape, params)[0, :, 2, 2].float()
    assert torch.all(got == 1.0)  # each 1 + 2^-8 rounds back to 1 (ties to even); the exact sum would not
    assert float(torch.tensor(1 + 3 * 2**-8).to(torch.bfloat16)) != 1.0


def test_results_do_not_depend_on_the_number_of_threads():
    x = awkward((2, 64, 40, 33), torch.bfloat16, seed=3)
    params = [[3, 3], [2, 2], [1, 1], [1, 1], True]
    before = torch.get_num_threads()
    try:
        runs = []
        for threads in (1, max(2, before)):
            torch.set_num_threads(threads)
            values, winners = native.max_pool(x, params)
            grad = torch.ones_like(values)
            runs.append((values, winners, native.max_pool_backward(grad, winners, x.shape, params)))
    finally:
        torch.set_num_threads(before)
    for a, b in zip(*runs, strict=True):
        assert same_bits(a, b) if a.is_floating_point() else torch.equal(a, b)


@pytest.mark.parametrize(
    "params, dtype",
    [
        ([[3, 3], [2, 2], [0, 0], [2, 2], False], torch.float32),  # dilated
        ([[3, 3], [2, 2], [0, 0], [1, 1], False], torch.float16),
        ([[16, 16], [1, 1], [0, 0], [1, 1], False], torch.float32),  # 256 window positions: not one byte
        ([[3, 3], [2, 2], [2, 2], [1, 1], False], torch.float32),  # padding over half the kernel: ATen's error
        ([[3, 3], [2, 2], [0, 0], [1, 1], False], torch.float64),
    ],
)
def test_pools_it_cannot_run_stay_with_aten(params, dtype):
    x = torch.rand(1, 8, 20, 20, dtype=dtype).contiguous(memory_format=CL)
    assert not native.max_pool_supported(x, params)
    assert native.max_pool(x, params) is None  # the program then runs ATen's


def test_an_input_in_nchw_is_read_as_it_is():
    x = awkward((1, 40, 13, 17), torch.float32, seed=5).contiguous()  # NCHW
    params = [[3, 3], [2, 2], [1, 1], [1, 1], False]
    assert same_bits(native.max_pool(x, params)[0], torch.ops.aten.max_pool2d_with_indices(x, *params)[0])


def run_blocks(dtype: torch.dtype) -> torch.Tensor:
    graph = blocks_graph(dtype)
    program = compiled(graph)
    x = torch.rand(2, 3, 37, 45, generator=torch.Generator().manual_seed(0)).to(dtype).contiguous(memory_format=CL)
    with torch.no_grad():
        shapes = {k: v.shape for k, v in graph(x).items()}
    gen = torch.Generator().manual_seed(1)
    _, grad = program_run(program, x, {k: torch.randn(s, generator=gen) for k, s in shapes.items()})
    assert grad is not None
    return grad


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_the_program_gives_the_same_gradient_with_or_without_native_pools(dtype, monkeypatch):
    assert native.library() is not None  # this machine has a compiler: the test compares two real roads
    with_native = run_blocks(dtype)
    monkeypatch.setenv("INCEPTIONISM_NATIVE", "0")
    assert not native.max_pool_supported(torch.rand(1, 4, 8, 8), [[3, 3], [2, 2], [0, 0], [1, 1], False])
    assert torch.equal(run_blocks(dtype), with_native)


def test_the_library_is_built_once_and_then_loaded_from_the_cache(fresh_native, monkeypatch):
    assert native.library() is not None
    built = list(fresh_native.glob("maxpool-*.so"))
    assert len(built) == 1 and not list(fresh_native.glob("*.so.*")) and len(os.listdir(fresh_native)) == 1
    stamp = built[0].stat().st_mtime_ns

    def no_build(*args: object) -> None:
        raise AssertionError("built again")

    monkeypatch.setattr(native, "_build", no_build)
    native.reset()
    assert native.library() is not None
    assert built[0].stat().st_mtime_ns == stamp


def test_without_a_compiler_the_program_keeps_atens_pools(fresh_native, monkeypatch):
    expected = run_blocks(torch.float32)  # with the native pools (built into the fresh cache)
    monkeypatch.setenv("INCEPTIONISM_CACHE", str(fresh_native.parent / "another"))
    monkeypatch.setenv("CC", str(fresh_native / "no-such-compiler"))
    native.reset()
    assert native.library() is None
    assert not native.max_pool_supported(torch.rand(1, 4, 8, 8), [[3, 3], [2, 2], [0, 0], [1, 1], False])
    assert torch.equal(run_blocks(torch.float32), expected)


def test_a_compiler_that_fails_leaves_no_file_behind(fresh_native, tmp_path, monkeypatch):
    failing = tmp_path / "cc"
    # it answers --version, then writes part of its output (the last argument) and fails
    failing.write_text(
        '#!/bin/sh\n[ "$1" = --version ] && exit 0\nfor a; do out=$a; done\necho partial > "$out"\nexit 1\n'
    )
    failing.chmod(0o755)
    monkeypatch.setenv("CC", str(failing))
    native.reset()
    assert native.library() is None
    assert not list(fresh_native.iterdir())


def test_disabled_by_the_environment(monkeypatch):
    monkeypatch.setenv("INCEPTIONISM_NATIVE", "0")
    assert native.library() is None


@pytest.mark.parametrize("size, kernel, stride, padding", [(7, 3, 2, 0), (8, 3, 2, 1), (6, 2, 2, 0), (5, 3, 3, 1)])
def test_output_sizes_are_atens(size, kernel, stride, padding):
    for ceil_mode in (False, True):
        x = torch.rand(1, 1, size, size)
        expected = torch.nn.functional.max_pool2d(x, kernel, stride, padding, ceil_mode=ceil_mode).shape[-1]
        assert native.pool_output_size(size, kernel, stride, padding, ceil_mode) == expected


@pytest.mark.parametrize("precision", ["fp32", "bf16"])
def test_a_googlenet_dream_is_the_same_with_or_without_native_pools(precision, torch_home, hub_weights, monkeypatch):
    """GoogLeNet's pools: 3×3 stride 2 in ceil mode, and 3×3 stride 1 padded in every Inception block; tiled."""
    hub_weights("googlenet")
    model = load_model("googlenet")
    image = torch.rand(1, 3, 150, 190, generator=torch.Generator().manual_seed(0))
    calls = []
    pool = native.max_pool

    def counted(*args):  # counts the pools the native kernel ran
        result = pool(*args)
        if result is not None:
            calls.append(1)
        return result

    monkeypatch.setattr(native, "max_pool", counted)
    dreams = []
    for setting in ("1", "0"):
        monkeypatch.setenv("INCEPTIONISM_NATIVE", setting)
        config = DreamConfig(model="googlenet", precision=precision, steps=2, octaves=2, tile_size=128).validate()
        dreamer = Dreamer(model, build_objective(config, model), config, torch.device("cpu"))
        dreams.append(dreamer.run(image.clone()))
        assert bool(calls) == (setting == "1")  # the native pools ran in the first dream only
        calls.clear()
    assert torch.equal(dreams[0], dreams[1])
