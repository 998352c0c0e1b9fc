#!/usr/bin/env bash
# The README's first command: the main job on a built-in default, and what
# GLMC is for, in about 10 minutes on a 2-core CPU after the set-up.
#   1. builds Fashion-MNIST-LT (IF 100, 1000 … 10 images per class, 2,478 in
#      all) from Debian's dataset-fashion-mnist and prints its histogram;
#   2. trains GLMC and the cross-entropy baseline side by side for the same
#      budget (ResNet-32 at width 16, the authors' CIFAR-10-LT IF 100
#      settings, DEMO_EPOCHS epochs, default 20), one core each;
#   3. prints both runs' many / medium / few table (lt-report compare) and
#      writes the per-class plot of both, where GLMC's gain on the few
#      classes shows;
#   4. points at lt-train eval and predict for what it trained.
# Run directories: runs/demo-glmc, runs/demo-ce (metrics.jsonl, report.md,
# plots, TensorBoard events, checkpoint) and runs/demo-compare.
set -euo pipefail
cd "$(dirname "$0")/.."
bash tools/setup.sh
. tools/env.sh
SRC=/usr/share/datasets/fashion-mnist
if [ ! -d "$SRC" ]; then
    echo "[demo] installing Debian's dataset-fashion-mnist"
    SUDO=""; [ "$(id -u)" = 0 ] || SUDO="sudo"
    $SUDO apt-get update -qq && $SUDO apt-get install -y -qq dataset-fashion-mnist >/dev/null
fi
DATA=runs/fmnist-lt-n1000
EPOCHS="${DEMO_EPOCHS:-20}"
EVERY=$(( EPOCHS >= 5 ? 5 : 1 ))
cargo build --release -p lt-build -p lt-train -p lt-report --bin lt-build --bin lt-train --bin lt-report
./target/release/lt-build idx "$SRC" --if 100 --max-per-class 1000 -o "$DATA" --overwrite --quiet
./target/release/lt-build inspect "$DATA"
echo
echo "[demo] training GLMC and cross-entropy for $EPOCHS epochs, side by side (one core each)"
T0=$SECONDS
pids=()
for method in glmc ce; do
    rm -rf "runs/demo-$method"
    ./target/release/lt-train "$DATA" --recipe pipelines/fashion-mnist-lt-demo.toml --method "$method" \
        --epochs "$EPOCHS" --set eval.every="$EVERY" --threads 1 --set loader.workers=1 --device cpu \
        --out "runs/demo-$method" --quiet > "runs/demo-$method.log" 2>&1 &
    pids+=($!)
done
for p in "${pids[@]}"; do
    if ! wait "$p"; then
        cat runs/demo-glmc.log runs/demo-ce.log >&2
        exit 1
    fi
done
grep -h "^epoch $EPOCHS/" runs/demo-glmc.log runs/demo-ce.log | sed 's/^/  /'
echo "[demo] both trained in $(( SECONDS - T0 )) s"
echo
./target/release/lt-report compare GLMC=runs/demo-glmc CE=runs/demo-ce --out runs/demo-compare
cat <<MSG

Few classes are those with at most 20 training images (Bag, Ankle boot).
See runs/demo-compare/per_class_compare.png and runs/demo-{glmc,ce}/report.md;
tensorboard --logdir runs/ shows the curves. Use what was trained:
  ./target/release/lt-train eval runs/demo-glmc           # both heads, eval.json, per-class plot
  ./target/release/lt-train predict runs/demo-glmc $DATA/test/part-00000.parquet --top-k 3 | head   # or image files, folders
MSG
