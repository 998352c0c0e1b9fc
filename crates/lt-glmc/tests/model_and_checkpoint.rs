//! Model shapes and sizes (against torchvision / the authors' ResNet-32),
//! checkpoint round trips, typed errors and the λ / box draw; and the check
//! that the tests of every binary serialise on libtorch's global state.

mod util;

use lt_core::rng::Rng;
use lt_glmc::checkpoint::{self, TrainState};
use lt_glmc::loss::{self, ClassStats, GlmcBatch, LossConfig};
use lt_glmc::mix::{CutBox, MixParams, Normalizer};
use lt_glmc::model::{Arch, GlmcNet, HeadSet, ModelConfig};
use lt_glmc::optim::{Sgd, SgdConfig};
use lt_glmc::tch::{nn::VarStore, Device, Kind, Tensor};
use lt_glmc::GlmcError;
use util::torch_lock;

const HEADS: [&str; 4] = ["head.", "head_cb.", "proj.", "pred."];

/// Parameter count and number of state_dict entries of the encoder alone.
fn encoder_size(arch: Arch) -> (i64, usize) {
    let vs = VarStore::new(Device::Cpu);
    let _net = GlmcNet::try_new(&vs.root(), ModelConfig::new(arch, 10)).unwrap();
    let vars = vs.variables();
    let enc: Vec<_> = vars.iter().filter(|(n, _)| n.starts_with("encoder.")).collect();
    let params = enc.iter().filter(|(_, t)| t.requires_grad()).map(|(_, t)| t.numel() as i64).sum();
    assert!(vars.keys().all(|n| n.starts_with("encoder.") || HEADS.iter().any(|h| n.starts_with(h))));
    (params, enc.len())
}

#[test]
fn encoder_sizes_match_the_pytorch_models() {
    let _g = torch_lock();
    // From tools/glmc_reference.py's ResNet32 and torchvision (fc.* removed).
    assert_eq!(encoder_size(Arch::ResNet32 { width: 16 }), (463_504, 155));
    assert_eq!(encoder_size(Arch::RESNET32), (7_383_616, 155));
    assert_eq!(encoder_size(Arch::ResNet50), (23_508_032, 265));
    assert_eq!(encoder_size(Arch::ResNeXt50_32x4d), (22_979_904, 265));
}

#[test]
fn forward_shapes() {
    let _g = torch_lock();
    let vs = VarStore::new(Device::Cpu);
    let net = GlmcNet::try_new(&vs.root(), ModelConfig::new(Arch::ResNet32 { width: 4 }, 7)).unwrap();
    let x = Tensor::randn([3, 3, 32, 32], (Kind::Float, Device::Cpu));
    let o = net.forward(&x, true).unwrap();
    assert_eq!(o.feat.size(), [3, 16]);
    assert_eq!(o.logits.size(), [3, 7]);
    assert_eq!(o.logits_cb.size(), [3, 7]);
    assert_eq!(o.z.as_ref().unwrap().size(), [3, 128]);
    assert_eq!(o.u.as_ref().unwrap().size(), [3, 128]);
    let o = net.forward_heads(&x, false, HeadSet { proj: false }).unwrap();
    assert!(o.z.is_none() && o.u.is_none());

    let vs = VarStore::new(Device::Cpu);
    let net = GlmcNet::try_new(&vs.root(), ModelConfig::new(Arch::ResNeXt50_32x4d, 5)).unwrap();
    let x = Tensor::randn([1, 3, 64, 64], (Kind::Float, Device::Cpu));
    let o = lt_glmc::tch::no_grad(|| net.forward(&x, false)).unwrap();
    assert_eq!(o.feat.size(), [1, 2048]);
    assert_eq!(o.z.unwrap().size(), [1, 256]);
    // Torchvision names, so ImageNet weights map one to one.
    assert!(vs.variables().contains_key("encoder.layer4.0.downsample.1.running_var"));
}

#[test]
fn bad_configs_are_typed_errors() {
    let _g = torch_lock();
    let vs = VarStore::new(Device::Cpu);
    let e = GlmcNet::try_new(&vs.root(), ModelConfig::new(Arch::ResNet32 { width: 3 }, 10)).unwrap_err();
    assert!(matches!(e, GlmcError::Setting { setting: "width", .. }), "{e}");
    assert!(Normalizer::try_new(&[0.5, 0.5], &[0.2], Device::Cpu, Kind::Float).is_err());
    assert!(Normalizer::try_new(&[0.5], &[0.0], Device::Cpu, Kind::Float).is_err());
}

