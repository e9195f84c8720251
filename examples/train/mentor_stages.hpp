#pragma once
// The MENTOR model's stages in examples/train, each on pre-tokenised targets (codes/<name>.codes):
//   decoder  the AR decoder pretrained text-to-image on the frozen T5's features (LlamaGen's t2i
//            recipe; MENTOR's RoPE fix and guidance dropout come with the model config);
//   stage1   multimodal alignment: CLIP, GPT layers and cls_embedding frozen;
//   stage2   multimodal instruction tuning: only CLIP frozen.
// Each writes <out>/<stage>/model (a weights-only mentor checkpoint that examples/generate reads
// with --vq <out>/vq/vq.safetensors --tokenizer <out>/tokenizer/spiece.model).
#include <cstdint>
#include <filesystem>
#include <iostream>
#include <memory>
#include <string>
#include <vector>

#include "mentor/data/pretokenized.hpp"
#include "mentor/models/contrastive.hpp"
#include "mentor/models/vq_codes.hpp"
#include "mentor/train/checkpoint.hpp"

#include "common.hpp"
#include "stage0.hpp"

namespace mentor::examples::train_pipeline {

enum class MentorStageKind { decoder, stage1, stage2 };

inline const char* stage_name(MentorStageKind k) {
  return k == MentorStageKind::decoder  ? "decoder"
         : k == MentorStageKind::stage1 ? "stage1"
                                        : "stage2";
}
inline const StageOptions& stage_options(const PipelineConfig& c, MentorStageKind k) {
  return k == MentorStageKind::decoder  ? c.decoder
         : k == MentorStageKind::stage1 ? c.stage1
                                        : c.stage2;
}

// The task stream a stage trains on: the decoder sees text-to-image samples only.
inline world::TaskStream stage_stream(const PipelineConfig& c, MentorStageKind k,
                                      world::Split split, int64_t size) {
  world::TaskConfig tasks = with_stage1(c.tasks);
  if (k == MentorStageKind::decoder) {
    tasks.stage1.fill(0);
    tasks.stage1[static_cast<size_t>(world::Task::text_to_image)] = 1;
    tasks.no_segmentation = tasks.no_recovery = false;
  }
  const int stage = k == MentorStageKind::stage2 ? 2 : 1;
  return world::TaskStream(tasks, c.seed + 31 + static_cast<uint64_t>(k), stage, split, size);
}

inline fs::path codes_path(const fs::path& out, MentorStageKind k) {
  return out / "codes" / (std::string(stage_name(k)) + ".codes");
}
inline fs::path model_dir(const fs::path& out, MentorStageKind k) {
  return out / stage_name(k) / "model";
}

// The VQ codes of a stage's targets, encoded once by the trained VQ.
inline void pretokenize(const PipelineConfig& c, const fs::path& out, MentorStageKind k) {
  const fs::path path = codes_path(out, k);
  if (fs::exists(path)) return;
  fs::create_directories(path.parent_path());
  Generator unused(0);
  models::VQModel<float> vq(c.model.vq, unused);
  nn::load_state_dict(vq, io::SafeTensorsFile::open(vq_weights(out).string()));
  const world::TaskStream stream =
      stage_stream(c, k, world::Split::train, stage_options(c, k).stream_size());
  train::ProgressBar bar(stream.size(), std::string("codes ") + stage_name(k));
  const data::PretokenizedContents codes = models::encode_task_targets(
      vq, stream, 32, train::file_xxh64(vq_weights(out)), [&](int64_t done) { bar.update(done); });
  bar.finish();
  data::write_pretokenized(path.string(), codes);
}

// Reads a weights-only checkpoint's model.* into `model` (same architecture).
inline void load_weights(Model& model, const fs::path& checkpoint) {
  const train::CheckpointReader reader = train::CheckpointReader::open(checkpoint);
  std::vector<std::pair<std::string, train::TensorSignature>> expected;
  for (auto& [name, tensor] : model.state())
    expected.emplace_back(name, train::signature_of<float>(tensor->shape()));
  reader.check_tensors("model.", expected, "model");
  NoGradGuard no_grad;
  for (auto& [name, tensor] : model.state()) reader.read_into("model." + name, *tensor);
}

// The model a stage starts from: the decoder from the contrastive towers (and a fresh GPT), a
// later stage from the one before it (stage 2 from the decoder when stage 1 is ablated).
inline std::unique_ptr<Model> initial_model(const PipelineConfig& c, const fs::path& out,
                                            MentorStageKind k) {
  Generator init(c.seed + 41);
  auto model = std::make_unique<Model>(c.model, init);
  model->load_vq(io::SafeTensorsFile::open(vq_weights(out).string()));
  if (k == MentorStageKind::decoder) {
    Generator unused(0);
    models::ContrastivePair<float> pair(contrastive_config(c), unused);
    nn::load_state_dict(pair, io::SafeTensorsFile::open(clip_weights(out).string()));
    models::copy_towers_into(pair, model->multimodal_encoder);
  } else {
    const MentorStageKind from = k == MentorStageKind::stage2 && !c.tasks.no_stage1
                                     ? MentorStageKind::stage1
                                     : MentorStageKind::decoder;
    load_weights(*model, model_dir(out, from));
  }
  return model;
}

// Freezing: the decoder trains the GPT on the frozen encoder (T5's features, as LlamaGen's t2i
// takes FlanT5's); stages 1 and 2 follow MENTOR (models::mentor_frozen_patterns).
inline models::FreezeSummary freeze_for(Model& model, MentorStageKind k) {
  if (k == MentorStageKind::decoder) {
    model.set_trainable(true);
    train::freeze(model, {"multimodal_encoder\\..*"});
    return models::summarize_trainable(model);
  }
  return model.set_stage(k == MentorStageKind::stage1 ? models::MentorStage::Alignment
                                                      : models::MentorStage::InstructionTuning);
}

// The fixed samples of a stage's grid: eval.rows held-out samples of each task it trains.
inline std::vector<world::TaskSample> grid_samples(const PipelineConfig& c, MentorStageKind k) {
  const world::TaskStream probe = stage_stream(c, k, world::Split::heldout, 1);
  const std::array<double, world::kTaskCount> weights = probe.config().weights(probe.stage());
  std::vector<world::TaskSample> out;
  for (int t = 0; t < world::kTaskCount; ++t) {
    if (weights[static_cast<size_t>(t)] <= 0) continue;
    for (int64_t row = 0; row < c.eval.rows; ++row)
      out.push_back(world::make_task_sample(probe.config(), c.seed + 51, world::Task(t),
                                            world::Split::heldout, static_cast<uint64_t>(row)));
  }
  return out;
}

inline std::vector<world::SynthBenchItem> synthbench_subset(const PipelineConfig& c) {
  return world::synthbench_items(0, c.resolution(),
                                 static_cast<int>(c.eval.synthbench_per_category));
}

// Scores `items` with the model; returns the report.
inline world::SynthBenchReport score_synthbench(Model& model, const text::Tokenizer& tokenizer,
                                                const PipelineConfig& c,
                                                const std::vector<world::SynthBenchItem>& items) {
  std::vector<std::string> prompts;
  std::vector<const std::vector<Image>*> references;
  for (const world::SynthBenchItem& item : items) {
    prompts.push_back(item.prompt);
    references.push_back(&item.references);
  }
  const std::vector<Image> images =
      generate_images(model, tokenizer, prompts, references, c.eval, c.resolution(), 0);
  std::vector<world::SynthScore> scores;
  for (size_t i = 0; i < items.size(); ++i) scores.push_back(world::score(items[i], images[i]));
  return world::synthbench_report(scores);
}

// A prompt on one line of prompts.txt: each marker as [image], each line break as " / ".
inline std::string one_line(std::string_view prompt) {
  std::string out;
  for (size_t i = 0; i < prompt.size(); ++i) {
    if (prompt.substr(i).starts_with(world::kImageMarker)) {
      out += "[image]";
      i += world::kImageMarker.size() - 1;
    } else if (prompt[i] == '\n') {
      if (i + 1 < prompt.size()) out += " / ";
    } else {
      out += prompt[i];
    }
  }
  return out;
}

inline double overall_cp_pf(const world::SynthBenchReport& report) {
  return report.rows.empty() ? 0.0 : report.rows.back().cp_pf;
}

inline void write_model(Model& model, const fs::path& dir, int64_t step) {
  train::CheckpointWriter writer;
  writer.add_all("model.", model.state());
  writer.manifest()["step"] = step;
  writer.manifest()["config"] = model.config().to_json();
  writer.commit(dir, "model");
}

inline void train_mentor_stage(const PipelineConfig& c, const fs::path& out,
                               const text::Tokenizer& tokenizer, MentorStageKind k) {
  const std::string name = stage_name(k);
  const fs::path dir = out / name;
  if (stage_done(dir)) return;
  const StageOptions& o = stage_options(c, k);
  pretokenize(c, out, k);
  std::unique_ptr<Model> model = initial_model(c, out, k);
  const models::FreezeSummary frozen = freeze_for(*model, k);
  std::cerr << "train: " << name << ": " << frozen.trainable_parameters << " trainable, "
            << frozen.frozen_parameters << " frozen parameters\n";
  model->train();
  train::Trainer<float> trainer(*model, o.trainer_options());

  auto stream = std::make_shared<const world::TaskStream>(
      stage_stream(c, k, world::Split::train, o.stream_size()));
  auto targets = std::make_shared<const data::PretokenizedTargets>(codes_path(out, k).string());
  auto coded = std::make_shared<const data::CodedTaskStream>(stream, targets,
                                                             train::file_xxh64(vq_weights(out)));
  data::LoaderOptions lo;
  lo.batch_size = o.batch_size;
  lo.seed = c.seed + 61 + static_cast<uint64_t>(k);
  const int64_t image_size = c.model.encoder.vision.image_size;
  using Loader = data::DataLoader<data::CodedTaskSample, MentorBatch>;
  const auto collate = [&tokenizer, image_size](std::vector<data::CodedTaskSample>&& batch) {
    return collate_mentor(tokenizer, image_size, std::move(batch));
  };
  auto loader = std::make_unique<Loader>(coded, lo, collate);
  const std::vector<world::TaskSample> grid = grid_samples(c, k);
  const std::vector<world::SynthBenchItem> bench = synthbench_subset(c);

  Generator rng(c.seed + 71);
  LoopHooks hooks;
  hooks.tokens_per_sample = targets->tokens();
  // The decoder's encoder is frozen and runs as at inference (no T5 dropout): its features are a
  // fixed function of the prompt, as LlamaGen's pre-extracted FlanT5 features are.
  const auto set_mode = [&] {
    model->train();
    if (k == MentorStageKind::decoder) model->multimodal_encoder.eval();
  };
  hooks.step = [&]() {
    set_mode();
    int64_t truncated = 0;
    const train::StepStats stats = trainer.step([&](int64_t) {
      const MentorBatch b = loader->next();
      truncated += b.truncated;
      return mentor_loss(*model, b);
    });
    return std::pair{stats, Metrics{{"truncated_prompts", double(truncated)}}};
  };
  hooks.loader_state = [&] { return loader->state(); };
  hooks.restore = [&](const train::ResumePoint& point) {
    loader = std::make_unique<Loader>(coded, lo, collate, point.loader);
  };
  hooks.sample = [&](int64_t step) {
    std::vector<std::string> prompts;
    std::vector<const std::vector<Image>*> references;
    for (const world::TaskSample& s : grid) {
      prompts.push_back(s.prompt);
      references.push_back(&s.references);
    }
    const std::vector<Image> images =
        generate_images(*model, tokenizer, prompts, references, c.eval, c.resolution(), 1000);
    // Row: references (up to two), the target, the sample.
    std::vector<std::vector<const Image*>> rows;
    double psnr_sum = 0;
    int psnr_count = 0;
    for (size_t i = 0; i < grid.size(); ++i) {
      const world::TaskSample& s = grid[i];
      rows.push_back({s.references.size() > 0 ? &s.references[0] : nullptr,
                      s.references.size() > 1 ? &s.references[1] : nullptr, &s.target, &images[i]});
      if (s.task == world::Task::reconstruction || s.task == world::Task::recovery) {
        psnr_sum += psnr(s.target, images[i]);
        ++psnr_count;
      }
    }
    const fs::path png = save_stage_picture(dir, step, tile_sheet(rows, int(c.resolution())));
    std::ofstream prompts_txt(png.parent_path() / "prompts.txt", std::ios::trunc);
    for (size_t i = 0; i < grid.size(); ++i)
      prompts_txt << i << "\t" << world::name(grid[i].task) << "\t" << one_line(grid[i].prompt)
                  << "\n";
    Metrics m;
    if (psnr_count > 0) m.emplace_back("psnr_sample", psnr_sum / psnr_count);
    return m;
  };
  hooks.synthbench = [&](int64_t) {
    const world::SynthBenchReport report = score_synthbench(*model, tokenizer, c, bench);
    Metrics m = {{"synthbench_cp_pf", overall_cp_pf(report)}};
    if (!report.rows.empty()) {
      m.emplace_back("synthbench_cp", report.rows.back().cp);
      m.emplace_back("synthbench_pf", report.rows.back().pf);
    }
    return m;
  };
  run_stage_loop(name, o, trainer, dir, model->config().to_json(), rng, hooks);

  model->eval();
  write_model(*model, model_dir(out, k), trainer.step_count());
  mark_done(dir, {{"steps", o.steps},
                  {"trainable_parameters", frozen.trainable_parameters},
                  {"frozen_parameters", frozen.frozen_parameters}});
}

}  // namespace mentor::examples::train_pipeline
