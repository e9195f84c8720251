#pragma once
// LlamaGen's VQ image tokenizer (VQ-16 / VQ-8; upstream tokenizer/tokenizer_image/vq_model.py,
// identical in MENTOR): a convolutional encoder, a vector quantizer with an l2-normalised codebook,
// and a convolutional decoder. Parameters and buffers carry upstream's state_dict names
// (`encoder.conv_blocks.1.attn.0.q.weight`, `quantize.embedding.weight`, ...) so checkpoints load
// by name.
//
// Structure (L = number of resolution levels = len(ch_mult)):
//   encoder: conv_in 3x3 -> per level i: num_res_blocks ResnetBlocks (ch*in_mult[i] ->
//            ch*ch_mult[i], in_mult = (1, ch_mult...)), an AttnBlock after each of them at the
//            last level only, Downsample after every level but the last -> mid (Res, Attn, Res) ->
//            GN -> swish -> conv_out 3x3 to z_channels.
//   quant_conv 1x1 z_channels -> codebook_embed_dim; quantize; post_quant_conv 1x1 back.
//   decoder: conv_in 3x3 z_channels -> ch*ch_mult[L-1] -> mid (Res, Attn, Res) -> per level in
//            reverse (conv_blocks.0 is the lowest resolution): num_res_blocks + 1 ResnetBlocks, an
//            AttnBlock after each at the lowest level only, Upsample after every level but the
//            last -> GN -> swish -> conv_out 3x3 to 3 channels.
// Every norm is GroupNorm(32 groups, eps 1e-6, affine): with 32 channels (the fixture's ch) the
// groups hold one channel each, as upstream's Normalize() does.
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <optional>
#include <set>
#include <string>
#include <type_traits>
#include <utility>
#include <vector>

#include "mentor/core/tensor.hpp"
#include "mentor/models/vq_config.hpp"
#include "mentor/nn/layers.hpp"
#include "mentor/nn/module.hpp"
#include "mentor/ops/conv.hpp"
#include "mentor/ops/dropout.hpp"
#include "mentor/ops/elementwise.hpp"
#include "mentor/ops/embedding.hpp"
#include "mentor/ops/loss.hpp"
#include "mentor/ops/matmul.hpp"
#include "mentor/ops/normalize.hpp"
#include "mentor/ops/reduce.hpp"
#include "mentor/ops/softmax.hpp"
#include "mentor/ops/unary.hpp"

namespace mentor::models {

// ---- building blocks ----------------------------------------------------------------------------

// x * sigmoid(x): upstream's `nonlinearity`.
template <FloatingElement T, class D>
Tensor<T, D> vq_swish(const Tensor<T, D>& x) {
  return silu(x);
}

// GN -> swish -> conv3x3 -> GN -> swish -> dropout -> conv3x3, plus x (through a 1x1 nin_shortcut
// when the channel count changes).
template <FloatingElement T, class D = CPU>
class VQResnetBlock : public nn::Module<T, D> {
 public:
  VQResnetBlock() = default;
  VQResnetBlock(int64_t in_channels, int64_t out_channels, const VQConfig& c, Generator& gen)
      : norm1(c.norm_groups, in_channels, c.norm_eps),
        conv1(in_channels, out_channels, 3, 1, 1, gen),
        norm2(c.norm_groups, out_channels, c.norm_eps),
        conv2(out_channels, out_channels, 3, 1, 1, gen),
        dropout_p(c.dropout_p) {
    if (in_channels != out_channels)
      nin_shortcut = nn::Conv2d<T, D>(in_channels, out_channels, 1, 1, 0, gen);
  }

