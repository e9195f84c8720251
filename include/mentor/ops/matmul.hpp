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
#include "mentor/ops/apply.hpp"

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

// How gemm reads one operand of a product: the view itself when its layout allows (trans flag
// and pitch from gemm_layout), else a contiguous copy; the offset of each of its matrices over
// the output's batch and their common stride (-1 when irregular).
template <class T, class D>
struct GemmOperand {
  Tensor<T, D> matrix;
  bool trans = false;
  int64_t ld = 0;
  std::vector<int64_t> offsets;
  int64_t stride = 0;
};

template <class T, class D>
GemmOperand<T, D> gemm_operand(const Tensor<T, D>& x, const Shape& batch) {
  GemmOperand<T, D> op;
  op.matrix = x;
  if (!gemm_layout(x.shape(), x.strides(), op.trans, op.ld)) {
    op.matrix = x.contiguous_nograd();
    op.trans = false;
    op.ld = std::max<int64_t>(x.size(-1), 1);
  }
  op.offsets = batch_offsets(op.matrix.shape(), op.matrix.strides(), batch);
  op.stride = progression_stride(op.offsets);
  return op;
}

}  // namespace detail

// ---- the ops ---------------------------------------------------------------------------------

// a [..., M, K] @ b [..., K, N] (+ bias [N] on every row, when defined) into the contiguous
// [batch..., M, N] output, recording nothing: the product of matmul, linear and their backward
// passes. The operands reach the kernels as the views they are (see the file comment).
struct MatmulProduct {
  static constexpr bool differentiable = false;
  static constexpr bool strided_inputs = true;
  const char* op_name;  // the op named in errors
  Shape batch{};        // the broadcast batch dimensions

  template <class T, class D>
  Shape output_shape(const Tensor<T, D>& a, const Tensor<T, D>& b, const Tensor<T, D>& bias) {
    MENTOR_CHECK_SHAPE(a.dim() >= 2 && b.dim() >= 2, op_name, ": operands need rank >= 2, got ",
                       a.shape().str(), " and ", b.shape().str());
    const int64_t M = a.size(-2), K = a.size(-1), N = b.size(-1);
    MENTOR_CHECK_SHAPE(b.size(-2) == K, op_name, ": inner dimensions differ: ", a.shape().str(),
                       " @ ", b.shape().str());
    MENTOR_CHECK_SHAPE(!bias.defined() || (bias.dim() == 1 && bias.size(0) == N), op_name,
                       ": bias of shape ", bias.shape().str(), " for ", N, " output features");
    batch = detail::matmul_batch(a.shape(), b.shape(), op_name);
    Shape out_shape = batch;
    out_shape.push_back(M);
    out_shape.push_back(N);
    return out_shape;
  }

