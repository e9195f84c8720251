#pragma once
// Verifier of the CLIP vision tower against the upstream fixture hf_clipvis_s* (written by Hugging
// Face transformers' CLIPVisionModel; see the fixture README):
//   - weights `w.*` (CLIPVisionTransformer names, without the `vision_model.` prefix) loaded
//     strictly;
//   - in.pixel_values through the tower: out.penultimate_patches (hidden_states[-2] without the
//     class token: what MENTOR feeds its projector), out.last_hidden_state and out.pooler_output;
//   - grad.* of sum(penultimate_patches * in.cotangent). The file holds no gradient for the last
//     layer and post_layernorm (they do not reach the penultimate state); compare_gradients walks
//     the file's `grad.` keys, so those parameters are not compared.
//     The gradient of every `self_attn.k_proj.bias` is exactly zero in exact arithmetic (adding
//     b to every key adds q.b to all scores of a query row, which softmax ignores): the file holds
//     float32 rounding noise there (~1e-8 of the whole gradient's norm), which compare_gradients
//     measures against the whole gradient (its "~0" rule).
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "mentor/io/safetensors.hpp"
#include "mentor/models/clip.hpp"
#include "mentor/nn/state_dict.hpp"
#include "mentor/ops/reduce.hpp"
#include "verify/verify.hpp"

namespace mentor::verify {
using namespace mentor::models;

template <class T, class D>
VerifyReport verify_clip(const io::SafeTensorsFile& file, const nlohmann::json& config_json) {
  const CLIPVisionConfig config = CLIPVisionConfig::from_json(config_json);
  const Tolerances tol = default_tolerances<T>();
  VerifyReport report;
  report.file = file.path();
  report.module = "CLIP vision tower (HF CLIPVisionTransformer)";

  Generator gen(0);
  CLIPVisionTransformer<T, D> model(config, gen);
  nn::LoadOptions options;
  options.prefix = "w.";
  nn::load_state_dict(model, file, options);
  model.eval();
  model.zero_grad();

  const Tensor<T, D> pixels = load_input<T, D>(report, file, "in.pixel_values");
  // Every hidden state at once: the penultimate one and the last share their first layers.
  const std::vector<Tensor<T, D>> states = model.hidden_states(pixels);
  const Tensor<T, D>& penultimate = states[states.size() - 2];
  const Tensor<T, D> patches = penultimate.narrow(1, 1, penultimate.size(1) - 1);
  const Tensor<T, D>& last = states.back();
  compare_output(report, file, "out.penultimate_patches", patches, tol.output);
  compare_output(report, file, "out.last_hidden_state", last, tol.output);
  compare_output(report, file, "out.pooler_output", model.pooled(last), tol.output);

  const Tensor<T, D> cotangent = load_input<T, D>(report, file, "in.cotangent");
  sum(mul(patches, cotangent)).backward();
  compare_gradients(report, file, model, tol.gradient);
  check_coverage(report, file);
  return report;
}

}  // namespace mentor::verify
