#pragma once
// Gated activations as one op: act(gate) · up, SwiGLU's (act = silu, the Llama FFN) and GEGLU's
// (act = gelu, T5 v1.1's gated-gelu FFN). One pass forward and one backward, where the act then
// mul pair takes two of each and keeps act(gate) alive for the backward:
//   out    = act(gate) · up
//   d gate = g · up · act'(gate)
//   d up   = g · act(gate)
// act and act' are backend/pointwise_math.hpp's formulas, as in ops/unary.hpp, in acc_t<T>.
#include <cstdint>

#include "mentor/backend/cpu/parallel.hpp"
#include "mentor/backend/launch/unary.hpp"
#include "mentor/backend/pointwise_math.hpp"
#include "mentor/core/error.hpp"
#include "mentor/core/tensor.hpp"
#include "mentor/ops/apply.hpp"
#include "mentor/ops/unary.hpp"

namespace mentor {

namespace cpu {

template <UnaryOp Op, class T>
void gated_forward(const T* gate, const T* up, T* out, int64_t n) {
  using A = acc_t<T>;
  parallel_for(n, 1 << 14, [&](int64_t begin, int64_t end) {
    for (int64_t i = begin; i < end; ++i)
      out[i] = static_cast<T>(math::unary_value<Op, UnaryMath>(static_cast<A>(gate[i]), A(0)) *
                              static_cast<A>(up[i]));
  });
}

// Either gradient may be null (not wanted).
template <UnaryOp Op, class T>
void gated_backward(const T* gate, const T* up, const T* grad_out, T* grad_gate, T* grad_up,
                    int64_t n) {
  using A = acc_t<T>;
  parallel_for(n, 1 << 14, [&](int64_t begin, int64_t end) {
    for (int64_t i = begin; i < end; ++i) {
      const A x = static_cast<A>(gate[i]), g = static_cast<A>(grad_out[i]);
      if (grad_gate)
        grad_gate[i] = static_cast<T>(g * static_cast<A>(up[i]) *
                                      math::unary_derivative<Op, UnaryMath>(x, A(0)));
      if (grad_up) grad_up[i] = static_cast<T>(g * math::unary_value<Op, UnaryMath>(x, A(0)));
    }
  });
}

}  // namespace cpu

template <UnaryOp Op>
struct Gated {
  static_assert(Op == UnaryOp::Silu || Op == UnaryOp::Gelu || Op == UnaryOp::GeluTanh,
                "Gated: the CUDA kernels are instantiated for silu, gelu and gelu-tanh");
  static constexpr OpSaves saves = OpSaves::Inputs;
  const char* op_name;  // a string literal

  const char* name() const { return op_name; }
  template <class T, class D>
  Shape output_shape(const Tensor<T, D>& gate, const Tensor<T, D>& up) const {
    MENTOR_CHECK_SHAPE(gate.shape() == up.shape(), op_name, ": gate ", gate.shape().str(),
                       " and up ", up.shape().str(), " differ (no broadcasting)");
    return gate.shape();
  }
  template <class T>
  void forward_cpu(const Tensor<T, CPU>& gate, const Tensor<T, CPU>& up,
                   Tensor<T, CPU>& out) const {
    cpu::gated_forward<Op>(gate.data(), up.data(), out.data(), out.numel());
  }
  template <class T>
  void forward_cuda(const Tensor<T, CUDA>& gate, const Tensor<T, CUDA>& up,
                    Tensor<T, CUDA>& out) const {
    cuda::gated_forward<Op>(gate.data(), up.data(), out.data(), out.numel());
  }
  template <class T>
  void backward_cpu(const Tensor<T, CPU>& gate, const Tensor<T, CPU>& up, const Tensor<T, CPU>&,
                    const Tensor<T, CPU>& grad_out, Tensor<T, CPU>& grad_gate,
                    Tensor<T, CPU>& grad_up) const {
    cpu::gated_backward<Op>(gate.data(), up.data(), grad_out.data(),
                            grad_gate.defined() ? grad_gate.data() : nullptr,
                            grad_up.defined() ? grad_up.data() : nullptr, grad_out.numel());
  }
  template <class T>
  void backward_cuda(const Tensor<T, CUDA>& gate, const Tensor<T, CUDA>& up, const Tensor<T, CUDA>&,
                     const Tensor<T, CUDA>& grad_out, Tensor<T, CUDA>& grad_gate,
                     Tensor<T, CUDA>& grad_up) const {
    cuda::gated_backward<Op>(gate.data(), up.data(), grad_out.data(),
                             grad_gate.defined() ? grad_gate.data() : nullptr,
                             grad_up.defined() ? grad_up.data() : nullptr, grad_out.numel());
  }
};

// silu(gate) · up, gate and up of one shape (the Llama / LlamaGen FFN).
template <FloatingElement T, class D>
Tensor<T, D> swiglu(const Tensor<T, D>& gate, const Tensor<T, D>& up) {
  return apply(Gated<UnaryOp::Silu>{"swiglu"}, gate, up);
}

// gelu(gate) · up, exact or tanh-approximated gelu (T5 v1.1's gated-gelu uses gelu_new = tanh).
template <FloatingElement T, class D>
Tensor<T, D> geglu(const Tensor<T, D>& gate, const Tensor<T, D>& up,
                   GeluApprox approx = GeluApprox::None) {
  if (approx == GeluApprox::Tanh) return apply(Gated<UnaryOp::GeluTanh>{"geglu"}, gate, up);
  return apply(Gated<UnaryOp::Gelu>{"geglu"}, gate, up);
}

}  // namespace mentor
