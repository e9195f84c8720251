#pragma once
// The configuration of LlamaGen's VQ image tokenizer (models/vq.hpp): upstream's ModelArgs plus
// the Encoder/Decoder constructor defaults, the VQ-16 / VQ-8 presets, strict JSON reading and
// writing, and the resolution levels the encoder and decoder are built from.
#include <cmath>
#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include <nlohmann/json.hpp>

#include "mentor/core/error.hpp"
#include "mentor/io/json_config.hpp"

namespace mentor::models {

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
    throw Error(
        mentor::detail::concat("VQConfig: unknown preset '", name, "' (known: VQ-16, VQ-8)"));
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

  // The parameters' element count in closed form, so that validate() rejects a config whose model
  // could not be counted (an int64 overflow) before anything is built; the module tree itself
  // (vq_parameter_count) is the reference it is tested against. Defined after the level plans.
  int64_t parameter_count() const;
};

// One resolution level of the encoder or decoder (upstream's `conv_blocks.{i}`), derived from the
// config in one place so that the modules and parameter_count() agree.
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
  // Each helper adds one module's parameters.
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

}  // namespace mentor::models
