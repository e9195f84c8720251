#pragma once
// The CPU inference engine of the LlamaGen GPT (GPT<float, CPU>): the condition prefix, then one
// image token per step, over a KV cache and activations allocated once, at construction.
//
// GPT::prefill/step (the op path) stay the reference; this engine exists for what they cannot give:
//   - no heap allocation per token: every activation, the cache and the logits live in buffers
//     sized for the largest batch and sequence the decoder was built for;
//   - batch invariance: each output element of every layer comes from the same instruction sequence
//     whatever the batch and the thread count (one 16-lane dot product per element, as
//     cpu::row_dot; nothing blocks over rows), so a request's logits, and with its own seed its
//     tokens, are bit-identical alone or inside any batch;
//   - decode speed at a few rows: each weight row is read once per step and reused for every row.
// The arithmetic is upstream's inference forward: pre-norm Llama blocks, RMSNorm in float, fused
// q|k|v with 2D RoPE (the table's prefix rows are zero or the identity, as the model's), causal
// attention where padded prefix slots are hidden from every query but attend to themselves,
// SwiGLU, the final norm and the output head; the condition embedded by the label table or by
// cap_proj (fc1, tanh-GELU, fc2). tests/generate holds it to GPT::prefill/step and to upstream's
// greedy tokens.
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>
#include <vector>

#include "mentor/backend/cpu/math.hpp"
#include "mentor/backend/cpu/parallel.hpp"
#include "mentor/backend/pointwise_math.hpp"
#include "mentor/core/error.hpp"
#include "mentor/models/gpt.hpp"
#include "mentor/ops/norm.hpp"
#include "mentor/ops/unary.hpp"

