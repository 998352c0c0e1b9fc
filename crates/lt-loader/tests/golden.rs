//! Augmentation results against references produced elsewhere.
//!
//! The eval fixture comes from tools/loader_golden.py:
//! ```python
//! pattern = ((x * x * 3 + y * 5 + c * 40 + (x * y) // 7) % 256).astype(np.uint8)
//! out = T.Compose([T.Resize(64), T.CenterCrop(56)])(Image.fromarray(pattern, "RGB"))
//! ```
use lt_core::rng::Rng;
use lt_vision::augment::{Augmenter, EvalSpec, Pipeline};
use lt_vision::codec::{decode, Decoded};

fn pattern(w: u32, h: u32) -> Decoded {
    let mut px = Vec::new();
    for y in 0..h {
        for x in 0..w {
            for c in 0..3u32 {
                px.push(((x * x * 3 + y * 5 + c * 40 + (x * y) / 7) % 256) as u8);
            }
        }
    }
    Decoded::try_new(w, h, 3, px).unwrap()
}

#[test]
fn eval_transform_matches_torchvision_within_one_level() {
    let want = decode(include_bytes!("fixtures/eval_resize64_crop56.png")).unwrap();
    assert_eq!((want.width, want.height, want.channels), (56, 56, 3));
    let mut aug = Augmenter::try_new(Pipeline::Eval(EvalSpec { resize: Some(64), crop: Some(56) }), 3).unwrap();
    let mut out = vec![0u8; 56 * 56 * 3];
    aug.view_into(&pattern(120, 90), &mut Rng::new(0), (56, 56), &mut out).unwrap();
    let mut worst = 0i32;
    for c in 0..3 {
        for y in 0..56 {
            for x in 0..56 {
                let ours = out[(c * 56 + y) * 56 + x] as i32;
                let theirs = want.pixels[(y * 56 + x) * 3 + c] as i32;
                worst = worst.max((ours - theirs).abs());
            }
        }
    }
    assert!(worst <= 1, "largest difference from torchvision: {worst} levels");
}

#[test]
fn progressive_jpeg_decodes() {
    // tools/loader_golden.py: grad = x * 3 + y * 2 + c * 20, saved by PIL with
    // progressive=True, quality=95, no chroma subsampling.
    let bytes = include_bytes!("fixtures/gradient_progressive.jpg");
    assert!(bytes.windows(2).any(|w| w == [0xff, 0xc2]), "fixture must be progressive (SOF2)");
    let img = lt_loader::loader::decode_to(bytes, 3).unwrap();
    assert_eq!((img.width, img.height, img.channels), (48, 32, 3));
    let mut err = 0u64;
    for y in 0..32u32 {
        for x in 0..48u32 {
            for c in 0..3u32 {
                let want = (x * 3 + y * 2 + c * 20) as i64;
                err += (img.pixels[((y * 48 + x) * 3 + c) as usize] as i64 - want).unsigned_abs();
            }
        }
    }
    let mean = err as f64 / (48.0 * 32.0 * 3.0);
    assert!(mean < 2.0, "mean abs error {mean}");
}
