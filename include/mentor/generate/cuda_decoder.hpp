#pragma once
// The CUDA inference engine of the LlamaGen GPT (GPT<T, CUDA>, T = float or bf16): the mirror of
// CpuGeneration (cpu_decoder.hpp, generate.hpp) with the whole per-token loop on the device.
//
//   begin(requests)  checks the requests (the CPU's rules: generate.hpp, gather_conditions), runs
//                    the condition prefix eagerly into the KV cache and samples token 0 on the
//                    device;
//   step()           one image token for every request: embed the last tokens ([cond ; uncond]
//                    rows get the same token), every block (RMSNorm, fused qkv GEMM, RoPE and the
//                    cache write at the device position, decode attention with padded prefix slots
//                    hidden, wo GEMM + residual, RMSNorm, SwiGLU GEMMs + residual), the final norm
//                    and head, guided logits u + s (c - u), sampling (temperature, top-k, top-p,
//                    min-p, greedy; the draw for token t is Philox(seed, t) as the CPU Sampler's),
//                    the token written into the device token buffer, the counters advanced.
//                    The first step() of a batch shape runs eagerly (it also creates the GEMM
//                    plans), and captures the same work once in a cuda::Graph; every later step()
//                    is one replay. The kernels read the step and position from device counters,
//                    so one graph serves every token;
//   tokens()         the only host read: waits for the stream, reports what the device sampler
//                    could not throw for (NaN logits, ...), copies the tokens.
//
// Everything (KV caches of cls_token_num + num_tokens positions, activations, logits, sampler
// scratch, the token buffer, the counters) is allocated once, at construction; begin() uploads the
// conditions and parameters, step() allocates nothing. The work runs on the decoder's own stream.
// Float results match the CPU decoder to float rounding (the GPU's GEMMs sum in other orders), so
// greedy tokens agree unless two logits are within rounding of each other; bf16 stores weights,
// activations and the cache in bf16 with float accumulation, like the op path.
// The model must outlive the decoder and keep its weights (they are read in place).
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <string>
#include <type_traits>
#include <vector>

#include "mentor/backend/cuda/gemm.hpp"
#include "mentor/backend/cuda/graph.hpp"
#include "mentor/backend/cuda/stream.hpp"
#include "mentor/backend/launch/decode.hpp"
#include "mentor/backend/launch/embedding.hpp"
#include "mentor/backend/launch/norm.hpp"
#include "mentor/backend/launch/unary.hpp"
#include "mentor/core/cuda_api.hpp"
#include "mentor/core/error.hpp"
#include "mentor/generate/generate.hpp"
#include "mentor/generate/sampling.hpp"
#include "mentor/models/gpt.hpp"

namespace mentor::generate {

// A request's parameters as the device sampler reads them: the CPU Sampler's float temperature
// (clamped as upstream's max(temperature, 1e-5)), guidance decided in double as the CPU decides it.
inline cuda::DecodeRequestParams device_sampling_params(const SamplingParams& sampling,
                                                        double cfg_scale, uint64_t seed) {
  sampling.validate();
  cuda::DecodeRequestParams p;
  p.top_p = sampling.top_p;
  p.min_p = sampling.min_p;
  p.seed = seed;
  p.top_k = sampling.top_k;
  p.temperature = std::max(static_cast<float>(sampling.temperature), detail::kMinTemperature);
  p.cfg_scale = static_cast<float>(cfg_scale);
  p.guided = cfg_scale > 1.0 ? 1 : 0;
  p.greedy = sampling.greedy ? 1 : 0;
  return p;
}

template <FloatingElement T>
class CudaDecoder {
  static_assert(std::is_same_v<T, float> || std::is_same_v<T, bf16>,
                "CudaDecoder: the CUDA kernels exist for float and bf16");

 public:
  using Model = models::GPT<T, CUDA>;

