//! Training recipes (TOML): model, optimizer, GLMC and evaluation settings.
//!
//! One recipe per benchmark setting lives in `pipelines/`. Unknown fields are
//! errors (`deny_unknown_fields`), so a typo never silently falls back to a
//! default. Flags override fields through [`Recipe::set`] with dotted keys
//! (`optim.lr=0.05`), re-validated as a whole.
//!
//! The `build` section is a placeholder kept as raw TOML here: its typed
//! form belongs to lt-build (PLACEHOLDER, see [`Recipe::build`]). The
//! `loader` section is typed ([`LoaderSection`]), `perf` holds the
//! device switches of the GPU path ([`PerfSection`]), and `log` the
//! TensorBoard event files ([`LogSection`]).
//!
//! ```
//! let r = lt_train::recipe::Recipe::from_toml_str(r#"
//!     name = "demo"
//!     [model]
//!     arch = "resnet32"
//!     width = 16
//!     [train]
//!     epochs = 5
//!     batch_size = 64
//!     [optim]
//!     lr = 0.01
//!     weight_decay = 5e-3
//!     [glmc]
//!     q = 0.0
//!     p = 1.2
//!     kappa = 1.0
//! "#).unwrap();
//! assert_eq!(r.model.arch().unwrap(), lt_glmc::model::Arch::ResNet32 { width: 16 });
//! ```

use std::path::Path;

use lt_core::groups::GroupThresholds;
use serde::{Deserialize, Serialize};

use crate::error::{Result, TrainError};
use lt_glmc::amp::{LossScaleConfig, MemoryFormat, Precision, PrecisionConfig};
use lt_glmc::loss::{LossConfig, RebalancedLoss};
use lt_glmc::maxnorm::ProjectEvery;
use lt_glmc::model::Arch;
use lt_glmc::optim::{LrSchedule, SgdConfig};
use lt_vision::photometric::{Photometric, MAX_PHOTO_OPS};

/// A whole recipe.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Recipe {
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// PLACEHOLDER: lt-build's settings (source, profile, IF, …), kept as raw
    /// TOML until lt-build provides its typed section.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub build: Option<toml::Value>,
    /// How batches are made (augmentation, workers, buffers); the sampler's
    /// q is [`GlmcSection::q`].
    #[serde(default)]
    pub loader: LoaderSection,
    /// Device-side switches (pinned buffers, AMP, channels-last, cuDNN).
    #[serde(default)]
    pub perf: PerfSection,
    pub model: ModelSection,
    pub train: TrainSection,
    pub optim: OptimSection,
    #[serde(default)]
    pub glmc: GlmcSection,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub normalize: Option<NormalizeSection>,
    #[serde(default)]
    pub eval: EvalSection,
    /// Optional second stage: MaxNorm fine-tuning of g_cb.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub finetune: Option<FinetuneSection>,
    /// What the run logs besides metrics.jsonl (TensorBoard event files).
    #[serde(default)]
    pub log: LogSection,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ArchName {
    Resnet32,
    Resnet50,
    #[serde(rename = "resnext50_32x4d")]
    Resnext50_32x4d,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ModelSection {
    pub arch: ArchName,
    /// ResNet-32 base width (default 64, the authors' `resnet32_fe`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub width: Option<i64>,
    /// Projection dimension d (default 128 for ResNet-32, 256 otherwise).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub proj_dim: Option<i64>,
    /// Image channels; absent: taken from the data.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub in_channels: Option<i64>,
}

impl ModelSection {
    pub fn arch(&self) -> Result<Arch> {
        match (self.arch, self.width) {
            (ArchName::Resnet32, w) => Ok(Arch::ResNet32 { width: w.unwrap_or(64) }),
            (ArchName::Resnet50, None) => Ok(Arch::ResNet50),
            (ArchName::Resnext50_32x4d, None) => Ok(Arch::ResNeXt50_32x4d),
            (a, Some(_)) => Err(TrainError::recipe("model.width", format!("only resnet32 takes a width, not {a:?}"))),
        }
    }
}

/// Training method.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Method {
    #[default]
    Glmc,
    /// Plain cross-entropy baseline: instance sampling, no mixing, head g.
    CrossEntropy,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TrainSection {
    pub epochs: usize,
    pub batch_size: usize,
    #[serde(default)]
    pub seed: u64,
    #[serde(default)]
    pub method: Method,
    /// Drop each epoch's last partial batch. Off by default, as the
    /// authors' DataLoaders (`drop_last=False`): the last instance batch is
    /// short and the class-weighted batch is cut to its size. A last batch
    /// of one image is always dropped (BatchNorm cannot train on it).
    #[serde(default)]
    pub drop_last: bool,
}

#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OptimSection {
    pub lr: f64,
    #[serde(default = "default_momentum")]
    pub momentum: f64,
    pub weight_decay: f64,
    #[serde(default)]
    pub schedule: ScheduleName,
    /// Warm-up epochs for `warmup_cosine` and `paco` (default 10).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub warmup_epochs: Option<usize>,
}

