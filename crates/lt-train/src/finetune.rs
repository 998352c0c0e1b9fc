//! MaxNorm fine-tuning of the re-balanced classifier: GLMC's optional second
//! stage (`lt-train finetune RUN_DIR`).
//!
//! Starting from a run directory's last checkpoint, the encoder and the
//! other heads are frozen and only g_cb (`head_cb.weight`, `head_cb.bias`)
//! is trained: one view with the run's training augmentation, plain labels
//! and no mixing, by default the weight-balancing reference's second stage
//! (natural sampling, its class-balanced loss, wd 0.1, projection once per
//! epoch), or cross-entropy / Balanced Softmax and class-balanced sampling
//! ([`FinetuneSection`], defaults and their source documented there), with
//! SGD. Once per epoch (or after every optimizer step, `per_epoch = false`) g_cb's
//! weight is projected row-wise onto the MaxNorm ball
//! ([`lt_glmc::maxnorm::MaxNorm`]; the threshold is fixed once from the
//! checkpoint's weight, as in the reference `MaxNorm_via_PGD`).
//!
//! The encoder runs in inference mode (BatchNorm uses and keeps its running
//! statistics), so every frozen variable, statistics included, stays
//! bit-identical to the checkpoint's.
//!
//! Every epoch ends with a checkpoint in the output directory;
//! [`FinetuneOptions::resume`] (`lt-train finetune RUN_DIR --resume`)
//! continues a stopped fine-tuning run from it and ends with the same
//! weights as a run that never stopped.
//!
//! The output is a run directory of its own (default `RUN_DIR/finetune`) with
//! the trainer's layout (`recipe.toml`, `metrics.jsonl`, `checkpoint/`,
//! report files); evaluation and reports are the trainer's
//! ([`crate::train::evaluate`], [`lt_report::write_report`]) with
//! `eval.head = "rebalanced"`.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use lt_loader::batch::Position;
use lt_loader::loader::{Loader, LoaderConfig, LoaderState, OnCorrupt};
use lt_loader::sampler::SamplerSpec;
use lt_loader::source::EncodedSource;
use tch::Device;

use crate::driver::{EpochLoop, LoopStart};
use crate::error::{Result, TrainError};
use crate::recipe::{EvalHead, FinetuneSampling, FinetuneSection, Recipe};
use crate::rundir::{self, ResumeChange, RunLock, Stage};
use crate::train::{
    self, check_dataset, convert_layout, metrics_before, precision_config, setup, start_run_dir, workers, Dataset, Observer, Setup,
    CHECKPOINT_DIR, RECIPE_FILE,
};
use lt_glmc::amp::LossScaleState;
use lt_glmc::checkpoint;
use lt_glmc::loss::FinetuneLossFn;
use lt_glmc::maxnorm::MaxNorm;
use lt_glmc::metrics::EvalReport;
use lt_glmc::optim::Sgd;
use lt_glmc::pinned::TensorAllocator;
use lt_glmc::step::{HeadOnlyStep, Updater};
use lt_report::{EpochRecord, RunInfo};

/// Default output directory, inside the source run directory.
pub const DEFAULT_OUT: &str = "finetune";

/// Name prefix of the only variables fine-tuning trains.
pub const HEAD_PREFIX: &str = "head_cb.";

/// What [`finetune`] needs.
#[derive(Clone, Debug)]
pub struct FinetuneOptions {
    /// The source run directory (its `recipe.toml` and `checkpoint/`).
    pub run: PathBuf,
    /// The shard directory; absent: the one named in the run's report.json.
    pub shards: Option<PathBuf>,
    /// Output run directory; absent: `run/finetune`.
    pub out: Option<PathBuf>,
    /// `finetune.*` recipe overrides (dotted key, TOML value).
    pub overrides: Vec<(String, String)>,
    pub device: Device,
    /// Continue the fine-tuning run in `out` from its last checkpoint.
    pub resume: bool,
    /// Stop after this many fine-tuning epochs (then resume).
    pub stop_after: Option<usize>,
}

impl FinetuneOptions {
    pub fn new(run: impl Into<PathBuf>, device: Device) -> Self {
        FinetuneOptions { run: run.into(), shards: None, out: None, overrides: Vec::new(), device, resume: false, stop_after: None }
    }
}

/// What a fine-tuning run ends with.
#[derive(Debug)]
pub struct FinetuneOutcome {
    pub out: PathBuf,
    /// The resolved recipe (as saved in `out/recipe.toml`).
    pub recipe: Recipe,
    pub records: Vec<EpochRecord>,
    pub last_eval: EvalReport,
    /// The fixed MaxNorm threshold on g_cb's row norms.
    pub threshold: f64,
    /// Fine-tuning epochs done (all of them unless stopped).
    pub epochs_done: usize,
    pub finished: bool,
    pub dataset: Dataset,
    /// report.md's text.
    pub report: String,
}

