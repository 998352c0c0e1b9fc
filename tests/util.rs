//! Shared helpers of the end-to-end tests: build shards through lt-build's
//! library entry point (what the `lt-build` binary runs after parsing its
//! flags; its flag parsing is tested in crates/lt-build/tests/cli.rs), so
//! no test has to build or locate a binary of another package.

use lt_build::sources::{self, SourceOptions};
use lt_build::{BuildOptions, NoProgress};
use lt_shards::Manifest;
use std::path::Path;

/// Builds `kind` at `path` into `out` with `opts` (as `lt-build KIND PATH
/// … -o OUT` does) and returns the manifest written.
pub fn lt_build(kind: &str, path: Option<&Path>, src: &SourceOptions, opts: &BuildOptions, out: &Path) -> Manifest {
    let mut source = sources::open(kind, path, src).unwrap_or_else(|e| panic!("lt-build {kind}: {e}"));
    let report = lt_build::build(source.as_mut(), out, opts, &NoProgress).unwrap_or_else(|e| panic!("lt-build {kind}: {e}"));
    assert_eq!(report.manifest, Manifest::load(out).unwrap(), "the manifest returned is the one written");
    report.manifest
}

/// `true` when the environment variable is `1` (CI sets the LT_REQUIRE_* ones).
pub fn required(var: &str) -> bool {
    std::env::var(var).is_ok_and(|v| v == "1")
}