namespace mentor::generate {

// The 64-byte lane type is passed by value between these inline helpers; without AVX-512 GCC warns
// that such arguments change the ABI, which does not matter for functions inlined in one program.
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wpsabi"
namespace cpu_decode {

// y[r, j] (+)= Σ_k x[r, k] · w[j, k] for r < rows, j < out: x [rows, in], w [out, in] (a Linear's
// weight), y [rows, out]. Batch invariance (see the file comment) means every element must come
// from the same instruction sequence for any rows, any tile and any thread split: each element is
// 16 lane-wise multiply-add chains over k (a GCC vector type, so the accumulators stay in
// registers: one zmm, or two ymm on AVX2-only CPUs), then one fixed tree over its 16 lanes, then
// the scalar tail of k. Tiles of 4 rows × 4 weight rows (or 2 × 8) share each load of x and w; the
// tree reduces 16 accumulators at once (15 vector adds instead of 16 × 15 dependent scalar ones).
using Lanes = float __attribute__((vector_size(64)));
using LaneIndex = int32_t __attribute__((vector_size(64)));
constexpr int kLanes = 16;
constexpr int kTileElements = 16;

inline Lanes load_lanes(const float* p) {
  Lanes v;
  std::memcpy(&v, p, sizeof(v));
  return v;
}

// Lane l of the result: (a ++ b)[first[l]] + (a ++ b)[second[l]] (indices 16..31 pick from b).
inline Lanes fold(Lanes a, Lanes b, LaneIndex first, LaneIndex second) {
  return __builtin_shuffle(a, b, first) + __builtin_shuffle(a, b, second);
}

// v[e] holds the 16 lane partial sums of element e; returns lane e = the sum of v[e]'s lanes, by
// the same tree for every e: lanes (l, l + 8), then (l, l + 4), (l, l + 2), (l, l + 1).
inline Lanes reduce_elements(Lanes (&v)[kTileElements]) {
  const LaneIndex halves_lo = {0, 1, 2, 3, 4, 5, 6, 7, 16, 17, 18, 19, 20, 21, 22, 23};
  const LaneIndex halves_hi = {8, 9, 10, 11, 12, 13, 14, 15, 24, 25, 26, 27, 28, 29, 30, 31};
  const LaneIndex quads_lo = {0, 1, 2, 3, 8, 9, 10, 11, 16, 17, 18, 19, 24, 25, 26, 27};
  const LaneIndex quads_hi = {4, 5, 6, 7, 12, 13, 14, 15, 20, 21, 22, 23, 28, 29, 30, 31};
  const LaneIndex pairs_lo = {0, 1, 4, 5, 8, 9, 12, 13, 16, 17, 20, 21, 24, 25, 28, 29};
  const LaneIndex pairs_hi = {2, 3, 6, 7, 10, 11, 14, 15, 18, 19, 22, 23, 26, 27, 30, 31};
  const LaneIndex even = {0, 2, 4, 6, 8, 10, 12, 14, 16, 18, 20, 22, 24, 26, 28, 30};
  const LaneIndex odd = {1, 3, 5, 7, 9, 11, 13, 15, 17, 19, 21, 23, 25, 27, 29, 31};
  Lanes halves[8], quads[4], pairs[2];
  for (int k = 0; k < 8; ++k) halves[k] = fold(v[2 * k], v[2 * k + 1], halves_lo, halves_hi);
  for (int k = 0; k < 4; ++k) quads[k] = fold(halves[2 * k], halves[2 * k + 1], quads_lo, quads_hi);
  for (int k = 0; k < 2; ++k) pairs[k] = fold(quads[2 * k], quads[2 * k + 1], pairs_lo, pairs_hi);
  return fold(pairs[0], pairs[1], even, odd);
}

// One tile: Rows rows of x × Cols weight rows (Rows · Cols <= 16; past the last weight row the
// caller repeats it, and those duplicates are computed and not stored). sums[r * Cols + c].
template <int Rows, int Cols>
inline void linear_tile(const float* const (&xr)[Rows], const float* const (&wr)[Cols], int64_t in,
                        float (&sums)[kTileElements]) {
  static_assert(Rows * Cols <= kTileElements);
  Lanes acc[kTileElements] = {};
  int64_t i = 0;
  for (; i + kLanes <= in; i += kLanes) {
    Lanes wv[Cols];
    for (int c = 0; c < Cols; ++c) wv[c] = load_lanes(wr[c] + i);
    for (int r = 0; r < Rows; ++r) {
      const Lanes xv = load_lanes(xr[r] + i);
      for (int c = 0; c < Cols; ++c) acc[r * Cols + c] += xv * wv[c];
    }
  }
  const Lanes reduced = reduce_elements(acc);
  for (int e = 0; e < kTileElements; ++e) sums[e] = reduced[e];
  for (int r = 0; r < Rows; ++r)
    for (int c = 0; c < Cols; ++c)
      for (int64_t t = i; t < in; ++t) sums[r * Cols + c] += xr[r][t] * wr[c][t];
}

// Multiply-adds per thread below which a product stays on the calling thread: waking a second
// thread costs more than a decode step's small products (and a whole time slice on a busy machine).
inline constexpr int64_t kMinMultiplyAddsPerThread = int64_t{1} << 20;

// Rows [r0, r1) (a multiple of Rows apart) against weight rows [j0, j0 + width).
template <int Rows, int Cols>
inline void linear_row_tiles(const float* x, int64_t r0, int64_t r1, int64_t in,
                             const float* const (&wr)[Cols], int64_t j0, int64_t width, int64_t out,
                             float* y, bool accumulate) {
  for (int64_t r = r0; r < r1; r += Rows) {
    const float* xr[Rows];
    for (int k = 0; k < Rows; ++k) xr[k] = x + (r + k) * in;
    float sums[kTileElements];
    linear_tile<Rows, Cols>(xr, wr, in, sums);
    for (int64_t k = 0; k < Rows; ++k) {
      float* yr = y + (r + k) * out + j0;
      for (int64_t c = 0; c < width; ++c) {
        const float s = sums[k * Cols + c];
        yr[c] = accumulate ? yr[c] + s : s;
      }
    }
  }
}

// Tiles of 4 rows × 4 weight rows where there are 4 rows or more (the prefill), else 2 × 8 and
// 1 × 8 (decode steps): each tile fills most of the 16 accumulators of one reduction.
template <int Cols>
inline void linear_rows_by(const float* x, int64_t rows, int64_t in, const float* w, int64_t out,
                           float* y, bool accumulate) {
  const int64_t blocks = (out + Cols - 1) / Cols;
  const int64_t work_per_block = std::max<int64_t>(rows * in * Cols, 1);
  cpu::parallel_for(
      blocks, std::max<int64_t>(1, kMinMultiplyAddsPerThread / work_per_block),
      [&](int64_t b0, int64_t b1) {
        for (int64_t block = b0; block < b1; ++block) {
          const int64_t j0 = block * Cols, width = std::min<int64_t>(Cols, out - j0);
          const float* wr[Cols];
          for (int64_t c = 0; c < Cols; ++c) wr[c] = w + (j0 + std::min(c, width - 1)) * in;
          constexpr int kBig = kTileElements / Cols;  // 4 rows of 4 columns, or 2 of 8
          const int64_t big_end = rows / kBig * kBig;
          linear_row_tiles<kBig, Cols>(x, 0, big_end, in, wr, j0, width, out, y, accumulate);
          if constexpr (kBig == 4) {
            const int64_t pairs_end = big_end + (rows - big_end) / 2 * 2;
            linear_row_tiles<2, Cols>(x, big_end, pairs_end, in, wr, j0, width, out, y, accumulate);
            linear_row_tiles<1, Cols>(x, pairs_end, rows, in, wr, j0, width, out, y, accumulate);
          } else {
            linear_row_tiles<1, Cols>(x, big_end, rows, in, wr, j0, width, out, y, accumulate);
          }
        }
      });
}

inline void linear_rows(const float* x, int64_t rows, int64_t in, const float* w, int64_t out,
                        float* y, bool accumulate) {
  if (rows >= 4)
    linear_rows_by<4>(x, rows, in, w, out, y, accumulate);
  else
    linear_rows_by<8>(x, rows, in, w, out, y, accumulate);
}

}  // namespace cpu_decode
#pragma GCC diagnostic pop

class CpuDecoder {
 public:
  using Model = models::GPT<float, CPU>;

