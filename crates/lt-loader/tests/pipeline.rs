//! The staged loader: order, determinism across thread counts, resume,
//! memory bound, failure handling and shutdown.
mod common;

use common::*;
use lt_loader::batch::{BatchAllocator, BatchStorage, HeapAllocator, Position};
use lt_loader::loader::{Loader, LoaderConfig, LoaderState, OnCorrupt};
use lt_loader::sampler::{SamplerSpec, Shard};
use lt_loader::source::EncodedSource;
use lt_loader::LoaderError;
use lt_vision::augment::{CifarSpec, ImageNetSpec, Pipeline};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

/// Everything a batch carries, for exact comparison.
#[derive(Debug, PartialEq)]
struct Snap {
    pos: Position,
    labels: Vec<i64>,
    indices: Vec<i64>,
    data: Vec<u8>,
}

fn run(src: Arc<dyn EncodedSource>, pipe: Pipeline, cfg: LoaderConfig) -> Vec<Snap> {
    Loader::try_new(src, pipe, cfg)
        .unwrap()
        .map(|b| {
            let b = b.unwrap();
            Snap { pos: b.position, labels: b.labels.clone(), indices: b.indices.clone(), data: b.data().to_vec() }
        })
        .collect()
}

fn cifar() -> Pipeline {
    Pipeline::Cifar(CifarSpec::default())
}

fn small_imagenet() -> Pipeline {
    Pipeline::ImageNet(ImageNetSpec { size: 24, ..ImageNetSpec::default() })
}

fn cfg(workers: usize) -> LoaderConfig {
    LoaderConfig::default()
        .with_batch_size(8)
        .with_views(2)
        .with_workers(workers)
        .with_pool_size(3)
        .with_seed(42)
        .with_sampler(SamplerSpec::Paired { q: 1.0 })
        .with_epochs(2)
}

#[test]
fn batches_are_bit_identical_for_any_worker_count() {
    let src: Arc<dyn EncodedSource> = Arc::new(memory_source(60, 16, 16));
    for pipe in [cifar(), small_imagenet()] {
        let one = run(src.clone(), pipe.clone(), cfg(1));
        assert_eq!(one.len(), 2 * (60 / 8));
        for w in [2, 5] {
            assert_eq!(run(src.clone(), pipe.clone(), cfg(w)), one, "{w} workers, {pipe:?}");
        }
        // A different seed changes the augmentations and the order.
        assert_ne!(run(src.clone(), pipe.clone(), cfg(2).with_seed(43)), one);
    }
}

#[test]
fn batches_come_in_order_with_matching_labels_and_views() {
    let src = Arc::new(memory_source(40, 12, 12));
    let labels = src.labels().to_vec();
    let loader = Loader::try_new(src, cifar(), cfg(3)).unwrap();
    assert_eq!(loader.steps_per_epoch(), 5);
    let mut want = Position::default();
    for b in loader {
        let b = b.unwrap();
        assert_eq!(b.position, want);
        want = if want.step == 4 { Position { epoch: want.epoch + 1, step: 0 } } else { Position { step: want.step + 1, ..want } };
        assert_eq!(b.shape(), [16, 3, 12, 12]);
        assert_eq!(b.data().len(), 2 * 16 * 3 * 144);
        let (inst, weighted) = b.halves().unwrap();
        assert_eq!((inst.len(), weighted.len()), (8, 8));
        for (s, (&i, &l)) in b.indices.iter().zip(&b.labels).enumerate() {
            assert_eq!(labels[i as usize], l, "slot {s}");
        }
        // The two views of a sample are independent draws.
        assert_ne!(b.view(0), b.view(1));
    }
    assert_eq!(want, Position { epoch: 2, step: 0 });
}

