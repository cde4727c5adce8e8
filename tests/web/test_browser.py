"""The studio in a real browser: Debian's Chromium driven by Playwright, against a server started here."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from PIL import Image
from studio_server import Server, photo

from inceptionism.io import read_settings

CHROMIUM = Path("/usr/bin/chromium")
pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(
        not CHROMIUM.exists(), reason="needs Debian's chromium at /usr/bin/chromium (apt-get install chromium)"
    ),
]
sync_api = pytest.importorskip("playwright.sync_api", reason="needs playwright (the web extra)")

# Every <img> source the result component shows, in order: a preview must come before the result.
WATCH_RESULT = """
window.__results = [];
new MutationObserver(() => {
  const img = document.querySelector('#result img');
  if (img && window.__results[window.__results.length - 1] !== img.src) window.__results.push(img.src);
}).observe(document, {subtree: true, childList: true, attributes: true, attributeFilter: ['src']});
"""


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    with sync_api.sync_playwright() as p:
        chromium = p.chromium.launch(executable_path=str(CHROMIUM), args=["--no-sandbox"])
        yield chromium
        chromium.close()


@pytest.fixture
def page(browser: Any, studio: Server, loopback: None) -> Iterator[Any]:
    """The studio's page, with the network outside the machine unavailable (requests there are recorded)."""
    context = browser.new_context(accept_downloads=True, viewport={"width": 1280, "height": 1000})
    outside: list[str] = []

    def route(r: Any) -> None:
        if r.request.url.startswith(studio.url.rstrip("/")) or r.request.url.startswith("data:"):
            r.continue_()
        else:
            outside.append(r.request.url)
            r.abort()

    context.route("**/*", route)
    page = context.new_page()
    page.add_init_script(WATCH_RESULT)
    page.goto(studio.url)
    page.wait_for_selector("#dream")
    page.outside = outside
    yield page
    context.close()


def set_number(page: Any, label: str, value: float) -> None:
    page.get_by_label(label).fill(str(value))


def wait_idle(page: Any) -> None:
    """Until the page has no event pending (a click while one is pending is ignored, as Gradio does)."""
    page.wait_for_function(
        "document.querySelector('#status [data-testid=status-tracker]').classList.contains('hide')", timeout=20_000
    )


def upload(page: Any, path: Path) -> None:
    page.set_input_files("#input input[type=file]", str(path))
    page.wait_for_selector("#input img")


def test_page_works_offline(page: Any) -> None:
    assert page.outside == []  # nothing fetched from a CDN or elsewhere
    assert "inceptionism studio" in page.inner_text("body")
    assert "efficientnet-lite0" in page.input_value("#model input")


def test_dream_previews_then_downloads_png_with_settings(page: Any, tmp_path: Path) -> None:
    source = photo(tmp_path / "photo.png", 200, 150)
    upload(page, source)
    set_number(page, "Octaves (0: auto)", 3)
    set_number(page, "Steps per octave", 3)
    set_number(page, "Seed", 7)
    page.click("#dream")
    page.wait_for_selector("#download a", timeout=90_000)
    with page.expect_download() as info:
        page.click("#download a")
    saved = tmp_path / "downloaded.png"
    info.value.save_as(saved)
    with Image.open(saved) as im:
        assert im.format == "PNG" and im.size == (200, 150)
    settings = read_settings(saved)
    assert settings["seed"] == 7 and settings["steps"] == 3 and settings["octaves"] == 3
    shown = page.evaluate("window.__results")
    assert len(shown) >= 2, f"no preview before the result: {shown}"  # octave previews, then the result
    assert "Done" in page.inner_text("#status")
    assert page.locator("#gallery img").count() == 1


