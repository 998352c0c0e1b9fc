#!/usr/bin/env bash
# Data-parallel scaling on this machine (issue 12): `lt-bench dist` alone
# (world 1) and under torchrun (world 2), one libtorch thread per rank
# (OMP_NUM_THREADS=1, --torch-threads 1), gloo on loopback, the same
# per-rank batch; then the step-time ratio world 2 / world 1 of this run.
# At equal per-rank batch, perfect scaling is a ratio of 1.0 (each rank has
# its own core and does the same work); the excess is the gradient
# all-reduce the backward did not hide, and the ranks competing for memory.
#
#   bash tools/bench-dist.sh                               # ResNet-32 w16, B=64 per rank, 32 px, 3 rounds
#   bash tools/bench-dist.sh --width 64 --batch-size 16    # extra flags go to both lt-bench dist runs
#   LT_BENCH=target/debug/lt-bench ROUNDS=1 bash tools/bench-dist.sh
#
# LT_BENCH: an lt-bench binary to use (default: build target/release/lt-bench).
# ROUNDS: world 1 and world 2 alternate this many times (default 3); the
# ratio compares the medians of their step medians. OUT_DIR: where the JSON
# lines go (default target/bench-dist).
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=tools/env.sh
. tools/env.sh
if [[ -z "${LT_BENCH:-}" ]]; then
    nice cargo build --release -p lt-bench --bin lt-bench
    LT_BENCH=target/release/lt-bench
fi
rounds=${ROUNDS:-3}
out=${OUT_DIR:-target/bench-dist}
mkdir -p "$out"
rm -f "$out/world1.jsonl" "$out/world2.jsonl"
# Flags given twice take their last value: "$@" overrides these defaults.
args=(--device cpu --torch-threads 1 --model resnet32 --width 16 --batch-size 64 --size 32 --steps 20 --warmup 5 "$@")

echo "== $(nproc) cores, $(lscpu | sed -n 's/^Model name: *//p'); load average $(cut -d' ' -f1-3 /proc/loadavg)"
export OMP_NUM_THREADS=1 GLOO_SOCKET_IFNAME=lo
echo "== lt-bench dist ${args[*]}"
for r in $(seq 1 "$rounds"); do
    echo "== round $r/$rounds: world 1 x 1 thread"
    "$LT_BENCH" dist "${args[@]}" --json "$out/world1.jsonl" | grep -v '^RESULT '
    echo "== round $r/$rounds: world 2 x 1 thread (torchrun --standalone --nproc-per-node 2)"
    "$LT_GLMC_PYTHON" -m torch.distributed.run --standalone --nproc-per-node 2 --no-python \
        "$LT_BENCH" dist "${args[@]}" --json "$out/world2.jsonl" | grep -v '^RESULT '
done
echo "== load average $(cut -d' ' -f1-3 /proc/loadavg)"

"$LT_GLMC_PYTHON" - "$out/world1.jsonl" "$out/world2.jsonl" <<'PY'
import json, statistics, sys
w1, w2 = ([json.loads(l) for l in open(p)] for p in sys.argv[1:3])
med = statistics.median
def load(r):
    return "%.2f" % r["load_average"][0] if r.get("load_average") else "?"
print("| round | world 1 step ms | world 2 step ms (slowest rank) | ratio | CPU ms/step/rank w1 | w2 | CPU ratio | load (1 min) w1 / w2 |")
print("|---|---|---|---|---|---|---|---|")
for i, (a, b) in enumerate(zip(w1, w2), 1):
    print(f"| {i} | {a['step_ms_median']:.1f} | {b['step_ms_median']:.1f} | {b['step_ms_median'] / a['step_ms_median']:.3f} "
          f"| {a['cpu_ms_per_step']:.1f} | {b['cpu_ms_per_step']:.1f} | {b['cpu_ms_per_step'] / a['cpu_ms_per_step']:.3f} | {load(a)} / {load(b)} |")
print("all-reduce at world 2 (median over rounds): " + ", ".join(
    f"{a['mib']:g} MiB {med(r['allreduce'][i]['ms_median'] for r in w2):.2f} ms, "
    f"busbw {med(r['allreduce'][i]['busbw_gbps'] for r in w2):.2f} GB/s"
    for i, a in enumerate(w2[0]["allreduce"])))
print(f"gradients: {w1[0]['params'] / 1e6:.2f} M parameters, {w1[0]['grad_bytes'] / 2**20:.1f} MiB; "
      f"B={w1[0]['batch_size']} per rank ({w1[0]['images_per_step_per_rank']} images/step/rank)")
m1, m2 = med(r["step_ms_median"] for r in w1), med(r["step_ms_median"] for r in w2)
i1, i2 = med(r["images_per_s_total"] for r in w1), med(r["images_per_s_total"] for r in w2)
print(f"images/s total (median over rounds): world 1 {i1:.1f}, world 2 {i2:.1f} (speed-up {i2 / i1:.2f}x)")
ratios = sorted(b["step_ms_median"] / a["step_ms_median"] for a, b in zip(w1, w2))
print(f"RATIO step_time(world 2) / step_time(world 1) = {m2:.1f} / {m1:.1f} ms = {m2 / m1:.3f} "
      f"(medians over {len(w1)} rounds; per-round ratios {' '.join('%.3f' % r for r in ratios)})")
PY
