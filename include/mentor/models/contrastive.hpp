#pragma once
// CLIP-style contrastive training of a CLIP vision tower and a T5 encoder together (Radford et al.,
// "Learning Transferable Visual Models From Natural Language Supervision"; HF CLIPModel's loss),
// so that both towers can then be copied into MENTOR's multimodal encoder
// (multimodal_encoder.vision_model.vision_tower and multimodal_encoder.language_model).
//
// Structure (state names):
//   vision.vision_model.*    models::CLIPVisionModel (HF names under `vision.`)
//   text.{shared,encoder}.*  models::T5EncoderModel (HF names under `text.`)
//   visual_projection        Linear(vision hidden -> embed_dim), no bias
//   text_projection          Linear(d_model -> embed_dim), no bias
//   logit_scale              [] the learned log inverse temperature, log(1/0.07) at init
//
// Embeddings and loss, for N (image, text) pairs:
//   image_embeds = normalize(visual_projection(pooler_output))   CLIP: post_layernorm of the class
//                                                                token of the last layer
//   text_embeds  = normalize(text_projection(mean over the real tokens of last_hidden_state))
//   logits       = min(exp(logit_scale), logit_scale_max) · image_embeds · text_embedsᵀ   [N, N]
//   loss         = (CE(logits, arange N) + CE(logitsᵀ, arange N)) / 2
// As torch.clamp, the clamped scale passes no gradient to logit_scale. The scale is read on the
// host to decide, and the accuracies are counted there: on CUDA, a few small copies per call.
// OpenAI's training instead clamps the parameter itself after each step: clamp_logit_scale().
//
// T5 pooling differs from CLIP's text tower (which takes the EOS token's state): T5 encoders have
// no pooled output, so the text side is the masked mean of the last hidden state, as sentence-T5.
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <map>
#include <string>
#include <utility>
#include <vector>

#include <nlohmann/json.hpp>

#include "mentor/core/error.hpp"
#include "mentor/io/json_config.hpp"
#include "mentor/models/clip.hpp"
#include "mentor/models/clip_config.hpp"
#include "mentor/models/multimodal_encoder.hpp"
#include "mentor/models/t5.hpp"
#include "mentor/models/t5_config.hpp"
#include "mentor/nn/layers.hpp"
#include "mentor/nn/module.hpp"
#include "mentor/ops/elementwise.hpp"
#include "mentor/ops/loss.hpp"
#include "mentor/ops/matmul.hpp"
#include "mentor/ops/normalize.hpp"
#include "mentor/ops/reduce.hpp"
#include "mentor/ops/shape_ops.hpp"
#include "mentor/ops/unary.hpp"

namespace mentor::models {

// ---- config -------------------------------------------------------------------------------------

struct ContrastiveConfig {
  CLIPVisionConfig vision = CLIPVisionConfig::vit_large_patch14();
  T5Config text = T5Config::flan_t5_xl();
  int64_t embed_dim = 768;                       // HF CLIPConfig projection_dim (ViT-L/14: 768)
  double logit_scale_init = std::log(1 / 0.07);  // HF CLIPConfig logit_scale_init_value
  double logit_scale_max = 100;                  // the largest exp(logit_scale) used (CLIP: 100)

  void validate() const {
    vision.validate();
    text.validate();
    MENTOR_CHECK(embed_dim > 0 && embed_dim <= io::kMaxConfigSize, "ContrastiveConfig: embed_dim ",
                 embed_dim, " is outside [1, ", io::kMaxConfigSize, "]");
    MENTOR_CHECK(std::isfinite(logit_scale_init), "ContrastiveConfig: logit_scale_init ",
                 logit_scale_init, " must be finite");
    MENTOR_CHECK(std::isfinite(logit_scale_max) && logit_scale_max > 0,
                 "ContrastiveConfig: logit_scale_max ", logit_scale_max,
                 " must be finite and positive");
    // A scale clamped from the start would never receive a gradient.
    MENTOR_CHECK(std::exp(logit_scale_init) <= logit_scale_max,
                 "ContrastiveConfig: logit_scale_init ", logit_scale_init,
                 " gives exp() = ", std::exp(logit_scale_init), ", above logit_scale_max ",
                 logit_scale_max);
    (void)parameter_count();
  }

