// lt-glmc's build script: the rpath and libtorch_cuda linking shared with
// lt-train and lt-bench (rpath.rs), and the C++ shim in csrc/ that reaches
// the `at::Context` switches tch does not expose (src/amp.rs).
//
// The shim is compiled against the headers of the libtorch torch-sys links:
// torch-sys exports its lib folder as DEP_TCH_LIBTORCH_LIB, and both a pip
// wheel (torch/lib, torch/include) and a libtorch archive (libtorch/lib,
// libtorch/include) keep the headers beside it. LIBTORCH_INCLUDE overrides
// that, as it does for torch-sys. The flags are torch-sys's own for its C++:
// C++17, GLOG_USE_GLOG_EXPORT, and the C++11 string ABI of the library.

#[path = "rpath.rs"]
mod rpath;

use std::env;
use std::path::PathBuf;
use std::process::Command;

fn main() {
    rpath::main();
    compile_shim();
}

fn compile_shim() {
    println!("cargo:rerun-if-changed=csrc/shim.cpp");
    println!("cargo:rerun-if-env-changed=LIBTORCH_INCLUDE");
    let root = match env::var("LIBTORCH_INCLUDE") {
        Ok(dir) => PathBuf::from(dir),
        Err(_) => {
            let lib = env::var("DEP_TCH_LIBTORCH_LIB")
                .expect("torch-sys did not export DEP_TCH_LIBTORCH_LIB (is lt-glmc still a direct dependent of torch-sys?)");
            PathBuf::from(lib).join("..")
        }
    };
    let include = root.join("include");
    if !include.join("ATen").join("Context.h").exists() {
        panic!(
            "libtorch headers not found: no ATen/Context.h under {} (set LIBTORCH_INCLUDE to the folder holding include/)",
            include.display()
        );
    }
    cc::Build::new()
        .cpp(true)
        .pic(true)
        .std("c++17")
        .include(&include)
        .include(include.join("torch/csrc/api/include"))
        .define("_GLIBCXX_USE_CXX11_ABI", cxx11_abi().as_str())
        .define("GLOG_USE_GLOG_EXPORT", None)
        // libtorch's headers warn under -Wall -Wextra; the shim's own code
        // is small and reviewed by hand.
        .warnings(false)
        .file("csrc/shim.cpp")
        .compile("lt_glmc_shim");
}

/// `_GLIBCXX_USE_CXX11_ABI` of the libtorch being linked: LIBTORCH_CXX11_ABI
/// if set; with LIBTORCH_USE_PYTORCH, what the python torch-sys asked
/// reports; else 1, torch-sys's default (every torch since 2.7 uses it).
fn cxx11_abi() -> String {
    println!("cargo:rerun-if-env-changed=LIBTORCH_CXX11_ABI");
    println!("cargo:rerun-if-env-changed=LIBTORCH_USE_PYTORCH");
    if let Ok(abi) = env::var("LIBTORCH_CXX11_ABI") {
        return abi;
    }
    if env::var_os("LIBTORCH_USE_PYTORCH").is_none() {
        return "1".into();
    }
    // The interpreter torch-sys 0.24 runs.
    let python = if env::var_os("VIRTUAL_ENV").is_some() { "python" } else { "python3" };
    let out = Command::new(python)
        .args(["-c", "import torch; print(int(torch._C._GLIBCXX_USE_CXX11_ABI))"])
        .output()
        .unwrap_or_else(|e| panic!("running {python} to read torch's C++ ABI: {e}"));
    let abi = String::from_utf8_lossy(&out.stdout).trim().to_owned();
    if !out.status.success() || !(abi == "0" || abi == "1") {
        panic!("{python} did not report torch._C._GLIBCXX_USE_CXX11_ABI: {}", String::from_utf8_lossy(&out.stderr));
    }
    abi
}
