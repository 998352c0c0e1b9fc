//! Mid-epoch checkpoints (`lt-train --checkpoint-every N`): a run
//! killed with SIGKILL in the middle of an epoch resumes from its last
//! mid-epoch checkpoint and ends bit-identical (weights, momentum, every
//! metrics line) to a run that was never interrupted.

mod util;

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use lt_glmc::tch::Tensor;
use util::{tiny_recipe, write_synth};

fn lt_train() -> Command {
    Command::new(env!("CARGO_BIN_EXE_lt-train"))
}

fn tensors(path: &Path) -> Vec<(String, Tensor)> {
    let mut v = Tensor::read_safetensors(path).unwrap();
    v.sort_by(|a, b| a.0.cmp(&b.0));
    v
}

fn step_in_epoch(run: &Path) -> Option<u64> {
    let text = std::fs::read_to_string(run.join("checkpoint/state.json")).ok()?;
    let v: serde_json::Value = serde_json::from_str(&text).ok()?;
    v["step_in_epoch"].as_u64()
}

fn args<'a>(shards: &'a str, recipe: &'a str, out: &'a str) -> Vec<&'a str> {
    vec![shards, "--recipe", recipe, "--out", out, "--device", "cpu", "--threads", "1", "--quiet"]
}

#[test]
fn kill_mid_epoch_then_resume_equals_an_uninterrupted_run() {
    let tmp = tempfile::tempdir().unwrap();
    let shards = tmp.path().join("shards");
    // 120 images, batch 8: 15 steps per epoch.
    write_synth(&shards, &[64, 32, 16, 8], 4, 16, 3, 5);
    let recipe = tmp.path().join("tiny.toml");
    std::fs::write(&recipe, tiny_recipe(3).to_toml_string().unwrap()).unwrap();
    let (sh, rc) = (shards.to_str().unwrap(), recipe.to_str().unwrap());

    let reference = tmp.path().join("reference");
    let st = lt_train().args(args(sh, rc, reference.to_str().unwrap())).status().unwrap();
    assert!(st.success());

    // Kill right after a mid-epoch checkpoint appears; retry if the kill
    // happened to land after an epoch-end checkpoint instead.
    let mut resumed_mid_epoch = false;
    for attempt in 0..3 {
        let run = tmp.path().join(format!("killed-{attempt}"));
        let mut a = args(sh, rc, run.to_str().unwrap());
        a.extend(["--checkpoint-every", "2"]);
        let mut child = lt_train().args(&a).stdout(Stdio::null()).stderr(Stdio::null()).spawn().unwrap();
        let t0 = Instant::now();
        while step_in_epoch(&run).unwrap_or(0) == 0 && t0.elapsed() < Duration::from_secs(120) {
            if child.try_wait().unwrap().is_some() {
                break;
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        child.kill().ok(); // SIGKILL
        child.wait().unwrap();
        let at = step_in_epoch(&run).unwrap_or(0);
        let st = lt_train().args([sh, "--resume", run.to_str().unwrap(), "--device", "cpu", "--threads", "1", "--quiet"]).status().unwrap();
        assert!(st.success(), "resume after a kill at step {at} of an epoch failed");

        for f in ["model.safetensors", "optimizer.safetensors"] {
            let (x, y) = (tensors(&reference.join("checkpoint").join(f)), tensors(&run.join("checkpoint").join(f)));
            assert_eq!(x.len(), y.len());
            for ((nx, tx), (ny, ty)) in x.iter().zip(&y) {
                assert_eq!(nx, ny);
                assert!(tx.equal(ty), "{f}: {nx} differs after a kill at step {at} and a resume");
            }
        }
        // Every epoch's losses and accuracies, including the epoch that was
        // cut (its sums came back with the checkpoint); times may differ.
        let strip = |p: &Path| -> Vec<serde_json::Value> {
            std::fs::read_to_string(p.join("metrics.jsonl"))
                .unwrap()
                .lines()
                .map(|l| {
                    let mut v: serde_json::Value = serde_json::from_str(l).unwrap();
                    let o = v.as_object_mut().unwrap();
                    o.remove("train_seconds");
                    o.remove("train_images_per_s");
                    v
                })
                .collect()
        };
        assert_eq!(strip(&reference), strip(&run), "metrics differ after a kill at step {at}");
        if at > 0 {
            resumed_mid_epoch = true;
            break;
        }
    }
    assert!(resumed_mid_epoch, "no attempt was killed after a mid-epoch checkpoint");
}

#[test]
fn checkpoint_every_zero_is_refused() {
    let out = lt_train().args(["shards", "--checkpoint-every", "0"]).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("--checkpoint-every"));
}
