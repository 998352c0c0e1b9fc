//! Times the photometric stage alone: the device stage
//! ([`lt_glmc::photometric::time_stage`]) on one batch of recorded views,
//! beside the same records run by the CPU kernels on one thread (what the
//! loader's workers spend on them in `cpu` mode).
//!
//! ```sh
//! cargo run --release -p lt-glmc --example photometric_bench -- \
//!     --device cuda --pipeline imagenet-randncls --views 480 --size 224 --reps 20
//! ```
//!
//! The views are random resized crops of seeded synthetic photographs,
//! recorded with [`Augmenter::view_geometric_into`], so the op mix is the
//! pipeline's own. Prints one JSON line.

use std::time::Instant;

use lt_core::rng::Rng;
use lt_glmc::photometric::{self, Plan};
use lt_glmc::tch::{Device, Tensor};
use lt_vision::augment::{Augmenter, Pipeline};
use lt_vision::codec::Decoded;
use lt_vision::photometric::ViewParams;

fn arg(args: &[String], name: &str, default: &str) -> String {
    args.iter().position(|a| a == name).and_then(|i| args.get(i + 1)).cloned().unwrap_or_else(|| default.to_string())
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().collect();
    let device = lt_glmc::device::parse_device(&arg(&args, "--device", "auto"))?;
    let name = arg(&args, "--pipeline", "imagenet-randncls");
    let views: usize = arg(&args, "--views", "480").parse()?;
    let size: u32 = arg(&args, "--size", "224").parse()?;
    let reps: usize = arg(&args, "--reps", "10").parse()?;
    let threads: i32 = arg(&args, "--threads", "1").parse()?;
    lt_glmc::tch::set_num_threads(threads);

    let mut p = Pipeline::by_name(&name)?;
    match &mut p {
        Pipeline::ImageNet(s) => s.size = size,
        Pipeline::RandAugment(s) => s.size = size,
        Pipeline::Randncls(s) => s.size = size,
        _ => return Err(format!("{name} has no photometric stage").into()),
    }
    let mut aug = Augmenter::try_new(p, 3)?;
    let (w, h, c) = (size as usize, size as usize, 3usize);
    let mut data = vec![0u8; views * c * h * w];
    let mut recs = vec![ViewParams::EMPTY; views];
    let mut rng = Rng::new(7);
    let photos: Vec<Decoded> = (0..8)
        .map(|k| {
            let (pw, ph) = (400 + 40 * k, 300 + 30 * k);
            let px = (0..pw * ph * 3).map(|i| ((i / 3 % pw) * 255 / pw + (i / 3 / pw) * 97 / ph + rng.below(40) as u32) as u8).collect();
            Decoded::try_new(pw, ph, 3, px).unwrap()
        })
        .collect();
    for (i, (slot, rec)) in data.chunks_mut(c * h * w).zip(recs.iter_mut()).enumerate() {
        aug.view_geometric_into(&photos[i % photos.len()], &mut Rng::new(i as u64), (size, size), slot, rec)?;
    }
    let ops: usize = recs.iter().map(|r| r.ops().len()).sum();

    // The CPU kernels on the same records, one thread.
    let t = Instant::now();
    let mut cpu = data.clone();
    for (slot, rec) in cpu.chunks_mut(c * h * w).zip(&recs) {
        rec.apply_cpu_chw(slot, (w, h, c));
    }
    let cpu_s = t.elapsed().as_secs_f64();

    let x = Tensor::from_slice(&data).view([1, views as i64, c as i64, h as i64, w as i64]).to_device(device);
    let timing = photometric::time_stage(&x, &recs, 2, reps)?;
    let y = photometric::apply(&x, &recs)?;
    let got = Vec::<u8>::try_from(y.to_device(Device::Cpu).flatten(0, -1))?;
    let differing = got.iter().zip(&cpu).filter(|(a, b)| a != b).count();
    let plan = Plan::build(&recs, [c, h, w]);
    let median = |v: &[f64]| {
        let mut v = v.to_vec();
        v.sort_by(f64::total_cmp);
        v[v.len() / 2]
    };
    println!(
        "{}",
        serde_json::json!({
            "device": format!("{device:?}"),
            "pipeline": name,
            "views": views,
            "size": size,
            "ops": ops,
            "groups": plan.groups(),
            "device_stage_ms": timing.median_s() * 1e3,
            "plan_ms": median(&timing.plan_s) * 1e3,
            "run_ms": median(&timing.run_s) * 1e3,
            "cpu_kernels_ms_per_view": cpu_s * 1e3 / views as f64,
            "cpu_kernels_ms_batch_one_thread": cpu_s * 1e3,
            "bytes_differing_from_cpu": differing,
        })
    );
    Ok(())
}
