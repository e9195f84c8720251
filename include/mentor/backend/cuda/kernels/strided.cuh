#pragma once
// Strided views on the device: host-side coalescing of a view's geometry (size-1 dimensions
// dropped, dimensions that are contiguous in every operand merged) and a device-side indexer that
// turns a linear index into element offsets for each operand and walks the views (the one strided
// walker of the CUDA kernels). 32-bit index math is used whenever
// the view fits (GPU 64-bit division is emulated and several times slower).
#include <cuda_runtime.h>

#include <array>
#include <cstdint>

#include "mentor/backend/cuda/kernels/common.cuh"
#include "mentor/core/shape.hpp"

namespace mentor::cuda {

// Geometry of N operands sharing one iteration shape; dimension 0 is the outermost.
template <int N>
struct StridedGeometry {
  int rank = 0;
  int64_t numel = 0;
  int64_t sizes[kMaxRank] = {};
  int64_t strides[N][kMaxRank] = {};

  // Largest offset any operand reaches (strides are never negative in mentor).
  int64_t max_offset(int operand) const {
    int64_t off = 0;
    for (int d = 0; d < rank; ++d) off += (sizes[d] - 1) * strides[operand][d];
    return off;
  }
  bool fits_32bit() const {
    if (numel >= (int64_t{1} << 31)) return false;
    for (int a = 0; a < N; ++a)
      if (max_offset(a) >= (int64_t{1} << 31)) return false;
    return true;
  }
  bool inner_contiguous(int operand) const { return rank == 0 || strides[operand][rank - 1] == 1; }
};

// Drops size-1 dimensions and merges a dimension into the next-inner one where every operand's
// stride allows it (stride_outer == stride_inner * size_inner).
template <int N>
StridedGeometry<N> coalesce(const Shape& shape, const std::array<const Strides*, N>& strides) {
  StridedGeometry<N> g;
  g.numel = shape.numel();
  for (int d = 0; d < shape.rank(); ++d) {
    if (shape[d] == 1) continue;
    if (g.rank > 0) {
      int prev = g.rank - 1;
      bool mergeable = true;
      for (int a = 0; a < N; ++a)
        mergeable = mergeable && g.strides[a][prev] == (*strides[a])[d] * shape[d];
      if (mergeable) {
        g.sizes[prev] *= shape[d];
        for (int a = 0; a < N; ++a) g.strides[a][prev] = (*strides[a])[d];
        continue;
      }
    }
    g.sizes[g.rank] = shape[d];
    for (int a = 0; a < N; ++a) g.strides[a][g.rank] = (*strides[a])[d];
    ++g.rank;
  }
  return g;
}

// Device-side: linear index (row-major over sizes) -> element offset of each operand.
template <int N, class Index>
struct Indexer {
  int rank;
  Index sizes[kMaxRank];
  Index strides[N][kMaxRank];

  explicit Indexer(const StridedGeometry<N>& g) : rank(g.rank) {
    for (int d = 0; d < kMaxRank; ++d) {
      sizes[d] = d < g.rank ? static_cast<Index>(g.sizes[d]) : Index(1);
      for (int a = 0; a < N; ++a)
        strides[a][d] = d < g.rank ? static_cast<Index>(g.strides[a][d]) : Index(0);
    }
  }

  __device__ __forceinline__ void offsets(Index linear, Index (&out)[N]) const {
#pragma unroll
    for (int a = 0; a < N; ++a) out[a] = 0;
#pragma unroll
    for (int i = 0; i < kMaxRank; ++i) {
      const int d = rank - 1 - i;
      if (d < 0) break;
      const Index size = sizes[d];
      const Index index = linear % size;
      linear /= size;
#pragma unroll
      for (int a = 0; a < N; ++a) out[a] += index * strides[a][d];
    }
  }

  // The walk of every strided kernel: body(i, off) for each linear index i in [0, n) of this
  // thread's grid-stride loop, off the operands' offsets of i.
  template <class Body>
  __device__ __forceinline__ void for_each(Index n, Body body) const {
    for (Index i = blockIdx.x * Index(blockDim.x) + threadIdx.x; i < n;
         i += Index(gridDim.x) * blockDim.x) {
      Index off[N];
      offsets(i, off);
      body(i, off);
    }
  }
};

}  // namespace mentor::cuda
