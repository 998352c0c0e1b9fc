//! Process groups, collectives and data-parallel gradient synchronisation
//! on tch tensors, over c10d — PyTorch's distributed engine, the one
//! torch.distributed and DDP use. The C++ side (csrc/dist.cpp) only creates
//! c10d's own objects and calls them; nothing here is a home-made
//! all-reduce, bucketing or rendezvous.
//!
//! - [`ProcessGroup::from_env`] joins the group torchrun describes (RANK,
//!   LOCAL_RANK, WORLD_SIZE, MASTER_ADDR, MASTER_PORT): rank 0 hosts the
//!   TCPStore at MASTER_ADDR:MASTER_PORT and the others connect to it, as
//!   torch.distributed's `env://` does; when torchrun sets
//!   `TORCHELASTIC_USE_AGENT_STORE=True`, every rank is a client of the
//!   agent's store instead, its keys under `lt_glmc/attempt_{TORCHELASTIC_RESTART_COUNT}/`.
//! - [`ProcessGroup::with_file_store`] joins a group through a file (one
//!   machine: tests, or a quick run without a free port).
//! - [`ProcessGroup::broadcast`], [`ProcessGroup::all_reduce_sum`],
//!   [`ProcessGroup::all_reduce_mean`], [`ProcessGroup::barrier`] and
//!   [`ProcessGroup::all_gather`], each bounded by the group's timeout: a
//!   rank that never joins a collective, or dies, makes the others fail with
//!   [`GlmcError::DistTimeout`] or [`GlmcError::Dist`] instead of hanging.
//! - [`ProcessGroup::broadcast_coalesced`]: c10d's bucketed broadcast of
//!   many tensors at once (rank 0's parameters and buffers to every rank).
//! - [`GradReducer`]: DDP's gradient synchronisation, `c10d::Reducer`
//!   itself, set up and driven as `DistributedDataParallel` does (buckets
//!   from `compute_bucket_assignment_by_size`, 25 MiB by default; each
//!   bucket all-reduced, averaged over the world, as soon as its gradients
//!   are ready during the backward; `find_unused` for parameters a step
//!   does not use). [`DataParallel`] holds it with the group, for
//!   [`crate::step::Updater::with_data_parallel`]. Its all-reduces run on
//!   the group's backend with the group's timeout: a peer that dies or
//!   stalls makes the backward fail with [`GlmcError::Dist`] or
//!   [`GlmcError::DistTimeout`], not hang.
//!
//! Two backends, c10d's own: [`Backend::Gloo`] (CPU tensors, over TCP) and
//! [`Backend::Nccl`] (CUDA tensors: `ProcessGroupNCCL`, one GPU per rank,
//! `cuda:LOCAL_RANK` by default, [`GroupConfig::cuda_device`]). On an NCCL
//! group the collectives also take CPU tensors, which go through the
//! group's GPU (a copy each way; meant for small host values such as loss
//! values and evaluation counts), while [`GradReducer`] and
//! [`DataParallel`] need the parameters on the group's GPU. NCCL exists
//! only when lt-glmc was compiled with CUDA's and NCCL's headers
//! (`tools/setup.sh` installs the missing ones into the torch venv; see
//! build.rs): otherwise, or when no CUDA device is visible, creating an
//! NCCL group is [`GlmcError::DistUnavailable`] ([`Backend::is_built`]
//! tells which build this is). Every collective waits for its result,
//! bounded by the group's timeout; on NCCL, c10d's watchdog enforces the
//! same timeout and, by PyTorch's default (`TORCH_NCCL_ASYNC_ERROR_HANDLING=3`),
//! takes the process down when a collective fails or times out, as under
//! torch.distributed. As in torch.distributed, every rank
//! must call the same collectives in the same order with tensors of the
//! same shape and kind (a data-parallel step is one such call on every
//! rank). After a collective, or a backward's gradient all-reduce through
//! [`DataParallel`], fails the group is unusable
//! (a peer is gone or out of step): every later call returns an error, and
//! the process should drop the group and exit (torchrun then restarts it).
//!
//! ```no_run
//! use lt_glmc::dist::ProcessGroup;
//! use lt_glmc::tch::Tensor;
//! # fn main() -> lt_glmc::Result<()> {
//! // Under `torchrun --nproc-per-node 2 ...`:
//! let pg = ProcessGroup::from_env()?;
//! let mut grad = Tensor::from_slice(&[1.0f32 + pg.rank() as f32]);
//! pg.all_reduce_mean(&mut grad)?; // 1.5 on both ranks
//! let rows = pg.all_gather(&grad)?; // [world, 1], row r from rank r
//! pg.barrier()?;
//! # Ok(()) }
//! ```

use std::cell::RefCell;
use std::ffi::{c_char, c_int, c_void, CStr, CString};
use std::path::{Path, PathBuf};
use std::ptr;
use std::rc::Rc;
use std::time::Duration;

use tch::{Device, Tensor};

use crate::error::{GlmcError, Result};

/// torch.distributed's default process-group timeout (30 minutes).
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30 * 60);

/// The collective backend.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Backend {
    /// c10d's ProcessGroupGloo: CPU tensors, over TCP.
    Gloo,
    /// c10d's ProcessGroupNCCL: CUDA tensors, one GPU per rank (CPU tensors
    /// go through it; see the module docs). Needs a build with NCCL
    /// ([`Backend::is_built`]) and a visible CUDA device.
    Nccl,
}

impl Backend {
    pub fn name(self) -> &'static str {
        match self {
            Backend::Gloo => "gloo",
            Backend::Nccl => "nccl",
        }
    }

    /// Whether this build of lt-glmc has the backend: Gloo always; NCCL
    /// when build.rs found CUDA's and NCCL's headers.
    pub fn is_built(self) -> bool {
        match self {
            Backend::Gloo => true,
            Backend::Nccl => cfg!(lt_glmc_nccl),
        }
    }
}

impl std::str::FromStr for Backend {
    type Err = GlmcError;
    fn from_str(s: &str) -> Result<Self> {
        match s {
            "gloo" => Ok(Backend::Gloo),
            "nccl" => Ok(Backend::Nccl),
            _ => Err(GlmcError::setting("backend", format!("'{s}' (known: gloo, nccl)"))),
        }
    }
}

/// Why this build has no NCCL (build.rs's finding), for the error.
#[cfg(not(lt_glmc_nccl))]
fn nccl_not_built() -> GlmcError {
    let why = option_env!("LT_GLMC_NO_NCCL_WHY").unwrap_or("its headers were not found; run tools/setup.sh and rebuild");
    GlmcError::DistUnavailable { backend: "nccl", why: format!("this build of lt-glmc has no NCCL (build.rs: {why})") }
}

