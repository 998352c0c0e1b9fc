//! The photometric stage as data: what a view's colour and pixel-value
//! operations are, recorded by the loader's CPU workers so the device can
//! apply them to the whole batch (`loader.photometric = "device"`,
//! DALI/FFCV-style: geometry shrinks the data and stays on the CPU, per-pixel
//! work moves to the accelerator).
//!
//! [`crate::augment::Augmenter::view_geometric_into`] writes a view's
//! geometric part (decode, random resized crop, resize, flip) and records
//! the rest in a [`ViewParams`]: the ColorJitter factors in their sampled
//! order, the grayscale flag, the blur σ, and RandAugment's operations with
//! their magnitudes (torchvision's [`Op`]s, or timm's [`TimmOp`]s with their
//! filter), in the order the CPU path runs them. The random draws are the
//! CPU path's, in the same order from the same generator, so a recorded view
//! is the same function of `(seed, epoch, step, slot)`.
//!
//! [`ViewParams::apply_cpu`] runs a record with the CPU kernels themselves:
//! the reference the device stage (lt-glmc's `photometric`) is tested
//! against, and what makes `view_geometric_into` + `apply_cpu` equal to
//! `view_into` byte for byte (the tests below). [`pointwise_lut`] and
//! [`PhotoOp::affine`] give the device stage the parts it can take from the
//! CPU kernels directly: the lookup table of every operation that maps each
//! value on its own, and the exact matrix of every geometric one.

use crate::augment::{adjust_brightness, adjust_contrast, adjust_saturation, flip_hwc, gaussian_blur, to_grayscale, JitterParams};
use crate::augment_randaugment::Op;
use crate::augment_timm::{pil_luma, Resample, TimmOp};
use crate::{Result, VisionError};
use serde::{Deserialize, Serialize};

/// Where a pipeline's photometric stage runs (`loader.photometric`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Photometric {
    /// On the loader's CPU workers (every view complete in the batch).
    #[default]
    Cpu,
    /// Recorded by the workers ([`ViewParams`] in the batch) and applied to
    /// the batch on the device.
    Device,
}

impl Photometric {
    pub fn as_str(self) -> &'static str {
        match self {
            Photometric::Cpu => "cpu",
            Photometric::Device => "device",
        }
    }
}

/// The most operations one view records: ImageNet's five, `imagenet-randncls`'
/// three jitter factors and up to 16 timm ops, `randaugment` with `n` up to 20.
pub const MAX_PHOTO_OPS: usize = 20;

/// One recorded photometric operation, with everything its kernel reads.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum PhotoOp {
    /// [`adjust_brightness`] (torchvision-tensor rounding, the `imagenet`
    /// pipeline's ColorJitter).
    Brightness(f32),
    /// [`adjust_contrast`] (blend with the mean luma).
    Contrast(f32),
    /// [`adjust_saturation`] (blend with each pixel's luma).
    Saturation(f32),
    /// [`to_grayscale`].
    Grayscale,
    /// [`gaussian_blur`] with this σ.
    Blur(f32),
    /// torchvision RandAugment: [`crate::augment_randaugment::apply_op`] at
    /// this signed magnitude (never `Op::Identity`).
    Ra { op: Op, mag: f64 },
    /// timm RandAugment on PIL kernels: [`crate::augment_timm::apply_op`]
    /// with this signed argument and filter, filled with [`ViewParams::fill`].
    /// `imagenet-randncls`' ColorJitter (PIL's `ImageEnhance`) is recorded as
    /// timm's Brightness, Contrast and Color, which are the same kernels.
    Timm { op: TimmOp, arg: f64, resample: Resample },
}

impl PhotoOp {
    /// The output → input matrix of a geometric op on a `w × h` view
    /// ([`crate::augment_randaugment::affine_matrix`],
    /// [`crate::augment_timm::affine_matrix`]); `None` for the others and for
    /// a timm rotation by a multiple of 360° (the identity).
    pub fn affine(&self, w: usize, h: usize) -> Option<[f64; 6]> {
        match *self {
            PhotoOp::Ra { op, mag } => crate::augment_randaugment::affine_matrix(op, mag, w, h),
            PhotoOp::Timm { op, arg, .. } => crate::augment_timm::affine_matrix(op, arg, w, h),
            _ => None,
        }
    }