/// The source run's recipe with the `finetune.*` overrides applied, the
/// `[finetune]` section filled in with its defaults and evaluation on g_cb.
pub fn resolve_recipe(run: &Path, overrides: &[(String, String)]) -> Result<Recipe> {
    let fail = |why: String| TrainError::Finetune { path: run.to_path_buf(), why };
    let rp = run.join(RECIPE_FILE);
    if !rp.is_file() {
        return Err(fail(format!("no {RECIPE_FILE} in it (is it an lt-train run directory?)")));
    }
    let mut recipe = Recipe::load(&rp)?;
    for (k, v) in overrides {
        if !k.starts_with("finetune.") {
            return Err(fail(format!("override {k}={v}: only finetune.* keys can be changed for fine-tuning")));
        }
        recipe.set(k, v)?;
    }
    let ft = recipe.finetune.unwrap_or_default();
    ft.validate()?;
    recipe.finetune = Some(ft);
    recipe.eval.head = EvalHead::Rebalanced;
    recipe.validate()?;
    Ok(recipe)
}

/// The shard directory recorded in `run/report.json` (written by lt-train
/// at the end of a run).
pub fn shards_of_run(run: &Path) -> Result<PathBuf> {
    let p = run.join(lt_report::REPORT_JSON);
    let text = std::fs::read_to_string(&p)
        .map_err(|e| TrainError::ShardsOfRunUnknown { run: run.to_path_buf(), why: format!("{}: {e}", p.display()) })?;
    let v: serde_json::Value = serde_json::from_str(&text).map_err(|source| TrainError::Json { path: p.clone(), source })?;
    v.pointer("/info/shards")
        .and_then(|s| s.as_str())
        .map(PathBuf::from)
        .ok_or_else(|| TrainError::ShardsOfRunUnknown { run: run.to_path_buf(), why: format!("{} names none", p.display()) })
}

/// Keys of [`TrainState::extra`] that tie a fine-tuning checkpoint to its source.
const EXTRA_SOURCE_EPOCH: &str = "source_epoch";
const EXTRA_THRESHOLD: &str = "maxnorm_threshold";

/// Runs (or resumes) the second stage; see the module docs.
pub fn finetune(opts: &FinetuneOptions, obs: &mut dyn Observer) -> Result<FinetuneOutcome> {
    let run = &opts.run;
    let device = opts.device;
    let ckpt = run.join(CHECKPOINT_DIR);
    if !ckpt.join(checkpoint::STATE_FILE).is_file() {
        return Err(TrainError::Finetune {
            path: run.clone(),
            why: format!("no checkpoint ({} is missing); train the run first", ckpt.join(checkpoint::STATE_FILE).display()),
        });
    }
    let recipe = resolve_recipe(run, &opts.overrides)?;
    let ft: FinetuneSection = recipe.finetune.unwrap_or_default();
    let shards = match &opts.shards {
        Some(s) => s.clone(),
        None => shards_of_run(run)?,
    };
    let out = opts.out.clone().unwrap_or_else(|| run.join(DEFAULT_OUT));
    let out_ckpt = out.join(CHECKPOINT_DIR);
    let (_source_lock, _lock) = lock_runs(opts, &out)?;

    let prec = precision_config(&recipe.perf, device)?;
    let fmt = prec.memory_format;
    let ds = Dataset::open(&shards, recipe.loader.memory_budget_mib)?;
    let state = checkpoint::load_state(&ckpt)?;
    check_dataset(&state, &ds, run)?;

    let mut s = setup(&recipe, &ds, device)?;
    checkpoint::load_weights(&mut s.vs, &ckpt.join(checkpoint::MODEL_FILE))?;
    train_head_only(&mut s, &ft, run)?;
    let mut maxnorm = MaxNorm::new(ft.thresh_ratio, ft.every());
    let (mut done, global_step, mut records, threshold) = if opts.resume {
        let r = restore(&out, &recipe, &ds, &mut s, state.epoch, run)?;
        maxnorm = maxnorm.with_threshold(r.3)?;
        r
    } else {
        start_run_dir(&out, &recipe)?;
        (0, 0, Vec::new(), maxnorm.set_threshold(&s.net.head_cb.ws)?)
    };
    convert_layout(&mut s, fmt)?;

    let seed = recipe.train.seed;
    let b = ft.batch_size.unwrap_or(recipe.train.batch_size);
    let epochs = ft.epochs;
    let stop = opts.stop_after.map_or(epochs, |n| (done + n).min(epochs));
    let mut last_eval = None;
    if done < stop {
        let mut loader = finetune_loader(&recipe, &ds, &s, device, done, stop)?;
        let schedule = ft.schedule();
        let mut step = HeadOnlyStep { loss: FinetuneLossFn::try_new(ft.loss, ft.cb_beta, &ds.counts, device)?, maxnorm };
        // The head runs in full precision (the frozen encoder may run under
        // autocast): no loss scaling.
        let mut upd = Updater::new(s.opt.params(), None);
        let lr = |e: usize| schedule.lr(ft.lr, e, epochs);
        let alpha = |_: usize| 1.0;
        let card = train::model_card(&recipe, &ds, &s)?.to_metadata();
        let extra = |_: Option<LossScaleState>| {
            serde_json::json!({
                checkpoint::MODEL_CARD_KEY: card,
                "dataset": ds.fingerprint,
                "recipe": recipe.name,
                "method": recipe.train.method,
                "stage": "finetune",
                "source": run.display().to_string(),
                EXTRA_SOURCE_EPOCH: state.epoch,
                EXTRA_THRESHOLD: threshold,
            })
        };
        let lp = EpochLoop {
            recipe: &recipe,
            ds: &ds,
            device,
            precision: &prec,
            out: &out,
            ckpt: &out_ckpt,
            epochs,
            stop,
            batch_size: b,
            seed,
            checkpoint_every: None,
            lr: &lr,
            alpha: &alpha,
            extra: &extra,
            cluster: &crate::cluster::Cluster::single(),
        };
        let start = LoopStart { epoch: done, step: global_step, ..Default::default() };
        let end = lp.run(&mut s, (&mut upd, &mut step), &mut loader, None, obs, start)?;
        done = end.epoch;
        records.extend(end.records);
        last_eval = end.last_eval;
    }
    let last_eval = match last_eval {
        Some(e) => e,
        None => train::evaluate(&s, &recipe, &ds, device, &crate::cluster::Cluster::single())?.headline().clone(),
    };
    let info = RunInfo { shards: shards.clone(), ..ds.run_info(device, state.epoch) };
    let note = stage_note(run, state.epoch, &ft, b, threshold);
    let md = lt_report::write_report(&out, &recipe.report_header(), &info, &records, &last_eval, Some(&note))?;
    Ok(FinetuneOutcome { out, recipe, records, last_eval, threshold, epochs_done: done, finished: done >= epochs, dataset: ds, report: md })
}

