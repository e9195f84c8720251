#pragma once
// Normalisation layers: rms_norm (LlamaGen RMSNorm), layer_norm (nn.LayerNorm over the last
// dimension) and group_norm (nn.GroupNorm). Each is one fused kernel per row (or group) forward and
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

#include "mentor/backend/cpu/parallel.hpp"
#include "mentor/backend/launch/norm.hpp"
#include "mentor/core/tensor.hpp"
#include "mentor/ops/dispatch.hpp"

namespace mentor {

namespace detail {

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
  Tensor<T, CPU> to_tensor() const {
    Tensor<T, CPU> out = Tensor<T, CPU>::empty(Shape{static_cast<int64_t>(total_.size())});
    for (size_t i = 0; i < total_.size(); ++i) out.data()[i] = static_cast<T>(total_[i]);
    return out;
  }

 private:
  std::vector<A> total_;
  std::mutex mutex_;
};

// Rows per parallel chunk so that a chunk holds at least ~16K elements.
inline int64_t row_grain(int64_t row_length) {
  return std::max<int64_t>(1, 16384 / std::max<int64_t>(row_length, 1));
}

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

// LlamaGen RMSNorm over the last dimension: in acc precision x * rsqrt(mean(x², -1) + eps), rounded
// to T, then times weight [C] (an undefined weight means none).
template <FloatingElement T, class D>
Tensor<T, D> rms_norm(const Tensor<T, D>& x, const Tensor<T, D>& weight, double eps = 1e-5) {
  MENTOR_CHECK_SHAPE(x.dim() >= 1, "rms_norm: input must have a channel dimension, got ",
                     x.shape().str());
  const int64_t C = x.size(-1), rows = C == 0 ? 0 : x.numel() / C;
  detail::check_affine(weight, C, "rms_norm", "weight", x.shape());
  const Tensor<T, D> xc = x.contiguous_nograd();
  const Tensor<T, D> wc = weight.defined() ? weight.contiguous_nograd() : Tensor<T, D>();
  Tensor<T, D> y = Tensor<T, D>::empty(x.shape());
  if constexpr (std::is_same_v<D, CPU>) {
    using A = acc_t<T>;
    const T* px = xc.data();
    const T* pw = detail::data_or_null(wc);
    T* py = y.data();
    cpu::parallel_for(rows, detail::row_grain(C), [&](int64_t begin, int64_t end) {
      for (int64_t r = begin; r < end; ++r) {
        const T* xr = px + r * C;
        T* yr = py + r * C;
        A sum_sq = 0;
        for (int64_t c = 0; c < C; ++c) sum_sq += static_cast<A>(xr[c]) * static_cast<A>(xr[c]);
        const A rstd = A(1) / std::sqrt(sum_sq / static_cast<A>(C) + static_cast<A>(eps));
        for (int64_t c = 0; c < C; ++c) {
          const T normed = static_cast<T>(static_cast<A>(xr[c]) * rstd);
          yr[c] = pw ? static_cast<T>(static_cast<A>(normed) * static_cast<A>(pw[c])) : normed;
        }
      }
    });
  } else {
    MENTOR_CUDA_CALL(cuda::rms_norm_forward(xc.data(), detail::data_or_null(wc), y.data(), rows, C,
                                            static_cast<float>(eps)));
  }
  autograd::record(
      "rms_norm", y,
      [xc, wc, eps, rows, C](const Tensor<T, D>& g_in, const std::array<bool, 2>& needs) {
        const Tensor<T, D> g = g_in.contiguous_nograd();
        Tensor<T, D> grad_x = Tensor<T, D>::empty(xc.shape());
        Tensor<T, D> grad_w;
        if constexpr (std::is_same_v<D, CPU>) {
          using A = acc_t<T>;
          const T* px = xc.data();
          const T* pw = detail::data_or_null(wc);
          const T* pg = g.data();
          T* pdx = grad_x.data();
          detail::ChannelSums<A> dw(C);
          const bool want_w = needs[1] && wc.defined();
          cpu::parallel_for(rows, detail::row_grain(C), [&](int64_t begin, int64_t end) {
            std::vector<A> dw_local = want_w ? dw.local() : std::vector<A>();
            for (int64_t r = begin; r < end; ++r) {
              const T* xr = px + r * C;
              const T* gr = pg + r * C;
              A sum_sq = 0;
              for (int64_t c = 0; c < C; ++c)
                sum_sq += static_cast<A>(xr[c]) * static_cast<A>(xr[c]);
              const A rstd = A(1) / std::sqrt(sum_sq / static_cast<A>(C) + static_cast<A>(eps));
              A dot = 0;  // Σ dx̂ x̂
              for (int64_t c = 0; c < C; ++c) {
                const A xhat = static_cast<A>(xr[c]) * rstd;
                const A dxhat =
                    pw ? static_cast<A>(gr[c]) * static_cast<A>(pw[c]) : static_cast<A>(gr[c]);
                dot += dxhat * xhat;
                // The weight multiplies the normalised value as rounded to T.
                if (want_w)
                  dw_local[static_cast<size_t>(c)] +=
                      static_cast<A>(gr[c]) * static_cast<A>(static_cast<T>(xhat));
              }
              const A mean_dot = dot / static_cast<A>(C);
              T* dxr = pdx + r * C;
              for (int64_t c = 0; c < C; ++c) {
                const A xhat = static_cast<A>(xr[c]) * rstd;
                const A dxhat =
                    pw ? static_cast<A>(gr[c]) * static_cast<A>(pw[c]) : static_cast<A>(gr[c]);
                dxr[c] = static_cast<T>(rstd * (dxhat - xhat * mean_dot));
              }
            }
            if (want_w) dw.merge(dw_local);
          });
          if (want_w) grad_w = dw.template to_tensor<T>();
        } else {
          if (needs[1] && wc.defined()) grad_w = Tensor<T, D>::empty(wc.shape());
          MENTOR_CUDA_CALL(cuda::rms_norm_backward(xc.data(), detail::data_or_null(wc), g.data(),
                                                   grad_x.data(), detail::data_or_null(grad_w),
                                                   rows, C, static_cast<float>(eps)));
        }
        return std::tuple{grad_x, grad_w};
      },
      x, weight);
  return y;
}

// nn.LayerNorm over the last dimension: (x − mean) / sqrt(var + eps) * weight + bias, biased
// variance; weight and bias [C] may be undefined tensors (= none).
template <FloatingElement T, class D>
Tensor<T, D> layer_norm(const Tensor<T, D>& x, const Tensor<T, D>& weight, const Tensor<T, D>& bias,
                        double eps = 1e-5) {
  MENTOR_CHECK_SHAPE(x.dim() >= 1, "layer_norm: input must have a channel dimension, got ",
                     x.shape().str());
  const int64_t C = x.size(-1), rows = C == 0 ? 0 : x.numel() / C;
  detail::check_affine(weight, C, "layer_norm", "weight", x.shape());
  detail::check_affine(bias, C, "layer_norm", "bias", x.shape());
  const Tensor<T, D> xc = x.contiguous_nograd();
  const Tensor<T, D> wc = weight.defined() ? weight.contiguous_nograd() : Tensor<T, D>();
  const Tensor<T, D> bc = bias.defined() ? bias.contiguous_nograd() : Tensor<T, D>();
  Tensor<T, D> y = Tensor<T, D>::empty(x.shape());
  if constexpr (std::is_same_v<D, CPU>) {
    using A = acc_t<T>;
    const T* px = xc.data();
    const T* pw = detail::data_or_null(wc);
    const T* pb = detail::data_or_null(bc);
    T* py = y.data();
    cpu::parallel_for(rows, detail::row_grain(C), [&](int64_t begin, int64_t end) {
      for (int64_t r = begin; r < end; ++r) {
        const T* xr = px + r * C;
        T* yr = py + r * C;
        A mean = 0;
        for (int64_t c = 0; c < C; ++c) mean += static_cast<A>(xr[c]);
        mean /= static_cast<A>(C);
        A var = 0;
        for (int64_t c = 0; c < C; ++c) {
          const A d = static_cast<A>(xr[c]) - mean;
          var += d * d;
        }
        const A rstd = A(1) / std::sqrt(var / static_cast<A>(C) + static_cast<A>(eps));
        for (int64_t c = 0; c < C; ++c) {
          A v = (static_cast<A>(xr[c]) - mean) * rstd;
          if (pw) v *= static_cast<A>(pw[c]);
          if (pb) v += static_cast<A>(pb[c]);
          yr[c] = static_cast<T>(v);
        }
      }
    });
  } else {
    MENTOR_CUDA_CALL(cuda::layer_norm_forward(xc.data(), detail::data_or_null(wc),
                                              detail::data_or_null(bc), y.data(), rows, C,
                                              static_cast<float>(eps)));
  }
  autograd::record(
      "layer_norm", y,
      [xc, wc, eps, rows, C](const Tensor<T, D>& g_in, const std::array<bool, 3>& needs) {
        const Tensor<T, D> g = g_in.contiguous_nograd();
        Tensor<T, D> grad_x = Tensor<T, D>::empty(xc.shape());
        Tensor<T, D> grad_w, grad_b;
        if constexpr (std::is_same_v<D, CPU>) {
          using A = acc_t<T>;
          const T* px = xc.data();
          const T* pw = detail::data_or_null(wc);
          const T* pg = g.data();
          T* pdx = grad_x.data();
          const bool want_w = needs[1], want_b = needs[2];
          detail::ChannelSums<A> dw(C), db(C);
          cpu::parallel_for(rows, detail::row_grain(C), [&](int64_t begin, int64_t end) {
            std::vector<A> dw_local = want_w ? dw.local() : std::vector<A>();
            std::vector<A> db_local = want_b ? db.local() : std::vector<A>();
            for (int64_t r = begin; r < end; ++r) {
              const T* xr = px + r * C;
              const T* gr = pg + r * C;
              A mean = 0;
              for (int64_t c = 0; c < C; ++c) mean += static_cast<A>(xr[c]);
              mean /= static_cast<A>(C);
              A var = 0;
              for (int64_t c = 0; c < C; ++c) {
                const A d = static_cast<A>(xr[c]) - mean;
                var += d * d;
              }
              const A rstd = A(1) / std::sqrt(var / static_cast<A>(C) + static_cast<A>(eps));
              A sum_dxhat = 0, sum_dxhat_xhat = 0;
              for (int64_t c = 0; c < C; ++c) {
                const A xhat = (static_cast<A>(xr[c]) - mean) * rstd;
                const A gc = static_cast<A>(gr[c]);
                const A dxhat = pw ? gc * static_cast<A>(pw[c]) : gc;
                sum_dxhat += dxhat;
                sum_dxhat_xhat += dxhat * xhat;
                if (want_w) dw_local[static_cast<size_t>(c)] += gc * xhat;
                if (want_b) db_local[static_cast<size_t>(c)] += gc;
              }
              const A mean_dxhat = sum_dxhat / static_cast<A>(C);
              const A mean_dot = sum_dxhat_xhat / static_cast<A>(C);
              T* dxr = pdx + r * C;
              for (int64_t c = 0; c < C; ++c) {
                const A xhat = (static_cast<A>(xr[c]) - mean) * rstd;
                const A gc = static_cast<A>(gr[c]);
                const A dxhat = pw ? gc * static_cast<A>(pw[c]) : gc;
                dxr[c] = static_cast<T>(rstd * (dxhat - mean_dxhat - xhat * mean_dot));
              }
            }
            if (want_w) dw.merge(dw_local);
            if (want_b) db.merge(db_local);
          });
          if (want_w) grad_w = dw.template to_tensor<T>();
          if (want_b) grad_b = db.template to_tensor<T>();
        } else {
          if (needs[1]) grad_w = Tensor<T, D>::empty(Shape{C});
          if (needs[2]) grad_b = Tensor<T, D>::empty(Shape{C});
          MENTOR_CUDA_CALL(cuda::layer_norm_backward(xc.data(), detail::data_or_null(wc), g.data(),
                                                     grad_x.data(), detail::data_or_null(grad_w),
                                                     detail::data_or_null(grad_b), rows, C,
                                                     static_cast<float>(eps)));
        }
        return std::tuple{grad_x, grad_w, grad_b};
      },
      x, weight, bias);
  return y;
}

// nn.GroupNorm: x [N, C, *] normalised over each group of C/groups channels and all spatial
// positions, then per-channel weight [C] and bias [C] (either may be undefined = none).
template <FloatingElement T, class D>
Tensor<T, D> group_norm(const Tensor<T, D>& x, int64_t groups, const Tensor<T, D>& weight,
                        const Tensor<T, D>& bias, double eps = 1e-5) {
  MENTOR_CHECK_SHAPE(x.dim() >= 2, "group_norm: input must be [N, C, *], got ", x.shape().str());
  const int64_t N = x.size(0), C = x.size(1);
  MENTOR_CHECK_SHAPE(groups >= 1 && C % groups == 0, "group_norm: ", groups,
                     " groups do not divide the ", C, " channels of input ", x.shape().str());
  detail::check_affine(weight, C, "group_norm", "weight", x.shape());
  detail::check_affine(bias, C, "group_norm", "bias", x.shape());
  int64_t spatial = 1;
  for (int i = 2; i < x.dim(); ++i) spatial *= x.size(i);
  const int64_t channels_per_group = C / groups;
  const Tensor<T, D> xc = x.contiguous_nograd();
  const Tensor<T, D> wc = weight.defined() ? weight.contiguous_nograd() : Tensor<T, D>();
  const Tensor<T, D> bc = bias.defined() ? bias.contiguous_nograd() : Tensor<T, D>();
  Tensor<T, D> y = Tensor<T, D>::empty(x.shape());
  if constexpr (std::is_same_v<D, CPU>) {
    using A = acc_t<T>;
    const T* px = xc.data();
    const T* pw = detail::data_or_null(wc);
    const T* pb = detail::data_or_null(bc);
    T* py = y.data();
    const int64_t group_size = channels_per_group * spatial;
    cpu::parallel_for(N * groups, detail::row_grain(group_size), [&](int64_t begin, int64_t end) {
      for (int64_t ng = begin; ng < end; ++ng) {
        const T* xg = px + ng * group_size;
        T* yg = py + ng * group_size;
        A mean = 0;
        for (int64_t i = 0; i < group_size; ++i) mean += static_cast<A>(xg[i]);
        mean /= static_cast<A>(group_size);
        A var = 0;
        for (int64_t i = 0; i < group_size; ++i) {
          const A d = static_cast<A>(xg[i]) - mean;
          var += d * d;
        }
        const A rstd = A(1) / std::sqrt(var / static_cast<A>(group_size) + static_cast<A>(eps));
        const int64_t c0 = (ng % groups) * channels_per_group;
        for (int64_t cc = 0; cc < channels_per_group; ++cc) {
          const A w = pw ? static_cast<A>(pw[c0 + cc]) : A(1);
          const A b = pb ? static_cast<A>(pb[c0 + cc]) : A(0);
          const T* xs = xg + cc * spatial;
          T* ys = yg + cc * spatial;
          for (int64_t s = 0; s < spatial; ++s)
            ys[s] = static_cast<T>((static_cast<A>(xs[s]) - mean) * rstd * w + b);
        }
      }
    });
  } else {
    MENTOR_CUDA_CALL(cuda::group_norm_forward(xc.data(), detail::data_or_null(wc),
                                              detail::data_or_null(bc), y.data(), N, C, spatial,
                                              groups, static_cast<float>(eps)));
  }
  autograd::record(
      "group_norm", y,
      [xc, wc, eps, N, C, spatial, groups, channels_per_group](const Tensor<T, D>& g_in,
                                                               const std::array<bool, 3>& needs) {
        const Tensor<T, D> g = g_in.contiguous_nograd();
        Tensor<T, D> grad_x = Tensor<T, D>::empty(xc.shape());
        Tensor<T, D> grad_w, grad_b;
        if constexpr (std::is_same_v<D, CPU>) {
          using A = acc_t<T>;
          const T* px = xc.data();
          const T* pw = detail::data_or_null(wc);
          const T* pg = g.data();
          T* pdx = grad_x.data();
          const int64_t group_size = channels_per_group * spatial;
          // Per-(sample, channel) partial sums Σ_s g x̂ and Σ_s g, reduced over samples below.
          std::vector<A> dw_nc(static_cast<size_t>(N * C), A(0)),
              db_nc(static_cast<size_t>(N * C), A(0));
          cpu::parallel_for(
              N * groups, detail::row_grain(group_size), [&](int64_t begin, int64_t end) {
                for (int64_t ng = begin; ng < end; ++ng) {
                  const int64_t n = ng / groups, c0 = (ng % groups) * channels_per_group;
                  const T* xg = px + ng * group_size;
                  const T* gg = pg + ng * group_size;
                  A mean = 0;
                  for (int64_t i = 0; i < group_size; ++i) mean += static_cast<A>(xg[i]);
                  mean /= static_cast<A>(group_size);
                  A var = 0;
                  for (int64_t i = 0; i < group_size; ++i) {
                    const A d = static_cast<A>(xg[i]) - mean;
                    var += d * d;
                  }
                  const A rstd =
                      A(1) / std::sqrt(var / static_cast<A>(group_size) + static_cast<A>(eps));
                  A sum_dxhat = 0, sum_dxhat_xhat = 0;
                  for (int64_t cc = 0; cc < channels_per_group; ++cc) {
                    const A w = pw ? static_cast<A>(pw[c0 + cc]) : A(1);
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
                  const A mean_dxhat = sum_dxhat / static_cast<A>(group_size);
                  const A mean_dot = sum_dxhat_xhat / static_cast<A>(group_size);
                  T* dxg = pdx + ng * group_size;
                  for (int64_t cc = 0; cc < channels_per_group; ++cc) {
                    const A w = pw ? static_cast<A>(pw[c0 + cc]) : A(1);
                    for (int64_t s = 0; s < spatial; ++s) {
                      const int64_t i = cc * spatial + s;
                      const A xhat = (static_cast<A>(xg[i]) - mean) * rstd;
                      const A dxhat = static_cast<A>(gg[i]) * w;
                      dxg[i] = static_cast<T>(rstd * (dxhat - mean_dxhat - xhat * mean_dot));
                    }
                  }
                }
              });
          auto reduce_samples = [&](const std::vector<A>& per_nc) {
            Tensor<T, D> out = Tensor<T, D>::empty(Shape{C});
            for (int64_t c = 0; c < C; ++c) {
              A s = 0;
              for (int64_t n = 0; n < N; ++n) s += per_nc[static_cast<size_t>(n * C + c)];
              out.data()[c] = static_cast<T>(s);
            }
            return out;
          };
          if (needs[1]) grad_w = reduce_samples(dw_nc);
          if (needs[2]) grad_b = reduce_samples(db_nc);
        } else {
          if (needs[1]) grad_w = Tensor<T, D>::empty(Shape{C});
          if (needs[2]) grad_b = Tensor<T, D>::empty(Shape{C});
          MENTOR_CUDA_CALL(cuda::group_norm_backward(xc.data(), detail::data_or_null(wc), g.data(),
                                                     grad_x.data(), detail::data_or_null(grad_w),
                                                     detail::data_or_null(grad_b), N, C, spatial,
                                                     groups, static_cast<float>(eps)));
        }
        return std::tuple{grad_x, grad_w, grad_b};
      },
      x, weight, bias);
  return y;
}

}  // namespace mentor
