//! Data-parallel training over c10d (`lt_glmc::dist::{GradReducer,
//! DataParallel}`, `Updater::with_data_parallel`), proved exact against a
//! single process. As in tests/dist.rs, each test re-runs this test binary
//! as its ranks (the same test, selected with `--exact`, with
//! LT_GLMC_DP_TEST_RANK set), Gloo over loopback through a FileStore in a
//! temporary folder, on CPU with one intra-op thread.
//!
//! **The exactness tests.** World size 2; each rank trains a ResNet-32
//! (width 4, projection d = 8, 5 classes) on its own share of the batch:
//! B = 4 paired slots per rank (GLMC's uint8 `[2 views, 2B, 3, 8, 8]`), the
//! same seeded λ / CutMix-box generator on both ranks, SGD with momentum 0.9
//! and weight decay 5e-3, for 3 steps (cross-entropy: 2). Rank 1 starts
//! from other weights and gets rank 0's through `sync_from_root`. The
//! reference, in the parent process, starts from rank 0's weights and per
//! step computes the loss on rank 0's half-batch and its gradients, then on
//! rank 1's half-batch and its gradients, averages them (`g0·½ + g1·½`, the
//! Reducer's own arithmetic: each gradient is copied into its bucket times
//! 1/world, then the buckets are summed) and applies the same SGD.
//!
//! BatchNorm semantics, those of DDP without SyncBatchNorm (and without
//! re-broadcasting buffers every step): each rank normalises with its own
//! half-batch's statistics, which the reference reproduces by running each
//! half through the network on its own; the running statistics are each
//! rank's own. The reference keeps rank 0's: it snapshots the running
//! statistics before the forward of rank 1's half and restores them after
//! that half's backward. Asserted: both ranks' parameters equal the reference's to 1e-6 (max
//! abs diff), the two ranks' parameters are bit-identical, rank 0's running
//! statistics equal the reference's to 1e-6 and rank 1's differ from them,
//! and the loss values the Updater returns (total, L_sup, L_rb, L_con) are,
//! on both ranks, the mean of the reference's two half-batch losses.
//!
//! Variants: GLMC with every gradient its own bucket (`bucket_cap_mib` 0:
//! one bucket for the first backward, then the rebuilt per-gradient
//! buckets) and with DDP's 25 MiB; GLMC through the loss scaler's path
//! (`LossScaler::step_with`, its backward through the reducer) in fp32;
//! cross-entropy, which never uses `head_cb` nor the projection head
//! (`find_unused`: they keep no gradient and do not move). The fp16 path
//! itself (autocast) does not run here: tch 0.24 switches on only CUDA's
//! autocast, and the Gloo reducer takes CPU tensors.
//!
//! **Semantics of the reducer** on hand-made losses: a parameter used on
//! one rank only gets that rank's gradient halved, one used nowhere keeps
//! no gradient; without `find_unused` such a backward is an error on every
//! rank, not a hang; a backward not prepared is refused (and nothing
//! breaks).
//! `ProcessGroup::broadcast_coalesced` on f32 parameters (requiring grad),
//! i64 counters and strided f64 tensors, from rank 1.
//!
//! **Failures.** A rank that dies once the step's loss is all-reduced (so
//! while its peer is in its backward) makes the peer's step fail with
//! `Dist` / `DistTimeout`; a rank that stays alive but never joins the
//! gradient all-reduce makes it fail with `DistTimeout` after the group's
//! timeout (2 s); after either the group refuses further steps. A hang
//! would hit the parent's deadline instead.

mod util;

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::rc::Rc;
use std::time::{Duration, Instant};

use lt_core::rng::Rng;
use lt_glmc::amp::{LossScaleConfig, LossScaler, PrecisionConfig};
use lt_glmc::dist::{DataParallel, GradReducer, ProcessGroup, DEFAULT_BUCKET_CAP_MIB};
use lt_glmc::loss::{ClassStats, LossConfig, LossValues};
use lt_glmc::mix::Normalizer;
use lt_glmc::model::{Arch, GlmcNet, ModelConfig};
use lt_glmc::optim::{Sgd, SgdConfig};
use lt_glmc::step::{CrossEntropyStep, GlmcStep, Step, StepLoss, StepModel, Updater};
use lt_glmc::tch::{nn::VarStore, Device, Kind, Tensor};
use lt_glmc::GlmcError;
use util::torch_lock;

