#pragma once
// The training step and exact, resumable checkpoints, around a model of any compute type.
//
//   train::Trainer<bf16> trainer(model, train::TrainerOptions::mentor_stage(1, total_steps));
//   for (...) {
//     auto stats = trainer.step([&](int64_t micro) { return loss_of(loader.next()); });
//     if (stats.step % 1000 == 0) trainer.save(dir, loader.state(), generator, config);
//   }
//
// One step():
//   1. for each of `accumulation_steps` micro-batches: loss = micro_loss(i); loss.backward();
//      the gradients move into the float32 masters (mixed_precision.hpp);
//   2. the summed gradients are divided by the number of micro-batches, so the update is the one
//      of a single batch that many times larger (upstream MENTOR summed them: the intended recipe
//      averages);
//   3. global-norm clipping (clip.hpp), lr from the schedule at this step (schedule.hpp);
//   4. Adam/AdamW on the masters (optim.hpp), masters published back into the model, gradients
//      freed.
// A non-finite gradient norm throws (the default: resume from the last checkpoint) or skips the
// update (on_nonfinite = skip), counting the step either way.
//
// Checkpoints (checkpoint.hpp) hold model.* (parameters and buffers, in T), master.* (float32
// masters, only when T is not float), optim.m.* / optim.v.* (float32 moments), and in the manifest
// the step, the optimizer's per-parameter step counts and hyper-parameters, the schedule, the
// caller's Generator (seed, offset), every generator the model owns ("generators", by qualified
// name: e.g. the GPT's and T5's dropout generators, nn::Visitor::generator), the data loader's
// position, the trainer options and the caller's config. Loading restores all of it in place, so
// k steps + save + load + (N − k) steps gives bit-identical losses and weights to N steps on the
// CPU (tests/train/test_resume.cpp, also on a MentorModel with every dropout on).
//
// A full resume refuses trainer options (and, when given, a caller config) that differ from the
// saved ones, naming each with its saved and given value; ResumeOptions::allow_option_changes
// lists the names that may change (e.g. "schedule.peak_lr", "max_grad_norm", "config.batch_size").
//
// Freezing: freeze() marks parameters by whole-name regex as not trainable (nn::Module's
// set_trainable: requires_grad off, so backward allocates no gradient for them); build the Trainer
// afterwards so they get no master copy and no optimizer state either.
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <filesystem>
#include <functional>
#include <map>
#include <nlohmann/json.hpp>
#include <set>
#include <string>
#include <utility>
#include <vector>

#include "mentor/core/error.hpp"
#include "mentor/core/random.hpp"
#include "mentor/core/tensor.hpp"
#include "mentor/data/loader.hpp"
#include "mentor/io/json_config.hpp"
#include "mentor/nn/module.hpp"
#include "mentor/train/checkpoint.hpp"
#include "mentor/train/clip.hpp"
#include "mentor/train/mixed_precision.hpp"
#include "mentor/train/optim.hpp"
#include "mentor/train/schedule.hpp"

namespace mentor::train {

// Freezes every parameter whose qualified name matches one of `patterns` (ECMAScript regexes over
// the whole name). A pattern that matches nothing is an error: a typo must not silently train a
// tower that should be frozen. Returns the number of tensors frozen.
template <class T, class D>
int freeze(nn::Module<T, D>& module, const std::vector<std::string>& patterns) {
  int total = 0;
  for (const std::string& pattern : patterns) {
    const int matched = module.set_trainable(false, pattern);
    MENTOR_CHECK(matched > 0, "freeze: pattern \"", pattern, "\" matches no parameter");
    total += matched;
  }
  return total;
}

// Names of the trainable (requires_grad) and frozen parameters.
template <class T, class D>
std::pair<std::vector<std::string>, std::vector<std::string>> trainable_and_frozen(
    nn::Module<T, D>& module) {
  std::pair<std::vector<std::string>, std::vector<std::string>> out;
  for (auto& [name, tensor] : module.named_parameters())
    (tensor->requires_grad() ? out.first : out.second).push_back(name);
  return out;
}

struct TrainerOptions {
  enum class OptimizerKind { adamw, adam };
  enum class NonFinite { error, skip };

