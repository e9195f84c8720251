#pragma once
// The op-case registry (after ggml's tests/test-backend-ops.cpp): one registration per op case
// drives every check of the `op_cases` program: PyTorch goldens, finite-difference gradients,
// CPU-vs-CUDA consistency and per-op performance.
//
//   r.add("softmax", {values("x", {3, 5, 7}, -3, 3).perf({4096, 4096})},
//         [](const auto& in) { return softmax(in[0], -1); })
//       .golden("softmax_last");
//
// A case names its op ("<op>" or "<op>.<variant>": the part before the first '.' is the public
// function it exercises, which is what the coverage check counts), its inputs (shapes and value
// ranges that keep the op well-conditioned, plus index and mask inputs) and one generic callable,
// instantiated here for Tensor<double, CPU> and Tensor<float, CPU> and, in a build with the CUDA
// backend, Tensor<float, CUDA> and Tensor<bf16, CUDA>. Optional: the key prefix of its goldens in
// tests/goldens/ops.safetensors, bigger perf shapes, the op's FLOP count (else its bytes are
// counted) and tolerances.
#include <cstdint>
#include <functional>
#include <string>
#include <type_traits>
#include <utility>
#include <vector>

#include "mentor/core/tensor.hpp"

namespace mentor::op_cases {

enum class InputKind {
  Floating,  // differentiated: element type T
  Constant,  // element type T, not differentiated (cross-entropy's validity weights)
  Float32,   // float whatever T, not differentiated (rope's table)
  Index,     // int64 in [0, bound)
  Mask,      // bool, true with probability p_true
};

struct InputSpec {
  std::string name;  // golden key <prefix>.in.<name>
  InputKind kind = InputKind::Floating;
  Shape shape;
  double low = -1, high = 1;  // floating values uniform in [low, high) ...
  bool random_sign = false;   // ... or |value| in [low, high) with a random sign
  int64_t bound = 0;          // Index
  double p_true = 0.5;        // Mask
  Shape perf_shape{};         // perf mode: the bigger shape (rank 0: `shape` again)
  int64_t perf_bound = 0;     // perf mode: Index bound (0: `bound` again)

  // The shape (and index bound) the perf mode uses instead.
  InputSpec& perf(const Shape& bigger, int64_t bigger_bound = 0) {
    perf_shape = bigger;
    perf_bound = bigger_bound;
    return *this;
  }
  bool has_perf_shape() const { return perf_shape.rank() > 0; }
};

// A differentiated input uniform in [low, high).
inline InputSpec values(std::string name, const Shape& shape, double low = -1, double high = 1) {
  return {std::move(name), InputKind::Floating, shape, low, high};
}
// A differentiated input with |value| in [low, high) and a random sign: kinks at 0 (abs, relu) and
// poles (a divisor) stay further from every value than the finite-difference step.
inline InputSpec signed_values(std::string name, const Shape& shape, double low, double high) {
  InputSpec spec = values(std::move(name), shape, low, high);
  spec.random_sign = true;
  return spec;
}
inline InputSpec constant(std::string name, const Shape& shape, double low, double high) {
  return {std::move(name), InputKind::Constant, shape, low, high};
}
inline InputSpec float32_constant(std::string name, const Shape& shape, double low, double high) {
  return {std::move(name), InputKind::Float32, shape, low, high};
}
inline InputSpec indices(std::string name, const Shape& shape, int64_t bound) {
  InputSpec spec{std::move(name), InputKind::Index, shape};
  spec.bound = bound;
  return spec;
}
inline InputSpec mask(std::string name, const Shape& shape, double p_true = 0.5) {
  InputSpec spec{std::move(name), InputKind::Mask, shape};
  spec.p_true = p_true;
  return spec;
}

// What a case's callable receives: its inputs by kind, each kind in the order of the specs.
template <class T, class D>
struct Inputs {
  using tensor = Tensor<T, D>;
  using device = D;
  std::vector<Tensor<T, D>> x;  // Floating and Constant inputs
  std::vector<Tensor<float, D>> float32;
  std::vector<Tensor<int64_t, D>> ids;
  std::vector<Tensor<bool, D>> masks;
  const Tensor<T, D>& operator[](size_t i) const { return x[i]; }
};

// An absent optional input (linear's bias): the undefined tensor of the case's type.
template <class In>
typename In::tensor absent(const In&) {
  return typename In::tensor();
}

// What a case's callable returned: the floating outputs (compared, and differentiated through the
// sum of each times its cotangent) and the index outputs (compared exactly).
template <class T, class D>
struct Outputs {
  std::vector<Tensor<T, D>> values;
  std::vector<Tensor<int64_t, D>> indices;
};

template <class T, class D, class R>
Outputs<T, D> to_outputs(const R& result) {
  if constexpr (std::is_same_v<R, Tensor<T, D>>) {
    return {{result}, {}};
  } else if constexpr (std::is_same_v<R, Tensor<int64_t, D>>) {
    return {{}, {result}};
  } else if constexpr (std::is_same_v<R, std::vector<Tensor<T, D>>>) {
    return {result, {}};
  } else {
    // MaxResult, TopKResult
    static_assert(
        requires { result.values, result.indices; },
        "op case: return a tensor, a vector of tensors, or {values, indices}");
    return {{result.values}, {result.indices}};
  }
}

template <class T, class D>
using Runner = std::function<Outputs<T, D>(const Inputs<T, D>&)>;

struct Tolerances {
  // Relative errors ‖a − b‖ / ‖b‖ of a whole output or gradient.
  double golden_forward = 1e-12, golden_gradient = 1e-10;  // double against PyTorch's float64
  double gradient = 1e-6;                                  // analytic against finite differences
  double step = 1e-6;                                      // the finite-difference step
  double cuda_float = 1e-5, cuda_bf16 = 1e-2;              // CUDA against the CPU in float
};

struct Case {
  std::string name;  // "<op>" or "<op>.<variant>"
  std::vector<InputSpec> inputs;
  std::string golden_prefix;                // empty: no goldens
  std::vector<std::string> golden_outputs;  // key suffixes, values then indices (default below)
  bool golden_rows = false;                 // compare each slice of dimension 0 on its own
  Tolerances tolerance;
  // FLOPs of the forward for the perf mode's input shapes (empty: bytes are counted instead), and
  // the backward's as a multiple of it.
  std::function<double(const std::vector<Shape>&)> forward_flops;
  double backward_flops_factor = 2.0;

