#pragma once
// gradcheck: compares the gradients autograd computes for a function of several tensors with
// central finite differences in double precision, the check every op of mentor passes.
//
//   auto result = autograd::gradcheck(
//       [](const std::vector<Tensor<double>>& in) { return my_op(in[0], in[1]); }, {a, b});
//   if (!result) std::cerr << result.message << "\n";
//
// The scalar differentiated is sum(f(inputs) * cotangent) with a fixed random cotangent, so every
// output element takes part. An element passes when |analytic - numeric| <= atol + rtol * |numeric|
// (the rule of torch.autograd.gradcheck); the result reports the worst element by that ratio, with
// its input and index.
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <functional>
#include <limits>
#include <string>
#include <vector>

#include "mentor/core/tensor.hpp"

namespace mentor::autograd {

using GradcheckFunction = std::function<Tensor<double>(const std::vector<Tensor<double>>&)>;

struct GradcheckOptions {
  double step = 1e-6;  // finite-difference step h: (f(x + h) - f(x - h)) / 2h
  double rtol = 1e-5;
  double atol = 1e-8;
  uint64_t seed = 7;  // of the random cotangent
};

// Analytic (autograd) and numeric (central difference) gradients of one input, flattened in
// row-major order of its shape.
struct InputGradients {
  Shape shape;
  std::vector<double> analytic;
  std::vector<double> numeric;
};

// Both gradients of sum(f(inputs) * cotangent) for every input. The inputs are copied (the caller's
// tensors are not marked or changed); an input that receives no gradient is an error.
inline std::vector<InputGradients> finite_difference_gradients(const GradcheckFunction& f,
                                                               std::vector<Tensor<double>> inputs,
                                                               double step = 1e-6,
                                                               uint64_t seed = 7) {
  MENTOR_CHECK(step > 0, "gradcheck: the finite-difference step ", step, " must be positive");
  for (size_t which = 0; which < inputs.size(); ++which) {
    MENTOR_CHECK(inputs[which].defined(), "gradcheck: input ", which, " is an undefined tensor");
    inputs[which] = inputs[which].detach().clone();
    inputs[which].requires_grad_();
  }
  Tensor<double> out = f(inputs);
  MENTOR_CHECK(out.defined(), "gradcheck: the function returned an undefined tensor");
  Generator gen(seed);
  Tensor<double> cotangent = Tensor<double>::randn(out.shape(), gen);
  out.backward(cotangent);
  const std::vector<double> cot = cotangent.to_vector();
  auto objective = [&]() {
    NoGradGuard no_grad;
    std::vector<double> y = f(inputs).contiguous().to_vector();
    double sum = 0;
    for (size_t i = 0; i < y.size(); ++i) sum += y[i] * cot[i];
    return sum;
  };
  std::vector<InputGradients> result;
  for (size_t which = 0; which < inputs.size(); ++which) {
    Tensor<double>& x = inputs[which];
    MENTOR_CHECK(x.grad().defined(), "gradcheck: input ", which, " of shape ", x.shape().str(),
                 " received no gradient (is it used by the function?)");
    InputGradients grads{x.shape(), x.grad().to_vector(), {}};
    grads.numeric.resize(grads.analytic.size());
    double* p = x.data();  // a fresh contiguous clone, so element i is p[i]
    for (int64_t i = 0; i < x.numel(); ++i) {
      const double saved = p[i];
      p[i] = saved + step;
      const double plus = objective();
      p[i] = saved - step;
      const double minus = objective();
      p[i] = saved;
      grads.numeric[static_cast<size_t>(i)] = (plus - minus) / (2 * step);
    }
    result.push_back(std::move(grads));
  }
  return result;
}

struct GradcheckResult {
  bool ok = true;
  // The worst element (largest |analytic - numeric| / (atol + rtol * |numeric|)); input -1 when
  // no input has elements.
  int input = -1;
  std::vector<int64_t> index;
  double analytic = 0;
  double numeric = 0;
  double ratio = 0;  // <= 1 passes
  std::string message;
  explicit operator bool() const { return ok; }
};

inline GradcheckResult gradcheck(const GradcheckFunction& f,
                                 const std::vector<Tensor<double>>& inputs,
                                 const GradcheckOptions& options = {}) {
  MENTOR_CHECK(options.rtol >= 0 && options.atol >= 0 && options.rtol + options.atol > 0,
               "gradcheck: tolerances rtol ", options.rtol, " and atol ", options.atol,
               " must be non-negative and not both zero");
  GradcheckResult result;
  const auto grads = finite_difference_gradients(f, inputs, options.step, options.seed);
  int64_t worst_flat = 0;
  for (size_t which = 0; which < grads.size(); ++which) {
    const InputGradients& g = grads[which];
    for (size_t i = 0; i < g.analytic.size(); ++i) {
      const double diff = std::abs(g.analytic[i] - g.numeric[i]);
      double ratio = diff / (options.atol + options.rtol * std::abs(g.numeric[i]));
      if (std::isnan(diff)) ratio = std::numeric_limits<double>::infinity();
      if (result.input < 0 || ratio > result.ratio) {
        result.input = static_cast<int>(which);
        worst_flat = static_cast<int64_t>(i);
        result.analytic = g.analytic[i];
        result.numeric = g.numeric[i];
        result.ratio = ratio;
      }
    }
  }
  result.ok = result.ratio <= 1;
  if (result.input < 0) {
    result.message = "gradcheck: no input has elements: nothing checked";
    return result;
  }
  // The flat row-major index as a full index of its input's shape.
  const Shape& shape = grads[static_cast<size_t>(result.input)].shape;
  result.index.assign(static_cast<size_t>(shape.rank()), 0);
  for (int d = shape.rank() - 1; d >= 0; --d) {
    result.index[static_cast<size_t>(d)] = worst_flat % shape[d];
    worst_flat /= shape[d];
  }
  std::string index_text = "[";
  for (size_t d = 0; d < result.index.size(); ++d)
    index_text += (d ? ", " : "") + std::to_string(result.index[d]);
  index_text += "]";
  result.message = mentor::detail::concat(
      "gradcheck ", result.ok ? "passed" : "FAILED", ": worst element is input ", result.input,
      " (shape ", shape.str(), ") at ", index_text, ": analytic ", result.analytic, ", numeric ",
      result.numeric, ", |difference| ", std::abs(result.analytic - result.numeric), " vs allowed ",
      options.atol + options.rtol * std::abs(result.numeric), " (atol ", options.atol, " + rtol ",
      options.rtol, " * |numeric|)");
  return result;
}

}  // namespace mentor::autograd
