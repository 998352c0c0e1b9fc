//! GLMC labels and losses: the soft and class-weighted labels, L_sup, L_rb,
//! the consistency L_con and the cumulative mix of the three.
//!
//! ```text
//! y   = λ·onehot(U) + (1 − λ)·onehot(W)
//! ỹ   = λ·v_{y_U}·onehot(U) + (1 − λ)·v_{y_W}·onehot(W),  v_c = n_c^(−p) / Σ_k n_k^(−p) · C
//! CE(logits, t) = −mean_i Σ_c t_ic log softmax_ic
//! L_sup = CE(g(h_g), y) + CE(g(h_l), y)
//! L_rb  = CE(g_cb(h_g), ỹ) + CE(g_cb(h_l), ỹ)
//! L_con = −cos(u_g, sg(z_l)) − cos(u_l, sg(z_g))      (each cosine a batch mean)
//! α = 1 − (e/E)²
//! L = α·L_sup + (1 − α)·L_rb + κ·L_con
//! ```

use serde::{Deserialize, Serialize};
use tch::{Device, Kind, Tensor};

use crate::error::{GlmcError, Result};
use crate::mix::{cutmix, mixup, MixParams};
use crate::model::{GlmcNet, HeadSet};

/// The loss used for the re-balanced head g_cb.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RebalancedLoss {
    /// GLMC's class-re-weighted soft labels ỹ.
    #[default]
    Reweighted,
    /// Balanced Softmax: `CE(g_cb(h) + log n, y)` with the plain mixed labels
    /// y (the log-prior already compensates the imbalance, so ỹ's weights
    /// would count it twice). Inference uses g_cb without the offset.
    BalancedSoftmax,
}

/// Which objective a training step optimizes.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LossConfig {
    /// κ, the consistency weight.
    pub kappa: f64,
    /// Ablation switch: `false` drops L_con and skips P and Q.
    pub consistency: bool,
    /// Ablation switch: `false` drops L_rb and keeps α = 1 (then evaluate g).
    pub reweight: bool,
    pub rebalanced: RebalancedLoss,
}

impl Default for LossConfig {
    fn default() -> Self {
        LossConfig { kappa: 1.0, consistency: true, reweight: true, rebalanced: RebalancedLoss::Reweighted }
    }
}

impl LossConfig {
    pub fn with_kappa(mut self, kappa: f64) -> Self {
        self.kappa = kappa;
        self
    }
    pub fn with_consistency(mut self, on: bool) -> Self {
        self.consistency = on;
        self
    }
    pub fn with_reweight(mut self, on: bool) -> Self {
        self.reweight = on;
        self
    }
    pub fn with_rebalanced(mut self, r: RebalancedLoss) -> Self {
        self.rebalanced = r;
        self
    }
    pub fn uses_consistency(&self) -> bool {
        self.consistency && self.kappa != 0.0
    }
}

/// Per-class constants of the loss, on the device.
#[derive(Debug)]
pub struct ClassStats {
    /// v_c of [`lt_core::weights::label_weights`].
    pub label_weights: Tensor,
    /// log n_c (Balanced Softmax).
    pub log_counts: Tensor,
    pub num_classes: i64,
}

impl ClassStats {
    /// From the training counts n_c and the label-weight exponent p.
    pub fn try_new(counts: &[usize], p: f64, device: tch::Device, kind: Kind) -> Result<Self> {
        if counts.is_empty() {
            return Err(lt_core::CoreError::NoClasses.into());
        }
        let v = lt_core::weights::label_weights(counts, p);
        let logn: Vec<f64> = counts.iter().map(|&n| (n.max(1) as f64).ln()).collect();
        Ok(ClassStats {
            label_weights: Tensor::f_from_slice(&v)?.f_to_kind(kind)?.f_to_device(device)?,
            log_counts: Tensor::f_from_slice(&logn)?.f_to_kind(kind)?.f_to_device(device)?,
            num_classes: counts.len() as i64,
        })
    }
}

