import pytest
import torch

from inceptionism import devices
from inceptionism.devices import autocast, compute_dtype, cpu_has_native_bf16, pick_device, pick_precision
from inceptionism.errors import ConfigError


@pytest.fixture
def hardware(monkeypatch):
    """Pretend which accelerators torch sees: ``hardware(cuda=True, mps=False)``."""

    def set_(cuda: bool = False, mps: bool = False) -> None:
        monkeypatch.setattr(torch.cuda, "is_available", lambda: cuda)
        monkeypatch.setattr(torch.backends.mps, "is_available", lambda: mps)

    return set_


@pytest.mark.parametrize(("cuda", "mps", "want"), [(True, True, "cuda"), (False, True, "mps"), (False, False, "cpu")])
def test_auto_prefers_cuda_then_mps_then_the_cpu(hardware, cuda, mps, want):
    hardware(cuda=cuda, mps=mps)
    assert pick_device("auto") == torch.device(want)
    assert pick_device() == torch.device(want)


@pytest.mark.parametrize("name", ["cpu", "cuda", "cuda:1", "mps"])
def test_a_named_device_is_the_one_asked_for(hardware, name):
    hardware(cuda=True, mps=True)
    assert pick_device(name) == torch.device(name)


def test_the_cpu_is_used_when_asked_for_even_beside_a_gpu(hardware):
    hardware(cuda=True, mps=True)
    assert pick_device("cpu") == torch.device("cpu")


@pytest.mark.parametrize(
    ("name", "words"),
    [("cuda", "no CUDA GPU; use --device cpu"), ("cuda:0", "no CUDA GPU"), ("mps", "no MPS"),
     ("quantum", "unknown device 'quantum'; use auto, cpu, cuda")],
)  # fmt: skip
def test_a_device_that_is_not_there_is_one_clear_error(hardware, name, words):
    hardware(cuda=False, mps=False)
    with pytest.raises(ConfigError, match=words):
        pick_device(name)


def test_auto_precision_follows_the_hardware(monkeypatch):
    cpu = torch.device("cpu")
    monkeypatch.setattr(devices, "cpu_has_native_bf16", lambda: True)
    assert pick_precision("auto", cpu) == "bf16"
    monkeypatch.setattr(devices, "cpu_has_native_bf16", lambda: False)
    assert pick_precision("auto", cpu) == "fp32"
    assert pick_precision("fp16", cpu) == "fp16"
    assert pick_precision("auto", torch.device("mps")) == "fp32"
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda: True)
    assert pick_precision("auto", torch.device("cuda")) == "bf16"
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda: False)
    assert pick_precision("auto", torch.device("cuda")) == "fp16"


@pytest.mark.parametrize(
    ("flags", "want"),
    [("fpu sse avx512f avx512_bf16 avx512_vnni", True), ("fpu sse amx_bf16 amx_tile", True),
     ("fpu sse avx2 avx512f", False), (None, False)],
)  # fmt: skip
def test_native_bf16_is_read_from_the_cpu_flags(tmp_path, monkeypatch, flags, want):
    cpuinfo = tmp_path / "cpuinfo"
    if flags is not None:  # None: no /proc/cpuinfo (macOS, Windows)
        cpuinfo.write_text(f"processor\t: 0\nmodel name\t: test\nflags\t\t: {flags}\n\n")
    real_open = open
    monkeypatch.setattr(devices, "open", lambda path, *a, **k: real_open(cpuinfo, *a, **k), raising=False)
    assert cpu_has_native_bf16() is want


def test_dtypes_and_autocast_per_precision():
    assert compute_dtype("fp32") is None
    assert compute_dtype("bf16") is torch.bfloat16 and compute_dtype("fp16") is torch.float16
    x = torch.rand(4, 4)
    with autocast("fp32", torch.device("cpu")):
        assert (x @ x).dtype == torch.float32
    with autocast("bf16", torch.device("cpu")):
        assert (x @ x).dtype == torch.bfloat16
