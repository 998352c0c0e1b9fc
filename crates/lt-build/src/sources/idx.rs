//! MNIST-family IDX files (MNIST, Fashion-MNIST, KMNIST…), gzipped or raw.
//!
//! Looks for `train-images-idx3-ubyte[.gz]`, `train-labels-idx1-ubyte[.gz]`,
//! `t10k-images-idx3-ubyte[.gz]` and `t10k-labels-idx1-ubyte[.gz]` (also the
//! `-images.idx3-ubyte` spelling). IDX: big-endian magic `0x0000 08 ND`
//! (type 0x08 = unsigned byte), ND big-endian u32 dimensions, then the data.

use super::{read_file, Item, Payload, Source};
use crate::{BuildError, Result};
use lt_shards::Split;
use lt_vision::codec::Decoded;
use std::io::Read;
use std::path::{Path, PathBuf};

pub const FASHION_MNIST_CLASSES: [&str; 10] =
    ["T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot"];

fn bad(path: &Path, msg: impl Into<String>) -> BuildError {
    BuildError::Source { path: path.into(), msg: msg.into() }
}

fn find(dir: &Path, prefix: &str, what: &str) -> Option<PathBuf> {
    let idx = if what == "images" { "idx3" } else { "idx1" };
    let stems = [format!("{prefix}-{what}-{idx}-ubyte"), format!("{prefix}-{what}.{idx}-ubyte")];
    for stem in &stems {
        for ext in ["", ".gz"] {
            let p = dir.join(format!("{stem}{ext}"));
            if p.is_file() {
                return Some(p);
            }
        }
    }
    None
}

/// The four IDX files under `dir` (train images/labels, test images/labels).
pub fn locate(dir: &Path) -> Result<[PathBuf; 4]> {
    let get = |prefix: &str, what: &str| {
        find(dir, prefix, what)
            .ok_or_else(|| bad(dir, format!("no {prefix}-{what}-{}-ubyte[.gz] file", if what == "images" { "idx3" } else { "idx1" })))
    };
    Ok([get("train", "images")?, get("train", "labels")?, get("t10k", "images")?, get("t10k", "labels")?])
}

/// Reads an IDX file (gunzipping when it starts with the gzip magic) and
/// returns its dimensions and payload.
pub fn read_idx(path: &Path) -> Result<(Vec<usize>, Vec<u8>)> {
    let raw = read_file(path)?;
    let bytes = if raw.starts_with(&[0x1f, 0x8b]) {
        let mut out = Vec::new();
        flate2::read::GzDecoder::new(&raw[..]).read_to_end(&mut out).map_err(|e| bad(path, format!("corrupt gzip stream: {e}")))?;
        out
    } else {
        raw
    };
    if bytes.len() < 4 || bytes[0] != 0 || bytes[1] != 0 {
        return Err(bad(path, "not an IDX file (bad magic)"));
    }
    if bytes[2] != 0x08 {
        return Err(bad(path, format!("IDX element type 0x{:02x} is not unsigned byte (0x08)", bytes[2])));
    }
    let nd = bytes[3] as usize;
    let header = 4 + 4 * nd;
    if bytes.len() < header {
        return Err(bad(path, "truncated IDX header"));
    }
    let dims: Vec<usize> = (0..nd).map(|i| u32::from_be_bytes(bytes[4 + 4 * i..8 + 4 * i].try_into().unwrap()) as usize).collect();
    let want: usize = dims.iter().product();
    if bytes.len() - header != want {
        return Err(bad(path, format!("IDX dimensions {dims:?} need {want} bytes of data, file has {}", bytes.len() - header)));
    }
    Ok((dims, bytes[header..].to_vec()))
}

pub struct Idx {
    dir: PathBuf,
    names: Vec<String>,
    dims: (usize, usize),
    train: Vec<u8>,
    test: Vec<u8>,
    train_labels: Vec<u32>,
    test_labels: Vec<u32>,
}

impl Idx {
    pub fn open(dir: &Path, class_names: Option<&Path>) -> Result<Idx> {
        let [ti, tl, vi, vl] = locate(dir)?;
        let load = |img: &Path, lab: &Path| -> Result<(Vec<usize>, Vec<u8>, Vec<u32>)> {
            let (d, px) = read_idx(img)?;
            if d.len() != 3 {
                return Err(bad(img, format!("expected 3 dimensions (N, H, W), found {d:?}")));
            }
            let (ld, l) = read_idx(lab)?;
            if ld.len() != 1 || ld[0] != d[0] {
                return Err(bad(lab, format!("{} labels for {} images in {}", ld.first().copied().unwrap_or(0), d[0], img.display())));
            }
            Ok((d, px, l.into_iter().map(u32::from).collect()))
        };
        let (d, train, train_labels) = load(&ti, &tl)?;
        let (d2, test, test_labels) = load(&vi, &vl)?;
        if d[1..] != d2[1..] {
            return Err(bad(&vi, format!("test images are {}x{}, train images {}x{}", d2[1], d2[2], d[1], d[2])));
        }
        let classes = train_labels.iter().chain(&test_labels).copied().max().map_or(0, |m| m as usize + 1);
        let names = match class_names {
            Some(p) => {
                let n = super::read_class_names(p)?;
                if n.len() < classes {
                    return Err(bad(p, format!("{} class names but labels go up to {}", n.len(), classes - 1)));
                }
                n
            }
            None if classes == 10 && dir.to_string_lossy().to_lowercase().contains("fashion") => {
                FASHION_MNIST_CLASSES.iter().map(|s| s.to_string()).collect()
            }
            None => (0..classes).map(|c| c.to_string()).collect(),
        };
        Ok(Idx { dir: dir.into(), names, dims: (d[1], d[2]), train, test, train_labels, test_labels })
    }
}

impl Source for Idx {
    fn kind(&self) -> &'static str {
        "idx"
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
    fn channels(&self) -> u8 {
        1
    }
    fn item(&self, split: Split, index: usize) -> Result<Item> {
        let (h, w) = self.dims;
        let data = if split == Split::Train { &self.train } else { &self.test };
        let px = data[index * h * w..(index + 1) * h * w].to_vec();
        Ok(Item {
            payload: Payload::Raw(Decoded { width: w as u32, height: h as u32, channels: 1, pixels: px }),
            path: format!("idx:{}:{index}", split.as_str()),
        })
    }
}
