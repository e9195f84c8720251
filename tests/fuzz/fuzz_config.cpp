// libFuzzer: every config's from_json (and validate, where a config has one) on the bytes parsed
// as JSON: GPTConfig, VQConfig, T5Config, CLIPVisionConfig, MultimodalEncoderConfig, MentorConfig,
// TrainerOptions and the learning-rate schedules. Each is also handed its own to_json back.
#include "fuzz_common.hpp"
#include "mentor/core/error.hpp"
#include "mentor/models/clip.hpp"
#include "mentor/models/gpt.hpp"
#include "mentor/models/mentor.hpp"
#include "mentor/models/multimodal_encoder.hpp"
#include "mentor/models/t5.hpp"
#include "mentor/models/vq.hpp"
#include "mentor/train/schedule.hpp"
#include "mentor/train/trainer.hpp"

namespace {

template <class Config, class Parse>
void try_config(const nlohmann::json& j, Parse parse) {
  try {
    Config c = parse(j);
    if constexpr (requires { c.validate(); }) c.validate();
    if constexpr (requires { c.to_json(); })
      (void)parse(c.to_json());  // a valid config round-trips
  } catch (const mentor::Error&) {
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  // Not a config question: nlohmann's own parse errors are excluded here (allow_exceptions=false).
  const nlohmann::json j = nlohmann::json::parse(data, data + size, nullptr, false);
  if (j.is_discarded()) return 0;
  using namespace mentor;
  try_config<models::GPTConfig>(
      j, [](const nlohmann::json& x) { return models::GPTConfig::from_json(x); });
  try_config<models::VQConfig>(
      j, [](const nlohmann::json& x) { return models::VQConfig::from_json(x); });
  try_config<models::T5Config>(
      j, [](const nlohmann::json& x) { return models::T5Config::from_json(x); });
  try_config<models::CLIPVisionConfig>(
      j, [](const nlohmann::json& x) { return models::CLIPVisionConfig::from_json(x); });
  try_config<models::MultimodalEncoderConfig>(
      j, [](const nlohmann::json& x) { return models::MultimodalEncoderConfig::from_json(x); });
  try_config<models::MentorConfig>(
      j, [](const nlohmann::json& x) { return models::MentorConfig::from_json(x); });
  try_config<train::TrainerOptions>(
      j, [](const nlohmann::json& x) { return train::TrainerOptions::from_json(x); });
  try {
    (void)train::schedule_from_json(j);
  } catch (const Error&) {
  }
  return 0;
}
