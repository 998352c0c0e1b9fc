//! The training loop: shards → loader → device → GLMC step → evaluation →
//! checkpoint, one epoch at a time.
//!
//! A run directory holds
//!
//! ```text
//! recipe.toml      the resolved recipe (a resume must match it)
//! metrics.jsonl    one EpochRecord per epoch
//! checkpoint/      the last good checkpoint (weights, momentum, state.json)
//! report.md, report.json, per_class.png, curves.png   (lt_report)
//! ```
//!
//! Everything random is seeded: the model initialisation by
//! `tch::manual_seed(seed)`, the loader by `(seed, epoch, step, slot)` and
//! λ / the CutMix box by the trainer's [`Rng`], whose state is checkpointed.
//! A checkpoint is written at every epoch boundary, so a resume replays the
//! same batches and draws: on CPU it is exact (`tests/train_e2e.rs`).

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use lt_core::rng::Rng;
use lt_core::weights::cumulative_alpha;
use lt_loader::batch::{Batch, Position};
use lt_loader::loader::{Loader, LoaderConfig, LoaderState, OnCorrupt};
use lt_loader::sampler::{SamplerSpec, Shard};
use lt_loader::source::{EncodedSource, ShardSource, ShardSourceOptions};
use lt_shards::Manifest;
use lt_shards::Split;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use tch::nn::VarStore;
use tch::{Device, Kind};

use crate::cluster::Cluster;
use crate::driver::{EpochLoop, LoopStart, EXTRA_EPOCH_ACC};
use crate::error::{GlmcError, Result, TrainError};
use crate::recipe::{
    EvalHead, EvalSection, GlmcSection, LoaderSection, Method, ModelSection, OptimSection, PerfSection, PipelineSpec, Recipe, TrainSection,
};
use lt_glmc::amp::{LossScaleState, LossScaler, MemoryFormat, PrecisionConfig};
use lt_glmc::card::{Head, ModelCard};
use lt_glmc::checkpoint::{self, TrainState};
use lt_glmc::dist::DataParallel;
use lt_glmc::loss::{ClassStats, LossValues};
use lt_glmc::metrics::{EvalAccumulator, EvalReport};
use lt_glmc::mix::Normalizer;
use lt_glmc::model::{GlmcNet, HeadSet, ModelConfig};
use lt_glmc::optim::Sgd;
use lt_glmc::pinned::{batch_to_device, TensorAllocator};
use lt_glmc::step::{CrossEntropyStep, GlmcStep, Step, Updater};
use lt_report::{write_metrics, EpochRecord, EvalSummary};

pub const RECIPE_FILE: &str = "recipe.toml";
pub use lt_report::METRICS_FILE;
pub const CHECKPOINT_DIR: &str = "checkpoint";

/// An opened shard set: manifest, both splits and what the trainer needs.
pub struct Dataset {
    pub dir: PathBuf,
    pub manifest: Manifest,
    pub train: Arc<ShardSource>,
    pub test: Arc<ShardSource>,
    /// Training images per class.
    pub counts: Vec<usize>,
    /// (width, height) of the first training image.
    pub image_size: (u32, u32),
    /// See [`dataset_fingerprint`].
    pub fingerprint: String,
}

impl Dataset {
    /// Opens and verifies (SHA-256 against the manifest) both splits.
    pub fn open(dir: &Path, memory_budget_mib: u64) -> Result<Dataset> {
        let ds_err = |source| TrainError::Dataset { path: dir.to_path_buf(), source };
        let manifest = Manifest::load(dir).map_err(ds_err)?;
        let opts = ShardSourceOptions::default().with_memory_budget(memory_budget_mib << 20);
        let open = |split| -> Result<Arc<ShardSource>> {
            ShardSource::open(dir, split, &opts).map(Arc::new).map_err(|e| match e {
                lt_loader::LoaderError::Shard(source) => TrainError::Dataset { path: dir.to_path_buf(), source },
                e => TrainError::Loader(e),
            })
        };
        let train = open(Split::Train)?;
        let test = open(Split::Test)?;
        if train.is_empty() {
            return Err(TrainError::Data { path: dir.to_path_buf(), why: "the train split is empty".into() });
        }
        let counts = manifest.class_counts(Split::Train);
        let first = train.fetch(0)?;
        let img = lt_vision::codec::decode(&first)
            .map_err(|e| TrainError::Data { path: dir.to_path_buf(), why: format!("cannot decode {}: {e}", train.locate(0)) })?;
        let fingerprint = dataset_fingerprint(&manifest);
        Ok(Dataset { dir: dir.to_path_buf(), manifest, train, test, counts, image_size: (img.width, img.height), fingerprint })
    }

    pub fn num_classes(&self) -> usize {
        self.counts.len()
    }

    /// What a report says about this data and the run on it.
    pub fn run_info(&self, device: Device, epochs_done: usize) -> lt_report::RunInfo {
        lt_report::RunInfo {
            shards: self.dir.clone(),
            device: format!("{device:?}"),
            epochs_done,
            class_names: self.manifest.class_names(),
            counts: self.counts.clone(),
            fingerprint: self.fingerprint.clone(),
        }
    }