fn default_momentum() -> f64 {
    0.9
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ScheduleName {
    Constant,
    #[default]
    Cosine,
    WarmupCosine,
    /// The authors' `paco_adjust_learning_rate` (ImageNet-LT, iNaturalist).
    Paco,
}

impl OptimSection {
    pub fn sgd(&self) -> SgdConfig {
        SgdConfig { lr: self.lr, momentum: self.momentum, weight_decay: self.weight_decay }
    }
    pub fn schedule(&self) -> LrSchedule {
        match self.schedule {
            ScheduleName::Constant => LrSchedule::Constant,
            ScheduleName::Cosine => LrSchedule::Cosine,
            ScheduleName::WarmupCosine => LrSchedule::WarmupCosine { warmup_epochs: self.warmup_epochs.unwrap_or(10) },
            ScheduleName::Paco => LrSchedule::Paco { warmup_epochs: self.warmup_epochs.unwrap_or(10) },
        }
    }
}

/// GLMC hyper-parameters: q, p, κ and the loss switches (defaults: the authors' CIFAR settings).
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GlmcSection {
    /// Resample weighting of the class-weighted sampler, P(i) ∝ n_{y_i}^(−q).
    pub q: f64,
    /// Label weighting exponent, v_c ∝ n_c^(−p).
    pub p: f64,
    /// Consistency weight κ.
    pub kappa: f64,
    /// λ ~ Beta(β, β). The authors' code uses Beta(1, 1) whatever its flag.
    #[serde(default = "one")]
    pub beta: f64,
    #[serde(default = "yes")]
    pub consistency: bool,
    #[serde(default = "yes")]
    pub reweight: bool,
    #[serde(default)]
    pub rebalanced: RebalancedLoss,
}

fn one() -> f64 {
    1.0
}
fn yes() -> bool {
    true
}

impl Default for GlmcSection {
    fn default() -> Self {
        GlmcSection { q: 0.0, p: 1.2, kappa: 1.0, beta: 1.0, consistency: true, reweight: true, rebalanced: RebalancedLoss::Reweighted }
    }
}

impl GlmcSection {
    pub fn loss_config(&self) -> LossConfig {
        LossConfig { kappa: self.kappa, consistency: self.consistency, reweight: self.reweight, rebalanced: self.rebalanced }
    }
}

/// Explicit normalization; absent: the manifest's train statistics.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NormalizeSection {
    pub mean: Vec<f64>,
    pub std: Vec<f64>,
}

/// An augmentation pipeline in a recipe: a short name (`"cifar"`,
/// `"imagenet"`, `"randaugment"`, `"eval"`, `"eval-identity"`) or a full
/// table (`{ kind = "cifar", padding = 4 }`, see [`lt_vision::augment::Pipeline`]).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum PipelineSpec {
    Name(String),
    Spec(lt_vision::augment::Pipeline),
}