fn tiny() -> (VarStore, GlmcNet) {
    lt_glmc::tch::manual_seed(1);
    let vs = VarStore::new(Device::Cpu);
    let net = GlmcNet::try_new(&vs.root(), ModelConfig::new(Arch::ResNet32 { width: 2 }, 3).with_proj_dim(4)).unwrap();
    (vs, net)
}

fn train_steps(vs: &VarStore, net: &GlmcNet, opt: &mut Sgd, rng: &mut Rng, steps: usize) -> f64 {
    let stats = ClassStats::try_new(&[50, 10, 2], 1.2, Device::Cpu, Kind::Float).unwrap();
    let mut last = 0.0;
    for s in 0..steps {
        lt_glmc::tch::manual_seed(100 + s as i64);
        let x = Tensor::randn([4, 3, 8, 8], (Kind::Float, Device::Cpu));
        let x2 = Tensor::randn([4, 3, 8, 8], (Kind::Float, Device::Cpu));
        let y_u = Tensor::from_slice(&[0i64, 0, 1, 2]);
        let y_w = Tensor::from_slice(&[2i64, 1, 2, 0]);
        let b = GlmcBatch { u1: &x, u2: &x2, w1: &x2, w2: &x, y_u: &y_u, y_w: &y_w };
        let m = MixParams::draw(rng, 1.0, 8, 8);
        let t = loss::glmc_loss(net, &b, &m, &stats, &LossConfig::default(), 0.9).unwrap();
        opt.zero_grad().unwrap();
        t.total.backward();
        opt.step().unwrap();
        last = t.check_finite(s as u64, 0).unwrap();
    }
    let _ = vs;
    last
}

#[test]
fn checkpoint_round_trip_resumes_exactly() {
    let _g = torch_lock();
    let dir = tempfile::tempdir().unwrap();
    let ck = dir.path().join("last");
    let cfg = SgdConfig { lr: 0.05, momentum: 0.9, weight_decay: 5e-3 };

    // Straight: 4 steps.
    let (vs_a, net_a) = tiny();
    let mut opt_a = Sgd::new(&vs_a, cfg);
    let mut rng_a = Rng::new(7);
    train_steps(&vs_a, &net_a, &mut opt_a, &mut rng_a, 2);
    let state = TrainState {
        epoch: 1,
        step: 2,
        step_in_epoch: 0,
        lr: opt_a.lr(),
        rng: rng_a.state(),
        loader: serde_json::json!({"epoch": 1, "cursor": 0}),
        extra: serde_json::Value::Null,
    };
    checkpoint::save(&ck, &vs_a, &opt_a, &state).unwrap();
    // Saving again replaces it atomically and leaves no temporary behind.
    checkpoint::save(&ck, &vs_a, &opt_a, &state).unwrap();
    let names: Vec<_> = std::fs::read_dir(dir.path()).unwrap().map(|e| e.unwrap().file_name()).collect();
    assert_eq!(names, vec![std::ffi::OsString::from("last")]);
    train_steps(&vs_a, &net_a, &mut opt_a, &mut rng_a, 2);

    // Resumed: a fresh model (different init) restored from the checkpoint.
    lt_glmc::tch::manual_seed(999);
    let mut vs_b = VarStore::new(Device::Cpu);
    let net_b = GlmcNet::try_new(&vs_b.root(), ModelConfig::new(Arch::ResNet32 { width: 2 }, 3).with_proj_dim(4)).unwrap();
    let mut opt_b = Sgd::new(&vs_b, cfg);
    let got = checkpoint::load(&ck, &mut vs_b, &mut opt_b).unwrap();
    assert_eq!(got, state);
    let mut rng_b = Rng::from_state(got.rng);
    train_steps(&vs_b, &net_b, &mut opt_b, &mut rng_b, 2);

    let (va, vb) = (vs_a.variables(), vs_b.variables());
    for (name, a) in &va {
        assert!(a.equal(&vb[name]), "{name} differs after resume");
    }
    assert_eq!(opt_a.buffers().len(), opt_b.buffers().len());
}

