//! `lt-train`: GLMC training on lt-build shards (thin CLI over
//! [`lt_train::train`] and [`lt_report`]).

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context, Result};
use clap::{Parser, Subcommand, ValueEnum};
use indicatif::{ProgressBar, ProgressStyle};
use lt_glmc::card::Head;
use lt_glmc::checkpoint;
use lt_glmc::device::parse_device;
use lt_glmc::dist::Backend;
use lt_glmc::loss::RebalancedLoss;
use lt_glmc::GlmcError;
use lt_report::{EpochRecord, RunInfo};
use lt_shards::Split;
use lt_train::cluster::Cluster;
use lt_train::eval::{self, EvalOptions};
use lt_train::export;
use lt_train::finetune::{self, FinetuneOptions};
use lt_train::recipe::{Method, Recipe};
use lt_train::train::{self, Dataset, Observer, TrainOptions, CHECKPOINT_DIR, RECIPE_FILE};
use lt_train::TrainError;

/// Train GLMC (or a baseline) on long-tailed shards made by lt-build, then
/// write metrics.jsonl, report.md and plots into the run directory.
///
/// `lt-train SHARDS [OPTIONS]` trains; `lt-train finetune RUN_DIR`,
/// `lt-train eval RUN_DIR`, `lt-train predict RUN_DIR IMAGE...`,
/// `lt-train export RUN_DIR` and `lt-train replot RUN_DIR...` work on run
/// directories (name a shard directory called finetune, eval, predict,
/// export, replot or help as ./finetune, …).
/// One process at a time writes a run directory: a second one is refused.
///
/// Examples:
///   lt-train fmnist-lt/ --recipe pipelines/fashion-mnist-lt-demo.toml --epochs 3
///   lt-train shards/ --method ce --set optim.lr=0.05 --out runs/ce
///   lt-train shards/ --resume runs/ce
///   lt-train shards/ --out runs/ce --auto-resume   (resume when runs/ce has a checkpoint, else start)
///   lt-train shards/ --resume runs/ce --epochs 300   (more epochs: constant schedule, no GLMC re-weighting)
///   lt-train finetune runs/ce --epochs 5     (MaxNorm fine-tuning of g_cb; see lt-train finetune --help)
///   lt-train eval runs/ce --shards other-shards/   (evaluate the checkpoint; both heads)
///   lt-train predict runs/ce photo.jpg images/ --top-k 3
///   lt-train export runs/ce --format torchscript   (a TorchScript module for torch.jit.load)
///   lt-train replot runs/ce                  (redraw the run's plots)
///
/// Data-parallel: under torchrun each process trains its share of every
/// global batch (train.batch_size stays the global batch) and rank 0 writes
/// the run, over NCCL on GPUs (one per rank, cuda:LOCAL_RANK) and Gloo on
/// the CPU (--dist-backend); see the README's "Multi-GPU and multi-node":
///   torchrun --standalone --nproc-per-node 2 --no-python lt-train shards/ --out runs/dp
#[derive(Parser, Debug)]
#[command(name = "lt-train", version, about, verbatim_doc_comment, subcommand_negates_reqs = true, args_conflicts_with_subcommands = true)]
struct Cli {
    #[command(subcommand)]
    command: Option<Sub>,
    #[command(flatten)]
    train: Args,
}

