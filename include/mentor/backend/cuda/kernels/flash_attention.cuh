#pragma once
// Flash attention (FlashAttention-2 scheme) for bf16 with head dim 64 or 128 on mma.sync tensor
// cores. Neither pass materialises the S×S score matrix.
//
// Forward: a block of 4 warps owns 64 query rows of one (batch, head), 16 rows per warp held as
// A fragments. It streams 64-key tiles of K and V through double-buffered shared memory
// (cp.async), computes S = Q Kᵀ, keeps a running row max and row sum in the log2 domain (online
// softmax), and accumulates O += P V with P converted from the S accumulators straight into A
// fragments. The row's logsumexp (natural log) is saved for the backward.
//
// Backward: D = rowsum(dO ∘ O) first (preprocess kernel). Then a block of 4 warps owns 64 keys of
// one (batch, kv head), 16 keys per warp, and walks every query tile of every query head sharing
// that kv head: Sᵀ = K Qᵀ, Pᵀ = exp(Sᵀ·scale − lse), dV += Pᵀ dO, dPᵀ = V dOᵀ, dSᵀ = Pᵀ ∘ (dPᵀ −
// D), dK += dSᵀ Q (all in registers), and dQ += dS K through shared memory, accumulated in float
// with atomics into a [B, H, Sq, D] buffer that a last kernel scales and rounds to bf16.
//
// Masking: key j is visible to query i when j < Sk, j >= key_start[b] and, if causal,
// j <= i + q_offset. Query rows and key rows beyond the sequence ends are zero-filled in shared
// memory and never stored.
#include <cuda_bf16.h>
#include <cuda_runtime.h>

#include <cstdint>

#include "mentor/backend/cuda/kernels/mma.cuh"

