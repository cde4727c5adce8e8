"""Is an H.264 encode reproducible? Encodes the same frames several times with the settings ``VideoWriter`` uses
(libx264, crf 18, preset medium) and counts the different streams and decoded frame sets, with and without
x264's macroblock-tree rate control. Plain script: prints figures, asserts nothing.

    python benchmarks/encode_repeat.py                 # 40 encodes of 10 noisy 320×240 frames
    python benchmarks/encode_repeat.py --size 64x48 --repeats 60

Why it matters: a resumed or fault-recovered video has the same dreamed frames as an uninterrupted run (the
tests compare them before encoding), but the encoded file can differ where the encoder itself is not
reproducible (docs/scale-out.md, "Identity after a fault").
"""

from __future__ import annotations

import argparse
import hashlib
import io
from pathlib import Path

import numpy as np
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]


def frames(size: tuple[int, int], count: int) -> list[np.ndarray]:
    """``count`` crops of the bundled photo panning right 3 px a frame, with ±40 levels of noise (a dream's
    fine detail is as hard to predict)."""
    photo = np.asarray(Image.open(ROOT / "examples" / "coffee.jpg").convert("RGB"))
    w, h = size
    rng = np.random.default_rng(0)
    out = []
    for i in range(count):
        crop = photo[50 : 50 + h, 10 + 3 * i : 10 + 3 * i + w].astype(np.int16)
        out.append(np.clip(crop + rng.integers(-40, 41, crop.shape), 0, 255).astype(np.uint8))
    return out


def encode(images: list[np.ndarray], params: str) -> tuple[str, str]:
    """(digest of the stream, digest of the decoded frames) of one encode."""
    import av

    h, w = images[0].shape[:2]
    buffer = io.BytesIO()
    with av.open(buffer, "w", format="mp4") as container:
        stream = container.add_stream("libx264", rate=24)
        stream.pix_fmt, stream.width, stream.height = "yuv420p", w, h
        stream.options = {"crf": "18", "preset": "medium", **({"x264-params": params} if params else {})}
        for i, image in enumerate(images):
            frame = av.VideoFrame.from_ndarray(image, format="rgb24")
            frame.pts = i
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode(None):
            container.mux(packet)
    data = buffer.getvalue()
    with av.open(io.BytesIO(data)) as container:
        decoded = b"".join(f.to_ndarray(format="rgb24").tobytes() for f in container.decode(video=0))
    return hashlib.sha256(data).hexdigest(), hashlib.sha256(decoded).hexdigest()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size", default="320x240", help="frame size WxH [320x240]")
    parser.add_argument("--frames", type=int, default=10, help="frames per encode [10]")
    parser.add_argument("--repeats", type=int, default=40, help="encodes per setting [40]")
    args = parser.parse_args()
    w, h = (int(v) for v in args.size.split("x"))
    images = frames((w, h), args.frames)
    print(f"{args.repeats} encodes of the same {args.frames} frames {w}×{h}, libx264 crf 18 preset medium")
    for label, params in [("as VideoWriter writes", ""), ("threads=1", "threads=1"), ("mbtree=0", "mbtree=0")]:
        results = [encode(images, params) for _ in range(args.repeats)]
        streams = {s for s, _ in results}
        pictures = [d for _, d in results]
        common = max(pictures.count(d) for d in set(pictures))
        print(
            f"  {label:<22} {len(streams):>3} different streams, {len(set(pictures)):>3} different decoded "
            f"frame sets ({args.repeats - common} of {args.repeats} encodes differ from the commonest)"
        )


if __name__ == "__main__":
    main()
