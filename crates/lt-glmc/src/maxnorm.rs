//! MaxNorm classifier fine-tuning: projected gradient descent onto a per-row
//! norm ball (Alshammari et al., "Long-Tailed Recognition via Weight
//! Balancing", CVPR 2022; GLMC's optional second stage).
//!
//! As in their `MaxNorm_via_PGD`: the threshold is fixed once, from the
//! weight at set-up, `thresh = min_r ‖W_r‖ + t·(max_r ‖W_r‖ − min_r ‖W_r‖)`;
//! each projection then rescales every row whose norm exceeds it to norm
//! `thresh`. Biases (1-D) are left alone (their threshold is ∞ there).

use serde::{Deserialize, Serialize};
use tch::Tensor;

use crate::error::{GlmcError, Result};

/// When the projection runs.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ProjectEvery {
    /// After every optimizer step (the default, as in the reference code).
    #[default]
    Iteration,
    Epoch,
}

#[derive(Clone, Debug, PartialEq)]
pub struct MaxNorm {
    /// t in the threshold formula (0.1 in the reference code).
    pub thresh_ratio: f64,
    pub every: ProjectEvery,
    thresh: Option<f64>,
}

impl MaxNorm {
    pub fn new(thresh_ratio: f64, every: ProjectEvery) -> Self {
        MaxNorm { thresh_ratio, every, thresh: None }
    }

    /// The fixed threshold, once set.
    pub fn threshold(&self) -> Option<f64> {
        self.thresh
    }

    /// Fixes the threshold from `weight` (rows = classes).
    pub fn set_threshold(&mut self, weight: &Tensor) -> Result<f64> {
        let n = row_norms(weight)?;
        let (lo, hi) = (n.f_min()?.f_double_value(&[])?, n.f_max()?.f_double_value(&[])?);
        let t = lo + self.thresh_ratio * (hi - lo);
        self.thresh = Some(t);
        Ok(t)
    }

    /// Fixes the threshold to a known value (resuming a fine-tuning run).
    pub fn with_threshold(mut self, thresh: f64) -> Result<Self> {
        if !(thresh.is_finite() && thresh > 0.0) {
            return Err(GlmcError::setting("maxnorm threshold", format!("{thresh} (must be finite and > 0)")));
        }
        self.thresh = Some(thresh);
        Ok(self)
    }

    /// Projects `weight` in place (sets the threshold first if needed).
    pub fn project(&mut self, weight: &Tensor) -> Result<()> {
        if weight.dim() < 2 {
            return Err(GlmcError::Shape { what: "MaxNorm weight", got: weight.size(), expected: "a matrix (classes, features)".into() });
        }
        let t = match self.thresh {
            Some(t) => t,
            None => self.set_threshold(weight)?,
        };
        tch::no_grad(|| -> Result<()> {
            let n = row_norms(weight)?;
            let mut shape = vec![-1i64];
            shape.extend(std::iter::repeat_n(1, weight.dim() - 1));
            let n = n.f_view(shape.as_slice())?;
            let scale = n.f_reciprocal()?.f_mul_scalar(t)?;
            let ones = scale.f_ones_like()?;
            let scale = scale.f_where_self(&n.f_gt(t)?, &ones)?;
            let mut w = weight.shallow_clone();
            let _ = w.f_mul_(&scale)?;
            Ok(())
        })
    }
}

fn row_norms(w: &Tensor) -> Result<Tensor> {
    let rows = w.size()[0];
    Ok(w.f_detach()?.f_reshape([rows, -1])?.f_norm_scalaropt_dim(2.0, [1i64].as_slice(), false)?)
}
