#pragma once
// Scaled dot-product attention: softmax(q k^T * scale, masked) v, with grouped-query heads, causal
// or explicit boolean masks, and a memory-aware CPU kernel.
//
// CPU algorithm (FlashAttention-like in its memory use, GEMM-based for speed): the work is cut into
// blocks of kQueryBlock query rows of one (batch, head). A block's scores are one GEMM
// [rows, Dh] x [Dh, keys], its softmax runs row by row (vectorised exp_shifted), and its output is
// a second GEMM [rows, keys] x [keys, Dv]; with a causal mask only the keys some row of the block
// may see are multiplied. So at most threads × kQueryBlock × Sk scores exist at once, never
// B×H×Sq×Sk. The forward pass saves each row's logsumexp (acc_t<T>, [B, H, Sq]); the backward pass
// recomputes the probabilities of each block from it (P = exp(s − lse)) instead of storing them,
// then dV += Pᵀ dO, dP = dO Vᵀ, dS = P ∘ (dP − rowsum(dO ∘ O)) · scale, dQ = dS K, dK += dSᵀ Q.
// Backward tasks own one (batch, kv head) each, so the dK/dV accumulation of the query heads that
// share a kv head (GQA) never races.
//
// Masks: causal with Sq < Sk means the queries are the last Sq positions (KV-cache decoding):
// query i sees keys j <= i + Sk − Sq. Explicit masks are bool, true = attend, broadcast as
// [B or 1, H or 1, Sq, Sk] (lower ranks are right-aligned). A query row that sees no key at all
// outputs zeros (and passes no gradient).
#include <algorithm>
#include <array>
#include <bit>
#include <cmath>
#include <cstdint>
#include <limits>
#include <tuple>
#include <type_traits>
#include <vector>

#include "mentor/backend/cpu/gemm.hpp"
#include "mentor/backend/cpu/parallel.hpp"
#include "mentor/backend/launch/attention.hpp"
#include "mentor/core/tensor.hpp"
#include "mentor/ops/dispatch.hpp"

namespace mentor {

// Which keys each query attends to. Explicit: `explicit_mask` is bool, true = attend.
template <class D = CPU>
struct AttnMask {
  MaskKind kind = MaskKind::None;
  Tensor<bool, D> explicit_mask;

  static AttnMask causal() {
    AttnMask mask;
    mask.kind = MaskKind::Causal;
    return mask;
  }
  static AttnMask from(Tensor<bool, D> explicit_mask) {
    AttnMask mask;
    mask.kind = MaskKind::Explicit;
    mask.explicit_mask = std::move(explicit_mask);
    return mask;
  }
};

namespace detail {

inline constexpr int64_t kQueryBlock = 128;

// The geometry of one attention call on contiguous acc-typed (float or double) buffers.
template <class A>
struct AttentionProblem {
  int64_t B = 0, H = 0, Hk = 0, Sq = 0, Sk = 0, Dh = 0, Dv = 0;
  A scale = 0;
  MaskKind kind = MaskKind::None;
  const bool* mask = nullptr;
  std::array<int64_t, 4> mask_strides{};

