#!/usr/bin/env python3
"""Golden fixtures for lt-glmc, written in plain PyTorch from the GLMC equations.

GLMC: Du et al., "Global and Local Mixture Consistency Cumulative Learning for
Long-tailed Visual Recognitions", CVPR 2023 (arXiv:2305.08661).

This script is deliberately NOT a port of the Rust code: it implements the
GLMC equations (as the authors' code computes them) directly with
torch.nn / torch.nn.functional / torch.optim and writes what they give for fixed inputs, a fixed lambda and a
fixed CutMix box. The Rust tests (crates/lt-glmc/tests/golden.rs) load the
committed fixtures, so they need no Python.

Outputs (in --out, default crates/lt-glmc/tests/fixtures):
  glmc_golden.safetensors   tensors (f64 unless noted)
  glmc_golden.json          scalars: config, losses, metrics, schedules

Run:  . tools/env.sh && $LT_GLMC_PYTHON tools/glmc_reference.py
"""
import argparse
import copy
import json
import math
import os
import struct

import sys

import torch
import torch.nn as nn
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from glmc_gpu_reference import ResNet32, soft_ce  # noqa: E402

# ----------------------------------------------------------------------------
# safetensors writer (the format is tiny; the venv has no `safetensors` package)
# ----------------------------------------------------------------------------
_DT = {
    torch.float64: "F64",
    torch.float32: "F32",
    torch.int64: "I64",
    torch.uint8: "U8",
}


def save_safetensors(path, tensors):
    header, blobs, offset = {}, [], 0
    for k in sorted(tensors):
        t = tensors[k].detach().cpu().contiguous()
        b = t.numpy().tobytes()
        header[k] = {"dtype": _DT[t.dtype], "shape": list(t.shape), "data_offsets": [offset, offset + len(b)]}
        offset += len(b)
        blobs.append(b)
    hb = json.dumps(header, separators=(",", ":")).encode()
    hb += b" " * ((8 - len(hb) % 8) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(hb)))
        f.write(hb)
        for b in blobs:
            f.write(b)


# ----------------------------------------------------------------------------
# ResNet-32 for CIFAR as in the authors' code (resnet32_fe): BasicBlocks
# [5, 5, 5], option-A shortcut LambdaLayer(lambda x: F.pad(x[:, :, ::2, ::2],
# (0, 0, 0, 0, planes//4, planes//4), "constant", 0)). One definition, in
# glmc_gpu_reference.py (which the GPU kit ships on its own).
# ----------------------------------------------------------------------------
class GlmcNet(nn.Module):
    """Encoder f, conventional head g, re-balanced head g_cb, projection P, predictor Q."""

    def __init__(self, width, classes, d):
        super().__init__()
        self.encoder = ResNet32(width)
        h = self.encoder.out_dim
        self.head = nn.Linear(h, classes)
        self.head_cb = nn.Linear(h, classes)
        self.proj = nn.Linear(h, d)
        self.pred = nn.Linear(d, d)

    def forward(self, x):
        h = self.encoder(x)
        z = self.proj(h)
        u = self.pred(z)
        return {"feat": h, "logits": self.head(h), "logits_cb": self.head_cb(h), "z": z, "u": u}


def state(model):
    return {k: v.detach().clone() for k, v in model.state_dict().items() if not k.endswith("num_batches_tracked")}


# ----------------------------------------------------------------------------
# The GLMC equations
# ----------------------------------------------------------------------------
# soft_ce(logits, t) = CE(logits, t) = -mean_i sum_c t_ic log softmax_ic
# (glmc_gpu_reference.soft_ce).


