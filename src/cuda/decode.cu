// Launchers of the graph-captured decoder (backend/launch/decode.hpp; generate/cuda_decoder.hpp):
// the token embedding gather, RoPE with the KV-cache write, decode attention, SwiGLU, guided
// logits, the sampler and the counter advance. Every kernel that depends on the token being
// decoded reads the step or the position from device memory, so one captured graph serves every
// step. One thread-block layout per kernel, stated above it; bounds are checked in each.
#include <cuda_runtime.h>

#include <cmath>
#include <cstdint>
#include <limits>

#include "mentor/backend/cuda/kernels/common.cuh"
#include "mentor/backend/launch/decode.hpp"
#include "mentor/core/cuda_api.hpp"
#include "mentor/core/error.hpp"
#include "mentor/core/random.hpp"

namespace mentor {

namespace cuda::kernels {
namespace {

constexpr float kNegInf = -std::numeric_limits<float>::infinity();
constexpr float kPosInf = std::numeric_limits<float>::infinity();

__device__ __forceinline__ float warp_max(float v) {
#pragma unroll
  for (int offset = 16; offset > 0; offset >>= 1)
    v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, offset));
  return v;
}

// ---- token embedding ---------------------------------------------------------------------------
// Block r (of rows) copies the table row of the token row r is fed; threads stride over dim.
template <class T>
__global__ void embed_tokens_kernel(const T* __restrict__ table, int64_t vocab, int64_t dim,
                                    const int64_t* __restrict__ tokens, int64_t batch,
                                    int64_t stride, const int32_t* __restrict__ step,
                                    T* __restrict__ out, int32_t* __restrict__ status) {
  const int64_t r = blockIdx.x;
  const int64_t t = *step;
  const int64_t token = t >= 1 ? tokens[(r % batch) * stride + t - 1] : -1;
  T* dst = out + r * dim;
  if (token < 0 || token >= vocab) {  // block-uniform
    for (int64_t d = threadIdx.x; d < dim; d += blockDim.x) dst[d] = from_acc<T>(0.f);
    if (threadIdx.x == 0) atomicOr(status, kDecodeBadToken);
    return;
  }
  const T* src = table + token * dim;
  for (int64_t d = threadIdx.x; d < dim; d += blockDim.x) dst[d] = src[d];
}

// ---- RoPE + cache write ------------------------------------------------------------------------
// Block = one token (r, s) (blockIdx.x = r * seq + s). Threads stride first over the rotation
// pairs of its q and k heads ((heads + kv_heads) * head_dim / 2 of them), then over its v
// elements (kv_heads * head_dim).
template <class T>
__global__ void rope_cache_kernel(T* __restrict__ qkv, const float* __restrict__ table,
                                  T* __restrict__ k_cache, T* __restrict__ v_cache, DecodeShape sh,
                                  const int32_t* __restrict__ position,
                                  int32_t* __restrict__ status) {
  const int64_t token = blockIdx.x;
  const int64_t r = token / sh.seq, s = token % sh.seq;
  const int64_t p = static_cast<int64_t>(*position) + s;
  if (p < 0 || p >= sh.capacity || p >= sh.table_rows) {  // block-uniform
    if (threadIdx.x == 0) atomicOr(status, kDecodeBadPosition);
    return;
  }
  const int64_t dh = sh.head_dim, half = dh / 2;
  T* row = qkv + token * (sh.heads + 2 * sh.kv_heads) * dh;
  const float* rot = table + p * half * 2;  // [head_dim/2, 2] = (cos, sin) per pair
  for (int64_t i = threadIdx.x; i < (sh.heads + sh.kv_heads) * half; i += blockDim.x) {
    const int64_t h = i / half, j = i % half;  // head h of q | k, pair j
    const T* x = row + h * dh + 2 * j;
    const float c = rot[2 * j], sn = rot[2 * j + 1];
    const float x0 = to_acc(x[0]), x1 = to_acc(x[1]);
    const float y0 = x0 * c - x1 * sn, y1 = x1 * c + x0 * sn;
    T* dst = h < sh.heads
                 ? row + h * dh + 2 * j  // q: rotated in place
                 : k_cache + ((r * sh.kv_heads + (h - sh.heads)) * sh.capacity + p) * dh + 2 * j;
    dst[0] = from_acc<T>(y0);
    dst[1] = from_acc<T>(y1);
  }
  for (int64_t i = threadIdx.x; i < sh.kv_heads * dh; i += blockDim.x) {
    const int64_t h = i / dh, d = i % dh;
    v_cache[((r * sh.kv_heads + h) * sh.capacity + p) * dh + d] =
        row[(sh.heads + sh.kv_heads + h) * dh + d];
  }
}

// ---- decode attention --------------------------------------------------------------------------
constexpr int kAttentionThreads = 128;

// Block = one (sequence r, head h, new token s): blockIdx.x = r * heads + h, blockIdx.y = s.
// Dynamic shared memory: q in float [head_dim], then the scores / weights [capacity]. Threads take
// keys t = thread, thread + 128, ...; the softmax is block-wide; the output has one thread per
// head_dim element summing over the keys in order.
template <class T>
__global__ void __launch_bounds__(kAttentionThreads)
    attention_kernel(const T* __restrict__ qkv, const T* __restrict__ k_cache,
                     const T* __restrict__ v_cache, const bool* __restrict__ prefix_valid,
                     DecodeShape sh, const int32_t* __restrict__ position, float scale,
                     bool vector_keys, T* __restrict__ out) {
  extern __shared__ float smem[];
  __shared__ float reduce_scratch[32];
  const int64_t r = blockIdx.x / sh.heads, h = blockIdx.x % sh.heads, s = blockIdx.y;
  const int64_t dh = sh.head_dim;
  const int64_t p = static_cast<int64_t>(*position) + s;
  T* o = out + ((r * sh.seq + s) * sh.heads + h) * dh;
  if (p < 0 || p >= sh.capacity) {  // block-uniform; the RoPE kernel reported it
    for (int64_t d = threadIdx.x; d < dh; d += blockDim.x) o[d] = from_acc<T>(0.f);
    return;
  }
  const int64_t kvh = h / (sh.heads / sh.kv_heads);
  const T* q = qkv + (r * sh.seq + s) * (sh.heads + 2 * sh.kv_heads) * dh + h * dh;
  const T* keys = k_cache + (r * sh.kv_heads + kvh) * sh.capacity * dh;
  const T* values = v_cache + (r * sh.kv_heads + kvh) * sh.capacity * dh;
  const bool* valid = prefix_valid == nullptr ? nullptr : prefix_valid + r * sh.prefix;
  float* qs = smem;
  float* weight = smem + dh;
  for (int64_t d = threadIdx.x; d < dh; d += blockDim.x) qs[d] = to_acc(q[d]);
  __syncthreads();

  // One key per thread: each thread runs its own dot product over head_dim (q broadcast from
  // shared memory), no shuffles on the critical path. With `vector_keys` (head_dim a multiple of
  // one 16-byte pack, rows 16-byte aligned) a key row is read in 16-byte packs, so a warp's load
  // instruction moves 32 packs instead of 32 scalars from 32 different rows.
  constexpr int kPack = Pack16<T>::kSize;
  for (int64_t t = threadIdx.x; t <= p; t += blockDim.x) {
    const bool on = t >= sh.prefix || valid == nullptr || valid[t] || t == p;
    float dot = 0.f;
    if (on) {
      const T* key = keys + t * dh;
      if (vector_keys) {
        for (int64_t d0 = 0; d0 < dh; d0 += kPack) {
          const Pack16<T> pack = load16(key + d0);
#pragma unroll
          for (int e = 0; e < kPack; ++e) dot += qs[d0 + e] * to_acc(pack.elem[e]);
        }
      } else {
        for (int64_t d = 0; d < dh; ++d) dot += qs[d] * to_acc(key[d]);
      }
    }
    weight[t] = on ? dot * scale : kNegInf;
  }
  __syncthreads();
  float top = kNegInf;
  for (int64_t t = threadIdx.x; t <= p; t += blockDim.x) top = fmaxf(top, weight[t]);
  top = block_reduce(top, reduce_scratch, kNegInf, [](float v) { return warp_max(v); });
  // top is finite: the query's own position is always visible.
  float total = 0.f;
  for (int64_t t = threadIdx.x; t <= p; t += blockDim.x) {
    const float e = expf(weight[t] - top);  // masked: exp(-inf) = 0
    weight[t] = e;
    total += e;
  }
  total = block_sum(total, reduce_scratch);  // synchronises: every weight[t] is written
  for (int64_t t = threadIdx.x; t <= p; t += blockDim.x) weight[t] = weight[t] / total;
  __syncthreads();
  for (int64_t d = threadIdx.x; d < dh; d += blockDim.x) {
    float acc = 0.f;
    for (int64_t t = 0; t <= p; ++t) acc += weight[t] * to_acc(values[t * dh + d]);
    o[d] = from_acc<T>(acc);
  }
}

// ---- SwiGLU ------------------------------------------------------------------------------------
// Grid-stride over the n elements.
template <class T>
__global__ void swiglu_kernel(T* __restrict__ gate, const T* __restrict__ up, int64_t n) {
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < n;
       i += int64_t(gridDim.x) * blockDim.x) {
    const float g = to_acc(gate[i]), u = to_acc(up[i]);
    gate[i] = from_acc<T>(g / (1.f + expf(-g)) * u);
  }
}

