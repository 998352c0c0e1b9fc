// lt-glmc's C++ shim over c10d, PyTorch's distributed engine (the one DDP
// and torch.distributed use): a Gloo process group over a TCPStore or a
// FileStore, and the collectives lt-glmc needs on tch tensors (src/dist.rs).
// Nothing here is a home-made collective: every call is c10d's own.
//
// Compiled by build.rs with the `cc` crate against the headers of the
// libtorch torch-sys links, with -DUSE_C10D_GLOO and gloo's headers (Debian's
// libgloo-dev; the torch wheel ships c10d's headers and symbols but not
// gloo's headers). Only torch's own symbols are called: gloo's types appear
// here as opaque shared_ptr's, so the gloo library linked is torch's copy.
//
// Tensors cross as tch's `C_tensor*`, which is an `at::Tensor*` (torch-sys's
// libtch/torch_api.h: `typedef torch::Tensor *tensor;`). A tensor returned
// through an out-pointer is a `new at::Tensor` that tch's `Tensor::from_ptr`
// takes ownership of (and frees with `delete`, as torch-sys's at_free does).
//
// Every function is `extern "C"` and `noexcept`: a C++ exception never
// crosses into Rust. Each returns LT_DIST_OK (0) on success; on failure it
// returns LT_DIST_ERROR (1), or LT_DIST_TIMEOUT (2) when c10d or gloo
// reported a timeout, and writes the exception's message, NUL-terminated and
// cut to fit, into `err[0..err_len]`.

#include "error.h"

#include <c10/util/Exception.h>
#include <torch/csrc/distributed/c10d/FileStore.hpp>
#include <torch/csrc/distributed/c10d/PrefixStore.hpp>
#include <torch/csrc/distributed/c10d/ProcessGroupGloo.hpp>
#include <torch/csrc/distributed/c10d/TCPStore.hpp>
#include <torch/csrc/distributed/c10d/Types.hpp>
#include <torch/csrc/distributed/c10d/exception.h>

#include <ATen/ATen.h>

#include <algorithm>
#include <cctype>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <exception>
#include <memory>
#include <string>
#include <vector>

#ifndef USE_C10D_GLOO
#error "dist.cpp needs -DUSE_C10D_GLOO (build.rs sets it)"
#endif

