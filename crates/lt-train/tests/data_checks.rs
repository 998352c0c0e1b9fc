//! The trainer checks its pipelines against the image size range that
//! lt-build records in the manifest, before the first step (a
//! 1×1 image among 32×32 ones used to pass the build and fail only in the
//! middle of training).

mod util;

use lt_shards::{ImageSizeRange, Manifest, Split};
use lt_train::recipe::PipelineSpec;
use lt_train::train::{check_pipelines, dataset_fingerprint, Dataset};

/// Shards of 8×8 images whose manifest says the train split also holds a
/// `min`×`min` image (as lt-build records a stray small image).
fn shards_with_small_train_image(dir: &std::path::Path, min: u32) {
    util::write_synth(dir, &[12, 6], 4, 8, 3, 7);
    let mut m = Manifest::load(dir).unwrap();
    let shards = &mut m.splits.get_mut(&Split::Train).unwrap().shards;
    assert!(shards[0].image_size_range.is_some(), "the writer records each shard's size range");
    shards[0].image_size_range = Some(ImageSizeRange { min_height: min, max_height: 8, min_width: min, max_width: 8 });
    m.save(dir).unwrap();
}

#[test]
fn source_sized_pipeline_refuses_a_split_of_mixed_sizes() {
    let dir = tempfile::tempdir().unwrap();
    shards_with_small_train_image(dir.path(), 1);
    let ds = Dataset::open(dir.path(), 64).unwrap();
    let recipe = util::tiny_recipe(1); // augment = "cifar": crop size from the first image
    let e = check_pipelines(&recipe, &ds).unwrap_err().to_string();
    assert!(e.contains("loader.augment") && e.contains("1x1 to 8x8") && e.contains("one size"), "{e}");
}

#[test]
fn fixed_crop_must_fit_the_smallest_image() {
    let dir = tempfile::tempdir().unwrap();
    shards_with_small_train_image(dir.path(), 1);
    let ds = Dataset::open(dir.path(), 64).unwrap();
    let mut recipe = util::tiny_recipe(1);
    recipe.loader.augment =
        PipelineSpec::Spec(lt_vision::augment::Pipeline::Cifar(lt_vision::augment::CifarSpec { size: Some(8), padding: 2, flip: 0.5 }));
    let e = check_pipelines(&recipe, &ds).unwrap_err().to_string();
    assert!(e.contains("8px crop does not fit"), "{e}");
    // Padding 4 makes the 1×1 image 9×9: the 8px crop fits.
    recipe.loader.augment =
        PipelineSpec::Spec(lt_vision::augment::Pipeline::Cifar(lt_vision::augment::CifarSpec { size: Some(8), padding: 4, flip: 0.5 }));
    check_pipelines(&recipe, &ds).unwrap();
}

#[test]
fn uniform_shards_pass() {
    let dir = tempfile::tempdir().unwrap();
    util::write_synth(dir.path(), &[12, 6], 4, 8, 3, 7);
    let ds = Dataset::open(dir.path(), 64).unwrap();
    check_pipelines(&util::tiny_recipe(1), &ds).unwrap();
}

/// The dataset fingerprint (what a resume checks) is a pure function of the
/// manifest's classes and shards, over the splits in name order (test, then
/// train), so a run started by an earlier version still resumes.
#[test]
fn dataset_fingerprint_is_stable() {
    use sha2::{Digest, Sha256};
    let tmp = tempfile::tempdir().unwrap();
    util::write_synth(tmp.path(), &[12, 6], 2, 8, 3, 11);
    let m = lt_shards::Manifest::load(tmp.path()).unwrap();
    let mut h = Sha256::new();
    h.update(format!("channels={}\n", m.channels));
    for c in &m.classes {
        h.update(format!("class {} {:?} {} {}\n", c.id, c.name, c.train, c.test));
    }
    for split in [Split::Test, Split::Train] {
        for s in &m.splits[&split].shards {
            h.update(format!("{} {} {} {}\n", split.as_str(), s.file, s.rows, s.checksum));
        }
    }
    assert_eq!(dataset_fingerprint(&m), hex::encode(h.finalize()));
}
