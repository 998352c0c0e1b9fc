//! `lt-bench dist`: what data-parallel training costs on a c10d group.
//!
//! Run alone, or one process per rank under torchrun:
//!
//! ```text
//! lt-bench dist --device cpu --torch-threads 1 --width 16 --batch-size 64
//! torchrun --standalone --nproc-per-node 2 --no-python lt-bench dist --device cpu --torch-threads 1 --width 16 --batch-size 64
//! ```
//!
//! It measures, on every rank, and reports from rank 0:
//!
//! 1. **Gloo all-reduce bandwidth**: [`ProcessGroup::all_reduce_sum`] of an
//!    f32 tensor of each size, after a barrier, warm-up calls and a check
//!    that the sum is right; each call timed on its own. Bandwidths follow
//!    NCCL-tests: *algbw* = bytes / time, *busbw* = algbw × 2(n−1)/n (what
//!    each link carries in a ring all-reduce, comparable across world
//!    sizes), both in GB/s (10⁹ bytes/s), from the median call time of the
//!    slowest rank. Alone there is no group: the all-reduces run on a
//!    FileStore group of one (Gloo's cost of a one-rank all-reduce; busbw
//!    is 0 by the formula).
//! 2. **The GLMC step** at the given per-rank batch B: the same model, step
//!    and synthetic device-resident input as `lt-bench gpu`
//!    ([`crate::glmc::GlmcStepper`], lt-train's own `Step` and `Updater`),
//!    data-parallel as lt-train runs it when the world has more than one
//!    rank ([`GlmcStepper::try_new_data_parallel`]: rank 0's weights
//!    broadcast, gradients averaged by c10d's Reducer in buckets during
//!    backward, the loss values all-reduced), and the plain single-process
//!    step alone, so the two runs compare directly. `reducer` forces the
//!    reducer at world size 1 too (its own overhead). Step times are each
//!    rank's medians and means; the report takes the slowest rank's.
//!    Images/s count 2B per step per rank, as `lt-bench gpu` does.
//!    Beside the wall-clock times, each rank's CPU time per step (all its
//!    threads, gloo's included, from `getrusage`): on a machine other work
//!    shares, it tells extra work from waiting for a core.
//!
//! Gloo works on CPU tensors: `device` must be the CPU.

use std::path::PathBuf;
use std::rc::Rc;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use tch::{Device, Kind, Tensor};

use crate::error::{BenchError, Result};
use crate::glmc::{device_name, gpu_report, synthetic_batch, timed_steps, GlmcStepper, GpuBenchOptions, GpuBenchReport};
use lt_glmc::dist::{Backend, ProcessGroup};
use lt_glmc::GlmcError;

/// `lt-bench dist` settings.
#[derive(Clone, Debug)]
pub struct DistBenchOptions {
    /// The step: model, per-rank batch, precision, input size, steps,
    /// warm-up, device (`lt-bench gpu`'s settings).
    pub step: GpuBenchOptions,
    /// All-reduce sizes, MiB of f32.
    pub sizes_mib: Vec<f64>,
    /// Timed all-reduce calls per size.
    pub allreduce_iters: usize,
    /// Untimed all-reduce calls per size before them.
    pub allreduce_warmup: usize,
    /// The Reducer's bucket cap (DDP's is 25 MiB).
    pub bucket_cap_mib: usize,
    /// Run the step through the gradient reducer at world size 1 too.
    pub reducer: bool,
    /// Bounds joining the group and every collective.
    pub timeout: Duration,
}

/// One all-reduce size.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct AllReduceResult {
    pub bytes: u64,
    pub mib: f64,
    pub iters: usize,
    pub warmup: usize,
    /// Slowest rank's median and mean call time.
    pub ms_median: f64,
    pub ms_mean: f64,
    /// bytes / median time, GB/s (10⁹ B/s).
    pub algbw_gbps: f64,
    /// algbw × 2(n−1)/n.
    pub busbw_gbps: f64,
}

