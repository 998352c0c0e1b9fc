//! Checkpoints: a directory holding
//!
//! - `model.safetensors`: every variable of the VarStore (weights and
//!   BatchNorm running statistics) under its PyTorch-style name, readable
//!   with `safetensors.torch.load_file`; its header metadata is the
//!   caller's model card ([`MODEL_CARD_KEY`] in [`TrainState::extra`]:
//!   architecture, classes, normalization, evaluation head and pipeline),
//!   so the weights describe themselves ([`read_metadata`]);
//! - `optimizer.safetensors`: the SGD momentum buffers, by parameter name;
//! - `state.json`: [`TrainState`] (epoch, step, schedule position, RNG state,
//!   the loader's opaque position).
//!
//! Writes are atomic: everything goes to `<dir>.tmp-<pid>` first, which then
//! replaces `<dir>` by two renames (`<dir>` → `<dir>.old-<pid>`, tmp →
//! `<dir>`), so a crash leaves either the old or the new checkpoint, never a
//! mix. [`recover`] (run at the start of every run, under the run lock)
//! removes what a killed writer left behind and, after a crash between the
//! two renames, puts the old checkpoint back in place.
//!
//! Only finite weights are saved: [`save`] refuses a model whose parameters
//! or buffers (BatchNorm running statistics) hold NaN or infinity, and
//! leaves the previous checkpoint as it is.

use std::collections::BTreeMap;
use std::fs;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use tch::nn::VarStore;
use tch::{Device, Kind, Tensor};

use crate::error::{GlmcError, Result};
use crate::optim::Sgd;

pub const MODEL_FILE: &str = "model.safetensors";
pub const OPTIMIZER_FILE: &str = "optimizer.safetensors";
pub const STATE_FILE: &str = "state.json";
/// The key of [`TrainState::extra`] whose object of strings becomes the
/// metadata of `model.safetensors`.
pub const MODEL_CARD_KEY: &str = "model_card";
/// Largest safetensors header [`read_metadata`] accepts (the format's own
/// limit is 100 MB).
const MAX_HEADER: u64 = 100 << 20;

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

/// Writes the VarStore's variables (on CPU, sorted by name) as safetensors,
/// with `metadata` in the header's `__metadata__` (empty: none).
pub fn save_weights(vs: &VarStore, path: &Path, metadata: &BTreeMap<String, String>) -> Result<()> {
    let mut named: Vec<(String, Tensor)> = vs.variables().into_iter().collect();
    named.sort_by(|a, b| a.0.cmp(&b.0));
    let cpu: Vec<(String, Tensor)> =
        named.into_iter().map(|(n, t)| Ok((n, t.f_detach()?.f_to_device(Device::Cpu)?.f_contiguous()?))).collect::<Result<_>>()?;
    write_safetensors(&cpu, metadata, path)
}

/// The safetensors name of a tensor kind.
fn dtype_name(k: Kind) -> Option<&'static str> {
    Some(match k {
        Kind::Float => "F32",
        Kind::Double => "F64",
        Kind::Half => "F16",
        Kind::BFloat16 => "BF16",
        Kind::Int64 => "I64",
        Kind::Int => "I32",
        Kind::Int16 => "I16",
        Kind::Int8 => "I8",
        Kind::Uint8 => "U8",
        Kind::Bool => "BOOL",
        _ => return None,
    })
}

/// The safetensors format (a little-endian u64 header length, the JSON
/// header padded with spaces to 8 bytes, then the tensors' bytes in order),
/// written directly because tch's writer takes no metadata. Tensors must be
/// contiguous and on the CPU.
fn write_safetensors(tensors: &[(String, Tensor)], metadata: &BTreeMap<String, String>, path: &Path) -> Result<()> {
    let mut header = serde_json::Map::new();
    if !metadata.is_empty() {
        header.insert("__metadata__".into(), serde_json::to_value(metadata).unwrap_or_default());
    }
    let mut offset = 0usize;
    for (name, t) in tensors {
        let kind = t.f_kind()?;
        let dtype = dtype_name(kind).ok_or_else(|| GlmcError::Checkpoint {
            path: path.to_path_buf(),
            why: format!("{name}: tensors of kind {kind:?} cannot be saved"),
        })?;
        let bytes = t.numel() * kind.elt_size_in_bytes();
        header.insert(name.clone(), serde_json::json!({ "dtype": dtype, "shape": t.size(), "data_offsets": [offset, offset + bytes] }));
        offset += bytes;
    }
    let mut json = serde_json::to_vec(&header).map_err(|source| GlmcError::Json { path: path.to_path_buf(), source })?;
    json.resize(json.len().div_ceil(8) * 8, b' ');
    let mut f = std::io::BufWriter::new(fs::File::create(path).map_err(io(path))?);
    f.write_all(&(json.len() as u64).to_le_bytes()).map_err(io(path))?;
    f.write_all(&json).map_err(io(path))?;
    let mut buf = Vec::new();
    for (_, t) in tensors {
        let n = t.numel();
        buf.resize(n * t.f_kind()?.elt_size_in_bytes(), 0);
        t.f_copy_data_u8(&mut buf, n)?;
        f.write_all(&buf).map_err(io(path))?;
    }
    f.into_inner().map_err(|e| GlmcError::Io { path: path.to_path_buf(), source: e.into_error() })?.sync_all().map_err(io(path))
}