/// `y = λ·onehot(U) + (1 − λ)·onehot(W)`.
pub fn mixed_labels(y_u: &Tensor, y_w: &Tensor, lambda: f64, num_classes: i64, kind: Kind) -> Result<Tensor> {
    let oh_u = y_u.f_one_hot(num_classes)?.f_to_kind(kind)?;
    let oh_w = y_w.f_one_hot(num_classes)?.f_to_kind(kind)?;
    Ok(oh_u.f_mul_scalar(lambda)?.f_add(&oh_w.f_mul_scalar(1.0 - lambda)?)?)
}

/// `ỹ = λ·v_{y_U}·onehot(U) + (1 − λ)·v_{y_W}·onehot(W)`.
pub fn weighted_labels(y_u: &Tensor, y_w: &Tensor, lambda: f64, label_weights: &Tensor) -> Result<Tensor> {
    let c = label_weights.size()[0];
    let kind = label_weights.kind();
    let oh_u = y_u.f_one_hot(c)?.f_to_kind(kind)?;
    let oh_w = y_w.f_one_hot(c)?.f_to_kind(kind)?;
    let v_u = label_weights.f_index_select(0, y_u)?.f_unsqueeze(1)?;
    let v_w = label_weights.f_index_select(0, y_w)?.f_unsqueeze(1)?;
    let a = oh_u.f_mul(&v_u)?.f_mul_scalar(lambda)?;
    let b = oh_w.f_mul(&v_w)?.f_mul_scalar(1.0 - lambda)?;
    Ok(a.f_add(&b)?)
}

/// Soft cross-entropy `CE(logits, t) = −mean_i Σ_c t_ic log softmax_ic`.
pub fn soft_cross_entropy(logits: &Tensor, target: &Tensor) -> Result<Tensor> {
    let logp = logits.f_log_softmax(1, logits.kind())?;
    Ok(logp.f_mul(target)?.f_sum_dim_intlist(1, false, None)?.f_mean(None)?.f_neg()?)
}

/// `−mean_i cos(u_i, sg(z_i))`: SimSiam's negative cosine with a stop-gradient.
pub fn negative_cosine(u: &Tensor, z: &Tensor) -> Result<Tensor> {
    Ok(Tensor::f_cosine_similarity(u, &z.f_detach()?, 1, 1e-8)?.f_mean(None)?.f_neg()?)
}

/// Every term of one step's loss, kept apart for logging and tests.
#[derive(Debug)]
pub struct LossTerms {
    /// L_sup (for the cross-entropy baseline: its CE).
    pub sup: Tensor,
    /// L_rb (None when re-weighting is off or for the baseline).
    pub rb: Option<Tensor>,
    /// L_con (None when consistency is off or for the baseline).
    pub con: Option<Tensor>,
    /// α of this epoch (1 when re-weighting is off).
    pub alpha: f64,
    pub kappa: f64,
    /// L, the tensor to back-propagate.
    pub total: Tensor,
}

/// Scalars of [`LossTerms`], for logs and JSON lines.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct LossValues {
    pub total: f64,
    pub sup: f64,
    pub rb: Option<f64>,
    pub con: Option<f64>,
    pub alpha: f64,
}

impl LossTerms {
    /// Reads the scalars (synchronizes with the device).
    pub fn values(&self) -> Result<LossValues> {
        let f = |t: &Tensor| t.f_double_value(&[]);
        Ok(LossValues {
            total: f(&self.total)?,
            sup: f(&self.sup)?,
            rb: self.rb.as_ref().map(f).transpose()?,
            con: self.con.as_ref().map(f).transpose()?,
            alpha: self.alpha,
        })
    }

    /// The total as f64, or [`GlmcError::NonFiniteLoss`] naming the step.
    pub fn check_finite(&self, step: u64, epoch: usize) -> Result<f64> {
        let value = self.total.f_double_value(&[])?;
        if value.is_finite() {
            Ok(value)
        } else {
            Err(GlmcError::NonFiniteLoss { step, epoch, value })
        }
    }
}

