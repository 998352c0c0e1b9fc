//! End-to-end tests of the trainer on tiny synthetic shards: the CI smoke
//! run, exact resume, and bad inputs with their errors.

mod util;

use std::path::Path;

use lt_glmc::tch::{Device, Tensor};
use lt_glmc::GlmcError;
use lt_train::train::{self, Quiet, TrainOptions};
use lt_train::TrainError;
use util::{tiny_recipe, torch_lock, write_synth};

const COUNTS: [usize; 4] = [64, 32, 16, 8];

fn opts(shards: &Path, out: &Path, recipe: lt_train::recipe::Recipe) -> TrainOptions {
    TrainOptions::new(shards, out, recipe, Device::Cpu)
}

fn tensors(path: &Path) -> Vec<(String, Tensor)> {
    let mut v = Tensor::read_safetensors(path).unwrap();
    v.sort_by(|a, b| a.0.cmp(&b.0));
    v
}

fn assert_same_tensors(a: &Path, b: &Path) {
    let (ta, tb) = (tensors(a), tensors(b));
    assert_eq!(ta.len(), tb.len());
    assert!(!ta.is_empty());
    for ((na, xa), (nb, xb)) in ta.iter().zip(&tb) {
        assert_eq!(na, nb);
        assert!(xa.equal(xb), "{na} differs between {} and {}", a.display(), b.display());
    }
}

#[test]
fn smoke_one_epoch_loss_falls_and_outputs_exist() {
    let _g = torch_lock();
    let tmp = tempfile::tempdir().unwrap();
    let (shards, out) = (tmp.path().join("shards"), tmp.path().join("run"));
    write_synth(&shards, &COUNTS, 10, 16, 3, 1);
    let mut recipe = tiny_recipe(1);
    recipe.set("log.scalars_every", "4").unwrap();
    let outcome = train::train(&opts(&shards, &out, recipe.clone()), &mut Quiet).unwrap();
    assert!(outcome.finished);
    let rec = &outcome.records[0];
    assert!(rec.loss_last < rec.loss_first, "loss did not fall: {} -> {}", rec.loss_first, rec.loss_last);
    assert!(rec.loss_rb.is_some() && rec.loss_con.is_some());
    let test = rec.test.expect("evaluated after the last epoch");
    assert!((0.0..=1.0).contains(&test.top1));

    let eval = outcome.last_eval.as_ref().unwrap();
    assert_eq!(eval.samples, 40);
    let ds = &outcome.dataset;
    let info = lt_report::RunInfo {
        shards: shards.clone(),
        device: "Cpu".into(),
        epochs_done: 1,
        class_names: ds.manifest.class_names(),
        counts: ds.counts.clone(),
        fingerprint: ds.fingerprint.clone(),
    };
    let md = lt_report::write_report(&out, &tiny_recipe(1).report_header(), &info, &outcome.records, eval, None).unwrap();
    assert!(md.contains("| top-1 | top-5 | many | medium | few | ECE |"), "{md}");
    for f in ["metrics.jsonl", "recipe.toml", "report.md", "report.json", "per_class.png", "curves.png"] {
        assert!(out.join(f).is_file(), "{f} missing");
    }
    for f in ["model.safetensors", "optimizer.safetensors", "state.json"] {
        assert!(out.join("checkpoint").join(f).is_file(), "checkpoint/{f} missing");
    }
    let lines = lt_report::read_metrics(&out).unwrap();
    assert_eq!(lines.len(), 1);
    // The saved recipe is the resolved one.
    let saved = lt_train::recipe::Recipe::load(&out.join("recipe.toml")).unwrap();
    assert_eq!(saved, recipe);
    let png = std::fs::read(out.join("per_class.png")).unwrap();
    assert_eq!(&png[1..4], b"PNG");
    assert_tensorboard_events(&out, &lines[0], 4);
}

