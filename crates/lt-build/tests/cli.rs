//! The `lt-build` binary: the README's commands, inspect, interrupted builds,
//! real Fashion-MNIST and interop with pyarrow / DuckDB / HF datasets.
use lt_build::fixtures;
use lt_shards::Split;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn lt_build(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_lt-build")).args(args).arg("--quiet").output().unwrap()
}

fn lt_inspect(dir: &Path) -> Output {
    Command::new(env!("CARGO_BIN_EXE_lt-build")).arg("inspect").arg(dir).output().unwrap()
}

fn text(o: &Output) -> String {
    format!("{}{}", String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr))
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

#[test]
fn readme_example_if256_on_a_class_per_folder_tree() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("imagenet");
    fixtures::write_folder(&root, &[("n01440764", 256, 2), ("n01443537", 20, 2), ("n01484850", 3, 2)]);
    let out = tmp.path().join("shards");
    let o = lt_build(&["--if", "256", s(&root), "-o", s(&out)]);
    assert!(o.status.success(), "{}", text(&o));
    let m = lt_shards::Manifest::load(&out).unwrap();
    // floor(256 · 256^(−c/2)) = 256, 16, 1
    assert_eq!(m.classes.iter().map(|c| c.train).collect::<Vec<_>>(), [256, 16, 1]);
    assert_eq!(m.source.unwrap().kind, "folder");
    assert!(m.command_line.iter().any(|a| a == "256"));

    let o = lt_inspect(&out);
    let t = text(&o);
    assert!(o.status.success(), "{t}");
    assert!(t.contains("imbalance factor: 256.00 (256 / 1)"), "{t}");
    assert!(t.contains("many 1, medium 0, few 2"), "{t}");
    assert!(t.contains("verify: all 2 shard(s) match"), "{t}");
    assert!(t.contains("n01440764") && t.contains("████"), "{t}");

    // A damaged shard fails inspect with the file named.
    let shard = out.join("train/part-00000.parquet");
    let mut b = std::fs::read(&shard).unwrap();
    let n = b.len();
    b[n / 2] ^= 1;
    std::fs::write(&shard, b).unwrap();
    let o = lt_inspect(&out);
    assert_eq!(o.status.code(), Some(1));
    assert!(text(&o).contains("FAILED train/part-00000.parquet"), "{}", text(&o));
}

#[test]
fn flag_errors_name_the_flag_and_exit_2() {
    let tmp = tempfile::tempdir().unwrap();
    fixtures::write_idx(&tmp.path().join("m"), 3, 1, 4, false);
    let src = tmp.path().join("m");
    for (args, needle) in [
        (vec!["--if", "0.9", s(&src)], "--if"),
        (vec!["--if", "10", "--selection", "random", s(&src)], "--selection"),
        (vec!["--if", "10", "--profile", "zipf", s(&src)], "--profile"),
        (vec!["cifar10", s(&src)], "cifar"),
        (vec!["--quality", "0", s(&src)], "--quality"),
        (vec!["--if", "5", s(&tmp.path().join("missing"))], "missing"),
    ] {
        let o = lt_build(&args);
        assert_eq!(o.status.code(), Some(2), "{args:?}: {}", text(&o));
        assert!(text(&o).contains(needle), "{args:?}: {}", text(&o));
    }
}

#[test]
fn killed_build_leaves_nothing_that_looks_complete_and_rerun_succeeds() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("big");
    let mut child = Command::new(env!("CARGO_BIN_EXE_lt-build"))
        .args(["synth", "--classes", "10", "--per-class", "20000", "--size", "48", "--quiet", "--threads", "1", "-o", s(&out)])
        .spawn()
        .unwrap();
    // Wait until the build is writing into its staging directory, then kill -9.
    let staging: PathBuf = tmp.path().join(format!(".big.tmp-{}", child.id()));
    let t0 = std::time::Instant::now();
    while !staging.join("train").exists() {
        assert!(t0.elapsed().as_secs() < 120, "build never started writing");
        assert!(child.try_wait().unwrap().is_none(), "build finished before it could be interrupted");
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    child.kill().unwrap();
    child.wait().unwrap();
    assert!(!out.exists(), "an interrupted build must not create the output directory");
    assert!(!staging.join("manifest.json").exists());
    // The rerun cleans the dead build's staging directory and succeeds.
    let o = lt_build(&["synth", "--classes", "3", "--per-class", "10", "--size", "8", "-o", s(&out)]);
    assert!(o.status.success(), "{}", text(&o));
    assert!(!staging.exists(), "stale staging directory was not removed");
    assert!(out.join("manifest.json").exists());
}

