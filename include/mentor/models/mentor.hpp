#pragma once
// The MENTOR model: the multimodal encoder (CLIP vision tower + projector + T5 encoder), the
// LlamaGen GPT decoder in text-conditional mode with MENTOR's RoPE fix, and the VQ image tokenizer.
//
// State layout (upstream MENTOR's GPT `Transformer` state_dict, which owns the encoder):
//   multimodal_encoder.vision_model.vision_tower.vision_model.*   CLIP (HF names)
//   multimodal_encoder.language_projection.{0,2}.{weight,bias}    projector
//   multimodal_encoder.language_model.{shared, encoder.*}         T5 (HF names)
//   cls_embedding.*, tok_embeddings.*, layers.N.*, norm.*, output.*   the GPT, at the top level
// The VQ tokenizer is not part of that state: it has its own checkpoint (vq_ds16_t2i.pt) and is
// loaded with load_vq(); it only encodes target images and decodes generated codes, always in
// eval mode and without gradients.
//
// Data flow (training, teacher forcing): prompt ids + attention mask + reference images ->
// multimodal encoder -> [B, L, 2048] -> left_pad_condition into cls_token_num slots (+ emb_mask;
// training keeps only the slots the batch's longest condition fills, which is exact)
// -> GPT cap_proj prefix; the image tokens (VQ codes of the target image) follow; the attention
// mask is condition_attention_mask(emb_mask, image tokens). Logits and loss are GPT's.
//
// Training stages (mentor-system.md §1.3, from upstream train_t2i.py's freezing logic):
//   stage 1 (alignment): frozen = CLIP, every GPT `layers.*`, `cls_embedding.*`; trainable = T5,
//            projector, tok_embeddings, norm, output;
//   stage 2 (instruction tuning): frozen = CLIP only.
#include <cstdint>
#include <regex>
#include <string>
#include <utility>
#include <vector>

#include "mentor/core/error.hpp"
#include "mentor/io/safetensors.hpp"
#include "mentor/models/gpt.hpp"
#include "mentor/models/mentor_config.hpp"
#include "mentor/models/multimodal_encoder.hpp"
#include "mentor/models/t5.hpp"
#include "mentor/models/vq.hpp"
#include "mentor/nn/module.hpp"
#include "mentor/nn/state_dict.hpp"

namespace mentor::models {

inline const std::string kMultimodalEncoderPrefix = "multimodal_encoder.";

enum class MentorStage { Alignment = 1, InstructionTuning = 2 };

// The parameters each stage freezes, as whole-name ECMAScript regexes over the MENTOR state names.
inline std::vector<std::string> mentor_frozen_patterns(MentorStage stage) {
  std::vector<std::string> patterns = {"multimodal_encoder\\.vision_model\\..*"};
  if (stage == MentorStage::Alignment) {
    patterns.push_back("layers\\..*");
    patterns.push_back("cls_embedding\\..*");
  }
  return patterns;
}

struct FreezeSummary {
  int64_t trainable_tensors = 0, frozen_tensors = 0;
  int64_t trainable_parameters = 0, frozen_parameters = 0;
};

template <class T, class D>
FreezeSummary summarize_trainable(nn::Module<T, D>& module) {
  FreezeSummary s;
  for (auto& [name, t] : module.named_parameters()) {
    if (t->requires_grad()) {
      ++s.trainable_tensors;
      s.trainable_parameters += t->numel();
    } else {
      ++s.frozen_tensors;
      s.frozen_parameters += t->numel();
    }
  }
  return s;
}

template <FloatingElement T, class D = CPU>
class MentorModel : public nn::Module<T, D> {
 public:
  MentorModel(const MentorConfig& config, Generator& gen)
      : config_((config.validate(), config)),
        multimodal_encoder(config.encoder, gen),
        gpt(config.gpt, gen),
        vq(config.vq, gen) {
    vq.eval();
    vq.set_trainable(false);
  }

  const MentorConfig& config() const { return config_; }

  void visit(nn::Visitor<T, D>& v) override {
    v.child("multimodal_encoder", multimodal_encoder);
    // The GPT's own names sit at the top level, as in upstream's Transformer state_dict. (Its
    // train/eval flag is synchronised in every forward below, because the visitor reaches only its
    // children.) Generators come along: the GPT's as "dropout_generator", T5's as
    // "multimodal_encoder.language_model.dropout_generator".
    gpt.visit(v);
  }

  // ---- stages -----------------------------------------------------------------------------------
  // Makes every parameter trainable, then freezes the stage's (see the file comment).
  FreezeSummary set_stage(MentorStage stage) {
    this->set_trainable(true);
    for (const std::string& pattern : mentor_frozen_patterns(stage)) {
      const int matched = this->set_trainable(false, pattern);
      MENTOR_CHECK(matched > 0, "MentorModel::set_stage: the pattern ", pattern,
                   " matched no parameter");
    }
    return summarize_trainable(*this);
  }

  // ---- the condition ----------------------------------------------------------------------------
  // Prompt ids [B, L] (with tokens_per_image <image> placeholders per image), attention mask
  // [B, L] (true = real token), reference images [N, 3, H, W] (undefined: none) -> the left-padded
  // prefix [B, cls_token_num, caption_dim] and its emb_mask [B, cls_token_num].
  ConditionPrefix<T, D> condition(const Tensor<int64_t, D>& input_ids,
                                  const Tensor<bool, D>& attention_mask,
                                  const Tensor<T, D>& images = {}) {
    Tensor<T, D> hidden = multimodal_encoder(input_ids, attention_mask, images);
    return left_pad_condition(hidden, attention_mask, config_.gpt.cls_token_num);
  }

