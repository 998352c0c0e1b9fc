//! Reading shards (ours) and image Parquet files (anyone's HF layout).

use crate::manifest::{sha256_file, Manifest};
use crate::{Result, Row, ShardError, Split};
use arrow_array::cast::AsArray;
use arrow_array::{Array, ArrayRef, RecordBatch};
use arrow_schema::DataType;
use parquet::arrow::arrow_reader::{ArrowReaderMetadata, ArrowReaderOptions, ParquetRecordBatchReaderBuilder};
use std::fs::File;
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

/// One split of a built dataset, opened for reading.
///
/// `ShardSet` is `Sync`: loader workers share one and read row groups
/// concurrently; each shard's Parquet footer is parsed once and cached.
pub struct ShardSet {
    dir: PathBuf,
    split: Split,
    manifest: Manifest,
    /// (shard index, row group in shard, first global row, rows) per row group.
    groups: Vec<(usize, usize, usize, usize)>,
    /// First global row of each shard.
    shard_first: Vec<usize>,
    meta: Vec<OnceLock<ArrowReaderMetadata>>,
    len: usize,
}

impl std::fmt::Debug for ShardSet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ShardSet").field("dir", &self.dir).field("split", &self.split).field("len", &self.len).finish()
    }
}

impl ShardSet {
    /// Opens one split of the dataset in `dir` (reads and validates the manifest).
    pub fn open(dir: &Path, split: Split) -> Result<ShardSet> {
        let manifest = Manifest::load(dir)?;
        let info = manifest
            .splits
            .get(&split)
            .cloned()
            .ok_or_else(|| ShardError::Manifest { path: Manifest::path(dir), msg: format!("no {} split", split.as_str()) })?;
        let mut groups = Vec::new();
        let mut shard_first = Vec::with_capacity(info.shards.len());
        let mut row = 0;
        for (s, shard) in info.shards.iter().enumerate() {
            let path = dir.join(&shard.file);
            if !path.is_file() {
                return Err(ShardError::MissingShard { path });
            }
            shard_first.push(row);
            for (g, &n) in shard.row_groups.iter().enumerate() {
                groups.push((s, g, row, n));
                row += n;
            }
        }
        Ok(ShardSet {
            dir: dir.to_path_buf(),
            split,
            meta: (0..info.shards.len()).map(|_| OnceLock::new()).collect(),
            manifest,
            groups,
            shard_first,
            len: row,
        })
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }
    pub fn split(&self) -> Split {
        self.split
    }
    pub fn manifest(&self) -> &Manifest {
        &self.manifest
    }
    pub fn len(&self) -> usize {
        self.len
    }
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    fn shards(&self) -> &[crate::ShardInfo] {
        &self.manifest.splits[&self.split].shards
    }

    /// Path of shard `s`.
    pub fn shard_path(&self, s: usize) -> PathBuf {
        self.dir.join(&self.shards()[s].file)
    }

    /// Checks every shard's size and SHA-256 against the manifest.
    pub fn verify(&self) -> Result<()> {
        for s in self.shards() {
            let path = self.dir.join(&s.file);
            let len = std::fs::metadata(&path).map_err(|e| ShardError::io(&path, e))?.len();
            if len != s.bytes {
                return Err(ShardError::Checksum { path, expected: format!("{} bytes", s.bytes), actual: format!("{len} bytes") });
            }
            let actual = sha256_file(&path)?;
            if actual != s.checksum {
                return Err(ShardError::Checksum { path, expected: s.checksum.clone(), actual });
            }
        }
        Ok(())
    }

    /// Per-class row counts of this split (from the manifest).
    pub fn class_counts(&self) -> Vec<usize> {
        self.manifest.class_counts(self.split)
    }

    /// Total size of the split's shard files.
    pub fn encoded_bytes(&self) -> u64 {
        self.shards().iter().map(|s| s.bytes).sum()
    }

    pub fn row_group_count(&self) -> usize {
        self.groups.len()
    }

    /// Global row indices covered by row group `rg`.
    pub fn row_group_range(&self, rg: usize) -> Range<usize> {
        let (_, _, first, n) = self.groups[rg];
        first..first + n
    }

