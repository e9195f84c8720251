#pragma once
// Losses: cross_entropy (mean over rows), cross_entropy_weighted (LlamaGen's per-sample validity),
// mse_loss and l1_loss (means). Every loss returns a tensor of shape [].
//
// Cross-entropy is fused: the forward reads each row of logits once (online max / Σ exp,
// backend/cpu/rows.hpp's row_max_sum_exp), keeps only the per-row log-sum-exp, and the backward
// writes (softmax − onehot) · scale straight into the gradient, so nothing of size rows × vocab is
// allocated besides the gradient itself. Rows run in parallel.
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <vector>

#include "mentor/backend/cpu/math.hpp"
#include "mentor/backend/cpu/parallel.hpp"
#include "mentor/backend/cpu/rows.hpp"
#include "mentor/backend/launch/loss.hpp"
#include "mentor/core/tensor.hpp"
#include "mentor/ops/apply.hpp"
#include "mentor/ops/elementwise.hpp"
#include "mentor/ops/reduce.hpp"
#include "mentor/ops/softmax.hpp"
#include "mentor/ops/unary.hpp"

namespace mentor {

namespace cpu {

// Throws if a target is outside [0, vocab).
inline void check_class_targets(const int64_t* targets, int64_t rows, int64_t vocab,
                                const char* name) {
  for (int64_t r = 0; r < rows; ++r)
    MENTOR_CHECK(targets[r] >= 0 && targets[r] < vocab, name, ": target ", targets[r], " (row ", r,
                 ") is out of range for ", vocab, " classes");
}

// lse[r] = log Σ_v exp(logits[r, v]); loss[0] = inv_denom · Σ_r w(r) (lse[r] − logits[r, t_r]) with
// w(r) = valid[r / rows_per_sample], or 1 when valid == nullptr. Row sums are added in order.
template <class T>
void cross_entropy_forward_kernel(const T* logits, const int64_t* targets, const T* valid,
                                  int64_t rows, int64_t vocab, int64_t rows_per_sample,
                                  acc_t<T>* lse, acc_t<T> inv_denom, T* loss) {
  using A = acc_t<T>;
  std::vector<double> row_loss(static_cast<size_t>(rows));
  parallel_for(rows, std::max<int64_t>(1, (1 << 14) / std::max<int64_t>(vocab, 1)),
               [&](int64_t begin, int64_t end) {
                 for (int64_t r = begin; r < end; ++r) {
                   const T* row = logits + r * vocab;
                   auto [m, s] = row_max_sum_exp(row, vocab);
                   const A row_lse = m + std::log(s);
                   lse[r] = row_lse;
                   const A w = valid ? static_cast<A>(valid[r / rows_per_sample]) : A(1);
                   row_loss[static_cast<size_t>(r)] =
                       w == A(0)
                           ? 0.0
                           : static_cast<double>(w * (row_lse - static_cast<A>(row[targets[r]])));
                 }
               });
  double total = 0;
  for (double v : row_loss) total += v;
  loss[0] = static_cast<T>(total * static_cast<double>(inv_denom));
}

// grad[r, v] = g · inv_denom · w(r) · (exp(logits[r, v] − lse[r]) − [v == t_r]).
template <class T>
void cross_entropy_backward_kernel(const T* logits, const int64_t* targets, const T* valid,
                                   int64_t rows, int64_t vocab, int64_t rows_per_sample,
                                   const acc_t<T>* lse, acc_t<T> inv_denom, acc_t<T> grad_loss,
                                   T* grad) {
  using A = acc_t<T>;
  parallel_for(
      rows, std::max<int64_t>(1, (1 << 14) / std::max<int64_t>(vocab, 1)),
      [&](int64_t begin, int64_t end) {
        for (int64_t r = begin; r < end; ++r) {
          const T* row = logits + r * vocab;
          T* out = grad + r * vocab;
          const A w = valid ? static_cast<A>(valid[r / rows_per_sample]) : A(1);
          const A coef = grad_loss * inv_denom * w;
          if (coef == A(0)) {
            std::fill(out, out + vocab, static_cast<T>(A(0)));
            continue;
          }
          const A row_lse = lse[r];
          for (int64_t v = 0; v < vocab; ++v)
            out[v] = static_cast<T>(coef * exp_vectorizable(static_cast<A>(row[v]) - row_lse));
          const int64_t t = targets[r];
          out[t] =
              static_cast<T>(coef * (exp_vectorizable(static_cast<A>(row[t]) - row_lse) - A(1)));
        }
      });
}

}  // namespace cpu

// Cross-entropy of logits viewed as [rows, vocab] against class targets [rows], row r weighted by
// valid[r / rows_per_sample] (cross_entropy_weighted) or 1 (cross_entropy, valid undefined). The
// aux output keeps, for the backward, each row's log-sum-exp followed by 1 / the denominator.
struct CrossEntropy {
  static constexpr OpSaves saves = OpSaves::Inputs;
  template <class T>
  using aux_t = acc_t<T>;
  bool weighted;
  // Geometry, from output_shape().
  int64_t rows = 0, vocab = 0, rows_per_sample = 1;

