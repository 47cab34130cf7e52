#!/usr/bin/python3
"""Cut the bundled demo dataset and example tiles from the developers' AI4Mars file.

    /usr/bin/python3 tools/make_sample.py [../shared/data/ai4mars-train-64x128.npz]

Writes datasets/sample.npz (course layout: training_set (N,2,64,128) uint8, test_set (M,64,128)
uint8, deflated) and examples/*.png (gray tiles with their colourised masks). The tiles are
evenly spaced source-image pairs, so the sample spans the whole file. AI4Mars: NASA/JPL-Caltech,
CC BY 4.0 (see README).
"""
import os
import sys

import numpy as np
from PIL import Image

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..")
SRC = sys.argv[1] if len(sys.argv) > 1 else os.path.join(ROOT, "..", "shared", "data", "ai4mars-train-64x128.npz")
COLORS = [(40, 40, 40), (214, 160, 84), (160, 70, 60), (250, 220, 120), (70, 130, 230)]

data = np.load(SRC)["training_set"]
pairs = np.linspace(0, data.shape[0] // 2 - 1, 160).astype(int)
idx = np.stack([2 * pairs, 2 * pairs + 1], axis=1).reshape(-1)
train = data[idx[:256]]
test = data[idx[256:320], 0]
out = os.path.join(ROOT, "datasets", "sample.npz")
np.savez_compressed(out, training_set=train, test_set=test)
print("wrote", out, os.path.getsize(out), "bytes:", train.shape, test.shape)

os.makedirs(os.path.join(ROOT, "examples"), exist_ok=True)
# four examples: pick tiles that show several classes, big rock among them
scores = [(len(np.unique(t[1])) + 2 * (4 in t[1]), i) for i, t in enumerate(train)]
chosen = [i for _, i in sorted(scores, reverse=True)[:4]]
for n, i in enumerate(chosen):
    img, mask = train[i]
    Image.fromarray(img).save(os.path.join(ROOT, "examples", "tile%d.png" % (n + 1)))
    pal = Image.fromarray(mask, mode="P")
    pal.putpalette([c for rgb in COLORS for c in rgb])
    pal.save(os.path.join(ROOT, "examples", "tile%d-truth.png" % (n + 1)))
print("examples:", chosen)
