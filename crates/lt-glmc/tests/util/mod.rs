//! Shared helpers of the libtorch tests (lt-glmc's, and through
//! lt-train's tests/util, lt-train's and lt-bench's): the lock around
//! libtorch's process-global state, and a PID no process has.

#![allow(dead_code)]

use std::sync::Mutex;

/// libtorch's global state is per process, and the tests of one binary run
/// in parallel threads: the default generator (`tch::manual_seed`, model
/// initialisation, `randn`), the thread count (`set_num_threads`), the TF32
/// and cuDNN flags. Every test that touches any of it, directly or through
/// `train::setup` / `train::train` / `finetune::finetune` / lt-bench's stepper,
/// serialises on this one lock via [`torch_lock`]
/// (lt-glmc's `tests/model_and_checkpoint.rs::every_test_touching_global_torch_state_takes_the_lock`
/// checks the test files of lt-glmc, lt-train and lt-bench for it).
pub static GLOBAL_TORCH: Mutex<()> = Mutex::new(());

/// Takes [`GLOBAL_TORCH`] (a test that panicked while holding it does not
/// poison it for the others) and pins libtorch to one intra-op thread: on
/// a shared 2-core machine OpenMP's spinning threads make tiny models tens
/// of times slower.
pub fn torch_lock() -> std::sync::MutexGuard<'static, ()> {
    let g = GLOBAL_TORCH.lock().unwrap_or_else(|p| p.into_inner());
    lt_glmc::tch::set_num_threads(1);
    g
}

/// A PID that no process has (a child that has exited and been reaped).
pub fn dead_pid() -> u32 {
    let mut c = std::process::Command::new("true").spawn().expect("spawn true");
    let pid = c.id();
    c.wait().unwrap();
    pid
}

/// The venv's python, which has torchrun ($LT_GLMC_PYTHON, set by
/// `source tools/env.sh`). Without it the caller skips, saying so, unless
/// LT_REQUIRE_PYTHON=1 (CI), which makes its absence a failure.
pub fn torchrun_python() -> Option<std::path::PathBuf> {
    match std::env::var_os("LT_GLMC_PYTHON") {
        Some(p) => Some(p.into()),
        None => {
            assert!(std::env::var_os("LT_REQUIRE_PYTHON").is_none(), "LT_GLMC_PYTHON is unset: run tools/setup.sh and source tools/env.sh");
            eprintln!("skipping: LT_GLMC_PYTHON is unset (the venv of tools/setup.sh has torchrun)");
            None
        }
    }
}

/// A loopback TCP port that is free now (for MASTER_PORT).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}
