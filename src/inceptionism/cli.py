"""The command line: a thin layer over :class:`DreamConfig` and the API.

``inceptionism dream IN -o OUT``, ``inceptionism layers [MODEL]``, ``inceptionism models``. Settings resolve in
this order: defaults ← ``--preset`` ← ``--settings FILE`` ← options given on the command line. Every error a user
can cause is one line on stderr and a non-zero exit; Ctrl-C stops cleanly and writes nothing.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any, NoReturn

from inceptionism import __version__
from inceptionism.config import PRECISIONS, ConfigWarning, DreamConfig, render_steps
from inceptionism.errors import ConfigError, InceptionismError
from inceptionism.objectives import LOSSES
from inceptionism.parametrize import PARAMS
from inceptionism.transforms import GRAD_NORMS

EXIT_ERROR = 1
EXIT_USAGE = 2
EXIT_INTERRUPTED = 130


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        self.exit(EXIT_USAGE, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def _positive_float(text: str) -> float:
    try:
        return float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None


def _octaves(text: str) -> int | None:
    if text == "auto":
        return None
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number or auto, got {text!r}") from None


def add_dream_options(p: argparse.ArgumentParser) -> None:
    """The dream's settings (every option but the input, the output and the dream command's own), shared by the
    commands that dream: dream, zoom, video. Parsers using them need ``argument_default=argparse.SUPPRESS``."""
    dc = DreamConfig()
    p.add_argument(
        "--preset",
        metavar="NAME|FILE",
        help="start from a recipe: a built-in name (`inceptionism presets` lists them) or your own .toml file",
    )
    p.add_argument("--settings", metavar="FILE", help="start from the settings in a JSON file or a PNG we wrote")
    p.add_argument("--model", help=f"network, see `inceptionism models` [{dc.model}]")
    p.add_argument("--weights", metavar="FILE", help="weights file (.pth/.pt/.safetensors; .h5 for inception_v3)")
    p.add_argument(
        "--layers",
        nargs="+",
        metavar="LAYER",
        help="layers to amplify: NAME, or channels NAME[7,31], NAME[0:8], NAME[top4] (the input's strongest 4); "
        "each with :WEIGHT or not, space- or comma-separated [the model's default]",
    )
    p.add_argument("--loss", choices=LOSSES, help=f"mean of activations (the seed) or of squares (classic) [{dc.loss}]")
    p.add_argument(
        "--class",
        dest="classes",
        action="append",
        metavar="CLASS",
        help="raise an ImageNet class's logit, by name or index (goldfish, 1); repeatable [none]",
    )
    p.add_argument("--guide", metavar="IMAGE", help="dream toward what the network sees in IMAGE, on the layers [none]")
    p.add_argument(
        "--tv", type=_positive_float, metavar="W", help=f"weight of total variation: smooths the dream [{dc.tv:g}]"
    )
    p.add_argument(
        "--objective",
        metavar="EXPR",
        help="the whole objective as an expression, e.g. '0.5 * l2(block12[7,31]) + cls(goldfish) + 0.1 * tv()'; "
        "instead of --layers, --loss, --class and --tv",
    )
    p.add_argument(
        "--l2-pull",
        type=_positive_float,
        metavar="W",
        help=f"pull back toward the input: 1 light, 10 strong, 100 all but holds it [{dc.l2_pull:g}]",
    )
    p.add_argument(
        "--mask",
        metavar="IMAGE",
        help="grayscale image: white dreams fully, grey less, black not at all (resized to the input) [none]",
    )
    p.add_argument(
        "--mask-layers",
        nargs="+",
        metavar="LAYER",
        help="with --mask: layers (as --layers) dreamt where the mask is white; the objective elsewhere [none]",
    )
    p.add_argument(
        "--mask-strength", type=_positive_float, metavar="F", help=f"multiplies the mask, 0 to 1 [{dc.mask_strength:g}]"
    )
    p.add_argument(
        "--keep-colors", action="store_true", help="dream the brightness only: keep the input's colours exactly"
    )
    p.add_argument(
        "--seamless", action="store_true", help="a tileable dream: left edge continues the right, top the bottom"
    )
    p.add_argument(
        "--grad-blur",
        type=_positive_float,
        metavar="SIGMA",
        help=f"blur each gradient by SIGMA pixels: broader, smoother strokes [{dc.grad_blur:g}]",
    )
    p.add_argument(
        "--noise",
        metavar="WxH",
        help="start from seeded noise of this size instead of an input (feature visualisation); give no INPUT",
    )
    p.add_argument(
        "--param",
        choices=PARAMS,
        help=f"with --noise: pixel runs the octave engine, fft lucid's Fourier render (forms, not static) [{dc.param}]",
    )
    p.add_argument("--octaves", type=_octaves, help="number of scales, or auto: down to ~150 px [auto]")
    p.add_argument("--octave-scale", type=_positive_float, help=f"size ratio between octaves [{dc.octave_scale}]")
    p.add_argument("--min-size", type=int, help=f"smallest octave's short side in pixels [{dc.min_size}]")
    p.add_argument("--steps", type=int, help=f"gradient steps per octave [{dc.steps}]")
    p.add_argument("--step-size", type=_positive_float, help=f"step in [0, 1] pixel units [{dc.step_size}]")
    p.add_argument("--grad-norm", choices=GRAD_NORMS, help=f"gradient normalisation [{dc.grad_norm}]")
    p.add_argument("--jitter", type=int, help=f"random roll each step, in pixels [{dc.jitter}]")
    p.add_argument("--seed", type=int, help=f"random seed; same seed and settings, same picture [{dc.seed}]")
    p.add_argument("--tile-size", type=int, help="tile side in pixels [chosen from free memory]")
    p.add_argument("--tile-overlap", type=int, help=f"overlap between tiles in pixels [{dc.tile_overlap}]")
    p.add_argument(
        "--max-memory",
        metavar="SIZE",
        help="cap on what a dream adds: image buffers, weights, tiles; e.g. 2GB [half of what is free]",
    )
    p.add_argument("--device", help="auto, cpu, cuda, cuda:N or mps [auto]")
    p.add_argument("--precision", choices=PRECISIONS, help=f"numeric precision; auto picks per device [{dc.precision}]")
    p.add_argument("--compile", action="store_true", help="torch.compile the network (GPUs; slow to start)")
    p.add_argument("--max-pixels", type=int, help=f"refuse larger inputs (decompression bombs) [{dc.max_pixels}]")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bar")


def add_cluster_option(p: argparse.ArgumentParser, what: str) -> None:
    """``--cluster ADDRESS``: run the job on a Ray cluster (the ``[cluster]`` extra, imported only then)."""
    p.add_argument(
        "--cluster",
        metavar="ADDRESS",
        help=f"dream {what} on a Ray cluster: local[:N] starts N workers here [one per core] (local:NxT: T threads "
        "each), auto joins the one in RAY_ADDRESS, ray://HOST:PORT a remote one [none: this process]",
    )


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="inceptionism",
        description="DeepDream for photographers, artists and researchers. Runs offline on CPU or GPU.",
        epilog="Examples:\n  inceptionism dream examples/chelsea.jpg -o dream.png\n"
        "  inceptionism layers efficientnet-lite0\n  inceptionism models",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"inceptionism {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)

    d = sub.add_parser(
        "dream",
        help="dream on an image",
        description="Dream on INPUT and write the result. Options left out come from --settings, --preset or the "
        "defaults (shown in brackets).",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
        argument_default=argparse.SUPPRESS,
    )
    dc = DreamConfig()
    d.add_argument(
        "input",
        nargs="*",
        help="image file (PNG, JPEG, WebP, TIFF, …); or a folder, a glob ('shots/*.jpg') or several files: a batch; "
        "none with --noise",
    )
    d.add_argument(
        "-o",
        "--output",
        help="output file; .png or .jpg/.jpeg (also .webp, .tif) [INPUT-dream.png]; for a batch, a folder (outputs "
        "already there are skipped, so a rerun continues)",
    )
    add_dream_options(d)
    d.add_argument("--settings-out", metavar="FILE", help="also write the run's settings to this JSON file")
    d.add_argument("--overwrite", action="store_true", help="allow the output to replace the input file")
    add_cluster_option(d, "a batch's images")
    d.set_defaults(func=cmd_dream)

    layers = sub.add_parser("layers", help="list a model's layers with channels and stride")
    layers.add_argument("model", nargs="?", default=dc.model, help=f"model name [{dc.model}]")
    layers.add_argument("--weights", metavar="FILE", help="weights file (else the model's default source)")
    layers.add_argument("--all", action="store_true", help="also list every dotted module path")
    layers.set_defaults(func=cmd_layers)

    models = sub.add_parser("models", help="list models and whether their weights are here offline")
    models.set_defaults(func=cmd_models)

    presets = sub.add_parser("presets", help="list the built-in presets (recipes for --preset)")
    presets.set_defaults(func=cmd_presets)

    _add_atlas_parser(sub, dc.model)
    _add_zoom_parser(sub)
    _add_video_parser(sub)
    _add_serve_parser(sub)
    return parser


def _add_atlas_parser(sub: Any, default_model: str) -> None:
    from inceptionism.atlas import ATLAS_CHANNELS, ATLAS_SIZE, ATLAS_STEPS
    from inceptionism.parametrize import PARAMS

    a = sub.add_parser(
        "atlas",
        help="render one small visualisation from noise per channel of a layer, in a labelled grid",
        description="Render each channel of LAYER from noise and lay them out in a grid; each label is the layer "
        "syntax that selects that channel, e.g. --layers 'block12[7]'.",
        epilog="Example: inceptionism atlas block12 -o atlas.png --channels 0:64",
    )
    a.add_argument("model", nargs="?", default=default_model, help=f"model name [{default_model}]")
    a.add_argument("layer", help="layer name, see `inceptionism layers MODEL`")
    a.add_argument("-o", "--output", required=True, help="output image (.png, .jpg, .webp, .tif)")
    a.add_argument(
        "--channels",
        metavar="A:B",
        help=f"channels A to B-1 (end-exclusive), A: or :B or one number [the first {ATLAS_CHANNELS}]",
    )
    a.add_argument("--size", type=int, default=ATLAS_SIZE, help=f"tile side in pixels [{ATLAS_SIZE}]")
    a.add_argument("--steps", type=int, default=ATLAS_STEPS, help=f"ascent steps per tile [{ATLAS_STEPS}]")
    a.add_argument(
        "--param", choices=PARAMS, default="fft", help="fft: recognisable forms; pixel: high-frequency static [fft]"
    )
    a.add_argument("--seed", type=int, default=0, help="random seed; same seed and settings, same atlas [0]")
    a.add_argument("--weights", metavar="FILE", help="weights file (else the model's default source)")
    a.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:N or mps [auto]")
    a.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    a.set_defaults(func=cmd_atlas)


_CONFIG_KEYS = {f.replace("-", "_") for f in DreamConfig.__dataclass_fields__}


def config_from_args(args: argparse.Namespace) -> DreamConfig:
    """defaults ← --preset ← --settings ← explicit options."""
    from inceptionism.io import read_settings
    from inceptionism.presets import preset
    from inceptionism.recipes import apply_overrides

    given = vars(args)
    cfg = preset(given["preset"]) if "preset" in given else DreamConfig()
    if "settings" in given:
        data = read_settings(given["settings"])
        cfg = DreamConfig.from_dict({**cfg.to_dict(), **data})
    overrides: dict[str, Any] = {k: v for k, v in given.items() if k in _CONFIG_KEYS}
    for key in ("layers", "classes"):
        if key in overrides:
            overrides[key] = tuple(overrides[key])
    return render_steps(apply_overrides(cfg, overrides), "steps" in overrides).validate()


def default_output(input_path: Path) -> Path:
    return Path.cwd() / f"{input_path.stem}-dream.png"


def cmd_dream(args: argparse.Namespace) -> int:
    from inceptionism.api import dream
    from inceptionism.io import check_output_path, check_writable, save_image, write_json
    from inceptionism.progress import ProgressBar
    from inceptionism.sequences.batch import is_batch

    cfg = config_from_args(args)
    inputs = getattr(args, "input", [])
    if not inputs:
        return _dream_noise(args, cfg)
    if cfg.noise is not None:
        raise ConfigError("--noise starts from noise instead of an input image: give one or the other")
    if is_batch(args.input):
        return _dream_batch(args, cfg)
    if "cluster" in vars(args):
        raise ConfigError("--cluster is for a batch (a folder, a glob or several inputs), a video or a zoom sweep")
    src = Path(args.input[0])
    out = Path(getattr(args, "output", None) or default_output(src))
    overwrite = getattr(args, "overwrite", False)
    check_output_path(src, out, overwrite)
    _check_outputs_spare_inputs(out, cfg)
    settings_out = getattr(args, "settings_out", None)
    if settings_out is not None:
        check_writable(Path(settings_out), src)
    with ProgressBar(enabled=not getattr(args, "quiet", False)) as bar:
        result = dream(src, cfg, callback=bar)
    record = json.loads(result.info["inceptionism"])
    save_image(result, out, record, overwrite_input=None if overwrite else src)
    if settings_out is not None:
        write_json(Path(settings_out), record)
    print(out)
    return 0


def _check_outputs_spare_inputs(out: Path, cfg: DreamConfig) -> None:
    """The output must not be the mask or the guide image (they are inputs: never overwritten, even with
    --overwrite)."""
    from inceptionism.io import check_writable

    for other in (cfg.mask, cfg.guide):
        if other is not None:
            check_writable(out, Path(other))


def _dream_noise(args: argparse.Namespace, cfg: DreamConfig) -> int:
    """``dream --noise WxH -o OUT``: a dream from seeded noise, no input."""
    from inceptionism.api import dream
    from inceptionism.io import check_output_path, check_writable, save_image, write_json
    from inceptionism.progress import ProgressBar

    if cfg.noise is None:
        raise ConfigError("give an INPUT image, or --noise WxH to start from noise")
    if getattr(args, "output", None) is None:
        raise ConfigError("a dream from --noise has no input to name it after: give the output file with -o FILE")
    if "cluster" in vars(args):
        raise ConfigError("--cluster is for a batch (a folder, a glob or several inputs), a video or a zoom sweep")
    out = Path(args.output)
    check_output_path(None, out, overwrite=False)
    _check_outputs_spare_inputs(out, cfg)
    settings_out = getattr(args, "settings_out", None)
    if settings_out is not None:
        check_writable(Path(settings_out), None)
    with ProgressBar(enabled=not getattr(args, "quiet", False)) as bar:
        result = dream(None, cfg, callback=bar)
    record = json.loads(result.info["inceptionism"])
    save_image(result, out, record, overwrite_input=None)
    if settings_out is not None:
        write_json(Path(settings_out), record)
    print(out)
    return 0


def _dream_batch(args: argparse.Namespace, cfg: DreamConfig) -> int:
    from inceptionism.sequences.batch import expand_inputs, run_batch

    if getattr(args, "output", None) is None:
        raise ConfigError("a folder, glob or several inputs make a batch: give the output folder with -o FOLDER")
    if getattr(args, "settings_out", None) is not None:
        raise ConfigError("--settings-out is for one input; in a batch every output carries its settings")
    sources = expand_inputs(args.input)
    if "cluster" in vars(args):
        return _dream_batch_on_cluster(args, cfg, sources)
    try:
        result = run_batch(
            sources,
            Path(args.output),
            cfg,
            quiet=getattr(args, "quiet", False),
            overwrite=getattr(args, "overwrite", False),
            on_written=lambda path: print(path, flush=True),
        )
    except KeyboardInterrupt:
        print("\ninceptionism: interrupted; finished outputs are kept and the same command continues", file=sys.stderr)
        return EXIT_INTERRUPTED
    print(f"inceptionism: {result.summary()}", file=sys.stderr)
    return EXIT_ERROR if result.failed else 0


def _dream_batch_on_cluster(args: argparse.Namespace, cfg: DreamConfig, sources: list[Path]) -> int:
    from inceptionism.cluster import parse_address
    from inceptionism.cluster.batch import run_cluster_batch

    address = parse_address(args.cluster)
    try:
        result = run_cluster_batch(
            sources,
            Path(args.output),
            cfg,
            address,
            quiet=getattr(args, "quiet", False),
            overwrite=getattr(args, "overwrite", False),
            on_written=lambda path: print(path, flush=True),
        )
    except KeyboardInterrupt:
        print("\ninceptionism: interrupted; finished outputs are kept and the same command continues", file=sys.stderr)
        return EXIT_INTERRUPTED
    for line in [result.summary(), *result.workers]:
        print(f"inceptionism: {line}", file=sys.stderr)
    return EXIT_ERROR if result.failed else 0


def cmd_layers(args: argparse.Namespace) -> int:
    from inceptionism.errors import WeightsError
    from inceptionism.models import DreamModel, get_model_spec, load_model

    try:
        model = load_model(args.model, args.weights)
    except WeightsError as e:
        if args.weights is not None:
            raise
        # Layer names, channels and strides do not depend on the weights: show the structure anyway.
        spec = get_model_spec(args.model)
        model = DreamModel(spec, spec.builder(), spec.weights, "none found (structure only)")
        print(f"inceptionism: note: {e}", file=sys.stderr)
    infos = model.layer_info()
    aliases: dict[str, list[str]] = {}
    for alias, target in model.spec.aliases.items():
        aliases.setdefault(target, []).append(alias)
    print(f"{model.name} — weights: {model.source}; default layers: {', '.join(model.spec.default_layers)}")
    print(f"{'layer':<16} {'channels':>8} {'stride':>6}  module{'  (aliases)' if aliases else ''}")
    for info in infos:
        stride = "-" if info.stride is None else f"{info.stride:g}"
        also = aliases.get(info.name) or aliases.get(info.path) or []
        extra = f"  ({', '.join(also)})" if also else ""
        print(f"{info.name:<16} {info.channels:>8} {stride:>6}  {info.path}{extra}")
    if args.all:
        print("\nall module paths (usable as layer names):")
        for name, _ in model.module.named_modules():
            if name:
                print(f"  {name}")
    return 0


def cmd_models(args: argparse.Namespace) -> int:
    from inceptionism.models import get_model_spec, list_models, weights_available

    print(f"{'model':<20} {'offline':<8} look / weights")
    for name in list_models():
        spec = get_model_spec(name)
        where = weights_available(spec)
        status = "yes" if where else "no"
        print(f"{name:<20} {status:<8} {spec.look}")
        print(f"{'':<29} {where or spec.weights.url or 'no source: pass --weights FILE'}")
    print("\nAny torchvision classification model: tv:<name> (e.g. tv:convnext_tiny); layers by dotted path.")
    return 0


def cmd_presets(args: argparse.Namespace) -> int:
    from inceptionism.presets import list_presets

    for p in list_presets():
        print(f"{p.name:<10} {p.description}")
        changed = ", ".join(f"{k}={_setting_text(v)}" for k, v in p.settings.items())
        print(f"{'':<10} {changed or '(the defaults)'}")
    print("\nYour own: a TOML file of the same settings, e.g. `--preset my-look.toml` (flags still override it).")
    return 0


def _setting_text(value: Any) -> str:
    if isinstance(value, list):
        return ",".join(str(v) for v in value)
    return str(value)


def cmd_atlas(args: argparse.Namespace) -> int:
    from inceptionism.atlas import AtlasBar, atlas, atlas_settings, channel_count, parse_channels
    from inceptionism.devices import pick_device
    from inceptionism.io import check_output_path, save_image
    from inceptionism.models import load_model

    out = Path(args.output)
    check_output_path(None, out, overwrite=True)
    model = load_model(args.model, args.weights, device=pick_device(args.device))
    channels = parse_channels(args.channels, channel_count(model, args.layer), args.layer)
    settings = {"size": args.size, "steps": args.steps, "param": args.param, "seed": args.seed}
    with AtlasBar(enabled=not args.quiet) as bar:
        image = atlas(model, args.layer, channels, callback=bar, **settings)
    save_image(image, out, atlas_settings(model, args.layer, channels, **settings))
    print(out)
    return 0


def _show_warning(message: Warning | str, category: type[Warning], *args: Any, **kwargs: Any) -> None:
    """Warnings a user's settings cause are one line, like errors; others keep Python's format."""
    if issubclass(category, ConfigWarning):
        print(f"inceptionism: warning: {message}", file=sys.stderr)
    else:
        _python_showwarning(message, category, *args, **kwargs)


_python_showwarning = warnings.showwarning


def _add_zoom_parser(sub: Any) -> None:
    z = sub.add_parser(
        "zoom",
        help="zoom animation: each frame dreamed, zoomed and fed back",
        description="Dream on IMAGE, zoom/rotate/pan the dream a little, dream again, and so on: an animation "
        "(Google's feedback loop). Finished frames are cached beside the output: after Ctrl-C or a crash the same "
        "command continues. Options left out come from --settings, --preset or the defaults (in brackets).",
        epilog="Example:\n  inceptionism zoom examples/chelsea.jpg -o zoom.mp4 --frames 60 --zoom 1.04 --rotate 0.5 "
        "--frame-steps 4",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        argument_default=argparse.SUPPRESS,
    )
    z.add_argument("input", help="image file (PNG, JPEG, WebP, TIFF, …)")
    z.add_argument(
        "-o",
        "--output",
        required=True,
        help="out.mp4 (also .mov, .mkv; H.264), out.gif, or a folder of PNG frames (a name without extension)",
    )
    z.add_argument("--frames", type=int, default=120, help="number of frames [120]")
    z.add_argument("--zoom", type=_positive_float, default=1.05, help="scale per frame; > 1 zooms in [1.05]")
    z.add_argument(
        "--rotate", type=_positive_float, default=0.0, metavar="DEG", help="degrees per frame, counter-clockwise [0]"
    )
    z.add_argument("--pan", default="0,0", metavar="DX,DY", help="pixels per frame the view moves right, down [0,0]")
    z.add_argument("--fps", default="30", help="frames per second, e.g. 30, 24 or 30000/1001 [30]")
    z.add_argument(
        "--schedule",
        metavar="FILE",
        action="append",
        help="keyframed settings (TOML or JSON): e.g. [zoom] 0 = 1.02, 60 = 1.08; any numeric setting, "
        "layer.NAME weights; linear or smooth; with --cluster, repeat it for a sweep: one animation per file, "
        "OUT-<file name> [none]",
    )
    add_cluster_option(z, "a sweep of animations, one per --schedule file,")
    z.add_argument("--frame-steps", type=int, metavar="N", help="steps per octave after the first frame [--steps]")
    add_dream_options(z)
    z.set_defaults(func=cmd_zoom)


def cmd_zoom(args: argparse.Namespace) -> int:
    from inceptionism.sequences.cache import cache_folder
    from inceptionism.sequences.schedule import Schedule
    from inceptionism.sequences.zoom import Motion, ZoomSettings, parse_fps, parse_pan, run_zoom

    cfg = config_from_args(args)
    pan_x, pan_y = parse_pan(args.pan)
    schedules = getattr(args, "schedule", None) or []
    if "cluster" in vars(args):
        return _zoom_sweep(args, cfg, schedules)
    if len(schedules) > 1:
        raise ConfigError("several --schedule files make a sweep: run it with --cluster (local:1 runs it here)")
    settings = ZoomSettings(
        frames=args.frames,
        fps=parse_fps(args.fps),
        motion=Motion(zoom=args.zoom, rotate=args.rotate, pan_x=pan_x, pan_y=pan_y),
        frame_steps=getattr(args, "frame_steps", None),
        schedule=Schedule.load(schedules[0]) if schedules else None,
    )
    try:
        out = run_zoom(args.input, args.output, cfg, settings, quiet=getattr(args, "quiet", False))
    except KeyboardInterrupt:
        kept = f"finished frames are kept in {cache_folder(args.output)}"
        print(f"\ninceptionism: interrupted; {kept}; the same command continues", file=sys.stderr)
        return EXIT_INTERRUPTED
    print(out)
    return 0


def _zoom_sweep(args: argparse.Namespace, cfg: DreamConfig, schedules: list[str]) -> int:
    from inceptionism.cluster import parse_address
    from inceptionism.cluster.zoom import run_zoom_sweep
    from inceptionism.sequences.zoom import Motion, ZoomSettings, parse_fps, parse_pan

    address = parse_address(args.cluster)
    if not schedules:
        raise ConfigError(
            "one zoom animation cannot be split between workers: with --cluster, give several "
            "--schedule files (a sweep, one animation each)"
        )
    pan_x, pan_y = parse_pan(args.pan)
    settings = ZoomSettings(
        frames=args.frames,
        fps=parse_fps(args.fps),
        motion=Motion(zoom=args.zoom, rotate=args.rotate, pan_x=pan_x, pan_y=pan_y),
        frame_steps=getattr(args, "frame_steps", None),
    )
    try:
        result = run_zoom_sweep(
            args.input, args.output, cfg, settings, schedules, address, quiet=getattr(args, "quiet", False)
        )
    except KeyboardInterrupt:
        print(
            "\ninceptionism: interrupted; finished animations and frames are kept; the same command continues",
            file=sys.stderr,
        )
        return EXIT_INTERRUPTED
    for path in result.done:
        print(path)
    for line in [result.summary(), *result.workers]:
        print(f"inceptionism: {line}", file=sys.stderr)
    return EXIT_ERROR if result.failed else 0


def _add_video_parser(sub: Any) -> None:
    from inceptionism.cluster.video import SEGMENT_FRAMES, WARMUP_FRAMES
    from inceptionism.sequences.video import VIDEO_DEFAULTS, VideoSettings

    vs = VideoSettings()
    v = sub.add_parser(
        "video",
        help="dream a video (or a folder of frames), frame by frame, coherent along the optical flow",
        description="Dream each frame of INPUT, carrying the previous dream along the optical flow so the detail "
        "holds still on the scene instead of flickering. The output keeps the input's frame rate, size, pixel "
        "format and sound. Finished frames are cached beside the output: after Ctrl-C or a crash the same command "
        "continues. Dream options left out come from --settings, --preset or the video defaults (octaves "
        f"{VIDEO_DEFAULTS['octaves']}, steps {VIDEO_DEFAULTS['steps']}, step size {VIDEO_DEFAULTS['step_size']}).",
        argument_default=argparse.SUPPRESS,
    )
    v.add_argument("input", help="video file (MP4, MOV, MKV, WebM, …) or a folder of frames (natural order)")
    v.add_argument(
        "-o",
        "--output",
        required=True,
        help="out.mp4 (also .mov, .mkv; H.264, sound copied), out.gif, or a folder of PNG frames (no extension)",
    )
    v.add_argument("--start", type=_positive_float, metavar="S", help="first second of INPUT to dream [0]")
    v.add_argument("--end", type=_positive_float, metavar="S", help="second of INPUT to stop at [its end]")
    v.add_argument(
        "--coherence",
        type=_positive_float,
        metavar="F",
        help=f"0 to 1: how much of the previous dream is carried into each frame; 0 dreams frames alone "
        f"[{vs.coherence:g}]",
    )
    v.add_argument(
        "--frame-steps",
        type=int,
        metavar="N",
        help=f"steps per octave after the first frame, when --coherence > 0 [{vs.frame_steps}]",
    )
    v.add_argument(
        "--dream-scale",
        type=_positive_float,
        metavar="F",
        help=f"dream at this fraction of the frame size; the detail is scaled up onto the full frame "
        f"[{vs.dream_scale:g}]",
    )
    v.add_argument("--fps", metavar="RATE", help="frame rate of a folder INPUT, e.g. 24 or 30000/1001 [30]")
    add_cluster_option(v, "the video's segments")
    v.add_argument(
        "--segment",
        type=int,
        metavar="N",
        help=f"with --cluster: frames per segment, one task each [{SEGMENT_FRAMES}]",
    )
    v.add_argument(
        "--warmup",
        type=int,
        metavar="K",
        help=f"with --cluster: frames dreamed before each segment and not kept, so its seam does not flicker "
        f"[{WARMUP_FRAMES}]",
    )
    add_dream_options(v)
    v.set_defaults(func=cmd_video)


def cmd_video(args: argparse.Namespace) -> int:
    from inceptionism.sequences.cache import cache_folder
    from inceptionism.sequences.video import VideoSettings, dream_video, with_video_defaults
    from inceptionism.sequences.zoom import parse_fps

    given = vars(args)
    cfg = config_from_args(args)
    if "preset" not in given and "settings" not in given:
        cfg = with_video_defaults(cfg, given)
    defaults = VideoSettings()
    settings = VideoSettings(
        coherence=given.get("coherence", defaults.coherence),
        frame_steps=given.get("frame_steps", defaults.frame_steps),
        dream_scale=given.get("dream_scale", defaults.dream_scale),
        start=given.get("start"),
        end=given.get("end"),
        folder_fps=parse_fps(args.fps) if "fps" in given else None,
    )
    if "cluster" in given:
        return _video_on_cluster(args, cfg, settings)
    if "segment" in given or "warmup" in given:
        raise ConfigError("--segment and --warmup split a video between workers: use them with --cluster")
    try:
        report = dream_video(args.input, args.output, cfg, settings, quiet=given.get("quiet", False))
    except KeyboardInterrupt:
        kept = f"finished frames are kept in {cache_folder(args.output)}"
        print(f"\ninceptionism: interrupted; {kept}; the same command continues", file=sys.stderr)
        return EXIT_INTERRUPTED
    print(report.path)
    return 0


def _add_serve_parser(sub: Any) -> None:
    from inceptionism.web.limits import MB, Limits

    lim = Limits()
    s = sub.add_parser(
        "serve",
        help="start the web studio (needs the web extra)",
        description="Start the web studio and print its URL. It listens on 127.0.0.1 only unless --host says "
        "otherwise; jobs wait in one queue per device.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    s.add_argument("--host", default="127.0.0.1", help="address to listen on (0.0.0.0: every network)")
    s.add_argument("--port", type=int, default=7860, help="port to listen on")
    s.add_argument("--share", action="store_true", help="also make a public Gradio share link (off unless asked)")
    s.add_argument("--concurrency", type=int, default=1, help="jobs computing at once (one per device)")
    s.add_argument("--device", default="auto", help="device the jobs run on: auto, cpu, cuda, cuda:1, mps")
    s.add_argument("--keep", type=_positive_float, default=3600.0, help="seconds uploads and results are kept")
    s.add_argument("--max-upload-mb", type=_positive_float, default=lim.max_upload_bytes / MB, help="upload size")
    s.add_argument("--max-pixels", type=int, default=lim.max_pixels, help="an image's width × height")
    s.add_argument(
        "--max-work", type=int, default=lim.max_work, help="a job's pixel-steps (steps × pixels over its octaves)"
    )
    s.add_argument("--max-frames", type=int, default=lim.max_frames, help="a zoom animation's frames")
    s.set_defaults(func=cmd_serve)


def cmd_serve(args: argparse.Namespace) -> int:
    import importlib.util

    from inceptionism.web.limits import MB, Limits

    if importlib.util.find_spec("gradio") is None:
        raise InceptionismError("the studio needs Gradio: pip install 'inceptionism[web]'")
    from inceptionism.web.server import serve

    limits = Limits(round(args.max_upload_mb * MB), args.max_pixels, args.max_work, args.max_frames)
    try:
        serve(
            args.host,
            args.port,
            share=args.share,
            concurrency=args.concurrency,
            limits=limits,
            keep=args.keep,
            device=args.device,
        )
    except KeyboardInterrupt:
        print("\ninceptionism: studio stopped", file=sys.stderr)
    return 0


def _video_on_cluster(args: argparse.Namespace, cfg: DreamConfig, settings: Any) -> int:
    from inceptionism.cluster import parse_address
    from inceptionism.cluster.video import SEGMENT_FRAMES, WARMUP_FRAMES, run_cluster_video
    from inceptionism.sequences.cache import cache_folder

    given = vars(args)
    address = parse_address(args.cluster)
    try:
        report = run_cluster_video(
            args.input,
            args.output,
            cfg,
            settings,
            address,
            segment=given.get("segment", SEGMENT_FRAMES),
            warmup=given.get("warmup", WARMUP_FRAMES),
            quiet=given.get("quiet", False),
        )
    except KeyboardInterrupt:
        kept = f"finished frames are kept in {cache_folder(args.output)}"
        print(f"\ninceptionism: interrupted; {kept}; the same command continues", file=sys.stderr)
        return EXIT_INTERRUPTED
    for line in [report.summary(), *report.workers]:
        print(f"inceptionism: {line}", file=sys.stderr)
    print(report.path)
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "command", None):
        parser.print_help()
        return EXIT_USAGE
    try:
        with warnings.catch_warnings():
            warnings.showwarning = _show_warning
            result: int = args.func(args)
        return result
    except ConfigError as e:
        print(f"inceptionism: error: {e}", file=sys.stderr)
        return EXIT_USAGE
    except InceptionismError as e:
        print(f"inceptionism: error: {e}", file=sys.stderr)
        return EXIT_ERROR
    except KeyboardInterrupt:
        print("\ninceptionism: interrupted; nothing was written", file=sys.stderr)
        return EXIT_INTERRUPTED
    except MemoryError:
        print("inceptionism: error: out of memory; try --max-memory or a smaller --tile-size", file=sys.stderr)
        return EXIT_ERROR
    except Exception as e:  # a bug, not a user error: say so in one line unless debugging
        if os.environ.get("INCEPTIONISM_DEBUG"):
            raise
        print(
            f"inceptionism: internal error: {type(e).__name__}: {e} (set INCEPTIONISM_DEBUG=1 for the traceback)",
            file=sys.stderr,
        )
        return EXIT_ERROR


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
