#pragma once
// Image-token generation on the CPU for many requests at once, as upstream generate()
// (LlamaGen autoregressive/models/generate.py; MENTOR's is the same):
//   - classifier-free guidance doubles the batch to [cond ; uncond] when any request has
//     cfg_scale > 1; uncond is the null class (c2i) or uncond_embedding under the request's own
//     emb_mask (t2i, MENTOR); guided logits u + s (c - u) with each request's own s, a request
//     with s <= 1 samples from its conditional logits;
//   - the first token comes from the prefill; decode step i > cfg_interval (when > -1) samples from
//     the conditional logits alone;
//   - each token: temperature, top-k, top-p, min-p, softmax, one draw (generate/sampling.hpp).
// Reproducibility: request i's tokens depend only on its condition, its parameters and its seed
// (the draw for token t is Philox(seed, t); the decoder is batch-invariant), never on the other
// requests of the batch, the batch size or the thread count.
//
// Allocation: construction sizes everything (decoder, sampler, token buffers) for max_requests;
// begin() may allocate (the conditions are gathered), next() never does.
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <functional>
#include <vector>

#include "mentor/core/error.hpp"
#include "mentor/generate/cpu_decoder.hpp"
#include "mentor/generate/sampling.hpp"

namespace mentor::generate {

namespace detail {

struct RequestParams {
  SamplingParams sampling;
  double cfg_scale = 1.0;
  uint64_t seed = 0;
};

// Token t of every request from the logits of the rows (logits_of(row) -> const float* [vocab]):
// row b is request b's conditional branch, row batch + b its unconditional one when doubled.
// Upstream guides the first token always and decode step i = t - 1 only while i <= cfg_interval
// (when cfg_interval > -1). Writes tokens[b * stride + t].
template <class LogitsOf>
void draw_tokens(LogitsOf&& logits_of, int64_t vocab, int64_t batch, bool doubled,
                 int64_t cfg_interval, int64_t t, const std::vector<RequestParams>& params,
                 Sampler& sampler, std::vector<float>& guided, int64_t* tokens, int64_t stride) {
  const bool interval_on = t == 0 || !(cfg_interval > -1 && t - 1 > cfg_interval);
  for (int64_t b = 0; b < batch; ++b) {
    const RequestParams& p = params[static_cast<size_t>(b)];
    const float* logits = logits_of(b);
    if (doubled && interval_on && p.cfg_scale > 1.0) {
      const float* uncond = logits_of(batch + b);
      const float scale = static_cast<float>(p.cfg_scale);
      for (int64_t v = 0; v < vocab; ++v)
        guided[static_cast<size_t>(v)] = uncond[v] + (logits[v] - uncond[v]) * scale;
      logits = guided.data();
    }
    tokens[b * stride + t] = sampler.sample(logits, p.sampling, p.seed, t);
  }
}

}  // namespace detail

struct GenerationRequest {
  int64_t class_label = -1;    // c2i: the class
  Tensor<float, CPU> caption;  // t2i: [cls_token_num, caption_dim] (left-padded condition)
  Tensor<bool, CPU> emb_mask;  // t2i: [cls_token_num], true for real tokens; undefined: all real
  double cfg_scale = 1.0;      // <= 1: no guidance for this request
  SamplingParams sampling;
  uint64_t seed = 0;
};

namespace detail {

// Every request checked, and its condition rows gathered on the host: rows [0, batch) are the
// requests' conditions, rows [batch, 2 batch) (when any request is guided) their unconditional
// branches: the null class, or uncond_embedding under the request's own emb_mask.
struct Conditions {
  int64_t batch = 0, rows = 0;
  bool doubled = false;
  std::vector<int64_t> labels;  // c2i: [rows]
  std::vector<float> caption;   // t2i: [rows, cls_token_num, caption_dim]
  std::vector<uint8_t> valid;   // t2i: [rows, cls_token_num], 1 = a real token
};

template <class T, class D>
Conditions gather_conditions(const models::GPT<T, D>& model,
                             const std::vector<GenerationRequest>& requests,
                             std::vector<RequestParams>& params) {
  const models::GPTConfig& config = model.config();
  Conditions c;
  c.batch = static_cast<int64_t>(requests.size());
  MENTOR_CHECK(c.batch >= 1, "generate: no requests");
  if (static_cast<int64_t>(params.size()) < c.batch) params.resize(requests.size());
  for (int64_t b = 0; b < c.batch; ++b) {
    const GenerationRequest& request = requests[static_cast<size_t>(b)];
    request.sampling.validate();
    MENTOR_CHECK(std::isfinite(request.cfg_scale) && request.cfg_scale >= 0.0, "generate: request ",
                 b, " has cfg_scale ", request.cfg_scale,
                 " (it must be finite and >= 0; <= 1 is no guidance)");
    params[static_cast<size_t>(b)] = {request.sampling, request.cfg_scale, request.seed};
    c.doubled = c.doubled || request.cfg_scale > 1.0;
  }
  c.rows = c.doubled ? 2 * c.batch : c.batch;
  if (config.is_c2i()) {
    MENTOR_CHECK(!c.doubled || config.label_rows() > config.num_classes,
                 "generate: guidance needs the null class, but the label table has no null row "
                 "(class_dropout_prob 0)");
    c.labels.assign(static_cast<size_t>(c.rows), config.num_classes);
    for (int64_t b = 0; b < c.batch; ++b) {
      const int64_t label = requests[static_cast<size_t>(b)].class_label;
      MENTOR_CHECK(label >= 0 && label < config.num_classes, "generate: request ", b,
                   " has class label ", label, " outside [0, ", config.num_classes, ")");
      c.labels[static_cast<size_t>(b)] = label;
    }
    return c;
  }
  const int64_t slots = config.cls_token_num, width = config.caption_dim;
  c.caption.assign(static_cast<size_t>(c.rows * slots * width), 0.0f);
  c.valid.assign(static_cast<size_t>(c.rows * slots), 1);
  const std::vector<float> uncond =
      model.caption_embedder().uncond_embedding.template to<float>().contiguous().to_vector();
  for (int64_t b = 0; b < c.batch; ++b) {
    const GenerationRequest& request = requests[static_cast<size_t>(b)];
    MENTOR_CHECK_SHAPE(request.caption.defined() && request.caption.dim() == 2 &&
                           request.caption.size(0) == slots && request.caption.size(1) == width,
                       "generate: request ", b, " has caption features ",
                       request.caption.defined() ? request.caption.shape().str() : "(none)",
                       ", not [", slots, ", ", width, "] (cls_token_num, caption_dim)");
    const std::vector<float> features = request.caption.contiguous().to_vector();
    std::copy(features.begin(), features.end(), c.caption.begin() + b * slots * width);
    if (request.emb_mask.defined()) {
      MENTOR_CHECK_SHAPE(request.emb_mask.dim() == 1 && request.emb_mask.size(0) == slots,
                         "generate: request ", b, " has emb_mask ", request.emb_mask.shape().str(),
                         ", not [", slots, "]");
      const std::vector<bool> mask = request.emb_mask.to_vector();
      for (int64_t t = 0; t < slots; ++t)
        c.valid[static_cast<size_t>(b * slots + t)] = mask[static_cast<size_t>(t)] ? 1 : 0;
    }
    if (c.doubled) {
      std::copy(uncond.begin(), uncond.end(), c.caption.begin() + (c.batch + b) * slots * width);
      std::copy_n(c.valid.begin() + b * slots, slots, c.valid.begin() + (c.batch + b) * slots);
    }
  }
  return c;
}

}  // namespace detail

class CpuGeneration {
 public:
  using Model = models::GPT<float, CPU>;

