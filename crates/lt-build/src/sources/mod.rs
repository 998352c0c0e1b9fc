//! Dataset sources, each read in its own published format.
//!
//! | kind | reads |
//! |---|---|
//! | `cifar10`, `cifar100` | python-pickle (`data_batch_*`, `test_batch` / `train`, `test`) and binary (`*.bin`) distributions |
//! | `idx` | MNIST-family IDX files, gzipped or raw |
//! | `folder` | ImageNet-style tree, one sub-folder per class (`train/`, `val/`) |
//! | `list` | a root plus `relative/path label` list files (ImageNet-LT, iNaturalist) |
//! | `parquet` | any Parquet dataset in the HF image layout (lt-build's own output included) |
//! | `synth` | a procedural generator for tests and demos |
//! | `photos` | labelled random crops of the JPEG photographs in a folder, for loader benchmarks |

pub mod cifar;
pub mod folder;
pub mod idx;
pub mod list;
pub mod parquet_src;
pub mod photos;
pub mod pickle;
pub mod synth;

use crate::{BuildError, Result};
use lt_shards::Split;
use lt_vision::codec::Decoded;
use std::path::{Path, PathBuf};

/// The pixels of one source image: encoded file bytes or raw pixels.
#[derive(Clone, Debug)]
pub enum Payload {
    /// JPEG, PNG or another encoded file, stored as-is when possible.
    Encoded(Vec<u8>),
    /// Raw pixels (CIFAR, IDX, synth): stored as lossless PNG.
    Raw(Decoded),
}

/// One image of a source split.
#[derive(Clone, Debug)]
pub struct Item {
    pub payload: Payload,
    /// Provenance written into the `image.path` column.
    pub path: String,
}

/// A dataset in its own format.
pub trait Source: Send + Sync {
    /// `cifar10`, `idx`, `folder`, …
    fn kind(&self) -> &'static str;
    /// Where it was read from (for the manifest).
    fn location(&self) -> String;
    fn class_names(&self) -> &[String];
    /// One label per item of `split`; empty when the split is absent.
    fn labels(&self, split: Split) -> &[u32];
    /// Reads one item. Must be safe to call from many threads.
    fn item(&self, split: Split, index: usize) -> Result<Item>;
    /// Called once with the items that will be read, before any `item` call,
    /// so sources that cannot seek cheaply can load just those.
    fn prepare(&mut self, _split: Split, _selected: &[usize]) -> Result<()> {
        Ok(())
    }
    /// Channels stored per image: photographs are RGB, IDX is gray.
    fn channels(&self) -> u8 {
        3
    }
}

/// Source kinds accepted on the command line.
pub const KINDS: &[&str] = &["cifar10", "cifar100", "idx", "folder", "list", "parquet", "synth", "photos"];

/// Options that only some sources read.
#[derive(Clone, Debug, Default)]
pub struct SourceOptions {
    pub class_names_file: Option<PathBuf>,
    pub train_list: Option<PathBuf>,
    pub test_list: Option<PathBuf>,
    pub image_column: Option<String>,
    pub label_column: Option<String>,
    pub synth: synth::SynthOptions,
    pub photos: photos::PhotoOptions,
}

/// Guesses the kind of `path` from the files in it.
pub fn detect(path: &Path) -> Result<&'static str> {
    if !path.exists() {
        return Err(BuildError::Source { path: path.into(), msg: "does not exist".into() });
    }
    if path.is_file() {
        if path.extension().is_some_and(|e| e == "parquet") {
            return Ok("parquet");
        }
        return Err(BuildError::Source {
            path: path.into(),
            msg: "is a file; give the dataset directory, or name the source kind first".into(),
        });
    }
    if cifar::locate(path, 10).is_ok() {
        return Ok("cifar10");
    }
    if cifar::locate(path, 100).is_ok() {
        return Ok("cifar100");
    }
    if idx::locate(path).is_ok() {
        return Ok("idx");
    }
    if path.join("manifest.json").is_file() || parquet_src::find_files(path).map(|f| !f.is_empty()).unwrap_or(false) {
        return Ok("parquet");
    }
    if folder::looks_like_folder(path) {
        return Ok("folder");
    }
    Err(BuildError::Source {
        path: path.into(),
        msg: format!("cannot tell the dataset format; name the source kind first (one of {})", KINDS.join(", ")),
    })
}

/// Opens a source of `kind` at `path`.
pub fn open(kind: &str, path: Option<&Path>, opts: &SourceOptions) -> Result<Box<dyn Source>> {
    let need = || path.ok_or_else(|| BuildError::Usage(format!("source {kind} needs a dataset path")));
    let src: Box<dyn Source> = match kind {
        "cifar10" => Box::new(cifar::Cifar::open(need()?, 10)?),
        "cifar100" => Box::new(cifar::Cifar::open(need()?, 100)?),
        "idx" => Box::new(idx::Idx::open(need()?, opts.class_names_file.as_deref())?),
        "folder" => Box::new(folder::Folder::open(need()?)?),
        "list" => Box::new(list::ListSource::open(need()?, opts)?),
        "parquet" => Box::new(parquet_src::ParquetSource::open(need()?, opts)?),
        "synth" => Box::new(synth::Synth::new(opts.synth.clone())?),
        "photos" => Box::new(photos::Photos::open(&[need()?.to_path_buf()], opts.photos.clone())?),
        other => return Err(BuildError::Usage(format!("unknown source kind {other:?} (expected one of {})", KINDS.join(", ")))),
    };
    Ok(src)
}

/// Reads `path` fully, naming it on error.
pub(crate) fn read_file(path: &Path) -> Result<Vec<u8>> {
    std::fs::read(path).map_err(|e| BuildError::Io { path: path.into(), error: e })
}

/// Class names from a file with one name per line (blank lines ignored).
pub(crate) fn read_class_names(path: &Path) -> Result<Vec<String>> {
    let text = std::fs::read_to_string(path).map_err(|e| BuildError::Io { path: path.into(), error: e })?;
    Ok(text.lines().map(str::trim).filter(|l| !l.is_empty()).map(str::to_string).collect())
}
