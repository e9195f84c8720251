// conv2d, pad2d, upsample_nearest2x: PyTorch goldens, a direct-loop reference conv (shapes that
// exercise strides, rectangular kernels, padding and several im2col bands), finite differences,
// float/bf16 against double, threading, and error messages.
#include <cmath>
#include <vector>

#include "mentor/backend/cpu/parallel.hpp"
#include "mentor/ops/conv.hpp"
#include "mentor/ops/elementwise.hpp"
#include "op_harness.hpp"

namespace test_conv {

using namespace mentor;
using mentor::test::check_golden_case;
using mentor::test::check_gradients;
using mentor::test::rel_error;
using V = std::vector<Tensor<double>>;

namespace {

// Direct 7-loop convolution in double (independent of im2col and GEMM).
Tensor<double> reference_conv2d(const Tensor<double>& x, const Tensor<double>& w,
                                const Tensor<double>& b, int64_t stride, int64_t padding) {
  const int64_t N = x.size(0), C = x.size(1), H = x.size(2), W = x.size(3);
  const int64_t O = w.size(0), KH = w.size(2), KW = w.size(3);
  const int64_t HO = (H + 2 * padding - KH) / stride + 1, WO = (W + 2 * padding - KW) / stride + 1;
  std::vector<double> out(static_cast<size_t>(N * O * HO * WO));
  size_t i = 0;
  for (int64_t n = 0; n < N; ++n)
    for (int64_t o = 0; o < O; ++o)
      for (int64_t oy = 0; oy < HO; ++oy)
        for (int64_t ox = 0; ox < WO; ++ox) {
          double acc = b.defined() ? b.at({o}) : 0.0;
          for (int64_t c = 0; c < C; ++c)
            for (int64_t ky = 0; ky < KH; ++ky)
              for (int64_t kx = 0; kx < KW; ++kx) {
                int64_t iy = oy * stride - padding + ky, ix = ox * stride - padding + kx;
                if (iy < 0 || iy >= H || ix < 0 || ix >= W) continue;
                acc += x.at({n, c, iy, ix}) * w.at({o, c, ky, kx});
              }
          out[i++] = acc;
        }
  return Tensor<double>::from_vector(out, {N, O, HO, WO});
}

class ThreadCountGuard {
 public:
  ThreadCountGuard() : saved_(cpu::num_threads()) {}
  ~ThreadCountGuard() { cpu::set_num_threads(saved_); }
  ThreadCountGuard(const ThreadCountGuard&) = delete;
  ThreadCountGuard& operator=(const ThreadCountGuard&) = delete;

