//! The staged pipeline.
//!
//! One dispatcher thread turns `(epoch, step)` into slot indices, takes a
//! buffer from the pool (allocating up to `pool_size` of them, then waiting
//! for the consumer to drop a batch — this is what bounds memory) and sends
//! one job per slot down a bounded channel. Workers read the encoded bytes,
//! decode once, write `views` augmented views straight into their slot of
//! the batch buffer and fill its label and index; the worker finishing the
//! last slot passes the batch to the consumer, which reorders by step.
//!
//! Reading happens on the workers rather than in a separate thread: for
//! resident data it is a reference-count bump, and for on-demand row groups
//! it lets several reads overlap instead of serialising them behind one
//! reader.
//!
//! Shutdown: every blocking wait selects on a `shutdown` channel that the
//! [`Loader`] disconnects when dropped, so no thread can outlive it.

use crate::batch::{Batch, BatchAllocator, BatchStorage, HeapAllocator, Position};
use crate::sampler::{EpochPlan, Sampler, SamplerSpec, Shard, STREAM_AUGMENT, STREAM_AUGMENT_DRAFT};
use crate::source::EncodedSource;
use crate::{LoaderError, Result};
use crossbeam_channel::{bounded, select, Receiver, Sender};
use lt_core::rng::Rng;
use lt_vision::augment::{rrc_params, Augmenter, Pipeline};
use lt_vision::codec::{self, Decoded};
use lt_vision::photometric::{Photometric, ViewParams, MAX_PHOTO_OPS};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Instant;

/// What to do with an image that does not decode.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum OnCorrupt {
    /// Stop with an error naming the shard file and row.
    #[default]
    Error,
    /// Replace it by the next decodable row (`i + 1`, `i + 2`, … mod len),
    /// count it in [`Batch::skipped`] and [`StageStats::skipped`].
    Skip,
}

/// Loader options (`Default` + `with_*`).
#[derive(Clone)]
pub struct LoaderConfig {
    pub batch_size: usize,
    /// Views per sample (2 for GLMC).
    pub views: usize,
    /// Decode + augment threads; 0 = one per core.
    pub workers: usize,
    /// Batch buffers in circulation (in flight + held by the consumer).
    pub pool_size: usize,
    pub seed: u64,
    pub sampler: SamplerSpec,
    /// Drop the last partial batch; default: true except for `Sequential`.
    pub drop_last: Option<bool>,
    pub on_corrupt: OnCorrupt,
    /// Output channels; default 3 for imagenet/randaugment, else row 0's.
    pub channels: Option<u8>,
    /// Output (width, height) for source-sized pipelines; default row 0's.
    pub image_size: Option<(u32, u32)>,
    /// Stop after this epoch (exclusive); `None` runs until dropped.
    pub epochs: Option<u64>,
    /// Where to start (resume).
    pub start: Position,
    pub allocator: Arc<dyn BatchAllocator>,
    /// Data-parallel training: this rank's part of every step of the
    /// global `batch_size` ([`Shard`]). Images are augmented as one process
    /// would (keyed by their slot in the whole step), so the ranks' batches
    /// together are the single-process batch.
    pub shard: Shard,
    /// Where the pipeline's photometric stage runs: on the workers (`Cpu`,
    /// the default), or recorded per view in [`Batch::photometric`] for the
    /// consumer to apply on its device (`Device`; a no-op for pipelines
    /// without a photometric stage, `cifar` and `eval`).
    pub photometric: Photometric,
    /// Decode JPEGs at reduced DCT scale where the crops allow
    /// ([`draft_denom`]): the random-resized-crop pipelines (`imagenet`,
    /// `randaugment`, `imagenet-randncls`) draw each view's crop from the
    /// size in the JPEG header before decoding, with one generator per view
    /// (`STREAM_AUGMENT_DRAFT`), and libjpeg-turbo decodes at the smallest
    /// scale (1/8, 1/4, 1/2) at which every view's crop still covers at
    /// least the output size. Different bytes from the default path (which
    /// decodes every image in full, as torchvision does), equally
    /// deterministic. Other pipelines and non-JPEG rows are unaffected.
    pub jpeg_draft: bool,
}

