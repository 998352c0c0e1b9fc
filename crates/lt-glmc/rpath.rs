// The build script of lt-train and lt-bench, and the rpath half of lt-glmc's
// (build.rs loads this file as a module and calls its `main`): the crates
// whose binaries and tests link libtorch. Each of them depends on torch-sys
// directly so that cargo hands it DEP_TCH_LIBTORCH_LIB.
//
// It embeds an rpath to the libtorch folder that torch-sys linked against, so
// lt-train, lt-bench and the tests run without LD_LIBRARY_PATH. On another
// machine, LD_LIBRARY_PATH (searched before RUNPATH) points them at that
// machine's torch 2.11 lib/ folder instead.
//
// It also keeps libtorch_cuda in the binaries: rustc links with
// --as-needed, and since no Rust symbol refers to libtorch_cuda directly the
// linker would drop it, leaving `tch::Cuda::is_available()` false on a GPU
// machine (tch-rs #329/#980). The pip wheel ships libtorch_cuda with its
// CUDA libraries, so the same binary runs on CPU here and on CUDA there.
pub fn main() {
    println!("cargo:rerun-if-env-changed=DEP_TCH_LIBTORCH_LIB");
    if let Ok(lib) = std::env::var("DEP_TCH_LIBTORCH_LIB") {
        println!("cargo:rustc-link-arg=-Wl,-rpath,{lib}");
        let cuda = std::path::Path::new(&lib).join("libtorch_cuda.so");
        if cuda.exists() {
            println!("cargo:rustc-link-arg=-Wl,--no-as-needed,-ltorch_cuda,--as-needed");
        }
    }
}
