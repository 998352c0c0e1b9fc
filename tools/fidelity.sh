#!/usr/bin/env bash
# Fidelity check: lt-train against the reference harness
# (tools/glmc_harness.py, the authors' training loop in PyTorch) on the same
# real Fashion-MNIST-LT shards, GLMC and cross-entropy, several seeds, then
# an epoch-by-epoch comparison (tools/compare_runs.py).
#
#   bash tools/fidelity.sh                      # 3 seeds x 20 epochs, n_max 1000
#   SEEDS="1" EPOCHS=40 bash tools/fidelity.sh  # one seed, 40 epochs
#   OUT=runs/fid6000 NMAX=6000 SEEDS=1 EPOCHS=12 bash tools/fidelity.sh
#
# Every run is single-threaded and JOBS (default 2) run at once. The release
# binaries are copied into OUT/bin first so that a rebuild during the runs
# cannot change them. Needs: tools/setup.sh done, a release build of lt-build
# and lt-train, Debian's dataset-fashion-mnist.
set -euo pipefail
cd "$(dirname "$0")/.."
. tools/env.sh
OUT="${OUT:-runs/fidelity}"
SEEDS="${SEEDS:-1 2 3}"
EPOCHS="${EPOCHS:-20}"
NMAX="${NMAX:-1000}"
JOBS="${JOBS:-2}"
METHODS="${METHODS:-glmc ce}"
RECIPE=pipelines/fashion-mnist-lt-demo.toml
mkdir -p "$OUT/bin"
cp target/release/lt-build target/release/lt-train "$OUT/bin/"
git rev-parse HEAD > "$OUT/commit"
git status --short --untracked-files=no > "$OUT/dirty" || true

SHARDS="$OUT/shards"
if [ ! -f "$SHARDS/manifest.json" ]; then
    "$OUT/bin/lt-build" idx /usr/share/datasets/fashion-mnist --if 100 --max-per-class "$NMAX" -o "$SHARDS"
fi

jobs_file="$OUT/jobs.txt"
: > "$jobs_file"
for seed in $SEEDS; do
    for m in $METHODS; do
        d="$OUT/h-$m-s$seed"
        [ -f "$d/metrics.jsonl" ] && [ "$(wc -l < "$d/metrics.jsonl")" -ge "$EPOCHS" ] || \
            echo "$LT_GLMC_PYTHON tools/glmc_harness.py $SHARDS --out $d --method $m --epochs $EPOCHS --seed $seed --threads 1 > $d.log 2>&1" >> "$jobs_file"
        d="$OUT/lt-$m-s$seed"
        [ -f "$d/report.json" ] || \
            echo "rm -rf $d; OMP_NUM_THREADS=1 $OUT/bin/lt-train $SHARDS --recipe $RECIPE --method $m --epochs $EPOCHS --seed $seed --threads 1 --set loader.workers=1 --out $d --quiet > $d.log 2>&1" >> "$jobs_file"
    done
done
echo "[fidelity] $(wc -l < "$jobs_file") runs, $JOBS at a time, into $OUT"
xargs -P "$JOBS" -I{} -d '\n' sh -c '{}' < "$jobs_file"

args=()
for m in $METHODS; do
    for who in h lt; do
        dirs=""
        for seed in $SEEDS; do dirs="$dirs${dirs:+,}$OUT/$who-$m-s$seed"; done
        args+=("$who-$m=$dirs")
    done
done
checks=()
for m in $METHODS; do checks+=("h-$m=lt-$m"); done
"$LT_GLMC_PYTHON" tools/compare_runs.py "${args[@]}" --check "${checks[@]}" | tee "$OUT/compare.md"
