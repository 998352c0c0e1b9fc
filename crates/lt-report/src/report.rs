//! The final report of a run: `report.md` (Markdown tables), `report.json`
//! (the last evaluation in full, the best epoch) and the two plots of
//! [`crate::plot`].

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use lt_core::eval::{EvalReport, Head};
use lt_core::groups::{Group, GroupThresholds};
use serde::{Deserialize, Serialize};

use crate::error::{ReportError, Result};
use crate::plot::{plot_curves, plot_per_class, CURVES_PNG, PER_CLASS_PNG};
use crate::records::{best_epoch, read_metrics, EpochRecord, EvalSummary};

pub const REPORT_MD: &str = "report.md";
pub const REPORT_JSON: &str = "report.json";

fn pct(v: Option<f64>) -> String {
    v.map_or_else(|| "–".into(), |v| format!("{:.2}", 100.0 * v))
}

/// What the report says about the run's settings, filled by the trainer
/// from its recipe.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RunHeader {
    /// The recipe's name (the report's title).
    pub name: String,
    /// The method, as the title names it (`Glmc`, `CrossEntropy`, …).
    pub method: String,
    /// The architecture, as the summary line names it.
    pub arch: String,
    /// The planned number of epochs.
    pub epochs: usize,
    /// The other settings of the summary line, in order, as (label, value):
    /// `("batch", "128")` reads "batch 128".
    pub settings: Vec<(String, String)>,
    /// The many / medium / few thresholds of the evaluation.
    pub groups: GroupThresholds,
}

/// Run facts shown at the top of the report.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct RunInfo {
    pub shards: PathBuf,
    pub device: String,
    pub epochs_done: usize,
    pub class_names: Vec<String>,
    pub counts: Vec<usize>,
    pub fingerprint: String,
}

/// The report's headline: top-1, top-5, the groups and ECE of the last
/// epoch and, when one was evaluated, of the best epoch, as a Markdown table.
pub fn headline_table(eval: &EvalReport, records: &[EpochRecord]) -> String {
    let mut md = String::from("| | top-1 | top-5 | many | medium | few | ECE |\n|---|---|---|---|---|---|---|\n");
    let mut row = |label: String, s: &EvalSummary| {
        let cells = [Some(s.top1), Some(s.top5), s.many, s.medium, s.few, Some(s.ece)].map(pct);
        let _ = writeln!(md, "| {label} | {} |", cells.join(" | "));
    };
    row("last epoch".into(), &EvalSummary::from(eval));
    if let Some((e, b)) = best_epoch(records) {
        row(format!("best epoch ({})", e + 1), &b);
    }
    md
}

/// Both heads' accuracies at the last evaluation that recorded them (GLMC
/// trains a conventional head g and a re-balanced head g_cb; the recipe
/// picks the one the report's numbers are from). Empty for records of
/// earlier versions.
pub fn heads_table(records: &[EpochRecord]) -> String {
    let Some((e, t)) = records.iter().rev().find_map(|r| r.test.filter(|t| t.head.is_some()).map(|t| (r.epoch, t))) else {
        return String::new();
    };
    let (Some(head), Some(g), Some(g_cb)) = (t.head, t.g, t.g_cb) else { return String::new() };
    let mut md = format!(
        "\nThe numbers above are the **{}** head's. Both heads at epoch {} (GLMC's conventional classifier g and \
         its re-balanced classifier g_cb):\n\n| head | top-1 | many | medium | few |\n|---|---|---|---|---|\n",
        head.paper_name(),
        e + 1
    );
    for (h, a) in [(Head::G, g), (Head::GCb, g_cb)] {
        let mark = if h == head { " (reported)" } else { "" };
        let _ = writeln!(md, "| {}{mark} | {} | {} | {} | {} |", h.paper_name(), pct(Some(a.top1)), pct(a.many), pct(a.medium), pct(a.few));
    }
    md
}

