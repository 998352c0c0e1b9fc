//! The crate's error type.

use std::path::PathBuf;

/// Errors of reading run records and writing reports.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ReportError {
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
    /// A plot could not be drawn or saved.
    #[error("plot {}: {why}", path.display())]
    Plot { path: PathBuf, why: String },
    /// A file is not what its format says (e.g. a TensorBoard record whose
    /// CRC does not match).
    #[error("{}: {why}", path.display())]
    Corrupt { path: PathBuf, why: String },
    /// A run's files disagree with each other.
    #[error("{}: {why}", path.display())]
    Inconsistent { path: PathBuf, why: String },
}

pub type Result<T, E = ReportError> = std::result::Result<T, E>;