    /// Checks, before any step, that `pipeline` (named by the recipe field
    /// `field`) can process every image of `split`, from the image size range
    /// lt-build records in the manifest: a pipeline that takes its output
    /// size from the first image needs a split of one size, and a fixed crop
    /// must fit the smallest image. Manifests without the range (older
    /// builds) are not checked.
    pub fn check_pipeline(&self, field: &'static str, pipeline: &lt_vision::augment::Pipeline, split: Split) -> Result<()> {
        use lt_vision::augment::{CifarSpec, EvalSpec, Pipeline};
        let Some(r) = self.manifest.image_size_range(split) else { return Ok(()) };
        let sizes = if r.is_uniform() {
            format!("{}x{}", r.min_width, r.min_height)
        } else {
            format!("{}x{} to {}x{}", r.min_width, r.min_height, r.max_width, r.max_height)
        };
        let why = match pipeline {
            _ if pipeline.size_from_source() && !r.is_uniform() => Some(format!(
                "it keeps the source size, so every image must have one size, but the {} split holds images of {sizes} \
                 (rebuild with lt-build --max-side, or choose a pipeline with a fixed size)",
                split.as_str()
            )),
            Pipeline::Cifar(CifarSpec { size: Some(c), padding, .. })
                if r.min_width + 2 * padding < *c || r.min_height + 2 * padding < *c =>
            {
                Some(format!("its {c}px crop does not fit the smallest {} image padded by {padding} ({sizes})", split.as_str()))
            }
            Pipeline::Eval(EvalSpec { resize: None, crop: Some(c) }) if r.min_width < *c || r.min_height < *c => {
                Some(format!("its {c}px centre crop does not fit the smallest {} image ({sizes})", split.as_str()))
            }
            _ => None,
        };
        match why {
            Some(why) => Err(TrainError::recipe(field, format!("{}: {why}", self.dir.display()))),
            None => Ok(()),
        }
    }
}

/// The eval pipeline of `recipe` for `ds`: `loader.eval`, or `eval-identity`
/// for images up to 64 px and `eval` (resize 256, centre crop 224) above.
pub fn eval_pipeline(recipe: &Recipe, ds: &Dataset) -> Result<lt_vision::augment::Pipeline> {
    match &recipe.loader.eval {
        Some(p) => p.resolve(),
        None if ds.image_size.0.max(ds.image_size.1) <= 64 => PipelineSpec::Name("eval-identity".into()).resolve(),
        None => PipelineSpec::Name("eval".into()).resolve(),
    }
}

/// Both pipelines of `recipe` checked against `ds` ([`Dataset::check_pipeline`]).
pub fn check_pipelines(recipe: &Recipe, ds: &Dataset) -> Result<()> {
    ds.check_pipeline("loader.augment", &recipe.loader.augment.resolve()?, Split::Train)?;
    ds.check_pipeline("loader.eval", &eval_pipeline(recipe, ds)?, Split::Test)
}

/// SHA-256 over what defines the data: channels, classes with their counts,
/// and every shard's file, rows and checksum. Rebuilding the same dataset
/// gives the same fingerprint; any other data does not.
pub fn dataset_fingerprint(m: &Manifest) -> String {
    let mut h = Sha256::new();
    h.update(format!("channels={}\n", m.channels));
    for c in &m.classes {
        h.update(format!("class {} {:?} {} {}\n", c.id, c.name, c.train, c.test));
    }
    // Splits by name (test, then train): the order fingerprints have always had.
    for (split, info) in m.splits_by_name() {
        for s in &info.shards {
            h.update(format!("{split} {} {} {}\n", s.file, s.rows, s.checksum));
        }
    }
    hex::encode(h.finalize())
}

/// The recipe used when none is given: the authors' CIFAR-10-LT IF 100
/// settings with ResNet-32 (base width 64) for images up to 64 px, their
/// ImageNet-LT settings with ResNeXt-50 32×4d otherwise.
pub fn default_recipe(ds: &Dataset) -> Recipe {
    let small = ds.image_size.0.max(ds.image_size.1) <= 64;
    let name = ds.dir.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_else(|| "run".into());
    let (model, train, optim, glmc, augment) = if small {
        (
            ModelSection { arch: crate::recipe::ArchName::Resnet32, width: None, proj_dim: None, in_channels: None },
            TrainSection { epochs: 200, batch_size: 64, seed: 0, method: Method::Glmc, drop_last: false },
            OptimSection { lr: 0.01, momentum: 0.9, weight_decay: 5e-3, schedule: Default::default(), warmup_epochs: None },
            GlmcSection { q: 0.0, p: 1.2, kappa: 1.0, ..Default::default() },
            "cifar",
        )
    } else {
        (
            ModelSection { arch: crate::recipe::ArchName::Resnext50_32x4d, width: None, proj_dim: None, in_channels: None },
            TrainSection { epochs: 135, batch_size: 120, seed: 0, method: Method::Glmc, drop_last: false },
            OptimSection {
                lr: 0.1,
                momentum: 0.9,
                weight_decay: 2e-4,
                schedule: crate::recipe::ScheduleName::Paco,
                warmup_epochs: Some(10),
            },
            GlmcSection { q: 0.2, p: 1.0, kappa: 10.0, ..Default::default() },
            "imagenet",
        )
    };
    Recipe {
        name,
        description: Some("defaults from the manifest (lt-train without --recipe)".into()),
        build: None,
        loader: LoaderSection { augment: PipelineSpec::Name(augment.into()), ..Default::default() },
        perf: PerfSection::default(),
        model,
        train,
        optim,
        glmc,
        normalize: None,
        eval: EvalSection::default(),
        finetune: None,
        log: Default::default(),
    }
}

