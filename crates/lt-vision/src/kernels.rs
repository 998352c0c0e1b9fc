//! The vectorised bodies of the hot pixel kernels (issue 14) behind
//! [`crate::augment`], [`crate::augment_timm`] and
//! [`crate::augment_randaugment`]'s public functions.
//!
//! Every kernel here gives the same bytes as the scalar code it replaced
//! (kept in [`crate::reference`] and property-tested against it in
//! `tests/kernels.rs`): the same float operations on the same values in the
//! same order, only grouped so that the compiler vectorises them. The ways
//! they do it:
//!
//! * interleaved RGB is processed in blocks of [`LANES`] pixels, split into
//!   per-channel lanes (`[f32; LANES]`) so the arithmetic is straight-line
//!   lane code;
//! * sums whose order would change the result are only regrouped where the
//!   result is exact in any order (integers, or the luma sum below);
//! * the 3×3 smoothing filter runs as integer column and row sums with an
//!   exact fixed-point division;
//! * the affine gathers compute each row's source coordinates in a
//!   vectorisable pass (the per-column terms precomputed once: `(m0·x' +
//!   m1·y') + m2` is the scalar code's own operation order, so no
//!   incremental stepping, which would round differently), then gather per
//!   pixel with the channels as lanes and no per-tap clamping, skipping the
//!   interpolation along an axis whose fractional offset is exactly 0
//!   (every shear and translation has one), which is exact because
//!   `v + (w − v)·0 = v`.
//!
//! Only safe Rust; wider vectors come from [`crate::simd::avx2_dispatch`].

use crate::simd::avx2_dispatch;

/// Pixels per block in the interleaved colour kernels.
pub(crate) const LANES: usize = 8;

// ---------------------------------------------------------------------------
// torchvision's float colour kernels (augment.rs)

/// ITU-R 601 luma with torchvision's weights, in this operation order.
#[inline(always)]
fn luma_f(r: f32, g: f32, b: f32) -> f32 {
    0.2989 * r + 0.587 * g + 0.114 * b
}

/// Round-half-up to `u8` with saturation (augment.rs's `clamp_u8`).
#[inline(always)]
fn clamp_u8(v: f32) -> u8 {
    (v.clamp(0.0, 255.0) + 0.5) as u8
}

/// One block of [`LANES`] RGB pixels as three channel lanes.
#[inline(always)]
fn split_rgb(b: &[u8]) -> [[f32; LANES]; 3] {
    let mut o = [[0f32; LANES]; 3];
    for i in 0..LANES {
        o[0][i] = b[3 * i] as f32;
        o[1][i] = b[3 * i + 1] as f32;
        o[2][i] = b[3 * i + 2] as f32;
    }
    o
}

/// `f·v + (1 − f)·luma` per channel, clamped and rounded (saturation).
/// The plain per-pixel loop: LLVM's AVX2 code for it beat every blocked
/// layout tried (8-pixel channel lanes, 24-value blocks, planar rows, product
/// tables), all of which ended in scalar clamp-and-convert sequences.
#[inline(always)]
fn saturation_body(px: &mut [u8], f: f32) {
    for p in px.chunks_exact_mut(3) {
        let gray = (1.0 - f) * luma_f(p[0] as f32, p[1] as f32, p[2] as f32);
        for v in p.iter_mut() {
            *v = clamp_u8(f * *v as f32 + gray);
        }
    }
}

avx2_dispatch!(pub(crate) fn saturation_rgb(px: &mut [u8], f: f32) => saturation_body);

/// Every pixel replaced by its rounded luma (grayscale, three channels).
#[inline(always)]
fn grayscale_body(px: &mut [u8]) {
    let mut blocks = px.chunks_exact_mut(3 * LANES);
    for b in &mut blocks {
        let [r, g, bl] = split_rgb(b);
        for i in 0..LANES {
            let v = clamp_u8(luma_f(r[i], g[i], bl[i]));
            b[3 * i] = v;
            b[3 * i + 1] = v;
            b[3 * i + 2] = v;
        }
    }
    for p in blocks.into_remainder().chunks_exact_mut(3) {
        let v = clamp_u8(luma_f(p[0] as f32, p[1] as f32, p[2] as f32));
        p.fill(v);
    }
}

avx2_dispatch!(pub(crate) fn grayscale_rgb(px: &mut [u8]) => grayscale_body);

