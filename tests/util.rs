//! Shared helpers of the end-to-end tests (in the spirit of ripgrep's
//! `tests/util.rs`): locate or build the workspace binaries, run them, and
//! report their output on failure.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// The workspace's target directory (the test binary lives in `target/<profile>/deps`).
pub fn target_dir() -> PathBuf {
    let exe = std::env::current_exe().expect("current exe");
    exe.parent().and_then(Path::parent).expect("target/<profile>").to_path_buf()
}

/// Path to a workspace binary, building its package first when it is missing
/// (`cargo test --workspace` builds it already).
pub fn cargo_bin(name: &str, package: &str) -> PathBuf {
    let p = target_dir().join(name);
    if !p.exists() {
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
        let st = Command::new(cargo).args(["build", "-p", package, "--bin", name]).status().expect("run cargo");
        assert!(st.success(), "cargo build -p {package} failed");
    }
    p
}

/// Runs a command and panics with its output if it fails.
pub fn run_ok(cmd: &mut Command) -> Output {
    let o = cmd.output().expect("spawn");
    assert!(
        o.status.success(),
        "{cmd:?} failed with {}:\n{}{}",
        o.status,
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
    o
}

/// `true` when the environment variable is `1` (CI sets the LT_REQUIRE_* ones).
pub fn required(var: &str) -> bool {
    std::env::var(var).is_ok_and(|v| v == "1")
}
