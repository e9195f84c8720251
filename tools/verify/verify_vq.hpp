#pragma once
// Verifier of the VQ tokenizer against upstream fixtures llamagen_vq_s* (written by
// LlamaGen's own VQModel): outputs of one training-mode forward, the gradients of
// loss = MSE(dec, image) + vq_loss + commit_loss, the recent-codes buffer that forward leaves
// behind, and decode_code of the fixture's indices in eval mode.
#include <cmath>
#include <limits>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "mentor/io/safetensors.hpp"
#include "mentor/models/vq.hpp"
#include "mentor/nn/state_dict.hpp"
#include "mentor/ops/loss.hpp"
#include "verify/verify.hpp"

namespace mentor::verify {
using namespace mentor::models;

// The VQConfig of a llamagen_vq configs.json entry: the entry also notes how the fixture was made
// (input shape, initialisations, upstream commit), which is not configuration.
inline VQConfig vq_fixture_config(const nlohmann::json& entry) {
  nlohmann::json config = entry;
  if (config.is_object())
    for (const char* note :
         {"image", "norm_weight_init", "norm_bias_init", "conv_init", "upstream", "generator"})
      config.erase(note);
  return VQConfig::from_json(config);
}

template <class T, class D>
VerifyReport verify_vq(const io::SafeTensorsFile& file, const nlohmann::json& config_json) {
  VerifyReport report;
  report.file = file.path();
  report.module = "VQModel (LlamaGen VQ tokenizer)";
  const Tolerances tol = default_tolerances<T>();

  VQConfig config = vq_fixture_config(config_json);
  // Upstream keeps the `codebook_used` buffer only with codebook_show_usage: follow the file.
  const std::string used_key = "w.quantize.codebook_used";
  config.codebook_show_usage = file.contains(used_key);
  if (config.codebook_show_usage) config.codebook_usage_window = file.info(used_key).shape.at(0);

  Generator gen(0);
  VQModel<T, D> model(config, gen);
  nn::LoadOptions options;
  options.strict = true;
  options.prefix = "w.";
  nn::load_state_dict(model, file, options);
  // The fixture's buffer was saved after upstream's training forward (a fresh module starts from
  // zeros): start from zeros too and compare what our forward leaves in it.
  model.quantize.reset_usage();

  model.train();
  model.zero_grad();
  const Tensor<T, D> image = load_input<T, D>(report, file, "in.image");
  VQForwardResult<T, D> out = model.forward(image);
  const VQQuantizeResult<T, D>& q = out.quantized;
  Tensor<T, D> rec_loss = mse_loss(out.dec, image);
  Tensor<T, D> loss = rec_loss + q.codebook_loss();
  loss.backward();

  auto as_file_scalar = [](const Tensor<T, D>& s) { return s.detach().reshape({1}); };
  compare_output(report, file, "out.quant", q.quant.detach(), tol.output);
  compare_exact(report, file, "out.indices", q.indices);
  compare_output(report, file, "out.dec", out.dec.detach(), tol.output);
  compare_output(report, file, "out.rec_loss", as_file_scalar(rec_loss), tol.output);
  compare_output(report, file, "out.vq_loss", as_file_scalar(q.vq_loss), tol.output);
  compare_output(report, file, "out.commit_loss", as_file_scalar(q.commit_loss), tol.output);
  compare_output(report, file, "out.loss", as_file_scalar(loss), tol.output);
  compare_gradients(report, file, model, tol.gradient);

  if (config.codebook_show_usage) {
    // Stored as float (upstream's buffer dtype): compare the ids exactly.
    const std::vector<float> theirs = nn::load_tensor<float>(file, used_key).to_vector();
    const std::vector<float> ours =
        model.quantize.codebook_used.template to<CPU>().template to<float>().to_vector();
    int64_t mismatches = 0;
    for (size_t i = 0; i < theirs.size(); ++i) mismatches += ours.at(i) != theirs[i];
    report.comparisons.push_back(
        {used_key + " (after the training forward)", static_cast<double>(mismatches), 0, true});
  }

  // decode_code of upstream's own indices, so that this check is independent of our encoder.
  model.eval();
  {
    NoGradGuard no_grad;
    const Tensor<int64_t, D> codes = nn::load_tensor<int64_t, D>(file, "out.indices");
    const int64_t b = image.size(0);
    Tensor<T, D> decoded = model.decode_code(codes, b, q.height, q.width);
    compare_output(report, file, "out.decode_code", decoded, tol.output);
  }
  check_coverage(report, file);
  return report;
}

}  // namespace mentor::verify
