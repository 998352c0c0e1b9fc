//! Data-parallel lt-train across real processes (`lt_train::cluster`): under
//! torchrun from the venv of tools/setup.sh (skipped without
//! $LT_GLMC_PYTHON unless LT_REQUIRE_PYTHON=1), and as ranks started by the
//! test with torchrun's variables.
//!
//! - two ranks train, rank 0 alone writes the run, and its evaluation is a
//!   single-process evaluation of its checkpoint;
//! - kill -9 of one rank mid-epoch: torchrun restarts the group, which
//!   resumes (`--auto-resume`), and the run's metrics and weights are those
//!   of an uninterrupted run;
//! - a rank that dies, or hangs (SIGSTOP), makes the other exit non-zero
//!   with a message instead of hanging.
//!
//! No assertion is about time: a deadline far above the collective timeout
//! only turns a hang into a failure.

mod util;

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

#[path = "util/cli.rs"]
#[allow(dead_code)]
mod cli;
use cli::{lt_train, s, text};
use util::{free_port, torchrun_python as python};

/// A run's processes are killed (and the test fails) after this long.
const DEADLINE: Duration = Duration::from_secs(600);

/// Synthetic shards (68 training images of 3 classes, 18 test images) and
/// the tiny GLMC recipe for `epochs` with a global batch of 8: 4 paired
/// slots per rank at world size 2, and a last step of 4 per stream (2 per
/// rank).
fn data(tmp: &Path, epochs: usize) -> (PathBuf, PathBuf) {
    let shards = tmp.join("s");
    util::write_synth(&shards, &[40, 20, 8], 6, 8, 3, 21);
    let recipe = tmp.join("r.toml");
    let mut r = util::tiny_recipe(epochs);
    r.log.tensorboard = false;
    fs::write(&recipe, r.to_toml_string().unwrap()).unwrap();
    (shards, recipe)
}

fn train_args<'a>(shards: &'a Path, recipe: &'a Path, run: &'a Path) -> Vec<&'a str> {
    vec![s(shards), "--recipe", s(recipe), "--device", "cpu", "--threads", "1", "-q", "--out", s(run)]
}

/// `torchrun --standalone --nproc-per-node 2 --no-python lt-train ARGS`,
/// its output into `log`.
fn torchrun(py: &Path, restarts: u32, args: &[&str], log: &Path) -> Child {
    let out = fs::File::create(log).unwrap();
    Command::new(py)
        .args(["-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2", "--monitor-interval", "0.2"])
        .args(["--max-restarts", &restarts.to_string(), "--no-python", env!("CARGO_BIN_EXE_lt-train")])
        .args(args)
        .env("OMP_NUM_THREADS", "1")
        .env("GLOO_SOCKET_IFNAME", "lo")
        .stdin(Stdio::null())
        .stdout(out.try_clone().unwrap())
        .stderr(out)
        .spawn()
        .unwrap()
}

