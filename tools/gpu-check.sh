#!/usr/bin/env bash
# The GPU check, for a machine with an NVIDIA GPU and PyTorch 2.11
# but no Rust toolchain. Runs from the kit tools/make-gpu-kit.sh assembles
# (binaries built beforehand + small shard sets, ≤ 64 MiB) in under 8 minutes:
#
#   1. nvidia-smi
#   2. lt-bench loader: 16 threads, ImageNet pipeline, photographs
#   3. lt-bench e2e: ResNeXt-50 amp nhwc, 16 loader threads, the same shards
#   4. lt-bench gpu: ResNeXt-50 32x4d at 224 px (B=64) in amp / fp32 / tf32 ×
#      nhwc / nchw, ResNet-32 at 32 px (B=64) amp / fp32, each followed by the
#      PyTorch reference step (glmc_gpu_reference.py) in the same mode
#   4b. the device photometric stage (loader.photometric = "device") alone on
#      one GLMC step's views (2 views x 2B slots), imagenet and randncls, and
#      its share of the ResNeXt-50 amp nhwc step time
#   5. lt-train: a short CIFAR-style GLMC training on the GPU (if present),
#      then the same run data-parallel under torchrun over NCCL
#      (--dist-backend nccl): world size 1, and one rank per GPU when there
#      are more than one
#   6. a table of everything, with the lt-train runs' time per epoch
# A run that would start after BUDGET_S (450 s) is skipped and reported;
# steps 2-4 stop starting runs RESERVE_S (75 s) earlier, to leave step 5 its time.
#
# Usage: bash gpu-check.sh                 (from inside the kit folder or not)
# Env:   OUT=dir (default $OUT or ./gpu-check-out), QUICK=1 (fewer steps),
#        B=64 (ResNeXt batch), THREADS=16 (loader threads),
#        SMOKE=1 (CPU dry run of every step with a tiny ResNet-32: checks the
#        kit and the script, not the GPU; amp runs are refused and reported;
#        the torchrun run uses gloo on the CPU, NCCL needing GPUs)
set -uo pipefail

KIT="$(cd "$(dirname "$0")" && pwd)"
OUT="${OUT:-$PWD/gpu-check-out}"
mkdir -p "$OUT"
RES="$OUT/results.jsonl"
: > "$RES"
LOG="$OUT/gpu-check.log"
B="${B:-64}"
THREADS="${THREADS:-16}"
if [ "${QUICK:-0}" = 1 ]; then STEPS=10; WARM=5; else STEPS=20; WARM=8; fi
DEVICE=cuda; RXM=(--model resnext50); R32M=(--model resnet32); R32STEPS=50; R32WARM=10; EPOCHS=3; LTW=32
if [ "${SMOKE:-0}" = 1 ]; then
    DEVICE=cpu; RXM=(--model resnet32 --width 8); R32M=(--model resnet32 --width 8)
    STEPS=2; WARM=1; R32STEPS=2; R32WARM=1; B=4; THREADS=2; EPOCHS=1; LTW=8
fi
PY="${PYTHON:-python3}"
T0=$(date +%s)

say() { echo "[$(( $(date +%s) - T0 ))s] $*" | tee -a "$LOG"; }

# --- libtorch from this machine's PyTorch -----------------------------------
TORCH_LIB="$("$PY" -c 'import torch,os;print(os.path.dirname(torch.__file__))')/lib" || {
    echo "gpu-check: python3 cannot import torch" >&2; exit 2; }
export LD_LIBRARY_PATH="$TORCH_LIB${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
say "torch $("$PY" -c 'import torch;print(torch.__version__, "cuda", torch.version.cuda, "available", torch.cuda.is_available())')"
say "LD_LIBRARY_PATH=$LD_LIBRARY_PATH"

# --- binaries (xz in the kit; decompressed with Python's lzma) ---------------
BIN="$(mktemp -d)"
trap 'rm -rf "$BIN"' EXIT
for b in lt-bench lt-train lt-build photometric_bench; do
    if [ -f "$KIT/bin/$b.xz" ]; then
        "$PY" -c 'import lzma,sys;open(sys.argv[2],"wb").write(lzma.open(sys.argv[1]).read())' "$KIT/bin/$b.xz" "$BIN/$b"
        chmod +x "$BIN/$b"
    elif [ -x "$KIT/bin/$b" ]; then
        cp "$KIT/bin/$b" "$BIN/$b"
    fi
