#pragma once
// What every stage of examples/train shares: the run's folders, the stage loop (resume, steps,
// JSONL, progress bar, checkpoints, sample grids and SynthBench at their intervals, the done
// marker), pictures, and MENTOR batches and generation.
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <filesystem>
#include <fstream>
#include <functional>
#include <iostream>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include <nlohmann/json.hpp>

#include "mentor/core/error.hpp"
#include "mentor/core/random.hpp"
#include "mentor/data/image.hpp"
#include "mentor/data/loader.hpp"
#include "mentor/data/pretokenized.hpp"
#include "mentor/data/world/synthbench.hpp"
#include "mentor/data/world/tasks.hpp"
#include "mentor/generate/generate.hpp"
#include "mentor/models/mentor.hpp"
#include "mentor/text/tokenizer.hpp"
#include "mentor/train/checkpoint.hpp"
#include "mentor/train/jsonl.hpp"
#include "mentor/train/progress.hpp"
#include "mentor/train/trainer.hpp"

#include "config.hpp"

namespace mentor::examples::train_pipeline {

namespace fs = std::filesystem;
namespace world = data::world;
using data::Image;
using Model = models::MentorModel<float>;

// ---- files
// ----------------------------------------------------------------------------------------

// Writes `text` to `path` atomically (a temporary beside it, then a rename).
inline void write_text_atomically(const fs::path& path, const std::string& text) {
  fs::create_directories(path.parent_path());
  const fs::path temporary = path.string() + ".tmp";
  {
    std::ofstream out(temporary, std::ios::binary | std::ios::trunc);
    MENTOR_CHECK(out.good(), "cannot open ", temporary.string(), " for writing");
    out << text;
    out.close();
    MENTOR_CHECK(out.good(), "error while writing ", temporary.string());
  }
  fs::rename(temporary, path);
}

// A stage is done when its folder holds done.json (written last, after its products).
inline fs::path done_marker(const fs::path& stage_dir) { return stage_dir / "done.json"; }
inline bool stage_done(const fs::path& stage_dir) { return fs::exists(done_marker(stage_dir)); }
inline void mark_done(const fs::path& stage_dir, const nlohmann::json& summary) {
  write_text_atomically(done_marker(stage_dir), summary.dump(2) + "\n");
}

// ---- pictures
// -------------------------------------------------------------------------------------

// [3, H, W] in [-1, 1] (a VQ input or output) -> RGB.
inline Image image_from_minus1_1(const Tensor<float>& chw) {
  data::ImageCHW image(static_cast<int>(chw.size(0)), static_cast<int>(chw.size(1)),
                       static_cast<int>(chw.size(2)));
  image.data = chw.contiguous().to_vector();
  return data::to_image_from_minus1_1(image);
}

// Images [N, 3, R, R] in [-1, 1] for the VQ from RGB images of side R.
inline Tensor<float> vq_input(const std::vector<Image>& images, int64_t resolution) {
  std::vector<float> pixels;
  pixels.reserve(images.size() * static_cast<size_t>(3 * resolution * resolution));
  for (const Image& image : images) {
    const data::ImageCHW chw = data::adm_center_crop(image, static_cast<int>(resolution));
    pixels.insert(pixels.end(), chw.data.begin(), chw.data.end());
  }
  return Tensor<float>::from_vector(
      pixels, Shape{static_cast<int64_t>(images.size()), 3, resolution, resolution});
}

// PSNR in dB of two RGB images on [0, 1].
inline double psnr(const Image& a, const Image& b) {
  MENTOR_CHECK(a.width == b.width && a.height == b.height && a.channels == b.channels,
               "psnr: images of different sizes");
  double sum = 0;
  for (size_t i = 0; i < a.data.size(); ++i) {
    const double d = (double(a.data[i]) - double(b.data[i])) / 255.0;
    sum += d * d;
  }
  const double mse = sum / double(a.data.size());
  return mse <= 0 ? 99.0 : 10.0 * std::log10(1.0 / mse);
}

// Rows of tiles on a dark sheet, `gap` pixels apart; a null tile leaves its cell empty.
inline Image tile_sheet(const std::vector<std::vector<const Image*>>& rows, int cell, int gap = 2) {
  size_t columns = 0;
  for (const auto& row : rows) columns = std::max(columns, row.size());
  Image sheet(gap + static_cast<int>(columns) * (cell + gap),
              gap + static_cast<int>(rows.size()) * (cell + gap), 3);
  std::fill(sheet.data.begin(), sheet.data.end(), uint8_t{40});
  for (size_t r = 0; r < rows.size(); ++r)
    for (size_t c = 0; c < rows[r].size(); ++c) {
      const Image* tile = rows[r][c];
      if (!tile) continue;
      const int x0 = gap + static_cast<int>(c) * (cell + gap);
      const int y0 = gap + static_cast<int>(r) * (cell + gap);
      for (int y = 0; y < std::min(tile->height, cell); ++y)
        for (int x = 0; x < std::min(tile->width, cell); ++x)
          for (int ch = 0; ch < 3; ++ch)
            sheet.at(y0 + y, x0 + x, ch) = tile->at(y, x, tile->channels == 1 ? 0 : ch);
    }
  return sheet;
}

// Saves a stage's picture as samples/step-<step>.png and samples/latest.png.
inline fs::path save_stage_picture(const fs::path& stage_dir, int64_t step, const Image& sheet) {
  const fs::path dir = stage_dir / "samples";
  fs::create_directories(dir);
  char name[40];
  std::snprintf(name, sizeof name, "step-%06lld.png", static_cast<long long>(step));
  data::save_png(sheet, dir / name);
  data::save_png(sheet, dir / "latest.png");
  return dir / name;
}

// ---- the stage loop
// -------------------------------------------------------------------------------

using Metrics = std::vector<std::pair<std::string, double>>;

struct LoopHooks {
  // One optimizer step of the stage's trainer; returns the step's statistics and extra metrics.
  std::function<std::pair<train::StepStats, Metrics>()> step;
  std::function<data::LoaderState()> loader_state;
  // Restores the stage's data loader (and any second trainer) from a loaded checkpoint.
  std::function<void(const train::ResumePoint&)> restore;
  // Saves what the main checkpoint does not hold (a discriminator's trainer), before it.
  std::function<void(int64_t step)> save_extra;
  std::function<Metrics(int64_t step)> sample;      // draws the sample grid; returns metrics
  std::function<Metrics(int64_t step)> synthbench;  // scores the SynthBench subset
  int64_t tokens_per_sample = 0;                    // for the tokens/s of the progress bar
};

inline nlohmann::ordered_json metrics_json(const train::StepStats& s, const Metrics& extra) {
  nlohmann::ordered_json j;
  j["loss"] = s.loss;
  j["lr"] = s.lr;
  j["grad_norm"] = s.grad_norm;
  for (const auto& [name, value] : extra) j[name] = value;
  return j;
}

// Runs (or resumes) a stage to options.steps optimizer steps. Checkpoints go to
// <dir>/checkpoints (with `model_config` as the manifest's config, so that generate and
// load_for_inference read them), metrics to <dir>/metrics.jsonl, pictures to <dir>/samples.
// Killed anywhere and rerun, it continues from the last checkpoint bit-identically.
inline void run_stage_loop(const std::string& name, const StageOptions& options,
                           train::Trainer<float>& trainer, const fs::path& dir,
                           const nlohmann::json& model_config, Generator& rng, LoopHooks& hooks) {
  fs::create_directories(dir);
  const fs::path checkpoints = dir / "checkpoints", metrics = dir / "metrics.jsonl";
  train::JsonlLogger::Mode mode = train::JsonlLogger::Mode::truncate;
  if (fs::exists(checkpoints / "latest")) {
    train::ResumeOptions resume;
    resume.config = model_config;
    const train::ResumePoint point = trainer.load(checkpoints, resume);
    rng = point.rng;
    if (hooks.restore) hooks.restore(point);
    if (fs::exists(metrics)) train::JsonlLogger::truncate_after(metrics, point.step);
    mode = train::JsonlLogger::Mode::append;
    std::cerr << "train: " << name << ": resuming from step " << point.step << " ("
              << point.checkpoint.string() << ")\n";
  }
  train::JsonlLogger log(metrics, mode);
  train::ProgressBar bar(options.steps, name);
  const auto due = [&](int64_t step, int64_t every) {
    return step == options.steps || (every > 0 && step % every == 0);
  };
  double started = 0;
  int64_t first_step = trainer.step_count();
  const auto clock = [] {
    return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch())
        .count();
  };
  started = clock();
  while (trainer.step_count() < options.steps) {
    auto [stats, extra] = hooks.step();
    const int64_t step = stats.step;
    if (due(step, options.sample_every) && hooks.sample) {
      const Metrics more = hooks.sample(step);
      extra.insert(extra.end(), more.begin(), more.end());
    }
    if (due(step, options.synthbench_every) && hooks.synthbench) {
      const Metrics more = hooks.synthbench(step);
      extra.insert(extra.end(), more.begin(), more.end());
    }
    if (due(step, options.log_every)) log.log(step, metrics_json(stats, extra));
    train::ProgressFields fields;
    fields.loss = stats.loss;
    fields.lr = stats.lr;
    const double elapsed = clock() - started;
    if (hooks.tokens_per_sample > 0 && elapsed > 0)
      fields.tokens_per_second =
          double((step - first_step) * options.samples_per_step() * hooks.tokens_per_sample) /
          elapsed;
    bar.update(step, fields);
    if (due(step, options.checkpoint_every)) {
      if (hooks.save_extra) hooks.save_extra(step);
      trainer.save(checkpoints, hooks.loader_state(), rng, model_config);
    }
  }
  bar.finish();
}

