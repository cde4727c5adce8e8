"""Speed and memory figures for inceptionism. Plain script: prints figures, asserts nothing.

    python benchmarks/bench.py                 # everything (about 10 minutes on 2 cores)
    python benchmarks/bench.py --only peak w0  # parts: peak, w0, w1, w2 (and dream8k, only when asked)
    python benchmarks/bench.py --compile       # also time torch.compile on W0 (slow first compile)
    python benchmarks/bench.py --device cuda   # on a GPU: CUDA-event timers, W1 at 4K, GPU peak memory

peak  fp32 and bf16 matmul GFLOP/s (4096², best of 5): the machine's measured ceiling.
W0    the seed's work: inception_v3 to Mixed_6c, loss on Mixed_6a + Mixed_6c, a 225×375 image, one ascent step
      (forward + input gradient). A naive eager loop (written here) against our engine in fp32 and bf16; the
      engine's fast graph with autograd's gradient instead of its own program (models/cpu/) shows that.
      GFLOP/s from torch's flop counter; "useful" counts only the network's own work (forward to the deepest
      layer and the input gradient, on the plain graph), so neither a loop that does more work than needed nor
      a rewrite that multiplies some zeros (the stem's sub-pixel kernel) looks faster. The engine's
      rows keep freed memory for reuse while they run, as every Dreamer.run does (models/cpu/allocator.py).
W1    the default model and settings on a ~1 MP photo: whole run, wall time, peak RSS; fp32 vs bf16 PSNR.
W2    seconds per step per megapixel at 1, 4, 16, 33 MP (one full-size step, auto tiles) and peak RSS; 33 MP is
      the 8K frame (7680×4320). Each size runs in its own process so peak RSS is its own.
dream8k  a whole default dream on an 8K photo (the astronaut example, enlarged): wall time and the process's
      peak RSS, everything a user's run holds (the image, octaves, tiles). Opt-in: 2–3 minutes here.
Random-init weights are used where the cost is all that matters (W0); W1/W2 use the packaged default weights.
"""

from __future__ import annotations

import argparse
import atexit
import json
import os
import platform
import resource
import shutil
import subprocess
import sys
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np
import torch
from torch.utils.flop_counter import FlopCounterMode, conv_flop_count, register_flop_formula

warnings.filterwarnings("ignore", category=UserWarning)
OUT = Path(__file__).parent / "out"


def bench_device() -> torch.device:
    """The device under test: ``--device`` (passed to child processes through the environment)."""
    return torch.device(os.environ.get("INCEPTIONISM_BENCH_DEVICE", "cpu"))


