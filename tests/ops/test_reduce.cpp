// sum, mean, max, argmax, argmin, topk: PyTorch goldens, finite differences, brute-force
// references, float32 / bf16 forward and the error messages.
#include <algorithm>
#include <numeric>

#include "mentor/ops/reduce.hpp"
#include "op_harness.hpp"

namespace test_reduce {

using namespace mentor;
using mentor::test::check_golden_case;
using mentor::test::check_gradients;
using mentor::test::golden;
using mentor::test::rel_error;
using V = std::vector<Tensor<double>>;

TEST_CASE("sum and mean match PyTorch goldens", "[ops][reduce]") {
  check_golden_case("sum_dim1_keepdim", [](const V& x) { return sum(x[0], 1, true); }, {"x"});
  check_golden_case("mean_last", [](const V& x) { return mean(x[0], -1); }, {"x"});
  // The golden stores the full sum as shape [1]; ours is a scalar [].
  check_golden_case("sum_all", [](const V& x) { return sum(x[0]).reshape(Shape{1}); }, {"x"});
}

TEST_CASE("max, argmin and topk match PyTorch goldens", "[ops][reduce]") {
  SECTION("max_last") {
    auto x = golden<double>("max_last.in.x").requires_grad_();
    auto r = max(x, -1);
    CHECK(rel_error(r.values, golden<double>("max_last.out.values")) <= 1e-15);
    CHECK(r.indices.to_vector() == golden<int64_t>("max_last.out.indices").to_vector());
    r.values.backward(golden<double>("max_last.cot.values"));
    CHECK(rel_error(x.grad(), golden<double>("max_last.grad.x")) <= 1e-15);
  }
  SECTION("argmin_last") {
    auto x = golden<double>("argmin_last.in.x");
    auto idx = argmin(x, -1);
    CHECK(idx.shape() == Shape{3, 5});
    CHECK(idx.to_vector() == golden<int64_t>("argmin_last.out").to_vector());
  }
  SECTION("topk_last") {
    auto x = golden<double>("topk_last.in.x").requires_grad_();
    auto r = topk(x, 3, -1, true);
    CHECK(rel_error(r.values, golden<double>("topk_last.out.values")) <= 1e-15);
    CHECK(r.indices.to_vector() == golden<int64_t>("topk_last.out.indices").to_vector());
    r.values.backward(golden<double>("topk_last.cot.values"));
    CHECK(rel_error(x.grad(), golden<double>("topk_last.grad.x")) <= 1e-15);
  }
}

TEST_CASE("reductions: gradients by finite differences", "[ops][reduce][grad]") {
  Generator gen(21);
  auto x = Tensor<double>::randn({3, 4, 5}, gen);
  for (int64_t dim : {0, 1, 2, -1})
    for (bool keep : {false, true}) {
      check_gradients([=](const V& in) { return sum(in[0], dim, keep); }, {x});
      check_gradients([=](const V& in) { return mean(in[0], dim, keep); }, {x});
      check_gradients([=](const V& in) { return max(in[0], dim, keep).values; }, {x});
    }
  check_gradients([](const V& in) { return sum(in[0]); }, {x});
  check_gradients([](const V& in) { return mean(in[0]); }, {x});
  // Non-contiguous inputs.
  check_gradients([](const V& in) { return sum(in[0].transpose(0, 2), 1); }, {x});
  check_gradients([](const V& in) { return max(in[0].transpose(1, 2), 0).values; }, {x});
  for (int64_t dim : {0, 1, 2})
    for (bool largest : {true, false})
      check_gradients([=](const V& in) { return topk(in[0], 2, dim, largest).values; }, {x});
  check_gradients([](const V& in) { return topk(in[0].transpose(0, 1), 3, 0).values; }, {x});
}

TEST_CASE("reductions agree with brute force on every dimension", "[ops][reduce]") {
  Generator gen(4);
  const Shape shape{4, 6, 7};
  auto x = Tensor<double>::randn(shape, gen);
  for (int dim = 0; dim < 3; ++dim) {
    auto s = sum(x, dim), m = mean(x, dim);
    auto mx = max(x, dim, true);
    auto am = argmax(x, dim), an = argmin(x, dim);
    auto tk = topk(x, 3, dim, false);
    CHECK(mx.values.shape() == (dim == 0   ? Shape{1, 6, 7}
                                : dim == 1 ? Shape{4, 1, 7}
                                           : Shape{4, 6, 1}));
    CHECK(tk.values.shape() == (dim == 0   ? Shape{3, 6, 7}
                                : dim == 1 ? Shape{4, 3, 7}
                                           : Shape{4, 6, 3}));
    for (int64_t i = 0; i < shape[0]; ++i)
      for (int64_t j = 0; j < shape[1]; ++j)
        for (int64_t k = 0; k < shape[2]; ++k) {
          if ((dim == 0 && i) || (dim == 1 && j) || (dim == 2 && k)) continue;
          std::vector<double> line;
          for (int64_t t = 0; t < shape[dim]; ++t)
            line.push_back(x.at({dim == 0 ? t : i, dim == 1 ? t : j, dim == 2 ? t : k}));
          double total = std::accumulate(line.begin(), line.end(), 0.0);
          auto hi = std::max_element(line.begin(), line.end()) - line.begin();
          auto lo = std::min_element(line.begin(), line.end()) - line.begin();
          std::vector<double> sorted = line;
          std::sort(sorted.begin(), sorted.end());
          int64_t a = dim == 0 ? j : i, b = dim == 2 ? j : k;  // reduced index pair
          CHECK(s.at({a, b}) == Approx(total).epsilon(1e-14));
          CHECK(m.at({a, b}) == Approx(total / static_cast<double>(line.size())).epsilon(1e-14));
          CHECK(am.at({a, b}) == hi);
          CHECK(an.at({a, b}) == lo);
          CHECK(mx.values.at({dim == 0 ? 0 : i, dim == 1 ? 0 : j, dim == 2 ? 0 : k}) == line[hi]);
          for (int64_t r = 0; r < 3; ++r)
            CHECK(tk.values.at({dim == 0 ? r : i, dim == 1 ? r : j, dim == 2 ? r : k}) ==
                  sorted[r]);
        }
  }
}

TEST_CASE("ties pick the first index; topk edge cases; NaN propagates", "[ops][reduce]") {
  auto x = Tensor<double>::from_vector({1, 3, 3, 0, 0, 2}, {1, 6});
  CHECK(argmax(x, 1).item() == 1);
  CHECK(argmin(x, 1).item() == 3);
  CHECK(max(x, 1).indices.item() == 1);
  auto t = topk(x, 6, 1);
  CHECK(t.indices.to_vector() == std::vector<int64_t>{1, 2, 5, 0, 3, 4});
  auto t0 = topk(x, 0, 1);
  CHECK(t0.values.shape() == Shape{1, 0});
  CHECK(topk(x, 2, 1, false).indices.to_vector() == std::vector<int64_t>{3, 4});
  const double nan = std::numeric_limits<double>::quiet_NaN();
  auto xn = Tensor<double>::from_vector({1, nan, 5}, {3});
  CHECK(std::isnan(max(xn, 0).values.item()));
  CHECK(argmax(xn, 0).item() == 1);
  CHECK(std::isnan(sum(xn).item()));
  // keepdim shapes, scalars.
  CHECK(sum(x, 0, true).shape() == Shape{1, 6});
  CHECK(sum(x).shape() == Shape{});
  CHECK(sum(Tensor<double>::scalar(2.5), 0).item() == 2.5);
}

TEST_CASE("float and bf16 reductions; long sums accumulate in double", "[ops][reduce]") {
  Generator gen(9);
  auto xd = Tensor<double>::randn({64, 3000}, gen);
  auto xf = xd.to<float>();
  auto xb = xd.to<bf16>();
  for (int dim : {0, 1}) {
    CHECK(rel_error(sum(xf, dim), sum(xf.to<double>(), dim)) <= 1e-6);
    CHECK(rel_error(mean(xf, dim), mean(xf.to<double>(), dim)) <= 1e-6);
    CHECK(rel_error(sum(xb, dim), sum(xb.to<double>(), dim)) <= 1e-2);
    CHECK(rel_error(max(xf, dim).values, max(xf.to<double>(), dim).values) == 0);
    CHECK(argmax(xf, dim).to_vector() == argmax(xf.to<double>(), dim).to_vector());
    CHECK(rel_error(topk(xb, 5, dim).values, topk(xb.to<double>(), 5, dim).values) == 0);
  }
  CHECK(rel_error(sum(xf), sum(xf.to<double>())) <= 1e-6);
  // 2^24 + 3 ones: a float accumulator would stall at 2^24.
  const int64_t n = (int64_t{1} << 24) + 3;
  CHECK(sum(Tensor<float>::ones({n})).item() == static_cast<float>(n));
  CHECK(mean(Tensor<float>::full({n}, 0.5f)).item() == 0.5f);
  CHECK(sum(Tensor<bf16>::ones({4096, 8}), 0).to<float>().to_vector() ==
        std::vector<float>(8, 4096.0f));
}

TEST_CASE("reductions reject bad dimensions and k, naming the op and shape",
          "[ops][reduce][errors]") {
  auto x = Tensor<float>::zeros({2, 3});
  REQUIRE_THROWS_AS(sum(x, 2), ShapeError);
  REQUIRE_THROWS_WITH(sum(x, 2), Catch::Contains("sum") && Catch::Contains("2"));
  REQUIRE_THROWS_WITH(mean(x, -3), Catch::Contains("mean"));
  REQUIRE_THROWS_WITH(max(x, 5), Catch::Contains("max"));
  REQUIRE_THROWS_WITH(argmin(x, 7), Catch::Contains("argmin"));
  REQUIRE_THROWS_AS(topk(x, 4, 1), ShapeError);
  REQUIRE_THROWS_WITH(topk(x, 4, 1), Catch::Contains("topk") && Catch::Contains("k = 4") &&
                                         Catch::Contains("[2, 3]"));
  REQUIRE_THROWS_WITH(topk(x, -1, 0), Catch::Contains("topk"));
  auto empty = Tensor<float>::zeros({2, 0});
  REQUIRE_THROWS_WITH(max(empty, 1), Catch::Contains("max") && Catch::Contains("[2, 0]"));
  REQUIRE_THROWS_WITH(argmax(empty, 1), Catch::Contains("argmax") && Catch::Contains("[2, 0]"));
  CHECK(sum(empty, 1).to_vector() == std::vector<float>{0, 0});
}

}  // namespace test_reduce
