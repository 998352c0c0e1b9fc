//! The `lt-loader-bench` binary: `loader` measures a shard directory, and a
//! bad flag value is refused naming the flag.
#[path = "../../lt-loader/tests/common/mod.rs"]
mod common;

use lt_build::sources::photos::PhotoOptions;
use lt_build::sources::SourceOptions;
use lt_build::{BuildOptions, NoProgress};
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
fn loader_on_photo_shards_and_refusals_name_the_flag() {
    let tmp = tempfile::tempdir().unwrap();
    // One photograph, cut into labelled crops by lt-build's photos source
    // (what tools/loader_bench.sh does with real photographs).
    let photos = tmp.path().join("photos");
    std::fs::create_dir(&photos).unwrap();
    std::fs::write(photos.join("photo.jpg"), lt_vision::codec::encode_jpeg(&common::image(1, 320, 256, 3), 90).unwrap()).unwrap();
    let out = tmp.path().join("shards");
    let opts = SourceOptions {
        photos: PhotoOptions { classes: 4, train_per_class: 12, test_per_class: 0, size: Some(32), ..Default::default() },
        ..Default::default()
    };
    let mut src = lt_build::sources::open("photos", Some(&photos), &opts).unwrap();
    lt_build::build(src.as_mut(), &out, &BuildOptions { imbalance: Some(10.0), ..Default::default() }, &NoProgress).unwrap();
    let m = Manifest::load(&out).unwrap();
    assert_eq!(m.splits[&Split::Test].rows, 0);
    assert!(m.imbalance_factor.is_some_and(|f| f > 1.0), "{:?}", m.imbalance_factor);
    ShardSet::open(&out, Split::Train).unwrap().verify().unwrap();

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
