//! Mixed precision and memory formats on CPU:
//! dynamic loss scaling (overflow → skip → back-off, growth after the
//! interval, NaN, state save/restore, equivalence with an unscaled step),
//! channels-last equivalence with NCHW, TF32 flags, and fp16 autocast being
//! refused on CPU.

mod util;

use lt_core::rng::Rng;
use lt_glmc::amp::{
    channels_last, cudnn_benchmark, is_channels_last, set_cudnn_benchmark, set_tf32, tf32_flags, LossScaleConfig, LossScaleState,
    LossScaler, MemoryFormat, Precision, PrecisionConfig, ScaleOutcome,
};
use lt_glmc::loss::{self, ClassStats, GlmcBatch, LossConfig};
use lt_glmc::mix::MixParams;
use lt_glmc::model::{Arch, GlmcNet, ModelConfig};
use lt_glmc::optim::{Sgd, SgdConfig};
use lt_glmc::tch::{self, nn::VarStore, Device, Kind, Tensor};

use util::torch_lock;

/// One parameter vector `w` (3 elements, all 1) and its optimizer.
fn one_param(lr: f64) -> (VarStore, Tensor, Sgd) {
    let vs = VarStore::new(Device::Cpu);
    let w = vs.root().var("w", &[3], tch::nn::Init::Const(1.0));
    let opt = Sgd::new(&vs, SgdConfig { lr, momentum: 0.0, weight_decay: 0.0 });
    (vs, w, opt)
}

fn values(t: &Tensor) -> Vec<f32> {
    Vec::<f32>::try_from(t.detach().to_kind(Kind::Float).flatten(0, -1)).unwrap()
}

#[test]
fn overflow_skips_the_step_and_backs_off_then_finite_steps_apply() {
    let _g = torch_lock(); // tensor ops: no set_num_threads under them
    let (vs, w, mut opt) = one_param(0.1);
    let params = vs.trainable_variables();
    let mut s = LossScaler::new(LossScaleConfig::default());
    assert_eq!(s.scale(), 65536.0);

    // d/dw of sum(w · 1e35) is 1e35; times the scale 2^16 it overflows f32.
    let loss = (&w * 1e35).sum(Kind::Float);
    let out = s.step(&mut opt, &params, &loss).unwrap();
    assert_eq!(out, ScaleOutcome::Skipped { scale: 32768.0 });
    assert!(out.skipped());
    assert_eq!(values(&w), vec![1.0; 3], "a skipped step must not touch the weights");
    assert_eq!(s.state(), LossScaleState { scale: 32768.0, growth_tracker: 0, skipped: 1, steps: 1 });

    // Overflow again: another back-off.
    let loss = (&w * 1e36).sum(Kind::Float);
    assert!(s.step(&mut opt, &params, &loss).unwrap().skipped());
    assert_eq!(s.scale(), 16384.0);

    // A finite loss: the step applies with the *unscaled* gradient (3).
    let loss = (&w * 3.0).sum(Kind::Float);
    let out = s.step(&mut opt, &params, &loss).unwrap();
    assert_eq!(out, ScaleOutcome::Applied { scale: 16384.0, grew: false });
    for v in values(&w) {
        assert!((v - (1.0 - 0.1 * 3.0)).abs() < 1e-6, "{v}");
    }
    // The unscaled gradient is left in .grad, as GradScaler.unscale_ does.
    for g in values(&w.grad()) {
        assert!((g - 3.0).abs() < 1e-6, "{g}");
    }
    assert_eq!(s.state().skipped, 2);
    assert_eq!(s.state().growth_tracker, 1);
}

#[test]
fn nan_gradients_are_skipped_too() {
    let _g = torch_lock(); // tensor ops: no set_num_threads under them
    let (vs, w, mut opt) = one_param(0.1);
    let params = vs.trainable_variables();
    let mut s = LossScaler::new(LossScaleConfig { init_scale: 8.0, ..Default::default() });
    let nan = Tensor::from_slice(&[f32::NAN, 1.0, 1.0]);
    let loss = (&w * nan).sum(Kind::Float);
    assert_eq!(s.step(&mut opt, &params, &loss).unwrap(), ScaleOutcome::Skipped { scale: 4.0 });
    assert_eq!(values(&w), vec![1.0; 3]);
}

