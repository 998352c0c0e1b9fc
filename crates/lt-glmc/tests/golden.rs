//! Golden tests against the plain-PyTorch reference `tools/glmc_reference.py`.
//!
//! The fixtures (`tests/fixtures/glmc_golden.{safetensors,json}`) were made by
//! that script for fixed inputs (batch 4, 3×8×8 uint8 images, 5 classes with
//! counts [100, 40, 15, 6, 3]), a ResNet-32 at width 4 with d = 8, λ = 0.7
//! and the CutMix box centred at (3, 6). Everything runs in f64 on both
//! sides; the tolerance is 1e-5 relative. Regenerate with
//! `. tools/env.sh && $LT_GLMC_PYTHON tools/glmc_reference.py`.
//!
//! The reference equations, as the script writes them:
//! ```python
//! xg = lam * nu1 + (1 - lam) * nw1
//! xl = nu2.clone(); xl[:, :, y0:y1, x0:x1] = nw2[:, :, y0:y1, x0:x1]
//! y  = lam * oh_u + (1 - lam) * oh_w
//! v  = n.pow(-p) / n.pow(-p).sum() * C
//! yt = lam * v[yu].unsqueeze(1) * oh_u + (1 - lam) * v[yw].unsqueeze(1) * oh_w
//! soft_ce = -(t * F.log_softmax(logits, dim=1)).sum(dim=1).mean()
//! l_sup = soft_ce(og["logits"], y) + soft_ce(ol["logits"], y)
//! l_rb  = soft_ce(og["logits_cb"], yt) + soft_ce(ol["logits_cb"], yt)
//! l_con = -F.cosine_similarity(og["u"], ol["z"].detach()).mean()
//!         - F.cosine_similarity(ol["u"], og["z"].detach()).mean()
//! total = alpha * l_sup + (1 - alpha) * l_rb + kappa * l_con
//! opt = torch.optim.SGD(model.parameters(), lr, momentum=0.9, weight_decay=wd)
//! ```

use std::collections::HashMap;

use lt_core::groups::GroupThresholds;
use lt_glmc::loss::{self, ClassStats, GlmcBatch, LossConfig, RebalancedLoss};
use lt_glmc::maxnorm::{MaxNorm, ProjectEvery};
use lt_glmc::metrics::EvalAccumulator;
use lt_glmc::mix::{self, CutBox, MixParams, Normalizer};
use lt_glmc::model::{Arch, GlmcNet, ModelConfig};
use lt_glmc::optim::{LrSchedule, Sgd, SgdConfig};
use lt_glmc::tch::{nn::VarStore, Device, Kind, Tensor};
use serde_json::Value;

const RTOL: f64 = 1e-5;
const ATOL: f64 = 1e-10;

struct Fixture {
    t: HashMap<String, Tensor>,
    j: Value,
}

fn fixture() -> Fixture {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures");
    let t = Tensor::read_safetensors(dir.join("glmc_golden.safetensors")).expect("fixture tensors");
    let j: Value = serde_json::from_slice(&std::fs::read(dir.join("glmc_golden.json")).unwrap()).unwrap();
    Fixture { t: t.into_iter().collect(), j }
}

impl Fixture {
    fn get(&self, k: &str) -> &Tensor {
        self.t.get(k).unwrap_or_else(|| panic!("fixture has no tensor {k}"))
    }
    fn f(&self, path: &[&str]) -> f64 {
        let mut v = &self.j;
        for p in path {
            v = &v[*p];
        }
        v.as_f64().unwrap_or_else(|| panic!("fixture has no number at {path:?}"))
    }
    fn cfg(&self, k: &str) -> f64 {
        self.f(&["config", k])
    }
    fn counts(&self) -> Vec<usize> {
        self.j["config"]["counts"].as_array().unwrap().iter().map(|v| v.as_u64().unwrap() as usize).collect()
    }
}

/// Largest relative deviation `|a − b| / (|b| + ATOL/RTOL)`.
fn max_rel(a: &Tensor, b: &Tensor) -> f64 {
    assert_eq!(a.size(), b.size(), "shapes differ");
    let a = a.to_kind(Kind::Double);
    let b = b.to_kind(Kind::Double);
    let den = b.abs() + ATOL / RTOL;
    ((&a - &b).abs() / den).max().double_value(&[])
}

