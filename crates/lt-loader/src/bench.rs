//! `lt-bench loader`: throughput of the loader on a shard directory, with
//! per-stage time, CPU use and peak resident memory. Kept in the library so
//! other front ends (the GPU bench) can run the same measurement; their
//! command-line flags live with the binaries
//! (`src/bin/lt-loader-bench/args.rs`), the library takes
//! [`LoaderBenchOptions`].

use crate::loader::{decode_draft, decode_to, rrc_of, Loader, LoaderConfig, StageStats};
use crate::sampler::SamplerSpec;
use crate::source::{EncodedSource, ShardSource, ShardSourceOptions};
use crate::{LoaderError, Result};
use lt_core::rng::Rng;
use lt_vision::augment::Pipeline;
use lt_vision::codec;
use lt_vision::photometric::Photometric;
use serde::{Deserialize, Serialize};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

/// What to measure.
#[derive(Clone, Debug)]
pub struct LoaderBenchOptions {
    pub shards: PathBuf,
    pub split: lt_shards::Split,
    pub pipeline: Pipeline,
    /// Name printed in the report (e.g. `imagenet`).
    pub pipeline_name: String,
    pub threads: usize,
    pub batch_size: usize,
    pub views: usize,
    /// Measured steps (after `warmup`).
    pub steps: usize,
    pub warmup: usize,
    pub seed: u64,
    pub sampler: SamplerSpec,
    pub pool_size: usize,
    pub source: ShardSourceOptions,
    /// `loader.photometric`.
    pub photometric: Photometric,
    /// `loader.jpeg_draft`.
    pub jpeg_draft: bool,
}

impl Default for LoaderBenchOptions {
    fn default() -> Self {
        LoaderBenchOptions {
            shards: PathBuf::new(),
            split: lt_shards::Split::Train,
            pipeline: Pipeline::by_name("cifar").expect("known"),
            pipeline_name: "cifar".into(),
            threads: 2,
            batch_size: 64,
            views: 2,
            steps: 50,
            warmup: 3,
            seed: 0,
            sampler: SamplerSpec::Instance,
            pool_size: 4,
            source: ShardSourceOptions::default(),
            photometric: Photometric::Cpu,
            jpeg_draft: false,
        }
    }
}

/// The measurement; one JSON line per run.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct LoaderBenchReport {
    pub tool: String,
    pub pipeline: String,
    pub shards: String,
    pub threads: usize,
    pub batch_size: usize,
    pub views: usize,
    pub steps: usize,
    /// Samples per step (a paired sampler has 2 × batch).
    pub slots: usize,
    pub images: u64,
    pub seconds: f64,
    pub images_per_s: f64,
    pub views_per_s: f64,
    /// Stage time within the measured window, seconds summed over threads.
    pub stages: StageStats,
    /// Process CPU time (user + system) within the window.
    pub cpu_s: f64,
    /// `cpu_s / seconds`: cores kept busy.
    pub cpu_cores: f64,
    /// `cpu_s` per image (all views), milliseconds.
    #[serde(default)]
    pub cpu_ms_per_image: f64,
    /// Where the photometric stage ran (`cpu` or `device`: recorded only).
    #[serde(default)]
    pub photometric: String,
    #[serde(default)]
    pub jpeg_draft: bool,
    pub peak_rss_bytes: u64,
    pub rss_before_load_bytes: u64,
    pub resident_dataset_bytes: u64,
    pub pool_bytes: u64,
    pub sample_shape: [usize; 3],
    pub open_s: f64,
}

fn read_proc(path: &str) -> Option<String> {
    std::fs::read_to_string(path).ok()
}

/// Process CPU seconds (user + system) from `/proc/self/stat`; 0 elsewhere.
pub fn process_cpu_seconds() -> f64 {
    let Some(s) = read_proc("/proc/self/stat") else { return 0.0 };
    // Fields after the command name (which may contain spaces).
    let Some(rest) = s.rfind(')').map(|i| &s[i + 2..]) else { return 0.0 };
    let f: Vec<&str> = rest.split_whitespace().collect();
    let ticks = |i: usize| f.get(i).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0);
    // utime and stime are fields 14 and 15 of stat, i.e. 11 and 12 here.
    // USER_HZ is 100 on every Linux ABI we run on.
    (ticks(11) + ticks(12)) / 100.0
}