  // Buffers for up to `max_rows` sequences (the guided batch: 2 per request under guidance) of the
  // condition prefix plus `max_image_tokens` tokens. The model must outlive the decoder and keep
  // its weights (the decoder reads them in place).
  CpuDecoder(const Model& model, int64_t max_rows, int64_t max_image_tokens)
      : model_(model), config_(model.config()), max_rows_(max_rows) {
    MENTOR_CHECK(max_rows > 0, "CpuDecoder: max_rows ", max_rows, " must be positive");
    MENTOR_CHECK(max_image_tokens >= 1 && max_image_tokens <= config_.block_size,
                 "CpuDecoder: max_image_tokens ", max_image_tokens, " outside [1, block_size ",
                 config_.block_size, "]");
    dim_ = config_.dim;
    heads_ = config_.n_head;
    kv_heads_ = config_.kv_heads();
    head_dim_ = config_.head_dim();
    hidden_ = config_.ffn_hidden_dim();
    vocab_ = config_.vocab_size;
    prefix_ = config_.cls_token_num;
    capacity_ = prefix_ + max_image_tokens;
    qkv_width_ = (heads_ + 2 * kv_heads_) * head_dim_;
    collect_weights();
    const int64_t tokens = max_rows * prefix_;  // the prefill is the widest call
    x_.assign(static_cast<size_t>(tokens * dim_), 0.0f);
    normed_.assign(x_.size(), 0.0f);
    qkv_.assign(static_cast<size_t>(tokens * qkv_width_), 0.0f);
    attended_.assign(static_cast<size_t>(tokens * heads_ * head_dim_), 0.0f);
    gate_.assign(static_cast<size_t>(tokens * std::max(hidden_, dim_)), 0.0f);
    up_.assign(static_cast<size_t>(tokens * hidden_), 0.0f);
    scores_.assign(static_cast<size_t>(max_rows * heads_ * capacity_), 0.0f);
    last_.assign(static_cast<size_t>(max_rows * dim_), 0.0f);
    logits_.assign(static_cast<size_t>(max_rows * vocab_), 0.0f);
    prefix_valid_.assign(static_cast<size_t>(max_rows * prefix_), 1);
    if (!config_.is_c2i()) caption_.assign(static_cast<size_t>(tokens * config_.caption_dim), 0.0f);
    const size_t cache = static_cast<size_t>(max_rows * kv_heads_ * capacity_ * head_dim_);
    k_cache_.assign(static_cast<size_t>(config_.n_layer), std::vector<float>(cache, 0.0f));
    v_cache_.assign(static_cast<size_t>(config_.n_layer), std::vector<float>(cache, 0.0f));
  }

