#pragma once
// The configuration of the LlamaGen GPT (models/gpt.hpp): upstream's ModelArgs with its named
// sizes (GPT-B ... GPT-7B), strict JSON reading and writing, and the checks every model built from
// it relies on.
#include <array>
#include <cmath>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include <nlohmann/json.hpp>

#include "mentor/core/error.hpp"
#include "mentor/io/json_config.hpp"
#include "mentor/nn/feed_forward.hpp"
#include "mentor/ops/rope.hpp"

namespace mentor::models {

enum class GPTModelType { ClassToImage, TextToImage };  // upstream "c2i", "t2i"

inline std::string_view to_string(GPTModelType type) {
  return type == GPTModelType::ClassToImage ? "c2i" : "t2i";
}

// Upstream's ModelArgs (same names and defaults) plus `rope_prefix`.
struct GPTConfig {
  int64_t dim = 4096;
  int64_t n_layer = 32;
  int64_t n_head = 32;
  int64_t n_kv_head = 0;  // 0 (upstream None): n_head
  int64_t multiple_of = 256;
  std::optional<double> ffn_dim_multiplier;
  double rope_base = 10000;
  double norm_eps = 1e-5;
  double initializer_range = 0.02;

  double token_dropout_p = 0.1;
  double attn_dropout_p = 0.0;  // only 0 is supported (upstream's default; MENTOR's too)
  double resid_dropout_p = 0.1;
  double ffn_dropout_p = 0.1;
  double drop_path_rate = 0.0;  // only 0 is supported (upstream's default)

  int64_t num_classes = 1000;
  int64_t caption_dim = 2048;
  double class_dropout_prob = 0.1;
  GPTModelType model_type = GPTModelType::ClassToImage;

  int64_t vocab_size = 16384;
  int64_t cls_token_num = 1;
  int64_t block_size = 256;
  RopePrefix rope_prefix = RopePrefix::Zero;

  int64_t kv_heads() const { return n_kv_head == 0 ? n_head : n_kv_head; }
  int64_t head_dim() const { return dim / n_head; }
  int64_t ffn_hidden_dim() const {
    return nn::swiglu_hidden_dim(dim, multiple_of, ffn_dim_multiplier);
  }
  int64_t grid_size() const {
    auto grid = static_cast<int64_t>(std::llround(std::sqrt(static_cast<double>(block_size))));
    return grid;
  }
  // The label table has a null-class row only when class dropout is on (as upstream).
  int64_t label_rows() const { return num_classes + (class_dropout_prob > 0 ? 1 : 0); }
  bool is_c2i() const { return model_type == GPTModelType::ClassToImage; }