    /// True for the resampling ops (rotate, shear, translate).
    pub fn is_geometric(&self) -> bool {
        match *self {
            PhotoOp::Ra { op, .. } => matches!(op, Op::ShearX | Op::ShearY | Op::TranslateX | Op::TranslateY | Op::Rotate),
            PhotoOp::Timm { op, .. } => op.is_geometric(),
            _ => false,
        }
    }
}

/// The photometric stage of one view, as recorded: a fixed-size list of at
/// most [`MAX_PHOTO_OPS`] operations in the order they run, plus what the
/// kernels need besides their own arguments. 328 bytes, `Copy`.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct ViewParams {
    ops: [PhotoOp; MAX_PHOTO_OPS],
    len: u8,
    /// The CPU path runs the ops *before* the horizontal flip (the
    /// `imagenet` pipeline flips while writing CHW), while the recorded view
    /// is already flipped. Its ops are pointwise or mirror-symmetric, so only
    /// the order of a blur's sums (and so its last bits) depends on this.
    pub flip_last: bool,
    /// Fill of timm's geometric ops (`img_mean`).
    pub fill: [u8; 3],
}

impl Default for ViewParams {
    fn default() -> Self {
        ViewParams::EMPTY
    }
}

impl ViewParams {
    /// No operation.
    pub const EMPTY: ViewParams = ViewParams { ops: [PhotoOp::Grayscale; MAX_PHOTO_OPS], len: 0, flip_last: false, fill: [0; 3] };

    /// A record of `ops` (tests, benchmarks); more than [`MAX_PHOTO_OPS`] is an error.
    pub fn from_ops(ops: &[PhotoOp]) -> Result<ViewParams> {
        let mut p = ViewParams::EMPTY;
        for op in ops {
            p.push(*op)?;
        }
        Ok(p)
    }