/// The `__metadata__` of a safetensors file (empty when it has none), read
/// from its header only.
pub fn read_metadata(path: &Path) -> Result<BTreeMap<String, String>> {
    let bad = |why: String| GlmcError::Checkpoint { path: path.to_path_buf(), why };
    let mut f = fs::File::open(path).map_err(io(path))?;
    let mut len = [0u8; 8];
    f.read_exact(&mut len).map_err(|e| bad(format!("not a safetensors file ({e})")))?;
    let len = u64::from_le_bytes(len);
    if len > MAX_HEADER {
        return Err(bad(format!("not a safetensors file (a header of {len} bytes)")));
    }
    let mut header = vec![0u8; len as usize];
    f.read_exact(&mut header).map_err(|e| bad(format!("truncated safetensors header ({e})")))?;
    let v: serde_json::Value = serde_json::from_slice(&header).map_err(|e| bad(format!("unreadable safetensors header ({e})")))?;
    match v.get("__metadata__") {
        None => Ok(BTreeMap::new()),
        Some(m) => serde_json::from_value(m.clone()).map_err(|e| bad(format!("__metadata__ is not a map of strings ({e})"))),
    }
}

/// The model card a [`TrainState`] carries ([`MODEL_CARD_KEY`]), as strings.
pub fn model_card(state: &TrainState) -> BTreeMap<String, String> {
    state.extra.get(MODEL_CARD_KEY).and_then(|v| serde_json::from_value(v.clone()).ok()).unwrap_or_default()
}

/// Loads weights saved by [`save_weights`] (or by Python with the same
/// names); every variable of `vs` must be present.
pub fn load_weights(vs: &mut VarStore, path: &Path) -> Result<()> {
    vs.load(path).map_err(|e| GlmcError::Checkpoint { path: path.to_path_buf(), why: e.to_string() })
}

/// The first variable of `vs` (parameter or buffer, by name) or momentum
/// buffer of `opt` that holds a NaN or an infinity.
pub fn first_non_finite(vs: &VarStore, opt: &Sgd) -> Result<Option<String>> {
    let mut named: Vec<(String, Tensor)> = vs.variables().into_iter().collect();
    named.sort_by(|a, b| a.0.cmp(&b.0));
    named.extend(opt.buffers().into_iter().map(|(n, t)| (format!("the momentum of {n}"), t)));
    for (n, t) in named {
        let finite = t.f_isfinite()?.f_all()?.f_int64_value(&[])? != 0;
        if !finite {
            return Ok(Some(n));
        }
    }
    Ok(None)
}

/// "epoch E" (1-based, as the progress line) or "epoch E step S" for a
/// mid-epoch state.
fn describe(state: &TrainState) -> String {
    if state.step_in_epoch == 0 {
        format!("after epoch {}", state.epoch)
    } else {
        format!("at epoch {} step {}", state.epoch + 1, state.step_in_epoch)
    }
}

/// What stays in `dir` when a save is refused.
fn kept(dir: &Path) -> String {
    match load_state(dir) {
        Ok(st) => format!("the last good checkpoint ({}) is kept in {}", describe(&st), dir.display()),
        Err(_) => "no checkpoint had been written yet".to_string(),
    }
}

fn name_of(dir: &Path) -> Result<String> {
    Ok(dir
        .file_name()
        .ok_or_else(|| GlmcError::Checkpoint { path: dir.to_path_buf(), why: "not a directory name".into() })?
        .to_string_lossy()
        .into_owned())
}

