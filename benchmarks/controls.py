"""The cost of each creative control, as seconds per ascent step relative to the plain default. Plain script:
prints a table, asserts nothing.

    python benchmarks/controls.py                  # 256 × 256, 5 rounds
    python benchmarks/controls.py --size 512 --rounds 9

One Dreamer per control on the same image (the default model, its default layers, fp32 or what the device picks);
after a warm-up step each, every round runs, for each control in turn, two plain steps then two of the control's,
so a pair runs under the same load on a shared machine, and keeps the faster of each two (the first after a switch
of network program pays for it). A control's figure is the median over the rounds of its time over the plain one.
keep-colors and the mask's final blend act once per run, not per step: timed apart.
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

import torch

from inceptionism.colors import keep_colors
from inceptionism.config import DreamConfig
from inceptionism.engine import Dreamer, build_objective, reads_original
from inceptionism.io import load_image
from inceptionism.mask import blend_final
from inceptionism.models import load_model

EXAMPLE = Path(__file__).resolve().parent.parent / "examples" / "chelsea.jpg"

CONTROLS: dict[str, dict[str, object]] = {
    "plain (default)": {},
    "channels block12[7,31]": {"layers": ("block12[7,31]",)},
    "class goldfish": {"classes": ("goldfish",)},
    "tv 0.1": {"tv": 0.1},
    "l2-pull 5": {"l2_pull": 5.0},
    "grad-norm laplacian": {"grad_norm": "laplacian"},
    "grad-blur 2": {"grad_blur": 2.0},
    "mask (strength)": {"mask": "ramp"},
    "mask-layers block6": {"mask": "ramp", "mask_layers": ("block6",)},
    "seamless": {"seamless": True},
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size", type=int, default=256, help="image side in pixels [256]")
    parser.add_argument("--rounds", type=int, default=5, help="timed pairs per control [5]")
    args = parser.parse_args()
    torch.manual_seed(0)
    model = load_model("efficientnet-lite0")
    image = torch.nn.functional.interpolate(load_image(EXAMPLE).rgb, size=(args.size, args.size), mode="area")
    ramp = torch.linspace(0, 1, args.size).expand(1, 1, args.size, args.size).contiguous()
    device = torch.device("cpu")
    runs = {}
    for name, settings in CONTROLS.items():
        cfg = DreamConfig(**{k: v for k, v in settings.items() if k != "mask"}, steps=1, octaves=1)
        if "mask_layers" in settings:
            cfg = cfg.replace(mask="ramp.png")  # only its presence matters: the mask tensor is passed below
        dreamer = Dreamer(model, build_objective(cfg, model, image), cfg, device)
        tile = dreamer.tile_size(args.size, args.size)
        mask = ramp if "mask" in settings else None
        original = image if reads_original(dreamer.objective) else None
        runs[name] = (dreamer, tile, mask, original)

    def step(name: str) -> float:
        dreamer, tile, mask, original = runs[name]
        start = time.perf_counter()
        dreamer.step(image.clone(), torch.Generator().manual_seed(0), tile, True, 1, original, mask)
        return time.perf_counter() - start

    for name in runs:
        step(name)  # warm-up: first-shape set-up of the CPU program
    controls = [name for name in runs if name != "plain (default)"]
    ratios: dict[str, list[float]] = {name: [] for name in controls}
    plain: list[float] = []
    for _ in range(args.rounds):
        for name in controls:  # two plain steps, then two of the control's; the second of each is timed
            base = min(step("plain (default)"), step("plain (default)"))
            plain.append(base)
            ratios[name].append(min(step(name), step(name)) / base)
    print(f"efficientnet-lite0, {args.size}×{args.size}, {args.rounds} rounds, {torch.get_num_threads()} threads")
    print(f"plain step: median {statistics.median(plain) * 1000:.0f} ms")
    print("| control | step time ÷ plain (median) |\n|---|---|")
    for name, values in ratios.items():
        print(f"| {name} | {statistics.median(values):.2f}× |")
    once = []
    for _ in range(args.rounds + 3):
        start = time.perf_counter()
        blend_final(image, keep_colors(image.flip(-1), image), ramp)
        once.append(time.perf_counter() - start)
    print(f"keep-colors + final mask blend, once per run: median {statistics.median(once[3:]) * 1000:.1f} ms")


if __name__ == "__main__":
    main()
