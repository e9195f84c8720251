#pragma once
// Verifier of the MENTOR composition against ../shared/fixtures/mentor/mentor_mm_s* (written by
// MENTOR's own code: empty_fix_gpt.py + llavat5/ + generate.py; see that folder's README):
//   - the configuration is read from the file's configs.json entry (`mentor_mm`), never assumed;
//   - weights `w.*` loaded strictly through MentorModel::load (the tied T5 table appears as both
//     `shared.weight` and `encoder.embed_tokens.weight`; `cls_embedding.uncond_embedding` is a
//     buffer);
//   - the condition path step by step, each against the file: out.clip_patches (penultimate CLIP
//     patches of pixel_values[img_mask]), out.projected, out.t5_inputs_embeds (the <image> splice,
//     matched over the whole batch), out.encoder_hidden, out.prefix and out.emb_mask (left-pad
//     repacking), out.attn_mask (decoder training mask), out.cond_embeddings (cap_proj);
//   - MentorModel::forward_train (stage 2, InstructionTuning): out.logits, out.loss (weighted by
//     in.valid) and grad.* of that loss; then set_stage(Alignment) and a second backward: grad1.*.
//     The trainable set of each stage must be exactly the file's gradient keys;
//   - guided greedy generation (guidance 1 and 3): out.greedy_tokens_cfg1/3 exact, and
//     out.guided_logits_cfg1/3, the logits upstream's generate() hands to sample() at each step,
//     computed with the file's own tokens fed back (so a logit comparison does not depend on an
//     earlier argmax). In bf16 the tokens are generated and their mismatches printed, not required.
// Every in.*/out.*/grad.*/grad1.* key of the file is used or compared (check_coverage).
#include <algorithm>
#include <set>
#include <string>
#include <type_traits>
#include <vector>

#include <nlohmann/json.hpp>

#include "mentor/generate/greedy.hpp"
#include "mentor/io/safetensors.hpp"
#include "mentor/models/mentor.hpp"
#include "mentor/nn/state_dict.hpp"
#include "verify/verify.hpp"

