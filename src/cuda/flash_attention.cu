// Host launchers of the flash-attention kernels (fused.hpp; kernels in
// kernels/flash_attention.cuh).
#include <cuda_bf16.h>
#include <cuda_runtime.h>

#include <cmath>
#include <vector>

#include "mentor/backend/cuda/fused.hpp"
#include "mentor/backend/cuda/kernels/common.cuh"
#include "mentor/backend/cuda/kernels/flash_attention.cuh"
#include "mentor/backend/cuda/scratch.hpp"
#include "mentor/core/cuda_api.hpp"

namespace mentor::cuda {

namespace {

int checked_int(int64_t v, const char* what) {
  MENTOR_CHECK(v >= 0 && v <= 0x7fffffff, "flash_attention: ", what, " = ", v, " is out of range");
  return static_cast<int>(v);
}

flash::Params make_params(const FlashAttentionShape& s) {
  MENTOR_CHECK(flash_attention_supported(s.head_dim), "flash_attention: head dim ", s.head_dim,
               " is not supported (64 or 128)");
  MENTOR_CHECK(s.kv_heads >= 1 && s.heads % s.kv_heads == 0, "flash_attention: ", s.kv_heads,
               " kv heads do not divide ", s.heads, " query heads");
  MENTOR_CHECK(s.batch * s.heads <= 65535 && s.batch * s.kv_heads <= 65535,
               "flash_attention: batch × heads = ", s.batch * s.heads, " exceeds 65535");
  flash::Params p{};
  p.batch = checked_int(s.batch, "batch");
  p.heads = checked_int(s.heads, "heads");
  p.kv_heads = checked_int(s.kv_heads, "kv_heads");
  p.q_len = checked_int(s.q_len, "q_len");
  p.kv_len = checked_int(s.kv_len, "kv_len");
  MENTOR_CHECK(s.q_offset >= -0x7fffffffLL && s.q_offset <= 0x7fffffffLL,
               "flash_attention: q_offset ", s.q_offset, " out of range");
  p.q_offset = static_cast<int>(s.q_offset);
  p.causal = s.causal;
  p.scale = s.scale != 0.f ? s.scale : 1.0f / std::sqrt(static_cast<float>(s.head_dim));
  p.scale_log2 = p.scale * flash::kLog2e;
  return p;
}

void check_aligned(std::initializer_list<const void*> pointers) {
  for (const void* ptr : pointers)
    MENTOR_CHECK(ptr == nullptr || is_aligned(ptr, 16),
                 "flash_attention: tensors must be 16-byte aligned (got ", ptr, ")");
}

template <class Kernel>
void set_smem(Kernel kernel, int bytes) {
  // Per thread (cudaFuncSetAttribute is cheap but not free; the value never changes).
  MENTOR_CUDA_CHECK(
      cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, bytes));
}

template <int D>
void launch_forward(const flash::Params& p) {
  constexpr int smem = flash::forward_smem_bytes<D>();
  thread_local bool configured = false;
  if (!configured) {
    set_smem(flash::flash_forward_kernel<D>, smem);
    configured = true;
  }
  dim3 grid(static_cast<unsigned>((p.q_len + flash::kBlockQ - 1) / flash::kBlockQ),
            static_cast<unsigned>(p.batch * p.heads));
  flash::flash_forward_kernel<D><<<grid, flash::kThreads, smem, stream()>>>(p);
  MENTOR_CUDA_CHECK_LAUNCH("flash_forward_kernel");
}

template <int D>
void launch_backward(const flash::Params& p) {
  constexpr int smem = flash::backward_smem_bytes<D>();
  thread_local bool configured = false;
  if (!configured) {
    set_smem(flash::flash_backward_kernel<D>, smem);
    configured = true;
  }
  const int64_t rows = static_cast<int64_t>(p.batch) * p.heads * p.q_len;
  flash::flash_backward_preprocess_kernel<D>
      <<<grid_blocks(rows, 8, 16), 256, 0, stream()>>>(p.out, p.grad_out, p.delta, rows);
  MENTOR_CUDA_CHECK_LAUNCH("flash_backward_preprocess_kernel");
  dim3 grid(static_cast<unsigned>((p.kv_len + flash::kBlockK - 1) / flash::kBlockK),
            static_cast<unsigned>(p.batch * p.kv_heads));
  flash::flash_backward_kernel<D><<<grid, flash::kThreads, smem, stream()>>>(p);
  MENTOR_CUDA_CHECK_LAUNCH("flash_backward_kernel");
}

}  // namespace