  template <class T>
  void forward_cpu(const Tensor<T, CPU>& a, const Tensor<T, CPU>& b, const Tensor<T, CPU>& bias,
                   Tensor<T, CPU>& out) const {
    if (out.numel() == 0) return;
    if constexpr (std::is_same_v<T, bf16>) {
      // bf16: multiply in float, round the result once.
      Tensor<float, CPU> bias_f;
      if (bias.defined()) bias_f = bias.template to<float>();
      Tensor<float, CPU> out_f = Tensor<float, CPU>::empty(out.shape());
      forward_cpu(a.template to<float>(), b.template to<float>(), bias_f, out_f);
      detail::DeviceOps<CPU>::convert<bf16>(out_f.data(), out.data(), out.numel());
    } else {
      const int64_t M = a.size(-2), K = a.size(-1), N = b.size(-1);
      const detail::GemmOperand<T, CPU> lhs = detail::gemm_operand(a, batch),
                                        rhs = detail::gemm_operand(b, batch);
      const int64_t n_batch = batch.numel(), ldc = std::max<int64_t>(N, 1), stride_c = M * N;
      T beta = T(0);  // 1 when the output is initialised with the bias
      if (bias.defined()) {
        beta = T(1);
        const Tensor<T, CPU> bias_c = bias.contiguous_nograd();
        const T* pb = bias_c.data();
        T* po = out.data();
        cpu::parallel_for(n_batch * M, std::max<int64_t>(1, 65536 / std::max<int64_t>(N, 1)),
                          [&](int64_t begin, int64_t end) {
                            for (int64_t r = begin; r < end; ++r) std::copy(pb, pb + N, po + r * N);
                          });
      }
      const T* pa = lhs.matrix.data();
      const T* pb = rhs.matrix.data();
      T* pc = out.data();
      if (folds(lhs, rhs, M)) {
        cpu::gemm(lhs.trans, rhs.trans, n_batch * M, N, K, T(1), pa, lhs.ld, pb, rhs.ld, beta, pc,
                  ldc);
      } else if (lhs.stride >= 0 && rhs.stride >= 0) {
        cpu::gemm_batched(lhs.trans, rhs.trans, n_batch, M, N, K, T(1), pa, lhs.ld, lhs.stride, pb,
                          rhs.ld, rhs.stride, beta, pc, ldc, stride_c);
      } else {
        // Irregular batch offsets (e.g. a permuted batch): one serial GEMM per matrix.
        cpu::parallel_for(n_batch, 1, [&](int64_t begin, int64_t end) {
          for (int64_t i = begin; i < end; ++i)
            cpu::gemm(lhs.trans, rhs.trans, M, N, K, T(1), pa + lhs.offsets[static_cast<size_t>(i)],
                      lhs.ld, pb + rhs.offsets[static_cast<size_t>(i)], rhs.ld, beta,
                      pc + i * stride_c, ldc);
        });
      }
    }
  }

  template <class T>
  void forward_cuda(const Tensor<T, CUDA>& a, const Tensor<T, CUDA>& b, const Tensor<T, CUDA>& bias,
                    Tensor<T, CUDA>& out) const {
    if (out.numel() == 0) return;
    const int64_t M = a.size(-2), K = a.size(-1), N = b.size(-1);
    detail::GemmOperand<T, CUDA> lhs = detail::gemm_operand(a, batch),
                                 rhs = detail::gemm_operand(b, batch);
    const int64_t n_batch = batch.numel(), ldc = std::max<int64_t>(N, 1), stride_c = M * N;
    float beta = 0.0f;  // 1 when the output is initialised with the bias
    if (bias.defined()) {
      beta = 1.0f;
      const Tensor<T, CUDA> bias_c = bias.contiguous_nograd();
      cuda::broadcast_rows(bias_c.data(), out.data(), n_batch * M, N);
    }
    const bool fold = folds(lhs, rhs, M);
    // cuBLAS takes one stride per operand: materialise an operand whose batch is irregular.
    auto regularise = [&](detail::GemmOperand<T, CUDA>& x, int64_t rows, int64_t cols) {
      if (x.stride >= 0) return;
      Shape full = batch;
      full.push_back(rows);
      full.push_back(cols);
      x.matrix = x.matrix.expand(full).contiguous_nograd();
      x.trans = false;
      x.ld = std::max<int64_t>(cols, 1);
      x.stride = rows * cols;
    };
    regularise(lhs, M, K);
    regularise(rhs, K, N);
    if (fold) {
      cuda::gemm_strided_batched(lhs.trans, rhs.trans, 1, n_batch * M, N, K, 1.0f,
                                 lhs.matrix.data(), lhs.ld, 0, rhs.matrix.data(), rhs.ld, 0, beta,
                                 out.data(), ldc, 0);
    } else {
      cuda::gemm_strided_batched(lhs.trans, rhs.trans, n_batch, M, N, K, 1.0f, lhs.matrix.data(),
                                 lhs.ld, lhs.stride, rhs.matrix.data(), rhs.ld, rhs.stride, beta,
                                 out.data(), ldc, stride_c);
    }
  }