// ---- guided logits -----------------------------------------------------------------------------
// Block b = request b; threads stride over the vocabulary. __f*_rn: no contraction into an FMA,
// so the arithmetic is the CPU's u + (c - u) * s as written.
__global__ void guided_logits_kernel(const float* __restrict__ logits, int64_t batch, int64_t vocab,
                                     bool doubled, int64_t cfg_interval,
                                     const DecodeRequestParams* __restrict__ params,
                                     const int32_t* __restrict__ step, float* __restrict__ guided) {
  const int64_t b = blockIdx.x;
  const int64_t t = *step;
  const bool interval_on = t == 0 || !(cfg_interval > -1 && t - 1 > cfg_interval);
  const bool guide = doubled && interval_on && params[b].guided != 0;
  const float scale = params[b].cfg_scale;
  const float* c = logits + b * vocab;
  const float* u = logits + (batch + b) * vocab;  // read only when doubled
  float* g = guided + b * vocab;
  for (int64_t v = threadIdx.x; v < vocab; v += blockDim.x)
    g[v] = guide ? __fadd_rn(u[v], __fmul_rn(__fsub_rn(c[v], u[v]), scale)) : c[v];
}

// ---- the sampler -------------------------------------------------------------------------------
constexpr int kSampleThreads = 1024;
constexpr int kSampleWarps = kSampleThreads / 32;

