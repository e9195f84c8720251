#pragma once
// The CUDA launchers of ops/unary.hpp: plain C++ declarations (no CUDA header, no tensor, no
// autograd), defined for float and bf16 in src/cuda/elementwise.cu. The types its CPU and CUDA
// kernels share live here too.
#include <cstdint>

namespace mentor {

enum class UnaryOp {
  Exp,
  Log,
  Sqrt,
  Rsqrt,
  Tanh,
  Sigmoid,
  Silu,
  Relu,
  Abs,
  Square,
  Pow,        // x^p
  Gelu,       // 0.5 x (1 + erf(x / sqrt 2))
  GeluTanh,   // 0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3)))
  QuickGelu,  // x sigmoid(1.702 x)
  LeakyRelu,  // x > 0 ? x : p x (p: the negative slope; LlamaGen's PatchGAN uses 0.2)
};

enum class GeluApprox { None, Tanh };

namespace cuda {
// out[i] = f_Op(x[i]) for i in [0, n), contiguous, computed in float (see UnaryOp for the
// functions; `param` is pow's exponent and leaky_relu's slope, ignored by the others).
template <UnaryOp Op, class T>
void unary(const T* x, T* out, int64_t n, float param);
// grad_x[i] = grad_out[i] · f_Op'(x[i]), contiguous, in float (backend/pointwise_math.hpp has the
// formulas; abs'(0) = 0, pow' = 0 when param == 0).
template <UnaryOp Op, class T>
void unary_backward(const T* x, const T* grad_out, T* grad_x, int64_t n, float param);
// ops/gated.hpp: out[i] = f_Op(gate[i]) · up[i]; the backward writes the gradients that are not
// null, in one pass. Instantiated for Silu, Gelu and GeluTanh.
template <UnaryOp Op, class T>
void gated_forward(const T* gate, const T* up, T* out, int64_t n);
template <UnaryOp Op, class T>
void gated_backward(const T* gate, const T* up, const T* grad_out, T* grad_gate, T* grad_up,
                    int64_t n);
}  // namespace cuda

}  // namespace mentor