  int64_t vocab_size() const { return vocab_; }
  int64_t max_rows() const { return max_rows_; }
  int64_t rows() const { return rows_; }
  // The sequence position the next step() feeds (cls_token_num + image tokens fed so far).
  int64_t position() const { return position_; }

  // Class labels [rows] (the null class num_classes for the unconditional rows of guidance).
  void prefill_labels(const int64_t* labels, int64_t rows) {
    MENTOR_CHECK(config_.is_c2i(),
                 "CpuDecoder::prefill_labels: the model is t2i (it takes caption "
                 "features [rows, ",
                 prefix_, ", ", config_.caption_dim, "])");
    begin(rows);
    const Tensor<float, CPU>& weight = model_.label_embedder().embedding_table.weight;
    const int64_t table_rows = weight.size(0);
    const float* table = weight_of(weight, "cls_embedding.embedding_table");
    for (int64_t r = 0; r < rows; ++r) {
      MENTOR_CHECK(labels[r] >= 0 && labels[r] < table_rows, "CpuDecoder: class label ", labels[r],
                   " outside the label table [0, ", table_rows, ")");
      std::copy_n(table + labels[r] * dim_, dim_, x_.data() + r * dim_);
    }
    run_prefix(rows);
  }

  // Caption features [rows, cls_token_num, caption_dim] (row-major floats) and prefix_valid
  // [rows, cls_token_num] (nonzero = a real, right-aligned condition token; null = all real).
  void prefill_caption(const float* caption, const uint8_t* prefix_valid, int64_t rows) {
    MENTOR_CHECK(!config_.is_c2i(),
                 "CpuDecoder::prefill_caption: the model is c2i (it takes class labels)");
    begin(rows);
    const int64_t n = rows * prefix_, cd = config_.caption_dim;
    std::copy_n(caption, n * cd, caption_.data());
    for (int64_t i = 0; i < n; ++i)
      prefix_valid_[static_cast<size_t>(i)] = prefix_valid ? prefix_valid[i] : 1;
    // cap_proj: fc2(gelu_tanh(fc1(caption))), no biases.
    cpu_decode::linear_rows(caption_.data(), n, cd, cap_fc1_, dim_, gate_.data(), false);
    for (int64_t i = 0; i < n * dim_; ++i)
      gate_[static_cast<size_t>(i)] =
          math::unary_value<UnaryOp::GeluTanh, cpu::UnaryMath>(gate_[static_cast<size_t>(i)], 0.0f);
    cpu_decode::linear_rows(gate_.data(), n, dim_, cap_fc2_, dim_, x_.data(), false);
    run_prefix(rows);
  }

  // Feeds one image token per row at position() and computes the next logits.
  void step(const int64_t* tokens) {
    MENTOR_CHECK(rows_ > 0, "CpuDecoder::step: no prefill yet");
    MENTOR_CHECK(position_ < capacity_, "CpuDecoder::step: position ", position_,
                 " is beyond the decoder's capacity ", capacity_,
                 " (cls_token_num + max_image_tokens)");
    const float* table = model_.tok_embeddings.weight.data();
    for (int64_t r = 0; r < rows_; ++r) {
      MENTOR_CHECK(tokens[r] >= 0 && tokens[r] < vocab_, "CpuDecoder::step: token ", tokens[r],
                   " outside the vocabulary [0, ", vocab_, ")");
      std::copy_n(table + tokens[r] * dim_, dim_, x_.data() + r * dim_);
    }
    run_layers(rows_, position_, 1);
    head();
    ++position_;
  }

  // The float logits [vocab] of row r after the last prefill or step.
  const float* logits(int64_t r) const { return logits_.data() + r * vocab_; }

 private:
  struct LayerWeights {
    const float *attention_norm, *wqkv, *wo, *ffn_norm, *w1, *w3, *w2;
  };

  static const float* weight_of(const Tensor<float, CPU>& t, const char* name) {
    MENTOR_CHECK(t.defined() && t.is_contiguous(), "CpuDecoder: weight ", name,
                 " is undefined or not contiguous");
    return t.data();
  }

