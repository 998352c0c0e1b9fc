//! `lt-bench`: is GLMC training bound by the GPU or by the loader?
//!
//! ```text
//! lt-bench gpu --model resnext50 --batch-size 64 --precision amp --memory-format nhwc --steps 30 --warmup 10
//! lt-bench loader --shards photos/ --pipeline imagenet --threads 16 --batch-size 64 --sampler paired:0.2
//! lt-bench e2e --shards photos/ --pipeline imagenet --threads 16 --model resnext50 --batch-size 64 --precision amp
//! torchrun --standalone --nproc-per-node 2 --no-python lt-bench dist --device cpu --torch-threads 1 --width 16
//! ```
//!
//! Each prints a summary, a `RESULT {json}` line, and appends the JSON line
//! to `--json FILE` (`dist`: rank 0 only). Images/s count 2B per GLMC step (see
//! `lt_bench::glmc`). `--device auto` takes CUDA when libtorch sees it.

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::{Args, Parser, Subcommand};
use lt_bench::dist::{group_from_env, run_dist_bench, DistBenchOptions};
use lt_bench::glmc::{parse_model, run_e2e_bench, run_gpu_bench, E2eOptions, GpuBenchOptions, StepOptions};
use lt_glmc::amp::{LossScaleConfig, MemoryFormat, Precision, PrecisionConfig};
use lt_glmc::device::parse_device;
use lt_glmc::model::Arch;
use lt_loader::bench::run_loader_bench;
use lt_loader::source::ShardSourceOptions;
use lt_vision::augment::Pipeline;
use serde::Serialize;

/// The `loader` subcommand's flags: lt-loader-bench's, shared as source
/// (both binaries live in this crate; clap stays out of the lt-loader library).
#[path = "lt-loader-bench/args.rs"]
mod loader_args;
use loader_args::LoaderBenchArgs;

#[derive(Parser)]
// A flag given twice takes its last value (scripts append overrides).
#[command(
    name = "lt-bench",
    version,
    args_override_self = true,
    about = "lt-glmc benchmarks: GLMC step on the device, loader, end to end, data-parallel"
)]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// GLMC training step on synthetic device-resident input: images/s.
    Gpu(GpuArgs),
    /// Loader throughput on a shard directory (lt-loader's measurement).
    Loader(LoaderBenchArgs),
    /// Training throughput from shards, with the loader-only and gpu-only
    /// rates of the same settings and the ratios e2e/gpu and loader/gpu.
    E2e(E2eArgs),
    /// Data-parallel cost, alone or under torchrun: Gloo all-reduce GB/s,
    /// and the step data-parallel (the plain step at world size 1). Gloo
    /// reduces CPU tensors: --device auto is the CPU here.
    Dist(DistArgs),
}

#[derive(Args, Clone)]
struct StepArgs {
    /// resnet32 | resnet50 | resnext50
    #[arg(long, default_value = "resnet32")]
    model: String,
    /// ResNet-32 base width (default 64, the authors' model).
    #[arg(long)]
    width: Option<i64>,
    /// B: instance-sampled images per step (a step trains on 2B).
    #[arg(long, default_value_t = 64)]
    batch_size: usize,
    /// fp32 | tf32 | amp (fp16 autocast + dynamic loss scaling, CUDA only)
    #[arg(long, default_value = "fp32")]
    precision: String,
    /// nchw | nhwc (channels-last)
    #[arg(long, default_value = "nchw")]
    memory_format: String,
    /// cuDNN autotuning on (true) or off (false).
    #[arg(long, default_value_t = true, action = clap::ArgAction::Set)]
    cudnn_benchmark: bool,
    /// Initial loss scale for amp.
    #[arg(long, default_value_t = 65536.0)]
    init_scale: f64,
    #[arg(long, default_value_t = 20)]
    steps: usize,
    #[arg(long, default_value_t = 5)]
    warmup: usize,
    /// cpu | cuda | cuda:N | auto
    #[arg(long, default_value = "auto")]
    device: String,
    /// libtorch intra-op threads (CPU runs); default: libtorch's choice.
    #[arg(long)]
    torch_threads: Option<i32>,
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Append the JSON line to this file.
    #[arg(long)]
    json: Option<PathBuf>,
}

