//! The photometric stage on the device (`loader.photometric = "device"`):
//! the colour and pixel-value operations the loader's workers recorded per
//! view ([`lt_vision::photometric::ViewParams`], in
//! [`lt_loader::batch::Batch::photometric`]), applied to the uploaded uint8
//! batch `[views, slots, C, H, W]` as batched tensor operations, giving uint8
//! again, so normalisation and everything after it are unchanged.
//!
//! **Same bytes as the CPU kernels.** Every lt-vision kernel rounds to `u8`
//! after each operation, and so does every kernel here; each one repeats its
//! CPU kernel's arithmetic in the same precision (f32 for the
//! torchvision-style kernels and PIL's blends, f64 for PIL's affine
//! resampling and autocontrast, integers for lumas, histograms and the 3×3
//! smoothing) and in the same order, one tensor operation per CPU operation,
//! so IEEE rounding gives the same result. No operation here may fuse a
//! multiply and an add (`addcmul` would, on CUDA), and scalar constants are
//! passed as the exact `f32` the CPU uses. What is left is what a CPU
//! kernel sums in an order a batched reduction cannot follow: the f64 sum
//! behind the contrast mean of the torchvision-style `Contrast` (rounded to
//! f32 afterwards, so a difference needs a sum within 1e-16 of an f32
//! rounding boundary). lt-glmc's `tests/photometric.rs` checks every op and
//! the whole pipelines against the CPU kernels.
//!
//! How the batch is processed: [`Plan::build`] compiles each view's record
//! into steps (pointwise ops with parameters known on the host become a
//! 256-entry lookup table, made by the CPU kernel itself
//! ([`lt_vision::photometric::pointwise_lut`]) and merged with the next
//! table; ops that change nothing on this view are dropped), then groups,
//! at each step position, the views that run the same kernel. All per-view
//! parameters, indices and tables travel to the device in two uploads;
//! [`Plan::run`] runs one batched kernel per group on the views of the group
//! (`index_select`, the kernel, `index_copy_`). Kernels:
//!
//! | record | kernel |
//! |---|---|
//! | brightness, invert, posterize, solarize, solarize-add (both RandAugments) | lookup table from the host |
//! | `Contrast`, RandAugment's Contrast | mean luma (f32 luma, f64 sum), per-view f32 table |
//! | `Saturation`, RandAugment's Color; `Grayscale` | f32 luma blend; rounded luma |
//! | `Blur` | separable Gaussian: reflect indices, one multiply and one add per tap in the CPU's tap order (reversed for views whose CPU path blurred before the flip) |
//! | RandAugment's Sharpness, timm's Sharpness | integer 3×3 SMOOTH sums, f32 divide, f32 blend |
//! | AutoContrast (torchvision f32, PIL f64), Equalize | per-channel tables from min/max or a histogram (`bincount`) |
//! | timm's Contrast, Color (and randncls' ColorJitter) | PIL luma in integers, f32 `ImagingBlend` |
//! | RandAugment's rotate, shear, translate | f64 output → input map, nearest, zero fill |
//! | timm's rotate, shear, translate | f64 map, PIL's bilinear or bicubic taps with edge clamping, fill `img_mean` |
//!
//! [`time_stage`] times the stage alone per batch (device synchronised
//! around each run), for the benchmarks.

use std::collections::BTreeMap;
use std::time::Instant;

use lt_vision::augment::gaussian_kernel;
use lt_vision::augment_randaugment::Op;
use lt_vision::augment_timm::{Resample, TimmOp};
use lt_vision::photometric::{pointwise_lut, PhotoOp, ViewParams};
use tch::{Device, Kind, Tensor};

use crate::error::{GlmcError, Result};

/// A batched kernel; the views of one group at one step position all run it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Kernel {
    /// A per-view lookup table made on the host.
    Lut,
    /// lt-vision's `adjust_contrast` (f32 table around the mean luma).
    Contrast,
    /// lt-vision's `adjust_saturation`.
    Saturation,
    /// lt-vision's `to_grayscale`.
    Grayscale,
    /// lt-vision's `gaussian_blur`; `reversed` sums the horizontal taps in
    /// the mirrored order (a view flipped before, whose CPU path blurred
    /// before flipping).
    Blur { reversed: bool },
    /// torchvision RandAugment's Sharpness.
    Sharpness,
    /// torchvision RandAugment's AutoContrast.
    AutoContrast,
    /// Equalize (both RandAugments).
    Equalize,
    /// PIL `ImageEnhance.Contrast`.
    PilContrast,
    /// PIL `ImageEnhance.Color`.
    PilColor,
    /// PIL `ImageEnhance.Sharpness`.
    PilSharpness,
    /// PIL `ImageOps.autocontrast`.
    PilAutoContrast,
    /// torchvision RandAugment's affine ops (nearest, zero fill).
    Nearest,
    /// PIL's affine transform, bilinear.
    Bilinear,
    /// PIL's affine transform, bicubic.
    Bicubic,
}

/// One compiled operation of one view.
#[derive(Clone, Debug)]
enum Step {
    Lut(Box<[u8; 256]>),
    /// A kernel with one f32 factor.
    Factor(Kernel, f32),
    Plain(Kernel),
    Blur {
        sigma: f32,
        reversed: bool,
    },
    /// A geometric kernel, its matrix and per-channel fill.
    Affine(Kernel, [f64; 6], [u8; 3]),
}

