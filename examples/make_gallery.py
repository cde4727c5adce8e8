"""Regenerate the controls gallery: one picture per control, each made by the exact command listed in GALLERY.

    python examples/make_gallery.py              # every picture, one dream at a time
    python examples/make_gallery.py mask tv      # only these
    python examples/make_gallery.py --table      # the gallery table (Markdown) for the README; nothing is run
    python examples/make_gallery.py --list       # the pictures' names
    python examples/make_gallery.py --readme     # rewrite examples/gallery/README.md (the table) only

Run it from anywhere; paths are taken from the repository root. Each command runs the installed CLI
(``python -m inceptionism``) on the bundled photos, writing to a temporary file; the picture is then re-encoded
as examples/gallery/NAME.jpg (JPEG quality 88, with the dream's settings kept in its comment, so
``inceptionism dream examples/chelsea.jpg --settings examples/gallery/NAME.jpg`` reproduces it) and replaces the
old one atomically. The mask the mask examples use is drawn here too (examples/gallery/mask.png).
"""

from __future__ import annotations

import argparse
import os
import shlex
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from inceptionism.io.metadata import SETTINGS_KEY, wrapped_settings

ROOT = Path(__file__).resolve().parent.parent
GALLERY = Path("examples/gallery")
MASK = GALLERY / "mask.png"
PHOTO = "examples/chelsea.jpg"
JPEG_QUALITY = 88
TILED_LONG_SIDE = 600  # a tiled picture is scaled down to this, to stay a small file


@dataclass(frozen=True)
class Entry:
    """One gallery picture: ``inceptionism ARGS -o examples/gallery/NAME.jpg`` and what it does to the look.

    ``tile`` > 1 shows the result repeated ``tile × tile`` times, scaled down to ``TILED_LONG_SIDE`` (a seamless
    dream: the wrap is visible or not); its settings are the single tile's.
    """

    name: str
    control: str
    args: tuple[str, ...]
    look: str
    tile: int = 1

    @property
    def picture(self) -> Path:
        return GALLERY / f"{self.name}.jpg"

    def argv(self, output: Path | str) -> list[str]:
        """The CLI arguments (after ``inceptionism``) writing to ``output``."""
        return [*self.args, "-o", str(output)]

    def command(self) -> str:
        """The command as a user types it, writing straight to the gallery picture."""
        return "inceptionism " + shlex.join(self.argv(self.picture))


def _dream(*args: str) -> tuple[str, ...]:
    return ("dream", *args)


