// Freezing by name pattern: MENTOR's stage-1 and stage-2 patterns on a model with MENTOR's naming;
// frozen parameters stay bit-identical through training, get no gradient memory, no float32
// master and no optimizer state; a stage-1 checkpoint starts stage 2 (weights only).
#include <cstring>
#include <filesystem>
#include <map>
#include <set>
#include <string>
#include <vector>

#include "catch.hpp"
#include "mentor/nn/layers.hpp"
#include "mentor/ops/ops.hpp"
#include "mentor/train/trainer.hpp"

namespace test_freeze {

using namespace mentor;
namespace fs = std::filesystem;

namespace {

// Named like MENTOR's state (models/mentor.hpp): a vision tower, a projector, the GPT's condition
// MLP, token embeddings, blocks, final norm and output head.
template <class T>
struct MiniMentor : nn::Module<T, CPU> {
  struct Tower : nn::Module<T, CPU> {
    nn::Linear<T> proj;
    void visit(nn::Visitor<T, CPU>& v) override { v.child("proj", proj); }
  };
  struct Encoder : nn::Module<T, CPU> {
    Tower vision_tower;
    nn::Linear<T> language_projection;
    struct VisionModel : nn::Module<T, CPU> {
      Tower* tower = nullptr;
      void visit(nn::Visitor<T, CPU>& v) override { v.child("vision_tower", *tower); }
    } vision_model;
    void visit(nn::Visitor<T, CPU>& v) override {
      vision_model.tower = &vision_tower;
      v.child("vision_model", vision_model);
      v.child("language_projection", language_projection);
    }
  };
  Encoder multimodal_encoder;
  nn::Linear<T> cls_embedding;
  nn::Embedding<T> tok_embeddings;
  std::vector<nn::Linear<T>> layers;
  nn::RMSNorm<T> norm;
  nn::Linear<T> output;

  MiniMentor() {
    Generator gen(3);
    multimodal_encoder.vision_tower.proj = nn::Linear<T>(6, 6, true, gen, 0.3);
    multimodal_encoder.language_projection = nn::Linear<T>(6, 8, true, gen, 0.3);
    cls_embedding = nn::Linear<T>(8, 8, true, gen, 0.3);
    tok_embeddings = nn::Embedding<T>(10, 8, gen, 0.3);
    for (int i = 0; i < 2; ++i) layers.emplace_back(8, 8, false, gen, 0.3);
    norm = nn::RMSNorm<T>(8);
    output = nn::Linear<T>(8, 10, false, gen, 0.3);
  }
  void visit(nn::Visitor<T, CPU>& v) override {
    v.child("multimodal_encoder", multimodal_encoder);
    v.child("cls_embedding", cls_embedding);
    v.child("tok_embeddings", tok_embeddings);
    v.children("layers", layers);
    v.child("norm", norm);
    v.child("output", output);
  }

