#!/usr/bin/env bash
# The README's first command: the main job on a built-in default.
# Builds Fashion-MNIST-LT (IF 100) from Debian's dataset-fashion-mnist and
# prints its class histogram.
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
OUT="${1:-runs/fmnist-lt-if100}"
cargo build --release -p lt-build
./target/release/lt-build idx "$SRC" --if 100 -o "$OUT" --overwrite
./target/release/lt-build inspect "$OUT"
