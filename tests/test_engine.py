import pytest
import torch

from inceptionism.config import DreamConfig
from inceptionism.engine import TILE_ALIGN, Dreamer, build_objective
from inceptionism.errors import ConfigError, InceptionismError
from inceptionism.models import load_model
from inceptionism.tiling import tile_grid
from inceptionism.transforms import resize


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


@pytest.mark.slow
def test_same_seed_is_bit_identical_and_other_seeds_differ(lite0, photo):
    a, _ = _dream(lite0, photo, seed=3)
    b, _ = _dream(lite0, photo, seed=3)
    c, _ = _dream(lite0, photo, seed=4)
    assert torch.equal(a, b)
    assert not torch.equal(a, c)


@pytest.mark.slow
def test_tiled_equals_untiled_when_the_tile_covers_the_image(lite0, photo):
    untiled, _ = _dream(lite0, photo, tile_size=None)
    tiled, _ = _dream(lite0, photo, tile_size=128)
    assert torch.equal(untiled, tiled)


@pytest.mark.slow
def test_small_tiles_still_dream_the_whole_image(lite0, photo):
    """Full coverage. Seams are tested where they can be measured: ``tests/test_tiling.py`` on a small network,
    and the blended gradient against the untiled one in ``test_tiled_matches_untiled_on_an_image_several_tiles_wide``
    (on this model the change per column shows no jump at tile borders even with blending turned off)."""
    big = torch.nn.functional.interpolate(photo, size=(96, 160), mode="bilinear")
    out, _ = _dream(lite0, big, octaves=1, steps=4, tile_size=64, tile_overlap=24)
    change = (out - big).abs().mean(dim=(0, 1))
    blocks = change.unfold(0, 8, 8).unfold(1, 8, 8).mean(dim=(-1, -2))
    assert (blocks > 0.002).all()  # no 8×8 block left untouched


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


@pytest.mark.slow
def test_compiled_extractor_dreams_like_the_eager_one(lite0):
    """``--compile`` end to end (a shallow layer and a small image keep the compile to seconds)."""
    image = torch.rand(1, 3, 64, 80, generator=torch.Generator().manual_seed(0))
    outs = []
    for compile_ in (False, True):
        cfg = DreamConfig(layers=("block3",), octaves=1, steps=2, precision="fp32", compile=compile_).validate()
        dreamer = Dreamer(lite0, build_objective(cfg, lite0), cfg, torch.device("cpu"))
        # Compiled, the graph's gradient is autograd's (inductor traces the graph), not the CPU program's.
        assert (dreamer.extractor.backend is None) == compile_
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


def _dreamer(model, **kw):
    cfg = DreamConfig(**kw).validate()
    return Dreamer(model, build_objective(cfg, model), cfg, torch.device("cpu"))


def test_run_leaves_the_callers_image_unchanged(lite0, photo):
    for octaves in (1, 2):  # one octave: the full-size octave's base is the caller's tensor itself
        image = photo.clone()
        out = _dreamer(lite0, octaves=octaves, steps=2, min_size=16).run(image)
        assert torch.equal(image, photo)
        assert not torch.equal(out, photo)


def test_the_detail_of_each_octave_is_carried_up_to_the_next(lite0, photo, monkeypatch):
    d = _dreamer(lite0, octaves=2, steps=2, min_size=16)
    starts = []  # the image each octave's first step starts from
    real_step = d.step

    def recording(image, generator, tile, **kw):
        if not starts or starts[-1].shape != image.shape:
            starts.append(image.clone())
        return real_step(image, generator, tile, **kw)

    monkeypatch.setattr(d, "step", recording)
    previews = []
    d.run(photo, lambda p: previews.append(p.image) if p.image is not None else None)
    small = previews[0]  # the first octave's dream
    detail = small - resize(photo, small.shape[-2:])
    assert detail.abs().mean() > 0.01
    expected = (photo + resize(detail, photo.shape[-2:])).clamp(0, 1)
    assert [s.shape for s in starts] == [small.shape, photo.shape]
    assert torch.allclose(starts[1], expected, atol=1e-6)