fn assert_close(what: &str, a: &Tensor, b: &Tensor) {
    let r = max_rel(a, b);
    assert!(r <= RTOL, "{what}: max relative deviation {r:e} > {RTOL:e}");
}

fn assert_scalar(what: &str, a: f64, b: f64) {
    let r = (a - b).abs() / (b.abs() + ATOL / RTOL);
    assert!(r <= RTOL, "{what}: got {a}, reference {b} (rel {r:e})");
}

/// A ResNet-32 (width 4, d = 8) in f64 with the reference's initial weights.
fn golden_net(fx: &Fixture) -> (VarStore, GlmcNet) {
    let mut vs = VarStore::new(Device::Cpu);
    let cfg = ModelConfig::new(Arch::ResNet32 { width: fx.cfg("resnet_width") as i64 }, fx.cfg("classes") as i64)
        .with_proj_dim(fx.cfg("proj_dim") as i64);
    let net = GlmcNet::try_new(&vs.root(), cfg).unwrap();
    vs.double();
    let vars = vs.variables();
    let n_init = fx.t.keys().filter(|k| k.starts_with("init.")).count();
    assert_eq!(vars.len(), n_init, "the Rust model and the PyTorch state_dict have different variables");
    lt_glmc::tch::no_grad(|| {
        for (name, mut v) in vars {
            v.copy_(fx.get(&format!("init.{name}")));
        }
    });
    (vs, net)
}

struct Inputs {
    u1: Tensor,
    u2: Tensor,
    w1: Tensor,
    w2: Tensor,
    y_u: Tensor,
    y_w: Tensor,
    mix: MixParams,
    stats: ClassStats,
}

fn inputs(fx: &Fixture) -> Inputs {
    let mean: Vec<f64> = fx.j["config"]["mean"].as_array().unwrap().iter().map(|v| v.as_f64().unwrap()).collect();
    let std: Vec<f64> = fx.j["config"]["std"].as_array().unwrap().iter().map(|v| v.as_f64().unwrap()).collect();
    let norm = Normalizer::try_new(&mean, &std, Device::Cpu, Kind::Double).unwrap();
    let c = &fx.j["config"]["centre"];
    let (h, w) = (fx.cfg("height") as i64, fx.cfg("width_px") as i64);
    let lambda = fx.cfg("lambda");
    let cut = CutBox::centred(h, w, lambda, c[0].as_i64().unwrap(), c[1].as_i64().unwrap());
    Inputs {
        u1: norm.apply(fx.get("in.u1")).unwrap(),
        u2: norm.apply(fx.get("in.u2")).unwrap(),
        w1: norm.apply(fx.get("in.w1")).unwrap(),
        w2: norm.apply(fx.get("in.w2")).unwrap(),
        y_u: fx.get("in.y_u").shallow_clone(),
        y_w: fx.get("in.y_w").shallow_clone(),
        mix: MixParams { lambda, cut },
        stats: ClassStats::try_new(&fx.counts(), fx.cfg("p"), Device::Cpu, Kind::Double).unwrap(),
    }
}

fn batch(i: &Inputs) -> GlmcBatch<'_> {
    GlmcBatch { u1: &i.u1, u2: &i.u2, w1: &i.w1, w2: &i.w2, y_u: &i.y_u, y_w: &i.y_w }
}

fn loss_cfg(fx: &Fixture) -> LossConfig {
    LossConfig::default().with_kappa(fx.cfg("kappa"))
}

fn alpha(fx: &Fixture) -> f64 {
    lt_core::weights::cumulative_alpha(fx.cfg("epoch") as usize, fx.cfg("epochs") as usize)
}

