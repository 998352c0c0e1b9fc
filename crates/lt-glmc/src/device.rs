//! Device selection by name.

use tch::Device;

use crate::error::{GlmcError, Result};

/// Parses `cpu`, `cuda`, `cuda:N` or `auto` (CUDA when present).
pub fn parse_device(s: &str) -> Result<Device> {
    let absent = |why: &str| GlmcError::Device { requested: s.to_string(), why: why.to_string() };
    match s {
        "cpu" => Ok(Device::Cpu),
        "auto" => Ok(Device::cuda_if_available()),
        _ => {
            let idx = match s.strip_prefix("cuda") {
                Some("") => 0,
                Some(rest) => rest
                    .strip_prefix(':')
                    .and_then(|n| n.parse::<usize>().ok())
                    .ok_or_else(|| absent("expected cpu, cuda, cuda:N or auto"))?,
                None => return Err(absent("expected cpu, cuda, cuda:N or auto")),
            };
            if !tch::Cuda::is_available() {
                return Err(absent("CUDA was requested but libtorch sees no CUDA device (ask for cpu or auto)"));
            }
            let n = tch::Cuda::device_count() as usize;
            if idx >= n {
                return Err(absent(&format!("only {n} CUDA device(s)")));
            }
            Ok(Device::Cuda(idx))
        }
    }
}
