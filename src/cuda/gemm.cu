// GEMM through cuBLASLt (gemm.hpp). Row-major products are computed as the column-major product
// C^T = op(B)^T · op(A)^T, which is the same memory. Plans (descriptors + the heuristic's
// algorithm) are cached per shape, layout, alignment and stream-independent settings, so a training
// step pays the heuristic once per distinct GEMM.
#include <cublasLt.h>
#include <cuda_runtime.h>

#include <algorithm>
#include <atomic>
#include <cstring>
#include <unordered_map>

#include "mentor/backend/cuda/allocator.hpp"
#include "mentor/backend/cuda/check.hpp"
#include "mentor/backend/cuda/gemm.hpp"
#include "mentor/backend/cuda/kernels/common.cuh"
#include "mentor/backend/cuda/scratch.hpp"
#include "mentor/backend/launch/matmul.hpp"
#include "mentor/core/cuda_api.hpp"

namespace mentor::cuda {

namespace {

std::atomic<bool> g_allow_tf32{false};

constexpr size_t kWorkspaceBytes = size_t{32} << 20;  // what PyTorch gives cuBLAS on Hopper

template <class T>
constexpr cudaDataType_t data_type() {
  if constexpr (std::is_same_v<T, float>)
    return CUDA_R_32F;
  else if constexpr (std::is_same_v<T, double>)
    return CUDA_R_64F;
  else
    return CUDA_R_16BF;
}

struct PlanKey {
  int dtype;
  bool trans_a, trans_b, tf32, bias;
  int64_t m, n, k, lda, ldb, ldc, stride_a, stride_b, stride_c, batch;
  int align_a, align_b, align_c;
  bool operator==(const PlanKey& o) const { return std::memcmp(this, &o, sizeof(PlanKey)) == 0; }
};

struct PlanKeyHash {
  size_t operator()(const PlanKey& key) const {
    // FNV-1a over the bytes (the key is zero-initialised, so padding bytes are deterministic).
    const unsigned char* bytes = reinterpret_cast<const unsigned char*>(&key);
    uint64_t hash = 1469598103934665603ull;
    for (size_t i = 0; i < sizeof(PlanKey); ++i) hash = (hash ^ bytes[i]) * 1099511628211ull;
    return static_cast<size_t>(hash);
  }
};

struct Plan {
  cublasLtMatmulDesc_t desc = nullptr;
  cublasLtMatrixLayout_t layout_first = nullptr;   // cuBLAS "A": our B
  cublasLtMatrixLayout_t layout_second = nullptr;  // cuBLAS "B": our A
  cublasLtMatrixLayout_t layout_c = nullptr;
  cublasLtMatmulAlgo_t algo{};
};

struct LtContext {
  cublasLtHandle_t handle = nullptr;
  std::unordered_map<PlanKey, Plan, PlanKeyHash> plans;