#[test]
fn missing_checkpoint_is_a_clear_error() {
    let _g = torch_lock();
    let dir = tempfile::tempdir().unwrap();
    let (mut vs, _net) = tiny();
    let mut opt = Sgd::new(&vs, SgdConfig::default());
    let e = checkpoint::load(&dir.path().join("nope"), &mut vs, &mut opt).unwrap_err();
    assert!(matches!(e, GlmcError::Checkpoint { .. }), "{e}");
}

#[test]
fn non_finite_loss_names_the_step() {
    let _g = torch_lock();
    let (_vs, net) = tiny();
    let stats = ClassStats::try_new(&[50, 10, 2], 1.2, Device::Cpu, Kind::Float).unwrap();
    let x = Tensor::full([4, 3, 8, 8], f64::NAN, (Kind::Float, Device::Cpu));
    let y = Tensor::from_slice(&[0i64, 1, 2, 0]);
    let b = GlmcBatch { u1: &x, u2: &x, w1: &x, w2: &x, y_u: &y, y_w: &y };
    let m = MixParams { lambda: 0.5, cut: CutBox::centred(8, 8, 0.5, 4, 4) };
    let t = loss::glmc_loss(&net, &b, &m, &stats, &LossConfig::default(), 1.0).unwrap();
    let e = t.check_finite(1234, 5).unwrap_err();
    assert!(matches!(e, GlmcError::NonFiniteLoss { step: 1234, epoch: 5, .. }));
    assert!(e.to_string().contains("step 1234"), "{e}");
}

#[test]
fn lambda_and_box_draws() {
    let mut rng = Rng::new(3);
    let draws: Vec<MixParams> = (0..2000).map(|_| MixParams::draw(&mut rng, 1.0, 32, 32)).collect();
    let mean = draws.iter().map(|m| m.lambda).sum::<f64>() / draws.len() as f64;
    assert!((mean - 0.5).abs() < 0.03, "Beta(1,1) mean {mean}");
    for m in &draws {
        let c = m.cut;
        assert!(0 <= c.y0 && c.y0 <= c.y1 && c.y1 <= 32 && 0 <= c.x0 && c.x0 <= c.x1 && c.x1 <= 32);
        // Never larger than ceil(32·sqrt(1 − λ)) per side.
        let side = (32.0 * (1.0 - m.lambda).sqrt()).ceil() as i64;
        assert!(c.y1 - c.y0 <= side && c.x1 - c.x0 <= side);
    }
    // Same seed, same draws.
    let mut r2 = Rng::new(3);
    assert_eq!(MixParams::draw(&mut r2, 1.0, 32, 32), draws[0]);
    // An unclipped box has exactly the side of the formula.
    let b = CutBox::centred(32, 32, 0.75, 16, 16);
    assert_eq!((b.y1 - b.y0, b.x1 - b.x0), (16, 16));
    // λ = 1 gives an empty box.
    assert_eq!(CutBox::centred(32, 32, 1.0, 5, 5).area(), 0);
}

#[test]
fn finetune_optimizer_sees_only_the_rebalanced_head() {
    let _g = torch_lock();
    let (vs, _net) = tiny();
    let opt = Sgd::with_prefixes(&vs, &["head_cb."], SgdConfig::default());
    let names: Vec<&str> = opt.param_names().collect();
    assert_eq!(names, vec!["head_cb.bias", "head_cb.weight"]);
}

/// The functions of a test file: name → body (top-level `fn`s, braces
/// matched; the files hold no unbalanced braces in strings).
fn functions(src: &str) -> Vec<(String, bool, String)> {
    let mut out = Vec::new();
    let mut pos = 0;
    while let Some(i) = src[pos..].find("\nfn ").map(|i| pos + i + 1) {
        let name: String = src[i + 3..].chars().take_while(|c| c.is_alphanumeric() || *c == '_').collect();
        let is_test = src[..i].trim_end().ends_with("#[test]");
        let open = i + src[i..].find('{').unwrap();
        let mut depth = 0usize;
        let mut end = open;
        for (k, c) in src[open..].char_indices() {
            match c {
                '{' => depth += 1,
                '}' => {
                    depth -= 1;
                    if depth == 0 {
                        end = open + k + 1;
                        break;
                    }
                }
                _ => {}
            }
        }
        out.push((name, is_test, src[open..end].to_string()));
        pos = end;
    }
    out
}

