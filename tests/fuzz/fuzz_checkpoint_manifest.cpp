// libFuzzer: checkpoint manifests. The bytes are parsed directly (parse_checkpoint_manifest), and
// written as the manifest of a real checkpoint folder (seed_checkpoint.hpp: its data file and
// `latest` pointer), which is then listed, pruned (keeping all) and opened.
#include "fuzz_common.hpp"
#include "mentor/core/error.hpp"
#include "mentor/train/checkpoint.hpp"
#include "seed_checkpoint.hpp"

namespace {

const std::filesystem::path& checkpoint_dir() {
  static const std::filesystem::path dir = [] {
    const auto path = mentor::fuzz::scratch_dir() / "checkpoints";
    mentor::fuzz::write_seed_checkpoint(path);  // step-7.{json,safetensors} and latest
    return path;
  }();
  return dir;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string_view text(reinterpret_cast<const char*>(data), size);
  try {
    (void)mentor::train::parse_checkpoint_manifest(text);
  } catch (const mentor::Error&) {
  }
  const auto& dir = checkpoint_dir();
  mentor::fuzz::write_bytes(dir / "step-7.json", data, size);
  try {
    std::vector<mentor::train::SkippedCheckpoint> skipped;
    (void)mentor::train::list_checkpoints(dir, &skipped);
    (void)mentor::train::prune_checkpoints(dir, 1000);
  } catch (const mentor::Error&) {
  }
  try {
    const auto reader = mentor::train::CheckpointReader::open(dir);
    (void)reader.tensors();
  } catch (const mentor::Error&) {
  }
  return 0;
}
