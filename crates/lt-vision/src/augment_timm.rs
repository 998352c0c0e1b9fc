//! timm's RandAugment as the GLMC authors ran it (`rand-n2-m10-mstd0.5`),
//! with PIL-exact kernels.
//!
//! Reference: `GLMC-2023/utils/randaugment.py` in the authors' repository, a
//! copy (via PaCo) of Ross Wightman's early timm `auto_augment.py`. What is
//! reproduced, operation by operation:
//!
//! * the op list is `_RAND_TRANSFORMS` (15 ops, [`RAND_TRANSFORMS`]; the
//!   `rand` config uses it when `use_cmc` is false, as in GLMC);
//! * `RandAugment.__call__` picks `n` ops with `np.random.choice(ops, n,
//!   replace=True)` (uniform, with replacement: no choice weights);
//! * each picked op runs with `prob = 0.5` (`if random.random() > prob:
//!   skip`), its magnitude is `random.gauss(m, mstd)` clipped with
//!   `min(10, max(0, ·))`, and the level functions of `LEVEL_TO_ARG` map it
//!   to an argument ([`level_to_arg`]), negated with probability ½ for the
//!   signed ops (`_randomly_negate`: `-v if random.random() > 0.5`);
//! * geometric ops (rotate, shear, relative translate) go through PIL's
//!   `Image.transform(AFFINE)` / `Image.rotate` with `fillcolor = img_mean`
//!   and a resampling filter drawn per application from (bilinear, bicubic)
//!   (`_interpolation` on `_RANDOM_INTERPOLATION`); [`pil_affine`] is PIL's
//!   `ImagingGenericTransform` with its `bilinear_filter32RGB` /
//!   `bicubic_filter32RGB`, in the same float operation order;
//! * enhance ops are `ImageEnhance.{Color, Contrast, Brightness, Sharpness}`
//!   = `Image.blend(degenerate, image, factor)` in single precision with
//!   truncation ([`pil_blend`]); the same kernels implement torchvision's
//!   `ColorJitter` on PIL images ([`color_jitter_pil`]);
//! * `ImageOps.autocontrast / equalize / invert / solarize / posterize` and
//!   timm's `solarize_add` LUTs.
//!
//! `translate_const` (100 in GLMC's `ra_params`) only feeds the absolute
//! `TranslateX/Y` ops, which `_RAND_TRANSFORMS` does not contain: the
//! relative ones shift by up to `0.45 · size` (100.8 px at 224).
//!
//! Two things differ by construction: random numbers come from
//! [`lt_core::rng::Rng`] (so views are a function of `(seed, epoch, step,
//! slot)`, not of Python's global generators), and `PosterizeTpu` at a level
//! below 2.5 keeps 0 bits (all black), as the Pillow of 2023 did; Pillow ≥ 11
//! raises instead. With `m = 10, mstd = 0.5` such a level is 15 standard
//! deviations away.
//!
//! Works on interleaved HWC `u8`, 1 or 3 channels (the authors' pipeline is
//! RGB only; on gray images the fill is the PIL luma of `img_mean` and
//! `Color` is the identity, as `ImageEnhance.Color` is on mode `L`).

use crate::augment::JitterParams;
use crate::augment_randaugment::equalize;
use crate::hwc::HwcMut;
use lt_core::rng::Rng;
use serde::{Deserialize, Serialize};

/// timm's `_MAX_LEVEL`.
pub const MAX_LEVEL: f64 = 10.0;

/// The ops of timm's RandAugment that the `rand` config can pick.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum TimmOp {
    AutoContrast,
    Equalize,
    Invert,
    Rotate,
    PosterizeTpu,
    Solarize,
    SolarizeAdd,
    Color,
    Contrast,
    Brightness,
    Sharpness,
    ShearX,
    ShearY,
    TranslateXRel,
    TranslateYRel,
}

/// timm's `_RAND_TRANSFORMS`, in its order (ops are drawn by index).
pub const RAND_TRANSFORMS: [TimmOp; 15] = [
    TimmOp::AutoContrast,
    TimmOp::Equalize,
    TimmOp::Invert,
    TimmOp::Rotate,
    TimmOp::PosterizeTpu,
    TimmOp::Solarize,
    TimmOp::SolarizeAdd,
    TimmOp::Color,
    TimmOp::Contrast,
    TimmOp::Brightness,
    TimmOp::Sharpness,
    TimmOp::ShearX,
    TimmOp::ShearY,
    TimmOp::TranslateXRel,
    TimmOp::TranslateYRel,
];