// Float <-> an unsigned key in the same order (negative values flipped), for the radix select.
__device__ __forceinline__ uint32_t ordered_bits(float x) {
  const uint32_t b = __float_as_uint(x);
  return (b & 0x80000000u) ? ~b : (b | 0x80000000u);
}
__device__ __forceinline__ float from_ordered_bits(uint32_t key) {
  return __uint_as_float((key & 0x80000000u) ? (key & 0x7fffffffu) : ~key);
}
// generate/sampling.hpp's descending_key with the compacted index in place of the token: the
// compaction keeps token order, so ties still break by ascending token.
__device__ __forceinline__ unsigned long long descending_key(float value, int32_t index) {
  return (static_cast<unsigned long long>(~ordered_bits(value + 0.0f)) << 32) |
         static_cast<uint32_t>(index);
}

__host__ __device__ inline int64_t next_power_of_two(int64_t n) {
  int64_t p = 1;
  while (p < n) p <<= 1;
  return p;
}
__host__ __device__ constexpr int64_t align256(int64_t bytes) { return (bytes + 255) / 256 * 256; }

// Per request: scaled logits float [vocab], kept tokens int32 [vocab], kept weights double
// [vocab], sort keys uint64 [next_power_of_two(vocab)].
int64_t sample_scratch_per_request(int64_t vocab) {
  return align256(vocab * 4) + align256(vocab * 4) + align256(vocab * 8) +
         align256(next_power_of_two(vocab) * 8);
}