/// Where the ranks meet: c10d's key-value store, through which gloo's
/// peers exchange addresses.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Store {
    /// A TCPStore at `host:port`. With `is_server` this process hosts it
    /// (rank 0 under torchrun); otherwise it connects. `prefix`, if not
    /// empty, namespaces this group's keys.
    Tcp { host: String, port: u16, is_server: bool, prefix: String },
    /// A FileStore: a file every rank can open (one machine, or a shared
    /// file system). It must not hold a finished run's keys; c10d deletes
    /// it when the last rank closes the group.
    File(PathBuf),
}

/// The network device gloo binds to.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum GlooDevice {
    /// c10d's default: the address this machine's hostname resolves to, or
    /// loopback if it does not resolve.
    Default,
    /// The address of this host name or IP (`127.0.0.1`: one machine).
    Hostname(String),
    /// These network interfaces, comma-separated (GLOO_SOCKET_IFNAME).
    Interfaces(String),
}

/// How to create a [`ProcessGroup`].
#[derive(Clone, Debug)]
pub struct GroupConfig {
    pub backend: Backend,
    pub rank: usize,
    pub world_size: usize,
    /// The rank within this machine, if known (torchrun's LOCAL_RANK).
    pub local_rank: Option<usize>,
    /// Bounds joining the group and every collective.
    pub timeout: Duration,
    /// Gloo's network device (NCCL picks its own: NCCL_SOCKET_IFNAME).
    pub device: GlooDevice,
    /// NCCL: this rank's GPU. `None`: `local_rank`, else the rank modulo
    /// the visible devices. Ignored by Gloo.
    pub cuda_device: Option<usize>,
}

/// torchrun's description of this process's place in the group.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DistEnv {
    pub rank: usize,
    pub local_rank: Option<usize>,
    pub world_size: usize,
    pub master_addr: String,
    pub master_port: u16,
    /// TORCHELASTIC_USE_AGENT_STORE=True: torchrun's agent hosts the store.
    pub use_agent_store: bool,
    /// TORCHELASTIC_RESTART_COUNT (0 if unset).
    pub restart_count: u64,
    /// GLOO_SOCKET_IFNAME, if set and not empty.
    pub gloo_ifname: Option<String>,
}

impl DistEnv {
    /// Reads the process environment.
    pub fn from_env() -> Result<Self> {
        Self::from_lookup(|k| std::env::var(k).ok())
    }

    /// Reads the variables through `var` (the environment, or a map in
    /// tests). RANK, WORLD_SIZE, MASTER_ADDR and MASTER_PORT are required;
    /// LOCAL_RANK is read when set (torchrun always sets it).
    pub fn from_lookup(var: impl Fn(&str) -> Option<String>) -> Result<Self> {
        fn required(var: &impl Fn(&str) -> Option<String>, name: &'static str) -> Result<String> {
            match var(name) {
                Some(v) if !v.trim().is_empty() => Ok(v.trim().to_owned()),
                Some(_) => Err(env_error(name, "is empty")),
                None => Err(env_error(name, "is not set (torchrun sets RANK, LOCAL_RANK, WORLD_SIZE, MASTER_ADDR and MASTER_PORT)")),
            }
        }
        fn number<T: std::str::FromStr>(name: &'static str, v: &str) -> Result<T> {
            v.parse().map_err(|_| env_error(name, format!("is '{v}', not a valid value")))
        }
        let world_size: usize = number("WORLD_SIZE", &required(&var, "WORLD_SIZE")?)?;
        if world_size == 0 {
            return Err(env_error("WORLD_SIZE", "is 0"));
        }
        let rank: usize = number("RANK", &required(&var, "RANK")?)?;
        if rank >= world_size {
            return Err(env_error("RANK", format!("is {rank}, not below WORLD_SIZE {world_size}")));
        }
        let local_rank = match var("LOCAL_RANK") {
            Some(v) if !v.trim().is_empty() => Some(number("LOCAL_RANK", v.trim())?),
            _ => None,
        };
        let master_addr = required(&var, "MASTER_ADDR")?;
        let master_port: u16 = number("MASTER_PORT", &required(&var, "MASTER_PORT")?)?;
        let use_agent_store = var("TORCHELASTIC_USE_AGENT_STORE").as_deref() == Some("True");
        let restart_count = match var("TORCHELASTIC_RESTART_COUNT") {
            Some(v) if !v.trim().is_empty() => number("TORCHELASTIC_RESTART_COUNT", v.trim())?,
            _ => 0,
        };
        let gloo_ifname = var("GLOO_SOCKET_IFNAME").filter(|s| !s.trim().is_empty());
        Ok(DistEnv { rank, local_rank, world_size, master_addr, master_port, use_agent_store, restart_count, gloo_ifname })
    }

    /// The store this environment describes (see the module docs).
    pub fn store(&self) -> Store {
        if self.use_agent_store {
            Store::Tcp {
                host: self.master_addr.clone(),
                port: self.master_port,
                is_server: false,
                prefix: format!("lt_glmc/attempt_{}", self.restart_count),
            }
        } else {
            Store::Tcp { host: self.master_addr.clone(), port: self.master_port, is_server: self.rank == 0, prefix: "lt_glmc".into() }
        }
    }

    /// A group of this environment with `backend` and `timeout` (NCCL on
    /// `cuda:LOCAL_RANK`).
    pub fn config(&self, backend: Backend, timeout: Duration) -> GroupConfig {
        GroupConfig {
            backend,
            rank: self.rank,
            world_size: self.world_size,
            local_rank: self.local_rank,
            timeout,
            device: match &self.gloo_ifname {
                Some(names) => GlooDevice::Interfaces(names.clone()),
                None => GlooDevice::Default,
            },
            cuda_device: None,
        }
    }
}

fn env_error(var: &'static str, why: impl Into<String>) -> GlmcError {
    GlmcError::DistEnv { var, why: why.into() }
}

/// A c10d process group: this process's handle on a group of `world_size`
/// ranks. Dropping it closes this rank's connections.
pub struct ProcessGroup {
    raw: *mut c_void,
    backend: Backend,
    rank: usize,
    world_size: usize,
    local_rank: Option<usize>,
    /// NCCL: the GPU the group's communicator is on.
    cuda_device: Option<usize>,
    timeout: Duration,
    /// Set by the first failed collective; later calls refuse to run.
    broken: RefCell<Option<String>>,
}

// SAFETY: the group is c10d's ProcessGroupGloo or ProcessGroupNCCL plus
// its store, both usable from any thread; the handle is only freed in Drop.
// It is not Sync: calls from several threads at once would race on the
// order of collectives.
unsafe impl Send for ProcessGroup {}

impl std::fmt::Debug for ProcessGroup {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ProcessGroup")
            .field("backend", &self.backend)
            .field("rank", &self.rank)
            .field("world_size", &self.world_size)
            .field("local_rank", &self.local_rank)
            .field("cuda_device", &self.cuda_device)
            .field("timeout", &self.timeout)
            .finish()
    }
}