fn status_kb(key: &str) -> u64 {
    read_proc("/proc/self/status")
        .and_then(|s| s.lines().find(|l| l.starts_with(key)).and_then(|l| l.split_whitespace().nth(1).and_then(|v| v.parse::<u64>().ok())))
        .unwrap_or(0)
}

/// Peak resident set size (`VmHWM`), bytes.
pub fn peak_rss_bytes() -> u64 {
    status_kb("VmHWM:") * 1024
}

/// Current resident set size (`VmRSS`), bytes.
pub fn rss_bytes() -> u64 {
    status_kb("VmRSS:") * 1024
}

/// Opens the shards, runs `warmup` then `steps` batches, and reports.
pub fn run_loader_bench(o: &LoaderBenchOptions) -> Result<LoaderBenchReport> {
    if o.steps == 0 {
        return Err(LoaderError::Config("steps must be > 0".into()));
    }
    let rss_before = rss_bytes();
    let t_open = Instant::now();
    let src = Arc::new(ShardSource::open(&o.shards, o.split, &o.source)?);
    let open_s = t_open.elapsed().as_secs_f64();
    let resident = src.resident_bytes();
    let cfg = LoaderConfig::default()
        .with_batch_size(o.batch_size)
        .with_views(o.views)
        .with_workers(o.threads)
        .with_pool_size(o.pool_size)
        .with_seed(o.seed)
        .with_sampler(o.sampler)
        .with_photometric(o.photometric)
        .with_jpeg_draft(o.jpeg_draft);
    let mut loader = Loader::try_new(src.clone() as Arc<dyn EncodedSource>, o.pipeline.clone(), cfg)?;
    let slots = o.sampler.slots(o.batch_size);
    for _ in 0..o.warmup {
        loader.next().ok_or_else(|| LoaderError::Stopped("no batch".into()))??;
    }
    let s0 = loader.stats();
    let cpu0 = process_cpu_seconds();
    let t = Instant::now();
    let mut images = 0u64;
    for _ in 0..o.steps {
        let b = loader.next().ok_or_else(|| LoaderError::Stopped("no batch".into()))??;
        images += b.slots() as u64;
        // Touch the batch like a consumer copying it out would.
        std::hint::black_box(b.data().last());
    }
    let seconds = t.elapsed().as_secs_f64();
    let cpu_s = process_cpu_seconds() - cpu0;
    let stages = loader.stats() - s0;
    let report = LoaderBenchReport {
        tool: "lt-loader".into(),
        pipeline: o.pipeline_name.clone(),
        shards: o.shards.display().to_string(),
        threads: o.threads,
        batch_size: o.batch_size,
        views: o.views,
        steps: o.steps,
        slots,
        images,
        seconds,
        images_per_s: images as f64 / seconds,
        views_per_s: (images * o.views as u64) as f64 / seconds,
        stages,
        cpu_s,
        cpu_cores: cpu_s / seconds,
        cpu_ms_per_image: if images > 0 { cpu_s / images as f64 * 1e3 } else { 0.0 },
        photometric: loader.photometric().as_str().into(),
        jpeg_draft: o.jpeg_draft,
        peak_rss_bytes: peak_rss_bytes(),
        rss_before_load_bytes: rss_before,
        resident_dataset_bytes: resident,
        pool_bytes: loader.pool_bytes() as u64,
        sample_shape: loader.sample_shape(),
        open_s,
    };
    drop(loader);
    Ok(report)
}