  LtContext() { MENTOR_CUBLAS_CHECK(cublasLtCreate(&handle)); }
  // Descriptors are host objects; the handle is left to process teardown (the
  // CUDA runtime may already be unloading when thread-local destructors run).
  ~LtContext() {
    for (auto& entry : plans) {
      cublasLtMatmulDescDestroy(entry.second.desc);
      cublasLtMatrixLayoutDestroy(entry.second.layout_first);
      cublasLtMatrixLayoutDestroy(entry.second.layout_second);
      cublasLtMatrixLayoutDestroy(entry.second.layout_c);
    }
  }
};

LtContext& lt_context() {
  thread_local LtContext context;
  return context;
}

cublasLtMatrixLayout_t make_layout(cudaDataType_t type, int64_t rows, int64_t cols, int64_t ld,
                                   int64_t batch, int64_t stride) {
  cublasLtMatrixLayout_t layout = nullptr;
  MENTOR_CUBLAS_CHECK(cublasLtMatrixLayoutCreate(&layout, type, static_cast<uint64_t>(rows),
                                                 static_cast<uint64_t>(cols), ld));
  if (batch > 1) {
    int32_t count = static_cast<int32_t>(batch);
    MENTOR_CUBLAS_CHECK(cublasLtMatrixLayoutSetAttribute(layout, CUBLASLT_MATRIX_LAYOUT_BATCH_COUNT,
                                                         &count, sizeof(count)));
    MENTOR_CUBLAS_CHECK(cublasLtMatrixLayoutSetAttribute(
        layout, CUBLASLT_MATRIX_LAYOUT_STRIDED_BATCH_OFFSET, &stride, sizeof(stride)));
  }
  return layout;
}

// Leading dimension of a column-major rows×cols matrix as cuBLASLt wants it (>= rows). A single
// column never steps by ld, so any ld the caller passed for it is replaced.
int64_t checked_ld(int64_t ld, int64_t rows, int64_t cols, const char* which, int64_t m, int64_t n,
                   int64_t k) {
  if (cols <= 1) return std::max<int64_t>({ld, rows, 1});
  MENTOR_CHECK(ld >= std::max<int64_t>(rows, 1), "cuda::gemm: leading dimension ", ld, " of ",
               which, " is smaller than its row length ", rows, " (m=", m, ", n=", n, ", k=", k,
               ")");
  return ld;
}

template <class T>
__global__ void scale_matrices_kernel(T* c, int64_t m, int64_t n, int64_t ldc, int64_t stride_c,
                                      int64_t batch, float beta) {
  const int64_t total = m * n * batch;
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < total;
       i += int64_t(gridDim.x) * blockDim.x) {
    int64_t col = i % n, row = (i / n) % m, b = i / (n * m);
    T* p = c + b * stride_c + row * ldc + col;
    *p = beta == 0.f ? from_acc<T>(0.f) : from_acc<T>(to_acc(*p) * beta);
  }
}

// A and B of type T, C (and the bias) of type TC: T itself, or float for bf16 inputs.
template <class T, class TC = T>
void gemm_impl(bool trans_a, bool trans_b, int64_t m, int64_t n, int64_t k, float alpha, const T* a,
               int64_t lda, int64_t stride_a, const T* b, int64_t ldb, int64_t stride_b, float beta,
               TC* c, int64_t ldc, int64_t stride_c, int64_t batch, const TC* bias) {
  MENTOR_CHECK(m >= 0 && n >= 0 && k >= 0 && batch >= 0, "cuda::gemm: negative size (m=", m,
               ", n=", n, ", k=", k, ", batch=", batch, ")");
  MENTOR_CHECK(batch <= 0x7fffffff, "cuda::gemm: batch ", batch, " exceeds cuBLASLt's limit");
  if (m == 0 || n == 0 || batch == 0) return;
  if (k == 0) {  // C = beta * C (+ bias): cuBLASLt does not take empty inner dimensions
    MENTOR_CHECK(bias == nullptr, "cuda::gemm: bias with k == 0 is not supported");
    if (beta == 1.f) return;
    using DT = device_t<TC>;
    scale_matrices_kernel<DT><<<grid_blocks(m * n * batch, 256), 256, 0, stream()>>>(
        device_ptr(c), m, n, ldc, stride_c, batch, beta);
    MENTOR_CUDA_CHECK_LAUNCH("scale_matrices_kernel");
    return;
  }
  const cudaDataType_t type = data_type<T>(), c_type = data_type<TC>();
  const bool tf32 = std::is_same_v<T, float> && g_allow_tf32.load(std::memory_order_relaxed);
  // Column-major view: first operand = our B (n×k after op), second = our A (k×m after op).
  const int64_t first_rows = trans_b ? k : n, first_cols = trans_b ? n : k;
  const int64_t second_rows = trans_a ? m : k, second_cols = trans_a ? k : m;
  ldb = checked_ld(ldb, first_rows, first_cols, "B", m, n, k);
  lda = checked_ld(lda, second_rows, second_cols, "A", m, n, k);
  ldc = checked_ld(ldc, n, m, "C", m, n, k);

  PlanKey key;
  std::memset(&key, 0, sizeof(key));
  key.dtype = static_cast<int>(type) * 1000 + static_cast<int>(c_type);
  key.trans_a = trans_a;
  key.trans_b = trans_b;
  key.tf32 = tf32;
  key.bias = bias != nullptr;
  key.m = m, key.n = n, key.k = k, key.lda = lda, key.ldb = ldb, key.ldc = ldc;
  key.batch = batch;
  key.stride_a = batch > 1 ? stride_a : 0;
  key.stride_b = batch > 1 ? stride_b : 0;
  key.stride_c = batch > 1 ? stride_c : 0;
  key.align_a = pointer_alignment(a);
  key.align_b = pointer_alignment(b);
  key.align_c = pointer_alignment(c);

  LtContext& ctx = lt_context();
  auto it = ctx.plans.find(key);
  if (it == ctx.plans.end()) {
    Plan plan;
    cublasComputeType_t compute = std::is_same_v<T, double> ? CUBLAS_COMPUTE_64F
                                  : tf32                    ? CUBLAS_COMPUTE_32F_FAST_TF32
                                                            : CUBLAS_COMPUTE_32F;
    cudaDataType_t scale_type = std::is_same_v<T, double> ? CUDA_R_64F : CUDA_R_32F;
    MENTOR_CUBLAS_CHECK(cublasLtMatmulDescCreate(&plan.desc, compute, scale_type));
    cublasOperation_t op_first = trans_b ? CUBLAS_OP_T : CUBLAS_OP_N;
    cublasOperation_t op_second = trans_a ? CUBLAS_OP_T : CUBLAS_OP_N;
    MENTOR_CUBLAS_CHECK(cublasLtMatmulDescSetAttribute(plan.desc, CUBLASLT_MATMUL_DESC_TRANSA,
                                                       &op_first, sizeof(op_first)));
    MENTOR_CUBLAS_CHECK(cublasLtMatmulDescSetAttribute(plan.desc, CUBLASLT_MATMUL_DESC_TRANSB,
                                                       &op_second, sizeof(op_second)));
    if (bias != nullptr) {
      cublasLtEpilogue_t epilogue = CUBLASLT_EPILOGUE_BIAS;
      MENTOR_CUBLAS_CHECK(cublasLtMatmulDescSetAttribute(plan.desc, CUBLASLT_MATMUL_DESC_EPILOGUE,
                                                         &epilogue, sizeof(epilogue)));
      MENTOR_CUBLAS_CHECK(cublasLtMatmulDescSetAttribute(
          plan.desc, CUBLASLT_MATMUL_DESC_BIAS_POINTER, &bias, sizeof(bias)));
    }
    plan.layout_first = make_layout(type, first_rows, first_cols, ldb, batch, key.stride_b);
    plan.layout_second = make_layout(type, second_rows, second_cols, lda, batch, key.stride_a);
    plan.layout_c = make_layout(c_type, n, m, ldc, batch, key.stride_c);

    cublasLtMatmulPreference_t preference = nullptr;
    MENTOR_CUBLAS_CHECK(cublasLtMatmulPreferenceCreate(&preference));
    size_t workspace = kWorkspaceBytes;
    MENTOR_CUBLAS_CHECK(cublasLtMatmulPreferenceSetAttribute(
        preference, CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES, &workspace, sizeof(workspace)));
    uint32_t align_first = static_cast<uint32_t>(key.align_b),
             align_second = static_cast<uint32_t>(key.align_a),
             align_c = static_cast<uint32_t>(key.align_c);
    MENTOR_CUBLAS_CHECK(cublasLtMatmulPreferenceSetAttribute(
        preference, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_A_BYTES, &align_first, sizeof(uint32_t)));
    MENTOR_CUBLAS_CHECK(cublasLtMatmulPreferenceSetAttribute(
        preference, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_B_BYTES, &align_second, sizeof(uint32_t)));
    MENTOR_CUBLAS_CHECK(cublasLtMatmulPreferenceSetAttribute(
        preference, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_C_BYTES, &align_c, sizeof(uint32_t)));
    MENTOR_CUBLAS_CHECK(cublasLtMatmulPreferenceSetAttribute(
        preference, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_D_BYTES, &align_c, sizeof(uint32_t)));
    cublasLtMatmulHeuristicResult_t result{};
    int returned = 0;
    cublasStatus_t status = cublasLtMatmulAlgoGetHeuristic(
        ctx.handle, plan.desc, plan.layout_first, plan.layout_second, plan.layout_c, plan.layout_c,
        preference, 1, &result, &returned);
    cublasLtMatmulPreferenceDestroy(preference);
    if (status != CUBLAS_STATUS_SUCCESS || returned == 0) {
      cublasLtMatmulDescDestroy(plan.desc);
      cublasLtMatrixLayoutDestroy(plan.layout_first);
      cublasLtMatrixLayoutDestroy(plan.layout_second);
      cublasLtMatrixLayoutDestroy(plan.layout_c);
      throw Error(mentor::detail::concat(
          "cuda::gemm: cuBLASLt found no algorithm (", cublasGetStatusName(status), ") for m=", m,
          ", n=", n, ", k=", k, ", batch=", batch, ", trans_a=", trans_a, ", trans_b=", trans_b,
          ", lda=", lda, ", ldb=", ldb, ", ldc=", ldc, ", alignments ", key.align_a, "/",
          key.align_b, "/", key.align_c, " bytes"));
    }
    plan.algo = result.algo;
    it = ctx.plans.emplace(key, plan).first;
  }
  const Plan& plan = it->second;
  if (bias != nullptr) {  // the pointer is not part of the key
    MENTOR_CUBLAS_CHECK(cublasLtMatmulDescSetAttribute(plan.desc, CUBLASLT_MATMUL_DESC_BIAS_POINTER,
                                                       &bias, sizeof(bias)));
  }
  cudaStream_t s = stream();
  // cuBLASLt's workspace, taken from the caching allocator on the current stream for each call and
  // given back when the call is queued. Eager GEMMs thus reuse their own stream's cached block
  // (stream order makes the reuse safe); under graph capture it comes from the graph's pool, so a
  // replay (on any stream) never shares its workspace with eager GEMMs or with another graph.
  Scratch workspace(kWorkspaceBytes);
  if constexpr (std::is_same_v<T, double>) {
    double alpha64 = alpha, beta64 = beta;
    MENTOR_CUBLAS_CHECK(cublasLtMatmul(
        ctx.handle, plan.desc, &alpha64, b, plan.layout_first, a, plan.layout_second, &beta64, c,
        plan.layout_c, c, plan.layout_c, &plan.algo, workspace.as<void>(), kWorkspaceBytes, s));
  } else {
    MENTOR_CUBLAS_CHECK(cublasLtMatmul(
        ctx.handle, plan.desc, &alpha, b, plan.layout_first, a, plan.layout_second, &beta, c,
        plan.layout_c, c, plan.layout_c, &plan.algo, workspace.as<void>(), kWorkspaceBytes, s));
  }
}

}  // namespace