/// The run's TensorBoard events (one file): the epoch's every number at the
/// step its epoch ends, and every `every` steps the step's loss with the
/// epoch's learning rate and α.
fn assert_tensorboard_events(out: &Path, rec: &lt_report::EpochRecord, every: i64) {
    use lt_report::tensorboard::{event_files, read_events, FILE_VERSION};
    let files = event_files(out).unwrap();
    assert_eq!(files.len(), 1, "{files:?}");
    let events = read_events(&files[0]).unwrap();
    assert_eq!(events[0].file_version.as_deref(), Some(FILE_VERSION));
    assert!(events[1].session_start && events[1].step == 1);
    let steps = rec.steps as i64;
    let epoch: Vec<_> = events.iter().filter(|e| e.scalars.iter().any(|(t, _)| t == "train/loss")).collect();
    assert_eq!(epoch.len(), 1);
    assert_eq!(epoch[0].step, steps);
    let want: Vec<(String, f32)> = lt_report::epoch_scalars(rec).into_iter().map(|(t, v)| (t, v as f32)).collect();
    assert_eq!(epoch[0].scalars, want);
    for tag in ["train/loss", "train/lr", "train/alpha", "train/images_per_s", "test/top1", "test/many", "test/few"] {
        assert!(want.iter().any(|(t, _)| t == tag), "{tag} missing from {want:?}");
    }
    let per_step: Vec<_> = events.iter().filter(|e| e.scalars.iter().any(|(t, _)| t == "step/loss")).collect();
    assert_eq!(per_step.iter().map(|e| e.step).collect::<Vec<_>>(), (1..=steps / every).map(|k| k * every).collect::<Vec<_>>());
    for e in per_step {
        let get = |tag: &str| e.scalars.iter().find(|(t, _)| t == tag).map(|(_, v)| *v);
        assert_eq!((get("step/lr"), get("step/alpha")), (Some(rec.lr as f32), Some(rec.alpha as f32)), "step {}", e.step);
        assert!(get("step/loss").is_some_and(|l| l.is_finite() && l > 0.0));
    }
}

#[test]
fn two_epochs_straight_equal_one_plus_resume_plus_one() {
    let _g = torch_lock();
    let tmp = tempfile::tempdir().unwrap();
    let shards = tmp.path().join("shards");
    write_synth(&shards, &COUNTS, 4, 16, 3, 2);
    let (a, b) = (tmp.path().join("a"), tmp.path().join("b"));
    train::train(&opts(&shards, &a, tiny_recipe(2)), &mut Quiet).unwrap();

    let mut o = opts(&shards, &b, tiny_recipe(2));
    o.stop_after = Some(1);
    let first = train::train(&o, &mut Quiet).unwrap();
    assert_eq!((first.epochs_done, first.finished), (1, false));
    o.stop_after = None;
    o.resume = true;
    // The logging settings change no result, so a resume may change them.
    o.recipe.set("log.scalars_every", "7").unwrap();
    let second = train::train(&o, &mut Quiet).unwrap();
    assert_eq!((second.epochs_done, second.finished), (2, true));
    assert_eq!(lt_train::recipe::Recipe::load(&b.join("recipe.toml")).unwrap().log.scalars_every, 7);

    assert_same_tensors(&a.join("checkpoint/model.safetensors"), &b.join("checkpoint/model.safetensors"));
    assert_same_tensors(&a.join("checkpoint/optimizer.safetensors"), &b.join("checkpoint/optimizer.safetensors"));
    let (ma, mb) = (lt_report::read_metrics(&a).unwrap(), lt_report::read_metrics(&b).unwrap());
    assert_eq!(ma.len(), 2);
    assert_eq!(mb.len(), 2);
    for (x, y) in ma.iter().zip(&mb) {
        assert_eq!((x.loss, x.loss_sup, x.loss_rb, x.loss_con), (y.loss, y.loss_sup, y.loss_rb, y.loss_con));
        assert_eq!(x.test.map(|t| t.top1), y.test.map(|t| t.top1));
    }
    // TensorBoard: one event file per invocation, the same epoch curves.
    assert_eq!(lt_report::tensorboard::event_files(&b).unwrap().len(), 2);
    let curve = |dir: &Path, tag: &str| {
        let all = lt_report::tensorboard::read_scalars(dir).unwrap();
        all.into_iter().filter(|(t, _, _)| t == tag).map(|(_, s, v)| (s, v)).collect::<Vec<_>>()
    };
    for tag in ["train/loss", "train/loss_con", "train/lr", "test/top1"] {
        let ca = curve(&a, tag);
        assert_eq!(ca.len(), 2, "{tag}");
        assert_eq!(ca, curve(&b, tag), "{tag}");
    }
    assert_eq!(curve(&b, "step/loss").iter().map(|p| p.0).collect::<Vec<_>>(), [21, 28], "every 7 steps after the resume");
}

