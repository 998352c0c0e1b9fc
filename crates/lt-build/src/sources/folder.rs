//! ImageNet-style folders: `ROOT/train/<class>/<image>` and
//! `ROOT/val/<class>/<image>` (or `test/`). When `ROOT` has no `train/`,
//! `ROOT` itself is the train split and there is no test split. Classes are
//! the train split's sub-folders in byte order (torchvision's ImageFolder
//! order); image files are taken by extension, in byte order.

use super::{read_file, Item, Payload, Source};
use crate::{BuildError, Result};
use lt_shards::Split;
use std::collections::HashMap;
use std::path::{Path, PathBuf};

pub const IMAGE_EXTENSIONS: &[&str] = &["jpg", "jpeg", "png", "bmp", "ppm", "pgm", "webp", "gif", "tif", "tiff"];

fn is_image(p: &Path) -> bool {
    p.extension().and_then(|e| e.to_str()).is_some_and(|e| IMAGE_EXTENSIONS.contains(&e.to_ascii_lowercase().as_str()))
}

fn sorted_entries(dir: &Path) -> Result<Vec<PathBuf>> {
    let rd = std::fs::read_dir(dir).map_err(|e| BuildError::Io { path: dir.into(), error: e })?;
    let mut v = Vec::new();
    for e in rd {
        let e = e.map_err(|e| BuildError::Io { path: dir.into(), error: e })?;
        v.push(e.path());
    }
    v.sort();
    Ok(v)
}

/// True when `dir` (or `dir/train`) holds class sub-folders.
pub fn looks_like_folder(dir: &Path) -> bool {
    let base = if dir.join("train").is_dir() { dir.join("train") } else { dir.to_path_buf() };
    sorted_entries(&base).map(|v| v.iter().any(|p| p.is_dir())).unwrap_or(false)
}

pub struct Folder {
    root: PathBuf,
    names: Vec<String>,
    files: [Vec<PathBuf>; 2],
    labels: [Vec<u32>; 2],
}

fn scan_split(dir: &Path, classes: &HashMap<String, u32>, strict: bool) -> Result<(Vec<PathBuf>, Vec<u32>)> {
    let mut files = Vec::new();
    let mut labels = Vec::new();
    for class_dir in sorted_entries(dir)?.into_iter().filter(|p| p.is_dir()) {
        let name = class_dir.file_name().unwrap().to_string_lossy().into_owned();
        let Some(&label) = classes.get(&name) else {
            if strict {
                continue;
            }
            return Err(BuildError::Source { path: class_dir, msg: format!("class folder {name:?} does not exist in the train split") });
        };
        for f in walk(&class_dir)? {
            files.push(f);
            labels.push(label);
        }
    }
    Ok((files, labels))
}

/// Image files below `dir`, recursively, in byte order.
fn walk(dir: &Path) -> Result<Vec<PathBuf>> {
    let mut out = Vec::new();
    for p in sorted_entries(dir)? {
        if p.is_dir() {
            out.extend(walk(&p)?);
        } else if is_image(&p) {
            out.push(p);
        }
    }
    Ok(out)
}

impl Folder {
    pub fn open(root: &Path) -> Result<Folder> {
        let (train_dir, test_dir) = if root.join("train").is_dir() {
            let test = ["val", "test"].iter().map(|d| root.join(d)).find(|p| p.is_dir());
            (root.join("train"), test)
        } else {
            (root.to_path_buf(), None)
        };
        let names: Vec<String> = sorted_entries(&train_dir)?
            .into_iter()
            .filter(|p| p.is_dir())
            .map(|p| p.file_name().unwrap().to_string_lossy().into_owned())
            .collect();
        if names.is_empty() {
            return Err(BuildError::Source { path: train_dir, msg: "no class sub-folders".into() });
        }
        let index: HashMap<String, u32> = names.iter().enumerate().map(|(i, n)| (n.clone(), i as u32)).collect();
        let (train_files, train_labels) = scan_split(&train_dir, &index, true)?;
        if train_files.is_empty() {
            return Err(BuildError::Source { path: train_dir, msg: "class folders hold no image files".into() });
        }
        // A class folder without images would be a class with no training
        // image: an undefined imbalance factor and a class the model can
        // never learn. Name it rather than build it.
        let counts = lt_core::profile::histogram(train_labels.iter().copied(), names.len());
        if let Some(c) = counts.iter().position(|&n| n == 0) {
            let empty: Vec<&str> = counts.iter().zip(&names).filter(|(&n, _)| n == 0).map(|(_, s)| s.as_str()).collect();
            return Err(BuildError::Source {
                path: train_dir.join(&names[c]),
                msg: format!(
                    "class folder holds no image files ({} of {} class folders are empty: {}); image files are recognised by extension ({})",
                    empty.len(),
                    names.len(),
                    empty.iter().take(5).copied().collect::<Vec<_>>().join(", ") + if empty.len() > 5 { ", …" } else { "" },
                    IMAGE_EXTENSIONS.join(", ")
                ),
            });
        }
        let (test_files, test_labels) = match &test_dir {
            Some(d) => scan_split(d, &index, false)?,
            None => (Vec::new(), Vec::new()),
        };
        Ok(Folder { root: root.into(), names, files: [train_files, test_files], labels: [train_labels, test_labels] })
    }
}

impl Source for Folder {
    fn kind(&self) -> &'static str {
        "folder"
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
    fn item(&self, split: Split, index: usize) -> Result<Item> {
        let p = &self.files[split as usize][index];
        let rel = p.strip_prefix(&self.root).unwrap_or(p);
        Ok(Item { payload: Payload::Encoded(read_file(p)?), path: rel.to_string_lossy().into_owned() })
    }
}
