#pragma once
// Tensor<T, Device>: a strided view onto reference-counted storage, with run-time shape and strides
// and compile-time element type and device. Views (reshape, transpose, narrow, expand, ...) share
// storage and are differentiable; conversions between element types or devices are explicit
// (`to<bf16>()`, `to<CUDA>()`), so mixing them by accident does not compile.
#include <cstdint>
#include <initializer_list>
#include <memory>
#include <numeric>
#include <ostream>
#include <type_traits>
#include <vector>

#include "mentor/autograd/node.hpp"
#include "mentor/core/device_ops.hpp"
#include "mentor/core/dtype.hpp"
#include "mentor/core/error.hpp"
#include "mentor/core/random.hpp"
#include "mentor/core/shape.hpp"

namespace mentor {

namespace autograd {
template <class T, class D>
std::shared_ptr<Slot<T, D>> slot_of(const Tensor<T, D>& tensor);
}

template <class T, class D = CPU>
class Tensor {
  static_assert(is_element_v<T>, "Tensor: T must be one of float, double, bf16, int32_t, int64_t, "
                                 "uint8_t, bool");
  static_assert(is_device_v<D>, "Tensor: Device must be mentor::CPU or mentor::CUDA");

 public:
  using value_type = T;
  using device_type = D;

  // An undefined tensor (no storage): what grad() returns before a backward reached it. It has no
  // shape: every access but defined(), describe() and grad bookkeeping throws, naming the access.
  Tensor() = default;

  // ---- creation -------------------------------------------------------------------------------
  static Tensor empty(const Shape& shape) {
    Tensor out;
    out.strides_ = contiguous_strides(shape);  // first: it rejects negative dims
    size_t bytes = 0;  // numel() and this product are overflow-checked: shapes come from files
    MENTOR_CHECK_SHAPE(
        !__builtin_mul_overflow(static_cast<size_t>(shape.numel()), sizeof(T), &bytes),
        "Tensor: shape ", shape.str(), " needs more than 2^64 bytes");
    out.storage_ = detail::DeviceOps<D>::allocate(bytes);
    out.shape_ = shape;
    return out;
  }
  static Tensor full(const Shape& shape, T value) {
    Tensor out = empty(shape);
    detail::DeviceOps<D>::fill(out.data(), out.numel(), value);
    return out;
  }
  static Tensor zeros(const Shape& shape) { return full(shape, convert_element<T>(0)); }
  static Tensor ones(const Shape& shape) { return full(shape, convert_element<T>(1)); }
  static Tensor scalar(T value) { return full(Shape{}, value); }
  // Copies host values; the count must equal the shape's element count.
  static Tensor from_vector(const std::vector<T>& values, const Shape& shape) {
    MENTOR_CHECK_SHAPE(static_cast<int64_t>(values.size()) == shape.numel(), "from_vector: ",
                       values.size(), " values do not fill shape ", shape.str());
    Tensor out = empty(shape);
    if constexpr (std::is_same_v<T, bool>) {
      std::unique_ptr<bool[]> tmp(new bool[values.size()]);
      for (size_t i = 0; i < values.size(); ++i) tmp[i] = values[i];
      detail::DeviceOps<D>::from_host(out.data(), tmp.get(), values.size() * sizeof(T));
    } else {
      detail::DeviceOps<D>::from_host(out.data(), values.data(), values.size() * sizeof(T));
    }
    return out;
  }
  static Tensor from_vector(const std::vector<T>& values) {
    return from_vector(values, Shape{static_cast<int64_t>(values.size())});
  }
  static Tensor arange(int64_t n) {
    std::vector<T> values(static_cast<size_t>(n));
    for (int64_t i = 0; i < n; ++i) values[static_cast<size_t>(i)] = convert_element<T>(i);
    return from_vector(values, Shape{n});
  }
  // Uniform in [low, high) / normal(mean, std) from the Philox stream of `gen` (same on every device).
  static Tensor rand(const Shape& shape, Generator& gen, float low = 0.f, float high = 1.f)
    requires is_floating_v<T>
  {
    Tensor out = empty(shape);
    uint64_t offset = gen.reserve(out.numel());
    detail::DeviceOps<D>::uniform(out.data(), out.numel(), gen.seed, offset, low, high);
    return out;
  }
  static Tensor randn(const Shape& shape, Generator& gen, float mean = 0.f, float std = 1.f)
    requires is_floating_v<T>
  {
    Tensor out = empty(shape);
    uint64_t offset = gen.reserve(out.numel());
    detail::DeviceOps<D>::normal(out.data(), out.numel(), gen.seed, offset, mean, std);
    return out;
  }

