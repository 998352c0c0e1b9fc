//! lt-build against files written in each source's published byte layout:
//! exact counts, pixel round trips, determinism and bad input.
use lt_build::fixtures;
use lt_build::sources::{self, SourceOptions};
use lt_build::{build, BuildOptions, NoProgress, ProfileKind};
use lt_core::profile::Selection;
use lt_shards::{Row, ShardSet, Split};
use lt_vision::codec;
use std::collections::{BTreeSet, HashMap};
use std::path::Path;

fn opts(imbalance: Option<f64>) -> BuildOptions {
    BuildOptions { imbalance, command_line: vec!["test".into()], ..Default::default() }
}

fn run(kind: &str, src: &Path, out: &Path, o: &BuildOptions) -> lt_build::BuildReport {
    let mut s = sources::open(kind, Some(src), &SourceOptions::default()).unwrap();
    build(s.as_mut(), out, o, &NoProgress).unwrap()
}

fn train_counts(out: &Path) -> Vec<usize> {
    lt_shards::Manifest::load(out).unwrap().classes.iter().map(|c| c.train).collect()
}

fn rows(out: &Path, split: Split) -> Vec<Row> {
    ShardSet::open(out, split).unwrap().read_all().unwrap()
}

/// CIFAR CHW planes of image `i` as interleaved HWC.
fn cifar_hwc(data: &[u8], i: usize) -> Vec<u8> {
    let chw = &data[i * 3072..(i + 1) * 3072];
    (0..1024).flat_map(|p| (0..3).map(move |c| chw[c * 1024 + p])).collect()
}

const C10_IF100: [usize; 10] = [5000, 2997, 1796, 1077, 645, 387, 232, 139, 83, 50];

#[test]
fn cifar10_python_if100_exact_counts_for_both_selections() {
    let tmp = tempfile::tempdir().unwrap();
    let (train, train_labels, _, _) = fixtures::write_cifar10_python(tmp.path(), 5000, 3);
    let mut picked = Vec::new();
    for sel in [Selection::Glmc, Selection::Ldam] {
        let out = tmp.path().join(format!("out-{sel:?}"));
        let r = run("cifar10", tmp.path(), &out, &BuildOptions { selection: sel, ..opts(Some(100.0)) });
        assert_eq!(train_counts(&out), C10_IF100);
        assert_eq!(r.manifest.splits[&Split::Train].rows, 12_406);
        assert_eq!(r.manifest.splits[&Split::Test].rows, 30, "the test split stays whole and balanced");
        assert!(r.manifest.classes.iter().all(|c| c.test == 3));
        assert_eq!(r.manifest.classes[0].name, "airplane");
        assert_eq!(r.manifest.imbalance_factor, Some(100.0));
        assert_eq!((r.manifest.groups.many.len(), r.manifest.groups.medium.len(), r.manifest.groups.few.len()), (8, 2, 0));
        let rs = rows(&out, Split::Train);
        // Labels agree with the source, rows are globally shuffled.
        for row in &rs {
            assert_eq!(row.label, train_labels[row.source_index as usize] as i64);
        }
        let first_1000: BTreeSet<i64> = rs[..1000].iter().map(|r| r.label).collect();
        assert!(first_1000.len() >= 8, "first rows hold classes {first_1000:?}: not shuffled");
        // Pixels round-trip for a sample of rows (all rows in the binary test).
        for row in rs.iter().step_by(97) {
            let img = codec::decode(&row.image).unwrap();
            assert_eq!(img.pixels, cifar_hwc(&train, row.source_index as usize));
        }
        picked.push(rs.iter().map(|r| r.source_index).collect::<BTreeSet<_>>());
    }
    assert_ne!(picked[0], picked[1], "glmc and ldam select different subsets");
}

#[test]
fn cifar100_python_if100_has_10847_images() {
    let tmp = tempfile::tempdir().unwrap();
    fixtures::write_cifar100_python(tmp.path(), 500, 1);
    let out = tmp.path().join("out");
    let r = run("cifar100", &tmp.path().join("cifar-100-python"), &out, &opts(Some(100.0)));
    let counts = train_counts(&out);
    assert_eq!(counts.iter().sum::<usize>(), 10_847);
    assert_eq!((counts[0], counts[99]), (500, 5));
    assert_eq!(r.manifest.classes[7].name, "fine07");
    assert_eq!(r.manifest.splits[&Split::Test].rows, 100);
}

