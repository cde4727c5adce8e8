"""The studio's page (Gradio Blocks): an input picture, the dream's controls, Dream / Stop with a preview after
every octave, the result as a PNG with its settings, this visit's gallery, "use as input", "load settings",
and a zoom-animation tab.

Every computing event shares one Gradio concurrency group (:data:`DEVICE_QUEUE`), so visitors wait in one line
with their position shown. Handlers take Gradio's raw payloads (``preprocess=False``): the files are checked
here, from their headers, before anything decodes them.
"""

from __future__ import annotations

import base64
import binascii
import logging
import math
import shutil
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import gradio as gr
from gradio.utils import get_upload_folder

from inceptionism.config import MAX_GRAD_BLUR, DreamConfig
from inceptionism.errors import ConfigError, ImageError, InceptionismError
from inceptionism.transforms import GRAD_NORMS
from inceptionism.web.jobs import DeviceSlots, Job, JobBoard, one_line
from inceptionism.web.limits import MB, SUPPORTED_FORMATS, Limits, check_upload, inside
from inceptionism.web.tasks import (
    FILE_FIELDS,
    ZoomRequest,
    config_from_form,
    dream_task,
    files_note,
    form_from_settings,
    require_weights,
    zoom_task,
)

log = logging.getLogger("inceptionism.web")
DEVICE_QUEUE = "device"  # the concurrency group every computing event shares: one queue per device
STOP_WAIT = 10.0  # seconds Stop waits for a job to reach its next step and end
# How the page names each gradient normalisation (transforms.GRAD_NORMS); a new one shows under its own name.
GRAD_NORM_LABELS = {
    "mean_abs": "mean |gradient| (classic)",
    "std": "standard deviation",
    "laplacian": "Laplacian pyramid (broader strokes)",
}


@dataclass(frozen=True)
class StudioOptions:
    """A studio's settings: its limits, jobs computing at once, the device, how long files are kept (seconds),
    how many jobs may wait in the queue."""

    limits: Limits = field(default_factory=Limits)
    concurrency: int = 1
    device: str = "auto"
    keep: float = 3600.0
    queue_size: int = 100


def model_choices() -> list[tuple[str, str]]:
    """(label, name) of every model; those whose weights are not here offline say so."""
    from inceptionism.models import get_model_spec, list_models, weights_available

    out = []
    for name in list_models():
        missing = weights_available(get_model_spec(name)) is None
        out.append((f"{name} (weights missing)" if missing else name, name))
    return out


def layer_choices(model: str, device: str) -> tuple[list[tuple[str, str]], list[str]]:
    """``([(label with channels, name)], default layers)`` of ``model``; raises when it cannot be loaded."""
    from inceptionism.api import get_model
    from inceptionism.devices import pick_device

    require_weights(model)
    net = get_model(model, None, pick_device(device))
    choices = [(f"{info.name} · {info.channels} channels", info.name) for info in net.layer_info()]
    return choices, list(net.spec.default_layers)


