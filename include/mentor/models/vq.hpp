#pragma once
// LlamaGen's VQ image tokenizer (VQ-16 / VQ-8; upstream tokenizer/tokenizer_image/vq_model.py,
// identical in MENTOR): a convolutional encoder, a vector quantizer with an l2-normalised codebook,
// and a convolutional decoder. Parameters and buffers carry upstream's state_dict names
// (`encoder.conv_blocks.1.attn.0.q.weight`, `quantize.embedding.weight`, ...) so checkpoints load
// by name.
//
// Structure (L = number of resolution levels = len(ch_mult)):
//   encoder: conv_in 3x3 -> per level i: num_res_blocks ResnetBlocks (ch*in_mult[i] ->
//   ch*ch_mult[i],
//            in_mult = (1, ch_mult...)), an AttnBlock after each of them at the last level only,
//            Downsample after every level but the last -> mid (Res, Attn, Res) -> GN -> swish ->
//            conv_out 3x3 to z_channels.
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
#include <map>
#include <optional>
#include <set>
#include <string>
#include <utility>
#include <vector>

#include <nlohmann/json.hpp>

#include "mentor/core/tensor.hpp"
#include "mentor/io/json_config.hpp"
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

// ---- configuration ------------------------------------------------------------------------------

// Upstream's ModelArgs plus the Encoder/Decoder constructor defaults (ch 128, 2 residual blocks,
// GroupNorm 32), which upstream's VQModel does not expose but the fixtures vary.
struct VQConfig {
  int64_t in_channels = 3;
  int64_t out_channels = 3;
  int64_t ch = 128;  // base channels
  std::vector<int64_t> encoder_ch_mult{1, 1, 2, 2, 4};
  std::vector<int64_t> decoder_ch_mult{1, 1, 2, 2, 4};
  int64_t num_res_blocks = 2;  // per encoder level (the decoder has one more per level)
  int64_t z_channels = 256;
  int64_t codebook_size = 16384;
  int64_t codebook_embed_dim = 8;
  bool codebook_l2_norm = true;
  bool codebook_show_usage = true;        // keep the `codebook_used` buffer of recent codes
  int64_t codebook_usage_window = 65536;  // length of that buffer (upstream hard-codes 65536)
  double commit_loss_beta = 0.25;
  double entropy_loss_ratio = 0.0;
  double entropy_temperature = 0.01;  // upstream compute_entropy_loss default
  double dropout_p = 0.0;             // inside every ResnetBlock
  int64_t norm_groups = 32;
  double norm_eps = 1e-6;

  // Upstream VQ_16 (ds16: 256px -> 16x16 codes): ~71.9M parameters.
  static VQConfig vq_16() { return VQConfig{}; }
  // Upstream VQ_8 (ds8): ch_mult (1, 2, 2, 4), ~70.1M parameters.
  static VQConfig vq_8() {
    VQConfig c;
    c.encoder_ch_mult = c.decoder_ch_mult = {1, 2, 2, 4};
    return c;
  }
  // "VQ-16" / "VQ_16" / "VQ-8" / "VQ_8".
  static VQConfig preset(const std::string& name) {
    if (name == "VQ-16" || name == "VQ_16") return vq_16();
    if (name == "VQ-8" || name == "VQ_8") return vq_8();
    throw Error(mentor::detail::concat("VQConfig: unknown preset '", name, "' (known: VQ-16, VQ-8)"));
  }

