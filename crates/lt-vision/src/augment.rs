//! Augmentation kernels and the loader's pipelines ([`Pipeline::by_name`]:
//! `cifar`, `imagenet`, `randaugment`, `eval`, `eval-identity`, and
//! `imagenet-randncls`, the GLMC authors' earlier ImageNet-LT / iNaturalist
//! pipeline with timm's RandAugment, see [`RandnclsSpec`]; the README's
//! loader section lists what each does).
//!
//! Every kernel works on interleaved HWC `u8` buffers; a pipeline ends by
//! writing one view as planar CHW `u8` into a caller-owned slice (a slot of a
//! batch buffer), so a view is never copied twice. Randomness comes only from
//! the [`Rng`] passed in, so a view is a pure function of the image and the
//! generator's state (the loader derives it from `(seed, epoch, step, slot)`).
//!
//! Parameter sampling follows torchvision (`RandomResizedCrop.get_params`,
//! `RandomCrop`, `ColorJitter.get_params`, `RandomGrayscale`, `GaussianBlur`,
//! `RandAugment`), so the same recipe means the same distribution of views.
//! Horizontal flips are applied while writing CHW: every later kernel is
//! either pointwise or mirror-symmetric, so flipping last is exact and free.

use crate::codec::Decoded;
use crate::photometric::{PhotoOp, ViewParams};
use crate::{Result, VisionError};
use fast_image_resize as fr;
use lt_core::rng::Rng;
use serde::{Deserialize, Serialize};

/// A crop rectangle in source pixels.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CropBox {
    pub top: u32,
    pub left: u32,
    pub height: u32,
    pub width: u32,
}

/// torchvision's `RandomResizedCrop.get_params`: ten attempts at an area
/// fraction in `scale` and a log-uniform aspect ratio in `ratio`, then the
/// central crop clamped to `ratio`.
pub fn rrc_params(rng: &mut Rng, width: u32, height: u32, scale: (f64, f64), ratio: (f64, f64)) -> CropBox {
    let (w, h) = (width as i64, height as i64);
    let area = (w * h) as f64;
    let (lr0, lr1) = (ratio.0.ln(), ratio.1.ln());
    for _ in 0..10 {
        let target = area * rng.uniform(scale.0, scale.1);
        let aspect = rng.uniform(lr0, lr1).exp();
        let cw = (target * aspect).sqrt().round() as i64;
        let ch = (target / aspect).sqrt().round() as i64;
        if 0 < cw && cw <= w && 0 < ch && ch <= h {
            let top = rng.below((h - ch + 1) as u64) as u32;
            let left = rng.below((w - cw + 1) as u64) as u32;
            return CropBox { top, left, height: ch as u32, width: cw as u32 };
        }
    }
    let in_ratio = w as f64 / h as f64;
    let (cw, ch) = if in_ratio < ratio.0 {
        (w, ((w as f64 / ratio.0).round() as i64).clamp(1, h))
    } else if in_ratio > ratio.1 {
        (((h as f64 * ratio.1).round() as i64).clamp(1, w), h)
    } else {
        (w, h)
    };
    CropBox { top: ((h - ch) / 2) as u32, left: ((w - cw) / 2) as u32, height: ch as u32, width: cw as u32 }
}

/// Writes `src` (HWC, `c` channels) as CHW into `out`, mirrored when `flip`.
pub fn write_chw(src: &[u8], width: usize, height: usize, c: usize, flip: bool, out: &mut [u8]) {
    debug_assert_eq!(src.len(), width * height * c);
    debug_assert_eq!(out.len(), width * height * c);
    let plane = width * height;
    for y in 0..height {
        let row = &src[y * width * c..(y + 1) * width * c];
        for ch in 0..c {
            let dst = &mut out[ch * plane + y * width..ch * plane + (y + 1) * width];
            if flip {
                for (x, d) in dst.iter_mut().enumerate() {
                    *d = row[(width - 1 - x) * c + ch];
                }
            } else {
                for (x, d) in dst.iter_mut().enumerate() {
                    *d = row[x * c + ch];
                }
            }
        }
    }
}

/// CIFAR's `RandomCrop(size, padding)` + flip as one gather: output pixel
/// `(y, x)` reads padded source pixel `(top + y, left + x)`, zero outside.
/// `top`/`left` are in padded coordinates (`0..=h + 2·pad − size`).
pub fn pad_crop_flip_chw(img: &Decoded, pad: u32, size: (u32, u32), top: u32, left: u32, flip: bool, out: &mut [u8]) {
    let (w, h, c) = (img.width as i64, img.height as i64, img.channels as usize);
    let (ow, oh) = (size.0 as usize, size.1 as usize);
    let plane = ow * oh;
    debug_assert_eq!(out.len(), plane * c);
    for y in 0..oh {
        let sy = top as i64 + y as i64 - pad as i64;
        for ch in 0..c {
            let dst = &mut out[ch * plane + y * ow..ch * plane + (y + 1) * ow];
            if sy < 0 || sy >= h {
                dst.fill(0);
                continue;
            }
            let row = &img.pixels[sy as usize * w as usize * c..(sy as usize + 1) * w as usize * c];
            for (x, d) in dst.iter_mut().enumerate() {
                let xo = if flip { ow - 1 - x } else { x };
                let sx = left as i64 + xo as i64 - pad as i64;
                *d = if sx < 0 || sx >= w { 0 } else { row[sx as usize * c + ch] };
            }
        }
    }
}

/// Round-half-up to `u8` with saturation. `f32::round` is a libm call on
/// baseline x86-64 and kept these loops from vectorising; for the clamped,
/// non-negative value `+ 0.5` then truncation is the same rounding.
#[inline]
fn clamp_u8(v: f32) -> u8 {
    (v.clamp(0.0, 255.0) + 0.5) as u8
}

/// `v ↦ clamp(f·v + (1 − f)·base)`, as a lookup table.
fn blend_lut(f: f32, base: f32) -> [u8; 256] {
    let mut lut = [0u8; 256];
    for (v, o) in lut.iter_mut().enumerate() {
        *o = clamp_u8(f * v as f32 + (1.0 - f) * base);
    }
    lut
}

/// Brightness: blend with black.
pub fn adjust_brightness(px: &mut [u8], f: f32) {
    let lut = blend_lut(f, 0.0);
    px.iter_mut().for_each(|p| *p = lut[*p as usize]);
}

