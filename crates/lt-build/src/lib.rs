//! # lt-build
//!
//! The offline stage of lt-glmc: reads a real dataset in its own published
//! format ([`sources`]), applies a long-tail profile with a seeded per-class
//! selection, shuffles the rows globally and writes Parquet shards plus a
//! `manifest.json` (see `lt-shards`), atomically.
//!
//! ```no_run
//! use lt_build::{build, BuildOptions, NoProgress, sources};
//! let mut src = sources::open("cifar10", Some("data/cifar-10-batches-py".as_ref()), &Default::default())?;
//! let opts = BuildOptions { imbalance: Some(100.0), ..Default::default() };
//! let report = build(src.as_mut(), "c10-lt".as_ref(), &opts, &NoProgress)?;
//! assert_eq!(report.manifest.splits["train"].rows, 12_406);
//! # Ok::<(), lt_build::BuildError>(())
//! ```
//!
//! The exponential profile and the two selection methods (`glmc`, `ldam`)
//! follow the GLMC (arXiv:2305.08661) and LDAM (arXiv:1906.07413) reference
//! code; see `lt_core::profile`.

pub mod build;
pub mod fixtures;
pub mod inspect;
pub mod recipe;
pub mod sources;

pub use build::{build, BuildOptions, BuildReport, ClassOrder, NoProgress, Progress, ProfileKind};

use std::path::PathBuf;

/// Errors of the builder. Each names the file, row or flag at fault, and
/// says its cause once: `Io` formats the I/O error into its message and so
/// does not also expose it as `source()` (an anyhow `{:#}` chain would
/// print it twice).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum BuildError {
    #[error("{path}: {error}")]
    Io { path: PathBuf, error: std::io::Error },
    #[error("{path}: {msg}")]
    Source { path: PathBuf, msg: String },
    #[error("corrupt image in the {split} split: {path}: {msg} (pass --skip-corrupt to skip such images and list them in the manifest)")]
    CorruptImage { split: &'static str, path: String, msg: String },
    #[error(transparent)]
    Profile(#[from] lt_core::CoreError),
    #[error(transparent)]
    Shards(#[from] lt_shards::ShardError),
    #[error("{0}")]
    Usage(String),
}

pub type Result<T, E = BuildError> = std::result::Result<T, E>;
