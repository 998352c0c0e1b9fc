//! Evaluation: top-1, top-5, per-class accuracy, many / medium / few and the
//! expected calibration error (15 equal-width confidence bins, Guo et al.
//! 2017: `ECE = Σ_b |B_b|/N · |acc(B_b) − conf(B_b)|`, bins `(i/15, (i+1)/15]`).
//!
//! Group accuracy is the mean of its classes' accuracies (the long-tail
//! literature's convention); classes without test samples are left out.

use lt_core::groups::{GroupThresholds, Groups};
use serde::{Deserialize, Serialize};
use tch::{Kind, Tensor};

use crate::error::{GlmcError, Result};

/// Number of ECE bins.
pub const ECE_BINS: usize = 15;

/// Accumulates predictions batch by batch (only small per-sample vectors
/// leave the device).
#[derive(Clone, Debug)]
pub struct EvalAccumulator {
    num_classes: usize,
    total: Vec<u64>,
    correct1: Vec<u64>,
    correct5: Vec<u64>,
    bin_count: [u64; ECE_BINS],
    bin_conf: [f64; ECE_BINS],
    bin_correct: [f64; ECE_BINS],
}

/// The metrics of one evaluation.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct EvalReport {
    pub samples: u64,
    pub top1: f64,
    pub top5: f64,
    /// Accuracy per class (None: no test sample of that class).
    pub per_class: Vec<Option<f64>>,
    pub many: Option<f64>,
    pub medium: Option<f64>,
    pub few: Option<f64>,
    pub ece: f64,
    pub groups: Groups,
}

impl EvalAccumulator {
    pub fn new(num_classes: usize) -> Self {
        EvalAccumulator {
            num_classes,
            total: vec![0; num_classes],
            correct1: vec![0; num_classes],
            correct5: vec![0; num_classes],
            bin_count: [0; ECE_BINS],
            bin_conf: [0.0; ECE_BINS],
            bin_correct: [0.0; ECE_BINS],
        }
    }

    /// Adds a batch of logits (N, C) with labels (N).
    pub fn update(&mut self, logits: &Tensor, labels: &Tensor) -> Result<()> {
        let size = logits.size();
        if size.len() != 2 || size[1] as usize != self.num_classes {
            return Err(GlmcError::invalid("logits", format!("shape {size:?}, expected (N, {})", self.num_classes)));
        }
        let logits = logits.f_detach()?.f_to_kind(Kind::Double)?;
        let k = self.num_classes.min(5) as i64;
        let (conf, pred) = logits.f_softmax(1, Kind::Double)?.f_max_dim(1, false)?;
        let (_, top) = logits.f_topk(k, 1, true, true)?;
        let cpu = tch::Device::Cpu;
        let conf = Vec::<f64>::try_from(conf.f_to_device(cpu)?)?;
        let pred = Vec::<i64>::try_from(pred.f_to_device(cpu)?)?;
        let top = Vec::<i64>::try_from(top.f_to_device(cpu)?.f_flatten(0, -1)?)?;
        let labels = Vec::<i64>::try_from(labels.f_to_device(cpu)?.f_to_kind(Kind::Int64)?)?;
        if labels.len() != pred.len() {
            return Err(GlmcError::invalid("labels", format!("{} labels for {} rows of logits", labels.len(), pred.len())));
        }
        for (i, &y) in labels.iter().enumerate() {
            if y < 0 || y as usize >= self.num_classes {
                return Err(GlmcError::invalid("labels", format!("label {y} outside 0..{}", self.num_classes)));
            }
            let c = y as usize;
            let ok = pred[i] == y;
            self.total[c] += 1;
            self.correct1[c] += ok as u64;
            self.correct5[c] += top[i * k as usize..(i + 1) * k as usize].contains(&y) as u64;
            // Bin (b/15, (b+1)/15]; confidences are > 0 after a softmax.
            let b = ((conf[i] * ECE_BINS as f64).ceil() as usize).clamp(1, ECE_BINS) - 1;
            self.bin_count[b] += 1;
            self.bin_conf[b] += conf[i];
            self.bin_correct[b] += ok as u64 as f64;
        }
        Ok(())
    }

    /// The metrics, with groups from the training counts.
    pub fn finish(&self, train_counts: &[usize], thresholds: GroupThresholds) -> Result<EvalReport> {
        if train_counts.len() != self.num_classes {
            return Err(GlmcError::invalid(
                "train counts",
                format!("{} classes, the evaluation has {}", train_counts.len(), self.num_classes),
            ));
        }
        let n: u64 = self.total.iter().sum();
        let nf = n.max(1) as f64;
        let per_class: Vec<Option<f64>> = (0..self.num_classes)
            .map(|c| (self.total[c] > 0).then(|| self.correct1[c] as f64 / self.total[c] as f64))
            .collect();
        let groups = Groups::from_counts(train_counts, thresholds);
        let mean_of = |cs: &[usize]| {
            let v: Vec<f64> = cs.iter().filter_map(|&c| per_class[c]).collect();
            (!v.is_empty()).then(|| v.iter().sum::<f64>() / v.len() as f64)
        };
        let ece = (0..ECE_BINS).map(|b| (self.bin_correct[b] - self.bin_conf[b]).abs()).sum::<f64>() / nf;
        Ok(EvalReport {
            samples: n,
            top1: self.correct1.iter().sum::<u64>() as f64 / nf,
            top5: self.correct5.iter().sum::<u64>() as f64 / nf,
            many: mean_of(&groups.many),
            medium: mean_of(&groups.medium),
            few: mean_of(&groups.few),
            per_class,
            ece,
            groups,
        })
    }
}