template <class T>
void gemm(bool trans_a, bool trans_b, int64_t m, int64_t n, int64_t k, float alpha, const T* a,
          int64_t lda, const T* b, int64_t ldb, float beta, T* c, int64_t ldc, const T* bias) {
  gemm_impl<T, T>(trans_a, trans_b, m, n, k, alpha, a, lda, 0, b, ldb, 0, beta, c, ldc, 0, 1, bias);
}

template <class T>
void gemm_strided_batched(bool trans_a, bool trans_b, int64_t batch, int64_t m, int64_t n,
                          int64_t k, float alpha, const T* a, int64_t lda, int64_t stride_a,
                          const T* b, int64_t ldb, int64_t stride_b, float beta, T* c, int64_t ldc,
                          int64_t stride_c) {
  if (batch == 1) {
    gemm_impl<T, T>(trans_a, trans_b, m, n, k, alpha, a, lda, 0, b, ldb, 0, beta, c, ldc, 0, 1,
                    nullptr);
    return;
  }
  gemm_impl<T, T>(trans_a, trans_b, m, n, k, alpha, a, lda, stride_a, b, ldb, stride_b, beta, c,
                  ldc, stride_c, batch, nullptr);
}

void gemm_strided_batched_f32out(bool trans_a, bool trans_b, int64_t batch, int64_t m, int64_t n,
                                 int64_t k, float alpha, const bf16* a, int64_t lda,
                                 int64_t stride_a, const bf16* b, int64_t ldb, int64_t stride_b,
                                 float beta, float* c, int64_t ldc, int64_t stride_c) {
  if (batch == 1) stride_a = stride_b = stride_c = 0;
  gemm_impl<bf16, float>(trans_a, trans_b, m, n, k, alpha, a, lda, stride_a, b, ldb, stride_b, beta,
                         c, ldc, stride_c, batch, nullptr);
}

