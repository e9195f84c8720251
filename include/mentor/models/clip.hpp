#pragma once
// The CLIP vision tower (Hugging Face transformers' CLIPVisionTransformer, modeling_clip.py), as
// MENTOR uses it: openai/clip-vit-large-patch14 run on 224x224 images, features taken from the
// penultimate hidden state with the class token dropped (16x16 = 256 patch vectors of 1024).
//
// Structure (names are HF's state_dict names, so checkpoints load by name):
//   embeddings.patch_embedding      Conv2d(3 -> hidden, kernel = stride = patch, no bias)
//   embeddings.class_embedding      [hidden], prepended to the patch sequence
//   embeddings.position_embedding   Embedding(1 + patches, hidden), added to every position
//   pre_layrnorm                    LayerNorm (HF's spelling), applied BEFORE the first layer
//   encoder.layers.N                pre-norm ViT block: h += self_attn(layer_norm1(h));
//                                   h += mlp(layer_norm2(h)); attention with q/k/v/out_proj
//                                   biases, scale head_dim^-1/2, no mask; mlp fc1 -> act -> fc2
//   post_layernorm                  LayerNorm applied only to the class token (pooler_output)
//
// Hidden states are numbered as HF's `hidden_states` tuple: 0 is the pre_layrnorm output (the
// input of layer 0), k the output of layer k-1, and num_layers (= -1) the last_hidden_state. So
// MENTOR's select_layer -2 is the output of the second-to-last layer, i.e. the input of the last
// layer: the last layer and post_layernorm do not take part in MENTOR's features (and get no
// gradient from them). HF's non-persistent `embeddings.position_ids` buffer is not a tensor here.
#include <cmath>
#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include "mentor/core/error.hpp"
#include "mentor/models/clip_config.hpp"
#include "mentor/nn/layers.hpp"
#include "mentor/nn/module.hpp"
#include "mentor/ops/attention.hpp"
#include "mentor/ops/elementwise.hpp"
#include "mentor/ops/shape_ops.hpp"
#include "mentor/ops/unary.hpp"

namespace mentor::models {

// The activation of hidden_act.
template <FloatingElement T, class D>
Tensor<T, D> apply_clip_activation(const Tensor<T, D>& x, CLIPActivation act) {
  switch (act) {
    case CLIPActivation::QuickGelu:
      return quick_gelu(x);
    case CLIPActivation::Gelu:
      return gelu(x, GeluApprox::None);
    case CLIPActivation::GeluTanh:
      return gelu(x, GeluApprox::Tanh);
  }
  throw Error("apply_clip_activation: unknown activation");
}

// ---- modules ------------------------------------------------------------------------------------

template <FloatingElement T, class D = CPU>
class CLIPVisionEmbeddings : public nn::Module<T, D> {
 public:
  CLIPVisionEmbeddings() = default;
  // HF _init_weights: class_embedding ~ N(0, hidden^-1/2 * factor), patch and position
  // embeddings ~ N(0, initializer_range * factor).
  CLIPVisionEmbeddings(const CLIPVisionConfig& c, Generator& gen)
      : class_embedding(nn::normal_init<T, D>({c.hidden_size}, gen,
                                              std::pow(static_cast<double>(c.hidden_size), -0.5) *
                                                  c.initializer_factor)
                            .requires_grad_()),
        position_embedding(c.num_positions(), c.hidden_size, gen,
                           c.initializer_range * c.initializer_factor),
        config_(c) {
    patch_embedding.stride = c.patch_size;
    patch_embedding.padding = 0;
    patch_embedding.weight =
        nn::normal_init<T, D>({c.hidden_size, c.num_channels, c.patch_size, c.patch_size}, gen,
                              c.initializer_range * c.initializer_factor)
            .requires_grad_();
  }