namespace mentor::cuda::flash {

constexpr int kWarps = 4;
constexpr int kThreads = 32 * kWarps;
constexpr int kBlockQ = 64;  // forward: query rows per block
constexpr int kBlockK = 64;  // keys per tile (forward) / per block (backward)
constexpr float kLog2e = 1.4426950408889634f;
constexpr float kLn2 = 0.6931471805599453f;

struct Params {
  const __nv_bfloat16* q;
  const __nv_bfloat16* k;
  const __nv_bfloat16* v;
  const __nv_bfloat16* out;
  const __nv_bfloat16* grad_out;
  const int32_t* key_start;  // [B] or null
  __nv_bfloat16* o;          // forward output
  float* lse;                // forward: written; backward: read
  float* delta;              // backward: rowsum(dO ∘ O) [B, H, Sq]
  float* dq_accum;           // backward: [B, H, Sq, D] float
  __nv_bfloat16* dk;
  __nv_bfloat16* dv;
  int batch, heads, kv_heads, q_len, kv_len;
  int q_offset;
  bool causal;
  float scale;       // softmax scale
  float scale_log2;  // scale · log2(e)
};

// Copies rows [0, valid) of a [rows, D] bf16 global tile into a swizzled shared tile (rows >= valid
// become zeros). Every thread of the block takes part.
template <int kRows, int D>
__device__ __forceinline__ void load_tile(__nv_bfloat16* smem, const __nv_bfloat16* gmem,
                                          int valid) {
  using Tile = mma::SwizzledTile<D>;
  constexpr int kChunks = D / 8;
  constexpr int kPerThread = kRows * kChunks / kThreads;
  static_assert(kRows * kChunks % kThreads == 0, "tile must split evenly over the threads");
#pragma unroll
  for (int i = 0; i < kPerThread; ++i) {
    const int c = threadIdx.x + i * kThreads;
    const int row = c / kChunks, chunk = c % kChunks;
    const bool inside = row < valid;
    const __nv_bfloat16* src = inside ? gmem + static_cast<int64_t>(row) * D + chunk * 8 : gmem;
    mma::cp_async_16(smem + Tile::offset(row, chunk), src, inside ? 16 : 0);
  }
}

// ------------------------------------------------------------------------------------------------
// Forward
// ------------------------------------------------------------------------------------------------
template <int D>
__global__ void __launch_bounds__(kThreads) flash_forward_kernel(Params p) {
  using Tile = mma::SwizzledTile<D>;
  constexpr int kSteps = D / 16;        // k-steps of Q Kᵀ
  constexpr int kDTiles = D / 8;        // n-tiles of O
  constexpr int kKTiles = kBlockK / 8;  // n-tiles of S
  extern __shared__ __align__(16) unsigned char smem_raw[];
  __nv_bfloat16* sQ = reinterpret_cast<__nv_bfloat16*>(smem_raw);
  __nv_bfloat16* sK = sQ + kBlockQ * D;      // [2][kBlockK][D]
  __nv_bfloat16* sV = sK + 2 * kBlockK * D;  // [2][kBlockK][D]

  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
  const int g = lane / 4, t = lane % 4;
  // The last query tiles see the most keys under a causal mask: launch them first.
  const int q0 = (gridDim.x - 1 - blockIdx.x) * kBlockQ;
  const int bh = blockIdx.y;  // b * heads + h
  const int b = bh / p.heads, h = bh % p.heads;
  const int kvh = h / (p.heads / p.kv_heads);
  const int64_t q_base = static_cast<int64_t>(bh) * p.q_len * D;
  const int64_t kv_base = (static_cast<int64_t>(b) * p.kv_heads + kvh) * p.kv_len * D;
  const int key_start = p.key_start != nullptr ? p.key_start[b] : 0;

  // Key range this block needs.
  int kv_end = p.kv_len;
  if (p.causal) kv_end = min(kv_end, q0 + kBlockQ + p.q_offset);
  const int kv_begin = max(key_start, 0) / kBlockK * kBlockK;
  const int n_tiles = kv_end > kv_begin ? (kv_end - kv_begin + kBlockK - 1) / kBlockK : 0;

  load_tile<kBlockQ, D>(sQ, p.q + q_base + static_cast<int64_t>(q0) * D, p.q_len - q0);
  mma::cp_async_commit();
  if (n_tiles > 0) {
    load_tile<kBlockK, D>(sK, p.k + kv_base + static_cast<int64_t>(kv_begin) * D,
                          p.kv_len - kv_begin);
    load_tile<kBlockK, D>(sV, p.v + kv_base + static_cast<int64_t>(kv_begin) * D,
                          p.kv_len - kv_begin);
  }
  mma::cp_async_commit();

  float o[kDTiles][4];
#pragma unroll
  for (int i = 0; i < kDTiles; ++i) o[i][0] = o[i][1] = o[i][2] = o[i][3] = 0.f;
  float row_max[2] = {-INFINITY, -INFINITY};  // log2 domain, rows g and g + 8
  float row_sum[2] = {0.f, 0.f};              // this thread's partial sums

  // Q fragments of this warp's 16 rows.
  mma::cp_async_wait<1>();
  __syncthreads();
  uint32_t qf[kSteps][4];
#pragma unroll
  for (int ks = 0; ks < kSteps; ++ks) {
    const int row = warp * 16 + (lane & 7) + 8 * ((lane >> 3) & 1);
    mma::ldmatrix_x4(qf[ks], sQ + Tile::offset(row, ks * 2 + (lane >> 4)));
  }

  const int row_lo = q0 + warp * 16 + g;  // query index of rows g and g + 8
  for (int tile = 0; tile < n_tiles; ++tile) {
    const int k0 = kv_begin + tile * kBlockK;
    const int buf = tile & 1;
    if (tile + 1 < n_tiles) {
      const int next = k0 + kBlockK;
      load_tile<kBlockK, D>(sK + (buf ^ 1) * kBlockK * D,
                            p.k + kv_base + static_cast<int64_t>(next) * D, p.kv_len - next);
      load_tile<kBlockK, D>(sV + (buf ^ 1) * kBlockK * D,
                            p.v + kv_base + static_cast<int64_t>(next) * D, p.kv_len - next);
    }
    mma::cp_async_commit();
    mma::cp_async_wait<1>();
    __syncthreads();
    const __nv_bfloat16* tK = sK + buf * kBlockK * D;
    const __nv_bfloat16* tV = sV + buf * kBlockK * D;

    // S = Q Kᵀ (16 rows × 64 keys per warp).
    float s[kKTiles][4];
#pragma unroll
    for (int i = 0; i < kKTiles; ++i) s[i][0] = s[i][1] = s[i][2] = s[i][3] = 0.f;
#pragma unroll
    for (int ks = 0; ks < kSteps; ++ks) {
#pragma unroll
      for (int np = 0; np < kKTiles / 2; ++np) {
        uint32_t kf[4];
        const int j = lane >> 3;
        const int key = np * 16 + (lane & 7) + 8 * (j >> 1);
        mma::ldmatrix_x4(kf, tK + Tile::offset(key, ks * 2 + (j & 1)));
        mma::mma_bf16(s[2 * np], qf[ks], kf[0], kf[1]);
        mma::mma_bf16(s[2 * np + 1], qf[ks], kf[2], kf[3]);
      }
    }

    // Mask where the tile crosses a boundary.
    const bool needs_mask = k0 < key_start || k0 + kBlockK > p.kv_len ||
                            (p.causal && k0 + kBlockK - 1 > q0 + p.q_offset);
    if (needs_mask) {
#pragma unroll
      for (int nt = 0; nt < kKTiles; ++nt) {
#pragma unroll
        for (int e = 0; e < 4; ++e) {
          const int key = k0 + nt * 8 + 2 * t + (e & 1);
          const int query = row_lo + 8 * (e >> 1);
          const bool visible =
              key < p.kv_len && key >= key_start && (!p.causal || key <= query + p.q_offset);
          if (!visible) s[nt][e] = -INFINITY;
        }
      }
    }

    // Online softmax, rows g (e = 0, 1) and g + 8 (e = 2, 3).
    float tile_max[2] = {-INFINITY, -INFINITY};
#pragma unroll
    for (int nt = 0; nt < kKTiles; ++nt) {
      tile_max[0] = fmaxf(tile_max[0], fmaxf(s[nt][0], s[nt][1]));
      tile_max[1] = fmaxf(tile_max[1], fmaxf(s[nt][2], s[nt][3]));
    }
    float use[2], alpha[2];
#pragma unroll
    for (int r = 0; r < 2; ++r) {
      tile_max[r] = fmaxf(tile_max[r], __shfl_xor_sync(0xffffffffu, tile_max[r], 1));
      tile_max[r] = fmaxf(tile_max[r], __shfl_xor_sync(0xffffffffu, tile_max[r], 2));
      const float new_max = fmaxf(row_max[r], tile_max[r] * p.scale_log2);
      use[r] = new_max == -INFINITY ? 0.f : new_max;
      alpha[r] = exp2f(row_max[r] - use[r]);
      row_max[r] = new_max;
      row_sum[r] *= alpha[r];
    }
#pragma unroll
    for (int dt = 0; dt < kDTiles; ++dt) {
      o[dt][0] *= alpha[0];
      o[dt][1] *= alpha[0];
      o[dt][2] *= alpha[1];
      o[dt][3] *= alpha[1];
    }
#pragma unroll
    for (int nt = 0; nt < kKTiles; ++nt) {
#pragma unroll
      for (int e = 0; e < 4; ++e) {
        const int r = e >> 1;
        s[nt][e] = exp2f(fmaf(s[nt][e], p.scale_log2, -use[r]));
        row_sum[r] += s[nt][e];
      }
    }

    // O += P V: P (16 × 64 keys) as four k16 A fragments, V via transposed ldmatrix.
#pragma unroll
    for (int kk = 0; kk < kBlockK / 16; ++kk) {
      uint32_t pf[4];
      pf[0] = mma::pack_bf16(s[2 * kk][0], s[2 * kk][1]);
      pf[1] = mma::pack_bf16(s[2 * kk][2], s[2 * kk][3]);
      pf[2] = mma::pack_bf16(s[2 * kk + 1][0], s[2 * kk + 1][1]);
      pf[3] = mma::pack_bf16(s[2 * kk + 1][2], s[2 * kk + 1][3]);
#pragma unroll
      for (int dp = 0; dp < kDTiles / 2; ++dp) {
        uint32_t vf[4];
        const int j = lane >> 3;
        const int key = kk * 16 + (lane & 7) + 8 * (j & 1);
        mma::ldmatrix_x4_trans(vf, tV + Tile::offset(key, dp * 2 + (j >> 1)));
        mma::mma_bf16(o[2 * dp], pf, vf[0], vf[1]);
        mma::mma_bf16(o[2 * dp + 1], pf, vf[2], vf[3]);
      }
    }
    __syncthreads();  // the buffer is refilled by the next iteration's prefetch
  }
  mma::cp_async_wait<0>();

  // Normalise and store.
#pragma unroll
  for (int r = 0; r < 2; ++r) {
    row_sum[r] += __shfl_xor_sync(0xffffffffu, row_sum[r], 1);
    row_sum[r] += __shfl_xor_sync(0xffffffffu, row_sum[r], 2);
  }
#pragma unroll
  for (int r = 0; r < 2; ++r) {
    const int query = row_lo + 8 * r;
    if (query >= p.q_len) continue;
    const float inv = row_sum[r] > 0.f ? 1.f / row_sum[r] : 0.f;
    __nv_bfloat16* dst = p.o + q_base + static_cast<int64_t>(query) * D;
#pragma unroll
    for (int dt = 0; dt < kDTiles; ++dt) {
      const uint32_t packed = mma::pack_bf16(o[dt][2 * r] * inv, o[dt][2 * r + 1] * inv);
      *reinterpret_cast<uint32_t*>(dst + dt * 8 + 2 * t) = packed;
    }
    if (t == 0) {
      p.lse[static_cast<int64_t>(bh) * p.q_len + query] =
          row_sum[r] > 0.f ? row_max[r] * kLn2 + logf(row_sum[r]) : -INFINITY;
    }
  }
}

// ------------------------------------------------------------------------------------------------
// Backward
// ------------------------------------------------------------------------------------------------
// delta[row] = Σ_d dO[row, d] · O[row, d] (float), a warp per row.
template <int D>
__global__ void flash_backward_preprocess_kernel(const __nv_bfloat16* __restrict__ out,
                                                 const __nv_bfloat16* __restrict__ grad_out,
                                                 float* __restrict__ delta, int64_t rows) {
  const int lane = threadIdx.x % 32;
  for (int64_t row = blockIdx.x * int64_t(blockDim.x / 32) + threadIdx.x / 32; row < rows;
       row += int64_t(gridDim.x) * (blockDim.x / 32)) {
    float acc = 0.f;
    for (int d = lane * 2; d < D; d += 64) {
      const __nv_bfloat162 a = *reinterpret_cast<const __nv_bfloat162*>(out + row * D + d);
      const __nv_bfloat162 c = *reinterpret_cast<const __nv_bfloat162*>(grad_out + row * D + d);
      const float2 af = __bfloat1622float2(a), cf = __bfloat1622float2(c);
      acc += af.x * cf.x + af.y * cf.y;
    }
#pragma unroll
    for (int offset = 16; offset > 0; offset >>= 1)
      acc += __shfl_xor_sync(0xffffffffu, acc, offset);
    if (lane == 0) delta[row] = acc;
  }
}

// grad_q = bf16(scale · dq_accum).
__global__ void flash_backward_finish_kernel(const float* __restrict__ dq_accum, float scale,
                                             __nv_bfloat16* __restrict__ grad_q, int64_t n) {
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < n;
       i += int64_t(gridDim.x) * blockDim.x)
    grad_q[i] = __float2bfloat16_rn(dq_accum[i] * scale);
}

