#!/usr/bin/env python3
"""Make an ImageNet-style folder of real photographs for benchmarks.

Source: the JPEG photographs of Debian's `mate-backgrounds` package
(/usr/share/backgrounds/mate, 1280x1024 up to 5640x3172, baseline and
progressive). Each output image is a seeded random crop of one photo,
resized to an ImageNet-like size (the ImageNet train set averages about
400x350 px, 110 KB) and saved as a baseline JPEG at quality 90; every
`--large-every`-th image keeps a large size (1600-2400 px) so that the
`--max-side` re-encode path has real work. Layout: OUT/train/cNNN/*.jpg and
OUT/val/cNNN/*.jpg.

Usage: make_photo_folder.py OUT [--classes 10] [--per-class 60] [--val-per-class 5] [--seed 0]
"""
import argparse
import glob
import os
import random
import sys

from PIL import Image

SIZES = [(500, 375), (375, 500), (500, 333), (333, 500), (640, 480), (400, 400), (500, 500), (800, 600)]


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("out")
    ap.add_argument("--classes", type=int, default=10)
    ap.add_argument("--per-class", type=int, default=60)
    ap.add_argument("--val-per-class", type=int, default=5)
    ap.add_argument("--large-every", type=int, default=10)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--photos", default="/usr/share/backgrounds/mate")
    a = ap.parse_args()
    photos = sorted(glob.glob(os.path.join(a.photos, "**", "*.jpg"), recursive=True))
    if not photos:
        sys.exit(f"no JPEG photographs under {a.photos}: apt-get install mate-backgrounds")
    if os.path.exists(a.out) and os.listdir(a.out):
        sys.exit(f"{a.out} exists and is not empty")
    rng = random.Random(a.seed)
    cache = {}
    n = 0
    for split, per in (("train", a.per_class), ("val", a.val_per_class)):
        for c in range(a.classes):
            d = os.path.join(a.out, split, f"c{c:03d}")
            os.makedirs(d, exist_ok=True)
            for i in range(per):
                src = photos[rng.randrange(len(photos))]
                if src not in cache:
                    cache[src] = Image.open(src).convert("RGB")
                im = cache[src]
                if n % a.large_every == a.large_every - 1:
                    side = rng.randint(1600, 2400)
                    w, h = side, int(side * rng.uniform(0.6, 0.8))
                else:
                    w, h = SIZES[rng.randrange(len(SIZES))]
                cw = rng.randint(min(w, im.width) // 2, im.width)
                ch = min(im.height, max(1, int(cw * h / w)))
                x = rng.randint(0, im.width - cw)
                y = rng.randint(0, im.height - ch)
                out = im.crop((x, y, x + cw, y + ch)).resize((w, h), Image.BILINEAR)
                out.save(os.path.join(d, f"{i:05d}.jpg"), quality=90)
                n += 1
    print(f"wrote {n} JPEGs from {len(photos)} photographs into {a.out}")


if __name__ == "__main__":
    main()
