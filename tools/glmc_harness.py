#!/usr/bin/env python3
"""Reference training harness: the authors' GLMC training loop, in PyTorch,
on lt-build shards. A yardstick for lt-train's fidelity, not part of the
product.

Written for lt-glmc from a reading of the authors' code (ynu-yangpeng/GLMC,
GLMC-2023/: main.py, Trainer.py, utils/util.py, model/ResNet_cifar.py). What
it reproduces, and where each piece comes from:

- model: ResNet_modify (ResNet-32, option-A shortcuts, width `nf`), heads fc,
  fc_cb, projection_head (feature -> 128), contrast_head (128 -> 128); the
  input stem takes the shards' channel count (1 for Fashion-MNIST), as
  lt-train does. `_weights_init`: kaiming_normal_ (fan_in, gain sqrt 2) on
  every Conv2d and Linear weight, heads included; Linear biases and
  BatchNorm keep PyTorch's defaults.
- data: TwoCropTransform (two independent RandomCrop(size, padding=4) +
  RandomHorizontalFlip views per image; done here on uint8 tensors, batch-wise,
  with torchvision's parameter distribution: offsets uniform in
  [0, 2*padding], flip p = 0.5, zero fill before normalisation);
  normalisation with the manifest's train mean/std (what lt-train uses).
- sampling: a shuffled instance DataLoader (batch B, last partial batch kept)
  and a separate WeightedRandomSampler loader (weights n_y^-q normalised,
  N draws with replacement) whose iterator is re-made at every epoch start;
  the weighted batch is cut to the instance batch's size.
- step (Trainer.train + util.GLMC_mixed): lam ~ Beta(1, 1) inside GLMC_mixed
  (the Trainer's own Beta(beta, beta) draw is made and discarded, as there);
  MixUp on view 1, CutMix on view 2 with `rand_bbox` exactly (W = size[2],
  H = size[3], box [c - cut//2, c + cut//2) clipped, labels keep lam);
  two forwards (BatchNorm sees each mixture alone); soft CE on fc and on
  fc_cb with label weights n^-p / sum * C; SimSiam negative cosine with
  stop-gradient; alpha = 1 - (e/E)^2.
- optimiser: SGD(momentum 0.9, weight decay on every parameter),
  CosineAnnealingLR(T_max = E) stepped after each epoch's validation.
- validation: fc_cb (`train=False`) for GLMC, fc for CE; top-1, top-5,
  many (> 100), medium (21-100), few (<= 20) as the authors count them, ECE
  with 15 bins as lt-glmc's metrics.

`--method ce` is the plain cross-entropy loop written the same way (one view,
instance sampling, hard labels, head fc). Ablation switches reproduce lt-train's
current choices so that a divergence can be isolated: `--linear-init
default`, `--drop-last`.

Writes one JSON line per epoch to OUT/metrics.jsonl in lt-train's format
(`epoch`, `lr`, `alpha`, `loss*`, `steps`, `train_seconds`,
`test{top1,top5,many,medium,few,ece}`; accuracies as fractions) and
OUT/per_class.json at the end.

  python3 tools/glmc_harness.py SHARDS --out runs/h-glmc-s1 --epochs 20 --seed 1
  python3 tools/glmc_harness.py SHARDS --out runs/h-ce-s1 --method ce --epochs 20 --seed 1
"""
import argparse
import glob
import io
import json
import math
import os
import random
import sys
import time

import numpy as np
import pyarrow.parquet as pq
import torch
import torch.nn as nn
import torch.nn.functional as F
from PIL import Image


# ---------------------------------------------------------------------------
# Data
# ---------------------------------------------------------------------------
def load_split(shards, split, channels):
    """All rows of a split as (uint8 N x C x H x W, int64 labels), in file order."""
    files = sorted(glob.glob(os.path.join(shards, split, "*.parquet")))
    if not files:
        sys.exit(f"{shards}/{split}: no parquet shards")
    xs, ys = [], []
    for f in files:
        t = pq.read_table(f, columns=["image", "label"]).to_pydict()
        for img, y in zip(t["image"], t["label"]):
            im = Image.open(io.BytesIO(img["bytes"]))
            im = im.convert("L" if channels == 1 else "RGB")
            a = np.asarray(im, dtype=np.uint8)
            xs.append(a[None] if a.ndim == 2 else a.transpose(2, 0, 1))
            ys.append(y)
    return torch.from_numpy(np.stack(xs)), torch.tensor(ys, dtype=torch.int64)


