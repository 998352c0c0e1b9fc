#!/usr/bin/env python3
"""The GLMC training step of `lt-bench gpu`, written in plain PyTorch.

Same model (ResNet-32 / torchvision-layout ResNet-50 / ResNeXt-50 32x4d with
GLMC's four heads), batch, input, precision and memory format as
crates/lt-bench/src/glmc.rs, doing the same work per step:

  uint8 [2 views, 2B, C, H, W] on the device -> channels-last (optional)
  -> normalize -> MixUp (X_g) + CutMix (X_l) -> two forwards (fp16 autocast
  for amp) -> L_sup + L_rb + L_con -> backward (GradScaler for amp) -> SGD
  -> read the loss back (a synchronisation, as lt-train and GradScaler do).

Precision modes set the same flags as lt_glmc::amp:
  fp32: torch.backends.cuda.matmul.allow_tf32 = cudnn.allow_tf32 = False
  tf32: both True
  amp:  both True + torch.autocast("cuda", torch.float16) + torch.amp.GradScaler
Channels-last: model.to(memory_format=torch.channels_last) and the input
batch via .contiguous(memory_format=torch.channels_last).

Images/s count 2B per step (the network trains on X_g and X_l, B each; the
loader supplies 2B samples). The summary line has the format of
`lt-bench gpu`, with [PyTorch] in place of [lt-glmc]; a `RESULT {json}` line
follows. Self-contained (no torchvision), so it runs wherever torch does:

  python3 tools/glmc_gpu_reference.py --model resnext50 --batch-size 64 --precision amp --memory-format nhwc
  python3 tools/glmc_gpu_reference.py --device cpu --model resnet32 --width 8 --batch-size 8 --steps 3 --warmup 1
"""
import argparse
import json
import math
import random
import sys
import time

import torch
import torch.nn as nn
import torch.nn.functional as F


