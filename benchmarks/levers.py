"""Does every speed lever still pay? Each one switched off in-process, timed against the code as it stands.

    python benchmarks/levers.py                          # every lever, both precisions (an hour or more)
    python benchmarks/levers.py --levers flipped native  # some levers
    python benchmarks/levers.py --precisions bf16 --pairs 12
    python benchmarks/levers.py --w1                     # the memory levers on whole W1 runs (own processes)

A lever is switched off by patching the function or flag that implements it (or its environment switch:
INCEPTIONISM_FAST_CPU=0, INCEPTIONISM_NATIVE=0) while its "off" extractor is built and while its steps run;
the "on" side is the code as it stands. Each workload's steps then ALTERNATE on and off, one step each (the
order flips every pair), so both see the same moments of a shared machine; the speed-up printed is the median
of the per-pair ratios t(off) / t(on), with the lowest and highest ratio, by wall time and by the process's CPU
time (which other jobs on the same cores move less).

Workloads (random-init weights but for the default network, whose weights are packaged):
- ``default``: the default network and settings, one steady step on a 1224×816 image (W1's photo size, its
  largest octave; auto tiles) — it stands in for W1, a whole run of 72 such steps at six octave sizes.
- ``default-new``: the same, each step at a shape never seen before (816 rows, 1224 − 8k columns): what each of
  W1's octaves pays once to set up its convolutions.
- ``googlenet``, ``resnet50``, ``vgg16``, ``inception_v3``: one 512² step at the model's default layers.
- ``tv:mobilenet_v2``: one 512² step, only for the lever that concerns torchvision's units.
``--w1`` runs whole default dreams (W1, bf16 and fp32) in fresh processes, alternating on and off, for the
levers about memory: wall time and peak RSS.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import resource
import statistics
import subprocess
import sys
import time
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import torch

warnings.filterwarnings("ignore", category=UserWarning)

Patch = tuple[Any, str, Any]  # (object, attribute, value while the lever is off)


@dataclass
class Lever:
    """A lever: what switches it off, and the workloads where it does anything."""

    name: str
    what: str
    patches: Callable[[], list[Patch]] = list
    env: dict[str, str] = field(default_factory=dict)
    workloads: tuple[str, ...] = ()
    precisions: tuple[str, ...] = ("fp32", "bf16")


@contextlib.contextmanager
def switched_off(lever: Lever) -> Iterator[None]:
    """Within: the lever is off (its patches applied, its environment set); restored after."""
    patches = lever.patches()
    saved = [(obj, attr, getattr(obj, attr)) for obj, attr, _ in patches]
    env = {k: os.environ.get(k) for k in lever.env}
    try:
        for obj, attr, value in patches:
            setattr(obj, attr, value)
        os.environ.update(lever.env)
        yield
    finally:
        for obj, attr, value in saved:
            setattr(obj, attr, value)
        for k, v in env.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


# -- the levers' "off" --------------------------------------------------------------------------------------------


def _identity(graph: Any, *args: Any) -> Any:
    return graph


def _no_flipped() -> list[Patch]:
    from inceptionism.models.cpu import conv

    original = conv.Conv.__init__  # called while the lever is on: the real one

    def init(self: Any, module: Any, act: Any) -> None:
        original(self, module, act)
        self.flipped_padding = None

    return [(conv.Conv, "__init__", init)]


def _unfused_ascend() -> list[Patch]:
    from inceptionism import engine
    from inceptionism.transforms import gradient_scale, laplacian_normalize

    def ascend(image: Any, g: Any, step_size: float, method: str, in_place: bool = False, wrap: bool = False,
               mask: Any = None) -> Any:  # fmt: skip
        if method == "laplacian":
            g = laplacian_normalize(g, wrap=wrap)
        g = g * (step_size * gradient_scale(g, method))
        if mask is not None:
            g = g * mask
        return (image + g).clamp(0.0, 1.0)

    return [(engine, "ascend", ascend)]


class _AutogradMean:
    """The reduction as autograd's mean over dims (its gradient written out in NCHW)."""

    @staticmethod
    def apply(x: torch.Tensor) -> torch.Tensor:
        return x.mean(dim=tuple(range(1, x.dim())), dtype=torch.float32)


class _FlattenMean:
    """The reduction over a flattened activation (a channels_last one is copied first)."""

    @staticmethod
    def apply(x: torch.Tensor) -> torch.Tensor:
        return x.flatten(1).mean(1, dtype=torch.float32)


