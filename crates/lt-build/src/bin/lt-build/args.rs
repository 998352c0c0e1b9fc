//! lt-build's command line: the commands, their flags, and the recipe's
//! `[build]` section applied as the flags' defaults.
//!
//! As in ripgrep, a recipe is not merged into the flags after parsing: its
//! values become the defaults of the matching flags before the command line
//! is parsed, so a flag given on the command line overrides them.

use anyhow::{bail, Context};
use clap::{Args, CommandFactory, FromArgMatches, Parser, Subcommand, ValueEnum};
use lt_build::recipe::{BuildRecipe, ProfileName};
use lt_build::sources::{self, photos::PhotoOptions, synth::SynthOptions, SourceOptions};
use lt_build::{BuildOptions, ClassOrder, ProfileKind};
use lt_core::groups::GroupThresholds;
use lt_core::profile::Selection;
use lt_shards::WriterOptions;
use std::path::PathBuf;

/// Turn a dataset into long-tailed Parquet shards with class-frequency metadata.
///
/// Usage: lt-build [OPTIONS] PATH          — build; the source kind is detected from the files in PATH
///        lt-build SOURCE [PATH] [OPTIONS] — build from a named source kind
///        lt-build inspect DIR             — histogram, IF, groups, checksum verification
///
/// SOURCE is one of cifar10, cifar100, idx, folder, list, parquet, synth,
/// photos (`lt-build SOURCE --help` shows what each reads). Examples:
///
///   lt-build --if 256 imagenet/ -o shards/
///   lt-build cifar100 --if 100 data/cifar-100-python -o c100-lt/
///   lt-build idx /usr/share/datasets/fashion-mnist --if 100 -o fmnist-lt/
///   lt-build list imagenet/ --train-list ImageNet_LT_train.txt --test-list ImageNet_LT_test.txt -o inlt/
///   lt-build parquet c100-lt/ --if 10 -o c100-if10/      (regenerate a split from a build)
///   lt-build --recipe pipelines/cifar10-lt-if100.toml data/cifar-10-batches-py -o c10-lt/
///   lt-build photos /usr/share/backgrounds --classes 100 --per-class 52 --test-per-class 0 --if 10 -o photos/
///       (random crops of photographs at long sides 320-800 px as JPEG q90, for loader benchmarks;
///        --size 32 makes 32x32 PNG crops instead)
///
/// The log filter is the LT_LOG environment variable (default `warn`).
#[derive(Parser, Debug)]
#[command(name = "lt-build", version, verbatim_doc_comment, args_conflicts_with_subcommands = true, subcommand_negates_reqs = true)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Option<Command>,
    /// The default command: build from PATH.
    #[command(flatten)]
    pub build: BuildArgs,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// CIFAR-10: the python-pickle (`data_batch_*`, `test_batch`) or binary (`*.bin`) distribution.
    Cifar10(BuildArgs),
    /// CIFAR-100: the python-pickle (`train`, `test`) or binary distribution (fine labels).
    Cifar100(BuildArgs),
    /// MNIST-family IDX files, gzipped or raw (names from --class-names, or Fashion-MNIST's / the digits).
    Idx(BuildArgs),
    /// An ImageNet-style tree, one sub-folder per class (`train/`, `val/`).
    Folder(BuildArgs),
    /// A root plus `relative/path label` list files (ImageNet-LT, iNaturalist): --train-list, --test-list.
    List(BuildArgs),
    /// Any Parquet dataset in the HF image layout, lt-build's own output included.
    Parquet(BuildArgs),
    /// Procedural gratings for tests and demos (no PATH): --classes, --per-class, --size, …
    Synth(BuildArgs),
    /// Labelled random crops of the JPEG photographs under PATH, for loader benchmarks:
    /// --classes, --per-class, --test-per-class, --sizes or --size, --quality, --seed.
    ///
    /// Photographs of at least 256 px are decoded once; item i of a split is a random resized crop
    /// (scale 0.25-1, ratio 3/4-4/3) of a photograph, both drawn from (--seed, split, i), resized to a
    /// long side drawn from --sizes and stored as JPEG at --quality (default 90), or with --size N to
    /// N x N and stored as PNG. Classes are synthetic (class000, …), --per-class crops each before the
    /// profile (--if).
    Photos(BuildArgs),
    /// Print the class histogram, imbalance factor and many/medium/few counts of a built
    /// directory and verify its shards (size, SHA-256, row and label counts).
    Inspect(InspectArgs),
}

