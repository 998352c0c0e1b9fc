//! Run records: one [`EpochRecord`] per epoch in `metrics.jsonl` (JSON
//! lines, the run's machine-readable history), with the test-set
//! [`EvalSummary`] of the epochs that were evaluated.

use std::io::Write as _;
use std::path::Path;

use lt_core::eval::{EvalReport, Head};
use serde::{Deserialize, Serialize};

use crate::error::{ReportError, Result};

/// The per-epoch records' file in a run directory.
pub const METRICS_FILE: &str = "metrics.jsonl";

/// Test-set metrics of one evaluation, as written per epoch.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct EvalSummary {
    pub top1: f64,
    pub top5: f64,
    pub many: Option<f64>,
    pub medium: Option<f64>,
    pub few: Option<f64>,
    pub ece: f64,
    /// The head these numbers are from (absent in records of earlier versions).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub head: Option<Head>,
    /// Both heads' accuracies, g and g_cb, from the same pass.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub g: Option<HeadAccuracy>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub g_cb: Option<HeadAccuracy>,
}

impl From<&EvalReport> for EvalSummary {
    fn from(r: &EvalReport) -> Self {
        EvalSummary { top1: r.top1, top5: r.top5, many: r.many, medium: r.medium, few: r.few, ece: r.ece, head: None, g: None, g_cb: None }
    }
}

impl EvalSummary {
    /// The summary of `head`'s evaluation, with both heads' accuracies.
    pub fn of_heads(head: Head, g: &EvalReport, g_cb: &EvalReport) -> Self {
        let headline = if head == Head::GCb { g_cb } else { g };
        EvalSummary {
            head: Some(head),
            g: Some(HeadAccuracy::from(g)),
            g_cb: Some(HeadAccuracy::from(g_cb)),
            ..EvalSummary::from(headline)
        }
    }
}

/// One head's accuracies at an evaluation.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct HeadAccuracy {
    pub top1: f64,
    pub many: Option<f64>,
    pub medium: Option<f64>,
    pub few: Option<f64>,
}

impl From<&EvalReport> for HeadAccuracy {
    fn from(r: &EvalReport) -> Self {
        HeadAccuracy { top1: r.top1, many: r.many, medium: r.medium, few: r.few }
    }
}

/// One line of metrics.jsonl.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct EpochRecord {
    pub epoch: usize,
    pub lr: f64,
    pub alpha: f64,
    /// Mean over the epoch's steps of each loss term (`rb`/`con` absent
    /// when the method has none).
    pub loss: f64,
    pub loss_sup: f64,
    pub loss_rb: Option<f64>,
    pub loss_con: Option<f64>,
    /// Mean total loss over the epoch's first and last tenth of steps.
    pub loss_first: f64,
    pub loss_last: f64,
    pub steps: u64,
    /// Instance-sampled images per second (B per step, as in the CE baseline).
    pub train_images_per_s: f64,
    pub train_seconds: f64,
    pub test: Option<EvalSummary>,
    /// Steps whose optimizer update was skipped because the fp16 gradients
    /// overflowed (`perf.amp`; always 0 otherwise). The loss means above
    /// are over the applied steps only.
    #[serde(default)]
    pub skipped_steps: u64,
    /// The dynamic loss scale at the end of the epoch (`perf.amp` only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub loss_scale: Option<f64>,
}

/// Reads metrics.jsonl (missing file: no records).
pub fn read_metrics(out: &Path) -> Result<Vec<EpochRecord>> {
    let p = out.join(METRICS_FILE);
    let text = match std::fs::read_to_string(&p) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(ReportError::Io { path: p, source: e }),
    };
    text.lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| serde_json::from_str(l).map_err(|source| ReportError::Json { path: p.clone(), source }))
        .collect()
}

/// Writes `records` as metrics.jsonl, replacing the file.
pub fn write_metrics(out: &Path, records: &[EpochRecord]) -> Result<()> {
    let p = out.join(METRICS_FILE);
    let mut s = String::new();
    for r in records {
        s.push_str(&serde_json::to_string(r).map_err(|source| ReportError::Json { path: p.clone(), source })?);
        s.push('\n');
    }
    std::fs::write(&p, s).map_err(|source| ReportError::Io { path: p.clone(), source })
}

/// Appends one record to metrics.jsonl.
pub fn append_metrics(out: &Path, r: &EpochRecord) -> Result<()> {
    let p = out.join(METRICS_FILE);
    let line = serde_json::to_string(r).map_err(|source| ReportError::Json { path: p.clone(), source })?;
    let mut f =
        std::fs::OpenOptions::new().create(true).append(true).open(&p).map_err(|source| ReportError::Io { path: p.clone(), source })?;
    writeln!(f, "{line}").map_err(|source| ReportError::Io { path: p.clone(), source })
}

/// The evaluated epoch with the highest top-1 (the first one on ties), as
/// the authors' `best_acc1`; `None` when no epoch was evaluated.
pub fn best_epoch(records: &[EpochRecord]) -> Option<(usize, EvalSummary)> {
    records.iter().filter_map(|r| r.test.map(|t| (r.epoch, t))).filter(|(_, t)| t.top1.is_finite()).fold(
        None,
        |best: Option<(usize, EvalSummary)>, (e, t)| match best {
            Some((_, b)) if b.top1 >= t.top1 => best,
            _ => Some((e, t)),
        },
    )
}
