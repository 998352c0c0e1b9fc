//! RandAugment (Cubuk et al., "RandAugment: Practical automated data
//! augmentation with a reduced search space", arXiv:1909.13719), following
//! torchvision's `transforms.RandAugment`: 14 operations, 31 magnitude bins,
//! `n` operations drawn uniformly with replacement, signed magnitudes negated
//! with probability ½, geometric operations with nearest-neighbour sampling
//! and zero fill.
//!
//! Works on interleaved HWC `u8`, 1 or 3 channels.

use crate::augment::{adjust_brightness, adjust_contrast, adjust_saturation};
use lt_core::rng::Rng;

/// The operations, in torchvision's order (the op index is drawn over this).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Op {
    Identity,
    ShearX,
    ShearY,
    TranslateX,
    TranslateY,
    Rotate,
    Brightness,
    Color,
    Contrast,
    Sharpness,
    Posterize,
    Solarize,
    AutoContrast,
    Equalize,
}

pub const OPS: [Op; 14] = [
    Op::Identity,
    Op::ShearX,
    Op::ShearY,
    Op::TranslateX,
    Op::TranslateY,
    Op::Rotate,
    Op::Brightness,
    Op::Color,
    Op::Contrast,
    Op::Sharpness,
    Op::Posterize,
    Op::Solarize,
    Op::AutoContrast,
    Op::Equalize,
];

const BINS: u32 = 31;

fn linspace(lo: f64, hi: f64, m: u32) -> f64 {
    lo + (hi - lo) * m as f64 / (BINS - 1) as f64
}

/// Magnitude of `op` at bin `m` for a `width × height` image, and whether
/// it is signed (torchvision `_augmentation_space`).
pub fn magnitude(op: Op, m: u32, width: usize, height: usize) -> (f64, bool) {
    match op {
        Op::Identity | Op::AutoContrast | Op::Equalize => (0.0, false),
        Op::ShearX | Op::ShearY => (linspace(0.0, 0.3, m), true),
        Op::TranslateX => (linspace(0.0, 150.0 / 331.0 * width as f64, m), true),
        Op::TranslateY => (linspace(0.0, 150.0 / 331.0 * height as f64, m), true),
        Op::Rotate => (linspace(0.0, 30.0, m), true),
        Op::Brightness | Op::Color | Op::Contrast | Op::Sharpness => (linspace(0.0, 0.9, m), true),
        // 8 - round(m / 7.5) bits; Python rounds half to even.
        Op::Posterize => (8.0 - (m as f64 / ((BINS - 1) as f64 / 4.0)).round_ties_even(), false),
        Op::Solarize => (linspace(255.0, 0.0, m), false),
    }
}

/// Applies `n` random operations at magnitude bin `m` to `img` in place.
pub fn rand_augment(img: crate::hwc::HwcMut<'_>, n: u32, m: u32, rng: &mut Rng) {
    let crate::hwc::HwcMut { px, scratch, w, h, c } = img;
    sample_ops(rng, n, m, w, h, |op, mag| apply_op(px, scratch, w, h, c, op, mag));
}

/// Draws the `n` operations of one image, calling `each(op, signed
/// magnitude)` in order: per operation its index, then the sign of a signed
/// one. No draw depends on the pixels, so recording the operations
/// (`loader.photometric = "device"`) and applying them at once draw the same.
pub fn sample_ops(rng: &mut Rng, n: u32, m: u32, width: usize, height: usize, mut each: impl FnMut(Op, f64)) {
    for _ in 0..n {
        let op = OPS[rng.below(OPS.len() as u64) as usize];
        let (mut mag, signed) = magnitude(op, m, width, height);
        if signed && rng.below(2) == 1 {
            mag = -mag;
        }
        each(op, mag);
    }
}