impl Step {
    fn kernel(&self) -> Kernel {
        match *self {
            Step::Lut(_) => Kernel::Lut,
            Step::Factor(k, _) | Step::Plain(k) | Step::Affine(k, _, _) => k,
            Step::Blur { reversed, .. } => Kernel::Blur { reversed },
        }
    }
}

/// Blur radius of lt-vision's `gaussian_kernel`: `ceil(3σ)`, at least 1.
fn blur_radius(sigma: f32) -> usize {
    gaussian_kernel(sigma).len() / 2
}

/// Compiles one view's record for a `c`-channel `w × h` view into `out`.
fn compile(p: &ViewParams, (c, h, w): (usize, usize, usize), out: &mut Vec<Step>) {
    out.clear();
    for op in p.ops() {
        let step = if let Some(lut) = pointwise_lut(op) { Some(Step::Lut(Box::new(lut))) } else { compile_op(op, p, (c, h, w)) };
        match (step, out.last_mut()) {
            // Consecutive tables merge: one gather instead of two.
            (Some(Step::Lut(b)), Some(Step::Lut(a))) => **a = a.map(|v| b[v as usize]),
            (Some(s), _) => out.push(s),
            (None, _) => {}
        }
    }
}

/// The step of an op that is not a host table; `None` when it changes
/// nothing on this view.
fn compile_op(op: &PhotoOp, p: &ViewParams, (c, h, w): (usize, usize, usize)) -> Option<Step> {
    let rgb = c == 3;
    let affine = |k: Kernel, fill: [u8; 3]| op.affine(w, h).map(|m| Step::Affine(k, m, fill));
    match *op {
        PhotoOp::Brightness(_) => None, // a table (pointwise_lut)
        PhotoOp::Contrast(f) => Some(Step::Factor(Kernel::Contrast, f)),
        PhotoOp::Saturation(f) => rgb.then_some(Step::Factor(Kernel::Saturation, f)),
        PhotoOp::Grayscale => rgb.then_some(Step::Plain(Kernel::Grayscale)),
        PhotoOp::Blur(sigma) => Some(Step::Blur { sigma, reversed: p.flip_last }),
        PhotoOp::Ra { op: ra, mag } => match ra {
            Op::Identity | Op::Brightness | Op::Posterize | Op::Solarize => None,
            Op::Color => rgb.then_some(Step::Factor(Kernel::Saturation, (1.0 + mag) as f32)),
            Op::Contrast => Some(Step::Factor(Kernel::Contrast, (1.0 + mag) as f32)),
            // torchvision's sharpness leaves views under 3×3 alone.
            Op::Sharpness => (w >= 3 && h >= 3).then_some(Step::Factor(Kernel::Sharpness, (1.0 + mag) as f32)),
            Op::AutoContrast => Some(Step::Plain(Kernel::AutoContrast)),
            Op::Equalize => Some(Step::Plain(Kernel::Equalize)),
            Op::ShearX | Op::ShearY | Op::TranslateX | Op::TranslateY | Op::Rotate => affine(Kernel::Nearest, [0; 3]),
        },
        PhotoOp::Timm { op: t, arg, resample } => match t {
            TimmOp::AutoContrast => Some(Step::Plain(Kernel::PilAutoContrast)),
            TimmOp::Equalize => Some(Step::Plain(Kernel::Equalize)),
            TimmOp::Color => rgb.then_some(Step::Factor(Kernel::PilColor, arg as f32)),
            TimmOp::Contrast => Some(Step::Factor(Kernel::PilContrast, arg as f32)),
            TimmOp::Sharpness => Some(Step::Factor(Kernel::PilSharpness, arg as f32)),
            TimmOp::Rotate | TimmOp::ShearX | TimmOp::ShearY | TimmOp::TranslateXRel | TimmOp::TranslateYRel => {
                let k = if resample == Resample::Bicubic { Kernel::Bicubic } else { Kernel::Bilinear };
                affine(k, p.fill_for(c))
            }
            TimmOp::Invert | TimmOp::PosterizeTpu | TimmOp::Solarize | TimmOp::SolarizeAdd | TimmOp::Brightness => None,
        },
    }
}

/// lt-vision's reflect padding index ("reflect", the edge not repeated).
fn reflect(i: i64, n: i64) -> i64 {
    if n == 1 {
        return 0;
    }
    let period = 2 * (n - 1);
    let m = i.rem_euclid(period);
    if m >= n {
        period - m
    } else {
        m
    }
}

/// One group: `n` views (indices at `f[idx..]`) running `kernel` at one step
/// position, with their parameters at `f[par..]` (or tables at `u[par..]`).
#[derive(Clone, Copy, Debug)]
struct Group {
    kernel: Kernel,
    n: usize,
    idx: usize,
    par: usize,
    /// Blur: the largest radius of the group.
    radius: usize,
}