impl Default for LoaderConfig {
    fn default() -> Self {
        LoaderConfig {
            batch_size: 64,
            views: 1,
            workers: std::thread::available_parallelism().map(|n| n.get()).unwrap_or(2),
            pool_size: 4,
            seed: 0,
            sampler: SamplerSpec::Instance,
            drop_last: None,
            on_corrupt: OnCorrupt::Error,
            channels: None,
            image_size: None,
            epochs: None,
            start: Position::default(),
            allocator: Arc::new(HeapAllocator),
            shard: Shard::WHOLE,
            photometric: Photometric::Cpu,
            jpeg_draft: false,
        }
    }
}

macro_rules! with {
    ($name:ident, $field:ident, $ty:ty) => {
        pub fn $name(mut self, v: $ty) -> Self {
            self.$field = v;
            self
        }
    };
}

impl LoaderConfig {
    with!(with_batch_size, batch_size, usize);
    with!(with_views, views, usize);
    with!(with_workers, workers, usize);
    with!(with_pool_size, pool_size, usize);
    with!(with_seed, seed, u64);
    with!(with_sampler, sampler, SamplerSpec);
    with!(with_on_corrupt, on_corrupt, OnCorrupt);
    with!(with_allocator, allocator, Arc<dyn BatchAllocator>);
    with!(with_shard, shard, Shard);
    with!(with_photometric, photometric, Photometric);
    with!(with_jpeg_draft, jpeg_draft, bool);
    pub fn with_drop_last(mut self, v: bool) -> Self {
        self.drop_last = Some(v);
        self
    }
    pub fn with_channels(mut self, v: u8) -> Self {
        self.channels = Some(v);
        self
    }
    pub fn with_image_size(mut self, w: u32, h: u32) -> Self {
        self.image_size = Some((w, h));
        self
    }
    pub fn with_epochs(mut self, v: u64) -> Self {
        self.epochs = Some(v);
        self
    }
    /// Resume from a saved state (the seed is restored too).
    pub fn with_state(mut self, s: LoaderState) -> Self {
        self.seed = s.seed;
        self.start = s.position;
        self
    }
}

/// What a checkpoint stores to resume the loader mid-epoch.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct LoaderState {
    pub seed: u64,
    /// The next batch to deliver.
    pub position: Position,
}

/// Cumulative per-stage counters (nanoseconds are summed over threads).
#[derive(Default, Debug)]
struct Counters {
    read_ns: AtomicU64,
    decode_ns: AtomicU64,
    augment_ns: AtomicU64,
    dispatch_ns: AtomicU64,
    wait_ns: AtomicU64,
    images: AtomicU64,
    views: AtomicU64,
    skipped: AtomicU64,
    batches: AtomicU64,
    draft: [AtomicU64; 4],
}

/// A snapshot of the stage counters.
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct StageStats {
    /// Worker time fetching encoded bytes, seconds summed over workers.
    pub read_s: f64,
    pub decode_s: f64,
    pub augment_s: f64,
    /// Dispatcher time sampling and waiting for a free buffer.
    pub dispatch_s: f64,
    /// Consumer time blocked waiting for the next batch.
    pub wait_s: f64,
    pub images: u64,
    pub views: u64,
    pub skipped: u64,
    pub batches: u64,
    /// `jpeg_draft`: images decoded at 1/1, 1/2, 1/4 and 1/8 scale.
    #[serde(default)]
    pub draft: [u64; 4],
}

/// The counters accumulated between two snapshots (`later - earlier`).
impl std::ops::Sub for StageStats {
    type Output = StageStats;
    fn sub(self, b: StageStats) -> StageStats {
        StageStats {
            read_s: self.read_s - b.read_s,
            decode_s: self.decode_s - b.decode_s,
            augment_s: self.augment_s - b.augment_s,
            dispatch_s: self.dispatch_s - b.dispatch_s,
            wait_s: self.wait_s - b.wait_s,
            images: self.images - b.images,
            views: self.views - b.views,
            skipped: self.skipped - b.skipped,
            batches: self.batches - b.batches,
            draft: std::array::from_fn(|i| self.draft[i] - b.draft[i]),
        }
    }
}

fn ns(a: &AtomicU64) -> f64 {
    a.load(Ordering::Relaxed) as f64 * 1e-9
}

