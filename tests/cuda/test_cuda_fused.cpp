// The fused CUDA kernels of backend/cuda/fused.hpp against compositions of CPU ops (float32
// reference on the same values): softmax cross-entropy with ignored rows, multi-tensor AdamW
// against a direct implementation of PyTorch's update, the global gradient norm, and flash
// attention with left padding and a KV-cache query offset. float32 within 1e-5 relative, bf16
// within 1e-2.
// Skipped with a warning when no GPU is present.
#if defined(__GNUC__) && !defined(__clang__)
// GCC 12 at -O3 reports a false -Wmaybe-uninitialized inside Shape::numel() once Shape
// temporaries are inlined into these test bodies (Shape zero-initialises its storage).
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#endif
#include <cmath>
#include <cstdint>
#include <string>
#include <type_traits>
#include <vector>

#include "catch.hpp"
#include "mentor/backend/cuda/fused.hpp"
#include "mentor/core/cuda_api.hpp"
#include "mentor/ops/ops.hpp"
#include "op_harness.hpp"
#include "require_gpu.hpp"

namespace test_cuda_fused {

using namespace mentor;

namespace {

template <class T>
constexpr double tolerance() {
  return std::is_same_v<T, float> ? 1e-5 : 1e-2;
}

template <class T>
Tensor<T> uniform(const Shape& shape, uint64_t seed, float lo = -1.f, float hi = 1.f) {
  Generator gen(seed);
  return Tensor<float>::rand(shape, gen, lo, hi).template to<T>();
}

// A float32 CPU leaf holding the values of t (for the reference computation).
template <class T>
Tensor<float> leaf(const Tensor<T>& t) {
  Tensor<float> out = t.template to<float>().detach().clone().detach();
  out.requires_grad_();
  return out;
}

template <class T>
double err(const Tensor<T, CUDA>& got, const Tensor<float>& expected) {
  return test::rel_error(got.template to<CPU>(), expected);
}

}  // namespace

TEMPLATE_TEST_CASE("cuda fused: softmax cross-entropy", "[cuda][fused]", float, bf16) {
  MENTOR_REQUIRE_GPU();
  using T = TestType;
  for (int64_t vocab : {int64_t{16384}, int64_t{1001}, int64_t{300}}) {
    const int64_t rows = 23, ignore = -100;
    const auto logits = uniform<T>({rows, vocab}, 21, -6.f, 6.f);
    Generator gen(22);
    std::vector<int64_t> targets =
        Tensor<float>::rand(Shape{rows}, gen, 0.f, static_cast<float>(vocab))
            .template to<int64_t>()
            .to_vector();
    targets[3] = ignore;
    targets[10] = ignore;
    // Reference per-row losses, lse and gradient (scale 0.5, ignored rows excluded).
    Tensor<float> lf = logits.template to<float>();
    Tensor<float> logp = log_softmax(lf, -1);
    std::vector<float> lp = logp.to_vector(), lv = lf.to_vector();
    std::vector<float> loss_ref(rows), lse_ref(rows), grad_ref(static_cast<size_t>(rows * vocab));
    for (int64_t i = 0; i < rows; ++i) {
      lse_ref[i] = lv[i * vocab] - lp[i * vocab];
      loss_ref[i] = targets[i] == ignore ? 0.f : -lp[i * vocab + targets[i]];
      for (int64_t v = 0; v < vocab; ++v) {
        const float p = std::exp(lp[i * vocab + v]);
        grad_ref[i * vocab + v] =
            targets[i] == ignore ? 0.f : 0.5f * (p - (v == targets[i] ? 1.f : 0.f));
      }
    }
    Tensor<T, CUDA> lg = logits.template to<CUDA>();
    Tensor<int64_t, CUDA> tg = Tensor<int64_t>::from_vector(targets).template to<CUDA>();
    Tensor<float, CUDA> loss = Tensor<float, CUDA>::empty(Shape{rows}),
                        lse = Tensor<float, CUDA>::empty(Shape{rows});
    cuda::softmax_xent_forward(lg.data(), tg.data(), rows, vocab, ignore, loss.data(), lse.data());
    INFO("vocab = " << vocab << " (" << dtype_name<T>() << ")");
    // Float outputs either way; bf16 logits use the fast exponential (a few ulp).
    const double stat_tol = std::is_same_v<T, float> ? 1e-5 : 1e-4;
    CHECK(err(loss, Tensor<float>::from_vector(loss_ref)) <= stat_tol);
    CHECK(err(lse, Tensor<float>::from_vector(lse_ref)) <= stat_tol);
    Tensor<T, CUDA> grad = Tensor<T, CUDA>::empty(Shape{rows, vocab});
    cuda::softmax_xent_backward(lg.data(), tg.data(), lse.data(), nullptr, 0.5f, rows, vocab,
                                ignore, grad.data());
    const Shape grad_shape{rows, vocab};
    CHECK(err(grad, Tensor<float>::from_vector(grad_ref, grad_shape)) <= tolerance<T>());
  }
}

TEMPLATE_TEST_CASE("cuda fused: multi-tensor AdamW", "[cuda][fused]", float, bf16) {
  MENTOR_REQUIRE_GPU();
  using T = TestType;
  const std::vector<int64_t> sizes = {1, 7, 16384, 40000, 333};
  cuda::AdamWHyper hyper;
  hyper.lr = 1e-2f;
  hyper.beta1 = 0.9f;
  hyper.beta2 = 0.95f;
  hyper.eps = 1e-8f;
  hyper.weight_decay = 0.05f;
  hyper.grad_scale = 0.5f;
  std::vector<Tensor<T, CUDA>> params, grads;
  std::vector<Tensor<float, CUDA>> m, v;
  std::vector<std::vector<double>> p_ref, m_ref, v_ref;
  std::vector<std::vector<float>> g_host;
  for (size_t i = 0; i < sizes.size(); ++i) {
    const Tensor<T> p = uniform<T>(Shape{sizes[i]}, 31 + i);
    const Tensor<T> g = uniform<T>(Shape{sizes[i]}, 41 + i);
    params.push_back(p.template to<CUDA>());
    grads.push_back(g.template to<CUDA>());
    m.push_back(Tensor<float, CUDA>::zeros(Shape{sizes[i]}));
    v.push_back(Tensor<float, CUDA>::zeros(Shape{sizes[i]}));
    std::vector<float> pf = p.template to<float>().to_vector();
    p_ref.emplace_back(pf.begin(), pf.end());
    m_ref.emplace_back(pf.size(), 0.0);
    v_ref.emplace_back(pf.size(), 0.0);
    g_host.push_back(g.template to<float>().to_vector());
  }
  for (int64_t step = 1; step <= 3; ++step) {
    hyper.step = step;
    std::vector<cuda::AdamWTensor<T>> list;
    for (size_t i = 0; i < sizes.size(); ++i) {
      cuda::AdamWTensor<T> t;
      t.param = params[i].data();
      t.grad = grads[i].data();
      t.exp_avg = m[i].data();
      t.exp_avg_sq = v[i].data();
      t.numel = sizes[i];
      t.weight_decay = i % 2 == 0;
      list.push_back(t);
    }
    cuda::adamw_multi_tensor(list, hyper);
    // PyTorch's AdamW, in double.
    const double bc1 = 1.0 - std::pow(0.9, static_cast<double>(step));
    const double bc2 = 1.0 - std::pow(0.95, static_cast<double>(step));
    for (size_t i = 0; i < sizes.size(); ++i) {
      for (size_t j = 0; j < p_ref[i].size(); ++j) {
        const double g = static_cast<double>(g_host[i][j]) * 0.5;
        double& p = p_ref[i][j];
        if (i % 2 == 0) p *= 1.0 - 1e-2 * 0.05;
        m_ref[i][j] = 0.9 * m_ref[i][j] + 0.1 * g;
        v_ref[i][j] = 0.95 * v_ref[i][j] + 0.05 * g * g;
        p -= 1e-2 / bc1 * m_ref[i][j] / (std::sqrt(v_ref[i][j] / bc2) + 1e-8);
      }
    }
  }
  for (size_t i = 0; i < sizes.size(); ++i) {
    std::vector<float> expected(p_ref[i].begin(), p_ref[i].end());
    const Shape shape{sizes[i]};
    INFO("tensor " << i << " of " << sizes[i] << " (" << dtype_name<T>() << ")");
    // bf16 parameters are rounded after every step: compare at bf16 precision.
    CHECK(err(params[i], Tensor<float>::from_vector(expected, shape)) <= tolerance<T>());
    std::vector<float> m_expected(m_ref[i].begin(), m_ref[i].end());
    CHECK(err(m[i], Tensor<float>::from_vector(m_expected, shape)) <= 1e-5);
  }
  // Global gradient norm.
  std::vector<const T*> pointers;
  std::vector<int64_t> numels;
  double expected_sq = 0;
  for (size_t i = 0; i < sizes.size(); ++i) {
    pointers.push_back(grads[i].data());
    numels.push_back(sizes[i]);
    for (float g : g_host[i]) expected_sq += static_cast<double>(g) * g;
  }
  Tensor<float, CUDA> sq = Tensor<float, CUDA>::empty(Shape{});
  cuda::squared_norm_multi_tensor(pointers, numels, sq.data());
  CHECK(std::abs(static_cast<double>(sq.item()) - expected_sq) <= 1e-6 * expected_sq);
}

TEST_CASE("cuda fused: flash attention with left padding and a query offset", "[cuda][fused]") {
  MENTOR_REQUIRE_GPU();
  using T = bf16;
  struct Case {
    int64_t B, H, Hk, Sq, Sk, D;
    bool causal;
    std::vector<int32_t> key_start;
  };
  const std::vector<Case> cases = {
      {3, 2, 2, 70, 70, 64, true, {0, 5, 69}},
      {2, 4, 2, 16, 100, 64, true, {3, 64}},  // last 16 positions of a cache
      {2, 2, 1, 50, 50, 128, false, {10, 0}},
      {1, 2, 2, 20, 20, 64, true, {20}},  // every key padded: zeros everywhere
  };
  for (const Case& c : cases) {
    const auto q = uniform<T>({c.B, c.H, c.Sq, c.D}, 51, -2.f, 2.f);
    const auto k = uniform<T>({c.B, c.Hk, c.Sk, c.D}, 52, -2.f, 2.f);
    const auto v = uniform<T>({c.B, c.Hk, c.Sk, c.D}, 53);
    const auto go = uniform<T>({c.B, c.H, c.Sq, c.D}, 54);
    const int64_t offset = c.Sk - c.Sq;
    // Reference: CPU attention in float with the equivalent explicit mask.
    Tensor<bool> mask = Tensor<bool>::empty(Shape{c.B, 1, c.Sq, c.Sk});
    for (int64_t b = 0; b < c.B; ++b)
      for (int64_t i = 0; i < c.Sq; ++i)
        for (int64_t j = 0; j < c.Sk; ++j)
          mask.data()[(b * c.Sq + i) * c.Sk + j] =
              j >= c.key_start[b] && (!c.causal || j <= i + offset);
    Tensor<float> qf = leaf(q), kf = leaf(k), vf = leaf(v);
    Tensor<float> out_ref = scaled_dot_product_attention(qf, kf, vf, AttnMask<CPU>::from(mask));
    out_ref.backward(go.to<float>());

    cuda::FlashAttentionShape shape;
    shape.batch = c.B, shape.heads = c.H, shape.kv_heads = c.Hk, shape.q_len = c.Sq;
    shape.kv_len = c.Sk, shape.head_dim = c.D, shape.q_offset = offset, shape.causal = c.causal;
    Tensor<T, CUDA> qg = q.to<CUDA>(), kg = k.to<CUDA>(), vg = v.to<CUDA>(), gog = go.to<CUDA>();
    Tensor<int32_t, CUDA> starts = Tensor<int32_t>::from_vector(c.key_start).to<CUDA>();
    Tensor<T, CUDA> out = Tensor<T, CUDA>::empty(qg.shape());
    Tensor<float, CUDA> lse = Tensor<float, CUDA>::empty(Shape{c.B, c.H, c.Sq});
    cuda::flash_attention_forward(qg.data(), kg.data(), vg.data(), starts.data(), shape, out.data(),
                                  lse.data());
    Tensor<T, CUDA> dq = Tensor<T, CUDA>::empty(qg.shape()),
                    dk = Tensor<T, CUDA>::empty(kg.shape()),
                    dv = Tensor<T, CUDA>::empty(vg.shape());
    cuda::flash_attention_backward(qg.data(), kg.data(), vg.data(), out.data(), gog.data(),
                                   lse.data(), starts.data(), shape, dq.data(), dk.data(),
                                   dv.data());
    INFO("B" << c.B << " H" << c.H << "/" << c.Hk << " Sq" << c.Sq << " Sk" << c.Sk << " D" << c.D);
    const bool all_padded = c.key_start.size() == 1 && c.key_start[0] >= c.Sk;
    if (all_padded) {
      CHECK(test::max_abs_diff(out.to<CPU>().to<float>(), out_ref.detach()) == 0.0);
      CHECK(test::max_abs_diff(dk.to<CPU>().to<float>(), Tensor<float>::zeros(kf.shape())) == 0.0);
      continue;
    }
    CHECK(err(out, out_ref.detach()) <= 1e-2);
    CHECK(err(dq, qf.grad()) <= 1e-2);
    CHECK(err(dk, kf.grad()) <= 1e-2);
    CHECK(err(dv, vf.grad()) <= 1e-2);
  }
}

}  // namespace test_cuda_fused