  Tensor<T, D> operator()(const Tensor<T, D>& x, Generator* dropout_gen) const {
    Tensor<T, D> h = conv1(vq_swish(norm1(x)));
    h = vq_swish(norm2(h));
    if (this->training() && dropout_p > 0) {
      MENTOR_CHECK(dropout_gen != nullptr, "VQResnetBlock: dropout_p ", dropout_p,
                   " in training mode needs a Generator (pass one to forward/encode/decode)");
      h = dropout(h, dropout_p, *dropout_gen, true);
    }
    h = conv2(h);
    return (has_shortcut() ? nin_shortcut(x) : x) + h;
  }
  bool has_shortcut() const { return nin_shortcut.weight.defined(); }

  void visit(nn::Visitor<T, D>& v) override {
    v.child("norm1", norm1);
    v.child("conv1", conv1);
    v.child("norm2", norm2);
    v.child("conv2", conv2);
    if (has_shortcut()) v.child("nin_shortcut", nin_shortcut);
  }

  nn::GroupNorm<T, D> norm1;
  nn::Conv2d<T, D> conv1;
  nn::GroupNorm<T, D> norm2;
  nn::Conv2d<T, D> conv2;
  nn::Conv2d<T, D> nin_shortcut;  // undefined weight when the channels do not change
  double dropout_p = 0;
};

// Single-head self-attention over the H*W positions: GN, 1x1 q/k/v, softmax(q^T k * C^-0.5),
// values, 1x1 proj_out, residual.
template <FloatingElement T, class D = CPU>
class VQAttnBlock : public nn::Module<T, D> {
 public:
  VQAttnBlock() = default;
  VQAttnBlock(int64_t channels, const VQConfig& c, Generator& gen)
      : norm(c.norm_groups, channels, c.norm_eps),
        q(channels, channels, 1, 1, 0, gen),
        k(channels, channels, 1, 1, 0, gen),
        v(channels, channels, 1, 1, 0, gen),
        proj_out(channels, channels, 1, 1, 0, gen) {}

  Tensor<T, D> operator()(const Tensor<T, D>& x) const {
    MENTOR_CHECK_SHAPE(x.dim() == 4, "VQAttnBlock: input must be [B, C, H, W], got ",
                       x.shape().str());
    const int64_t b = x.size(0), c = x.size(1), h = x.size(2), w = x.size(3);
    Tensor<T, D> normed = norm(x);
    Tensor<T, D> queries = q(normed).reshape({b, c, h * w}).transpose(1, 2);  // [B, HW, C]
    Tensor<T, D> keys = k(normed).reshape({b, c, h * w});                     // [B, C, HW]
    Tensor<T, D> values = v(normed).reshape({b, c, h * w});                   // [B, C, HW]
    // weights[b, i, j] = softmax_j(q_i . k_j / sqrt(C)); upstream scales by int(c) ** -0.5.
    Tensor<T, D> weights =
        softmax(matmul(queries, keys) * std::pow(static_cast<double>(c), -0.5), 2);
    Tensor<T, D> attended = matmul(values, weights.transpose(1, 2)).reshape({b, c, h, w});
    return x + proj_out(attended);
  }

  void visit(nn::Visitor<T, D>& vis) override {
    vis.child("norm", norm);
    vis.child("q", q);
    vis.child("k", k);
    vis.child("v", v);
    vis.child("proj_out", proj_out);
  }

  nn::GroupNorm<T, D> norm;
  nn::Conv2d<T, D> q, k, v, proj_out;
};

// Downsample: zero pad right and bottom by one, then a 3x3 stride-2 conv (halves H and W).
// Upsample: nearest x2, then a 3x3 conv. Both keep the channel count; the conv is named `conv`.
template <FloatingElement T, class D = CPU>
class VQResample : public nn::Module<T, D> {
 public:
  enum class Kind { Down, Up };
  VQResample() = default;
  VQResample(Kind kind, int64_t channels, Generator& gen)
      : kind(kind),
        conv(channels, channels, 3, kind == Kind::Down ? 2 : 1, kind == Kind::Down ? 0 : 1, gen) {}

