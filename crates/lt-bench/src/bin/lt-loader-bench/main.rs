//! `lt-loader-bench`: the loader's benchmarks without libtorch. `lt-bench`
//! (crate lt-glmc) runs the same `loader` measurement next to its GPU ones.
//!
//! ```text
//! lt-loader-bench loader --shards DIR --pipeline imagenet --threads 2 --batch-size 64 --views 2 --steps 50
//! lt-loader-bench make-shards --images /usr/share/backgrounds -o photos/ --count 2000 --sizes 320,400,500,640
//! ```

mod args;

use anyhow::Context;
use args::LoaderBenchArgs;
use clap::{Parser, Subcommand};
use lt_core::rng::Rng;
use lt_loader::bench::run_loader_bench;
use lt_vision::augment::CropBox;
use lt_vision::codec::{self, Decoded, Filter};
use std::io::Write;
use std::path::{Path, PathBuf};
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
    /// Builds benchmark shards from a folder of real photographs: random
    /// crops at several sizes, re-encoded as JPEG (or PNG at --size 32).
    MakeShards(MakeArgs),
    /// Times each augmentation kernel on one 224×224 RGB image (where the
    /// augment stage's time goes).
    Kernels {
        #[arg(long, default_value_t = 300)]
        iters: usize,
    },
}


#[derive(Parser)]
struct MakeArgs {
    /// Folder searched recursively for .jpg/.jpeg photographs.
    #[arg(long)]
    images: Vec<PathBuf>,
    #[arg(short, long)]
    out: PathBuf,
    /// Rows in the train split.
    #[arg(long, default_value_t = 2000)]
    count: usize,
    #[arg(long, default_value_t = 100)]
    classes: usize,
    /// Long sides to draw from (one per row); ignored with --size.
    #[arg(long, value_delimiter = ',', default_value = "320,400,500,640,800")]
    sizes: Vec<u32>,
    /// Square output side, stored as PNG (e.g. 32 for CIFAR-style shards).
    #[arg(long)]
    size: Option<u32>,
    #[arg(long, default_value_t = 90)]
    quality: u8,
    #[arg(long, default_value_t = 0)]
    seed: u64,
    #[arg(long)]
    overwrite: bool,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let r = match cli.cmd {
        Cmd::Loader(a) => loader(a),
        Cmd::MakeShards(a) => make_shards(a),
        Cmd::Kernels { iters } => kernels(iters),
    };
    match r {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            let hint = if names_overwrite(&e) { " (flag --overwrite)" } else { "" };
            eprintln!("lt-loader-bench: error: {e:#}{hint}");
            ExitCode::from(2)
        }
    }
}

/// Whether an error of `e`'s chain names lt-shards' `overwrite` setting (an
/// existing output), the one library setting with a flag here.
fn names_overwrite(e: &anyhow::Error) -> bool {
    e.chain().filter_map(|c| c.downcast_ref::<lt_shards::ShardError>()).any(|s| s.settings().contains(&"overwrite"))
}

fn loader(a: LoaderBenchArgs) -> anyhow::Result<()> {
    let o = a.options()?;
    let r = run_loader_bench(&o).with_context(|| format!("benchmarking {}", a.shards.display()))?;
    println!("{}", r.summary());
    let line = serde_json::to_string(&r)?;
    println!("RESULT {line}");
    if let Some(p) = a.json {
        let mut f = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&p)
            .with_context(|| format!("opening {}", p.display()))?;
        writeln!(f, "{line}")?;
    }
    Ok(())
}

fn collect_images(dir: &Path, out: &mut Vec<PathBuf>) {
    let Ok(rd) = std::fs::read_dir(dir) else { return };
    for e in rd.flatten() {
        let p = e.path();
        if p.is_dir() {
            collect_images(&p, out);
        } else if let Some(ext) = p.extension().and_then(|e| e.to_str()) {
            if ["jpg", "jpeg"].contains(&ext.to_ascii_lowercase().as_str()) {
                out.push(p);
            }
        }
    }
}

