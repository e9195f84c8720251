#pragma once
// Stage 0 of examples/train: what the paper takes pretrained, trained here in miniature.
//   tokenizer  SentencePiece (unigram) on the world's prompts, as T5's spiece.model;
//   vq         LlamaGen's VQ tokenizer on world and real images: L2 reconstruction + codebook +
//              commitment (+ entropy, VQConfig.entropy_loss_ratio) + PatchGAN hinge losses from
//              vq.disc_start (LlamaGen's vq_loss.py; LPIPS is left out: no VGG weights here);
//   clip       the CLIP vision tower and the T5 encoder trained together with CLIP's symmetric
//              InfoNCE and a learned temperature (models/contrastive.hpp), on scenes and lone
//              subjects with their captions.
#include <sentencepiece_trainer.h>

#include <cstdint>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "mentor/data/emoji.hpp"
#include "mentor/data/fashion_mnist.hpp"
#include "mentor/data/photos.hpp"
#include "mentor/io/safetensors.hpp"
#include "mentor/models/contrastive.hpp"
#include "mentor/models/patchgan.hpp"
#include "mentor/models/vq.hpp"
#include "mentor/nn/state_dict.hpp"
#include "mentor/ops/loss.hpp"

#include "common.hpp"

namespace mentor::examples::train_pipeline {

// ---- tokenizer
// --------------------------------------------------------------------------------------

inline std::string without_markers(std::string_view text) {
  std::string out;
  for (size_t start = 0;;) {
    const size_t at = text.find(world::kImageMarker, start);
    out.append(text.substr(start, at - start));
    if (at == std::string_view::npos) return out;
    out.push_back(' ');
    start = at + world::kImageMarker.size();
  }
}

inline text::TokenizerConfig tokenizer_config(const PipelineConfig& c, const fs::path& model) {
  text::TokenizerConfig t;
  t.model_path = model.string();
  t.image_token_id = c.model.encoder.image_token_id;
  t.tokens_per_image = c.tokens_per_image();
  t.max_length = c.model.gpt.cls_token_num;
  return t;
}

// <out>/tokenizer/spiece.model: pad 0, eos 1, unk 2 as T5's; trained on prompts of both stages'
// training streams (markers removed) with one thread, so the model is the same on every run. BPE,
// not T5's unigram: on the world's ~100-word language the unigram trainer stops at ~160 pieces
// that split common words ("▁i ma ge"), BPE reaches whole words.
// The prompts, one sentence each, as SentencePiece's trainer reads them.
class PromptSentences final : public sentencepiece::SentenceIterator {
 public:
  explicit PromptSentences(std::vector<std::string> sentences) : sentences_(std::move(sentences)) {}
  bool done() const override { return at_ >= sentences_.size(); }
  void Next() override { ++at_; }
  const std::string& value() const override { return sentences_[at_]; }
  sentencepiece::util::Status status() const override { return {}; }