/// A batch's photometric work, compiled and grouped on the host.
#[derive(Debug)]
pub struct Plan {
    /// `[N, C, H, W]`, N = views · slots.
    shape: [i64; 4],
    groups: Vec<Group>,
    /// View indices, factors, taps, matrices and reflect indices (f32 and
    /// integer values are exact in f64).
    f: Vec<f64>,
    /// Lookup tables, 256 per view of a table group.
    u: Vec<u8>,
}

impl Plan {
    /// Compiles `params` (`[view][slot]`, one per image of the batch) for
    /// images of `[C, H, W]`.
    pub fn build(params: &[ViewParams], [c, h, w]: [usize; 3]) -> Plan {
        let mut progs: Vec<Vec<Step>> = vec![Vec::new(); params.len()];
        for (p, prog) in params.iter().zip(progs.iter_mut()) {
            compile(p, (c, h, w), prog);
        }
        let depth = progs.iter().map(Vec::len).max().unwrap_or(0);
        let mut plan =
            Plan { shape: [params.len() as i64, c as i64, h as i64, w as i64], groups: Vec::new(), f: Vec::new(), u: Vec::new() };
        for k in 0..depth {
            let mut by: BTreeMap<Kernel, Vec<usize>> = BTreeMap::new();
            for (i, prog) in progs.iter().enumerate() {
                if let Some(s) = prog.get(k) {
                    by.entry(s.kernel()).or_default().push(i);
                }
            }
            for (kernel, views) in by {
                let steps: Vec<&Step> = views.iter().map(|&i| &progs[i][k]).collect();
                plan.push_group(kernel, &views, &steps, (h, w));
            }
        }
        plan
    }

    fn push_group(&mut self, kernel: Kernel, views: &[usize], steps: &[&Step], (h, w): (usize, usize)) {
        let idx = self.f.len();
        self.f.extend(views.iter().map(|&i| i as f64));
        let mut g = Group { kernel, n: views.len(), idx, par: self.f.len(), radius: 0 };
        match kernel {
            Kernel::Lut => {
                g.par = self.u.len();
                for s in steps {
                    if let Step::Lut(t) = s {
                        self.u.extend_from_slice(&t[..]);
                    }
                }
            }
            Kernel::Blur { .. } => {
                let sigmas: Vec<f32> = steps.iter().map(|s| if let Step::Blur { sigma, .. } = s { *sigma } else { 1.0 }).collect();
                let r = sigmas.iter().map(|&s| blur_radius(s)).max().unwrap_or(1);
                g.radius = r;
                // Each view's taps, centred in 2R + 1 (zeros outside its own
                // radius add exactly nothing).
                for &s in &sigmas {
                    let k = gaussian_kernel(s);
                    let pad = r - k.len() / 2;
                    self.f.extend(std::iter::repeat_n(0.0, pad));
                    self.f.extend(k.iter().map(|&v| v as f64));
                    self.f.extend(std::iter::repeat_n(0.0, pad));
                }
                let ri = r as i64;
                self.f.extend((0..w as i64 + 2 * ri).map(|j| reflect(j - ri, w as i64) as f64));
                self.f.extend((0..h as i64 + 2 * ri).map(|j| reflect(j - ri, h as i64) as f64));
            }
            Kernel::Nearest | Kernel::Bilinear | Kernel::Bicubic => {
                for s in steps {
                    if let Step::Affine(_, m, fill) = s {
                        self.f.extend_from_slice(m);
                        self.f.extend(fill.iter().map(|&v| v as f64));
                    }
                }
            }
            _ => {
                for s in steps {
                    let f = if let Step::Factor(_, f) = s { *f } else { 1.0 };
                    // The CPU kernels' own `1.0 - f`, in f32.
                    self.f.extend([f as f64, (1.0 - f) as f64]);
                }
            }
        }
        self.groups.push(g);
    }

    /// Batched kernel launches this plan makes (groups).
    pub fn groups(&self) -> usize {
        self.groups.len()
    }

    /// The kernel of each group, in the order they run.
    pub fn kernels(&self) -> Vec<Kernel> {
        self.groups.iter().map(|g| g.kernel).collect()
    }

    /// Runs the plan on uint8 images `[views, slots, C, H, W]` (or
    /// `[N, C, H, W]`) on any device; returns a new uint8 tensor of the same
    /// shape (the input itself, shared, when there is nothing to do).
    pub fn run(&self, x: &Tensor) -> Result<Tensor> {
        let size = x.size();
        let [n, c, h, w] = self.shape;
        if x.kind() != Kind::Uint8 || size.len() < 4 || size.iter().product::<i64>() != n * c * h * w || size[size.len() - 3..] != [c, h, w]
        {
            return Err(GlmcError::Shape {
                what: "photometric batch",
                got: size,
                expected: format!("uint8 [.., {c}, {h}, {w}] of {n} images"),
            });
        }
        if self.groups.is_empty() {
            return Ok(x.shallow_clone());
        }
        let dev = x.device();
        let f = Tensor::f_from_slice(&self.f)?.f_to_device(dev)?;
        let u = if self.u.is_empty() { None } else { Some(Tensor::f_from_slice(&self.u)?.f_to_device(dev)?) };
        let mut y = x.f_reshape([n, c, h, w])?.f_detach_copy()?;
        for g in &self.groups {
            let whole = g.n as i64 == n; // then the views are 0..n in order
            let idx = f.f_narrow(0, g.idx as i64, g.n as i64)?.f_to_kind(Kind::Int64)?;
            let sub = if whole { y.shallow_clone() } else { y.f_index_select(0, &idx)? };
            let k = Kern { g, f: &f, u: u.as_ref(), shape: [g.n as i64, c, h, w] };
            let out = k.run(&sub)?;
            if whole {
                y = out;
            } else {
                let _ = y.f_index_copy_(0, &idx, &out)?;
            }
        }
        Ok(y.f_view(size.as_slice())?)
    }
}