  // pixel_values [B, C, image_size, image_size] -> [B, 1 + patches, hidden] (class token first,
  // patches in row-major raster order), position embeddings added.
  Tensor<T, D> operator()(const Tensor<T, D>& pixel_values) const {
    MENTOR_CHECK_SHAPE(pixel_values.dim() == 4 && pixel_values.size(1) == config_.num_channels &&
                           pixel_values.size(2) == config_.image_size &&
                           pixel_values.size(3) == config_.image_size,
                       "CLIPVisionEmbeddings: pixel_values ", pixel_values.shape().str(),
                       " are not [batch, ", config_.num_channels, ", ", config_.image_size, ", ",
                       config_.image_size,
                       "] (position-embedding interpolation for other sizes is not supported)");
    const int64_t batch = pixel_values.size(0), hidden = config_.hidden_size;
    Tensor<T, D> patches = patch_embedding(pixel_values);  // [B, hidden, g, g]
    patches = patches.flatten(2).transpose(1, 2);          // [B, g*g, hidden]
    Tensor<T, D> cls = class_embedding.view({1, 1, hidden}).expand({batch, 1, hidden});
    Tensor<T, D> embeddings = concat(std::vector<Tensor<T, D>>{cls, patches}, 1);
    // HF looks the table up with position_ids = arange(num_positions): the whole table, in order.
    return add(embeddings, position_embedding.weight.unsqueeze(0));
  }

  void visit(nn::Visitor<T, D>& v) override {
    v.parameter("class_embedding", class_embedding);
    v.child("patch_embedding", patch_embedding);
    v.child("position_embedding", position_embedding);
  }

  Tensor<T, D> class_embedding;            // [hidden]
  nn::Conv2d<T, D> patch_embedding;        // weight [hidden, C, patch, patch], no bias
  nn::Embedding<T, D> position_embedding;  // [1 + patches, hidden]

 private:
  CLIPVisionConfig config_;
};

// Multi-head self-attention with biased q/k/v/out projections and no mask.
template <FloatingElement T, class D = CPU>
class CLIPAttention : public nn::Module<T, D> {
 public:
  CLIPAttention() = default;
  // HF _init_weights: q/k/v ~ N(0, hidden^-1/2 (2 layers)^-1/2 factor), out ~ N(0, hidden^-1/2
  // factor), biases 0.
  CLIPAttention(const CLIPVisionConfig& c, Generator& gen) : heads_(c.num_attention_heads) {
    const double h = static_cast<double>(c.hidden_size);
    const double in_std = std::pow(h, -0.5) *
                          std::pow(2.0 * static_cast<double>(c.num_hidden_layers), -0.5) *
                          c.initializer_factor;
    const double out_std = std::pow(h, -0.5) * c.initializer_factor;
    k_proj = nn::Linear<T, D>(c.hidden_size, c.hidden_size, true, gen, in_std);
    v_proj = nn::Linear<T, D>(c.hidden_size, c.hidden_size, true, gen, in_std);
    q_proj = nn::Linear<T, D>(c.hidden_size, c.hidden_size, true, gen, in_std);
    out_proj = nn::Linear<T, D>(c.hidden_size, c.hidden_size, true, gen, out_std);
  }

  // x [B, S, hidden] -> [B, S, hidden].
  Tensor<T, D> operator()(const Tensor<T, D>& x) const {
    const int64_t batch = x.size(0), seq = x.size(1), hidden = x.size(2);
    const int64_t head_dim = hidden / heads_;
    auto heads = [&](const Tensor<T, D>& t) {
      return t.view({batch, seq, heads_, head_dim}).transpose(1, 2);  // [B, H, S, Dh]
    };
    // Scale head_dim^-1/2 (the SDPA default), no mask, attention dropout 0.
    Tensor<T, D> attended =
        scaled_dot_product_attention(heads(q_proj(x)), heads(k_proj(x)), heads(v_proj(x)));
    return out_proj(attended.transpose(1, 2).reshape({batch, seq, hidden}));
  }

  void visit(nn::Visitor<T, D>& v) override {
    v.child("k_proj", k_proj);
    v.child("v_proj", v_proj);
    v.child("q_proj", q_proj);
    v.child("out_proj", out_proj);
  }

  nn::Linear<T, D> k_proj, v_proj, q_proj, out_proj;

