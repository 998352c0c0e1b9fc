//! Precision and memory-format switches of the GPU path: fp16
//! autocast with our own dynamic loss scaling, TF32, cuDNN autotuning and
//! channels-last.
//!
//! tch 0.24 gaps this module fills:
//!
//! - **Autocast**: `tch::autocast` toggles libtorch's *CUDA* autocast
//!   (`at::autocast::set_enabled`), whose dtype is fp16. It has no dtype and
//!   no device argument, so CPU autocast (bf16) cannot be switched on from
//!   tch. Decision: [`Precision::Amp`] is **refused on CPU** with a clear
//!   error ([`PrecisionConfig::validate`]); the loss scaler itself is plain
//!   tensor code and runs (and is tested) on CPU.
//! - **GradScaler**: [`LossScaler`] is PyTorch's `torch.amp.GradScaler`
//!   algorithm: multiply the loss by `scale`, unscale the gradients in place
//!   while checking for inf/NaN (libtorch's
//!   `_amp_foreach_non_finite_check_and_unscale_`), skip the optimizer step
//!   on overflow and multiply `scale` by the backoff factor (0.5); after
//!   `growth_interval` (2000) good steps in a row multiply it by the growth
//!   factor (2). Its state is serde, so checkpoints can carry it. Under
//!   data parallelism the scaled backward runs through the gradient reducer
//!   ([`LossScaler::step_with`]), so the gradients it unscales and checks
//!   are the world's average and every rank skips, or steps, alike.
//! - **TF32 and cuDNN autotuning**: tch has no TF32 switch and cannot read
//!   the cuDNN benchmark flag back. [`set_tf32`], [`tf32_flags`],
//!   [`set_cudnn_benchmark`] and [`cudnn_benchmark`] go through a small C++
//!   shim (`csrc/shim.cpp`, compiled by `build.rs` with the `cc` crate
//!   against the headers of the libtorch torch-sys links) that calls
//!   `at::globalContext().setAllowTF32CuBLAS/CuDNN` and
//!   `setBenchmarkCuDNN` and their getters: the process-global flags that
//!   `torch.backends.cuda.matmul.allow_tf32`, `torch.backends.cudnn.allow_tf32`
//!   and `torch.backends.cudnn.benchmark` set in Python. The C++ compiler
//!   checks those calls against the headers, so a libtorch upgrade that
//!   changes them fails the build; the shim catches every C++ exception and
//!   returns its message, which becomes a [`GlmcError`].
//! - **Channels-last**: no memory-format argument; [`channels_last`] makes an
//!   NHWC-strided tensor by permuting to NHWC, `contiguous()`, and permuting
//!   back, and [`MemoryFormat::convert_weights`] does it to every 4-D
//!   variable in place (`set_data`), like `model.to(memory_format=...)`.
//!   cuDNN and oneDNN pick the NHWC kernels when the input or the weight is
//!   channels-last, and the layout then propagates through BatchNorm, ReLU
//!   and the residual adds.
//!
//! What each [`Precision`] means (the PyTorch reference,
//! `tools/glmc_gpu_reference.py`, sets the same flags):
//!
//! | precision | cuBLAS TF32 | cuDNN TF32 | autocast | loss scaling |
//! |---|---|---|---|---|
//! | `fp32` | off | off | off | off |
//! | `tf32` | on | on | off | off |
//! | `amp` | on | on | fp16 (CUDA) | dynamic |
//!
//! (PyTorch's own defaults are cuBLAS off, cuDNN on — neither of our modes.)

use std::ffi::{c_char, c_int, CStr};

use serde::{Deserialize, Serialize};
use tch::nn::VarStore;
use tch::{Device, Kind, Tensor};

use crate::error::{GlmcError, Result, TorchContext};
use crate::optim::Sgd;

