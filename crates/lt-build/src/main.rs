//! `lt-build`: long-tailed Parquet shards from a real dataset.
use anyhow::{bail, Context};
use clap::Parser;
use indicatif::{ProgressBar, ProgressStyle};
use lt_build::sources::{self, synth::SynthOptions, SourceOptions};
use lt_build::{BuildError, BuildOptions, ClassOrder, Progress, ProfileKind};
use lt_core::groups::GroupThresholds;
use lt_shards::{Split, WriterOptions};
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Mutex;

/// Turn a dataset into long-tailed Parquet shards with class-frequency metadata.
///
/// Usage: lt-build [SOURCE] PATH [options]   — build
///        lt-build synth [options]           — procedural test data
///        lt-build inspect DIR               — histogram, IF, groups, checksum verification
///
/// SOURCE is one of cifar10, cifar100, idx, folder, list, parquet, synth; when
/// omitted it is detected from the files in PATH. Examples:
///
///   lt-build --if 256 imagenet/ -o shards/
///   lt-build cifar100 --if 100 data/cifar-100-python -o c100-lt/
///   lt-build idx /usr/share/datasets/fashion-mnist --if 100 -o fmnist-lt/
///   lt-build list imagenet/ --train-list ImageNet_LT_train.txt --test-list ImageNet_LT_test.txt -o inlt/
///   lt-build parquet c100-lt/ --if 10 -o c100-if10/      (regenerate a split from a build)
#[derive(Parser, Debug)]
#[command(name = "lt-build", version, verbatim_doc_comment)]
struct BuildArgs {
    /// [SOURCE] PATH: the source kind (optional) and the dataset path.
    #[arg(value_name = "SOURCE_OR_PATH", num_args = 0..=2)]
    inputs: Vec<String>,

    /// Recipe whose [build] section supplies defaults (pipelines/*.toml); flags override it.
    #[arg(long, value_name = "FILE")]
    recipe: Option<PathBuf>,

    /// Output directory (must not exist or be empty, unless --overwrite; never a file).
    #[arg(short, long, default_value = "shards")]
    output: PathBuf,
    /// Replace an earlier build at --output (atomically, after the build succeeds). Only a
    /// directory holding an lt-build manifest.json is replaced; anything else is refused.
    #[arg(long)]
    overwrite: bool,

    /// Imbalance factor n_max / n_min (>= 1). Implies the exponential profile
    /// n_c = floor(n_max * IF^(-c/(C-1))) unless --profile says otherwise.
    #[arg(long = "if", value_name = "IF")]
    imbalance: Option<f64>,
    /// Long-tail profile: exp, step, counts, as-is (default: exp with --if, else as-is).
    #[arg(long, value_name = "KIND")]
    profile: Option<String>,
    /// Fraction of tail classes for the step profile.
    #[arg(long, default_value_t = 0.5)]
    step_mu: f64,
    /// Per-class counts (whitespace or comma separated, class-id order), for --profile counts.
    #[arg(long, value_name = "FILE")]
    counts_file: Option<PathBuf>,
    /// Head-class count n_max (default: the largest class of the source).
    #[arg(long)]
    max_per_class: Option<usize>,
    /// Per-class selection: glmc (seeded choice without replacement) or ldam (seeded per-class shuffle, first n). [default: glmc]
    #[arg(long)]
    selection: Option<String>,
    /// Class order along the profile: source (class 0 is the head) or shuffle (seeded permutation). [default: source]
    #[arg(long)]
    class_order: Option<String>,
    /// Seed of the selection, the class order and the row shuffle. [default: 0]
    #[arg(long)]
    seed: Option<u64>,
    /// Lower a class's target to what the source has (recorded in the manifest) instead of failing.
    #[arg(long)]
    clamp: bool,
    /// Skip corrupt images (listed in the manifest) instead of failing.
    #[arg(long)]
    skip_corrupt: bool,

    /// Re-encode images whose longer side exceeds N pixels (Lanczos3 via fast_image_resize).
    #[arg(long, value_name = "N")]
    max_side: Option<u32>,
    /// JPEG quality of re-encodes (1-100); given alone, re-encodes every JPEG. Default 90.
    #[arg(long)]
    quality: Option<u8>,
    /// Worker threads (default: all cores).
    #[arg(long)]
    threads: Option<usize>,