    /// The operations, in the order they run.
    pub fn ops(&self) -> &[PhotoOp] {
        &self.ops[..self.len as usize]
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    pub fn clear(&mut self) {
        *self = ViewParams::EMPTY;
    }

    /// Appends an op; a full record is an error.
    pub fn push(&mut self, op: PhotoOp) -> Result<()> {
        if self.len as usize >= MAX_PHOTO_OPS {
            return Err(VisionError::Invalid(format!(
                "a view records at most {MAX_PHOTO_OPS} photometric ops (loader.photometric = \"device\"); use fewer RandAugment ops"
            )));
        }
        self.ops[self.len as usize] = op;
        self.len += 1;
        Ok(())
    }

    /// Sampled ColorJitter in its order: [`crate::augment::color_jitter`]'s
    /// kernels, or with `pil` [`crate::augment_timm::color_jitter_pil`]'s.
    pub fn push_jitter(&mut self, p: &JitterParams, pil: bool) -> Result<()> {
        for which in p.order {
            let (f, tv, timm) = match which {
                0 => (p.brightness, PhotoOp::Brightness as fn(f32) -> PhotoOp, TimmOp::Brightness),
                1 => (p.contrast, PhotoOp::Contrast as fn(f32) -> PhotoOp, TimmOp::Contrast),
                _ => (p.saturation, PhotoOp::Saturation as fn(f32) -> PhotoOp, TimmOp::Color),
            };
            if let Some(f) = f {
                // f32 → f64 → f32 is exact: apply_op's `arg as f32` gives f back.
                self.push(if pil { PhotoOp::Timm { op: timm, arg: f as f64, resample: Resample::Bilinear } } else { tv(f) })?;
            }
        }
        Ok(())
    }

    /// The fill of timm's geometric ops for a `c`-channel view (the PIL luma
    /// of `fill` on gray views, as [`crate::augment_timm::pil_affine`]).
    pub fn fill_for(&self, c: usize) -> [u8; 3] {
        if c == 3 {
            self.fill
        } else {
            [pil_luma(self.fill[0], self.fill[1], self.fill[2]); 3]
        }
    }

    /// Runs the record on an interleaved HWC view with the CPU kernels
    /// (`scratch` and `tmp` are reusable buffers). With `flip_last` the view
    /// is mirrored back first and again after, which is the CPU path's order
    /// exactly.
    pub fn apply_cpu(&self, px: &mut Vec<u8>, scratch: &mut Vec<u8>, tmp: &mut Vec<f32>, (w, h, c): (usize, usize, usize)) {
        if self.is_empty() {
            return;
        }
        if self.flip_last {
            flip_hwc(px, w, h, c);
        }
        for op in self.ops() {
            apply_one(op, px, scratch, tmp, (w, h, c), self.fill);
        }
        if self.flip_last {
            flip_hwc(px, w, h, c);
        }
    }

    /// [`ViewParams::apply_cpu`] on a planar CHW view (a batch slot).
    pub fn apply_cpu_chw(&self, chw: &mut [u8], (w, h, c): (usize, usize, usize)) {
        if self.is_empty() {
            return;
        }
        let plane = w * h;
        let mut hwc = vec![0u8; chw.len()];
        for ch in 0..c {
            for (i, &v) in chw[ch * plane..(ch + 1) * plane].iter().enumerate() {
                hwc[i * c + ch] = v;
            }
        }
        self.apply_cpu(&mut hwc, &mut Vec::new(), &mut Vec::new(), (w, h, c));
        for ch in 0..c {
            for (i, d) in chw[ch * plane..(ch + 1) * plane].iter_mut().enumerate() {
                *d = hwc[i * c + ch];
            }
        }
    }
}

fn apply_one(op: &PhotoOp, px: &mut Vec<u8>, scratch: &mut Vec<u8>, tmp: &mut Vec<f32>, (w, h, c): (usize, usize, usize), fill: [u8; 3]) {
    match *op {
        PhotoOp::Brightness(f) => adjust_brightness(px, f),
        PhotoOp::Contrast(f) => adjust_contrast(px, c, f),
        PhotoOp::Saturation(f) => adjust_saturation(px, c, f),
        PhotoOp::Grayscale => to_grayscale(px, c),
        PhotoOp::Blur(sigma) => gaussian_blur(px, w, h, c, sigma, tmp),
        PhotoOp::Ra { op, mag } => crate::augment_randaugment::apply_op(px, scratch, w, h, c, op, mag),
        PhotoOp::Timm { op, arg, resample } => {
            crate::augment_timm::apply_op(crate::hwc::HwcMut::new(px, scratch, w, h, c), op, arg, resample, fill)
        }
    }
}

/// The lookup table of an op that maps every value on its own, with
/// parameters fixed by the record (brightness, invert, posterize, solarize,
/// solarize-add): the CPU kernel itself applied to the ramp `0..=255`, so
/// the table is the kernel's, bit for bit. `None` for ops that read other
/// pixels or image statistics.
pub fn pointwise_lut(op: &PhotoOp) -> Option<[u8; 256]> {
    let pointwise = match *op {
        PhotoOp::Brightness(_) => true,
        PhotoOp::Ra { op, .. } => matches!(op, Op::Identity | Op::Brightness | Op::Posterize | Op::Solarize),
        PhotoOp::Timm { op, .. } => {
            matches!(op, TimmOp::Invert | TimmOp::PosterizeTpu | TimmOp::Solarize | TimmOp::SolarizeAdd | TimmOp::Brightness)
        }
        _ => false,
    };
    if !pointwise {
        return None;
    }
    let mut ramp: Vec<u8> = (0..=255).collect();
    // One channel, 256 × 1: every pointwise kernel treats values alike.
    apply_one(op, &mut ramp, &mut Vec::new(), &mut Vec::new(), (256, 1, 1), [0; 3]);
    let mut lut = [0u8; 256];
    lut.copy_from_slice(&ramp);
    Some(lut)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::augment::{Augmenter, ImageNetSpec, Pipeline, RandAugmentSpec, RandnclsSpec};
    use crate::augment_randaugment::{magnitude, OPS};
    use crate::augment_timm::{level_to_arg, RAND_TRANSFORMS};
    use crate::codec::Decoded;
    use lt_core::rng::Rng;

    fn photo(w: u32, h: u32, c: u8, seed: u64) -> Decoded {
        // Smooth gradients plus noise: every kernel has something to do.
        let mut rng = Rng::new(seed);
        let mut px = Vec::with_capacity((w * h * c as u32) as usize);
        for y in 0..h {
            for x in 0..w {
                for ch in 0..c as u32 {
                    let base = (x * 255 / w.max(1) + y * 97 / h.max(1) + ch * 60) as f64;
                    px.push((base + rng.uniform(-20.0, 20.0)).clamp(0.0, 255.0) as u8);
                }
            }
        }
        Decoded::try_new(w, h, c, px).unwrap()
    }

    /// `view_geometric_into` + `apply_cpu_chw` gives `view_into`'s bytes for
    /// the same generator, and leaves the generator in the same state.
    fn recorded_equals_direct(p: Pipeline, c: u8, views: usize) -> usize {
        let mut a = Augmenter::try_new(p.clone(), c).unwrap();
        let mut b = Augmenter::try_new(p, c).unwrap();
        let (w, h) = (40u32, 36u32);
        let mut recorded_ops = 0;
        for i in 0..views {
            let img = photo(57 + i as u32 % 13, 45 + i as u32 % 7, c, i as u64);
            let mut ra = Rng::new(1000 + i as u64);
            let mut rb = ra.clone();
            let n = (w * h) as usize * c as usize;
            let (mut direct, mut geo) = (vec![0u8; n], vec![0u8; n]);
            a.view_into(&img, &mut ra, (w, h), &mut direct).unwrap();
            let mut params = ViewParams::EMPTY;
            b.view_geometric_into(&img, &mut rb, (w, h), &mut geo, &mut params).unwrap();
            assert_eq!(ra.state(), rb.state(), "view {i}: the generators diverged");
            recorded_ops += params.ops().len();
            params.apply_cpu_chw(&mut geo, (w as usize, h as usize, c as usize));
            assert_eq!(direct, geo, "view {i}: {params:?}");
        }
        recorded_ops
    }

    #[test]
    fn recorded_views_equal_the_cpu_path() {
        for c in [3u8, 1] {
            let imagenet = Pipeline::ImageNet(ImageNetSpec { size: 40, ..ImageNetSpec::default() });
            assert!(recorded_equals_direct(imagenet, c, 60) > 60);
            let ra = Pipeline::RandAugment(RandAugmentSpec { size: 40, n: 3, m: 15, ..RandAugmentSpec::default() });
            assert!(recorded_equals_direct(ra, c, 80) > 80);
            let randncls = Pipeline::Randncls(RandnclsSpec { size: 40, ..RandnclsSpec::default() });
            assert!(recorded_equals_direct(randncls, c, 80) > 80);
        }
        // Pipelines without a photometric stage record nothing.
        for name in ["cifar", "eval-identity"] {
            let p = Pipeline::by_name(name).unwrap();
            assert!(!p.has_photometric());
            let img = photo(40, 36, 3, 0);
            let mut aug = Augmenter::try_new(p, 3).unwrap();
            let mut params = ViewParams::from_ops(&[PhotoOp::Grayscale]).unwrap();
            let mut out = vec![0u8; 40 * 36 * 3];
            aug.view_geometric_into(&img, &mut Rng::new(0), (40, 36), &mut out, &mut params).unwrap();
            assert!(params.is_empty());
        }
    }

    #[test]
    fn every_pipeline_fits_the_record() {
        for name in ["imagenet", "randaugment", "imagenet-randncls"] {
            let p = Pipeline::by_name(name).unwrap();
            assert!(p.has_photometric() && p.max_photometric_ops() <= MAX_PHOTO_OPS, "{name}");
        }
        let big = Pipeline::Randncls(RandnclsSpec { n: 16, ..RandnclsSpec::default() });
        assert_eq!(big.max_photometric_ops(), 19);
        let mut p = ViewParams::EMPTY;
        for _ in 0..MAX_PHOTO_OPS {
            p.push(PhotoOp::Grayscale).unwrap();
        }
        assert!(p.push(PhotoOp::Grayscale).is_err());
        assert_eq!(std::mem::size_of::<ViewParams>(), 328);
    }

    #[test]
    fn pointwise_luts_are_the_kernels() {
        let img = photo(23, 17, 3, 9);
        let mut ops = vec![PhotoOp::Brightness(0.63), PhotoOp::Brightness(1.37)];
        for op in OPS {
            for m in 0..=30 {
                let (mag, signed) = magnitude(op, m, 23, 17);
                ops.push(PhotoOp::Ra { op, mag });
                if signed {
                    ops.push(PhotoOp::Ra { op, mag: -mag });
                }
            }
        }
        for op in RAND_TRANSFORMS {
            for level in [0.0, 2.5, 5.0, 7.5, 9.3, 10.0] {
                let arg = level_to_arg(op, level);
                ops.push(PhotoOp::Timm { op, arg, resample: Resample::Bilinear });
            }
        }
        let mut luts = 0;
        for op in ops {
            let Some(lut) = pointwise_lut(&op) else { continue };
            luts += 1;
            let mut want = img.pixels.clone();
            apply_one(&op, &mut want, &mut Vec::new(), &mut Vec::new(), (23, 17, 3), [0; 3]);
            let got: Vec<u8> = img.pixels.iter().map(|&v| lut[v as usize]).collect();
            assert_eq!(got, want, "{op:?}");
        }
        assert!(luts > 30);
    }
}
