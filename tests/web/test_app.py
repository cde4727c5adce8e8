"""The page's handlers without a browser: only Gradio's own upload files are opened, refusals are one line,
the form and the model list come from the real registry."""

from __future__ import annotations

import base64
import io
from pathlib import Path
from typing import Any

import pytest
from PIL import Image

from inceptionism.errors import ImageError

pytest.importorskip("gradio", reason="needs gradio (the web extra)")


@pytest.fixture
def studio(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Any:
    from inceptionism.web.app import Studio, StudioOptions
    from inceptionism.web.limits import Limits
    from inceptionism.web.server import prepare_environment

    for key in ("GRADIO_TEMP_DIR", "GRADIO_ANALYTICS_ENABLED", "GRADIO_RUN_HISTORY", "GRADIO_HEARTBEAT_INTERVAL"):
        monkeypatch.delenv(key, raising=False)  # restored after the test, like everything prepare_environment sets
    prepare_environment(tmp_path)
    (tmp_path / "gradio").mkdir()
    return Studio(tmp_path, StudioOptions(Limits(max_upload_bytes=50_000, max_pixels=10_000), device="cpu"))


def png_bytes(width: int, height: int) -> bytes:
    out = io.BytesIO()
    Image.new("RGB", (width, height), "teal").save(out, format="PNG")
    return out.getvalue()


def test_a_file_gradio_received_is_accepted(studio: Any, tmp_path: Path) -> None:
    upload = tmp_path / "gradio" / "abc" / "photo.png"
    upload.parent.mkdir()
    upload.write_bytes(png_bytes(40, 30))
    assert studio.upload_path({"path": str(upload)}, tmp_path) == upload


@pytest.mark.parametrize("path", ["/etc/passwd", "{root}/gradio/../jobs/x.png", "{root}/elsewhere.png"])
def test_a_path_outside_gradios_uploads_is_refused(studio: Any, tmp_path: Path, path: str) -> None:
    (tmp_path / "elsewhere.png").write_bytes(png_bytes(4, 4))
    with pytest.raises(ImageError, match="was not received; upload it again"):
        studio.upload_path({"path": path.format(root=tmp_path)}, tmp_path)


def test_nothing_uploaded_says_what_to_do(studio: Any, tmp_path: Path) -> None:
    with pytest.raises(ImageError, match="no picture: upload, paste or take one first"):
        studio.upload_path(None, tmp_path)


def test_a_pasted_picture_is_written_into_the_jobs_folder(studio: Any, tmp_path: Path) -> None:
    folder = studio._job_dir()
    url = "data:image/png;base64," + base64.b64encode(png_bytes(20, 10)).decode()
    path = studio.upload_path({"url": url}, folder)
    assert path.parent == folder and path.read_bytes() == png_bytes(20, 10)


def test_pasted_pictures_over_the_limits_are_refused(studio: Any, tmp_path: Path) -> None:
    folder = studio._job_dir()
    huge = "data:image/png;base64," + "A" * 100_000
    with pytest.raises(ImageError, match=r"over 0\.1 MB"):
        studio.upload_path({"url": huge}, folder)
    many_pixels = "data:image/png;base64," + base64.b64encode(png_bytes(200, 100)).decode()
    with pytest.raises(ImageError, match="20,000 pixels, more than the limit of 10,000"):
        studio.upload_path({"url": many_pixels}, folder)


def test_models_list_says_which_have_no_weights(studio: Any) -> None:
    from inceptionism.web.app import model_choices

    choices = dict((name, label) for label, name in model_choices())
    assert choices["efficientnet-lite0"] == "efficientnet-lite0"  # packaged: works offline out of the box
    assert choices["inception_v3"] == "inception_v3 (weights missing)"
    update, mask_update, status = studio.model_changed("inception_v3")
    assert status.startswith("**inception_v3 cannot be used:** no weights for inception_v3")
    update, mask_update, status = studio.model_changed("efficientnet-lite0")
    assert ("block10 · 112 channels", "block10") in update["choices"]
    assert mask_update["choices"] == update["choices"]  # mask layers come from the same model


def test_the_page_builds(studio: Any) -> None:
    import gradio as gr

    app = studio.build()
    assert isinstance(app, gr.Blocks)
    names = {fn.api_name for fn in app.fns.values() if fn.api_visibility == "public"}
    assert names == {"dream", "zoom"}  # the rest of the page is not an API


def gradio_upload(tmp_path: Path, name: str, picture: Image.Image) -> dict[str, str]:
    """A payload as Gradio sends it for a file it received into its upload folder."""
    path = tmp_path / "gradio" / name
    path.parent.mkdir(parents=True, exist_ok=True)
    picture.save(path)
    return {"path": str(path)}


# Every control of the page that maps to a DreamConfig field, each away from its default, in the order
# load_settings returns them (its last output, the status, is left out).
FORM = {
    "model": "efficientnet-lite0",
    "preset": "",
    "layers": ["block8:0.5", "block10[7,31]"],
    "octaves": 2,
    "steps": 3,
    "step_size": 0.02,
    "seed": 11,
    "classes": ["goldfish"],
    "tv": 0.5,
    "keep_colors": True,
    "seamless": True,
    "grad_blur": 1.5,
    "grad_norm": "laplacian",
    "l2_pull": 2.0,
    "mask_layers": ["block12"],
    "mask_strength": 0.75,
}


def test_every_control_round_trips_through_a_pictures_settings(studio: Any, tmp_path: Path) -> None:
    from inceptionism.api import settings_record
    from inceptionism.config import DreamConfig
    from inceptionism.io import save_image
    from inceptionism.recipes import MASK_SHA256

    defaults = DreamConfig()
    for key, value in FORM.items():
        assert key in ("model", "preset") or value != getattr(defaults, key, None), f"{key} is its default"
    mask = gradio_upload(tmp_path, "m1/half.png", Image.new("L", (40, 30), 255))
    values = {k: v for k, v in FORM.items() if k != "preset"}
    cfg = studio._config(studio._job_dir(), None, values, {"mask": mask, "guide": None})
    assert cfg.mask == mask["path"] and cfg.guide is None
    assert (cfg.keep_colors, cfg.seamless, cfg.grad_blur, cfg.grad_norm) == (True, True, 1.5, "laplacian")
    assert (cfg.l2_pull, cfg.mask_layers, cfg.mask_strength) == (2.0, ("block12",), 0.75)

    # The settings a dream writes (the mask by name and digest), loaded back by the page.
    record = settings_record(cfg, _Model(), _Objective(), "fp32")
    assert record["mask"] == "half.png" and MASK_SHA256 in record["extra"]
    picture = gradio_upload(tmp_path, "m2/earlier.png", Image.new("RGB", (16, 12)))
    save_image(Image.new("RGB", (16, 12)), picture["path"], record)
    outputs = studio.load_settings(picture)
    loaded = dict(zip(FORM, outputs[:-1], strict=True))
    for key in ("layers", "mask_layers"):
        assert ("block12 · 192 channels", "block12") in loaded[key]["choices"]
        loaded[key] = loaded[key]["value"]
    assert loaded == FORM
    assert outputs[-1] == (
        "Settings loaded. They were made with a mask (half.png): upload it again (files are not kept in settings)."
    )


class _Model:
    """Just what settings_record reads of a model: where its weights came from."""

    source = "in memory"


class _Objective:
    expression = "l2(block10)"
    description = "l2(block10)"


def test_settings_without_files_say_nothing_of_them(studio: Any, tmp_path: Path) -> None:
    from inceptionism.io import save_image
    from inceptionism.web.tasks import files_note

    picture = gradio_upload(tmp_path, "s/plain.png", Image.new("RGB", (8, 8)))
    save_image(Image.new("RGB", (8, 8)), picture["path"], {"seed": 4, "grad_norm": "std"})
    outputs = studio.load_settings(picture)
    loaded = dict(zip(FORM, outputs[:-1], strict=True))
    assert outputs[-1] == "Settings loaded." and loaded["grad_norm"] == "std" and loaded["seamless"] is False
    both = files_note({"guide": "g.png", "mask": "/x/m.png"})
    assert both == (
        "They were made with a guide image (g.png) and a mask (m.png): upload them again "
        "(files are not kept in settings)."
    )


def test_mask_uploads_get_the_limits_of_pictures(studio: Any, tmp_path: Path) -> None:
    from inceptionism.errors import ConfigError

    folder = studio._job_dir()
    values = {"mask_layers": [], "layers": [], "classes": []}
    (tmp_path / "mine.png").write_bytes(png_bytes(4, 4))
    with pytest.raises(ImageError, match=r"^the mask was not received; upload it again$"):
        studio._config(folder, None, dict(values), {"mask": {"path": str(tmp_path / "mine.png")}})
    big = gradio_upload(tmp_path, "b/big.png", Image.new("L", (200, 100)))
    with pytest.raises(ImageError, match=r"^the mask is 200×100 = 20,000 pixels, more than the limit of 10,000"):
        studio._config(folder, None, dict(values), {"mask": big})
    text = tmp_path / "gradio" / "t" / "mask.png"
    text.parent.mkdir()
    text.write_text("not a picture")
    with pytest.raises(ImageError, match=r"^the mask is not an image the studio can read"):
        studio._config(folder, None, dict(values), {"mask": {"path": str(text)}})
    with pytest.raises(ConfigError, match=r"^mask layers are dreamt where a mask is white: upload a mask"):
        studio._config(folder, None, {**values, "mask_layers": ["block12"]}, {"mask": None})


def test_the_page_offers_every_gradient_normalisation(studio: Any) -> None:
    from inceptionism.transforms import GRAD_NORMS

    app = studio.build()
    (dropdown,) = [b for b in app.blocks.values() if getattr(b, "elem_id", None) == "grad-norm"]
    assert [value for _, value in dropdown.choices] == list(GRAD_NORMS)
    assert "laplacian" in GRAD_NORMS
