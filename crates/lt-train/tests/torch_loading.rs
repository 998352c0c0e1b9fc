//! Using a trained model outside lt-train: tools/lt_glmc_torch.py (plain
//! PyTorch plus `safetensors`) builds the model from the checkpoint's card,
//! loads it strictly, leaves torch's global state alone and reproduces
//! lt-train's top-1 image for image; `lt-train export --format torchscript`
//! writes a module that libtorch and PyTorch load back with the model's
//! logits to 1e-5.
//!
//! The Python parts need $LT_GLMC_PYTHON (the venv of tools/setup.sh): they
//! are skipped with a note without it, and fail when LT_REQUIRE_PYTHON=1
//! (tools/test.sh, CI).

mod util;

use std::path::{Path, PathBuf};
use std::process::Command;

use lt_glmc::card::{Head, ModelCard};
use lt_glmc::checkpoint;
use lt_glmc::model::{Arch, GlmcNet, HeadSet, ModelConfig};
use lt_glmc::tch::{self, nn::VarStore, CModule, Device, Kind, Tensor};
use lt_train::export;

#[path = "util/cli.rs"]
mod cli;
use cli::{lt_train, s, text, trained};

fn json(p: &Path) -> serde_json::Value {
    serde_json::from_slice(&std::fs::read(p).unwrap()).unwrap()
}

fn tools() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tools")
}

/// The venv's python with what tools/lt_glmc_torch.py needs, or None (the
/// caller skips) — unless LT_REQUIRE_PYTHON=1, where its absence fails.
fn python() -> Option<String> {
    let required = std::env::var("LT_REQUIRE_PYTHON").is_ok_and(|v| v == "1");
    let py = std::env::var("LT_GLMC_PYTHON").ok();
    let probe = |py: &str| Command::new(py).args(["-c", "import torch, safetensors, numpy, pyarrow, PIL"]).output();
    match py {
        Some(py) if probe(&py).is_ok_and(|o| o.status.success()) => Some(py),
        py => {
            let why = match py {
                Some(py) => format!("{py} lacks torch/safetensors/numpy/pyarrow/pillow: run tools/setup.sh"),
                None => "LT_GLMC_PYTHON is unset: run tools/setup.sh and source tools/env.sh".to_string(),
            };
            assert!(!required, "LT_REQUIRE_PYTHON=1 but {why}");
            eprintln!("skipping the PyTorch part: {why}");
            None
        }
    }
}

/// Runs a Python script with `args`, asserting success; returns stdout.
fn run_py(py: &str, script: &str, args: &[&str]) -> String {
    let o = Command::new(py).arg("-c").arg(script).args(args).env("PYTHONPATH", tools()).output().unwrap();
    assert!(o.status.success(), "python failed:\n{}", text(&o));
    String::from_utf8_lossy(&o.stdout).into_owned()
}

/// Correct images per class of an evaluation report (accuracy × images).
fn correct_per_class(report: &serde_json::Value, totals: &[u64]) -> Vec<u64> {
    let pc = report["per_class"].as_array().unwrap();
    pc.iter().zip(totals).map(|(a, &t)| (a.as_f64().unwrap_or(0.0) * t as f64).round() as u64).collect()
}