  // For up to max_requests requests of num_tokens image tokens each. With `guidance` the buffers
  // hold the doubled batch [cond ; uncond] (2 max_requests rows); without it a guided request is
  // an error. cfg_interval as upstream (-1: guidance on every token).
  CudaDecoder(const Model& model, int64_t max_requests, int64_t num_tokens, bool guidance = true,
              int64_t cfg_interval = -1)
      : model_(model),
        config_(model.config()),
        max_requests_(max_requests),
        max_rows_(guidance ? 2 * max_requests : max_requests),
        num_tokens_(num_tokens),
        cfg_interval_(cfg_interval),
        guidance_(guidance) {
    MENTOR_CHECK(max_requests >= 1, "CudaDecoder: max_requests ", max_requests,
                 " must be positive");
    MENTOR_CHECK(num_tokens >= 1 && num_tokens <= config_.block_size, "CudaDecoder: num_tokens ",
                 num_tokens, " outside [1, block_size ", config_.block_size, "]");
    MENTOR_CHECK(cfg_interval >= -1, "CudaDecoder: cfg_interval ", cfg_interval,
                 " must be -1 (always) or a step index");
    MENTOR_CHECK(config_.vocab_size <= 0x7fffffff, "CudaDecoder: vocab_size ", config_.vocab_size,
                 " exceeds the sampler's int32 token ids");
    dim_ = config_.dim;
    heads_ = config_.n_head;
    kv_heads_ = config_.kv_heads();
    head_dim_ = config_.head_dim();
    hidden_ = config_.ffn_hidden_dim();
    vocab_ = config_.vocab_size;
    prefix_ = config_.cls_token_num;
    capacity_ = prefix_ + num_tokens;
    qkv_width_ = (heads_ + 2 * kv_heads_) * head_dim_;
    collect_weights();

    const int64_t widest = max_rows_ * prefix_;  // the prefill is the widest call
    x_ = Tensor<T, CUDA>::zeros({widest, dim_});
    normed_ = Tensor<T, CUDA>::zeros({widest, dim_});
    qkv_ = Tensor<T, CUDA>::zeros({widest, qkv_width_});
    attended_ = Tensor<T, CUDA>::zeros({widest, heads_ * head_dim_});
    gate_ = Tensor<T, CUDA>::zeros({widest, std::max(hidden_, dim_)});
    up_ = Tensor<T, CUDA>::zeros({widest, std::max(hidden_, dim_)});
    if (config_.is_c2i())
      labels_ = Tensor<int64_t, CUDA>::zeros({max_rows_});
    else
      caption_ = Tensor<T, CUDA>::zeros({widest, config_.caption_dim});
    prefix_valid_ = Tensor<bool, CUDA>::ones({max_rows_, prefix_});
    for (int64_t l = 0; l < config_.n_layer; ++l) {
      k_cache_.push_back(Tensor<T, CUDA>::zeros({max_rows_, kv_heads_, capacity_, head_dim_}));
      v_cache_.push_back(Tensor<T, CUDA>::zeros({max_rows_, kv_heads_, capacity_, head_dim_}));
    }
    logits_ = Tensor<float, CUDA>::zeros({max_rows_, vocab_});
    guided_ = Tensor<float, CUDA>::zeros({max_requests_, vocab_});
    tokens_ = Tensor<int64_t, CUDA>::zeros({max_requests_, num_tokens_});
    counters_ = Tensor<int32_t, CUDA>::zeros({2});
    status_ = Tensor<int32_t, CUDA>::zeros({1});
    params_ = Tensor<int64_t, CUDA>::zeros({words_for(max_requests_ * sizeof(Params))});
    scratch_ = Tensor<int64_t, CUDA>::zeros(
        {words_for(cuda::decode_sample_scratch_bytes(max_requests_, vocab_))});
    host_params_.resize(static_cast<size_t>(max_requests_));
    // The buffers and the model were written on the legacy default stream; the decoder's own
    // stream does not wait for it.
    cuda::synchronize();
  }

  ~CudaDecoder() {
    try {
      stream_.synchronize();  // the buffers return to the allocator only after the work on them
    } catch (...) {
    }
  }
  CudaDecoder(const CudaDecoder&) = delete;
  CudaDecoder& operator=(const CudaDecoder&) = delete;

  int64_t vocab_size() const { return vocab_; }
  int64_t num_tokens() const { return num_tokens_; }
  int64_t max_requests() const { return max_requests_; }
  int64_t batch() const { return batch_; }
  int64_t rows() const { return rows_; }  // 2 batch under guidance, else batch
  int64_t produced() const { return produced_; }
  // The sequence position the next step() feeds (cls_token_num + produced - 1).
  int64_t position() const { return prefix_ + produced_ - 1; }
  bool graph_captured() const { return graph_.captured(); }
  const cuda::Stream& stream() const { return stream_; }

