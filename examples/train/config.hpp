#pragma once
// The configuration of examples/train: the world, the tokenizer, the model and every stage of the
// pipeline, read strictly from JSON (an unknown key at any level is an error naming its path) and
// overridden field by field from the command line (--set stage1.steps=200).
//
//   {"seed": 0,
//    "tasks": TaskConfig (docs/data.md; its resolution is every image's),
//    "tokenizer": {"vocab_size": 400, "corpus_size": 3000},
//    "model": MentorConfig (encoder, gpt, vq),
//    "patchgan": PatchGANConfig, "contrastive_dim": 64,
//    "vq": StageOptions + {"disc_start", "disc_weight", "disc_lr", "real_share", "crop"},
//    "clip": StageOptions + {"reference_share"},
//    "decoder": StageOptions, "stage1": StageOptions, "stage2": StageOptions,
//    "eval": {"rows", "synthbench_per_category", "cfg", "temperature", "top_k"}}
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "mentor/core/error.hpp"
#include "mentor/data/world/tasks.hpp"
#include "mentor/io/json_config.hpp"
#include "mentor/models/mentor_config.hpp"
#include "mentor/models/patchgan.hpp"
#include "mentor/train/schedule.hpp"
#include "mentor/train/trainer.hpp"

namespace mentor::examples::train_pipeline {

// What every stage's loop shares: its length, batch, optimizer and schedule, and how often it
// checkpoints, logs, draws its sample grid and scores SynthBench.
struct StageOptions {
  int64_t steps = 100;
  int64_t batch_size = 8;
  int64_t accumulation_steps = 1;
  double peak_lr = 1e-4;
  double warmup_fraction = 0.05;
  double floor_ratio = 0.1;
  double weight_decay = 0.05;
  double max_grad_norm = 1.0;
  std::string optimizer = "adamw";
  int64_t data_size = 0;  // samples in the stage's stream; 0: steps x batch x accumulation
  int64_t checkpoint_every = 100;
  int64_t log_every = 10;
  int64_t sample_every = 0;      // 0: only at the end
  int64_t synthbench_every = 0;  // 0: only at the end (stages 1 and 2, the decoder)

  int64_t samples_per_step() const { return batch_size * accumulation_steps; }
  int64_t stream_size() const { return data_size > 0 ? data_size : steps * samples_per_step(); }

  void read(io::JsonConfigReader& r) {
    r.read("steps", steps);
    r.read("batch_size", batch_size);
    r.read("accumulation_steps", accumulation_steps);
    r.read("peak_lr", peak_lr);
    r.read("warmup_fraction", warmup_fraction);
    r.read("floor_ratio", floor_ratio);
    r.read("weight_decay", weight_decay);
    r.read("max_grad_norm", max_grad_norm);
    r.read("optimizer", optimizer);
    r.read("data_size", data_size);
    r.read("checkpoint_every", checkpoint_every);
    r.read("log_every", log_every);
    r.read("sample_every", sample_every);
    r.read("synthbench_every", synthbench_every);
  }
  void validate(const std::string& stage) const {
    MENTOR_CHECK(steps >= 1 && batch_size >= 1 && accumulation_steps >= 1, stage,
                 ": steps, batch_size and accumulation_steps must be >= 1 (got ", steps, ", ",
                 batch_size, ", ", accumulation_steps, ")");
    MENTOR_CHECK(peak_lr > 0 && warmup_fraction >= 0 && warmup_fraction < 1 && floor_ratio >= 0 &&
                     floor_ratio <= 1,
                 stage, ": peak_lr ", peak_lr, ", warmup_fraction ", warmup_fraction,
                 ", floor_ratio ", floor_ratio, " (lr > 0, fractions in [0, 1))");
    MENTOR_CHECK(optimizer == "adamw" || optimizer == "adam", stage, ": optimizer \"", optimizer,
                 "\" is not adamw or adam");
    MENTOR_CHECK(checkpoint_every >= 1 && log_every >= 1 && sample_every >= 0 &&
                     synthbench_every >= 0 && data_size >= 0,
                 stage, ": checkpoint_every and log_every must be >= 1, the others >= 0");
  }
  nlohmann::json to_json() const {
    return {{"steps", steps},
            {"batch_size", batch_size},
            {"accumulation_steps", accumulation_steps},
            {"peak_lr", peak_lr},
            {"warmup_fraction", warmup_fraction},
            {"floor_ratio", floor_ratio},
            {"weight_decay", weight_decay},
            {"max_grad_norm", max_grad_norm},
            {"optimizer", optimizer},
            {"data_size", data_size},
            {"checkpoint_every", checkpoint_every},
            {"log_every", log_every},
            {"sample_every", sample_every},
            {"synthbench_every", synthbench_every}};
  }