struct ArgMax {
  float value;
  int32_t index;  // -1: none yet
};
__device__ __forceinline__ ArgMax better_of(ArgMax a, ArgMax b) {
  if (a.index < 0) return b;
  if (b.index < 0) return a;
  return (b.value > a.value || (b.value == a.value && b.index < a.index)) ? b : a;
}
__device__ __forceinline__ ArgMax warp_argmax(ArgMax v) {
#pragma unroll
  for (int offset = 16; offset > 0; offset >>= 1) {
    ArgMax other{__shfl_xor_sync(0xffffffffu, v.value, offset),
                 __shfl_xor_sync(0xffffffffu, v.index, offset)};
    v = better_of(v, other);
  }
  return v;
}

// The k-th largest of values[0, n) (1 <= k <= n; -inf counts as a value) by a 4-pass radix select
// over 8-bit digits of ordered_bits, most significant first: each pass histograms the digit of the
// elements that share the digits chosen so far, and thread 0 walks the bins from the top. Integer
// counts: the result does not depend on the order of the atomics. blockDim.x is a multiple of 32.
__device__ float kth_largest(const float* values, int64_t n, int64_t k, unsigned* hist,
                             int64_t* shared_pick) {
  uint32_t prefix = 0, mask = 0;
  int64_t remaining = k;  // the rank wanted among the elements matching prefix, from the top
  for (int shift = 24; shift >= 0; shift -= 8) {
    for (int i = threadIdx.x; i < 256; i += blockDim.x) hist[i] = 0;
    __syncthreads();
    // Tiles of blockDim.x elements, so that every lane of a warp takes part in each match: lanes
    // with the same digit add their count with one atomic (most logits share the top digits).
    for (int64_t tile = 0; tile < n; tile += blockDim.x) {
      const int64_t i = tile + threadIdx.x;
      int bin = -1;
      if (i < n) {
        const uint32_t key = ordered_bits(values[i]);
        if ((key & mask) == prefix) bin = static_cast<int>((key >> shift) & 255u);
      }
      const unsigned peers = __match_any_sync(0xffffffffu, bin);
      if (bin >= 0 && static_cast<int>(threadIdx.x & 31) == __ffs(peers) - 1)
        atomicAdd(&hist[bin], static_cast<unsigned>(__popc(peers)));
    }
    __syncthreads();
    if (threadIdx.x == 0) {
      int64_t above = 0;
      int digit = 0;
      for (int d = 255; d >= 0; --d) {
        if (above + hist[d] >= remaining) {
          digit = d;
          break;
        }
        above += hist[d];
      }
      shared_pick[0] = digit;
      shared_pick[1] = remaining - above;
    }
    __syncthreads();
    prefix |= static_cast<uint32_t>(shared_pick[0]) << shift;
    mask |= 255u << shift;
    remaining = shared_pick[1];
    __syncthreads();  // shared_pick is rewritten by the next pass
  }
  return from_ordered_bits(prefix);
}

