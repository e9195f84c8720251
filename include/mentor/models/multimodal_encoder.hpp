#pragma once
// MENTOR's multimodal encoder (modeling_llavat5.py LlavaT5ForConditionalGeneration, the
// `multimodal_encoder` of MENTOR's GPT): reference images and the prompt become one T5-encoded
// condition sequence.
//
//   1. each image -> CLIP vision tower -> hidden state `select_layer` (-2: penultimate) without
//      the class token ("patch") -> [patches, clip_dim]            (vision_model.vision_tower.*)
//   2. -> projector (mlp2x_gelu: clip_dim -> d_model -> d_model)   (language_projection.{0,2}.*)
//   3. prompt ids -> T5 `shared` embeddings; the rows whose id is the <image> placeholder (32100)
//      are replaced, in order, by the projected patch vectors of the batch's images, flattened
//      image by image (each image's run of placeholders gets that image's vectors)
//   4. -> T5 encoder with the prompt's attention mask -> last_hidden_state [B, L, d_model]
//                                                                  (language_model.*)
//   5. (decoder side) left_pad_condition: each sample's valid rows are moved to the END of a
//      T-slot buffer (zeros before them) with a mask of the last n_valid slots, and
//      condition_attention_mask builds the decoder's [B, 1, S, S] mask from that.
//
// Upstream differences, on purpose: upstream prints "shape mismatch" and silently truncates when
// there are fewer placeholders than projected vectors (keeping the first rows over the whole
// batch, so a later sample receives an earlier sample's patches); here that is an error naming
// both counts, unless `placeholder_mismatch` is PlaceholderMismatch::TruncateLikeUpstream, which
// reproduces upstream exactly (for comparing against upstream runs). Upstream also keeps only the
// last min(L, 512) prompt positions before the encoder; its tokenizer always pads/truncates to 512
// so that never cuts anything, and it is not reproduced.
#include <algorithm>
#include <cstdint>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "mentor/core/error.hpp"
#include "mentor/data/masks.hpp"
#include "mentor/models/clip.hpp"
#include "mentor/models/multimodal_encoder_config.hpp"
#include "mentor/models/projector.hpp"
#include "mentor/models/t5.hpp"
#include "mentor/nn/module.hpp"
#include "mentor/ops/shape_ops.hpp"

