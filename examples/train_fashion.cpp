// train_fashion: trains a small MLP classifier on Fashion-MNIST (Debian's dataset-fashion-mnist)
// with mentor's training machinery, end to end: shuffled multi-worker data loading, AdamW with
// MENTOR's recipe (β = 0.9/0.95, weight decay 0.05 on matrices, 5 % warm-up then cosine to 0.1 ×
// peak, gradient clipping at 1.0), optional gradient accumulation and bf16 compute with float32
// master weights, a progress bar, a JSONL metrics log, crash-safe checkpoints and exact resume.
//
//   train_fashion [--steps 1500] [--out runs/fashion] [--precision fp32|bf16] [--resume] ...
//
// Writes <out>/metrics.jsonl (one record per logged step, plus a final "test" record; plot with
// tools/plot_metrics.py <out>/metrics.jsonl -o loss.png) and <out>/checkpoints/step-*.{json,
// safetensors} with <out>/checkpoints/latest. Prints the loss as it falls and the final test
// accuracy. About a minute on 2 cores with the defaults (one compute thread, one loader worker).
#include <CLI/CLI.hpp>
#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <iostream>
#include <memory>
#include <string>
#include <vector>

#include "mentor/backend/cpu/parallel.hpp"
#include "mentor/data/fashion_mnist.hpp"
#include "mentor/data/loader.hpp"
#include "mentor/nn/layers.hpp"
#include "mentor/ops/ops.hpp"
#include "mentor/train/jsonl.hpp"
#include "mentor/train/progress.hpp"
#include "mentor/train/trainer.hpp"

using namespace mentor;
namespace fs = std::filesystem;

namespace {

constexpr int64_t kPixels = 28 * 28;
// Fashion-MNIST training-set pixel statistics (of value / 255).
constexpr float kMean = 0.2860f, kStd = 0.3530f;

struct Batch {
  Tensor<float> x;    // [B, 784], standardised
  Tensor<int64_t> y;  // [B]
};

Batch collate(std::vector<data::LabeledImage>&& samples) {
  const auto n = static_cast<int64_t>(samples.size());
  Tensor<float> x = Tensor<float>::empty({n, kPixels});
  std::vector<int64_t> labels;
  float* dst = x.data();
  for (const auto& s : samples) {
    for (uint8_t p : s.image.data) *dst++ = (static_cast<float>(p) / 255.0f - kMean) / kStd;
    labels.push_back(s.label);
  }
  return {x, Tensor<int64_t>::from_vector(labels, {n})};
}

// 784 -> hidden -> hidden -> 10, GELU, dropout between layers.
template <class T>
struct Classifier : nn::Module<T, CPU> {
  nn::Linear<T> fc1, fc2, head;
  double dropout_p = 0.1;

