#!/usr/bin/env bash
# Builds release binaries here and assembles the GPU check kit (≤ 64 MiB):
#
#   target/gpu-kit/                 (KIT=... to change; target/ is git-ignored)
#     gpu-check.sh                  the check (tools/gpu-check.sh)
#     glmc_gpu_reference.py         the PyTorch reference step
#     bin/lt-bench.xz lt-train.xz lt-build.xz   stripped, xz-compressed
#     data/photos/                  ImageNet-style shards of real photographs
#                                   (10 classes x 80, as-is: enough rows for
#                                   several B=64 GLMC steps per epoch)
#                                   (Debian mate-backgrounds JPEGs, via
#                                   tools/make_photo_folder.py + lt-build folder)
#     data/cifar/                   synthetic CIFAR-style 32 px shards
#                                   (lt-build synth, IF 10)
#
# Then, on a GPU machine with PyTorch 2.11 and no Rust:
#   bash target/gpu-kit/gpu-check.sh            (or: run --carry target/gpu-kit)
#
# Usage: tools/make-gpu-kit.sh   [PHOTO_CLASSES=10 PHOTO_PER_CLASS=30 KIT=target/gpu-kit]
set -euo pipefail
cd "$(dirname "$0")/.."
# The venv, gloo's headers, and CUDA's headers for the NCCL backend that
# gpu-check.sh's torchrun runs use (idempotent; seconds when all is there).
bash tools/setup.sh
. tools/env.sh

KIT="${KIT:-target/gpu-kit}"
LIMIT=$((64 * 1024 * 1024))
PHOTO_CLASSES="${PHOTO_CLASSES:-10}"
PHOTO_PER_CLASS="${PHOTO_PER_CLASS:-80}"
PY="${LT_GLMC_PYTHON:-python3}"

if [ ! -d /usr/share/backgrounds/mate ]; then
    echo "make-gpu-kit: /usr/share/backgrounds/mate is missing: apt-get install mate-backgrounds" >&2
    exit 2
fi

echo "== release build (lt-train, lt-bench, lt-build)"
cargo build --release -p lt-train -p lt-bench --bins
cargo build --release -p lt-glmc --example photometric_bench
cargo build --release -p lt-build --bin lt-build
if [ "$(nm target/release/lt-train | grep -c lt_dist_new_nccl_tcp)" = 0 ]; then
    echo "make-gpu-kit: lt-train was built without NCCL (lt-glmc's build printed why): gpu-check.sh's torchrun runs need it" >&2
    exit 1
fi

WORK="$(mktemp -d)"
trap 'rm -rf "$WORK"' EXIT
rm -rf "$KIT"
mkdir -p "$KIT/bin" "$KIT/data"

LT_BENCH=target/release/lt-bench
for pair in "lt-bench:$LT_BENCH" "lt-train:target/release/lt-train" "lt-build:target/release/lt-build" \
    "photometric_bench:target/release/examples/photometric_bench"; do
    name="${pair%%:*}"; src="${pair#*:}"
    cp "$src" "$WORK/$name"
    strip "$WORK/$name"
    xz -T0 -9 -c "$WORK/$name" > "$KIT/bin/$name.xz"
    echo "   $name: $(du -h "$WORK/$name" | cut -f1) stripped, $(du -h "$KIT/bin/$name.xz" | cut -f1) xz"
done

echo "== ImageNet-style shards of real photographs"
"$PY" tools/make_photo_folder.py "$WORK/photos" --classes "$PHOTO_CLASSES" --per-class "$PHOTO_PER_CLASS" \
    --val-per-class 2 --large-every 1000000000 --seed 5
target/release/lt-build folder "$WORK/photos" -o "$KIT/data/photos"

echo "== CIFAR-style synthetic shards"
target/release/lt-build synth --classes 10 --per-class 200 --test-per-class 20 --size 32 --if 10 -o "$KIT/data/cifar"

cp tools/gpu-check.sh tools/glmc_gpu_reference.py "$KIT/"
chmod +x "$KIT/gpu-check.sh"

TOTAL=$(du -sb "$KIT" | cut -f1)
echo "== $KIT: $((TOTAL / 1024)) KiB in all"
du -sh "$KIT"/bin "$KIT"/data/*
if [ "$TOTAL" -gt "$LIMIT" ]; then
    echo "make-gpu-kit: $TOTAL bytes exceed the 64 MiB limit (lower PHOTO_PER_CLASS)" >&2
    exit 1
fi
