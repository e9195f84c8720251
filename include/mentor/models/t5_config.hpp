#pragma once
// The configuration of the T5 encoder (models/t5.hpp): Hugging Face's T5Config (same key names,
// FlanT5-XL's values by default), its activations, strict JSON reading and writing.
#include <cmath>
#include <cstdint>
#include <string>
#include <utility>

#include <nlohmann/json.hpp>

#include "mentor/core/error.hpp"
#include "mentor/io/json_config.hpp"

namespace mentor::models {

enum class T5Activation { Relu, Gelu, GeluNew, Silu };

inline T5Activation t5_activation_from_name(const std::string& name) {
  if (name == "relu") return T5Activation::Relu;
  if (name == "gelu") return T5Activation::Gelu;
  if (name == "gelu_new" || name == "gelu_pytorch_tanh") return T5Activation::GeluNew;
  if (name == "silu" || name == "swish") return T5Activation::Silu;
  throw Error(
      mentor::detail::concat("T5Config: activation '", name,
                             "' is not supported (relu, gelu, gelu_new, gelu_pytorch_tanh, silu)"));
}
inline std::string t5_activation_name(T5Activation act) {
  switch (act) {
    case T5Activation::Relu:
      return "relu";
    case T5Activation::Gelu:
      return "gelu";
    case T5Activation::GeluNew:
      return "gelu_new";
    case T5Activation::Silu:
      return "silu";
  }
  return "?";
}

// HF T5Config (same key names) for the encoder. Defaults are FlanT5-XL's (MENTOR's encoder).
struct T5Config {
  int64_t vocab_size = 32128;
  int64_t d_model = 2048;
  int64_t d_kv = 64;
  int64_t d_ff = 5120;
  int64_t num_layers = 24;
  int64_t num_heads = 32;
  int64_t relative_attention_num_buckets = 32;
  int64_t relative_attention_max_distance = 128;
  double dropout_rate = 0.1;
  double layer_norm_epsilon = 1e-6;
  double initializer_factor = 1.0;
  bool is_gated_act = true;                           // feed_forward_proj "gated-*"
  T5Activation dense_act_fn = T5Activation::GeluNew;  // "gated-gelu" means gelu_new (HF)

  int64_t inner_dim() const { return num_heads * d_kv; }

  void validate() const {
    MENTOR_CHECK(
        vocab_size > 0 && d_model > 0 && d_kv > 0 && d_ff > 0 && num_layers > 0 && num_heads > 0,
        "T5Config: vocab_size ", vocab_size, ", d_model ", d_model, ", d_kv ", d_kv, ", d_ff ",
        d_ff, ", num_layers ", num_layers, " and num_heads ", num_heads, " must be positive");
    MENTOR_CHECK(relative_attention_num_buckets >= 4 && relative_attention_max_distance > 0,
                 "T5Config: relative_attention_num_buckets ", relative_attention_num_buckets,
                 " (>= 4) and relative_attention_max_distance ", relative_attention_max_distance,
                 " (> 0) are out of range");
    MENTOR_CHECK(dropout_rate >= 0 && dropout_rate < 1, "T5Config: dropout_rate ", dropout_rate,
                 " is outside [0, 1)");
    MENTOR_CHECK(layer_norm_epsilon > 0 && std::isfinite(layer_norm_epsilon),
                 "T5Config: layer_norm_epsilon ", layer_norm_epsilon, " must be positive");
    for (auto [name, size] : {std::pair{"vocab_size", vocab_size},
                              {"d_model", d_model},
                              {"d_kv", d_kv},
                              {"d_ff", d_ff},
                              {"num_heads", num_heads},
                              {"relative_attention_num_buckets", relative_attention_num_buckets},
                              {"relative_attention_max_distance", relative_attention_max_distance}})
      MENTOR_CHECK(size <= io::kMaxConfigSize, "T5Config: ", name, " ", size, " is more than ",
                   io::kMaxConfigSize);
    MENTOR_CHECK(num_layers <= io::kMaxConfigLayers, "T5Config: num_layers ", num_layers,
                 " is more than ", io::kMaxConfigLayers);
    MENTOR_CHECK(std::isfinite(initializer_factor) && initializer_factor >= 0,
                 "T5Config: initializer_factor ", initializer_factor, " must be >= 0");
    (void)parameter_count();
  }

