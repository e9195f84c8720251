#pragma once
// The T5 encoder (Hugging Face transformers' T5EncoderModel, modeling_t5.py), as MENTOR uses it:
// FlanT5-XL's encoder turns the prompt (with CLIP features spliced into its <image> slots) into
// the condition sequence of the decoder.
//
// Structure (names are HF's state_dict names):
//   shared                                       Embedding(vocab, d_model); HF ties
//                                                `encoder.embed_tokens` to it (same tensor)
//   encoder.block.N.layer.0.SelfAttention.{q,k,v,o}  Linear, no bias (inner = heads * d_kv)
//   encoder.block.0.layer.0.SelfAttention.relative_attention_bias  Embedding(buckets, heads):
//                                                only block 0 has it; its bias is shared by all
//   encoder.block.N.layer.0.layer_norm           T5LayerNorm
//   encoder.block.N.layer.1.DenseReluDense.{wi_0,wi_1,wo}  gated FFN (wi / wo when not gated)
//   encoder.block.N.layer.1.layer_norm           T5LayerNorm
//   encoder.final_layer_norm                     T5LayerNorm
//
// T5 specifics: T5LayerNorm is an RMS norm without mean subtraction and without bias (computed in
// float, cast back, times weight); attention scores are NOT scaled by 1/sqrt(d_kv) (the scale is
// folded into the initialisation); the position information is a learned per-head bias indexed
// by a bucketed relative position (bidirectional in the encoder: 16 buckets per direction, 8 exact
// and 8 logarithmic up to max_distance), computed by block 0 and added, together with the padding
// mask, to every block's scores; the gated-GELU FFN is wo(gelu_new(wi_0 x) * wi_1 x) with gelu_new
// the tanh approximation. Dropout (dropout_rate) acts in training mode on the embeddings, the
// attention weights, the gated hidden, each residual branch and the final output, as HF.
#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <limits>
#include <string>
#include <utility>
#include <vector>

#include "mentor/core/error.hpp"
#include "mentor/data/masks.hpp"
#include "mentor/io/safetensors.hpp"
#include "mentor/models/t5_config.hpp"
#include "mentor/nn/layers.hpp"
#include "mentor/nn/module.hpp"
#include "mentor/nn/state_dict.hpp"
#include "mentor/ops/dropout.hpp"
#include "mentor/ops/elementwise.hpp"
#include "mentor/ops/embedding.hpp"
#include "mentor/ops/gated.hpp"
#include "mentor/ops/matmul.hpp"
#include "mentor/ops/norm.hpp"
#include "mentor/ops/softmax.hpp"
#include "mentor/ops/unary.hpp"