impl Counters {
    fn snapshot(&self) -> StageStats {
        StageStats {
            read_s: ns(&self.read_ns),
            decode_s: ns(&self.decode_ns),
            augment_s: ns(&self.augment_ns),
            dispatch_s: ns(&self.dispatch_ns),
            wait_s: ns(&self.wait_ns),
            images: self.images.load(Ordering::Relaxed),
            views: self.views.load(Ordering::Relaxed),
            skipped: self.skipped.load(Ordering::Relaxed),
            batches: self.batches.load(Ordering::Relaxed),
            draft: std::array::from_fn(|i| self.draft[i].load(Ordering::Relaxed)),
        }
    }
}

fn add_since(a: &AtomicU64, t: Instant) {
    a.fetch_add(t.elapsed().as_nanos() as u64, Ordering::Relaxed);
}

/// A batch being filled by the workers.
struct InFlight {
    seq: u64,
    position: Position,
    slots: usize,
    ptr: *mut u8,
    len: usize,
    storage: Mutex<Option<Box<dyn BatchStorage>>>,
    labels: Vec<AtomicI64>,
    indices: Vec<AtomicI64>,
    remaining: AtomicUsize,
    skipped: AtomicUsize,
    /// Device mode: each view's photometric record, `[view][slot]`.
    params: Mutex<Vec<ViewParams>>,
}

// SAFETY: `ptr` points into `storage`, whose address is stable (BatchStorage
// contract) and which lives as long as this struct. Workers write disjoint
// slot ranges; the consumer reads only after `remaining` reached zero
// (AcqRel on the counter orders the writes before the read).
unsafe impl Send for InFlight {}
unsafe impl Sync for InFlight {}

struct Job {
    batch: Arc<InFlight>,
    /// The slot in this loader's batch, and in the whole (unsharded) step.
    slot: usize,
    step_slot: usize,
    index: usize,
}

type Done = std::result::Result<Arc<InFlight>, LoaderError>;

/// What the workers share.
struct Shared {
    source: Arc<dyn EncodedSource>,
    pipeline: Pipeline,
    seed: u64,
    views: usize,
    channels: u8,
    out_size: (u32, u32),
    sample_bytes: usize,
    on_corrupt: OnCorrupt,
    /// `Device` only for a pipeline with a photometric stage.
    photometric: Photometric,
    /// `jpeg_draft` with a pipeline that crops: its RandomResizedCrop
    /// (scale, ratio).
    draft: Option<DraftCrop>,
    counters: Counters,
    stop: AtomicBool,
}

/// The RandomResizedCrop parameters `(scale, ratio)` of a pipeline.
pub type DraftCrop = ((f64, f64), (f64, f64));

/// The crop of the pipelines whose views start with a RandomResizedCrop
/// drawn from the source size (their first draw: draft decoding relies on
/// it, `tests/pipeline.rs` checks it).
pub fn rrc_of(p: &Pipeline) -> Option<DraftCrop> {
    match p {
        Pipeline::ImageNet(s) => Some((s.scale, s.ratio)),
        Pipeline::RandAugment(s) => Some((s.scale, s.ratio)),
        Pipeline::Randncls(s) => Some((s.scale, s.ratio)),
        Pipeline::Cifar(_) | Pipeline::Eval(_) => None,
    }
}

/// The DCT scale denominator for a `width × height` JPEG: the largest of
/// 8, 4, 2 at which the crop each view's generator draws first (from the
/// reduced size, exactly as the view will draw it) is at least `out` in
/// both sides, else 1. `rngs` are the views' generators (cloned, not
/// advanced).
pub fn draft_denom(width: u32, height: u32, crop: DraftCrop, rngs: &[Rng], out: (u32, u32)) -> u32 {
    for denom in [8, 4, 2] {
        let (w, h) = codec::draft_size(width, height, denom);
        let fits = rngs.iter().all(|r| {
            let c = rrc_params(&mut r.clone(), w, h, crop.0, crop.1);
            c.width >= out.0 && c.height >= out.1
        });
        if fits {
            return denom;
        }
    }
    1
}

/// Decodes to the loader's channel count.
pub fn decode_to(bytes: &[u8], channels: u8) -> lt_vision::Result<Decoded> {
    Ok(to_channels(codec::decode(bytes)?, channels))
}

