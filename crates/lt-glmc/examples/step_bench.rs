//! Time per GLMC training step on the CPU (or CUDA with `--cuda`):
//! ResNet-32 at width 16, batch 64, 32×32, 10 classes, d = 128, the full
//! step (normalize uint8 views, MixUp + CutMix, two forwards, every loss,
//! backward, SGD). `tools/glmc_step_bench.py` runs the same step in PyTorch
//! and calls this binary, so the two figures come from one run.
//!
//! `cargo run --release -p lt-glmc --example step_bench -- [steps] [warmup] [threads]`
//! Prints one JSON line.

use std::time::Instant;

use lt_core::rng::Rng;
use lt_glmc::loss::{self, ClassStats, GlmcBatch, LossConfig};
use lt_glmc::mix::{MixParams, Normalizer};
use lt_glmc::model::{Arch, GlmcNet, ModelConfig};
use lt_glmc::optim::{Sgd, SgdConfig};
use lt_glmc::tch::{self, nn::VarStore, Device, Kind, Tensor};

fn main() -> lt_glmc::Result<()> {
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
    let (b, c, hw) = (64i64, 10i64, 32i64);
    tch::manual_seed(0);
    let vs = VarStore::new(device);
    let net = GlmcNet::try_new(&vs.root(), ModelConfig::new(Arch::ResNet32 { width: 16 }, c))?;
    let mut opt = Sgd::new(&vs, SgdConfig { lr: 0.01, momentum: 0.9, weight_decay: 5e-3 });
    let counts: Vec<usize> = lt_core::profile::exponential_counts(c as usize, 5000, 100.0).expect("counts");
    let stats = ClassStats::try_new(&counts, 1.2, device, Kind::Float)?;
    let norm = Normalizer::try_new(&[0.4914, 0.4822, 0.4465], &[0.2470, 0.2435, 0.2616], device, Kind::Float)?;
    let cfg = LossConfig::default().with_kappa(1.0);
    let u8s: Vec<Tensor> = (0..4).map(|_| Tensor::randint(256, [b, 3, hw, hw], (Kind::Uint8, Device::Cpu))).collect();
    let y_u = Tensor::randint(c, [b], (Kind::Int64, Device::Cpu));
    let y_w = Tensor::randint(c, [b], (Kind::Int64, Device::Cpu));
    let mut rng = Rng::new(0);
    let mut times = Vec::new();
    for i in 0..warmup + steps {
        let t0 = Instant::now();
        let v: Vec<Tensor> = u8s.iter().map(|x| norm.apply(&x.to_device(device))).collect::<lt_glmc::Result<_>>()?;
        let (yu, yw) = (y_u.to_device(device), y_w.to_device(device));
        let batch = GlmcBatch { u1: &v[0], u2: &v[1], w1: &v[2], w2: &v[3], y_u: &yu, y_w: &yw };
        let mix = MixParams::draw(&mut rng, 1.0, hw, hw);
        let terms = loss::glmc_loss(&net, &batch, &mix, &stats, &cfg, 0.9)?;
        opt.zero_grad()?;
        terms.total.backward();
        opt.step()?;
        terms.check_finite(i as u64, 0)?;
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
