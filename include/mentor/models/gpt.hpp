#pragma once
// The LlamaGen GPT family (autoregressive/models/gpt.py upstream; MENTOR's decoder is GPT-XL in
// text-conditional mode): a Llama decoder over [condition tokens ; image tokens] with 2D RoPE.
//
//   c2i: the condition is one class label, embedded by `cls_embedding.embedding_table`
//        (num_classes + 1 rows when class dropout is on: the last row is the null class used for
//        guidance dropout and the unconditional branch of classifier-free guidance).
//   t2i: the condition is a left-padded [B, cls_token_num, caption_dim] sequence (T5 features, or
//        MENTOR's multimodal encoder output) projected by `cls_embedding.cap_proj` (fc1, tanh-GELU,
//        fc2, no biases); guidance dropout replaces a whole sample's sequence by the fixed buffer
//        `cls_embedding.uncond_embedding` (before cap_proj), leaving the attention mask alone.
//
// The rotary table's condition rows are zero (upstream LlamaGen: condition q and k vanish) or the
// identity (MENTOR's fix), chosen by `rope_prefix`.
//
// Training: forward_train(idx = tokens[:, :-1], cond, mask) gives the logits of positions
// cls_token_num-1 .. end, i.e. one row per image token tokens[:, 0..L-1]; loss() is the
// cross-entropy against the tokens (optionally weighted per sample). Inference: setup_cache, then
// prefill(cond, emb_mask) (logits of the first image token) and step(token, pos) per token; see
// generate/greedy.hpp for the guided loop.
#include <cmath>
#include <cstdint>
#include <string>
#include <type_traits>
#include <utility>
#include <variant>
#include <vector>

#include "mentor/core/error.hpp"
#include "mentor/data/masks.hpp"
#include "mentor/models/gpt_config.hpp"
#include "mentor/nn/layers.hpp"
#include "mentor/nn/transformer.hpp"
#include "mentor/ops/dropout.hpp"
#include "mentor/ops/elementwise.hpp"
#include "mentor/ops/loss.hpp"
#include "mentor/ops/rope.hpp"
#include "mentor/ops/shape_ops.hpp"
#include "mentor/ops/unary.hpp"

namespace mentor::models {

// ---- condition embedders ------------------------------------------------------------------------

// Class labels -> [B, 1, dim]; upstream LabelEmbedder.
template <FloatingElement T, class D = CPU>
class LabelEmbedder : public nn::Module<T, D> {
 public:
  LabelEmbedder() = default;
  LabelEmbedder(int64_t num_classes, int64_t rows, int64_t dim, Generator& gen, double init_std)
      : num_classes(num_classes), embedding_table(rows, dim, gen, init_std) {}

  Tensor<T, D> operator()(const Tensor<int64_t, D>& labels) const {
    MENTOR_CHECK_SHAPE(labels.dim() == 1, "LabelEmbedder: labels ", labels.shape().str(),
                       " are not [batch]");
    return embedding_table(labels).unsqueeze(1);
  }
  // Labels with the dropped samples replaced by the null class `num_classes`.
  Tensor<int64_t, D> drop(const Tensor<int64_t, D>& labels, const Tensor<bool, D>& dropped) const {
    MENTOR_CHECK_SHAPE(dropped.shape() == labels.shape(), "LabelEmbedder: drop mask ",
                       dropped.shape().str(), " does not match labels ", labels.shape().str());
    MENTOR_CHECK(embedding_table.weight.size(0) > num_classes, "LabelEmbedder: no null-class row (",
                 "the table has ", embedding_table.weight.size(0), " rows for ", num_classes,
                 " classes: class_dropout_prob was 0)");
    return where(dropped, Tensor<int64_t, D>::full(Shape{}, num_classes), labels);
  }

  void visit(nn::Visitor<T, D>& v) override { v.child("embedding_table", embedding_table); }