/// One `lt-bench dist` measurement (one JSON line, from rank 0).
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct DistBenchReport {
    pub tool: String,
    /// The rank that made this report (only rank 0's is printed).
    #[serde(skip)]
    pub rank: usize,
    pub backend: String,
    pub world_size: usize,
    /// Joined from torchrun's environment (else alone).
    pub torchrun: bool,
    pub device: String,
    pub torch_threads: i32,
    /// Trainable parameters of the model, and their f32 gradients' bytes
    /// (what one step all-reduces).
    pub params: i64,
    pub grad_bytes: i64,
    pub allreduce: Vec<AllReduceResult>,
    /// The step ran through the gradient reducer.
    pub data_parallel: bool,
    pub bucket_cap_mib: usize,
    /// Per-rank B and 2B (the images each rank trains on per step).
    pub batch_size: usize,
    pub images_per_step_per_rank: usize,
    /// The slowest rank's median and mean step time.
    pub step_ms_median: f64,
    pub step_ms_mean: f64,
    /// Every rank's median step time, by rank.
    pub step_ms_median_per_rank: Vec<f64>,
    /// CPU time of the process (all threads) per timed step: the largest
    /// over the ranks, and every rank's.
    pub cpu_ms_per_step: f64,
    pub cpu_ms_per_step_per_rank: Vec<f64>,
    /// Rank 0's machine's load average (1, 5, 15 min) when the step
    /// started, where the system reports it.
    pub load_average: Option<[f64; 3]>,
    /// The slowest rank's images/s, and the sum over the ranks.
    pub images_per_s_per_rank: f64,
    pub images_per_s_total: f64,
    /// Rank 0's step report (`lt-bench gpu`'s fields).
    pub step: GpuBenchReport,
}

impl DistBenchReport {
    /// A table of the all-reduces and a line for the step.
    pub fn summary(&self) -> String {
        let mut s = format!(
            "lt-bench dist: world {n} ({be}{how}), {dev}, {t} torch thread(s) per rank; {p:.2} M parameters ({g:.1} MiB of f32 gradients)\n",
            n = self.world_size,
            be = self.backend,
            how = if self.torchrun { ", torchrun" } else { ", alone" },
            dev = self.device,
            t = self.torch_threads,
            p = self.params as f64 / 1e6,
            g = self.grad_bytes as f64 / (1 << 20) as f64,
        );
        s.push_str("| all-reduce f32 (MiB) | median ms | mean ms | algbw GB/s | busbw GB/s |\n|---|---|---|---|---|\n");
        for r in &self.allreduce {
            s.push_str(&format!("| {:.1} | {:.3} | {:.3} | {:.3} | {:.3} |\n", r.mib, r.ms_median, r.ms_mean, r.algbw_gbps, r.busbw_gbps));
        }
        if self.world_size == 1 {
            s.push_str("(one rank: Gloo moves no data; these are the cost of the call, not a bandwidth)\n");
        }
        let st = &self.step;
        s.push_str(&format!(
            "GLMC step {model} B={b}/rank ({ips} img/step/rank) {hw}px {prec} {fmt}, {dp}: step median {med:.2} ms, mean {mean:.2} \
             (slowest rank; per rank {per}), {r:.1} images/s per rank, {tot:.1} total, {n} steps after {w} warm-up; \
             CPU {cpu:.1} ms per step per rank (most), load average {load}",
            model = st.model,
            b = self.batch_size,
            ips = self.images_per_step_per_rank,
            hw = st.image_size,
            prec = st.precision,
            fmt = st.memory_format,
            dp = if self.data_parallel {
                format!("data-parallel (c10d Reducer, {} MiB buckets)", self.bucket_cap_mib)
            } else {
                "single process (no reducer)".into()
            },
            med = self.step_ms_median,
            mean = self.step_ms_mean,
            per = self.step_ms_median_per_rank.iter().map(|m| format!("{m:.2}")).collect::<Vec<_>>().join(" / "),
            r = self.images_per_s_per_rank,
            tot = self.images_per_s_total,
            n = st.timing.steps,
            w = st.warmup,
            cpu = self.cpu_ms_per_step,
            load = self.load_average.map_or("unknown".into(), |l| format!("{:.2} {:.2} {:.2}", l[0], l[1], l[2])),
        ));
        s
    }
}

/// The group torchrun describes when WORLD_SIZE is set, else `None` (one
/// process).
pub fn group_from_env(timeout: Duration) -> Result<Option<Rc<ProcessGroup>>> {
    if std::env::var_os("WORLD_SIZE").is_none() {
        return Ok(None);
    }
    Ok(Some(Rc::new(ProcessGroup::from_env_with(Backend::Gloo, timeout)?)))
}