#[derive(Subcommand, Debug)]
enum Sub {
    /// MaxNorm fine-tuning of a run's re-balanced classifier g_cb (second stage)
    ///
    /// The optional second stage of GLMC: the encoder and the other heads are
    /// frozen, g_cb is trained with SGD, and its weight rows are projected onto
    /// the MaxNorm ball once per epoch (or after every iteration). Settings come
    /// from the run recipe's [finetune] section; the defaults are the
    /// weight-balancing reference's second stage: 10 epochs, lr 0.01 cosine,
    /// wd 0.1, thresh_ratio 0.1, its class-balanced loss (loss = "cb", or "ce",
    /// "balanced_softmax") on natural sampling (sampling = "instance", or
    /// "class_balanced"). Writes a run directory of its own (metrics.jsonl,
    /// report.md, checkpoint, recipe.toml).
    ///
    /// Examples:
    ///   lt-train finetune runs/c10-glmc
    ///   lt-train finetune runs/c10-glmc --epochs 5 --set finetune.lr=0.005 --per-iteration --out runs/c10-mn
    ///   lt-train finetune runs/c10-glmc --set finetune.loss=balanced_softmax --out runs/c10-bs
    ///   lt-train finetune runs/c10-glmc --resume      (after an interruption)
    #[command(verbatim_doc_comment)]
    Finetune(FinetuneArgs),
    /// Redraw the plots of finished runs
    ///
    /// Redraws per_class.png and curves.png of finished runs from their
    /// recipe.toml, metrics.jsonl and report.json (e.g. after an upgrade);
    /// report.md is left as it is.
    ///
    /// Example:
    ///   lt-train replot runs/c10-glmc runs/c10-glmc/finetune
    #[command(verbatim_doc_comment)]
    Replot(ReplotArgs),
    /// Evaluate a run's checkpoint on shards with the same classes
    ///
    /// Builds the model from the checkpoint's model card (architecture,
    /// classes, normalization, evaluation pipeline), evaluates both heads (g
    /// and g_cb) on a split, prints the many/medium/few table and writes
    /// eval.json and per_class.png into --out (default RUN_DIR/eval). The
    /// shards' class names and order must be the model's.
    ///
    /// Examples:
    ///   lt-train eval runs/c10-glmc
    ///   lt-train eval runs/c10-glmc --shards c10-balanced/ --split test --head g
    #[command(verbatim_doc_comment)]
    Eval(EvalArgs),
    /// Classify images with a run's model
    ///
    /// Each INPUT is a JPEG or PNG file, a folder (searched for .jpg, .jpeg
    /// and .png), or an image Parquet file (HF layout, `image` column). Images
    /// go through the model's evaluation pipeline and normalization; prints
    /// the top classes with their probabilities (JSON lines with --json).
    ///
    /// Examples:
    ///   lt-train predict runs/c10-glmc cat.png
    ///   lt-train predict runs/c10-glmc photos/ shards/test-00000-of-00001.parquet --top-k 3 --json
    #[command(verbatim_doc_comment)]
    Predict(PredictArgs),
    /// Export a run's model for deployment (TorchScript)
    ///
    /// Traces the evaluation head (g or g_cb, from the model card) with
    /// libtorch's JIT tracer and saves a TorchScript module: a float batch
    /// N x C x H x W, normalized as (x/255 - mean)/std, to logits. The example
    /// input has the eval pipeline's size (its crop; for pipelines that keep
    /// the source size, the run's image size, or --size). Beside the module,
    /// a .json file holds the model card (classes, mean/std, pipeline) and
    /// the traced input shape. The saved module is reloaded and checked
    /// against the model's logits before the command succeeds.
    /// Load it with torch.jit.load(FILE) or tch::CModule::load(FILE).
    /// ONNX: libtorch's C++ API has no ONNX exporter (it is Python's
    /// torch.onnx); see the README.
    ///
    /// Examples:
    ///   lt-train export runs/c10-glmc
    ///   lt-train export runs/c10-glmc/checkpoint --size 32 --out c10-glmc.pt
    #[command(verbatim_doc_comment)]
    Export(ExportArgs),
}

#[derive(Clone, Copy, Debug, ValueEnum)]
enum SplitArg {
    Test,
    Train,
}

#[derive(Clone, Copy, Debug, ValueEnum)]
enum HeadArg {
    /// The model's evaluation head (from its model card)
    Auto,
    /// The conventional classifier g
    G,
    /// The re-balanced classifier g_cb
    #[value(name = "g_cb")]
    GCb,
}

impl HeadArg {
    fn head(self) -> Option<Head> {
        match self {
            HeadArg::Auto => None,
            HeadArg::G => Some(Head::G),
            HeadArg::GCb => Some(Head::GCb),
        }
    }
}

// `lt-train eval` (its help text is on Sub::Eval).
#[derive(clap::Args, Debug)]
struct EvalArgs {
    /// Run directory (or a checkpoint directory)
    run_dir: PathBuf,
    /// Shard directory (default: the one named in RUN_DIR/report.json)
    #[arg(long)]
    shards: Option<PathBuf>,
    #[arg(long, value_enum, default_value = "test")]
    split: SplitArg,
    /// The head whose accuracy is the headline
    #[arg(long, value_enum, default_value = "auto")]
    head: HeadArg,
    /// Output directory for eval.json and per_class.png (default RUN_DIR/eval)
    #[arg(long)]
    out: Option<PathBuf>,
    /// Images per evaluation batch
    #[arg(long, default_value_t = 256, value_parser = clap::value_parser!(u64).range(1..))]
    batch_size: u64,
    /// cpu, cuda, cuda:N or auto
    #[arg(long, default_value = "auto")]
    device: String,
    /// libtorch intra-op threads, at least 1 (default: libtorch's choice)
    #[arg(long, value_parser = clap::value_parser!(i32).range(1..))]
    threads: Option<i32>,
}