  int64_t num_classes = 0;
  nn::Embedding<T, D> embedding_table;  // [num_classes (+1 null), dim]
};

// upstream MLP: fc1 -> GELU(tanh) -> fc2, no biases.
template <FloatingElement T, class D = CPU>
class CaptionMLP : public nn::Module<T, D> {
 public:
  CaptionMLP() = default;
  CaptionMLP(int64_t in_features, int64_t hidden, int64_t out_features, Generator& gen,
             double init_std)
      : fc1(in_features, hidden, false, gen, init_std),
        fc2(hidden, out_features, false, gen, init_std) {}
  Tensor<T, D> operator()(const Tensor<T, D>& x) const {
    return fc2(gelu(fc1(x), GeluApprox::Tanh));
  }
  void visit(nn::Visitor<T, D>& v) override {
    v.child("fc1", fc1);
    v.child("fc2", fc2);
  }
  nn::Linear<T, D> fc1, fc2;
};

// Caption features [B, T, caption_dim] -> [B, T, dim]; upstream CaptionEmbedder.
template <FloatingElement T, class D = CPU>
class CaptionEmbedder : public nn::Module<T, D> {
 public:
  CaptionEmbedder() = default;
  CaptionEmbedder(int64_t caption_dim, int64_t dim, int64_t token_num, Generator& gen,
                  double init_std)
      : cap_proj(caption_dim, dim, dim, gen, init_std),
        uncond_embedding(Tensor<float, D>::randn({token_num, caption_dim}, gen, 0.f,
                                                 static_cast<float>(1.0 / std::sqrt(caption_dim)))
                             .template to<T>()) {}

  Tensor<T, D> operator()(const Tensor<T, D>& caption) const {
    MENTOR_CHECK_SHAPE(caption.dim() == 3 && caption.size(2) == uncond_embedding.size(1),
                       "CaptionEmbedder: caption ", caption.shape().str(),
                       " is not [batch, tokens, ", uncond_embedding.size(1), "]");
    return cap_proj(caption);
  }
  // Captions with the dropped samples replaced by uncond_embedding (before cap_proj).
  // A caption of T < token_num rows holds the last T slots (GPT::forward_train_tail): it takes
  // the last T rows of uncond_embedding, the ones those slots hold in the full prefix.
  Tensor<T, D> drop(const Tensor<T, D>& caption, const Tensor<bool, D>& dropped) const {
    const int64_t slots = uncond_embedding.size(0);
    MENTOR_CHECK_SHAPE(caption.dim() == 3 && caption.size(1) >= 1 && caption.size(1) <= slots &&
                           caption.size(2) == uncond_embedding.size(1),
                       "CaptionEmbedder: caption ", caption.shape().str(),
                       " does not match uncond_embedding ", uncond_embedding.shape().str());
    MENTOR_CHECK_SHAPE(dropped.dim() == 1 && dropped.size(0) == caption.size(0),
                       "CaptionEmbedder: drop mask ", dropped.shape().str(), " for caption ",
                       caption.shape().str());
    const int64_t rows = caption.size(1);
    const Tensor<T, D> null_rows =
        rows == slots ? uncond_embedding : uncond_embedding.narrow(0, slots - rows, rows);
    return where(dropped.view({caption.size(0), 1, 1}), null_rows, caption);
  }
  // uncond_embedding repeated over a batch: the unconditional branch of guidance.
  Tensor<T, D> unconditional(int64_t batch) const {
    return uncond_embedding.unsqueeze(0).expand({batch, -1, -1}).contiguous();
  }

  void visit(nn::Visitor<T, D>& v) override {
    v.child("cap_proj", cap_proj);
    v.buffer("uncond_embedding", uncond_embedding);
  }

  CaptionMLP<T, D> cap_proj;
  Tensor<T, D> uncond_embedding;  // buffer [token_num, caption_dim]
};

// ---- the decoder --------------------------------------------------------------------------------

template <FloatingElement T, class D = CPU>
class GPT : public nn::Module<T, D> {
 public:
  using Labels = Tensor<int64_t, D>;
  using Caption = Tensor<T, D>;
  template <class Cond>
  static constexpr bool is_condition_v =
      std::is_same_v<Cond, Labels> || std::is_same_v<Cond, Caption>;

