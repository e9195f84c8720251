#pragma once
// Normalisation layers: rms_norm (LlamaGen RMSNorm), layer_norm (nn.LayerNorm over the last
// dimension), group_norm (nn.GroupNorm) and batch_norm (nn.BatchNorm, made of group_norm on the
// channel-major copy of the batch). Each is one fused kernel per row (or group) forward and
// one backward, computing statistics in acc_t<T> (float for bf16). Means and variances are taken in
// two passes over the row (mean first), which keeps double results at rounding level.
//
// Backward formulas, with x̂ the normalised input, r = 1/σ the reciprocal scale, n the number of
// elements normalised together and dx̂ = g * weight:
//   RMSNorm:          dx = r (dx̂ − x̂ · mean(dx̂ x̂))
//   Layer/GroupNorm:  dx = r (dx̂ − mean(dx̂) − x̂ · mean(dx̂ x̂))
//   dweight = Σ g x̂, dbias = Σ g over the rows (and, for GroupNorm, the spatial positions).
// The statistics are recomputed in the backward pass (one extra read of x) rather than stored.
#include <algorithm>
#include <array>
#include <cmath>
#include <cstdint>
#include <mutex>
#include <tuple>
#include <type_traits>
#include <vector>

#include "mentor/autograd/node.hpp"
#include "mentor/backend/cpu/parallel.hpp"
#include "mentor/backend/cpu/rows.hpp"
#include "mentor/backend/launch/norm.hpp"
#include "mentor/core/tensor.hpp"
#include "mentor/ops/apply.hpp"
#include "mentor/ops/elementwise.hpp"
#include "mentor/ops/reduce.hpp"
#include "mentor/ops/unary.hpp"

namespace mentor {

namespace detail {

template <class T, class D>
void check_affine(const Tensor<T, D>& p, int64_t C, const char* op, const char* what,
                  const Shape& x_shape) {
  MENTOR_CHECK_SHAPE(!p.defined() || (p.dim() == 1 && p.size(0) == C), op, ": ", what, " of shape ",
                     p.shape().str(), " does not match the ", C, " channels of input ",
                     x_shape.str());
}

template <class T, class D>
const T* data_or_null(const Tensor<T, D>& t) {
  return t.defined() ? t.data() : nullptr;
}
template <class T, class D>
T* data_or_null(Tensor<T, D>& t) {
  return t.defined() ? t.data() : nullptr;
}

}  // namespace detail

// ---- CPU kernels: the signatures of backend/launch/norm.hpp's CUDA launchers -----------------
namespace cpu {

// Per-channel sums accumulated by parallel row chunks: each chunk sums privately, then adds its
// partial into the total under a lock (chunks are few: one per thread).
template <class A>
class ChannelSums {
 public:
  explicit ChannelSums(int64_t channels) : total_(static_cast<size_t>(channels), A(0)) {}
  std::vector<A> local() const { return std::vector<A>(total_.size(), A(0)); }
  void merge(const std::vector<A>& partial) {
    std::lock_guard<std::mutex> lock(mutex_);
    for (size_t i = 0; i < total_.size(); ++i) total_[i] += partial[i];
  }
  template <class T>
  void write(T* out) const {
    for (size_t i = 0; i < total_.size(); ++i) out[i] = static_cast<T>(total_[i]);
  }