    /// The row group holding global row `row` (binary search).
    pub fn row_group_of(&self, row: usize) -> usize {
        self.groups.partition_point(|g| g.2 + g.3 <= row)
    }

    fn builder(&self, s: usize) -> Result<ParquetRecordBatchReaderBuilder<File>> {
        let path = self.shard_path(s);
        let file = File::open(&path).map_err(|e| ShardError::io(&path, e))?;
        let meta = match self.meta[s].get() {
            Some(m) => m.clone(),
            None => {
                let m = ArrowReaderMetadata::load(&file, ArrowReaderOptions::new()).map_err(|e| ShardError::parquet(path.clone(), e))?;
                let _ = self.meta[s].set(m.clone());
                m
            }
        };
        Ok(ParquetRecordBatchReaderBuilder::new_with_metadata(file, meta))
    }

    /// Reads one row group (random access).
    pub fn read_row_group(&self, rg: usize) -> Result<Vec<Row>> {
        let (s, g, first, n) = *self
            .groups
            .get(rg)
            .ok_or_else(|| ShardError::format(&self.dir, format!("row group {rg} out of range ({} groups)", self.groups.len())))?;
        let path = self.shard_path(s);
        let reader = self
            .builder(s)?
            .with_row_groups(vec![g])
            .with_batch_size(n.max(1))
            .build()
            .map_err(|e| ShardError::parquet(path.clone(), e))?;
        let mut rows = Vec::with_capacity(n);
        let file_first = first - self.shard_first[s];
        let classes = self.manifest.classes.len();
        for batch in reader {
            let batch = batch.map_err(|e| ShardError::arrow(path.clone(), e))?;
            rows_from_batch(&batch, &path, file_first + rows.len(), Some(classes), &mut rows)?;
        }
        if rows.len() != n {
            return Err(ShardError::format(&path, format!("row group {g} has {} rows, manifest says {n}", rows.len())));
        }
        Ok(rows)
    }

    /// Reads the whole split in global row order.
    pub fn read_all(&self) -> Result<Vec<Row>> {
        let mut out = Vec::with_capacity(self.len);
        for rg in 0..self.groups.len() {
            out.extend(self.read_row_group(rg)?);
        }
        Ok(out)
    }

    /// The label column only, each label checked against the manifest's
    /// class count (see [`ShardSet::check_labels`]).
    pub fn labels(&self) -> Result<Vec<i64>> {
        self.read_labels(self.manifest.classes.len())
    }

    /// Reads the label column of every shard of the split and checks that
    /// each label lies in `0..num_classes`; returns the per-class histogram.
    ///
    /// Call it before training with the model's class count: a label outside
    /// the range fails here with a [`ShardError::Label`] naming the shard
    /// file and the row (counted from 0 within that file) instead of
    /// indexing past a per-class table later. Reads only the label column.
    pub fn check_labels(&self, num_classes: usize) -> Result<Vec<usize>> {
        let labels = self.read_labels(num_classes)?;
        let mut hist = vec![0usize; num_classes];
        for l in labels {
            hist[l as usize] += 1;
        }
        Ok(hist)
    }

    fn read_labels(&self, classes: usize) -> Result<Vec<i64>> {
        let mut out = Vec::with_capacity(self.len);
        for s in 0..self.shards().len() {
            let path = self.shard_path(s);
            let b = self.builder(s)?;
            let mask = parquet::arrow::ProjectionMask::columns(b.parquet_schema(), ["label"]);
            let reader = b.with_projection(mask).build().map_err(|e| ShardError::parquet(path.clone(), e))?;
            let mut row = 0;
            for batch in reader {
                let batch = batch.map_err(|e| ShardError::arrow(path.clone(), e))?;
                let col = batch.column_by_name("label").ok_or_else(|| ShardError::format(&path, "no label column"))?;
                let labels = int_values(col, &path, "label")?;
                check_label_range(&labels, &path, row, classes)?;
                row += labels.len();
                out.extend(labels);
            }
        }
        Ok(out)
    }
}