namespace mentor::models {

// The activation of dense_act_fn.
template <FloatingElement T, class D>
Tensor<T, D> apply_t5_activation(const Tensor<T, D>& x, T5Activation act) {
  switch (act) {
    case T5Activation::Relu:
      return relu(x);
    case T5Activation::Gelu:
      return gelu(x, GeluApprox::None);
    case T5Activation::GeluNew:
      return gelu(x, GeluApprox::Tanh);
    case T5Activation::Silu:
      return silu(x);
  }
  throw Error("apply_t5_activation: unknown activation");
}

// act(gate) · up, fused where ops/gated.hpp has the activation.
template <FloatingElement T, class D>
Tensor<T, D> apply_t5_gated(const Tensor<T, D>& gate, const Tensor<T, D>& up, T5Activation act) {
  switch (act) {
    case T5Activation::Gelu:
      return geglu(gate, up, GeluApprox::None);
    case T5Activation::GeluNew:
      return geglu(gate, up, GeluApprox::Tanh);
    case T5Activation::Silu:
      return swiglu(gate, up);
    case T5Activation::Relu:
      break;
  }
  return mul(apply_t5_activation(gate, act), up);
}

// T5's bucket of a relative position (key position - query position), as HF
// T5Attention._relative_position_bucket: with `bidirectional` half the buckets are for keys after
// the query; in each half, distances below half its size get their own bucket and larger ones
// share logarithmically wider buckets up to max_distance (beyond it: the last bucket). The
// logarithm runs in float32 with HF's operation order, so the boundaries (e.g. distance 16, 32,
// 64 with 32 buckets) fall where HF's do.
inline int64_t t5_relative_position_bucket(int64_t relative_position, bool bidirectional,
                                           int64_t num_buckets, int64_t max_distance) {
  int64_t bucket = 0;
  int64_t distance = 0;
  if (bidirectional) {
    num_buckets /= 2;
    if (relative_position > 0) bucket += num_buckets;
    distance = relative_position < 0 ? -relative_position : relative_position;
  } else {
    distance = relative_position < 0 ? -relative_position : 0;
  }
  const int64_t max_exact = num_buckets / 2;
  if (distance < max_exact) return bucket + distance;
  const float ratio = static_cast<float>(distance) / static_cast<float>(max_exact);
  const float log_range = static_cast<float>(
      std::log(static_cast<double>(max_distance) / static_cast<double>(max_exact)));
  const float scaled = std::log(ratio) / log_range * static_cast<float>(num_buckets - max_exact);
  const int64_t large =
      std::min<int64_t>(max_exact + static_cast<int64_t>(scaled), num_buckets - 1);
  return bucket + large;
}

// T5LayerNorm: x * rsqrt(mean(x^2) + eps) in float, cast back, times weight (no mean, no bias).
template <FloatingElement T, class D = CPU>
class T5LayerNorm : public nn::Module<T, D> {
 public:
  T5LayerNorm() = default;
  T5LayerNorm(int64_t dim, double eps, double init = 1.0)
      : weight(Tensor<T, D>::full({dim}, convert_element<T>(init)).requires_grad_()), eps(eps) {}
  Tensor<T, D> operator()(const Tensor<T, D>& x) const { return rms_norm(x, weight, eps); }
  void visit(nn::Visitor<T, D>& v) override { v.parameter("weight", weight); }

  Tensor<T, D> weight;
  double eps = 1e-6;
};

// Applies dropout only in training mode with p > 0 (and a generator to draw from).
template <FloatingElement T, class D>
Tensor<T, D> t5_dropout(const Tensor<T, D>& x, double p, Generator* gen, bool training) {
  if (!training || p == 0) return x;
  MENTOR_CHECK(gen != nullptr, "T5: dropout ", p, " in training mode needs a generator");
  return dropout(x, p, *gen, true);
}

template <FloatingElement T, class D = CPU>
class T5Attention : public nn::Module<T, D> {
 public:
  T5Attention() = default;
  // HF _init_weights: q ~ N(0, f (d_model d_kv)^-1/2), k and v ~ N(0, f d_model^-1/2),
  // o ~ N(0, f (heads d_kv)^-1/2), relative_attention_bias ~ N(0, f d_model^-1/2).
  T5Attention(const T5Config& c, bool has_relative_attention_bias, Generator& gen)
      : heads_(c.num_heads),
        d_kv_(c.d_kv),
        num_buckets_(c.relative_attention_num_buckets),
        max_distance_(c.relative_attention_max_distance),
        dropout_(c.dropout_rate),
        has_relative_attention_bias_(has_relative_attention_bias) {
    const double f = c.initializer_factor, d = static_cast<double>(c.d_model);
    q = nn::Linear<T, D>(c.d_model, c.inner_dim(), false, gen,
                         f * std::pow(d * static_cast<double>(c.d_kv), -0.5));
    k = nn::Linear<T, D>(c.d_model, c.inner_dim(), false, gen, f * std::pow(d, -0.5));
    v = nn::Linear<T, D>(c.d_model, c.inner_dim(), false, gen, f * std::pow(d, -0.5));
    o = nn::Linear<T, D>(c.inner_dim(), c.d_model, false, gen,
                         f * std::pow(static_cast<double>(c.inner_dim()), -0.5));
    if (has_relative_attention_bias)
      relative_attention_bias =
          nn::Embedding<T, D>(num_buckets_, heads_, gen, f * std::pow(d, -0.5));
  }

  bool has_relative_attention_bias() const { return has_relative_attention_bias_; }

