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
//
// csrc/dist_nccl.cpp is c10d's NCCL process group (Backend::Nccl). It is
// compiled, into a library of its own with -DUSE_C10D_NCCL -DUSE_CUDA, only
// when every header it needs is found: the libtorch's ProcessGroupNCCL.hpp
// (a CUDA build of torch, with libtorch_cuda beside it), CUDA's runtime
// headers with crt/ and nv/target, and nccl.h. CUDA_INCLUDE and NCCL_INCLUDE
// name folders holding them (several, ':'-separated); otherwise they are
// looked for in the pip packages beside the torch wheel
// (site-packages/nvidia/*/include: cu13 and nccl come with torch, crt/
// with nvidia-cuda-crt and nv/ with nvidia-cuda-cccl, which tools/setup.sh
// installs), then in
// $CUDA_HOME/include and /usr/local/cuda/include. Then the crate links
// libtorch_cuda and libc10_cuda, where the symbols are, and gets
// `--cfg lt_glmc_nccl`. When something is missing the crate is built
// without it (a cargo warning says what and how to get it), and
// Backend::Nccl is a typed error naming the same. LT_GLMC_NCCL=0 leaves it
// out on purpose.

#[path = "rpath.rs"]
mod rpath;

use std::env;
use std::path::{Path, PathBuf};
use std::process::Command;

fn main() {
    rpath::main();
    compile_shim();
}

fn compile_shim() {
    println!("cargo:rerun-if-changed=csrc/shim.cpp");
    println!("cargo:rerun-if-changed=csrc/dist.cpp");
    println!("cargo:rerun-if-changed=csrc/dist.h");
    println!("cargo:rerun-if-changed=csrc/dist_nccl.cpp");
    println!("cargo:rerun-if-changed=csrc/error.h");
    println!("cargo:rerun-if-env-changed=LIBTORCH_INCLUDE");
    println!("cargo:rerun-if-env-changed=GLOO_INCLUDE");
    println!("cargo::rustc-check-cfg=cfg(lt_glmc_nccl)");
    let lib = env::var("DEP_TCH_LIBTORCH_LIB").ok().map(PathBuf::from);
    let root = match env::var("LIBTORCH_INCLUDE") {
        Ok(dir) => PathBuf::from(dir),
        Err(_) => lib
            .as_ref()
            .expect("torch-sys did not export DEP_TCH_LIBTORCH_LIB (is lt-glmc still a direct dependent of torch-sys?)")
            .join(".."),
    };
    let include = root.join("include");
    if !include.join("ATen").join("Context.h").exists() {
        panic!(
            "libtorch headers not found: no ATen/Context.h under {} (set LIBTORCH_INCLUDE to the folder holding include/)",
            include.display()
        );
    }
    let gloo = gloo_include();
    let abi = cxx11_abi();
    // The NCCL half first: its library then precedes the shim's and the
    // CUDA libraries on the link line.
    compile_nccl(&include, lib.as_deref(), &abi);
    let mut build = torch_build(&include, &abi);
    build.define("USE_C10D_GLOO", None).file("csrc/shim.cpp").file("csrc/dist.cpp");
    // Not /usr/include itself: the compiler searches it already, and naming
    // it with -I breaks libstdc++'s #include_next.
    if let Some(dir) = gloo {
        build.include(dir);
    }
    build.compile("lt_glmc_shim");
}

/// A C++17 build against libtorch's headers with torch-sys's own flags.
fn torch_build(include: &Path, abi: &str) -> cc::Build {
    let mut build = cc::Build::new();
    build
        .cpp(true)
        .pic(true)
        .std("c++17")
        .include(include)
        .include(include.join("torch/csrc/api/include"))
        .define("_GLIBCXX_USE_CXX11_ABI", abi)
        .define("GLOG_USE_GLOG_EXPORT", None)
        // libtorch's headers warn under -Wall -Wextra; the shim's own code
        // is small and reviewed by hand.
        .warnings(false);
    // c10's CUDA headers align to std::hardware_destructive_interference_size,
    // which GCC warns about on every include.
    build.flag_if_supported("-Wno-interference-size");
    build
}