impl PipelineSpec {
    pub fn resolve(&self) -> Result<lt_vision::augment::Pipeline> {
        let p = match self {
            PipelineSpec::Name(n) => {
                lt_vision::augment::Pipeline::by_name(n).map_err(|e| TrainError::recipe("loader pipeline", e.to_string()))?
            }
            PipelineSpec::Spec(p) => p.clone(),
        };
        p.validate().map_err(|e| TrainError::recipe("loader pipeline", e.to_string()))?;
        Ok(p)
    }
}

/// Loader settings (lt-loader's `LoaderConfig`, minus what the trainer
/// decides: batch size, sampler, views, seed, start position).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LoaderSection {
    /// Training augmentation.
    #[serde(default = "default_augment")]
    pub augment: PipelineSpec,
    /// Views per sample; GLMC needs 2, the CE baseline uses 1. Absent: by method.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub views: Option<usize>,
    /// Evaluation pipeline; absent: `eval-identity` for images up to 64 px,
    /// `eval` (resize 256, center crop 224) for larger ones.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub eval: Option<PipelineSpec>,
    /// Decode/augment worker threads; 0: one per core.
    #[serde(default)]
    pub workers: usize,
    /// Batch buffers in circulation.
    #[serde(default = "default_pool")]
    pub pool_size: usize,
    /// Keep a split's encoded bytes resident up to this many MiB.
    #[serde(default = "default_budget")]
    pub memory_budget_mib: u64,
    /// Replace undecodable images by the next row (counted) instead of stopping.
    #[serde(default)]
    pub skip_corrupt: bool,
    /// Decode training JPEGs at reduced DCT scale where the random resized
    /// crops allow (lt-loader's `LoaderConfig::jpeg_draft`): cheaper
    /// decodes, different (equally deterministic) views than torchvision's
    /// full decode. Evaluation always decodes in full.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub jpeg_draft: bool,
    /// Where the training pipeline's photometric stage runs (colour jitter,
    /// grayscale and blur of `imagenet`, the RandAugment ops of
    /// `randaugment` and `imagenet-randncls`): `"cpu"`, on the loader's
    /// workers, or `"device"`, recorded by the workers and applied to the
    /// batch on the training device right after its upload
    /// ([`lt_glmc::photometric`], the same bytes as the CPU kernels).
    /// Absent: `"device"` on CUDA for a pipeline that has the stage, `"cpu"`
    /// otherwise ([`LoaderSection::photometric_on`]). Evaluation never uses it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub photometric: Option<Photometric>,
    /// Evaluation batch size (default 256).
    #[serde(default = "default_eval_batch")]
    pub eval_batch_size: usize,
}

fn default_augment() -> PipelineSpec {
    PipelineSpec::Name("cifar".into())
}
fn default_pool() -> usize {
    4
}
fn default_budget() -> u64 {
    8192
}
fn default_eval_batch() -> usize {
    256
}

impl Default for LoaderSection {
    fn default() -> Self {
        LoaderSection {
            augment: default_augment(),
            views: None,
            eval: None,
            workers: 0,
            pool_size: default_pool(),
            memory_budget_mib: default_budget(),
            skip_corrupt: false,
            jpeg_draft: false,
            photometric: None,
            eval_batch_size: default_eval_batch(),
        }
    }
}

impl LoaderSection {
    /// Where the photometric stage runs when training on CUDA (`cuda`) or
    /// not: `loader.photometric` when given, else `device` on CUDA for a
    /// pipeline with a photometric stage that fits the per-view record, and
    /// `cpu` otherwise.
    pub fn photometric_on(&self, cuda: bool) -> Result<Photometric> {
        let p = self.augment.resolve()?;
        Ok(match self.photometric {
            Some(m) => m,
            None if cuda && p.has_photometric() && p.max_photometric_ops() <= MAX_PHOTO_OPS => Photometric::Device,
            None => Photometric::Cpu,
        })
    }

