#!/usr/bin/python3
"""Write tests/fixtures/resize.npz: Pillow's own resizes, that tests/test_resize.c holds
core/resize.c to bit for bit (8-bit BILINEAR and NEAREST) and to float rounding ("F" BILINEAR).

Run by hand with Debian's python3-pil and python3-numpy (`make fixtures`); CI only reads the output.
Every case: the source image `src_<case>` and the expected `<kind>_<case>`, sizes (h, w) in the
arrays' shapes. The float source is src / 255 in float32, the label source src // 52 (0..4): the
test makes them the same way.
"""
import os

import numpy as np
import PIL
from PIL import Image

OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests", "fixtures", "resize.npz")


def main():
    rng = np.random.default_rng(19)
    y, x = np.mgrid[0:160, 0:160]
    # a smooth frame with edges and noise (a rover frame's kind of content), and pure noise
    frame = (128 + 60 * np.sin(x / 9.0) * np.cos(y / 13.0) + 40 * (x > 150) - 30 * ((x - 80) ** 2 + (y - 170) ** 2 < 900)
             + rng.normal(0, 12, (160, 160))).clip(0, 255).astype(np.uint8)
    noise = rng.integers(0, 256, (37, 53), dtype=np.uint8)
    cases = {  # name: (source, (h, w) target)
        "down2": (frame, (80, 80)),         # a whole frame halved, as 256x256 NAVCAM frames to 128
        "down_odd": (noise, (20, 31)),      # non-integer factors
        "down3": (frame, (53, 53)),
        "up": (noise, (64, 100)),           # entropy maps back to a frame's size
        "width_only": (noise, (37, 80)),    # one pass only
        "height_only": (noise, (11, 53)),
        "same": (noise, (37, 53)),
        "aspect": (frame[:120], (96, 128)),   # a non-square frame, aspect kept
    }
    out = {}
    for name, (src, (h, w)) in cases.items():
        out["src_" + name] = src
        out["bilinear_" + name] = np.asarray(Image.fromarray(src).resize((w, h), Image.BILINEAR))
        f = src.astype(np.float32) / 255.0
        out["fbilinear_" + name] = np.asarray(Image.fromarray(f, mode="F").resize((w, h), Image.BILINEAR))
        labels = (src // 52).astype(np.uint8)  # 0..4
        out["nearest_" + name] = np.asarray(Image.fromarray(labels).resize((w, h), Image.NEAREST))
    out["pillow_version"] = np.frombuffer(PIL.__version__.encode(), dtype=np.uint8)
    np.savez_compressed(OUT, **out)
    print("wrote", OUT, os.path.getsize(OUT), "bytes, Pillow", PIL.__version__)


if __name__ == "__main__":
    main()