def test_stop_ends_a_job(page: Any, tmp_path: Path) -> None:
    upload(page, photo(tmp_path / "photo.png", 480, 360, seed=1))
    set_number(page, "Octaves (0: auto)", 2)
    set_number(page, "Steps per octave", 400)
    page.click("#dream")
    page.wait_for_function("document.querySelector('#status').innerText.includes('step')", timeout=60_000)
    started = time.monotonic()
    page.click("#stop")
    page.wait_for_function("document.querySelector('#status').innerText.includes('Stopped')", timeout=20_000)
    assert time.monotonic() - started < 20
    wait_idle(page)
    # The device is free again at once: a short job goes through.
    set_number(page, "Steps per octave", 1)
    set_number(page, "Octaves (0: auto)", 1)
    page.click("#dream")
    page.wait_for_selector("#download a", timeout=60_000)
    assert page.locator("#download a").count() == 1


def test_non_image_is_refused_on_the_page(page: Any, tmp_path: Path) -> None:
    fake = tmp_path / "notes.png"
    fake.write_text("not a picture at all\n" * 50)
    page.set_input_files("#input input[type=file]", str(fake))
    page.click("#dream")
    page.wait_for_function(
        "document.querySelector('#status').innerText.includes('not an image the studio can read')", timeout=30_000
    )
    assert page.get_by_text("not an image the studio can read").first.is_visible()


def test_oversize_upload_is_refused_on_the_page(page: Any, tmp_path: Path) -> None:
    big = tmp_path / "big.png"
    big.write_bytes(b"\x89PNG\r\n\x1a\n" + bytes(1_200_000))  # over the test server's 1 MB
    page.set_input_files("#input input[type=file]", str(big))
    message = page.get_by_text("exceed the maximum allowed size")
    message.first.wait_for(timeout=15_000)
    assert message.first.is_visible()


def test_too_many_pixels_is_refused_on_the_page(page: Any, tmp_path: Path) -> None:
    # 800 × 600 = 480,000 pixels, over the test server's 300,000; a small file, so only our check can catch it.
    large = tmp_path / "large.png"
    Image.new("RGB", (800, 600), (90, 120, 200)).save(large)
    upload(page, large)
    page.click("#dream")
    page.wait_for_function("document.querySelector('#status').innerText.includes('pixels')", timeout=30_000)
    assert "more than the limit of 300,000" in page.inner_text("#status")


def test_load_settings_restores_controls(page: Any, tmp_path: Path) -> None:
    from inceptionism.io import save_image

    picture = tmp_path / "earlier.png"
    settings = {"seed": 41, "steps": 5, "octaves": 2, "step_size": 0.02, "keep_colors": True, "grad_blur": 2.5}
    save_image(Image.new("RGB", (64, 48)), picture, {**settings, "mask": "sky.png", "mask_layers": ["block12"]})
    page.set_input_files("#load-settings input[type=file]", str(picture))
    page.wait_for_function("document.querySelector('#status').innerText.includes('Settings loaded')", timeout=30_000)
    assert page.get_by_label("Seed").input_value() == "41"
    assert page.get_by_label("Steps per octave").input_value() == "5"
    assert page.get_by_label("Octaves (0: auto)").input_value() == "2"
    page.get_by_text("More controls").click()
    assert page.locator("#keep input[type=checkbox]").is_checked()
    assert page.get_by_label("Gradient blur (pixels)").input_value() == "2.5"
    assert "block12" in page.inner_text("#mask-layers")
    assert "made with a mask (sky.png): upload it again" in page.inner_text("#status")


def pick(page: Any, dropdown: str, option: str) -> None:
    page.click(f"{dropdown} input")
    page.get_by_role("option", name=option, exact=True).click()


def test_binds_to_loopback_by_default(studio: Server) -> None:
    assert studio.url.startswith("http://127.0.0.1:")


def test_model_without_weights_says_so(page: Any) -> None:
    pick(page, "#model", "inception_v3 (weights missing)")
    page.wait_for_function("document.querySelector('#status').innerText.includes('cannot be used')", timeout=30_000)
    assert "no weights for inception_v3" in page.inner_text("#status")
    pick(page, "#model", "efficientnet-lite0")
    page.wait_for_function("document.querySelector('#status').innerText.includes('layers')", timeout=30_000)
    page.click("#layers input")
    assert page.get_by_role("option", name="block10 · 112 channels").count() == 1  # the model's list, with channels


