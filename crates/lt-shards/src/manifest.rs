//! `manifest.json`: the dataset card of a built directory.

use crate::{Result, ShardError, Split};
use lt_core::groups::{GroupThresholds, Groups};
use lt_core::profile::{Clamped, Profile, Selection};
use serde::{Deserialize, Deserializer, Serialize, Serializer};
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

/// Where the images of a build came from (`source` in `manifest.json`).
///
/// Unknown keys are ignored on load: `lt-loader-bench make-shards` wrote
/// `paths` here before it built through lt-build.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SourceInfo {
    /// The source kind: `cifar10`, `idx`, `folder`, `photos`, `synth`, …
    pub kind: String,
    /// Where it was read from: a path, or the settings of a generated
    /// source. Empty where the writer recorded none.
    #[serde(default)]
    pub location: String,
}

impl SourceInfo {
    pub fn new(kind: impl Into<String>, location: impl Into<String>) -> Self {
        SourceInfo { kind: kind.into(), location: location.into() }
    }
}

/// The long-tail profile of a build and what it resolved to (`profile` in
/// `manifest.json`). Fields are in the order they are written.
///
/// A manifest that holds only a profile spec (`{"kind": "exponential",
/// "imbalance": 10.0}`, as `lt-loader-bench make-shards` wrote before it
/// built through lt-build) loads with that spec, no `n_max` or class order
/// and no targets.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct ProfileInfo {
    /// Class ids from head to tail when the class order was shuffled;
    /// `None` when class 0 is the head.
    pub class_order: Option<Vec<usize>>,
    /// The head-class count asked for; `None` when it was the largest class.
    pub n_max: Option<usize>,
    /// The profile and its parameters.
    #[serde(serialize_with = "keys_sorted")]
    pub spec: Profile,
    /// Train images kept per class, in class-id order, after clamping.
    pub targets: Vec<usize>,
}

impl ProfileInfo {
    /// The profile `spec` as one line of JSON, e.g. `{"imbalance":100.0,"kind":"exponential"}`.
    pub fn spec_json(&self) -> String {
        serde_json::to_value(&self.spec).expect("a profile serialises").to_string()
    }
}

/// Serialises through a JSON value, so the keys come out sorted (as earlier
/// versions wrote them) and not tag first.
fn keys_sorted<S: Serializer>(p: &Profile, s: S) -> std::result::Result<S::Ok, S::Error> {
    serde_json::to_value(p).map_err(serde::ser::Error::custom)?.serialize(s)
}

impl<'de> Deserialize<'de> for ProfileInfo {
    fn deserialize<D: Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(deny_unknown_fields)]
        struct Full {
            class_order: Option<Vec<usize>>,
            n_max: Option<usize>,
            spec: Profile,
            targets: Vec<usize>,
        }
        let v = serde_json::Value::deserialize(d)?;
        if v.get("spec").is_some() {
            let f = Full::deserialize(v).map_err(serde::de::Error::custom)?;
            Ok(ProfileInfo { class_order: f.class_order, n_max: f.n_max, spec: f.spec, targets: f.targets })
        } else {
            let spec = Profile::deserialize(v).map_err(serde::de::Error::custom)?;
            Ok(ProfileInfo { class_order: None, n_max: None, spec, targets: Vec::new() })
        }
    }
}

/// An image left out as corrupt (the build's `skip_corrupt` setting).
/// Fields are in the order they are written.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SkippedImage {
    /// Why it was refused (the decoder's message).
    pub error: String,
    /// Its provenance, as the `image.path` column would have held it.
    pub path: String,
    /// Its index in the source split.
    pub source_index: usize,
    pub split: Split,
}

/// `selection`: the method's name, or `null` (`None`) where no per-class
/// selection is recorded; `crops`, which `lt-loader-bench make-shards`
/// wrote before it built through lt-build, loads as `None`.
fn selection_or_legacy<'de, D: Deserializer<'de>>(d: D) -> std::result::Result<Option<Selection>, D::Error> {
    match Option::<String>::deserialize(d)?.as_deref() {
        None | Some("crops") => Ok(None),
        Some(s) => s.parse().map(Some).map_err(serde::de::Error::custom),
    }
}