// csrc/dist.cpp and csrc/dist_nccl.cpp. Each returns 0, 1 (error), 2
// (timeout) or 3 (backend unavailable) with the C++ exception's message
// (NUL-terminated, cut to fit) in `err[..err_len]`. Tensors are tch's
// C_tensor*, i.e. at::Tensor*.
#[cfg(lt_glmc_nccl)]
extern "C" {
    fn lt_dist_new_nccl_tcp(
        host: *const c_char,
        port: u16,
        is_server: bool,
        prefix: *const c_char,
        rank: c_int,
        world: c_int,
        timeout_ms: i64,
        device: c_int,
        out: *mut *mut c_void,
        device_out: *mut c_int,
        err: *mut c_char,
        err_len: usize,
    ) -> c_int;
    fn lt_dist_new_nccl_file(
        path: *const c_char,
        rank: c_int,
        world: c_int,
        timeout_ms: i64,
        device: c_int,
        out: *mut *mut c_void,
        device_out: *mut c_int,
        err: *mut c_char,
        err_len: usize,
    ) -> c_int;
}

extern "C" {
    fn lt_dist_new_gloo_tcp(
        host: *const c_char,
        port: u16,
        is_server: bool,
        prefix: *const c_char,
        rank: c_int,
        world: c_int,
        timeout_ms: i64,
        ifnames: *const c_char,
        hostname: *const c_char,
        out: *mut *mut c_void,
        err: *mut c_char,
        err_len: usize,
    ) -> c_int;
    fn lt_dist_new_gloo_file(
        path: *const c_char,
        rank: c_int,
        world: c_int,
        timeout_ms: i64,
        ifnames: *const c_char,
        hostname: *const c_char,
        out: *mut *mut c_void,
        err: *mut c_char,
        err_len: usize,
    ) -> c_int;
    fn lt_dist_free(group: *mut c_void);
    fn lt_dist_set_timeout(group: *mut c_void, timeout_ms: i64, err: *mut c_char, err_len: usize) -> c_int;
    fn lt_dist_broadcast(group: *mut c_void, tensor: *mut torch_sys::C_tensor, root: c_int, err: *mut c_char, err_len: usize) -> c_int;
    fn lt_dist_all_reduce_sum(group: *mut c_void, tensor: *mut torch_sys::C_tensor, err: *mut c_char, err_len: usize) -> c_int;
    fn lt_dist_barrier(group: *mut c_void, err: *mut c_char, err_len: usize) -> c_int;
    fn lt_dist_all_gather(
        group: *mut c_void,
        tensor: *mut torch_sys::C_tensor,
        out: *mut *mut torch_sys::C_tensor,
        err: *mut c_char,
        err_len: usize,
    ) -> c_int;
    fn lt_dist_broadcast_coalesced(
        group: *mut c_void,
        tensors: *const *mut torch_sys::C_tensor,
        n: usize,
        buffer_bytes: usize,
        root: c_int,
        err: *mut c_char,
        err_len: usize,
    ) -> c_int;
    fn lt_dist_reducer_new(
        group: *mut c_void,
        params: *const *mut torch_sys::C_tensor,
        n: usize,
        bucket_bytes: i64,
        first_bucket_bytes: i64,
        find_unused: bool,
        out: *mut *mut c_void,
        err: *mut c_char,
        err_len: usize,
    ) -> c_int;
    fn lt_dist_reducer_free(reducer: *mut c_void);
    fn lt_dist_reducer_prepare(
        reducer: *mut c_void,
        outputs: *const *mut torch_sys::C_tensor,
        n: usize,
        err: *mut c_char,
        err_len: usize,
    ) -> c_int;
    fn lt_dist_reducer_backward(reducer: *mut c_void, loss: *mut torch_sys::C_tensor, err: *mut c_char, err_len: usize) -> c_int;
    fn lt_dist_reducer_bucket_sizes(
        reducer: *mut c_void,
        out: *mut i64,
        cap: usize,
        count: *mut usize,
        err: *mut c_char,
        err_len: usize,
    ) -> c_int;
}

/// The shim's view of tensors it only reads or writes through (it copies
/// each `at::Tensor`, i.e. takes a reference, before the call returns).
fn raw_list<'a>(tensors: impl IntoIterator<Item = &'a Tensor>) -> Vec<*mut torch_sys::C_tensor> {
    tensors.into_iter().map(|t| t.as_ptr() as *mut torch_sys::C_tensor).collect()
}

/// Runs one shim call with an error buffer and turns its code into an error.
fn call(op: &'static str, timeout: Duration, f: impl FnOnce(*mut c_char, usize) -> c_int) -> Result<()> {
    let mut err = vec![0 as c_char; 2048];
    let code = f(err.as_mut_ptr(), err.len());
    if code == 0 {
        return Ok(());
    }
    let last = err.len() - 1;
    err[last] = 0;
    // SAFETY: a NUL-terminated string within the buffer.
    let why = unsafe { CStr::from_ptr(err.as_ptr()) }.to_string_lossy().into_owned();
    Err(match code {
        2 => GlmcError::DistTimeout { op, timeout, why },
        // Only an NCCL group's creation says this (no CUDA device visible).
        3 => GlmcError::DistUnavailable { backend: "nccl", why },
        _ => GlmcError::Dist { op, why },
    })
}

fn c_string(op: &'static str, what: &str, s: &str) -> Result<CString> {
    CString::new(s).map_err(|_| GlmcError::Dist { op, why: format!("{what} '{s}' contains a NUL byte") })
}

fn millis(op: &'static str, timeout: Duration) -> Result<i64> {
    let ms = timeout.as_millis();
    if ms == 0 || ms > i64::MAX as u128 {
        return Err(GlmcError::Dist { op, why: format!("timeout {timeout:?} must be at least 1 ms") });
    }
    Ok(ms as i64)
}

impl ProcessGroup {
    /// Joins the group torchrun describes (see [`DistEnv`]), with Gloo and
    /// [`DEFAULT_TIMEOUT`]. A missing or invalid variable is a
    /// [`GlmcError::DistEnv`] naming it.
    pub fn from_env() -> Result<Self> {
        Self::from_env_with(Backend::Gloo, DEFAULT_TIMEOUT)
    }

    /// [`ProcessGroup::from_env`] with a backend and a timeout.
    pub fn from_env_with(backend: Backend, timeout: Duration) -> Result<Self> {
        let env = DistEnv::from_env()?;
        Self::new(&env.store(), env.config(backend, timeout))
    }

