#pragma once
// The configuration of the CLIP vision tower (models/clip.hpp): Hugging Face's CLIPVisionConfig
// (same key names, openai/clip-vit-large-patch14's values by default), its activations, strict
// JSON reading and writing.
#include <cmath>
#include <cstdint>
#include <string>
#include <utility>

#include <nlohmann/json.hpp>

#include "mentor/core/error.hpp"
#include "mentor/io/json_config.hpp"

namespace mentor::models {

// The activations HF CLIP configs name in `hidden_act`.
enum class CLIPActivation { QuickGelu, Gelu, GeluTanh };

inline CLIPActivation clip_activation_from_name(const std::string& name) {
  if (name == "quick_gelu") return CLIPActivation::QuickGelu;
  if (name == "gelu") return CLIPActivation::Gelu;
  if (name == "gelu_new" || name == "gelu_pytorch_tanh") return CLIPActivation::GeluTanh;
  throw Error(
      mentor::detail::concat("CLIPVisionConfig: hidden_act '", name,
                             "' is not supported (quick_gelu, gelu, gelu_new, gelu_pytorch_tanh)"));
}
inline std::string clip_activation_name(CLIPActivation act) {
  switch (act) {
    case CLIPActivation::QuickGelu:
      return "quick_gelu";
    case CLIPActivation::Gelu:
      return "gelu";
    case CLIPActivation::GeluTanh:
      return "gelu_new";
  }
  return "?";
}

// HF CLIPVisionConfig (same key names). Defaults are openai/clip-vit-large-patch14's vision tower.
struct CLIPVisionConfig {
  int64_t hidden_size = 1024;
  int64_t intermediate_size = 4096;
  int64_t num_hidden_layers = 24;
  int64_t num_attention_heads = 16;
  int64_t num_channels = 3;
  int64_t image_size = 224;
  int64_t patch_size = 14;
  CLIPActivation hidden_act = CLIPActivation::QuickGelu;
  double layer_norm_eps = 1e-5;
  double attention_dropout = 0.0;  // only 0 is supported (CLIP checkpoints, MENTOR's frozen tower)
  double initializer_range = 0.02;
  double initializer_factor = 1.0;

  int64_t grid() const { return image_size / patch_size; }
  int64_t num_patches() const { return grid() * grid(); }
  int64_t num_positions() const { return num_patches() + 1; }
  int64_t head_dim() const { return hidden_size / num_attention_heads; }

  void validate() const {
    MENTOR_CHECK(hidden_size > 0 && intermediate_size > 0 && num_hidden_layers > 0 &&
                     num_attention_heads > 0 && num_channels > 0,
                 "CLIPVisionConfig: hidden_size ", hidden_size, ", intermediate_size ",
                 intermediate_size, ", num_hidden_layers ", num_hidden_layers,
                 ", num_attention_heads ", num_attention_heads, " and num_channels ", num_channels,
                 " must be positive");
    MENTOR_CHECK(hidden_size % num_attention_heads == 0, "CLIPVisionConfig: hidden_size ",
                 hidden_size, " is not a multiple of num_attention_heads ", num_attention_heads);
    MENTOR_CHECK(patch_size > 0 && image_size >= patch_size && image_size % patch_size == 0,
                 "CLIPVisionConfig: image_size ", image_size, " is not a positive multiple of ",
                 "patch_size ", patch_size);
    MENTOR_CHECK(layer_norm_eps > 0, "CLIPVisionConfig: layer_norm_eps ", layer_norm_eps,
                 " must be positive");
    MENTOR_CHECK(attention_dropout == 0, "CLIPVisionConfig: attention_dropout ", attention_dropout,
                 " is not supported (only 0)");
    for (auto [name, size] : {std::pair{"hidden_size", hidden_size},
                              {"intermediate_size", intermediate_size},
                              {"num_attention_heads", num_attention_heads},
                              {"num_channels", num_channels},
                              {"image_size", image_size},
                              {"patch_size", patch_size}})
      MENTOR_CHECK(size <= io::kMaxConfigSize, "CLIPVisionConfig: ", name, " ", size,
                   " is more than ", io::kMaxConfigSize);
    MENTOR_CHECK(num_hidden_layers <= io::kMaxConfigLayers, "CLIPVisionConfig: num_hidden_layers ",
                 num_hidden_layers, " is more than ", io::kMaxConfigLayers);
    MENTOR_CHECK(std::isfinite(layer_norm_eps) && std::isfinite(initializer_range) &&
                     std::isfinite(initializer_factor),
                 "CLIPVisionConfig: layer_norm_eps, initializer_range and initializer_factor must "
                 "be finite");
    (void)parameter_count();
  }