#[test]
fn cross_entropy_baseline_and_ablations_run() {
    let _g = torch_lock();
    let tmp = tempfile::tempdir().unwrap();
    let shards = tmp.path().join("shards");
    write_synth(&shards, &COUNTS, 2, 16, 1, 3);
    for (i, sets) in [
        vec![("train.method", "\"cross_entropy\"")],
        vec![("glmc.consistency", "false")],
        vec![("glmc.reweight", "false")],
        vec![("glmc.rebalanced", "\"balanced_softmax\"")],
    ]
    .into_iter()
    .enumerate()
    {
        let mut r = tiny_recipe(1);
        for (k, v) in &sets {
            r.set(k, v).unwrap();
        }
        let out = tmp.path().join(format!("run{i}"));
        let o = train::train(&opts(&shards, &out, r.clone()), &mut Quiet).unwrap();
        let rec = &o.records[0];
        assert!(rec.loss.is_finite(), "{sets:?}");
        let ce = r.train.method == lt_train::recipe::Method::CrossEntropy;
        assert_eq!(rec.loss_rb.is_some(), !ce && r.glmc.reweight, "{sets:?}");
        assert_eq!(rec.loss_con.is_some(), !ce && r.glmc.consistency, "{sets:?}");
        assert_eq!(train::eval_uses_rebalanced(&r), !ce && r.glmc.reweight, "{sets:?}");
    }
}

#[test]
fn missing_and_corrupt_datasets_are_clear_errors() {
    let tmp = tempfile::tempdir().unwrap();
    // Missing manifest.
    let empty = tmp.path().join("empty");
    std::fs::create_dir_all(&empty).unwrap();
    let e = train::Dataset::open(&empty, 64).unwrap_err();
    assert!(matches!(e, TrainError::Dataset { .. }), "{e}");
    assert!(e.to_string().contains("manifest.json"), "{e}");
    // Corrupt manifest.
    let bad = tmp.path().join("bad");
    std::fs::create_dir_all(&bad).unwrap();
    std::fs::write(bad.join("manifest.json"), b"{ not json").unwrap();
    let e = train::Dataset::open(&bad, 64).unwrap_err();
    assert!(e.to_string().contains("manifest.json"), "{e}");
    // A shard whose bytes changed: checksum mismatch names the file.
    let shards = tmp.path().join("shards");
    write_synth(&shards, &[8, 4], 2, 8, 3, 4);
    let part = shards.join("train/part-00000.parquet");
    let mut bytes = std::fs::read(&part).unwrap();
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0xff;
    std::fs::write(&part, bytes).unwrap();
    let e = train::Dataset::open(&shards, 64).unwrap_err();
    assert!(e.to_string().contains("part-00000.parquet"), "{e}");
    // A missing shard.
    std::fs::remove_file(&part).unwrap();
    let e = train::Dataset::open(&shards, 64).unwrap_err();
    assert!(e.to_string().contains("part-00000.parquet"), "{e}");
}

#[test]
fn recipe_with_unknown_fields_is_an_error() {
    let tmp = tempfile::tempdir().unwrap();
    let base = tiny_recipe(1).to_toml_string().unwrap();
    for (from, to, needle) in [
        ("[loader]", "[loader]\nworkerz = 3", "workerz"),
        ("[perf]", "[perf]\nampp = true", "ampp"),
        ("[train]", "[trian]\nepochs = 1\n[train]", "trian"),
    ] {
        let p = tmp.path().join("r.toml");
        assert!(base.contains(from), "{from} not in\n{base}");
        std::fs::write(&p, base.replacen(from, to, 1)).unwrap();
        let e = lt_train::recipe::Recipe::load(&p).unwrap_err().to_string();
        assert!(e.contains(needle) && e.contains("r.toml"), "{e}");
    }
    let mut r = tiny_recipe(1);
    assert!(r.set("loader.views", "1").unwrap_err().to_string().contains("views"));
    assert!(r.set("loader.augment", "\"cifra\"").unwrap_err().to_string().contains("cifra"));
    assert!(r.set("log.scalars_every", "0").unwrap_err().to_string().contains("log.scalars_every"));
    assert!(r.set("log.tensorbord", "false").unwrap_err().to_string().contains("tensorbord"));
    r.set("log.tensorboard", "false").unwrap();
    assert_eq!(lt_train::recipe::Recipe::from_toml_str(&r.to_toml_string().unwrap()).unwrap(), r, "[log] round-trips");
}