  // The encoder's element count in closed form, so that validate() rejects a config whose encoder
  // could not be counted (an int64 overflow) before anything is built; the module tree itself
  // (t5_encoder_parameter_count) is the reference it is tested against.
  int64_t parameter_count() const {
    io::CheckedCount n(mentor::detail::concat("T5Config: the parameter count (d_model ", d_model,
                                              ", d_ff ", d_ff, ", num_layers ", num_layers, ")"));
    const int64_t inner = n.product({num_heads, d_kv});
    io::CheckedCount layer = n;
    layer.add({4, inner, d_model}).add({2, d_model}).add({is_gated_act ? 3 : 2, d_ff, d_model});
    return n.add({vocab_size, d_model})
        .add({layer.total(), num_layers})
        .add({relative_attention_num_buckets, num_heads})
        .add({d_model})
        .total();
  }

  // google/flan-t5-xl (the encoder of BLIP-2 FlanT5-XL that MENTOR loads).
  static T5Config flan_t5_xl() { return T5Config{}; }

  // Reads an HF T5Config JSON. feed_forward_proj is "[gated-]ACT" ("gated-gelu" meaning
  // gelu_new, as HF); an explicit dense_act_fn / is_gated_act overrides it. HF keys that do not
  // change the encoder (io::hf_keys_without_effect) are accepted; any other key is an error.
  static T5Config from_json(const nlohmann::json& j, const std::string& path = {}) {
    io::JsonConfigReader r(j, "T5Config", path);
    r.ignore(io::hf_keys_without_effect());
    T5Config c;
    if (const auto type = r.read_string("model_type"))
      if (*type != "t5") r.fail(mentor::detail::concat("model_type '", *type, "' is not t5"));
    r.read("vocab_size", c.vocab_size);
    r.read("d_model", c.d_model);
    r.read("d_kv", c.d_kv);
    r.read("d_ff", c.d_ff);
    r.read("num_layers", c.num_layers);
    r.read("num_heads", c.num_heads);
    r.read("relative_attention_num_buckets", c.relative_attention_num_buckets);
    r.read("relative_attention_max_distance", c.relative_attention_max_distance);
    r.read("dropout_rate", c.dropout_rate);
    r.read("layer_norm_epsilon", c.layer_norm_epsilon);
    r.read("initializer_factor", c.initializer_factor);
    if (const auto proj = r.read_string("feed_forward_proj")) {
      const auto dash = proj->find('-');
      c.is_gated_act = dash != std::string::npos && proj->substr(0, dash) == "gated";
      MENTOR_CHECK(dash == std::string::npos || c.is_gated_act, "T5Config: feed_forward_proj '",
                   *proj, "' is not ACT or gated-ACT");
      const std::string act = dash == std::string::npos ? *proj : proj->substr(dash + 1);
      c.dense_act_fn = *proj == "gated-gelu" ? T5Activation::GeluNew : t5_activation_from_name(act);
    }
    if (const auto act = r.read_string("dense_act_fn"))
      c.dense_act_fn = t5_activation_from_name(*act);
    r.read("is_gated_act", c.is_gated_act);
    r.finish();
    c.validate();
    return c;
  }

  nlohmann::json to_json() const {
    std::string act = t5_activation_name(dense_act_fn);
    std::string proj = is_gated_act
                           ? (dense_act_fn == T5Activation::GeluNew ? "gated-gelu" : "gated-" + act)
                           : act;
    return {{"model_type", "t5"},
            {"vocab_size", vocab_size},
            {"d_model", d_model},
            {"d_kv", d_kv},
            {"d_ff", d_ff},
            {"num_layers", num_layers},
            {"num_heads", num_heads},
            {"relative_attention_num_buckets", relative_attention_num_buckets},
            {"relative_attention_max_distance", relative_attention_max_distance},
            {"dropout_rate", dropout_rate},
            {"layer_norm_epsilon", layer_norm_epsilon},
            {"initializer_factor", initializer_factor},
            {"feed_forward_proj", proj},
            {"dense_act_fn", act},
            {"is_gated_act", is_gated_act}};
  }
};

}  // namespace mentor::models
