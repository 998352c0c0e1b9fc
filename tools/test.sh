#!/usr/bin/env bash
# Checks the formatting (rustfmt.toml) and the lints (clippy, warnings are
# errors), then runs every test of the workspace, libtorch crates included,
# after the idempotent set-up. This is the README's second command and what
# CI runs. Arguments go to `cargo test` (e.g. a test name filter).
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
echo "[test] cargo fmt --all --check"
cargo fmt --all --check
echo "[test] cargo clippy --workspace --all-targets -- -D warnings"
cargo clippy --workspace --all-targets --quiet -- -D warnings
cargo test --workspace --no-fail-fast "$@"