  const char* name() const { return weighted ? "cross_entropy_weighted" : "cross_entropy"; }
  template <class T, class D>
  Shape output_shape(const Tensor<T, D>& logits, const Tensor<int64_t, D>& targets,
                     const Tensor<T, D>& valid) {
    if (!weighted) {
      MENTOR_CHECK_SHAPE(
          logits.dim() == 2 && targets.dim() == 1 && targets.size(0) == logits.size(0),
          "cross_entropy: expected logits [N, V] and targets [N], got logits ",
          logits.shape().str(), " and targets ", targets.shape().str());
      rows = logits.size(0);
      vocab = logits.size(1);
      return Shape{};
    }
    MENTOR_CHECK_SHAPE(
        logits.dim() == 3 && targets.dim() == 2 && valid.dim() == 1 &&
            targets.size(0) == logits.size(0) && targets.size(1) == logits.size(1) &&
            valid.size(0) == logits.size(0),
        "cross_entropy_weighted: expected logits [B, L, V], targets [B, L] and valid [B], "
        "got logits ",
        logits.shape().str(), ", targets ", targets.shape().str(), " and valid ",
        valid.shape().str());
    const int64_t length = logits.size(1);
    rows = logits.size(0) * length;
    vocab = logits.size(2);
    rows_per_sample = std::max<int64_t>(length, 1);
    return Shape{};
  }
  Shape aux_shape() const { return Shape{rows + 1}; }