GALLERY_ENTRIES: tuple[Entry, ...] = (
    Entry(
        "default",
        "the defaults",
        _dream(PHOTO),
        "EfficientNet-Lite0 block10: eyes and dog snouts grow from the fur; the reference for the rows below",
    ),
    Entry(
        "channels",
        "channels",
        _dream(PHOTO, "--layers", "block12[0,8]"),
        "only channels 0 and 8 of block12 (picked in the atlas): etched eyes all over, not the whole layer's mix",
    ),
    Entry(
        "strongest",
        "strongest-k",
        _dream(PHOTO, "--layers", "block10[top4]"),
        "the 4 block10 channels the photo already excites most: the dream grows what the network sees there",
    ),
    Entry(
        "class",
        "class",
        _dream("--noise", "256x256", "--param", "fft", "--steps", "128", "--class", "goldfish"),
        "from noise, raise the 'goldfish' logit: small fish, orange fins and scales scattered through a busy texture",
    ),
    Entry(
        "guide",
        "guide",
        _dream(PHOTO, "--guide", "examples/coffee.jpg"),
        "dream toward what the network sees in coffee.jpg: its rings and cup rims curl round the cat's eyes",
    ),
    Entry(
        "objective",
        "objective expression",
        _dream(PHOTO, "--objective", "0.5 * l2(block6) + l2(block10)"),
        "objectives add up: block6's engraved lines run through the background, block10's creatures on top",
    ),
    Entry(
        "tv",
        "total variation",
        _dream(PHOTO, "--tv", "2000"),
        "penalises pixel-to-pixel change (weights below ~1000 barely show): the fine grain melts away, the "
        "creatures stay, soft and waxy",
    ),
    Entry(
        "laplacian",
        "Laplacian gradient",
        _dream(PHOTO, "--grad-norm", "laplacian"),
        "each scale of the gradient normalised on its own, so coarse forms get as much push as fine detail: "
        "larger, smoother dog faces and bolder colour than the default (mean_abs)",
    ),
    Entry(
        "grad-blur",
        "gradient blur",
        _dream(PHOTO, "--grad-blur", "2"),
        "the gradient blurred by 2 px: soft, airbrushed forms and brighter colour; the fine grain goes",
    ),
    Entry(
        "l2-pull",
        "L2 pull",
        _dream(PHOTO, "--steps", "24", "--l2-pull", "10"),
        "twice the steps, pulled back toward the photo: the cat stays, the creatures are faint ghosts",
    ),
    Entry(
        "mask",
        "mask",
        _dream(PHOTO, "--mask", str(MASK)),
        "mask.png (black centre, white edges): the cat's face comes out exactly as it went in; the dream grows toward "
        "the edges",
    ),
    Entry(
        "mask-layers",
        "mask layers",
        _dream(PHOTO, "--mask", str(MASK), "--mask-layers", "block6"),
        "a different objective per region: block6 swirls where mask.png is white, block10 creatures on the cat",
    ),
    Entry(
        "keep-colors",
        "keep colours",
        _dream(PHOTO, "--keep-colors"),
        "only the brightness is dreamt: the forms are etched in the photo's own colours, no rainbow fringes",
    ),
    Entry(
        "seamless",
        "seamless",
        _dream("examples/coffee.jpg", "--seamless"),
        "a tileable dream, shown tiled 2×2: no seam where the copies meet",
        tile=2,
    ),
    Entry(
        "noise-pixel",
        "noise, pixels",
        _dream("--noise", "320x320", "--param", "pixel", "--layers", "block12[0]"),
        "feature visualisation from noise in pixel space (the octave engine): faint eyes under high-frequency static",
    ),
    Entry(
        "noise-fft",
        "noise, FFT",
        _dream("--noise", "320x320", "--param", "fft", "--steps", "160", "--layers", "block12[0]"),
        "the same channel, lucid's FFT parametrisation with decorrelated colour (160 Adam steps): eyes and "
        "feathered bodies",
    ),
    Entry(
        "atlas",
        "atlas",
        ("atlas", "block12", "--channels", "0:8", "--size", "96", "--steps", "96"),
        "one visualisation per channel, labelled with the --layers syntax that selects it",
    ),
    Entry(
        "preset-subtle",
        "preset subtle",
        _dream(PHOTO, "--preset", "subtle"),
        "",
    ),
    Entry(
        "preset-deep",
        "preset deep",
        _dream(PHOTO, "--preset", "deep"),
        "",
    ),
    Entry(
        "preset-creatures",
        "preset creatures",
        _dream(PHOTO, "--preset", "creatures"),
        "",
    ),
    Entry(
        "preset-texture",
        "preset texture",
        _dream("examples/rocket.jpg", "--preset", "texture"),
        "",
        tile=2,
    ),
)

# Built-in presets without a picture: their models' weights are not offline (the gallery is made offline).
PRESETS_WITHOUT_PICTURE = {"seed": "inception_v3", "classic": "googlenet"}


def entries_named(names: Sequence[str]) -> list[Entry]:
    """The entries called ``names`` (all when empty); an unknown name exits with one line listing the known ones."""
    by_name = {e.name: e for e in GALLERY_ENTRIES}
    unknown = [n for n in names if n not in by_name]
    if unknown:
        sys.exit(f"make_gallery: unknown picture {unknown[0]!r}; choose from {', '.join(by_name)}")
    return [by_name[n] for n in names] if names else list(GALLERY_ENTRIES)


def look(entry: Entry) -> str:
    """The entry's note on the look; a preset's is its own TOML description."""
    if entry.look:
        text = entry.look
    else:
        from inceptionism.presets import load_preset

        text = load_preset(entry.name.removeprefix("preset-")).description
    if entry.tile > 1 and "tiled" not in text:
        text += f"; shown tiled {entry.tile}×{entry.tile}"
    return text


def table(folder: str = "examples/gallery/") -> str:
    """The gallery as a Markdown table: control, command, what it does to the look, and the picture, linked as
    ``folder`` + its file name (the README's links start at the repository root, the gallery's own in its folder)."""
    rows = ["| control | command | the look | picture |", "|---|---|---|---|"]
    for e in GALLERY_ENTRIES:
        command = e.command().replace("|", "\\|")
        rows.append(f"| {e.control} | `{command}` | {look(e)} | ![{e.name}]({folder}{e.picture.name}) |")
    return "\n".join(rows)


README_HEAD = """# Controls gallery

One picture per control, each made from the bundled photos by the command beside it. Regenerate them all with
`python examples/make_gallery.py` (or some: `python examples/make_gallery.py mask tv`); this file is written by
that script. Each JPEG carries its settings: `inceptionism dream examples/chelsea.jpg --settings
examples/gallery/tv.jpg` makes it again. `mask.png` is drawn by the script. Not pictured: the `seed` and `classic`
presets (their weights, inception_v3 and googlenet, are not offline) and 16-bit output (not visible).

"""


