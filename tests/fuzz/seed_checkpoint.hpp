#pragma once
// The small real checkpoint that seeds fuzz_checkpoint_manifest: make_seeds copies its manifest
// into the corpus, and the harness writes the same checkpoint into its folder, so a seed (and
// every mutation that keeps its hashes) goes all the way through CheckpointReader::open.
#include <filesystem>

#include "mentor/train/checkpoint.hpp"
#include "mentor/train/trainer.hpp"

namespace mentor::fuzz {

inline std::filesystem::path write_seed_checkpoint(const std::filesystem::path& dir) {
  train::CheckpointWriter writer;
  writer.add("model.w", Tensor<float>::from_vector({1.0f, 2.0f, 3.0f}, Shape{3}));
  writer.add("model.ids", Tensor<int32_t>::from_vector({4, 5}, Shape{2}));
  writer.manifest()["step"] = 7;
  writer.manifest()["trainer"] = train::TrainerOptions{}.to_json();
  return writer.commit(dir, "step-7");
}

}  // namespace mentor::fuzz