/// One GLMC batch: two normalized views of the instance-sampled images (U)
/// and of the class-weighted ones (W), with their labels, all on the device.
#[derive(Debug)]
pub struct GlmcBatch<'a> {
    pub u1: &'a Tensor,
    pub u2: &'a Tensor,
    pub w1: &'a Tensor,
    pub w2: &'a Tensor,
    pub y_u: &'a Tensor,
    pub y_w: &'a Tensor,
}

/// The GLMC loss of one step (mixtures, both forwards, labels, loss terms), with `alpha` from
/// [`lt_core::weights::cumulative_alpha`]. The network runs in training mode,
/// once on X_g and once on X_l (as the authors' code does, so BatchNorm sees
/// each mixture's own statistics).
pub fn glmc_loss(
    net: &GlmcNet,
    batch: &GlmcBatch<'_>,
    mix: &MixParams,
    stats: &ClassStats,
    cfg: &LossConfig,
    alpha: f64,
) -> Result<LossTerms> {
    let lambda = mix.lambda;
    if !(0.0..=1.0).contains(&lambda) {
        return Err(GlmcError::setting("lambda", format!("{lambda} is outside [0, 1]")));
    }
    let x_g = mixup(batch.u1, batch.w1, lambda)?;
    let x_l = cutmix(batch.u2, batch.w2, &mix.cut)?;
    let kind = x_g.kind();
    let y = mixed_labels(batch.y_u, batch.y_w, lambda, stats.num_classes, kind)?;

    let heads = HeadSet { proj: cfg.uses_consistency() };
    let og = net.forward_heads(&x_g, true, heads)?;
    let ol = net.forward_heads(&x_l, true, heads)?;

    let sup = soft_cross_entropy(&og.logits, &y)?.f_add(&soft_cross_entropy(&ol.logits, &y)?)?;
    let rb = if cfg.reweight {
        Some(match cfg.rebalanced {
            RebalancedLoss::Reweighted => {
                let yt = weighted_labels(batch.y_u, batch.y_w, lambda, &stats.label_weights)?;
                soft_cross_entropy(&og.logits_cb, &yt)?.f_add(&soft_cross_entropy(&ol.logits_cb, &yt)?)?
            }
            RebalancedLoss::BalancedSoftmax => {
                let lg = og.logits_cb.f_add(&stats.log_counts)?;
                let ll = ol.logits_cb.f_add(&stats.log_counts)?;
                soft_cross_entropy(&lg, &y)?.f_add(&soft_cross_entropy(&ll, &y)?)?
            }
        })
    } else {
        None
    };
    let con = match (&og.u, &og.z, &ol.u, &ol.z) {
        (Some(u_g), Some(z_g), Some(u_l), Some(z_l)) => Some(negative_cosine(u_g, z_l)?.f_add(&negative_cosine(u_l, z_g)?)?),
        _ => None,
    };

    let alpha = if cfg.reweight { alpha } else { 1.0 };
    let mut total = sup.f_mul_scalar(alpha)?;
    if let Some(rb) = &rb {
        total = total.f_add(&rb.f_mul_scalar(1.0 - alpha)?)?;
    }
    if let Some(con) = &con {
        total = total.f_add(&con.f_mul_scalar(cfg.kappa)?)?;
    }
    Ok(LossTerms { sup, rb, con, alpha, kappa: cfg.kappa, total })
}

/// The plain cross-entropy baseline: no mixing, hard labels, head g only.
pub fn cross_entropy_loss(net: &GlmcNet, x: &Tensor, y: &Tensor) -> Result<LossTerms> {
    let out = net.forward_heads(x, true, HeadSet { proj: false })?;
    let logp = out.logits.f_log_softmax(1, out.logits.kind())?;
    let ce = logp.f_nll_loss::<&Tensor>(y, None, tch::Reduction::Mean, -100)?;
    Ok(LossTerms { total: ce.shallow_clone(), sup: ce, rb: None, con: None, alpha: 1.0, kappa: 0.0 })
}

