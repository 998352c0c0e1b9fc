#!/usr/bin/env python3
"""Golden values for lt-vision's timm-style RandAugment (`imagenet-randncls`).

Runs the GLMC authors' own copy of timm's RandAugment ops
(GLMC-2023/utils/randaugment.py, read from the authors' repository) with
fixed arguments on small seeded RGB images (13x9, and 24x16 so that
equalize has a non-trivial step), plus torchvision's PIL
ColorJitter kernels, and writes every result as hex into
crates/lt-vision/tests/fixtures/timm_randaugment_golden.json:

    . tools/env.sh && $LT_GLMC_PYTHON tools/timm_randaugment_golden.py \
        [--randaugment path/to/randaugment.py]

Without --randaugment the file is taken from the mirror of the authors'
repository (`git show HEAD:GLMC-2023/utils/randaugment.py` in
$GLMC_MIRROR, default /work/.mirror/ynu-yangpeng+GLMC/repo).

The level -> argument functions are recorded too, with `_randomly_negate`
replaced by the identity so the unsigned values are checked.
"""
import argparse
import importlib.util
import json
import os
import subprocess
import sys
import tempfile

import numpy as np
import PIL
from PIL import Image
import torchvision.transforms.functional as TF

ap = argparse.ArgumentParser()
ap.add_argument("--randaugment", help="path of the authors' randaugment.py")
args = ap.parse_args()

if args.randaugment:
    ra_path = args.randaugment
else:
    mirror = os.environ.get("GLMC_MIRROR", "/work/.mirror/ynu-yangpeng+GLMC/repo")
    src = subprocess.check_output(["git", "-C", mirror, "show", "HEAD:GLMC-2023/utils/randaugment.py"])
    tmp = tempfile.NamedTemporaryFile("wb", suffix=".py", delete=False)
    tmp.write(src)
    tmp.close()
    ra_path = tmp.name
spec = importlib.util.spec_from_file_location("glmc_randaugment", ra_path)
ra = importlib.util.module_from_spec(spec)
spec.loader.exec_module(ra)

W, H = 13, 9  # odd, non-square: exercises the half-pixel centre and w/h use
FILL = (124, 116, 104)  # img_mean of the authors' ra_params
rng = np.random.default_rng(20230528)
# "noise": full-range noise plus a gradient (bicubic overshoot gets clipped).
yy, xx, cc = np.meshgrid(np.arange(H), np.arange(W), np.arange(3), indexing="ij")
noise = ((xx * 17 + yy * 11 + cc * 50) % 256 + rng.integers(0, 90, size=(H, W, 3))) % 256
# "narrow": values in [37, 201], different per channel (autocontrast stretches).
narrow = 37 + (rng.integers(0, 165, size=(H, W, 3)) * np.array([1.0, 0.7, 0.4])).astype(np.int64)
# "skewed": 24x16, enough pixels (384 per channel > 255) for a non-trivial
# equalize step, with a skewed histogram.
skewed = (rng.random(size=(16, 24, 3)) ** 2 * np.array([255, 180, 120]) + np.array([0, 40, 90])).astype(np.uint8)
images = {"noise": noise.astype(np.uint8), "narrow": narrow.astype(np.uint8), "skewed": skewed}


def pil(name):
    return Image.fromarray(images[name], "RGB")


def hexof(img, image):
    a = np.asarray(img, dtype=np.uint8)
    assert a.shape == images[image].shape, a.shape
    return a.tobytes().hex()


RESAMPLE = {"bilinear": Image.BILINEAR, "bicubic": Image.BICUBIC}
cases = []


def case(op, arg, out, image="noise", resample=None):
    cases.append({"op": op, "arg": arg, "resample": resample, "image": image, "hex": hexof(out, image)})