  // A configs.json entry (e.g. the fixture's llamagen_vq): keys named as in upstream; `ch_mult`
  // sets both encoder and decoder multipliers (an explicit encoder_ch_mult / decoder_ch_mult wins).
  // Any other key is an error; `path` places the object inside an enclosing config.
  static VQConfig from_json(const nlohmann::json& j, const std::string& path = {}) {
    io::JsonConfigReader r(j, "VQConfig", path);
    VQConfig c;
    if (r.read("ch_mult", c.encoder_ch_mult)) c.decoder_ch_mult = c.encoder_ch_mult;
    r.read("in_channels", c.in_channels);
    r.read("out_channels", c.out_channels);
    r.read("ch", c.ch);
    r.read("encoder_ch_mult", c.encoder_ch_mult);
    r.read("decoder_ch_mult", c.decoder_ch_mult);
    r.read("num_res_blocks", c.num_res_blocks);
    r.read("z_channels", c.z_channels);
    r.read("codebook_size", c.codebook_size);
    r.read("codebook_embed_dim", c.codebook_embed_dim);
    r.read("codebook_l2_norm", c.codebook_l2_norm);
    r.read("codebook_show_usage", c.codebook_show_usage);
    r.read("codebook_usage_window", c.codebook_usage_window);
    r.read("commit_loss_beta", c.commit_loss_beta);
    r.read("entropy_loss_ratio", c.entropy_loss_ratio);
    r.read("entropy_temperature", c.entropy_temperature);
    r.read("dropout_p", c.dropout_p);
    r.read("norm_groups", c.norm_groups);
    r.read("norm_eps", c.norm_eps);
    r.finish();
    c.validate();
    return c;
  }

  // Every field, under the keys from_json reads (both multiplier lists explicitly).
  nlohmann::json to_json() const {
    return {{"in_channels", in_channels},
            {"out_channels", out_channels},
            {"ch", ch},
            {"encoder_ch_mult", encoder_ch_mult},
            {"decoder_ch_mult", decoder_ch_mult},
            {"num_res_blocks", num_res_blocks},
            {"z_channels", z_channels},
            {"codebook_size", codebook_size},
            {"codebook_embed_dim", codebook_embed_dim},
            {"codebook_l2_norm", codebook_l2_norm},
            {"codebook_show_usage", codebook_show_usage},
            {"codebook_usage_window", codebook_usage_window},
            {"commit_loss_beta", commit_loss_beta},
            {"entropy_loss_ratio", entropy_loss_ratio},
            {"entropy_temperature", entropy_temperature},
            {"dropout_p", dropout_p},
            {"norm_groups", norm_groups},
            {"norm_eps", norm_eps}};
  }

  // Spatial reduction of the encoder: 2^(levels - 1) (16 for VQ-16, 8 for VQ-8).
  int64_t downsample_factor() const {
    return int64_t{1} << (static_cast<int64_t>(encoder_ch_mult.size()) - 1);
  }