/// The source run is read (no trainer may write it meanwhile), the output
/// written by this process only; then a killed writer's leftovers go.
/// Refuses an output that is the run itself, a fresh start over an earlier
/// fine-tuning run, and a resume without its checkpoint.
fn lock_runs(opts: &FinetuneOptions, out: &Path) -> Result<(RunLock, RunLock)> {
    let (run, out_ckpt) = (&opts.run, out.join(CHECKPOINT_DIR));
    let resume_err = |why: String| TrainError::Resume { path: out.to_path_buf(), why };
    if opts.stop_after == Some(0) {
        return Err(TrainError::Option { option: "stop_after", why: "must be >= 1".into() });
    }
    if out.canonicalize().ok().is_some_and(|o| run.canonicalize().ok() == Some(o)) {
        return Err(TrainError::Finetune { path: run.clone(), why: "the output must be another directory than the run's own".into() });
    }
    let source_lock = RunLock::shared(run)?;
    let Some(lock) = rundir::lock_run(out, !opts.resume)? else {
        return Err(resume_err(format!("no fine-tuning checkpoint in {}", out_ckpt.display())));
    };
    checkpoint::recover(&out_ckpt)?;
    if opts.resume {
        if !out_ckpt.join(checkpoint::STATE_FILE).is_file() {
            return Err(resume_err(format!("no fine-tuning checkpoint in {}", out_ckpt.display())));
        }
    } else if out_ckpt.exists() {
        return Err(TrainError::OutputTaken { path: out.to_path_buf(), what: "a fine-tuning run" });
    }
    Ok((source_lock, lock))
}

/// Freezes everything but g_cb and gives the optimizer g_cb's two tensors.
fn train_head_only(s: &mut Setup, ft: &FinetuneSection, run: &Path) -> Result<()> {
    s.vs.freeze();
    for (name, t) in s.vs.variables() {
        if name.starts_with(HEAD_PREFIX) {
            let _ = t.set_requires_grad(true);
        }
    }
    s.opt = Sgd::with_prefixes(&s.vs, &[HEAD_PREFIX], ft.sgd());
    let names: Vec<&str> = s.opt.param_names().collect();
    if names != ["head_cb.bias", "head_cb.weight"] {
        let why = format!("expected to train head_cb.bias and head_cb.weight, got {names:?}");
        return Err(TrainError::Finetune { path: run.to_path_buf(), why });
    }
    Ok(())
}

