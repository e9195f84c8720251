#pragma once
// Global-norm gradient clipping (torch.nn.utils.clip_grad_norm_): n = √(Σ over every gradient of
// Σ g²); every gradient is multiplied by min(1, max_norm / (n + 1e-6)). Parameters without a
// gradient are ignored. The norm is returned before clipping (what training logs report).
//
// On the CPU the sum of squares is accumulated in double over fixed 64Ki-element chunks whose
// partial sums are added in order, so the result does not depend on the number of threads.
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include "mentor/backend/cpu/parallel.hpp"
#include "mentor/backend/cuda/fused.hpp"
#include "mentor/core/error.hpp"
#include "mentor/core/tensor.hpp"
#include "mentor/ops/apply.hpp"
#include "mentor/ops/elementwise.hpp"

namespace mentor::train {

namespace detail {

template <class T>
double sum_of_squares_cpu(const T* data, int64_t n) {
  constexpr int64_t kChunk = int64_t{1} << 16;
  const int64_t chunks = (n + kChunk - 1) / kChunk;
  std::vector<double> partial(static_cast<size_t>(chunks), 0.0);
  cpu::parallel_for(chunks, 1, [&](int64_t begin, int64_t end) {
    for (int64_t c = begin; c < end; ++c) {
      const int64_t lo = c * kChunk, hi = std::min(n, lo + kChunk);
      double acc = 0.0;
      for (int64_t i = lo; i < hi; ++i) {
        const double x = static_cast<double>(static_cast<acc_t<T>>(data[i]));
        acc += x * x;
      }
      partial[static_cast<size_t>(c)] = acc;
    }
  });
  double total = 0.0;
  for (double p : partial) total += p;
  return total;
}

// total = Σ over a non-empty list of contiguous gradients of Σ g²: tensor by tensor in double on
// the CPU, one multi-tensor launch (float) on CUDA.
struct SumOfSquares {
  template <class T>
  void forward_cpu(const std::vector<Tensor<T, CPU>>& grads, double& total) const {
    total = 0.0;
    for (const Tensor<T, CPU>& g : grads) total += sum_of_squares_cpu(g.data(), g.numel());
  }
  template <class T>
  void forward_cuda(const std::vector<Tensor<T, CUDA>>& grads, double& total) const {
    std::vector<const T*> pointers;
    std::vector<int64_t> numels;
    for (const Tensor<T, CUDA>& g : grads) {
      pointers.push_back(g.data());
      numels.push_back(g.numel());
    }
    Tensor<float, CUDA> out = Tensor<float, CUDA>::zeros(Shape{1});
    cuda::squared_norm_multi_tensor<T>(pointers, numels, out.data());
    total = static_cast<double>(out.item());
  }
};

// Multiplies a parameter's gradient g by `factor`: in place on the CPU when g is contiguous and
// held only by the parameter's slot and the caller, else as a new gradient tensor.
struct ScaleGrad {
  double factor;

  template <class T>
  void forward_cpu(Tensor<T, CPU>& g, Tensor<T, CPU>& param) const {
    if (g.is_contiguous() && g.storage().use_count() <= 2) {  // the slot's and ours
      using A = acc_t<T>;
      const A f = static_cast<A>(factor);
      T* data = g.data();
      cpu::parallel_for(g.numel(), 1 << 15, [&](int64_t begin, int64_t end) {
        for (int64_t i = begin; i < end; ++i)
          data[i] = convert_element<T>(static_cast<A>(data[i]) * f);
      });
      return;
    }
    param.set_grad(mul_scalar(g, factor));
  }
  template <class T>
  void forward_cuda(Tensor<T, CUDA>& g, Tensor<T, CUDA>& param) const {
    param.set_grad(mul_scalar(g, factor));
  }
};

}  // namespace detail

// Σ g² over the defined gradients of `params`, in double.
template <class T, class D>
double grad_sum_of_squares(const std::vector<Tensor<T, D>*>& params) {
  std::vector<Tensor<T, D>> grads;
  for (Tensor<T, D>* p : params) {
    MENTOR_CHECK(p != nullptr, "grad_norm: null parameter");
    Tensor<T, D> g = p->grad();
    if (g.defined()) grads.push_back(g.contiguous_nograd());
  }
  if (grads.empty()) return 0.0;
  double total = 0.0;
  launch(detail::SumOfSquares{}, grads, total);
  return total;
}

// The global L2 norm of the defined gradients.
template <class T, class D>
double grad_norm(const std::vector<Tensor<T, D>*>& params) {
  return std::sqrt(grad_sum_of_squares(params));
}

// Multiplies every defined gradient by `factor` in place (the gradient tensors are owned by their
// parameters: autograd never shares a leaf's accumulated gradient).
template <class T, class D>
void scale_grads(const std::vector<Tensor<T, D>*>& params, double factor) {
  if (factor == 1.0) return;
  NoGradGuard no_grad;
  for (Tensor<T, D>* p : params) {
    Tensor<T, D> g = p->grad();
    if (g.defined()) launch(detail::ScaleGrad{factor}, g, *p);
  }
}

// Clips the gradients to a global L2 norm of max_norm (torch's coefficient min(1, max/(n+1e-6)))
// and returns the norm before clipping. max_norm <= 0 disables clipping (the norm is still
// computed). A non-finite norm leaves the gradients untouched (the caller decides what to do).
template <class T, class D>
double clip_grad_norm(const std::vector<Tensor<T, D>*>& params, double max_norm) {
  const double norm = grad_norm(params);
  if (max_norm > 0 && std::isfinite(norm)) {
    const double coefficient = max_norm / (norm + 1e-6);
    if (coefficient < 1.0) scale_grads(params, coefficient);
  }
  return norm;
}

// Pointers of a named list, for the functions above.
template <class T, class D>
std::vector<Tensor<T, D>*> tensor_pointers(
    const std::vector<std::pair<std::string, Tensor<T, D>*>>& named) {
  std::vector<Tensor<T, D>*> out;
  out.reserve(named.size());
  for (const auto& [name, tensor] : named) out.push_back(tensor);
  return out;
}

}  // namespace mentor::train
