//! `lt-bench gpu` and `lt-bench e2e`: GLMC training throughput on the
//! device alone, and from shards through the loader.
//!
//! **Units.** One GLMC step with batch size B takes 2B samples from the
//! loader (B instance-sampled, B class-weighted, each decoded once and
//! augmented into 2 views) and runs the network forward and backward on 2B
//! images (the global mixture X_g and the local mixture X_l, B each). So
//! *images/s* here is `2B × steps/s`: the loader's images/s (it counts
//! samples, `LoaderBenchReport::images`) and the network's training
//! images/s (one forward + backward per image) are the same number, and the
//! ratios e2e / gpu and loader / gpu compare like with like. (lt-train's
//! `train_images_per_s` counts B per step, half of this.)
//!
//! **What a step is** ([`GlmcStepper::step`]): uint8 `[2 views, 2B, C, H, W]`
//! already on the device → channels-last (optional) → normalize → MixUp +
//! CutMix → two forwards (under fp16 autocast for `amp`) → every GLMC loss →
//! backward (loss-scaled for `amp`) → SGD (skipped on overflow) → read the
//! loss back. The read-back is a device synchronisation, as in lt-train
//! (logging, the non-finite check) and in PyTorch's GradScaler; it is also
//! what makes recycling the pinned batch buffer safe (see
//! [`lt_glmc::pinned`]). The PyTorch reference, `tools/glmc_gpu_reference.py`,
//! does exactly the same work per step.
//!
//! Clocks are read only after [`lt_glmc::amp::synchronize`].

use std::path::PathBuf;
use std::rc::Rc;
use std::sync::Arc;
use std::time::Instant;

use lt_loader::bench::{run_loader_bench, LoaderBenchOptions, LoaderBenchReport};
use lt_loader::loader::{Loader, LoaderConfig, StageStats};
use lt_loader::sampler::SamplerSpec;
use lt_loader::source::{EncodedSource, ShardSource, ShardSourceOptions};
use lt_shards::{Manifest, Split};
use lt_vision::augment::Pipeline;
use serde::{Deserialize, Serialize};
use tch::nn::VarStore;
use tch::{Device, Kind, Tensor};

use crate::error::{BenchError, Result};
use lt_glmc::amp::{synchronize, LossScaler, PrecisionConfig};
use lt_glmc::dist::{DataParallel, ProcessGroup};
use lt_glmc::loss::{ClassStats, LossConfig};
use lt_glmc::mix::Normalizer;
use lt_glmc::model::{Arch, GlmcNet, ModelConfig};
use lt_glmc::optim::{Sgd, SgdConfig};
use lt_glmc::pinned::{batch_to_device, TensorAllocator};
use lt_glmc::step::{GlmcStep, StepModel, Updater};
use lt_glmc::GlmcError;

/// The models `lt-bench` knows, by their command-line names.
pub fn parse_model(name: &str, width: Option<i64>) -> Result<Arch> {
    Ok(match name.to_ascii_lowercase().as_str() {
        "resnet32" => Arch::ResNet32 { width: width.unwrap_or(64) },
        "resnet50" => Arch::ResNet50,
        "resnext50" | "resnext50_32x4d" => Arch::ResNeXt50_32x4d,
        _ => return Err(BenchError::Setting { setting: "model", why: format!("{name:?}: expected resnet32, resnet50 or resnext50") }),
    })
}

/// Short name of an architecture for reports.
pub fn model_name(a: &Arch) -> String {
    match a {
        Arch::ResNet32 { width: 64 } => "resnet32".into(),
        Arch::ResNet32 { width } => format!("resnet32-w{width}"),
        Arch::ResNet50 => "resnet50".into(),
        Arch::ResNeXt50_32x4d => "resnext50_32x4d".into(),
    }
}

/// Everything that defines the benchmarked training step.
#[derive(Clone, Debug)]
pub struct StepOptions {
    pub arch: Arch,
    /// B: instance-sampled images per step (the step consumes 2B).
    pub batch_size: usize,
    pub in_channels: i64,
    /// Training images per class (label weights v_c); its length is C.
    pub counts: Vec<usize>,
    pub precision: PrecisionConfig,
    pub sgd: SgdConfig,
    pub loss: LossConfig,
    /// Label-weight exponent p.
    pub p: f64,
    /// Mixing Beta(β, β).
    pub beta: f64,
    /// The cumulative α of the step (its value does not change the work).
    pub alpha: f64,
    pub mean: Vec<f64>,
    pub std: Vec<f64>,
    pub seed: u64,
}