  void collect_weights() {
    for (const auto& layer : model_.layers)
      layers_.push_back({weight_of(layer.attention_norm.weight, "attention_norm"),
                         weight_of(layer.attention.wqkv.weight, "attention.wqkv"),
                         weight_of(layer.attention.wo.weight, "attention.wo"),
                         weight_of(layer.ffn_norm.weight, "ffn_norm"),
                         weight_of(layer.feed_forward.w1.weight, "feed_forward.w1"),
                         weight_of(layer.feed_forward.w3.weight, "feed_forward.w3"),
                         weight_of(layer.feed_forward.w2.weight, "feed_forward.w2")});
    norm_ = weight_of(model_.norm.weight, "norm");
    output_ = weight_of(model_.output.weight, "output");
    rope_ = weight_of(model_.freqs_cis, "freqs_cis");
    MENTOR_CHECK(model_.freqs_cis.size(0) >= capacity_, "CpuDecoder: the rotary table has ",
                 model_.freqs_cis.size(0), " rows for ", capacity_, " positions");
    if (!config_.is_c2i()) {
      const auto& embedder = model_.caption_embedder();
      cap_fc1_ = weight_of(embedder.cap_proj.fc1.weight, "cls_embedding.cap_proj.fc1");
      cap_fc2_ = weight_of(embedder.cap_proj.fc2.weight, "cls_embedding.cap_proj.fc2");
    }
  }

  void begin(int64_t rows) {
    MENTOR_CHECK(rows > 0 && rows <= max_rows_, "CpuDecoder: ", rows, " rows outside [1, max_rows ",
                 max_rows_, "]");
    rows_ = rows;
    position_ = 0;
  }

  void run_prefix(int64_t rows) {
    if (config_.is_c2i())
      std::fill(prefix_valid_.begin(), prefix_valid_.begin() + rows * prefix_, 1);
    run_layers(rows, 0, prefix_);
    // The logits of the prefix's last position: the first image token's distribution.
    for (int64_t r = 0; r < rows; ++r)
      std::copy_n(x_.data() + (r * prefix_ + prefix_ - 1) * dim_, dim_, x_.data() + r * dim_);
    head();
    position_ = prefix_;
  }

  // x_ holds rows × seq token states at positions [start, start + seq) (row-major by row, then
  // position); runs every block over them, filling the caches.
  void run_layers(int64_t rows, int64_t start, int64_t seq) {
    const int64_t n = rows * seq;
    for (size_t l = 0; l < layers_.size(); ++l) {
      const LayerWeights& w = layers_[l];
      cpu::rms_norm_forward(x_.data(), w.attention_norm, normed_.data(), n, dim_, config_.norm_eps);
      cpu_decode::linear_rows(normed_.data(), n, dim_, w.wqkv, qkv_width_, qkv_.data(), false);
      rotate_and_cache(rows, start, seq, k_cache_[l].data(), v_cache_[l].data());
      attend(rows, start, seq, k_cache_[l].data(), v_cache_[l].data());
      cpu_decode::linear_rows(attended_.data(), n, heads_ * head_dim_, w.wo, dim_, x_.data(), true);
      cpu::rms_norm_forward(x_.data(), w.ffn_norm, normed_.data(), n, dim_, config_.norm_eps);
      cpu_decode::linear_rows(normed_.data(), n, dim_, w.w1, hidden_, gate_.data(), false);
      cpu_decode::linear_rows(normed_.data(), n, dim_, w.w3, hidden_, up_.data(), false);
      for (int64_t i = 0; i < n * hidden_; ++i) {
        const size_t k = static_cast<size_t>(i);
        gate_[k] = math::unary_value<UnaryOp::Silu, cpu::UnaryMath>(gate_[k], 0.0f) * up_[k];
      }
      cpu_decode::linear_rows(gate_.data(), n, hidden_, w.w2, dim_, x_.data(), true);
    }
  }