impl LoaderBenchReport {
    /// The human-readable summary `lt-bench loader` prints (the baseline
    /// script prints the same lines).
    pub fn summary(&self) -> String {
        let mib = |b: u64| b as f64 / (1u64 << 20) as f64;
        let st = &self.stages;
        let per = |s: f64| if self.images > 0 { s / self.images as f64 * 1e3 } else { 0.0 };
        format!(
            "{tool} {pipe}: {ips:.1} images/s, {vps:.1} views/s, {cpi:.3} CPU-ms/image ({n} images, {t:.2} s, {thr} threads, batch {b}, {v} views, sample {shape:?}, photometric {ph}, jpeg_draft {jd})\n\
             stages (ms per image, summed over threads): read {r:.3}, decode {d:.3}, augment {a:.3}; dispatcher {disp:.3} s, consumer wait {w:.3} s{dr}\n\
             cpu {cpu:.2} s = {cores:.2} cores; peak RSS {rss:.1} MiB (before open {rb:.1} MiB, resident dataset {res:.1} MiB, batch pool {pool:.1} MiB)",
            tool = self.tool,
            pipe = self.pipeline,
            ips = self.images_per_s,
            vps = self.views_per_s,
            n = self.images,
            t = self.seconds,
            thr = self.threads,
            b = self.batch_size,
            v = self.views,
            shape = self.sample_shape,
            cpi = self.cpu_ms_per_image,
            ph = self.photometric,
            jd = self.jpeg_draft,
            dr = if self.jpeg_draft {
                format!("; JPEG decode scale 1/1 {} 1/2 {} 1/4 {} 1/8 {}", st.draft[0], st.draft[1], st.draft[2], st.draft[3])
            } else {
                String::new()
            },
            r = per(st.read_s),
            d = per(st.decode_s),
            a = per(st.augment_s),
            disp = st.dispatch_s,
            w = st.wait_s,
            cpu = self.cpu_s,
            cores = self.cpu_cores,
            rss = mib(self.peak_rss_bytes),
            rb = mib(self.rss_before_load_bytes),
            res = mib(self.resident_dataset_bytes),
            pool = mib(self.pool_bytes),
        )
    }
}

/// A pipeline given as text: a name (`cifar`, `imagenet`, …) or a JSON
/// pipeline object (`{"kind":"imagenet","size":192}`).
pub fn parse_pipeline(s: &str) -> Result<Pipeline> {
    if s.trim_start().starts_with('{') {
        serde_json::from_str(s).map_err(|e| LoaderError::Config(format!("pipeline JSON: {e}")))
    } else {
        Pipeline::by_name(s).map_err(|e| LoaderError::Config(e.to_string()))
    }
}

/// How `lt-loader-bench decode` decodes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DecodeMode {
    /// The loader's default: `image`/zune-jpeg, full size, to RGB.
    Full,
    /// libjpeg-turbo at a fixed scale `1/denom` (1, 2, 4, 8).
    Turbo(u32),
    /// `loader.jpeg_draft` as `pipeline` with `views` views would decode
    /// each image: the scale its crops allow ([`crate::loader::draft_denom`]).
    Draft,
}

impl DecodeMode {
    pub fn parse(s: &str) -> Result<DecodeMode> {
        Ok(match s {
            "full" => DecodeMode::Full,
            "draft" => DecodeMode::Draft,
            "turbo" => DecodeMode::Turbo(1),
            _ => match s.strip_prefix("turbo-1/").and_then(|d| d.parse::<u32>().ok()) {
                Some(d) if codec::DRAFT_DENOMS.contains(&d) => DecodeMode::Turbo(d),
                _ => {
                    return Err(LoaderError::Config(format!(
                        "decode mode {s:?}: expected full, turbo, turbo-1/2, turbo-1/4, turbo-1/8 or draft"
                    )))
                }
            },
        })
    }

    pub fn name(self) -> String {
        match self {
            DecodeMode::Full => "full".into(),
            DecodeMode::Turbo(1) => "turbo".into(),
            DecodeMode::Turbo(d) => format!("turbo-1/{d}"),
            DecodeMode::Draft => "draft".into(),
        }
    }
}

/// What `lt-loader-bench decode` measures: the bare decode of a split's
/// images (resident, as the loader reads them) on `threads` threads.
#[derive(Clone, Debug)]
pub struct DecodeBenchOptions {
    pub shards: PathBuf,
    pub split: lt_shards::Split,
    pub threads: usize,
    /// Images decoded per mode (the split is cycled).
    pub images: usize,
    pub modes: Vec<DecodeMode>,
    /// For [`DecodeMode::Draft`]: the pipeline whose crops pick the scale.
    pub pipeline: Pipeline,
    pub views: usize,
    pub seed: u64,
    pub source: ShardSourceOptions,
}

/// One mode's measurement.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct DecodeBenchReport {
    pub tool: String,
    pub mode: String,
    pub shards: String,
    pub threads: usize,
    pub images: u64,
    pub seconds: f64,
    pub images_per_s: f64,
    pub cpu_s: f64,
    pub cpu_ms_per_image: f64,
    /// Decoded pixels per image (mean), megapixels.
    pub mpix_per_image: f64,
    /// Images decoded at 1/1, 1/2, 1/4, 1/8.
    pub scales: [u64; 4],
}

