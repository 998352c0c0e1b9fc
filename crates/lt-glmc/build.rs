// Embeds an rpath to the libtorch folder that torch-sys linked against, so
// lt-train, lt-bench and the tests run without LD_LIBRARY_PATH. On another
// machine, LD_LIBRARY_PATH (searched before RUNPATH) points them at that
// machine's torch 2.11 lib/ folder instead.
fn main() {
    println!("cargo:rerun-if-env-changed=DEP_TCH_LIBTORCH_LIB");
    if let Ok(lib) = std::env::var("DEP_TCH_LIBTORCH_LIB") {
        println!("cargo:rustc-link-arg=-Wl,-rpath,{lib}");
        // torch's own CUDA libraries sit beside it in the wheel (nvidia/*/lib);
        // libtorch_cuda finds them through its own rpath.
    }
}