#[test]
fn cifar_binary_distributions_round_trip_every_pixel() {
    let tmp = tempfile::tempdir().unwrap();
    let (data, labels) = fixtures::write_cifar10_binary(tmp.path(), 40, 2);
    let out = tmp.path().join("c10");
    run("cifar10", tmp.path(), &out, &opts(Some(10.0)));
    assert_eq!(train_counts(&out), lt_core::profile::exponential_counts(10, 40, 10.0).unwrap());
    let rs = rows(&out, Split::Train);
    for row in &rs {
        let i = row.source_index as usize;
        assert_eq!(row.label, labels[i] as i64);
        assert_eq!(codec::decode(&row.image).unwrap().pixels, cifar_hwc(&data, i));
        assert_eq!((row.height, row.width), (32, 32));
    }
    let m = lt_shards::Manifest::load(&out).unwrap();
    assert_eq!(m.classes[9].name, "truck");
    // The manifest's mean/std are those of the stored train pixels.
    let mut sum = [0f64; 3];
    for row in &rs {
        for (k, v) in cifar_hwc(&data, row.source_index as usize).iter().enumerate() {
            sum[k % 3] += *v as f64;
        }
    }
    let n = rs.len() as f64 * 1024.0 * 255.0;
    for (k, s) in sum.iter().enumerate() {
        assert!((m.mean[k] - s / n).abs() < 1e-9, "mean[{k}] {} vs {}", m.mean[k], s / n);
    }

    let (data, labels) = fixtures::write_cifar100_binary(tmp.path(), 6, 1);
    let out = tmp.path().join("c100");
    run("cifar100", tmp.path(), &out, &opts(Some(3.0)));
    for row in rows(&out, Split::Train) {
        let i = row.source_index as usize;
        assert_eq!(row.label, labels[i] as i64, "fine label, not coarse");
        assert_eq!(codec::decode(&row.image).unwrap().pixels, cifar_hwc(&data, i));
    }
}

#[test]
fn idx_gz_and_raw_round_trip_every_pixel() {
    for gz in [true, false] {
        let tmp = tempfile::tempdir().unwrap();
        let src = tmp.path().join("mnist");
        let (px, labels) = fixtures::write_idx(&src, 30, 4, 28, gz);
        let out = tmp.path().join("out");
        let r = run("idx", &src, &out, &opts(Some(5.0)));
        assert_eq!(r.manifest.channels, 1);
        assert_eq!(train_counts(&out), lt_core::profile::exponential_counts(10, 30, 5.0).unwrap());
        for row in rows(&out, Split::Train) {
            let i = row.source_index as usize;
            assert_eq!(row.label, labels[i] as i64);
            let img = codec::decode(&row.image).unwrap();
            assert_eq!((img.channels, img.width, img.height), (1, 28, 28));
            assert_eq!(img.pixels, px[i * 784..(i + 1) * 784]);
        }
        assert_eq!(rows(&out, Split::Test).len(), 40);
    }
}

#[test]
fn folder_png_round_trips_and_keeps_original_bytes() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("imagenet");
    let files = fixtures::write_folder(&root, &[("n01", 12, 2), ("n02", 8, 2), ("n03", 5, 2)]);
    let by_path: HashMap<String, _> = files.into_iter().collect();
    let out = tmp.path().join("out");
    let r = run("folder", &root, &out, &opts(None));
    assert_eq!(train_counts(&out), vec![12, 8, 5], "no --if: the distribution is kept as-is");
    assert_eq!(r.manifest.classes.iter().map(|c| c.name.as_str()).collect::<Vec<_>>(), ["n01", "n02", "n03"]);
    let rs = rows(&out, Split::Train);
    assert_eq!(rs.len(), 25);
    for row in rs {
        let want = &by_path[&row.path];
        // Original PNG bytes are stored, so pixels are identical.
        assert_eq!(row.image, std::fs::read(root.join(&row.path)).unwrap());
        let img = codec::decode(&row.image).unwrap();
        assert_eq!(&img, want);
        assert_eq!((row.width as u32, row.height as u32), (want.width, want.height));
    }
    assert_eq!(rows(&out, Split::Test).len(), 6);
}