/// The command to run, with the source kind of a build (`None`: the
/// default command, whose kind comes from the recipe or the files).
pub enum Run {
    Build { kind: Option<&'static str>, args: Box<BuildArgs> },
    Inspect(InspectArgs),
}

impl Cli {
    fn into_run(self) -> Run {
        let (kind, args) = match self.command {
            None => (None, self.build),
            Some(Command::Inspect(a)) => return Run::Inspect(a),
            Some(Command::Cifar10(a)) => (Some("cifar10"), a),
            Some(Command::Cifar100(a)) => (Some("cifar100"), a),
            Some(Command::Idx(a)) => (Some("idx"), a),
            Some(Command::Folder(a)) => (Some("folder"), a),
            Some(Command::List(a)) => (Some("list"), a),
            Some(Command::Parquet(a)) => (Some("parquet"), a),
            Some(Command::Synth(a)) => (Some("synth"), a),
            Some(Command::Photos(a)) => (Some("photos"), a),
        };
        Run::Build { kind, args: Box::new(args) }
    }
}

#[derive(Args, Debug)]
pub struct InspectArgs {
    /// The built dataset directory.
    pub dir: PathBuf,
    /// Show every class even when there are many.
    #[arg(long)]
    pub all: bool,
    /// Skip the checksum verification.
    #[arg(long)]
    pub no_verify: bool,
}

/// `--profile`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum ProfileArg {
    #[value(name = "exp", alias = "exponential")]
    Exp,
    Step,
    Counts,
    #[value(name = "as-is", alias = "asis")]
    AsIs,
}

impl From<ProfileName> for ProfileArg {
    fn from(p: ProfileName) -> Self {
        match p {
            ProfileName::Exponential => ProfileArg::Exp,
            ProfileName::Step => ProfileArg::Step,
            ProfileName::Counts => ProfileArg::Counts,
            ProfileName::AsIs => ProfileArg::AsIs,
        }
    }
}

/// `--selection`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum SelectionArg {
    /// Seeded choice without replacement (the GLMC reference code).
    Glmc,
    /// Seeded per-class shuffle, first n (the LDAM reference code).
    Ldam,
}

impl From<Selection> for SelectionArg {
    fn from(s: Selection) -> Self {
        match s {
            Selection::Glmc => SelectionArg::Glmc,
            Selection::Ldam => SelectionArg::Ldam,
        }
    }
}

impl From<SelectionArg> for Selection {
    fn from(s: SelectionArg) -> Self {
        match s {
            SelectionArg::Glmc => Selection::Glmc,
            SelectionArg::Ldam => Selection::Ldam,
        }
    }
}

/// `--class-order`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum ClassOrderArg {
    /// Class 0 is the head.
    Source,
    /// A seeded permutation decides which classes are head and tail.
    Shuffle,
}

impl From<ClassOrder> for ClassOrderArg {
    fn from(c: ClassOrder) -> Self {
        match c {
            ClassOrder::Source => ClassOrderArg::Source,
            ClassOrder::Shuffle => ClassOrderArg::Shuffle,
        }
    }
}

impl From<ClassOrderArg> for ClassOrder {
    fn from(c: ClassOrderArg) -> Self {
        match c {
            ClassOrderArg::Source => ClassOrder::Source,
            ClassOrderArg::Shuffle => ClassOrder::Shuffle,
        }
    }
}

/// The flags of a build (every build command takes them all; a source
/// reads the ones named after it).
#[derive(Args, Debug)]
pub struct BuildArgs {
    /// The dataset path.
    #[arg(value_name = "PATH")]
    pub path: Option<PathBuf>,