fn run_eval(a: EvalArgs) -> Result<()> {
    let device = parse_device(&a.device).context("--device")?;
    if let Some(n) = a.threads {
        tch::set_num_threads(n);
    }
    let mut o = EvalOptions::new(&a.run_dir, device);
    o.shards = a.shards;
    o.split = match a.split {
        SplitArg::Test => Split::Test,
        SplitArg::Train => Split::Train,
    };
    o.head = a.head.head();
    o.out = a.out;
    o.batch_size = a.batch_size as usize;
    let r = eval::eval(&o).map_err(|e| flagged(e, Command::Eval))?;
    let rep = r.report();
    println!(
        "{} on {} ({} split, {} images), headline head {} (the model's: {}):",
        a.run_dir.display(),
        r.shards.display(),
        r.split.as_str(),
        rep.samples,
        r.head.paper_name(),
        r.model_head.paper_name()
    );
    print!("{}", r.table());
    println!("eval: {}", r.out.join(eval::EVAL_JSON).display());
    Ok(())
}

// `lt-train predict` (its help text is on Sub::Predict).
#[derive(clap::Args, Debug)]
struct PredictArgs {
    /// Run directory (or a checkpoint directory)
    run_dir: PathBuf,
    /// Image files, folders of images, or image Parquet files
    #[arg(required = true, value_name = "INPUT")]
    inputs: Vec<PathBuf>,
    /// Classes to list per image
    #[arg(long, default_value_t = 5, value_parser = clap::value_parser!(u64).range(1..))]
    top_k: u64,
    #[arg(long, value_enum, default_value = "auto")]
    head: HeadArg,
    /// One JSON object per image instead of text
    #[arg(long)]
    json: bool,
    /// cpu, cuda, cuda:N or auto
    #[arg(long, default_value = "auto")]
    device: String,
}

fn run_predict(a: PredictArgs) -> Result<()> {
    let device = parse_device(&a.device).context("--device")?;
    let m = eval::load_model(&a.run_dir, device).map_err(|e| flagged(e, Command::Eval))?;
    let preds = eval::predict(&m, &a.inputs, a.head.head(), a.top_k as usize, device)?;
    for p in preds {
        if a.json {
            println!("{}", serde_json::to_string(&p)?);
        } else {
            let top: Vec<String> = p.top.iter().map(|(_, name, prob)| format!("{name} {:.1}%", 100.0 * prob)).collect();
            println!("{}: {}", p.input, top.join(", "));
        }
    }
    Ok(())
}

#[derive(Clone, Copy, Debug, ValueEnum)]
enum FormatArg {
    /// A traced TorchScript module (torch.jit.load)
    Torchscript,
    /// Not available from Rust: libtorch's C++ API has no ONNX exporter
    Onnx,
}

// `lt-train export` (its help text is on Sub::Export).
#[derive(clap::Args, Debug)]
struct ExportArgs {
    /// Run directory (or a checkpoint directory)
    run_dir: PathBuf,
    #[arg(long, value_enum, default_value = "torchscript")]
    format: FormatArg,
    /// The module file (default RUN_DIR/export/model.pt; its description goes beside it as .json)
    #[arg(long)]
    out: Option<PathBuf>,
    /// Example input size for tracing, N or WxH (default: the eval pipeline's crop, else the run's image size)
    #[arg(long, value_parser = parse_size)]
    size: Option<(u32, u32)>,
    /// The head to export
    #[arg(long, value_enum, default_value = "auto")]
    head: HeadArg,
}

/// `N` (square) or `WxH`, both > 0.
fn parse_size(s: &str) -> std::result::Result<(u32, u32), String> {
    let num = |v: &str| v.trim().parse::<u32>().ok().filter(|&n| n > 0);
    let parsed = match s.split_once(['x', 'X']) {
        Some((w, h)) => num(w).zip(num(h)),
        None => num(s).map(|n| (n, n)),
    };
    parsed.ok_or_else(|| format!("{s:?}: expected N or WxH, positive integers"))
}

fn run_export(a: ExportArgs) -> Result<()> {
    if let FormatArg::Onnx = a.format {
        bail!(
            "--format onnx: libtorch's C++ API, which lt-train runs on, has no ONNX exporter (it is Python's torch.onnx); \
             export --format torchscript, or see the README for ONNX from tools/lt_glmc_torch.py"
        );
    }
    let mut o = export::ExportOptions::new(&a.run_dir);
    o.out = a.out;
    o.size = a.size;
    o.head = a.head.head();
    let e = export::export(&o).map_err(|e| flagged(e, Command::Eval))?;
    let [_, c, h, w] = e.info.input_shape;
    println!(
        "{}: TorchScript module of {} (input N x {c} x {h} x {w}, normalized; checked, max |diff| {:.1e})",
        e.path.display(),
        e.info.head,
        e.max_abs_diff
    );
    println!("description: {}", e.info_path.display());
    Ok(())
}