/// The module's `eval` on the test split counts exactly the images that
/// lt-train's last evaluation counted (report.json's final), class by
/// class, and `evaluate` on the train split agrees with `lt-train eval
/// --split train`; loading is strict and touches no global torch state.
#[test]
fn the_pytorch_module_reproduces_lt_trains_top1() {
    let Some(py) = python() else { return };
    let tmp = tempfile::tempdir().unwrap();
    let (shards, run) = trained(tmp.path());

    let module = tools().join("lt_glmc_torch.py");
    let o = Command::new(&py).args([s(&module), "eval", s(&run), "--json"]).output().unwrap();
    assert!(o.status.success(), "{}", text(&o));
    let got: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    let rep = json(&run.join("report.json"));
    let fin = &rep["final"];
    let n = fin["samples"].as_u64().unwrap();
    assert_eq!((got["total"].as_u64().unwrap(), got["head"].as_str().unwrap()), (n, "head_cb"), "{got}");
    let want = (fin["top1"].as_f64().unwrap() * n as f64).round() as u64;
    assert_eq!(got["correct"].as_u64().unwrap(), want, "PyTorch {got} vs lt-train's final {fin}");
    let totals: Vec<u64> = got["total_per_class"].as_array().unwrap().iter().map(|v| v.as_u64().unwrap()).collect();
    let ours: Vec<u64> = got["correct_per_class"].as_array().unwrap().iter().map(|v| v.as_u64().unwrap()).collect();
    assert_eq!(ours, correct_per_class(fin, &totals), "per class");
    // The plain CLI line.
    let o = Command::new(&py).args([s(&module), "eval", s(&run), "--shards", s(&shards)]).output().unwrap();
    assert!(
        o.status.success() && text(&o).starts_with("top-1 ") && text(&o).contains(&format!("({want}/{n}, test split, head_cb)")),
        "{}",
        text(&o)
    );

    // The train split (68 images), both heads, against `lt-train eval`.
    let o = lt_train(&["eval", s(&run), "--split", "train", "--device", "cpu", "--threads", "1", "--out", s(&tmp.path().join("e"))]);
    assert!(o.status.success(), "{}", text(&o));
    let ev = json(&tmp.path().join("e").join("eval.json"));
    let script = r#"
import json, sys, torch, lt_glmc_torch as lt
run, shards = sys.argv[1], sys.argv[2]
before = (torch.get_default_dtype(), torch.get_num_threads(), torch.random.get_rng_state())
out = {h: lt.evaluate(run, shards, split="train", head=h, batch_size=7) for h in ("head", "head_cb")}
model, card = lt.load(run)
after = (torch.get_default_dtype(), torch.get_num_threads(), torch.random.get_rng_state())
assert before[:2] == after[:2] and torch.equal(before[2], after[2]), "global torch state changed"
assert not model.training and card["eval_head"] == "head_cb" and card["width"] == 4, card
# Strict: a tensor missing or one too many is an error.
from safetensors.torch import load_file, save_file
from safetensors import safe_open
w = lt.weights_path(run)
with safe_open(w, framework="pt") as f:
    meta = f.metadata()
state = load_file(w)
for name, bad in (("missing", {k: v for k, v in state.items() if k != "head_cb.bias"}),
                  ("unexpected", dict(state, **{"encoder.bn1.num_batches_tracked": torch.tensor(0)}))):
    save_file(bad, sys.argv[3], metadata=meta)
    try:
        lt.load(sys.argv[3])
    except RuntimeError as e:
        assert ("Missing key" if name == "missing" else "Unexpected key") in str(e), e
    else:
        raise AssertionError(f"a checkpoint with a {name} tensor loaded")
# Another default dtype in the caller: the model stays float32.
torch.set_default_dtype(torch.float64)
m64, _ = lt.load(run)
assert all(p.dtype == torch.float32 for p in m64.state_dict().values())
print(json.dumps({h: r["correct"] for h, r in out.items()} | {"total": out["head"]["total"]}))
"#;
    let bad = tmp.path().join("bad.safetensors");
    let got: serde_json::Value = serde_json::from_str(run_py(&py, script, &[s(&run), s(&shards), s(&bad)]).trim()).unwrap();
    let n = got["total"].as_u64().unwrap();
    assert_eq!(n, 68);
    for (h, key) in [("g", "head"), ("g_cb", "head_cb")] {
        let want = (ev["heads"][h]["top1"].as_f64().unwrap() * n as f64).round() as u64;
        assert_eq!(got[key].as_u64().unwrap(), want, "{h}: PyTorch {got} vs lt-train eval {}", ev["heads"][h]);
    }
}

/// lt-train's own forward of the eval head on `x`.
fn model_logits(run: &Path, x: &Tensor) -> Tensor {
    let m = lt_train::eval::load_model(run, Device::Cpu).unwrap();
    let _g = tch::no_grad_guard();
    let o = m.net.forward_heads(x, false, HeadSet { proj: false }).unwrap();
    assert_eq!(m.card.eval_head, Head::GCb);
    o.logits_cb
}