  void validate() const {
    // Bounds and non-zero divisors first: the checks below divide by norm_groups and multiply
    // channel counts.
    MENTOR_CHECK(norm_groups > 0 && norm_groups <= io::kMaxConfigSize, "VQConfig: norm_groups ",
                 norm_groups, " must lie in [1, ", io::kMaxConfigSize, "]");
    for (auto [name, size] : {std::pair{"in_channels", in_channels},
                              {"out_channels", out_channels},
                              {"ch", ch},
                              {"z_channels", z_channels},
                              {"codebook_size", codebook_size},
                              {"codebook_embed_dim", codebook_embed_dim},
                              {"codebook_usage_window", codebook_usage_window}})
      MENTOR_CHECK(size <= io::kMaxConfigSize, "VQConfig: ", name, " ", size, " is more than ",
                   io::kMaxConfigSize);
    MENTOR_CHECK(num_res_blocks <= io::kMaxConfigLayers, "VQConfig: num_res_blocks ",
                 num_res_blocks, " is more than ", io::kMaxConfigLayers);
    auto check_mult = [&](const std::vector<int64_t>& mult, const char* name) {
      MENTOR_CHECK(!mult.empty(), "VQConfig: ", name, " is empty");
      MENTOR_CHECK(mult.size() <= 16, "VQConfig: ", name, " has ", mult.size(),
                   " levels (at most 16: the encoder halves the image at every level)");
      for (int64_t m : mult) {
        MENTOR_CHECK(m > 0, "VQConfig: ", name, " has a non-positive multiplier ", m);
        MENTOR_CHECK(m <= io::kMaxConfigSize, "VQConfig: ", name, " multiplier ", m,
                     " is more than ", io::kMaxConfigSize);
        int64_t channels = 0;
        MENTOR_CHECK(!__builtin_mul_overflow(ch, m, &channels) && channels <= io::kMaxConfigSize,
                     "VQConfig: ", name, " multiplier ", m, " times ch ", ch, " is more than ",
                     io::kMaxConfigSize, " channels");
        MENTOR_CHECK(channels % norm_groups == 0, "VQConfig: ", name, " multiplier ", m, " gives ",
                     channels, " channels, not divisible by ", norm_groups, " GroupNorm groups");
      }
    };
    MENTOR_CHECK(ch > 0 && ch % norm_groups == 0, "VQConfig: ch ", ch,
                 " must be a positive multiple of the ", norm_groups, " GroupNorm groups");
    check_mult(encoder_ch_mult, "encoder_ch_mult");
    check_mult(decoder_ch_mult, "decoder_ch_mult");
    MENTOR_CHECK(in_channels > 0 && out_channels > 0, "VQConfig: in_channels ", in_channels,
                 " and out_channels ", out_channels, " must be positive");
    MENTOR_CHECK(num_res_blocks > 0, "VQConfig: num_res_blocks ", num_res_blocks,
                 " must be positive");
    MENTOR_CHECK(z_channels > 0, "VQConfig: z_channels ", z_channels, " must be positive");
    MENTOR_CHECK(codebook_size > 0 && codebook_embed_dim > 0, "VQConfig: codebook ", codebook_size,
                 "x", codebook_embed_dim, " must have positive sizes");
    MENTOR_CHECK(!codebook_show_usage || codebook_usage_window > 0,
                 "VQConfig: codebook_usage_window ", codebook_usage_window, " must be positive");
    MENTOR_CHECK(commit_loss_beta >= 0 && std::isfinite(commit_loss_beta),
                 "VQConfig: commit_loss_beta ", commit_loss_beta, " must be non-negative");
    MENTOR_CHECK(entropy_loss_ratio >= 0 && std::isfinite(entropy_loss_ratio) &&
                     entropy_temperature > 0 && std::isfinite(entropy_temperature),
                 "VQConfig: entropy_loss_ratio ", entropy_loss_ratio, " and temperature ",
                 entropy_temperature, " out of range");
    MENTOR_CHECK(dropout_p >= 0 && dropout_p < 1, "VQConfig: dropout_p ", dropout_p,
                 " must be in [0, 1)");
    MENTOR_CHECK(norm_eps > 0 && std::isfinite(norm_eps), "VQConfig: norm_eps ", norm_eps,
                 " must be positive");
    (void)parameter_count();
  }

  // The parameters' element count in closed form (vq_parameter_shapes lists them); an int64
  // overflow is an error. Defined after the level plans.
  int64_t parameter_count() const;
};

// One resolution level of the encoder or decoder (upstream's `conv_blocks.{i}`), derived from the
// config in one place so that the modules and parameter_shapes() agree.
struct VQLevelPlan {
  int64_t in_channels = 0;   // into the first ResnetBlock
  int64_t out_channels = 0;  // of every ResnetBlock (and the level)
  int64_t res_blocks = 0;
  bool attention = false;  // an AttnBlock after every ResnetBlock
  bool resample = false;   // Downsample (encoder) / Upsample (decoder) at the end
};

inline std::vector<VQLevelPlan> vq_encoder_plan(const VQConfig& c) {
  const auto& mult = c.encoder_ch_mult;
  const size_t levels = mult.size();
  std::vector<VQLevelPlan> plan;
  for (size_t i = 0; i < levels; ++i) {
    VQLevelPlan p;
    p.in_channels = c.ch * (i == 0 ? 1 : mult[i - 1]);
    p.out_channels = c.ch * mult[i];
    p.res_blocks = c.num_res_blocks;
    p.attention = i + 1 == levels;
    p.resample = i + 1 != levels;
    plan.push_back(p);
  }
  return plan;
}

// conv_blocks.0 is the lowest resolution (upstream iterates its levels in reverse).
inline std::vector<VQLevelPlan> vq_decoder_plan(const VQConfig& c) {
  const auto& mult = c.decoder_ch_mult;
  const size_t levels = mult.size();
  std::vector<VQLevelPlan> plan;
  int64_t block_in = c.ch * mult.back();
  for (size_t b = 0; b < levels; ++b) {
    const size_t level = levels - 1 - b;
    VQLevelPlan p;
    p.in_channels = block_in;
    p.out_channels = c.ch * mult[level];
    p.res_blocks = c.num_res_blocks + 1;
    p.attention = b == 0;
    p.resample = level != 0;
    block_in = p.out_channels;
    plan.push_back(p);
  }
  return plan;
}

