//! Running the lt-train binary from lt-train's own tests (its
//! `CARGO_BIN_EXE_lt-train` exists only in this package).

use std::path::{Path, PathBuf};
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

/// Trains the tiny GLMC recipe (ResNet-32 width 4, 8×8 RGB, 3 classes,
/// evaluated with g_cb) for 2 epochs on synthetic shards through the binary
/// (which writes report.json); returns (shards, run).
pub fn trained(tmp: &Path) -> (PathBuf, PathBuf) {
    let shards = tmp.join("s");
    crate::util::write_synth(&shards, &[40, 20, 8], 6, 8, 3, 21);
    let recipe = tmp.join("r.toml");
    std::fs::write(&recipe, crate::util::tiny_recipe(2).to_toml_string().unwrap()).unwrap();
    let run = tmp.join("run");
    let o = lt_train(&[s(&shards), "--recipe", s(&recipe), "--device", "cpu", "--threads", "1", "-q", "--out", s(&run)]);
    assert!(o.status.success(), "{}", text(&o));
    (shards, run)
}