  // Both towers, both projections and logit_scale, in closed form (int64 overflow is an error).
  int64_t parameter_count() const {
    io::CheckedCount n(mentor::detail::concat("ContrastiveConfig: the parameter count (embed_dim ",
                                              embed_dim, ")"));
    return n.add({vision.parameter_count()})
        .add({text.parameter_count()})
        .add({embed_dim, vision.hidden_size})
        .add({embed_dim, text.d_model})
        .add({1})
        .total();
  }

  // {"vision_config": HF CLIPVisionConfig, "text_config": HF T5Config, "projection_dim",
  //  "logit_scale_init_value", "logit_scale_max"} (HF CLIPConfig's names where it has the field);
  // missing keys keep the defaults, any other key is an error naming it (nested ones name their
  // path, e.g. ContrastiveConfig.text_config).
  static ContrastiveConfig from_json(const nlohmann::json& j, const std::string& path = {}) {
    io::JsonConfigReader r(j, "ContrastiveConfig", path);
    ContrastiveConfig c;
    if (const nlohmann::json* vision = r.find("vision_config"))
      c.vision = CLIPVisionConfig::from_json(*vision, r.child_path("vision_config"));
    if (const nlohmann::json* text = r.find("text_config"))
      c.text = T5Config::from_json(*text, r.child_path("text_config"));
    r.read("projection_dim", c.embed_dim);
    r.read("logit_scale_init_value", c.logit_scale_init);
    r.read("logit_scale_max", c.logit_scale_max);
    r.finish();
    c.validate();
    return c;
  }
  nlohmann::json to_json() const {
    return {{"vision_config", vision.to_json()},
            {"text_config", text.to_json()},
            {"projection_dim", embed_dim},
            {"logit_scale_init_value", logit_scale_init},
            {"logit_scale_max", logit_scale_max}};
  }
};

// ---- the loss -----------------------------------------------------------------------------------

template <class T, class D>
struct ContrastiveOutput {
  Tensor<T, D> loss;                  // []: (CE(logits, arange) + CE(logitsᵀ, arange)) / 2
  Tensor<T, D> logits_per_image;      // [N, N]: row i = image i against every text (CLIP's name)
  Tensor<T, D> image_embeds;          // [N, E], unit rows
  Tensor<T, D> text_embeds;           // [N, E], unit rows
  double image_to_text_accuracy = 0;  // fraction of images whose best text is their own
  double text_to_image_accuracy = 0;  // fraction of texts whose best image is their own
  double accuracy = 0;                // the mean of both (for logging)
};

// Fraction of rows (dim 1) or columns (dim 0) of square logits whose first maximum is on the
// diagonal (no gradient; read on the host).
template <FloatingElement T, class D>
double retrieval_accuracy(const Tensor<T, D>& logits, int64_t dim = 1) {
  MENTOR_CHECK_SHAPE(logits.dim() == 2 && logits.size(0) == logits.size(1) && logits.size(0) > 0,
                     "retrieval_accuracy: logits ", logits.shape().str(), " are not [N, N], N > 0");
  const std::vector<int64_t> best = argmax(logits.detach(), dim).template to<CPU>().to_vector();
  int64_t hits = 0;
  for (size_t i = 0; i < best.size(); ++i) hits += best[i] == static_cast<int64_t>(i) ? 1 : 0;
  return static_cast<double>(hits) / static_cast<double>(best.size());
}

// CLIP's symmetric InfoNCE on embeddings [N, E] (row i of each is pair i) with `scale` [] (the
// already exponentiated and clamped inverse temperature). Differentiable in all three.
template <FloatingElement T, class D>
ContrastiveOutput<T, D> clip_contrastive_loss(const Tensor<T, D>& image_embeds,
                                              const Tensor<T, D>& text_embeds,
                                              const Tensor<T, D>& scale) {
  MENTOR_CHECK_SHAPE(image_embeds.dim() == 2 && image_embeds.shape() == text_embeds.shape() &&
                         image_embeds.size(0) > 0,
                     "clip_contrastive_loss: image embeds ", image_embeds.shape().str(),
                     " and text embeds ", text_embeds.shape().str(),
                     " are not both [N, E] with N > 0");
  MENTOR_CHECK_SHAPE(scale.numel() == 1, "clip_contrastive_loss: scale ", scale.shape().str(),
                     " is not one value");
  const int64_t n = image_embeds.size(0);
  ContrastiveOutput<T, D> out;
  out.image_embeds = image_embeds;
  out.text_embeds = text_embeds;
  out.logits_per_image = mul(scale.reshape(Shape{}), matmul(image_embeds, text_embeds.t()));
  const Tensor<int64_t, D> targets = Tensor<int64_t, CPU>::arange(n).template to<D>();
  const Tensor<T, D> image_loss = cross_entropy(out.logits_per_image, targets);
  const Tensor<T, D> text_loss = cross_entropy(out.logits_per_image.t().contiguous(), targets);
  out.loss = mul_scalar(add(image_loss, text_loss), 0.5);
  out.image_to_text_accuracy = retrieval_accuracy(out.logits_per_image, 1);
  out.text_to_image_accuracy = retrieval_accuracy(out.logits_per_image, 0);
  out.accuracy = (out.image_to_text_accuracy + out.text_to_image_accuracy) / 2;
  return out;
}

namespace contrastive_detail {

// (source, target) tensor pairs matched by name between two module trees; every tensor of each
// must have a counterpart of the same shape in the other (errors name both full names).
template <class T, class D>
std::vector<std::pair<Tensor<T, D>*, Tensor<T, D>*>> match_tower_state(
    nn::Module<T, D>& source, const std::string& source_prefix, nn::Module<T, D>& target,
    const std::string& target_prefix) {
  std::map<std::string, Tensor<T, D>*> targets;
  for (auto& [name, tensor] : target.state()) targets.emplace(name, tensor);
  std::vector<std::pair<Tensor<T, D>*, Tensor<T, D>*>> pairs;
  for (auto& [name, tensor] : source.state()) {
    const auto found = targets.find(name);
    MENTOR_CHECK(found != targets.end(), "copy_towers_into: the multimodal encoder has no tensor '",
                 target_prefix, name, "' for the pair's '", source_prefix, name, "'");
    MENTOR_CHECK_SHAPE(found->second->shape() == tensor->shape(),
                       "copy_towers_into: the multimodal encoder's '", target_prefix, name,
                       "' has shape ", found->second->shape().str(), " but the pair's '",
                       source_prefix, name, "' is ", tensor->shape().str());
    pairs.emplace_back(tensor, found->second);
    targets.erase(found);
  }
  MENTOR_CHECK(targets.empty(), "copy_towers_into: the multimodal encoder's '", target_prefix,
               targets.empty() ? std::string() : targets.begin()->first,
               "' has no counterpart under '", source_prefix, "' in the pair");
  return pairs;
}

// The first key whose value differs between two configs' JSON, ignoring `skip` (settings that do
// not change the function: initialisation, dropout); empty when they agree.
inline std::string first_config_difference(const nlohmann::json& a, const nlohmann::json& b,
                                           const std::vector<std::string>& skip,
                                           std::string& a_value, std::string& b_value) {
  for (const auto& item : a.items()) {
    if (std::find(skip.begin(), skip.end(), item.key()) != skip.end()) continue;
    const auto other = b.find(item.key());
    if (other != b.end() && *other == item.value()) continue;
    a_value = io::describe_json(item.value());
    b_value = other == b.end() ? "absent" : io::describe_json(*other);
    return item.key();
  }
  return {};
}

}  // namespace contrastive_detail

// ---- the module ---------------------------------------------------------------------------------

template <FloatingElement T, class D = CPU>
class ContrastivePair : public nn::Module<T, D> {
 public:
  // HF CLIPModel _init_weights: visual_projection ~ N(0, vision hidden^-1/2 · factor),
  // text_projection ~ N(0, d_model^-1/2 · factor); logit_scale = logit_scale_init.
  ContrastivePair(const ContrastiveConfig& config, Generator& gen)
      : config_((config.validate(), config)),
        vision(config.vision, gen),
        text(config.text, gen),
        visual_projection(config.vision.hidden_size, config.embed_dim, false, gen,
                          std::pow(static_cast<double>(config.vision.hidden_size), -0.5) *
                              config.vision.initializer_factor),
        text_projection(config.text.d_model, config.embed_dim, false, gen,
                        std::pow(static_cast<double>(config.text.d_model), -0.5) *
                            config.text.initializer_factor),
        logit_scale(
            Tensor<T, D>::scalar(convert_element<T>(config.logit_scale_init)).requires_grad_()) {}