def _module(name: str) -> Any:
    import importlib

    return importlib.import_module(name)


OPT = "inceptionism.models.optimize"
ALL = ("default", "default-new", "googlenet", "resnet50", "vgg16", "inception_v3")
POOLED = ("googlenet", "resnet50", "vgg16", "inception_v3")  # networks with max pools
INCEPTIONS = ("googlenet", "inception_v3")  # branch heads (GoogLeNet's pool branches are max pools)

LEVERS = [
    Lever("control", "nothing switched off: both sides run the same code; its spread is the noise floor",
          workloads=(*ALL, "tv:mobilenet_v2")),
    Lever("program", "CPU gradient program instead of autograd (INCEPTIONISM_FAST_CPU=0)",
          env={"INCEPTIONISM_FAST_CPU": "0"}, workloads=ALL),
    Lever("transposed", "input gradients of strided/grouped convolutions as packed oneDNN transposed "
          "convolutions (off: convolution_backward)",
          lambda: [(_module("inceptionism.models.cpu.ops"), "TRANSPOSED_CONV", None)], workloads=ALL),
    Lever("flipped", "dense stride-1 input gradients as forward convolutions of the flipped kernel "
          "(off: packed transposed convolutions)", _no_flipped, workloads=ALL),
    Lever("native", "native max pools (INCEPTIONISM_NATIVE=0)", env={"INCEPTIONISM_NATIVE": "0"}, workloads=POOLED),
    Lever("mask-in-place", "activation masks written into the gradient",
          lambda: [(_module("inceptionism.models.cpu.rules"), "MASKS_IN_PLACE",
                    _module("inceptionism.models.cpu.masks").MASKS)], workloads=ALL),
    Lever("fold-bn", "BatchNorm folded into convolutions (off: the program declines, autograd runs)",
          lambda: [(_module(OPT), "fold_batchnorm", _identity)],
          workloads=("default", "googlenet", "resnet50", "inception_v3")),
    Lever("channels-last", "weights in channels_last", lambda: [(_module(OPT), "to_channels_last", _identity)],
          workloads=ALL),
    Lever("tv-inline", "torchvision's units inlined in the fast graph",
          lambda: [(_module("inceptionism.models.features"), "inline_modules", _identity)],
          workloads=("tv:mobilenet_v2",)),
    Lever("mean-view", "objective reduction's gradient as a broadcast view (_Mean; off: autograd's mean)",
          lambda: [(_module("inceptionism.objectives"), "_Mean", _AutogradMean)], workloads=ALL),
    Lever("reduce-dims", "objectives reduce over dims (off: flatten, then mean)",
          lambda: [(_module("inceptionism.objectives"), "_Mean", _FlattenMean)], workloads=ALL),
    Lever("pool-first", "max pool before the ReLU it follows", lambda: [(_module(OPT), "pool_before_activation",
          _identity)], workloads=POOLED),
    Lever("fold-preprocessing", "input normalisation folded into an unpadded stem",
          lambda: [(_module("inceptionism.models.features"), "fold_preprocessing", lambda *a: False)],
          workloads=("inception_v3",)),
    Lever("stem", "strided stem's image gradient as one sub-pixel convolution",
          lambda: [(_module(OPT), "guard_strided_stem", _identity)],
          workloads=("default", "googlenet", "resnet50", "inception_v3")),
    Lever("fused-ascend", "the ascent step as one fused multiply-add and an in-place clamp", _unfused_ascend,
          workloads=("default", "googlenet")),
    Lever("siblings", "sibling 1×1 convolutions merged", lambda: [(_module(OPT), "merge_sibling_convs", _identity)],
          workloads=(*INCEPTIONS, "resnet50")),
    Lever("conv-before-pool", "a pool branch's 1×1 convolution in front of its average pool",
          lambda: [(_module(OPT), "conv_before_box_filter", _identity)], workloads=("inception_v3",)),
    Lever("box-filter", "stride-1 average pools as depthwise convolutions (off: the program declines)",
          lambda: [(_module(OPT), "avg_pool_as_conv", _identity)], workloads=("inception_v3",)),
    Lever("bf16-weights", "bf16 weights held in bf16 (off: fp32 weights under autocast)",
          lambda: [(_module("inceptionism.engine"), "compute_dtype", lambda precision: None)],
          workloads=ALL, precisions=("bf16",)),
    Lever("depthwise-fp32", "bf16 strided depthwise input gradients in fp32 or phases (off: oneDNN's bf16)",
          lambda: [(_module("inceptionism.models.cpu.depthwise"), "LOW_PRECISION", ())],
          workloads=("default", "default-new"), precisions=("bf16",)),
    Lever("depthwise-phases", "large bf16 strided depthwise input gradients in stride² phases (off: fp32 road)",
          lambda: [(_module("inceptionism.models.cpu.depthwise"), "PHASES_FROM", 2**62)],
          workloads=("default", "default-new"), precisions=("bf16",)),
]  # fmt: skip

