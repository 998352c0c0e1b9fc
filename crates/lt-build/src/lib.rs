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
//! assert_eq!(report.manifest.splits[&lt_shards::Split::Train].rows, 12_406);
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

pub use build::{build, BuildOptions, BuildReport, ClassOrder, NoProgress, ProfileKind, Progress};

use std::path::PathBuf;

/// Errors of the builder. Each names the file, row or setting at fault, and
/// says its cause once: `Io` formats the I/O error into its message and so
/// does not also expose it as `source()` (an anyhow `{:#}` chain would
/// print it twice).
///
/// Settings are named by their config names (the fields of [`BuildOptions`],
/// [`sources::SourceOptions`] and [`sources::synth::SynthOptions`], which are
/// also the recipe's `[build]` keys where it has them); a front end maps them
/// to its flags through [`BuildError::settings`].
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum BuildError {
    #[error("{path}: {error}")]
    Io { path: PathBuf, error: std::io::Error },
    #[error("{path}: {msg}")]
    Source { path: PathBuf, msg: String },
    #[error("corrupt image in the {split} split: {path}: {msg} (set skip_corrupt to skip such images and list them in the manifest)")]
    CorruptImage { split: &'static str, path: String, msg: String },
    #[error(transparent)]
    Profile(#[from] lt_core::CoreError),
    #[error(transparent)]
    Shards(#[from] lt_shards::ShardError),
    /// A setting missing or out of range; `settings` are the config names
    /// the message names, in its order.
    #[error("{msg}")]
    Setting { settings: &'static [&'static str], msg: String },
    #[error("{0}")]
    Usage(String),
}

impl BuildError {
    /// The settings the message names, by config name, in its order (empty
    /// when it names none), including those of a wrapped lt-core or
    /// lt-shards error.
    pub fn settings(&self) -> &'static [&'static str] {
        match self {
            BuildError::CorruptImage { .. } => &["skip_corrupt"],
            BuildError::Profile(e) => e.settings(),
            BuildError::Shards(e) => e.settings(),
            BuildError::Setting { settings, .. } => settings,
            _ => &[],
        }
    }
}

pub type Result<T, E = BuildError> = std::result::Result<T, E>;
