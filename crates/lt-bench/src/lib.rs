//! # lt-bench
//!
//! lt-glmc's benchmarks, timing the code the trainer runs:
//!
//! - [`glmc`]: `lt-bench gpu` (the training step alone on the device) and
//!   `lt-bench e2e` (shards → loader → the same step), through
//!   [`glmc::GlmcStepper`], which runs lt-train's own
//!   [`lt_glmc::step::GlmcStep`] and [`lt_glmc::step::Updater`];
//! - [`dist`]: `lt-bench dist`, alone or under torchrun: Gloo all-reduce
//!   bandwidth and the same step data-parallel (c10d's Reducer), against
//!   the plain step at world size 1;
//! - the `lt-loader-bench` binary: loader throughput from shards with no
//!   libtorch work (`loader`, on shards such as `lt-build photos` cuts from
//!   photographs) and the augmentation kernels (`kernels`); its library part
//!   is [`lt_loader::bench`];
//! - `examples/step_bench.rs`: the step's per-step time, against
//!   `tools/glmc_step_bench.py` in PyTorch.
//!
//! The figures, and the machines they ran on, are in `benches/RESULTS.md`.

pub mod dist;
pub mod error;
pub mod glmc;

pub use error::{BenchError, Result};
