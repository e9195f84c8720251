#pragma once
// Embedding lookup (F.embedding): out[..., :] = table[ids[...], :]. The backward pass scatter-adds
// rows of the output gradient into a table-shaped gradient; on the CPU it groups the positions by
// id first (a counting sort), so every table row is summed by one thread in a fixed order, in
// acc_t<T> and rounded once (bf16 gradients of frequent tokens do not drift).
#include <algorithm>
#include <array>
#include <cstdint>
#include <vector>

#include "mentor/backend/cpu/parallel.hpp"
#include "mentor/backend/launch/embedding.hpp"
#include "mentor/core/cuda_api.hpp"
#include "mentor/core/tensor.hpp"
#include "mentor/ops/apply.hpp"

namespace mentor {

namespace cpu {

// out[i, :] = table[ids[i], :] for i < n (ids already checked).
template <class T>
void embedding_forward(const T* table, int64_t C, const int64_t* ids, int64_t n, T* out) {
  parallel_for(n, std::max<int64_t>(1, 16384 / std::max<int64_t>(C, 1)),
               [&](int64_t begin, int64_t end) {
                 for (int64_t i = begin; i < end; ++i)
                   std::copy(table + ids[i] * C, table + (ids[i] + 1) * C, out + i * C);
               });
}

// grad_table [V, C] (overwritten) = Σ_i onehot(ids[i]) grad_out[i, :], each row summed by one
// thread over its positions in order.
template <class T>
void embedding_backward(const T* grad_out, const int64_t* ids, int64_t n, int64_t V, int64_t C,
                        T* grad_table) {
  using A = acc_t<T>;
  // Counting sort of positions by id: positions of id v are order[start[v] .. start[v+1]).
  std::vector<int64_t> start(static_cast<size_t>(V + 1), 0), order(static_cast<size_t>(n));
  for (int64_t i = 0; i < n; ++i) ++start[static_cast<size_t>(ids[i] + 1)];
  for (int64_t v = 0; v < V; ++v)
    start[static_cast<size_t>(v + 1)] += start[static_cast<size_t>(v)];
  std::vector<int64_t> fill(start.begin(), start.end() - 1);
  for (int64_t i = 0; i < n; ++i)
    order[static_cast<size_t>(fill[static_cast<size_t>(ids[i])]++)] = i;
  parallel_for(V, std::max<int64_t>(1, 16384 / std::max<int64_t>(C, 1)),
               [&](int64_t begin, int64_t end) {
                 std::vector<A> acc(static_cast<size_t>(C));
                 for (int64_t v = begin; v < end; ++v) {
                   std::fill(acc.begin(), acc.end(), A(0));
                   for (int64_t k = start[static_cast<size_t>(v)];
                        k < start[static_cast<size_t>(v + 1)]; ++k) {
                     const T* row = grad_out + order[static_cast<size_t>(k)] * C;
                     for (int64_t c = 0; c < C; ++c)
                       acc[static_cast<size_t>(c)] += static_cast<A>(row[c]);
                   }
                   T* dst = grad_table + v * C;
                   for (int64_t c = 0; c < C; ++c)
                     dst[c] = static_cast<T>(acc[static_cast<size_t>(c)]);
                 }
               });
}

}  // namespace cpu

// table [V, C], ids (any shape) -> [ids..., C]; differentiable in the table.
struct EmbeddingLookup {
  static constexpr OpSaves saves = OpSaves::Inputs;
  static constexpr std::array<bool, 2> saved_inputs{false, true};  // the ids
  int64_t V = 0, C = 0, n = 0;

  const char* name() const { return "embedding"; }
  template <class T, class D>
  Shape output_shape(const Tensor<T, D>& table, const Tensor<int64_t, D>& ids) {
    MENTOR_CHECK_SHAPE(table.dim() == 2, "embedding: table must be [V, C], got ",
                       table.shape().str());
    V = table.size(0);
    C = table.size(1);
    n = ids.numel();
    Shape out_shape = ids.shape();
    out_shape.push_back(C);
    return out_shape;
  }
  template <class T>
  void forward_cpu(const Tensor<T, CPU>& table, const Tensor<int64_t, CPU>& ids,
                   Tensor<T, CPU>& out) const {
    const int64_t* pid = ids.data();
    for (int64_t i = 0; i < n; ++i)
      if (pid[i] < 0 || pid[i] >= V) report_bad(i, pid[i], ids.shape(), table.shape());
    cpu::embedding_forward(table.data(), C, pid, n, out.data());
  }
  template <class T>
  void forward_cuda(const Tensor<T, CUDA>& table, const Tensor<int64_t, CUDA>& ids,
                    Tensor<T, CUDA>& out) const {
    // Checked at the call outside a graph capture (one wait on the stream). A capture must not
    // wait on the host, so there the ids go unchecked and the kernel writes a zero row for an id
    // outside the table instead of reading past it.
    const int64_t bad = cuda::stream_capturing() ? -1 : cuda::first_out_of_range(ids.data(), n, V);
    if (bad >= 0)
      report_bad(bad, ids.view(Shape{-1}).narrow(0, bad, 1).item(), ids.shape(), table.shape());
    cuda::embedding_forward(table.data(), V, C, ids.data(), n, out.data());
  }
  template <class T>
  void backward_cpu(const Tensor<T, CPU>&, const Tensor<int64_t, CPU>& ids, const Tensor<T, CPU>&,
                    const Tensor<T, CPU>& grad_out, Tensor<T, CPU>& grad_table,
                    autograd::NoGrad) const {
    cpu::embedding_backward(grad_out.data(), ids.data(), n, V, C, grad_table.data());
  }
  template <class T>
  void backward_cuda(const Tensor<T, CUDA>&, const Tensor<int64_t, CUDA>& ids,
                     const Tensor<T, CUDA>&, const Tensor<T, CUDA>& grad_out,
                     Tensor<T, CUDA>& grad_table, autograd::NoGrad) const {
    cuda::embedding_backward(grad_out.data(), ids.data(), n, V, C, grad_table.data());
  }

 private:
  [[noreturn]] void report_bad(int64_t position, int64_t id, const Shape& ids_shape,
                               const Shape& table_shape) const {
    throw Error(mentor::detail::concat("embedding: id ", id, " at position ", position, " of ids ",
                                       ids_shape.str(), " is out of range for a table of ", V,
                                       " rows (table ", table_shape.str(), ")"));
  }
};

// table [V, C], ids (any shape, int64) -> [ids..., C]. An id outside [0, V) throws mentor::Error
// naming the id, its position and V.
template <FloatingElement T, class D>
Tensor<T, D> embedding(const Tensor<T, D>& table, const Tensor<int64_t, D>& ids) {
  return apply(EmbeddingLookup{}, table, ids);
}

}  // namespace mentor