namespace {

template <class T>
__global__ void broadcast_rows_kernel(const T* __restrict__ bias, T* __restrict__ out, int64_t rows,
                                      int64_t cols) {
  const int64_t total = rows * cols;
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < total;
       i += int64_t(gridDim.x) * blockDim.x)
    out[i] = bias[i % cols];
}

// out[c] = Σ_r x[r, c]: columns along x (coalesced), rows along y, one split of the rows per
// blockIdx.y into partial[split, c] (float), summed in split order afterwards (deterministic).
template <class T>
__global__ void column_partial_kernel(const T* __restrict__ x, int64_t rows, int64_t cols,
                                      int64_t rows_per_split, float* __restrict__ partial) {
  __shared__ float scratch[8][33];
  const int64_t c = int64_t(blockIdx.x) * 32 + threadIdx.x;
  const int64_t begin = int64_t(blockIdx.y) * rows_per_split;
  const int64_t end = min(rows, begin + rows_per_split);
  float acc = 0.f;
  if (c < cols)
    for (int64_t r = begin + threadIdx.y; r < end; r += blockDim.y) acc += to_acc(x[r * cols + c]);
  scratch[threadIdx.y][threadIdx.x] = acc;
  __syncthreads();
  if (threadIdx.y != 0 || c >= cols) return;
  for (unsigned i = 1; i < blockDim.y; ++i) acc += scratch[i][threadIdx.x];
  partial[int64_t(blockIdx.y) * cols + c] = acc;
}

