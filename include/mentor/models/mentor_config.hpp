#pragma once
// The configuration of the MENTOR model (models/mentor.hpp): its multimodal encoder, GPT decoder
// (MENTOR's GPT-XL, text-conditional, with the RoPE fix) and VQ tokenizer, the checks that join
// them, strict JSON reading and writing.
#include <nlohmann/json.hpp>

#include "mentor/core/error.hpp"
#include "mentor/io/json_config.hpp"
#include "mentor/models/gpt_config.hpp"
#include "mentor/models/multimodal_encoder_config.hpp"
#include "mentor/models/vq_config.hpp"

namespace mentor::models {

struct MentorConfig {
  MultimodalEncoderConfig encoder = MultimodalEncoderConfig::mentor();
  GPTConfig gpt = mentor_gpt();
  VQConfig vq = VQConfig::vq_16();

  // MENTOR's decoder: GPT-XL, t2i, 512 condition tokens of 2048 (T5-XL), 1024 image tokens
  // (512 px / 16), condition rows of the rotary table left unrotated (the RoPE fix).
  static GPTConfig mentor_gpt() {
    GPTConfig g = GPTConfig::preset("GPT-XL");
    g.model_type = GPTModelType::TextToImage;
    g.cls_token_num = 512;
    g.block_size = 1024;
    g.caption_dim = 2048;
    g.rope_prefix = RopePrefix::Identity;
    return g;
  }
  static MentorConfig mentor() { return MentorConfig{}; }

  void validate() const {
    encoder.validate();
    gpt.validate();
    vq.validate();
    MENTOR_CHECK(!gpt.is_c2i(), "MentorConfig: the GPT must be text-conditional (t2i)");
    MENTOR_CHECK(gpt.caption_dim == encoder.text.d_model, "MentorConfig: GPT caption_dim ",
                 gpt.caption_dim, " differs from the T5 d_model ", encoder.text.d_model);
    MENTOR_CHECK(gpt.vocab_size == vq.codebook_size, "MentorConfig: GPT vocab_size ",
                 gpt.vocab_size, " differs from the VQ codebook_size ", vq.codebook_size);
  }

  // {"encoder": MultimodalEncoderConfig JSON, "gpt": GPTConfig JSON, "vq": VQConfig JSON}; a
  // missing part keeps MENTOR's. Any other key, at any level, is an error naming its path (e.g.
  // MentorConfig.encoder.text_config).
  static MentorConfig from_json(const nlohmann::json& j) {
    io::JsonConfigReader r(j, "MentorConfig");
    MentorConfig c;
    if (const nlohmann::json* encoder = r.find("encoder"))
      c.encoder = MultimodalEncoderConfig::from_json(*encoder, r.child_path("encoder"));
    if (const nlohmann::json* gpt = r.find("gpt"))
      c.gpt = GPTConfig::from_json(*gpt, r.child_path("gpt"));
    if (const nlohmann::json* vq = r.find("vq"))
      c.vq = VQConfig::from_json(*vq, r.child_path("vq"));
    r.finish();
    c.validate();
    return c;
  }
  nlohmann::json to_json() const {
    return {{"encoder", encoder.to_json()}, {"gpt", gpt.to_json()}, {"vq", vq.to_json()}};
  }
};

}  // namespace mentor::models