impl StepOptions {
    /// The authors' settings for `arch` (CIFAR for ResNet-32, ImageNet-LT
    /// otherwise) with C classes of an IF-100 exponential profile.
    pub fn for_arch(arch: Arch, batch_size: usize, classes: usize) -> Self {
        let cifar = matches!(arch, Arch::ResNet32 { .. });
        let counts = lt_core::profile::exponential_counts(classes.max(1), if cifar { 5000 } else { 1280 }, 100.0)
            .unwrap_or_else(|_| vec![1; classes.max(1)]);
        StepOptions {
            arch,
            batch_size,
            in_channels: 3,
            counts,
            precision: PrecisionConfig::default(),
            sgd: if cifar {
                SgdConfig { lr: 0.01, momentum: 0.9, weight_decay: 5e-3 }
            } else {
                SgdConfig { lr: 0.1, momentum: 0.9, weight_decay: 2e-4 }
            },
            loss: LossConfig::default().with_kappa(if cifar { 1.0 } else { 10.0 }),
            p: if cifar { 1.2 } else { 1.0 },
            beta: 1.0,
            alpha: 0.9,
            mean: vec![0.485, 0.456, 0.406],
            std: vec![0.229, 0.224, 0.225],
            seed: 0,
        }
    }
}

/// What one step reports.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct StepResult {
    pub loss: f64,
    /// AMP only: the optimizer step was skipped for inf/NaN gradients.
    pub skipped: bool,
}

/// A model, its optimizer and the per-run constants: runs lt-train's own
/// GLMC step ([`lt_glmc::step::GlmcStep`] through [`lt_glmc::step::Updater`],
/// the code `lt-train` runs) on device-resident uint8 batches.
pub struct GlmcStepper {
    pub device: Device,
    pub vs: VarStore,
    pub net: GlmcNet,
    opt: Sgd,
    upd: Updater,
    step: GlmcStep,
    stats: ClassStats,
    norm: Normalizer,
    opts: StepOptions,
    steps: u64,
}

impl GlmcStepper {
    /// Validates the precision for `device`, sets the TF32 / cuDNN flags,
    /// builds the model (seeded) and converts it to the memory format.
    pub fn try_new(opts: StepOptions, device: Device) -> Result<Self> {
        Self::build(opts, device, None)
    }

    /// [`GlmcStepper::try_new`], data-parallel over `pg` as lt-train runs it:
    /// rank 0's variables broadcast to every rank, then every step's
    /// gradients averaged by a [`DataParallel`] (c10d's Reducer, buckets of
    /// `bucket_cap_mib`; `find_unused` unless the loss uses every
    /// parameter). A collective: every rank of `pg` calls it, and then
    /// [`GlmcStepper::step`] once per step. `opts.batch_size` is this
    /// rank's B.
    pub fn try_new_data_parallel(opts: StepOptions, device: Device, pg: Rc<ProcessGroup>, bucket_cap_mib: usize) -> Result<Self> {
        Self::build(opts, device, Some((pg, bucket_cap_mib)))
    }