/// `jpeg_draft`: a JPEG at the scale [`draft_denom`] picks for these views
/// (libjpeg-turbo), with that scale; anything else, or a JPEG libjpeg-turbo
/// refuses, through [`decode_to`] at scale 1.
pub fn decode_draft(bytes: &[u8], channels: u8, crop: DraftCrop, rngs: &[Rng], out: (u32, u32)) -> lt_vision::Result<(Decoded, u32)> {
    if codec::sniff(bytes) == Some(codec::Format::Jpeg) {
        if let Ok((w, h)) = codec::jpeg_size(bytes) {
            let denom = draft_denom(w, h, crop, rngs, out);
            if let Ok(img) = codec::decode_jpeg_draft(bytes, denom) {
                return Ok((to_channels(img, channels), denom));
            }
        }
    }
    Ok((decode_to(bytes, channels)?, 1))
}

/// Gray replicated to RGB, or RGB reduced to luma, as `channels` asks.
fn to_channels(img: Decoded, channels: u8) -> Decoded {
    match (img.channels, channels) {
        (1, 3) => img.to_rgb(),
        (3, 1) => {
            let px = img
                .pixels
                .chunks_exact(3)
                .map(|p| (0.2989 * p[0] as f32 + 0.587 * p[1] as f32 + 0.114 * p[2] as f32).round() as u8)
                .collect();
            Decoded { width: img.width, height: img.height, channels: 1, pixels: px }
        }
        _ => img,
    }
}

fn panic_message(p: Box<dyn std::any::Any + Send>) -> String {
    if let Some(s) = p.downcast_ref::<&str>() {
        s.to_string()
    } else if let Some(s) = p.downcast_ref::<String>() {
        s.clone()
    } else {
        "unknown panic payload".into()
    }
}

fn process(sh: &Shared, aug: &mut Augmenter, job: &Job) -> Result<()> {
    let b = &job.batch;
    let n = sh.source.len();
    let mut idx = job.index;
    let mut skipped = 0usize;
    let pos = b.position;
    // Draft mode: one generator per view, so each view's crop is known
    // before the decode.
    let mut view_rngs: Vec<Rng> = match sh.draft {
        Some(_) => (0..sh.views as u64)
            .map(|k| Rng::derive(sh.seed, &[STREAM_AUGMENT_DRAFT, pos.epoch, pos.step, job.step_slot as u64, k]))
            .collect(),
        None => Vec::new(),
    };
    let img = loop {
        let t = Instant::now();
        let bytes = sh.source.fetch(idx)?;
        add_since(&sh.counters.read_ns, t);
        let t = Instant::now();
        let r = match sh.draft {
            Some(crop) => decode_draft(&bytes, sh.channels, crop, &view_rngs, sh.out_size).map(|(img, denom)| {
                sh.counters.draft[denom.trailing_zeros() as usize].fetch_add(1, Ordering::Relaxed);
                img
            }),
            None => decode_to(&bytes, sh.channels),
        };
        add_since(&sh.counters.decode_ns, t);
        match r {
            Ok(img) => break img,
            Err(e) if sh.on_corrupt == OnCorrupt::Skip && skipped + 1 < n => {
                tracing::warn!("skipping corrupt image at {}: {e}", sh.source.locate(idx));
                skipped += 1;
                idx = (idx + 1) % n;
            }
            Err(e) => return Err(LoaderError::Corrupt { location: sh.source.locate(idx), source: e }),
        }
    };
    let t = Instant::now();
    let mut rng = Rng::derive(sh.seed, &[STREAM_AUGMENT, pos.epoch, pos.step, job.step_slot as u64]);
    let device = sh.photometric == Photometric::Device;
    let mut params = if device { vec![ViewParams::EMPTY; sh.views] } else { Vec::new() };
    for k in 0..sh.views {
        let off = (k * b.slots + job.slot) * sh.sample_bytes;
        assert!(off + sh.sample_bytes <= b.len);
        // SAFETY: (view k, slot) ranges are disjoint across jobs and inside
        // the buffer (checked above); see `InFlight`.
        let out = unsafe { std::slice::from_raw_parts_mut(b.ptr.add(off), sh.sample_bytes) };
        let rng = view_rngs.get_mut(k).unwrap_or(&mut rng);
        let r = match params.get_mut(k) {
            Some(p) => aug.view_geometric_into(&img, rng, sh.out_size, out, p),
            None => aug.view_into(&img, rng, sh.out_size, out),
        };
        r.map_err(|e| LoaderError::Augment { location: sh.source.locate(idx), source: e })?;
    }
    if device {
        let mut all = b.params.lock().unwrap_or_else(|p| p.into_inner());
        for (k, p) in params.into_iter().enumerate() {
            all[k * b.slots + job.slot] = p;
        }
    }
    add_since(&sh.counters.augment_ns, t);
    b.labels[job.slot].store(sh.source.labels()[idx], Ordering::Relaxed);
    b.indices[job.slot].store(idx as i64, Ordering::Relaxed);
    if skipped > 0 {
        b.skipped.fetch_add(1, Ordering::Relaxed);
        sh.counters.skipped.fetch_add(skipped as u64, Ordering::Relaxed);
    }
    sh.counters.images.fetch_add(1, Ordering::Relaxed);
    sh.counters.views.fetch_add(sh.views as u64, Ordering::Relaxed);
    Ok(())
}

