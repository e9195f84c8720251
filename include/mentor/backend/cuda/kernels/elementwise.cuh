#pragma once
// Element-wise kernels: binary arithmetic (flat and broadcast-strided), tensor-scalar arithmetic,
// unary functions and their derivatives. All arithmetic in float (acc type), mirroring the CPU
// formulas of ops/unary.hpp and ops/elementwise.hpp.
#include <cuda_runtime.h>

#include "mentor/backend/cuda/kernels/common.cuh"
#include "mentor/backend/cuda/kernels/strided.cuh"
#include "mentor/backend/launch/elementwise.hpp"
#include "mentor/backend/launch/unary.hpp"

namespace mentor::cuda::kernels {

template <BinaryOp Op>
__device__ __forceinline__ float apply_binary(float a, float b) {
  if constexpr (Op == BinaryOp::Add)
    return a + b;
  else if constexpr (Op == BinaryOp::Sub)
    return a - b;
  else if constexpr (Op == BinaryOp::Mul)
    return a * b;
  else
    return a / b;
}

__device__ __forceinline__ float sigmoid(float x) { return 1.0f / (1.0f + expf(-x)); }

// f(x) in float, the formulas of cpu::unary_value.
template <UnaryOp Op>
__device__ __forceinline__ float unary_value(float x, float p) {
  if constexpr (Op == UnaryOp::Exp)
    return expf(x);
  else if constexpr (Op == UnaryOp::Log)
    return logf(x);
  else if constexpr (Op == UnaryOp::Sqrt)
    return sqrtf(x);
  else if constexpr (Op == UnaryOp::Rsqrt)
    return 1.0f / sqrtf(x);
  else if constexpr (Op == UnaryOp::Tanh)
    return tanhf(x);
  else if constexpr (Op == UnaryOp::Sigmoid)
    return sigmoid(x);
  else if constexpr (Op == UnaryOp::Silu)
    return x * sigmoid(x);
  else if constexpr (Op == UnaryOp::Relu)
    return x > 0.f ? x : 0.f;
  else if constexpr (Op == UnaryOp::Abs)
    return fabsf(x);
  else if constexpr (Op == UnaryOp::Square)
    return x * x;
  else if constexpr (Op == UnaryOp::Pow)
    return powf(x, p);
  else if constexpr (Op == UnaryOp::Gelu)
    return 0.5f * x * (1.0f + erff(x * 0.70710678118654752440f));
  else if constexpr (Op == UnaryOp::GeluTanh) {
    constexpr float kAlpha = 0.7978845608028654f;
    return 0.5f * x * (1.0f + tanhf(kAlpha * (x + 0.044715f * x * x * x)));
  } else {
    static_assert(Op == UnaryOp::QuickGelu);
    return x * sigmoid(1.702f * x);
  }
}

// f'(x) in float, the formulas of cpu::unary_derivative.
template <UnaryOp Op>
__device__ __forceinline__ float unary_derivative(float x, float p) {
  if constexpr (Op == UnaryOp::Exp)
    return expf(x);
  else if constexpr (Op == UnaryOp::Log)
    return 1.0f / x;
  else if constexpr (Op == UnaryOp::Sqrt)
    return 0.5f / sqrtf(x);
  else if constexpr (Op == UnaryOp::Rsqrt)
    return -0.5f / (x * sqrtf(x));
  else if constexpr (Op == UnaryOp::Tanh) {
    float t = tanhf(x);
    return 1.0f - t * t;
  } else if constexpr (Op == UnaryOp::Sigmoid) {
    float s = sigmoid(x);
    return s * (1.0f - s);
  } else if constexpr (Op == UnaryOp::Silu) {
    float s = sigmoid(x);
    return s * (1.0f + x * (1.0f - s));
  } else if constexpr (Op == UnaryOp::Relu) {
    return x > 0.f ? 1.f : 0.f;
  } else if constexpr (Op == UnaryOp::Abs) {
    return x > 0.f ? 1.f : (x < 0.f ? -1.f : 0.f);
  } else if constexpr (Op == UnaryOp::Square) {
    return 2.0f * x;
  } else if constexpr (Op == UnaryOp::Pow) {
    return p == 0.f ? 0.f : p * powf(x, p - 1.0f);
  } else if constexpr (Op == UnaryOp::Gelu) {
    constexpr float kInvSqrt2Pi = 0.3989422804014327f;
    float cdf = 0.5f * (1.0f + erff(x * 0.70710678118654752440f));
    return cdf + x * kInvSqrt2Pi * expf(-0.5f * x * x);
  } else if constexpr (Op == UnaryOp::GeluTanh) {
    constexpr float kAlpha = 0.7978845608028654f, kC = 0.044715f;
    float t = tanhf(kAlpha * (x + kC * x * x * x));
    return 0.5f * (1.0f + t) + 0.5f * x * (1.0f - t * t) * kAlpha * (1.0f + 3.0f * kC * x * x);
  } else {
    static_assert(Op == UnaryOp::QuickGelu);
    constexpr float kA = 1.702f;
    float s = sigmoid(kA * x);
    return s + kA * x * s * (1.0f - s);
  }
}

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
  for (Index i = blockIdx.x * Index(blockDim.x) + threadIdx.x; i < n;
       i += Index(gridDim.x) * blockDim.x) {
    Index off[3];
    indexer.offsets(i, off);
    out[off[2]] = from_acc<T>(apply_binary<Op>(to_acc(a[off[0]]), to_acc(b[off[1]])));
  }
}

}  // namespace mentor::cuda::kernels
