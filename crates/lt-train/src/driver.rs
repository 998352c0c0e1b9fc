//! The epoch loop every training stage runs (lt-train and `lt-train
//! finetune`): batches from the loader (their recorded photometric stage
//! applied on the device, `loader.photometric = "device"`), one [`Step`] each through the
//! shared [`Updater`], the epoch's record, evaluation at the recipe's
//! cadence, checkpoints at epoch ends (and every N steps when asked),
//! TensorBoard event files (the recipe's `[log]`), and the progress
//! [`Observer`]. What differs between stages is passed in: the
//! step, the learning rate and α of an epoch, and what the checkpoint keeps
//! besides the weights.

use std::path::Path;

use lt_loader::batch::Position;
use lt_loader::loader::{Loader, LoaderState};

use crate::cluster::Cluster;
use crate::error::Result;
use crate::recipe::Recipe;
use crate::trace::Trace;
use crate::train::{epoch_end_state, evaluate, next_batch, AccState, Dataset, EpochAccumulator, Observer, Setup};
use lt_glmc::amp::{LossScaleState, PrecisionConfig};
use lt_glmc::checkpoint::{self, TrainState};
use lt_glmc::metrics::EvalReport;
use lt_glmc::photometric;
use lt_glmc::pinned::batch_to_device;
use lt_glmc::step::{Step, StepModel, Updater};
use lt_report::records::{append_metrics, EpochRecord};
use lt_report::tensorboard::{wall_time, EventWriter};

/// Key of a mid-epoch checkpoint's [`AccState`] in [`TrainState::extra`].
pub(crate) const EXTRA_EPOCH_ACC: &str = "epoch_acc";

/// Where a stage's epochs go and how they are scheduled.
pub(crate) struct EpochLoop<'a> {
    pub recipe: &'a Recipe,
    pub ds: &'a Dataset,
    pub device: tch::Device,
    pub precision: &'a PrecisionConfig,
    /// The run (or fine-tuning) directory: metrics.jsonl, the TensorBoard
    /// event files and checkpoint/.
    pub out: &'a Path,
    pub ckpt: &'a Path,
    /// Total epochs of the schedule, and where this invocation stops.
    pub epochs: usize,
    pub stop: usize,
    pub batch_size: usize,
    pub seed: u64,
    /// Also checkpoint every this many steps inside an epoch.
    pub checkpoint_every: Option<usize>,
    /// The learning rate and α of a 0-based epoch.
    pub lr: &'a dyn Fn(usize) -> f64,
    pub alpha: &'a dyn Fn(usize) -> f64,
    /// What a checkpoint keeps besides weights, momentum and position.
    pub extra: &'a dyn Fn(Option<LossScaleState>) -> serde_json::Value,
    /// The run's processes: only rank 0 writes metrics, events and
    /// checkpoints; every rank waits for each checkpoint.
    pub cluster: &'a Cluster,
}

/// Where the loop starts: the epoch, the global step, and inside the epoch
/// the step to continue at with its sums so far (a mid-epoch checkpoint).
#[derive(Default)]
pub(crate) struct LoopStart {
    pub epoch: usize,
    pub step: u64,
    pub step_in_epoch: usize,
    pub sums: Option<AccState>,
}

/// What the loop ends with.
pub(crate) struct LoopEnd {
    pub epoch: usize,
    pub step: u64,
    pub records: Vec<EpochRecord>,
    pub last_eval: Option<EvalReport>,
}

