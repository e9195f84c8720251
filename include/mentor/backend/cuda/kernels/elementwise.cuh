#pragma once
// Element-wise kernels: binary arithmetic (flat and broadcast-strided), tensor-scalar arithmetic,
// unary functions and their derivatives (the formulas of backend/pointwise_math.hpp, shared with
// the CPU). All arithmetic in float (acc type).
#include <cuda_runtime.h>

#include "mentor/backend/cuda/kernels/common.cuh"
#include "mentor/backend/cuda/kernels/strided.cuh"
#include "mentor/backend/launch/elementwise.hpp"
#include "mentor/backend/launch/unary.hpp"
#include "mentor/backend/pointwise_math.hpp"
#include "mentor/core/config.hpp"

namespace mentor::cuda::kernels {

template <BinaryOp Op>
__device__ __forceinline__ float apply_binary(float a, float b) {
  return math::apply_binary<Op, float>(a, b);
}

// The primitives of backend/pointwise_math.hpp's formulas on the device: CUDA's accurate float
// functions (expf, not __expf, for exp, sigmoid and gelu's derivative alike).
struct DeviceUnaryMath {
  MENTOR_HD MENTOR_INLINE static float exp(float x) { return expf(x); }
  MENTOR_HD MENTOR_INLINE static float exp_accurate(float x) { return expf(x); }
  MENTOR_HD MENTOR_INLINE static float log(float x) { return logf(x); }
  MENTOR_HD MENTOR_INLINE static float sqrt(float x) { return sqrtf(x); }
  MENTOR_HD MENTOR_INLINE static float tanh(float x) { return tanhf(x); }
  MENTOR_HD MENTOR_INLINE static float abs(float x) { return fabsf(x); }
  MENTOR_HD MENTOR_INLINE static float pow(float x, float p) { return powf(x, p); }
  MENTOR_HD MENTOR_INLINE static float erf(float x) { return erff(x); }
};

// out[i] = f(a[i], b[i]) (or f(a[i]) when b is null) over contiguous arrays; 16-byte packs when
// every pointer is 16-byte aligned (kVector), scalar otherwise.
template <class T, bool kVector, class F>
__global__ void map_kernel(const T* __restrict__ a, const T* __restrict__ b, T* __restrict__ out,
                           int64_t n, F f) {
  const int64_t tid = blockIdx.x * int64_t(blockDim.x) + threadIdx.x;
  const int64_t step = int64_t(gridDim.x) * blockDim.x;
  int64_t scalar_begin = 0;
  if constexpr (kVector) {
    constexpr int V = Pack16<T>::kSize;
    const int64_t packs = n / V;
    for (int64_t p = tid; p < packs; p += step) {
      Pack16<T> va = load16(a + p * V), vb, vo;
      if (b != nullptr) vb = load16(b + p * V);
#pragma unroll
      for (int j = 0; j < V; ++j)
        vo.elem[j] = from_acc<T>(f(to_acc(va.elem[j]), b != nullptr ? to_acc(vb.elem[j]) : 0.f));
      store16(out + p * V, vo);
    }
    scalar_begin = packs * V;
  }
  for (int64_t i = scalar_begin + tid; i < n; i += step)
    out[i] = from_acc<T>(f(to_acc(a[i]), b != nullptr ? to_acc(b[i]) : 0.f));
}

template <class T, class F>
void launch_map(const T* a, const T* b, T* out, int64_t n, F f, const char* name) {
  if (n <= 0) return;
  constexpr int kThreads = 256;
  const bool vector =
      is_aligned(a, 16) && is_aligned(out, 16) && (b == nullptr || is_aligned(b, 16));
  if (vector) {
    map_kernel<T, true>
        <<<grid_blocks(ceil_div(n, Pack16<T>::kSize), kThreads), kThreads, 0, stream()>>>(a, b, out,
                                                                                          n, f);
  } else {
    map_kernel<T, false><<<grid_blocks(n, kThreads), kThreads, 0, stream()>>>(a, b, out, n, f);
  }
  MENTOR_CUDA_CHECK_LAUNCH(name);
}

// out (contiguous, operand 2) = a (operand 0) op b (operand 1) over broadcast strided views.
template <BinaryOp Op, class T, class Index>
__global__ void binary_strided_kernel(const T* a, const T* b, T* out, Indexer<3, Index> indexer,
                                      Index n) {
  indexer.for_each(n, [&](Index, const Index(&off)[3]) {
    out[off[2]] = from_acc<T>(apply_binary<Op>(to_acc(a[off[0]]), to_acc(b[off[1]])));
  });
}

}  // namespace mentor::cuda::kernels
