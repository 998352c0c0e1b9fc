//! Any Parquet image dataset in the HF layout: lt-build's own output (a
//! directory with `manifest.json`), a Hugging Face download
//! (`data/train-00000-of-00001.parquet`, …) or a folder of `train*/test*`
//! Parquet files. The image column is the HF `Image` struct
//! `{bytes, path}` or plain binary; names come from `--image-column` and
//! `--label-column` (default `image`, `label`). Class names come from the
//! `huggingface` ClassLabel metadata when present.
//!
//! Labels are read first (one cheap column); [`Source::prepare`] then keeps
//! only the selected rows' image bytes in memory, so regenerating a split
//! from an existing build reads the images once.

use super::{Item, Payload, Source, SourceOptions};
use crate::{BuildError, Result};
use lt_shards::{read_image_parquet, ImageColumns, Manifest, Split};
use std::collections::HashMap;
use std::path::{Path, PathBuf};

pub struct ParquetSource {
    root: PathBuf,
    cols: ImageColumns,
    names: Vec<String>,
    files: [Vec<PathBuf>; 2],
    labels: [Vec<u32>; 2],
    /// Selected rows' (bytes, path), by global row index, after `prepare`.
    loaded: [HashMap<usize, Loaded>; 2],
}

/// One loaded row: image bytes and the stored path, if any.
type Loaded = (Vec<u8>, Option<String>);

fn parquet_files(dir: &Path, out: &mut Vec<PathBuf>) -> std::io::Result<()> {
    let mut entries: Vec<PathBuf> = std::fs::read_dir(dir)?.filter_map(|e| e.ok().map(|e| e.path())).collect();
    entries.sort();
    for p in entries {
        if p.is_dir() {
            parquet_files(&p, out)?;
        } else if p.extension().is_some_and(|e| e == "parquet") {
            out.push(p);
        }
    }
    Ok(())
}

/// All Parquet files below `dir`, in byte order.
pub fn find_files(dir: &Path) -> Result<Vec<PathBuf>> {
    let mut v = Vec::new();
    parquet_files(dir, &mut v).map_err(|e| BuildError::Io { path: dir.into(), error: e })?;
    Ok(v)
}

fn split_of(path: &Path, root: &Path) -> Option<Split> {
    let rel = path.strip_prefix(root).unwrap_or(path).to_string_lossy().to_lowercase();
    let parts: Vec<&str> = rel.split(['/', '-', '_', '.']).collect();
    if parts.contains(&"train") {
        Some(Split::Train)
    } else if parts.iter().any(|p| matches!(*p, "test" | "val" | "validation")) {
        Some(Split::Test)
    } else {
        None
    }
}

impl ParquetSource {
    pub fn open(path: &Path, opts: &SourceOptions) -> Result<ParquetSource> {
        let cols = ImageColumns {
            image: opts.image_column.clone().unwrap_or_else(|| "image".into()),
            label: opts.label_column.clone().unwrap_or_else(|| "label".into()),
        };
        let (root, files): (PathBuf, [Vec<PathBuf>; 2]) = if path.is_file() {
            (path.parent().unwrap_or(Path::new(".")).into(), [vec![path.to_path_buf()], vec![]])
        } else if path.join("manifest.json").is_file() {
            let m = Manifest::load(path).map_err(BuildError::Shards)?;
            let get = |s: Split| m.splits.get(&s).map(|i| i.shards.iter().map(|f| path.join(&f.file)).collect()).unwrap_or_default();
            (path.into(), [get(Split::Train), get(Split::Test)])
        } else {
            let all = find_files(path)?;
            let mut train = Vec::new();
            let mut test = Vec::new();
            for f in all {
                match split_of(&f, path) {
                    Some(Split::Train) => train.push(f),
                    Some(Split::Test) => test.push(f),
                    None => {}
                }
            }
            (path.into(), [train, test])
        };
        if files[0].is_empty() {
            return Err(BuildError::Source {
                path: path.into(),
                msg: "no train Parquet files (looked for manifest.json, or files named train*)".into(),
            });
        }
        let mut labels: [Vec<u32>; 2] = Default::default();
        let mut names: Option<Vec<String>> = None;
        for s in 0..2 {
            for f in &files[s] {
                let (info, _) = read_image_parquet(f, &cols, &|_| false).map_err(BuildError::Shards)?;
                for (i, l) in info.labels.iter().enumerate() {
                    if *l < 0 {
                        return Err(BuildError::Source { path: f.clone(), msg: format!("row {i}: negative label {l}") });
                    }
                    labels[s].push(*l as u32);
                }
                if names.is_none() {
                    names = info.class_names;
                }
            }
        }
        let classes = labels.iter().flatten().copied().max().unwrap_or(0) as usize + 1;
        let names = match (&opts.class_names_file, names) {
            (Some(p), _) => super::read_class_names(p)?,
            (None, Some(n)) if n.len() >= classes => n,
            _ => (0..classes).map(|c| c.to_string()).collect(),
        };
        Ok(ParquetSource { root, cols, names, files, labels, loaded: Default::default() })
    }
}

impl Source for ParquetSource {
    fn kind(&self) -> &'static str {
        "parquet"
    }
    fn location(&self) -> String {
        self.root.display().to_string()
    }
    fn class_names(&self) -> &[String] {
        &self.names
    }
    fn labels(&self, split: Split) -> &[u32] {
        &self.labels[split as usize]
    }
    fn prepare(&mut self, split: Split, selected: &[usize]) -> Result<()> {
        let s = split as usize;
        let mut wanted = vec![false; self.labels[s].len()];
        for &i in selected {
            wanted[i] = true;
        }
        let mut offset = 0;
        let mut loaded = HashMap::with_capacity(selected.len());
        for f in &self.files[s] {
            let (info, imgs) =
                read_image_parquet(f, &self.cols, &|i| wanted.get(offset + i).copied().unwrap_or(false)).map_err(BuildError::Shards)?;
            for (i, b, p) in imgs {
                loaded.insert(offset + i, (b, p.or_else(|| Some(format!("{}:{i}", f.display())))));
            }
            offset += info.labels.len();
        }
        self.loaded[s] = loaded;
        Ok(())
    }
    fn item(&self, split: Split, index: usize) -> Result<Item> {
        let (bytes, path) = self.loaded[split as usize]
            .get(&index)
            .ok_or_else(|| BuildError::Source { path: self.root.clone(), msg: format!("row {index} was not prepared") })?;
        Ok(Item { payload: Payload::Encoded(bytes.clone()), path: path.clone().unwrap_or_default() })
    }
}