  // ---- training ---------------------------------------------------------------------------------
  // idx [B, S_img]: the image tokens fed (tokens[:, :-1] of the VQ codes, as GPT::forward_train).
  // Returns logits [B, S_img + 1, vocab]. Guidance dropout (class_dropout_prob) replaces dropped
  // samples' prefixes by uncond_embedding, keeping their mask (upstream); force_drop [B] pins it.
  Tensor<T, D> forward_train(const Tensor<int64_t, D>& idx, const Tensor<int64_t, D>& input_ids,
                             const Tensor<bool, D>& attention_mask, const Tensor<T, D>& images = {},
                             const Tensor<bool, D>& force_drop = {}) {
    MENTOR_CHECK_SHAPE(idx.dim() == 2 && idx.size(0) == input_ids.size(0),
                       "MentorModel::forward_train: idx ", idx.shape().str(),
                       " is not [batch, image tokens] for input_ids ", input_ids.shape().str());
    sync_gpt_mode();
    // Only the slots the batch's longest condition fills: the result is the full prefix's, and a
    // 25-token caption does not pay for cls_token_num positions.
    Tensor<T, D> hidden = multimodal_encoder(input_ids, attention_mask, images);
    ConditionPrefix<T, D> prefix =
        left_pad_condition_tail(hidden, attention_mask, config_.gpt.cls_token_num);
    Tensor<bool, D> mask = condition_attention_mask(prefix.mask, idx.size(1));
    return gpt.forward_train_tail(idx, prefix.embeddings, mask, force_drop);
  }
  Tensor<T, D> loss(const Tensor<T, D>& logits, const Tensor<int64_t, D>& targets,
                    const Tensor<T, D>& valid = {}) const {
    return gpt.loss(logits, targets, valid);
  }

  // ---- the tokenizer ----------------------------------------------------------------------------
  // images [B, 3, H, W] in [-1, 1] -> codes [B, h*w] (row-major), no gradient.
  Tensor<int64_t, D> encode_images(const Tensor<T, D>& images) {
    NoGradGuard no_grad;
    vq.eval();
    VQQuantizeResult<T, D> q = vq.encode(images);
    return q.indices.view({images.size(0), q.height * q.width});
  }
  // codes [B, h*w] -> images [B, 3, h*f, w*f], no gradient.
  Tensor<T, D> decode_codes(const Tensor<int64_t, D>& codes, int64_t height, int64_t width) {
    NoGradGuard no_grad;
    vq.eval();
    MENTOR_CHECK_SHAPE(codes.dim() == 2 && codes.size(1) == height * width,
                       "MentorModel::decode_codes: codes ", codes.shape().str(), " are not [B, ",
                       height * width, "] for a ", height, "x", width, " grid");
    return vq.decode_code(codes, codes.size(0), height, width);
  }

  // ---- checkpoints ------------------------------------------------------------------------------
  // Loads the MENTOR state (names as in the file comment, under options.prefix). Accepted on top
  // of our own names: T5's tied `...language_model.encoder.embed_tokens.weight` (instead of or
  // besides `shared.weight`), and keys upstream checkpoints may carry that are not state here:
  // CLIP's `embeddings.position_ids`, the GPT's `freqs_cis` and KV-cache buffers.
  io::LoadReport load(const io::SafeTensorsFile& file, nn::LoadOptions options = {}) {
    static const std::regex ignorable(
        "(multimodal_encoder\\.vision_model\\.vision_tower\\.vision_model\\.embeddings\\.position_"
        "ids|freqs_cis|causal_mask|layers\\.[0-9]+\\.attention\\.kv_cache\\.[kv]_cache)");
    for (const std::string& key : file.keys()) {
      if (key.rfind(options.prefix, 0) != 0) continue;
      const std::string name = key.substr(options.prefix.size());
      if (std::regex_match(name, ignorable)) options.ignore.push_back(name);
    }
    return load_state_dict_tied(*this, file, options,
                                t5_tied_aliases(kMultimodalEncoderPrefix + kLanguageModelPrefix));
  }
  // Adds the MENTOR state under `prefix` (our names only; no tied alias).
  void save(io::SafeTensorsWriter& writer, const std::string& prefix = "") {
    write_state(*this, writer, prefix);
  }
  // The VQ tokenizer's own checkpoint (LlamaGen names: encoder.*, decoder.*, quantize.*, ...).
  io::LoadReport load_vq(const io::SafeTensorsFile& file, const nn::LoadOptions& options = {}) {
    io::LoadReport report = nn::load_state_dict(vq, file, options);
    vq.eval();
    vq.set_trainable(false);
    return report;
  }

 private:
  void sync_gpt_mode() {
    if (gpt.training() != this->training()) gpt.train(this->training());
  }

  MentorConfig config_;

 public:
  MultimodalEncoder<T, D> multimodal_encoder;
  GPT<T, D> gpt;
  VQModel<T, D> vq;  // not in visit(): its own checkpoint, always frozen
};

// Every parameter of the MENTOR state (encoder + GPT; not the VQ) by name and shape in
// named_parameters() order, from the module tree built on the shape-only device (nothing
// allocated).
inline std::vector<std::pair<std::string, Shape>> mentor_parameter_shapes(
    const MentorConfig& config) {
  return nn::parameter_shapes_of<MentorModel<float, ShapeOnly>>(config);
}
inline int64_t mentor_parameter_count(const MentorConfig& config) {
  int64_t n = 0;
  for (const auto& [name, shape] : mentor_parameter_shapes(config)) n += shape.numel();
  return n;
}

}  // namespace mentor::models
