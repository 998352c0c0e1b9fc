// What the two halves of lt-glmc's c10d shim share: dist.cpp (Gloo, the
// collectives, broadcast_coalesced, the Reducer) and dist_nccl.cpp (NCCL's
// process group, compiled only when build.rs finds CUDA's and NCCL's
// headers). Everything here is inline, so neither half needs the other's
// object file: the NCCL half is its own static library.
#pragma once

#include "error.h"

#include <c10/util/Exception.h>
#include <torch/csrc/distributed/c10d/Backend.hpp>
#include <torch/csrc/distributed/c10d/FileStore.hpp>
#include <torch/csrc/distributed/c10d/PrefixStore.hpp>
#include <torch/csrc/distributed/c10d/ProcessGroup.hpp>
#include <torch/csrc/distributed/c10d/Store.hpp>
#include <torch/csrc/distributed/c10d/TCPStore.hpp>
#include <torch/csrc/distributed/c10d/exception.h>

#include <algorithm>
#include <cctype>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <exception>
#include <stdexcept>
#include <string>
#include <utility>

namespace lt_glmc::dist {

// The codes every shim function returns (src/dist.rs reads them).
constexpr int LT_DIST_OK = 0;
constexpr int LT_DIST_ERROR = 1;
constexpr int LT_DIST_TIMEOUT = 2;
// The backend cannot run in this process (NCCL with no CUDA device visible).
constexpr int LT_DIST_UNAVAILABLE = 3;

// Thrown for LT_DIST_UNAVAILABLE.
struct Unavailable : std::runtime_error {
  using std::runtime_error::runtime_error;
};

// `pg` is the backend the collectives call (c10d's ProcessGroupGloo or
// ProcessGroupNCCL); `group` is the c10d::ProcessGroup that dispatches to it
// by the tensors' device (what torch.distributed's ProcessGroup object is,
// and what c10d::Reducer and broadcast_coalesced take). Both share one
// backend, so one set_timeout applies to both.
struct Group {
  c10::intrusive_ptr<c10d::Store> store;
  c10::intrusive_ptr<c10d::Backend> pg;
  c10::intrusive_ptr<c10d::ProcessGroup> group;
  std::chrono::milliseconds timeout;
  // NCCL: abort the communicators when the group is freed (see lt_dist_free).
  bool abort_on_free = false;
};

// Whether a message reports a timeout: gloo's "Timed out waiting 2000ms for
// recv operation", c10d's "Operation timed out!", NCCL's "timed out in
// blocking wait", the stores' "Timeout waiting for key" / "wait timeout".
inline bool mentions_timeout(const char* msg) noexcept {
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
  } catch (const Unavailable& e) {
    write_error(e.what(), err, err_len);
    return LT_DIST_UNAVAILABLE;
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

// A TCPStore at host:port. With `is_server` this process hosts the store
// (torchrun's rank 0; the others connect); without it every rank is a
// client (torchrun's agent store). `prefix`, if not empty, namespaces the
// keys (a PrefixStore).
inline c10::intrusive_ptr<c10d::Store> tcp_store(const char* host, std::uint16_t port, bool is_server, const char* prefix,
                                                 int world, std::int64_t timeout_ms) {
  TORCH_CHECK(host != nullptr, "null host");
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
  return store;
}

// A FileStore at `path` (one machine or a shared file system).
inline c10::intrusive_ptr<c10d::Store> file_store(const char* path, int world) {
  TORCH_CHECK(path != nullptr, "null store path");
  return c10::make_intrusive<c10d::FileStore>(std::string(path), world);
}

}  // namespace lt_glmc::dist
