//! `manifest.json`: the dataset card of a built directory.

use crate::{Result, ShardError, Split};
use lt_core::groups::Groups;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::collections::BTreeMap;
use std::io::Read;
use std::path::{Path, PathBuf};

/// Format tag written into manifests and shard metadata.
pub const FORMAT: &str = "lt-glmc-shards/1";

/// One class: id, name and its image count in each split.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClassInfo {
    pub id: usize,
    pub name: String,
    pub train: usize,
    pub test: usize,
}

/// One Parquet file of a split.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ShardInfo {
    /// Path relative to the dataset directory, e.g. `train/part-00000.parquet`.
    pub file: String,
    pub rows: usize,
    pub bytes: u64,
    /// `sha256:<hex>` of the whole file.
    pub checksum: String,
    /// Rows in each row group, in file order.
    pub row_groups: Vec<usize>,
    /// Smallest and largest stored image of this file (`height`/`width`
    /// columns). Absent for an empty file and in manifests written before
    /// the field existed; see [`Manifest::image_size_range`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image_size_range: Option<ImageSizeRange>,
}

/// The range of stored image sizes, in pixels: `min_height..=max_height`
/// by `min_width..=max_width`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ImageSizeRange {
    pub min_height: u32,
    pub max_height: u32,
    pub min_width: u32,
    pub max_width: u32,
}

impl ImageSizeRange {
    /// The range holding one `height` × `width` image.
    pub fn of(height: u32, width: u32) -> Self {
        ImageSizeRange { min_height: height, max_height: height, min_width: width, max_width: width }
    }

    /// The smallest range holding both.
    pub fn union(self, o: ImageSizeRange) -> Self {
        ImageSizeRange {
            min_height: self.min_height.min(o.min_height),
            max_height: self.max_height.max(o.max_height),
            min_width: self.min_width.min(o.min_width),
            max_width: self.max_width.max(o.max_width),
        }
    }

    /// True when every image is exactly `height` × `width`.
    pub fn is_uniform(&self) -> bool {
        self.min_height == self.max_height && self.min_width == self.max_width
    }
}

/// The shards of one split.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SplitInfo {
    pub rows: usize,
    pub shards: Vec<ShardInfo>,
}

/// The dataset card. Everything needed to reproduce or audit the build.
///
/// **Image sizes.** Each shard records the range of its stored image sizes
/// (`splits.<split>.shards[i].image_size_range`: `min_height`, `max_height`,
/// `min_width`, `max_width`, in pixels, from the `height`/`width` columns);
/// [`Manifest::image_size_range`] merges them into the range of a split, so
/// a trainer can check that a pipeline's crop fits the data before it
/// starts. The field is optional (`#[serde(default)]`): manifests written
/// before it existed still load, and report the range as unknown (`None`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Manifest {
    pub format: String,
    pub tool_version: String,
    /// The full command line that produced the directory.
    pub command_line: Vec<String>,
    /// Source kind (`cifar10`, `idx`, `folder`, …) and its path.
    pub source: serde_json::Value,
    /// The long-tail profile and its parameters.
    pub profile: serde_json::Value,
    pub seed: u64,
    pub selection: String,
    /// Observed imbalance factor of the train split (n_max / n_min);
    /// `null` when a class has no training image.
    pub imbalance_factor: Option<f64>,
    /// Classes whose profile target was lowered by `--clamp`.
    #[serde(default)]
    pub clamped: Vec<lt_core::profile::Clamped>,
    /// Images left out by `--skip-corrupt`: `{split, path, error}`.
    #[serde(default)]
    pub skipped: Vec<serde_json::Value>,
    /// Channels stored per image (1 gray, 3 RGB).
    pub channels: u8,
    /// Per-channel mean and std of the train split, in [0, 1] units.
    pub mean: Vec<f64>,
    pub std: Vec<f64>,
    pub classes: Vec<ClassInfo>,
    pub groups: Groups,
    pub splits: BTreeMap<String, SplitInfo>,
}

impl Manifest {
    pub fn path(dir: &Path) -> PathBuf {
        dir.join("manifest.json")
    }

