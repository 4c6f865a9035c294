#!/usr/bin/python3
"""Writes a folder of photo-like JPEG files for bench/data_vs_torch.sh: DIR/<class>/<i>.jpg.

Each image is a Fashion-MNIST picture (Debian's dataset-fashion-mnist) enlarged to a random size
between 160 and 320 pixels a side, colored with a per-image tint and given a grain of noise, so
that it decodes like a small photo (RGB, 4:2:0, quality 90) rather than a flat drawing.

    /usr/bin/python3 bench/make_photos.py DIR N [SEED]
"""
import gzip
import os
import random
import sys

from PIL import Image

root, n = sys.argv[1], int(sys.argv[2])
rng = random.Random(int(sys.argv[3]) if len(sys.argv) > 3 else 1)
src = "/usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz"
lab = "/usr/share/datasets/fashion-mnist/train-labels-idx1-ubyte.gz"
with gzip.open(src) as f:
    pix = f.read()[16:]
with gzip.open(lab) as f:
    labels = f.read()[8:]
noise = Image.effect_noise((512, 512), 24).convert("L")
for i in range(n):
    k = i % 60000
    img = Image.frombytes("L", (28, 28), pix[k * 784:(k + 1) * 784])
    w, h = rng.randint(160, 320), rng.randint(160, 320)
    img = img.resize((w, h), Image.BICUBIC)
    tint = [rng.randint(60, 255) for _ in range(3)]
    rgb = Image.merge("RGB", [img.point(lambda v, t=t: v * t // 255 + (255 - t) // 3) for t in tint])
    grain = noise.crop((0, 0, w, h)).convert("RGB")
    rgb = Image.blend(rgb, grain, 0.15)
    d = os.path.join(root, "class%d" % labels[k])
    os.makedirs(d, exist_ok=True)
    rgb.save(os.path.join(d, "%06d.jpg" % i), quality=90)