  OptimizerKind optimizer = OptimizerKind::adamw;
  double beta1 = 0.9;
  double beta2 = 0.95;
  double eps = 1e-8;
  double weight_decay = 0.05;  // on parameters of >= 2 dimensions only
  double max_grad_norm = 1.0;  // <= 0: no clipping
  int64_t accumulation_steps = 1;
  LrSchedule schedule = Constant{1e-4};
  NonFinite on_nonfinite = NonFinite::error;

  // mentor-system.md §4.1: AdamW (0.9, 0.95), wd 0.05 on >= 2-D, clip 1.0, 4 micro-batches per
  // step, 5 % warm-up then cosine to 0.1 × peak; peak 5e-4 (stage 1) or 1e-4 (stage 2).
  static TrainerOptions mentor_stage(int stage, int64_t total_steps) {
    MENTOR_CHECK(stage == 1 || stage == 2,
                 "TrainerOptions::mentor_stage: stage must be 1 or 2, got ", stage);
    TrainerOptions o;
    o.accumulation_steps = 4;
    o.schedule = WarmupCosine::mentor(stage == 1 ? 5e-4 : 1e-4, total_steps);
    return o;
  }
  // LlamaGen c2i: AdamW (0.9, 0.95), wd 0.05, clip 1.0, lr 1e-4 constant.
  static TrainerOptions llamagen_c2i() { return TrainerOptions{}; }

  void validate() const {
    MENTOR_CHECK(accumulation_steps >= 1, "TrainerOptions: accumulation_steps must be >= 1, got ",
                 accumulation_steps);
    MENTOR_CHECK(weight_decay >= 0, "TrainerOptions: negative weight_decay ", weight_decay);
    AdamOptions{beta1, beta2, eps}.validate("TrainerOptions");
    (void)lr_at(schedule, 0);  // validates the schedule
  }

  nlohmann::json to_json() const {
    return {{"optimizer", optimizer == OptimizerKind::adamw ? "adamw" : "adam"},
            {"beta1", beta1},
            {"beta2", beta2},
            {"eps", eps},
            {"weight_decay", weight_decay},
            {"max_grad_norm", max_grad_norm},
            {"accumulation_steps", accumulation_steps},
            {"schedule", train::to_json(schedule)},
            {"on_nonfinite", on_nonfinite == NonFinite::error ? "error" : "skip"}};
  }