  // Checks the requests, runs the prefill and samples every request's token 0 (on the device).
  void begin(const std::vector<GenerationRequest>& requests) {
    MENTOR_CHECK(!requests.empty() && static_cast<int64_t>(requests.size()) <= max_requests_,
                 "CudaDecoder: ", requests.size(), " requests outside [1, max_requests ",
                 max_requests_, "]");
    cuda::StreamGuard on(stream_);
    const detail::Conditions c = detail::gather_conditions(model_, requests, request_params_);
    MENTOR_CHECK(!c.doubled || guidance_, "CudaDecoder: a request has cfg_scale > 1 but the ",
                 "decoder was built without guidance (construct it with guidance = true)");
    batch_ = c.batch;
    rows_ = c.rows;
    doubled_ = c.doubled;
    produced_ = 0;
    upload_params();
    const std::vector<int32_t> counters{0, 0};  // the prefill's tokens sit at positions 0..
    cuda::copy_host_to_device(counters_.data(), counters.data(), sizeof(int32_t) * 2);
    const int32_t clear = 0;
    cuda::copy_host_to_device(status_.data(), &clear, sizeof(clear));
    std::vector<uint8_t> valid(static_cast<size_t>(rows_ * prefix_), 1);
    if (!config_.is_c2i()) valid = c.valid;
    static_assert(sizeof(bool) == 1, "the prefix mask is uploaded as bytes");
    cuda::copy_host_to_device(prefix_valid_.data(), valid.data(), valid.size());
    embed_condition(c);
    run_layers(rows_, prefix_);
    // The head reads each row's last prefix position: rows rows_ apart by prefix_ * dim_.
    cuda::rms_norm_forward<T>(x_.data(), norm_, normed_.data(), rows_ * prefix_, dim_, eps());
    head(normed_.data() + (prefix_ - 1) * dim_, prefix_ * dim_);
    draw();
    produced_ = 1;
  }

  // One more token for every request (see the file comment). The first call for a batch shape is
  // eager and captures the graph; later ones replay it.
  void step() {
    check_can_step("step");
    cuda::StreamGuard on(stream_);
    if (!graph_.captured() || graph_batch_ != batch_ || graph_doubled_ != doubled_) {
      enqueue_step();
      graph_.capture(stream_, [&] { enqueue_step(); });
      graph_batch_ = batch_;
      graph_doubled_ = doubled_;
    } else {
      graph_.replay(stream_.handle());
    }
    ++produced_;
  }

  // The same step without the graph (the reference the graph is tested against).
  void step_eager() {
    check_can_step("step_eager");
    cuda::StreamGuard on(stream_);
    enqueue_step();
    ++produced_;
  }

  // One more token; false once num_tokens are there.
  bool next() {
    if (produced_ >= num_tokens_) return false;
    step();
    return produced_ < num_tokens_;
  }

  // Tokens [batch, produced] of the last begin(): waits for the device; throws when the device
  // sampler met logits the CPU Sampler rejects.
  Tensor<int64_t, CPU> tokens() const {
    MENTOR_CHECK(batch_ > 0, "CudaDecoder::tokens: no begin() yet");
    cuda::StreamGuard on(stream_.handle());
    check_status();
    std::vector<int64_t> all(static_cast<size_t>(batch_ * num_tokens_));
    cuda::copy_device_to_host(all.data(), tokens_.data(), all.size() * sizeof(int64_t));
    std::vector<int64_t> out;
    out.reserve(static_cast<size_t>(batch_ * produced_));
    for (int64_t b = 0; b < batch_; ++b)
      out.insert(out.end(), all.begin() + b * num_tokens_,
                 all.begin() + b * num_tokens_ + produced_);
    return Tensor<int64_t, CPU>::from_vector(out, Shape{batch_, produced_});
  }

  // begin() and step() to the end, then tokens(): the host waits only once.
  Tensor<int64_t, CPU> run(const std::vector<GenerationRequest>& requests) {
    begin(requests);
    while (next()) {
    }
    return tokens();
  }

