#pragma once
// The Llama SwiGLU feed-forward: w2(silu(w1 x) * w3 x), no biases, then dropout. Parameter names
// are upstream LlamaGen's (`w1`, `w2`, `w3`), so `layers.N.feed_forward.*` load by name.
#include <cstdint>
#include <optional>

#include "mentor/core/error.hpp"
#include "mentor/nn/layers.hpp"
#include "mentor/ops/dropout.hpp"
#include "mentor/ops/gated.hpp"

namespace mentor::nn {

// LlamaGen's hidden size: int(2 * 4 * dim / 3), optionally scaled by `ffn_dim_multiplier`
// (truncated), then rounded up to a multiple of `multiple_of`.
inline int64_t swiglu_hidden_dim(int64_t dim, int64_t multiple_of,
                                 std::optional<double> ffn_dim_multiplier = std::nullopt) {
  MENTOR_CHECK(dim > 0 && multiple_of > 0, "swiglu_hidden_dim: dim ", dim, " and multiple_of ",
               multiple_of, " must be positive");
  int64_t hidden = 2 * (4 * dim) / 3;  // == int(2 * hidden / 3) in Python for positive sizes
  if (ffn_dim_multiplier)
    hidden = static_cast<int64_t>(*ffn_dim_multiplier * static_cast<double>(hidden));
  if (hidden % multiple_of != 0) hidden += multiple_of - hidden % multiple_of;
  return hidden;
}

template <FloatingElement T, class D = CPU>
class FeedForward : public Module<T, D> {
 public:
  FeedForward() = default;
  FeedForward(int64_t dim, int64_t hidden_dim, Generator& gen, double dropout_p = 0.0,
              double init_std = 0.02)
      : w1(dim, hidden_dim, false, gen, init_std),
        w3(dim, hidden_dim, false, gen, init_std),
        w2(hidden_dim, dim, false, gen, init_std),
        dropout_p(dropout_p) {}

  // x [..., dim] -> [..., dim]. `dropout_gen` feeds the output dropout in training mode (it may
  // be null when the module is in eval mode or dropout_p is 0).
  Tensor<T, D> operator()(const Tensor<T, D>& x, Generator* dropout_gen = nullptr) const {
    return apply_dropout(forward_no_dropout(x), dropout_gen);
  }
  // Inference path (KV-cached decoding): never drops, whatever the mode.
  Tensor<T, D> forward_no_dropout(const Tensor<T, D>& x) const {
    MENTOR_CHECK_SHAPE(x.dim() >= 1 && x.size(-1) == w1.in_features(), "FeedForward: input ",
                       x.shape().str(), " does not end in dim ", w1.in_features());
    return w2(swiglu(w1(x), w3(x)));
  }

  void visit(Visitor<T, D>& v) override {
    v.child("w1", w1);
    v.child("w2", w2);
    v.child("w3", w3);
  }

  int64_t hidden_dim() const { return w1.out_features(); }

  Linear<T, D> w1, w3, w2;  // w1, w3: [hidden, dim]; w2: [dim, hidden]
  double dropout_p = 0.0;

 private:
  Tensor<T, D> apply_dropout(const Tensor<T, D>& x, Generator* gen) const {
    if (!this->training() || dropout_p == 0.0) return x;
    MENTOR_CHECK(gen != nullptr, "FeedForward: training with ffn dropout ", dropout_p,
                 " needs a dropout generator");
    return dropout(x, dropout_p, *gen, true);
  }
};

}  // namespace mentor::nn