  int64_t group() const { return H / Hk; }
  // Keys [0, key_end(i)) are the only ones query row i may see.
  int64_t key_end(int64_t i) const {
    if (kind != MaskKind::Causal) return Sk;
    return std::clamp<int64_t>(i + Sk - Sq + 1, 0, Sk);
  }
  // The explicit mask row of query i of head (b, h), read with stride mask_strides[3]; null if
  // none.
  const bool* mask_row(int64_t b, int64_t h, int64_t i) const {
    if (kind != MaskKind::Explicit) return nullptr;
    return mask + b * mask_strides[0] + h * mask_strides[1] + i * mask_strides[2];
  }
};

// x[j] = exp(x[j] − shift) for j < n. Branch-free so that it vectorises: n = round(v log2 e),
// r = v − n ln2 (ln2 split in two so n ln2_hi is exact), exp(r) by a polynomial on |r| <= ln2/2,
// times 2^n built in the exponent bits. Float: Cephes' expf polynomial (~1 ulp); double: Taylor to
// degree 13 (truncation < 1e-17). Arguments are clamped to the normal range, so very negative
// ones give the smallest normal number instead of 0 (callers zero masked entries themselves).
// (Eigen's vectorised exp would do, but GCC 12 reports false -Wmaybe-uninitialized in its AVX-512
// code.)
template <class A>
void exp_shifted(A* x, int64_t n, A shift) {
  if constexpr (std::is_same_v<A, float>) {
    for (int64_t j = 0; j < n; ++j) {
      const float v = std::min(std::max(x[j] - shift, -87.0f), 88.0f);
      const float k = std::floor(v * 1.44269504088896341f + 0.5f);
      const float r = v - k * 0.693359375f + k * 2.12194440e-4f;
      float p = 1.9875691500e-4f;
      p = p * r + 1.3981999507e-3f;
      p = p * r + 8.3334519073e-3f;
      p = p * r + 4.1665795894e-2f;
      p = p * r + 1.6666665459e-1f;
      p = p * r + 5.0000001201e-1f;
      p = p * r * r + r + 1.0f;
      const int32_t bits = (static_cast<int32_t>(k) + 127) << 23;
      x[j] = p * std::bit_cast<float>(bits);
    }
  } else {
    static_assert(std::is_same_v<A, double>, "exp_shifted: float or double");
    for (int64_t j = 0; j < n; ++j) {
      const double v = std::min(std::max(x[j] - shift, -708.0), 709.0);
      const double k = std::floor(v * 1.4426950408889634 + 0.5);
      const double r = v - k * 6.93147180369123816490e-01 - k * 1.90821492927058770002e-10;
      double p = 1.0 / 6227020800.0;  // 1/13!
      p = p * r + 1.0 / 479001600.0;
      p = p * r + 1.0 / 39916800.0;
      p = p * r + 1.0 / 3628800.0;
      p = p * r + 1.0 / 362880.0;
      p = p * r + 1.0 / 40320.0;
      p = p * r + 1.0 / 5040.0;
      p = p * r + 1.0 / 720.0;
      p = p * r + 1.0 / 120.0;
      p = p * r + 1.0 / 24.0;
      p = p * r + 1.0 / 6.0;
      p = p * r + 0.5;
      p = p * r + 1.0;
      p = p * r + 1.0;
      const int64_t bits = (static_cast<int64_t>(k) + 1023) << 52;
      x[j] = p * std::bit_cast<double>(bits);
    }
  }
}

// Turns row `s` (scores of keys [0, n), already scaled) into probabilities for query i of (b, h),
// given its logsumexp `lse` when `known_lse`, else computing and returning it. Keys the mask hides
// (and keys >= key_end) get probability 0.
template <class A>
A softmax_row(const AttentionProblem<A>& p, int64_t b, int64_t h, int64_t i, A* s, int64_t n,
              bool known_lse, A lse) {
  const int64_t end = std::min(p.key_end(i), n);
  const bool* m = p.mask_row(b, h, i);
  const int64_t ms = p.mask_strides[3];
  constexpr A kNegInf = -std::numeric_limits<A>::infinity();
  std::fill(s + end, s + n, A(0));
  if (!known_lse) {
    A max_score = kNegInf;
    for (int64_t j = 0; j < end; ++j)
      if (!m || m[j * ms]) max_score = std::max(max_score, s[j]);
    if (max_score == kNegInf) {  // nothing to attend to (or every score is -inf)
      std::fill(s, s + end, A(0));
      return kNegInf;
    }
    exp_shifted(s, end, max_score);
    if (m)
      for (int64_t j = 0; j < end; ++j)
        if (!m[j * ms]) s[j] = 0;
    A sum = 0;
    for (int64_t j = 0; j < end; ++j) sum += s[j];
    const A inv_sum = A(1) / sum;
    for (int64_t j = 0; j < end; ++j) s[j] *= inv_sum;
    return max_score + std::log(sum);
  }
  if (lse == kNegInf) {
    std::fill(s, s + end, A(0));
    return lse;
  }
  exp_shifted(s, end, lse);
  if (m)
    for (int64_t j = 0; j < end; ++j)
      if (!m[j * ms]) s[j] = 0;
  return lse;
}

// Forward of query rows [i0, i1) of head (b, h): out rows and lse entries.
template <class A>
void attention_forward_block(const AttentionProblem<A>& p, const A* q, const A* k, const A* v,
                             A* out, A* lse, int64_t b, int64_t h, int64_t i0, int64_t i1) {
  const int64_t rows = i1 - i0, hk = h / p.group();
  const int64_t n = p.key_end(i1 - 1);  // key_end grows with i: the last row sees the most keys
  const A* qb = q + ((b * p.H + h) * p.Sq + i0) * p.Dh;
  const A* kb = k + (b * p.Hk + hk) * p.Sk * p.Dh;
  const A* vb = v + (b * p.Hk + hk) * p.Sk * p.Dv;
  A* ob = out + ((b * p.H + h) * p.Sq + i0) * p.Dv;
  A* lb = lse + (b * p.H + h) * p.Sq + i0;
  if (n == 0) {
    std::fill(ob, ob + rows * p.Dv, A(0));
    std::fill(lb, lb + rows, -std::numeric_limits<A>::infinity());
    return;
  }
  std::vector<A> scores(static_cast<size_t>(rows * n));
  cpu::gemm(false, true, rows, n, p.Dh, p.scale, qb, p.Dh, kb, p.Dh, A(0), scores.data(), n);
  cpu::parallel_for(rows, 8, [&](int64_t r0, int64_t r1) {
    for (int64_t r = r0; r < r1; ++r)
      lb[r] = softmax_row(p, b, h, i0 + r, scores.data() + r * n, n, false, A(0));
  });
  cpu::gemm(false, false, rows, p.Dv, n, A(1), scores.data(), n, vb, p.Dv, A(0), ob, p.Dv);
}

template <class A>
void attention_forward_cpu(const AttentionProblem<A>& p, const A* q, const A* k, const A* v, A* out,
                           A* lse) {
  const int64_t blocks = (p.Sq + kQueryBlock - 1) / kQueryBlock;
  const int64_t tasks = p.B * p.H * blocks;
  auto run = [&](int64_t t) {
    const int64_t bh = t / blocks, block = t % blocks;
    const int64_t i0 = block * kQueryBlock, i1 = std::min(p.Sq, i0 + kQueryBlock);
    attention_forward_block(p, q, k, v, out, lse, bh / p.H, bh % p.H, i0, i1);
  };
  if (tasks >= cpu::num_threads()) {
    cpu::parallel_for(tasks, 1, [&](int64_t t0, int64_t t1) {
      for (int64_t t = t0; t < t1; ++t) run(t);
    });
  } else {
    for (int64_t t = 0; t < tasks; ++t) run(t);  // few large blocks: the GEMMs use the threads
  }
}

// Backward of kv head (b, hk): all query heads of its group, all query blocks. grad_k/grad_v rows
// of this kv head are accumulated here (zeroed first); grad_q rows of the group's heads are
// written.
template <class A>
void attention_backward_task(const AttentionProblem<A>& p, const A* q, const A* k, const A* v,
                             const A* out, const A* grad_out, const A* lse, A* grad_q, A* grad_k,
                             A* grad_v, int64_t b, int64_t hk) {
  const A* kb = k + (b * p.Hk + hk) * p.Sk * p.Dh;
  const A* vb = v + (b * p.Hk + hk) * p.Sk * p.Dv;
  A* dkb = grad_k + (b * p.Hk + hk) * p.Sk * p.Dh;
  A* dvb = grad_v + (b * p.Hk + hk) * p.Sk * p.Dv;
  std::fill(dkb, dkb + p.Sk * p.Dh, A(0));
  std::fill(dvb, dvb + p.Sk * p.Dv, A(0));
  std::vector<A> probs, grad_scores;
  for (int64_t h = hk * p.group(); h < (hk + 1) * p.group(); ++h) {
    for (int64_t i0 = 0; i0 < p.Sq; i0 += kQueryBlock) {
      const int64_t i1 = std::min(p.Sq, i0 + kQueryBlock), rows = i1 - i0;
      const int64_t row0 = (b * p.H + h) * p.Sq + i0;  // first row of this block in [B*H*Sq]
      const A* qb = q + row0 * p.Dh;
      const A* ob = out + row0 * p.Dv;
      const A* gob = grad_out + row0 * p.Dv;
      const A* lb = lse + row0;
      A* dqb = grad_q + row0 * p.Dh;
      const int64_t n = p.key_end(i1 - 1);
      if (n == 0) {
        std::fill(dqb, dqb + rows * p.Dh, A(0));
        continue;
      }
      probs.resize(static_cast<size_t>(rows * n));
      grad_scores.resize(static_cast<size_t>(rows * n));
      // P = exp(scale q kᵀ − lse), masked.
      cpu::gemm(false, true, rows, n, p.Dh, p.scale, qb, p.Dh, kb, p.Dh, A(0), probs.data(), n);
      // dP = dO vᵀ
      cpu::gemm(false, true, rows, n, p.Dv, A(1), gob, p.Dv, vb, p.Dv, A(0), grad_scores.data(), n);
      cpu::parallel_for(rows, 8, [&](int64_t r0, int64_t r1) {
        for (int64_t r = r0; r < r1; ++r) {
          A* pr = probs.data() + r * n;
          softmax_row(p, b, h, i0 + r, pr, n, true, lb[r]);
          // rowsum(P ∘ dP) = rowsum(dO ∘ O)
          A delta = 0;
          for (int64_t c = 0; c < p.Dv; ++c) delta += gob[r * p.Dv + c] * ob[r * p.Dv + c];
          A* ds = grad_scores.data() + r * n;  // dP in, dS out
          for (int64_t j = 0; j < n; ++j) ds[j] = pr[j] * (ds[j] - delta) * p.scale;
        }
      });
      // dV += Pᵀ dO, dQ = dS k, dK += dSᵀ q
      cpu::gemm(true, false, n, p.Dv, rows, A(1), probs.data(), n, gob, p.Dv, A(1), dvb, p.Dv);
      cpu::gemm(false, false, rows, p.Dh, n, A(1), grad_scores.data(), n, kb, p.Dh, A(0), dqb,
                p.Dh);
      cpu::gemm(true, false, n, p.Dh, rows, A(1), grad_scores.data(), n, qb, p.Dh, A(1), dkb, p.Dh);
    }
  }
}

template <class A>
void attention_backward_cpu(const AttentionProblem<A>& p, const A* q, const A* k, const A* v,
                            const A* out, const A* grad_out, const A* lse, A* grad_q, A* grad_k,
                            A* grad_v) {
  const int64_t tasks = p.B * p.Hk;
  auto run = [&](int64_t t) {
    attention_backward_task(p, q, k, v, out, grad_out, lse, grad_q, grad_k, grad_v, t / p.Hk,
                            t % p.Hk);
  };
  if (tasks >= cpu::num_threads()) {
    cpu::parallel_for(tasks, 1, [&](int64_t t0, int64_t t1) {
      for (int64_t t = t0; t < t1; ++t) run(t);
    });
  } else {
    for (int64_t t = 0; t < tasks; ++t) run(t);  // the GEMMs and row loops use the threads
  }
}

// A contiguous acc-typed copy (no copy for float/double contiguous tensors).
template <class T, class D>
Tensor<acc_t<T>, D> to_acc(const Tensor<T, D>& x) {
  if constexpr (std::is_same_v<acc_t<T>, T>) {
    return x.contiguous_nograd();
  } else {
    return x.detach().template to<acc_t<T>>();
  }
}

}  // namespace detail

// softmax(q kᵀ · scale + mask) v for q [B, H, Sq, Dh], k [B, Hk, Sk, Dh], v [B, Hk, Sk, Dv] with Hk
// dividing H (grouped-query attention: head h reads kv head h / (H / Hk)); scale 0 means
// 1/sqrt(Dh). Returns [B, H, Sq, Dv]. See the file comment for the masks and the algorithm.
template <FloatingElement T, class D>
Tensor<T, D> scaled_dot_product_attention(const Tensor<T, D>& q, const Tensor<T, D>& k,
                                          const Tensor<T, D>& v, const AttnMask<D>& mask = {},
                                          double scale = 0) {
  constexpr const char* op = "scaled_dot_product_attention";
  MENTOR_CHECK_SHAPE(q.dim() == 4 && k.dim() == 4 && v.dim() == 4, op,
                     ": q, k, v must be [B, H, S, D], got ", q.shape().str(), ", ", k.shape().str(),
                     ", ", v.shape().str());
  const int64_t B = q.size(0), H = q.size(1), Sq = q.size(2), Dh = q.size(3);
  const int64_t Hk = k.size(1), Sk = k.size(2), Dv = v.size(3);
  MENTOR_CHECK_SHAPE(
      k.size(0) == B && v.size(0) == B && v.size(1) == Hk && v.size(2) == Sk && k.size(3) == Dh, op,
      ": shapes of q ", q.shape().str(), ", k ", k.shape().str(), " and v ", v.shape().str(),
      " do not match (expected k [", B, ", Hk, Sk, ", Dh, "] and v [", B, ", Hk, Sk, Dv])");
  MENTOR_CHECK_SHAPE(Hk >= 1 && H % Hk == 0, op, ": the ", Hk, " kv heads of k ", k.shape().str(),
                     " do not divide the ", H, " query heads of q ", q.shape().str());

  using A = acc_t<T>;
  detail::AttentionProblem<A> problem;
  problem.B = B, problem.H = H, problem.Hk = Hk, problem.Sq = Sq, problem.Sk = Sk;
  problem.Dh = Dh, problem.Dv = Dv;
  problem.scale = static_cast<A>(scale != 0 ? scale : 1.0 / std::sqrt(static_cast<double>(Dh)));
  problem.kind = mask.kind;
  Tensor<bool, D> mask_view;  // the explicit mask expanded to [B, H, Sq, Sk] (broadcast strides 0)
  Strides mask_strides{0, 0, 0, 0};
  if (mask.kind == MaskKind::Explicit) {
    const Tensor<bool, D>& m = mask.explicit_mask;
    MENTOR_CHECK(m.defined(), op, ": explicit mask kind without a mask tensor");
    bool fits = m.dim() >= 2 && m.dim() <= 4;
    const Shape target{B, H, Sq, Sk};
    for (int i = 0; fits && i < m.dim(); ++i) {
      const int64_t want = target[4 - m.dim() + i];
      fits = m.size(i) == want || (m.size(i) == 1 && i < m.dim() - 2);
    }
    MENTOR_CHECK_SHAPE(fits, op, ": mask of shape ", m.shape().str(),
                       " does not broadcast to [B, H, Sq, Sk] = ", target.str());
    mask_view = m.contiguous_nograd().expand(target);
    mask_strides = mask_view.strides();
    problem.mask = mask_view.data();
    for (int i = 0; i < 4; ++i) problem.mask_strides[static_cast<size_t>(i)] = mask_strides[i];
  }

  Tensor<T, D> out = Tensor<T, D>::empty(Shape{B, H, Sq, Dv});
  Tensor<A, D> lse = Tensor<A, D>::empty(Shape{B, H, Sq});
  if constexpr (std::is_same_v<D, CPU>) {
    const Tensor<A, D> qa = detail::to_acc(q), ka = detail::to_acc(k), va = detail::to_acc(v);
    Tensor<A, D> out_acc = std::is_same_v<A, T> ? Tensor<A, D>() : Tensor<A, D>::empty(out.shape());
    A* po;
    if constexpr (std::is_same_v<A, T>)
      po = out.data();
    else
      po = out_acc.data();
    detail::attention_forward_cpu(problem, qa.data(), ka.data(), va.data(), po, lse.data());
    if constexpr (!std::is_same_v<A, T>) out = out_acc.template to<T>();
  } else {
    const Tensor<T, D> qc = q.contiguous_nograd(), kc = k.contiguous_nograd(),
                       vc = v.contiguous_nograd();
    MENTOR_CUDA_CALL(cuda::attention_forward(
        qc.data(), kc.data(), vc.data(), problem.kind, problem.mask, mask_strides, B, H, Hk, Sq, Sk,
        Dh, Dv, static_cast<float>(problem.scale), out.data(), lse.data()));
  }

  autograd::record(
      "scaled_dot_product_attention", out,
      [q = q.detach(), k = k.detach(), v = v.detach(), out_saved = out.detach(), lse, mask_view,
       mask_strides, problem](const Tensor<T, D>& g) {
        Tensor<T, D> grad_q, grad_k, grad_v;
        if constexpr (std::is_same_v<D, CPU>) {
          detail::AttentionProblem<A> p = problem;
          p.mask = mask_view.defined() ? mask_view.data() : nullptr;
          const Tensor<A, D> qa = detail::to_acc(q), ka = detail::to_acc(k), va = detail::to_acc(v);
          const Tensor<A, D> oa = detail::to_acc(out_saved), ga = detail::to_acc(g);
          Tensor<A, D> dq = Tensor<A, D>::empty(q.shape());
          Tensor<A, D> dk = Tensor<A, D>::empty(k.shape());
          Tensor<A, D> dv = Tensor<A, D>::empty(v.shape());
          detail::attention_backward_cpu(p, qa.data(), ka.data(), va.data(), oa.data(), ga.data(),
                                         lse.data(), dq.data(), dk.data(), dv.data());
          grad_q = dq.template to<T>();
          grad_k = dk.template to<T>();
          grad_v = dv.template to<T>();
        } else {
          const Tensor<T, D> qc = q.contiguous_nograd(), kc = k.contiguous_nograd(),
                             vc = v.contiguous_nograd(), gc = g.contiguous_nograd();
          grad_q = Tensor<T, D>::empty(q.shape());
          grad_k = Tensor<T, D>::empty(k.shape());
          grad_v = Tensor<T, D>::empty(v.shape());
          MENTOR_CUDA_CALL(cuda::attention_backward(
              qc.data(), kc.data(), vc.data(), out_saved.data(), gc.data(), lse.data(),
              problem.kind, mask_view.defined() ? mask_view.data() : nullptr, mask_strides,
              problem.B, problem.H, problem.Hk, problem.Sq, problem.Sk, problem.Dh, problem.Dv,
              static_cast<float>(problem.scale), grad_q.data(), grad_k.data(), grad_v.data()));
        }
        return std::tuple{grad_q, grad_k, grad_v};
      },
      q, k, v);
  return out;
}

}  // namespace mentor