    /// `loader.photometric = "device"` needs a pipeline with a photometric
    /// stage that fits the per-view record.
    fn check_photometric(&self) -> Result<()> {
        if self.photometric != Some(Photometric::Device) {
            return Ok(());
        }
        let p = self.augment.resolve()?;
        let kind = serde_json::to_value(&p).ok().and_then(|v| v["kind"].as_str().map(str::to_string)).unwrap_or_default();
        if !p.has_photometric() {
            return Err(TrainError::recipe(
                "loader.photometric",
                format!(
                    "\"device\" moves the photometric stage of imagenet, randaugment and imagenet-randncls to the device; \
                     the {kind} pipeline has none (remove loader.photometric or set it to \"cpu\")"
                ),
            ));
        }
        if p.max_photometric_ops() > MAX_PHOTO_OPS {
            return Err(TrainError::recipe(
                "loader.photometric",
                format!(
                    "\"device\" records at most {MAX_PHOTO_OPS} photometric ops per view and the {kind} pipeline makes up to {} \
                     (fewer RandAugment ops, or loader.photometric = \"cpu\")",
                    p.max_photometric_ops()
                ),
            ));
        }
        Ok(())
    }
}

/// Device-side switches, applied by the trainer through
/// [`PerfSection::precision`]. On CPU, pinned buffers fall
/// back to ordinary memory and AMP (fp16 autocast) is refused with a clear
/// error; channels-last works on both.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PerfSection {
    /// Page-locked batch buffers and non-blocking host→device copies (CUDA).
    #[serde(default = "yes")]
    pub pinned: bool,
    /// fp16 autocast with dynamic loss scaling (CUDA only).
    #[serde(default)]
    pub amp: bool,
    /// NHWC activations for the convolution models.
    #[serde(default)]
    pub channels_last: bool,
    /// cuDNN autotuning (CUDA only; ignored on CPU).
    #[serde(default = "yes")]
    pub cudnn_benchmark: bool,
}

impl Default for PerfSection {
    fn default() -> Self {
        PerfSection { pinned: true, amp: false, channels_last: false, cudnn_benchmark: true }
    }
}

impl PerfSection {
    /// As a [`PrecisionConfig`]: `amp` → [`Precision::Amp`] (otherwise
    /// fp32), `channels_last` → [`MemoryFormat::Nhwc`].
    pub fn precision(&self) -> PrecisionConfig {
        PrecisionConfig {
            precision: if self.amp { Precision::Amp } else { Precision::Fp32 },
            memory_format: if self.channels_last { MemoryFormat::Nhwc } else { MemoryFormat::Nchw },
            cudnn_benchmark: self.cudnn_benchmark,
            loss_scale: LossScaleConfig::default(),
        }
    }
}

/// Which head answers at evaluation.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EvalHead {
    /// g_cb for GLMC with re-weighting, g otherwise.
    #[default]
    Auto,
    Conventional,
    Rebalanced,
}

#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EvalSection {
    #[serde(default)]
    pub head: EvalHead,
    #[serde(default = "default_groups")]
    pub groups: GroupThresholds,
    /// Evaluate every this many epochs (and always after the last).
    #[serde(default = "default_every")]
    pub every: usize,
}

fn default_every() -> usize {
    1
}

fn default_groups() -> GroupThresholds {
    GroupThresholds::default()
}

impl Default for EvalSection {
    fn default() -> Self {
        EvalSection { head: EvalHead::Auto, groups: GroupThresholds::default(), every: 1 }
    }
}

/// Logging besides metrics.jsonl: TensorBoard event files in the run
/// directory (`events.out.tfevents.*`, see [`lt_report::tensorboard`]) with
/// every number of each epoch's metrics.jsonl line (`train/*`, `test/*`) and,
/// every `scalars_every` steps, the step's loss and the learning rate and α
/// in force (`step/loss`, `step/lr`, `step/alpha`). `tensorboard --logdir
/// runs/` shows them. These settings change no result, so a resume may
/// change them.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LogSection {
    /// Write TensorBoard event files (default on).
    #[serde(default = "yes")]
    pub tensorboard: bool,
    /// The per-step scalars every this many steps (default 50).
    #[serde(default = "default_scalars_every")]
    pub scalars_every: usize,
}

