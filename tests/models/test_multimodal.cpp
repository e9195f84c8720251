// MENTOR's multimodal encoder pieces: the <image> splice, the left-padded repacking and the
// decoder mask (hand-checked small examples), image selection, the mlp2x_gelu projector (against a
// hand computation with the erf GELU), and the whole encoder on a tiny random configuration
// against the same steps done by hand (key layout, frozen vision tower, gradients).
#include <cmath>
#include <string>
#include <vector>

#include "catch.hpp"
#include "mentor/models/multimodal_encoder.hpp"
#include "mentor/ops/reduce.hpp"

namespace test_multimodal {

using namespace mentor;
using namespace mentor::models;

namespace {

#ifdef MENTOR_CATCH3
auto has_text(const std::string& text) { return Catch::Matchers::ContainsSubstring(text); }
#else
auto has_text(const std::string& text) { return Catch::Contains(text); }
#endif

template <class T>
Tensor<T> tensor_of(const std::vector<double>& values, const Shape& shape) {
  std::vector<T> v;
  for (double x : values) v.push_back(static_cast<T>(x));
  return Tensor<T>::from_vector(v, shape);
}

Tensor<bool> mask_of(const std::vector<int>& flags, const Shape& shape) {
  std::vector<bool> v;
  for (int f : flags) v.push_back(f != 0);
  return Tensor<bool>::from_vector(v, shape);
}

// embeds[b, t, c] = 100 b + 10 t + c, a pattern that names every row.
Tensor<double> patterned_embeds(int64_t batch, int64_t length, int64_t channels) {
  std::vector<double> v;
  for (int64_t b = 0; b < batch; ++b)
    for (int64_t t = 0; t < length; ++t)
      for (int64_t c = 0; c < channels; ++c) v.push_back(100.0 * b + 10.0 * t + c);
  return Tensor<double>::from_vector(v, Shape{batch, length, channels});
}

MultimodalEncoderConfig tiny_config() {
  MultimodalEncoderConfig c;
  c.vision.hidden_size = 16;
  c.vision.intermediate_size = 24;
  c.vision.num_hidden_layers = 3;
  c.vision.num_attention_heads = 2;
  c.vision.image_size = 16;
  c.vision.patch_size = 8;  // 2x2 = 4 patches per image
  c.text.vocab_size = 40;
  c.text.d_model = 12;
  c.text.d_kv = 4;
  c.text.d_ff = 20;
  c.text.num_layers = 2;
  c.text.num_heads = 3;
  c.text.relative_attention_num_buckets = 8;
  c.text.relative_attention_max_distance = 16;
  c.text.dropout_rate = 0.0;
  c.image_token_id = 39;
  return c;
}

}  // namespace

TEST_CASE("splice replaces each placeholder row by the next image feature row", "[multimodal]") {
  // Sample 0: placeholders at t = 1, 2; sample 1: at t = 0, 1. Two images of two tokens each.
  Tensor<double> embeds = patterned_embeds(2, 4, 2).requires_grad_();
  Tensor<int64_t> ids = Tensor<int64_t>::from_vector({5, 9, 9, 1, 9, 9, 2, 0}, Shape{2, 4});
  Tensor<double> features =
      tensor_of<double>({1000, 1001, 1010, 1011, 2000, 2001, 2010, 2011}, Shape{2, 2, 2})
          .requires_grad_();
  Tensor<double> out = splice_image_features(embeds, ids, features, 9);
  REQUIRE(out.shape() == Shape{2, 4, 2});
  const std::vector<double> expected = {
      0,    1,    1000, 1001, 1010, 1011, 30,  31,    // sample 0: t0, image 0 tokens 0 and 1, t3
      2000, 2001, 2010, 2011, 120,  121,  130, 131};  // sample 1: image 1 tokens 0 and 1, t2, t3
  CHECK(out.to_vector() == expected);

  // Gradients: replaced embedding rows get none; each feature row gets its position's.
  std::vector<double> weights;
  for (int i = 0; i < 16; ++i) weights.push_back(i + 1);
  sum(mul(out, Tensor<double>::from_vector(weights, Shape{2, 4, 2}))).backward();
  CHECK(embeds.grad().to_vector() ==
        std::vector<double>{1, 2, 0, 0, 0, 0, 7, 8, 0, 0, 0, 0, 13, 14, 15, 16});
  CHECK(features.grad().to_vector() == std::vector<double>{3, 4, 5, 6, 9, 10, 11, 12});

  // Flat [rows, C] features splice the same way.
  Tensor<double> flat_out =
      splice_image_features(embeds.detach(), ids, features.detach().reshape({4, 2}), 9);
  CHECK(flat_out.to_vector() == expected);
  // No placeholder and no features: unchanged.
  Tensor<int64_t> plain = Tensor<int64_t>::from_vector({1, 2, 3, 4, 5, 6, 7, 8}, Shape{2, 4});
  CHECK(splice_image_features(embeds.detach(), plain, Tensor<double>(), 9).to_vector() ==
        embeds.detach().to_vector());
}

TEST_CASE("splice reports a placeholder / feature count mismatch", "[multimodal][errors]") {
  Tensor<double> embeds = patterned_embeds(2, 4, 2);
  Tensor<int64_t> ids = Tensor<int64_t>::from_vector({5, 9, 9, 1, 9, 3, 2, 0}, Shape{2, 4});
  Tensor<double> four_rows = Tensor<double>::zeros({2, 2, 2});
  CHECK_THROWS_WITH(splice_image_features(embeds, ids, four_rows, 9),
                    has_text("3 <image> placeholders") && has_text("per sample: 2, 1") &&
                        has_text("4 feature rows"));
  // Placeholders but no image at all.
  CHECK_THROWS_WITH(splice_image_features(embeds, ids, Tensor<double>(), 9),
                    has_text("3 <image> placeholders") && has_text("0 feature rows"));
  // Images but no placeholder.
  Tensor<int64_t> plain = Tensor<int64_t>::from_vector({1, 2, 3, 4, 5, 6, 7, 8}, Shape{2, 4});
  CHECK_THROWS_WITH(splice_image_features(embeds, plain, four_rows, 9),
                    has_text("0 <image> placeholders"));
  // Wrong feature width.
  CHECK_THROWS_WITH(splice_image_features(embeds, ids, Tensor<double>::zeros({3, 5}), 9),
                    has_text("features [3, 5]"));
}

TEST_CASE("left_pad_condition moves the valid rows to the end of the prefix", "[multimodal]") {
  Tensor<double> hidden = patterned_embeds(2, 4, 2).requires_grad_();
  Tensor<bool> mask = mask_of({1, 1, 1, 0, 1, 1, 0, 0}, Shape{2, 4});
  ConditionPrefix<double, CPU> prefix = left_pad_condition(hidden, mask, 5);
  REQUIRE(prefix.embeddings.shape() == Shape{2, 5, 2});
  REQUIRE(prefix.mask.shape() == Shape{2, 5});
  CHECK(prefix.embeddings.to_vector() == std::vector<double>{0, 0, 0, 0, 0, 1, 10,  11,  20,  21,
                                                             0, 0, 0, 0, 0, 0, 100, 101, 110, 111});
  CHECK(prefix.mask.to_vector() ==
        std::vector<bool>{false, false, true, true, true, false, false, false, true, true});

  // Padded rows of the encoder output receive no gradient.
  sum(prefix.embeddings).backward();
  CHECK(hidden.grad().to_vector() ==
        std::vector<double>{1, 1, 1, 1, 1, 1, 0, 0, 1, 1, 1, 1, 0, 0, 0, 0});

  // More valid rows than slots: the first `slots` are kept (upstream's min()).
  ConditionPrefix<double, CPU> short_prefix = left_pad_condition(hidden.detach(), mask, 2);
  CHECK(short_prefix.embeddings.to_vector() ==
        std::vector<double>{0, 1, 10, 11, 100, 101, 110, 111});
  CHECK(short_prefix.mask.to_vector() == std::vector<bool>{true, true, true, true});

  // A sample with no valid token: all zeros, mask off.
  Tensor<bool> empty_mask = mask_of({0, 0, 0, 0, 1, 0, 0, 0}, Shape{2, 4});
  ConditionPrefix<double, CPU> empty = left_pad_condition(hidden.detach(), empty_mask, 3);
  CHECK(empty.embeddings.to_vector() ==
        std::vector<double>{0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 100, 101});
  CHECK(empty.mask.to_vector() == std::vector<bool>{false, false, false, false, false, true});

  CHECK_THROWS_WITH(left_pad_condition(hidden.detach(), mask_of({1, 1, 1}, Shape{1, 3}), 5),
                    has_text("attention_mask [1, 3]"));
}

TEST_CASE("condition_attention_mask: causal, padded prefix columns off, diagonal on",
          "[multimodal]") {
  // Prefix of 3 slots, the first padded; 2 image positions: S = 5.
  Tensor<bool> emb_mask = mask_of({0, 1, 1}, Shape{1, 3});
  Tensor<bool> m = condition_attention_mask(emb_mask, 2);
  REQUIRE(m.shape() == Shape{1, 1, 5, 5});
  const std::vector<int> expected = {1, 0, 0, 0, 0,  // padded slot: itself only
                                     0, 1, 0, 0, 0,  //
                                     0, 1, 1, 0, 0,  //
                                     0, 1, 1, 1, 0,  // image positions never see slot 0
                                     0, 1, 1, 1, 1};
  std::vector<bool> got = m.to_vector();
  for (size_t i = 0; i < expected.size(); ++i) CHECK(got[i] == (expected[i] != 0));
}

TEST_CASE("condition_attention_rows: a KV-cached step's row is that row of the whole mask",
          "[multimodal]") {
  // Two samples, 3 prefix slots (the first padded in sample 0, none in sample 1), 3 image
  // positions.
  Tensor<bool> emb_mask = mask_of({0, 1, 1, 1, 1, 1}, Shape{2, 3});
  const Tensor<bool> whole = condition_attention_mask(emb_mask, 3);  // [2, 1, 6, 6]
  for (int64_t pos = 0; pos < 6; ++pos) {
    INFO("position " << pos);
    const Tensor<bool> row = data::condition_attention_rows(emb_mask, pos, 1);
    REQUIRE(row.shape() == Shape{2, 1, 1, pos + 1});
    CHECK(row.to_vector() ==
          whole.narrow(2, pos, 1).narrow(3, 0, pos + 1).contiguous().to_vector());
  }
  // The prefill's mask is the whole mask of the prefix alone.
  CHECK(data::condition_attention_rows(emb_mask, 0, 3).to_vector() ==
        whole.narrow(2, 0, 3).narrow(3, 0, 3).contiguous().to_vector());
}

TEST_CASE("select_images keeps the masked-in images in (sample, slot) order", "[multimodal]") {
  std::vector<double> v;
  for (int i = 0; i < 2 * 3 * 1 * 1 * 2; ++i) v.push_back(i);
  Tensor<double> pixels = Tensor<double>::from_vector(v, Shape{2, 3, 1, 1, 2});
  Tensor<double> picked = select_images(pixels, mask_of({1, 0, 1, 0, 1, 0}, Shape{2, 3}));
  REQUIRE(picked.shape() == Shape{3, 1, 1, 2});
  CHECK(picked.to_vector() == std::vector<double>{0, 1, 4, 5, 8, 9});
  CHECK(select_images(pixels, mask_of({0, 0, 0, 0, 0, 0}, Shape{2, 3})).shape() ==
        Shape{0, 1, 1, 2});
}

TEST_CASE("projector mlp2x_gelu: Linear, exact GELU, Linear with upstream's keys", "[multimodal]") {
  ProjectorConfig c;
  c.type = "mlp2x_gelu";
  c.in_features = 2;
  c.out_features = 3;
  Generator gen(3);
  Projector<double> projector(c, gen);
  std::vector<std::string> names;
  for (auto& [name, t] : projector.named_parameters()) names.push_back(name);
  CHECK(names == std::vector<std::string>{"0.weight", "0.bias", "2.weight", "2.bias"});
  auto shapes = projector_parameter_shapes(c);
  REQUIRE(shapes.size() == 4);
  CHECK(shapes[2].second == Shape{3, 3});

  const std::vector<double> w0 = {0.5, -1.0, 1.5, 0.25, -0.75, 2.0}, b0 = {0.1, -0.2, 0.3};
  const std::vector<double> w2 = {1, 2, 3, -1, 0.5, 0.25, 0, -2, 1}, b2 = {0.01, 0.02, 0.03};
  projector.linears[0].weight = Tensor<double>::from_vector(w0, Shape{3, 2});
  projector.linears[0].bias = Tensor<double>::from_vector(b0, Shape{3});
  projector.linears[1].weight = Tensor<double>::from_vector(w2, Shape{3, 3});
  projector.linears[1].bias = Tensor<double>::from_vector(b2, Shape{3});
  const std::vector<double> x = {0.7, -1.3};
  std::vector<double> hidden(3), expected(3);
  for (int o = 0; o < 3; ++o) {
    double z = b0[o] + w0[o * 2] * x[0] + w0[o * 2 + 1] * x[1];
    hidden[o] = 0.5 * z * (1 + std::erf(z / std::sqrt(2.0)));
  }
  for (int o = 0; o < 3; ++o)
    expected[o] =
        b2[o] + w2[o * 3] * hidden[0] + w2[o * 3 + 1] * hidden[1] + w2[o * 3 + 2] * hidden[2];
  std::vector<double> got = projector(Tensor<double>::from_vector(x, Shape{1, 2})).to_vector();
  for (int o = 0; o < 3; ++o) CHECK(got[o] == Approx(expected[o]).epsilon(1e-12));

  // A bare Linear ("linear") keeps nn.Linear's own names; unknown types are errors.
  ProjectorConfig linear = c;
  linear.type = "linear";
  Projector<double> single(linear, gen);
  names.clear();
  for (auto& [name, t] : single.named_parameters()) names.push_back(name);
  CHECK(names == std::vector<std::string>{"weight", "bias"});
  ProjectorConfig bad = c;
  bad.type = "mlp_relu";
  CHECK_THROWS_WITH(Projector<double>(bad, gen), has_text("unknown projector type 'mlp_relu'"));
  CHECK_THROWS_WITH(projector(Tensor<double>::zeros({2, 5})), has_text("does not end in 2"));
}

TEST_CASE("MENTOR's projector, CLIP and T5 sizes", "[multimodal][config]") {
  MultimodalEncoderConfig c = MultimodalEncoderConfig::mentor();
  CHECK(c.tokens_per_image() == 256);
  CHECK(c.image_token_id == 32100);
  CHECK(c.select_layer == -2);
  // 1024*2048 + 2048 + 2048*2048 + 2048 = 6,295,552 (mentor-system.md: "≈6.3M").
  int64_t projector = 0;
  for (auto& [name, shape] : projector_parameter_shapes(c.projector())) projector += shape.numel();
  CHECK(projector == 1024 * 2048 + 2048 + 2048 * 2048 + 2048);
  CHECK(std::abs(static_cast<double>(projector) - 6.3e6) < 0.05e6);
}

TEST_CASE("multimodal encoder = CLIP penultimate patches -> projector -> splice -> T5",
          "[multimodal]") {
  MultimodalEncoderConfig c = tiny_config();
  Generator gen(11);
  MultimodalEncoder<double> encoder(c, gen);

  // Key layout = the shapes function, with MENTOR's prefixes.
  auto params = encoder.named_parameters();
  auto shapes = multimodal_encoder_parameter_shapes(c);
  REQUIRE(params.size() == shapes.size());
  for (size_t i = 0; i < params.size(); ++i) {
    CHECK(params[i].first == shapes[i].first);
    CHECK(params[i].second->shape() == shapes[i].second);
  }
  CHECK(params.front().first ==
        "vision_model.vision_tower.vision_model.embeddings.class_embedding");
  CHECK(shapes[shapes.size() - 1].first == "language_model.encoder.final_layer_norm.weight");

  // Prompts: sample 0 = 2 text tokens, image 0's 4 placeholders, eos, 1 pad; sample 1 = image 1's
  // and image 2's placeholders (8), eos.
  const int64_t img = 39;
  Tensor<int64_t> ids = Tensor<int64_t>::from_vector(
      {3, 4, img, img, img, img, 1, 0, 0, img, img, img, img, img, img, img, img, 1}, Shape{2, 9});
  Tensor<bool> mask = mask_of({1, 1, 1, 1, 1, 1, 1, 0, 0, 1, 1, 1, 1, 1, 1, 1, 1, 1}, Shape{2, 9});
  Tensor<double> images = Tensor<double>::randn({3, 3, 16, 16}, gen);

  // Freeze the vision tower (as MENTOR does) and run.
  encoder.set_trainable(true);
  encoder.vision_model.set_trainable(false);
  encoder.zero_grad();
  Tensor<double> hidden = encoder(ids, mask, images);
  REQUIRE(hidden.shape() == Shape{2, 9, 12});

  // The same by hand: penultimate CLIP state without the class token, projector, row-by-row
  // replacement, T5 on the embeddings.
  Tensor<double> penultimate;
  {
    NoGradGuard no_grad;
    auto& clip = encoder.vision_model.vision_tower.vision_model;
    auto states = clip.hidden_states(images);
    REQUIRE(states.size() == 4);
    penultimate = states[2].narrow(1, 1, 4).contiguous();  // output of layer 1 (of 0..2)
    Tensor<double> projected = encoder.language_projection(penultimate).contiguous();  // [3, 4, 12]
    Tensor<double> embeds = encoder.language_model.embed(ids).contiguous();
    std::vector<double> e = embeds.to_vector(), p = projected.to_vector();
    std::vector<int64_t> id = ids.to_vector();
    int64_t next = 0;
    for (size_t pos = 0; pos < id.size(); ++pos) {
      if (id[pos] != img) continue;
      for (int ch = 0; ch < 12; ++ch) e[pos * 12 + ch] = p[static_cast<size_t>(next) * 12 + ch];
      ++next;
    }
    REQUIRE(next == 12);
    Tensor<double> manual = encoder.language_model.forward_embeds(
        Tensor<double>::from_vector(e, Shape{2, 9, 12}), mask);
    std::vector<double> a = hidden.detach().to_vector(), b = manual.to_vector();
    double max_diff = 0;
    for (size_t i = 0; i < a.size(); ++i) max_diff = std::max(max_diff, std::abs(a[i] - b[i]));
    CHECK(max_diff < 1e-12);
  }

  // Gradients reach T5 and the projector, never the frozen tower.
  sum(hidden).backward();
  for (auto& [name, t] : encoder.named_parameters()) {
    const bool vision = name.rfind("vision_model.", 0) == 0;
    INFO(name);
    CHECK(t->grad().defined() == !vision);
  }
  // With the tower trainable, its layers before the selected state get gradients, the last
  // layer and post_layernorm do not.
  encoder.set_trainable(true);
  encoder.zero_grad();
  sum(encoder(ids, mask, images)).backward();
  auto& clip = encoder.vision_model.vision_tower.vision_model;
  CHECK(clip.encoder.layers[1].mlp.fc2.weight.grad().defined());
  CHECK_FALSE(clip.encoder.layers[2].mlp.fc2.weight.grad().defined());
  CHECK_FALSE(clip.post_layernorm.weight.grad().defined());

  // Too few placeholders for the images: an error with both counts.
  CHECK_THROWS_WITH(encoder(ids, mask, images.narrow(0, 0, 2)),
                    has_text("12 <image> placeholders") && has_text("8 feature rows"));
}

TEST_CASE("MultimodalEncoderConfig JSON round trip and errors", "[multimodal][config]") {
  MultimodalEncoderConfig c = tiny_config();
  MultimodalEncoderConfig back = MultimodalEncoderConfig::from_json(c.to_json());
  CHECK(back.vision.hidden_size == 16);
  CHECK(back.text.num_heads == 3);
  CHECK(back.image_token_id == 39);
  CHECK(back.projector().in_features == 16);
  CHECK(back.projector().out_features == 12);
  nlohmann::json bad = c.to_json();
  bad["image_token_id"] = 40;
  CHECK_THROWS_WITH(MultimodalEncoderConfig::from_json(bad), has_text("image_token_id 40"));
  bad = c.to_json();
  bad["mm_vision_select_layer"] = -5;
  CHECK_THROWS_WITH(MultimodalEncoderConfig::from_json(bad), has_text("select_layer -5"));
  bad = c.to_json();
  bad["mm_vision_select_feature"] = "cls";
  CHECK_THROWS_WITH(MultimodalEncoderConfig::from_json(bad), has_text("'cls'"));
}

}  // namespace test_multimodal