/// Saves a checkpoint atomically into `dir`. Non-finite weights are an
/// error and leave `dir` untouched.
pub fn save(dir: &Path, vs: &VarStore, opt: &Sgd, state: &TrainState) -> Result<()> {
    let name = name_of(dir)?;
    if let Some(bad) = first_non_finite(vs, opt)? {
        let at = if state.step_in_epoch == 0 {
            format!("global step {} (end of epoch {})", state.step, state.epoch)
        } else {
            format!("global step {} (epoch {})", state.step, state.epoch + 1)
        };
        return Err(GlmcError::Checkpoint {
            path: dir.to_path_buf(),
            why: format!("not saved: {bad} holds non-finite values (NaN or inf) at {at}; stopping, {}", kept(dir)),
        });
    }
    let tmp = dir.with_file_name(format!("{name}.tmp-{}", std::process::id()));
    if tmp.exists() {
        fs::remove_dir_all(&tmp).map_err(io(&tmp))?;
    }
    fs::create_dir_all(&tmp).map_err(io(&tmp))?;
    save_weights(vs, &tmp.join(MODEL_FILE), &model_card(state))?;
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
    if let Some(parent) = dir.parent().filter(|p| !p.as_os_str().is_empty()) {
        // The renames themselves reach the disk.
        let _ = fs::File::open(parent).and_then(|d| d.sync_all());
    }
    if let Some(old) = old {
        fs::remove_dir_all(&old).map_err(io(&old))?;
    }
    tracing::debug!(dir = %dir.display(), epoch = state.epoch, step = state.step, "checkpoint saved");
    Ok(())
}

/// Whether process `pid` exists (a zombie counts; a PID of another user too).
fn alive(pid: u32) -> bool {
    if pid == 0 || pid > i32::MAX as u32 {
        return false;
    }
    // SAFETY: signal 0 only checks that the process exists.
    if unsafe { libc::kill(pid as libc::pid_t, 0) } == 0 {
        return true;
    }
    std::io::Error::last_os_error().raw_os_error() == Some(libc::EPERM)
}

/// What [`recover`] did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Recovery {
    /// Temporary and old checkpoints of dead writers that were removed.
    pub removed: Vec<PathBuf>,
    /// The `<dir>.old-<pid>` put back as `dir` (a crash between the renames).
    pub restored: Option<PathBuf>,
}

/// Repairs checkpoint `dir` after a writer was killed; call it before
/// reading `dir`, holding the run directory's lock.
///
/// - `<dir>.tmp-<pid>` of a process that no longer runs (or of this one)
///   is an unfinished write: removed.
/// - When `dir` has no `state.json` but a `<dir>.old-<pid>` has one, the
///   writer died between its two renames: the old checkpoint is moved back
///   to `dir` (the newest one, by step, if there are several).
/// - Other `<dir>.old-<pid>` of dead writers are leftovers: removed.
pub fn recover(dir: &Path) -> Result<Recovery> {
    let name = name_of(dir)?;
    let parent = match dir.parent() {
        Some(p) if p.as_os_str().is_empty() => Path::new("."),
        Some(p) => p,
        None => return Ok(Recovery::default()),
    };
    let entries = match fs::read_dir(parent) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Recovery::default()),
        Err(e) => return Err(GlmcError::Io { path: parent.to_path_buf(), source: e }),
    };
    let me = std::process::id();
    let (mut tmps, mut olds) = (Vec::new(), Vec::new());
    for e in entries {
        let e = e.map_err(io(parent))?;
        let file = e.file_name().to_string_lossy().into_owned();
        let Some(rest) = file.strip_prefix(&name) else { continue };
        let (list, pid) = if let Some(p) = rest.strip_prefix(".tmp-") {
            (&mut tmps, p)
        } else if let Some(p) = rest.strip_prefix(".old-") {
            (&mut olds, p)
        } else {
            continue;
        };
        let Ok(pid) = pid.parse::<u32>() else { continue };
        if pid != me && alive(pid) {
            tracing::warn!(path = %e.path().display(), pid, "left alone: its writer process is still running");
            continue;
        }
        list.push(e.path());
    }
    let mut rec = Recovery::default();
    if !dir.join(STATE_FILE).is_file() {
        let newest =
            olds.iter().filter_map(|p| load_state(p).ok().map(|s| (s.step, p.clone()))).max_by_key(|(step, _)| *step).map(|(_, p)| p);
        if let Some(old) = newest {
            if dir.exists() {
                // An incomplete directory in the way (not one of ours): keep it aside.
                let aside = dir.with_file_name(format!("{name}.incomplete-{me}"));
                fs::rename(dir, &aside).map_err(io(dir))?;
                tracing::warn!(path = %aside.display(), "moved an incomplete checkpoint aside");
            }
            fs::rename(&old, dir).map_err(io(dir))?;
            tracing::warn!(from = %old.display(), to = %dir.display(), "restored the checkpoint a killed writer had moved aside");
            olds.retain(|p| p != &old);
            rec.restored = Some(old);
        }
    }
    for p in tmps.into_iter().chain(olds) {
        fs::remove_dir_all(&p).map_err(io(&p))?;
        tracing::info!(path = %p.display(), "removed a checkpoint left by a killed writer");
        rec.removed.push(p);
    }
    Ok(rec)
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
