#!/usr/bin/env python3
"""Use lt-glmc checkpoints in plain PyTorch (plus the `safetensors` package).

An lt-train checkpoint (`RUN/checkpoint/model.safetensors`) carries a model
card in its safetensors metadata (crates/lt-glmc/src/card.rs): architecture,
width, classes, input channels, normalization, the evaluation head and the
evaluation pipeline. This module builds the same network as
crates/lt-glmc/src/model.rs from that card and loads the weights with
`strict=True`:

    import sys; sys.path.insert(0, "tools")
    import lt_glmc_torch
    model, card = lt_glmc_torch.load("runs/fmnist-glmc")
    x = lt_glmc_torch.preprocess(PIL.Image.open("shoe.png"), card)
    print(card["class_names"][model(x[None]).argmax(1).item()])

`model(x)` returns the evaluation head's logits (g or g_cb, as the card
says) for a normalized float batch; `model.forward_heads(x)` returns both.
`evaluate(run, shards)` reproduces `lt-train eval`'s top-1 on HF-layout
Parquet shards. Nothing here changes torch's global state (default dtype,
seeds, threads). Command line:

    python tools/lt_glmc_torch.py eval RUN [--shards DIR] [--split test] [--json]
"""
import argparse
import io
import json
import os
import sys

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

FORMAT = "lt-glmc-model/1"
MODEL_FILE = "model.safetensors"
_F32 = torch.float32


# ---------------------------------------------------------------------------
# The network (crates/lt-glmc/src/model.rs, tensor names included)
# ---------------------------------------------------------------------------
def _conv(kw, cin, cout, k, stride=1, padding=0, groups=1):
    return nn.Conv2d(cin, cout, k, stride, padding, groups=groups, bias=False, **kw)


class BatchNorm2d(nn.Module):
    """BatchNorm as lt-glmc's (eps 1e-5, momentum 0.1) with exactly its
    tensors: weight, bias, running_mean, running_var (no
    num_batches_tracked, which tch does not keep)."""

    def __init__(self, kw, c):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(c, **kw))
        self.bias = nn.Parameter(torch.zeros(c, **kw))
        self.register_buffer("running_mean", torch.zeros(c, **kw))
        self.register_buffer("running_var", torch.ones(c, **kw))

    def forward(self, x):
        return F.batch_norm(x, self.running_mean, self.running_var, self.weight, self.bias, self.training, 0.1, 1e-5)


class BasicBlock(nn.Module):
    """ResNet-32 block with the option-A shortcut (subsample, zero channels)."""

    def __init__(self, kw, cin, cout, stride):
        super().__init__()
        self.conv1, self.bn1 = _conv(kw, cin, cout, 3, stride, 1), BatchNorm2d(kw, cout)
        self.conv2, self.bn2 = _conv(kw, cout, cout, 3, 1, 1), BatchNorm2d(kw, cout)
        self.stride = stride
        lo = (cout - cin) // 2
        self.pad = (lo, cout - cin - lo) if stride != 1 or cin != cout else None

    def forward(self, x):
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        sc = x
        if self.pad is not None:
            sc = F.pad(x[:, :, :: self.stride, :: self.stride], (0, 0, 0, 0, self.pad[0], self.pad[1]))
        return F.relu(out + sc)


class ResNet32(nn.Module):
    def __init__(self, kw, width, in_channels):
        super().__init__()
        self.conv1, self.bn1 = _conv(kw, in_channels, width, 3, 1, 1), BatchNorm2d(kw, width)
        cin = width
        for i, (planes, stride) in enumerate([(width, 1), (2 * width, 2), (4 * width, 2)]):
            blocks = []
            for j in range(5):
                blocks.append(BasicBlock(kw, cin, planes, stride if j == 0 else 1))
                cin = planes
            setattr(self, f"layer{i + 1}", nn.Sequential(*blocks))
        self.feature_dim = 4 * width

    def forward(self, x):
        x = F.relu(self.bn1(self.conv1(x)))
        x = self.layer3(self.layer2(self.layer1(x)))
        return x.mean((2, 3))


class Bottleneck(nn.Module):
    """torchvision v1.5 bottleneck (stride on the 3x3 convolution)."""

    def __init__(self, kw, cin, planes, stride, groups, base_width):
        super().__init__()
        width = planes * base_width // 64 * groups
        cout = planes * 4
        self.conv1, self.bn1 = _conv(kw, cin, width, 1), BatchNorm2d(kw, width)
        self.conv2, self.bn2 = _conv(kw, width, width, 3, stride, 1, groups), BatchNorm2d(kw, width)
        self.conv3, self.bn3 = _conv(kw, width, cout, 1), BatchNorm2d(kw, cout)
        self.downsample = None
        if stride != 1 or cin != cout:
            self.downsample = nn.Sequential(_conv(kw, cin, cout, 1, stride), BatchNorm2d(kw, cout))

    def forward(self, x):
        out = F.relu(self.bn1(self.conv1(x)))
        out = F.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        sc = x if self.downsample is None else self.downsample(x)
        return F.relu(out + sc)