/// The output → input map `[m0, m1, m2, m3, m4, m5]` of a geometric
/// operation (output pixel centre `(x + ½, y + ½)` reads input
/// `(m0·x + m1·y + m2, m3·x + m4·y + m5)`, nearest, zero outside); `None`
/// for the others.
pub fn affine_matrix(op: Op, mag: f64, w: usize, h: usize) -> Option<[f64; 6]> {
    Some(match op {
        // Shears about the top-left corner (torchvision passes center=[0, 0]).
        Op::ShearX => [1.0, mag, 0.0, 0.0, 1.0, 0.0],
        Op::ShearY => [1.0, 0.0, 0.0, mag, 1.0, 0.0],
        Op::TranslateX => [1.0, 0.0, -(mag.trunc()), 0.0, 1.0, 0.0],
        Op::TranslateY => [1.0, 0.0, 0.0, 0.0, 1.0, -(mag.trunc())],
        Op::Rotate => {
            // Output → input map of a counter-clockwise rotation about the
            // image centre.
            let (s, co) = mag.to_radians().sin_cos();
            let (cx, cy) = (w as f64 * 0.5, h as f64 * 0.5);
            [co, -s, cx - co * cx + s * cy, s, co, cy - s * cx - co * cy]
        }
        _ => return None,
    })
}

/// One operation at an explicit magnitude.
pub fn apply_op(px: &mut Vec<u8>, scratch: &mut Vec<u8>, w: usize, h: usize, c: usize, op: Op, mag: f64) {
    match op {
        Op::Identity => {}
        Op::ShearX | Op::ShearY | Op::TranslateX | Op::TranslateY | Op::Rotate => {
            if let Some(m) = affine_matrix(op, mag, w, h) {
                affine_nearest(px, scratch, w, h, c, m)
            }
        }
        Op::Brightness => adjust_brightness(px, (1.0 + mag) as f32),
        Op::Color => adjust_saturation(px, c, (1.0 + mag) as f32),
        Op::Contrast => adjust_contrast(px, c, (1.0 + mag) as f32),
        Op::Sharpness => sharpness(px, scratch, w, h, c, (1.0 + mag) as f32),
        Op::Posterize => {
            let bits = mag as u32;
            let mask = !((1u32 << (8 - bits)) - 1) as u8;
            px.iter_mut().for_each(|v| *v &= mask);
        }
        Op::Solarize => {
            let mut lut = [0u8; 256];
            for (i, o) in lut.iter_mut().enumerate() {
                *o = if i as f64 >= mag { 255 - i as u8 } else { i as u8 };
            }
            px.iter_mut().for_each(|v| *v = lut[*v as usize]);
        }
        Op::AutoContrast => autocontrast(px, c),
        Op::Equalize => equalize(px, c),
    }
}

/// Output pixel `(x, y)` (centre `x + ½`) reads input at
/// `(m0·x + m1·y + m2, m3·x + m4·y + m5)`, nearest, zero outside.
fn affine_nearest(px: &mut Vec<u8>, scratch: &mut Vec<u8>, w: usize, h: usize, c: usize, m: [f64; 6]) {
    scratch.clear();
    scratch.resize(px.len(), 0);
    crate::kernels::affine_nearest(px, scratch, w, h, c, &m);
    std::mem::swap(px, scratch);
}

/// PIL's SHARPEN-style smoothing kernel `[[1,1,1],[1,5,1],[1,1,1]] / 13` on
/// the interior (border pixels keep their value), blended by `f`.
fn sharpness(px: &mut [u8], scratch: &mut Vec<u8>, w: usize, h: usize, c: usize, f: f32) {
    if w < 3 || h < 3 {
        return;
    }
    crate::kernels::smooth3x3(px, scratch, w, h, c);
    crate::kernels::tv_blend_with(px, scratch, f);
}

fn autocontrast(px: &mut [u8], c: usize) {
    for ch in 0..c {
        let (mut lo, mut hi) = (255u8, 0u8);
        for v in px.iter().skip(ch).step_by(c) {
            lo = lo.min(*v);
            hi = hi.max(*v);
        }
        if hi == lo {
            continue;
        }
        let scale = 255.0 / (hi - lo) as f32;
        for v in px.iter_mut().skip(ch).step_by(c) {
            *v = ((*v - lo) as f32 * scale).clamp(0.0, 255.0) as u8;
        }
    }
}

