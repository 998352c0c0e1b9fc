//! One training step, the same code for every runner: lt-train (GLMC, its
//! ablations, Balanced Softmax, cross-entropy), `lt-train finetune` (the
//! head-only second stage), `lt-bench` and the step benchmark.
//!
//! A [`Step`] is a method's objective: from one device batch it computes
//! the loss terms ([`Step::loss`]) and may act on the model after each
//! update ([`Step::after_update`], MaxNorm's projection) or epoch.
//! [`Updater`] is what every method shares: the non-finite check, zeroing
//! the gradients, backward, and the SGD update, or their loss-scaled fp16
//! form that skips a step whose gradients overflowed.
//!
//! ```text
//! batch (uint8 [views, slots, C, H, W] on the device), labels
//!   → Step::loss            (normalise, mix, forwards, loss terms)
//!   → Updater::apply        (check, backward, SGD / scaled SGD)
//!   → Step::after_update    (e.g. MaxNorm every iteration)
//! ```
//!
//! Data-parallel ([`Updater::with_data_parallel`]): each rank runs the same
//! step on its own share of the batch. [`Updater::apply`] then all-reduces
//! the loss values (their mean over the ranks is what it checks and
//! returns, so every rank takes the same non-finite decision) and runs the
//! backward through the [`DataParallel`]'s gradient reducer (c10d's, as
//! DDP), in full precision and under the fp16 loss scaler alike: the
//! gradients SGD steps on are the world's average, so the ranks' parameters
//! stay identical. BatchNorm normalises with each rank's own batch
//! statistics and keeps each rank's own running statistics (DDP without
//! SyncBatchNorm, and without re-broadcasting buffers every step).
//!
//! lt-train's epoch loop (and lt-bench's stepper) run the epochs around it.

use lt_core::rng::Rng;
use tch::{Kind, Tensor};

use crate::amp::{LossScaleState, LossScaler, PrecisionConfig};
use crate::dist::DataParallel;
use crate::error::{GlmcError, Result};
use crate::loss::FinetuneLossFn;
use crate::loss::{self, ClassStats, GlmcBatch, LossConfig, LossTerms, LossValues};
use crate::maxnorm::{MaxNorm, ProjectEvery};
use crate::mix::{MixParams, Normalizer};
use crate::model::GlmcNet;
use crate::optim::Sgd;

/// What a step reads of the model: the network, its constants and the
/// precision it runs at.
pub struct StepModel<'a> {
    pub net: &'a GlmcNet,
    pub stats: &'a ClassStats,
    pub norm: &'a Normalizer,
    pub precision: &'a PrecisionConfig,
}

impl StepModel<'_> {
    /// View `v` of a uint8 batch `[views, slots, C, H, W]`, in the memory
    /// format, normalised. Layout first (on uint8, 4× fewer bytes), then the
    /// element-wise ops, which keep channels-last strides.
    pub fn view(&self, x: &Tensor, v: i64) -> Result<Tensor> {
        self.norm.apply(&self.precision.memory_format.apply(&x.f_select(0, v)?)?)
    }
}

/// One step's loss and the random choices it made.
pub struct StepLoss {
    pub terms: LossTerms,
    /// GLMC's λ and CutMix box (for traces and replays).
    pub mix: Option<MixParams>,
}

/// A method's objective on one batch.
pub trait Step {
    /// The loss terms of batch `x` (uint8 `[views, slots, C, H, W]`, on the
    /// device) with labels `y` (int64 `[slots]`), under α = `alpha`.
    fn loss(&mut self, m: &StepModel<'_>, x: &Tensor, y: &Tensor, alpha: f64) -> Result<StepLoss>;
    /// After every applied update.
    fn after_update(&mut self, _net: &GlmcNet) -> Result<()> {
        Ok(())
    }
    /// After the last step of every epoch.
    fn after_epoch(&mut self, _net: &GlmcNet) -> Result<()> {
        Ok(())
    }
    /// Views per sample the loader must produce.
    fn views(&self) -> usize {
        1
    }
    /// Training images of a batch of `slots` loader samples, as the epoch
    /// records count them (GLMC's B instance-sampled of its 2B slots).
    fn images(&self, slots: usize) -> usize {
        slots
    }
    /// Which of L_rb and L_con the method reports.
    fn reports(&self) -> (bool, bool) {
        (false, false)
    }
    /// The state of the step's random generator (checkpointed), if it has one.
    fn rng_state(&self) -> Option<[u64; 4]> {
        None
    }
}

/// GLMC (and its ablations and its Balanced Softmax variant, by
/// [`LossConfig`]) on a paired batch `[2 views, 2B, C, H, W]`: view 0 gives
/// U1 / W1, view 1 gives U2 / W2; the first B slots are instance-sampled
/// (U), the last B class-weighted (W).
pub struct GlmcStep {
    pub cfg: LossConfig,
    /// Mixing Beta(β, β).
    pub beta: f64,
    rng: Rng,
}

/// [`Rng::derive`] stream of GLMC's λ / box draws for a run's seed.
pub const STREAM_MIX: u64 = 0x61c3;

impl GlmcStep {
    /// `rng` draws λ and the CutMix box, one pair per step.
    pub fn new(cfg: LossConfig, beta: f64, rng: Rng) -> Self {
        GlmcStep { cfg, beta, rng }
    }

