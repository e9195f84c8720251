// Exact resume: N steps in one run, and k steps + checkpoint + a fresh process state + load +
// N − k steps, give bit-identical losses, weights, masters and optimizer moments on the CPU. The
// run exercises everything a checkpoint must carry: dropout (the Generator's offset), a shuffled
// multi-worker data loader crossing an epoch boundary (its position), gradient accumulation,
// clipping, the warm-up/cosine schedule (the step) and AdamW's per-parameter state. The same on a
// tiny MentorModel with every dropout on, whose randomness lives in the model's own generators
// (and a run that leaves them out of the checkpoint diverges, so the test can fail).
#include <cstring>
#include <filesystem>
#include <memory>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "catch.hpp"
#include "mentor/data/loader.hpp"
#include "mentor/nn/layers.hpp"
#include "mentor/ops/ops.hpp"
#include "mentor/train/trainer.hpp"
#include "tiny_mentor.hpp"

namespace test_resume {

using namespace mentor;
namespace fs = std::filesystem;

namespace {

constexpr int64_t kFeatures = 12, kClasses = 5, kDatasetSize = 40, kBatch = 4;

struct Sample {
  std::vector<float> x;
  int64_t label = 0;
};
struct Batch {
  Tensor<float> x;
  Tensor<int64_t> y;
};

// A synthetic classification set, deterministic in the index.
std::shared_ptr<const data::Dataset<Sample>> dataset() {
  return std::make_shared<data::FunctionDataset<Sample>>(kDatasetSize, [](int64_t index) {
    Sample s;
    s.label = index % kClasses;
    for (int64_t f = 0; f < kFeatures; ++f)
      s.x.push_back(philox_normal_at(7, static_cast<uint64_t>(index) * 4, f) +
                    (f == s.label ? 2.0f : 0.0f));
    return s;
  });
}

Batch collate(std::vector<Sample>&& samples) {
  std::vector<float> x;
  std::vector<int64_t> y;
  for (const auto& s : samples) {
    x.insert(x.end(), s.x.begin(), s.x.end());
    y.push_back(s.label);
  }
  const auto n = static_cast<int64_t>(samples.size());
  return {Tensor<float>::from_vector(x, {n, kFeatures}), Tensor<int64_t>::from_vector(y, {n})};
}

template <class T>
struct Net : nn::Module<T, CPU> {
  nn::Linear<T> fc1, fc2;
  nn::LayerNorm<T> norm;
  explicit Net(uint64_t seed) {
    Generator gen(seed);
    fc1 = nn::Linear<T>(kFeatures, 32, true, gen, 0.2);
    norm = nn::LayerNorm<T>(32);
    fc2 = nn::Linear<T>(32, kClasses, true, gen, 0.2);
  }
  void visit(nn::Visitor<T, CPU>& v) override {
    v.child("fc1", fc1);
    v.child("norm", norm);
    v.child("fc2", fc2);
  }
  Tensor<T> loss(const Batch& b, Generator& gen) const {
    const Tensor<T> h = dropout(gelu(norm(fc1(b.x.template to<T>()))), 0.2, gen, this->training());
    return cross_entropy(fc2(h), b.y);
  }
};

constexpr int64_t kTotalSteps = 12;

train::TrainerOptions options() {
  train::TrainerOptions o;
  o.accumulation_steps = 2;
  o.max_grad_norm = 0.5;  // small enough to clip some steps
  o.schedule = train::WarmupCosine{2e-2, 3, kTotalSteps, 0.1};
  return o;
}

data::LoaderOptions loader_options() {
  data::LoaderOptions o;
  o.batch_size = kBatch;
  o.shuffle = true;
  o.seed = 11;
  o.num_workers = 2;
  return o;
}

// Everything a training process holds.
template <class T>
struct Run {
  Net<T> model;
  train::Trainer<T> trainer;
  std::unique_ptr<data::DataLoader<Sample, Batch>> loader;
  Generator gen;