    fn build(opts: StepOptions, device: Device, dp: Option<(Rc<ProcessGroup>, usize)>) -> Result<Self> {
        opts.precision.apply(device)?;
        if opts.batch_size == 0 {
            return Err(BenchError::Setting { setting: "batch_size", why: "must be ≥ 1".into() });
        }
        tch::manual_seed(opts.seed as i64);
        let vs = VarStore::new(device);
        let mc = ModelConfig::new(opts.arch, opts.counts.len() as i64).with_in_channels(opts.in_channels);
        let net = GlmcNet::try_new(&vs.root(), mc)?;
        opts.precision.memory_format.convert_weights(&vs)?;
        let opt = Sgd::new(&vs, opts.sgd);
        let mut upd = Updater::new(vs.trainable_variables(), opts.precision.loss_scaler());
        if let Some((pg, cap)) = dp {
            // As lt-train: every rank starts from rank 0's variables (listed
            // by name, the same order everywhere), after the layout change.
            let mut vars: Vec<(String, Tensor)> = vs.variables().into_iter().collect();
            vars.sort_by(|a, b| a.0.cmp(&b.0));
            let find_unused = !(opts.loss.reweight && opts.loss.uses_consistency());
            // The optimizer's parameters, sorted by name (as lt-train).
            let dp = DataParallel::new(pg, &opt.params(), cap, find_unused)?;
            dp.sync_from_root(&vars.into_iter().map(|(_, t)| t).collect::<Vec<_>>())?;
            upd = upd.with_data_parallel(dp);
        }
        let stats = ClassStats::try_new(&opts.counts, opts.p, device, Kind::Float)?;
        let norm = Normalizer::for_channels(&opts.mean, &opts.std, opts.in_channels, device, Kind::Float)?;
        let step = GlmcStep::new(opts.loss, opts.beta, GlmcStep::rng_for_seed(opts.seed));
        Ok(GlmcStepper { device, vs, net, opt, upd, step, stats, norm, opts, steps: 0 })
    }

    pub fn options(&self) -> &StepOptions {
        &self.opts
    }

    pub fn loss_scaler(&self) -> Option<&LossScaler> {
        self.upd.loss_scale()
    }

    /// Whether the steps average gradients over a process group.
    pub fn is_data_parallel(&self) -> bool {
        self.upd.data_parallel().is_some()
    }

    /// One training step on a paired batch: `x` uint8 `[2, 2B, C, H, W]`
    /// (view 0 gives U1 / W1, view 1 gives U2 / W2) and `y` int64 `[2B]`,
    /// both on the device. Reads the loss back (synchronises).
    pub fn step(&mut self, x: &Tensor, y: &Tensor) -> Result<StepResult> {
        let size = x.size();
        let b = self.opts.batch_size as i64;
        if size.len() != 5 || size[0] != 2 || size[1] != 2 * b {
            return Err(GlmcError::Shape { what: "batch", got: size, expected: format!("[2, {}, C, H, W]", 2 * b) }.into());
        }
        let m = StepModel { net: &self.net, stats: &self.stats, norm: &self.norm, precision: &self.opts.precision };
        let o = self.upd.apply(&mut self.opt, &mut self.step, &m, (x, y), self.opts.alpha, (self.steps, 0))?;
        self.steps += 1;
        Ok(StepResult { loss: o.values.total, skipped: o.skipped })
    }
}

/// Step times of a measured window.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct Timing {
    pub steps: usize,
    pub seconds: f64,
    pub step_ms_median: f64,
    pub step_ms_mean: f64,
    pub step_ms_min: f64,
}

impl Timing {
    fn from_steps(mut ms: Vec<f64>, seconds: f64) -> Timing {
        if ms.is_empty() {
            return Timing::default();
        }
        ms.sort_by(|a, b| a.total_cmp(b));
        Timing {
            steps: ms.len(),
            seconds,
            step_ms_median: ms[ms.len() / 2],
            step_ms_mean: ms.iter().sum::<f64>() / ms.len() as f64,
            step_ms_min: ms[0],
        }
    }
}

/// `lt-bench gpu` settings.
#[derive(Clone, Debug)]
pub struct GpuBenchOptions {
    pub step: StepOptions,
    /// Square input side (32 for ResNet-32, 224 for the ImageNet models).
    pub image_size: i64,
    pub steps: usize,
    pub warmup: usize,
    pub device: Device,
}

/// One `lt-bench gpu` measurement (one JSON line).
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct GpuBenchReport {
    pub tool: String,
    #[serde(rename = "impl")]
    pub implementation: String,
    pub device: String,
    pub model: String,
    pub batch_size: usize,
    /// 2B: images the network trains on per step (= loader samples).
    pub images_per_step: usize,
    pub image_size: i64,
    pub classes: usize,
    pub precision: String,
    pub memory_format: String,
    pub cudnn_benchmark: bool,
    pub warmup: usize,
    pub images_per_s: f64,
    pub steps_per_s: f64,
    #[serde(flatten)]
    pub timing: Timing,
    pub skipped_steps: usize,
    pub loss_scale: Option<f64>,
    pub last_loss: f64,
    pub torch_threads: i32,
}