inline int64_t VQConfig::parameter_count() const {
  io::CheckedCount n(mentor::detail::concat("VQConfig: the parameter count (ch ", ch,
                                            ", z_channels ", z_channels, ", codebook ",
                                            codebook_size, "x", codebook_embed_dim, ")"));
  // Each helper adds one module's parameters, as detail::vq's shape lists.
  const auto conv = [&](int64_t in, int64_t out, int64_t k) { n.add({out, in, k, k}).add({out}); };
  const auto norm = [&](int64_t channels) { n.add({2, channels}); };
  const auto resnet = [&](int64_t in, int64_t out) {
    norm(in);
    conv(in, out, 3);
    norm(out);
    conv(out, out, 3);
    if (in != out) conv(in, out, 1);
  };
  const auto attn = [&](int64_t channels) {
    norm(channels);
    for (int i = 0; i < 4; ++i) conv(channels, channels, 1);
  };
  const auto level = [&](const VQLevelPlan& p) {
    resnet(p.in_channels, p.out_channels);
    if (p.res_blocks > 1) {  // the other ResnetBlocks are alike: count one, add the rest at once
      const int64_t start = n.total();
      resnet(p.out_channels, p.out_channels);
      n.add({n.total() - start, p.res_blocks - 2});
    }
    if (p.attention) {
      const int64_t start = n.total();
      attn(p.out_channels);
      n.add({n.total() - start, p.res_blocks - 1});
    }
    if (p.resample) conv(p.out_channels, p.out_channels, 3);
  };
  const auto mid = [&](int64_t channels) {
    resnet(channels, channels);
    attn(channels);
    resnet(channels, channels);
  };
  const auto enc = vq_encoder_plan(*this);
  conv(in_channels, ch, 3);
  for (const auto& p : enc) level(p);
  mid(enc.back().out_channels);
  norm(enc.back().out_channels);
  conv(enc.back().out_channels, z_channels, 3);
  const auto dec = vq_decoder_plan(*this);
  conv(z_channels, dec.front().in_channels, 3);
  mid(dec.front().in_channels);
  for (const auto& p : dec) level(p);
  norm(dec.back().out_channels);
  conv(dec.back().out_channels, out_channels, 3);
  n.add({codebook_size, codebook_embed_dim});
  conv(z_channels, codebook_embed_dim, 1);
  conv(codebook_embed_dim, z_channels, 1);
  return n.total();
}

// ---- parameter shapes without building the model ------------------------------------------------

using VQShapeList = std::vector<std::pair<std::string, Shape>>;

namespace detail::vq {
inline void conv_shapes(VQShapeList& out, const std::string& name, int64_t in, int64_t o,
                        int64_t k) {
  out.emplace_back(name + ".weight", Shape{o, in, k, k});
  out.emplace_back(name + ".bias", Shape{o});
}
inline void norm_shapes(VQShapeList& out, const std::string& name, int64_t c) {
  out.emplace_back(name + ".weight", Shape{c});
  out.emplace_back(name + ".bias", Shape{c});
}
inline void resnet_shapes(VQShapeList& out, const std::string& name, int64_t in, int64_t o) {
  norm_shapes(out, name + ".norm1", in);
  conv_shapes(out, name + ".conv1", in, o, 3);
  norm_shapes(out, name + ".norm2", o);
  conv_shapes(out, name + ".conv2", o, o, 3);
  if (in != o) conv_shapes(out, name + ".nin_shortcut", in, o, 1);
}
inline void attn_shapes(VQShapeList& out, const std::string& name, int64_t c) {
  norm_shapes(out, name + ".norm", c);
  for (const char* part : {".q", ".k", ".v", ".proj_out"}) conv_shapes(out, name + part, c, c, 1);
}
inline void level_shapes(VQShapeList& out, const std::string& name, const VQLevelPlan& p,
                         const char* resample_name) {
  int64_t in = p.in_channels;
  for (int64_t j = 0; j < p.res_blocks; ++j) {
    resnet_shapes(out, name + ".res." + std::to_string(j), in, p.out_channels);
    in = p.out_channels;
  }
  if (p.attention)
    for (int64_t j = 0; j < p.res_blocks; ++j)
      attn_shapes(out, name + ".attn." + std::to_string(j), p.out_channels);
  if (p.resample)
    conv_shapes(out, name + "." + resample_name + ".conv", p.out_channels, p.out_channels, 3);
}
inline void mid_shapes(VQShapeList& out, const std::string& name, int64_t c) {
  resnet_shapes(out, name + ".0", c, c);
  attn_shapes(out, name + ".1", c);
  resnet_shapes(out, name + ".2", c, c);
}
}  // namespace detail::vq