#[test]
fn scale_grows_after_the_interval_and_an_overflow_resets_the_count() {
    let cfg = LossScaleConfig { init_scale: 4.0, growth_factor: 2.0, backoff_factor: 0.5, growth_interval: 3 };
    let mut s = LossScaler::new(cfg);
    assert_eq!(s.update(false), ScaleOutcome::Applied { scale: 4.0, grew: false });
    assert_eq!(s.update(false), ScaleOutcome::Applied { scale: 4.0, grew: false });
    assert_eq!(s.update(false), ScaleOutcome::Applied { scale: 8.0, grew: true });
    assert_eq!(s.state().growth_tracker, 0);
    // Two good steps, then an overflow: the count starts again.
    s.update(false);
    s.update(false);
    assert_eq!(s.update(true), ScaleOutcome::Skipped { scale: 4.0 });
    assert_eq!(s.update(false), ScaleOutcome::Applied { scale: 4.0, grew: false });
    assert_eq!(s.update(false), ScaleOutcome::Applied { scale: 4.0, grew: false });
    assert_eq!(s.update(false), ScaleOutcome::Applied { scale: 8.0, grew: true });
    assert_eq!(s.state().steps, 9);
    assert_eq!(s.state().skipped, 1);

    // The default interval is GradScaler's 2000.
    let mut d = LossScaler::new(LossScaleConfig::default());
    for _ in 0..1999 {
        d.update(false);
    }
    assert_eq!(d.scale(), 65536.0);
    assert_eq!(d.update(false), ScaleOutcome::Applied { scale: 131072.0, grew: true });
}

#[test]
fn growth_never_overflows_f32() {
    let cfg = LossScaleConfig { init_scale: 2e38, growth_interval: 1, ..Default::default() };
    let mut s = LossScaler::new(cfg);
    assert_eq!(s.update(false), ScaleOutcome::Applied { scale: 2e38, grew: false });
}

#[test]
fn state_round_trips_through_json_and_resumes_identically() {
    let cfg = LossScaleConfig { init_scale: 1024.0, growth_interval: 4, ..Default::default() };
    let mut a = LossScaler::new(cfg);
    for found in [false, true, false, false] {
        a.update(found);
    }
    let json = serde_json::to_string(&a.state()).unwrap();
    let mut b = LossScaler::new(cfg);
    b.set_state(serde_json::from_str(&json).unwrap()).unwrap();
    assert_eq!(a.state(), b.state());
    for found in [false, false, true, false, false, false, false] {
        assert_eq!(a.update(found), b.update(found));
    }
    assert_eq!(a.state(), b.state());
    assert!(b.set_state(LossScaleState { scale: 0.0, growth_tracker: 0, skipped: 0, steps: 0 }).is_err());
}

#[test]
fn invalid_settings_are_refused() {
    for bad in [
        LossScaleConfig { init_scale: 0.0, ..Default::default() },
        LossScaleConfig { growth_factor: 1.0, ..Default::default() },
        LossScaleConfig { backoff_factor: 1.0, ..Default::default() },
        LossScaleConfig { growth_interval: 0, ..Default::default() },
    ] {
        assert!(bad.validate().is_err(), "{bad:?}");
    }
}

struct Tiny {
    vs: VarStore,
    net: GlmcNet,
    opt: Sgd,
}

fn tiny(seed: i64) -> Tiny {
    tch::manual_seed(seed);
    let vs = VarStore::new(Device::Cpu);
    let net = GlmcNet::try_new(&vs.root(), ModelConfig::new(Arch::ResNet32 { width: 4 }, 5)).unwrap();
    let opt = Sgd::new(&vs, SgdConfig { lr: 0.05, momentum: 0.9, weight_decay: 5e-4 });
    Tiny { vs, net, opt }
}

/// A fixed GLMC batch (already normalized) and its loss.
fn glmc_total(net: &GlmcNet, views: &[Tensor; 4], fmt: MemoryFormat) -> Tensor {
    let v: Vec<Tensor> = views.iter().map(|x| fmt.apply(x).unwrap()).collect();
    let y_u = Tensor::from_slice(&[0i64, 1, 2, 3, 4, 0]);
    let y_w = Tensor::from_slice(&[4i64, 4, 3, 2, 1, 1]);
    let stats = ClassStats::try_new(&[50, 30, 20, 10, 5], 1.2, Device::Cpu, Kind::Float).unwrap();
    let mix = MixParams::draw(&mut Rng::new(7), 1.0, 16, 16);
    let b = GlmcBatch { u1: &v[0], u2: &v[1], w1: &v[2], w2: &v[3], y_u: &y_u, y_w: &y_w };
    loss::glmc_loss(net, &b, &mix, &stats, &LossConfig::default(), 0.7).unwrap().total
}