impl TimmOp {
    /// The op's name in timm (`NAME_TO_OP`).
    pub fn name(self) -> &'static str {
        match self {
            TimmOp::AutoContrast => "AutoContrast",
            TimmOp::Equalize => "Equalize",
            TimmOp::Invert => "Invert",
            TimmOp::Rotate => "Rotate",
            TimmOp::PosterizeTpu => "PosterizeTpu",
            TimmOp::Solarize => "Solarize",
            TimmOp::SolarizeAdd => "SolarizeAdd",
            TimmOp::Color => "Color",
            TimmOp::Contrast => "Contrast",
            TimmOp::Brightness => "Brightness",
            TimmOp::Sharpness => "Sharpness",
            TimmOp::ShearX => "ShearX",
            TimmOp::ShearY => "ShearY",
            TimmOp::TranslateXRel => "TranslateXRel",
            TimmOp::TranslateYRel => "TranslateYRel",
        }
    }

    /// The op by its timm name.
    pub fn from_name(name: &str) -> Option<TimmOp> {
        RAND_TRANSFORMS.iter().copied().find(|o| o.name() == name)
    }

    /// Resampled through PIL's affine transform (draws an interpolation).
    pub fn is_geometric(self) -> bool {
        matches!(self, TimmOp::Rotate | TimmOp::ShearX | TimmOp::ShearY | TimmOp::TranslateXRel | TimmOp::TranslateYRel)
    }

    /// Its level function calls `_randomly_negate`.
    pub fn is_signed(self) -> bool {
        self.is_geometric()
    }
}

/// timm's `LEVEL_TO_ARG[op](level)` before `_randomly_negate`; ops without
/// an argument give 0. Integer-valued results (`int(...)` in Python,
/// truncation) are returned as whole `f64`s. Relative translations are the
/// fraction of the image side (`pixels = pct · size` in the op).
pub fn level_to_arg(op: TimmOp, level: f64) -> f64 {
    let l = level / MAX_LEVEL;
    match op {
        TimmOp::AutoContrast | TimmOp::Equalize | TimmOp::Invert => 0.0,
        // _rotate_level_to_arg: range [-30, 30]
        TimmOp::Rotate => l * 30.0,
        // _posterize_tpu_level_to_arg: int((level / _MAX_LEVEL) * 4)
        TimmOp::PosterizeTpu => (l * 4.0).trunc(),
        // _solarize_level_to_arg: int((level / _MAX_LEVEL) * 256)
        TimmOp::Solarize => (l * 256.0).trunc(),
        // _solarize_add_level_to_arg: int((level / _MAX_LEVEL) * 110)
        TimmOp::SolarizeAdd => (l * 110.0).trunc(),
        // _enhance_level_to_arg: (level / _MAX_LEVEL) * 1.8 + 0.1
        TimmOp::Color | TimmOp::Contrast | TimmOp::Brightness | TimmOp::Sharpness => l * 1.8 + 0.1,
        // _shear_level_to_arg: range [-0.3, 0.3]
        TimmOp::ShearX | TimmOp::ShearY => l * 0.3,
        // _translate_rel_level_to_arg: range [-0.45, 0.45]
        TimmOp::TranslateXRel | TimmOp::TranslateYRel => l * 0.45,
    }
}

/// Which resampling filter geometric ops use (timm's `interpolation` hparam;
/// unset means a random choice between bilinear and bicubic per op).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum Interpolation {
    #[default]
    Random,
    Bilinear,
    Bicubic,
}

/// A PIL resampling filter for affine transforms.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Resample {
    Bilinear,
    Bicubic,
}

/// One op as sampled for one image: what [`apply_op`] runs.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct AppliedOp {
    pub op: TimmOp,
    /// The clipped magnitude level the argument came from.
    pub level: f64,
    /// The op's argument, sign included.
    pub arg: f64,
    pub resample: Resample,
}

/// timm `RandAugment(rand_augment_ops(magnitude, hparams), num_layers)` with
/// `hparams = {magnitude_std, img_mean, [interpolation]}`.
#[derive(Clone, Debug, PartialEq)]
pub struct TimmRandAugment {
    /// Ops picked per image (`n`, timm's `num_layers`).
    pub n: u32,
    /// Magnitude level (`m`), out of [`MAX_LEVEL`].
    pub magnitude: f64,
    /// Std-dev of the Gaussian noise on the level (`mstd`; 0 = fixed).
    pub magnitude_std: f64,
    /// Probability that a picked op is applied (timm: 0.5).
    pub prob: f64,
    /// Fill colour of geometric ops (`img_mean`).
    pub fill: [u8; 3],
    pub interpolation: Interpolation,
}