namespace mentor::verify {
using namespace mentor::models;

namespace detail {
// j.at(key) with an error naming the entry and the key (the fixture's configs.json is data).
inline const nlohmann::json& fixture_key(const nlohmann::json& j, const std::string& section,
                                         const std::string& key) {
  MENTOR_CHECK(j.is_object() && j.contains(key), "verify_mentor: configs.json entry '", section,
               "' has no key '", key, "'");
  return j.at(key);
}
// The listed keys of j (those present), for a config's from_json: the fixture's sections also
// hold descriptive keys (upstream commit, state_dict prefixes) that are not configuration.
inline nlohmann::json pick_keys(const nlohmann::json& j, const std::vector<std::string>& keys) {
  nlohmann::json out = nlohmann::json::object();
  for (const std::string& key : keys)
    if (j.contains(key) && !j.at(key).is_null()) out[key] = j.at(key);
  return out;
}
}  // namespace detail

// MentorConfig of a `mentor_mm` entry of ../shared/fixtures/mentor/configs.json. The VQ tokenizer
// is not part of the fixture (MENTOR's GPT state excludes it): a minimal VQ with the GPT's
// codebook size stands in, and nothing of it is compared.
inline MentorConfig mentor_fixture_config(const nlohmann::json& j) {
  using detail::fixture_key;
  using detail::pick_keys;
  MENTOR_CHECK(j.is_object(), "verify_mentor: the configs.json entry is not an object");
  MentorConfig c;
  MultimodalEncoderConfig& e = c.encoder;

  const nlohmann::json& vision = fixture_key(j, "mentor_mm", "vision");
  e.vision = CLIPVisionConfig::from_json(pick_keys(
      vision,
      {"hidden_size", "intermediate_size", "num_hidden_layers", "num_attention_heads", "image_size",
       "patch_size", "hidden_act", "layer_norm_eps", "attention_dropout", "num_channels"}));
  e.select_layer = fixture_key(vision, "vision", "select_layer").get<int64_t>();
  const std::string feature = fixture_key(vision, "vision", "select_feature").get<std::string>();
  MENTOR_CHECK(feature == "patch" || feature == "cls_patch",
               "verify_mentor: vision.select_feature '", feature, "' is not patch or cls_patch");
  e.select_feature =
      feature == "patch" ? VisionFeatureSelect::Patch : VisionFeatureSelect::ClsPatch;

  const nlohmann::json& text = fixture_key(j, "mentor_mm", "t5_encoder");
  e.text = T5Config::from_json(pick_keys(
      text, {"vocab_size", "d_model", "d_kv", "d_ff", "num_layers", "num_heads",
             "relative_attention_num_buckets", "relative_attention_max_distance", "dropout_rate",
             "layer_norm_epsilon", "feed_forward_proj", "dense_act_fn", "is_gated_act"}));

  const nlohmann::json& projector = fixture_key(j, "mentor_mm", "projector");
  e.projector_type = fixture_key(projector, "projector", "type").get<std::string>();
  // Our mlpNx_gelu keeps the output width after the first Linear (as LLaVA's builder does).
  const int64_t in = fixture_key(projector, "projector", "in").get<int64_t>();
  const int64_t hidden = fixture_key(projector, "projector", "hidden").get<int64_t>();
  const int64_t out = fixture_key(projector, "projector", "out").get<int64_t>();
  MENTOR_CHECK(in == e.vision.hidden_size && hidden == out && out == e.text.d_model,
               "verify_mentor: projector ", in, " -> ", hidden, " -> ", out, " is not CLIP hidden ",
               e.vision.hidden_size, " -> T5 d_model ", e.text.d_model, " -> the same");

  const nlohmann::json& tokenizer = fixture_key(j, "mentor_mm", "tokenizer");
  e.image_token_id = fixture_key(tokenizer, "tokenizer", "image_token_id").get<int64_t>();
  MENTOR_CHECK(fixture_key(tokenizer, "tokenizer", "placeholders_per_image").get<int64_t>() ==
                   e.tokens_per_image(),
               "verify_mentor: tokenizer.placeholders_per_image differs from the ",
               e.tokens_per_image(), " feature rows an image gives");

  const nlohmann::json& gpt = fixture_key(j, "mentor_mm", "gpt");
  c.gpt = GPTConfig::from_json(
      pick_keys(gpt, {"dim", "n_layer", "n_head", "n_kv_head", "multiple_of", "vocab_size",
                      "block_size", "cls_token_num", "caption_dim", "class_dropout_prob",
                      "model_type", "token_dropout_p", "resid_dropout_p", "ffn_dropout_p",
                      "attn_dropout_p", "drop_path_rate", "rope_base", "norm_eps", "num_classes"}));
  // MENTOR's empty-fix leaves the prefix unrotated: identity rows (README "Upstream behaviour" 5).
  const std::string rope = fixture_key(gpt, "gpt", "rope_prefix").get<std::string>();
  if (rope.rfind("zero", 0) == 0)
    c.gpt.rope_prefix = RopePrefix::Zero;
  else if (rope.rfind("none", 0) == 0 || rope.rfind("identity", 0) == 0)
    c.gpt.rope_prefix = RopePrefix::Identity;
  else
    throw Error(::mentor::detail::concat("verify_mentor: gpt.rope_prefix '", rope,
                                         "' is not zero, none or identity"));
  if (gpt.contains("ffn_hidden"))
    MENTOR_CHECK(gpt.at("ffn_hidden").get<int64_t>() == c.gpt.ffn_hidden_dim(),
                 "verify_mentor: gpt.ffn_hidden ", gpt.at("ffn_hidden").get<int64_t>(),
                 " differs from the ", c.gpt.ffn_hidden_dim(), " that dim and multiple_of give");

  VQConfig& q = c.vq;
  q.ch = 32;  // one GroupNorm group of 32 channels per level
  q.encoder_ch_mult = q.decoder_ch_mult = {1};
  q.num_res_blocks = 1;
  q.z_channels = 32;
  q.codebook_size = c.gpt.vocab_size;
  q.codebook_embed_dim = 4;
  q.codebook_usage_window = 16;
  c.validate();
  return c;
}

template <class T, class D>
VerifyReport verify_mentor(const io::SafeTensorsFile& file, const nlohmann::json& config_json) {
  const MentorConfig config = mentor_fixture_config(config_json);
  const Tolerances tol = default_tolerances<T>();
  VerifyReport report;
  report.file = file.path();
  report.module = "MENTOR composition (CLIP + projector + T5 + GPT t2i)";

  Generator gen(0);
  MentorModel<T, D> model(config, gen);
  nn::LoadOptions options;
  options.prefix = "w.";
  model.load(file, options);

  // ---- inputs
  const Tensor<int64_t, D> ids = load_input<int64_t, D>(report, file, "in.input_ids");
  const Tensor<bool, D> attention =
      load_input<int64_t>(report, file, "in.attention_mask").template to<bool>().template to<D>();
  const Tensor<T, D> pixels = load_input<T, D>(report, file, "in.pixel_values");
  const Tensor<bool, D> img_mask = load_input<bool, D>(report, file, "in.img_mask");
  const Tensor<int64_t, D> idx = load_input<int64_t, D>(report, file, "in.idx");
  const Tensor<T, D> valid =
      load_input<int64_t>(report, file, "in.valid").template to<T>().template to<D>();
  const std::vector<int64_t> image_token =
      load_input<int64_t>(report, file, "in.image_token_id").to_vector();
  MENTOR_CHECK(image_token.size() == 1 && image_token[0] == config.encoder.image_token_id,
               "verify_mentor: ", file.path(), ": in.image_token_id differs from configs.json's ",
               config.encoder.image_token_id);
  // in.image_counts must agree with img_mask and with the placeholders of each prompt.
  {
    const std::vector<int64_t> counts =
        load_input<int64_t>(report, file, "in.image_counts").to_vector();
    const std::vector<bool> slots = img_mask.template to<CPU>().to_vector();
    const std::vector<int64_t> prompt = ids.template to<CPU>().to_vector();
    const int64_t batch = ids.size(0), length = ids.size(1), per_row = img_mask.size(1);
    MENTOR_CHECK(static_cast<int64_t>(counts.size()) == batch,
                 "verify_mentor: in.image_counts has ", counts.size(), " entries for a batch of ",
                 batch);
    for (int64_t b = 0; b < batch; ++b) {
      const int64_t images =
          std::count(slots.begin() + b * per_row, slots.begin() + (b + 1) * per_row, true);
      const int64_t placeholders =
          std::count(prompt.begin() + b * length, prompt.begin() + (b + 1) * length,
                     config.encoder.image_token_id);
      MENTOR_CHECK(images == counts[static_cast<size_t>(b)] &&
                       placeholders == images * config.encoder.tokens_per_image(),
                   "verify_mentor: sample ", b, ": in.image_counts ",
                   counts[static_cast<size_t>(b)], ", img_mask ", images, " images, ", placeholders,
                   " placeholders");
    }
  }
  const int64_t fed = idx.size(1) - 1;  // upstream feeds idx[:, :-1]
  const Tensor<int64_t, D> inputs = idx.narrow(1, 0, fed);
  const Tensor<T, D> images = select_images(pixels, img_mask);

  // ---- the condition path, step by step (no gradients)
  ConditionPrefix<T, D> prefix;
  {
    NoGradGuard no_grad;
    MultimodalEncoder<T, D>& enc = model.multimodal_encoder;
    const Tensor<T, D> patches = enc.vision_model(images);
    compare_output(report, file, "out.clip_patches", patches, tol.output);
    const Tensor<T, D> projected = enc.language_projection(patches);
    compare_output(report, file, "out.projected", projected, tol.output);
    const Tensor<T, D> embeds = splice_image_features(enc.language_model.embed(ids), ids, projected,
                                                      config.encoder.image_token_id);
    compare_output(report, file, "out.t5_inputs_embeds", embeds, tol.output);
    const Tensor<T, D> hidden = enc.language_model.forward_embeds(embeds, attention);
    compare_output(report, file, "out.encoder_hidden", hidden, tol.output);
    prefix = left_pad_condition(hidden, attention, config.gpt.cls_token_num);
    compare_output(report, file, "out.prefix", prefix.embeddings, tol.output);
    {
      // Stored as float 0/1: compared exactly.
      const Tensor<int64_t, CPU> theirs =
          nn::load_tensor<float>(file, "out.emb_mask").template to<int64_t>();
      report.comparisons.push_back(
          {"out.emb_mask", static_cast<double>(count_mismatches(prefix.mask, theirs)), 0, true});
    }
    compare_exact(report, file, "out.attn_mask", condition_attention_mask(prefix.mask, fed));
    compare_output(report, file, "out.cond_embeddings",
                   model.gpt.embed_condition(prefix.embeddings), tol.output);
  }

  // ---- training forward, loss and the gradients of each stage's trainable set
  const Tensor<bool, D> drop_none = Tensor<bool, D>::zeros({idx.size(0)});
  auto train_step = [&](MentorStage stage) {
    model.set_stage(stage);
    model.train(true);
    model.zero_grad();
    Tensor<T, D> logits = model.forward_train(inputs, ids, attention, images, drop_none);
    Tensor<T, D> loss = model.loss(logits, idx, valid);
    loss.backward();
    return std::pair{logits, loss};
  };
  // The trainable parameters must be exactly the file's `<prefix>*` keys.
  auto check_trainable_set = [&](const std::string& prefix_key, const std::string& stage) {
    std::set<std::string> ours, theirs;
    for (auto& [name, param] : model.named_parameters())
      if (param->requires_grad()) ours.insert(name);
    for (const std::string& key : file.keys())
      if (key.rfind(prefix_key, 0) == 0) theirs.insert(key.substr(prefix_key.size()));
    std::vector<std::string> differ;
    std::set_symmetric_difference(ours.begin(), ours.end(), theirs.begin(), theirs.end(),
                                  std::back_inserter(differ));
    std::string label = stage + " trainable set == " + prefix_key + "* keys (" +
                        std::to_string(theirs.size()) + ")";
    for (const std::string& name : differ) label += " " + name;
    report.comparisons.push_back({label, static_cast<double>(differ.size()), 0, true});
  };
  {
    auto [logits, loss] = train_step(MentorStage::InstructionTuning);
    compare_output(report, file, "out.logits", logits.detach(), tol.output);
    compare_output(report, file, "out.loss", loss.detach().reshape({1}), tol.output);
    check_trainable_set("grad.", "stage 2");
    compare_gradients(report, file, model, tol.gradient, "grad.");
  }
  {
    train_step(MentorStage::Alignment);
    check_trainable_set("grad1.", "stage 1");
    compare_gradients(report, file, model, tol.gradient, "grad1.");
  }

  // ---- guided greedy generation (eval mode: the condition is the same, dropout is off anyway)
  model.eval();
  GPT<T, D>& gpt = model.gpt;
  gpt.eval();
  const int64_t batch = idx.size(0), cls = config.gpt.cls_token_num;
  for (const double scale : {1.0, 3.0}) {
    const std::string suffix = scale == 1.0 ? "cfg1" : "cfg3";
    const std::string tokens_key = "out.greedy_tokens_" + suffix;
    const Tensor<int64_t, CPU> reference = nn::load_tensor<int64_t>(file, tokens_key);
    const int64_t count = reference.size(1);
    const Tensor<int64_t, D> generated =
        generate::generate_greedy(gpt, prefix.embeddings, prefix.mask, count, scale);
    if constexpr (std::is_same_v<T, bf16>) {
      report.not_compared.emplace_back(
          tokens_key, "bf16 (" + std::to_string(count_mismatches(generated, reference)) + " of " +
                          std::to_string(generated.numel()) +
                          " differ; one rounded argmax changes every later token)");
    } else {
      compare_exact(report, file, tokens_key, generated);
    }
    // The guided logits of each step, with the reference tokens fed back.
    NoGradGuard no_grad;
    const bool doubled = scale > 1.0;
    Tensor<T, D> cond = prefix.embeddings;
    Tensor<bool, D> mask = prefix.mask;
    if (doubled) {
      // Upstream: the unconditional half is uncond_embedding with the conditional emb_mask.
      cond =
          concat(std::vector<Tensor<T, D>>{cond, gpt.caption_embedder().unconditional(batch)}, 0);
      mask = concat(std::vector<Tensor<bool, D>>{mask, mask}, 0);
    }
    const Tensor<int64_t, D> fed_tokens = reference.template to<D>();
    std::vector<Tensor<float, D>> steps;
    gpt.setup_cache(doubled ? 2 * batch : batch, cls + count);
    steps.push_back(
        generate::detail::guided_logits(gpt.prefill(cond, mask), batch, doubled, true, scale));
    for (int64_t i = 0; i + 1 < count; ++i) {
      Tensor<int64_t, D> token = fed_tokens.narrow(1, i, 1).contiguous().view({batch});
      if (doubled) token = concat(std::vector<Tensor<int64_t, D>>{token, token}, 0);
      steps.push_back(
          generate::detail::guided_logits(gpt.step(token, cls + i), batch, doubled, true, scale));
    }
    gpt.clear_cache();
    for (auto& s : steps) s = s.unsqueeze(1);
    compare_output(report, file, "out.guided_logits_" + suffix, concat(steps, 1), tol.output);
  }
  check_coverage(report, file);
  return report;
}

}  // namespace mentor::verify
