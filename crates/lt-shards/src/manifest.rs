//! `manifest.json`: the dataset card of a built directory.

use crate::{Result, ShardError, Split};
use lt_core::groups::{GroupThresholds, Groups};
use lt_core::profile::Clamped;
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
    /// Classes whose profile target was lowered (the build's `clamp` setting).
    #[serde(default)]
    pub clamped: Vec<Clamped>,
    /// Images left out as corrupt (the build's `skip_corrupt` setting):
    /// `{split, path, error}`.
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
        m.validate().map_err(|e| ShardError::Manifest { path, msg: e.to_string() })?;
        Ok(m)
    }

    /// A builder that derives the fields that must agree with each other
    /// (see [`ManifestBuilder`]); `tool_version` names the writer (e.g.
    /// `lt-build 0.1.0`), `class_names` are in label order.
    pub fn builder(tool_version: impl Into<String>, class_names: &[String]) -> ManifestBuilder {
        ManifestBuilder::new(tool_version.into(), class_names.to_vec())
    }

    /// The checks [`Manifest::load`] and [`ManifestBuilder::build`] apply.
    fn validate(&self) -> std::result::Result<(), FieldError> {
        if self.format != FORMAT {
            return Err(FieldError::new("format", format!("{:?}, expected {FORMAT:?}", self.format)));
        }
        for (i, c) in self.classes.iter().enumerate() {
            if c.id != i {
                return Err(FieldError::new(format!("classes[{i}].id"), format!("class {i} has id {}", c.id)));
            }
        }
        for split in Split::ALL {
            let Some(info) = self.splits.get(split.as_str()) else { continue };
            let name = split.as_str();
            let sum: usize = info.shards.iter().map(|s| s.rows).sum();
            if sum != info.rows {
                return Err(FieldError::new(
                    format!("splits.{name}.rows"),
                    format!("{name} split lists {} rows but its shards hold {sum}", info.rows),
                ));
            }
            let want: usize = self.class_counts(split).iter().sum();
            if want != info.rows {
                return Err(FieldError::new(
                    format!("splits.{name}.rows"),
                    format!("{name} split has {} rows but class counts add to {want}", info.rows),
                ));
            }
            for (k, s) in info.shards.iter().enumerate() {
                let field = |f: &str| format!("splits.{name}.shards[{k}].{f}");
                if s.row_groups.iter().sum::<usize>() != s.rows {
                    return Err(FieldError::new(field("row_groups"), format!("{}: row groups do not add up to {} rows", s.file, s.rows)));
                }
                if let Some(r) = s.image_size_range {
                    if r.min_height > r.max_height || r.min_width > r.max_width {
                        return Err(FieldError::new(field("image_size_range"), format!("{}: a minimum above its maximum", s.file)));
                    }
                }
                if s.file.contains("..") || Path::new(&s.file).is_absolute() {
                    return Err(FieldError::new(field("file"), format!("shard path {:?} escapes the dataset directory", s.file)));
                }
            }
        }
        for (field, v) in [("mean", &self.mean), ("std", &self.std)] {
            if v.len() != self.channels as usize {
                let msg = format!("mean/std length differs from channels: {} values for {} channel(s)", v.len(), self.channels);
                return Err(FieldError::new(field, msg));
            }
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

/// A manifest field that disagrees with the rest: its JSON path
/// (`splits.train.rows`, `mean`, …) and why.
#[derive(Debug)]
struct FieldError {
    field: String,
    msg: String,
}

impl FieldError {
    fn new(field: impl Into<String>, msg: impl Into<String>) -> Self {
        FieldError { field: field.into(), msg: msg.into() }
    }
}

impl std::fmt::Display for FieldError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.field, self.msg)
    }
}

impl From<FieldError> for ShardError {
    fn from(e: FieldError) -> Self {
        ShardError::ManifestField { field: e.field, msg: e.msg }
    }
}