// The training flags (`lt-train SHARDS ...`). No doc comment here: the
// command's about text is Cli's.
#[derive(clap::Args, Debug)]
struct Args {
    /// Shard directory (lt-build's output, with manifest.json)
    #[arg(required = true)]
    shards: Option<PathBuf>,
    /// Recipe (TOML, see pipelines/); default: the authors' settings chosen from the manifest
    #[arg(long)]
    recipe: Option<PathBuf>,
    /// Override a recipe field, e.g. --set optim.lr=0.05 (repeatable)
    #[arg(long = "set", value_name = "KEY=VALUE")]
    sets: Vec<String>,
    /// Training epochs (sets train.epochs); with --resume, more epochs for a
    /// run with a constant schedule and no GLMC re-weighting
    #[arg(long)]
    epochs: Option<usize>,
    /// Batch size (sets train.batch_size)
    #[arg(long)]
    batch_size: Option<usize>,
    /// Seed (sets train.seed)
    #[arg(long)]
    seed: Option<u64>,
    /// Training method (sets train.method and the glmc switches)
    #[arg(long, value_enum)]
    method: Option<MethodArg>,
    /// cpu, cuda, cuda:N or auto
    #[arg(long, default_value = "auto")]
    device: String,
    /// Run directory (default runs/<recipe name>-<method>)
    #[arg(long)]
    out: Option<PathBuf>,
    /// Continue the run in this directory from its last checkpoint, with its
    /// recipe.toml; flags change only what they name (see --epochs)
    #[arg(long, value_name = "RUN_DIR", conflicts_with = "out")]
    resume: Option<PathBuf>,
    /// Resume the run in --out when it has a checkpoint, else start it there:
    /// the same command line restarts an interrupted run (torchrun
    /// --max-restarts, a scheduler's requeue)
    #[arg(long, conflicts_with = "resume")]
    auto_resume: bool,
    /// Stop (with a checkpoint) after this many epochs in total; resume later
    #[arg(long)]
    stop_after: Option<usize>,
    /// Also checkpoint every N steps inside an epoch, so that a killed run
    /// loses at most N steps; --resume continues mid-epoch (bit-exact on CPU)
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u64).range(1..))]
    checkpoint_every: Option<u64>,
    /// Write a step trace into DIR: the initial weights and every step's
    /// batch, labels, λ, CutMix box and losses (about 200 KB per Fashion-MNIST
    /// GLMC step), for an exact replay by tools/glmc_harness.py --replay DIR
    #[arg(long, value_name = "DIR", conflicts_with = "resume")]
    trace: Option<PathBuf>,
    /// libtorch intra-op threads, at least 1 (default: libtorch's choice)
    #[arg(long, value_parser = clap::value_parser!(i32).range(1..))]
    threads: Option<i32>,
    /// Under torchrun (data-parallel): seconds a rank waits for the others,
    /// to join and in every collective, before it fails instead of hanging
    #[arg(long, value_name = "SECS", default_value_t = 600, value_parser = clap::value_parser!(u64).range(1..=86_400))]
    dist_timeout: u64,
    /// Under torchrun: the collective backend. auto: nccl when the model is on
    /// a GPU (one GPU per rank, cuda:LOCAL_RANK), gloo on the CPU
    #[arg(long, value_enum, default_value = "auto")]
    dist_backend: DistBackendArg,
    /// No progress bar
    #[arg(long, short)]
    quiet: bool,
}

#[derive(Clone, Copy, Debug, ValueEnum)]
enum DistBackendArg {
    /// nccl when --device is a GPU, gloo on the CPU
    Auto,
    /// c10d's Gloo: the model on the CPU
    Gloo,
    /// c10d's NCCL: the model on this rank's GPU
    Nccl,
}

#[derive(Clone, Copy, Debug, ValueEnum)]
enum MethodArg {
    /// GLMC: global MixUp and local CutMix, class-weighted re-balancing, cumulative consistency
    Glmc,
    /// Plain cross-entropy baseline (instance sampling, no mixing, head g)
    Ce,
    /// GLMC without the consistency loss (re-weighting only)
    GlmcNoCon,
    /// GLMC without re-weighting (consistency only, head g)
    GlmcNoRw,
    /// GLMC with Balanced Softmax as the re-balanced loss
    Bsce,
}