impl EpochLoop<'_> {
    /// Runs epochs `start.epoch..self.stop` of `step` on `loader`.
    ///
    /// With `log.tensorboard`, the epochs go to a new event file in the
    /// directory (one per invocation, so a resumed run adds one): each
    /// epoch's record at the global step of its end, and every
    /// `log.scalars_every` steps the step's loss with the epoch's learning
    /// rate and α (the schedules are per epoch). The file starts with a
    /// session START at the step after the checkpoint, so TensorBoard drops
    /// what an interrupted run wrote after it.
    pub(crate) fn run(
        &self,
        s: &mut Setup,
        (upd, step): (&mut Updater, &mut dyn Step),
        loader: &mut Loader,
        mut trace: Option<&mut Trace>,
        obs: &mut dyn Observer,
        start: LoopStart,
    ) -> Result<LoopEnd> {
        let steps = loader.steps_per_epoch();
        let (mut epoch, mut global) = (start.epoch, start.step);
        let (mut first, mut sums) = (start.step_in_epoch, start.sums);
        let mut end = LoopEnd { epoch, step: global, records: Vec::new(), last_eval: None };
        let mut events: Option<EventWriter> = None;
        let every = self.recipe.log.scalars_every.max(1) as u64;
        let root = self.cluster.is_root();
        let world = self.cluster.world_size();
        while epoch < self.stop {
            if events.is_none() && self.recipe.log.tensorboard && root {
                let mut w = EventWriter::create(self.out)?;
                w.session_start(global as i64 + 1, wall_time())?;
                events = Some(w);
            }
            let lr = (self.lr)(epoch);
            s.opt.set_lr(lr);
            let alpha = (self.alpha)(epoch);
            let alpha_shown = if step.reports().0 { alpha } else { 1.0 }; // as the record shows it
            obs.epoch_start(epoch, self.epochs, steps);
            let mut acc = EpochAccumulator::start(steps);
            if let Some(a) = sums.take() {
                acc.restore(first, a);
            }
            for i in std::mem::take(&mut first)..steps {
                let batch = next_batch(loader, epoch, i)?;
                let (x, y) = batch_to_device(&batch, self.device)?;
                // `loader.photometric = "device"`: the views' recorded
                // photometric stage, on the device (a no-op otherwise).
                let x = photometric::apply(&x, batch.photometric())?;
                let m = StepModel { net: &s.net, stats: &s.stats, norm: &s.norm, precision: self.precision };
                let o = upd.apply(&mut s.opt, step, &m, (&x, &y), alpha, (global, epoch))?;
                if let Some(t) = trace.as_deref_mut() {
                    t.record((epoch, i), lr, (&x, &y), o.mix.as_ref(), &o.values)?;
                }
                let images = step.images(batch.slots()) * world; // about: a short last step splits unevenly
                drop(batch); // the device copy and the step are done: recycle the buffer
                if o.skipped {
                    acc.skipped();
                } else {
                    acc.applied(i, &o.values);
                }
                global += 1;
                obs.step(o.values.total, images);
                if let Some(w) = events.as_mut().filter(|_| global % every == 0) {
                    let values = [("step/loss", o.values.total), ("step/lr", lr), ("step/alpha", alpha_shown)];
                    w.scalars(global as i64, wall_time(), &values)?;
                }
                if self.checkpoint_every.is_some_and(|n| (i + 1) % n == 0) && i + 1 < steps {
                    if let Some(w) = events.as_mut() {
                        w.flush()?;
                    }
                    let mut ex = (self.extra)(upd.loss_scale_state());
                    ex[EXTRA_EPOCH_ACC] = serde_json::to_value(acc.state()).unwrap_or_default();
                    let pos = Position { epoch: epoch as u64, step: (i + 1) as u64 };
                    let state = TrainState {
                        epoch,
                        step: global,
                        step_in_epoch: (i + 1) as u64,
                        lr,
                        rng: step.rng_state().unwrap_or_default(),
                        loader: serde_json::to_value(LoaderState { seed: self.seed, position: pos }).unwrap_or_default(),
                        extra: ex,
                    };
                    self.save(s, &state)?;
                }
            }
            step.after_epoch(&s.net)?;
            acc.end_training();
            if let Some(t) = trace.as_deref_mut() {
                t.flush()?;
            }
            let done = epoch + 1;
            let test = if done % self.recipe.eval.every == 0 || done == self.epochs || done == self.stop {
                obs.evaluating();
                let ev = evaluate(s, self.recipe, self.ds, self.device, self.cluster)?;
                let sum = ev.summary();
                end.last_eval = Some(ev.headline().clone());
                Some(sum)
            } else {
                None
            };
            let reports = step.reports();
            let alpha = if reports.0 { alpha } else { 1.0 };
            let rec = acc.record(
                epoch,
                (lr, alpha),
                reports,
                (self.batch_size, lt_loader::source::EncodedSource::len(self.ds.train.as_ref())),
                test,
                upd.loss_scale().map(|sc| sc.scale()),
            );
            if root {
                append_metrics(self.out, &rec)?;
            }
            if let Some(w) = events.as_mut() {
                w.epoch(global as i64, wall_time(), &rec)?;
                w.flush()?;
            }
            let extra = (self.extra)(upd.loss_scale_state());
            let state = epoch_end_state(done, global, lr, step.rng_state().unwrap_or_default(), self.seed, extra);
            self.save(s, &state)?;
            obs.epoch_end(&rec);
            end.records.push(rec);
            epoch = done;
        }
        end.epoch = epoch;
        end.step = global;
        Ok(end)
    }

    /// Rank 0 writes the checkpoint; every rank waits until it is on disk,
    /// so a rank that fails later resumes from the same one.
    fn save(&self, s: &Setup, state: &TrainState) -> Result<()> {
        if self.cluster.is_root() {
            checkpoint::save(self.ckpt, &s.vs, &s.opt, state)?;
        }
        self.cluster.barrier()
    }
}
