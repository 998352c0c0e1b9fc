// lt-glmc's C++ shim over libtorch: the process-global switches of
// `at::globalContext()` that tch 0.24 does not expose (see src/amp.rs).
//
// Compiled by build.rs with the `cc` crate against the headers of the same
// libtorch that torch-sys links, so every call below is checked by the C++
// compiler and resolved by the linker: a libtorch upgrade that changes one of
// them fails the build instead of calling the wrong symbol.
//
// Every function is `extern "C"` and `noexcept`: a C++ exception never
// crosses into Rust. Each returns 0 on success; on failure it returns 1 and
// writes the exception's message, NUL-terminated and cut to fit, into
// `err[0..err_len]`. Results come back through out-pointers.

#include "error.h"

#include <ATen/Context.h>
#include <c10/util/Exception.h>

#include <cstddef>
#include <cstring>
#include <exception>

namespace {

using lt_glmc::write_error;

template <class F>
int guarded(char* err, std::size_t err_len, F&& f) noexcept {
  try {
    f();
    return 0;
  } catch (const c10::Error& e) {
    write_error(e.what_without_backtrace(), err, err_len);
  } catch (const std::exception& e) {
    write_error(e.what(), err, err_len);
  } catch (...) {
    write_error("unknown C++ exception", err, err_len);
  }
  return 1;
}

}  // namespace

extern "C" {

// torch.backends.cuda.matmul.allow_tf32
int lt_glmc_set_allow_tf32_cublas(bool on, char* err, std::size_t err_len) noexcept {
  return guarded(err, err_len, [&] { at::globalContext().setAllowTF32CuBLAS(on); });
}

int lt_glmc_allow_tf32_cublas(bool* out, char* err, std::size_t err_len) noexcept {
  return guarded(err, err_len, [&] { *out = at::globalContext().allowTF32CuBLAS(); });
}

// torch.backends.cudnn.allow_tf32
int lt_glmc_set_allow_tf32_cudnn(bool on, char* err, std::size_t err_len) noexcept {
  return guarded(err, err_len, [&] { at::globalContext().setAllowTF32CuDNN(on); });
}

int lt_glmc_allow_tf32_cudnn(bool* out, char* err, std::size_t err_len) noexcept {
  return guarded(err, err_len, [&] { *out = at::globalContext().allowTF32CuDNN(); });
}

// torch.backends.cudnn.benchmark
int lt_glmc_set_cudnn_benchmark(bool on, char* err, std::size_t err_len) noexcept {
  return guarded(err, err_len, [&] { at::globalContext().setBenchmarkCuDNN(on); });
}

int lt_glmc_cudnn_benchmark(bool* out, char* err, std::size_t err_len) noexcept {
  return guarded(err, err_len, [&] { *out = at::globalContext().benchmarkCuDNN(); });
}

}  // extern "C"
