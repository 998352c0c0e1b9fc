//! `lt-bench gpu | loader | e2e` run end to end on the CPU with a tiny model
//! and tiny shards: each prints its one-line summary and a JSON line, and
//! refuses what the CPU cannot do (fp16 autocast).

use std::path::Path;
use std::process::Command;

use lt_core::rng::Rng;
use lt_shards::{Manifest, Row, Split, SplitWriter, WriterOptions};
use lt_vision::codec::{encode_png, Decoded};

const BIN: &str = env!("CARGO_BIN_EXE_lt-bench");

/// A seeded long-tailed shard set of `side`×`side` RGB PNGs.
fn write_shards(dir: &Path, counts: &[usize], side: u32) {
    std::fs::create_dir_all(dir).unwrap();
    let names: Vec<String> = (0..counts.len()).map(|c| format!("c{c}")).collect();
    let mut rng = Rng::new(11);
    let mut builder = Manifest::builder("bench_cli test", &names).source(lt_shards::SourceInfo::new("test-synth", "")).seed(11).channels(
        3,
        vec![0.5; 3],
        vec![0.25; 3],
    );
    for (split, counts) in [(Split::Train, counts.to_vec()), (Split::Test, vec![1; counts.len()])] {
        let mut rows = Vec::new();
        for (c, &n) in counts.iter().enumerate() {
            for i in 0..n {
                let px: Vec<u8> = (0..side * side * 3).map(|_| rng.below(256) as u8).collect();
                let image = encode_png(&Decoded { width: side, height: side, channels: 3, pixels: px }).unwrap();
                let source_index = rows.len() as i64;
                rows.push(Row {
                    image,
                    path: format!("{c}/{i}.png"),
                    label: c as i64,
                    source_index,
                    height: side as i32,
                    width: side as i32,
                });
            }
        }
        rng.shuffle(&mut rows);
        let mut w = SplitWriter::try_new(dir, split, &names, &counts, WriterOptions::default().with_row_group_rows(32)).unwrap();
        w.write_rows(rows).unwrap();
        builder = builder.split(split, &counts, w.finish().unwrap());
    }
    builder.build().unwrap().save(dir).unwrap();
}

fn run(args: &[&str]) -> (bool, String, String) {
    let out = Command::new(BIN).args(args).output().expect("run lt-bench");
    (out.status.success(), String::from_utf8_lossy(&out.stdout).into_owned(), String::from_utf8_lossy(&out.stderr).into_owned())
}

fn result_json(stdout: &str) -> serde_json::Value {
    let line = stdout.lines().find_map(|l| l.strip_prefix("RESULT ")).unwrap_or_else(|| panic!("no RESULT line in {stdout}"));
    serde_json::from_str(line).unwrap()
}

const TINY: &[&str] = &[
    "--model",
    "resnet32",
    "--width",
    "4",
    "--batch-size",
    "4",
    "--steps",
    "2",
    "--warmup",
    "1",
    "--device",
    "cpu",
    "--torch-threads",
    "1",
];

#[test]
fn gpu_subcommand_on_cpu_prints_summary_and_json() {
    let dir = tempfile::tempdir().unwrap();
    let json = dir.path().join("gpu.jsonl");
    for fmt in ["nchw", "nhwc"] {
        let mut args = vec!["gpu"];
        args.extend_from_slice(TINY);
        args.extend_from_slice(&["--size", "16", "--classes", "5", "--memory-format", fmt, "--json", json.to_str().unwrap()]);
        let (ok, out, err) = run(&args);
        assert!(ok, "lt-bench gpu failed: {err}");
        let first = out.lines().next().unwrap();
        assert!(first.starts_with("GLMC step [lt-glmc] resnet32-w4 B=4 (8 img/step) 16px fp32"), "{first}");
        assert!(first.contains("images/s") && first.contains(fmt), "{first}");
        let r = result_json(&out);
        assert_eq!(r["tool"], "lt-bench gpu");
        assert_eq!(r["images_per_step"], 8);
        assert_eq!(r["steps"], 2);
        assert_eq!(r["memory_format"], fmt);
        assert!(r["images_per_s"].as_f64().unwrap() > 0.0);
        assert!(r["last_loss"].as_f64().unwrap().is_finite());
    }
    let lines = std::fs::read_to_string(&json).unwrap();
    assert_eq!(lines.lines().count(), 2, "one JSON line per run, appended");
}

#[test]
fn amp_is_refused_on_cpu_with_a_clear_error() {
    let mut args = vec!["gpu"];
    args.extend_from_slice(TINY);
    args.extend_from_slice(&["--size", "16", "--precision", "amp"]);
    let (ok, _out, err) = run(&args);
    assert!(!ok);
    assert!(err.contains("amp") && err.contains("CUDA"), "{err}");
    let (ok, _out, err) = run(&["gpu", "--model", "vgg16", "--device", "cpu"]);
    assert!(!ok && err.contains("vgg16"), "{err}");
}

#[test]
fn loader_and_e2e_subcommands_run_from_shards() {
    let dir = tempfile::tempdir().unwrap();
    let shards = dir.path().join("shards");
    write_shards(&shards, &[20, 10, 6, 4], 16);
    let json = dir.path().join("e2e.jsonl");

    let (ok, out, err) = run(&[
        "loader",
        "--shards",
        shards.to_str().unwrap(),
        "--pipeline",
        "cifar",
        "--threads",
        "1",
        "--batch-size",
        "4",
        "--sampler",
        "paired:0.2",
        "--steps",
        "2",
        "--warmup",
        "1",
    ]);
    assert!(ok, "lt-bench loader failed: {err}");
    let r = result_json(&out);
    assert_eq!(r["slots"], 8);
    assert!(r["images_per_s"].as_f64().unwrap() > 0.0);

    let mut args = vec!["e2e", "--shards", shards.to_str().unwrap(), "--pipeline", "cifar", "--threads", "1"];
    args.extend_from_slice(TINY);
    args.extend_from_slice(&["--memory-format", "nhwc", "--json", json.to_str().unwrap()]);
    let (ok, out, err) = run(&args);
    assert!(ok, "lt-bench e2e failed: {err}");
    let first = out.lines().next().unwrap();
    assert!(first.starts_with("e2e resnet32-w4 B=4 3x16x16 fp32 nhwc cifar 1 threads on cpu: e2e "), "{first}");
    assert!(first.contains("e2e/gpu") && first.contains("loader/gpu"), "{first}");
    let r = result_json(&out);
    let (e, g, l) =
        (r["e2e_images_per_s"].as_f64().unwrap(), r["gpu_images_per_s"].as_f64().unwrap(), r["loader_images_per_s"].as_f64().unwrap());
    assert!(e > 0.0 && g > 0.0 && l > 0.0, "{r}");
    assert!((r["e2e_over_gpu"].as_f64().unwrap() - e / g).abs() < 1e-9);
    assert!((r["loader_over_gpu"].as_f64().unwrap() - l / g).abs() < 1e-9);
    assert_eq!(r["gpu"]["classes"], 4, "classes come from the manifest");
    assert_eq!(r["pinned"], false, "no pinned memory without CUDA");
    assert_eq!(r["e2e"]["steps"], 2);
    assert_eq!(std::fs::read_to_string(&json).unwrap().lines().count(), 1);

    // A missing shard directory is an error naming it.
    let mut args = vec!["e2e", "--shards", "/nonexistent/shards"];
    args.extend_from_slice(TINY);
    let (ok, _out, err) = run(&args);
    assert!(!ok && err.contains("/nonexistent/shards"), "{err}");
}
