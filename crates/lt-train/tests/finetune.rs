//! MaxNorm fine-tuning of g_cb (`lt-train finetune`) on tiny synthetic
//! shards: the encoder stays bit-identical, g_cb moves and ends inside the
//! MaxNorm ball, the outputs exist; and the bad inputs give clear errors.

mod util;

use std::path::Path;
use std::process::Command;

use lt_glmc::tch::{Device, Tensor};
use lt_train::finetune::{self, FinetuneOptions};
use lt_train::recipe::{FinetuneLoss, FinetuneSampling};
use lt_train::train::{self, Quiet, TrainOptions};
use lt_train::TrainError;
use util::{tiny_recipe, torch_lock, write_synth};

const COUNTS: [usize; 4] = [64, 32, 16, 8];

fn tensors(path: &Path) -> Vec<(String, Tensor)> {
    let mut v = Tensor::read_safetensors(path).unwrap();
    v.sort_by(|a, b| a.0.cmp(&b.0));
    v
}

/// Trains one tiny GLMC epoch into `run`.
fn first_stage(shards: &Path, run: &Path) {
    let o = TrainOptions::new(shards, run, tiny_recipe(1), Device::Cpu);
    train::train(&o, &mut Quiet).unwrap();
}

#[test]
fn finetune_trains_only_g_cb_within_the_maxnorm_ball() {
    let _g = torch_lock();
    let tmp = tempfile::tempdir().unwrap();
    let (shards, run) = (tmp.path().join("shards"), tmp.path().join("run"));
    write_synth(&shards, &COUNTS, 4, 16, 3, 5);
    first_stage(&shards, &run);

    let mut o = FinetuneOptions::new(&run, Device::Cpu);
    o.shards = Some(shards.clone());
    o.overrides = vec![("finetune.epochs".into(), "2".into()), ("finetune.lr".into(), "0.05".into())];
    let outcome = finetune::finetune(&o, &mut Quiet).unwrap();
    let out = run.join("finetune");
    assert_eq!(outcome.out, out);
    assert_eq!(outcome.records.len(), 2);
    assert!(outcome.records.iter().all(|r| r.test.is_some() && r.loss.is_finite()));

    let before = tensors(&run.join("checkpoint/model.safetensors"));
    let after = tensors(&out.join("checkpoint/model.safetensors"));
    assert_eq!(before.len(), after.len());
    let mut head_changed = false;
    for ((na, a), (nb, b)) in before.iter().zip(&after) {
        assert_eq!(na, nb);
        if na.starts_with("head_cb.") {
            head_changed |= !a.equal(b);
        } else {
            // Encoder (BatchNorm statistics included) and the other heads.
            assert!(a.equal(b), "{na} changed during fine-tuning");
        }
    }
    assert!(head_changed, "g_cb did not change");

    let w = &after.iter().find(|(n, _)| n == "head_cb.weight").unwrap().1;
    let norms = w.norm_scalaropt_dim(2.0, [1i64].as_slice(), false);
    let max = norms.max().double_value(&[]);
    assert!(max <= outcome.threshold + 1e-6, "row norm {max} > threshold {}", outcome.threshold);
    assert!(outcome.threshold > 0.0);
    // The threshold is the one set from the first stage's weight.
    let w0 = &before.iter().find(|(n, _)| n == "head_cb.weight").unwrap().1;
    let n0 = w0.norm_scalaropt_dim(2.0, [1i64].as_slice(), false);
    let (lo, hi) = (n0.min().double_value(&[]), n0.max().double_value(&[]));
    assert!((outcome.threshold - (lo + 0.1 * (hi - lo))).abs() < 1e-6);

    for f in ["metrics.jsonl", "recipe.toml", "report.md", "report.json", "per_class.png", "curves.png"] {
        assert!(out.join(f).is_file(), "{f} missing");
    }
    assert_eq!(lt_report::read_metrics(&out).unwrap().len(), 2);
    let saved = lt_train::recipe::Recipe::load(&out.join("recipe.toml")).unwrap();
    let ft = saved.finetune.expect("resolved [finetune]");
    assert_eq!((ft.epochs, ft.lr, ft.thresh_ratio, ft.per_epoch), (2, 0.05, 0.1, true));
    assert_eq!((ft.loss, ft.sampling, ft.weight_decay, ft.cb_beta), (FinetuneLoss::ClassBalanced, FinetuneSampling::Instance, 0.1, 0.9999));
    let md = std::fs::read_to_string(out.join("report.md")).unwrap();
    assert!(md.contains("MaxNorm fine-tuning of g_cb") && md.contains("| top-1 |"), "{md}");

    // A second fine-tune into the same directory is refused.
    let e = finetune::finetune(&o, &mut Quiet).unwrap_err();
    assert!(e.to_string().contains("already holds a fine-tuning run"), "{e}");
}