    /// Start a new shard after this many MiB.
    #[arg(long, default_value_t = 256)]
    shard_mb: u64,
    /// Close a row group at this many rows…
    #[arg(long, default_value_t = 1024)]
    row_group_rows: usize,
    /// …or at this many MiB of images.
    #[arg(long, default_value_t = 8)]
    row_group_mb: usize,
    /// Many/medium/few thresholds: many > A training images…
    #[arg(long, default_value_t = 100)]
    many_above: usize,
    /// …few <= B (the GLMC authors' count: many > 100, medium 21–100, few <= 20).
    #[arg(long, default_value_t = 20)]
    few_at_most: usize,

    /// Class names, one per line in label order (idx, list, parquet).
    #[arg(long, value_name = "FILE")]
    class_names: Option<PathBuf>,
    /// list: the train list file (`relative/path label` lines).
    #[arg(long, value_name = "FILE")]
    train_list: Option<PathBuf>,
    /// list: the test list file.
    #[arg(long, value_name = "FILE")]
    test_list: Option<PathBuf>,
    /// parquet: the image column (HF Image struct or binary).
    #[arg(long)]
    image_column: Option<String>,
    /// parquet: the label column.
    #[arg(long)]
    label_column: Option<String>,

    /// synth: number of classes.
    #[arg(long, default_value_t = 10)]
    classes: usize,
    /// synth: train images per class before the profile.
    #[arg(long, default_value_t = 500)]
    per_class: usize,
    /// synth: test images per class.
    #[arg(long, default_value_t = 100)]
    test_per_class: usize,
    /// synth: image side in pixels.
    #[arg(long, default_value_t = 32)]
    size: u32,
    /// synth: 1 (gray) or 3 (RGB).
    #[arg(long, default_value_t = 3)]
    channels: u8,

    /// Hide the progress bar.
    #[arg(long, short)]
    quiet: bool,
}

/// Print the class histogram, imbalance factor and many/medium/few counts of a
/// built directory and verify its shards (size, SHA-256, row and label counts).
#[derive(Parser, Debug)]
#[command(name = "lt-build inspect", version)]
struct InspectArgs {
    /// The built dataset directory.
    dir: PathBuf,
    /// Show every class even when there are many.
    #[arg(long)]
    all: bool,
    /// Skip the checksum verification.
    #[arg(long)]
    no_verify: bool,
}

struct Bar(Mutex<Option<ProgressBar>>, bool);

impl Progress for Bar {
    fn start(&self, what: &str, total: u64) {
        if self.1 {
            return;
        }
        let pb = ProgressBar::new(total);
        pb.set_style(
            ProgressStyle::with_template("{prefix:>9} [{bar:40}] {pos}/{len} {per_sec} eta {eta}")
                .expect("valid template")
                .progress_chars("=> "),
        );
        pb.set_prefix(what.to_string());
        *self.0.lock().unwrap() = Some(pb);
    }
    fn inc(&self, n: u64) {
        if let Some(pb) = self.0.lock().unwrap().as_ref() {
            pb.inc(n);
        }
    }
    fn finish(&self) {
        if let Some(pb) = self.0.lock().unwrap().take() {
            pb.finish();
        }
    }
}

fn inspect(args: Vec<String>) -> anyhow::Result<ExitCode> {
    let a = InspectArgs::parse_from(args);
    let (text, ver) = lt_build::inspect::report(&a.dir, a.all, !a.no_verify)?;
    print!("{text}");
    Ok(if ver.problems.is_empty() { ExitCode::SUCCESS } else { ExitCode::from(1) })
}

const MAX_THREADS: usize = 4096;
/// 1 TiB: far beyond any useful shard, and `<< 20` cannot overflow.
const MAX_SHARD_MB: u64 = 1 << 20;
/// A row group's image column is one Arrow binary array (32-bit offsets).
const MAX_ROW_GROUP_MB: usize = 1024;

/// Size flags that would be silently clamped or overflow: refused, naming
/// the flag, before any work.
fn validate_sizes(a: &BuildArgs) -> anyhow::Result<()> {
    if !(1..=MAX_SHARD_MB).contains(&a.shard_mb) {
        bail!("--shard-mb must be in 1..={MAX_SHARD_MB}, got {}", a.shard_mb);
    }
    if a.row_group_rows == 0 {
        bail!("--row-group-rows must be at least 1, got 0");
    }
    if !(1..=MAX_ROW_GROUP_MB).contains(&a.row_group_mb) {
        bail!("--row-group-mb must be in 1..={MAX_ROW_GROUP_MB}, got {}", a.row_group_mb);
    }
    Ok(())
}

