// The CLIP-style contrastive pair (models/contrastive.hpp) on a tiny random configuration: the
// key layout, the loss against CLIP's formula computed in plain double loops from the towers' own
// outputs (with and without the scale clamp), finite differences against backward, 30 Adam steps
// that learn 8 random (image, text) pairs, the towers copied into a MultimodalEncoder giving the
// same outputs bit for bit (and the copy's errors), and the config's JSON.
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <filesystem>
#include <iostream>
#include <map>
#include <string>
#include <vector>

#include "catch.hpp"
#include "mentor/models/contrastive.hpp"
#include "mentor/train/optim.hpp"

namespace test_contrastive {

using namespace mentor;
using namespace mentor::models;

namespace {

#ifdef MENTOR_CATCH3
auto has_text(const std::string& text) { return Catch::Matchers::ContainsSubstring(text); }
#else
auto has_text(const std::string& text) { return Catch::Contains(text); }
#endif

constexpr int64_t kImageToken = 39, kLength = 7;

ContrastiveConfig tiny_config() {
  ContrastiveConfig c;
  c.vision.hidden_size = 16;
  c.vision.intermediate_size = 24;
  c.vision.num_hidden_layers = 2;
  c.vision.num_attention_heads = 2;
  c.vision.image_size = 16;
  c.vision.patch_size = 8;  // 2x2 patches
  c.text.vocab_size = 40;
  c.text.d_model = 12;
  c.text.d_kv = 4;
  c.text.d_ff = 20;
  c.text.num_layers = 2;
  c.text.num_heads = 3;
  c.text.relative_attention_num_buckets = 8;
  c.text.relative_attention_max_distance = 16;
  c.text.dropout_rate = 0.0;
  c.embed_dim = 8;
  return c;
}

MultimodalEncoderConfig encoder_config(const ContrastiveConfig& c) {
  MultimodalEncoderConfig e;
  e.vision = c.vision;
  e.text = c.text;
  e.image_token_id = kImageToken;
  return e;
}

// N random prompts of kLength ids in [2, 38] (no <image> placeholder), sample i with
// kLength - (i % 3) real tokens, the rest padding (id 0, mask false).
struct Texts {
  Tensor<int64_t> ids;
  Tensor<bool> mask;
};
Texts random_texts(int64_t n, uint64_t seed) {
  std::vector<int64_t> ids;
  std::vector<bool> mask;
  for (int64_t i = 0; i < n; ++i) {
    const int64_t real = kLength - i % 3;
    for (int64_t t = 0; t < kLength; ++t) {
      const bool is_real = t < real;
      const float u = philox_uniform_at(seed, 0, i * kLength + t);
      ids.push_back(is_real ? 2 + static_cast<int64_t>(u * 37.0f) % 37 : 0);
      mask.push_back(is_real);
    }
  }
  return {Tensor<int64_t>::from_vector(ids, Shape{n, kLength}),
          Tensor<bool>::from_vector(mask, Shape{n, kLength})};
}

std::vector<double> values(const Tensor<double>& t) { return t.detach().contiguous().to_vector(); }

// CLIP's loss for N pairs computed in double loops from the towers' outputs: pooled [N, H] (CLIP
// pooler_output), hidden [N, L, C] (T5 last_hidden_state), the mask, both projection weights
// [E, H] / [E, C] and the scale. Also the logits and both accuracies.
struct Reference {
  double loss = 0, image_to_text = 0, text_to_image = 0;
  std::vector<double> logits;  // [N, N]
};
Reference reference_loss(const std::vector<double>& pooled, const std::vector<double>& hidden,
                         const std::vector<bool>& mask, const std::vector<double>& w_image,
                         const std::vector<double>& w_text, double scale, int64_t n, int64_t h,
                         int64_t length, int64_t c, int64_t e) {
  auto normalize = [](std::vector<double>& row) {
    double sq = 0;
    for (double x : row) sq += x * x;
    const double norm = std::max(std::sqrt(sq), 1e-12);
    for (double& x : row) x /= norm;
  };
  std::vector<std::vector<double>> img(static_cast<size_t>(n)), txt(static_cast<size_t>(n));
  for (int64_t i = 0; i < n; ++i) {
    std::vector<double>& row = img[static_cast<size_t>(i)];
    row.assign(static_cast<size_t>(e), 0.0);
    for (int64_t k = 0; k < e; ++k)
      for (int64_t j = 0; j < h; ++j)
        row[static_cast<size_t>(k)] +=
            w_image[static_cast<size_t>(k * h + j)] * pooled[static_cast<size_t>(i * h + j)];
    normalize(row);
    std::vector<double> mean(static_cast<size_t>(c), 0.0);
    int64_t count = 0;
    for (int64_t t = 0; t < length; ++t) {
      if (!mask[static_cast<size_t>(i * length + t)]) continue;
      ++count;
      for (int64_t j = 0; j < c; ++j)
        mean[static_cast<size_t>(j)] += hidden[static_cast<size_t>((i * length + t) * c + j)];
    }
    for (double& x : mean) x /= static_cast<double>(count);
    std::vector<double>& trow = txt[static_cast<size_t>(i)];
    trow.assign(static_cast<size_t>(e), 0.0);
    for (int64_t k = 0; k < e; ++k)
      for (int64_t j = 0; j < c; ++j)
        trow[static_cast<size_t>(k)] +=
            w_text[static_cast<size_t>(k * c + j)] * mean[static_cast<size_t>(j)];
    normalize(trow);
  }
  Reference ref;
  ref.logits.assign(static_cast<size_t>(n * n), 0.0);
  auto logit = [&](int64_t i, int64_t j) -> double& {
    return ref.logits[static_cast<size_t>(i * n + j)];
  };
  for (int64_t i = 0; i < n; ++i)
    for (int64_t j = 0; j < n; ++j) {
      double dot = 0;
      for (int64_t k = 0; k < e; ++k)
        dot += img[static_cast<size_t>(i)][static_cast<size_t>(k)] *
               txt[static_cast<size_t>(j)][static_cast<size_t>(k)];
      logit(i, j) = scale * dot;
    }
  // CE over rows (image -> texts) and over columns (text -> images), each a mean over N.
  double rows = 0, cols = 0;
  for (int64_t i = 0; i < n; ++i) {
    double row_max = -INFINITY, col_max = -INFINITY;
    int64_t row_best = 0, col_best = 0;
    for (int64_t j = 0; j < n; ++j) {
      if (logit(i, j) > row_max) row_max = logit(i, j), row_best = j;
      if (logit(j, i) > col_max) col_max = logit(j, i), col_best = j;
    }
    double row_sum = 0, col_sum = 0;
    for (int64_t j = 0; j < n; ++j) {
      row_sum += std::exp(logit(i, j) - row_max);
      col_sum += std::exp(logit(j, i) - col_max);
    }
    rows += row_max + std::log(row_sum) - logit(i, i);
    cols += col_max + std::log(col_sum) - logit(i, i);
    ref.image_to_text += row_best == i ? 1.0 : 0.0;
    ref.text_to_image += col_best == i ? 1.0 : 0.0;
  }
  const double dn = static_cast<double>(n);
  ref.loss = (rows / dn + cols / dn) / 2;
  ref.image_to_text /= dn;
  ref.text_to_image /= dn;
  return ref;
}

Reference reference_for(ContrastivePair<double>& pair, const Tensor<double>& pixels,
                        const Texts& texts, double scale) {
  NoGradGuard no_grad;
  const ContrastiveConfig& c = pair.config();
  const int64_t n = pixels.size(0);
  // The towers called directly.
  const std::vector<double> pooled = values(pair.vision(pixels).pooler_output);
  const std::vector<double> hidden = values(pair.text(texts.ids, texts.mask));
  return reference_loss(pooled, hidden, texts.mask.to_vector(),
                        values(pair.visual_projection.weight), values(pair.text_projection.weight),
                        scale, n, c.vision.hidden_size, kLength, c.text.d_model, c.embed_dim);
}

double max_abs_diff(const std::vector<double>& a, const std::vector<double>& b) {
  REQUIRE(a.size() == b.size());
  double m = 0;
  for (size_t i = 0; i < a.size(); ++i) m = std::max(m, std::abs(a[i] - b[i]));
  return m;
}

}  // namespace

TEST_CASE("contrastive pair: key layout and shapes", "[contrastive]") {
  const ContrastiveConfig c = tiny_config();
  Generator gen(1);
  ContrastivePair<double> pair(c, gen);
  auto params = pair.named_parameters();
  auto shapes = contrastive_pair_parameter_shapes(c);
  REQUIRE(params.size() == shapes.size());
  for (size_t i = 0; i < params.size(); ++i) {
    CHECK(params[i].first == shapes[i].first);
    CHECK(params[i].second->shape() == shapes[i].second);
  }
  CHECK(params.front().first == "vision.vision_model.embeddings.class_embedding");
  std::vector<std::string> names;
  for (auto& [name, t] : params) names.push_back(name);
  const auto has = [&](const std::string& name) {
    return std::find(names.begin(), names.end(), name) != names.end();
  };
  CHECK(has("text.shared.weight"));
  CHECK(has("text.encoder.block.0.layer.0.SelfAttention.relative_attention_bias.weight"));
  CHECK(has("vision.vision_model.post_layernorm.weight"));
  CHECK(names[names.size() - 3] == "visual_projection.weight");
  CHECK(names[names.size() - 2] == "text_projection.weight");
  CHECK(names.back() == "logit_scale");
  CHECK(pair.visual_projection.weight.shape() == Shape{8, 16});
  CHECK(pair.text_projection.weight.shape() == Shape{8, 12});
  CHECK_FALSE(pair.visual_projection.bias.defined());
  CHECK_FALSE(pair.text_projection.bias.defined());
  CHECK(pair.logit_scale.shape() == Shape{});
  CHECK(pair.logit_scale.item() == std::log(1 / 0.07));
  CHECK(pair.scale() == Approx(1 / 0.07).epsilon(1e-14));
  CHECK(pair.scale_tensor().shape() == Shape{});
  CHECK(pair.parameter_count() == c.parameter_count());
}

TEST_CASE("contrastive loss = CLIP's symmetric InfoNCE computed in double loops", "[contrastive]") {
  const ContrastiveConfig c = tiny_config();
  Generator gen(2);
  ContrastivePair<double> pair(c, gen);
  pair.eval();
  const int64_t n = 5;
  const Tensor<double> pixels = Tensor<double>::randn({n, 3, 16, 16}, gen);
  const Texts texts = random_texts(n, 7);

  // Unclamped: scale exp(log(1/0.07)).
  {
    const ContrastiveOutput<double, CPU> out = pair.forward(pixels, texts.ids, texts.mask);
    REQUIRE(out.loss.shape() == Shape{});
    REQUIRE(out.logits_per_image.shape() == Shape{n, n});
    REQUIRE(out.image_embeds.shape() == Shape{n, 8});
    const Reference ref = reference_for(pair, pixels, texts, std::exp(std::log(1 / 0.07)));
    std::cout << "contrastive loss " << out.loss.item() << ", reference " << ref.loss
              << ", difference " << std::abs(out.loss.item() - ref.loss) << "\n";
    CHECK(std::abs(out.loss.item() - ref.loss) <= 1e-12 * std::max(1.0, ref.loss));
    CHECK(max_abs_diff(values(out.logits_per_image), ref.logits) <= 1e-12);
    CHECK(out.image_to_text_accuracy == ref.image_to_text);
    CHECK(out.text_to_image_accuracy == ref.text_to_image);
    CHECK(out.accuracy == (ref.image_to_text + ref.text_to_image) / 2);
    // The embeddings have unit rows.
    for (int64_t i = 0; i < n; ++i) {
      double sq_img = 0, sq_txt = 0;
      for (int64_t k = 0; k < 8; ++k) {
        sq_img += std::pow(out.image_embeds.at({i, k}), 2);
        sq_txt += std::pow(out.text_embeds.at({i, k}), 2);
      }
      CHECK(std::abs(sq_img - 1) < 1e-14);
      CHECK(std::abs(sq_txt - 1) < 1e-14);
    }
    // Padding content does not change the text embeddings (mean over the real tokens only).
    std::vector<int64_t> other_ids = texts.ids.to_vector();
    const std::vector<bool> real = texts.mask.to_vector();
    for (size_t i = 0; i < other_ids.size(); ++i)
      if (!real[i]) other_ids[i] = 17;
    NoGradGuard no_grad;
    const Tensor<double> repadded =
        pair.text_embeds(Tensor<int64_t>::from_vector(other_ids, Shape{n, kLength}), texts.mask);
    CHECK(max_abs_diff(values(repadded), values(out.text_embeds)) <= 1e-12);
    // No mask: every token is real.
    const Tensor<bool> all_real = Tensor<bool>::ones({n, kLength});
    CHECK(values(pair.text_embeds(texts.ids, Tensor<bool>())) ==
          values(pair.text_embeds(texts.ids, all_real)));
  }

  // Clamped: exp(log 200) > logit_scale_max = 100 uses 100, and logit_scale gets no gradient.
  {
    NoGradGuard no_grad;
    pair.logit_scale.fill_(std::log(200.0));
  }
  pair.zero_grad();
  const ContrastiveOutput<double, CPU> clamped = pair.loss(pixels, texts.ids, texts.mask);
  CHECK(pair.scale() == 100.0);
  const Reference ref = reference_for(pair, pixels, texts, 100.0);
  CHECK(std::abs(clamped.loss.item() - ref.loss) <= 1e-12 * std::max(1.0, ref.loss));
  clamped.loss.backward();
  const Tensor<double> g = pair.logit_scale.grad();
  CHECK((!g.defined() || g.item() == 0.0));
  CHECK(pair.text_projection.weight.grad().defined());
  // OpenAI's in-place clamp of the parameter.
  pair.clamp_logit_scale();
  CHECK(pair.logit_scale.item() == std::log(100.0));

  // Errors: a sample without a real token, mismatched batch sizes.
  std::vector<bool> no_real = texts.mask.to_vector();
  for (int64_t t = 0; t < kLength; ++t) no_real[static_cast<size_t>(2 * kLength + t)] = false;
  CHECK_THROWS_WITH(pair.text_embeds(texts.ids, Tensor<bool>::from_vector(no_real, {n, kLength})),
                    has_text("sample 2 has no real token"));
  CHECK_THROWS_WITH(pair.loss(pixels.narrow(0, 0, 4), texts.ids, texts.mask),
                    has_text("pixels [4, 3, 16, 16]") && has_text("ids [5, 7]"));
}

TEST_CASE("contrastive loss gradients agree with finite differences", "[contrastive]") {
  const ContrastiveConfig c = tiny_config();
  Generator gen(3);
  ContrastivePair<double> pair(c, gen);
  pair.eval();
  const int64_t n = 4;
  const Tensor<double> pixels = Tensor<double>::randn({n, 3, 16, 16}, gen);
  const Texts texts = random_texts(n, 11);
  // A scale of 5 keeps the softmaxes away from saturation.
  {
    NoGradGuard no_grad;
    pair.logit_scale.fill_(std::log(5.0));
  }
  pair.zero_grad();
  pair.loss(pixels, texts.ids, texts.mask).loss.backward();
  const std::vector<int64_t> ids = texts.ids.to_vector();

  struct Probe {
    std::string name;
    Tensor<double>* tensor;
    int64_t index;
  };
  auto& clip = pair.vision.vision_model;
  auto& t5 = pair.text;
  const std::vector<Probe> probes = {
      {"logit_scale", &pair.logit_scale, 0},
      {"visual_projection.weight[3, 5]", &pair.visual_projection.weight, 3 * 16 + 5},
      {"text_projection.weight[6, 2]", &pair.text_projection.weight, 6 * 12 + 2},
      {"vision...patch_embedding.weight[7]", &clip.embeddings.patch_embedding.weight, 7},
      {"vision...layers.0.self_attn.q_proj.weight[19]",
       &clip.encoder.layers[0].self_attn.q_proj.weight, 19},
      {"vision...layers.1.mlp.fc2.bias[4]", &clip.encoder.layers[1].mlp.fc2.bias, 4},
      {"vision...post_layernorm.weight[9]", &clip.post_layernorm.weight, 9},
      {"text.shared.weight[first id, 3]", &t5.shared.weight, ids[0] * 12 + 3},
      {"text...relative_attention_bias.weight[5]",
       &t5.encoder.block[0].self_attention.SelfAttention.relative_attention_bias.weight, 5},
      {"text...block.1...wi_0.weight[30]",
       &t5.encoder.block[1].feed_forward.DenseReluDense.wi_0.weight, 30},
      {"text...final_layer_norm.weight[1]", &t5.encoder.final_layer_norm.weight, 1},
  };
  const double h = 1e-5;
  double worst = 0;
  for (const Probe& p : probes) {
    INFO(p.name);
    REQUIRE(p.tensor->grad().defined());
    const double analytic = p.tensor->grad().contiguous().to_vector()[static_cast<size_t>(p.index)];
    double plus = 0, minus = 0;
    {
      NoGradGuard no_grad;
      double* x = p.tensor->data() + p.index;
      const double saved = *x;
      *x = saved + h;
      plus = pair.loss(pixels, texts.ids, texts.mask).loss.item();
      *x = saved - h;
      minus = pair.loss(pixels, texts.ids, texts.mask).loss.item();
      *x = saved;
    }
    const double numeric = (plus - minus) / (2 * h);
    const double relative = std::abs(numeric - analytic) / std::max(std::abs(analytic), 1e-4);
    std::cout << "  d loss / d " << p.name << ": backward " << analytic << ", finite difference "
              << numeric << ", relative error " << relative << "\n";
    CHECK(std::abs(analytic) > 1e-5);  // the probe is not a trivially zero gradient
    CHECK(relative < 1e-6);
    worst = std::max(worst, relative);
  }
  std::cout << "contrastive finite differences: worst relative error " << worst << " over "
            << probes.size() << " probes\n";
}

TEST_CASE("30 Adam steps learn 8 random (image, text) pairs", "[contrastive][train]") {
  const ContrastiveConfig c = tiny_config();
  Generator gen(4);
  ContrastivePair<float> pair(c, gen);
  pair.train();
  const int64_t n = 8;
  const Tensor<float> pixels = Tensor<float>::randn({n, 3, 16, 16}, gen);
  const Texts texts = random_texts(n, 13);
  train::Adam<CPU> adam({train::ParamGroup<CPU>{pair.named_parameters(), 0.0}});

  ContrastiveOutput<float, CPU> first = pair.loss(pixels, texts.ids, texts.mask);
  const double initial_loss = first.loss.item(), initial_accuracy = first.accuracy;
  for (int step = 0; step < 30; ++step) {
    adam.zero_grad();
    ContrastiveOutput<float, CPU> out = pair.loss(pixels, texts.ids, texts.mask);
    out.loss.backward();
    adam.step(1e-2);
    pair.clamp_logit_scale();
    if (step % 5 == 0)
      std::cout << "  step " << step << ": loss " << out.loss.item() << ", accuracy "
                << out.accuracy << ", scale " << pair.scale() << "\n";
  }
  NoGradGuard no_grad;
  const ContrastiveOutput<float, CPU> last = pair.loss(pixels, texts.ids, texts.mask);
  const double final_loss = last.loss.item();
  std::cout << "contrastive training: loss " << initial_loss << " -> " << final_loss << " (ratio "
            << final_loss / initial_loss << ", required < 0.5), accuracy " << initial_accuracy
            << " -> " << last.accuracy << " (image->text " << last.image_to_text_accuracy
            << ", text->image " << last.text_to_image_accuracy << ")\n";
  CHECK(last.accuracy == 1.0);
  CHECK(final_loss < 0.5 * initial_loss);
}

TEST_CASE("copy_towers_into gives the multimodal encoder the pair's towers exactly",
          "[contrastive]") {
  const ContrastiveConfig c = tiny_config();
  Generator gen(5);
  ContrastivePair<double> pair(c, gen);
  Generator other(99);
  MultimodalEncoder<double> encoder(encoder_config(c), other);
  pair.eval();
  encoder.eval();
  const Tensor<double> pixels = Tensor<double>::randn({3, 3, 16, 16}, gen);
  const Texts texts = random_texts(3, 17);
  NoGradGuard no_grad;
  auto& tower = encoder.vision_model.vision_tower;
  CHECK(values(tower(pixels).pooler_output) != values(pair.vision(pixels).pooler_output));

  copy_towers_into(pair, encoder);  // the free function; the member does the same
  // Every tower output, bit for bit.
  CHECK(values(tower(pixels).pooler_output) == values(pair.vision(pixels).pooler_output));
  CHECK(values(tower(pixels).last_hidden_state) == values(pair.vision(pixels).last_hidden_state));
  CHECK(values(encoder.vision_model(pixels)) ==
        values(pair.vision.vision_model.patch_features(pixels, -2)));
  CHECK(values(encoder.language_model(texts.ids, texts.mask)) ==
        values(pair.text(texts.ids, texts.mask)));
  // A prompt without images through the whole encoder is T5 alone.
  CHECK(values(encoder(texts.ids, texts.mask)) == values(pair.text(texts.ids, texts.mask)));
  // Every tensor by name.
  std::map<std::string, std::vector<double>> copied;
  for (auto& [name, t] : encoder.state()) copied[name] = values(*t);
  for (auto& [name, t] : pair.state()) {
    if (name.rfind("vision.", 0) == 0)
      CHECK(copied.at("vision_model.vision_tower." + name.substr(7)) == values(*t));
    else if (name.rfind("text.", 0) == 0)
      CHECK(copied.at("language_model." + name.substr(5)) == values(*t));
  }
  // A copy, not shared storage: changing the pair leaves the encoder alone.
  pair.text.shared.weight.fill_(0.5);
  CHECK(values(encoder.language_model.shared.weight) != values(pair.text.shared.weight));
  // The encoder's parameters stay trainable leaves.
  CHECK(encoder.language_model.shared.weight.requires_grad());
  CHECK(encoder.language_model.shared.weight.is_leaf());

  // Errors, raised before anything is copied: a mis-shaped tensor, a missing one, a setting that
  // changes the function without changing a shape.
  ContrastiveConfig wide = c;
  wide.text.d_ff = 24;
  MultimodalEncoder<double> wide_encoder(encoder_config(wide), other);
  const std::vector<double> before = values(wide_encoder.language_model.shared.weight);
  CHECK_THROWS_WITH(
      pair.copy_towers_into(wide_encoder),
      has_text("'language_model.encoder.block.0.layer.1.DenseReluDense.wi_0.weight' has shape "
               "[24, 12]") &&
          has_text("'text.encoder.block.0.layer.1.DenseReluDense.wi_0.weight' is [20, 12]"));
  CHECK(values(wide_encoder.language_model.shared.weight) == before);
  ContrastiveConfig ungated = c;
  ungated.text.is_gated_act = false;
  MultimodalEncoder<double> ungated_encoder(encoder_config(ungated), other);
  CHECK_THROWS_WITH(pair.copy_towers_into(ungated_encoder),
                    has_text("has no tensor 'language_model.encoder.block.0.layer.1."
                             "DenseReluDense.wi_0.weight'"));
  ContrastiveConfig heads = c;
  heads.vision.num_attention_heads = 4;
  MultimodalEncoder<double> heads_encoder(encoder_config(heads), other);
  CHECK_THROWS_WITH(pair.copy_towers_into(heads_encoder),
                    has_text("vision_config.num_attention_heads is the integer 2 in the pair but "
                             "the integer 4"));
  // Dropout may differ (training-time only).
  ContrastiveConfig dropout = c;
  dropout.text.dropout_rate = 0.1;
  MultimodalEncoder<double> dropout_encoder(encoder_config(dropout), other);
  CHECK_NOTHROW(pair.copy_towers_into(dropout_encoder));
}

TEST_CASE("contrastive pair state round-trips through safetensors", "[contrastive][io]") {
  const ContrastiveConfig c = tiny_config();
  Generator gen(6);
  ContrastivePair<double> pair(c, gen);
  {
    NoGradGuard no_grad;
    pair.logit_scale.fill_(2.0);
  }
  const std::string path =
      (std::filesystem::temp_directory_path() / "mentor_test_contrastive.safetensors").string();
  io::SafeTensorsWriter writer;
  write_state(pair, writer);
  writer.write(path);
  Generator other(7);
  ContrastivePair<double> back(c, other);
  nn::load_state_dict(back, io::SafeTensorsFile::open(path));
  std::filesystem::remove(path);
  auto loaded = back.state();
  auto saved = pair.state();
  REQUIRE(loaded.size() == saved.size());
  for (size_t i = 0; i < saved.size(); ++i) {
    INFO(saved[i].first);
    CHECK(loaded[i].first == saved[i].first);
    CHECK(loaded[i].second->shape() == saved[i].second->shape());
    CHECK(values(*loaded[i].second) == values(*saved[i].second));
  }
  CHECK(back.logit_scale.shape() == Shape{});
  CHECK(back.logit_scale.item() == 2.0);
  CHECK(back.logit_scale.requires_grad());
}

TEST_CASE("ContrastiveConfig JSON: round trip, unknown keys and bad values",
          "[contrastive][config]") {
  const ContrastiveConfig c = tiny_config();
  const ContrastiveConfig back = ContrastiveConfig::from_json(c.to_json());
  CHECK(back.to_json() == c.to_json());
  CHECK(back.embed_dim == 8);
  CHECK(back.vision.hidden_size == 16);
  CHECK(back.text.d_model == 12);
  CHECK(back.logit_scale_init == c.logit_scale_init);

  nlohmann::json bad = c.to_json();
  bad["temperature"] = 0.07;
  CHECK_THROWS_WITH(ContrastiveConfig::from_json(bad), has_text("ContrastiveConfig::from_json") &&
                                                           has_text("unknown key \"temperature\""));
  bad = c.to_json();
  bad["embed_dim"] = 8;  // the key is HF's projection_dim
  CHECK_THROWS_WITH(ContrastiveConfig::from_json(bad), has_text("unknown key \"embed_dim\""));
  bad = c.to_json();
  bad["text_config"]["d_modle"] = 12;
  CHECK_THROWS_WITH(ContrastiveConfig::from_json(bad),
                    has_text("ContrastiveConfig.text_config") && has_text("\"d_modle\""));
  bad = c.to_json();
  bad["projection_dim"] = 0;
  CHECK_THROWS_WITH(ContrastiveConfig::from_json(bad), has_text("embed_dim 0"));
  bad = c.to_json();
  bad["projection_dim"] = 2.5;
  CHECK_THROWS_WITH(ContrastiveConfig::from_json(bad), has_text("\"projection_dim\""));
  bad = c.to_json();
  bad["logit_scale_init_value"] = 5.0;  // exp(5) = 148 > 100
  CHECK_THROWS_WITH(ContrastiveConfig::from_json(bad), has_text("above logit_scale_max 100"));
}

}  // namespace test_contrastive
