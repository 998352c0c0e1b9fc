#!/usr/bin/env bash
# One-time, idempotent set-up for lt-glmc on a fresh machine.
#
# - Creates (or reuses) a Python venv holding torch==2.11.0, the libtorch that
#   tch 0.24 links against, in a per-user cache keyed by the torch version, so
#   every clone and every CI run share one ~4.6 GB install.
# - Installs the few Python packages the tests and baselines use (pyarrow,
#   DuckDB and HF datasets for the interop tests; numpy, pillow, torchvision
#   for the reference scripts and the loader baseline; tensorboard, whose
#   EventAccumulator reads back lt-train's event files in a test; safetensors
#   for tools/lt_glmc_torch.py, which loads checkpoints in PyTorch).
# - Installs Debian's libgloo-dev (apt, as root or through sudo) when gloo's
#   headers are missing: lt-glmc's dist module compiles c10d's Gloo process
#   group, and the torch wheel ships c10d's headers but not gloo's.
# - Installs nvidia-cuda-crt and nvidia-cuda-cccl of the wheel's CUDA version
#   into the venv when CUDA's crt/ or nv/target headers are missing: lt-glmc's
#   NCCL backend (csrc/dist_nccl.cpp) compiles c10d's ProcessGroupNCCL, and
#   the CUDA torch wheel brings CUDA's runtime headers and nccl.h but not
#   those (headers only, ~20 MB; nothing to do for a CPU-only torch).
#   Without them lt-glmc still builds, with no NCCL.
# - Installs Debian's cmake and nasm when missing: lt-vision links
#   libjpeg-turbo 3 for `loader.jpeg_draft` (the turbojpeg crate builds it
#   from its bundled source with cmake, its SIMD code with nasm; Debian 12's
#   libturbojpeg is 2.1, too old for the crate).
# - Writes nothing into the repository. Source tools/env.sh afterwards (the
#   other scripts do) to point cargo at the venv.
set -euo pipefail
TORCH_VERSION=2.11.0
CACHE="${LT_GLMC_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/lt-glmc}"
VENV="$CACHE/torch-$TORCH_VERSION"
PY="${PYTHON:-python3}"

say() { printf '[setup] %s\n' "$*"; }

if [ ! -x "$VENV/bin/python" ]; then
    say "creating venv $VENV"
    mkdir -p "$CACHE"
    "$PY" -m venv "$VENV"
fi

want="torch==$TORCH_VERSION torchvision pyarrow numpy pillow duckdb datasets tensorboard safetensors"
if "$VENV/bin/python" - <<PYEOF 2>/dev/null
import importlib, sys
import torch, torchvision, pyarrow, numpy, PIL, duckdb, datasets, tensorboard, safetensors
sys.exit(0 if torch.__version__.split('+')[0] == "$TORCH_VERSION" else 1)
PYEOF
then
    say "venv ready: $("$VENV/bin/python" -c 'import torch; print("torch", torch.__version__)')"
else
    say "installing $want into $VENV (about a minute, ~4.6 GB)"
    # Serialise concurrent set-ups (two clones, CI + a developer) on one cache.
    exec 9>"$CACHE/.lock"
    flock 9
    "$VENV/bin/pip" install --disable-pip-version-check -q $want
    flock -u 9
fi
if [ ! -f /usr/include/gloo/config.h ] && [ -z "${GLOO_INCLUDE:-}" ]; then
    say "installing Debian's libgloo-dev (gloo's headers, for lt-glmc's dist module)"
    SUDO=""; [ "$(id -u)" = 0 ] || SUDO="sudo"
    $SUDO apt-get update -qq && $SUDO apt-get install -y -qq libgloo-dev >/dev/null
fi
if ! command -v cmake >/dev/null || ! command -v nasm >/dev/null; then
    say "installing Debian's cmake and nasm (lt-vision builds libjpeg-turbo for loader.jpeg_draft)"
    SUDO=""; [ "$(id -u)" = 0 ] || SUDO="sudo"
    $SUDO apt-get update -qq && $SUDO apt-get install -y -qq cmake nasm >/dev/null
fi
# CUDA's crt/ and nv/target headers beside the wheel's CUDA runtime headers
# (site-packages/nvidia/*/include), for lt-glmc's NCCL backend. Prints the
# wheel's CUDA version (or none) and ok / missing; imports nothing heavy.
cuda_headers() {
    "$VENV/bin/python" - <<'PYEOF'
import glob, importlib.util, os, runpy
torch_dir = importlib.util.find_spec("torch").submodule_search_locations[0]
cuda = runpy.run_path(os.path.join(torch_dir, "version.py")).get("cuda") or "none"
inc = glob.glob(os.path.join(os.path.dirname(torch_dir), "nvidia", "*", "include"))
has = lambda rel: any(os.path.exists(os.path.join(i, rel)) or os.path.exists(os.path.join(i, "cccl", rel)) for i in inc)
print(cuda, "ok" if has("crt/host_config.h") and has("nv/target") else "missing")
PYEOF
}
set -- $(cuda_headers)
if [ "${1:-none}" = none ]; then
    say "torch has no CUDA: lt-glmc builds without its NCCL backend"
elif [ "${2:-}" != ok ]; then
    say "installing nvidia-cuda-crt and nvidia-cuda-cccl $1.* (CUDA's crt/ and nv/ headers, for lt-glmc's NCCL backend)"
    exec 9>"$CACHE/.lock"
    flock 9
    # Not fatal: without them lt-glmc builds with Gloo only (build.rs warns).
    "$VENV/bin/pip" install --disable-pip-version-check -q "nvidia-cuda-crt==$1.*" "nvidia-cuda-cccl==$1.*" \
        || say "warning: could not install CUDA's headers; lt-glmc will build without NCCL"
    flock -u 9
fi
say "libtorch: $("$VENV/bin/python" -c 'import torch,os;print(os.path.join(os.path.dirname(torch.__file__),"lib"))')"