  Tensor<T, D> operator()(const Tensor<T, D>& x) const {
    if (kind == Kind::Down) return conv(pad2d(x, 0, 1, 0, 1));
    return conv(upsample_nearest2x(x));
  }
  void visit(nn::Visitor<T, D>& v) override { v.child("conv", conv); }

  Kind kind = Kind::Down;
  nn::Conv2d<T, D> conv;
};

// One resolution level (`conv_blocks.{i}`): ResnetBlocks `res.{j}`, optional AttnBlocks `attn.{j}`
// (one after each res block), optional `downsample` / `upsample`.
template <FloatingElement T, class D = CPU>
class VQLevel : public nn::Module<T, D> {
 public:
  VQLevel() = default;
  VQLevel(const VQLevelPlan& plan, typename VQResample<T, D>::Kind resample_kind, const VQConfig& c,
          Generator& gen) {
    int64_t in = plan.in_channels;
    for (int64_t j = 0; j < plan.res_blocks; ++j) {
      res.emplace_back(in, plan.out_channels, c, gen);
      in = plan.out_channels;
      if (plan.attention) attn.emplace_back(plan.out_channels, c, gen);
    }
    if (plan.resample) {
      resample = VQResample<T, D>(resample_kind, plan.out_channels, gen);
      has_resample = true;
    }
  }

  Tensor<T, D> operator()(Tensor<T, D> h, Generator* dropout_gen) const {
    for (size_t j = 0; j < res.size(); ++j) {
      h = res[j](h, dropout_gen);
      if (!attn.empty()) h = attn[j](h);
    }
    return has_resample ? resample(h) : h;
  }

  void visit(nn::Visitor<T, D>& v) override {
    v.children("res", res);
    v.children("attn", attn);
    if (has_resample)
      v.child(resample.kind == VQResample<T, D>::Kind::Down ? "downsample" : "upsample", resample);
  }

  std::vector<VQResnetBlock<T, D>> res;
  std::vector<VQAttnBlock<T, D>> attn;
  VQResample<T, D> resample;
  bool has_resample = false;
};

// The middle stage of both encoder and decoder: `mid.0` ResnetBlock, `mid.1` AttnBlock,
// `mid.2` ResnetBlock (an nn.ModuleList upstream).
template <FloatingElement T, class D = CPU>
class VQMid : public nn::Module<T, D> {
 public:
  VQMid() = default;
  VQMid(int64_t channels, const VQConfig& c, Generator& gen)
      : first(channels, channels, c, gen),
        attn(channels, c, gen),
        second(channels, channels, c, gen) {}
  Tensor<T, D> operator()(const Tensor<T, D>& x, Generator* dropout_gen) const {
    return second(attn(first(x, dropout_gen)), dropout_gen);
  }
  void visit(nn::Visitor<T, D>& v) override {
    v.child("0", first);
    v.child("1", attn);
    v.child("2", second);
  }

  VQResnetBlock<T, D> first;
  VQAttnBlock<T, D> attn;
  VQResnetBlock<T, D> second;
};

// Image [B, 3, H, W] -> [B, z_channels, H/f, W/f].
template <FloatingElement T, class D = CPU>
class VQEncoder : public nn::Module<T, D> {
 public:
  VQEncoder() = default;
  VQEncoder(const VQConfig& c, Generator& gen) : conv_in(c.in_channels, c.ch, 3, 1, 1, gen) {
    const auto plan = vq_encoder_plan(c);
    for (const auto& p : plan) conv_blocks.emplace_back(p, VQResample<T, D>::Kind::Down, c, gen);
    const int64_t top = plan.back().out_channels;
    mid = VQMid<T, D>(top, c, gen);
    norm_out = nn::GroupNorm<T, D>(c.norm_groups, top, c.norm_eps);
    conv_out = nn::Conv2d<T, D>(top, c.z_channels, 3, 1, 1, gen);
  }

