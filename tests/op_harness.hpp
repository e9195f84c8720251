#pragma once
// The op-test harness (after ggml's test-backend-ops): golden values written by PyTorch
// (tools/reference/make_op_goldens.py -> tests/goldens/ops.safetensors) and gradient checks against
// central finite differences in double precision.
#include <cmath>
#include <functional>
#include <string>
#include <vector>

#include "catch.hpp"
#include "mentor/autograd/gradcheck.hpp"
#include "mentor/core/tensor.hpp"
#include "mentor/io/safetensors.hpp"

namespace mentor::test {

inline const io::SafeTensorsFile& op_goldens() {
  static io::SafeTensorsFile file =
      io::SafeTensorsFile::open(std::string(MENTOR_SOURCE_DIR) + "/tests/goldens/ops.safetensors");
  return file;
}

// A golden tensor as Tensor<T> (converted from the stored dtype).
template <class T>
Tensor<T> golden(const std::string& key, const io::SafeTensorsFile& file = op_goldens()) {
  const auto& info = file.info(key);
  std::vector<T> values = file.read_as<T>(key);
  return Tensor<T>::from_vector(values, Shape(info.shape));
}

// A boolean mask stored as uint8 (0 or 1) by the golden script.
inline Tensor<bool> golden_mask(const std::string& key) { return golden<uint8_t>(key).to<bool>(); }

// Case parameters stored by the golden script as JSON in the file's metadata.
inline std::string golden_params(const std::string& name) {
  auto it = op_goldens().metadata().find(name);
  return it == op_goldens().metadata().end() ? std::string("{}") : it->second;
}

// ‖a − b‖ / max(‖b‖, tiny), computed in double.
template <class T, class U>
double rel_error(const Tensor<T>& a, const Tensor<U>& b) {
  REQUIRE(a.shape() == b.shape());
  auto va = a.to_vector();
  auto vb = b.to_vector();
  double num = 0, den = 0;
  for (size_t i = 0; i < va.size(); ++i) {
    double x = static_cast<double>(static_cast<acc_t<T>>(va[i]));
    double y = static_cast<double>(static_cast<acc_t<U>>(vb[i]));
    num += (x - y) * (x - y);
    den += y * y;
  }
  return std::sqrt(num) / std::max(std::sqrt(den), 1e-30);
}

template <class T>
double max_abs_diff(const Tensor<T>& a, const Tensor<T>& b) {
  REQUIRE(a.shape() == b.shape());
  auto va = a.to_vector();
  auto vb = b.to_vector();
  double m = 0;
  for (size_t i = 0; i < va.size(); ++i)
    m = std::max(m, std::abs(static_cast<double>(va[i]) - static_cast<double>(vb[i])));
  return m;
}

using DoubleFn = std::function<Tensor<double>(const std::vector<Tensor<double>>&)>;

// Checks every input's gradient of sum(f(inputs) · cotangent) against central differences
// (autograd::finite_difference_gradients, the code behind the public gradcheck) by the relative
// error of the whole gradient. Returns the worst relative error.
inline double check_gradients(const DoubleFn& f, std::vector<Tensor<double>> inputs,
                              double tolerance = 1e-6, double step = 1e-6, uint64_t seed = 7) {
  const auto grads = autograd::finite_difference_gradients(f, std::move(inputs), step, seed);
  double worst = 0;
  for (size_t which = 0; which < grads.size(); ++which) {
    const auto& g = grads[which];
    double num = 0, den = 0;
    for (size_t i = 0; i < g.analytic.size(); ++i) {
      num += (g.analytic[i] - g.numeric[i]) * (g.analytic[i] - g.numeric[i]);
      den += g.numeric[i] * g.numeric[i];
    }
    double err = std::sqrt(num) / std::max(std::sqrt(den), 1e-12);
    INFO("input " << which << " of shape " << g.shape.str() << ": gradient relative error " << err);
    CHECK(err <= tolerance);
    worst = std::max(worst, err);
  }
  return worst;
}

// Golden check of one op case: forward value and (for every listed input) the gradient of
// sum(out · cot) as written by PyTorch.
inline void check_golden_case(const std::string& name, const DoubleFn& f,
                              const std::vector<std::string>& input_names, double fwd_tol = 1e-12,
                              double grad_tol = 1e-10) {
  std::vector<Tensor<double>> inputs;
  for (const auto& in : input_names) {
    Tensor<double> x = golden<double>(name + ".in." + in);
    x.requires_grad_();
    inputs.push_back(x);
  }
  Tensor<double> out = f(inputs);
  Tensor<double> expected = golden<double>(name + ".out");
  INFO(name << ": forward");
  CHECK(rel_error(out, expected) <= fwd_tol);
  if (op_goldens().contains(name + ".cot")) {
    out.backward(golden<double>(name + ".cot"));
    for (size_t i = 0; i < input_names.size(); ++i) {
      std::string key = name + ".grad." + input_names[i];
      if (!op_goldens().contains(key)) continue;
      INFO(name << ": gradient of " << input_names[i]);
      CHECK(rel_error(inputs[i].grad(), golden<double>(key)) <= grad_tol);
    }
  }
}

}  // namespace mentor::test