/// The one way to write a new [`Manifest`]: the writer gives what only it
/// knows (provenance, channel statistics, each split's class counts and
/// shards) and the builder derives the rest, so every writer fills them the
/// same way:
///
/// - `format`: [`FORMAT`];
/// - `classes`: ids in label order, names, and each class's count in both
///   splits;
/// - `groups`: many/medium/few of the train counts under the thresholds
///   ([`GroupThresholds::default`] unless [`ManifestBuilder::thresholds`]);
/// - `imbalance_factor`: `max / min` of the train counts, `None` when a class
///   has no training image;
/// - `splits.<split>.rows`: the rows of its shards.
///
/// [`ManifestBuilder::build`] refuses inputs that disagree, with a
/// [`ShardError::ManifestField`] naming the field: a split missing or given
/// twice, class counts that do not match the class names or the shards' rows,
/// a shard file outside its split's folder, mean/std not one value in [0, 1]
/// per channel, overlapping group thresholds; then it applies the checks of
/// [`Manifest::load`]. Fields not set keep their defaults: no command line,
/// `null` source and profile, seed 0, selection `glmc`, nothing clamped or
/// skipped.
///
/// ```
/// use lt_shards::{Manifest, Split, SplitWriter, WriterOptions};
/// let dir = tempfile::tempdir()?;
/// let names = vec!["cat".to_string(), "dog".to_string()];
/// let mut splits = Vec::new();
/// for split in Split::ALL {
///     // Both splits empty here; a writer's rows add up to its class counts.
///     let shards = SplitWriter::try_new(dir.path(), split, &names, &[0, 0], WriterOptions::default())?.finish()?;
///     splits.push((split, shards));
/// }
/// let mut b = Manifest::builder("example 1.0", &names).seed(7).channels(3, vec![0.5; 3], vec![0.25; 3]);
/// for (split, shards) in splits {
///     b = b.split(split, &[0, 0], shards);
/// }
/// let m = b.build()?;
/// assert_eq!((m.classes[1].name.as_str(), m.imbalance_factor), ("dog", None));
/// m.save(dir.path())?;
/// assert_eq!(Manifest::load(dir.path())?, m);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Clone, Debug)]
#[must_use = "a builder does nothing until build() is called"]
pub struct ManifestBuilder {
    tool_version: String,
    class_names: Vec<String>,
    command_line: Vec<String>,
    source: serde_json::Value,
    profile: serde_json::Value,
    seed: u64,
    selection: String,
    clamped: Vec<Clamped>,
    skipped: Vec<serde_json::Value>,
    channels: Option<(u8, Vec<f64>, Vec<f64>)>,
    thresholds: GroupThresholds,
    /// Splits in the order given (a repeat is an error at build time).
    splits: Vec<(Split, Vec<usize>, Vec<ShardInfo>)>,
}

impl ManifestBuilder {
    fn new(tool_version: String, class_names: Vec<String>) -> Self {
        ManifestBuilder {
            tool_version,
            class_names,
            command_line: Vec::new(),
            source: serde_json::Value::Null,
            profile: serde_json::Value::Null,
            seed: 0,
            selection: "glmc".into(),
            clamped: Vec::new(),
            skipped: Vec::new(),
            channels: None,
            thresholds: GroupThresholds::default(),
            splits: Vec::new(),
        }
    }

    /// The command line that produced the directory.
    pub fn command_line(mut self, args: Vec<String>) -> Self {
        self.command_line = args;
        self
    }

    /// Source kind and location (free-form JSON, e.g. `{"kind": "cifar10", "location": …}`).
    pub fn source(mut self, source: serde_json::Value) -> Self {
        self.source = source;
        self
    }

    /// The long-tail profile and its parameters (free-form JSON).
    pub fn profile(mut self, profile: serde_json::Value) -> Self {
        self.profile = profile;
        self
    }

    pub fn seed(mut self, seed: u64) -> Self {
        self.seed = seed;
        self
    }

