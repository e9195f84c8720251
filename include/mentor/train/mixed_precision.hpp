#pragma once
// Mixed precision: the model computes in T (bf16 on the accelerator), the optimizer sees float32
// master weights and keeps float32 moments.
//
//   MasterWeights<bf16, D> masters(model);   // float32 copies of the trainable parameters
//   ... loss.backward() ...                  // bf16 gradients on the model's parameters
//   masters.accumulate_grads();              // += into float32 master gradients, model grads freed
//   (repeat for each micro-batch; then average, clip, optimizer.step() on masters.named())
//   masters.publish();                       // master → model, rounded to bf16 (nearest even)
//
// Rounding every update into bf16 weights directly would lose small updates (an lr·update below
// half a bf16 ulp of the weight vanishes), which is why the masters exist. For T = float the
// masters *are* the model's parameters (no copy, accumulate/publish do nothing): the exact float32
// path the exactness tests use.
//
// Only trainable parameters (requires_grad) get a master, so frozen ones cost no float32 copy, no
// gradient and no optimizer state. Build MasterWeights after freezing; rebuild after changing it.
#include <memory>
#include <string>
#include <type_traits>
#include <utility>
#include <vector>

#include "mentor/backend/cpu/parallel.hpp"
#include "mentor/core/error.hpp"
#include "mentor/core/tensor.hpp"
#include "mentor/nn/module.hpp"
#include "mentor/ops/apply.hpp"
#include "mentor/train/optim.hpp"

namespace mentor::train {

// Which compute type a run uses, when it is chosen at run time (configs, command lines).
enum class Precision { fp32, bf16 };

inline Precision parse_precision(const std::string& text) {
  if (text == "fp32" || text == "float32" || text == "float") return Precision::fp32;
  if (text == "bf16" || text == "bfloat16") return Precision::bf16;
  throw Error(mentor::detail::concat("unknown precision \"", text, "\" (expected fp32 or bf16)"));
}

inline const char* precision_name(Precision p) { return p == Precision::fp32 ? "fp32" : "bf16"; }

// Calls f.template operator()<T>() with T = float or bf16 according to `precision`, e.g.
//   with_precision(p, [&]<class T>() { train<T>(...); });
template <class F>
decltype(auto) with_precision(Precision precision, F&& f) {
  if (precision == Precision::bf16) return f.template operator()<bf16>();
  return f.template operator()<float>();
}

namespace detail {
// model = master rounded to the model's type: on the CPU straight into a contiguous model tensor,
// else through a converted copy.
struct Publish {
  template <class T>
  void forward_cpu(Tensor<T, CPU>& model, const Tensor<float, CPU>& master) const {
    if (!model.is_contiguous()) {
      model.copy_(master.template to<T>());
      return;
    }
    T* dst = model.data();
    const float* src = master.data();
    cpu::parallel_for(master.numel(), 1 << 15, [&](int64_t begin, int64_t end) {
      for (int64_t i = begin; i < end; ++i) dst[i] = convert_element<T>(src[i]);
    });
  }
  template <class T>
  void forward_cuda(Tensor<T, CUDA>& model, const Tensor<float, CUDA>& master) const {
    model.copy_(master.template to<T>());
  }
};
}  // namespace detail

template <FloatingElement T, class D = CPU>
class MasterWeights {
 public:
  static constexpr bool kAliasesModel = std::is_same_v<T, float>;

  explicit MasterWeights(nn::Module<T, D>& model) {
    for (auto& [name, tensor] : model.named_parameters()) {
      if (!tensor->requires_grad()) continue;
      entries_.push_back(std::make_unique<Entry>());
      Entry& e = *entries_.back();
      e.name = name;
      e.model = tensor;
      if constexpr (!kAliasesModel) {
        e.master = tensor->detach().template to<float>().contiguous_nograd();
        if (e.master.storage() == tensor->storage()) e.master = e.master.clone();
      }
    }
  }
  MasterWeights(const MasterWeights&) = delete;
  MasterWeights& operator=(const MasterWeights&) = delete;

  // The float32 tensors the optimizer updates, by the model's parameter names.
  NamedParams<D> named() {
    NamedParams<D> out;
    out.reserve(entries_.size());
    for (auto& e : entries_) out.emplace_back(e->name, &master_of(*e));
    return out;
  }
  std::vector<Tensor<float, D>*> pointers() {
    std::vector<Tensor<float, D>*> out;
    for (auto& e : entries_) out.push_back(&master_of(*e));
    return out;
  }
  size_t size() const { return entries_.size(); }

  // Moves the model's gradients into the masters' (float32, accumulated across calls) and frees
  // the model's. Call after each micro-batch's backward.
  void accumulate_grads() {
    if constexpr (kAliasesModel) return;
    NoGradGuard no_grad;
    for (auto& e : entries_) {
      Tensor<T, D> g = e->model->grad();
      if (!g.defined()) continue;
      Tensor<float, D> g32 = g.template to<float>();
      Tensor<float, D> accumulated = e->master.grad();
      if (!accumulated.defined()) {
        e->master.set_grad(g32.storage() == g.storage() ? g32.clone() : g32);
      } else {
        accumulated.add_(g32);
      }
      e->model->zero_grad();
    }
  }

  // Copies the masters into the model's parameters, rounding to T. Call after optimizer.step().
  void publish() {
    if constexpr (kAliasesModel) return;
    NoGradGuard no_grad;
    for (auto& e : entries_) launch(detail::Publish{}, *e->model, e->master);
  }

  // Re-reads the masters from the model (after loading model weights without master copies).
  void pull_from_model() {
    if constexpr (kAliasesModel) return;
    NoGradGuard no_grad;
    for (auto& e : entries_) e->master.copy_(e->model->detach().template to<float>());
  }

  void zero_grad() {
    for (auto& e : entries_) {
      e->model->zero_grad();
      if constexpr (!kAliasesModel) e->master.zero_grad();
    }
  }

 private:
  struct Entry {
    std::string name;
    Tensor<T, D>* model = nullptr;
    Tensor<float, D> master;  // unused when kAliasesModel
  };
  Tensor<float, D>& master_of(Entry& e) {
    if constexpr (kAliasesModel)
      return *e.model;
    else
      return e.master;
  }

  std::vector<std::unique_ptr<Entry>> entries_;
};

// The name the training brief uses for the same thing.
template <FloatingElement T, class D = CPU>
using MixedPrecision = MasterWeights<T, D>;

}  // namespace mentor::train
