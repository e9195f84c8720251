// train: the example two-stage trainer. Runs MENTOR's whole recipe in miniature from one JSON
// config, or one stage of it:
//
//   train --config configs/tiny.json --out runs/tiny                 # stage 0 -> 2
//   train --config configs/tiny.json --out runs/tiny --stage stage2  # one stage (and what it
//   needs) train --config configs/ci.json --out /tmp/ci --set stage2.steps=40 --set eval.cfg=3
//
// Stages, in order (docs/training.md): tokenizer (SentencePiece on the world's prompts), vq (the
// image tokenizer, with PatchGAN), clip (CLIP vision tower + T5 encoder, contrastive), decoder (the
// GPT pretrained text-to-image), stage1 (alignment), stage2 (instruction tuning); the MENTOR
// stages first encode their targets once (codes/). Each stage writes its folder under --out:
// checkpoints/, metrics.jsonl, samples/ (a PNG grid every sample_every steps: fixed held-out
// prompts and references), a SynthBench score every synthbench_every steps, its product, and
// done.json last. Killed anywhere, the same command continues bit-identically: finished stages
// are skipped, the running one resumes from its last checkpoint.
//
// The config is strict: an unknown key at any level is an error naming it. --set key.path=value
// overrides any field. A rerun into an existing --out must give the same resolved config (saved
// as <out>/config.json), unless --allow-config-change is given.
#include <CLI/CLI.hpp>
#include <cstdint>
#include <filesystem>
#include <iostream>
#include <string>
#include <vector>

#include "mentor/backend/cpu/parallel.hpp"
#include "mentor/core/error.hpp"
#include "mentor/io/json_config.hpp"
#include "mentor/train/load.hpp"

#include "cli.hpp"
#include "train/common.hpp"
#include "train/config.hpp"
#include "train/mentor_stages.hpp"
#include "train/stage0.hpp"

using namespace mentor;
using namespace mentor::examples::train_pipeline;

