//! `lt-loader-bench`: the loader's benchmarks without libtorch work. `lt-bench`
//! runs the same `loader` measurement next to its GPU ones. Benchmark shards
//! of real photographs come from `lt-build photos`.
//!
//! ```text
//! lt-build photos /usr/share/backgrounds -o photos/ --classes 100 --per-class 52 --test-per-class 0 --if 10
//! lt-loader-bench loader --shards photos/ --pipeline imagenet --threads 2 --batch-size 64 --views 2 --steps 50
//! lt-loader-bench decode --shards photos/ --threads 2 --modes full,turbo,draft
//! ```

mod args;

use anyhow::Context;
use args::LoaderBenchArgs;
use clap::{Parser, Subcommand};
use lt_core::rng::Rng;
use lt_loader::bench::{parse_pipeline, run_decode_bench, run_loader_bench, DecodeBenchOptions, DecodeMode};
use lt_loader::source::ShardSourceOptions;
use lt_vision::codec::Decoded;
use std::io::Write;
use std::path::PathBuf;
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
    /// augment stage's time goes), beside the scalar kernels they replaced
    /// (`lt_vision::reference`, same bytes) where there is one.
    Kernels {
        #[arg(long, default_value_t = 300)]
        iters: usize,
    },
    /// The bare decode of a split's images (resident, as the loader reads
    /// them) on N threads: images/s and CPU-ms per image for each mode, the
    /// loader's own decode first, so "loader CPU per image ≤ 2× decode" can
    /// be read off one run.
    Decode(DecodeArgs),
}

