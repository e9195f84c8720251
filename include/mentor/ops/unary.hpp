#pragma once
// Element-wise unary functions: exp, log, sqrt, rsqrt, tanh, sigmoid, silu, relu, abs, square,
// pow(x, p), gelu (exact or tanh approximation) and quick_gelu (CLIP's x·sigmoid(1.702x)).
//
// One kernel shape serves them all: out[i] = f(x[i]) over the contiguous input, computed in
// acc_t<T>; the backward computes grad_x[i] = grad_out[i] · f'(x[i]) from the saved input alone
// (not the output), so each op keeps one tensor alive for backward.
//
// Note for code in namespace mentor: these templates hide ::exp, ::log, ... from unqualified lookup
// there; call std::exp(float) etc. explicitly on plain numbers.
#include <bit>
#include <cmath>
#include <cstdint>
#include <limits>
#include <type_traits>

#include "mentor/backend/cpu/parallel.hpp"
#include "mentor/backend/launch/unary.hpp"
#include "mentor/core/tensor.hpp"
#include "mentor/ops/dispatch.hpp"

namespace mentor {

namespace cpu {

// e^x in float that GCC auto-vectorises (no libm call, no branches): Cephes' expf, i.e.
// 2^n · e^r with |r| <= ln2/2 and a degree-5 minimax polynomial for e^r; relative error ~1e-7
// (about 1-2 ulp). Overflows to +inf above ln(FLT_MAX), flushes to 0 below ln(FLT_MIN) (masked
// -inf logits give exactly 0, and no slow denormal arithmetic), and propagates NaN.
inline float exp_vectorizable(float x) {
  constexpr float kLog2e = 1.44269504088896341f;
  constexpr float kLn2Hi = 0.693359375f, kLn2Lo = -2.12194440e-4f;
  constexpr float kMax = 88.72283f;   // ln(FLT_MAX)
  constexpr float kMin = -87.33654f;  // ln(FLT_MIN): below, 0 (no denormal arithmetic)
  // Adding 1.5·2^23 rounds to an integer and leaves it in the low mantissa bits: no floor() or
  // float->int conversion, which GCC would not vectorise under the default -ftrapping-math.
  constexpr float kRound = 12582912.0f;
  float xc = std::min(std::max(x, kMin), kMax);  // NaN passes through both
  float t = xc * kLog2e + kRound;
  float n = t - kRound;  // n = round(x / ln2) in [-126, 128]
  float r = xc - n * kLn2Hi - n * kLn2Lo;
  float p = 1.9875691500e-4f;
  p = p * r + 1.3981999507e-3f;
  p = p * r + 8.3334519073e-3f;
  p = p * r + 4.1665795894e-2f;
  p = p * r + 1.6666665459e-1f;
  p = p * r + 5.0000001201e-1f;
  float er = p * r * r + r + 1.0f;
  // 2^n as 2^h · 2^(n-h), both normal floats for every n in range.
  int32_t ni = static_cast<int32_t>(std::bit_cast<uint32_t>(t) - 0x4B400000u);
  int32_t h = ni >> 1;
  float two_h = std::bit_cast<float>(static_cast<uint32_t>(h + 127) << 23);
  float two_rest = std::bit_cast<float>(static_cast<uint32_t>(ni - h + 127) << 23);
  float y = er * two_h * two_rest;
  y = x > kMax ? std::numeric_limits<float>::infinity() : y;
  return x < kMin ? 0.0f : y;
}
// Double precision keeps libm's exp: the gradient tests run in double.
inline double exp_vectorizable(double x) { return std::exp(x); }

template <class A>
inline A sigmoid_value(A x) {
  return A(1) / (A(1) + exp_vectorizable(-x));
}

// f(x); `p` is pow's exponent (unused by the others).
template <UnaryOp Op, class A>
inline A unary_value(A x, A p) {
  if constexpr (Op == UnaryOp::Exp)
    return exp_vectorizable(x);
  else if constexpr (Op == UnaryOp::Log)
    return std::log(x);
  else if constexpr (Op == UnaryOp::Sqrt)
    return std::sqrt(x);
  else if constexpr (Op == UnaryOp::Rsqrt)
    return A(1) / std::sqrt(x);
  else if constexpr (Op == UnaryOp::Tanh)
    return std::tanh(x);
  else if constexpr (Op == UnaryOp::Sigmoid)
    return sigmoid_value(x);
  else if constexpr (Op == UnaryOp::Silu)
    return x * sigmoid_value(x);
  else if constexpr (Op == UnaryOp::Relu)
    return x > A(0) ? x : A(0);
  else if constexpr (Op == UnaryOp::Abs)
    return std::abs(x);
  else if constexpr (Op == UnaryOp::Square)
    return x * x;
  else if constexpr (Op == UnaryOp::Pow)
    return std::pow(x, p);
  else if constexpr (Op == UnaryOp::Gelu)
    return A(0.5) * x * (A(1) + std::erf(x * A(0.70710678118654752440)));
  else if constexpr (Op == UnaryOp::GeluTanh) {
    constexpr A kAlpha = A(0.7978845608028654);  // sqrt(2 / pi)
    return A(0.5) * x * (A(1) + std::tanh(kAlpha * (x + A(0.044715) * x * x * x)));
  } else {
    static_assert(Op == UnaryOp::QuickGelu);
    return x * sigmoid_value(A(1.702) * x);
  }
}

// f'(x).
template <UnaryOp Op, class A>
inline A unary_derivative(A x, A p) {
  if constexpr (Op == UnaryOp::Exp)
    return exp_vectorizable(x);
  else if constexpr (Op == UnaryOp::Log)
    return A(1) / x;
  else if constexpr (Op == UnaryOp::Sqrt)
    return A(0.5) / std::sqrt(x);
  else if constexpr (Op == UnaryOp::Rsqrt)
    return A(-0.5) / (x * std::sqrt(x));
  else if constexpr (Op == UnaryOp::Tanh) {
    A t = std::tanh(x);
    return A(1) - t * t;
  } else if constexpr (Op == UnaryOp::Sigmoid) {
    A s = sigmoid_value(x);
    return s * (A(1) - s);
  } else if constexpr (Op == UnaryOp::Silu) {
    A s = sigmoid_value(x);
    return s * (A(1) + x * (A(1) - s));
  } else if constexpr (Op == UnaryOp::Relu) {
    return x > A(0) ? A(1) : A(0);
  } else if constexpr (Op == UnaryOp::Abs) {
    return x > A(0) ? A(1) : (x < A(0) ? A(-1) : A(0));  // torch: sign(x), 0 at 0
  } else if constexpr (Op == UnaryOp::Square) {
    return A(2) * x;
  } else if constexpr (Op == UnaryOp::Pow) {
    return p == A(0) ? A(0) : p * std::pow(x, p - A(1));  // torch masks p == 0 to 0
  } else if constexpr (Op == UnaryOp::Gelu) {
    constexpr A kInvSqrt2Pi = A(0.3989422804014327);  // 1 / sqrt(2 pi)
    A cdf = A(0.5) * (A(1) + std::erf(x * A(0.70710678118654752440)));
    return cdf + x * kInvSqrt2Pi * std::exp(A(-0.5) * x * x);
  } else if constexpr (Op == UnaryOp::GeluTanh) {
    constexpr A kAlpha = A(0.7978845608028654), kC = A(0.044715);
    A t = std::tanh(kAlpha * (x + kC * x * x * x));
    return A(0.5) * (A(1) + t) + A(0.5) * x * (A(1) - t * t) * kAlpha * (A(1) + A(3) * kC * x * x);
  } else {
    static_assert(Op == UnaryOp::QuickGelu);
    constexpr A kA = A(1.702);
    A s = sigmoid_value(kA * x);
    return s + kA * x * s * (A(1) - s);
  }
}

template <UnaryOp Op, class T>
void unary_kernel(const T* x, T* out, int64_t n, acc_t<T> p) {
  using A = acc_t<T>;
  parallel_for(n, 1 << 14, [&](int64_t begin, int64_t end) {
    for (int64_t i = begin; i < end; ++i)
      out[i] = static_cast<T>(unary_value<Op, A>(static_cast<A>(x[i]), p));
  });
}

template <UnaryOp Op, class T>
void unary_backward_kernel(const T* x, const T* g, T* gx, int64_t n, acc_t<T> p) {
  using A = acc_t<T>;
  parallel_for(n, 1 << 14, [&](int64_t begin, int64_t end) {
    for (int64_t i = begin; i < end; ++i)
      gx[i] =
          static_cast<T>(static_cast<A>(g[i]) * unary_derivative<Op, A>(static_cast<A>(x[i]), p));
  });
}

}  // namespace cpu

template <UnaryOp Op, class T, class D>
Tensor<T, D> unary_forward(const Tensor<T, D>& x, double param) {
  Tensor<T, D> src = x.contiguous_nograd();
  Tensor<T, D> out = Tensor<T, D>::empty(x.shape());
  if constexpr (std::is_same_v<D, CPU>) {
    cpu::unary_kernel<Op>(src.data(), out.data(), out.numel(), static_cast<acc_t<T>>(param));
  } else {
    MENTOR_CUDA_CALL(
        cuda::unary<Op>(src.data(), out.data(), out.numel(), static_cast<float>(param)));
  }
  return out;
}

// grad_out · f'(x) for x, grad_out of the same shape.
template <UnaryOp Op, class T, class D>
Tensor<T, D> unary_backward(const Tensor<T, D>& x, const Tensor<T, D>& grad_out, double param) {
  Tensor<T, D> src = x.contiguous_nograd();
  Tensor<T, D> g = grad_out.contiguous_nograd();
  Tensor<T, D> gx = Tensor<T, D>::empty(x.shape());
  if constexpr (std::is_same_v<D, CPU>) {
    cpu::unary_backward_kernel<Op>(src.data(), g.data(), gx.data(), gx.numel(),
                                   static_cast<acc_t<T>>(param));
  } else {
    MENTOR_CUDA_CALL(cuda::unary_backward<Op>(src.data(), g.data(), gx.data(), gx.numel(),
                                              static_cast<float>(param)));
  }
  return gx;
}

// The differentiable op: forward plus its recorded backward. `name` must be a string literal.
template <UnaryOp Op, class T, class D>
Tensor<T, D> unary_op(const Tensor<T, D>& x, const char* name, double param = 0.0) {
  Tensor<T, D> src = x.contiguous_nograd();
  Tensor<T, D> out = unary_forward<Op>(src, param);
  autograd::record(
      name, out,
      [src = src.detach(), param](const Tensor<T, D>& g) {
        return std::tuple{unary_backward<Op>(src, g, param)};
      },
      x);
  return out;
}

template <FloatingElement T, class D>
Tensor<T, D> exp(const Tensor<T, D>& x) {
  return unary_op<UnaryOp::Exp>(x, "exp");
}
template <FloatingElement T, class D>
Tensor<T, D> log(const Tensor<T, D>& x) {
  return unary_op<UnaryOp::Log>(x, "log");
}
template <FloatingElement T, class D>
Tensor<T, D> sqrt(const Tensor<T, D>& x) {
  return unary_op<UnaryOp::Sqrt>(x, "sqrt");
}
template <FloatingElement T, class D>
Tensor<T, D> rsqrt(const Tensor<T, D>& x) {
  return unary_op<UnaryOp::Rsqrt>(x, "rsqrt");
}
template <FloatingElement T, class D>
Tensor<T, D> tanh(const Tensor<T, D>& x) {
  return unary_op<UnaryOp::Tanh>(x, "tanh");
}
template <FloatingElement T, class D>
Tensor<T, D> sigmoid(const Tensor<T, D>& x) {
  return unary_op<UnaryOp::Sigmoid>(x, "sigmoid");
}
template <FloatingElement T, class D>
Tensor<T, D> silu(const Tensor<T, D>& x) {
  return unary_op<UnaryOp::Silu>(x, "silu");
}
template <FloatingElement T, class D>
Tensor<T, D> relu(const Tensor<T, D>& x) {
  return unary_op<UnaryOp::Relu>(x, "relu");
}
template <FloatingElement T, class D>
Tensor<T, D> abs(const Tensor<T, D>& x) {
  return unary_op<UnaryOp::Abs>(x, "abs");
}
template <FloatingElement T, class D>
Tensor<T, D> square(const Tensor<T, D>& x) {
  return unary_op<UnaryOp::Square>(x, "square");
}
template <FloatingElement T, class D>
Tensor<T, D> pow(const Tensor<T, D>& x, double p) {
  return unary_op<UnaryOp::Pow>(x, "pow", p);
}
template <FloatingElement T, class D>
Tensor<T, D> gelu(const Tensor<T, D>& x, GeluApprox approx = GeluApprox::None) {
  return approx == GeluApprox::Tanh ? unary_op<UnaryOp::GeluTanh>(x, "gelu_tanh")
                                    : unary_op<UnaryOp::Gelu>(x, "gelu");
}
template <FloatingElement T, class D>
Tensor<T, D> quick_gelu(const Tensor<T, D>& x) {
  return unary_op<UnaryOp::QuickGelu>(x, "quick_gelu");
}

}  // namespace mentor
