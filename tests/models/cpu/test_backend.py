"""The CPU fast path never breaks a dream: a broken private operator or an untested PyTorch turns it off with one
note on stderr, and autograd gives the picture."""

import logging

import pytest
import torch

from inceptionism.config import DreamConfig
from inceptionism.engine import Dreamer, build_objective
from inceptionism.models import load_model
from inceptionism.models.cpu import Declined, GradientBackend, compile_backend, ops, switch
from inceptionism.models.cpu.program import Program

NOTE = "inceptionism: note: fast CPU path off ({}); using autograd\n"


@pytest.fixture(autouse=True)
def fresh_switch():
    """The fast path on and the note unsaid, before and after each test (it is process-wide)."""
    switch.reset()
    yield
    switch.reset()


@pytest.fixture(scope="module")
def lite0():
    return load_model("efficientnet-lite0")


def broken(*args: object, **kwargs: object) -> None:
    raise RuntimeError("mkldnn_convolution_pointwise: unsupported in this build\n(a second line of detail)")


def dream(model, precision: str, autograd: bool = False) -> torch.Tensor:
    cfg = DreamConfig(octaves=2, steps=2, precision=precision, seed=3).validate()
    dreamer = Dreamer(model, build_objective(cfg, model), cfg, torch.device("cpu"))
    if autograd:
        dreamer.extractor = dreamer.extractor.with_autograd()
    image = torch.rand(1, 3, 48, 72, generator=torch.Generator().manual_seed(0))
    return dreamer.run(torch.nn.functional.avg_pool2d(image, 5, 1, 2))


@pytest.mark.parametrize("precision", ["fp32", "bf16"])
def test_a_broken_operator_turns_the_path_off_once_and_the_dream_is_autograds(lite0, precision, monkeypatch, capsys):
    expected = dream(lite0, precision, autograd=True)
    monkeypatch.setattr(ops, "CONV", broken)  # as a future PyTorch may: the private convolution raises
    out = dream(lite0, precision)
    assert torch.equal(out, expected)
    reason = "RuntimeError: mkldnn_convolution_pointwise: unsupported in this build"
    assert capsys.readouterr().err == NOTE.format(reason)  # one line, the first of the error's message
    assert switch.failure() == reason
    assert torch.equal(dream(lite0, precision), expected)  # the next dream: autograd from the start, no new note
    assert capsys.readouterr().err == ""


def test_an_operator_that_breaks_in_the_reverse_is_redone_by_autograd(lite0, monkeypatch, capsys):
    extractor = lite0.extractor(["block5", "block8"])
    x = torch.rand(1, 3, 64, 96, generator=torch.Generator().manual_seed(1))

    def gradient(ex) -> torch.Tensor:
        xg = x.clone().requires_grad_(True)
        out = ex(xg)
        (out["block5"].square().mean() + out["block8"].mean()).backward()
        assert xg.grad is not None
        return xg.grad

    expected = gradient(extractor.with_autograd())
    calls: list[str] = []
    monkeypatch.setattr(Program, "reverse", lambda *a: calls.append("reverse") or broken())
    grad = gradient(extractor)  # the program's forward ran; its reverse failed inside autograd's backward
    assert calls == ["reverse"]
    torch.testing.assert_close(grad, expected, rtol=1e-4, atol=1e-6 * float(expected.abs().max()))
    assert capsys.readouterr().err.count("fast CPU path off (RuntimeError") == 1
    assert torch.equal(gradient(extractor), expected)  # off: autograd's own road from now on
    assert calls == ["reverse"]


def test_out_of_memory_is_the_callers_and_leaves_the_path_on(lite0, monkeypatch, capsys):
    def no_memory(*args: object, **kwargs: object) -> None:
        raise RuntimeError("DefaultCPUAllocator: can't allocate memory: you tried to allocate 4096 bytes")

    monkeypatch.setattr(ops, "CONV", no_memory)
    with pytest.raises(RuntimeError, match="can't allocate memory"):
        lite0.extractor(["block5"])(torch.rand(1, 3, 32, 32, requires_grad=True))
    assert switch.failure() is None and capsys.readouterr().err == ""


def test_an_untested_torch_is_declined_up_front_with_the_note(monkeypatch, capsys):
    monkeypatch.setattr(torch, "__version__", "2.99.0")
    model = load_model("efficientnet-lite0")  # a fresh model: its extractors are compiled now
    cfg = DreamConfig(octaves=1, steps=2, precision="fp32").validate()
    dreamer = Dreamer(model, build_objective(cfg, model), cfg, torch.device("cpu"))
    assert dreamer.extractor.backend is None
    out = dreamer.run(torch.rand(1, 3, 48, 64))
    assert out.shape == (1, 3, 48, 64)
    lo, hi = switch.TESTED_TORCH
    tested = f">={lo[0]}.{lo[1]},<{hi[0]}.{hi[1]}"
    assert capsys.readouterr().err == NOTE.format(f"torch 2.99.0 is untested; tested: {tested}")
    assert isinstance(compile_backend(model.extractor(["block3"]).graph), Declined)
    assert capsys.readouterr().err == ""  # once per process


@pytest.mark.parametrize(("version", "parsed"), [("2.14.1", (2, 14)), ("2.14.0a0+git1234", (2, 14)), ("x", None)])
def test_versions_are_read_as_major_and_minor(version, parsed):
    assert switch.torch_version(version) == parsed


def test_the_running_torch_is_one_the_path_was_tested_on():
    """The fast path's tests run here: a PyTorch outside the declared range would leave them untested."""
    assert switch.untested_torch() is None, "run the suite on this PyTorch and widen switch.TESTED_TORCH"


def test_the_environment_turns_it_off_quietly(lite0, monkeypatch, capsys, caplog):
    extractor = lite0.extractor(["block5"])
    assert isinstance(extractor.backend, GradientBackend)
    monkeypatch.setenv("INCEPTIONISM_FAST_CPU", "0")
    assert not extractor.backend.wants(torch.rand(1, 3, 8, 8, requires_grad=True))
    with caplog.at_level(logging.DEBUG, logger="inceptionism.models.cpu.backend"):
        assert compile_backend(extractor.graph) == Declined("INCEPTIONISM_FAST_CPU=0")
    assert "INCEPTIONISM_FAST_CPU=0" in caplog.text and capsys.readouterr().err == ""
