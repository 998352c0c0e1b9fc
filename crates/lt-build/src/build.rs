//! The build: profile → selection → global shuffle → parallel encode →
//! shards → manifest, all inside an atomic output directory.

use crate::sources::{Item, Payload, Source};
use crate::{BuildError, Result};
use lt_core::groups::GroupThresholds;
use lt_core::profile::{self, Clamped, Profile, Selection};
use lt_core::rng::Rng;
use lt_shards::{AtomicDir, Manifest, ProfileInfo, Row, SkippedImage, SourceInfo, Split, SplitWriter, WriterOptions};
use lt_vision::codec::{self, Decoded, Filter, Format};
use rayon::prelude::*;
use std::path::{Path, PathBuf};

/// Which long-tail profile to apply.
#[derive(Clone, Debug, Default, PartialEq)]
pub enum ProfileKind {
    /// Exponential when `--if` is given, as-is otherwise.
    #[default]
    Auto,
    Exponential,
    Step {
        mu: f64,
    },
    CountsFile(PathBuf),
    AsIs,
}

/// Class order along the profile (`source` or `shuffle` in a recipe).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ClassOrder {
    /// Class 0 is the head (the paper's convention).
    #[default]
    Source,
    /// A seeded permutation decides which classes are head and tail.
    Shuffle,
}

/// Everything a build needs besides the source.
#[derive(Clone, Debug)]
pub struct BuildOptions {
    pub profile: ProfileKind,
    /// `--if`: n_max / n_min, ≥ 1.
    pub imbalance: Option<f64>,
    /// `--max-per-class`: n_max (defaults to the largest class).
    pub max_per_class: Option<usize>,
    pub selection: Selection,
    pub class_order: ClassOrder,
    pub seed: u64,
    pub clamp: bool,
    pub skip_corrupt: bool,
    pub overwrite: bool,
    /// Re-encode images whose longer side exceeds this.
    pub max_side: Option<u32>,
    /// Re-encode JPEGs at this quality (also the quality used by `max_side`).
    pub quality: Option<u8>,
    pub writer: WriterOptions,
    pub thresholds: GroupThresholds,
    pub command_line: Vec<String>,
    /// Items decoded and encoded in parallel before being written in order.
    pub chunk: usize,
}

impl Default for BuildOptions {
    fn default() -> Self {
        BuildOptions {
            profile: ProfileKind::Auto,
            imbalance: None,
            max_per_class: None,
            selection: Selection::Glmc,
            class_order: ClassOrder::Source,
            seed: 0,
            clamp: false,
            skip_corrupt: false,
            overwrite: false,
            max_side: None,
            quality: None,
            writer: WriterOptions::default(),
            thresholds: GroupThresholds::default(),
            command_line: std::env::args().collect(),
            chunk: 1024,
        }
    }
}

/// Progress reporting (the binary maps it onto indicatif).
pub trait Progress: Sync {
    fn start(&self, _what: &str, _total: u64) {}
    fn inc(&self, _n: u64) {}
    fn finish(&self) {}
}

/// No progress output.
pub struct NoProgress;
impl Progress for NoProgress {}

/// The result of a build.
#[derive(Debug)]
pub struct BuildReport {
    pub path: PathBuf,
    pub manifest: Manifest,
    /// True when an earlier build at `path` was replaced (`--overwrite`).
    pub replaced: bool,
}

#[derive(Default, Clone)]
struct Stats {
    sum: [u64; 3],
    sumsq: [u64; 3],
    pixels: u64,
}

impl Stats {
    fn add(&mut self, img: &Decoded, channels: u8) {
        let c = channels as usize;
        if img.channels == channels {
            for px in img.pixels.chunks_exact(c) {
                for (k, &v) in px.iter().enumerate() {
                    self.sum[k] += v as u64;
                    self.sumsq[k] += (v as u64) * (v as u64);
                }
            }
        } else if img.channels == 1 {
            // Gray stored in an RGB dataset counts as R = G = B.
            for &v in &img.pixels {
                for k in 0..c {
                    self.sum[k] += v as u64;
                    self.sumsq[k] += (v as u64) * (v as u64);
                }
            }
        } else {
            // RGB in a gray dataset: ITU-R 601 luma, as PIL's convert("L").
            for px in img.pixels.chunks_exact(3) {
                let v = ((px[0] as u32 * 299 + px[1] as u32 * 587 + px[2] as u32 * 114 + 500) / 1000) as u64;
                self.sum[0] += v;
                self.sumsq[0] += v * v;
            }
        }
        self.pixels += img.width as u64 * img.height as u64;
    }
    fn merge(&mut self, o: &Stats) {
        for k in 0..3 {
            self.sum[k] += o.sum[k];
            self.sumsq[k] += o.sumsq[k];
        }
        self.pixels += o.pixels;
    }
    fn mean_std(&self, channels: u8) -> (Vec<f64>, Vec<f64>) {
        let n = self.pixels.max(1) as f64;
        (0..channels as usize)
            .map(|k| {
                let m = self.sum[k] as f64 / n / 255.0;
                let var = (self.sumsq[k] as f64 / n / (255.0 * 255.0) - m * m).max(0.0);
                (m, var.sqrt())
            })
            .unzip()
    }
}

