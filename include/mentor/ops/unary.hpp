#pragma once
// Element-wise unary functions: exp, log, sqrt, rsqrt, tanh, sigmoid, silu, relu, abs, square,
// pow(x, p), gelu (exact or tanh approximation), quick_gelu (CLIP's x·sigmoid(1.702x)) and
// leaky_relu(x, slope) (LlamaGen's PatchGAN discriminator).
//
// One kernel shape serves them all: out[i] = f(x[i]) over the contiguous input, computed in
// acc_t<T>; the backward computes grad_x[i] = grad_out[i] · f'(x[i]) from the saved input alone
// (not the output), so each op keeps one tensor alive for backward.
//
// Note for code in namespace mentor: these templates hide ::exp, ::log, ... from unqualified lookup
// there; call std::exp(float) etc. explicitly on plain numbers.
#include <cmath>
#include <cstdint>
#include <type_traits>

#include "mentor/backend/cpu/math.hpp"
#include "mentor/backend/cpu/parallel.hpp"
#include "mentor/backend/launch/unary.hpp"
#include "mentor/backend/pointwise_math.hpp"
#include "mentor/core/tensor.hpp"
#include "mentor/ops/apply.hpp"

namespace mentor {

namespace cpu {

// The primitives of backend/pointwise_math.hpp's formulas on the CPU: the vectorisable exp for exp
// and sigmoid, libm for the rest (gelu's derivative keeps libm's exp).
struct UnaryMath {
  template <class A>
  static A exp(A x) {
    return exp_vectorizable(x);
  }
  template <class A>
  static A exp_accurate(A x) {
    return std::exp(x);
  }
  template <class A>
  static A log(A x) {
    return std::log(x);
  }
  template <class A>
  static A sqrt(A x) {
    return std::sqrt(x);
  }
  template <class A>
  static A tanh(A x) {
    return std::tanh(x);
  }
  template <class A>
  static A abs(A x) {
    return std::abs(x);
  }
  template <class A>
  static A pow(A x, A p) {
    return std::pow(x, p);
  }
  template <class A>
  static A erf(A x) {
    return std::erf(x);
  }
};

template <UnaryOp Op, class T>
void unary_kernel(const T* x, T* out, int64_t n, acc_t<T> p) {
  using A = acc_t<T>;
  parallel_for(n, 1 << 14, [&](int64_t begin, int64_t end) {
    for (int64_t i = begin; i < end; ++i)
      out[i] = static_cast<T>(math::unary_value<Op, UnaryMath>(static_cast<A>(x[i]), p));
  });
}

template <UnaryOp Op, class T>
void unary_backward_kernel(const T* x, const T* g, T* gx, int64_t n, acc_t<T> p) {
  using A = acc_t<T>;
  parallel_for(n, 1 << 14, [&](int64_t begin, int64_t end) {
    for (int64_t i = begin; i < end; ++i)
      gx[i] = static_cast<T>(static_cast<A>(g[i]) *
                             math::unary_derivative<Op, UnaryMath>(static_cast<A>(x[i]), p));
  });
}

}  // namespace cpu

// out = f(x) for one of the formulas of backend/pointwise_math.hpp; backward grad_x = grad_out ·
// f'(x) from x alone.
template <UnaryOp Op>
struct Unary {
  static constexpr OpSaves saves = OpSaves::Inputs;
  const char* op_name;  // a string literal
  double param = 0.0;   // pow's exponent, leaky_relu's negative slope

  const char* name() const { return op_name; }
  template <class T, class D>
  Shape output_shape(const Tensor<T, D>& x) const {
    return x.shape();
  }
  template <class T>
  void forward_cpu(const Tensor<T, CPU>& x, Tensor<T, CPU>& out) const {
    cpu::unary_kernel<Op>(x.data(), out.data(), out.numel(), static_cast<acc_t<T>>(param));
  }
  template <class T>
  void forward_cuda(const Tensor<T, CUDA>& x, Tensor<T, CUDA>& out) const {
    cuda::unary<Op>(x.data(), out.data(), out.numel(), static_cast<float>(param));
  }
  template <class T>
  void backward_cpu(const Tensor<T, CPU>& x, const Tensor<T, CPU>&, const Tensor<T, CPU>& grad_out,
                    Tensor<T, CPU>& grad_x) const {
    cpu::unary_backward_kernel<Op>(x.data(), grad_out.data(), grad_x.data(), grad_x.numel(),
                                   static_cast<acc_t<T>>(param));
  }
  template <class T>
  void backward_cuda(const Tensor<T, CUDA>& x, const Tensor<T, CUDA>&,
                     const Tensor<T, CUDA>& grad_out, Tensor<T, CUDA>& grad_x) const {
    cuda::unary_backward<Op>(x.data(), grad_out.data(), grad_x.data(), grad_x.numel(),
                             static_cast<float>(param));
  }
};

// The differentiable op. `name` must be a string literal.
template <UnaryOp Op, class T, class D>
Tensor<T, D> unary_op(const Tensor<T, D>& x, const char* name, double param = 0.0) {
  return apply(Unary<Op>{name, param}, x);
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
// x for x > 0, negative_slope * x otherwise (torch.nn.functional.leaky_relu; its gradient at 0 is
// the slope, as torch's).
template <FloatingElement T, class D>
Tensor<T, D> leaky_relu(const Tensor<T, D>& x, double negative_slope = 0.01) {
  MENTOR_CHECK(std::isfinite(negative_slope), "leaky_relu: negative_slope ", negative_slope,
               " is not finite");
  return unary_op<UnaryOp::LeakyRelu>(x, "leaky_relu", negative_slope);
}

}  // namespace mentor