  // The position bias [1, heads, q_len, k_len] (HF compute_bias, bidirectional buckets);
  // differentiable in relative_attention_bias.
  Tensor<T, D> compute_bias(int64_t query_length, int64_t key_length) const {
    MENTOR_CHECK(has_relative_attention_bias_,
                 "T5Attention: compute_bias on a layer without relative_attention_bias (only "
                 "block 0 has one)");
    std::vector<int64_t> buckets(static_cast<size_t>(query_length * key_length));
    for (int64_t i = 0; i < query_length; ++i)
      for (int64_t j = 0; j < key_length; ++j)
        buckets[static_cast<size_t>(i * key_length + j)] =
            t5_relative_position_bucket(j - i, true, num_buckets_, max_distance_);
    Tensor<int64_t, D> ids =
        Tensor<int64_t, CPU>::from_vector(buckets, Shape{query_length, key_length})
            .template to<D>();
    Tensor<T, D> values = relative_attention_bias(ids);  // [q, k, heads]
    return values.permute({2, 0, 1}).unsqueeze(0);       // [1, heads, q, k]
  }

  // x [B, S, d_model]; bias [B or 1, heads, S, S] (position bias plus the additive padding mask).
  Tensor<T, D> operator()(const Tensor<T, D>& x, const Tensor<T, D>& bias, Generator* gen,
                          bool training) const {
    const int64_t batch = x.size(0), seq = x.size(1);
    auto heads = [&](const Tensor<T, D>& t) {
      return t.view({batch, seq, heads_, d_kv_}).transpose(1, 2);  // [B, H, S, d_kv]
    };
    Tensor<T, D> qh = heads(q(x)), kh = heads(k(x)), vh = heads(v(x));
    // No 1/sqrt(d_kv): T5 folds it into the initialisation of q.
    Tensor<T, D> scores = add(matmul(qh, kh.transpose(-1, -2)), bias);  // [B, H, S, S]
    Tensor<T, D> weights = t5_dropout(softmax(scores, -1), dropout_, gen, training);
    Tensor<T, D> attended = matmul(weights, vh);  // [B, H, S, d_kv]
    return o(attended.transpose(1, 2).reshape({batch, seq, heads_ * d_kv_}));
  }

  void visit(nn::Visitor<T, D>& visitor) override {
    visitor.child("q", q);
    visitor.child("k", k);
    visitor.child("v", v);
    visitor.child("o", o);
    if (has_relative_attention_bias_)
      visitor.child("relative_attention_bias", relative_attention_bias);
  }

  nn::Linear<T, D> q, k, v, o;
  nn::Embedding<T, D> relative_attention_bias;  // [buckets, heads]; block 0 only

 private:
  int64_t heads_ = 1, d_kv_ = 1, num_buckets_ = 32, max_distance_ = 128;
  double dropout_ = 0;
  bool has_relative_attention_bias_ = false;
};

template <FloatingElement T, class D = CPU>
class T5LayerSelfAttention : public nn::Module<T, D> {
 public:
  T5LayerSelfAttention() = default;
  T5LayerSelfAttention(const T5Config& c, bool has_relative_attention_bias, Generator& gen)
      : SelfAttention(c, has_relative_attention_bias, gen),
        layer_norm(c.d_model, c.layer_norm_epsilon, c.initializer_factor),
        dropout_(c.dropout_rate) {}

  Tensor<T, D> operator()(const Tensor<T, D>& x, const Tensor<T, D>& bias, Generator* gen) const {
    const bool training = this->training();
    return add(
        x, t5_dropout(SelfAttention(layer_norm(x), bias, gen, training), dropout_, gen, training));
  }
  void visit(nn::Visitor<T, D>& v) override {
    v.child("SelfAttention", SelfAttention);
    v.child("layer_norm", layer_norm);
  }

  T5Attention<T, D> SelfAttention;  // NOLINT: HF's name
  T5LayerNorm<T, D> layer_norm;

 private:
  double dropout_ = 0;
};

// HF T5DenseGatedActDense (wi_0, wi_1, wo) or T5DenseActDense (wi, wo), under the HF attribute
// name `DenseReluDense` whatever the activation.
template <FloatingElement T, class D = CPU>
class T5DenseActDense : public nn::Module<T, D> {
 public:
  T5DenseActDense() = default;
  // HF _init_weights: wi* ~ N(0, f d_model^-1/2), wo ~ N(0, f d_ff^-1/2).
  T5DenseActDense(const T5Config& c, Generator& gen)
      : gated_(c.is_gated_act), act_(c.dense_act_fn), dropout_(c.dropout_rate) {
    const double f = c.initializer_factor;
    const double in_std = f * std::pow(static_cast<double>(c.d_model), -0.5);
    if (gated_) {
      wi_0 = nn::Linear<T, D>(c.d_model, c.d_ff, false, gen, in_std);
      wi_1 = nn::Linear<T, D>(c.d_model, c.d_ff, false, gen, in_std);
    } else {
      wi = nn::Linear<T, D>(c.d_model, c.d_ff, false, gen, in_std);
    }
    wo = nn::Linear<T, D>(c.d_ff, c.d_model, false, gen,
                          f * std::pow(static_cast<double>(c.d_ff), -0.5));
  }

