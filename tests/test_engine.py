import pytest
import torch

from inceptionism.config import DreamConfig
from inceptionism.engine import Dreamer, build_objective
from inceptionism.errors import ConfigError
from inceptionism.models import load_model


@pytest.fixture(scope="module")
def lite0():
    return load_model("efficientnet-lite0")


@pytest.fixture(scope="module")
def photo():
    skimage_data = pytest.importorskip("skimage.data")
    img = torch.from_numpy(skimage_data.chelsea()).permute(2, 0, 1)[None].float() / 255
    return torch.nn.functional.interpolate(img, size=(72, 108), mode="area")


def _dream(model, image, callback=None, **kw):
    cfg = DreamConfig(**{"octaves": 2, "steps": 3, **kw}).validate()
    d = Dreamer(model, build_objective(cfg, model), cfg, torch.device("cpu"))
    return d.run(image, callback), d


def test_objective_rises_over_steps(lite0, photo):
    scores = []
    _dream(lite0, photo, lambda p: scores.append(p.score), octaves=1, steps=6, jitter=0)
    assert scores[-1] > scores[0] * 1.1
    assert sum(b > a for a, b in zip(scores, scores[1:])) >= 4


def test_output_keeps_shape_range_and_changes_the_image(lite0, photo):
    out, _ = _dream(lite0, photo)
    assert out.shape == photo.shape and out.dtype == torch.float32
    assert out.min() >= 0 and out.max() <= 1
    assert (out - photo).abs().mean() > 0.01


def test_same_seed_is_bit_identical_and_other_seeds_differ(lite0, photo):
    a, _ = _dream(lite0, photo, seed=3)
    b, _ = _dream(lite0, photo, seed=3)
    c, _ = _dream(lite0, photo, seed=4)
    assert torch.equal(a, b)
    assert not torch.equal(a, c)


def test_tiled_equals_untiled_when_the_tile_covers_the_image(lite0, photo):
    untiled, _ = _dream(lite0, photo, tile_size=None)
    tiled, _ = _dream(lite0, photo, tile_size=128)
    assert torch.equal(untiled, tiled)


def test_small_tiles_still_dream_the_whole_image_without_seams(lite0, photo):
    big = torch.nn.functional.interpolate(photo, size=(96, 160), mode="bilinear")
    out, _ = _dream(lite0, big, octaves=1, steps=4, tile_size=64, tile_overlap=24)
    change = (out - big).abs().mean(dim=(0, 1))
    # Every region was dreamed (full coverage): no 8×8 block left untouched.
    blocks = change.unfold(0, 8, 8).unfold(1, 8, 8).mean(dim=(-1, -2))
    assert (blocks > 0.002).all()
    # No seam: the change is no sharper across the tile borders than elsewhere.
    jumps = (change[:, 1:] - change[:, :-1]).abs().mean(0)
    assert float(jumps[[31, 63, 95, 127]].mean() / jumps.mean()) < 1.5


def test_progress_reports_every_step_and_octave_previews(lite0, photo):
    events = []
    _dream(lite0, photo, events.append, octaves=3, steps=2, min_size=16)
    assert [e.done for e in events] == list(range(1, 7))
    assert all(e.total == 6 for e in events)
    previews = [e for e in events if e.image is not None]
    assert [p.step for p in previews] == [2, 2, 2]
    assert previews[-1].image.shape == photo.shape
    assert previews[0].image.shape[-1] < photo.shape[-1]


def test_several_weighted_layers(lite0, photo):
    _, d = _dream(lite0, photo, layers=("block8:0.5", "block10"))
    assert d.objective.layers == ("block8", "block10")
    assert "0.5 * l2(block8)" in d.objective.description


def test_unknown_layer_suggests_close_names(lite0):
    with pytest.raises(ConfigError, match="did you mean 'block10'"):
        build_objective(DreamConfig(layers=("blok10",)), lite0)


def test_out_of_memory_halves_the_tile_and_retries(lite0, photo, monkeypatch):
    cfg = DreamConfig(octaves=1, steps=2, tile_size=128).validate()
    d = Dreamer(lite0, build_objective(cfg, lite0), cfg, torch.device("cpu"))
    real_step, tiles = d.step, []

    def flaky(image, generator, tile, **kw):
        tiles.append(tile)
        if tile > 64:
            raise RuntimeError("DefaultCPUAllocator: can't allocate memory: you tried to allocate 1 GB")
        return real_step(image, generator, tile, **kw)

    monkeypatch.setattr(d, "step", flaky)
    events = []
    out = d.run(photo, events.append)
    assert out.shape == photo.shape
    assert tiles[0] > 64 and tiles[-1] == 64
    assert events[-1].tile_size == 64


def test_auto_precision_follows_the_hardware(monkeypatch):
    from inceptionism import devices

    cpu = torch.device("cpu")
    monkeypatch.setattr(devices, "cpu_has_native_bf16", lambda: True)
    assert devices.pick_precision("auto", cpu) == "bf16"
    monkeypatch.setattr(devices, "cpu_has_native_bf16", lambda: False)
    assert devices.pick_precision("auto", cpu) == "fp32"
    assert devices.pick_precision("fp16", cpu) == "fp16"
    assert devices.pick_precision("auto", torch.device("mps")) == "fp32"


def test_compiled_extractor_dreams_like_the_eager_one(lite0):
    """``--compile`` end to end (a shallow layer and a small image keep the compile to seconds)."""
    image = torch.rand(1, 3, 64, 80, generator=torch.Generator().manual_seed(0))
    outs = []
    for compile_ in (False, True):
        cfg = DreamConfig(layers=("block3",), octaves=1, steps=2, precision="fp32", compile=compile_).validate()
        dreamer = Dreamer(lite0, build_objective(cfg, lite0), cfg, torch.device("cpu"))
        # Compiled, the graph's gradient is autograd's (inductor traces the graph), not the CPU program's.
        assert (dreamer.extractor.backprop is None) == compile_
        outs.append(dreamer.run(image))
    assert torch.allclose(outs[0], outs[1], atol=1e-3)


def test_a_step_in_place_writes_the_same_values_into_the_image(lite0, photo):
    cfg = DreamConfig(tile_size=64, jitter=16).validate()
    d = Dreamer(lite0, build_objective(cfg, lite0), cfg, torch.device("cpu"))
    image = photo.clone()
    out, score = d.step(image, torch.Generator().manual_seed(5), 64)
    assert torch.equal(image, photo)  # a plain step leaves its input alone
    same, same_score = d.step(image, torch.Generator().manual_seed(5), 64, in_place=True)
    assert same is image and torch.equal(same, out) and same_score == score