fn max_abs_diff(a: &Tensor, b: &Tensor) -> f64 {
    assert_eq!(a.size(), b.size());
    (a - b).abs().max().double_value(&[])
}

/// `lt-train export`: the TorchScript module, reloaded by libtorch and by
/// PyTorch, gives lt-train's logits (and the PyTorch module's) to 1e-5 on a
/// batch of another size than the traced one; the size comes from the run's
/// shards, or --size; ONNX and bad flags are refused naming the flag.
#[test]
fn torchscript_export_gives_the_models_logits() {
    let tmp = tempfile::tempdir().unwrap();
    let (_shards, run) = trained(tmp.path());

    let o = lt_train(&["export", s(&run), "--format", "torchscript"]);
    assert!(o.status.success(), "{}", text(&o));
    assert!(text(&o).contains("input N x 3 x 8 x 8"), "{}", text(&o));
    let pt = run.join(export::DEFAULT_OUT);
    let info = json(&pt.with_extension("json"));
    assert_eq!(info["input_shape"], serde_json::json!([1, 3, 8, 8]));
    assert_eq!((info["head"].as_str(), info["format"].as_str()), (Some("head_cb"), Some("torchscript")));
    assert_eq!(info["card"]["class_names"], r#"["class-0","class-1","class-2"]"#);

    // A checkpoint directory alone does not know the image size of its
    // identity pipeline: --size is asked for, then used.
    let ckpt = run.join("checkpoint");
    let o = lt_train(&["export", s(&ckpt), "--out", s(&tmp.path().join("c.pt"))]);
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    assert!(text(&o).contains("--size: the eval pipeline keeps the source size"), "{}", text(&o));
    let o = lt_train(&["export", s(&ckpt), "--size", "12x10", "--head", "g", "--out", s(&tmp.path().join("c.pt"))]);
    assert!(o.status.success(), "{}", text(&o));
    assert_eq!(json(&tmp.path().join("c.json"))["input_shape"], serde_json::json!([1, 3, 10, 12]));
    assert_eq!(json(&tmp.path().join("c.json"))["head"], "head");
    for (args, want) in [
        (vec!["--format", "onnx"], "--format onnx: libtorch's C++ API"),
        (vec!["--size", "0"], "--size"),
        (vec!["--size", "8x"], "--size"),
        (vec!["--out", "x.json"], "--out"),
    ] {
        let o = lt_train(&[&["export", s(&run)], args.as_slice()].concat());
        assert_eq!(o.status.code(), Some(2), "{args:?}: {}", text(&o));
        assert!(text(&o).contains(want), "{args:?}: {}", text(&o));
    }

    // libtorch: the saved module against lt-train's forward, batch of 5.
    let x = export::check_input(5, 3, 8, 8).unwrap();
    let want = model_logits(&run, &x);
    let got = CModule::load(&pt).unwrap().forward_ts(&[&x]).unwrap();
    let d = max_abs_diff(&got, &want);
    assert!(d <= 1e-5, "TorchScript vs lt-train: {d:e}");
    assert!(want.abs().max().double_value(&[]) > 1e-3, "the check input gives non-trivial logits");

    // PyTorch: torch.jit.load and the loading module, on the same input.
    let Some(py) = python() else { return };
    let io = tmp.path().join("io.safetensors");
    Tensor::write_safetensors(&[("x", &x), ("logits", &want)], &io).unwrap();
    let script = r#"
import sys, torch, lt_glmc_torch as lt
from safetensors.torch import load_file
t = load_file(sys.argv[3])
jit = torch.jit.load(sys.argv[2])
model, card = lt.load(sys.argv[1])
with torch.no_grad():
    a, b = jit(t["x"]), model(t["x"])
d_jit = (a - t["logits"]).abs().max().item()
d_mod = (b - t["logits"]).abs().max().item()
d_both = (a - b).abs().max().item()
assert all(d <= 1e-5 for d in (d_jit, d_mod, d_both)), (d_jit, d_mod, d_both)  # NaN fails too
print(f"ok {d_jit:.2e} {d_mod:.2e} {d_both:.2e}")
"#;
    let out = run_py(&py, script, &[s(&run), s(&pt), s(&io)]);
    assert!(out.starts_with("ok "), "{out}");
}

/// Every architecture (ResNet-32 on gray input, ResNet-50, ResNeXt-50
/// 32x4d) loads strictly in PyTorch from a card-carrying checkpoint and
/// gives lt-glmc's logits of both heads, with non-trivial BatchNorm
/// statistics (so swapped mean and variance would show).
#[test]
fn every_architecture_loads_strictly_in_pytorch() {
    let Some(py) = python() else { return };
    let tmp = tempfile::tempdir().unwrap();
    let cases = [
        (ModelConfig::new(Arch::ResNet32 { width: 6 }, 4).with_in_channels(1), 16i64, Head::G),
        (ModelConfig::new(Arch::ResNet50, 5), 64, Head::GCb),
        (ModelConfig::new(Arch::ResNeXt50_32x4d, 5).with_proj_dim(32), 64, Head::GCb),
    ];
    for (i, (cfg, side, head)) in cases.into_iter().enumerate() {
        let (weights, io) = (tmp.path().join(format!("m{i}.safetensors")), tmp.path().join(format!("io{i}.safetensors")));
        {
            let _g = util::torch_lock();
            let vs = VarStore::new(Device::Cpu);
            let net = GlmcNet::try_new(&vs.root(), cfg).unwrap();
            tch::no_grad(|| {
                for (name, t) in vs.variables() {
                    let n = t.numel() as i64;
                    let wave = Tensor::arange(n, (Kind::Float, Device::Cpu)).sin().view(t.size().as_slice());
                    if name.ends_with("running_var") {
                        t.shallow_clone().copy_(&(wave * 0.4 + 1.0));
                    } else if name.ends_with("running_mean") {
                        t.shallow_clone().copy_(&(wave * 0.1));
                    }
                }
            });
            let c = cfg.in_channels;
            let card = ModelCard {
                model: cfg,
                class_names: (0..cfg.num_classes).map(|k| format!("c{k}")).collect(),
                mean: vec![0.5; c as usize],
                std: vec![0.25; c as usize],
                eval_head: head,
                eval_pipeline: serde_json::json!({ "kind": "eval", "resize": null, "crop": null }),
                dataset: "test".into(),
                recipe: "test".into(),
                method: "glmc".into(),
            };
            checkpoint::save_weights(&vs, &weights, &card.to_metadata()).unwrap();
            let x = export::check_input(2, c, side, side).unwrap();
            let o = tch::no_grad(|| net.forward_heads(&x, false, HeadSet { proj: false }).unwrap());
            Tensor::write_safetensors(&[("x", &x), ("logits", &o.logits), ("logits_cb", &o.logits_cb)], &io).unwrap();
        }
        let script = r#"
import sys, torch, lt_glmc_torch as lt
from safetensors.torch import load_file
t = load_file(sys.argv[2])
model, card = lt.load(sys.argv[1])
with torch.no_grad():
    out = model.forward_heads(t["x"])
    ev = model(t["x"])
for k in ("logits", "logits_cb"):
    scale = max(1.0, t[k].abs().max().item())
    d = (out[k] - t[k]).abs().max().item()
    assert d <= 1e-5 * scale, (card["arch"], k, d, scale)
want = t["logits_cb" if card["eval_head"] == "head_cb" else "logits"]
assert torch.equal(ev, out["logits_cb" if card["eval_head"] == "head_cb" else "logits"])
assert (ev - want).abs().max().item() <= 1e-5 * max(1.0, want.abs().max().item())
print("ok", card["arch"])
"#;
        let out = run_py(&py, script, &[s(&weights), s(&io)]);
        assert!(out.starts_with("ok "), "{out}");
    }
}
