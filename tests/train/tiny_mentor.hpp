#pragma once
// A tiny MentorModel training run for the resume and kill tests: CLIP (frozen, stage 2), T5 and
// the GPT, with every dropout the model has switched on (GPT token / residual / FFN dropout,
// guidance dropout class_dropout_prob, T5 dropout_rate), fed by a shuffled data loader of prompts
// with one reference image each. Its randomness comes from the model's own generators (the GPT's
// and T5's dropout_generator), which the checkpoint must carry for a resume to be exact.
#include <cstdint>
#include <memory>
#include <vector>

#include "mentor/data/loader.hpp"
#include "mentor/models/mentor.hpp"
#include "mentor/train/trainer.hpp"

namespace tiny_mentor {

using namespace mentor;

inline constexpr int64_t kImageToken = 39, kPromptLength = 9, kImageSize = 16, kCodes = 4;

// `vocab`: the GPT vocabulary and VQ codebook size; it sets the checkpoint's size (the embedding
// and output head grow with it) without making a step much slower.
inline models::MentorConfig config(int64_t vocab = 16) {
  models::MentorConfig c;
  models::MultimodalEncoderConfig& e = c.encoder;
  e.vision.hidden_size = 16;
  e.vision.intermediate_size = 24;
  e.vision.num_hidden_layers = 3;
  e.vision.num_attention_heads = 2;
  e.vision.image_size = kImageSize;
  e.vision.patch_size = 8;  // 4 tokens per image
  e.text.vocab_size = 40;
  e.text.d_model = 12;
  e.text.d_kv = 4;
  e.text.d_ff = 20;
  e.text.num_layers = 2;
  e.text.num_heads = 3;
  e.text.relative_attention_num_buckets = 8;
  e.text.relative_attention_max_distance = 16;
  e.text.dropout_rate = 0.1;
  e.image_token_id = kImageToken;
  models::GPTConfig& g = c.gpt;
  g = models::GPTConfig{};
  g.dim = 32;
  g.n_layer = 2;
  g.n_head = 4;
  g.multiple_of = 16;
  g.vocab_size = vocab;
  g.block_size = kCodes;  // 2x2 code grid
  g.cls_token_num = 10;
  g.caption_dim = 12;
  g.model_type = models::GPTModelType::TextToImage;
  g.rope_prefix = RopePrefix::Identity;
  g.token_dropout_p = 0.1;
  g.resid_dropout_p = 0.1;
  g.ffn_dropout_p = 0.1;
  g.class_dropout_prob = 0.3;
  models::VQConfig& q = c.vq;
  q.ch = 32;
  q.encoder_ch_mult = q.decoder_ch_mult = {1, 2};
  q.num_res_blocks = 1;
  q.z_channels = 32;
  q.codebook_size = vocab;
  q.codebook_embed_dim = 4;
  q.codebook_usage_window = 64;
  return c;
}

struct Sample {
  std::vector<int64_t> ids;
  std::vector<bool> mask;
  std::vector<float> image;    // [3, 16, 16]
  std::vector<int64_t> codes;  // [4] target image tokens
};
struct Batch {
  Tensor<int64_t> ids, codes;
  Tensor<bool> mask;
  Tensor<float> images;
};

// Prompt i: 1-3 text tokens, the image's 4 placeholders, eos, padding; all deterministic in i.
inline std::shared_ptr<const data::Dataset<Sample>> dataset(int64_t vocab, int64_t size = 24) {
  return std::make_shared<data::FunctionDataset<Sample>>(size, [vocab](int64_t i) {
    const auto seed = static_cast<uint64_t>(i) * 1024;
    Sample s;
    const int64_t text = 1 + i % 3;
    for (int64_t t = 0; t < text; ++t)
      s.ids.push_back(2 + static_cast<int64_t>(philox_uniform_at(41, seed, t) * 36.0f));
    for (int64_t t = 0; t < 4; ++t) s.ids.push_back(kImageToken);
    s.ids.push_back(1);
    s.mask.assign(s.ids.size(), true);
    while (static_cast<int64_t>(s.ids.size()) < kPromptLength) {
      s.ids.push_back(0);
      s.mask.push_back(false);
    }
    for (int64_t p = 0; p < 3 * kImageSize * kImageSize; ++p)
      s.image.push_back(philox_normal_at(42, seed, p));
    for (int64_t t = 0; t < kCodes; ++t)
      s.codes.push_back(
          static_cast<int64_t>(philox_uniform_at(43, seed, t) * static_cast<float>(vocab)) % vocab);
    return s;
  });
}

inline Batch collate(std::vector<Sample>&& samples) {
  std::vector<int64_t> ids, codes;
  std::vector<bool> mask;
  std::vector<float> images;
  for (const auto& s : samples) {
    ids.insert(ids.end(), s.ids.begin(), s.ids.end());
    mask.insert(mask.end(), s.mask.begin(), s.mask.end());
    images.insert(images.end(), s.image.begin(), s.image.end());
    codes.insert(codes.end(), s.codes.begin(), s.codes.end());
  }
  const auto n = static_cast<int64_t>(samples.size());
  return {Tensor<int64_t>::from_vector(ids, {n, kPromptLength}),
          Tensor<int64_t>::from_vector(codes, {n, kCodes}),
          Tensor<bool>::from_vector(mask, {n, kPromptLength}),
          Tensor<float>::from_vector(images, {n, 3, kImageSize, kImageSize})};
}

// The model in training mode at stage 2 (CLIP frozen), with a random output head (upstream
// zero-initialises it, which would leave the first steps' dropout without effect on the loss).
inline std::unique_ptr<models::MentorModel<float>> model(uint64_t seed, int64_t vocab) {
  Generator gen(seed);
  auto m = std::make_unique<models::MentorModel<float>>(config(vocab), gen);
  m->gpt.output.weight =
      nn::normal_init<float, CPU>(m->gpt.output.weight.shape(), gen).requires_grad_();
  m->set_stage(models::MentorStage::InstructionTuning);
  m->train();
  return m;
}

inline Tensor<float> loss(models::MentorModel<float>& m, const Batch& b) {
  const Tensor<float> logits =
      m.forward_train(b.codes.narrow(1, 0, kCodes - 1), b.ids, b.mask, b.images);
  return m.loss(logits, b.codes);
}

}  // namespace tiny_mentor