/// Contrast: blend with the mean luma of the whole image.
pub fn adjust_contrast(px: &mut [u8], c: usize, f: f32) {
    let mean = if c == 3 {
        crate::kernels::luma_sum_rgb(px) / (px.len() / 3).max(1) as f64
    } else {
        crate::kernels::byte_sum(px) as f64 / px.len().max(1) as f64
    } as f32;
    let lut = blend_lut(f, mean);
    crate::kernels::apply_lut(px, &lut);
}

/// Saturation: blend each pixel with its own luma (no-op on gray).
pub fn adjust_saturation(px: &mut [u8], c: usize, f: f32) {
    if c == 3 {
        crate::kernels::saturation_rgb(px, f)
    }
}

/// Grayscale keeping three channels.
pub fn to_grayscale(px: &mut [u8], c: usize) {
    if c == 3 {
        crate::kernels::grayscale_rgb(px)
    }
}

/// Sampled ColorJitter: factors and the order in which they apply.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct JitterParams {
    pub order: [u8; 3],
    pub brightness: Option<f32>,
    pub contrast: Option<f32>,
    pub saturation: Option<f32>,
}

/// torchvision `ColorJitter.get_params` for (brightness, contrast,
/// saturation); a strength of 0 disables that adjustment entirely (no draw).
pub fn jitter_params(rng: &mut Rng, strength: [f32; 3]) -> JitterParams {
    let mut order = [0u8, 1, 2];
    rng.shuffle(&mut order);
    let mut draw = |s: f32| (s > 0.0).then(|| rng.uniform((1.0 - s).max(0.0) as f64, (1.0 + s) as f64) as f32);
    let brightness = draw(strength[0]);
    let contrast = draw(strength[1]);
    let saturation = draw(strength[2]);
    JitterParams { order, brightness, contrast, saturation }
}

/// Applies sampled ColorJitter in its sampled order.
pub fn color_jitter(px: &mut [u8], c: usize, p: &JitterParams) {
    for op in p.order {
        match op {
            0 => {
                if let Some(f) = p.brightness {
                    adjust_brightness(px, f)
                }
            }
            1 => {
                if let Some(f) = p.contrast {
                    adjust_contrast(px, c, f)
                }
            }
            _ => {
                if let Some(f) = p.saturation {
                    adjust_saturation(px, c, f)
                }
            }
        }
    }
}

/// Normalised 1-D Gaussian taps with radius `ceil(3σ)` (at least 1).
pub fn gaussian_kernel(sigma: f32) -> Vec<f32> {
    let r = (3.0 * sigma).ceil().max(1.0) as i32;
    let mut k: Vec<f32> = (-r..=r).map(|i| (-(i * i) as f32 / (2.0 * sigma * sigma)).exp()).collect();
    let s: f32 = k.iter().sum();
    k.iter_mut().for_each(|v| *v /= s);
    k
}

/// Separable Gaussian blur with reflect borders (torchvision's padding),
/// in place. `tmp` is scratch that is reused across calls.
pub fn gaussian_blur(px: &mut [u8], width: usize, height: usize, c: usize, sigma: f32, tmp: &mut Vec<f32>) {
    crate::kernels::gaussian_blur(px, width, height, c, &gaussian_kernel(sigma), tmp)
}

fn pixel_type(c: u8) -> fr::PixelType {
    if c == 1 {
        fr::PixelType::U8
    } else {
        fr::PixelType::U8x3
    }
}

/// Resizes the `crop` of `img` to `out_w × out_h` into `dst` (HWC), with
/// antialiased bilinear convolution (torchvision's default filter).
pub fn resize_crop_into(resizer: &mut fr::Resizer, img: &Decoded, crop: CropBox, out_w: u32, out_h: u32, dst: &mut Vec<u8>) -> Result<()> {
    let pt = pixel_type(img.channels);
    dst.clear();
    dst.resize(out_w as usize * out_h as usize * img.channels as usize, 0);
    let src = fr::images::ImageRef::new(img.width, img.height, &img.pixels, pt).map_err(|e| VisionError::Resize(e.to_string()))?;
    let mut d = fr::images::Image::from_slice_u8(out_w, out_h, dst.as_mut_slice(), pt).map_err(|e| VisionError::Resize(e.to_string()))?;
    let opts = fr::ResizeOptions::new().resize_alg(fr::ResizeAlg::Convolution(fr::FilterType::Bilinear)).crop(
        crop.left as f64,
        crop.top as f64,
        crop.width as f64,
        crop.height as f64,
    );
    resizer.resize(&src, &mut d, &opts).map_err(|e| VisionError::Resize(e.to_string()))
}

/// torchvision `Resize(short)` target size: the shorter side becomes
/// `short`, the longer one `int(short · long / short_side)`.
pub fn shorter_side_size(width: u32, height: u32, short: u32) -> (u32, u32) {
    if width <= height {
        (short, ((short as u64 * height as u64) / width as u64) as u32)
    } else {
        (((short as u64 * width as u64) / height as u64) as u32, short)
    }
}

/// Offset of torchvision's `CenterCrop`: `int(round((n − crop) / 2))`.
pub fn center_offset(n: u32, crop: u32) -> u32 {
    // Python's round() is round-half-to-even.
    (((n as f64 - crop as f64) / 2.0).round_ties_even()).max(0.0) as u32
}

fn default_flip() -> f64 {
    0.5
}
fn default_pad() -> u32 {
    4
}
fn default_size() -> u32 {
    224
}
fn default_scale() -> (f64, f64) {
    (0.08, 1.0)
}
fn default_ratio() -> (f64, f64) {
    (3.0 / 4.0, 4.0 / 3.0)
}
fn default_jitter() -> [f32; 3] {
    [0.4, 0.4, 0.4]
}
fn default_gray() -> f64 {
    0.2
}
fn default_blur_p() -> f64 {
    0.5
}
fn default_sigma() -> (f32, f32) {
    (0.1, 2.0)
}
fn default_n() -> u32 {
    2
}
fn default_m() -> u32 {
    10
}

/// CIFAR-style: zero-pad, random crop, horizontal flip.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CifarSpec {
    /// Crop side; `None` keeps the source size (32 for CIFAR, 28 for MNIST).
    #[serde(default)]
    pub size: Option<u32>,
    #[serde(default = "default_pad")]
    pub padding: u32,
    #[serde(default = "default_flip")]
    pub flip: f64,
}

impl Default for CifarSpec {
    fn default() -> Self {
        CifarSpec { size: None, padding: 4, flip: 0.5 }
    }
}