/// `checkpoint_round_trip_resumes_exactly` failed in the full
/// suite because other tests of its binary drew from libtorch's global
/// generator (model initialisation, `randn`) between its `manual_seed` and
/// its draws. In every test binary that sets global libtorch state, each
/// test that touches it (directly or through a helper of its file) must
/// hold `util::torch_lock()`.
#[test]
fn every_test_touching_global_torch_state_takes_the_lock() {
    // Calls that write libtorch's process-global state …
    const WRITES: [&str; 8] = [
        "manual_seed",
        "set_num_threads",
        "set_tf32",
        "precision_config",
        ".apply(Device",
        "train::train",
        "finetune::finetune",
        "train::setup",
    ];
    // … and those that read it (the default generator, the thread pool).
    const READS: [&str; 5] = ["randn", "Tensor::rand", "GlmcNet::try_new", "GlmcStepper", "VarStore::new"];
    // The libtorch crates' test directories: lt-glmc's own, lt-train's and
    // lt-bench's (which share this lock through their tests/util).
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let files: Vec<std::path::PathBuf> = ["lt-glmc", "lt-train", "lt-bench"]
        .iter()
        .flat_map(|c| std::fs::read_dir(root.join(c).join("tests")).unwrap().map(|e| e.unwrap().path()))
        .collect();
    assert!(files.iter().filter(|p| p.extension().is_some_and(|x| x == "rs")).count() >= 15, "{files:?}");
    let mut missing = Vec::new();
    for path in files {
        if path.extension().is_none_or(|x| x != "rs") {
            continue;
        }
        let src = std::fs::read_to_string(&path).unwrap();
        let fns = functions(&src);
        if !fns.iter().any(|(_, _, b)| WRITES.iter().any(|w| b.contains(w))) {
            continue; // nothing in this binary changes global state
        }
        // Functions touching global state, through same-file helpers too.
        let mut touching: Vec<&str> =
            fns.iter().filter(|(_, _, b)| WRITES.iter().chain(&READS).any(|w| b.contains(w))).map(|(n, _, _)| n.as_str()).collect();
        loop {
            let more: Vec<&str> = fns
                .iter()
                .filter(|(n, _, b)| !touching.contains(&n.as_str()) && touching.iter().any(|t| b.contains(&format!("{t}("))))
                .map(|(n, _, _)| n.as_str())
                .collect();
            if more.is_empty() {
                break;
            }
            touching.extend(more);
        }
        for (name, is_test, body) in &fns {
            if *is_test && touching.contains(&name.as_str()) && !body.contains("torch_lock()") {
                missing.push(format!("{}::{name}", path.file_name().unwrap().to_string_lossy()));
            }
        }
    }
    assert!(missing.is_empty(), "tests touching libtorch's global state without util::torch_lock(): {missing:?}");
}

fn state(epoch: usize, step: u64) -> TrainState {
    TrainState {
        epoch,
        step,
        step_in_epoch: 0,
        lr: 0.1,
        rng: [1, 2, 3, 4],
        loader: serde_json::Value::Null,
        extra: serde_json::Value::Null,
    }
}

/// A NaN in a BatchNorm running statistic (a buffer, not a
/// parameter: the loss can stay finite) is refused before anything is
/// written, and the message says what stays.
#[test]
fn non_finite_weights_or_buffers_are_not_saved() {
    let _g = torch_lock();
    let dir = tempfile::tempdir().unwrap();
    let ck = dir.path().join("checkpoint");
    let (vs, _net) = tiny();
    let opt = Sgd::new(&vs, SgdConfig::default());
    let bad_name = "encoder.layer3.2.bn1.running_var";
    let vars = vs.variables();
    let bad = &vars[bad_name];
    let good = bad.copy();

    // No checkpoint yet: refused, nothing written, and no claim that one is kept.
    let _ = lt_glmc::tch::no_grad(|| bad.shallow_clone().fill_(f64::NAN));
    let e = checkpoint::save(&ck, &vs, &opt, &state(1, 10)).unwrap_err();
    let msg = e.to_string();
    assert!(matches!(e, GlmcError::Checkpoint { .. }), "{msg}");
    assert!(msg.contains(bad_name) && msg.contains("non-finite") && msg.contains("epoch 1"), "{msg}");
    assert!(msg.contains("no checkpoint had been written yet") && !msg.contains("is kept"), "{msg}");
    assert!(!ck.exists());
    let names: Vec<_> = std::fs::read_dir(dir.path()).unwrap().collect();
    assert!(names.is_empty(), "{names:?}");

    // A good checkpoint, then an infinite parameter: the good one stays, byte for byte.
    lt_glmc::tch::no_grad(|| bad.shallow_clone().copy_(&good));
    checkpoint::save(&ck, &vs, &opt, &state(1, 10)).unwrap();
    let before: Vec<Vec<u8>> =
        [checkpoint::MODEL_FILE, checkpoint::STATE_FILE].iter().map(|f| std::fs::read(ck.join(f)).unwrap()).collect();
    let w = &vars["head.weight"];
    let _ = lt_glmc::tch::no_grad(|| w.shallow_clone().fill_(f64::INFINITY));
    let e = checkpoint::save(&ck, &vs, &opt, &state(2, 20)).unwrap_err().to_string();
    assert!(e.contains("head.weight") && e.contains("end of epoch 2"), "{e}");
    assert!(e.contains("the last good checkpoint (after epoch 1) is kept"), "{e}");
    let after: Vec<Vec<u8>> = [checkpoint::MODEL_FILE, checkpoint::STATE_FILE].iter().map(|f| std::fs::read(ck.join(f)).unwrap()).collect();
    assert!(before == after, "the good checkpoint changed");
    assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1, "a temporary was left behind");
}

