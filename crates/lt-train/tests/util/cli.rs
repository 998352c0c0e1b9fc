//! Running the lt-train binary from lt-train's own tests (its
//! `CARGO_BIN_EXE_lt-train` exists only in this package).

use std::path::Path;
use std::process::{Command, Output};

pub fn lt_train(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_lt-train")).args(args).output().unwrap()
}

/// stdout then stderr.
pub fn text(o: &Output) -> String {
    format!("{}{}", String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr))
}

pub fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}
