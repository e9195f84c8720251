#pragma once
// Elementwise arithmetic with NumPy broadcasting: add, sub, mul, div (tensor-tensor and
// tensor-scalar), neg. The CPU kernel is a flat loop when neither side is broadcast, a strided loop
// (stride 0 along the broadcast dimensions) otherwise. The backwards are made of these same ops and
// sum_to, which undoes the broadcasting.
#include <array>
#include <cmath>
#include <tuple>

#include "mentor/backend/cpu/parallel.hpp"
#include "mentor/backend/launch/elementwise.hpp"
#include "mentor/backend/pointwise_math.hpp"
#include "mentor/core/tensor.hpp"
#include "mentor/ops/apply.hpp"

namespace mentor {

namespace cpu {
// out = a (op) b over `shape`, a and b read through strides over that shape (0 along broadcast
// dimensions); `flat` when neither is broadcast (both are then laid out as out).
template <BinaryOp Op, class T>
void binary_kernel(const T* a, const Strides& sa, const T* b, const Strides& sb, T* out,
                   const Shape& shape, bool flat) {
  using A = acc_t<T>;
  if (flat) {
    parallel_for(shape.numel(), 1 << 15, [&](int64_t begin, int64_t end) {
      for (int64_t i = begin; i < end; ++i)
        out[i] =
            static_cast<T>(math::apply_binary<Op, A>(static_cast<A>(a[i]), static_cast<A>(b[i])));
    });
    return;
  }
  // Strided: walk a and b together, write out contiguously.
  int64_t i = 0;
  for_each_offsets(shape, {sa, sb}, [&](int64_t oa, int64_t ob) {
    out[i++] =
        static_cast<T>(math::apply_binary<Op, A>(static_cast<A>(a[oa]), static_cast<A>(b[ob])));
  });
}

// out = a (op) scalar over n contiguous values.
template <BinaryOp Op, class T>
void binary_scalar_kernel(const T* a, acc_t<T> scalar, T* out, int64_t n) {
  using A = acc_t<T>;
  parallel_for(n, 1 << 15, [&](int64_t begin, int64_t end) {
    for (int64_t i = begin; i < end; ++i)
      out[i] = static_cast<T>(math::apply_binary<Op, A>(static_cast<A>(a[i]), scalar));
  });
}
}  // namespace cpu

namespace detail {
// Strides that read a contiguous tensor of shape `in` as its broadcast shape `out`: 0 along the
// dimensions it is broadcast over (as expand() would give).
inline Strides broadcast_strides(const Shape& in, const Shape& out) {
  const Strides contiguous = contiguous_strides(in);
  const int lead = out.rank() - in.rank();
  Strides strides;
  for (int i = 0; i < out.rank(); ++i) {
    const int j = i - lead;
    strides.push_back(j >= 0 && in[j] == out[i] ? contiguous[j] : 0);
  }
  return strides;
}
}  // namespace detail

// out = a (op) b, broadcast. Backward: add and sub pass the gradient on (negated for b of sub);
// mul and div read the inputs (div also its output); each gradient is summed back to its input's
// shape.
template <BinaryOp Op>
struct Binary {
  static constexpr OpSaves saves = Op == BinaryOp::Add || Op == BinaryOp::Sub ? OpSaves::None
                                   : Op == BinaryOp::Mul                      ? OpSaves::Inputs
                                                                              : OpSaves::Both;
  static constexpr bool composite_backward = true;
  // Geometry, from output_shape().
  Shape a_shape, b_shape, shape;  // the inputs' shapes and their broadcast shape
  Strides a_strides, b_strides;   // the inputs read over `shape`

  const char* name() const {
    if constexpr (Op == BinaryOp::Add)
      return "add";
    else if constexpr (Op == BinaryOp::Sub)
      return "sub";
    else if constexpr (Op == BinaryOp::Mul)
      return "mul";
    else
      return "div";
  }
  template <class T, class D>
  Shape output_shape(const Tensor<T, D>& a, const Tensor<T, D>& b) {
    a_shape = a.shape();
    b_shape = b.shape();
    shape = broadcast_shapes(a_shape, b_shape, name());
    a_strides = detail::broadcast_strides(a_shape, shape);
    b_strides = detail::broadcast_strides(b_shape, shape);
    return shape;
  }
  template <class T>
  void forward_cpu(const Tensor<T, CPU>& a, const Tensor<T, CPU>& b, Tensor<T, CPU>& out) const {
    const bool flat = a.numel() == out.numel() && b.numel() == out.numel();
    cpu::binary_kernel<Op>(a.data(), a_strides, b.data(), b_strides, out.data(), shape, flat);
  }
  template <class T>
  void forward_cuda(const Tensor<T, CUDA>& a, const Tensor<T, CUDA>& b,
                    Tensor<T, CUDA>& out) const {
    cuda::binary<Op>(a.data(), a_strides, b.data(), b_strides, out.data(), shape);
  }
  template <class T, class D>
  std::tuple<Tensor<T, D>, Tensor<T, D>> backward(const Tensor<T, D>& a, const Tensor<T, D>& b,
                                                  const Tensor<T, D>& out, const Tensor<T, D>& g,
                                                  const std::array<bool, 2>& needs) const {
    Tensor<T, D> ga, gb;
    if constexpr (Op == BinaryOp::Add) {
      if (needs[0]) ga = sum_to(g, a_shape);
      if (needs[1]) gb = sum_to(g, b_shape);
    } else if constexpr (Op == BinaryOp::Sub) {
      if (needs[0]) ga = sum_to(g, a_shape);
      if (needs[1]) gb = sum_to(mul_scalar(g, -1.0), b_shape);
    } else if constexpr (Op == BinaryOp::Mul) {
      if (needs[0]) ga = sum_to(mul(g, b), a_shape);
      if (needs[1]) gb = sum_to(mul(g, a), b_shape);
    } else {
      const Tensor<T, D> g_over_b = div(g, b);
      if (needs[0]) ga = sum_to(g_over_b, a_shape);
      // d(a/b)/db = -(a/b)/b
      if (needs[1]) gb = sum_to(mul_scalar(mul(g_over_b, out), -1.0), b_shape);
    }
    return {ga, gb};
  }
};

// out = x (op) scalar for add and mul; backward: the gradient passed on (add) or scaled (mul).
template <BinaryOp Op>
struct BinaryScalar {
  static_assert(Op == BinaryOp::Add || Op == BinaryOp::Mul);
  static constexpr OpSaves saves = OpSaves::None;
  static constexpr bool composite_backward = true;
  double scalar;