/// The running sums of an [`EpochAccumulator`], which a mid-epoch checkpoint
/// keeps (not the clock: a resumed epoch's `train_seconds` counts the time
/// since the resume).
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize, Deserialize)]
pub(crate) struct AccState {
    /// total, sup, rb, con over the applied steps.
    sums: [f64; 4],
    first: f64,
    last: f64,
    /// Applied (not skipped) steps: overall, in the first and last tenth.
    applied: u64,
    n_first: u64,
    n_last: u64,
    skipped: u64,
}

/// Sums one epoch's step losses into an [`EpochRecord`] (shared by the
/// trainer and fine-tuning).
#[derive(Debug)]
pub(crate) struct EpochAccumulator {
    steps: usize,
    /// The step this process started the epoch at (a mid-epoch resume).
    first: usize,
    tenth: usize,
    started: Instant,
    /// Training time, fixed by [`EpochAccumulator::end_training`] (before
    /// the evaluation, which it excludes).
    train_secs: Option<f64>,
    a: AccState,
}

impl EpochAccumulator {
    pub(crate) fn start(steps: usize) -> Self {
        EpochAccumulator { steps, first: 0, tenth: (steps / 10).max(1), started: Instant::now(), train_secs: None, a: AccState::default() }
    }

    /// Step `i` of the epoch was applied with these loss values.
    pub(crate) fn applied(&mut self, i: usize, v: &LossValues) {
        self.a.applied += 1;
        self.a.sums[0] += v.total;
        self.a.sums[1] += v.sup;
        self.a.sums[2] += v.rb.unwrap_or(0.0);
        self.a.sums[3] += v.con.unwrap_or(0.0);
        if i < self.tenth {
            self.a.first += v.total;
            self.a.n_first += 1;
        }
        if i + self.tenth >= self.steps {
            self.a.last += v.total;
            self.a.n_last += 1;
        }
    }

    pub(crate) fn state(&self) -> AccState {
        self.a
    }

    /// Continues an epoch at step `first` with its sums so far (a
    /// mid-epoch checkpoint); the clock counts from now.
    pub(crate) fn restore(&mut self, first: usize, a: AccState) {
        self.first = first;
        self.a = a;
    }

    /// A step whose update was skipped (fp16 overflow).
    pub(crate) fn skipped(&mut self) {
        self.a.skipped += 1;
    }

    /// The epoch's steps are done: fixes the training time.
    pub(crate) fn end_training(&mut self) {
        self.train_secs = Some(self.started.elapsed().as_secs_f64());
    }

    /// The epoch's record; `rb`/`con` say which terms the method has. Its
    /// images/s counts the images of the steps this process ran, in every
    /// rank: step i of a global `batch_size` over `rows` images trains
    /// min(batch_size, rows − i·batch_size) images, whatever the method's
    /// views or the world size.
    pub(crate) fn record(
        &self,
        epoch: usize,
        (lr, alpha): (f64, f64),
        (rb, con): (bool, bool),
        (batch_size, rows): (usize, usize),
        test: Option<EvalSummary>,
        loss_scale: Option<f64>,
    ) -> EpochRecord {
        let images = (self.steps * batch_size).min(rows).saturating_sub(self.first * batch_size);
        let n = self.a.applied.max(1) as f64;
        let secs = self.train_secs.unwrap_or_else(|| self.started.elapsed().as_secs_f64());
        EpochRecord {
            epoch,
            lr,
            alpha,
            loss: self.a.sums[0] / n,
            loss_sup: self.a.sums[1] / n,
            loss_rb: rb.then_some(self.a.sums[2] / n),
            loss_con: con.then_some(self.a.sums[3] / n),
            loss_first: self.a.first / self.a.n_first.max(1) as f64,
            loss_last: self.a.last / self.a.n_last.max(1) as f64,
            steps: self.steps as u64,
            train_images_per_s: images as f64 / secs.max(1e-9),
            train_seconds: secs,
            test,
            skipped_steps: self.a.skipped,
            loss_scale,
        }
    }
}

/// The loader's batch for step `i` of `epoch`: a loader that ends early or
/// delivers another position is an error.
pub(crate) fn next_batch(loader: &mut Loader, epoch: usize, i: usize) -> Result<Batch> {
    let batch = loader.next().ok_or_else(|| TrainError::LoaderOrder(format!("ended before epoch {epoch} step {i}")))??;
    let want = Position { epoch: epoch as u64, step: i as u64 };
    if batch.position != want {
        return Err(TrainError::LoaderOrder(format!("delivered {:?}, expected {want:?}", batch.position)));
    }
    Ok(batch)
}

/// The checkpoint state at the end of 0-based epoch `done - 1`.
pub(crate) fn epoch_end_state(done: usize, step: u64, lr: f64, rng: [u64; 4], seed: u64, extra: serde_json::Value) -> TrainState {
    TrainState {
        epoch: done,
        step,
        step_in_epoch: 0,
        lr,
        rng,
        loader: serde_json::to_value(LoaderState { seed, position: Position { epoch: done as u64, step: 0 } }).unwrap_or_default(),
        extra,
    }
}