#[test]
fn normalization_and_mixtures_match() {
    let fx = fixture();
    let i = inputs(&fx);
    assert_close("normalized U1", &i.u1, fx.get("norm.u1"));

    let b: Vec<i64> = fx.j["config"]["box"].as_array().unwrap().iter().map(|v| v.as_i64().unwrap()).collect();
    assert_eq!([i.mix.cut.y0, i.mix.cut.y1, i.mix.cut.x0, i.mix.cut.x1], [b[0], b[1], b[2], b[3]]);
    // cut = ceil(8·sqrt(0.3)) = 5 is odd, so the authors' rand_bbox gives
    // [c − 2, c + 2): rows 1..5 around centre 3, columns 4..8 around centre 6
    // (clipped at the right edge), 4 × 4.
    assert_eq!(i.mix.cut.area(), 16);

    let xg = mix::mixup(&i.u1, &i.w1, i.mix.lambda).unwrap();
    let xl = mix::cutmix(&i.u2, &i.w2, &i.mix.cut).unwrap();
    assert_close("X_g (MixUp)", &xg, fx.get("mix.x_g"));
    assert_close("X_l (CutMix)", &xl, fx.get("mix.x_l"));

    // The fixture would catch swapped weights or a box off by one.
    let swapped = mix::mixup(&i.u1, &i.w1, 1.0 - i.mix.lambda).unwrap();
    assert!(max_rel(&swapped, fx.get("mix.x_g")) > 1e-2);
    let shifted = CutBox { y0: i.mix.cut.y0 + 1, y1: i.mix.cut.y1 + 1, ..i.mix.cut };
    assert!(max_rel(&mix::cutmix(&i.u2, &i.w2, &shifted).unwrap(), fx.get("mix.x_l")) > 1e-2);
}

#[test]
fn labels_match() {
    let fx = fixture();
    let i = inputs(&fx);
    let c = fx.cfg("classes") as i64;
    let y = loss::mixed_labels(&i.y_u, &i.y_w, i.mix.lambda, c, Kind::Double).unwrap();
    let yt = loss::weighted_labels(&i.y_u, &i.y_w, i.mix.lambda, &i.stats.label_weights).unwrap();
    assert_close("v", &i.stats.label_weights, fx.get("label.v"));
    assert_close("y", &y, fx.get("label.y"));
    assert_close("y~", &yt, fx.get("label.y_tilde"));
    // The weighted labels really differ from the plain ones (p = 1.2).
    assert!(max_rel(fx.get("label.y_tilde"), fx.get("label.y")) > 0.1);
    // Each row of y sums to one.
    let sums = y.sum_dim_intlist(1, false, None);
    assert_close("row sums of y", &sums, &Tensor::ones([4], (Kind::Double, Device::Cpu)));
}

#[test]
fn losses_gradients_and_two_sgd_steps_match() {
    let fx = fixture();
    let i = inputs(&fx);
    let (vs, net) = golden_net(&fx);
    let cfg = loss_cfg(&fx);
    let a = alpha(&fx);
    assert_scalar("alpha", a, fx.cfg("alpha"));
    let mut opt = Sgd::new(&vs, SgdConfig { lr: fx.cfg("lr"), momentum: fx.cfg("momentum"), weight_decay: fx.cfg("weight_decay") });
    for step in 0..2 {
        opt.zero_grad().unwrap();
        let terms = loss::glmc_loss(&net, &batch(&i), &i.mix, &i.stats, &cfg, a).unwrap();
        let v = terms.values().unwrap();
        let key = format!("losses_step{}", step + 1);
        assert_scalar(&format!("{key} L_sup"), v.sup, fx.f(&[&key, "sup"]));
        assert_scalar(&format!("{key} L_rb"), v.rb.unwrap(), fx.f(&[&key, "rb"]));
        assert_scalar(&format!("{key} L_con"), v.con.unwrap(), fx.f(&[&key, "con"]));
        assert_scalar(&format!("{key} L"), v.total, fx.f(&[&key, "total"]));
        assert_eq!(terms.check_finite(step, 0).unwrap(), v.total);
        terms.total.backward();
        if step == 0 {
            let vars = vs.variables();
            let mut n = 0;
            for (k, t) in fx.t.iter().filter(|(k, _)| k.starts_with("grad.")) {
                let name = &k["grad.".len()..];
                assert_close(k, &vars[name].grad(), t);
                n += 1;
            }
            assert_eq!(n, 9, "gradients of the four heads (weight + bias) and of encoder.conv1");
        }
        opt.step().unwrap();
        // Parameters and BatchNorm running statistics after each step.
        let prefix = format!("step{}.", step + 1);
        for (name, v) in vs.variables() {
            assert_close(&format!("{prefix}{name}"), &v, fx.get(&format!("{prefix}{name}")));
        }
    }
    // Momentum buffers after two steps (nonzero history: buf = μ·buf + d_p).
    let bufs = opt.buffers();
    assert_eq!(bufs.len(), fx.t.keys().filter(|k| k.starts_with("momentum.")).count());
    for (name, b) in bufs {
        assert_close(&format!("momentum.{name}"), &b, fx.get(&format!("momentum.{name}")));
    }
}