#[derive(clap::Args)]
struct DecodeArgs {
    /// Shard directory made by lt-build.
    #[arg(long)]
    shards: PathBuf,
    #[arg(long, default_value_t = 2)]
    threads: usize,
    /// Images decoded per mode (the split is cycled); default: the split
    /// twice.
    #[arg(long)]
    images: Option<usize>,
    /// Comma-separated: full (the loader's default decode, zune-jpeg),
    /// turbo (libjpeg-turbo, full size), turbo-1/2, turbo-1/4, turbo-1/8,
    /// draft (`loader.jpeg_draft`'s per-image scale for --pipeline).
    #[arg(long, default_value = "full,turbo,turbo-1/2,turbo-1/4,turbo-1/8,draft")]
    modes: String,
    /// The pipeline whose crops pick the draft scale.
    #[arg(long, default_value = "imagenet")]
    pipeline: String,
    #[arg(long, default_value_t = 2)]
    views: usize,
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Use the test split.
    #[arg(long)]
    test_split: bool,
    /// Append the JSON reports to this file.
    #[arg(long)]
    json: Option<PathBuf>,
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
        Cmd::Decode(a) => decode(a),
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

fn decode(a: DecodeArgs) -> anyhow::Result<()> {
    let modes = a.modes.split(',').map(|m| DecodeMode::parse(m.trim())).collect::<Result<Vec<_>, _>>().context("--modes")?;
    let split = if a.test_split { lt_shards::Split::Test } else { lt_shards::Split::Train };
    let images = match a.images {
        Some(n) => n,
        None => {
            2 * lt_shards::Manifest::load(&a.shards)
                .with_context(|| format!("reading {}", a.shards.display()))?
                .class_counts(split)
                .iter()
                .sum::<usize>()
        }
    };
    let o = DecodeBenchOptions {
        shards: a.shards.clone(),
        split,
        threads: a.threads,
        images,
        modes,
        pipeline: parse_pipeline(&a.pipeline).context("--pipeline")?,
        views: a.views,
        seed: a.seed,
        source: ShardSourceOptions::default(),
    };
    for r in run_decode_bench(&o).with_context(|| format!("decoding {}", a.shards.display()))? {
        println!("{}", r.summary());
        let line = serde_json::to_string(&r)?;
        println!("RESULT {line}");
        if let Some(p) = &a.json {
            let mut f =
                std::fs::OpenOptions::new().create(true).append(true).open(p).with_context(|| format!("opening {}", p.display()))?;
            writeln!(f, "{line}")?;
        }
    }
    Ok(())
}

fn fast_resize() -> fast_image_resize::Resizer {
    fast_image_resize::Resizer::new()
}

/// A kernel run on one view in place.
type Kernel<'a> = dyn FnMut(&mut Vec<u8>) + 'a;

/// Mean microseconds of `f` over `iters` calls, each on a fresh copy of
/// `base`.
fn time_us(base: &[u8], iters: usize, f: &mut Kernel) -> f64 {
    let mut px = base.to_vec();
    let t = std::time::Instant::now();
    for _ in 0..iters {
        px.copy_from_slice(base);
        f(&mut px);
    }
    t.elapsed().as_secs_f64() * 1e6 / iters as f64
}

fn kernels(iters: usize) -> anyhow::Result<()> {
    use lt_vision::augment::*;
    use lt_vision::augment_timm::{self as timm, Resample};
    use lt_vision::reference as old;
    let (w, h) = (224usize, 224usize);
    let g = (w, h, 3);
    let mut rng = Rng::new(1);
    // A photo-like view: smooth gradients plus noise.
    let base: Vec<u8> = (0..w * h * 3).map(|i| ((i / 3 % w + i / (3 * w)) as u64 + rng.below(24)) as u8).collect();
    let src = Decoded::try_new(500, 375, 3, (0..500 * 375 * 3).map(|i| (i % 251) as u8).collect())?;
    let mut resizer = fast_resize();
    let (mut tmp, mut s1, mut s2) = (Vec::new(), Vec::new(), Vec::new());
    let mut out = vec![0u8; w * h * 3];
    println!("{:<34} {:>10} {:>10} {:>7}", "kernel (224x224 RGB)", "before us", "after us", "speedup");
    let row = |name: &str, before: Option<&mut Kernel>, after: &mut Kernel| {
        let a = time_us(&base, iters, after);
        match before {
            Some(b) => {
                let b = time_us(&base, iters, b);
                println!("{name:<34} {b:>10.1} {a:>10.1} {:>6.1}x", b / a)
            }
            None => println!("{name:<34} {:>10} {a:>10.1}", "-"),
        }
    };
    row("copy (baseline)", None, &mut |_| {});
    row("resize crop 300x300->224", None, &mut |p| {
        let mut d = std::mem::take(p);
        resize_crop_into(&mut resizer, &src, CropBox { top: 10, left: 20, height: 300, width: 300 }, 224, 224, &mut d).unwrap();
        *p = d;
    });
    row("brightness", None, &mut |p| adjust_brightness(p, 1.2));
    row("contrast", Some(&mut |p| old::adjust_contrast(p, 3, 1.2)), &mut |p| adjust_contrast(p, 3, 1.2));
    row("saturation", Some(&mut |p| old::adjust_saturation(p, 3, 1.2)), &mut |p| adjust_saturation(p, 3, 1.2));
    row("grayscale", Some(&mut |p| old::to_grayscale(p, 3)), &mut |p| to_grayscale(p, 3));
    let mut t2 = Vec::new();
    row("blur sigma 2", Some(&mut |p| old::gaussian_blur(p, g, 2.0, &mut t2)), &mut |p| gaussian_blur(p, w, h, 3, 2.0, &mut tmp));
    row("blur sigma 0.5", Some(&mut |p| old::gaussian_blur(p, g, 0.5, &mut t2)), &mut |p| gaussian_blur(p, w, h, 3, 0.5, &mut tmp));
    row("write chw + flip", None, &mut |p| write_chw(p, w, h, 3, true, &mut out));
    // torchvision RandAugment (nearest gathers, float sharpness).
    let ra = |op: lt_vision::augment_randaugment::Op| lt_vision::augment_randaugment::magnitude(op, 10, w, h).0;
    {
        use lt_vision::augment_randaugment::{apply_op, Op};
        for op in [Op::ShearX, Op::TranslateX, Op::TranslateY, Op::Rotate] {
            let mag = ra(op);
            let m = match op {
                Op::ShearX => [1.0, mag, 0.0, 0.0, 1.0, 0.0],
                Op::TranslateX => [1.0, 0.0, -(mag.trunc()), 0.0, 1.0, 0.0],
                Op::TranslateY => [1.0, 0.0, 0.0, 0.0, 1.0, -(mag.trunc())],
                _ => {
                    let (s, co) = mag.to_radians().sin_cos();
                    let (cx, cy) = (w as f64 * 0.5, h as f64 * 0.5);
                    [co, -s, cx - co * cx + s * cy, s, co, cy - s * cx - co * cy]
                }
            };
            row(&format!("randaugment {op:?}"), Some(&mut |p| old::affine_nearest(p, &mut s2, g, m)), &mut |p| {
                apply_op(p, &mut s1, w, h, 3, op, mag)
            });
        }
        let f = 1.0 + ra(Op::Sharpness);
        row("randaugment Sharpness", Some(&mut |p| old::sharpness(p, &mut s2, g, f as f32)), &mut |p| {
            apply_op(p, &mut s1, w, h, 3, Op::Sharpness, f - 1.0)
        });
        row("randaugment Color", Some(&mut |p| old::adjust_saturation(p, 3, 1.3)), &mut |p| apply_op(p, &mut s1, w, h, 3, Op::Color, 0.3));
        for op in [Op::AutoContrast, Op::Equalize, Op::Posterize, Op::Solarize] {
            row(&format!("randaugment {op:?}"), None, &mut |p| apply_op(p, &mut s1, w, h, 3, op, ra(op)));
        }
    }
    // timm RandAugment on PIL kernels (imagenet-randncls), at m = 10.
    let fill = [124, 116, 104];
    row("timm Color (PIL)", Some(&mut |p| old::pil_color(p, 3, 1.9)), &mut |p| timm::pil_color(p, 3, 1.9));
    row("timm Contrast (PIL)", Some(&mut |p| old::pil_contrast(p, 3, 1.9)), &mut |p| timm::pil_contrast(p, 3, 1.9));
    row("timm Sharpness (PIL)", Some(&mut |p| old::pil_sharpness(p, &mut s2, g, 1.9)), &mut |p| {
        timm::pil_sharpness(p, &mut s1, w, h, 3, 1.9)
    });
    let rot = |deg: f64| {
        let a = -deg.to_radians();
        let (cx, cy) = (w as f64 / 2.0, h as f64 / 2.0);
        let (co, si) = (a.cos(), a.sin());
        [co, si, -cx * co - cy * si + cx, -si, co, cx * si - cy * co + cy]
    };
    for (name, m) in [
        ("ShearX 0.3", [1.0, 0.3, 0.0, 0.0, 1.0, 0.0]),
        ("ShearY 0.3", [1.0, 0.0, 0.0, 0.3, 1.0, 0.0]),
        ("TranslateXRel 0.45", [1.0, 0.0, 0.45 * w as f64, 0.0, 1.0, 0.0]),
        ("TranslateYRel 0.45", [1.0, 0.0, 0.0, 0.0, 1.0, 0.45 * h as f64]),
        ("Rotate 30", rot(30.0)),
    ] {
        for r in [Resample::Bilinear, Resample::Bicubic] {
            row(&format!("timm {name} {r:?}"), Some(&mut |p| old::pil_affine(p, &mut s2, g, m, r, fill)), &mut |p| {
                timm::pil_affine(lt_vision::hwc::HwcMut::new(p, &mut s1, w, h, 3), m, r, fill)
            });
        }
    }
    Ok(())
}
