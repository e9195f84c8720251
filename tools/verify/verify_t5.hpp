#pragma once
// Verifier of the T5 encoder against the upstream fixture hf_t5enc_s* (written by Hugging Face
// transformers' T5EncoderModel; see the fixture README):
//   - weights `w.*` under HF's names, loaded strictly; the embedding table may appear as
//     `shared.weight`, as its tied alias `encoder.embed_tokens.weight`, or as both (equal);
//   - in.input_ids [B, S] with in.attention_mask [B, S] (sample 1 right-padded) in eval mode
//     (dropout off): out.last_hidden_state [B, S, d_model], padded positions included;
//   - grad.* of sum(last_hidden_state * in.cotangent) (the table's gradient is
//   `grad.shared.weight`).
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "mentor/io/safetensors.hpp"
#include "mentor/models/t5.hpp"
#include "mentor/nn/state_dict.hpp"
#include "mentor/ops/reduce.hpp"
#include "verify/verify.hpp"

namespace mentor::verify {
using namespace mentor::models;

template <class T, class D>
VerifyReport verify_t5(const io::SafeTensorsFile& file, const nlohmann::json& config_json) {
  const T5Config config = T5Config::from_json(config_json);
  const Tolerances tol = t5_tolerances<T>();  // bf16: verify.hpp explains the bounds
  VerifyReport report;
  report.file = file.path();
  report.module = "T5 encoder (HF T5EncoderModel)";

  Generator gen(0);
  T5EncoderModel<T, D> model(config, gen);
  nn::LoadOptions options;
  options.prefix = "w.";
  load_t5_encoder(model, file, options);
  model.eval();
  model.zero_grad();

  const Tensor<int64_t, D> ids = load_input<int64_t, D>(report, file, "in.input_ids");
  Tensor<bool, D> mask;
  {
    // Stored as integers 0/1.
    std::vector<int64_t> values =
        load_input<int64_t>(report, file, "in.attention_mask").to_vector();
    std::vector<bool> flags(values.size());
    for (size_t i = 0; i < values.size(); ++i) flags[i] = values[i] != 0;
    mask = Tensor<bool, CPU>::from_vector(flags, Shape(file.info("in.attention_mask").shape))
               .template to<D>();
  }
  const Tensor<T, D> hidden = model(ids, mask);
  compare_output(report, file, "out.last_hidden_state", hidden, tol.output);

  const Tensor<T, D> cotangent = load_input<T, D>(report, file, "in.cotangent");
  sum(mul(hidden, cotangent)).backward();
  compare_gradients(report, file, model, tol.gradient);
  check_coverage(report, file);
  return report;
}

}  // namespace mentor::verify