  // ---- geometry -------------------------------------------------------------------------------
  bool defined() const { return storage_ != nullptr; }
  const Shape& shape() const {
    require_defined("shape()");
    return shape_;
  }
  const Strides& strides() const {
    require_defined("strides()");
    return strides_;
  }
  int64_t offset() const {
    require_defined("offset()");
    return offset_;
  }
  int dim() const { return shape().rank(); }
  int64_t size(int64_t d) const { return shape()[wrap_dim(d, dim(), "size")]; }
  int64_t stride(int64_t d) const { return strides()[wrap_dim(d, dim(), "stride")]; }
  int64_t numel() const { return shape().numel(); }
  size_t nbytes() const { return static_cast<size_t>(numel()) * sizeof(T); }
  bool is_contiguous() const {
    require_defined("is_contiguous()");
    int64_t expected = 1;
    for (int i = dim() - 1; i >= 0; --i) {
      if (shape_[i] != 1 && strides_[i] != expected) return false;
      expected *= shape_[i];
    }
    return true;
  }
  T* data() {
    require_defined("data()");
    return static_cast<T*>(storage_->data) + offset_;
  }
  const T* data() const {
    require_defined("data()");
    return static_cast<const T*>(storage_->data) + offset_;
  }
  const std::shared_ptr<Storage>& storage() const { return storage_; }

  // Wraps existing memory without copying; `owner` keeps it alive (e.g. a memory-mapped file).
  static Tensor borrow(T* ptr, const Shape& shape, std::shared_ptr<void> owner) {
    Tensor out;
    out.storage_ = std::make_shared<Storage>(ptr, static_cast<size_t>(shape.numel()) * sizeof(T), nullptr);
    out.storage_->keep_alive = std::move(owner);
    out.shape_ = shape;
    out.strides_ = contiguous_strides(shape);
    return out;
  }

  // ---- host access ----------------------------------------------------------------------------
  std::vector<T> to_vector() const {
    require_defined("to_vector()");
    Tensor c = contiguous_nograd();
    std::vector<T> out(static_cast<size_t>(numel()));
    if constexpr (std::is_same_v<T, bool>) {
      std::unique_ptr<bool[]> tmp(new bool[out.size()]);
      detail::DeviceOps<D>::to_host(tmp.get(), c.data(), c.nbytes());
      for (size_t i = 0; i < out.size(); ++i) out[i] = tmp[i];
    } else {
      detail::DeviceOps<D>::to_host(out.data(), c.data(), c.nbytes());
    }
    return out;
  }
  T item() const {
    require_defined("item()");
    MENTOR_CHECK_SHAPE(numel() == 1, "item: tensor of shape ", shape_.str(), " is not one value");
    T value;
    detail::DeviceOps<D>::to_host(&value, data(), sizeof(T));
    return value;
  }
  // Element at a full index (host tensors only: a device read per element would be a trap).
  T at(std::initializer_list<int64_t> index) const
    requires std::is_same_v<D, CPU>
  {
    require_defined("at()");
    MENTOR_CHECK_SHAPE(static_cast<int>(index.size()) == dim(), "at: index of ", index.size(),
                       " entries for a tensor of shape ", shape_.str());
    int64_t off = 0;
    int d = 0;
    for (int64_t i : index) {
      MENTOR_CHECK_SHAPE(i >= 0 && i < shape_[d], "at: index ", i, " out of range for dimension ",
                         d, " of shape ", shape_.str());
      off += i * strides_[d++];
    }
    return data()[off];
  }

  // ---- conversions (explicit) -----------------------------------------------------------------
  // to<U>() converts the element type; to<Device>() moves to another device.
  template <class X>
  auto to() const {
    require_defined("to()");
    if constexpr (is_device_v<X>) {
      return to_device<X>();
    } else {
      static_assert(is_element_v<X>, "to<X>(): X must be an element type or a device");
      return to_dtype<X>();
    }
  }

