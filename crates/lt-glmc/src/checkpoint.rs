//! Checkpoints: a directory holding
//!
//! - `model.safetensors`: every variable of the VarStore (weights and
//!   BatchNorm running statistics) under its PyTorch-style name, readable
//!   with `safetensors.torch.load_file`;
//! - `optimizer.safetensors`: the SGD momentum buffers, by parameter name;
//! - `state.json`: [`TrainState`] (epoch, step, schedule position, RNG state,
//!   the loader's opaque position).
//!
//! Writes are atomic: everything goes to `<dir>.tmp-<pid>` first, which then
//! replaces `<dir>` by rename, so a crash leaves either the old or the new
//! checkpoint, never a mix.

use std::fs;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use tch::nn::VarStore;
use tch::{Device, Tensor};

use crate::error::{GlmcError, Result, TorchContext};
use crate::optim::Sgd;

pub const MODEL_FILE: &str = "model.safetensors";
pub const OPTIMIZER_FILE: &str = "optimizer.safetensors";
pub const STATE_FILE: &str = "state.json";

/// Everything but the tensors that a resume needs.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TrainState {
    /// The next epoch to run (0-based).
    pub epoch: usize,
    /// Global optimizer steps done so far.
    pub step: u64,
    /// Step within `epoch` (0 at an epoch boundary).
    pub step_in_epoch: u64,
    /// The learning rate in force.
    pub lr: f64,
    /// State of the trainer's [`lt_core::rng::Rng`] (λ and box draws).
    pub rng: [u64; 4],
    /// The loader's position, opaque to this crate.
    #[serde(default)]
    pub loader: serde_json::Value,
    /// Anything else the caller wants back (recipe hash, dataset id, …).
    #[serde(default)]
    pub extra: serde_json::Value,
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> GlmcError + '_ {
    move |source| GlmcError::Io { path: path.to_path_buf(), source }
}

/// Writes the VarStore's variables (on CPU, sorted by name) as safetensors.
pub fn save_weights(vs: &VarStore, path: &Path) -> Result<()> {
    let mut named: Vec<(String, Tensor)> = vs.variables().into_iter().collect();
    named.sort_by(|a, b| a.0.cmp(&b.0));
    let cpu: Vec<(String, Tensor)> = named
        .into_iter()
        .map(|(n, t)| Ok((n, t.f_detach()?.f_to_device(Device::Cpu)?.f_contiguous()?)))
        .collect::<Result<_>>()?;
    Tensor::write_safetensors(&cpu, path).ctx(|| format!("writing {}", path.display()))
}

/// Loads weights saved by [`save_weights`] (or by Python with the same
/// names); every variable of `vs` must be present.
pub fn load_weights(vs: &mut VarStore, path: &Path) -> Result<()> {
    vs.load(path).map_err(|e| GlmcError::Checkpoint { path: path.to_path_buf(), why: e.to_string() })
}

/// Saves a checkpoint atomically into `dir`.
pub fn save(dir: &Path, vs: &VarStore, opt: &Sgd, state: &TrainState) -> Result<()> {
    let name = dir
        .file_name()
        .ok_or_else(|| GlmcError::invalid("checkpoint directory", dir.display().to_string()))?
        .to_string_lossy()
        .into_owned();
    let tmp = dir.with_file_name(format!("{name}.tmp-{}", std::process::id()));
    if tmp.exists() {
        fs::remove_dir_all(&tmp).map_err(io(&tmp))?;
    }
    fs::create_dir_all(&tmp).map_err(io(&tmp))?;
    save_weights(vs, &tmp.join(MODEL_FILE))?;
    opt.save_buffers(&tmp.join(OPTIMIZER_FILE))?;
    let sp = tmp.join(STATE_FILE);
    let json = serde_json::to_vec_pretty(state).map_err(|source| GlmcError::Json { path: sp.clone(), source })?;
    fs::write(&sp, json).map_err(io(&sp))?;
    for f in [MODEL_FILE, OPTIMIZER_FILE, STATE_FILE] {
        let p = tmp.join(f);
        fs::File::open(&p).and_then(|f| f.sync_all()).map_err(io(&p))?;
    }
    // Swap: old → <dir>.old-<pid>, tmp → dir, then drop the old one.
    let old: Option<PathBuf> = if dir.exists() {
        let old = dir.with_file_name(format!("{name}.old-{}", std::process::id()));
        if old.exists() {
            fs::remove_dir_all(&old).map_err(io(&old))?;
        }
        fs::rename(dir, &old).map_err(io(dir))?;
        Some(old)
    } else {
        None
    };
    fs::rename(&tmp, dir).map_err(io(dir))?;
    if let Some(old) = old {
        fs::remove_dir_all(&old).map_err(io(&old))?;
    }
    tracing::debug!(dir = %dir.display(), epoch = state.epoch, step = state.step, "checkpoint saved");
    Ok(())
}

/// Reads only `state.json` of the checkpoint in `dir`.
pub fn load_state(dir: &Path) -> Result<TrainState> {
    let sp = dir.join(STATE_FILE);
    if !sp.exists() {
        return Err(GlmcError::Checkpoint { path: dir.to_path_buf(), why: format!("no {STATE_FILE}") });
    }
    let bytes = fs::read(&sp).map_err(io(&sp))?;
    serde_json::from_slice(&bytes).map_err(|source| GlmcError::Json { path: sp, source })
}

/// Restores weights and momentum buffers and returns the saved state.
pub fn load(dir: &Path, vs: &mut VarStore, opt: &mut Sgd) -> Result<TrainState> {
    let state = load_state(dir)?;
    load_weights(vs, &dir.join(MODEL_FILE))?;
    opt.load_buffers(&dir.join(OPTIMIZER_FILE))?;
    Ok(state)
}