impl GpuBenchReport {
    /// The one-line summary (tools/glmc_gpu_reference.py prints the same).
    pub fn summary(&self) -> String {
        format!(
            "GLMC step [{imp}] {model} B={b} ({ips} img/step) {hw}px {prec} {fmt} on {dev}: {rate:.1} images/s, \
             step median {med:.2} ms (mean {mean:.2}, min {min:.2}), {n} steps after {w} warm-up, {sk} skipped",
            imp = self.implementation,
            model = self.model,
            b = self.batch_size,
            ips = self.images_per_step,
            hw = self.image_size,
            prec = self.precision,
            fmt = self.memory_format,
            dev = self.device,
            rate = self.images_per_s,
            med = self.timing.step_ms_median,
            mean = self.timing.step_ms_mean,
            min = self.timing.step_ms_min,
            n = self.timing.steps,
            w = self.warmup,
            sk = self.skipped_steps,
        )
    }
}

pub(crate) fn device_name(d: Device) -> String {
    match d {
        Device::Cpu => "cpu".into(),
        Device::Cuda(i) => format!("cuda:{i}"),
        other => format!("{other:?}").to_lowercase(),
    }
}

/// Runs `warmup + steps` steps of `stepper` on a batch from `next` and
/// times the last `steps` (synchronising before each clock read).
pub(crate) fn timed_steps(
    stepper: &mut GlmcStepper,
    warmup: usize,
    steps: usize,
    mut next: impl FnMut(usize) -> Result<(Tensor, Tensor, Option<Box<dyn std::any::Any>>)>,
) -> Result<(Timing, usize, f64)> {
    let mut ms = Vec::with_capacity(steps);
    let (mut skipped, mut last) = (0usize, f64::NAN);
    let mut t_start = None;
    for i in 0..warmup + steps {
        if i == warmup {
            synchronize(stepper.device);
            t_start = Some(Instant::now());
        }
        let t0 = Instant::now();
        let (x, y, keep) = next(i)?;
        let r = stepper.step(&x, &y)?;
        // The loss read-back synchronised: the batch's copy is done, its
        // host buffer may go back to the loader.
        drop(keep);
        synchronize(stepper.device);
        if i >= warmup {
            ms.push(t0.elapsed().as_secs_f64() * 1e3);
            skipped += r.skipped as usize;
        }
        last = r.loss;
    }
    let seconds = t_start.map(|t| t.elapsed().as_secs_f64()).unwrap_or(0.0);
    Ok((Timing::from_steps(ms, seconds), skipped, last))
}

pub(crate) fn gpu_report(stepper: &GlmcStepper, image_size: i64, warmup: usize, t: Timing, skipped: usize, last: f64) -> GpuBenchReport {
    let o = stepper.options();
    let per_step = 2 * o.batch_size;
    GpuBenchReport {
        tool: "lt-bench gpu".into(),
        implementation: "lt-glmc".into(),
        device: device_name(stepper.device),
        model: model_name(&o.arch),
        batch_size: o.batch_size,
        images_per_step: per_step,
        image_size,
        classes: o.counts.len(),
        precision: o.precision.precision.to_string(),
        memory_format: o.precision.memory_format.to_string(),
        cudnn_benchmark: o.precision.cudnn_benchmark,
        warmup,
        images_per_s: if t.seconds > 0.0 { (t.steps * per_step) as f64 / t.seconds } else { 0.0 },
        steps_per_s: if t.seconds > 0.0 { t.steps as f64 / t.seconds } else { 0.0 },
        timing: t,
        skipped_steps: skipped,
        loss_scale: stepper.loss_scaler().map(|s| s.scale()),
        last_loss: last,
        torch_threads: tch::get_num_threads(),
    }
}

/// Synthetic device-resident input for a step: uniform uint8 pixels and
/// labels, made once.
pub fn synthetic_batch(o: &StepOptions, image_size: i64, device: Device) -> Result<(Tensor, Tensor)> {
    let b2 = 2 * o.batch_size as i64;
    let x = Tensor::f_randint(256, [2, b2, o.in_channels, image_size, image_size], (Kind::Uint8, device))?;
    let y = Tensor::f_randint(o.counts.len() as i64, [b2], (Kind::Int64, device))?;
    Ok((x, y))
}

