#pragma once
// Warp-level tensor-core primitives (sm_80+ PTX, also the fast path on sm_90 without wgmma):
// mma.sync m16n8k16 bf16 -> f32, ldmatrix, cp.async, and the XOR-swizzled shared-memory tile
// layout that makes ldmatrix conflict-free.
//
// Fragment layouts of mma.m16n8k16 (lane = 4·g + t, g = lane / 4, t = lane % 4):
//   A (16×16, row-major), 4 regs of 2 bf16: a0 (row g, cols 2t..2t+1), a1 (row g+8, cols 2t..),
//     a2 (row g, cols 8+2t..), a3 (row g+8, cols 8+2t..)
//   B (16×8, k × n), 2 regs: b0 (k 2t..2t+1, col g), b1 (k 8+2t..8+2t+1, col g)
//   C (16×8 f32), 4 floats: c0, c1 (row g, cols 2t, 2t+1), c2, c3 (row g+8, cols 2t, 2t+1)
// The lower-indexed element of a bf16 pair sits in the low 16 bits.
#include <cuda_bf16.h>
#include <cuda_runtime.h>

#include <cstdint>

namespace mentor::cuda::mma {

__device__ __forceinline__ uint32_t smem_address(const void* p) {
  return static_cast<uint32_t>(__cvta_generic_to_shared(p));
}

// 16 bytes global -> shared, asynchronously; src_bytes < 16 zero-fills the rest (0: all zeros).
__device__ __forceinline__ void cp_async_16(void* smem, const void* gmem, int src_bytes) {
  asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;\n" ::"r"(smem_address(smem)),
               "l"(gmem), "r"(src_bytes));
}
__device__ __forceinline__ void cp_async_commit() { asm volatile("cp.async.commit_group;\n" ::); }
template <int kPending>
__device__ __forceinline__ void cp_async_wait() {
  asm volatile("cp.async.wait_group %0;\n" ::"n"(kPending));
}

__device__ __forceinline__ void ldmatrix_x4(uint32_t (&r)[4], const void* smem) {
  asm volatile("ldmatrix.sync.aligned.m8n8.x4.shared.b16 {%0, %1, %2, %3}, [%4];\n"
               : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
               : "r"(smem_address(smem)));
}
__device__ __forceinline__ void ldmatrix_x4_trans(uint32_t (&r)[4], const void* smem) {
  asm volatile("ldmatrix.sync.aligned.m8n8.x4.trans.shared.b16 {%0, %1, %2, %3}, [%4];\n"
               : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
               : "r"(smem_address(smem)));
}

// c += a · b (m16n8k16, bf16 inputs, f32 accumulators).
__device__ __forceinline__ void mma_bf16(float (&c)[4], const uint32_t (&a)[4], uint32_t b0,
                                         uint32_t b1) {
  asm volatile(
      "mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 {%0, %1, %2, %3}, {%4, %5, %6, %7}, "
      "{%8, %9}, {%0, %1, %2, %3};\n"
      : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])
      : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
}

__device__ __forceinline__ uint32_t pack_bf16(float lo, float hi) {
  __nv_bfloat162 v = __floats2bfloat162_rn(lo, hi);
  return *reinterpret_cast<uint32_t*>(&v);
}

// Shared tile of kRows × kCols bf16, row-major, whose 16-byte chunks are XOR-swizzled so that the
// eight rows an ldmatrix reads at one logical column land in eight different bank groups.
template <int kCols>
struct SwizzledTile {
  static constexpr int kChunks = kCols / 8;  // 16-byte chunks per row
  static_assert(kChunks == 4 || kChunks == 8 || kChunks == 16, "tile rows of 32, 64 or 128 bf16");
  // Element offset of (row, chunk·8).
  __device__ static __forceinline__ int offset(int row, int chunk) {
    const int swizzle = kChunks == 4 ? (row >> 1) & 3 : row & 7;
    return row * kCols + ((chunk ^ swizzle) << 3);
  }
};

}  // namespace mentor::cuda::mma