/// Receives progress events (the binary draws a progress bar).
pub trait Observer {
    fn epoch_start(&mut self, _epoch: usize, _epochs: usize, _steps: usize) {}
    fn step(&mut self, _loss: f64, _images: usize) {}
    fn evaluating(&mut self) {}
    fn epoch_end(&mut self, _record: &EpochRecord) {}
}

/// Does nothing.
pub struct Quiet;
impl Observer for Quiet {}

/// What [`train`] needs besides the recipe.
#[derive(Clone, Debug)]
pub struct TrainOptions {
    pub shards: PathBuf,
    pub out: PathBuf,
    pub recipe: Recipe,
    pub device: Device,
    /// Continue the run in `out` from its checkpoint.
    pub resume: bool,
    /// Stop (with a checkpoint) once this many epochs are done in total.
    pub stop_after: Option<usize>,
    /// Also write a checkpoint every this many steps inside an epoch, so
    /// that a killed run loses at most that many steps (a resume continues
    /// mid-epoch, bit-exact on CPU). `None`: at epoch ends only.
    pub checkpoint_every: Option<usize>,
    /// Write a step trace ([`crate::trace`]) into this directory: the
    /// initial weights and every step's batch, λ, box and losses, for an
    /// exact replay by another implementation. Fresh runs only.
    pub trace: Option<PathBuf>,
    /// The processes of the run ([`crate::cluster`]): one, or a torchrun group.
    pub cluster: Cluster,
}

impl TrainOptions {
    /// A fresh run of `recipe` on `shards` into `out`: no resume, no early
    /// stop, checkpoints at epoch ends, no trace.
    pub fn new(shards: &Path, out: &Path, recipe: Recipe, device: Device) -> Self {
        TrainOptions {
            shards: shards.into(),
            out: out.into(),
            recipe,
            device,
            resume: false,
            stop_after: None,
            checkpoint_every: None,
            trace: None,
            cluster: Cluster::single(),
        }
    }
}

/// What a run ends with.
#[derive(Debug)]
pub struct TrainOutcome {
    pub out: PathBuf,
    /// Epochs completed in total (including before a resume).
    pub epochs_done: usize,
    /// Every epoch's record so far (from metrics.jsonl).
    pub records: Vec<EpochRecord>,
    /// The last evaluation of this process, if any.
    pub last_eval: Option<EvalReport>,
    pub finished: bool,
    pub dataset: Dataset,
    /// The run directory's lock (rank 0's): the caller (lt-train writes the
    /// report) holds the run until it drops the outcome.
    _lock: Option<crate::rundir::RunLock>,
}

impl std::fmt::Debug for Dataset {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Dataset").field("dir", &self.dir).field("counts", &self.counts).finish()
    }
}

pub(crate) fn io(path: &Path) -> impl FnOnce(std::io::Error) -> TrainError + '_ {
    move |source| TrainError::Io { path: path.to_path_buf(), source }
}

// --- run-directory helpers (resume checks and metrics: crate::rundir) ---

/// On resume: keeps the metrics.jsonl lines of the epochs before `epoch`,
/// byte for byte ([`crate::rundir::keep_metrics_before`]).
pub(crate) fn metrics_before(out: &Path, epoch: usize) -> Result<Vec<EpochRecord>> {
    crate::rundir::keep_metrics_before(out, epoch)
}

/// A new run directory: the resolved recipe and an empty metrics.jsonl.
pub(crate) fn start_run_dir(out: &Path, recipe: &Recipe) -> Result<()> {
    std::fs::create_dir_all(out).map_err(io(out))?;
    let rp = out.join(RECIPE_FILE);
    std::fs::write(&rp, recipe.to_toml_string()?).map_err(io(&rp))?;
    Ok(write_metrics(out, &[])?)
}
// --- end of run-directory helpers ---

/// Which head answers at evaluation for this recipe.
pub fn eval_uses_rebalanced(r: &Recipe) -> bool {
    match r.eval.head {
        EvalHead::Conventional => false,
        EvalHead::Rebalanced => true,
        EvalHead::Auto => r.train.method == Method::Glmc && r.glmc.reweight,
    }
}

pub(crate) fn workers(l: &LoaderSection) -> usize {
    if l.workers > 0 {
        l.workers
    } else {
        std::thread::available_parallelism().map(|n| n.get()).unwrap_or(2)
    }
}

/// The model, its parameters and the per-run constants.
pub struct Setup {
    pub vs: VarStore,
    pub net: GlmcNet,
    pub opt: Sgd,
    pub stats: ClassStats,
    pub norm: Normalizer,
    pub in_channels: i64,
}

/// Builds the model (seeded), optimizer, class statistics and normalizer.
pub fn setup(recipe: &Recipe, ds: &Dataset, device: Device) -> Result<Setup> {
    tch::manual_seed(recipe.train.seed as i64);
    let vs = VarStore::new(device);
    let in_channels = recipe.model.in_channels.unwrap_or(ds.manifest.channels as i64);
    let mut mc = ModelConfig::new(recipe.model.arch()?, ds.num_classes() as i64).with_in_channels(in_channels);
    if let Some(d) = recipe.model.proj_dim {
        mc = mc.with_proj_dim(d);
    }
    let net = GlmcNet::try_new(&vs.root(), mc)?;
    let opt = Sgd::new(&vs, recipe.optim.sgd());
    let stats = ClassStats::try_new(&ds.counts, recipe.glmc.p, device, Kind::Float)?;
    let (mean, std) = match &recipe.normalize {
        Some(n) => (&n.mean, &n.std),
        None => (&ds.manifest.mean, &ds.manifest.std),
    };
    let norm = Normalizer::for_channels(mean, std, in_channels, device, Kind::Float).map_err(|e| match e {
        GlmcError::Setting { why, .. } => TrainError::recipe("normalize", why),
        e => e.into(),
    })?;
    Ok(Setup { vs, net, opt, stats, norm, in_channels })
}