  GPT(const GPTConfig& config, Generator& gen) : config_((config.validate(), config)) {
    // Its own stream, so that dropout draws do not shift the initialisation stream of `gen`.
    dropout_generator = Generator(gen.seed ^ 0x9E3779B97F4A7C15ull);
    const double init_std = config.initializer_range;
    if (config.is_c2i())
      cls_embedding_.template emplace<LabelEmbedder<T, D>>(config.num_classes, config.label_rows(),
                                                           config.dim, gen, init_std);
    else
      cls_embedding_.template emplace<CaptionEmbedder<T, D>>(config.caption_dim, config.dim,
                                                             config.cls_token_num, gen, init_std);
    tok_embeddings = nn::Embedding<T, D>(config.vocab_size, config.dim, gen, init_std);
    const nn::TransformerBlockConfig block{.dim = config.dim,
                                           .n_head = config.n_head,
                                           .n_kv_head = config.kv_heads(),
                                           .ffn_hidden_dim = config.ffn_hidden_dim(),
                                           .norm_eps = config.norm_eps,
                                           .resid_dropout_p = config.resid_dropout_p,
                                           .ffn_dropout_p = config.ffn_dropout_p,
                                           .init_std = init_std};
    layers.reserve(static_cast<size_t>(config.n_layer));
    for (int64_t i = 0; i < config.n_layer; ++i) layers.emplace_back(block, gen);
    norm = nn::RMSNorm<T, D>(config.dim, config.norm_eps);
    // Upstream zero-initialises the output head.
    output.weight = Tensor<T, D>::zeros({config.vocab_size, config.dim}).requires_grad_();
    freqs_cis = rope_2d_table<D>(config.grid_size(), config.head_dim(), config.cls_token_num,
                                 config.rope_prefix, config.rope_base);
  }

  void visit(nn::Visitor<T, D>& v) override {
    std::visit([&](auto& embedder) { v.child("cls_embedding", embedder); }, cls_embedding_);
    v.child("tok_embeddings", tok_embeddings);
    v.children("layers", layers);
    v.child("norm", norm);
    v.child("output", output);
    v.generator("dropout_generator", dropout_generator);
  }

  const GPTConfig& config() const { return config_; }

  // ---- condition embeddings [B, cls_token_num, dim] ---------------------------------------------
  // `force_drop` [B] (upstream force_drop_ids): when given, exactly these samples are replaced by
  // the null condition; otherwise, with training_dropout, each sample is dropped with probability
  // class_dropout_prob (upstream's guidance dropout in training mode).
  Tensor<T, D> embed_condition(const Labels& labels, const Tensor<bool, D>& force_drop = {},
                               bool training_dropout = false) {
    auto* embedder = std::get_if<LabelEmbedder<T, D>>(&cls_embedding_);
    MENTOR_CHECK(embedder, "GPT: class labels given to a ", to_string(config_.model_type),
                 " model (it expects caption features [B, T, ", config_.caption_dim, "])");
    Tensor<bool, D> dropped =
        drop_mask(labels.dim() == 1 ? labels.size(0) : 0, force_drop, training_dropout);
    return (*embedder)(dropped.defined() ? embedder->drop(labels, dropped) : labels);
  }
  Tensor<T, D> embed_condition(const Caption& caption, const Tensor<bool, D>& force_drop = {},
                               bool training_dropout = false) {
    auto* embedder = std::get_if<CaptionEmbedder<T, D>>(&cls_embedding_);
    MENTOR_CHECK(embedder, "GPT: caption features ", caption.shape().str(),
                 " given to a c2i model (it expects class labels [B])");
    check_caption_length(caption, "GPT");
    return embed_caption_rows(*embedder, caption, force_drop, training_dropout);
  }