/// Applies the records `params` (`[view][slot]`) to the uint8 batch `x`
/// (`[views, slots, C, H, W]`, on its device): [`Plan::build`] then
/// [`Plan::run`]. Empty `params` (a cpu-mode batch) returns `x` itself.
pub fn apply(x: &Tensor, params: &[ViewParams]) -> Result<Tensor> {
    if params.is_empty() {
        return Ok(x.shallow_clone());
    }
    let size = x.size();
    if size.len() < 4 {
        return Err(GlmcError::Shape { what: "photometric batch", got: size, expected: "uint8 [views, slots, C, H, W]".into() });
    }
    let d = size.len();
    let chw = [size[d - 3] as usize, size[d - 2] as usize, size[d - 1] as usize];
    Plan::build(params, chw).run(x)
}

/// What [`time_stage`] measured, in seconds per batch.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct StageTiming {
    /// Host time building each [`Plan`].
    pub plan_s: Vec<f64>,
    /// Device time of each [`Plan::run`] (synchronised before and after on CUDA).
    pub run_s: Vec<f64>,
    /// Kernel groups of the plan.
    pub groups: usize,
}

impl StageTiming {
    /// Median of `plan_s + run_s`.
    pub fn median_s(&self) -> f64 {
        let mut t: Vec<f64> = self.plan_s.iter().zip(&self.run_s).map(|(a, b)| a + b).collect();
        t.sort_by(f64::total_cmp);
        t.get(t.len() / 2).copied().unwrap_or(0.0)
    }
}

fn sync(d: Device) {
    if let Device::Cuda(i) = d {
        tch::Cuda::synchronize(i as i64);
    }
}

/// Times the photometric stage alone on one batch `x` with records
/// `params`: `warmup` untimed runs, then `reps` timed ones, each building
/// the plan on the host and running it with the device synchronised before
/// and after (CUDA).
pub fn time_stage(x: &Tensor, params: &[ViewParams], warmup: usize, reps: usize) -> Result<StageTiming> {
    let d = x.device();
    let size = x.size();
    if size.len() < 4 {
        return Err(GlmcError::Shape { what: "photometric batch", got: size, expected: "uint8 [views, slots, C, H, W]".into() });
    }
    let l = size.len();
    let chw = [size[l - 3] as usize, size[l - 2] as usize, size[l - 1] as usize];
    let mut out = StageTiming::default();
    for i in 0..warmup + reps {
        sync(d);
        let t0 = Instant::now();
        let plan = Plan::build(params, chw);
        let t1 = Instant::now();
        let y = plan.run(x)?;
        sync(d);
        let t2 = Instant::now();
        drop(y);
        out.groups = plan.groups();
        if i >= warmup {
            out.plan_s.push((t1 - t0).as_secs_f64());
            out.run_s.push((t2 - t1).as_secs_f64());
        }
    }
    Ok(out)
}

/// A group's kernel with its parameters.
struct Kern<'a> {
    g: &'a Group,
    f: &'a Tensor,
    u: Option<&'a Tensor>,
    /// `[n, C, H, W]` of the group.
    shape: [i64; 4],
}

/// `(v.clamp(0, 255) + 0.5) as u8`: lt-vision's `clamp_u8`, round half up.
fn round_u8(v: &Tensor) -> Result<Tensor> {
    Ok(v.f_clamp(0.0, 255.0)?.f_add_scalar(0.5)?.f_floor()?.f_to_kind(Kind::Uint8)?)
}

/// `v as u8` of a float: clamped, truncated (PIL's `(UINT8)` conversions).
fn trunc_u8(v: &Tensor) -> Result<Tensor> {
    Ok(v.f_clamp(0.0, 255.0)?.f_trunc()?.f_to_kind(Kind::Uint8)?)
}

/// lt-vision's torchvision luma in f32: `0.2989·r + 0.587·g + 0.114·b`,
/// left to right, `[n, 1, H, W]` from f32 `[n, 3, H, W]`.
fn tv_luma(xf: &Tensor) -> Result<Tensor> {
    let ch = |i: i64, k: f32| -> Result<Tensor> { Ok(xf.f_narrow(1, i, 1)?.f_mul_scalar(k as f64)?) };
    Ok(ch(0, 0.2989)?.f_add(&ch(1, 0.587)?)?.f_add(&ch(2, 0.114)?)?)
}

/// PIL's `L` conversion in integers, `[n, 1, H, W]` int64 from int64 `[n, 3, H, W]`.
fn pil_luma(xi: &Tensor) -> Result<Tensor> {
    let ch = |i: i64, k: i64| -> Result<Tensor> { Ok(xi.f_narrow(1, i, 1)?.f_mul_scalar(k)?) };
    Ok(ch(0, 19595)?.f_add(&ch(1, 38470)?)?.f_add(&ch(2, 7471)?)?.f_add_scalar(0x8000)?.f_div_scalar_mode(65536, "floor")?)
}

