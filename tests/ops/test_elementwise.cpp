// add, sub, mul, div with broadcasting: PyTorch goldens and finite differences.
#include "mentor/ops/elementwise.hpp"
#include "op_harness.hpp"

namespace test_elementwise {

using namespace mentor;
using mentor::test::check_golden_case;
using mentor::test::check_gradients;
using V = std::vector<Tensor<double>>;

TEST_CASE("binary ops match PyTorch goldens with broadcasting", "[ops][elementwise]") {
  for (std::string shapes : {"2x3x4_3x1", "2x1x5_1x4x1"}) {
    check_golden_case("add_" + shapes, [](const V& x) { return x[0] + x[1]; }, {"a", "b"});
    check_golden_case("sub_" + shapes, [](const V& x) { return x[0] - x[1]; }, {"a", "b"});
    check_golden_case("mul_" + shapes, [](const V& x) { return x[0] * x[1]; }, {"a", "b"});
    check_golden_case("div_" + shapes, [](const V& x) { return x[0] / x[1]; }, {"a", "b"});
  }
}

TEST_CASE("binary ops gradients match finite differences", "[ops][elementwise][grad]") {
  Generator gen(3);
  auto a = Tensor<double>::randn({2, 3, 4}, gen);
  auto b = Tensor<double>::rand({3, 1}, gen, 0.5f, 2.0f);
  check_gradients([](const V& x) { return (x[0] * x[1] - x[0] / x[1] + x[1]) * 1.5 - 2.0; },
                  {a, b});
  // A non-contiguous operand exercises the strided kernel.
  check_gradients([](const V& x) { return x[0].transpose(0, 2) * x[1]; },
                  {a, Tensor<double>::randn({3, 2}, gen)});
}

TEST_CASE("binary ops reject shapes that do not broadcast, naming both",
          "[ops][elementwise][errors]") {
  auto a = Tensor<float>::zeros({2, 3});
  auto b = Tensor<float>::zeros({4});
  REQUIRE_THROWS_AS(a + b, ShapeError);
  REQUIRE_THROWS_WITH(
      a * b, Catch::Contains("mul") && Catch::Contains("[2, 3]") && Catch::Contains("[4]"));
}

TEST_CASE("bf16 arithmetic accumulates in float and rounds once", "[ops][elementwise][bf16]") {
  auto a = Tensor<float>::from_vector({1.0f, 3.0f, 1.0f / 3.0f}).to<bf16>();
  auto b = Tensor<float>::from_vector({0.00390625f, 1.0f, 3.0f}).to<bf16>();
  auto c = (a * b).to<float>().to_vector();
  CHECK(c[0] == 0.00390625f);
  CHECK(c[1] == 3.0f);
  CHECK(std::abs(c[2] - 1.0f) <= 1.0f / 128);
}

}  // namespace test_elementwise