  // The float logits [rows, vocab] of the last prefill or step (row b: request b's conditional
  // branch, batch + b its unconditional one), and the guided logits [batch, vocab] token
  // produced() - 1 was drawn from. Both wait for the device (for tests and diagnostics).
  std::vector<float> logits() const { return read_floats(logits_, rows_); }
  std::vector<float> guided_logits() const { return read_floats(guided_, batch_); }

 private:
  using Params = cuda::DecodeRequestParams;
  struct LayerWeights {
    const T *attention_norm, *wqkv, *wo, *ffn_norm, *w1, *w3, *w2;
  };

  static int64_t words_for(size_t bytes) {
    return std::max<int64_t>(1, static_cast<int64_t>((bytes + 7) / 8));
  }
  template <class U>
  static const U* weight_of(const Tensor<U, CUDA>& t, const char* name) {
    MENTOR_CHECK(t.defined() && t.is_contiguous(), "CudaDecoder: weight ", name,
                 " is undefined or not contiguous");
    return t.data();
  }
  float eps() const { return static_cast<float>(config_.norm_eps); }

  void collect_weights() {
    for (const auto& layer : model_.layers)
      layers_.push_back({weight_of(layer.attention_norm.weight, "attention_norm"),
                         weight_of(layer.attention.wqkv.weight, "attention.wqkv"),
                         weight_of(layer.attention.wo.weight, "attention.wo"),
                         weight_of(layer.ffn_norm.weight, "ffn_norm"),
                         weight_of(layer.feed_forward.w1.weight, "feed_forward.w1"),
                         weight_of(layer.feed_forward.w3.weight, "feed_forward.w3"),
                         weight_of(layer.feed_forward.w2.weight, "feed_forward.w2")});
    norm_ = weight_of(model_.norm.weight, "norm");
    output_ = weight_of(model_.output.weight, "output");
    tok_table_ = weight_of(model_.tok_embeddings.weight, "tok_embeddings");
    rope_ = weight_of(model_.freqs_cis, "freqs_cis");
    table_rows_ = model_.freqs_cis.size(0);
    MENTOR_CHECK(table_rows_ >= capacity_, "CudaDecoder: the rotary table has ", table_rows_,
                 " rows for ", capacity_, " positions");
    if (config_.is_c2i()) {
      label_table_ = weight_of(model_.label_embedder().embedding_table.weight,
                               "cls_embedding.embedding_table");
      label_rows_ = model_.label_embedder().embedding_table.weight.size(0);
    } else {
      const auto& embedder = model_.caption_embedder();
      cap_fc1_ = weight_of(embedder.cap_proj.fc1.weight, "cls_embedding.cap_proj.fc1");
      cap_fc2_ = weight_of(embedder.cap_proj.fc2.weight, "cls_embedding.cap_proj.fc2");
    }
  }

  void upload_params() {
    for (int64_t b = 0; b < batch_; ++b) {
      const detail::RequestParams& r = request_params_[static_cast<size_t>(b)];
      host_params_[static_cast<size_t>(b)] =
          device_sampling_params(r.sampling, r.cfg_scale, r.seed);
    }
    cuda::copy_host_to_device(params_.data(), host_params_.data(),
                              static_cast<size_t>(batch_) * sizeof(Params));
  }

  // x_ [rows * prefix, dim] = the condition embeddings of every row.
  void embed_condition(const detail::Conditions& c) {
    if (config_.is_c2i()) {
      for (int64_t r = 0; r < rows_; ++r) {
        const int64_t label = c.labels[static_cast<size_t>(r)];
        MENTOR_CHECK(label >= 0 && label < label_rows_, "CudaDecoder: class label ", label,
                     " outside the label table [0, ", label_rows_, ")");
      }
      cuda::copy_host_to_device(labels_.data(), c.labels.data(),
                                static_cast<size_t>(rows_) * sizeof(int64_t));
      cuda::embedding_forward<T>(label_table_, label_rows_, dim_, labels_.data(), rows_, x_.data());
      return;
    }
    // cap_proj: fc2(gelu_tanh(fc1(caption))), no biases.
    const int64_t n = rows_ * prefix_, width = config_.caption_dim;
    const Tensor<T, CPU> host =
        Tensor<float, CPU>::from_vector(c.caption, Shape{n, width}).template to<T>();
    cuda::copy_host_to_device(caption_.data(), host.data(),
                              static_cast<size_t>(n * width) * sizeof(T));
    linear(caption_.data(), n, width, cap_fc1_, dim_, gate_.data(), false);
    cuda::unary<UnaryOp::GeluTanh, T>(gate_.data(), up_.data(), n * dim_, 0.f);
    linear(up_.data(), n, dim_, cap_fc2_, dim_, x_.data(), false);
  }