template <class T>
__global__ void column_finish_kernel(const float* __restrict__ partial, int64_t splits,
                                     int64_t cols, T* __restrict__ out) {
  for (int64_t c = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; c < cols;
       c += int64_t(gridDim.x) * blockDim.x) {
    float acc = 0.f;
    for (int64_t s = 0; s < splits; ++s) acc += partial[s * cols + c];
    out[c] = from_acc<T>(acc);
  }
}

}  // namespace

template <class T>
void broadcast_rows(const T* bias, T* out, int64_t rows, int64_t cols) {
  if (rows <= 0 || cols <= 0) return;
  using DT = device_t<T>;
  broadcast_rows_kernel<DT><<<grid_blocks(rows * cols, 256), 256, 0, stream()>>>(
      device_ptr(bias), device_ptr(out), rows, cols);
  MENTOR_CUDA_CHECK_LAUNCH("broadcast_rows_kernel");
}

template <class T>
void column_sums(const T* x, T* out, int64_t rows, int64_t cols) {
  if (cols <= 0) return;
  using DT = device_t<T>;
  if (rows <= 0) {
    MENTOR_CUDA_CHECK(cudaMemsetAsync(out, 0, sizeof(T) * static_cast<size_t>(cols), stream()));
    return;
  }
  const int64_t col_blocks = ceil_div(cols, 32);
  MENTOR_CHECK(col_blocks <= 0x7fffffff, "cuda::column_sums: ", cols, " columns are too many");
  const int64_t target = 4LL * multiprocessor_count();
  int64_t splits = std::max<int64_t>(
      1, std::min<int64_t>({ceil_div(target, col_blocks), ceil_div(rows, 64), 65535}));
  const int64_t rows_per_split = ceil_div(rows, splits);
  splits = ceil_div(rows, rows_per_split);
  Scratch partial(sizeof(float) * static_cast<size_t>(splits * cols));
  column_partial_kernel<DT>
      <<<dim3(static_cast<unsigned>(col_blocks), static_cast<unsigned>(splits)), dim3(32, 8), 0,
         stream()>>>(device_ptr(x), rows, cols, rows_per_split, partial.as<float>());
  MENTOR_CUDA_CHECK_LAUNCH("column_partial_kernel");
  column_finish_kernel<DT><<<grid_blocks(cols, 256), 256, 0, stream()>>>(
      partial.as<float>(), splits, cols, device_ptr(out));
  MENTOR_CUDA_CHECK_LAUNCH("column_finish_kernel");
}

void set_allow_tf32(bool allow) { g_allow_tf32.store(allow, std::memory_order_relaxed); }
bool allow_tf32() { return g_allow_tf32.load(std::memory_order_relaxed); }

#define MENTOR_INSTANTIATE_GEMM(T)                                                                 \
  template void gemm<T>(bool, bool, int64_t, int64_t, int64_t, float, const T*, int64_t, const T*, \
                        int64_t, float, T*, int64_t, const T*);                                    \
  template void gemm_strided_batched<T>(bool, bool, int64_t, int64_t, int64_t, int64_t, float,     \
                                        const T*, int64_t, int64_t, const T*, int64_t, int64_t,    \
                                        float, T*, int64_t, int64_t);                              \
  template void broadcast_rows<T>(const T*, T*, int64_t, int64_t);                                 \
  template void column_sums<T>(const T*, T*, int64_t, int64_t);
MENTOR_INSTANTIATE_GEMM(float)
MENTOR_INSTANTIATE_GEMM(double)
MENTOR_INSTANTIATE_GEMM(bf16)
#undef MENTOR_INSTANTIATE_GEMM

}  // namespace mentor::cuda
