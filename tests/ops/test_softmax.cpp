// softmax and log_softmax: PyTorch goldens, finite differences on every dimension, a naive
// long-double reference on wide rows, stability, masked (-inf) entries, float32 / bf16.
#include <cmath>
#include <limits>

#include "mentor/ops/softmax.hpp"
#include "op_harness.hpp"

namespace test_softmax {

using namespace mentor;
using mentor::test::check_golden_case;
using mentor::test::check_gradients;
using mentor::test::rel_error;
using V = std::vector<Tensor<double>>;

namespace {

// Naive reference in long double over the last dimension of a [rows, n] tensor.
Tensor<double> naive_softmax(const Tensor<double>& x, bool log) {
  auto v = x.to_vector();
  const int64_t n = x.size(-1), rows = x.numel() / n;
  std::vector<double> out(v.size());
  for (int64_t r = 0; r < rows; ++r) {
    long double m = -INFINITY, s = 0;
    for (int64_t i = 0; i < n; ++i) m = std::max<long double>(m, v[r * n + i]);
    for (int64_t i = 0; i < n; ++i) s += std::exp(static_cast<long double>(v[r * n + i]) - m);
    for (int64_t i = 0; i < n; ++i) {
      long double z = static_cast<long double>(v[r * n + i]) - m;
      out[r * n + i] = static_cast<double>(log ? z - std::log(s) : std::exp(z) / s);
    }
  }
  return Tensor<double>::from_vector(out, x.shape());
}

}  // namespace

TEST_CASE("softmax and log_softmax match PyTorch goldens", "[ops][softmax]") {
  check_golden_case("softmax_last", [](const V& x) { return softmax(x[0], -1); }, {"x"});
  check_golden_case("log_softmax_last", [](const V& x) { return log_softmax(x[0], -1); }, {"x"});
}

TEST_CASE("softmax: gradients by finite differences on every dimension", "[ops][softmax][grad]") {
  Generator gen(31);
  auto x = Tensor<double>::randn({3, 4, 5}, gen, 0.f, 2.f);
  for (int64_t dim : {0, 1, 2, -1}) {
    check_gradients([=](const V& in) { return softmax(in[0], dim); }, {x});
    check_gradients([=](const V& in) { return log_softmax(in[0], dim); }, {x});
  }
  check_gradients([](const V& in) { return softmax(in[0].transpose(0, 2), -1); }, {x});
  check_gradients([](const V& in) { return log_softmax(in[0].transpose(1, 2), 1); }, {x});
}

TEST_CASE("softmax on wide rows matches a long-double reference (float, bf16)", "[ops][softmax]") {
  Generator gen(2);
  // 5000 wide: more than one of the kernel's 2048-wide blocks, with a tail.
  auto x = Tensor<double>::randn({6, 5000}, gen, 0.f, 8.f);
  for (bool log : {false, true}) {
    auto ref = naive_softmax(x, log);
    auto ours = log ? log_softmax(x) : softmax(x);
    CHECK(rel_error(ours, ref) <= 1e-13);
    auto xf = x.to<float>();
    auto ref_f = naive_softmax(xf.to<double>(), log);
    CHECK(rel_error(log ? log_softmax(xf) : softmax(xf), ref_f) <= 1e-5);
    auto xb = x.to<bf16>();
    auto ref_b = naive_softmax(xb.to<double>(), log);
    CHECK(rel_error(log ? log_softmax(xb) : softmax(xb), ref_b) <= 1e-2);
  }
  // Rows sum to one; a later block with a much larger maximum rescales the running sum.
  std::vector<float> v(5000, -30.f);
  v[4999] = 40.f;
  v[10] = 39.f;
  auto y = softmax(Tensor<float>::from_vector(v, {1, 5000})).to_vector();
  double total = 0;
  for (float e : y) total += e;
  CHECK(total == Approx(1.0).epsilon(1e-6));
  CHECK(y[4999] == Approx(1.0 / (1.0 + std::exp(-1.0))).epsilon(1e-6));
}

TEST_CASE("softmax is stable for huge logits and exact for masked entries", "[ops][softmax]") {
  const float inf = std::numeric_limits<float>::infinity();
  auto x = Tensor<float>::from_vector({1000.f, 1001.f, 999.f, -inf}, {1, 4});
  auto y = softmax(x).to_vector();
  auto ref =
      naive_softmax(Tensor<double>::from_vector({0, 1, -1, -INFINITY}, {1, 4}), false).to_vector();
  for (int i = 0; i < 3; ++i) CHECK(y[i] == Approx(ref[i]).epsilon(1e-6));
  CHECK(y[3] == 0.0f);
  auto ly = log_softmax(x).to_vector();
  CHECK(std::isinf(ly[3]));
  CHECK(ly[1] == Approx(std::log(ref[1])).epsilon(1e-6));
  // A row whose first blocks are fully masked.
  std::vector<float> v(6000, -inf);
  v[5000] = 2.f;
  v[5001] = 2.f;
  auto ym = softmax(Tensor<float>::from_vector(v, {6000})).to_vector();
  CHECK(ym[5000] == 0.5f);
  CHECK(ym[5001] == 0.5f);
  CHECK(ym[0] == 0.0f);
  // Gradient through a masked row: nothing flows to the masked entries.
  auto xd = Tensor<double>::from_vector({0.5, -INFINITY, 1.5}, {3}).requires_grad_();
  softmax(xd).backward(Tensor<double>::from_vector({1.0, 2.0, -1.0}, {3}));
  CHECK(xd.grad().to_vector()[1] == 0.0);
}

TEST_CASE("softmax rejects a bad dimension, naming the op", "[ops][softmax][errors]") {
  auto x = Tensor<float>::zeros({2, 3});
  REQUIRE_THROWS_AS(softmax(x, 2), ShapeError);
  REQUIRE_THROWS_WITH(softmax(x, 2), Catch::Contains("softmax") && Catch::Contains("rank 2"));
  REQUIRE_THROWS_WITH(log_softmax(x, -3), Catch::Contains("log_softmax"));
}

}  // namespace test_softmax