done
[ -x "$BIN/lt-bench" ] || { echo "gpu-check: no lt-bench in $KIT/bin" >&2; exit 2; }

# --- 1. the card --------------------------------------------------------------
nvidia-smi 2>&1 | tee -a "$LOG" | head -20
nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.max.sm --format=csv,noheader > "$OUT/gpu.txt" 2>/dev/null
say "GPU: $(cat "$OUT/gpu.txt" 2>/dev/null)"

BUDGET_S="${BUDGET_S:-450}"   # stop starting new runs after this (the check must end within 8 minutes)
RESERVE_S="${RESERVE_S:-75}"  # kept for step 5 (lt-train, single and NCCL) by steps 2-4
CUTOFF=$(( BUDGET_S - RESERVE_S ))
run() { # run LIMIT_S NAME CMD... : logs, keeps RESULT lines, never aborts the check
    local limit="$1" name="$2"; shift 2
    local left=$(( CUTOFF - ($(date +%s) - T0) ))
    if [ "$left" -lt 15 ]; then
        say "-- $name skipped: time budget spent"
        echo "{\"check\": \"$name\", \"failed\": \"skipped (time)\"}" >> "$RES"
        return 0
    fi
    [ "$limit" -gt "$left" ] && limit="$left"
    say ">> $name (limit ${limit}s)"
    timeout "$limit" "$@" > "$OUT/$name.out" 2> "$OUT/$name.err"
    local rc=$?
    grep -v '^RESULT ' "$OUT/$name.out" | tee -a "$LOG"
    grep '^RESULT ' "$OUT/$name.out" | sed 's/^RESULT //' | while read -r l; do
        "$PY" -c 'import json,sys;d=json.loads(sys.argv[1]);d["check"]=sys.argv[2];print(json.dumps(d))' "$l" "$name" >> "$RES"
    done
    if [ $rc -ne 0 ]; then
        say "!! $name failed (rc $rc): $(tail -3 "$OUT/$name.err" | tr '\n' ' ')"
        echo "{\"check\": \"$name\", \"failed\": $rc}" >> "$RES"
    fi
    return 0
}

# Most important first, so that a slow card still answers the issue's targets.
# --- 2. loader, 16 threads, photographs ------------------------------------------
PHOTOS="$KIT/data/photos"
run 60 "loader-imagenet-$THREADS" "$BIN/lt-bench" loader --shards "$PHOTOS" --pipeline imagenet --threads "$THREADS" \
    --batch-size "$B" --views 2 --sampler paired:0.2 --steps 40 --warmup 3 --pool-size 8

# --- 3. end to end (loader-only + gpu-only + e2e in one process) -----------------
E2E_PREC=amp; [ "$DEVICE" = cpu ] && E2E_PREC=fp32
run 120 "e2e-rx50-amp-nhwc" "$BIN/lt-bench" e2e --shards "$PHOTOS" --pipeline imagenet --threads "$THREADS" \
    "${RXM[@]}" --batch-size "$B" --precision "$E2E_PREC" --memory-format nhwc --steps "$STEPS" --warmup "$WARM" \
    --loader-steps 40 --pool-size 8 --device "$DEVICE"

# --- 4. GLMC step: lt-glmc vs PyTorch, every mode --------------------------------
G=(--steps "$STEPS" --warmup "$WARM" --device "$DEVICE")
for mode in "amp nhwc" "fp32 nchw" "amp nchw" "fp32 nhwc" "tf32 nhwc"; do
    set -- $mode
    run 60 "gpu-rx50-$1-$2" "$BIN/lt-bench" gpu "${RXM[@]}" --batch-size "$B" --precision "$1" --memory-format "$2" "${G[@]}"
    run 60 "ref-rx50-$1-$2" "$PY" "$KIT/glmc_gpu_reference.py" "${RXM[@]}" --batch-size "$B" --precision "$1" --memory-format "$2" --steps "$STEPS" --warmup "$WARM" --device "$DEVICE"