  // Missing fields keep their defaults; any other key is an error.
  static TrainerOptions from_json(const nlohmann::json& j) {
    io::JsonConfigReader r(j, "TrainerOptions");
    TrainerOptions o;
    if (const auto name = r.read_string("optimizer")) {
      MENTOR_CHECK(*name == "adamw" || *name == "adam", "TrainerOptions: unknown optimizer \"",
                   *name, "\" (expected adamw or adam)");
      o.optimizer = *name == "adamw" ? OptimizerKind::adamw : OptimizerKind::adam;
    }
    r.read("beta1", o.beta1);
    r.read("beta2", o.beta2);
    r.read("eps", o.eps);
    r.read("weight_decay", o.weight_decay);
    r.read("max_grad_norm", o.max_grad_norm);
    r.read("accumulation_steps", o.accumulation_steps);
    if (const nlohmann::json* schedule = r.find("schedule"))
      o.schedule = schedule_from_json(*schedule, r.child_path("schedule"));
    if (const auto mode = r.read_string("on_nonfinite")) {
      MENTOR_CHECK(*mode == "error" || *mode == "skip", "TrainerOptions: on_nonfinite must be ",
                   "error or skip, got \"", *mode, "\"");
      o.on_nonfinite = *mode == "error" ? NonFinite::error : NonFinite::skip;
    }
    r.finish();
    o.validate();
    return o;
  }
};

struct StepStats {
  int64_t step = 0;      // optimizer steps completed, this one included
  double loss = 0;       // mean of the micro-batch losses
  double lr = 0;         // the learning rate this step used
  double grad_norm = 0;  // global gradient norm before clipping (after averaging)
  bool clipped = false;
  bool skipped = false;  // non-finite gradients, update skipped (on_nonfinite = skip)
};

// Where a loaded checkpoint left off; the caller restores its data loader and generator from it.
struct ResumePoint {
  std::filesystem::path checkpoint;  // stem
  int64_t step = 0;
  data::LoaderState loader;
  Generator rng;
  nlohmann::json config;   // the caller's config as saved
  nlohmann::json options;  // the trainer options as saved
};

enum class LoadMode {
  full,         // model, masters, optimizer state, step, model generators: an exact resume
  weights_only  // model (and masters) only: e.g. starting stage 2 from a stage-1 checkpoint
};

struct ResumeOptions {
  LoadMode mode = LoadMode::full;
  // Option names that may differ from the saved ones in a full resume: TrainerOptions::to_json
  // names, dotted into objects ("max_grad_norm", "schedule.peak_lr"; "schedule" allows all of it),
  // and "config.<key>" for the caller config; "*" allows every change. The given values win.
  std::vector<std::string> allow_option_changes;
  // This run's caller config; when not null, it must equal the saved one leaf by leaf (put the
  // batch size, data seed, ... there to have them checked too).
  nlohmann::json config;
};

namespace detail {

// Leaves of a JSON document by dotted path ("schedule.peak_lr"); arrays and scalars are leaves.
inline void flatten_json(const nlohmann::json& j, const std::string& prefix,
                         std::map<std::string, nlohmann::json>& out) {
  if (j.is_object() && !j.empty()) {
    for (const auto& [key, value] : j.items())
      flatten_json(value, prefix.empty() ? key : prefix + "." + key, out);
  } else {
    out[prefix] = j;
  }
}

inline bool option_change_allowed(const std::string& name,
                                  const std::vector<std::string>& allowed) {
  for (const std::string& a : allowed)
    if (a == "*" || a == name ||
        (name.size() > a.size() && name.starts_with(a) && name[a.size()] == '.'))
      return true;
  return false;
}

// "name: saved X, given Y" for each leaf that differs and is not allowed to.
inline std::vector<std::string> option_differences(const nlohmann::json& saved,
                                                   const nlohmann::json& given,
                                                   const std::string& prefix,
                                                   const std::vector<std::string>& allowed) {
  std::map<std::string, nlohmann::json> a, b;
  flatten_json(saved, prefix, a);
  flatten_json(given, prefix, b);
  std::set<std::string> names;
  for (const auto& [name, value] : a) names.insert(name);
  for (const auto& [name, value] : b) names.insert(name);
  std::vector<std::string> out;
  const auto show = [](const std::map<std::string, nlohmann::json>& m, const std::string& name) {
    const auto found = m.find(name);
    if (found == m.end()) return std::string("(absent)");
    std::string text = found->second.dump();
    return text.size() > 80 ? text.substr(0, 77) + "..." : text;
  };
  for (const std::string& name : names) {
    const auto x = a.find(name), y = b.find(name);
    if (x != a.end() && y != b.end() && x->second == y->second) continue;
    if (option_change_allowed(name, allowed)) continue;
    out.push_back(name + ": saved " + show(a, name) + ", given " + show(b, name));
  }
  return out;
}

inline nlohmann::json generator_to_json(const Generator& g) {
  return {{"seed", g.seed}, {"offset", g.offset}};
}
inline Generator generator_from_json(const nlohmann::json& j, const std::string& what) {
  Generator g(json_integer<uint64_t>(json_member(j, "seed", what), what + ".seed"));
  g.offset = json_integer<uint64_t>(json_member(j, "offset", what), what + ".offset");
  return g;
}

}  // namespace detail

template <FloatingElement T, class D = CPU>
class Trainer {
 public:
  Trainer(nn::Module<T, D>& model, TrainerOptions options)
      : model_(model),
        options_(std::move(options)),
        masters_(model),
        optimizer_(decay_groups<D>(masters_.named(), options_.weight_decay, /*skip_frozen=*/false),
                   AdamOptions{options_.beta1, options_.beta2, options_.eps},
                   options_.optimizer == TrainerOptions::OptimizerKind::adamw
                       ? WeightDecayMode::decoupled
                       : WeightDecayMode::l2) {
    options_.validate();
    MENTOR_CHECK(masters_.size() > 0, "Trainer: the model has no trainable parameter");
  }
  Trainer(const Trainer&) = delete;
  Trainer& operator=(const Trainer&) = delete;

