//! Writes one split as a sequence of Parquet shards.

use crate::manifest::{sha256_file, ImageSizeRange, ShardInfo};
use crate::schema::{image_fields, shard_schema};
use crate::{Result, Row, ShardError, Split};
use arrow_array::{ArrayRef, BinaryArray, Int32Array, Int64Array, RecordBatch, StringArray, StructArray};
use arrow_schema::SchemaRef;
use parquet::arrow::ArrowWriter;
use parquet::basic::{Compression, ZstdLevel};
use parquet::file::properties::{EnabledStatistics, WriterProperties};
use parquet::schema::types::ColumnPath;
use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// Size policy of shards and row groups.
#[derive(Clone, Debug)]
pub struct WriterOptions {
    /// A new shard starts once the current one holds this many bytes.
    pub shard_bytes: u64,
    /// A row group is closed at this many rows…
    pub row_group_rows: usize,
    /// …or at this many image bytes, whichever comes first (small row groups
    /// keep random access cheap for the loader).
    pub row_group_bytes: usize,
}

impl Default for WriterOptions {
    fn default() -> Self {
        WriterOptions { shard_bytes: 256 << 20, row_group_rows: 1024, row_group_bytes: 8 << 20 }
    }
}

impl WriterOptions {
    pub fn with_shard_bytes(mut self, b: u64) -> Self {
        self.shard_bytes = b.max(1);
        self
    }
    pub fn with_row_group_rows(mut self, r: usize) -> Self {
        self.row_group_rows = r.max(1);
        self
    }
    pub fn with_row_group_bytes(mut self, b: usize) -> Self {
        self.row_group_bytes = b.max(1);
        self
    }
}

fn properties() -> WriterProperties {
    let bytes = ColumnPath::from(vec!["image".to_string(), "bytes".to_string()]);
    let path = ColumnPath::from(vec!["image".to_string(), "path".to_string()]);
    WriterProperties::builder()
        .set_created_by(format!("lt-glmc {}", env!("CARGO_PKG_VERSION")))
        .set_compression(Compression::ZSTD(ZstdLevel::try_new(3).expect("valid level")))
        // Encoded images do not compress and must not be dictionary-encoded.
        .set_column_compression(bytes.clone(), Compression::UNCOMPRESSED)
        .set_column_dictionary_enabled(bytes.clone(), false)
        .set_column_statistics_enabled(bytes, EnabledStatistics::None)
        .set_column_dictionary_enabled(path, false)
        // Row groups are cut by hand (bytes or rows), never by the writer.
        .set_max_row_group_row_count(None)
        .set_max_row_group_bytes(None)
        .build()
}

/// Streams rows of one split into `DIR/<split>/part-NNNNN.parquet`.
pub struct SplitWriter {
    root: PathBuf,
    split: Split,
    schema: SchemaRef,
    opts: WriterOptions,
    current: Option<(ArrowWriter<File>, PathBuf, String)>,
    current_groups: Vec<usize>,
    current_bytes: u64,
    current_range: Option<ImageSizeRange>,
    pending: Vec<Row>,
    pending_bytes: usize,
    shards: Vec<ShardInfo>,
}

impl SplitWriter {
    /// `root` is the (staging) dataset directory; `class_counts` are this
    /// split's per-class counts, stored in the schema metadata.
    pub fn try_new(root: &Path, split: Split, class_names: &[String], class_counts: &[usize], opts: WriterOptions) -> Result<SplitWriter> {
        let dir = root.join(split.as_str());
        std::fs::create_dir_all(&dir).map_err(|e| ShardError::io(&dir, e))?;
        Ok(SplitWriter {
            root: root.to_path_buf(),
            split,
            schema: shard_schema(class_names, split.as_str(), class_counts),
            opts,
            current: None,
            current_groups: Vec::new(),
            current_bytes: 0,
            current_range: None,
            pending: Vec::new(),
            pending_bytes: 0,
            shards: Vec::new(),
        })
    }

    /// Appends rows in order.
    pub fn write_rows(&mut self, rows: impl IntoIterator<Item = Row>) -> Result<()> {
        for row in rows {
            self.pending_bytes += row.image.len();
            self.pending.push(row);
            if self.pending.len() >= self.opts.row_group_rows || self.pending_bytes >= self.opts.row_group_bytes {
                self.flush_group()?;
            }
        }
        Ok(())
    }

