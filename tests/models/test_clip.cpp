// The CLIP vision tower: the upstream fixture hf_clipvis_s* (outputs, and gradients of the
// penultimate patch features), HF's hidden-state numbering, the patch embedding against a direct
// computation, the ViT-L/14 parameter count from shapes against hand arithmetic and
// mentor-system.md, and the error paths.
#include <cmath>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <iostream>

#include "catch.hpp"
#include "fixture_files.hpp"
#include "mentor/models/clip.hpp"
#include "verify/verify_clip.hpp"

namespace test_clip {

using namespace mentor;
using namespace mentor::models;
using namespace mentor::verify;

namespace {

#ifdef MENTOR_CATCH3
auto has_text(const std::string& text) { return Catch::Matchers::ContainsSubstring(text); }
#else
auto has_text(const std::string& text) { return Catch::Contains(text); }
#endif

nlohmann::json fixture_config(const std::string& key) {
  return test::fixture_config("upstream", key);
}

CLIPVisionConfig tiny_config() {
  CLIPVisionConfig c;
  c.hidden_size = 8;
  c.intermediate_size = 12;
  c.num_hidden_layers = 3;
  c.num_attention_heads = 2;
  c.image_size = 12;
  c.patch_size = 4;  // 3x3 patches
  return c;
}

double max_abs_diff(const Tensor<double>& a, const Tensor<double>& b) {
  REQUIRE(a.shape() == b.shape());
  auto x = a.to_vector(), y = b.to_vector();
  double m = 0;
  for (size_t i = 0; i < x.size(); ++i) m = std::max(m, std::abs(x[i] - y[i]));
  return m;
}

}  // namespace

// Fixtures are required (tests/fixture_files.hpp): a missing file fails.
TEST_CASE("CLIP vision tower matches the upstream fixtures", "[clip][fixture]") {
  MENTOR_FIXTURE_TEST_OR_SKIP();
  auto file = io::SafeTensorsFile::open(
      test::fixture_file("upstream", "hf_clipvis_s0.safetensors").string());
  VerifyReport report = verify_clip<float, CPU>(file, fixture_config("hf_clipvis"));
  report.print(std::cout);
  CHECK(report.pass());
}

TEST_CASE("CLIP bf16 stays close to the fixture", "[clip][fixture][bf16]") {
  MENTOR_FIXTURE_TEST_OR_SKIP();
  auto file = io::SafeTensorsFile::open(
      test::fixture_file("upstream", "hf_clipvis_s0.safetensors").string());
  VerifyReport report = verify_clip<bf16, CPU>(file, fixture_config("hf_clipvis"));
  report.print(std::cout);
  CHECK(report.pass());
}

TEST_CASE("CLIP hidden states are numbered as HF's hidden_states", "[clip]") {
  CLIPVisionConfig c = tiny_config();
  Generator gen(5);
  CLIPVisionTransformer<double> clip(c, gen);
  Tensor<double> pixels = Tensor<double>::randn({2, 3, 12, 12}, gen);
  NoGradGuard no_grad;
  auto states = clip.hidden_states(pixels);
  REQUIRE(states.size() == 4);
  // 0: pre_layrnorm(embeddings) — the input of layer 0.
  CHECK(max_abs_diff(states[0], clip.pre_layrnorm(clip.embeddings(pixels))) == 0);
  // k: layer k-1 applied to state k-1.
  for (size_t k = 1; k < states.size(); ++k)
    CHECK(max_abs_diff(states[k], clip.encoder.layers[k - 1](states[k - 1])) == 0);
  // -1 = last_hidden_state, -2 = the input of the last layer.
  auto out = clip(pixels);
  CHECK(max_abs_diff(clip.hidden_state(pixels, -1), out.last_hidden_state) == 0);
  CHECK(max_abs_diff(clip.hidden_state(pixels, -2), states[2]) == 0);
  CHECK(max_abs_diff(clip.patch_features(pixels), states[2].narrow(1, 1, 9).contiguous()) == 0);
  CHECK(max_abs_diff(out.pooler_output, clip.post_layernorm(out.last_hidden_state.select(1, 0))) ==
        0);
  CHECK_THROWS_WITH(clip.hidden_state(pixels, 4), has_text("hidden state 4 is outside [-4, 3]"));
  CHECK_THROWS_WITH(clip.hidden_state(pixels, -5), has_text("hidden state -5"));
}

TEST_CASE("CLIP embeddings: class token, raster patches, positions", "[clip]") {
  CLIPVisionConfig c = tiny_config();
  Generator gen(6);
  CLIPVisionTransformer<double> clip(c, gen);
  Tensor<double> pixels = Tensor<double>::randn({1, 3, 12, 12}, gen);
  NoGradGuard no_grad;
  Tensor<double> e = clip.embeddings(pixels);
  REQUIRE(e.shape() == Shape{1, 10, 8});
  const Tensor<double>& w = clip.embeddings.patch_embedding.weight;  // [8, 3, 4, 4]
  const Tensor<double>& pos = clip.embeddings.position_embedding.weight;
  for (int64_t ch = 0; ch < 8; ++ch)
    CHECK(e.at({0, 0, ch}) == Approx(clip.embeddings.class_embedding.at({ch}) + pos.at({0, ch})));
  for (int64_t p = 0; p < 9; ++p) {
    const int64_t gy = p / 3, gx = p % 3;
    for (int64_t ch = 0; ch < 8; ++ch) {
      double acc = pos.at({p + 1, ch});
      for (int64_t ci = 0; ci < 3; ++ci)
        for (int64_t ky = 0; ky < 4; ++ky)
          for (int64_t kx = 0; kx < 4; ++kx)
            acc += w.at({ch, ci, ky, kx}) * pixels.at({0, ci, gy * 4 + ky, gx * 4 + kx});
      CHECK(e.at({0, p + 1, ch}) == Approx(acc).epsilon(1e-12));
    }
  }
}

TEST_CASE("CLIP parameter names and counts", "[clip][config]") {
  // Shapes function = the module's parameters, in order.
  CLIPVisionConfig c = tiny_config();
  Generator gen(1);
  CLIPVisionTransformer<float> clip(c, gen);
  auto params = clip.named_parameters();
  auto shapes = clip_vision_parameter_shapes(c);
  REQUIRE(params.size() == shapes.size());
  for (size_t i = 0; i < params.size(); ++i) {
    CHECK(params[i].first == shapes[i].first);
    CHECK(params[i].second->shape() == shapes[i].second);
  }
  CHECK(shapes[3].first == "pre_layrnorm.weight");

  // openai/clip-vit-large-patch14 vision tower, by hand: patch conv 1024*3*14*14, class 1024,
  // positions 257*1024, two LayerNorms outside the layers, and per layer 4 biased 1024x1024
  // projections, fc1 1024->4096, fc2 4096->1024 and two LayerNorms.
  const int64_t h = 1024, m = 4096;
  const int64_t per_layer = 4 * (h * h + h) + (h * m + m) + (m * h + h) + 2 * 2 * h;
  const int64_t expected = h * 3 * 14 * 14 + h + 257 * h + 2 * 2 * h + 24 * per_layer;
  const CLIPVisionConfig large = CLIPVisionConfig::vit_large_patch14();
  CHECK(large.num_patches() == 256);
  CHECK(clip_vision_parameter_count(large) == expected);
  CHECK(expected == 303179776);
  // mentor-system.md: "CLIP-L ≈304M".
  CHECK(std::abs(static_cast<double>(expected) - 304e6) / 304e6 < 0.01);
}

TEST_CASE("CLIP config and input errors", "[clip][errors]") {
  nlohmann::json j = tiny_config().to_json();
  CLIPVisionConfig back = CLIPVisionConfig::from_json(j);
  CHECK(back.hidden_size == 8);
  CHECK(back.hidden_act == CLIPActivation::QuickGelu);
  j["hidden_act"] = "relu";
  CHECK_THROWS_WITH(CLIPVisionConfig::from_json(j), has_text("hidden_act 'relu'"));
  j = tiny_config().to_json();
  j["patch_size"] = 5;
  CHECK_THROWS_WITH(CLIPVisionConfig::from_json(j), has_text("image_size 12"));
  j = tiny_config().to_json();
  j["num_attention_heads"] = 3;
  CHECK_THROWS_WITH(CLIPVisionConfig::from_json(j), has_text("num_attention_heads 3"));

  Generator gen(2);
  CLIPVisionTransformer<float> clip(tiny_config(), gen);
  CHECK_THROWS_WITH(clip(Tensor<float>::zeros({1, 3, 16, 16})),
                    has_text("pixel_values [1, 3, 16, 16]"));
  CHECK_THROWS_WITH(clip(Tensor<float>::zeros({1, 1, 12, 12})), has_text("[1, 1, 12, 12]"));
}

}  // namespace test_clip