  // One optimizer step over `accumulation_steps` micro-batches; micro_loss(i) returns the scalar
  // loss of micro-batch i (computed with gradients enabled).
  StepStats step(const std::function<Tensor<T, D>(int64_t micro)>& micro_loss) {
    const int64_t micro_batches = options_.accumulation_steps;
    double loss_sum = 0;
    try {
      for (int64_t micro = 0; micro < micro_batches; ++micro) {
        Tensor<T, D> loss = micro_loss(micro);
        MENTOR_CHECK(loss.defined() && loss.numel() == 1, "Trainer::step: micro-batch ", micro,
                     " returned ", loss.defined() ? loss.shape().str() : std::string("nothing"),
                     ", expected a scalar loss");
        MENTOR_CHECK(loss.requires_grad(), "Trainer::step: the loss of micro-batch ", micro,
                     " does not depend on any trainable parameter (computed under NoGradGuard?)");
        loss_sum += static_cast<double>(static_cast<acc_t<T>>(loss.detach().to_vector()[0]));
        loss.backward();
        masters_.accumulate_grads();
      }
    } catch (...) {
      masters_.zero_grad();  // a failed step must not leak its partial gradients into the next
      throw;
    }
    auto params = masters_.pointers();
    if (micro_batches > 1) scale_grads(params, 1.0 / static_cast<double>(micro_batches));

    StepStats stats;
    stats.loss = loss_sum / static_cast<double>(micro_batches);
    stats.lr = lr_at(options_.schedule, step_);
    stats.grad_norm = clip_grad_norm(params, options_.max_grad_norm);
    stats.clipped = options_.max_grad_norm > 0 && stats.grad_norm + 1e-6 > options_.max_grad_norm;
    if (!std::isfinite(stats.grad_norm)) {
      masters_.zero_grad();
      MENTOR_CHECK(
          options_.on_nonfinite == TrainerOptions::NonFinite::skip, "Trainer::step ", step_,
          ": the gradient norm is ", stats.grad_norm, " (loss ", stats.loss,
          "); resume from the last checkpoint with a lower lr, or set on_nonfinite = skip");
      stats.skipped = true;
    } else {
      optimizer_.step(stats.lr);
      masters_.publish();
      masters_.zero_grad();
    }
    stats.step = ++step_;
    return stats;
  }

  int64_t step_count() const { return step_; }
  double next_lr() const { return lr_at(options_.schedule, step_); }
  const TrainerOptions& options() const { return options_; }
  nn::Module<T, D>& model() { return model_; }
  MasterWeights<T, D>& masters() { return masters_; }
  AdamOptimizer<D>& optimizer() { return optimizer_; }

  // The checkpoint file name of a step: step-00001234.
  static std::string checkpoint_name(int64_t step) {
    char name[32];
    std::snprintf(name, sizeof name, "step-%08lld", static_cast<long long>(step));
    return name;
  }

  // Saves <dir>/step-<step>.{safetensors,json}, points <dir>/latest at it, and keeps the newest
  // `keep_last` checkpoints (0: keep all). Returns the stem.
  std::filesystem::path save(const std::filesystem::path& dir, const data::LoaderState& loader,
                             const Generator& rng, const nlohmann::json& config = {},
                             int keep_last = 3) {
    CheckpointWriter writer;
    writer.add_all("model.", model_.state());
    if constexpr (!MasterWeights<T, D>::kAliasesModel) writer.add_all("master.", masters_.named());
    for (const auto& [name, state] : optimizer_.state()) {
      writer.add("optim.m." + name, state.m);
      writer.add("optim.v." + name, state.v);
    }
    auto& manifest = writer.manifest();
    manifest["step"] = step_;
    manifest["model_dtype"] = std::string(dtype_name<T>());
    manifest["optimizer"] = optimizer_.to_json();
    manifest["trainer"] = options_.to_json();
    manifest["rng"] = detail::generator_to_json(rng);
    if (!omit_generators_) {
      nlohmann::json generators = nlohmann::json::object();
      for (const auto& [name, generator] : model_.named_generators())
        generators[name] = detail::generator_to_json(*generator);
      manifest["generators"] = std::move(generators);
    }
    manifest["loader"] = loader;
    manifest["config"] = config;
    const auto stem = writer.commit(dir, checkpoint_name(step_));
    for (const auto& bad : prune_checkpoints(dir, keep_last).skipped)
      std::fprintf(stderr, "mentor: warning: not pruning %s: %s\n", bad.manifest.c_str(),
                   bad.reason.c_str());
    return stem;
  }

  // Test-only: save() leaves the model's generators out and load() does not restore them, so a
  // test can show that a resume without them diverges. Never for real training.
  void omit_generators_for_testing(bool omit = true) { omit_generators_ = omit; }