  const ContrastiveConfig& config() const { return config_; }

  // pixels [N, C, S, S] -> CLIP pooler_output [N, vision hidden] (post_layernorm of the last
  // layer's class token).
  Tensor<T, D> image_features(const Tensor<T, D>& pixels) const {
    return vision(pixels).pooler_output;
  }
  // pixels [N, C, S, S] -> [N, embed_dim], unit rows.
  Tensor<T, D> image_embeds(const Tensor<T, D>& pixels) const {
    return l2_normalize(visual_projection(image_features(pixels)), -1);
  }

  // ids [N, L], mask [N, L] (true = real token; undefined = all real) -> the mean of T5's
  // last_hidden_state over each sample's real tokens [N, d_model]. A sample without a real token
  // is an error.
  Tensor<T, D> text_features(const Tensor<int64_t, D>& ids, const Tensor<bool, D>& mask) {
    MENTOR_CHECK_SHAPE(ids.dim() == 2 && ids.size(0) > 0 && ids.size(1) > 0,
                       "ContrastivePair::text_features: ids ", ids.shape().str(),
                       " are not [N, L] with N, L > 0");
    const int64_t n = ids.size(0), length = ids.size(1);
    MENTOR_CHECK_SHAPE(!mask.defined() || mask.shape() == ids.shape(),
                       "ContrastivePair::text_features: mask ", mask.shape().str(),
                       " does not match ids ", ids.shape().str());
    std::vector<T> counts(static_cast<size_t>(n), convert_element<T>(static_cast<double>(length)));
    if (mask.defined()) {
      const std::vector<bool> real = mask.template to<CPU>().to_vector();
      for (int64_t i = 0; i < n; ++i) {
        int64_t count = 0;
        for (int64_t t = 0; t < length; ++t) count += real[static_cast<size_t>(i * length + t)];
        MENTOR_CHECK(count > 0, "ContrastivePair::text_features: sample ", i,
                     " has no real token (its mask is all false)");
        counts[static_cast<size_t>(i)] = convert_element<T>(static_cast<double>(count));
      }
    }
    const Tensor<T, D> hidden = text(ids, mask);  // [N, L, d_model]
    const Tensor<T, D> summed =
        mask.defined() ? sum(where(mask.unsqueeze(-1), hidden, Tensor<T, D>::zeros(Shape{})), 1)
                       : sum(hidden, 1);
    return div(summed, Tensor<T, CPU>::from_vector(counts, Shape{n, 1}).template to<D>());
  }
  // ids [N, L], mask [N, L] -> [N, embed_dim], unit rows.
  Tensor<T, D> text_embeds(const Tensor<int64_t, D>& ids, const Tensor<bool, D>& mask) {
    return l2_normalize(text_projection(text_features(ids, mask)), -1);
  }