  Tensor<T, D> operator()(const Tensor<T, D>& x, Generator* dropout_gen = nullptr) const {
    Tensor<T, D> h = conv_in(x);
    for (const auto& level : conv_blocks) h = level(h, dropout_gen);
    h = mid(h, dropout_gen);
    return conv_out(vq_swish(norm_out(h)));
  }

  void visit(nn::Visitor<T, D>& v) override {
    v.child("conv_in", conv_in);
    v.children("conv_blocks", conv_blocks);
    v.child("mid", mid);
    v.child("norm_out", norm_out);
    v.child("conv_out", conv_out);
  }

  nn::Conv2d<T, D> conv_in;
  std::vector<VQLevel<T, D>> conv_blocks;
  VQMid<T, D> mid;
  nn::GroupNorm<T, D> norm_out;
  nn::Conv2d<T, D> conv_out;
};

// [B, z_channels, h, w] -> image [B, 3, h*f, w*f] (values roughly in [-1, 1]; not clamped).
template <FloatingElement T, class D = CPU>
class VQDecoder : public nn::Module<T, D> {
 public:
  VQDecoder() = default;
  VQDecoder(const VQConfig& c, Generator& gen) {
    const auto plan = vq_decoder_plan(c);
    const int64_t top = plan.front().in_channels;
    conv_in = nn::Conv2d<T, D>(c.z_channels, top, 3, 1, 1, gen);
    mid = VQMid<T, D>(top, c, gen);
    for (const auto& p : plan) conv_blocks.emplace_back(p, VQResample<T, D>::Kind::Up, c, gen);
    norm_out = nn::GroupNorm<T, D>(c.norm_groups, plan.back().out_channels, c.norm_eps);
    conv_out = nn::Conv2d<T, D>(plan.back().out_channels, c.out_channels, 3, 1, 1, gen);
  }

  Tensor<T, D> operator()(const Tensor<T, D>& z, Generator* dropout_gen = nullptr) const {
    Tensor<T, D> h = mid(conv_in(z), dropout_gen);
    for (const auto& level : conv_blocks) h = level(h, dropout_gen);
    return conv_out(vq_swish(norm_out(h)));
  }

  void visit(nn::Visitor<T, D>& v) override {
    v.child("conv_in", conv_in);
    v.child("mid", mid);
    v.children("conv_blocks", conv_blocks);
    v.child("norm_out", norm_out);
    v.child("conv_out", conv_out);
  }