#[test]
fn resume_with_another_recipe_or_dataset_is_refused() {
    let _g = torch_lock();
    let tmp = tempfile::tempdir().unwrap();
    let (shards, other, out) = (tmp.path().join("s"), tmp.path().join("o"), tmp.path().join("run"));
    write_synth(&shards, &[16, 8], 2, 8, 3, 5);
    write_synth(&other, &[16, 8], 2, 8, 3, 6);
    let mut o = opts(&shards, &out, tiny_recipe(2));
    o.stop_after = Some(1);
    train::train(&o, &mut Quiet).unwrap();
    // Starting afresh over an existing run is refused too.
    let e = train::train(&o, &mut Quiet).unwrap_err();
    assert!(matches!(&e, TrainError::OutputTaken { path, .. } if path == &out), "{e}");

    o.resume = true;
    let mut changed = o.clone();
    changed.recipe.set("optim.lr", "0.1").unwrap();
    let e = train::train(&changed, &mut Quiet).unwrap_err();
    assert!(matches!(e, TrainError::Resume { .. }), "{e}");
    assert!(e.to_string().contains("optim.lr"), "{e}");

    let mut moved = o.clone();
    moved.shards = other.clone();
    let e = train::train(&moved, &mut Quiet).unwrap_err();
    assert!(matches!(e, TrainError::Resume { .. }) && e.to_string().contains("dataset differs"), "{e}");

    let mut nothing = o.clone();
    nothing.out = tmp.path().join("nowhere");
    let e = train::train(&nothing, &mut Quiet).unwrap_err();
    assert!(e.to_string().contains("no checkpoint"), "{e}");
}

#[test]
fn cuda_requested_but_absent_is_an_error() {
    assert!(lt_glmc::device::parse_device("cpu").is_ok());
    assert!(lt_glmc::device::parse_device("gpu").is_err());
    if !lt_glmc::tch::Cuda::is_available() {
        let e = lt_glmc::device::parse_device("cuda").unwrap_err();
        assert!(matches!(e, GlmcError::Device { .. }) && e.to_string().contains("no CUDA"), "{e}");
        assert_eq!(lt_glmc::device::parse_device("auto").unwrap(), Device::Cpu);
    }
}

#[test]
fn non_finite_loss_stops_naming_the_step_and_keeps_the_last_checkpoint() {
    let _g = torch_lock();
    let tmp = tempfile::tempdir().unwrap();
    let shards = tmp.path().join("s");
    write_synth(&shards, &COUNTS, 2, 8, 3, 7);
    // lr = 1e30 from the start: no checkpoint is ever written.
    let out = tmp.path().join("huge");
    let mut r = tiny_recipe(2);
    r.set("optim.lr", "1e30").unwrap();
    let e = train::train(&opts(&shards, &out, r), &mut Quiet).unwrap_err();
    assert!(matches!(e, TrainError::Glmc(GlmcError::NonFiniteLoss { epoch: 0, .. })), "{e}");
    assert!(e.to_string().contains("global step"), "{e}");
    assert!(!out.join("checkpoint").exists());

    // A good epoch, then weights that turn the loss into NaN: the resumed
    // run stops at the first step of epoch 1 and the checkpoint of epoch 1
    // stays as it was.
    let run = tmp.path().join("run");
    let mut o = opts(&shards, &run, tiny_recipe(2));
    o.stop_after = Some(1);
    let first = train::train(&o, &mut Quiet).unwrap();
    let steps = first.records[0].steps;
    let model = run.join("checkpoint/model.safetensors");
    let poisoned: Vec<(String, Tensor)> =
        tensors(&model).into_iter().map(|(n, t)| if n == "head.weight" { (n, t.full_like(f64::NAN)) } else { (n, t) }).collect();
    Tensor::write_safetensors(&poisoned, &model).unwrap();
    let before = std::fs::read(run.join("checkpoint/state.json")).unwrap();
    o.stop_after = None;
    o.resume = true;
    let e = train::train(&o, &mut Quiet).unwrap_err();
    match e {
        TrainError::Glmc(GlmcError::NonFiniteLoss { step, epoch, .. }) => assert_eq!((step, epoch), (steps, 1)),
        e => panic!("{e}"),
    }
    assert_eq!(std::fs::read(run.join("checkpoint/state.json")).unwrap(), before);
    assert_eq!(lt_report::read_metrics(&run).unwrap().len(), 1);
}

