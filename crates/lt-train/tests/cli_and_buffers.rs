//! lt-train's command line (exit code 2 with the error chain) and the
//! tensor-backed batch buffers the trainer hands to lt-loader.

mod util;

use std::process::Command;
use std::sync::Arc;

use lt_glmc::pinned::{batch_to_device, TensorAllocator, TensorStorage};
use lt_glmc::tch::{Device, Kind, Tensor};
use lt_loader::loader::{Loader, LoaderConfig};
use lt_loader::sampler::SamplerSpec;
use lt_loader::source::MemorySource;
use lt_vision::augment::Pipeline;
use lt_vision::codec::{encode_png, Decoded};

fn lt_train() -> Command {
    Command::new(env!("CARGO_BIN_EXE_lt-train"))
}

#[test]
fn bad_inputs_exit_2_with_a_clear_message() {
    let tmp = tempfile::tempdir().unwrap();
    let shards = tmp.path().join("s");
    util::write_synth(&shards, &[8, 4], 2, 8, 3, 9);
    let run = |args: &[&str]| {
        let o = lt_train().args(args).output().unwrap();
        (o.status.code(), String::from_utf8_lossy(&o.stderr).into_owned())
    };
    let s = shards.to_str().unwrap();
    let (code, err) = run(&[tmp.path().join("nope").to_str().unwrap(), "--device", "cpu"]);
    assert_eq!(code, Some(2), "{err}");
    assert!(err.contains("manifest.json"), "{err}");

    let recipe = tmp.path().join("r.toml");
    let text = util::tiny_recipe(1).to_toml_string().unwrap().replacen("[optim]", "[optim]\nlearning_rate = 1.0", 1);
    std::fs::write(&recipe, text).unwrap();
    let (code, err) = run(&[s, "--recipe", recipe.to_str().unwrap(), "--device", "cpu"]);
    assert_eq!(code, Some(2), "{err}");
    assert!(err.contains("learning_rate"), "{err}");

    let (code, err) = run(&[s, "--set", "optim.lr=-1", "--device", "cpu"]);
    assert_eq!(code, Some(2), "{err}");
    assert!(err.contains("optim.lr"), "{err}");

    // --method ce on a recipe written for GLMC (views = 2) switches the views too.
    let glmc_recipe = tmp.path().join("g.toml");
    let mut g = util::tiny_recipe(1);
    g.loader.views = Some(2);
    std::fs::write(&glmc_recipe, g.to_toml_string().unwrap()).unwrap();
    let out = tmp.path().join("ce-run");
    let (code, err) = run(&[
        s,
        "--recipe",
        glmc_recipe.to_str().unwrap(),
        "--method",
        "ce",
        "--device",
        "cpu",
        "--threads",
        "1",
        "-q",
        "--out",
        out.to_str().unwrap(),
    ]);
    assert_eq!(code, Some(0), "{err}");
    let saved = lt_train::recipe::Recipe::load(&out.join("recipe.toml")).unwrap();
    assert_eq!((saved.train.method, saved.loader.views), (lt_train::recipe::Method::CrossEntropy, Some(1)));
    assert!(out.join("report.md").is_file() && out.join("curves.png").is_file());

    if !lt_glmc::tch::Cuda::is_available() {
        let (code, err) = run(&[s, "--device", "cuda"]);
        assert_eq!(code, Some(2), "{err}");
        assert!(err.contains("no CUDA"), "{err}");
    }
}

#[test]
fn tensor_buffers_give_the_same_batches_as_heap_buffers() {
    let rows: Vec<(Vec<u8>, i64)> = (0..24u8)
        .map(|i| {
            let px: Vec<u8> = (0..6 * 6 * 3).map(|k| (k as u8).wrapping_mul(i).wrapping_add(i)).collect();
            (encode_png(&Decoded { width: 6, height: 6, channels: 3, pixels: px }).unwrap(), (i % 3) as i64)
        })
        .collect();
    let src = Arc::new(MemorySource::new(rows));
    let cfg = LoaderConfig::default()
        .with_batch_size(4)
        .with_views(2)
        .with_workers(2)
        .with_sampler(SamplerSpec::Paired { q: 1.0 })
        .with_epochs(1)
        .with_seed(5)
        .with_pool_size(8); // all six batches are held at once below
    let heap: Vec<_> =
        Loader::try_new(src.clone(), Pipeline::by_name("cifar").unwrap(), cfg.clone()).unwrap().collect::<Result<_, _>>().unwrap();
    let alloc = TensorAllocator::new(true);
    assert_eq!(alloc.pinned(), lt_glmc::tch::Cuda::is_available());
    let tensor_cfg = cfg.with_allocator(Arc::new(alloc));
    let tens: Vec<_> = Loader::try_new(src, Pipeline::by_name("cifar").unwrap(), tensor_cfg).unwrap().collect::<Result<_, _>>().unwrap();
    assert_eq!(heap.len(), tens.len());
    for (h, t) in heap.iter().zip(&tens) {
        assert!(t.storage().as_any().downcast_ref::<TensorStorage>().is_some());
        assert_eq!(h.data(), t.data());
        let (xh, yh) = batch_to_device(h, Device::Cpu).unwrap();
        let (xt, yt) = batch_to_device(t, Device::Cpu).unwrap();
        assert_eq!(xt.size(), vec![2, 8, 3, 6, 6]);
        assert_eq!(xt.kind(), Kind::Uint8);
        assert!(xh.equal(&xt) && yh.equal(&yt));
        let labels: Vec<i64> = Vec::<i64>::try_from(&yt).unwrap();
        assert_eq!(labels, t.labels);
        let _: &Tensor = &xt;
    }
}

