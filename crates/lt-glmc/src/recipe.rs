//! Training recipes (TOML): model, optimizer, GLMC and evaluation settings.
//!
//! One recipe per benchmark setting lives in `pipelines/`. Unknown fields are
//! errors (`deny_unknown_fields`), so a typo never silently falls back to a
//! default. Flags override fields through [`Recipe::set`] with dotted keys
//! (`optim.lr=0.05`), re-validated as a whole.
//!
//! The `build` and `loader` sections are placeholders kept as raw TOML here:
//! their typed forms belong to lt-build and lt-loader and will replace these
//! fields (PLACEHOLDER, see [`Recipe::loader`]).
//!
//! ```
//! let r = lt_glmc::recipe::Recipe::from_toml_str(r#"
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

use crate::error::{GlmcError, Result};
use crate::loss::{LossConfig, RebalancedLoss};
use crate::maxnorm::ProjectEvery;
use crate::model::Arch;
use crate::optim::{LrSchedule, SgdConfig};

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
    /// PLACEHOLDER: lt-loader's settings (augmentation, workers, sampler q is
    /// in [`GlmcSection::q`]), kept as raw TOML until lt-loader provides its
    /// typed section.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub loader: Option<toml::Value>,
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
            (a, Some(_)) => Err(GlmcError::invalid("model.width", format!("only resnet32 takes a width, not {a:?}"))),
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
    /// Linear warm-up epochs for `warmup_cosine` (default 10).
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
        }
    }
}

/// GLMC hyper-parameters (DESIGN §4, §5).
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
}

fn default_groups() -> GroupThresholds {
    GroupThresholds::default()
}

impl Default for EvalSection {
    fn default() -> Self {
        EvalSection { head: EvalHead::Auto, groups: GroupThresholds::default() }
    }
}

/// MaxNorm fine-tuning of the re-balanced classifier (frozen encoder).
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FinetuneSection {
    pub epochs: usize,
    pub lr: f64,
    #[serde(default)]
    pub weight_decay: f64,
    /// t in `thresh = min + t·(max − min)` of the row norms (0.1 in the reference code).
    #[serde(default = "default_thresh")]
    pub thresh_ratio: f64,
    #[serde(default)]
    pub every: ProjectEvery,
}

fn default_thresh() -> f64 {
    0.1
}

impl Recipe {
    pub fn from_toml_str(s: &str) -> Result<Recipe> {
        let r: Recipe = toml::from_str(s).map_err(|e| GlmcError::invalid("recipe", e.to_string()))?;
        r.validate()?;
        Ok(r)
    }

    pub fn load(path: &Path) -> Result<Recipe> {
        let s = std::fs::read_to_string(path).map_err(|source| GlmcError::Io { path: path.to_path_buf(), source })?;
        Self::from_toml_str(&s).map_err(|e| match e {
            GlmcError::Invalid { why, .. } => GlmcError::invalid("recipe", format!("{}: {why}", path.display())),
            e => e,
        })
    }

    pub fn to_toml_string(&self) -> Result<String> {
        toml::to_string_pretty(self).map_err(|e| GlmcError::invalid("recipe", e.to_string()))
    }

    /// Overrides one field by dotted key, e.g. `set("optim.lr", "0.05")`.
    /// The value is parsed as TOML (falling back to a string), and the whole
    /// recipe is re-checked, so unknown keys and wrong types are errors.
    pub fn set(&mut self, key: &str, value: &str) -> Result<()> {
        let mut root = toml::Value::try_from(&*self).map_err(|e| GlmcError::invalid("recipe", e.to_string()))?;
        let parsed: toml::Value = toml::from_str::<toml::Table>(&format!("v = {value}"))
            .ok()
            .and_then(|mut t| t.remove("v"))
            .unwrap_or_else(|| toml::Value::String(value.to_string()));
        let parts: Vec<&str> = key.split('.').collect();
        let mut cur = &mut root;
        for (i, p) in parts.iter().enumerate() {
            let table = cur
                .as_table_mut()
                .ok_or_else(|| GlmcError::invalid("override", format!("{key}: {} is not a table", parts[..i].join("."))))?;
            if i + 1 == parts.len() {
                table.insert(p.to_string(), parsed.clone());
                break;
            }
            cur = table.entry(p.to_string()).or_insert_with(|| toml::Value::Table(Default::default()));
        }
        let new: Recipe = root.try_into().map_err(|e: toml::de::Error| GlmcError::invalid("override", format!("{key}={value}: {e}")))?;
        new.validate()?;
        *self = new;
        Ok(())
    }

    /// Checks values serde cannot.
    pub fn validate(&self) -> Result<()> {
        self.model.arch()?;
        let bad = |what: &'static str, why: String| Err(GlmcError::invalid(what, why));
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
        if !(self.glmc.beta > 0.0) || self.glmc.kappa < 0.0 {
            return bad("glmc", "beta must be > 0 and kappa >= 0".into());
        }
        if let Some(n) = &self.normalize {
            if n.mean.len() != n.std.len() || n.std.iter().any(|s| !(*s > 0.0)) {
                return bad("normalize", "mean and std need one entry per channel, std > 0".into());
            }
        }
        Ok(())
    }
}
