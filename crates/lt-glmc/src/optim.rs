//! SGD with momentum and weight decay, and the learning-rate schedules.
//!
//! Our own optimizer (not `tch::nn::Optimizer`) so that the momentum buffers
//! can be saved and restored by name for an exact resume. The update is
//! PyTorch's `torch.optim.SGD` (dampening 0, no Nesterov):
//!
//! ```text
//! d_p = g + wd·p
//! buf = μ·buf + d_p          (buf = d_p on the first step)
//! p  -= lr·buf
//! ```
//! Parameters without a gradient are skipped, as PyTorch does.

use std::collections::HashMap;
use std::path::Path;

use serde::{Deserialize, Serialize};
use tch::nn::VarStore;
use tch::Tensor;

use crate::error::{GlmcError, Result, TorchContext};

/// Optimizer settings.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SgdConfig {
    pub lr: f64,
    #[serde(default = "default_momentum")]
    pub momentum: f64,
    pub weight_decay: f64,
}

fn default_momentum() -> f64 {
    0.9
}

impl Default for SgdConfig {
    fn default() -> Self {
        SgdConfig { lr: 0.01, momentum: 0.9, weight_decay: 5e-3 }
    }
}

/// SGD over a named parameter list (sorted by name).
#[derive(Debug)]
pub struct Sgd {
    params: Vec<(String, Tensor)>,
    bufs: Vec<Option<Tensor>>,
    cfg: SgdConfig,
    lr: f64,
}

impl Sgd {
    /// Every trainable variable of `vs`.
    pub fn new(vs: &VarStore, cfg: SgdConfig) -> Self {
        let named = vs.variables().into_iter().filter(|(_, t)| t.requires_grad()).collect();
        Self::with_params(named, cfg)
    }

    /// Only the trainable variables whose name starts with one of `prefixes`
    /// (e.g. `["head_cb."]` for classifier fine-tuning).
    pub fn with_prefixes(vs: &VarStore, prefixes: &[&str], cfg: SgdConfig) -> Self {
        let named = vs.variables().into_iter().filter(|(n, t)| t.requires_grad() && prefixes.iter().any(|p| n.starts_with(p))).collect();
        Self::with_params(named, cfg)
    }

    pub fn with_params(mut named: Vec<(String, Tensor)>, cfg: SgdConfig) -> Self {
        named.sort_by(|a, b| a.0.cmp(&b.0));
        let bufs = named.iter().map(|_| None).collect();
        Sgd { params: named, bufs, lr: cfg.lr, cfg }
    }

    pub fn lr(&self) -> f64 {
        self.lr
    }

    pub fn set_lr(&mut self, lr: f64) {
        self.lr = lr;
    }

    pub fn config(&self) -> &SgdConfig {
        &self.cfg
    }

    /// The tensors this optimizer updates.
    pub fn params(&self) -> Vec<Tensor> {
        self.params.iter().map(|(_, p)| p.shallow_clone()).collect()
    }

    pub fn param_names(&self) -> impl Iterator<Item = &str> {
        self.params.iter().map(|(n, _)| n.as_str())
    }

    /// Zeroes the gradients that exist.
    pub fn zero_grad(&mut self) -> Result<()> {
        for (_, p) in &self.params {
            let mut g = p.grad();
            if g.defined() {
                let _ = g.f_detach_()?;
                let _ = g.f_zero_()?;
            }
        }
        Ok(())
    }

    /// One update with the current learning rate.
    pub fn step(&mut self) -> Result<()> {
        let (mu, wd, lr) = (self.cfg.momentum, self.cfg.weight_decay, self.lr);
        tch::no_grad(|| -> Result<()> {
            for ((name, p), buf) in self.params.iter_mut().zip(self.bufs.iter_mut()) {
                let g = p.grad();
                if !g.defined() {
                    continue;
                }
                let mut step = || -> std::result::Result<(), tch::TchError> {
                    let d_p = if wd != 0.0 { g.f_add(&p.f_mul_scalar(wd)?)? } else { g.shallow_clone() };
                    let dir = if mu != 0.0 {
                        match buf {
                            Some(b) => {
                                let _ = b.f_mul_scalar_(mu)?;
                                let _ = b.f_add_(&d_p)?;
                                b.shallow_clone()
                            }
                            None => {
                                let b = d_p.f_detach_copy()?;
                                *buf = Some(b.shallow_clone());
                                b
                            }
                        }
                    } else {
                        d_p
                    };
                    let _ = p.f_sub_(&dir.f_mul_scalar(lr)?)?;
                    Ok(())
                };
                step().ctx(|| format!("SGD update of {name}"))?;
            }
            Ok(())
        })
    }

    /// The momentum buffers that exist, by parameter name.
    pub fn buffers(&self) -> Vec<(String, Tensor)> {
        self.params.iter().zip(&self.bufs).filter_map(|((n, _), b)| b.as_ref().map(|b| (n.clone(), b.shallow_clone()))).collect()
    }

