#!/usr/bin/env bash
# One-run CPU cost of the loader against the bare decode and torchvision
# (issue 14): lt-loader-bench decode, then lt-loader-bench loader for the
# imagenet and imagenet-randncls pipelines (photometric cpu, device, and
# jpeg_draft), the same with a baseline binary of an earlier commit when
# BASELINE is set (e.g. the binary built at the commit before the kernels),
# and tools/loader_baseline.py (torchvision) for imagenet, all at THREADS
# threads, two views, batch BATCH, alternating rounds.
#
#   BASELINE=path/to/old/lt-loader-bench bash tools/loader_cpu_bench.sh [SHARDS] [OUT]
#
# SHARDS: ImageNet-style JPEG shards (default benches/out/loader/photos-jpeg,
# made by tools/loader_bench.sh). Env: THREADS (2), BATCH (64), STEPS (30),
# ROUNDS (2). JSON lines go to OUT/results.jsonl; the summary lines to stdout.
set -euo pipefail
cd "$(dirname "$0")/.."
. tools/env.sh
SHARDS=${1:-benches/out/loader/photos-jpeg}
OUT=${2:-benches/out/loader-cpu}
THREADS=${THREADS:-2}
BATCH=${BATCH:-64}
STEPS=${STEPS:-30}
ROUNDS=${ROUNDS:-2}
mkdir -p "$OUT"
JSON="$OUT/results.jsonl"
[ -n "${NO_BUILD:-}" ] || cargo build --release -q -p lt-bench --bin lt-loader-bench
BENCH=target/release/lt-loader-bench
echo "# $(date -u +%FT%TZ) $(nproc) cores, $(lscpu | grep 'Model name' | sed 's/.*: *//'), load $(cut -d' ' -f1-3 /proc/loadavg)"
common=(--shards "$SHARDS" --threads "$THREADS" --batch-size "$BATCH" --views 2 --steps "$STEPS" --json "$JSON")
for round in $(seq "$ROUNDS"); do
  echo "## round $round"
  $BENCH decode --shards "$SHARDS" --threads "$THREADS" --json "$JSON" | grep -v '^RESULT'
  for p in imagenet imagenet-randncls; do
    $BENCH loader --pipeline $p "${common[@]}" | grep -v '^RESULT'
    $BENCH loader --pipeline $p --photometric device "${common[@]}" | grep -v '^RESULT'
    $BENCH loader --pipeline $p --jpeg-draft "${common[@]}" | grep -v '^RESULT'
    if [ -n "${BASELINE:-}" ]; then
      echo "(baseline $BASELINE)"
      "$BASELINE" loader --pipeline $p "${common[@]}" | grep -v '^RESULT'
    fi
  done
  "$LT_GLMC_PYTHON" tools/loader_baseline.py --shards "$SHARDS" --pipeline imagenet --threads "$THREADS" --batch-size "$BATCH" --views 2 --steps "$STEPS" --json "$JSON" 2>&1 | grep -v '^RESULT'
done
echo "JSON lines: $JSON"