impl MethodArg {
    /// Applies the method to the recipe as one change (method, views and
    /// the GLMC switches together), then re-validates.
    fn apply(self, r: &mut Recipe) -> Result<()> {
        let glmc = !matches!(self, MethodArg::Ce);
        r.train.method = if glmc { Method::Glmc } else { Method::CrossEntropy };
        r.loader.views = Some(if glmc { 2 } else { 1 });
        match self {
            MethodArg::GlmcNoCon => r.glmc.consistency = false,
            MethodArg::GlmcNoRw => r.glmc.reweight = false,
            MethodArg::Bsce => r.glmc.rebalanced = RebalancedLoss::BalancedSoftmax,
            MethodArg::Glmc | MethodArg::Ce => {}
        }
        r.validate()?;
        Ok(())
    }
    fn tag(self) -> &'static str {
        match self {
            MethodArg::Glmc => "glmc",
            MethodArg::Ce => "ce",
            MethodArg::GlmcNoCon => "glmc-no-con",
            MethodArg::GlmcNoRw => "glmc-no-rw",
            MethodArg::Bsce => "bsce",
        }
    }
}

impl Args {
    fn shards(&self) -> &std::path::Path {
        self.shards.as_deref().unwrap_or(std::path::Path::new("."))
    }

    /// The recipe of a new run: --recipe, or the defaults for the shards;
    /// then the flags.
    fn recipe(&self) -> Result<Recipe> {
        let r = match &self.recipe {
            Some(p) => Recipe::load(p)?,
            None => train::default_recipe(&Dataset::open(self.shards(), 8192)?),
        };
        self.apply_flags(r)
    }

    /// The recipe of a resumed run: its recipe.toml (or --recipe), then the
    /// flags, so that only what the flags change can differ.
    fn resume_recipe(&self, dir: &std::path::Path) -> Result<Recipe> {
        let r = match &self.recipe {
            Some(p) => Recipe::load(p)?,
            None => {
                let p = dir.join(RECIPE_FILE);
                if !p.is_file() {
                    bail!("cannot resume {}: no {RECIPE_FILE} in it (is it an lt-train run directory?)", dir.display());
                }
                Recipe::load(&p).with_context(|| format!("cannot resume {}", dir.display()))?
            }
        };
        self.apply_flags(r)
    }

    fn apply_flags(&self, mut r: Recipe) -> Result<Recipe> {
        if let Some(m) = self.method {
            m.apply(&mut r)?;
        }
        for kv in &self.sets {
            let (k, v) = kv.split_once('=').with_context(|| format!("--set {kv:?}: expected KEY=VALUE"))?;
            r.set(k.trim(), v.trim())?;
        }
        if let Some(e) = self.epochs {
            r.set("train.epochs", &e.to_string())?;
        }
        if let Some(b) = self.batch_size {
            r.set("train.batch_size", &b.to_string())?;
        }
        if let Some(s) = self.seed {
            r.set("train.seed", &s.to_string())?;
        }
        Ok(r)
    }
}

/// Which command an error comes from, for the flags it names.
#[derive(Clone, Copy, PartialEq)]
enum Command {
    Train,
    Finetune,
    Eval,
}

/// A library error in terms of this binary's flags: the library names run
/// options by their field names (`out`, `resume`, `trace`, `stop_after`).
fn flagged(e: TrainError, cmd: Command) -> anyhow::Error {
    match e {
        TrainError::OutputTaken { path, what } => {
            let resume = match cmd {
                Command::Train => format!("--resume {}", path.display()),
                Command::Finetune | Command::Eval => "--resume".to_string(),
            };
            anyhow!("{} already holds {what} (use {resume}, or another --out)", path.display())
        }
        TrainError::Option { option, why } => anyhow!("--{}: {why}", option.replace('_', "-")),
        TrainError::ShardsOfRunUnknown { run, why } => {
            anyhow!("cannot find the shard directory of {}: {why}; pass --shards DIR", run.display())
        }
        TrainError::Recipe { key, why } => {
            let flag = match (key, cmd) {
                ("train.batch_size", Command::Train) => "--batch-size".to_string(),
                ("train.epochs", Command::Train) | ("finetune.epochs", Command::Finetune) => "--epochs".to_string(),
                ("train.seed", Command::Train) => "--seed".to_string(),
                _ => format!("--set {key}=VALUE"),
            };
            anyhow!("invalid {key} ({flag}): {why}")
        }
        TrainError::Glmc(e @ (GlmcError::Dist { .. } | GlmcError::DistTimeout { .. })) => anyhow!(
            "{e}\n(another rank of the run stopped, hung or lost its connection: its own log says why; the same command \
             with --auto-resume continues from the last checkpoint, as torchrun --max-restarts does)"
        ),
        e => e.into(),
    }
}