#[test]
fn instance_half_covers_each_row_once_per_epoch() {
    let src = Arc::new(memory_source(48, 8, 8));
    let loader = Loader::try_new(src, cifar(), cfg(2)).unwrap();
    let mut seen = vec![Vec::new(); 2];
    for b in loader {
        let b = b.unwrap();
        let (inst, _) = b.halves().unwrap();
        seen[b.position.epoch as usize].extend(b.indices[inst].iter().copied());
    }
    for mut s in seen {
        s.sort();
        assert_eq!(s, (0..48).collect::<Vec<i64>>());
    }
}

#[test]
fn resume_from_a_saved_state_gives_the_same_remaining_batches() {
    let src: Arc<dyn EncodedSource> = Arc::new(memory_source(50, 10, 10));
    let full = run(src.clone(), cifar(), cfg(2));
    let mut loader = Loader::try_new(src.clone(), cifar(), cfg(2)).unwrap();
    for _ in 0..8 {
        loader.next().unwrap().unwrap();
    }
    // Save mid-epoch 1 (6 steps per epoch), through JSON like a checkpoint.
    let state = loader.state();
    assert_eq!(state.position, Position { epoch: 1, step: 2 });
    let json = serde_json::to_string(&state).unwrap();
    drop(loader);
    let state: LoaderState = serde_json::from_str(&json).unwrap();
    let rest = run(src, cifar(), cfg(3).with_seed(0).with_state(state));
    assert_eq!(rest.len(), full.len() - 8);
    assert_eq!(rest, full[8..]);
}

#[test]
fn sequential_keeps_the_last_partial_batch() {
    let src = Arc::new(memory_source(21, 8, 8));
    let c = cfg(2).with_sampler(SamplerSpec::Sequential).with_views(1).with_epochs(1);
    let batches: Vec<_> = Loader::try_new(src, Pipeline::by_name("eval-identity").unwrap(), c).unwrap().map(|b| b.unwrap()).collect();
    assert_eq!(batches.len(), 3);
    assert_eq!(batches[2].slots(), 5);
    let idx: Vec<i64> = batches.iter().flat_map(|b| b.indices.clone()).collect();
    assert_eq!(idx, (0..21).collect::<Vec<_>>());
}

/// Counts allocations and live buffers.
#[derive(Default)]
struct Counting {
    allocs: AtomicUsize,
}

impl BatchAllocator for Counting {
    fn allocate(&self, bytes: usize) -> lt_loader::Result<Box<dyn BatchStorage>> {
        self.allocs.fetch_add(1, Ordering::SeqCst);
        HeapAllocator.allocate(bytes)
    }
}

#[test]
fn buffers_come_from_a_bounded_pool_and_are_reused() {
    let src = Arc::new(memory_source(64, 8, 8));
    let alloc = Arc::new(Counting::default());
    let c = cfg(3).with_pool_size(2).with_epochs(3).with_allocator(alloc.clone());
    let loader = Loader::try_new(src, cifar(), c).unwrap();
    assert_eq!(loader.pool_bytes(), 2 * loader.batch_bytes());
    let mut n = 0;
    for b in loader {
        b.unwrap();
        n += 1;
    }
    assert_eq!(n, 24);
    assert!(alloc.allocs.load(Ordering::SeqCst) <= 2, "allocated {}", alloc.allocs.load(Ordering::SeqCst));
}

#[test]
fn holding_every_buffer_does_not_deadlock_the_batches_already_made() {
    // The consumer keeps both pool buffers: the loader can still hand them
    // out, then waits (no error, no extra allocation) until one is dropped.
    let src = Arc::new(memory_source(64, 8, 8));
    within(60, move || {
        let mut loader = Loader::try_new(src, cifar(), cfg(2).with_pool_size(2).with_epochs(1)).unwrap();
        let a = loader.next().unwrap().unwrap();
        let b = loader.next().unwrap().unwrap();
        drop(a);
        let c = loader.next().unwrap().unwrap();
        assert_eq!(c.position.step, 2);
        drop((b, c));
        assert_eq!(loader.count(), 5); // 8 full steps per epoch in all
    });
}