  // y [rows, out] (+)= x [rows, in] · w [out, in]^T (a Linear without bias; accumulate: the
  // residual add inside the GEMM).
  static void linear(const T* x, int64_t rows, int64_t in, const T* w, int64_t out, T* y,
                     bool accumulate) {
    cuda::gemm<T>(false, true, rows, out, in, 1.f, x, in, w, in, accumulate ? 1.f : 0.f, y, out);
  }

  // Every block over x_'s rows * seq token states at positions *counters_[1] + s, filling the
  // caches.
  void run_layers(int64_t rows, int64_t seq) {
    const int64_t n = rows * seq;
    cuda::DecodeShape shape;
    shape.rows = rows;
    shape.seq = seq;
    shape.heads = heads_;
    shape.kv_heads = kv_heads_;
    shape.head_dim = head_dim_;
    shape.capacity = capacity_;
    shape.prefix = prefix_;
    shape.table_rows = table_rows_;
    const float scale = 1.0f / std::sqrt(static_cast<float>(head_dim_));
    const int32_t* position = counters_.data() + 1;
    for (size_t l = 0; l < layers_.size(); ++l) {
      const LayerWeights& w = layers_[l];
      cuda::rms_norm_forward<T>(x_.data(), w.attention_norm, normed_.data(), n, dim_, eps());
      linear(normed_.data(), n, dim_, w.wqkv, qkv_width_, qkv_.data(), false);
      cuda::decode_rope_cache_write<T>(qkv_.data(), rope_, k_cache_[l].data(), v_cache_[l].data(),
                                       shape, position, status_.data());
      cuda::decode_attention<T>(qkv_.data(), k_cache_[l].data(), v_cache_[l].data(),
                                prefix_valid_.data(), shape, position, scale, attended_.data());
      linear(attended_.data(), n, heads_ * head_dim_, w.wo, dim_, x_.data(), true);
      cuda::rms_norm_forward<T>(x_.data(), w.ffn_norm, normed_.data(), n, dim_, eps());
      linear(normed_.data(), n, dim_, w.w1, hidden_, gate_.data(), false);
      linear(normed_.data(), n, dim_, w.w3, hidden_, up_.data(), false);
      cuda::decode_swiglu<T>(gate_.data(), up_.data(), n * hidden_);
      linear(gate_.data(), n, hidden_, w.w2, dim_, x_.data(), true);
    }
  }

  // logits_ [rows_, vocab] (float) from normed rows at x, rows `stride` elements apart.
  void head(const T* x, int64_t stride) {
    if constexpr (std::is_same_v<T, float>) {
      cuda::gemm<float>(false, true, rows_, vocab_, dim_, 1.f, x, stride, output_, dim_, 0.f,
                        logits_.data(), vocab_);
    } else {  // bf16 operands, float logits straight from the accumulators
      cuda::gemm_strided_batched_f32out(false, true, 1, rows_, vocab_, dim_, 1.f, x, stride, 0,
                                        output_, dim_, 0, 0.f, logits_.data(), vocab_, 0);
    }
  }

  // Guided logits, token *step of every request, counters advanced.
  void draw() {
    const auto* params = reinterpret_cast<const Params*>(params_.data());
    cuda::decode_guided_logits(logits_.data(), batch_, vocab_, doubled_, cfg_interval_, params,
                               counters_.data(), guided_.data());
    cuda::decode_sample_tokens(guided_.data(), batch_, vocab_, params, counters_.data(),
                               tokens_.data(), num_tokens_, scratch_.data(), status_.data());
    cuda::decode_advance(counters_.data(), prefix_);
  }

