// scaled_dot_product_attention: PyTorch goldens (causal, LlamaGen prefix mask, none), a naive
// loop reference on sizes spanning several query blocks (GQA, causal with Sq < Sk, broadcast
// explicit masks, fully masked rows), finite differences incl. non-contiguous inputs, float32/bf16
// forward checks, error messages.
#include "mentor/ops/attention.hpp"

#include <cmath>
#include <limits>

#include "op_harness.hpp"

namespace test_attention {

using namespace mentor;
using mentor::test::check_golden_case;
using mentor::test::check_gradients;
using mentor::test::golden;
using mentor::test::golden_mask;
using mentor::test::rel_error;
using V = std::vector<Tensor<double>>;

namespace {

// Independent reference by loops: mask(b, h, i, j) says whether query i attends key j.
template <class MaskFn>
Tensor<double> naive_attention(const Tensor<double>& q_in, const Tensor<double>& k_in,
                               const Tensor<double>& v_in, MaskFn mask, double scale) {
  const Tensor<double> q = q_in.contiguous(), k = k_in.contiguous(), v = v_in.contiguous();
  const int64_t B = q.size(0), H = q.size(1), Sq = q.size(2), Dh = q.size(3);
  const int64_t Hk = k.size(1), Sk = k.size(2), Dv = v.size(3);
  Tensor<double> out = Tensor<double>::zeros({B, H, Sq, Dv});
  std::vector<double> w(static_cast<size_t>(Sk));
  for (int64_t b = 0; b < B; ++b)
    for (int64_t h = 0; h < H; ++h) {
      const int64_t hk = h / (H / Hk);
      for (int64_t i = 0; i < Sq; ++i) {
        double max_s = -std::numeric_limits<double>::infinity();
        for (int64_t j = 0; j < Sk; ++j) {
          double s = 0;
          for (int64_t d = 0; d < Dh; ++d) s += q.at({b, h, i, d}) * k.at({b, hk, j, d});
          w[j] = mask(b, h, i, j) ? s * scale : -std::numeric_limits<double>::infinity();
          max_s = std::max(max_s, w[j]);
        }
        if (max_s == -std::numeric_limits<double>::infinity()) continue;  // row of zeros
        double sum = 0;
        for (int64_t j = 0; j < Sk; ++j) sum += (w[j] = std::exp(w[j] - max_s));
        for (int64_t j = 0; j < Sk; ++j)
          for (int64_t d = 0; d < Dv; ++d)
            out.data()[((b * H + h) * Sq + i) * Dv + d] += w[j] / sum * v.at({b, hk, j, d});
      }
    }
  return out;
}

}  // namespace

TEST_CASE("the softmax's exp matches std::exp", "[ops][attention]") {
  std::vector<double> xd;
  for (double x = -700; x <= 0; x += 0.0137) xd.push_back(x);
  std::vector<float> xf(xd.begin(), xd.end());
  std::vector<double> yd = xd;
  std::vector<float> yf = xf;
  mentor::detail::exp_shifted(yd.data(), static_cast<int64_t>(yd.size()), 0.0);
  mentor::detail::exp_shifted(yf.data(), static_cast<int64_t>(yf.size()), 0.0f);
  double worst_d = 0, worst_f = 0;
  for (size_t i = 0; i < xd.size(); ++i) {
    worst_d = std::max(worst_d, std::abs(yd[i] - std::exp(xd[i])) / std::exp(xd[i]));
    if (xf[i] > -87.0f)
      worst_f = std::max(
          worst_f, std::abs(double(yf[i]) - std::exp(double(xf[i]))) / std::exp(double(xf[i])));
  }
  CHECK(worst_d <= 4e-16);
  CHECK(worst_f <= 3e-7);
}

TEST_CASE("attention matches PyTorch goldens", "[ops][attention]") {
  check_golden_case("attn_none",
                    [](const V& x) { return scaled_dot_product_attention(x[0], x[1], x[2]); },
                    {"q", "k", "v"});
  check_golden_case("attn_causal",
                    [](const V& x) {
                      return scaled_dot_product_attention(x[0], x[1], x[2],
                                                          AttnMask<CPU>::causal());
                    },
                    {"q", "k", "v"});
  // LlamaGen's prefix mask [B, 1, S, S]: causal, padded prefix columns off, diagonal on.
  Tensor<bool> mask = golden_mask("attn_mask.in.mask");
  check_golden_case("attn_mask",
                    [&](const V& x) {
                      return scaled_dot_product_attention(x[0], x[1], x[2],
                                                          AttnMask<CPU>::from(mask), 0.5);
                    },
                    {"q", "k", "v"});
}

TEST_CASE("attention agrees with a naive reference across query blocks", "[ops][attention]") {
  Generator gen(51);
  NoGradGuard no_grad;
  // 300 queries = three blocks of 128; GQA 4 query heads on 2 kv heads; Dv != Dh.
  const int64_t B = 2, H = 4, Hk = 2, Sq = 300, Sk = 340, Dh = 16, Dv = 12;
  auto q = Tensor<double>::randn({B, H, Sq, Dh}, gen);
  auto k = Tensor<double>::randn({B, Hk, Sk, Dh}, gen);
  auto v = Tensor<double>::randn({B, Hk, Sk, Dv}, gen);
  const double scale = 1.0 / 4.0;
  SECTION("no mask") {
    auto expected = naive_attention(
        q, k, v, [](auto...) { return true; }, scale);
    CHECK(rel_error(scaled_dot_product_attention(q, k, v), expected) <= 1e-12);
  }
  SECTION("causal with Sq < Sk: the queries are the last Sq positions") {
    auto expected = naive_attention(
        q, k, v, [&](int64_t, int64_t, int64_t i, int64_t j) { return j <= i + Sk - Sq; }, scale);
    CHECK(rel_error(scaled_dot_product_attention(q, k, v, AttnMask<CPU>::causal()), expected) <=
          1e-12);
  }
  SECTION("explicit [B, 1, Sq, Sk] mask with a fully masked row, and a custom scale") {
    std::vector<bool> values(static_cast<size_t>(B * Sq * Sk));
    Generator mask_gen(52);
    auto u = Tensor<float>::rand({B, 1, Sq, Sk}, mask_gen).to_vector();
    for (size_t i = 0; i < values.size(); ++i) values[i] = u[i] < 0.3f;
    for (int64_t j = 0; j < Sk; ++j) values[static_cast<size_t>((1 * Sq + 17) * Sk + j)] = false;
    auto mask = Tensor<bool>::from_vector(values, {B, 1, Sq, Sk});
    auto expected = naive_attention(
        q, k, v,
        [&](int64_t b, int64_t, int64_t i, int64_t j) {
          return mask.at({b, 0, i, j});
        },
        0.3);
    auto out = scaled_dot_product_attention(q, k, v, AttnMask<CPU>::from(mask), 0.3);
    CHECK(rel_error(out, expected) <= 1e-12);
    for (int64_t h = 0; h < H; ++h)
      for (int64_t d = 0; d < Dv; ++d) CHECK(out.at({1, h, 17, d}) == 0.0);
    // A rank-2 [Sq, Sk] mask broadcasts over batch and heads.
    auto mask2 = mask.select(0, 0).select(0, 0);
    auto expected2 = naive_attention(
        q, k, v,
        [&](int64_t, int64_t, int64_t i, int64_t j) {
          return mask2.at({i, j});
        },
        0.3);
    CHECK(rel_error(scaled_dot_product_attention(q, k, v, AttnMask<CPU>::from(mask2), 0.3),
                    expected2) <= 1e-12);
  }
}

TEST_CASE("attention gradients match finite differences", "[ops][attention][grad]") {
  Generator gen(53);
  SECTION("GQA, causal with Sq < Sk") {
    check_gradients(
        [](const V& x) {
          return scaled_dot_product_attention(x[0], x[1], x[2], AttnMask<CPU>::causal());
        },
        {Tensor<double>::randn({2, 4, 3, 5}, gen), Tensor<double>::randn({2, 2, 6, 5}, gen),
         Tensor<double>::randn({2, 2, 6, 3}, gen)});
  }
  SECTION("causal across two query blocks") {
    check_gradients(
        [](const V& x) {
          return scaled_dot_product_attention(x[0], x[1], x[2], AttnMask<CPU>::causal());
        },
        {Tensor<double>::randn({1, 2, 130, 3}, gen), Tensor<double>::randn({1, 1, 133, 3}, gen),
         Tensor<double>::randn({1, 1, 133, 2}, gen)});
  }
  SECTION("explicit broadcast mask with a fully masked row") {
    std::vector<bool> values = {1, 0, 1, 1, 0, 0, 0, 0, 1, 1, 1, 0,  // batch 0 (row 1 fully masked)
                                0, 1, 0, 1, 1, 1, 0, 1, 1, 0, 0, 1};
    auto mask = Tensor<bool>::from_vector(values, {2, 1, 3, 4});
    check_gradients(
        [&](const V& x) {
          return scaled_dot_product_attention(x[0], x[1], x[2], AttnMask<CPU>::from(mask), 0.7);
        },
        {Tensor<double>::randn({2, 3, 3, 4}, gen), Tensor<double>::randn({2, 3, 4, 4}, gen),
         Tensor<double>::randn({2, 3, 4, 4}, gen)});
  }
  SECTION("non-contiguous q, k, v in the [B, S, H, D] projection layout") {
    check_gradients(
        [](const V& x) {
          return scaled_dot_product_attention(x[0].transpose(1, 2), x[1].transpose(1, 2),
                                              x[2].transpose(1, 2), AttnMask<CPU>::causal());
        },
        {Tensor<double>::randn({2, 5, 2, 4}, gen), Tensor<double>::randn({2, 5, 2, 4}, gen),
         Tensor<double>::randn({2, 5, 2, 4}, gen)});
  }
}

TEST_CASE("attention in float32 and bf16 follows the double result", "[ops][attention][bf16]") {
  Generator gen(54);
  auto q = Tensor<double>::randn({2, 4, 150, 32}, gen);
  auto k = Tensor<double>::randn({2, 2, 150, 32}, gen);
  auto v = Tensor<double>::randn({2, 2, 150, 32}, gen);
  auto cot = Tensor<double>::randn({2, 4, 150, 32}, gen);
  auto run = [&](auto tag) {
    using T = decltype(tag);
    auto qt = q.to<T>(), kt = k.to<T>(), vt = v.to<T>();
    qt.requires_grad_();
    kt.requires_grad_();
    vt.requires_grad_();
    auto out = scaled_dot_product_attention(qt, kt, vt, AttnMask<CPU>::causal());
    out.backward(cot.to<T>());
    return std::vector<Tensor<double>>{out.template to<double>(), qt.grad().template to<double>(),
                                       kt.grad().template to<double>(),
                                       vt.grad().template to<double>()};
  };
  auto expected = run(double{});
  auto f32 = run(float{});
  auto b16 = run(bf16{});
  for (size_t i = 0; i < expected.size(); ++i) {
    INFO("output " << i << " (0 = forward, 1..3 = dq, dk, dv)");
    CHECK(rel_error(f32[i], expected[i]) <= 1e-5);
    // bf16 rounds inputs, the cotangent and each result (~2^-9 relative each).
    CHECK(rel_error(b16[i], expected[i]) <= 2e-2);
  }
}

TEST_CASE("attention rejects bad shapes and masks, naming the op and the shapes",
          "[ops][attention][errors]") {
  auto q = Tensor<float>::zeros({2, 4, 5, 8});
  auto k = Tensor<float>::zeros({2, 3, 6, 8});
  REQUIRE_THROWS_AS(scaled_dot_product_attention(q, k, k), ShapeError);
  REQUIRE_THROWS_WITH(scaled_dot_product_attention(q, k, k),
                      Catch::Contains("scaled_dot_product_attention") &&
                          Catch::Contains("3 kv heads") && Catch::Contains("[2, 4, 5, 8]"));
  auto k2 = Tensor<float>::zeros({2, 2, 6, 7});
  REQUIRE_THROWS_WITH(
      scaled_dot_product_attention(q, k2, k2),
      Catch::Contains("scaled_dot_product_attention") && Catch::Contains("[2, 2, 6, 7]"));
  auto kv = Tensor<float>::zeros({2, 2, 6, 8});
  auto bad_mask = Tensor<bool>::full({2, 1, 5, 5}, true);
  REQUIRE_THROWS_WITH(scaled_dot_product_attention(q, kv, kv, AttnMask<CPU>::from(bad_mask)),
                      Catch::Contains("scaled_dot_product_attention") &&
                          Catch::Contains("[2, 1, 5, 5]") && Catch::Contains("[2, 4, 5, 6]"));
  REQUIRE_THROWS_WITH(
      scaled_dot_product_attention(Tensor<float>::zeros({4, 5, 8}), kv, kv),
      Catch::Contains("scaled_dot_product_attention") && Catch::Contains("[4, 5, 8]"));
}

}  // namespace test_attention