fn views() -> [Tensor; 4] {
    tch::manual_seed(99);
    std::array::from_fn(|_| Tensor::randn([6, 3, 16, 16], (Kind::Float, Device::Cpu)))
}

fn max_rel_diff(a: &VarStore, b: &VarStore) -> f64 {
    let (va, vb) = (a.variables(), b.variables());
    let mut worst = (0f64, String::new());
    for (name, ta) in &va {
        let tb = &vb[name];
        let d = (ta - tb).abs().max().double_value(&[]);
        let m = ta.abs().max().double_value(&[]).max(1e-3);
        if d / m > worst.0 {
            worst = (d / m, name.clone());
        }
    }
    eprintln!("max relative difference {} in {}", worst.0, worst.1);
    worst.0
}

#[test]
fn a_scaled_step_matches_an_unscaled_one() {
    let _g = torch_lock();
    let x = views();
    let mut a = tiny(3);
    let mut b = tiny(3);
    let params_b = b.vs.trainable_variables();
    let mut scaler = LossScaler::new(LossScaleConfig { init_scale: 1024.0, ..Default::default() });
    for _ in 0..2 {
        let la = glmc_total(&a.net, &x, MemoryFormat::Nchw);
        a.opt.zero_grad().unwrap();
        la.backward();
        a.opt.step().unwrap();
        let lb = glmc_total(&b.net, &x, MemoryFormat::Nchw);
        assert!(!scaler.step(&mut b.opt, &params_b, &lb).unwrap().skipped());
    }
    let d = max_rel_diff(&a.vs, &b.vs);
    assert!(d < 1e-4, "scaled and unscaled SGD differ by {d}");
    // …and the weights did move.
    let c = tiny(3);
    assert!(max_rel_diff(&a.vs, &c.vs) > 1e-3);
}

#[test]
fn channels_last_keeps_values_and_sets_nhwc_strides() {
    let _g = torch_lock(); // randn draws from the global generator
    let x = Tensor::randn([2, 3, 5, 7], (Kind::Float, Device::Cpu));
    let y = channels_last(&x).unwrap();
    assert_eq!(y.size(), x.size());
    assert_eq!(y.stride(), vec![105, 1, 21, 3]);
    assert!(is_channels_last(&y));
    assert!(!is_channels_last(&x));
    assert_eq!((&x - &y).abs().max().double_value(&[]), 0.0);
    assert!(channels_last(&Tensor::zeros([3, 4], (Kind::Float, Device::Cpu))).is_err());
    // Non-4-D tensors pass through apply() untouched.
    let v = Tensor::zeros([3, 4], (Kind::Float, Device::Cpu));
    assert_eq!(MemoryFormat::Nhwc.apply(&v).unwrap().stride(), vec![4, 1]);
}

#[test]
fn channels_last_model_matches_nchw_in_forward_and_training() {
    let _g = torch_lock();
    let x = views();
    // Forward (eval mode): same logits.
    let a = tiny(5);
    let mut b = tiny(5);
    let n = MemoryFormat::Nhwc.convert_weights(&b.vs).unwrap();
    assert!(n >= 30, "ResNet-32 has 31 convolutions, converted {n}");
    for (name, v) in b.vs.variables() {
        if v.dim() == 4 {
            assert!(is_channels_last(&v), "{name} is not channels-last: {:?}", v.stride());
        }
    }
    let xa = &x[0];
    let xb = channels_last(xa).unwrap();
    let oa = a.net.forward(xa, false).unwrap();
    let ob = b.net.forward(&xb, false).unwrap();
    let d = (&oa.logits_cb - &ob.logits_cb).abs().max().double_value(&[]);
    assert!(d < 1e-4, "NCHW vs NHWC logits differ by {d}");
    // The activations really ran channels-last (features are 2-D; check a conv output).
    assert!(max_rel_diff(&a.vs, &b.vs) == 0.0);

    // Two training steps: same weights afterwards, and the layout survives.
    let mut a = a;
    for _ in 0..2 {
        let la = glmc_total(&a.net, &x, MemoryFormat::Nchw);
        a.opt.zero_grad().unwrap();
        la.backward();
        a.opt.step().unwrap();
        let lb = glmc_total(&b.net, &x, MemoryFormat::Nhwc);
        let (va, vb) = (la.double_value(&[]), lb.double_value(&[]));
        assert!((va - vb).abs() < 1e-4 * va.abs().max(1.0), "loss {va} vs {vb}");
        b.opt.zero_grad().unwrap();
        lb.backward();
        b.opt.step().unwrap();
    }
    let d = max_rel_diff(&a.vs, &b.vs);
    assert!(d < 1e-3, "NCHW and NHWC training differ by {d}");
    for (name, v) in b.vs.variables() {
        if v.dim() == 4 {
            assert!(is_channels_last(&v), "{name} lost its layout after SGD: {:?}", v.stride());
        }
    }
    // Back to NCHW.
    MemoryFormat::Nchw.convert_weights(&b.vs).unwrap();
    for (_, v) in b.vs.variables() {
        assert!(v.is_contiguous());
    }
}