  void validate() const {
    MENTOR_CHECK(dim > 0 && n_layer > 0 && n_head > 0, "GPTConfig: dim ", dim, ", n_layer ",
                 n_layer, " and n_head ", n_head, " must be positive");
    // Bounds first, so that the products below (and in the modules) cannot overflow.
    for (auto [name, size] : {std::pair{"dim", dim},
                              {"n_head", n_head},
                              {"n_kv_head", n_kv_head},
                              {"multiple_of", multiple_of},
                              {"num_classes", num_classes},
                              {"caption_dim", caption_dim},
                              {"vocab_size", vocab_size},
                              {"cls_token_num", cls_token_num},
                              {"block_size", block_size}})
      MENTOR_CHECK(size >= 0 && size <= io::kMaxConfigSize, "GPTConfig: ", name, " ", size,
                   " is outside [0, ", io::kMaxConfigSize, "]");
    MENTOR_CHECK(n_layer <= io::kMaxConfigLayers, "GPTConfig: n_layer ", n_layer, " is more than ",
                 io::kMaxConfigLayers);
    MENTOR_CHECK(!ffn_dim_multiplier || (std::isfinite(*ffn_dim_multiplier) &&
                                         *ffn_dim_multiplier > 0 && *ffn_dim_multiplier <= 1024),
                 "GPTConfig: ffn_dim_multiplier ", ffn_dim_multiplier.value_or(0),
                 " must lie in (0, 1024]");
    MENTOR_CHECK(std::isfinite(rope_base) && rope_base > 0, "GPTConfig: rope_base ", rope_base,
                 " must be positive");
    MENTOR_CHECK(std::isfinite(norm_eps) && norm_eps > 0, "GPTConfig: norm_eps ", norm_eps,
                 " must be positive");
    MENTOR_CHECK(std::isfinite(initializer_range) && initializer_range >= 0,
                 "GPTConfig: initializer_range ", initializer_range, " must be >= 0");
    MENTOR_CHECK(dim % n_head == 0, "GPTConfig: dim ", dim, " is not a multiple of n_head ",
                 n_head);
    MENTOR_CHECK(n_kv_head >= 0 && n_head % kv_heads() == 0, "GPTConfig: n_kv_head ", n_kv_head,
                 " does not divide n_head ", n_head);
    MENTOR_CHECK(head_dim() % 4 == 0, "GPTConfig: head_dim ", head_dim(),
                 " must be a multiple of 4 for the 2D rotary embedding");
    MENTOR_CHECK(multiple_of > 0, "GPTConfig: multiple_of ", multiple_of, " must be positive");
    MENTOR_CHECK(block_size > 0 && grid_size() * grid_size() == block_size,
                 "GPTConfig: block_size ", block_size, " is not a square number of image tokens");
    MENTOR_CHECK(vocab_size > 0 && cls_token_num > 0, "GPTConfig: vocab_size ", vocab_size,
                 " and cls_token_num ", cls_token_num, " must be positive");
    MENTOR_CHECK(!is_c2i() || (num_classes > 0 && cls_token_num == 1), "GPTConfig: c2i needs ",
                 "num_classes > 0 (got ", num_classes, ") and cls_token_num 1 (got ", cls_token_num,
                 ")");
    MENTOR_CHECK(is_c2i() || caption_dim > 0, "GPTConfig: t2i needs caption_dim > 0, got ",
                 caption_dim);
    for (auto [name, p] : {std::pair{"token_dropout_p", token_dropout_p},
                           {"resid_dropout_p", resid_dropout_p},
                           {"ffn_dropout_p", ffn_dropout_p},
                           {"class_dropout_prob", class_dropout_prob}})
      MENTOR_CHECK(p >= 0 && p <= 1, "GPTConfig: ", name, " ", p, " is outside [0, 1]");
    MENTOR_CHECK(attn_dropout_p == 0, "GPTConfig: attn_dropout_p ", attn_dropout_p,
                 " is not supported (only 0, upstream's default)");
    MENTOR_CHECK(drop_path_rate == 0, "GPTConfig: drop_path_rate ", drop_path_rate,
                 " is not supported (only 0, upstream's default)");
    MENTOR_CHECK(multiple_of > 0 && ffn_hidden_dim() > 0, "GPTConfig: the feed-forward width ",
                 ffn_hidden_dim(), " must be positive (ffn_dim_multiplier ",
                 ffn_dim_multiplier.value_or(1), ")");
    (void)parameter_count();
  }

  // The parameters' element count in closed form, so that validate() rejects a config whose model
  // could not be counted (an int64 overflow) before anything is built; the module tree itself
  // (gpt_parameter_count) is the reference it is tested against.
  int64_t parameter_count() const {
    io::CheckedCount n(mentor::detail::concat("GPTConfig: the parameter count (dim ", dim,
                                              ", n_layer ", n_layer, ", vocab_size ", vocab_size,
                                              ")"));
    const int64_t hidden = ffn_hidden_dim();
    const int64_t qkv_rows = n.product({n_head + 2 * kv_heads(), head_dim()});
    io::CheckedCount layer = n;
    layer.add({qkv_rows, dim}).add({dim, dim}).add({3, hidden, dim}).add({2, dim});
    if (is_c2i())
      n.add({label_rows(), dim});
    else
      n.add({dim, caption_dim}).add({dim, dim});
    return n.add({2, vocab_size, dim}).add({layer.total(), n_layer}).add({dim}).total();
  }

  // Upstream's named sizes (GPT_models): only n_layer, n_head and dim differ.
  static const std::vector<std::pair<std::string, std::array<int64_t, 3>>>& presets() {
    static const std::vector<std::pair<std::string, std::array<int64_t, 3>>> table = {
        {"GPT-B", {12, 12, 768}},    {"GPT-L", {24, 16, 1024}},    {"GPT-XL", {36, 20, 1280}},
        {"GPT-XXL", {48, 24, 1536}}, {"GPT-XXXL", {48, 40, 2560}}, {"GPT-1B", {22, 32, 2048}},
        {"GPT-3B", {24, 32, 3200}},  {"GPT-7B", {32, 32, 4096}}};
    return table;
  }
  // A named size with upstream's defaults for everything else (c2i, 256 tokens); adjust the rest.
  static GPTConfig preset(std::string_view name) {
    for (const auto& [preset_name, sizes] : presets()) {
      if (preset_name != name) continue;
      GPTConfig config;
      config.n_layer = sizes[0];
      config.n_head = sizes[1];
      config.dim = sizes[2];
      return config;
    }
    std::string known;
    for (const auto& [preset_name, sizes] : presets())
      known += (known.empty() ? "" : ", ") + preset_name;
    throw Error(mentor::detail::concat("GPTConfig::preset: unknown model '", name,
                                       "' (known: ", known, ")"));
  }