    /// Recipe whose [build] section supplies the defaults of the matching flags (pipelines/*.toml);
    /// flags given here override it.
    #[arg(long, value_name = "FILE")]
    pub recipe: Option<PathBuf>,

    /// Output directory (must not exist or be empty, unless --overwrite; never a file).
    #[arg(short, long, default_value = "shards")]
    pub output: PathBuf,
    /// Replace an earlier build at --output (atomically, after the build succeeds). Only a
    /// directory holding an lt-build manifest.json is replaced; anything else is refused.
    #[arg(long)]
    pub overwrite: bool,

    /// Imbalance factor n_max / n_min (>= 1). Implies the exponential profile
    /// n_c = floor(n_max * IF^(-c/(C-1))) unless --profile says otherwise.
    #[arg(long = "if", value_name = "IF")]
    pub imbalance: Option<f64>,
    /// Long-tail profile (default: exp with --if, else as-is).
    #[arg(long, value_name = "KIND")]
    pub profile: Option<ProfileArg>,
    /// Fraction of tail classes for the step profile.
    #[arg(long, default_value_t = 0.5)]
    pub step_mu: f64,
    /// Per-class counts (whitespace or comma separated, class-id order), for --profile counts.
    #[arg(long, value_name = "FILE")]
    pub counts_file: Option<PathBuf>,
    /// Head-class count n_max (default: the largest class of the source).
    #[arg(long)]
    pub max_per_class: Option<usize>,
    /// Per-class selection.
    #[arg(long, value_name = "METHOD", default_value = "glmc")]
    pub selection: SelectionArg,
    /// Class order along the profile.
    #[arg(long, value_name = "ORDER", default_value = "source")]
    pub class_order: ClassOrderArg,
    /// Seed of the selection, the class order and the row shuffle.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Lower a class's target to what the source has (recorded in the manifest) instead of failing.
    #[arg(long)]
    pub clamp: bool,
    /// Skip corrupt images (listed in the manifest) instead of failing.
    #[arg(long)]
    pub skip_corrupt: bool,

    /// Re-encode images whose longer side exceeds N pixels (Lanczos3 via fast_image_resize).
    #[arg(long, value_name = "N")]
    pub max_side: Option<u32>,
    /// JPEG quality of re-encodes (1-100); given alone, re-encodes every JPEG. Default 90.
    /// photos: the quality of the crops.
    #[arg(long)]
    pub quality: Option<u8>,
    /// Worker threads (default: all cores).
    #[arg(long)]
    pub threads: Option<usize>,

    /// Start a new shard after this many MiB.
    #[arg(long, default_value_t = 256)]
    pub shard_mb: u64,
    /// Close a row group at this many rows…
    #[arg(long, default_value_t = 1024)]
    pub row_group_rows: usize,
    /// …or at this many MiB of images.
    #[arg(long, default_value_t = 8)]
    pub row_group_mb: usize,
    /// Many/medium/few thresholds: many > A training images…
    #[arg(long, default_value_t = 100)]
    pub many_above: usize,
    /// …few <= B (the GLMC authors' count: many > 100, medium 21–100, few <= 20).
    #[arg(long, default_value_t = 20)]
    pub few_at_most: usize,

    /// Class names, one per line in label order (idx, list, parquet).
    #[arg(long, value_name = "FILE")]
    pub class_names: Option<PathBuf>,
    /// list: the train list file (`relative/path label` lines).
    #[arg(long, value_name = "FILE")]
    pub train_list: Option<PathBuf>,
    /// list: the test list file.
    #[arg(long, value_name = "FILE")]
    pub test_list: Option<PathBuf>,
    /// parquet: the image column (HF Image struct or binary).
    #[arg(long)]
    pub image_column: Option<String>,
    /// parquet: the label column.
    #[arg(long)]
    pub label_column: Option<String>,