/// 1 epoch + resume + 1 epoch + resume + 1 epoch gives the weights and
/// momentum of 3 straight epochs; a resume checks what it continues.
#[test]
fn finetune_resume_is_exact() {
    let _g = torch_lock();
    let tmp = tempfile::tempdir().unwrap();
    let (shards, run) = (tmp.path().join("shards"), tmp.path().join("run"));
    write_synth(&shards, &COUNTS, 2, 16, 3, 8);
    first_stage(&shards, &run);
    let (a, b) = (tmp.path().join("straight"), tmp.path().join("stopped"));
    let mut o = FinetuneOptions::new(&run, Device::Cpu);
    o.shards = Some(shards.clone());
    o.overrides = vec![("finetune.epochs".into(), "3".into()), ("finetune.lr".into(), "0.05".into())];
    o.out = Some(a.clone());
    let straight = finetune::finetune(&o, &mut Quiet).unwrap();
    assert!(straight.finished && straight.epochs_done == 3);

    o.out = Some(b.clone());
    o.stop_after = Some(1);
    let first = finetune::finetune(&o, &mut Quiet).unwrap();
    assert!(!first.finished && first.epochs_done == 1);
    o.resume = true;
    let second = finetune::finetune(&o, &mut Quiet).unwrap();
    assert_eq!((second.finished, second.epochs_done), (false, 2));
    o.stop_after = None;
    let last = finetune::finetune(&o, &mut Quiet).unwrap();
    assert!(last.finished && last.epochs_done == 3);
    assert_eq!(last.threshold, straight.threshold);
    for f in ["model.safetensors", "optimizer.safetensors"] {
        let (x, y) = (tensors(&a.join("checkpoint").join(f)), tensors(&b.join("checkpoint").join(f)));
        assert_eq!(x.len(), y.len(), "{f}");
        for ((nx, tx), (ny, ty)) in x.iter().zip(&y) {
            assert_eq!(nx, ny);
            assert!(tx.equal(ty), "{f}: {nx} differs after resume");
        }
    }
    let epochs: Vec<usize> = lt_report::read_metrics(&b).unwrap().iter().map(|r| r.epoch).collect();
    assert_eq!(epochs, [0, 1, 2]);
    let losses = |d: &Path| lt_report::read_metrics(d).unwrap().iter().map(|r| r.loss).collect::<Vec<_>>();
    assert_eq!(losses(&a), losses(&b));

    // A changed setting is refused, naming the field (and only it).
    o.overrides.push(("finetune.lr".into(), "0.01".into()));
    let e = finetune::finetune(&o, &mut Quiet).unwrap_err();
    assert!(matches!(e, TrainError::Resume { .. }) && e.to_string().contains("finetune.lr"), "{e}");
    assert_eq!(e.to_string().matches('≠').count(), 1, "{e}");
    o.overrides.pop();
    // More epochs of a cosine fine-tuning: refused, saying why.
    o.overrides[0].1 = "5".into();
    let e = finetune::finetune(&o, &mut Quiet).unwrap_err().to_string();
    assert!(e.contains("finetune.epochs cannot change from 3 to 5") && e.contains("finetune.schedule = \"cosine\""), "{e}");
    o.overrides[0].1 = "3".into();
    // Nothing to resume.
    o.out = Some(tmp.path().join("none"));
    let e = finetune::finetune(&o, &mut Quiet).unwrap_err();
    assert!(e.to_string().contains("no fine-tuning checkpoint"), "{e}");
    // A checkpoint taken from another epoch of the source run.
    let sp = b.join("checkpoint/state.json");
    let mut st: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&sp).unwrap()).unwrap();
    st["extra"]["source_epoch"] = 7.into();
    std::fs::write(&sp, st.to_string()).unwrap();
    o.out = Some(b.clone());
    let e = finetune::finetune(&o, &mut Quiet).unwrap_err();
    assert!(e.to_string().contains("after epoch 7") && e.to_string().contains("now at epoch 1"), "{e}");

    // The CLI: --stop-after says how to continue, --resume finishes.
    let c = tmp.path().join("cli");
    let cli = |extra: &[&str]| {
        let mut args = vec!["finetune", run.to_str().unwrap(), "--shards", shards.to_str().unwrap(), "--out", c.to_str().unwrap()];
        args.extend_from_slice(&["--epochs", "2", "--device", "cpu", "-q"]);
        args.extend_from_slice(extra);
        let out = Command::new(env!("CARGO_BIN_EXE_lt-train")).args(&args).output().unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8_lossy(&out.stdout).to_string()
    };
    let text = cli(&["--stop-after", "1"]);
    assert!(text.contains("stopped after fine-tuning epoch 1 of 2") && text.contains("--resume"), "{text}");
    let text = cli(&["--resume"]);
    assert!(!text.contains("stopped after"), "{text}");
    assert_eq!(lt_report::read_metrics(&c).unwrap().len(), 2);
}