#[test]
fn jpeg_passthrough_and_max_side_reencode() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("photos");
    for (c, n) in [("a", 3), ("b", 2)] {
        std::fs::create_dir_all(root.join(c)).unwrap();
        for i in 0..n {
            let img = codec::Decoded { width: 300, height: 200, channels: 3, pixels: fixtures::pixels(i as u64, 300 * 200 * 3) };
            std::fs::write(root.join(c).join(format!("{i}.jpg")), codec::encode_jpeg(&img, 85).unwrap()).unwrap();
        }
    }
    let out = tmp.path().join("pass");
    run("folder", &root, &out, &opts(None));
    for row in rows(&out, Split::Train) {
        assert_eq!(row.image, std::fs::read(root.join(&row.path)).unwrap(), "JPEG bytes kept as-is");
    }
    let out = tmp.path().join("small");
    run("folder", &root, &out, &BuildOptions { max_side: Some(64), ..opts(None) });
    for row in rows(&out, Split::Train) {
        assert_eq!(codec::sniff(&row.image), Some(codec::Format::Jpeg));
        assert_eq!((row.width, row.height), (64, 43));
        assert_eq!(codec::dimensions(&row.image).unwrap(), (64, 43));
    }
}

#[test]
fn same_seed_same_bytes_other_seed_other_selection() {
    let tmp = tempfile::tempdir().unwrap();
    let src = tmp.path().join("mnist");
    fixtures::write_idx(&src, 50, 2, 12, true);
    let build_with = |seed: u64, name: &str| {
        let out = tmp.path().join(name);
        run("idx", &src, &out, &BuildOptions { seed, ..opts(Some(10.0)) });
        out
    };
    let a = build_with(7, "a");
    let b = build_with(7, "b");
    let c = build_with(8, "c");
    for split in ["train", "test"] {
        let f = format!("{split}/part-00000.parquet");
        assert_eq!(std::fs::read(a.join(&f)).unwrap(), std::fs::read(b.join(&f)).unwrap(), "{f} differs between identical builds");
    }
    let ids = |d: &Path| rows(d, Split::Train).iter().map(|r| r.source_index).collect::<BTreeSet<_>>();
    assert_ne!(ids(&a), ids(&c));
    assert_eq!(train_counts(&a), train_counts(&c));
}

#[test]
fn list_source_reads_imagenet_lt_style_lists() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("root");
    let files = fixtures::write_folder(&root, &[("x", 4, 1), ("y", 3, 1)]);
    // ImageNet-LT style: relative path, then the label.
    let mut list = String::new();
    for (p, _) in &files {
        list += &format!("{p} {}\n", if p.contains("/x/") { 0 } else { 1 });
    }
    std::fs::write(tmp.path().join("train.txt"), &list).unwrap();
    std::fs::write(tmp.path().join("test.txt"), "val/x/0000.png 0\nval/y/0000.png 1\n").unwrap();
    std::fs::write(tmp.path().join("names.txt"), "cat\ndog\n").unwrap();
    let so = SourceOptions {
        train_list: Some(tmp.path().join("train.txt")),
        test_list: Some(tmp.path().join("test.txt")),
        class_names_file: Some(tmp.path().join("names.txt")),
        ..Default::default()
    };
    let mut s = sources::open("list", Some(&root), &so).unwrap();
    let r = build(s.as_mut(), &tmp.path().join("out"), &opts(None), &NoProgress).unwrap();
    assert_eq!(r.manifest.classes.iter().map(|c| (c.name.as_str(), c.train, c.test)).collect::<Vec<_>>(), [("cat", 4, 1), ("dog", 3, 1)]);

    std::fs::write(tmp.path().join("bad.txt"), "train/x/0000.png 0\ntrain/x/0001.png zero\n").unwrap();
    let so = SourceOptions { train_list: Some(tmp.path().join("bad.txt")), ..Default::default() };
    let e = sources::open("list", Some(&root), &so).err().unwrap().to_string();
    assert!(e.contains("bad.txt") && e.contains("line 2"), "{e}");
}

