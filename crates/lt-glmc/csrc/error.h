// Shared by the C shims (shim.cpp, dist.cpp): copies an error message into
// the caller's buffer, truncated and NUL-terminated, without throwing.
#pragma once

#include <cstddef>
#include <cstring>

namespace lt_glmc {

inline void write_error(const char* msg, char* err, std::size_t err_len) noexcept {
  if (err == nullptr || err_len == 0) {
    return;
  }
  std::size_t n = std::strlen(msg);
  if (n >= err_len) {
    n = err_len - 1;
  }
  std::memcpy(err, msg, n);
  err[n] = '\0';
}

}  // namespace lt_glmc