fn worker(sh: Arc<Shared>, jobs: Receiver<Job>, done: Sender<Done>, shutdown: Receiver<()>) {
    let mut aug = match Augmenter::try_new(sh.pipeline.clone(), sh.channels) {
        Ok(a) => a,
        Err(e) => {
            let _ = done.send(Err(e.into()));
            return;
        }
    };
    loop {
        let job = select! {
            recv(jobs) -> j => match j { Ok(j) => j, Err(_) => return },
            recv(shutdown) -> _ => return,
        };
        if sh.stop.load(Ordering::Relaxed) {
            return;
        }
        let r = catch_unwind(AssertUnwindSafe(|| process(&sh, &mut aug, &job)))
            .unwrap_or_else(|p| Err(LoaderError::WorkerPanic { location: sh.source.locate(job.index), message: panic_message(p) }));
        match r {
            Ok(()) => {
                if job.batch.remaining.fetch_sub(1, Ordering::AcqRel) == 1 {
                    sh.counters.batches.fetch_add(1, Ordering::Relaxed);
                    if done.send(Ok(job.batch.clone())).is_err() {
                        return;
                    }
                }
            }
            Err(e) => {
                // The augmenter may be in any state after a panic; this
                // worker stops and the consumer stops at this error.
                let _ = done.send(Err(e));
                return;
            }
        }
    }
}

struct Dispatch {
    sh: Arc<Shared>,
    sampler: Sampler,
    shard: Shard,
    start: Position,
    epochs: Option<u64>,
    pool_size: usize,
    batch_bytes: usize,
    allocator: Arc<dyn BatchAllocator>,
    pool_rx: Receiver<Box<dyn BatchStorage>>,
    jobs: Sender<Job>,
    done: Sender<Done>,
    shutdown: Receiver<()>,
}

impl Dispatch {
    fn run(self) {
        if let Err(e) = self.run_inner() {
            let _ = self.done.send(Err(e));
        }
    }

    fn run_inner(&self) -> Result<()> {
        let mut pos = self.start;
        let mut plan: Option<(u64, EpochPlan)> = None;
        let mut allocated = 0usize;
        let mut seq = 0u64;
        loop {
            if self.epochs.is_some_and(|e| pos.epoch >= e) {
                return Ok(());
            }
            let t = Instant::now();
            if plan.as_ref().is_none_or(|(e, _)| *e != pos.epoch) {
                plan = Some((pos.epoch, self.sampler.epoch(pos.epoch)));
            }
            let p = &plan.as_ref().expect("plan").1;
            if pos.step as usize >= p.steps {
                pos = Position { epoch: pos.epoch + 1, step: 0 };
                continue;
            }
            let idx = p.shard_slots(pos.step as usize, self.shard);
            let mut storage = match self.pool_rx.try_recv() {
                Ok(s) => s,
                Err(_) if allocated < self.pool_size => {
                    allocated += 1;
                    self.allocator.allocate(self.batch_bytes)?
                }
                Err(_) => select! {
                    recv(self.pool_rx) -> s => s.map_err(|_| LoaderError::Stopped("buffer pool closed".into()))?,
                    recv(self.shutdown) -> _ => return Ok(()),
                },
            };
            let buf = storage.as_mut_slice();
            if buf.len() < self.batch_bytes {
                return Err(LoaderError::Alloc {
                    bytes: self.batch_bytes,
                    message: format!("allocator returned only {} bytes", buf.len()),
                });
            }
            let (ptr, len) = (buf.as_mut_ptr(), buf.len());
            let slots = idx.len();
            let fl = Arc::new(InFlight {
                seq,
                position: pos,
                slots,
                ptr,
                len,
                storage: Mutex::new(Some(storage)),
                labels: (0..slots).map(|_| AtomicI64::new(-1)).collect(),
                indices: (0..slots).map(|_| AtomicI64::new(-1)).collect(),
                remaining: AtomicUsize::new(slots),
                skipped: AtomicUsize::new(0),
                params: Mutex::new(match self.sh.photometric {
                    Photometric::Device => vec![ViewParams::EMPTY; self.sh.views * slots],
                    Photometric::Cpu => Vec::new(),
                }),
            });
            add_since(&self.sh.counters.dispatch_ns, t);
            if slots == 0 {
                // A short last step can leave a rank nothing: an empty batch.
                self.sh.counters.batches.fetch_add(1, Ordering::Relaxed);
                select! {
                    send(self.done, Ok(fl.clone())) -> r => if r.is_err() { return Ok(()) },
                    recv(self.shutdown) -> _ => return Ok(()),
                }
            }
            for (slot, &(step_slot, index)) in idx.iter().enumerate() {
                let job = Job { batch: fl.clone(), slot, step_slot, index };
                select! {
                    send(self.jobs, job) -> r => if r.is_err() { return Ok(()) },
                    recv(self.shutdown) -> _ => return Ok(()),
                }
            }
            seq += 1;
            pos.step += 1;
        }
    }
}