// ---- MENTOR batches
// ---------------------------------------------------------------------------------

struct MentorBatch {
  Tensor<int64_t> ids;    // [B, L] (L: the longest prompt of the batch)
  Tensor<bool> mask;      // [B, L]
  Tensor<float> images;   // [N, 3, S, S] the references in prompt order; undefined when none
  Tensor<int64_t> codes;  // [B, tokens]
  int64_t truncated = 0;  // prompts the tokenizer cut
};

// CLIP's preprocessing of references (HF CLIPImageProcessor: mean/std), as examples/generate.
inline void append_reference(std::vector<float>& pixels, const Image& image, int64_t size) {
  const data::ImageCHW chw = data::clip_preprocess(image, static_cast<int>(size));
  pixels.insert(pixels.end(), chw.data.begin(), chw.data.end());
}

// Prompts and references -> ids, mask and images, cut to the batch's longest prompt (T5's padding
// is masked, so the real positions do not depend on it).
inline void encode_prompts(const text::Tokenizer& tokenizer, int64_t image_size,
                           const std::vector<std::string>& prompts,
                           const std::vector<const std::vector<Image>*>& references,
                           MentorBatch& out) {
  const text::BatchEncoding e = tokenizer.encode_batch(prompts);
  int64_t longest = 1;
  for (const text::Encoding& row : e.rows) longest = std::max(longest, row.length);
  const auto batch = static_cast<int64_t>(prompts.size());
  std::vector<int64_t> ids;
  std::vector<bool> mask;
  for (const text::Encoding& row : e.rows)
    for (int64_t t = 0; t < longest; ++t) {
      ids.push_back(row.ids[static_cast<size_t>(t)]);
      mask.push_back(row.mask[static_cast<size_t>(t)] != 0);
    }
  out.ids = Tensor<int64_t>::from_vector(ids, Shape{batch, longest});
  out.mask = Tensor<bool>::from_vector(mask, Shape{batch, longest});
  out.truncated = e.truncated_prompts;
  std::vector<float> pixels;
  int64_t count = 0;
  for (const auto* refs : references)
    for (const Image& image : *refs) {
      append_reference(pixels, image, image_size);
      ++count;
    }
  if (count > 0)
    out.images = Tensor<float>::from_vector(pixels, Shape{count, 3, image_size, image_size});
}