 private:
  int64_t heads_ = 1;
};

template <FloatingElement T, class D = CPU>
class CLIPMLP : public nn::Module<T, D> {
 public:
  CLIPMLP() = default;
  // HF _init_weights: fc1 ~ N(0, (2 hidden)^-1/2 factor), fc2 ~ the attention's in-proj std.
  CLIPMLP(const CLIPVisionConfig& c, Generator& gen) : act_(c.hidden_act) {
    const double h = static_cast<double>(c.hidden_size);
    const double fc_std = std::pow(2.0 * h, -0.5) * c.initializer_factor;
    const double in_std = std::pow(h, -0.5) *
                          std::pow(2.0 * static_cast<double>(c.num_hidden_layers), -0.5) *
                          c.initializer_factor;
    fc1 = nn::Linear<T, D>(c.hidden_size, c.intermediate_size, true, gen, fc_std);
    fc2 = nn::Linear<T, D>(c.intermediate_size, c.hidden_size, true, gen, in_std);
  }
  Tensor<T, D> operator()(const Tensor<T, D>& x) const {
    return fc2(apply_clip_activation(fc1(x), act_));
  }
  void visit(nn::Visitor<T, D>& v) override {
    v.child("fc1", fc1);
    v.child("fc2", fc2);
  }

  nn::Linear<T, D> fc1, fc2;

 private:
  CLIPActivation act_ = CLIPActivation::QuickGelu;
};

template <FloatingElement T, class D = CPU>
class CLIPEncoderLayer : public nn::Module<T, D> {
 public:
  CLIPEncoderLayer() = default;
  CLIPEncoderLayer(const CLIPVisionConfig& c, Generator& gen)
      : self_attn(c, gen),
        layer_norm1(c.hidden_size, c.layer_norm_eps),
        mlp(c, gen),
        layer_norm2(c.hidden_size, c.layer_norm_eps) {}

  Tensor<T, D> operator()(const Tensor<T, D>& x) const {
    Tensor<T, D> h = add(x, self_attn(layer_norm1(x)));
    return add(h, mlp(layer_norm2(h)));
  }

  void visit(nn::Visitor<T, D>& v) override {
    v.child("self_attn", self_attn);
    v.child("layer_norm1", layer_norm1);
    v.child("mlp", mlp);
    v.child("layer_norm2", layer_norm2);
  }

  CLIPAttention<T, D> self_attn;
  nn::LayerNorm<T, D> layer_norm1;
  CLIPMLP<T, D> mlp;
  nn::LayerNorm<T, D> layer_norm2;
};

// HF CLIPEncoder: only holds `layers` (the loop lives in CLIPVisionTransformer).
template <FloatingElement T, class D = CPU>
class CLIPEncoder : public nn::Module<T, D> {
 public:
  CLIPEncoder() = default;
  CLIPEncoder(const CLIPVisionConfig& c, Generator& gen) {
    layers.reserve(static_cast<size_t>(c.num_hidden_layers));
    for (int64_t i = 0; i < c.num_hidden_layers; ++i) layers.emplace_back(c, gen);
  }
  void visit(nn::Visitor<T, D>& v) override { v.children("layers", layers); }

  std::vector<CLIPEncoderLayer<T, D>> layers;
};

template <class T, class D>
struct CLIPVisionOutput {
  Tensor<T, D> last_hidden_state;  // [B, 1 + patches, hidden] (no post_layernorm)
  Tensor<T, D> pooler_output;      // [B, hidden]: post_layernorm of the class token
};

// HF CLIPVisionTransformer (the `vision_model` inside CLIPVisionModel).
template <FloatingElement T, class D = CPU>
class CLIPVisionTransformer : public nn::Module<T, D> {
 public:
  CLIPVisionTransformer() = default;
  CLIPVisionTransformer(const CLIPVisionConfig& config, Generator& gen)
      : config_((config.validate(), config)),
        embeddings(config, gen),
        pre_layrnorm(config.hidden_size, config.layer_norm_eps),
        encoder(config, gen),
        post_layernorm(config.hidden_size, config.layer_norm_eps) {}

  const CLIPVisionConfig& config() const { return config_; }
  int64_t num_hidden_states() const { return config_.num_hidden_layers + 1; }