 private:
  std::vector<std::string> sentences_;
  size_t at_ = 0;
};

inline void train_tokenizer(const PipelineConfig& c, const fs::path& dir) {
  if (stage_done(dir)) return;
  fs::create_directories(dir);
  std::vector<std::string> sentences;
  world::TaskConfig tasks = c.tasks;
  tasks.no_stage1 = false;
  for (int stage = 1; stage <= 2; ++stage) {
    const world::TaskStream stream(tasks, c.seed, stage, world::Split::train, c.tokenizer_corpus);
    for (int64_t i = 0; i < c.tokenizer_corpus; ++i)
      sentences.push_back(without_markers(stream.get(i).prompt));
  }
  // Sentences from memory and the model into a string: no path enters the model's trainer spec,
  // so the file is the same bytes in every run folder.
  PromptSentences iterator(std::move(sentences));
  std::string model;
  const std::string args = "--model_type=bpe --vocab_size=" + std::to_string(c.tokenizer_vocab) +
                           " --hard_vocab_limit=false --character_coverage=1.0 --num_threads=1"
                           " --pad_id=0 --eos_id=1 --unk_id=2 --bos_id=-1 --minloglevel=2";
  const auto status = sentencepiece::SentencePieceTrainer::Train(args, &iterator, &model);
  MENTOR_CHECK(status.ok(), "SentencePiece training failed: ", status.ToString());
  write_text_atomically(dir / "spiece.model", model);
  const text::Tokenizer tokenizer(tokenizer_config(c, dir / "spiece.model"));
  const std::string probe_text = "The image is a picture of a big green heart";
  const text::Encoding probe = tokenizer.encode(probe_text);
  std::cerr << "train: tokenizer: " << tokenizer.piece_count() << " pieces -> "
            << (dir / "spiece.model").string() << "\n";
  mark_done(dir, {{"pieces", tokenizer.piece_count()},
                  {"probe", probe_text},
                  {"probe_tokens", probe.length - 1}});
}

// ---- the VQ tokenizer
// ---------------------------------------------------------------------------------

// The real image sets that are installed (emoji, photo crops, Fashion-MNIST), train or held-out.
class RealImages {
 public:
  RealImages(int resolution, bool heldout, uint64_t seed) : resolution_(resolution) {
    if (data::emoji_available()) {
      emoji_ = std::make_shared<const data::EmojiSet>();
      for (int64_t i = 0; i < emoji_->size(); ++i)
        if ((i % 10 == 9) == heldout) emoji_index_.push_back(i);
    }
    if (data::skimage_photos_available())
      photos_.emplace(std::make_shared<const data::SkimagePhotos>(),
                      data::PhotoCropOptions{resolution, 64, 0.25, seed + (heldout ? 1 : 0)});
    if (data::fashion_mnist_available())
      fashion_.emplace(
          std::make_shared<const data::FashionMnist>(heldout ? data::FashionMnistSplit::test
                                                             : data::FashionMnistSplit::train),
          resolution);
  }
  bool empty() const { return emoji_index_.empty() && !photos_ && !fashion_; }
  std::string sets() const {
    std::string out;
    if (!emoji_index_.empty()) out += "emoji ";
    if (photos_) out += "photos ";
    if (fashion_) out += "fashion-mnist";
    return out.empty() ? "none" : out;
  }
  // Image i: the sets in turn, each read at index i / (number of sets), wrapped.
  Image get(uint64_t i) const {
    std::vector<int> sets;
    if (!emoji_index_.empty()) sets.push_back(0);
    if (photos_) sets.push_back(1);
    if (fashion_) sets.push_back(2);
    MENTOR_CHECK(!sets.empty(), "RealImages: no real image set is installed");
    const int set = sets[i % sets.size()];
    const uint64_t k = i / sets.size();
    if (set == 0) return emoji_->image(emoji_index_[k % emoji_index_.size()], resolution_);
    if (set == 1) return photos_->get(static_cast<int64_t>(k % uint64_t(photos_->size()))).image;
    return fashion_->get(static_cast<int64_t>(k % uint64_t(fashion_->size()))).image;
  }