inline MentorBatch collate_mentor(const text::Tokenizer& tokenizer, int64_t image_size,
                                  std::vector<data::CodedTaskSample>&& samples) {
  MentorBatch out;
  std::vector<std::string> prompts;
  std::vector<const std::vector<Image>*> references;
  std::vector<int64_t> codes;
  for (const data::CodedTaskSample& s : samples) {
    prompts.push_back(s.sample.prompt);
    references.push_back(&s.sample.references);
    codes.insert(codes.end(), s.codes.begin(), s.codes.end());
  }
  encode_prompts(tokenizer, image_size, prompts, references, out);
  const auto batch = static_cast<int64_t>(samples.size());
  out.codes = Tensor<int64_t>::from_vector(
      codes, Shape{batch, static_cast<int64_t>(codes.size()) / std::max<int64_t>(batch, 1)});
  return out;
}

inline Tensor<float> mentor_loss(Model& model, const MentorBatch& b) {
  const int64_t tokens = b.codes.size(1);
  const Tensor<float> logits =
      model.forward_train(b.codes.narrow(1, 0, tokens - 1), b.ids, b.mask, b.images);
  return model.loss(logits, b.codes);
}

// ---- generation
// ------------------------------------------------------------------------------------

struct VqGrid {
  int64_t height = 0, width = 0;
  int64_t tokens() const { return height * width; }
};
inline VqGrid vq_grid(const models::VQConfig& vq, int64_t resolution) {
  const int64_t factor = int64_t{1} << (vq.encoder_ch_mult.size() - 1);
  MENTOR_CHECK(resolution % factor == 0, "the resolution ", resolution,
               " is not a multiple of the VQ's downsampling factor ", factor);
  return {resolution / factor, resolution / factor};
}