def median_time(fn, reps: int = 7, warmup: int = 2) -> float:
    """Median seconds per call; on CUDA measured with CUDA events around each call."""
    cuda = bench_device().type == "cuda"
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(reps):
        if cuda:
            start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            torch.cuda.synchronize()
            start.record()
            fn()
            end.record()
            torch.cuda.synchronize()
            times.append(start.elapsed_time(end) / 1000)
        else:
            t = time.perf_counter()
            fn()
            times.append(time.perf_counter() - t)
    return sorted(times)[len(times) // 2]


@register_flop_formula(torch.ops.mkldnn._convolution_pointwise)
def _fused_conv_flops(x_shape, w_shape, *args, out_shape=None, **kwargs) -> int:
    """oneDNN's fused convolution (the engine's CPU forward, models/cpu/conv.py) counts as the convolution."""
    return conv_flop_count(x_shape, w_shape, out_shape, transposed=False)


@register_flop_formula(torch.ops.mkldnn._convolution_transpose_pointwise)
def _transposed_conv_flops(x_shape, w_shape, *args, out_shape=None, **kwargs) -> int:
    """oneDNN's transposed convolution (the engine's CPU input gradient) counts as one."""
    return conv_flop_count(x_shape, w_shape, out_shape, transposed=True)


def flops_of(fn) -> float:
    with FlopCounterMode(display=False) as fc:
        fn()
    return float(fc.get_total_flops())


def peak_rss_mb() -> float:
    """Peak resident memory of this process in MB; on CUDA, the peak GPU memory allocated."""
    if bench_device().type == "cuda":
        return torch.cuda.max_memory_allocated() / 2**20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def matmul_peak(dtype: torch.dtype, n: int = 4096) -> float:
    a, b = (torch.randn(n, n, dtype=dtype, device=bench_device()) for _ in range(2))
    best = min(median_time(lambda: a @ b, reps=1, warmup=1 if i == 0 else 0) for i in range(5))
    return 2 * n**3 / best / 1e9


def part_peak() -> dict[str, float]:
    fp32, bf16 = matmul_peak(torch.float32), matmul_peak(torch.bfloat16)
    print(f"peak  matmul 4096²: fp32 {fp32:.0f} GFLOP/s, bf16 {bf16:.0f} GFLOP/s")
    return {"fp32": fp32, "bf16": bf16}


def _inception_with_random_weights():
    import torchvision

    from inceptionism.models import get_model_spec, load_model
    from inceptionism.models.weights import hub_cache_path

    torch.manual_seed(0)
    net = torchvision.models.inception_v3(weights=None, aux_logits=True, init_weights=False).eval()
    home = tempfile.mkdtemp()
    atexit.register(shutil.rmtree, home, ignore_errors=True)  # 100 MB of weights: not left behind in /tmp
    os.environ["TORCH_HOME"] = home
    path = hub_cache_path(get_model_spec("inception_v3").weights.filename)
    path.parent.mkdir(parents=True)
    torch.save(net.state_dict(), path)
    return net.to(bench_device()), load_model("inception_v3", device=bench_device())


def part_w0(peak: dict[str, float], compile_too: bool) -> None:
    from inceptionism.config import DreamConfig
    from inceptionism.engine import Dreamer, build_objective

    net, model = _inception_with_random_weights()
    image = torch.rand(1, 3, 225, 375, device=bench_device())
    acts: dict[str, torch.Tensor] = {}
    net.Mixed_6a.register_forward_hook(lambda m, i, o: acts.__setitem__("mixed3", o))
    net.Mixed_6c.register_forward_hook(lambda m, i, o: acts.__setitem__("mixed5", o))

    def naive() -> None:  # what a first PyTorch port of the seed does: whole net, weights with grads, hooks
        x = image.clone().requires_grad_(True)
        net(x * 2 - 1)
        (acts["mixed3"].mean() + acts["mixed5"].mean()).backward()
        g = x.grad
        assert g is not None
        _ = image + 0.01 * g / g.std()
        net.zero_grad(set_to_none=True)

    rows = [("naive eager loop", naive)]

    def engine(precision: str, fast: bool, backprop: bool = True):
        cfg = DreamConfig(
            model="inception_v3", layers=("mixed3", "mixed5"), loss="mean", grad_norm="std", jitter=0,
            tile_size=512, precision=precision,
        ).validate()  # fmt: skip
        d = Dreamer(model, build_objective(cfg, model), cfg, bench_device())
        if not fast:
            d.extractor = model.extractor(d.objective.layers, fast=False)
        elif not backprop:  # the same fast graph, its gradient by autograd
            d.extractor = d.extractor.with_autograd()
        g = torch.Generator().manual_seed(0)
        return lambda: d.step(image, g, 512)

    rows += [
        ("engine fp32, plain graph", engine("fp32", fast=False)),
        ("engine fp32, autograd", engine("fp32", fast=True, backprop=False)),
        ("engine fp32", engine("fp32", fast=True)),
        ("engine bf16", engine("bf16", fast=True)),
    ]
    if compile_too:
        rows.append(("engine fp32 + torch.compile", _compiled(engine("fp32", fast=True))))
    useful = flops_of(rows[1][1])  # the network's own work, on the plain graph: rewrites' extra zeros do not count
    print(f"W0    inception_v3 → Mixed_6c, 225×375, one step; useful work {useful / 1e9:.2f} GFLOP")
    print(
        f"      {'variant':<28} {'s/step':>8} {'GFLOP':>7} {'GFLOP/s':>8} {'useful':>7} "
        f"{'% fp32 peak':>11} {'speed-up':>8}"
    )

    # Variants are timed in turns, five rounds, and each keeps its best round's median: one slow moment of
    # this shared machine then cannot favour one variant over another. The fp32 matmul peak is measured again in
    # each round and keeps its best too, so the % of peak compares the same moments of the machine.
    def timed(name: str, fn) -> float:
        from inceptionism.models.cpu import reuse_freed_memory

        ours = name.startswith("engine") and bench_device().type == "cpu"
        with reuse_freed_memory(ours):  # the engine's steps run under its allocator policy, as in Dreamer.run
            return median_time(fn, reps=5, warmup=1)

    rounds = {name: [timed(name, fn)] for name, fn in rows}
    for _ in range(4):
        peak["fp32"] = max(peak["fp32"], matmul_peak(torch.float32))
        for name, fn in rows:
            rounds[name].append(timed(name, fn))
    times = {name: min(r) for name, r in rounds.items()}
    peak["fp32"] = max(peak["fp32"], matmul_peak(torch.float32))
    print(f"      fp32 matmul peak, best across the rounds: {peak['fp32']:.0f} GFLOP/s")
    base = times[rows[0][0]]
    for name, fn in rows:
        own = flops_of(fn)
        s = times[name]
        gfs = own / s / 1e9
        print(
            f"      {name:<28} {s:8.4f} {own / 1e9:7.2f} {gfs:8.0f} {useful / s / 1e9:7.0f} "
            f"{100 * useful / s / 1e9 / peak['fp32']:10.1f}% {base / s:7.2f}×"
        )
    # The machine's phases move fp32 and bf16 apart (a slow phase slows the longer fp32 step more): the ratio of
    # the two bests can flatter or wrong either. Each round times the two back to back; their ratio per round is
    # the fairer figure.
    paired = sorted(f / b for f, b in zip(rounds["engine fp32"], rounds["engine bf16"], strict=True))
    print(
        f"      bf16 speed-up over fp32: {times['engine fp32'] / times['engine bf16']:.2f}× (bests), "
        f"per round {', '.join(f'{r:.2f}' for r in paired)}× (median {paired[len(paired) // 2]:.2f}×)"
    )
    # Fairest under the phases: single steps alternating fp32 and bf16, so both see the same moments.
    fp32, bf16 = dict(rows)["engine fp32"], dict(rows)["engine bf16"]
    pairs = alternating_ratios(fp32, bf16, PAIRS)
    print(f"      bf16 speed-up, {PAIRS} alternating fp32/bf16 steps: median ratio {pairs[len(pairs) // 2]:.2f}×")


PAIRS = 60


def alternating_ratios(first, second, pairs: int) -> list[float]:
    """Sorted ratios time(first) / time(second) of ``pairs`` back-to-back single calls (the engine's memory
    policy on CPUs, as in Dreamer.run)."""
    from inceptionism.models.cpu import reuse_freed_memory

    ratios = []
    with reuse_freed_memory(bench_device().type == "cpu"):
        for _ in range(pairs):
            a = median_time(first, reps=1, warmup=0)
            ratios.append(a / median_time(second, reps=1, warmup=0))
    return sorted(ratios)


def _compiled(step):
    fn = torch.compile(step)
    t = time.perf_counter()
    fn()
    print(f"      (torch.compile: first call {time.perf_counter() - t:.0f} s)")
    return fn


def w1_size() -> tuple[int, int]:
    """W1's photo size: ~1 MP on the CPU, 4K (3840×2160) on a GPU."""
    return (3840, 2160) if bench_device().type == "cuda" else (1224, 816)


def example_photo(name: str, size: tuple[int, int]) -> np.ndarray:
    """A photo from ``examples/``, RGB, resized to ``size = (w, h)``."""
    from PIL import Image

    examples = Path(__file__).resolve().parent.parent / "examples"
    with Image.open(examples / name) as im:
        return np.asarray(im.convert("RGB").resize(size, Image.LANCZOS))


def w1_photo() -> np.ndarray:
    return example_photo("coffee.jpg", w1_size())


def child_w1(precision: str) -> None:
    import inceptionism

    image = w1_photo()
    t = time.perf_counter()
    out = inceptionism.dream(image, precision=precision, device=str(bench_device()))
    wall = time.perf_counter() - t
    OUT.mkdir(exist_ok=True)
    out.save(OUT / f"w1-{precision}.png")
    print(json.dumps({"wall": wall, "rss": peak_rss_mb()}))


def child_w2(megapixels: float, steps: int) -> None:
    from inceptionism.config import DreamConfig
    from inceptionism.engine import Dreamer, build_objective
    from inceptionism.models import load_model
    from inceptionism.models.cpu import reuse_freed_memory

    h = round((megapixels * 1e6 * 9 / 16) ** 0.5)
    w = round(h * 16 / 9)
    if megapixels >= 33:
        h, w = 4320, 7680
    image = torch.rand(1, 3, h, w, device=bench_device())
    cfg = DreamConfig().validate()
    model = load_model(cfg.model)
    d = Dreamer(model, build_objective(cfg, model), cfg, bench_device())
    plan = d.plan(h, w)
    tile = plan.tile_size(h, w)
    g = torch.Generator().manual_seed(0)
    with reuse_freed_memory(bench_device().type == "cpu"):  # as Dreamer.run does
        d.step(image, g, tile, batch=plan.batch)  # warm-up
        s = median_time(lambda: d.step(image, g, tile, batch=plan.batch), reps=steps, warmup=0)
    print(json.dumps({"h": h, "w": w, "tile": tile, "s_per_step": s, "rss": peak_rss_mb()}))


def child_dream8k() -> None:
    import inceptionism

    image = example_photo("astronaut.jpg", (7680, 4320))
    octaves: list[int] = []
    t = time.perf_counter()
    out = inceptionism.dream(image, device=str(bench_device()), callback=lambda p: octaves.append(p.octaves))
    wall = time.perf_counter() - t
    OUT.mkdir(exist_ok=True)
    out.save(OUT / "dream-8k.jpg", quality=92)
    print(json.dumps({"wall": wall, "rss": peak_rss_mb(), "octaves": octaves[-1], "steps": len(octaves)}))


def run_child(*args: str) -> dict[str, float]:
    r = subprocess.run([sys.executable, __file__, "--child", *args], capture_output=True, text=True, check=True)
    return json.loads(r.stdout.strip().splitlines()[-1])


def part_w1() -> None:
    from PIL import Image

    fp32 = run_child("w1", "fp32")
    bf16 = run_child("w1", "bf16")
    a = np.asarray(Image.open(OUT / "w1-fp32.png"), dtype=np.float64)
    b = np.asarray(Image.open(OUT / "w1-bf16.png"), dtype=np.float64)
    psnr = 10 * np.log10(255**2 / np.mean((a - b) ** 2))
    w, h = w1_size()
    print(f"W1    default model and settings, {w}×{h} photo ({w * h / 1e6:.1f} MP), whole run")
    print(f"      fp32: {fp32['wall']:.1f} s, peak memory {fp32['rss']:.0f} MB")
    print(f"      bf16: {bf16['wall']:.1f} s, peak memory {bf16['rss']:.0f} MB; PSNR bf16 vs fp32 {psnr:.1f} dB")
    print(f"      pictures: {OUT / 'w1-fp32.png'}, {OUT / 'w1-bf16.png'}")


def part_w2(sizes: list[float]) -> None:
    print("W2    default model, one full-size step (auto tiles), random image")
    print(f"      {'size':>11} {'MP':>6} {'tile':>5} {'s/step':>8} {'s/step/MP':>10} {'peak RSS MB':>12}")
    per_mp = []
    for mp in sizes:
        r = run_child("w2", str(mp), "1" if mp > 8 else "3")
        pix = r["h"] * r["w"] / 1e6
        per_mp.append(r["s_per_step"] / pix)
        print(
            f"      {r['w']:>5}×{r['h']:<5} {pix:6.1f} {r['tile']:5d} {r['s_per_step']:8.2f} "
            f"{per_mp[-1]:10.3f} {r['rss']:12.0f}"
        )
    spread = (max(per_mp) - min(per_mp)) / (sum(per_mp) / len(per_mp)) / 2
    print(f"      time per megapixel: ±{100 * spread:.0f}% around the mean across sizes")


def part_dream8k() -> None:
    r = run_child("dream8k")
    size = f"{int(r['octaves'])} octaves, {int(r['steps'])} steps"
    print(f"8K    a whole default dream, 7680×4320 ({size}), from a photo")
    print(f"      {r['wall']:.0f} s, peak RSS of the process {r['rss']:.0f} MB; picture: {OUT / 'dream-8k.jpg'}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parts = ["peak", "w0", "w1", "w2", "dream8k"]
    parser.add_argument("--only", nargs="+", choices=parts, default=parts[:4], help="dream8k: opt-in, 2-3 min")
    parser.add_argument("--compile", action="store_true", help="also time torch.compile on W0")
    parser.add_argument("--sizes", nargs="+", type=float, default=[1, 4, 16, 33], help="W2 sizes in MP")
    parser.add_argument("--device", default="cpu", help="cpu or cuda[:N]")
    parser.add_argument("--child", nargs="+", help=argparse.SUPPRESS)
    args = parser.parse_args()
    os.environ["INCEPTIONISM_BENCH_DEVICE"] = args.device
    if args.child:
        kind, *rest = args.child
        if kind == "dream8k":
            child_dream8k()
        else:
            child_w1(*rest) if kind == "w1" else child_w2(float(rest[0]), int(rest[1]))
        return
    cpu = platform.processor() or platform.machine()
    print(f"machine: {os.cpu_count()} CPUs ({cpu}), torch {torch.__version__}, {torch.get_num_threads()} threads")
    if bench_device().type == "cuda":
        print(f"device: {torch.cuda.get_device_name(bench_device())} (timings from CUDA events)")
    peak = part_peak() if "peak" in args.only or "w0" in args.only else {}
    if "w0" in args.only:
        part_w0(peak, args.compile)
    if "w1" in args.only:
        part_w1()
    if "w2" in args.only:
        part_w2(args.sizes)
    if "dream8k" in args.only:
        part_dream8k()


if __name__ == "__main__":
    main()
