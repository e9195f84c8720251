#pragma once
// The CUDA launchers of the graph-captured decoder (generate/cuda_decoder.hpp): plain C++
// declarations (no CUDA header, no tensor), defined in src/cuda/decode.cu. All pointers are device
// pointers to contiguous row-major data; work is queued on the current stream.
//
// Why positions are device pointers: one decode step is captured once in a CUDA graph and replayed
// for every token, so nothing that changes per token may be a kernel argument. The decoder keeps
// two int32 counters on the device, `step` (the image tokens produced so far, t) and `position`
// (the sequence position the next fed token takes); the kernels read them, and advance_decode()
// moves them on at the end of each step.
#include <cstdint>

#include "mentor/core/bf16.hpp"

namespace mentor::cuda {

// One request's sampling parameters as the sampler kernel reads them (generate/sampling.hpp's
// SamplingParams plus guidance and the seed), prepared on the host by the decoder.
struct DecodeRequestParams {
  double top_p = 1.0;  // 1: off
  double min_p = 0.0;  // 0: off
  uint64_t seed = 0;
  int64_t top_k = 0;         // 0 or >= vocab: off
  float temperature = 1.0f;  // already max(float(temperature), 1e-5), as the CPU Sampler
  float cfg_scale = 1.0f;    // float(cfg_scale), as the CPU's guided logits
  int32_t guided = 0;        // cfg_scale > 1 (in double, as the CPU decides it)
  int32_t greedy = 0;        // argmax of the (guided) logits
};

// Bits of the decoder's device status word: the sampler cannot throw, so it records what the CPU
// Sampler would have thrown for, and the host reports it when it reads the tokens.
enum DecodeStatus : int32_t {
  kDecodeBadLogit = 1,      // a NaN or +inf logit
  kDecodeAllMasked = 2,     // every logit of a row is -inf
  kDecodeOverflow = 4,      // the largest logit overflows float when divided by the temperature
  kDecodeBadToken = 8,      // a fed token outside the vocabulary (a zero row was used)
  kDecodeBadPosition = 16,  // a position outside the cache or the rotary table (nothing written)
};

// The geometry of one decoder call: `rows` sequences of `seq` new tokens each (seq = cls_token_num
// for the prefill, 1 for a decode step); the token (r, s) sits at position *position + s. The KV
// caches are [max rows, kv_heads, capacity, head_dim]; qkv rows are [heads + 2 kv_heads, head_dim]
// (q heads, then k heads, then v heads: the split of the fused wqkv projection).
struct DecodeShape {
  int64_t rows = 0, seq = 1, heads = 0, kv_heads = 0, head_dim = 0;
  int64_t capacity = 0;    // cache positions per sequence (cls_token_num + image tokens)
  int64_t prefix = 0;      // cls_token_num: positions below it are condition slots
  int64_t table_rows = 0;  // rows of the rotary table
};

// out[r, :] = table[tokens[(r % batch) * stride + *step - 1], :] for r < rows: row r (and its
// unconditional twin r + batch under guidance) is fed its request's last token. A token outside
// [0, vocab) gives a zero row and sets kDecodeBadToken in *status.
template <class T>
void decode_embed_tokens(const T* table, int64_t vocab, int64_t dim, const int64_t* tokens,
                         int64_t batch, int64_t rows, int64_t stride, const int32_t* step, T* out,
                         int32_t* status);

// q and k of every token rotated by the rotary table row of its position (interleaved pairs, in
// float: x0 c - x1 s, x1 c + x0 s); q in place in qkv [rows, seq, heads + 2 kv_heads, head_dim],
// k (rotated) and v written to the caches at [r, kv head, position, :].
template <class T>
void decode_rope_cache_write(T* qkv, const float* table, T* k_cache, T* v_cache,
                             const DecodeShape& shape, const int32_t* position, int32_t* status);

// One query per (sequence, head, new token) over the cache positions t <= p (p = the query's
// position) that are image tokens (t >= prefix), real condition tokens (prefix_valid[r, t]) or p
// itself: a padded condition slot is hidden from every query but attends to itself, as the CPU
// decoder and upstream's mask. Softmax of scale * q.k in float. q read from qkv (as above), out
// [rows, seq, heads, head_dim]. prefix_valid [rows, prefix] (null: every slot real).
template <class T>
void decode_attention(const T* qkv, const T* k_cache, const T* v_cache, const bool* prefix_valid,
                      const DecodeShape& shape, const int32_t* position, float scale, T* out);

// gate[i] = silu(gate[i]) * up[i] in float, for i < n (SwiGLU's product).
template <class T>
void decode_swiglu(T* gate, const T* up, int64_t n);

// guided[b, :] for b < batch from logits [rows, vocab] (row b: request b's conditional branch,
// row batch + b its unconditional one when `doubled`): u + (c - u) * cfg_scale where the request is
// guided and the step is inside the guidance interval (t == 0, or cfg_interval == -1, or
// t - 1 <= cfg_interval), else c. Float arithmetic without contraction, as written.
void decode_guided_logits(const float* logits, int64_t batch, int64_t vocab, bool doubled,
                          int64_t cfg_interval, const DecodeRequestParams* params,
                          const int32_t* step, float* guided);

// The token t = *step of every request b < batch from its logits row [vocab] (generate/
// sampling.hpp, Sampler::sample): greedy = argmax (first on ties); otherwise logits / temperature,
// top-k (every value >= the k-th largest), top-p (the first token over the threshold kept), min-p,
// then the inverse CDF at u = philox_uniform_at(seed, 0, t) over the double weights in token
// order. Writes tokens[b * stride + t]. `scratch` holds decode_sample_scratch_bytes(batch, vocab).
// One thread block per request.
void decode_sample_tokens(const float* logits, int64_t batch, int64_t vocab,
                          const DecodeRequestParams* params, const int32_t* step, int64_t* tokens,
                          int64_t stride, void* scratch, int32_t* status);
size_t decode_sample_scratch_bytes(int64_t batch, int64_t vocab);

// counters = {step, position}: step += 1, position = prefix + step - 1 (the position the token
// just produced is fed at).
void decode_advance(int32_t* counters, int64_t prefix);

}  // namespace mentor::cuda