/// A FileStore group of one, for a process alone; the store's file is
/// removed when the last handle on the group has gone.
struct SoloGroup {
    pg: Option<Rc<ProcessGroup>>,
    path: PathBuf,
}

impl SoloGroup {
    fn new(timeout: Duration) -> Result<Self> {
        let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_nanos()).unwrap_or(0);
        let path = std::env::temp_dir().join(format!("lt-bench-dist-{}-{nanos}.store", std::process::id()));
        let pg = ProcessGroup::with_file_store(&path, 0, 1, timeout)?;
        Ok(SoloGroup { pg: Some(Rc::new(pg)), path })
    }
}

impl Drop for SoloGroup {
    fn drop(&mut self) {
        drop(self.pg.take());
        let _ = std::fs::remove_file(&self.path);
    }
}

/// CPU time of this process so far (every thread), in ms.
fn process_cpu_ms() -> f64 {
    // SAFETY: getrusage writes the struct it is given.
    let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
    if unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut ru) } != 0 {
        return f64::NAN;
    }
    let ms = |t: libc::timeval| t.tv_sec as f64 * 1e3 + t.tv_usec as f64 * 1e-3;
    ms(ru.ru_utime) + ms(ru.ru_stime)
}

/// /proc/loadavg's three averages (Linux).
fn load_average() -> Option<[f64; 3]> {
    let s = std::fs::read_to_string("/proc/loadavg").ok()?;
    let v: Vec<f64> = s.split_whitespace().take(3).filter_map(|x| x.parse().ok()).collect();
    Some([*v.first()?, *v.get(1)?, *v.get(2)?])
}

fn median_mean(ms: &mut [f64]) -> (f64, f64) {
    if ms.is_empty() {
        return (0.0, 0.0);
    }
    ms.sort_by(|a, b| a.total_cmp(b));
    (ms[ms.len() / 2], ms.iter().sum::<f64>() / ms.len() as f64)
}

/// Every rank's `values`, as rows by rank.
fn gather(pg: &ProcessGroup, values: &[f64]) -> Result<Vec<Vec<f64>>> {
    let rows = pg.all_gather(&Tensor::from_slice(values))?;
    let flat = Vec::<f64>::try_from(rows.f_reshape([-1])?)?;
    Ok(flat.chunks(values.len().max(1)).map(|c| c.to_vec()).collect())
}

fn all_reduce_size(pg: &ProcessGroup, mib: f64, warmup: usize, iters: usize) -> Result<AllReduceResult> {
    let n = ((mib * (1 << 20) as f64) / 4.0).round().max(1.0) as i64;
    let bytes = 4 * n as u64;
    let world = pg.world_size();
    // The sum must be right: every element becomes the world size.
    let mut t = Tensor::f_ones([n], (Kind::Float, Device::Cpu))?;
    pg.all_reduce_sum(&mut t)?;
    let (lo, hi) = (t.f_min()?.double_value(&[]), t.f_max()?.double_value(&[]));
    if lo != world as f64 || hi != world as f64 {
        let why = format!("sum of ones over {world} ranks gave values in [{lo}, {hi}]");
        return Err(GlmcError::Dist { op: "all-reduce check", why }.into());
    }
    // Zeros from here on (sums that never grow).
    let _ = t.f_zero_()?;
    for _ in 0..warmup {
        pg.all_reduce_sum(&mut t)?;
    }
    pg.barrier()?;
    let mut ms = Vec::with_capacity(iters);
    for _ in 0..iters {
        let t0 = Instant::now();
        pg.all_reduce_sum(&mut t)?;
        ms.push(t0.elapsed().as_secs_f64() * 1e3);
    }
    let (med, mean) = median_mean(&mut ms);
    let ranks = gather(pg, &[med, mean])?;
    let ms_median = ranks.iter().map(|r| r[0]).fold(0.0, f64::max);
    let ms_mean = ranks.iter().map(|r| r[1]).fold(0.0, f64::max);
    let algbw = if ms_median > 0.0 { bytes as f64 / (ms_median * 1e-3) / 1e9 } else { 0.0 };
    Ok(AllReduceResult {
        bytes,
        mib: bytes as f64 / (1 << 20) as f64,
        iters,
        warmup,
        ms_median,
        ms_mean,
        algbw_gbps: algbw,
        busbw_gbps: algbw * 2.0 * (world as f64 - 1.0) / world as f64,
    })
}

