// lt-glmc's C++ shim over c10d, PyTorch's distributed engine (the one DDP
// and torch.distributed use): a Gloo process group over a TCPStore or a
// FileStore, the collectives lt-glmc needs on tch tensors, c10d's
// broadcast_coalesced, and DDP's gradient synchronisation, c10d::Reducer
// (src/dist.rs). Nothing here is a home-made collective or bucketing: every
// call is c10d's own. The NCCL process group is made in dist_nccl.cpp (when
// the build has CUDA's and NCCL's headers); everything here then works on
// it too, c10d's ProcessGroup dispatching CUDA tensors to NCCL.
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
// returns LT_DIST_ERROR (1), or LT_DIST_TIMEOUT (2) when c10d, gloo or NCCL
// reported a timeout, or LT_DIST_UNAVAILABLE (3) when the backend cannot run
// here (dist.h), and writes the exception's message, NUL-terminated and
// cut to fit, into `err[0..err_len]`.

#include "dist.h"

#include <c10/util/Exception.h>
#include <torch/csrc/distributed/c10d/ProcessGroup.hpp>
#include <torch/csrc/distributed/c10d/ProcessGroupGloo.hpp>
#include <torch/csrc/distributed/c10d/Types.hpp>
#include <torch/csrc/distributed/c10d/comm.hpp>
#include <torch/csrc/distributed/c10d/logger.hpp>
#include <torch/csrc/distributed/c10d/reducer.hpp>

#include <ATen/ATen.h>

#include <algorithm>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <limits>
#include <memory>
#include <string>
#include <tuple>
#include <unordered_map>
#include <vector>

#ifndef USE_C10D_GLOO
#error "dist.cpp needs -DUSE_C10D_GLOO (build.rs sets it)"
#endif

namespace {

using lt_glmc::dist::file_store;
using lt_glmc::dist::Group;
using lt_glmc::dist::guarded;
using lt_glmc::dist::tcp_store;

// DDP's gradient synchronisation: c10d's Reducer and the Logger DDP
// attaches to it (the Reducer logs through it: its errors, and a set of
// unused parameters that changes between iterations).
struct GradReducer {
  std::shared_ptr<c10d::Reducer> reducer;
  std::shared_ptr<c10d::Logger> logger;
};

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
  // As torch.distributed.init_process_group(backend="gloo") builds it.
  auto group = c10::make_intrusive<c10d::ProcessGroup>(store, rank, world);
  group->setDefaultBackend(c10d::ProcessGroup::BackendType::GLOO);
  group->setBackend(c10::DeviceType::CPU, c10d::ProcessGroup::BackendType::GLOO, pg);
  return new Group{std::move(store), std::move(pg), std::move(group), timeout, /*abort_on_free=*/false};
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

std::vector<at::Tensor> tensor_list(at::Tensor** ts, std::size_t n) {
  TORCH_CHECK(ts != nullptr || n == 0, "null tensor list");
  std::vector<at::Tensor> out;
  out.reserve(n);
  for (std::size_t i = 0; i < n; ++i) {
    out.push_back(tensor_ref(ts[i]));
  }
  return out;
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
    TORCH_CHECK(out != nullptr, "null argument");
    auto store = tcp_store(host, port, is_server, prefix, world, timeout_ms);
    *out = make_group(std::move(store), rank, world, timeout_ms, ifnames, hostname);
  });
}

// A Gloo process group over a FileStore at `path` (one machine or a shared
// file system). The file must not hold a finished run's keys.
int lt_dist_new_gloo_file(const char* path, int rank, int world, std::int64_t timeout_ms, const char* ifnames,
                          const char* hostname, void** out, char* err, std::size_t err_len) noexcept {
  return guarded(err, err_len, [&] {
    TORCH_CHECK(out != nullptr, "null argument");
    auto store = file_store(path, world);
    *out = make_group(std::move(store), rank, world, timeout_ms, ifnames, hostname);
  });
}