#[test]
fn variants_match() {
    let fx = fixture();
    let i = inputs(&fx);
    let a = alpha(&fx);
    let cases = [
        ("balanced_softmax", loss_cfg(&fx).with_rebalanced(RebalancedLoss::BalancedSoftmax)),
        ("no_reweight", loss_cfg(&fx).with_reweight(false)),
        ("no_consistency", loss_cfg(&fx).with_consistency(false)),
    ];
    for (name, cfg) in cases {
        let (_vs, net) = golden_net(&fx);
        let v = loss::glmc_loss(&net, &batch(&i), &i.mix, &i.stats, &cfg, a).unwrap().values().unwrap();
        assert_scalar(&format!("{name} total"), v.total, fx.f(&["variants", name, "total"]));
        if let Some(rb) = v.rb {
            assert_scalar(&format!("{name} L_rb"), rb, fx.f(&["variants", name, "rb"]));
        }
    }
    // The ablations skip what they switch off.
    let (_vs, net) = golden_net(&fx);
    let v = loss::glmc_loss(&net, &batch(&i), &i.mix, &i.stats, &loss_cfg(&fx).with_consistency(false), a).unwrap().values().unwrap();
    assert!(v.con.is_none());
    let (_vs, net) = golden_net(&fx);
    let ce = loss::cross_entropy_loss(&net, &i.u1, &i.y_u).unwrap().values().unwrap();
    assert_scalar("cross-entropy baseline", ce.total, fx.f(&["variants", "cross_entropy", "total"]));
}

#[test]
fn wrong_settings_are_caught_by_the_fixture() {
    let fx = fixture();
    let i = inputs(&fx);
    let a = alpha(&fx);
    let want = fx.f(&["losses_step1", "total"]);
    let rel = |got: f64| (got - want).abs() / want.abs();
    // κ = 1 instead of 2, α of another epoch, λ swapped: all visibly off.
    for (cfg, alpha, lam) in
        [(loss_cfg(&fx).with_kappa(1.0), a, i.mix.lambda), (loss_cfg(&fx), 1.0, i.mix.lambda), (loss_cfg(&fx), a, 1.0 - i.mix.lambda)]
    {
        let (_vs, net) = golden_net(&fx);
        let m = MixParams { lambda: lam, ..i.mix };
        let v = loss::glmc_loss(&net, &batch(&i), &m, &i.stats, &cfg, alpha).unwrap().values().unwrap();
        assert!(rel(v.total) > 1e-3, "a wrong setting gave the reference total {}", v.total);
    }
}

#[test]
fn eval_mode_uses_running_statistics() {
    let fx = fixture();
    let i = inputs(&fx);
    let (_vs, net) = golden_net(&fx);
    let out = lt_glmc::tch::no_grad(|| net.forward(&i.u1, false)).unwrap();
    assert_close("eval feat", &out.feat, fx.get("eval.feat"));
    assert_close("eval logits_cb", &out.logits_cb, fx.get("eval.logits_cb"));
}

#[test]
fn maxnorm_matches() {
    let fx = fixture();
    let mut mn = MaxNorm::new(fx.f(&["maxnorm", "thresh_ratio"]), ProjectEvery::Iteration);
    let t = mn.set_threshold(fx.get("maxnorm.w0")).unwrap();
    assert_scalar("MaxNorm threshold", t, fx.f(&["maxnorm", "thresh"]));
    let w = fx.get("maxnorm.w1").copy();
    mn.project(&w).unwrap();
    assert_close("MaxNorm projection", &w, fx.get("maxnorm.projected"));
    // Some rows were rescaled, some were not.
    let changed = (&w - fx.get("maxnorm.w1")).abs().gt(1e-12).any_dim(1, false);
    let n = changed.to_kind(Kind::Int64).sum(Kind::Int64).int64_value(&[]);
    assert!(n > 0 && n < 7, "{n} rows changed");
}

