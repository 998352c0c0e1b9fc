//! Time per GLMC training step on the CPU (or CUDA with `--cuda`):
//! ResNet-32 at width 16, batch 64, 32×32, 10 classes, d = 128, the full
//! step as lt-train runs it ([`lt_bench::glmc::GlmcStepper`], which runs
//! lt-train's own `GlmcStep` through its `Updater`): the uint8 paired batch
//! copied to the device, normalized, MixUp + CutMix, two forwards, every
//! loss, backward, SGD, the loss read back. `tools/glmc_step_bench.py` runs
//! the same step in PyTorch and calls this binary, so the two figures come
//! from one run.
//!
//! `cargo run --release -p lt-bench --example step_bench -- [steps] [warmup] [threads]`
//! Prints one JSON line.

use std::time::Instant;

use lt_bench::glmc::{GlmcStepper, StepOptions};
use lt_glmc::model::Arch;
use lt_glmc::tch::{self, Device, Kind, Tensor};

fn main() -> lt_bench::Result<()> {
    // As lt-train does (lt_glmc::host_alloc); LT_GLMC_MALLOC=system turns it off.
    let malloc = lt_glmc::host_alloc::retain_freed_memory();
    let args: Vec<String> = std::env::args().skip(1).filter(|a| !a.starts_with("--")).collect();
    let cuda = std::env::args().any(|a| a == "--cuda");
    let steps: usize = args.first().and_then(|s| s.parse().ok()).unwrap_or(20);
    let warmup: usize = args.get(1).and_then(|s| s.parse().ok()).unwrap_or(3);
    if let Some(t) = args.get(2).and_then(|s| s.parse().ok()) {
        tch::set_num_threads(t);
    }
    let device = if cuda { Device::Cuda(0) } else { Device::Cpu };
    let (b, c, hw) = (64i64, 10usize, 32i64);
    let mut o = StepOptions::for_arch(Arch::ResNet32 { width: 16 }, b as usize, c);
    (o.mean, o.std) = (vec![0.4914, 0.4822, 0.4465], vec![0.2470, 0.2435, 0.2616]);
    let mut stepper = GlmcStepper::try_new(o, device)?;
    // Host batches, as the loader delivers them: uint8 [2 views, 2B, 3, H, W].
    let x = Tensor::randint(256, [2, 2 * b, 3, hw, hw], (Kind::Uint8, Device::Cpu));
    let y = Tensor::randint(c as i64, [2 * b], (Kind::Int64, Device::Cpu));
    let mut times = Vec::new();
    for i in 0..warmup + steps {
        let t0 = Instant::now();
        let (xd, yd) = (x.to_device(device), y.to_device(device));
        stepper.step(&xd, &yd)?;
        if cuda {
            tch::Cuda::synchronize(0);
        }
        if i >= warmup {
            times.push(t0.elapsed().as_secs_f64());
        }
    }
    times.sort_by(|a, b| a.partial_cmp(b).unwrap());
    let mean = times.iter().sum::<f64>() / times.len() as f64;
    println!(
        "{}",
        serde_json::json!({
            "impl": "lt-glmc (tch)", "malloc": format!("{malloc:?}"), "device": format!("{device:?}"), "threads": tch::get_num_threads(),
            "steps": steps, "mean_s": mean, "median_s": times[times.len() / 2], "min_s": times[0], "times_s": times,
        })
    );
    Ok(())
}