    /// Joins a Gloo group on this machine through the FileStore `path`
    /// (gloo on loopback). Every rank passes the same path, which must not
    /// hold a finished run's keys (a fresh temporary folder's file).
    pub fn with_file_store(path: impl AsRef<Path>, rank: usize, world_size: usize, timeout: Duration) -> Result<Self> {
        let config = GroupConfig {
            backend: Backend::Gloo,
            rank,
            world_size,
            local_rank: None,
            timeout,
            device: GlooDevice::Hostname("127.0.0.1".into()),
            cuda_device: None,
        };
        Self::new(&Store::File(path.as_ref().to_owned()), config)
    }

    /// Joins a group through `store`. Blocks until every rank has joined,
    /// or fails after `config.timeout`. NCCL: the communicator is made here,
    /// on `config.cuda_device` (which becomes this thread's current CUDA
    /// device, as `torch.cuda.set_device`); without a visible CUDA device,
    /// or in a build without NCCL, this is [`GlmcError::DistUnavailable`]
    /// before any store is touched.
    pub fn new(store: &Store, config: GroupConfig) -> Result<Self> {
        const OP: &str = "create process group";
        let GroupConfig { backend, rank, world_size, local_rank, timeout, device, cuda_device } = config;
        if world_size == 0 || world_size > c_int::MAX as usize {
            return Err(GlmcError::Dist { op: OP, why: format!("world size {world_size}") });
        }
        if rank >= world_size {
            return Err(GlmcError::Dist { op: OP, why: format!("rank {rank} is not below the world size {world_size}") });
        }
        let ms = millis(OP, timeout)?;
        let (ifnames, hostname) = match &device {
            GlooDevice::Default => (String::new(), String::new()),
            GlooDevice::Hostname(h) => (String::new(), h.clone()),
            GlooDevice::Interfaces(i) => (i.clone(), String::new()),
        };
        let ifnames = c_string(OP, "interface", &ifnames)?;
        let hostname = c_string(OP, "host name", &hostname)?;
        let mut raw: *mut c_void = ptr::null_mut();
        // NCCL's GPU: asked for, else LOCAL_RANK, else (-1) the shim's guess.
        #[cfg_attr(not(lt_glmc_nccl), allow(unused_variables))]
        let wanted = match cuda_device.or(local_rank) {
            Some(i) => c_int::try_from(i).map_err(|_| GlmcError::Dist { op: OP, why: format!("CUDA device {i}") })?,
            None => -1,
        };
        #[cfg_attr(not(lt_glmc_nccl), allow(unused_mut))]
        let mut used: c_int = -1;
        match (backend, store) {
            (Backend::Gloo, Store::Tcp { host, port, is_server, prefix }) => {
                let host = c_string(OP, "host", host)?;
                let prefix = c_string(OP, "prefix", prefix)?;
                // SAFETY: live C strings and out-pointer; the shim catches
                // every C++ exception.
                call(OP, timeout, |err, len| unsafe {
                    lt_dist_new_gloo_tcp(
                        host.as_ptr(),
                        *port,
                        *is_server,
                        prefix.as_ptr(),
                        rank as c_int,
                        world_size as c_int,
                        ms,
                        ifnames.as_ptr(),
                        hostname.as_ptr(),
                        &mut raw,
                        err,
                        len,
                    )
                })?;
            }
            (Backend::Gloo, Store::File(path)) => {
                let path = c_string(OP, "store path", &path.to_string_lossy())?;
                // SAFETY: as above.
                call(OP, timeout, |err, len| unsafe {
                    lt_dist_new_gloo_file(
                        path.as_ptr(),
                        rank as c_int,
                        world_size as c_int,
                        ms,
                        ifnames.as_ptr(),
                        hostname.as_ptr(),
                        &mut raw,
                        err,
                        len,
                    )
                })?;
            }
            #[cfg(lt_glmc_nccl)]
            (Backend::Nccl, Store::Tcp { host, port, is_server, prefix }) => {
                let host = c_string(OP, "host", host)?;
                let prefix = c_string(OP, "prefix", prefix)?;
                // SAFETY: live C strings and out-pointers; the shim catches
                // every C++ exception.
                call(OP, timeout, |err, len| unsafe {
                    lt_dist_new_nccl_tcp(
                        host.as_ptr(),
                        *port,
                        *is_server,
                        prefix.as_ptr(),
                        rank as c_int,
                        world_size as c_int,
                        ms,
                        wanted,
                        &mut raw,
                        &mut used,
                        err,
                        len,
                    )
                })?;
            }
            #[cfg(lt_glmc_nccl)]
            (Backend::Nccl, Store::File(path)) => {
                let path = c_string(OP, "store path", &path.to_string_lossy())?;
                // SAFETY: as above.
                call(OP, timeout, |err, len| unsafe {
                    lt_dist_new_nccl_file(path.as_ptr(), rank as c_int, world_size as c_int, ms, wanted, &mut raw, &mut used, err, len)
                })?;
            }
            #[cfg(not(lt_glmc_nccl))]
            (Backend::Nccl, _) => return Err(nccl_not_built()),
        }
        if raw.is_null() {
            return Err(GlmcError::Dist { op: OP, why: "the shim returned no group".into() });
        }
        let cuda_device = usize::try_from(used).ok().filter(|_| backend == Backend::Nccl);
        Ok(ProcessGroup { raw, backend, rank, world_size, local_rank, cuda_device, timeout, broken: RefCell::new(None) })
    }

    pub fn backend(&self) -> Backend {
        self.backend
    }

    pub fn rank(&self) -> usize {
        self.rank
    }

    pub fn world_size(&self) -> usize {
        self.world_size
    }

    /// torchrun's LOCAL_RANK, when the group came from it.
    pub fn local_rank(&self) -> Option<usize> {
        self.local_rank
    }

    /// NCCL: the index of the GPU the group works on (`cuda:N`); `None`
    /// for Gloo.
    pub fn cuda_device(&self) -> Option<usize> {
        self.cuda_device
    }

    /// The bound on each collective.
    pub fn timeout(&self) -> Duration {
        self.timeout
    }

    /// Changes the bound on the collectives that follow (e.g. a long one to
    /// join, a shorter one per step).
    pub fn set_timeout(&mut self, timeout: Duration) -> Result<()> {
        const OP: &str = "set_timeout";
        let ms = millis(OP, timeout)?;
        let raw = self.raw;
        // SAFETY: a live group; the shim catches every C++ exception.
        call(OP, timeout, |err, len| unsafe { lt_dist_set_timeout(raw, ms, err, len) })?;
        self.timeout = timeout;
        Ok(())
    }