#[test]
fn parquet_source_regenerates_a_split_from_a_build() {
    let tmp = tempfile::tempdir().unwrap();
    let src = tmp.path().join("mnist");
    fixtures::write_idx(&src, 40, 2, 10, false);
    let full = tmp.path().join("full");
    run("idx", &src, &full, &opts(None));
    let lt = tmp.path().join("lt");
    let r = run("parquet", &full, &lt, &opts(Some(4.0)));
    assert_eq!(train_counts(&lt), lt_core::profile::exponential_counts(10, 40, 4.0).unwrap());
    assert_eq!(r.manifest.splits[&Split::Test].rows, 20);
    // Images are carried over byte for byte (PNG passthrough).
    let orig: HashMap<String, Vec<u8>> = rows(&full, Split::Train).into_iter().map(|r| (r.path, r.image)).collect();
    for row in rows(&lt, Split::Train) {
        assert_eq!(orig[&row.path], row.image);
    }
    assert_eq!(sources::detect(&full).unwrap(), "parquet");
}

#[test]
fn detection_of_source_kinds() {
    let tmp = tempfile::tempdir().unwrap();
    fixtures::write_cifar10_binary(&tmp.path().join("c10"), 1, 1);
    fixtures::write_idx(&tmp.path().join("idx"), 1, 1, 4, true);
    fixtures::write_folder(&tmp.path().join("folder"), &[("a", 1, 1)]);
    assert_eq!(sources::detect(&tmp.path().join("c10")).unwrap(), "cifar10");
    assert_eq!(sources::detect(&tmp.path().join("idx")).unwrap(), "idx");
    assert_eq!(sources::detect(&tmp.path().join("folder")).unwrap(), "folder");
    let e = sources::detect(&tmp.path().join("nope")).unwrap_err().to_string();
    assert!(e.contains("nope") && e.contains("does not exist"), "{e}");
}

// ---- bad input ----

#[test]
fn missing_and_corrupt_source_files_are_named() {
    let tmp = tempfile::tempdir().unwrap();
    fixtures::write_cifar10_python(tmp.path(), 2, 1);
    let dir = tmp.path().join("cifar-10-batches-py");
    std::fs::remove_file(dir.join("data_batch_3")).unwrap();
    let e = sources::open("cifar10", Some(&dir), &SourceOptions::default()).err().unwrap().to_string();
    assert!(e.contains("data_batch_3"), "{e}");

    fixtures::write_cifar10_python(tmp.path(), 2, 1);
    let b = std::fs::read(dir.join("data_batch_2")).unwrap();
    std::fs::write(dir.join("data_batch_2"), &b[..b.len() / 2]).unwrap();
    let e = sources::open("cifar10", Some(&dir), &SourceOptions::default()).err().unwrap().to_string();
    assert!(e.contains("data_batch_2") && e.contains("truncated"), "{e}");

    let bin = tmp.path().join("bin");
    fixtures::write_cifar10_binary(&bin, 2, 1);
    let f = bin.join("cifar-10-batches-bin/test_batch.bin");
    let mut b = std::fs::read(&f).unwrap();
    b.pop();
    std::fs::write(&f, b).unwrap();
    let e = sources::open("cifar10", Some(&bin), &SourceOptions::default()).err().unwrap().to_string();
    assert!(e.contains("test_batch.bin") && e.contains("3073-byte"), "{e}");

    let idx = tmp.path().join("idx");
    fixtures::write_idx(&idx, 2, 1, 8, true);
    std::fs::write(idx.join("train-labels-idx1-ubyte.gz"), b"\x1f\x8bgarbage").unwrap();
    let e = sources::open("idx", Some(&idx), &SourceOptions::default()).err().unwrap().to_string();
    assert!(e.contains("train-labels-idx1-ubyte.gz") && e.contains("gzip"), "{e}");
}