// Ascending bitonic sort of keys[0, n), n a power of two, by the whole block (global memory; the
// barrier after each pass orders the block's writes).
__device__ void bitonic_sort(unsigned long long* keys, int64_t n) {
  for (int64_t k = 2; k <= n; k <<= 1) {
    for (int64_t j = k >> 1; j > 0; j >>= 1) {
      for (int64_t i = threadIdx.x; i < n; i += blockDim.x) {
        const int64_t l = i ^ j;
        if (l > i) {
          const unsigned long long a = keys[i], c = keys[l];
          const bool ascending = (i & k) == 0;
          if ((a > c) == ascending) {
            keys[i] = c;
            keys[l] = a;
          }
        }
      }
      __syncthreads();
    }
  }
}

// Block b = request b, kSampleThreads threads. The stages (generate/sampling.hpp, Sampler::sample)
// and who does them:
//   1. argmax of the raw logits and their check (all threads, then a block reduction);
//   2. greedy: done. Else scaled = logits / temperature (all threads);
//   3. top-k threshold: radix select (all threads, thread 0 walks the histograms);
//   4. compaction of the kept entries in token order with weight exp(x - max) in double (a block
//      scan per tile of kSampleThreads tokens);
//   5. top-p: the total in token order (thread 0), the kept entries sorted descending (bitonic,
//      all threads), the first one over top_p * total found by thread 0, the rest zeroed;
//   6. min-p (all threads); 7. the total and the inverse CDF in token order (thread 0): the same
//      double additions in the same order as the CPU Sampler, zeros left out (adding 0 changes
//      nothing).
__global__ void __launch_bounds__(kSampleThreads)
    sample_kernel(const float* __restrict__ logits, int64_t vocab,
                  const DecodeRequestParams* __restrict__ params, const int32_t* __restrict__ step,
                  int64_t* __restrict__ tokens, int64_t stride, char* __restrict__ scratch,
                  int64_t scratch_per_request, int32_t* __restrict__ status) {
  __shared__ float best_value[kSampleWarps];
  __shared__ int32_t best_index[kSampleWarps];
  __shared__ unsigned hist[256];
  __shared__ int64_t pick[2];
  __shared__ int32_t warp_offset[kSampleWarps];
  __shared__ int32_t tile_total;
  __shared__ double shared_total;
  __shared__ int32_t shared_keep;

  const int64_t b = blockIdx.x;
  const int tid = threadIdx.x, lane = tid & 31, warp = tid >> 5;
  const float* x = logits + b * vocab;
  const DecodeRequestParams p = params[b];
  const int64_t t = *step;
  int64_t* out = tokens + b * stride + t;
  char* base = scratch + b * scratch_per_request;
  float* scaled = reinterpret_cast<float*>(base);
  int32_t* kept_token = reinterpret_cast<int32_t*>(base + align256(vocab * 4));
  double* kept_weight = reinterpret_cast<double*>(base + 2 * align256(vocab * 4));
  unsigned long long* keys =
      reinterpret_cast<unsigned long long*>(base + 2 * align256(vocab * 4) + align256(vocab * 8));

  // 1. argmax (first index on ties), skipping -inf; NaN and +inf are errors.
  ArgMax best{0.f, -1};
  bool bad = false;
  for (int64_t i = tid; i < vocab; i += blockDim.x) {
    const float v = x[i];
    if (isnan(v) || v == kPosInf)
      bad = true;
    else if (v != kNegInf && (best.index < 0 || v > best.value))
      best = {v, static_cast<int32_t>(i)};
  }
  bad = __syncthreads_or(bad);
  best = warp_argmax(best);
  if (lane == 0) {
    best_value[warp] = best.value;
    best_index[warp] = best.index;
  }
  __syncthreads();
  best = warp_argmax(ArgMax{best_value[lane], best_index[lane]});  // kSampleWarps == 32 lanes
  // From here on `bad` and `best` are the same in every thread: the early returns are uniform.
  if (bad || best.index < 0) {
    if (tid == 0) {
      atomicOr(status, bad ? kDecodeBadLogit : kDecodeAllMasked);
      *out = 0;
    }
    return;
  }
  if (p.greedy) {
    if (tid == 0) *out = best.index;
    return;
  }

  // 2. temperature (IEEE division, as the CPU's float logits / temperature).
  for (int64_t i = tid; i < vocab; i += blockDim.x) scaled[i] = x[i] / p.temperature;
  __syncthreads();
  const float top_scaled = scaled[best.index];
  if (!isfinite(top_scaled)) {
    if (tid == 0) {
      atomicOr(status, kDecodeOverflow);
      *out = best.index;
    }
    return;
  }

  // 3. top-k: keep every value >= the k-th largest.
  float threshold = kNegInf;
  if (p.top_k > 0 && p.top_k < vocab) threshold = kth_largest(scaled, vocab, p.top_k, hist, pick);

  // 4. compaction in token order.
  const double max_value = static_cast<double>(top_scaled);
  int32_t kept = 0;  // the same in every thread
  for (int64_t tile = 0; tile < vocab; tile += blockDim.x) {
    const int64_t i = tile + tid;
    const float v = i < vocab ? scaled[i] : kNegInf;
    const bool keep = i < vocab && v != kNegInf && !(v < threshold);
    const unsigned ballot = __ballot_sync(0xffffffffu, keep);
    const int before_in_warp = __popc(ballot & ((1u << lane) - 1u));
    if (lane == 0) warp_offset[warp] = __popc(ballot);
    __syncthreads();
    if (warp == 0) {  // exclusive scan of the 32 warp counts
      const int count = warp_offset[lane];
      int inclusive = count;
#pragma unroll
      for (int offset = 1; offset < 32; offset <<= 1) {
        const int other = __shfl_up_sync(0xffffffffu, inclusive, offset);
        if (lane >= offset) inclusive += other;
      }
      warp_offset[lane] = inclusive - count;
      if (lane == 31) tile_total = inclusive;
    }
    __syncthreads();
    if (keep) {
      const int32_t at = kept + warp_offset[warp] + before_in_warp;
      kept_token[at] = static_cast<int32_t>(i);
      kept_weight[at] = exp(static_cast<double>(v) - max_value);
    }
    kept += tile_total;
    __syncthreads();  // warp_offset and tile_total are rewritten by the next tile
  }

  // 5. top-p.
  if (p.top_p < 1.0) {
    const int64_t n = next_power_of_two(kept);
    if (tid == 0) {
      double total = 0.0;
      for (int32_t j = 0; j < kept; ++j) total += kept_weight[j];
      shared_total = total;
    }
    for (int64_t j = tid; j < n; j += blockDim.x)
      keys[j] = j < kept ? descending_key(scaled[kept_token[j]], static_cast<int32_t>(j))
                         : ~0ull;  // padding sorts last
    __syncthreads();
    bitonic_sort(keys, n);
    if (tid == 0) {
      const double mass_limit = p.top_p * shared_total;
      double before = 0.0;
      int32_t keep = kept;  // no crossing (top_p within rounding of 1): keep all, as the CPU
      for (int32_t j = 0; j < kept; ++j) {
        before += kept_weight[static_cast<uint32_t>(keys[j] & 0xffffffffull)];
        if (before > mass_limit) {
          keep = j + 1;
          break;
        }
      }
      shared_keep = keep;
    }
    __syncthreads();
    for (int64_t j = shared_keep + tid; j < kept; j += blockDim.x)
      kept_weight[static_cast<uint32_t>(keys[j] & 0xffffffffull)] = 0.0;
    __syncthreads();
  }

  // 6. min-p: p_i < min_p * p_max <=> weight < min_p (the largest weight is 1).
  if (p.min_p > 0.0) {
    for (int64_t j = tid; j < kept; j += blockDim.x)
      if (kept_weight[j] < p.min_p) kept_weight[j] = 0.0;
    __syncthreads();
  }

  // 7. one draw.
  if (tid == 0) {
    double total = 0.0;
    for (int32_t j = 0; j < kept; ++j) total += kept_weight[j];
    const double target = static_cast<double>(philox_uniform_at(p.seed, 0, t)) * total;
    double cumulative = 0.0;
    int32_t token = -1, last_nonzero = 0;
    for (int32_t j = 0; j < kept; ++j) {
      const double w = kept_weight[j];
      cumulative += w;
      if (cumulative > target) {
        token = kept_token[j];
        break;
      }
      if (w > 0.0) last_nonzero = kept_token[j];
    }
    *out = token >= 0 ? token : last_nonzero;
  }
}