done
for mode in "amp nhwc" "fp32 nchw"; do
    set -- $mode
    run 40 "gpu-r32-$1-$2" "$BIN/lt-bench" gpu "${R32M[@]}" --batch-size 64 --precision "$1" --memory-format "$2" --steps "$R32STEPS" --warmup "$R32WARM" --device "$DEVICE"
    run 40 "ref-r32-$1-$2" "$PY" "$KIT/glmc_gpu_reference.py" "${R32M[@]}" --batch-size 64 --precision "$1" --memory-format "$2" --steps "$R32STEPS" --warmup "$R32WARM" --device "$DEVICE"
done

# --- 4b. the device photometric stage on one step's views -----------------------
if [ -x "$BIN/photometric_bench" ]; then
    for p in imagenet imagenet-randncls; do
        run 40 "photometric-$p" bash -c 'printf "RESULT "; "$@" | tail -n 1' _ "$BIN/photometric_bench" \
            --device "$DEVICE" --pipeline "$p" --views $(( 4 * B )) --size 224 --reps 5
    done
else
    say "-- photometric_bench is not in the kit: skipped"
fi

# --- 5. short CIFAR-style GLMC training, then data-parallel over NCCL ------------
# The binaries keep libtorch_cuda linked (crates/lt-glmc/rpath.rs), so CUDA is
# seen without preloading anything.
CUTOFF=$BUDGET_S
if [ -x "$BIN/lt-train" ] && [ -d "$KIT/data/cifar" ]; then
    TRAIN=(--epochs "$EPOCHS" --batch-size 64 --set model.width="$LTW" --quiet)
    run 90 "lt-train-cifar" "$BIN/lt-train" "$KIT/data/cifar" "${TRAIN[@]}" --device "$DEVICE" --out "$OUT/lt-train-run"
    tail -n 3 "$OUT/lt-train-run/metrics.jsonl" 2>/dev/null | tee -a "$LOG"
    # The same run under torchrun (global batch 64 split over the ranks),
    # over NCCL: world size 1, then one rank per GPU when there are several.
    DIST_BACKEND=nccl
    NGPU=$("$PY" -c 'import torch;print(torch.cuda.device_count())' 2>/dev/null || echo 0)
    if [ "$DEVICE" = cpu ]; then
        say "-- NCCL runs skipped (SMOKE: no GPU); the world-size-1 torchrun run uses gloo on the CPU instead"
        DIST_BACKEND=gloo; NGPU=1
    fi
    WORLDS=(1); [ "${NGPU:-0}" -gt 1 ] && WORLDS+=("$NGPU")
    for n in "${WORLDS[@]}"; do
        run 60 "lt-train-$DIST_BACKEND-$n" "$PY" -m torch.distributed.run --standalone --nproc-per-node "$n" \
            --no-python "$BIN/lt-train" "$KIT/data/cifar" "${TRAIN[@]}" --device "$DEVICE" \
            --dist-backend "$DIST_BACKEND" --dist-timeout 120 --out "$OUT/lt-train-$DIST_BACKEND-$n"
        tail -n 1 "$OUT/lt-train-$DIST_BACKEND-$n/metrics.jsonl" 2>/dev/null | tee -a "$LOG"
    done
else
    say "-- lt-train or the CIFAR shards are not in the kit: skipped"
fi

# --- 6. table ----------------------------------------------------------------------
say "== summary ($(cat "$OUT/gpu.txt" 2>/dev/null))"
"$PY" - "$RES" "$OUT" <<'EOF' | tee -a "$LOG"
import json, os, sys
rows = [json.loads(l) for l in open(sys.argv[1]) if l.strip()]
by = {r["check"]: r for r in rows}
print(f"{'GLMC step':<22}{'lt-glmc img/s':>14}{'PyTorch img/s':>15}{'lt/PyT time':>13}{'lt ms/step':>12}")
for k in sorted(by):
    if not k.startswith("gpu-"):
        continue
    g = by[k]; ref = by.get("ref-" + k[4:], {})
    gi = g.get("images_per_s"); ri = ref.get("images_per_s")
    ratio = f"{ri / gi:.3f}" if gi and ri else "-"
    f = lambda v: f"{v:.1f}" if isinstance(v, (int, float)) else "failed"
    print(f"{k[4:]:<22}{f(gi):>14}{f(ri):>15}{ratio:>13}{f(g.get('step_ms_median')):>12}")
