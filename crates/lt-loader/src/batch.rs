//! Batch buffers and the allocator seam.
//!
//! The loader never owns the memory a batch lives in: it asks a
//! [`BatchAllocator`] for [`BatchStorage`] and recycles it through a bounded
//! pool. The default allocates on the heap; the trainer implements the trait
//! with pinned (page-locked) host tensors so a batch is copied to the device
//! with one asynchronous DMA, and gets its tensor back with
//! [`Batch::storage`] + [`BatchStorage::as_any`].

use crate::sampler::SamplerSpec;
use crate::{LoaderError, Result};
use crossbeam_channel::Sender;
use lt_vision::photometric::ViewParams;
use serde::{Deserialize, Serialize};
use std::any::Any;

/// Memory one batch is written into.
///
/// # Contract
/// The address of `as_mut_slice()` must not change while the storage is
/// alive (moving the box is fine; reallocating is not): workers write their
/// slots through a pointer taken once per batch.
pub trait BatchStorage: Send + 'static {
    fn as_slice(&self) -> &[u8];
    fn as_mut_slice(&mut self) -> &mut [u8];
    /// For downcasting to the concrete storage (e.g. a pinned tensor).
    fn as_any(&self) -> &dyn Any;
}

/// Makes batch storage; called at most `pool_size` times per loader.
pub trait BatchAllocator: Send + Sync {
    fn allocate(&self, bytes: usize) -> Result<Box<dyn BatchStorage>>;
}

/// Plain heap memory.
#[derive(Clone, Copy, Debug, Default)]
pub struct HeapAllocator;

struct HeapStorage(Box<[u8]>);

impl BatchStorage for HeapStorage {
    fn as_slice(&self) -> &[u8] {
        &self.0
    }
    fn as_mut_slice(&mut self) -> &mut [u8] {
        &mut self.0
    }
    fn as_any(&self) -> &dyn Any {
        self
    }
}

impl BatchAllocator for HeapAllocator {
    fn allocate(&self, bytes: usize) -> Result<Box<dyn BatchStorage>> {
        let mut v = Vec::new();
        v.try_reserve_exact(bytes).map_err(|e| LoaderError::Alloc { bytes, message: e.to_string() })?;
        v.resize(bytes, 0);
        Ok(Box::new(HeapStorage(v.into_boxed_slice())))
    }
}

/// A loader position: the next batch to deliver is step `step` of epoch
/// `epoch`. Save it with a checkpoint and pass it back to resume.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Position {
    pub epoch: u64,
    pub step: u64,
}

/// One delivered batch: `views` tensors of shape `(slots, C, H, W)`, stored
/// view-major so each view is contiguous, plus per-slot labels and indices.
/// Dropping it returns its buffer to the loader's pool.
pub struct Batch {
    pub position: Position,
    pub labels: Vec<i64>,
    /// Global row index of each slot.
    pub indices: Vec<i64>,
    pub views: usize,
    pub channels: usize,
    pub height: usize,
    pub width: usize,
    /// Slots whose own image was corrupt and was replaced (skip mode).
    pub skipped: usize,
    /// Device-mode photometric records, `[view][slot]` (empty otherwise).
    pub(crate) photometric: Vec<ViewParams>,
    pub sampler: SamplerSpec,
    pub(crate) storage: Option<Box<dyn BatchStorage>>,
    pub(crate) pool: Option<Sender<Box<dyn BatchStorage>>>,
    /// Batches the consumer holds (shared with the loader).
    pub(crate) held: Option<std::sync::Arc<std::sync::atomic::AtomicUsize>>,
}

impl Batch {
    /// Number of samples (paired sampler: B instance + B class-weighted).
    pub fn slots(&self) -> usize {
        self.labels.len()
    }

    /// `[slots, C, H, W]` of one view.
    pub fn shape(&self) -> [usize; 4] {
        [self.slots(), self.channels, self.height, self.width]
    }

    pub fn sample_bytes(&self) -> usize {
        self.channels * self.height * self.width
    }

    /// All views, view-major: `[views, slots, C, H, W]`.
    pub fn data(&self) -> &[u8] {
        let n = self.views * self.slots() * self.sample_bytes();
        &self.storage.as_ref().expect("storage").as_slice()[..n]
    }

    /// View `k` as `(slots, C, H, W)`.
    pub fn view(&self, k: usize) -> &[u8] {
        let n = self.slots() * self.sample_bytes();
        &self.data()[k * n..(k + 1) * n]
    }

    /// The photometric stage each view still needs
    /// (`loader.photometric = "device"`), view-major like [`Batch::data`]:
    /// entry `k · slots + s` belongs to view `k` of slot `s`. Empty when the
    /// workers applied it (`cpu` mode, or a pipeline without one).
    pub fn photometric(&self) -> &[ViewParams] {
        &self.photometric
    }

    /// For a paired sampler: the slot range of the instance half and of the
    /// class-weighted half.
    pub fn halves(&self) -> Option<(std::ops::Range<usize>, std::ops::Range<usize>)> {
        match self.sampler {
            SamplerSpec::Paired { .. } => {
                let b = self.slots() / 2;
                Some((0..b, b..2 * b))
            }
            _ => None,
        }
    }

    /// The underlying storage (downcast with `as_any` to reach e.g. a pinned
    /// tensor). Only the first `data().len()` bytes belong to this batch.
    pub fn storage(&self) -> &dyn BatchStorage {
        self.storage.as_deref().expect("storage")
    }
}

impl Drop for Batch {
    fn drop(&mut self) {
        if let Some(h) = self.held.take() {
            h.fetch_sub(1, std::sync::atomic::Ordering::AcqRel);
        }
        if let (Some(s), Some(p)) = (self.storage.take(), self.pool.take()) {
            // The loader may be gone; then the buffer is simply freed.
            let _ = p.try_send(s);
        }
    }
}

impl std::fmt::Debug for Batch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Batch")
            .field("position", &self.position)
            .field("shape", &self.shape())
            .field("views", &self.views)
            .field("skipped", &self.skipped)
            .finish()
    }
}