fn gpu_with(stepper: &mut GlmcStepper, image_size: i64, steps: usize, warmup: usize) -> Result<GpuBenchReport> {
    let (x, y) = synthetic_batch(stepper.options(), image_size, stepper.device)?;
    let (t, skipped, last) = timed_steps(stepper, warmup, steps, |_| Ok((x.shallow_clone(), y.shallow_clone(), None)))?;
    Ok(gpu_report(stepper, image_size, warmup, t, skipped, last))
}

/// `lt-bench gpu`: the GLMC step on synthetic device-resident input.
pub fn run_gpu_bench(o: &GpuBenchOptions) -> Result<GpuBenchReport> {
    if o.steps == 0 {
        return Err(BenchError::Setting { setting: "steps", why: "must be ≥ 1".into() });
    }
    let mut stepper = GlmcStepper::try_new(o.step.clone(), o.device)?;
    gpu_with(&mut stepper, o.image_size, o.steps, o.warmup)
}

/// `lt-bench e2e` settings.
#[derive(Clone, Debug)]
pub struct E2eOptions {
    pub shards: PathBuf,
    pub pipeline: Pipeline,
    pub pipeline_name: String,
    pub threads: usize,
    pub pool_size: usize,
    /// Class-weighted sampling exponent q of the paired sampler.
    pub q: f64,
    /// Pinned batch buffers (honoured on CUDA only).
    pub pinned: bool,
    pub source: ShardSourceOptions,
    /// Model, batch and precision; `counts`, `in_channels`, `mean` and `std`
    /// are taken from the shards' manifest.
    pub step: StepOptions,
    pub steps: usize,
    pub warmup: usize,
    pub loader_steps: usize,
    pub device: Device,
}

/// One `lt-bench e2e` run: the three rates and their ratios.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct E2eReport {
    pub tool: String,
    pub device: String,
    pub shards: String,
    pub pipeline: String,
    pub threads: usize,
    pub model: String,
    pub batch_size: usize,
    pub images_per_step: usize,
    pub sample_shape: [usize; 3],
    pub precision: String,
    pub memory_format: String,
    pub pinned: bool,
    /// Training from shards: loader → device → step.
    pub e2e_images_per_s: f64,
    /// The same step on synthetic device-resident input.
    pub gpu_images_per_s: f64,
    /// The loader alone (same pipeline, threads, batch and sampler).
    pub loader_images_per_s: f64,
    /// How GPU-bound the run is (target ≥ 0.95).
    pub e2e_over_gpu: f64,
    /// The loader's headroom (target ≥ 2).
    pub loader_over_gpu: f64,
    #[serde(rename = "e2e")]
    pub e2e_timing: Timing,
    /// Seconds the training loop waited for the loader in the e2e window.
    pub e2e_loader_wait_s: f64,
    pub e2e_loader_stages: StageStats,
    pub gpu: GpuBenchReport,
    pub loader: LoaderBenchReport,
}

impl E2eReport {
    pub fn summary(&self) -> String {
        format!(
            "e2e {model} B={b} {c}x{h}x{w} {prec} {fmt} {pipe} {thr} threads on {dev}: e2e {e:.1} images/s, gpu {g:.1}, \
             loader {l:.1}; e2e/gpu {eg:.3}, loader/gpu {lg:.2} (waited {wait:.2} s on the loader in {secs:.2} s)",
            model = self.model,
            b = self.batch_size,
            c = self.sample_shape[0],
            h = self.sample_shape[1],
            w = self.sample_shape[2],
            prec = self.precision,
            fmt = self.memory_format,
            pipe = self.pipeline,
            thr = self.threads,
            dev = self.device,
            e = self.e2e_images_per_s,
            g = self.gpu_images_per_s,
            l = self.loader_images_per_s,
            eg = self.e2e_over_gpu,
            lg = self.loader_over_gpu,
            wait = self.e2e_loader_wait_s,
            secs = self.e2e_timing.seconds,
        )
    }
}

fn ratio(a: f64, b: f64) -> f64 {
    if b > 0.0 {
        a / b
    } else {
        f64::NAN
    }
}