  // For up to max_requests requests of num_tokens image tokens each; cfg_interval as upstream
  // (-1: guidance on every token).
  CpuGeneration(const Model& model, int64_t max_requests, int64_t num_tokens,
                int64_t cfg_interval = -1)
      : model_(model),
        num_tokens_(num_tokens),
        cfg_interval_(cfg_interval),
        decoder_(model, 2 * max_requests, num_tokens),
        sampler_(model.config().vocab_size),
        max_requests_(max_requests) {
    MENTOR_CHECK(cfg_interval >= -1, "CpuGeneration: cfg_interval ", cfg_interval,
                 " must be -1 (always) or a step index");
    const int64_t vocab = model.config().vocab_size;
    guided_.assign(static_cast<size_t>(vocab), 0.0f);
    fed_.assign(static_cast<size_t>(2 * max_requests), 0);
    tokens_.assign(static_cast<size_t>(max_requests * num_tokens), 0);
    params_.resize(static_cast<size_t>(max_requests));
  }

  int64_t num_tokens() const { return num_tokens_; }

  // Checks the requests, runs the prefill and draws every request's first token.
  void begin(const std::vector<GenerationRequest>& requests) {
    MENTOR_CHECK(!requests.empty() && static_cast<int64_t>(requests.size()) <= max_requests_,
                 "generate: ", requests.size(), " requests outside [1, max_requests ",
                 max_requests_, "]");
    const detail::Conditions c = detail::gather_conditions(model_, requests, params_);
    batch_ = c.batch;
    doubled_ = c.doubled;
    if (model_.config().is_c2i())
      decoder_.prefill_labels(c.labels.data(), c.rows);
    else
      decoder_.prefill_caption(c.caption.data(), c.valid.data(), c.rows);
    produced_ = 0;
    draw();
  }

  // One more token for every request; false once num_tokens are there. Allocation-free.
  bool next() {
    if (produced_ >= num_tokens_) return false;
    const int64_t rows = doubled_ ? 2 * batch_ : batch_;
    for (int64_t r = 0; r < rows; ++r)
      fed_[static_cast<size_t>(r)] =
          tokens_[static_cast<size_t>((r % batch_) * num_tokens_ + produced_ - 1)];
    decoder_.step(fed_.data());
    draw();
    return produced_ < num_tokens_;
  }

