#pragma once
// Shared device-side helpers of the CUDA kernels: element type mapping (mentor::bf16 is stored as
// __nv_bfloat16, bit for bit), float conversion, warp/block reductions, vector loads and launch
// geometry. CUDA-only: included by src/cuda/*.cu.
#include <cuda_bf16.h>
#include <cuda_runtime.h>

#include <cstdint>
#include <type_traits>

#include "mentor/backend/cuda/check.hpp"
#include "mentor/backend/cuda/stream.hpp"
#include "mentor/core/bf16.hpp"

static_assert(sizeof(mentor::bf16) == sizeof(__nv_bfloat16) &&
                  alignof(mentor::bf16) == alignof(__nv_bfloat16),
              "mentor::bf16 must be layout-compatible with __nv_bfloat16");

namespace mentor::cuda {

// The current stream as a CUDA type (stream.hpp keeps it opaque for host code).
inline cudaStream_t stream() { return static_cast<cudaStream_t>(current_stream()); }

// Number of SMs of the current device (cached per thread; one device per process in mentor).
int multiprocessor_count();

// ---- element types ---------------------------------------------------------------------------
// The type a kernel sees for a mentor element type T.
template <class T>
struct device_type {
  using type = T;
};
template <>
struct device_type<bf16> {
  using type = __nv_bfloat16;
};
template <class T>
using device_t = typename device_type<T>::type;

template <class T>
inline device_t<T>* device_ptr(T* p) {
  return reinterpret_cast<device_t<T>*>(p);
}
template <class T>
inline const device_t<T>* device_ptr(const T* p) {
  return reinterpret_cast<const device_t<T>*>(p);
}

// Accumulation type on the device: float for float and bf16, double for double.
template <class T>
struct device_acc {
  using type = float;
};
template <>
struct device_acc<double> {
  using type = double;
};
template <class T>
using device_acc_t = typename device_acc<T>::type;

__device__ __forceinline__ float to_acc(float x) { return x; }
__device__ __forceinline__ double to_acc(double x) { return x; }
__device__ __forceinline__ float to_acc(__nv_bfloat16 x) { return __bfloat162float(x); }

// Back from the accumulation type (round to nearest even for bf16).
template <class T, class A>
__device__ __forceinline__ T from_acc(A x) {
  if constexpr (std::is_same_v<T, __nv_bfloat16>) {
    return __float2bfloat16_rn(static_cast<float>(x));
  } else {
    return static_cast<T>(x);
  }
}

// Rounds a float through T's precision (identity for float): the CPU op's "cast to T" steps.
template <class T>
__device__ __forceinline__ float round_to(float x) {
  if constexpr (std::is_same_v<T, __nv_bfloat16>) {
    return __bfloat162float(__float2bfloat16_rn(x));
  } else {
    return x;
  }
}

// e^x at the precision T needs: the fast hardware exponential (~2 ulp plus argument rounding,
// far below bf16's 3 significant digits) for bf16, the accurate expf for float.
template <class T>
__device__ __forceinline__ float exp_for(float x) {
  if constexpr (std::is_same_v<T, __nv_bfloat16>) {
    return __expf(x);
  } else {
    return expf(x);
  }
}

// ---- reductions --------------------------------------------------------------------------------
template <class A>
__device__ __forceinline__ A warp_sum(A v) {
#pragma unroll
  for (int offset = 16; offset > 0; offset >>= 1) v += __shfl_xor_sync(0xffffffffu, v, offset);
  return v;
}

// Reduces v over the whole block (blockDim.x a multiple of 32, at most 1024) with warp_reduce, a
// reduction over one warp that every lane gets; `identity` stands in for the warps a smaller block
// lacks. Every thread gets the result. `scratch` holds 32 values; the call synchronises the block
// twice.
template <class V, class WarpReduce>
__device__ __forceinline__ V block_reduce(V v, V* scratch, V identity, WarpReduce warp_reduce) {
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, warps = blockDim.x >> 5;
  v = warp_reduce(v);
  __syncthreads();  // scratch may still be read by a previous call
  if (lane == 0) scratch[warp] = v;
  __syncthreads();
  V total = lane < warps ? scratch[lane] : identity;
  return warp_reduce(total);
}
template <class A>
__device__ __forceinline__ A block_sum(A v, A* scratch) {
  return block_reduce(v, scratch, A(0), [](A x) { return warp_sum(x); });
}

// ---- vector access ---------------------------------------------------------------------------
// Eight bf16 or four floats moved by one 16-byte load/store (the pointer must be 16-byte aligned).
template <class T>
struct alignas(16) Pack16 {
  static constexpr int kSize = 16 / sizeof(T);
  T elem[kSize];
};

template <class T>
__device__ __forceinline__ Pack16<T> load16(const T* p) {
  return *reinterpret_cast<const Pack16<T>*>(p);
}
template <class T>
__device__ __forceinline__ void store16(T* p, const Pack16<T>& v) {
  *reinterpret_cast<Pack16<T>*>(p) = v;
}

inline bool is_aligned(const void* p, size_t bytes) {
  return reinterpret_cast<uintptr_t>(p) % bytes == 0;
}

// ---- launch geometry -------------------------------------------------------------------------
inline int64_t ceil_div(int64_t a, int64_t b) { return (a + b - 1) / b; }

// Blocks for a grid-stride loop over n items: enough to fill the device a few times over, never
// more than one per `threads` items.
inline unsigned grid_blocks(int64_t n, int threads, int waves = 8) {
  int64_t needed = ceil_div(n, threads);
  int64_t cap = static_cast<int64_t>(multiprocessor_count()) * waves;
  int64_t blocks = needed < cap ? needed : cap;
  return static_cast<unsigned>(blocks < 1 ? 1 : blocks);
}

// Largest power of two (<= 16) that divides the address: the widest safe vector access.
inline int pointer_alignment(const void* p) {
  uintptr_t a = reinterpret_cast<uintptr_t>(p);
  int align = 16;
  while (align > 1 && a % static_cast<uintptr_t>(align) != 0) align >>= 1;
  return align;
}

}  // namespace mentor::cuda
