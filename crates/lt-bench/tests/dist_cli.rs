//! `lt-bench dist` end to end on the CPU with a tiny model: alone (world 1,
//! the plain step, and `--reducer`), and under torchrun with 2 ranks (from
//! the venv of tools/setup.sh; skipped without $LT_GLMC_PYTHON unless
//! LT_REQUIRE_PYTHON=1). Each checks the JSON line's fields, never a time.

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

const BIN: &str = env!("CARGO_BIN_EXE_lt-bench");

/// A run is killed (and the test fails) after this long.
const DEADLINE: Duration = Duration::from_secs(300);

const TINY: &[&str] = &[
    "dist",
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
    "--sizes-mib",
    "0.25,1",
    "--allreduce-iters",
    "3",
    "--allreduce-warmup",
    "1",
    "--dist-timeout",
    "120",
];

#[path = "../../lt-glmc/tests/util/mod.rs"]
mod util;
use util::torchrun_python as python;

/// Runs `cmd` to completion within [`DEADLINE`]: (success, stdout, stderr).
fn run(mut cmd: Command) -> (bool, String, String) {
    let dir = tempfile::tempdir().unwrap();
    let (out, err) = (dir.path().join("out"), dir.path().join("err"));
    let mut child = cmd
        .env("OMP_NUM_THREADS", "1")
        .env("GLOO_SOCKET_IFNAME", "lo")
        .stdin(Stdio::null())
        .stdout(std::fs::File::create(&out).unwrap())
        .stderr(std::fs::File::create(&err).unwrap())
        .spawn()
        .expect("start lt-bench");
    let t = Instant::now();
    let ok = loop {
        if let Some(st) = child.try_wait().unwrap() {
            break st.success();
        }
        if t.elapsed() > DEADLINE {
            let _ = child.kill();
            let _ = child.wait();
            panic!("no exit after {DEADLINE:?}:\n{}", std::fs::read_to_string(&err).unwrap_or_default());
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    (ok, std::fs::read_to_string(out).unwrap(), std::fs::read_to_string(err).unwrap())
}

fn results(stdout: &str) -> Vec<Value> {
    stdout.lines().filter_map(|l| l.strip_prefix("RESULT ")).map(|l| serde_json::from_str(l).unwrap()).collect()
}

fn positive(v: &Value, key: &str) -> f64 {
    let x = v[key].as_f64().unwrap_or_else(|| panic!("{key} missing or not a number in {v}"));
    assert!(x > 0.0, "{key} = {x} in {v}");
    x
}

/// The fields every `lt-bench dist` line has, for a run of `world` ranks.
fn check_report(r: &Value, world: u64, data_parallel: bool) {
    assert_eq!(r["tool"], "lt-bench dist");
    assert_eq!(r["backend"], "gloo");
    assert_eq!(r["world_size"].as_u64(), Some(world));
    assert_eq!(r["data_parallel"].as_bool(), Some(data_parallel));
    assert_eq!(r["batch_size"].as_u64(), Some(4));
    assert_eq!(r["images_per_step_per_rank"].as_u64(), Some(8));
    let params = positive(r, "params");
    assert_eq!(positive(r, "grad_bytes"), 4.0 * params);
    for key in ["step_ms_median", "step_ms_mean", "images_per_s_per_rank", "images_per_s_total"] {
        positive(r, key);
    }
    let per_rank = r["step_ms_median_per_rank"].as_array().unwrap();
    assert_eq!(per_rank.len() as u64, world);
    assert!(per_rank.iter().all(|m| m.as_f64().unwrap() > 0.0), "{per_rank:?}");
    let ar = r["allreduce"].as_array().unwrap();
    assert_eq!(ar.iter().map(|a| a["bytes"].as_u64().unwrap()).collect::<Vec<_>>(), [1 << 18, 1 << 20]);
    for a in ar {
        for key in ["ms_median", "ms_mean", "algbw_gbps"] {
            positive(a, key);
        }
        assert_eq!(a["iters"].as_u64(), Some(3));
        if world == 1 {
            assert_eq!(a["busbw_gbps"].as_f64(), Some(0.0));
        } else {
            positive(a, "busbw_gbps");
        }
    }
    let step = &r["step"];
    assert_eq!(step["steps"].as_u64(), Some(2));
    assert_eq!(step["model"], "resnet32-w4");
    assert!(step["last_loss"].as_f64().unwrap().is_finite());
}

fn json_lines(p: &Path) -> Vec<Value> {
    std::fs::read_to_string(p).unwrap().lines().map(|l| serde_json::from_str(l).unwrap()).collect()
}

#[test]
fn dist_alone_times_the_plain_step_and_a_one_rank_group() {
    let dir = tempfile::tempdir().unwrap();
    let json = dir.path().join("dist.jsonl");
    for reducer in [false, true] {
        let mut cmd = Command::new(BIN);
        cmd.args(TINY).arg("--json").arg(&json).env_remove("WORLD_SIZE");
        if reducer {
            cmd.arg("--reducer");
        }
        let (ok, out, err) = run(cmd);
        assert!(ok, "lt-bench dist failed:\n{out}\n{err}");
        assert!(out.contains("| all-reduce f32 (MiB) |"), "{out}");
        assert!(out.contains(if reducer { "data-parallel (c10d Reducer" } else { "single process (no reducer)" }), "{out}");
        let r = results(&out);
        assert_eq!(r.len(), 1, "{out}");
        check_report(&r[0], 1, reducer);
        assert_eq!(r[0]["torchrun"].as_bool(), Some(false));
    }
    let lines = json_lines(&json);
    assert_eq!(lines.len(), 2);
    assert_eq!(lines[1]["data_parallel"].as_bool(), Some(true));
}

#[test]
fn dist_under_torchrun_with_two_ranks_reports_once_from_rank_0() {
    let Some(py) = python() else { return };
    let dir = tempfile::tempdir().unwrap();
    let json = dir.path().join("dist.jsonl");
    let mut cmd = Command::new(py);
    cmd.args(["-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2", "--monitor-interval", "0.2", "--no-python", BIN])
        .args(TINY)
        .arg("--json")
        .arg(&json);
    let (ok, out, err) = run(cmd);
    assert!(ok, "torchrun lt-bench dist failed:\n{out}\n{err}");
    let r = results(&out);
    assert_eq!(r.len(), 1, "only rank 0 reports:\n{out}");
    check_report(&r[0], 2, true);
    assert_eq!(r[0]["torchrun"].as_bool(), Some(true));
    let lines = json_lines(&json);
    assert_eq!(lines.len(), 1, "only rank 0 appends");
    assert_eq!(lines[0], r[0]);
}