  // HF's hidden_states[index] for index in [-(layers+1), layers] (negative from the end): runs
  // only the layers that state needs.
  Tensor<T, D> hidden_state(const Tensor<T, D>& pixel_values, int64_t index) const {
    return hidden_states(pixel_values, resolve_index(index)).back();
  }
  // hidden_states[0 .. upto] (all of them by default).
  std::vector<Tensor<T, D>> hidden_states(const Tensor<T, D>& pixel_values,
                                          int64_t upto = -1) const {
    upto = resolve_index(upto);
    std::vector<Tensor<T, D>> states;
    states.reserve(static_cast<size_t>(upto + 1));
    states.push_back(pre_layrnorm(embeddings(pixel_values)));
    for (int64_t i = 0; i < upto; ++i)
      states.push_back(encoder.layers[static_cast<size_t>(i)](states.back()));
    return states;
  }

  // Hidden state `index` without the class token: [B, patches, hidden] (LLaVA's
  // select_feature 'patch'; MENTOR: index -2).
  Tensor<T, D> patch_features(const Tensor<T, D>& pixel_values, int64_t index = -2) const {
    Tensor<T, D> h = hidden_state(pixel_values, index);
    return h.narrow(1, 1, h.size(1) - 1);
  }

  CLIPVisionOutput<T, D> operator()(const Tensor<T, D>& pixel_values) const {
    CLIPVisionOutput<T, D> out;
    out.last_hidden_state = hidden_state(pixel_values, -1);
    out.pooler_output = pooled(out.last_hidden_state);
    return out;
  }
  // post_layernorm of the class token of a last_hidden_state [B, S, hidden].
  Tensor<T, D> pooled(const Tensor<T, D>& last_hidden_state) const {
    return post_layernorm(last_hidden_state.select(1, 0));
  }

  void visit(nn::Visitor<T, D>& v) override {
    v.child("embeddings", embeddings);
    v.child("pre_layrnorm", pre_layrnorm);
    v.child("encoder", encoder);
    v.child("post_layernorm", post_layernorm);
  }

 private:
  CLIPVisionConfig config_;

 public:
  CLIPVisionEmbeddings<T, D> embeddings;
  nn::LayerNorm<T, D> pre_layrnorm;  // sic: HF's name
  CLIPEncoder<T, D> encoder;
  nn::LayerNorm<T, D> post_layernorm;

 private:
  int64_t resolve_index(int64_t index) const {
    const int64_t count = num_hidden_states();
    MENTOR_CHECK(index >= -count && index < count, "CLIPVisionTransformer: hidden state ", index,
                 " is outside [", -count, ", ", count - 1, "] (", config_.num_hidden_layers,
                 " layers)");
    return index < 0 ? index + count : index;
  }
};

// HF CLIPVisionModel: a wrapper whose state_dict prefixes everything with `vision_model.`.
template <FloatingElement T, class D = CPU>
class CLIPVisionModel : public nn::Module<T, D> {
 public:
  CLIPVisionModel() = default;
  CLIPVisionModel(const CLIPVisionConfig& config, Generator& gen) : vision_model(config, gen) {}
  CLIPVisionOutput<T, D> operator()(const Tensor<T, D>& pixel_values) const {
    return vision_model(pixel_values);
  }
  const CLIPVisionConfig& config() const { return vision_model.config(); }
  void visit(nn::Visitor<T, D>& v) override { v.child("vision_model", vision_model); }

  CLIPVisionTransformer<T, D> vision_model;
};

// Every parameter of CLIPVisionTransformer by HF name and shape in named_parameters() order, from
// the module tree built on the shape-only device (nothing allocated).
inline std::vector<std::pair<std::string, Shape>> clip_vision_parameter_shapes(
    const CLIPVisionConfig& config) {
  return nn::parameter_shapes_of<CLIPVisionTransformer<float, ShapeOnly>>(config);
}

inline int64_t clip_vision_parameter_count(const CLIPVisionConfig& config) {
  int64_t n = 0;
  for (const auto& [name, shape] : clip_vision_parameter_shapes(config)) n += shape.numel();
  return n;
}

}  // namespace mentor::models
