#pragma once
// Elementwise arithmetic with NumPy broadcasting: add, sub, mul, div (tensor-tensor and
// tensor-scalar), neg. Forward and backward together; the CPU kernel is a flat loop when both sides
// are contiguous and of the output's shape, a strided loop otherwise.
#include <cmath>

#include "mentor/backend/cpu/parallel.hpp"
#include "mentor/backend/launch/elementwise.hpp"
#include "mentor/core/tensor.hpp"
#include "mentor/ops/dispatch.hpp"

namespace mentor {

namespace cpu {
template <BinaryOp Op, class A>
inline A apply_binary(A a, A b) {
  if constexpr (Op == BinaryOp::Add)
    return a + b;
  else if constexpr (Op == BinaryOp::Sub)
    return a - b;
  else if constexpr (Op == BinaryOp::Mul)
    return a * b;
  else
    return a / b;
}

// out = a (op) b with a and b already expanded to out's shape (strides may be 0).
template <BinaryOp Op, class T>
void binary_kernel(const Tensor<T, CPU>& a, const Tensor<T, CPU>& b, Tensor<T, CPU>& out) {
  using A = acc_t<T>;
  const T* pa = a.data();
  const T* pb = b.data();
  T* po = out.data();
  int64_t n = out.numel();
  if (a.is_contiguous() && b.is_contiguous()) {
    parallel_for(n, 1 << 15, [&](int64_t begin, int64_t end) {
      for (int64_t i = begin; i < end; ++i)
        po[i] = static_cast<T>(apply_binary<Op, A>(static_cast<A>(pa[i]), static_cast<A>(pb[i])));
    });
    return;
  }
  // Strided: walk a and b together, write out contiguously.
  int64_t i = 0;
  for_each_offset2(out.shape(), a.strides(), b.strides(), [&](int64_t oa, int64_t ob) {
    po[i++] = static_cast<T>(apply_binary<Op, A>(static_cast<A>(pa[oa]), static_cast<A>(pb[ob])));
  });
}
}  // namespace cpu

template <BinaryOp Op, class T, class D>
Tensor<T, D> binary_forward(const Tensor<T, D>& a, const Tensor<T, D>& b, const char* name) {
  Shape shape = broadcast_shapes(a.shape(), b.shape(), name);
  Tensor<T, D> ea = a.detach().expand(shape), eb = b.detach().expand(shape);
  Tensor<T, D> out = Tensor<T, D>::empty(shape);
  if constexpr (std::is_same_v<D, CPU>) {
    cpu::binary_kernel<Op>(ea, eb, out);
  } else {
    MENTOR_CUDA_CALL(
        cuda::binary<Op>(ea.data(), ea.strides(), eb.data(), eb.strides(), out.data(), shape));
  }
  return out;
}

template <FloatingElement T, class D>
Tensor<T, D> add(const Tensor<T, D>& a, const Tensor<T, D>& b) {
  Tensor<T, D> out = binary_forward<BinaryOp::Add>(a, b, "add");
  autograd::record(
      "add", out,
      [sa = a.shape(), sb = b.shape()](const Tensor<T, D>& g) {
        return std::tuple{sum_to(g, sa), sum_to(g, sb)};
      },
      a, b);
  return out;
}

template <FloatingElement T, class D>
Tensor<T, D> sub(const Tensor<T, D>& a, const Tensor<T, D>& b) {
  Tensor<T, D> out = binary_forward<BinaryOp::Sub>(a, b, "sub");
  autograd::record(
      "sub", out,
      [sa = a.shape(), sb = b.shape()](const Tensor<T, D>& g) {
        return std::tuple{sum_to(g, sa), sum_to(mul_scalar(g, -1.0), sb)};
      },
      a, b);
  return out;
}

template <FloatingElement T, class D>
Tensor<T, D> mul(const Tensor<T, D>& a, const Tensor<T, D>& b) {
  Tensor<T, D> out = binary_forward<BinaryOp::Mul>(a, b, "mul");
  autograd::record(
      "mul", out,
      [a = a.detach(), b = b.detach()](const Tensor<T, D>& g, const std::array<bool, 2>& needs) {
        Tensor<T, D> ga, gb;
        if (needs[0]) ga = sum_to(binary_forward<BinaryOp::Mul>(g, b, "mul"), a.shape());
        if (needs[1]) gb = sum_to(binary_forward<BinaryOp::Mul>(g, a, "mul"), b.shape());
        return std::tuple{ga, gb};
      },
      a, b);
  return out;
}

template <FloatingElement T, class D>
Tensor<T, D> div(const Tensor<T, D>& a, const Tensor<T, D>& b) {
  Tensor<T, D> out = binary_forward<BinaryOp::Div>(a, b, "div");
  autograd::record(
      "div", out,
      [a = a.detach(), b = b.detach(), out = out.detach()](const Tensor<T, D>& g,
                                                           const std::array<bool, 2>& needs) {
        Tensor<T, D> ga, gb;
        Tensor<T, D> g_over_b = binary_forward<BinaryOp::Div>(g, b, "div");
        if (needs[0]) ga = sum_to(g_over_b, a.shape());
        // d(a/b)/db = -(a/b)/b
        if (needs[1])
          gb = sum_to(mul_scalar(binary_forward<BinaryOp::Mul>(g_over_b, out, "div"), -1.0),
                      b.shape());
        return std::tuple{ga, gb};
      },
      a, b);
  return out;
}

// ---- tensor (op) scalar ----------------------------------------------------------------------
template <BinaryOp Op, class T, class D>
Tensor<T, D> scalar_forward(const Tensor<T, D>& a, double scalar) {
  Tensor<T, D> src = a.contiguous_nograd();
  Tensor<T, D> out = Tensor<T, D>::empty(a.shape());
  if constexpr (std::is_same_v<D, CPU>) {
    using A = acc_t<T>;
    const T* ps = src.data();
    T* po = out.data();
    A s = static_cast<A>(scalar);
    cpu::parallel_for(out.numel(), 1 << 15, [&](int64_t begin, int64_t end) {
      for (int64_t i = begin; i < end; ++i)
        po[i] = static_cast<T>(cpu::apply_binary<Op, A>(static_cast<A>(ps[i]), s));
    });
  } else {
    MENTOR_CUDA_CALL(
        cuda::binary_scalar<Op>(src.data(), static_cast<float>(scalar), out.data(), out.numel()));
  }
  return out;
}

template <FloatingElement T, class D>
Tensor<T, D> mul_scalar(const Tensor<T, D>& a, double s) {
  Tensor<T, D> out = scalar_forward<BinaryOp::Mul>(a, s);
  autograd::record(
      "mul_scalar", out, [s](const Tensor<T, D>& g) { return std::tuple{mul_scalar(g, s)}; }, a);
  return out;
}

template <FloatingElement T, class D>
Tensor<T, D> add_scalar(const Tensor<T, D>& a, double s) {
  Tensor<T, D> out = scalar_forward<BinaryOp::Add>(a, s);
  autograd::record(
      "add_scalar", out, [](const Tensor<T, D>& g) { return std::tuple{g}; }, a);
  return out;
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