    fn batch(&self, rows: &[Row]) -> std::result::Result<RecordBatch, arrow_schema::ArrowError> {
        let bytes = BinaryArray::from_iter_values(rows.iter().map(|r| r.image.as_slice()));
        let paths = StringArray::from_iter_values(rows.iter().map(|r| r.path.as_str()));
        let image = StructArray::try_new(image_fields(), vec![Arc::new(bytes) as ArrayRef, Arc::new(paths) as ArrayRef], None)?;
        RecordBatch::try_new(
            self.schema.clone(),
            vec![
                Arc::new(image),
                Arc::new(Int64Array::from_iter_values(rows.iter().map(|r| r.label))),
                Arc::new(Int64Array::from_iter_values(rows.iter().map(|r| r.source_index))),
                Arc::new(Int32Array::from_iter_values(rows.iter().map(|r| r.height))),
                Arc::new(Int32Array::from_iter_values(rows.iter().map(|r| r.width))),
            ],
        )
    }

    fn flush_group(&mut self) -> Result<()> {
        if self.pending.is_empty() {
            return Ok(());
        }
        if self.current.is_none() {
            let rel = format!("{}/part-{:05}.parquet", self.split.as_str(), self.shards.len());
            let path = self.root.join(&rel);
            let file = File::create(&path).map_err(|e| ShardError::io(&path, e))?;
            let w =
                ArrowWriter::try_new(file, self.schema.clone(), Some(properties())).map_err(|e| ShardError::parquet(path.clone(), e))?;
            self.current = Some((w, path, rel));
        }
        let rows = std::mem::take(&mut self.pending);
        let batch = self.batch(&rows).map_err(|e| {
            let path = self.current.as_ref().map(|c| c.1.clone()).unwrap_or_default();
            ShardError::arrow(path, e)
        })?;
        for r in &rows {
            // Negative sizes cannot come from a decoder; record them as 0.
            let one = ImageSizeRange::of(u32::try_from(r.height).unwrap_or(0), u32::try_from(r.width).unwrap_or(0));
            self.current_range = Some(self.current_range.map_or(one, |c| c.union(one)));
        }
        let (w, path, _) = self.current.as_mut().expect("open shard");
        w.write(&batch).map_err(|e| ShardError::parquet(path.clone(), e))?;
        w.flush().map_err(|e| ShardError::parquet(path.clone(), e))?;
        self.current_groups.push(rows.len());
        self.current_bytes += self.pending_bytes as u64;
        self.pending_bytes = 0;
        if self.current_bytes >= self.opts.shard_bytes {
            self.close_shard()?;
        }
        Ok(())
    }

    fn close_shard(&mut self) -> Result<()> {
        let Some((w, path, rel)) = self.current.take() else { return Ok(()) };
        let file = w.into_inner().map_err(|e| ShardError::parquet(path.clone(), e))?;
        file.sync_all().map_err(|e| ShardError::io(&path, e))?;
        drop(file);
        let bytes = std::fs::metadata(&path).map_err(|e| ShardError::io(&path, e))?.len();
        let groups = std::mem::take(&mut self.current_groups);
        self.shards.push(ShardInfo {
            file: rel,
            rows: groups.iter().sum(),
            bytes,
            checksum: sha256_file(&path)?,
            row_groups: groups,
            image_size_range: self.current_range.take(),
        });
        self.current_bytes = 0;
        Ok(())
    }

    /// Closes the last shard and returns the split's shard list. An empty
    /// split still gets one (empty) shard so readers see the schema.
    pub fn finish(mut self) -> Result<Vec<ShardInfo>> {
        self.flush_group()?;
        if self.shards.is_empty() && self.current.is_none() {
            let rel = format!("{}/part-00000.parquet", self.split.as_str());
            let path = self.root.join(&rel);
            let file = File::create(&path).map_err(|e| ShardError::io(&path, e))?;
            let w =
                ArrowWriter::try_new(file, self.schema.clone(), Some(properties())).map_err(|e| ShardError::parquet(path.clone(), e))?;
            self.current = Some((w, path, rel));
        }
        self.close_shard()?;
        Ok(self.shards)
    }
}