/// The sum of every pixel's luma (`f32`, widened to `f64`), as the scalar
/// `chunks_exact(3).map(luma as f64).sum()` gives it.
///
/// Exact in any order, so the lanes may add separately: a luma is 0 or at
/// least 0.114 (the smallest weight), so as an `f32` it is a multiple of
/// 2⁻²⁷, and below 2²⁶ every multiple of 2⁻²⁷ is an `f64` — every partial
/// sum of fewer than 2²⁶ / 255.01 pixels is exact. Larger images keep the
/// sequential order.
#[inline(always)]
fn luma_sum_body(px: &[u8]) -> f64 {
    let n = px.len() / 3;
    if n as f64 * 255.01 >= (1u64 << 26) as f64 {
        return px.chunks_exact(3).map(|p| luma_f(p[0] as f32, p[1] as f32, p[2] as f32) as f64).sum();
    }
    let mut acc = [0f64; LANES];
    let mut blocks = px.chunks_exact(3 * LANES);
    for b in &mut blocks {
        let [r, g, bl] = split_rgb(b);
        for i in 0..LANES {
            acc[i] += luma_f(r[i], g[i], bl[i]) as f64;
        }
    }
    let mut s: f64 = acc.iter().sum();
    for p in blocks.remainder().chunks_exact(3) {
        s += luma_f(p[0] as f32, p[1] as f32, p[2] as f32) as f64;
    }
    s
}

avx2_dispatch!(pub(crate) fn luma_sum_rgb(px: &[u8]) -> f64 => luma_sum_body);

/// The sum of the bytes (exact: integers).
pub(crate) fn byte_sum(px: &[u8]) -> u64 {
    let mut acc = [0u32; 16];
    let mut s = 0u64;
    // 2²⁴ bytes per round keep each u32 lane below 2³².
    for big in px.chunks(1 << 24) {
        let mut blocks = big.chunks_exact(16);
        for b in &mut blocks {
            for i in 0..16 {
                acc[i] += b[i] as u32;
            }
        }
        s += acc.iter().map(|&v| v as u64).sum::<u64>() + blocks.remainder().iter().map(|&v| v as u64).sum::<u64>();
        acc = [0; 16];
    }
    s
}

/// A 256-entry table applied to every byte.
pub(crate) fn apply_lut(px: &mut [u8], lut: &[u8; 256]) {
    px.iter_mut().for_each(|p| *p = lut[*p as usize]);
}

// ---------------------------------------------------------------------------
// Gaussian blur (augment.rs)

