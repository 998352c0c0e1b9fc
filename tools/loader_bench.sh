#!/usr/bin/env bash
# Side-by-side loader benchmark: lt-loader-bench loader vs the torchvision
# DataLoader baseline (tools/loader_baseline.py) on the same shards, the same
# thread/worker count, batch size and two views per image.
#
#   bash tools/loader_bench.sh [OUT_DIR]
#
# Builds two shard sets from real photographs (Debian wallpaper packages:
# `apt-get install mate-backgrounds ukui-wallpapers lomiri-wallpapers-20.04`):
#   photos-jpeg/  random crops at long sides 320–800 px, JPEG q90 (ImageNet-like)
#   photos-32/    32×32 PNG crops (CIFAR-like)
# Env: THREADS (2), BATCH (64), STEPS_CIFAR (200), STEPS_IMAGENET (15),
#      PHOTOS (/usr/share/backgrounds), PER_CLASS (52: about 2,000 crops over 100 classes at IF 10).
set -euo pipefail
cd "$(dirname "$0")/.."
. tools/env.sh
OUT=${1:-benches/out/loader}
THREADS=${THREADS:-2}
BATCH=${BATCH:-64}
PHOTOS=${PHOTOS:-/usr/share/backgrounds}
PER_CLASS=${PER_CLASS:-52}
mkdir -p "$OUT"
cargo build --release -q -p lt-bench --bin lt-loader-bench
cargo build --release -q -p lt-build --bin lt-build
BENCH=target/release/lt-loader-bench
[ -f "$OUT/photos-jpeg/manifest.json" ] || target/release/lt-build photos "$PHOTOS" -o "$OUT/photos-jpeg" --classes 100 --per-class "$PER_CLASS" --test-per-class 0 --if 10 --sizes 320,400,500,640,800 --quiet
[ -f "$OUT/photos-32/manifest.json" ] || target/release/lt-build photos "$PHOTOS" -o "$OUT/photos-32" --classes 100 --per-class 512 --test-per-class 0 --if 10 --size 32 --quiet
JSON="$OUT/results.jsonl"
echo "# $(date -u +%FT%TZ) $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2), load $(cut -d' ' -f1-3 /proc/loadavg)" | tee -a "$OUT/log.txt"
run() { # pipeline shards steps
  for tool in rust python; do
    if [ $tool = rust ]; then
      $BENCH loader --shards "$2" --pipeline "$1" --threads "$THREADS" --batch-size "$BATCH" --views 2 --steps "$3" --json "$JSON"
    else
      "$LT_GLMC_PYTHON" tools/loader_baseline.py --shards "$2" --pipeline "$1" --threads "$THREADS" --batch-size "$BATCH" --views 2 --steps "$3" --json "$JSON"
    fi
  done 2>&1 | grep -v '^RESULT' | tee -a "$OUT/log.txt"
}
run cifar "$OUT/photos-32" "${STEPS_CIFAR:-200}"
run imagenet "$OUT/photos-jpeg" "${STEPS_IMAGENET:-15}"
[ -n "${ALL:-}" ] && { run randaugment "$OUT/photos-jpeg" "${STEPS_IMAGENET:-15}"; run eval "$OUT/photos-jpeg" "${STEPS_IMAGENET:-15}"; }
echo "JSON lines: $JSON"
