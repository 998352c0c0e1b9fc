//! # lt-shards
//!
//! The on-disk format shared by lt-build (writer), the loader (reader) and
//! anyone with pyarrow, DuckDB, Spark or Hugging Face `datasets`.
//!
//! A built dataset is a directory:
//!
//! ```text
//! manifest.json              dataset card (see [`Manifest`])
//! train/part-00000.parquet   rows shuffled globally, row groups of a few MiB
//! test/part-00000.parquet
//! ```
//!
//! Each Parquet file has the columns `image: struct<bytes: binary, path:
//! string>` (the HF `Image` layout; uncompressed, no dictionary: encoded
//! images do not compress), `label: int64`, `source_index: int64`,
//! `height: int32`, `width: int32`, and two schema-metadata keys:
//! `huggingface` (the features JSON with `ClassLabel` names, so
//! `datasets.load_dataset("parquet", …)` decodes images and labels) and
//! `lt_glmc` (the split and its class counts).
//!
//! Output directories are written through [`AtomicDir`]: everything goes to
//! a hidden staging directory that is renamed into place after the manifest,
//! so a build that dies never leaves a directory that looks complete.
//!
//! ```no_run
//! use lt_shards::{ShardSet, Split};
//! let train = ShardSet::open("shards/".as_ref(), Split::Train)?;
//! train.verify()?;
//! let rows = train.read_row_group(0)?;
//! println!("{} rows, first label {}", train.len(), rows[0].label);
//! # Ok::<(), lt_shards::ShardError>(())
//! ```

mod atomic;
mod manifest;
mod reader;
mod schema;
mod writer;

pub use atomic::AtomicDir;
pub use manifest::{
    sha256_file, ClassInfo, ImageSizeRange, Manifest, ManifestBuilder, ProfileInfo, ShardInfo, SkippedImage, SourceInfo, SplitInfo, FORMAT,
};
pub use reader::{read_image_parquet, ImageColumns, ImageParquet, SelectedImage, ShardSet};
pub use schema::{hf_features_json, shard_schema, LT_META_KEY};
pub use writer::{SplitWriter, WriterOptions};

use std::path::PathBuf;

/// A train or test split. `split as usize` (0 train, 1 test) indexes
/// per-split arrays; in JSON it is its name, `"train"` or `"test"`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Split {
    Train = 0,
    Test = 1,
}

impl Split {
    pub fn as_str(&self) -> &'static str {
        match self {
            Split::Train => "train",
            Split::Test => "test",
        }
    }
    pub const ALL: [Split; 2] = [Split::Train, Split::Test];
}

impl std::fmt::Display for Split {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One stored image with its label and provenance.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Row {
    /// Encoded image bytes (PNG or JPEG).
    pub image: Vec<u8>,
    /// Where the image came from (file path, or `source:split:index`).
    pub path: String,
    pub label: i64,
    /// Index of the image in the source split (provenance).
    pub source_index: i64,
    pub height: i32,
    pub width: i32,
}

/// Errors of the shard format. Messages name the file (and row or row group
/// where there is one), and a setting by its config name (`overwrite`,
/// `image_column`, `label_column`); front ends map those names to their own
/// flags through [`ShardError::settings`].
///
/// Each variant's message already includes the underlying error's text, so
/// the wrapped I/O, Parquet or Arrow error is kept in a field (`error`) and
/// not exposed as `source()`: an anyhow `{:#}` chain then says each cause
/// once.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ShardError {
    #[error("{path}: {error}")]
    Io { path: PathBuf, error: std::io::Error },
    #[error("{path}: {error}")]
    Parquet { path: PathBuf, error: parquet::errors::ParquetError },
    #[error("{path}: {error}")]
    Arrow { path: PathBuf, error: arrow_schema::ArrowError },
    #[error("{path}: invalid manifest: {msg}")]
    Manifest { path: PathBuf, msg: String },
    /// A manifest being built ([`ManifestBuilder::build`]) disagrees with
    /// itself; `field` is the JSON path of the field at fault
    /// (`splits.train.rows`, `mean`, …).
    #[error("manifest field {field}: {msg}")]
    ManifestField { field: String, msg: String },
    #[error("{path}: shard listed in manifest.json is missing")]
    MissingShard { path: PathBuf },
    #[error("{path}: checksum mismatch: manifest says {expected}, file has {actual}")]
    Checksum { path: PathBuf, expected: String, actual: String },
    #[error("{path}: {msg}")]
    Format { path: PathBuf, msg: String },
    /// A foreign Parquet file ([`read_image_parquet`]) without the image or
    /// label column asked for.
    #[error("{path}: no column {column:?} (columns: {columns:?}); name the image and label columns with image_column/label_column")]
    MissingColumn { path: PathBuf, column: String, columns: Vec<String> },
    /// A label outside `0..classes`; `row` counts from 0 within the file.
    #[error("{path}: row {row}: label {label} is outside 0..{classes} (the dataset has {classes} classes)")]
    Label { path: PathBuf, row: usize, label: i64, classes: usize },
    #[error("output directory {path} already exists and is not empty; set overwrite to replace it")]
    OutputExists { path: PathBuf },
    #[error("output {path} exists and is not a directory; a build is a directory and never replaces a file (remove it or choose another output path)")]
    OutputNotDir { path: PathBuf },
    #[error("output directory {path} is not empty and is not an earlier build (no lt-glmc manifest.json in it); overwrite only replaces an earlier build, so remove it yourself or choose another output path")]
    OutputNotABuild { path: PathBuf },
    /// Creating or replacing the output failed; `what` says which step.
    #[error("output {path}: {what}: {error}")]
    Output { path: PathBuf, what: String, error: std::io::Error },
}

impl ShardError {
    /// The settings the message names, by config name, in its order (empty
    /// when it names none).
    pub fn settings(&self) -> &'static [&'static str] {
        match self {
            ShardError::OutputExists { .. } | ShardError::OutputNotABuild { .. } => &["overwrite"],
            ShardError::MissingColumn { .. } => &["image_column", "label_column"],
            _ => &[],
        }
    }
    pub(crate) fn io(path: impl Into<PathBuf>, error: std::io::Error) -> Self {
        ShardError::Io { path: path.into(), error }
    }
    pub(crate) fn format(path: impl Into<PathBuf>, msg: impl Into<String>) -> Self {
        ShardError::Format { path: path.into(), msg: msg.into() }
    }
    pub(crate) fn parquet(path: impl Into<PathBuf>, error: parquet::errors::ParquetError) -> Self {
        ShardError::Parquet { path: path.into(), error }
    }
    pub(crate) fn arrow(path: impl Into<PathBuf>, error: arrow_schema::ArrowError) -> Self {
        ShardError::Arrow { path: path.into(), error }
    }
}

pub type Result<T, E = ShardError> = std::result::Result<T, E>;
