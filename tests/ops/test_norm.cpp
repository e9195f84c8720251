// rms_norm, layer_norm, group_norm, batch_norm: PyTorch goldens, finite differences (with and
// without the affine parameters, non-contiguous inputs), float32 and bf16 forward checks (incl.
// LlamaGen's cast-before-weight rule), error messages.
#include "mentor/nn/layers.hpp"
#include "mentor/ops/norm.hpp"

#include "op_harness.hpp"

namespace test_norm {

using namespace mentor;
using mentor::test::check_golden_case;
using mentor::test::check_gradients;
using mentor::test::rel_error;
using V = std::vector<Tensor<double>>;

TEST_CASE("norms match PyTorch goldens", "[ops][norm]") {
  check_golden_case("rms_norm", [](const V& x) { return rms_norm(x[0], x[1], 1e-5); },
                    {"x", "weight"});
  check_golden_case("layer_norm", [](const V& x) { return layer_norm(x[0], x[1], x[2], 1e-5); },
                    {"x", "weight", "bias"});
  check_golden_case("group_norm", [](const V& x) { return group_norm(x[0], 4, x[1], x[2], 1e-6); },
                    {"x", "weight", "bias"});
}

TEST_CASE("norm gradients match finite differences", "[ops][norm][grad]") {
  Generator gen(21);
  auto x = Tensor<double>::randn({3, 4, 10}, gen, 0.5f, 1.5f);
  auto w = Tensor<double>::rand({10}, gen, 0.5f, 1.5f);
  auto b = Tensor<double>::randn({10}, gen);
  SECTION("rms_norm") {
    check_gradients([](const V& v) { return rms_norm(v[0], v[1]); }, {x, w});
    check_gradients([](const V& v) { return rms_norm(v[0], Tensor<double>()); }, {x});
    // Non-contiguous input: the normalised dimension is strided.
    check_gradients(
        [](const V& v) { return rms_norm(v[0].transpose(0, 2), v[1]); },
        {Tensor<double>::randn({4, 3, 5}, gen), Tensor<double>::rand({4}, gen, 0.5f, 1.5f)});
  }
  SECTION("layer_norm") {
    check_gradients([](const V& v) { return layer_norm(v[0], v[1], v[2]); }, {x, w, b});
    check_gradients(
        [](const V& v) { return layer_norm(v[0], Tensor<double>(), Tensor<double>(), 1e-6); }, {x});
    check_gradients([](const V& v) { return layer_norm(v[0].transpose(0, 2), v[1], v[2]); },
                    {Tensor<double>::randn({4, 3, 5}, gen),
                     Tensor<double>::rand({4}, gen, 0.5f, 1.5f), Tensor<double>::randn({4}, gen)});
  }
  SECTION("group_norm") {
    auto xg = Tensor<double>::randn({2, 6, 3, 4}, gen);
    auto wg = Tensor<double>::rand({6}, gen, 0.5f, 1.5f);
    auto bg = Tensor<double>::randn({6}, gen);
    check_gradients([](const V& v) { return group_norm(v[0], 3, v[1], v[2], 1e-6); }, {xg, wg, bg});
    check_gradients(
        [](const V& v) { return group_norm(v[0], 2, Tensor<double>(), Tensor<double>()); }, {xg});
    // Rank 2 (no spatial dimensions), and a non-contiguous NCHW view.
    check_gradients([](const V& v) { return group_norm(v[0], 3, v[1], v[2]); },
                    {Tensor<double>::randn({4, 6}, gen), wg, bg});
    check_gradients([](const V& v) { return group_norm(v[0].transpose(2, 3), 6, v[1], v[2]); },
                    {xg, wg, bg});
  }
}

TEST_CASE("norms in float32 and bf16 follow the double result", "[ops][norm][bf16]") {
  Generator gen(22);
  NoGradGuard no_grad;
  auto x = Tensor<double>::randn({4, 7, 96}, gen, 0.3f, 2.0f);
  auto w = Tensor<double>::rand({96}, gen, 0.5f, 1.5f);
  auto b = Tensor<double>::randn({96}, gen);
  Tensor<double> rms = rms_norm(x, w), ln = layer_norm(x, w, b);
  CHECK(rel_error(rms_norm(x.to<float>(), w.to<float>()), rms) <= 1e-5);
  CHECK(rel_error(layer_norm(x.to<float>(), w.to<float>(), b.to<float>()), ln) <= 1e-5);
  CHECK(rel_error(rms_norm(x.to<bf16>(), w.to<bf16>()), rms) <= 1e-2);
  CHECK(rel_error(layer_norm(x.to<bf16>(), w.to<bf16>(), b.to<bf16>()), ln) <= 1e-2);
  auto xg = Tensor<double>::randn({2, 32, 6, 5}, gen);
  auto wg = Tensor<double>::rand({32}, gen, 0.5f, 1.5f);
  auto bg = Tensor<double>::randn({32}, gen);
  Tensor<double> gn = group_norm(xg, 8, wg, bg, 1e-6);
  CHECK(rel_error(group_norm(xg.to<float>(), 8, wg.to<float>(), bg.to<float>(), 1e-6), gn) <= 1e-5);
  CHECK(rel_error(group_norm(xg.to<bf16>(), 8, wg.to<bf16>(), bg.to<bf16>(), 1e-6), gn) <= 1e-2);
}

TEST_CASE("bf16 rms_norm rounds the normalised value to bf16 before the weight (LlamaGen)",
          "[ops][norm][bf16]") {
  Generator gen(23);
  NoGradGuard no_grad;
  auto x = Tensor<float>::randn({5, 64}, gen).to<bf16>();
  auto w = Tensor<float>::rand({64}, gen, 0.5f, 1.5f).to<bf16>();
  auto y = rms_norm(x, w, 1e-5).to_vector();
  auto xv = x.to_vector();
  auto wv = w.to_vector();
  for (int r = 0; r < 5; ++r) {
    float sum_sq = 0;
    for (int c = 0; c < 64; ++c) sum_sq += float(xv[r * 64 + c]) * float(xv[r * 64 + c]);
    const float rstd = 1.0f / std::sqrt(sum_sq / 64 + 1e-5f);
    for (int c = 0; c < 64; ++c) {
      const bf16 normed(float(xv[r * 64 + c]) * rstd);  // _norm(x.float()).type_as(x)
      const bf16 expected(float(normed) * float(wv[c]));
      INFO("row " << r << " column " << c);
      CHECK(y[r * 64 + c].bits == expected.bits);
    }
  }
}

TEST_CASE("norms reject bad shapes, naming the op and the shapes", "[ops][norm][errors]") {
  auto x = Tensor<float>::zeros({2, 3, 8});
  REQUIRE_THROWS_AS(rms_norm(x, Tensor<float>::ones({7})), ShapeError);
  REQUIRE_THROWS_WITH(rms_norm(x, Tensor<float>::ones({7})), Catch::Contains("rms_norm") &&
                                                                 Catch::Contains("[7]") &&
                                                                 Catch::Contains("[2, 3, 8]"));
  REQUIRE_THROWS_WITH(
      layer_norm(x, Tensor<float>::ones({8}), Tensor<float>::ones({2, 4})),
      Catch::Contains("layer_norm") && Catch::Contains("bias") && Catch::Contains("[2, 4]"));
  REQUIRE_THROWS_WITH(
      group_norm(Tensor<float>::zeros({2, 6, 4}), 4, Tensor<float>(), Tensor<float>()),
      Catch::Contains("group_norm") && Catch::Contains("4 groups") && Catch::Contains("[2, 6, 4]"));
  REQUIRE_THROWS_WITH(group_norm(Tensor<float>::zeros({6}), 2, Tensor<float>(), Tensor<float>()),
                      Catch::Contains("group_norm") && Catch::Contains("[6]"));
  REQUIRE_THROWS_WITH(
      group_norm(Tensor<float>::zeros({2, 6, 4}), 3, Tensor<float>::ones({3}), Tensor<float>()),
      Catch::Contains("group_norm") && Catch::Contains("weight") && Catch::Contains("[3]"));
}

TEST_CASE("batch_norm matches PyTorch in training and eval mode", "[ops][norm]") {
  check_golden_case("batch_norm_train",
                    [](const V& x) {
                      return batch_norm(x[0], x[1], x[2], Tensor<double>(), Tensor<double>(), true,
                                        0.1, 1e-5);
                    },
                    {"x", "weight", "bias"});
  check_golden_case(
      "batch_norm_eval",
      [](const V& x) { return batch_norm(x[0], x[1], x[2], x[3], x[4], false, 0.1, 1e-5); },
      {"x", "weight", "bias", "running_mean", "running_var"});
  Generator gen(5);
  const auto x = Tensor<double>::randn({3, 4, 2, 5}, gen);
  const auto w = Tensor<double>::rand({4}, gen, 0.5f, 1.5f);
  const auto b = Tensor<double>::randn({4}, gen);
  check_gradients(
      [](const V& v) {
        return batch_norm(v[0], v[1], v[2], Tensor<double>(), Tensor<double>(), true, 0.1, 1e-5);
      },
      {x, w, b});
  check_gradients(  // rank 2 (BatchNorm1d), no affine parameters
      [](const V& v) {
        return batch_norm(v[0], Tensor<double>(), Tensor<double>(), Tensor<double>(),
                          Tensor<double>(), true, 0.1, 1e-5);
      },
      {Tensor<double>::randn({6, 3}, gen)});
}

TEST_CASE("BatchNorm moves its running statistics as torch and uses them in eval mode",
          "[ops][norm]") {
  Generator gen(9);
  nn::BatchNorm<double> bn(2, 1e-5, 0.3);
  bn.weight = Tensor<double>::from_vector({1.5, 0.5}, Shape{2}).requires_grad_();
  bn.bias = Tensor<double>::from_vector({0.25, -1.0}, Shape{2}).requires_grad_();
  std::vector<double> mean = {0, 0}, var = {1, 1};
  for (int step = 0; step < 2; ++step) {
    const auto x = Tensor<double>::randn({3, 2, 2, 4}, gen, 2.0f, 1.5f);
    bn(x);
    const std::vector<double> v = x.to_vector();
    for (int c = 0; c < 2; ++c) {  // the batch's channel c: every (n, h, w)
      std::vector<double> values;
      for (int n = 0; n < 3; ++n)
        for (int k = 0; k < 8; ++k) values.push_back(v[static_cast<size_t>((n * 2 + c) * 8 + k)]);
      double m = 0, ss = 0;
      for (double e : values) m += e;
      m /= double(values.size());
      for (double e : values) ss += (e - m) * (e - m);
      mean[static_cast<size_t>(c)] = 0.7 * mean[static_cast<size_t>(c)] + 0.3 * m;
      var[static_cast<size_t>(c)] =
          0.7 * var[static_cast<size_t>(c)] + 0.3 * ss / double(values.size() - 1);
    }
    const auto rm = bn.running_mean.to_vector(), rv = bn.running_var.to_vector();
    for (size_t c = 0; c < 2; ++c) {
      CHECK(rm[c] == Approx(mean[c]).epsilon(1e-12));
      CHECK(rv[c] == Approx(var[c]).epsilon(1e-12));
    }
  }
  bn.eval();
  const auto x = Tensor<double>::randn({2, 2, 1, 3}, gen);
  const auto y = bn(x).to_vector();
  const auto v = x.to_vector();
  const double weight[2] = {1.5, 0.5}, bias[2] = {0.25, -1.0};
  for (size_t i = 0; i < v.size(); ++i) {
    const size_t c = (i / 3) % 2;
    CHECK(y[i] ==
          Approx((v[i] - mean[c]) / std::sqrt(var[c] + 1e-5) * weight[c] + bias[c]).epsilon(1e-12));
  }
  // Eval mode leaves the running statistics alone.
  CHECK(bn.running_mean.to_vector()[0] == Approx(mean[0]).epsilon(1e-12));
}

TEST_CASE("batch_norm rejects what torch rejects, naming the problem", "[ops][norm][errors]") {
  const auto ones = Tensor<float>::ones({3});
  CHECK_THROWS_WITH(
      batch_norm(Tensor<float>::zeros({1, 3}), ones, ones, Tensor<float>(), Tensor<float>(), true),
      Catch::Contains("more than one value per channel"));
  CHECK_THROWS_WITH(
      batch_norm(Tensor<float>::zeros({4, 3}), ones, ones, ones, Tensor<float>(), true),
      Catch::Contains("both defined or both undefined"));
  CHECK_THROWS_WITH(
      batch_norm(Tensor<float>::zeros({4, 3}), ones, ones, Tensor<float>(), Tensor<float>(), false),
      Catch::Contains("eval mode needs running_mean"));
  CHECK_THROWS_WITH(
      batch_norm(Tensor<float>::zeros({4, 2}), ones, ones, Tensor<float>(), Tensor<float>(), true),
      Catch::Contains("batch_norm") && Catch::Contains("weight") && Catch::Contains("[3]"));
}

}  // namespace test_norm
