#pragma once
// Multi-head self-attention as in LlamaGen (after gpt-fast): one fused `wqkv` projection split
// q | k | v, grouped KV heads optional (n_kv_head divides n_head; query head h reads KV head
// h / (n_head / n_kv_head)), 2D RoPE on q and k, scaled dot-product attention, `wo` projection and
// residual dropout. Parameter names are upstream's (`wqkv`, `wo`).
//
// Two paths:
//   operator()     training / whole-sequence: keys and values are this call's own.
//   forward_cached inference: this call's keys and values are written into a preallocated cache at
//                  positions [start_pos, start_pos + S) and the queries attend to cache positions
//                  [0, start_pos + S). Upstream attends to the whole (zero-filled) cache with the
//                  unwritten positions masked out, which is the same attention.
// The cache is not part of the state dict (upstream registers it only after setup_caches, and
// checkpoints are saved without it).
#include <cstdint>
#include <tuple>

#include "mentor/autograd/node.hpp"
#include "mentor/core/error.hpp"
#include "mentor/nn/layers.hpp"
#include "mentor/ops/attention.hpp"
#include "mentor/ops/dropout.hpp"
#include "mentor/ops/rope.hpp"

namespace mentor::nn {

// Preallocated keys and values of one attention layer: [batch, n_kv_head, capacity, head_dim].
template <FloatingElement T, class D = CPU>
struct KVCache {
  Tensor<T, D> k, v;

  bool allocated() const { return k.defined(); }
  int64_t batch() const { return k.size(0); }
  int64_t capacity() const { return k.size(2); }
};

template <FloatingElement T, class D = CPU>
class Attention : public Module<T, D> {
 public:
  Attention() = default;
  // n_kv_head = 0 means n_head (plain multi-head attention).
  Attention(int64_t dim, int64_t n_head, int64_t n_kv_head, Generator& gen,
            double resid_dropout_p = 0.0, double init_std = 0.02)
      : n_head(n_head),
        n_kv_head(n_kv_head == 0 ? n_head : n_kv_head),
        head_dim(n_head > 0 ? dim / n_head : 0),
        resid_dropout_p(resid_dropout_p) {
    MENTOR_CHECK(n_head > 0 && dim % n_head == 0, "Attention: dim ", dim,
                 " is not a multiple of n_head ", n_head);
    MENTOR_CHECK(this->n_kv_head > 0 && n_head % this->n_kv_head == 0, "Attention: n_kv_head ",
                 this->n_kv_head, " does not divide n_head ", n_head);
    MENTOR_CHECK(head_dim % 4 == 0, "Attention: head_dim ", head_dim,
                 " must be a multiple of 4 for the 2D rotary embedding");
    wqkv = Linear<T, D>(dim, (n_head + 2 * this->n_kv_head) * head_dim, false, gen, init_std);
    wo = Linear<T, D>(dim, dim, false, gen, init_std);
  }

  // x [B, S, dim]; rope [S, head_dim/2, 2] (the table rows of these S positions); mask over
  // [B or 1, 1 or n_head, S, S]. Returns [B, S, dim]; with first_query > 0, only the rows of the
  // queries [first_query, S), [B, S - first_query, dim], every key still seen (what a last layer
  // whose first rows feed nothing needs).
  Tensor<T, D> operator()(const Tensor<T, D>& x, const Tensor<float, D>& rope,
                          const AttnMask<D>& mask, Generator* dropout_gen = nullptr,
                          int64_t first_query = 0) const {
    auto [q, k, v] = project(x, rope);
    const int64_t seq = x.size(1);
    MENTOR_CHECK_SHAPE(first_query >= 0 && first_query < seq, "Attention: first_query ",
                       first_query, " outside [0, ", seq, ")");
    if (first_query == 0)
      return finish(scaled_dot_product_attention(q, k, v, mask), x.size(1), true, dropout_gen);
    // The kept queries are the last ones, which is how a causal mask reads Sq < Sk.
    AttnMask<D> kept_mask = mask;
    if (mask.kind == MaskKind::Explicit &&
        mask.explicit_mask.size(mask.explicit_mask.dim() - 2) == seq)
      kept_mask.explicit_mask =
          mask.explicit_mask.narrow(mask.explicit_mask.dim() - 2, first_query, seq - first_query);
    return finish(
        scaled_dot_product_attention(q.narrow(2, first_query, seq - first_query), k, v, kept_mask),
        seq - first_query, true, dropout_gen);
  }