#[test]
fn fp16_autocast_is_refused_on_cpu_and_other_modes_apply() {
    let _g = torch_lock();
    let amp = PrecisionConfig::new(Precision::Amp, MemoryFormat::Nhwc);
    let e = amp.validate(Device::Cpu).unwrap_err().to_string();
    assert!(e.contains("CUDA") && e.contains("amp"), "{e}");
    assert!(amp.apply(Device::Cpu).is_err());
    assert!(amp.loss_scaler().is_some());
    assert!(amp.autocast());

    // tf32 sets libtorch's global flags (the Python allow_tf32 switches);
    // fp32 clears them.
    PrecisionConfig::new(Precision::Tf32, MemoryFormat::Nchw).apply(Device::Cpu).unwrap();
    assert_eq!(tf32_flags().unwrap(), (true, true));
    PrecisionConfig::new(Precision::Fp32, MemoryFormat::Nchw).apply(Device::Cpu).unwrap();
    assert_eq!(tf32_flags().unwrap(), (false, false));
    assert!(PrecisionConfig::default().loss_scaler().is_none());

    // Without autocast, forward() is just a call.
    let fp32 = PrecisionConfig::default();
    assert_eq!(fp32.forward(|| 41 + 1), 42);
    // tch's autocast is CUDA-only: on CPU tensors it changes nothing.
    let x = Tensor::randn([4, 4], (Kind::Float, Device::Cpu));
    let y = amp.forward(|| x.matmul(&x));
    assert_eq!(y.kind(), Kind::Float);
}

#[test]
fn switches_parse_from_recipes_and_flags() {
    let c: PrecisionConfig =
        serde_json::from_str(r#"{"precision":"amp","memory_format":"channels_last","loss_scale":{"growth_interval":100}}"#).unwrap();
    assert_eq!(c.precision, Precision::Amp);
    assert_eq!(c.memory_format, MemoryFormat::Nhwc);
    assert!(c.cudnn_benchmark);
    assert_eq!(c.loss_scale.growth_interval, 100);
    assert_eq!(c.loss_scale.backoff_factor, 0.5);
    let t: PrecisionConfig = toml::from_str("precision = \"tf32\"\nmemory_format = \"nchw\"\ncudnn_benchmark = false\n").unwrap();
    assert_eq!(t, PrecisionConfig::new(Precision::Tf32, MemoryFormat::Nchw).with_cudnn_benchmark(false));
    assert!(serde_json::from_str::<PrecisionConfig>(r#"{"precision":"bf17"}"#).is_err());
    assert_eq!("AMP".parse::<Precision>().unwrap(), Precision::Amp);
    assert_eq!("channels-last".parse::<MemoryFormat>().unwrap(), MemoryFormat::Nhwc);
    assert!("nhcw".parse::<MemoryFormat>().is_err());
}

#[test]
fn the_shim_flags_round_trip() {
    let _g = torch_lock(); // process-global libtorch flags
    let benchmark = cudnn_benchmark().unwrap();
    set_tf32(true).unwrap();
    assert_eq!(tf32_flags().unwrap(), (true, true));
    set_tf32(false).unwrap();
    assert_eq!(tf32_flags().unwrap(), (false, false));
    set_cudnn_benchmark(!benchmark).unwrap();
    assert_eq!(cudnn_benchmark().unwrap(), !benchmark);
    set_cudnn_benchmark(benchmark).unwrap();
    assert_eq!(cudnn_benchmark().unwrap(), benchmark);
    // The CUDA backend is linked (rpath.rs), not loaded at run time: whether
    // CUDA is reported depends on the machine only, and CPU work is
    // unaffected either way.
    let _ = tch::Cuda::is_available();
    let x = Tensor::ones([2, 2], (Kind::Float, Device::Cpu));
    assert_eq!(x.sum(Kind::Float).double_value(&[]), 4.0);
}