/// PIL `ImagingBlend`: `in1 + α·(in2 − in1)` in f32, truncated to u8.
fn pil_blend(in1: &Tensor, in2: &Tensor, alpha: &Tensor) -> Result<Tensor> {
    trunc_u8(&in1.f_add(&alpha.f_mul(&in2.f_sub(in1)?)?)?)
}

/// lt-vision's `smooth3x3` (PIL `ImageFilter.SMOOTH`) as f32 holding its
/// u8 values: integer sums on the interior, the border copied.
fn smooth3x3(x: &Tensor) -> Result<Tensor> {
    let (h, w) = (x.size()[2], x.size()[3]);
    let out = x.f_to_kind(Kind::Float)?;
    if h < 3 || w < 3 {
        return Ok(out);
    }
    let xi = x.f_to_kind(Kind::Int)?;
    let at = |dy: i64, dx: i64| -> Result<Tensor> { Ok(xi.f_narrow(2, dy, h - 2)?.f_narrow(3, dx, w - 2)?) };
    let mut s = at(1, 1)?.f_mul_scalar(4)?;
    for dy in 0..3 {
        for dx in 0..3 {
            s = s.f_add(&at(dy, dx)?)?;
        }
    }
    // ((s as f32 / 13.0 + 0.5) as u32).min(255)
    let inner = s.f_to_kind(Kind::Float)?.f_div_scalar(13.0)?.f_add_scalar(0.5)?.f_floor()?.f_clamp_max(255.0)?;
    out.f_narrow(2, 1, h - 2)?.f_narrow(3, 1, w - 2)?.f_copy_(&inner)?;
    Ok(out)
}

/// Applies per-row tables `lut` (`[rows, 256]` uint8) to `x` viewed as `[rows, -1]`.
fn gather_lut(x: &Tensor, lut: &Tensor, rows: i64) -> Result<Tensor> {
    let xi = x.f_reshape([rows, -1])?.f_to_kind(Kind::Int64)?;
    Ok(lut.f_gather(1, &xi, false)?.f_view(x.size().as_slice())?)
}

