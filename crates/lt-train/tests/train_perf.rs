//! The trainer's `[perf]` switches on CPU: channels-last trains
//! like NCHW and resumes exactly; AMP is refused without CUDA.

mod util;

use std::path::Path;

use lt_glmc::tch::{Device, Tensor};
use lt_train::recipe::Recipe;
use lt_train::train::{self, Quiet, TrainOptions};
use lt_train::TrainError;
use util::{tiny_recipe, torch_lock, write_synth};

const COUNTS: [usize; 4] = [32, 16, 8, 4];

fn opts(shards: &Path, out: &Path, recipe: Recipe) -> TrainOptions {
    TrainOptions::new(shards, out, recipe, Device::Cpu)
}

fn recipe(epochs: usize, channels_last: bool) -> Recipe {
    let mut r = tiny_recipe(epochs);
    r.set("loader.workers", "1").unwrap();
    // A small step: tiny BatchNorm nets amplify the last-bit differences of
    // the NHWC kernels from step to step (tests/amp.rs sees it too), and
    // the comparison is about the layout, not about chaos.
    // The authors' Kaiming-normal heads (2.45x nn.Linear's default) give
    // larger first gradients, so the step is smaller still, and the short
    // last batch (4 images through BatchNorm) is dropped.
    r.set("optim.lr", "0.001").unwrap();
    r.set("train.drop_last", "true").unwrap();
    r.set("perf.channels_last", if channels_last { "true" } else { "false" }).unwrap();
    r
}

fn tensors(path: &Path) -> Vec<(String, Tensor)> {
    let mut v = Tensor::read_safetensors(path).unwrap();
    v.sort_by(|a, b| a.0.cmp(&b.0));
    v
}

fn rel(a: f64, b: f64) -> f64 {
    (a - b).abs() / a.abs().max(b.abs()).max(1e-12)
}

#[test]
fn channels_last_trains_like_nchw() {
    let _g = torch_lock();
    let tmp = tempfile::tempdir().unwrap();
    let shards = tmp.path().join("shards");
    write_synth(&shards, &COUNTS, 4, 16, 3, 11);
    let (a, b) = (tmp.path().join("nchw"), tmp.path().join("nhwc"));
    let ra = train::train(&opts(&shards, &a, recipe(1, false)), &mut Quiet).unwrap();
    let rb = train::train(&opts(&shards, &b, recipe(1, true)), &mut Quiet).unwrap();
    let (x, y) = (&ra.records[0], &rb.records[0]);
    assert_eq!(x.steps, y.steps);
    assert_eq!((x.skipped_steps, y.skipped_steps), (0, 0));
    assert_eq!((x.loss_scale, y.loss_scale), (None, None));
    // The first step (same initial weights, same batch) agrees to float
    // rounding; the epoch means drift a little over the steps.
    assert!(rel(x.loss_first, y.loss_first) < 1e-5, "first step: nchw {} vs nhwc {}", x.loss_first, y.loss_first);
    for (name, p, q) in [("loss", x.loss, y.loss), ("loss_sup", x.loss_sup, y.loss_sup)] {
        assert!(p.is_finite() && rel(p, q) < 2e-3, "{name}: nchw {p} vs nhwc {q}");
    }
    let (ta, tb) = (x.test.unwrap(), y.test.unwrap());
    assert!((ta.top1 - tb.top1).abs() <= 0.05 + 1e-9, "top-1 {} vs {}", ta.top1, tb.top1);
    // Checkpoints stay NCHW-contiguous and close to the NCHW run's weights.
    let (wa, wb) = (tensors(&a.join("checkpoint/model.safetensors")), tensors(&b.join("checkpoint/model.safetensors")));
    assert_eq!(wa.len(), wb.len());
    for ((na, ta), (nb, tb)) in wa.iter().zip(&wb) {
        assert_eq!(na, nb);
        assert_eq!(ta.size(), tb.size());
        assert!(tb.is_contiguous(), "{nb} saved non-contiguous");
        let d = (ta - tb).abs().max().double_value(&[]);
        let m = ta.abs().max().double_value(&[]).max(1e-6);
        assert!(d < 5e-2 * m.max(0.05), "{na}: max diff {d} (scale {m})");
    }
    // The saved recipe keeps the switch, and metrics.jsonl has the counter.
    assert!(Recipe::load(&b.join("recipe.toml")).unwrap().perf.channels_last);
    let line = std::fs::read_to_string(b.join("metrics.jsonl")).unwrap();
    assert!(line.contains("\"skipped_steps\":0"), "{line}");
}

#[test]
fn channels_last_resume_is_exact() {
    let _g = torch_lock();
    let tmp = tempfile::tempdir().unwrap();
    let shards = tmp.path().join("shards");
    write_synth(&shards, &COUNTS, 2, 16, 3, 12);
    let (a, b) = (tmp.path().join("a"), tmp.path().join("b"));
    train::train(&opts(&shards, &a, recipe(2, true)), &mut Quiet).unwrap();

    let mut o = opts(&shards, &b, recipe(2, true));
    o.stop_after = Some(1);
    assert_eq!(train::train(&o, &mut Quiet).unwrap().epochs_done, 1);
    o.stop_after = None;
    o.resume = true;
    let second = train::train(&o, &mut Quiet).unwrap();
    assert_eq!((second.epochs_done, second.finished), (2, true));

    for f in ["model.safetensors", "optimizer.safetensors"] {
        let (ta, tb) = (tensors(&a.join("checkpoint").join(f)), tensors(&b.join("checkpoint").join(f)));
        assert_eq!(ta.len(), tb.len());
        assert!(!ta.is_empty());
        for ((na, xa), (nb, xb)) in ta.iter().zip(&tb) {
            assert_eq!(na, nb);
            assert!(xa.equal(xb), "{f}: {na} differs after resume");
        }
    }
    let (ma, mb) = (lt_report::read_metrics(&a).unwrap(), lt_report::read_metrics(&b).unwrap());
    assert_eq!((ma.len(), mb.len()), (2, 2));
    for (x, y) in ma.iter().zip(&mb) {
        assert_eq!((x.loss, x.loss_sup, x.loss_rb, x.loss_con), (y.loss, y.loss_sup, y.loss_rb, y.loss_con));
        assert_eq!(x.test.map(|t| t.top1), y.test.map(|t| t.top1));
    }
}

#[test]
fn amp_on_cpu_is_a_clear_error() {
    let _g = torch_lock();
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("run");
    let mut r = recipe(1, false);
    r.set("perf.amp", "true").unwrap();
    // Refused before the shards are even opened (none exist here), and
    // nothing is written.
    let e = train::train(&opts(&tmp.path().join("no-shards"), &out, r.clone()), &mut Quiet).unwrap_err();
    assert!(matches!(e, TrainError::Recipe { key: "perf.amp", .. }), "{e}");
    let msg = e.to_string();
    assert!(msg.contains("perf.amp") && msg.contains("CUDA"), "{msg}");
    assert!(!out.exists());
    // The same with channels-last on: the AMP refusal wins.
    r.set("perf.channels_last", "true").unwrap();
    let e = train::precision_config(&r.perf, Device::Cpu).unwrap_err();
    assert!(e.to_string().contains("CUDA"), "{e}");
    // And without AMP the switches are accepted on CPU.
    r.set("perf.amp", "false").unwrap();
    let p = train::precision_config(&r.perf, Device::Cpu).unwrap();
    assert_eq!(p.memory_format, lt_glmc::amp::MemoryFormat::Nhwc);
    assert!(p.loss_scaler().is_none());
}