/// `splits` keyed by split name, in name order (`test`, then `train`), as
/// earlier versions wrote them.
fn serialize_splits<S: Serializer>(splits: &BTreeMap<Split, SplitInfo>, s: S) -> std::result::Result<S::Ok, S::Error> {
    s.collect_map(in_name_order(splits).map(|(k, v)| (k.as_str(), v)))
}

/// The splits of `splits` in name order.
fn in_name_order(splits: &BTreeMap<Split, SplitInfo>) -> impl Iterator<Item = (Split, &SplitInfo)> {
    [Split::Test, Split::Train].into_iter().filter_map(|s| splits.get(&s).map(|i| (s, i)))
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
    /// Source kind (`cifar10`, `idx`, `folder`, …) and its location;
    /// `None` (`null`) where the writer gave none.
    pub source: Option<SourceInfo>,
    /// The long-tail profile and what it resolved to; `None` (`null`) where
    /// the writer gave none.
    pub profile: Option<ProfileInfo>,
    pub seed: u64,
    /// The per-class selection method; `None` (`null`) where none is
    /// recorded.
    #[serde(deserialize_with = "selection_or_legacy")]
    pub selection: Option<Selection>,
    /// Observed imbalance factor of the train split (n_max / n_min);
    /// `null` when a class has no training image.
    pub imbalance_factor: Option<f64>,
    /// Classes whose profile target was lowered (the build's `clamp` setting).
    #[serde(default)]
    pub clamped: Vec<Clamped>,
    /// Images left out as corrupt (the build's `skip_corrupt` setting).
    #[serde(default)]
    pub skipped: Vec<SkippedImage>,
    /// Channels stored per image (1 gray, 3 RGB).
    pub channels: u8,
    /// Per-channel mean and std of the train split, in [0, 1] units.
    pub mean: Vec<f64>,
    pub std: Vec<f64>,
    pub classes: Vec<ClassInfo>,
    pub groups: Groups,
    /// Written keyed by split name (`"test"`, `"train"`).
    #[serde(serialize_with = "serialize_splits")]
    pub splits: BTreeMap<Split, SplitInfo>,
}

impl Manifest {
    pub fn path(dir: &Path) -> PathBuf {
        dir.join("manifest.json")
    }

    /// Reads and validates `DIR/manifest.json`.
    pub fn load(dir: &Path) -> Result<Manifest> {
        let path = Self::path(dir);
        let text = std::fs::read_to_string(&path).map_err(|e| ShardError::io(&path, e))?;
        let m: Manifest = serde_json::from_str(&text).map_err(|e| ShardError::Manifest { path: path.clone(), msg: e.to_string() })?;
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
            let Some(info) = self.splits.get(&split) else { continue };
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
        self.classes.iter().map(|c| if split == Split::Train { c.train } else { c.test }).collect()
    }

    /// Range of the stored image sizes of `split`: the union of its shards'
    /// [`ShardInfo::image_size_range`]. `None` when the split is absent or
    /// empty, or when a non-empty shard does not record its range (a
    /// manifest written before the field existed).
    pub fn image_size_range(&self, split: Split) -> Option<ImageSizeRange> {
        let info = self.splits.get(&split)?;
        let mut out: Option<ImageSizeRange> = None;
        for s in info.shards.iter().filter(|s| s.rows > 0) {
            let r = s.image_size_range?;
            out = Some(out.map_or(r, |o| o.union(r)));
        }
        out
    }