/// One evaluation of both heads; `head` is the one the recipe reports.
#[derive(Clone, Debug)]
pub struct Evaluation {
    pub head: Head,
    pub g: EvalReport,
    pub g_cb: EvalReport,
}

impl Evaluation {
    /// The reported head's metrics.
    pub fn headline(&self) -> &EvalReport {
        if self.head == Head::GCb {
            &self.g_cb
        } else {
            &self.g
        }
    }
    /// The metrics.jsonl summary: the reported head's metrics, and both heads' accuracies.
    pub fn summary(&self) -> EvalSummary {
        EvalSummary::of_heads(self.head, &self.g, &self.g_cb)
    }
}

/// Evaluates both heads on the test split with the recipe's eval pipeline;
/// the recipe's evaluation head is the headline. Under data parallelism
/// every rank evaluates its shard of the test split with rank 0's BatchNorm
/// statistics, and the counts are summed ([`Cluster::merge_eval`]).
pub fn evaluate(s: &Setup, recipe: &Recipe, ds: &Dataset, device: Device, cluster: &Cluster) -> Result<Evaluation> {
    cluster.sync_buffers_from_root(&s.vs)?;
    let e = EvalRun {
        source: ds.test.clone(),
        pipeline: eval_pipeline(recipe, ds)?,
        channels: s.in_channels as u8,
        batch_size: recipe.loader.eval_batch_size,
        workers: workers(&recipe.loader),
        pinned: recipe.perf.pinned,
        precision: recipe.perf.precision(),
        shard: cluster.shard(),
    };
    let [mut g, mut g_cb] = e.run(&s.net, &s.norm, device)?;
    cluster.merge_eval(&mut g)?;
    cluster.merge_eval(&mut g_cb)?;
    Ok(Evaluation {
        head: if eval_uses_rebalanced(recipe) { Head::GCb } else { Head::G },
        g: g.finish(&ds.counts, recipe.eval.groups)?,
        g_cb: g_cb.finish(&ds.counts, recipe.eval.groups)?,
    })
}

/// One evaluation pass: every image of `source` once, in order, through
/// the eval `pipeline`.
pub struct EvalRun {
    pub source: Arc<ShardSource>,
    pub pipeline: lt_vision::augment::Pipeline,
    pub channels: u8,
    pub batch_size: usize,
    pub workers: usize,
    pub pinned: bool,
    pub precision: PrecisionConfig,
    /// This rank's part of the split (of every `batch_size · world` rows),
    /// [`Shard::WHOLE`] for all of it.
    pub shard: Shard,
}

impl EvalRun {
    /// The counts of both classifiers, g and g_cb, from one forward pass
    /// (over this run's shard of the split).
    pub fn run(&self, net: &GlmcNet, norm: &Normalizer, device: Device) -> Result<[EvalAccumulator; 2]> {
        let _g = tch::no_grad_guard();
        let cfg = LoaderConfig::default()
            .with_batch_size(self.batch_size * self.shard.world)
            .with_shard(self.shard)
            .with_views(1)
            .with_workers(self.workers)
            .with_sampler(SamplerSpec::Sequential)
            .with_drop_last(false)
            .with_channels(self.channels)
            .with_epochs(1)
            .with_allocator(Arc::new(TensorAllocator::new(self.pinned && device.is_cuda())));
        let loader = Loader::try_new(self.source.clone(), self.pipeline.clone(), cfg)?;
        let classes = net.config().num_classes as usize;
        let (mut g, mut g_cb) = (EvalAccumulator::new(classes), EvalAccumulator::new(classes));
        let fmt = self.precision.memory_format;
        for b in loader {
            let b = b?;
            if b.slots() == 0 {
                continue; // a short last batch left this rank nothing
            }
            let (x, y) = batch_to_device(&b, device)?;
            let x = norm.apply(&fmt.apply(&x.f_select(0, 0)?)?)?;
            let out = self.precision.forward(|| net.forward_heads(&x, false, HeadSet { proj: false }))?;
            g.update(&out.logits, &y)?;
            g_cb.update(&out.logits_cb, &y)?;
        }
        Ok([g, g_cb])
    }
}

/// The `[perf]` switches as a [`PrecisionConfig`], validated for `device`
/// (fp16 autocast is refused without CUDA) and applied: TF32 flags, and
/// cuDNN autotuning on CUDA.
pub fn precision_config(p: &PerfSection, device: Device) -> Result<PrecisionConfig> {
    let prec = p.precision();
    prec.apply(device).map_err(|e| match e {
        GlmcError::Device { why, .. } if p.amp => TrainError::recipe("perf.amp", format!("{why}; set perf.amp = false")),
        e => e.into(),
    })?;
    Ok(prec)
}

