//! Evaluation from logits: [`EvalAccumulator`] turns batches of logits and
//! labels into [`lt_core::eval::EvalCounts`] (per-class hits and the ECE
//! bins; only small per-sample vectors leave the device), whose
//! [`EvalCounts::report`](lt_core::eval::EvalCounts::report) gives top-1,
//! top-5, per-class, many / medium / few accuracy and the ECE.

use lt_core::groups::GroupThresholds;
use tch::{Kind, Tensor};

use crate::error::{GlmcError, Result};

pub use lt_core::eval::{EvalCounts, EvalReport, ECE_BINS};

/// Accumulates predictions batch by batch.
#[derive(Clone, Debug)]
pub struct EvalAccumulator {
    counts: EvalCounts,
}

impl EvalAccumulator {
    pub fn new(num_classes: usize) -> Self {
        EvalAccumulator { counts: EvalCounts::new(num_classes) }
    }

    /// Adds a batch of logits (N, C) with labels (N).
    pub fn update(&mut self, logits: &Tensor, labels: &Tensor) -> Result<()> {
        let classes = self.counts.num_classes();
        let size = logits.size();
        if size.len() != 2 || size[1] as usize != classes {
            return Err(GlmcError::Shape { what: "logits", got: size, expected: format!("(N, {classes})") });
        }
        let logits = logits.f_detach()?.f_to_kind(Kind::Double)?;
        let k = classes.min(5);
        let (conf, pred) = logits.f_softmax(1, Kind::Double)?.f_max_dim(1, false)?;
        let (_, top) = logits.f_topk(k as i64, 1, true, true)?;
        let cpu = tch::Device::Cpu;
        let conf = Vec::<f64>::try_from(conf.f_to_device(cpu)?)?;
        let pred = Vec::<i64>::try_from(pred.f_to_device(cpu)?)?;
        let top = Vec::<i64>::try_from(top.f_to_device(cpu)?.f_flatten(0, -1)?)?;
        let labels = Vec::<i64>::try_from(labels.f_to_device(cpu)?.f_to_kind(Kind::Int64)?)?;
        if labels.len() != pred.len() {
            return Err(GlmcError::Shape { what: "labels", got: vec![labels.len() as i64], expected: format!("({})", pred.len()) });
        }
        for (i, &y) in labels.iter().enumerate() {
            if y < 0 || y as usize >= classes {
                return Err(GlmcError::Label { label: y, classes });
            }
            self.counts.add(y as usize, pred[i] == y, top[i * k..(i + 1) * k].contains(&y), conf[i]);
        }
        Ok(())
    }

    /// An accumulator holding `counts` (e.g. merged across processes).
    pub fn from_counts(counts: EvalCounts) -> Self {
        EvalAccumulator { counts }
    }

    /// The counts so far.
    pub fn counts(&self) -> &EvalCounts {
        &self.counts
    }

    /// The metrics, with groups from the training counts.
    pub fn finish(&self, train_counts: &[usize], thresholds: GroupThresholds) -> Result<EvalReport> {
        Ok(self.counts.report(train_counts, thresholds)?)
    }
}