  nn::Conv2d<T, D> conv_in;
  VQMid<T, D> mid;
  std::vector<VQLevel<T, D>> conv_blocks;
  nn::GroupNorm<T, D> norm_out;
  nn::Conv2d<T, D> conv_out;
};

// ---- vector quantizer ---------------------------------------------------------------------------

// Codebook usage over the recent-codes window (the `codebook_used` buffer).
struct CodebookUsage {
  std::vector<int64_t> histogram;  // [codebook_size]: how often each code occurs in the window
  int64_t codes_seen = 0;          // codes recorded in the window (at most its length)
  int64_t distinct = 0;            // codes occurring at least once
  double fraction_used = 0;        // distinct / codebook_size
  double perplexity = 0;           // exp(entropy of the histogram): effective number of codes
  // Upstream's `codebook_usage`: distinct values of the whole buffer / codebook_size, where the
  // buffer's unfilled zeros count as code 0 (so it can exceed fraction_used by 1/codebook_size).
  double upstream_usage = 0;
};

template <class T, class D>
struct VQQuantizeResult {
  Tensor<T, D> quant;             // [B, D, h, w]: codebook vectors, gradient straight through to z
  Tensor<int64_t, D> indices;     // [B*h*w]: nearest code per position, row-major over (b, h, w)
  Tensor<T, D> vq_loss;           // mean((z_q - sg z)^2): moves the codebook
  Tensor<T, D> commit_loss;       // beta * mean((sg z_q - z)^2): moves the encoder
  Tensor<T, D> entropy_loss;      // ratio * (sample entropy - batch entropy); undefined at ratio 0
  int64_t height = 0, width = 0;  // of the code grid
  // vq_loss + commit_loss (+ entropy_loss): upstream's quantizer contribution to the VQ objective.
  Tensor<T, D> codebook_loss() const {
    Tensor<T, D> total = vq_loss + commit_loss;
    return entropy_loss.defined() ? total + entropy_loss : total;
  }
};

// Upstream VectorQuantizer: `embedding.weight` [codebook_size, dim] and, when show_usage, the
// `codebook_used` buffer (float, as upstream: a window of the most recent code indices, newest
// at the end, updated in training mode). With l2_norm, z and the codebook are l2-normalised along
// the code dimension before the nearest-code search (squared distance = 2 - 2 cos).
template <FloatingElement T, class D = CPU>
class VQVectorQuantizer : public nn::Module<T, D> {
 public:
  VQVectorQuantizer() = default;
  VQVectorQuantizer(const VQConfig& c, Generator& gen)
      : codebook_size(c.codebook_size),
        embed_dim(c.codebook_embed_dim),
        beta(c.commit_loss_beta),
        entropy_loss_ratio(c.entropy_loss_ratio),
        entropy_temperature(c.entropy_temperature),
        l2_norm(c.codebook_l2_norm),
        show_usage(c.codebook_show_usage) {
    // Upstream init: U(-1/n, 1/n), then l2-normalised rows when l2_norm (the shape-only device
    // has no values to normalise).
    Tensor<T, D> w = nn::uniform_init<T, D>({codebook_size, embed_dim}, gen,
                                            1.0 / static_cast<double>(codebook_size));
    if constexpr (!std::is_same_v<D, ShapeOnly>)
      if (l2_norm) w = l2_normalize(w, -1);
    embedding.weight = w.detach().requires_grad_();
    if (show_usage) {
      codebook_used = Tensor<T, D>::zeros({c.codebook_usage_window});
      window_.assign(static_cast<size_t>(c.codebook_usage_window), 0);
      synced_storage_ = codebook_used.storage().get();
    }
  }

  // The codebook as used for lookup: l2-normalised rows when l2_norm (differentiable).
  Tensor<T, D> codebook() const {
    return l2_norm ? l2_normalize(embedding.weight, -1) : embedding.weight;
  }

  // z [B, dim, h, w] (quant_conv output).
  VQQuantizeResult<T, D> operator()(const Tensor<T, D>& z) {
    MENTOR_CHECK_SHAPE(z.dim() == 4 && z.size(1) == embed_dim,
                       "VQVectorQuantizer: input must be [B, ", embed_dim, ", h, w], got ",
                       z.shape().str());
    const int64_t b = z.size(0), h = z.size(2), w = z.size(3);
    Tensor<T, D> z_rows = z.permute({0, 2, 3, 1}).contiguous().view({b * h * w, embed_dim});
    if (l2_norm) z_rows = l2_normalize(z_rows, -1);
    const Tensor<T, D> book = codebook();

    VQQuantizeResult<T, D> r;
    r.height = h, r.width = w;
    const bool with_entropy = entropy_loss_ratio > 0;
    {
      // d[i, n] = |z_i|^2 + |e_n|^2 - 2 z_i . e_n, the formula upstream uses (ties resolve alike);
      // only the entropy loss differentiates through it.
      std::optional<NoGradGuard> no_grad;
      if (!with_entropy) no_grad.emplace();
      Tensor<T, D> distances =
          sum(z_rows * z_rows, 1, true) + sum(book * book, 1) - matmul(z_rows, book.t()) * 2.0;
      r.indices = argmin(distances.detach(), 1);
      if (with_entropy)
        r.entropy_loss = entropy_loss(mul_scalar(distances, -1.0)) * entropy_loss_ratio;
    }
    Tensor<T, D> z_q = embedding_lookup(book, r.indices);  // [N, dim]
    if (show_usage && this->training()) record_usage(r.indices);
    r.vq_loss = mse_loss(z_q, z_rows.detach());
    r.commit_loss = mse_loss(z_q.detach(), z_rows) * beta;
    // Straight-through: the value of z_q, the gradient of z.
    Tensor<T, D> st = z_rows + (z_q - z_rows).detach();
    r.quant = st.view({b, h, w, embed_dim}).permute({0, 3, 1, 2});
    return r;
  }

