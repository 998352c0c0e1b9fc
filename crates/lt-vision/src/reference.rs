//! The scalar kernels as they were before vectorisation (issue 14), kept
//! verbatim as the specification [`crate::kernels`] is property-tested
//! against (`tests/kernels.rs`: same bytes on random images and
//! parameters) and as the "before" column of `lt-loader-bench kernels`.
//! Not for use in pipelines. Geometry is passed as `(w, h, c)`. The four
//! torchvision colour kernels and the blur were already compiled for AVX2
//! at run time before (augment.rs's `simd_dispatch!`) and still are here,
//! so the benchmark's "before" is the code as it ran.

use crate::augment::gaussian_kernel;
use crate::augment_timm::{pil_blend, pil_luma, Resample};
use crate::simd::avx2_dispatch;

type Geom = (usize, usize, usize);

#[inline]
fn luma(r: u8, g: u8, b: u8) -> f32 {
    0.2989 * r as f32 + 0.587 * g as f32 + 0.114 * b as f32
}

#[inline]
fn clamp_u8(v: f32) -> u8 {
    (v.clamp(0.0, 255.0) + 0.5) as u8
}

fn blend_lut(f: f32, base: f32) -> [u8; 256] {
    let mut lut = [0u8; 256];
    for (v, o) in lut.iter_mut().enumerate() {
        *o = clamp_u8(f * v as f32 + (1.0 - f) * base);
    }
    lut
}

avx2_dispatch!(pub fn adjust_contrast(px: &mut [u8], c: usize, f: f32) => adjust_contrast_impl);
avx2_dispatch!(pub fn adjust_saturation(px: &mut [u8], c: usize, f: f32) => adjust_saturation_impl);
avx2_dispatch!(pub fn to_grayscale(px: &mut [u8], c: usize) => to_grayscale_impl);
avx2_dispatch!(pub fn gaussian_blur(px: &mut [u8], geom: Geom, sigma: f32, tmp: &mut Vec<f32>) => gaussian_blur_impl);

/// torchvision contrast: blend with the mean luma of the whole image.
#[inline(always)]
fn adjust_contrast_impl(px: &mut [u8], c: usize, f: f32) {
    let mean = if c == 3 {
        let s: f64 = px.chunks_exact(3).map(|p| luma(p[0], p[1], p[2]) as f64).sum();
        s / (px.len() / 3).max(1) as f64
    } else {
        px.iter().map(|&p| p as f64).sum::<f64>() / px.len().max(1) as f64
    } as f32;
    let lut = blend_lut(f, mean);
    px.iter_mut().for_each(|p| *p = lut[*p as usize]);
}

/// torchvision saturation: blend each pixel with its own luma.
#[inline(always)]
fn adjust_saturation_impl(px: &mut [u8], c: usize, f: f32) {
    if c != 3 {
        return;
    }
    for p in px.chunks_exact_mut(3) {
        let g = (1.0 - f) * luma(p[0], p[1], p[2]);
        for v in p.iter_mut() {
            *v = clamp_u8(f * *v as f32 + g);
        }
    }
}

/// Grayscale keeping three channels.
#[inline(always)]
fn to_grayscale_impl(px: &mut [u8], c: usize) {
    if c != 3 {
        return;
    }
    for p in px.chunks_exact_mut(3) {
        let g = clamp_u8(luma(p[0], p[1], p[2]));
        p.fill(g);
    }
}

#[inline]
fn reflect(i: i64, n: i64) -> usize {
    if n == 1 {
        return 0;
    }
    let period = 2 * (n - 1);
    let mut m = i.rem_euclid(period);
    if m >= n {
        m = period - m;
    }
    m as usize
}