__global__ void advance_kernel(int32_t* counters, int64_t prefix) {
  if (blockIdx.x == 0 && threadIdx.x == 0) {
    counters[0] += 1;
    counters[1] = static_cast<int32_t>(prefix + counters[0] - 1);
  }
}

}  // namespace
}  // namespace cuda::kernels

// ---- launchers ---------------------------------------------------------------------------------

template <class T>
void cuda::decode_embed_tokens(const T* table, int64_t vocab, int64_t dim, const int64_t* tokens,
                               int64_t batch, int64_t rows, int64_t stride, const int32_t* step,
                               T* out, int32_t* status) {
  MENTOR_CHECK(rows >= 0 && rows <= 0x7fffffff && batch >= 1, "cuda::decode_embed_tokens: rows ",
               rows, ", batch ", batch);
  if (rows == 0 || dim == 0) return;
  kernels::embed_tokens_kernel<<<static_cast<unsigned>(rows), 256, 0, stream()>>>(
      device_ptr(table), vocab, dim, tokens, batch, stride, step, device_ptr(out), status);
  MENTOR_CUDA_CHECK_LAUNCH("embed_tokens_kernel");
}

namespace {
void check_shape(const cuda::DecodeShape& s, const char* who) {
  MENTOR_CHECK(
      s.rows >= 0 && s.seq >= 1 && s.heads >= 1 && s.kv_heads >= 1 && s.heads % s.kv_heads == 0 &&
          s.head_dim >= 2 && s.head_dim % 2 == 0 && s.capacity >= 1 && s.prefix >= 0,
      who, ": bad shape (rows ", s.rows, ", seq ", s.seq, ", heads ", s.heads, ", kv_heads ",
      s.kv_heads, ", head_dim ", s.head_dim, ", capacity ", s.capacity, ", prefix ", s.prefix, ")");
  MENTOR_CHECK(s.rows * s.seq <= 0x7fffffff && s.rows * s.heads <= 0x7fffffff && s.seq <= 65535,
               who, ": ", s.rows, " rows of ", s.seq, " tokens exceed the launch grid");
}
}  // namespace