def glmc_losses(model, xg, xl, y, yt, alpha, kappa, log_counts=None, reweight=True, consistency=True):
    og, ol = model(xg), model(xl)
    # L_sup = CE(g(h_g), y) + CE(g(h_l), y)
    l_sup = soft_ce(og["logits"], y) + soft_ce(ol["logits"], y)
    if log_counts is None:
        # L_rb = CE(g_cb(h_g), y~) + CE(g_cb(h_l), y~)
        l_rb = soft_ce(og["logits_cb"], yt) + soft_ce(ol["logits_cb"], yt)
    else:
        # Balanced Softmax: logits_cb + log n_c, with the plain mixed labels.
        l_rb = soft_ce(og["logits_cb"] + log_counts, y) + soft_ce(ol["logits_cb"] + log_counts, y)
    # L_con = -cos(u_g, sg(z_l)) - cos(u_l, sg(z_g)), each a mean over the batch
    l_con = -F.cosine_similarity(og["u"], ol["z"].detach(), dim=1).mean() - F.cosine_similarity(
        ol["u"], og["z"].detach(), dim=1
    ).mean()
    if not reweight:
        alpha = 1.0
    total = alpha * l_sup
    if reweight:
        total = total + (1 - alpha) * l_rb
    if consistency:
        total = total + kappa * l_con
    return {"sup": l_sup, "rb": l_rb, "con": l_con, "total": total}