  // The one rule for caption features [B, T, caption_dim] on every path (training, eval, prefill,
  // generation with or without guidance): T is exactly cls_token_num, else an error naming both
  // lengths. models::left_pad_condition (multimodal_encoder.hpp) brings a caption to that length
  // as upstream's tokenizer does (left-pads a shorter one, keeps the first rows of a longer one)
  // and gives its emb_mask. `where` names the caller in the message. (forward_train_tail is the
  // one explicit exception: the tail of such a prefix, with its mask.)
  void check_caption_length(const Caption& caption, const char* where) const {
    MENTOR_CHECK_SHAPE(caption.dim() == 3, where, ": caption features ", caption.shape().str(),
                       " are not [batch, tokens, ", config_.caption_dim, "]");
    const int64_t rows = caption.size(1), slots = config_.cls_token_num;
    MENTOR_CHECK_SHAPE(rows == slots, where, ": the caption has ", rows,
                       " token rows but the model takes exactly cls_token_num = ", slots,
                       ": bring it to ", slots, " rows with models::left_pad_condition (it ",
                       "left-pads a shorter caption, keeps the first ", slots,
                       " rows of a longer one, as upstream's tokenizer, and gives the emb_mask)");
  }

  // ---- training ---------------------------------------------------------------------------------
  // idx [B, S_img] image tokens fed (upstream passes tokens[:, :-1]); cond: labels [B] (c2i) or
  // caption features [B, cls_token_num, caption_dim] (t2i); mask: undefined (causal) or bool
  // [B, S, S] / [B, 1, S, S] with S = cls_token_num + S_img (true = attend; the t2i data pipeline's
  // left-padding mask). Returns logits [B, S_img + 1, vocab] for positions cls_token_num - 1 ..
  // S-1. Token / residual / FFN dropout and guidance dropout apply in training mode
  // (dropout_generator).
  template <class Cond>
  Tensor<T, D> forward_train(const Tensor<int64_t, D>& idx, const Cond& cond,
                             const Tensor<bool, D>& mask = {},
                             const Tensor<bool, D>& force_drop = {}) {
    static_assert(is_condition_v<Cond>,
                  "GPT: the condition is class labels Tensor<int64_t, D> (c2i) or caption "
                  "features Tensor<T, D> (t2i)");
    Tensor<T, D> cond_embeddings = embed_condition(cond, force_drop, this->training());
    return run_train(idx, std::move(cond_embeddings), mask, config_.cls_token_num);
  }

  // forward_train on the last T <= cls_token_num condition slots only: caption_tail [B, T,
  // caption_dim] is a left-padded prefix whose first cls_token_num - T slots, padding in every
  // sample, are left out; mask [B, (1,) S, S] with S = T + S_img is required (the padded slots it
  // masks are what makes the two equal). The result is forward_train's on the full prefix (every
  // left-out slot a masked key, condition slots unrotated), at the cost of T instead of
  // cls_token_num condition positions: what training on short captions pays for.
  Tensor<T, D> forward_train_tail(const Tensor<int64_t, D>& idx, const Caption& caption_tail,
                                  const Tensor<bool, D>& mask,
                                  const Tensor<bool, D>& force_drop = {}) {
    auto* embedder = std::get_if<CaptionEmbedder<T, D>>(&cls_embedding_);
    MENTOR_CHECK(embedder, "GPT::forward_train_tail: a c2i model has no caption prefix");
    MENTOR_CHECK_SHAPE(caption_tail.dim() == 3 && caption_tail.size(1) >= 1 &&
                           caption_tail.size(1) <= config_.cls_token_num,
                       "GPT::forward_train_tail: caption ", caption_tail.shape().str(),
                       " is not [batch, 1 .. cls_token_num = ", config_.cls_token_num, ", ",
                       config_.caption_dim, "]");
    MENTOR_CHECK(mask.defined(), "GPT::forward_train_tail: the condition mask is required (the ",
                 "left-out slots are padding only under it)");
    Tensor<T, D> cond_embeddings =
        embed_caption_rows(*embedder, caption_tail, force_drop, this->training());
    return run_train(idx, std::move(cond_embeddings), mask, caption_tail.size(1));
  }

