//! `loader.photometric`: the recipe switch, and training with the
//! photometric stage on the device (here CPU tensors): the same weights as
//! with the stage on the loader's workers, and an exact mid-epoch resume.

mod util;

use std::path::Path;

use lt_glmc::tch::{Device, Tensor};
use lt_train::recipe::Recipe;
use lt_train::train::{self, Observer, Quiet, TrainOptions};
use lt_vision::photometric::Photometric;
use util::{tiny_recipe, torch_lock, write_synth};

const COUNTS: [usize; 4] = [64, 32, 16, 8];

/// The tiny recipe with a photo pipeline at 16 px and `loader.photometric`.
fn recipe(augment: &str, photometric: Option<&str>, epochs: usize) -> Recipe {
    let mut r = tiny_recipe(epochs);
    r.set("loader.augment", augment).unwrap();
    if let Some(p) = photometric {
        r.set("loader.photometric", &format!("\"{p}\"")).unwrap();
    }
    r
}

fn tensors(path: &Path) -> Vec<(String, Tensor)> {
    let mut v = Tensor::read_safetensors(path).unwrap();
    v.sort_by(|a, b| a.0.cmp(&b.0));
    v
}

fn assert_same_run(a: &Path, b: &Path) {
    for f in ["model.safetensors", "optimizer.safetensors"] {
        let (ta, tb) = (tensors(&a.join("checkpoint").join(f)), tensors(&b.join("checkpoint").join(f)));
        assert!(!ta.is_empty() && ta.len() == tb.len());
        for ((na, xa), (nb, xb)) in ta.iter().zip(&tb) {
            assert_eq!(na, nb);
            assert!(xa.equal(xb), "{f}: {na} differs between {} and {}", a.display(), b.display());
        }
    }
    let (ma, mb) = (lt_report::read_metrics(a).unwrap(), lt_report::read_metrics(b).unwrap());
    assert_eq!(ma.len(), mb.len());
    for (x, y) in ma.iter().zip(&mb) {
        assert_eq!((x.loss, x.loss_sup, x.loss_rb, x.loss_con), (y.loss, y.loss_sup, y.loss_rb, y.loss_con));
        assert_eq!(x.test.map(|t| t.top1), y.test.map(|t| t.top1));
    }
}

