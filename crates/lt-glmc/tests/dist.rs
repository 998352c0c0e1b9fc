//! c10d process groups across real processes: each test re-runs this test
//! binary as its ranks (the same test, selected with `--exact`, with
//! LT_GLMC_DIST_TEST_RANK set), over a FileStore in a temporary folder, or
//! over a TCPStore from torchrun's environment variables, or under torchrun
//! itself (needs $LT_GLMC_PYTHON, the venv of tools/setup.sh; skipped
//! without it unless LT_REQUIRE_PYTHON=1).
//!
//! The happy paths join and run with a generous timeout (minutes), so a
//! loaded machine only makes them slower; the failure tests shorten the
//! timeout once every rank has joined, and the rank that stays away waits
//! for a file instead of a clock. No assertion is about time.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use lt_glmc::dist::{Backend, DistEnv, GlooDevice, GradReducer, GroupConfig, ProcessGroup, Store};
use lt_glmc::tch::{Device, Kind, Tensor};
use lt_glmc::GlmcError;

mod util;
use util::free_port;

const RANK_VAR: &str = "LT_GLMC_DIST_TEST_RANK";
const WORLD_VAR: &str = "LT_GLMC_DIST_TEST_WORLD";
const DIR_VAR: &str = "LT_GLMC_DIST_TEST_DIR";
/// Set on torchrun, which passes it to the ranks it starts.
const TORCHRUN_VAR: &str = "LT_GLMC_DIST_TEST_TORCHRUN";

/// Joining and every happy-path collective.
const GENEROUS: Duration = Duration::from_secs(300);
/// The timeout a failure test sets once every rank has joined.
const SHORT: Duration = Duration::from_secs(2);
/// How long the parent waits for all ranks before killing them.
const DEADLINE: Duration = Duration::from_secs(600);

/// This process's part when it is a rank started by a test.
struct Worker {
    rank: usize,
    world: usize,
    dir: PathBuf,
}

impl Worker {
    fn get() -> Option<Worker> {
        let rank = std::env::var(RANK_VAR).ok()?.parse().unwrap();
        let world = std::env::var(WORLD_VAR).unwrap().parse().unwrap();
        let dir = PathBuf::from(std::env::var(DIR_VAR).unwrap());
        Some(Worker { rank, world, dir })
    }

    fn join(&self) -> ProcessGroup {
        let pg = ProcessGroup::with_file_store(self.dir.join("store"), self.rank, self.world, GENEROUS)
            .unwrap_or_else(|e| panic!("rank {} joining: {e}", self.rank));
        assert_eq!((pg.rank(), pg.world_size(), pg.timeout()), (self.rank, self.world, GENEROUS));
        pg
    }
}

fn this_test(name: &str) -> Command {
    let mut cmd = Command::new(std::env::current_exe().unwrap());
    cmd.args([name, "--exact", "--nocapture", "--test-threads", "1"]);
    cmd
}