/// Writes report.md, report.json and both plots into `out`; returns the
/// Markdown. `note`, a paragraph ending in a blank line, goes right under
/// the title (fine-tuning says there what its stage did).
pub fn write_report(
    out: &Path,
    header: &RunHeader,
    info: &RunInfo,
    records: &[EpochRecord],
    eval: &EvalReport,
    note: Option<&str>,
) -> Result<String> {
    let t = header.groups;
    plot_per_class(&out.join(PER_CLASS_PNG), &info.counts, &eval.per_class, t)?;
    plot_curves(&out.join(CURVES_PNG), records)?;
    let mut md = String::new();
    let _ = writeln!(md, "# {} — {}\n", header.name, header.method);
    md.push_str(note.unwrap_or_default());
    let settings: String = header.settings.iter().map(|(k, v)| format!(", {k} {v}")).collect();
    let _ = writeln!(
        md,
        "Data `{}` ({} classes, {} training images, fingerprint `{}`), {}, {} of {} epochs{settings}, device {}.\n",
        info.shards.display(),
        info.counts.len(),
        info.counts.iter().sum::<usize>(),
        &info.fingerprint[..info.fingerprint.len().min(12)],
        header.arch,
        info.epochs_done,
        header.epochs,
        info.device,
    );
    md.push_str(&headline_table(eval, records));
    md.push_str(&heads_table(records));
    let _ = writeln!(
        md,
        "\n*last epoch* is the model this run ends with (and its checkpoint); *best epoch* is the evaluated epoch \
         with the highest top-1, which the authors' code also logs (`Best Prec@1`). Selecting it looks at the test \
         set, so quote the last epoch as the result.\n"
    );
    let _ = writeln!(
        md,
        "Accuracies in %, on {} test images. Groups by training images per class: many > {} ({} classes), \
         medium {}–{} ({}), few ≤ {} ({}); a group's accuracy is the mean over its classes.\n",
        eval.samples,
        t.many_above,
        eval.groups.many.len(),
        t.few_at_most + 1,
        t.many_above,
        eval.groups.medium.len(),
        t.few_at_most,
        eval.groups.few.len()
    );
    let _ = writeln!(md, "## Per class\n\n![per-class accuracy against training frequency]({PER_CLASS_PNG})\n");
    let _ = writeln!(
        md,
        "x: training images per class (log scale); y: test accuracy (0–1); blue many, orange medium, red few; \
         dashed lines at the group thresholds.\n"
    );
    let _ = writeln!(md, "| class | name | train | group | accuracy |\n|---|---|---|---|---|");
    for (k, (&n, a)) in info.counts.iter().zip(&eval.per_class).enumerate() {
        let g = match t.group(n) {
            Group::Many => "many",
            Group::Medium => "medium",
            Group::Few => "few",
        };
        let name = info.class_names.get(k).map(String::as_str).unwrap_or("");
        let _ = writeln!(md, "| {k} | {name} | {n} | {g} | {} |", pct(*a));
    }
    let _ = writeln!(md, "\n## Curves\n\n![loss and accuracy curves]({CURVES_PNG})\n");
    let _ = writeln!(
        md,
        "Left: mean training loss per epoch (black total, blue L_sup, orange L_rb, purple L_con + 2). \
         Right: test accuracy (black top-1, blue many, orange medium, red few). x: epoch.\n"
    );
    let _ = writeln!(md, "| epoch | lr | α | loss | L_sup | L_rb | L_con | img/s | top-1 | many | medium | few | ECE |");
    let _ = writeln!(md, "|---|---|---|---|---|---|---|---|---|---|---|---|---|");
    for r in records {
        let f = |v: Option<f64>| v.map_or_else(|| "–".into(), |v| format!("{v:.4}"));
        let te = r.test.as_ref();
        let _ = writeln!(
            md,
            "| {} | {:.5} | {:.3} | {:.4} | {:.4} | {} | {} | {:.0} | {} | {} | {} | {} | {} |",
            r.epoch + 1,
            r.lr,
            r.alpha,
            r.loss,
            r.loss_sup,
            f(r.loss_rb),
            f(r.loss_con),
            r.train_images_per_s,
            pct(te.map(|t| t.top1)),
            pct(te.and_then(|t| t.many)),
            pct(te.and_then(|t| t.medium)),
            pct(te.and_then(|t| t.few)),
            pct(te.map(|t| t.ece)),
        );
    }
    let p = out.join(REPORT_MD);
    std::fs::write(&p, &md).map_err(|source| ReportError::Io { path: p.clone(), source })?;
    let j = out.join(REPORT_JSON);
    let body = serde_json::json!({
        "header": header,
        "info": info,
        "final": eval,
        "best": best_epoch(records).map(|(e, b)| serde_json::json!({ "epoch": e, "test": b })),
    });
    std::fs::write(&j, serde_json::to_vec_pretty(&body).map_err(|source| ReportError::Json { path: j.clone(), source })?)
        .map_err(|source| ReportError::Io { path: j.clone(), source })?;
    Ok(md)
}

/// Redraws a run directory's two plots from what the run wrote
/// (`metrics.jsonl`, `report.json`), e.g. after an upgrade of the plotting
/// code, with the run's group thresholds. `report.md` is left as it is.
pub fn replot(run: &Path, groups: GroupThresholds) -> Result<()> {
    let records = read_metrics(run)?;
    let j = run.join(REPORT_JSON);
    let text = std::fs::read_to_string(&j).map_err(|source| ReportError::Io { path: j.clone(), source })?;
    /// The layout [`write_report`] writes.
    #[derive(Deserialize)]
    struct ReportJson {
        info: RunInfo,
        #[serde(rename = "final")]
        eval: EvalReport,
    }
    let r: ReportJson = serde_json::from_str(&text).map_err(|source| ReportError::Json { path: j.clone(), source })?;
    let (counts, acc) = (&r.info.counts, &r.eval.per_class);
    if counts.len() != acc.len() {
        return Err(ReportError::Inconsistent { path: j, why: format!("{} class counts for {} accuracies", counts.len(), acc.len()) });
    }
    plot_per_class(&run.join(PER_CLASS_PNG), counts, acc, groups)?;
    plot_curves(&run.join(CURVES_PNG), &records)
}
