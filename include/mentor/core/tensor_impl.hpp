#pragma once
// Member definitions of Tensor: views and their gradients, conversions, in-place updates, backward.
// Included at the end of tensor.hpp; including this header alone gives all of tensor.hpp.
#include <algorithm>

#include "mentor/core/tensor.hpp"

namespace mentor {

// Sums `grad` over the dimensions that broadcasting expanded, giving a tensor of `shape`
// (the gradient rule of every broadcasting op).
template <class T, class D>
Tensor<T, D> sum_to(const Tensor<T, D>& grad, const Shape& shape) {
  if (grad.shape() == shape) return grad;
  const Shape& big = grad.shape();
  MENTOR_CHECK_SHAPE(big.rank() >= shape.rank(), "sum_to: cannot reduce ", big.str(), " to ",
                     shape.str());
  Tensor<T, D> out = Tensor<T, D>::zeros(shape);
  Strides out_strides_in_big;
  Strides contiguous = contiguous_strides(shape);
  int lead = big.rank() - shape.rank();
  for (int i = 0; i < big.rank(); ++i) {
    int j = i - lead;
    if (j < 0) {
      out_strides_in_big.push_back(0);
    } else {
      MENTOR_CHECK_SHAPE(shape[j] == big[i] || shape[j] == 1, "sum_to: cannot reduce ", big.str(),
                         " to ", shape.str());
      out_strides_in_big.push_back(shape[j] == 1 ? 0 : contiguous[j]);
    }
  }
  detail::DeviceOps<D>::add_strided(grad.data(), grad.strides(), out.data(), out_strides_in_big, big);
  return out;
}

template <class T, class D>
Tensor<T, D> Tensor<T, D>::view(const Shape& requested) const {
  require_defined("view()");
  Shape shape = requested;
  int infer = -1;
  int64_t known = 1;
  for (int i = 0; i < shape.rank(); ++i) {
    if (shape[i] == -1) {
      MENTOR_CHECK_SHAPE(infer < 0, "view: more than one -1 in ", requested.str());
      infer = i;
    } else {
      known *= shape[i];
    }
  }
  if (infer >= 0) {
    MENTOR_CHECK_SHAPE(known > 0 && numel() % known == 0, "view: cannot view shape ", shape_.str(),
                       " as ", requested.str());
    shape[infer] = numel() / known;
  }
  MENTOR_CHECK_SHAPE(shape.numel() == numel(), "view: cannot view shape ", shape_.str(), " (",
                     numel(), " elements) as ", requested.str());
  MENTOR_CHECK(is_contiguous(), "view: tensor of shape ", shape_.str(),
               " is not contiguous; use reshape()");
  Tensor out = restrided(shape, contiguous_strides(shape), offset_);
  Shape in_shape = shape_;
  autograd::record(
      "view", out, [in_shape](const Tensor& g) { return std::tuple{g.reshape(in_shape)}; }, *this);
  return out;
}

template <class T, class D>
Tensor<T, D> Tensor<T, D>::reshape(const Shape& shape) const {
  require_defined("reshape()");
  return is_contiguous() ? view(shape) : contiguous().view(shape);
}

template <class T, class D>
Tensor<T, D> Tensor<T, D>::flatten(int64_t start, int64_t end) const {
  require_defined("flatten()");
  if (dim() == 0) return reshape(Shape{1});
  int s = wrap_dim(start, dim(), "flatten"), e = wrap_dim(end, dim(), "flatten");
  Shape shape;
  for (int i = 0; i < s; ++i) shape.push_back(shape_[i]);
  int64_t merged = 1;
  for (int i = s; i <= e; ++i) merged *= shape_[i];
  shape.push_back(merged);
  for (int i = e + 1; i < dim(); ++i) shape.push_back(shape_[i]);
  return reshape(shape);
}

template <class T, class D>
Tensor<T, D> Tensor<T, D>::permute(const std::vector<int64_t>& order) const {
  require_defined("permute()");
  MENTOR_CHECK_SHAPE(static_cast<int>(order.size()) == dim(), "permute: order of ", order.size(),
                     " dimensions for shape ", shape_.str());
  Shape shape, strides;
  std::vector<int64_t> inverse(order.size(), -1);
  for (size_t i = 0; i < order.size(); ++i) {
    int d = wrap_dim(order[i], dim(), "permute");
    MENTOR_CHECK_SHAPE(inverse[d] < 0, "permute: dimension ", d, " repeated");
    inverse[d] = static_cast<int64_t>(i);
    shape.push_back(shape_[d]);
    strides.push_back(strides_[d]);
  }
  Tensor out = restrided(shape, strides, offset_);
  autograd::record(
      "permute", out, [inverse](const Tensor& g) { return std::tuple{g.permute(inverse)}; }, *this);
  return out;
}

template <class T, class D>
Tensor<T, D> Tensor<T, D>::transpose(int64_t d0, int64_t d1) const {
  require_defined("transpose()");
  std::vector<int64_t> order(static_cast<size_t>(dim()));
  std::iota(order.begin(), order.end(), 0);
  std::swap(order[wrap_dim(d0, dim(), "transpose")], order[wrap_dim(d1, dim(), "transpose")]);
  return permute(order);
}

template <class T, class D>
Tensor<T, D> Tensor<T, D>::slice(int64_t d, int64_t start, int64_t end, int64_t step) const {
  require_defined("slice()");
  int axis = wrap_dim(d, dim(), "slice");
  int64_t n = shape_[axis];
  if (start < 0) start += n;
  if (end < 0) end += n;
  start = std::clamp<int64_t>(start, 0, n);
  end = std::clamp<int64_t>(end, start, n);
  MENTOR_CHECK(step >= 1, "slice: step must be positive, got ", step);
  Shape shape = shape_;
  Strides strides = strides_;
  shape[axis] = (end - start + step - 1) / step;
  strides[axis] = strides_[axis] * step;
  Tensor out = restrided(shape, strides, offset_ + start * strides_[axis]);
  Shape in_shape = shape_;
  autograd::record(
      "slice", out,
      [in_shape, axis, start, end, step](const Tensor& g) {
        Tensor full = Tensor::zeros(in_shape);
        full.slice(axis, start, end, step).copy_(g);
        return std::tuple{full};
      },
      *this);
  return out;
}

template <class T, class D>
Tensor<T, D> Tensor<T, D>::narrow(int64_t d, int64_t start, int64_t length) const {
  require_defined("narrow()");
  int axis = wrap_dim(d, dim(), "narrow");
  MENTOR_CHECK_SHAPE(start >= 0 && length >= 0 && start + length <= shape_[axis], "narrow: range [",
                     start, ", ", start + length, ") out of bounds for dimension ", axis,
                     " of shape ", shape_.str());
  return slice(axis, start, start + length);
}

template <class T, class D>
Tensor<T, D> Tensor<T, D>::select(int64_t d, int64_t index) const {
  require_defined("select()");
  int axis = wrap_dim(d, dim(), "select");
  if (index < 0) index += shape_[axis];
  MENTOR_CHECK_SHAPE(index >= 0 && index < shape_[axis], "select: index ", index,
                     " out of range for dimension ", axis, " of shape ", shape_.str());
  return narrow(axis, index, 1).squeeze(axis);
}

template <class T, class D>
Tensor<T, D> Tensor<T, D>::expand(const Shape& requested) const {
  require_defined("expand()");
  MENTOR_CHECK_SHAPE(requested.rank() >= dim(), "expand: cannot expand shape ", shape_.str(), " to ",
                     requested.str());
  Shape shape = requested;
  Strides strides;
  int lead = requested.rank() - dim();
  for (int i = 0; i < requested.rank(); ++i) {
    int j = i - lead;
    if (j < 0) {
      MENTOR_CHECK_SHAPE(requested[i] >= 0, "expand: new leading dimension ", requested[i],
                         " must be given in ", requested.str());
      strides.push_back(0);
      continue;
    }
    if (requested[i] == -1) shape[i] = shape_[j];
    MENTOR_CHECK_SHAPE(shape[i] == shape_[j] || shape_[j] == 1, "expand: cannot expand shape ",
                       shape_.str(), " to ", requested.str());
    strides.push_back(shape_[j] == shape[i] ? strides_[j] : 0);
  }
  Tensor out = restrided(shape, strides, offset_);
  Shape in_shape = shape_;
  autograd::record(
      "expand", out, [in_shape](const Tensor& g) { return std::tuple{sum_to(g, in_shape)}; }, *this);
  return out;
}

template <class T, class D>
Tensor<T, D> Tensor<T, D>::unsqueeze(int64_t d) const {
  require_defined("unsqueeze()");
  int axis = wrap_dim(d, dim() + 1, "unsqueeze");
  Shape shape = shape_;
  Strides strides = strides_;
  int64_t stride = axis < dim() ? shape_[axis] * strides_[axis] : 1;
  shape.insert(axis, 1);
  strides.insert(axis, stride);
  Tensor out = restrided(shape, strides, offset_);
  Shape in_shape = shape_;
  autograd::record(
      "unsqueeze", out, [in_shape](const Tensor& g) { return std::tuple{g.reshape(in_shape)}; },
      *this);
  return out;
}

template <class T, class D>
Tensor<T, D> Tensor<T, D>::squeeze(int64_t d) const {
  require_defined("squeeze()");
  int axis = wrap_dim(d, dim(), "squeeze");
  MENTOR_CHECK_SHAPE(shape_[axis] == 1, "squeeze: dimension ", axis, " of shape ", shape_.str(),
                     " is not 1");
  Shape shape = shape_;
  Strides strides = strides_;
  shape.erase(axis);
  strides.erase(axis);
  Tensor out = restrided(shape, strides, offset_);
  Shape in_shape = shape_;
  autograd::record(
      "squeeze", out, [in_shape](const Tensor& g) { return std::tuple{g.reshape(in_shape)}; },
      *this);
  return out;
}

template <class T, class D>
Tensor<T, D> Tensor<T, D>::contiguous() const {
  require_defined("contiguous()");
  if (is_contiguous()) return *this;
  return clone();
}

template <class T, class D>
Tensor<T, D> Tensor<T, D>::clone() const {
  require_defined("clone()");
  Tensor out = empty(shape_);
  detail::DeviceOps<D>::copy_strided(data(), strides_, out.data(), out.strides_, shape_);
  if constexpr (is_floating_v<T>) {
    autograd::record("clone", out, [](const Tensor& g) { return std::tuple{g}; }, *this);
  }
  return out;
}

template <class T, class D>
Tensor<T, D>& Tensor<T, D>::fill_(T value) {
  require_defined("fill_()");
  MENTOR_CHECK(!(autograd::grad_enabled() && requires_grad()),
               "fill_: in-place update of a tensor that requires grad (use a NoGradGuard)");
  if (is_contiguous()) {
    detail::DeviceOps<D>::fill(data(), numel(), value);
  } else {
    Tensor src = full(Shape{}, value);
    copy_(src);
  }
  return *this;
}

template <class T, class D>
Tensor<T, D>& Tensor<T, D>::copy_(const Tensor& src) {
  require_defined("copy_()");
  MENTOR_CHECK(!(autograd::grad_enabled() && requires_grad()),
               "copy_: in-place update of a tensor that requires grad (use a NoGradGuard)");
  Shape target = broadcast_shapes(src.shape(), shape_, "copy_");
  MENTOR_CHECK_SHAPE(target == shape_, "copy_: source of shape ", src.shape().str(),
                     " does not broadcast to ", shape_.str());
  Tensor expanded = src.detach().expand(shape_);
  detail::DeviceOps<D>::copy_strided(expanded.data(), expanded.strides(), data(), strides_, shape_);
  return *this;
}

template <class T, class D>
Tensor<T, D>& Tensor<T, D>::add_(const Tensor& src) {
  require_defined("add_()");
  MENTOR_CHECK(!(autograd::grad_enabled() && requires_grad()),
               "add_: in-place update of a tensor that requires grad (use a NoGradGuard)");
  Shape target = broadcast_shapes(src.shape(), shape_, "add_");
  MENTOR_CHECK_SHAPE(target == shape_, "add_: source of shape ", src.shape().str(),
                     " does not broadcast to ", shape_.str());
  Tensor expanded = src.detach().expand(shape_);
  detail::DeviceOps<D>::add_strided(expanded.data(), expanded.strides(), data(), strides_, shape_);
  return *this;
}

template <class T, class D>
Tensor<T, D>& Tensor<T, D>::requires_grad_(bool on) {
  require_defined("requires_grad_()");
  static_assert(is_floating_v<T>, "requires_grad_: only floating tensors can require gradients");
  MENTOR_CHECK(is_leaf(), "requires_grad_: only leaf tensors can be marked (this one was computed by '",
               slot_->grad_fn->name(), "')");
  ensure_slot();
  slot_->requires_grad = on;
  return *this;
}

template <class T, class D>
template <class U>
Tensor<U, D> Tensor<T, D>::to_dtype() const {
  if constexpr (std::is_same_v<U, T>) {
    return *this;
  } else {
    Tensor src = contiguous_nograd();
    Tensor<U, D> out = Tensor<U, D>::empty(shape_);
    detail::DeviceOps<D>::template convert<U, T>(src.data(), out.data(), numel());
    if constexpr (is_floating_v<T> && is_floating_v<U>) {
      autograd::record(
          "to_dtype", out, [](const Tensor<U, D>& g) { return std::tuple{g.template to<T>()}; },
          *this);
    }
    return out;
  }
}

template <class T, class D>
template <class E>
Tensor<T, E> Tensor<T, D>::to_device() const {
  if constexpr (std::is_same_v<E, D>) {
    return *this;
  } else {
    Tensor src = contiguous_nograd();
    Tensor<T, E> out = Tensor<T, E>::empty(shape_);
    if constexpr (std::is_same_v<D, CPU>) {
      detail::DeviceOps<E>::from_host(out.data(), src.data(), nbytes());
    } else {
      detail::DeviceOps<D>::to_host(out.data(), src.data(), nbytes());
    }
    if constexpr (is_floating_v<T>) {
      autograd::record(
          "to_device", out, [](const Tensor<T, E>& g) { return std::tuple{g.template to<D>()}; },
          *this);
    }
    return out;
  }
}

template <class T, class D>
void Tensor<T, D>::backward(const Tensor& grad_output) const {
  require_defined("backward()");
  static_assert(is_floating_v<T>, "backward: only floating tensors have gradients");
  MENTOR_CHECK(requires_grad(), "backward: this tensor (", shape_.str(),
               ") does not require grad: no input of its computation was marked requires_grad_()");
  Tensor seed = grad_output;
  if (!seed.defined()) {
    MENTOR_CHECK(numel() == 1, "backward: a tensor of shape ", shape_.str(),
                 " is not a scalar; pass the gradient of its output");
    seed = ones(shape_);
  }
  MENTOR_CHECK_SHAPE(seed.shape() == shape_, "backward: gradient of shape ", seed.shape().str(),
                     " for a tensor of shape ", shape_.str());
  NoGradGuard no_grad;
  autograd::detail::accumulate(*slot_, seed, "backward", shape_);
  if (slot_->grad_fn) autograd::run_backward(slot_->grad_fn);
}

}  // namespace mentor
