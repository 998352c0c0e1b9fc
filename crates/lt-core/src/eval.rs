//! Evaluation metrics from counts: top-1, top-5, per-class accuracy, many /
//! medium / few and the expected calibration error (15 equal-width
//! confidence bins, Guo et al. 2017: `ECE = Σ_b |B_b|/N · |acc(B_b) −
//! conf(B_b)|`, bins `(i/15, (i+1)/15]`).
//!
//! [`EvalCounts`] holds only sums, so the counts of several batches, or of
//! several processes that each evaluated a shard of the test set, add up to
//! exactly the counts of one pass ([`EvalCounts::merge`]). The trainer fills
//! them from logits (`lt_glmc::metrics::EvalAccumulator`).
//!
//! Group accuracy is the mean of its classes' accuracies (the long-tail
//! literature's convention); classes without test samples are left out.
//!
//! ```
//! use lt_core::eval::EvalCounts;
//! use lt_core::groups::GroupThresholds;
//! let mut c = EvalCounts::new(2);
//! c.add(0, true, true, 0.9);
//! c.add(1, false, true, 0.6);
//! let r = c.report(&[500, 5], GroupThresholds::default()).unwrap();
//! assert_eq!((r.top1, r.top5, r.per_class.clone()), (0.5, 1.0, vec![Some(1.0), Some(0.0)]));
//! assert_eq!((r.many, r.few), (Some(1.0), Some(0.0)));
//! ```

use serde::{Deserialize, Serialize};

use crate::groups::{GroupThresholds, Groups};
use crate::{CoreError, Result};

/// The classifier an evaluation reads: GLMC's conventional head g or its
/// re-balanced head g_cb.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum Head {
    #[serde(rename = "g")]
    G,
    #[serde(rename = "g_cb")]
    GCb,
}

impl Head {
    /// The paper's name: `g` or `g_cb`.
    pub fn paper_name(self) -> &'static str {
        match self {
            Head::G => "g",
            Head::GCb => "g_cb",
        }
    }
    /// The model's tensor-name prefix: `head` or `head_cb`.
    pub fn name(self) -> &'static str {
        match self {
            Head::G => "head",
            Head::GCb => "head_cb",
        }
    }
}

/// Number of ECE bins.
pub const ECE_BINS: usize = 15;

/// Per-class and per-confidence-bin sums of one evaluation.
#[derive(Clone, Debug, PartialEq)]
pub struct EvalCounts {
    pub total: Vec<u64>,
    pub correct1: Vec<u64>,
    pub correct5: Vec<u64>,
    pub bin_count: [u64; ECE_BINS],
    pub bin_conf: [f64; ECE_BINS],
    pub bin_correct: [f64; ECE_BINS],
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

impl EvalCounts {
    pub fn new(num_classes: usize) -> Self {
        EvalCounts {
            total: vec![0; num_classes],
            correct1: vec![0; num_classes],
            correct5: vec![0; num_classes],
            bin_count: [0; ECE_BINS],
            bin_conf: [0.0; ECE_BINS],
            bin_correct: [0.0; ECE_BINS],
        }
    }

    pub fn num_classes(&self) -> usize {
        self.total.len()
    }

    /// Adds one sample of class `label` (`< num_classes`): whether the top
    /// prediction and the top 5 hit it, and the top prediction's softmax
    /// probability (in (0, 1]).
    pub fn add(&mut self, label: usize, top1: bool, top5: bool, confidence: f64) {
        self.total[label] += 1;
        self.correct1[label] += top1 as u64;
        self.correct5[label] += top5 as u64;
        // Bin (b/15, (b+1)/15]; confidences are > 0 after a softmax.
        let b = ((confidence * ECE_BINS as f64).ceil() as usize).clamp(1, ECE_BINS) - 1;
        self.bin_count[b] += 1;
        self.bin_conf[b] += confidence;
        self.bin_correct[b] += top1 as u64 as f64;
    }

    /// Adds another evaluation's counts (another batch, another shard).
    pub fn merge(&mut self, other: &EvalCounts) -> Result<()> {
        if other.num_classes() != self.num_classes() {
            return Err(CoreError::ClassMismatch {
                what: "evaluation counts to merge",
                expected: self.num_classes(),
                got: other.num_classes(),
            });
        }
        let add = |a: &mut [u64], b: &[u64]| a.iter_mut().zip(b).for_each(|(a, b)| *a += b);
        add(&mut self.total, &other.total);
        add(&mut self.correct1, &other.correct1);
        add(&mut self.correct5, &other.correct5);
        add(&mut self.bin_count, &other.bin_count);
        self.bin_conf.iter_mut().zip(&other.bin_conf).for_each(|(a, b)| *a += b);
        self.bin_correct.iter_mut().zip(&other.bin_correct).for_each(|(a, b)| *a += b);
        Ok(())
    }

    /// The metrics, with groups from the training counts.
    pub fn report(&self, train_counts: &[usize], thresholds: GroupThresholds) -> Result<EvalReport> {
        let classes = self.num_classes();
        if train_counts.len() != classes {
            return Err(CoreError::ClassMismatch { what: "training class counts", expected: classes, got: train_counts.len() });
        }
        let n: u64 = self.total.iter().sum();
        let nf = n.max(1) as f64;
        let per_class: Vec<Option<f64>> =
            (0..classes).map(|c| (self.total[c] > 0).then(|| self.correct1[c] as f64 / self.total[c] as f64)).collect();
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn merged_halves_equal_one_pass() {
        let samples =
            [(0usize, true, true, 0.95), (1, false, true, 0.4), (2, false, false, 0.2), (1, true, true, 0.7), (0, false, true, 1.0)];
        let mut one = EvalCounts::new(3);
        samples.iter().for_each(|&(y, a, b, c)| one.add(y, a, b, c));
        let (mut h1, mut h2) = (EvalCounts::new(3), EvalCounts::new(3));
        samples[..2].iter().for_each(|&(y, a, b, c)| h1.add(y, a, b, c));
        samples[2..].iter().for_each(|&(y, a, b, c)| h2.add(y, a, b, c));
        h1.merge(&h2).unwrap();
        let t = GroupThresholds::default();
        assert_eq!(h1.report(&[200, 50, 5], t).unwrap(), one.report(&[200, 50, 5], t).unwrap());
        assert!(h1.merge(&EvalCounts::new(4)).is_err());
        assert!(one.report(&[1, 2], t).is_err());
    }

    #[test]
    fn ece_bins_are_right_closed() {
        // Confidence exactly 1/15 belongs to the first bin, just above it to the second.
        let mut c = EvalCounts::new(1);
        c.add(0, true, true, 1.0 / 15.0);
        c.add(0, false, true, 1.0 / 15.0 + 1e-9);
        assert_eq!(&c.bin_count[..3], &[1, 1, 0]);
        let r = c.report(&[10], GroupThresholds::default()).unwrap();
        let want = ((1.0 - 1.0 / 15.0) + (1.0 / 15.0 + 1e-9)) / 2.0;
        assert!((r.ece - want).abs() < 1e-12, "{} vs {want}", r.ece);
    }
}
