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
from collections.abc import Sequence
from pathlib import Path
from typing import Any, NoReturn

from inceptionism import __version__
from inceptionism.config import PRECISIONS, PRESETS, DreamConfig, preset
from inceptionism.errors import ConfigError, InceptionismError
from inceptionism.objectives import LOSSES
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
    d.add_argument("input", help="image file (PNG, JPEG, WebP, TIFF, …)")
    d.add_argument("-o", "--output", help="output file; .png or .jpg/.jpeg (also .webp, .tif) [INPUT-dream.png]")
    d.add_argument("--preset", choices=list(PRESETS), help="start from a named recipe: " + ", ".join(PRESETS))
    d.add_argument("--settings", metavar="FILE", help="start from the settings in a JSON file or a PNG we wrote")
    d.add_argument("--settings-out", metavar="FILE", help="also write the run's settings to this JSON file")
    d.add_argument("--model", help=f"network, see `inceptionism models` [{dc.model}]")
    d.add_argument("--weights", metavar="FILE", help="weights file (.pth/.pt/.safetensors; .h5 for inception_v3)")
    d.add_argument(
        "--layers",
        nargs="+",
        metavar="LAYER",
        help="layers to amplify: NAME or NAME:WEIGHT, space- or comma-separated [the model's default]",
    )
    d.add_argument("--loss", choices=LOSSES, help=f"mean of activations (the seed) or of squares (classic) [{dc.loss}]")
    d.add_argument("--octaves", type=_octaves, help="number of scales, or auto: down to ~150 px [auto]")
    d.add_argument("--octave-scale", type=_positive_float, help=f"size ratio between octaves [{dc.octave_scale}]")
    d.add_argument("--min-size", type=int, help=f"smallest octave's short side in pixels [{dc.min_size}]")
    d.add_argument("--steps", type=int, help=f"gradient steps per octave [{dc.steps}]")
    d.add_argument("--step-size", type=_positive_float, help=f"step in [0, 1] pixel units [{dc.step_size}]")
    d.add_argument("--grad-norm", choices=GRAD_NORMS, help=f"gradient normalisation [{dc.grad_norm}]")
    d.add_argument("--jitter", type=int, help=f"random roll each step, in pixels [{dc.jitter}]")
    d.add_argument("--seed", type=int, help=f"random seed; same seed and settings, same picture [{dc.seed}]")
    d.add_argument("--tile-size", type=int, help="tile side in pixels [chosen from free memory]")
    d.add_argument("--tile-overlap", type=int, help=f"overlap between tiles in pixels [{dc.tile_overlap}]")
    d.add_argument(
        "--max-memory",
        metavar="SIZE",
        help="cap on what a dream adds: image buffers, weights, tiles; e.g. 2GB [half of what is free]",
    )
    d.add_argument("--device", help="auto, cpu, cuda, cuda:N or mps [auto]")
    d.add_argument("--precision", choices=PRECISIONS, help=f"numeric precision; auto picks per device [{dc.precision}]")
    d.add_argument("--compile", action="store_true", help="torch.compile the network (GPUs; slow to start)")
    d.add_argument("--max-pixels", type=int, help=f"refuse larger inputs (decompression bombs) [{dc.max_pixels}]")
    d.add_argument("--overwrite", action="store_true", help="allow the output to replace the input file")
    d.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    d.set_defaults(func=cmd_dream)

    layers = sub.add_parser("layers", help="list a model's layers with channels and stride")
    layers.add_argument("model", nargs="?", default=dc.model, help=f"model name [{dc.model}]")
    layers.add_argument("--weights", metavar="FILE", help="weights file (else the model's default source)")
    layers.add_argument("--all", action="store_true", help="also list every dotted module path")
    layers.set_defaults(func=cmd_layers)

    models = sub.add_parser("models", help="list models and whether their weights are here offline")
    models.set_defaults(func=cmd_models)
    return parser


_CONFIG_KEYS = {f.replace("-", "_") for f in DreamConfig.__dataclass_fields__}


def config_from_args(args: argparse.Namespace) -> DreamConfig:
    """defaults ← --preset ← --settings ← explicit options."""
    from inceptionism.image_io import read_settings

    given = vars(args)
    cfg = preset(given["preset"]) if "preset" in given else DreamConfig()
    if "settings" in given:
        data = read_settings(given["settings"])
        cfg = DreamConfig.from_dict({**cfg.to_dict(), **data})
    overrides: dict[str, Any] = {k: v for k, v in given.items() if k in _CONFIG_KEYS}
    if "layers" in overrides:
        overrides["layers"] = tuple(overrides["layers"])
    return cfg.replace(**overrides).validate()


def default_output(input_path: Path) -> Path:
    return Path.cwd() / f"{input_path.stem}-dream.png"


def cmd_dream(args: argparse.Namespace) -> int:
    from inceptionism.api import dream
    from inceptionism.image_io import check_output_path, check_writable, save_image
    from inceptionism.progress import ProgressBar

    cfg = config_from_args(args)
    src = Path(args.input)
    out = Path(getattr(args, "output", None) or default_output(src))
    overwrite = getattr(args, "overwrite", False)
    check_output_path(src, out, overwrite)
    settings_out = getattr(args, "settings_out", None)
    if settings_out is not None:
        check_writable(Path(settings_out), src)
    with ProgressBar(enabled=not getattr(args, "quiet", False)) as bar:
        result = dream(src, cfg, callback=bar)
    record = json.loads(result.info["inceptionism"])
    save_image(result, out, record, overwrite_input=None if overwrite else src)
    if settings_out is not None:
        _write_json(Path(settings_out), record)
    print(out)
    return 0


def _write_json(path: Path, data: dict[str, Any]) -> None:
    tmp = path.with_name(f".{path.name}.part")
    try:
        tmp.write_text(json.dumps(data, indent=2, sort_keys=True) + "\n")
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


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


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "command", None):
        parser.print_help()
        return EXIT_USAGE
    try:
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