l = next((r for k, r in by.items() if k.startswith("loader-")), {})
e = by.get("e2e-rx50-amp-nhwc", {})
print()
print(f"loader, {l.get('threads', '?')} threads, imagenet pipeline: {l.get('images_per_s', float('nan')):.1f} images/s "
      f"({l.get('cpu_cores', float('nan')):.2f} cores busy)")
if "e2e_images_per_s" in e:
    print(f"e2e resnext50 amp nhwc: e2e {e['e2e_images_per_s']:.1f}, gpu {e['gpu_images_per_s']:.1f}, "
          f"loader {e['loader_images_per_s']:.1f} images/s -> e2e/gpu {e['e2e_over_gpu']:.3f} (target >= 0.95), "
          f"loader/gpu {e['loader_over_gpu']:.2f} (target >= 2)")
else:
    print("e2e: failed (see gpu-check.log)")
out = sys.argv[2]
def records(run):
    m = os.path.join(out, run, "metrics.jsonl")
    return [json.loads(x) for x in open(m) if x.strip()] if os.path.exists(m) else []
recs = records("lt-train-run")
if recs:
    r = recs[-1]
    t = r.get("test") or {}
    print(f"lt-train cifar (GLMC): {len(recs)} epochs, loss {recs[0]['loss']:.3f} -> {r['loss']:.3f}, "
          f"{r['train_images_per_s']:.0f} B-images/s, top-1 {t.get('top1', float('nan')):.3f}")
# Time per epoch: the single process beside the torchrun runs (the first
# epoch includes cuDNN's autotuning; the group is joined before it).
runs = [("1 process", "lt-train-run")] + sorted(
    ((f"torchrun {d.rsplit('-', 2)[1]} x{d.rsplit('-', 1)[1]}", d) for d in os.listdir(out)
     if d.startswith(("lt-train-nccl-", "lt-train-gloo-")) and os.path.isdir(os.path.join(out, d))),
    key=lambda x: int(x[1].rsplit("-", 1)[1]))
failed = {r["check"] for r in rows if "failed" in r}
print(f"{'lt-train cifar':<22}{'epochs':>7}{'s/epoch 1st':>13}{'s/epoch rest':>14}{'B-img/s':>9}{'top-1':>8}")
for label, d in runs:
    recs = records(d)
    if not recs:
        why = "failed" if d in failed or d == "lt-train-run" and "lt-train-cifar" in failed else "no metrics"
        print(f"{label:<22}{why:>7}")
        continue
    secs = [r["train_seconds"] for r in recs]
    rest = f"{sum(secs[1:]) / len(secs[1:]):.2f}" if len(secs) > 1 else "-"
    top1 = (recs[-1].get("test") or {}).get("top1", float("nan"))
    print(f"{label:<22}{len(recs):>7}{secs[0]:>13.2f}{rest:>14}{recs[-1]['train_images_per_s']:>9.0f}{top1:>8.3f}")
# The device photometric stage beside the step it feeds (same B, amp nhwc).
step = by.get("gpu-rx50-amp-nhwc", {}).get("step_ms_median")
for p in ("imagenet", "imagenet-randncls"):
    r = by.get("photometric-" + p, {})
    ms = r.get("device_stage_ms")
    if ms is None:
        print(f"photometric stage {p}: failed or skipped")
        continue
    share = f"{ms / (ms + step):.1%} of stage + step" if step else "step time unknown"
    print(f"photometric stage {p}: {ms:.2f} ms per step's {r.get('views')} views ({share}; "
          f"{r.get('bytes_differing_from_cpu')} bytes differ from the CPU kernels)")
print("(images/s = 2B per GLMC step; lt/PyT time < 1 means lt-glmc is faster)")
EOF
say "done in $(( $(date +%s) - T0 )) s; results in $OUT"
