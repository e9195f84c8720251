#pragma once
// Run-time shapes and strides, stored inline (rank <= 8) so that views never allocate.
#include <algorithm>
#include <array>
#include <cstdint>
#include <initializer_list>
#include <span>
#include <string>
#include <vector>

#include "mentor/core/error.hpp"

namespace mentor {

inline constexpr int kMaxRank = 8;

class Shape {
 public:
  Shape() = default;
  Shape(std::initializer_list<int64_t> dims) { assign(dims.begin(), dims.end()); }
  explicit Shape(std::span<const int64_t> dims) { assign(dims.begin(), dims.end()); }
  explicit Shape(const std::vector<int64_t>& dims) { assign(dims.begin(), dims.end()); }

  template <class It>
  void assign(It first, It last) {
    rank_ = 0;
    for (; first != last; ++first) push_back(static_cast<int64_t>(*first));
  }
  void push_back(int64_t dim) {
    MENTOR_CHECK(rank_ < kMaxRank, "mentor: tensors have at most ", kMaxRank, " dimensions");
    dims_[rank_++] = dim;
  }
  void insert(int at, int64_t dim) {
    push_back(0);
    for (int i = rank_ - 1; i > at; --i) dims_[i] = dims_[i - 1];
    dims_[at] = dim;
  }
  void erase(int at) {
    for (int i = at; i + 1 < rank_; ++i) dims_[i] = dims_[i + 1];
    --rank_;
  }

  int rank() const { return rank_; }
  int size() const { return rank_; }
  bool empty() const { return rank_ == 0; }
  int64_t operator[](int i) const { return dims_[i]; }
  int64_t& operator[](int i) { return dims_[i]; }
  int64_t back() const { return dims_[rank_ - 1]; }
  const int64_t* begin() const { return dims_.data(); }
  const int64_t* end() const { return dims_.data() + rank_; }
  int64_t* begin() { return dims_.data(); }
  int64_t* end() { return dims_.data() + rank_; }
  const int64_t* data() const { return dims_.data(); }
  std::vector<int64_t> vec() const { return {begin(), end()}; }

  // Product of the dims; a product past int64 is an error naming the shape (never a wrapped
  // count: shapes come from files, e.g. safetensors headers).
  int64_t numel() const {
    int64_t n = 1;
    for (int i = 0; i < rank_; ++i)
      MENTOR_CHECK_SHAPE(!__builtin_mul_overflow(n, dims_[i], &n), "mentor: shape ", str(),
                         " has more elements than int64 can count");
    return n;
  }
  friend bool operator==(const Shape& a, const Shape& b) {
    return a.rank_ == b.rank_ && std::equal(a.begin(), a.end(), b.begin());
  }

  std::string str() const {
    std::string out = "[";
    for (int i = 0; i < rank_; ++i) {
      if (i) out += ", ";
      out += std::to_string(dims_[i]);
    }
    return out + "]";
  }

 private:
  std::array<int64_t, kMaxRank> dims_{};
  int rank_ = 0;
};

inline std::ostream& operator<<(std::ostream& os, const Shape& s) { return os << s.str(); }

using Strides = Shape;  // same inline storage; strides are in elements

// Row-major strides. A zero-size dim counts as 1 (so a zero-element shape still gets distinct
// strides); a stride past int64 is an error naming the shape, zero-element shapes included.
inline Strides contiguous_strides(const Shape& shape) {
  Strides strides = shape;
  int64_t step = 1;
  for (int i = shape.rank() - 1; i >= 0; --i) {
    MENTOR_CHECK_SHAPE(shape[i] >= 0, "mentor: shape ", shape.str(), " has a negative dimension");
    strides[i] = step;
    if (i > 0)  // the product of all dims is not a stride: only check what is stored
      MENTOR_CHECK_SHAPE(!__builtin_mul_overflow(step, std::max<int64_t>(shape[i], 1), &step),
                         "mentor: shape ", shape.str(), " has strides past int64 (",
                         "too many elements to address)");
  }
  return strides;
}

// Wraps a possibly negative dimension index; `op` names the caller in the error.
inline int wrap_dim(int64_t dim, int rank, const char* op) {
  int64_t wrapped = dim < 0 ? dim + rank : dim;
  MENTOR_CHECK_SHAPE(wrapped >= 0 && wrapped < std::max(rank, 1), op, ": dimension ", dim,
                     " out of range for a tensor of rank ", rank);
  return static_cast<int>(wrapped);
}

// NumPy broadcasting of two shapes; the error names the op and both shapes.
inline Shape broadcast_shapes(const Shape& a, const Shape& b, const char* op) {
  int rank = std::max(a.rank(), b.rank());
  Shape out;
  for (int i = 0; i < rank; ++i) {
    int ia = i - (rank - a.rank()), ib = i - (rank - b.rank());
    int64_t da = ia >= 0 ? a[ia] : 1, db = ib >= 0 ? b[ib] : 1;
    MENTOR_CHECK_SHAPE(da == db || da == 1 || db == 1, op, ": shapes ", a.str(), " and ", b.str(),
                       " cannot be broadcast together");
    out.push_back(da == 1 ? db : da);
  }
  return out;
}

}  // namespace mentor
