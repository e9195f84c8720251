// dropout: the mask is the Philox stream's (checked element by element against
// philox_uniform_at), the keep fraction is 1 − p within a few standard deviations, the same
// seed/offset repeats the mask, kept values are scaled by 1/(1 − p), the gradient is mask · scale,
// eval mode and p = 0 are the identity.
#include <cmath>

#include "mentor/ops/dropout.hpp"
#include "op_harness.hpp"

namespace test_dropout {

using namespace mentor;
using mentor::test::check_gradients;
using V = std::vector<Tensor<double>>;

TEST_CASE("dropout keeps 1 - p of the elements, scaled, as the Philox stream says",
          "[ops][dropout]") {
  const int64_t n = 200000;
  for (double p : {0.1, 0.3, 0.75}) {
    INFO("p = " << p);
    Generator gen(1234);
    gen.offset = 17;
    auto x = Tensor<double>::full({400, 500}, 2.0);
    auto y = dropout(x, p, gen, true).to_vector();
    CHECK(gen.offset == 17 + (n + 3) / 4);  // one Philox block per four elements
    int64_t kept = 0, wrong_mask = 0, wrong_value = 0;
    for (int64_t i = 0; i < n; ++i) {
      const bool keep = philox_uniform_at(1234, 17, i) >= p;
      const double v = y[static_cast<size_t>(i)];
      kept += keep;
      wrong_mask += keep != (v != 0.0);
      wrong_value += keep && v != 2.0 * (1.0 / (1.0 - p));
    }
    CHECK(wrong_mask == 0);
    CHECK(wrong_value == 0);
    const double fraction = static_cast<double>(kept) / n;
    const double sigma = std::sqrt(p * (1 - p) / n);
    CHECK(std::abs(fraction - (1 - p)) <= 5 * sigma);
  }
}

TEST_CASE("dropout: same seed and offset, same mask; the generator moves on", "[ops][dropout]") {
  Generator gen_a(99), gen_b(99);
  Generator gen_c(100);
  auto x = Tensor<float>::ones({33, 17});
  auto a1 = dropout(x, 0.5, gen_a, true).to_vector();
  auto b1 = dropout(x, 0.5, gen_b, true).to_vector();
  CHECK(a1 == b1);
  auto a2 = dropout(x, 0.5, gen_a, true).to_vector();
  CHECK(a1 != a2);  // the offset advanced
  CHECK(dropout(x, 0.5, gen_c, true).to_vector() != a1);
  // Non-contiguous input: the mask follows the logical (row-major) order of the view.
  Generator g1(7), g2(7);
  Generator gen(3);
  auto base = Tensor<float>::randn({8, 9}, gen);
  auto view_out = dropout(base.t(), 0.4, g1, true);
  auto copy_out = dropout(base.t().contiguous(), 0.4, g2, true);
  CHECK(view_out.to_vector() == copy_out.to_vector());
  // bf16: kept values are the scaled input rounded once.
  Generator g3(7);
  auto xb = Tensor<float>::full({64}, 1.5f).to<bf16>();
  for (bf16 v : dropout(xb, 0.2, g3, true).to_vector())
    CHECK((static_cast<float>(v) == 0.0f ||
           static_cast<float>(v) == static_cast<float>(bf16(1.5f / 0.8f))));
}

TEST_CASE("dropout gradient is mask times scale", "[ops][dropout][grad]") {
  Generator gen(5);
  auto x = Tensor<double>::rand({6, 7}, gen, 0.5f, 1.5f).requires_grad_();
  Generator drop_gen(42);
  auto y = dropout(x, 0.35, drop_gen, true);
  y.backward(Tensor<double>::ones({6, 7}));
  auto vy = y.to_vector(), vx = x.to_vector(), g = x.grad().to_vector();
  for (size_t i = 0; i < vy.size(); ++i) {
    const double mask_scale = vy[i] / vx[i];  // 0 or 1/(1-p)
    CHECK(g[i] == Approx(mask_scale).epsilon(1e-15));
  }
  // Finite differences with a fresh generator per evaluation (the same mask every time).
  auto x2 = Tensor<double>::randn({5, 4}, gen);
  check_gradients(
      [](const V& in) {
        Generator fixed(8);
        return dropout(in[0], 0.5, fixed, true);
      },
      {x2});
  check_gradients(
      [](const V& in) {
        Generator fixed(8);
        return dropout(in[0].t(), 0.5, fixed, true);
      },
      {x2});
}

TEST_CASE("dropout is the identity in eval mode and for p = 0; p = 1 zeroes", "[ops][dropout]") {
  Generator gen(1);
  auto x = Tensor<float>::randn({4, 5}, gen);
  Generator drop(9);
  auto e = dropout(x, 0.5, drop, false);
  CHECK(e.data() == x.data());
  CHECK(drop.offset == 0);  // eval mode draws nothing
  auto z = dropout(x, 0.0, drop, true);
  CHECK(z.data() == x.data());
  auto xd = Tensor<double>::ones({3}).requires_grad_();
  auto all = dropout(xd, 1.0, drop, true);
  CHECK(all.to_vector() == std::vector<double>{0, 0, 0});
  all.backward(Tensor<double>::ones({3}));
  CHECK(xd.grad().to_vector() == std::vector<double>{0, 0, 0});
  // Gradient passes through unchanged in eval mode.
  auto xe = Tensor<double>::ones({3}).requires_grad_();
  dropout(xe, 0.5, drop, false).backward(Tensor<double>::from_vector({1, 2, 3}));
  CHECK(xe.grad().to_vector() == std::vector<double>{1, 2, 3});
}

TEST_CASE("dropout rejects a probability outside [0, 1]", "[ops][dropout][errors]") {
  Generator gen(1);
  auto x = Tensor<float>::ones({2, 3});
  REQUIRE_THROWS_AS(dropout(x, 1.5, gen, true), Error);
  REQUIRE_THROWS_WITH(dropout(x, -0.1, gen, true), Catch::Contains("dropout") &&
                                                       Catch::Contains("-0.1") &&
                                                       Catch::Contains("[2, 3]"));
}

}  // namespace test_dropout
