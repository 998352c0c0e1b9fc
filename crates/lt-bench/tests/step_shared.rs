//! lt-train, lt-bench and the step benchmark run one step: an epoch that
//! lt-train traced (`--trace`) is replayed through `bench::GlmcStepper`
//! (what `lt-bench gpu`, `lt-bench e2e` and `examples/step_bench.rs` time)
//! from the same initial weights, and every step's loss must be the
//! trainer's, bit for bit; so must the weights after the epoch.

#[path = "../../lt-train/tests/util/mod.rs"]
mod util;

use std::path::Path;

use lt_bench::glmc::{GlmcStepper, StepOptions};
use lt_glmc::tch::{Device, Kind, Tensor};
use lt_train::train::{self, Quiet, TrainOptions};
use util::{tiny_recipe, torch_lock, write_synth};

const COUNTS: [usize; 4] = [64, 32, 16, 8];

struct TracedStep {
    x: Tensor,
    y: Tensor,
    loss: f64,
}

fn read_trace(dir: &Path) -> Vec<TracedStep> {
    let pixels = std::fs::read(dir.join("pixels.bin")).unwrap();
    std::fs::read_to_string(dir.join("steps.jsonl"))
        .unwrap()
        .lines()
        .map(|l| {
            let v: serde_json::Value = serde_json::from_str(l).unwrap();
            let shape: Vec<i64> = serde_json::from_value(v["shape"].clone()).unwrap();
            let labels: Vec<i64> = serde_json::from_value(v["labels"].clone()).unwrap();
            let off = v["offset"].as_u64().unwrap() as usize;
            let n: i64 = shape.iter().product();
            let x = Tensor::from_slice(&pixels[off..off + n as usize]).view(shape.as_slice());
            TracedStep { x, y: Tensor::from_slice(&labels), loss: v["loss"]["total"].as_f64().unwrap() }
        })
        .collect()
}

/// Trains `recipe` on `shards` into `out`, tracing into `trace`.
fn traced_run(shards: &Path, out: &Path, trace: &Path, recipe: lt_train::recipe::Recipe) {
    let opts = TrainOptions { trace: Some(trace.into()), ..TrainOptions::new(shards, out, recipe, Device::Cpu) };
    train::train(&opts, &mut Quiet).unwrap();
}

#[test]
fn the_benchmarked_step_is_the_trainers_step() {
    let _g = torch_lock();
    let tmp = tempfile::tempdir().unwrap();
    let (shards, out, trace) = (tmp.path().join("shards"), tmp.path().join("run"), tmp.path().join("trace"));
    write_synth(&shards, &COUNTS, 4, 16, 3, 5);
    let recipe = tiny_recipe(1);
    traced_run(&shards, &out, &trace, recipe.clone());
    let steps = read_trace(&trace);
    assert_eq!(steps.len(), COUNTS.iter().sum::<usize>() / recipe.train.batch_size, "one traced line per step");

    // The benchmark's stepper, set up as the recipe says (epoch 0: α = 1,
    // the schedule's first learning rate), from the traced weights.
    let ds = train::Dataset::open(&shards, 256).unwrap();
    let mut o = StepOptions::for_arch(recipe.model.arch().unwrap(), recipe.train.batch_size, COUNTS.len());
    o.counts = ds.counts.clone();
    o.sgd = recipe.optim.sgd();
    o.loss = recipe.glmc.loss_config();
    o.p = recipe.glmc.p;
    o.beta = recipe.glmc.beta;
    o.alpha = 1.0;
    (o.mean, o.std) = (ds.manifest.mean.clone(), ds.manifest.std.clone());
    o.seed = recipe.train.seed;
    let mut stepper = GlmcStepper::try_new(o, Device::Cpu).unwrap();
    stepper.vs.load(trace.join("init.safetensors")).unwrap();
    for (i, st) in steps.iter().enumerate() {
        let r = stepper.step(&st.x, &st.y).unwrap();
        // The losses are f32 values; serde_json's default parser may land one
        // f64 ulp off the written decimal, which the f32 rounding removes.
        assert_eq!((r.loss as f32).to_bits(), (st.loss as f32).to_bits(), "step {i}: bench {} vs lt-train {}", r.loss, st.loss);
    }
    // And the weights the epoch ends with are lt-train's checkpoint.
    let ckpt = Tensor::read_safetensors(out.join("checkpoint").join("model.safetensors")).unwrap();
    let ours = stepper.vs.variables();
    assert!(!ckpt.is_empty());
    for (name, t) in ckpt {
        let mine = ours.get(&name).unwrap_or_else(|| panic!("{name} missing in the stepper"));
        assert!(mine.to_kind(Kind::Float).equal(&t.to_kind(Kind::Float)), "{name} differs after the epoch");
    }
}

/// The authors' training loop (tools/glmc_harness.py, PyTorch) replays a
/// traced lt-train epoch from the same weights on the same batches, λ and
/// boxes: its losses are lt-train's to float precision at the first steps
/// (later ones part slowly, as two thread counts of one implementation do).
#[test]
fn the_authors_loop_replays_a_traced_epoch() {
    let py = std::env::var("LT_GLMC_PYTHON").unwrap_or_else(|_| "python3".into());
    let has_torch = std::process::Command::new(&py).args(["-c", "import torch, pyarrow, PIL"]).output().is_ok_and(|o| o.status.success());
    if !has_torch {
        assert!(std::env::var_os("LT_REQUIRE_PYTHON").is_none(), "{py} lacks torch/pyarrow/pillow: run tools/setup.sh");
        eprintln!("skipping: no python with torch");
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let (shards, out, trace, replay) =
        (tmp.path().join("shards"), tmp.path().join("run"), tmp.path().join("trace"), tmp.path().join("replay"));
    {
        let _g = torch_lock();
        write_synth(&shards, &COUNTS, 4, 16, 3, 6);
        traced_run(&shards, &out, &trace, tiny_recipe(1));
    }
    let harness = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tools/glmc_harness.py");
    // tiny_recipe: width 4, batch 8, lr 0.05, wd 5e-4, q 0, p 1.2, κ 1.
    let args = ["--epochs", "1", "--width", "4", "--batch-size", "8", "--lr", "0.05", "--wd", "5e-4", "--threads", "1"];
    let o = std::process::Command::new(&py)
        .arg(&harness)
        .arg(&shards)
        .arg("--out")
        .arg(&replay)
        .arg("--replay")
        .arg(&trace)
        .args(args)
        .output()
        .unwrap();
    assert!(o.status.success(), "harness failed: {}", String::from_utf8_lossy(&o.stderr));
    let lines: Vec<serde_json::Value> =
        std::fs::read_to_string(replay.join("replay.jsonl")).unwrap().lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert_eq!(lines.len(), COUNTS.iter().sum::<usize>() / 8);
    for (i, l) in lines.iter().take(3).enumerate() {
        for term in ["total", "sup", "rb", "con"] {
            let (a, b) = (l["lt"][term].as_f64().unwrap(), l["harness"][term].as_f64().unwrap());
            assert!((a - b).abs() <= 1e-4 * a.abs().max(1.0), "step {i} {term}: lt-train {a}, authors' loop {b}");
        }
    }
}