/// Turns a source item into a stored row (and the pixels for statistics).
fn encode_item(item: Item, opts: &BuildOptions) -> std::result::Result<(Vec<u8>, Decoded), String> {
    match item.payload {
        Payload::Raw(img) => {
            let png = codec::encode_png(&img).map_err(|e| e.to_string())?;
            Ok((png, img))
        }
        Payload::Encoded(bytes) => {
            let fmt = codec::sniff(&bytes).ok_or_else(|| "not an image file (unknown format)".to_string())?;
            // Strict: a truncated file is corrupt even where the lenient
            // decoder would fill in the missing part (Pillow refuses it).
            let img = codec::decode_strict(&bytes).map_err(|e| e.to_string())?;
            let too_big = opts.max_side.is_some_and(|m| img.width.max(img.height) > m);
            let img = if too_big {
                let (w, h) = codec::fit_max_side(img.width, img.height, opts.max_side.unwrap());
                codec::resize(&img, w, h, Filter::Lanczos3).map_err(|e| e.to_string())?
            } else {
                img
            };
            let stored = match fmt {
                Format::Jpeg if too_big || opts.quality.is_some() => {
                    codec::encode_jpeg(&img, opts.quality.unwrap_or(90)).map_err(|e| e.to_string())?
                }
                Format::Jpeg => bytes,
                Format::Png if !too_big => bytes,
                _ => codec::encode_png(&img).map_err(|e| e.to_string())?,
            };
            Ok((stored, img))
        }
    }
}

fn resolve_profile(opts: &BuildOptions) -> Result<Profile> {
    let need_if = |what: &str| {
        opts.imbalance.ok_or_else(|| BuildError::Setting {
            settings: &["imbalance"],
            msg: format!("the {what} profile needs the imbalance factor (imbalance)"),
        })
    };
    Ok(match &opts.profile {
        ProfileKind::Auto => match opts.imbalance {
            Some(f) => Profile::Exponential { imbalance: f },
            None => Profile::AsIs,
        },
        ProfileKind::Exponential => Profile::Exponential { imbalance: need_if("exponential")? },
        ProfileKind::Step { mu } => Profile::Step { imbalance: need_if("step")?, mu: *mu },
        ProfileKind::CountsFile(p) => {
            let text = std::fs::read_to_string(p).map_err(|e| BuildError::Io { path: p.clone(), error: e })?;
            let counts = text
                .split(|c: char| c.is_whitespace() || c == ',')
                .filter(|t| !t.is_empty())
                .enumerate()
                .map(|(i, t)| {
                    t.parse::<usize>().map_err(|_| BuildError::Source {
                        path: p.clone(),
                        msg: format!("entry {}: {t:?} is not a non-negative integer", i + 1),
                    })
                })
                .collect::<Result<Vec<_>>>()?;
            Profile::Counts { counts }
        }
        ProfileKind::AsIs => Profile::AsIs,
    })
}