/// A resume keeps metrics.jsonl's lines of the epochs before
/// the checkpoint byte for byte (they were parsed and re-printed before,
/// which moved numbers by an ULP), and a line cut short by a kill is dropped.
#[test]
fn resume_keeps_earlier_metrics_lines_byte_for_byte() {
    let _g = torch_lock();
    let tmp = tempfile::tempdir().unwrap();
    let (shards, run) = (tmp.path().join("s"), tmp.path().join("run"));
    write_synth(&shards, &COUNTS, 2, 8, 3, 11);
    let mut o = opts(&shards, &run, tiny_recipe(3));
    o.stop_after = Some(1);
    train::train(&o, &mut Quiet).unwrap();
    let mp = run.join("metrics.jsonl");
    // The same numbers, printed another way (as another JSON writer, or
    // another float printer, would), and the start of a line a kill cut.
    let line = std::fs::read_to_string(&mp).unwrap();
    let lr = serde_json::from_str::<serde_json::Value>(&line).unwrap()["lr"].as_f64().unwrap();
    let edited = line.replacen(&format!("\"lr\":{lr}"), &format!("\"lr\":{lr:e}"), 1);
    assert_ne!(edited, line);
    std::fs::write(&mp, format!("{edited}{{\"epoch\":1,\"lr\":0.0")).unwrap();
    o.resume = true;
    o.stop_after = Some(2);
    let second = train::train(&o, &mut Quiet).unwrap();
    assert_eq!(second.records.len(), 2);
    let text = std::fs::read_to_string(&mp).unwrap();
    assert!(text.starts_with(&edited), "the kept line changed:\n{edited}\n{text}");
    assert_eq!(text.lines().count(), 2);
    // A resume from the same checkpoint twice: identical files.
    let before = std::fs::read(&mp).unwrap();
    o.stop_after = Some(2);
    train::train(&o, &mut Quiet).unwrap();
    assert_eq!(std::fs::read(&mp).unwrap(), before);
}

/// BatchNorm running statistics that turn NaN (the loss stays
/// finite: training mode uses the batch's statistics) are not checkpointed;
/// the last good checkpoint stays.
#[test]
fn nan_running_statistics_are_not_checkpointed() {
    let _g = torch_lock();
    let tmp = tempfile::tempdir().unwrap();
    let (shards, run) = (tmp.path().join("s"), tmp.path().join("run"));
    write_synth(&shards, &COUNTS, 2, 8, 3, 12);
    let mut o = opts(&shards, &run, tiny_recipe(2));
    o.stop_after = Some(1);
    train::train(&o, &mut Quiet).unwrap();
    let model = run.join("checkpoint/model.safetensors");
    let name = "encoder.bn1.running_var";
    let mut found = false;
    let poisoned: Vec<(String, Tensor)> = tensors(&model)
        .into_iter()
        .map(|(n, t)| {
            if n == name {
                found = true;
                (n, t.full_like(f64::NAN))
            } else {
                (n, t)
            }
        })
        .collect();
    assert!(found, "no {name}");
    Tensor::write_safetensors(&poisoned, &model).unwrap();
    let before = std::fs::read(run.join("checkpoint/state.json")).unwrap();
    o.stop_after = None;
    o.resume = true;
    let e = train::train(&o, &mut Quiet).unwrap_err();
    let msg = e.to_string();
    assert!(matches!(e, TrainError::Glmc(GlmcError::Checkpoint { .. })) && msg.contains(name) && msg.contains("non-finite"), "{msg}");
    assert!(msg.contains("the last good checkpoint (after epoch 1) is kept"), "{msg}");
    assert_eq!(std::fs::read(run.join("checkpoint/state.json")).unwrap(), before);
}

