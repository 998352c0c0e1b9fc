// lt-glmc's NCCL process group: c10d's ProcessGroupNCCL over the same stores
// as the Gloo group (a TCPStore, torchrun's agent store, a FileStore),
// inside a c10d::ProcessGroup as torch.distributed.init_process_group(
// backend="nccl", device_id=...) builds it. The collectives,
// broadcast_coalesced and DDP's Reducer in dist.cpp then run on it
// unchanged: c10d's ProcessGroup hands CUDA tensors to NCCL.
//
// Compiled by build.rs into a library of its own, with -DUSE_C10D_NCCL
// -DUSE_CUDA and the CUDA and NCCL headers (the torch wheel's nvidia/*
// packages: cu13/include with nvidia-cuda-crt's crt/ and nvidia-cuda-cccl's
// nv/, nccl/include),
// only when it finds them; without them the crate is built without this
// file and src/dist.rs reports Backend::Nccl as unavailable. The symbols are
// libtorch_cuda's and libc10_cuda's (build.rs links both).

#include "dist.h"

#ifndef USE_C10D_NCCL
#error "dist_nccl.cpp needs -DUSE_C10D_NCCL -DUSE_CUDA (build.rs sets them when it finds CUDA's and NCCL's headers)"
#endif

#include <c10/core/Device.h>
#include <c10/cuda/CUDAFunctions.h>
#include <torch/csrc/distributed/c10d/ProcessGroupNCCL.hpp>

#include <chrono>
#include <cstdint>
#include <string>

namespace {

using lt_glmc::dist::file_store;
using lt_glmc::dist::Group;
using lt_glmc::dist::guarded;
using lt_glmc::dist::tcp_store;
using lt_glmc::dist::Unavailable;

// This rank's GPU: `requested` if not negative, else rank modulo the visible
// devices (ProcessGroupNCCL's own guess). Checked before any store is made,
// so a rank without a GPU fails at once instead of keeping its peers waiting.
c10::DeviceIndex cuda_device(int requested, int rank) {
  // 0 without a driver or a GPU (c10 catches CUDA's errors here).
  const int count = static_cast<int>(c10::cuda::device_count());
  if (count <= 0) {
    throw Unavailable(
        "no CUDA device is visible to this process (no GPU or driver, or CUDA_VISIBLE_DEVICES hides them): NCCL needs "
        "one CUDA device per rank; the gloo backend works on CPU");
  }
  const int index = requested >= 0 ? requested : rank % count;
  TORCH_CHECK(index < count, "CUDA device ", index, " was asked for this rank's NCCL communicator, but only ", count,
              " are visible");
  return static_cast<c10::DeviceIndex>(index);
}

// Every rank has reached the store before NCCL makes its communicator,
// whose set-up has no timeout of its own: a rank that never comes makes the
// others fail here, within the group's timeout (torch.distributed's
// store-based barrier does the same).
void store_barrier(const c10::intrusive_ptr<c10d::Store>& store, int world, std::chrono::milliseconds timeout) {
  const std::string key = "lt_glmc_nccl_join";
  const std::string done = key + "/all";
  if (store->add(key, 1) == world) {
    store->set(done, std::vector<std::uint8_t>{'1'});
  }
  store->wait({done}, timeout);
}

Group* make_nccl_group(c10::intrusive_ptr<c10d::Store> store, int rank, int world, std::int64_t timeout_ms,
                       c10::DeviceIndex index) {
  const auto timeout = std::chrono::milliseconds(timeout_ms);
  const c10::Device device(c10::DeviceType::CUDA, index);
  // torch.cuda.set_device(local_rank): this thread's current device, on
  // which NCCL and c10d make their streams and buffers.
  c10::cuda::set_device(index);
  store->setTimeout(timeout);
  store_barrier(store, world, timeout);
  auto opts = c10d::ProcessGroupNCCL::Options::create();
  // Bounds every collective (the watchdog's limit, and lt_dist's waits).
  opts->timeout = timeout;
  opts->group_name = "lt_glmc";
  auto nccl = c10::make_intrusive<c10d::ProcessGroupNCCL>(c10::make_intrusive<c10d::PrefixStore>("nccl", store), rank,
                                                          world, opts);
  nccl->setSequenceNumberForGroup();
  // As init_process_group(backend="nccl", device_id=device) builds it: the
  // device bound to the group (and so to the backend, by setBackend), NCCL
  // for CUDA tensors, then the communicator made now rather than at the
  // first collective.
  auto group = c10::make_intrusive<c10d::ProcessGroup>(store, rank, world);
  group->setBoundDeviceId(device);
  group->setDefaultBackend(c10d::ProcessGroup::BackendType::NCCL);
  group->setBackend(c10::DeviceType::CUDA, c10d::ProcessGroup::BackendType::NCCL, nccl);
  group->setGroupName("lt_glmc");
  nccl->eagerConnectSingleDevice(device);
  return new Group{std::move(store), std::move(nccl), std::move(group), timeout, /*abort_on_free=*/true};
}

}  // namespace

extern "C" {

// An NCCL process group over a TCPStore at host:port (see tcp_store in
// dist.h), on CUDA device `device` (negative: rank modulo the visible
// devices); `*device_out` is the device used. LT_DIST_UNAVAILABLE when no
// CUDA device is visible.
int lt_dist_new_nccl_tcp(const char* host, std::uint16_t port, bool is_server, const char* prefix, int rank, int world,
                         std::int64_t timeout_ms, int device, void** out, int* device_out, char* err,
                         std::size_t err_len) noexcept {
  return guarded(err, err_len, [&] {
    TORCH_CHECK(out != nullptr && device_out != nullptr, "null argument");
    const auto index = cuda_device(device, rank);
    auto store = tcp_store(host, port, is_server, prefix, world, timeout_ms);
    *out = make_nccl_group(std::move(store), rank, world, timeout_ms, index);
    *device_out = index;
  });
}

// An NCCL process group over a FileStore at `path`, as above.
int lt_dist_new_nccl_file(const char* path, int rank, int world, std::int64_t timeout_ms, int device, void** out,
                          int* device_out, char* err, std::size_t err_len) noexcept {
  return guarded(err, err_len, [&] {
    TORCH_CHECK(out != nullptr && device_out != nullptr, "null argument");
    const auto index = cuda_device(device, rank);
    auto store = file_store(path, world);
    *out = make_nccl_group(std::move(store), rank, world, timeout_ms, index);
    *device_out = index;
  });
}

}  // extern "C"
