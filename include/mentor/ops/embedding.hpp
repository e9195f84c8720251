#pragma once
// Embedding lookup (F.embedding): out[..., :] = table[ids[...], :]. The backward pass scatter-adds
// rows of the output gradient into a table-shaped gradient; on the CPU it groups the positions by
// id first (a counting sort), so every table row is summed by one thread in a fixed order, in
// acc_t<T> and rounded once (bf16 gradients of frequent tokens do not drift).
#include <algorithm>
#include <cstdint>
#include <tuple>
#include <type_traits>
#include <vector>

#include "mentor/backend/cpu/parallel.hpp"
#include "mentor/backend/launch/embedding.hpp"
#include "mentor/core/tensor.hpp"
#include "mentor/ops/dispatch.hpp"

namespace mentor {

// table [V, C], ids (any shape, int64) -> [ids..., C]. An id outside [0, V) throws mentor::Error
// naming the id, its position and V.
template <FloatingElement T, class D>
Tensor<T, D> embedding(const Tensor<T, D>& table, const Tensor<int64_t, D>& ids) {
  MENTOR_CHECK_SHAPE(table.dim() == 2, "embedding: table must be [V, C], got ",
                     table.shape().str());
  const int64_t V = table.size(0), C = table.size(1), n = ids.numel();
  const Tensor<T, D> tc = table.contiguous_nograd();
  const Tensor<int64_t, D> idc = ids.contiguous_nograd();
  Shape out_shape = ids.shape();
  out_shape.push_back(C);
  Tensor<T, D> out = Tensor<T, D>::empty(out_shape);
  auto report_bad = [&](int64_t position, int64_t id) {
    throw Error(mentor::detail::concat("embedding: id ", id, " at position ", position, " of ids ",
                                       ids.shape().str(), " is out of range for a table of ", V,
                                       " rows (table ", table.shape().str(), ")"));
  };
  if constexpr (std::is_same_v<D, CPU>) {
    const int64_t* pid = idc.data();
    for (int64_t i = 0; i < n; ++i)
      if (pid[i] < 0 || pid[i] >= V) report_bad(i, pid[i]);
    const T* pt = tc.data();
    T* po = out.data();
    cpu::parallel_for(n, std::max<int64_t>(1, 16384 / std::max<int64_t>(C, 1)),
                      [&](int64_t begin, int64_t end) {
                        for (int64_t i = begin; i < end; ++i)
                          std::copy(pt + pid[i] * C, pt + (pid[i] + 1) * C, po + i * C);
                      });
  } else {
    // Checked at the call outside a graph capture (one wait on the stream). A capture must not
    // wait on the host, so there the ids go unchecked and the kernel writes a zero row for an id
    // outside the table instead of reading past it.
    bool capturing = false;
    MENTOR_CUDA_CALL(capturing = cuda::stream_capturing());
    int64_t bad = -1;
    if (!capturing) MENTOR_CUDA_CALL(bad = cuda::first_out_of_range(idc.data(), n, V));
    if (bad >= 0) report_bad(bad, idc.view(Shape{-1}).narrow(0, bad, 1).item());
    MENTOR_CUDA_CALL(cuda::embedding_forward(tc.data(), V, C, idc.data(), n, out.data()));
  }
  autograd::record(
      "embedding", out,
      [idc, V, C, n](const Tensor<T, D>& g_in) {
        const Tensor<T, D> g = g_in.contiguous_nograd();
        Tensor<T, D> grad_table = Tensor<T, D>::empty(Shape{V, C});
        if constexpr (std::is_same_v<D, CPU>) {
          using A = acc_t<T>;
          const int64_t* pid = idc.data();
          // Counting sort of positions by id: positions of id v are order[start[v] .. start[v+1]).
          std::vector<int64_t> start(static_cast<size_t>(V + 1), 0), order(static_cast<size_t>(n));
          for (int64_t i = 0; i < n; ++i) ++start[static_cast<size_t>(pid[i] + 1)];
          for (int64_t v = 0; v < V; ++v)
            start[static_cast<size_t>(v + 1)] += start[static_cast<size_t>(v)];
          std::vector<int64_t> fill(start.begin(), start.end() - 1);
          for (int64_t i = 0; i < n; ++i)
            order[static_cast<size_t>(fill[static_cast<size_t>(pid[i])]++)] = i;
          const T* pg = g.data();
          T* pd = grad_table.data();
          cpu::parallel_for(V, std::max<int64_t>(1, 16384 / std::max<int64_t>(C, 1)),
                            [&](int64_t begin, int64_t end) {
                              std::vector<A> acc(static_cast<size_t>(C));
                              for (int64_t v = begin; v < end; ++v) {
                                std::fill(acc.begin(), acc.end(), A(0));
                                for (int64_t k = start[static_cast<size_t>(v)];
                                     k < start[static_cast<size_t>(v + 1)]; ++k) {
                                  const T* row = pg + order[static_cast<size_t>(k)] * C;
                                  for (int64_t c = 0; c < C; ++c)
                                    acc[static_cast<size_t>(c)] += static_cast<A>(row[c]);
                                }
                                T* dst = pd + v * C;
                                for (int64_t c = 0; c < C; ++c)
                                  dst[c] = static_cast<T>(acc[static_cast<size_t>(c)]);
                              }
                            });
        } else {
          MENTOR_CUDA_CALL(
              cuda::embedding_backward(g.data(), idc.data(), n, V, C, grad_table.data()));
        }
        return std::tuple{grad_table, autograd::NoGrad{}};
      },
      table, ids);
  return out;
}

}  // namespace mentor