impl Kern<'_> {
    /// `width` parameters per view from the group's parameter block, `[n, width]` f64.
    fn params(&self, width: i64) -> Result<Tensor> {
        let n = self.shape[0];
        Ok(self.f.f_narrow(0, self.g.par as i64, n * width)?.f_view([n, width])?)
    }

    /// The f32 factor `f` and `1 − f` of each view, `[n, 1, 1, 1]` each.
    fn factors(&self) -> Result<(Tensor, Tensor)> {
        let p = self.params(2)?.f_to_kind(Kind::Float)?;
        let n = self.shape[0];
        Ok((p.f_narrow(1, 0, 1)?.f_view([n, 1, 1, 1])?, p.f_narrow(1, 1, 1)?.f_view([n, 1, 1, 1])?))
    }

    fn run(&self, x: &Tensor) -> Result<Tensor> {
        let [n, c, h, w] = self.shape;
        let d = x.device();
        match self.g.kernel {
            Kernel::Lut => {
                let u = self.u.ok_or_else(|| GlmcError::setting("photometric", "a table group without tables"))?;
                let lut = u.f_narrow(0, self.g.par as i64, n * 256)?.f_view([n, 256])?;
                gather_lut(x, &lut, n)
            }
            Kernel::Contrast => {
                let (f, omf) = self.factors()?;
                let xf = x.f_to_kind(Kind::Float)?;
                // The mean as the CPU sums it: f32 lumas (or values) summed
                // in f64, divided by the pixel count, then f32.
                let vals = if c == 3 { tv_luma(&xf)? } else { xf.shallow_clone() };
                let count = if c == 3 { h * w } else { c * h * w };
                let mean = vals.f_to_kind(Kind::Double)?.f_sum_dim_intlist([1i64, 2, 3].as_slice(), false, Kind::Double)?;
                let mean = mean.f_div_scalar(count.max(1) as f64)?.f_to_kind(Kind::Float)?.f_view([n, 1])?;
                // blend_lut: clamp_u8(f·v + (1 − f)·mean) for v in 0..=255.
                let ramp = Tensor::f_arange(256, (Kind::Float, d))?.f_view([1, 256])?;
                let lut = f.f_view([n, 1])?.f_mul(&ramp)?.f_add(&omf.f_view([n, 1])?.f_mul(&mean)?)?;
                gather_lut(x, &round_u8(&lut)?, n)
            }
            Kernel::Saturation => {
                let (f, omf) = self.factors()?;
                let xf = x.f_to_kind(Kind::Float)?;
                let g = omf.f_mul(&tv_luma(&xf)?)?;
                round_u8(&f.f_mul(&xf)?.f_add(&g)?)
            }
            Kernel::Grayscale => Ok(round_u8(&tv_luma(&x.f_to_kind(Kind::Float)?)?)?.f_expand([n, c, h, w], false)?.f_contiguous()?),
            Kernel::Blur { reversed } => self.blur(x, reversed),
            Kernel::Sharpness => {
                let (f, omf) = self.factors()?;
                let smooth = smooth3x3(x)?;
                let v = f.f_mul(&x.f_to_kind(Kind::Float)?)?.f_add(&omf.f_mul(&smooth)?)?;
                round_u8(&v)
            }
            Kernel::PilSharpness => {
                let (f, _) = self.factors()?;
                pil_blend(&smooth3x3(x)?, &x.f_to_kind(Kind::Float)?, &f)
            }
            Kernel::PilContrast => {
                let (f, _) = self.factors()?;
                let xi = x.f_to_kind(Kind::Int64)?;
                let (vals, count) = if c == 3 { (pil_luma(&xi)?, h * w) } else { (xi, c * h * w) };
                // int(sum / count + 0.5), in f64.
                let sum = vals.f_sum_dim_intlist([1i64, 2, 3].as_slice(), false, Kind::Int64)?.f_to_kind(Kind::Double)?;
                let mean = sum.f_div_scalar(count.max(1) as f64)?.f_add_scalar(0.5)?.f_floor()?.f_clamp_max(255.0)?;
                let mean = mean.f_to_kind(Kind::Float)?.f_view([n, 1])?;
                let ramp = Tensor::f_arange(256, (Kind::Float, d))?.f_view([1, 256])?;
                let lut = pil_blend(&mean, &ramp, &f.f_view([n, 1])?)?;
                gather_lut(x, &lut, n)
            }
            Kernel::PilColor => {
                let (f, _) = self.factors()?;
                let l = pil_luma(&x.f_to_kind(Kind::Int64)?)?.f_to_kind(Kind::Float)?;
                pil_blend(&l, &x.f_to_kind(Kind::Float)?, &f)
            }
            Kernel::AutoContrast | Kernel::PilAutoContrast => self.autocontrast(x),
            Kernel::Equalize => self.equalize(x),
            Kernel::Nearest | Kernel::Bilinear | Kernel::Bicubic => self.affine(x),
        }
    }

    /// Separable blur: horizontal taps into an f32 image (unrounded), then
    /// vertical, each tap one multiply and one add as the CPU kernel does.
    fn blur(&self, x: &Tensor, reversed: bool) -> Result<Tensor> {
        let [n, _c, h, w] = self.shape;
        let r = self.g.radius as i64;
        let k = 2 * r + 1;
        let taps = self.params(k)?.f_to_kind(Kind::Float)?;
        let base = self.g.par as i64 + n * k;
        let cols = self.f.f_narrow(0, base, w + 2 * r)?.f_to_kind(Kind::Int64)?;
        let rows = self.f.f_narrow(0, base + w + 2 * r, h + 2 * r)?.f_to_kind(Kind::Int64)?;
        let tap = |t: i64| -> Result<Tensor> { Ok(taps.f_narrow(1, t, 1)?.f_view([n, 1, 1, 1])?) };
        let xf = x.f_to_kind(Kind::Float)?;
        let padded = xf.f_index_select(3, &cols)?;
        let mut acc = xf.f_zeros_like()?;
        // A view flipped before its CPU blur sums its row taps mirrored:
        // tap t of the CPU's order lands at padded offset 2R − t here.
        let order: Vec<i64> = if reversed { (0..k).rev().collect() } else { (0..k).collect() };
        for t in order {
            acc = acc.f_add(&tap(t)?.f_mul(&padded.f_narrow(3, t, w)?)?)?;
        }
        let padded = acc.f_index_select(2, &rows)?;
        let mut acc = xf.f_zeros_like()?;
        for t in 0..k {
            acc = acc.f_add(&tap(t)?.f_mul(&padded.f_narrow(2, t, h)?)?)?;
        }
        // (a + 0.5).clamp(0.0, 255.0) as u8
        Ok(acc.f_add_scalar(0.5)?.f_clamp(0.0, 255.0)?.f_floor()?.f_to_kind(Kind::Uint8)?)
    }

    /// Per-channel autocontrast tables: torchvision's (f32, `hi == lo` left
    /// alone) or PIL's (f64 scale and offset, truncated, `hi <= lo` alone).
    fn autocontrast(&self, x: &Tensor) -> Result<Tensor> {
        let [n, c, _, _] = self.shape;
        let rows = n * c;
        let d = x.device();
        let xr = x.f_reshape([rows, -1])?;
        let pil = self.g.kernel == Kernel::PilAutoContrast;
        let kind = if pil { Kind::Double } else { Kind::Float };
        let lo = xr.f_amin([1i64].as_slice(), true)?.f_to_kind(kind)?;
        let hi = xr.f_amax([1i64].as_slice(), true)?.f_to_kind(kind)?;
        let ramp = Tensor::f_arange(256, (kind, d))?.f_view([1, 256])?;
        let span = hi.f_sub(&lo)?;
        let flat = span.f_le(0.0)?;
        // 255 / (hi − lo), one division as on the CPU (a flat channel's
        // row is replaced below).
        let scale = span.f_zeros_like()?.f_add_scalar(255.0)?.f_div(&span.f_clamp_min(1.0)?)?;
        let v = if pil {
            // int(i·scale + offset), offset = −lo·scale
            let offset = lo.f_neg()?.f_mul(&scale)?;
            ramp.f_mul(&scale)?.f_add(&offset)?.f_trunc()?
        } else {
            // ((i − lo) as f32 · scale)
            ramp.f_sub(&lo)?.f_mul(&scale)?
        };
        let v = v.f_where_self(&flat.f_logical_not()?, &ramp.f_expand([rows, 256], false)?)?;
        gather_lut(x, &trunc_u8(&v)?, rows)
    }

    /// Per-channel equalisation (`_equalize_single_image` = PIL's), in integers.
    fn equalize(&self, x: &Tensor) -> Result<Tensor> {
        let [n, c, h, w] = self.shape;
        let rows = n * c;
        let d = x.device();
        let xi = x.f_reshape([rows, h * w])?.f_to_kind(Kind::Int64)?;
        let base = Tensor::f_arange(rows, (Kind::Int64, d))?.f_mul_scalar(256)?.f_view([rows, 1])?;
        let hist = xi.f_add(&base)?.f_flatten(0, -1)?.f_bincount::<Tensor>(None, rows * 256)?.f_view([rows, 256])?;
        let ramp = Tensor::f_arange(256, (Kind::Int64, d))?.f_view([1, 256])?;
        // The count of the last non-empty bin.
        let last_bin = hist.f_gt(0)?.f_mul(&ramp)?.f_amax([1i64].as_slice(), true)?;
        let last = hist.f_gather(1, &last_bin, false)?;
        let step = last.f_neg()?.f_add_scalar(h * w)?.f_div_scalar_mode(255, "floor")?;
        let cum_before = hist.f_cumsum(1, Kind::Int64)?.f_sub(&hist)?;
        let lut =
            cum_before.f_add(&step.f_div_scalar_mode(2, "floor")?)?.f_div_tensor_mode(&step.f_clamp_min(1)?, "floor")?.f_clamp_max(255)?;
        let lut = lut.f_where_self(&step.f_gt(0)?, &ramp.f_expand([rows, 256], false)?)?.f_to_kind(Kind::Uint8)?;
        gather_lut(x, &lut, rows)
    }

    /// The affine kernels: output pixel centre `(x + ½, y + ½)` maps to
    /// `(m0·x + m1·y + m2, m3·x + m4·y + m5)` in f64, then nearest with zero
    /// fill (torchvision RandAugment) or PIL's bilinear / bicubic with
    /// edge-clamped taps and the view's fill outside the image.
    fn affine(&self, x: &Tensor) -> Result<Tensor> {
        let [n, c, h, w] = self.shape;
        let d = x.device();
        let p = self.params(9)?;
        let col = |j: i64| -> Result<Tensor> { Ok(p.f_narrow(1, j, 1)?.f_view([n, 1, 1])?) };
        let xs = Tensor::f_arange(w, (Kind::Double, d))?.f_add_scalar(0.5)?.f_view([1, 1, w])?;
        let ys = Tensor::f_arange(h, (Kind::Double, d))?.f_add_scalar(0.5)?.f_view([1, h, 1])?;
        let map = |a: i64| -> Result<Tensor> { Ok(col(a)?.f_mul(&xs)?.f_add(&col(a + 1)?.f_mul(&ys)?)?.f_add(&col(a + 2)?)?) };
        let (sx, sy) = (map(0)?, map(3)?);
        let flat = x.f_reshape([n, c, h * w])?;
        // Pixels at (rows, cols) (int64 [n, H, W], clamped) of every channel.
        let at = |src: &Tensor, rows: &Tensor, cols: &Tensor| -> Result<Tensor> {
            let lin = rows.f_mul_scalar(w)?.f_add(cols)?.f_view([n, 1, h * w])?.f_expand([n, c, h * w], false)?;
            Ok(src.f_gather(2, &lin, false)?.f_view([n, c, h, w])?)
        };
        let clip = |t: &Tensor, hi: i64| -> Result<Tensor> { Ok(t.f_clamp(0, hi - 1)?) };
        if self.g.kernel == Kernel::Nearest {
            // `sx >= 0 && sy >= 0 && (sx as usize) < w && (sy as usize) < h`
            let (tx, ty) = (sx.f_trunc()?, sy.f_trunc()?);
            let inside =
                sx.f_ge(0.0)?.f_logical_and(&sy.f_ge(0.0)?)?.f_logical_and(&tx.f_lt(w as f64)?)?.f_logical_and(&ty.f_lt(h as f64)?)?;
            let xi = clip(&tx.f_clamp(-1.0, w as f64)?.f_to_kind(Kind::Int64)?, w)?;
            let yi = clip(&ty.f_clamp(-1.0, h as f64)?.f_to_kind(Kind::Int64)?, h)?;
            let v = at(&flat, &yi, &xi)?;
            return Ok(v.f_where_self(&inside.f_unsqueeze(1)?, &v.f_zeros_like()?)?);
        }
        // PIL: `xin < 0.0 || xin >= xsize || …` keeps the fill.
        let inside = sx.f_ge(0.0)?.f_logical_and(&sx.f_lt(w as f64)?)?.f_logical_and(&sy.f_ge(0.0)?)?.f_logical_and(&sy.f_lt(h as f64)?)?;
        // Outside points can lie anywhere; keep their (unused) indices sane.
        let (sx, sy) = (sx.f_clamp(-4.0, w as f64 + 4.0)?.f_sub_scalar(0.5)?, sy.f_clamp(-4.0, h as f64 + 4.0)?.f_sub_scalar(0.5)?);
        let (xf, yf) = (sx.f_floor()?, sy.f_floor()?);
        let dx = sx.f_sub(&xf)?.f_unsqueeze(1)?;
        let dy = sy.f_sub(&yf)?.f_unsqueeze(1)?;
        let (xi, yi) = (xf.f_to_kind(Kind::Int64)?, yf.f_to_kind(Kind::Int64)?);
        let src = flat.f_to_kind(Kind::Double)?;
        let value = if self.g.kernel == Kernel::Bilinear {
            let (x0, x1) = (clip(&xi, w)?, clip(&xi.f_add_scalar(1)?, w)?);
            let (r0, r1) = (clip(&yi, h)?, clip(&yi.f_add_scalar(1)?, h)?);
            // BILINEAR(v, a, b, d): a + (b - a) * d; a missing next row is
            // the clamped (same) row, which gives the same value.
            let lerp = |a: &Tensor, b: &Tensor, t: &Tensor| -> Result<Tensor> { Ok(a.f_add(&b.f_sub(a)?.f_mul(t)?)?) };
            let v1 = lerp(&at(&src, &r0, &x0)?, &at(&src, &r0, &x1)?, &dx)?;
            let v2 = lerp(&at(&src, &r1, &x0)?, &at(&src, &r1, &x1)?, &dx)?;
            lerp(&v1, &v2, &dy)?
        } else {
            let xs: Vec<Tensor> = (0..4).map(|k| clip(&xi.f_add_scalar(k - 1)?, w)).collect::<Result<_>>()?;
            let horiz = |row: &Tensor| -> Result<Tensor> {
                let t: Vec<Tensor> = xs.iter().map(|xk| at(&src, row, xk)).collect::<Result<_>>()?;
                bicubic(&t[0], &t[1], &t[2], &t[3], &dx)
            };
            let v: Vec<Tensor> = (0..4).map(|k| horiz(&clip(&yi.f_add_scalar(k - 1)?, h)?)).collect::<Result<_>>()?;
            bicubic(&v[0], &v[1], &v[2], &v[3], &dy)?
        };
        let fill = p.f_narrow(1, 6, c)?.f_view([n, c, 1, 1])?.f_to_kind(Kind::Uint8)?.f_expand([n, c, h, w], false)?;
        Ok(trunc_u8(&value)?.f_where_self(&inside.f_unsqueeze(1)?, &fill)?)
    }
}