// Every parameter (name as in upstream's state_dict, shape), in the order the model visits them;
// buffers (`quantize.codebook_used`) are not parameters. Costs nothing: no tensor is allocated.
inline VQShapeList vq_parameter_shapes(const VQConfig& c) {
  using namespace detail::vq;
  c.validate();
  VQShapeList out;
  const auto enc = vq_encoder_plan(c);
  conv_shapes(out, "encoder.conv_in", c.in_channels, c.ch, 3);
  for (size_t i = 0; i < enc.size(); ++i)
    level_shapes(out, "encoder.conv_blocks." + std::to_string(i), enc[i], "downsample");
  const int64_t enc_top = enc.back().out_channels;
  mid_shapes(out, "encoder.mid", enc_top);
  norm_shapes(out, "encoder.norm_out", enc_top);
  conv_shapes(out, "encoder.conv_out", enc_top, c.z_channels, 3);

  const auto dec = vq_decoder_plan(c);
  const int64_t dec_top = dec.front().in_channels;
  conv_shapes(out, "decoder.conv_in", c.z_channels, dec_top, 3);
  mid_shapes(out, "decoder.mid", dec_top);
  for (size_t i = 0; i < dec.size(); ++i)
    level_shapes(out, "decoder.conv_blocks." + std::to_string(i), dec[i], "upsample");
  norm_shapes(out, "decoder.norm_out", dec.back().out_channels);
  conv_shapes(out, "decoder.conv_out", dec.back().out_channels, c.out_channels, 3);

  out.emplace_back("quantize.embedding.weight", Shape{c.codebook_size, c.codebook_embed_dim});
  conv_shapes(out, "quant_conv", c.z_channels, c.codebook_embed_dim, 1);
  conv_shapes(out, "post_quant_conv", c.codebook_embed_dim, c.z_channels, 1);
  return out;
}

inline int64_t vq_parameter_count(const VQConfig& c) {
  int64_t n = 0;
  for (const auto& [name, shape] : vq_parameter_shapes(c)) n += shape.numel();
  return n;
}

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
    // Upstream init: U(-1/n, 1/n), then l2-normalised rows when l2_norm.
    Tensor<T, D> w = nn::uniform_init<T, D>({codebook_size, embed_dim}, gen,
                                            1.0 / static_cast<double>(codebook_size));
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
  }
  // A checkpoint load replaces the buffer tensor: re-read the window from it. Entries before the
  // first non-zero one are taken as never filled (upstream cannot tell either).
  void sync_window_from_buffer() {
    if (codebook_used.storage().get() == synced_storage_) return;
    MENTOR_CHECK_SHAPE(codebook_used.dim() == 1,
                       "VQVectorQuantizer: codebook_used must be 1-D, got ",
                       codebook_used.shape().str());
    std::vector<float> values = codebook_used.template to<CPU>().template to<float>().to_vector();
    window_.assign(values.size(), 0);
    filled_ = 0;
    for (size_t i = 0; i < values.size(); ++i) {
      window_[i] = static_cast<int64_t>(std::llround(values[i]));
      if (filled_ == 0 && window_[i] != 0) filled_ = static_cast<int64_t>(values.size() - i);
    }
    synced_storage_ = codebook_used.storage().get();
  }

  std::vector<int64_t> window_;  // exact code ids, oldest first
  int64_t filled_ = 0;
  const void* synced_storage_ = nullptr;
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

}  // namespace mentor::models
