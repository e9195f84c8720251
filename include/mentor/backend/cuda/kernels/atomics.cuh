#pragma once
// Scatter-adds with repeated targets: float accumulates with atomicAdd in place; bf16 goes through
// a float staging buffer (bf16 atomics would round every partial sum to 8 bits of mantissa) that is
// added into the destination at the end.
#include <cuda_runtime.h>

#include <type_traits>

#include "mentor/backend/cuda/kernels/common.cuh"
#include "mentor/backend/cuda/scratch.hpp"

namespace mentor::cuda {

// Where a scatter-add of element type T (device type) accumulates: the destination itself for
// float, a zeroed float buffer of the same element count for bf16. finish() adds the buffer into
// the destination (bf16); the buffer goes back to the allocator with the target.
template <class DT>
class ScatterTarget {
 public:
  ScatterTarget(DT* dst, int64_t count)
      : dst_(dst), count_(count), staging_(kStaged ? staging_bytes(count) : 0) {
    if constexpr (kStaged)
      MENTOR_CUDA_CHECK(cudaMemsetAsync(staging_.as<float>(), 0, staging_bytes(count), stream()));
  }

  float* accum() const {
    if constexpr (kStaged) {
      return staging_.as<float>();
    } else {
      return dst_;
    }
  }
  void finish();

 private:
  static constexpr bool kStaged = !std::is_same_v<DT, float>;
  static size_t staging_bytes(int64_t count) {
    return sizeof(float) * static_cast<size_t>(count > 0 ? count : 1);
  }
  DT* dst_;
  int64_t count_;
  Scratch staging_;
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
  if constexpr (kStaged) {
    if (count_ > 0) {
      add_float_into_kernel<DT>
          <<<grid_blocks(count_, 256), 256, 0, stream()>>>(staging_.as<float>(), dst_, count_);
      MENTOR_CUDA_CHECK_LAUNCH("add_float_into_kernel");
    }
  }
}

}  // namespace mentor::cuda
