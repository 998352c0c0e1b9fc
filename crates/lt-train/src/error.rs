//! The trainer's error type.

use std::path::PathBuf;

pub use lt_glmc::GlmcError;
pub use lt_report::ReportError;

/// Errors of the trainer. Settings are named by their recipe keys
/// (`train.batch_size`) and run options by their [`crate::train::TrainOptions`]
/// / [`crate::finetune::FinetuneOptions`] field names; the `lt-train`
/// binary adds its flags.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TrainError {
    /// The libtorch core failed: a model, loss or optimizer setting, a
    /// non-finite loss, a device, a checkpoint.
    #[error(transparent)]
    Glmc(#[from] GlmcError),
    /// Writing the records, the report or the plots failed.
    #[error(transparent)]
    Report(#[from] ReportError),
    /// A recipe value the trainer cannot use; `key` is its recipe key.
    #[error("invalid {key}: {why}")]
    Recipe { key: &'static str, why: String },
    /// A recipe that is not valid TOML or has unknown keys or wrong types
    /// (`path` when it came from a file).
    #[error("recipe{}: {why}", path.as_ref().map(|p| format!(" {}", p.display())).unwrap_or_default())]
    RecipeFile { path: Option<PathBuf>, why: String },
    /// A `key=value` override that does not fit the recipe.
    #[error("override {key}: {why}")]
    Override { key: String, why: String },
    /// A run option out of range; `option` is its field name.
    #[error("invalid {option}: {why}")]
    Option { option: &'static str, why: String },
    /// The shard set could not be opened or read (missing or corrupt
    /// manifest, missing shard, checksum mismatch).
    #[error("dataset {}: {source}", path.display())]
    Dataset {
        path: PathBuf,
        #[source]
        source: lt_shards::ShardError,
    },
    /// The shard set opened but cannot be trained on (an empty split, an
    /// image that does not decode).
    #[error("dataset {}: {why}", path.display())]
    Data { path: PathBuf, why: String },
    /// The ranks of a data-parallel run disagree (recipe, shards).
    #[error("data-parallel run: {0}")]
    Ranks(String),
    /// The loader failed (corrupt image, bad configuration, …).
    #[error("loader: {0}")]
    Loader(#[from] lt_loader::LoaderError),
    /// The loader delivered a batch out of order or stopped early.
    #[error("loader: {0}")]
    LoaderOrder(String),
    /// A resume against a run whose recipe or dataset differs, or that has
    /// no checkpoint.
    #[error("cannot resume {}: {why}", path.display())]
    Resume { path: PathBuf, why: String },
    /// Fine-tuning a run it cannot start from (no checkpoint, no recipe, an
    /// override outside `finetune.*`).
    #[error("cannot fine-tune {}: {why}", path.display())]
    Finetune { path: PathBuf, why: String },
    /// Fine-tuning found no shard directory recorded for the run (its
    /// `report.json` is missing or names none); the `shards` option names one.
    #[error("cannot find the shard directory of {}: {why}; name it with the shards option", run.display())]
    ShardsOfRunUnknown { run: PathBuf, why: String },
    /// A fresh run into an output directory that already holds one.
    #[error("{} already holds {what}: resume it, or write to another output directory", path.display())]
    OutputTaken { path: PathBuf, what: &'static str },
    /// The run directory is locked by another process, or by this one.
    #[error("run directory {}", why)]
    RunDirInUse { path: PathBuf, why: String },
    #[error("{}: {source}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{}: {source}", path.display())]
    Json {
        path: PathBuf,
        #[source]
        source: serde_json::Error,
    },
}

pub type Result<T, E = TrainError> = std::result::Result<T, E>;

impl TrainError {
    pub(crate) fn recipe(key: &'static str, why: impl Into<String>) -> Self {
        TrainError::Recipe { key, why: why.into() }
    }

    /// Whether this is the core's non-finite loss stop.
    pub fn is_non_finite_loss(&self) -> bool {
        matches!(self, TrainError::Glmc(GlmcError::NonFiniteLoss { .. }))
    }
}

impl From<tch::TchError> for TrainError {
    fn from(e: tch::TchError) -> Self {
        TrainError::Glmc(GlmcError::Torch(e))
    }
}
