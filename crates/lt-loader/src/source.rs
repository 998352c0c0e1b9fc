//! Where encoded images come from.
//!
//! [`EncodedSource`] is the seam between the loader and storage: the loader
//! only needs a length, the labels and the encoded bytes of row `i`. It lets
//! the same pipeline read from memory ([`MemorySource`]), from shards
//! (`ShardSource`, resident or on demand) or from a test double that injects
//! corrupt rows and failing reads.

use crate::Result;
use std::ops::{Deref, Range};
use std::sync::Arc;

/// Encoded bytes of one row: a range of a shared blob, so resident data is
/// handed to workers without copying.
#[derive(Clone, Debug)]
pub struct Encoded {
    blob: Arc<Vec<u8>>,
    range: Range<usize>,
}

impl Encoded {
    pub fn new(blob: Arc<Vec<u8>>, range: Range<usize>) -> Self {
        assert!(range.end <= blob.len());
        Encoded { blob, range }
    }

    pub fn from_vec(v: Vec<u8>) -> Self {
        let n = v.len();
        Encoded { blob: Arc::new(v), range: 0..n }
    }
}

impl Deref for Encoded {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        &self.blob[self.range.clone()]
    }
}

/// Random access to encoded images and their labels.
pub trait EncodedSource: Send + Sync {
    /// Number of rows.
    fn len(&self) -> usize;
    fn is_empty(&self) -> bool {
        self.len() == 0
    }
    /// Labels of every row, in row order (cheap; samplers need them).
    fn labels(&self) -> &[i64];
    /// The encoded bytes of row `i`.
    fn fetch(&self, i: usize) -> Result<Encoded>;
    /// Where row `i` lives, for error messages (e.g. `train/part-00003.parquet row 17`).
    fn locate(&self, i: usize) -> String {
        format!("row {i}")
    }
    /// Bytes this source keeps in memory (for the memory report).
    fn resident_bytes(&self) -> u64 {
        0
    }
}

/// Packs encoded rows into one contiguous blob plus offsets.
#[derive(Default)]
pub(crate) struct Packed {
    pub blob: Vec<u8>,
    pub offsets: Vec<usize>,
}

impl Packed {
    pub fn with_capacity(bytes: usize, rows: usize) -> Self {
        let mut offsets = Vec::with_capacity(rows + 1);
        offsets.push(0);
        Packed { blob: Vec::with_capacity(bytes), offsets }
    }
    pub fn push(&mut self, bytes: &[u8]) {
        if self.offsets.is_empty() {
            self.offsets.push(0);
        }
        self.blob.extend_from_slice(bytes);
        self.offsets.push(self.blob.len());
    }
    pub fn freeze(self) -> (Arc<Vec<u8>>, Vec<usize>) {
        let offsets = if self.offsets.is_empty() { vec![0] } else { self.offsets };
        // Arc<Vec> rather than Arc<[u8]>: converting would copy the whole
        // resident dataset once and double the peak memory.
        (Arc::new(self.blob), offsets)
    }
}

/// Rows held in memory (tests, small datasets, or already-loaded data).
pub struct MemorySource {
    blob: Arc<Vec<u8>>,
    offsets: Vec<usize>,
    labels: Vec<i64>,
    names: Option<Vec<String>>,
}

impl MemorySource {
    /// From `(encoded bytes, label)` pairs.
    pub fn new(rows: Vec<(Vec<u8>, i64)>) -> Self {
        let total = rows.iter().map(|r| r.0.len()).sum();
        let mut p = Packed::with_capacity(total, rows.len());
        let mut labels = Vec::with_capacity(rows.len());
        for (b, l) in rows {
            p.push(&b);
            labels.push(l);
        }
        let (blob, offsets) = p.freeze();
        MemorySource { blob, offsets, labels, names: None }
    }

    /// Names each row for error messages (e.g. the original file path).
    pub fn with_names(mut self, names: Vec<String>) -> Self {
        assert_eq!(names.len(), self.labels.len());
        self.names = Some(names);
        self
    }
}

impl EncodedSource for MemorySource {
    fn len(&self) -> usize {
        self.labels.len()
    }
    fn labels(&self) -> &[i64] {
        &self.labels
    }
    fn fetch(&self, i: usize) -> Result<Encoded> {
        Ok(Encoded::new(self.blob.clone(), self.offsets[i]..self.offsets[i + 1]))
    }
    fn locate(&self, i: usize) -> String {
        match &self.names {
            Some(n) => format!("{} (row {i})", n[i]),
            None => format!("row {i}"),
        }
    }
    fn resident_bytes(&self) -> u64 {
        self.blob.len() as u64
    }
}

/// How a [`ShardSource`] holds the data.
#[derive(Clone, Debug)]
pub struct ShardSourceOptions {
    /// Keep every encoded byte in memory when the split's shards total at
    /// most this many bytes; otherwise fetch row groups on demand.
    pub memory_budget: u64,
    /// Bytes of row groups kept in the on-demand cache (LRU).
    pub cache_bytes: u64,
    /// Check every shard's SHA-256 against the manifest before reading.
    pub verify: bool,
}

impl Default for ShardSourceOptions {
    fn default() -> Self {
        ShardSourceOptions { memory_budget: 8 << 30, cache_bytes: 256 << 20, verify: true }
    }
}