/// An exponential or step profile whose `n_max / IF` falls below one image
/// gives tail classes no training image at all: the split would silently
/// lose classes, so it is an error naming the settings. (An explicit 0 in a
/// counts file is taken as meant.)
fn check_no_empty_tail(prof: &Profile, targets: &[usize], available: &[usize], names: &[String], n_max: Option<usize>) -> Result<()> {
    let imbalance = match prof {
        Profile::Exponential { imbalance } | Profile::Step { imbalance, .. } => *imbalance,
        Profile::Counts { .. } | Profile::AsIs => return Ok(()),
    };
    let Some(c) = targets.iter().position(|&t| t == 0) else { return Ok(()) };
    let head = n_max.unwrap_or_else(|| available.iter().copied().max().unwrap_or(0));
    let raise = if n_max.is_some() { "max_per_class" } else { "max_per_class (default: the largest class)" };
    let zero = targets.iter().filter(|&&t| t == 0).count();
    // Rust prints 1e300 with all its zeros; keep large values short.
    let shown = if imbalance >= 1e6 { format!("{imbalance:e}") } else { imbalance.to_string() };
    let r = head as f64 / imbalance;
    let ratio = if r == 0.0 || r >= 1e-3 { format!("{r:.3}") } else { format!("{r:.1e}") };
    let msg = format!(
        "imbalance {shown} with n_max {head} gives {zero} class(es) no training image, starting with class {c} ({}): \
         n_max / IF = {ratio} < 1; lower imbalance to at most {head} or raise {raise}",
        names.get(c).map(String::as_str).unwrap_or("?"),
    );
    Err(BuildError::Setting { settings: &["imbalance", "max_per_class"], msg })
}

/// Settings checked before any work (the build refuses them naming the
/// setting).
fn check_settings(opts: &BuildOptions) -> Result<()> {
    if let Some(f) = opts.imbalance {
        if !f.is_finite() || f < 1.0 {
            return Err(lt_core::CoreError::ImbalanceBelowOne(f).into());
        }
    }
    if opts.max_per_class == Some(0) {
        return Err(BuildError::Setting { settings: &["max_per_class"], msg: "max_per_class must be at least 1".into() });
    }
    Ok(())
}

/// What the profile asks of the source: the items kept in each split and
/// how they were chosen.
struct Plan {
    names: Vec<String>,
    profile: Profile,
    /// Class ids from head to tail (`None`: class-id order).
    class_order: Option<Vec<usize>>,
    /// Train images per class, after clamping.
    targets: Vec<usize>,
    clamped: Vec<Clamped>,
    /// Source indices kept, per split (`Split as usize`), ascending.
    selected: [Vec<usize>; 2],
}

/// Resolves the profile against the source's train labels and selects the
/// train items; the test split is kept whole.
fn plan(source: &dyn Source, opts: &BuildOptions) -> Result<Plan> {
    let names: Vec<String> = source.class_names().to_vec();
    let classes = names.len();
    let train_labels = source.labels(Split::Train);
    let available = profile::histogram(train_labels.iter().copied(), classes);
    let prof = resolve_profile(opts)?;
    let class_order = match opts.class_order {
        ClassOrder::Source => None,
        ClassOrder::Shuffle => Some(profile::shuffled_class_order(classes, opts.seed)),
    };
    let mut targets = prof.counts_ordered(&available, opts.max_per_class, class_order.as_deref())?;
    check_no_empty_tail(&prof, &targets, &available, &names, opts.max_per_class)?;
    let clamped = profile::clamp_or_fail(&mut targets, &available, &names, opts.clamp)?;
    let selected =
        [profile::select(train_labels, &targets, opts.selection, opts.seed)?, (0..source.labels(Split::Test).len()).collect::<Vec<_>>()];
    Ok(Plan { names, profile: prof, class_order, targets, clamped, selected })
}

/// Decodes every selected item of `split` strictly and drops the corrupt
/// ones from `selected`, returning them (the build's `skip_corrupt`).
fn drop_corrupt(source: &dyn Source, split: Split, selected: &mut Vec<usize>, progress: &dyn Progress) -> Vec<SkippedImage> {
    progress.start(&format!("checking {}", split.as_str()), selected.len() as u64);
    let bad: Vec<(usize, String, String)> = selected
        .par_iter()
        .filter_map(|&i| {
            let r = match source.item(split, i) {
                Ok(item) => {
                    let path = item.path.clone();
                    match &item.payload {
                        Payload::Encoded(b) => codec::decode_strict(b).err().map(|e| (i, path, e.to_string())),
                        Payload::Raw(_) => None,
                    }
                }
                Err(e) => Some((i, String::new(), e.to_string())),
            };
            progress.inc(1);
            r
        })
        .collect();
    progress.finish();
    let bad_set: std::collections::HashSet<usize> = bad.iter().map(|b| b.0).collect();
    selected.retain(|i| !bad_set.contains(i));
    bad.into_iter()
        .map(|(i, path, error)| {
            tracing::warn!("skipping corrupt image {path} ({} split, source index {i}): {error}", split.as_str());
            SkippedImage { split, source_index: i, path, error }
        })
        .collect()
}