/// `lt-bench dist` on this rank: `group` is the torchrun group
/// ([`group_from_env`]) or `None` alone. Every rank returns the report (the
/// caller prints rank 0's).
pub fn run_dist_bench(o: &DistBenchOptions, group: Option<Rc<ProcessGroup>>) -> Result<DistBenchReport> {
    let s = &o.step;
    if s.steps == 0 || o.allreduce_iters == 0 {
        return Err(BenchError::Setting { setting: "steps", why: "must be ≥ 1".into() });
    }
    if s.device != Device::Cpu {
        let why = format!("{}: the Gloo backend reduces CPU tensors (NCCL is to come); use --device cpu", device_name(s.device));
        return Err(BenchError::Setting { setting: "device", why });
    }
    if let Some(bad) = o.sizes_mib.iter().find(|m| !(m.is_finite() && **m > 0.0)) {
        return Err(BenchError::Setting { setting: "sizes_mib", why: format!("{bad}: sizes must be positive") });
    }
    let torchrun = group.is_some();
    // Declared first, dropped last: after every handle on its group.
    let mut solo = None;
    let pg: Rc<ProcessGroup> = match group {
        Some(g) => g,
        None => solo.insert(SoloGroup::new(o.timeout)?).pg.clone().expect("solo group"),
    };
    let world = pg.world_size();

    // (1) All-reduce bandwidth.
    let mut allreduce = Vec::with_capacity(o.sizes_mib.len());
    for &mib in &o.sizes_mib {
        allreduce.push(all_reduce_size(&pg, mib, o.allreduce_warmup, o.allreduce_iters)?);
    }

    // (2) The step: data-parallel on a group of more than one rank (or when
    // asked), else the plain step.
    let mut stepper = if world > 1 || o.reducer {
        GlmcStepper::try_new_data_parallel(s.step.clone(), s.device, pg.clone(), o.bucket_cap_mib)?
    } else {
        GlmcStepper::try_new(s.step.clone(), s.device)?
    };
    let params: i64 = stepper.vs.trainable_variables().iter().map(|t| t.numel() as i64).sum();
    let data_parallel = stepper.is_data_parallel();
    let load_average = load_average();
    let (x, y) = synthetic_batch(stepper.options(), s.image_size, s.device)?;
    let next = |_| Ok((x.shallow_clone(), y.shallow_clone(), None));
    pg.barrier()?;
    timed_steps(&mut stepper, s.warmup, 0, next)?;
    let cpu0 = process_cpu_ms();
    let (t, skipped, last) = timed_steps(&mut stepper, 0, s.steps, next)?;
    let cpu_ms = (process_cpu_ms() - cpu0) / s.steps as f64;
    let step = gpu_report(&stepper, s.image_size, s.warmup, t, skipped, last);
    drop(stepper);
    let t = &step.timing;
    let ranks = gather(&pg, &[t.step_ms_median, t.step_ms_mean, step.images_per_s, cpu_ms])?;
    let per_step = 2 * s.step.batch_size;
    Ok(DistBenchReport {
        tool: "lt-bench dist".into(),
        rank: pg.rank(),
        backend: pg.backend().name().into(),
        world_size: world,
        torchrun,
        device: device_name(s.device),
        torch_threads: tch::get_num_threads(),
        params,
        grad_bytes: 4 * params,
        allreduce,
        data_parallel,
        bucket_cap_mib: o.bucket_cap_mib,
        batch_size: s.step.batch_size,
        images_per_step_per_rank: per_step,
        step_ms_median: ranks.iter().map(|r| r[0]).fold(0.0, f64::max),
        step_ms_mean: ranks.iter().map(|r| r[1]).fold(0.0, f64::max),
        step_ms_median_per_rank: ranks.iter().map(|r| r[0]).collect(),
        cpu_ms_per_step: ranks.iter().map(|r| r[3]).fold(0.0, f64::max),
        cpu_ms_per_step_per_rank: ranks.iter().map(|r| r[3]).collect(),
        load_average,
        images_per_s_per_rank: ranks.iter().map(|r| r[2]).fold(f64::INFINITY, f64::min),
        images_per_s_total: ranks.iter().map(|r| r[2]).sum(),
        step,
    })
}
