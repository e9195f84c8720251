#pragma once
// Scaled dot-product attention: softmax(q k^T * scale, masked) v, with grouped-query heads, causal
// or explicit boolean masks, and a memory-aware CPU kernel.
//
// CPU algorithm (FlashAttention-like in its memory use, GEMM-based for speed): the work is cut into
// blocks of kQueryBlock query rows of one (batch, head). A block's scores are one GEMM
// [rows, Dh] x [Dh, keys], its softmax runs row by row (the row statistics of backend/cpu/rows.hpp,
// the exp of backend/cpu/math.hpp), and its output is a second GEMM [rows, keys] x [keys, Dv];
// with a causal mask only the keys some row of the block may see are multiplied. So at most
// threads × kQueryBlock × Sk scores exist at once, never B×H×Sq×Sk. The forward pass saves each
// row's logsumexp (acc_t<T>, [B, H, Sq]); the backward pass recomputes the probabilities of each
// block from it (P = exp(s − lse)) instead of storing them, then dV += Pᵀ dO, dP = dO Vᵀ,
// dS = P ∘ (dP − rowsum(dO ∘ O)) · scale, dQ = dS K, dK += dSᵀ Q.
// Backward tasks own one (batch, kv head) each, so the dK/dV accumulation of the query heads that
// share a kv head (GQA) never races.
//
// Masks: causal with Sq < Sk means the queries are the last Sq positions (KV-cache decoding):
// query i sees keys j <= i + Sk − Sq. Explicit masks are bool, true = attend, broadcast as
// [B or 1, H or 1, Sq, Sk] (lower ranks are right-aligned). A query row that sees no key at all
// outputs zeros (and passes no gradient).
#include <algorithm>
#include <array>
#include <cmath>
#include <cstdint>
#include <limits>
#include <type_traits>
#include <vector>

#include "mentor/backend/cpu/gemm.hpp"
#include "mentor/backend/cpu/math.hpp"
#include "mentor/backend/cpu/parallel.hpp"
#include "mentor/backend/cpu/rows.hpp"
#include "mentor/backend/launch/attention.hpp"
#include "mentor/core/tensor.hpp"
#include "mentor/ops/apply.hpp"

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

// The softmax's exp, under the name this header's tests call.
using cpu::exp_shifted;

// Turns row `s` (scores of keys [0, n), already scaled) into probabilities for query i of (b, h),
// given its logsumexp `lse` when `known_lse`, else computing and returning it. Keys the mask hides
// get score −inf, so their exp is exactly 0; keys >= key_end get probability 0.
template <class A>
A softmax_row(const AttentionProblem<A>& p, int64_t b, int64_t h, int64_t i, A* s, int64_t n,
              bool known_lse, A lse) {
  const int64_t end = std::min(p.key_end(i), n);
  constexpr A kNegInf = -std::numeric_limits<A>::infinity();
  std::fill(s + end, s + n, A(0));
  if (const bool* m = p.mask_row(b, h, i)) {
    const int64_t ms = p.mask_strides[3];
    for (int64_t j = 0; j < end; ++j)
      if (!m[j * ms]) s[j] = kNegInf;
  }
  const A shift = known_lse ? lse : cpu::row_max(s, end);
  if (shift == kNegInf) {  // nothing to attend to (or every score is −inf)
    std::fill(s, s + end, A(0));
    return kNegInf;
  }
  cpu::exp_shifted(s, end, shift);
  if (known_lse) return lse;
  const A sum = cpu::row_sum(s, end);
  const A inv_sum = A(1) / sum;
  for (int64_t j = 0; j < end; ++j) s[j] *= inv_sum;
  return shift + std::log(sum);
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
          const A delta = cpu::row_dot(gob + r * p.Dv, ob + r * p.Dv, p.Dv);
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

}  // namespace detail

// ---- the op ----------------------------------------------------------------------------------

// The attention kernels of this header (CPU, in acc_t<T>) and of src/cuda/attention.cu. The
// forward's second output is each row's logsumexp (acc_t<T>, [B, H, Sq]), from which the backward
// recomputes the probabilities.
template <class T, class D>
struct ScaledDotProductAttention {
  using A = acc_t<T>;
  static constexpr OpSaves saves = OpSaves::Both;
  template <class>
  using aux_t = A;
  AttnMask<D> mask;
  double scale;
  detail::AttentionProblem<A> problem{};
  // The explicit mask expanded to [B, H, Sq, Sk] (broadcast strides 0); problem.mask points here.
  Tensor<bool, D> mask_view{};
  Strides mask_strides{0, 0, 0, 0};