  // Codebook vectors for code ids (any shape) -> [ids..., dim] (upstream get_codebook_entry
  // without a shape).
  Tensor<T, D> codebook_entry(const Tensor<int64_t, D>& ids) const {
    return embedding_lookup(codebook(), ids);
  }
  // Codebook vectors for ids of b*h*w codes (row-major) as a [B, dim, h, w] map (upstream
  // get_codebook_entry with shape (B, dim, h, w), channel_first).
  Tensor<T, D> codebook_entry(const Tensor<int64_t, D>& ids, int64_t batch, int64_t height,
                              int64_t width) const {
    MENTOR_CHECK_SHAPE(ids.numel() == batch * height * width, "VQVectorQuantizer: ", ids.numel(),
                       " code ids (shape ", ids.shape().str(), ") for a ", batch, "x", height, "x",
                       width, " code grid");
    Tensor<T, D> rows = embedding_lookup(codebook(), ids.reshape({batch * height * width}));
    return rows.view({batch, height, width, embed_dim}).permute({0, 3, 1, 2}).contiguous();
  }

  // Statistics of the recent-codes window (what upstream logs as codebook usage).
  CodebookUsage usage() {
    MENTOR_CHECK(show_usage, "VQVectorQuantizer: usage statistics need codebook_show_usage");
    sync_window_from_buffer();
    CodebookUsage u;
    u.histogram.assign(static_cast<size_t>(codebook_size), 0);
    const size_t window = window_.size();
    u.codes_seen = filled_;
    for (size_t i = window - static_cast<size_t>(filled_); i < window; ++i) {
      const int64_t code = window_[i];
      if (code >= 0 && code < codebook_size) ++u.histogram[static_cast<size_t>(code)];
    }
    double entropy = 0;
    for (int64_t count : u.histogram) {
      if (count == 0) continue;
      ++u.distinct;
      const double p = static_cast<double>(count) / static_cast<double>(filled_);
      entropy -= p * std::log(p);
    }
    u.fraction_used = static_cast<double>(u.distinct) / static_cast<double>(codebook_size);
    u.perplexity = filled_ > 0 ? std::exp(entropy) : 0;
    std::set<int64_t> all(window_.begin(), window_.end());
    u.upstream_usage = static_cast<double>(all.size()) / static_cast<double>(codebook_size);
    return u;
  }
  // Empties the window (zeros, as a fresh upstream module).
  void reset_usage() {
    if (!show_usage) return;
    std::fill(window_.begin(), window_.end(), 0);
    filled_ = 0;
    write_window_to_buffer();
  }

  void visit(nn::Visitor<T, D>& v) override {
    v.child("embedding", embedding);
    if (show_usage) v.buffer("codebook_used", codebook_used);
  }

  nn::Embedding<T, D> embedding;  // `embedding.weight` [codebook_size, dim]
  Tensor<T, D> codebook_used;     // [window] recent code ids (float, as upstream's buffer)
  int64_t codebook_size = 0, embed_dim = 0;
  double beta = 0.25, entropy_loss_ratio = 0, entropy_temperature = 0.01;
  bool l2_norm = true, show_usage = true;

 private:
  static Tensor<T, D> embedding_lookup(const Tensor<T, D>& table, const Tensor<int64_t, D>& ids) {
    return mentor::embedding(table, ids);
  }