#[test]
fn finetune_errors_are_clear() {
    let _g = torch_lock();
    let tmp = tempfile::tempdir().unwrap();
    let (shards, run) = (tmp.path().join("shards"), tmp.path().join("run"));
    write_synth(&shards, &COUNTS, 2, 16, 3, 6);

    // No checkpoint: the error names the run and the missing file.
    std::fs::create_dir_all(&run).unwrap();
    let mut o = FinetuneOptions::new(&run, Device::Cpu);
    o.shards = Some(shards.clone());
    let e = finetune::finetune(&o, &mut Quiet).unwrap_err();
    assert!(matches!(e, TrainError::Finetune { .. }), "{e}");
    let msg = e.to_string();
    assert!(msg.contains("no checkpoint") && msg.contains(run.to_str().unwrap()) && msg.contains("state.json"), "{msg}");

    // The same through the CLI: exit 2 with the message.
    let o2 =
        Command::new(env!("CARGO_BIN_EXE_lt-train")).args(["finetune", run.to_str().unwrap(), "--device", "cpu", "-q"]).output().unwrap();
    let err = String::from_utf8_lossy(&o2.stderr);
    assert_eq!(o2.status.code(), Some(2), "{err}");
    assert!(err.contains("cannot fine-tune") && err.contains("no checkpoint"), "{err}");

    // A first stage with stop_after would be enough; one epoch is cheap.
    first_stage(&shards, &run);

    // Only finetune.* can be overridden, and its values are validated.
    o.overrides = vec![("optim.lr".into(), "0.1".into())];
    let e = finetune::finetune(&o, &mut Quiet).unwrap_err();
    assert!(e.to_string().contains("only finetune.*"), "{e}");
    o.overrides = vec![("finetune.epochs".into(), "0".into())];
    let e = finetune::finetune(&o, &mut Quiet).unwrap_err();
    assert!(e.to_string().contains("finetune.epochs"), "{e}");
    // A batch larger than the data names the setting and a size that works.
    o.overrides = vec![("finetune.batch_size".into(), "100000".into())];
    let e = finetune::finetune(&o, &mut Quiet).unwrap_err().to_string();
    assert!(e.contains("finetune.batch_size") && e.contains("at most 120") && !e.contains("drop_last"), "{e}");
    std::fs::remove_dir_all(run.join("finetune")).unwrap();

    // Other data: the resume error.
    let other = tmp.path().join("other");
    write_synth(&other, &[64, 32, 16, 9], 2, 16, 3, 6);
    o.overrides.clear();
    o.shards = Some(other);
    let e = finetune::finetune(&o, &mut Quiet).unwrap_err();
    assert!(matches!(e, TrainError::Resume { .. }) && e.to_string().contains("dataset differs"), "{e}");
    assert!(!run.join("finetune/checkpoint").exists());
}