def test_zoom_tab_makes_a_video_that_plays(page: Any, tmp_path: Path) -> None:
    upload(page, photo(tmp_path / "photo.png", 160, 120))
    set_number(page, "Steps per octave", 2)
    page.get_by_role("tab", name="Zoom animation").click()
    page.get_by_label("Frames", exact=True).fill("3")
    page.click("#zoom")
    page.wait_for_selector("#video video", timeout=90_000)
    page.wait_for_function("document.querySelector('#video video').readyState >= 1", timeout=30_000)
    width, duration = page.evaluate(
        "(() => { const v = document.querySelector('#video video'); return [v.videoWidth, v.duration]; })()"
    )
    assert width == 160 and duration == pytest.approx(3 / 12, abs=0.05)  # 3 frames at 12 per second


def test_waiting_job_shows_its_queue_position_and_a_closed_tab_frees_the_device(
    page: Any, browser: Any, studio: Server, tmp_path: Path
) -> None:
    source = photo(tmp_path / "photo.png", 160, 120)
    upload(page, source)
    set_number(page, "Steps per octave", 5000)  # minutes of work unless cancelled
    page.click("#dream")
    page.wait_for_function("document.querySelector('#status').innerText.includes('step')", timeout=60_000)
    other = browser.new_page()
    try:
        other.goto(studio.url)
        other.wait_for_selector("#dream")
        upload(other, source)
        set_number(other, "Steps per octave", 1)
        other.click("#dream")
        other.get_by_text("queue: 1/1").first.wait_for(timeout=15_000)  # in line behind the long job
        closed = time.monotonic()
        page.close()  # the tab with the long job goes away: its job is cancelled
        other.wait_for_selector("#download a", timeout=60_000)
        assert time.monotonic() - closed < 30
    finally:
        other.close()


def test_use_as_input_continues_from_the_result(page: Any, tmp_path: Path) -> None:
    upload(page, photo(tmp_path / "photo.png", 120, 90))
    set_number(page, "Steps per octave", 1)
    page.click("#dream")
    page.wait_for_selector("#download a", timeout=60_000)
    before = page.get_attribute("#input img", "src")
    page.click("#use-as-input")
    page.wait_for_function(f"document.querySelector('#input img').src !== {before!r}", timeout=15_000)
    page.click("#dream")
    page.wait_for_function("document.querySelectorAll('#gallery img').length === 2", timeout=60_000)


def test_a_half_black_mask_leaves_that_half_as_it_was(page: Any, tmp_path: Path) -> None:
    import numpy as np

    source = photo(tmp_path / "photo.png", 96, 64, seed=3)
    mask = tmp_path / "half.png"
    Image.fromarray(np.repeat([[0] * 48 + [255] * 48], 64, axis=0).astype(np.uint8)).save(mask)
    upload(page, source)
    set_number(page, "Octaves (0: auto)", 1)
    set_number(page, "Steps per octave", 2)
    page.get_by_text("More controls").click()
    page.set_input_files("#mask input[type=file]", str(mask))
    page.wait_for_selector("#mask img")
    page.locator("#keep input[type=checkbox]").check()
    pick(page, "#grad-norm", "Laplacian pyramid (broader strokes)")
    page.click("#dream")
    page.wait_for_selector("#download a", timeout=90_000)
    with page.expect_download() as info:
        page.click("#download a")
    saved = tmp_path / "downloaded.png"
    info.value.save_as(saved)
    with Image.open(source) as a, Image.open(saved) as b:
        before, after = np.asarray(a.convert("RGB")), np.asarray(b.convert("RGB"))
    assert np.array_equal(after[:, :48], before[:, :48])  # the mask's black half: not dreamt at all
    assert np.abs(after[:, 48:].astype(int) - before[:, 48:]).mean() > 1  # the white half: dreamt
    settings = read_settings(saved)
    assert settings["mask"] == "half.png" and settings["keep_colors"] is True
    assert settings["grad_norm"] == "laplacian"