    /// The generator a run of seed `seed` starts with.
    pub fn rng_for_seed(seed: u64) -> Rng {
        Rng::derive(seed, &[STREAM_MIX])
    }
}

impl Step for GlmcStep {
    fn loss(&mut self, m: &StepModel<'_>, x: &Tensor, y: &Tensor, alpha: f64) -> Result<StepLoss> {
        let size = x.size();
        if size.len() != 5 || size[0] != 2 || size[1] % 2 != 0 || size[1] == 0 {
            return Err(GlmcError::Shape { what: "batch", got: size, expected: "[2 views, 2B slots, C, H, W]".into() });
        }
        let b = size[1] / 2;
        let (v0, v1) = (m.view(x, 0)?, m.view(x, 1)?);
        let (u1, w1) = (v0.f_narrow(0, 0, b)?, v0.f_narrow(0, b, b)?);
        let (u2, w2) = (v1.f_narrow(0, 0, b)?, v1.f_narrow(0, b, b)?);
        let (y_u, y_w) = (y.f_narrow(0, 0, b)?, y.f_narrow(0, b, b)?);
        let mix = MixParams::draw(&mut self.rng, self.beta, size[3], size[4]);
        let batch = GlmcBatch { u1: &u1, u2: &u2, w1: &w1, w2: &w2, y_u: &y_u, y_w: &y_w };
        let terms = m.precision.forward(|| loss::glmc_loss(m.net, &batch, &mix, m.stats, &self.cfg, alpha))?;
        Ok(StepLoss { terms, mix: Some(mix) })
    }
    fn views(&self) -> usize {
        2
    }
    fn images(&self, slots: usize) -> usize {
        slots / 2
    }
    fn reports(&self) -> (bool, bool) {
        (self.cfg.reweight, self.cfg.uses_consistency())
    }
    fn rng_state(&self) -> Option<[u64; 4]> {
        Some(self.rng.state())
    }
}

/// The cross-entropy baseline: one view, hard labels, head g.
pub struct CrossEntropyStep;

impl Step for CrossEntropyStep {
    fn loss(&mut self, m: &StepModel<'_>, x: &Tensor, y: &Tensor, _alpha: f64) -> Result<StepLoss> {
        let xn = m.view(x, 0)?;
        Ok(StepLoss { terms: m.precision.forward(|| loss::cross_entropy_loss(m.net, &xn, y))?, mix: None })
    }
}

/// The second stage: the encoder frozen (run in inference mode, without a
/// graph), g_cb trained with a [`FinetuneLossFn`] and kept in the MaxNorm
/// ball, projected every iteration or every epoch.
pub struct HeadOnlyStep {
    pub loss: FinetuneLossFn,
    pub maxnorm: MaxNorm,
}

impl Step for HeadOnlyStep {
    fn loss(&mut self, m: &StepModel<'_>, x: &Tensor, y: &Tensor, _alpha: f64) -> Result<StepLoss> {
        let xn = m.view(x, 0)?;
        let feat = tch::no_grad(|| m.precision.forward(|| m.net.features(&xn, false)))?.f_to_kind(Kind::Float)?;
        let l = self.loss.loss(&m.net.head_cb.forward(&feat)?, y)?;
        let terms = LossTerms { total: l.shallow_clone(), sup: l, rb: None, con: None, alpha: 1.0, kappa: 0.0 };
        Ok(StepLoss { terms, mix: None })
    }
    fn after_update(&mut self, net: &GlmcNet) -> Result<()> {
        if self.maxnorm.every == ProjectEvery::Iteration {
            self.maxnorm.project(&net.head_cb.ws)?;
        }
        Ok(())
    }
    fn after_epoch(&mut self, net: &GlmcNet) -> Result<()> {
        if self.maxnorm.every == ProjectEvery::Epoch {
            self.maxnorm.project(&net.head_cb.ws)?;
        }
        Ok(())
    }
}

/// Below this scale (fp16's smallest subnormal) every scaled gradient
/// underflows: the overflows are not the scale's fault and the run diverged.
const MIN_LOSS_SCALE: f64 = 5.960_464_477_539_063e-8;

/// What an applied (or skipped) step gives back.
#[derive(Clone, Copy, Debug)]
pub struct StepOutcome {
    /// The loss terms before the update (data-parallel: their mean over the
    /// ranks).
    pub values: LossValues,
    /// fp16 only: the gradients overflowed and the update was skipped.
    pub skipped: bool,
    pub mix: Option<MixParams>,
}

/// The update every method shares, around an [`Sgd`]: the parameters it
/// updates, the dynamic loss scaler under fp16 autocast, and, for
/// data-parallel training, the [`DataParallel`] that averages the gradients.
pub struct Updater {
    params: Vec<Tensor>,
    scaler: Option<LossScaler>,
    dp: Option<DataParallel>,
}

impl Updater {
    /// `params` are the tensors the scaler unscales (the optimizer's);
    /// `scaler` is [`PrecisionConfig::loss_scaler`] for a step that runs under
    /// fp16 autocast, `None` for one in full precision.
    pub fn new(params: Vec<Tensor>, scaler: Option<LossScaler>) -> Self {
        Updater { params, scaler, dp: None }
    }

