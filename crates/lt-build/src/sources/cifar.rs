//! CIFAR-10 and CIFAR-100 in both published distributions.
//!
//! - python: `cifar-10-batches-py/{data_batch_1..5, test_batch, batches.meta}`
//!   and `cifar-100-python/{train, test, meta}`, Python 2 cPickle protocol-2
//!   dictionaries (`data`: numpy uint8 (N, 3072) in CHW plane order,
//!   `labels` / `fine_labels`), read by [`super::pickle`].
//! - binary: `cifar-10-batches-bin/{data_batch_1..5.bin, test_batch.bin,
//!   batches.meta.txt}` with records `<label u8><3072 bytes>`, and
//!   `cifar-100-binary/{train.bin, test.bin, fine_label_names.txt}` with
//!   records `<coarse u8><fine u8><3072 bytes>`.
//!
//! The directory may be the distribution folder itself or its parent.

use super::pickle;
use super::{read_file, Item, Payload, Source};
use crate::{BuildError, Result};
use lt_shards::Split;
use lt_vision::codec::Decoded;
use std::path::{Path, PathBuf};

const PIXELS: usize = 3072;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Layout {
    Python,
    Binary,
}

/// Finds the distribution folder for `classes` (10 or 100) at or below `path`.
pub fn locate(path: &Path, classes: usize) -> Result<(PathBuf, Layout)> {
    let candidates: &[(&str, &str, Layout)] = if classes == 10 {
        &[("cifar-10-batches-py", "data_batch_1", Layout::Python), ("cifar-10-batches-bin", "data_batch_1.bin", Layout::Binary)]
    } else {
        &[("cifar-100-python", "train", Layout::Python), ("cifar-100-binary", "train.bin", Layout::Binary)]
    };
    for (sub, marker, layout) in candidates {
        for dir in [path.to_path_buf(), path.join(sub)] {
            let m = dir.join(marker);
            if m.is_file() {
                // "train" alone is too generic: CIFAR-100 python also has "meta".
                if *layout == Layout::Python && classes == 100 && !dir.join("meta").is_file() {
                    continue;
                }
                return Ok((dir, *layout));
            }
        }
    }
    Err(BuildError::Source {
        path: path.into(),
        msg: format!(
            "no CIFAR-{classes} files: expected {} (python) or {} (binary) here or in {}/",
            candidates[0].1, candidates[1].1, candidates[0].0
        ),
    })
}

pub struct Cifar {
    dir: PathBuf,
    classes: usize,
    names: Vec<String>,
    train_labels: Vec<u32>,
    test_labels: Vec<u32>,
    /// CHW planes, 3072 bytes per image.
    train: Vec<u8>,
    test: Vec<u8>,
}

fn bad(path: &Path, msg: impl Into<String>) -> BuildError {
    BuildError::Source { path: path.into(), msg: msg.into() }
}

fn load_pickle_batch(path: &Path, classes: usize) -> Result<(Vec<u8>, Vec<u32>)> {
    let bytes = read_file(path)?;
    let v = pickle::parse(&bytes).map_err(|e| bad(path, e))?;
    let data = v.get("data").ok_or_else(|| bad(path, "pickle has no 'data' entry"))?;
    let arr = pickle::ndarray(data).map_err(|e| bad(path, format!("'data': {e}")))?;
    if !matches!(arr.dtype.trim_start_matches('|'), "u1" | "uint8") {
        return Err(bad(path, format!("'data' has dtype {}, expected uint8", arr.dtype)));
    }
    let n = arr.shape.first().copied().unwrap_or(0);
    if arr.shape.len() != 2 || arr.shape[1] != PIXELS || arr.data.len() != n * PIXELS {
        return Err(bad(path, format!("'data' has shape {:?} ({} bytes), expected (N, 3072)", arr.shape, arr.data.len())));
    }
    let key = if classes == 10 { "labels" } else { "fine_labels" };
    let labels = pickle::int_list(v.get(key).ok_or_else(|| bad(path, format!("pickle has no '{key}' entry")))?)
        .map_err(|e| bad(path, format!("'{key}': {e}")))?;
    if labels.len() != n {
        return Err(bad(path, format!("{} labels for {n} images", labels.len())));
    }
    let labels =
        labels
            .into_iter()
            .enumerate()
            .map(|(i, l)| {
                if l < 0 || l as usize >= classes {
                    Err(bad(path, format!("row {i}: label {l} outside 0..{classes}")))
                } else {
                    Ok(l as u32)
                }
            })
            .collect::<Result<_>>()?;
    Ok((arr.data, labels))
}

