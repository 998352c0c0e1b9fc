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
//
// csrc/dist.cpp (src/dist.rs) is c10d's Gloo process group: it also needs
// -DUSE_C10D_GLOO and gloo's own headers, which the torch wheel does not
// ship. Debian's libgloo-dev installs them in /usr/include/gloo (tools/
// setup.sh installs it); GLOO_INCLUDE names another folder holding gloo/.
// Only the headers are used: the symbols are libtorch_cpu's.

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
    println!("cargo:rerun-if-changed=csrc/dist.cpp");
    println!("cargo:rerun-if-changed=csrc/error.h");
    println!("cargo:rerun-if-env-changed=LIBTORCH_INCLUDE");
    println!("cargo:rerun-if-env-changed=GLOO_INCLUDE");
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
    let gloo = gloo_include();
    let mut build = cc::Build::new();
    build
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
        .define("USE_C10D_GLOO", None)
        .file("csrc/shim.cpp")
        .file("csrc/dist.cpp");
    // Not /usr/include itself: the compiler searches it already, and naming
    // it with -I breaks libstdc++'s #include_next.
    if let Some(dir) = gloo {
        build.include(dir);
    }
    build.compile("lt_glmc_shim");
}

/// The folder holding gloo/config.h: GLOO_INCLUDE, or None when it is the
/// compiler's own /usr/include. Panics with the fix when neither has it.
fn gloo_include() -> Option<PathBuf> {
    if let Ok(dir) = env::var("GLOO_INCLUDE") {
        let dir = PathBuf::from(dir);
        if !dir.join("gloo").join("config.h").exists() {
            panic!("GLOO_INCLUDE={}: no gloo/config.h there", dir.display());
        }
        return Some(dir);
    }
    if PathBuf::from("/usr/include/gloo/config.h").exists() {
        return None;
    }
    panic!(
        "gloo's headers not found (no /usr/include/gloo/config.h): lt-glmc's dist module compiles c10d's Gloo process group, \
         which needs them and the torch wheel does not ship them. Run tools/setup.sh, or `apt-get install libgloo-dev`, \
         or set GLOO_INCLUDE to a folder holding gloo/"
    );
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
