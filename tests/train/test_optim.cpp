// AdamW, Adam, the warm-up/cosine schedule and global-norm clipping against PyTorch
// (tests/goldens/optim.safetensors, written by tools/reference/make_optim_goldens.py: a float32
// model y = fc2(tanh(fc1(x))) * scale trained 10 AdamW steps and 5 Adam steps by torch.optim), plus
// unit checks of the pieces against their formulas.
#include <algorithm>
#include <cmath>
#include <cstring>
#include <iostream>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "catch.hpp"
#include "mentor/io/safetensors.hpp"
#include "mentor/nn/layers.hpp"
#include "mentor/nn/state_dict.hpp"
#include "mentor/ops/ops.hpp"
#include "mentor/train/clip.hpp"
#include "mentor/train/optim.hpp"
#include "mentor/train/schedule.hpp"
#include "mentor/train/trainer.hpp"

namespace test_optim {

using namespace mentor;

namespace {

const io::SafeTensorsFile& goldens() {
  static io::SafeTensorsFile file = io::SafeTensorsFile::open(std::string(MENTOR_SOURCE_DIR) +
                                                              "/tests/goldens/optim.safetensors");
  return file;
}

Tensor<float> golden(const std::string& key) { return nn::load_tensor<float>(goldens(), key); }
double golden_scalar(const std::string& key) { return golden(key).to_vector().at(0); }

// The golden script's model: y = fc2(tanh(fc1(x))) * scale.
struct TinyModel : nn::Module<float, CPU> {
  nn::Linear<float> fc1, fc2;
  Tensor<float> scale;