/// The loader: an iterator of batches in step order.
pub struct Loader {
    sh: Arc<Shared>,
    done_rx: Option<Receiver<Done>>,
    shutdown_tx: Option<Sender<()>>,
    pool_tx: Sender<Box<dyn BatchStorage>>,
    threads: Vec<JoinHandle<()>>,
    pending: BTreeMap<u64, Arc<InFlight>>,
    next_seq: u64,
    next_pos: Position,
    steps_per_epoch: usize,
    finished: bool,
    sampler: SamplerSpec,
    seed: u64,
    batch_bytes: usize,
    pool_size: usize,
    held: Arc<AtomicUsize>,
    /// Batches this loader will deliver (`None`: endless).
    total: Option<u64>,
}

/// Fills in `workers = 0` (one per core, as recipes write it) and refuses
/// sizes of zero and an empty source.
fn check_config(cfg: &mut LoaderConfig, source: &dyn EncodedSource) -> Result<()> {
    if cfg.workers == 0 {
        cfg.workers = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(2);
    }
    if cfg.views == 0 || cfg.pool_size == 0 || cfg.batch_size == 0 {
        return Err(LoaderError::Config(format!(
            "views ({}), pool size ({}) and batch size ({}) must all be > 0",
            cfg.views, cfg.pool_size, cfg.batch_size
        )));
    }
    if source.is_empty() {
        return Err(LoaderError::Config("the source has no rows".into()));
    }
    Shard::try_new(cfg.shard.rank, cfg.shard.world)?;
    Ok(())
}

/// Channels and (width, height) of one output view: the config's, else
/// what the pipeline fixes, else those of the source's first image.
fn output_shape(source: &dyn EncodedSource, pipeline: &Pipeline, cfg: &LoaderConfig) -> Result<(u8, (u32, u32))> {
    let rgb_pipeline = pipeline.rgb_output();
    let need_probe = cfg.channels.is_none() && !rgb_pipeline || cfg.image_size.is_none() && pipeline.size_from_source();
    let probe = if need_probe {
        let b = source.fetch(0)?;
        Some(codec::decode(&b).map_err(|e| LoaderError::Corrupt { location: source.locate(0), source: e })?)
    } else {
        None
    };
    let channels = cfg.channels.unwrap_or_else(|| if rgb_pipeline { 3 } else { probe.as_ref().map_or(3, |p| p.channels) });
    let out_size = match (cfg.image_size, &probe) {
        (Some(s), _) => s,
        (None, Some(p)) => pipeline.output_size((p.width, p.height)),
        (None, None) => pipeline.output_size((0, 0)),
    };
    Ok((channels, out_size))
}

/// The threads of a running loader and the loader's ends of their channels.
type Started = (Vec<JoinHandle<()>>, Receiver<Done>, Sender<()>, Sender<Box<dyn BatchStorage>>);

