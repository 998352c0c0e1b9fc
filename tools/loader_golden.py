#!/usr/bin/env python3
"""Golden values for lt-loader's eval-transform test.

Builds the same integer test pattern as crates/lt-loader/tests/golden.rs,
applies torchvision's `Resize(64)` + `CenterCrop(56)` to it as a PIL image
(PIL's antialiased bilinear resize, torchvision's default), and writes the
result as a lossless PNG fixture:

    . tools/env.sh && $LT_GLMC_PYTHON tools/loader_golden.py
"""
import os

import numpy as np
from PIL import Image
from torchvision import transforms as T

W, H = 120, 90
y, x, c = np.meshgrid(np.arange(H), np.arange(W), np.arange(3), indexing="ij")
pattern = ((x * x * 3 + y * 5 + c * 40 + (x * y) // 7) % 256).astype(np.uint8)
out = T.Compose([T.Resize(64), T.CenterCrop(56)])(Image.fromarray(pattern, "RGB"))
path = os.path.join(os.path.dirname(__file__), "..", "crates", "lt-loader", "tests", "fixtures", "eval_resize64_crop56.png")
out.save(path)
print(path, out.size)

# A progressive JPEG (the image crate's encoder writes baseline only), of a
# smooth gradient so the decode can be checked against the known pixels.
yy, xx, cc = np.meshgrid(np.arange(32), np.arange(48), np.arange(3), indexing="ij")
grad = (xx * 3 + yy * 2 + cc * 20).astype(np.uint8)  # max 243: no wrap
path = os.path.join(os.path.dirname(__file__), "..", "crates", "lt-loader", "tests", "fixtures", "gradient_progressive.jpg")
Image.fromarray(grad, "RGB").save(path, quality=95, progressive=True, subsampling=0)
print(path)
