#pragma once
// The configuration of MENTOR's multimodal encoder (models/multimodal_encoder.hpp): the CLIP
// vision tower, the projector and the T5 encoder it joins, which hidden state and features it
// takes, the <image> placeholder, strict JSON reading and writing.
#include <cstdint>
#include <string>

#include <nlohmann/json.hpp>

#include "mentor/core/error.hpp"
#include "mentor/io/json_config.hpp"
#include "mentor/models/clip_config.hpp"
#include "mentor/models/projector_config.hpp"
#include "mentor/models/t5_config.hpp"

namespace mentor::models {

// LLaVA's mm_vision_select_feature: "patch" drops the class token, "cls_patch" keeps it.
enum class VisionFeatureSelect { Patch, ClsPatch };

// What the splice does when the prompts hold fewer <image> placeholders than the images give
// feature rows (tokenizer truncation cut a run). More placeholders than rows is always an error
// (upstream raises "shape mismatch" too).
enum class PlaceholderMismatch {
  Error,                // mentor's default: an error naming both counts and the per-sample counts
  TruncateLikeUpstream  // upstream LlavaT5: keep the FIRST rows over the whole batch, row-major
};

struct MultimodalEncoderConfig {
  CLIPVisionConfig vision = CLIPVisionConfig::vit_large_patch14();
  T5Config text = T5Config::flan_t5_xl();
  std::string projector_type = "mlp2x_gelu";
  double projector_init_std = 0.02;
  int64_t select_layer = -2;  // HF hidden_states index (MENTOR: the penultimate state)
  VisionFeatureSelect select_feature = VisionFeatureSelect::Patch;
  int64_t image_token_id = 32100;  // `<image>` added to the T5 tokenizer
  PlaceholderMismatch placeholder_mismatch = PlaceholderMismatch::Error;

  // Vectors each image contributes (= placeholders per image in the prompt).
  int64_t tokens_per_image() const {
    return vision.num_patches() + (select_feature == VisionFeatureSelect::ClsPatch ? 1 : 0);
  }
  ProjectorConfig projector() const {
    ProjectorConfig p;
    p.type = projector_type;
    p.in_features = vision.hidden_size;
    p.out_features = text.d_model;
    p.init_std = projector_init_std;
    return p;
  }

  void validate() const {
    vision.validate();
    text.validate();
    projector().validate();
    MENTOR_CHECK(
        select_layer >= -(vision.num_hidden_layers + 1) && select_layer <= vision.num_hidden_layers,
        "MultimodalEncoderConfig: select_layer ", select_layer, " is not a hidden state of ", "a ",
        vision.num_hidden_layers, "-layer vision tower");
    MENTOR_CHECK(image_token_id >= 0 && image_token_id < text.vocab_size,
                 "MultimodalEncoderConfig: image_token_id ", image_token_id,
                 " is outside the T5 vocabulary of ", text.vocab_size);
  }

  // MENTOR's: CLIP ViT-L/14 (224 px, 256 patches), mlp2x_gelu 1024 -> 2048, FlanT5-XL encoder.
  static MultimodalEncoderConfig mentor() { return MultimodalEncoderConfig{}; }

  // {"vision_config": HF CLIPVisionConfig, "text_config": HF T5Config, "mm_projector_type",
  //  "mm_vision_select_layer", "mm_vision_select_feature": "patch" | "cls_patch",
  //  "image_token_id", "placeholder_mismatch": "error" | "truncate_like_upstream",
  //  "projector_init_std"}; missing keys keep MENTOR's values, any other key is an error (nested
  //  ones name their path, e.g. MultimodalEncoderConfig.text_config).
  static MultimodalEncoderConfig from_json(const nlohmann::json& j, const std::string& path = {}) {
    io::JsonConfigReader r(j, "MultimodalEncoderConfig", path);
    MultimodalEncoderConfig c;
    if (const nlohmann::json* vision = r.find("vision_config"))
      c.vision = CLIPVisionConfig::from_json(*vision, r.child_path("vision_config"));
    if (const nlohmann::json* text = r.find("text_config"))
      c.text = T5Config::from_json(*text, r.child_path("text_config"));
    r.read("mm_projector_type", c.projector_type);
    r.read("projector_init_std", c.projector_init_std);
    r.read("mm_vision_select_layer", c.select_layer);
    if (const auto feature = r.read_string("mm_vision_select_feature")) {
      if (*feature == "patch")
        c.select_feature = VisionFeatureSelect::Patch;
      else if (*feature == "cls_patch")
        c.select_feature = VisionFeatureSelect::ClsPatch;
      else
        r.fail(mentor::detail::concat("mm_vision_select_feature '", *feature,
                                      "' is not patch or cls_patch"));
    }
    r.read("image_token_id", c.image_token_id);
    if (const auto mismatch = r.read_string("placeholder_mismatch")) {
      if (*mismatch == "error")
        c.placeholder_mismatch = PlaceholderMismatch::Error;
      else if (*mismatch == "truncate_like_upstream")
        c.placeholder_mismatch = PlaceholderMismatch::TruncateLikeUpstream;
      else
        r.fail(mentor::detail::concat("placeholder_mismatch '", *mismatch,
                                      "' is not error or truncate_like_upstream"));
    }
    r.finish();
    c.validate();
    return c;
  }
  nlohmann::json to_json() const {
    return {
        {"vision_config", vision.to_json()},
        {"text_config", text.to_json()},
        {"mm_projector_type", projector_type},
        {"projector_init_std", projector_init_std},
        {"mm_vision_select_layer", select_layer},
        {"mm_vision_select_feature",
         select_feature == VisionFeatureSelect::Patch ? "patch" : "cls_patch"},
        {"image_token_id", image_token_id},
        {"placeholder_mismatch",
         placeholder_mismatch == PlaceholderMismatch::Error ? "error" : "truncate_like_upstream"}};
  }
};

}  // namespace mentor::models