#[test]
fn per_epoch_projection_via_the_cli() {
    let _g = torch_lock();
    let tmp = tempfile::tempdir().unwrap();
    let (shards, run) = (tmp.path().join("shards"), tmp.path().join("run"));
    write_synth(&shards, &COUNTS, 2, 16, 3, 7);
    first_stage(&shards, &run);
    // lt-train writes report.json at the end of a run; the test's first stage
    // did not, so the shard directory is passed explicitly.
    let out = tmp.path().join("mn");
    let o = Command::new(env!("CARGO_BIN_EXE_lt-train"))
        .args(["finetune", run.to_str().unwrap(), "--epochs", "1", "--per-epoch", "--set", "finetune.batch_size=16"])
        .args(["--shards", shards.to_str().unwrap(), "--out", out.to_str().unwrap(), "--device", "cpu", "--threads", "1", "-q"])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(o.status.success(), "{err}");
    let stdout = String::from_utf8_lossy(&o.stdout);
    assert!(stdout.contains("| top-1") && stdout.contains("report.md"), "{stdout}");
    let saved = lt_train::recipe::Recipe::load(&out.join("recipe.toml")).unwrap();
    let ft = saved.finetune.unwrap();
    assert_eq!((ft.epochs, ft.per_epoch, ft.batch_size), (1, true, Some(16)));
    let state: serde_json::Value = serde_json::from_slice(&std::fs::read(out.join("checkpoint/state.json")).unwrap()).unwrap();
    let t = state["extra"]["maxnorm_threshold"].as_f64().unwrap();
    let w = tensors(&out.join("checkpoint/model.safetensors")).into_iter().find(|(n, _)| n == "head_cb.weight").unwrap().1;
    let max = w.norm_scalaropt_dim(2.0, [1i64].as_slice(), false).max().double_value(&[]);
    assert!(max <= t + 1e-6, "row norm {max} > threshold {t}");

    // `lt-train replot` redraws the plots from what the run wrote.
    let md = std::fs::read(out.join("report.md")).unwrap();
    for f in ["per_class.png", "curves.png"] {
        std::fs::remove_file(out.join(f)).unwrap();
    }
    let replot = |dir: &Path| Command::new(env!("CARGO_BIN_EXE_lt-train")).args(["replot", dir.to_str().unwrap()]).output().unwrap();
    let o = replot(&out);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    for f in ["per_class.png", "curves.png"] {
        let img = image::open(out.join(f)).unwrap_or_else(|e| panic!("{f}: {e}"));
        assert!(img.width() > 500 && img.height() > 300, "{f}");
    }
    assert_eq!(std::fs::read(out.join("report.md")).unwrap(), md, "replot must leave report.md alone");
    // The first stage here wrote no report.json: the error names the file.
    let o = replot(&run);
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(2), "{err}");
    assert!(err.contains("cannot replot") && err.contains("report.json"), "{err}");
}