  // The tower's element count in closed form, so that validate() rejects a config whose tower could
  // not be counted (an int64 overflow) before anything is built; the module tree itself
  // (clip_vision_parameter_count) is the reference it is tested against.
  int64_t parameter_count() const {
    io::CheckedCount n(mentor::detail::concat("CLIPVisionConfig: the parameter count (hidden_size ",
                                              hidden_size, ", image_size ", image_size,
                                              ", patch_size ", patch_size, ")"));
    const int64_t h = hidden_size, m = intermediate_size;
    io::CheckedCount layer = n;
    layer.add({4, h, h}).add({4, h}).add({4, h}).add({2, m, h}).add({m}).add({h});
    n.add({h}).add({h, num_channels, patch_size, patch_size});
    n.add({n.product({grid(), grid()}) + 1, h});
    return n.add({4, h}).add({layer.total(), num_hidden_layers}).total();
  }

  // openai/clip-vit-large-patch14 (MENTOR's vision tower): 24 layers, 1024 wide, 16 heads,
  // MLP 4096, 224 px, patch 14, quick-GELU.
  static CLIPVisionConfig vit_large_patch14() { return CLIPVisionConfig{}; }

  // Reads an HF CLIPVisionConfig JSON (missing keys keep the defaults). HF keys that do not change
  // the vision tower (io::hf_keys_without_effect) are accepted; any other key is an error.
  static CLIPVisionConfig from_json(const nlohmann::json& j, const std::string& path = {}) {
    io::JsonConfigReader r(j, "CLIPVisionConfig", path);
    r.ignore(io::hf_keys_without_effect());
    CLIPVisionConfig c;
    if (const auto type = r.read_string("model_type"))
      if (*type != "clip_vision_model")
        r.fail(mentor::detail::concat("model_type '", *type, "' is not clip_vision_model"));
    r.read("hidden_size", c.hidden_size);
    r.read("intermediate_size", c.intermediate_size);
    r.read("num_hidden_layers", c.num_hidden_layers);
    r.read("num_attention_heads", c.num_attention_heads);
    r.read("num_channels", c.num_channels);
    r.read("image_size", c.image_size);
    r.read("patch_size", c.patch_size);
    r.read("layer_norm_eps", c.layer_norm_eps);
    r.read("attention_dropout", c.attention_dropout);
    r.read("initializer_range", c.initializer_range);
    r.read("initializer_factor", c.initializer_factor);
    if (const auto act = r.read_string("hidden_act"))
      c.hidden_act = clip_activation_from_name(*act);
    r.finish();
    c.validate();
    return c;
  }

  nlohmann::json to_json() const {
    return {{"model_type", "clip_vision_model"},
            {"hidden_size", hidden_size},
            {"intermediate_size", intermediate_size},
            {"num_hidden_layers", num_hidden_layers},
            {"num_attention_heads", num_attention_heads},
            {"num_channels", num_channels},
            {"image_size", image_size},
            {"patch_size", patch_size},
            {"hidden_act", clip_activation_name(hidden_act)},
            {"layer_norm_eps", layer_norm_eps},
            {"attention_dropout", attention_dropout},
            {"initializer_range", initializer_range},
            {"initializer_factor", initializer_factor}};
  }
};

}  // namespace mentor::models