namespace {

constexpr int LT_DIST_OK = 0;
constexpr int LT_DIST_ERROR = 1;
constexpr int LT_DIST_TIMEOUT = 2;

struct Group {
  c10::intrusive_ptr<c10d::Store> store;
  c10::intrusive_ptr<c10d::ProcessGroupGloo> pg;
  std::chrono::milliseconds timeout;
};

using lt_glmc::write_error;

// Whether a message reports a timeout: gloo's "Timed out waiting 2000ms for
// recv operation", c10d's "Operation timed out!", the stores' "Timeout
// waiting for key" / "wait timeout".
bool mentions_timeout(const char* msg) noexcept {
  try {
    std::string s(msg);
    std::transform(s.begin(), s.end(), s.begin(), [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
    return s.find("timed out") != std::string::npos || s.find("timeout") != std::string::npos;
  } catch (...) {
    return false;
  }
}

template <class F>
int guarded(char* err, std::size_t err_len, F&& f) noexcept {
  try {
    f();
    return LT_DIST_OK;
  } catch (const c10d::TimeoutError& e) {
    write_error(e.what_without_backtrace(), err, err_len);
    return LT_DIST_TIMEOUT;
  } catch (const c10::Error& e) {
    const char* msg = e.what_without_backtrace();
    write_error(msg, err, err_len);
    return mentions_timeout(msg) ? LT_DIST_TIMEOUT : LT_DIST_ERROR;
  } catch (const std::exception& e) {
    write_error(e.what(), err, err_len);
    return mentions_timeout(e.what()) ? LT_DIST_TIMEOUT : LT_DIST_ERROR;
  } catch (...) {
    write_error("unknown C++ exception", err, err_len);
  }
  return LT_DIST_ERROR;
}

// Gloo's transport devices: one per interface named in `ifnames`
// (comma-separated, as GLOO_SOCKET_IFNAME), else one bound to `hostname`,
// else c10d's default (this machine's hostname, or loopback if it does not
// resolve), as torch.distributed chooses them.
std::vector<std::shared_ptr<::gloo::transport::Device>> gloo_devices(const char* ifnames, const char* hostname) {
  std::vector<std::shared_ptr<::gloo::transport::Device>> devices;
  if (ifnames != nullptr && ifnames[0] != '\0') {
    std::string list(ifnames);
    std::size_t start = 0;
    while (start <= list.size()) {
      std::size_t end = list.find(',', start);
      if (end == std::string::npos) {
        end = list.size();
      }
      std::string name = list.substr(start, end - start);
      if (!name.empty()) {
        devices.push_back(c10d::ProcessGroupGloo::createDeviceForInterface(name));
      }
      start = end + 1;
    }
    TORCH_CHECK(!devices.empty(), "no interface named in '", list, "'");
  } else if (hostname != nullptr && hostname[0] != '\0') {
    devices.push_back(c10d::ProcessGroupGloo::createDeviceForHostname(hostname));
  } else {
    devices.push_back(c10d::ProcessGroupGloo::createDefaultDevice());
  }
  return devices;
}

Group* make_group(c10::intrusive_ptr<c10d::Store> store, int rank, int world, std::int64_t timeout_ms, const char* ifnames,
                  const char* hostname) {
  auto timeout = std::chrono::milliseconds(timeout_ms);
  store->setTimeout(timeout);
  auto opts = c10d::ProcessGroupGloo::Options::create(timeout);
  opts->devices = gloo_devices(ifnames, hostname);
  auto pg = c10::make_intrusive<c10d::ProcessGroupGloo>(store, rank, world, opts);
  return new Group{std::move(store), std::move(pg), timeout};
}

void check_group(const Group* g) {
  TORCH_CHECK(g != nullptr, "null process group");
}

at::Tensor& tensor_ref(at::Tensor* t) {
  TORCH_CHECK(t != nullptr && t->defined(), "undefined tensor");
  return *t;
}

// Waits for a collective, bounded by the group's timeout (gloo applies the
// same timeout to each transfer; whichever fires first reports it).
void wait(const c10::intrusive_ptr<c10d::Work>& work, const Group* g) {
  work->wait(g->timeout);
}

}  // namespace

extern "C" {

// A Gloo process group over a TCPStore at host:port. With `is_server` this
// process hosts the store (torchrun's rank 0; the others connect); without
// it every rank is a client (torchrun's agent store). `prefix`, if not
// empty, namespaces the keys (a PrefixStore). `ifnames` / `hostname` pick
// gloo's devices (see gloo_devices).
int lt_dist_new_gloo_tcp(const char* host, std::uint16_t port, bool is_server, const char* prefix, int rank, int world,
                         std::int64_t timeout_ms, const char* ifnames, const char* hostname, void** out, char* err,
                         std::size_t err_len) noexcept {
  return guarded(err, err_len, [&] {
    TORCH_CHECK(host != nullptr && out != nullptr, "null argument");
    c10d::TCPStoreOptions so;
    so.port = port;
    so.isServer = is_server;
    so.numWorkers = static_cast<std::size_t>(world);
    // As torch.distributed's TCPStore(wait_for_workers=True): each rank
    // checks in, and the host waits for all (so it outlives their joining).
    so.waitWorkers = true;
    so.timeout = std::chrono::milliseconds(timeout_ms);
    so.multiTenant = true;
    c10::intrusive_ptr<c10d::Store> store = c10::make_intrusive<c10d::TCPStore>(std::string(host), so);
    if (prefix != nullptr && prefix[0] != '\0') {
      store = c10::make_intrusive<c10d::PrefixStore>(std::string(prefix), store);
    }
    *out = make_group(std::move(store), rank, world, timeout_ms, ifnames, hostname);
  });
}

// A Gloo process group over a FileStore at `path` (one machine or a shared
// file system). The file must not hold a finished run's keys.
int lt_dist_new_gloo_file(const char* path, int rank, int world, std::int64_t timeout_ms, const char* ifnames,
                          const char* hostname, void** out, char* err, std::size_t err_len) noexcept {
  return guarded(err, err_len, [&] {
    TORCH_CHECK(path != nullptr && out != nullptr, "null argument");
    c10::intrusive_ptr<c10d::Store> store = c10::make_intrusive<c10d::FileStore>(std::string(path), world);
    *out = make_group(std::move(store), rank, world, timeout_ms, ifnames, hostname);
  });
}

void lt_dist_free(void* group) noexcept {
  try {
    delete static_cast<Group*>(group);
  } catch (...) {
    // A destructor that throws: nothing left to report to.
  }
}

// The timeout of the collectives that follow (gloo's transfers and the
// wait on each), e.g. shorter than the one the group was created with.
int lt_dist_set_timeout(void* group, std::int64_t timeout_ms, char* err, std::size_t err_len) noexcept {
  return guarded(err, err_len, [&] {
    auto* g = static_cast<Group*>(group);
    check_group(g);
    g->timeout = std::chrono::milliseconds(timeout_ms);
    g->pg->setTimeout(g->timeout);
  });
}

// In place: every rank's `tensor` becomes root's.
int lt_dist_broadcast(void* group, at::Tensor* tensor, int root, char* err, std::size_t err_len) noexcept {
  return guarded(err, err_len, [&] {
    auto* g = static_cast<Group*>(group);
    check_group(g);
    std::vector<at::Tensor> ts{tensor_ref(tensor)};
    c10d::BroadcastOptions opts;
    opts.rootRank = root;
    opts.rootTensor = 0;
    opts.timeout = g->timeout;
    wait(g->pg->broadcast(ts, opts), g);
  });
}

// In place: every rank's `tensor` becomes the sum over ranks.
int lt_dist_all_reduce_sum(void* group, at::Tensor* tensor, char* err, std::size_t err_len) noexcept {
  return guarded(err, err_len, [&] {
    auto* g = static_cast<Group*>(group);
    check_group(g);
    std::vector<at::Tensor> ts{tensor_ref(tensor)};
    c10d::AllreduceOptions opts;
    opts.reduceOp = c10d::ReduceOp::SUM;
    opts.timeout = g->timeout;
    wait(g->pg->allreduce(ts, opts), g);
  });
}

int lt_dist_barrier(void* group, char* err, std::size_t err_len) noexcept {
  return guarded(err, err_len, [&] {
    auto* g = static_cast<Group*>(group);
    check_group(g);
    c10d::BarrierOptions opts;
    opts.timeout = g->timeout;
    wait(g->pg->barrier(opts), g);
  });
}

// `*out` becomes a new tensor [world, ...tensor's shape]: row r is rank r's
// `tensor`.
int lt_dist_all_gather(void* group, at::Tensor* tensor, at::Tensor** out, char* err, std::size_t err_len) noexcept {
  return guarded(err, err_len, [&] {
    auto* g = static_cast<Group*>(group);
    check_group(g);
    TORCH_CHECK(out != nullptr, "null argument");
    at::Tensor& input = tensor_ref(tensor);
    std::vector<at::Tensor> rows;
    rows.reserve(static_cast<std::size_t>(g->pg->getSize()));
    for (int r = 0; r < g->pg->getSize(); ++r) {
      rows.push_back(at::empty_like(input, at::MemoryFormat::Contiguous));
    }
    std::vector<std::vector<at::Tensor>> outputs{rows};
    std::vector<at::Tensor> inputs{input};
    c10d::AllgatherOptions opts;
    opts.timeout = g->timeout;
    wait(g->pg->allgather(outputs, inputs, opts), g);
    *out = new at::Tensor(at::stack(outputs[0]));
  });
}

}  // extern "C"