  // MENTOR's optimizer (mentor-system.md §4.1): AdamW (0.9, 0.95), decay on >= 2-D weights, clip,
  // warm-up then cosine to floor_ratio x peak, counted in optimizer steps; gradients averaged over
  // the micro-batches.
  train::TrainerOptions trainer_options() const {
    train::TrainerOptions o;
    o.optimizer = optimizer == "adam" ? train::TrainerOptions::OptimizerKind::adam
                                      : train::TrainerOptions::OptimizerKind::adamw;
    o.weight_decay = optimizer == "adam" ? 0.0 : weight_decay;
    o.max_grad_norm = max_grad_norm;
    o.accumulation_steps = accumulation_steps;
    const auto warmup = static_cast<int64_t>(std::llround(warmup_fraction * double(steps)));
    o.schedule = train::WarmupCosine{peak_lr, std::max<int64_t>(warmup, 1), steps, floor_ratio};
    return o;
  }
};

struct VQStageOptions : StageOptions {
  int64_t disc_start = 0;    // the step the PatchGAN losses start at (LlamaGen: 20000)
  double disc_weight = 0.5;  // the generator's hinge loss weight (LlamaGen: 0.5)
  double disc_lr = 1e-4;
  double real_share = 0.25;  // images from the real sets (emoji, photos, Fashion-MNIST)
  int64_t crop = 0;          // train on random crops of this side (0: whole images)
};

struct ClipStageOptions : StageOptions {
  double reference_share = 0.5;  // images that are a subject alone (a reference) vs a scene
};

struct EvalOptions {
  int64_t rows = 4;                     // sample grid rows per task
  int64_t synthbench_per_category = 2;  // the SynthBench subset scored during training
  double cfg = 2.5;
  double temperature = 0.9;
  int64_t top_k = 0;
  nlohmann::json to_json() const {
    return {{"rows", rows},
            {"synthbench_per_category", synthbench_per_category},
            {"cfg", cfg},
            {"temperature", temperature},
            {"top_k", top_k}};
  }
};

struct PipelineConfig {
  uint64_t seed = 0;
  data::world::TaskConfig tasks;
  int64_t tokenizer_vocab = 400;
  int64_t tokenizer_corpus = 3000;
  models::MentorConfig model;
  models::PatchGANConfig patchgan;
  int64_t contrastive_dim = 64;
  VQStageOptions vq;
  ClipStageOptions clip;
  StageOptions decoder, stage1, stage2;
  EvalOptions eval;

  int64_t resolution() const { return tasks.resolution; }
  int64_t tokens_per_image() const {
    const auto side = model.encoder.vision.image_size / model.encoder.vision.patch_size;
    return side * side;
  }

  static PipelineConfig from_json(const nlohmann::json& j) {
    io::JsonConfigReader r(j, "train config");
    PipelineConfig c;
    r.read("seed", c.seed);
    if (const nlohmann::json* t = r.find("tasks"))
      c.tasks = data::world::TaskConfig::from_json(*t, r.child_path("tasks"));
    // An optional object of the config, read strictly by `read` (its own unknown keys are errors).
    const auto section = [&r](const char* key, const auto& read) {
      if (const nlohmann::json* object = r.find(key)) {
        io::JsonConfigReader child(*object, "train config", r.child_path(key));
        read(child);
        child.finish();
      }
    };
    section("tokenizer", [&](io::JsonConfigReader& t) {
      t.read("vocab_size", c.tokenizer_vocab);
      t.read("corpus_size", c.tokenizer_corpus);
    });
    if (const nlohmann::json* m = r.find("model")) c.model = models::MentorConfig::from_json(*m);
    if (const nlohmann::json* p = r.find("patchgan"))
      c.patchgan = models::PatchGANConfig::from_json(*p, r.child_path("patchgan"));
    r.read("contrastive_dim", c.contrastive_dim);
    section("vq", [&](io::JsonConfigReader& s) {
      c.vq.read(s);
      s.read("disc_start", c.vq.disc_start);
      s.read("disc_weight", c.vq.disc_weight);
      s.read("disc_lr", c.vq.disc_lr);
      s.read("real_share", c.vq.real_share);
      s.read("crop", c.vq.crop);
    });
    section("clip", [&](io::JsonConfigReader& s) {
      c.clip.read(s);
      s.read("reference_share", c.clip.reference_share);
    });
    section("decoder", [&](io::JsonConfigReader& s) { c.decoder.read(s); });
    section("stage1", [&](io::JsonConfigReader& s) { c.stage1.read(s); });
    section("stage2", [&](io::JsonConfigReader& s) { c.stage2.read(s); });
    section("eval", [&](io::JsonConfigReader& e) {
      e.read("rows", c.eval.rows);
      e.read("synthbench_per_category", c.eval.synthbench_per_category);
      e.read("cfg", c.eval.cfg);
      e.read("temperature", c.eval.temperature);
      e.read("top_k", c.eval.top_k);
    });
    r.finish();
    c.validate();
    return c;
  }

