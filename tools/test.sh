#!/usr/bin/env bash
# Runs every test of the workspace, libtorch crate included, after the
# idempotent set-up. This is the README's second command and what CI runs.
set -euo pipefail
cd "$(dirname "$0")/.."
bash tools/setup.sh
. tools/env.sh
# Real data checked in CI: Debian's Fashion-MNIST (IDX files).
if [ ! -d /usr/share/datasets/fashion-mnist ]; then
    echo "[test] installing Debian's dataset-fashion-mnist"
    SUDO=""; [ "$(id -u)" = 0 ] || SUDO="sudo"
    $SUDO apt-get update -qq && $SUDO apt-get install -y -qq dataset-fashion-mnist >/dev/null
fi
export LT_REQUIRE_FASHION_MNIST=1
export LT_REQUIRE_PYTHON=1
cargo test --workspace --no-fail-fast "$@"