impl Default for TimmRandAugment {
    /// `rand_augment_transform('rand-n2-m10-mstd0.5', {img_mean:
    /// (124, 116, 104)})`, GLMC's setting.
    fn default() -> Self {
        TimmRandAugment {
            n: 2,
            magnitude: 10.0,
            magnitude_std: 0.5,
            prob: 0.5,
            fill: [124, 116, 104],
            interpolation: Interpolation::Random,
        }
    }
}

impl TimmRandAugment {
    /// Samples the ops for one image into `plan` (cleared first); skipped
    /// ops are left out. Draw order: the `n` op indices (uniform, with
    /// replacement), then per op its apply test, the magnitude noise, the
    /// sign (signed ops that apply) and the filter (geometric ops that apply,
    /// with `Interpolation::Random`).
    pub fn sample(&self, rng: &mut Rng, plan: &mut Vec<AppliedOp>) {
        plan.clear();
        // np.random.choice(self.ops, self.num_layers, replace=True): the
        // picks come first; each becomes an AppliedOp once its apply test
        // passes (placeholders until then).
        for _ in 0..self.n {
            let op = RAND_TRANSFORMS[rng.below(RAND_TRANSFORMS.len() as u64) as usize];
            plan.push(AppliedOp { op, level: 0.0, arg: 0.0, resample: Resample::Bilinear });
        }
        // retain_mut visits the picks once each, in order.
        plan.retain_mut(|a| {
            let op = a.op;
            // AutoAugmentOp.__call__: `if random.random() > self.prob: return img`
            if rng.next_f64() > self.prob {
                return false;
            }
            let mut level = self.magnitude;
            if self.magnitude_std > 0.0 {
                level = self.magnitude + self.magnitude_std * rng.normal(); // random.gauss
            }
            // min(_MAX_LEVEL, max(0, magnitude)); the level is never NaN.
            let level = level.clamp(0.0, MAX_LEVEL);
            let mut arg = level_to_arg(op, level);
            if op.is_signed() && rng.next_f64() > 0.5 {
                arg = -arg;
            }
            let resample = match self.interpolation {
                Interpolation::Bilinear => Resample::Bilinear,
                Interpolation::Bicubic => Resample::Bicubic,
                Interpolation::Random if op.is_geometric() => {
                    if rng.below(2) == 0 {
                        Resample::Bilinear
                    } else {
                        Resample::Bicubic
                    }
                }
                Interpolation::Random => Resample::Bilinear,
            };
            *a = AppliedOp { op, level, arg, resample };
            true
        });
    }

    /// Samples and applies the ops to `img` in place (`plan` is a reusable
    /// buffer).
    pub fn apply(&self, mut img: HwcMut<'_>, plan: &mut Vec<AppliedOp>, rng: &mut Rng) {
        self.sample(rng, plan);
        for a in plan.iter() {
            apply_op(img.reborrow(), a.op, a.arg, a.resample, self.fill);
        }
    }
}

/// One op with an explicit argument (as [`level_to_arg`] gives, signed).
pub fn apply_op(img: HwcMut<'_>, op: TimmOp, arg: f64, resample: Resample, fill: [u8; 3]) {
    let (w, h, c) = (img.w, img.h, img.c);
    let (px, scratch) = (&mut *img.px, &mut *img.scratch);
    match op {
        TimmOp::AutoContrast => pil_autocontrast(px, c),
        TimmOp::Equalize => equalize(px, c),
        TimmOp::Invert => px.iter_mut().for_each(|v| *v = 255 - *v),
        TimmOp::Rotate => pil_rotate(HwcMut::new(px, scratch, w, h, c), arg, resample, fill),
        TimmOp::PosterizeTpu => posterize(px, arg as u32),
        TimmOp::Solarize => solarize(px, arg),
        TimmOp::SolarizeAdd => solarize_add(px, arg as i64, 128),
        TimmOp::Color => pil_color(px, c, arg as f32),
        TimmOp::Contrast => pil_contrast(px, c, arg as f32),
        TimmOp::Brightness => pil_brightness(px, arg as f32),
        TimmOp::Sharpness => pil_sharpness(px, scratch, w, h, c, arg as f32),
        TimmOp::ShearX | TimmOp::ShearY | TimmOp::TranslateXRel | TimmOp::TranslateYRel => {
            if let Some(m) = affine_matrix(op, arg, w, h) {
                pil_affine(HwcMut::new(px, scratch, w, h, c), m, resample, fill)
            }
        }
    }
}