@pytest.mark.slow
def test_tiled_matches_untiled_on_an_image_several_tiles_wide(lite0, photo):
    """The engine's real alignment, overlap and jitter on the default model: eight 128-px tiles (2 × 4)."""
    image = torch.nn.functional.interpolate(photo, size=(160, 288), mode="bilinear")
    d = _dreamer(lite0, tile_size=128)
    assert len(tile_grid(160, 288, 128, d.config.tile_overlap, TILE_ALIGN)) == 8
    full, full_score = d.step(image, torch.Generator().manual_seed(0), 4096)
    tiled, tiled_score = d.step(image, torch.Generator().manual_seed(0), 128)
    cos = torch.nn.functional.cosine_similarity((full - image).flatten(), (tiled - image).flatten(), dim=0)
    assert cos > 0.93  # 0.956; without blending 0.78, with unaligned tile starts 0.84
    assert tiled_score == pytest.approx(full_score, rel=0.1)


@pytest.mark.parametrize("bad", [float("nan"), float("inf")])
def test_a_score_that_is_not_finite_stops_the_run_with_one_clear_error(lite0, photo, monkeypatch, bad):
    d = _dreamer(lite0, octaves=1, steps=3)
    real_score = d.score
    monkeypatch.setattr(d, "score", lambda x: real_score(x) * bad)
    events = []
    with pytest.raises(InceptionismError, match="NaN or infinite; lower --step-size"):
        d.run(photo, events.append)
    assert events == []  # stopped at the first step, not after dreaming garbage


OOM = "DefaultCPUAllocator: can't allocate memory: you tried to allocate 1 GB"


def _flaky_step(dreamer, tiles, fail):
    """Wrap ``dreamer.step``: record each tile size; raise ``fail(tile)`` (if not None) after the step has drawn
    its random shift, as a step that runs out of memory half-way does."""
    real_step = dreamer.step

    def step(image, generator, tile, **kw):
        tiles.append(tile)
        error = fail(tile)
        if error is not None:
            torch.randint(0, 100, (2,), generator=generator)
            raise error
        return real_step(image, generator, tile, **kw)

    return step


@pytest.mark.slow
def test_out_of_memory_retries_with_the_random_state_of_the_failed_try(lite0, photo, monkeypatch):
    want = _dreamer(lite0, octaves=1, steps=3, tile_size=64).run(photo)
    d = _dreamer(lite0, octaves=1, steps=3, tile_size=128)
    tiles = []
    monkeypatch.setattr(d, "step", _flaky_step(d, tiles, lambda t: torch.OutOfMemoryError(OOM) if t > 64 else None))
    assert torch.equal(d.run(photo), want)  # the same shifts as a run that never failed
    assert tiles[0] > 64 and tiles[1:] == [64, 64, 64]  # no larger tiles after the first failure


def test_out_of_memory_at_the_smallest_tile_gives_up(lite0, photo, monkeypatch):
    d = _dreamer(lite0, octaves=1, steps=2, tile_size=128)
    tiles = []
    monkeypatch.setattr(
        d, "step", _flaky_step(d, tiles, lambda t: RuntimeError(OOM) if len(tiles) < 5 else AssertionError("again"))
    )
    with pytest.raises((RuntimeError, InceptionismError), match="memory"):
        d.run(photo)
    assert len(tiles) == 2 and tiles[0] > 64 and tiles[1] == 64


def test_other_errors_are_not_retried(lite0, photo, monkeypatch):
    d = _dreamer(lite0, octaves=1, steps=2, tile_size=128)
    tiles = []
    monkeypatch.setattr(d, "step", _flaky_step(d, tiles, lambda t: RuntimeError("mat1 and mat2 shapes differ")))
    with pytest.raises(RuntimeError, match="shapes differ"):
        d.run(photo)
    assert len(tiles) == 1


def test_a_mask_given_to_run_holds_black_pixels_exactly_and_must_fit_the_image(lite0, photo):
    cfg = DreamConfig(octaves=2, steps=2, tile_size=64).validate()
    dreamer = Dreamer(lite0, build_objective(cfg, lite0), cfg, torch.device("cpu"))
    mask = torch.ones(1, 1, *photo.shape[-2:])
    mask[..., :, :40] = 0
    out = dreamer.run(photo, mask=mask)
    assert torch.equal(out[..., :40], photo[..., :40])
    assert (out[..., 48:] - photo[..., 48:]).abs().mean() > 0.01
    with pytest.raises(ValueError, match="mask must be"):
        dreamer.run(photo, mask=mask[..., :-1])
    region = cfg.replace(mask_layers=("block3",))  # not validated: a caller's config without the mask
    with pytest.raises(InceptionismError, match="needs --mask"):
        Dreamer(lite0, build_objective(region, lite0), region, torch.device("cpu")).run(photo)
