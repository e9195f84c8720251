// bench_generate_cuda: guided generation on the GPU with generate::CudaDecoder (the decode step in
// a CUDA graph, sampling on the device), timed as torch_ref.py's `gengraph` section times
// PyTorch: a LlamaGen t2i decoder in bf16 with random weights, 120 condition tokens of 2048
// features, 256 image tokens, classifier-free guidance 4.0, top-k 1000, temperature 1, batch 1 and
// 16 images. One generation is the whole call: the conditions uploaded, the prefill, 256 sampled
// tokens, the tokens read back. The first run of each shape also captures the graph and is not
// timed; the median of the timed runs is reported.
//
//   bench_generate_cuda [--json FILE] [--models GPT-B,GPT-XL] [--batches 1,16] [--iters 3]
//
// Prints one JSON object per result and writes them all to FILE (a list), rows of
// {"sec": "generate_cfg", "model", "variant": "mentor_cudagraph", "images", "tokens", "s",
// "images_per_s", "tokens_per_s", "first_run_s"}.
#include <algorithm>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <iostream>
#include <sstream>
#include <string>
#include <vector>

#include "mentor/core/cuda_api.hpp"
#include "mentor/generate/cuda_decoder.hpp"
#include "mentor/models/gpt.hpp"

using namespace mentor;

namespace {

std::vector<std::string> split(const std::string& text) {
  std::vector<std::string> parts;
  std::stringstream in(text);
  for (std::string part; std::getline(in, part, ',');)
    if (!part.empty()) parts.push_back(part);
  return parts;
}

models::GPTConfig bench_config(const std::string& name) {
  models::GPTConfig c = models::GPTConfig::preset(name);
  c.model_type = models::GPTModelType::TextToImage;
  c.cls_token_num = 120;
  c.caption_dim = 2048;
  c.vocab_size = 16384;
  c.block_size = 256;
  c.rope_prefix = RopePrefix::Identity;  // torch_ref.py's prefix rows are the identity too
  c.token_dropout_p = c.resid_dropout_p = c.ffn_dropout_p = 0.0;
  c.validate();
  return c;
}

double seconds_since(std::chrono::steady_clock::time_point start) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
}

}  // namespace

int main(int argc, char** argv) {
  std::string json_path, models_arg = "GPT-B,GPT-XL", batches_arg = "1,16";
  int iters = 3;
  for (int i = 1; i < argc; ++i) {
    const std::string arg = argv[i];
    auto value = [&]() -> std::string {
      if (i + 1 >= argc) {
        std::cerr << "bench_generate_cuda: " << arg << " needs a value\n";
        std::exit(2);
      }
      return argv[++i];
    };
    if (arg == "--json")
      json_path = value();
    else if (arg == "--models")
      models_arg = value();
    else if (arg == "--batches")
      batches_arg = value();
    else if (arg == "--iters")
      iters = std::max(1, std::atoi(value().c_str()));
    else {
      std::cerr << "bench_generate_cuda: unknown option " << arg
                << " (--json FILE, --models GPT-B,GPT-XL, --batches 1,16, --iters N)\n";
      return 2;
    }
  }
  if (!cuda::device_available()) {
    std::cerr << "bench_generate_cuda: no CUDA device\n";
    return 1;
  }
  std::vector<std::string> rows;
  try {
    for (const std::string& name : split(models_arg)) {
      const models::GPTConfig config = bench_config(name);
      NoGradGuard no_grad;
      Generator gen(0);
      models::GPT<bf16, CUDA> model(config, gen);
      // Upstream zero-initialises the head; zero logits would make top-k keep every tied token.
      model.output.weight.copy_(
          Tensor<float, CUDA>::randn(model.output.weight.shape(), gen, 0.f, 0.02f).to<bf16>());
      model.eval();
      cuda::synchronize();
      for (const std::string& batch_text : split(batches_arg)) {
        const int64_t batch = std::atoll(batch_text.c_str());
        Generator data(1);
        std::vector<generate::GenerationRequest> requests(static_cast<size_t>(batch));
        for (int64_t b = 0; b < batch; ++b) {
          generate::GenerationRequest& r = requests[static_cast<size_t>(b)];
          r.caption = Tensor<float>::randn({config.cls_token_num, config.caption_dim}, data);
          r.cfg_scale = 4.0;
          r.sampling.top_k = 1000;
          r.seed = static_cast<uint64_t>(b);
        }
        generate::CudaDecoder<bf16> decoder(model, batch, config.block_size, true);
        auto start = std::chrono::steady_clock::now();
        (void)decoder.run(requests);  // captures the graph
        const double first = seconds_since(start);
        std::vector<double> times;
        for (int i = 0; i < iters; ++i) {
          start = std::chrono::steady_clock::now();
          const Tensor<int64_t> tokens = decoder.run(requests);
          times.push_back(seconds_since(start));
          if (tokens.size(1) != config.block_size) {
            std::cerr << "bench_generate_cuda: " << tokens.size(1) << " tokens, not "
                      << config.block_size << "\n";
            return 1;
          }
        }
        std::sort(times.begin(), times.end());
        const double s = times[times.size() / 2];
        char line[512];
        std::snprintf(line, sizeof line,
                      "{\"sec\": \"generate_cfg\", \"model\": \"%s\", \"variant\": "
                      "\"mentor_cudagraph\", \"images\": %lld, \"tokens\": %lld, \"s\": %.6f, "
                      "\"images_per_s\": %.4f, \"tokens_per_s\": %.1f, \"first_run_s\": %.4f}",
                      name.c_str(), static_cast<long long>(batch),
                      static_cast<long long>(config.block_size), s, static_cast<double>(batch) / s,
                      static_cast<double>(batch * config.block_size) / s, first);
        std::cout << line << std::endl;
        rows.push_back(line);
      }
    }
  } catch (const std::exception& e) {
    std::cerr << "bench_generate_cuda: " << e.what() << "\n";
    return 1;
  }
  if (!json_path.empty()) {
    std::ofstream out(json_path);
    out << "[\n";
    for (size_t i = 0; i < rows.size(); ++i)
      out << " " << rows[i] << (i + 1 < rows.size() ? ",\n" : "\n");
    out << "]\n";
    if (!out) {
      std::cerr << "bench_generate_cuda: cannot write " << json_path << "\n";
      return 1;
    }
  }
  return 0;
}