    /// synth, photos: number of classes.
    #[arg(long, default_value_t = 10)]
    pub classes: usize,
    /// synth, photos: train images per class before the profile.
    #[arg(long, default_value_t = 500)]
    pub per_class: usize,
    /// synth, photos: test images per class.
    #[arg(long, default_value_t = 100)]
    pub test_per_class: usize,
    /// synth: image side in pixels [default: 32]. photos: square crops of this side, stored as PNG.
    #[arg(long)]
    pub size: Option<u32>,
    /// photos: long sides to draw from, one per crop (without --size).
    #[arg(long, value_delimiter = ',', default_value = "320,400,500,640,800")]
    pub sizes: Vec<u32>,
    /// synth: 1 (gray) or 3 (RGB).
    #[arg(long, default_value_t = 3)]
    pub channels: u8,

    /// Hide the progress bar.
    #[arg(long, short)]
    pub quiet: bool,
}

/// Parses `argv`. With `--recipe`, the recipe's `[build]` values become
/// the defaults of their flags and the command line is parsed again, so the
/// flags it gives win. A usage error exits with clap's message (code 2).
pub fn parse(argv: &[String]) -> anyhow::Result<(Run, Option<BuildRecipe>)> {
    let run = Cli::try_parse_from(argv).unwrap_or_else(|e| e.exit()).into_run();
    let Run::Build { args: ref a, .. } = run else { return Ok((run, None)) };
    let Some(path) = a.recipe.clone() else { return Ok((run, None)) };
    let r = BuildRecipe::load(&path)?;
    let defaults = recipe_defaults(&r);
    let set = |arg: clap::Arg| match defaults.iter().find(|(id, _)| arg.get_id() == *id) {
        Some((_, v)) => arg.default_value(v.clone()),
        None => arg,
    };
    let cmd = Cli::command().mut_args(set).mut_subcommands(|c| c.mut_args(set));
    let m = cmd.try_get_matches_from(argv).unwrap_or_else(|e| e.exit());
    let cli = Cli::from_arg_matches(&m).unwrap_or_else(|e| e.exit());
    Ok((cli.into_run(), Some(r)))
}

/// A value as it is typed on the command line.
fn value_name<T: ValueEnum>(v: T) -> String {
    v.to_possible_value().expect("no value is skipped").get_name().to_string()
}

