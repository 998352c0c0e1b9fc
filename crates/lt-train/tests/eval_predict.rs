//! Using a trained model: `lt-train eval` reproduces the trainer's own
//! evaluation from the checkpoint alone (its model card), refuses shards of
//! other classes, and `lt-train predict` classifies files, folders and
//! Parquet rows through the same pipeline (its top-1 agrees with eval's
//! accuracy image for image).

mod util;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use lt_glmc::card::{Head, ModelCard};
use lt_glmc::checkpoint;

#[path = "util/cli.rs"]
mod cli;
use cli::{lt_train, s, text, trained};

fn json(p: &Path) -> serde_json::Value {
    serde_json::from_slice(&std::fs::read(p).unwrap()).unwrap()
}

#[test]
fn eval_and_predict_reproduce_the_trainers_evaluation() {
    let tmp = tempfile::tempdir().unwrap();
    let (shards, run) = trained(tmp.path());

    // The weights describe themselves.
    let meta = checkpoint::read_metadata(&run.join("checkpoint").join(checkpoint::MODEL_FILE)).unwrap();
    let card = ModelCard::from_metadata(&meta).unwrap();
    assert_eq!((meta["arch"].as_str(), meta["width"].as_str(), meta["in_channels"].as_str()), ("resnet32", "4", "3"));
    assert_eq!(card.class_names, ["class-0", "class-1", "class-2"]);
    assert_eq!(card.eval_head, Head::GCb, "GLMC with re-weighting evaluates g_cb");

    let o = lt_train(&["eval", s(&run), "--device", "cpu", "--threads", "1"]);
    assert!(o.status.success(), "{}", text(&o));
    assert!(text(&o).contains("| g_cb (headline) |") && text(&o).contains("| g |"), "{}", text(&o));
    let ev = json(&run.join("eval").join("eval.json"));
    let rep = json(&run.join("report.json"));
    assert_eq!(ev["heads"]["g_cb"], rep["final"], "eval of the checkpoint = the trainer's last evaluation");
    assert_eq!(ev["head"], "g_cb");
    assert!(run.join("eval").join("per_class.png").is_file());

    // predict over the test Parquet file: one line per row, and its top-1
    // hits exactly as many images as eval's top-1 counts.
    let m = lt_shards::Manifest::load(&shards).unwrap();
    let test_files: Vec<PathBuf> = m.splits[&lt_shards::Split::Test].shards.iter().map(|f| shards.join(&f.file)).collect();
    assert_eq!(test_files.len(), 1, "{test_files:?}");
    let o = lt_train(&["predict", s(&run), s(&test_files[0]), "--json", "--top-k", "2", "--device", "cpu"]);
    assert!(o.status.success(), "{}", text(&o));
    let preds: Vec<serde_json::Value> = String::from_utf8_lossy(&o.stdout).lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert_eq!(preds.len(), 18);
    let (labels, _) = parquet_labels(&test_files[0]);
    let mut hits = 0;
    for (p, y) in preds.iter().zip(&labels) {
        let top = p["top"].as_array().unwrap();
        assert_eq!(top.len(), 2);
        let (p0, p1) = (top[0][2].as_f64().unwrap(), top[1][2].as_f64().unwrap());
        assert!(p0 >= p1 && p0 + p1 <= 1.0 + 1e-9, "{p}");
        hits += (top[0][0].as_i64().unwrap() == *y) as usize;
    }
    let top1 = ev["heads"]["g_cb"]["top1"].as_f64().unwrap();
    assert_eq!(hits, (top1 * 18.0).round() as usize, "predict's top-1 agrees with eval's");

    // A PNG file, a folder of them, a JPEG, and a grayscale image into this
    // RGB model (converted as the loader converts).
    let dir = tmp.path().join("imgs");
    std::fs::create_dir(&dir).unwrap();
    let rgb = image(3);
    let png = lt_vision::codec::encode_png(&rgb).unwrap();
    std::fs::write(dir.join("a.png"), &png).unwrap();
    std::fs::write(dir.join("b.png"), &png).unwrap();
    let jpg = tmp.path().join("c.jpg");
    std::fs::write(&jpg, lt_vision::codec::encode_jpeg(&rgb, 90).unwrap()).unwrap();
    let gray = tmp.path().join("gray.png");
    std::fs::write(&gray, lt_vision::codec::encode_png(&image(1)).unwrap()).unwrap();
    let o = lt_train(&["predict", s(&run), s(&dir.join("a.png")), s(&dir), s(&jpg), s(&gray), "--device", "cpu"]);
    assert!(o.status.success(), "{}", text(&o));
    let out = String::from_utf8_lossy(&o.stdout).into_owned();
    assert_eq!(out.lines().count(), 5, "{out}");
    assert!(out.lines().all(|l| l.contains("class-") && l.contains('%')), "{out}");
    assert!(out.contains("c.jpg: ") && out.contains("gray.png: "), "{out}");

    // Bad inputs: exit 2 naming the file.
    std::fs::write(dir.join("broken.jpg"), b"\xff\xd8\xffnot really").unwrap();
    let o = lt_train(&["predict", s(&run), s(&dir.join("broken.jpg")), "--device", "cpu"]);
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    assert!(text(&o).contains("broken.jpg") && text(&o).contains("not a readable image"), "{}", text(&o));
    let o = lt_train(&["predict", s(&run), s(&tmp.path().join("missing.png")), "--device", "cpu"]);
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    assert!(text(&o).contains("missing.png"), "{}", text(&o));
}

