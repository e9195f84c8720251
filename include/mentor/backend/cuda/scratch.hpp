#pragma once
// The one device workspace of the CUDA launchers: a buffer from the caching allocator (partial
// sums, row statistics, sort keys, cuBLASLt and cuDNN workspaces) held for the scope of a launcher.
// Its release is stream-ordered (allocator.hpp): the block goes back to the current stream's cache
// and is handed out again only to work queued after the kernels that use it, so a launcher may
// return, or throw, while they still run. Zero bytes allocate nothing (as<U>() is null).
#include <cstddef>

#include "mentor/core/cuda_api.hpp"

namespace mentor::cuda {

class Scratch {
 public:
  explicit Scratch(size_t bytes) : bytes_(bytes), ptr_(device_allocator().allocate(bytes)) {}
  ~Scratch() { device_allocator().deallocate(ptr_, bytes_); }
  Scratch(const Scratch&) = delete;
  Scratch& operator=(const Scratch&) = delete;

  template <class U>
  U* as() const {
    return static_cast<U*>(ptr_);
  }

 private:
  size_t bytes_;
  void* ptr_;
};

}  // namespace mentor::cuda