    /// Every rank's `tensor` becomes `root`'s, in place.
    pub fn broadcast(&self, tensor: &mut Tensor, root: usize) -> Result<()> {
        const OP: &str = "broadcast";
        if root >= self.world_size {
            return Err(GlmcError::Dist { op: OP, why: format!("root {root} is not below the world size {}", self.world_size) });
        }
        self.check_tensor(OP, tensor)?;
        let mut stage = self.stage(OP, tensor)?;
        let t = match stage.as_mut() {
            Some(s) => s.as_mut_ptr(),
            None => tensor.as_mut_ptr(),
        };
        // SAFETY: `t` is a live at::Tensor* borrowed mutably for the call.
        self.collective(OP, |g, err, len| unsafe { lt_dist_broadcast(g, t, root as c_int, err, len) })?;
        unstage(OP, tensor, stage)
    }

    /// Every rank's `tensor` becomes the sum over ranks, in place.
    pub fn all_reduce_sum(&self, tensor: &mut Tensor) -> Result<()> {
        const OP: &str = "all_reduce_sum";
        self.check_tensor(OP, tensor)?;
        let mut stage = self.stage(OP, tensor)?;
        let t = match stage.as_mut() {
            Some(s) => s.as_mut_ptr(),
            None => tensor.as_mut_ptr(),
        };
        // SAFETY: as in broadcast.
        self.collective(OP, |g, err, len| unsafe { lt_dist_all_reduce_sum(g, t, err, len) })?;
        unstage(OP, tensor, stage)
    }

    /// Every rank's `tensor` becomes the mean over ranks, in place: the sum,
    /// then divided by the world size (Gloo has no AVG; this is what DDP
    /// does with gradients, on either backend). Floating-point tensors only.
    pub fn all_reduce_mean(&self, tensor: &mut Tensor) -> Result<()> {
        const OP: &str = "all_reduce_mean";
        if !tensor.is_floating_point() {
            return Err(GlmcError::Dist { op: OP, why: format!("needs a floating-point tensor, got {:?}", tensor.kind()) });
        }
        self.all_reduce_sum(tensor).map_err(|e| match e {
            GlmcError::Dist { why, .. } => GlmcError::Dist { op: OP, why },
            GlmcError::DistTimeout { timeout, why, .. } => GlmcError::DistTimeout { op: OP, timeout, why },
            e => e,
        })?;
        let _ = tensor.f_div_scalar_(self.world_size as f64).map_err(|e| GlmcError::Dist { op: OP, why: e.to_string() })?;
        Ok(())
    }

    /// Returns once every rank has called it.
    pub fn barrier(&self) -> Result<()> {
        // SAFETY: a live group.
        self.collective("barrier", |g, err, len| unsafe { lt_dist_barrier(g, err, len) })
    }

    /// A new tensor `[world_size, ...tensor's shape]` whose row `r` is rank
    /// `r`'s `tensor`. Every rank passes the same shape and kind.
    pub fn all_gather(&self, tensor: &Tensor) -> Result<Tensor> {
        const OP: &str = "all_gather";
        self.check_tensor(OP, tensor)?;
        let stage = self.stage(OP, tensor)?;
        // The shim only reads the input (it is c10d's const input list).
        let t = stage.as_ref().unwrap_or(tensor).as_ptr() as *mut torch_sys::C_tensor;
        let mut out: *mut torch_sys::C_tensor = ptr::null_mut();
        // SAFETY: `t` is a live at::Tensor*; `out` a live out-pointer.
        self.collective(OP, |g, err, len| unsafe { lt_dist_all_gather(g, t, &mut out, err, len) })?;
        if out.is_null() {
            return Err(GlmcError::Dist { op: OP, why: "the shim returned no tensor".into() });
        }
        // SAFETY: `out` is a `new at::Tensor` that we now own.
        let rows = unsafe { Tensor::from_ptr(out) };
        match stage {
            // Back where the input was.
            Some(_) => {
                rows.f_to_device(tensor.device()).map_err(|e| GlmcError::Dist { op: OP, why: format!("copying the result back: {e}") })
            }
            None => Ok(rows),
        }
    }

    /// Every rank's `tensors` become `root`'s, in place, with c10d's own
    /// `broadcast_coalesced` (what DDP runs to send rank 0's parameters and
    /// buffers to every rank): flattened into buckets of one dtype and at
    /// most [`BROADCAST_BUCKET_BYTES`], one broadcast per bucket. Any mix of
    /// dtypes (f32 weights, i64 counters), shapes and strides; parameters
    /// that require grad are written too. Every rank passes tensors of the
    /// same shapes and dtypes in the same order; an empty list is a no-op.
    pub fn broadcast_coalesced(&self, tensors: &[Tensor], root: usize) -> Result<()> {
        const OP: &str = "broadcast_coalesced";
        if root >= self.world_size {
            return Err(GlmcError::Dist { op: OP, why: format!("root {root} is not below the world size {}", self.world_size) });
        }
        if tensors.is_empty() {
            return Ok(());
        }
        for (i, t) in tensors.iter().enumerate() {
            self.check_device(OP, t).map_err(|e| match e {
                GlmcError::Dist { op, why } => GlmcError::Dist { op, why: format!("tensor {i}: {why}") },
                e => e,
            })?;
        }
        // NCCL: CPU tensors go through the group's GPU.
        let mut staged: Vec<Option<Tensor>> = Vec::with_capacity(tensors.len());
        for t in tensors {
            staged.push(self.stage(OP, t)?);
        }
        let raw = raw_list(staged.iter().zip(tensors).map(|(s, t)| s.as_ref().unwrap_or(t)));
        // SAFETY: live at::Tensor*'s, borrowed for the call; the shim writes
        // through detached views of them.
        self.collective(OP, |g, err, len| unsafe {
            lt_dist_broadcast_coalesced(g, raw.as_ptr(), raw.len(), BROADCAST_BUCKET_BYTES, root as c_int, err, len)
        })?;
        for (s, t) in staged.into_iter().zip(tensors) {
            if let Some(s) = s {
                // `copy_` through a detached alias: the same storage, so a
                // parameter that requires grad is written too.
                let mut dst = t.detach();
                unstage(OP, &mut dst, Some(s))?;
            }
        }
        Ok(())
    }

    /// Defined and on a device the backend works on: CPU for Gloo; the
    /// group's GPU, or CPU (through the GPU), for NCCL.
    fn check_device(&self, op: &'static str, tensor: &Tensor) -> Result<()> {
        if !tensor.defined() {
            return Err(GlmcError::Dist { op, why: "undefined tensor".into() });
        }
        match (self.backend, tensor.device()) {
            (Backend::Gloo, Device::Cpu) => Ok(()),
            (Backend::Gloo, d) => Err(GlmcError::Dist { op, why: format!("Gloo works on CPU tensors, this one is on {d:?}") }),
            (Backend::Nccl, Device::Cpu) => Ok(()),
            (Backend::Nccl, Device::Cuda(i)) if Some(i) == self.cuda_device => Ok(()),
            (Backend::Nccl, d) => Err(GlmcError::Dist {
                op,
                why: format!("this NCCL group works on cuda:{} (and CPU tensors, through it); this tensor is on {d:?}", self.cuda_index()),
            }),
        }
    }