  // Cross-entropy of forward_train's logits [B, L, V] against tokens [B, L]; with `valid` [B],
  // upstream's per-sample weighting sum(CE * valid) / max(sum(valid) * L, 1).
  Tensor<T, D> loss(const Tensor<T, D>& logits, const Tensor<int64_t, D>& targets,
                    const Tensor<T, D>& valid = {}) const {
    MENTOR_CHECK_SHAPE(logits.dim() == 3 && targets.dim() == 2 &&
                           logits.size(0) == targets.size(0) && logits.size(1) == targets.size(1),
                       "GPT::loss: logits ", logits.shape().str(), " and targets ",
                       targets.shape().str(), " are not [B, L, V] and [B, L]");
    if (valid.defined()) return cross_entropy_weighted(logits, targets, valid);
    const int64_t rows = logits.size(0) * logits.size(1);
    return cross_entropy(logits.reshape({rows, logits.size(2)}), targets.reshape({rows}));
  }

  // ---- KV-cached inference ----------------------------------------------------------------------
  // Caches for `batch` sequences (the guided batch, 2B, under classifier-free guidance) of up to
  // max_seq_length positions, rounded up to a multiple of 8 as upstream.
  void setup_cache(int64_t batch, int64_t max_seq_length) {
    MENTOR_CHECK(max_seq_length > 0 && max_seq_length <= freqs_cis.size(0),
                 "GPT::setup_cache: max_seq_length ", max_seq_length, " outside [1, ",
                 freqs_cis.size(0), "] (cls_token_num + block_size)");
    const int64_t capacity = (max_seq_length + 7) / 8 * 8;
    for (auto& layer : layers) layer.attention.setup_cache(batch, capacity);
    cache_batch_ = batch;
    prefix_mask_ = {};
  }
  void clear_cache() {
    for (auto& layer : layers) layer.attention.clear_cache();
    cache_batch_ = 0;
    prefix_mask_ = {};
  }
  int64_t cache_capacity() const {
    return layers.empty() || !layers[0].attention.kv_cache.allocated()
               ? 0
               : layers[0].attention.kv_cache.capacity();
  }

  // Runs the condition prefix (positions 0 .. cls_token_num-1) into the cache and returns the
  // float logits [B, vocab] at its last position (the first image token's distribution).
  // emb_mask [B, cls_token_num] (t2i, optional): true for the real (right-aligned) condition
  // tokens; padded prefix slots are hidden from every query but attend to themselves, as upstream's
  // causal_mask with the emb_mask columns zeroed and the diagonal forced on. No dropout.
  template <class Cond>
  Tensor<float, D> prefill(const Cond& cond, const Tensor<bool, D>& emb_mask = {}) {
    static_assert(is_condition_v<Cond>,
                  "GPT: the condition is class labels Tensor<int64_t, D> (c2i) or caption "
                  "features Tensor<T, D> (t2i)");
    NoGradGuard no_grad;
    Tensor<T, D> h = embed_condition(cond, {}, false);
    const int64_t batch = h.size(0), cls = config_.cls_token_num;
    check_cache(batch, cls, "prefill");
    AttnMask<D> mask = AttnMask<D>::causal();
    prefix_mask_ = {};
    if (emb_mask.defined()) {
      MENTOR_CHECK_SHAPE(
          emb_mask.dim() == 2 && emb_mask.size(0) == batch && emb_mask.size(1) == cls,
          "GPT::prefill: emb_mask ", emb_mask.shape().str(), " is not [", batch, ", ", cls, "]");
      prefix_mask_ = emb_mask.template to<CPU>().contiguous();
      mask =
          AttnMask<D>::from(data::condition_attention_rows(prefix_mask_, 0, cls).template to<D>());
    }
    Tensor<float, D> rope = freqs_cis.narrow(0, 0, cls);
    for (auto& layer : layers) h = layer.forward_cached(h, rope, 0, mask);
    return head(h.narrow(1, cls - 1, 1));
  }