namespace mentor::models {

// The key prefix of the T5 encoder inside the multimodal encoder (MENTOR's name), where its tied
// alias sits.
inline const std::string kLanguageModelPrefix = "language_model.";

// ---- the splice -------------------------------------------------------------------------------

// embeds [B, L, C] with the rows at input_ids == image_token_id replaced, in row-major (b, t)
// order, by the rows of `features` ([N, P, C] image by image, or already flat [N*P, C]).
// Differentiable in both embeds and features. The number of placeholders must equal the number of
// feature rows (else an Error names both counts and the placeholders per sample), except that
// PlaceholderMismatch::TruncateLikeUpstream accepts fewer placeholders and uses the first rows.
template <FloatingElement T, class D>
Tensor<T, D> splice_image_features(const Tensor<T, D>& embeds, const Tensor<int64_t, D>& input_ids,
                                   const Tensor<T, D>& features, int64_t image_token_id,
                                   PlaceholderMismatch mismatch = PlaceholderMismatch::Error) {
  MENTOR_CHECK_SHAPE(embeds.dim() == 3 && input_ids.dim() == 2 &&
                         input_ids.size(0) == embeds.size(0) && input_ids.size(1) == embeds.size(1),
                     "splice_image_features: embeds ", embeds.shape().str(), " and input_ids ",
                     input_ids.shape().str(), " are not [B, L, C] and [B, L]");
  const int64_t batch = embeds.size(0), length = embeds.size(1), channels = embeds.size(2);
  int64_t rows = 0;
  Tensor<T, D> flat;
  if (features.defined()) {
    MENTOR_CHECK_SHAPE(
        (features.dim() == 2 || features.dim() == 3) && features.size(-1) == channels,
        "splice_image_features: features ", features.shape().str(), " are not [images, tokens, ",
        channels, "] or [rows, ", channels, "]");
    rows = features.numel() / channels;
    flat = features.reshape({rows, channels});
  }
  const std::vector<int64_t> ids = input_ids.template to<CPU>().to_vector();
  std::vector<int64_t> source(ids.size(), 0);
  std::vector<bool> is_image(ids.size(), false);
  std::vector<int64_t> per_sample(static_cast<size_t>(batch), 0);
  int64_t placeholders = 0;
  for (size_t i = 0; i < ids.size(); ++i) {
    if (ids[i] != image_token_id) continue;
    is_image[i] = true;
    source[i] = placeholders++;
    ++per_sample[i / static_cast<size_t>(length)];
  }
  const bool upstream_truncation =
      mismatch == PlaceholderMismatch::TruncateLikeUpstream && placeholders < rows;
  if (placeholders != rows && !upstream_truncation) {
    std::string counts;
    for (size_t b = 0; b < per_sample.size(); ++b)
      counts += (b ? ", " : "") + std::to_string(per_sample[b]);
    throw Error(mentor::detail::concat(
        "splice_image_features: the prompts hold ", placeholders, " <image> placeholders (id ",
        image_token_id, "; per sample: ", counts, ") but the images give ", rows, " feature rows",
        features.defined() ? " (features " + features.shape().str() + ")" : "",
        ": every image needs exactly one placeholder per feature vector"));
  }
  if (placeholders == 0) return embeds;
  Tensor<int64_t, D> source_rows =
      Tensor<int64_t, CPU>::from_vector(source, Shape{batch * length}).template to<D>();
  Tensor<bool, D> image_rows =
      Tensor<bool, CPU>::from_vector(is_image, Shape{batch, length, 1}).template to<D>();
  Tensor<T, D> gathered = index_select(flat, 0, source_rows).view({batch, length, channels});
  return where(image_rows, gathered, embeds);
}

// ---- the left-padded condition prefix -----------------------------------------------------------

template <class T, class D>
struct ConditionPrefix {
  Tensor<T, D> embeddings;  // [B, T, C]: valid rows at the end, zeros before
  Tensor<bool, D> mask;     // [B, T]: true for the last n_valid slots (upstream emb_mask)
};

// Repacks encoder output hidden [B, L, C] with its attention mask [B, L] (true = real token) into a
// T-slot left-padded prefix: sample b's valid rows, in order, fill the last n_b slots (n_b =
// min(valid count, T): upstream keeps the first T when there are more), zeros elsewhere. For the
// right-padded prompts the tokenizer gives, the valid rows are the first n_b rows, as upstream
// copies them. Differentiable in hidden.
template <FloatingElement T, class D>
ConditionPrefix<T, D> left_pad_condition(const Tensor<T, D>& hidden,
                                         const Tensor<bool, D>& attention_mask, int64_t slots) {
  MENTOR_CHECK_SHAPE(hidden.dim() == 3, "left_pad_condition: hidden ", hidden.shape().str(),
                     " is not [B, L, C]");
  const int64_t batch = hidden.size(0), length = hidden.size(1), channels = hidden.size(2);
  MENTOR_CHECK_SHAPE(
      !attention_mask.defined() || (attention_mask.dim() == 2 && attention_mask.size(0) == batch &&
                                    attention_mask.size(1) == length),
      "left_pad_condition: attention_mask ", attention_mask.shape().str(),
      " does not match hidden ", hidden.shape().str());
  MENTOR_CHECK(slots > 0, "left_pad_condition: slots ", slots, " must be positive");
  const data::LeftPadding padding =
      data::left_padding(attention_mask.defined() ? attention_mask.template to<CPU>()
                                                  : Tensor<bool, CPU>::ones({batch, length}),
                         slots);
  // The zero row after the condition's rows, taken by the padded slots.
  Tensor<T, D> table = concat(std::vector<Tensor<T, D>>{hidden.reshape({batch * length, channels}),
                                                        Tensor<T, D>::zeros({1, channels})},
                              0);
  ConditionPrefix<T, D> out;
  out.embeddings =
      index_select(table, 0, padding.source_rows.template to<D>()).view({batch, slots, channels});
  out.mask = padding.mask.template to<D>();
  return out;
}

// left_pad_condition into as many slots as the batch's longest condition needs (at least 1, at
// most `slots`): the full `slots`-slot prefix without its leading slots that are padding in every
// sample, for GPT::forward_train_tail.
template <FloatingElement T, class D>
ConditionPrefix<T, D> left_pad_condition_tail(const Tensor<T, D>& hidden,
                                              const Tensor<bool, D>& attention_mask,
                                              int64_t slots) {
  MENTOR_CHECK_SHAPE(hidden.dim() == 3, "left_pad_condition_tail: hidden ", hidden.shape().str(),
                     " is not [B, L, C]");
  int64_t longest = hidden.size(1);
  if (attention_mask.defined()) {
    MENTOR_CHECK_SHAPE(attention_mask.dim() == 2 && attention_mask.size(0) == hidden.size(0),
                       "left_pad_condition_tail: attention_mask ", attention_mask.shape().str(),
                       " does not match hidden ", hidden.shape().str());
    const std::vector<bool> flags = attention_mask.template to<CPU>().to_vector();
    const int64_t length = attention_mask.size(1);
    longest = 0;
    for (int64_t b = 0; b < attention_mask.size(0); ++b) {
      int64_t n = 0;
      for (int64_t t = 0; t < length; ++t) n += flags[static_cast<size_t>(b * length + t)] ? 1 : 0;
      longest = std::max(longest, n);
    }
  }
  return left_pad_condition(hidden, attention_mask, std::clamp<int64_t>(longest, 1, slots));
}

// The decoder's attention mask for a left-padded prefix (built in the data layer).
using data::condition_attention_mask;

// pixel_values [B, M, C, H, W] with img_mask [B, M] (true = a real image) -> the real images
// [N, C, H, W] in row-major (b, m) order (upstream pixel_values[img_mask.bool()]).
template <FloatingElement T, class D>
Tensor<T, D> select_images(const Tensor<T, D>& pixel_values, const Tensor<bool, D>& img_mask) {
  MENTOR_CHECK_SHAPE(pixel_values.dim() == 5 && img_mask.dim() == 2 &&
                         img_mask.size(0) == pixel_values.size(0) &&
                         img_mask.size(1) == pixel_values.size(1),
                     "select_images: pixel_values ", pixel_values.shape().str(), " and img_mask ",
                     img_mask.shape().str(), " are not [B, M, C, H, W] and [B, M]");
  const std::vector<bool> keep = img_mask.template to<CPU>().to_vector();
  std::vector<int64_t> ids;
  for (size_t i = 0; i < keep.size(); ++i)
    if (keep[i]) ids.push_back(static_cast<int64_t>(i));
  const int64_t n = static_cast<int64_t>(ids.size());
  const Shape& s = pixel_values.shape();
  Tensor<T, D> flat = pixel_values.reshape({s[0] * s[1], s[2], s[3], s[4]});
  if (n == 0) return Tensor<T, D>::zeros({0, s[2], s[3], s[4]});
  return index_select(flat, 0, Tensor<int64_t, CPU>::from_vector(ids, Shape{n}).template to<D>());
}

// ---- modules ------------------------------------------------------------------------------------

// MENTOR's clip_encoder.CLIPVisionTower: holds the HF CLIPVisionModel as `vision_tower` and picks
// the configured hidden state and feature set. MENTOR freezes it and runs it without gradients.
template <FloatingElement T, class D = CPU>
class CLIPVisionTower : public nn::Module<T, D> {
 public:
  CLIPVisionTower() = default;
  CLIPVisionTower(const MultimodalEncoderConfig& c, Generator& gen)
      : vision_tower(c.vision, gen),
        select_layer(c.select_layer),
        select_feature(c.select_feature) {}