/// A non-finite-loss stop, told with what became of the run's checkpoint
/// (the library's message cannot know whether one exists); other errors in
/// terms of the flags.
fn explain_stop(e: TrainError, ckpt: &std::path::Path, cmd: Command) -> anyhow::Error {
    if !e.is_non_finite_loss() {
        return flagged(e, cmd);
    }
    let kept = match checkpoint::load_state(ckpt) {
        Ok(st) if st.step_in_epoch == 0 => format!("the last good checkpoint (after epoch {}) is kept in {}", st.epoch, ckpt.display()),
        Ok(st) => format!("the last good checkpoint (epoch {} step {}) is kept in {}", st.epoch + 1, st.step_in_epoch, ckpt.display()),
        Err(_) => "no checkpoint had been written yet".to_string(),
    };
    anyhow!("{e}; {kept}")
}

/// Progress bar per epoch plus one summary line per epoch on stderr.
struct Bar {
    quiet: bool,
    pb: Option<ProgressBar>,
    t: Instant,
    images: usize,
    epochs: usize,
}

impl Observer for Bar {
    fn epoch_start(&mut self, epoch: usize, epochs: usize, steps: usize) {
        self.epochs = epochs;
        self.t = Instant::now();
        self.images = 0;
        if !self.quiet {
            let pb = ProgressBar::new(steps as u64);
            pb.set_style(
                ProgressStyle::with_template("epoch {prefix} [{bar:30}] {pos}/{len} {msg} ETA {eta}")
                    .unwrap_or_else(|_| ProgressStyle::default_bar())
                    .progress_chars("=> "),
            );
            pb.set_prefix(format!("{}/{epochs}", epoch + 1));
            self.pb = Some(pb);
        }
    }
    fn step(&mut self, loss: f64, images: usize) {
        self.images += images;
        if let Some(pb) = &self.pb {
            let rate = self.images as f64 / self.t.elapsed().as_secs_f64().max(1e-9);
            pb.set_message(format!("loss {loss:.4} {rate:.0} img/s"));
            pb.inc(1);
        }
    }
    fn evaluating(&mut self) {
        if let Some(pb) = &self.pb {
            pb.set_message("evaluating");
        }
    }
    fn epoch_end(&mut self, r: &EpochRecord) {
        if let Some(pb) = self.pb.take() {
            pb.finish_and_clear();
        }
        let pct = |v: Option<f64>| v.map_or_else(|| "-".into(), |v| format!("{:.2}", 100.0 * v));
        let t = r.test.as_ref();
        eprintln!(
            "epoch {}/{} lr {:.5} alpha {:.3} loss {:.4} ({:.4} -> {:.4}) {:.0} img/s {:.0}s | top-1 {} many {} med {} few {}",
            r.epoch + 1,
            self.epochs,
            r.lr,
            r.alpha,
            r.loss,
            r.loss_first,
            r.loss_last,
            r.train_images_per_s,
            r.train_seconds,
            pct(t.map(|t| t.top1)),
            pct(t.and_then(|t| t.many)),
            pct(t.and_then(|t| t.medium)),
            pct(t.and_then(|t| t.few)),
        );
    }
}