/// The flag defaults a recipe sets: (argument id, value as typed on the
/// command line).
fn recipe_defaults(r: &BuildRecipe) -> Vec<(&'static str, String)> {
    let d: [(&'static str, Option<String>); 10] = [
        ("imbalance", r.imbalance.map(|v| v.to_string())),
        ("profile", r.profile.map(|p| value_name(ProfileArg::from(p)))),
        ("step_mu", r.step_mu.map(|v| v.to_string())),
        ("counts_file", r.counts_file.clone()),
        ("max_per_class", r.max_per_class.map(|v| v.to_string())),
        ("selection", r.selection.map(|s| value_name(SelectionArg::from(s)))),
        ("class_order", r.class_order.map(|c| value_name(ClassOrderArg::from(c)))),
        ("seed", r.seed.map(|v| v.to_string())),
        ("max_side", r.max_side.map(|v| v.to_string())),
        ("quality", r.quality.map(|v| v.to_string())),
    ];
    d.into_iter().filter_map(|(id, v)| Some((id, v?))).collect()
}

const MAX_THREADS: usize = 4096;
/// 1 TiB: far beyond any useful shard, and `<< 20` cannot overflow.
const MAX_SHARD_MB: u64 = 1 << 20;
/// A row group's image column is one Arrow binary array (32-bit offsets).
const MAX_ROW_GROUP_MB: usize = 1024;

impl BuildArgs {
    /// The source kind and path: the command's kind, else the recipe's
    /// `build.source`, else detected from the files at PATH.
    pub fn source(&self, kind: Option<&'static str>, recipe: Option<&BuildRecipe>) -> anyhow::Result<(String, Option<PathBuf>)> {
        let path = self.path.clone();
        if let Some(k) = kind {
            return Ok((k.to_string(), path));
        }
        let Some(p) = path else { bail!("give a dataset path (or `synth`); see --help") };
        match recipe.and_then(|r| r.source.clone()) {
            Some(k) => Ok((k, Some(p))),
            None => Ok((sources::detect(&p)?.to_string(), Some(p))),
        }
    }

    /// Size flags that would be silently clamped or overflow: refused,
    /// naming the flag, before any work.
    pub fn validate(&self) -> anyhow::Result<()> {
        if !(1..=MAX_SHARD_MB).contains(&self.shard_mb) {
            bail!("--shard-mb must be in 1..={MAX_SHARD_MB}, got {}", self.shard_mb);
        }
        if self.row_group_rows == 0 {
            bail!("--row-group-rows must be at least 1, got 0");
        }
        if !(1..=MAX_ROW_GROUP_MB).contains(&self.row_group_mb) {
            bail!("--row-group-mb must be in 1..={MAX_ROW_GROUP_MB}, got {}", self.row_group_mb);
        }
        if let Some(t) = self.threads {
            if t == 0 {
                bail!("--threads must be at least 1");
            }
            if t > MAX_THREADS {
                bail!("--threads {t} is more than {MAX_THREADS}");
            }
        }
        if let Some(q) = self.quality {
            if !(1..=100).contains(&q) {
                bail!("--quality must be in 1..=100, got {q}");
            }
        }
        if self.max_side == Some(0) {
            bail!("--max-side must be at least 1");
        }
        Ok(())
    }

    /// `--profile` with its parameters; a counts file that would not be
    /// read is an error.
    fn profile(&self) -> anyhow::Result<ProfileKind> {
        let profile = match self.profile {
            None => ProfileKind::Auto,
            Some(ProfileArg::Exp) => ProfileKind::Exponential,
            Some(ProfileArg::Step) => ProfileKind::Step { mu: self.step_mu },
            Some(ProfileArg::Counts) => {
                ProfileKind::CountsFile(self.counts_file.clone().context("--profile counts needs --counts-file FILE")?)
            }
            Some(ProfileArg::AsIs) => ProfileKind::AsIs,
        };
        if let (Some(f), false) = (&self.counts_file, matches!(profile, ProfileKind::CountsFile(_))) {
            let named = self.profile.map(value_name);
            bail!(
                "--counts-file {} is only read with --profile counts (the profile is {}); add --profile counts or drop --counts-file",
                f.display(),
                named.as_deref().unwrap_or(if self.imbalance.is_some() { "exp, from --if" } else { "as-is, the default" })
            );
        }
        Ok(profile)
    }

    /// The build's options for a source of `kind`; `command_line` is
    /// recorded in the manifest.
    pub fn build_options(&self, kind: &str, command_line: Vec<String>) -> anyhow::Result<BuildOptions> {
        let thresholds =
            GroupThresholds::try_new(self.many_above, self.few_at_most).map_err(|e| anyhow::anyhow!("--many-above/--few-at-most: {e}"))?;
        Ok(BuildOptions {
            profile: self.profile()?,
            imbalance: self.imbalance,
            max_per_class: self.max_per_class,
            selection: self.selection.into(),
            class_order: self.class_order.into(),
            seed: self.seed,
            clamp: self.clamp,
            skip_corrupt: self.skip_corrupt,
            overwrite: self.overwrite,
            max_side: self.max_side,
            // The photos source encodes its crops at --quality itself.
            quality: if kind == "photos" { None } else { self.quality },
            writer: WriterOptions::default()
                .with_shard_bytes(self.shard_mb << 20)
                .with_row_group_rows(self.row_group_rows)
                .with_row_group_bytes(self.row_group_mb << 20),
            thresholds,
            command_line,
            chunk: 1024,
        })
    }

    /// The options only some sources read.
    pub fn source_options(&self) -> SourceOptions {
        SourceOptions {
            class_names_file: self.class_names.clone(),
            train_list: self.train_list.clone(),
            test_list: self.test_list.clone(),
            image_column: self.image_column.clone(),
            label_column: self.label_column.clone(),
            synth: SynthOptions {
                classes: self.classes,
                train_per_class: self.per_class,
                test_per_class: self.test_per_class,
                size: self.size.unwrap_or(SynthOptions::default().size),
                channels: self.channels,
                seed: self.seed,
            },
            photos: PhotoOptions {
                classes: self.classes,
                train_per_class: self.per_class,
                test_per_class: self.test_per_class,
                sizes: self.sizes.clone(),
                size: self.size,
                quality: self.quality.unwrap_or(PhotoOptions::default().quality),
                seed: self.seed,
            },
        }
    }
}

/// The flag of each setting that the libraries' errors name by its config
/// name ([`lt_build::BuildError::settings`], which covers lt-core's and
/// lt-shards').
pub const FLAGS: &[(&str, &str)] = &[
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
    ("sizes", "--sizes"),
    ("quality", "--quality"),
    ("channels", "--channels"),
];

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    fn argv(a: &[&str]) -> Vec<String> {
        std::iter::once("lt-build").chain(a.iter().copied()).map(String::from).collect()
    }

    fn build_args(a: &[&str]) -> (Option<&'static str>, BuildArgs) {
        match parse(&argv(a)).unwrap().0 {
            Run::Build { kind, args } => (kind, *args),
            Run::Inspect(_) => panic!("inspect"),
        }
    }

    #[test]
    fn readme_forms_parse() {
        let (kind, a) = build_args(&["--if", "256", "imagenet/", "-o", "shards/"]);
        assert_eq!((kind, a.path.as_deref(), a.imbalance), (None, Some("imagenet/".as_ref()), Some(256.0)));
        let (kind, a) = build_args(&["cifar100", "--if", "100", "data/cifar-100-python", "-o", "c100-lt/"]);
        assert_eq!((kind, a.path.as_deref()), (Some("cifar100"), Some("data/cifar-100-python".as_ref())));
        let (kind, a) = build_args(&["synth", "--classes", "3", "--profile", "exponential", "--class-order", "shuffle"]);
        assert_eq!((kind, a.classes, a.profile, a.class_order), (Some("synth"), 3, Some(ProfileArg::Exp), ClassOrderArg::Shuffle));
        match parse(&argv(&["inspect", "dir", "--all"])).unwrap().0 {
            Run::Inspect(i) => assert!(i.all && !i.no_verify && i.dir == Path::new("dir")),
            Run::Build { .. } => panic!("expected inspect"),
        }
    }

    #[test]
    fn recipe_values_are_defaults_and_flags_override_them() {
        let tmp = tempfile::tempdir().unwrap();
        let p = tmp.path().join("r.toml");
        std::fs::write(
            &p,
            "[build]\nsource = \"idx\"\nimbalance = 100\nprofile = \"step\"\nstep_mu = 0.25\nselection = \"ldam\"\nseed = 4\n",
        )
        .unwrap();
        let r = p.to_str().unwrap();
        for a in [&["--recipe", r, "data"][..], &["idx", "--recipe", r, "data"][..]] {
            let (_, b) = build_args(a);
            assert_eq!(
                (b.imbalance, b.profile, b.step_mu, b.selection, b.seed),
                (Some(100.0), Some(ProfileArg::Step), 0.25, SelectionArg::Ldam, 4)
            );
        }
        let (_, b) = build_args(&["--recipe", r, "data", "--if", "10", "--step-mu", "0.5", "--selection", "glmc", "--profile", "exp"]);
        assert_eq!(
            (b.imbalance, b.profile, b.step_mu, b.selection, b.seed),
            (Some(10.0), Some(ProfileArg::Exp), 0.5, SelectionArg::Glmc, 4)
        );
        let (run, recipe) = parse(&argv(&["--recipe", r, "data"])).unwrap();
        let Run::Build { kind, args } = run else { panic!() };
        assert_eq!(args.source(kind, recipe.as_ref()).unwrap(), ("idx".to_string(), Some(PathBuf::from("data"))));
    }
}