/// Puts the convolution weights (and any momentum buffers) of `s` in
/// `fmt`. Values are unchanged, so checkpoints (saved contiguous) and
/// resumes are unaffected.
pub(crate) fn convert_layout(s: &mut Setup, fmt: MemoryFormat) -> Result<()> {
    if fmt == MemoryFormat::Nchw {
        return Ok(());
    }
    fmt.convert_weights(&s.vs)?;
    let bufs = s.opt.buffers().into_iter().map(|(n, b)| Ok((n, fmt.apply(&b)?))).collect::<Result<Vec<_>>>()?;
    if !bufs.is_empty() {
        s.opt.set_buffers(bufs)?;
    }
    Ok(())
}

/// Key of the loss scaler's state in [`TrainState::extra`].
const EXTRA_LOSS_SCALE: &str = "loss_scale";

fn extra(ds: &Dataset, recipe: &Recipe, card: &ModelCard, loss_scale: Option<LossScaleState>) -> serde_json::Value {
    let mut v = serde_json::json!({
        "dataset": ds.fingerprint,
        "recipe": recipe.name,
        "method": recipe.train.method,
        checkpoint::MODEL_CARD_KEY: card.to_metadata(),
    });
    if let Some(st) = loss_scale {
        v[EXTRA_LOSS_SCALE] = serde_json::to_value(st).unwrap_or_default();
    }
    v
}

/// What a checkpoint of this run says about its model (the safetensors
/// metadata of its weights): architecture, classes, the normalization in
/// use, the evaluation head and pipeline.
pub fn model_card(recipe: &Recipe, ds: &Dataset, s: &Setup) -> Result<ModelCard> {
    let (mean, std) = s.norm.stats()?;
    let pipeline = eval_pipeline(recipe, ds)?;
    Ok(ModelCard {
        model: s.net.config().with_proj_dim(s.net.config().proj_dim()),
        class_names: ds.manifest.class_names(),
        mean,
        std,
        eval_head: if eval_uses_rebalanced(recipe) { Head::GCb } else { Head::G },
        eval_pipeline: serde_json::to_value(&pipeline).unwrap_or_default(),
        dataset: ds.fingerprint.clone(),
        recipe: recipe.name.clone(),
        method: serde_json::to_value(recipe.train.method).ok().and_then(|v| v.as_str().map(str::to_string)).unwrap_or_default(),
    })
}

/// The training step of `recipe`'s method, its λ / box generator at `rng`.
pub fn method_step(recipe: &Recipe, rng: Rng) -> Box<dyn Step> {
    match recipe.train.method {
        Method::Glmc => Box::new(GlmcStep::new(recipe.glmc.loss_config(), recipe.glmc.beta, rng)),
        Method::CrossEntropy => Box::new(CrossEntropyStep),
    }
}

/// Runs (or resumes) a training run; see the module docs for the layout,
/// and [`crate::cluster`] for a data-parallel run (`opts.cluster`).
pub fn train(opts: &TrainOptions, obs: &mut dyn Observer) -> Result<TrainOutcome> {
    let (recipe, cluster) = (&opts.recipe, &opts.cluster);
    recipe.validate()?;
    cluster.check_recipe(recipe)?;
    let prec = precision_config(&recipe.perf, opts.device)?;
    let ds = Dataset::open(&opts.shards, recipe.loader.memory_budget_mib)?;
    check_pipelines(recipe, &ds)?;
    cluster.check_same("recipe", &Sha256::digest(recipe.to_toml_string()?.as_bytes()).into())?;
    cluster.check_same("dataset", &Sha256::digest(ds.fingerprint.as_bytes()).into())?;
    let out = opts.out.clone();
    let ckpt = out.join(CHECKPOINT_DIR);
    let mut s = setup(recipe, &ds, opts.device)?;
    let mut scaler = prec.loss_scaler();
    // Rank 0 prepares the run directory (a fresh one, or a killed writer's
    // repairs) before any other rank reads it.
    let _lock = if cluster.is_root() { Some(begin_run(opts)?) } else { None };
    cluster.barrier()?;
    let (start, rng, mut records) = if opts.resume {
        restore(opts, &ds, &mut s, scaler.as_mut())?
    } else {
        (LoopStart::default(), GlmcStep::rng_for_seed(recipe.train.seed), Vec::new())
    };
    // Every rank starts from rank 0's weights (the same seed gives the same
    // ones; this makes it a guarantee).
    cluster.sync_variables_from_root(&s.vs)?;

    // Channels-last: once, after the initialisation or the checkpoint load
    // and before the first step.
    convert_layout(&mut s, prec.memory_format)?;
    let mut upd = Updater::new(s.vs.trainable_variables(), scaler);
    if let Some(pg) = cluster.group() {
        let find_unused = !uses_every_parameter(recipe);
        // The optimizer's parameters, sorted by name: the same order on every rank.
        upd = upd.with_data_parallel(DataParallel::new(pg.clone(), &s.opt.params(), lt_glmc::dist::DEFAULT_BUCKET_CAP_MIB, find_unused)?);
    }
    let mut trace = match &opts.trace {
        Some(_) if cluster.world_size() > 1 => {
            let why = "a trace records one process's steps: trace a run without torchrun".into();
            return Err(TrainError::Option { option: "trace", why });
        }
        Some(_) if opts.resume => {
            let why = "a trace starts with the initial weights: trace a fresh run, not a resumed one".into();
            return Err(TrainError::Option { option: "trace", why });
        }
        Some(dir) => Some(crate::trace::Trace::create(dir, &s.vs)?),
        None => None,
    };

    let epochs = recipe.train.epochs;
    let stop = opts.stop_after.unwrap_or(epochs).min(epochs);
    let mut epoch = start.epoch;
    let mut last_eval = None;
    if epoch < stop {
        let mut step = method_step(recipe, rng);
        let mut loader = train_loader(recipe, &ds, &s, opts.device, step.views(), (&start, stop), cluster.shard())?;
        let steps = loader.steps_per_epoch();
        if start.step_in_epoch >= steps {
            let why = format!("the checkpoint is at step {} of an epoch of {steps} steps", start.step_in_epoch);
            return Err(TrainError::Resume { path: out.clone(), why });
        }
        let schedule = recipe.optim.schedule();
        let lr = |e: usize| schedule.lr(recipe.optim.lr, e, epochs);
        let alpha = |e: usize| cumulative_alpha(e, epochs);
        let card = model_card(recipe, &ds, &s)?;
        let checkpoint_extra = |ls: Option<LossScaleState>| extra(&ds, recipe, &card, ls);
        let lp = EpochLoop {
            recipe,
            ds: &ds,
            device: opts.device,
            precision: &prec,
            out: &out,
            ckpt: &ckpt,
            epochs,
            stop,
            batch_size: recipe.train.batch_size,
            seed: recipe.train.seed,
            checkpoint_every: opts.checkpoint_every,
            lr: &lr,
            alpha: &alpha,
            extra: &checkpoint_extra,
            cluster,
        };
        let end = lp.run(&mut s, (&mut upd, step.as_mut()), &mut loader, trace.as_mut(), obs, start)?;
        epoch = end.epoch;
        records.extend(end.records);
        last_eval = end.last_eval;
    }
    if last_eval.is_none() {
        last_eval = Some(evaluate(&s, recipe, &ds, opts.device, cluster)?.headline().clone());
    }
    Ok(TrainOutcome { out, epochs_done: epoch, records, last_eval, finished: epoch >= epochs, dataset: ds, _lock })
}

