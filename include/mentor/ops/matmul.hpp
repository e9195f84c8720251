#pragma once
// Matrix products: matmul (torch.matmul semantics for operands of rank >= 2, batch dimensions
// broadcast) and linear (nn.Linear: x w^T + b).
//
// Every product goes to one GEMM call whenever the operands' layouts allow it, never copying:
// a view whose last two dimensions are row-major (unit column stride) or transposed (unit row
// stride) is handed to gemm with the matching trans flag and leading dimension; batch dimensions
// whose matrices sit at a constant stride (0 for a broadcast operand) become one gemm_batched call;
// and a product of a batch of row-major matrices with one shared matrix (x @ W, the linear layer)
// is folded into a single tall GEMM. Only other layouts are copied (CPU: irregular batch offsets
// run one GEMM per matrix instead). bf16 is multiplied in float and rounded once.
#include <algorithm>
#include <array>
#include <cstdint>
#include <tuple>
#include <type_traits>
#include <vector>

#include "mentor/backend/cpu/gemm.hpp"
#include "mentor/backend/cpu/parallel.hpp"
#include "mentor/backend/launch/matmul.hpp"
#include "mentor/core/tensor.hpp"
#include "mentor/ops/dispatch.hpp"

namespace mentor {

namespace detail {

// How gemm can read the [rows, cols] matrices in the last two dimensions of a view without a copy:
// row-major (unit column stride, row pitch ld) or transposed (unit row stride: the stored matrix is
// cols x rows with pitch ld). False when neither holds (e.g. an expanded matrix dimension).
inline bool gemm_layout(const Shape& shape, const Strides& strides, bool& trans, int64_t& ld) {
  const int r = shape.rank();
  const int64_t rows = shape[r - 2], cols = shape[r - 1];
  const int64_t row_stride = strides[r - 2], col_stride = strides[r - 1];
  if ((cols <= 1 || col_stride == 1) && (rows <= 1 || row_stride >= std::max<int64_t>(cols, 1))) {
    trans = false;
    ld = rows <= 1 ? std::max<int64_t>(cols, 1) : row_stride;
    return true;
  }
  if ((rows <= 1 || row_stride == 1) && (cols <= 1 || col_stride >= std::max<int64_t>(rows, 1))) {
    trans = true;
    ld = cols <= 1 ? std::max<int64_t>(rows, 1) : col_stride;
    return true;
  }
  return false;
}

// Element offset of every matrix of a [..., rows, cols] view over the broadcast batch shape
// `batch` (row-major order); batch dimensions the view lacks or holds as 1 repeat its matrix.
inline std::vector<int64_t> batch_offsets(const Shape& shape, const Strides& strides,
                                          const Shape& batch) {
  const int nb = batch.rank();
  const int lead = nb - (shape.rank() - 2);
  Strides batch_strides;
  for (int d = 0; d < nb; ++d) {
    const int j = d - lead;
    batch_strides.push_back(j < 0 || shape[j] == 1 ? 0 : strides[j]);
  }
  std::vector<int64_t> offsets(static_cast<size_t>(batch.numel()));
  std::array<int64_t, kMaxRank> index{};
  int64_t offset = 0;
  for (auto& o : offsets) {
    o = offset;
    for (int d = nb - 1; d >= 0; --d) {  // odometer increment
      offset += batch_strides[d];
      if (++index[d] < batch[d]) break;
      offset -= batch_strides[d] * batch[d];
      index[d] = 0;
    }
  }
  return offsets;
}

// The common difference of `offsets` when they form an arithmetic progression (0 for one matrix),
// -1 otherwise.
inline int64_t progression_stride(const std::vector<int64_t>& offsets) {
  if (offsets.size() <= 1) return 0;
  const int64_t stride = offsets[1] - offsets[0];
  if (stride < 0) return -1;
  for (size_t i = 0; i < offsets.size(); ++i)
    if (offsets[i] != offsets[0] + static_cast<int64_t>(i) * stride) return -1;
  return stride;
}

// The shape of a [..., rows, cols] tensor without its last two dimensions.
inline Shape batch_shape_of(const Shape& shape) {
  Shape batch;
  for (int i = 0; i + 2 < shape.rank(); ++i) batch.push_back(shape[i]);
  return batch;
}

// Broadcasts the batch dimensions of matmul operands; the error names the op and both full shapes.
inline Shape matmul_batch(const Shape& a, const Shape& b, const char* op) {
  const Shape ba = batch_shape_of(a), bb = batch_shape_of(b);
  const int rank = std::max(ba.rank(), bb.rank());
  Shape out;
  for (int i = 0; i < rank; ++i) {
    const int ia = i - (rank - ba.rank()), ib = i - (rank - bb.rank());
    const int64_t da = ia >= 0 ? ba[ia] : 1, db = ib >= 0 ? bb[ib] : 1;
    MENTOR_CHECK_SHAPE(da == db || da == 1 || db == 1, op, ": batch dimensions of ", a.str(),
                       " and ", b.str(), " cannot be broadcast together");
    out.push_back(da == 1 ? db : da);
  }
  return out;
}

// out[c] = sum_r x[r, c] (x contiguous [rows, cols]) in acc precision, rounded once.
template <class T, class D>
Tensor<T, D> column_sums(const Tensor<T, D>& x_in) {
  const Tensor<T, D> x = x_in.contiguous_nograd();
  const int64_t cols = x.size(-1), rows = cols == 0 ? 0 : x.numel() / cols;
  Tensor<T, D> out = Tensor<T, D>::empty(Shape{cols});
  if constexpr (std::is_same_v<D, CPU>) {
    using A = acc_t<T>;
    const T* px = x.data();
    T* po = out.data();
    // Threads own column ranges, so each output is summed in one fixed order.
    cpu::parallel_for(cols, std::max<int64_t>(16, 32768 / std::max<int64_t>(rows, 1)),
                      [&](int64_t begin, int64_t end) {
                        std::vector<A> acc(static_cast<size_t>(end - begin), A(0));
                        for (int64_t r = 0; r < rows; ++r) {
                          const T* row = px + r * cols;
                          for (int64_t c = begin; c < end; ++c)
                            acc[static_cast<size_t>(c - begin)] += static_cast<A>(row[c]);
                        }
                        for (int64_t c = begin; c < end; ++c)
                          po[c] = static_cast<T>(acc[static_cast<size_t>(c - begin)]);
                      });
  } else {
    MENTOR_CUDA_CALL(cuda::column_sums(x.data(), out.data(), rows, cols));
  }
  return out;
}

// The product a @ b (+ bias added to every row when `bias` is defined), recording nothing.
// Shapes: a [..., M, K], b [..., K, N], bias [N]; the result is contiguous [batch..., M, N].
template <class T, class D>
Tensor<T, D> matmul_nograd(const Tensor<T, D>& a, const Tensor<T, D>& b, const Tensor<T, D>& bias,
                           const char* op) {
  MENTOR_CHECK_SHAPE(a.dim() >= 2 && b.dim() >= 2, op, ": operands need rank >= 2, got ",
                     a.shape().str(), " and ", b.shape().str());
  const int64_t M = a.size(-2), K = a.size(-1), N = b.size(-1);
  MENTOR_CHECK_SHAPE(b.size(-2) == K, op, ": inner dimensions differ: ", a.shape().str(), " @ ",
                     b.shape().str());
  MENTOR_CHECK_SHAPE(!bias.defined() || (bias.dim() == 1 && bias.size(0) == N), op,
                     ": bias of shape ", bias.shape().str(), " for ", N, " output features");
  const Shape batch = matmul_batch(a.shape(), b.shape(), op);
  Shape out_shape = batch;
  out_shape.push_back(M);
  out_shape.push_back(N);

  if constexpr (std::is_same_v<D, CPU> && std::is_same_v<T, bf16>) {
    // bf16: multiply in float, round the result once.
    Tensor<float, CPU> bias_f;
    if (bias.defined()) bias_f = bias.detach().template to<float>();
    return matmul_nograd(a.detach().template to<float>(), b.detach().template to<float>(), bias_f,
                         op)
        .template to<bf16>();
  } else {
    Tensor<T, D> out = Tensor<T, D>::empty(out_shape);
    if (out.numel() == 0) return out;
    Tensor<T, D> a_op = a.detach(), b_op = b.detach();
    bool trans_a = false, trans_b = false;
    int64_t lda = 0, ldb = 0;
    if (!gemm_layout(a_op.shape(), a_op.strides(), trans_a, lda)) {
      a_op = a_op.contiguous_nograd();
      trans_a = false;
      lda = std::max<int64_t>(K, 1);
    }
    if (!gemm_layout(b_op.shape(), b_op.strides(), trans_b, ldb)) {
      b_op = b_op.contiguous_nograd();
      trans_b = false;
      ldb = std::max<int64_t>(N, 1);
    }
    std::vector<int64_t> offsets_a = batch_offsets(a_op.shape(), a_op.strides(), batch);
    std::vector<int64_t> offsets_b = batch_offsets(b_op.shape(), b_op.strides(), batch);
    int64_t stride_a = progression_stride(offsets_a), stride_b = progression_stride(offsets_b);
    const int64_t n_batch = batch.numel();
    const int64_t ldc = std::max<int64_t>(N, 1), stride_c = M * N;

    float beta = 0.0f;  // 1 when the output is initialised with the bias
    if (bias.defined()) {
      beta = 1.0f;
      const Tensor<T, D> bias_c = bias.contiguous_nograd();
      const int64_t rows = n_batch * M;
      if constexpr (std::is_same_v<D, CPU>) {
        const T* pb = bias_c.data();
        T* po = out.data();
        cpu::parallel_for(rows, std::max<int64_t>(1, 65536 / std::max<int64_t>(N, 1)),
                          [&](int64_t begin, int64_t end) {
                            for (int64_t r = begin; r < end; ++r) std::copy(pb, pb + N, po + r * N);
                          });
      } else {
        MENTOR_CUDA_CALL(cuda::broadcast_rows(bias_c.data(), out.data(), rows, N));
      }
    }

    // A batch of row-major matrices stacked at M rows apart times one shared matrix: one tall GEMM.
    const bool fold = stride_b == 0 && !trans_a && (n_batch == 1 || stride_a == M * lda);
    if constexpr (std::is_same_v<D, CPU>) {
      if (fold) {
        cpu::gemm(trans_a, trans_b, n_batch * M, N, K, T(1), a_op.data(), lda, b_op.data(), ldb,
                  static_cast<T>(beta), out.data(), ldc);
      } else if (stride_a >= 0 && stride_b >= 0) {
        cpu::gemm_batched(trans_a, trans_b, n_batch, M, N, K, T(1), a_op.data(), lda, stride_a,
                          b_op.data(), ldb, stride_b, static_cast<T>(beta), out.data(), ldc,
                          stride_c);
      } else {
        // Irregular batch offsets (e.g. a permuted batch): one serial GEMM per matrix.
        const T* pa = a_op.data();
        const T* pb = b_op.data();
        T* pc = out.data();
        cpu::parallel_for(n_batch, 1, [&](int64_t begin, int64_t end) {
          for (int64_t i = begin; i < end; ++i)
            cpu::gemm(trans_a, trans_b, M, N, K, T(1), pa + offsets_a[static_cast<size_t>(i)], lda,
                      pb + offsets_b[static_cast<size_t>(i)], ldb, static_cast<T>(beta),
                      pc + i * stride_c, ldc);
        });
      }
    } else {
      // cuBLAS takes one stride per operand: materialise an operand whose batch is irregular.
      auto regularise = [&](Tensor<T, D>& x, int64_t rows, int64_t cols, bool& trans, int64_t& ld,
                            int64_t& stride) {
        if (stride >= 0) return;
        Shape full = batch;
        full.push_back(rows);
        full.push_back(cols);
        x = x.expand(full).contiguous_nograd();
        trans = false;
        ld = std::max<int64_t>(cols, 1);
        stride = rows * cols;
      };
      regularise(a_op, M, K, trans_a, lda, stride_a);
      regularise(b_op, K, N, trans_b, ldb, stride_b);
      if (fold) {
        MENTOR_CUDA_CALL(cuda::gemm_strided_batched(trans_a, trans_b, 1, n_batch * M, N, K, 1.0f,
                                                    a_op.data(), lda, 0, b_op.data(), ldb, 0, beta,
                                                    out.data(), ldc, 0));
      } else {
        MENTOR_CUDA_CALL(cuda::gemm_strided_batched(trans_a, trans_b, n_batch, M, N, K, 1.0f,
                                                    a_op.data(), lda, stride_a, b_op.data(), ldb,
                                                    stride_b, beta, out.data(), ldc, stride_c));
      }
    }
    return out;
  }
}

// Number of matrices in the batch dimensions of a [..., rows, cols] shape.
inline int64_t batch_count(const Shape& shape) { return batch_shape_of(shape).numel(); }

// dL/da = dC b^T, summed over the batch dimensions a was broadcast along.
template <class T, class D>
Tensor<T, D> matmul_grad_a(const Tensor<T, D>& g, const Tensor<T, D>& a, const Tensor<T, D>& b) {
  return sum_to(matmul_nograd(g, b.transpose(-2, -1), Tensor<T, D>(), "matmul backward"),
                a.shape());
}

// dL/db = a^T dC, summed over broadcast batch dimensions; for one b shared by a whole batch of a
// (the x @ W case) the sum is a single GEMM over the stacked rows.
template <class T, class D>
Tensor<T, D> matmul_grad_b(const Tensor<T, D>& g, const Tensor<T, D>& a, const Tensor<T, D>& b) {
  const int64_t K = a.size(-1), N = b.size(-1);
  if (batch_count(b.shape()) == 1 && batch_count(g.shape()) > 1 && K > 0 && N > 0) {
    // b's batch dims are all 1, so a's batch holds every matrix of the output's batch.
    const Tensor<T, D> a_rows = a.reshape(Shape{-1, K});
    const Tensor<T, D> g_rows = g.reshape(Shape{-1, N});
    return matmul_nograd(a_rows.t(), g_rows, Tensor<T, D>(), "matmul backward").view(b.shape());
  }
  return sum_to(matmul_nograd(a.transpose(-2, -1), g, Tensor<T, D>(), "matmul backward"),
                b.shape());
}

}  // namespace detail

// a [..., M, K] @ b [..., K, N] -> [batch..., M, N] with the batch dimensions broadcast
// (torch.matmul for rank >= 2). Transposed views are read in place.
template <FloatingElement T, class D>
Tensor<T, D> matmul(const Tensor<T, D>& a, const Tensor<T, D>& b) {
  Tensor<T, D> out = detail::matmul_nograd(a, b, Tensor<T, D>(), "matmul");
  autograd::record(
      "matmul", out,
      [a = a.detach(), b = b.detach()](const Tensor<T, D>& g, const std::array<bool, 2>& needs) {
        Tensor<T, D> grad_a, grad_b;
        if (needs[0]) grad_a = detail::matmul_grad_a(g, a, b);
        if (needs[1]) grad_b = detail::matmul_grad_b(g, a, b);
        return std::tuple{grad_a, grad_b};
      },
      a, b);
  return out;
}

// nn.Linear: x [..., in] w^T + bias, with weight [out, in] and bias [out] (an undefined tensor for
// none). One GEMM over all leading dimensions of x; the bias initialises the output.
template <FloatingElement T, class D>
Tensor<T, D> linear(const Tensor<T, D>& x, const Tensor<T, D>& weight,
                    const Tensor<T, D>& bias = Tensor<T, D>()) {
  MENTOR_CHECK_SHAPE(weight.dim() == 2, "linear: weight must be [out, in], got ",
                     weight.shape().str());
  MENTOR_CHECK_SHAPE(x.dim() >= 1 && x.size(-1) == weight.size(1), "linear: input of shape ",
                     x.shape().str(), " does not end in the ", weight.size(1),
                     " input features of weight ", weight.shape().str());
  MENTOR_CHECK_SHAPE(!bias.defined() || (bias.dim() == 1 && bias.size(0) == weight.size(0)),
                     "linear: bias of shape ", bias.shape().str(), " for weight ",
                     weight.shape().str());
  const int64_t in = weight.size(1), out_features = weight.size(0);
  int64_t rows = 1;
  for (int i = 0; i + 1 < x.dim(); ++i) rows *= x.size(i);
  const Tensor<T, D> x_rows = x.detach().reshape(Shape{rows, in});
  Shape out_shape = x.shape();
  out_shape[out_shape.rank() - 1] = out_features;
  Tensor<T, D> out =
      detail::matmul_nograd(x_rows, weight.detach().t(), bias.detach(), "linear").view(out_shape);
  autograd::record(
      "linear", out,
      [x_rows, w = weight.detach(), x_shape = x.shape(), rows, out_features](
          const Tensor<T, D>& g, const std::array<bool, 3>& needs) {
        const Tensor<T, D> g_rows = g.reshape(Shape{rows, out_features});
        Tensor<T, D> grad_x, grad_w, grad_b;
        if (needs[0])
          grad_x =
              detail::matmul_nograd(g_rows, w, Tensor<T, D>(), "linear backward").view(x_shape);
        if (needs[1])
          grad_w = detail::matmul_nograd(g_rows.t(), x_rows, Tensor<T, D>(), "linear backward");
        if (needs[2]) grad_b = detail::column_sums(g_rows);
        return std::tuple{grad_x, grad_w, grad_b};
      },
      x, weight, bias);
  return out;
}

}  // namespace mentor
