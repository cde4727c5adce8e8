import pytest
import torch

from inceptionism.transforms import (
    ascend,
    auto_octaves,
    normalize_gradient,
    octave_sizes,
    random_shift,
    resize,
    roll,
)


def test_octave_sizes_smallest_first_and_full_size_last():
    sizes = octave_sizes(300, 451, octaves=4, scale=1.4)
    assert sizes[-1] == (300, 451)
    assert sizes[0] == (round(300 / 1.4**3), round(451 / 1.4**3))
    assert [h for h, _ in sizes] == sorted(h for h, _ in sizes)
    for (h0, w0), (h1, w1) in zip(sizes, sizes[1:]):
        assert h1 / h0 == pytest.approx(1.4, rel=0.05) and w1 / w0 == pytest.approx(1.4, rel=0.05)


def test_octave_sizes_drop_octaves_below_min_size():
    sizes = octave_sizes(64, 64, octaves=6, scale=2.0, min_size=32)
    assert sizes == [(32, 32), (64, 64)]
    assert octave_sizes(20, 20, octaves=3, scale=1.5, min_size=32) == [(20, 20)]  # full size always kept


@pytest.mark.parametrize(("octaves", "scale"), [(0, 1.4), (3, 1.0), (3, 0.5)])
def test_octave_sizes_reject_bad_values(octaves, scale):
    with pytest.raises(ValueError):
        octave_sizes(100, 100, octaves, scale)


def test_roll_is_undone_exactly():
    x = torch.rand(1, 3, 17, 23)
    assert torch.equal(roll(roll(x, 5, -7), -5, 7), x)
    assert not torch.equal(roll(x, 1, 0), x)


def test_random_shift_follows_the_generator_and_bounds():
    shifts = [random_shift(4, torch.Generator().manual_seed(1)) for _ in range(2)]
    assert shifts[0] == shifts[1]
    g = torch.Generator().manual_seed(0)
    assert all(-4 <= v <= 4 for _ in range(100) for v in random_shift(4, g))
    assert random_shift(0, g) == (0, 0)


def test_normalize_gradient():
    g = torch.randn(1, 3, 8, 8) * 7
    assert normalize_gradient(g, "mean_abs").abs().mean().item() == pytest.approx(1.0, rel=1e-5)
    assert normalize_gradient(g, "std").std().item() == pytest.approx(1.0, rel=1e-5)
    assert torch.isfinite(normalize_gradient(torch.zeros(1, 3, 4, 4))).all()
    with pytest.raises(ValueError, match="mean_abs"):
        normalize_gradient(g, "max")


def test_resize_shapes_and_identity():
    x = torch.rand(1, 3, 30, 40)
    assert resize(x, (15, 20)).shape == (1, 3, 15, 20)
    assert resize(x, (45, 60)).shape == (1, 3, 45, 60)
    assert resize(x, (30, 40)) is x
    assert resize(torch.full((1, 3, 30, 40), 0.25), (7, 9)).allclose(torch.full((1, 3, 7, 9), 0.25))


def test_auto_octaves_grow_with_the_image():
    assert auto_octaves(400, 600, 1.4) == 4
    assert auto_octaves(816, 1224, 1.4) == 6
    assert auto_octaves(100, 100, 1.4) == 1
    counts = [auto_octaves(s, s, 1.4) for s in (300, 1000, 4320)]
    assert counts == sorted(counts) and counts[-1] >= 10
    for short in (300, 816, 4320):  # the smallest octave lands near 150 px
        n = auto_octaves(short, short * 2, 1.4)
        assert 150 / 1.4**0.5 <= short / 1.4 ** (n - 1) <= 150 * 1.4**0.5


@pytest.mark.parametrize("method", ["mean_abs", "std"])
def test_ascend_is_a_clamped_normalised_step(method):
    torch.manual_seed(0)
    image, g = torch.rand(1, 3, 8, 9), torch.randn(1, 3, 8, 9)
    before = image.clone()
    out = ascend(image, g, 0.05, method)
    expected = (image + 0.05 * normalize_gradient(g, method)).clamp(0, 1)
    assert torch.allclose(out, expected, atol=1e-6)
    assert out.min() >= 0 and out.max() <= 1 and (out != image).any()
    assert torch.equal(image, before)  # the input is not changed in place