/// Arithmetic of the training step.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Precision {
    /// Strict fp32: TF32 off in cuBLAS and cuDNN.
    #[default]
    Fp32,
    /// fp32 tensors, TF32 tensor-core math in matmuls and convolutions.
    Tf32,
    /// fp16 autocast (CUDA) with dynamic loss scaling; TF32 for the ops
    /// autocast leaves in fp32.
    #[serde(alias = "fp16", alias = "mixed")]
    Amp,
}

impl Precision {
    pub fn as_str(&self) -> &'static str {
        match self {
            Precision::Fp32 => "fp32",
            Precision::Tf32 => "tf32",
            Precision::Amp => "amp",
        }
    }
    pub fn uses_tf32(&self) -> bool {
        !matches!(self, Precision::Fp32)
    }
}

impl std::str::FromStr for Precision {
    type Err = GlmcError;
    fn from_str(s: &str) -> Result<Self> {
        match s.to_ascii_lowercase().as_str() {
            "fp32" => Ok(Precision::Fp32),
            "tf32" => Ok(Precision::Tf32),
            "amp" | "fp16" | "mixed" => Ok(Precision::Amp),
            _ => Err(GlmcError::setting("precision", format!("{s:?}: expected fp32, tf32 or amp"))),
        }
    }
}

impl std::fmt::Display for Precision {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Memory layout of activations and convolution weights.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MemoryFormat {
    #[default]
    Nchw,
    /// Channels-last (NHWC strides, NCHW shape).
    #[serde(alias = "channels_last")]
    Nhwc,
}

impl MemoryFormat {
    pub fn as_str(&self) -> &'static str {
        match self {
            MemoryFormat::Nchw => "nchw",
            MemoryFormat::Nhwc => "nhwc",
        }
    }

    /// `x` in this format: 4-D tensors are made channels-last for
    /// [`MemoryFormat::Nhwc`]; anything else is returned as is (shallow).
    pub fn apply(&self, x: &Tensor) -> Result<Tensor> {
        match self {
            MemoryFormat::Nhwc if x.dim() == 4 => channels_last(x),
            _ => Ok(x.shallow_clone()),
        }
    }

    /// Converts every 4-D variable of `vs` (the convolution weights) to this
    /// format in place; returns how many were converted. Call it before the
    /// first optimizer step, so momentum buffers are born in the same
    /// layout. Checkpoints are unaffected: they are saved `contiguous()`
    /// (NCHW) and loaded with `copy_`, which keeps the variable's layout.
    pub fn convert_weights(&self, vs: &VarStore) -> Result<usize> {
        let mut n = 0;
        tch::no_grad(|| -> Result<()> {
            for (name, mut v) in vs.variables() {
                if v.dim() != 4 {
                    continue;
                }
                let data = match self {
                    MemoryFormat::Nhwc => channels_last(&v.f_detach()?)?,
                    MemoryFormat::Nchw => v.f_detach()?.f_contiguous()?,
                };
                v.f_set_data(&data).ctx(|| format!("converting {name} to {}", self.as_str()))?;
                n += 1;
            }
            Ok(())
        })?;
        Ok(n)
    }
}

impl std::str::FromStr for MemoryFormat {
    type Err = GlmcError;
    fn from_str(s: &str) -> Result<Self> {
        match s.to_ascii_lowercase().as_str() {
            "nchw" | "contiguous" => Ok(MemoryFormat::Nchw),
            "nhwc" | "channels_last" | "channels-last" => Ok(MemoryFormat::Nhwc),
            _ => Err(GlmcError::setting("memory_format", format!("{s:?}: expected nchw or nhwc"))),
        }
    }
}

