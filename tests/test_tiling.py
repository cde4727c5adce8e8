import pytest
import torch
from torch import nn

from inceptionism.tiling import (
    Tile,
    blend_window,
    fitted_tile,
    tile_grid,
    tile_length,
    tile_starts,
    tiled_gradient,
)


@pytest.mark.parametrize(
    ("length", "tile", "overlap", "align"),
    [(100, 32, 8, 1), (257, 64, 16, 32), (64, 64, 8, 32), (50, 64, 8, 8), (4320, 512, 64, 32), (1000, 512, 64, 32)],
)
def test_tiles_cover_everything_with_equal_aligned_sizes(length, tile, overlap, align):
    starts = tile_starts(length, tile, overlap, align)
    size = tile_length(length, tile, align)
    assert size < tile + align
    covered = torch.zeros(length, dtype=torch.bool)
    for s in starts:
        assert s >= 0 and s + size <= length and s % align == 0
        covered[s : s + size] = True
    assert covered.all()
    assert len(set(starts)) == len(starts)
    for a, b in zip(starts, starts[1:]):
        assert b - a <= size - min(overlap, size - 1)  # neighbours overlap at least `overlap`


def test_blend_windows_fade_each_tile_out_smoothly_and_are_one_at_image_borders():
    height, width, overlap = 90, 130, 12
    grid = tile_grid(height, width, 48, overlap)
    windows = [blend_window(t, height, width, overlap, torch.device("cpu")) for t in grid]
    total = torch.zeros(height, width)
    for t, w in zip(grid, windows):
        assert w.shape == (t.h, t.w) and (w > 0).all() and (w <= 1).all()
        total[t.y : t.y + t.h, t.x : t.x + t.w] += w
    assert (total > 0).all()
    for t, w in zip(grid, windows):
        # The tile's share of each pixel's blended gradient: it ramps down to almost nothing at every edge inside
        # the image (where the convolutions' border effects are), without a step anywhere.
        share = w / total[t.y : t.y + t.h, t.x : t.x + t.w]
        inner_edges = [share[0] if t.y > 0 else None, share[-1] if t.y + t.h < height else None,
                       share[:, 0] if t.x > 0 else None, share[:, -1] if t.x + t.w < width else None]  # fmt: skip
        assert all(float(e.max()) <= 1 / overlap for e in inner_edges if e is not None)
        assert float(share.diff(dim=0).abs().max()) <= 1 / overlap + 1e-6
        assert float(share.diff(dim=1).abs().max()) <= 1 / overlap + 1e-6
    single = blend_window(Tile(0, 0, 90, 130), 90, 130, 12, torch.device("cpu"))
    assert torch.equal(single, torch.ones(90, 130))


def _conv_score():
    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv2d(3, 8, 5, padding=2), nn.ReLU(), nn.Conv2d(8, 8, 5, padding=2, stride=2))
    net.requires_grad_(False)
    return lambda x: (net(x) ** 2).flatten(1).mean(1)


def test_single_tile_equals_untiled_exactly():
    score = _conv_score()
    x = torch.rand(1, 3, 40, 56)
    g_tiled, s_tiled = tiled_gradient(x, score, tile_size=64, overlap=8)
    xr = x.clone().requires_grad_(True)
    s = score(xr)
    (g,) = torch.autograd.grad(s.sum(), xr)
    assert torch.equal(g_tiled, g)
    assert s_tiled == pytest.approx(float(s.detach()))


def test_tiled_gradient_matches_untiled_and_batches_agree():
    score = _conv_score()
    x = torch.rand(1, 3, 96, 128)
    full, _ = tiled_gradient(x, score, tile_size=512, overlap=0)
    tiled, _ = tiled_gradient(x, score, tile_size=48, overlap=16, align=2)
    batched, _ = tiled_gradient(x, score, tile_size=48, overlap=16, batch=4, align=2)
    misaligned, _ = tiled_gradient(x, score, tile_size=48, overlap=16)  # odd starts: the stride's other phase
    assert torch.allclose(tiled, batched, atol=1e-6)
    cos = torch.nn.functional.cosine_similarity(full.flatten(), tiled.flatten(), dim=0)
    assert cos > 0.99
    assert torch.nn.functional.cosine_similarity(full.flatten(), misaligned.flatten(), dim=0) < cos
    # Scale matches too: each tile's score is weighted by its share of the image.
    assert tiled.abs().mean() / full.abs().mean() == pytest.approx(1.0, rel=0.25)


def _worst_column_error(tiled, full):
    """Largest per-column gap between tiled and untiled gradients, relative to the gradient's mean size."""
    return float(((tiled - full).abs().mean(dim=(0, 1, 2)) / full.abs().mean()).max())


def test_blended_tiles_leave_no_seam_where_hard_tiles_do():
    score = _conv_score()
    x = torch.rand(1, 3, 64, 192)
    full, _ = tiled_gradient(x, score, tile_size=512, overlap=0)
    blended, _ = tiled_gradient(x, score, tile_size=64, overlap=24, align=2)
    hard, _ = tiled_gradient(x, score, tile_size=64, overlap=0, align=2)
    assert _worst_column_error(hard, full) > 0.2  # the test can fail: hard tile borders are seams
    assert _worst_column_error(blended, full) < 0.08