/// ImageNet-style (GLMC / MoCo v2): RandomResizedCrop, flip, ColorJitter,
/// RandomGrayscale, GaussianBlur.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ImageNetSpec {
    #[serde(default = "default_size")]
    pub size: u32,
    #[serde(default = "default_scale")]
    pub scale: (f64, f64),
    #[serde(default = "default_ratio")]
    pub ratio: (f64, f64),
    #[serde(default = "default_flip")]
    pub flip: f64,
    /// ColorJitter (brightness, contrast, saturation); hue is not supported
    /// (GLMC uses 0).
    #[serde(default = "default_jitter")]
    pub jitter: [f32; 3],
    /// Probability of applying ColorJitter (GLMC: 1.0).
    #[serde(default = "one")]
    pub jitter_p: f64,
    #[serde(default = "default_gray")]
    pub grayscale: f64,
    #[serde(default = "default_blur_p")]
    pub blur: f64,
    #[serde(default = "default_sigma")]
    pub blur_sigma: (f32, f32),
}

fn one() -> f64 {
    1.0
}

impl Default for ImageNetSpec {
    fn default() -> Self {
        ImageNetSpec {
            size: 224,
            scale: default_scale(),
            ratio: default_ratio(),
            flip: 0.5,
            jitter: default_jitter(),
            jitter_p: 1.0,
            grayscale: 0.2,
            blur: 0.5,
            blur_sigma: default_sigma(),
        }
    }
}

/// RandomResizedCrop + flip + RandAugment(n, m) with torchvision's 31
/// magnitude bins.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RandAugmentSpec {
    #[serde(default = "default_size")]
    pub size: u32,
    #[serde(default = "default_scale")]
    pub scale: (f64, f64),
    #[serde(default = "default_ratio")]
    pub ratio: (f64, f64),
    #[serde(default = "default_flip")]
    pub flip: f64,
    #[serde(default = "default_n")]
    pub n: u32,
    #[serde(default = "default_m")]
    pub m: u32,
}

impl Default for RandAugmentSpec {
    fn default() -> Self {
        RandAugmentSpec { size: 224, scale: default_scale(), ratio: default_ratio(), flip: 0.5, n: 2, m: 10 }
    }
}

/// `imagenet-randncls`: the GLMC authors' `augmentation_randncls`, their
/// ImageNet-LT and iNaturalist 2018 training pipeline before commit df7e2da
/// (`GLMC-2023/utils/util.py`, `get_transform`):
///
/// ```python
/// ra_params = dict(translate_const=int(224 * 0.45), img_mean=(124, 116, 104))
/// transforms.RandomResizedCrop(224, scale=(0.08, 1.)),
/// transforms.RandomHorizontalFlip(),
/// transforms.RandomApply([transforms.ColorJitter(0.4, 0.4, 0.4, 0.0)], p=1.0),
/// rand_augment_transform('rand-n{}-m{}-mstd0.5'.format(2, 10), ra_params),
/// transforms.ToTensor(), normalize,
/// ```
///
/// ColorJitter and RandAugment run with PIL's kernels, bit-exact
/// ([`crate::augment_timm`]); the crop's resize is this crate's antialiased
/// bilinear (within one level of PIL's). That code chose *once per process*
/// (`r = random.random()` in `get_transform`, `if r < 0.5`) between this
/// pipeline and the MoCo-style one (`imagenet` here), so a run trained with
/// one of the two for all epochs; this is the randncls branch only. The
/// iNaturalist branch is identical here (its different `Normalize` happens
/// on the device; `img_mean` is ImageNet's in both), and `translate_const`
/// only reaches the absolute translations, which timm's `rand` op list
/// does not contain.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RandnclsSpec {
    #[serde(default = "default_size")]
    pub size: u32,
    #[serde(default = "default_scale")]
    pub scale: (f64, f64),
    #[serde(default = "default_ratio")]
    pub ratio: (f64, f64),
    #[serde(default = "default_flip")]
    pub flip: f64,
    /// ColorJitter (brightness, contrast, saturation), PIL kernels; hue 0.
    #[serde(default = "default_jitter")]
    pub jitter: [f32; 3],
    /// Probability of applying ColorJitter (authors: 1.0).
    #[serde(default = "one")]
    pub jitter_p: f64,
    /// RandAugment ops per image (`n`).
    #[serde(default = "default_n")]
    pub n: u32,
    /// RandAugment magnitude level (`m`, out of 10).
    #[serde(default = "default_timm_m")]
    pub m: f64,
    /// Std-dev of the per-op Gaussian noise on the level (`mstd`).
    #[serde(default = "default_mstd")]
    pub mstd: f64,
    /// Probability that a picked op is applied (timm's `prob`).
    #[serde(default = "default_op_prob")]
    pub op_prob: f64,
    /// Fill of rotate/shear/translate (`img_mean` = round(255 · ImageNet mean)).
    #[serde(default = "default_img_mean")]
    pub img_mean: [u8; 3],
    /// Filter of the geometric ops: random (bilinear or bicubic per op,
    /// timm's default), bilinear or bicubic.
    #[serde(default)]
    pub interpolation: crate::augment_timm::Interpolation,
}

fn default_timm_m() -> f64 {
    10.0
}
fn default_mstd() -> f64 {
    0.5
}
fn default_op_prob() -> f64 {
    0.5
}
fn default_img_mean() -> [u8; 3] {
    [124, 116, 104]
}

impl Default for RandnclsSpec {
    fn default() -> Self {
        RandnclsSpec {
            size: 224,
            scale: default_scale(),
            ratio: default_ratio(),
            flip: 0.5,
            jitter: default_jitter(),
            jitter_p: 1.0,
            n: 2,
            m: 10.0,
            mstd: 0.5,
            op_prob: 0.5,
            img_mean: default_img_mean(),
            interpolation: crate::augment_timm::Interpolation::Random,
        }
    }
}

impl RandnclsSpec {
    /// The RandAugment part as a [`crate::augment_timm::TimmRandAugment`].
    pub fn rand_augment(&self) -> crate::augment_timm::TimmRandAugment {
        crate::augment_timm::TimmRandAugment {
            n: self.n,
            magnitude: self.m,
            magnitude_std: self.mstd,
            prob: self.op_prob,
            fill: self.img_mean,
            interpolation: self.interpolation,
        }
    }
}

/// Evaluation: resize the shorter side, then center crop; both optional
/// (neither = identity, used for 32×32 data).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct EvalSpec {
    #[serde(default)]
    pub resize: Option<u32>,
    #[serde(default)]
    pub crop: Option<u32>,
}

impl EvalSpec {
    /// ImageNet's `Resize(256) + CenterCrop(224)`.
    pub fn imagenet() -> Self {
        EvalSpec { resize: Some(256), crop: Some(224) }
    }
}

