#pragma once
// The op skeleton: the one piece of code that turns an op's description into a differentiable
// function on either device. An op is a small struct that says what is specific to it; apply()
// does everything that is not: contiguity, allocation, device dispatch and autograd recording.
//
//   struct SquaredRelu {
//     static constexpr OpSaves saves = OpSaves::Inputs;     // what backward reads
//     const char* name() const { return "squared_relu"; }
//     // The shape rule and argument checks (may keep geometry in *this for the kernels).
//     template <class T, class D> Shape output_shape(const Tensor<T, D>& x);
//     // Kernels on contiguous tensors: forward writes `out`; backward writes each wanted gradient
//     // (an unwanted one is undefined; non-floating inputs get autograd::NoGrad).
//     template <class T> void forward_cpu(const Tensor<T, CPU>& x, Tensor<T, CPU>& out) const;
//     template <class T> void forward_cuda(const Tensor<T, CUDA>& x, Tensor<T, CUDA>& out) const;
//     template <class T> void backward_cpu(const Tensor<T, CPU>& x, const Tensor<T, CPU>& out,
//                                          const Tensor<T, CPU>& grad_out,
//                                          Tensor<T, CPU>& grad_x) const;
//     template <class T> void backward_cuda(...same on CUDA...) const;
//   };
//   template <FloatingElement T, class D> Tensor<T, D> squared_relu(const Tensor<T, D>& x) {
//     return apply(SquaredRelu{}, x);
//   }
//
// Instead of the two backward kernels an op may set `composite_backward` and give one
// device-generic `backward(inputs..., out, grad_out, needs)` that returns the gradients as a tuple,
// composed of other ops (add's sum_to); an op with `static constexpr bool differentiable = false`
// records nothing. Optional members: `zero_grads` (gradients start at zero: scatter-style backward
// kernels), `aux_t<T>` with `aux_shape()` (a second, non-differentiable output such as max's
// indices, passed to the kernels after `out` and returned beside it), `out_t<T>` (an output type
// other than the first input's), `saved_inputs` (which inputs the backward reads, when not all),
// `strided_inputs` (kernels that read strided views themselves, as matmul's GEMM reads transposed
// operands: inputs and grad_out reach them as they are, not as contiguous copies). launch() runs a
// kernel without allocation or recording. See docs/adding-an-op.md.
#include <array>
#include <cstddef>
#include <tuple>
#include <type_traits>
#include <utility>
#include <vector>

#include "mentor/core/tensor.hpp"