fn default_scalars_every() -> usize {
    50
}

impl Default for LogSection {
    fn default() -> Self {
        LogSection { tensorboard: true, scalars_every: default_scalars_every() }
    }
}

/// MaxNorm fine-tuning of the re-balanced classifier g_cb with a frozen
/// encoder (`lt-train finetune`, [`crate::finetune`]). Every field has a
/// default, so `[finetune]` may be empty or absent.
///
/// The defaults are the second stage of the weight-balancing reference that
/// GLMC cites for MaxNorm (ShadeAlsha/LTR-weight-balancing,
/// `demo2_second-stage-training.py`, Alshammari et al., CVPR 2022): MaxNorm
/// threshold t = 0.1 of the row-norm range (`MaxNorm_via_PGD`), SGD lr 0.01
/// with a cosine schedule over 10 epochs, momentum 0.9, weight decay 0.1,
/// the class-balanced loss of effective numbers (`CB_loss(..., "softmax",
/// beta=0.9999)`) on natural (instance) sampling, and the projection once per
/// epoch (their `train_model` calls `PGD` after each training phase). Two
/// details of that script are not copied: it steps its scheduler before each
/// epoch (so its first epoch already runs at the second rate) and leaves
/// BatchNorm in training mode, which moves the frozen encoder's running
/// statistics; here the schedule starts at `lr` and the encoder stays frozen,
/// statistics included. `loss = "ce"` with `sampling = "class_balanced"` and
/// `per_epoch = false` is lt-glmc's earlier default; `loss =
/// "balanced_softmax"` is Balanced Softmax as a second stage (the paper's
/// "+ BS" row read as a classifier fine-tune). The batch size defaults to the
/// first stage's `train.batch_size`.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FinetuneSection {
    #[serde(default = "default_ft_epochs")]
    pub epochs: usize,
    #[serde(default = "default_ft_lr")]
    pub lr: f64,
    #[serde(default = "default_momentum")]
    pub momentum: f64,
    #[serde(default = "default_ft_wd")]
    pub weight_decay: f64,
    /// `constant` or `cosine` (per epoch over `epochs`).
    #[serde(default)]
    pub schedule: ScheduleName,
    /// Absent: the first stage's `train.batch_size`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub batch_size: Option<usize>,
    /// t in `thresh = min + t·(max − min)` of the row norms (0.1 in the reference code).
    #[serde(default = "default_thresh")]
    pub thresh_ratio: f64,
    /// Project once per epoch (the default, as the reference) instead of
    /// after every iteration.
    #[serde(default = "default_true")]
    pub per_epoch: bool,
    /// The classifier's loss.
    #[serde(default)]
    pub loss: FinetuneLoss,
    /// How training images are drawn.
    #[serde(default)]
    pub sampling: FinetuneSampling,
    /// β of the class-balanced loss's effective numbers `(1 − β^n) / (1 − β)`.
    #[serde(default = "default_cb_beta")]
    pub cb_beta: f64,
}

pub use lt_glmc::loss::FinetuneLoss;

/// The fine-tuning sampler.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FinetuneSampling {
    /// Each image once per epoch (the reference's natural sampling).
    #[default]
    Instance,
    /// Class-balanced with replacement, `P(i) ∝ 1/n_{y_i}`.
    ClassBalanced,
}

fn default_true() -> bool {
    true
}
fn default_cb_beta() -> f64 {
    0.9999
}

fn default_thresh() -> f64 {
    0.1
}
fn default_ft_epochs() -> usize {
    10
}
fn default_ft_lr() -> f64 {
    0.01
}
fn default_ft_wd() -> f64 {
    0.1
}

impl Default for FinetuneSection {
    fn default() -> Self {
        FinetuneSection {
            epochs: default_ft_epochs(),
            lr: default_ft_lr(),
            momentum: default_momentum(),
            weight_decay: default_ft_wd(),
            schedule: ScheduleName::Cosine,
            batch_size: None,
            thresh_ratio: default_thresh(),
            per_epoch: true,
            loss: FinetuneLoss::default(),
            sampling: FinetuneSampling::default(),
            cb_beta: default_cb_beta(),
        }
    }
}

