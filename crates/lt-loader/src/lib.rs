//! # lt-loader
//!
//! The second stage of lt-glmc's data path (lt-build → shards → lt-loader
//! → trainer; see the README's loader section): it turns lt-build's
//! shards into uint8 `(N, C, H, W)` batches, fast enough to keep a GPU busy.
//!
//! ```text
//! sampler/dispatcher ──jobs (bounded)──▶ N workers ──done (bounded)──▶ consumer
//!   (epoch, step) → indices               read encoded bytes             reorders by step,
//!   takes a buffer from the pool          decode once, K views           hands out Batch;
//!   (pool size bounds memory)             write straight into the        dropping a Batch
//!                                         batch buffer slot              returns its buffer
//! ```
//!
//! - [`source`]: where encoded bytes come from ([`source::EncodedSource`]):
//!   memory, or a shard directory (resident when it fits a budget, row groups
//!   on demand otherwise).
//! - [`sampler`]: instance, class-weighted (`P(i) ∝ n_{y_i}^(−q)`),
//!   sequential, and the paired sampler of a GLMC step; [`sampler::Shard`],
//!   a data-parallel rank's part of every step.
//! - [`batch`]: the [`batch::BatchAllocator`] seam (the trainer plugs in
//!   pinned memory) and [`batch::Batch`].
//! - [`loader`]: the staged pipeline.
//! - [`bench`]: `lt-bench loader` / `lt-loader-bench loader`.
//!
//! Every random decision is a pure function of `(seed, epoch, step, slot)`
//! through [`lt_core::rng::Rng::derive`], so batches are bit-identical for
//! any number of workers and a run can resume mid-epoch from a
//! [`loader::LoaderState`]. Under data-parallel training each rank's loader
//! makes only its [`sampler::Shard`] of every step, keyed by the slot in the
//! whole step, so the ranks' batches together are one process's batch.
//!
//! ```
//! use std::sync::Arc;
//! use lt_loader::{loader::{Loader, LoaderConfig}, sampler::SamplerSpec, source::MemorySource};
//! use lt_vision::{augment::Pipeline, codec::{encode_png, Decoded}};
//! let png = encode_png(&Decoded { width: 8, height: 8, channels: 3, pixels: vec![7; 192] }).unwrap();
//! let src = Arc::new(MemorySource::new((0..10).map(|i| (png.clone(), i % 2)).collect()));
//! let cfg = LoaderConfig::default().with_batch_size(4).with_views(2).with_workers(2)
//!     .with_sampler(SamplerSpec::Paired { q: 1.0 }).with_epochs(1);
//! let loader = Loader::try_new(src, Pipeline::by_name("cifar").unwrap(), cfg).unwrap();
//! let batches: Vec<_> = loader.collect::<Result<_, _>>().unwrap();
//! assert_eq!(batches.len(), 2); // 10 / 4, last partial batch dropped in training
//! assert_eq!(batches[0].shape(), [8, 3, 8, 8]); // 4 instance + 4 class-weighted samples
//! ```

pub mod batch;
pub mod bench;
pub mod loader;
pub mod sampler;
pub mod source;

/// Errors of the loader. Messages name the shard file and row at fault.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum LoaderError {
    #[error("{location}: cannot decode image: {source}")]
    Corrupt {
        location: String,
        #[source]
        source: lt_vision::VisionError,
    },
    #[error("{location}: {source}")]
    Augment {
        location: String,
        #[source]
        source: lt_vision::VisionError,
    },
    #[error("{location}: cannot read encoded bytes: {message}")]
    Read { location: String, message: String },
    #[error("loader worker panicked while processing {location}: {message}")]
    WorkerPanic { location: String, message: String },
    #[error("batch allocator failed for {bytes} bytes: {message}")]
    Alloc { bytes: usize, message: String },
    #[error("invalid loader configuration: {0}")]
    Config(String),
    #[error("{0}")]
    Vision(#[from] lt_vision::VisionError),
    #[error("the loader pipeline stopped unexpectedly: {0}")]
    Stopped(String),
    /// An I/O error on `path` outside the shard files (whose errors come as
    /// [`LoaderError::Shard`]).
    #[error("{}: {source}", path.display())]
    Io {
        path: std::path::PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error(transparent)]
    Shard(#[from] lt_shards::ShardError),
}

pub type Result<T, E = LoaderError> = std::result::Result<T, E>;
