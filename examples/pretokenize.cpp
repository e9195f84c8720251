// pretokenize: encodes a task stream's target images with a VQ checkpoint once and stores their
// codes (data/pretokenized.hpp), so that training reads codes instead of running the VQ encoder.
//
//   pretokenize --vq vq.safetensors [--vq-config vq.json | --vq-preset VQ-16]
//       [--tasks tasks.json] --seed 0 --stage 2 --split train --count 20000 --out stage2.codes
//
// --tasks is a TaskConfig (docs/data.md; strict: an unknown key is an error); without it the
// defaults. The stream is world::TaskStream(tasks, seed, stage, split, count); the file records
// it, and the XXH64 of the VQ checkpoint, so a trainer can refuse codes from another stream or
// another VQ. The output is written atomically.
#include <CLI/CLI.hpp>
#include <cstdint>
#include <filesystem>
#include <iostream>
#include <memory>
#include <optional>
#include <string>

#include "mentor/core/error.hpp"
#include "mentor/data/pretokenized.hpp"
#include "mentor/data/world/tasks.hpp"
#include "mentor/io/json_config.hpp"
#include "mentor/io/safetensors.hpp"
#include "mentor/models/vq.hpp"
#include "mentor/models/vq_codes.hpp"
#include "mentor/nn/state_dict.hpp"
#include "mentor/train/checkpoint.hpp"
#include "mentor/train/progress.hpp"

#include "cli.hpp"

namespace world = mentor::data::world;
using namespace mentor;

namespace {

struct Options {
  std::string vq, vq_config, vq_preset = "VQ-16", tasks, split = "train", out;
  uint64_t seed = 0;
  int stage = 1;
  int64_t count = 1024;
  int64_t batch = 16;
};

int run(const Options& o) {
  MENTOR_CHECK(o.split == "train" || o.split == "heldout",
               "--split must be train or heldout, got \"", o.split, "\"");
  const world::TaskConfig tasks =
      o.tasks.empty() ? world::TaskConfig{}
                      : world::TaskConfig::from_json(io::load_json_config(o.tasks), o.tasks);
  const models::VQConfig vq_config =
      o.vq_config.empty() ? models::VQConfig::preset(o.vq_preset)
                          : models::VQConfig::from_json(io::load_json_config(o.vq_config));
  const world::TaskStream stream(tasks, o.seed, o.stage,
                                 o.split == "train" ? world::Split::train : world::Split::heldout,
                                 o.count);

  Generator gen(0);
  models::VQModel<float> vq(vq_config, gen);
  const io::SafeTensorsFile file = io::SafeTensorsFile::open(o.vq);
  nn::load_state_dict(vq, file);
  const std::string identity = train::file_xxh64(o.vq);

  train::ProgressBar bar(o.count, "pretokenize");
  const data::PretokenizedContents codes = models::encode_task_targets(
      vq, stream, o.batch, identity, [&](int64_t done) { bar.update(done); });
  bar.finish();
  data::write_pretokenized(o.out, codes);
  std::cout << "pretokenize: " << o.count << " targets of stage " << o.stage << " (" << o.split
            << ") -> " << codes.grid_height << " x " << codes.grid_width << " codes each, VQ "
            << identity << " -> " << o.out << "\n";
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  Options o;
  CLI::App app{
      "pretokenize: the VQ codes of a MENTOR task stream's target images, stored once for "
      "training (safetensors; docs/data.md)."};
  app.add_option("--vq", o.vq, "the VQ checkpoint (safetensors, upstream names)")->required();
  app.add_option("--vq-config", o.vq_config, "its VQConfig JSON (default: --vq-preset)");
  app.add_option("--vq-preset", o.vq_preset, "VQ-16 or VQ-8, when no --vq-config");
  app.add_option("--tasks", o.tasks, "a TaskConfig JSON (default: the defaults)");
  app.add_option("--seed", o.seed, "the stream's seed");
  app.add_option("--stage", o.stage, "1 or 2");
  app.add_option("--split", o.split, "train or heldout");
  app.add_option("--count", o.count, "samples to encode (the stream's size)");
  app.add_option("--batch", o.batch, "images per encoder call");
  app.add_option("--out", o.out, "the codes file to write")->required();
  return mentor::examples::parse_and_run(app, argc, argv, "pretokenize", [&] { return run(o); });
}