#[test]
fn corrupt_image_in_folder_fails_or_is_skipped_and_listed() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("imgs");
    fixtures::write_folder(&root, &[("a", 5, 1), ("b", 5, 1)]);
    let bad = root.join("train/b/0003.png");
    let b = std::fs::read(&bad).unwrap();
    std::fs::write(&bad, &b[..b.len() / 3]).unwrap();
    let out = tmp.path().join("out");
    let mut s = sources::open("folder", Some(&root), &SourceOptions::default()).unwrap();
    let e = build(s.as_mut(), &out, &opts(None), &NoProgress).unwrap_err();
    assert_eq!(e.settings(), ["skip_corrupt"]);
    let e = e.to_string();
    assert!(e.contains("train/b/0003.png") && e.contains("set skip_corrupt"), "{e}");
    assert!(!out.exists(), "a failed build leaves no output directory");
    let names: Vec<_> = std::fs::read_dir(tmp.path()).unwrap().map(|e| e.unwrap().file_name()).collect();
    assert_eq!(names.len(), 1, "no staging leftovers: {names:?}");

    let r = build(s.as_mut(), &out, &BuildOptions { skip_corrupt: true, ..opts(None) }, &NoProgress).unwrap();
    assert_eq!(train_counts(&out), vec![5, 4]);
    assert_eq!(r.manifest.skipped.len(), 1);
    assert_eq!(r.manifest.skipped[0].path, "train/b/0003.png");
    assert!(r.manifest.skipped[0].error.len() > 3);
}

#[test]
fn too_few_images_fails_or_clamps_and_records() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("imgs");
    fixtures::write_folder(&root, &[("a", 6, 0), ("b", 2, 0)]);
    let mut s = sources::open("folder", Some(&root), &SourceOptions::default()).unwrap();
    let o = BuildOptions { profile: ProfileKind::Exponential, max_per_class: Some(6), ..opts(Some(2.0)) };
    let e = build(s.as_mut(), &tmp.path().join("o1"), &o, &NoProgress).unwrap_err();
    assert_eq!(e.settings(), ["clamp", "max_per_class", "imbalance"]);
    let e = e.to_string();
    assert!(e.contains("class 1 (b) has 2 images but the profile asks for 3") && e.contains("set clamp"), "{e}");
    let r = build(s.as_mut(), &tmp.path().join("o2"), &BuildOptions { clamp: true, ..o }, &NoProgress).unwrap();
    assert_eq!(train_counts(&tmp.path().join("o2")), vec![6, 2]);
    assert_eq!(r.manifest.clamped, vec![lt_core::profile::Clamped { class: 1, wanted: 3, kept: 2 }]);
}

#[test]
fn imbalance_below_one_and_existing_output_are_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let src = tmp.path().join("mnist");
    fixtures::write_idx(&src, 5, 1, 4, false);
    let mut s = sources::open("idx", Some(&src), &SourceOptions::default()).unwrap();
    let e = build(s.as_mut(), &tmp.path().join("o"), &opts(Some(0.5)), &NoProgress).unwrap_err();
    assert_eq!(e.settings(), ["imbalance"]);
    let e = e.to_string();
    assert!(e.starts_with("imbalance: ") && e.contains("0.5"), "{e}");
    let out = tmp.path().join("o");
    std::fs::create_dir(&out).unwrap();
    std::fs::write(out.join("keep.txt"), b"precious").unwrap();
    let e = build(s.as_mut(), &out, &opts(None), &NoProgress).unwrap_err();
    assert_eq!(e.settings(), ["overwrite"]);
    let e = e.to_string();
    assert!(e.contains("already exists") && e.contains("set overwrite"), "{e}");
    assert_eq!(std::fs::read(out.join("keep.txt")).unwrap(), b"precious");
    // --overwrite replaces only an earlier build, never someone's directory.
    let e = build(s.as_mut(), &out, &BuildOptions { overwrite: true, ..opts(None) }, &NoProgress).unwrap_err().to_string();
    assert!(e.contains("is not an earlier build") && e.contains(out.to_str().unwrap()), "{e}");
    assert_eq!(std::fs::read(out.join("keep.txt")).unwrap(), b"precious");
    std::fs::remove_dir_all(&out).unwrap();
    let first = build(s.as_mut(), &out, &opts(None), &NoProgress).unwrap();
    assert!(!first.replaced);
    let again = build(s.as_mut(), &out, &BuildOptions { overwrite: true, ..opts(None) }, &NoProgress).unwrap();
    assert!(again.replaced);
    assert!(out.join("manifest.json").exists());
    let names: Vec<_> = std::fs::read_dir(tmp.path()).unwrap().map(|e| e.unwrap().file_name()).collect();
    assert_eq!(names.len(), 2, "nothing left beside the output: {names:?}");
}