@pytest.mark.parametrize(("h", "w", "tile"), [(750, 1333, 1024), (1500, 2667, 1024), (4320, 7680, 1024)])
def test_fitted_tiles_do_less_redundant_work_with_as_many_tiles(h, w, tile):
    grid = tile_grid(h, w, tile, 64, 32)
    naive = len(tile_starts(h, tile, 64, 32)) * len(tile_starts(w, tile, 64, 32))
    assert len(grid) == naive
    assert grid[0].h <= tile_length(h, tile, 32) and grid[0].w <= tile_length(w, tile, 32)
    work = len(grid) * grid[0].h * grid[0].w / (h * w)
    assert work < 1.22  # 1.12–1.21 (1.25–1.30 before tiles were fitted to the alignment step)
    covered = torch.zeros(h, w, dtype=torch.bool)
    for t in grid:
        assert t.x % 32 == 0 and t.y % 32 == 0
        covered[t.y : t.y + t.h, t.x : t.x + t.w] = True
    assert covered.all()


@pytest.mark.parametrize(("length", "tile"), [(1500, 1024), (2667, 1024), (5333, 1024), (7680, 1024), (700, 256)])
def test_a_fitted_tile_is_the_smallest_that_needs_no_more_tiles(length, tile):
    size = fitted_tile(length, tile, 64, 32)
    n = len(tile_starts(length, size, 64, 32))
    assert n == len(tile_starts(length, tile, 64, 32))
    assert tile_length(length, size, 32) == size  # the last tile starts aligned as it is
    assert len(tile_starts(length, size - 32, 64, 32)) > n  # one alignment step smaller needs another tile


@pytest.mark.parametrize(
    ("size", "tile", "batch", "shift"),
    [
        ((96, 128), 48, 1, (7, -13)),  # tiles that wrap round the bottom and the right edge
        ((96, 128), 48, 3, (-40, 50)),  # batched, with a partial last batch
        ((96, 128), 48, 1, (96 + 5, -128 - 3)),  # shifts beyond a full turn
        ((40, 56), 64, 1, (3, 9)),  # one tile: the image rolled whole
        ((96, 128), 48, 1, (0, 0)),
    ],
)
def test_a_shift_is_the_gradient_of_the_rolled_image_rolled_back_bit_for_bit(size, tile, batch, shift):
    score = _conv_score()
    x = torch.rand(1, 3, *size, generator=torch.Generator().manual_seed(1))
    dy, dx = shift
    got, got_score = tiled_gradient(x, score, tile, overlap=16, batch=batch, align=2, shift=shift)
    rolled, want_score = tiled_gradient(
        torch.roll(x, (dy, dx), (-2, -1)), score, tile, overlap=16, batch=batch, align=2
    )
    assert torch.equal(got, torch.roll(rolled, (-dy, -dx), (-2, -1)))
    assert got_score == want_score


def test_the_tiled_gradient_is_nchw_whatever_the_image_layout():
    """Its std or mean sets the step: a reduction whose rounding follows the memory order, which must be the one
    the rolled gradient had (an image made from an HWC array is a channels_last view)."""
    score = _conv_score()
    x = torch.rand(1, 3, 96, 128, generator=torch.Generator().manual_seed(2))
    g, _ = tiled_gradient(x.contiguous(memory_format=torch.channels_last), score, 48, overlap=16, align=2, shift=(5, 9))
    assert g.is_contiguous()


@pytest.mark.parametrize(("tile", "batch", "shift"), [(48, 1, (7, -13)), (48, 3, (-40, 50)), (512, 1, (3, 9))])
def test_each_tile_gets_the_same_window_of_the_original(tile, batch, shift):
    """A pull toward the original, (x - o)² per pixel, has the gradient 2 (x - o) whatever the tiles and the roll:
    only if every tile's original is cut from the same pixels as the tile itself."""
    gen = torch.Generator().manual_seed(3)
    x, o = torch.rand(1, 3, 96, 128, generator=gen), torch.rand(1, 3, 96, 128, generator=gen)

    def score(tiles: torch.Tensor, originals: torch.Tensor) -> torch.Tensor:
        return (tiles - originals).square().sum(dim=(1, 2, 3))

    # The scores are weighted by each tile's share and the gradients blended to a partition of unity.
    g, _ = tiled_gradient(x, score, tile, overlap=16, batch=batch, align=2, shift=shift, original=o)
    first = tile_grid(96, 128, tile, 16, 2)[0]
    share = first.h * first.w / (96 * 128)  # 1 for a single tile
    torch.testing.assert_close(g, 2 * (x - o) * share)
    with pytest.raises(ValueError, match="differ in shape"):
        tiled_gradient(x, score, tile, overlap=16, original=o[..., :-1])
