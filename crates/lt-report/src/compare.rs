//! Runs side by side: the last evaluation of several run directories
//! (their `report.json`) as one many / medium / few table, and their
//! per-class accuracies on one plot (`lt-report compare`).

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use lt_core::eval::EvalReport;
use lt_core::groups::GroupThresholds;
use serde::Deserialize;

use crate::error::{ReportError, Result};
use crate::plot::plot_per_class_runs;
use crate::report::{RunHeader, RunInfo, REPORT_JSON};

/// The comparison's files.
pub const COMPARE_MD: &str = "compare.md";
pub const COMPARE_PNG: &str = "per_class_compare.png";

/// One run's last evaluation, as its report.json holds it.
#[derive(Clone, Debug)]
pub struct RunResult {
    pub label: String,
    pub dir: PathBuf,
    pub info: RunInfo,
    pub eval: EvalReport,
    /// The run's group thresholds (older reports: the default ones).
    pub groups: GroupThresholds,
}

impl RunResult {
    /// Reads `dir/report.json`.
    pub fn load(label: &str, dir: &Path) -> Result<Self> {
        #[derive(Deserialize)]
        struct ReportJson {
            info: RunInfo,
            #[serde(rename = "final")]
            eval: EvalReport,
            #[serde(default)]
            header: Option<RunHeader>,
        }
        let j = dir.join(REPORT_JSON);
        let text = std::fs::read_to_string(&j).map_err(|source| ReportError::Io { path: j.clone(), source })?;
        let r: ReportJson = serde_json::from_str(&text).map_err(|source| ReportError::Json { path: j.clone(), source })?;
        let groups = r.header.map_or_else(GroupThresholds::default, |h| h.groups);
        Ok(RunResult { label: label.to_string(), dir: dir.to_path_buf(), info: r.info, eval: r.eval, groups })
    }
}

fn pct(v: Option<f64>) -> String {
    v.map_or_else(|| "–".into(), |v| format!("{:.2}", 100.0 * v))
}

/// The Markdown table of `runs`: top-1, top-5, many, medium, few, ECE.
pub fn table(runs: &[RunResult]) -> String {
    let mut md = String::from("| run | top-1 | top-5 | many | medium | few | ECE |\n|---|---|---|---|---|---|---|\n");
    for r in runs {
        let e = &r.eval;
        let cells = [Some(e.top1), Some(e.top5), e.many, e.medium, e.few, Some(e.ece)].map(pct);
        let _ = writeln!(md, "| {} | {} |", r.label, cells.join(" | "));
    }
    md
}

/// Compares runs trained on the same data (same classes and training
/// counts): writes `compare.md` (the table and each run's per-class
/// accuracy) and `per_class_compare.png` into `out`; returns the table.
pub fn compare(runs: &[RunResult], out: &Path) -> Result<String> {
    let Some(first) = runs.first() else {
        return Err(ReportError::Inconsistent { path: out.to_path_buf(), why: "no runs to compare".into() });
    };
    for r in &runs[1..] {
        if r.info.counts != first.info.counts || r.info.class_names != first.info.class_names {
            let why = format!("trained on other data than {} (class names or training counts differ)", first.dir.display());
            return Err(ReportError::Inconsistent { path: r.dir.join(REPORT_JSON), why });
        }
    }
    std::fs::create_dir_all(out).map_err(|source| ReportError::Io { path: out.to_path_buf(), source })?;
    let series: Vec<(&str, &[Option<f64>])> = runs.iter().map(|r| (r.label.as_str(), r.eval.per_class.as_slice())).collect();
    plot_per_class_runs(&out.join(COMPARE_PNG), &first.info.counts, &series, first.groups)?;
    let t = table(runs);
    let mut md = format!("# Runs compared\n\nLast epoch of each run; accuracies in %.\n\n{t}\n");
    let _ = writeln!(md, "![per-class accuracy by run]({COMPARE_PNG})\n");
    let _ = write!(md, "| class | name | train |");
    for r in runs {
        let _ = write!(md, " {} |", r.label);
    }
    let _ = writeln!(md, "\n|---|---|---|{}", "---|".repeat(runs.len()));
    for (k, n) in first.info.counts.iter().enumerate() {
        let name = first.info.class_names.get(k).map_or("", String::as_str);
        let _ = write!(md, "| {k} | {name} | {n} |");
        for r in runs {
            let _ = write!(md, " {} |", pct(r.eval.per_class.get(k).copied().flatten()));
        }
        md.push('\n');
    }
    let p = out.join(COMPARE_MD);
    std::fs::write(&p, md).map_err(|source| ReportError::Io { path: p.clone(), source })?;
    Ok(t)
}