const RANK_VAR: &str = "LT_GLMC_DP_TEST_RANK";
const WORLD_VAR: &str = "LT_GLMC_DP_TEST_WORLD";
const DIR_VAR: &str = "LT_GLMC_DP_TEST_DIR";
const VARIANT_VAR: &str = "LT_GLMC_DP_TEST_VARIANT";

/// Joining and every happy-path collective.
const GENEROUS: Duration = Duration::from_secs(300);
/// The timeout a failure test sets once every rank has joined.
const SHORT: Duration = Duration::from_secs(2);
/// How long the parent waits for all ranks before killing them.
const DEADLINE: Duration = Duration::from_secs(600);

const WORLD: usize = 2;
/// Paired slots per rank: GLMC's batch is `[2, 2B, C, H, W]`.
const B: i64 = 4;
const SIZE: i64 = 8;
const COUNTS: [usize; 5] = [100, 40, 15, 6, 3];
const MODEL_SEED: i64 = 11;
const MIX_SEED: u64 = 5;
const ALPHA: f64 = 0.8;
const SGD: SgdConfig = SgdConfig { lr: 0.1, momentum: 0.9, weight_decay: 5e-3 };
const TOL: f64 = 1e-6;

// ---------------------------------------------------------------------------
// Ranks.
// ---------------------------------------------------------------------------

/// This process's part when it is a rank started by a test.
struct Worker {
    rank: usize,
    world: usize,
    dir: PathBuf,
    variant: String,
}

impl Worker {
    fn get() -> Option<Worker> {
        let rank = std::env::var(RANK_VAR).ok()?.parse().unwrap();
        let world = std::env::var(WORLD_VAR).unwrap().parse().unwrap();
        let dir = PathBuf::from(std::env::var(DIR_VAR).unwrap());
        let variant = std::env::var(VARIANT_VAR).unwrap_or_default();
        Some(Worker { rank, world, dir, variant })
    }

    fn join(&self) -> ProcessGroup {
        ProcessGroup::with_file_store(self.dir.join("store"), self.rank, self.world, GENEROUS)
            .unwrap_or_else(|e| panic!("rank {} joining: {e}", self.rank))
    }

    fn out(&self, what: &str) -> PathBuf {
        self.dir.join(format!("rank{}.{what}.safetensors", self.rank))
    }
}

/// Runs test `name` as ranks 0..world in `dir` with `variant`, waits for
/// all, and panics with every rank's output unless all succeed.
fn run_ranks(name: &str, world: usize, dir: &Path, variant: &str) {
    let children: Vec<(Child, PathBuf)> = (0..world)
        .map(|rank| {
            let log = dir.join(format!("rank{rank}.log"));
            let out = fs::File::create(&log).unwrap();
            let child = Command::new(std::env::current_exe().unwrap())
                .args([name, "--exact", "--nocapture", "--test-threads", "1"])
                .env(RANK_VAR, rank.to_string())
                .env(WORLD_VAR, world.to_string())
                .env(DIR_VAR, dir)
                .env(VARIANT_VAR, variant)
                .stdin(Stdio::null())
                .stdout(out.try_clone().unwrap())
                .stderr(out)
                .spawn()
                .unwrap();
            (child, log)
        })
        .collect();
    let (statuses, logs) = wait_all(children);
    let failed: Vec<String> = statuses
        .iter()
        .zip(&logs)
        .enumerate()
        .filter(|(_, (s, _))| !s.map(|s| s.success()).unwrap_or(false))
        .map(|(rank, (s, log))| format!("rank {rank} ({s:?}):\n{log}"))
        .collect();
    assert!(failed.is_empty(), "{name} ({variant}), world {world}:\n{}", failed.join("\n"));
    // What the ranks report (`## ...` lines).
    for (rank, log) in logs.iter().enumerate() {
        for line in log.lines().filter_map(|l| l.find("## ").map(|i| &l[i + 3..])) {
            eprintln!("[{name} {variant} rank {rank}] {line}");
        }
    }
}