# Levers about memory, judged on whole W1 runs in their own processes (--w1).
W1_LEVERS = {
    "reuse-memory": "a run keeps freed memory for reuse (off: glibc's defaults)",
    "packed-cap": "reordered weights kept for at most the planned number of shapes (off: every shape kept)",
}


# -- workloads ----------------------------------------------------------------------------------------------------

SIZES = {"default": (816, 1224), "default-new": (816, 1224)}


def load(name: str) -> Any:
    """The model, random-init unless it is the default network (whose weights are packaged)."""
    from inceptionism.models import DreamModel, get_model_spec, load_model

    if name in ("default", "default-new"):
        return load_model()
    torch.manual_seed(0)
    spec = get_model_spec(name)
    module = spec.builder()
    if spec.after_load is not None:
        spec.after_load(module)
    return DreamModel(spec, module, spec.weights, "random init")


def fresh(model: Any) -> Any:
    """The same network with no extractors cached (an "off" variant builds its own)."""
    from inceptionism.models import DreamModel

    return DreamModel(model.spec, model.module, model.weights, model.source, model.missing_keys)


class Workload:
    """One step of one network at one precision, callable; ``new_shapes``: each call at a shape never seen."""

    def __init__(self, name: str, model: Any, precision: str) -> None:
        from inceptionism.config import DreamConfig
        from inceptionism.engine import Dreamer, build_objective

        model_name = "efficientnet-lite0" if name.startswith("default") else name
        cfg = DreamConfig(model=model_name, precision=precision).validate()
        self.dreamer = Dreamer(model, build_objective(cfg, model), cfg, torch.device("cpu"))
        self.h, self.w = SIZES.get(name, (512, 512))
        self.new_shapes = name == "default-new"
        self.calls = 0
        self.g = torch.Generator().manual_seed(0)
        self.image = torch.rand(1, 3, self.h, self.w, generator=torch.Generator().manual_seed(1))

    def __call__(self, shift: int) -> None:
        """One step; ``shift`` tells apart the shapes of the two variants' new-shape steps."""
        image = self.image
        if self.new_shapes:
            self.calls += 1
            image = image[..., : self.w - 8 * (2 * self.calls + shift)]
        h, w = image.shape[-2:]
        tile = self.dreamer.plan(h, w).tile_size(h, w)
        self.dreamer.step(image, self.g, tile)


def timed(fn: Callable[[], None]) -> tuple[float, float]:
    """(wall, CPU) seconds of one call. The process's CPU time moves less than wall time when other jobs share
    the cores (they take turns, not work), though they still share caches and memory bandwidth."""
    t, c = time.perf_counter(), time.process_time()
    fn()
    return time.perf_counter() - t, time.process_time() - c


def compare(
    lever: Lever, workload: str, model: Any, on: Workload, precision: str, pairs: int
) -> tuple[list[float], list[float]]:
    """Sorted ratios t(off) / t(on) of ``pairs`` alternating single steps, by wall and by CPU time."""
    from inceptionism.models.cpu import reuse_freed_memory

    with switched_off(lever):
        off = Workload(workload, fresh(model), precision)
    ratios, cpu_ratios = [], []
    with reuse_freed_memory(True):  # as Dreamer.run does
        for _ in range(2):
            on(0)
            with switched_off(lever):
                off(1)
        for i in range(pairs):
            t_on = t_off = (0.0, 0.0)
            for side in (0, 1) if i % 2 == 0 else (1, 0):
                if side == 0:
                    t_on = timed(lambda: on(0))
                else:
                    with switched_off(lever):
                        t_off = timed(lambda: off(1))
            ratios.append(t_off[0] / t_on[0])
            cpu_ratios.append(t_off[1] / t_on[1])
    return sorted(ratios), sorted(cpu_ratios)