impl FinetuneSection {
    pub fn sgd(&self) -> SgdConfig {
        SgdConfig { lr: self.lr, momentum: self.momentum, weight_decay: self.weight_decay }
    }
    pub fn schedule(&self) -> LrSchedule {
        match self.schedule {
            ScheduleName::Constant => LrSchedule::Constant,
            ScheduleName::Cosine | ScheduleName::WarmupCosine | ScheduleName::Paco => LrSchedule::Cosine,
        }
    }
    pub fn every(&self) -> ProjectEvery {
        if self.per_epoch {
            ProjectEvery::Epoch
        } else {
            ProjectEvery::Iteration
        }
    }
    pub fn validate(&self) -> Result<()> {
        let bad = |key: &'static str, why: String| Err(TrainError::recipe(key, why));
        if self.epochs == 0 {
            return bad("finetune.epochs", "must be >= 1".into());
        }
        if !(self.lr > 0.0 && self.lr.is_finite()) {
            return bad("finetune.lr", format!("{} (must be > 0)", self.lr));
        }
        if !(0.0..1.0).contains(&self.momentum) || self.weight_decay.is_nan() || self.weight_decay < 0.0 {
            return bad("finetune", "momentum must be in [0, 1) and weight_decay >= 0".into());
        }
        if matches!(self.schedule, ScheduleName::WarmupCosine | ScheduleName::Paco) {
            return bad("finetune.schedule", "constant or cosine (no warm-up for fine-tuning)".into());
        }
        if self.batch_size == Some(0) {
            return bad("finetune.batch_size", "must be >= 1".into());
        }
        if !(self.thresh_ratio >= 0.0 && self.thresh_ratio.is_finite()) {
            return bad("finetune.thresh_ratio", format!("{} (must be >= 0)", self.thresh_ratio));
        }
        if !(self.cb_beta > 0.0 && self.cb_beta < 1.0) {
            return bad("finetune.cb_beta", format!("{} (must be in (0, 1))", self.cb_beta));
        }
        Ok(())
    }
}

impl Recipe {
    /// What the report's title and summary line say about this recipe.
    pub fn report_header(&self) -> lt_report::RunHeader {
        let g = &self.glmc;
        let settings = [
            ("batch", self.train.batch_size.to_string()),
            ("lr", self.optim.lr.to_string()),
            ("wd", self.optim.weight_decay.to_string()),
            ("q", g.q.to_string()),
            ("p", g.p.to_string()),
            ("κ", g.kappa.to_string()),
            ("consistency", g.consistency.to_string()),
            ("re-weighting", g.reweight.to_string()),
            ("seed", self.train.seed.to_string()),
        ];
        lt_report::RunHeader {
            name: self.name.clone(),
            method: format!("{:?}", self.train.method),
            arch: self.model.arch().map(|a| format!("{a:?}")).unwrap_or_default(),
            epochs: self.train.epochs,
            settings: settings.into_iter().map(|(k, v)| (k.to_string(), v)).collect(),
            groups: self.eval.groups,
        }
    }

    pub fn from_toml_str(s: &str) -> Result<Recipe> {
        let r: Recipe = toml::from_str(s).map_err(|e| TrainError::RecipeFile { path: None, why: e.to_string() })?;
        r.validate()?;
        Ok(r)
    }

    pub fn load(path: &Path) -> Result<Recipe> {
        let s = std::fs::read_to_string(path).map_err(|source| TrainError::Io { path: path.to_path_buf(), source })?;
        Self::from_toml_str(&s).map_err(|e| match e {
            TrainError::RecipeFile { path: None, why } => TrainError::RecipeFile { path: Some(path.to_path_buf()), why },
            e @ TrainError::Recipe { .. } => TrainError::RecipeFile { path: Some(path.to_path_buf()), why: e.to_string() },
            e => e,
        })
    }

