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
pub use manifest::{sha256_file, ClassInfo, Manifest, ShardInfo, SplitInfo, FORMAT};
pub use reader::{read_image_parquet, ImageColumns, ImageParquet, ShardSet};
pub use schema::{hf_features_json, shard_schema, LT_META_KEY};
pub use writer::{SplitWriter, WriterOptions};

use std::path::PathBuf;

/// A train or test split. `split as usize` (0 train, 1 test) indexes
/// per-split arrays.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
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
/// where there is one).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ShardError {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{path}: {source}")]
    Parquet {
        path: PathBuf,
        #[source]
        source: parquet::errors::ParquetError,
    },
    #[error("{path}: {source}")]
    Arrow {
        path: PathBuf,
        #[source]
        source: arrow_schema::ArrowError,
    },
    #[error("{path}: invalid manifest: {msg}")]
    Manifest { path: PathBuf, msg: String },
    #[error("{path}: checksum mismatch: manifest says {expected}, file has {actual}")]
    Checksum { path: PathBuf, expected: String, actual: String },
    #[error("{path}: {msg}")]
    Format { path: PathBuf, msg: String },
    #[error("output directory {path} already exists and is not empty; pass --overwrite to replace it")]
    OutputExists { path: PathBuf },
}

impl ShardError {
    pub(crate) fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        ShardError::Io { path: path.into(), source }
    }
    pub(crate) fn format(path: impl Into<PathBuf>, msg: impl Into<String>) -> Self {
        ShardError::Format { path: path.into(), msg: msg.into() }
    }
}

pub type Result<T, E = ShardError> = std::result::Result<T, E>;