 private:
  int resolution_;
  std::shared_ptr<const data::EmojiSet> emoji_;
  std::vector<int64_t> emoji_index_;
  std::optional<data::PhotoCrops> photos_;
  std::optional<data::FashionMnistRgb> fashion_;
};

// Image i of the VQ's data: a real image at real_share, else the target of a task sample (both
// stages' tasks in turn, so segmentation targets on black and references are covered too).
inline Image vq_image(const PipelineConfig& c, const world::TaskStream& stage1,
                      const world::TaskStream& stage2, const RealImages& real, uint64_t i,
                      bool use_real) {
  if (use_real && !real.empty() &&
      philox_uniform_at(c.seed + 101, i, 0) < static_cast<float>(c.vq.real_share))
    return real.get(i);
  const world::TaskSample s = (i % 2 == 0 ? stage1 : stage2).get(static_cast<int64_t>(i / 2));
  if (!s.references.empty() && (i / 2) % 3 == 0) return s.references.front();
  return s.target;
}

inline world::TaskConfig with_stage1(world::TaskConfig t) {
  t.no_stage1 = false;
  return t;
}

struct VqEvalSet {
  std::vector<Image> world, real;
};
inline VqEvalSet vq_eval_set(const PipelineConfig& c, int count) {
  const world::TaskConfig tasks = with_stage1(c.tasks);
  const world::TaskStream s1(tasks, c.seed, 1, world::Split::heldout, count);
  const world::TaskStream s2(tasks, c.seed, 2, world::Split::heldout, count);
  const RealImages real(static_cast<int>(c.resolution()), true, c.seed);
  VqEvalSet set;
  for (int i = 0; i < count; ++i) {
    set.world.push_back(vq_image(c, s1, s2, real, static_cast<uint64_t>(i), false));
    if (!real.empty()) set.real.push_back(real.get(static_cast<uint64_t>(i)));
  }
  return set;
}

// Mean PSNR of the VQ's reconstructions of `images`, and the reconstructions.
inline std::pair<double, std::vector<Image>> vq_reconstruct(models::VQModel<float>& vq,
                                                            const std::vector<Image>& images,
                                                            int64_t resolution) {
  if (images.empty()) return {0.0, {}};
  const bool was_training = vq.training();
  vq.eval();
  NoGradGuard no_grad;
  const Tensor<float> out = vq.forward(vq_input(images, resolution)).dec;
  vq.train(was_training);
  std::vector<Image> recon;
  double total = 0;
  for (size_t i = 0; i < images.size(); ++i) {
    recon.push_back(image_from_minus1_1(out.select(0, static_cast<int64_t>(i))));
    const data::ImageCHW in = data::adm_center_crop(images[i], static_cast<int>(resolution));
    total += psnr(data::to_image_from_minus1_1(in), recon.back());
  }
  return {total / double(images.size()), recon};
}

inline fs::path vq_weights(const fs::path& out) { return out / "vq" / "vq.safetensors"; }

inline void train_vq(const PipelineConfig& c, const fs::path& out) {
  const fs::path dir = out / "vq";
  if (stage_done(dir)) return;
  const VQStageOptions& o = c.vq;
  const int64_t R = c.resolution();
  Generator init(c.seed + 11);
  models::VQModel<float> vq(c.model.vq, init);
  models::PatchGANDiscriminator<float> disc(c.patchgan, init);
  vq.train();
  disc.train();
  train::TrainerOptions g_options = o.trainer_options();
  train::TrainerOptions d_options = o.trainer_options();
  d_options.accumulation_steps = 1;
  d_options.schedule = train::WarmupCosine{o.disc_lr, 1, o.steps, o.floor_ratio};
  train::Trainer<float> g_trainer(vq, g_options);
  train::Trainer<float> d_trainer(disc, d_options);

  const world::TaskConfig tasks = with_stage1(c.tasks);
  const int64_t size = o.stream_size();
  auto s1 =
      std::make_shared<const world::TaskStream>(tasks, c.seed + 1, 1, world::Split::train, size);
  auto s2 =
      std::make_shared<const world::TaskStream>(tasks, c.seed + 1, 2, world::Split::train, size);
  auto real = std::make_shared<const RealImages>(static_cast<int>(R), false, c.seed);
  std::cerr << "train: vq: real image sets: " << real->sets() << "\n";
  // Training images are random crops of side vq.crop (the VQ is convolutional: a 32-pixel crop
  // costs a quarter of the whole 64-pixel image, as LlamaGen trains on 256-pixel crops).
  const int64_t side = o.crop > 0 && o.crop < R ? o.crop : R;
  auto images = std::make_shared<data::FunctionDataset<Image>>(size, [&c, s1, s2, real, side,
                                                                      R](int64_t i) {
    Image image = vq_image(c, *s1, *s2, *real, static_cast<uint64_t>(i), true);
    if (side == R) return image;
    const auto range = static_cast<float>(R - side + 1);
    const auto at = [&](uint64_t axis) {
      return std::min<int>(
          static_cast<int>(philox_uniform_at(c.seed + 102, static_cast<uint64_t>(i), axis) * range),
          static_cast<int>(R - side));
    };
    return data::crop(image, at(0), at(1), static_cast<int>(side), static_cast<int>(side));
  });
  data::LoaderOptions lo;
  lo.batch_size = o.batch_size;
  lo.seed = c.seed + 12;
  using Loader = data::DataLoader<Image, Tensor<float>>;
  const auto collate = [side](std::vector<Image>&& batch) { return vq_input(batch, side); };
  auto loader = std::make_unique<Loader>(images, lo, collate);
  const VqEvalSet eval = vq_eval_set(c, 8);

  Generator rng(c.seed + 13);
  LoopHooks hooks;
  Tensor<float> last_recon, last_input;
  double rec_sum = 0, gen_sum = 0, disc_sum = 0, codebook_sum = 0;
  hooks.step = [&]() {
    const bool adversarial = g_trainer.step_count() >= o.disc_start;
    rec_sum = gen_sum = codebook_sum = disc_sum = 0;
    disc.set_trainable(false);  // the generator's loss must leave no gradient on D
    std::vector<Tensor<float>> inputs, recons;
    const train::StepStats stats = g_trainer.step([&](int64_t) {
      const Tensor<float> x = loader->next();
      models::VQForwardResult<float, CPU> r = vq.forward(x);
      Tensor<float> rec = mse_loss(r.dec, x);
      Tensor<float> loss = rec + r.quantized.codebook_loss();
      rec_sum += rec.item();
      codebook_sum += r.quantized.codebook_loss().item();
      if (adversarial) {
        Tensor<float> gen = models::hinge_gen_loss(disc(r.dec));
        gen_sum += gen.item();
        loss = loss + gen * o.disc_weight;
      }
      inputs.push_back(x);
      recons.push_back(r.dec.detach());
      return loss;
    });
    disc.set_trainable(true);
    if (adversarial) {
      size_t micro = 0;
      d_trainer.step([&](int64_t) {
        Tensor<float> d = models::hinge_d_loss(disc(inputs[micro]), disc(recons[micro]));
        ++micro;
        disc_sum += d.item();
        return d;
      });
    }
    const double n = double(o.accumulation_steps);
    Metrics m = {{"rec_loss", rec_sum / n}, {"codebook_loss", codebook_sum / n}};
    if (adversarial) {
      m.emplace_back("gen_loss", gen_sum / n);
      m.emplace_back("disc_loss", disc_sum);
    }
    return std::pair{stats, m};
  };
  hooks.loader_state = [&] { return loader->state(); };
  // The discriminator's trainer is saved beside each generator checkpoint, in a folder named
  // after the generator's step (its own step count starts at disc_start).
  const auto disc_dir = [&](int64_t step) {
    return dir / "disc" / train::Trainer<float>::checkpoint_name(step);
  };
  hooks.restore = [&](const train::ResumePoint& point) {
    loader = std::make_unique<Loader>(images, lo, collate, point.loader);
    d_trainer.load(disc_dir(point.step));
  };
  hooks.save_extra = [&](int64_t step) {
    d_trainer.save(disc_dir(step), loader->state(), rng, {}, 1);
    const int64_t oldest_kept = step - 3 * o.checkpoint_every + 1;  // as the trainer keeps 3
    if (oldest_kept > 0)
      for (const auto& entry : fs::directory_iterator(dir / "disc"))
        if (entry.path().filename().string() < train::Trainer<float>::checkpoint_name(oldest_kept))
          fs::remove_all(entry.path());
  };
  hooks.sample = [&](int64_t step) {
    const auto [world_psnr, world_recon] = vq_reconstruct(vq, eval.world, R);
    const auto [real_psnr, real_recon] = vq_reconstruct(vq, eval.real, R);
    std::vector<std::vector<const Image*>> rows(4);
    for (size_t i = 0; i < eval.world.size(); ++i) {
      rows[0].push_back(&eval.world[i]);
      rows[1].push_back(&world_recon[i]);
    }
    for (size_t i = 0; i < eval.real.size(); ++i) {
      rows[2].push_back(&eval.real[i]);
      rows[3].push_back(&real_recon[i]);
    }
    save_stage_picture(dir, step, tile_sheet(rows, static_cast<int>(R)));
    Metrics m = {{"psnr_world", world_psnr}};
    if (c.model.vq.codebook_show_usage) {  // over the training codes of the recent window
      const models::CodebookUsage usage = vq.quantize.usage();
      m.emplace_back("codebook_used", usage.fraction_used);
      m.emplace_back("codebook_perplexity", usage.perplexity);
    }
    if (!eval.real.empty()) m.emplace_back("psnr_real", real_psnr);
    return m;
  };
  run_stage_loop("vq", o, g_trainer, dir, c.model.vq.to_json(), rng, hooks);

  const auto [world_psnr, unused_w] = vq_reconstruct(vq, eval.world, R);
  const auto [real_psnr, unused_r] = vq_reconstruct(vq, eval.real, R);
  io::SafeTensorsWriter writer;
  models::write_state(vq, writer);
  writer.write(vq_weights(out).string());
  mark_done(dir, {{"steps", o.steps}, {"psnr_world", world_psnr}, {"psnr_real", real_psnr}});
}

// ---- CLIP and T5, contrastively
// -------------------------------------------------------------------------

struct ClipSample {
  Image image;
  std::string text;
};
struct ClipBatch {
  Tensor<float> pixels;
  Tensor<int64_t> ids;
  Tensor<bool> mask;
};

// Sample i: a lone subject in its reference pose on a plain background, described by name, at
// reference_share; else a scene and its caption.
inline ClipSample clip_sample(const PipelineConfig& c, world::Split split, uint64_t i) {
  const world::Scene scene = world::sample_scene(c.seed + 21, split, i);
  if (philox_uniform_at(c.seed + 22, i, 0) < static_cast<float>(c.clip.reference_share)) {
    const world::Subject& subject = scene.subjects.front();
    world::Colour background = scene.background.colour;
    if (background == subject.colour)
      background = world::Colour((static_cast<int>(background) + 1) % world::kColourCount);
    return {world::subject_reference(subject, background, c.resolution()),
            "a " + world::subject_name(subject) + " on " +
                world::background_phrase(world::solid_background(background))};
  }
  return {world::render(scene, c.resolution()).image, world::caption(scene)};
}

inline ClipBatch collate_clip(const text::Tokenizer& tokenizer, int64_t image_size,
                              std::vector<ClipSample>&& samples) {
  MentorBatch encoded;
  std::vector<std::string> texts;
  std::vector<std::vector<Image>> images(1);
  for (ClipSample& s : samples) {
    texts.push_back(s.text);
    images[0].push_back(std::move(s.image));
  }
  encode_prompts(tokenizer, image_size, texts, {&images[0]}, encoded);
  return {encoded.images, encoded.ids, encoded.mask};
}

inline fs::path clip_weights(const fs::path& out) { return out / "clip" / "towers.safetensors"; }

inline models::ContrastiveConfig contrastive_config(const PipelineConfig& c) {
  models::ContrastiveConfig k;
  k.vision = c.model.encoder.vision;
  k.text = c.model.encoder.text;
  k.embed_dim = c.contrastive_dim;
  return k;
}

inline void train_clip(const PipelineConfig& c, const fs::path& out,
                       const text::Tokenizer& tokenizer) {
  const fs::path dir = out / "clip";
  if (stage_done(dir)) return;
  const ClipStageOptions& o = c.clip;
  Generator init(c.seed + 23);
  models::ContrastivePair<float> pair(contrastive_config(c), init);
  pair.train();
  train::Trainer<float> trainer(pair, o.trainer_options());
  const int64_t image_size = c.model.encoder.vision.image_size;
  auto samples = std::make_shared<data::FunctionDataset<ClipSample>>(
      o.stream_size(),
      [&c](int64_t i) { return clip_sample(c, world::Split::train, static_cast<uint64_t>(i)); });
  data::LoaderOptions lo;
  lo.batch_size = o.batch_size;
  lo.seed = c.seed + 24;
  using Loader = data::DataLoader<ClipSample, ClipBatch>;
  const auto collate = [&tokenizer, image_size](std::vector<ClipSample>&& batch) {
    return collate_clip(tokenizer, image_size, std::move(batch));
  };
  auto loader = std::make_unique<Loader>(samples, lo, collate);
  // The held-out retrieval check: 32 held-out pairs, one batch.
  std::vector<ClipSample> heldout;
  for (uint64_t i = 0; i < 32; ++i) heldout.push_back(clip_sample(c, world::Split::heldout, i));
  const ClipBatch eval = collate_clip(tokenizer, image_size, std::move(heldout));

  Generator rng(c.seed + 25);
  LoopHooks hooks;
  double accuracy = 0;
  hooks.step = [&]() {
    accuracy = 0;
    const train::StepStats stats = trainer.step([&](int64_t) {
      const ClipBatch b = loader->next();
      const models::ContrastiveOutput<float, CPU> r = pair.forward(b.pixels, b.ids, b.mask);
      accuracy += r.accuracy;
      return r.loss;
    });
    pair.clamp_logit_scale();  // OpenAI CLIP's clamp of the parameter after each update
    return std::pair{stats, Metrics{{"accuracy", accuracy / double(o.accumulation_steps)},
                                    {"temperature", 1.0 / pair.scale()}}};
  };
  hooks.loader_state = [&] { return loader->state(); };
  hooks.restore = [&](const train::ResumePoint& point) {
    loader = std::make_unique<Loader>(samples, lo, collate, point.loader);
  };
  hooks.sample = [&](int64_t) {
    NoGradGuard no_grad;
    pair.eval();
    const models::ContrastiveOutput<float, CPU> r = pair.forward(eval.pixels, eval.ids, eval.mask);
    pair.train();
    return Metrics{{"heldout_loss", r.loss.item()}, {"heldout_accuracy", r.accuracy}};
  };
  run_stage_loop("clip", o, trainer, dir, contrastive_config(c).to_json(), rng, hooks);

  NoGradGuard no_grad;
  pair.eval();
  const models::ContrastiveOutput<float, CPU> r = pair.forward(eval.pixels, eval.ids, eval.mask);
  io::SafeTensorsWriter writer;
  models::write_state(pair, writer);
  writer.write(clip_weights(out).string());
  mark_done(dir, {{"steps", o.steps},
                  {"heldout_loss", r.loss.item()},
                  {"heldout_accuracy", r.accuracy},
                  {"heldout_batch", 32}});
}

}  // namespace mentor::examples::train_pipeline