 private:
  int saved_;
};

}  // namespace

TEST_CASE("conv2d, pad2d and upsample match PyTorch goldens", "[ops][conv]") {
  check_golden_case("conv3x3", [](const V& x) { return conv2d(x[0], x[1], x[2], 1, 1); },
                    {"x", "weight", "bias"});
  check_golden_case("conv1x1", [](const V& x) { return conv2d(x[0], x[1], x[2]); },
                    {"x", "weight", "bias"});
  check_golden_case("conv_down",
                    [](const V& x) { return conv2d(pad2d(x[0], 0, 1, 0, 1), x[1], x[2], 2, 0); },
                    {"x", "weight", "bias"});
  check_golden_case("upsample_nearest2x", [](const V& x) { return upsample_nearest2x(x[0]); },
                    {"x"});
}

TEST_CASE("conv2d forward matches a direct-loop convolution", "[ops][conv]") {
  Generator gen(11);
  struct Config {
    int64_t n, c, h, w, o, kh, kw, stride, padding;
    bool bias;
  };
  // Rectangular kernels, stride 3, padding larger than half the kernel, a kernel as large as the
  // padded input, and one shape whose patch matrix (576 x 64 per row) needs two im2col bands.
  std::vector<Config> configs = {
      {1, 1, 5, 5, 1, 3, 3, 1, 0, false}, {2, 3, 9, 7, 5, 2, 3, 3, 2, true},
      {3, 4, 6, 8, 2, 1, 1, 2, 1, true},  {2, 2, 4, 5, 3, 6, 7, 1, 1, true},
      {1, 5, 1, 9, 4, 1, 3, 1, 1, true},  {1, 64, 64, 64, 3, 3, 3, 1, 1, true}};
  for (const auto& cfg : configs) {
    auto x = Tensor<double>::randn({cfg.n, cfg.c, cfg.h, cfg.w}, gen);
    auto w = Tensor<double>::randn({cfg.o, cfg.c, cfg.kh, cfg.kw}, gen);
    auto b = cfg.bias ? Tensor<double>::randn({cfg.o}, gen) : Tensor<double>();
    INFO("x " << x.shape() << " w " << w.shape() << " stride " << cfg.stride << " padding "
              << cfg.padding);
    auto expected = reference_conv2d(x, w, b, cfg.stride, cfg.padding);
    CHECK(rel_error(conv2d(x, w, b, cfg.stride, cfg.padding), expected) <= 1e-13);
  }
  SECTION("a non-contiguous input is read through its strides") {
    auto x = Tensor<double>::randn({2, 6, 5, 3}, gen).permute({0, 3, 2, 1});  // [2, 3, 5, 6]
    auto w = Tensor<double>::randn({4, 3, 3, 3}, gen);
    CHECK(rel_error(conv2d(x, w, Tensor<double>(), 2, 1),
                    reference_conv2d(x.contiguous(), w, Tensor<double>(), 2, 1)) <= 1e-13);
  }
}

TEST_CASE("conv2d gradients match finite differences", "[ops][conv][grad]") {
  Generator gen(5);
  SECTION("3x3, stride 2, padding 1, three images") {
    auto x = Tensor<double>::randn({3, 2, 5, 6}, gen);
    auto w = Tensor<double>::randn({3, 2, 3, 3}, gen);
    auto b = Tensor<double>::randn({3}, gen);
    check_gradients([](const V& v) { return conv2d(v[0], v[1], v[2], 2, 1); }, {x, w, b});
  }
  SECTION("rectangular kernel, stride 3, padding 2, no bias") {
    auto x = Tensor<double>::randn({2, 3, 7, 8}, gen);
    auto w = Tensor<double>::randn({2, 3, 2, 4}, gen);
    check_gradients([](const V& v) { return conv2d(v[0], v[1], Tensor<double>(), 3, 2); }, {x, w});
  }
  SECTION("pointwise conv of a transposed (non-contiguous) input") {
    auto x = Tensor<double>::randn({2, 4, 3, 5}, gen);
    auto w = Tensor<double>::randn({3, 5, 1, 1}, gen);
    auto b = Tensor<double>::randn({3}, gen);
    check_gradients([](const V& v) { return conv2d(v[0].transpose(1, 3), v[1], v[2]); }, {x, w, b});
  }
  SECTION("pad2d then conv, as VQ downsampling does") {
    auto x = Tensor<double>::randn({1, 2, 6, 6}, gen);
    auto w = Tensor<double>::randn({2, 2, 3, 3}, gen);
    check_gradients(
        [](const V& v) { return conv2d(pad2d(v[0], 0, 1, 0, 1), v[1], Tensor<double>(), 2, 0); },
        {x, w});
  }
  SECTION("pad2d with every side padded, on a non-contiguous input") {
    auto x = Tensor<double>::randn({2, 4, 3}, gen);
    check_gradients([](const V& v) { return pad2d(v[0].transpose(1, 2), 2, 1, 0, 3); }, {x});
  }
  SECTION("upsample_nearest2x on a non-contiguous input") {
    auto x = Tensor<double>::randn({2, 3, 4, 5}, gen);
    check_gradients([](const V& v) { return upsample_nearest2x(v[0].transpose(2, 3)); }, {x});
  }
}

TEST_CASE("conv2d backward matches the direct-loop reference on a multi-band shape",
          "[ops][conv][grad]") {
  // Gradients of sum(conv(x, w, b) * cot) checked via the adjoint identities against the
  // reference conv: <dX, e> = <cot, conv(e, w)> for a random direction e, likewise for W.
  Generator gen(9);
  auto x = Tensor<double>::randn({2, 64, 64, 64}, gen);
  auto w = Tensor<double>::randn({3, 64, 3, 3}, gen);
  auto b = Tensor<double>::randn({3}, gen);
  auto cot = Tensor<double>::randn({2, 3, 64, 64}, gen);
  auto xr = x.clone().requires_grad_();
  auto wr = w.clone().requires_grad_();
  auto br = b.clone().requires_grad_();
  conv2d(xr, wr, br, 1, 1).backward(cot);
  auto dot = [](const Tensor<double>& a, const Tensor<double>& c) {
    auto va = a.to_vector(), vc = c.to_vector();
    double s = 0;
    for (size_t i = 0; i < va.size(); ++i) s += va[i] * vc[i];
    return s;
  };
  auto ex = Tensor<double>::randn(x.shape(), gen);
  auto ew = Tensor<double>::randn(w.shape(), gen);
  double dx_expected = dot(cot, reference_conv2d(ex, w, Tensor<double>(), 1, 1));
  double dw_expected = dot(cot, reference_conv2d(x, ew, Tensor<double>(), 1, 1));
  CHECK(std::abs(dot(xr.grad(), ex) - dx_expected) <= 1e-9 * std::abs(dx_expected) + 1e-9);
  CHECK(std::abs(dot(wr.grad(), ew) - dw_expected) <= 1e-9 * std::abs(dw_expected) + 1e-9);
  auto db = br.grad().to_vector();
  for (int64_t o = 0; o < 3; ++o) {
    double expected = 0;
    for (int64_t n = 0; n < 2; ++n)
      for (int64_t y = 0; y < 64; ++y)
        for (int64_t xx = 0; xx < 64; ++xx) expected += cot.at({n, o, y, xx});
    CHECK(db[static_cast<size_t>(o)] == Approx(expected).epsilon(1e-12));
  }
}

TEST_CASE("conv2d gives the same result with one thread and with several", "[ops][conv]") {
  ThreadCountGuard guard;
  Generator gen(21);
  auto x = Tensor<double>::randn({3, 8, 10, 9}, gen);
  auto w = Tensor<double>::randn({6, 8, 3, 3}, gen);
  auto b = Tensor<double>::randn({6}, gen);
  auto cot = Tensor<double>::randn({3, 6, 10, 9}, gen);
  auto run = [&](int threads) {
    cpu::set_num_threads(threads);
    auto xr = x.clone().requires_grad_();
    auto wr = w.clone().requires_grad_();
    auto out = conv2d(xr, wr, b, 1, 1);
    out.backward(cot);
    return std::tuple{out.detach(), xr.grad(), wr.grad()};
  };
  auto [out1, dx1, dw1] = run(1);
  auto [out2, dx2, dw2] = run(2);
  CHECK(rel_error(out2, out1) <= 1e-14);
  CHECK(rel_error(dx2, dx1) <= 1e-14);
  CHECK(rel_error(dw2, dw1) <= 1e-14);
}

TEST_CASE("conv2d, pad2d and upsample in float and bf16 follow double", "[ops][conv][precision]") {
  Generator gen(13);
  auto x = Tensor<double>::randn({2, 16, 9, 8}, gen);
  auto w = Tensor<double>::randn({8, 16, 3, 3}, gen) * 0.2;
  auto b = Tensor<double>::randn({8}, gen);
  auto expected = conv2d(pad2d(x, 0, 1, 0, 1), w, b, 2, 0);
  auto as_float = conv2d(pad2d(x.to<float>(), 0, 1, 0, 1), w.to<float>(), b.to<float>(), 2, 0);
  CHECK(rel_error(as_float, expected) <= 1e-5);
  // bf16 inputs are rounded (2^-9 relative) before the float accumulation.
  auto as_bf16 = conv2d(pad2d(x.to<bf16>(), 0, 1, 0, 1), w.to<bf16>(), b.to<bf16>(), 2, 0);
  CHECK(rel_error(as_bf16, expected) <= 1e-2);
  CHECK(rel_error(upsample_nearest2x(x.to<bf16>()), upsample_nearest2x(x)) <= 1e-2);

  SECTION("float and bf16 gradients follow double") {
    auto cot = Tensor<double>::randn({2, 8, 18, 16}, gen);
    auto grads = [&](auto tag) {
      using T = decltype(tag);
      auto xr = x.to<T>().requires_grad_();
      auto wr = w.to<T>().requires_grad_();
      auto br = b.to<T>().requires_grad_();
      upsample_nearest2x(conv2d(xr, wr, br, 1, 1)).backward(cot.to<T>());
      return std::tuple{xr.grad(), wr.grad(), br.grad()};
    };
    auto [dx, dw, db] = grads(double{});
    auto [dx_f, dw_f, db_f] = grads(float{});
    CHECK(rel_error(dx_f, dx) <= 1e-5);
    CHECK(rel_error(dw_f, dw) <= 1e-5);
    CHECK(rel_error(db_f, db) <= 1e-5);
    auto [dx_b, dw_b, db_b] = grads(bf16{});
    CHECK(rel_error(dx_b, dx) <= 1e-2);
    CHECK(rel_error(dw_b, dw) <= 1e-2);
    CHECK(rel_error(db_b, db) <= 1e-2);
  }
}

TEST_CASE("conv2d, pad2d and upsample reject bad shapes, naming them", "[ops][conv][errors]") {
  auto x = Tensor<float>::zeros({2, 3, 8, 8});
  auto w = Tensor<float>::zeros({4, 5, 3, 3});
  REQUIRE_THROWS_AS(conv2d(x, w, Tensor<float>()), ShapeError);
  REQUIRE_THROWS_WITH(conv2d(x, w, Tensor<float>()), Catch::Contains("conv2d") &&
                                                         Catch::Contains("[2, 3, 8, 8]") &&
                                                         Catch::Contains("[4, 5, 3, 3]"));
  auto w_ok = Tensor<float>::zeros({4, 3, 3, 3});
  REQUIRE_THROWS_WITH(
      conv2d(x, w_ok, Tensor<float>::zeros({5})),
      Catch::Contains("conv2d") && Catch::Contains("[5]") && Catch::Contains("[4, 3, 3, 3]"));
  REQUIRE_THROWS_WITH(conv2d(Tensor<float>::zeros({3, 8, 8}), w_ok, Tensor<float>()),
                      Catch::Contains("conv2d") && Catch::Contains("[3, 8, 8]"));
  REQUIRE_THROWS_WITH(
      conv2d(Tensor<float>::zeros({1, 3, 2, 8}), w_ok, Tensor<float>()),
      Catch::Contains("conv2d") && Catch::Contains("[1, 3, 2, 8]") && Catch::Contains("larger"));
  REQUIRE_THROWS_WITH(conv2d(x, w_ok, Tensor<float>(), 0), Catch::Contains("stride"));
  REQUIRE_THROWS_WITH(conv2d(x, w_ok, Tensor<float>(), 1, -1), Catch::Contains("padding"));
  REQUIRE_THROWS_WITH(pad2d(Tensor<float>::zeros({4}), 1, 1, 1, 1),
                      Catch::Contains("pad2d") && Catch::Contains("[4]"));
  REQUIRE_THROWS_WITH(pad2d(x, -1, 0, 0, 0), Catch::Contains("pad2d") && Catch::Contains("-1"));
  REQUIRE_THROWS_WITH(upsample_nearest2x(Tensor<float>::zeros({4})),
                      Catch::Contains("upsample_nearest2x") && Catch::Contains("[4]"));
}

}  // namespace test_conv
