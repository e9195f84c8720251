// LlamaGen's PatchGAN discriminator and hinge losses against PyTorch (tests/goldens/patchgan
// .safetensors by tools/reference/make_patchgan_golden.py, float64): the same weights give the
// same logits in training and eval mode, the same losses, the same gradients of every parameter
// and of the fake images, and the same running statistics afterwards; state names are upstream's.
#include <cmath>
#include <string>
#include <vector>

#include "catch.hpp"
#include "mentor/io/safetensors.hpp"
#include "mentor/models/patchgan.hpp"

namespace test_patchgan {

using namespace mentor;
using models::PatchGANConfig;
using models::PatchGANDiscriminator;

namespace {

const io::SafeTensorsFile& golden() {
  static const io::SafeTensorsFile file = io::SafeTensorsFile::open(
      std::string(MENTOR_SOURCE_DIR) + "/tests/goldens/patchgan.safetensors");
  return file;
}

Tensor<double> tensor(const std::string& key) {
  const auto& info = golden().info(key);
  return Tensor<double>::from_vector(golden().read_as<double>(key), Shape(info.shape));
}

double max_relative(const Tensor<double>& a, const Tensor<double>& b) {
  REQUIRE(a.shape() == b.shape());
  const auto va = a.to_vector(), vb = b.to_vector();
  double worst = 0, scale = 1e-12;
  for (double v : vb) scale = std::max(scale, std::abs(v));
  for (size_t i = 0; i < va.size(); ++i) worst = std::max(worst, std::abs(va[i] - vb[i]));
  return worst / scale;
}

}  // namespace

TEST_CASE("PatchGAN: logits, hinge losses, gradients and running statistics match PyTorch",
          "[models][patchgan]") {
  PatchGANConfig config;
  config.ndf = 4;
  Generator gen(0);
  PatchGANDiscriminator<double> d(config, gen);
  // Every state name is upstream's, and the golden holds every one.
  int loaded = 0;
  for (auto& [name, t] : d.state()) {
    NoGradGuard loading;
    INFO(name);
    REQUIRE(golden().contains("init." + name));
    const Tensor<double> value = tensor("init." + name);
    REQUIRE(value.shape() == t->shape());
    t->copy_(value);
    ++loaded;
  }
  CHECK(loaded == 5 + 2 + 3 * 4);  // 5 conv weights, 2 conv biases, 3 BatchNorms x 4 tensors
  std::vector<std::string> expected_names;
  for (const auto& key : golden().keys())
    if (key.rfind("init.", 0) == 0) expected_names.push_back(key.substr(5));
  CHECK(expected_names.size() == static_cast<size_t>(loaded));

  const Tensor<double> real = tensor("in.real");
  Tensor<double> fake = tensor("in.fake");
  fake.requires_grad_();
  d.train();
  const Tensor<double> logits_real = d(real);
  const Tensor<double> logits_fake = d(fake);
  CHECK(max_relative(logits_real, tensor("train.logits_real")) < 1e-12);
  CHECK(max_relative(logits_fake, tensor("train.logits_fake")) < 1e-12);
  const Tensor<double> d_loss = models::hinge_d_loss(logits_real, logits_fake);
  const Tensor<double> g_loss = models::hinge_gen_loss(logits_fake);
  CHECK(d_loss.item() == Approx(tensor("train.d_loss").item()).epsilon(1e-12));
  CHECK(g_loss.item() == Approx(tensor("train.g_loss").item()).epsilon(1e-12));
  d_loss.backward();
  for (auto& [name, p] : d.named_parameters()) {
    INFO("gradient of " << name);
    CHECK(max_relative(p->grad(), tensor("grad." + name)) < 1e-10);
  }
  CHECK(max_relative(fake.grad(), tensor("grad.fake")) < 1e-10);
  for (auto& [name, t] : d.state())
    if (name.find("running") != std::string::npos) {
      INFO(name << " after the two forward passes");
      CHECK(max_relative(*t, tensor("after." + name)) < 1e-12);
    }
  d.eval();
  NoGradGuard no_grad;
  CHECK(max_relative(d(real), tensor("eval.logits_real")) < 1e-12);
}

TEST_CASE("PatchGAN: the config is strict and the input shape is checked", "[models][patchgan]") {
  CHECK_THROWS_WITH(PatchGANConfig::from_json(nlohmann::json::parse(R"({"n_layer": 3})")),
                    Catch::Contains("n_layer"));
  CHECK_THROWS_WITH(PatchGANConfig::from_json(nlohmann::json::parse(R"({"ndf": 0})")),
                    Catch::Contains("ndf 0"));
  Generator gen(0);
  PatchGANConfig config;
  config.ndf = 2;
  PatchGANDiscriminator<float> d(config, gen);
  CHECK_THROWS_WITH(d(Tensor<float>::zeros({1, 1, 32, 32})), Catch::Contains("[N, 3, H, W]"));
}

}  // namespace test_patchgan