#[derive(Args)]
struct GpuArgs {
    #[command(flatten)]
    step: StepArgs,
    /// Input side; default 32 for resnet32, 224 otherwise.
    #[arg(long)]
    size: Option<i64>,
    /// Number of classes; default 100 for resnet32, 1000 otherwise.
    #[arg(long)]
    classes: Option<usize>,
}

#[derive(Args)]
struct E2eArgs {
    #[command(flatten)]
    step: StepArgs,
    #[arg(long)]
    shards: PathBuf,
    /// cifar | imagenet | randaugment, or a JSON pipeline object.
    #[arg(long, default_value = "cifar")]
    pipeline: String,
    /// Loader worker threads.
    #[arg(long, default_value_t = 2)]
    threads: usize,
    #[arg(long, default_value_t = 6)]
    pool_size: usize,
    /// Class-weighted sampling exponent q.
    #[arg(long, default_value_t = 0.2)]
    q: f64,
    /// Ordinary (pageable) batch buffers instead of pinned ones.
    #[arg(long)]
    no_pinned: bool,
    /// Steps of the loader-only measurement (default: --steps).
    #[arg(long)]
    loader_steps: Option<usize>,
    #[arg(long, default_value_t = 8192)]
    memory_budget_mib: u64,
    #[arg(long)]
    no_verify: bool,
}

#[derive(Args)]
struct DistArgs {
    /// The step's settings (`gpu`'s); --batch-size is per rank.
    #[command(flatten)]
    gpu: GpuArgs,
    /// All-reduce sizes in MiB of f32, comma-separated.
    #[arg(long, value_delimiter = ',', default_value = "1,25,100")]
    sizes_mib: Vec<f64>,
    /// Timed all-reduce calls per size.
    #[arg(long, default_value_t = 10)]
    allreduce_iters: usize,
    /// Untimed all-reduce calls per size before them.
    #[arg(long, default_value_t = 2)]
    allreduce_warmup: usize,
    /// The gradient reducer's bucket cap in MiB (DDP's default).
    #[arg(long, default_value_t = lt_glmc::dist::DEFAULT_BUCKET_CAP_MIB)]
    bucket_cap_mib: usize,
    /// Run the step through the gradient reducer at world size 1 too.
    #[arg(long)]
    reducer: bool,
    /// Seconds to wait for the other ranks in any collective.
    #[arg(long, default_value_t = 300)]
    dist_timeout: u64,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    // Keep freed activations in the process (see lt_glmc::host_alloc);
    // `loader` needs no libtorch.
    if !matches!(cli.cmd, Cmd::Loader(_)) {
        let _ = lt_glmc::host_alloc::retain_freed_memory();
    }
    let r = match cli.cmd {
        Cmd::Gpu(a) => gpu(a),
        Cmd::Loader(a) => loader(a),
        Cmd::E2e(a) => e2e(a),
        Cmd::Dist(a) => dist(a),
    };
    match r {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("lt-bench: error: {e:#}");
            ExitCode::from(2)
        }
    }
}

fn emit<T: Serialize>(summary: &str, report: &T, json: Option<&PathBuf>) -> anyhow::Result<()> {
    println!("{summary}");
    let line = serde_json::to_string(report)?;
    println!("RESULT {line}");
    if let Some(p) = json {
        let mut f = std::fs::OpenOptions::new().create(true).append(true).open(p).with_context(|| format!("opening {}", p.display()))?;
        writeln!(f, "{line}").with_context(|| format!("writing {}", p.display()))?;
    }
    Ok(())
}