/// A run killed inside a checkpoint write resumes.
#[test]
fn resume_after_a_kill_inside_a_checkpoint_write() {
    let _g = torch_lock();
    let tmp = tempfile::tempdir().unwrap();
    let (shards, run) = (tmp.path().join("s"), tmp.path().join("run"));
    write_synth(&shards, &COUNTS, 2, 8, 3, 13);
    let mut o = opts(&shards, &run, tiny_recipe(3));
    o.stop_after = Some(1);
    train::train(&o, &mut Quiet).unwrap();
    // Killed between the renames of the epoch-2 checkpoint: epoch 1's sits
    // in checkpoint.old-PID, epoch 2's (complete) in checkpoint.tmp-PID.
    let dead = util::dead_pid();
    let (ck, old, tmpd) = (run.join("checkpoint"), run.join(format!("checkpoint.old-{dead}")), run.join(format!("checkpoint.tmp-{dead}")));
    std::fs::rename(&ck, &old).unwrap();
    std::fs::create_dir_all(&tmpd).unwrap();
    std::fs::write(tmpd.join("model.safetensors"), b"partial").unwrap();
    o.resume = true;
    o.stop_after = Some(2);
    let out = train::train(&o, &mut Quiet).unwrap();
    assert_eq!(out.epochs_done, 2);
    let mut names: Vec<String> = std::fs::read_dir(&run).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect();
    names.sort();
    assert!(!names.iter().any(|n| n.contains(".tmp-") || n.contains(".old-")), "{names:?}");
    assert_eq!(lt_report::read_metrics(&run).unwrap().len(), 2);
}

/// `--resume RUN --epochs N` extends a run whose schedule does
/// not depend on the total epochs (the result equals a run started with N),
/// and is refused, saying why, where it does.
#[test]
fn resume_with_more_epochs_extends_a_constant_schedule_only() {
    let _g = torch_lock();
    let tmp = tempfile::tempdir().unwrap();
    let shards = tmp.path().join("s");
    write_synth(&shards, &COUNTS, 2, 8, 3, 14);
    let ce = |epochs: usize| {
        let mut r = tiny_recipe(epochs);
        r.set("train.method", "\"cross_entropy\"").unwrap();
        r.set("loader.views", "1").unwrap();
        r.set("optim.schedule", "\"constant\"").unwrap();
        r
    };
    let (a, b) = (tmp.path().join("a"), tmp.path().join("b"));
    train::train(&opts(&shards, &a, ce(2)), &mut Quiet).unwrap();
    train::train(&opts(&shards, &b, ce(1)), &mut Quiet).unwrap();
    let mut o = opts(&shards, &b, ce(2));
    o.resume = true;
    let ext = train::train(&o, &mut Quiet).unwrap();
    assert_eq!((ext.epochs_done, ext.finished), (2, true));
    assert_same_tensors(&a.join("checkpoint/model.safetensors"), &b.join("checkpoint/model.safetensors"));
    assert_eq!(lt_train::recipe::Recipe::load(&b.join("recipe.toml")).unwrap().train.epochs, 2);
    // Fewer epochs than done: refused.
    let mut fewer = opts(&shards, &b, ce(1));
    fewer.resume = true;
    let e = train::train(&fewer, &mut Quiet).unwrap_err().to_string();
    assert!(e.contains("already done 2 epochs"), "{e}");

    // Cosine: the rate of every epoch depends on E.
    let c = tmp.path().join("c");
    let mut o = opts(&shards, &c, tiny_recipe(2));
    o.stop_after = Some(1);
    train::train(&o, &mut Quiet).unwrap();
    o.recipe = tiny_recipe(4);
    o.resume = true;
    o.stop_after = None;
    let e = train::train(&o, &mut Quiet).unwrap_err();
    let msg = e.to_string();
    assert!(matches!(e, TrainError::Resume { .. }), "{msg}");
    assert!(msg.contains("train.epochs cannot change from 2 to 4") && msg.contains("optim.schedule = \"cosine\""), "{msg}");
    assert!(msg.contains("start a new run"), "{msg}");
    // GLMC with a constant rate: its cumulative α depends on E.
    let d = tmp.path().join("d");
    let mut r = tiny_recipe(2);
    r.set("optim.schedule", "\"constant\"").unwrap();
    let mut o = opts(&shards, &d, r.clone());
    o.stop_after = Some(1);
    train::train(&o, &mut Quiet).unwrap();
    r.set("train.epochs", "3").unwrap();
    o.recipe = r;
    o.resume = true;
    let e = train::train(&o, &mut Quiet).unwrap_err().to_string();
    assert!(e.contains("α") && e.contains("train.epochs"), "{e}");
    // Any other change is listed alone.
    let mut r = tiny_recipe(2);
    r.set("optim.schedule", "\"constant\"").unwrap();
    r.set("glmc.kappa", "2.0").unwrap();
    o.recipe = r;
    let e = train::train(&o, &mut Quiet).unwrap_err().to_string();
    assert!(e.contains("glmc.kappa: 1.0 ≠ 2.0") && e.matches('≠').count() == 1, "{e}");
}