fn require(var: &str) -> bool {
    std::env::var(var).is_ok_and(|v| v == "1")
}

/// Real data: Debian's dataset-fashion-mnist package.
#[test]
fn fashion_mnist_lt_if100_from_the_debian_package() {
    let src = Path::new("/usr/share/datasets/fashion-mnist");
    if !src.exists() {
        assert!(!require("LT_REQUIRE_FASHION_MNIST"), "{} is missing (apt-get install dataset-fashion-mnist)", src.display());
        eprintln!("skipping: {} not installed", src.display());
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("fmnist");
    let o = lt_build(&["idx", s(src), "--if", "100", "-o", s(&out)]);
    assert!(o.status.success(), "{}", text(&o));
    let m = lt_shards::Manifest::load(&out).unwrap();
    assert_eq!(m.classes.iter().map(|c| c.train).collect::<Vec<_>>(), [6000, 3596, 2156, 1292, 774, 464, 278, 166, 100, 60]);
    assert!(m.classes.iter().all(|c| c.test == 1000), "balanced 10,000-image test split");
    assert_eq!(m.splits[&Split::Test].rows, 10_000);
    assert_eq!(m.classes[9].name, "Ankle boot");
    // Every stored pixel equals the IDX source.
    let (_, px) = lt_build::sources::idx::read_idx(&src.join("train-images-idx3-ubyte.gz")).unwrap();
    let rows = lt_shards::ShardSet::open(&out, lt_shards::Split::Train).unwrap().read_all().unwrap();
    for r in &rows {
        let i = r.source_index as usize;
        assert_eq!(lt_vision::codec::decode(&r.image).unwrap().pixels, px[i * 784..(i + 1) * 784]);
    }
    // Fashion-MNIST's published train mean is ≈ 0.286 over all 60k images;
    // the long-tailed subset is dominated by T-shirts, so it differs a little.
    assert!((m.mean[0] - 0.29).abs() < 0.03 && (m.std[0] - 0.35).abs() < 0.03, "{:?} {:?}", m.mean, m.std);
}

/// Interop: pyarrow, DuckDB and HF `datasets` from the venv (tools/setup.sh).
#[test]
fn shards_open_in_pyarrow_duckdb_and_hf_datasets() {
    let py = std::env::var("LT_GLMC_PYTHON").unwrap_or_else(|_| "python3".into());
    let probe = Command::new(&py).args(["-c", "import pyarrow, duckdb, datasets"]).output();
    if !probe.as_ref().is_ok_and(|o| o.status.success()) {
        assert!(!require("LT_REQUIRE_PYTHON"), "{py} lacks pyarrow/duckdb/datasets: run tools/setup.sh");
        eprintln!("skipping: no python with pyarrow/duckdb/datasets");
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let (data, labels, _, _) = fixtures::write_cifar10_python(tmp.path(), 30, 2);
    let out = tmp.path().join("c10");
    let o = lt_build(&["cifar10", s(tmp.path()), "--if", "10", "-o", s(&out)]);
    assert!(o.status.success(), "{}", text(&o));
    // Reference values computed here, checked there.
    let i0 = {
        let rows = lt_shards::ShardSet::open(&out, lt_shards::Split::Train).unwrap().read_all().unwrap();
        rows[0].source_index as usize
    };
    let first_pixel: Vec<u8> = (0..3).map(|c| data[i0 * 3072 + c * 1024]).collect();
    let script = format!(
        r#"
import json, io, sys
import pyarrow.parquet as pq, duckdb, datasets, numpy as np
from PIL import Image
root = {root:?}
t = pq.read_table(root + "/train")
hf = json.loads(t.schema.metadata[b"huggingface"])
assert hf["info"]["features"]["label"]["_type"] == "ClassLabel", hf
assert hf["info"]["features"]["label"]["names"][0] == "airplane", hf
assert hf["info"]["features"]["image"]["_type"] == "Image", hf
lt = json.loads(t.schema.metadata[b"lt_glmc"])
labels = t.column("label").to_pylist()
counts = [labels.count(c) for c in range(10)]
assert counts == lt["class_counts"], (counts, lt)
assert counts == {counts:?}, counts
img = t.column("image")[0].as_py()
px = np.array(Image.open(io.BytesIO(img["bytes"])))
assert px.shape == (32, 32, 3), px.shape
assert list(px[0, 0]) == {first:?}, (list(px[0, 0]), {first:?})
assert t.column("source_index")[0].as_py() == {i0}
n = duckdb.sql(f"select count(*) from '{{root}}/train/*.parquet' where label = 0").fetchall()[0][0]
assert n == counts[0], n
ds = datasets.load_dataset("parquet", data_files={{"train": root + "/train/*.parquet", "test": root + "/test/*.parquet"}})
assert ds["train"].features["label"].names[1] == "automobile"
assert ds["train"].num_rows == sum(counts) and ds["test"].num_rows == 20
x = ds["train"][0]["image"]
assert x.size == (32, 32) and list(np.array(x)[0, 0]) == {first:?}
print("interop ok")
"#,
        root = s(&out),
        counts = lt_core::profile::exponential_counts(10, 30, 10.0).unwrap(),
        first = first_pixel,
        i0 = i0,
    );
    let o = Command::new(&py).args(["-c", &script]).env("HF_DATASETS_OFFLINE", "1").env("HF_HOME", tmp.path().join("hf")).output().unwrap();
    assert!(o.status.success(), "{}", text(&o));
    assert!(text(&o).contains("interop ok"));
    let _ = labels;
}

/// A Python 3 `pickle.dump(..., protocol=2)` of numpy data (bytes travel as
/// `_codecs.encode`) reads the same as the Python 2 originals.
#[test]
fn cifar_pickled_by_python3_numpy_reads_too() {
    let py = std::env::var("LT_GLMC_PYTHON").unwrap_or_else(|_| "python3".into());
    if !Command::new(&py).args(["-c", "import numpy"]).output().is_ok_and(|o| o.status.success()) {
        assert!(!require("LT_REQUIRE_PYTHON"), "{py} lacks numpy");
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("cifar-10-batches-py");
    let script = format!(
        r#"
import pickle, numpy as np
d = {dir:?}
import os; os.makedirs(d)
rng = np.random.default_rng(0)
for name, n, proto in [("data_batch_1", 20, 2), ("data_batch_2", 20, 4), ("data_batch_3", 20, 5), ("data_batch_4", 20, 2), ("data_batch_5", 20, 3), ("test_batch", 10, 2)]:
    data = rng.integers(0, 256, size=(n, 3072), dtype=np.uint8)
    labels = [int(i % 10) for i in range(n)]
    with open(f"{{d}}/{{name}}", "wb") as f:
        pickle.dump({{b"data": data, b"labels": labels, b"batch_label": b"x"}}, f, protocol=proto)
    np.save(f"{{d}}/{{name}}.npy", data)
with open(f"{{d}}/batches.meta", "wb") as f:
    pickle.dump({{"label_names": ["airplane","automobile","bird","cat","deer","dog","frog","horse","ship","truck"]}}, f, protocol=2)
"#,
        dir = s(&dir)
    );
    let o = Command::new(&py).args(["-c", &script]).output().unwrap();
    assert!(o.status.success(), "{}", text(&o));
    let c = lt_build::sources::cifar::Cifar::open(&dir, 10).unwrap();
    use lt_build::sources::Source;
    assert_eq!(c.labels(lt_shards::Split::Train).len(), 100);
    assert_eq!(c.class_names()[3], "cat");
    // Image 45 sits in data_batch_3 (protocol 5) at row 5.
    let npy = std::fs::read(dir.join("data_batch_3.npy")).unwrap();
    let raw = &npy[npy.len() - 20 * 3072..];
    let item = c.item(lt_shards::Split::Train, 45).unwrap();
    let lt_build::sources::Payload::Raw(img) = item.payload else { panic!("raw payload") };
    assert_eq!(img.pixels[0], raw[5 * 3072]);
    assert_eq!(img.pixels[1], raw[5 * 3072 + 1024]);
}

#[test]
fn recipe_build_section_supplies_defaults_and_flags_override_it() {
    let tmp = tempfile::tempdir().unwrap();
    let src = tmp.path().join("mnist");
    fixtures::write_idx(&src, 100, 1, 6, true);
    let recipe = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../pipelines/fashion-mnist-lt-demo.toml");
    let out = tmp.path().join("a");
    let o = lt_build(&["--recipe", s(&recipe), s(&src), "-o", s(&out)]);
    assert!(o.status.success(), "{}", text(&o));
    let m = lt_shards::Manifest::load(&out).unwrap();
    // The recipe says source idx, exponential, IF 100.
    assert_eq!(m.classes.iter().map(|c| c.train).collect::<Vec<_>>(), lt_core::profile::exponential_counts(10, 100, 100.0).unwrap());
    assert_eq!(m.source.unwrap().kind, "idx");
    let out = tmp.path().join("b");
    let o = lt_build(&["--recipe", s(&recipe), s(&src), "--if", "10", "--selection", "ldam", "-o", s(&out)]);
    assert!(o.status.success(), "{}", text(&o));
    let m = lt_shards::Manifest::load(&out).unwrap();
    assert_eq!(m.classes.iter().map(|c| c.train).collect::<Vec<_>>(), lt_core::profile::exponential_counts(10, 100, 10.0).unwrap());
    assert_eq!(m.selection, Some(lt_core::profile::Selection::Ldam));
}

// ---- Red-team defects: every bad input is exit 2 (inspect: 1
// for a verification failure) with a message naming the file, row or flag,
// never a panic. RELIABILITY.md lists them.

/// Exit code 2, no panic, and `needle` in the output.
fn assert_refused(args: &[&str], needle: &str) -> String {
    let o = lt_build(args);
    let t = text(&o);
    assert_eq!(o.status.code(), Some(2), "{args:?}: {t}");
    assert!(!t.contains("panicked"), "{args:?}: {t}");
    assert!(t.contains(needle), "{args:?}: expected {needle:?} in: {t}");
    t
}

/// Rewrites the train split of the build in `out` with label `bad` at
/// global row `at`, keeping the manifest's checksums right so that only the
/// labels are wrong.
fn plant_label(out: &Path, at: usize, bad: i64) {
    use lt_shards::{Manifest, ShardSet, SplitWriter, WriterOptions};
    let mut m = Manifest::load(out).unwrap();
    let mut rows = ShardSet::open(out, Split::Train).unwrap().read_all().unwrap();
    rows[at].label = bad;
    std::fs::remove_dir_all(out.join("train")).unwrap();
    let names = m.class_names();
    let mut w =
        SplitWriter::try_new(out, Split::Train, &names, &m.class_counts(Split::Train), WriterOptions::default().with_row_group_rows(8))
            .unwrap();
    w.write_rows(rows).unwrap();
    m.splits.get_mut(&Split::Train).unwrap().shards = w.finish().unwrap();
    m.save(out).unwrap();
}

#[test]
fn inspect_names_the_shard_and_row_of_a_label_outside_the_classes() {
    let tmp = tempfile::tempdir().unwrap();
    for bad in [3i64, 1000, -1] {
        let out = tmp.path().join(format!("s{bad}"));
        let o = lt_build(&["synth", "--classes", "3", "--per-class", "10", "--test-per-class", "2", "--size", "8", "-o", s(&out)]);
        assert!(o.status.success(), "{}", text(&o));
        plant_label(&out, 13, bad);
        let o = lt_inspect(&out);
        let t = text(&o);
        assert!(!t.contains("panicked"), "{t}");
        assert_eq!(o.status.code(), Some(1), "{t}");
        assert!(
            t.contains(&format!("verify: FAILED {}: row 13: label {bad} is outside 0..3", out.join("train/part-00000.parquet").display())),
            "{t}"
        );
    }
}

#[test]
fn synth_sizes_are_bounded_before_allocating() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("o");
    let t = assert_refused(&["synth", "--size", "100000", "-o", s(&out)], "size 100000 is too large");
    assert!(t.contains("(flag --size)"), "{t}");
    assert_refused(&["synth", "--classes", "1000", "--per-class", "100000000", "-o", s(&out)], "--per-class");
    assert_refused(&["synth", "--classes", "18446744073709551615", "--per-class", "2", "-o", s(&out)], "--classes");
    assert!(!out.exists());
}

fn siblings(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(dir).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect();
    v.sort();
    v
}

#[test]
fn overwrite_never_replaces_a_file_or_a_directory_that_is_not_a_build() {
    let tmp = tempfile::tempdir().unwrap();
    let file = tmp.path().join("notes.txt");
    std::fs::write(&file, b"my notes").unwrap();
    for extra in [&[][..], &["--overwrite"][..]] {
        let mut args = vec!["synth", "--classes", "2", "--per-class", "3", "--size", "8", "-o", s(&file)];
        args.extend_from_slice(extra);
        assert_refused(&args, &format!("output {} exists and is not a directory", file.display()));
        assert_eq!(std::fs::read(&file).unwrap(), b"my notes");
        assert_eq!(siblings(tmp.path()), ["notes.txt"], "nothing hidden or left beside it");
    }

    let dir = tmp.path().join("photos");
    std::fs::create_dir(&dir).unwrap();
    std::fs::write(dir.join("cat.jpg"), b"x").unwrap();
    assert_refused(&["synth", "--size", "8", "--per-class", "3", "-o", s(&dir), "--overwrite"], "is not an earlier build");
    assert_eq!(siblings(&dir), ["cat.jpg"]);

    // An earlier build is replaced, and the output says so.
    let out = tmp.path().join("build");
    let o = lt_build(&["synth", "--size", "8", "--per-class", "3", "-o", s(&out)]);
    assert!(o.status.success(), "{}", text(&o));
    let o = lt_build(&["synth", "--size", "8", "--per-class", "4", "-o", s(&out), "--overwrite"]);
    assert!(o.status.success(), "{}", text(&o));
    assert!(text(&o).contains(&format!("replaced the earlier build in {}", out.display())), "{}", text(&o));
    assert_eq!(siblings(tmp.path()), ["build", "notes.txt", "photos"]);
}

/// A folder of seeded noise JPEGs (a few KB each), two classes.
fn jpeg_folder(root: &Path) {
    for (c, n) in [("a", 4), ("b", 4)] {
        std::fs::create_dir_all(root.join(c)).unwrap();
        for i in 0..n {
            let img =
                lt_vision::codec::Decoded { width: 64, height: 48, channels: 3, pixels: fixtures::pixels(100 + i as u64, 64 * 48 * 3) };
            std::fs::write(root.join(c).join(format!("{i}.jpg")), lt_vision::codec::encode_jpeg(&img, 90).unwrap()).unwrap();
        }
    }
}

#[test]
fn truncated_jpegs_and_pngs_are_corrupt_and_skipped_with_skip_corrupt() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("imgs");
    jpeg_folder(&root);
    let full = std::fs::read(root.join("a/1.jpg")).unwrap();
    assert!(full.len() > 1400, "{}", full.len());
    std::fs::write(root.join("a/1.jpg"), &full[..700]).unwrap();
    let full = std::fs::read(root.join("b/2.jpg")).unwrap();
    std::fs::write(root.join("b/2.jpg"), &full[..full.len() / 2]).unwrap();
    // A PNG missing only its IEND chunk.
    let img = lt_vision::codec::Decoded { width: 30, height: 20, channels: 3, pixels: fixtures::pixels(7, 30 * 20 * 3) };
    let png = lt_vision::codec::encode_png(&img).unwrap();
    std::fs::write(root.join("b/9.png"), &png[..png.len() - 12]).unwrap();

    let out = tmp.path().join("out");
    // The first bad file in the shuffled row order is named.
    let t = assert_refused(&["folder", s(&root), "-o", s(&out)], "--skip-corrupt");
    assert!(
        [("a/1.jpg", "truncated JPEG (700 bytes)"), ("b/2.jpg", "truncated JPEG"), ("b/9.png", "truncated PNG")]
            .iter()
            .any(|(f, why)| t.contains(&format!("{f} (in ")) && t.contains(why)),
        "{t}"
    );
    assert!(!out.exists());

    let o = lt_build(&["folder", s(&root), "-o", s(&out), "--skip-corrupt"]);
    assert!(o.status.success(), "{}", text(&o));
    let m = lt_shards::Manifest::load(&out).unwrap();
    let mut skipped: Vec<&str> = m.skipped.iter().map(|v| v.path.as_str()).collect();
    skipped.sort();
    assert_eq!(skipped, ["a/1.jpg", "b/2.jpg", "b/9.png"], "{:?}", m.skipped);
    assert!(m.skipped.iter().all(|v| v.error.contains("truncated")), "{:?}", m.skipped);
    assert_eq!(m.classes.iter().map(|c| c.train).collect::<Vec<_>>(), [3, 3]);
    // Every stored image decodes strictly.
    for r in lt_shards::ShardSet::open(&out, lt_shards::Split::Train).unwrap().read_all().unwrap() {
        lt_vision::codec::decode_strict(&r.image).unwrap();
    }
}

#[test]
fn empty_class_folder_is_an_error_naming_it() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("imagenet");
    fixtures::write_folder(&root, &[("n01", 3, 1), ("n02", 0, 1), ("n03", 2, 1)]);
    let t = assert_refused(&["folder", s(&root), "-o", s(&tmp.path().join("o"))], "class folder holds no image files");
    assert!(t.contains(&root.join("train/n02").display().to_string()) && t.contains("1 of 3"), "{t}");
}

