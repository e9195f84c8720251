// rms_norm, layer_norm, group_norm: PyTorch goldens, finite differences (with and without the
// affine parameters, non-contiguous inputs), float32 and bf16 forward checks (incl. LlamaGen's
// cast-before-weight rule), error messages.
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

}  // namespace test_norm