/// A named augmentation pipeline, as written in recipes
/// (`kind = "cifar" | "imagenet" | "randaugment" | "imagenet-randncls" | "eval"`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "lowercase")]
pub enum Pipeline {
    Cifar(CifarSpec),
    #[serde(rename = "imagenet")]
    ImageNet(ImageNetSpec),
    #[serde(rename = "randaugment")]
    RandAugment(RandAugmentSpec),
    /// The GLMC authors' earlier ImageNet-LT / iNaturalist pipeline with
    /// timm's RandAugment ([`RandnclsSpec`]).
    #[serde(rename = "imagenet-randncls")]
    Randncls(RandnclsSpec),
    Eval(EvalSpec),
}

/// Every name [`Pipeline::by_name`] accepts.
pub const PIPELINE_NAMES: [&str; 6] = ["cifar", "imagenet", "randaugment", "imagenet-randncls", "eval", "eval-identity"];

impl Pipeline {
    /// The pipeline by its short name with default parameters.
    pub fn by_name(name: &str) -> Result<Pipeline> {
        Ok(match name {
            "cifar" => Pipeline::Cifar(CifarSpec::default()),
            "imagenet" => Pipeline::ImageNet(ImageNetSpec::default()),
            "randaugment" => Pipeline::RandAugment(RandAugmentSpec::default()),
            "imagenet-randncls" => Pipeline::Randncls(RandnclsSpec::default()),
            "eval" => Pipeline::Eval(EvalSpec::imagenet()),
            "eval-identity" => Pipeline::Eval(EvalSpec::default()),
            other => return Err(VisionError::Invalid(format!("unknown pipeline {other:?} (expected {})", PIPELINE_NAMES.join(", ")))),
        })
    }

    /// Output (width, height) for a source of `src` size. Fixed-size
    /// pipelines ignore `src`.
    pub fn output_size(&self, src: (u32, u32)) -> (u32, u32) {
        match self {
            Pipeline::Cifar(s) => s.size.map(|v| (v, v)).unwrap_or(src),
            Pipeline::ImageNet(s) => (s.size, s.size),
            Pipeline::RandAugment(s) => (s.size, s.size),
            Pipeline::Randncls(s) => (s.size, s.size),
            Pipeline::Eval(s) => match (s.resize, s.crop) {
                (_, Some(c)) => (c, c),
                (Some(r), None) => shorter_side_size(src.0, src.1, r),
                (None, None) => src,
            },
        }
    }

    /// True for the photo pipelines that always produce RGB views (a loader
    /// without an explicit channel count should use 3 for them).
    pub fn rgb_output(&self) -> bool {
        matches!(self, Pipeline::ImageNet(_) | Pipeline::RandAugment(_) | Pipeline::Randncls(_))
    }

    /// True for the pipelines with a photometric stage that
    /// `loader.photometric = "device"` moves to the device (`imagenet`,
    /// `randaugment`, `imagenet-randncls`); `cifar` and `eval` have none.
    pub fn has_photometric(&self) -> bool {
        self.rgb_output()
    }

    /// The most photometric ops one view of this pipeline records in
    /// device mode (identity ops are not recorded).
    pub fn max_photometric_ops(&self) -> usize {
        match self {
            Pipeline::ImageNet(_) => 5, // three jitter factors, grayscale, blur
            Pipeline::RandAugment(s) => s.n as usize,
            Pipeline::Randncls(s) => 3 + s.n as usize,
            Pipeline::Cifar(_) | Pipeline::Eval(_) => 0,
        }
    }

    /// True when the output size depends on the source size.
    pub fn size_from_source(&self) -> bool {
        matches!(self, Pipeline::Cifar(CifarSpec { size: None, .. })) || matches!(self, Pipeline::Eval(EvalSpec { crop: None, .. }))
    }

    /// Checks parameter ranges.
    pub fn validate(&self) -> Result<()> {
        let bad = |m: String| Err(VisionError::Invalid(m));
        let prob = |p: f64, what: &str| {
            if (0.0..=1.0).contains(&p) {
                Ok(())
            } else {
                Err(VisionError::Invalid(format!("{what} must be a probability in [0, 1], got {p}")))
            }
        };
        match self {
            Pipeline::Cifar(s) => prob(s.flip, "cifar.flip"),
            Pipeline::ImageNet(s) => {
                prob(s.flip, "imagenet.flip")?;
                prob(s.grayscale, "imagenet.grayscale")?;
                prob(s.blur, "imagenet.blur")?;
                prob(s.jitter_p, "imagenet.jitter_p")?;
                crop_and_jitter("imagenet", s.size, s.scale, s.ratio, s.jitter)?;
                if !(s.blur_sigma.0 > 0.0 && s.blur_sigma.0 <= s.blur_sigma.1) {
                    return bad(format!("imagenet: bad blur_sigma {:?}", s.blur_sigma));
                }
                Ok(())
            }
            Pipeline::RandAugment(s) => {
                prob(s.flip, "randaugment.flip")?;
                if s.m > 30 || s.size == 0 {
                    return bad(format!("randaugment: m must be in 0..=30 and size > 0, got m={} size={}", s.m, s.size));
                }
                Ok(())
            }
            Pipeline::Randncls(s) => {
                prob(s.flip, "imagenet-randncls.flip")?;
                prob(s.jitter_p, "imagenet-randncls.jitter_p")?;
                prob(s.op_prob, "imagenet-randncls.op_prob")?;
                crop_and_jitter("imagenet-randncls", s.size, s.scale, s.ratio, s.jitter)?;
                if !(s.m.is_finite() && s.m >= 0.0 && s.mstd.is_finite() && s.mstd >= 0.0) || s.n > 16 {
                    return bad(format!(
                        "imagenet-randncls: m and mstd must be finite and >= 0 and n <= 16, got m={} mstd={} n={}",
                        s.m, s.mstd, s.n
                    ));
                }
                Ok(())
            }
            Pipeline::Eval(s) => {
                if s.resize == Some(0) || s.crop == Some(0) {
                    return bad("eval: sizes must be > 0".into());
                }
                Ok(())
            }
        }
    }
}

/// The RandomResizedCrop and ColorJitter checks shared by the photo
/// pipelines: `size > 0`, ordered positive `scale` and `ratio`, jitter in
/// [0, 1].
fn crop_and_jitter(name: &str, size: u32, scale: (f64, f64), ratio: (f64, f64), jitter: [f32; 3]) -> Result<()> {
    if !(scale.0 > 0.0 && scale.0 <= scale.1 && ratio.0 > 0.0 && ratio.0 <= ratio.1) {
        return Err(VisionError::Invalid(format!("{name}: bad scale {scale:?} or ratio {ratio:?}")));
    }
    if size == 0 || jitter.iter().any(|j| !(0.0..=1.0).contains(j)) {
        return Err(VisionError::Invalid(format!("{name}: size must be > 0 and jitter in [0, 1], got {size} {jitter:?}")));
    }
    Ok(())
}

