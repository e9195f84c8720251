#pragma once
// Row-wise kernels share one launch shape: blocks of 256 threads, each row handled by a group of
// kGroup threads (32: a warp per row for short rows, 256: the whole block for long rows). The
// helpers here walk a row, reduce across such a group and launch the kernels.
#include <cuda_runtime.h>

#include <cfloat>

#include "mentor/backend/cuda/kernels/common.cuh"

namespace mentor::cuda {

constexpr int kRowBlockThreads = 256;

// Threads per row for a row of n elements.
inline int row_group_size(int64_t n) { return n <= 1024 ? 32 : kRowBlockThreads; }

// Online softmax statistics (running max m, Σ exp(x − m)); merging is associative. A state that
// saw only -inf has m = -inf, s = 0; NaNs end up in s (fmaxf skips them in m).
struct MaxSum {
  float m;
  float s;
};
__device__ __forceinline__ MaxSum max_sum_merge(MaxSum a, MaxSum b) {
  const float m = fmaxf(a.m, b.m);
  if (m == -INFINITY) return {m, 0.f};
  float s = 0.f;
  if (a.s != 0.f) s += a.s * expf(a.m - m);
  if (b.s != 0.f) s += b.s * expf(b.m - m);
  return {m, s};
}
// Adds one value to a running state.
__device__ __forceinline__ MaxSum max_sum_add(MaxSum a, float x) {
  if (x > a.m) {
    float s = a.s == 0.f ? 0.f : a.s * expf(a.m - x);
    return {x, s + 1.f};
  }
  if (a.m == -INFINITY) return a;  // x is -inf too (or NaN with nothing seen: handled below)
  return {a.m, a.s + expf(x - a.m)};
}

__device__ __forceinline__ MaxSum warp_max_sum(MaxSum v) {
#pragma unroll
  for (int offset = 16; offset > 0; offset >>= 1) {
    MaxSum other{__shfl_xor_sync(0xffffffffu, v.m, offset),
                 __shfl_xor_sync(0xffffffffu, v.s, offset)};
    v = max_sum_merge(v, other);
  }
  return v;
}

// Rows handled by the group this thread belongs to, its rank within the group, and the row
// statistics every row kernel computes: each member walks its share of the row (lane, lane +
// kGroup, ...), then the group reduces.
template <int kGroup>
struct RowGroup {
  static_assert(kGroup == 32 || kGroup == kRowBlockThreads, "row groups are a warp or a block");
  static constexpr int kRowsPerBlock = kRowBlockThreads / kGroup;
  __device__ static int lane() { return threadIdx.x % kGroup; }
  __device__ static int slot() { return threadIdx.x / kGroup; }
  // The row this group works on first, and the stride to its next one (grid-stride over rows).
  __device__ static int64_t first_row() { return int64_t(blockIdx.x) * kRowsPerBlock + slot(); }
  __device__ static int64_t row_step() { return int64_t(gridDim.x) * kRowsPerBlock; }

  // Reduces v over the group with warp_reduce (a reduction over one warp that every lane gets);
  // every member gets the result. `scratch` is a block-shared array of 32 entries (unused for warp
  // groups), `identity` the value of an empty share. Contains __syncthreads for block groups: call
  // from every thread.
  template <class V, class WarpReduce>
  __device__ static V reduce(V v, V* scratch, V identity, WarpReduce warp_reduce) {
    if constexpr (kGroup == 32) {
      return warp_reduce(v);
    } else {
      return block_reduce(v, scratch, identity, warp_reduce);
    }
  }
  // Sum over the group (reduce with +).
  template <class A>
  __device__ static A sum(A v, A* scratch) {
    if constexpr (kGroup == 32) {
      return warp_sum(v);
    } else {
      return block_sum(v, scratch);
    }
  }

  // Σ f(i) over the row's i in [0, n).
  template <class Index, class F>
  __device__ static float row_sum(Index n, float* scratch, F f) {
    float partial = 0.f;
    for (Index i = lane(); i < n; i += kGroup) partial += f(i);
    return sum(partial, scratch);
  }
  // The online softmax statistics of f(i) over the row's i in [0, n).
  template <class Index, class F>
  __device__ static MaxSum row_max_sum(Index n, MaxSum* scratch, F f) {
    MaxSum st{-INFINITY, 0.f};
    for (Index i = lane(); i < n; i += kGroup) st = max_sum_add(st, f(i));
    return max_sum(st, scratch);
  }
  // Merges partial softmax statistics over the group.
  __device__ static MaxSum max_sum(MaxSum v, MaxSum* scratch) {
    return reduce(v, scratch, MaxSum{-INFINITY, 0.f}, [](MaxSum x) { return warp_max_sum(x); });
  }
};

// Blocks to launch for `rows` rows (a grid-stride loop covers the rest).
template <int kGroup>
inline unsigned row_blocks(int64_t rows) {
  int64_t blocks = ceil_div(rows, RowGroup<kGroup>::kRowsPerBlock);
  int64_t cap = static_cast<int64_t>(multiprocessor_count()) * 32;
  return static_cast<unsigned>(blocks < cap ? (blocks < 1 ? 1 : blocks) : cap);
}

// The one launch shape of the row kernels, for `rows` rows of n elements: calls
// launch.template operator()<kGroup>(blocks), which launches its kernel for row groups of kGroup
// threads on `blocks` blocks of kRowBlockThreads.
template <class Launch>
void launch_rows(int64_t n, int64_t rows, Launch&& launch) {
  if (row_group_size(n) == 32) {
    launch.template operator()<32>(row_blocks<32>(rows));
  } else {
    launch.template operator()<kRowBlockThreads>(row_blocks<kRowBlockThreads>(rows));
  }
}

}  // namespace mentor::cuda

// Launches kernel<32> or kernel<256> (template taking the group size first) for `rows` rows of n.
#define MENTOR_LAUNCH_ROWS(kernel, n, rows, ...)                                              \
  do {                                                                                        \
    ::mentor::cuda::launch_rows(n, rows, [&]<int kLaunchGroup>(unsigned launch_blocks) {      \
      kernel<kLaunchGroup>                                                                    \
          <<<launch_blocks, ::mentor::cuda::kRowBlockThreads, 0, ::mentor::cuda::stream()>>>( \
              __VA_ARGS__);                                                                   \
    });                                                                                       \
    MENTOR_CUDA_CHECK_LAUNCH(#kernel);                                                        \
  } while (0)