/// PIL Geometry.c `BICUBIC(v, v1, v2, v3, v4, d)` (a = −1), in its
/// operation order: `p1 + d·(p2 + d·(p3 + d·p4))`.
fn bicubic(v1: &Tensor, v2: &Tensor, v3: &Tensor, v4: &Tensor, d: &Tensor) -> Result<Tensor> {
    let p2 = v3.f_sub(v1)?; // -v1 + v3
    let p3 = v1.f_sub(v2)?.f_mul_scalar(2.0)?.f_add(v3)?.f_sub(v4)?; // 2(v1 − v2) + v3 − v4
    let p4 = v2.f_sub(v1)?.f_sub(v3)?.f_add(v4)?; // -v1 + v2 − v3 + v4
    Ok(v2.f_add(&d.f_mul(&p2.f_add(&d.f_mul(&p3.f_add(&d.f_mul(&p4)?)?)?)?)?)?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reflect_matches_lt_vision() {
        // lt-vision pads with reflect (no edge repeat): n = 4 → 3 2 1 | 0 1 2 3 | 2 1 0.
        let got: Vec<i64> = (-3..7).map(|i| reflect(i, 4)).collect();
        assert_eq!(got, vec![3, 2, 1, 0, 1, 2, 3, 2, 1, 0]);
        assert_eq!(reflect(-5, 1), 0);
    }

    #[test]
    fn tables_merge_and_no_ops_drop() {
        let p = ViewParams::from_ops(&[
            PhotoOp::Brightness(0.5),
            PhotoOp::Ra { op: Op::Posterize, mag: 4.0 },
            PhotoOp::Grayscale,
            PhotoOp::Saturation(1.3),
            PhotoOp::Timm { op: TimmOp::Rotate, arg: 360.0, resample: Resample::Bilinear },
        ])
        .unwrap();
        let mut steps = Vec::new();
        compile(&p, (1, 8, 8), &mut steps);
        assert_eq!(steps.len(), 1, "{steps:?}"); // one merged table; gray ops and a 360° turn do nothing
        let Step::Lut(t) = &steps[0] else { panic!() };
        assert_eq!(t[200], 96); // 200 · 0.5 = 100, then & 0xf0
        compile(&p, (3, 8, 8), &mut steps);
        assert_eq!(steps.iter().map(Step::kernel).collect::<Vec<_>>(), vec![Kernel::Lut, Kernel::Grayscale, Kernel::Saturation]);
    }
}