  Classifier(int64_t hidden, Generator& gen) {
    // PyTorch-like scale for a quick start: std 1/sqrt(fan_in).
    fc1 = nn::Linear<T>(kPixels, hidden, true, gen, 1.0 / std::sqrt(double(kPixels)));
    fc2 = nn::Linear<T>(hidden, hidden, true, gen, 1.0 / std::sqrt(double(hidden)));
    head = nn::Linear<T>(hidden, 10, true, gen, 1.0 / std::sqrt(double(hidden)));
  }
  void visit(nn::Visitor<T, CPU>& v) override {
    v.child("fc1", fc1);
    v.child("fc2", fc2);
    v.child("head", head);
  }
  Tensor<T> logits(const Tensor<float>& x, Generator& gen) const {
    const bool train = this->training();
    Tensor<T> h = dropout(gelu(fc1(x.template to<T>())), dropout_p, gen, train);
    h = dropout(gelu(fc2(h)), dropout_p, gen, train);
    return head(h);
  }
};

template <class T>
double accuracy(const Tensor<T>& logits, const Tensor<int64_t>& labels) {
  const auto predicted = argmax(logits, 1).to_vector();
  const auto truth = labels.to_vector();
  int64_t correct = 0;
  for (size_t i = 0; i < truth.size(); ++i) correct += predicted[i] == truth[i];
  return static_cast<double>(correct) / static_cast<double>(truth.size());
}

struct Args {
  int64_t steps = 2000;
  std::string out = "runs/fashion";
  std::string precision = "fp32";
  int64_t batch = 128;
  int64_t accumulation = 1;
  int64_t hidden = 512;
  double lr = 2e-3;
  int64_t save_every = 500;
  int64_t log_every = 10;
  int workers = 1;
  // One compute thread plus one loader worker fill 2 cores; this model is too small for a
  // parallel GEMM to pay, and spinning OpenMP threads suffer badly on a busy machine.
  int threads = 1;
  uint64_t seed = 0;
  bool resume = false;
};

template <class T>
int run(const Args& args) {
  const fs::path out = args.out, checkpoints = out / "checkpoints", metrics = out / "metrics.jsonl";
  fs::create_directories(out);
  const auto started = std::chrono::steady_clock::now();
  auto elapsed = [&] {
    return std::chrono::duration<double>(std::chrono::steady_clock::now() - started).count();
  };

  auto train_set = std::make_shared<data::FashionMnist>(data::FashionMnistSplit::train);
  const data::FashionMnist test_set(data::FashionMnistSplit::test);
  std::cout << "Fashion-MNIST: " << train_set->size() << " training and " << test_set.size()
            << " test images (loaded in " << std::lround(elapsed() * 1000) << " ms)\n";

  Generator gen(args.seed);
  Classifier<T> model(args.hidden, gen);
  train::TrainerOptions options;  // MENTOR's AdamW recipe: betas 0.9/0.95, wd 0.05, clip 1.0
  options.accumulation_steps = args.accumulation;
  options.schedule = train::WarmupCosine::mentor(args.lr, args.steps);
  train::Trainer<T> trainer(model, options);
  const nlohmann::json config = {{"example", "train_fashion"}, {"precision", args.precision},
                                 {"batch", args.batch},        {"accumulation", args.accumulation},
                                 {"hidden", args.hidden},      {"lr", args.lr},
                                 {"steps", args.steps},        {"seed", args.seed}};
  std::cout << "model: " << model.parameter_count() << " parameters, " << args.precision
            << " compute" << (std::is_same_v<T, float> ? "" : " with float32 master weights")
            << "; AdamW, warm-up " << std::get<train::WarmupCosine>(options.schedule).warmup_steps
            << " steps then cosine to 0.1x of lr " << args.lr << " over " << args.steps
            << " steps\n";

  data::LoaderOptions loader_options;
  loader_options.batch_size = args.batch;
  loader_options.drop_last = true;
  loader_options.seed = args.seed;
  loader_options.num_workers = args.workers;
  data::LoaderState start;
  auto log_mode = train::JsonlLogger::Mode::truncate;
  if (args.resume && fs::exists(checkpoints / "latest")) {
    train::ResumeOptions resume;
    resume.config = config;  // a changed batch, lr, seed, ... is refused, not silently mixed in
    const auto point = trainer.load(checkpoints, resume);
    start = point.loader;
    gen = point.rng;
    train::JsonlLogger::truncate_after(metrics, point.step);
    log_mode = train::JsonlLogger::Mode::append;
    std::cout << "resumed from " << point.checkpoint.string() << " at step " << point.step << "\n";
  }
  data::DataLoader<data::LabeledImage, Batch> loader(train_set, loader_options, collate, start);
  train::JsonlLogger log(metrics, log_mode);

  const int64_t first_step = trainer.step_count();
  train::ProgressBar bar(args.steps, "train", std::cerr);
  double window_loss = 0, window_accuracy = 0;
  int64_t window = 0;
  const int64_t report_every = std::max<int64_t>(1, args.steps / 10);
  auto window_started = std::chrono::steady_clock::now();
  while (trainer.step_count() < args.steps) {
    double batch_accuracy = 0;
    const auto stats = trainer.step([&](int64_t) {
      const Batch b = loader.next();
      const Tensor<T> logits = model.logits(b.x, gen);
      batch_accuracy += accuracy(logits.detach(), b.y) / static_cast<double>(args.accumulation);
      return cross_entropy(logits, b.y);
    });
    window_loss += stats.loss;
    window_accuracy += batch_accuracy;
    ++window;
    const double seconds =
        std::chrono::duration<double>(std::chrono::steady_clock::now() - window_started).count();
    const double images_per_second =
        static_cast<double>(window * args.batch * args.accumulation) / std::max(seconds, 1e-9);
    bar.update(stats.step, train::ProgressFields{
                               stats.loss, stats.lr, std::nullopt, {{"acc", batch_accuracy}}});
    if (stats.step % args.log_every == 0 || stats.step == args.steps) {
      const auto state = loader.state();
      log.log(stats.step, {{"loss", stats.loss},
                           {"accuracy", batch_accuracy},
                           {"lr", stats.lr},
                           {"grad_norm", stats.grad_norm},
                           {"epoch", state.epoch},
                           {"images_per_second", images_per_second}});
    }
    if (stats.step % report_every == 0 || stats.step == args.steps) {
      char line[160];
      std::snprintf(line, sizeof line,
                    "step %5lld  loss %.4f  train accuracy %5.1f%%  lr %.2e  grad norm %.3f",
                    static_cast<long long>(stats.step), window_loss / window,
                    100.0 * window_accuracy / window, stats.lr, stats.grad_norm);
      bar.message(line);
      window_loss = window_accuracy = 0;
      window = 0;
      window_started = std::chrono::steady_clock::now();
    }
    if (args.save_every > 0 && stats.step % args.save_every == 0 && stats.step != args.steps)
      trainer.save(checkpoints, loader.state(), gen, config);
  }
  bar.finish();
  const auto final_checkpoint = trainer.save(checkpoints, loader.state(), gen, config);

  // Test accuracy: the whole test set, eval mode (no dropout), no graph.
  model.eval();
  double test_loss = 0;
  int64_t correct = 0;
  {
    NoGradGuard no_grad;
    const int64_t n = test_set.size(), chunk = 1000;
    for (int64_t begin = 0; begin < n; begin += chunk) {
      std::vector<data::LabeledImage> samples;
      for (int64_t i = begin; i < std::min(n, begin + chunk); ++i)
        samples.push_back(test_set.get(i));
      const Batch b = collate(std::move(samples));
      const Tensor<T> logits = model.logits(b.x, gen);
      test_loss += static_cast<double>(static_cast<acc_t<T>>(cross_entropy(logits, b.y).item())) *
                   static_cast<double>(b.y.numel());
      correct += std::llround(accuracy(logits, b.y) * static_cast<double>(b.y.numel()));
    }
    test_loss /= static_cast<double>(n);
  }
  const double test_accuracy = static_cast<double>(correct) / static_cast<double>(test_set.size());
  log.log(trainer.step_count(), {{"test_loss", test_loss}, {"test_accuracy", test_accuracy}});
  std::printf("trained steps %lld-%lld in %.1f s; checkpoint %s\n",
              static_cast<long long>(first_step + 1), static_cast<long long>(trainer.step_count()),
              elapsed(), final_checkpoint.string().c_str());
  std::printf("test loss %.4f, test accuracy %.2f%% (%lld / %lld)\n", test_loss,
              100.0 * test_accuracy, static_cast<long long>(correct),
              static_cast<long long>(test_set.size()));
  std::printf("metrics: %s (plot: tools/plot_metrics.py %s -o loss.png)\n",
              metrics.string().c_str(), metrics.string().c_str());
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"Train a small Fashion-MNIST classifier with mentor's training machinery"};
  Args args;
  app.add_option("--steps", args.steps, "optimizer steps")->check(CLI::PositiveNumber);
  app.add_option("--out", args.out, "output folder (metrics.jsonl, checkpoints/)");
  app.add_option("--precision", args.precision, "fp32, or bf16 compute with float32 masters")
      ->check(CLI::IsMember({"fp32", "bf16"}));
  app.add_option("--batch", args.batch, "images per micro-batch")->check(CLI::PositiveNumber);
  app.add_option("--accumulation", args.accumulation, "micro-batches per optimizer step")
      ->check(CLI::PositiveNumber);
  app.add_option("--hidden", args.hidden, "hidden width")->check(CLI::PositiveNumber);
  app.add_option("--lr", args.lr, "peak learning rate")->check(CLI::PositiveNumber);
  app.add_option("--save-every", args.save_every,
                 "checkpoint every this many steps (0: only at the end)");
  app.add_option("--log-every", args.log_every, "JSONL record every this many steps")
      ->check(CLI::PositiveNumber);
  app.add_option("--workers", args.workers, "data-loader worker threads")
      ->check(CLI::NonNegativeNumber);
  app.add_option("--threads", args.threads, "compute threads (0: OpenMP's default)")
      ->check(CLI::NonNegativeNumber);
  app.add_option("--seed", args.seed, "initialisation, shuffling and dropout seed");
  app.add_flag("--resume", args.resume, "continue from <out>/checkpoints/latest if present");
  CLI11_PARSE(app, argc, argv);

  if (args.threads > 0) cpu::set_num_threads(args.threads);
  if (!data::fashion_mnist_available()) {
    std::cerr << "train_fashion: Fashion-MNIST not found in " << data::fashion_mnist_default_dir()
              << " (install Debian's dataset-fashion-mnist or set MENTOR_FASHION_MNIST_DIR)\n";
    return 2;
  }
  try {
    return train::with_precision(train::parse_precision(args.precision),
                                 [&]<class T>() { return run<T>(args); });
  } catch (const Error& error) {
    std::cerr << "train_fashion: " << error.what() << "\n";
    return 1;
  }
}