    /// The per-class selection method (`glmc`, `ldam`, …).
    pub fn selection(mut self, selection: impl Into<String>) -> Self {
        self.selection = selection.into();
        self
    }

    /// Classes whose profile target was lowered.
    pub fn clamped(mut self, clamped: Vec<Clamped>) -> Self {
        self.clamped = clamped;
        self
    }

    /// Images left out as corrupt: `{split, path, error}` objects.
    pub fn skipped(mut self, skipped: Vec<serde_json::Value>) -> Self {
        self.skipped = skipped;
        self
    }

    /// Channels stored per image (1 gray, 3 RGB) and the train split's
    /// per-channel mean and std, in [0, 1] units. Required.
    pub fn channels(mut self, channels: u8, mean: Vec<f64>, std: Vec<f64>) -> Self {
        self.channels = Some((channels, mean, std));
        self
    }

    /// Many/medium/few thresholds of `groups`.
    pub fn thresholds(mut self, thresholds: GroupThresholds) -> Self {
        self.thresholds = thresholds;
        self
    }

    /// One split: its per-class counts (label order) and the shards its
    /// [`crate::SplitWriter`] wrote. Both splits are required.
    pub fn split(mut self, split: Split, class_counts: &[usize], shards: Vec<ShardInfo>) -> Self {
        self.splits.push((split, class_counts.to_vec(), shards));
        self
    }