  // Feeds image tokens [B] at sequence position `pos` (cls_token_num + i for image token i) and
  // returns the float logits [B, vocab] of the next token.
  Tensor<float, D> step(const Tensor<int64_t, D>& tokens, int64_t pos) {
    NoGradGuard no_grad;
    MENTOR_CHECK_SHAPE(tokens.dim() == 1, "GPT::step: tokens ", tokens.shape().str(),
                       " are not [batch]");
    const int64_t batch = tokens.size(0);
    MENTOR_CHECK(pos >= config_.cls_token_num, "GPT::step: position ", pos,
                 " lies in the condition prefix (run prefill first; image tokens start at ",
                 config_.cls_token_num, ")");
    check_cache(batch, pos + 1, "step");
    Tensor<T, D> h = tok_embeddings(tokens.view({batch, 1}));
    AttnMask<D> mask = AttnMask<D>::causal();
    if (prefix_mask_.defined()) {
      MENTOR_CHECK_SHAPE(batch == prefix_mask_.size(0), "GPT::step: batch ", batch,
                         " differs from the prefill batch ", prefix_mask_.size(0));
      mask =
          AttnMask<D>::from(data::condition_attention_rows(prefix_mask_, pos, 1).template to<D>());
    }
    Tensor<float, D> rope = freqs_cis.narrow(0, pos, 1);
    for (auto& layer : layers) h = layer.forward_cached(h, rope, pos, mask);
    return head(h);
  }

  // ---- modules (upstream names) -----------------------------------------------------------------
  nn::Embedding<T, D> tok_embeddings;
  std::vector<nn::TransformerBlock<T, D>> layers;
  nn::RMSNorm<T, D> norm;
  nn::Linear<T, D> output;
  Tensor<float, D> freqs_cis;   // [cls_token_num + block_size, head_dim/2, 2]; not in the state
  Generator dropout_generator;  // token, residual, FFN and guidance dropout in training mode

  // The condition embedder (`cls_embedding`) of a c2i or a t2i model.
  LabelEmbedder<T, D>& label_embedder() {
    auto* embedder = std::get_if<LabelEmbedder<T, D>>(&cls_embedding_);
    MENTOR_CHECK(embedder, "GPT: a t2i model has no label embedder");
    return *embedder;
  }
  CaptionEmbedder<T, D>& caption_embedder() {
    auto* embedder = std::get_if<CaptionEmbedder<T, D>>(&cls_embedding_);
    MENTOR_CHECK(embedder, "GPT: a c2i model has no caption embedder");
    return *embedder;
  }
  const LabelEmbedder<T, D>& label_embedder() const {
    return const_cast<GPT&>(*this).label_embedder();
  }
  const CaptionEmbedder<T, D>& caption_embedder() const {
    return const_cast<GPT&>(*this).caption_embedder();
  }

 private:
  // Guidance dropout, then cap_proj, on caption rows (the whole prefix or its tail).
  Tensor<T, D> embed_caption_rows(const CaptionEmbedder<T, D>& embedder, const Caption& caption,
                                  const Tensor<bool, D>& force_drop, bool training_dropout) {
    Tensor<bool, D> dropped = drop_mask(caption.size(0), force_drop, training_dropout);
    return embedder(dropped.defined() ? embedder.drop(caption, dropped) : caption);
  }