/// Separable Gaussian blur with reflect borders, in place.
#[inline(always)]
fn gaussian_blur_impl(px: &mut [u8], (width, height, c): Geom, sigma: f32, tmp: &mut Vec<f32>) {
    let k = gaussian_kernel(sigma);
    let r = (k.len() / 2) as i64;
    let stride = width * c;
    tmp.clear();
    tmp.resize(stride * height, 0.0);
    let ru = r as usize;
    let mut padded = vec![0f32; (width + 2 * ru) * c];
    for y in 0..height {
        let row = &px[y * stride..(y + 1) * stride];
        for (d, &s) in padded[ru * c..ru * c + stride].iter_mut().zip(row) {
            *d = s as f32;
        }
        for xp in (0..ru).chain(width + ru..width + 2 * ru) {
            let sx = reflect(xp as i64 - r, width as i64);
            for ch in 0..c {
                padded[xp * c + ch] = row[sx * c + ch] as f32;
            }
        }
        let out = &mut tmp[y * stride..(y + 1) * stride];
        for (t, &wt) in k.iter().enumerate() {
            let src = &padded[t * c..t * c + stride];
            for (o, s) in out.iter_mut().zip(src) {
                *o += wt * s;
            }
        }
    }
    let mut acc = vec![0f32; stride];
    for y in 0..height {
        acc.fill(0.0);
        for (t, &wt) in k.iter().enumerate() {
            let sy = reflect(y as i64 + t as i64 - r, height as i64);
            let src = &tmp[sy * stride..(sy + 1) * stride];
            for (a, s) in acc.iter_mut().zip(src) {
                *a += wt * s;
            }
        }
        for (d, a) in px[y * stride..(y + 1) * stride].iter_mut().zip(&acc) {
            *d = (a + 0.5).clamp(0.0, 255.0) as u8;
        }
    }
}

/// `ImageEnhance.Color`.
pub fn pil_color(px: &mut [u8], c: usize, f: f32) {
    if c != 3 {
        return;
    }
    for p in px.chunks_exact_mut(3) {
        let l = pil_luma(p[0], p[1], p[2]);
        for v in p.iter_mut() {
            *v = pil_blend(l, *v, f);
        }
    }
}

/// `ImageEnhance.Contrast`.
pub fn pil_contrast(px: &mut [u8], c: usize, f: f32) {
    let n = (px.len() / c).max(1) as u64;
    let sum: u64 =
        if c == 3 { px.chunks_exact(3).map(|p| pil_luma(p[0], p[1], p[2]) as u64).sum() } else { px.iter().map(|&v| v as u64).sum() };
    let mean = (sum as f64 / n as f64 + 0.5) as u8;
    let mut lut = [0u8; 256];
    for (v, o) in lut.iter_mut().enumerate() {
        *o = pil_blend(mean, v as u8, f);
    }
    px.iter_mut().for_each(|v| *v = lut[*v as usize]);
}

/// PIL's `ImageFilter.SMOOTH` on the interior, border copied.
pub fn smooth3x3(px: &[u8], scratch: &mut Vec<u8>, (w, h, c): Geom) {
    scratch.clear();
    scratch.extend_from_slice(px);
    if w < 3 || h < 3 {
        return;
    }
    for y in 1..h - 1 {
        for x in 1..w - 1 {
            for ch in 0..c {
                let mut s = 0u32;
                for dy in 0..3 {
                    for dx in 0..3 {
                        s += px[((y + dy - 1) * w + x + dx - 1) * c + ch] as u32;
                    }
                }
                s += 4 * px[(y * w + x) * c + ch] as u32;
                scratch[(y * w + x) * c + ch] = ((s as f32 / 13.0 + 0.5) as u32).min(255) as u8;
            }
        }
    }
}

/// `ImageEnhance.Sharpness`.
pub fn pil_sharpness(px: &mut [u8], scratch: &mut Vec<u8>, geom: Geom, f: f32) {
    smooth3x3(px, scratch, geom);
    for (o, &d) in px.iter_mut().zip(scratch.iter()) {
        *o = pil_blend(d, *o, f);
    }
}

/// torchvision RandAugment's Sharpness (augment_randaugment).
pub fn sharpness(px: &mut [u8], scratch: &mut Vec<u8>, geom: Geom, f: f32) {
    let (w, h, _) = geom;
    if w < 3 || h < 3 {
        return;
    }
    smooth3x3(px, scratch, geom);
    for (o, d) in px.iter_mut().zip(scratch.iter()) {
        *o = ((f * *o as f32 + (1.0 - f) * *d as f32).clamp(0.0, 255.0) + 0.5) as u8;
    }
}

/// torchvision RandAugment's nearest-neighbour affine gather, zero fill.
pub fn affine_nearest(px: &mut Vec<u8>, scratch: &mut Vec<u8>, (w, h, c): Geom, m: [f64; 6]) {
    scratch.clear();
    scratch.resize(px.len(), 0);
    for y in 0..h {
        let yc = y as f64 + 0.5;
        for x in 0..w {
            let xc = x as f64 + 0.5;
            let sx = m[0] * xc + m[1] * yc + m[2];
            let sy = m[3] * xc + m[4] * yc + m[5];
            if sx >= 0.0 && sy >= 0.0 && (sx as usize) < w && (sy as usize) < h {
                let si = (sy as usize * w + sx as usize) * c;
                let di = (y * w + x) * c;
                scratch[di..di + c].copy_from_slice(&px[si..si + c]);
            }
        }
    }
    std::mem::swap(px, scratch);
}