#[inline]
fn reflect(i: i64, n: i64) -> usize {
    // Reflect without repeating the edge ("reflect" padding); n ≥ 1.
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

/// Separable Gaussian blur with reflect borders, in place; `k` are the
/// normalised taps ([`crate::augment::gaussian_kernel`]). The loops as they
/// were: register-blocking the taps (same order) measured on par, and any
/// other grouping of the float sums changes the bytes.
#[inline(always)]
fn gaussian_blur_body(px: &mut [u8], width: usize, height: usize, c: usize, k: &[f32], tmp: &mut Vec<f32>) {
    let r = (k.len() / 2) as i64;
    let ru = r as usize;
    let stride = width * c;
    tmp.clear();
    tmp.resize(stride * height, 0.0);
    // Horizontal: a reflect-padded copy of each row makes each tap a shifted
    // slice of it.
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
    // Vertical, rounding back to u8.
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

avx2_dispatch!(pub(crate) fn gaussian_blur(px: &mut [u8], width: usize, height: usize, c: usize, k: &[f32], tmp: &mut Vec<f32>) => gaussian_blur_body);

// ---------------------------------------------------------------------------
// PIL's colour kernels (augment_timm.rs)

/// PIL's RGB → L (`L24 >> 16`) on lanes.
#[inline(always)]
fn pil_luma_u32(r: u32, g: u32, b: u32) -> u32 {
    (r * 19595 + g * 38470 + b * 7471 + 0x8000) >> 16
}

/// PIL `ImagingBlend` for one value (augment_timm's `pil_blend`).
#[inline(always)]
fn blend(in1: f32, in2: f32, alpha: f32) -> u8 {
    (in1 + alpha * (in2 - in1)) as u8
}

/// `ImageEnhance.Color`: each value blended with its pixel's PIL luma.
#[inline(always)]
fn pil_color_body(px: &mut [u8], f: f32) {
    let mut blocks = px.chunks_exact_mut(3 * LANES);
    for b in &mut blocks {
        let mut l = [0f32; LANES];
        for (i, li) in l.iter_mut().enumerate() {
            *li = pil_luma_u32(b[3 * i] as u32, b[3 * i + 1] as u32, b[3 * i + 2] as u32) as f32;
        }
        let [r, g, bl] = split_rgb(b);
        for i in 0..LANES {
            b[3 * i] = blend(l[i], r[i], f);
            b[3 * i + 1] = blend(l[i], g[i], f);
            b[3 * i + 2] = blend(l[i], bl[i], f);
        }
    }
    for p in blocks.into_remainder().chunks_exact_mut(3) {
        let l = pil_luma_u32(p[0] as u32, p[1] as u32, p[2] as u32) as f32;
        for v in p.iter_mut() {
            *v = blend(l, *v as f32, f);
        }
    }
}

avx2_dispatch!(pub(crate) fn pil_color_rgb(px: &mut [u8], f: f32) => pil_color_body);

/// The sum of every pixel's PIL luma (exact: integers).
#[inline(always)]
fn pil_luma_sum_body(px: &[u8]) -> u64 {
    let mut acc = [0u64; LANES];
    let mut blocks = px.chunks_exact(3 * LANES);
    for b in &mut blocks {
        for (i, a) in acc.iter_mut().enumerate() {
            *a += pil_luma_u32(b[3 * i] as u32, b[3 * i + 1] as u32, b[3 * i + 2] as u32) as u64;
        }
    }
    let rest: u64 = blocks.remainder().chunks_exact(3).map(|p| pil_luma_u32(p[0] as u32, p[1] as u32, p[2] as u32) as u64).sum();
    acc.iter().sum::<u64>() + rest
}

avx2_dispatch!(pub(crate) fn pil_luma_sum_rgb(px: &[u8]) -> u64 => pil_luma_sum_body);

/// `px[i] = blend(smooth[i], px[i], f)` (PIL's Sharpness blend).
#[inline(always)]
fn pil_blend_with_body(px: &mut [u8], smooth: &[u8], f: f32) {
    for (o, &d) in px.iter_mut().zip(smooth) {
        *o = blend(d as f32, *o as f32, f);
    }
}

avx2_dispatch!(pub(crate) fn pil_blend_with(px: &mut [u8], smooth: &[u8], f: f32) => pil_blend_with_body);

/// `px[i] = round(f·px[i] + (1 − f)·smooth[i])` (torchvision's Sharpness
/// blend in augment_randaugment).
#[inline(always)]
fn tv_blend_with_body(px: &mut [u8], smooth: &[u8], f: f32) {
    for (o, &d) in px.iter_mut().zip(smooth) {
        *o = ((f * *o as f32 + (1.0 - f) * d as f32).clamp(0.0, 255.0) + 0.5) as u8;
    }
}

avx2_dispatch!(pub(crate) fn tv_blend_with(px: &mut [u8], smooth: &[u8], f: f32) => tv_blend_with_body);

// ---------------------------------------------------------------------------
// PIL's SMOOTH filter

/// `round(s / 13)` for a 3×3 SMOOTH sum `s ≤ 13·255`, as PIL's float
/// `s / 13.0 + 0.5` truncated: `⌊(2s + 13) / 26⌋`, the division by 26 as a
/// multiply-shift that is exact on that range (checked for every `s` in
/// the tests).
#[inline(always)]
pub(crate) fn div13_round(s: u32) -> u32 {
    ((2 * s + 13) * 10083) >> 18
}

/// `scratch` = `px` filtered with PIL's `ImageFilter.SMOOTH` on the
/// interior, border copied: per output row, the column sums of the three
/// source rows (`u16`), then the row sum of three column sums plus 4× the
/// centre.
#[inline(always)]
fn smooth3x3_body(px: &[u8], scratch: &mut [u8], w: usize, h: usize, c: usize, colsum: &mut [u16]) {
    let stride = w * c;
    scratch[..stride].copy_from_slice(&px[..stride]);
    scratch[(h - 1) * stride..].copy_from_slice(&px[(h - 1) * stride..]);
    for y in 1..h - 1 {
        let (r0, r1, r2) = (&px[(y - 1) * stride..y * stride], &px[y * stride..(y + 1) * stride], &px[(y + 1) * stride..(y + 2) * stride]);
        for (((s, &a), &b), &d) in colsum.iter_mut().zip(r0).zip(r1).zip(r2) {
            *s = a as u16 + b as u16 + d as u16;
        }
        let out = &mut scratch[y * stride..(y + 1) * stride];
        out[..c].copy_from_slice(&r1[..c]);
        out[stride - c..].copy_from_slice(&r1[stride - c..]);
        let n = stride - 2 * c;
        let (left, mid, right, centre) = (&colsum[..n], &colsum[c..c + n], &colsum[2 * c..2 * c + n], &r1[c..c + n]);
        for ((((o, &l), &m), &r), &ce) in out[c..c + n].iter_mut().zip(left).zip(mid).zip(right).zip(centre) {
            let s = l as u32 + m as u32 + r as u32 + 4 * ce as u32;
            *o = div13_round(s) as u8;
        }
    }
}

avx2_dispatch!(fn smooth3x3_dispatch(px: &[u8], scratch: &mut [u8], w: usize, h: usize, c: usize, colsum: &mut [u16]) => smooth3x3_body);

/// `scratch` = `px` filtered with PIL's `ImageFilter.SMOOTH`
/// (`[[1,1,1],[1,5,1],[1,1,1]] / 13`, rounded) on the interior, the
/// one-pixel border copied.
pub(crate) fn smooth3x3(px: &[u8], scratch: &mut Vec<u8>, w: usize, h: usize, c: usize) {
    scratch.clear();
    if w < 3 || h < 3 {
        scratch.extend_from_slice(px);
        return;
    }
    scratch.resize(px.len(), 0);
    let mut colsum = vec![0u16; w * c];
    smooth3x3_dispatch(px, scratch, w, h, c, &mut colsum);
}

// ---------------------------------------------------------------------------
// Affine gathers

/// Per-column terms of an affine map `(m0·x' + m1·y' + m2, m3·x' + m4·y' +
/// m5)` with `x' = x + ½`: `m0·x'` and `m3·x'` for every output column, so
/// a row's coordinates are `(col + row_term) + constant` in the scalar
/// code's operation order.
fn column_terms(m: &[f64; 6], w: usize) -> (Vec<f64>, Vec<f64>) {
    let xs = (0..w).map(|x| x as f64 + 0.5);
    (xs.clone().map(|x| m[0] * x).collect(), xs.map(|x| m[3] * x).collect())
}

/// One row's source coordinates: `sx[x] = (ax[x] + ry) + m2`,
/// `sy[x] = (bx[x] + ty) + m5`.
#[inline(always)]
fn row_coords(ax: &[f64], bx: &[f64], (ry, m2): (f64, f64), (ty, m5): (f64, f64), sx: &mut [f64], sy: &mut [f64]) {
    for (((o, &a), p), &b) in sx.iter_mut().zip(ax).zip(sy.iter_mut()).zip(bx) {
        *o = (a + ry) + m2;
        *p = (b + ty) + m5;
    }
}

/// torchvision RandAugment's geometric ops: output pixel `(x, y)` reads the
/// input at `(m0·(x+½) + m1·(y+½) + m2, m3·(x+½) + m4·(y+½) + m5)`,
/// truncated (nearest), zero outside. `dst` is overwritten.
#[inline(always)]
fn affine_nearest_body(src: &[u8], dst: &mut [u8], w: usize, h: usize, c: usize, m: &[f64; 6]) {
    let (ax, bx) = column_terms(m, w);
    let (wf, hf) = (w as f64, h as f64);
    let (mut sx, mut sy) = (vec![0f64; w], vec![0f64; w]);
    let mut off = vec![0usize; w];
    let mut inside = vec![false; w];
    let stride = w * c;
    for y in 0..h {
        let yc = y as f64 + 0.5;
        row_coords(&ax, &bx, (m[1] * yc, m[2]), (m[4] * yc, m[5]), &mut sx, &mut sy);
        // `sx >= 0 && (sx as usize) < w` is `0 <= sx < w` (false for NaN).
        for (((o, i), &a), &b) in off.iter_mut().zip(inside.iter_mut()).zip(&sx).zip(&sy) {
            *i = a >= 0.0 && a < wf && b >= 0.0 && b < hf;
            *o = ((b as u32 as usize) * w + a as u32 as usize) * c;
        }
        let row = &mut dst[y * stride..(y + 1) * stride];
        if c == 3 {
            for ((d, &o), &i) in row.chunks_exact_mut(3).zip(&off).zip(&inside) {
                if i {
                    d.copy_from_slice(&src[o..o + 3]);
                } else {
                    d.fill(0);
                }
            }
        } else {
            for ((d, &o), &i) in row.chunks_exact_mut(c).zip(&off).zip(&inside) {
                if i {
                    d.copy_from_slice(&src[o..o + c]);
                } else {
                    d.fill(0);
                }
            }
        }
    }
}

avx2_dispatch!(pub(crate) fn affine_nearest(src: &[u8], dst: &mut [u8], w: usize, h: usize, c: usize, m: &[f64; 6]) => affine_nearest_body);

/// PIL's resampling filters for [`pil_affine`].
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) enum Filter {
    Bilinear,
    Bicubic,
}

/// Geometry.c `BICUBIC` (a = −1) in its operation order, on lanes.
#[inline(always)]
fn bicubic<const C: usize>(v1: [f64; C], v2: [f64; C], v3: [f64; C], v4: [f64; C], d: f64) -> [f64; C] {
    let mut o = [0f64; C];
    for b in 0..C {
        let p1 = v2[b];
        let p2 = -v1[b] + v3[b];
        let p3 = 2.0 * (v1[b] - v2[b]) + v3[b] - v4[b];
        let p4 = -v1[b] + v2[b] - v3[b] + v4[b];
        o[b] = p1 + d * (p2 + d * (p3 + d * p4));
    }
    o
}

/// `a + (b − a)·d` on lanes (Geometry.c `BILINEAR`).
#[inline(always)]
fn lerp<const C: usize>(a: [f64; C], b: [f64; C], d: f64) -> [f64; C] {
    let mut o = [0f64; C];
    for i in 0..C {
        o[i] = a[i] + (b[i] - a[i]) * d;
    }
    o
}

/// The `C` values of pixel `x` of `row` as lanes.
#[inline(always)]
fn texel<const C: usize>(row: &[u8], x: usize) -> [f64; C] {
    let p = &row[x * C..x * C + C];
    let mut o = [0f64; C];
    for i in 0..C {
        o[i] = p[i] as f64;
    }
    o
}

/// A source pixel position in the scalar code's terms: the floor of the
/// sample point minus ½ and the fractional offset.
#[derive(Clone, Copy, Default)]
struct Tap {
    xi: i64,
    dx: f64,
    yi: i64,
    dy: f64,
}

/// One output row of [`pil_affine`] for `C` channels, from its taps. An
/// interpolation along an axis whose fractional offset is exactly 0 is
/// skipped: `a + (b − a)·0 = a` and `BICUBIC(v1, v2, v3, v4, 0) = v2`
/// exactly (every shear and translation has one such axis).
#[inline(always)]
fn pil_affine_row<const C: usize>(
    src: &[u8],
    out: &mut [u8],
    (w, h): (usize, usize),
    taps: &[Tap],
    inside: &[bool],
    filter: Filter,
    fill: [u8; 3],
) {
    let stride = w * C;
    let row = |y: usize| &src[y * stride..(y + 1) * stride];
    let (wi, hi) = (w as i64, h as i64);
    for ((o, t), &ins) in out.chunks_exact_mut(C).zip(taps).zip(inside) {
        if !ins {
            o.copy_from_slice(&fill[..C]);
            continue;
        }
        let v = match filter {
            Filter::Bilinear => {
                // xi, yi ∈ [−1, w − 1] × [−1, h − 1]: the scalar code's
                // clamps reduce to these.
                let x0 = t.xi.max(0) as usize;
                let x1 = (t.xi + 1).min(wi - 1) as usize;
                let r0 = row(t.yi.max(0) as usize);
                let h1 = |r: &[u8]| if t.dx == 0.0 { texel::<C>(r, x0) } else { lerp(texel::<C>(r, x0), texel::<C>(r, x1), t.dx) };
                let v1 = h1(r0);
                if t.dy == 0.0 {
                    v1
                } else {
                    let v2 = if t.yi + 1 < hi { h1(row((t.yi + 1) as usize)) } else { v1 };
                    lerp(v1, v2, t.dy)
                }
            }
            Filter::Bicubic => {
                let (xi, yi) = (t.xi - 1, t.yi - 1);
                let clip = |v: i64, n: i64| v.clamp(0, n - 1) as usize;
                let xs = [clip(xi, wi), clip(xi + 1, wi), clip(xi + 2, wi), clip(xi + 3, wi)];
                let horiz = |r: &[u8]| {
                    if t.dx == 0.0 {
                        texel::<C>(r, xs[1])
                    } else {
                        bicubic(texel::<C>(r, xs[0]), texel::<C>(r, xs[1]), texel::<C>(r, xs[2]), texel::<C>(r, xs[3]), t.dx)
                    }
                };
                let row_in = |k: i64| yi + k >= 0 && yi + k < hi;
                if t.dy == 0.0 {
                    // v2 (row yi + 1 is inside whenever dy is 0).
                    if row_in(1) {
                        horiz(row((yi + 1) as usize))
                    } else {
                        horiz(row(clip(yi, hi)))
                    }
                } else {
                    let v1 = horiz(row(clip(yi, hi)));
                    let v2 = if row_in(1) { horiz(row((yi + 1) as usize)) } else { v1 };
                    let v3 = if row_in(2) { horiz(row((yi + 2) as usize)) } else { v2 };
                    let v4 = if row_in(3) { horiz(row((yi + 3) as usize)) } else { v3 };
                    bicubic(v1, v2, v3, v4, t.dy)
                }
            }
        };
        for (d, x) in o.iter_mut().zip(v) {
            // (UINT8) with PIL's clip: `as` saturates at 0 and 255 (NaN: 0).
            *d = x as u8;
        }
    }
}

/// PIL's `ImagingGenericTransform` with an affine map and a bilinear or
/// bicubic filter (see [`crate::augment_timm::pil_affine`]); `dst` is
/// overwritten, `fill` is already per channel. Each row's taps come from a
/// vectorisable pass over the row, then the gather runs per pixel with the
/// channels as lanes and no per-tap clamping.
#[inline(always)]
fn pil_affine_body(src: &[u8], dst: &mut [u8], (w, h, c): (usize, usize, usize), m: &[f64; 6], filter: Filter, fill: [u8; 3]) {
    let (ax, bx) = column_terms(m, w);
    let (wf, hf) = (w as f64, h as f64);
    let (mut sx, mut sy) = (vec![0f64; w], vec![0f64; w]);
    let mut taps = vec![Tap::default(); w];
    let mut inside = vec![false; w];
    for y in 0..h {
        let yin = y as f64 + 0.5;
        row_coords(&ax, &bx, (m[1] * yin, m[2]), (m[4] * yin, m[5]), &mut sx, &mut sy);
        for (((t, i), &a), &b) in taps.iter_mut().zip(inside.iter_mut()).zip(&sx).zip(&sy) {
            // *_HEAD: `if (xin < 0.0 || xin >= xsize || ...) return 0;`
            *i = a >= 0.0 && a < wf && b >= 0.0 && b < hf;
            let (a, b) = (a - 0.5, b - 0.5);
            let (xf, yf) = (a.floor(), b.floor());
            *t = Tap { xi: xf as i64, dx: a - xf, yi: yf as i64, dy: b - yf };
        }
        let out = &mut dst[y * w * c..(y + 1) * w * c];
        match c {
            3 => pil_affine_row::<3>(src, out, (w, h), &taps, &inside, filter, fill),
            _ => pil_affine_row::<1>(src, out, (w, h), &taps, &inside, filter, fill),
        }
    }
}

avx2_dispatch!(pub(crate) fn pil_affine(src: &[u8], dst: &mut [u8], geom: (usize, usize, usize), m: &[f64; 6], filter: Filter, fill: [u8; 3]) => pil_affine_body);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn div13_round_is_pils_float_rounding_on_the_whole_range() {
        for s in 0..=13 * 255u32 {
            assert_eq!(div13_round(s), ((s as f32 / 13.0 + 0.5) as u32).min(255), "s = {s}");
        }
    }

    #[test]
    fn byte_sum_counts_every_byte() {
        let v: Vec<u8> = (0..1000u32).map(|i| (i * 7 % 256) as u8).collect();
        assert_eq!(byte_sum(&v), v.iter().map(|&x| x as u64).sum::<u64>());
        assert_eq!(byte_sum(&[]), 0);
    }
}