/// A pipeline as recipes write it: a short name (`augment = "cifar"`) or a
/// table with parameters (`augment = { kind = "imagenet", size = 192 }`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum PipelineSetting {
    Name(String),
    Spec(Pipeline),
}

impl PipelineSetting {
    pub fn resolve(&self) -> Result<Pipeline> {
        let p = match self {
            PipelineSetting::Name(n) => Pipeline::by_name(n)?,
            PipelineSetting::Spec(p) => p.clone(),
        };
        p.validate()?;
        Ok(p)
    }
}

/// Per-thread state for running a pipeline: the resizer and scratch buffers
/// are reused so steady-state augmentation does not allocate.
pub struct Augmenter {
    pipeline: Pipeline,
    channels: u8,
    scratch: Scratch,
}

/// The reused resizer and buffers of an [`Augmenter`]; each pipeline's
/// view is a method, which reads the pipeline's spec by reference.
struct Scratch {
    resizer: fr::Resizer,
    hwc: Vec<u8>,
    hwc2: Vec<u8>,
    tmp: Vec<f32>,
    plan: Vec<crate::augment_timm::AppliedOp>,
}

impl Augmenter {
    /// An augmenter producing `channels`-channel views (1 or 3).
    pub fn try_new(pipeline: Pipeline, channels: u8) -> Result<Self> {
        pipeline.validate()?;
        if channels != 1 && channels != 3 {
            return Err(VisionError::Invalid(format!("channels must be 1 or 3, got {channels}")));
        }
        let scratch = Scratch { resizer: fr::Resizer::new(), hwc: Vec::new(), hwc2: Vec::new(), tmp: Vec::new(), plan: Vec::new() };
        Ok(Augmenter { pipeline, channels, scratch })
    }

    pub fn pipeline(&self) -> &Pipeline {
        &self.pipeline
    }

    /// Writes one view of `img` (already converted to this augmenter's
    /// channel count) as CHW into `out`, which must hold exactly
    /// `channels × out_w × out_h` bytes where `(out_w, out_h)` is
    /// [`Pipeline::output_size`] of `img`'s size — or of the fixed size the
    /// caller resolved for source-sized pipelines.
    pub fn view_into(&mut self, img: &Decoded, rng: &mut Rng, out_size: (u32, u32), out: &mut [u8]) -> Result<()> {
        self.view(img, rng, out_size, out, None)
    }

    /// `loader.photometric = "device"`: writes the geometric part of the
    /// view (decode, crop, resize, flip) into `out` as [`Augmenter::view_into`]
    /// does, and records its photometric part in `params` instead of applying
    /// it, with the same random draws in the same order, so
    /// [`ViewParams::apply_cpu_chw`] of `params` on `out` gives
    /// [`Augmenter::view_into`]'s bytes. Pipelines without a photometric
    /// stage (`cifar`, `eval`) write their view and record nothing.
    pub fn view_geometric_into(
        &mut self,
        img: &Decoded,
        rng: &mut Rng,
        out_size: (u32, u32),
        out: &mut [u8],
        params: &mut ViewParams,
    ) -> Result<()> {
        params.clear();
        self.view(img, rng, out_size, out, Some(params))
    }

    fn view(&mut self, img: &Decoded, rng: &mut Rng, out_size: (u32, u32), out: &mut [u8], rec: Option<&mut ViewParams>) -> Result<()> {
        let c = self.channels as usize;
        if img.channels != self.channels {
            return Err(VisionError::Invalid(format!("image has {} channels, pipeline expects {}", img.channels, self.channels)));
        }
        let (ow, oh) = out_size;
        if out.len() != ow as usize * oh as usize * c {
            return Err(VisionError::Invalid(format!("output slot holds {} bytes, view needs {ow}x{oh}x{c}", out.len())));
        }
        let sc = &mut self.scratch;
        match &self.pipeline {
            Pipeline::Cifar(s) => cifar_view(s, img, rng, out_size, out),
            Pipeline::ImageNet(s) => sc.imagenet_view(s, img, rng, out_size, (out, rec)),
            Pipeline::RandAugment(s) => sc.rand_augment_view(s, img, rng, out_size, (out, rec)),
            Pipeline::Randncls(s) => sc.randncls_view(s, img, rng, out_size, (out, rec)),
            Pipeline::Eval(s) => {
                let natural = self.pipeline.output_size((img.width, img.height));
                if natural != out_size {
                    return Err(VisionError::Invalid(format!(
                        "eval of a {}x{} image gives {natural:?}, but the batch holds {ow}x{oh} (mixed image sizes need a crop)",
                        img.width, img.height,
                    )));
                }
                sc.eval_view(s, img, out)
            }
        }
    }
}

/// CIFAR: pad, random crop, flip.
fn cifar_view(s: &CifarSpec, img: &Decoded, rng: &mut Rng, (ow, oh): (u32, u32), out: &mut [u8]) -> Result<()> {
    let (ph, pw) = (img.height + 2 * s.padding, img.width + 2 * s.padding);
    if ow > pw || oh > ph {
        return Err(VisionError::Invalid(format!("cifar crop {ow}x{oh} is larger than the padded {pw}x{ph} image")));
    }
    let top = rng.below((ph - oh + 1) as u64) as u32;
    let left = rng.below((pw - ow + 1) as u64) as u32;
    let flip = rng.bernoulli(s.flip);
    pad_crop_flip_chw(img, s.padding, (ow, oh), top, left, flip, out);
    Ok(())
}

