#!/usr/bin/env python3
"""Compares training runs epoch by epoch: lt-train run directories against
reference-harness runs (tools/glmc_harness.py), both writing metrics.jsonl.

Each argument is LABEL=DIR[,DIR...] (one label per method and trainer, one
directory per seed). Prints, as Markdown:
  - the final epoch per label: mean and sample standard deviation over seeds
    of top-1, many, medium, few (in %), each seed's top-1, and best top-1;
  - a per-epoch top-1 table (mean over seeds) for every evaluated epoch;
  - with --check REF=CAND pairs: whether CAND's mean lies within REF's
    mean +- max(2 std, 2.5 points), metric by metric (the fidelity criterion
    of benches/RESULTS.md), exiting 1 when one does not.

  python3 tools/compare_runs.py h-glmc=runs/h-glmc-1,runs/h-glmc-2 lt-glmc=runs/lt-glmc-1,runs/lt-glmc-2 \\
      --check h-glmc=lt-glmc
"""
import argparse
import json
import math
import os
import sys

METRICS = ("top1", "many", "medium", "few")


def load(d):
    with open(os.path.join(d, "metrics.jsonl")) as f:
        return [json.loads(l) for l in f if l.strip()]


def stats(v):
    v = [x for x in v if x is not None]
    if not v:
        return None, None
    m = sum(v) / len(v)
    s = math.sqrt(sum((x - m) ** 2 for x in v) / (len(v) - 1)) if len(v) > 1 else 0.0
    return m, s


def fmt(m, s):
    if m is None:
        return "–"
    return f"{100 * m:.2f} ± {100 * s:.2f}"


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("runs", nargs="+", help="LABEL=DIR[,DIR...]")
    ap.add_argument("--check", nargs="*", default=[], help="REF=CAND label pairs")
    ap.add_argument("--tolerance", type=float, default=2.5, help="minimum band half-width in points")
    a = ap.parse_args()

    runs = {}
    for spec in a.runs:
        label, dirs = spec.split("=", 1)
        runs[label] = [load(d) for d in dirs.split(",")]

    print("| run | seeds | epochs | top-1 | many | medium | few | top-1 per seed | best top-1 |")
    print("|---|---|---|---|---|---|---|---|---|")
    final = {}
    for label, rs in runs.items():
        last = [r[-1]["test"] for r in rs]
        final[label] = {k: stats([t[k] for t in last]) for k in METRICS}
        best = stats([max(e["test"]["top1"] for e in r if e.get("test")) for r in rs])
        per_seed = ", ".join(f"{100 * t['top1']:.2f}" for t in last)
        epochs = ",".join(str(len(r)) for r in rs)
        print(f"| {label} | {len(rs)} | {epochs} | " + " | ".join(fmt(*final[label][k]) for k in METRICS)
              + f" | {per_seed} | {fmt(*best)} |")

    print("\nTop-1 (%) per epoch, mean over seeds:\n")
    labels = list(runs)
    print("| epoch | " + " | ".join(labels) + " |")
    print("|---|" + "---|" * len(labels))
    n = max(len(r) for rs in runs.values() for r in rs)
    for e in range(n):
        cells = []
        for label in labels:
            v = [r[e]["test"]["top1"] for r in runs[label] if len(r) > e and r[e].get("test")]
            m, _ = stats(v)
            cells.append("–" if m is None else f"{100 * m:.2f}")
        print(f"| {e + 1} | " + " | ".join(cells) + " |")

    ok = True
    if a.check:
        print()
        print("| reference | candidate | metric | reference band | candidate mean | within |")
        print("|---|---|---|---|---|---|")
    for pair in a.check:
        ref, cand = pair.split("=", 1)
        for k in METRICS:
            (rm, rs), (cm, _) = final[ref][k], final[cand][k]
            if rm is None or cm is None:
                continue
            half = max(2 * rs, a.tolerance / 100)
            within = abs(cm - rm) <= half
            ok &= within
            print(f"| {ref} | {cand} | {k} | {100 * (rm - half):.2f}–{100 * (rm + half):.2f} | {100 * cm:.2f} | "
                  f"{'yes' if within else '**no**'} |")
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
