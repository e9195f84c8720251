#pragma once
// The tiny decoder of ../shared/bench/torch_cpu_ref.py as a mentor GPT (dim 256, 4 layers, 4 heads,
// vocabulary 1024, 32 condition tokens of dim 256, 8x8 = 64 image tokens), shared by the decode
// (bench_generate_cpu) and train-step (bench_train_cpu) benchmarks that run beside that script.
// The script has no dropout; guidance dropout is left at its default (it only acts in training).
#include "mentor/models/gpt_config.hpp"

namespace mentor::bench {

inline models::GPTConfig torch_cpu_ref_config() {
  models::GPTConfig c;
  c.model_type = models::GPTModelType::TextToImage;
  c.dim = 256;
  c.n_layer = 4;
  c.n_head = 4;
  c.multiple_of = 256;
  c.vocab_size = 1024;
  c.block_size = 64;
  c.cls_token_num = 32;
  c.caption_dim = 256;
  c.rope_prefix = RopePrefix::Identity;
  c.token_dropout_p = c.resid_dropout_p = c.ffn_dropout_p = 0.0;
  return c;
}

}  // namespace mentor::bench