    /// Replaces the momentum buffers (parameters absent from `bufs` start
    /// without one). Unknown names and shape mismatches are errors.
    pub fn set_buffers(&mut self, bufs: Vec<(String, Tensor)>) -> Result<()> {
        let mut map: HashMap<String, Tensor> = bufs.into_iter().collect();
        let mut new = Vec::with_capacity(self.params.len());
        for (name, p) in &self.params {
            match map.remove(name) {
                Some(b) => {
                    if b.size() != p.size() {
                        return Err(GlmcError::State {
                            what: "momentum buffer",
                            why: format!("{name}: shape {:?}, parameter {:?}", b.size(), p.size()),
                        });
                    }
                    new.push(Some(b.f_to_kind(p.kind())?.f_to_device(p.device())?));
                }
                None => new.push(None),
            }
        }
        if let Some(extra) = map.keys().next() {
            return Err(GlmcError::State { what: "momentum buffer", why: format!("{extra} is not an optimized parameter") });
        }
        self.bufs = new;
        Ok(())
    }

    /// Writes the buffers as safetensors (names = parameter names).
    pub fn save_buffers(&self, path: &Path) -> Result<()> {
        let cpu: Vec<(String, Tensor)> =
            self.buffers().into_iter().map(|(n, t)| Ok((n, t.f_to_device(tch::Device::Cpu)?.f_contiguous()?))).collect::<Result<_>>()?;
        Tensor::write_safetensors(&cpu, path).ctx(|| format!("writing {}", path.display()))
    }

    pub fn load_buffers(&mut self, path: &Path) -> Result<()> {
        let t = Tensor::read_safetensors(path).ctx(|| format!("reading {}", path.display()))?;
        self.set_buffers(t)
    }
}

/// Learning-rate schedules, stepped once per epoch.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum LrSchedule {
    Constant,
    /// `lr_e = lr·½(1 + cos(π·e/E))` (the authors' CIFAR schedule).
    #[default]
    Cosine,
    /// `lr·(e + 1)/W` for the first W epochs, then cosine over the remaining
    /// `E − W`: `lr·½(1 + cos(π·(e − W)/(E − W)))` (ImageNet-LT, iNaturalist:
    /// W = 10).
    WarmupCosine {
        warmup_epochs: usize,
    },
    /// The authors' ImageNet-LT / iNaturalist schedule, exactly:
    /// `paco_adjust_learning_rate(epoch)` in their Trainer.py runs *after*
    /// epoch `epoch` and sets the next epoch's rate, so epoch 0 trains at the
    /// full `lr`, epoch `k ≤ W + 1` at `lr·k/W` (epoch W + 1 at 1.1·lr with
    /// W = 10: their `epoch <= warmup_epochs` test is inclusive), and epoch
    /// `k > W + 1` at `lr·½(1 + cos(π·(k − W)/(E − W + 1)))`.
    Paco {
        warmup_epochs: usize,
    },
}

impl LrSchedule {
    /// The learning rate of 0-based epoch `epoch` of `epochs`.
    pub fn lr(&self, base: f64, epoch: usize, epochs: usize) -> f64 {
        let cosine = |e: usize, n: usize| {
            if n == 0 {
                base
            } else {
                base * 0.5 * (1.0 + (std::f64::consts::PI * e as f64 / n as f64).cos())
            }
        };
        match *self {
            LrSchedule::Constant => base,
            LrSchedule::Cosine => cosine(epoch, epochs),
            LrSchedule::WarmupCosine { warmup_epochs: w } => {
                if epoch < w {
                    base * (epoch + 1) as f64 / w as f64
                } else {
                    cosine(epoch - w, epochs.saturating_sub(w))
                }
            }
            LrSchedule::Paco { warmup_epochs: w } => {
                // The rate set after epoch `e = epoch − 1`.
                match epoch.checked_sub(1) {
                    None => base,
                    Some(e) if e <= w => base / w.max(1) as f64 * (e + 1) as f64,
                    Some(e) => base * 0.5 * (1.0 + (std::f64::consts::PI * (e - w + 1) as f64 / (epochs - w + 1) as f64).cos()),
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::LrSchedule;

    /// The authors' schedule (GLMC-2023/Trainer.py), called after each epoch:
    ///
    /// ```python
    /// def paco_adjust_learning_rate(self, optimizer, epoch, args):
    ///     warmup_epochs = 10
    ///     lr = self.lr
    ///     if epoch <= warmup_epochs:
    ///         lr = self.lr / warmup_epochs * (epoch + 1)
    ///     else:  # cosine lr schedule
    ///         lr *= 0.5 * (1. + math.cos(math.pi * (epoch - warmup_epochs + 1) / (self.epochs - warmup_epochs + 1)))
    /// ```
    ///
    /// Rates per 0-based training epoch for lr 0.1, E = 135 (ImageNet-LT),
    /// printed by running that function in Python after each epoch.
    #[test]
    fn paco_matches_the_authors_per_epoch_table() {
        let table = [
            (0, 0.1),
            (1, 0.01),
            (2, 0.02),
            (9, 0.09),
            (10, 0.1),
            (11, 0.11),
            (12, 0.09993784606094612),
            (13, 0.099860189859059),
            (70, 0.05373650467932122),
            (133, 0.00013981014094099353),
            (134, 6.215393905388278e-05),
        ];
        let s = LrSchedule::Paco { warmup_epochs: 10 };
        for (e, want) in table {
            let got = s.lr(0.1, e, 135);
            assert!((got - want).abs() <= 1e-15, "epoch {e}: {got} vs {want}");
        }
    }
}