fn pipeline(s: &str) -> anyhow::Result<Pipeline> {
    Ok(lt_loader::bench::parse_pipeline(s)?)
}

fn step_options(a: &StepArgs, classes: usize) -> anyhow::Result<(StepOptions, lt_glmc::tch::Device)> {
    if let Some(t) = a.torch_threads {
        lt_glmc::tch::set_num_threads(t);
    }
    let arch = parse_model(&a.model, a.width)?;
    let precision: Precision = a.precision.parse()?;
    let fmt: MemoryFormat = a.memory_format.parse()?;
    let mut o = StepOptions::for_arch(arch, a.batch_size, classes);
    o.precision = PrecisionConfig::new(precision, fmt)
        .with_cudnn_benchmark(a.cudnn_benchmark)
        .with_loss_scale(LossScaleConfig { init_scale: a.init_scale, ..Default::default() });
    o.seed = a.seed;
    Ok((o, parse_device(&a.device)?))
}

fn gpu_options(a: &GpuArgs) -> anyhow::Result<GpuBenchOptions> {
    let small = matches!(parse_model(&a.step.model, a.step.width)?, Arch::ResNet32 { .. });
    let classes = a.classes.unwrap_or(if small { 100 } else { 1000 });
    let (step, device) = step_options(&a.step, classes)?;
    Ok(GpuBenchOptions {
        step,
        image_size: a.size.unwrap_or(if small { 32 } else { 224 }),
        steps: a.step.steps,
        warmup: a.step.warmup,
        device,
    })
}

fn gpu(a: GpuArgs) -> anyhow::Result<()> {
    let r = run_gpu_bench(&gpu_options(&a)?).context("GLMC step benchmark")?;
    emit(&r.summary(), &r, a.step.json.as_ref())
}

fn dist(mut a: DistArgs) -> anyhow::Result<()> {
    if a.gpu.step.device == "auto" {
        a.gpu.step.device = "cpu".into();
    }
    let timeout = std::time::Duration::from_secs(a.dist_timeout.max(1));
    let o = DistBenchOptions {
        step: gpu_options(&a.gpu)?,
        sizes_mib: a.sizes_mib.clone(),
        allreduce_iters: a.allreduce_iters,
        allreduce_warmup: a.allreduce_warmup,
        bucket_cap_mib: a.bucket_cap_mib,
        reducer: a.reducer,
        timeout,
    };
    let group = group_from_env(timeout).context("joining the torchrun group")?;
    let r = run_dist_bench(&o, group).context("data-parallel benchmark")?;
    if r.rank == 0 {
        emit(&r.summary(), &r, a.gpu.step.json.as_ref())?;
    }
    Ok(())
}

fn loader(a: LoaderBenchArgs) -> anyhow::Result<()> {
    let o = a.options()?;
    let r = run_loader_bench(&o).with_context(|| format!("benchmarking the loader on {}", a.shards.display()))?;
    emit(&r.summary(), &r, a.json.as_ref())
}

fn e2e(a: E2eArgs) -> anyhow::Result<()> {
    // Classes, channels and statistics come from the manifest.
    let (step, device) = step_options(&a.step, 1)?;
    let o = E2eOptions {
        shards: a.shards.clone(),
        pipeline: pipeline(&a.pipeline)?,
        pipeline_name: a.pipeline.clone(),
        threads: a.threads,
        pool_size: a.pool_size,
        q: a.q,
        pinned: !a.no_pinned,
        source: ShardSourceOptions::default().with_memory_budget(a.memory_budget_mib << 20).with_verify(!a.no_verify),
        step,
        steps: a.step.steps,
        warmup: a.step.warmup,
        loader_steps: a.loader_steps.unwrap_or(a.step.steps),
        device,
    };
    let r = run_e2e_bench(&o).with_context(|| format!("end-to-end benchmark on {}", a.shards.display()))?;
    emit(&r.summary(), &r, a.step.json.as_ref())
}
