// Gradient accumulation averages: 4 micro-batches of B give the gradients, the norm, the loss and
// the updates of one batch of 4B (upstream MENTOR summed the micro-batch gradients; the intended
// recipe is the average). Checked in double (to 1e-12), float32 (to 1e-6) and bf16 (the float32
// masters accumulate; loosely, bf16 forward passes differ by rounding).
#include <algorithm>
#include <cmath>
#include <iostream>
#include <string>
#include <vector>

#include "catch.hpp"
#include "mentor/nn/layers.hpp"
#include "mentor/ops/ops.hpp"
#include "mentor/train/clip.hpp"
#include "mentor/train/trainer.hpp"

namespace test_accumulate {

using namespace mentor;

namespace {

constexpr int64_t kMicro = 4, kMicroBatch = 6, kIn = 10, kOut = 3;

template <class T>
struct Net : nn::Module<T, CPU> {
  nn::Linear<T> fc1, fc2;
  nn::RMSNorm<T> norm;
  Net() {
    Generator gen(21);
    fc1 = nn::Linear<T>(kIn, 24, true, gen, 0.3);
    norm = nn::RMSNorm<T>(24);
    fc2 = nn::Linear<T>(24, kOut, false, gen, 0.3);
  }
  void visit(nn::Visitor<T, CPU>& v) override {
    v.child("fc1", fc1);
    v.child("norm", norm);
    v.child("fc2", fc2);
  }
  Tensor<T> loss(const Tensor<T>& x, const Tensor<T>& y) const {
    return mse_loss(fc2(silu(norm(fc1(x)))), y);
  }
};

template <class T>
struct Data {
  Tensor<T> x, y;  // the whole batch of kMicro * kMicroBatch rows
  Data() {
    Generator gen(8);
    x = Tensor<float>::randn({kMicro * kMicroBatch, kIn}, gen).template to<T>();
    y = Tensor<float>::randn({kMicro * kMicroBatch, kOut}, gen).template to<T>();
  }
  Tensor<T> x_micro(int64_t i) const {
    return x.narrow(0, i * kMicroBatch, kMicroBatch).contiguous();
  }
  Tensor<T> y_micro(int64_t i) const {
    return y.narrow(0, i * kMicroBatch, kMicroBatch).contiguous();
  }
};

template <class T>
double rel_error(const Tensor<T>& a, const Tensor<T>& b) {
  const auto va = a.to_vector(), vb = b.to_vector();
  double num = 0, den = 0;
  for (size_t i = 0; i < va.size(); ++i) {
    const double x = static_cast<double>(static_cast<acc_t<T>>(va[i]));
    const double y = static_cast<double>(static_cast<acc_t<T>>(vb[i]));
    num += (x - y) * (x - y);
    den += y * y;
  }
  return std::sqrt(num) / std::max(std::sqrt(den), 1e-30);
}

// Gradients of the averaged micro-batch losses vs the gradient of the big batch's loss.
template <class T>
double accumulated_gradient_error() {
  const Data<T> data;
  Net<T> small, big;
  for (int64_t i = 0; i < kMicro; ++i) small.loss(data.x_micro(i), data.y_micro(i)).backward();
  auto params = train::tensor_pointers(small.named_parameters());
  train::scale_grads(params, 1.0 / kMicro);
  big.loss(data.x, data.y).backward();
  double worst = 0;
  auto small_named = small.named_parameters(), big_named = big.named_parameters();
  for (size_t p = 0; p < small_named.size(); ++p)
    worst = std::max(worst, rel_error(small_named[p].second->grad(), big_named[p].second->grad()));
  return worst;
}

template <class T>
train::TrainerOptions options(int64_t accumulation) {
  train::TrainerOptions o;
  o.accumulation_steps = accumulation;
  o.max_grad_norm = 0;  // off: the reported norm then shows sum vs average directly
  o.schedule = train::WarmupCosine{1e-2, 2, 8, 0.1};
  return o;
}

}  // namespace

TEST_CASE("averaged micro-batch gradients equal the 4x batch's gradient", "[accumulate]") {
  const double e64 = accumulated_gradient_error<double>();
  const double e32 = accumulated_gradient_error<float>();
  std::cout << "accumulated vs 4x-batch gradient, relative error: double " << e64 << ", float "
            << e32 << "\n";
  CHECK(e64 < 1e-12);
  CHECK(e32 < 1e-6);
}

TEST_CASE("Trainer with 4 micro-batches follows the trainer with one 4x batch (float32)",
          "[accumulate]") {
  const Data<float> data;
  Net<float> accumulated, single;
  train::Trainer<float> a(accumulated, options<float>(kMicro));
  train::Trainer<float> b(single, options<float>(1));
  double worst_param = 0, worst_loss = 0, worst_norm = 0;
  for (int step = 0; step < 6; ++step) {
    int64_t calls = 0;
    const auto sa = a.step([&](int64_t i) {
      ++calls;
      return accumulated.loss(data.x_micro(i), data.y_micro(i));
    });
    CHECK(calls == kMicro);
    const auto sb = b.step([&](int64_t) { return single.loss(data.x, data.y); });
    CHECK(sa.lr == sb.lr);
    worst_loss = std::max(worst_loss, std::abs(sa.loss - sb.loss) / std::abs(sb.loss));
    worst_norm = std::max(worst_norm, std::abs(sa.grad_norm - sb.grad_norm) / sb.grad_norm);
    auto pa = accumulated.named_parameters(), pb = single.named_parameters();
    for (size_t p = 0; p < pa.size(); ++p)
      worst_param = std::max(worst_param, rel_error(*pa[p].second, *pb[p].second));
  }
  std::cout << "Trainer, 4 micro-batches vs one 4x batch, 6 steps (float32): worst relative error "
            << "loss " << worst_loss << ", grad norm " << worst_norm << ", params " << worst_param
            << "\n";
  CHECK(worst_loss < 1e-6);
  CHECK(worst_norm < 1e-6);  // a sum over micro-batches would be 4x
  CHECK(worst_param < 1e-6);
}

TEST_CASE("bf16 model: micro-batch gradients accumulate in the float32 masters",
          "[accumulate][bf16]") {
  const Data<bf16> data;
  Net<bf16> accumulated, single;
  train::Trainer<bf16> a(accumulated, options<bf16>(kMicro));
  train::Trainer<bf16> b(single, options<bf16>(1));
  for (int step = 0; step < 3; ++step) {
    const auto sa =
        a.step([&](int64_t i) { return accumulated.loss(data.x_micro(i), data.y_micro(i)); });
    const auto sb = b.step([&](int64_t) { return single.loss(data.x, data.y); });
    INFO("step " << step << ": norms " << sa.grad_norm << " vs " << sb.grad_norm);
    CHECK(sa.grad_norm == Approx(sb.grad_norm).epsilon(2e-2));
    CHECK(sa.loss == Approx(sb.loss).epsilon(2e-2));
  }
  // The model's bf16 gradients were freed after each micro-batch: they live in the masters only.
  for (auto& [name, t] : accumulated.named_parameters()) CHECK(!t->grad().defined());
  auto ma = a.masters().named(), mb = b.masters().named();
  for (size_t p = 0; p < ma.size(); ++p) CHECK(rel_error(*ma[p].second, *mb[p].second) < 2e-2);
}

TEST_CASE("Trainer::step rejects losses it cannot train on", "[accumulate]") {
  Net<float> net;
  train::Trainer<float> t(net, options<float>(1));
  const Data<float> data;
  CHECK_THROWS_WITH(t.step([&](int64_t) { return net.fc1(data.x); }),
                    Catch::Contains("returned [24, 24], expected a scalar loss"));
  CHECK_THROWS_WITH(t.step([&](int64_t) {
    NoGradGuard no_grad;
    return net.loss(data.x, data.y);
  }),
                    Catch::Contains("does not depend on any trainable parameter"));
  train::TrainerOptions bad = options<float>(0);
  CHECK_THROWS_WITH(train::Trainer<float>(net, bad),
                    Catch::Contains("accumulation_steps must be >= 1"));

  // A non-finite gradient: an error by default, a skipped update on request.
  const Tensor<float> nan_target = Tensor<float>::full({kMicro * kMicroBatch, kOut}, std::nanf(""));
  CHECK_THROWS_WITH(t.step([&](int64_t) { return net.loss(data.x, nan_target); }),
                    Catch::Contains("the gradient norm is nan"));
  train::TrainerOptions skip = options<float>(1);
  skip.on_nonfinite = train::TrainerOptions::NonFinite::skip;
  Net<float> net2;
  train::Trainer<float> t2(net2, skip);
  const auto before = net2.fc1.weight.to_vector();
  const auto stats = t2.step([&](int64_t) { return net2.loss(data.x, nan_target); });
  CHECK(stats.skipped);
  CHECK(stats.step == 1);
  CHECK(net2.fc1.weight.to_vector() == before);
  CHECK(!net2.fc1.weight.grad().defined());
}

}  // namespace test_accumulate