/// The matrix [`pil_affine`] receives for a geometric op with argument
/// `arg` on a `w × h` image; `None` for the other ops and for a rotation by
/// a multiple of 360° (the identity, which [`pil_rotate`] skips).
pub fn affine_matrix(op: TimmOp, arg: f64, w: usize, h: usize) -> Option<[f64; 6]> {
    Some(match op {
        TimmOp::Rotate => return rotate_matrix(arg, w, h),
        // shear_x: img.transform(size, AFFINE, (1, factor, 0, 0, 1, 0))
        TimmOp::ShearX => [1.0, arg, 0.0, 0.0, 1.0, 0.0],
        TimmOp::ShearY => [1.0, 0.0, 0.0, arg, 1.0, 0.0],
        // translate_x_rel: pixels = pct * img.size[0]; (1, 0, pixels, 0, 1, 0)
        TimmOp::TranslateXRel => [1.0, 0.0, arg * w as f64, 0.0, 1.0, 0.0],
        TimmOp::TranslateYRel => [1.0, 0.0, 0.0, 0.0, 1.0, arg * h as f64],
        _ => return None,
    })
}

/// `ImageOps.posterize` (`i & ~(2^(8 - bits) - 1)`); 0 bits gives black and
/// 8 or more the identity (timm returns the image unchanged for ≥ 8).
pub fn posterize(px: &mut [u8], bits: u32) {
    if bits >= 8 {
        return;
    }
    let mask = !((1u32 << (8 - bits)) - 1) as u8;
    px.iter_mut().for_each(|v| *v &= mask);
}

/// `ImageOps.solarize`: values `>= thresh` become `255 - v`.
pub fn solarize(px: &mut [u8], thresh: f64) {
    let mut lut = [0u8; 256];
    for (i, o) in lut.iter_mut().enumerate() {
        *o = if (i as f64) < thresh { i as u8 } else { 255 - i as u8 };
    }
    px.iter_mut().for_each(|v| *v = lut[*v as usize]);
}

/// timm `solarize_add`: values `< thresh` get `min(255, v + add)`.
pub fn solarize_add(px: &mut [u8], add: i64, thresh: i64) {
    let mut lut = [0u8; 256];
    for (i, o) in lut.iter_mut().enumerate() {
        let i = i as i64;
        *o = if i < thresh { (i + add).clamp(0, 255) as u8 } else { i as u8 };
    }
    px.iter_mut().for_each(|v| *v = lut[*v as usize]);
}

/// PIL's RGB → L conversion (`L24(rgb) >> 16`, ITU-R 601-2 in 16-bit fixed
/// point, halves rounded up).
#[inline]
pub fn pil_luma(r: u8, g: u8, b: u8) -> u8 {
    ((r as u32 * 19595 + g as u32 * 38470 + b as u32 * 7471 + 0x8000) >> 16) as u8
}

/// PIL `ImagingBlend` for one value: `in1 + alpha·(in2 − in1)` in single
/// precision, clipped to [0, 255] and truncated (`(UINT8)` conversion). The
/// `alpha ∈ [0, 1]` branch of Blend.c cannot leave [0, 255], so one
/// expression covers both of its branches and the 0/1 shortcuts.
#[inline]
pub fn pil_blend(in1: u8, in2: u8, alpha: f32) -> u8 {
    let v = in1 as i32 as f32 + alpha * ((in2 as i32 - in1 as i32) as f32);
    // `as u8` saturates (≤ 0 → 0, ≥ 255 → 255) and truncates, as Blend.c.
    v as u8
}

fn blend_const_lut(base: u8, alpha: f32) -> [u8; 256] {
    let mut lut = [0u8; 256];
    for (v, o) in lut.iter_mut().enumerate() {
        *o = pil_blend(base, v as u8, alpha);
    }
    lut
}

/// `ImageEnhance.Brightness(img).enhance(f)`: blend with black.
pub fn pil_brightness(px: &mut [u8], f: f32) {
    let lut = blend_const_lut(0, f);
    px.iter_mut().for_each(|v| *v = lut[*v as usize]);
}

