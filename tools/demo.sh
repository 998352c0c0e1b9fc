#!/usr/bin/env bash
# The README's first command: the main job on a built-in default.
#   1. builds Fashion-MNIST-LT (IF 100: 6000 … 60 images per class) from
#      Debian's dataset-fashion-mnist and prints its class histogram;
#   2. trains GLMC (ResNet-32, width 16, the authors' CIFAR-10-LT IF 100
#      settings) on it for a few epochs on the CPU;
#   3. prints the many / medium / few table of the final report.
# DEMO_EPOCHS (default 3; about 4 minutes an epoch on 2 cores) sets the
# number of epochs; the run directory is
# runs/demo-glmc (metrics.jsonl, report.md, plots, checkpoint).
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
DATA=runs/fmnist-lt-if100
RUN=runs/demo-glmc
EPOCHS="${DEMO_EPOCHS:-3}"
cargo build --release -p lt-build -p lt-train --bin lt-build --bin lt-train
./target/release/lt-build idx "$SRC" --if 100 -o "$DATA" --overwrite
./target/release/lt-build inspect "$DATA"
rm -rf "$RUN"
./target/release/lt-train "$DATA" --recipe pipelines/fashion-mnist-lt-demo.toml \
    --epochs "$EPOCHS" --device auto --out "$RUN"
echo
cat "$RUN/report.md"