impl DecodeBenchReport {
    pub fn summary(&self) -> String {
        format!(
            "decode {mode}: {ips:.1} images/s, {cpi:.3} CPU-ms/image, {mp:.3} Mpx/image ({n} images, {t:.2} s, {thr} threads; scale 1/1 {s0} 1/2 {s1} 1/4 {s2} 1/8 {s3})",
            mode = self.mode,
            ips = self.images_per_s,
            cpi = self.cpu_ms_per_image,
            mp = self.mpix_per_image,
            n = self.images,
            t = self.seconds,
            thr = self.threads,
            s0 = self.scales[0],
            s1 = self.scales[1],
            s2 = self.scales[2],
            s3 = self.scales[3],
        )
    }
}

/// Decodes `o.images` images per mode on `o.threads` threads (image `i`
/// is row `i mod len`; in draft mode its views' generators are keyed by
/// `i` as a loader slot would be).
pub fn run_decode_bench(o: &DecodeBenchOptions) -> Result<Vec<DecodeBenchReport>> {
    use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
    if o.images == 0 || o.threads == 0 {
        return Err(LoaderError::Config("images and threads must be > 0".into()));
    }
    let src = Arc::new(ShardSource::open(&o.shards, o.split, &o.source)?);
    let n = src.len();
    if n == 0 {
        return Err(LoaderError::Config("the split has no rows".into()));
    }
    let crop = rrc_of(&o.pipeline);
    let out = o.pipeline.output_size((0, 0));
    let mut reports = Vec::new();
    for &mode in &o.modes {
        if mode == DecodeMode::Draft && crop.is_none() {
            return Err(LoaderError::Config("decode mode draft needs a pipeline with a random resized crop".into()));
        }
        let next = AtomicUsize::new(0);
        let pixels = AtomicU64::new(0);
        let scales: [AtomicU64; 4] = Default::default();
        let failed = std::sync::Mutex::new(None);
        let cpu0 = process_cpu_seconds();
        let t = Instant::now();
        std::thread::scope(|scope| {
            for _ in 0..o.threads {
                scope.spawn(|| loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    if i >= o.images {
                        return;
                    }
                    let r = src.fetch(i % n).and_then(|bytes| {
                        let (img, denom) = match mode {
                            DecodeMode::Full => (decode_to(&bytes, 3)?, 1),
                            DecodeMode::Turbo(d) => (codec::decode_jpeg_draft(&bytes, d)?, d),
                            DecodeMode::Draft => {
                                let rngs: Vec<Rng> = (0..o.views as u64).map(|k| Rng::derive(o.seed, &[0, i as u64, k])).collect();
                                decode_draft(&bytes, 3, crop.expect("checked"), &rngs, out)?
                            }
                        };
                        Ok((img, denom))
                    });
                    match r {
                        Ok((img, denom)) => {
                            pixels.fetch_add(img.width as u64 * img.height as u64, Ordering::Relaxed);
                            scales[denom.trailing_zeros() as usize].fetch_add(1, Ordering::Relaxed);
                            std::hint::black_box(&img.pixels);
                        }
                        Err(e) => {
                            *failed.lock().unwrap_or_else(|p| p.into_inner()) = Some(format!("row {}: {e}", i % n));
                            next.store(o.images, Ordering::Relaxed);
                            return;
                        }
                    }
                });
            }
        });
        let seconds = t.elapsed().as_secs_f64();
        let cpu_s = process_cpu_seconds() - cpu0;
        if let Some(e) = failed.into_inner().unwrap_or_else(|p| p.into_inner()) {
            return Err(LoaderError::Config(format!("decode ({}): {e}", mode.name())));
        }
        let images = o.images as u64;
        reports.push(DecodeBenchReport {
            tool: "lt-loader".into(),
            mode: mode.name(),
            shards: o.shards.display().to_string(),
            threads: o.threads,
            images,
            seconds,
            images_per_s: images as f64 / seconds,
            cpu_s,
            cpu_ms_per_image: cpu_s / images as f64 * 1e3,
            mpix_per_image: pixels.load(Ordering::Relaxed) as f64 / images as f64 / 1e6,
            scales: std::array::from_fn(|k| scales[k].load(Ordering::Relaxed)),
        });
    }
    Ok(reports)
}