/// Whether every trained parameter gets a gradient at every step: GLMC with
/// both heads and the consistency term. Otherwise (cross-entropy, the
/// ablations) the data-parallel reducer looks for the unused ones.
fn uses_every_parameter(recipe: &Recipe) -> bool {
    let cfg = recipe.glmc.loss_config();
    recipe.train.method == Method::Glmc && cfg.reweight && cfg.uses_consistency()
}

/// Rank 0's part of starting a run: one writer per run directory (the lock
/// is held by the outcome, so lt-train keeps it until its report is
/// written), a killed writer's repairs to the checkpoint, and for a fresh
/// run its directory.
fn begin_run(opts: &TrainOptions) -> Result<crate::rundir::RunLock> {
    let (out, ckpt) = (&opts.out, opts.out.join(CHECKPOINT_DIR));
    let Some(lock) = crate::rundir::lock_run(out, !opts.resume)? else {
        return Err(TrainError::Resume { path: out.clone(), why: format!("no checkpoint in {}", ckpt.display()) });
    };
    checkpoint::recover(&ckpt)?;
    if !opts.resume {
        if ckpt.exists() {
            return Err(TrainError::OutputTaken { path: out.clone(), what: "a run" });
        }
        start_run_dir(out, &opts.recipe)?;
    }
    Ok(lock)
}

/// Resumes `opts.out` from its checkpoint: checks the recipe (saving it when
/// a resume may change it, e.g. more epochs) and the dataset against the
/// run, loads the weights and the optimizer into `s` and the loss scale into
/// `scaler`; returns where the epoch loop starts (mid-epoch with the epoch's
/// loss sums so far), the method's RNG and the records of the epochs done.
/// Every rank restores, after rank 0's [`begin_run`] repaired the
/// checkpoint; only rank 0 writes (the recipe and metrics.jsonl, each
/// replaced atomically, which no other rank reads but the recipe).
fn restore(
    opts: &TrainOptions,
    ds: &Dataset,
    s: &mut Setup,
    scaler: Option<&mut LossScaler>,
) -> Result<(LoopStart, Rng, Vec<EpochRecord>)> {
    let (out, recipe) = (&opts.out, &opts.recipe);
    let ckpt = out.join(CHECKPOINT_DIR);
    let resume_err = |why: String| TrainError::Resume { path: out.clone(), why };
    if !ckpt.join(checkpoint::STATE_FILE).exists() {
        return Err(resume_err(format!("no checkpoint in {}", ckpt.display())));
    }
    // The saved recipe, or the same with more epochs where that is well defined.
    let change = crate::rundir::check_resume_recipe(out, recipe, crate::rundir::Stage::Train, checkpoint::load_state(&ckpt)?.epoch)?;
    let state = checkpoint::load(&ckpt, &mut s.vs, &mut s.opt)?;
    check_dataset(&state, ds, out)?;
    let root = opts.cluster.is_root();
    if change != crate::rundir::ResumeChange::Same && root {
        crate::rundir::save_recipe(out, recipe)?;
    }
    let mut start = LoopStart { epoch: state.epoch, step: state.step, ..LoopStart::default() };
    if state.step_in_epoch != 0 {
        // A mid-epoch checkpoint: the epoch's loss sums so far come back
        // with it, so the epoch's record is the uninterrupted run's.
        let v = state.extra.get(EXTRA_EPOCH_ACC).cloned().unwrap_or_default();
        let a: AccState =
            serde_json::from_value(v).map_err(|e| resume_err(format!("the mid-epoch checkpoint has no valid epoch sums: {e}")))?;
        start.step_in_epoch = state.step_in_epoch as usize;
        start.sums = Some(a);
    }
    if let Some(sc) = scaler {
        let v = state.extra.get(EXTRA_LOSS_SCALE).cloned().unwrap_or_default();
        let st: LossScaleState =
            serde_json::from_value(v).map_err(|e| resume_err(format!("the checkpoint has no valid loss-scale state (perf.amp): {e}")))?;
        sc.set_state(st)?;
    }
    // Rank 0 keeps the records (and cuts metrics.jsonl to them); the others write nothing.
    let records = if root { metrics_before(out, start.epoch)? } else { Vec::new() };
    Ok((start, Rng::from_state(state.rng), records))
}