namespace {

struct Options {
  std::string config, out, stage = "all", export_to;
  std::vector<std::string> overrides;
  bool allow_config_change = false;
  int threads = 0;
};

const std::vector<std::string> kStages = {"tokenizer", "vq", "clip", "decoder", "stage1", "stage2"};

// A config may name a "base" config (a path relative to its own folder) that it patches (RFC 7386
// merge: its fields replace the base's, objects merge key by key), as the ablation configs patch
// configs/tiny.json.
nlohmann::json load_with_base(const fs::path& path, int depth = 0) {
  MENTOR_CHECK(depth < 8, "config ", path.string(), ": more than 8 nested \"base\" configs");
  nlohmann::json config = io::load_json_config(path);
  if (!config.is_object() || !config.contains("base")) return config;
  MENTOR_CHECK(config["base"].is_string(), "config ", path.string(),
               ": \"base\" must be a path (string)");
  nlohmann::json merged =
      load_with_base(path.parent_path() / config["base"].get<std::string>(), depth + 1);
  config.erase("base");
  merged.merge_patch(config);
  return merged;
}

// The resolved config of this run; an existing run folder must hold the same one.
nlohmann::json resolve_config(const Options& o, const fs::path& out) {
  nlohmann::json raw = load_with_base(o.config);
  for (const std::string& assignment : o.overrides) apply_override(raw, assignment);
  const PipelineConfig parsed = PipelineConfig::from_json(raw);
  const nlohmann::json resolved = parsed.to_json();
  const fs::path saved = out / "config.json";
  if (fs::exists(saved)) {
    const nlohmann::json before = io::load_json_config(saved);
    if (before != resolved && !o.allow_config_change) {
      std::string differs;
      for (const auto& [key, value] : resolved.items())
        if (!before.contains(key) || before[key] != value)
          differs += (differs.empty() ? "" : ", ") + key;
      throw Error(mentor::detail::concat(
          "the run folder ", out.string(), " was started with another config (", differs,
          " differ; ", saved.string(),
          "): use another --out, or --allow-config-change to continue with this one"));
    }
  }
  write_text_atomically(saved, resolved.dump(2) + "\n");
  return resolved;
}

// The shipped form of a finished run (docs/model): the MENTOR state and the VQ stored in bfloat16
// (round to nearest even; examples/generate reads them into float), the model's config, the
// tokenizer and the run's resolved config.
void export_model(const PipelineConfig& c, const fs::path& out, const fs::path& to) {
  MENTOR_CHECK(stage_done(out / "stage2"), "--export: ", out.string(),
               " has no finished stage 2 (run the pipeline first)");
  fs::create_directories(to);
  const auto to_bf16 = [](auto& module, const fs::path& path) {
    io::SafeTensorsWriter writer;
    for (auto& [name, tensor] : module.state()) {
      const std::vector<float> values = tensor->detach().contiguous().to_vector();
      std::vector<bf16> rounded(values.size());
      for (size_t i = 0; i < values.size(); ++i) rounded[i] = convert_element<bf16>(values[i]);
      writer.add(name, tensor->shape().vec(), rounded);
    }
    writer.write(path.string());
  };
  auto model = train::load_for_inference<Model>(model_dir(out, MentorStageKind::stage2));
  to_bf16(*model, to / "mentor.safetensors");
  write_text_atomically(to / "mentor.json", model->config().to_json().dump(2) + "\n");
  Generator unused(0);
  models::VQModel<float> vq(c.model.vq, unused);
  nn::load_state_dict(vq, io::SafeTensorsFile::open(vq_weights(out).string()));
  to_bf16(vq, to / "vq.safetensors");
  fs::copy_file(out / "tokenizer" / "spiece.model", to / "spiece.model",
                fs::copy_options::overwrite_existing);
  fs::copy_file(out / "config.json", to / "config.json", fs::copy_options::overwrite_existing);
  std::cout << "train: exported " << out.string() << " -> " << to.string() << "\n";
}

int run(const Options& o) {
  MENTOR_CHECK(
      o.stage == "all" || std::find(kStages.begin(), kStages.end(), o.stage) != kStages.end(),
      "--stage ", o.stage, " is not all, tokenizer, vq, clip, decoder, stage1 or stage2");
  if (o.threads > 0) cpu::set_num_threads(o.threads);
  const fs::path out = o.out;
  fs::create_directories(out);
  const PipelineConfig c = PipelineConfig::from_json(resolve_config(o, out));
  const auto last = o.stage == "all"
                        ? kStages.size() - 1
                        : static_cast<size_t>(std::find(kStages.begin(), kStages.end(), o.stage) -
                                              kStages.begin());
  const auto wanted = [&](const std::string& stage) {
    const auto at =
        static_cast<size_t>(std::find(kStages.begin(), kStages.end(), stage) - kStages.begin());
    return at <= last;  // a stage needs every stage before it
  };
  train_tokenizer(c, out / "tokenizer");
  const text::Tokenizer tokenizer(tokenizer_config(c, out / "tokenizer" / "spiece.model"));
  if (wanted("vq")) train_vq(c, out);
  if (wanted("clip")) train_clip(c, out, tokenizer);
  if (wanted("decoder")) train_mentor_stage(c, out, tokenizer, MentorStageKind::decoder);
  if (wanted("stage1") && !c.tasks.no_stage1)
    train_mentor_stage(c, out, tokenizer, MentorStageKind::stage1);
  if (wanted("stage2")) train_mentor_stage(c, out, tokenizer, MentorStageKind::stage2);
  std::cout << "train: done (" << o.stage << ") -> " << out.string() << "\n";
  if (!o.export_to.empty()) export_model(c, out, o.export_to);
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  Options o;
  CLI::App app{
      "train: MENTOR's recipe in miniature, stage 0 (tokenizer, VQ, CLIP + T5, decoder) to stage "
      "2, from a JSON config; resumable exactly (docs/training.md)."};
  app.add_option("--config", o.config, "the pipeline config (JSON; configs/tiny.json)")->required();
  app.add_option("--out", o.out, "the run folder")->required();
  app.add_option("--stage", o.stage,
                 "all, or the last stage to run: tokenizer, vq, clip, decoder, stage1, stage2");
  app.add_option("--set", o.overrides, "override a config field: key.path=value (repeatable)");
  app.add_flag("--allow-config-change", o.allow_config_change,
               "continue a run folder with a config that differs from its config.json");
  app.add_option("--threads", o.threads, "CPU threads (default: all cores)");
  app.add_option("--export", o.export_to,
                 "after the run, write the shipped form (bf16 weights, configs, tokenizer) here");
  return mentor::examples::parse_and_run(app, argc, argv, "train", [&] { return run(o); });
}