class ResNetImageNet(nn.Module):
    """torchvision ResNet-50 (groups 1, base width 64) or ResNeXt-50 32x4d."""

    def __init__(self, kw, groups, base_width, in_channels):
        super().__init__()
        self.conv1, self.bn1 = _conv(kw, in_channels, 64, 7, 2, 3), BatchNorm2d(kw, 64)
        cin = 64
        for i, (n, planes, stride) in enumerate([(3, 64, 1), (4, 128, 2), (6, 256, 2), (3, 512, 2)]):
            blocks = []
            for j in range(n):
                blocks.append(Bottleneck(kw, cin, planes, stride if j == 0 else 1, groups, base_width))
                cin = planes * 4
            setattr(self, f"layer{i + 1}", nn.Sequential(*blocks))
        self.feature_dim = 2048

    def forward(self, x):
        x = F.max_pool2d(F.relu(self.bn1(self.conv1(x))), 3, 2, 1)
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        return x.mean((2, 3))


class GlmcNet(nn.Module):
    """Encoder f plus GLMC's heads g (`head`), g_cb (`head_cb`), P (`proj`)
    and Q (`pred`). `forward` returns the card's evaluation head.

    Built on `device` ("meta" by default: no memory, no initialization, so
    torch's random number generator is left alone; `load` then assigns the
    checkpoint's tensors)."""

    def __init__(self, card, device="meta"):
        super().__init__()
        kw = {"dtype": _F32, "device": device}
        arch, c = card["arch"], card["in_channels"]
        if arch == "resnet32":
            self.encoder = ResNet32(kw, card["width"], c)
        elif arch == "resnet50":
            self.encoder = ResNetImageNet(kw, 1, 64, c)
        elif arch == "resnext50_32x4d":
            self.encoder = ResNetImageNet(kw, 32, 4, c)
        else:
            raise ValueError(f"model card: unknown architecture {arch!r}")
        h, k, d = self.encoder.feature_dim, card["num_classes"], card["proj_dim"]
        self.head = nn.Linear(h, k, **kw)
        self.head_cb = nn.Linear(h, k, **kw)
        self.proj = nn.Linear(h, d, **kw)
        self.pred = nn.Linear(d, d, **kw)
        self.eval_head = card["eval_head"]

    def forward_heads(self, x):
        """Both classifiers' logits: {"logits": g(f(x)), "logits_cb": g_cb(f(x))}."""
        feat = self.encoder(x)
        return {"logits": self.head(feat), "logits_cb": self.head_cb(feat)}

    def forward(self, x):
        feat = self.encoder(x)
        return self.head_cb(feat) if self.eval_head == "head_cb" else self.head(feat)


# ---------------------------------------------------------------------------
# Loading
# ---------------------------------------------------------------------------
def weights_path(run_or_checkpoint):
    """RUN/checkpoint/model.safetensors, DIR/model.safetensors, or the file itself."""
    p = os.fspath(run_or_checkpoint)
    for cand in (os.path.join(p, "checkpoint", MODEL_FILE), os.path.join(p, MODEL_FILE), p):
        if os.path.isfile(cand):
            return cand
    raise FileNotFoundError(f"{p}: no {MODEL_FILE} in it or in its checkpoint/ (is it an lt-train run directory?)")


def read_card(metadata, path="checkpoint"):
    """The model card (a dict with parsed values) from safetensors metadata."""
    if not metadata:
        raise ValueError(f"{path}: its weights carry no model card (written before cards existed); "
                         "`lt-train eval` still reads it from the run's recipe.toml")

    def get(k):
        if k not in metadata:
            raise ValueError(f"{path}: model card: {k}: missing")
        return metadata[k]

    if get("format") != FORMAT:
        raise ValueError(f"{path}: model card: format {metadata['format']!r}, this module reads {FORMAT!r}")
    card = {
        "arch": get("arch"),
        "num_classes": int(get("num_classes")),
        "in_channels": int(get("in_channels")),
        "proj_dim": int(get("proj_dim")),
        "class_names": json.loads(get("class_names")),
        "mean": json.loads(get("mean")),
        "std": json.loads(get("std")),
        "eval_head": get("eval_head"),
        "eval_pipeline": json.loads(get("eval_pipeline")),
    }
    if card["arch"] == "resnet32":
        card["width"] = int(get("width"))
    for k in ("dataset", "recipe", "method", "lt_glmc_version"):
        card[k] = metadata.get(k, "")
    if card["eval_head"] not in ("head", "head_cb"):
        raise ValueError(f"{path}: model card: eval_head {card['eval_head']!r} (expected head or head_cb)")
    if len(card["class_names"]) != card["num_classes"]:
        raise ValueError(f"{path}: model card: {len(card['class_names'])} class names for {card['num_classes']} classes")
    if not (len(card["mean"]) == len(card["std"]) == card["in_channels"]):
        raise ValueError(f"{path}: model card: mean/std do not have {card['in_channels']} channels")
    return card