#[test]
fn silent_flag_mistakes_are_refused_naming_the_flag() {
    let tmp = tempfile::tempdir().unwrap();
    let src = tmp.path().join("m");
    fixtures::write_idx(&src, 60, 1, 4, false);
    let counts = tmp.path().join("counts.txt");
    std::fs::write(&counts, "5 4 3 2 1 1 1 1 1 1").unwrap();
    let out = tmp.path().join("o");
    let o = s(&out);
    for (args, needles) in [
        // Tail classes floored to 0 images: the message names the settings, the flags follow.
        (
            vec!["--if", "1e300", s(&src), "-o", o],
            vec!["imbalance 1e300 with n_max 60 gives 9 class(es) no training image", "(flags --if, --max-per-class)"],
        ),
        (vec!["--if", "100", "--max-per-class", "50", s(&src), "-o", o], vec!["raise max_per_class (flags --if, --max-per-class)"]),
        (
            vec!["--if", "100", "--profile", "step", "--max-per-class", "50", s(&src), "-o", o],
            vec!["imbalance 100 with n_max 50", "(flags --if, --max-per-class)"],
        ),
        // A counts file that would never be read.
        (vec!["--counts-file", s(&counts), s(&src), "-o", o], vec!["only read with --profile counts"]),
        (vec!["--if", "10", "--counts-file", s(&counts), s(&src), "-o", o], vec!["--counts-file"]),
        // Sizes that were silently clamped.
        (vec!["--shard-mb", "0", s(&src), "-o", o], vec!["--shard-mb must be in 1..="]),
        (vec!["--row-group-rows", "0", s(&src), "-o", o], vec!["--row-group-rows must be at least 1"]),
        (vec!["--row-group-mb", "0", s(&src), "-o", o], vec!["--row-group-mb must be in 1..="]),
        (vec!["--shard-mb", "18446744073709551615", s(&src), "-o", o], vec!["--shard-mb"]),
        (vec!["--threads", "100000000", s(&src), "-o", o], vec!["--threads"]),
    ] {
        let t = assert_refused(&args, needles[0]);
        assert!(needles.iter().all(|n| t.contains(n)), "{args:?}: expected {needles:?} in: {t}");
        assert!(!out.exists(), "{args:?}");
    }
    // The same counts file with --profile counts is read and used.
    let ok = lt_build(&["--profile", "counts", "--counts-file", s(&counts), s(&src), "-o", o]);
    assert!(ok.status.success(), "{}", text(&ok));
    let m = lt_shards::Manifest::load(&out).unwrap();
    assert_eq!(m.classes.iter().map(|c| c.train).collect::<Vec<_>>(), [5, 4, 3, 2, 1, 1, 1, 1, 1, 1]);
}

