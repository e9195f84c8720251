#pragma once
// LlamaGen's PatchGAN discriminator (tokenizer/tokenizer_image/discriminator_patchgan.py, after
// pix2pix and taming-transformers) and the hinge losses of its VQ training (vq_loss.py).
//
//   main.0   Conv2d(in, ndf, 4, stride 2, pad 1), then LeakyReLU(0.2)
//   n = 1 .. n_layers - 1:
//            Conv2d(ndf·m(n-1), ndf·m(n), 4, stride 2, pad 1, no bias), BatchNorm, LeakyReLU(0.2)
//   n = n_layers:
//            Conv2d(ndf·m(n-1), ndf·m(n), 4, stride 1, pad 1, no bias), BatchNorm, LeakyReLU(0.2)
//   last     Conv2d(ndf·m(n_layers), 1, 4, stride 1, pad 1): one logit per patch
// with m(n) = min(2^n, 8). State names are upstream's `main.{i}` indices of its nn.Sequential
// (the LeakyReLUs hold no state): for 3 layers main.0, main.2 + main.3 (BatchNorm), main.5 + 6,
// main.8 + 9, main.11. Init as upstream: conv weights N(0, 0.02), the two biased convs keep
// PyTorch's default bias init, BatchNorm weights N(1, 0.02) and biases 0.
//
// Losses (hinge): discriminator 0.5 (mean relu(1 - D(x)) + mean relu(1 + D(x̂))), generator
// -mean D(x̂).
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "mentor/core/error.hpp"
#include "mentor/core/tensor.hpp"
#include "mentor/io/json_config.hpp"
#include "mentor/nn/layers.hpp"
#include "mentor/nn/module.hpp"
#include "mentor/ops/elementwise.hpp"
#include "mentor/ops/reduce.hpp"
#include "mentor/ops/unary.hpp"

namespace mentor::models {

struct PatchGANConfig {
  int64_t in_channels = 3;
  int64_t ndf = 64;  // filters of the first conv (upstream disc_dim)
  int64_t n_layers = 3;
  double leaky_slope = 0.2;

  void validate() const {
    MENTOR_CHECK(in_channels >= 1 && ndf >= 1 && n_layers >= 1 && n_layers <= 8,
                 "PatchGANConfig: in_channels ", in_channels, ", ndf ", ndf, ", n_layers ",
                 n_layers, " (each >= 1, n_layers <= 8)");
  }
  static PatchGANConfig from_json(const nlohmann::json& j, const std::string& path = {}) {
    io::JsonConfigReader r(j, "PatchGANConfig", path);
    PatchGANConfig c;
    r.read("in_channels", c.in_channels);
    r.read("ndf", c.ndf);
    r.read("n_layers", c.n_layers);
    r.read("leaky_slope", c.leaky_slope);
    r.finish();
    c.validate();
    return c;
  }
  nlohmann::json to_json() const {
    return {{"in_channels", in_channels},
            {"ndf", ndf},
            {"n_layers", n_layers},
            {"leaky_slope", leaky_slope}};
  }
};

template <FloatingElement T, class D = CPU>
class PatchGANDiscriminator : public nn::Module<T, D> {
 public:
  PatchGANDiscriminator(const PatchGANConfig& config, Generator& gen)
      : config((config.validate(), config)) {
    const auto mult = [](int64_t n) { return std::min<int64_t>(int64_t{1} << n, 8); };
    const int64_t ndf = config.ndf;
    add_conv(config.in_channels, ndf, 2, true, gen);
    for (int64_t n = 1; n <= config.n_layers; ++n) {
      add_conv(ndf * mult(n - 1), ndf * mult(n), n < config.n_layers ? 2 : 1, false, gen);
      add_norm(ndf * mult(n), gen);
    }
    add_conv(ndf * mult(config.n_layers), 1, 1, true, gen);
  }

  // Logits [N, 1, h, w], one per patch, for images [N, in_channels, H, W] in [-1, 1].
  Tensor<T, D> operator()(const Tensor<T, D>& x) const {
    MENTOR_CHECK_SHAPE(x.dim() == 4 && x.size(1) == config.in_channels,
                       "PatchGANDiscriminator: input must be [N, ", config.in_channels,
                       ", H, W], got ", x.shape().str());
    Tensor<T, D> h = convs_[0](x);
    h = leaky_relu(h, config.leaky_slope);
    for (size_t i = 0; i < norms_.size(); ++i)
      h = leaky_relu(norms_[i](convs_[i + 1](h)), config.leaky_slope);
    return convs_.back()(h);
  }

  void visit(nn::Visitor<T, D>& v) override {
    // Upstream's nn.Sequential indices: conv, [norm], activation per block.
    int64_t index = 0;
    v.child("main." + std::to_string(index), convs_[0]);
    index += 2;
    for (size_t i = 0; i < norms_.size(); ++i) {
      v.child("main." + std::to_string(index), convs_[i + 1]);
      v.child("main." + std::to_string(index + 1), norms_[i]);
      index += 3;
    }
    v.child("main." + std::to_string(index), convs_.back());
  }

  PatchGANConfig config;

 private:
  void add_conv(int64_t in, int64_t out, int64_t stride, bool bias, Generator& gen) {
    nn::Conv2d<T, D> conv(in, out, 4, stride, 1, gen, bias);
    conv.weight = nn::normal_init<T, D>({out, in, 4, 4}, gen, 0.02).requires_grad_();
    convs_.push_back(std::move(conv));
  }
  void add_norm(int64_t channels, Generator& gen) {
    nn::BatchNorm<T, D> norm(channels);
    norm.weight = add_scalar(nn::normal_init<T, D>({channels}, gen, 0.02), 1.0).requires_grad_();
    norms_.push_back(std::move(norm));
  }

  std::vector<nn::Conv2d<T, D>> convs_;
  std::vector<nn::BatchNorm<T, D>> norms_;
};

// 0.5 (mean relu(1 - real) + mean relu(1 + fake)): the discriminator's hinge loss.
template <FloatingElement T, class D>
Tensor<T, D> hinge_d_loss(const Tensor<T, D>& logits_real, const Tensor<T, D>& logits_fake) {
  return mul_scalar(
      add(mean(relu(add_scalar(neg(logits_real), 1.0))), mean(relu(add_scalar(logits_fake, 1.0)))),
      0.5);
}

// -mean(fake): the generator's hinge loss.
template <FloatingElement T, class D>
Tensor<T, D> hinge_gen_loss(const Tensor<T, D>& logits_fake) {
  return neg(mean(logits_fake));
}

}  // namespace mentor::models
