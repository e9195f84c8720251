#pragma once
// The minimal generation loop of the LlamaGen GPT: KV-cached prefill and one-token steps with
// classifier-free guidance, picking the most likely token each step. It reproduces upstream
// generate() (autoregressive/models/generate.py) under top-1 sampling:
//   - guidance only when cfg_scale > 1: the batch is doubled to [cond ; uncond], where uncond is
//     the null class (c2i) or uncond_embedding for every sample with the same emb_mask (t2i);
//   - guided logits = uncond + (cond - uncond) * cfg_scale, on the raw logits (temperature, which
//     cannot change the argmax, comes after in upstream);
//   - the first token comes from the prefill; with cfg_interval > -1, decode step i > cfg_interval
//     uses the conditional logits alone;
//   - the cache holds cls_token_num + num_tokens positions, rounded up to a multiple of 8.
#include <cstdint>
#include <type_traits>
#include <vector>

#include "mentor/models/gpt.hpp"
#include "mentor/ops/elementwise.hpp"
#include "mentor/ops/reduce.hpp"
#include "mentor/ops/shape_ops.hpp"

namespace mentor::generate {

namespace detail {
// The logits the next token is picked from: guided when the batch is [cond ; uncond].
template <class D>
Tensor<float, D> guided_logits(const Tensor<float, D>& logits, int64_t batch, bool doubled,
                               bool use_guidance, double cfg_scale) {
  if (!doubled) return logits;
  Tensor<float, D> cond = logits.narrow(0, 0, batch);
  if (!use_guidance) return cond;
  Tensor<float, D> uncond = logits.narrow(0, batch, batch);
  return add(uncond, mul_scalar(sub(cond, uncond), cfg_scale));
}
}  // namespace detail

// Generates num_tokens image tokens [B, num_tokens] for cond: class labels [B] (c2i) or caption
// features [B, cls_token_num, caption_dim] (t2i) with emb_mask [B, cls_token_num] (true = real
// token; undefined = all real). The arguments are checked against the caller's batch B before
// guidance doubles it, with the model's rule for the caption length (GPT::check_caption_length).
// The model's KV cache is set up here and released at the end, also when generation throws.
template <FloatingElement T, class D, class Cond>
Tensor<int64_t, D> generate_greedy(models::GPT<T, D>& model, const Cond& cond,
                                   const Tensor<bool, D>& emb_mask, int64_t num_tokens,
                                   double cfg_scale = 1.0, int64_t cfg_interval = -1) {
  static_assert(models::GPT<T, D>::template is_condition_v<Cond>,
                "generate_greedy: the condition is class labels Tensor<int64_t, D> (c2i) or "
                "caption features Tensor<T, D> (t2i)");
  NoGradGuard no_grad;
  const models::GPTConfig& config = model.config();
  MENTOR_CHECK(num_tokens >= 1 && num_tokens <= config.block_size, "generate_greedy: num_tokens ",
               num_tokens, " outside [1, block_size ", config.block_size, "]");
  MENTOR_CHECK_SHAPE(cond.dim() >= 1 && cond.size(0) > 0, "generate_greedy: condition ",
                     cond.shape().str(), " has no batch");
  const int64_t batch = cond.size(0), prefix = config.cls_token_num;
  const bool doubled = cfg_scale > 1.0;
  if constexpr (std::is_same_v<Cond, Tensor<T, D>>) {
    MENTOR_CHECK(!config.is_c2i(), "generate_greedy: caption features ", cond.shape().str(),
                 " given to a c2i model (it expects class labels [B])");
    model.check_caption_length(cond, "generate_greedy");
  }
  MENTOR_CHECK_SHAPE(!emb_mask.defined() || (emb_mask.dim() == 2 && emb_mask.size(0) == batch &&
                                             emb_mask.size(1) == prefix),
                     "generate_greedy: emb_mask ", emb_mask.defined() ? emb_mask.shape().str() : "",
                     " is not [", batch, ", ", prefix, "] (batch, cls_token_num)");

  Cond combined = cond;
  Tensor<bool, D> mask = emb_mask;
  if (doubled) {
    if constexpr (std::is_same_v<Cond, Tensor<int64_t, D>>) {
      MENTOR_CHECK(config.label_rows() > config.num_classes,
                   "generate_greedy: guidance needs the null class, but the label table has no "
                   "null row (class_dropout_prob 0)");
      Tensor<int64_t, D> null_class = Tensor<int64_t, D>::full({batch}, config.num_classes);
      combined = concat(std::vector<Tensor<int64_t, D>>{cond, null_class}, 0);
    } else {
      Tensor<T, D> uncond = model.caption_embedder().unconditional(batch);
      MENTOR_CHECK_SHAPE(cond.shape() == uncond.shape(), "generate_greedy: caption ",
                         cond.shape().str(), " does not match the unconditional embedding ",
                         uncond.shape().str());
      combined = concat(std::vector<Tensor<T, D>>{cond, uncond}, 0);
    }
    if (mask.defined()) mask = concat(std::vector<Tensor<bool, D>>{emb_mask, emb_mask}, 0);
  }

  // Frees the cache on every exit, so a failed generation leaves no cache behind.
  struct CacheRelease {
    models::GPT<T, D>& model;
    ~CacheRelease() { model.clear_cache(); }
  } release{model};
  model.setup_cache(doubled ? 2 * batch : batch, prefix + num_tokens);
  Tensor<int64_t, D> tokens = Tensor<int64_t, D>::empty({batch, num_tokens});
  Tensor<int64_t, D> next = argmax(
      detail::guided_logits(model.prefill(combined, mask), batch, doubled, true, cfg_scale), -1);
  tokens.narrow(1, 0, 1).copy_(next.view({batch, 1}));
  for (int64_t i = 0; i + 1 < num_tokens; ++i) {
    const bool use_guidance = !(cfg_interval > -1 && i > cfg_interval);
    Tensor<int64_t, D> fed =
        doubled ? concat(std::vector<Tensor<int64_t, D>>{next, next}, 0) : next;
    Tensor<float, D> logits = model.step(fed, prefix + i);
    next = argmax(detail::guided_logits(logits, batch, doubled, use_guidance, cfg_scale), -1);
    tokens.narrow(1, i + 1, 1).copy_(next.view({batch, 1}));
  }
  return tokens;
}

}  // namespace mentor::generate
