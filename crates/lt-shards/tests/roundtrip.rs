//! Writer → reader round trip, manifest validation and checksums.
use lt_core::groups::{GroupThresholds, Groups};
use lt_shards::*;
use std::collections::BTreeMap;
use std::path::Path;

fn rows(n: usize, classes: i64) -> Vec<Row> {
    (0..n)
        .map(|i| Row {
            image: vec![(i % 251) as u8; 100 + i % 37],
            path: format!("img/{i}.png"),
            label: i as i64 % classes,
            source_index: 1000 + i as i64,
            height: 32,
            width: 32,
        })
        .collect()
}

fn build(dir: &Path, train: &[Row], opts: WriterOptions) -> Manifest {
    let names: Vec<String> = (0..3).map(|c| format!("class{c}")).collect();
    let counts = lt_core::profile::histogram(train.iter().map(|r| r.label as u32), 3);
    let mut w = SplitWriter::try_new(dir, Split::Train, &names, &counts, opts.clone()).unwrap();
    w.write_rows(train.iter().cloned()).unwrap();
    let shards = w.finish().unwrap();
    let w = SplitWriter::try_new(dir, Split::Test, &names, &[0, 0, 0], opts).unwrap();
    let test_shards = w.finish().unwrap();
    let mut splits = BTreeMap::new();
    splits.insert("train".into(), SplitInfo { rows: train.len(), shards });
    splits.insert("test".into(), SplitInfo { rows: 0, shards: test_shards });
    let m = Manifest {
        format: FORMAT.into(),
        tool_version: "test".into(),
        command_line: vec!["test".into()],
        source: serde_json::json!({"kind": "test"}),
        profile: serde_json::json!({"kind": "as-is"}),
        seed: 0,
        selection: "glmc".into(),
        imbalance_factor: Some(1.0),
        clamped: vec![],
        skipped: vec![],
        channels: 1,
        mean: vec![0.5],
        std: vec![0.25],
        classes: (0..3).map(|c| ClassInfo { id: c, name: names[c].clone(), train: counts[c], test: 0 }).collect(),
        groups: Groups::from_counts(&counts, GroupThresholds::default()),
        splits,
    };
    m.save(dir).unwrap();
    m
}

#[test]
fn rows_round_trip_across_shards_and_row_groups() {
    let dir = tempfile::tempdir().unwrap();
    let train = rows(1000, 3);
    let opts = WriterOptions::default().with_row_group_rows(64).with_shard_bytes(30_000);
    let m = build(dir.path(), &train, opts);
    let info = &m.splits["train"];
    assert!(info.shards.len() > 1, "expected several shards, got {}", info.shards.len());
    assert!(info.shards[0].row_groups.len() > 1);
    let set = ShardSet::open(dir.path(), Split::Train).unwrap();
    set.verify().unwrap();
    assert_eq!(set.len(), 1000);
    assert_eq!(set.read_all().unwrap(), train);
    assert_eq!(set.labels().unwrap(), train.iter().map(|r| r.label).collect::<Vec<_>>());
    // Random access: a row group in the middle holds exactly its range.
    let rg = set.row_group_count() / 2;
    let range = set.row_group_range(rg);
    assert_eq!(set.read_row_group(rg).unwrap(), train[range.clone()].to_vec());
    assert_eq!(set.row_group_of(range.start), rg);
    assert_eq!(set.row_group_of(range.end - 1), rg);
    let test = ShardSet::open(dir.path(), Split::Test).unwrap();
    assert_eq!(test.len(), 0);
    assert!(test.read_all().unwrap().is_empty());
}

#[test]
fn row_groups_are_cut_by_bytes() {
    let dir = tempfile::tempdir().unwrap();
    let train = rows(100, 3);
    let m = build(dir.path(), &train, WriterOptions::default().with_row_group_bytes(1000));
    let groups = &m.splits["train"].shards[0].row_groups;
    assert!(groups.len() >= 10, "{groups:?}");
}

#[test]
fn corrupted_shard_fails_verification_naming_the_file() {
    let dir = tempfile::tempdir().unwrap();
    build(dir.path(), &rows(50, 3), WriterOptions::default());
    let shard = dir.path().join("train/part-00000.parquet");
    let mut bytes = std::fs::read(&shard).unwrap();
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0xFF;
    std::fs::write(&shard, &bytes).unwrap();
    let set = ShardSet::open(dir.path(), Split::Train).unwrap();
    let e = set.verify().unwrap_err().to_string();
    assert!(e.contains("part-00000.parquet") && e.contains("checksum"), "{e}");
}

#[test]
fn bad_manifests_are_rejected() {
    let dir = tempfile::tempdir().unwrap();
    let e = ShardSet::open(dir.path(), Split::Train).unwrap_err().to_string();
    assert!(e.contains("manifest.json"), "{e}");
    build(dir.path(), &rows(10, 3), WriterOptions::default());
    let p = dir.path().join("manifest.json");
    let text = std::fs::read_to_string(&p).unwrap();
    std::fs::write(&p, text.replace("\"rows\": 10", "\"rows\": 11")).unwrap();
    let e = ShardSet::open(dir.path(), Split::Train).unwrap_err().to_string();
    assert!(e.contains("invalid manifest"), "{e}");
    std::fs::write(&p, "{not json").unwrap();
    assert!(Manifest::load(dir.path()).is_err());
}

#[test]
fn foreign_reader_sees_hf_metadata_and_selected_rows() {
    let dir = tempfile::tempdir().unwrap();
    let train = rows(40, 3);
    build(dir.path(), &train, WriterOptions::default());
    let (info, imgs) = read_image_parquet(
        &dir.path().join("train/part-00000.parquet"),
        &ImageColumns::default(),
        &|i| i % 10 == 0,
    )
    .unwrap();
    assert_eq!(info.labels.len(), 40);
    assert_eq!(info.class_names.unwrap(), vec!["class0", "class1", "class2"]);
    assert_eq!(imgs.len(), 4);
    assert_eq!(imgs[1].0, 10);
    assert_eq!(imgs[1].1, train[10].image);
    let e = read_image_parquet(
        &dir.path().join("train/part-00000.parquet"),
        &ImageColumns { image: "img".into(), label: "label".into() },
        &|_| true,
    )
    .unwrap_err()
    .to_string();
    assert!(e.contains("--image-column"), "{e}");
}
