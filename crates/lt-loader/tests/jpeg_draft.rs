//! `loader.jpeg_draft`: JPEGs decoded at reduced DCT scale where every
//! view's crop (drawn before the decode, one generator per view) still
//! covers the output size. Same seed → same bytes for any worker count and
//! after a mid-epoch resume; the scale is the largest that fits; and the
//! premise it rests on: every cropping pipeline's first draw is its crop.
mod common;

use common::{image, labels};
use lt_core::rng::Rng;
use lt_loader::loader::{draft_denom, rrc_of, Loader, LoaderConfig};
use lt_loader::sampler::SamplerSpec;
use lt_loader::source::{EncodedSource, MemorySource};
use lt_vision::augment::{resize_crop_into, rrc_params, write_chw, Augmenter, ImageNetSpec, Pipeline, RandAugmentSpec, RandnclsSpec};
use lt_vision::codec::{draft_size, encode_jpeg};
use std::sync::Arc;

/// JPEG rows of several sizes, large enough against a 24-px output for
/// every scale to occur.
fn jpeg_source(n: usize) -> Arc<dyn EncodedSource> {
    let sizes = [(64u32, 48u32), (150, 120), (260, 200), (333, 250)];
    let l = labels(&[n / 2, n / 4, n - n / 2 - n / 4], 3);
    let rows =
        l.iter().enumerate().map(|(i, &y)| (encode_jpeg(&image(i as u64, sizes[i % 4].0, sizes[i % 4].1, 3), 90).unwrap(), y)).collect();
    Arc::new(MemorySource::new(rows))
}

fn pipeline() -> Pipeline {
    Pipeline::ImageNet(ImageNetSpec { size: 24, ..ImageNetSpec::default() })
}

fn config(workers: usize, draft: bool) -> LoaderConfig {
    LoaderConfig::default()
        .with_batch_size(8)
        .with_views(2)
        .with_workers(workers)
        .with_seed(11)
        .with_sampler(SamplerSpec::Paired { q: 0.5 })
        .with_epochs(2)
        .with_jpeg_draft(draft)
}

type Seen = Vec<(lt_loader::batch::Position, Vec<u8>, Vec<i64>, Vec<i64>)>;

fn run(src: &Arc<dyn EncodedSource>, cfg: LoaderConfig) -> (Seen, [u64; 4]) {
    let mut loader = Loader::try_new(src.clone(), pipeline(), cfg).unwrap();
    let mut seen = Vec::new();
    for b in loader.by_ref() {
        let b = b.unwrap();
        seen.push((b.position, b.data().to_vec(), b.labels.clone(), b.indices.clone()));
    }
    (seen, loader.stats().draft)
}

#[test]
fn draft_batches_are_deterministic_for_any_worker_count_and_resume() {
    let src = jpeg_source(40);
    let (one, scales) = run(&src, config(1, true));
    let (three, scales3) = run(&src, config(3, true));
    assert_eq!(one, three, "1 worker vs 3 workers");
    assert_eq!(scales, scales3);
    // Every scale occurs here, and each image was decoded once.
    assert!(scales.iter().all(|&n| n > 0), "scales 1/1..1/8: {scales:?}");
    let images: usize = one.iter().map(|(_, _, l, _)| l.len()).sum();
    assert_eq!(scales.iter().sum::<u64>(), images as u64);
    // A resume at epoch 1, step 1 continues with the same batches.
    let at = one.iter().position(|(p, ..)| p.epoch == 1 && p.step == 1).unwrap();
    let state = lt_loader::loader::LoaderState { seed: 11, position: one[at].0 };
    let (resumed, _) = run(&src, config(2, true).with_state(state));
    assert_eq!(resumed, one[at..].to_vec());
    // Draft mode is another stream of views than the default path (same
    // samples, different bytes).
    let (full, none) = run(&src, config(2, false));
    assert_eq!(none, [0; 4]);
    assert_eq!(full.len(), one.len());
    for (a, b) in full.iter().zip(&one) {
        assert_eq!((a.0, &a.2, &a.3), (b.0, &b.2, &b.3));
    }
    assert_ne!(full, one);
}

#[test]
fn draft_scale_is_the_largest_whose_crops_cover_the_output() {
    let crop = rrc_of(&pipeline()).unwrap();
    let mut hits = [0usize; 4];
    for i in 0..400u64 {
        let (w, h) = (100 + (i * 37 % 700) as u32, 80 + (i * 53 % 600) as u32);
        let rngs: Vec<Rng> = (0..2).map(|k| Rng::derive(5, &[i, k])).collect();
        let out = (24 + (i % 3) as u32 * 40, 24 + (i % 3) as u32 * 40);
        let denom = draft_denom(w, h, crop, &rngs, out);
        hits[denom.trailing_zeros() as usize] += 1;
        let fits = |d: u32| {
            let (dw, dh) = draft_size(w, h, d);
            rngs.iter().all(|r| {
                let c = rrc_params(&mut r.clone(), dw, dh, crop.0, crop.1);
                c.width >= out.0 && c.height >= out.1
            })
        };
        if denom > 1 {
            assert!(fits(denom), "{w}x{h} at 1/{denom}");
        }
        for larger in [2, 4, 8].into_iter().filter(|&d| d > denom) {
            assert!(!fits(larger), "{w}x{h}: 1/{larger} fits too, chose 1/{denom}");
        }
    }
    assert!(hits.iter().all(|&n| n > 0), "{hits:?}");
    // Pipelines without a random resized crop never decode in draft.
    assert!(rrc_of(&Pipeline::by_name("eval").unwrap()).is_none());
    assert!(rrc_of(&Pipeline::by_name("cifar").unwrap()).is_none());
}

/// Draft decoding predicts each view's crop by drawing it first from the
/// view's generator: a view of every cropping pipeline, with its other
/// random operations switched off, is exactly that crop resized.
#[test]
fn every_cropping_pipelines_first_draw_is_its_crop() {
    let img = image(9, 90, 70, 3);
    let (ow, oh) = (32u32, 32u32);
    let pipelines = [
        Pipeline::ImageNet(ImageNetSpec { size: 32, flip: 0.0, jitter: [0.0; 3], grayscale: 0.0, blur: 0.0, ..ImageNetSpec::default() }),
        Pipeline::RandAugment(RandAugmentSpec { size: 32, flip: 0.0, n: 0, ..RandAugmentSpec::default() }),
        Pipeline::Randncls(RandnclsSpec { size: 32, flip: 0.0, jitter_p: 0.0, n: 0, ..RandnclsSpec::default() }),
    ];
    for p in pipelines {
        let (scale, ratio) = rrc_of(&p).unwrap();
        let mut aug = Augmenter::try_new(p.clone(), 3).unwrap();
        let mut resizer = fast_image_resize::Resizer::new();
        for seed in 0..20 {
            let rng = Rng::derive(3, &[seed]);
            let mut out = vec![0u8; (ow * oh * 3) as usize];
            aug.view_into(&img, &mut rng.clone(), (ow, oh), &mut out).unwrap();
            let crop = rrc_params(&mut rng.clone(), img.width, img.height, scale, ratio);
            let mut hwc = Vec::new();
            resize_crop_into(&mut resizer, &img, crop, ow, oh, &mut hwc).unwrap();
            let mut want = vec![0u8; out.len()];
            write_chw(&hwc, ow as usize, oh as usize, 3, false, &mut want);
            assert_eq!(out, want, "{p:?} seed {seed}");
        }
    }
}