#[test]
fn manifest_records_the_image_size_range_of_each_split() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("imgs");
    // write_folder: width 20 + 3·(i % 5), height 16 + 4·(class % 3).
    fixtures::write_folder(&root, &[("a", 6, 2), ("b", 5, 1), ("c", 5, 1)]);
    let out = tmp.path().join("o");
    let o = lt_build(&["folder", s(&root), "-o", s(&out)]);
    assert!(o.status.success(), "{}", text(&o));
    let m = lt_shards::Manifest::load(&out).unwrap();
    use lt_shards::{ImageSizeRange, Split};
    assert_eq!(m.image_size_range(Split::Train), Some(ImageSizeRange { min_height: 16, max_height: 24, min_width: 20, max_width: 32 }));
    assert_eq!(m.image_size_range(Split::Test), Some(ImageSizeRange { min_height: 16, max_height: 24, min_width: 20, max_width: 23 }));
    let json = std::fs::read_to_string(out.join("manifest.json")).unwrap();
    assert!(json.contains("\"image_size_range\""), "{json}");
    // Synth images are all --size square.
    let out = tmp.path().join("s");
    let o = lt_build(&["synth", "--size", "12", "--per-class", "3", "-o", s(&out)]);
    assert!(o.status.success(), "{}", text(&o));
    let r = lt_shards::Manifest::load(&out).unwrap().image_size_range(Split::Train).unwrap();
    assert!(r.is_uniform() && r.max_height == 12 && r.max_width == 12, "{r:?}");
}