impl std::fmt::Display for MemoryFormat {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A channels-last copy of a 4-D NCHW tensor (permuted to NHWC, made
/// contiguous and permuted back):
/// same shape and values, NHWC strides.
pub fn channels_last(x: &Tensor) -> Result<Tensor> {
    if x.dim() != 4 {
        return Err(GlmcError::Shape { what: "channels_last input", got: x.size(), expected: "(N, C, H, W)".into() });
    }
    Ok(x.f_permute([0, 2, 3, 1])?.f_contiguous()?.f_permute([0, 3, 1, 2])?)
}

/// Whether a 4-D tensor has channels-last strides (`C` innermost).
pub fn is_channels_last(x: &Tensor) -> bool {
    if x.dim() != 4 {
        return false;
    }
    let (s, st) = (x.size(), x.stride());
    // Size-1 dimensions have arbitrary strides; compare the ones that matter.
    let (c, h, w) = (s[1], s[2], s[3]);
    (c == 1 || st[1] == 1) && (w == 1 || st[3] == c) && (h == 1 || st[2] == c * w)
}

// ---------------------------------------------------------------------------
// TF32 and cuDNN switches.
// ---------------------------------------------------------------------------

// csrc/shim.cpp. Each returns 0, or 1 with the C++ exception's message
// (NUL-terminated, cut to fit) in `err[..err_len]`; results come back
// through the out-pointer.
extern "C" {
    fn lt_glmc_set_allow_tf32_cublas(on: bool, err: *mut c_char, err_len: usize) -> c_int;
    fn lt_glmc_allow_tf32_cublas(out: *mut bool, err: *mut c_char, err_len: usize) -> c_int;
    fn lt_glmc_set_allow_tf32_cudnn(on: bool, err: *mut c_char, err_len: usize) -> c_int;
    fn lt_glmc_allow_tf32_cudnn(out: *mut bool, err: *mut c_char, err_len: usize) -> c_int;
    fn lt_glmc_set_cudnn_benchmark(on: bool, err: *mut c_char, err_len: usize) -> c_int;
    fn lt_glmc_cudnn_benchmark(out: *mut bool, err: *mut c_char, err_len: usize) -> c_int;
}

/// Runs one shim call with an error buffer; `call` is the C++ expression,
/// for the error message.
fn shim(call: &str, f: impl FnOnce(*mut c_char, usize) -> c_int) -> Result<()> {
    let mut err = [0 as c_char; 512];
    if f(err.as_mut_ptr(), err.len()) == 0 {
        return Ok(());
    }
    // The shim NUL-terminates its message; the last byte is 0 regardless.
    err[err.len() - 1] = 0;
    // SAFETY: a NUL-terminated string within the buffer.
    let msg = unsafe { CStr::from_ptr(err.as_ptr()) }.to_string_lossy().into_owned();
    Err(GlmcError::TorchContext { context: format!("at::globalContext().{call}"), source: tch::TchError::Torch(msg) })
}

fn shim_set(call: &str, f: unsafe extern "C" fn(bool, *mut c_char, usize) -> c_int, on: bool) -> Result<()> {
    // SAFETY: the shim only stores a flag and catches every C++ exception;
    // `err` is a live buffer of `len` bytes.
    shim(call, |err, len| unsafe { f(on, err, len) })
}

fn shim_get(call: &str, f: unsafe extern "C" fn(*mut bool, *mut c_char, usize) -> c_int) -> Result<bool> {
    let mut out = false;
    // SAFETY: as in shim_set; `out` is a live bool.
    shim(call, |err, len| unsafe { f(&mut out, err, len) })?;
    Ok(out)
}

/// Allows (or forbids) TF32 tensor-core math in cuBLAS matmuls and cuDNN
/// convolutions — process-global, like the Python flags. Harmless on CPU.
pub fn set_tf32(enabled: bool) -> Result<()> {
    shim_set("setAllowTF32CuBLAS", lt_glmc_set_allow_tf32_cublas, enabled)?;
    shim_set("setAllowTF32CuDNN", lt_glmc_set_allow_tf32_cudnn, enabled)
}

/// `(cuBLAS, cuDNN)` TF32 flags as libtorch sees them. libtorch throws, and
/// this returns the error, when these switches and its newer per-backend
/// `fp32_precision` settings were both used and disagree.
pub fn tf32_flags() -> Result<(bool, bool)> {
    Ok((shim_get("allowTF32CuBLAS", lt_glmc_allow_tf32_cublas)?, shim_get("allowTF32CuDNN", lt_glmc_allow_tf32_cudnn)?))
}

/// Switches cuDNN autotuning on or off (`torch.backends.cudnn.benchmark`),
/// process-global. Harmless on CPU.
pub fn set_cudnn_benchmark(on: bool) -> Result<()> {
    shim_set("setBenchmarkCuDNN", lt_glmc_set_cudnn_benchmark, on)
}

/// Whether cuDNN autotuning is on, as libtorch sees it.
pub fn cudnn_benchmark() -> Result<bool> {
    shim_get("benchmarkCuDNN", lt_glmc_cudnn_benchmark)
}

/// The training step's device settings, as recipe / command-line switches.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PrecisionConfig {
    #[serde(default)]
    pub precision: Precision,
    #[serde(default)]
    pub memory_format: MemoryFormat,
    /// cuDNN autotuning (`torch.backends.cudnn.benchmark`); fixed shapes
    /// make it pay off after the first steps.
    #[serde(default = "yes")]
    pub cudnn_benchmark: bool,
    #[serde(default)]
    pub loss_scale: LossScaleConfig,
}

fn yes() -> bool {
    true
}

impl Default for PrecisionConfig {
    fn default() -> Self {
        PrecisionConfig {
            precision: Precision::Fp32,
            memory_format: MemoryFormat::Nchw,
            cudnn_benchmark: true,
            loss_scale: LossScaleConfig::default(),
        }
    }
}

impl PrecisionConfig {
    pub fn new(precision: Precision, memory_format: MemoryFormat) -> Self {
        PrecisionConfig { precision, memory_format, ..Default::default() }
    }
    pub fn with_cudnn_benchmark(mut self, on: bool) -> Self {
        self.cudnn_benchmark = on;
        self
    }
    pub fn with_loss_scale(mut self, c: LossScaleConfig) -> Self {
        self.loss_scale = c;
        self
    }