/// Runs test `name` as ranks 0..world (each `cmd` from `this_test`, with
/// `env(rank)` added), waits for all, and panics with every rank's output
/// unless all succeed.
fn run_ranks(name: &str, world: usize, env: impl Fn(usize) -> Vec<(String, String)>) {
    let dir = tempfile::tempdir().unwrap();
    let children: Vec<(Child, PathBuf)> = (0..world)
        .map(|rank| {
            let log = dir.path().join(format!("rank{rank}.log"));
            let out = fs::File::create(&log).unwrap();
            let mut cmd = this_test(name);
            cmd.env(RANK_VAR, rank.to_string())
                .env(WORLD_VAR, world.to_string())
                .env(DIR_VAR, dir.path())
                .envs(env(rank))
                .stdin(Stdio::null())
                .stdout(out.try_clone().unwrap())
                .stderr(out);
            (cmd.spawn().unwrap(), log)
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
    assert!(failed.is_empty(), "{name}, world {world}:\n{}", failed.join("\n"));
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

fn values<T>(t: &Tensor) -> Vec<T>
where
    Vec<T>: TryFrom<Tensor, Error = lt_glmc::tch::TchError>,
{
    Vec::<T>::try_from(t.flatten(0, -1)).unwrap()
}

/// Waits (without a time limit: the parent's DEADLINE is the limit) until
/// `path` exists.
fn wait_for_file(path: &Path) {
    while !path.exists() {
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn all_reduce_sum_and_mean() {
    if let Some(w) = Worker::get() {
        let pg = w.join();
        let r = w.rank as f32 + 1.0;
        let n = w.world as f32;
        let total = n * (n + 1.0) / 2.0;

        let mut t = Tensor::from_slice(&[r, 10.0 * r, -0.5 * r]);
        pg.all_reduce_sum(&mut t).unwrap();
        assert_eq!(values::<f32>(&t), [total, 10.0 * total, -0.5 * total], "rank {}", w.rank);

        let mut t = Tensor::from_slice(&[r, 2.0 * r]).view([2, 1]).to_kind(Kind::Double);
        pg.all_reduce_mean(&mut t).unwrap();
        assert_eq!(t.size(), [2, 1]);
        assert_eq!(values::<f64>(&t), [(total / n) as f64, (2.0 * total / n) as f64], "rank {}", w.rank);

        let mut t = Tensor::from_slice(&[w.rank as i64, 1]);
        pg.all_reduce_sum(&mut t).unwrap();
        let ranks: i64 = (0..w.world as i64).sum();
        assert_eq!(values::<i64>(&t), [ranks, w.world as i64]);

        // Refused before any communication, on every rank alike.
        let mut ints = Tensor::from_slice(&[1i64]);
        assert!(matches!(pg.all_reduce_mean(&mut ints), Err(GlmcError::Dist { op: "all_reduce_mean", .. })));
        let mut strided = Tensor::zeros([4, 4], (Kind::Float, lt_glmc::tch::Device::Cpu)).tr();
        let err = pg.all_reduce_sum(&mut strided).unwrap_err();
        assert!(err.to_string().contains("not contiguous"), "{err}");
        // …and the group still works.
        pg.barrier().unwrap();
        return;
    }
    for world in [2, 3] {
        run_ranks("all_reduce_sum_and_mean", world, |_| vec![]);
    }
}

#[test]
fn broadcast_from_rank_1() {
    if let Some(w) = Worker::get() {
        let pg = w.join();
        let mut t = Tensor::full([2, 3], 100.0 + w.rank as f64, (Kind::Float, lt_glmc::tch::Device::Cpu));
        pg.broadcast(&mut t, 1).unwrap();
        assert_eq!(values::<f32>(&t), [101.0; 6], "rank {}", w.rank);
        let mut t = Tensor::from_slice(&[w.rank as i64 * 7]);
        pg.broadcast(&mut t, w.world - 1).unwrap();
        assert_eq!(values::<i64>(&t), [(w.world as i64 - 1) * 7]);
        assert!(matches!(pg.broadcast(&mut t, w.world), Err(GlmcError::Dist { op: "broadcast", .. })));
        return;
    }
    for world in [2, 3] {
        run_ranks("broadcast_from_rank_1", world, |_| vec![]);
    }
}

#[test]
fn all_gather_orders_rows_by_rank() {
    if let Some(w) = Worker::get() {
        let pg = w.join();
        let r = w.rank as f32;
        let t = Tensor::from_slice(&[r, 2.0 * r, 3.0 * r]).view([3, 1]);
        let all = pg.all_gather(&t).unwrap();
        assert_eq!(all.size(), [w.world as i64, 3, 1]);
        assert_eq!(all.kind(), Kind::Float);
        let expected: Vec<f32> = (0..w.world).flat_map(|q| [q as f32, 2.0 * q as f32, 3.0 * q as f32]).collect();
        assert_eq!(values::<f32>(&all), expected, "rank {}", w.rank);
        // The input is left as it was.
        assert_eq!(values::<f32>(&t), [r, 2.0 * r, 3.0 * r]);
        return;
    }
    for world in [2, 3] {
        run_ranks("all_gather_orders_rows_by_rank", world, |_| vec![]);
    }
}

#[test]
fn barrier_waits_for_every_rank() {
    if let Some(w) = Worker::get() {
        let pg = w.join();
        // Rank 0 arrives last, after the others have long been waiting.
        if w.rank == 0 {
            std::thread::sleep(Duration::from_millis(500));
        }
        fs::write(w.dir.join(format!("arrived{}", w.rank)), "").unwrap();
        pg.barrier().unwrap();
        for q in 0..w.world {
            assert!(w.dir.join(format!("arrived{q}")).exists(), "rank {} passed the barrier before rank {q} arrived", w.rank);
        }
        // Nobody leaves (and deletes the folder) before everyone has looked.
        pg.barrier().unwrap();
        return;
    }
    for world in [2, 3] {
        run_ranks("barrier_waits_for_every_rank", world, |_| vec![]);
    }
}

#[test]
fn a_rank_that_never_joins_times_out() {
    if let Some(w) = Worker::get() {
        let mut pg = w.join();
        let done = w.dir.join("rank0_done");
        if w.rank == 0 {
            pg.set_timeout(SHORT).unwrap();
            let mut t = Tensor::from_slice(&[1.0f32]);
            match pg.all_reduce_sum(&mut t) {
                Err(GlmcError::DistTimeout { op: "all_reduce_sum", timeout, why }) => {
                    assert_eq!(timeout, SHORT);
                    eprintln!("rank 0 got the expected timeout: {why}");
                }
                other => panic!("expected a timeout, got {other:?}"),
            }
            // The group is now unusable, and says so instead of hanging.
            let err = pg.barrier().unwrap_err();
            assert!(err.to_string().contains("unusable"), "{err}");
            fs::write(&done, "").unwrap();
        } else {
            // Joined, but stays away from the collective until rank 0 is done.
            wait_for_file(&done);
        }
        return;
    }
    run_ranks("a_rank_that_never_joins_times_out", 2, |_| vec![]);
}

#[test]
fn a_dead_rank_fails_the_collective() {
    if let Some(w) = Worker::get() {
        let mut pg = w.join();
        pg.barrier().unwrap();
        if w.rank == 1 {
            // Dies without closing anything, as a killed rank would.
            std::process::exit(0);
        }
        pg.set_timeout(SHORT).unwrap();
        let mut t = Tensor::from_slice(&[1.0f32]);
        match pg.all_reduce_sum(&mut t) {
            Err(e @ (GlmcError::Dist { .. } | GlmcError::DistTimeout { .. })) => eprintln!("rank 0 got the expected error: {e}"),
            other => panic!("expected an error, got {other:?}"),
        }
        return;
    }
    run_ranks("a_dead_rank_fails_the_collective", 2, |_| vec![]);
}

/// torchrun's variables without WORLD_SIZE.
#[test]
fn from_env_without_world_size_names_it() {
    if std::env::var_os(RANK_VAR).is_some() {
        match ProcessGroup::from_env() {
            Err(GlmcError::DistEnv { var: "WORLD_SIZE", why }) => {
                let msg = GlmcError::DistEnv { var: "WORLD_SIZE", why }.to_string();
                assert!(msg.starts_with("WORLD_SIZE is not set"), "{msg}");
            }
            other => panic!("expected a WORLD_SIZE error, got {other:?}"),
        }
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("out.log");
    let out = fs::File::create(&log).unwrap();
    let status = this_test("from_env_without_world_size_names_it")
        .env(RANK_VAR, "0")
        .env("RANK", "0")
        .env("LOCAL_RANK", "0")
        .env("MASTER_ADDR", "127.0.0.1")
        .env("MASTER_PORT", "29500")
        .env_remove("WORLD_SIZE")
        .stdout(out.try_clone().unwrap())
        .stderr(out)
        .status()
        .unwrap();
    assert!(status.success(), "{}", fs::read_to_string(&log).unwrap());
}

/// The ranks torchrun would start (rank 0 hosting the TCPStore), here
/// started by the test with torchrun's variables.
#[test]
fn from_env_joins_over_tcp() {
    if let Some(w) = Worker::get() {
        let env = DistEnv::from_env().unwrap();
        assert_eq!((env.rank, env.world_size, env.local_rank), (w.rank, w.world, Some(w.rank)));
        let pg = ProcessGroup::from_env_with(lt_glmc::dist::Backend::Gloo, GENEROUS).unwrap();
        assert_eq!(pg.local_rank(), Some(w.rank));
        let mut t = Tensor::from_slice(&[1.0f32 + w.rank as f32]);
        pg.all_reduce_mean(&mut t).unwrap();
        let n = w.world as f32;
        assert_eq!(values::<f32>(&t), [(n + 1.0) / 2.0]);
        let all = pg.all_gather(&Tensor::from_slice(&[w.rank as i32])).unwrap();
        assert_eq!(values::<i32>(&all), (0..w.world as i32).collect::<Vec<_>>());
        pg.barrier().unwrap();
        return;
    }
    let port = free_port().to_string();
    run_ranks("from_env_joins_over_tcp", 2, |rank| {
        [("RANK", rank.to_string()), ("LOCAL_RANK", rank.to_string()), ("WORLD_SIZE", "2".into()), ("MASTER_ADDR", "127.0.0.1".into())]
            .into_iter()
            .map(|(k, v)| (k.to_string(), v))
            .chain([("MASTER_PORT".to_string(), port.clone())])
            // Loopback, so that a machine whose hostname resolves to an
            // address it cannot bind (some CI containers) still passes.
            .chain([("GLOO_SOCKET_IFNAME".to_string(), "lo".to_string())])
            .collect()
    });
}

/// `torchrun --standalone --nproc-per-node 2 --no-python <this test>`: the
/// agent's store (TORCHELASTIC_USE_AGENT_STORE) or rank 0's, whichever
/// torchrun sets up.
#[test]
fn under_torchrun() {
    if std::env::var_os(TORCHRUN_VAR).is_some() {
        let env = DistEnv::from_env().unwrap();
        eprintln!("rank {} of {}, agent store: {}", env.rank, env.world_size, env.use_agent_store);
        let pg = ProcessGroup::from_env_with(lt_glmc::dist::Backend::Gloo, GENEROUS).unwrap();
        let mut t = Tensor::from_slice(&[pg.rank() as f32 + 1.0]);
        pg.all_reduce_sum(&mut t).unwrap();
        assert_eq!(values::<f32>(&t), [3.0]);
        let mut b = Tensor::from_slice(&[pg.rank() as f32]);
        pg.broadcast(&mut b, 1).unwrap();
        assert_eq!(values::<f32>(&b), [1.0]);
        pg.barrier().unwrap();
        return;
    }
    let Some(py) = util::torchrun_python() else { return };
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("torchrun.log");
    let out = fs::File::create(&log).unwrap();
    let exe = std::env::current_exe().unwrap();
    let child = Command::new(py)
        .args(["-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2", "--max-restarts", "0", "--no-python"])
        .arg(exe)
        .args(["under_torchrun", "--exact", "--nocapture", "--test-threads", "1"])
        .env(TORCHRUN_VAR, "1")
        .env("OMP_NUM_THREADS", "1")
        .env("GLOO_SOCKET_IFNAME", "lo")
        .stdin(Stdio::null())
        .stdout(out.try_clone().unwrap())
        .stderr(out)
        .spawn()
        .unwrap();
    let (statuses, logs) = wait_all(vec![(child, log)]);
    assert!(statuses[0].map(|s| s.success()).unwrap_or(false), "torchrun ({:?}):\n{}", statuses[0], logs[0]);
}

/// NCCL: without a visible CUDA device (this machine, CI), creating a group
/// is a typed error before any store is touched, over a FileStore and over
/// TCP alike (no rank 1 ever comes, so anything else would wait and fail
/// differently); in a build without NCCL the error says so instead. With a
/// GPU, a world of one runs every collective on CUDA and CPU tensors and a
/// reducer backward.
#[test]
fn nccl_group() {
    let dir = tempfile::tempdir().unwrap();
    let config = |world_size| GroupConfig {
        backend: Backend::Nccl,
        rank: 0,
        world_size,
        local_rank: None,
        timeout: SHORT,
        device: GlooDevice::Default,
        cuda_device: None,
    };
    if !Backend::Nccl.is_built() || lt_glmc::tch::Cuda::device_count() == 0 {
        let tcp = Store::Tcp { host: "127.0.0.1".into(), port: free_port(), is_server: true, prefix: "t".into() };
        for store in [Store::File(dir.path().join("store")), tcp] {
            match ProcessGroup::new(&store, config(2)) {
                Err(e @ GlmcError::DistUnavailable { backend: "nccl", .. }) => {
                    let msg = e.to_string();
                    eprintln!("{msg}");
                    let expected = if Backend::Nccl.is_built() { "no CUDA device is visible" } else { "has no NCCL" };
                    assert!(msg.contains(expected), "{store:?}: {msg}");
                    assert!(msg.starts_with("the nccl backend is not available: "), "{msg}");
                }
                other => panic!("{store:?}: expected DistUnavailable, got {other:?}"),
            }
        }
        return;
    }
    let pg = ProcessGroup::new(&Store::File(dir.path().join("store")), GroupConfig { timeout: GENEROUS, ..config(1) }).unwrap();
    let dev = Device::Cuda(pg.cuda_device().expect("an NCCL group has a GPU"));
    let mut gpu = Tensor::from_slice(&[1.0f32, 2.0]).to_device(dev);
    pg.all_reduce_mean(&mut gpu).unwrap();
    assert_eq!(values::<f32>(&gpu.to_device(Device::Cpu)), [1.0, 2.0]);
    let mut host = Tensor::from_slice(&[3.0f64]);
    pg.all_reduce_sum(&mut host).unwrap();
    assert_eq!((host.device(), values::<f64>(&host)), (Device::Cpu, vec![3.0]));
    let rows = pg.all_gather(&Tensor::from_slice(&[7u8, 8])).unwrap();
    assert_eq!((rows.device(), rows.size()), (Device::Cpu, vec![1, 2]));
    pg.broadcast_coalesced(&[Tensor::from_slice(&[5i64]), Tensor::ones([3], (Kind::Float, dev))], 0).unwrap();
    pg.barrier().unwrap();
    let w = Tensor::ones([4], (Kind::Float, dev)).set_requires_grad(true);
    assert!(GradReducer::new(&pg, &[Tensor::ones([4], (Kind::Float, Device::Cpu)).set_requires_grad(true)], 25, false).is_err());
    let mut reducer = GradReducer::new(&pg, &[w.shallow_clone()], 25, false).unwrap();
    let loss = (&w * 2.0).sum(Kind::Float);
    reducer.prepare_for_backward(&[&loss]).unwrap();
    reducer.backward(&loss).unwrap();
    assert_eq!(values::<f32>(&w.grad().to_device(Device::Cpu)), [2.0; 4]);
}