 private:
  std::vector<A> total_;
  std::mutex mutex_;
};

// Rows per parallel chunk so that a chunk holds at least ~16K elements.
inline int64_t row_grain(int64_t row_length) {
  return std::max<int64_t>(1, 16384 / std::max<int64_t>(row_length, 1));
}

template <class T>
void rms_norm_forward(const T* x, const T* weight, T* y, int64_t rows, int64_t C, double eps) {
  using A = acc_t<T>;
  parallel_for(rows, row_grain(C), [&](int64_t begin, int64_t end) {
    for (int64_t r = begin; r < end; ++r) {
      const T* xr = x + r * C;
      T* yr = y + r * C;
      const A rstd = row_rms_rstd(xr, C, eps);
      for (int64_t c = 0; c < C; ++c) {
        const T normed = static_cast<T>(static_cast<A>(xr[c]) * rstd);
        yr[c] =
            weight ? static_cast<T>(static_cast<A>(normed) * static_cast<A>(weight[c])) : normed;
      }
    }
  });
}

// grad_x and grad_weight may be null (not wanted).
template <class T>
void rms_norm_backward(const T* x, const T* weight, const T* grad_y, T* grad_x, T* grad_weight,
                       int64_t rows, int64_t C, double eps) {
  using A = acc_t<T>;
  ChannelSums<A> dw(C);
  const bool want_w = grad_weight && weight;
  parallel_for(rows, row_grain(C), [&](int64_t begin, int64_t end) {
    std::vector<A> dw_local = want_w ? dw.local() : std::vector<A>();
    for (int64_t r = begin; r < end; ++r) {
      const T* xr = x + r * C;
      const T* gr = grad_y + r * C;
      const A rstd = row_rms_rstd(xr, C, eps);
      A dot = 0;  // Σ dx̂ x̂
      for (int64_t c = 0; c < C; ++c) {
        const A xhat = static_cast<A>(xr[c]) * rstd;
        const A dxhat =
            weight ? static_cast<A>(gr[c]) * static_cast<A>(weight[c]) : static_cast<A>(gr[c]);
        dot += dxhat * xhat;
        // The weight multiplies the normalised value as rounded to T.
        if (want_w)
          dw_local[static_cast<size_t>(c)] +=
              static_cast<A>(gr[c]) * static_cast<A>(static_cast<T>(xhat));
      }
      if (grad_x) {
        const A mean_dot = dot / static_cast<A>(C);
        T* dxr = grad_x + r * C;
        for (int64_t c = 0; c < C; ++c) {
          const A xhat = static_cast<A>(xr[c]) * rstd;
          const A dxhat =
              weight ? static_cast<A>(gr[c]) * static_cast<A>(weight[c]) : static_cast<A>(gr[c]);
          dxr[c] = static_cast<T>(rstd * (dxhat - xhat * mean_dot));
        }
      }
    }
    if (want_w) dw.merge(dw_local);
  });
  if (want_w) dw.write(grad_weight);
}

template <class T>
void layer_norm_forward(const T* x, const T* weight, const T* bias, T* y, int64_t rows, int64_t C,
                        double eps) {
  using A = acc_t<T>;
  parallel_for(rows, row_grain(C), [&](int64_t begin, int64_t end) {
    for (int64_t r = begin; r < end; ++r) {
      const T* xr = x + r * C;
      T* yr = y + r * C;
      const auto [mean, rstd] = row_moments(xr, C, eps);
      for (int64_t c = 0; c < C; ++c) {
        A v = (static_cast<A>(xr[c]) - mean) * rstd;
        if (weight) v *= static_cast<A>(weight[c]);
        if (bias) v += static_cast<A>(bias[c]);
        yr[c] = static_cast<T>(v);
      }
    }
  });
}

// grad_x, grad_weight and grad_bias may be null (not wanted).
template <class T>
void layer_norm_backward(const T* x, const T* weight, const T* grad_y, T* grad_x, T* grad_weight,
                         T* grad_bias, int64_t rows, int64_t C, double eps) {
  using A = acc_t<T>;
  const bool want_w = grad_weight != nullptr, want_b = grad_bias != nullptr;
  ChannelSums<A> dw(C), db(C);
  parallel_for(rows, row_grain(C), [&](int64_t begin, int64_t end) {
    std::vector<A> dw_local = want_w ? dw.local() : std::vector<A>();
    std::vector<A> db_local = want_b ? db.local() : std::vector<A>();
    for (int64_t r = begin; r < end; ++r) {
      const T* xr = x + r * C;
      const T* gr = grad_y + r * C;
      const auto [mean, rstd] = row_moments(xr, C, eps);
      A sum_dxhat = 0, sum_dxhat_xhat = 0;
      for (int64_t c = 0; c < C; ++c) {
        const A xhat = (static_cast<A>(xr[c]) - mean) * rstd;
        const A gc = static_cast<A>(gr[c]);
        const A dxhat = weight ? gc * static_cast<A>(weight[c]) : gc;
        sum_dxhat += dxhat;
        sum_dxhat_xhat += dxhat * xhat;
        if (want_w) dw_local[static_cast<size_t>(c)] += gc * xhat;
        if (want_b) db_local[static_cast<size_t>(c)] += gc;
      }
      if (grad_x) {
        const A mean_dxhat = sum_dxhat / static_cast<A>(C);
        const A mean_dot = sum_dxhat_xhat / static_cast<A>(C);
        T* dxr = grad_x + r * C;
        for (int64_t c = 0; c < C; ++c) {
          const A xhat = (static_cast<A>(xr[c]) - mean) * rstd;
          const A gc = static_cast<A>(gr[c]);
          const A dxhat = weight ? gc * static_cast<A>(weight[c]) : gc;
          dxr[c] = static_cast<T>(rstd * (dxhat - mean_dxhat - xhat * mean_dot));
        }
      }
    }
    if (want_w) dw.merge(dw_local);
    if (want_b) db.merge(db_local);
  });
  if (want_w) dw.write(grad_weight);
  if (want_b) db.write(grad_bias);
}

template <class T>
void group_norm_forward(const T* x, const T* weight, const T* bias, T* y, int64_t N, int64_t C,
                        int64_t spatial, int64_t groups, double eps) {
  using A = acc_t<T>;
  const int64_t channels_per_group = C / groups, group_size = channels_per_group * spatial;
  parallel_for(N * groups, row_grain(group_size), [&](int64_t begin, int64_t end) {
    for (int64_t ng = begin; ng < end; ++ng) {
      const T* xg = x + ng * group_size;
      T* yg = y + ng * group_size;
      const auto [mean, rstd] = row_moments(xg, group_size, eps);
      const int64_t c0 = (ng % groups) * channels_per_group;
      for (int64_t cc = 0; cc < channels_per_group; ++cc) {
        const A w = weight ? static_cast<A>(weight[c0 + cc]) : A(1);
        const A b = bias ? static_cast<A>(bias[c0 + cc]) : A(0);
        const T* xs = xg + cc * spatial;
        T* ys = yg + cc * spatial;
        for (int64_t s = 0; s < spatial; ++s)
          ys[s] = static_cast<T>((static_cast<A>(xs[s]) - mean) * rstd * w + b);
      }
    }
  });
}

// grad_x, grad_weight and grad_bias may be null (not wanted).
template <class T>
void group_norm_backward(const T* x, const T* weight, const T* grad_y, T* grad_x, T* grad_weight,
                         T* grad_bias, int64_t N, int64_t C, int64_t spatial, int64_t groups,
                         double eps) {
  using A = acc_t<T>;
  const int64_t channels_per_group = C / groups, group_size = channels_per_group * spatial;
  // Per-(sample, channel) partial sums Σ_s g x̂ and Σ_s g, reduced over samples below.
  std::vector<A> dw_nc(static_cast<size_t>(N * C), A(0)), db_nc(static_cast<size_t>(N * C), A(0));
  parallel_for(N * groups, row_grain(group_size), [&](int64_t begin, int64_t end) {
    for (int64_t ng = begin; ng < end; ++ng) {
      const int64_t n = ng / groups, c0 = (ng % groups) * channels_per_group;
      const T* xg = x + ng * group_size;
      const T* gg = grad_y + ng * group_size;
      const auto [mean, rstd] = row_moments(xg, group_size, eps);
      A sum_dxhat = 0, sum_dxhat_xhat = 0;
      for (int64_t cc = 0; cc < channels_per_group; ++cc) {
        const A w = weight ? static_cast<A>(weight[c0 + cc]) : A(1);
        A sum_g = 0, sum_g_xhat = 0;
        for (int64_t s = 0; s < spatial; ++s) {
          const int64_t i = cc * spatial + s;
          const A xhat = (static_cast<A>(xg[i]) - mean) * rstd;
          const A gv = static_cast<A>(gg[i]);
          sum_g += gv;
          sum_g_xhat += gv * xhat;
        }
        sum_dxhat += w * sum_g;
        sum_dxhat_xhat += w * sum_g_xhat;
        dw_nc[static_cast<size_t>(n * C + c0 + cc)] = sum_g_xhat;
        db_nc[static_cast<size_t>(n * C + c0 + cc)] = sum_g;
      }
      if (!grad_x) continue;
      const A mean_dxhat = sum_dxhat / static_cast<A>(group_size);
      const A mean_dot = sum_dxhat_xhat / static_cast<A>(group_size);
      T* dxg = grad_x + ng * group_size;
      for (int64_t cc = 0; cc < channels_per_group; ++cc) {
        const A w = weight ? static_cast<A>(weight[c0 + cc]) : A(1);
        for (int64_t s = 0; s < spatial; ++s) {
          const int64_t i = cc * spatial + s;
          const A xhat = (static_cast<A>(xg[i]) - mean) * rstd;
          const A dxhat = static_cast<A>(gg[i]) * w;
          dxg[i] = static_cast<T>(rstd * (dxhat - mean_dxhat - xhat * mean_dot));
        }
      }
    }
  });
  auto reduce_samples = [&](const std::vector<A>& per_nc, T* out) {
    for (int64_t c = 0; c < C; ++c) {
      A s = 0;
      for (int64_t n = 0; n < N; ++n) s += per_nc[static_cast<size_t>(n * C + c)];
      out[c] = static_cast<T>(s);
    }
  };
  if (grad_weight) reduce_samples(dw_nc, grad_weight);
  if (grad_bias) reduce_samples(db_nc, grad_bias);
}

}  // namespace cpu

// ---- the ops ---------------------------------------------------------------------------------

// LlamaGen RMSNorm over the last dimension: rows of C channels, weight [C] or undefined.
struct RmsNorm {
  static constexpr OpSaves saves = OpSaves::Inputs;
  double eps;
  int64_t rows = 0, C = 0;

