// The models on CUDA against the same models on the CPU: a tiny MENTOR composition (CLIP vision
// tower, projector, T5 encoder, the <image> splice, the LlamaGen GPT and the VQ tokenizer) with
// random weights, copied from a CPU instance into a CUDA one. Compared: the encoder's output with
// and without images, the training forward's logits, the loss and every trainable parameter's
// gradient, KV-cached greedy generation, VQ encode (codes) and decode. Against upstream's own
// numbers the CUDA models are checked by `mentor-verify --device cuda` (tools/device-check.sh).
// Every test is skipped with a warning when no GPU is present.
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"  // see test_cuda_runtime.cpp
#endif
#include <cstdint>
#include <string>
#include <vector>

#include "catch.hpp"
#include "mentor/core/cuda_api.hpp"
#include "mentor/generate/greedy.hpp"
#include "mentor/models/mentor.hpp"
#include "op_harness.hpp"
#include "require_gpu.hpp"

namespace test_cuda_models {

using namespace mentor;
using namespace mentor::models;

namespace {

constexpr int64_t kImageToken = 39;

// The configuration of tests/models/test_mentor_model.cpp, every dropout off (eval anyway).
MentorConfig tiny_config() {
  MentorConfig c;
  MultimodalEncoderConfig& e = c.encoder;
  e.vision.hidden_size = 16;
  e.vision.intermediate_size = 24;
  e.vision.num_hidden_layers = 3;
  e.vision.num_attention_heads = 2;
  e.vision.image_size = 16;
  e.vision.patch_size = 8;  // 4 tokens per image
  e.text.vocab_size = 40;
  e.text.d_model = 12;
  e.text.d_kv = 4;
  e.text.d_ff = 20;
  e.text.num_layers = 2;
  e.text.num_heads = 3;
  e.text.relative_attention_num_buckets = 8;
  e.text.relative_attention_max_distance = 16;
  e.text.dropout_rate = 0.0;
  e.image_token_id = kImageToken;
  GPTConfig& g = c.gpt;
  g = GPTConfig{};
  g.dim = 32;
  g.n_layer = 2;
  g.n_head = 4;
  g.multiple_of = 16;
  g.vocab_size = 16;
  g.block_size = 4;  // 2x2 code grid
  g.cls_token_num = 10;
  g.caption_dim = 12;
  g.model_type = GPTModelType::TextToImage;
  g.rope_prefix = RopePrefix::Identity;
  g.token_dropout_p = g.resid_dropout_p = g.ffn_dropout_p = 0.0;
  VQConfig& q = c.vq;
  q.ch = 32;
  q.encoder_ch_mult = q.decoder_ch_mult = {1, 2};  // 4x4 images -> 2x2 codes
  q.num_res_blocks = 1;
  q.z_channels = 32;
  q.codebook_size = 16;
  q.codebook_embed_dim = 4;
  q.codebook_usage_window = 64;
  return c;
}

// Copies every parameter and buffer of `cpu` into `gpu` (same configuration, same names). The
// GPT's output head gets random weights first: upstream zero-initialises it, which would make the
// logits constant and stop every gradient.
void copy_weights(MentorModel<float, CPU>& cpu, MentorModel<float, CUDA>& gpu) {
  Generator gen(5);
  cpu.gpt.output.weight =
      nn::normal_init<float, CPU>(cpu.gpt.output.weight.shape(), gen).requires_grad_();
  NoGradGuard no_grad;
  auto copy_all = [](auto from, auto to) {
    REQUIRE(from.size() == to.size());
    for (size_t i = 0; i < from.size(); ++i) {
      REQUIRE(from[i].first == to[i].first);
      INFO(from[i].first);
      REQUIRE(from[i].second->shape() == to[i].second->shape());
      to[i].second->copy_(from[i].second->template to<CUDA>());
    }
  };
  copy_all(cpu.named_parameters(), gpu.named_parameters());
  copy_all(cpu.named_buffers(), gpu.named_buffers());
}

Tensor<bool> mask_of(const std::vector<int>& flags, const Shape& shape) {
  std::vector<bool> v;
  for (int f : flags) v.push_back(f != 0);
  return Tensor<bool>::from_vector(v, shape);
}

// Two prompts of 9 positions, one reference image each (4 placeholders), padded on the right.
struct Batch {
  Tensor<int64_t> ids = Tensor<int64_t>::from_vector(
      {3, 4, kImageToken, kImageToken, kImageToken, kImageToken, 1, 0, 0,  //
       kImageToken, kImageToken, kImageToken, kImageToken, 5, 6, 7, 1, 0},
      Shape{2, 9});
  Tensor<bool> mask = mask_of({1, 1, 1, 1, 1, 1, 1, 0, 0, 1, 1, 1, 1, 1, 1, 1, 1, 0}, Shape{2, 9});
  Tensor<int64_t> tokens = Tensor<int64_t>::from_vector({1, 5, 9, 15, 0, 2, 2, 7}, Shape{2, 4});
};

// Float32 on both devices; the device sums in other orders (GEMM tiling, reductions), so
// agreement is to accumulated float rounding, not bits (TF32 is off: it would miss these by 10x).
constexpr double kForwardTolerance = 1e-4;
constexpr double kGradientTolerance = 1e-3;

}  // namespace

TEST_CASE("cuda models: the MENTOR composition (CLIP, T5, GPT) matches the CPU", "[cuda][models]") {
  MENTOR_REQUIRE_GPU();
  const MentorConfig c = tiny_config();
  Generator gen_cpu(21), gen_gpu(21);
  MentorModel<float, CPU> cpu(c, gen_cpu);
  MentorModel<float, CUDA> gpu(c, gen_gpu);
  copy_weights(cpu, gpu);
  cpu.eval();
  gpu.eval();
  const Batch batch;
  Generator image_gen(7);
  const Tensor<float> images = Tensor<float>::randn({2, 3, 16, 16}, image_gen);
  const Tensor<int64_t, CUDA> ids = batch.ids.to<CUDA>();
  const Tensor<bool, CUDA> mask = batch.mask.to<CUDA>();
  const Tensor<float, CUDA> images_gpu = images.to<CUDA>();

  SECTION("encoder: CLIP patches, projector, <image> splice and T5") {
    NoGradGuard no_grad;
    const Tensor<float> expected = cpu.multimodal_encoder(batch.ids, batch.mask, images);
    const Tensor<float> got = gpu.multimodal_encoder(ids, mask, images_gpu).to<CPU>();
    CHECK(test::rel_error(got, expected) <= kForwardTolerance);
    // Text only: T5 alone.
    const Tensor<int64_t> text =
        Tensor<int64_t>::from_vector({3, 4, 5, 1, 6, 7, 8, 1}, Shape{2, 4});
    const Tensor<float> text_expected = cpu.multimodal_encoder(text, Tensor<bool>());
    const Tensor<float> text_got =
        gpu.multimodal_encoder(text.to<CUDA>(), Tensor<bool, CUDA>()).to<CPU>();
    CHECK(test::rel_error(text_got, text_expected) <= kForwardTolerance);
  }

  SECTION("training forward, loss and the gradient of every parameter") {
    // Everything but the VQ is trainable as constructed: CLIP gets gradients too.
    const Tensor<int64_t> inputs = batch.tokens.narrow(1, 0, 3);
    const Tensor<bool> keep = Tensor<bool>::zeros({2});
    Tensor<float> logits = cpu.forward_train(inputs, batch.ids, batch.mask, images, keep);
    Tensor<float, CUDA> logits_gpu =
        gpu.forward_train(inputs.to<CUDA>(), ids, mask, images_gpu, keep.to<CUDA>());
    CHECK(test::rel_error(logits_gpu.to<CPU>(), logits) <= kForwardTolerance);
    Tensor<float> loss = cpu.loss(logits, batch.tokens);
    Tensor<float, CUDA> loss_gpu = gpu.loss(logits_gpu, batch.tokens.to<CUDA>());
    CHECK(loss_gpu.item() == Approx(loss.item()).epsilon(kForwardTolerance));
    loss.backward();
    loss_gpu.backward();
    auto cpu_params = cpu.named_parameters();
    auto gpu_params = gpu.named_parameters();
    REQUIRE(cpu_params.size() == gpu_params.size());
    int compared = 0;
    for (size_t i = 0; i < cpu_params.size(); ++i) {
      const Tensor<float>& p = *cpu_params[i].second;
      if (!p.requires_grad()) continue;
      INFO(cpu_params[i].first);
      REQUIRE(gpu_params[i].second->grad().defined() == p.grad().defined());
      if (!p.grad().defined()) continue;  // unused in this forward (e.g. guidance embedding)
      CHECK(test::rel_error(gpu_params[i].second->grad().to<CPU>(), p.grad()) <=
            kGradientTolerance);
      ++compared;
    }
    CHECK(compared > 20);  // CLIP, projector, T5 and the GPT all took part
  }

  SECTION("KV-cached greedy generation gives the same tokens") {
    NoGradGuard no_grad;
    ConditionPrefix<float, CPU> prefix = cpu.condition(batch.ids, batch.mask, images);
    ConditionPrefix<float, CUDA> prefix_gpu = gpu.condition(ids, mask, images_gpu);
    CHECK(test::rel_error(prefix_gpu.embeddings.to<CPU>(), prefix.embeddings) <= kForwardTolerance);
    const Tensor<int64_t> tokens =
        generate::generate_greedy(cpu.gpt, prefix.embeddings, prefix.mask, 4, 1.0);
    const Tensor<int64_t> tokens_gpu =
        generate::generate_greedy(gpu.gpt, prefix_gpu.embeddings, prefix_gpu.mask, 4, 1.0)
            .to<CPU>();
    CHECK(tokens_gpu.to_vector() == tokens.to_vector());
  }
}

TEST_CASE("cuda models: the VQ tokenizer encodes and decodes as on the CPU", "[cuda][models]") {
  MENTOR_REQUIRE_GPU();
  const MentorConfig c = tiny_config();
  Generator gen_cpu(22), gen_gpu(22);
  MentorModel<float, CPU> cpu(c, gen_cpu);
  MentorModel<float, CUDA> gpu(c, gen_gpu);
  copy_weights(cpu, gpu);
  Generator image_gen(9);
  const Tensor<float> targets = Tensor<float>::rand({2, 3, 4, 4}, image_gen, -1.f, 1.f);
  const Tensor<int64_t> codes = cpu.encode_images(targets);
#if defined(MENTOR_WITH_CUDNN) && !MENTOR_WITH_CUDNN
  // Built without cuDNN: convolutions on CUDA are a clear error, not a crash.
  CHECK_THROWS_WITH(gpu.encode_images(targets.to<CUDA>()), Catch::Contains("needs cuDNN"));
#else
  // Nearest codes: the same unless two codebook entries are within rounding of each other, which
  // random codebooks of 16 entries are not.
  CHECK(gpu.encode_images(targets.to<CUDA>()).to<CPU>().to_vector() == codes.to_vector());
  const Tensor<float> decoded = cpu.decode_codes(codes, 2, 2);
  const Tensor<float> decoded_gpu = gpu.decode_codes(codes.to<CUDA>(), 2, 2).to<CPU>();
  CHECK(test::rel_error(decoded_gpu, decoded) <= kForwardTolerance);
#endif
}

}  // namespace test_cuda_models