/// `lt-bench e2e`: in one process, (1) the loader alone, (2) the step on
/// synthetic device-resident input of the loader's sample shape, (3) real
/// training throughput: shards → loader (pinned buffers) → non-blocking
/// copy → step. The phases run one after another, so they do not compete
/// for the CPU.
pub fn run_e2e_bench(o: &E2eOptions) -> Result<E2eReport> {
    if o.steps == 0 || o.loader_steps == 0 {
        return Err(BenchError::Setting { setting: "steps", why: "must be ≥ 1".into() });
    }
    let ds_err = |source| BenchError::Dataset { path: o.shards.clone(), source };
    let manifest = Manifest::load(&o.shards).map_err(ds_err)?;
    let sampler = SamplerSpec::Paired { q: o.q };
    let b = o.step.batch_size;

    // (1) Loader alone.
    let lo = LoaderBenchOptions {
        shards: o.shards.clone(),
        split: Split::Train,
        pipeline: o.pipeline.clone(),
        pipeline_name: o.pipeline_name.clone(),
        threads: o.threads,
        batch_size: b,
        views: 2,
        steps: o.loader_steps,
        warmup: 2,
        seed: o.step.seed,
        sampler,
        pool_size: o.pool_size,
        source: o.source.clone(),
        ..LoaderBenchOptions::default()
    };
    let loader_report = run_loader_bench(&lo)?;
    let [c, h, w] = loader_report.sample_shape;
    if h != w {
        return Err(BenchError::Setting { setting: "pipeline", why: format!("non-square output {h}x{w} (GLMC mixes square crops)") });
    }

    // (2) The step alone, on the loader's shape.
    let mut step = o.step.clone();
    step.counts = manifest.class_counts(Split::Train);
    step.in_channels = c as i64;
    if manifest.mean.len() == c {
        step.mean = manifest.mean.clone();
        step.std = manifest.std.clone();
    }
    let mut stepper = GlmcStepper::try_new(step, o.device)?;
    let gpu = gpu_with(&mut stepper, h as i64, o.steps, o.warmup)?;

    // (3) End to end.
    let src = Arc::new(ShardSource::open(&o.shards, Split::Train, &o.source)?);
    let alloc = TensorAllocator::new(o.pinned && o.device.is_cuda());
    let pinned = alloc.pinned();
    let cfg = LoaderConfig::default()
        .with_batch_size(b)
        .with_views(2)
        .with_workers(o.threads)
        .with_pool_size(o.pool_size)
        .with_seed(o.step.seed)
        .with_sampler(sampler)
        .with_channels(c as u8)
        .with_allocator(Arc::new(alloc));
    let mut loader = Loader::try_new(src as Arc<dyn EncodedSource>, o.pipeline.clone(), cfg)?;
    let device = o.device;
    let mut s0 = None;
    let warmup = o.warmup;
    let (t, _skipped, _last) = timed_steps(&mut stepper, o.warmup, o.steps, |i| {
        if i == warmup {
            s0 = Some(loader.stats());
        }
        let batch = loader.next().ok_or_else(|| BenchError::LoaderStopped)??;
        let (x, y) = batch_to_device(&batch, device)?;
        Ok((x, y, Some(Box::new(batch) as Box<dyn std::any::Any>)))
    })?;
    let stages = loader.stats() - s0.unwrap_or_default();
    drop(loader);
    let per_step = 2 * b;
    let e2e = if t.seconds > 0.0 { (t.steps * per_step) as f64 / t.seconds } else { 0.0 };
    Ok(E2eReport {
        tool: "lt-bench e2e".into(),
        device: device_name(o.device),
        shards: o.shards.display().to_string(),
        pipeline: o.pipeline_name.clone(),
        threads: o.threads,
        model: model_name(&o.step.arch),
        batch_size: b,
        images_per_step: per_step,
        sample_shape: [c, h, w],
        precision: o.step.precision.precision.to_string(),
        memory_format: o.step.precision.memory_format.to_string(),
        pinned,
        e2e_images_per_s: e2e,
        gpu_images_per_s: gpu.images_per_s,
        loader_images_per_s: loader_report.images_per_s,
        e2e_over_gpu: ratio(e2e, gpu.images_per_s),
        loader_over_gpu: ratio(loader_report.images_per_s, gpu.images_per_s),
        e2e_loader_wait_s: stages.wait_s,
        e2e_loader_stages: stages,
        e2e_timing: t,
        gpu,
        loader: loader_report,
    })
}