  // One decode step, all on the current stream, nothing read back: what the graph captures.
  void enqueue_step() {
    cuda::decode_embed_tokens<T>(tok_table_, vocab_, dim_, tokens_.data(), batch_, rows_,
                                 num_tokens_, counters_.data(), x_.data(), status_.data());
    run_layers(rows_, 1);
    cuda::rms_norm_forward<T>(x_.data(), norm_, normed_.data(), rows_, dim_, eps());
    head(normed_.data(), dim_);
    draw();
  }

  void check_can_step(const char* what) const {
    MENTOR_CHECK(batch_ > 0, "CudaDecoder::", what, ": no begin() yet");
    MENTOR_CHECK(produced_ < num_tokens_, "CudaDecoder::", what, ": all ", num_tokens_,
                 " tokens are produced (the cache holds cls_token_num + num_tokens positions)");
  }

  void check_status() const {
    int32_t status = 0;
    cuda::copy_device_to_host(&status, status_.data(), sizeof(status));
    if (status == 0) return;
    std::string what;
    if (status & cuda::kDecodeBadLogit) what += " a NaN or +inf logit;";
    if (status & cuda::kDecodeAllMasked) what += " every logit of a row is -inf;";
    if (status & cuda::kDecodeOverflow)
      what += " the largest logit overflows float when divided by the temperature;";
    if (status & cuda::kDecodeBadToken) what += " a fed token outside the vocabulary;";
    if (status & cuda::kDecodeBadPosition) what += " a position outside the cache;";
    throw Error(mentor::detail::concat("CudaDecoder: the device reported (status ", status,
                                       "):", what, " the tokens are not valid"));
  }

  std::vector<float> read_floats(const Tensor<float, CUDA>& t, int64_t rows) const {
    MENTOR_CHECK(batch_ > 0, "CudaDecoder: no begin() yet");
    cuda::StreamGuard on(stream_.handle());
    std::vector<float> out(static_cast<size_t>(rows * vocab_));
    cuda::copy_device_to_host(out.data(), t.data(), out.size() * sizeof(float));
    return out;
  }

  cuda::Stream stream_;  // first: destroyed last, after the graph and the buffers
  const Model& model_;
  models::GPTConfig config_;
  int64_t max_requests_ = 0, max_rows_ = 0, num_tokens_ = 0, cfg_interval_ = -1;
  bool guidance_ = true;
  int64_t dim_ = 0, heads_ = 0, kv_heads_ = 0, head_dim_ = 0, hidden_ = 0, vocab_ = 0;
  int64_t prefix_ = 0, capacity_ = 0, qkv_width_ = 0, table_rows_ = 0, label_rows_ = 0;
  std::vector<LayerWeights> layers_;
  const T *norm_ = nullptr, *output_ = nullptr, *tok_table_ = nullptr, *label_table_ = nullptr;
  const T *cap_fc1_ = nullptr, *cap_fc2_ = nullptr;
  const float* rope_ = nullptr;

  Tensor<T, CUDA> x_, normed_, qkv_, attended_, gate_, up_, caption_;
  std::vector<Tensor<T, CUDA>> k_cache_, v_cache_;
  Tensor<int64_t, CUDA> labels_, tokens_, params_, scratch_;
  Tensor<bool, CUDA> prefix_valid_;
  Tensor<float, CUDA> logits_, guided_;
  Tensor<int32_t, CUDA> counters_,
      status_;  // counters: {step, position}; status: DecodeStatus bits

  std::vector<detail::RequestParams> request_params_;
  std::vector<Params> host_params_;
  int64_t batch_ = 0, rows_ = 0, produced_ = 0;
  bool doubled_ = false;

  cuda::Graph graph_;
  int64_t graph_batch_ = 0;
  bool graph_doubled_ = false;
};

// One call: tokens [requests, num_tokens] generated on the GPU (see CudaDecoder).
template <FloatingElement T>
Tensor<int64_t, CPU> generate_cuda(const models::GPT<T, CUDA>& model,
                                   const std::vector<GenerationRequest>& requests,
                                   int64_t num_tokens, int64_t cfg_interval = -1) {
  CudaDecoder<T> decoder(model, static_cast<int64_t>(requests.size()), num_tokens, true,
                         cfg_interval);
  return decoder.run(requests);
}

}  // namespace mentor::generate