/// Waits for every child until DEADLINE, then kills the rest; returns each
/// exit status (None: killed) and output.
fn wait_all(mut children: Vec<(Child, PathBuf)>) -> (Vec<Option<ExitStatus>>, Vec<String>) {
    let start = Instant::now();
    let mut statuses: Vec<Option<ExitStatus>> = vec![None; children.len()];
    while statuses.iter().any(Option::is_none) && start.elapsed() < DEADLINE {
        for (i, (child, _)) in children.iter_mut().enumerate() {
            if statuses[i].is_none() {
                statuses[i] = child.try_wait().unwrap();
            }
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    for (i, (child, _)) in children.iter_mut().enumerate() {
        if statuses[i].is_none() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
    let logs = children.iter().map(|(_, log)| fs::read_to_string(log).unwrap_or_default()).collect();
    (statuses, logs)
}

/// Waits (without a time limit: the parent's DEADLINE is the limit) until
/// `path` exists.
fn wait_for_file(path: &Path) {
    while !path.exists() {
        std::thread::sleep(Duration::from_millis(20));
    }
}

// ---------------------------------------------------------------------------
// The model, the data and the variants.
// ---------------------------------------------------------------------------

#[derive(Clone, Copy, Debug, PartialEq)]
enum Method {
    Glmc,
    CrossEntropy,
}

/// One exactness run: the method, the reducer's settings, whether the
/// update goes through the loss scaler, the number of steps.
#[derive(Clone, Copy, Debug)]
struct Variant {
    name: &'static str,
    method: Method,
    bucket_cap_mib: usize,
    find_unused: bool,
    scaler: bool,
    steps: usize,
}

const VARIANTS: [Variant; 4] = [
    Variant { name: "glmc-cap0", method: Method::Glmc, bucket_cap_mib: 0, find_unused: false, scaler: false, steps: 3 },
    Variant {
        name: "glmc-cap25",
        method: Method::Glmc,
        bucket_cap_mib: DEFAULT_BUCKET_CAP_MIB,
        find_unused: false,
        scaler: false,
        steps: 3,
    },
    Variant { name: "glmc-scaler", method: Method::Glmc, bucket_cap_mib: 0, find_unused: false, scaler: true, steps: 3 },
    Variant {
        name: "ce-unused",
        method: Method::CrossEntropy,
        bucket_cap_mib: DEFAULT_BUCKET_CAP_MIB,
        find_unused: true,
        scaler: false,
        steps: 2,
    },
];

fn variant(name: &str) -> Variant {
    *VARIANTS.iter().find(|v| v.name == name).unwrap_or_else(|| panic!("no variant {name}"))
}

/// The network, initialised from libtorch's generator seeded with `seed`.
fn build(seed: i64) -> (VarStore, GlmcNet) {
    lt_glmc::tch::manual_seed(seed);
    let vs = VarStore::new(Device::Cpu);
    let cfg = ModelConfig::new(Arch::ResNet32 { width: 4 }, COUNTS.len() as i64).with_proj_dim(8);
    let net = GlmcNet::try_new(&vs.root(), cfg).unwrap();
    (vs, net)
}

/// Every variable (parameters and BatchNorm statistics) sorted by name: the
/// same order on every rank.
fn sorted_vars(vs: &VarStore) -> Vec<(String, Tensor)> {
    let mut v: Vec<_> = vs.variables().into_iter().collect();
    v.sort_by(|a, b| a.0.cmp(&b.0));
    v
}

/// Rank `rank`'s share of step `step`: uint8 images `[views, slots, 3, 8,
/// 8]` and labels `[slots]`, from our own seeded generator.
fn batch(method: Method, step: usize, rank: usize) -> (Tensor, Tensor) {
    let (views, slots) = match method {
        Method::Glmc => (2, 2 * B),
        Method::CrossEntropy => (1, B),
    };
    let mut rng = Rng::derive(0xda7a, &[step as u64, rank as u64]);
    let n = (views * slots * 3 * SIZE * SIZE) as usize;
    let pixels: Vec<u8> = (0..n).map(|_| rng.below(256) as u8).collect();
    let labels: Vec<i64> = (0..slots).map(|_| rng.below(COUNTS.len() as u64) as i64).collect();
    (Tensor::from_slice(&pixels).view([views, slots, 3, SIZE, SIZE]), Tensor::from_slice(&labels))
}

fn new_step(method: Method) -> Box<dyn Step> {
    match method {
        Method::Glmc => Box::new(GlmcStep::new(LossConfig::default(), 1.0, GlmcStep::rng_for_seed(MIX_SEED))),
        Method::CrossEntropy => Box::new(CrossEntropyStep),
    }
}

struct Consts {
    stats: ClassStats,
    norm: Normalizer,
    precision: PrecisionConfig,
}

fn consts() -> Consts {
    Consts {
        stats: ClassStats::try_new(&COUNTS, 1.2, Device::Cpu, Kind::Float).unwrap(),
        norm: Normalizer::try_new(&[0.5, 0.45, 0.4], &[0.25, 0.25, 0.25], Device::Cpu, Kind::Float).unwrap(),
        precision: PrecisionConfig::default(),
    }
}

/// `[total, sup, rb, con]`, an absent term as NaN.
fn row(v: &LossValues) -> [f64; 4] {
    [v.total, v.sup, v.rb.unwrap_or(f64::NAN), v.con.unwrap_or(f64::NAN)]
}

fn max_abs_diff(a: &Tensor, b: &Tensor) -> f64 {
    assert_eq!(a.size(), b.size());
    (a.to_kind(Kind::Double) - b.to_kind(Kind::Double)).abs().max().double_value(&[])
}

fn read(path: &Path) -> Vec<(String, Tensor)> {
    Tensor::read_safetensors(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

// ---------------------------------------------------------------------------
// Exactness.
// ---------------------------------------------------------------------------

/// A rank of an exactness run: trains `v.steps` steps through a
/// data-parallel Updater and writes its variables and loss values.
fn train_rank(w: &Worker, v: Variant) {
    let pg = Rc::new(w.join());
    // Rank 1 starts elsewhere: sync_from_root must bring rank 0's weights.
    let (vs, net) = build(MODEL_SEED + w.rank as i64);
    let mut opt = Sgd::new(&vs, SGD);
    let dp = DataParallel::new(pg.clone(), &opt.params(), v.bucket_cap_mib, v.find_unused).unwrap();
    assert_eq!((dp.reducer().len(), dp.reducer().find_unused()), (opt.params().len(), v.find_unused));
    let state: Vec<Tensor> = sorted_vars(&vs).into_iter().map(|(_, t)| t).collect();
    dp.sync_from_root(&state).unwrap();
    let numel: Vec<usize> = opt.params().iter().map(|p| p.numel()).collect();
    let total: usize = numel.iter().sum();
    let buckets = dp.reducer().bucket_sizes().unwrap();
    eprintln!("## {} parameters, {total} elements; buckets before the first step: {buckets:?}", numel.len());
    // Under 1 MiB in all: one bucket (without find_unused, DDP's first
    // iteration has one bucket whatever the cap).
    assert_eq!(buckets, [total]);
    let scaler = v.scaler.then(|| LossScaler::new(LossScaleConfig::default()));
    let mut upd = Updater::new(opt.params(), scaler).with_data_parallel(dp);
    assert!(upd.data_parallel().is_some());
    let c = consts();
    let m = StepModel { net: &net, stats: &c.stats, norm: &c.norm, precision: &c.precision };
    let mut step = new_step(v.method);
    let mut losses = Vec::new();
    for s in 0..v.steps {
        let (x, y) = batch(v.method, s, w.rank);
        let out = upd.apply(&mut opt, step.as_mut(), &m, (&x, &y), ALPHA, (s as u64, 0)).unwrap();
        assert!(!out.skipped);
        losses.extend(row(&out.values));
        eprintln!("## step {s}: loss {:?}", row(&out.values));
    }
    let buckets = upd.data_parallel().unwrap().reducer().bucket_sizes().unwrap();
    eprintln!("## buckets after {} steps: {} of {:?} elements", v.steps, buckets.len(), &buckets[..buckets.len().min(8)]);
    assert_eq!(buckets.iter().sum::<usize>(), total);
    if v.bucket_cap_mib == 0 {
        // Rebuilt after the first backward: every gradient its own bucket,
        // in the order they became ready (rank 0's).
        let mut sorted = buckets.clone();
        sorted.sort_unstable();
        let mut want = numel.clone();
        want.sort_unstable();
        assert_eq!(sorted, want);
    } else {
        assert_eq!(buckets, [total]);
    }
    if let Some(sc) = upd.loss_scale_state() {
        assert_eq!((sc.steps, sc.skipped), (v.steps as u64, 0));
    }
    let mut out: Vec<(String, Tensor)> = sorted_vars(&vs).into_iter().map(|(n, t)| (n, t.detach().contiguous())).collect();
    out.push(("loss".into(), Tensor::from_slice(&losses).view([v.steps as i64, 4])));
    Tensor::write_safetensors(&out, w.out("state")).unwrap();
    // Nobody leaves (and deletes the folder) before everyone has written.
    upd.data_parallel().unwrap().pg().barrier().unwrap();
}

/// The loss rows of a step's two half-batches.
type HalfLosses = [[f64; 4]; 2];

/// The single-process reference: per step, the two half-batches one after
/// the other, their gradients averaged, one SGD update. Returns its
/// variables and, per step, the two halves' loss rows.
fn reference(v: Variant) -> (Vec<(String, Tensor)>, Vec<HalfLosses>) {
    let (vs, net) = build(MODEL_SEED);
    let mut opt = Sgd::new(&vs, SGD);
    let params = opt.params();
    let buffers: Vec<Tensor> = vs.variables().into_values().filter(|t| !t.requires_grad()).collect();
    assert!(!buffers.is_empty());
    let c = consts();
    let m = StepModel { net: &net, stats: &c.stats, norm: &c.norm, precision: &c.precision };
    // One generator per half, seeded alike: both draw the λ and box the
    // ranks draw.
    let mut steps = [new_step(v.method), new_step(v.method)];
    let mut losses = Vec::new();
    for s in 0..v.steps {
        let mut grads: Vec<Vec<Option<Tensor>>> = Vec::new();
        let mut rows = [[0.0; 4]; 2];
        for (half, step) in steps.iter_mut().enumerate() {
            let (x, y) = batch(v.method, s, half);
            // Rank 0's running statistics are the reference's.
            let saved: Vec<Tensor> = buffers.iter().map(|b| b.copy()).collect();
            let StepLoss { terms, .. } = step.loss(&m, &x, &y, ALPHA).unwrap();
            rows[half] = row(&terms.values().unwrap());
            opt.zero_grad().unwrap();
            terms.total.backward();
            grads.push(params.iter().map(|p| Some(p.grad()).filter(Tensor::defined).map(|g| g.copy())).collect());
            // After the backward: BatchNorm's backward holds the statistics.
            if half == 1 {
                lt_glmc::tch::no_grad(|| {
                    for (b, s) in buffers.iter().zip(&saved) {
                        b.shallow_clone().copy_(s);
                    }
                });
            }
        }
        lt_glmc::tch::no_grad(|| {
            for (i, p) in params.iter().enumerate() {
                match (&grads[0][i], &grads[1][i]) {
                    (Some(g0), Some(g1)) => {
                        p.grad().copy_(&(g0 * 0.5 + g1 * 0.5));
                    }
                    (None, None) => assert!(!p.grad().defined()),
                    _ => panic!("parameter {i} has a gradient on one half only"),
                }
            }
        });
        opt.step().unwrap();
        losses.push(rows);
    }
    (sorted_vars(&vs), losses)
}

/// Runs variant `name` on 2 ranks and checks them against the reference.
fn check_exact(test: &str, name: &str) {
    let v = variant(name);
    let dir = tempfile::tempdir().unwrap();
    let t0 = Instant::now();
    run_ranks(test, WORLD, dir.path(), name);
    let ranks_s = t0.elapsed().as_secs_f64();
    let t1 = Instant::now();
    let (ref_vars, ref_losses) = reference(v);
    let ref_s = t1.elapsed().as_secs_f64();
    let ranks: Vec<Vec<(String, Tensor)>> = (0..WORLD).map(|r| read(&dir.path().join(format!("rank{r}.state.safetensors")))).collect();
    let get = |r: usize, name: &str| ranks[r].iter().find(|(n, _)| n == name).map(|(_, t)| t.shallow_clone()).unwrap();

    let (vs0, _) = build(MODEL_SEED);
    let init: std::collections::HashMap<String, Tensor> = vs0.variables();
    let (mut worst_param, mut worst_buffer, mut moved, mut unmoved) = (0.0f64, 0.0f64, 0, Vec::new());
    let mut rank1_stats_differ = false;
    for (n, want) in &ref_vars {
        let (r0, r1) = (get(0, n), get(1, n));
        if want.requires_grad() {
            let d = max_abs_diff(&r0, want).max(max_abs_diff(&r1, want));
            assert!(d <= TOL, "{name}: parameter {n} differs from the reference by {d:e}");
            assert!(r0.equal(&r1), "{name}: parameter {n} differs between the ranks");
            worst_param = worst_param.max(d);
            if max_abs_diff(want, &init[n]) > 0.0 {
                moved += 1;
            } else {
                unmoved.push(n.clone());
            }
        } else {
            let d = max_abs_diff(&r0, want);
            assert!(d <= TOL, "{name}: rank 0's running statistic {n} differs from the reference by {d:e}");
            worst_buffer = worst_buffer.max(d);
            rank1_stats_differ |= max_abs_diff(&r1, want) > 1e-4;
        }
    }
    assert!(rank1_stats_differ, "{name}: rank 1's running statistics should be its own");
    match v.method {
        // Every parameter is trained.
        Method::Glmc => assert!(unmoved.is_empty(), "{name}: parameters that did not move: {unmoved:?}"),
        // g_cb, P and Q get no gradient: they keep their initial values.
        Method::CrossEntropy => {
            assert!(!unmoved.is_empty() && unmoved.iter().all(|n| ["head_cb.", "proj.", "pred."].iter().any(|h| n.starts_with(h))));
            assert_eq!(unmoved.len(), 6, "{unmoved:?}");
        }
    }
    let mut worst_loss = 0.0f64;
    for r in 0..WORLD {
        let got = get(r, "loss");
        assert_eq!(got.size(), [v.steps as i64, 4]);
        for (s, halves) in ref_losses.iter().enumerate() {
            for (k, (h0, h1)) in halves[0].iter().zip(&halves[1]).enumerate() {
                let g = got.double_value(&[s as i64, k as i64]);
                let want = (h0 + h1) / 2.0;
                if want.is_nan() {
                    assert!(g.is_nan(), "{name}: step {s} term {k}: rank {r} has {g}, the method has no such term");
                    continue;
                }
                assert!(h0 != h1, "{name}: the halves should differ");
                let d = (g - want).abs();
                assert!(d <= TOL, "{name}: step {s} term {k}: rank {r} returned {g}, the halves' mean is {want}");
                worst_loss = worst_loss.max(d);
            }
        }
    }
    // Bit for bit (an absent term is NaN on both).
    assert!(get(0, "loss").allclose(&get(1, "loss"), 0.0, 0.0, true), "{name}: the ranks returned different loss values");
    eprintln!(
        "{name}: {moved} parameters trained, max |Δ| vs the reference: parameters {worst_param:e}, rank 0's statistics \
         {worst_buffer:e}, loss values {worst_loss:e}; ranks {ranks_s:.1} s, reference {ref_s:.1} s"
    );
}

#[test]
fn glmc_matches_the_half_batch_reference() {
    let _g = torch_lock();
    if let Some(w) = Worker::get() {
        train_rank(&w, variant(&w.variant));
        return;
    }
    for name in ["glmc-cap0", "glmc-cap25"] {
        check_exact("glmc_matches_the_half_batch_reference", name);
    }
}

#[test]
fn glmc_through_the_loss_scaler_matches_the_reference() {
    let _g = torch_lock();
    if let Some(w) = Worker::get() {
        train_rank(&w, variant(&w.variant));
        return;
    }
    check_exact("glmc_through_the_loss_scaler_matches_the_reference", "glmc-scaler");
}

#[test]
fn cross_entropy_leaves_unused_heads_alone() {
    let _g = torch_lock();
    if let Some(w) = Worker::get() {
        train_rank(&w, variant(&w.variant));
        return;
    }
    check_exact("cross_entropy_leaves_unused_heads_alone", "ce-unused");
}

// ---------------------------------------------------------------------------
// The reducer's semantics and broadcast_coalesced.
// ---------------------------------------------------------------------------

fn leaf(values: &[f32]) -> Tensor {
    Tensor::from_slice(values).set_requires_grad(true)
}

fn grad_of(p: &Tensor) -> Option<Vec<f32>> {
    let g = p.grad();
    g.defined().then(|| Vec::<f32>::try_from(&g).unwrap())
}

#[test]
fn reducer_averages_and_leaves_unused_parameters_alone() {
    let _g = torch_lock();
    if let Some(w) = Worker::get() {
        let pg = w.join();
        let r = w.rank as f32;
        // a: used everywhere; b: used on one rank per iteration; c: never.
        let (a, b, c) = (leaf(&[1.0, 2.0, 3.0]), leaf(&[1.0, 1.0]), leaf(&[5.0, 5.0]));
        let params = [a.shallow_clone(), b.shallow_clone(), c.shallow_clone()];
        let mut red = GradReducer::new(&pg, &params, 0, true).unwrap();
        assert_eq!((red.len(), red.bucket_cap_mib(), red.find_unused()), (3, 0, true));
        // With find_unused the buckets are cut from the start: every
        // gradient its own (cap 0), the last parameter's first.
        assert_eq!(red.bucket_sizes().unwrap(), [2, 2, 3]);
        for it in 0..3 {
            let user = it % 2; // the rank that uses b this iteration
            let ka = Tensor::from_slice(&[1.0f32, 10.0, 100.0]) * (r as f64 + 1.0);
            let mut loss = (&a * &ka).sum(Kind::Float);
            if w.rank == user {
                loss += (&b * Tensor::from_slice(&[4.0f32, 8.0])).sum(Kind::Float);
            }
            for p in &params {
                let mut g = p.grad();
                if g.defined() {
                    let _ = g.zero_();
                }
            }
            red.prepare_for_backward(&[&loss]).unwrap();
            red.backward(&loss).unwrap();
            // (1 + 2)/2 = 1.5 times ka's pattern, on both ranks.
            assert_eq!(grad_of(&a).unwrap(), [1.5, 15.0, 150.0], "rank {} iteration {it}", w.rank);
            // Only the user's [4, 8], halved.
            assert_eq!(grad_of(&b).unwrap(), [2.0, 4.0], "rank {} iteration {it}", w.rank);
            assert_eq!(grad_of(&c), None, "rank {} iteration {it}", w.rank);
        }
        // Without a prepare: refused here, before any communication (so
        // the ranks stay in step and the reducer usable).
        let _ = a.grad().zero_();
        let loss = (&a * 2.0).sum(Kind::Float);
        let err = red.backward(&loss).unwrap_err();
        assert!(err.to_string().contains("prepare_for_backward must come before"), "{err}");
        assert_eq!(grad_of(&a).unwrap(), [0.0; 3]);
        red.prepare_for_backward(&[&loss]).unwrap();
        red.backward(&loss).unwrap();
        assert_eq!(grad_of(&a).unwrap(), [2.0; 3]);
        drop(red);

        // Without find_unused, a parameter that gets no gradient leaves its
        // bucket unreduced: an error on every rank, not a hang.
        let mut red = GradReducer::new(&pg, &params, DEFAULT_BUCKET_CAP_MIB, false).unwrap();
        let loss = (&a * 3.0).sum(Kind::Float);
        red.prepare_for_backward(&[&loss]).unwrap();
        match red.backward(&loss) {
            Err(GlmcError::Dist { op, why }) => {
                assert!(op.starts_with("backward"), "{op}");
                assert!(why.contains("find_unused_parameters"), "{why}");
                eprintln!("## the expected error: {why}");
            }
            other => panic!("expected an error naming find_unused, got {other:?}"),
        }
        drop(red);
        // The group is still in step.
        pg.barrier().unwrap();
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    run_ranks("reducer_averages_and_leaves_unused_parameters_alone", WORLD, dir.path(), "");
}

#[test]
fn broadcast_coalesced_sends_root_tensors() {
    let _g = torch_lock();
    if let Some(w) = Worker::get() {
        let pg = w.join();
        let r = w.rank as f32;
        let weight = leaf(&[r, r + 1.0, r + 2.0, r + 3.0, r + 4.0, r + 5.0]).view([2, 3]).detach().set_requires_grad(true);
        let counter = Tensor::scalar_tensor(7.0 * r as f64, (Kind::Int64, Device::Cpu));
        let strided = Tensor::from_slice(&[0.5 * r as f64, 1.0, 2.0, 3.0 * r as f64]).view([2, 2]).tr();
        let big = Tensor::full([300_000], r as f64 + 0.25, (Kind::Float, Device::Cpu));
        let ts = [weight.shallow_clone(), counter.shallow_clone(), strided.shallow_clone(), big.shallow_clone()];
        pg.broadcast_coalesced(&ts, 1).unwrap();
        assert_eq!(Vec::<f32>::try_from(&weight.flatten(0, -1)).unwrap(), [1.0, 2.0, 3.0, 4.0, 5.0, 6.0]);
        assert!(weight.requires_grad());
        assert_eq!(counter.int64_value(&[]), 7);
        assert_eq!(Vec::<f64>::try_from(&strided.contiguous().flatten(0, -1)).unwrap(), [0.5, 2.0, 1.0, 3.0]);
        assert_eq!(big.min().double_value(&[]), 1.25);
        assert_eq!(big.max().double_value(&[]), 1.25);
        pg.broadcast_coalesced(&[], 0).unwrap();
        assert!(matches!(pg.broadcast_coalesced(&ts, 2), Err(GlmcError::Dist { op: "broadcast_coalesced", .. })));
        pg.barrier().unwrap();
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    run_ranks("broadcast_coalesced_sends_root_tensors", WORLD, dir.path(), "");
}

// ---------------------------------------------------------------------------
// Failures.
// ---------------------------------------------------------------------------

/// A cross-entropy data-parallel Updater on rank `w.rank`, its collectives
/// bounded by [`SHORT`] once every rank has joined; the model and its
/// constants.
fn failing_setup(w: &Worker) -> (Updater, Sgd, VarStore, GlmcNet) {
    let mut pg = w.join();
    pg.barrier().unwrap();
    pg.set_timeout(SHORT).unwrap();
    let (vs, net) = build(MODEL_SEED);
    let opt = Sgd::new(&vs, SGD);
    let dp = DataParallel::new(Rc::new(pg), &opt.params(), DEFAULT_BUCKET_CAP_MIB, true).unwrap();
    let upd = Updater::new(opt.params(), None).with_data_parallel(dp);
    (upd, opt, vs, net)
}

/// Rank 1's part: the step's loss all-reduce (what `Updater::apply` runs
/// before the backward), then `then` instead of the backward.
fn stop_after_the_loss(upd: &Updater, then: impl FnOnce()) {
    let mut values = Tensor::from_slice(&[1.0f64, 1.0, 0.0, 0.0]);
    upd.data_parallel().unwrap().pg().all_reduce_mean(&mut values).unwrap();
    then()
}

/// Rank 0's part: its step fails with `check`'s error, then the group
/// refuses the next one.
fn step_fails(upd: &mut Updater, opt: &mut Sgd, net: &GlmcNet, check: impl FnOnce(&GlmcError)) {
    let c = consts();
    let m = StepModel { net, stats: &c.stats, norm: &c.norm, precision: &c.precision };
    let (x, y) = batch(Method::CrossEntropy, 0, 0);
    let t0 = Instant::now();
    let err = upd.apply(opt, &mut CrossEntropyStep, &m, (&x, &y), ALPHA, (0, 0)).map(|o| o.values.total).unwrap_err();
    eprintln!("## the expected error after {:.2} s: {err}", t0.elapsed().as_secs_f64());
    check(&err);
    let err = upd.apply(opt, &mut CrossEntropyStep, &m, (&x, &y), ALPHA, (1, 0)).map(|o| o.values.total).unwrap_err();
    assert!(err.to_string().contains("unusable"), "{err}");
}

#[test]
fn a_rank_that_dies_fails_its_peers_backward() {
    let _g = torch_lock();
    if let Some(w) = Worker::get() {
        let (mut upd, mut opt, _vs, net) = failing_setup(&w);
        if w.rank == 1 {
            // Dies without closing anything, as a killed rank would, while
            // rank 0 is in its backward.
            stop_after_the_loss(&upd, || std::process::exit(0));
        }
        step_fails(&mut upd, &mut opt, &net, |e| {
            assert!(matches!(e, GlmcError::Dist { op: "backward (gradient all-reduce)", .. } | GlmcError::DistTimeout { .. }), "{e:?}");
        });
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    run_ranks("a_rank_that_dies_fails_its_peers_backward", WORLD, dir.path(), "");
}

#[test]
fn a_rank_that_skips_the_backward_times_out() {
    let _g = torch_lock();
    if let Some(w) = Worker::get() {
        let (mut upd, mut opt, _vs, net) = failing_setup(&w);
        let done = w.dir.join("rank0_done");
        if w.rank == 1 {
            // Alive, but stays away from the gradient all-reduce until rank
            // 0 is done.
            stop_after_the_loss(&upd, || wait_for_file(&done));
            return;
        }
        step_fails(&mut upd, &mut opt, &net, |e| match e {
            GlmcError::DistTimeout { op, timeout, .. } => {
                assert_eq!((*op, *timeout), ("backward (gradient all-reduce)", SHORT));
            }
            other => panic!("expected a timeout, got {other:?}"),
        });
        fs::write(&done, "").unwrap();
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    run_ranks("a_rank_that_skips_the_backward_times_out", WORLD, dir.path(), "");
}