 private:
  // A batch of row-major matrices stacked M rows apart times one shared matrix: one tall GEMM.
  template <class T, class D>
  bool folds(const detail::GemmOperand<T, D>& lhs, const detail::GemmOperand<T, D>& rhs,
             int64_t M) const {
    return rhs.stride == 0 && !lhs.trans && (batch.numel() == 1 || lhs.stride == M * lhs.ld);
  }
};

// out[c] = sum_r x[r, c] (x contiguous [rows, cols]) in acc precision, rounded once: the bias
// gradient of linear.
struct ColumnSums {
  static constexpr bool differentiable = false;
  int64_t rows = 0, cols = 0;

  template <class T, class D>
  Shape output_shape(const Tensor<T, D>& x) {
    cols = x.size(-1);
    rows = cols == 0 ? 0 : x.numel() / cols;
    return Shape{cols};
  }
  template <class T>
  void forward_cpu(const Tensor<T, CPU>& x, Tensor<T, CPU>& out) const {
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
  }
  template <class T>
  void forward_cuda(const Tensor<T, CUDA>& x, Tensor<T, CUDA>& out) const {
    cuda::column_sums(x.data(), out.data(), rows, cols);
  }
};

namespace detail {

// The product a @ b (+ bias added to every row when `bias` is defined), recording nothing.
// Shapes: a [..., M, K], b [..., K, N], bias [N]; the result is contiguous [batch..., M, N].
template <class T, class D>
Tensor<T, D> matmul_nograd(const Tensor<T, D>& a, const Tensor<T, D>& b, const Tensor<T, D>& bias,
                           const char* op) {
  return apply(MatmulProduct{op}, a, b, bias);
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

// a @ b with matmul's backward: dL/da = dC b^T and dL/db = a^T dC, each summed over the batch
// dimensions its operand was broadcast along.
struct Matmul {
  static constexpr OpSaves saves = OpSaves::Inputs;
  static constexpr bool strided_inputs = true;
  static constexpr bool composite_backward = true;
  MatmulProduct product{"matmul"};

  const char* name() const { return "matmul"; }
  template <class T, class D>
  Shape output_shape(const Tensor<T, D>& a, const Tensor<T, D>& b) {
    return product.output_shape(a, b, Tensor<T, D>());
  }
  template <class T>
  void forward_cpu(const Tensor<T, CPU>& a, const Tensor<T, CPU>& b, Tensor<T, CPU>& out) const {
    product.forward_cpu(a, b, Tensor<T, CPU>(), out);
  }
  template <class T>
  void forward_cuda(const Tensor<T, CUDA>& a, const Tensor<T, CUDA>& b,
                    Tensor<T, CUDA>& out) const {
    product.forward_cuda(a, b, Tensor<T, CUDA>(), out);
  }
  template <class T, class D>
  std::tuple<Tensor<T, D>, Tensor<T, D>> backward(const Tensor<T, D>& a, const Tensor<T, D>& b,
                                                  const Tensor<T, D>&, const Tensor<T, D>& grad_out,
                                                  const std::array<bool, 2>& needs) const {
    Tensor<T, D> grad_a, grad_b;
    if (needs[0]) grad_a = detail::matmul_grad_a(grad_out, a, b);
    if (needs[1]) grad_b = detail::matmul_grad_b(grad_out, a, b);
    return {grad_a, grad_b};
  }
};

// x [..., in] w^T + bias as one product over the rows of x: [rows, in] @ [in, out] (the
// transposed view of w), the bias initialising the output.
struct Linear {
  static constexpr OpSaves saves = OpSaves::Inputs;
  static constexpr bool strided_inputs = true;
  static constexpr bool composite_backward = true;
  int64_t rows = 0, in_features = 0, out_features = 0;

  const char* name() const { return "linear"; }
  template <class T, class D>
  Shape output_shape(const Tensor<T, D>& x, const Tensor<T, D>& weight, const Tensor<T, D>& bias) {
    MENTOR_CHECK_SHAPE(weight.dim() == 2, "linear: weight must be [out, in], got ",
                       weight.shape().str());
    MENTOR_CHECK_SHAPE(x.dim() >= 1 && x.size(-1) == weight.size(1), "linear: input of shape ",
                       x.shape().str(), " does not end in the ", weight.size(1),
                       " input features of weight ", weight.shape().str());
    MENTOR_CHECK_SHAPE(!bias.defined() || (bias.dim() == 1 && bias.size(0) == weight.size(0)),
                       "linear: bias of shape ", bias.shape().str(), " for weight ",
                       weight.shape().str());
    in_features = weight.size(1);
    out_features = weight.size(0);
    rows = 1;
    for (int i = 0; i + 1 < x.dim(); ++i) rows *= x.size(i);
    Shape out_shape = x.shape();
    out_shape[out_shape.rank() - 1] = out_features;
    return out_shape;
  }
  template <class T>
  void forward_cpu(const Tensor<T, CPU>& x, const Tensor<T, CPU>& weight,
                   const Tensor<T, CPU>& bias, Tensor<T, CPU>& out) const {
    forward(x, weight, bias, out);
  }
  template <class T>
  void forward_cuda(const Tensor<T, CUDA>& x, const Tensor<T, CUDA>& weight,
                    const Tensor<T, CUDA>& bias, Tensor<T, CUDA>& out) const {
    forward(x, weight, bias, out);
  }
  template <class T, class D>
  std::tuple<Tensor<T, D>, Tensor<T, D>, Tensor<T, D>> backward(
      const Tensor<T, D>& x, const Tensor<T, D>& weight, const Tensor<T, D>&, const Tensor<T, D>&,
      const Tensor<T, D>& grad_out, const std::array<bool, 3>& needs) const {
    const Tensor<T, D> g_rows = grad_out.reshape(Shape{rows, out_features});
    Tensor<T, D> grad_x, grad_w, grad_b;
    if (needs[0])
      grad_x =
          detail::matmul_nograd(g_rows, weight, Tensor<T, D>(), "linear backward").view(x.shape());
    if (needs[1])
      grad_w = detail::matmul_nograd(g_rows.t(), x.reshape(Shape{rows, in_features}),
                                     Tensor<T, D>(), "linear backward");
    if (needs[2]) grad_b = apply(ColumnSums{}, g_rows);
    return {grad_x, grad_w, grad_b};
  }

 private:
  template <class T, class D>
  void forward(const Tensor<T, D>& x, const Tensor<T, D>& weight, const Tensor<T, D>& bias,
               Tensor<T, D>& out) const {
    Tensor<T, D> out_rows = out.view(Shape{rows, out_features});
    launch(MatmulProduct{"linear"}, x.reshape(Shape{rows, in_features}), weight.t(), bias,
           out_rows);
  }
};

// a [..., M, K] @ b [..., K, N] -> [batch..., M, N] with the batch dimensions broadcast
// (torch.matmul for rank >= 2). Transposed views are read in place.
template <FloatingElement T, class D>
Tensor<T, D> matmul(const Tensor<T, D>& a, const Tensor<T, D>& b) {
  return apply(Matmul{}, a, b);
}

// nn.Linear: x [..., in] w^T + bias, with weight [out, in] and bias [out] (an undefined tensor for
// none). One GEMM over all leading dimensions of x; the bias initialises the output.
template <FloatingElement T, class D>
Tensor<T, D> linear(const Tensor<T, D>& x, const Tensor<T, D>& weight,
                    const Tensor<T, D>& bias = Tensor<T, D>()) {
  return apply(Linear{}, x, weight, bias);
}

}  // namespace mentor