/// `ImageEnhance.Contrast(img).enhance(f)`: blend with the constant image
/// of the mean PIL luma, `int(mean + 0.5)`.
pub fn pil_contrast(px: &mut [u8], c: usize, f: f32) {
    let n = (px.len() / c).max(1) as u64;
    let sum = if c == 3 { crate::kernels::pil_luma_sum_rgb(px) } else { crate::kernels::byte_sum(px) };
    // ImageStat.Stat(L).mean[0] is sum / count in double precision.
    let mean = (sum as f64 / n as f64 + 0.5) as u8;
    let lut = blend_const_lut(mean, f);
    crate::kernels::apply_lut(px, &lut);
}

/// `ImageEnhance.Color(img).enhance(f)`: blend with the image's own PIL
/// luma (`convert("L").convert("RGB")`); the identity on gray images.
pub fn pil_color(px: &mut [u8], c: usize, f: f32) {
    if c == 3 {
        crate::kernels::pil_color_rgb(px, f)
    }
}

/// `ImageEnhance.Sharpness(img).enhance(f)`: blend with
/// `img.filter(ImageFilter.SMOOTH)`.
pub fn pil_sharpness(px: &mut [u8], scratch: &mut Vec<u8>, w: usize, h: usize, c: usize, f: f32) {
    crate::kernels::smooth3x3(px, scratch, w, h, c);
    crate::kernels::pil_blend_with(px, scratch, f);
}

/// `ImageOps.autocontrast(img)` (cutoff 0): per channel,
/// `int(v · scale + offset)` with `scale = 255 / (hi − lo)`,
/// `offset = −lo · scale` in double precision, clipped to [0, 255]; a
/// channel with a single value is left alone.
pub fn pil_autocontrast(px: &mut [u8], c: usize) {
    for ch in 0..c {
        let (mut lo, mut hi) = (255u8, 0u8);
        for &v in px.iter().skip(ch).step_by(c) {
            lo = lo.min(v);
            hi = hi.max(v);
        }
        if hi <= lo {
            continue;
        }
        let scale = 255.0 / (hi - lo) as f64;
        let offset = -(lo as f64) * scale;
        let mut lut = [0u8; 256];
        for (i, o) in lut.iter_mut().enumerate() {
            // int() truncates toward zero; then the [0, 255] clip.
            *o = ((i as f64 * scale + offset).trunc()).clamp(0.0, 255.0) as u8;
        }
        for v in px.iter_mut().skip(ch).step_by(c) {
            *v = lut[*v as usize];
        }
    }
}

/// torchvision's `ColorJitter` on a PIL image: `ImageEnhance.Brightness`,
/// `Contrast` and `Color` (saturation) in the sampled order.
pub fn color_jitter_pil(px: &mut [u8], c: usize, p: &JitterParams) {
    for op in p.order {
        match op {
            0 => {
                if let Some(f) = p.brightness {
                    pil_brightness(px, f)
                }
            }
            1 => {
                if let Some(f) = p.contrast {
                    pil_contrast(px, c, f)
                }
            }
            _ => {
                if let Some(f) = p.saturation {
                    pil_color(px, c, f)
                }
            }
        }
    }
}

/// The fill value per channel: `fill` on RGB, its PIL luma on gray.
fn fill_for(c: usize, fill: [u8; 3]) -> [u8; 3] {
    if c == 3 {
        fill
    } else {
        [pil_luma(fill[0], fill[1], fill[2]); 3]
    }
}

/// PIL `img.transform(img.size, Image.AFFINE, m, resample, fillcolor=fill)`
/// with a bilinear or bicubic filter: `ImagingGenericTransform` — output
/// pixel `(x, y)` samples the input at `(m0·(x+½) + m1·(y+½) + m2,
/// m3·(x+½) + m4·(y+½) + m5)`; points outside `[0, w) × [0, h)` keep the
/// fill colour, points inside are interpolated with edge-clamped taps.
pub fn pil_affine(img: HwcMut<'_>, m: [f64; 6], resample: Resample, fill: [u8; 3]) {
    let HwcMut { px, scratch, w, h, c } = img;
    scratch.clear();
    scratch.resize(px.len(), 0);
    let filter = match resample {
        Resample::Bilinear => crate::kernels::Filter::Bilinear,
        Resample::Bicubic => crate::kernels::Filter::Bicubic,
    };
    crate::kernels::pil_affine(px, scratch, (w, h, c), &m, filter, fill_for(c, fill));
    std::mem::swap(px, scratch);
}