def step_table(levers: list[Lever], precisions: list[str], pairs: int, only: list[str] | None) -> None:
    workloads = [w for w in (*ALL, "tv:mobilenet_v2") if any(w in lv.workloads for lv in levers)]
    workloads = [w for w in workloads if only is None or w in only]
    print(f"{'lever':<19} {'workload':<15} {'prec':<5} {'speed-up':>8}  (min–max of {pairs} alternating pairs)"
          "   by CPU time (min–max)")  # fmt: skip
    for workload in workloads:
        model = load(workload)
        for precision in precisions:
            on = Workload(workload, model, precision)
            for lever in levers:
                if workload not in lever.workloads or precision not in lever.precisions:
                    continue
                try:
                    r, c = compare(lever, workload, model, on, precision, pairs)
                except Exception as e:  # a lever whose "off" cannot run: say so and go on
                    print(f"{lever.name:<19} {workload:<15} {precision:<5} failed: {type(e).__name__}: {e}")
                    continue
                print(f"{lever.name:<19} {workload:<15} {precision:<5} {statistics.median(r):7.3f}×  "
                      f"({r[0]:.3f}–{r[-1]:.3f})   {statistics.median(c):7.3f}×  ({c[0]:.3f}–{c[-1]:.3f})",
                      flush=True)  # fmt: skip
            del on


# -- whole W1 runs for the memory levers ---------------------------------------------------------------------------


def child_w1(precision: str, lever: str) -> None:
    """One whole default run on W1's photo with ``lever`` off (or none: "-"); prints wall time and peak RSS."""
    import contextlib as cl

    import numpy as np
    from PIL import Image

    import inceptionism
    from inceptionism import engine
    from inceptionism.models.cpu import conv

    if lever == "reuse-memory":
        engine.reuse_freed_memory = lambda enabled=True: cl.nullcontext()  # type: ignore[assignment]
    elif lever == "packed-cap":
        engine.packed_shapes = lambda limit: conv.packed_shapes(1_000_000)  # type: ignore[assignment]
    examples = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "examples", "coffee.jpg")
    with Image.open(examples) as im:
        image = np.asarray(im.convert("RGB").resize((1224, 816), Image.Resampling.LANCZOS))
    t = time.perf_counter()
    inceptionism.dream(image, precision=precision, device="cpu")
    wall = time.perf_counter() - t
    print(json.dumps({"wall": wall, "rss": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))


def w1_table(precisions: list[str], pairs: int) -> None:
    print(f"{'lever':<19} {'prec':<5} {'W1 speed-up':>11}  {'peak RSS on / off (MB, medians)':>32}")
    for precision in precisions:
        for lever in W1_LEVERS:
            ratios, rss_on, rss_off = [], [], []
            for i in range(pairs):
                runs = {}
                for side in ("-", lever) if i % 2 == 0 else (lever, "-"):
                    cmd = [sys.executable, __file__, "--child-w1", precision, side]
                    out = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout
                    runs[side] = json.loads(out.strip().splitlines()[-1])
                ratios.append(runs[lever]["wall"] / runs["-"]["wall"])
                rss_on.append(runs["-"]["rss"])
                rss_off.append(runs[lever]["rss"])
            ratios.sort()
            print(f"{lever:<19} {precision:<5} {statistics.median(ratios):10.3f}×  "
                  f"({ratios[0]:.3f}–{ratios[-1]:.3f})  {statistics.median(rss_on):6.0f} / "
                  f"{statistics.median(rss_off):6.0f}", flush=True)  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--levers", nargs="*", help="names (default: all): " + " ".join(lv.name for lv in LEVERS))
    parser.add_argument("--workloads", nargs="*", help="only these workloads")
    parser.add_argument("--precisions", nargs="*", default=["fp32", "bf16"])
    parser.add_argument("--pairs", type=int, default=8)
    parser.add_argument("--w1", action="store_true", help="the memory levers on whole W1 runs instead")
    parser.add_argument("--child-w1", nargs=2, metavar=("PRECISION", "LEVER"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    torch.set_num_threads(2)
    if args.child_w1:
        child_w1(*args.child_w1)
        return
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, {time.strftime('%Y-%m-%d %H:%M')}")
    if args.w1:
        w1_table(args.precisions, max(1, args.pairs // 2))
        return
    unknown = set(args.levers or ()) - {lv.name for lv in LEVERS}
    if unknown:
        parser.error(f"unknown levers: {', '.join(sorted(unknown))}")
    levers = [lv for lv in LEVERS if not args.levers or lv.name in args.levers]
    step_table(levers, args.precisions, args.pairs, args.workloads)


if __name__ == "__main__":
    main()