/// Two noise photographs of at least 256 px under `root/sub`, plus a small
/// one and a text file, which the photos source skips.
fn write_photos(root: &Path) {
    std::fs::create_dir_all(root.join("sub")).unwrap();
    for (i, (w, h)) in [(300u32, 260u32), (280, 400), (100, 100)].into_iter().enumerate() {
        let img = codec::Decoded { width: w, height: h, channels: 3, pixels: fixtures::pixels(i as u64, (w * h * 3) as usize) };
        std::fs::write(root.join("sub").join(format!("p{i}.JPG")), codec::encode_jpeg(&img, 90).unwrap()).unwrap();
    }
    std::fs::write(root.join("notes.txt"), b"not a photo").unwrap();
}

#[test]
fn photos_are_seeded_random_crops_at_the_sizes_asked() {
    use lt_build::sources::photos::PhotoOptions;
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("photos");
    write_photos(&root);
    let photos = |sizes: Vec<u32>, size: Option<u32>| SourceOptions {
        photos: PhotoOptions { classes: 3, train_per_class: 4, test_per_class: 1, sizes, size, seed: 5, ..Default::default() },
        ..Default::default()
    };
    let jpeg = photos(vec![64, 80], None);
    let o = BuildOptions { seed: 5, ..opts(Some(2.0)) };
    let r = build(sources::open("photos", Some(&root), &jpeg).unwrap().as_mut(), &tmp.path().join("a"), &o, &NoProgress).unwrap();
    let m = &r.manifest;
    assert_eq!(m.source.as_ref().unwrap().kind, "photos");
    assert_eq!(m.class_names(), ["class000", "class001", "class002"]);
    assert_eq!(train_counts(&tmp.path().join("a")), lt_core::profile::exponential_counts(3, 4, 2.0).unwrap());
    assert_eq!(m.splits[&Split::Test].rows, 3);
    let train = rows(&tmp.path().join("a"), Split::Train);
    let big = [root.join("sub/p0.JPG"), root.join("sub/p1.JPG")].map(|p| p.display().to_string());
    for row in &train {
        assert_eq!(codec::sniff(&row.image), Some(codec::Format::Jpeg), "stored as JPEG");
        assert!([64, 80].contains(&row.height.max(row.width)), "{}x{}", row.width, row.height);
        let img = codec::decode(&row.image).unwrap();
        assert_eq!((img.width as i32, img.height as i32, img.channels), (row.width, row.height, 3));
        assert!(big.iter().any(|p| row.path.starts_with(&format!("{p}#train:"))), "{} is a crop of a large photo", row.path);
    }
    // The same seed gives the same bytes.
    let again = build(sources::open("photos", Some(&root), &jpeg).unwrap().as_mut(), &tmp.path().join("b"), &o, &NoProgress).unwrap();
    assert_eq!(rows(&tmp.path().join("b"), Split::Train), train);
    assert_eq!(again.manifest.splits, r.manifest.splits);

    // --size: square PNG crops.
    let png = photos(vec![], Some(16));
    build(sources::open("photos", Some(&root), &png).unwrap().as_mut(), &tmp.path().join("c"), &o, &NoProgress).unwrap();
    for row in rows(&tmp.path().join("c"), Split::Train) {
        assert_eq!((codec::sniff(&row.image), row.width, row.height), (Some(codec::Format::Png), 16, 16));
    }

    // No photograph large enough, and sizes that make no image, are refused.
    let small = tmp.path().join("small");
    std::fs::create_dir(&small).unwrap();
    std::fs::copy(root.join("sub/p2.JPG"), small.join("p.jpg")).unwrap();
    let e = sources::open("photos", Some(&small), &jpeg).err().unwrap().to_string();
    assert!(e.contains("small") && e.contains("no JPEG photographs of at least 256 px"), "{e}");
    let e = sources::open("photos", Some(&root), &photos(vec![64, 0], None)).err().unwrap();
    assert_eq!(e.settings(), ["sizes", "size"]);
}