# Geometric ops: kwargs exactly as AutoAugmentOp passes them
# (fillcolor=img_mean, resample=one of bilinear/bicubic).
geometric = {
    "Rotate": (ra.rotate, [30.0, -30.0, 17.3, -4.9]),
    "ShearX": (ra.shear_x, [0.3, -0.3, 0.137]),
    "ShearY": (ra.shear_y, [0.3, -0.3, 0.137]),
    "TranslateXRel": (ra.translate_x_rel, [0.45, -0.45, 0.213]),
    "TranslateYRel": (ra.translate_y_rel, [0.45, -0.45, 0.213]),
}
for op, (fn, values) in geometric.items():
    for v in values:
        for rname, r in RESAMPLE.items():
            case(op, v, fn(pil("noise"), v, fillcolor=FILL, resample=r), resample=rname)

# Enhance ops (ImageEnhance.* via the authors' wrappers).
enhance = {"Color": ra.color, "Contrast": ra.contrast, "Brightness": ra.brightness, "Sharpness": ra.sharpness}
for op, fn in enhance.items():
    for f in [0.1, 0.55, 1.0, 1.37, 1.9]:
        case(op, f, fn(pil("noise"), f))

# Pointwise / histogram ops.
for image in ["noise", "narrow", "skewed"]:
    case("Invert", 0.0, ra.invert(pil(image)), image)
    case("AutoContrast", 0.0, ra.auto_contrast(pil(image)), image)
    case("Equalize", 0.0, ra.equalize(pil(image)), image)
for t in [0, 128, 243, 256]:
    case("Solarize", float(t), ra.solarize(pil("noise"), t))
for a in [0, 55, 104, 110]:
    case("SolarizeAdd", float(a), ra.solarize_add(pil("noise"), a))
for b in [1, 3, 4]:  # Pillow >= 11 rejects bits = 0 (timm's PosterizeTpu at level < 2.5)
    case("PosterizeTpu", float(b), ra.posterize(pil("noise"), b))

# torchvision ColorJitter on a PIL image uses the same ImageEnhance kernels.
case("Brightness", 0.73, TF.adjust_brightness(pil("noise"), 0.73))
case("Contrast", 1.21, TF.adjust_contrast(pil("noise"), 1.21))
case("Color", 0.64, TF.adjust_saturation(pil("noise"), 0.64))

# Level -> argument, unsigned.
ra._randomly_negate = lambda v: v
levels = []
for op in ra._RAND_TRANSFORMS:
    fn = ra.LEVEL_TO_ARG[op]
    for level in [0.0, 2.4, 2.5, 7.49, 7.5, 9.37, 10.0]:
        arg = fn(level, {"translate_const": 100}) if fn is not None else ()
        levels.append({"op": op, "level": level, "args": [float(a) for a in arg]})

out = {
    "generator": "tools/timm_randaugment_golden.py",
    "pillow": PIL.__version__,
    "fill": list(FILL),
    "rand_transforms": list(ra._RAND_TRANSFORMS),
    "images": {k: {"width": v.shape[1], "height": v.shape[0], "hex": v.tobytes().hex()} for k, v in images.items()},
    "cases": cases,
    "levels": levels,
}
path = os.path.join(os.path.dirname(__file__), "..", "crates", "lt-vision", "tests", "fixtures", "timm_randaugment_golden.json")
os.makedirs(os.path.dirname(path), exist_ok=True)
with open(path, "w") as f:
    # One case / level per line: small, and diffs stay readable.
    f.write("{\n")
    items = list(out.items())
    for i, (k, v) in enumerate(items):
        sep = "," if i + 1 < len(items) else ""
        if isinstance(v, list) and v and isinstance(v[0], dict):
            f.write(json.dumps(k) + ": [\n" + ",\n".join(json.dumps(e) for e in v) + "\n]" + sep + "\n")
        else:
            f.write(json.dumps(k) + ": " + json.dumps(v) + sep + "\n")
    f.write("}\n")
print(path, len(cases), "cases", len(levels), "levels", file=sys.stderr)