/// Starts `cfg.workers` decode + augment workers and the dispatcher that
/// feeds them the sampler's batches.
fn spawn_threads(sh: &Arc<Shared>, sampler: Sampler, cfg: &LoaderConfig, batch_bytes: usize) -> Result<Started> {
    let (jobs_tx, jobs_rx) = bounded::<Job>(cfg.workers * 4);
    let (done_tx, done_rx) = bounded::<Done>(cfg.pool_size + cfg.workers + 1);
    let (shutdown_tx, shutdown_rx) = bounded::<()>(0);
    let (pool_tx, pool_rx) = bounded::<Box<dyn BatchStorage>>(cfg.pool_size);
    let mut threads = Vec::with_capacity(cfg.workers + 1);
    for i in 0..cfg.workers {
        let (sh, jobs, done, shut) = (sh.clone(), jobs_rx.clone(), done_tx.clone(), shutdown_rx.clone());
        threads.push(
            std::thread::Builder::new()
                .name(format!("lt-loader-worker-{i}"))
                .spawn(move || worker(sh, jobs, done, shut))
                .map_err(|e| LoaderError::Stopped(format!("cannot spawn worker: {e}")))?,
        );
    }
    let d = Dispatch {
        sh: sh.clone(),
        sampler,
        shard: cfg.shard,
        start: cfg.start,
        epochs: cfg.epochs,
        pool_size: cfg.pool_size,
        batch_bytes,
        allocator: cfg.allocator.clone(),
        pool_rx,
        jobs: jobs_tx,
        done: done_tx,
        shutdown: shutdown_rx,
    };
    threads.push(
        std::thread::Builder::new()
            .name("lt-loader-dispatch".into())
            .spawn(move || d.run())
            .map_err(|e| LoaderError::Stopped(format!("cannot spawn dispatcher: {e}")))?,
    );
    Ok((threads, done_rx, shutdown_tx, pool_tx))
}

impl Loader {
    /// Validates the configuration, resolves the output shape (reading row 0
    /// if the pipeline keeps the source size) and starts the threads.
    pub fn try_new(source: Arc<dyn EncodedSource>, pipeline: Pipeline, mut cfg: LoaderConfig) -> Result<Loader> {
        pipeline.validate()?;
        check_config(&mut cfg, source.as_ref())?;
        let drop_last = cfg.drop_last.unwrap_or(!matches!(cfg.sampler, SamplerSpec::Sequential));
        let sampler = Sampler::try_new(cfg.sampler, source.labels(), cfg.seed, cfg.batch_size, drop_last)?;
        let steps_per_epoch = sampler.steps_per_epoch();
        if steps_per_epoch == 0 {
            return Err(LoaderError::Config(format!(
                "{} rows make no full batch of {} (set drop_last = false)",
                source.len(),
                cfg.batch_size
            )));
        }
        let (channels, out_size) = output_shape(source.as_ref(), &pipeline, &cfg)?;
        let photometric = if pipeline.has_photometric() { cfg.photometric } else { Photometric::Cpu };
        if photometric == Photometric::Device && pipeline.max_photometric_ops() > MAX_PHOTO_OPS {
            return Err(LoaderError::Config(format!(
                "photometric = \"device\" records at most {MAX_PHOTO_OPS} photometric ops per view, and this pipeline makes up to {} \
                 (fewer RandAugment ops, or photometric = \"cpu\")",
                pipeline.max_photometric_ops()
            )));
        }
        let sample_bytes = channels as usize * out_size.0 as usize * out_size.1 as usize;
        let batch_bytes = cfg.views * cfg.sampler.slots(cfg.shard.max_len(cfg.batch_size)) * sample_bytes;
        let draft = if cfg.jpeg_draft { rrc_of(&pipeline) } else { None };
        let sh = Arc::new(Shared {
            source,
            pipeline,
            seed: cfg.seed,
            views: cfg.views,
            channels,
            out_size,
            sample_bytes,
            on_corrupt: cfg.on_corrupt,
            photometric,
            draft,
            counters: Counters::default(),
            stop: AtomicBool::new(false),
        });
        let (threads, done_rx, shutdown_tx, pool_tx) = spawn_threads(&sh, sampler, &cfg, batch_bytes)?;
        tracing::debug!(workers = cfg.workers, batch_bytes, ?out_size, channels, "loader started");
        Ok(Loader {
            sh,
            done_rx: Some(done_rx),
            shutdown_tx: Some(shutdown_tx),
            pool_tx,
            threads,
            pending: BTreeMap::new(),
            next_seq: 0,
            next_pos: cfg.start,
            steps_per_epoch,
            finished: false,
            sampler: cfg.sampler,
            seed: cfg.seed,
            batch_bytes,
            pool_size: cfg.pool_size,
            held: Arc::new(AtomicUsize::new(0)),
            total: cfg.epochs.map(|e| {
                let spe = steps_per_epoch as u64;
                (e * spe).saturating_sub(cfg.start.epoch * spe + cfg.start.step.min(spe))
            }),
        })
    }