  const char* name() const { return "rms_norm"; }
  template <class T, class D>
  Shape output_shape(const Tensor<T, D>& x, const Tensor<T, D>& weight) {
    MENTOR_CHECK_SHAPE(x.dim() >= 1, "rms_norm: input must have a channel dimension, got ",
                       x.shape().str());
    C = x.size(-1);
    rows = C == 0 ? 0 : x.numel() / C;
    detail::check_affine(weight, C, "rms_norm", "weight", x.shape());
    return x.shape();
  }
  template <class T>
  void forward_cpu(const Tensor<T, CPU>& x, const Tensor<T, CPU>& w, Tensor<T, CPU>& y) const {
    cpu::rms_norm_forward(x.data(), detail::data_or_null(w), y.data(), rows, C, eps);
  }
  template <class T>
  void forward_cuda(const Tensor<T, CUDA>& x, const Tensor<T, CUDA>& w, Tensor<T, CUDA>& y) const {
    cuda::rms_norm_forward(x.data(), detail::data_or_null(w), y.data(), rows, C,
                           static_cast<float>(eps));
  }
  template <class T>
  void backward_cpu(const Tensor<T, CPU>& x, const Tensor<T, CPU>& w, const Tensor<T, CPU>&,
                    const Tensor<T, CPU>& gy, Tensor<T, CPU>& gx, Tensor<T, CPU>& gw) const {
    cpu::rms_norm_backward(x.data(), detail::data_or_null(w), gy.data(), detail::data_or_null(gx),
                           detail::data_or_null(gw), rows, C, eps);
  }
  template <class T>
  void backward_cuda(const Tensor<T, CUDA>& x, const Tensor<T, CUDA>& w, const Tensor<T, CUDA>&,
                     const Tensor<T, CUDA>& gy, Tensor<T, CUDA>& gx, Tensor<T, CUDA>& gw) const {
    // The CUDA kernel always writes grad_x: a throwaway buffer when it is not wanted.
    Tensor<T, CUDA> dx = detail::defined_or_empty(gx, x.shape());
    cuda::rms_norm_backward(x.data(), detail::data_or_null(w), gy.data(), dx.data(),
                            detail::data_or_null(gw), rows, C, static_cast<float>(eps));
  }
};

// nn.LayerNorm over the last dimension, biased variance; weight and bias [C] or undefined.
struct LayerNorm {
  static constexpr OpSaves saves = OpSaves::Inputs;
  double eps;
  int64_t rows = 0, C = 0;