  // min(exp(logit_scale), logit_scale_max) as a [] tensor, differentiable in logit_scale unless
  // clamped (then a constant).
  Tensor<T, D> scale_tensor() const {
    const Tensor<T, D> value = exp(logit_scale.reshape(Shape{}));
    if (convert_element<double>(value.item()) <= config_.logit_scale_max) return value;
    return Tensor<T, D>::scalar(convert_element<T>(config_.logit_scale_max));
  }
  // The same value on the host (for logging: the temperature is 1 / scale()).
  double scale() const { return convert_element<double>(scale_tensor().item()); }

  // The loss, logits, embeddings and retrieval accuracies of N pairs (pixels [N, C, S, S], ids and
  // mask [N, L]): pair i is image i with text i.
  ContrastiveOutput<T, D> forward(const Tensor<T, D>& pixels, const Tensor<int64_t, D>& ids,
                                  const Tensor<bool, D>& mask) {
    MENTOR_CHECK_SHAPE(pixels.dim() == 4 && ids.dim() == 2 && pixels.size(0) == ids.size(0),
                       "ContrastivePair: pixels ", pixels.shape().str(), " and ids ",
                       ids.shape().str(), " are not [N, C, S, S] and [N, L]");
    return clip_contrastive_loss(image_embeds(pixels), text_embeds(ids, mask), scale_tensor());
  }
  // forward() under the name of what it is trained on (`.loss` is the scalar to minimise).
  ContrastiveOutput<T, D> loss(const Tensor<T, D>& pixels, const Tensor<int64_t, D>& ids,
                               const Tensor<bool, D>& mask) {
    return forward(pixels, ids, mask);
  }