    pub fn steps_per_epoch(&self) -> usize {
        self.steps_per_epoch
    }

    /// `[C, H, W]` of one sample.
    pub fn sample_shape(&self) -> [usize; 3] {
        [self.sh.channels as usize, self.sh.out_size.1 as usize, self.sh.out_size.0 as usize]
    }

    /// Where the photometric stage runs: the configured mode, except that a
    /// pipeline without one (`cifar`, `eval`) always reports `Cpu`.
    pub fn photometric(&self) -> Photometric {
        self.sh.photometric
    }

    /// Bytes of one batch buffer.
    pub fn batch_bytes(&self) -> usize {
        self.batch_bytes
    }

    /// Upper bound of the memory held by batch buffers.
    pub fn pool_bytes(&self) -> usize {
        self.batch_bytes * self.pool_size
    }

    /// The position of the next batch `next()` will return; save it to resume.
    pub fn state(&self) -> LoaderState {
        LoaderState { seed: self.seed, position: self.next_pos }
    }

    pub fn stats(&self) -> StageStats {
        self.sh.counters.snapshot()
    }

    fn shutdown(&mut self) {
        self.finished = true;
        self.sh.stop.store(true, Ordering::Relaxed);
        self.shutdown_tx.take();
        self.done_rx.take();
        self.pending.clear();
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
    }

    fn finish(&mut self, fl: Arc<InFlight>) -> Batch {
        let storage = fl.storage.lock().unwrap_or_else(|p| p.into_inner()).take();
        let pos = fl.position;
        self.next_seq += 1;
        self.next_pos = if pos.step as usize + 1 >= self.steps_per_epoch {
            Position { epoch: pos.epoch + 1, step: 0 }
        } else {
            Position { epoch: pos.epoch, step: pos.step + 1 }
        };
        Batch {
            position: pos,
            labels: fl.labels.iter().map(|a| a.load(Ordering::Relaxed)).collect(),
            indices: fl.indices.iter().map(|a| a.load(Ordering::Relaxed)).collect(),
            views: self.sh.views,
            channels: self.sh.channels as usize,
            height: self.sh.out_size.1 as usize,
            width: self.sh.out_size.0 as usize,
            skipped: fl.skipped.load(Ordering::Relaxed),
            photometric: std::mem::take(&mut *fl.params.lock().unwrap_or_else(|p| p.into_inner())),
            sampler: self.sampler,
            storage,
            pool: Some(self.pool_tx.clone()),
            held: Some({
                self.held.fetch_add(1, Ordering::AcqRel);
                self.held.clone()
            }),
        }
    }
}

impl Iterator for Loader {
    type Item = Result<Batch>;

    fn next(&mut self) -> Option<Result<Batch>> {
        if self.finished {
            return None;
        }
        if self.total.is_some_and(|t| self.next_seq >= t) {
            self.shutdown();
            return None;
        }
        let t = Instant::now();
        loop {
            if let Some(fl) = self.pending.remove(&self.next_seq) {
                add_since(&self.sh.counters.wait_ns, t);
                return Some(Ok(self.finish(fl)));
            }
            if self.held.load(Ordering::Acquire) >= self.pool_size {
                // Every buffer is in the consumer's hands: nothing in flight
                // can complete, so waiting would hang forever.
                return Some(Err(LoaderError::Config(format!(
                    "the consumer holds all {} batch buffers of the pool; drop a batch before asking for the next, or raise pool_size",
                    self.pool_size
                ))));
            }
            let r = self.done_rx.as_ref().expect("running").recv();
            match r {
                Ok(Ok(fl)) => {
                    self.pending.insert(fl.seq, fl);
                }
                Ok(Err(e)) => {
                    self.shutdown();
                    return Some(Err(e));
                }
                Err(_) => {
                    // Every sender is gone: the dispatcher reached the last
                    // epoch and the workers drained the queue.
                    let leftover = !self.pending.is_empty();
                    self.shutdown();
                    return leftover.then(|| Err(LoaderError::Stopped("a batch never completed".into())));
                }
            }
        }
    }
}

impl Drop for Loader {
    fn drop(&mut self) {
        self.shutdown();
    }
}
