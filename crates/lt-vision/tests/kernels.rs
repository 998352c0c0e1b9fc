//! The vectorised kernels (issue 14) against the scalar code they replaced
//! (`lt_vision::reference`, kept verbatim): the same bytes on random images
//! of random sizes (remainders of every block width included) and random
//! parameters. The golden tests (tests/timm_randaugment.rs, lt-loader's
//! tests/golden.rs) tie the same kernels to PIL and torchvision.
use lt_vision::augment::{adjust_contrast, adjust_saturation, gaussian_blur, to_grayscale};
use lt_vision::augment_randaugment::{apply_op as ra_op, Op};
use lt_vision::augment_timm::{pil_affine, pil_color, pil_contrast, pil_sharpness, Resample};
use lt_vision::hwc::HwcMut;
use lt_vision::reference as old;
use proptest::prelude::*;

/// A random `w × h × c` image: noise, or smooth gradients with noise (so
/// blends and filters see both flat and busy regions).
fn image() -> impl Strategy<Value = (Vec<u8>, usize, usize, usize)> {
    (1usize..48, 1usize..40, prop_oneof![Just(1usize), Just(3usize)], any::<u64>(), any::<bool>()).prop_map(|(w, h, c, seed, smooth)| {
        let mut s = seed | 1;
        let mut px = Vec::with_capacity(w * h * c);
        for y in 0..h {
            for x in 0..w {
                for ch in 0..c {
                    s ^= s << 13;
                    s ^= s >> 7;
                    s ^= s << 17;
                    let noise = (s >> 40) as usize;
                    px.push(if smooth { ((x * 5 + y * 3 + ch * 50) + noise % 9) % 256 } else { noise % 256 } as u8);
                }
            }
        }
        (px, w, h, c)
    })
}