  // OpenAI CLIP's step after each optimizer update: logit_scale clamped in place to
  // [0, log(logit_scale_max)].
  void clamp_logit_scale() {
    NoGradGuard no_grad;
    const double value = convert_element<double>(logit_scale.item());
    const double clamped = std::clamp(value, 0.0, std::log(config_.logit_scale_max));
    if (clamped != value) logit_scale.fill_(convert_element<T>(clamped));
  }

  // Copies both towers' parameters and buffers, by name, into a multimodal encoder built with the
  // same tower configs: vision.* -> vision_model.vision_tower.*, text.* -> language_model.*. The
  // projector and the encoder's trainable flags are left alone. Errors (raised before anything is
  // copied) name a tensor missing on either side, a shape that differs, or a config setting that
  // changes the towers' function without changing a shape (heads, activation, norm epsilon, ...;
  // initialisation and dropout may differ).
  void copy_towers_into(MultimodalEncoder<T, D>& encoder) {
    auto pairs = contrastive_detail::match_tower_state<T, D>(
        vision, "vision.", encoder.vision_model.vision_tower, "vision_model.vision_tower.");
    auto text_pairs = contrastive_detail::match_tower_state<T, D>(
        text, "text.", encoder.language_model, "language_model.");
    pairs.insert(pairs.end(), text_pairs.begin(), text_pairs.end());
    check_tower_configs(encoder.config());
    NoGradGuard no_grad;
    for (auto& [source, target] : pairs) target->copy_(*source);
  }

  void visit(nn::Visitor<T, D>& v) override {
    v.child("vision", vision);
    v.child("text", text);
    v.child("visual_projection", visual_projection);
    v.child("text_projection", text_projection);
    v.parameter("logit_scale", logit_scale);
  }

 private:
  ContrastiveConfig config_;

  void check_tower_configs(const MultimodalEncoderConfig& encoder) const {
    std::string ours, theirs;
    const std::string vision_key = contrastive_detail::first_config_difference(
        config_.vision.to_json(), encoder.vision.to_json(),
        {"initializer_range", "initializer_factor", "attention_dropout"}, ours, theirs);
    MENTOR_CHECK(vision_key.empty(), "copy_towers_into: vision_config.", vision_key, " is ", ours,
                 " in the pair but ", theirs, " in the multimodal encoder");
    const std::string text_key = contrastive_detail::first_config_difference(
        config_.text.to_json(), encoder.text.to_json(), {"initializer_factor", "dropout_rate"},
        ours, theirs);
    MENTOR_CHECK(text_key.empty(), "copy_towers_into: text_config.", text_key, " is ", ours,
                 " in the pair but ", theirs, " in the multimodal encoder");
  }

 public:
  CLIPVisionModel<T, D> vision;
  T5EncoderModel<T, D> text;
  nn::Linear<T, D> visual_projection;  // weight [embed_dim, vision hidden]
  nn::Linear<T, D> text_projection;    // weight [embed_dim, d_model]
  Tensor<T, D> logit_scale;            // []
};

// pair.copy_towers_into(encoder) as a free function (e.g. for model.multimodal_encoder of a
// MentorModel).
template <FloatingElement T, class D>
void copy_towers_into(ContrastivePair<T, D>& pair, MultimodalEncoder<T, D>& encoder) {
  pair.copy_towers_into(encoder);
}

// Every parameter of ContrastivePair by name and shape in named_parameters() order, from the
// module tree built on the shape-only device (nothing allocated).
inline std::vector<std::pair<std::string, Shape>> contrastive_pair_parameter_shapes(
    const ContrastiveConfig& config) {
  return nn::parameter_shapes_of<ContrastivePair<float, ShapeOnly>>(config);
}

}  // namespace mentor::models