  // ---- views (differentiable; share storage) --------------------------------------------------
  Tensor view(const Shape& shape) const;       // requires contiguity; -1 infers one dim
  Tensor reshape(const Shape& shape) const;    // view when possible, copy otherwise
  Tensor flatten(int64_t start = 0, int64_t end = -1) const;
  Tensor transpose(int64_t d0, int64_t d1) const;
  Tensor permute(const std::vector<int64_t>& order) const;
  Tensor narrow(int64_t d, int64_t start, int64_t length) const;
  Tensor slice(int64_t d, int64_t start, int64_t end, int64_t step = 1) const;
  Tensor select(int64_t d, int64_t index) const;
  Tensor expand(const Shape& shape) const;
  Tensor unsqueeze(int64_t d) const;
  Tensor squeeze(int64_t d) const;
  Tensor contiguous() const;
  Tensor clone() const;
  Tensor t() const { return transpose(-2, -1); }

  // ---- in-place (not recorded: for optimizers, initialisation, gradient plumbing) -------------
  Tensor& fill_(T value);
  Tensor& copy_(const Tensor& src);  // src broadcast to this tensor's shape
  Tensor& add_(const Tensor& src);   // this += src (src broadcast)
  Tensor& zero_() { return fill_(convert_element<T>(0)); }

  // ---- autograd -------------------------------------------------------------------------------
  Tensor& requires_grad_(bool on = true);
  bool requires_grad() const { return slot_ && (slot_->requires_grad || slot_->grad_fn); }
  bool is_leaf() const { return !slot_ || slot_->is_leaf(); }
  // The accumulated gradient (undefined if none flowed here).
  Tensor grad() const { return slot_ ? slot_->grad : Tensor(); }
  void set_grad(const Tensor& g) {
    ensure_slot();
    slot_->grad = g;
  }
  void zero_grad() {
    if (slot_) slot_->grad = Tensor();
  }
  Tensor& retain_grad() {
    MENTOR_CHECK(slot_, "retain_grad: tensor does not require grad");
    slot_->retain_grad = true;
    return *this;
  }
  // Same data, no history, no gradient.
  Tensor detach() const {
    Tensor out = *this;
    out.slot_.reset();
    return out;
  }
  // Back-propagates from this tensor; a non-scalar needs the gradient of its output.
  void backward(const Tensor& grad_output = Tensor()) const;

  std::string describe() const {
    if (!defined()) return detail::concat("Tensor<", dtype_name<T>(), ", ", D::name, "> undefined");
    return detail::concat("Tensor<", dtype_name<T>(), ", ", D::name, "> ", shape_.str());
  }

  // Internal: a contiguous copy (or this) without autograd bookkeeping.
  Tensor contiguous_nograd() const {
    require_defined("contiguous()");
    if (is_contiguous()) return detach();
    Tensor out = empty(shape_);
    detail::DeviceOps<D>::copy_strided(data(), strides_, out.data(), out.strides_, shape_);
    return out;
  }
  // Internal (autograd::record): attaches the node that produced this tensor.
  void set_slot_(std::shared_ptr<autograd::Slot<T, D>> slot) { slot_ = std::move(slot); }
  // Internal: a view of the same storage with new geometry and no history.
  Tensor restrided(const Shape& shape, const Strides& strides, int64_t offset) const {
    require_defined("a view");
    Tensor out;
    out.storage_ = storage_;
    out.shape_ = shape;
    out.strides_ = strides;
    out.offset_ = offset;
    return out;
  }

 private:
  template <class U, class E>
  friend class Tensor;

  void require_defined(const char* access) const {
    if (!storage_) [[unlikely]]
      throw Error(detail::concat("undefined tensor (no storage; grad() stays undefined until a ",
                                 "backward() reaches it) in ", access));
  }
  friend std::shared_ptr<autograd::Slot<T, D>> autograd::slot_of<T, D>(const Tensor<T, D>&);

  void ensure_slot() {
    if (!slot_) {
      slot_ = std::make_shared<autograd::Slot<T, D>>();
    }
  }
  template <class U>
  Tensor<U, D> to_dtype() const;
  template <class E>
  Tensor<T, E> to_device() const;

  std::shared_ptr<Storage> storage_;
  Shape shape_;
  Strides strides_;
  int64_t offset_ = 0;
  std::shared_ptr<autograd::Slot<T, D>> slot_;
};

template <class T, class D>
std::ostream& operator<<(std::ostream& os, const Tensor<T, D>& t) {
  return os << t.describe();
}

}  // namespace mentor

#include "mentor/autograd/record.hpp"
#include "mentor/core/tensor_impl.hpp"