fn run() -> anyhow::Result<ExitCode> {
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::try_from_env("LT_LOG").unwrap_or_else(|_| "warn".into()))
        .with_writer(std::io::stderr)
        .init();
    let argv: Vec<String> = std::env::args().collect();
    if argv.get(1).map(String::as_str) == Some("inspect") {
        let mut args = argv[1..].to_vec();
        args[0] = "lt-build inspect".into();
        return inspect(args);
    }
    let mut a = BuildArgs::parse();
    let r = match &a.recipe {
        Some(p) => lt_build::recipe::BuildRecipe::load(p)?,
        None => Default::default(),
    };
    // Flags override the recipe's [build] section.
    a.imbalance = a.imbalance.or(r.imbalance);
    a.profile = a.profile.clone().or(r.profile.clone());
    a.max_per_class = a.max_per_class.or(r.max_per_class);
    a.counts_file = a.counts_file.clone().or(r.counts_file.as_ref().map(PathBuf::from));
    a.max_side = a.max_side.or(r.max_side);
    a.quality = a.quality.or(r.quality);
    if let Some(mu) = r.step_mu {
        if !std::env::args().any(|x| x == "--step-mu" || x.starts_with("--step-mu=")) {
            a.step_mu = mu;
        }
    }
    let selection = a.selection.clone().or(r.selection.clone()).unwrap_or_else(|| "glmc".into());
    let class_order_name = a.class_order.clone().or(r.class_order.clone()).unwrap_or_else(|| "source".into());
    let seed = a.seed.or(r.seed).unwrap_or(0);
    let (kind, path): (String, Option<PathBuf>) = match a.inputs.as_slice() {
        [] => bail!("give a dataset path (or `synth`); see --help"),
        [one] if sources::KINDS.contains(&one.as_str()) => (one.clone(), None),
        [one] if r.source.is_some() => (r.source.clone().unwrap(), Some(PathBuf::from(one))),
        [one] => {
            let p = PathBuf::from(one);
            (sources::detect(&p)?.to_string(), Some(p))
        }
        [k, p] => {
            if !sources::KINDS.contains(&k.as_str()) {
                bail!("unknown source kind {k:?} (expected one of {})", sources::KINDS.join(", "));
            }
            (k.clone(), Some(PathBuf::from(p)))
        }
        _ => unreachable!("clap limits inputs to two"),
    };
    validate_sizes(&a)?;
    if let Some(t) = a.threads {
        if t == 0 {
            bail!("--threads must be at least 1");
        }
        if t > MAX_THREADS {
            bail!("--threads {t} is more than {MAX_THREADS}");
        }
        rayon::ThreadPoolBuilder::new().num_threads(t).build_global().context("--threads")?;
    }
    let profile = match a.profile.as_deref() {
        None => ProfileKind::Auto,
        Some("exp" | "exponential") => ProfileKind::Exponential,
        Some("step") => ProfileKind::Step { mu: a.step_mu },
        Some("counts") => ProfileKind::CountsFile(a.counts_file.clone().context("--profile counts needs --counts-file FILE")?),
        Some("as-is" | "asis") => ProfileKind::AsIs,
        Some(other) => bail!("--profile: unknown profile {other:?} (expected exp, step, counts or as-is)"),
    };
    if let (Some(f), false) = (&a.counts_file, matches!(profile, ProfileKind::CountsFile(_))) {
        bail!(
            "--counts-file {} is only read with --profile counts (the profile is {}); add --profile counts or drop --counts-file",
            f.display(),
            a.profile.as_deref().unwrap_or(if a.imbalance.is_some() { "exp, from --if" } else { "as-is, the default" })
        );
    }
    let class_order = match class_order_name.as_str() {
        "source" => ClassOrder::Source,
        "shuffle" => ClassOrder::Shuffle,
        other => bail!("--class-order: expected source or shuffle, got {other:?}"),
    };
    if let Some(q) = a.quality {
        if !(1..=100).contains(&q) {
            bail!("--quality must be in 1..=100, got {q}");
        }
    }
    if a.max_side == Some(0) {
        bail!("--max-side must be at least 1");
    }
    let src_opts = SourceOptions {
        class_names_file: a.class_names.clone(),
        train_list: a.train_list.clone(),
        test_list: a.test_list.clone(),
        image_column: a.image_column.clone(),
        label_column: a.label_column.clone(),
        synth: SynthOptions {
            classes: a.classes,
            train_per_class: a.per_class,
            test_per_class: a.test_per_class,
            size: a.size,
            channels: a.channels,
            seed,
        },
    };
    let opts = BuildOptions {
        profile,
        imbalance: a.imbalance,
        max_per_class: a.max_per_class,
        selection: selection.parse()?,
        class_order,
        seed,
        clamp: a.clamp,
        skip_corrupt: a.skip_corrupt,
        overwrite: a.overwrite,
        max_side: a.max_side,
        quality: a.quality,
        writer: WriterOptions::default()
            .with_shard_bytes(a.shard_mb << 20)
            .with_row_group_rows(a.row_group_rows)
            .with_row_group_bytes(a.row_group_mb << 20),
        thresholds: GroupThresholds::try_new(a.many_above, a.few_at_most).map_err(|e| anyhow::anyhow!("--many-above/--few-at-most: {e}"))?,
        command_line: argv.clone(),
        chunk: 1024,
    };
    // Fail fast on flag errors before reading a large source.
    if let Some(f) = opts.imbalance {
        if !f.is_finite() || f < 1.0 {
            return Err(lt_core::CoreError::ImbalanceBelowOne(f).into());
        }
    }
    let t0 = std::time::Instant::now();
    let mut source = sources::open(&kind, path.as_deref(), &src_opts)?;
    let bar = Bar(Mutex::new(None), a.quiet);
    let report = lt_build::build(source.as_mut(), &a.output, &opts, &bar)?;
    let m = &report.manifest;
    if report.replaced {
        eprintln!("replaced the earlier build in {} (--overwrite)", report.path.display());
    }
    let secs = t0.elapsed().as_secs_f64();
    let total = m.splits.values().map(|s| s.rows).sum::<usize>();
    eprintln!(
        "wrote {} ({} train + {} test images, {} classes) in {:.1}s, {:.0} images/s",
        report.path.display(),
        m.splits[&Split::Train].rows,
        m.splits[&Split::Test].rows,
        m.classes.len(),
        secs,
        total as f64 / secs.max(1e-9)
    );
    Ok(ExitCode::SUCCESS)
}