  // Upstream compute_entropy_loss(affinity = -d): softmax over codes at temperature t; sample
  // entropy (mean over rows) minus the entropy of the batch-averaged distribution. (Upstream adds
  // 1e-5 to the logits of its log_softmax: a constant shift, which log_softmax ignores.)
  Tensor<T, D> entropy_loss(const Tensor<T, D>& affinity) const {
    Tensor<T, D> logits = affinity * (1.0 / entropy_temperature);
    Tensor<T, D> probs = softmax(logits, -1);
    Tensor<T, D> log_probs = log_softmax(logits, -1);
    Tensor<T, D> avg_probs = mean(probs, 0);
    Tensor<T, D> avg_entropy = neg(sum(avg_probs * log(avg_probs + 1e-5)));
    Tensor<T, D> sample_entropy = neg(mean(sum(probs * log_probs, -1)));
    return sample_entropy - avg_entropy;
  }

  // Upstream: buffer[:-n] = buffer[n:]; buffer[-n:] = indices (only the newest `window` ids when
  // n exceeds the window). The exact ids live in `window_` (a bf16 buffer could not hold ids above
  // 256 exactly); the buffer mirrors them for checkpoints.
  void record_usage(const Tensor<int64_t, D>& indices) {
    sync_window_from_buffer();
    std::vector<int64_t> ids = indices.template to<CPU>().to_vector();
    const size_t window = window_.size();
    const size_t n = std::min(ids.size(), window);
    std::rotate(window_.begin(), window_.begin() + static_cast<std::ptrdiff_t>(n), window_.end());
    std::copy(ids.end() - static_cast<std::ptrdiff_t>(n), ids.end(),
              window_.end() - static_cast<std::ptrdiff_t>(n));
    filled_ = std::min<int64_t>(filled_ + static_cast<int64_t>(n), static_cast<int64_t>(window));
    write_window_to_buffer();
  }
  void write_window_to_buffer() {
    NoGradGuard no_grad;
    std::vector<float> values(window_.begin(), window_.end());
    codebook_used.copy_(Tensor<float, CPU>::from_vector(values, codebook_used.shape())
                            .template to<T>()
                            .template to<D>());
    synced_storage_ = codebook_used.storage().get();
    mirror_ = codebook_used.template to<CPU>().template to<float>().to_vector();
  }
  // A checkpoint load replaces the buffer tensor, or copies into it in place (Trainer::load):
  // whenever the buffer no longer holds what was last written, re-read the window from it.
  // Entries before the first non-zero one are taken as never filled (upstream cannot tell either).
  void sync_window_from_buffer() {
    MENTOR_CHECK_SHAPE(codebook_used.dim() == 1,
                       "VQVectorQuantizer: codebook_used must be 1-D, got ",
                       codebook_used.shape().str());
    std::vector<float> values = codebook_used.template to<CPU>().template to<float>().to_vector();
    if (codebook_used.storage().get() == synced_storage_ && values == mirror_) return;
    window_.assign(values.size(), 0);
    filled_ = 0;
    for (size_t i = 0; i < values.size(); ++i) {
      window_[i] = static_cast<int64_t>(std::llround(values[i]));
      if (filled_ == 0 && window_[i] != 0) filled_ = static_cast<int64_t>(values.size() - i);
    }
    synced_storage_ = codebook_used.storage().get();
    mirror_ = std::move(values);
  }

  std::vector<int64_t> window_;  // exact code ids, oldest first
  int64_t filled_ = 0;
  const void* synced_storage_ = nullptr;
  std::vector<float> mirror_;  // the buffer's values as last written or read
};

// ---- the tokenizer ------------------------------------------------------------------------------

template <class T, class D>
struct VQForwardResult {
  Tensor<T, D> dec;                  // reconstruction [B, 3, H, W]
  VQQuantizeResult<T, D> quantized;  // codes, quantized latents, quantizer losses
};

// Upstream VQModel. `dropout_gen` is needed only when dropout_p > 0 in training mode.
template <FloatingElement T, class D = CPU>
class VQModel : public nn::Module<T, D> {
 public:
  VQModel() = default;
  VQModel(const VQConfig& c, Generator& gen)
      : config((c.validate(), c)),
        encoder(c, gen),
        decoder(c, gen),
        quantize(c, gen),
        quant_conv(c.z_channels, c.codebook_embed_dim, 1, 1, 0, gen),
        post_quant_conv(c.codebook_embed_dim, c.z_channels, 1, 1, 0, gen) {}

