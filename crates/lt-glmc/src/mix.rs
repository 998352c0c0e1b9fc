//! Normalization and the two GLMC mixtures (global MixUp, local CutMix), on the device.
//!
//! The loader hands over uint8 NCHW batches (4× fewer bytes to copy than
//! f32); [`Normalizer`] converts them after the transfer. [`MixParams`]
//! holds the per-step λ and CutMix box, drawn from [`lt_core::rng::Rng`] by
//! [`MixParams::draw`] or given explicitly (tests, replays).

use lt_core::rng::Rng;
use serde::{Deserialize, Serialize};
use tch::{Device, Kind, Tensor};

use crate::error::{GlmcError, Result};

/// Per-channel `(x / 255 − mean_c) / std_c` for uint8 NCHW batches.
#[derive(Debug)]
pub struct Normalizer {
    mean: Tensor,
    std: Tensor,
    kind: Kind,
}

impl Normalizer {
    pub fn try_new(mean: &[f64], std: &[f64], device: Device, kind: Kind) -> Result<Self> {
        if mean.is_empty() || mean.len() != std.len() {
            return Err(GlmcError::setting("normalization", format!("{} means for {} stds", mean.len(), std.len())));
        }
        if let Some(s) = std.iter().find(|s| !s.is_finite() || **s <= 0.0) {
            return Err(GlmcError::setting("normalization", format!("std {s} must be finite and > 0")));
        }
        let c = mean.len() as i64;
        let mean = Tensor::f_from_slice(mean)?.f_to_kind(kind)?.f_view([1, c, 1, 1])?.f_to_device(device)?;
        let std = Tensor::f_from_slice(std)?.f_to_kind(kind)?.f_view([1, c, 1, 1])?.f_to_device(device)?;
        Ok(Normalizer { mean, std, kind })
    }

    /// For a model of `channels` input channels from statistics of the data:
    /// grey statistics for an RGB model are repeated, RGB ones for a grey
    /// model averaged; any other mismatch is an error.
    pub fn for_channels(mean: &[f64], std: &[f64], channels: i64, device: Device, kind: Kind) -> Result<Self> {
        let (mean, std) = match (mean.len() as i64, channels) {
            (m, c) if m == c => (mean.to_vec(), std.to_vec()),
            (1, c) => (vec![mean[0]; c as usize], vec![std.first().copied().unwrap_or(f64::NAN); c as usize]),
            (m, 1) if std.len() as i64 == m => (vec![mean.iter().sum::<f64>() / m as f64], vec![std.iter().sum::<f64>() / m as f64]),
            (m, c) => return Err(GlmcError::setting("normalization", format!("{m} channel statistics for a {c}-channel model"))),
        };
        Normalizer::try_new(&mean, &std, device, kind)
    }

    /// The per-channel mean and std in use.
    pub fn stats(&self) -> Result<(Vec<f64>, Vec<f64>)> {
        let cpu = |t: &Tensor| -> Result<Vec<f64>> {
            Ok(Vec::<f64>::try_from(t.f_to_device(Device::Cpu)?.f_to_kind(Kind::Double)?.f_flatten(0, -1)?)?)
        };
        Ok((cpu(&self.mean)?, cpu(&self.std)?))
    }

    /// Normalizes `x` (uint8 or float, NCHW, already on the device).
    pub fn apply(&self, x: &Tensor) -> Result<Tensor> {
        let x = x.f_to_device(self.mean.device())?.f_to_kind(self.kind)?;
        Ok(x.f_div_scalar(255.0)?.f_sub(&self.mean)?.f_div(&self.std)?)
    }
}

/// The CutMix box, half-open `[y0, y1) × [x0, x1)` in pixels.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CutBox {
    pub y0: i64,
    pub y1: i64,
    pub x0: i64,
    pub x1: i64,
}

impl CutBox {
    /// The box for mixing weight `lambda` centred at `(cy, cx)`, exactly as
    /// the authors' `rand_bbox` (utils/util.py) computes it: `cut =
    /// ceil(side · sqrt(1 − λ))` per axis, box `[c − cut/2, c + cut/2)`
    /// (integer division) clipped to the image. For an odd `cut` the box is
    /// one pixel narrower than `cut`; the labels keep λ whatever the box's
    /// area, as in the authors' `GLMC_mixed`.
    pub fn centred(height: i64, width: i64, lambda: f64, cy: i64, cx: i64) -> CutBox {
        let r = (1.0 - lambda).clamp(0.0, 1.0).sqrt();
        let half_h = (height as f64 * r).ceil() as i64 / 2;
        let half_w = (width as f64 * r).ceil() as i64 / 2;
        CutBox {
            y0: (cy - half_h).clamp(0, height),
            y1: (cy + half_h).clamp(0, height),
            x0: (cx - half_w).clamp(0, width),
            x1: (cx + half_w).clamp(0, width),
        }
    }

    pub fn area(&self) -> i64 {
        (self.y1 - self.y0).max(0) * (self.x1 - self.x0).max(0)
    }
}

/// The random choices of one GLMC step.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct MixParams {
    /// Weight of the instance-sampled batch U in both mixtures and labels.
    pub lambda: f64,
    pub cut: CutBox,
}

impl MixParams {
    /// λ ~ Beta(β, β) and a box centre uniform over the image.
    ///
    /// Note: the authors' code draws λ from Beta(1, 1) (uniform) whatever its
    /// `--beta` flag says; pass `beta = 1.0` to reproduce it.
    pub fn draw(rng: &mut Rng, beta: f64, height: i64, width: i64) -> MixParams {
        let lambda = rng.beta(beta, beta);
        let cy = rng.below(height as u64) as i64;
        let cx = rng.below(width as u64) as i64;
        MixParams { lambda, cut: CutBox::centred(height, width, lambda, cy, cx) }
    }
}

/// Global mixture `X_g = λ·U1 + (1 − λ)·W1`.
pub fn mixup(u1: &Tensor, w1: &Tensor, lambda: f64) -> Result<Tensor> {
    Ok(u1.f_mul_scalar(lambda)?.f_add(&w1.f_mul_scalar(1.0 - lambda)?)?)
}

/// Local mixture: `X_l = U2` with the box replaced by W2's pixels.
pub fn cutmix(u2: &Tensor, w2: &Tensor, cut: &CutBox) -> Result<Tensor> {
    let out = u2.f_detach_copy()?;
    let (h, w) = (cut.y1 - cut.y0, cut.x1 - cut.x0);
    if h > 0 && w > 0 {
        let src = w2.f_narrow(2, cut.y0, h)?.f_narrow(3, cut.x0, w)?;
        let mut dst = out.f_narrow(2, cut.y0, h)?.f_narrow(3, cut.x0, w)?;
        dst.f_copy_(&src)?;
    }
    Ok(out)
}