  void validate() const {
    tasks.validate();
    model.validate();
    vq.validate("vq");
    clip.validate("clip");
    decoder.validate("decoder");
    stage1.validate("stage1");
    stage2.validate("stage2");
    MENTOR_CHECK(vq.real_share >= 0 && vq.real_share <= 1, "vq.real_share ", vq.real_share,
                 " is outside [0, 1]");
    MENTOR_CHECK(vq.crop >= 0 && vq.crop <= resolution(), "vq.crop ", vq.crop,
                 " is outside 0..tasks.resolution (", resolution(), ")");
    MENTOR_CHECK(clip.reference_share >= 0 && clip.reference_share <= 1, "clip.reference_share ",
                 clip.reference_share, " is outside [0, 1]");
    MENTOR_CHECK(contrastive_dim >= 1, "contrastive_dim ", contrastive_dim, " must be >= 1");
    MENTOR_CHECK(tokenizer_vocab >= 50 && tokenizer_corpus >= 100, "tokenizer: vocab_size ",
                 tokenizer_vocab, " (>= 50), corpus_size ", tokenizer_corpus, " (>= 100)");
    MENTOR_CHECK(model.encoder.image_token_id >= tokenizer_vocab &&
                     model.encoder.image_token_id < model.encoder.text.vocab_size,
                 "model.encoder.image_token_id ", model.encoder.image_token_id,
                 " must lie above the tokenizer's pieces (tokenizer.vocab_size ", tokenizer_vocab,
                 ") and inside T5's vocabulary (", model.encoder.text.vocab_size, ")");
    MENTOR_CHECK(model.encoder.vision.image_size == resolution(),
                 "model.encoder.vision.image_size ", model.encoder.vision.image_size,
                 " differs from tasks.resolution ", resolution(),
                 " (references are given to CLIP at the world's resolution)");
    MENTOR_CHECK(eval.rows >= 1 && eval.synthbench_per_category >= 1 && eval.cfg >= 0 &&
                     eval.temperature >= 0 && eval.top_k >= 0,
                 "eval: rows and synthbench_per_category >= 1, cfg, temperature, top_k >= 0");
  }

  nlohmann::json to_json() const {
    nlohmann::json vq_json = vq.to_json();
    vq_json["disc_start"] = vq.disc_start;
    vq_json["disc_weight"] = vq.disc_weight;
    vq_json["disc_lr"] = vq.disc_lr;
    vq_json["real_share"] = vq.real_share;
    vq_json["crop"] = vq.crop;
    nlohmann::json clip_json = clip.to_json();
    clip_json["reference_share"] = clip.reference_share;
    return {{"seed", seed},
            {"tasks", tasks.to_json()},
            {"tokenizer", {{"vocab_size", tokenizer_vocab}, {"corpus_size", tokenizer_corpus}}},
            {"model", model.to_json()},
            {"patchgan", patchgan.to_json()},
            {"contrastive_dim", contrastive_dim},
            {"vq", vq_json},
            {"clip", clip_json},
            {"decoder", decoder.to_json()},
            {"stage1", stage1.to_json()},
            {"stage2", stage2.to_json()},
            {"eval", eval.to_json()}};
  }
};

// `--set a.b.c=value`: value is parsed as JSON when it parses (numbers, true, arrays...), else
// taken as a string. The path may name a field the file leaves out; the strict reading afterwards
// rejects a name no config has.
inline void apply_override(nlohmann::json& config, const std::string& assignment) {
  const size_t eq = assignment.find('=');
  MENTOR_CHECK(eq != std::string::npos && eq > 0, "--set \"", assignment,
               "\" is not key.path=value");
  const std::string path = assignment.substr(0, eq), text = assignment.substr(eq + 1);
  nlohmann::json value = nlohmann::json::parse(text, nullptr, /*allow_exceptions=*/false);
  if (value.is_discarded()) value = text;
  nlohmann::json* node = &config;
  size_t start = 0;
  while (true) {
    const size_t dot = path.find('.', start);
    const std::string key = path.substr(start, dot - start);
    MENTOR_CHECK(!key.empty(), "--set \"", assignment, "\": empty key in the path");
    if (!node->is_object()) *node = nlohmann::json::object();
    node = &(*node)[key];
    if (dot == std::string::npos) break;
    start = dot + 1;
  }
  *node = value;
}

}  // namespace mentor::examples::train_pipeline