// Frees a group of either backend. An NCCL group's communicators are
// aborted first (ProcessGroup::abort, ncclCommAbort: it returns at once),
// which is what ProcessGroupNCCL's destructor does for a group that
// destroy_process_group never shut down; a graceful shutdown
// (ncclCommFinalize) can wait on a peer that is gone.
void lt_dist_free(void* group) noexcept {
  auto* g = static_cast<Group*>(group);
  if (g == nullptr) {
    return;
  }
  if (g->abort_on_free) {
    try {
      g->group->abort();
    } catch (...) {
    }
  }
  try {
    delete g;
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

// In place: every rank's `tensors` become root's, with c10d's
// broadcast_coalesced (what DDP's _sync_module_states runs): the tensors
// flattened into buckets of at most `buffer_bytes` (one dtype each), one
// broadcast per bucket, at most two in flight, then copied back. Gloo
// bounds each transfer by the group's timeout. The tensors are detached
// views of the caller's, so parameters that require grad are written too.
int lt_dist_broadcast_coalesced(void* group, at::Tensor** tensors, std::size_t n, std::size_t buffer_bytes, int root,
                                char* err, std::size_t err_len) noexcept {
  return guarded(err, err_len, [&] {
    auto* g = static_cast<Group*>(group);
    check_group(g);
    TORCH_CHECK(n > 0, "no tensors to broadcast");
    std::vector<at::Tensor> ts;
    ts.reserve(n);
    for (auto& t : tensor_list(tensors, n)) {
      ts.push_back(t.detach());
    }
    c10d::broadcast_coalesced(g->group, ts, buffer_bytes, root);
  });
}

// A c10d::Reducer over `params` (leaf tensors that require grad, in the same
// order on every rank), set up as DistributedDataParallel's constructor
// sets it up (torch/nn/parallel/distributed.py, _ddp_init_helper):
// - verify_params_across_processes: every rank has as many parameters, of
//   the same sizes and strides, as rank 0 (else an error, not a hang or a
//   crash in a later collective);
// - buckets from compute_bucket_assignment_by_size over the parameters in
//   their order, the list reversed (the last parameters' gradients are
//   ready first). Without find_unused, DDP's first iteration reduces one
//   bucket of everything and Reducer::rebuild_buckets (called before each
//   prepare_for_backward, as DDP's forward does) rebuilds them once, after
//   the first backward, from the order in which gradients became ready,
//   capped at [first_bucket_bytes, bucket_bytes]; with find_unused the
//   buckets are [first_bucket_bytes, bucket_bytes, bucket_bytes, ...] from
//   the start and never rebuilt (DDP's rule);
// - gradient_as_bucket_view off, no comm hook: each gradient is copied into
//   its bucket multiplied by 1/world, the bucket is SUM-all-reduced, and the
//   result copied back into .grad (DDP's default);
// - parameter names "parameter <i>" (what TORCH_DISTRIBUTED_DEBUG reports).
int lt_dist_reducer_new(void* group, at::Tensor** params, std::size_t n, std::int64_t bucket_bytes,
                        std::int64_t first_bucket_bytes, bool find_unused, void** out, char* err,
                        std::size_t err_len) noexcept {
  return guarded(err, err_len, [&] {
    auto* g = static_cast<Group*>(group);
    check_group(g);
    TORCH_CHECK(out != nullptr, "null argument");
    TORCH_CHECK(n > 0, "no parameters");
    TORCH_CHECK(bucket_bytes >= 0 && first_bucket_bytes >= 0, "negative bucket cap");
    std::vector<at::Tensor> ps = tensor_list(params, n);
    for (std::size_t i = 0; i < n; ++i) {
      TORCH_CHECK(ps[i].is_leaf() && ps[i].requires_grad(), "parameter ", i,
                  " is not a leaf tensor that requires grad");
      TORCH_CHECK(!ps[i].is_sparse(), "parameter ", i, " is sparse");
    }
    c10d::verify_params_across_processes(g->group, ps, std::nullopt);
    std::vector<std::size_t> limits;
    if (find_unused) {
      limits = {static_cast<std::size_t>(first_bucket_bytes), static_cast<std::size_t>(bucket_bytes)};
    } else {
      limits = {std::numeric_limits<std::size_t>::max()};
    }
    std::vector<bool> sparse(n, false);
    auto assignment = c10d::compute_bucket_assignment_by_size(ps, limits, sparse);
    std::vector<std::vector<std::size_t>> buckets = std::get<0>(assignment);
    std::reverse(buckets.begin(), buckets.end());
    std::unordered_map<std::size_t, std::string> names;
    for (std::size_t i = 0; i < n; ++i) {
      names[i] = "parameter " + std::to_string(i);
    }
    auto reducer = std::make_shared<c10d::Reducer>(std::move(ps), std::move(buckets), g->group, std::move(sparse),
                                                   bucket_bytes, find_unused,
                                                   /*gradient_as_bucket_view=*/false, std::move(names),
                                                   first_bucket_bytes,
                                                   /*skip_all_reduce_unused_params=*/false,
                                                   /*use_python_reducer=*/false,
                                                   /*bucket_bytes_cap_list=*/std::vector<std::int64_t>{});
    auto logger = std::make_shared<c10d::Logger>(reducer);
    reducer->set_logger(logger);
    *out = new GradReducer{std::move(reducer), std::move(logger)};
  });
}

void lt_dist_reducer_free(void* reducer) noexcept {
  auto* r = static_cast<GradReducer*>(reducer);
  if (r == nullptr) {
    return;
  }
  // The Logger holds the Reducer; the Reducer's destructor removes its
  // autograd hooks from the parameters' gradient accumulators.
  try {
    r->logger.reset();
  } catch (...) {
  }
  try {
    r->reducer.reset();
  } catch (...) {
  }
  try {
    delete r;
  } catch (...) {
  }
}

// The number of elements of each bucket, in the order they are reduced:
// writes min(count, cap) of them to `out` and the count to `*count`.
int lt_dist_reducer_bucket_sizes(void* reducer, std::int64_t* out, std::size_t cap, std::size_t* count, char* err,
                                 std::size_t err_len) noexcept {
  return guarded(err, err_len, [&] {
    auto* r = static_cast<GradReducer*>(reducer);
    TORCH_CHECK(r != nullptr && r->reducer && count != nullptr, "null argument");
    auto buckets = r->reducer->get_grad_buckets(/*return_zero_tensors=*/false);
    *count = buckets.size();
    for (std::size_t i = 0; i < buckets.size() && i < cap; ++i) {
      out[i] = buckets[i].getBuffer().numel();
    }
  });
}

// What DistributedDataParallel does between a forward and its backward:
// Reducer::prepare_for_forward (iteration count, timers),
// Reducer::rebuild_buckets (DDP calls it before each forward; it is a no-op
// except once, after the first backward without find_unused, when it
// broadcasts rank 0's bucket order), then prepare_for_backward(outputs),
// which arms the autograd hooks and, with find_unused, marks the
// parameters the outputs' graph does not reach.
int lt_dist_reducer_prepare(void* reducer, at::Tensor** outputs, std::size_t n, char* err, std::size_t err_len) noexcept {
  return guarded(err, err_len, [&] {
    auto* r = static_cast<GradReducer*>(reducer);
    TORCH_CHECK(r != nullptr && r->reducer, "null reducer");
    std::vector<at::Tensor> outs = tensor_list(outputs, n);
    r->reducer->prepare_for_forward();
    r->reducer->rebuild_buckets();
    r->reducer->prepare_for_backward(outs);
  });
}

// loss.backward(), as tch's at_backward runs it (no retained graph), after
// lt_dist_reducer_prepare: the Reducer's hooks copy each gradient into its
// bucket as it is accumulated and launch the bucket's all-reduce as soon as
// the bucket is full, while the backward goes on; the engine's final
// callback waits for them and writes the averages into .grad. A failed
// all-reduce (a dead peer, a timeout) is rethrown here. Then
// Reducer::check_finalized: a backward that left a bucket unreduced (a
// parameter that got no gradient, without find_unused) is an error now,
// before the optimizer steps on unsynchronised gradients (DDP itself only
// notices at the next iteration).
int lt_dist_reducer_backward(void* reducer, at::Tensor* loss, char* err, std::size_t err_len) noexcept {
  return guarded(err, err_len, [&] {
    auto* r = static_cast<GradReducer*>(reducer);
    TORCH_CHECK(r != nullptr && r->reducer, "null reducer");
    tensor_ref(loss).backward();
    try {
      r->reducer->check_finalized();
    } catch (const c10::Error& e) {
      TORCH_CHECK(false,
                  "the backward did not reduce every gradient, so they differ across ranks (a parameter got no "
                  "gradient: make the reducer with find_unused). c10d: ",
                  e.what_without_backtrace());
    }
  });
}

}  // extern "C"
