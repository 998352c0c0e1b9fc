//! The benchmarks' error type.

use std::path::PathBuf;

/// Errors of the benchmark library. Settings are named by their
/// [`crate::glmc`] option names; the binaries add their flags.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum BenchError {
    /// The libtorch core failed.
    #[error(transparent)]
    Glmc(#[from] lt_glmc::GlmcError),
    /// A benchmark setting out of range.
    #[error("invalid {setting}: {why}")]
    Setting { setting: &'static str, why: String },
    /// The shard set could not be opened or read.
    #[error("dataset {}: {source}", path.display())]
    Dataset {
        path: PathBuf,
        #[source]
        source: lt_shards::ShardError,
    },
    /// The loader failed.
    #[error("loader: {0}")]
    Loader(#[from] lt_loader::LoaderError),
    /// The loader stopped before the benchmark's last step.
    #[error("loader: stopped before the last step")]
    LoaderStopped,
}

pub type Result<T, E = BenchError> = std::result::Result<T, E>;

impl From<tch::TchError> for BenchError {
    fn from(e: tch::TchError) -> Self {
        BenchError::Glmc(e.into())
    }
}