fn make_shards(a: MakeArgs) -> anyhow::Result<()> {
    use lt_shards::*;
    let mut files = Vec::new();
    for d in &a.images {
        collect_images(d, &mut files);
    }
    files.sort();
    // Decode every photo once (they are few and large), keep those ≥ 256 px.
    let mut photos: Vec<(PathBuf, Decoded)> = Vec::new();
    for f in &files {
        let bytes = std::fs::read(f).with_context(|| format!("reading {}", f.display()))?;
        match codec::decode_rgb(&bytes) {
            Ok(d) if d.width.min(d.height) >= 256 => {
                // Cap the working copy so crops are cheap to resize.
                let (w, h) = codec::fit_max_side(d.width, d.height, 1600);
                photos.push((f.clone(), codec::resize(&d, w, h, Filter::Bilinear)?));
            }
            _ => {}
        }
    }
    anyhow::ensure!(!photos.is_empty(), "no photographs of at least 256 px found under {:?}", a.images);
    eprintln!("{} photographs from {} files", photos.len(), files.len());
    let counts = lt_core::profile::exponential_counts(a.classes, a.count, 10.0)?;
    let scale = a.count as f64 / counts.iter().sum::<usize>() as f64;
    let mut counts: Vec<usize> = counts.iter().map(|&c| ((c as f64 * scale).round() as usize).max(1)).collect();
    let total: usize = counts.iter().sum();
    if total > a.count {
        counts[0] -= total - a.count;
    } else {
        counts[0] += a.count - total;
    }
    let mut labels: Vec<i64> = counts.iter().enumerate().flat_map(|(c, &n)| std::iter::repeat_n(c as i64, n)).collect();
    let mut rng = Rng::derive(a.seed, &[0x5047]);
    rng.shuffle(&mut labels);
    let stage = AtomicDir::begin(&a.out, a.overwrite)?;
    let names: Vec<String> = (0..a.classes).map(|c| format!("class{c:03}")).collect();
    let opts = WriterOptions::default().with_row_group_bytes(4 << 20).with_row_group_rows(256);
    let mut w = SplitWriter::try_new(stage.path(), Split::Train, &names, &counts, opts.clone())?;
    let mut resizer = fast_resize();
    let mut sums = [0f64; 3];
    let mut sq = [0f64; 3];
    let mut npx = 0f64;
    for (i, &label) in labels.iter().enumerate() {
        let (path, photo) = &photos[rng.below(photos.len() as u64) as usize];
        let crop = lt_vision::augment::rrc_params(&mut rng, photo.width, photo.height, (0.25, 1.0), (0.75, 4.0 / 3.0));
        let (ow, oh) = match a.size {
            Some(s) => (s, s),
            None => {
                let long = a.sizes[rng.below(a.sizes.len() as u64) as usize];
                let r = crop.width as f64 / crop.height as f64;
                if r >= 1.0 {
                    (long, ((long as f64 / r).round() as u32).max(1))
                } else {
                    (((long as f64 * r).round() as u32).max(1), long)
                }
            }
        };
        let mut px = Vec::new();
        lt_vision::augment::resize_crop_into(&mut resizer, photo, CropBox { ..crop }, ow, oh, &mut px)?;
        let img = Decoded::try_new(ow, oh, 3, px)?;
        for p in img.pixels.chunks_exact(3) {
            for c in 0..3 {
                let v = p[c] as f64 / 255.0;
                sums[c] += v;
                sq[c] += v * v;
            }
        }
        npx += (ow * oh) as f64;
        let bytes = if a.size.is_some() { codec::encode_png(&img)? } else { codec::encode_jpeg(&img, a.quality)? };
        w.write_rows([Row {
            image: bytes,
            path: format!("{}#{i}", path.display()),
            label,
            source_index: i as i64,
            height: oh as i32,
            width: ow as i32,
        }])?;
    }
    let shards = w.finish()?;
    let no_test = vec![0; a.classes];
    let test = SplitWriter::try_new(stage.path(), Split::Test, &names, &no_test, opts)?.finish()?;
    let mean: Vec<f64> = sums.iter().map(|s| s / npx).collect();
    let std: Vec<f64> = sq.iter().zip(&mean).map(|(q, m)| (q / npx - m * m).max(0.0).sqrt()).collect();
    let m = Manifest::builder(format!("lt-loader-bench {}", env!("CARGO_PKG_VERSION")), &names)
        .command_line(std::env::args().collect())
        .source(SourceInfo::new("photos (lt-loader-bench make-shards)", a.images.iter().map(|p| p.display().to_string()).collect::<Vec<_>>().join(":")))
        .profile(ProfileInfo { class_order: None, n_max: None, spec: lt_core::profile::Profile::Exponential { imbalance: 10.0 }, targets: counts.clone() })
        .seed(a.seed)
        .channels(3, mean, std)
        .split(Split::Train, &counts, shards)
        .split(Split::Test, &no_test, test)
        .build()?;
    m.save(stage.path())?;
    let out = stage.commit()?;
    eprintln!("wrote {} rows to {}", a.count, out.display());
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
