// l2_normalize: the PyTorch golden (compared row by row: one row sits below eps, where values and
// gradients are ~1e12 times the others), finite differences on both branches, float32 / bf16.
#include <cmath>

#include "mentor/ops/normalize.hpp"
#include "op_harness.hpp"

namespace test_normalize {

using namespace mentor;
using mentor::test::check_gradients;
using mentor::test::golden;
using mentor::test::rel_error;
using V = std::vector<Tensor<double>>;

TEST_CASE("l2_normalize matches the PyTorch golden row by row", "[ops][normalize]") {
  auto x = golden<double>("l2_normalize.in.x").requires_grad_();
  auto out = l2_normalize(x, -1, 1e-12);
  out.backward(golden<double>("l2_normalize.cot"));
  auto expected = golden<double>("l2_normalize.out");
  auto expected_grad = golden<double>("l2_normalize.grad.x");
  for (int64_t r = 0; r < x.size(0); ++r) {
    INFO("row " << r);
    CHECK(rel_error(out.detach().select(0, r).contiguous(), expected.select(0, r).contiguous()) <=
          1e-12);
    CHECK(rel_error(x.grad().select(0, r).contiguous(), expected_grad.select(0, r).contiguous()) <=
          1e-10);
  }
  // Row 2 is the clamped one: out = x / eps there.
  CHECK(std::abs(out.at({2, 0}) - x.at({2, 0}) / 1e-12) <= 1e-12 * std::abs(out.at({2, 0})));
}

TEST_CASE("l2_normalize: gradients by finite differences", "[ops][normalize][grad]") {
  Generator gen(51);
  auto x = Tensor<double>::randn({3, 4, 5}, gen);
  for (int64_t dim : {0, 1, 2, -1})
    check_gradients([=](const V& in) { return l2_normalize(in[0], dim); }, {x});
  check_gradients([](const V& in) { return l2_normalize(in[0].transpose(0, 2), -1); }, {x});
  // Clamped branch: rows with norm below eps are x / eps, linear in x.
  auto tiny = Tensor<double>::randn({2, 6}, gen, 0.f, 1e-4f);
  check_gradients([](const V& in) { return l2_normalize(in[0], -1, 1e-2); }, {tiny}, 1e-6, 1e-9);
}

TEST_CASE("l2_normalize gives unit rows; float and bf16 forward", "[ops][normalize]") {
  Generator gen(52);
  auto x = Tensor<double>::randn({7, 300}, gen, 0.f, 5.f);
  auto y = l2_normalize(x);
  for (int64_t r = 0; r < 7; ++r) {
    double s = 0;
    for (int64_t i = 0; i < 300; ++i) s += y.at({r, i}) * y.at({r, i});
    CHECK(s == Approx(1.0).epsilon(1e-14));
  }
  auto xf = x.to<float>();
  CHECK(rel_error(l2_normalize(xf), l2_normalize(xf.to<double>())) <= 1e-6);
  auto xb = x.to<bf16>();
  CHECK(rel_error(l2_normalize(xb), l2_normalize(xb.to<double>())) <= 1e-2);
  CHECK(rel_error(l2_normalize(xf, 0), l2_normalize(xf.to<double>(), 0)) <= 1e-6);
  // A zero row stays zero (denominator eps), with gradient g / eps.
  auto z = Tensor<double>::zeros({1, 3}).requires_grad_();
  auto yz = l2_normalize(z, -1, 0.5);
  CHECK(yz.to_vector() == std::vector<double>{0, 0, 0});
  yz.backward(Tensor<double>::from_vector({1, 2, 3}, {1, 3}));
  CHECK(z.grad().to_vector() == std::vector<double>{2, 4, 6});
}

TEST_CASE("l2_normalize rejects a bad dimension, naming the op", "[ops][normalize][errors]") {
  auto x = Tensor<float>::zeros({2, 3});
  REQUIRE_THROWS_AS(l2_normalize(x, 2), ShapeError);
  REQUIRE_THROWS_WITH(l2_normalize(x, -3),
                      Catch::Contains("l2_normalize") && Catch::Contains("-3"));
}

}  // namespace test_normalize
