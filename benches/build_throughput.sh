#!/usr/bin/env bash
# Benchmark (not a test): lt-build throughput on an ImageNet-style folder of
# real photographs, passthrough vs `--max-side 256` re-encode, at 1 and N
# threads. Prints one line per configuration and a JSON line each into
# benches/out/build_throughput.jsonl.
#
#   bash benches/build_throughput.sh [CLASSES] [PER_CLASS]
set -euo pipefail
cd "$(dirname "$0")/.."
bash tools/setup.sh >/dev/null
. tools/env.sh
CLASSES="${1:-10}"
PER_CLASS="${2:-60}"
SUDO=""; [ "$(id -u)" = 0 ] || SUDO="sudo"
[ -d /usr/share/backgrounds/mate ] || $SUDO apt-get install -y -qq mate-backgrounds >/dev/null
[ -x /usr/bin/time ] || $SUDO apt-get install -y -qq time >/dev/null
cargo build --release -q -p lt-build
BIN=target/release/lt-build
WORK="$(mktemp -d)"
trap 'rm -rf "$WORK"' EXIT
"$LT_GLMC_PYTHON" tools/make_photo_folder.py "$WORK/photos" --classes "$CLASSES" --per-class "$PER_CLASS"
N=$(find "$WORK/photos" -name '*.jpg' | wc -l)
MB=$(du -sm "$WORK/photos" | cut -f1)
mkdir -p benches/out
CPU="$(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //')"
echo "machine: $(nproc) cores, $CPU; $N JPEGs, $MB MiB"
for mode in passthrough max-side-256; do
    for threads in 1 $(nproc); do
        extra=(); [ "$mode" = max-side-256 ] && extra=(--max-side 256)
        # Warm the page cache so both modes read from memory.
        cat "$WORK"/photos/*/*/*.jpg > /dev/null
        read -r secs user sys < <(/usr/bin/time -f "%e %U %S" "$BIN" folder "$WORK/photos" -o "$WORK/out" \
            --overwrite --quiet --threads "$threads" "${extra[@]}" 2>&1 >/dev/null | tail -1)
        ips=$(echo "$N / $secs" | bc -l)
        # CPU time per image is robust to other load on a shared machine.
        cpu_ms=$(echo "1000 * ($user + $sys) / $N" | bc -l)
        load=$(cut -d' ' -f1 /proc/loadavg)
        out_mb=$(du -sm "$WORK/out" | cut -f1)
        printf '%-14s threads %-2s %7.0f images/s  %6.2f CPU-ms/image  (%5.2f s wall, output %s MiB, load %s)\n' \
            "$mode" "$threads" "$ips" "$cpu_ms" "$secs" "$out_mb" "$load"
        printf '{"bench":"build_folder","mode":"%s","threads":%s,"images":%s,"seconds":%.3f,"images_per_s":%.1f,"cpu_ms_per_image":%.3f,"input_mib":%s,"output_mib":%s,"load":%s}\n' \
            "$mode" "$threads" "$N" "$secs" "$ips" "$cpu_ms" "$MB" "$out_mb" "$load" >> benches/out/build_throughput.jsonl
    done
done