/// Fails on the first label outside `0..classes`; `first_row` is the file
/// row of `labels[0]`.
fn check_label_range(labels: &[i64], path: &Path, first_row: usize, classes: usize) -> Result<()> {
    match labels.iter().position(|&l| l < 0 || l as u64 >= classes as u64) {
        Some(i) => Err(ShardError::Label { path: path.to_path_buf(), row: first_row + i, label: labels[i], classes }),
        None => Ok(()),
    }
}

fn int_values(col: &ArrayRef, path: &Path, name: &str) -> Result<Vec<i64>> {
    use arrow_array::types::*;
    if col.null_count() > 0 {
        return Err(ShardError::format(path, format!("column {name:?} has null values")));
    }
    Ok(match col.data_type() {
        DataType::Int64 => col.as_primitive::<Int64Type>().values().to_vec(),
        DataType::Int32 => col.as_primitive::<Int32Type>().values().iter().map(|&v| v as i64).collect(),
        DataType::Int16 => col.as_primitive::<Int16Type>().values().iter().map(|&v| v as i64).collect(),
        DataType::Int8 => col.as_primitive::<Int8Type>().values().iter().map(|&v| v as i64).collect(),
        DataType::UInt8 => col.as_primitive::<UInt8Type>().values().iter().map(|&v| v as i64).collect(),
        DataType::UInt16 => col.as_primitive::<UInt16Type>().values().iter().map(|&v| v as i64).collect(),
        DataType::UInt32 => col.as_primitive::<UInt32Type>().values().iter().map(|&v| v as i64).collect(),
        DataType::UInt64 => col.as_primitive::<UInt64Type>().values().iter().map(|&v| v as i64).collect(),
        other => return Err(ShardError::format(path, format!("column {name:?} has type {other}, expected an integer"))),
    })
}

/// Image bytes (and paths) from an image column: the HF struct
/// `{bytes, path}` or a plain binary column.
fn image_values(col: &ArrayRef, path: &Path, name: &str, first_row: usize) -> Result<Vec<(Vec<u8>, Option<String>)>> {
    let bin = |a: &ArrayRef| -> Result<Vec<Option<Vec<u8>>>> {
        Ok(match a.data_type() {
            DataType::Binary => a.as_binary::<i32>().iter().map(|v| v.map(<[u8]>::to_vec)).collect(),
            DataType::LargeBinary => a.as_binary::<i64>().iter().map(|v| v.map(<[u8]>::to_vec)).collect(),
            DataType::BinaryView => a.as_binary_view().iter().map(|v| v.map(<[u8]>::to_vec)).collect(),
            other => return Err(ShardError::format(path, format!("image bytes of column {name:?} have type {other}"))),
        })
    };
    let (bytes, paths): (Vec<Option<Vec<u8>>>, Vec<Option<String>>) = match col.data_type() {
        DataType::Struct(_) => {
            let s = col.as_struct();
            let b =
                s.column_by_name("bytes").ok_or_else(|| ShardError::format(path, format!("image column {name:?} has no 'bytes' field")))?;
            let p: Vec<Option<String>> = match s.column_by_name("path") {
                Some(p) => match p.data_type() {
                    DataType::Utf8 => p.as_string::<i32>().iter().map(|v| v.map(str::to_string)).collect(),
                    DataType::LargeUtf8 => p.as_string::<i64>().iter().map(|v| v.map(str::to_string)).collect(),
                    DataType::Utf8View => p.as_string_view().iter().map(|v| v.map(str::to_string)).collect(),
                    _ => vec![None; s.len()],
                },
                None => vec![None; s.len()],
            };
            (bin(b)?, p)
        }
        _ => (bin(col)?, vec![None; col.len()]),
    };
    bytes
        .into_iter()
        .zip(paths)
        .enumerate()
        .map(|(i, (b, p))| match b {
            Some(b) => Ok((b, p)),
            None => Err(ShardError::format(path, format!("row {}: column {name:?} holds no image bytes", first_row + i))),
        })
        .collect()
}