    /// Reads and validates `DIR/manifest.json`.
    pub fn load(dir: &Path) -> Result<Manifest> {
        let path = Self::path(dir);
        let text = std::fs::read_to_string(&path).map_err(|e| ShardError::io(&path, e))?;
        let m: Manifest = serde_json::from_str(&text)
            .map_err(|e| ShardError::Manifest { path: path.clone(), msg: e.to_string() })?;
        m.validate().map_err(|msg| ShardError::Manifest { path, msg })?;
        Ok(m)
    }

    fn validate(&self) -> std::result::Result<(), String> {
        if self.format != FORMAT {
            return Err(format!("format {:?}, expected {FORMAT:?}", self.format));
        }
        for (i, c) in self.classes.iter().enumerate() {
            if c.id != i {
                return Err(format!("class {i} has id {}", c.id));
            }
        }
        for split in Split::ALL {
            let Some(info) = self.splits.get(split.as_str()) else { continue };
            let sum: usize = info.shards.iter().map(|s| s.rows).sum();
            if sum != info.rows {
                return Err(format!("{} split lists {} rows but its shards hold {sum}", split.as_str(), info.rows));
            }
            let want: usize = self
                .classes
                .iter()
                .map(|c| if split == Split::Train { c.train } else { c.test })
                .sum();
            if want != info.rows {
                return Err(format!("{} split has {} rows but class counts add to {want}", split.as_str(), info.rows));
            }
            for s in &info.shards {
                if s.row_groups.iter().sum::<usize>() != s.rows {
                    return Err(format!("{}: row groups do not add up to {} rows", s.file, s.rows));
                }
                if let Some(r) = s.image_size_range {
                    if r.min_height > r.max_height || r.min_width > r.max_width {
                        return Err(format!("{}: image_size_range has a minimum above its maximum", s.file));
                    }
                }
                if s.file.contains("..") || Path::new(&s.file).is_absolute() {
                    return Err(format!("shard path {:?} escapes the dataset directory", s.file));
                }
            }
        }
        if self.mean.len() != self.channels as usize || self.std.len() != self.channels as usize {
            return Err("mean/std length differs from channels".into());
        }
        Ok(())
    }

    /// Per-class counts of a split.
    pub fn class_counts(&self, split: Split) -> Vec<usize> {
        self.classes
            .iter()
            .map(|c| if split == Split::Train { c.train } else { c.test })
            .collect()
    }

    /// Range of the stored image sizes of `split`: the union of its shards'
    /// [`ShardInfo::image_size_range`]. `None` when the split is absent or
    /// empty, or when a non-empty shard does not record its range (a
    /// manifest written before the field existed).
    pub fn image_size_range(&self, split: Split) -> Option<ImageSizeRange> {
        let info = self.splits.get(split.as_str())?;
        let mut out: Option<ImageSizeRange> = None;
        for s in info.shards.iter().filter(|s| s.rows > 0) {
            let r = s.image_size_range?;
            out = Some(out.map_or(r, |o| o.union(r)));
        }
        out
    }

    pub fn class_names(&self) -> Vec<String> {
        self.classes.iter().map(|c| c.name.clone()).collect()
    }

    /// Writes the manifest (pretty JSON) into `dir` via a temporary file.
    pub fn save(&self, dir: &Path) -> Result<()> {
        let path = Self::path(dir);
        let tmp = dir.join(".manifest.json.tmp");
        let text = serde_json::to_string_pretty(self).expect("manifest serialises");
        std::fs::write(&tmp, text + "\n").map_err(|e| ShardError::io(&tmp, e))?;
        std::fs::rename(&tmp, &path).map_err(|e| ShardError::io(&path, e))
    }
}

/// `sha256:<hex>` of a file.
pub fn sha256_file(path: &Path) -> Result<String> {
    let mut f = std::fs::File::open(path).map_err(|e| ShardError::io(path, e))?;
    let mut h = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = f.read(&mut buf).map_err(|e| ShardError::io(path, e))?;
        if n == 0 {
            break;
        }
        h.update(&buf[..n]);
    }
    Ok(format!("sha256:{}", hex::encode(h.finalize())))
}