  // image [B, 3, H, W] -> quantized latents, codes and quantizer losses.
  VQQuantizeResult<T, D> encode(const Tensor<T, D>& image, Generator* dropout_gen = nullptr) {
    MENTOR_CHECK_SHAPE(image.dim() == 4 && image.size(1) == config.in_channels,
                       "VQModel::encode: image must be [B, ", config.in_channels, ", H, W], got ",
                       image.shape().str());
    return quantize(quant_conv(encoder(image, dropout_gen)));
  }
  // quant [B, dim, h, w] -> image [B, 3, h*f, w*f].
  Tensor<T, D> decode(const Tensor<T, D>& quant, Generator* dropout_gen = nullptr) const {
    MENTOR_CHECK_SHAPE(quant.dim() == 4 && quant.size(1) == config.codebook_embed_dim,
                       "VQModel::decode: latents must be [B, ", config.codebook_embed_dim,
                       ", h, w], got ", quant.shape().str());
    return decoder(post_quant_conv(quant), dropout_gen);
  }
  // Code ids of a batch*height*width grid (row-major; any shape with that many ids) -> image.
  Tensor<T, D> decode_code(const Tensor<int64_t, D>& codes, int64_t batch, int64_t height,
                           int64_t width, Generator* dropout_gen = nullptr) const {
    return decode(quantize.codebook_entry(codes, batch, height, width), dropout_gen);
  }
  // Upstream's decode_code(code_b, shape=(B, dim, h, w)).
  Tensor<T, D> decode_code(const Tensor<int64_t, D>& codes, const Shape& shape) const {
    MENTOR_CHECK_SHAPE(shape.rank() == 4 && shape[1] == config.codebook_embed_dim,
                       "VQModel::decode_code: shape must be [B, ", config.codebook_embed_dim,
                       ", h, w], got ", shape.str());
    return decode_code(codes, shape[0], shape[2], shape[3]);
  }
  // encode then decode (upstream forward).
  VQForwardResult<T, D> forward(const Tensor<T, D>& image, Generator* dropout_gen = nullptr) {
    VQForwardResult<T, D> r;
    r.quantized = encode(image, dropout_gen);
    r.dec = decode(r.quantized.quant, dropout_gen);
    return r;
  }

  void visit(nn::Visitor<T, D>& v) override {
    v.child("encoder", encoder);
    v.child("decoder", decoder);
    v.child("quantize", quantize);
    v.child("quant_conv", quant_conv);
    v.child("post_quant_conv", post_quant_conv);
  }

  VQConfig config;
  VQEncoder<T, D> encoder;
  VQDecoder<T, D> decoder;
  VQVectorQuantizer<T, D> quantize;
  nn::Conv2d<T, D> quant_conv;
  nn::Conv2d<T, D> post_quant_conv;
};

// Every parameter (name as in upstream's state_dict, shape) in VQModel::named_parameters() order,
// from the module tree built on the shape-only device (nothing allocated); buffers
// (`quantize.codebook_used`) are not parameters.
inline std::vector<std::pair<std::string, Shape>> vq_parameter_shapes(const VQConfig& config) {
  return nn::parameter_shapes_of<VQModel<float, ShapeOnly>>(config);
}

inline int64_t vq_parameter_count(const VQConfig& config) {
  int64_t n = 0;
  for (const auto& [name, shape] : vq_parameter_shapes(config)) n += shape.numel();
  return n;
}

}  // namespace mentor::models
