//! Builder → shards → loader, end to end.
use lt_build::sources::{synth::SynthOptions, SourceOptions};
use lt_build::BuildOptions;
use lt_e2e::{lt_build, required};
use lt_loader::loader::{Loader, LoaderConfig};
use lt_loader::sampler::SamplerSpec;
use lt_loader::source::{ShardSource, ShardSourceOptions};
use lt_shards::Split;
use lt_vision::augment::Pipeline;
use std::sync::Arc;

/// `lt-build` output feeds the loader directly: one instance-sampled epoch
/// visits every stored row once, with the manifest's class counts.
#[test]
fn lt_build_shards_feed_the_loader() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("synth-lt");
    // lt-build synth --classes 5 --per-class 40 --size 16 --if 8 -o OUT
    let synth = SynthOptions { classes: 5, train_per_class: 40, size: 16, ..Default::default() };
    let m = lt_build(
        "synth",
        None,
        &SourceOptions { synth, ..Default::default() },
        &BuildOptions { imbalance: Some(8.0), ..Default::default() },
        &out,
    );
    let counts: Vec<usize> = m.classes.iter().map(|c| c.train).collect();
    assert_eq!(counts, lt_core::profile::exponential_counts(5, 40, 8.0).unwrap());

    let src = Arc::new(ShardSource::open(&out, Split::Train, &ShardSourceOptions::default()).unwrap());
    let n = counts.iter().sum::<usize>();
    let cfg = LoaderConfig::default()
        .with_batch_size(8)
        .with_views(1)
        .with_workers(2)
        .with_sampler(SamplerSpec::Instance)
        .with_drop_last(false)
        .with_epochs(1);
    let loader = Loader::try_new(src, Pipeline::by_name("eval-identity").unwrap(), cfg).unwrap();
    let mut seen = vec![0usize; n];
    let mut hist = vec![0usize; 5];
    for b in loader {
        let b = b.unwrap();
        assert_eq!(&b.shape()[1..], &[3, 16, 16]);
        for (&i, &l) in b.indices.iter().zip(&b.labels) {
            seen[i as usize] += 1;
            hist[l as usize] += 1;
        }
    }
    assert!(seen.iter().all(|&s| s == 1), "every row exactly once");
    assert_eq!(hist, counts);
}

/// Real data: Fashion-MNIST-LT from Debian's package through the loader's
/// class-balanced sampler (q = 1) comes out close to uniform.
#[test]
fn fashion_mnist_lt_class_balanced_batches() {
    let src = std::path::Path::new("/usr/share/datasets/fashion-mnist");
    if !src.exists() {
        assert!(!required("LT_REQUIRE_FASHION_MNIST"), "dataset-fashion-mnist is not installed");
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("fm");
    // lt-build idx /usr/share/datasets/fashion-mnist --if 100 -o OUT
    lt_build("idx", Some(src), &SourceOptions::default(), &BuildOptions { imbalance: Some(100.0), ..Default::default() }, &out);
    let shards = Arc::new(ShardSource::open(&out, Split::Train, &ShardSourceOptions::default()).unwrap());
    let cfg = LoaderConfig::default()
        .with_batch_size(250)
        .with_views(1)
        .with_workers(2)
        .with_sampler(SamplerSpec::ClassWeighted { q: 1.0 })
        .with_epochs(1);
    let loader = Loader::try_new(shards, Pipeline::by_name("cifar").unwrap(), cfg).unwrap();
    let mut hist = [0usize; 10];
    let mut total = 0;
    for b in loader {
        let b = b.unwrap();
        assert_eq!(&b.shape()[1..], &[1, 28, 28]);
        for &l in &b.labels {
            hist[l as usize] += 1;
            total += 1;
        }
    }
    // 14,886 draws, p = 0.1 each: 6 standard deviations ≈ 220.
    for (c, &h) in hist.iter().enumerate() {
        assert!((h as f64 - total as f64 / 10.0).abs() < 220.0, "class {c}: {h} of {total} ({hist:?})");
    }
}