  TinyModel() {
    Generator gen(1);
    fc1 = nn::Linear<float>(8, 16, true, gen);
    fc2 = nn::Linear<float>(16, 4, false, gen);
    scale = Tensor<float>::ones({4}).requires_grad_();
  }
  void visit(nn::Visitor<float, CPU>& v) override {
    v.child("fc1", fc1);
    v.child("fc2", fc2);
    v.parameter("scale", scale);
  }
  Tensor<float> operator()(const Tensor<float>& x) const { return fc2(tanh(fc1(x))) * scale; }
  Tensor<float> loss(const Tensor<float>& x, const Tensor<float>& y) const {
    return mse_loss((*this)(x), y);
  }
};

void load_init(TinyModel& model) { nn::load_state_dict(model, goldens(), {true, "init.", {}}); }

const std::vector<std::string> kParams = {"fc1.weight", "fc1.bias", "fc2.weight", "scale"};

double rel_error(const Tensor<float>& ours, const Tensor<float>& ref) {
  REQUIRE(ours.shape() == ref.shape());
  const auto a = ours.to_vector(), b = ref.to_vector();
  double num = 0, den = 0;
  for (size_t i = 0; i < a.size(); ++i) {
    num += (double(a[i]) - double(b[i])) * (double(a[i]) - double(b[i]));
    den += double(b[i]) * double(b[i]);
  }
  return std::sqrt(num) / std::max(std::sqrt(den), 1e-30);
}
double rel_error(double ours, double ref) {
  return std::abs(ours - ref) / std::max(std::abs(ref), 1e-30);
}

Tensor<float>* param(TinyModel& model, const std::string& name) {
  for (auto& [n, t] : model.named_parameters())
    if (n == name) return t;
  FAIL("no parameter " << name);
  return nullptr;
}

constexpr double kTolerance = 1e-6;  // the acceptance bound (relative, float32)

}  // namespace

TEST_CASE("AdamW + warm-up/cosine + clipping follow torch.optim.AdamW step by step",
          "[optim][golden]") {
  const auto settings = nlohmann::json::parse(goldens().metadata().at("adamw"));
  TinyModel model;
  load_init(model);
  const Tensor<float> inputs = golden("inputs"), targets = golden("targets");

  train::TrainerOptions options;
  options.optimizer = train::TrainerOptions::OptimizerKind::adamw;
  options.beta1 = settings["betas"][0];
  options.beta2 = settings["betas"][1];
  options.eps = settings["eps"];
  options.weight_decay = settings["weight_decay"];
  options.max_grad_norm = settings["max_grad_norm"];
  options.schedule =
      train::WarmupCosine{settings["peak_lr"], settings["warmup_steps"], settings["total_steps"],
                          double(settings["min_lr"]) / double(settings["peak_lr"])};
  train::Trainer<float> trainer(model, options);

  // The trainer's decay groups are the golden's: decay exactly on the >= 2-D parameters.
  const auto& groups = trainer.optimizer().groups();
  REQUIRE(groups.size() == 2);
  std::vector<std::string> decayed;
  for (const auto& [name, t] : groups[0].params) decayed.push_back(name);
  CHECK(groups[0].weight_decay == 0.05);
  CHECK(decayed == settings["weight_decay_params"].get<std::vector<std::string>>());
  CHECK(groups[1].weight_decay == 0.0);

  double worst_param = 0, worst_loss = 0, worst_lr = 0, worst_norm = 0;
  const int64_t steps = settings["total_steps"];
  for (int64_t s = 0; s < steps; ++s) {
    const std::string prefix = "step" + std::to_string(s) + ".";
    const auto stats = trainer.step([&](int64_t) { return model.loss(inputs, targets); });
    CHECK(stats.step == s + 1);
    worst_loss = std::max(worst_loss, rel_error(stats.loss, golden_scalar(prefix + "loss")));
    worst_lr = std::max(worst_lr, rel_error(stats.lr, golden_scalar(prefix + "lr")));
    worst_norm =
        std::max(worst_norm, rel_error(stats.grad_norm, golden_scalar(prefix + "grad_norm")));
    CHECK(stats.clipped == (s < 3));  // the golden's design: steps 0-2 exceed the clip norm
    for (const auto& name : kParams) {
      const double e = rel_error(*param(model, name), golden(prefix + name));
      INFO("step " << s << " " << name << " relative error " << e);
      CHECK(e < kTolerance);
      worst_param = std::max(worst_param, e);
    }
  }
  std::cout << "AdamW golden (10 steps): worst relative error params " << worst_param << ", loss "
            << worst_loss << ", lr " << worst_lr << ", grad norm " << worst_norm << "\n";
  CHECK(worst_loss < kTolerance);
  CHECK(worst_lr < kTolerance);
  CHECK(worst_norm < kTolerance);
  // Weight decay and clipping really acted: a run without them ends elsewhere.
  CHECK(trainer.optimizer().state().size() == 4);
  CHECK(trainer.optimizer().state().at("fc1.weight").step == steps);
}

TEST_CASE("Adam (constant lr, no clipping) follows torch.optim.Adam", "[optim][golden]") {
  const auto settings = nlohmann::json::parse(goldens().metadata().at("adam"));
  TinyModel model;
  load_init(model);
  const Tensor<float> inputs = golden("inputs"), targets = golden("targets");

  // The optimizer used directly, without the Trainer: one group, no decay.
  train::Adam<CPU> adam({train::ParamGroup<CPU>{model.named_parameters(), 0.0}},
                        {settings["betas"][0], settings["betas"][1], settings["eps"]});
  CHECK(std::string(adam.name()) == "Adam");
  const train::Constant schedule{settings["lr"]};
  double worst_param = 0, worst_loss = 0, worst_norm = 0;
  for (int64_t s = 0; s < settings["total_steps"].get<int64_t>(); ++s) {
    const std::string prefix = "adam.step" + std::to_string(s) + ".";
    adam.zero_grad();
    Tensor<float> loss = model.loss(inputs, targets);
    loss.backward();
    const double norm = train::grad_norm(train::tensor_pointers(model.named_parameters()));
    adam.step(schedule.lr(s));
    worst_loss = std::max(worst_loss, rel_error(loss.item(), golden_scalar(prefix + "loss")));
    worst_norm = std::max(worst_norm, rel_error(norm, golden_scalar(prefix + "grad_norm")));
    CHECK(rel_error(schedule.lr(s), golden_scalar(prefix + "lr")) < kTolerance);
    for (const auto& name : kParams) {
      const double e = rel_error(*param(model, name), golden(prefix + name));
      INFO("adam step " << s << " " << name << " relative error " << e);
      CHECK(e < kTolerance);
      worst_param = std::max(worst_param, e);
    }
  }
  std::cout << "Adam golden (5 steps): worst relative error params " << worst_param << ", loss "
            << worst_loss << ", grad norm " << worst_norm << "\n";
  CHECK(worst_loss < kTolerance);
  CHECK(worst_norm < kTolerance);
}

TEST_CASE("WarmupCosine is the documented formula", "[schedule]") {
  const train::WarmupCosine s{1e-2, 3, 10, 0.1};
  const double floor = 1e-3;
  for (int64_t step = 0; step < 3; ++step) CHECK(s.lr(step) == Approx(1e-2 * (step + 1) / 3.0));
  CHECK(s.lr(3) == Approx(1e-2));  // cosine starts at the peak
  for (int64_t step = 3; step < 10; ++step) {
    const double progress = (step - 3) / 7.0;
    CHECK(s.lr(step) ==
          Approx(floor + (1e-2 - floor) * 0.5 * (1 + std::cos(3.141592653589793 * progress))));
  }
  CHECK(s.lr(10) == Approx(floor));  // past the plan: stays at the floor
  CHECK(s.lr(1000) == Approx(floor));
  // Monotone decay after the warm-up.
  for (int64_t step = 3; step < 12; ++step) CHECK(s.lr(step + 1) <= s.lr(step));

  // MENTOR: 5 % warm-up, floor 0.1 × peak, in optimizer steps.
  const auto m = train::WarmupCosine::mentor(5e-4, 2000);
  CHECK(m.warmup_steps == 100);
  CHECK(m.total_steps == 2000);
  CHECK(m.lr(99) == Approx(5e-4));
  CHECK(m.lr(1999) == Approx(5e-5).epsilon(1e-3));
  CHECK(train::WarmupCosine::mentor(1e-4, 7).warmup_steps == 1);  // never zero

  const train::WarmupCosine no_warmup{1.0, 0, 4, 0.0};
  CHECK(no_warmup.lr(0) == Approx(1.0));
  CHECK(no_warmup.lr(2) == Approx(0.5));

  CHECK(train::Constant{3e-4}.lr(123456) == 3e-4);
  CHECK_THROWS_WITH((train::WarmupCosine{1e-3, 5, 3, 0.1}.lr(0)),
                    Catch::Contains("total_steps (3)") && Catch::Contains("warmup_steps (5)"));
  CHECK_THROWS_WITH(s.lr(-1), Catch::Contains("negative step -1"));

  // JSON round trip (schedules are saved with checkpoints).
  const train::LrSchedule as_variant = s;
  const auto back = train::schedule_from_json(train::to_json(as_variant));
  for (int64_t step = 0; step < 12; ++step) CHECK(train::lr_at(back, step) == s.lr(step));
  CHECK_THROWS_WITH(train::schedule_from_json({{"type", "step"}}),
                    Catch::Contains("unknown schedule type \"step\""));
}

TEST_CASE("clip_grad_norm: global L2 norm, torch's coefficient, untouched below the bound",
          "[clip]") {
  Tensor<float> a = Tensor<float>::zeros({2, 2}).requires_grad_();
  Tensor<float> b = Tensor<float>::zeros({3}).requires_grad_();
  Tensor<float> frozen = Tensor<float>::zeros({5});  // no gradient: ignored
  a.set_grad(Tensor<float>::from_vector({3, 0, 0, 4}, {2, 2}));
  b.set_grad(Tensor<float>::from_vector({0, 12, 0}, {3}));
  std::vector<Tensor<float>*> params{&a, &b, &frozen};
  // ‖(3, 4, 12)‖ = 13.
  CHECK(train::grad_norm(params) == Approx(13.0));
  const double before = train::clip_grad_norm(params, 1.0);
  CHECK(before == Approx(13.0));
  const float c = static_cast<float>(1.0 / (13.0 + 1e-6));
  CHECK(a.grad().to_vector() == std::vector<float>{3 * c, 0, 0, 4 * c});
  CHECK(b.grad().to_vector() == std::vector<float>{0, 12 * c, 0});
  CHECK(train::grad_norm(params) == Approx(1.0).epsilon(1e-6));
  // Below the bound: the same bytes.
  const auto saved = a.grad().to_vector();
  CHECK(train::clip_grad_norm(params, 2.0) == Approx(1.0).epsilon(1e-6));
  CHECK(a.grad().to_vector() == saved);
  // max_norm <= 0 disables clipping but still measures.
  CHECK(train::clip_grad_norm(params, 0.0) == Approx(1.0).epsilon(1e-6));

  // A large tensor crosses several reduction chunks; the sum is exact for integers.
  Tensor<float> big = Tensor<float>::zeros({300000}).requires_grad_();
  big.set_grad(Tensor<float>::full({300000}, 2.0f));
  std::vector<Tensor<float>*> one{&big};
  CHECK(train::grad_norm(one) == Approx(std::sqrt(4.0 * 300000)));
}

TEST_CASE("decay_groups: decay on >= 2-D trainable parameters only", "[optim]") {
  Generator gen(3);
  nn::Linear<float> layer(4, 3, true, gen);
  auto groups = train::decay_groups(layer, 0.05);
  REQUIRE(groups.size() == 2);
  CHECK(groups[0].params.at(0).first == "weight");
  CHECK(groups[0].weight_decay == 0.05);
  CHECK(groups[1].params.at(0).first == "bias");
  CHECK(groups[1].weight_decay == 0.0);
  layer.set_trainable(false, "bias");
  groups = train::decay_groups(layer, 0.05);
  REQUIRE(groups.size() == 1);
  CHECK(groups[0].params.size() == 1);
}

TEST_CASE("AdamW update of one element matches the formula; errors name the problem", "[optim]") {
  // One scalar parameter, hand-computed in double for two steps.
  Tensor<float> p = Tensor<float>::from_vector({2.0f}, {1, 1}).requires_grad_();
  train::AdamW<CPU> opt({train::ParamGroup<CPU>{{{"p", &p}}, 0.1}}, {0.9, 0.95, 1e-8});
  double pd = 2.0, m = 0, v = 0;
  const double lr = 0.01;
  for (int t = 1; t <= 2; ++t) {
    const double g = t == 1 ? 0.5 : -0.25;
    p.set_grad(Tensor<float>::full({1, 1}, static_cast<float>(g)));
    opt.step(lr);
    pd *= 1 - lr * 0.1;
    m = 0.9 * m + 0.1 * g;
    v = 0.95 * v + 0.05 * g * g;
    pd -= lr / (1 - std::pow(0.9, t)) * m / (std::sqrt(v / (1 - std::pow(0.95, t))) + 1e-8);
    CHECK(p.to_vector()[0] == Approx(pd).epsilon(1e-6));
  }
  // A parameter without a gradient is skipped entirely (no state, no decay).
  Tensor<float> q = Tensor<float>::ones({2}).requires_grad_();
  train::AdamW<CPU> opt2({train::ParamGroup<CPU>{{{"q", &q}}, 0.5}});
  opt2.step(0.1);
  CHECK(q.to_vector() == std::vector<float>{1, 1});
  CHECK(opt2.state().empty());

  CHECK_THROWS_WITH(train::AdamW<CPU>({train::ParamGroup<CPU>{{{"p", &p}, {"p", &q}}, 0.0}}),
                    Catch::Contains("'p' appears in two groups"));
  CHECK_THROWS_WITH(train::AdamW<CPU>({train::ParamGroup<CPU>{{{"p", &p}}, 0.0}}, {1.0, 0.9, 1e-8}),
                    Catch::Contains("beta1 must lie in [0, 1), got 1"));
  CHECK_THROWS_WITH(opt.step(std::nan("")), Catch::Contains("learning rate must be finite"));
  p.set_grad(Tensor<float>::zeros({2}));
  CHECK_THROWS_WITH(opt.step(0.1),
                    Catch::Contains("gradient of 'p' has shape [2], the parameter [1, 1]"));
}

TEST_CASE("TrainerOptions: MENTOR presets and JSON round trip", "[optim][options]") {
  const auto stage1 = train::TrainerOptions::mentor_stage(1, 1000);
  CHECK(stage1.optimizer == train::TrainerOptions::OptimizerKind::adamw);
  CHECK(stage1.beta1 == 0.9);
  CHECK(stage1.beta2 == 0.95);
  CHECK(stage1.weight_decay == 0.05);
  CHECK(stage1.max_grad_norm == 1.0);
  CHECK(stage1.accumulation_steps == 4);
  const auto& schedule = std::get<train::WarmupCosine>(stage1.schedule);
  CHECK(schedule.peak == 5e-4);
  CHECK(schedule.warmup_steps == 50);
  CHECK(schedule.floor_ratio == 0.1);
  CHECK(std::get<train::WarmupCosine>(train::TrainerOptions::mentor_stage(2, 1000).schedule).peak ==
        1e-4);
  CHECK_THROWS_WITH(train::TrainerOptions::mentor_stage(3, 10),
                    Catch::Contains("stage must be 1 or 2"));

  const auto back = train::TrainerOptions::from_json(stage1.to_json());
  CHECK(back.to_json() == stage1.to_json());
  CHECK_THROWS_WITH(train::TrainerOptions::from_json({{"optimizer", "sgd"}}),
                    Catch::Contains("unknown optimizer \"sgd\""));
}

}  // namespace test_optim