    /// The manifest, or a [`ShardError::ManifestField`] naming the first
    /// field whose input disagrees with the rest.
    pub fn build(self) -> Result<Manifest> {
        let classes = self.class_names.len();
        if classes == 0 {
            return Err(FieldError::new("classes", "no class names").into());
        }
        let Some((channels, mean, std)) = self.channels else {
            return Err(FieldError::new("channels", "not given (ManifestBuilder::channels)").into());
        };
        if channels == 0 {
            return Err(FieldError::new("channels", "must be at least 1").into());
        }
        for (field, v) in [("mean", &mean), ("std", &std)] {
            if v.len() != channels as usize {
                return Err(FieldError::new(field, format!("{} values for {channels} channel(s)", v.len())).into());
            }
            if let Some(k) = v.iter().position(|x| !(0.0..=1.0).contains(x)) {
                return Err(FieldError::new(format!("{field}[{k}]"), format!("{} is not in [0, 1]", v[k])).into());
            }
        }
        self.thresholds.validate().map_err(|msg| FieldError::new("groups.thresholds", msg))?;
        let mut counts: [Vec<usize>; 2] = Default::default();
        let mut splits = BTreeMap::new();
        for split in Split::ALL {
            let name = split.as_str();
            let mut given = self.splits.iter().filter(|(s, ..)| *s == split);
            let Some((_, c, shards)) = given.next() else {
                return Err(FieldError::new(format!("splits.{name}"), "not given (ManifestBuilder::split)").into());
            };
            if given.next().is_some() {
                return Err(FieldError::new(format!("splits.{name}"), "given twice").into());
            }
            if c.len() != classes {
                return Err(FieldError::new(format!("classes[].{name}"), format!("{} class counts for {classes} classes", c.len())).into());
            }
            if let Some(k) = shards.iter().position(|s| !s.file.starts_with(&format!("{name}/"))) {
                let msg = format!("{:?} is not in the {name}/ folder", shards[k].file);
                return Err(FieldError::new(format!("splits.{name}.shards[{k}].file"), msg).into());
            }
            let rows: usize = shards.iter().map(|s| s.rows).sum();
            let want: usize = c.iter().sum();
            if rows != want {
                let msg = format!("the shards hold {rows} rows but the class counts add to {want}");
                return Err(FieldError::new(format!("splits.{name}.rows"), msg).into());
            }
            splits.insert(name.to_string(), SplitInfo { rows, shards: shards.clone() });
            counts[split as usize] = c.clone();
        }
        let [train, test] = counts;
        let imbalance = lt_core::profile::imbalance_factor(&train);
        let m = Manifest {
            format: FORMAT.to_string(),
            tool_version: self.tool_version,
            command_line: self.command_line,
            source: self.source,
            profile: self.profile,
            seed: self.seed,
            selection: self.selection,
            imbalance_factor: imbalance.is_finite().then_some(imbalance),
            clamped: self.clamped,
            skipped: self.skipped,
            channels,
            mean,
            std,
            classes: self
                .class_names
                .into_iter()
                .enumerate()
                .map(|(id, name)| ClassInfo { id, name, train: train[id], test: test[id] })
                .collect(),
            groups: Groups::from_counts(&train, self.thresholds),
            splits,
        };
        m.validate()?;
        Ok(m)
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

#[cfg(test)]
mod tests {
    use super::*;

    fn shard(file: &str, row_groups: &[usize]) -> ShardInfo {
        ShardInfo {
            file: file.into(),
            rows: row_groups.iter().sum(),
            bytes: 1000,
            checksum: "sha256:00".into(),
            row_groups: row_groups.to_vec(),
            image_size_range: Some(ImageSizeRange::of(32, 32)),
        }
    }

    fn names() -> Vec<String> {
        ["a", "b", "c"].map(String::from).to_vec()
    }

    /// Three classes, 150 + 30 + 5 train rows in two shards, 2 test rows per class.
    fn builder() -> ManifestBuilder {
        Manifest::builder("test 1.0", &names())
            .channels(3, vec![0.5, 0.4, 0.3], vec![0.25, 0.2, 0.1])
            .split(Split::Train, &[150, 30, 5], vec![shard("train/part-00000.parquet", &[100, 50]), shard("train/part-00001.parquet", &[35])])
            .split(Split::Test, &[2, 2, 2], vec![shard("test/part-00000.parquet", &[6])])
    }

    fn field_of(b: ManifestBuilder) -> String {
        match b.build() {
            Err(ShardError::ManifestField { field, msg }) => {
                let e = ShardError::ManifestField { field: field.clone(), msg };
                assert!(e.to_string().contains(&field), "{e}");
                field
            }
            other => panic!("expected a manifest field error, got {other:?}"),
        }
    }

    #[test]
    fn builder_derives_classes_groups_imbalance_and_rows() {
        let m = builder().command_line(vec!["x".into()]).seed(9).selection("ldam").build().unwrap();
        assert_eq!(m.format, FORMAT);
        assert_eq!(m.tool_version, "test 1.0");
        assert_eq!((m.seed, m.selection.as_str(), m.command_line.as_slice()), (9, "ldam", &["x".to_string()][..]));
        assert_eq!(m.classes[2], ClassInfo { id: 2, name: "c".into(), train: 5, test: 2 });
        assert_eq!(m.class_counts(Split::Train), [150, 30, 5]);
        assert_eq!((m.splits["train"].rows, m.splits["test"].rows), (185, 6));
        assert_eq!(m.splits["train"].shards.len(), 2);
        assert_eq!(m.imbalance_factor, Some(30.0));
        assert_eq!((m.groups.many.as_slice(), m.groups.medium.as_slice(), m.groups.few.as_slice()), (&[0][..], &[1][..], &[2][..]));
        assert_eq!(m.groups.thresholds, Some(GroupThresholds::default()));
        // Defaults of the fields not set.
        let d = builder().build().unwrap();
        assert_eq!((d.source.clone(), d.profile.clone(), d.seed, d.selection.as_str()), (serde_json::Value::Null, serde_json::Value::Null, 0, "glmc"));
        assert!(d.command_line.is_empty() && d.clamped.is_empty() && d.skipped.is_empty());
        // Other thresholds; a class without training images has no imbalance factor.
        let t = GroupThresholds::try_new(10, 5).unwrap();
        let m = Manifest::builder("t", &names())
            .channels(1, vec![0.5], vec![0.2])
            .thresholds(t)
            .split(Split::Train, &[12, 0, 6], vec![shard("train/part-00000.parquet", &[18])])
            .split(Split::Test, &[0, 0, 0], vec![])
            .build()
            .unwrap();
        assert_eq!(m.imbalance_factor, None);
        assert_eq!((m.groups.many.as_slice(), m.groups.medium.as_slice(), m.groups.few.as_slice()), (&[0][..], &[2][..], &[1][..]));
        assert_eq!(m.groups.thresholds, Some(t));
    }

    #[test]
    fn builder_manifest_round_trips_through_json_and_loads() {
        let m = builder()
            .source(serde_json::json!({"kind": "test"}))
            .profile(serde_json::json!({"kind": "as-is"}))
            .clamped(vec![Clamped { class: 1, wanted: 40, kept: 30 }])
            .skipped(vec![serde_json::json!({"split": "train", "path": "x.png", "error": "truncated"})])
            .build()
            .unwrap();
        let text = serde_json::to_string_pretty(&m).unwrap();
        assert_eq!(serde_json::from_str::<Manifest>(&text).unwrap(), m);
        let dir = tempfile::tempdir().unwrap();
        m.save(dir.path()).unwrap();
        assert_eq!(Manifest::load(dir.path()).unwrap(), m);
    }

    #[test]
    fn builder_refuses_inconsistent_input_naming_the_field() {
        let train = |counts: &[usize], shards: Vec<ShardInfo>| {
            Manifest::builder("t", &names()).channels(1, vec![0.5], vec![0.2]).split(Split::Train, counts, shards)
        };
        let test = |b: ManifestBuilder| b.split(Split::Test, &[0, 0, 0], vec![]);
        let ok = vec![shard("train/part-00000.parquet", &[6])];
        for (b, field) in [
            (Manifest::builder("t", &[]), "classes"),
            (Manifest::builder("t", &names()).split(Split::Train, &[1, 2, 3], ok.clone()), "channels"),
            (test(train(&[1, 2, 3], ok.clone()).channels(3, vec![0.5; 2], vec![0.2; 3])), "mean"),
            (test(train(&[1, 2, 3], ok.clone()).channels(2, vec![0.5; 2], vec![0.2, f64::NAN])), "std[1]"),
            (test(train(&[1, 2, 3], ok.clone()).channels(1, vec![1.5], vec![0.2])), "mean[0]"),
            (test(train(&[1, 2, 3], ok.clone()).thresholds(GroupThresholds { many_above: 5, few_at_most: 9 })), "groups.thresholds"),
            (train(&[1, 2, 3], ok.clone()), "splits.test"),
            (test(test(train(&[1, 2, 3], ok.clone()))), "splits.test"),
            (test(train(&[1, 2, 3], ok.clone()).split(Split::Train, &[1, 2, 3], ok.clone())), "splits.train"),
            (test(train(&[1, 2, 3, 0], ok.clone())), "classes[].train"),
            (test(train(&[1, 2, 4], ok.clone())), "splits.train.rows"),
            (test(train(&[1, 2, 3], vec![shard("test/part-00000.parquet", &[6])])), "splits.train.shards[0].file"),
            (test(train(&[1, 2, 3], vec![shard("train/../../etc/part.parquet", &[6])])), "splits.train.shards[0].file"),
            (test(train(&[1, 2, 3], vec![ShardInfo { rows: 6, ..shard("train/part-00000.parquet", &[2, 2]) }])), "splits.train.shards[0].row_groups"),
        ] {
            assert_eq!(field_of(b), field);
        }
        // A bad size range is caught by the checks load applies.
        let mut s = shard("train/part-00000.parquet", &[6]);
        s.image_size_range = Some(ImageSizeRange { min_height: 9, max_height: 8, min_width: 1, max_width: 1 });
        assert_eq!(field_of(test(train(&[1, 2, 3], vec![s]))), "splits.train.shards[0].image_size_range");
    }
}