template <class T>
void cuda::decode_rope_cache_write(T* qkv, const float* table, T* k_cache, T* v_cache,
                                   const DecodeShape& shape, const int32_t* position,
                                   int32_t* status) {
  check_shape(shape, "cuda::decode_rope_cache_write");
  if (shape.rows == 0) return;
  kernels::rope_cache_kernel<<<static_cast<unsigned>(shape.rows * shape.seq), 128, 0, stream()>>>(
      device_ptr(qkv), table, device_ptr(k_cache), device_ptr(v_cache), shape, position, status);
  MENTOR_CUDA_CHECK_LAUNCH("rope_cache_kernel");
}

template <class T>
void cuda::decode_attention(const T* qkv, const T* k_cache, const T* v_cache,
                            const bool* prefix_valid, const DecodeShape& shape,
                            const int32_t* position, float scale, T* out) {
  check_shape(shape, "cuda::decode_attention");
  if (shape.rows == 0) return;
  const size_t shared = static_cast<size_t>(shape.head_dim + shape.capacity) * sizeof(float);
  MENTOR_CHECK(shared <= 48 * 1024, "cuda::decode_attention: head_dim ", shape.head_dim,
               " + capacity ", shape.capacity, " floats exceed 48 KiB of shared memory");
  const dim3 grid(static_cast<unsigned>(shape.rows * shape.heads),
                  static_cast<unsigned>(shape.seq));
  // Every key row starts a multiple of head_dim elements after the cache's first.
  const bool vector_keys =
      shape.head_dim % Pack16<device_t<T>>::kSize == 0 && is_aligned(k_cache, 16);
  kernels::attention_kernel<<<grid, kernels::kAttentionThreads, shared, stream()>>>(
      device_ptr(qkv), device_ptr(k_cache), device_ptr(v_cache), prefix_valid, shape, position,
      scale, vector_keys, device_ptr(out));
  MENTOR_CUDA_CHECK_LAUNCH("attention_kernel");
}

