//! Host-memory allocator settings for CPU training.
//!
//! libtorch allocates CPU tensors with `posix_memalign`, so on glibc every
//! activation of a training step comes from glibc malloc. A step frees
//! everything it allocated, which leaves one large free chunk at the top of
//! the heap, and glibc's default policy gives that back to the kernel as
//! soon as it exceeds the (dynamically raised) trim threshold. The next step
//! then touches the same amount of fresh memory again, and each 4 KiB page
//! costs a page fault and a zeroing in the kernel. For ResNet-32 at width 16
//! and batch 64 that was ≈ 60,000 faults (≈ 240 MiB) per GLMC step, about
//! 10–15 % of the step on CPU.
//!
//! The same step run from Python showed no such faults (measured with
//! `perf stat`), presumably because the interpreter's own small objects on
//! the heap keep its top from being trimmed. PyTorch's CPU performance
//! guide recommends jemalloc or tcmalloc for allocation-heavy workloads. [`retain_freed_memory`] gets the same effect without a second
//! allocator: it sets glibc's trim threshold to 2 GiB and fixes the mmap
//! threshold at its maximum (32 MiB), so memory freed by one step is reused
//! by the next. The process keeps its peak heap size (what a step needs
//! anyway) instead of returning it between steps.
//!
//! `lt-train`, `lt-bench` and the step benchmark call it at start-up. It does
//! nothing when the user already chose malloc settings (`GLIBC_TUNABLES`
//! naming `glibc.malloc`, or a `MALLOC_*_` variable), when
//! `LT_GLMC_MALLOC=system`, or on a C library other than glibc.

/// What [`retain_freed_memory`] did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HostAllocTuning {
    /// The trim and mmap thresholds were set.
    Applied,
    /// Left as they were; the reason, for logs.
    Skipped(&'static str),
}

impl HostAllocTuning {
    pub fn applied(&self) -> bool {
        matches!(self, HostAllocTuning::Applied)
    }
}

/// Trim threshold: free memory at the top of the heap is returned to the
/// kernel only beyond this much.
pub const TRIM_THRESHOLD: i32 = i32::MAX;
/// Allocations of at least this size get their own mapping (glibc's upper
/// limit for the setting on 64-bit). Fixing it also stops glibc from moving
/// the thresholds on its own.
pub const MMAP_THRESHOLD: i32 = 32 << 20;

/// The reason to leave malloc alone, if the environment gives one.
fn user_choice(var: impl Fn(&str) -> Option<String>, names: impl Iterator<Item = String>) -> Option<&'static str> {
    if var("LT_GLMC_MALLOC").is_some_and(|v| v == "system") {
        return Some("LT_GLMC_MALLOC=system");
    }
    if var("GLIBC_TUNABLES").is_some_and(|v| v.contains("glibc.malloc.")) {
        return Some("GLIBC_TUNABLES sets glibc.malloc");
    }
    let mut names = names;
    if names.any(|n| n.starts_with("MALLOC_") && n.ends_with('_')) {
        return Some("a MALLOC_*_ variable is set");
    }
    None
}

/// Keeps freed host memory in the process (see the module docs). Call once,
/// early; safe to call again.
pub fn retain_freed_memory() -> HostAllocTuning {
    let env_names = std::env::vars_os().filter_map(|(k, _)| k.into_string().ok());
    if let Some(why) = user_choice(|k| std::env::var(k).ok(), env_names) {
        return HostAllocTuning::Skipped(why);
    }
    apply()
}

#[cfg(all(target_os = "linux", target_env = "gnu"))]
fn apply() -> HostAllocTuning {
    // SAFETY: mallopt only changes glibc's allocator parameters; it is
    // thread-safe (it takes the arena locks).
    let ok =
        unsafe { libc::mallopt(libc::M_MMAP_THRESHOLD, MMAP_THRESHOLD) == 1 && libc::mallopt(libc::M_TRIM_THRESHOLD, TRIM_THRESHOLD) == 1 };
    if ok {
        HostAllocTuning::Applied
    } else {
        HostAllocTuning::Skipped("mallopt refused the thresholds")
    }
}

#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
fn apply() -> HostAllocTuning {
    HostAllocTuning::Skipped("not glibc")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env<'a>(pairs: &'a [(&'a str, &'a str)]) -> (impl Fn(&str) -> Option<String> + 'a, Vec<String>) {
        let f = move |k: &str| pairs.iter().find(|(n, _)| *n == k).map(|(_, v)| v.to_string());
        (f, pairs.iter().map(|(n, _)| n.to_string()).collect())
    }

    #[test]
    fn user_settings_win() {
        type Case<'a> = (&'a [(&'a str, &'a str)], Option<&'a str>);
        let cases: [Case; 7] = [
            (&[], None),
            (&[("LT_GLMC_MALLOC", "system")], Some("LT_GLMC_MALLOC=system")),
            (&[("LT_GLMC_MALLOC", "glibc")], None),
            (&[("GLIBC_TUNABLES", "glibc.malloc.trim_threshold=0")], Some("GLIBC_TUNABLES sets glibc.malloc")),
            (&[("GLIBC_TUNABLES", "glibc.cpu.hwcaps=-AVX2")], None),
            (&[("MALLOC_ARENA_MAX", "2")], None),
            (&[("MALLOC_TRIM_THRESHOLD_", "0")], Some("a MALLOC_*_ variable is set")),
        ];
        for (pairs, want) in cases {
            let (f, names) = env(pairs);
            assert_eq!(user_choice(f, names.into_iter()), want, "{pairs:?}");
        }
    }
}
