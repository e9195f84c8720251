// Element-wise unary ops: PyTorch goldens, finite differences (contiguous and transposed inputs),
// float32 / bf16 forward against the double result, and the vectorisable float exp.
#include <cmath>
#include <limits>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "mentor/ops/elementwise.hpp"
#include "mentor/ops/gated.hpp"
#include "mentor/ops/unary.hpp"
#include "op_harness.hpp"

namespace test_unary {

using namespace mentor;
using mentor::test::check_golden_case;
using mentor::test::check_gradients;
using mentor::test::golden_params;
using mentor::test::rel_error;
using V = std::vector<Tensor<double>>;

namespace {

double param(const std::string& name, const std::string& key) {
  return nlohmann::json::parse(golden_params(name)).at(key).get<double>();
}

// Values of N(0, std²) pushed at least `gap` away from 0 (so kinks stay out of finite differences).
Tensor<double> away_from_zero(const Shape& shape, Generator& gen, double std, double gap) {
  auto v = Tensor<double>::randn(shape, gen, 0.f, static_cast<float>(std)).to_vector();
  for (double& x : v) x += x >= 0 ? gap : -gap;
  return Tensor<double>::from_vector(v, shape);
}

// Gradients by finite differences (plain and through a transposed view) and the float32 / bf16
// forward against the double forward of the same (rounded) inputs.
template <class F>
void check_op(F f, const Tensor<double>& x) {
  check_gradients([&](const V& in) { return f(in[0]); }, {x});
  check_gradients([&](const V& in) { return f(in[0].transpose(0, 1)); }, {x});

  Tensor<float> xf = x.to<float>();
  CHECK(rel_error(f(xf), f(xf.to<double>())) <= 1e-5);
  Tensor<bf16> xb = x.to<bf16>();
  CHECK(rel_error(f(xb), f(xb.to<double>())) <= 1e-2);
}

}  // namespace

TEST_CASE("unary ops match PyTorch goldens", "[ops][unary]") {
  using X = Tensor<double>;
  check_golden_case("exp", [](const V& x) { return exp(x[0]); }, {"x"});
  check_golden_case("log", [](const V& x) { return log(x[0]); }, {"x"});
  check_golden_case("sqrt", [](const V& x) { return sqrt(x[0]); }, {"x"});
  check_golden_case("rsqrt", [](const V& x) { return rsqrt(x[0]); }, {"x"});
  check_golden_case("tanh", [](const V& x) { return tanh(x[0]); }, {"x"});
  check_golden_case("sigmoid", [](const V& x) { return sigmoid(x[0]); }, {"x"});
  check_golden_case("silu", [](const V& x) { return silu(x[0]); }, {"x"});
  check_golden_case("relu", [](const V& x) { return relu(x[0]); }, {"x"});
  REQUIRE(nlohmann::json::parse(golden_params("gelu_exact")).at("approximate") == "none");
  check_golden_case("gelu_exact", [](const V& x) { return gelu(x[0]); }, {"x"});
  REQUIRE(nlohmann::json::parse(golden_params("gelu_tanh")).at("approximate") == "tanh");
  check_golden_case("gelu_tanh", [](const V& x) { return gelu(x[0], GeluApprox::Tanh); }, {"x"});
  REQUIRE(param("quick_gelu", "alpha") == 1.702);
  check_golden_case("quick_gelu", [](const V& x) { return quick_gelu(x[0]); }, {"x"});
  REQUIRE(param("leaky_relu_0_2", "negative_slope") == 0.2);
  check_golden_case("leaky_relu_0_2", [](const V& x) { return leaky_relu(x[0], 0.2); }, {"x"});
  for (std::string name : {"pow_2_5", "pow_3"}) {
    double p = param(name, "exponent");
    check_golden_case(name, [p](const V& x) { return pow(x[0], p); }, {"x"});
  }
  // Composition through autograd: d/dx sum(exp(log(x))) = 1.
  Generator gen(1);
  X x = X::rand({3, 4}, gen, 0.5f, 2.0f);
  x.requires_grad_();
  Tensor<double> y = exp(log(x));
  y.backward(X::ones({3, 4}));
  CHECK(rel_error(x.grad(), X::ones({3, 4})) <= 1e-14);
}

TEST_CASE("unary ops: gradients by finite differences, float and bf16 forward",
          "[ops][unary][grad]") {
  Generator gen(11);
  const Shape shape{4, 6};
  auto normal = [&](float std) { return Tensor<double>::randn(shape, gen, 0.f, std); };
  auto positive = [&](float lo, float hi) { return Tensor<double>::rand(shape, gen, lo, hi); };
  SECTION("exp") {
    check_op([](const auto& x) { return exp(x); }, normal(1.5f));
  }
  SECTION("log") {
    check_op([](const auto& x) { return log(x); }, positive(0.2f, 3.f));
  }
  SECTION("sqrt") {
    check_op([](const auto& x) { return sqrt(x); }, positive(0.2f, 3.f));
  }
  SECTION("rsqrt") {
    check_op([](const auto& x) { return rsqrt(x); }, positive(0.2f, 3.f));
  }
  SECTION("tanh") {
    check_op([](const auto& x) { return tanh(x); }, normal(1.5f));
  }
  SECTION("sigmoid") {
    check_op([](const auto& x) { return sigmoid(x); }, normal(3.f));
  }
  SECTION("silu") {
    check_op([](const auto& x) { return silu(x); }, normal(3.f));
  }
  SECTION("relu") {
    check_op([](const auto& x) { return relu(x); }, away_from_zero(shape, gen, 1, 0.05));
  }
  SECTION("abs") {
    check_op([](const auto& x) { return abs(x); }, away_from_zero(shape, gen, 1, 0.05));
  }
  SECTION("square") {
    check_op([](const auto& x) { return square(x); }, normal(1.f));
  }
  SECTION("pow") {
    check_op([](const auto& x) { return pow(x, 2.5); }, positive(0.2f, 2.f));
    check_op([](const auto& x) { return pow(x, -1.5); }, positive(0.2f, 2.f));
    check_op([](const auto& x) { return pow(x, 3.0); }, normal(1.f));
  }
  SECTION("gelu") {
    check_op([](const auto& x) { return gelu(x); }, normal(2.f));
    check_op([](const auto& x) { return gelu(x, GeluApprox::Tanh); }, normal(2.f));
  }
  SECTION("quick_gelu") {
    check_op([](const auto& x) { return quick_gelu(x); }, normal(2.f));
  }
  SECTION("leaky_relu") {
    check_op([](const auto& x) { return leaky_relu(x, 0.2); }, away_from_zero(shape, gen, 1, 0.05));
  }
}

TEST_CASE("abs, square, relu and pow against libm", "[ops][unary]") {
  auto x = Tensor<double>::from_vector({-2.5, -1.0, 0.0, 0.5, 3.0});
  auto check_each = [&](const Tensor<double>& out, auto ref) {
    auto vx = x.to_vector(), vo = out.to_vector();
    for (size_t i = 0; i < vx.size(); ++i) CHECK(vo[i] == ref(vx[i]));
  };
  check_each(abs(x), [](double v) { return std::abs(v); });
  check_each(square(x), [](double v) { return v * v; });
  check_each(relu(x), [](double v) { return std::max(v, 0.0); });
  check_each(pow(abs(x), 0.5), [](double v) { return std::pow(std::abs(v), 0.5); });
  // torch's conventions at the kinks: abs'(0) = 0, relu'(0) = 0.
  auto z = Tensor<double>::zeros({1}).requires_grad_();
  abs(z).backward(Tensor<double>::ones({1}));
  CHECK(z.grad().item() == 0.0);
  auto z2 = Tensor<double>::zeros({1}).requires_grad_();
  relu(z2).backward(Tensor<double>::ones({1}));
  CHECK(z2.grad().item() == 0.0);
}

TEST_CASE("unary ops on large float tensors match double (parallel path)", "[ops][unary]") {
  Generator gen(5);
  auto x = Tensor<float>::randn({300, 1000}, gen, 0.f, 3.f);
  auto xd = x.to<double>();
  CHECK(rel_error(silu(x), silu(xd)) <= 1e-6);
  CHECK(rel_error(exp(x), exp(xd)) <= 1e-6);
  CHECK(rel_error(gelu(x), gelu(xd)) <= 1e-6);
}

TEST_CASE("the vectorisable float exp is accurate and handles the edges", "[ops][unary]") {
  double worst = 0;
  for (double x = -87.3; x <= 88.72; x += 0.000937) {
    float xf = static_cast<float>(x);
    double ref = std::exp(static_cast<double>(xf));
    worst = std::max(worst, std::abs(cpu::exp_vectorizable(xf) - ref) / ref);
  }
  INFO("worst relative error " << worst);
  CHECK(worst < 3e-7);
  const float inf = std::numeric_limits<float>::infinity();
  CHECK(cpu::exp_vectorizable(0.0f) == 1.0f);
  CHECK(cpu::exp_vectorizable(-inf) == 0.0f);
  CHECK(cpu::exp_vectorizable(-1000.0f) == 0.0f);
  CHECK(cpu::exp_vectorizable(inf) == inf);
  CHECK(cpu::exp_vectorizable(89.0f) == inf);
  CHECK(std::isnan(cpu::exp_vectorizable(std::numeric_limits<float>::quiet_NaN())));
  // sigmoid saturates cleanly at both ends in float.
  auto s = sigmoid(Tensor<float>::from_vector({-200.f, 200.f})).to_vector();
  CHECK(s[0] == 0.0f);
  CHECK(s[1] == 1.0f);
}

TEST_CASE("the gated ops are act then mul, their gradients too, in double, float and bf16",
          "[ops][unary]") {
  Generator gen(23);
  const auto gate = Tensor<double>::randn({64, 96}, gen, 0.f, 3.f);
  const auto up = Tensor<double>::randn({64, 96}, gen);
  const auto cot = Tensor<double>::randn({64, 96}, gen);
  // Each case, fused and composed, at the element type of run()'s tag.
  const std::vector<std::string> names{"swiglu", "geglu", "geglu.tanh"};
  for (size_t which = 0; which < names.size(); ++which) {
    auto run = [&](auto tag, bool fused) {
      using T = decltype(tag);
      auto a = gate.to<T>(), b = up.to<T>();
      a.requires_grad_();
      b.requires_grad_();
      Tensor<T> out;
      if (which == 0) out = fused ? swiglu(a, b) : mul(silu(a), b);
      if (which == 1) out = fused ? geglu(a, b) : mul(gelu(a), b);
      if (which == 2)
        out = fused ? geglu(a, b, GeluApprox::Tanh) : mul(gelu(a, GeluApprox::Tanh), b);
      out.backward(cot.to<T>());
      return V{out.template to<double>(), a.grad().template to<double>(),
               b.grad().template to<double>()};
    };
    const V expected = run(double{}, false);
    const V f64 = run(double{}, true), f32 = run(float{}, true), b16 = run(bf16{}, true);
    for (size_t i = 0; i < expected.size(); ++i) {
      INFO(names[which] << " output " << i << " (0 = forward, 1 = d gate, 2 = d up)");
      CHECK(rel_error(f64[i], expected[i]) <= 1e-14);
      CHECK(rel_error(f32[i], expected[i]) <= 1e-6);
      CHECK(rel_error(b16[i], expected[i]) <= 1e-2);
    }
  }
  check_gradients([](const V& in) { return swiglu(in[0], in[1]); }, {gate, up});
  check_gradients([](const V& in) { return geglu(in[0], in[1], GeluApprox::Tanh); }, {gate, up});
  CHECK_THROWS_WITH(swiglu(gate, up.narrow(1, 0, 10)),
                    Catch::Matchers::Contains("swiglu: gate [64, 96] and up [64, 10] differ"));
}

}  // namespace test_unary