fn run(args: Args) -> Result<()> {
    let mut device = parse_device(&args.device).context("--device")?;
    if let Some(n) = args.threads {
        tch::set_num_threads(n);
    }
    // Under torchrun: join the group; each process uses its LOCAL_RANK's GPU
    // (or the one --device names), which is also NCCL's.
    let backend = match (args.dist_backend, device) {
        (DistBackendArg::Auto, tch::Device::Cuda(_)) | (DistBackendArg::Nccl, _) => Backend::Nccl,
        (DistBackendArg::Auto, _) | (DistBackendArg::Gloo, _) => Backend::Gloo,
    };
    let flag = match args.dist_backend {
        DistBackendArg::Auto => format!("--dist-backend auto ({})", backend.name()),
        _ => format!("--dist-backend {}", backend.name()),
    };
    if std::env::var_os("WORLD_SIZE").is_some() {
        match (backend, device) {
            (Backend::Nccl, tch::Device::Cpu) => bail!(
                "{flag}: NCCL reduces tensors on GPUs, and the model is on the CPU (--device {}); use --dist-backend gloo, \
                 or a CUDA --device",
                args.device
            ),
            (Backend::Gloo, tch::Device::Cuda(_)) => bail!(
                "{flag}: Gloo reduces CPU tensors, and the model is on {device:?} (--device {}); use --dist-backend nccl \
                 (or auto) on GPUs, or --device cpu",
                args.device
            ),
            _ => {}
        }
    }
    let named_gpu = match device {
        tch::Device::Cuda(i) if args.device.starts_with("cuda:") => Some(i),
        _ => None,
    };
    let cluster = Cluster::from_env(backend, named_gpu, Duration::from_secs(args.dist_timeout)).map_err(|e| match e {
        TrainError::Glmc(e @ GlmcError::DistUnavailable { .. }) => anyhow!("{flag}: {e}"),
        e => flagged(e, Command::Train),
    })?;
    if let (Some(pg), tch::Device::Cuda(0)) = (cluster.group(), device) {
        if args.device != "cuda:0" {
            device = tch::Device::Cuda(pg.cuda_device().or(pg.local_rank()).unwrap_or(0));
        }
    }
    let root = cluster.is_root();
    let (out, resume, recipe) = match &args.resume {
        Some(dir) => (dir.clone(), true, args.resume_recipe(dir)?),
        None => {
            let recipe = args.recipe()?;
            let out = args.out.clone().unwrap_or_else(|| {
                let tag = args.method.map_or_else(|| format!("{:?}", recipe.train.method).to_lowercase(), |m| m.tag().to_string());
                PathBuf::from("runs").join(format!("{}-{tag}", recipe.name))
            });
            if args.auto_resume && out.join(CHECKPOINT_DIR).join(checkpoint::STATE_FILE).is_file() {
                if root {
                    eprintln!("lt-train: --auto-resume: continuing {} from its checkpoint", out.display());
                }
                (out.clone(), true, args.resume_recipe(&out)?)
            } else {
                (out, false, recipe)
            }
        }
    };
    if let Some(n) = args.stop_after {
        if n == 0 {
            bail!("--stop-after must be >= 1");
        }
    }
    let shards = args.shards().to_path_buf();
    if root {
        let ranks = if cluster.world_size() > 1 { format!(", {} ranks", cluster.world_size()) } else { String::new() };
        eprintln!("lt-train: {} on {} → {} ({device:?}{ranks})", recipe.name, shards.display(), out.display());
    }
    let opts = TrainOptions {
        shards: shards.clone(),
        out: out.clone(),
        recipe: recipe.clone(),
        device,
        resume,
        stop_after: args.stop_after,
        checkpoint_every: args.checkpoint_every.map(|n| n as usize),
        trace: args.trace.clone(),
        cluster,
    };
    let mut bar = Bar { quiet: args.quiet || !root, pb: None, t: Instant::now(), images: 0, epochs: recipe.train.epochs };
    // The outcome holds the run directory's lock until the report is written.
    let outcome = train::train(&opts, &mut bar).map_err(|e| explain_stop(e, &out.join(CHECKPOINT_DIR), Command::Train))?;
    if !root {
        return Ok(()); // rank 0 writes the report
    }
    let eval = outcome.last_eval.as_ref().context("no evaluation")?;
    let info = RunInfo { shards: shards.clone(), ..outcome.dataset.run_info(device, outcome.epochs_done) };
    lt_report::write_report(&out, &recipe.report_header(), &info, &outcome.records, eval, None)?;
    print!("{}", lt_report::headline_table(eval, &outcome.records));
    if !outcome.finished {
        println!(
            "stopped after epoch {} of {}; continue with: lt-train {} --resume {}",
            outcome.epochs_done,
            recipe.train.epochs,
            shards.display(),
            out.display()
        );
    }
    println!("report: {}", out.join(lt_report::REPORT_MD).display());
    Ok(())
}

// `lt-train finetune` (its help text is on Sub::Finetune).
#[derive(clap::Args, Debug)]
struct FinetuneArgs {
    /// Run directory of a finished (or stopped) lt-train run
    run_dir: PathBuf,
    /// Fine-tuning epochs (sets finetune.epochs)
    #[arg(long)]
    epochs: Option<usize>,
    /// Override a fine-tuning field, e.g. --set finetune.lr=0.005 (finetune.* only; repeatable)
    #[arg(long = "set", value_name = "finetune.KEY=VALUE")]
    sets: Vec<String>,
    /// Project once per epoch (sets finetune.per_epoch = true, the default)
    #[arg(long, conflicts_with = "per_iteration")]
    per_epoch: bool,
    /// Project after every iteration instead (sets finetune.per_epoch = false)
    #[arg(long)]
    per_iteration: bool,
    /// Shard directory (default: the one named in RUN_DIR/report.json)
    #[arg(long)]
    shards: Option<PathBuf>,
    /// Output run directory (default RUN_DIR/finetune)
    #[arg(long)]
    out: Option<PathBuf>,
    /// Continue the fine-tuning run in the output directory from its last checkpoint
    #[arg(long)]
    resume: bool,
    /// Stop after N fine-tuning epochs (continue later with --resume)
    #[arg(long, value_name = "N")]
    stop_after: Option<usize>,
    /// cpu, cuda, cuda:N or auto
    #[arg(long, default_value = "auto")]
    device: String,
    /// libtorch intra-op threads, at least 1 (default: libtorch's choice)
    #[arg(long, value_parser = clap::value_parser!(i32).range(1..))]
    threads: Option<i32>,
    /// No progress bar
    #[arg(long, short)]
    quiet: bool,
}