#[test]
fn asking_for_more_while_holding_every_buffer_is_an_error_not_a_hang() {
    let src = Arc::new(memory_source(64, 8, 8));
    within(60, move || {
        let mut loader = Loader::try_new(src, cifar(), cfg(2).with_pool_size(2).with_epochs(1)).unwrap();
        let a = loader.next().unwrap().unwrap();
        let _b = loader.next().unwrap().unwrap();
        let e = loader.next().unwrap().unwrap_err();
        assert!(e.to_string().contains("pool"), "{e}");
        // Recoverable: give one back and go on.
        drop(a);
        assert_eq!(loader.next().unwrap().unwrap().position.step, 2);
    });
}

#[test]
fn corrupt_row_is_an_error_naming_the_row() {
    let inner = memory_source(32, 8, 8);
    let src = Arc::new(Faulty { inner, bad: 7, fault: Fault::Corrupt });
    let err = within(60, move || {
        let c = cfg(2).with_sampler(SamplerSpec::Sequential).with_epochs(1);
        Loader::try_new(src, cifar(), c).unwrap().find_map(|b| b.err()).expect("an error")
    });
    assert!(matches!(err, LoaderError::Corrupt { .. }), "{err}");
    assert!(err.to_string().contains("img/0007.png (row 7)"), "{err}");
}

#[test]
fn corrupt_rows_can_be_skipped_and_counted() {
    let inner = memory_source(32, 8, 8);
    let src = Arc::new(Faulty { inner, bad: 7, fault: Fault::Corrupt });
    let c = cfg(2).with_sampler(SamplerSpec::Sequential).with_epochs(1).with_on_corrupt(OnCorrupt::Skip);
    let mut loader = Loader::try_new(src, cifar(), c).unwrap();
    let batches: Vec<_> = loader.by_ref().map(|b| b.map(|b| (b.skipped, b.indices.clone())).unwrap()).collect();
    assert_eq!(batches.len(), 4);
    assert_eq!(batches[0].0, 1);
    assert_eq!(batches[0].1[7], 8, "replaced by the next row");
    assert_eq!(loader.stats().skipped, 1);
}

#[test]
fn read_errors_and_worker_panics_reach_the_consumer() {
    for fault in [Fault::ReadError, Fault::Panic] {
        let inner = memory_source(64, 8, 8);
        let src = Arc::new(Faulty { inner, bad: 20, fault });
        let probe = src.clone();
        let err = within(60, move || {
            let c = cfg(3).with_sampler(SamplerSpec::Sequential).with_epochs(1);
            let mut loader = Loader::try_new(src, cifar(), c).unwrap();
            let mut ok = 0;
            let err = loop {
                match loader.next() {
                    Some(Ok(_)) => ok += 1,
                    Some(Err(e)) => break e,
                    None => panic!("ended without reporting the {fault:?}"),
                }
            };
            assert!(ok <= 2, "the error is in step 2");
            assert!(loader.next().is_none(), "the loader stops after an error");
            err
        });
        match fault {
            Fault::Panic => {
                assert!(matches!(err, LoaderError::WorkerPanic { .. }), "{err}");
                assert!(err.to_string().contains("injected worker panic"), "{err}");
            }
            _ => assert!(err.to_string().contains("injected I/O error"), "{err}"),
        }
        assert!(err.to_string().contains("img/0020.png"), "{err}");
        // Every thread let go of the source: nothing leaked.
        assert_eq!(Arc::strong_count(&probe), 1);
    }
}

#[test]
fn dropping_mid_epoch_stops_every_thread() {
    let src = Arc::new(memory_source(256, 16, 16));
    let probe = src.clone();
    let kept = within(60, move || {
        // Endless, several workers, a deep pool: plenty of work in flight.
        let c = cfg(4).with_pool_size(4).with_batch_size(16);
        let c = LoaderConfig { epochs: None, ..c };
        let mut loader = Loader::try_new(src, small_imagenet(), c).unwrap();
        let _first = loader.next().unwrap().unwrap();
        let kept = loader.next().unwrap().unwrap();
        drop(loader);
        kept // a batch outlives its loader
    });
    assert_eq!(kept.position.step, 1);
    assert_eq!(kept.data().len(), 2 * 32 * 3 * 24 * 24);
    assert_eq!(Arc::strong_count(&probe), 1, "a loader thread still holds the source");
}

