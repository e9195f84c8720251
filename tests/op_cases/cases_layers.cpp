// Op cases of the layer ops: matmul and linear, the norms, attention, convolution, embedding and
// rotary embedding.
#include "mentor/ops/attention.hpp"
#include "mentor/ops/conv.hpp"
#include "mentor/ops/embedding.hpp"
#include "mentor/ops/matmul.hpp"
#include "mentor/ops/norm.hpp"
#include "mentor/ops/rope.hpp"
#include "registry.hpp"

namespace mentor::op_cases {

namespace {

template <class In>
using device_of = typename In::device;

// 2·M·N·K per matrix of a [..., M, K] @ [..., K, N] product, the batch from `batch`.
double matmul_flops(const Shape& batch, int64_t m, int64_t n, int64_t k) {
  return 2.0 * static_cast<double>(batch.numel()) * static_cast<double>(m * n * k);
}
Shape leading(const Shape& shape, int drop) {
  Shape out;
  for (int i = 0; i + drop < shape.rank(); ++i) out.push_back(shape[i]);
  return out;
}

void register_matmul(Registry& r) {
  // a [..., M, K] @ b [..., K, N] in every layout the goldens cover.
  auto mm_flops = [](const std::vector<Shape>& s) {
    const Shape& a = s[0];
    const Shape& b = s[1];
    const Shape batch = leading(a.rank() >= b.rank() ? a : b, 2);
    return matmul_flops(batch, a[a.rank() - 2], b[b.rank() - 1], a[a.rank() - 1]);
  };
  auto mm = [](const auto& in) { return matmul(in[0], in[1]); };
  r.add("matmul", {values("a", {3, 4}).perf({1024, 1024}), values("b", {4, 5}).perf({1024, 1024})},
        mm)
      .golden("matmul")
      .flops(mm_flops);
  r.add("matmul.batched",
        {values("a", {2, 3, 4}).perf({16, 256, 256}), values("b", {2, 4, 5}).perf({16, 256, 256})},
        mm)
      .golden("matmul_batched")
      .flops(mm_flops);
  r.add("matmul.broadcast",
        {values("a", {2, 3, 4}).perf({8, 512, 1024}), values("b", {4, 5}).perf({1024, 1024})}, mm)
      .golden("matmul_bcast")
      .flops(mm_flops);
  // Transposed operands are read in place: a is stored [K, M], b [N, K].
  auto transposed_flops = [](const std::vector<Shape>& s) {
    return matmul_flops(Shape{}, s[0][1], s[1][1], s[0][0]);
  };
  r.add("matmul.at_b",
        {values("a", {4, 3}).perf({1024, 1024}), values("b", {4, 5}).perf({1024, 1024})},
        [](const auto& in) { return matmul(in[0].t(), in[1]); })
      .golden("matmul_at_b")
      .flops(transposed_flops);
  r.add("matmul.a_bt",
        {values("a", {3, 4}).perf({1024, 1024}), values("b", {5, 4}).perf({1024, 1024})},
        [](const auto& in) { return matmul(in[0], in[1].t()); })
      .golden("matmul_a_bt")
      .flops([](const std::vector<Shape>& s) {
        return matmul_flops(Shape{}, s[0][0], s[1][0], s[0][1]);
      });

  // x [..., in] @ weight [out, in]^T + bias [out].
  auto linear_flops = [](const std::vector<Shape>& s) {
    return matmul_flops(Shape{}, s[0].numel() / s[1][1], s[1][0], s[1][1]);
  };
  r.add("linear",
        {values("x", {2, 5, 8}).perf({4, 1024, 1024}),
         values("weight", {6, 8}, -0.5, 0.5).perf({1024, 1024}), values("bias", {6}).perf({1024})},
        [](const auto& in) { return linear(in[0], in[1], in[2]); })
      .flops(linear_flops);
  r.add("linear.no_bias",
        {values("x", {7, 8}).perf({4096, 1024}),
         values("weight", {6, 8}, -0.5, 0.5).perf({1024, 1024})},
        [](const auto& in) { return linear(in[0], in[1]); })
      .flops(linear_flops);
}

void register_norms(Registry& r) {
  r.add("rms_norm",
        {values("x", {2, 3, 16}).perf({8192, 1024}), values("weight", {16}, 0.5, 1.5).perf({1024})},
        [](const auto& in) { return rms_norm(in[0], in[1], 1e-5); })
      .golden("rms_norm");
  r.add("rms_norm.no_weight", {values("x", {5, 33}).perf({8192, 1024})},
        [](const auto& in) { return rms_norm(in[0], absent(in), 1e-6); });
  r.add("layer_norm",
        {values("x", {2, 5, 12}).perf({8192, 1024}), values("weight", {12}, 0.5, 1.5).perf({1024}),
         values("bias", {12}).perf({1024})},
        [](const auto& in) { return layer_norm(in[0], in[1], in[2], 1e-5); })
      .golden("layer_norm");
  r.add("layer_norm.transposed_no_bias",
        {values("x", {12, 5}).perf({1024, 8192}), values("weight", {12}, 0.5, 1.5).perf({1024})},
        [](const auto& in) { return layer_norm(in[0].t(), in[1], absent(in), 1e-5); });
  r.add("group_norm",
        {values("x", {2, 8, 5, 6}).perf({8, 256, 32, 32}),
         values("weight", {8}, 0.5, 1.5).perf({256}), values("bias", {8}).perf({256})},
        [](const auto& in) { return group_norm(in[0], 4, in[1], in[2], 1e-6); })
      .golden("group_norm");
  // Training mode: the batch's statistics (no running statistics to move); eval mode: the
  // running statistics as constants.
  r.add("batch_norm",
        {values("x", {4, 3, 5, 6}).perf({32, 256, 16, 16}),
         values("weight", {3}, 0.5, 1.5).perf({256}), values("bias", {3}).perf({256})},
        [](const auto& in) {
          return batch_norm(in[0], in[1], in[2], absent(in), absent(in), true, 0.1, 1e-5);
        })
      .golden("batch_norm_train");
  r.add("batch_norm.eval",
        {values("x", {4, 3, 5, 6}).perf({32, 256, 16, 16}),
         values("weight", {3}, 0.5, 1.5).perf({256}), values("bias", {3}).perf({256}),
         constant("running_mean", {3}, -0.5, 0.5).perf({256}),
         constant("running_var", {3}, 0.5, 2).perf({256})},
        [](const auto& in) {
          return batch_norm(in[0], in[1], in[2], in[3], in[4], false, 0.1, 1e-5);
        })
      .golden("batch_norm_eval");
}

void register_attention(Registry& r) {
  // q [B, H, Sq, Dh], k [B, Hk, Sk, Dh], v [B, Hk, Sk, Dv]: two products of 2·Sq·Sk·D per head
  // (halved when causal and square); the backward recomputes the probabilities: five products.
  auto attention_flops = [](bool causal) {
    return [causal](const std::vector<Shape>& s) {
      const Shape& q = s[0];
      const Shape& v = s[2];
      const double per_head =
          2.0 * static_cast<double>(q[2] * v[2]) * static_cast<double>(q[3] + v[3]);
      return per_head * static_cast<double>(q[0] * q[1]) * (causal ? 0.5 : 1.0);
    };
  };
  auto qkv = [](const Shape& q, const Shape& kv, const Shape& perf_q, const Shape& perf_kv) {
    return std::vector<InputSpec>{values("q", q).perf(perf_q), values("k", kv).perf(perf_kv),
                                  values("v", kv).perf(perf_kv)};
  };
  const Shape small{2, 3, 5, 4};
  const Shape big{4, 16, 512, 64};
  r.add("scaled_dot_product_attention", qkv(small, small, big, big),
        [](const auto& in) { return scaled_dot_product_attention(in[0], in[1], in[2]); })
      .golden("attn_none")
      .flops(attention_flops(false), 2.5);
  r.add("scaled_dot_product_attention.causal", qkv(small, small, big, big),
        [](const auto& in) {
          using D = device_of<std::decay_t<decltype(in)>>;
          return scaled_dot_product_attention(in[0], in[1], in[2], AttnMask<D>::causal());
        })
      .golden("attn_causal")
      .flops(attention_flops(true), 2.5);
  // LlamaGen's prefix mask [B, 1, Sq, Sk] (the golden's); random here.
  std::vector<InputSpec> masked = qkv(small, small, big, big);
  masked.push_back(mask("mask", {2, 1, 5, 5}, 0.7).perf({4, 1, 512, 512}));
  r.add("scaled_dot_product_attention.mask", masked,
        [](const auto& in) {
          using D = device_of<std::decay_t<decltype(in)>>;
          return scaled_dot_product_attention(in[0], in[1], in[2], AttnMask<D>::from(in.masks[0]),
                                              0.5);
        })
      .golden("attn_mask")
      .flops(attention_flops(false), 2.5);
  // Grouped-query heads (4 on 2 kv heads), fewer queries than keys (decoding with a cache) and a
  // value width other than the key width.
  r.add("scaled_dot_product_attention.gqa_decode",
        {values("q", {1, 4, 3, 8}).perf({1, 32, 16, 128}),
         values("k", {1, 2, 7, 8}).perf({1, 8, 2048, 128}),
         values("v", {1, 2, 7, 6}).perf({1, 8, 2048, 128})},
        [](const auto& in) {
          using D = device_of<std::decay_t<decltype(in)>>;
          return scaled_dot_product_attention(in[0], in[1], in[2], AttnMask<D>::causal());
        })
      .flops(attention_flops(false), 2.5);
}

void register_conv(Registry& r) {
  // x [N, C, H, W], weight [O, C, kh, kw]: 2·C·kh·kw per output element; `padding` is what
  // each spatial dimension gains in all (2 · conv2d's padding, or pad2d's).
  auto conv_flops = [](int64_t stride, int64_t padding) {
    return [stride, padding](const std::vector<Shape>& s) {
      const Shape& x = s[0];
      const Shape& w = s[1];
      const int64_t ho = (x[2] + padding - w[2]) / stride + 1;
      const int64_t wo = (x[3] + padding - w[3]) / stride + 1;
      return 2.0 * static_cast<double>(x[0] * w[0] * ho * wo) *
             static_cast<double>(w[1] * w[2] * w[3]);
    };
  };
  auto conv_inputs = [](const Shape& x, const Shape& w, const Shape& perf_x, const Shape& perf_w) {
    return std::vector<InputSpec>{values("x", x).perf(perf_x),
                                  values("weight", w, -0.5, 0.5).perf(perf_w),
                                  values("bias", {w[0]}).perf({perf_w[0]})};
  };
  r.add("conv2d", conv_inputs({2, 3, 7, 6}, {4, 3, 3, 3}, {8, 64, 64, 64}, {64, 64, 3, 3}),
        [](const auto& in) { return conv2d(in[0], in[1], in[2], 1, 1); })
      .golden("conv3x3")
      .flops(conv_flops(1, 2));
  r.add("conv2d.1x1", conv_inputs({2, 3, 7, 6}, {4, 3, 1, 1}, {8, 256, 32, 32}, {256, 256, 1, 1}),
        [](const auto& in) { return conv2d(in[0], in[1], in[2]); })
      .golden("conv1x1")
      .flops(conv_flops(1, 0));
  // The VQ encoder's downsampling: pad right and bottom by one, then a stride-2 3x3 convolution.
  r.add("conv2d.stride2_padded",
        conv_inputs({2, 3, 8, 8}, {4, 3, 3, 3}, {8, 64, 64, 64}, {64, 64, 3, 3}),
        [](const auto& in) { return conv2d(pad2d(in[0], 0, 1, 0, 1), in[1], in[2], 2, 0); })
      .golden("conv_down")
      .flops(conv_flops(2, 1));
  r.add("conv2d.no_bias", {values("x", {1, 2, 5, 5}), values("weight", {3, 2, 3, 3}, -0.5, 0.5)},
        [](const auto& in) { return conv2d(in[0], in[1], absent(in), 1, 0); });
  r.add("pad2d", {values("x", {2, 3, 4, 5}).perf({8, 64, 128, 128})},
        [](const auto& in) { return pad2d(in[0], 1, 2, 0, 3); });
  r.add("upsample_nearest2x", {values("x", {2, 3, 4, 5}).perf({8, 64, 128, 128})},
        [](const auto& in) { return upsample_nearest2x(in[0]); })
      .golden("upsample_nearest2x");
}

void register_embeddings(Registry& r) {
  r.add("embedding",
        {values("table", {10, 6}).perf({16384, 1024}),
         indices("ids", {2, 5}, 10).perf({8, 512}, 16384)},
        [](const auto& in) { return embedding(in[0], in.ids[0]); })
      .golden("embedding");
  // The table is float by API, so the goldens (float64 tables) agree to its rounding only.
  auto rope_inputs = [] {
    return std::vector<InputSpec>{
        values("x", {2, 19, 2, 16}).perf({8, 1024, 16, 64}),
        float32_constant("freqs_cis", {19, 8, 2}, -1, 1).perf({1024, 32, 2})};
  };
  r.add("apply_rope", rope_inputs(),
        [](const auto& in) { return apply_rope(in[0], in.float32[0]); })
      .golden("rope_2d_identity")
      .golden_tolerance(2e-7, 2e-7);
  r.add("apply_rope.zero_prefix", rope_inputs(),
        [](const auto& in) { return apply_rope(in[0], in.float32[0]); })
      .golden("rope_2d_zero")
      .golden_tolerance(2e-7, 2e-7);
  // [B, H, S, Dh] seen as [B, S, H, Dh] (how attention feeds it), on a table narrowed to the
  // positions fed (decoding).
  r.add("apply_rope.transposed_narrowed",
        {values("x", {2, 3, 5, 8}), float32_constant("freqs_cis", {11, 4, 2}, -1, 1)},
        [](const auto& in) {
          return apply_rope(in[0].transpose(1, 2), in.float32[0].narrow(0, 6, 5));
        });
}

}  // namespace

void register_layer_cases(Registry& r) {
  register_matmul(r);
  register_norms(r);
  register_attention(r);
  register_conv(r);
  register_embeddings(r);
}

}  // namespace mentor::op_cases