    pub fn to_toml_string(&self) -> Result<String> {
        toml::to_string_pretty(self).map_err(|e| TrainError::RecipeFile { path: None, why: e.to_string() })
    }

    /// Overrides one field by dotted key, e.g. `set("optim.lr", "0.05")`.
    /// The value is parsed as TOML (falling back to a string), and the whole
    /// recipe is re-checked, so unknown keys and wrong types are errors.
    pub fn set(&mut self, key: &str, value: &str) -> Result<()> {
        let mut root = toml::Value::try_from(&*self).map_err(|e| TrainError::RecipeFile { path: None, why: e.to_string() })?;
        let parsed: toml::Value = toml::from_str::<toml::Table>(&format!("v = {value}"))
            .ok()
            .and_then(|mut t| t.remove("v"))
            .unwrap_or_else(|| toml::Value::String(value.to_string()));
        let parts: Vec<&str> = key.split('.').collect();
        let mut cur = &mut root;
        for (i, p) in parts.iter().enumerate() {
            let table = cur
                .as_table_mut()
                .ok_or_else(|| TrainError::Override { key: key.into(), why: format!("{} is not a table", parts[..i].join(".")) })?;
            if i + 1 == parts.len() {
                table.insert(p.to_string(), parsed.clone());
                break;
            }
            cur = table.entry(p.to_string()).or_insert_with(|| toml::Value::Table(Default::default()));
        }
        let new: Recipe =
            root.try_into().map_err(|e: toml::de::Error| TrainError::Override { key: key.into(), why: format!("{key}={value}: {e}") })?;
        new.validate()?;
        *self = new;
        Ok(())
    }

    /// Checks values serde cannot.
    pub fn validate(&self) -> Result<()> {
        self.model.arch()?;
        let bad = |key: &'static str, why: String| Err(TrainError::recipe(key, why));
        if self.train.epochs == 0 {
            return bad("train.epochs", "must be >= 1".into());
        }
        if self.train.batch_size == 0 {
            return bad("train.batch_size", "must be >= 1".into());
        }
        if !(self.optim.lr > 0.0 && self.optim.lr.is_finite()) {
            return bad("optim.lr", format!("{} (must be > 0)", self.optim.lr));
        }
        if !(0.0..1.0).contains(&self.optim.momentum) || self.optim.weight_decay < 0.0 {
            return bad("optim", "momentum must be in [0, 1) and weight_decay >= 0".into());
        }
        if self.optim.schedule == ScheduleName::Paco && self.optim.warmup_epochs == Some(0) {
            return bad("optim.warmup_epochs", "must be >= 1 for the paco schedule".into());
        }
        if self.glmc.beta.is_nan() || self.glmc.beta <= 0.0 || self.glmc.kappa < 0.0 {
            return bad("glmc", "beta must be > 0 and kappa >= 0".into());
        }
        if self.eval.every == 0 {
            return bad("eval.every", "must be >= 1".into());
        }
        if self.log.scalars_every == 0 {
            return bad("log.scalars_every", "must be >= 1 (log.tensorboard = false writes no event files)".into());
        }
        let l = &self.loader;
        if l.pool_size == 0 || l.eval_batch_size == 0 {
            return bad("loader", "pool_size and eval_batch_size must be >= 1".into());
        }
        let want_views = match self.train.method {
            Method::Glmc => 2,
            Method::CrossEntropy => 1,
        };
        if l.views.is_some_and(|v| v != want_views) {
            return bad("loader.views", format!("{:?} uses {want_views} view(s), not {}", self.train.method, l.views.unwrap_or(0)));
        }
        l.augment.resolve()?;
        l.check_photometric()?;
        if let Some(e) = &l.eval {
            e.resolve()?;
        }
        if let Some(n) = &self.normalize {
            if n.mean.len() != n.std.len() || n.std.iter().any(|s| s.is_nan() || *s <= 0.0) {
                return bad("normalize", "mean and std need one entry per channel, std > 0".into());
            }
        }
        if let Some(f) = &self.finetune {
            f.validate()?;
        }
        Ok(())
    }
}