fn run_cli(args: &[&str]) -> (Option<i32>, String, String) {
    let o = lt_train().args(args).output().unwrap();
    (o.status.code(), String::from_utf8_lossy(&o.stdout).into_owned(), String::from_utf8_lossy(&o.stderr).into_owned())
}

/// Exit 2 with `needles` in the message, and no panic or abort.
fn assert_refused(args: &[&str], needles: &[&str]) -> String {
    let (code, _, err) = run_cli(args);
    assert_eq!(code, Some(2), "{args:?}: {err}");
    assert!(!err.contains("panicked") && !err.contains("RUST_BACKTRACE"), "{args:?}: {err}");
    for n in needles {
        assert!(err.contains(n), "{args:?}: no {n:?} in {err}");
    }
    err
}

/// `--threads 0` panicked inside tch.
#[test]
fn zero_threads_are_refused_naming_the_flag() {
    let tmp = tempfile::tempdir().unwrap();
    let shards = tmp.path().join("s");
    util::write_synth(&shards, &[8, 4], 2, 8, 3, 9);
    let s = shards.to_str().unwrap();
    let out = tmp.path().join("run");
    assert_refused(&[s, "--threads", "0", "--device", "cpu", "--out", out.to_str().unwrap()], &["--threads", "0"]);
    assert_refused(&[s, "--threads=-2", "--device", "cpu", "--out", out.to_str().unwrap()], &["--threads"]);
    assert!(!out.exists());
    assert_refused(&["finetune", out.to_str().unwrap(), "--threads", "0", "--device", "cpu"], &["--threads", "0"]);
}

/// `lt-train help` opened `help/manifest.json`.
#[test]
fn help_is_a_subcommand_and_the_help_texts_name_the_subcommands() {
    let (code, out, err) = run_cli(&["help"]);
    assert_eq!(code, Some(0), "{err}");
    assert!(out.contains("finetune") && out.contains("replot") && out.contains("SHARDS") && out.contains("--resume"), "{out}");
    assert!(!err.contains("manifest.json"), "{err}");
    for args in [&["help", "finetune"][..], &["finetune", "--help"]] {
        let (code, out, err) = run_cli(args);
        assert_eq!(code, Some(0), "{err}");
        assert!(out.contains("MaxNorm") && out.contains("--per-epoch") && out.contains("RUN_DIR"), "{out}");
    }
    let (code, out, _) = run_cli(&["replot", "--help"]);
    assert_eq!(code, Some(0));
    assert!(out.contains("Redraw") && out.contains("RUN_DIRS"), "{out}");
    let (code, out, _) = run_cli(&["--help"]);
    assert_eq!(code, Some(0));
    assert!(out.contains("finetune") && out.contains("--batch-size") && out.contains("at least 1"), "{out}");
    // Without a shard directory or a subcommand: clap's usage error.
    assert_refused(&[], &["SHARDS"]);
}

/// A second writer of a run directory is refused while the
/// first holds it (here the test process holds the lock, as a running
/// lt-train would), naming the holder.
#[test]
fn a_second_writer_of_a_run_directory_is_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let shards = tmp.path().join("s");
    util::write_synth(&shards, &[8, 4], 2, 8, 3, 9);
    let recipe = tmp.path().join("r.toml");
    std::fs::write(&recipe, util::tiny_recipe(1).to_toml_string().unwrap()).unwrap();
    let out = tmp.path().join("run");
    std::fs::create_dir_all(&out).unwrap();
    let args = |resume: bool| {
        let mut a: Vec<String> = vec![shards.to_str().unwrap().into(), "--recipe".into(), recipe.to_str().unwrap().into()];
        a.extend(["--device", "cpu", "--threads", "1", "-q"].map(String::from));
        a.extend(if resume { ["--resume", out.to_str().unwrap()] } else { ["--out", out.to_str().unwrap()] }.map(String::from));
        a
    };
    let held = lt_train::rundir::RunLock::exclusive(&out).unwrap();
    let pid = std::process::id().to_string();
    let a = args(false);
    let a: Vec<&str> = a.iter().map(String::as_str).collect();
    let err = assert_refused(&a, &["in use", &pid, out.to_str().unwrap()]);
    assert!(!out.join("recipe.toml").exists() && !out.join("metrics.jsonl").exists(), "{err}");
    drop(held);
    // Released (as when the first process ends, killed or not): it runs.
    let (code, _, err) = run_cli(&a);
    assert_eq!(code, Some(0), "{err}");
    // A resume is a writer too.
    let held = lt_train::rundir::RunLock::exclusive(&out).unwrap();
    let r = args(true);
    let r: Vec<&str> = r.iter().map(String::as_str).collect();
    assert_refused(&r, &["in use", &pid]);
    // And so is fine-tuning into it, while reading from it is allowed to others.
    let ft = tmp.path().join("ft");
    assert_refused(
        &["finetune", out.to_str().unwrap(), "--out", ft.to_str().unwrap(), "--shards", shards.to_str().unwrap(), "--device", "cpu"],
        &["in use"],
    );
    drop(held);
    std::fs::create_dir_all(&ft).unwrap();
    let held = lt_train::rundir::RunLock::exclusive(&ft).unwrap();
    assert_refused(
        &["finetune", out.to_str().unwrap(), "--out", ft.to_str().unwrap(), "--shards", shards.to_str().unwrap(), "--device", "cpu"],
        &["in use", &pid],
    );
    drop(held);
    // In one process the lock is re-entrant (lt-train holds it across train() and its report).
    let a1 = lt_train::rundir::RunLock::exclusive(&out).unwrap();
    let a2 = lt_train::rundir::RunLock::exclusive(&out).unwrap();
    assert_eq!(a1.path(), a2.path());
}