fn run_finetune(args: FinetuneArgs) -> Result<()> {
    let device = parse_device(&args.device).context("--device")?;
    if let Some(n) = args.threads {
        tch::set_num_threads(n);
    }
    let mut opts = FinetuneOptions::new(&args.run_dir, device);
    opts.shards = args.shards.clone();
    opts.out = args.out.clone();
    opts.resume = args.resume;
    opts.stop_after = args.stop_after;
    for kv in &args.sets {
        let (k, v) = kv.split_once('=').with_context(|| format!("--set {kv:?}: expected finetune.KEY=VALUE"))?;
        opts.overrides.push((k.trim().to_string(), v.trim().to_string()));
    }
    if let Some(e) = args.epochs {
        opts.overrides.push(("finetune.epochs".into(), e.to_string()));
    }
    if args.per_epoch {
        opts.overrides.push(("finetune.per_epoch".into(), "true".into()));
    }
    if args.per_iteration {
        opts.overrides.push(("finetune.per_epoch".into(), "false".into()));
    }
    let out = opts.out.clone().unwrap_or_else(|| args.run_dir.join(finetune::DEFAULT_OUT));
    eprintln!("lt-train finetune: {} → {} ({device:?})", args.run_dir.display(), out.display());
    let mut bar = Bar { quiet: args.quiet, pb: None, t: Instant::now(), images: 0, epochs: 0 };
    let outcome = finetune::finetune(&opts, &mut bar).map_err(|e| explain_stop(e, &out.join(CHECKPOINT_DIR), Command::Finetune))?;
    print!("{}", lt_report::headline_table(&outcome.last_eval, &outcome.records));
    if !outcome.finished {
        println!(
            "stopped after fine-tuning epoch {} of {}; continue with: lt-train finetune {} --resume{}",
            outcome.epochs_done,
            outcome.recipe.finetune.map_or(0, |f| f.epochs),
            args.run_dir.display(),
            args.out.as_ref().map_or(String::new(), |o| format!(" --out {}", o.display())),
        );
    }
    println!("report: {}", outcome.out.join(lt_report::REPORT_MD).display());
    Ok(())
}

// `lt-train replot` (its help text is on Sub::Replot).
#[derive(clap::Args, Debug)]
struct ReplotArgs {
    /// Run directories (lt-train or lt-train finetune output)
    #[arg(required = true)]
    run_dirs: Vec<PathBuf>,
}

fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::try_from_env("LT_LOG").unwrap_or_else(|_| "warn".into()))
        .with_writer(std::io::stderr)
        .init();
    let tuning = lt_glmc::host_alloc::retain_freed_memory();
    tracing::debug!(?tuning, "host allocator");
    let cli = Cli::parse();
    let many = std::env::var("WORLD_SIZE").ok().and_then(|w| w.parse::<usize>().ok()).is_some_and(|w| w > 1);
    let result = match cli.command {
        // Only training is data-parallel: the others would each write the same files.
        Some(_) if many => Err(anyhow!("this subcommand runs in one process; run it without torchrun (WORLD_SIZE is set)")),
        Some(Sub::Finetune(a)) => run_finetune(a),
        Some(Sub::Eval(a)) => run_eval(a),
        Some(Sub::Predict(a)) => run_predict(a),
        Some(Sub::Export(a)) => run_export(a),
        Some(Sub::Replot(a)) => a.run_dirs.iter().try_for_each(|d| {
            let recipe = Recipe::load(&d.join(RECIPE_FILE)).with_context(|| format!("cannot replot {}", d.display()))?;
            lt_report::replot(d, recipe.eval.groups).with_context(|| format!("cannot replot {}", d.display()))?;
            println!("{}: {} {}", d.display(), lt_report::plot::PER_CLASS_PNG, lt_report::plot::CURVES_PNG);
            Ok(())
        }),
        None => run(cli.train),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("lt-train: error: {e:#}");
            ExitCode::from(2)
        }
    }
}
