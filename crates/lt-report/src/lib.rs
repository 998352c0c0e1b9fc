//! # lt-report
//!
//! Run records and reports for lt-glmc, without libtorch, so that anything
//! that reads or redraws a run (and these tests) needs no libtorch:
//!
//! - [`records`]: `metrics.jsonl`, one [`EpochRecord`] per epoch (losses,
//!   learning rate, α, throughput, the test-set [`EvalSummary`]), and the
//!   best evaluated epoch;
//! - [`report`]: `report.md` and `report.json` from a small [`RunHeader`]
//!   (the settings the summary line names), the run's [`RunInfo`], the
//!   records and the last [`EvalReport`](lt_core::eval::EvalReport);
//! - [`plot`]: `per_class.png` (accuracy against training images per class,
//!   coloured by group) and `curves.png` (loss and accuracy per epoch);
//! - [`tensorboard`]: the same scalars (and per-step ones) as TensorBoard
//!   event files, [`EventWriter`];
//! - [`compare`]: runs side by side (`lt-report compare`): one many /
//!   medium / few table and one per-class plot.
//!
//! The trainer (`lt-train`) fills these at every evaluation and at the end
//! of a run; `lt-train replot RUN` redraws the plots of a finished run, and
//! the `lt-report` binary compares finished runs.

pub mod compare;
pub mod error;
pub mod plot;
pub mod records;
pub mod report;
pub mod tensorboard;

pub use error::{ReportError, Result};
pub use records::{append_metrics, best_epoch, read_metrics, write_metrics, EpochRecord, EvalSummary, METRICS_FILE};
pub use report::{headline_table, replot, write_report, RunHeader, RunInfo, REPORT_JSON, REPORT_MD};
pub use tensorboard::{epoch_scalars, EventWriter};