#[test]
fn error_messages_say_each_cause_once_and_name_the_users_path() {
    let tmp = tempfile::tempdir().unwrap();
    let src = tmp.path().join("m");
    fixtures::write_idx(&src, 5, 1, 4, false);
    let missing = tmp.path().join("nope.txt");
    let out = tmp.path().join("o");
    for args in [
        vec!["--profile", "counts", "--counts-file", s(&missing), s(&src), "-o", s(&out)],
        vec!["--recipe", s(&missing), s(&src), "-o", s(&out)],
    ] {
        let t = assert_refused(&args, "nope.txt: No such file or directory (os error 2)");
        assert_eq!(t.matches("os error 2").count(), 1, "{t}");
    }
    // A build whose shard went missing: said once.
    let o = lt_build(&["synth", "--size", "8", "--per-class", "3", "-o", s(&out)]);
    assert!(o.status.success(), "{}", text(&o));
    std::fs::remove_file(out.join("test/part-00000.parquet")).unwrap();
    let o = lt_inspect(&out);
    let t = text(&o);
    assert_eq!(o.status.code(), Some(2), "{t}");
    assert!(t.contains("test/part-00000.parquet: shard listed in manifest.json is missing"), "{t}");
    assert_eq!(t.matches("missing").count(), 1, "{t}");
    // An output where no directory can be made names the path the user gave.
    if Path::new("/proc/self").exists() {
        let t = assert_refused(
            &["synth", "--size", "8", "--per-class", "3", "-o", "/proc/lt-build-test-out"],
            "output /proc/lt-build-test-out: cannot create a directory in /proc",
        );
        assert!(!t.contains(".lt-build-test-out.tmp"), "{t}");
    }
}