  const char* name() const { return "scaled_dot_product_attention"; }
  Shape output_shape(const Tensor<T, D>& q, const Tensor<T, D>& k, const Tensor<T, D>& v) {
    constexpr const char* op = "scaled_dot_product_attention";
    MENTOR_CHECK_SHAPE(q.dim() == 4 && k.dim() == 4 && v.dim() == 4, op,
                       ": q, k, v must be [B, H, S, D], got ", q.shape().str(), ", ",
                       k.shape().str(), ", ", v.shape().str());
    const int64_t B = q.size(0), H = q.size(1), Sq = q.size(2), Dh = q.size(3);
    const int64_t Hk = k.size(1), Sk = k.size(2), Dv = v.size(3);
    MENTOR_CHECK_SHAPE(
        k.size(0) == B && v.size(0) == B && v.size(1) == Hk && v.size(2) == Sk && k.size(3) == Dh,
        op, ": shapes of q ", q.shape().str(), ", k ", k.shape().str(), " and v ", v.shape().str(),
        " do not match (expected k [", B, ", Hk, Sk, ", Dh, "] and v [", B, ", Hk, Sk, Dv])");
    MENTOR_CHECK_SHAPE(Hk >= 1 && H % Hk == 0, op, ": the ", Hk, " kv heads of k ", k.shape().str(),
                       " do not divide the ", H, " query heads of q ", q.shape().str());

    problem.B = B, problem.H = H, problem.Hk = Hk, problem.Sq = Sq, problem.Sk = Sk;
    problem.Dh = Dh, problem.Dv = Dv;
    problem.scale = static_cast<A>(scale != 0 ? scale : 1.0 / std::sqrt(static_cast<double>(Dh)));
    problem.kind = mask.kind;
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
    return Shape{B, H, Sq, Dv};
  }
  Shape aux_shape() const { return Shape{problem.B, problem.H, problem.Sq}; }

  void forward_cpu(const Tensor<T, CPU>& q, const Tensor<T, CPU>& k, const Tensor<T, CPU>& v,
                   Tensor<T, CPU>& out, Tensor<A, CPU>& lse) const {
    const Tensor<A, CPU> qa = detail::acc_input(q), ka = detail::acc_input(k),
                         va = detail::acc_input(v);
    Tensor<A, CPU> oa = detail::acc_output(out, out.shape());
    detail::attention_forward_cpu(problem, qa.data(), ka.data(), va.data(), oa.data(), lse.data());
    detail::store_acc(oa, out);
  }
  void forward_cuda(const Tensor<T, CUDA>& q, const Tensor<T, CUDA>& k, const Tensor<T, CUDA>& v,
                    Tensor<T, CUDA>& out, Tensor<A, CUDA>& lse) const {
    cuda::attention_forward(q.data(), k.data(), v.data(), problem.kind, problem.mask, mask_strides,
                            problem.B, problem.H, problem.Hk, problem.Sq, problem.Sk, problem.Dh,
                            problem.Dv, static_cast<float>(problem.scale), out.data(), lse.data());
  }
  // The kernels write all three gradients: unwanted ones go to throwaway buffers.
  void backward_cpu(const Tensor<T, CPU>& q, const Tensor<T, CPU>& k, const Tensor<T, CPU>& v,
                    const Tensor<T, CPU>& out, const Tensor<A, CPU>& lse,
                    const Tensor<T, CPU>& grad_out, Tensor<T, CPU>& grad_q, Tensor<T, CPU>& grad_k,
                    Tensor<T, CPU>& grad_v) const {
    const Tensor<A, CPU> qa = detail::acc_input(q), ka = detail::acc_input(k),
                         va = detail::acc_input(v);
    const Tensor<A, CPU> oa = detail::acc_input(out), ga = detail::acc_input(grad_out);
    Tensor<A, CPU> dq = detail::acc_output(grad_q, q.shape());
    Tensor<A, CPU> dk = detail::acc_output(grad_k, k.shape());
    Tensor<A, CPU> dv = detail::acc_output(grad_v, v.shape());
    detail::attention_backward_cpu(problem, qa.data(), ka.data(), va.data(), oa.data(), ga.data(),
                                   lse.data(), dq.data(), dk.data(), dv.data());
    detail::store_acc(dq, grad_q);
    detail::store_acc(dk, grad_k);
    detail::store_acc(dv, grad_v);
  }
  void backward_cuda(const Tensor<T, CUDA>& q, const Tensor<T, CUDA>& k, const Tensor<T, CUDA>& v,
                     const Tensor<T, CUDA>& out, const Tensor<A, CUDA>& lse,
                     const Tensor<T, CUDA>& grad_out, Tensor<T, CUDA>& grad_q,
                     Tensor<T, CUDA>& grad_k, Tensor<T, CUDA>& grad_v) const {
    Tensor<T, CUDA> dq = detail::defined_or_empty(grad_q, q.shape());
    Tensor<T, CUDA> dk = detail::defined_or_empty(grad_k, k.shape());
    Tensor<T, CUDA> dv = detail::defined_or_empty(grad_v, v.shape());
    cuda::attention_backward(q.data(), k.data(), v.data(), out.data(), grad_out.data(), lse.data(),
                             problem.kind, problem.mask, mask_strides, problem.B, problem.H,
                             problem.Hk, problem.Sq, problem.Sk, problem.Dh, problem.Dv,
                             static_cast<float>(problem.scale), dq.data(), dk.data(), dv.data());
  }
};

// softmax(q kᵀ · scale + mask) v for q [B, H, Sq, Dh], k [B, Hk, Sk, Dh], v [B, Hk, Sk, Dv] with Hk
// dividing H (grouped-query attention: head h reads kv head h / (H / Hk)); scale 0 means
// 1/sqrt(Dh). Returns [B, H, Sq, Dv]. See the file comment for the masks and the algorithm.
template <FloatingElement T, class D>
Tensor<T, D> scaled_dot_product_attention(const Tensor<T, D>& q, const Tensor<T, D>& k,
                                          const Tensor<T, D>& v, const AttnMask<D>& mask = {},
                                          double scale = 0) {
  return apply(ScaledDotProductAttention<T, D>{mask, scale}, q, k, v).first;
}

}  // namespace mentor