namespace mentor {

// What an op's backward reads besides grad_out: its (contiguous) inputs, its output, both or none.
// What is not saved reaches the backward as an undefined tensor and is freed after forward.
enum class OpSaves : unsigned { None = 0, Inputs = 1, Output = 2, Both = 3 };

// Element types that have CUDA kernels. Ops on other types (double) on a CUDA tensor do not
// compile: the static_assert in run_on_device names the reason, the compiler names the type.
template <class T>
inline constexpr bool has_cuda_kernels_v = std::is_same_v<T, float> || std::is_same_v<T, bf16>;

namespace detail {

template <class Op>
constexpr bool op_saves(OpSaves what) {
  return (static_cast<unsigned>(Op::saves) & static_cast<unsigned>(what)) != 0;
}

// Frees, after forward, the inputs the backward does not read: all of them unless the op saves
// inputs; else those its optional `static constexpr std::array<bool, N> saved_inputs` leaves out.
template <class Op, class... Inputs>
void drop_unsaved_inputs(std::tuple<Inputs...>& in) {
  if constexpr (!op_saves<Op>(OpSaves::Inputs)) {
    in = std::tuple<Inputs...>{};
  } else if constexpr (requires { Op::saved_inputs; }) {
    static_assert(Op::saved_inputs.size() == sizeof...(Inputs),
                  "saved_inputs: one entry per input of the op");
    [&]<size_t... I>(std::index_sequence<I...>) {
      ((Op::saved_inputs[I] ? void() : void(std::get<I>(in) = Inputs())), ...);
    }(std::index_sequence_for<Inputs...>{});
  }
}

template <class Op>
constexpr bool op_zero_grads() {
  if constexpr (requires { Op::zero_grads; })
    return Op::zero_grads;
  else
    return false;
}

template <class Op>
constexpr bool op_composite_backward() {
  if constexpr (requires { Op::composite_backward; })
    return Op::composite_backward;
  else
    return false;
}

template <class Op>
constexpr bool op_differentiable() {
  if constexpr (requires { Op::differentiable; })
    return Op::differentiable;
  else
    return true;
}

// The type an op's CUDA kernels are instantiated for; ops over extra types (index and mask
// copies) widen it with `template <class T> static constexpr bool cuda_type = ...`.
template <class Op, class T>
constexpr bool op_has_cuda_type() {
  if constexpr (requires { Op::template cuda_type<T>; })
    return Op::template cuda_type<T>;
  else
    return has_cuda_kernels_v<T>;
}

template <class Op, class T>
struct op_output {
  using type = T;
};
template <class Op, class T>
  requires requires { typename Op::template out_t<T>; }
struct op_output<Op, T> {
  using type = typename Op::template out_t<T>;
};

template <class Op, class T>
struct op_aux {
  using type = void;
};
template <class Op, class T>
  requires requires { typename Op::template aux_t<T>; }
struct op_aux<Op, T> {
  using type = typename Op::template aux_t<T>;
};

// The gradient slot of an input: a tensor of its type for floating inputs, NoGrad otherwise.
template <class Input>
using grad_slot_t =
    std::conditional_t<is_floating_v<typename Input::value_type>, Input, autograd::NoGrad>;

template <class X>
X contiguous_or_undefined(const X& t) {
  return t.defined() ? t.contiguous_nograd() : X();
}

template <class Op>
constexpr bool op_strided_inputs() {
  if constexpr (requires { Op::strided_inputs; })
    return Op::strided_inputs;
  else
    return false;
}

// A tensor as op's kernels receive it: contiguous, or the view itself for strided_inputs ops.
template <class Op, class X>
X kernel_input(const X& t) {
  if constexpr (op_strided_inputs<Op>())
    return t.detach();
  else
    return contiguous_or_undefined(t);
}

struct ForwardKernel {};
struct BackwardKernel {};

// The device branch of every op, in one place: the CPU kernel, or the CUDA launcher (which
// exists only for element types with CUDA kernels and only in a build with the CUDA backend).
template <class D, class Kernel, class T, class Op, class... Args>
void run_on_device(const Op& op, Args&&... args) {
  if constexpr (std::is_same_v<D, CPU>) {
    if constexpr (std::is_same_v<Kernel, ForwardKernel>)
      op.forward_cpu(std::forward<Args>(args)...);
    else
      op.backward_cpu(std::forward<Args>(args)...);
  } else {
    static_assert(std::is_same_v<D, CUDA>);
    static_assert(op_has_cuda_type<Op, T>(),
                  "mentor: this op has no CUDA kernel for this element type (CUDA kernels are "
                  "float and bf16; convert with .to<float>() before moving to CUDA)");
#if defined(MENTOR_WITH_CUDA)
    if constexpr (std::is_same_v<Kernel, ForwardKernel>)
      op.forward_cuda(std::forward<Args>(args)...);
    else
      op.backward_cuda(std::forward<Args>(args)...);
#else
    DeviceOps<CUDA>::unavailable();
#endif
  }
}

template <class First, class... Rest>
struct first_type {
  using type = First;
};

// The tensor type of launch()'s first argument: a tensor, or a vector of them (multi-tensor kernels
// such as the optimizer's).
template <class X>
struct launch_tensor {
  using type = X;
};
template <class X>
struct launch_tensor<std::vector<X>> {
  using type = X;
};

}  // namespace detail

// Runs a kernel that records nothing and allocates nothing: op.forward_cpu(args...) or
// op.forward_cuda(args...), for in-place updates (optimizer steps, gradient clipping) and
// kernels that fill tensors the caller made. The first argument (a tensor, or a vector of tensors)
// gives the device and the element type.
template <class Op, class First, class... Rest>
void launch(const Op& op, First&& first, Rest&&... rest) {
  using X = typename detail::launch_tensor<std::decay_t<First>>::type;
  static_assert(autograd::is_tensor<X>::value,
                "launch: the first kernel argument is a tensor (or a vector of tensors)");
  detail::run_on_device<typename X::device_type, detail::ForwardKernel, typename X::value_type>(
      op, std::forward<First>(first), std::forward<Rest>(rest)...);
}

// Runs `op` on `inputs` (tensors of one device; an undefined tensor is an absent optional
// input): checks and output shape from the op, contiguous inputs, allocation, the kernel for the
// device, and the backward recorded under op.name(). Returns the output, or {output, aux}.
template <class Op, class... Inputs>
auto apply(Op op, const Inputs&... inputs) {
  static_assert(sizeof...(Inputs) > 0 && (autograd::is_tensor<Inputs>::value && ...),
                "apply: an op's inputs are tensors");
  using First = typename detail::first_type<Inputs...>::type;
  using D = typename First::device_type;
  using T = typename First::value_type;
  static_assert((std::is_same_v<typename Inputs::device_type, D> && ...),
                "apply: all inputs of an op are on one device");
  using OutT = typename detail::op_output<Op, T>::type;
  using AuxT = typename detail::op_aux<Op, T>::type;
  constexpr bool kAux = !std::is_void_v<AuxT>;
  constexpr size_t kInputs = sizeof...(Inputs);

  const Shape out_shape = op.output_shape(inputs...);
  std::tuple<Inputs...> in{detail::kernel_input<Op>(inputs)...};
  Tensor<OutT, D> out = Tensor<OutT, D>::empty(out_shape);
  using Aux = std::conditional_t<kAux, Tensor<std::conditional_t<kAux, AuxT, float>, D>, int>;
  Aux aux{};
  if constexpr (kAux) aux = Aux::empty(op.aux_shape());
  std::apply(
      [&](const auto&... x) {
        if constexpr (kAux)
          detail::run_on_device<D, detail::ForwardKernel, T>(op, x..., out, aux);
        else
          detail::run_on_device<D, detail::ForwardKernel, T>(op, x..., out);
      },
      in);

  if constexpr (is_floating_v<OutT> && detail::op_differentiable<Op>()) {
    if (autograd::any_requires_grad(inputs...)) {
      detail::drop_unsaved_inputs<Op>(in);
      Tensor<OutT, D> saved_out =
          detail::op_saves<Op>(OpSaves::Output) ? out.detach() : Tensor<OutT, D>();
      const std::array<Shape, kInputs> shapes{autograd::detail::shape_or_empty(inputs)...};
      const char* name = op.name();
      autograd::record(
          name, out,
          [op, in = std::move(in), saved_out, aux, shapes](const Tensor<OutT, D>& grad_in,
                                                           const std::array<bool, kInputs>& needs) {
            const Tensor<OutT, D> grad_out = detail::kernel_input<Op>(grad_in);
            if constexpr (detail::op_composite_backward<Op>()) {
              return std::apply(
                  [&](const auto&... x) { return op.backward(x..., saved_out, grad_out, needs); },
                  in);
            } else {
              std::tuple<detail::grad_slot_t<Inputs>...> grads;
              [&]<size_t... I>(std::index_sequence<I...>) {
                auto allocate = [&](auto& g, size_t i) {
                  using G = std::decay_t<decltype(g)>;
                  if constexpr (!std::is_same_v<G, autograd::NoGrad>) {
                    if (needs[i])
                      g = detail::op_zero_grads<Op>() ? G::zeros(shapes[i]) : G::empty(shapes[i]);
                  }
                };
                (allocate(std::get<I>(grads), I), ...);
              }
              (std::index_sequence_for<Inputs...>{});
              std::apply(
                  [&](const auto&... x) {
                    std::apply(
                        [&](auto&... g) {
                          if constexpr (kAux)
                            detail::run_on_device<D, detail::BackwardKernel, T>(
                                op, x..., saved_out, aux, grad_out, g...);
                          else
                            detail::run_on_device<D, detail::BackwardKernel, T>(op, x..., saved_out,
                                                                                grad_out, g...);
                        },
                        grads);
                  },
                  in);
              return grads;
            }
          },
          inputs...);
    }
  }
  if constexpr (kAux)
    return std::pair{out, aux};
  else
    return out;
}

namespace detail {

// `t`, or a new tensor of `shape` when `t` is undefined: a buffer for a kernel that writes every
// gradient when some are not wanted.
template <class X>
X defined_or_empty(const X& t, const Shape& shape) {
  return t.defined() ? t : X::empty(shape);
}

// CPU kernels that compute in acc_t<T> (float for bf16) read a contiguous tensor through
// acc_input and write an output through acc_output and store_acc; for float and double these are
// the tensors themselves, no copy.
template <class T>
Tensor<acc_t<T>, CPU> acc_input(const Tensor<T, CPU>& x) {
  if constexpr (std::is_same_v<acc_t<T>, T>)
    return x.contiguous_nograd();
  else
    return x.detach().template to<acc_t<T>>();
}
template <class T>
Tensor<acc_t<T>, CPU> acc_output(const Tensor<T, CPU>& out, const Shape& shape) {
  if constexpr (std::is_same_v<acc_t<T>, T>)
    return defined_or_empty(out, shape);
  else
    return Tensor<acc_t<T>, CPU>::empty(shape);
}
// Rounds an acc_output buffer into `out` (nothing to do when it is `out`, or `out` is undefined).
template <class T>
void store_acc(const Tensor<acc_t<T>, CPU>& acc, Tensor<T, CPU>& out) {
  if constexpr (!std::is_same_v<acc_t<T>, T>) {
    if (out.defined()) DeviceOps<CPU>::convert<T>(acc.data(), out.data(), out.numel());
  }
}

}  // namespace detail

}  // namespace mentor