template <class T>
void cuda::decode_swiglu(T* gate, const T* up, int64_t n) {
  if (n <= 0) return;
  kernels::swiglu_kernel<<<grid_blocks(n, 256), 256, 0, stream()>>>(device_ptr(gate),
                                                                    device_ptr(up), n);
  MENTOR_CUDA_CHECK_LAUNCH("swiglu_kernel");
}

void cuda::decode_guided_logits(const float* logits, int64_t batch, int64_t vocab, bool doubled,
                                int64_t cfg_interval, const DecodeRequestParams* params,
                                const int32_t* step, float* guided) {
  MENTOR_CHECK(batch >= 0 && batch <= 0x7fffffff, "cuda::decode_guided_logits: batch ", batch);
  if (batch == 0 || vocab == 0) return;
  kernels::guided_logits_kernel<<<static_cast<unsigned>(batch), 256, 0, stream()>>>(
      logits, batch, vocab, doubled, cfg_interval, params, step, guided);
  MENTOR_CUDA_CHECK_LAUNCH("guided_logits_kernel");
}

size_t cuda::decode_sample_scratch_bytes(int64_t batch, int64_t vocab) {
  return static_cast<size_t>(batch * kernels::sample_scratch_per_request(vocab));
}

void cuda::decode_sample_tokens(const float* logits, int64_t batch, int64_t vocab,
                                const DecodeRequestParams* params, const int32_t* step,
                                int64_t* tokens, int64_t stride, void* scratch, int32_t* status) {
  MENTOR_CHECK(batch >= 0 && batch <= 0x7fffffff, "cuda::decode_sample_tokens: batch ", batch);
  MENTOR_CHECK(vocab >= 1 && vocab <= 0x7fffffff, "cuda::decode_sample_tokens: vocab ", vocab,
               " outside [1, 2^31 - 1]");
  if (batch == 0) return;
  kernels::sample_kernel<<<static_cast<unsigned>(batch), kernels::kSampleThreads, 0, stream()>>>(
      logits, vocab, params, step, tokens, stride, static_cast<char*>(scratch),
      kernels::sample_scratch_per_request(vocab), status);
  MENTOR_CUDA_CHECK_LAUNCH("sample_kernel");
}

void cuda::decode_advance(int32_t* counters, int64_t prefix) {
  kernels::advance_kernel<<<1, 1, 0, stream()>>>(counters, prefix);
  MENTOR_CUDA_CHECK_LAUNCH("advance_kernel");
}

#define MENTOR_INSTANTIATE_DECODE(T)                                                              \
  template void cuda::decode_embed_tokens<T>(const T*, int64_t, int64_t, const int64_t*, int64_t, \
                                             int64_t, int64_t, const int32_t*, T*, int32_t*);     \
  template void cuda::decode_rope_cache_write<T>(T*, const float*, T*, T*, const DecodeShape&,    \
                                                 const int32_t*, int32_t*);                       \
  template void cuda::decode_attention<T>(const T*, const T*, const T*, const bool*,              \
                                          const DecodeShape&, const int32_t*, float, T*);         \
  template void cuda::decode_swiglu<T>(T*, const T*, int64_t);
MENTOR_INSTANTIATE_DECODE(float)
MENTOR_INSTANTIATE_DECODE(bf16)
#undef MENTOR_INSTANTIATE_DECODE

}  // namespace mentor