/// NaN at the third step of the first epoch: the message
/// counts epochs from 1 and does not claim a checkpoint is kept.
#[test]
fn non_finite_loss_in_the_first_epoch_claims_no_checkpoint() {
    let tmp = tempfile::tempdir().unwrap();
    let shards = tmp.path().join("s");
    util::write_synth(&shards, &[32, 16], 2, 8, 3, 9);
    let recipe = tmp.path().join("r.toml");
    std::fs::write(&recipe, util::tiny_recipe(2).to_toml_string().unwrap()).unwrap();
    let out = tmp.path().join("run");
    let (s, r, o) = (shards.to_str().unwrap(), recipe.to_str().unwrap(), out.to_str().unwrap());
    let err = assert_refused(
        &[s, "--recipe", r, "--set", "optim.lr=1e30", "--device", "cpu", "--threads", "1", "-q", "--out", o],
        &["non-finite loss", "(epoch 1)", "no checkpoint had been written yet"],
    );
    assert!(!err.contains("is kept") && !err.contains("epoch 0"), "{err}");
    assert!(!out.join("checkpoint").exists());
}

/// `--resume` with a flag compares against the run's own
/// recipe (it used to start from the shards' defaults and list 8-10
/// unrelated fields); `--epochs` on a cosine run is refused saying why; a
/// batch larger than the data names --batch-size.
#[test]
fn resume_flags_show_only_what_differs_and_batch_size_is_named() {
    let tmp = tempfile::tempdir().unwrap();
    let shards = tmp.path().join("s");
    util::write_synth(&shards, &[16, 8], 2, 8, 3, 9);
    let recipe = tmp.path().join("r.toml");
    std::fs::write(&recipe, util::tiny_recipe(2).to_toml_string().unwrap()).unwrap();
    let out = tmp.path().join("run");
    let (s, r, o) = (shards.to_str().unwrap(), recipe.to_str().unwrap(), out.to_str().unwrap());
    let (code, _, err) = run_cli(&[s, "--recipe", r, "--stop-after", "1", "--device", "cpu", "--threads", "1", "-q", "--out", o]);
    assert_eq!(code, Some(0), "{err}");
    // A fresh run over it is refused in terms of the flags.
    assert_refused(&[s, "--recipe", r, "--device", "cpu", "-q", "--out", o], &["already holds a run", &format!("--resume {o}"), "--out"]);

    let err = assert_refused(&[s, "--resume", o, "--set", "optim.lr=0.1", "--device", "cpu", "-q"], &["optim.lr: 0.05 ≠ 0.1"]);
    assert_eq!(err.matches('≠').count(), 1, "{err}");
    let err = assert_refused(
        &[s, "--resume", o, "--epochs", "5", "--device", "cpu", "-q"],
        &["train.epochs cannot change from 2 to 5", "optim.schedule = \"cosine\"", "depends on the total epochs"],
    );
    assert!(!err.contains("name:"), "{err}");
    // Unchanged flags are no change.
    let (code, _, err) = run_cli(&[s, "--resume", o, "--epochs", "2", "--seed", "3", "--device", "cpu", "--threads", "1", "-q"]);
    assert_eq!(code, Some(0), "{err}");

    let big = tmp.path().join("big");
    let err = assert_refused(
        &[
            s,
            "--recipe",
            r,
            "--batch-size",
            "100000",
            "--set",
            "train.drop_last=true",
            "--device",
            "cpu",
            "-q",
            "--out",
            big.to_str().unwrap(),
        ],
        &["invalid train.batch_size (--batch-size)", "(at most 24)"],
    );
    assert!(!err.contains("set drop_last = false"), "{err}");
}