/// Waits for `child` up to [`DEADLINE`] (then kills it and fails); returns
/// whether it succeeded.
fn finish(mut child: Child, log: &Path) -> bool {
    let t = Instant::now();
    loop {
        if let Some(st) = child.try_wait().unwrap() {
            return st.success();
        }
        if t.elapsed() > DEADLINE {
            let _ = child.kill();
            panic!("no exit after {DEADLINE:?}:\n{}", fs::read_to_string(log).unwrap_or_default());
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn json(p: &Path) -> Value {
    serde_json::from_str(&fs::read_to_string(p).unwrap_or_else(|e| panic!("{}: {e}", p.display()))).unwrap()
}

/// metrics.jsonl without the clock (train_seconds, images/s).
fn metrics(run: &Path) -> Vec<Value> {
    fs::read_to_string(run.join("metrics.jsonl"))
        .unwrap()
        .lines()
        .map(|l| {
            let mut v: Value = serde_json::from_str(l).unwrap();
            let o = v.as_object_mut().unwrap();
            o.remove("train_seconds");
            o.remove("train_images_per_s");
            v
        })
        .collect()
}

/// Two evaluation reports are the same: every count-derived field exactly,
/// the ECE to 1e-6 (the ranks run the network on smaller batches, whose
/// kernels round differently, and their confidence sums are added in
/// another order).
fn same_eval(a: &Value, b: &Value) {
    let (mut a, mut b) = (a.clone(), b.clone());
    let (ea, eb) = (a["ece"].as_f64().unwrap(), b["ece"].as_f64().unwrap());
    assert!((ea - eb).abs() < 1e-6, "ece {ea} vs {eb}");
    a["ece"] = Value::Null;
    b["ece"] = Value::Null;
    assert_eq!(a, b);
}

#[test]
fn torchrun_two_ranks_train_and_rank_0_writes_the_run() {
    let Some(py) = python() else { return };
    let tmp = tempfile::tempdir().unwrap();
    let (shards, recipe) = data(tmp.path(), 2);
    let run = tmp.path().join("run");
    let log = tmp.path().join("torchrun.log");
    let ok = finish(torchrun(&py, 0, &train_args(&shards, &recipe, &run), &log), &log);
    let out = fs::read_to_string(&log).unwrap();
    assert!(ok, "torchrun failed:\n{out}");
    assert!(out.contains("2 ranks"), "rank 0 announces the group:\n{out}");
    // One run directory, written once: 2 epochs, one checkpoint, the report.
    let m = metrics(&run);
    assert_eq!(m.len(), 2, "{m:?}");
    assert_eq!(m.iter().map(|r| r["epoch"].as_u64().unwrap()).collect::<Vec<_>>(), [0, 1]);
    // 68 rows in global steps of 8: 9 steps, the last one 4 per stream.
    assert!(m.iter().all(|r| r["steps"] == 9 && r["loss"].as_f64().unwrap().is_finite()), "{m:?}");
    let names: Vec<String> = fs::read_dir(&run).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect();
    assert_eq!(names.iter().filter(|n| n.starts_with("metrics")).count(), 1, "{names:?}");
    let state = json(&run.join("checkpoint").join("state.json"));
    assert_eq!((state["epoch"].as_u64(), state["step"].as_u64()), (Some(2), Some(18)));
    // The sharded evaluation is the single-process evaluation of the checkpoint.
    let o = lt_train(&["eval", s(&run), "--device", "cpu", "--threads", "1"]);
    assert!(o.status.success(), "{}", text(&o));
    let ev = json(&run.join("eval").join("eval.json"));
    let rep = json(&run.join("report.json"));
    same_eval(&ev["heads"]["g_cb"], &rep["final"]);
    assert_eq!(ev["heads"]["g_cb"]["samples"], 18);
}

/// The pids of the lt-train processes torchrun started, by RANK.
fn ranks_of(torchrun: u32) -> Vec<(usize, u32)> {
    let mut found = Vec::new();
    for e in fs::read_dir("/proc").unwrap().flatten() {
        let Ok(pid) = e.file_name().to_string_lossy().parse::<u32>() else { continue };
        let Ok(stat) = fs::read_to_string(format!("/proc/{pid}/stat")) else { continue };
        // ppid is the 2nd field after the parenthesised command name.
        let ppid = stat.rsplit_once(')').and_then(|(_, rest)| rest.split_whitespace().nth(1)).and_then(|p| p.parse::<u32>().ok());
        if ppid != Some(torchrun) {
            continue;
        }
        let Ok(env) = fs::read(format!("/proc/{pid}/environ")) else { continue };
        let rank = env.split(|&b| b == 0).find_map(|kv| kv.strip_prefix(b"RANK=")).and_then(|r| std::str::from_utf8(r).ok()?.parse().ok());
        if let Some(r) = rank {
            found.push((r, pid));
        }
    }
    found
}

#[test]
fn torchrun_restarts_after_kill_9_of_a_rank_and_ends_as_an_uninterrupted_run() {
    let Some(py) = python() else { return };
    let tmp = tempfile::tempdir().unwrap();
    let epochs = 6;
    let (shards, recipe) = data(tmp.path(), epochs);
    let (a, b) = (tmp.path().join("a"), tmp.path().join("b"));
    let every = ["--checkpoint-every", "3", "--auto-resume"];
    // Uninterrupted.
    let log_a = tmp.path().join("a.log");
    let args_a: Vec<&str> = train_args(&shards, &recipe, &a).into_iter().chain(every).collect();
    assert!(finish(torchrun(&py, 0, &args_a, &log_a), &log_a), "{}", fs::read_to_string(&log_a).unwrap());
    // Interrupted: rank 1 is killed once the first mid-epoch checkpoint is
    // on disk (every rank waits for it), long before the 54 steps are done.
    let log_b = tmp.path().join("b.log");
    let args_b: Vec<&str> = train_args(&shards, &recipe, &b).into_iter().chain(every).collect();
    let child = torchrun(&py, 1, &args_b, &log_b);
    let state = b.join("checkpoint").join("state.json");
    let t = Instant::now();
    let killed = loop {
        let mid =
            fs::read_to_string(&state).ok().and_then(|t| serde_json::from_str::<Value>(&t).ok()).is_some_and(|v| v["step_in_epoch"] != 0);
        if mid {
            let pids = ranks_of(child.id());
            if let Some(&(_, pid)) = pids.iter().find(|(r, _)| *r == 1) {
                // SAFETY: kill(2) on a pid we just found, a child of our child.
                assert_eq!(unsafe { libc::kill(pid as i32, libc::SIGKILL) }, 0);
                break json(&state);
            }
        }
        assert!(t.elapsed() < DEADLINE, "no mid-epoch checkpoint:\n{}", fs::read_to_string(&log_b).unwrap_or_default());
        std::thread::sleep(Duration::from_millis(1));
    };
    let ok = finish(child, &log_b);
    let out = fs::read_to_string(&log_b).unwrap();
    assert!(ok, "the restarted run failed:\n{out}");
    assert!(out.contains("continuing"), "the restart resumed from the checkpoint:\n{out}");
    assert!(killed["epoch"].as_u64().unwrap() < epochs as u64 - 1, "killed too late: {killed}");
    // Same epochs, losses and evaluations; same final weights and momentum.
    assert_eq!(metrics(&b), metrics(&a));
    for f in fs::read_dir(a.join("checkpoint")).unwrap().flatten() {
        let name = f.file_name();
        if name.to_string_lossy().ends_with(".safetensors") {
            assert!(fs::read(f.path()).unwrap() == fs::read(b.join("checkpoint").join(&name)).unwrap(), "{name:?} differs");
        }
    }
}

/// Two ranks started with torchrun's variables (rank 0 hosts the store).
fn start_ranks(args: &[&str], port: u16, dir: &Path) -> Vec<(Child, PathBuf)> {
    start_ranks_with(|_| args.iter().map(|a| a.to_string()).collect(), port, dir)
}

/// [`start_ranks`] with each rank's own arguments.
fn start_ranks_with(args: impl Fn(usize) -> Vec<String>, port: u16, dir: &Path) -> Vec<(Child, PathBuf)> {
    (0..2)
        .map(|rank| {
            let log = dir.join(format!("rank{rank}.log"));
            let out = fs::File::create(&log).unwrap();
            let child = Command::new(env!("CARGO_BIN_EXE_lt-train"))
                .args(args(rank))
                .env("RANK", rank.to_string())
                .env("LOCAL_RANK", rank.to_string())
                .env("WORLD_SIZE", "2")
                .env("MASTER_ADDR", "127.0.0.1")
                .env("MASTER_PORT", port.to_string())
                .env("GLOO_SOCKET_IFNAME", "lo")
                .stdin(Stdio::null())
                .stdout(out.try_clone().unwrap())
                .stderr(out)
                .spawn()
                .unwrap();
            (child, log)
        })
        .collect()
}

/// A rank that dies (SIGKILL) or hangs (SIGSTOP) once training is under
/// way: the other exits non-zero with a message naming the failed
/// collective, within the collective timeout, instead of hanging.
#[test]
fn a_dead_or_hung_rank_fails_the_other_instead_of_hanging() {
    let tmp = tempfile::tempdir().unwrap();
    let (shards, recipe) = data(tmp.path(), 500);
    for (sig, what) in [(libc::SIGKILL, "dead"), (libc::SIGSTOP, "hung")] {
        let run = tmp.path().join(what);
        let mut args = train_args(&shards, &recipe, &run);
        args.extend(["--dist-timeout", "3", "--checkpoint-every", "2"]);
        let mut ranks = start_ranks(&args, free_port(), tmp.path());
        let state = run.join("checkpoint").join("state.json");
        let t = Instant::now();
        while !state.is_file() {
            assert!(t.elapsed() < DEADLINE, "no checkpoint:\n{}", fs::read_to_string(&ranks[0].1).unwrap_or_default());
            std::thread::sleep(Duration::from_millis(5));
        }
        // SAFETY: kill(2) on our own child.
        assert_eq!(unsafe { libc::kill(ranks[1].0.id() as i32, sig) }, 0);
        let (mut r0, log0) = ranks.remove(0);
        let t = Instant::now();
        let status = loop {
            if let Some(st) = r0.try_wait().unwrap() {
                break st;
            }
            if t.elapsed() > DEADLINE {
                let _ = r0.kill();
                panic!("{what} peer: rank 0 hangs:\n{}", fs::read_to_string(&log0).unwrap());
            }
            std::thread::sleep(Duration::from_millis(20));
        };
        let msg = fs::read_to_string(&log0).unwrap();
        eprintln!("{what} peer, rank 0 after {:?}: {msg}", t.elapsed());
        assert_eq!(status.code(), Some(2), "{what} peer: rank 0 exits 2 with a message, not a panic or an abort:\n{msg}");
        assert!(msg.contains("error:") && !msg.contains("panicked"), "{what} peer:\n{msg}");
        let (mut r1, _) = ranks.remove(0);
        let _ = r1.kill(); // SIGKILL also ends a stopped process
        let _ = r1.wait();
    }
}

/// A run resumes at another world size with the same global batch: one
/// process trains epoch 0, two ranks under torchrun train epoch 1 from its
/// checkpoint (same batches; only the BatchNorm batch statistics are per
/// rank).
#[test]
fn a_single_process_run_resumes_under_torchrun() {
    let Some(py) = python() else { return };
    let tmp = tempfile::tempdir().unwrap();
    let (shards, recipe) = data(tmp.path(), 2);
    let run = tmp.path().join("run");
    let mut args = train_args(&shards, &recipe, &run);
    args.extend(["--stop-after", "1"]);
    let o = lt_train(&args);
    assert!(o.status.success(), "{}", text(&o));
    let first = metrics(&run);
    assert_eq!(first.len(), 1);
    let log = tmp.path().join("torchrun.log");
    let args = [s(&shards), "--resume", s(&run), "--device", "cpu", "--threads", "1", "-q"];
    assert!(finish(torchrun(&py, 0, &args, &log), &log), "{}", fs::read_to_string(&log).unwrap());
    let m = metrics(&run);
    assert_eq!(m.len(), 2);
    assert_eq!(m[0], first[0], "the epoch before the resume is kept as it was");
    assert_eq!((m[1]["epoch"].as_u64(), m[1]["steps"].as_u64()), (Some(1), Some(9)));
    assert_eq!(json(&run.join("checkpoint").join("state.json"))["step"], 18);
}

/// The global batch must split into equal per-rank batches: every rank
/// stops with a message naming the key, its flag and the world size.
#[test]
fn a_global_batch_the_world_does_not_divide_is_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let (shards, recipe) = data(tmp.path(), 1);
    let run = tmp.path().join("run");
    let mut args = train_args(&shards, &recipe, &run);
    args.extend(["--batch-size", "9", "--dist-timeout", "60"]);
    for (mut child, log) in start_ranks(&args, free_port(), tmp.path()) {
        let st = child.wait().unwrap();
        let msg = fs::read_to_string(&log).unwrap();
        assert_eq!(st.code(), Some(2), "{msg}");
        assert!(msg.contains("train.batch_size (--batch-size)") && msg.contains("WORLD_SIZE=2"), "{msg}");
    }
    assert!(!run.join("checkpoint").exists());
}

/// Ranks given different settings are refused before any step, naming the
/// ranks that differ.
#[test]
fn ranks_with_different_recipes_are_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let (shards, recipe) = data(tmp.path(), 1);
    let run = tmp.path().join("run");
    let args = |rank: usize| {
        let mut a: Vec<String> = train_args(&shards, &recipe, &run).iter().map(|s| s.to_string()).collect();
        a.extend(["--dist-timeout".into(), "60".into(), "--seed".into(), (3 + rank).to_string()]);
        a
    };
    for (mut child, log) in start_ranks_with(args, free_port(), tmp.path()) {
        let st = child.wait().unwrap();
        let msg = fs::read_to_string(&log).unwrap();
        assert_eq!(st.code(), Some(2), "{msg}");
        assert!(msg.contains("rank 1 of 2 has a different recipe from rank 0's"), "{msg}");
    }
    assert!(!run.join("checkpoint").exists());
}

/// `--dist-backend` that cannot work with the model's device is refused by
/// every rank before it joins, naming the flag: NCCL with the model on the
/// CPU (also `--dist-backend nccl --device auto` on a machine without GPUs),
/// Gloo with it on a GPU (only where one is visible).
#[test]
fn a_dist_backend_that_does_not_fit_the_device_is_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let (shards, recipe) = data(tmp.path(), 1);
    let run = tmp.path().join("run");
    let mut args = train_args(&shards, &recipe, &run);
    args.extend(["--dist-timeout", "60", "--dist-backend", "nccl"]);
    for (mut child, log) in start_ranks(&args, free_port(), tmp.path()) {
        let st = child.wait().unwrap();
        let msg = fs::read_to_string(&log).unwrap();
        assert_eq!(st.code(), Some(2), "{msg}");
        assert!(msg.contains("--dist-backend nccl: NCCL reduces tensors on GPUs") && msg.contains("--dist-backend gloo"), "{msg}");
    }
    assert!(!run.exists());
}
