//! `lt-build`: long-tailed Parquet shards from a real dataset. The flags
//! and commands are in [`args`]; the library (`lt_build`) does the work.

mod args;

use args::{InspectArgs, Run, FLAGS};
use indicatif::{ProgressBar, ProgressStyle};
use lt_build::{BuildError, BuildReport, Progress};
use lt_shards::Split;
use std::process::ExitCode;
use std::sync::Mutex;

struct Bar(Mutex<Option<ProgressBar>>, bool);

impl Progress for Bar {
    fn start(&self, what: &str, total: u64) {
        if self.1 {
            return;
        }
        let pb = ProgressBar::new(total);
        pb.set_style(
            ProgressStyle::with_template("{prefix:>9} [{bar:40}] {pos}/{len} {per_sec} eta {eta}")
                .expect("valid template")
                .progress_chars("=> "),
        );
        pb.set_prefix(what.to_string());
        *self.0.lock().unwrap() = Some(pb);
    }
    fn inc(&self, n: u64) {
        if let Some(pb) = self.0.lock().unwrap().as_ref() {
            pb.inc(n);
        }
    }
    fn finish(&self) {
        if let Some(pb) = self.0.lock().unwrap().take() {
            pb.finish();
        }
    }
}

fn inspect(a: InspectArgs) -> anyhow::Result<ExitCode> {
    let (text, ver) = lt_build::inspect::report(&a.dir, a.all, !a.no_verify)?;
    print!("{text}");
    Ok(if ver.problems.is_empty() { ExitCode::SUCCESS } else { ExitCode::from(1) })
}

fn run() -> anyhow::Result<ExitCode> {
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::try_from_env("LT_LOG").unwrap_or_else(|_| "warn".into()))
        .with_writer(std::io::stderr)
        .init();
    let argv: Vec<String> = std::env::args().collect();
    let (run, recipe) = args::parse(&argv)?;
    let (kind, a) = match run {
        Run::Inspect(i) => return inspect(i),
        Run::Build { kind, args } => (kind, args),
    };
    let (kind, path) = a.source(kind, recipe.as_ref())?;
    a.validate()?;
    if let Some(t) = a.threads {
        rayon::ThreadPoolBuilder::new().num_threads(t).build_global().map_err(|e| anyhow::anyhow!("--threads: {e}"))?;
    }
    let opts = a.build_options(&kind, argv)?;
    // Fail fast on flag errors before reading a large source.
    if let Some(f) = opts.imbalance {
        if !f.is_finite() || f < 1.0 {
            return Err(lt_core::CoreError::ImbalanceBelowOne(f).into());
        }
    }
    let t0 = std::time::Instant::now();
    let mut source = lt_build::sources::open(&kind, path.as_deref(), &a.source_options())?;
    let bar = Bar(Mutex::new(None), a.quiet);
    let report = lt_build::build(source.as_mut(), &a.output, &opts, &bar)?;
    print_summary(&report, t0.elapsed().as_secs_f64());
    Ok(ExitCode::SUCCESS)
}

/// What was written, how much and how fast (stderr).
fn print_summary(report: &BuildReport, secs: f64) {
    let m = &report.manifest;
    if report.replaced {
        eprintln!("replaced the earlier build in {} (--overwrite)", report.path.display());
    }
    let total = m.splits.values().map(|s| s.rows).sum::<usize>();
    eprintln!(
        "wrote {} ({} train + {} test images, {} classes) in {:.1}s, {:.0} images/s",
        report.path.display(),
        m.splits[&Split::Train].rows,
        m.splits[&Split::Test].rows,
        m.classes.len(),
        secs,
        total as f64 / secs.max(1e-9)
    );
}

/// `flag --if` or `flags --clamp, --max-per-class, --if`: the flags of the
/// settings that the errors of `e`'s chain name, in their order.
fn flag_hint(e: &anyhow::Error) -> Option<String> {
    let mut flags: Vec<&str> = Vec::new();
    for cause in e.chain() {
        let settings = if let Some(e) = cause.downcast_ref::<BuildError>() {
            e.settings()
        } else if let Some(e) = cause.downcast_ref::<lt_core::CoreError>() {
            e.settings()
        } else if let Some(e) = cause.downcast_ref::<lt_shards::ShardError>() {
            e.settings()
        } else {
            &[]
        };
        for flag in settings.iter().filter_map(|s| FLAGS.iter().find(|(name, _)| name == s).map(|(_, f)| *f)) {
            if !flags.contains(&flag) {
                flags.push(flag);
            }
        }
    }
    match flags.as_slice() {
        [] => None,
        [one] => Some(format!("flag {one}")),
        many => Some(format!("flags {}", many.join(", "))),
    }
}

fn main() -> ExitCode {
    match run() {
        Ok(c) => c,
        Err(e) => {
            let hint = flag_hint(&e).map(|h| format!(" ({h})")).unwrap_or_default();
            eprintln!("lt-build: error: {e:#}{hint}");
            ExitCode::from(2)
        }
    }
}