    /// A tensor that a collective can reduce on the group's own device: the
    /// group's GPU for NCCL (not CPU, as [`GradReducer`] needs).
    fn check_param_device(&self, op: &'static str, tensor: &Tensor) -> Result<()> {
        self.check_device(op, tensor)?;
        match (self.backend, tensor.device()) {
            (Backend::Nccl, Device::Cpu) => Err(GlmcError::Dist {
                op,
                why: format!(
                    "NCCL reduces gradients of parameters on cuda:{}; this one is on the CPU (use Gloo on CPU)",
                    self.cuda_index()
                ),
            }),
            _ => Ok(()),
        }
    }

    fn cuda_index(&self) -> usize {
        self.cuda_device.unwrap_or(0)
    }

    /// NCCL and a CPU tensor: a copy of it on the group's GPU, for the
    /// collective to work on (then [`unstage`]); otherwise `None`.
    fn stage(&self, op: &'static str, tensor: &Tensor) -> Result<Option<Tensor>> {
        match (self.backend, self.cuda_device, tensor.device()) {
            (Backend::Nccl, Some(i), Device::Cpu) => tensor
                .f_to_device(Device::Cuda(i))
                .map(Some)
                .map_err(|e| GlmcError::Dist { op, why: format!("copying a CPU tensor to cuda:{i} for NCCL: {e}") }),
            _ => Ok(None),
        }
    }

    /// Refuses to run anything after a failure (see [`ProcessGroup::collective`]).
    fn check_usable(&self, op: &'static str) -> Result<()> {
        match self.broken.borrow().as_ref() {
            Some(first) => Err(GlmcError::Dist { op, why: format!("the group is unusable after an earlier failure ({first})") }),
            None => Ok(()),
        }
    }

    /// Marks the group unusable: a collective the group's handle did not
    /// run itself (the gradient reducer's) failed.
    fn mark_broken(&self, e: &GlmcError) {
        let mut b = self.broken.borrow_mut();
        if b.is_none() {
            *b = Some(e.to_string());
        }
    }

    fn check_tensor(&self, op: &'static str, tensor: &Tensor) -> Result<()> {
        self.check_device(op, tensor)?;
        if !tensor.is_contiguous() {
            return Err(GlmcError::Dist { op, why: format!("the tensor (shape {:?}) is not contiguous", tensor.size()) });
        }
        Ok(())
    }

    /// Runs a collective unless an earlier one failed; a failure marks the
    /// group broken.
    fn collective(&self, op: &'static str, f: impl FnOnce(*mut c_void, *mut c_char, usize) -> c_int) -> Result<()> {
        self.check_usable(op)?;
        let raw = self.raw;
        let result = call(op, self.timeout, |err, len| f(raw, err, len));
        if let Err(e) = &result {
            *self.broken.borrow_mut() = Some(e.to_string());
        }
        result
    }
}

/// Writes a staged tensor's result back into `tensor` (see
/// `ProcessGroup::stage`).
fn unstage(op: &'static str, tensor: &mut Tensor, stage: Option<Tensor>) -> Result<()> {
    if let Some(s) = stage {
        tensor.f_copy_(&s).map_err(|e| GlmcError::Dist { op, why: format!("copying the result back to the CPU: {e}") })?;
    }
    Ok(())
}

impl Drop for ProcessGroup {
    fn drop(&mut self) {
        // SAFETY: `raw` came from the shim and is freed once.
        unsafe { lt_dist_free(self.raw) }
    }
}

/// DDP's default bucket cap, `bucket_cap_mb=25`.
pub const DEFAULT_BUCKET_CAP_MIB: usize = 25;

/// DDP's cap of the bucket reduced first (`dist._DEFAULT_FIRST_BUCKET_BYTES`,
/// c10d's `kDefaultFirstBucketBytes`): the gradients ready first do not wait
/// for a full 25 MiB bucket.
pub const FIRST_BUCKET_BYTES: usize = 1024 * 1024;

/// The bucket size of [`ProcessGroup::broadcast_coalesced`] (DDP's
/// `broadcast_bucket_size`, 250 MiB).
pub const BROADCAST_BUCKET_BYTES: usize = 250 * 1024 * 1024;

/// DDP's gradient synchronisation: a `c10d::Reducer` (the C++ engine under
/// `torch.nn.parallel.DistributedDataParallel`) over a model's parameters,
/// driven the way DDP drives it.
///
/// - [`GradReducer::new`] does what DDP's constructor does: checks that
///   every rank has the same parameter shapes (`verify_params_across_processes`),
///   buckets the parameters with `compute_bucket_assignment_by_size`, in the
///   reverse of their order (the last parameters' gradients are ready
///   first), and registers the Reducer's hooks on their gradient
///   accumulators. Without `find_unused` the first backward reduces one
///   bucket of everything and the buckets are then rebuilt once, from the
///   order in which the gradients became ready (rank 0's, broadcast), capped
///   at [`FIRST_BUCKET_BYTES`] for the first and `bucket_cap_mib` for the
///   others; with `find_unused` they are cut by those caps from the start and
///   kept (DDP's rules). `bucket_cap_mib` 0 makes every gradient its own
///   bucket.
/// - [`GradReducer::prepare_for_backward`] is what DDP's forward does after
///   the module's forward (`prepare_for_backward` on the outputs, and
///   `rebuild_buckets`); with `find_unused` it walks the outputs' autograd
///   graph and marks the parameters it does not reach.
/// - During [`GradReducer::backward`], each gradient is copied into its
///   bucket divided by the world size as autograd accumulates it, and each
///   full bucket is SUM-all-reduced at once, overlapping the rest of the
///   backward; at its end the averages are written into `.grad`. A parameter
///   no rank used keeps its gradient as it was (undefined stays undefined,
///   so SGD skips it); one used on some ranks only gets their average (the
///   others count as zero).
///
/// Every rank passes the same parameters (same shapes, in the same order,
/// e.g. [`crate::optim::Sgd::params`], which sorts them by name), after the
/// model is on its device and in its memory format (replacing a
/// parameter's data with another dtype or device detaches the hooks): the
/// CPU for Gloo, the group's GPU for NCCL. The collectives are the group's,
/// bounded by its timeout, so a dead or stalled peer makes
/// [`GradReducer::backward`] fail with [`GlmcError::Dist`] or
/// [`GlmcError::DistTimeout`] (on NCCL, c10d's watchdog may take the
/// process down first; see the module docs); after any failure the reducer
/// refuses further calls. Dropping it removes its hooks.
pub struct GradReducer {
    raw: *mut c_void,
    params: usize,
    bucket_cap_mib: usize,
    find_unused: bool,
    /// The group's timeout when the reducer was made (named by timeouts).
    timeout: Duration,
    /// Between prepare_for_backward and backward.
    prepared: bool,
    broken: Option<String>,
}

