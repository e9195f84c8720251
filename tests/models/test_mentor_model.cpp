// The MENTOR composition on a tiny random configuration: condition prefix and masks, the training
// forward against the same steps done through the parts, VQ encode/decode shapes, per-stage
// freezing (counts against the shapes list, gradients after a backward), the state-dict key
// layout and its round trip through a safetensors file (with upstream's extra keys), the full-size
// parameter count against mentor-system.md, and config errors.
#include <cmath>
#include <filesystem>
#include <set>
#include <string>
#include <vector>

#include "catch.hpp"
#include "mentor/generate/greedy.hpp"
#include "mentor/models/mentor.hpp"
#include "mentor/ops/reduce.hpp"

namespace test_mentor_model {

using namespace mentor;
using namespace mentor::models;

namespace {

#ifdef MENTOR_CATCH3
auto has_text(const std::string& text) { return Catch::Matchers::ContainsSubstring(text); }
#else
auto has_text(const std::string& text) { return Catch::Contains(text); }
#endif

constexpr int64_t kImageToken = 39;

MentorConfig tiny_config() {
  MentorConfig c;
  MultimodalEncoderConfig& e = c.encoder;
  e.vision.hidden_size = 16;
  e.vision.intermediate_size = 24;
  e.vision.num_hidden_layers = 3;
  e.vision.num_attention_heads = 2;
  e.vision.image_size = 16;
  e.vision.patch_size = 8;  // 4 tokens per image
  e.text.vocab_size = 40;
  e.text.d_model = 12;
  e.text.d_kv = 4;
  e.text.d_ff = 20;
  e.text.num_layers = 2;
  e.text.num_heads = 3;
  e.text.relative_attention_num_buckets = 8;
  e.text.relative_attention_max_distance = 16;
  e.text.dropout_rate = 0.0;
  e.image_token_id = kImageToken;
  GPTConfig& g = c.gpt;
  g = GPTConfig{};
  g.dim = 32;
  g.n_layer = 2;
  g.n_head = 4;
  g.multiple_of = 16;
  g.vocab_size = 16;
  g.block_size = 4;  // 2x2 code grid
  g.cls_token_num = 10;
  g.caption_dim = 12;
  g.model_type = GPTModelType::TextToImage;
  g.rope_prefix = RopePrefix::Identity;
  g.token_dropout_p = g.resid_dropout_p = g.ffn_dropout_p = 0.0;
  VQConfig& q = c.vq;
  q.ch = 32;
  q.encoder_ch_mult = q.decoder_ch_mult = {1, 2};  // 4x4 images -> 2x2 codes
  q.num_res_blocks = 1;
  q.z_channels = 32;
  q.codebook_size = 16;
  q.codebook_embed_dim = 4;
  q.codebook_usage_window = 64;
  return c;
}

Tensor<bool> mask_of(const std::vector<int>& flags, const Shape& shape) {
  std::vector<bool> v;
  for (int f : flags) v.push_back(f != 0);
  return Tensor<bool>::from_vector(v, shape);
}

// Two prompts of 9 positions: sample 0 = 2 text tokens, one image (4 placeholders), eos, 2 pads
// (7 real); sample 1 = one image, 3 text tokens, eos (8 real), 1 pad.
struct Batch {
  Tensor<int64_t> ids = Tensor<int64_t>::from_vector(
      {3, 4, kImageToken, kImageToken, kImageToken, kImageToken, 1, 0, 0,  //
       kImageToken, kImageToken, kImageToken, kImageToken, 5, 6, 7, 1, 0},
      Shape{2, 9});
  Tensor<bool> mask = mask_of({1, 1, 1, 1, 1, 1, 1, 0, 0, 1, 1, 1, 1, 1, 1, 1, 1, 0}, Shape{2, 9});
  std::vector<int64_t> valid = {7, 8};
};

template <class T>
double max_abs_diff(const Tensor<T>& a, const Tensor<T>& b) {
  REQUIRE(a.shape() == b.shape());
  auto x = a.to_vector(), y = b.to_vector();
  double m = 0;
  for (size_t i = 0; i < x.size(); ++i)
    m = std::max(m, std::abs(static_cast<double>(x[i]) - static_cast<double>(y[i])));
  return m;
}

// Random weights in the GPT output head (upstream zero-initialises it, which would stop every
// gradient).
template <class T>
void randomise_head(MentorModel<T>& model, uint64_t seed) {
  Generator gen(seed);
  model.gpt.output.weight =
      nn::normal_init<T, CPU>(model.gpt.output.weight.shape(), gen).requires_grad_();
}

bool starts_with(const std::string& s, const std::string& prefix) {
  return s.rfind(prefix, 0) == 0;
}

}  // namespace

TEST_CASE("MENTOR condition prefix, masks and training forward", "[mentor]") {
  MentorConfig c = tiny_config();
  Generator gen(21);
  MentorModel<double> model(c, gen);
  randomise_head(model, 5);
  Batch batch;
  Tensor<double> images = Tensor<double>::randn({2, 3, 16, 16}, gen);

  model.eval();
  NoGradGuard no_grad;
  ConditionPrefix<double, CPU> prefix = model.condition(batch.ids, batch.mask, images);
  REQUIRE(prefix.embeddings.shape() == Shape{2, 10, 12});
  REQUIRE(prefix.mask.shape() == Shape{2, 10});
  // The encoder's real rows, in order, fill the last n_valid slots; the rest are zero.
  Tensor<double> hidden = model.multimodal_encoder(batch.ids, batch.mask, images);
  std::vector<bool> m = prefix.mask.to_vector();
  for (int64_t b = 0; b < 2; ++b) {
    const int64_t n = batch.valid[static_cast<size_t>(b)], start = 10 - n;
    for (int64_t s = 0; s < 10; ++s) {
      CHECK(m[static_cast<size_t>(b * 10 + s)] == (s >= start));
      for (int64_t ch = 0; ch < 12; ++ch) {
        const double expected = s >= start ? hidden.at({b, s - start, ch}) : 0.0;
        CHECK(prefix.embeddings.at({b, s, ch}) == expected);
      }
    }
  }

  // Training forward = the GPT on that prefix with the condition mask.
  Tensor<int64_t> tokens = Tensor<int64_t>::from_vector({1, 5, 9, 15, 0, 2, 2, 7}, Shape{2, 4});
  Tensor<int64_t> inputs = tokens.narrow(1, 0, 3);
  Tensor<bool> keep = Tensor<bool>::zeros({2});
  Tensor<double> logits = model.forward_train(inputs, batch.ids, batch.mask, images, keep);
  REQUIRE(logits.shape() == Shape{2, 4, 16});
  Tensor<bool> attn = condition_attention_mask(prefix.mask, 3);
  REQUIRE(attn.shape() == Shape{2, 1, 13, 13});
  Tensor<double> direct = model.gpt.forward_train(inputs, prefix.embeddings, attn, keep);
  CHECK(max_abs_diff(logits, direct) < 1e-12);
  CHECK(std::isfinite(model.loss(logits, tokens).item()));

  // Text-only prompts with no image.
  Tensor<int64_t> text_ids = Tensor<int64_t>::from_vector({3, 4, 5, 1, 6, 7, 8, 1}, Shape{2, 4});
  ConditionPrefix<double, CPU> text_prefix = model.condition(text_ids, Tensor<bool>());
  CHECK(text_prefix.mask.to_vector() ==
        std::vector<bool>{false, false, false, false, false, false, true, true, true, true,  //
                          false, false, false, false, false, false, true, true, true, true});
  // Placeholders without their image: an error naming the counts.
  CHECK_THROWS_WITH(model.condition(batch.ids, batch.mask, images.narrow(0, 0, 1)),
                    has_text("8 <image> placeholders") && has_text("4 feature rows"));
  CHECK_THROWS_WITH(model.forward_train(inputs.narrow(0, 0, 1), batch.ids, batch.mask, images),
                    has_text("idx [1, 3]"));
}

TEST_CASE("MENTOR VQ tokenizer encodes targets and decodes codes", "[mentor]") {
  MentorConfig c = tiny_config();
  Generator gen(22);
  MentorModel<float> model(c, gen);
  Tensor<float> targets = Tensor<float>::rand({2, 3, 4, 4}, gen, -1.f, 1.f);
  Tensor<int64_t> codes = model.encode_images(targets);
  REQUIRE(codes.shape() == Shape{2, 4});
  for (int64_t code : codes.to_vector()) CHECK((code >= 0 && code < 16));
  // The codes are the VQ's own nearest codes.
  CHECK(codes.reshape({8}).to_vector() == model.vq.encode(targets).indices.to_vector());
  Tensor<float> decoded = model.decode_codes(codes, 2, 2);
  CHECK(decoded.shape() == Shape{2, 3, 4, 4});
  CHECK_FALSE(decoded.requires_grad());
  CHECK_THROWS_WITH(model.decode_codes(codes, 3, 3), has_text("3x3 grid"));
}

TEST_CASE("MENTOR end to end: prompt and images -> greedy tokens -> image", "[mentor]") {
  MentorConfig c = tiny_config();
  Generator gen(25);
  MentorModel<double> model(c, gen);
  randomise_head(model, 8);
  model.eval();
  Batch batch;
  Tensor<double> images = Tensor<double>::randn({2, 3, 16, 16}, gen);
  NoGradGuard no_grad;
  ConditionPrefix<double, CPU> prefix = model.condition(batch.ids, batch.mask, images);
  Tensor<int64_t> tokens =
      generate::generate_greedy(model.gpt, prefix.embeddings, prefix.mask, 4, 1.0);
  REQUIRE(tokens.shape() == Shape{2, 4});
  // The KV-cached generation (GPT's own prefix mask) agrees with a full teacher-forced pass over
  // its own tokens (our condition_attention_mask): each token is the argmax of its row.
  Tensor<double> logits = model.forward_train(tokens.narrow(1, 0, 3), batch.ids, batch.mask, images,
                                              Tensor<bool>::zeros({2}));
  Tensor<int64_t> argmax_tokens = argmax(logits, -1);
  CHECK(argmax_tokens.to_vector() == tokens.to_vector());
  // With guidance the unconditional branch shares the mask; the result is still a valid grid.
  Tensor<int64_t> guided =
      generate::generate_greedy(model.gpt, prefix.embeddings, prefix.mask, 4, 3.0);
  for (int64_t t : guided.to_vector()) CHECK((t >= 0 && t < 16));
  Tensor<double> picture = model.decode_codes(guided, 2, 2);
  CHECK(picture.shape() == Shape{2, 3, 4, 4});
}

TEST_CASE("MENTOR stage freezing", "[mentor][stages]") {
  MentorConfig c = tiny_config();
  Generator gen(23);
  MentorModel<double> model(c, gen);
  randomise_head(model, 6);
  auto shapes = mentor_parameter_shapes(c);

  for (MentorStage stage : {MentorStage::Alignment, MentorStage::InstructionTuning}) {
    INFO("stage " << static_cast<int>(stage));
    // Expected from the names alone (mentor-system.md §1.3).
    FreezeSummary expected;
    for (auto& [name, shape] : shapes) {
      bool frozen = starts_with(name, "multimodal_encoder.vision_model.");
      if (stage == MentorStage::Alignment)
        frozen = frozen || starts_with(name, "layers.") || starts_with(name, "cls_embedding.");
      (frozen ? expected.frozen_tensors : expected.trainable_tensors) += 1;
      (frozen ? expected.frozen_parameters : expected.trainable_parameters) += shape.numel();
    }
    FreezeSummary got = model.set_stage(stage);
    CHECK(got.frozen_tensors == expected.frozen_tensors);
    CHECK(got.trainable_tensors == expected.trainable_tensors);
    CHECK(got.frozen_parameters == expected.frozen_parameters);
    CHECK(got.trainable_parameters == expected.trainable_parameters);

    // A training step's gradients land exactly on the trainable parameters.
    model.train();
    model.zero_grad();
    Batch batch;
    Tensor<double> images = Tensor<double>::randn({2, 3, 16, 16}, gen);
    Tensor<int64_t> tokens = Tensor<int64_t>::from_vector({1, 5, 9, 15, 0, 2, 2, 7}, Shape{2, 4});
    Tensor<double> logits = model.forward_train(tokens.narrow(1, 0, 3), batch.ids, batch.mask,
                                                images, Tensor<bool>::zeros({2}));
    model.loss(logits, tokens).backward();
    for (auto& [name, t] : model.named_parameters()) {
      INFO(name);
      CHECK(t->grad().defined() == t->requires_grad());
    }
  }
  // Stage 1 keeps tok_embeddings, norm and output trainable.
  model.set_stage(MentorStage::Alignment);
  CHECK(model.gpt.tok_embeddings.weight.requires_grad());
  CHECK(model.gpt.norm.weight.requires_grad());
  CHECK(model.gpt.output.weight.requires_grad());
  CHECK_FALSE(model.gpt.layers[0].attention_norm.weight.requires_grad());
  CHECK(model.multimodal_encoder.language_projection.linears[0].weight.requires_grad());
  CHECK(model.multimodal_encoder.language_model.shared.weight.requires_grad());
  CHECK_FALSE(model.multimodal_encoder.vision_model.vision_tower.vision_model.pre_layrnorm.weight
                  .requires_grad());
}

TEST_CASE("MENTOR state: key layout and safetensors round trip", "[mentor][state]") {
  MentorConfig c = tiny_config();
  Generator gen(24);
  MentorModel<float> model(c, gen);
  randomise_head(model, 7);

  // Parameters = the shapes list (names and order); buffers = the GPT's uncond_embedding.
  auto params = model.named_parameters();
  auto shapes = mentor_parameter_shapes(c);
  REQUIRE(params.size() == shapes.size());
  for (size_t i = 0; i < params.size(); ++i) {
    CHECK(params[i].first == shapes[i].first);
    CHECK(params[i].second->shape() == shapes[i].second);
  }
  std::set<std::string> names;
  for (auto& [name, t] : model.state()) names.insert(name);
  for (const char* key :
       {"multimodal_encoder.vision_model.vision_tower.vision_model.embeddings.class_embedding",
        "multimodal_encoder.vision_model.vision_tower.vision_model.pre_layrnorm.weight",
        "multimodal_encoder.vision_model.vision_tower.vision_model.encoder.layers.2.mlp.fc2.bias",
        "multimodal_encoder.vision_model.vision_tower.vision_model.post_layernorm.bias",
        "multimodal_encoder.language_projection.0.weight",
        "multimodal_encoder.language_projection.2.bias",
        "multimodal_encoder.language_model.shared.weight",
        "multimodal_encoder.language_model.encoder.block.0.layer.0.SelfAttention."
        "relative_attention_bias.weight",
        "multimodal_encoder.language_model.encoder.block.1.layer.1.DenseReluDense.wi_1.weight",
        "multimodal_encoder.language_model.encoder.final_layer_norm.weight",
        "cls_embedding.cap_proj.fc1.weight", "cls_embedding.uncond_embedding",
        "tok_embeddings.weight", "layers.1.attention.wqkv.weight", "norm.weight",
        "output.weight"}) {
    INFO(key);
    CHECK(names.count(key) == 1);
  }
  CHECK(names.size() == shapes.size() + 1);  // + uncond_embedding
  for (const std::string& name : names) {
    INFO(name);
    CHECK_FALSE(starts_with(name, "vq."));
    CHECK_FALSE(starts_with(name, "encoder.conv_in"));
  }

  const auto dir = std::filesystem::temp_directory_path();
  const std::string path = (dir / "mentor_test_state.safetensors").string();
  {
    io::SafeTensorsWriter writer;
    model.save(writer);
    writer.write(path);
  }
  Generator other(99);
  MentorModel<float> restored(c, other);
  io::LoadReport report = restored.load(io::SafeTensorsFile::open(path));
  CHECK(report.ok());
  auto a = model.state(), b = restored.state();
  REQUIRE(a.size() == b.size());
  for (size_t i = 0; i < a.size(); ++i) {
    INFO(a[i].first);
    CHECK(a[i].second->to_vector() == b[i].second->to_vector());
  }
  // Trainability survives loading.
  CHECK(restored.gpt.tok_embeddings.weight.requires_grad());

  // An upstream-style file: T5's table under the tied alias only, plus keys that are not state
  // here (CLIP position_ids, freqs_cis, KV caches), under a "model." prefix.
  const std::string upstream_path = (dir / "mentor_test_upstream.safetensors").string();
  {
    io::SafeTensorsWriter writer;
    for (auto& [name, t] : model.state()) {
      std::string key = name == "multimodal_encoder.language_model.shared.weight"
                            ? "multimodal_encoder.language_model.encoder.embed_tokens.weight"
                            : name;
      writer.add("model." + key, t->shape().vec(), t->detach().contiguous().to_vector());
    }
    writer.add(
        "model.multimodal_encoder.vision_model.vision_tower.vision_model.embeddings.position_ids",
        {1, 5}, std::vector<int64_t>{0, 1, 2, 3, 4});
    writer.add("model.freqs_cis", {14, 4, 2}, std::vector<float>(14 * 8, 0.f));
    writer.add("model.layers.0.attention.kv_cache.k_cache", {1, 4, 8, 8},
               std::vector<float>(256, 0.f));
    writer.add("optimizer.step", {1}, std::vector<float>{3.f});  // outside the prefix
    writer.write(upstream_path);
  }
  Generator third(98);
  MentorModel<float> from_upstream(c, third);
  nn::LoadOptions options;
  options.prefix = "model.";
  from_upstream.load(io::SafeTensorsFile::open(upstream_path), options);
  CHECK(from_upstream.multimodal_encoder.language_model.shared.weight.to_vector() ==
        model.multimodal_encoder.language_model.shared.weight.to_vector());
  CHECK(from_upstream.gpt.output.weight.to_vector() == model.gpt.output.weight.to_vector());

  // A genuinely unknown key is still an error in strict mode.
  const std::string bad_path = (dir / "mentor_test_bad.safetensors").string();
  {
    io::SafeTensorsWriter writer;
    model.save(writer);
    writer.add("multimodal_encoder.qformer.weight", {2}, std::vector<float>{1.f, 2.f});
    writer.write(bad_path);
  }
  CHECK_THROWS_WITH(restored.load(io::SafeTensorsFile::open(bad_path)),
                    has_text("multimodal_encoder.qformer.weight"));
  for (const std::string& p : {path, upstream_path, bad_path}) std::filesystem::remove(p);
}

TEST_CASE("MENTOR's full size", "[mentor][config]") {
  MentorConfig c = MentorConfig::mentor();
  CHECK(c.gpt.cls_token_num == 512);
  CHECK(c.gpt.block_size == 1024);
  CHECK(c.gpt.dim == 1280);
  CHECK(c.gpt.n_layer == 36);
  CHECK(c.encoder.tokens_per_image() == 256);
  // The parts, each checked against hand arithmetic in its own test: CLIP-L 303,179,776,
  // projector 6,295,552, FlanT5-XL encoder 1,223,527,424; plus the GPT-XL t2i decoder.
  const int64_t gpt = gpt_parameter_count(c.gpt);
  CHECK(std::abs(static_cast<double>(gpt) - 778e6) / 778e6 < 0.01);  // "t2i ≈778M"
  const int64_t total = mentor_parameter_count(c);
  CHECK(total == 303179776 + 6295552 + 1223527424 + gpt);
  CHECK(std::abs(static_cast<double>(total) - 2.3e9) / 2.3e9 < 0.02);  // README: ≈2.3B
}

TEST_CASE("MENTOR config errors", "[mentor][config]") {
  MentorConfig c = tiny_config();
  c.gpt.caption_dim = 16;
  CHECK_THROWS_WITH(c.validate(), has_text("caption_dim 16 differs from the T5 d_model 12"));
  c = tiny_config();
  c.gpt.vocab_size = 20;
  CHECK_THROWS_WITH(c.validate(), has_text("vocab_size 20 differs from the VQ codebook_size 16"));
  c = tiny_config();
  c.gpt.model_type = GPTModelType::ClassToImage;
  c.gpt.cls_token_num = 1;
  CHECK_THROWS_WITH(c.validate(), has_text("text-conditional"));
  nlohmann::json j = {
      {"gpt", {{"gpt_model", "GPT-B"}, {"model_type", "t2i"}, {"caption_dim", 2048}}}};
  MentorConfig from_json = MentorConfig::from_json(j);
  CHECK(from_json.gpt.dim == 768);
  CHECK(from_json.encoder.text.d_model == 2048);
}

}  // namespace test_mentor_model