  template <class T>
  void forward_cpu(const Tensor<T, CPU>& logits, const Tensor<int64_t, CPU>& targets,
                   const Tensor<T, CPU>& valid, Tensor<T, CPU>& loss,
                   Tensor<acc_t<T>, CPU>& lse_inv_denom) const {
    using A = acc_t<T>;
    cpu::check_class_targets(targets.data(), rows, vocab, name());
    double denom = static_cast<double>(rows);
    if (valid.defined()) {
      double valid_sum = 0;
      for (int64_t b = 0; b < valid.numel(); ++b)
        valid_sum += static_cast<double>(static_cast<A>(valid.data()[b]));
      denom = std::max(valid_sum * static_cast<double>(rows_per_sample), 1.0);
    }
    A* lse = lse_inv_denom.data();
    lse[rows] = static_cast<A>(1.0 / denom);
    cpu::cross_entropy_forward_kernel(logits.data(), targets.data(), valid_or_null(valid), rows,
                                      vocab, rows_per_sample, lse, lse[rows], loss.data());
  }
  template <class T>
  void forward_cuda(const Tensor<T, CUDA>& logits, const Tensor<int64_t, CUDA>& targets,
                    const Tensor<T, CUDA>& valid, Tensor<T, CUDA>& loss,
                    Tensor<acc_t<T>, CUDA>& lse_inv_denom) const {
    acc_t<T>* lse = lse_inv_denom.data();
    cuda::cross_entropy_forward(logits.data(), targets.data(), valid_or_null(valid), rows, vocab,
                                rows_per_sample, lse, lse + rows, loss.data());
  }
  // `valid` is a constant weight: it takes no gradient (the callers pass it detached).
  template <class T>
  void backward_cpu(const Tensor<T, CPU>& logits, const Tensor<int64_t, CPU>& targets,
                    const Tensor<T, CPU>& valid, const Tensor<T, CPU>&,
                    const Tensor<acc_t<T>, CPU>& lse_inv_denom, const Tensor<T, CPU>& grad_out,
                    Tensor<T, CPU>& grad_logits, autograd::NoGrad&, Tensor<T, CPU>&) const {
    const acc_t<T>* lse = lse_inv_denom.data();
    cpu::cross_entropy_backward_kernel(logits.data(), targets.data(), valid_or_null(valid), rows,
                                       vocab, rows_per_sample, lse, lse[rows],
                                       static_cast<acc_t<T>>(grad_out.item()), grad_logits.data());
  }
  template <class T>
  void backward_cuda(const Tensor<T, CUDA>& logits, const Tensor<int64_t, CUDA>& targets,
                     const Tensor<T, CUDA>& valid, const Tensor<T, CUDA>&,
                     const Tensor<acc_t<T>, CUDA>& lse_inv_denom, const Tensor<T, CUDA>& grad_out,
                     Tensor<T, CUDA>& grad_logits, autograd::NoGrad&, Tensor<T, CUDA>&) const {
    const acc_t<T>* lse = lse_inv_denom.data();
    cuda::cross_entropy_backward(logits.data(), targets.data(), valid_or_null(valid), rows, vocab,
                                 rows_per_sample, lse, lse + rows, grad_out.data(),
                                 grad_logits.data());
  }

 private:
  template <class T, class D>
  static const T* valid_or_null(const Tensor<T, D>& valid) {
    return valid.defined() ? valid.data() : nullptr;
  }
};

// mean_r (logsumexp(logits[r]) − logits[r, targets[r]]) for logits [N, V], targets [N] in [0, V).
template <FloatingElement T, class D>
Tensor<T, D> cross_entropy(const Tensor<T, D>& logits, const Tensor<int64_t, D>& targets) {
  return apply(CrossEntropy{false}, logits, targets, Tensor<T, D>()).first;
}

// LlamaGen's loss with per-sample validity: logits [B, L, V], targets [B, L], valid [B] (weights,
// usually 0/1; no gradient):
//   Σ_{b,l} CE[b, l] · valid[b] / max(Σ_b valid[b] · L, 1).
template <FloatingElement T, class D>
Tensor<T, D> cross_entropy_weighted(const Tensor<T, D>& logits, const Tensor<int64_t, D>& targets,
                                    const Tensor<T, D>& valid) {
  return apply(CrossEntropy{true}, logits, targets, valid.detach()).first;
}

// mean((a − b)²) over all elements; a and b of the same shape.
template <FloatingElement T, class D>
Tensor<T, D> mse_loss(const Tensor<T, D>& a, const Tensor<T, D>& b) {
  MENTOR_CHECK_SHAPE(a.shape() == b.shape(), "mse_loss: shapes ", a.shape().str(), " and ",
                     b.shape().str(), " differ");
  return mean(square(a - b));
}

// mean(|a − b|) over all elements (gradient sign(a − b), 0 where equal).
template <FloatingElement T, class D>
Tensor<T, D> l1_loss(const Tensor<T, D>& a, const Tensor<T, D>& b) {
  MENTOR_CHECK_SHAPE(a.shape() == b.shape(), "l1_loss: shapes ", a.shape().str(), " and ",
                     b.shape().str(), " differ");
  return mean(abs(a - b));
}

}  // namespace mentor
