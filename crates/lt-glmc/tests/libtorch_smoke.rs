//! Proves the libtorch path end to end: the test binary finds libtorch through
//! the rpath (no LD_LIBRARY_PATH) and runs real tensor ops.
use lt_glmc::tch::{Device, Kind, Tensor};

#[test]
fn matmul_and_autograd_run_on_cpu() {
    let a = Tensor::from_slice(&[1.0f32, 2.0, 3.0, 4.0]).reshape([2, 2]);
    let b = Tensor::from_slice(&[5.0f32, 6.0, 7.0, 8.0]).reshape([2, 2]);
    let c = a.matmul(&b);
    let got: Vec<f32> = Vec::<f32>::try_from(c.flatten(0, -1)).unwrap();
    assert_eq!(got, vec![19.0, 22.0, 43.0, 50.0]);

    let x = Tensor::from_slice(&[3.0f64]).set_requires_grad(true);
    let y = (&x * &x * 2.0).sum(Kind::Double);
    y.backward();
    assert_eq!(x.grad().double_value(&[0]), 12.0);
    assert_eq!(Device::Cpu, c.device());
}

#[test]
fn runs_without_ld_library_path() {
    // The binary was started by cargo; libtorch must have come from the rpath.
    let exe = std::env::current_exe().unwrap();
    let out = std::process::Command::new("readelf").arg("-d").arg(&exe).output();
    if let Ok(out) = out {
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(text.contains("RUNPATH") || text.contains("RPATH"), "no rpath in {exe:?}:\n{text}");
        assert!(text.contains("torch/lib"), "rpath does not name torch/lib:\n{text}");
        // --as-needed must not drop libtorch_cuda (else CUDA is invisible on a GPU machine).
        let runpath = text.lines().find(|l| l.contains("RUNPATH") || l.contains("RPATH")).unwrap();
        let dir = runpath.rsplit('[').next().unwrap().trim_end_matches(']');
        if std::path::Path::new(dir).join("libtorch_cuda.so").exists() {
            assert!(text.contains("[libtorch_cuda.so]"), "libtorch_cuda.so is not NEEDED:\n{text}");
        }
    }
}