impl std::fmt::Debug for GradReducer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GradReducer")
            .field("params", &self.params)
            .field("bucket_cap_mib", &self.bucket_cap_mib)
            .field("find_unused", &self.find_unused)
            .field("broken", &self.broken)
            .finish()
    }
}

impl GradReducer {
    /// A reducer over `params` (leaf tensors that require grad) averaging
    /// their gradients over `pg`'s ranks. A collective: every rank calls it
    /// with the same parameter shapes, else every rank gets an error naming
    /// the mismatch. `bucket_cap_mib` caps a bucket
    /// ([`DEFAULT_BUCKET_CAP_MIB`] is DDP's); `find_unused` is DDP's
    /// `find_unused_parameters`, needed when some parameters get no gradient
    /// (the cross-entropy method never uses `head_cb` nor the projection
    /// head): without it such a backward is an error.
    pub fn new(pg: &ProcessGroup, params: &[Tensor], bucket_cap_mib: usize, find_unused: bool) -> Result<Self> {
        const OP: &str = "create gradient reducer";
        let bad = |why: String| GlmcError::Dist { op: OP, why };
        if params.is_empty() {
            return Err(bad("no parameters".into()));
        }
        for (i, p) in params.iter().enumerate() {
            if let Err(GlmcError::Dist { why, .. }) = pg.check_param_device(OP, p) {
                return Err(bad(format!("parameter {i}: {why}")));
            }
            if !p.requires_grad() || !p.is_leaf() {
                return Err(bad(format!("parameter {i} (shape {:?}) is not a leaf tensor that requires grad", p.size())));
            }
        }
        let bytes = bucket_cap_mib
            .checked_mul(1024 * 1024)
            .filter(|&b| b <= i64::MAX as usize)
            .ok_or_else(|| GlmcError::setting("bucket_cap_mib", format!("{bucket_cap_mib} MiB is too large")))?;
        let first = bytes.min(FIRST_BUCKET_BYTES);
        let raw_params = raw_list(params);
        let mut raw: *mut c_void = ptr::null_mut();
        // SAFETY: live at::Tensor*'s for the call (the Reducer keeps its own
        // references); `raw` a live out-pointer.
        pg.collective(OP, |g, err, len| unsafe {
            lt_dist_reducer_new(g, raw_params.as_ptr(), raw_params.len(), bytes as i64, first as i64, find_unused, &mut raw, err, len)
        })?;
        if raw.is_null() {
            return Err(bad("the shim returned no reducer".into()));
        }
        Ok(GradReducer { raw, params: params.len(), bucket_cap_mib, find_unused, timeout: pg.timeout(), prepared: false, broken: None })
    }

    /// How many parameters it reduces.
    pub fn len(&self) -> usize {
        self.params
    }

    /// Never: a reducer has at least one parameter.
    pub fn is_empty(&self) -> bool {
        self.params == 0
    }

    pub fn bucket_cap_mib(&self) -> usize {
        self.bucket_cap_mib
    }

    pub fn find_unused(&self) -> bool {
        self.find_unused
    }

    /// The number of gradient elements in each bucket, in the order the
    /// buckets are reduced (see the type's docs for how they are cut).
    pub fn bucket_sizes(&self) -> Result<Vec<usize>> {
        let mut sizes = vec![0i64; self.params];
        let mut count = 0usize;
        let r = self.raw;
        // SAFETY: a live reducer; `sizes` holds `params` elements, at least
        // as many as there are buckets.
        call("bucket_sizes", self.timeout, |err, len| unsafe {
            lt_dist_reducer_bucket_sizes(r, sizes.as_mut_ptr(), sizes.len(), &mut count, err, len)
        })?;
        sizes.truncate(count);
        Ok(sizes.into_iter().map(|n| n as usize).collect())
    }

    /// Arms the reducer for the next backward, from `outputs` (the loss, or
    /// the tensors the backward starts from): DDP calls it after every
    /// forward. With `find_unused`, the parameters the outputs' graph does
    /// not reach are marked ready (their gradients are not waited for).
    /// Once, on the second call without `find_unused`, the buckets are
    /// rebuilt (a broadcast from rank 0).
    pub fn prepare_for_backward(&mut self, outputs: &[&Tensor]) -> Result<()> {
        const OP: &str = "prepare_for_backward";
        self.check_usable(OP)?;
        if let Some(i) = outputs.iter().position(|t| !t.defined()) {
            return Err(GlmcError::Dist { op: OP, why: format!("output {i} is undefined") });
        }
        let raw_out = raw_list(outputs.iter().copied());
        let r = self.raw;
        // SAFETY: a live reducer and live at::Tensor*'s for the call.
        let result = call(OP, self.timeout, |err, len| unsafe { lt_dist_reducer_prepare(r, raw_out.as_ptr(), raw_out.len(), err, len) });
        self.settle(result)?;
        self.prepared = true;
        Ok(())
    }

    /// Back-propagates `loss` (after [`GradReducer::prepare_for_backward`]),
    /// the gradients all-reduced bucket by bucket as they become ready;
    /// returns when every gradient is the average over the ranks. A
    /// collective: every rank runs it.
    pub fn backward(&mut self, loss: &Tensor) -> Result<()> {
        const OP: &str = "backward (gradient all-reduce)";
        self.check_usable(OP)?;
        if !std::mem::take(&mut self.prepared) {
            return Err(GlmcError::Dist { op: OP, why: "prepare_for_backward must come before each backward".into() });
        }
        if !loss.defined() {
            return Err(GlmcError::Dist { op: OP, why: "undefined loss".into() });
        }
        let (r, l) = (self.raw, loss.as_ptr() as *mut torch_sys::C_tensor);
        // SAFETY: a live reducer and a live at::Tensor* for the call.
        let result = call(OP, self.timeout, |err, len| unsafe { lt_dist_reducer_backward(r, l, err, len) });
        self.settle(result)
    }

    fn check_usable(&self, op: &'static str) -> Result<()> {
        match &self.broken {
            Some(first) => Err(GlmcError::Dist { op, why: format!("the gradient reducer is unusable after an earlier failure ({first})") }),
            None => Ok(()),
        }
    }

    /// A failure leaves the ranks out of step: refuse everything after it.
    fn settle(&mut self, result: Result<()>) -> Result<()> {
        if let Err(e) = &result {
            self.broken.get_or_insert_with(|| e.to_string());
            self.prepared = false;
        }
        result
    }
}

impl Drop for GradReducer {
    fn drop(&mut self) {
        // SAFETY: `raw` came from the shim and is freed once.
        unsafe { lt_dist_reducer_free(self.raw) }
    }
}