  // The blocks over [condition rows | image tokens]: `cond_rows` condition positions, the last
  // cond_rows of the cls_token_num slots (all of them for forward_train); RoPE rows follow suit
  // (every condition row of the table is the same unrotated row).
  Tensor<T, D> run_train(const Tensor<int64_t, D>& idx, Tensor<T, D> cond_embeddings,
                         const Tensor<bool, D>& mask, int64_t cond_rows) {
    MENTOR_CHECK_SHAPE(idx.dim() == 2, "GPT::forward_train: idx ", idx.shape().str(),
                       " is not [batch, tokens]");
    const int64_t batch = idx.size(0), seq = cond_rows + idx.size(1);
    MENTOR_CHECK_SHAPE(idx.size(1) <= config_.block_size, "GPT::forward_train: ", idx.size(1),
                       " image tokens exceed block_size ", config_.block_size);
    MENTOR_CHECK_SHAPE(cond_embeddings.size(0) == batch, "GPT::forward_train: condition batch ",
                       cond_embeddings.size(0), " vs idx ", idx.shape().str());
    Tensor<T, D> h = concat(std::vector<Tensor<T, D>>{cond_embeddings, tok_embeddings(idx)}, 1);
    h = dropout(h, config_.token_dropout_p, dropout_generator, this->training());

    AttnMask<D> attn_mask = AttnMask<D>::causal();
    if (mask.defined()) {
      Tensor<bool, D> m = mask.dim() == 3 ? mask.unsqueeze(1) : mask;
      MENTOR_CHECK_SHAPE(m.dim() == 4 && (m.size(0) == batch || m.size(0) == 1) && m.size(1) == 1 &&
                             m.size(2) == seq && m.size(3) == seq,
                         "GPT::forward_train: mask ", mask.shape().str(), " is not [", batch, ", ",
                         seq, ", ", seq, "] (or [", batch, ", 1, ", seq, ", ", seq, "])");
      attn_mask = AttnMask<D>::from(m);
    }
    Tensor<float, D> rope = freqs_cis.narrow(0, config_.cls_token_num - cond_rows, seq);
    // The loss reads the rows from the last condition slot on: the last block computes only
    // those (its keys still span the whole sequence), and so does the head.
    const int64_t first_logit = cond_rows - 1;
    for (size_t l = 0; l < layers.size(); ++l)
      h = layers[l](h, rope, attn_mask, &dropout_generator,
                    l + 1 == layers.size() ? first_logit : 0);
    if (layers.empty()) h = h.narrow(1, first_logit, seq - first_logit);
    return output(norm(h));
  }

  Tensor<bool, D> drop_mask(int64_t batch, const Tensor<bool, D>& force_drop,
                            bool training_dropout) {
    if (force_drop.defined()) {
      MENTOR_CHECK_SHAPE(force_drop.dim() == 1 && force_drop.size(0) == batch, "GPT: force_drop ",
                         force_drop.shape().str(), " is not [", batch, "]");
      return force_drop;
    }
    if (!training_dropout || config_.class_dropout_prob == 0 || batch == 0) return {};
    // upstream: torch.rand(B) < class_dropout_prob
    std::vector<float> u = Tensor<float, CPU>::rand({batch}, dropout_generator).to_vector();
    std::vector<bool> dropped(u.size());
    for (size_t i = 0; i < u.size(); ++i) dropped[i] = u[i] < config_.class_dropout_prob;
    return Tensor<bool, CPU>::from_vector(dropped, Shape{batch}).template to<D>();
  }

  void check_cache(int64_t batch, int64_t end, const char* what) const {
    MENTOR_CHECK(cache_batch_ > 0, "GPT::", what, ": no KV cache (call setup_cache)");
    MENTOR_CHECK_SHAPE(batch <= cache_batch_, "GPT::", what, ": batch ", batch,
                       " exceeds the cache batch ", cache_batch_);
    MENTOR_CHECK_SHAPE(end <= cache_capacity(), "GPT::", what, ": position ", end - 1,
                       " is beyond the cache capacity ", cache_capacity());
  }

  // h [B, 1, dim] -> float logits [B, vocab].
  Tensor<float, D> head(const Tensor<T, D>& h) const {
    Tensor<T, D> logits = output(norm(h));
    return logits.reshape({logits.size(0), logits.size(2)}).template to<float>();
  }

  GPTConfig config_;
  // `cls_embedding`: class labels (c2i) or caption features (t2i), as config_.model_type says.
  std::variant<LabelEmbedder<T, D>, CaptionEmbedder<T, D>> cls_embedding_;
  int64_t cache_batch_ = 0;
  Tensor<bool, CPU> prefix_mask_;  // [B, cls_token_num] of the last prefill with an emb_mask
};

// Every parameter's upstream name and shape in GPT::named_parameters() order, from the module tree
// built on the shape-only device (nothing allocated). Buffers (uncond_embedding) are not
// parameters.
inline std::vector<std::pair<std::string, Shape>> gpt_parameter_shapes(const GPTConfig& config) {
  return nn::parameter_shapes_of<GPT<float, ShapeOnly>>(config);
}

inline int64_t gpt_parameter_count(const GPTConfig& config) {
  int64_t n = 0;
  for (const auto& [name, shape] : gpt_parameter_shapes(config)) n += shape.numel();
  return n;
}

}  // namespace mentor::models