  Tensor<T, D> operator()(const Tensor<T, D>& x, Generator* gen, bool training) const {
    Tensor<T, D> hidden =
        gated_ ? apply_t5_gated(wi_0(x), wi_1(x), act_) : apply_t5_activation(wi(x), act_);
    return wo(t5_dropout(hidden, dropout_, gen, training));
  }
  void visit(nn::Visitor<T, D>& v) override {
    if (gated_) {
      v.child("wi_0", wi_0);
      v.child("wi_1", wi_1);
    } else {
      v.child("wi", wi);
    }
    v.child("wo", wo);
  }

  nn::Linear<T, D> wi_0, wi_1, wi, wo;

 private:
  bool gated_ = true;
  T5Activation act_ = T5Activation::GeluNew;
  double dropout_ = 0;
};

template <FloatingElement T, class D = CPU>
class T5LayerFF : public nn::Module<T, D> {
 public:
  T5LayerFF() = default;
  T5LayerFF(const T5Config& c, Generator& gen)
      : DenseReluDense(c, gen),
        layer_norm(c.d_model, c.layer_norm_epsilon, c.initializer_factor),
        dropout_(c.dropout_rate) {}

  Tensor<T, D> operator()(const Tensor<T, D>& x, Generator* gen) const {
    const bool training = this->training();
    return add(x,
               t5_dropout(DenseReluDense(layer_norm(x), gen, training), dropout_, gen, training));
  }
  void visit(nn::Visitor<T, D>& v) override {
    v.child("DenseReluDense", DenseReluDense);
    v.child("layer_norm", layer_norm);
  }

  T5DenseActDense<T, D> DenseReluDense;  // NOLINT: HF's name
  T5LayerNorm<T, D> layer_norm;

 private:
  double dropout_ = 0;
};

// An encoder block: `layer.0` self-attention, `layer.1` feed-forward.
template <FloatingElement T, class D = CPU>
class T5Block : public nn::Module<T, D> {
 public:
  T5Block() = default;
  T5Block(const T5Config& c, bool has_relative_attention_bias, Generator& gen)
      : self_attention(c, has_relative_attention_bias, gen), feed_forward(c, gen) {}

  Tensor<T, D> operator()(const Tensor<T, D>& x, const Tensor<T, D>& bias, Generator* gen) const {
    return feed_forward(self_attention(x, bias, gen), gen);
  }
  void visit(nn::Visitor<T, D>& v) override {
    v.child("layer.0", self_attention);
    v.child("layer.1", feed_forward);
  }

  T5LayerSelfAttention<T, D> self_attention;  // layer.0
  T5LayerFF<T, D> feed_forward;               // layer.1
};

// HF T5Stack in encoder mode (its embed_tokens is the model's `shared`).
template <FloatingElement T, class D = CPU>
class T5Stack : public nn::Module<T, D> {
 public:
  T5Stack() = default;
  T5Stack(const T5Config& c, Generator& gen)
      : final_layer_norm(c.d_model, c.layer_norm_epsilon, c.initializer_factor),
        dropout_(c.dropout_rate) {
    block.reserve(static_cast<size_t>(c.num_layers));
    for (int64_t i = 0; i < c.num_layers; ++i) block.emplace_back(c, i == 0, gen);
  }

