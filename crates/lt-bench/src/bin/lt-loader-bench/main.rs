//! `lt-loader-bench`: the loader's benchmarks without libtorch work. `lt-bench`
//! runs the same `loader` measurement next to its GPU ones. Benchmark shards
//! of real photographs come from `lt-build photos`.
//!
//! ```text
//! lt-build photos /usr/share/backgrounds -o photos/ --classes 100 --per-class 52 --test-per-class 0 --if 10
//! lt-loader-bench loader --shards photos/ --pipeline imagenet --threads 2 --batch-size 64 --views 2 --steps 50
//! ```

mod args;

use anyhow::Context;
use args::LoaderBenchArgs;
use clap::{Parser, Subcommand};
use lt_core::rng::Rng;
use lt_loader::bench::run_loader_bench;
use lt_vision::codec::Decoded;
use std::io::Write;
use std::process::ExitCode;

#[derive(Parser)]
#[command(name = "lt-loader-bench", version, about = "lt-glmc loader benchmarks (no libtorch)")]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Loader throughput on a shard directory: images/s, views/s, per-stage
    /// time, CPU use and peak RSS; appends one JSON line to --json.
    Loader(LoaderBenchArgs),
    /// Times each augmentation kernel on one 224×224 RGB image (where the
    /// augment stage's time goes).
    Kernels {
        #[arg(long, default_value_t = 300)]
        iters: usize,
    },
}

fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::try_from_env("LT_LOG").unwrap_or_else(|_| "warn".into()))
        .with_writer(std::io::stderr)
        .init();
    let cli = Cli::parse();
    let r = match cli.cmd {
        Cmd::Loader(a) => loader(a),
        Cmd::Kernels { iters } => kernels(iters),
    };
    match r {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("lt-loader-bench: error: {e:#}");
            ExitCode::from(2)
        }
    }
}

fn loader(a: LoaderBenchArgs) -> anyhow::Result<()> {
    let o = a.options()?;
    let r = run_loader_bench(&o).with_context(|| format!("benchmarking {}", a.shards.display()))?;
    println!("{}", r.summary());
    let line = serde_json::to_string(&r)?;
    println!("RESULT {line}");
    if let Some(p) = a.json {
        let mut f = std::fs::OpenOptions::new().create(true).append(true).open(&p).with_context(|| format!("opening {}", p.display()))?;
        writeln!(f, "{line}")?;
    }
    Ok(())
}

fn fast_resize() -> fast_image_resize::Resizer {
    fast_image_resize::Resizer::new()
}

fn kernels(iters: usize) -> anyhow::Result<()> {
    use lt_vision::augment::*;
    let (w, h) = (224usize, 224usize);
    let mut rng = Rng::new(1);
    let base: Vec<u8> = (0..w * h * 3).map(|_| rng.below(256) as u8).collect();
    let src = Decoded::try_new(500, 375, 3, (0..500 * 375 * 3).map(|i| (i % 251) as u8).collect())?;
    let mut resizer = fast_resize();
    let mut tmp = Vec::new();
    let mut out = vec![0u8; w * h * 3];
    let mut px = base.clone();
    let mut time = |name: &str, f: &mut dyn FnMut(&mut Vec<u8>)| {
        let t = std::time::Instant::now();
        for _ in 0..iters {
            px.copy_from_slice(&base);
            f(&mut px);
        }
        println!("{name:<28} {:8.1} us", t.elapsed().as_secs_f64() * 1e6 / iters as f64);
    };
    time("copy (baseline)", &mut |_| {});
    time("resize crop 300x300->224", &mut |p| {
        let mut d = std::mem::take(p);
        resize_crop_into(&mut resizer, &src, CropBox { top: 10, left: 20, height: 300, width: 300 }, 224, 224, &mut d).unwrap();
        *p = d;
    });
    time("brightness", &mut |p| adjust_brightness(p, 1.2));
    time("contrast", &mut |p| adjust_contrast(p, 3, 1.2));
    time("saturation", &mut |p| adjust_saturation(p, 3, 1.2));
    time("grayscale", &mut |p| to_grayscale(p, 3));
    time("blur sigma 2", &mut |p| gaussian_blur(p, w, h, 3, 2.0, &mut tmp));
    time("blur sigma 0.5", &mut |p| gaussian_blur(p, w, h, 3, 0.5, &mut tmp));
    time("write chw + flip", &mut |p| write_chw(p, w, h, 3, true, &mut out));
    let mut s2 = Vec::new();
    for op in lt_vision::augment_randaugment::OPS {
        time(&format!("randaugment {op:?}"), &mut |p| {
            let (m, _) = lt_vision::augment_randaugment::magnitude(op, 10, w, h);
            lt_vision::augment_randaugment::apply_op(p, &mut s2, w, h, 3, op, m)
        });
    }
    Ok(())
}