fn matrix() -> impl Strategy<Value = [f64; 6]> {
    prop_oneof![
        // Rotations about a random centre (PIL's rotate matrices).
        (-180.0f64..180.0, -50.0f64..50.0, -50.0f64..50.0).prop_map(|(deg, tx, ty)| {
            let (s, c) = deg.to_radians().sin_cos();
            [c, s, tx, -s, c, ty]
        }),
        // Shears and relative translations (timm's ops).
        (-0.35f64..0.35).prop_map(|a| [1.0, a, 0.0, 0.0, 1.0, 0.0]),
        (-0.35f64..0.35).prop_map(|a| [1.0, 0.0, 0.0, a, 1.0, 0.0]),
        (-60.0f64..60.0).prop_map(|t| [1.0, 0.0, t, 0.0, 1.0, 0.0]),
        (-60.0f64..60.0).prop_map(|t| [1.0, 0.0, 0.0, 0.0, 1.0, t]),
        // Anything affine, mirrors and degenerate maps included.
        prop::array::uniform6(-3.0f64..3.0),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 192, ..ProptestConfig::default() })]

    #[test]
    fn saturation_grayscale_contrast_match((px, _w, _h, c) in image(), f in 0.0f32..2.5) {
        let (mut a, mut b) = (px.clone(), px.clone());
        adjust_saturation(&mut a, c, f);
        old::adjust_saturation(&mut b, c, f);
        prop_assert_eq!(&a, &b);
        let (mut a, mut b) = (px.clone(), px.clone());
        to_grayscale(&mut a, c);
        old::to_grayscale(&mut b, c);
        prop_assert_eq!(&a, &b);
        let (mut a, mut b) = (px.clone(), px);
        adjust_contrast(&mut a, c, f);
        old::adjust_contrast(&mut b, c, f);
        prop_assert_eq!(&a, &b);
    }

    #[test]
    fn gaussian_blur_matches((px, w, h, c) in image(), sigma in 0.1f32..2.5) {
        let (mut a, mut b) = (px.clone(), px);
        let (mut t1, mut t2) = (Vec::new(), Vec::new());
        gaussian_blur(&mut a, w, h, c, sigma, &mut t1);
        old::gaussian_blur(&mut b, (w, h, c), sigma, &mut t2);
        prop_assert_eq!(a, b);
    }

    #[test]
    fn pil_color_contrast_sharpness_match((px, w, h, c) in image(), f in 0.0f32..2.0) {
        let (mut a, mut b) = (px.clone(), px.clone());
        pil_color(&mut a, c, f);
        old::pil_color(&mut b, c, f);
        prop_assert_eq!(&a, &b);
        let (mut a, mut b) = (px.clone(), px.clone());
        pil_contrast(&mut a, c, f);
        old::pil_contrast(&mut b, c, f);
        prop_assert_eq!(&a, &b);
        let (mut a, mut b) = (px.clone(), px.clone());
        let (mut s1, mut s2) = (Vec::new(), Vec::new());
        pil_sharpness(&mut a, &mut s1, w, h, c, f);
        old::pil_sharpness(&mut b, &mut s2, (w, h, c), f);
        prop_assert_eq!(&a, &b);
        // torchvision RandAugment's Sharpness (factor 1 + magnitude).
        let (mut a, mut b) = (px.clone(), px);
        ra_op(&mut a, &mut s1, w, h, c, Op::Sharpness, (f - 1.0) as f64);
        old::sharpness(&mut b, &mut s2, (w, h, c), ((f - 1.0) as f64 + 1.0) as f32);
        prop_assert_eq!(&a, &b);
    }

    #[test]
    fn pil_affine_matches((px, w, h, c) in image(), m in matrix(), bicubic in any::<bool>(), fill in any::<[u8; 3]>()) {
        let resample = if bicubic { Resample::Bicubic } else { Resample::Bilinear };
        let (mut a, mut b) = (px.clone(), px);
        let (mut s1, mut s2) = (Vec::new(), Vec::new());
        pil_affine(HwcMut::new(&mut a, &mut s1, w, h, c), m, resample, fill);
        old::pil_affine(&mut b, &mut s2, (w, h, c), m, resample, fill);
        prop_assert_eq!(a, b);
    }

    #[test]
    fn torchvision_geometric_ops_match((px, w, h, c) in image(), k in 0usize..5, mag in -120.0f64..120.0) {
        let op = [Op::ShearX, Op::ShearY, Op::TranslateX, Op::TranslateY, Op::Rotate][k];
        let mag = if matches!(op, Op::ShearX | Op::ShearY) { mag / 200.0 } else { mag };
        // The matrices torchvision's RandAugment uses (augment_randaugment::apply_op).
        let m = match op {
            Op::ShearX => [1.0, mag, 0.0, 0.0, 1.0, 0.0],
            Op::ShearY => [1.0, 0.0, 0.0, mag, 1.0, 0.0],
            Op::TranslateX => [1.0, 0.0, -(mag.trunc()), 0.0, 1.0, 0.0],
            Op::TranslateY => [1.0, 0.0, 0.0, 0.0, 1.0, -(mag.trunc())],
            _ => {
                let (s, co) = mag.to_radians().sin_cos();
                let (cx, cy) = (w as f64 * 0.5, h as f64 * 0.5);
                [co, -s, cx - co * cx + s * cy, s, co, cy - s * cx - co * cy]
            }
        };
        let (mut a, mut b) = (px.clone(), px);
        let (mut s1, mut s2) = (Vec::new(), Vec::new());
        ra_op(&mut a, &mut s1, w, h, c, op, mag);
        old::affine_nearest(&mut b, &mut s2, (w, h, c), m);
        prop_assert_eq!(a, b);
    }
}

/// 224×224 views (the pipelines' size) and one image past the size where
/// the luma sum of torchvision's contrast switches back to sequential
/// order, on a few fixed parameter sets.
#[test]
fn full_size_views_match() {
    let mut s = 0x9E37_79B9_7F4A_7C15u64;
    let mut noise = |n: usize| -> Vec<u8> {
        (0..n)
            .map(|_| {
                s ^= s << 13;
                s ^= s >> 7;
                s ^= s << 17;
                (s >> 56) as u8
            })
            .collect()
    };
    let px = noise(224 * 224 * 3);
    for f in [0.6f32, 1.0, 1.4] {
        let (mut a, mut b) = (px.clone(), px.clone());
        adjust_contrast(&mut a, 3, f);
        old::adjust_contrast(&mut b, 3, f);
        assert_eq!(a, b);
        let (mut a, mut b) = (px.clone(), px.clone());
        adjust_saturation(&mut a, 3, f);
        old::adjust_saturation(&mut b, 3, f);
        assert_eq!(a, b);
    }
    let (mut a, mut b) = (px.clone(), px.clone());
    let (mut t1, mut t2) = (Vec::new(), Vec::new());
    gaussian_blur(&mut a, 224, 224, 3, 1.9, &mut t1);
    old::gaussian_blur(&mut b, (224, 224, 3), 1.9, &mut t2);
    assert_eq!(a, b);
    let big = noise(600 * 450 * 3);
    let (mut a, mut b) = (big.clone(), big);
    adjust_contrast(&mut a, 3, 0.7);
    old::adjust_contrast(&mut b, 3, 0.7);
    assert_eq!(a, b);
}