  Runner<double, CPU> cpu_double;
  Runner<float, CPU> cpu_float;
#if defined(MENTOR_WITH_CUDA)
  Runner<float, CUDA> cuda_float;
  Runner<bf16, CUDA> cuda_bf16;
#endif

  std::string op() const { return name.substr(0, name.find('.')); }

  // The goldens `<prefix>.in.<input>`, `.out[.<output>]`, `.cot[.<output>]`, `.grad.<input>`.
  // Output names default to none for a single output and 0, 1, ... otherwise.
  Case& golden(std::string prefix, std::vector<std::string> output_names = {}) {
    golden_prefix = std::move(prefix);
    golden_outputs = std::move(output_names);
    return *this;
  }
  // Row by row: an output whose rows differ in scale by orders of magnitude (l2_normalize's
  // clamped row) would hide the other rows' errors in one norm.
  Case& golden_by_rows() {
    golden_rows = true;
    return *this;
  }
  Case& golden_tolerance(double forward, double gradient) {
    tolerance.golden_forward = forward;
    tolerance.golden_gradient = gradient;
    return *this;
  }
  Case& gradient_tolerance(double relative, double step = 1e-6) {
    tolerance.gradient = relative;
    tolerance.step = step;
    return *this;
  }
  Case& cuda_tolerance(double float32, double bf16_relative) {
    tolerance.cuda_float = float32;
    tolerance.cuda_bf16 = bf16_relative;
    return *this;
  }
  Case& flops(std::function<double(const std::vector<Shape>&)> forward,
              double backward_factor = 2.0) {
    forward_flops = std::move(forward);
    backward_flops_factor = backward_factor;
    return *this;
  }
};

class Registry {
 public:
  // Registers `f` (generic over the tensor type) for every element type and device. The returned
  // reference is for chaining the optional settings; it is valid until the next add().
  template <class F>
  Case& add(std::string name, std::vector<InputSpec> inputs, F f) {
    Case& c = cases_.emplace_back();
    c.name = std::move(name);
    c.inputs = std::move(inputs);
    c.cpu_double = runner<double, CPU>(f);
    c.cpu_float = runner<float, CPU>(f);
#if defined(MENTOR_WITH_CUDA)
    c.cuda_float = runner<float, CUDA>(f);
    c.cuda_bf16 = runner<bf16, CUDA>(f);
#endif
    return c;
  }
  const std::vector<Case>& cases() const { return cases_; }

 private:
  template <class T, class D, class F>
  static Runner<T, D> runner(const F& f) {
    return [f](const Inputs<T, D>& in) { return to_outputs<T, D>(f(in)); };
  }
  std::vector<Case> cases_;
};

// The registrations, one function per group of op headers (separate translation units).
void register_pointwise_cases(Registry& r);  // unary, elementwise, reduce, softmax, loss, ...
void register_layer_cases(Registry& r);      // matmul, norm, attention, conv, embedding, rope
void register_shape_cases(Registry& r);      // shape_ops

// The op_cases driver (op_cases.cpp): runs the mode named by argv[1] over the cases that
// `register_cases` adds. Exit status 0 when every selected case passes.
int run(int argc, char** argv, void (*register_cases)(Registry&));

}  // namespace mentor::op_cases