/// torchvision `_equalize_single_image`, per channel: the same integer
/// algorithm as PIL's `ImageOps.equalize` (checked against PIL in
/// tests/timm_randaugment.rs).
pub(crate) fn equalize(px: &mut [u8], c: usize) {
    for ch in 0..c {
        let mut hist = [0u64; 256];
        for v in px.iter().skip(ch).step_by(c) {
            hist[*v as usize] += 1;
        }
        let total: u64 = hist.iter().sum();
        let last = hist.iter().rev().find(|&&v| v != 0).copied().unwrap_or(0);
        let step = (total - last) / 255;
        if step == 0 {
            continue;
        }
        let mut lut = [0u8; 256];
        let mut cum = 0u64;
        for (i, h) in hist.iter().enumerate() {
            // lut[i] uses the cumulative count *before* bin i.
            lut[i] = ((cum + step / 2) / step).min(255) as u8;
            cum += h;
        }
        for v in px.iter_mut().skip(ch).step_by(c) {
            *v = lut[*v as usize];
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn magnitudes_match_torchvision_at_m10() {
        assert!((magnitude(Op::ShearX, 10, 224, 224).0 - 0.1).abs() < 1e-12);
        assert!((magnitude(Op::Rotate, 10, 224, 224).0 - 10.0).abs() < 1e-12);
        assert!((magnitude(Op::Brightness, 10, 224, 224).0 - 0.3).abs() < 1e-12);
        assert_eq!(magnitude(Op::Posterize, 10, 224, 224).0, 7.0);
        assert!((magnitude(Op::Solarize, 10, 224, 224).0 - 170.0).abs() < 1e-9);
        assert!((magnitude(Op::TranslateX, 10, 331, 10).0 - 50.0).abs() < 1e-9);
    }

    #[test]
    fn geometric_ops_keep_size_and_zero_fill() {
        let (w, h, c) = (16, 12, 3);
        let base: Vec<u8> = (0..w * h * c).map(|i| (i % 250 + 1) as u8).collect();
        let mut s = Vec::new();
        let mut px = base.clone();
        apply_op(&mut px, &mut s, w, h, c, Op::TranslateX, 4.0);
        assert_eq!(px.len(), base.len());
        // Shifted right by 4: the first 4 columns are fill, the rest moved.
        for y in 0..h {
            assert!(px[y * w * c..y * w * c + 4 * c].iter().all(|&v| v == 0));
            assert_eq!(px[(y * w + 4) * c], base[(y * w) * c]);
        }
        let mut px = base.clone();
        apply_op(&mut px, &mut s, w, h, c, Op::Rotate, 0.0);
        assert_eq!(px, base);
        let mut px = base.clone();
        apply_op(&mut px, &mut s, w, h, c, Op::ShearX, 0.0);
        assert_eq!(px, base);
    }

    #[test]
    fn pointwise_ops() {
        let mut s = Vec::new();
        let mut px = vec![0u8, 100, 169, 170, 255];
        apply_op(&mut px, &mut s, 5, 1, 1, Op::Solarize, 170.0);
        assert_eq!(px, vec![0, 100, 169, 85, 0]);
        let mut px = vec![255u8, 3];
        apply_op(&mut px, &mut s, 2, 1, 1, Op::Posterize, 7.0);
        assert_eq!(px, vec![254, 2]);
        let mut px = vec![50u8, 100, 150];
        apply_op(&mut px, &mut s, 3, 1, 1, Op::AutoContrast, 0.0);
        assert_eq!(px, vec![0, 127, 255]);
        let mut px: Vec<u8> = (0..1024).map(|i| (i / 64) as u8).collect();
        apply_op(&mut px, &mut s, 1024, 1, 1, Op::Equalize, 0.0);
        assert!(px.windows(2).all(|w| w[0] <= w[1]) && *px.last().unwrap() > 200);
    }

    #[test]
    fn rand_augment_is_deterministic_per_rng() {
        let (w, h, c) = (24, 24, 3);
        let base: Vec<u8> = (0..w * h * c).map(|i| (i * 31 % 256) as u8).collect();
        let run = |seed| {
            let mut px = base.clone();
            let mut s = Vec::new();
            rand_augment(crate::hwc::HwcMut::new(&mut px, &mut s, w, h, c), 2, 10, &mut Rng::new(seed));
            px
        };
        assert_eq!(run(3), run(3));
        assert!((0..20).any(|s| run(s) != base));
    }
}