#[test]
fn photos_source_builds_crops_from_a_folder_of_photographs() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("photos");
    std::fs::create_dir(&root).unwrap();
    let img = lt_vision::codec::Decoded { width: 320, height: 256, channels: 3, pixels: fixtures::pixels(3, 320 * 256 * 3) };
    std::fs::write(root.join("a.jpg"), lt_vision::codec::encode_jpeg(&img, 90).unwrap()).unwrap();
    let out = tmp.path().join("o");
    let o = lt_build(&[
        "photos",
        s(&root),
        "--classes",
        "4",
        "--per-class",
        "6",
        "--test-per-class",
        "0",
        "--size",
        "32",
        "--if",
        "3",
        "-o",
        s(&out),
    ]);
    assert!(o.status.success(), "{}", text(&o));
    let m = lt_shards::Manifest::load(&out).unwrap();
    assert_eq!(m.classes.iter().map(|c| c.train).collect::<Vec<_>>(), lt_core::profile::exponential_counts(4, 6, 3.0).unwrap());
    assert_eq!((m.splits[&Split::Test].rows, m.image_size_range(Split::Train).unwrap().max_width), (0, 32));
    assert_refused(&["photos", s(&root), "--sizes", "64,0", "-o", s(&tmp.path().join("p"))], "(flags --sizes, --size)");
    assert_refused(&["photos", s(&root), "--quality", "0", "-o", s(&tmp.path().join("p"))], "--quality");
}