  // Reads upstream ModelArgs keys (fixture configs.json entries); keys not given (or null) keep
  // their defaults, or the preset's when the object names one under "gpt_model" (e.g. "GPT-XL").
  // "model_type" is "c2i" or "t2i"; "rope_prefix" is "zero" or "identity". Any other key is an
  // error; `path` places the object inside an enclosing config (for messages).
  static GPTConfig from_json(const nlohmann::json& j, const std::string& path = {}) {
    io::JsonConfigReader r(j, "GPTConfig", path);
    const auto preset_name = r.read_string("gpt_model");
    GPTConfig c = preset_name ? preset(*preset_name) : GPTConfig{};
    r.read("dim", c.dim);
    r.read("n_layer", c.n_layer);
    r.read("n_head", c.n_head);
    r.read("n_kv_head", c.n_kv_head);
    r.read("multiple_of", c.multiple_of);
    r.read("ffn_dim_multiplier", c.ffn_dim_multiplier);
    r.read("rope_base", c.rope_base);
    r.read("norm_eps", c.norm_eps);
    r.read("initializer_range", c.initializer_range);
    r.read("token_dropout_p", c.token_dropout_p);
    r.read("attn_dropout_p", c.attn_dropout_p);
    r.read("resid_dropout_p", c.resid_dropout_p);
    r.read("ffn_dropout_p", c.ffn_dropout_p);
    r.read("drop_path_rate", c.drop_path_rate);
    r.read("num_classes", c.num_classes);
    r.read("caption_dim", c.caption_dim);
    r.read("class_dropout_prob", c.class_dropout_prob);
    r.read("vocab_size", c.vocab_size);
    r.read("cls_token_num", c.cls_token_num);
    r.read("block_size", c.block_size);
    if (const auto type = r.read_string("model_type")) {
      if (*type == "c2i")
        c.model_type = GPTModelType::ClassToImage;
      else if (*type == "t2i")
        c.model_type = GPTModelType::TextToImage;
      else
        r.fail(mentor::detail::concat("model_type '", *type, "' is not c2i or t2i"));
    }
    if (const auto prefix = r.read_string("rope_prefix")) {
      if (*prefix == "zero")
        c.rope_prefix = RopePrefix::Zero;
      else if (*prefix == "identity")
        c.rope_prefix = RopePrefix::Identity;
      else
        r.fail(mentor::detail::concat("rope_prefix '", *prefix, "' is not zero or identity"));
    }
    r.finish();
    c.validate();
    return c;
  }

  nlohmann::json to_json() const {
    nlohmann::json j = {
        {"dim", dim},
        {"n_layer", n_layer},
        {"n_head", n_head},
        {"n_kv_head", n_kv_head == 0 ? nlohmann::json() : nlohmann::json(n_kv_head)},
        {"multiple_of", multiple_of},
        {"ffn_dim_multiplier",
         ffn_dim_multiplier ? nlohmann::json(*ffn_dim_multiplier) : nlohmann::json()},
        {"rope_base", rope_base},
        {"norm_eps", norm_eps},
        {"initializer_range", initializer_range},
        {"token_dropout_p", token_dropout_p},
        {"attn_dropout_p", attn_dropout_p},
        {"resid_dropout_p", resid_dropout_p},
        {"ffn_dropout_p", ffn_dropout_p},
        {"drop_path_rate", drop_path_rate},
        {"num_classes", num_classes},
        {"caption_dim", caption_dim},
        {"class_dropout_prob", class_dropout_prob},
        {"model_type", std::string(to_string(model_type))},
        {"vocab_size", vocab_size},
        {"cls_token_num", cls_token_num},
        {"block_size", block_size},
        {"rope_prefix", rope_prefix == RopePrefix::Zero ? "zero" : "identity"}};
    return j;
  }
};

}  // namespace mentor::models
