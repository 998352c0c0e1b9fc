//! `lt-report`: finished runs, without libtorch.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, Result};
use clap::{Parser, Subcommand};
use lt_report::compare::{self, RunResult, COMPARE_MD, COMPARE_PNG};

/// Compare finished lt-train runs (their report.json), without libtorch.
///
/// Examples:
///   lt-report compare glmc=runs/demo-glmc ce=runs/demo-ce --out runs/demo-compare
#[derive(Parser, Debug)]
#[command(name = "lt-report", version, about, verbatim_doc_comment)]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand, Debug)]
enum Cmd {
    /// Runs on the same data side by side
    ///
    /// Prints one many/medium/few table of the runs' last evaluations and
    /// writes it, with each class's accuracy per run, to OUT/compare.md, and
    /// the per-class accuracies of all runs on one plot to
    /// OUT/per_class_compare.png.
    #[command(verbatim_doc_comment)]
    Compare {
        /// LABEL=RUN_DIR (or RUN_DIR, labelled by its folder name), two or more
        #[arg(required = true, num_args = 2.., value_name = "LABEL=RUN_DIR")]
        runs: Vec<String>,
        /// Output directory for compare.md and per_class_compare.png
        #[arg(long, short)]
        out: PathBuf,
    },
}

fn run(cli: Cli) -> Result<()> {
    match cli.cmd {
        Cmd::Compare { runs, out } => {
            let runs = runs
                .iter()
                .map(|a| {
                    let (label, dir) = match a.split_once('=') {
                        Some((l, d)) => (l.to_string(), PathBuf::from(d)),
                        None => {
                            let d = PathBuf::from(a);
                            (d.file_name().map_or_else(|| a.clone(), |n| n.to_string_lossy().into_owned()), d)
                        }
                    };
                    RunResult::load(&label, &dir).with_context(|| format!("run {a}"))
                })
                .collect::<Result<Vec<_>>>()?;
            let table = compare::compare(&runs, &out)?;
            print!("{table}");
            println!("wrote {} and {}", out.join(COMPARE_MD).display(), out.join(COMPARE_PNG).display());
            Ok(())
        }
    }
}

fn main() -> ExitCode {
    match run(Cli::parse()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("lt-report: error: {e:#}");
            ExitCode::from(2)
        }
    }
}