/// What a killed writer leaves is repaired at start.
#[test]
fn recover_removes_dead_writers_temporaries_and_restores_a_moved_checkpoint() {
    let _g = torch_lock();
    let dir = tempfile::tempdir().unwrap();
    let ck = dir.path().join("checkpoint");
    let (vs, _net) = tiny();
    let opt = Sgd::new(&vs, SgdConfig::default());
    checkpoint::save(&ck, &vs, &opt, &state(3, 30)).unwrap();
    let dead = util::dead_pid();

    // (c) a write cut short: checkpoint.tmp-<dead pid>, half written.
    let tmp = dir.path().join(format!("checkpoint.tmp-{dead}"));
    std::fs::create_dir_all(&tmp).unwrap();
    std::fs::write(tmp.join(checkpoint::MODEL_FILE), b"half").unwrap();
    // One of a live process (this test's parent, say) is not touched.
    let live = dir.path().join(format!("checkpoint.tmp-{}", std::os::unix::process::parent_id()));
    std::fs::create_dir_all(&live).unwrap();
    let r = checkpoint::recover(&ck).unwrap();
    assert_eq!((r.removed, r.restored), (vec![tmp.clone()], None));
    assert!(!tmp.exists() && live.exists() && ck.join(checkpoint::STATE_FILE).is_file());
    std::fs::remove_dir_all(&live).unwrap();

    // (d) killed between the two renames: the good checkpoint sits in
    // checkpoint.old-<pid>, the new one in checkpoint.tmp-<pid>.
    let old = dir.path().join(format!("checkpoint.old-{dead}"));
    std::fs::rename(&ck, &old).unwrap();
    std::fs::create_dir_all(&tmp).unwrap();
    let mut vs2 = VarStore::new(Device::Cpu);
    let _net2 = GlmcNet::try_new(&vs2.root(), ModelConfig::new(Arch::ResNet32 { width: 2 }, 3).with_proj_dim(4)).unwrap();
    let mut opt2 = Sgd::new(&vs2, SgdConfig::default());
    assert!(checkpoint::load(&ck, &mut vs2, &mut opt2).is_err(), "nothing in place before recover");
    let r = checkpoint::recover(&ck).unwrap();
    assert_eq!((r.removed, r.restored), (vec![tmp.clone()], Some(old.clone())));
    assert_eq!(checkpoint::load(&ck, &mut vs2, &mut opt2).unwrap(), state(3, 30));
    let names: Vec<_> = std::fs::read_dir(dir.path()).unwrap().map(|e| e.unwrap().file_name()).collect();
    assert_eq!(names, vec![std::ffi::OsString::from("checkpoint")]);

    // Killed after the second rename: the leftover old copy goes.
    std::fs::create_dir_all(&old).unwrap();
    let r = checkpoint::recover(&ck).unwrap();
    assert_eq!((r.removed, r.restored), (vec![old.clone()], None));
    // Nothing to do: nothing happens (also without a checkpoint at all).
    assert_eq!(checkpoint::recover(&ck).unwrap(), checkpoint::Recovery::default());
    assert_eq!(checkpoint::recover(&dir.path().join("none/checkpoint")).unwrap(), checkpoint::Recovery::default());
}
