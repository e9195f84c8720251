// matmul and linear: PyTorch goldens, finite differences (broadcast batches, transposed and
// irregular views), naive triple-loop references on sizes that take the threaded paths, float32 and
// bf16 forward checks, error messages.
#include "mentor/ops/matmul.hpp"

#include "op_harness.hpp"

namespace test_matmul {

using namespace mentor;
using mentor::test::check_golden_case;
using mentor::test::check_gradients;
using mentor::test::rel_error;
using V = std::vector<Tensor<double>>;

namespace {

// Independent reference: a @ b by triple loops over broadcast batch indices (both operands given
// with explicit batch dims of equal rank; size-1 dims broadcast).
Tensor<double> naive_matmul(const Tensor<double>& a, const Tensor<double>& b) {
  const int r = a.dim();
  REQUIRE(b.dim() == r);
  Shape out_shape;
  for (int i = 0; i + 2 < r; ++i) out_shape.push_back(std::max(a.size(i), b.size(i)));
  const int64_t M = a.size(-2), K = a.size(-1), N = b.size(-1);
  out_shape.push_back(M);
  out_shape.push_back(N);
  Tensor<double> out = Tensor<double>::zeros(out_shape);
  const int64_t batch = out.numel() / (M * N);
  for (int64_t bi = 0; bi < batch; ++bi) {
    // Decompose the batch index and map it into each operand (broadcast dims -> 0).
    int64_t rest = bi, off_a = 0, off_b = 0;
    for (int d = r - 3; d >= 0; --d) {
      const int64_t idx = rest % out_shape[d];
      rest /= out_shape[d];
      off_a += (a.size(d) == 1 ? 0 : idx) * a.stride(d);
      off_b += (b.size(d) == 1 ? 0 : idx) * b.stride(d);
    }
    for (int64_t m = 0; m < M; ++m)
      for (int64_t n = 0; n < N; ++n) {
        double s = 0;
        for (int64_t k = 0; k < K; ++k)
          s += a.data()[off_a + m * a.stride(-2) + k * a.stride(-1)] *
               b.data()[off_b + k * b.stride(-2) + n * b.stride(-1)];
        out.data()[(bi * M + m) * N + n] = s;
      }
  }
  return out;
}

}  // namespace

TEST_CASE("matmul matches PyTorch goldens", "[ops][matmul]") {
  auto mm = [](const V& x) { return matmul(x[0], x[1]); };
  check_golden_case("matmul", mm, {"a", "b"});
  check_golden_case("matmul_batched", mm, {"a", "b"});
  check_golden_case("matmul_bcast", mm, {"a", "b"});
  // Transposed views go to gemm with the trans flag (no copy).
  check_golden_case("matmul_at_b", [](const V& x) { return matmul(x[0].t(), x[1]); }, {"a", "b"});
  check_golden_case("matmul_a_bt", [](const V& x) { return matmul(x[0], x[1].t()); }, {"a", "b"});
}

TEST_CASE("matmul gradients match finite differences", "[ops][matmul][grad]") {
  Generator gen(11);
  auto mm = [](const V& x) { return matmul(x[0], x[1]); };
  SECTION("both sides broadcast") {
    check_gradients(
        mm, {Tensor<double>::randn({2, 1, 3, 4}, gen), Tensor<double>::randn({3, 4, 5}, gen)});
    check_gradients(mm,
                    {Tensor<double>::randn({3, 4}, gen), Tensor<double>::randn({2, 4, 5}, gen)});
  }
  SECTION("shared rank-2 right operand (folded into one GEMM)") {
    check_gradients(mm,
                    {Tensor<double>::randn({2, 3, 3, 4}, gen), Tensor<double>::randn({4, 5}, gen)});
    check_gradients(mm,
                    {Tensor<double>::randn({2, 3, 4}, gen), Tensor<double>::randn({1, 4, 5}, gen)});
  }
  SECTION("transposed, permuted and expanded views") {
    // a^T per batch with a shared b^T: trans flags on both sides.
    check_gradients([](const V& x) { return matmul(x[0].transpose(-1, -2), x[1].t()); },
                    {Tensor<double>::randn({2, 4, 3}, gen), Tensor<double>::randn({5, 4}, gen)});
    // A permuted batch: irregular batch offsets (one GEMM per matrix).
    check_gradients(
        [](const V& x) { return matmul(x[0].transpose(0, 1), x[1]); },
        {Tensor<double>::randn({2, 3, 3, 4}, gen), Tensor<double>::randn({3, 2, 4, 2}, gen)});
    // An expanded matrix dimension (stride 0) must be copied.
    check_gradients(
        [](const V& x) {
          return matmul(x[0], x[1].expand({4, 5}));
        },
        {Tensor<double>::randn({2, 3, 4}, gen), Tensor<double>::randn({1, 5}, gen)});
    // A narrowed view (row pitch larger than the row).
    check_gradients([](const V& x) { return matmul(x[0].narrow(-1, 1, 4), x[1]); },
                    {Tensor<double>::randn({2, 3, 6}, gen), Tensor<double>::randn({2, 4, 3}, gen)});
  }
}

TEST_CASE("matmul agrees with naive loops on sizes that use the threaded paths", "[ops][matmul]") {
  Generator gen(12);
  NoGradGuard no_grad;
  auto a = Tensor<double>::randn({2, 3, 70, 50}, gen);
  auto b = Tensor<double>::randn({1, 3, 50, 90}, gen);
  CHECK(rel_error(matmul(a, b), naive_matmul(a, b)) <= 1e-14);
  auto shared = Tensor<double>::randn({1, 1, 50, 90}, gen);
  CHECK(rel_error(matmul(a, shared.view({50, 90})), naive_matmul(a, shared)) <= 1e-14);
  auto bt = Tensor<double>::randn({1, 3, 90, 50}, gen);
  CHECK(rel_error(matmul(a, bt.transpose(-1, -2)), naive_matmul(a, bt.transpose(-1, -2))) <= 1e-14);
  auto at = Tensor<double>::randn({3, 2, 50, 70}, gen);  // permuted batch + transposed matrices
  auto a_view = at.permute({1, 0, 3, 2});
  CHECK(rel_error(matmul(a_view, b), naive_matmul(a_view, b)) <= 1e-14);
}

TEST_CASE("matmul in float32 and bf16 follows the double result", "[ops][matmul][bf16]") {
  Generator gen(13);
  auto a = Tensor<double>::randn({2, 3, 40, 64}, gen);
  auto b = Tensor<double>::randn({64, 48}, gen);
  Tensor<double> expected = matmul(a, b);
  CHECK(rel_error(matmul(a.to<float>(), b.to<float>()), expected) <= 1e-5);
  // bf16 inputs are themselves rounded (~2^-9 relative); products accumulate in float.
  CHECK(rel_error(matmul(a.to<bf16>(), b.to<bf16>()), expected) <= 1e-2);
}

TEST_CASE("linear matches x w^T + b and its gradients", "[ops][matmul][linear]") {
  Generator gen(14);
  auto x = Tensor<double>::randn({2, 3, 4}, gen);
  auto w = Tensor<double>::randn({5, 4}, gen);
  auto bias = Tensor<double>::randn({5}, gen);
  {
    NoGradGuard no_grad;
    Tensor<double> expected = naive_matmul(x, w.t().unsqueeze(0));
    for (int64_t i = 0; i < expected.numel(); ++i) expected.data()[i] += bias.data()[i % 5];
    CHECK(rel_error(linear(x, w, bias), expected) <= 1e-14);
    CHECK(rel_error(linear(x, w), naive_matmul(x, w.t().unsqueeze(0))) <= 1e-14);
    CHECK(rel_error(linear(x.to<float>(), w.to<float>(), bias.to<float>()), expected) <= 1e-5);
    CHECK(rel_error(linear(x.to<bf16>(), w.to<bf16>(), bias.to<bf16>()), expected) <= 1e-2);
  }
  check_gradients([](const V& v) { return linear(v[0], v[1], v[2]); }, {x, w, bias});
  check_gradients([](const V& v) { return linear(v[0], v[1]); }, {x, w});
  // Non-contiguous input and a rank-1 input.
  check_gradients([](const V& v) { return linear(v[0].transpose(0, 1), v[1], v[2]); },
                  {x, w, bias});
  check_gradients([](const V& v) { return linear(v[0], v[1], v[2]); },
                  {Tensor<double>::randn({4}, gen), w, bias});
}

TEST_CASE("matmul and linear reject bad shapes, naming the op and both shapes",
          "[ops][matmul][errors]") {
  auto a = Tensor<float>::zeros({2, 3, 4});
  REQUIRE_THROWS_AS(matmul(a, Tensor<float>::zeros({5, 6})), ShapeError);
  REQUIRE_THROWS_WITH(matmul(a, Tensor<float>::zeros({5, 6})), Catch::Contains("matmul") &&
                                                                   Catch::Contains("[2, 3, 4]") &&
                                                                   Catch::Contains("[5, 6]"));
  REQUIRE_THROWS_WITH(matmul(a, Tensor<float>::zeros({3, 4, 2})),
                      Catch::Contains("matmul") && Catch::Contains("batch") &&
                          Catch::Contains("[2, 3, 4]") && Catch::Contains("[3, 4, 2]"));
  REQUIRE_THROWS_WITH(matmul(Tensor<float>::zeros({4}), Tensor<float>::zeros({4, 2})),
                      Catch::Contains("matmul") && Catch::Contains("rank"));
  REQUIRE_THROWS_WITH(linear(a, Tensor<float>::zeros({5, 3})), Catch::Contains("linear") &&
                                                                   Catch::Contains("[2, 3, 4]") &&
                                                                   Catch::Contains("[5, 3]"));
  REQUIRE_THROWS_WITH(
      linear(a, Tensor<float>::zeros({5, 4}), Tensor<float>::zeros({4})),
      Catch::Contains("linear") && Catch::Contains("bias") && Catch::Contains("[4]"));
}

}  // namespace test_matmul
