// cross_entropy, cross_entropy_weighted, mse_loss, l1_loss: PyTorch goldens, finite differences,
// a naive reference on 16384-wide rows (float, bf16), gradient properties and error messages.
#include <chrono>
#include <cmath>

#include "mentor/ops/loss.hpp"
#include "op_harness.hpp"

namespace test_loss {

using namespace mentor;
using mentor::test::check_golden_case;
using mentor::test::check_gradients;
using mentor::test::golden;
using mentor::test::rel_error;
using V = std::vector<Tensor<double>>;

namespace {

// Σ_r w_r (logsumexp(x_r) − x_r[t_r]) / denom, in long double.
double naive_cross_entropy(const Tensor<double>& logits, const std::vector<int64_t>& targets,
                           const std::vector<double>& row_weights, double denom) {
  const int64_t vocab = logits.size(-1), rows = logits.numel() / vocab;
  auto v = logits.to_vector();
  long double total = 0;
  for (int64_t r = 0; r < rows; ++r) {
    long double m = -INFINITY, s = 0;
    for (int64_t i = 0; i < vocab; ++i) m = std::max<long double>(m, v[r * vocab + i]);
    for (int64_t i = 0; i < vocab; ++i)
      s += std::exp(static_cast<long double>(v[r * vocab + i]) - m);
    total += row_weights[r] * (m + std::log(s) - v[r * vocab + targets[r]]);
  }
  return static_cast<double>(total / denom);
}

std::vector<int64_t> random_targets(int64_t n, int64_t vocab, uint64_t seed) {
  Generator gen(seed);
  auto u = Tensor<double>::rand({n}, gen).to_vector();
  std::vector<int64_t> t;
  for (double x : u) t.push_back(std::min<int64_t>(static_cast<int64_t>(x * vocab), vocab - 1));
  return t;
}

}  // namespace

TEST_CASE("losses match PyTorch goldens", "[ops][loss]") {
  auto t_mean = golden<int64_t>("cross_entropy_mean.in.targets");
  check_golden_case("cross_entropy_mean",
                    [&](const V& x) { return cross_entropy(x[0], t_mean).reshape(Shape{1}); },
                    {"logits"});
  auto t_valid = golden<int64_t>("cross_entropy_valid.in.targets");
  auto valid = golden<double>("cross_entropy_valid.in.valid");
  check_golden_case(
      "cross_entropy_valid",
      [&](const V& x) { return cross_entropy_weighted(x[0], t_valid, valid).reshape(Shape{1}); },
      {"logits"});
  check_golden_case("mse_mean", [](const V& x) { return mse_loss(x[0], x[1]).reshape(Shape{1}); },
                    {"a", "b"});
  check_golden_case("l1_mean", [](const V& x) { return l1_loss(x[0], x[1]).reshape(Shape{1}); },
                    {"a", "b"});
}

TEST_CASE("losses: gradients by finite differences", "[ops][loss][grad]") {
  Generator gen(41);
  auto logits = Tensor<double>::randn({5, 9}, gen, 0.f, 2.f);
  auto targets = Tensor<int64_t>::from_vector(random_targets(5, 9, 1));
  check_gradients([&](const V& x) { return cross_entropy(x[0], targets); }, {logits});
  // Non-contiguous logits: the transpose of a [V, N] tensor.
  auto logits_t = Tensor<double>::randn({9, 5}, gen);
  check_gradients([&](const V& x) { return cross_entropy(x[0].t(), targets); }, {logits_t});

  auto logits3 = Tensor<double>::randn({3, 4, 7}, gen, 0.f, 2.f);
  auto targets2 = Tensor<int64_t>::from_vector(random_targets(12, 7, 2), {3, 4});
  auto valid = Tensor<double>::from_vector({1.0, 0.0, 0.5});
  check_gradients([&](const V& x) { return cross_entropy_weighted(x[0], targets2, valid); },
                  {logits3});

  auto a = Tensor<double>::randn({3, 5}, gen), b = Tensor<double>::randn({3, 5}, gen);
  check_gradients([](const V& x) { return mse_loss(x[0], x[1]); }, {a, b});
  check_gradients([](const V& x) { return l1_loss(x[0], x[1]); }, {a, b});
  check_gradients([](const V& x) { return mse_loss(x[0].t(), x[1].t()); }, {a, b});
}

TEST_CASE("cross_entropy on 16384-wide rows matches a naive reference", "[ops][loss]") {
  const int64_t rows = 6, vocab = 16384;
  Generator gen(8);
  auto logits = Tensor<double>::randn({rows, vocab}, gen, 0.f, 3.f);
  auto tv = random_targets(rows, vocab, 3);
  auto targets = Tensor<int64_t>::from_vector(tv);
  std::vector<double> ones(rows, 1.0);
  double ref = naive_cross_entropy(logits, tv, ones, rows);
  CHECK(cross_entropy(logits, targets).item() == Approx(ref).epsilon(1e-13));
  auto lf = logits.to<float>();
  CHECK(cross_entropy(lf, targets).item() ==
        Approx(naive_cross_entropy(lf.to<double>(), tv, ones, rows)).epsilon(1e-5));
  auto lb = logits.to<bf16>();
  CHECK(static_cast<float>(cross_entropy(lb, targets).item()) ==
        Approx(naive_cross_entropy(lb.to<double>(), tv, ones, rows)).epsilon(1e-2));

  // Gradient: (softmax − onehot) / N, each row summing to 0; float against double.
  auto check_grad = [&](auto x) {
    x.requires_grad_();
    cross_entropy(x, targets).backward();
    return x.grad();
  };
  auto gd = check_grad(logits.clone().detach());
  auto gf = check_grad(lf.clone().detach());
  CHECK(rel_error(gf, gd) <= 1e-5);
  auto row_sums = sum(gd, 1).to_vector();
  for (double s : row_sums) CHECK(std::abs(s) <= 1e-14);
  CHECK(gd.at({0, tv[0]}) < 0);
  // Against softmax − onehot built independently.
  auto p = softmax(logits, -1);
  double worst = 0;
  for (int64_t r = 0; r < rows; ++r)
    for (int64_t v = 0; v < vocab; v += 97) {
      double expected = (p.at({r, v}) - (v == tv[r] ? 1.0 : 0.0)) / rows;
      worst = std::max(worst, std::abs(gd.at({r, v}) - expected));
    }
  CHECK(worst <= 1e-15);
}

TEST_CASE("cross_entropy_weighted: validity weights rows per sample", "[ops][loss]") {
  Generator gen(12);
  const int64_t batch = 3, length = 5, vocab = 40;
  auto logits = Tensor<double>::randn({batch, length, vocab}, gen);
  auto tv = random_targets(batch * length, vocab, 4);
  auto targets = Tensor<int64_t>::from_vector(tv, {batch, length});
  std::vector<double> valid_v{1.0, 0.0, 1.0};
  std::vector<double> row_w;
  for (int64_t r = 0; r < batch * length; ++r) row_w.push_back(valid_v[r / length]);
  auto valid = Tensor<double>::from_vector(valid_v);
  auto x = logits.clone().detach().requires_grad_();
  auto loss = cross_entropy_weighted(x, targets, valid);
  CHECK(loss.item() == Approx(naive_cross_entropy(logits, tv, row_w, 2.0 * length)).epsilon(1e-14));
  loss.backward();
  auto g = x.grad();
  for (int64_t l = 0; l < length; ++l)
    for (int64_t v = 0; v < vocab; ++v) CHECK(g.at({1, l, v}) == 0.0);  // invalid sample: exactly 0
  // All samples invalid: the denominator clamps to 1 and the loss is 0.
  auto none = Tensor<double>::zeros({batch});
  CHECK(cross_entropy_weighted(logits, targets, none).item() == 0.0);
  // All valid equals the plain mean.
  auto all = Tensor<double>::ones({batch});
  CHECK(cross_entropy_weighted(logits, targets, all).item() ==
        Approx(cross_entropy(logits.reshape({batch * length, vocab}),
                             targets.reshape({batch * length}))
                   .item())
            .epsilon(1e-14));
  // float forward.
  CHECK(cross_entropy_weighted(logits.to<float>(), targets, valid.to<float>()).item() ==
        Approx(loss.item()).epsilon(1e-5));
}

TEST_CASE("mse and l1 losses against direct sums; float and bf16", "[ops][loss]") {
  Generator gen(13);
  auto a = Tensor<double>::randn({4, 33}, gen), b = Tensor<double>::randn({4, 33}, gen);
  auto va = a.to_vector(), vb = b.to_vector();
  double se = 0, ae = 0;
  for (size_t i = 0; i < va.size(); ++i) {
    se += (va[i] - vb[i]) * (va[i] - vb[i]);
    ae += std::abs(va[i] - vb[i]);
  }
  CHECK(mse_loss(a, b).item() == Approx(se / va.size()).epsilon(1e-14));
  CHECK(l1_loss(a, b).item() == Approx(ae / va.size()).epsilon(1e-14));
  CHECK(mse_loss(a.to<float>(), b.to<float>()).item() == Approx(se / va.size()).epsilon(1e-5));
  CHECK(static_cast<float>(l1_loss(a.to<bf16>(), b.to<bf16>()).item()) ==
        Approx(ae / va.size()).epsilon(1e-2));
}

TEST_CASE("losses reject bad shapes and targets, naming them", "[ops][loss][errors]") {
  auto logits = Tensor<float>::zeros({4, 10});
  auto targets = Tensor<int64_t>::from_vector({1, 2, 3, 10});
  REQUIRE_THROWS_WITH(cross_entropy(logits, targets), Catch::Contains("cross_entropy") &&
                                                          Catch::Contains("target 10") &&
                                                          Catch::Contains("10 classes"));
  REQUIRE_THROWS_WITH(cross_entropy(logits, Tensor<int64_t>::from_vector({0, -1, 0, 0})),
                      Catch::Contains("target -1"));
  REQUIRE_THROWS_AS(cross_entropy(logits, Tensor<int64_t>::zeros({3})), ShapeError);
  REQUIRE_THROWS_WITH(
      cross_entropy(logits, Tensor<int64_t>::zeros({3})),
      Catch::Contains("cross_entropy") && Catch::Contains("[4, 10]") && Catch::Contains("[3]"));
  REQUIRE_THROWS_WITH(cross_entropy(Tensor<float>::zeros({2, 3, 4}), Tensor<int64_t>::zeros({2})),
                      Catch::Contains("[2, 3, 4]"));
  REQUIRE_THROWS_WITH(
      cross_entropy_weighted(Tensor<float>::zeros({2, 3, 4}), Tensor<int64_t>::zeros({2, 3}),
                             Tensor<float>::ones({3})),
      Catch::Contains("cross_entropy_weighted") && Catch::Contains("valid [3]"));
  REQUIRE_THROWS_WITH(
      mse_loss(Tensor<float>::zeros({2, 3}), Tensor<float>::zeros({3, 2})),
      Catch::Contains("mse_loss") && Catch::Contains("[2, 3]") && Catch::Contains("[3, 2]"));
  REQUIRE_THROWS_WITH(l1_loss(Tensor<float>::zeros({2}), Tensor<float>::zeros({3})),
                      Catch::Contains("l1_loss"));
}

// Not run by default: ./test_loss "[.perf]"
TEST_CASE("cross_entropy throughput on [4096, 16384] float logits", "[.perf]") {
  Generator gen(1);
  auto logits = Tensor<float>::randn({4096, 16384}, gen);
  auto targets = Tensor<int64_t>::from_vector(random_targets(4096, 16384, 5));
  logits.requires_grad_();
  auto t0 = std::chrono::steady_clock::now();
  auto loss = cross_entropy(logits, targets);
  auto t1 = std::chrono::steady_clock::now();
  loss.backward();
  auto t2 = std::chrono::steady_clock::now();
  WARN("forward " << std::chrono::duration<double>(t1 - t0).count() << " s, backward "
                  << std::chrono::duration<double>(t2 - t1).count() << " s, threads "
                  << cpu::num_threads());
}

}  // namespace test_loss
