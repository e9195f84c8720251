// The VQ tokenizer: upstream fixture (llamagen_vq_s0), parameter counts of the named presets
// against LlamaGen's README (via shapes only), and the quantizer's pieces against direct double
// precision computations.
#include <cmath>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <limits>

#include "catch.hpp"
#include "fixture_files.hpp"
#include "verify/verify_vq.hpp"

namespace test_vq {

using namespace mentor;
using namespace mentor::models;
using namespace mentor::verify;

namespace {

nlohmann::json fixture_config() { return test::fixture_config("upstream", "llamagen_vq"); }

// A small config exercising three levels, one res block and different encoder/decoder multipliers.
VQConfig small_config() {
  VQConfig c;
  c.ch = 32;
  c.encoder_ch_mult = {1, 2, 2};
  c.decoder_ch_mult = {1, 1, 2};
  c.num_res_blocks = 1;
  c.z_channels = 16;
  c.codebook_size = 32;
  c.codebook_embed_dim = 8;
  c.codebook_usage_window = 64;
  return c;
}

// Independent closed-form count of upstream's VQModel parameters (conv = O*I*k*k + O, GroupNorm =
// 2C), written from the architecture description rather than from vq.hpp's plan.
int64_t count_by_formula(const VQConfig& c) {
  auto conv = [](int64_t i, int64_t o, int64_t k) { return o * i * k * k + o; };
  auto gn = [](int64_t ch) { return 2 * ch; };
  auto res = [&](int64_t i, int64_t o) {
    return gn(i) + conv(i, o, 3) + gn(o) + conv(o, o, 3) + (i != o ? conv(i, o, 1) : 0);
  };
  auto attn = [&](int64_t ch) { return gn(ch) + 4 * conv(ch, ch, 1); };
  const auto& em = c.encoder_ch_mult;
  const auto& dm = c.decoder_ch_mult;
  const int64_t levels = static_cast<int64_t>(em.size());
  int64_t n = conv(c.in_channels, c.ch, 3);
  int64_t in = c.ch;
  for (int64_t i = 0; i < levels; ++i) {
    const int64_t out = c.ch * em[i];
    for (int64_t j = 0; j < c.num_res_blocks; ++j, in = out)
      n += res(in, out) + (i == levels - 1 ? attn(out) : 0);
    if (i != levels - 1) n += conv(out, out, 3);
  }
  n += 2 * res(in, in) + attn(in) + gn(in) + conv(in, c.z_channels, 3);
  const int64_t dlevels = static_cast<int64_t>(dm.size());
  in = c.ch * dm.back();
  n += conv(c.z_channels, in, 3) + 2 * res(in, in) + attn(in);
  for (int64_t i = dlevels - 1; i >= 0; --i) {
    const int64_t out = c.ch * dm[i];
    for (int64_t j = 0; j <= c.num_res_blocks; ++j, in = out)
      n += res(in, out) + (i == dlevels - 1 ? attn(out) : 0);
    if (i != 0) n += conv(out, out, 3);
  }
  n += gn(in) + conv(in, c.out_channels, 3);
  n += c.codebook_size * c.codebook_embed_dim + conv(c.z_channels, c.codebook_embed_dim, 1) +
       conv(c.codebook_embed_dim, c.z_channels, 1);
  return n;
}

template <class T>
std::vector<double> as_doubles(const Tensor<T>& t) {
  auto v = t.template to<double>().to_vector();
  return {v.begin(), v.end()};
}

}  // namespace

// Fixtures are required (tests/fixture_files.hpp): a missing file fails. The fixture's GroupNorm
// affines are random, so an ignored weight or bias fails here.
TEST_CASE("VQ: upstream fixture llamagen_vq_s0 (float32)", "[vq][fixture]") {
  MENTOR_FIXTURE_TEST_OR_SKIP();
  const nlohmann::json config = fixture_config();
  {
    const auto path = test::fixture_file("upstream", "llamagen_vq_s0.safetensors");
    INFO("fixture " << path.string());
    auto file = io::SafeTensorsFile::open(path.string());
    VerifyReport report = verify_vq<float, CPU>(file, config);
    report.print(std::cout);
    // Every output, the indices, the buffer, decode_code and every parameter's gradient.
    int64_t grads = 0;
    for (const auto& c : report.comparisons) {
      INFO(c.name << ": " << c.error << " (tol " << c.tolerance << ")");
      CHECK(c.pass());
      grads += c.name.rfind("grad.", 0) == 0;
    }
    CHECK(grads == static_cast<int64_t>(vq_parameter_shapes(vq_fixture_config(config)).size()));
    CHECK(report.comparisons.size() == static_cast<size_t>(grads) + 9);
    CHECK(report.pass());
  }
}

TEST_CASE("VQ: presets' parameter counts match LlamaGen's README without building them", "[vq]") {
  // [L] README: vq_ds16_c2i 72M parameters, vq_ds8_c2i 70M.
  const VQConfig vq16 = VQConfig::vq_16(), vq8 = VQConfig::vq_8();
  const int64_t n16 = vq_parameter_count(vq16), n8 = vq_parameter_count(vq8);
  CHECK(n16 == count_by_formula(vq16));
  CHECK(n8 == count_by_formula(vq8));
  CHECK(std::llround(static_cast<double>(n16) / 1e6) == 72);
  CHECK(std::llround(static_cast<double>(n8) / 1e6) == 70);
  CHECK(vq16.downsample_factor() == 16);
  CHECK(vq8.downsample_factor() == 8);
  CHECK(VQConfig::preset("VQ-16").encoder_ch_mult == std::vector<int64_t>{1, 1, 2, 2, 4});
  CHECK(VQConfig::preset("VQ_8").decoder_ch_mult == std::vector<int64_t>{1, 2, 2, 4});
  // The codebook and quant convs: 16384 x 8 codes.
  const auto shapes = vq_parameter_shapes(vq16);
  bool found = false;
  for (const auto& [name, shape] : shapes)
    if (name == "quantize.embedding.weight") found = shape == Shape{16384, 8};
  CHECK(found);
}

TEST_CASE("VQ: parameter_shapes agrees with the built model, names and shapes", "[vq]") {
  std::vector<VQConfig> configs{small_config()};
  if (!test::fixtures_skipped()) configs.push_back(vq_fixture_config(fixture_config()));
  for (const VQConfig& c : configs) {
    Generator gen(3);
    VQModel<float> model(c, gen);
    const auto expected = vq_parameter_shapes(c);
    const auto params = model.named_parameters();
    REQUIRE(params.size() == expected.size());
    std::map<std::string, Shape> by_name(expected.begin(), expected.end());
    for (const auto& [name, tensor] : params) {
      INFO(name);
      REQUIRE(by_name.count(name) == 1);
      CHECK(by_name.at(name) == tensor->shape());
    }
    CHECK(model.parameter_count() == count_by_formula(c));
    const auto buffers = model.named_buffers();
    REQUIRE(buffers.size() == 1);
    CHECK(buffers[0].first == "quantize.codebook_used");
    CHECK(buffers[0].second->shape() == Shape{c.codebook_usage_window});
  }
}

TEST_CASE("VQ: shapes through encode / decode / decode_code", "[vq]") {
  const VQConfig c = small_config();
  Generator gen(5);
  VQModel<float> model(c, gen);
  model.eval();
  NoGradGuard no_grad;
  Generator data(11);
  auto image = Tensor<float>::rand({2, 3, 16, 24}, data, -1.f, 1.f);
  auto q = model.encode(image);
  CHECK(q.quant.shape() == Shape{2, 8, 4, 6});
  CHECK(q.indices.shape() == Shape{48});
  CHECK(q.height == 4);
  CHECK(q.width == 6);
  auto dec = model.decode(q.quant);
  CHECK(dec.shape() == Shape{2, 3, 16, 24});
  // decode_code of the codes = decode of the quantized latents (same codebook rows).
  auto dec2 = model.decode_code(q.indices.reshape({2, 4, 6}), 2, 4, 6);
  auto a = as_doubles(dec), b = as_doubles(dec2);
  double worst = 0;
  for (size_t i = 0; i < a.size(); ++i) worst = std::max(worst, std::abs(a[i] - b[i]));
  CHECK(worst < 1e-5);
  auto dec3 = model.decode_code(q.indices, Shape{2, 8, 4, 6});
  CHECK(dec3.shape() == dec.shape());
}

TEST_CASE("VQ: quantizer against a direct double-precision computation", "[vq]") {
  for (bool l2 : {true, false}) {
    INFO("l2_norm " << l2);
    VQConfig c = small_config();
    c.codebook_l2_norm = l2;
    c.codebook_size = 16;
    c.codebook_embed_dim = 4;
    c.commit_loss_beta = 0.25;
    Generator gen(7);
    VQVectorQuantizer<double> quantizer(c, gen);
    // Spread the codebook so that nearest codes are well separated.
    quantizer.embedding.weight = Tensor<double>::randn({16, 4}, gen).requires_grad_();
    auto z = Tensor<double>::randn({2, 4, 3, 5}, gen).requires_grad_();
    auto r = quantizer(z);

    const auto zv = z.detach().to_vector();
    const auto ev = quantizer.embedding.weight.detach().to_vector();
    auto normalise = [&](std::vector<double> v, int64_t rows) {
      if (!l2) return v;
      for (int64_t i = 0; i < rows; ++i) {
        double n = 0;
        for (int d = 0; d < 4; ++d) n += v[i * 4 + d] * v[i * 4 + d];
        n = std::max(std::sqrt(n), 1e-12);
        for (int d = 0; d < 4; ++d) v[i * 4 + d] /= n;
      }
      return v;
    };
    // rows of z in (b, h, w) order.
    std::vector<double> zrows(30 * 4);
    for (int b = 0; b < 2; ++b)
      for (int y = 0; y < 3; ++y)
        for (int x = 0; x < 5; ++x)
          for (int d = 0; d < 4; ++d)
            zrows[((b * 3 + y) * 5 + x) * 4 + d] = zv[((b * 4 + d) * 3 + y) * 5 + x];
    zrows = normalise(zrows, 30);
    const auto book = normalise(ev, 16);
    const auto idx = r.indices.to_vector();
    REQUIRE(idx.size() == 30);
    double sq = 0;
    for (int i = 0; i < 30; ++i) {
      int best = 0;
      double best_d = std::numeric_limits<double>::infinity();
      for (int n = 0; n < 16; ++n) {
        double dist = 0;
        for (int d = 0; d < 4; ++d) dist += std::pow(zrows[i * 4 + d] - book[n * 4 + d], 2);
        if (dist < best_d) best_d = dist, best = n;
      }
      CHECK(idx[i] == best);
      sq += best_d;
    }
    const double mse = sq / 120.0;
    CHECK(r.vq_loss.item() == Approx(mse).epsilon(1e-12));
    CHECK(r.commit_loss.item() == Approx(0.25 * mse).epsilon(1e-12));
    CHECK(!r.entropy_loss.defined());
    // quant holds the chosen codebook rows, channels first.
    const auto qv = r.quant.contiguous().to_vector();
    for (int b = 0; b < 2; ++b)
      for (int y = 0; y < 3; ++y)
        for (int x = 0; x < 5; ++x)
          for (int d = 0; d < 4; ++d) {
            const int64_t row = (b * 3 + y) * 5 + x;
            CHECK(qv[((b * 4 + d) * 3 + y) * 5 + x] ==
                  Approx(book[idx[row] * 4 + d]).margin(1e-14));
          }

    if (!l2) {
      // Straight-through: d sum(quant * w) / dz = w exactly. The codebook gets only vq_loss's
      // gradient 2 (e_k - z_i) / numel summed over the rows assigned to code k.
      auto weights = Tensor<double>::randn({2, 4, 3, 5}, gen);
      auto objective = sum(r.quant * weights) + r.vq_loss;
      objective.backward();
      const auto gz = z.grad().to_vector();
      const auto wv = weights.to_vector();
      // vq_loss does not reach z (stop-gradient), so z's gradient is exactly the weights.
      for (size_t i = 0; i < gz.size(); ++i) CHECK(gz[i] == Approx(wv[i]).margin(1e-14));
      std::vector<double> expected(16 * 4, 0.0);
      for (int i = 0; i < 30; ++i)
        for (int d = 0; d < 4; ++d)
          expected[idx[i] * 4 + d] += 2 * (book[idx[i] * 4 + d] - zrows[i * 4 + d]) / 120.0;
      const auto ge = quantizer.embedding.weight.grad().to_vector();
      for (size_t i = 0; i < ge.size(); ++i) CHECK(ge[i] == Approx(expected[i]).margin(1e-14));
    }
  }
}

TEST_CASE("VQ: entropy loss against a direct double-precision computation", "[vq]") {
  VQConfig c = small_config();
  c.codebook_size = 6;
  c.codebook_embed_dim = 3;
  c.entropy_loss_ratio = 0.5;
  c.entropy_temperature = 0.5;  // soft enough that every probability matters
  Generator gen(17);
  VQVectorQuantizer<double> quantizer(c, gen);
  quantizer.embedding.weight = Tensor<double>::randn({6, 3}, gen).requires_grad_();
  auto z = Tensor<double>::randn({1, 3, 2, 2}, gen);
  auto r = quantizer(z);
  REQUIRE(r.entropy_loss.defined());

  const auto zv = z.to_vector();
  auto book = quantizer.codebook().detach().to_vector();
  std::vector<std::vector<double>> probs(4, std::vector<double>(6));
  for (int i = 0; i < 4; ++i) {
    double zr[3], n = 0;
    for (int d = 0; d < 3; ++d) zr[d] = zv[d * 4 + i], n += zr[d] * zr[d];
    for (double& v : zr) v /= std::sqrt(n);
    double total = 0;
    for (int k = 0; k < 6; ++k) {
      double dist = 0;
      for (int d = 0; d < 3; ++d) dist += std::pow(zr[d] - book[k * 3 + d], 2);
      probs[i][k] = std::exp(-dist / 0.5);
      total += probs[i][k];
    }
    for (double& p : probs[i]) p /= total;
  }
  double sample_entropy = 0, avg_entropy = 0;
  for (int k = 0; k < 6; ++k) {
    double avg = 0;
    for (int i = 0; i < 4; ++i) {
      avg += probs[i][k] / 4;
      sample_entropy -= probs[i][k] * std::log(probs[i][k]) / 4;
    }
    avg_entropy -= avg * std::log(avg + 1e-5);
  }
  CHECK(r.entropy_loss.item() == Approx(0.5 * (sample_entropy - avg_entropy)).epsilon(1e-10));
  CHECK(r.codebook_loss().item() ==
        Approx(r.vq_loss.item() + r.commit_loss.item() + r.entropy_loss.item()).epsilon(1e-12));
}

TEST_CASE("VQ: codebook usage statistics follow upstream's recent-codes buffer", "[vq]") {
  VQConfig c = small_config();
  c.codebook_usage_window = 10;
  c.codebook_size = 8;
  c.codebook_embed_dim = 4;
  Generator gen(23);
  VQVectorQuantizer<float> quantizer(c, gen);
  auto z1 = Tensor<float>::randn({1, 4, 2, 3}, gen);  // 6 codes
  auto z2 = Tensor<float>::randn({1, 4, 2, 3}, gen);  // 6 more: the window keeps the last 10

  quantizer.eval();
  quantizer(z1);
  CHECK(quantizer.usage().codes_seen == 0);  // eval mode records nothing (upstream)

  quantizer.train();
  auto i1 = quantizer(z1).indices.to_vector();
  auto i2 = quantizer(z2).indices.to_vector();
  std::vector<int64_t> expected(i1.begin() + 2, i1.end());
  expected.insert(expected.end(), i2.begin(), i2.end());
  const auto buffer = quantizer.codebook_used.to_vector();
  REQUIRE(buffer.size() == 10);
  for (size_t i = 0; i < 10; ++i) CHECK(buffer[i] == static_cast<float>(expected[i]));

  CodebookUsage u = quantizer.usage();
  CHECK(u.codes_seen == 10);
  std::vector<int64_t> hist(8, 0);
  for (int64_t id : expected) ++hist[id];
  CHECK(u.histogram == hist);
  int64_t distinct = 0;
  double entropy = 0;
  for (int64_t h : hist) {
    if (h == 0) continue;
    ++distinct;
    entropy -= h / 10.0 * std::log(h / 10.0);
  }
  CHECK(u.distinct == distinct);
  CHECK(u.fraction_used == Approx(distinct / 8.0));
  CHECK(u.perplexity == Approx(std::exp(entropy)));
  CHECK(u.upstream_usage == Approx(distinct / 8.0));  // the window is full: no padding zeros

  // A loaded buffer (a checkpoint) replaces the window.
  std::vector<float> loaded(10, 0.f);
  loaded[8] = 3.f, loaded[9] = 5.f;
  quantizer.codebook_used = Tensor<float>::from_vector(loaded, Shape{10});
  u = quantizer.usage();
  CHECK(u.codes_seen == 2);
  CHECK(u.distinct == 2);
  CHECK(u.upstream_usage == Approx(3 / 8.0));  // upstream counts the padding zeros as code 0
  // ... and so does one copied into the buffer in place (Trainer::load reads checkpoints so).
  std::vector<float> copied(10, 0.f);
  copied[7] = 1.f, copied[8] = 1.f, copied[9] = 6.f;
  quantizer.codebook_used.copy_(Tensor<float>::from_vector(copied, Shape{10}));
  u = quantizer.usage();
  CHECK(u.codes_seen == 3);
  CHECK(u.distinct == 2);
  CHECK(u.histogram[1] == 2);
  CHECK(u.histogram[6] == 1);
  quantizer.reset_usage();
  CHECK(quantizer.usage().codes_seen == 0);
}

TEST_CASE("VQ: bf16 decode_code stays close to float32", "[vq][bf16]") {
  const VQConfig c = small_config();
  Generator gen(29);
  VQModel<float> model(c, gen);
  Generator gen16(29);
  VQModel<bf16> model16(c, gen16);
  auto params = model.named_parameters();
  auto params16 = model16.named_parameters();
  REQUIRE(params.size() == params16.size());
  for (size_t i = 0; i < params.size(); ++i)
    *params16[i].second = params[i].second->detach().to<bf16>();
  model.eval();
  model16.eval();
  NoGradGuard no_grad;
  Generator data(31);
  std::vector<int64_t> ids(2 * 4 * 4);
  for (size_t i = 0; i < ids.size(); ++i) ids[i] = static_cast<int64_t>((i * 7) % 32);
  auto codes = Tensor<int64_t>::from_vector(ids, Shape{2, 4, 4});
  auto ref = model.decode_code(codes, 2, 4, 4);
  auto low = model16.decode_code(codes, 2, 4, 4);
  REQUIRE(low.shape() == ref.shape());
  auto a = as_doubles(low), b = as_doubles(ref);
  double num = 0, den = 0;
  for (size_t i = 0; i < a.size(); ++i) num += (a[i] - b[i]) * (a[i] - b[i]), den += b[i] * b[i];
  // bf16 keeps 8 significant bits per activation: ~1e-2 relative after a dozen layers.
  CHECK(std::sqrt(num / den) < 3e-2);
}

TEST_CASE("VQ: error paths name the problem", "[vq]") {
  VQConfig c = small_config();
  c.ch = 48;  // not a multiple of the 32 GroupNorm groups
  CHECK_THROWS_WITH(c.validate(), Catch::Contains("ch 48"));
  CHECK_THROWS_WITH(VQConfig::preset("VQ-32"), Catch::Contains("VQ-32"));
  CHECK_THROWS_WITH(VQConfig::from_json(nlohmann::json{{"ch_mult", "1,2"}}),
                    Catch::Contains("ch_mult"));
  CHECK_THROWS_WITH(VQConfig::from_json(nlohmann::json{{"ch_mult", {1, 0}}}),
                    Catch::Contains("non-positive multiplier 0"));

  Generator gen(1);
  VQModel<float> model(small_config(), gen);
  model.eval();
  NoGradGuard no_grad;
  CHECK_THROWS_WITH(model.encode(Tensor<float>::zeros({1, 4, 16, 16})),
                    Catch::Contains("[1, 4, 16, 16]"));
  CHECK_THROWS_WITH(model.decode(Tensor<float>::zeros({1, 3, 4, 4})),
                    Catch::Contains("[1, 3, 4, 4]"));
  auto codes = Tensor<int64_t>::zeros({2, 4, 4});
  CHECK_THROWS_WITH(model.decode_code(codes, 2, 4, 5), Catch::Contains("32 code ids"));
  auto bad = Tensor<int64_t>::full({1, 2, 2}, 99);  // codebook has 32 entries
  CHECK_THROWS_WITH(model.decode_code(bad, 1, 2, 2), Catch::Contains("99"));

  c = small_config();
  c.dropout_p = 0.1;
  Generator gen2(2);
  VQModel<float> dropped(c, gen2);
  dropped.train();
  auto image = Tensor<float>::zeros({1, 3, 8, 8});
  CHECK_THROWS_WITH(dropped.forward(image), Catch::Contains("needs a Generator"));
  Generator dropout_gen(9);
  CHECK(dropped.forward(image, &dropout_gen).dec.shape() == Shape{1, 3, 8, 8});
}

}  // namespace test_vq