  // Tokens [batch, num_tokens] of the last begin() (complete once next() returned false).
  Tensor<int64_t, CPU> tokens() const {
    std::vector<int64_t> out(tokens_.begin(), tokens_.begin() + batch_ * num_tokens_);
    return Tensor<int64_t, CPU>::from_vector(out, Shape{batch_, num_tokens_});
  }
  int64_t produced() const { return produced_; }

  // begin() and next() to the end; `on_token(done, total)` after each token (a progress bar).
  Tensor<int64_t, CPU> run(const std::vector<GenerationRequest>& requests,
                           const std::function<void(int64_t, int64_t)>& on_token = {}) {
    begin(requests);
    if (on_token) on_token(produced_, num_tokens_);
    while (next())
      if (on_token) on_token(produced_, num_tokens_);
    if (on_token && produced_ == num_tokens_) on_token(produced_, num_tokens_);
    return tokens();
  }

 private:
  void draw() {
    detail::draw_tokens([&](int64_t row) { return decoder_.logits(row); }, decoder_.vocab_size(),
                        batch_, doubled_, cfg_interval_, produced_, params_, sampler_, guided_,
                        tokens_.data(), num_tokens_);
    ++produced_;
  }

  const Model& model_;
  int64_t num_tokens_ = 0, cfg_interval_ = -1;
  CpuDecoder decoder_;
  Sampler sampler_;
  int64_t max_requests_ = 0, batch_ = 0, produced_ = 0;
  bool doubled_ = false;
  std::vector<detail::RequestParams> params_;
  std::vector<float> guided_;
  std::vector<int64_t> fed_, tokens_;
};

// One call: generates tokens [requests, num_tokens] (see CpuGeneration).
inline Tensor<int64_t, CPU> generate(const models::GPT<float, CPU>& model,
                                     const std::vector<GenerationRequest>& requests,
                                     int64_t num_tokens, int64_t cfg_interval = -1) {
  CpuGeneration generation(model, static_cast<int64_t>(requests.size()), num_tokens, cfg_interval);
  return generation.run(requests);
}

// The same generation through the op path (GPT::prefill/step) for any element type and device:
// bf16 models, CUDA (until its graph-captured decoder exists: this copies each step's logits to
// the host). The same requests, rules and seeds as CpuGeneration; its tokens equal the decoder's
// wherever the logits do (the op path is not batch-invariant: its GEMMs block by batch size).
template <FloatingElement T, class D>
Tensor<int64_t, CPU> generate_op_path(models::GPT<T, D>& model,
                                      const std::vector<GenerationRequest>& requests,
                                      int64_t num_tokens, int64_t cfg_interval = -1) {
  const models::GPTConfig& config = model.config();
  MENTOR_CHECK(num_tokens >= 1 && num_tokens <= config.block_size, "generate: num_tokens ",
               num_tokens, " outside [1, block_size ", config.block_size, "]");
  MENTOR_CHECK(cfg_interval >= -1, "generate: cfg_interval ", cfg_interval,
               " must be -1 (always) or a step index");
  NoGradGuard no_grad;
  std::vector<detail::RequestParams> params;
  const detail::Conditions c = detail::gather_conditions(model, requests, params);
  const int64_t prefix = config.cls_token_num, vocab = config.vocab_size;
  struct CacheRelease {
    models::GPT<T, D>& model;
    ~CacheRelease() { model.clear_cache(); }
  } release{model};
  model.setup_cache(c.rows, prefix + num_tokens);
  std::vector<float> logits;
  auto take = [&](const Tensor<float, D>& l) {
    logits = l.template to<CPU>().contiguous().to_vector();
  };
  if (config.is_c2i()) {
    take(
        model.prefill(Tensor<int64_t, CPU>::from_vector(c.labels, Shape{c.rows}).template to<D>()));
  } else {
    std::vector<bool> valid(c.valid.begin(), c.valid.end());
    take(model.prefill(
        Tensor<float, CPU>::from_vector(c.caption, Shape{c.rows, prefix, config.caption_dim})
            .template to<T>()
            .template to<D>(),
        Tensor<bool, CPU>::from_vector(valid, Shape{c.rows, prefix}).template to<D>()));
  }
  Sampler sampler(vocab);
  std::vector<float> guided(static_cast<size_t>(vocab));
  std::vector<int64_t> tokens(static_cast<size_t>(c.batch * num_tokens));
  std::vector<int64_t> fed(static_cast<size_t>(c.rows));
  auto logits_of = [&](int64_t row) { return logits.data() + row * vocab; };
  for (int64_t t = 0; t < num_tokens; ++t) {
    if (t > 0) {
      for (int64_t r = 0; r < c.rows; ++r)
        fed[static_cast<size_t>(r)] =
            tokens[static_cast<size_t>((r % c.batch) * num_tokens + t - 1)];
      take(model.step(Tensor<int64_t, CPU>::from_vector(fed, Shape{c.rows}).template to<D>(),
                      prefix + t - 1));
    }
    detail::draw_tokens(logits_of, vocab, c.batch, c.doubled, cfg_interval, t, params, sampler,
                        guided, tokens.data(), num_tokens);
  }
  return Tensor<int64_t, CPU>::from_vector(tokens, Shape{c.batch, num_tokens});
}

}  // namespace mentor::generate