fn load_binary_batch(path: &Path, classes: usize) -> Result<(Vec<u8>, Vec<u32>)> {
    let bytes = read_file(path)?;
    let label_bytes = if classes == 10 { 1 } else { 2 };
    let rec = label_bytes + PIXELS;
    if bytes.is_empty() || bytes.len() % rec != 0 {
        return Err(bad(path, format!("{} bytes is not a whole number of {rec}-byte CIFAR-{classes} records", bytes.len())));
    }
    let n = bytes.len() / rec;
    let mut data = Vec::with_capacity(n * PIXELS);
    let mut labels = Vec::with_capacity(n);
    for (i, r) in bytes.chunks_exact(rec).enumerate() {
        let l = r[label_bytes - 1] as usize; // fine label for CIFAR-100
        if l >= classes {
            return Err(bad(path, format!("record {i}: label {l} outside 0..{classes}")));
        }
        labels.push(l as u32);
        data.extend_from_slice(&r[label_bytes..]);
    }
    Ok((data, labels))
}

fn concat(parts: Vec<(Vec<u8>, Vec<u32>)>) -> (Vec<u8>, Vec<u32>) {
    let mut d = Vec::new();
    let mut l = Vec::new();
    for (a, b) in parts {
        d.extend(a);
        l.extend(b);
    }
    (d, l)
}

impl Cifar {
    pub fn open(path: &Path, classes: usize) -> Result<Cifar> {
        let (dir, layout) = locate(path, classes)?;
        let (train_files, test_file): (Vec<String>, String) = match (layout, classes) {
            (Layout::Python, 10) => ((1..=5).map(|i| format!("data_batch_{i}")).collect(), "test_batch".into()),
            (Layout::Binary, 10) => ((1..=5).map(|i| format!("data_batch_{i}.bin")).collect(), "test_batch.bin".into()),
            (Layout::Python, _) => (vec!["train".into()], "test".into()),
            (Layout::Binary, _) => (vec!["train.bin".into()], "test.bin".into()),
        };
        let load = |name: &str| {
            let p = dir.join(name);
            match layout {
                Layout::Python => load_pickle_batch(&p, classes),
                Layout::Binary => load_binary_batch(&p, classes),
            }
        };
        let parts = train_files.iter().map(|f| load(f)).collect::<Result<Vec<_>>>()?;
        let (train, train_labels) = concat(parts);
        let (test, test_labels) = load(&test_file)?;
        let names = Self::names(&dir, layout, classes)?;
        Ok(Cifar { dir, classes, names, train_labels, test_labels, train, test })
    }

    fn names(dir: &Path, layout: Layout, classes: usize) -> Result<Vec<String>> {
        let names = match layout {
            Layout::Python => {
                let (file, key) = if classes == 10 { ("batches.meta", "label_names") } else { ("meta", "fine_label_names") };
                let p = dir.join(file);
                if !p.is_file() {
                    return Ok((0..classes).map(|c| c.to_string()).collect());
                }
                let v = pickle::parse(&read_file(&p)?).map_err(|e| bad(&p, e))?;
                let names = v.get(key).ok_or_else(|| bad(&p, format!("no '{key}' entry")))?;
                pickle::text_list(names).map_err(|e| bad(&p, e))?
            }
            Layout::Binary => {
                let p = dir.join(if classes == 10 { "batches.meta.txt" } else { "fine_label_names.txt" });
                if !p.is_file() {
                    return Ok((0..classes).map(|c| c.to_string()).collect());
                }
                super::read_class_names(&p)?
            }
        };
        if names.len() != classes {
            return Err(bad(dir, format!("{} class names for {classes} classes", names.len())));
        }
        Ok(names)
    }
}

impl Source for Cifar {
    fn kind(&self) -> &'static str {
        if self.classes == 10 {
            "cifar10"
        } else {
            "cifar100"
        }
    }
    fn location(&self) -> String {
        self.dir.display().to_string()
    }
    fn class_names(&self) -> &[String] {
        &self.names
    }
    fn labels(&self, split: Split) -> &[u32] {
        match split {
            Split::Train => &self.train_labels,
            Split::Test => &self.test_labels,
        }
    }
    fn item(&self, split: Split, index: usize) -> Result<Item> {
        let data = if split == Split::Train { &self.train } else { &self.test };
        let chw = &data[index * PIXELS..(index + 1) * PIXELS];
        // CHW planes → interleaved HWC.
        let mut hwc = vec![0u8; PIXELS];
        for p in 0..1024 {
            for c in 0..3 {
                hwc[p * 3 + c] = chw[c * 1024 + p];
            }
        }
        Ok(Item {
            payload: Payload::Raw(Decoded { width: 32, height: 32, channels: 3, pixels: hwc }),
            path: format!("{}:{}:{index}", self.kind(), split.as_str()),
        })
    }
}