def load(run_or_checkpoint, device="cpu"):
    """Builds the model of a run directory, a checkpoint directory or a
    model.safetensors file from its model card and loads its weights
    (strict: every tensor, nothing more). Returns (model in eval mode, card)."""
    from safetensors import safe_open

    path = weights_path(run_or_checkpoint)
    with safe_open(path, framework="pt") as f:
        card = read_card(f.metadata(), path)
        state = {k: f.get_tensor(k) for k in f.keys()}
    model = GlmcNet(card, device="meta")
    model.load_state_dict(state, strict=True, assign=True)
    return model.to(device).eval(), card


# ---------------------------------------------------------------------------
# Preprocessing (crates/lt-vision/src/augment.rs, Pipeline::Eval)
# ---------------------------------------------------------------------------
def to_uint8(img, channels):
    """HWC uint8 array with `channels` channels, as lt-loader's decode_to:
    gray images stay gray and everything else becomes RGB, then RGB to gray
    is round(0.2989 R + 0.587 G + 0.114 B) in float32, gray to RGB repeats."""
    if not isinstance(img, np.ndarray):  # a PIL image
        gray = img.mode in ("1", "L", "LA", "I", "I;16", "F")
        img = np.asarray(img.convert("L" if gray else "RGB"))
    a = np.asarray(img)
    if a.dtype != np.uint8:
        raise ValueError(f"expected uint8 pixels, got {a.dtype}")
    if a.ndim == 2:
        a = a[:, :, None]
    if a.ndim != 3 or a.shape[2] not in (1, 3):
        raise ValueError(f"expected an HxW, HxWx1 or HxWx3 image, got shape {a.shape}")
    if a.shape[2] == 3 and channels == 1:
        r, g, b = (a[:, :, i].astype(np.float32) for i in range(3))
        v = np.float32(0.2989) * r + np.float32(0.587) * g + np.float32(0.114) * b
        a = np.floor(v + np.float32(0.5)).astype(np.uint8)[:, :, None]
    elif a.shape[2] == 1 and channels == 3:
        a = np.repeat(a, 3, axis=2)
    return a