  const char* name() const { return "layer_norm"; }
  template <class T, class D>
  Shape output_shape(const Tensor<T, D>& x, const Tensor<T, D>& weight, const Tensor<T, D>& bias) {
    MENTOR_CHECK_SHAPE(x.dim() >= 1, "layer_norm: input must have a channel dimension, got ",
                       x.shape().str());
    C = x.size(-1);
    rows = C == 0 ? 0 : x.numel() / C;
    detail::check_affine(weight, C, "layer_norm", "weight", x.shape());
    detail::check_affine(bias, C, "layer_norm", "bias", x.shape());
    return x.shape();
  }
  template <class T>
  void forward_cpu(const Tensor<T, CPU>& x, const Tensor<T, CPU>& w, const Tensor<T, CPU>& b,
                   Tensor<T, CPU>& y) const {
    cpu::layer_norm_forward(x.data(), detail::data_or_null(w), detail::data_or_null(b), y.data(),
                            rows, C, eps);
  }
  template <class T>
  void forward_cuda(const Tensor<T, CUDA>& x, const Tensor<T, CUDA>& w, const Tensor<T, CUDA>& b,
                    Tensor<T, CUDA>& y) const {
    cuda::layer_norm_forward(x.data(), detail::data_or_null(w), detail::data_or_null(b), y.data(),
                             rows, C, static_cast<float>(eps));
  }
  template <class T>
  void backward_cpu(const Tensor<T, CPU>& x, const Tensor<T, CPU>& w, const Tensor<T, CPU>&,
                    const Tensor<T, CPU>&, const Tensor<T, CPU>& gy, Tensor<T, CPU>& gx,
                    Tensor<T, CPU>& gw, Tensor<T, CPU>& gb) const {
    cpu::layer_norm_backward(x.data(), detail::data_or_null(w), gy.data(), detail::data_or_null(gx),
                             detail::data_or_null(gw), detail::data_or_null(gb), rows, C, eps);
  }
  template <class T>
  void backward_cuda(const Tensor<T, CUDA>& x, const Tensor<T, CUDA>& w, const Tensor<T, CUDA>&,
                     const Tensor<T, CUDA>&, const Tensor<T, CUDA>& gy, Tensor<T, CUDA>& gx,
                     Tensor<T, CUDA>& gw, Tensor<T, CUDA>& gb) const {
    // The CUDA kernel always writes grad_x: a throwaway buffer when it is not wanted.
    Tensor<T, CUDA> dx = detail::defined_or_empty(gx, x.shape());
    cuda::layer_norm_backward(x.data(), detail::data_or_null(w), gy.data(), dx.data(),
                              detail::data_or_null(gw), detail::data_or_null(gb), rows, C,
                              static_cast<float>(eps));
  }
};

// nn.GroupNorm over x [N, C, *]: groups of C/groups channels and all spatial positions.
struct GroupNorm {
  static constexpr OpSaves saves = OpSaves::Inputs;
  int64_t groups;
  double eps;
  int64_t N = 0, C = 0, spatial = 1;