  // inputs_embeds [B, S, d_model]; attention_mask [B, S] (true = real token) or undefined (all
  // real). Padded keys get -1e30 added to their scores (HF adds the dtype's minimum: the same
  // zero weight); padded queries are computed like any other row.
  Tensor<T, D> operator()(const Tensor<T, D>& inputs_embeds, const Tensor<bool, D>& attention_mask,
                          Generator* gen) const {
    MENTOR_CHECK_SHAPE(inputs_embeds.dim() == 3, "T5Stack: inputs_embeds ",
                       inputs_embeds.shape().str(), " are not [batch, seq, d_model]");
    const int64_t batch = inputs_embeds.size(0), seq = inputs_embeds.size(1);
    const bool training = this->training();
    Tensor<T, D> h = t5_dropout(inputs_embeds, dropout_, gen, training);
    Tensor<T, D> bias = block.front().self_attention.SelfAttention.compute_bias(seq, seq);
    if (attention_mask.defined()) {
      MENTOR_CHECK_SHAPE(attention_mask.dim() == 2 && attention_mask.size(0) == batch &&
                             attention_mask.size(1) == seq,
                         "T5Stack: attention_mask ", attention_mask.shape().str(), " is not [",
                         batch, ", ", seq, "]");
      // [B, S] -> [B, 1, 1, S].
      Tensor<T, D> mask_bias = data::additive_padding_mask<T>(attention_mask.template to<CPU>())
                                   .template to<D>()
                                   .unsqueeze(1)
                                   .unsqueeze(1);
      bias = add(bias, mask_bias);  // [B, H, S, S], shared by every block as HF's position_bias
    }
    for (const auto& b : block) h = b(h, bias, gen);
    return t5_dropout(final_layer_norm(h), dropout_, gen, training);
  }

  void visit(nn::Visitor<T, D>& v) override {
    v.children("block", block);
    v.child("final_layer_norm", final_layer_norm);
  }

  std::vector<T5Block<T, D>> block;
  T5LayerNorm<T, D> final_layer_norm;

 private:
  double dropout_ = 0;
};

// HF T5EncoderModel: `shared` + `encoder`. forward gives last_hidden_state [B, S, d_model].
template <FloatingElement T, class D = CPU>
class T5EncoderModel : public nn::Module<T, D> {
 public:
  T5EncoderModel() = default;
  // HF _init_weights: shared ~ N(0, initializer_factor).
  T5EncoderModel(const T5Config& config, Generator& gen)
      : config_((config.validate(), config)),
        shared(config.vocab_size, config.d_model, gen, config.initializer_factor),
        encoder(config, gen),
        dropout_generator(gen.seed ^ 0x5DEECE66Dull) {}

  const T5Config& config() const { return config_; }

  // Token embeddings [B, S, d_model] of ids [B, S] (HF get_input_embeddings()(ids)).
  Tensor<T, D> embed(const Tensor<int64_t, D>& input_ids) const {
    MENTOR_CHECK_SHAPE(input_ids.dim() == 2, "T5EncoderModel: input_ids ", input_ids.shape().str(),
                       " are not [batch, seq]");
    return shared(input_ids);
  }
  Tensor<T, D> operator()(const Tensor<int64_t, D>& input_ids,
                          const Tensor<bool, D>& attention_mask = {}) {
    return forward_embeds(embed(input_ids), attention_mask);
  }
  // HF forward(inputs_embeds=..., attention_mask=...).
  Tensor<T, D> forward_embeds(const Tensor<T, D>& inputs_embeds,
                              const Tensor<bool, D>& attention_mask = {}) {
    MENTOR_CHECK_SHAPE(inputs_embeds.dim() == 3 && inputs_embeds.size(2) == config_.d_model,
                       "T5EncoderModel: inputs_embeds ", inputs_embeds.shape().str(),
                       " are not [batch, seq, ", config_.d_model, "]");
    return encoder(inputs_embeds, attention_mask, &dropout_generator);
  }

  void visit(nn::Visitor<T, D>& v) override {
    v.child("shared", shared);
    v.child("encoder", encoder);
    v.generator("dropout_generator", dropout_generator);
  }

 private:
  T5Config config_;

