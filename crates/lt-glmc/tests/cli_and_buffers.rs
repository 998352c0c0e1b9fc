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
    let (code, err) = run(&[s, "--recipe", glmc_recipe.to_str().unwrap(), "--method", "ce", "--device", "cpu", "--threads", "1", "-q", "--out", out.to_str().unwrap()]);
    assert_eq!(code, Some(0), "{err}");
    let saved = lt_glmc::recipe::Recipe::load(&out.join("recipe.toml")).unwrap();
    assert_eq!((saved.train.method, saved.loader.views), (lt_glmc::recipe::Method::CrossEntropy, Some(1)));
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
    let heap: Vec<_> = Loader::try_new(src.clone(), Pipeline::by_name("cifar").unwrap(), cfg.clone()).unwrap().collect::<Result<_, _>>().unwrap();
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