/// The fine-tuning loss of g_cb.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FinetuneLoss {
    /// The reference's class-balanced loss: per-class weights
    /// `(1 − β)/(1 − β^{n_c})` normalised to sum to C, applied to the binary
    /// cross-entropy of the softmax probabilities against the one-hot label
    /// (`CB_loss(..., loss_type="softmax")`), averaged over N × C.
    #[default]
    #[serde(rename = "cb")]
    ClassBalanced,
    /// Plain cross-entropy.
    #[serde(rename = "ce")]
    CrossEntropy,
    /// Balanced Softmax: cross-entropy of `logits + log n_c`.
    BalancedSoftmax,
}

/// The fine-tuning loss of g_cb ([`FinetuneLoss`]) with its per-class
/// constants.
#[derive(Debug)]
pub struct FinetuneLossFn {
    kind: FinetuneLoss,
    /// Class-balanced weights (`cb`) or `log n_c` (`balanced_softmax`).
    per_class: Option<tch::Tensor>,
}

impl FinetuneLossFn {
    /// `cb_beta` is the class-balanced loss's β (used by
    /// [`FinetuneLoss::ClassBalanced`] only).
    pub fn try_new(kind: FinetuneLoss, cb_beta: f64, counts: &[usize], device: Device) -> Result<Self> {
        let c = counts.len() as f64;
        let per_class = match kind {
            FinetuneLoss::CrossEntropy => None,
            FinetuneLoss::ClassBalanced => {
                // CB_loss: effective_num = 1 − β^n; w = (1 − β)/effective_num;
                // w = w / Σ w · C.
                let w: Vec<f64> = counts.iter().map(|&n| (1.0 - cb_beta) / (1.0 - cb_beta.powf(n.max(1) as f64))).collect();
                let sum: f64 = w.iter().sum();
                let w: Vec<f32> = w.iter().map(|v| (v / sum * c) as f32).collect();
                Some(tch::Tensor::f_from_slice(&w)?.f_to_device(device)?)
            }
            FinetuneLoss::BalancedSoftmax => {
                let l: Vec<f32> = counts.iter().map(|&n| (n.max(1) as f64).ln() as f32).collect();
                Some(tch::Tensor::f_from_slice(&l)?.f_to_device(device)?)
            }
        };
        Ok(FinetuneLossFn { kind, per_class })
    }

    /// The mean loss of `logits` (N, C) against labels `y` (N).
    pub fn loss(&self, logits: &tch::Tensor, y: &tch::Tensor) -> Result<tch::Tensor> {
        let ce = |l: &tch::Tensor| -> Result<tch::Tensor> {
            Ok(l.f_log_softmax(1, Kind::Float)?.f_nll_loss::<&tch::Tensor>(y, None, tch::Reduction::Mean, -100)?)
        };
        match (self.kind, &self.per_class) {
            (FinetuneLoss::BalancedSoftmax, Some(logn)) => ce(&logits.f_add(logn)?),
            (FinetuneLoss::ClassBalanced, Some(w)) => {
                // F.binary_cross_entropy(softmax(logits), onehot, weight=w[y]
                // repeated over the classes), mean over N × C: libtorch's own
                // op, whose backward stays finite where a probability reaches
                // 0 or 1 (a hand-written log would give 0 · ∞ = NaN there).
                let c = logits.size()[1];
                let p = logits.f_softmax(1, Kind::Float)?;
                let t = y.f_one_hot(c)?.f_to_kind(Kind::Float)?;
                let wy = w.f_index_select(0, y)?.f_unsqueeze(1)?.f_expand([-1, c], false)?.f_contiguous()?;
                Ok(p.f_binary_cross_entropy(&t, Some(&wy), tch::Reduction::Mean)?)
            }
            _ => ce(logits),
        }
    }
}
