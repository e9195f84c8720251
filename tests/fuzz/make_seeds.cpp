// Writes the seed corpora that are not test goldens: every config's to_json (defaults and
// presets) for fuzz_config, and the manifest of a small real checkpoint for
// fuzz_checkpoint_manifest. Usage: make_seeds <corpus root>; tools/fuzz.sh runs it.
#include <filesystem>
#include <fstream>
#include <iostream>
#include <string>

#include "mentor/models/clip.hpp"
#include "mentor/models/gpt.hpp"
#include "mentor/models/mentor.hpp"
#include "mentor/models/multimodal_encoder.hpp"
#include "mentor/models/t5.hpp"
#include "mentor/models/vq.hpp"
#include "mentor/train/checkpoint.hpp"
#include "mentor/train/schedule.hpp"
#include "mentor/train/trainer.hpp"
#include "seed_checkpoint.hpp"

namespace fs = std::filesystem;

int main(int argc, char** argv) {
  if (argc != 2) {
    std::cerr << "usage: make_seeds <corpus root>\n";
    return 2;
  }
  const fs::path root = argv[1];
  using namespace mentor;
  const fs::path configs = root / "config";
  fs::create_directories(configs);
  auto put = [&](const std::string& name, const nlohmann::json& j) {
    std::ofstream(configs / (name + ".json")) << j.dump() << "\n";
  };
  put("gpt_default", models::GPTConfig{}.to_json());
  for (const auto& [name, sizes] : models::GPTConfig::presets()) {
    (void)sizes;
    put("gpt_" + name, models::GPTConfig::preset(name).to_json());
    put("gpt_named_" + name, nlohmann::json{{"gpt_model", name}});
  }
  put("vq_16", models::VQConfig::vq_16().to_json());
  put("vq_8", models::VQConfig::vq_8().to_json());
  put("t5_default", models::T5Config{}.to_json());
  put("clip_default", models::CLIPVisionConfig{}.to_json());
  put("encoder_default", models::MultimodalEncoderConfig{}.to_json());
  put("mentor_default", models::MentorConfig{}.to_json());
  put("trainer_default", train::TrainerOptions{}.to_json());

  const fs::path manifests = root / "checkpoint_manifest";
  const fs::path work = root / ".checkpoint_seed";
  fs::create_directories(manifests);
  const fs::path stem = fuzz::write_seed_checkpoint(work);
  fs::copy_file(train::manifest_path(stem), manifests / "step-7.json",
                fs::copy_options::overwrite_existing);
  fs::remove_all(work);
  return 0;
}