/// One split as written: its class counts, its shards and (train only) the
/// pixel statistics of its images.
struct WrittenSplit {
    counts: Vec<usize>,
    shards: Vec<lt_shards::ShardInfo>,
    stats: Stats,
}

/// Shuffles the `selected` items of `split` (seeded), encodes them in
/// parallel chunks and writes them in that order into `dir`.
fn write_split(
    source: &dyn Source,
    split: Split,
    selected: &[usize],
    dir: &Path,
    names: &[String],
    opts: &BuildOptions,
    progress: &dyn Progress,
) -> Result<WrittenSplit> {
    let s = split as usize;
    let channels = source.channels();
    let labels = source.labels(split);
    let mut order = selected.to_vec();
    Rng::derive(opts.seed, &[0x5807, s as u64]).shuffle(&mut order);
    let counts = profile::histogram(order.iter().map(|&i| labels[i]), names.len());
    let mut writer = SplitWriter::try_new(dir, split, names, &counts, opts.writer.clone())?;
    progress.start(split.as_str(), order.len() as u64);
    let mut stats = Stats::default();
    for chunk in order.chunks(opts.chunk.max(1)) {
        let rows: Vec<Result<(Row, Option<Stats>)>> = chunk
            .par_iter()
            .map(|&i| {
                let item = source.item(split, i)?;
                let path = item.path.clone();
                let (bytes, img) = encode_item(item, opts).map_err(|msg| BuildError::CorruptImage {
                    split: split.as_str(),
                    path: format!("{} (in {})", path, source.location()),
                    msg,
                })?;
                // Per-image statistics, merged in order below (no lock on the hot path).
                let st = (split == Split::Train).then(|| {
                    let mut st = Stats::default();
                    st.add(&img, channels);
                    st
                });
                progress.inc(1);
                let row = Row {
                    image: bytes,
                    path,
                    label: labels[i] as i64,
                    source_index: i as i64,
                    height: img.height as i32,
                    width: img.width as i32,
                };
                Ok((row, st))
            })
            .collect();
        let mut out = Vec::with_capacity(rows.len());
        for r in rows {
            let (row, st) = r?;
            if let Some(st) = st {
                stats.merge(&st);
            }
            out.push(row);
        }
        writer.write_rows(out)?;
    }
    progress.finish();
    Ok(WrittenSplit { counts, shards: writer.finish()?, stats })
}

/// Builds the dataset from `source` into `out`.
pub fn build(source: &mut dyn Source, out: &Path, opts: &BuildOptions, progress: &dyn Progress) -> Result<BuildReport> {
    check_settings(opts)?;
    // Refuse an existing output before doing any work.
    let staging = AtomicDir::begin(out, opts.overwrite)?;
    let mut plan = plan(source, opts)?;
    source.prepare(Split::Train, &plan.selected[0])?;
    source.prepare(Split::Test, &plan.selected[1])?;

    let source: &dyn Source = source;
    let mut skipped = Vec::new();
    if opts.skip_corrupt {
        for split in Split::ALL {
            skipped.extend(drop_corrupt(source, split, &mut plan.selected[split as usize], progress));
        }
    }

    let mut builder = Manifest::builder(format!("lt-build {}", env!("CARGO_PKG_VERSION")), &plan.names);
    let mut stats = Stats::default();
    for split in Split::ALL {
        let w = write_split(source, split, &plan.selected[split as usize], staging.path(), &plan.names, opts, progress)?;
        if split == Split::Train {
            stats = w.stats;
        }
        builder = builder.split(split, &w.counts, w.shards);
    }

    let channels = source.channels();
    let (mean, std) = stats.mean_std(channels);
    let manifest = builder
        .command_line(opts.command_line.clone())
        .source(SourceInfo::new(source.kind(), source.location()))
        .profile(ProfileInfo { class_order: plan.class_order, n_max: opts.max_per_class, spec: plan.profile, targets: plan.targets })
        .seed(opts.seed)
        .selection(opts.selection)
        .clamped(plan.clamped)
        .skipped(skipped)
        .channels(channels, mean, std)
        .thresholds(opts.thresholds)
        .build()?;
    manifest.save(staging.path())?;
    let replaced = staging.replaces_build();
    let path = staging.commit()?;
    Ok(BuildReport { path, manifest, replaced })
}