impl Scratch {
    /// ImageNet: random resized crop, flip, colour jitter, grayscale, blur
    /// (recorded into `rec` instead of applied when it is given).
    fn imagenet_view(&mut self, s: &ImageNetSpec, img: &Decoded, rng: &mut Rng, (ow, oh): (u32, u32), out: View<'_>) -> Result<()> {
        let c = img.channels as usize;
        let crop = rrc_params(rng, img.width, img.height, s.scale, s.ratio);
        let flip = rng.bernoulli(s.flip);
        resize_crop_into(&mut self.resizer, img, crop, ow, oh, &mut self.hwc)?;
        // Every draw before any pixel work: none depends on the pixels.
        let jitter = rng.bernoulli(s.jitter_p).then(|| jitter_params(rng, s.jitter));
        let gray = rng.bernoulli(s.grayscale);
        let sigma = rng.bernoulli(s.blur).then(|| rng.uniform(s.blur_sigma.0 as f64, s.blur_sigma.1 as f64) as f32);
        let (out, rec) = out;
        if let Some(p) = rec {
            // The flip is applied here, first; the ops are pointwise or
            // mirror-symmetric, and `flip_last` tells the device stage that
            // the CPU path ran them before it.
            p.flip_last = flip;
            if let Some(jp) = &jitter {
                p.push_jitter(jp, false)?;
            }
            if gray {
                p.push(PhotoOp::Grayscale)?;
            }
            if let Some(sigma) = sigma {
                p.push(PhotoOp::Blur(sigma))?;
            }
        } else {
            if let Some(jp) = &jitter {
                color_jitter(&mut self.hwc, c, jp);
            }
            if gray {
                to_grayscale(&mut self.hwc, c);
            }
            if let Some(sigma) = sigma {
                gaussian_blur(&mut self.hwc, ow as usize, oh as usize, c, sigma, &mut self.tmp);
            }
        }
        write_chw(&self.hwc, ow as usize, oh as usize, c, flip, out);
        Ok(())
    }

    /// Random resized crop into `hwc`, then the flip right away: the
    /// geometric ops that follow (RandAugment's rotate, shear, translate) are
    /// not mirror-symmetric, so the flip comes first, as torchvision's
    /// Compose orders them. Draws the crop, then the flip.
    fn crop_then_flip(
        &mut self,
        img: &Decoded,
        rng: &mut Rng,
        (scale, ratio, flip_p): ((f64, f64), (f64, f64), f64),
        (ow, oh): (u32, u32),
    ) -> Result<()> {
        let crop = rrc_params(rng, img.width, img.height, scale, ratio);
        let flip = rng.bernoulli(flip_p);
        resize_crop_into(&mut self.resizer, img, crop, ow, oh, &mut self.hwc)?;
        if flip {
            flip_hwc(&mut self.hwc, ow as usize, oh as usize, img.channels as usize);
        }
        Ok(())
    }

    /// Random resized crop, flip, then RandAugment (recorded into `rec`
    /// instead of applied when it is given).
    fn rand_augment_view(&mut self, s: &RandAugmentSpec, img: &Decoded, rng: &mut Rng, (ow, oh): (u32, u32), out: View<'_>) -> Result<()> {
        let c = img.channels as usize;
        self.crop_then_flip(img, rng, (s.scale, s.ratio, s.flip), (ow, oh))?;
        let (out, rec) = out;
        if let Some(p) = rec {
            let mut pushed = Ok(());
            crate::augment_randaugment::sample_ops(rng, s.n, s.m, ow as usize, oh as usize, |op, mag| {
                if op != crate::augment_randaugment::Op::Identity && pushed.is_ok() {
                    pushed = p.push(PhotoOp::Ra { op, mag });
                }
            });
            pushed?;
        } else {
            crate::augment_randaugment::rand_augment(
                crate::hwc::HwcMut::new(&mut self.hwc, &mut self.hwc2, ow as usize, oh as usize, c),
                s.n,
                s.m,
                rng,
            );
        }
        write_chw(&self.hwc, ow as usize, oh as usize, c, false, out);
        Ok(())
    }

    /// The GLMC authors' ImageNet-LT pipeline: crop, flip, colour jitter
    /// (PIL's), then timm's RandAugment (recorded into `rec` instead of
    /// applied when it is given).
    fn randncls_view(&mut self, s: &RandnclsSpec, img: &Decoded, rng: &mut Rng, (ow, oh): (u32, u32), out: View<'_>) -> Result<()> {
        let c = img.channels as usize;
        // torchvision draws in this order: crop, flip, RandomApply,
        // ColorJitter's order and factors, then RandAugment.
        self.crop_then_flip(img, rng, (s.scale, s.ratio, s.flip), (ow, oh))?;
        let jitter = rng.bernoulli(s.jitter_p).then(|| jitter_params(rng, s.jitter));
        let ra = s.rand_augment();
        let (out, rec) = out;
        if let Some(p) = rec {
            p.fill = ra.fill;
            if let Some(jp) = &jitter {
                p.push_jitter(jp, true)?;
            }
            ra.sample(rng, &mut self.plan);
            for a in &self.plan {
                p.push(PhotoOp::Timm { op: a.op, arg: a.arg, resample: a.resample })?;
            }
        } else {
            if let Some(jp) = &jitter {
                crate::augment_timm::color_jitter_pil(&mut self.hwc, c, jp);
            }
            ra.apply(crate::hwc::HwcMut::new(&mut self.hwc, &mut self.hwc2, ow as usize, oh as usize, c), &mut self.plan, rng);
        }
        write_chw(&self.hwc, ow as usize, oh as usize, c, false, out);
        Ok(())
    }

    /// Eval: shorter-side resize, then an optional center crop; no randomness.
    fn eval_view(&mut self, s: &EvalSpec, img: &Decoded, out: &mut [u8]) -> Result<()> {
        let c = img.channels as usize;
        let (rw, rh) = match s.resize {
            Some(r) => shorter_side_size(img.width, img.height, r),
            None => (img.width, img.height),
        };
        let full = CropBox { top: 0, left: 0, height: img.height, width: img.width };
        let resized: &[u8] = if (rw, rh) == (img.width, img.height) {
            &img.pixels
        } else {
            resize_crop_into(&mut self.resizer, img, full, rw, rh, &mut self.hwc)?;
            &self.hwc
        };
        match s.crop {
            None => write_chw(resized, rw as usize, rh as usize, c, false, out),
            Some(cs) => {
                let (top, left) = (center_offset(rh, cs), center_offset(rw, cs));
                if cs > rw || cs > rh {
                    return Err(VisionError::Invalid(format!("eval crop {cs} is larger than the resized {rw}x{rh} image")));
                }
                self.hwc2.clear();
                for y in 0..cs as usize {
                    let start = ((top as usize + y) * rw as usize + left as usize) * c;
                    self.hwc2.extend_from_slice(&resized[start..start + cs as usize * c]);
                }
                write_chw(&self.hwc2, cs as usize, cs as usize, c, false, out);
            }
        }
        Ok(())
    }
}

/// A view's output slot and, in device mode, where its photometric part is recorded.
type View<'a> = (&'a mut [u8], Option<&'a mut ViewParams>);

