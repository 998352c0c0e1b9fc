//! The loader over real shard directories (lt-shards' writer): resident and
//! on-demand modes agree, checksums are verified, and errors name the shard
//! file and row.
mod common;

use common::*;
use lt_loader::loader::{Loader, LoaderConfig};
use lt_loader::sampler::SamplerSpec;
use lt_loader::source::{EncodedSource, ShardSource, ShardSourceOptions};
use lt_shards::{Row, Split, SplitWriter, WriterOptions};
use lt_vision::augment::{CifarSpec, Pipeline};
use std::path::Path;
use std::sync::Arc;

/// Writes a train split through lt-shards and a manifest next to it. Row
/// `corrupt` (if any) gets bytes that are not an image.
fn build(dir: &Path, n: usize, corrupt: Option<usize>) {
    let counts = [n / 2, n / 4, n - n / 2 - n / 4];
    let labels = labels(&counts, 3);
    let names: Vec<String> = (0..3).map(|c| format!("c{c}")).collect();
    let opts = WriterOptions::default().with_row_group_rows(16).with_shard_bytes(20_000);
    let mut w = SplitWriter::try_new(dir, Split::Train, &names, &counts, opts.clone()).unwrap();
    let rows = png_rows(&labels, 12, 12).into_iter().enumerate().map(|(i, (bytes, label))| Row {
        image: if Some(i) == corrupt { b"definitely not a png".to_vec() } else { bytes },
        path: format!("img/{i}.png"),
        label,
        source_index: i as i64,
        height: 12,
        width: 12,
    });
    w.write_rows(rows).unwrap();
    let shards = w.finish().unwrap();
    let test = SplitWriter::try_new(dir, Split::Test, &names, &[0, 0, 0], opts).unwrap().finish().unwrap();
    lt_shards::Manifest::builder("test", &names)
        .channels(3, vec![0.5; 3], vec![0.25; 3])
        .split(Split::Train, &counts, shards)
        .split(Split::Test, &[0, 0, 0], test)
        .build()
        .unwrap()
        .save(dir)
        .unwrap();
}

fn snaps(src: Arc<dyn EncodedSource>, workers: usize) -> Vec<(Vec<i64>, Vec<u8>)> {
    let c = LoaderConfig::default()
        .with_batch_size(10)
        .with_views(2)
        .with_workers(workers)
        .with_seed(5)
        .with_sampler(SamplerSpec::Paired { q: 0.5 })
        .with_epochs(2);
    Loader::try_new(src, Pipeline::Cifar(CifarSpec::default()), c)
        .unwrap()
        .map(|b| {
            let b = b.unwrap();
            (b.indices.clone(), b.data().to_vec())
        })
        .collect()
}

#[test]
fn resident_and_on_demand_sources_give_identical_batches() {
    let dir = tempfile::tempdir().unwrap();
    build(dir.path(), 90, None);
    let resident = ShardSource::open(dir.path(), Split::Train, &ShardSourceOptions::default()).unwrap();
    assert!(resident.is_resident());
    assert_eq!(resident.len(), 90);
    assert!(resident.shard_set().manifest().splits[&Split::Train].shards.len() > 1, "want several shards");
    // A budget below the data size, and a cache of about two row groups.
    let opts = ShardSourceOptions::default().with_memory_budget(1000).with_cache_bytes(2 * 16 * 400);
    let on_demand = ShardSource::open(dir.path(), Split::Train, &opts).unwrap();
    assert!(!on_demand.is_resident());
    for i in [0, 17, 89] {
        assert_eq!(&*resident.fetch(i).unwrap(), &*on_demand.fetch(i).unwrap());
    }
    assert!(on_demand.resident_bytes() <= 2 * 16 * 400 + 16 * 1000, "cache exceeded its budget");
    let a = snaps(Arc::new(resident), 1);
    let b = snaps(Arc::new(on_demand), 3);
    assert_eq!(a.len(), 2 * 9);
    assert_eq!(a, b);
}

#[test]
fn corrupt_shard_row_names_the_file_and_row() {
    let dir = tempfile::tempdir().unwrap();
    build(dir.path(), 40, Some(37));
    let src = Arc::new(ShardSource::open(dir.path(), Split::Train, &ShardSourceOptions::default()).unwrap());
    let want_file = {
        let m = src.shard_set().manifest();
        let mut row = 0;
        m.splits[&Split::Train]
            .shards
            .iter()
            .find(|s| {
                row += s.rows;
                row > 37
            })
            .unwrap()
            .file
            .clone()
    };
    let c = LoaderConfig::default().with_batch_size(8).with_workers(2).with_sampler(SamplerSpec::Sequential).with_epochs(1);
    let err = within(60, move || Loader::try_new(src, Pipeline::Cifar(CifarSpec::default()), c).unwrap().find_map(|b| b.err()).unwrap());
    let msg = err.to_string();
    assert!(msg.contains(&want_file) && msg.contains("global row 37"), "{msg}");
}

#[test]
fn tampered_shards_fail_verification() {
    let dir = tempfile::tempdir().unwrap();
    build(dir.path(), 20, None);
    let shard = dir.path().join("train/part-00000.parquet");
    let mut bytes = std::fs::read(&shard).unwrap();
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0xff;
    std::fs::write(&shard, bytes).unwrap();
    let e = ShardSource::open(dir.path(), Split::Train, &ShardSourceOptions::default()).err().expect("must fail");
    assert!(e.to_string().contains("part-00000.parquet"), "{e}");
}
