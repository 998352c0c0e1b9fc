//! `photometric = Device`: the workers write each view's geometry and record
//! its photometric stage in the batch; running the records with the CPU
//! kernels ([`ViewParams::apply_cpu_chw`]) gives the CPU-mode batch byte for
//! byte, for any worker count and after a mid-epoch resume.

mod common;

use std::sync::Arc;

use lt_loader::batch::{Batch, Position};
use lt_loader::loader::{Loader, LoaderConfig, LoaderState};
use lt_loader::sampler::SamplerSpec;
use lt_vision::augment::{ImageNetSpec, Pipeline, RandAugmentSpec, RandnclsSpec};
use lt_vision::photometric::{Photometric, ViewParams};

fn config(workers: usize, mode: Photometric) -> LoaderConfig {
    LoaderConfig::default()
        .with_batch_size(6)
        .with_views(2)
        .with_workers(workers)
        .with_seed(11)
        .with_pool_size(12)
        .with_sampler(SamplerSpec::Paired { q: 0.5 })
        .with_epochs(2)
        .with_photometric(mode)
}

fn batches(p: &Pipeline, cfg: LoaderConfig) -> Vec<Batch> {
    let src = Arc::new(common::memory_source(30, 52, 44));
    Loader::try_new(src, p.clone(), cfg).unwrap().collect::<Result<_, _>>().unwrap()
}

/// The batch's pixels with every view's record applied by the CPU kernels.
fn completed(b: &Batch) -> Vec<u8> {
    let mut data = b.data().to_vec();
    let n = b.sample_bytes();
    assert_eq!(b.photometric().len(), b.views * b.slots());
    for (i, p) in b.photometric().iter().enumerate() {
        p.apply_cpu_chw(&mut data[i * n..(i + 1) * n], (b.width, b.height, b.channels));
    }
    data
}

fn photo_pipelines() -> Vec<Pipeline> {
    vec![
        Pipeline::ImageNet(ImageNetSpec { size: 32, jitter_p: 0.8, ..ImageNetSpec::default() }),
        Pipeline::RandAugment(RandAugmentSpec { size: 32, m: 12, ..RandAugmentSpec::default() }),
        Pipeline::Randncls(RandnclsSpec { size: 32, ..RandnclsSpec::default() }),
    ]
}

#[test]
fn device_records_complete_to_the_cpu_batches() {
    for p in photo_pipelines() {
        let cpu = batches(&p, config(2, Photometric::Cpu));
        let dev = batches(&p, config(3, Photometric::Device));
        assert_eq!(cpu.len(), dev.len());
        let mut ops = 0;
        for (c, d) in cpu.iter().zip(&dev) {
            assert!(c.photometric().is_empty());
            assert_eq!((c.position, &c.labels, &c.indices), (d.position, &d.labels, &d.indices));
            ops += d.photometric().iter().map(|v| v.ops().len()).sum::<usize>();
            assert_eq!(completed(d), c.data(), "{p:?} at {:?}", d.position);
        }
        assert!(ops > dev.len() * 6, "{p:?}: only {ops} ops recorded");
    }
}

#[test]
fn records_are_deterministic_and_resume_mid_epoch() {
    let p = Pipeline::Randncls(RandnclsSpec { size: 32, ..RandnclsSpec::default() });
    let one = batches(&p, config(1, Photometric::Device));
    let four = batches(&p, config(4, Photometric::Device));
    for (a, b) in one.iter().zip(&four) {
        assert_eq!(a.data(), b.data());
        assert_eq!(a.photometric(), b.photometric());
    }
    // Resume at epoch 1, step 2: the same batches and records from there.
    let at = Position { epoch: 1, step: 2 };
    let resumed = batches(&p, config(2, Photometric::Device).with_state(LoaderState { seed: 11, position: at }));
    let tail: Vec<&Batch> = one.iter().filter(|b| b.position >= at).collect();
    assert_eq!(resumed.len(), tail.len());
    for (a, b) in resumed.iter().zip(tail) {
        assert_eq!((a.position, a.data(), a.photometric()), (b.position, b.data(), b.photometric()));
    }
}

#[test]
fn pipelines_without_a_photometric_stage_ignore_device_mode() {
    let p = Pipeline::by_name("cifar").unwrap();
    let src = Arc::new(common::memory_source(30, 32, 32));
    let loader = Loader::try_new(src.clone(), p.clone(), config(2, Photometric::Device)).unwrap();
    assert_eq!(loader.photometric(), Photometric::Cpu);
    let dev: Vec<Batch> = loader.collect::<Result<_, _>>().unwrap();
    let cpu: Vec<Batch> = Loader::try_new(src, p, config(2, Photometric::Cpu)).unwrap().collect::<Result<_, _>>().unwrap();
    for (a, b) in dev.iter().zip(&cpu) {
        assert!(a.photometric().is_empty());
        assert_eq!(a.data(), b.data());
    }
    // A record that cannot hold the pipeline's ops is refused up front.
    let big = Pipeline::RandAugment(RandAugmentSpec { n: 21, ..RandAugmentSpec::default() });
    let e = Loader::try_new(Arc::new(common::memory_source(30, 32, 32)), big, config(1, Photometric::Device)).err().unwrap();
    assert!(e.to_string().contains("at most 20"), "{e}");
    assert_eq!(ViewParams::default(), ViewParams::EMPTY);
}