    /// Refuses what `device` cannot do: fp16 autocast without CUDA.
    pub fn validate(&self, device: Device) -> Result<()> {
        if self.precision == Precision::Amp && !device.is_cuda() {
            return Err(GlmcError::Device {
                requested: format!("{device:?}"),
                why: "precision amp (fp16 autocast) needs a CUDA device: tch 0.24 can switch on only libtorch's \
                      CUDA autocast; use precision fp32 (or tf32, identical on CPU)"
                    .into(),
            });
        }
        self.loss_scale.validate()
    }

    /// Validates, then sets the process-global TF32 and cuDNN flags.
    pub fn apply(&self, device: Device) -> Result<()> {
        self.validate(device)?;
        set_tf32(self.precision.uses_tf32())?;
        if device.is_cuda() {
            set_cudnn_benchmark(self.cudnn_benchmark)?;
        }
        Ok(())
    }

    /// Whether the forward runs under fp16 autocast.
    pub fn autocast(&self) -> bool {
        self.precision == Precision::Amp
    }

    /// A loss scaler when the precision needs one.
    pub fn loss_scaler(&self) -> Option<LossScaler> {
        (self.precision == Precision::Amp).then(|| LossScaler::new(self.loss_scale))
    }

    /// Runs `f` (the forward pass and loss) under fp16 autocast when this
    /// config asks for it. Run `backward` outside, as PyTorch recommends.
    pub fn forward<T>(&self, f: impl FnOnce() -> T) -> T {
        if self.autocast() {
            tch::autocast(true, f)
        } else {
            f()
        }
    }
}

// ---------------------------------------------------------------------------
// Dynamic loss scaling.
// ---------------------------------------------------------------------------

/// Settings of [`LossScaler`] (PyTorch's GradScaler defaults).
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LossScaleConfig {
    #[serde(default = "d_init")]
    pub init_scale: f64,
    #[serde(default = "d_growth")]
    pub growth_factor: f64,
    #[serde(default = "d_backoff")]
    pub backoff_factor: f64,
    /// Consecutive finite steps before the scale grows.
    #[serde(default = "d_interval")]
    pub growth_interval: u64,
}

fn d_init() -> f64 {
    65536.0
}
fn d_growth() -> f64 {
    2.0
}
fn d_backoff() -> f64 {
    0.5
}
fn d_interval() -> u64 {
    2000
}

impl Default for LossScaleConfig {
    fn default() -> Self {
        LossScaleConfig { init_scale: d_init(), growth_factor: d_growth(), backoff_factor: d_backoff(), growth_interval: d_interval() }
    }
}

impl LossScaleConfig {
    pub fn validate(&self) -> Result<()> {
        let bad = |why: String| Err(GlmcError::setting("loss_scale", why));
        if !(self.init_scale > 0.0 && self.init_scale.is_finite()) {
            return bad(format!("init_scale {} must be finite and > 0", self.init_scale));
        }
        if !(self.growth_factor > 1.0 && self.growth_factor.is_finite()) {
            return bad(format!("growth_factor {} must be > 1", self.growth_factor));
        }
        if !(self.backoff_factor > 0.0 && self.backoff_factor < 1.0) {
            return bad(format!("backoff_factor {} must be in (0, 1)", self.backoff_factor));
        }
        if self.growth_interval == 0 {
            return bad("growth_interval must be ≥ 1".into());
        }
        Ok(())
    }
}

/// The scaler's state, for checkpoints (`torch.amp.GradScaler.state_dict`
/// holds the same two numbers plus our counters).
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct LossScaleState {
    pub scale: f64,
    /// Finite steps since the last growth or back-off.
    pub growth_tracker: u64,
    /// Steps skipped for inf/NaN gradients, in total.
    pub skipped: u64,
    /// Steps taken (applied + skipped), in total.
    pub steps: u64,
}

/// What [`LossScaler::step`] / [`LossScaler::update`] did.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum ScaleOutcome {
    /// Gradients were finite: the optimizer stepped (`grew` when the scale
    /// was multiplied by the growth factor after this step).
    Applied { scale: f64, grew: bool },
    /// Inf/NaN gradients: no update; the scale backed off to `scale`.
    Skipped { scale: f64 },
}