  // image [B, 6] -> condition token; ids [B, 3] -> tokens; next-token loss over the 3 positions.
  Tensor<T> loss(const Tensor<T>& image, const Tensor<int64_t>& ids,
                 const Tensor<int64_t>& targets) const {
    const auto& enc = multimodal_encoder;
    Tensor<T> cond = cls_embedding(enc.language_projection(tanh(enc.vision_tower.proj(image))));
    Tensor<T> h = tok_embeddings(ids) + cond.unsqueeze(1);
    for (const auto& layer : layers) h = h + silu(layer(h));
    Tensor<T> logits = output(norm(h));
    return cross_entropy(logits.reshape({-1, 10}), targets.reshape({-1}));
  }
};

// mentor-system.md §1.3 (the same regexes as models/mentor.hpp's mentor_frozen_patterns).
const std::vector<std::string> kStage1Frozen = {"multimodal_encoder\\.vision_model\\..*",
                                                "layers\\..*", "cls_embedding\\..*"};
const std::vector<std::string> kStage2Frozen = {"multimodal_encoder\\.vision_model\\..*"};

struct Batch {
  Tensor<float> image;
  Tensor<int64_t> ids, targets;
  explicit Batch(uint64_t seed) {
    Generator gen(seed);
    image = Tensor<float>::randn({4, 6}, gen);
    std::vector<int64_t> ids_v, targets_v;
    for (int i = 0; i < 12; ++i) {
      ids_v.push_back((seed * 7 + static_cast<uint64_t>(i) * 3) % 10);
      targets_v.push_back((seed * 5 + static_cast<uint64_t>(i) * 7) % 10);
    }
    ids = Tensor<int64_t>::from_vector(ids_v, {4, 3});
    targets = Tensor<int64_t>::from_vector(targets_v, {4, 3});
  }
};

template <class T>
std::vector<uint8_t> bytes_of(const Tensor<T>& t) {
  const auto v = t.to_vector();
  std::vector<uint8_t> out(v.size() * sizeof(T));
  std::memcpy(out.data(), v.data(), out.size());
  return out;
}

template <class T>
void check_stage(const std::vector<std::string>& patterns,
                 const std::set<std::string>& frozen_names) {
  MiniMentor<T> model;
  const int frozen = train::freeze(model, patterns);
  CHECK(frozen == static_cast<int>(frozen_names.size()));
  const auto [trainable, frozen_list] = train::trainable_and_frozen(model);
  CHECK(std::set<std::string>(frozen_list.begin(), frozen_list.end()) == frozen_names);

  std::map<std::string, std::vector<uint8_t>> before;
  for (auto& [name, t] : model.named_parameters()) before[name] = bytes_of(*t);

  train::TrainerOptions options;
  options.schedule = train::Constant{1e-2};
  train::Trainer<T> trainer(model, options);
  // No master copy and no optimizer group entry for frozen parameters.
  CHECK(trainer.masters().size() == trainable.size());
  for (const auto& group : trainer.optimizer().groups())
    for (const auto& [name, t] : group.params) CHECK(!frozen_names.count(name));

  for (uint64_t step = 0; step < 4; ++step) {
    const Batch b(step);
    trainer.step([&](int64_t) {
      Tensor<T> loss = model.loss(b.image.template to<T>(), b.ids, b.targets);
      return loss;
    });
  }
  // A backward pass allocates no gradient for a frozen parameter.
  const Batch b(9);
  model.loss(b.image.template to<T>(), b.ids, b.targets).backward();
  for (auto& [name, t] : model.named_parameters()) {
    INFO(name);
    if (frozen_names.count(name)) {
      CHECK(!t->requires_grad());
      CHECK(!t->grad().defined());
      CHECK(bytes_of(*t) == before[name]);  // bit-identical after training
      CHECK(!trainer.optimizer().state().count(name));
    } else {
      CHECK(t->grad().defined());
      CHECK(bytes_of(*t) != before[name]);  // trained
      CHECK(trainer.optimizer().state().count(name));
    }
  }
}

const std::set<std::string> kTowerNames = {
    "multimodal_encoder.vision_model.vision_tower.proj.weight",
    "multimodal_encoder.vision_model.vision_tower.proj.bias"};

std::set<std::string> stage1_names() {
  auto names = kTowerNames;
  names.insert(
      {"layers.0.weight", "layers.1.weight", "cls_embedding.weight", "cls_embedding.bias"});
  return names;
}

}  // namespace

TEST_CASE("stage 1 freezing: vision tower, GPT blocks, condition MLP stay bit-identical",
          "[freeze]") {
  check_stage<float>(kStage1Frozen, stage1_names());
}

TEST_CASE("stage 2 freezing: only the vision tower", "[freeze]") {
  check_stage<float>(kStage2Frozen, kTowerNames);
}

TEST_CASE("freezing with a bf16 model: frozen params have no master and stay bit-identical",
          "[freeze][bf16]") {
  check_stage<bf16>(kStage1Frozen, stage1_names());
}

TEST_CASE("a pattern that matches nothing is an error", "[freeze]") {
  MiniMentor<float> model;
  CHECK_THROWS_WITH(train::freeze(model, {"vision_tower\\..*"}),
                    Catch::Contains("pattern \"vision_tower\\..*\" matches no parameter"));
}

TEST_CASE("stage 1 checkpoint -> stage 2: weights carry over, the optimizer starts fresh",
          "[freeze][checkpoint]") {
  const auto dir = fs::path(MENTOR_BINARY_DIR) / "test_freeze_scratch";
  fs::remove_all(dir);
  train::TrainerOptions options;
  options.schedule = train::Constant{1e-2};

  MiniMentor<float> stage1;
  train::freeze(stage1, kStage1Frozen);
  train::Trainer<float> t1(stage1, options);
  for (uint64_t s = 0; s < 3; ++s) {
    const Batch b(s);
    t1.step([&](int64_t) { return stage1.loss(b.image, b.ids, b.targets); });
  }
  t1.save(dir, {}, Generator(0));

  MiniMentor<float> stage2;
  train::freeze(stage2, kStage2Frozen);
  train::Trainer<float> t2(stage2, options);
  CHECK_THROWS_WITH(t2.load(dir),
                    Catch::Contains("is trainable here but was not in the saved optimizer"));
  t2.load(dir, train::LoadMode::weights_only);
  auto a = stage1.named_parameters(), b = stage2.named_parameters();
  for (size_t i = 0; i < a.size(); ++i) CHECK(bytes_of(*a[i].second) == bytes_of(*b[i].second));
  CHECK(t2.optimizer().state().empty());
  // The previously frozen blocks now train.
  const auto layer_before = bytes_of(stage2.layers[0].weight);
  const Batch batch(5);
  t2.step([&](int64_t) { return stage2.loss(batch.image, batch.ids, batch.targets); });
  CHECK(bytes_of(stage2.layers[0].weight) != layer_before);
  CHECK(bytes_of(stage2.multimodal_encoder.vision_tower.proj.weight) ==
        bytes_of(stage1.multimodal_encoder.vision_tower.proj.weight));
}

}  // namespace test_freeze