  const char* name() const { return Op == BinaryOp::Add ? "add_scalar" : "mul_scalar"; }
  template <class T, class D>
  Shape output_shape(const Tensor<T, D>& x) const {
    return x.shape();
  }
  template <class T>
  void forward_cpu(const Tensor<T, CPU>& x, Tensor<T, CPU>& out) const {
    cpu::binary_scalar_kernel<Op>(x.data(), static_cast<acc_t<T>>(scalar), out.data(), out.numel());
  }
  template <class T>
  void forward_cuda(const Tensor<T, CUDA>& x, Tensor<T, CUDA>& out) const {
    cuda::binary_scalar<Op>(x.data(), static_cast<float>(scalar), out.data(), out.numel());
  }
  template <class T, class D>
  std::tuple<Tensor<T, D>> backward(const Tensor<T, D>&, const Tensor<T, D>&, const Tensor<T, D>& g,
                                    const std::array<bool, 1>&) const {
    if constexpr (Op == BinaryOp::Add)
      return {g};
    else
      return {mul_scalar(g, scalar)};
  }
};

template <FloatingElement T, class D>
Tensor<T, D> add(const Tensor<T, D>& a, const Tensor<T, D>& b) {
  return apply(Binary<BinaryOp::Add>{}, a, b);
}

template <FloatingElement T, class D>
Tensor<T, D> sub(const Tensor<T, D>& a, const Tensor<T, D>& b) {
  return apply(Binary<BinaryOp::Sub>{}, a, b);
}

template <FloatingElement T, class D>
Tensor<T, D> mul(const Tensor<T, D>& a, const Tensor<T, D>& b) {
  return apply(Binary<BinaryOp::Mul>{}, a, b);
}

template <FloatingElement T, class D>
Tensor<T, D> div(const Tensor<T, D>& a, const Tensor<T, D>& b) {
  return apply(Binary<BinaryOp::Div>{}, a, b);
}

// ---- tensor (op) scalar ----------------------------------------------------------------------
template <FloatingElement T, class D>
Tensor<T, D> mul_scalar(const Tensor<T, D>& a, double s) {
  return apply(BinaryScalar<BinaryOp::Mul>{s}, a);
}

template <FloatingElement T, class D>
Tensor<T, D> add_scalar(const Tensor<T, D>& a, double s) {
  return apply(BinaryScalar<BinaryOp::Add>{s}, a);
}

template <FloatingElement T, class D>
Tensor<T, D> neg(const Tensor<T, D>& a) {
  return mul_scalar(a, -1.0);
}

// Operators: only between tensors of the same element type and device (anything else does not
// compile), and with plain numbers.
template <FloatingElement T, class D>
Tensor<T, D> operator+(const Tensor<T, D>& a, const Tensor<T, D>& b) {
  return add(a, b);
}
template <FloatingElement T, class D>
Tensor<T, D> operator-(const Tensor<T, D>& a, const Tensor<T, D>& b) {
  return sub(a, b);
}
template <FloatingElement T, class D>
Tensor<T, D> operator*(const Tensor<T, D>& a, const Tensor<T, D>& b) {
  return mul(a, b);
}
template <FloatingElement T, class D>
Tensor<T, D> operator/(const Tensor<T, D>& a, const Tensor<T, D>& b) {
  return div(a, b);
}
template <FloatingElement T, class D>
Tensor<T, D> operator-(const Tensor<T, D>& a) {
  return neg(a);
}
template <FloatingElement T, class D>
Tensor<T, D> operator+(const Tensor<T, D>& a, double s) {
  return add_scalar(a, s);
}
template <FloatingElement T, class D>
Tensor<T, D> operator+(double s, const Tensor<T, D>& a) {
  return add_scalar(a, s);
}
template <FloatingElement T, class D>
Tensor<T, D> operator-(const Tensor<T, D>& a, double s) {
  return add_scalar(a, -s);
}
template <FloatingElement T, class D>
Tensor<T, D> operator-(double s, const Tensor<T, D>& a) {
  return add_scalar(neg(a), s);
}
template <FloatingElement T, class D>
Tensor<T, D> operator*(const Tensor<T, D>& a, double s) {
  return mul_scalar(a, s);
}
template <FloatingElement T, class D>
Tensor<T, D> operator*(double s, const Tensor<T, D>& a) {
  return mul_scalar(a, s);
}
template <FloatingElement T, class D>
Tensor<T, D> operator/(const Tensor<T, D>& a, double s) {
  return mul_scalar(a, 1.0 / s);
}

}  // namespace mentor
