//! The `lt-loader-bench` binary: `make-shards` writes a directory that loads
//! and verifies, `loader` measures it, and an existing output or a bad flag
//! value is refused naming the flag.
#[path = "../../lt-loader/tests/common/mod.rs"]
mod common;

use lt_shards::{Manifest, ShardSet, Split};
use std::path::Path;
use std::process::{Command, Output};

fn bench(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_lt-loader-bench")).args(args).output().unwrap()
}

fn text(o: &Output) -> String {
    format!("{}{}", String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr))
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

#[test]
fn make_shards_then_loader_and_refusals_name_the_flag() {
    let tmp = tempfile::tempdir().unwrap();
    // One photograph of at least 256 px (make-shards skips smaller ones).
    let photos = tmp.path().join("photos");
    std::fs::create_dir(&photos).unwrap();
    std::fs::write(photos.join("photo.jpg"), lt_vision::codec::encode_jpeg(&common::image(1, 320, 256, 3), 90).unwrap()).unwrap();
    let out = tmp.path().join("shards");
    let make = ["make-shards", "--images", s(&photos), "-o", s(&out), "--count", "24", "--classes", "4", "--size", "32"];
    let o = bench(&make);
    assert!(o.status.success(), "{}", text(&o));
    let m = Manifest::load(&out).unwrap();
    assert_eq!((m.splits[&Split::Train].rows, m.splits[&Split::Test].rows), (24, 0));
    assert_eq!(m.class_counts(Split::Train).iter().sum::<usize>(), 24);
    assert!(m.tool_version.starts_with("lt-loader-bench "), "{}", m.tool_version);
    assert!(m.imbalance_factor.is_some_and(|f| f > 1.0), "{:?}", m.imbalance_factor);
    ShardSet::open(&out, Split::Train).unwrap().verify().unwrap();

    // An existing output: lt-shards names the setting, the binary its flag.
    let o = bench(&make);
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    assert!(text(&o).contains("set overwrite to replace it (flag --overwrite)"), "{}", text(&o));

    let json = tmp.path().join("runs.jsonl");
    let loader = ["loader", "--shards", s(&out), "--threads", "1", "--batch-size", "4", "--steps", "2", "--warmup", "1"];
    let o = bench(&[&loader[..], &["--json", s(&json)]].concat());
    assert!(o.status.success(), "{}", text(&o));
    assert!(String::from_utf8_lossy(&o.stdout).lines().any(|l| l.starts_with("RESULT {")), "{}", text(&o));
    assert_eq!(std::fs::read_to_string(&json).unwrap().lines().count(), 1);

    // Values the library refuses by its setting's name carry the flag.
    for (flag, value) in [("--pipeline", "{not json"), ("--pipeline", "no-such-pipeline"), ("--sampler", "paired:x")] {
        let o = bench(&[&loader[..], &[flag, value]].concat());
        assert_eq!(o.status.code(), Some(2), "{}", text(&o));
        assert!(text(&o).contains(&format!("lt-loader-bench: error: {flag}: ")), "{}", text(&o));
    }
}