    /// Data-parallel updates: every [`Updater::apply`] all-reduces the loss
    /// values and averages the gradients over `dp`'s group (see the module
    /// docs). `dp` reduces the optimizer's parameters.
    pub fn with_data_parallel(mut self, dp: DataParallel) -> Self {
        self.dp = Some(dp);
        self
    }

    pub fn data_parallel(&self) -> Option<&DataParallel> {
        self.dp.as_ref()
    }

    pub fn loss_scale(&self) -> Option<&LossScaler> {
        self.scaler.as_ref()
    }

    pub fn loss_scale_state(&self) -> Option<LossScaleState> {
        self.scaler.as_ref().map(|s| s.state())
    }

    pub fn set_loss_scale_state(&mut self, st: LossScaleState) -> Result<()> {
        match &mut self.scaler {
            Some(s) => s.set_state(st),
            None => Ok(()),
        }
    }

    /// Runs `step` on one batch and applies its update. `at` = (global step,
    /// 0-based epoch) names a non-finite loss. Under fp16, an overflow skips
    /// the update and backs the scale off (not an error) unless the scale
    /// has collapsed. Reads the loss back (synchronises with the device).
    /// Data-parallel, it is a collective: every rank calls it once per step.
    pub fn apply(
        &mut self,
        opt: &mut Sgd,
        step: &mut dyn Step,
        m: &StepModel<'_>,
        (x, y): (&Tensor, &Tensor),
        alpha: f64,
        at: (u64, usize),
    ) -> Result<StepOutcome> {
        let StepLoss { terms, mix } = step.loss(m, x, y, alpha)?;
        let mut values = terms.values()?;
        if let Some(dp) = &self.dp {
            values = world_mean(dp, values)?;
        }
        let skipped = match &mut self.scaler {
            Some(sc) => {
                let o = match &mut self.dp {
                    // The scaled loss's graph is the loss's: the reducer
                    // finds the same unused parameters from it.
                    Some(dp) => sc.step_with(opt, &self.params, &terms.total, |scaled| dp.backward(scaled))?,
                    None => sc.step(opt, &self.params, &terms.total)?,
                };
                if o.skipped() && sc.scale() < MIN_LOSS_SCALE {
                    return Err(GlmcError::NonFiniteLoss { step: at.0, epoch: at.1, value: values.total });
                }
                o.skipped()
            }
            None => {
                if !values.total.is_finite() {
                    return Err(GlmcError::NonFiniteLoss { step: at.0, epoch: at.1, value: values.total });
                }
                opt.zero_grad()?;
                match &mut self.dp {
                    Some(dp) => dp.backward(&terms.total)?,
                    None => terms.total.f_backward()?,
                }
                opt.step()?;
                false
            }
        };
        if !skipped {
            step.after_update(m.net)?;
        }
        Ok(StepOutcome { values, skipped, mix })
    }
}

/// The mean over the ranks of `[total, sup, rb, con]` (one f64 all-reduce;
/// a term the method does not have stays `None`, on every rank alike).
fn world_mean(dp: &DataParallel, v: LossValues) -> Result<LossValues> {
    let mut t = Tensor::from_slice(&[v.total, v.sup, v.rb.unwrap_or(0.0), v.con.unwrap_or(0.0)]);
    dp.pg().all_reduce_mean(&mut t)?;
    let mean = Vec::<f64>::try_from(t)?;
    Ok(LossValues { total: mean[0], sup: mean[1], rb: v.rb.map(|_| mean[2]), con: v.con.map(|_| mean[3]), alpha: v.alpha })
}