  explicit Run(uint64_t init_seed)
      : model(init_seed), trainer(model, options()), loader(make_loader({})), gen(1234) {}

  static std::unique_ptr<data::DataLoader<Sample, Batch>> make_loader(data::LoaderState start) {
    return std::make_unique<data::DataLoader<Sample, Batch>>(dataset(), loader_options(), collate,
                                                             start);
  }

  train::StepStats step() {
    return trainer.step([&](int64_t) { return model.loss(loader->next(), gen); });
  }

  void resume_from(const fs::path& dir) {
    const auto point = trainer.load(dir);
    loader = make_loader(point.loader);
    gen = point.rng;
  }
};

template <class T>
std::vector<uint8_t> bytes_of(const Tensor<T>& t) {
  const auto v = t.to_vector();
  std::vector<uint8_t> out(v.size() * sizeof(T));
  if (!v.empty()) std::memcpy(out.data(), v.data(), out.size());
  return out;
}

// Every bit of state that decides the rest of the run.
template <class T>
std::vector<std::vector<uint8_t>> snapshot(Run<T>& run) {
  std::vector<std::vector<uint8_t>> out;
  for (auto& [name, t] : run.model.state()) out.push_back(bytes_of(*t));
  for (auto& [name, t] : run.trainer.masters().named()) out.push_back(bytes_of(*t));
  for (const auto& [name, s] : run.trainer.optimizer().state()) {
    out.push_back(bytes_of(s.m));
    out.push_back(bytes_of(s.v));
  }
  return out;
}

template <class T>
void check_exact_resume(const std::string& label, int64_t k) {
  const auto dir =
      fs::path(MENTOR_BINARY_DIR) / "test_resume_scratch" / (label + "_" + std::to_string(k));
  fs::remove_all(dir);

  // Reference: N steps in one go.
  std::vector<double> reference_losses;
  std::vector<double> reference_norms;
  Run<T> reference(5);
  for (int64_t s = 0; s < kTotalSteps; ++s) {
    const auto stats = reference.step();
    reference_losses.push_back(stats.loss);
    reference_norms.push_back(stats.grad_norm);
  }

  // k steps, checkpoint, the process "ends".
  std::vector<double> losses, norms;
  {
    Run<T> first(5);
    for (int64_t s = 0; s < k; ++s) {
      const auto stats = first.step();
      losses.push_back(stats.loss);
      norms.push_back(stats.grad_norm);
    }
    first.trainer.save(dir, first.loader->state(), first.gen, {{"label", label}});
  }
  // A new process: another init (the checkpoint must overwrite everything), then N − k steps.
  Run<T> second(99);
  second.resume_from(dir);
  CHECK(second.trainer.step_count() == k);
  for (int64_t s = k; s < kTotalSteps; ++s) {
    const auto stats = second.step();
    losses.push_back(stats.loss);
    norms.push_back(stats.grad_norm);
  }

  INFO(label << ": resumed after " << k << " of " << kTotalSteps << " steps");
  REQUIRE(losses.size() == reference_losses.size());
  for (size_t s = 0; s < losses.size(); ++s) {
    INFO("step " << s << ": loss " << losses[s] << " vs " << reference_losses[s]);
    CHECK(std::memcmp(&losses[s], &reference_losses[s], sizeof(double)) == 0);
    CHECK(std::memcmp(&norms[s], &reference_norms[s], sizeof(double)) == 0);
  }
  const auto a = snapshot(reference), b = snapshot(second);
  REQUIRE(a.size() == b.size());
  for (size_t i = 0; i < a.size(); ++i) CHECK(a[i] == b[i]);
  CHECK(second.loader->state() == reference.loader->state());
  CHECK(second.gen.offset == reference.gen.offset);
  // The run did learn something and did clip (so the test exercises both paths).
  CHECK(reference_losses.back() < reference_losses.front());
}

}  // namespace

TEST_CASE("float32: k steps + resume + (N - k) steps is bit-identical to N steps", "[resume]") {
  for (int64_t k : {1, 5, 7, 11}) check_exact_resume<float>("fp32", k);
}

TEST_CASE("bf16 with float32 masters: resume is bit-identical too", "[resume][bf16]") {
  for (int64_t k : {4, 7}) check_exact_resume<bf16>("bf16", k);
}

TEST_CASE("the schedule, loader and rng really move (the resume test is not vacuous)", "[resume]") {
  Run<float> run(5);
  const auto s0 = run.step();
  const auto s1 = run.step();
  CHECK(s0.lr != s1.lr);
  CHECK(run.loader->state() == data::LoaderState{0, 4});  // 2 steps × 2 micro-batches
  CHECK(run.gen.offset > 0);                              // dropout drew from the generator
  bool any_clipped = s0.clipped || s1.clipped;
  for (int i = 0; i < 6; ++i) any_clipped = run.step().clipped || any_clipped;
  CHECK(any_clipped);
}

// ---- a real model: the tiny MentorModel with every dropout on -----------------------------------

namespace {

constexpr int64_t kMentorSteps = 8;

train::TrainerOptions mentor_options() {
  train::TrainerOptions o;
  o.accumulation_steps = 2;
  o.max_grad_norm = 0.5;
  o.schedule = train::WarmupCosine{5e-3, 2, kMentorSteps, 0.1};
  return o;
}

struct MentorRun {
  std::unique_ptr<models::MentorModel<float>> model;
  std::unique_ptr<train::Trainer<float>> trainer;
  std::unique_ptr<data::DataLoader<tiny_mentor::Sample, tiny_mentor::Batch>> loader;
  Generator gen{77};

