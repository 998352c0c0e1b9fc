#!/usr/bin/env python3
"""Time one GLMC training step in PyTorch and in lt-glmc, side by side.

Same model (ResNet-32 width 16, d = 128, 10 classes), batch (64 x 3 x 32 x 32
uint8 views, normalized after the "transfer"), mixing, losses and SGD as
crates/lt-bench/examples/step_bench.rs. Both run on the CPU with the same
number of intra-op threads; the ratio lt-glmc / PyTorch is the figure.

  . tools/env.sh
  cargo build --release -p lt-bench --example step_bench
  $LT_GLMC_PYTHON tools/glmc_step_bench.py [--steps 20] [--warmup 3] [--threads N] [--rounds 3] [--system-malloc]

The implementations alternate round by round (a fresh lt-glmc process each
round) and the ratio compares medians over all timed steps.
"""
import argparse
import json
import math
import os
import random
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(__file__))
import glmc_reference as ref  # noqa: E402

import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402



def bench_torch(steps, warmup, device):
    torch.manual_seed(0)
    B, C, HW = 64, 10, 32
    model = ref.GlmcNet(16, C, 128).to(device)
    opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9, weight_decay=5e-3)
    counts = [math.floor(5000 * 100.0 ** (-c / (C - 1))) for c in range(C)]
    n = torch.tensor(counts, dtype=torch.float32, device=device)
    v = n.pow(-1.2) / n.pow(-1.2).sum() * C
    mean = torch.tensor([0.4914, 0.4822, 0.4465], device=device).view(1, 3, 1, 1)
    std = torch.tensor([0.2470, 0.2435, 0.2616], device=device).view(1, 3, 1, 1)
    u8s = [torch.randint(0, 256, (B, 3, HW, HW), dtype=torch.uint8) for _ in range(4)]
    yu_c, yw_c = torch.randint(0, C, (B,)), torch.randint(0, C, (B,))
    rnd = random.Random(0)
    times = []
    for i in range(warmup + steps):
        t0 = time.perf_counter()
        u1, u2, w1, w2 = [((x.to(device).float() / 255.0) - mean) / std for x in u8s]
        yu, yw = yu_c.to(device), yw_c.to(device)
        lam = rnd.betavariate(1.0, 1.0)
        cy, cx = rnd.randrange(HW), rnd.randrange(HW)
        s = math.ceil(HW * math.sqrt(1 - lam))
        y0, y1 = max(cy - s // 2, 0), min(cy - s // 2 + s, HW)
        x0, x1 = max(cx - s // 2, 0), min(cx - s // 2 + s, HW)
        xg = lam * u1 + (1 - lam) * w1
        xl = u2.clone()
        xl[:, :, y0:y1, x0:x1] = w2[:, :, y0:y1, x0:x1]
        oh_u, oh_w = F.one_hot(yu, C).float(), F.one_hot(yw, C).float()
        y = lam * oh_u + (1 - lam) * oh_w
        yt = lam * v[yu].unsqueeze(1) * oh_u + (1 - lam) * v[yw].unsqueeze(1) * oh_w
        ls = ref.glmc_losses(model, xg, xl, y, yt, 0.9, 1.0)
        opt.zero_grad()
        ls["total"].backward()
        opt.step()
        assert math.isfinite(float(ls["total"]))
        if device.type == "cuda":
            torch.cuda.synchronize()
        if i >= warmup:
            times.append(time.perf_counter() - t0)
    times.sort()
    return {"impl": "PyTorch (python)", "device": str(device), "threads": torch.get_num_threads(), "steps": steps,
            "mean_s": sum(times) / len(times), "median_s": times[len(times) // 2], "min_s": times[0], "times_s": times}


def median(xs):
    xs = sorted(xs)
    return xs[len(xs) // 2]

def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--warmup", type=int, default=3)
    ap.add_argument("--threads", type=int, default=torch.get_num_threads())
    ap.add_argument("--rounds", type=int, default=3, help="alternating rounds of each implementation")
    ap.add_argument("--system-malloc", action="store_true",
                    help="also time lt-glmc with glibc's default malloc settings (LT_GLMC_MALLOC=system)")
    ap.add_argument("--cuda", action="store_true")
    ap.add_argument("--rust-bin", default=os.path.join(os.path.dirname(__file__), "..", "target", "release", "examples", "step_bench"))
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    device = torch.device("cuda" if args.cuda else "cpu")

    cmd = [args.rust_bin, str(args.steps), str(args.warmup), str(args.threads)] + (["--cuda"] if args.cuda else [])

    def rust(system_malloc):
        env = dict(os.environ, LT_GLMC_MALLOC="system") if system_malloc else None
        out = subprocess.run(cmd, check=True, capture_output=True, text=True, env=env).stdout
        return json.loads(out.strip().splitlines()[-1])

    # Alternate the implementations round by round, so that drift in machine
    # load hits all of them alike; compare medians over every timed step.
    runs = {"torch": [], "rust": [], "rust_system_malloc": []}
    for _ in range(args.rounds):
        runs["torch"].append(bench_torch(args.steps, args.warmup, device))
        runs["rust"].append(rust(False))
        if args.system_malloc:
            runs["rust_system_malloc"].append(rust(True))
    for rs in runs.values():
        for r in rs:
            print(json.dumps({k: v for k, v in r.items() if k != "times_s"}))
    med = {k: median([t for r in rs for t in r["times_s"]]) for k, rs in runs.items() if rs}
    print(f"\nGLMC step, ResNet-32 w16, batch 64, 32x32, {args.threads} threads, {device}, "
          f"{args.rounds} alternating rounds of {args.steps} steps:")
    labels = {"torch": "PyTorch", "rust": "lt-glmc", "rust_system_malloc": "lt-glmc, LT_GLMC_MALLOC=system"}
    for k, m in med.items():
        per_round = " ".join(f"{r['median_s'] * 1e3:.1f}" for r in runs[k])
        print(f"  {labels[k]:<32} median {m * 1e3:8.1f} ms   (round medians: {per_round})")
    for k in ("rust", "rust_system_malloc"):
        if k in med:
            print(f"  ratio {labels[k]} / PyTorch (median): {med[k] / med['torch']:.3f}")
    summary = {"threads": args.threads, "device": str(device), "rounds": args.rounds, "steps": args.steps,
               "median_ms": {k: m * 1e3 for k, m in med.items()}, "ratio": med["rust"] / med["torch"]}
    print("RESULT " + json.dumps(summary))

if __name__ == "__main__":
    main()