def main():
    # Everything in f64 (the golden tolerance is 1e-5 relative); set here,
    # not at import, so that importing this module changes no global state.
    torch.set_default_dtype(torch.float64)
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", default=os.path.join(os.path.dirname(__file__), "..", "crates", "lt-glmc", "tests", "fixtures"))
    args = ap.parse_args()
    os.makedirs(args.out, exist_ok=True)

    torch.manual_seed(20230515)
    C, B, H, W, width, d = 5, 4, 8, 8, 4, 8
    counts = [100, 40, 15, 6, 3]
    p, kappa, epoch, epochs = 1.2, 2.0, 3, 10
    lam, cy, cx = 0.7, 3, 6
    lr, momentum, wd = 0.1, 0.9, 5e-3
    mean, std = [0.4914, 0.4822, 0.4465], [0.2470, 0.2435, 0.2616]

    out = {}
    u1, u2, w1, w2 = (torch.randint(0, 256, (B, 3, H, W), dtype=torch.uint8) for _ in range(4))
    yu = torch.tensor([0, 1, 0, 2])
    yw = torch.tensor([3, 4, 2, 4])
    out.update({"in.u1": u1, "in.u2": u2, "in.w1": w1, "in.w2": w2, "in.y_u": yu, "in.y_w": yw})

    model = GlmcNet(width, C, d)
    # Non-trivial BatchNorm affine parameters and running statistics so that
    # a swapped weight/bias or a wrong eval path is visible.
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.weight.uniform_(0.5, 1.5)
                m.bias.normal_(0, 0.1)
                m.running_mean.normal_(0, 0.1)
                m.running_var.uniform_(0.5, 1.5)
    init = state(model)
    for k, v in init.items():
        out["init." + k] = v

    # Normalization: x = (u8 / 255 - mean_c) / std_c
    m_t = torch.tensor(mean).view(1, 3, 1, 1)
    s_t = torch.tensor(std).view(1, 3, 1, 1)
    norm = lambda x: (x.double() / 255.0 - m_t) / s_t
    nu1, nu2, nw1, nw2 = norm(u1), norm(u2), norm(w1), norm(w2)
    out["norm.u1"] = nu1

    # Global MixUp: X_g = lam * U1 + (1 - lam) * W1
    xg = lam * nu1 + (1 - lam) * nw1
    # Local CutMix: X_l = U2 with one box from W2, the authors' rand_bbox:
    # cut = ceil(side * sqrt(1 - lam)) per axis, box [c - cut // 2, c + cut // 2)
    # clipped to the image (one pixel short of cut when cut is odd).
    sh, sw = math.ceil(H * math.sqrt(1 - lam)), math.ceil(W * math.sqrt(1 - lam))
    y0, y1 = max(cy - sh // 2, 0), min(cy + sh // 2, H)
    x0, x1 = max(cx - sw // 2, 0), min(cx + sw // 2, W)
    xl = nu2.clone()
    xl[:, :, y0:y1, x0:x1] = nw2[:, :, y0:y1, x0:x1]
    out["mix.x_g"], out["mix.x_l"] = xg, xl

    # y = lam onehot(U) + (1 - lam) onehot(W)
    oh_u, oh_w = F.one_hot(yu, C).double(), F.one_hot(yw, C).double()
    y = lam * oh_u + (1 - lam) * oh_w
    # v_c = n_c^-p / sum_k n_k^-p * C ; y~ = lam v_yU onehot(U) + (1 - lam) v_yW onehot(W)
    n = torch.tensor(counts, dtype=torch.float64)
    v = n.pow(-p) / n.pow(-p).sum() * C
    yt = lam * v[yu].unsqueeze(1) * oh_u + (1 - lam) * v[yw].unsqueeze(1) * oh_w
    out["label.y"], out["label.y_tilde"], out["label.v"] = y, yt, v

    alpha = 1 - (epoch / epochs) ** 2
    log_counts = n.log()

    # Variants on copies of the initial model (train-mode BN updates running stats).
    variants = {}
    for name, kw in {
        "balanced_softmax": {"log_counts": log_counts},
        "no_reweight": {"reweight": False},
        "no_consistency": {"consistency": False},
    }.items():
        mcopy = copy.deepcopy(model)
        variants[name] = {k: float(t.detach()) for k, t in glmc_losses(mcopy, xg, xl, y, yt, alpha, kappa, **kw).items()}
    mcopy = copy.deepcopy(model)
    variants["cross_entropy"] = {"total": float(F.cross_entropy(mcopy(nu1)["logits"], yu))}

    # Eval-mode outputs (running statistics) on the normalized U1.
    mcopy = copy.deepcopy(model).eval()
    with torch.no_grad():
        ev = mcopy(nu1)
    out["eval.logits_cb"], out["eval.feat"] = ev["logits_cb"], ev["feat"]

    # Two SGD steps: torch.optim.SGD(momentum 0.9, weight_decay) is the reference:
    #   d_p = g + wd p ; buf = mu buf + d_p (buf = d_p on the first step) ; p -= lr buf
    opt = torch.optim.SGD(model.parameters(), lr=lr, momentum=momentum, weight_decay=wd)
    losses = []
    for step in range(2):
        opt.zero_grad(set_to_none=True)
        ls = glmc_losses(model, xg, xl, y, yt, alpha, kappa)
        ls["total"].backward()
        losses.append({k: float(t) for k, t in ls.items()})
        if step == 0:
            for name, prm in model.named_parameters():
                if name.split(".")[0] in ("head", "head_cb", "proj", "pred") or name == "encoder.conv1.weight":
                    out["grad." + name] = prm.grad.detach().clone()
        opt.step()
        if step == 0:
            for k, t in state(model).items():
                out["step1." + k] = t
    for k, t in state(model).items():
        out["step2." + k] = t
    for name, prm in model.named_parameters():
        out["momentum." + name] = opt.state[prm]["momentum_buffer"].detach().clone()

    # ------------------------------------------------------------------
    # MaxNorm via PGD (LTWB / GLMC MaxNorm_via_PGD): per row r of W,
    # thresh = min_r |W_r| + t (max_r |W_r| - min_r |W_r|) fixed at set-up;
    # rows with |W_r| > thresh are scaled to thresh / |W_r|.
    # ------------------------------------------------------------------
    w0 = torch.randn(7, 6) * torch.linspace(0.2, 3.0, 7).unsqueeze(1)
    t_ratio = 0.1
    norms0 = w0.norm(dim=1)
    thresh = norms0.min() + t_ratio * (norms0.max() - norms0.min())
    w1m = w0 * 1.3 + 0.05
    nrm = w1m.norm(dim=1, keepdim=True)
    scale = torch.where(nrm > thresh, thresh / nrm, torch.ones_like(nrm))
    out["maxnorm.w0"], out["maxnorm.w1"], out["maxnorm.projected"] = w0, w1m, w1m * scale

    # ------------------------------------------------------------------
    # Evaluation metrics on seeded logits: top-1, top-5, per-class accuracy,
    # many/medium/few (> 100, 21..100, <= 20 training images, the authors' Trainer.validate; group accuracy is
    # the mean of its classes' accuracies) and 15-bin ECE (Guo et al. 2017).
    # ------------------------------------------------------------------
    nc, ns = 7, 60
    ev_counts = [500, 150, 101, 100, 20, 19, 3]
    logits = torch.randn(ns, nc) * 2.0
    labels = torch.randint(0, nc, (ns,))
    labels[:nc] = torch.arange(nc)
    logits[torch.arange(0, ns, 3), labels[::3]] += 3.0  # make it better than chance
    out["metrics.logits"], out["metrics.labels"] = logits, labels
    pred = logits.argmax(1)
    top5 = logits.topk(5, dim=1).indices
    correct = (pred == labels).double()
    per_class = [float(correct[labels == c].mean()) for c in range(nc)]
    groups = {"many": [c for c in range(nc) if ev_counts[c] > 100],
              "medium": [c for c in range(nc) if 20 < ev_counts[c] <= 100],
              "few": [c for c in range(nc) if ev_counts[c] <= 20]}
    conf = F.softmax(logits, 1).max(1).values
    ece = torch.zeros(())
    edges = torch.linspace(0, 1, 16)
    for lo, hi in zip(edges[:-1], edges[1:]):
        in_bin = (conf > lo) & (conf <= hi)
        prop = in_bin.double().mean()
        if prop > 0:
            ece += (correct[in_bin].mean() - conf[in_bin].mean()).abs() * prop
    metrics = {
        "counts": ev_counts,
        "top1": float(correct.mean()),
        "top5": float((top5 == labels.unsqueeze(1)).any(1).double().mean()),
        "per_class": per_class,
        "many": sum(per_class[c] for c in groups["many"]) / len(groups["many"]),
        "medium": sum(per_class[c] for c in groups["medium"]) / len(groups["medium"]),
        "few": sum(per_class[c] for c in groups["few"]) / len(groups["few"]),
        "ece": float(ece),
    }

    # ------------------------------------------------------------------
    # Schedules, stepped per epoch by torch.optim.lr_scheduler.
    # ------------------------------------------------------------------
    def lrs(make, epochs_):
        prm = torch.nn.Parameter(torch.zeros(1))
        o = torch.optim.SGD([prm], lr=0.1)
        s = make(o)
        got = []
        for _ in range(epochs_):
            got.append(o.param_groups[0]["lr"])
            o.step()
            s.step()
        return got

    cos = lrs(lambda o: torch.optim.lr_scheduler.CosineAnnealingLR(o, T_max=20), 20)
    warm = lrs(
        lambda o: torch.optim.lr_scheduler.SequentialLR(
            o,
            [
                torch.optim.lr_scheduler.LinearLR(o, start_factor=0.1, end_factor=1.0, total_iters=9),
                torch.optim.lr_scheduler.CosineAnnealingLR(o, T_max=20),
            ],
            milestones=[10],
        ),
        30,
    )

    cfg = {
        "classes": C, "batch": B, "height": H, "width_px": W, "resnet_width": width, "proj_dim": d,
        "counts": counts, "p": p, "kappa": kappa, "epoch": epoch, "epochs": epochs, "alpha": alpha,
        "lambda": lam, "centre": [cy, cx], "box": [y0, y1, x0, x1],
        "lr": lr, "momentum": momentum, "weight_decay": wd, "mean": mean, "std": std,
    }
    doc = {
        "generator": "tools/glmc_reference.py",
        "torch": torch.__version__,
        "config": cfg,
        "losses_step1": losses[0],
        "losses_step2": losses[1],
        "variants": variants,
        "maxnorm": {"thresh_ratio": t_ratio, "thresh": float(thresh)},
        "metrics": metrics,
        "schedule": {"base_lr": 0.1, "cosine_epochs": 20, "cosine": cos,
                     "warmup_epochs": 10, "warmup_total_epochs": 30, "warmup_cosine": warm},
    }
    save_safetensors(os.path.join(args.out, "glmc_golden.safetensors"), out)
    with open(os.path.join(args.out, "glmc_golden.json"), "w") as f:
        json.dump(doc, f, indent=1)
    print(json.dumps({"losses_step1": losses[0], "variants": variants, "box": cfg["box"]}, indent=1))


if __name__ == "__main__":
    main()
