//! # lt-glmc
//!
//! The libtorch core of lt-glmc (tch 0.24, libtorch 2.11.0). It owns the
//! parts every runner shares, and the trainer (`lt-train`), the benchmarks
//! (`lt-bench`) and, later, data-parallel runners build on it:
//!
//! - [`model`]: ResNet-32 (CIFAR, option-A shortcuts, width parameter),
//!   ResNet-50 and ResNeXt-50 32×4d (ImageNet stem), each with GLMC's four
//!   heads (conventional g, re-balanced g_cb, projection P, predictor Q);
//! - [`mix`]: normalization of uint8 batches and the global MixUp / local
//!   CutMix, on the device;
//! - [`loss`]: soft and class-weighted soft labels, L_sup, L_rb (re-weighted
//!   or Balanced Softmax), the stop-gradient cosine consistency L_con and the
//!   cumulative α, the cross-entropy baseline and ablations, and the
//!   second-stage (fine-tuning) losses;
//! - [`step`]: one training step for every runner: a method's [`step::Step`]
//!   (GLMC and its ablations, cross-entropy, the head-only fine-tune) and
//!   the shared [`step::Updater`] (non-finite check, backward, SGD or its
//!   loss-scaled fp16 form);
//! - [`optim`]: SGD with momentum and weight decay (buffers saved), cosine and
//!   warm-up + cosine schedules;
//! - [`maxnorm`]: MaxNorm projection for classifier fine-tuning;
//! - [`metrics`]: evaluation counts from logits (top-1/5, per-class,
//!   many/medium/few and ECE through [`lt_core::eval`]);
//! - [`checkpoint`]: safetensors weights + optimizer buffers + JSON state,
//!   written atomically; the weights carry their [`card::ModelCard`]
//!   (architecture, classes, normalization, evaluation head and pipeline);
//! - [`amp`]: precision (fp32, TF32, fp16 autocast with dynamic loss
//!   scaling), channels-last, cuDNN autotuning;
//! - [`device`]: `cpu` / `cuda:N` / `auto` by name;
//! - [`photometric`]: the loader's recorded photometric stage (ColorJitter,
//!   grayscale, blur, both RandAugments) applied to the uploaded batch on
//!   the device, with the CPU kernels' bytes (`loader.photometric = "device"`);
//! - [`pinned`]: tensor-backed (pinned on CUDA) batch buffers for lt-loader;
//! - [`host_alloc`]: glibc malloc settings that keep freed activations in
//!   the process (no page faults per CPU step);
//! - [`dist`]: c10d process groups (Gloo on the CPU; NCCL on GPUs, in a
//!   build with CUDA's headers; from torchrun's environment or a file
//!   store) and timed collectives on tch tensors — broadcast,
//!   broadcast_coalesced, all-reduce (sum, mean), barrier, all-gather — and
//!   data-parallel training on them: [`dist::GradReducer`], DDP's own
//!   `c10d::Reducer` (bucketed gradient all-reduce overlapping the
//!   backward), and [`dist::DataParallel`], which [`step::Updater`] runs
//!   its backward through.
//!
//! GLMC: Du et al., "Global and Local Mixture Consistency Cumulative Learning
//! for Long-tailed Visual Recognitions", CVPR 2023
//! ([arXiv:2305.08661](https://arxiv.org/abs/2305.08661)).
//!
//! One GLMC step, as lt-train runs it:
//!
//! ```no_run
//! use lt_glmc::{amp, loss, mix, model, optim, step};
//! use lt_glmc::tch::{nn::VarStore, Device, Kind, Tensor};
//! # fn main() -> lt_glmc::Result<()> {
//! let vs = VarStore::new(Device::Cpu);
//! let net = model::GlmcNet::try_new(&vs.root(), model::ModelConfig::new(model::Arch::ResNet32 { width: 16 }, 10))?;
//! let counts = vec![5000, 2997, 1796, 1077, 645, 387, 232, 139, 83, 50];
//! let stats = loss::ClassStats::try_new(&counts, 1.2, Device::Cpu, Kind::Float)?;
//! let norm = mix::Normalizer::try_new(&[0.49, 0.48, 0.45], &[0.25, 0.24, 0.26], Device::Cpu, Kind::Float)?;
//! let precision = amp::PrecisionConfig::default();
//! let mut opt = optim::Sgd::new(&vs, optim::SgdConfig { lr: 0.01, momentum: 0.9, weight_decay: 5e-3 });
//! let mut glmc = step::GlmcStep::new(loss::LossConfig::default(), 1.0, step::GlmcStep::rng_for_seed(0));
//! let mut update = step::Updater::new(vs.trainable_variables(), None);
//! // A loader batch: uint8 [2 views, 2B slots (B instance- then B class-sampled), C, H, W].
//! let x = Tensor::randint(256, [2, 16, 3, 32, 32], (Kind::Uint8, Device::Cpu));
//! let y = Tensor::randint(10, [16], (Kind::Int64, Device::Cpu));
//! let alpha = lt_core::weights::cumulative_alpha(0, 200);
//! let m = step::StepModel { net: &net, stats: &stats, norm: &norm, precision: &precision };
//! let out = update.apply(&mut opt, &mut glmc, &m, (&x, &y), alpha, (0, 0))?;
//! println!("loss {} (L_sup {}, L_rb {:?}, L_con {:?})", out.values.total, out.values.sup, out.values.rb, out.values.con);
//! # Ok(()) }
//! ```

pub mod amp;
pub mod card;
pub mod checkpoint;
pub mod device;
pub mod dist;
pub mod error;
pub mod host_alloc;
pub mod loss;
pub mod maxnorm;
pub mod metrics;
pub mod mix;
pub mod model;
pub mod optim;
pub mod photometric;
pub mod pinned;
pub mod step;

pub use error::{GlmcError, Result};
pub use tch;

/// The libtorch version this crate is built for.
pub const LIBTORCH_VERSION: &str = "2.11.0";