/// An 8×8 test image with `channels` channels.
fn image(channels: u8) -> lt_vision::codec::Decoded {
    let px: Vec<u8> = (0..8 * 8 * channels as usize).map(|i| (i * 7 % 256) as u8).collect();
    lt_vision::codec::Decoded { width: 8, height: 8, channels, pixels: px }
}

/// An RGB image into a grayscale model: converted, classified.
#[test]
fn predict_converts_rgb_for_a_grayscale_model() {
    let tmp = tempfile::tempdir().unwrap();
    let shards = tmp.path().join("s1");
    util::write_synth(&shards, &[16, 8], 2, 8, 1, 5);
    let recipe = tmp.path().join("r.toml");
    std::fs::write(&recipe, util::tiny_recipe(1).to_toml_string().unwrap()).unwrap();
    let run = tmp.path().join("run1");
    let o = lt_train(&[s(&shards), "--recipe", s(&recipe), "--device", "cpu", "--threads", "1", "-q", "--out", s(&run)]);
    assert!(o.status.success(), "{}", text(&o));
    let meta = checkpoint::read_metadata(&run.join("checkpoint").join(checkpoint::MODEL_FILE)).unwrap();
    assert_eq!(meta["in_channels"], "1");
    let png = tmp.path().join("rgb.png");
    std::fs::write(&png, lt_vision::codec::encode_png(&image(3)).unwrap()).unwrap();
    let o = lt_train(&["predict", s(&run), s(&png), "--json", "--device", "cpu"]);
    assert!(o.status.success(), "{}", text(&o));
    let p: serde_json::Value = serde_json::from_str(String::from_utf8_lossy(&o.stdout).trim()).unwrap();
    assert_eq!(p["top"].as_array().unwrap().len(), 2, "top-k is at most the class count: {p}");
}

/// The labels of an image Parquet file.
fn parquet_labels(p: &Path) -> (Vec<i64>, usize) {
    let (meta, rows) = lt_shards::read_image_parquet(p, &lt_shards::ImageColumns::default(), &|_| true).unwrap();
    (meta.labels, rows.len())
}

#[test]
fn eval_refuses_other_classes_and_reads_cardless_checkpoints_from_the_recipe() {
    let tmp = tempfile::tempdir().unwrap();
    let (shards, run) = trained(tmp.path());
    let other = tmp.path().join("other");
    util::write_synth(&other, &[10, 10], 2, 8, 3, 4);
    let o = lt_train(&["eval", s(&run), "--shards", s(&other), "--device", "cpu"]);
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    assert!(text(&o).contains("2 classes (class-0, class-1) are not the model's 3"), "{}", text(&o));
    let o = lt_train(&["eval", s(&tmp.path().join("nowhere")), "--device", "cpu"]);
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    assert!(text(&o).contains("model.safetensors"), "{}", text(&o));

    // The same weights without a card (as written before cards existed):
    // described from recipe.toml and the shards, same result.
    let o = lt_train(&["eval", s(&run), "--split", "train", "--device", "cpu", "--out", s(&tmp.path().join("e1"))]);
    assert!(o.status.success(), "{}", text(&o));
    let weights = run.join("checkpoint").join(checkpoint::MODEL_FILE);
    let card = ModelCard::from_metadata(&checkpoint::read_metadata(&weights).unwrap()).unwrap();
    let mut vs = lt_glmc::tch::nn::VarStore::new(lt_glmc::tch::Device::Cpu);
    let _net = lt_glmc::model::GlmcNet::try_new(&vs.root(), card.model).unwrap();
    checkpoint::load_weights(&mut vs, &weights).unwrap();
    checkpoint::save_weights(&vs, &weights, &BTreeMap::new()).unwrap();
    assert!(checkpoint::read_metadata(&weights).unwrap().is_empty());
    let o = lt_train(&["eval", s(&run), "--split", "train", "--device", "cpu", "--out", s(&tmp.path().join("e2"))]);
    assert!(o.status.success(), "{}", text(&o));
    let (e1, e2) = (json(&tmp.path().join("e1/eval.json")), json(&tmp.path().join("e2/eval.json")));
    assert_eq!(e1["heads"], e2["heads"]);
    assert_eq!(e1["split"], "train");
    let _ = shards;
}
