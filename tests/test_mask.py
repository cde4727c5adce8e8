"""mask: reading grayscale masks, per-pixel strength, the exact blend, region gradients."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from inceptionism.errors import ConfigError
from inceptionism.io import load_image, save_image, to_pil
from inceptionism.mask import apply_mask_to_step, blend_final, blend_gradients, load_mask, mask_at
from inceptionism.transforms import normalize_gradient


def _notes() -> tuple[list[str], Callable[[str], None]]:
    seen: list[str] = []
    return seen, seen.append


# ---------------------------------------------------------------------------------------------------------------
# reading


def test_load_grey_png_exact_values(tmp_path: Path) -> None:
    values = np.arange(256, dtype=np.uint8).reshape(16, 16)
    Image.fromarray(values).save(tmp_path / "m.png")
    seen, note = _notes()
    mask = load_mask(tmp_path / "m.png", (16, 16), note=note)
    assert mask.shape == (1, 1, 16, 16) and mask.dtype == torch.float32
    np.testing.assert_array_equal(mask[0, 0].numpy(), values.astype(np.float32) / np.float32(255))
    assert seen == []


@pytest.mark.parametrize(
    ("mode", "array", "expected"),
    [
        ("1", np.array([[0, 255]], dtype=np.uint8), [0.0, 1.0]),
        ("I;16", np.array([[0, 65535]], dtype=np.uint16), [0.0, 1.0]),
        ("F", np.array([[0.0, 0.25]], dtype=np.float32), [0.0, 0.25]),
    ],
)
def test_load_other_grey_modes(tmp_path: Path, mode: str, array: np.ndarray, expected: list[float]) -> None:
    im = Image.fromarray(array)
    if mode == "1":
        im = im.convert("1")
    path = tmp_path / "m.tif"
    im.save(path)
    assert Image.open(path).mode.startswith(mode[0])
    mask = load_mask(path, (1, 2), note=None)
    np.testing.assert_allclose(mask.flatten().numpy(), expected)


def test_grey_with_alpha_uses_the_grey(tmp_path: Path) -> None:
    la = np.dstack([np.full((4, 4), 128, np.uint8), np.zeros((4, 4), np.uint8)])
    Image.fromarray(la, "LA").save(tmp_path / "m.png")
    torch.testing.assert_close(load_mask(tmp_path / "m.png", (4, 4)), torch.full((1, 1, 4, 4), 128 / 255))


def test_rgb_with_equal_channels_is_accepted(tmp_path: Path) -> None:
    grey = np.random.default_rng(0).integers(0, 256, (8, 8), dtype=np.uint8)
    Image.fromarray(np.dstack([grey] * 3)).save(tmp_path / "m.png")
    mask = load_mask(tmp_path / "m.png", (8, 8))
    np.testing.assert_allclose(mask[0, 0].numpy(), grey / 255, atol=1e-6)


def test_coloured_mask_is_refused(tmp_path: Path) -> None:
    rgb = np.zeros((4, 5, 3), np.uint8)
    rgb[2, 3] = (200, 10, 10)
    Image.fromarray(rgb).save(tmp_path / "sky.png")
    with pytest.raises(ConfigError, match=r"mask .*sky\.png must be grayscale.*x=3, y=2 is RGB 200,10,10") as e:
        load_mask(tmp_path / "sky.png", (4, 5))
    assert "\n" not in str(e.value)


@pytest.mark.parametrize(
    ("name", "content", "match"),
    [
        ("missing.png", None, "does not exist"),
        ("notes.png", b"not an image at all", "not an image Pillow can read"),
        ("empty.png", b"", "not an image Pillow can read|cannot read"),
    ],
)
def test_unreadable_masks(tmp_path: Path, name: str, content: bytes | None, match: str) -> None:
    path = tmp_path / name
    if content is not None:
        path.write_bytes(content)
    with pytest.raises(ConfigError, match=match) as e:
        load_mask(path, (4, 4))
    assert name in str(e.value) and "\n" not in str(e.value)


def test_truncated_mask(tmp_path: Path) -> None:
    Image.fromarray(np.random.default_rng(0).integers(0, 256, (64, 64), dtype=np.uint8)).save(tmp_path / "m.png")
    data = (tmp_path / "m.png").read_bytes()
    (tmp_path / "m.png").write_bytes(data[: len(data) // 2])
    with pytest.raises(ConfigError, match=r"cannot read mask .*m\.png"):
        load_mask(tmp_path / "m.png", (64, 64))


def test_folder_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="is a folder"):
        load_mask(tmp_path, (4, 4))


def test_size_mismatch_is_resized_with_one_note(tmp_path: Path) -> None:
    Image.new("L", (64, 48), 255).save(tmp_path / "m.png")
    seen, note = _notes()
    mask = load_mask(tmp_path / "m.png", (80, 120), note=note)
    assert mask.shape == (1, 1, 80, 120)
    torch.testing.assert_close(mask, torch.ones(1, 1, 80, 120))
    assert len(seen) == 1 and "64×48 resized to the input's 120×80" in seen[0] and "stretched" in seen[0]
    seen.clear()
    load_mask(tmp_path / "m.png", (24, 32), note=note)
    assert seen[0].endswith("64×48 resized to the input's 32×24")


def test_default_note_goes_to_stderr(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    Image.new("L", (10, 10), 0).save(tmp_path / "m.png")
    load_mask(tmp_path / "m.png", (20, 20))
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("inceptionism: note: mask ")


def test_resize_keeps_black_interior_black_and_values_in_range() -> None:
    m = np.zeros((40, 40), np.float32)
    m[:, 20:] = 1
    mask = load_mask(m, (100, 100), note=None)
    assert mask.min() >= 0 and mask.max() <= 1
    assert torch.all(mask[..., :45] == 0) and torch.all(mask[..., 55:] == 1)


def test_in_memory_sources() -> None:
    grey = np.array([[0.0, 0.5], [1.0, 0.25]])
    for source in (
        grey,
        grey.astype(np.float32)[:, :, None],
        torch.tensor(grey)[None, None],
        torch.tensor(grey).expand(3, 2, 2),
        Image.fromarray((grey * 255).round().astype(np.uint8)),
    ):
        mask = load_mask(source, (2, 2), note=None)  # type: ignore[arg-type]
        np.testing.assert_allclose(mask[0, 0].numpy(), grey, atol=0.5 / 255)
    assert load_mask(np.array([[True, False]]), (1, 2)).flatten().tolist() == [1.0, 0.0]


@pytest.mark.parametrize(
    ("source", "match"),
    [
        (np.array([[0.0, 2.0]]), "values from 0 to 2"),
        (np.array([[np.nan, 0.0]]), "NaN"),
        (np.zeros((2, 2), np.int64), "dtype int64"),
        (np.zeros((2, 2, 5)), "shape"),
        (np.zeros((0, 3)), "shape"),
        (np.dstack([np.zeros((2, 2)), np.ones((2, 2)), np.zeros((2, 2))]), "must be grayscale"),
        ([[0, 1]], "cannot read a mask from a list"),
    ],
)
def test_bad_in_memory_masks(source: object, match: str) -> None:
    with pytest.raises(ConfigError, match=match):
        load_mask(source, (2, 2))  # type: ignore[arg-type]


def test_the_mask_file_is_not_changed(tmp_path: Path) -> None:
    Image.new("L", (10, 10), 90).save(tmp_path / "m.png")
    before = (tmp_path / "m.png").read_bytes()
    load_mask(tmp_path / "m.png", (5, 5), note=None)
    assert (tmp_path / "m.png").read_bytes() == before


# ---------------------------------------------------------------------------------------------------------------
# strength: step scaling and the final blend


def test_black_mask_leaves_pixels_exactly_unchanged(tmp_path: Path) -> None:
    rng = np.random.default_rng(5)
    Image.fromarray(rng.integers(0, 256, (20, 30, 3), dtype=np.uint8)).save(tmp_path / "in.png")
    loaded = load_image(tmp_path / "in.png")
    dream = (loaded.rgb + 0.3 * torch.randn(loaded.rgb.shape, generator=torch.Generator().manual_seed(0))).clamp(0, 1)
    m = np.zeros((20, 30), np.float32)
    m[:, 15:] = 1.0
    m[:, 10:15] = 0.5
    mask = load_mask(m, (20, 30))
    out = blend_final(loaded.rgb, dream, mask)
    black = mask[0, 0] == 0
    # bit-exact in float …
    assert torch.equal(out[..., black], loaded.rgb[..., black])
    assert torch.equal(out[..., mask[0, 0] == 1], dream[..., mask[0, 0] == 1])
    # … and through the project's 8-bit writer
    save_image(to_pil(out, loaded), tmp_path / "out.png")
    written = np.asarray(Image.open(tmp_path / "out.png"))
    original = np.asarray(Image.open(tmp_path / "in.png"))
    np.testing.assert_array_equal(written[:, :10], original[:, :10])
    assert (written[:, 15:] != original[:, 15:]).any()


def test_grey_mask_dreams_less_than_white() -> None:
    gen = torch.Generator().manual_seed(2)
    image = torch.rand(1, 3, 16, 16, generator=gen) * 0.5 + 0.25
    g = torch.randn(1, 3, 16, 16, generator=gen)
    step = 0.02 * normalize_gradient(g)
    changes = []
    for level in (0.0, 0.5, 1.0):
        mask = torch.full((1, 1, 16, 16), level)
        changes.append((image + apply_mask_to_step(step, mask) - image).abs().mean().item())
    assert changes[0] == 0 and 0 < changes[1] < changes[2]
    torch.testing.assert_close(changes[1], changes[2] / 2, rtol=1e-5, atol=0)


def test_step_is_scaled_per_pixel() -> None:
    step = torch.ones(1, 3, 2, 2)
    mask = torch.tensor([[[[0.0, 0.25], [0.5, 1.0]]]])
    torch.testing.assert_close(apply_mask_to_step(step, mask), mask.expand(1, 3, 2, 2))


def test_mask_at_octave_size() -> None:
    mask = torch.rand(1, 1, 30, 40)
    assert mask_at(mask, (30, 40)) is mask
    small = mask_at(mask, (15, 20))
    assert small.shape == (1, 1, 15, 20) and small.min() >= 0 and small.max() <= 1


def test_shape_mismatches_are_errors() -> None:
    with pytest.raises(ValueError, match=r"mask must be \(1, 1, 4, 4\)"):
        apply_mask_to_step(torch.zeros(1, 3, 4, 4), torch.zeros(1, 1, 4, 5))
    with pytest.raises(ValueError, match="differ in shape"):
        blend_final(torch.zeros(1, 3, 4, 4), torch.zeros(1, 3, 4, 5), torch.zeros(1, 1, 4, 4))


# ---------------------------------------------------------------------------------------------------------------
# regions: two objectives' gradients


def test_blend_gradients_picks_each_region_at_equal_strength() -> None:
    gen = torch.Generator().manual_seed(3)
    inside = 1000 * torch.randn(1, 3, 8, 8, generator=gen)  # a layer with huge gradients …
    outside = 0.001 * torch.randn(1, 3, 8, 8, generator=gen)  # … and one with tiny ones
    mask = torch.zeros(1, 1, 8, 8)
    mask[..., 4:] = 1
    out = blend_gradients(inside, outside, mask, "mean_abs")
    # white: the inside gradient's direction, black: the outside's
    ratio = out[..., 4:] / inside[..., 4:]
    torch.testing.assert_close(ratio, ratio.flatten()[0].expand_as(ratio))
    torch.testing.assert_close(out[..., 4:].abs().mean(), torch.tensor(1.0))
    torch.testing.assert_close(out[..., :4].abs().mean(), torch.tensor(1.0), rtol=1e-4, atol=0)
    torch.testing.assert_close(
        out[..., :4] / out[..., :4].abs().mean(), outside[..., :4] / outside[..., :4].abs().mean()
    )


@pytest.mark.parametrize("method", ["mean_abs", "std", "laplacian"])
def test_blend_gradients_all_white_or_black_is_one_gradient(method: str) -> None:
    gen = torch.Generator().manual_seed(4)
    a, b = torch.randn(1, 3, 16, 16, generator=gen), torch.randn(1, 3, 16, 16, generator=gen)
    white, black = torch.ones(1, 1, 16, 16), torch.zeros(1, 1, 16, 16)
    expected = normalize_gradient(a, method)
    # (std: the weighted std is the population one, normalize_gradient's the sample one: n / (n - 1) apart)
    torch.testing.assert_close(blend_gradients(a, b, white, method), expected, rtol=1e-3, atol=1e-5)
    torch.testing.assert_close(blend_gradients(b, a, black, method), expected, rtol=1e-3, atol=1e-5)


def test_blend_gradients_bad_method() -> None:
    with pytest.raises(ValueError, match="unknown gradient normalisation"):
        blend_gradients(torch.ones(1, 3, 2, 2), torch.ones(1, 3, 2, 2), torch.ones(1, 1, 2, 2), "l1")