def _shorter_side_size(w, h, short):
    """torchvision Resize(short): (width, height) with the shorter side `short`."""
    return (short, short * h // w) if w <= h else (short * w // h, short)


def preprocess(img, card):
    """A PIL image or uint8 array (HxW or HxWxC) through the card's eval
    pipeline and normalization: a float32 CxHxW tensor for `model`.

    The identity pipeline (`resize` and `crop` null, used for images of 64 px
    and less) and the centre crop are exact: the same pixels as lt-train.
    The shorter-side resize is close but not exact: lt-vision resizes with
    fast_image_resize's antialiased bilinear convolution and this module with
    Pillow's (also antialiased) BILINEAR; their fixed-point rounding can
    differ by a grey level here and there (not measured)."""
    p = card["eval_pipeline"]
    if p.get("kind") != "eval":
        raise ValueError(f"eval_pipeline of kind {p.get('kind')!r}; expected 'eval'")
    a = to_uint8(img, card["in_channels"])
    h, w = a.shape[:2]
    if p.get("resize"):
        rw, rh = _shorter_side_size(w, h, p["resize"])
        if (rw, rh) != (w, h):
            from PIL import Image

            planes = [np.asarray(Image.fromarray(a[:, :, c]).resize((rw, rh), Image.BILINEAR)) for c in range(a.shape[2])]
            a, (h, w) = np.stack(planes, axis=2), (rh, rw)
    if p.get("crop"):
        cs = p["crop"]
        if cs > w or cs > h:
            raise ValueError(f"eval crop {cs} is larger than the resized {w}x{h} image")
        top, left = int(round((h - cs) / 2)), int(round((w - cs) / 2))
        a = a[top : top + cs, left : left + cs]
    x = torch.from_numpy(np.ascontiguousarray(a.transpose(2, 0, 1)))
    return normalize(x, card)


def normalize(x, card):
    """uint8 (or float 0..255) CxHxW or NxCxHxW to `(x/255 - mean)/std` in
    float32, in lt-glmc's order of operations."""
    c = card["in_channels"]
    shape = (c, 1, 1) if x.dim() == 3 else (1, c, 1, 1)
    mean = torch.tensor(card["mean"], dtype=torch.float64).to(_F32).view(shape)
    std = torch.tensor(card["std"], dtype=torch.float64).to(_F32).view(shape)
    return x.to(_F32).div(255.0).sub(mean).div(std)


# ---------------------------------------------------------------------------
# Evaluation on shards
# ---------------------------------------------------------------------------
def _run_dir(run):
    p = os.fspath(run)
    return p if os.path.isdir(p) and not os.path.isfile(os.path.join(p, MODEL_FILE)) else os.path.dirname(os.path.dirname(p))


def shards_of_run(run):
    """The shard directory a run was trained on (report.json's info.shards)."""
    rep = os.path.join(_run_dir(run), "report.json")
    try:
        with open(rep) as f:
            return json.load(f)["info"]["shards"]
    except (OSError, KeyError, ValueError) as e:
        raise ValueError(f"cannot find the shard directory of {run} ({rep}: {e}); pass shards_dir / --shards") from e


def evaluate(run, shards_dir=None, split="test", device="cpu", batch_size=256, head=None):
    """Top-1 of a run's model on a split of HF-layout Parquet shards whose
    classes are the model's. Returns {"top1", "correct", "total",
    "per_class" (accuracy or None per class), "correct_per_class",
    "total_per_class", "head"}."""
    import pyarrow.parquet as pq
    from PIL import Image

    model, card = load(run, device)
    shards_dir = os.fspath(shards_dir) if shards_dir is not None else shards_of_run(run)
    with open(os.path.join(shards_dir, "manifest.json")) as f:
        manifest = json.load(f)
    names = [c["name"] for c in sorted(manifest["classes"], key=lambda c: c["id"])]
    if names != card["class_names"]:
        raise ValueError(f"{shards_dir}: its {len(names)} classes are not the model's {len(card['class_names'])}")
    head = head or card["eval_head"]
    k = card["num_classes"]
    correct, total = [0] * k, [0] * k

    def flush(xs, ys):
        x = torch.stack(xs).to(device)  # raises on mixed sizes, as lt-train does without a crop
        with torch.no_grad():
            out = model.forward_heads(x)
        pred = out["logits_cb" if head == "head_cb" else "logits"].argmax(1).cpu().tolist()
        for p, y in zip(pred, ys):
            total[y] += 1
            correct[y] += int(p == y)

    xs, ys = [], []
    for shard in manifest["splits"][split]["shards"]:
        t = pq.read_table(os.path.join(shards_dir, shard["file"]), columns=["image", "label"])
        for img, y in zip(t.column("image").to_pylist(), t.column("label").to_pylist()):
            xs.append(preprocess(Image.open(io.BytesIO(img["bytes"])), card))
            ys.append(int(y))
            if len(xs) == batch_size:
                flush(xs, ys)
                xs, ys = [], []
    if xs:
        flush(xs, ys)
    n = sum(total)
    return {
        "top1": sum(correct) / n if n else float("nan"),
        "correct": sum(correct),
        "total": n,
        "per_class": [c / t if t else None for c, t in zip(correct, total)],
        "correct_per_class": correct,
        "total_per_class": total,
        "head": head,
    }


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    e = sub.add_parser("eval", help="top-1 of a run's checkpoint on shards with its classes")
    e.add_argument("run", help="run directory, checkpoint directory or model.safetensors")
    e.add_argument("--shards", help="shard directory (default: the run's, from report.json)")
    e.add_argument("--split", default="test", choices=["test", "train"])
    e.add_argument("--head", choices=["head", "head_cb"], help="default: the card's eval_head")
    e.add_argument("--device", default="cpu")
    e.add_argument("--batch-size", type=int, default=256)
    e.add_argument("--json", action="store_true", help="print the result as one JSON object")
    a = ap.parse_args(argv)
    try:
        r = evaluate(a.run, a.shards, a.split, a.device, a.batch_size, a.head)
    except (OSError, ValueError, RuntimeError) as err:
        print(f"lt_glmc_torch: error: {err}", file=sys.stderr)
        return 2
    if a.json:
        print(json.dumps(r))
    else:
        print(f"top-1 {100 * r['top1']:.2f}% ({r['correct']}/{r['total']}, {a.split} split, {r['head']})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