  // Inference with the KV cache (see the file comment). x [B, S, dim] with B <= cache batch;
  // rope [S, head_dim/2, 2] for positions [start_pos, start_pos + S); mask over
  // [B or 1, 1 or n_head, S, start_pos + S] (AttnMask::causal() treats the queries as the last S
  // positions). No dropout, no gradient.
  Tensor<T, D> forward_cached(const Tensor<T, D>& x, const Tensor<float, D>& rope,
                              int64_t start_pos, const AttnMask<D>& mask) {
    MENTOR_CHECK(kv_cache.allocated(), "Attention::forward_cached: no KV cache (call setup_cache)");
    MENTOR_CHECK(!(autograd::grad_enabled() && x.requires_grad()),
                 "Attention::forward_cached: the KV-cached path is inference-only (use a "
                 "NoGradGuard)");
    check_input(x);
    const int64_t batch = x.size(0), seq = x.size(1);
    MENTOR_CHECK_SHAPE(batch <= kv_cache.batch(), "Attention::forward_cached: batch ", batch,
                       " exceeds the cache batch ", kv_cache.batch());
    MENTOR_CHECK_SHAPE(start_pos >= 0 && start_pos + seq <= kv_cache.capacity(),
                       "Attention::forward_cached: positions [", start_pos, ", ", start_pos + seq,
                       ") exceed the cache capacity ", kv_cache.capacity());
    auto [q, k, v] = project(x, rope);
    Tensor<T, D> k_cache = kv_cache.k.narrow(0, 0, batch);
    Tensor<T, D> v_cache = kv_cache.v.narrow(0, 0, batch);
    {
      NoGradGuard no_grad;
      k_cache.narrow(2, start_pos, seq).copy_(k);
      v_cache.narrow(2, start_pos, seq).copy_(v);
    }
    Tensor<T, D> keys = k_cache.narrow(2, 0, start_pos + seq);
    Tensor<T, D> values = v_cache.narrow(2, 0, start_pos + seq);
    return finish(scaled_dot_product_attention(q, keys, values, mask), seq, false, nullptr);
  }

  // Allocates (zeroed) keys and values for `batch` sequences of up to `capacity` positions.
  void setup_cache(int64_t batch, int64_t capacity) {
    MENTOR_CHECK(batch > 0 && capacity > 0, "Attention::setup_cache: batch ", batch,
                 " and capacity ", capacity, " must be positive");
    Shape shape{batch, n_kv_head, capacity, head_dim};
    kv_cache.k = Tensor<T, D>::zeros(shape);
    kv_cache.v = Tensor<T, D>::zeros(shape);
  }
  void clear_cache() { kv_cache = KVCache<T, D>{}; }

  void visit(Visitor<T, D>& v) override {
    v.child("wqkv", wqkv);
    v.child("wo", wo);
  }

  int64_t dim() const { return wo.out_features(); }

  Linear<T, D> wqkv;  // [(n_head + 2 n_kv_head) head_dim, dim]: rows q | k | v
  Linear<T, D> wo;    // [dim, dim]
  int64_t n_head = 0, n_kv_head = 0, head_dim = 0;
  double resid_dropout_p = 0.0;
  KVCache<T, D> kv_cache;

 private:
  void check_input(const Tensor<T, D>& x) const {
    MENTOR_CHECK_SHAPE(x.dim() == 3 && x.size(2) == dim(), "Attention: input ", x.shape().str(),
                       " is not [batch, seq, ", dim(), "]");
  }

  // q [B, H, S, Dh], k and v [B, Hk, S, Dh] (views of the fused projection, q and k rotated).
  std::tuple<Tensor<T, D>, Tensor<T, D>, Tensor<T, D>> project(const Tensor<T, D>& x,
                                                               const Tensor<float, D>& rope) const {
    check_input(x);
    const int64_t batch = x.size(0), seq = x.size(1);
    MENTOR_CHECK_SHAPE(
        rope.dim() == 3 && rope.size(0) == seq && rope.size(1) == head_dim / 2 && rope.size(2) == 2,
        "Attention: rotary table ", rope.shape().str(), " is not [", seq, ", ", head_dim / 2,
        ", 2] for input ", x.shape().str());
    // [B, S, H + 2 Hk, Dh]: heads of q, then of k, then of v (upstream's split of wqkv's output).
    Tensor<T, D> qkv = wqkv(x).view({batch, seq, n_head + 2 * n_kv_head, head_dim});
    Tensor<T, D> q = apply_rope(qkv.narrow(2, 0, n_head), rope);
    Tensor<T, D> k = apply_rope(qkv.narrow(2, n_head, n_kv_head), rope);
    Tensor<T, D> v = qkv.narrow(2, n_head + n_kv_head, n_kv_head);
    return {q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2)};
  }

  // attended [B, H, S, Dh] -> wo -> residual dropout (training path only) -> [B, S, dim].
  Tensor<T, D> finish(const Tensor<T, D>& attended, int64_t seq, bool with_dropout,
                      Generator* dropout_gen) const {
    Tensor<T, D> merged = attended.transpose(1, 2).reshape({attended.size(0), seq, dim()});
    Tensor<T, D> out = wo(merged);
    if (with_dropout && this->training() && resid_dropout_p > 0.0) {
      MENTOR_CHECK(dropout_gen != nullptr, "Attention: training with residual dropout ",
                   resid_dropout_p, " needs a dropout generator");
      out = dropout(out, resid_dropout_p, *dropout_gen, true);
    }
    return out;
  }
};

}  // namespace mentor::nn
