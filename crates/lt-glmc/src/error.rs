//! The crate's error type.

use std::path::PathBuf;

/// Errors of the libtorch core. Each variant carries the context a user
/// needs to act on it: the step, the file, the setting or the tensor at
/// fault. Settings are named by their config names (`lr`, `precision`,
/// `proj_dim`, …); front ends add their own flag or recipe key.
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
    /// A setting has a value the model, the loss or the optimizer cannot
    /// use. `setting` is its config name.
    #[error("invalid {setting}: {why}")]
    Setting { setting: &'static str, why: String },
    /// A tensor handed to the library has the wrong shape.
    #[error("{what}: shape {got:?}, expected {expected}")]
    Shape { what: &'static str, got: Vec<i64>, expected: String },
    /// A label outside `0..classes`.
    #[error("label {label} outside 0..{classes}")]
    Label { label: i64, classes: usize },
    /// Saved state (optimizer buffers, loss scale) that does not fit what
    /// it is restored into.
    #[error("cannot restore {what}: {why}")]
    State { what: &'static str, why: String },
    /// Long-tail bookkeeping refused its input (class counts, groups).
    #[error(transparent)]
    Core(#[from] lt_core::CoreError),
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
    /// A batch buffer could not be allocated for the loader.
    #[error("loader: {0}")]
    Loader(#[from] lt_loader::LoaderError),
    /// The requested device is not available, or cannot do what was asked.
    #[error("device {requested:?}: {why}")]
    Device { requested: String, why: String },
    /// A checkpoint is missing a file or a tensor, or does not fit the model.
    #[error("checkpoint {}: {why}", path.display())]
    Checkpoint { path: PathBuf, why: String },
    /// A distributed operation ([`crate::dist`]) failed: joining the
    /// group, a collective, or a tensor it cannot take. `op` names it
    /// (`all_reduce_sum`, `broadcast`, …); `why` is c10d's or gloo's message.
    #[error("distributed {op}: {why}")]
    Dist { op: &'static str, why: String },
    /// A distributed operation did not complete within the group's timeout:
    /// a rank did not join it (or died, or is out of step).
    #[error("distributed {op} timed out (timeout {timeout:?}; a rank did not join it, died or is out of step): {why}")]
    DistTimeout { op: &'static str, timeout: std::time::Duration, why: String },
    /// A collective backend cannot run here: this build has no NCCL (its
    /// headers were not found when lt-glmc was compiled), or no CUDA device
    /// is visible for NCCL. `backend` is its name (`nccl`).
    #[error("the {backend} backend is not available: {why}")]
    DistUnavailable { backend: &'static str, why: String },
    /// A variable of the torchrun environment (RANK, WORLD_SIZE,
    /// MASTER_ADDR, …) is missing or invalid.
    #[error("{var} {why}")]
    DistEnv { var: &'static str, why: String },
}

pub type Result<T, E = GlmcError> = std::result::Result<T, E>;

impl GlmcError {
    pub(crate) fn setting(setting: &'static str, why: impl Into<String>) -> Self {
        GlmcError::Setting { setting, why: why.into() }
    }
}

/// Adds a context string to libtorch errors.
pub trait TorchContext<T> {
    fn ctx(self, context: impl FnOnce() -> String) -> Result<T>;
}

impl<T> TorchContext<T> for std::result::Result<T, tch::TchError> {
    fn ctx(self, context: impl FnOnce() -> String) -> Result<T> {
        self.map_err(|source| GlmcError::TorchContext { context: context(), source })
    }
}
