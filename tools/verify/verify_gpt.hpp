#pragma once
// Verifier of the LlamaGen GPT against the upstream fixtures llamagen_gpt_{c2i,t2i}_s* (written by
// upstream's Transformer and generate(); see the fixture README):
//   - weights `w.*` loaded strictly (the t2i file includes the uncond_embedding buffer);
//   - training forward in training mode with every dropout 0: inputs in.idx[:, :-1], condition
//     in.cond_train (c2i: labels whose guidance dropout is already applied, so no sample is
//     dropped here) or in.cond with the explicit mask in.attn_mask (t2i); out.logits [B, L, V] and
//     out.loss (mean cross-entropy against in.idx), and grad.* of that loss;
//   - greedy generation of L tokens from in.cond (and in.emb_mask for t2i) with guidance scale 1
//     and 3: out.greedy_tokens_cfg1 / _cfg3 must be identical. Only in float32 and float64: in
//     bf16 one rounded argmax flip changes every later token, so the tokens are generated and
//     their mismatches printed but not required (listed as not compared; the logits and
//     gradients are compared, with the bf16 tolerances).
// Every in.*/out.*/grad.* key of the file is used or compared (check_coverage).
#include <string>
#include <type_traits>
#include <vector>

#include <nlohmann/json.hpp>

#include "mentor/generate/greedy.hpp"
#include "mentor/io/safetensors.hpp"
#include "mentor/models/gpt.hpp"
#include "mentor/nn/state_dict.hpp"
#include "verify/verify.hpp"

namespace mentor::verify {
using namespace mentor::models;

template <class T, class D>
VerifyReport verify_gpt(const io::SafeTensorsFile& file, const nlohmann::json& config_json) {
  GPTConfig config = GPTConfig::from_json(config_json);
  const Tolerances tol = default_tolerances<T>();
  VerifyReport report;
  report.file = file.path();
  report.module = std::string("LlamaGen GPT (") + std::string(to_string(config.model_type)) + ")";

  Generator gen(0);
  GPT<T, D> model(config, gen);
  nn::LoadOptions options;
  options.prefix = "w.";
  nn::load_state_dict(model, file, options);

  // Training forward, loss and gradients.
  Tensor<int64_t, D> tokens = load_input<int64_t, D>(report, file, "in.idx");
  MENTOR_CHECK_SHAPE(tokens.dim() == 2 && tokens.size(1) >= 2, "verify_gpt: ", file.path(),
                     ": in.idx ", tokens.shape().str(), " is not [batch, tokens]");
  const int64_t batch = tokens.size(0), length = tokens.size(1);
  Tensor<int64_t, D> inputs = tokens.narrow(1, 0, length - 1);
  Tensor<bool, D> keep_all = Tensor<bool, D>::zeros({batch});  // force_drop: drop none
  model.train(true);
  model.zero_grad();
  Tensor<T, D> logits;
  if (config.is_c2i()) {
    Tensor<int64_t, D> labels = load_input<int64_t, D>(report, file, "in.cond_train");
    logits = model.forward_train(inputs, labels, Tensor<bool, D>(), keep_all);
  } else {
    Tensor<T, D> caption = load_input<T, D>(report, file, "in.cond");
    Tensor<bool, D> mask = load_input<bool, D>(report, file, "in.attn_mask");
    logits = model.forward_train(inputs, caption, mask, keep_all);
  }
  Tensor<T, D> loss = model.loss(logits, tokens);
  loss.backward();
  compare_output(report, file, "out.logits", logits, tol.output);
  compare_output(report, file, "out.loss", loss.reshape({1}), tol.output);
  compare_gradients(report, file, model, tol.gradient);

  // Greedy generation with and without guidance.
  model.eval();
  Tensor<bool, D> emb_mask;
  if (!config.is_c2i()) {
    // Stored as float 0/1 by the fixture script.
    std::vector<float> values = load_input<float>(report, file, "in.emb_mask").to_vector();
    std::vector<bool> flags(values.size());
    for (size_t i = 0; i < values.size(); ++i) flags[i] = values[i] != 0.0f;
    emb_mask = Tensor<bool, CPU>::from_vector(flags, Shape(file.info("in.emb_mask").shape))
                   .template to<D>();
  }
  for (const auto& [key, scale] : {std::pair<std::string, double>{"out.greedy_tokens_cfg1", 1.0},
                                   std::pair<std::string, double>{"out.greedy_tokens_cfg3", 3.0}}) {
    MENTOR_CHECK(file.contains(key), "verify_gpt: ", file.path(), " has no ", key);
    const int64_t count = file.info(key).shape.back();
    Tensor<int64_t, D> generated;
    if (config.is_c2i()) {
      generated = generate::generate_greedy(model, load_input<int64_t, D>(report, file, "in.cond"),
                                            Tensor<bool, D>(), count, scale);
    } else {
      generated = generate::generate_greedy(model, nn::load_tensor<T, D>(file, "in.cond"), emb_mask,
                                            count, scale);
    }
    if constexpr (std::is_same_v<T, bf16>) {
      const int64_t differ = count_mismatches(generated, nn::load_tensor<int64_t>(file, key));
      report.not_compared.emplace_back(
          key, "bf16 (" + std::to_string(differ) + " of " + std::to_string(generated.numel()) +
                   " differ; one rounded argmax changes every later token)");
    } else {
      compare_exact(report, file, key, generated);
    }
  }
  check_coverage(report, file);
  return report;
}

}  // namespace mentor::verify