  // Restores a checkpoint (a directory means its latest) into the model, masters, optimizer and
  // step counter. Everything is validated before anything is modified: a checkpoint from another
  // architecture, trainable set or compute type, or a damaged file, throws and leaves the trainer
  // as it was.
  ResumePoint load(const std::filesystem::path& path, LoadMode mode = LoadMode::full) {
    ResumeOptions options;
    options.mode = mode;
    return load(path, options);
  }
  ResumePoint load(const std::filesystem::path& path, const ResumeOptions& resume) {
    const LoadMode mode = resume.mode;
    const CheckpointReader reader = CheckpointReader::open(path);
    const nlohmann::json& manifest = reader.manifest();
    const std::string where = "checkpoint " + reader.stem().string() + ": ";

    std::vector<std::pair<std::string, TensorSignature>> model_expected;
    for (auto& [name, tensor] : model_.state())
      model_expected.emplace_back(name, signature_of<T>(tensor->shape()));
    reader.check_tensors("model.", model_expected, "model");

    const bool has_masters = !MasterWeights<T, D>::kAliasesModel;
    std::vector<std::pair<std::string, TensorSignature>> master_expected;
    if (has_masters)
      for (auto& [name, tensor] : masters_.named())
        master_expected.emplace_back(name, signature_of<float>(tensor->shape()));
    if (mode == LoadMode::full) {
      reader.check_tensors("master.", master_expected, "set of trainable parameters (masters)");
      try {
        check_optimizer(reader);
      } catch (const nlohmann::json::exception& error) {
        throw Error(where + "manifest has a malformed \"optimizer\": " + error.what());
      }
    }

    ResumePoint point;
    point.checkpoint = reader.stem();
    std::vector<std::pair<Generator*, Generator>> generators;  // model generator -> saved state
    std::vector<std::pair<std::string, int64_t>> param_steps;
    try {
      point.step =
          detail::json_integer<int64_t>(detail::json_member(manifest, "step", "manifest"), "step");
      MENTOR_CHECK(point.step >= 0, "negative step ", point.step);
      const auto& loader = detail::json_member(manifest, "loader", "manifest");
      point.loader.epoch = detail::json_integer<int64_t>(
          detail::json_member(loader, "epoch", "loader"), "loader.epoch");
      point.loader.batch_index = detail::json_integer<int64_t>(
          detail::json_member(loader, "batch_index", "loader"), "loader.batch_index");
      point.rng =
          detail::generator_from_json(detail::json_member(manifest, "rng", "manifest"), "rng");
      point.config = manifest.value("config", nlohmann::json());
      point.options = manifest.value("trainer", nlohmann::json());
      if (mode == LoadMode::full && !omit_generators_) {
        MENTOR_CHECK(manifest.contains("generators"),
                     "no \"generators\": the model's random generators were not saved, so this "
                     "checkpoint cannot resume exactly (LoadMode::weights_only loads its weights)");
        const auto& saved = manifest.at("generators");
        MENTOR_CHECK(saved.is_object(), "\"generators\" must be an object");
        std::set<std::string> ours;
        for (const auto& [name, generator] : model_.named_generators()) {
          ours.insert(name);
          MENTOR_CHECK(saved.contains(name), "no state for the model's generator '", name,
                       "' (saved from a different model?)");
          generators.emplace_back(
              generator, detail::generator_from_json(saved.at(name), "generators." + name));
        }
        for (const auto& [name, value] : saved.items())
          MENTOR_CHECK(ours.count(name), "generator '", name,
                       "' in the checkpoint is not a generator of this model");
      }
      if (mode == LoadMode::full) {
        const auto& steps = detail::json_member(
            detail::json_member(manifest, "optimizer", "manifest"), "param_steps", "optimizer");
        MENTOR_CHECK(steps.is_object(), "optimizer.param_steps must be an object");
        for (const auto& [name, count] : steps.items()) {
          param_steps.emplace_back(
              name, detail::json_integer<int64_t>(count, "optimizer.param_steps." + name));
          MENTOR_CHECK(param_steps.back().second >= 0, "optimizer.param_steps.", name,
                       " is negative");
        }
        std::vector<std::string> changed = detail::option_differences(
            point.options, options_.to_json(), "", resume.allow_option_changes);
        if (!resume.config.is_null()) {
          const auto more = detail::option_differences(point.config, resume.config, "config",
                                                       resume.allow_option_changes);
          changed.insert(changed.end(), more.begin(), more.end());
        }
        if (!changed.empty()) {
          std::string text;
          for (const std::string& c : changed) text += (text.empty() ? "" : "; ") + c;
          throw Error(mentor::detail::concat(
              changed.size(), " option(s) differ from the saved run: ", text,
              " (list the names in ResumeOptions::allow_option_changes to change them on "
              "purpose)"));
        }
      }
    } catch (const nlohmann::json::exception& error) {
      throw Error(where + "manifest has a malformed training field: " + error.what());
    } catch (const Error& error) {
      throw Error(where + error.what());
    }

    // Validated: now copy.
    for (auto& [name, tensor] : model_.state()) reader.read_into("model." + name, *tensor);
    if (has_masters) {
      for (auto& [name, tensor] : masters_.named()) {
        if (reader.contains("master." + name))
          reader.read_into("master." + name, *tensor);
        else
          tensor->copy_(model_tensor(name)->detach().template to<float>());
      }
    }
    masters_.zero_grad();
    if (mode == LoadMode::full) {
      optimizer_.clear_state();
      for (const auto& [name, count] : param_steps)
        optimizer_.set_state(name, reader.read<float, D>("optim.m." + name),
                             reader.read<float, D>("optim.v." + name), count);
      for (auto& [generator, saved] : generators) *generator = saved;
      step_ = point.step;
    }
    return point;
  }