/// Mirrors an HWC image left-right in place.
pub fn flip_hwc(px: &mut [u8], width: usize, height: usize, c: usize) {
    for y in 0..height {
        let row = &mut px[y * width * c..(y + 1) * width * c];
        for x in 0..width / 2 {
            for ch in 0..c {
                row.swap(x * c + ch, (width - 1 - x) * c + ch);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pattern(w: u32, h: u32, c: u8) -> Decoded {
        let mut px = Vec::with_capacity((w * h * c as u32) as usize);
        for y in 0..h {
            for x in 0..w {
                for ch in 0..c as u32 {
                    px.push(((x * 13 + y * 7 + ch * 61 + (x * y) % 17) % 256) as u8);
                }
            }
        }
        Decoded::try_new(w, h, c, px).unwrap()
    }

    fn hwc_at(img: &Decoded, x: u32, y: u32, ch: usize) -> u8 {
        img.pixels[((y * img.width + x) as usize) * img.channels as usize + ch]
    }

    #[test]
    fn rrc_respects_scale_and_ratio_bounds() {
        let mut rng = Rng::new(1);
        let (scale, ratio) = ((0.08, 1.0), (3.0 / 4.0, 4.0 / 3.0));
        for &(w, h) in &[(500u32, 375u32), (224, 224), (1000, 200), (40, 300), (1, 1), (3, 2)] {
            for _ in 0..2000 {
                let b = rrc_params(&mut rng, w, h, scale, ratio);
                assert!(b.width >= 1 && b.height >= 1);
                assert!(b.left + b.width <= w && b.top + b.height <= h, "{b:?} outside {w}x{h}");
                let a = (b.width * b.height) as f64 / (w * h) as f64;
                let r = b.width as f64 / b.height as f64;
                // Rounding to whole pixels can move the ratio/area slightly;
                // allow one pixel of slack on each side.
                let rmax = (b.width + 1) as f64 / (b.height - 1).max(1) as f64;
                let rmin = (b.width - 1).max(1) as f64 / (b.height + 1) as f64;
                let extreme_source = w as f64 / h as f64 > ratio.1 * 1.5 || (w as f64 / h as f64) < ratio.0 / 1.5;
                if w * h >= 100 && !extreme_source {
                    assert!(rmax >= ratio.0 && rmin <= ratio.1, "ratio {r} of {b:?} in {w}x{h}");
                    assert!(a <= 1.0 + 1e-9);
                    assert!((b.width + 1) as f64 * (b.height + 1) as f64 / (w * h) as f64 >= scale.0, "area {a}");
                }
            }
        }
    }

    #[test]
    fn rrc_fallback_is_the_clamped_center_crop() {
        // A scale range no crop can satisfy forces the fallback.
        let mut rng = Rng::new(5);
        let b = rrc_params(&mut rng, 1000, 100, (2.0, 3.0), (0.75, 4.0 / 3.0));
        assert_eq!(b, CropBox { top: 0, left: (1000 - 133) / 2, height: 100, width: 133 });
        let b = rrc_params(&mut rng, 300, 200, (2.0, 3.0), (0.75, 4.0 / 3.0));
        // 300/200 = 1.5 > 4/3: the width clamps to round(200 · 4/3) = 267.
        assert_eq!(b, CropBox { top: 0, left: 16, height: 200, width: 267 });
    }

    #[test]
    fn flip_mirrors_exactly() {
        let img = pattern(7, 5, 3);
        let mut a = vec![0; 7 * 5 * 3];
        let mut b = vec![0; 7 * 5 * 3];
        write_chw(&img.pixels, 7, 5, 3, false, &mut a);
        write_chw(&img.pixels, 7, 5, 3, true, &mut b);
        for ch in 0..3 {
            for y in 0..5 {
                for x in 0..7 {
                    assert_eq!(a[ch * 35 + y * 7 + x], hwc_at(&img, x as u32, y as u32, ch));
                    assert_eq!(b[ch * 35 + y * 7 + x], a[ch * 35 + y * 7 + (6 - x)]);
                }
            }
        }
        let mut h = img.pixels.clone();
        flip_hwc(&mut h, 7, 5, 3);
        flip_hwc(&mut h, 7, 5, 3);
        assert_eq!(h, img.pixels);
    }

    /// Reference: materialise the zero-padded image, slice it, mirror it —
    /// what `transforms.RandomCrop(32, padding=4)` + `RandomHorizontalFlip`
    /// do, written the slow way.
    fn pad_crop_reference(img: &Decoded, pad: u32, size: u32, top: u32, left: u32, flip: bool) -> Vec<u8> {
        let (pw, ph, c) = (img.width + 2 * pad, img.height + 2 * pad, img.channels as u32);
        let mut padded = vec![0u8; (pw * ph * c) as usize];
        for y in 0..img.height {
            for x in 0..img.width {
                for ch in 0..c {
                    padded[(((y + pad) * pw + x + pad) * c + ch) as usize] = hwc_at(img, x, y, ch as usize);
                }
            }
        }
        let mut out = vec![0u8; (size * size * c) as usize];
        for ch in 0..c {
            for y in 0..size {
                for x in 0..size {
                    let sx = if flip { left + size - 1 - x } else { left + x };
                    out[((ch * size + y) * size + x) as usize] = padded[(((top + y) * pw + sx) * c + ch) as usize];
                }
            }
        }
        out
    }

    #[test]
    fn pad_crop_matches_reference_for_every_offset() {
        for c in [1u8, 3] {
            let img = pattern(32, 32, c);
            let mut out = vec![0u8; 32 * 32 * c as usize];
            for top in 0..=8 {
                for left in 0..=8 {
                    for flip in [false, true] {
                        pad_crop_flip_chw(&img, 4, (32, 32), top, left, flip, &mut out);
                        assert_eq!(out, pad_crop_reference(&img, 4, 32, top, left, flip), "{top} {left} {flip}");
                    }
                }
            }
        }
        // Through the pipeline: every view is one of the reference crops.
        let img = pattern(32, 32, 3);
        let mut aug = Augmenter::try_new(Pipeline::Cifar(CifarSpec::default()), 3).unwrap();
        let mut rng = Rng::new(9);
        let mut out = vec![0u8; 32 * 32 * 3];
        for _ in 0..20 {
            aug.view_into(&img, &mut rng, (32, 32), &mut out).unwrap();
            let found = (0..=8).any(|t| (0..=8).any(|l| [false, true].iter().any(|&f| pad_crop_reference(&img, 4, 32, t, l, f) == out)));
            assert!(found);
        }
    }

    #[test]
    fn jitter_with_zero_strength_is_identity() {
        let img = pattern(40, 30, 3);
        let mut rng = Rng::new(2);
        for _ in 0..10 {
            let p = jitter_params(&mut rng, [0.0, 0.0, 0.0]);
            let mut px = img.pixels.clone();
            color_jitter(&mut px, 3, &p);
            assert_eq!(px, img.pixels);
        }
        // And factor exactly 1 is the identity too.
        let mut px = img.pixels.clone();
        adjust_brightness(&mut px, 1.0);
        adjust_contrast(&mut px, 3, 1.0);
        adjust_saturation(&mut px, 3, 1.0);
        assert_eq!(px, img.pixels);
        // A whole ImageNet pipeline with every photometric op off is a pure
        // crop-resize: a constant image stays constant.
        let spec = ImageNetSpec { jitter: [0.0; 3], grayscale: 0.0, blur: 0.0, ..ImageNetSpec::default() };
        let flat = Decoded::try_new(50, 40, 3, vec![91; 50 * 40 * 3]).unwrap();
        let mut aug = Augmenter::try_new(Pipeline::ImageNet(spec), 3).unwrap();
        let mut out = vec![0u8; 24 * 24 * 3];
        aug.view_into(&flat, &mut rng, (24, 24), &mut out).unwrap();
        assert!(out.iter().all(|&v| v == 91));
    }

    #[test]
    fn jitter_ops_move_values_as_expected() {
        let mut px = vec![100u8, 50, 200];
        adjust_brightness(&mut px, 0.5);
        assert_eq!(px, vec![50, 25, 100]);
        let mut px = vec![10u8, 10, 10, 200, 200, 200];
        adjust_contrast(&mut px, 3, 0.0);
        assert!(px.iter().all(|&v| v == 105));
        let mut px = vec![255u8, 0, 0];
        adjust_saturation(&mut px, 3, 0.0);
        assert_eq!(px, vec![76, 76, 76]);
    }

    #[test]
    fn blur_keeps_constant_images_and_smooths_edges() {
        let mut tmp = Vec::new();
        let mut flat = vec![123u8; 20 * 10 * 3];
        gaussian_blur(&mut flat, 20, 10, 3, 1.7, &mut tmp);
        assert!(flat.iter().all(|&v| v == 123));
        let mut step: Vec<u8> = (0..20 * 10).flat_map(|i| if i % 20 < 10 { [0u8] } else { [200u8] }).collect();
        gaussian_blur(&mut step, 20, 10, 1, 1.0, &mut tmp);
        assert!(step[9] > 0 && step[9] < 100 && step[10] > 100 && step[10] < 200);
        // Mirror-symmetric kernel: blur then flip == flip then blur.
        let img = pattern(17, 9, 3);
        let (mut a, mut b) = (img.pixels.clone(), img.pixels.clone());
        gaussian_blur(&mut a, 17, 9, 3, 1.3, &mut tmp);
        flip_hwc(&mut a, 17, 9, 3);
        flip_hwc(&mut b, 17, 9, 3);
        gaussian_blur(&mut b, 17, 9, 3, 1.3, &mut tmp);
        assert_eq!(a, b);
    }

    #[test]
    fn eval_sizes_follow_torchvision() {
        assert_eq!(shorter_side_size(500, 375, 256), (341, 256));
        assert_eq!(shorter_side_size(375, 500, 256), (256, 341));
        assert_eq!(center_offset(341, 224), 58); // Python: int(round(58.5)) == 58
        assert_eq!(center_offset(343, 224), 60); // int(round(59.5)) == 60
        let p = Pipeline::Eval(EvalSpec::default());
        assert_eq!(p.output_size((32, 32)), (32, 32));
        let img = pattern(32, 32, 3);
        let mut aug = Augmenter::try_new(p, 3).unwrap();
        let mut out = vec![0u8; 32 * 32 * 3];
        aug.view_into(&img, &mut Rng::new(0), (32, 32), &mut out).unwrap();
        let mut want = vec![0u8; 32 * 32 * 3];
        write_chw(&img.pixels, 32, 32, 3, false, &mut want);
        assert_eq!(out, want);
    }

    #[test]
    fn crops_stay_inside_for_every_pipeline() {
        let img = pattern(64, 48, 3);
        for name in ["cifar", "imagenet", "randaugment", "imagenet-randncls", "eval"] {
            let mut p = Pipeline::by_name(name).unwrap();
            if let Pipeline::Cifar(s) = &mut p {
                s.size = Some(32);
            }
            let (w, h) = p.output_size((64, 48));
            let (w, h) = if matches!(p, Pipeline::Eval(_)) { (w.min(48), h.min(48)) } else { (w, h) };
            if let Pipeline::Eval(s) = &mut p {
                s.resize = Some(48);
                s.crop = Some(40);
            }
            let (w, h) = if matches!(p, Pipeline::Eval(_)) { (40, 40) } else { (w, h) };
            let mut aug = Augmenter::try_new(p, 3).unwrap();
            let mut out = vec![0u8; (w * h * 3) as usize];
            let mut rng = Rng::new(4);
            for _ in 0..5 {
                aug.view_into(&img, &mut rng, (w, h), &mut out).unwrap();
            }
            assert!(aug.view_into(&img, &mut rng, (w + 1, h), &mut out).is_err());
        }
    }

    #[test]
    fn pipelines_parse_from_toml_like_json() {
        let p: Pipeline = serde_json::from_str(r#"{"kind":"imagenet","size":192,"blur":0.0}"#).unwrap();
        match p {
            Pipeline::ImageNet(s) => {
                assert_eq!(s.size, 192);
                assert_eq!(s.blur, 0.0);
                assert_eq!(s.jitter, [0.4, 0.4, 0.4]);
            }
            _ => panic!(),
        }
        let s: PipelineSetting = serde_json::from_str(r#""eval-identity""#).unwrap();
        assert_eq!(s.resolve().unwrap(), Pipeline::Eval(EvalSpec::default()));
        let s: PipelineSetting = serde_json::from_str(r#"{"kind":"randaugment","m":9}"#).unwrap();
        assert!(matches!(s.resolve().unwrap(), Pipeline::RandAugment(RandAugmentSpec { m: 9, n: 2, .. })));
        assert!(serde_json::from_str::<PipelineSetting>(r#""nope""#).unwrap().resolve().is_err());
        let p: Pipeline = serde_json::from_str(r#"{"kind":"cifar"}"#).unwrap();
        assert_eq!(p, Pipeline::Cifar(CifarSpec::default()));
        assert!(serde_json::from_str::<Pipeline>(r#"{"kind":"cifar","sise":3}"#).is_err());
    }
}