/// csrc/dist_nccl.cpp when its headers are found (see the top of this
/// file), else a cargo warning and the reason for src/dist.rs's error.
fn compile_nccl(include: &Path, lib: Option<&Path>, abi: &str) {
    for var in ["CUDA_INCLUDE", "NCCL_INCLUDE", "CUDA_HOME", "LT_GLMC_NCCL"] {
        println!("cargo:rerun-if-env-changed={var}");
    }
    // The wheel's site-packages/nvidia: torch/lib/../.. (a libtorch archive has none).
    let nvidia = lib.and_then(|l| l.parent()).and_then(|t| t.parent()).map(|sp| sp.join("nvidia")).filter(|n| n.is_dir());
    match nccl_includes(include, lib, nvidia.as_deref()) {
        Ok(dirs) => {
            let mut build = torch_build(include, abi);
            build.define("USE_C10D_NCCL", None).define("USE_CUDA", None).file("csrc/dist_nccl.cpp");
            for dir in dirs {
                build.include(dir);
            }
            build.compile("lt_glmc_nccl");
            // Where ProcessGroupNCCL and c10's CUDA functions live (torch-sys
            // already puts their folder on the search path).
            println!("cargo:rustc-link-lib=dylib=torch_cuda");
            println!("cargo:rustc-link-lib=dylib=c10_cuda");
            println!("cargo:rustc-cfg=lt_glmc_nccl");
        }
        Err(why) => {
            let fix = if env::var("LT_GLMC_NCCL").as_deref() == Ok("0") {
                ""
            } else {
                ". Run tools/setup.sh (it installs the missing CUDA headers, nvidia-cuda-crt and nvidia-cuda-cccl, into \
                 the torch venv) and rebuild, or set CUDA_INCLUDE and NCCL_INCLUDE to folders holding them"
            };
            println!("cargo:warning=lt-glmc is built without NCCL (Backend::Nccl will be an error): {why}{fix}");
            println!("cargo:rustc-env=LT_GLMC_NO_NCCL_WHY={why}{fix}");
            // Installing the headers there (tools/setup.sh) reruns this script.
            if let Some(n) = &nvidia {
                println!("cargo:rerun-if-changed={}", n.display());
            }
        }
    }
}

/// The include folders dist_nccl.cpp needs, or what is missing.
fn nccl_includes(include: &Path, lib: Option<&Path>, nvidia: Option<&Path>) -> Result<Vec<PathBuf>, String> {
    if env::var("LT_GLMC_NCCL").as_deref() == Ok("0") {
        return Err("LT_GLMC_NCCL=0 leaves it out".into());
    }
    let header = include.join("torch/csrc/distributed/c10d/ProcessGroupNCCL.hpp");
    if !header.exists() {
        return Err(format!("this libtorch has no CUDA build of c10d (no {})", header.display()));
    }
    if let Some(lib) = lib {
        if !lib.join("libtorch_cuda.so").exists() {
            return Err(format!("this libtorch has no CUDA library (no libtorch_cuda.so in {})", lib.display()));
        }
    }
    let mut package_dirs: Vec<PathBuf> = match nvidia.and_then(|n| std::fs::read_dir(n).ok()) {
        Some(entries) => entries.filter_map(|e| e.ok()).map(|e| e.path().join("include")).filter(|p| p.is_dir()).collect(),
        None => Vec::new(),
    };
    package_dirs.sort();
    // cccl's own layout keeps nv/ one level down.
    let with_cccl: Vec<PathBuf> = package_dirs.iter().flat_map(|d| [d.clone(), d.join("cccl")]).collect();
    let system: Vec<PathBuf> = env::var("CUDA_HOME")
        .ok()
        .map(|h| PathBuf::from(h).join("include"))
        .into_iter()
        .chain([PathBuf::from("/usr/local/cuda/include"), PathBuf::from("/usr/include")])
        .collect();
    let split = |var: &str| -> Option<Vec<PathBuf>> { env::var(var).ok().map(|v| env::split_paths(&v).collect()) };
    let cuda_dirs = split("CUDA_INCLUDE").unwrap_or_else(|| with_cccl.iter().chain(&system).cloned().collect());
    let nccl_dirs = split("NCCL_INCLUDE").unwrap_or_else(|| package_dirs.iter().chain(&system).cloned().collect());
    // Where each list came from, for the message.
    let wheel = match nvidia {
        Some(n) => format!("{}/*/include (and cccl/), ", n.display()),
        None => String::new(),
    };
    let default_where = format!("{wheel}$CUDA_HOME/include, /usr/local/cuda/include, /usr/include");
    let cuda_where = env::var("CUDA_INCLUDE").map(|v| format!("CUDA_INCLUDE={v}")).unwrap_or_else(|_| default_where.clone());
    let nccl_where = env::var("NCCL_INCLUDE").map(|v| format!("NCCL_INCLUDE={v}")).unwrap_or(default_where);
    let mut found = Vec::new();
    let mut missing: Vec<(&str, &str)> = Vec::new();
    for (file, dirs, place) in [
        ("cuda_runtime_api.h", &cuda_dirs, &cuda_where),
        ("crt/host_config.h (pip: nvidia-cuda-crt)", &cuda_dirs, &cuda_where),
        ("nv/target (pip: nvidia-cuda-cccl)", &cuda_dirs, &cuda_where),
        ("nccl.h (pip: nvidia-nccl, which torch's CUDA wheels install)", &nccl_dirs, &nccl_where),
    ] {
        let name = file.split(' ').next().unwrap_or(file);
        match dirs.iter().find(|d| d.join(name).exists()) {
            Some(d) => {
                if d != Path::new("/usr/include") && !found.contains(d) {
                    found.push(d.clone());
                }
            }
            None => missing.push((file, place)),
        }
    }
    if !missing.is_empty() {
        let mut parts: Vec<String> = Vec::new();
        for place in [&cuda_where, &nccl_where] {
            let files: Vec<&str> = missing.iter().filter(|(_, p)| *p == place.as_str()).map(|(f, _)| *f).collect();
            let part = format!("{} not found in {place}", files.join(", "));
            if !files.is_empty() && !parts.contains(&part) {
                parts.push(part);
            }
        }
        return Err(parts.join("; "));
    }
    Ok(found)
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