// Query rows per tile of the backward: 64 for D = 64, 32 for D = 128 (register budget).
template <int D>
constexpr int backward_block_q() {
  return D == 64 ? 64 : 32;
}

template <int D>
constexpr int backward_smem_bytes() {
  constexpr int kBq = backward_block_q<D>();
  return (2 * kBlockK * D + 4 * kBq * D + kBlockK * kBq) * 2 + 4 * kBq * 4;
}

template <int D>
__global__ void __launch_bounds__(kThreads) flash_backward_kernel(Params p) {
  constexpr int kBq = backward_block_q<D>();
  using Tile = mma::SwizzledTile<D>;
  using DsTile = mma::SwizzledTile<kBq>;
  constexpr int kSteps = D / 16;                  // k-steps over the head dim
  constexpr int kQTiles = kBq / 8;                // n-tiles of Sᵀ (queries)
  constexpr int kDTiles = D / 8;                  // n-tiles of dK, dV
  constexpr int kQRowTiles = kBq / 16;            // m16 tiles of dQ
  constexpr int kColSplit = kWarps / kQRowTiles;  // warps sharing one dQ row tile
  constexpr int kDqTiles = kDTiles / kColSplit;   // n-tiles of dQ per warp
  static_assert(kWarps % kQRowTiles == 0 && kDTiles % kColSplit == 0 && kDqTiles % 2 == 0,
                "backward tiling");

  extern __shared__ __align__(16) unsigned char smem_raw[];
  __nv_bfloat16* sK = reinterpret_cast<__nv_bfloat16*>(smem_raw);  // [kBlockK][D]
  __nv_bfloat16* sV = sK + kBlockK * D;                            // [kBlockK][D]
  __nv_bfloat16* sQ = sV + kBlockK * D;                            // [2][kBq][D]
  __nv_bfloat16* sdO = sQ + 2 * kBq * D;                           // [2][kBq][D]
  __nv_bfloat16* sdS = sdO + 2 * kBq * D;                          // [kBlockK][kBq]
  float* sLse = reinterpret_cast<float*>(sdS + kBlockK * kBq);     // [2][kBq], log2 domain
  float* sDelta = sLse + 2 * kBq;                                  // [2][kBq]

  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
  const int g = lane / 4, t = lane % 4;
  const int k0 = blockIdx.x * kBlockK;
  const int bkv = blockIdx.y;  // b * kv_heads + kv head
  const int b = bkv / p.kv_heads, kvh = bkv % p.kv_heads;
  const int rep = p.heads / p.kv_heads;
  const int64_t kv_base = static_cast<int64_t>(bkv) * p.kv_len * D;
  const int key_start = p.key_start != nullptr ? p.key_start[b] : 0;

  // Query tiles that can see some key of this block.
  int q_first = 0;
  if (p.causal) q_first = max(0, k0 - p.q_offset) / kBq * kBq;
  const bool keys_visible = k0 + kBlockK > key_start && k0 < p.kv_len;
  const int q_tiles = (keys_visible && p.q_len > q_first) ? (p.q_len - q_first + kBq - 1) / kBq : 0;
  const int iterations = q_tiles * rep;

  load_tile<kBlockK, D>(sK, p.k + kv_base + static_cast<int64_t>(k0) * D, p.kv_len - k0);
  load_tile<kBlockK, D>(sV, p.v + kv_base + static_cast<int64_t>(k0) * D, p.kv_len - k0);
  mma::cp_async_commit();

  // Iteration it -> (query head, query tile start).
  auto head_of = [&](int it) { return kvh * rep + it / q_tiles; };
  auto q0_of = [&](int it) { return q_first + (it % q_tiles) * kBq; };
  auto prefetch = [&](int it, int buf) {
    const int h = head_of(it), q0 = q0_of(it);
    const int64_t row0 = (static_cast<int64_t>(b) * p.heads + h) * p.q_len + q0;
    load_tile<kBq, D>(sQ + buf * kBq * D, p.q + row0 * D, p.q_len - q0);
    load_tile<kBq, D>(sdO + buf * kBq * D, p.grad_out + row0 * D, p.q_len - q0);
    for (int i = threadIdx.x; i < kBq; i += kThreads) {
      float l2 = INFINITY, dl = 0.f;  // rows past the end (or seeing no key) give P = 0
      if (q0 + i < p.q_len) {
        const float lse = p.lse[row0 + i];
        if (lse != -INFINITY) l2 = lse * kLog2e;
        dl = p.delta[row0 + i];
      }
      sLse[buf * kBq + i] = l2;
      sDelta[buf * kBq + i] = dl;
    }
  };
  if (iterations > 0) prefetch(0, 0);
  mma::cp_async_commit();

  float dk[kDTiles][4], dv[kDTiles][4];
#pragma unroll
  for (int i = 0; i < kDTiles; ++i) {
    dk[i][0] = dk[i][1] = dk[i][2] = dk[i][3] = 0.f;
    dv[i][0] = dv[i][1] = dv[i][2] = dv[i][3] = 0.f;
  }
  const int key_lo = k0 + warp * 16 + g;  // key index of this thread's rows g and g + 8

  for (int it = 0; it < iterations; ++it) {
    const int buf = it & 1;
    if (it + 1 < iterations) prefetch(it + 1, buf ^ 1);
    mma::cp_async_commit();
    mma::cp_async_wait<1>();
    __syncthreads();
    const int h = head_of(it), q0 = q0_of(it);
    const __nv_bfloat16* tQ = sQ + buf * kBq * D;
    const __nv_bfloat16* tdO = sdO + buf * kBq * D;
    const float* tLse = sLse + buf * kBq;
    const float* tDelta = sDelta + buf * kBq;

    // Sᵀ = K Qᵀ (16 keys × kBq queries per warp).
    float s[kQTiles][4];
#pragma unroll
    for (int i = 0; i < kQTiles; ++i) s[i][0] = s[i][1] = s[i][2] = s[i][3] = 0.f;
#pragma unroll
    for (int ks = 0; ks < kSteps; ++ks) {
      uint32_t kf[4];
      {
        const int row = warp * 16 + (lane & 7) + 8 * ((lane >> 3) & 1);
        mma::ldmatrix_x4(kf, sK + Tile::offset(row, ks * 2 + (lane >> 4)));
      }
#pragma unroll
      for (int np = 0; np < kQTiles / 2; ++np) {
        uint32_t qf[4];
        const int j = lane >> 3;
        const int query = np * 16 + (lane & 7) + 8 * (j >> 1);
        mma::ldmatrix_x4(qf, tQ + Tile::offset(query, ks * 2 + (j & 1)));
        mma::mma_bf16(s[2 * np], kf, qf[0], qf[1]);
        mma::mma_bf16(s[2 * np + 1], kf, qf[2], qf[3]);
      }
    }

    // Pᵀ = exp2(Sᵀ · scale_log2 − lse2[query]), 0 where masked.
    const bool needs_mask = k0 < key_start || k0 + kBlockK > p.kv_len ||
                            (p.causal && k0 + kBlockK - 1 > q0 + p.q_offset);
#pragma unroll
    for (int nt = 0; nt < kQTiles; ++nt) {
#pragma unroll
      for (int e = 0; e < 4; ++e) {
        const int query_local = nt * 8 + 2 * t + (e & 1);
        const int key = key_lo + 8 * (e >> 1);
        float value = exp2f(fmaf(s[nt][e], p.scale_log2, -tLse[query_local]));
        if (needs_mask) {
          const bool visible = key < p.kv_len && key >= key_start &&
                               (!p.causal || key <= q0 + query_local + p.q_offset);
          if (!visible) value = 0.f;
        }
        s[nt][e] = value;
      }
    }

    // dV += Pᵀ dO.
#pragma unroll
    for (int kq = 0; kq < kBq / 16; ++kq) {
      uint32_t pf[4];
      pf[0] = mma::pack_bf16(s[2 * kq][0], s[2 * kq][1]);
      pf[1] = mma::pack_bf16(s[2 * kq][2], s[2 * kq][3]);
      pf[2] = mma::pack_bf16(s[2 * kq + 1][0], s[2 * kq + 1][1]);
      pf[3] = mma::pack_bf16(s[2 * kq + 1][2], s[2 * kq + 1][3]);
#pragma unroll
      for (int dp = 0; dp < kDTiles / 2; ++dp) {
        uint32_t of[4];
        const int j = lane >> 3;
        const int query = kq * 16 + (lane & 7) + 8 * (j & 1);
        mma::ldmatrix_x4_trans(of, tdO + Tile::offset(query, dp * 2 + (j >> 1)));
        mma::mma_bf16(dv[2 * dp], pf, of[0], of[1]);
        mma::mma_bf16(dv[2 * dp + 1], pf, of[2], of[3]);
      }
    }

    // dPᵀ = V dOᵀ.
    float dp_acc[kQTiles][4];
#pragma unroll
    for (int i = 0; i < kQTiles; ++i)
      dp_acc[i][0] = dp_acc[i][1] = dp_acc[i][2] = dp_acc[i][3] = 0.f;
#pragma unroll
    for (int ks = 0; ks < kSteps; ++ks) {
      uint32_t vf[4];
      {
        const int row = warp * 16 + (lane & 7) + 8 * ((lane >> 3) & 1);
        mma::ldmatrix_x4(vf, sV + Tile::offset(row, ks * 2 + (lane >> 4)));
      }
#pragma unroll
      for (int np = 0; np < kQTiles / 2; ++np) {
        uint32_t of[4];
        const int j = lane >> 3;
        const int query = np * 16 + (lane & 7) + 8 * (j >> 1);
        mma::ldmatrix_x4(of, tdO + Tile::offset(query, ks * 2 + (j & 1)));
        mma::mma_bf16(dp_acc[2 * np], vf, of[0], of[1]);
        mma::mma_bf16(dp_acc[2 * np + 1], vf, of[2], of[3]);
      }
    }

    // dSᵀ = Pᵀ ∘ (dPᵀ − delta[query]) (unscaled), to registers and to shared memory for dQ.
#pragma unroll
    for (int nt = 0; nt < kQTiles; ++nt) {
#pragma unroll
      for (int e = 0; e < 4; ++e) {
        const int query_local = nt * 8 + 2 * t + (e & 1);
        dp_acc[nt][e] = s[nt][e] * (dp_acc[nt][e] - tDelta[query_local]);
      }
#pragma unroll
      for (int r = 0; r < 2; ++r) {
        const int key_row = warp * 16 + g + 8 * r;
        *reinterpret_cast<uint32_t*>(sdS + DsTile::offset(key_row, nt) + 2 * t) =
            mma::pack_bf16(dp_acc[nt][2 * r], dp_acc[nt][2 * r + 1]);
      }
    }

    // dK += dSᵀ Q.
#pragma unroll
    for (int kq = 0; kq < kBq / 16; ++kq) {
      uint32_t df[4];
      df[0] = mma::pack_bf16(dp_acc[2 * kq][0], dp_acc[2 * kq][1]);
      df[1] = mma::pack_bf16(dp_acc[2 * kq][2], dp_acc[2 * kq][3]);
      df[2] = mma::pack_bf16(dp_acc[2 * kq + 1][0], dp_acc[2 * kq + 1][1]);
      df[3] = mma::pack_bf16(dp_acc[2 * kq + 1][2], dp_acc[2 * kq + 1][3]);
#pragma unroll
      for (int dp = 0; dp < kDTiles / 2; ++dp) {
        uint32_t qf[4];
        const int j = lane >> 3;
        const int query = kq * 16 + (lane & 7) + 8 * (j & 1);
        mma::ldmatrix_x4_trans(qf, tQ + Tile::offset(query, dp * 2 + (j >> 1)));
        mma::mma_bf16(dk[2 * dp], df, qf[0], qf[1]);
        mma::mma_bf16(dk[2 * dp + 1], df, qf[2], qf[3]);
      }
    }
    __syncthreads();  // dSᵀ complete

    // dQ (kBq × D) += dS K over the block's 64 keys; warp = (row tile, column part).
    {
      const int row_tile = warp % kQRowTiles, col_part = warp / kQRowTiles;
      float dq[kDqTiles][4];
#pragma unroll
      for (int i = 0; i < kDqTiles; ++i) dq[i][0] = dq[i][1] = dq[i][2] = dq[i][3] = 0.f;
#pragma unroll
      for (int kk = 0; kk < kBlockK / 16; ++kk) {
        uint32_t af[4];
        {
          const int j = lane >> 3;
          const int key_row = kk * 16 + (lane & 7) + 8 * (j >> 1);
          mma::ldmatrix_x4_trans(af, sdS + DsTile::offset(key_row, row_tile * 2 + (j & 1)));
        }
#pragma unroll
        for (int dp = 0; dp < kDqTiles / 2; ++dp) {
          uint32_t kf[4];
          const int j = lane >> 3;
          const int key_row = kk * 16 + (lane & 7) + 8 * (j & 1);
          const int chunk = col_part * kDqTiles + dp * 2 + (j >> 1);
          mma::ldmatrix_x4_trans(kf, sK + Tile::offset(key_row, chunk));
          mma::mma_bf16(dq[2 * dp], af, kf[0], kf[1]);
          mma::mma_bf16(dq[2 * dp + 1], af, kf[2], kf[3]);
        }
      }
      const int64_t row0 = (static_cast<int64_t>(b) * p.heads + h) * p.q_len;
#pragma unroll
      for (int r = 0; r < 2; ++r) {
        const int query = q0 + row_tile * 16 + g + 8 * r;
        if (query >= p.q_len) continue;
        float* dst = p.dq_accum + (row0 + query) * D + col_part * kDqTiles * 8;
#pragma unroll
        for (int nt = 0; nt < kDqTiles; ++nt) {
          atomicAdd(dst + nt * 8 + 2 * t, dq[nt][2 * r]);
          atomicAdd(dst + nt * 8 + 2 * t + 1, dq[nt][2 * r + 1]);
        }
      }
    }
    __syncthreads();  // buffers free for the next prefetch
  }
  mma::cp_async_wait<0>();

  // Store dK (scaled) and dV for this warp's keys.
#pragma unroll
  for (int r = 0; r < 2; ++r) {
    const int key = key_lo + 8 * r;
    if (key >= p.kv_len) continue;
    __nv_bfloat16* dk_row = p.dk + kv_base + static_cast<int64_t>(key) * D;
    __nv_bfloat16* dv_row = p.dv + kv_base + static_cast<int64_t>(key) * D;
#pragma unroll
    for (int dt = 0; dt < kDTiles; ++dt) {
      *reinterpret_cast<uint32_t*>(dk_row + dt * 8 + 2 * t) =
          mma::pack_bf16(dk[dt][2 * r] * p.scale, dk[dt][2 * r + 1] * p.scale);
      *reinterpret_cast<uint32_t*>(dv_row + dt * 8 + 2 * t) =
          mma::pack_bf16(dv[dt][2 * r], dv[dt][2 * r + 1]);
    }
  }
}

template <int D>
constexpr int forward_smem_bytes() {
  return (kBlockQ * D + 4 * kBlockK * D) * 2;
}

}  // namespace mentor::cuda::flash
