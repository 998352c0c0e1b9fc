//! Writer → reader round trip, manifest validation and checksums.
use lt_shards::*;
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
    let m = Manifest::builder("test", &names)
        .command_line(vec!["test".into()])
        .source(SourceInfo::new("test", ""))
        .profile(ProfileInfo { class_order: None, n_max: None, spec: lt_core::profile::Profile::AsIs, targets: counts.clone() })
        .channels(1, vec![0.5], vec![0.25])
        .split(Split::Train, &counts, shards)
        .split(Split::Test, &[0, 0, 0], test_shards)
        .build()
        .unwrap();
    m.save(dir).unwrap();
    m
}

#[test]
fn rows_round_trip_across_shards_and_row_groups() {
    let dir = tempfile::tempdir().unwrap();
    let train = rows(1000, 3);
    let opts = WriterOptions::default().with_row_group_rows(64).with_shard_bytes(30_000);
    let m = build(dir.path(), &train, opts);
    let info = &m.splits[&Split::Train];
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
    let groups = &m.splits[&Split::Train].shards[0].row_groups;
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
    let (info, imgs) =
        read_image_parquet(&dir.path().join("train/part-00000.parquet"), &ImageColumns::default(), &|i| i % 10 == 0).unwrap();
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
    .unwrap_err();
    assert_eq!(e.settings(), ["image_column", "label_column"]);
    let e = e.to_string();
    assert!(e.contains("part-00000.parquet: no column \"img\"") && e.contains("image_column"), "{e}");
}

/// What `anyhow`'s `{:#}` prints: each error of the source chain, joined.
fn chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        s += &format!(": {c}");
        cur = c.source();
    }
    s
}

#[test]
fn error_chains_say_each_cause_once() {
    let dir = tempfile::tempdir().unwrap();
    let e = Manifest::load(dir.path()).unwrap_err();
    let c = chain(&e);
    assert!(c.contains("manifest.json"), "{c}");
    assert_eq!(c.matches("os error 2").count(), 1, "{c}");

    build(dir.path(), &rows(10, 3), WriterOptions::default());
    std::fs::remove_file(dir.path().join("train/part-00000.parquet")).unwrap();
    let e = ShardSet::open(dir.path(), Split::Train).unwrap_err();
    assert!(matches!(e, ShardError::MissingShard { .. }), "{e}");
    let c = chain(&e);
    assert!(c.contains("train/part-00000.parquet"), "{c}");
    assert_eq!(c.matches("missing").count(), 1, "{c}");
}

/// A split whose class counts (all in class 0) add up but whose label
/// column holds `labels`.
fn build_with_labels(dir: &Path, labels: &[i64], opts: WriterOptions) {
    let names: Vec<String> = (0..3).map(|c| format!("class{c}")).collect();
    let counts = [labels.len(), 0, 0];
    let mut w = SplitWriter::try_new(dir, Split::Train, &names, &counts, opts.clone()).unwrap();
    let mut train = rows(labels.len(), 3);
    for (r, &l) in train.iter_mut().zip(labels) {
        r.label = l;
    }
    w.write_rows(train).unwrap();
    let shards = w.finish().unwrap();
    let test_shards = SplitWriter::try_new(dir, Split::Test, &names, &[0, 0, 0], opts).unwrap().finish().unwrap();
    let m = Manifest::builder("test", &names)
        .channels(1, vec![0.5], vec![0.25])
        .split(Split::Train, &counts, shards)
        .split(Split::Test, &[0, 0, 0], test_shards)
        .build()
        .unwrap();
    m.save(dir).unwrap();
}

#[test]
fn out_of_range_labels_are_errors_naming_the_file_and_row() {
    // 200 rows in shards of two 50-row groups: global row 130 is row 30 of
    // the second file.
    let opts = WriterOptions::default().with_row_group_rows(50).with_shard_bytes(10_000);
    for bad in [3i64, 7, -1, i64::MIN] {
        let dir = tempfile::tempdir().unwrap();
        let mut labels: Vec<i64> = (0..200).map(|i| i % 3).collect();
        labels[130] = bad;
        build_with_labels(dir.path(), &labels, opts.clone());
        let set = ShardSet::open(dir.path(), Split::Train).unwrap();
        assert!(set.manifest().splits[&Split::Train].shards.len() > 1);
        for e in [
            set.labels().unwrap_err(),
            set.check_labels(3).unwrap_err(),
            set.read_all().unwrap_err(),
            set.read_row_group(set.row_group_of(130)).unwrap_err(),
        ] {
            match &e {
                ShardError::Label { path, row, label, classes } => {
                    assert!(path.ends_with("train/part-00001.parquet"), "{e}");
                    assert_eq!((*row, *label, *classes), (30, bad, 3), "{e}");
                }
                other => panic!("expected a label error, got {other}"),
            }
            let t = e.to_string();
            assert!(t.contains("part-00001.parquet: row 30: label") && t.contains("outside 0..3"), "{t}");
        }
        // Rows before the bad one still read.
        assert_eq!(set.read_row_group(0).unwrap().len(), 50);
        // A caller with more classes accepts the non-negative ones.
        if (0..8).contains(&bad) {
            let h = set.check_labels(8).unwrap();
            assert_eq!(h.iter().sum::<usize>(), 200);
            assert_eq!(h[bad as usize], 1);
            assert_eq!(h[..3], [67, 66, 66]);
        } else {
            assert!(set.check_labels(8).is_err());
        }
    }
}

#[test]
fn image_size_range_is_recorded_and_old_manifests_still_load() {
    let dir = tempfile::tempdir().unwrap();
    let mut train = rows(300, 3);
    for (i, r) in train.iter_mut().enumerate() {
        r.height = 20 + (i % 50) as i32;
        r.width = 100 - (i % 7) as i32;
    }
    let m = build(dir.path(), &train, WriterOptions::default().with_row_group_rows(32).with_shard_bytes(5_000));
    assert!(m.splits[&Split::Train].shards.len() > 2);
    let want = ImageSizeRange { min_height: 20, max_height: 69, min_width: 94, max_width: 100 };
    assert_eq!(m.image_size_range(Split::Train), Some(want));
    assert!(!want.is_uniform());
    // The empty test split has no range.
    assert_eq!(m.image_size_range(Split::Test), None);
    let loaded = Manifest::load(dir.path()).unwrap();
    assert_eq!(loaded.image_size_range(Split::Train), Some(want));
    for s in &loaded.splits[&Split::Train].shards {
        let r = s.image_size_range.unwrap();
        assert!(r.min_height >= 20 && r.max_height <= 69, "{r:?}");
    }

    // A manifest written before the field existed: loads, range unknown.
    let p = dir.path().join("manifest.json");
    let mut v: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&p).unwrap()).unwrap();
    for s in v["splits"]["train"]["shards"].as_array_mut().unwrap() {
        s.as_object_mut().unwrap().remove("image_size_range").unwrap();
    }
    std::fs::write(&p, serde_json::to_string(&v).unwrap()).unwrap();
    let old = Manifest::load(dir.path()).unwrap();
    assert_eq!(old.image_size_range(Split::Train), None);
    assert_eq!(ShardSet::open(dir.path(), Split::Train).unwrap().read_all().unwrap(), train);
}
