#pragma once
// The formulas of every UnaryOp, f(x) and f'(x), and of the binary ops, written once for the CPU
// kernels (ops/unary.hpp) and the CUDA kernels (backend/cuda/kernels/elementwise.cuh). Plain C++
// that g++ and nvcc both compile (MENTOR_HD is empty under g++).
//
// The primitives whose implementation differs per side come from M, a struct of static functions
// on the accumulation type A: exp (the kernels' exponential: exp and sigmoid use it), exp_accurate
// (gelu's derivative), log, sqrt, tanh, abs, pow, erf. The CPU passes its vectorisable exp and
// libm, the device CUDA's math functions.
#include "mentor/backend/launch/elementwise.hpp"
#include "mentor/backend/launch/unary.hpp"
#include "mentor/core/config.hpp"

namespace mentor::math {

// a (op) b: the binary elementwise formula of the CPU and CUDA kernels (ops/elementwise.hpp).
template <BinaryOp Op, class A>
MENTOR_HD MENTOR_INLINE A apply_binary(A a, A b) {
  if constexpr (Op == BinaryOp::Add)
    return a + b;
  else if constexpr (Op == BinaryOp::Sub)
    return a - b;
  else if constexpr (Op == BinaryOp::Mul)
    return a * b;
  else
    return a / b;
}

template <class M, class A>
MENTOR_HD MENTOR_INLINE A sigmoid(A x) {
  return A(1) / (A(1) + M::exp(-x));
}

// f(x); `p` is pow's exponent (unused by the others).
template <UnaryOp Op, class M, class A>
MENTOR_HD MENTOR_INLINE A unary_value(A x, A p) {
  if constexpr (Op == UnaryOp::Exp)
    return M::exp(x);
  else if constexpr (Op == UnaryOp::Log)
    return M::log(x);
  else if constexpr (Op == UnaryOp::Sqrt)
    return M::sqrt(x);
  else if constexpr (Op == UnaryOp::Rsqrt)
    return A(1) / M::sqrt(x);
  else if constexpr (Op == UnaryOp::Tanh)
    return M::tanh(x);
  else if constexpr (Op == UnaryOp::Sigmoid)
    return sigmoid<M>(x);
  else if constexpr (Op == UnaryOp::Silu)
    return x * sigmoid<M>(x);
  else if constexpr (Op == UnaryOp::Relu)
    return x > A(0) ? x : A(0);
  else if constexpr (Op == UnaryOp::Abs)
    return M::abs(x);
  else if constexpr (Op == UnaryOp::Square)
    return x * x;
  else if constexpr (Op == UnaryOp::Pow)
    return M::pow(x, p);
  else if constexpr (Op == UnaryOp::Gelu)
    return A(0.5) * x * (A(1) + M::erf(x * A(0.70710678118654752440)));
  else if constexpr (Op == UnaryOp::GeluTanh) {
    constexpr A kAlpha = A(0.7978845608028654);  // sqrt(2 / pi)
    return A(0.5) * x * (A(1) + M::tanh(kAlpha * (x + A(0.044715) * x * x * x)));
  } else if constexpr (Op == UnaryOp::QuickGelu) {
    return x * sigmoid<M>(A(1.702) * x);
  } else {
    static_assert(Op == UnaryOp::LeakyRelu);
    return x > A(0) ? x : p * x;
  }
}

// f'(x).
template <UnaryOp Op, class M, class A>
MENTOR_HD MENTOR_INLINE A unary_derivative(A x, A p) {
  if constexpr (Op == UnaryOp::Exp)
    return M::exp(x);
  else if constexpr (Op == UnaryOp::Log)
    return A(1) / x;
  else if constexpr (Op == UnaryOp::Sqrt)
    return A(0.5) / M::sqrt(x);
  else if constexpr (Op == UnaryOp::Rsqrt)
    return A(-0.5) / (x * M::sqrt(x));
  else if constexpr (Op == UnaryOp::Tanh) {
    A t = M::tanh(x);
    return A(1) - t * t;
  } else if constexpr (Op == UnaryOp::Sigmoid) {
    A s = sigmoid<M>(x);
    return s * (A(1) - s);
  } else if constexpr (Op == UnaryOp::Silu) {
    A s = sigmoid<M>(x);
    return s * (A(1) + x * (A(1) - s));
  } else if constexpr (Op == UnaryOp::Relu) {
    return x > A(0) ? A(1) : A(0);
  } else if constexpr (Op == UnaryOp::Abs) {
    return x > A(0) ? A(1) : (x < A(0) ? A(-1) : A(0));  // torch: sign(x), 0 at 0
  } else if constexpr (Op == UnaryOp::Square) {
    return A(2) * x;
  } else if constexpr (Op == UnaryOp::Pow) {
    return p == A(0) ? A(0) : p * M::pow(x, p - A(1));  // torch masks p == 0 to 0
  } else if constexpr (Op == UnaryOp::Gelu) {
    constexpr A kInvSqrt2Pi = A(0.3989422804014327);  // 1 / sqrt(2 pi)
    A cdf = A(0.5) * (A(1) + M::erf(x * A(0.70710678118654752440)));
    return cdf + x * kInvSqrt2Pi * M::exp_accurate(A(-0.5) * x * x);
  } else if constexpr (Op == UnaryOp::GeluTanh) {
    constexpr A kAlpha = A(0.7978845608028654), kC = A(0.044715);
    A t = M::tanh(kAlpha * (x + kC * x * x * x));
    return A(0.5) * (A(1) + t) + A(0.5) * x * (A(1) - t * t) * kAlpha * (A(1) + A(3) * kC * x * x);
  } else if constexpr (Op == UnaryOp::QuickGelu) {
    constexpr A kA = A(1.702);
    A s = sigmoid<M>(kA * x);
    return s + kA * x * s * (A(1) - s);
  } else {
    static_assert(Op == UnaryOp::LeakyRelu);
    return x > A(0) ? A(1) : p;  // torch: the slope at 0
  }
}

}  // namespace mentor::math