#[test]
fn bad_configurations_are_rejected() {
    let src: Arc<dyn EncodedSource> = Arc::new(memory_source(8, 8, 8));
    assert!(Loader::try_new(src.clone(), cifar(), cfg(1).with_views(0)).is_err());
    assert!(Loader::try_new(src.clone(), cifar(), cfg(1).with_pool_size(0)).is_err());
    // workers = 0 means one per core (the recipes' convention).
    assert_eq!(Loader::try_new(src.clone(), cifar(), cfg(0)).unwrap().count(), 2);
    let e = Loader::try_new(src.clone(), cifar(), cfg(1).with_batch_size(9)).err().unwrap();
    assert!(e.to_string().contains("no full batch"), "{e}");
    let c = cfg(1).with_sampler(SamplerSpec::Instance).with_image_size(64, 64);
    assert!(Loader::try_new(src, Pipeline::Cifar(CifarSpec { size: None, ..Default::default() }), c).unwrap().next().unwrap().is_err());
}

/// Data-parallel sharding: the ranks' batches are the single-process batch,
/// slot by slot and byte for byte (augmentations keyed by the whole step's
/// slot), for full steps, a short last step and a rank left with nothing.
#[test]
fn shards_together_are_the_single_process_batch() {
    let src: Arc<dyn EncodedSource> = Arc::new(memory_source(61, 16, 16));
    for (sampler, views) in [(SamplerSpec::Paired { q: 1.0 }, 2), (SamplerSpec::Instance, 1), (SamplerSpec::Sequential, 1)] {
        let base = cfg(2).with_sampler(sampler).with_views(views).with_drop_last(false);
        let whole = run(src.clone(), small_imagenet(), base.clone());
        // 61 rows in steps of 8: the last step holds 5 per stream.
        assert_eq!(whole.len(), 2 * 8);
        for world in [2, 3, 6] {
            let ranks: Vec<Vec<Snap>> = (0..world)
                .map(|r| run(src.clone(), small_imagenet(), base.clone().with_shard(Shard::try_new(r, world).unwrap())))
                .collect();
            for (t, w) in whole.iter().enumerate() {
                let streams = if sampler == (SamplerSpec::Paired { q: 1.0 }) { 2 } else { 1 };
                let n = w.labels.len() / streams;
                let sample = w.data.len() / views / w.labels.len();
                for (r, snaps) in ranks.iter().enumerate() {
                    let s = &snaps[t];
                    assert_eq!(s.pos, w.pos);
                    let run = Shard { rank: r, world }.range(n);
                    let slots: Vec<usize> = (0..streams).flat_map(|k| run.clone().map(move |j| k * n + j)).collect();
                    assert_eq!(s.labels.len(), slots.len(), "{sampler:?} world {world} rank {r} step {t}");
                    for (local, &g) in slots.iter().enumerate() {
                        assert_eq!((s.labels[local], s.indices[local]), (w.labels[g], w.indices[g]));
                        for v in 0..views {
                            let mine = &s.data[(v * slots.len() + local) * sample..][..sample];
                            let theirs = &w.data[(v * w.labels.len() + g) * sample..][..sample];
                            assert!(mine == theirs, "{sampler:?} world {world} rank {r} step {t} slot {g} view {v}");
                        }
                    }
                }
            }
        }
    }
    // 6 ranks over a last step of 5 per stream: rank 0 gets an empty batch.
    let empty = run(src, small_imagenet(), cfg(1).with_drop_last(false).with_shard(Shard::try_new(0, 6).unwrap()));
    assert!(empty[7].labels.is_empty() && empty[7].data.is_empty());
}