impl ScaleOutcome {
    pub fn skipped(&self) -> bool {
        matches!(self, ScaleOutcome::Skipped { .. })
    }
}

/// Dynamic loss scaling for fp16 training (see the module docs).
#[derive(Clone, Debug)]
pub struct LossScaler {
    cfg: LossScaleConfig,
    state: LossScaleState,
}

impl LossScaler {
    pub fn new(cfg: LossScaleConfig) -> Self {
        LossScaler { state: LossScaleState { scale: cfg.init_scale, growth_tracker: 0, skipped: 0, steps: 0 }, cfg }
    }

    pub fn config(&self) -> &LossScaleConfig {
        &self.cfg
    }
    pub fn scale(&self) -> f64 {
        self.state.scale
    }
    pub fn state(&self) -> LossScaleState {
        self.state
    }

    /// Restores a state saved with [`LossScaler::state`].
    pub fn set_state(&mut self, s: LossScaleState) -> Result<()> {
        if !(s.scale > 0.0 && s.scale.is_finite()) {
            return Err(GlmcError::State { what: "loss scale", why: format!("scale {} must be finite and > 0", s.scale) });
        }
        self.state = s;
        Ok(())
    }

    /// `loss · scale` (in fp32, so the product itself cannot overflow).
    pub fn scale_loss(&self, loss: &Tensor) -> Result<Tensor> {
        Ok(loss.f_to_kind(Kind::Float)?.f_mul_scalar(self.state.scale)?)
    }