/// The training loader of a run from `start` up to epoch `stop`: the
/// method's views and sampler, the recipe's workers and corrupt-image
/// policy, where the photometric stage runs (`loader.photometric`; the
/// epoch loop applies recorded stages after the upload), tensor-backed
/// (pinned on CUDA) buffers; this rank's `shard` of every step of the
/// global batch.
fn train_loader(
    recipe: &Recipe,
    ds: &Dataset,
    s: &Setup,
    device: Device,
    views: usize,
    (start, stop): (&LoopStart, usize),
    shard: Shard,
) -> Result<Loader> {
    let b = recipe.train.batch_size;
    let sampler = if views == 2 { SamplerSpec::Paired { q: recipe.glmc.q } } else { SamplerSpec::Instance };
    let position = Position { epoch: start.epoch as u64, step: start.step_in_epoch as u64 };
    let cfg = LoaderConfig::default()
        .with_batch_size(b)
        .with_views(views)
        .with_workers(workers(&recipe.loader))
        .with_pool_size(recipe.loader.pool_size)
        .with_sampler(sampler)
        .with_drop_last(crate::cluster::drop_last(recipe, ds.train.len(), shard.world))
        .with_shard(shard)
        .with_channels(s.in_channels as u8)
        .with_on_corrupt(if recipe.loader.skip_corrupt { OnCorrupt::Skip } else { OnCorrupt::Error })
        .with_jpeg_draft(recipe.loader.jpeg_draft)
        .with_photometric(recipe.loader.photometric_on(device.is_cuda())?)
        .with_epochs(stop as u64)
        .with_state(LoaderState { seed: recipe.train.seed, position })
        .with_allocator(Arc::new(TensorAllocator::new(recipe.perf.pinned && device.is_cuda())));
    Loader::try_new(ds.train.clone(), recipe.loader.augment.resolve()?, cfg).map_err(|e| {
        let rows = ds.train.len();
        let remedy = format!("use a smaller train.batch_size (at most {rows}), or train.drop_last = false");
        crate::rundir::batch_error(e.into(), "train.batch_size", &remedy, b, rows)
    })
}

/// The resume check that `state` was saved on the data of `ds` (dataset
/// fingerprint in [`TrainState::extra`]); also used by fine-tuning.
pub(crate) fn check_dataset(state: &TrainState, ds: &Dataset, run: &Path) -> Result<()> {
    let fp = state.extra.get("dataset").and_then(|v| v.as_str()).unwrap_or("");
    if fp != ds.fingerprint {
        return Err(TrainError::Resume {
            path: run.to_path_buf(),
            why: format!(
                "the dataset differs from the checkpoint's (fingerprint {} vs {} for {})",
                short(fp),
                short(&ds.fingerprint),
                ds.dir.display()
            ),
        });
    }
    Ok(())
}

fn short(s: &str) -> &str {
    if s.is_empty() {
        "(none)"
    } else {
        &s[..s.len().min(12)]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn images_per_s_times_secs(acc: &EpochAccumulator, batch_rows: (usize, usize)) -> f64 {
        let r = acc.record(0, (0.1, 1.0), (false, false), batch_rows, None, None);
        r.train_images_per_s * r.train_seconds
    }

    /// images/s counts the images the steps trained: a short last batch
    /// counts its images, not a full batch, and a resumed epoch only the
    /// steps this process ran.
    #[test]
    fn images_per_second_counts_the_trained_images() {
        let mut acc = EpochAccumulator::start(9);
        acc.end_training();
        // 68 rows in batches of 8: 8 full steps and one of 4.
        assert!((images_per_s_times_secs(&acc, (8, 68)) - 68.0).abs() < 1e-6);
        // drop_last: 8 steps of 8 over 68 rows.
        let mut dropped = EpochAccumulator::start(8);
        dropped.end_training();
        assert!((images_per_s_times_secs(&dropped, (8, 68)) - 64.0).abs() < 1e-6);
        // Resumed at step 3: steps 3..9 trained 68 - 24 images.
        let mut resumed = EpochAccumulator::start(9);
        resumed.restore(3, AccState::default());
        resumed.end_training();
        assert!((images_per_s_times_secs(&resumed, (8, 68)) - 44.0).abs() < 1e-6);
    }
}