    /// The splits in name order (`test`, then `train`), the order of
    /// `manifest.json` and of the string-keyed map of earlier versions:
    /// iterate this where the order must not change across versions (a
    /// hash of the shards). `splits` itself iterates train first.
    pub fn splits_by_name(&self) -> impl Iterator<Item = (Split, &SplitInfo)> {
        in_name_order(&self.splits)
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
    source: Option<SourceInfo>,
    profile: Option<ProfileInfo>,
    seed: u64,
    selection: Option<Selection>,
    clamped: Vec<Clamped>,
    skipped: Vec<SkippedImage>,
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
            source: None,
            profile: None,
            seed: 0,
            selection: Some(Selection::Glmc),
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

    /// Source kind and location.
    pub fn source(mut self, source: SourceInfo) -> Self {
        self.source = Some(source);
        self
    }

    /// The long-tail profile and what it resolved to.
    pub fn profile(mut self, profile: ProfileInfo) -> Self {
        self.profile = Some(profile);
        self
    }

    pub fn seed(mut self, seed: u64) -> Self {
        self.seed = seed;
        self
    }

    /// The per-class selection method.
    pub fn selection(mut self, selection: Selection) -> Self {
        self.selection = Some(selection);
        self
    }

    /// Classes whose profile target was lowered.
    pub fn clamped(mut self, clamped: Vec<Clamped>) -> Self {
        self.clamped = clamped;
        self
    }

    /// Images left out as corrupt.
    pub fn skipped(mut self, skipped: Vec<SkippedImage>) -> Self {
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
            splits.insert(split, SplitInfo { rows, shards: shards.clone() });
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
            .split(
                Split::Train,
                &[150, 30, 5],
                vec![shard("train/part-00000.parquet", &[100, 50]), shard("train/part-00001.parquet", &[35])],
            )
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
        let m = builder().command_line(vec!["x".into()]).seed(9).selection(Selection::Ldam).build().unwrap();
        assert_eq!(m.format, FORMAT);
        assert_eq!(m.tool_version, "test 1.0");
        assert_eq!((m.seed, m.selection, m.command_line.as_slice()), (9, Some(Selection::Ldam), &["x".to_string()][..]));
        assert_eq!(m.classes[2], ClassInfo { id: 2, name: "c".into(), train: 5, test: 2 });
        assert_eq!(m.class_counts(Split::Train), [150, 30, 5]);
        assert_eq!((m.splits[&Split::Train].rows, m.splits[&Split::Test].rows), (185, 6));
        assert_eq!(m.splits[&Split::Train].shards.len(), 2);
        assert_eq!(m.imbalance_factor, Some(30.0));
        assert_eq!((m.groups.many.as_slice(), m.groups.medium.as_slice(), m.groups.few.as_slice()), (&[0][..], &[1][..], &[2][..]));
        assert_eq!(m.groups.thresholds, Some(GroupThresholds::default()));
        // Defaults of the fields not set.
        let d = builder().build().unwrap();
        assert_eq!((d.source.clone(), d.profile.clone(), d.seed, d.selection), (None, None, 0, Some(Selection::Glmc)));
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
            .source(SourceInfo::new("test", ""))
            .profile(ProfileInfo { class_order: None, n_max: None, spec: Profile::AsIs, targets: vec![150, 30, 5] })
            .clamped(vec![Clamped { class: 1, wanted: 40, kept: 30 }])
            .skipped(vec![SkippedImage { split: Split::Train, source_index: 3, path: "x.png".into(), error: "truncated".into() }])
            .build()
            .unwrap();
        let text = serde_json::to_string_pretty(&m).unwrap();
        assert_eq!(serde_json::from_str::<Manifest>(&text).unwrap(), m);
        let dir = tempfile::tempdir().unwrap();
        m.save(dir.path()).unwrap();
        assert_eq!(Manifest::load(dir.path()).unwrap(), m);
    }

    /// The typed `source`, `profile`, `skipped`, `selection` and `splits`
    /// write the JSON earlier versions wrote (keys in name order), and read
    /// what `lt-loader-bench make-shards` wrote before it built through lt-build.
    #[test]
    fn typed_fields_keep_the_json_of_earlier_versions() {
        let m = builder()
            .source(SourceInfo::new("folder", "/data/imgs"))
            .profile(ProfileInfo {
                class_order: Some(vec![2, 0, 1]),
                n_max: Some(150),
                spec: Profile::Step { imbalance: 30.0, mu: 0.5 },
                targets: vec![150, 30, 5],
            })
            .skipped(vec![SkippedImage { split: Split::Train, source_index: 3, path: "a/3.png".into(), error: "truncated".into() }])
            .build()
            .unwrap();
        let v = serde_json::to_value(&m).unwrap();
        assert_eq!(v["source"], serde_json::json!({"kind": "folder", "location": "/data/imgs"}));
        let want = serde_json::json!({"class_order": [2, 0, 1], "n_max": 150, "spec": {"imbalance": 30.0, "kind": "step", "mu": 0.5}, "targets": [150, 30, 5]});
        assert_eq!(v["profile"], want);
        assert_eq!(v["skipped"], serde_json::json!([{"error": "truncated", "path": "a/3.png", "source_index": 3, "split": "train"}]));
        assert_eq!(v["selection"], "glmc");
        let text = serde_json::to_string_pretty(&m).unwrap();
        // Keys in name order, as serde_json::Value wrote them.
        let at = |k: &str| text.find(k).unwrap();
        assert!(at("\"class_order\"") < at("\"n_max\"") && at("\"n_max\"") < at("\"spec\"") && at("\"spec\"") < at("\"targets\""));
        assert!(at("\"imbalance\": 30.0") < at("\"kind\": \"step\""));
        assert!(at("\"test\": {") < at("\"train\": {"));
        assert_eq!(m.splits_by_name().map(|(s, _)| s).collect::<Vec<_>>(), [Split::Test, Split::Train]);

        // make-shards' manifests: a bare profile spec, `paths`, selection `crops`.
        let mut old = v.clone();
        old["source"] = serde_json::json!({"kind": "photos (lt-loader-bench make-shards)", "paths": ["/usr/share/backgrounds"]});
        old["profile"] = serde_json::json!({"kind": "exponential", "imbalance": 10.0});
        old["selection"] = serde_json::json!("crops");
        let o: Manifest = serde_json::from_value(old).unwrap();
        assert_eq!(o.source, Some(SourceInfo::new("photos (lt-loader-bench make-shards)", "")));
        let p = o.profile.unwrap();
        assert_eq!((p.spec, p.n_max, p.class_order, p.targets.len()), (Profile::Exponential { imbalance: 10.0 }, None, None, 0));
        assert_eq!(o.selection, None);
        // Null source and profile (the builder's defaults) load as None.
        let mut null = v.clone();
        null["source"] = serde_json::Value::Null;
        null["profile"] = serde_json::Value::Null;
        let n: Manifest = serde_json::from_value(null).unwrap();
        assert_eq!((n.source, n.profile), (None, None));
        // An unknown selection or split is an error.
        let mut bad = v.clone();
        bad["selection"] = serde_json::json!("random");
        assert!(serde_json::from_value::<Manifest>(bad).unwrap_err().to_string().contains("random"));
        let mut bad = v;
        bad["splits"]["val"] = bad["splits"]["test"].clone();
        assert!(serde_json::from_value::<Manifest>(bad).is_err());
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
            (
                test(train(&[1, 2, 3], vec![ShardInfo { rows: 6, ..shard("train/part-00000.parquet", &[2, 2]) }])),
                "splits.train.shards[0].row_groups",
            ),
        ] {
            assert_eq!(field_of(b), field);
        }
        // A bad size range is caught by the checks load applies.
        let mut s = shard("train/part-00000.parquet", &[6]);
        s.image_size_range = Some(ImageSizeRange { min_height: 9, max_height: 8, min_width: 1, max_width: 1 });
        assert_eq!(field_of(test(train(&[1, 2, 3], vec![s]))), "splits.train.shards[0].image_size_range");
    }
}
