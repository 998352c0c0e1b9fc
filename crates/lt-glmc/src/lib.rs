//! # lt-glmc
//!
//! The libtorch stage of lt-glmc (tch 0.24, libtorch 2.11.0): the only crate
//! that links libtorch. It owns
//!
//! - [`model`]: ResNet-32 (CIFAR, option-A shortcuts, width parameter),
//!   ResNet-50 and ResNeXt-50 32×4d (ImageNet stem), each with GLMC's four
//!   heads (conventional g, re-balanced g_cb, projection P, predictor Q);
//! - [`mix`]: normalization of uint8 batches and the global MixUp / local
//!   CutMix, on the device;
//! - [`loss`]: soft and class-weighted soft labels, L_sup, L_rb (re-weighted
//!   or Balanced Softmax), the stop-gradient cosine consistency L_con and the
//!   cumulative α, plus the cross-entropy baseline and ablations;
//! - [`optim`]: SGD with momentum and weight decay (buffers saved), cosine and
//!   warm-up + cosine schedules;
//! - [`maxnorm`]: MaxNorm projection for classifier fine-tuning;
//! - [`finetune`]: the optional second stage (`lt-train finetune`): g_cb
//!   re-trained with class-balanced sampling and MaxNorm, encoder frozen;
//! - [`metrics`]: top-1/5, per-class, many/medium/few, ECE;
//! - [`recipe`]: TOML training recipes (`pipelines/*.toml`);
//! - [`checkpoint`]: safetensors weights + optimizer buffers + JSON state,
//!   written atomically;
//! - [`train`]: the training loop (loader → device → GLMC step →
//!   evaluation → checkpoint, exact resume) behind the `lt-train` binary;
//! - [`rundir`]: the run-directory lock (one writer per run) and what a
//!   resume may change;
//! - [`host_alloc`]: glibc malloc settings that keep freed activations in
//!   the process (no page faults per CPU step);
//! - [`pinned`]: tensor-backed (pinned on CUDA) batch buffers for lt-loader;
//! - [`report`]: report.md and the PNG plots.
//!
//! GLMC: Du et al., "Global and Local Mixture Consistency Cumulative Learning
//! for Long-tailed Visual Recognitions", CVPR 2023
//! ([arXiv:2305.08661](https://arxiv.org/abs/2305.08661)).
//!
//! ```no_run
//! use lt_glmc::{loss, mix, model, optim};
//! use lt_glmc::tch::{nn::VarStore, Device, Kind, Tensor};
//! # fn main() -> lt_glmc::Result<()> {
//! let vs = VarStore::new(Device::Cpu);
//! let net = model::GlmcNet::try_new(&vs.root(), model::ModelConfig::new(model::Arch::ResNet32 { width: 16 }, 10))?;
//! let counts = vec![5000, 2997, 1796, 1077, 645, 387, 232, 139, 83, 50];
//! let stats = loss::ClassStats::try_new(&counts, 1.2, Device::Cpu, Kind::Float)?;
//! let mut opt = optim::Sgd::new(&vs, optim::SgdConfig { lr: 0.01, momentum: 0.9, weight_decay: 5e-3 });
//! let mut rng = lt_core::rng::Rng::new(0);
//! let (x, y) = (Tensor::randn([8, 3, 32, 32], (Kind::Float, Device::Cpu)), Tensor::zeros([8], (Kind::Int64, Device::Cpu)));
//! let batch = loss::GlmcBatch { u1: &x, u2: &x, w1: &x, w2: &x, y_u: &y, y_w: &y };
//! let mix = mix::MixParams::draw(&mut rng, 1.0, 32, 32);
//! let alpha = lt_core::weights::cumulative_alpha(0, 200);
//! let terms = loss::glmc_loss(&net, &batch, &mix, &stats, &loss::LossConfig::default(), alpha)?;
//! opt.zero_grad()?;
//! terms.total.backward();
//! opt.step()?;
//! # Ok(()) }
//! ```

pub mod amp;
pub mod bench;
pub mod checkpoint;
mod driver;
pub mod error;
pub mod finetune;
pub mod host_alloc;
pub mod loss;
pub mod maxnorm;
pub mod metrics;
pub mod mix;
pub mod model;
pub mod optim;
pub mod pinned;
pub mod recipe;
pub mod report;
pub mod rundir;
pub mod step;
pub mod trace;
pub mod train;

pub use error::{GlmcError, Result};
pub use tch;

/// The libtorch version this crate is built for.
pub const LIBTORCH_VERSION: &str = "2.11.0";