/// Python's `round(x, 15)`: correctly rounded to 15 decimals, read back.
fn py_round15(x: f64) -> f64 {
    format!("{x:.15}").parse().unwrap_or(x)
}

/// PIL `img.rotate(degrees, resample, fillcolor=fill)` (counter-clockwise
/// about the centre, same size): the matrix exactly as Image.rotate builds
/// it (`angle % 360`, cosines and sines rounded to 15 decimals), then
/// [`pil_affine`]. PIL's transpose shortcuts for 90°/180°/270° sample pixel
/// centres exactly, as the generic path does for those matrices; angle 0 is
/// the identity.
pub fn pil_rotate(img: HwcMut<'_>, degrees: f64, resample: Resample, fill: [u8; 3]) {
    if let Some(m) = rotate_matrix(degrees, img.w, img.h) {
        pil_affine(img, m, resample, fill)
    }
}

/// The matrix `Image.rotate(degrees)` hands to the affine transform of a
/// `w × h` image; `None` when `degrees % 360` is 0 (the identity).
pub fn rotate_matrix(degrees: f64, w: usize, h: usize) -> Option<[f64; 6]> {
    let angle = degrees.rem_euclid(360.0); // Python's float %
    if angle == 0.0 {
        return None;
    }
    let (cx, cy) = (w as f64 / 2.0, h as f64 / 2.0);
    let a = -angle.to_radians(); // math.radians: angle * (pi / 180)
    let mut m = [py_round15(a.cos()), py_round15(a.sin()), 0.0, py_round15(-a.sin()), py_round15(a.cos()), 0.0];
    // matrix[2], matrix[5] = transform(-center[0], -center[1], matrix)
    let (tx, ty) = (-cx, -cy);
    let (m2, m5) = (m[0] * tx + m[1] * ty + m[2], m[3] * tx + m[4] * ty + m[5]);
    m[2] = m2 + cx;
    m[5] = m5 + cy;
    Some(m)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn level_args_at_the_authors_magnitude() {
        assert_eq!(level_to_arg(TimmOp::Rotate, 10.0), 30.0);
        assert_eq!(level_to_arg(TimmOp::PosterizeTpu, 10.0), 4.0);
        assert_eq!(level_to_arg(TimmOp::PosterizeTpu, 9.9), 3.0);
        assert_eq!(level_to_arg(TimmOp::Solarize, 10.0), 256.0);
        assert_eq!(level_to_arg(TimmOp::SolarizeAdd, 10.0), 110.0);
        assert!((level_to_arg(TimmOp::Color, 10.0) - 1.9).abs() < 1e-12);
        assert!((level_to_arg(TimmOp::TranslateXRel, 10.0) - 0.45).abs() < 1e-12);
        for op in RAND_TRANSFORMS {
            assert_eq!(TimmOp::from_name(op.name()), Some(op));
        }
    }

    #[test]
    fn posterize_zero_bits_is_black_and_solarize_256_is_identity() {
        let mut px: Vec<u8> = (0..=255).collect();
        posterize(&mut px, 0);
        assert!(px.iter().all(|&v| v == 0));
        let mut px: Vec<u8> = (0..=255).collect();
        solarize(&mut px, 256.0);
        assert!(px.iter().enumerate().all(|(i, &v)| v as usize == i));
        let mut px = vec![0u8, 127, 128, 200, 250];
        solarize_add(&mut px, 110, 128);
        assert_eq!(px, vec![110, 237, 128, 200, 250]);
    }

    #[test]
    fn gray_images_use_the_luma_of_the_fill() {
        let (w, h) = (6, 4);
        let mut px = vec![10u8; w * h];
        let mut s = Vec::new();
        pil_affine(HwcMut::new(&mut px, &mut s, w, h, 1), [1.0, 0.0, 100.0, 0.0, 1.0, 0.0], Resample::Bilinear, [124, 116, 104]);
        assert!(px.iter().all(|&v| v == pil_luma(124, 116, 104)));
        let mut px: Vec<u8> = (0..w * h).map(|i| i as u8).collect();
        let before = px.clone();
        pil_color(&mut px, 1, 0.3);
        assert_eq!(px, before);
    }

    #[test]
    fn python_round_15() {
        assert_eq!(py_round15(0.8660254037844387), 0.866025403784439);
        assert_eq!(py_round15(-0.49999999999999994), -0.5);
        assert_eq!(py_round15(1.0), 1.0);
    }
}
