//! # lt-train
//!
//! The lt-glmc trainer, over the libtorch core [`lt_glmc`] and the records
//! and reports of [`lt_report`]:
//!
//! - [`recipe`]: TOML training recipes (`pipelines/*.toml`), validated, with
//!   dotted-key overrides;
//! - [`train`]: one run, shards → loader → device → the method's
//!   [`lt_glmc::step::Step`] → evaluation → checkpoint, with exact resume
//!   (the `lt-train` binary);
//! - [`eval`]: using a trained model: `lt-train eval` (a checkpoint on any
//!   shards with its classes, both heads) and `lt-train predict` (image
//!   files, folders, Parquet files), from the checkpoint's model card;
//! - [`export`]: `lt-train export`, the evaluation head traced by libtorch
//!   into a TorchScript module for deployment (`torch.jit.load`);
//! - [`finetune`]: the optional second stage (`lt-train finetune`): g_cb
//!   re-trained with the weight-balancing reference's class-balanced loss and
//!   MaxNorm, encoder frozen;
//! - [`trace`]: step traces (`lt-train --trace`) for exact replays by
//!   `tools/glmc_harness.py --replay`;
//! - [`cluster`]: data-parallel runs under torchrun (c10d): sharded steps
//!   and evaluation, averaged gradients, rank-0 writes;
//! - [`rundir`]: the run-directory lock (one writer per run) and what a
//!   resume may change;
//! - [`error`]: [`TrainError`], whose messages name recipe keys and run
//!   options; the binary adds its flags.
//!
//! Training and fine-tuning run one epoch loop (batching, accumulation,
//! evaluation cadence, epoch and mid-epoch checkpoints, traces, observers),
//! internal to this crate.

pub mod cluster;
mod driver;
pub mod error;
pub mod eval;
pub mod export;
pub mod finetune;
pub mod recipe;
pub mod rundir;
pub mod trace;
pub mod train;

pub use error::{Result, TrainError};