// Images for prompts with their references, sampled with the eval options (request i's seed is
// seed + i), in eval mode without gradients; the model's mode is restored afterwards.
inline std::vector<Image> generate_images(Model& model, const text::Tokenizer& tokenizer,
                                          const std::vector<std::string>& prompts,
                                          const std::vector<const std::vector<Image>*>& references,
                                          const EvalOptions& eval, int64_t resolution,
                                          uint64_t seed) {
  const bool was_training = model.training();
  model.eval();
  NoGradGuard no_grad;
  const VqGrid grid = vq_grid(model.config().vq, resolution);
  std::vector<generate::GenerationRequest> requests;
  for (size_t i = 0; i < prompts.size(); ++i) {
    MentorBatch one;
    encode_prompts(tokenizer, model.config().encoder.vision.image_size, {prompts[i]},
                   {references[i]}, one);
    const models::ConditionPrefix<float, CPU> prefix =
        model.condition(one.ids, one.mask, one.images);
    generate::GenerationRequest r;
    r.caption = prefix.embeddings.select(0, 0).contiguous();
    r.emb_mask = prefix.mask.select(0, 0).contiguous();
    r.cfg_scale = eval.cfg;
    r.sampling.temperature = eval.temperature;
    r.sampling.top_k = eval.top_k;
    r.seed = seed + i;
    requests.push_back(std::move(r));
  }
  const Tensor<int64_t> codes = generate::generate(model.gpt, requests, grid.tokens());
  const Tensor<float> pixels = model.decode_codes(codes, grid.height, grid.width);
  std::vector<Image> out;
  for (int64_t i = 0; i < pixels.size(0); ++i)
    out.push_back(image_from_minus1_1(pixels.select(0, i)));
  model.train(was_training);
  return out;
}

}  // namespace mentor::examples::train_pipeline