#[test]
fn metrics_match() {
    let fx = fixture();
    let m = &fx.j["metrics"];
    let counts: Vec<usize> = m["counts"].as_array().unwrap().iter().map(|v| v.as_u64().unwrap() as usize).collect();
    let logits = fx.get("metrics.logits");
    let labels = fx.get("metrics.labels");
    let mut acc = EvalAccumulator::new(counts.len());
    // Two batches, to exercise accumulation.
    acc.update(&logits.narrow(0, 0, 25), &labels.narrow(0, 0, 25)).unwrap();
    acc.update(&logits.narrow(0, 25, 35), &labels.narrow(0, 25, 35)).unwrap();
    let r = acc.finish(&counts, GroupThresholds::default()).unwrap();
    assert_scalar("top1", r.top1, m["top1"].as_f64().unwrap());
    assert_scalar("top5", r.top5, m["top5"].as_f64().unwrap());
    for (c, want) in m["per_class"].as_array().unwrap().iter().enumerate() {
        assert_scalar(&format!("class {c}"), r.per_class[c].unwrap(), want.as_f64().unwrap());
    }
    assert_scalar("many", r.many.unwrap(), m["many"].as_f64().unwrap());
    assert_scalar("medium", r.medium.unwrap(), m["medium"].as_f64().unwrap());
    assert_scalar("few", r.few.unwrap(), m["few"].as_f64().unwrap());
    assert_scalar("ECE", r.ece, m["ece"].as_f64().unwrap());
    assert_eq!(r.samples, 60);
}

#[test]
fn schedules_match_torch_lr_schedulers() {
    let fx = fixture();
    let s = &fx.j["schedule"];
    let base = s["base_lr"].as_f64().unwrap();
    let e = s["cosine_epochs"].as_u64().unwrap() as usize;
    for (ep, want) in s["cosine"].as_array().unwrap().iter().enumerate() {
        assert_scalar(&format!("cosine epoch {ep}"), LrSchedule::Cosine.lr(base, ep, e), want.as_f64().unwrap());
    }
    let w = s["warmup_epochs"].as_u64().unwrap() as usize;
    let e = s["warmup_total_epochs"].as_u64().unwrap() as usize;
    let sched = LrSchedule::WarmupCosine { warmup_epochs: w };
    for (ep, want) in s["warmup_cosine"].as_array().unwrap().iter().enumerate() {
        assert_scalar(&format!("warm-up epoch {ep}"), sched.lr(base, ep, e), want.as_f64().unwrap());
    }
}

/// Golden values from the weight-balancing reference's loss
/// (ShadeAlsha/LTR-weight-balancing, utils/class_balanced_loss.py):
/// ```python
/// effective_num = 1.0 - np.power(beta, samples_per_cls)
/// weights = (1.0 - beta) / np.array(effective_num)
/// weights = weights / np.sum(weights) * no_of_classes
/// ...  # weights of each row's label, repeated over the classes
/// pred = logits.softmax(dim = 1)
/// cb_loss = F.binary_cross_entropy(input = pred, target = labels_one_hot, weight = weights)
/// ```
/// with beta 0.9999 and counts [5000, 500, 50, 5], and
/// `F.cross_entropy(logits + log(counts), labels)` /
/// `F.cross_entropy(logits, labels)` for the other two, run in PyTorch
/// 2.11 on the inputs below.
#[test]
fn second_stage_losses_match_the_references() {
    let logits =
        Tensor::from_slice(&[2.0f32, -1.0, 0.5, 0.0, 0.1, 0.2, 3.0, -2.0, -1.0, 1.5, 0.0, 0.3, 0.0, 0.0, 0.0, 4.0, 1.0, 2.0, -3.0, 0.5])
            .view([5, 4]);
    let y = Tensor::from_slice(&[0i64, 2, 1, 3, 1]);
    let counts = [5000, 500, 50, 5];
    for (loss, want) in [
        (loss::FinetuneLoss::ClassBalanced, 0.026588547974824905),
        (loss::FinetuneLoss::BalancedSoftmax, 1.4371764659881592),
        (loss::FinetuneLoss::CrossEntropy, 0.2908116281032562),
    ] {
        let f = loss::FinetuneLossFn::try_new(loss, 0.9999, &counts, tch::Device::Cpu).unwrap();
        let got = f.loss(&logits, &y).unwrap().double_value(&[]);
        assert!((got - want).abs() <= 1e-6 * want.abs().max(1.0), "{loss:?}: {got} vs {want}");
    }
}