 public:
  nn::Embedding<T, D> shared;  // also HF's encoder.embed_tokens (tied)
  T5Stack<T, D> encoder;
  Generator dropout_generator;  // dropout draws in training mode (dropout_rate > 0)
};

// ---- loading with tied names --------------------------------------------------------------------

// A checkpoint key that names the same tensor as one of the module's (HF's tied weights: T5's
// `encoder.embed_tokens.weight` is `shared.weight`).
struct TiedAlias {
  std::string name;   // the module's name ("shared.weight")
  std::string alias;  // the other name a checkpoint may use ("encoder.embed_tokens.weight")
};

// load_state_dict that accepts each tied tensor under its name, its alias, or both (then they
// must hold identical values). Other keys follow `options` (strict by default).
template <class T, class D>
io::LoadReport load_state_dict_tied(nn::Module<T, D>& module, const io::SafeTensorsFile& file,
                                    const nn::LoadOptions& options,
                                    const std::vector<TiedAlias>& aliases) {
  nn::LoadOptions relaxed = options;
  relaxed.strict = false;
  for (const auto& a : aliases) relaxed.ignore.push_back(a.alias);
  io::LoadReport report = nn::load_state_dict(module, file, relaxed);
  auto state = module.state();
  for (const auto& a : aliases) {
    const std::string name_key = options.prefix + a.name, alias_key = options.prefix + a.alias;
    if (!file.contains(alias_key)) continue;
    Tensor<T, D>* target = nullptr;
    for (auto& [name, t] : state)
      if (name == a.name) target = t;
    MENTOR_CHECK(target != nullptr, "load_state_dict_tied: the module has no tensor '", a.name,
                 "' for the alias '", a.alias, "'");
    const std::vector<int64_t>& alias_shape = file.info(alias_key).shape;
    MENTOR_CHECK_SHAPE(alias_shape == target->shape().vec(), "load_state_dict_tied from ",
                       file.path(), ": ", alias_key, " has shape ",
                       io::detail::format_shape(alias_shape), " but ", a.name, " is ",
                       target->shape().str());
    if (file.contains(name_key)) {
      // Both names present: a tied pair must agree.
      MENTOR_CHECK(file.read_as<float>(name_key) == file.read_as<float>(alias_key),
                   "load_state_dict_tied from ", file.path(), ": ", name_key, " and ", alias_key,
                   " are tied but hold different values");
      continue;
    }
    NoGradGuard no_grad;
    const bool trainable = target->requires_grad();
    *target = nn::load_tensor<T, D>(file, alias_key);
    if (trainable) target->requires_grad_(true);
    std::erase(report.missing, a.name);
  }
  MENTOR_CHECK(!options.strict || (report.missing.empty() && report.unexpected.empty()),
               "load_state_dict from ", file.path(), ": ", report.summary());
  return report;
}

// Adds a module's parameters and buffers under `prefix` to a writer, in the module's element type.
// (Same as nn::add_state_dict, which does not compile at present: it passes a span<const T> to
// SafeTensorsWriter::add<T>, whose parameter is span<T>.)
template <class T, class D>
void write_state(nn::Module<T, D>& module, io::SafeTensorsWriter& writer,
                 const std::string& prefix = "") {
  for (auto& [name, t] : module.state()) {
    const Tensor<T, CPU> host = t->detach().template to<CPU>().contiguous();
    writer.add(prefix + name, host.shape().vec(), host.to_vector());
  }
}

inline std::vector<TiedAlias> t5_tied_aliases(const std::string& prefix = "") {
  return {{prefix + "shared.weight", prefix + "encoder.embed_tokens.weight"}};
}

// Loads a T5EncoderModel from HF-named tensors (under options.prefix): `shared.weight`, its tied
// alias `encoder.embed_tokens.weight`, or both.
template <class T, class D>
io::LoadReport load_t5_encoder(T5EncoderModel<T, D>& model, const io::SafeTensorsFile& file,
                               const nn::LoadOptions& options = {}) {
  return load_state_dict_tied(model, file, options, t5_tied_aliases());
}

// Every parameter of T5EncoderModel by HF name and shape in named_parameters() order, from the
// module tree built on the shape-only device (nothing allocated; the tied alias
// encoder.embed_tokens.weight is not listed).
inline std::vector<std::pair<std::string, Shape>> t5_encoder_parameter_shapes(
    const T5Config& config) {
  return nn::parameter_shapes_of<T5EncoderModel<float, ShapeOnly>>(config);
}

inline int64_t t5_encoder_parameter_count(const T5Config& config) {
  int64_t n = 0;
  for (const auto& [name, shape] : t5_encoder_parameter_shapes(config)) n += shape.numel();
  return n;
}

}  // namespace mentor::models