# ---------------------------------------------------------------------------
# Models (layouts of crates/lt-glmc/src/model.rs)
# ---------------------------------------------------------------------------
class BasicBlock(nn.Module):
    def __init__(self, cin, planes, stride):
        super().__init__()
        self.conv1 = nn.Conv2d(cin, planes, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.option_a = stride != 1 or cin != planes
        self.planes, self.stride = planes, stride

    def forward(self, x):
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        if self.option_a:
            p = self.planes
            sc = F.pad(x[:, :, :: self.stride, :: self.stride], (0, 0, 0, 0, p // 4, p // 4), "constant", 0)
        else:
            sc = x
        return F.relu(out + sc)


class ResNet32(nn.Module):
    def __init__(self, width, cin=3):
        super().__init__()
        self.conv1 = nn.Conv2d(cin, width, 3, 1, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(width)
        layers, c = [], width
        for planes, stride in [(width, 1), (2 * width, 2), (4 * width, 2)]:
            blocks = []
            for j in range(5):
                blocks.append(BasicBlock(c, planes, stride if j == 0 else 1))
                c = planes
            layers.append(nn.Sequential(*blocks))
        self.layer1, self.layer2, self.layer3 = layers
        self.out_dim = 4 * width

    def forward(self, x):
        x = F.relu(self.bn1(self.conv1(x)))
        x = self.layer3(self.layer2(self.layer1(x)))
        return F.adaptive_avg_pool2d(x, 1).flatten(1)


class Bottleneck(nn.Module):
    # torchvision v1.5: the stride sits on the 3x3 convolution.
    def __init__(self, cin, planes, stride, groups, base_width):
        super().__init__()
        width = int(planes * (base_width / 64.0)) * groups
        cout = planes * 4
        self.conv1 = nn.Conv2d(cin, width, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(width)
        self.conv2 = nn.Conv2d(width, width, 3, stride, 1, groups=groups, bias=False)
        self.bn2 = nn.BatchNorm2d(width)
        self.conv3 = nn.Conv2d(width, cout, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(cout)
        self.downsample = None
        if stride != 1 or cin != cout:
            self.downsample = nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout))

    def forward(self, x):
        out = F.relu(self.bn1(self.conv1(x)))
        out = F.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        sc = x if self.downsample is None else self.downsample(x)
        return F.relu(out + sc)


class ResNetImageNet(nn.Module):
    def __init__(self, groups, base_width, cin=3):
        super().__init__()
        self.conv1 = nn.Conv2d(cin, 64, 7, 2, 3, bias=False)
        self.bn1 = nn.BatchNorm2d(64)
        c, layers = 64, []
        for n, planes, stride in [(3, 64, 1), (4, 128, 2), (6, 256, 2), (3, 512, 2)]:
            blocks = []
            for j in range(n):
                blocks.append(Bottleneck(c, planes, stride if j == 0 else 1, groups, base_width))
                c = planes * 4
            layers.append(nn.Sequential(*blocks))
        self.layer1, self.layer2, self.layer3, self.layer4 = layers
        self.out_dim = 2048

    def forward(self, x):
        x = F.max_pool2d(F.relu(self.bn1(self.conv1(x))), 3, 2, 1)
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        return F.adaptive_avg_pool2d(x, 1).flatten(1)


class GlmcNet(nn.Module):
    def __init__(self, encoder, classes, d):
        super().__init__()
        self.encoder = encoder
        h = encoder.out_dim
        self.head = nn.Linear(h, classes)
        self.head_cb = nn.Linear(h, classes)
        self.proj = nn.Linear(h, d)
        self.pred = nn.Linear(d, d)

    def forward(self, x):
        h = self.encoder(x)
        z = self.proj(h)
        return self.head(h), self.head_cb(h), z, self.pred(z)


def soft_ce(logits, t):
    return -(t * F.log_softmax(logits, dim=1)).sum(dim=1).mean()


def glmc_total(model, xg, xl, y, yt, alpha, kappa):
    lg, lgcb, zg, ug = model(xg)
    ll, llcb, zl, ul = model(xl)
    l_sup = soft_ce(lg, y) + soft_ce(ll, y)
    l_rb = soft_ce(lgcb, yt) + soft_ce(llcb, yt)
    l_con = -F.cosine_similarity(ug, zl.detach(), dim=1).mean() - F.cosine_similarity(ul, zg.detach(), dim=1).mean()
    return alpha * l_sup + (1 - alpha) * l_rb + kappa * l_con


def exponential_counts(classes, n_max, imb):
    if classes == 1:
        return [n_max]
    return [max(1, math.floor(n_max * imb ** (-c / (classes - 1)))) for c in range(classes)]


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="resnet32", choices=["resnet32", "resnet50", "resnext50"])
    ap.add_argument("--width", type=int, default=64, help="ResNet-32 base width")
    ap.add_argument("--batch-size", type=int, default=64, help="B (a step trains on 2B images)")
    ap.add_argument("--size", type=int, default=None, help="input side (32 for resnet32, 224 otherwise)")
    ap.add_argument("--classes", type=int, default=None, help="100 for resnet32, 1000 otherwise")
    ap.add_argument("--precision", default="fp32", choices=["fp32", "tf32", "amp"])
    ap.add_argument("--memory-format", default="nchw", choices=["nchw", "nhwc"])
    ap.add_argument("--cudnn-benchmark", default="true", choices=["true", "false"])
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--warmup", type=int, default=5)
    ap.add_argument("--device", default="auto", help="cpu | cuda | cuda:N | auto")
    ap.add_argument("--threads", type=int, default=None, help="intra-op threads (CPU)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--json", default=None, help="append the JSON line to this file")
    a = ap.parse_args()

    dev = a.device
    if dev == "auto":
        dev = "cuda" if torch.cuda.is_available() else "cpu"
    device = torch.device(dev)
    if a.threads:
        torch.set_num_threads(a.threads)
    if a.precision == "amp" and device.type != "cuda":
        print(f"glmc_gpu_reference: error: precision amp (fp16 autocast) needs a CUDA device, got {device}", file=sys.stderr)
        sys.exit(2)
    tf32 = a.precision != "fp32"
    torch.backends.cuda.matmul.allow_tf32 = tf32
    torch.backends.cudnn.allow_tf32 = tf32
    torch.backends.cudnn.benchmark = a.cudnn_benchmark == "true"

    small = a.model == "resnet32"
    size = a.size or (32 if small else 224)
    classes = a.classes or (100 if small else 1000)
    B = a.batch_size
    torch.manual_seed(a.seed)
    if small:
        enc, d, name = ResNet32(a.width), 128, ("resnet32" if a.width == 64 else f"resnet32-w{a.width}")
        lr, wd, kappa, p = 0.01, 5e-3, 1.0, 1.2
    else:
        enc = ResNetImageNet(1, 64) if a.model == "resnet50" else ResNetImageNet(32, 4)
        d, name = 256, ("resnet50" if a.model == "resnet50" else "resnext50_32x4d")
        lr, wd, kappa, p = 0.1, 2e-4, 10.0, 1.0
    model = GlmcNet(enc, classes, d).to(device)
    cl = a.memory_format == "nhwc"
    if cl:
        model = model.to(memory_format=torch.channels_last)
    model.train()
    opt = torch.optim.SGD(model.parameters(), lr=lr, momentum=0.9, weight_decay=wd)
    amp = a.precision == "amp"
    scaler = torch.amp.GradScaler("cuda", init_scale=65536.0, growth_factor=2.0, backoff_factor=0.5,
                                  growth_interval=2000, enabled=amp)

    counts = exponential_counts(classes, 5000 if small else 1280, 100.0)
    n = torch.tensor(counts, dtype=torch.float32, device=device)
    v = n.pow(-p) / n.pow(-p).sum() * classes
    mean = torch.tensor([0.485, 0.456, 0.406], device=device).view(1, 3, 1, 1)
    std = torch.tensor([0.229, 0.224, 0.225], device=device).view(1, 3, 1, 1)
    x = torch.randint(0, 256, (2, 2 * B, 3, size, size), dtype=torch.uint8, device=device)
    y_all = torch.randint(0, classes, (2 * B,), device=device)
    rnd = random.Random(a.seed)
    alpha = 0.9

    def sync():
        if device.type == "cuda":
            torch.cuda.synchronize(device)

    times, skipped, last, t_start = [], 0, float("nan"), None
    for i in range(a.warmup + a.steps):
        if i == a.warmup:
            sync()
            t_start = time.perf_counter()
        t0 = time.perf_counter()
        views = []
        for k in range(2):
            xk = x[k]
            if cl:
                xk = xk.contiguous(memory_format=torch.channels_last)
            views.append((xk.float() / 255.0 - mean) / std)
        u1, w1 = views[0][:B], views[0][B:]
        u2, w2 = views[1][:B], views[1][B:]
        yu, yw = y_all[:B], y_all[B:]
        lam = rnd.betavariate(1.0, 1.0)
        cy, cx = rnd.randrange(size), rnd.randrange(size)
        s = math.ceil(size * math.sqrt(1 - lam))
        y0, y1 = min(max(cy - s // 2, 0), size), min(max(cy - s // 2 + s, 0), size)
        x0, x1 = min(max(cx - s // 2, 0), size), min(max(cx - s // 2 + s, 0), size)
        xg = lam * u1 + (1 - lam) * w1
        xl = u2.clone()
        xl[:, :, y0:y1, x0:x1] = w2[:, :, y0:y1, x0:x1]
        oh_u, oh_w = F.one_hot(yu, classes).float(), F.one_hot(yw, classes).float()
        y = lam * oh_u + (1 - lam) * oh_w
        yt = lam * v[yu].unsqueeze(1) * oh_u + (1 - lam) * v[yw].unsqueeze(1) * oh_w
        with torch.autocast("cuda", dtype=torch.float16, enabled=amp):
            total = glmc_total(model, xg, xl, y, yt, alpha, kappa)
        opt.zero_grad(set_to_none=False)
        if amp:
            before = scaler.get_scale()
            scaler.scale(total).backward()
            scaler.step(opt)
            scaler.update()
            if i >= a.warmup and scaler.get_scale() < before:
                skipped += 1
        else:
            total.backward()
            opt.step()
        last = float(total.detach())  # read-back: synchronises, as lt-bench does
        if not amp and not math.isfinite(last):
            sys.exit(f"non-finite loss {last} at step {i}")
        sync()
        if i >= a.warmup:
            times.append((time.perf_counter() - t0) * 1e3)
    seconds = time.perf_counter() - t_start
    st = sorted(times)
    per_step = 2 * B
    r = {
        "tool": "glmc_gpu_reference.py", "impl": "PyTorch", "torch": torch.__version__,
        "device": str(device) if device.type == "cpu" else f"cuda:{device.index or 0}",
        "device_name": torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu",
        "model": name, "batch_size": B, "images_per_step": per_step, "image_size": size, "classes": classes,
        "precision": a.precision, "memory_format": a.memory_format, "cudnn_benchmark": a.cudnn_benchmark == "true",
        "warmup": a.warmup, "images_per_s": a.steps * per_step / seconds, "steps_per_s": a.steps / seconds,
        "steps": a.steps, "seconds": seconds, "step_ms_median": st[len(st) // 2],
        "step_ms_mean": sum(st) / len(st), "step_ms_min": st[0], "skipped_steps": skipped,
        "loss_scale": scaler.get_scale() if amp else None, "last_loss": last, "torch_threads": torch.get_num_threads(),
    }
    print(f"GLMC step [PyTorch] {name} B={B} ({per_step} img/step) {size}px {a.precision} {a.memory_format} on "
          f"{r['device']}: {r['images_per_s']:.1f} images/s, step median {r['step_ms_median']:.2f} ms "
          f"(mean {r['step_ms_mean']:.2f}, min {r['step_ms_min']:.2f}), {a.steps} steps after {a.warmup} warm-up, "
          f"{skipped} skipped")
    line = json.dumps(r)
    print("RESULT " + line)
    if a.json:
        with open(a.json, "a") as f:
            f.write(line + "\n")


if __name__ == "__main__":
    main()