/// The flag of each setting that the libraries' errors name by its config
/// name ([`BuildError::settings`], which covers lt-core's and lt-shards').
const FLAGS: &[(&str, &str)] = &[
    ("imbalance", "--if"),
    ("max_per_class", "--max-per-class"),
    ("step_mu", "--step-mu"),
    ("selection", "--selection"),
    ("clamp", "--clamp"),
    ("skip_corrupt", "--skip-corrupt"),
    ("overwrite", "--overwrite"),
    ("train_list", "--train-list"),
    ("image_column", "--image-column"),
    ("label_column", "--label-column"),
    ("classes", "--classes"),
    ("train_per_class", "--per-class"),
    ("test_per_class", "--test-per-class"),
    ("size", "--size"),
    ("channels", "--channels"),
];

/// `flag --if` or `flags --clamp, --max-per-class, --if`: the flags of the
/// settings that the errors of `e`'s chain name, in their order.
fn flag_hint(e: &anyhow::Error) -> Option<String> {
    let mut flags: Vec<&str> = Vec::new();
    for cause in e.chain() {
        let settings = if let Some(e) = cause.downcast_ref::<BuildError>() {
            e.settings()
        } else if let Some(e) = cause.downcast_ref::<lt_core::CoreError>() {
            e.settings()
        } else if let Some(e) = cause.downcast_ref::<lt_shards::ShardError>() {
            e.settings()
        } else {
            &[]
        };
        for flag in settings.iter().filter_map(|s| FLAGS.iter().find(|(name, _)| name == s).map(|(_, f)| *f)) {
            if !flags.contains(&flag) {
                flags.push(flag);
            }
        }
    }
    match flags.as_slice() {
        [] => None,
        [one] => Some(format!("flag {one}")),
        many => Some(format!("flags {}", many.join(", "))),
    }
}

fn main() -> ExitCode {
    match run() {
        Ok(c) => c,
        Err(e) => {
            let hint = flag_hint(&e).map(|h| format!(" ({h})")).unwrap_or_default();
            eprintln!("lt-build: error: {e:#}{hint}");
            ExitCode::from(2)
        }
    }
}