 private:
  Tensor<T, D>* model_tensor(const std::string& name) {
    for (auto& [n, tensor] : model_.named_parameters())
      if (n == name) return tensor;
    throw Error(mentor::detail::concat("Trainer: no model parameter '", name, "'"));
  }

  // The optimizer in the checkpoint must be the same kind, over the same parameters in the same
  // decay groups, with moments of the right shapes.
  void check_optimizer(const CheckpointReader& reader) const {
    const auto& saved = reader.manifest().at("optimizer");
    const std::string where = "checkpoint " + reader.stem().string() + ": ";
    MENTOR_CHECK(saved.value("type", "") == optimizer_.name(), where, "optimizer is ",
                 saved.value("type", "?"), ", this trainer uses ", optimizer_.name());
    std::map<std::string, double> saved_decay, our_decay;
    for (const auto& group : saved.at("groups"))
      for (const auto& name : group.at("params"))
        saved_decay[name.get<std::string>()] = group.at("weight_decay").get<double>();
    std::vector<std::pair<std::string, TensorSignature>> moments;
    for (const auto& group : optimizer_.groups())
      for (const auto& [name, tensor] : group.params) our_decay[name] = group.weight_decay;
    std::vector<std::string> problems;
    for (const auto& [name, decay] : our_decay) {
      const auto found = saved_decay.find(name);
      if (found == saved_decay.end())
        problems.push_back(name + " is trainable here but was not in the saved optimizer");
      else if (found->second != decay)
        problems.push_back(mentor::detail::concat(name, " has weight decay ", decay, " here, ",
                                                  found->second, " in the checkpoint"));
    }
    for (const auto& [name, decay] : saved_decay)
      if (!our_decay.count(name))
        problems.push_back(name + " was trainable in the checkpoint but is frozen or absent here");
    if (!problems.empty()) {
      std::string text;
      for (size_t i = 0; i < problems.size() && i < 20; ++i) text += (i ? "; " : "") + problems[i];
      throw Error(where + "optimizer parameters differ (" + std::to_string(problems.size()) +
                  "): " + text + (problems.size() > 20 ? "; ..." : "") +
                  " (use LoadMode::weights_only to start a new stage from these weights)");
    }
    for (const auto& [name, count] : saved.at("param_steps").items()) {
      Tensor<float, D>* param = optimizer_.find_param(name);
      MENTOR_CHECK(param != nullptr, where, "optimizer state for '", name,
                   "', which is not a parameter of this optimizer");
      const TensorSignature s = signature_of<float>(param->shape());
      moments.emplace_back("m." + name, s);
      moments.emplace_back("v." + name, s);
    }
    reader.check_tensors("optim.", moments, "optimizer state");
  }

  nn::Module<T, D>& model_;
  TrainerOptions options_;
  MasterWeights<T, D> masters_;
  AdamOptimizer<D> optimizer_;
  int64_t step_ = 0;
  bool omit_generators_ = false;
};

}  // namespace mentor::train