#[test]
fn the_switch_defaults_by_device_and_refuses_what_it_cannot_do() {
    // No libtorch state here, but "imagenet-randncls" reads as `randn` to
    // model_and_checkpoint.rs's scan of the test files.
    let _g = torch_lock();
    let imagenet = recipe(r#"{ kind = "imagenet", size = 16 }"#, None, 1);
    assert_eq!(imagenet.loader.photometric_on(true).unwrap(), Photometric::Device);
    assert_eq!(imagenet.loader.photometric_on(false).unwrap(), Photometric::Cpu);
    // Absent, it is not written into the saved recipe.
    assert!(!imagenet.to_toml_string().unwrap().contains("photometric"));
    // An explicit value wins, either way.
    let cpu = recipe(r#"{ kind = "imagenet", size = 16 }"#, Some("cpu"), 1);
    assert_eq!(cpu.loader.photometric_on(true).unwrap(), Photometric::Cpu);
    let dev = recipe(r#""imagenet-randncls""#, Some("device"), 1);
    assert_eq!(dev.loader.photometric_on(false).unwrap(), Photometric::Device);
    assert!(Recipe::from_toml_str(&dev.to_toml_string().unwrap()).unwrap().loader.photometric == Some(Photometric::Device));
    // cifar has no photometric stage: the default is cpu, "device" is refused.
    let cifar = tiny_recipe(1);
    assert_eq!(cifar.loader.photometric_on(true).unwrap(), Photometric::Cpu);
    let mut r = tiny_recipe(1);
    let e = r.set("loader.photometric", "\"device\"").unwrap_err().to_string();
    assert!(e.contains("loader.photometric") && e.contains("cifar"), "{e}");
    // More RandAugment ops than a view's record holds: refused when asked
    // for, the CPU when defaulted.
    let mut r = recipe(r#"{ kind = "randaugment", n = 24 }"#, None, 1);
    assert_eq!(r.loader.photometric_on(true).unwrap(), Photometric::Cpu);
    let e = r.set("loader.photometric", "\"device\"").unwrap_err().to_string();
    assert!(e.contains("loader.photometric") && e.contains("at most 20"), "{e}");
    assert!(r.set("loader.photometric", "\"gpu\"").is_err());
}

/// The photometric stage is exact, so where it runs changes no weight.
#[test]
fn device_and_cpu_photometric_train_the_same_weights() {
    let _g = torch_lock();
    let tmp = tempfile::tempdir().unwrap();
    let shards = tmp.path().join("shards");
    write_synth(&shards, &COUNTS, 4, 24, 3, 5);
    let aug = r#"{ kind = "imagenet", size = 16 }"#;
    let (a, b) = (tmp.path().join("cpu"), tmp.path().join("device"));
    train::train(&TrainOptions::new(&shards, &a, recipe(aug, Some("cpu"), 1), Device::Cpu), &mut Quiet).unwrap();
    train::train(&TrainOptions::new(&shards, &b, recipe(aug, Some("device"), 1), Device::Cpu), &mut Quiet).unwrap();
    assert_same_run(&a, &b);
}

/// Copies the run directory once its first mid-epoch checkpoint exists (as
/// a run killed right then would have left it).
struct Snapshot<'a> {
    run: &'a Path,
    to: &'a Path,
    taken: Option<u64>,
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        if e.file_type().unwrap().is_dir() {
            copy_dir(&e.path(), &to.join(e.file_name()));
        } else {
            std::fs::copy(e.path(), to.join(e.file_name())).unwrap();
        }
    }
}

impl Observer for Snapshot<'_> {
    fn step(&mut self, _loss: f64, _images: usize) {
        if self.taken.is_some() {
            return;
        }
        let Ok(text) = std::fs::read_to_string(self.run.join("checkpoint/state.json")) else { return };
        let v: serde_json::Value = serde_json::from_str(&text).unwrap();
        if let Some(at) = v["step_in_epoch"].as_u64().filter(|&s| s > 0).filter(|_| v["epoch"].as_u64() == Some(1)) {
            copy_dir(self.run, self.to);
            self.taken = Some(at);
        }
    }
}

/// Records are a function of (seed, epoch, step, slot): a run resumed in
/// the middle of an epoch with the stage on the device ends as the
/// uninterrupted run does.
#[test]
fn device_photometric_resumes_mid_epoch_exactly() {
    let _g = torch_lock();
    let tmp = tempfile::tempdir().unwrap();
    let shards = tmp.path().join("shards");
    write_synth(&shards, &COUNTS, 4, 24, 3, 6);
    let r = recipe(r#"{ kind = "imagenet-randncls", size = 16 }"#, Some("device"), 2);
    let (whole, run, cut) = (tmp.path().join("whole"), tmp.path().join("run"), tmp.path().join("cut"));
    train::train(&TrainOptions::new(&shards, &whole, r.clone(), Device::Cpu), &mut Quiet).unwrap();

    let mut o = TrainOptions::new(&shards, &run, r, Device::Cpu);
    o.checkpoint_every = Some(4);
    let mut snap = Snapshot { run: &run, to: &cut, taken: None };
    train::train(&o, &mut snap).unwrap();
    assert_eq!(snap.taken, Some(4), "the copy holds epoch 1's checkpoint at step 4");
    assert_same_run(&whole, &run);

    o.out = cut.clone();
    o.resume = true;
    let done = train::train(&o, &mut Quiet).unwrap();
    assert!(done.finished);
    assert_same_run(&whole, &cut);
}