  explicit MentorRun(uint64_t init_seed, bool omit_generators = false)
      : model(tiny_mentor::model(init_seed, 16)),
        trainer(std::make_unique<train::Trainer<float>>(*model, mentor_options())),
        loader(make_loader({})) {
    if (omit_generators) trainer->omit_generators_for_testing();
  }
  static std::unique_ptr<data::DataLoader<tiny_mentor::Sample, tiny_mentor::Batch>> make_loader(
      data::LoaderState start) {
    data::LoaderOptions o;
    o.batch_size = 2;
    o.seed = 3;
    o.num_workers = 1;
    return std::make_unique<data::DataLoader<tiny_mentor::Sample, tiny_mentor::Batch>>(
        tiny_mentor::dataset(16), o, tiny_mentor::collate, start);
  }
  train::StepStats step() {
    return trainer->step([&](int64_t) { return tiny_mentor::loss(*model, loader->next()); });
  }
  void resume_from(const fs::path& dir) {
    const auto point = trainer->load(dir);
    loader = make_loader(point.loader);
    gen = point.rng;
  }
  std::vector<std::vector<uint8_t>> snapshot() {
    std::vector<std::vector<uint8_t>> out;
    for (auto& [name, t] : model->state()) out.push_back(bytes_of(*t));
    for (const auto& [name, s] : trainer->optimizer().state()) {
      out.push_back(bytes_of(s.m));
      out.push_back(bytes_of(s.v));
    }
    return out;
  }
  std::vector<std::pair<uint64_t, uint64_t>> generators() {
    std::vector<std::pair<uint64_t, uint64_t>> out;
    for (const auto& [name, g] : model->named_generators()) out.emplace_back(g->seed, g->offset);
    return out;
  }
};

struct MentorResult {
  std::vector<double> losses, norms;
  std::vector<std::vector<uint8_t>> state;
  std::vector<std::pair<uint64_t, uint64_t>> generators;
};

MentorResult mentor_uninterrupted() {
  MentorRun run(5);
  MentorResult r;
  for (int64_t s = 0; s < kMentorSteps; ++s) {
    const auto stats = run.step();
    r.losses.push_back(stats.loss);
    r.norms.push_back(stats.grad_norm);
  }
  r.state = run.snapshot();
  r.generators = run.generators();
  return r;
}

// k steps, save, a new process (another init when `resume_seed` differs), load, the rest.
MentorResult mentor_resumed(int64_t k, uint64_t resume_seed, bool omit_generators,
                            const std::string& label) {
  const auto dir = fs::path(MENTOR_BINARY_DIR) / "test_resume_scratch" / label;
  fs::remove_all(dir);
  MentorResult r;
  {
    MentorRun first(5, omit_generators);
    for (int64_t s = 0; s < k; ++s) {
      const auto stats = first.step();
      r.losses.push_back(stats.loss);
      r.norms.push_back(stats.grad_norm);
    }
    first.trainer->save(dir, first.loader->state(), first.gen, {{"label", label}});
  }
  MentorRun second(resume_seed, omit_generators);
  second.resume_from(dir);
  CHECK(second.trainer->step_count() == k);
  for (int64_t s = k; s < kMentorSteps; ++s) {
    const auto stats = second.step();
    r.losses.push_back(stats.loss);
    r.norms.push_back(stats.grad_norm);
  }
  r.state = second.snapshot();
  r.generators = second.generators();
  return r;
}

bool same_doubles(const std::vector<double>& a, const std::vector<double>& b) {
  return a.size() == b.size() && std::memcmp(a.data(), b.data(), a.size() * sizeof(double)) == 0;
}

}  // namespace

TEST_CASE("MentorModel, every dropout on: resume is bit-identical (model generators restored)",
          "[resume][mentor]") {
  // The model's generators are what the checkpoint must carry here: the caller's rng is unused.
  {
    MentorRun run(5);
    const auto names = run.model->named_generators();
    REQUIRE(names.size() == 2);
    CHECK(names[0].first == "multimodal_encoder.language_model.dropout_generator");
    CHECK(names[1].first == "dropout_generator");
    const auto before = run.generators();
    run.step();
    const auto after = run.generators();
    CHECK(after[0].second > before[0].second);  // T5 dropout drew
    CHECK(after[1].second > before[1].second);  // GPT token/resid/FFN and guidance dropout drew
  }
  const MentorResult reference = mentor_uninterrupted();
  for (int64_t k : {3, 6}) {
    INFO("resumed after " << k << " of " << kMentorSteps << " steps");
    const MentorResult resumed = mentor_resumed(k, 99, false, "mentor_" + std::to_string(k));
    CHECK(same_doubles(resumed.losses, reference.losses));
    CHECK(same_doubles(resumed.norms, reference.norms));
    REQUIRE(resumed.state.size() == reference.state.size());
    for (size_t i = 0; i < resumed.state.size(); ++i) CHECK(resumed.state[i] == reference.state[i]);
    CHECK(resumed.generators == reference.generators);
  }
}

TEST_CASE("the MentorModel resume test fails when the model's generators are left out",
          "[resume][mentor]") {
  const MentorResult reference = mentor_uninterrupted();
  // Same init seed in the "new process", so only the generators' offsets are lost.
  const MentorResult resumed = mentor_resumed(3, 5, /*omit_generators=*/true, "mentor_omit");
  CHECK(resumed.losses.size() == reference.losses.size());
  CHECK(std::memcmp(resumed.losses.data(), reference.losses.data(), 3 * sizeof(double)) == 0);
  CHECK_FALSE(same_doubles(resumed.losses, reference.losses));
  CHECK_FALSE(resumed.state == reference.state);
  CHECK_FALSE(resumed.generators == reference.generators);

  // A normal trainer refuses that checkpoint for an exact resume, naming what is missing, and
  // loads its weights on request.
  MentorRun strict(5);
  const auto dir = fs::path(MENTOR_BINARY_DIR) / "test_resume_scratch" / "mentor_omit";
  CHECK_THROWS_WITH(strict.trainer->load(dir),
                    Catch::Contains("the model's random generators were not saved"));
  CHECK(strict.trainer->load(dir, train::LoadMode::weights_only).step == 3);
}

}  // namespace test_resume