impl ShardSourceOptions {
    pub fn with_memory_budget(mut self, b: u64) -> Self {
        self.memory_budget = b;
        self
    }
    pub fn with_cache_bytes(mut self, b: u64) -> Self {
        self.cache_bytes = b;
        self
    }
    pub fn with_verify(mut self, v: bool) -> Self {
        self.verify = v;
        self
    }
}

type Group = (Arc<Vec<u8>>, Arc<Vec<usize>>);

#[derive(Default)]
struct GroupCache {
    map: std::collections::HashMap<usize, Group>,
    order: std::collections::VecDeque<usize>,
    bytes: u64,
}

enum Mode {
    Resident { blob: Arc<Vec<u8>>, offsets: Vec<usize> },
    OnDemand { cache: std::sync::Mutex<GroupCache>, budget: u64 },
}

/// One split of a shard directory (lt-build's output).
pub struct ShardSource {
    set: lt_shards::ShardSet,
    labels: Vec<i64>,
    /// (first global row, shard file) per shard, for error messages.
    shard_starts: Vec<(usize, String)>,
    mode: Mode,
}

fn load_group(set: &lt_shards::ShardSet, rg: usize) -> Result<Group> {
    let rows = set.read_row_group(rg)?;
    let mut p = Packed::with_capacity(rows.iter().map(|r| r.image.len()).sum(), rows.len());
    for r in &rows {
        p.push(&r.image);
    }
    let (blob, offsets) = p.freeze();
    Ok((blob, Arc::new(offsets)))
}

impl ShardSource {
    /// Opens `dir`'s `split`, validating the manifest (and checksums when
    /// `opts.verify`), and loads it resident when it fits the budget.
    pub fn open(dir: &std::path::Path, split: lt_shards::Split, opts: &ShardSourceOptions) -> Result<ShardSource> {
        let set = lt_shards::ShardSet::open(dir, split)?;
        if opts.verify {
            set.verify()?;
        }
        let labels = set.labels()?;
        if labels.len() != set.len() {
            let msg = format!("label column has {} rows, manifest says {}", labels.len(), set.len());
            return Err(lt_shards::ShardError::Format { path: dir.to_path_buf(), msg }.into());
        }
        let mut shard_starts = Vec::new();
        let mut row = 0;
        for s in &set.manifest().splits[&split].shards {
            shard_starts.push((row, s.file.clone()));
            row += s.rows;
        }
        let mode = if set.encoded_bytes() <= opts.memory_budget {
            // Row group by row group into one blob: peak memory is the blob
            // plus one row group, not twice the dataset.
            let mut p = Packed::with_capacity(set.encoded_bytes() as usize, set.len());
            for rg in 0..set.row_group_count() {
                for r in set.read_row_group(rg)? {
                    p.push(&r.image);
                }
            }
            let (blob, offsets) = p.freeze();
            Mode::Resident { blob, offsets }
        } else {
            Mode::OnDemand { cache: Default::default(), budget: opts.cache_bytes }
        };
        Ok(ShardSource { set, labels, shard_starts, mode })
    }

    pub fn shard_set(&self) -> &lt_shards::ShardSet {
        &self.set
    }

    pub fn is_resident(&self) -> bool {
        matches!(self.mode, Mode::Resident { .. })
    }
}

impl EncodedSource for ShardSource {
    fn len(&self) -> usize {
        self.labels.len()
    }
    fn labels(&self) -> &[i64] {
        &self.labels
    }
    fn fetch(&self, i: usize) -> Result<Encoded> {
        if i >= self.labels.len() {
            return Err(crate::LoaderError::Read {
                location: self.locate(i),
                message: format!("row out of range ({} rows)", self.labels.len()),
            });
        }
        match &self.mode {
            Mode::Resident { blob, offsets } => Ok(Encoded::new(blob.clone(), offsets[i]..offsets[i + 1])),
            Mode::OnDemand { cache, budget } => {
                let rg = self.set.row_group_of(i);
                let first = self.set.row_group_range(rg).start;
                let hit = cache.lock().unwrap_or_else(|p| p.into_inner()).map.get(&rg).cloned();
                let (blob, offsets) = match hit {
                    Some(g) => g,
                    None => {
                        // Read outside the lock so workers overlap their I/O.
                        let g = load_group(&self.set, rg)
                            .map_err(|e| crate::LoaderError::Read { location: self.locate(i), message: e.to_string() })?;
                        let mut c = cache.lock().unwrap_or_else(|p| p.into_inner());
                        if c.map.insert(rg, g.clone()).is_none() {
                            c.order.push_back(rg);
                            c.bytes += g.0.len() as u64;
                        }
                        while c.bytes > *budget && c.order.len() > 1 {
                            let old = c.order.pop_front().expect("non-empty");
                            if let Some(o) = c.map.remove(&old) {
                                c.bytes -= o.0.len() as u64;
                            }
                        }
                        g
                    }
                };
                let k = i - first;
                Ok(Encoded::new(blob, offsets[k]..offsets[k + 1]))
            }
        }
    }
    fn locate(&self, i: usize) -> String {
        let s = self.shard_starts.partition_point(|(start, _)| *start <= i).saturating_sub(1);
        match self.shard_starts.get(s) {
            Some((start, file)) => format!("{}/{file} row {} (global row {i})", self.set.dir().display(), i - start),
            None => format!("row {i}"),
        }
    }
    fn resident_bytes(&self) -> u64 {
        match &self.mode {
            Mode::Resident { blob, .. } => blob.len() as u64,
            Mode::OnDemand { cache, .. } => cache.lock().unwrap_or_else(|p| p.into_inner()).bytes,
        }
    }
}