  // q and k of each token rotated by its position's table row (in place in qkv_); k and v written
  // to the caches [rows, kv_heads, capacity, head_dim].
  void rotate_and_cache(int64_t rows, int64_t start, int64_t seq, float* k_cache, float* v_cache) {
    const int64_t half = head_dim_ / 2;
    for (int64_t r = 0; r < rows; ++r)
      for (int64_t s = 0; s < seq; ++s) {
        float* token = qkv_.data() + (r * seq + s) * qkv_width_;
        const float* rot = rope_ + (start + s) * half * 2;
        for (int64_t h = 0; h < heads_ + kv_heads_; ++h) {
          float* v = token + h * head_dim_;
          for (int64_t j = 0; j < half; ++j) {
            const float c = rot[2 * j], sn = rot[2 * j + 1];
            const float x0 = v[2 * j], x1 = v[2 * j + 1];
            v[2 * j] = x0 * c - x1 * sn;
            v[2 * j + 1] = x1 * c + x0 * sn;
          }
        }
        for (int64_t h = 0; h < kv_heads_; ++h) {
          const int64_t slot = ((r * kv_heads_ + h) * capacity_ + start + s) * head_dim_;
          std::copy_n(token + (heads_ + h) * head_dim_, head_dim_, k_cache + slot);
          std::copy_n(token + (heads_ + kv_heads_ + h) * head_dim_, head_dim_, v_cache + slot);
        }
      }
  }

  // Each query at position p attends to the cached positions t <= p that are image tokens, real
  // prefix tokens, or p itself (a padded prefix slot attends to itself only).
  void attend(int64_t rows, int64_t start, int64_t seq, const float* k_cache,
              const float* v_cache) {
    const int64_t group = heads_ / kv_heads_;
    const float scale = 1.0f / std::sqrt(static_cast<float>(head_dim_));
    const int64_t work = std::max<int64_t>(seq * (start + seq) * head_dim_ * 2, 1);  // per pair
    cpu::parallel_for(
        rows * heads_, std::max<int64_t>(1, cpu_decode::kMinMultiplyAddsPerThread / work),
        [&](int64_t p0, int64_t p1) {
          for (int64_t pair = p0; pair < p1; ++pair) {
            const int64_t r = pair / heads_, h = pair % heads_, kvh = h / group;
            const float* keys = k_cache + (r * kv_heads_ + kvh) * capacity_ * head_dim_;
            const float* values = v_cache + (r * kv_heads_ + kvh) * capacity_ * head_dim_;
            const uint8_t* valid = prefix_valid_.data() + r * prefix_;
            float* score = scores_.data() + pair * capacity_;
            for (int64_t s = 0; s < seq; ++s) {
              const int64_t p = start + s;
              const float* q = qkv_.data() + (r * seq + s) * qkv_width_ + h * head_dim_;
              float top = -std::numeric_limits<float>::infinity();
              for (int64_t t = 0; t <= p; ++t) {
                const bool on = t >= prefix_ || valid[t] || t == p;
                score[t] = on ? cpu::row_dot(q, keys + t * head_dim_, head_dim_) * scale
                              : -std::numeric_limits<float>::infinity();
                top = std::max(top, score[t]);
              }
              float total = 0.0f;
              for (int64_t t = 0; t <= p; ++t) {
                score[t] = cpu::exp_vectorizable(score[t] - top);
                total += score[t];
              }
              float* out = attended_.data() + (r * seq + s) * heads_ * head_dim_ + h * head_dim_;
              std::fill_n(out, head_dim_, 0.0f);
              for (int64_t t = 0; t <= p; ++t) {
                const float weight = score[t] / total;
                const float* v = values + t * head_dim_;
                for (int64_t d = 0; d < head_dim_; ++d) out[d] += weight * v[d];
              }
            }
          }
        });
  }

  // logits_ [rows, vocab] from the first rows_ token states of x_.
  void head() {
    cpu::rms_norm_forward(x_.data(), norm_, last_.data(), rows_, dim_, config_.norm_eps);
    cpu_decode::linear_rows(last_.data(), rows_, dim_, output_, vocab_, logits_.data(), false);
  }

  const Model& model_;
  models::GPTConfig config_;
  int64_t max_rows_ = 0, rows_ = 0, position_ = 0;
  int64_t dim_ = 0, heads_ = 0, kv_heads_ = 0, head_dim_ = 0, hidden_ = 0, vocab_ = 0;
  int64_t prefix_ = 0, capacity_ = 0, qkv_width_ = 0;
  std::vector<LayerWeights> layers_;
  const float *norm_ = nullptr, *output_ = nullptr, *rope_ = nullptr;
  const float *cap_fc1_ = nullptr, *cap_fc2_ = nullptr;
  std::vector<float> x_, normed_, qkv_, attended_, gate_, up_, scores_, last_, logits_, caption_;
  std::vector<uint8_t> prefix_valid_;
  std::vector<std::vector<float>> k_cache_, v_cache_;
};

}  // namespace mentor::generate
