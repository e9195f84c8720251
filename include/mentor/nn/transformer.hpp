#pragma once
// The Llama transformer block of LlamaGen: pre-norm, h = x + attention(attention_norm(x)),
// out = h + feed_forward(ffn_norm(h)). Drop-path is identity (upstream's rate is 0); the norms are
// RMSNorm computed in float. Children are named as upstream (`attention`, `feed_forward`,
// `attention_norm`, `ffn_norm`), so `layers.N.*` load by name.
#include <cstdint>

#include "mentor/nn/attention.hpp"
#include "mentor/nn/feed_forward.hpp"
#include "mentor/nn/layers.hpp"

namespace mentor::nn {

struct TransformerBlockConfig {
  int64_t dim = 0;
  int64_t n_head = 0;
  int64_t n_kv_head = 0;       // 0: n_head
  int64_t ffn_hidden_dim = 0;  // see swiglu_hidden_dim()
  double norm_eps = 1e-5;
  double resid_dropout_p = 0.0;
  double ffn_dropout_p = 0.0;
  double init_std = 0.02;
};

template <FloatingElement T, class D = CPU>
class TransformerBlock : public Module<T, D> {
 public:
  TransformerBlock() = default;
  TransformerBlock(const TransformerBlockConfig& config, Generator& gen)
      : attention(config.dim, config.n_head, config.n_kv_head, gen, config.resid_dropout_p,
                  config.init_std),
        feed_forward(config.dim, config.ffn_hidden_dim, gen, config.ffn_dropout_p, config.init_std),
        attention_norm(config.dim, config.norm_eps),
        ffn_norm(config.dim, config.norm_eps) {}

  // Training / whole-sequence path: x [B, S, dim], rope [S, head_dim/2, 2]. With first_row > 0
  // only the output rows [first_row, S) are computed (the attention still sees every key): the
  // last block of a decoder whose loss reads only those rows.
  Tensor<T, D> operator()(const Tensor<T, D>& x, const Tensor<float, D>& rope,
                          const AttnMask<D>& mask, Generator* dropout_gen = nullptr,
                          int64_t first_row = 0) const {
    const Tensor<T, D> kept = first_row == 0 ? x : x.narrow(1, first_row, x.size(1) - first_row);
    Tensor<T, D> h = add(kept, attention(attention_norm(x), rope, mask, dropout_gen, first_row));
    return add(h, feed_forward(ffn_norm(h), dropout_gen));
  }

  // KV-cached inference path (see Attention::forward_cached); never applies dropout.
  Tensor<T, D> forward_cached(const Tensor<T, D>& x, const Tensor<float, D>& rope,
                              int64_t start_pos, const AttnMask<D>& mask) {
    Tensor<T, D> h = add(x, attention.forward_cached(attention_norm(x), rope, start_pos, mask));
    return add(h, feed_forward.forward_no_dropout(ffn_norm(h)));
  }

  void visit(Visitor<T, D>& v) override {
    v.child("attention", attention);
    v.child("feed_forward", feed_forward);
    v.child("attention_norm", attention_norm);
    v.child("ffn_norm", ffn_norm);
  }

  Attention<T, D> attention;
  FeedForward<T, D> feed_forward;
  RMSNorm<T, D> attention_norm, ffn_norm;
};

}  // namespace mentor::nn