/// Resumes a fine-tuning run in `out` from its checkpoint (head weights and
/// momentum; the frozen variables there are the source's, bit for bit),
/// after checking it still fine-tunes the source run's checkpoint of
/// `source_epoch`; returns the epochs done, the global step, the records so
/// far and the MaxNorm threshold.
fn restore(
    out: &Path,
    recipe: &Recipe,
    ds: &Dataset,
    s: &mut Setup,
    source_epoch: usize,
    run: &Path,
) -> Result<(usize, u64, Vec<EpochRecord>, f64)> {
    let out_ckpt = out.join(CHECKPOINT_DIR);
    let resume_err = |why: String| TrainError::Resume { path: out.to_path_buf(), why };
    let change = rundir::check_resume_recipe(out, recipe, Stage::Finetune, checkpoint::load_state(&out_ckpt)?.epoch)?;
    let st = checkpoint::load(&out_ckpt, &mut s.vs, &mut s.opt)?;
    check_dataset(&st, ds, out)?;
    let from = st.extra.get(EXTRA_SOURCE_EPOCH).and_then(|v| v.as_u64());
    if from != Some(source_epoch as u64) {
        return Err(resume_err(format!(
            "it fine-tunes {} after epoch {}, but that run's checkpoint is now at epoch {source_epoch}",
            run.display(),
            from.map_or("?".to_string(), |e| e.to_string()),
        )));
    }
    let t = st.extra.get(EXTRA_THRESHOLD).and_then(|v| v.as_f64());
    let t = t.ok_or_else(|| resume_err(format!("its checkpoint has no {EXTRA_THRESHOLD}")))?;
    if change != ResumeChange::Same {
        rundir::save_recipe(out, recipe)?;
    }
    Ok((st.epoch, st.step, metrics_before(out, st.epoch)?, t))
}

/// The fine-tuning loader from epoch `done` up to `stop`: one view, the
/// stage's sampler and batch size.
fn finetune_loader(recipe: &Recipe, ds: &Dataset, s: &Setup, device: Device, done: usize, stop: usize) -> Result<Loader> {
    let ft = recipe.finetune.unwrap_or_default();
    let b = ft.batch_size.unwrap_or(recipe.train.batch_size);
    let cfg = LoaderConfig::default()
        .with_batch_size(b)
        .with_views(1)
        .with_workers(workers(&recipe.loader))
        .with_pool_size(recipe.loader.pool_size)
        .with_sampler(match ft.sampling {
            FinetuneSampling::Instance => SamplerSpec::Instance,
            // P(i) ∝ n_{y_i}^(−1): every class equally likely.
            FinetuneSampling::ClassBalanced => SamplerSpec::ClassWeighted { q: 1.0 },
        })
        .with_channels(s.in_channels as u8)
        .with_on_corrupt(if recipe.loader.skip_corrupt { OnCorrupt::Skip } else { OnCorrupt::Error })
        .with_jpeg_draft(recipe.loader.jpeg_draft)
        .with_epochs(stop as u64)
        .with_state(LoaderState { seed: recipe.train.seed, position: Position { epoch: done as u64, step: 0 } })
        .with_allocator(Arc::new(TensorAllocator::new(recipe.perf.pinned && device.is_cuda())));
    Loader::try_new(ds.train.clone(), recipe.loader.augment.resolve()?, cfg).map_err(|e| {
        let rows = ds.train.len();
        let remedy = format!("use a smaller finetune.batch_size (at most {rows})");
        rundir::batch_error(e.into(), "finetune.batch_size", &remedy, b, rows)
    })
}

/// The paragraph the report opens with: the trainer's report describes the
/// first stage, this says what the second did.
fn stage_note(run: &Path, source_epoch: usize, ft: &FinetuneSection, b: usize, threshold: f64) -> String {
    let epochs = ft.epochs;
    format!(
        "**MaxNorm fine-tuning of g_cb** from `{}` (after its epoch {}): encoder and other heads frozen, \
         loss {:?}, {:?} sampling, {} epochs, batch {b}, lr {} ({:?}), momentum {}, wd {}, \
         MaxNorm t = {} (threshold {threshold:.6} on the row norms), projected per {}. \
         The table and curves below are this stage's; evaluation uses g_cb.\n\n",
        run.display(),
        source_epoch,
        ft.loss,
        ft.sampling,
        epochs,
        ft.lr,
        ft.schedule,
        ft.momentum,
        ft.weight_decay,
        ft.thresh_ratio,
        if ft.per_epoch { "epoch" } else { "iteration" },
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::recipe::FinetuneLoss;

    #[test]
    fn defaults_are_the_weight_balancing_second_stage() {
        let ft = FinetuneSection::default();
        assert_eq!((ft.epochs, ft.lr, ft.weight_decay, ft.thresh_ratio, ft.per_epoch), (10, 0.01, 0.1, 0.1, true));
        assert_eq!((ft.loss, ft.sampling, ft.cb_beta), (FinetuneLoss::ClassBalanced, FinetuneSampling::Instance, 0.9999));
    }
}