  // images [N, C, H, W] -> [N, tokens_per_image, clip_dim].
  Tensor<T, D> operator()(const Tensor<T, D>& images) const {
    Tensor<T, D> h = vision_tower.vision_model.hidden_state(images, select_layer);
    return select_feature == VisionFeatureSelect::Patch ? h.narrow(1, 1, h.size(1) - 1) : h;
  }
  void visit(nn::Visitor<T, D>& v) override { v.child("vision_tower", vision_tower); }

  CLIPVisionModel<T, D> vision_tower;
  int64_t select_layer = -2;
  VisionFeatureSelect select_feature = VisionFeatureSelect::Patch;
};

template <FloatingElement T, class D = CPU>
class MultimodalEncoder : public nn::Module<T, D> {
 public:
  MultimodalEncoder(const MultimodalEncoderConfig& config, Generator& gen)
      : config_((config.validate(), config)),
        vision_model(config, gen),
        language_projection(config.projector(), gen),
        language_model(config.text, gen) {}

  const MultimodalEncoderConfig& config() const { return config_; }

  // images [N, C, H, W] -> projected features [N, tokens_per_image, d_model]. The vision tower
  // runs without recording gradients while none of its parameters is trainable (MENTOR's frozen
  // tower under no_grad), so its activations are not kept.
  Tensor<T, D> image_features(const Tensor<T, D>& images) {
    std::optional<NoGradGuard> no_grad;
    if (!vision_trainable()) no_grad.emplace();
    Tensor<T, D> patches = vision_model(images);
    no_grad.reset();
    return language_projection(patches);
  }

  // input_ids [B, L], attention_mask [B, L] (true = real token; undefined = all real), images
  // [N, C, H, W] (undefined or N = 0: text only) -> T5 last_hidden_state [B, L, d_model].
  Tensor<T, D> operator()(const Tensor<int64_t, D>& input_ids,
                          const Tensor<bool, D>& attention_mask, const Tensor<T, D>& images = {}) {
    Tensor<T, D> embeds = language_model.embed(input_ids);
    Tensor<T, D> features;
    if (images.defined() && images.size(0) > 0) features = image_features(images);
    embeds = splice_image_features(embeds, input_ids, features, config_.image_token_id,
                                   config_.placeholder_mismatch);
    return language_model.forward_embeds(embeds, attention_mask);
  }

  // Whether any vision-tower parameter is trainable.
  bool vision_trainable() {
    for (auto& [name, t] : vision_model.named_parameters())
      if (t->requires_grad()) return true;
    return false;
  }

  void visit(nn::Visitor<T, D>& v) override {
    v.child("vision_model", vision_model);
    v.child("language_projection", language_projection);
    v.child("language_model", language_model);
  }

 private:
  MultimodalEncoderConfig config_;

 public:
  CLIPVisionTower<T, D> vision_model;
  Projector<T, D> language_projection;
  T5EncoderModel<T, D> language_model;
};

// Every parameter (names relative to the multimodal encoder) and shape in named_parameters()
// order, from the module tree built on the shape-only device (nothing allocated).
inline std::vector<std::pair<std::string, Shape>> multimodal_encoder_parameter_shapes(
    const MultimodalEncoderConfig& config) {
  return nn::parameter_shapes_of<MultimodalEncoder<float, ShapeOnly>>(config);
}

}  // namespace mentor::models