class Studio:
    """The page and its handlers; ``root`` is the server's own folder, where each job gets a folder."""

    def __init__(self, root: Path, options: StudioOptions) -> None:
        self.root = root
        self.jobs_dir = root / "jobs"
        self.jobs_dir.mkdir(parents=True, exist_ok=True)
        self.options = options
        self.limits = options.limits
        self.slots = DeviceSlots(options.concurrency)
        self.board = JobBoard()

    # --- inputs -----------------------------------------------------------------------------------------------

    def _job_dir(self) -> Path:
        folder = self.jobs_dir / uuid.uuid4().hex
        folder.mkdir()
        return folder

    def upload_path(self, payload: Any, folder: Path, what: str = "the picture") -> Path:
        """The file of an image payload (Gradio's ``FileData``), checked: a file Gradio received into its upload
        folder, or a data URL (pasted, webcam) written into the job's ``folder``. Never a path of the visitor's."""
        if not payload:
            raise ImageError(f"no {what.removeprefix('the ')}: upload, paste or take one first")
        if isinstance(payload, dict):
            path, url = payload.get("path"), payload.get("url")
        else:
            path, url = None, None
        if isinstance(url, str) and url.startswith("data:"):
            return self._data_url(url, folder, what)
        if isinstance(path, str) and inside(path, get_upload_folder()) and Path(path).is_file():
            check_upload(Path(path), self.limits, what)
            return Path(path)
        raise ImageError(f"{what} was not received; upload it again")

    def _data_url(self, url: str, folder: Path, what: str) -> Path:
        head, _, data = url.partition(",")
        if ";base64" not in head or len(data) * 3 // 4 > self.limits.max_upload_bytes:
            raise ImageError(
                f"{what} is not a base64 image or is over {self.limits.max_upload_bytes / MB:.1f} MB; upload a file"
            )
        try:
            raw = base64.b64decode(data, validate=True)
        except (binascii.Error, ValueError):
            raise ImageError(f"{what} is not a readable image; upload a file") from None
        path = folder / "pasted"
        path.write_bytes(raw)
        check_upload(path, self.limits, what)
        return path

    def _config(
        self, folder: Path, preset: str | None, values: dict[str, Any], files: dict[str, Any] | None = None
    ) -> DreamConfig:
        """The config of the page's ``values``; ``files``: the guide and mask payloads, each checked as an upload."""
        for key, payload in (files or {}).items():
            if payload:
                values[key] = str(self.upload_path(payload, folder, f"the {FILE_FIELDS[key]}"))
        return config_from_form(values, preset, self.options.device)

    # --- jobs ---------------------------------------------------------------------------------------------------

    def _follow(self, job: Job, session: str) -> Iterator[tuple[str, Any]]:
        """``(kind, value)`` from a running job until it ends; it is cancelled if the page stops listening."""
        self.board.add(session, job)
        try:
            for update in job.updates():
                if update.kind == "progress":
                    yield "status", f"{update.fraction:.0%} · {update.text}"
                elif update.kind == "preview":
                    yield "preview", update.image
                elif update.kind == "done":
                    yield "done", update.result
                elif update.text == "stopped":
                    yield "status", "Stopped."
                else:
                    yield "status", f"**Failed:** {update.text}"
                    raise gr.Error(update.text, print_exception=False)
        finally:
            job.cancel()  # no-op once done; else the visitor left or pressed Stop
            self.board.remove(session, job)

    def run_dream(
        self,
        image: Any,
        model: str,
        preset: str,
        layers: list[str],
        octaves: float,
        steps: float,
        step_size: float,
        seed: float,
        classes: list[str],
        tv: float,
        guide: Any,
        keep_colors: bool,
        seamless: bool,
        grad_blur: float,
        grad_norm: str,
        l2_pull: float,
        mask: Any,
        mask_layers: list[str],
        mask_strength: float,
        gallery: list[str],
        request: gr.Request,
    ) -> Iterator[tuple[Any, ...]]:
        """Outputs: (result image, status, download file, gallery, gallery state)."""
        gallery = list(gallery or [])
        folder = self._job_dir()
        try:
            source = self.upload_path(image, folder)
            values = dict(model=model, layers=layers, octaves=octaves, steps=steps, step_size=step_size, seed=seed)
            values.update(classes=classes, tv=tv, keep_colors=keep_colors, seamless=seamless, grad_blur=grad_blur)
            values.update(grad_norm=grad_norm, l2_pull=l2_pull, mask_layers=mask_layers, mask_strength=mask_strength)
            cfg = self._config(folder, preset, values, {"guide": guide, "mask": mask})
        except InceptionismError as exc:
            shutil.rmtree(folder, ignore_errors=True)
            message = one_line(str(exc))
            yield gr.skip(), f"**Refused:** {message}", gr.skip(), gr.skip(), gr.skip()
            raise gr.Error(message, print_exception=False) from None
        job = Job(dream_task(source, cfg, folder, self.limits), self.slots, "dream").start()
        yield gr.skip(), "waiting for the device…", None, gr.skip(), gr.skip()
        for kind, value in self._follow(job, request.session_hash or "anonymous"):
            if kind == "status":
                yield gr.skip(), value, gr.skip(), gr.skip(), gr.skip()
            elif kind == "preview":
                yield value, gr.skip(), gr.skip(), gr.skip(), gr.skip()
            else:
                gallery.append(str(value))
                yield str(value), "Done: the PNG below carries its settings.", str(value), gallery, gallery

    def run_zoom(
        self,
        image: Any,
        model: str,
        preset: str,
        layers: list[str],
        octaves: float,
        steps: float,
        step_size: float,
        seed: float,
        classes: list[str],
        tv: float,
        frames: float,
        fps: float,
        zoom: float,
        rotate: float,
        keep_colors: bool,
        seamless: bool,
        grad_blur: float,
        grad_norm: str,
        l2_pull: float,
        request: gr.Request,
    ) -> Iterator[tuple[Any, ...]]:
        """Outputs: (latest frame, status, video). The guide and the mask are the Dream tab's only."""
        folder = self._job_dir()
        try:
            source = self.upload_path(image, folder)
            values = dict(model=model, layers=layers, octaves=octaves, steps=steps, step_size=step_size, seed=seed)
            values.update(classes=classes, tv=tv, keep_colors=keep_colors, seamless=seamless, grad_blur=grad_blur)
            cfg = self._config(folder, preset, {**values, "grad_norm": grad_norm, "l2_pull": l2_pull})
            zr = ZoomRequest(
                frames=_whole(frames, "frames"),
                fps=_whole(fps, "frames per second"),
                zoom=_number(zoom, "zoom per frame"),
                rotate=_number(rotate, "degrees per frame"),
            )
        except InceptionismError as exc:
            shutil.rmtree(folder, ignore_errors=True)
            message = one_line(str(exc))
            yield gr.skip(), f"**Refused:** {message}", gr.skip()
            raise gr.Error(message, print_exception=False) from None
        job = Job(zoom_task(source, cfg, zr, folder, self.limits), self.slots, "zoom").start()
        yield gr.skip(), "waiting for the device…", None
        for kind, value in self._follow(job, request.session_hash or "anonymous"):
            if kind == "status":
                yield gr.skip(), value, gr.skip()
            elif kind == "preview":
                yield value, gr.skip(), gr.skip()
            else:
                yield gr.skip(), "Done: the video carries its settings in its comment.", str(value)

    def stop(self, request: gr.Request) -> str:
        """Stop this tab's jobs (Stop button); says so once they have ended (at their next step)."""
        stopped = self.board.cancel(request.session_hash or "anonymous", wait=STOP_WAIT)
        return "Stopped." if stopped else "Nothing to stop."

    def closed(self, request: gr.Request) -> None:
        """The tab was closed or reloaded: its jobs end."""
        self.board.cancel(request.session_hash or "anonymous")

    # --- settings and gallery -----------------------------------------------------------------------------------

    def load_settings(self, payload: Any) -> tuple[Any, ...]:
        """Controls from a picture (or .json) written by inceptionism: (model, preset, layers, octaves, steps,
        step size, seed, classes, tv, keep colours, seamless, gradient blur, gradient normalisation, L2 pull,
        mask layers, mask strength, status). A guide or mask the settings name is not restored: the status says
        so."""
        from inceptionism.io import read_settings

        try:
            if not isinstance(payload, dict) or not isinstance(payload.get("path"), str):
                raise ImageError("no settings file received; upload it again")
            path = Path(payload["path"])
            if not inside(path, get_upload_folder()) or not path.is_file():
                raise ImageError("the settings file was not received; upload it again")
            if path.suffix.lower() == ".json":
                if path.stat().st_size > MB:
                    raise ImageError("the settings file is over 1 MB; it is not one inceptionism wrote")
            else:
                check_upload(path, self.limits, "the settings picture")
            values = form_from_settings(read_settings(path))
            choices, _ = self._layers_for(values["model"])
        except InceptionismError as exc:
            message = one_line(str(exc))
            raise gr.Error(message, print_exception=False) from None
        return (
            values["model"],
            "",
            gr.update(choices=choices, value=values["layers"]),
            values["octaves"],
            values["steps"],
            values["step_size"],
            values["seed"],
            values["classes"],
            values["tv"],
            values["keep_colors"],
            values["seamless"],
            values["grad_blur"],
            values["grad_norm"],
            values["l2_pull"],
            gr.update(choices=choices, value=values["mask_layers"]),
            values["mask_strength"],
            " ".join(filter(None, ("Settings loaded.", files_note(values)))),
        )

    def _layers_for(self, model: str) -> tuple[list[tuple[str, str]], list[str]]:
        return layer_choices(model, self.options.device)

    def model_changed(self, model: str) -> tuple[Any, Any, str]:
        """New choices (with channel counts) of the layers and mask layers for ``model``, or the reason it cannot
        be used."""
        try:
            choices, _ = self._layers_for(model)
        except InceptionismError as exc:
            empty = gr.update(choices=[], value=[])
            return empty, empty, f"**{model} cannot be used:** {one_line(str(exc))}"
        update = gr.update(choices=choices, value=[])
        return update, update, f"{model}: {len(choices)} layers"

    @staticmethod
    def use_as_input(gallery: list[str], selected: int | None) -> str | None:
        """The chosen (else the latest) result of this visit, to dream on again."""
        if not gallery:
            raise gr.Error("no result yet: dream first", print_exception=False)
        index = selected if selected is not None and 0 <= selected < len(gallery) else -1
        return gallery[index]

    # --- the page -----------------------------------------------------------------------------------------------

    def build(self) -> gr.Blocks:
        from inceptionism.presets import list_presets

        defaults = DreamConfig()
        try:
            layers, _ = self._layers_for(defaults.model)
            model_note = ""
        except InceptionismError as exc:
            layers, model_note = [], f"**{defaults.model} cannot be used:** {one_line(str(exc))}"
        kinds = ", ".join(SUPPORTED_FORMATS.values())
        lim = self.limits
        with gr.Blocks(title="inceptionism studio", analytics_enabled=False, delete_cache=self._delete_cache()) as app:
            gr.Markdown(
                f"## inceptionism studio\nUpload, paste or take a picture ({kinds}; up to "
                f"{lim.max_upload_bytes / MB:.0f} MB and {lim.max_pixels / 1e6:.1f} megapixels), choose the "
                "controls and press **Dream**. Results are kept for this visit only."
            )
            gallery_state = gr.State([])
            selected_state = gr.State(None)
            with gr.Row():
                with gr.Column(scale=1):
                    image = gr.Image(
                        label="Input", type="filepath", sources=["upload", "clipboard", "webcam"], elem_id="input"
                    )
                    model = gr.Dropdown(model_choices(), value=defaults.model, label="Model", elem_id="model")
                    preset = gr.Dropdown(
                        [("(none)", "")] + [(f"{p.name}: {p.description}", p.name) for p in list_presets()],
                        value="",
                        label="Preset (the controls below go on top of it)",
                    )
                    layer_box = gr.Dropdown(
                        layers,
                        value=[],
                        multiselect=True,
                        allow_custom_value=True,
                        label="Layers (empty: the model's defaults; type NAME[7,31]:0.5 for channels and weights)",
                        elem_id="layers",
                    )
                    with gr.Row():
                        octaves = gr.Number(0, label="Octaves (0: auto)", precision=0, minimum=0, elem_id="octaves")
                        steps = gr.Number(defaults.steps, label="Steps per octave", precision=0, minimum=1)
                    with gr.Row():
                        step_size = gr.Number(defaults.step_size, label="Step size", minimum=0.0001, maximum=0.2)
                        seed = gr.Number(defaults.seed, label="Seed", precision=0, minimum=0)
                    with gr.Accordion("More controls", open=False):
                        classes = gr.Dropdown(
                            _class_names(),
                            value=[],
                            multiselect=True,
                            label="ImageNet classes to raise",
                        )
                        with gr.Row():
                            tv = gr.Number(defaults.tv, label="Smoothness (total variation)", minimum=0)
                            l2_pull = gr.Number(defaults.l2_pull, label="Pull toward the input (L2)", minimum=0)
                        with gr.Row():
                            grad_norm = gr.Dropdown(
                                [(GRAD_NORM_LABELS.get(name, name), name) for name in GRAD_NORMS],
                                value=defaults.grad_norm,
                                label="Gradient normalisation",
                                elem_id="grad-norm",
                            )
                            grad_blur = gr.Number(
                                defaults.grad_blur, label="Gradient blur (pixels)", minimum=0, maximum=MAX_GRAD_BLUR
                            )
                        with gr.Row():
                            keep_colors = gr.Checkbox(
                                defaults.keep_colors, label="Keep colours (dream the brightness only)", elem_id="keep"
                            )
                            seamless = gr.Checkbox(
                                defaults.seamless, label="Seamless (a tileable dream)", elem_id="seamless"
                            )
                        with gr.Row():  # the files the Dream tab uses (a zoom has neither)
                            guide = gr.Image(
                                label="Guide image (Dream tab)",
                                type="filepath",
                                sources=["upload", "clipboard"],
                                height=220,
                            )
                            mask = gr.Image(
                                label="Mask: white dreams, black stays (Dream tab)",
                                type="filepath",
                                sources=["upload"],
                                height=220,
                                elem_id="mask",
                            )
                        mask_layers = gr.Dropdown(
                            layers,
                            value=[],
                            multiselect=True,
                            allow_custom_value=True,
                            label="Mask layers (dreamt where the mask is white, the layers above elsewhere)",
                            elem_id="mask-layers",
                        )
                        mask_strength = gr.Slider(
                            0, 1, value=defaults.mask_strength, step=0.05, label="Mask strength", elem_id="strength"
                        )
                    load_file = gr.File(
                        label="Load settings from a picture (or .json) inceptionism wrote", elem_id="load-settings"
                    )
                with gr.Column(scale=1):
                    status = gr.Markdown(model_note or "Ready.", elem_id="status")
                    with gr.Tabs():
                        with gr.Tab("Dream"):
                            with gr.Row():
                                dream_btn = gr.Button("Dream", variant="primary", elem_id="dream")
                                stop_btn = gr.Button("Stop", variant="stop", elem_id="stop")
                            result = gr.Image(label="Dream", type="filepath", format="png", elem_id="result")
                            download = gr.File(label="Download (PNG with its settings)", elem_id="download")
                            gallery = gr.Gallery(
                                label="This visit's results",
                                columns=6,
                                height=180,
                                object_fit="contain",
                                fit_columns=False,
                                interactive=False,
                                elem_id="gallery",
                            )
                            use_btn = gr.Button("Use as input", elem_id="use-as-input")
                        with gr.Tab("Zoom animation"):
                            with gr.Row():
                                frames = gr.Number(24, label="Frames", precision=0, minimum=1, maximum=lim.max_frames)
                                fps = gr.Number(12, label="Frames per second", precision=0, minimum=1, maximum=60)
                            with gr.Row():
                                zoom = gr.Number(1.05, label="Zoom per frame", minimum=0.5, maximum=2.0)
                                rotate = gr.Number(0.0, label="Degrees per frame", minimum=-45, maximum=45)
                            with gr.Row():
                                zoom_btn = gr.Button("Make zoom", variant="primary", elem_id="zoom")
                                zoom_stop = gr.Button("Stop", variant="stop", elem_id="zoom-stop")
                            frame = gr.Image(label="Latest frame", type="filepath", elem_id="frame")
                            video = gr.Video(label="Zoom", format="mp4", elem_id="video")

            controls = [image, model, preset, layer_box, octaves, steps, step_size, seed, classes, tv]
            engine = [keep_colors, seamless, grad_blur, grad_norm, l2_pull]  # after the older inputs: API order kept
            dream_event = dream_btn.click(
                self.run_dream,
                [*controls, guide, *engine, mask, mask_layers, mask_strength, gallery_state],
                [result, status, download, gallery, gallery_state],
                preprocess=False,
                concurrency_limit=self.options.concurrency,
                concurrency_id=DEVICE_QUEUE,
                show_progress_on=[status],
                api_name="dream",
            )
            zoom_event = zoom_btn.click(
                self.run_zoom,
                [*controls, frames, fps, zoom, rotate, *engine],
                [frame, status, video],
                preprocess=False,
                concurrency_limit=self.options.concurrency,
                concurrency_id=DEVICE_QUEUE,
                show_progress_on=[status],
                api_name="zoom",
            )
            for button in (stop_btn, zoom_stop):
                button.click(
                    self.stop, None, status, queue=False, cancels=[dream_event, zoom_event], api_visibility="private"
                )
            # .input, not .change: a model set by "load settings" keeps the layers loaded with it
            model.input(self.model_changed, model, [layer_box, mask_layers, status], api_visibility="private")
            load_file.upload(
                self.load_settings,
                load_file,
                [*controls[1:], *engine, mask_layers, mask_strength, status],
                preprocess=False,
                api_visibility="private",
            )
            gallery.select(_selected, None, selected_state, api_visibility="private")
            use_btn.click(self.use_as_input, [gallery_state, selected_state], image, api_visibility="private")
            app.unload(self.closed)
        return app

    def _delete_cache(self) -> tuple[int, int]:
        keep = max(int(self.options.keep), 1)
        return max(min(keep // 4, 600), 1), keep


def _number(value: Any, name: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise ConfigError(f"{name} must be a number, got {value!r}")
    return float(value)


def _whole(value: Any, name: str) -> int:
    number = _number(value, name)
    if not number.is_integer() or number < 1:
        raise ConfigError(f"{name} must be a whole number, at least 1; got {value!r}")
    return int(number)


def _selected(evt: gr.SelectData) -> int:
    return int(evt.index) if isinstance(evt.index, int) else 0


def _class_names() -> list[str]:
    from inceptionism.imagenet import categories

    return list(categories())


__all__ = ["DEVICE_QUEUE", "Studio", "StudioOptions", "layer_choices", "model_choices"]