/// Appends the rows of `batch`; `first_row` is the file row of its first
/// row, and labels are checked against `classes` when given.
fn rows_from_batch(batch: &RecordBatch, path: &Path, first_row: usize, classes: Option<usize>, out: &mut Vec<Row>) -> Result<()> {
    let col = |n: &str| batch.column_by_name(n).ok_or_else(|| ShardError::format(path, format!("no {n:?} column")));
    let images = image_values(col("image")?, path, "image", first_row)?;
    let labels = int_values(col("label")?, path, "label")?;
    if let Some(classes) = classes {
        check_label_range(&labels, path, first_row, classes)?;
    }
    let src = int_values(col("source_index")?, path, "source_index")?;
    let h = int_values(col("height")?, path, "height")?;
    let w = int_values(col("width")?, path, "width")?;
    for (i, (img, p)) in images.into_iter().enumerate() {
        out.push(Row {
            image: img,
            path: p.unwrap_or_default(),
            label: labels[i],
            source_index: src[i],
            height: h[i] as i32,
            width: w[i] as i32,
        });
    }
    Ok(())
}

/// Which columns of a foreign Parquet file hold the image and the label.
#[derive(Clone, Debug)]
pub struct ImageColumns {
    pub image: String,
    pub label: String,
}

impl Default for ImageColumns {
    fn default() -> Self {
        ImageColumns { image: "image".into(), label: "label".into() }
    }
}

/// Contents of an image Parquet file in the HF layout (ours or anyone's).
#[derive(Debug)]
pub struct ImageParquet {
    /// Labels of every row.
    pub labels: Vec<i64>,
    /// Class names from the `huggingface` ClassLabel metadata, when present.
    pub class_names: Option<Vec<String>>,
}

/// A row chosen by [`read_image_parquet`]: (row, image bytes, stored path).
pub type SelectedImage = (usize, Vec<u8>, Option<String>);

/// Reads the label column and the ClassLabel names of a Parquet file, and
/// calls `keep(row)` to decide which rows' images to return.
pub fn read_image_parquet(path: &Path, cols: &ImageColumns, keep: &dyn Fn(usize) -> bool) -> Result<(ImageParquet, Vec<SelectedImage>)> {
    let file = File::open(path).map_err(|e| ShardError::io(path, e))?;
    let b = ParquetRecordBatchReaderBuilder::try_new(file).map_err(|e| ShardError::parquet(path, e))?;
    let schema = b.schema().clone();
    for c in [&cols.image, &cols.label] {
        if schema.field_with_name(c).is_err() {
            let columns = schema.fields().iter().map(|f| f.name().clone()).collect();
            return Err(ShardError::MissingColumn { path: path.into(), column: c.clone(), columns });
        }
    }
    let class_names = schema.metadata().get("huggingface").and_then(|s| {
        let v: serde_json::Value = serde_json::from_str(s).ok()?;
        let names = v.pointer(&format!("/info/features/{}/names", cols.label))?.as_array()?;
        names.iter().map(|n| n.as_str().map(str::to_string)).collect()
    });
    let mask = parquet::arrow::ProjectionMask::columns(b.parquet_schema(), [cols.image.as_str(), cols.label.as_str()]);
    let reader = b.with_projection(mask).build().map_err(|e| ShardError::parquet(path, e))?;
    let mut labels = Vec::new();
    let mut images = Vec::new();
    for batch in reader {
        let batch = batch.map_err(|e| ShardError::arrow(path, e))?;
        let first = labels.len();
        let l = int_values(batch.column_by_name(&cols.label).expect("projected"), path, &cols.label)?;
        let img_col = batch.column_by_name(&cols.image).expect("projected");
        let wanted: Vec<usize> = (0..batch.num_rows()).filter(|&i| keep(first + i)).collect();
        if !wanted.is_empty() {
            let imgs = image_values(img_col, path, &cols.image, first)?;
            let mut imgs: Vec<Option<(Vec<u8>, Option<String>)>> = imgs.into_iter().map(Some).collect();
            for i in wanted {
                let (b, p) = imgs[i].take().expect("each row once");
                images.push((first + i, b, p));
            }
        }
        labels.extend(l);
    }
    Ok((ImageParquet { labels, class_names }, images))
}
