//! The crate's error type.

use std::path::PathBuf;

/// Errors of the libtorch stage. Each variant carries the context a user
/// needs to act on it (the step, the file, the setting at fault).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum GlmcError {
    /// A libtorch operation failed (shape mismatch, device mismatch, …).
    #[error("libtorch: {0}")]
    Torch(#[from] tch::TchError),
    /// A libtorch operation failed while doing `context`.
    #[error("{context}: {source}")]
    TorchContext {
        context: String,
        #[source]
        source: tch::TchError,
    },
    /// The total loss was NaN or infinite; training must stop here, without
    /// saving. `epoch` is 0-based; the message counts from 1, as the
    /// progress line does. Whether a checkpoint exists is the caller's to
    /// say (none does when this happens in the first epoch of a run).
    #[error("non-finite loss ({value}) at global step {step} (epoch {}); stopping without saving", epoch + 1)]
    NonFiniteLoss { step: u64, epoch: usize, value: f64 },
    /// A setting or an input has a value the method cannot use.
    #[error("invalid {what}: {why}")]
    Invalid { what: &'static str, why: String },
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
    /// The shard set could not be opened or read (missing or corrupt
    /// manifest, missing shard, checksum mismatch).
    #[error("dataset {}: {source}", path.display())]
    Dataset {
        path: PathBuf,
        #[source]
        source: lt_shards::ShardError,
    },
    /// The loader failed (corrupt image, bad configuration, …).
    #[error("loader: {0}")]
    Loader(#[from] lt_loader::LoaderError),
    /// `--resume` against a run whose recipe or dataset differs.
    #[error("cannot resume {}: {why}", path.display())]
    Resume { path: PathBuf, why: String },
    /// `lt-train finetune` on a run it cannot start from (no checkpoint,
    /// no recipe, an override outside `finetune.*`).
    #[error("cannot fine-tune {}: {why}", path.display())]
    Finetune { path: PathBuf, why: String },
    /// The requested device is not available.
    #[error("device {requested:?}: {why}")]
    Device { requested: String, why: String },
    /// A checkpoint is missing a file or a tensor, or does not fit the model.
    #[error("checkpoint {}: {why}", path.display())]
    Checkpoint { path: PathBuf, why: String },
}

pub type Result<T, E = GlmcError> = std::result::Result<T, E>;

impl GlmcError {
    pub(crate) fn invalid(what: &'static str, why: impl Into<String>) -> Self {
        GlmcError::Invalid { what, why: why.into() }
    }
}

/// Adds a context string to libtorch errors.
pub(crate) trait TorchContext<T> {
    fn ctx(self, context: impl FnOnce() -> String) -> Result<T>;
}

impl<T> TorchContext<T> for std::result::Result<T, tch::TchError> {
    fn ctx(self, context: impl FnOnce() -> String) -> Result<T> {
        self.map_err(|source| GlmcError::TorchContext { context: context(), source })
    }
}