  const char* name() const { return "group_norm"; }
  template <class T, class D>
  Shape output_shape(const Tensor<T, D>& x, const Tensor<T, D>& weight, const Tensor<T, D>& bias) {
    MENTOR_CHECK_SHAPE(x.dim() >= 2, "group_norm: input must be [N, C, *], got ", x.shape().str());
    N = x.size(0);
    C = x.size(1);
    MENTOR_CHECK_SHAPE(groups >= 1 && C % groups == 0, "group_norm: ", groups,
                       " groups do not divide the ", C, " channels of input ", x.shape().str());
    detail::check_affine(weight, C, "group_norm", "weight", x.shape());
    detail::check_affine(bias, C, "group_norm", "bias", x.shape());
    spatial = 1;
    for (int i = 2; i < x.dim(); ++i) spatial *= x.size(i);
    return x.shape();
  }
  template <class T>
  void forward_cpu(const Tensor<T, CPU>& x, const Tensor<T, CPU>& w, const Tensor<T, CPU>& b,
                   Tensor<T, CPU>& y) const {
    cpu::group_norm_forward(x.data(), detail::data_or_null(w), detail::data_or_null(b), y.data(), N,
                            C, spatial, groups, eps);
  }
  template <class T>
  void forward_cuda(const Tensor<T, CUDA>& x, const Tensor<T, CUDA>& w, const Tensor<T, CUDA>& b,
                    Tensor<T, CUDA>& y) const {
    cuda::group_norm_forward(x.data(), detail::data_or_null(w), detail::data_or_null(b), y.data(),
                             N, C, spatial, groups, static_cast<float>(eps));
  }
  template <class T>
  void backward_cpu(const Tensor<T, CPU>& x, const Tensor<T, CPU>& w, const Tensor<T, CPU>&,
                    const Tensor<T, CPU>&, const Tensor<T, CPU>& gy, Tensor<T, CPU>& gx,
                    Tensor<T, CPU>& gw, Tensor<T, CPU>& gb) const {
    cpu::group_norm_backward(x.data(), detail::data_or_null(w), gy.data(), detail::data_or_null(gx),
                             detail::data_or_null(gw), detail::data_or_null(gb), N, C, spatial,
                             groups, eps);
  }
  template <class T>
  void backward_cuda(const Tensor<T, CUDA>& x, const Tensor<T, CUDA>& w, const Tensor<T, CUDA>&,
                     const Tensor<T, CUDA>&, const Tensor<T, CUDA>& gy, Tensor<T, CUDA>& gx,
                     Tensor<T, CUDA>& gw, Tensor<T, CUDA>& gb) const {
    // The CUDA kernel always writes grad_x: a throwaway buffer when it is not wanted.
    Tensor<T, CUDA> dx = detail::defined_or_empty(gx, x.shape());
    cuda::group_norm_backward(x.data(), detail::data_or_null(w), gy.data(), dx.data(),
                              detail::data_or_null(gw), detail::data_or_null(gb), N, C, spatial,
                              groups, static_cast<float>(eps));
  }
};

// LlamaGen RMSNorm over the last dimension: in acc precision x * rsqrt(mean(x², -1) + eps), rounded
// to T, then times weight [C] (an undefined weight means none).
template <FloatingElement T, class D>
Tensor<T, D> rms_norm(const Tensor<T, D>& x, const Tensor<T, D>& weight, double eps = 1e-5) {
  return apply(RmsNorm{eps}, x, weight);
}

// nn.LayerNorm over the last dimension: (x − mean) / sqrt(var + eps) * weight + bias, biased
// variance; weight and bias [C] may be undefined tensors (= none).
template <FloatingElement T, class D>
Tensor<T, D> layer_norm(const Tensor<T, D>& x, const Tensor<T, D>& weight, const Tensor<T, D>& bias,
                        double eps = 1e-5) {
  return apply(LayerNorm{eps}, x, weight, bias);
}

// nn.GroupNorm: x [N, C, *] normalised over each group of C/groups channels and all spatial
// positions, then per-channel weight [C] and bias [C] (either may be undefined = none).
template <FloatingElement T, class D>
Tensor<T, D> group_norm(const Tensor<T, D>& x, int64_t groups, const Tensor<T, D>& weight,
                        const Tensor<T, D>& bias, double eps = 1e-5) {
  return apply(GroupNorm{groups, eps}, x, weight, bias);
}

// torch.nn.functional.batch_norm: x [N, C, *] normalised per channel over the batch and every
// spatial position, then weight [C] and bias [C] (either may be undefined = none).
//   training: the batch's own statistics (biased variance). running_mean and running_var ([C],
//     both or neither defined) move in place, without gradient, towards the batch mean and the
//     unbiased batch variance: running = (1 - momentum) running + momentum batch, as torch.
//   eval: the running statistics: y = (x - running_mean) / sqrt(running_var + eps) w + b.
// Training mode is group_norm with one group per channel over the channel-major copy
// [1, C, N * spatial], so that op's fused kernels and backward serve on every device; eval mode is
// an affine map made of broadcast ops.
template <FloatingElement T, class D>
Tensor<T, D> batch_norm(const Tensor<T, D>& x, const Tensor<T, D>& weight, const Tensor<T, D>& bias,
                        Tensor<T, D> running_mean, Tensor<T, D> running_var, bool training,
                        double momentum = 0.1, double eps = 1e-5) {
  MENTOR_CHECK_SHAPE(x.dim() >= 2, "batch_norm: input must be [N, C, *], got ", x.shape().str());
  const int64_t C = x.size(1), count = x.numel() / std::max<int64_t>(C, 1);
  detail::check_affine(weight, C, "batch_norm", "weight", x.shape());
  detail::check_affine(bias, C, "batch_norm", "bias", x.shape());
  detail::check_affine(running_mean, C, "batch_norm", "running_mean", x.shape());
  detail::check_affine(running_var, C, "batch_norm", "running_var", x.shape());
  MENTOR_CHECK(running_mean.defined() == running_var.defined(),
               "batch_norm: running_mean and running_var must be both defined or both undefined");
  MENTOR_CHECK(momentum >= 0 && momentum <= 1, "batch_norm: momentum ", momentum,
               " is outside [0, 1]");
  MENTOR_CHECK(eps > 0, "batch_norm: eps ", eps, " must be positive");
  std::vector<int64_t> channel_first(static_cast<size_t>(x.dim()));
  for (int64_t d = 0; d < x.dim(); ++d) channel_first[static_cast<size_t>(d)] = d;
  std::swap(channel_first[0], channel_first[1]);  // its own inverse
  if (!training) {
    MENTOR_CHECK(running_mean.defined(),
                 "batch_norm: eval mode needs running_mean and running_var");
    std::vector<int64_t> per_channel(static_cast<size_t>(x.dim()), 1);
    per_channel[1] = C;
    const Tensor<T, D> inv = rsqrt(add_scalar(running_var.detach(), eps));
    Tensor<T, D> scale = weight.defined() ? inv * weight : inv;
    Tensor<T, D> shift = neg(running_mean.detach() * scale);
    if (bias.defined()) shift = shift + bias;
    return x * scale.reshape(Shape(per_channel)) + shift.reshape(Shape(per_channel));
  }
  MENTOR_CHECK_SHAPE(count > 1, "batch_norm: training needs more than one value per channel, got ",
                     x.shape().str());
  const Tensor<T, D> by_channel = x.permute(channel_first).reshape(Shape{1, C, count});
  if (running_mean.defined()) {
    NoGradGuard no_grad;
    const Tensor<T, D> rows = by_channel.detach().reshape(Shape{C, count});
    const Tensor<T, D> batch_mean = mean(rows, 1, true);
    const Tensor<T, D> batch_var =
        mul_scalar(mean(square(rows - batch_mean), 1), double(count) / double(count - 1));
    running_mean.copy_(add(mul_scalar(running_mean, 1 - momentum),
                           mul_scalar(batch_mean.reshape(Shape{C}), momentum)));
    running_var.copy_(add(mul_scalar(running_var, 1 - momentum), mul_scalar(batch_var, momentum)));
  }
  std::vector<int64_t> channel_major = x.shape().vec();
  std::swap(channel_major[0], channel_major[1]);
  return group_norm(by_channel, C, weight, bias, eps)
      .reshape(Shape(channel_major))
      .permute(channel_first)
      .contiguous();
}

}  // namespace mentor