def write_readme() -> None:
    """examples/gallery/README.md: the table, with links relative to the gallery folder."""
    path = ROOT / GALLERY / "README.md"
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".README-", suffix=".md")
    with os.fdopen(fd, "w") as f:
        f.write(README_HEAD + table(folder="") + "\n")
    os.chmod(tmp, 0o644)
    os.replace(tmp, path)


def write_mask(path: Path, size: tuple[int, int]) -> None:
    """A soft radial mask of ``size`` (W, H): black in a central ellipse, rising smoothly to white at the edges."""
    w, h = size
    y, x = np.mgrid[0:h, 0:w].astype(np.float64)
    r = np.hypot((x + 0.5) / w - 0.5, (y + 0.5) / h - 0.5) / 0.5  # 0 at the centre, 1 at the middle of an edge
    ramp = np.clip((r - 0.45) / 0.45, 0.0, 1.0)
    level = ramp * ramp * (3 - 2 * ramp)  # smoothstep: no visible ring where the dream starts
    _save_atomic(Image.fromarray(np.round(level * 255).astype(np.uint8), "L"), path, "PNG")


def _tiled(image: Image.Image, n: int) -> Image.Image:
    """``image`` repeated ``n × n`` times, scaled down so its long side is at most ``TILED_LONG_SIDE``."""
    if n == 1:
        return image
    out = Image.new(image.mode, (image.width * n, image.height * n))
    for i in range(n):
        for j in range(n):
            out.paste(image, (i * image.width, j * image.height))
    scale = min(1.0, TILED_LONG_SIDE / max(out.size))
    return out.resize((round(out.width * scale), round(out.height * scale)), Image.Resampling.LANCZOS)


def _save_atomic(image: Image.Image, path: Path, fmt: str, **params: object) -> None:
    """Write ``image`` to ``path`` through a temporary file in the same folder, so a failure leaves the old one."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.stem}-", suffix=path.suffix)
    os.close(fd)
    try:
        image.save(tmp, fmt, **params)
        os.chmod(tmp, 0o644)  # mkstemp makes it private; these are files to commit and share
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def make(entry: Entry) -> None:
    """Run the entry's command and write its gallery picture (re-encoded, tiled if asked, settings kept)."""
    with tempfile.TemporaryDirectory() as tmp:
        raw = Path(tmp) / f"{entry.name}.png"
        run = subprocess.run(
            [sys.executable, "-m", "inceptionism", *entry.argv(raw), "-q"],
            cwd=ROOT,
            capture_output=True,
            text=True,
        )
        if run.returncode != 0:
            raise RuntimeError(f"{entry.name}: {run.stderr.strip() or run.stdout.strip()}")
        with Image.open(raw) as im:
            settings = im.info.get(SETTINGS_KEY)  # the PNG's settings text
            picture = _tiled(im.convert("RGB"), entry.tile)
    comment = wrapped_settings(settings)  # the form the CLI writes in a JPEG's comment
    params: dict[str, object] = {"quality": JPEG_QUALITY, "optimize": True}
    if comment:
        params["comment"] = comment
    _save_atomic(picture, ROOT / entry.picture, "JPEG", **params)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Regenerate the controls gallery (examples/gallery/).")
    parser.add_argument("names", nargs="*", help="pictures to make [all]; --list shows the names")
    parser.add_argument("--table", action="store_true", help="print the README's gallery table and stop")
    parser.add_argument("--list", action="store_true", help="print the pictures' names and stop")
    parser.add_argument("--readme", action="store_true", help="rewrite examples/gallery/README.md only")
    args = parser.parse_args(argv)
    if args.table:
        print(table())
        return 0
    if args.list:
        print("\n".join(e.name for e in GALLERY_ENTRIES))
        return 0
    if args.readme:
        write_readme()
        return 0
    chosen = entries_named(args.names)
    (ROOT / GALLERY).mkdir(exist_ok=True)
    with Image.open(ROOT / PHOTO) as photo:
        write_mask(ROOT / MASK, photo.size)
    write_readme()
    failed = 0
    for entry in chosen:
        start = time.perf_counter()
        try:
            make(entry)
        except RuntimeError as e:
            failed += 1
            print(f"FAILED {e}", file=sys.stderr)
            continue
        kib = (ROOT / entry.picture).stat().st_size / 1024
        print(f"{entry.picture}  {kib:.0f} KiB  {time.perf_counter() - start:.0f} s", flush=True)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