#[inline]
fn clip_index(v: i64, n: usize) -> usize {
    v.clamp(0, n as i64 - 1) as usize
}

#[inline]
fn bicubic(v1: f64, v2: f64, v3: f64, v4: f64, d: f64) -> f64 {
    let p1 = v2;
    let p2 = -v1 + v3;
    let p3 = 2.0 * (v1 - v2) + v3 - v4;
    let p4 = -v1 + v2 - v3 + v4;
    p1 + d * (p2 + d * (p3 + d * p4))
}

/// PIL `img.transform(size, AFFINE, m, resample, fillcolor=fill)`.
pub fn pil_affine(px: &mut Vec<u8>, scratch: &mut Vec<u8>, (w, h, c): Geom, m: [f64; 6], resample: Resample, fill: [u8; 3]) {
    let fill = if c == 3 { fill } else { [pil_luma(fill[0], fill[1], fill[2]); 3] };
    scratch.clear();
    scratch.reserve(px.len());
    for _ in 0..w * h {
        scratch.extend_from_slice(&fill[..c]);
    }
    let (wf, hf) = (w as f64, h as f64);
    let src: &[u8] = px;
    let at = |row: usize, col: usize, b: usize| src[(row * w + col) * c + b] as f64;
    for y in 0..h {
        for x in 0..w {
            let xin = x as f64 + 0.5;
            let yin = y as f64 + 0.5;
            let sx = m[0] * xin + m[1] * yin + m[2];
            let sy = m[3] * xin + m[4] * yin + m[5];
            if sx < 0.0 || sx >= wf || sy < 0.0 || sy >= hf || sx.is_nan() || sy.is_nan() {
                continue;
            }
            let (sx, sy) = (sx - 0.5, sy - 0.5);
            let (xf, yf) = (sx.floor(), sy.floor());
            let (dx, dy) = (sx - xf, sy - yf);
            let (xi, yi) = (xf as i64, yf as i64);
            let out = &mut scratch[(y * w + x) * c..(y * w + x + 1) * c];
            match resample {
                Resample::Bilinear => {
                    let r0 = clip_index(yi, h);
                    let x0 = clip_index(xi, w);
                    let x1 = clip_index(xi + 1, w);
                    let has_r1 = yi + 1 >= 0 && yi + 1 < h as i64;
                    for (b, o) in out.iter_mut().enumerate() {
                        let (a0, b0) = (at(r0, x0, b), at(r0, x1, b));
                        let v1 = a0 + (b0 - a0) * dx;
                        let v2 = if has_r1 {
                            let r1 = (yi + 1) as usize;
                            let (a1, b1) = (at(r1, x0, b), at(r1, x1, b));
                            a1 + (b1 - a1) * dx
                        } else {
                            v1
                        };
                        let v = v1 + (v2 - v1) * dy;
                        *o = v as u8;
                    }
                }
                Resample::Bicubic => {
                    let (xi, yi) = (xi - 1, yi - 1);
                    let xs = [clip_index(xi, w), clip_index(xi + 1, w), clip_index(xi + 2, w), clip_index(xi + 3, w)];
                    let row_in = |k: i64| yi + k >= 0 && yi + k < h as i64;
                    for (b, o) in out.iter_mut().enumerate() {
                        let horiz = |row: usize| bicubic(at(row, xs[0], b), at(row, xs[1], b), at(row, xs[2], b), at(row, xs[3], b), dx);
                        let v1 = horiz(clip_index(yi, h));
                        let v2 = if row_in(1) { horiz((yi + 1) as usize) } else { v1 };
                        let v3 = if row_in(2) { horiz((yi + 2) as usize) } else { v2 };
                        let v4 = if row_in(3) { horiz((yi + 3) as usize) } else { v3 };
                        let v = bicubic(v1, v2, v3, v4, dy);
                        *o = if v <= 0.0 {
                            0
                        } else if v >= 255.0 {
                            255
                        } else {
                            v as u8
                        };
                    }
                }
            }
        }
    }
    std::mem::swap(px, scratch);
}