/// Data-parallel training over a process group: the group (shared, as the
/// trainer also gathers metrics through it) and the [`GradReducer`] of the
/// model's parameters. [`crate::step::Updater::with_data_parallel`] runs
/// every step's backward through it.
///
/// ```no_run
/// use std::rc::Rc;
/// use lt_glmc::dist::{DataParallel, ProcessGroup, DEFAULT_BUCKET_CAP_MIB};
/// use lt_glmc::optim::{Sgd, SgdConfig};
/// use lt_glmc::step::Updater;
/// use lt_glmc::tch::{nn::VarStore, Device};
/// # fn main() -> lt_glmc::Result<()> {
/// let vs = VarStore::new(Device::Cpu);
/// // ... build the model in `vs` ...
/// let opt = Sgd::new(&vs, SgdConfig::default());
/// let pg = Rc::new(ProcessGroup::from_env()?);
/// let dp = DataParallel::new(pg, &opt.params(), DEFAULT_BUCKET_CAP_MIB, false)?;
/// // Rank 0's weights and BatchNorm statistics everywhere (sorted by name,
/// // so every rank lists them in the same order).
/// let mut state: Vec<_> = vs.variables().into_iter().collect();
/// state.sort_by(|a, b| a.0.cmp(&b.0));
/// dp.sync_from_root(&state.into_iter().map(|(_, t)| t).collect::<Vec<_>>())?;
/// let updater = Updater::new(opt.params(), None).with_data_parallel(dp);
/// # Ok(()) }
/// ```
#[derive(Debug)]
pub struct DataParallel {
    pg: Rc<ProcessGroup>,
    reducer: GradReducer,
}

impl DataParallel {
    /// A [`GradReducer`] over `params` on `pg` (see [`GradReducer::new`]).
    pub fn new(pg: Rc<ProcessGroup>, params: &[Tensor], bucket_cap_mib: usize, find_unused: bool) -> Result<Self> {
        let reducer = GradReducer::new(&pg, params, bucket_cap_mib, find_unused)?;
        Ok(DataParallel { pg, reducer })
    }

    pub fn pg(&self) -> &ProcessGroup {
        &self.pg
    }

    /// The group, to share.
    pub fn pg_rc(&self) -> &Rc<ProcessGroup> {
        &self.pg
    }

    pub fn reducer(&self) -> &GradReducer {
        &self.reducer
    }

    /// Rank 0's `tensors` on every rank, in place
    /// ([`ProcessGroup::broadcast_coalesced`] from rank 0): the parameters
    /// and buffers (BatchNorm statistics) before training, as DDP's
    /// constructor does. Every rank lists the same tensors in the same
    /// order (e.g. the VarStore's variables sorted by name).
    pub fn sync_from_root(&self, tensors: &[Tensor]) -> Result<()> {
        self.pg.broadcast_coalesced(tensors, 0)
    }

    /// [`GradReducer::prepare_for_backward`] on `[loss]`, then
    /// [`GradReducer::backward`]: afterwards every gradient is the world's
    /// average. A failure also marks the group unusable.
    pub fn backward(&mut self, loss: &Tensor) -> Result<()> {
        self.pg.check_usable("backward (gradient all-reduce)")?;
        let result = self.reducer.prepare_for_backward(&[loss]).and_then(|()| self.reducer.backward(loss));
        if let Err(e) = &result {
            self.pg.mark_broken(e);
        }
        result
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn lookup(vars: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let map: HashMap<String, String> = vars.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        move |k| map.get(k).cloned()
    }

    const FULL: [(&str, &str); 5] =
        [("RANK", "1"), ("LOCAL_RANK", "1"), ("WORLD_SIZE", "2"), ("MASTER_ADDR", "127.0.0.1"), ("MASTER_PORT", "29500")];

    #[test]
    fn env_reads_torchrun_variables() {
        let env = DistEnv::from_lookup(lookup(&FULL)).unwrap();
        assert_eq!((env.rank, env.local_rank, env.world_size, env.master_port), (1, Some(1), 2, 29500));
        assert_eq!(env.store(), Store::Tcp { host: "127.0.0.1".into(), port: 29500, is_server: false, prefix: "lt_glmc".into() });
        let mut rank0 = FULL.to_vec();
        rank0[0] = ("RANK", "0");
        assert!(matches!(DistEnv::from_lookup(lookup(&rank0)).unwrap().store(), Store::Tcp { is_server: true, .. }));
    }

    #[test]
    fn env_agent_store_makes_every_rank_a_client() {
        let mut vars = FULL.to_vec();
        vars[0] = ("RANK", "0");
        vars.push(("TORCHELASTIC_USE_AGENT_STORE", "True"));
        vars.push(("TORCHELASTIC_RESTART_COUNT", "3"));
        let env = DistEnv::from_lookup(lookup(&vars)).unwrap();
        assert_eq!(env.store(), Store::Tcp { host: "127.0.0.1".into(), port: 29500, is_server: false, prefix: "lt_glmc/attempt_3".into() });
    }

    #[test]
    fn env_missing_or_bad_variable_is_named() {
        for missing in ["RANK", "WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT"] {
            let vars: Vec<_> = FULL.iter().copied().filter(|(k, _)| *k != missing).collect();
            match DistEnv::from_lookup(lookup(&vars)) {
                Err(GlmcError::DistEnv { var, why }) => {
                    assert_eq!(var, missing);
                    assert!(why.contains("not set"), "{why}");
                }
                other => panic!("{missing} missing: {other:?}"),
            }
        }
        let vars: Vec<_> = FULL.iter().copied().filter(|(k, _)| *k != "LOCAL_RANK").collect();
        assert_eq!(DistEnv::from_lookup(lookup(&vars)).unwrap().local_rank, None);
        for (var, bad) in [("RANK", "2"), ("RANK", "x"), ("WORLD_SIZE", "0"), ("MASTER_PORT", "70000"), ("LOCAL_RANK", "-1")] {
            let vars: Vec<_> = FULL.iter().map(|&(k, v)| if k == var { (k, bad) } else { (k, v) }).collect();
            let err = DistEnv::from_lookup(lookup(&vars)).unwrap_err();
            assert!(matches!(&err, GlmcError::DistEnv { var: v, .. } if *v == var), "{var}={bad}: {err:?}");
            assert!(err.to_string().starts_with(var), "{err}");
        }
    }

    #[test]
    fn backend_names() {
        assert_eq!("gloo".parse::<Backend>().unwrap(), Backend::Gloo);
        assert_eq!("nccl".parse::<Backend>().unwrap(), Backend::Nccl);
        let err = "mpi".parse::<Backend>().unwrap_err().to_string();
        assert!(err.contains("gloo, nccl"), "{err}");
        for b in [Backend::Gloo, Backend::Nccl] {
            assert_eq!(b.name().parse::<Backend>().unwrap(), b);
        }
        assert!(Backend::Gloo.is_built());
    }
}