def crop_flip(x, padding, gen):
    """RandomCrop(size, padding) + RandomHorizontalFlip on a uint8 batch, one
    independent draw per image (torchvision's distribution)."""
    n, _, h, w = x.shape
    p = F.pad(x, (padding, padding, padding, padding))
    tops = torch.randint(0, 2 * padding + 1, (n,), generator=gen)
    lefts = torch.randint(0, 2 * padding + 1, (n,), generator=gen)
    flips = torch.rand(n, generator=gen) < 0.5
    out = torch.empty_like(x)
    for i in range(n):
        v = p[i, :, tops[i]:tops[i] + h, lefts[i]:lefts[i] + w]
        out[i] = v.flip(-1) if flips[i] else v
    return out


# ---------------------------------------------------------------------------
# Model: ResNet_modify of model/ResNet_cifar.py
# ---------------------------------------------------------------------------
class Block(nn.Module):
    def __init__(self, cin, planes, stride):
        super().__init__()
        self.conv1 = nn.Conv2d(cin, planes, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.shortcut_a = stride != 1 or cin != planes
        self.planes = planes

    def forward(self, x):
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        if self.shortcut_a:
            q = self.planes // 4
            out = out + F.pad(x[:, :, ::2, ::2], (0, 0, 0, 0, q, q), "constant", 0)
        else:
            out = out + x
        return F.relu(out)


class ResNet32(nn.Module):
    def __init__(self, num_classes, nf, in_channels, hidden=128):
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, nf, 3, 1, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(nf)
        layers, cin = [], nf
        for planes, stride in ((nf, 1), (2 * nf, 2), (4 * nf, 2)):
            blocks = []
            for s in [stride] + [1] * 4:
                blocks.append(Block(cin, planes, s))
                cin = planes
            layers.append(nn.Sequential(*blocks))
        self.layer1, self.layer2, self.layer3 = layers
        self.fc = nn.Linear(4 * nf, num_classes)
        self.fc_cb = nn.Linear(4 * nf, num_classes)
        self.contrast_head = nn.Sequential(nn.Linear(hidden, hidden))
        self.projection_head = nn.Sequential(nn.Linear(4 * nf, hidden))

    def features(self, x):
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.layer3(self.layer2(self.layer1(out)))
        return F.avg_pool2d(out, out.size()[3]).flatten(1)

    def forward(self, x, train=False):
        f = self.features(x)
        if train:
            z = self.projection_head(f)
            return self.fc(f), self.fc_cb(f), z, self.contrast_head(z)
        return self.fc_cb(f)


def weights_init(model, linear_init):
    for m in model.modules():
        if isinstance(m, nn.Conv2d) or (isinstance(m, nn.Linear) and linear_init == "kaiming"):
            nn.init.kaiming_normal_(m.weight)


# ---------------------------------------------------------------------------
# GLMC_mixed and rand_bbox of utils/util.py
# ---------------------------------------------------------------------------
def rand_bbox(size, lam):
    W, H = size[2], size[3]
    cut_rat = np.sqrt(1.0 - lam)
    cut_w = int(np.ceil(W * cut_rat))
    cut_h = int(np.ceil(H * cut_rat))
    cx = np.random.randint(W)
    cy = np.random.randint(H)
    bbx1 = np.clip(cx - cut_w // 2, 0, W)
    bby1 = np.clip(cy - cut_h // 2, 0, H)
    bbx2 = np.clip(cx + cut_w // 2, 0, W)
    bby2 = np.clip(cy + cut_h // 2, 0, H)
    return bbx1, bby1, bbx2, bby2


def glmc_mixed(org1, org2, invs1, invs2, y_org, y_invs, y_org_w, y_invs_w, given=None):
    """`given`: (lam, box) from a replayed trace instead of the draws."""
    lam = np.random.beta(1.0, 1.0) if given is None else given[0]
    mix_x = lam * org1 + (1 - lam) * invs1
    mix_y = lam * y_org + (1 - lam) * y_invs
    mix_y_w = lam * y_org_w + (1 - lam) * y_invs_w
    x1, y1, x2, y2 = rand_bbox(org2.size(), lam) if given is None else given[1]
    cut_x = org2.clone()
    cut_x[:, :, x1:x2, y1:y2] = invs2[:, :, x1:x2, y1:y2]
    return mix_x, cut_x, mix_y, mix_y, mix_y_w, mix_y_w


def soft_ce(logits, target):
    return -torch.mean(torch.sum(F.log_softmax(logits, dim=1) * target, dim=1))


def neg_cos(p, z):
    return -F.cosine_similarity(p, z.detach(), dim=-1).mean()


# ---------------------------------------------------------------------------
# Evaluation
# ---------------------------------------------------------------------------
def evaluate(model, x, y, norm, counts, method, batch=256):
    model.eval()
    logits = []
    with torch.no_grad():
        for i in range(0, len(x), batch):
            xb = norm(x[i:i + batch])
            if method == "glmc":
                logits.append(model(xb, train=False))
            else:
                logits.append(model.fc(model.features(xb)))
    logits = torch.cat(logits)
    prob = logits.softmax(1)
    conf, pred = prob.max(1)
    top5 = logits.topk(min(5, logits.shape[1]), 1).indices
    ok = pred == y
    c = len(counts)
    per_class = [ok[y == k].double().mean().item() if (y == k).any() else None for k in range(c)]
    counts = np.asarray(counts)
    def group(mask):
        v = [per_class[k] for k in range(c) if mask[k] and per_class[k] is not None]
        return sum(v) / len(v) if v else None
    ece = 0.0
    confn, okn = conf.double().numpy(), ok.double().numpy()
    bins = np.clip(np.ceil(confn * 15).astype(int), 1, 15) - 1
    for b in range(15):
        m = bins == b
        if m.any():
            ece += abs(okn[m].sum() - confn[m].sum())
    return {
        "top1": ok.double().mean().item(),
        "top5": (top5 == y[:, None]).any(1).double().mean().item(),
        "many": group(counts > 100),
        "medium": group((counts <= 100) & (counts > 20)),
        "few": group(counts <= 20),
        "ece": ece / len(y),
    }, per_class


# ---------------------------------------------------------------------------
# Replay of an lt-train step trace (`lt-train --trace DIR`, crates/lt-train/src/trace.rs)
# ---------------------------------------------------------------------------
def read_safetensors(path):
    """name -> tensor, for the F32/F64/I64 tensors lt-train writes (the venv
    has no `safetensors` package; the format is an 8-byte header length, a
    JSON header, then the raw little-endian data)."""
    kinds = {"F32": np.float32, "F64": np.float64, "I64": np.int64}
    with open(path, "rb") as f:
        n = int.from_bytes(f.read(8), "little")
        header = json.loads(f.read(n))
        data = f.read()
    out = {}
    for name, meta in header.items():
        if name == "__metadata__":
            continue
        a, b = meta["data_offsets"]
        arr = np.frombuffer(data[a:b], dtype=kinds[meta["dtype"]]).reshape(meta["shape"])
        out[name] = torch.from_numpy(arr.copy())
    return out


def lt_to_harness_name(name):
    """lt-train's variable names (encoder.*, head, head_cb, proj, pred) as
    this module's (ResNet_modify's)."""
    for lt, ours in (("head_cb.", "fc_cb."), ("head.", "fc."), ("proj.", "projection_head.0."), ("pred.", "contrast_head.0.")):
        if name.startswith(lt):
            return ours + name[len(lt):]
    if name.startswith("encoder."):
        return name[len("encoder."):]
    raise KeyError(name)


def load_lt_weights(model, path):
    """Loads lt-train's weights and BatchNorm buffers; every tensor of the
    model must be given except BatchNorm's step counters."""
    state = {lt_to_harness_name(k): v for k, v in read_safetensors(path).items()}
    missing, unexpected = model.load_state_dict(state, strict=False)
    missing = [m for m in missing if not m.endswith("num_batches_tracked")]
    if missing or unexpected:
        sys.exit(f"{path}: missing {missing}, unexpected {unexpected}")


def replay_steps(trace_dir):
    """The trace's steps, grouped by epoch: lists of dicts with the uint8
    batch as a tensor [views, slots, C, H, W] under "x"."""
    pixels = np.memmap(os.path.join(trace_dir, "pixels.bin"), dtype=np.uint8, mode="r")
    epochs = {}
    lines = open(os.path.join(trace_dir, "steps.jsonl")).read().split("\n")
    for i, line in enumerate(lines):
        if not line.strip():
            continue
        try:
            st = json.loads(line)
        except json.JSONDecodeError:
            # A run killed mid-write leaves its last line cut: replay up to it.
            if i == len(lines) - 1:
                print(f"{trace_dir}: the last step line is cut (a killed run); replaying the {i} before it", file=sys.stderr)
                break
            sys.exit(f"{trace_dir}/steps.jsonl: line {i + 1} is not JSON")
        n = int(np.prod(st["shape"]))
        if st["offset"] + n > len(pixels):
            print(f"{trace_dir}: step {i + 1}'s pixels are cut (a killed run); replaying the {i} before it", file=sys.stderr)
            break
        st["x"] = torch.from_numpy(np.array(pixels[st["offset"]:st["offset"] + n]).reshape(st["shape"]))
        st["y"] = torch.tensor(st["labels"], dtype=torch.int64)
        epochs.setdefault(st["epoch"], []).append(st)
    return epochs


# ---------------------------------------------------------------------------
def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("shards")
    ap.add_argument("--out", required=True)
    ap.add_argument("--method", choices=("glmc", "ce"), default="glmc")
    ap.add_argument("--epochs", type=int, default=20)
    ap.add_argument("--batch-size", type=int, default=64)
    ap.add_argument("--lr", type=float, default=0.01)
    ap.add_argument("--wd", type=float, default=5e-3)
    ap.add_argument("--q", type=float, default=0.0, help="resample_weighting")
    ap.add_argument("--p", type=float, default=1.2, help="label_weighting")
    ap.add_argument("--kappa", type=float, default=1.0, help="contrast_weight")
    ap.add_argument("--beta", type=float, default=0.5, help="the Trainer's --beta (drawn and unused, as in the authors' code)")
    ap.add_argument("--width", type=int, default=16, help="nf of ResNet_modify")
    ap.add_argument("--padding", type=int, default=4)
    ap.add_argument("--seed", type=int, default=3407)
    ap.add_argument("--threads", type=int, default=0)
    ap.add_argument("--linear-init", choices=("kaiming", "default"), default="kaiming")
    ap.add_argument("--drop-last", action="store_true")
    ap.add_argument("--replay", metavar="TRACE_DIR",
                    help="train from lt-train's initial weights on its batches, lambdas and boxes "
                         "(lt-train --trace TRACE_DIR) and write each step's loss next to lt-train's "
                         "to OUT/replay.jsonl")
    ap.add_argument("--init-from", metavar="SAFETENSORS",
                    help="start from these lt-train weights (e.g. TRACE_DIR/init.safetensors) instead of _weights_init")
    a = ap.parse_args()

    if a.threads > 0:
        torch.set_num_threads(a.threads)
    random.seed(a.seed)
    np.random.seed(a.seed)
    torch.manual_seed(a.seed)
    man = json.load(open(os.path.join(a.shards, "manifest.json")))
    channels = len(man["mean"])
    xtr, ytr = load_split(a.shards, "train", channels)
    xte, yte = load_split(a.shards, "test", channels)
    C = len(man["classes"])
    counts = np.bincount(ytr.numpy(), minlength=C)
    mean = torch.tensor(man["mean"], dtype=torch.float32).view(1, -1, 1, 1)
    std = torch.tensor(man["std"], dtype=torch.float32).view(1, -1, 1, 1)
    norm = lambda u8: (u8.float() / 255.0 - mean) / std

    model = ResNet32(C, a.width, channels)
    weights_init(model, a.linear_init)
    trace = None
    if a.init_from:
        load_lt_weights(model, a.init_from)
    if a.replay:
        load_lt_weights(model, os.path.join(a.replay, "init.safetensors"))
        trace = replay_steps(a.replay)
        if len(trace) < a.epochs:
            sys.exit(f"{a.replay}: the trace holds {len(trace)} epochs, --epochs is {a.epochs}")
        os.makedirs(a.out, exist_ok=True)
        rfile = open(os.path.join(a.out, "replay.jsonl"), "w")
    opt = torch.optim.SGD(model.parameters(), lr=a.lr, momentum=0.9, weight_decay=a.wd)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=a.epochs)
    label_w = 1.0 / counts ** a.p
    label_w = torch.tensor(label_w / label_w.sum() * C, dtype=torch.float32)
    cls_w = 1.0 / counts ** a.q
    cls_w = cls_w / cls_w.sum() * C
    sample_w = torch.from_numpy(cls_w[ytr.numpy()]).double()
    n = len(ytr)
    aug_gen = torch.Generator().manual_seed(a.seed + 1)

    def batches(order):
        b = a.batch_size
        stop = n // b * b if a.drop_last else n
        return [order[i:i + b] for i in range(0, stop, b)]

    os.makedirs(a.out, exist_ok=True)
    mfile = open(os.path.join(a.out, "metrics.jsonl"), "w")
    best = 0.0
    for epoch in range(a.epochs):
        alpha = 1 - (epoch / a.epochs) ** 2
        lr = opt.param_groups[0]["lr"]
        model.train()
        t0 = time.time()
        sums = np.zeros(4)
        if trace is None:
            inst = batches(torch.randperm(n))
            # The weighted loader's iterator is re-made every epoch.
            weighted = batches(torch.multinomial(sample_w, n, replacement=True)) if a.method == "glmc" else None
        else:
            inst = trace[epoch]
        for i, idx in enumerate(inst):
            if trace is not None:
                st, b = idx, idx["x"].shape[1] // (2 if a.method == "glmc" else 1)
                if abs(st["lr"] - lr) > 1e-9 * lr or abs(st["alpha"] - (alpha if a.method == "glmc" else 1.0)) > 1e-12:
                    sys.exit(f"step {epoch}/{i}: lt-train's lr {st['lr']} / alpha {st['alpha']}, ours {lr} / {alpha}")
                y_org = st["y"][:b]
            else:
                y_org = ytr[idx]
            if a.method == "ce":
                x = norm(crop_flip(xtr[idx], a.padding, aug_gen) if trace is None else st["x"][0])
                loss = F.cross_entropy(model.fc(model.features(x)), y_org)
                sums += [loss.item(), loss.item(), 0, 0]
            else:
                if trace is None:
                    widx = weighted[i][: len(idx)]
                    y_inv = ytr[widx]
                    org1 = norm(crop_flip(xtr[idx], a.padding, aug_gen))
                    org2 = norm(crop_flip(xtr[idx], a.padding, aug_gen))
                    inv1 = norm(crop_flip(xtr[widx], a.padding, aug_gen))
                    inv2 = norm(crop_flip(xtr[widx], a.padding, aug_gen))
                else:
                    y_inv = st["y"][b:]
                    org1, inv1 = norm(st["x"][0, :b]), norm(st["x"][0, b:])
                    org2, inv2 = norm(st["x"][1, :b]), norm(st["x"][1, b:])
                oh_org = F.one_hot(y_org, C).float()
                oh_inv = F.one_hot(y_inv, C).float()
                if trace is None:
                    np.random.beta(a.beta, a.beta)  # Trainer's lam: drawn, never used
                    mix_x, cut_x, mix_y, cut_y, mix_yw, cut_yw = glmc_mixed(
                        org1, org2, inv1, inv2, oh_org, oh_inv, label_w * oh_org, label_w * oh_inv)
                else:
                    m = st["mix"]
                    mix_x, cut_x, mix_y, cut_y, mix_yw, cut_yw = glmc_mixed(
                        org1, org2, inv1, inv2, oh_org, oh_inv, label_w * oh_org, label_w * oh_inv,
                        given=(m["lambda"], (m["cut"]["y0"], m["cut"]["x0"], m["cut"]["y1"], m["cut"]["x1"])))
                o1, ocb1, z1, p1 = model(mix_x, train=True)
                o2, ocb2, z2, p2 = model(cut_x, train=True)
                con = neg_cos(p1, z2) + neg_cos(p2, z1)
                sup = soft_ce(o1, mix_y) + soft_ce(o2, cut_y)
                rb = soft_ce(ocb1, mix_yw) + soft_ce(ocb2, cut_yw)
                loss = alpha * sup + (1 - alpha) * rb + a.kappa * con
                sums += [loss.item(), sup.item(), rb.item(), con.item()]
            if trace is not None:
                ours = {"total": loss.item()}
                if a.method == "glmc":
                    ours.update(sup=sup.item(), rb=rb.item(), con=con.item())
                rfile.write(json.dumps({"epoch": epoch, "step": i, "lt": st["loss"], "harness": ours}) + "\n")
                rfile.flush()
            opt.zero_grad()
            loss.backward()
            opt.step()
        secs = time.time() - t0
        test, per_class = evaluate(model, xte, yte, norm, counts, a.method)
        sched.step()
        best = max(best, test["top1"])
        k = len(inst)
        rec = {
            "epoch": epoch, "lr": lr, "alpha": alpha if a.method == "glmc" else 1.0,
            "loss": sums[0] / k, "loss_sup": sums[1] / k,
            "loss_rb": sums[2] / k if a.method == "glmc" else None,
            "loss_con": sums[3] / k if a.method == "glmc" else None,
            "steps": k, "train_seconds": secs, "test": test, "best_top1": best,
        }
        mfile.write(json.dumps(rec) + "\n")
        mfile.flush()
        print(f"epoch {epoch + 1}/{a.epochs} loss {rec['loss']:.4f} top1 {test['top1']:.4f} "
              f"many {test['many']} medium {test['medium']} few {test['few']} ({secs:.0f}s)", flush=True)
    json.dump({"per_class": per_class, "counts": counts.tolist(), "args": vars(a)},
              open(os.path.join(a.out, "per_class.json"), "w"))


if __name__ == "__main__":
    main()