    /// Divides every defined gradient of `params` by the scale, in place,
    /// and returns whether any of them held an inf or a NaN (one device
    /// synchronisation, as GradScaler's `step`).
    pub fn unscale(&self, params: &[Tensor]) -> Result<bool> {
        let Some(first) = params.iter().find(|p| p.grad().defined()) else { return Ok(false) };
        let device = first.device();
        let mut found = Tensor::f_zeros([1], (Kind::Float, device))?;
        let inv = Tensor::f_full([1], 1.0 / self.state.scale, (Kind::Float, device))?;
        for p in params {
            let mut g = p.grad();
            if !g.defined() {
                continue;
            }
            if g.kind() == Kind::Float || g.kind() == Kind::Half {
                // libtorch's fused kernel (CUDA, and CPU since 2.3).
                if g.f_internal_amp_non_finite_check_and_unscale(&mut found, &inv).is_ok() {
                    continue;
                }
            }
            // Any other dtype, or a build without the CPU kernel.
            let _ = g.f_mul_(&inv.f_to_kind(g.kind())?)?;
            let bad = g.f_isfinite()?.f_logical_not()?.f_any()?.f_to_kind(Kind::Float)?;
            found = found.f_maximum(&bad.f_view([1])?)?;
        }
        Ok(found.f_double_value(&[0])? > 0.0)
    }

    /// Advances the schedule after a step whose gradients were (not)
    /// finite: back off on overflow, grow after `growth_interval` good
    /// steps (the growth is dropped if it would overflow f64/f32 range).
    pub fn update(&mut self, found_inf: bool) -> ScaleOutcome {
        let s = &mut self.state;
        s.steps += 1;
        if found_inf {
            s.scale *= self.cfg.backoff_factor;
            s.growth_tracker = 0;
            s.skipped += 1;
            return ScaleOutcome::Skipped { scale: s.scale };
        }
        s.growth_tracker += 1;
        let mut grew = false;
        if s.growth_tracker >= self.cfg.growth_interval {
            let next = s.scale * self.cfg.growth_factor;
            if next.is_finite() && next <= f32::MAX as f64 {
                s.scale = next;
                grew = true;
            }
            s.growth_tracker = 0;
        }
        ScaleOutcome::Applied { scale: s.scale, grew }
    }

    /// One optimizer step with loss scaling: zero the gradients,
    /// back-propagate `loss · scale`, unscale, and step `opt` only if every
    /// gradient is finite; then update the scale. `params` are the
    /// optimizer's parameters (e.g. `vs.trainable_variables()`).
    pub fn step(&mut self, opt: &mut Sgd, params: &[Tensor], loss: &Tensor) -> Result<ScaleOutcome> {
        self.step_with(opt, params, loss, |scaled| Ok(scaled.f_backward()?))
    }

    /// [`LossScaler::step`] with the backward of the scaled loss done by
    /// `backward` (given `loss · scale`): data-parallel training runs it
    /// through its gradient reducer ([`crate::dist::DataParallel::backward`]),
    /// so that the gradients unscaled and checked for inf/NaN are the
    /// world's average, the same on every rank.
    pub fn step_with(
        &mut self,
        opt: &mut Sgd,
        params: &[Tensor],
        loss: &Tensor,
        backward: impl FnOnce(&Tensor) -> Result<()>,
    ) -> Result<ScaleOutcome> {
        opt.zero_grad()?;
        backward(&self.scale_loss(loss)?)?;
        let found_inf = self.unscale(params)?;
        if !found_inf {
            opt.step()?;
        }
        Ok(self.update(found_inf))
    }
}

/// Blocks until the device's queued work is done (no-op on CPU). Call it
/// before reading a clock.
pub fn synchronize(device: Device) {
    if let Device::Cuda(i) = device {
        tch::Cuda::synchronize(i as i64);
    }
}