bool flash_attention_supported(int64_t head_dim) { return head_dim == 64 || head_dim == 128; }

void flash_attention_forward(const bf16* q, const bf16* k, const bf16* v, const int32_t* key_start,
                             const FlashAttentionShape& shape, bf16* out, float* lse) {
  flash::Params p = make_params(shape);
  if (static_cast<int64_t>(p.batch) * p.heads * p.q_len == 0) return;
  check_aligned({q, k, v, out});
  const int64_t rows = static_cast<int64_t>(p.batch) * p.heads * p.q_len;
  if (p.kv_len == 0) {
    MENTOR_CUDA_CHECK(cudaMemsetAsync(out, 0, sizeof(bf16) * rows * shape.head_dim, stream()));
    fill<float>(lse, rows, -INFINITY);
    return;
  }
  p.q = device_ptr(q);
  p.k = device_ptr(k);
  p.v = device_ptr(v);
  p.key_start = key_start;
  p.o = device_ptr(out);
  p.lse = lse;
  if (shape.head_dim == 64) {
    launch_forward<64>(p);
  } else {
    launch_forward<128>(p);
  }
}

void flash_attention_backward(const bf16* q, const bf16* k, const bf16* v, const bf16* out,
                              const bf16* grad_out, const float* lse, const int32_t* key_start,
                              const FlashAttentionShape& shape, bf16* grad_q, bf16* grad_k,
                              bf16* grad_v) {
  flash::Params p = make_params(shape);
  const int64_t D = shape.head_dim;
  const int64_t q_elems = static_cast<int64_t>(p.batch) * p.heads * p.q_len * D;
  const int64_t kv_elems = static_cast<int64_t>(p.batch) * p.kv_heads * p.kv_len * D;
  if (q_elems == 0 || p.kv_len == 0) {
    if (q_elems) MENTOR_CUDA_CHECK(cudaMemsetAsync(grad_q, 0, sizeof(bf16) * q_elems, stream()));
    if (kv_elems) {
      MENTOR_CUDA_CHECK(cudaMemsetAsync(grad_k, 0, sizeof(bf16) * kv_elems, stream()));
      MENTOR_CUDA_CHECK(cudaMemsetAsync(grad_v, 0, sizeof(bf16) * kv_elems, stream()));
    }
    return;
  }
  check_aligned({q, k, v, out, grad_out, grad_q, grad_k, grad_v});
  const int64_t rows = static_cast<int64_t>(p.batch) * p.heads * p.q_len;
  Scratch delta(sizeof(float) * static_cast<size_t>(rows));
  Scratch dq_accum(sizeof(float) * static_cast<size_t>(q_elems));
  MENTOR_CUDA_CHECK(cudaMemsetAsync(dq_accum.as<float>(), 0, sizeof(float) * q_elems, stream()));
  p.q = device_ptr(q);
  p.k = device_ptr(k);
  p.v = device_ptr(v);
  p.out = device_ptr(out);
  p.grad_out = device_ptr(grad_out);
  p.key_start = key_start;
  p.lse = const_cast<float*>(lse);
  p.delta = delta.as<float>();
  p.dq_accum = dq_accum.as<float>();
  p.dk = device_ptr(grad_k);
  p.dv = device_ptr(grad_v);
  if (D == 64) {
    launch_backward<64>(p);
  } else {
    launch_backward<128>(p);
  }
  flash::flash_backward_finish_kernel<<<grid_blocks(q_elems, 256), 256, 0, stream()>>>(
      dq_accum.as<float>(), p.scale, device_ptr(grad_q), q_elems);
  MENTOR_CUDA_CHECK_LAUNCH("flash_backward_finish_kernel");
}

}  // namespace mentor::cuda
