//! List files: a root folder plus `relative/path label` lines, the format of
//! ImageNet-LT (`ImageNet_LT_train.txt`, `ImageNet_LT_test.txt`) and the
//! iNaturalist 2018 lists of the long-tail literature. The last
//! whitespace-separated field is the label, the rest is the path (paths may
//! contain spaces). Class names come from `--class-names` (one per line, in
//! label order) or default to the label numbers.

use super::{read_file, Item, Payload, Source, SourceOptions};
use crate::{BuildError, Result};
use lt_shards::Split;
use std::path::{Path, PathBuf};

pub struct ListSource {
    root: PathBuf,
    names: Vec<String>,
    files: [Vec<String>; 2],
    labels: [Vec<u32>; 2],
}

/// Parses a list file into (relative path, label) pairs.
pub fn parse_list(path: &Path) -> Result<(Vec<String>, Vec<u32>)> {
    let text = std::fs::read_to_string(path).map_err(|e| BuildError::Io { path: path.into(), error: e })?;
    let mut files = Vec::new();
    let mut labels = Vec::new();
    for (n, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let bad = |msg: String| BuildError::Source { path: path.into(), msg: format!("line {}: {msg}", n + 1) };
        let (p, l) = line.rsplit_once(char::is_whitespace).ok_or_else(|| bad(format!("expected 'path label', got {line:?}")))?;
        let label: u32 = l.parse().map_err(|_| bad(format!("label {l:?} is not a non-negative integer")))?;
        files.push(p.trim().to_string());
        labels.push(label);
    }
    if files.is_empty() {
        return Err(BuildError::Source { path: path.into(), msg: "list file has no entries".into() });
    }
    Ok((files, labels))
}

impl ListSource {
    pub fn open(root: &Path, opts: &SourceOptions) -> Result<ListSource> {
        let train_list = opts.train_list.clone().ok_or_else(|| BuildError::Setting {
            settings: &["train_list"],
            msg: "source list needs train_list, the train list file (e.g. ImageNet_LT_train.txt)".into(),
        })?;
        if !root.is_dir() {
            return Err(BuildError::Source { path: root.into(), msg: "image root is not a directory".into() });
        }
        let (tf, tl) = parse_list(&train_list)?;
        let (vf, vl) = match &opts.test_list {
            Some(p) => parse_list(p)?,
            None => (Vec::new(), Vec::new()),
        };
        let classes = tl.iter().chain(&vl).copied().max().unwrap_or(0) as usize + 1;
        let names = match &opts.class_names_file {
            Some(p) => {
                let n = super::read_class_names(p)?;
                if n.len() < classes {
                    return Err(BuildError::Source {
                        path: p.clone(),
                        msg: format!("{} class names but labels go up to {}", n.len(), classes - 1),
                    });
                }
                n
            }
            None => (0..classes).map(|c| c.to_string()).collect(),
        };
        Ok(ListSource { root: root.into(), names, files: [tf, vf], labels: [tl, vl] })
    }
}

impl Source for ListSource {
    fn kind(&self) -> &'static str {
        "list"
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
        let rel = &self.files[split as usize][index];
        Ok(Item { payload: Payload::Encoded(read_file(&self.root.join(rel))?), path: rel.clone() })
    }
}
