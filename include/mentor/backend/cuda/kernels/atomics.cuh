#pragma once
// Scatter-adds with repeated targets: float accumulates with atomicAdd in place; bf16 goes through
// a float staging buffer (bf16 atomics would round every partial sum to 8 bits of mantissa) that is
// added into the destination at the end.
#include <cuda_runtime.h>

#include <type_traits>

#include "mentor/backend/cuda/kernels/common.cuh"
#include "mentor/core/cuda_api.hpp"

namespace mentor::cuda {

// Where a scatter-add of element type T (device type) accumulates: the destination itself for
// float, a zeroed float buffer of the same element count for bf16. finish() adds the buffer into
// the destination (bf16) and releases it; the destructor releases it on error paths.
template <class DT>
class ScatterTarget {
 public:
  ScatterTarget(DT* dst, int64_t count) : dst_(dst), count_(count) {
    if constexpr (std::is_same_v<DT, float>) {
      accum_ = dst;
    } else {
      bytes_ = sizeof(float) * static_cast<size_t>(count > 0 ? count : 1);
      accum_ = static_cast<float*>(device_allocator().allocate(bytes_));
      MENTOR_CUDA_CHECK(cudaMemsetAsync(accum_, 0, bytes_, stream()));
    }
  }
  ~ScatterTarget() { release(); }
  ScatterTarget(const ScatterTarget&) = delete;
  ScatterTarget& operator=(const ScatterTarget&) = delete;

  float* accum() const { return accum_; }
  void finish();

 private:
  void release() {
    if constexpr (!std::is_same_v<DT, float>) {
      if (accum_ != nullptr) device_allocator().deallocate(accum_, bytes_);
      accum_ = nullptr;
    }
  }
  DT* dst_;
  int64_t count_;
  float* accum_ = nullptr;
  size_t bytes_ = 0;
};

template <class DT>
__global__ void add_float_into_kernel(const float* __restrict__ src, DT* __restrict__ dst,
                                      int64_t n) {
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < n;
       i += int64_t(gridDim.x) * blockDim.x)
    dst[i] = from_acc<DT>(to_acc(dst[i]) + src[i]);
}

template <class DT>
void ScatterTarget<DT>::finish() {
  if constexpr (!std::is_same_v<DT, float>) {
    if (count_ > 0) {
      add_float_into_kernel<DT>
          <<<grid_blocks(count_, 256), 256, 0, stream()>>>(accum_, dst_, count_);
      MENTOR_CUDA_CHECK_LAUNCH("add_float_into_kernel");
    }
    release();
  }
}

}  // namespace mentor::cuda
