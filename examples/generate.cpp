// generate: a prompt and reference images (MENTOR), a class label (LlamaGen c2i) or T5 caption
// features (LlamaGen t2i) -> one PNG per sample and a grid, each PNG carrying the parameters that
// made it, so that `generate --from-png FILE` makes the same bytes again.
//
//   generate --checkpoint runs/mentor/checkpoints --tokenizer spiece.model --vq vq.safetensors
//       --prompt "A cat in <image>.\n A cat in a 16-bit fantasy pixel-art scene" --image cat.png
//       --n 4 --out out
//   generate --from-png out/0000-seed0.png --out again
//
// The stages, and why they are ordered so: every input is checked (options, requests, reference
// images, tokenizer, output folder) before the model is read, so a mistake costs no model load;
// each request's condition is encoded alone (batch 1), so its features cannot depend on the
// batch; the CPU float32 path decodes with generate::CpuGeneration, whose tokens depend only on
// the request and its seed; each sample is decoded to pixels alone, for the same reason.
// docs/generation.md ("The generate program") describes the options and the metadata.
#include <unistd.h>

#include <CLI/CLI.hpp>
#include <algorithm>
#include <cerrno>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <map>
#include <memory>
#include <nlohmann/json.hpp>
#include <optional>
#include <regex>
#include <set>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "mentor/backend/cpu/parallel.hpp"
#include "mentor/data/image.hpp"
#include "mentor/data/png_text.hpp"
#include "mentor/generate/generate.hpp"
#if defined(MENTOR_WITH_CUDA)
#include "mentor/generate/cuda_decoder.hpp"
#endif
#include "mentor/io/atomic_file.hpp"
#include "mentor/io/safetensors.hpp"
#include "mentor/models/gpt.hpp"
#include "mentor/models/mentor.hpp"
#include "mentor/models/vq.hpp"
#include "mentor/nn/state_dict.hpp"
#include "mentor/ops/shape_ops.hpp"
#include "mentor/text/tokenizer.hpp"
#include "mentor/train/checkpoint.hpp"
#include "mentor/train/load.hpp"
#include "mentor/train/progress.hpp"

#ifndef MENTOR_GENERATE_VERSION
#define MENTOR_GENERATE_VERSION "unknown"
#endif

using namespace mentor;
namespace fs = std::filesystem;
using json = nlohmann::json;

namespace {

constexpr const char* kTextKey = "mentor-generate";  // the PNG tEXt key of the parameters
constexpr int kFormatVersion = 1;
constexpr const char* kImageMarker = "<image>";
constexpr int64_t kMaxSamplesPerRequest = 100000;
constexpr const char* kShippedModelDir = MENTOR_SHIPPED_MODEL_DIR;
constexpr size_t kMaxGridSamples = 256;  // a larger run's grid shows its first 256 samples

// Every failure the user can cause ends here: main prints "generate: error: " and the message.
template <class... Parts>
[[noreturn]] void fail(const Parts&... parts) {
  throw Error(mentor::detail::concat(parts...));
}

std::string quoted(const fs::path& path) { return "\"" + path.string() + "\""; }

fs::path absolute_path(const fs::path& path) { return fs::absolute(path).lexically_normal(); }

// ---- hashes -------------------------------------------------------------------------------------

std::string hash_file_bytes(const fs::path& path, const std::string& role) {
  std::error_code error;
  if (!fs::is_regular_file(path, error))
    fail("the ", role, " ", quoted(path), " does not exist or is not a file");
  const auto size = fs::file_size(path, error);
  if (error) fail("cannot read the ", role, " ", quoted(path), ": ", error.message());
  if (size < 8) {  // the mapping below refuses files this short
    std::ifstream in(path, std::ios::binary);
    std::string bytes((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
    if (!in.good() && !in.eof()) fail("cannot read the ", role, " ", quoted(path));
    return train::hex64(train::xxh64(bytes.data(), bytes.size()));
  }
  try {
    return train::file_xxh64(path);
  } catch (const Error& e) {
    fail("cannot read the ", role, " ", quoted(path), " to hash it (", e.what(), ")");
  }
}

// XXH64 (train/checkpoint.hpp) of a file's bytes, as 16 hex digits; each file is read once per run
// (--from-png checks a file's hash before the model is built from it).
std::string hash_file(const fs::path& path, const std::string& role) {
  static std::map<fs::path, std::string> known;
  const fs::path key = absolute_path(path);
  const auto found = known.find(key);
  if (found != known.end()) return found->second;
  return known[key] = hash_file_bytes(path, role);
}

json file_record(const fs::path& path, const std::string& role) {
  return {{"path", absolute_path(path).string()}, {"xxh64", hash_file(path, role)}};
}

// ---- the model's files --------------------------------------------------------------------------

enum class Arch { Mentor, TextToImage, ClassToImage };

std::string arch_name(Arch arch) {
  return arch == Arch::Mentor        ? "mentor"
         : arch == Arch::TextToImage ? "llamagen-t2i"
                                     : "llamagen-c2i";
}

struct ModelFiles {
  Arch arch = Arch::Mentor;
  bool is_checkpoint = false;  // a mentor training checkpoint (else a safetensors file + config)
  fs::path weights;            // the checkpoint's stem, or the safetensors file
  models::MentorConfig mentor;
  models::GPTConfig gpt;  // mentor.gpt for MENTOR
  std::optional<fs::path> vq, tokenizer;
  models::VQConfig vq_config;  // mentor.vq for MENTOR; --vq-config or VQ-16 for LlamaGen
  json record;                 // "model" in the metadata: kind and every file with its hash
};

json read_json_file(const fs::path& path, const std::string& role) {
  std::ifstream in(path);
  if (!in.good()) fail("cannot open the ", role, " ", quoted(path));
  try {
    return json::parse(in);
  } catch (const json::exception& e) {
    fail("the ", role, " ", quoted(path), " is not valid JSON (", e.what(), ")");
  }
}

// A MENTOR configuration has "encoder", "gpt" or "vq" parts; anything else is a GPT's.
bool is_mentor_config(const json& config) {
  return config.is_object() &&
         (config.contains("encoder") || config.contains("gpt") || config.contains("vq"));
}

// A folder, or a path whose <stem>.json is a mentor checkpoint manifest (a model.json config
// beside model.safetensors is not one).
bool is_training_checkpoint(const fs::path& path) {
  std::error_code error;
  if (fs::is_directory(path, error)) return true;
  std::ifstream in(train::manifest_path(train::resolve_checkpoint(path)));
  if (!in.good()) return false;
  const json manifest = json::parse(in, nullptr, /*allow_exceptions=*/false);
  return manifest.is_object() && manifest.value("format", json()) == "mentor.checkpoint";
}

ModelFiles model_files(const fs::path& checkpoint, const std::optional<fs::path>& config_file,
                       const std::optional<fs::path>& vq, const std::optional<fs::path>& vq_config,
                       const std::optional<fs::path>& tokenizer) {
  ModelFiles m;
  std::error_code error;
  if (checkpoint.empty()) fail("--config needs --checkpoint (the safetensors file it describes)");
  if (!fs::exists(checkpoint, error)) {
    const fs::path stem = train::resolve_checkpoint(checkpoint);
    if (!fs::exists(train::manifest_path(stem), error))
      fail("the checkpoint ", quoted(checkpoint), " does not exist");
  }
  m.is_checkpoint = is_training_checkpoint(checkpoint);
  json config;
  m.record = json::object();
  if (m.is_checkpoint) {
    if (config_file)
      fail("--config is for a safetensors file; the checkpoint ", quoted(checkpoint),
           " carries its own configuration");
    try {
      m.weights = train::resolve_checkpoint(checkpoint);
    } catch (const Error& e) {
      fail("cannot open the checkpoint ", quoted(checkpoint), ": ", e.what());
    }
    const json manifest = read_json_file(train::manifest_path(m.weights), "checkpoint manifest");
    if (!manifest.is_object() || !manifest.contains("config") || !manifest["config"].is_object() ||
        manifest["config"].empty())
      fail("the checkpoint ", quoted(m.weights), " has no model configuration in its manifest ",
           "(\"config\"): save it with Trainer::save(dir, loader, rng, model.config().to_json())");
    config = manifest["config"];
    m.record["checkpoint"] = file_record(train::data_path(m.weights), "checkpoint");
    m.record["manifest"] = file_record(train::manifest_path(m.weights), "checkpoint manifest");
  } else {
    if (!config_file)
      fail("the checkpoint ", quoted(checkpoint), " is a weights file without a mentor manifest: ",
           "give its model configuration with --config CONFIG.json (a MentorConfig or GPTConfig)");
    m.weights = checkpoint;
    config = read_json_file(*config_file, "model configuration");
    m.record["checkpoint"] = file_record(checkpoint, "checkpoint");
    m.record["config"] = file_record(*config_file, "model configuration");
  }
  const std::string where = config_file ? quoted(*config_file) : "of " + quoted(m.weights);
  try {
    if (is_mentor_config(config)) {
      m.arch = Arch::Mentor;
      m.mentor = models::MentorConfig::from_json(config);
      m.gpt = m.mentor.gpt;
      m.vq_config = m.mentor.vq;
    } else {
      m.gpt = models::GPTConfig::from_json(config);
      m.arch = m.gpt.is_c2i() ? Arch::ClassToImage : Arch::TextToImage;
    }
  } catch (const Error& e) {
    fail("the model configuration ", where, " does not build a model: ", e.what());
  }
  m.record["kind"] = arch_name(m.arch);
  if (vq_config) {
    if (m.arch == Arch::Mentor)
      fail("--vq-config is for LlamaGen models; a MENTOR configuration holds its VQ's (\"vq\")");
    try {
      m.vq_config = models::VQConfig::from_json(read_json_file(*vq_config, "VQ configuration"));
    } catch (const Error& e) {
      fail("the VQ configuration ", quoted(*vq_config), " is not usable: ", e.what());
    }
    m.record["vq_config"] = file_record(*vq_config, "VQ configuration");
  } else if (m.arch != Arch::Mentor) {
    m.vq_config = models::VQConfig::vq_16();
  }
  if (vq) {
    if (m.vq_config.codebook_size != m.gpt.vocab_size)
      fail("the VQ has ", m.vq_config.codebook_size, " codes (codebook_size) but the GPT predicts ",
           m.gpt.vocab_size, " (vocab_size): give the VQ the model was trained with",
           m.arch == Arch::Mentor ? "" : " (and its --vq-config)");
    m.vq = vq;
    m.record["vq"] = file_record(*vq, "VQ checkpoint");
  }
  if (tokenizer) {
    if (m.arch != Arch::Mentor)
      fail("--tokenizer is for MENTOR models; a LlamaGen ",
           m.arch == Arch::ClassToImage ? "c2i model takes --class-label"
                                        : "t2i model takes --caption-features");
    m.tokenizer = tokenizer;
    m.record["tokenizer"] = file_record(*tokenizer, "tokenizer");
  }
  return m;
}

// ---- requests -----------------------------------------------------------------------------------

struct Request {
  std::string origin;  // "--prompt" or "requests.jsonl line 3", for messages
  std::string prompt;
  bool has_prompt = false;
  std::vector<fs::path> images;
  std::optional<int64_t> class_label;
  std::optional<fs::path> caption_features;
  uint64_t seed = 0;
  int64_t n = 1;
  double cfg = 1.0;
  int64_t cfg_interval = -1;
  generate::SamplingParams sampling;
  bool truncate = true;
};

// Upstream's defaults (mentor-system.md section 5): MENTOR's demo, LlamaGen's t2i and c2i demos.
void apply_defaults(Arch arch, Request& r) {
  r.sampling.top_p = 1.0;
  if (arch == Arch::Mentor) {
    r.cfg = 2.5;
    r.sampling.temperature = 0.9;
    r.sampling.top_k = 5000;
  } else if (arch == Arch::TextToImage) {
    r.cfg = 7.5;
    r.sampling.temperature = 1.0;
    r.sampling.top_k = 1000;
  } else {
    r.cfg = 4.0;
    r.sampling.temperature = 1.0;
    r.sampling.top_k = 2000;
  }
}

int64_t count_markers(std::string_view prompt) {
  int64_t count = 0;
  const std::string_view marker = kImageMarker;
  for (size_t at = prompt.find(marker); at != std::string_view::npos;
       at = prompt.find(marker, at + marker.size()))
    ++count;
  return count;
}

void check_request(const Request& r, const ModelFiles& m) {
  try {
    r.sampling.validate();
  } catch (const Error& e) {
    fail(r.origin, ": ", e.what());
  }
  if (!std::isfinite(r.cfg) || r.cfg < 0)
    fail(r.origin, ": cfg ", r.cfg, " is not a finite value >= 0 (<= 1 turns guidance off)");
  if (r.cfg_interval < -1)
    fail(r.origin, ": cfg_interval ", r.cfg_interval,
         " must be -1 (guidance on every token) or a token index");
  if (r.n < 1 || r.n > kMaxSamplesPerRequest)
    fail(r.origin, ": n ", r.n, " is outside [1, ", kMaxSamplesPerRequest, "]");
  if (r.seed > UINT64_MAX - static_cast<uint64_t>(r.n - 1))
    fail(r.origin, ": seeds ", r.seed, " + ", r.n, " samples overflow 64 bits");
  switch (m.arch) {
    case Arch::Mentor: {
      if (r.class_label) fail(r.origin, ": a MENTOR model takes a prompt, not a class label");
      if (r.caption_features)
        fail(r.origin, ": a MENTOR model takes a prompt, not caption features");
      if (!r.has_prompt) fail(r.origin, ": a MENTOR model needs a prompt (--prompt)");
      const int64_t markers = count_markers(r.prompt);
      const auto images = static_cast<int64_t>(r.images.size());
      if (markers != images)
        fail(r.origin, ": the prompt has ", markers, " ", kImageMarker, " marker",
             markers == 1 ? "" : "s", " but ", images, " reference image", images == 1 ? "" : "s",
             images == 1 ? " was" : " were",
             " given (--image): give one image per marker, in order");
      if (!m.tokenizer)
        fail(
            "a MENTOR model needs --tokenizer spiece.model (T5's SentencePiece model) to read "
            "the prompt");
      break;
    }
    case Arch::ClassToImage:
      if (r.has_prompt || !r.images.empty() || r.caption_features)
        fail(r.origin, ": a class-conditional LlamaGen model takes --class-label, not a prompt, ",
             "images or caption features");
      if (!r.class_label)
        fail(r.origin, ": a class-conditional LlamaGen model needs --class-label");
      if (*r.class_label < 0 || *r.class_label >= m.gpt.num_classes)
        fail(r.origin, ": class label ", *r.class_label, " is outside [0, ", m.gpt.num_classes,
             ") (num_classes)");
      break;
    case Arch::TextToImage:
      if (r.has_prompt || !r.images.empty() || r.class_label)
        fail(r.origin, ": a LlamaGen t2i model takes T5 caption features (--caption-features ",
             "FILE.safetensors); this program does not run T5 on text");
      if (!r.caption_features)
        fail(r.origin, ": a LlamaGen t2i model needs --caption-features FILE.safetensors");
      break;
  }
}

// Typed reads of a JSONL request's values; errors name the line and key.
struct LineReader {
  const json& object;
  std::string where;

  const json* find(const char* key) const {
    const auto it = object.find(key);
    return it == object.end() || it->is_null() ? nullptr : &*it;
  }
  [[noreturn]] void wrong(const char* key, const char* expected) const {
    fail(where, ": \"", key, "\" must be ", expected, ", not ", object.at(key).dump());
  }
  void read(const char* key, double& out) const {
    if (const json* v = find(key)) {
      if (!v->is_number()) wrong(key, "a number");
      out = v->get<double>();
    }
  }
  void read(const char* key, int64_t& out) const {
    if (const json* v = find(key)) {
      if (!v->is_number_integer()) wrong(key, "an integer");
      if (v->is_number_unsigned() && v->get<uint64_t>() > static_cast<uint64_t>(INT64_MAX))
        wrong(key, "an integer that fits in 64 bits");
      out = v->get<int64_t>();
    }
  }
  void read(const char* key, uint64_t& out) const {
    if (const json* v = find(key)) {
      if (!v->is_number_integer() || (!v->is_number_unsigned() && v->get<int64_t>() < 0))
        wrong(key, "an integer >= 0");
      out = v->get<uint64_t>();
    }
  }
  void read(const char* key, bool& out) const {
    if (const json* v = find(key)) {
      if (!v->is_boolean()) wrong(key, "true or false");
      out = v->get<bool>();
    }
  }
  void read(const char* key, std::string& out) const {
    if (const json* v = find(key)) {
      if (!v->is_string()) wrong(key, "a string");
      out = v->get<std::string>();
    }
  }
};

std::vector<Request> read_requests(const fs::path& file, const Request& base) {
  std::ifstream in(file);
  if (!in.good()) fail("cannot open the requests file ", quoted(file));
  static const std::set<std::string> known = {
      "prompt", "images", "class_label",  "caption_features", "seed",
      "n",      "cfg",    "cfg_interval", "temperature",      "top_k",
      "top_p",  "min_p",  "greedy",       "truncate"};
  const fs::path folder = file.parent_path();
  const auto resolve = [&](const std::string& path) {
    const fs::path p(path);
    return p.is_absolute() || folder.empty() ? p : folder / p;
  };
  std::vector<Request> out;
  std::string line;
  for (int64_t number = 1; std::getline(in, line); ++number) {
    if (line.find_first_not_of(" \t\r") == std::string::npos) continue;
    const std::string where = file.filename().string() + " line " + std::to_string(number);
    json object;
    try {
      object = json::parse(line);
    } catch (const json::exception& e) {
      fail(where, ": not a JSON object (", e.what(), ")");
    }
    if (!object.is_object()) fail(where, ": not a JSON object but ", object.type_name());
    for (const auto& [key, value] : object.items())
      if (!known.count(key)) {
        std::string names;
        for (const auto& k : known) names += (names.empty() ? "" : ", ") + k;
        fail(where, ": unknown key \"", key, "\" (known: ", names, ")");
      }
    const LineReader r{object, where};
    Request q = base;
    q.origin = where;
    if (r.find("prompt")) {
      r.read("prompt", q.prompt);
      q.has_prompt = true;
    }
    if (const json* images = r.find("images")) {
      if (!images->is_array()) r.wrong("images", "an array of image paths");
      for (const json& image : *images) {
        if (!image.is_string()) r.wrong("images", "an array of image paths");
        q.images.push_back(resolve(image.get<std::string>()));
      }
    }
    if (r.find("class_label")) {
      int64_t label = 0;
      r.read("class_label", label);
      q.class_label = label;
    }
    if (r.find("caption_features")) {
      std::string path;
      r.read("caption_features", path);
      q.caption_features = resolve(path);
    }
    r.read("seed", q.seed);
    r.read("n", q.n);
    r.read("cfg", q.cfg);
    r.read("cfg_interval", q.cfg_interval);
    r.read("temperature", q.sampling.temperature);
    r.read("top_k", q.sampling.top_k);
    r.read("top_p", q.sampling.top_p);
    r.read("min_p", q.sampling.min_p);
    r.read("greedy", q.sampling.greedy);
    r.read("truncate", q.truncate);
    out.push_back(std::move(q));
  }
  if (in.bad()) fail("error while reading the requests file ", quoted(file));
  if (out.empty()) fail("the requests file ", quoted(file), " holds no request");
  return out;
}

// ---- the plan -----------------------------------------------------------------------------------

struct Plan {
  ModelFiles model;
  std::vector<Request> requests;
  fs::path out;
  std::string device = "cpu", dtype = "float32";
  int64_t batch = 8;
  // --from-png: the source file (its name is kept) and the parameters it recorded.
  std::optional<fs::path> from_png;
  std::string recorded_text;
};

struct Options {
  std::string checkpoint, config, vq, vq_config, tokenizer;
  std::string prompt, requests, caption_features, out = "generated", from_png;
  std::vector<std::string> images;
  int64_t class_label = 0;
  std::string device = "cpu", dtype = "float32";
  double cfg = 1.0, temperature = 1.0, top_p = 1.0, min_p = 0.0;
  int64_t top_k = 0, cfg_interval = -1, n = 1, batch = 8;
  uint64_t seed = 0;
  bool greedy = false, truncate = true;
  int threads = 0;
};

std::optional<fs::path> optional_path(const std::string& text) {
  return text.empty() ? std::nullopt : std::optional<fs::path>(text);
}

bool given(const CLI::App& app, const char* name) { return app.get_option(name)->count() > 0; }

void check_device(const std::string& device, const std::string& dtype) {
  if (device != "cpu" && device != "cuda") fail("--device ", device, " is not cpu or cuda");
  if (dtype != "float32" && dtype != "bfloat16")
    fail("--dtype ", dtype, " is not float32 or bfloat16");
  if (device == "cuda" && !cuda_built)
    fail(
        "--device cuda: this build of mentor has no CUDA backend (CMake found no nvcc); use "
        "--device cpu");
}

Plan plan_from_options(const Options& o, const CLI::App& app) {
  Plan plan;
  plan.device = o.device;
  plan.dtype = o.dtype;
  check_device(plan.device, plan.dtype);
  if (o.batch < 1) fail("--batch ", o.batch, " must be >= 1");
  plan.batch = o.batch;
  plan.out = o.out;
  // No --checkpoint: the shipped model (docs/model: trained by examples/train with
  // configs/tiny.json, stored in bfloat16), with its VQ and tokenizer unless those are given.
  Options chosen = o;
  if (o.checkpoint.empty() && o.config.empty()) {
    const fs::path shipped = kShippedModelDir;
    std::error_code error;
    if (!fs::exists(shipped / "mentor.safetensors", error))
      fail("no --checkpoint given and no shipped model at ", quoted(shipped / "mentor.safetensors"),
           " (docs/training.md makes one)");
    chosen.checkpoint = (shipped / "mentor.safetensors").string();
    chosen.config = (shipped / "mentor.json").string();
    if (chosen.vq.empty()) chosen.vq = (shipped / "vq.safetensors").string();
    if (chosen.tokenizer.empty()) chosen.tokenizer = (shipped / "spiece.model").string();
  }
  plan.model =
      model_files(chosen.checkpoint, optional_path(chosen.config), optional_path(chosen.vq),
                  optional_path(chosen.vq_config), optional_path(chosen.tokenizer));
  Request base;
  apply_defaults(plan.model.arch, base);
  if (given(app, "--cfg")) base.cfg = o.cfg;
  if (given(app, "--temperature")) base.sampling.temperature = o.temperature;
  if (given(app, "--top-k")) base.sampling.top_k = o.top_k;
  if (given(app, "--top-p")) base.sampling.top_p = o.top_p;
  base.sampling.min_p = o.min_p;
  base.sampling.greedy = o.greedy;
  base.cfg_interval = o.cfg_interval;
  base.seed = o.seed;
  base.n = o.n;
  base.truncate = o.truncate;
  const bool inline_request = given(app, "--prompt") || given(app, "--image") ||
                              given(app, "--class-label") || given(app, "--caption-features");
  if (!o.requests.empty()) {
    if (inline_request)
      fail("give the requests in --requests FILE.jsonl or on the command line (--prompt, --image, ",
           "--class-label, --caption-features), not both");
    plan.requests = read_requests(o.requests, base);
  } else {
    if (!inline_request)
      fail("nothing to generate: give --prompt (MENTOR), --class-label (LlamaGen c2i), ",
           "--caption-features (LlamaGen t2i) or --requests FILE.jsonl");
    Request r = base;
    r.origin = "the command line";
    r.has_prompt = given(app, "--prompt");
    r.prompt = o.prompt;
    for (const auto& image : o.images) r.images.emplace_back(image);
    if (given(app, "--class-label")) r.class_label = o.class_label;
    r.caption_features = optional_path(o.caption_features);
    plan.requests.push_back(std::move(r));
  }
  for (const Request& r : plan.requests) check_request(r, plan.model);
  return plan;
}

// The files a PNG's parameters name, checked against their recorded hashes before anything runs.
void verify_record(const json& record, const std::string& role, const fs::path& png) {
  if (!record.is_object() || !record.contains("path") || !record.contains("xxh64") ||
      !record["path"].is_string() || !record["xxh64"].is_string())
    fail("--from-png ", quoted(png), ": its record of the ", role, " is damaged: ", record.dump());
  const fs::path path = record["path"].get<std::string>();
  const std::string recorded = record["xxh64"].get<std::string>();
  std::error_code error;
  if (!fs::exists(path, error))
    fail("--from-png ", quoted(png), ": the ", role, " ", quoted(path),
         " it was made with no longer exists");
  const std::string now = hash_file(path, role);
  if (now != recorded)
    fail("--from-png ", quoted(png), ": the ", role, " ", quoted(path),
         " differs from the one that made this image (xxh64 now ", now, ", recorded ", recorded,
         "); refusing to regenerate it from other ", role == "checkpoint" ? "weights" : "inputs");
}

[[noreturn]] void damaged_png(const fs::path& png, const std::string& why) {
  fail("--from-png ", quoted(png), ": its \"", kTextKey, "\" chunk is damaged (", why, ")");
}

Plan plan_from_png(const Options& o, const CLI::App& app) {
  for (const CLI::Option* option : app.get_options()) {
    const std::string name = option->get_name();
    if (option->count() > 0 && name != "--from-png" && name != "--out" && name != "--threads")
      fail("--from-png takes every parameter from the PNG; ", name,
           " cannot be given with it (only --out and --threads)");
  }
  const fs::path png = o.from_png;
  std::vector<data::PngText> texts;
  try {
    texts = data::read_png_text(png);
  } catch (const Error& e) {
    fail("--from-png: ", e.what());
  }
  const std::optional<std::string> text = data::find_png_text(texts, kTextKey);
  if (!text)
    fail("--from-png ", quoted(png), " carries no \"", kTextKey,
         "\" text chunk: it was not written by this program, or its metadata was stripped");
  json j;
  try {
    j = json::parse(*text);
  } catch (const json::exception& e) {
    fail("--from-png ", quoted(png), ": its \"", kTextKey, "\" chunk is not valid JSON (", e.what(),
         ")");
  }
  const auto damaged = [&](const std::string& why) { damaged_png(png, why); };
  try {
    if (!j.is_object() || j.value("format", "") != "mentor-generate") damaged("no format");
    if (j.value("version", 0) != kFormatVersion)
      damaged("version " + j.value("version", json()).dump() + ", this program reads " +
              std::to_string(kFormatVersion));
    if (!j.contains("model") || !j["model"].is_object()) damaged("no model record");
    const json& model = j["model"];
    for (const char* role : {"checkpoint", "manifest", "config", "vq", "vq_config", "tokenizer"})
      if (model.contains(role))
        verify_record(model[role], role == std::string("manifest") ? "checkpoint manifest" : role,
                      png);
    if (!model.contains("checkpoint")) damaged("no checkpoint");
    const auto path_of = [&](const char* role) -> std::optional<fs::path> {
      if (!model.contains(role)) return std::nullopt;
      return fs::path(model[role]["path"].get<std::string>());
    };
    Plan plan;
    plan.from_png = png;
    plan.recorded_text = *text;
    plan.out = o.out;
    plan.batch = 1;
    try {
      plan.device = j.at("device").get<std::string>();
      plan.dtype = j.at("dtype").get<std::string>();
    } catch (const json::exception& e) {
      damaged(e.what());
    }
    check_device(plan.device, plan.dtype);
    plan.model = model_files(*path_of("checkpoint"), path_of("config"), path_of("vq"),
                             path_of("vq_config"), path_of("tokenizer"));
    if (model.value("kind", "") != arch_name(plan.model.arch))
      damaged("kind " + model.value("kind", "") + " but the checkpoint holds a " +
              arch_name(plan.model.arch) + " model");
    Request r;
    r.origin = "the parameters of " + quoted(png);
    const LineReader reader{j, r.origin};
    if (j.contains("prompt")) {
      reader.read("prompt", r.prompt);
      r.has_prompt = true;
    }
    if (j.contains("images")) {
      if (!j["images"].is_array()) damaged("images");
      for (const json& image : j["images"]) {
        verify_record(image, "reference image", png);
        r.images.emplace_back(image["path"].get<std::string>());
      }
    }
    if (j.contains("class_label")) {
      int64_t label = 0;
      reader.read("class_label", label);
      r.class_label = label;
    }
    if (j.contains("caption_features")) {
      verify_record(j["caption_features"], "caption features", png);
      r.caption_features = j["caption_features"]["path"].get<std::string>();
    }
    for (const char* key : {"seed", "cfg", "cfg_interval", "temperature", "top_k", "top_p", "min_p",
                            "greedy", "truncate"})
      if (!j.contains(key)) damaged(std::string("no ") + key);
    reader.read("seed", r.seed);
    reader.read("cfg", r.cfg);
    reader.read("cfg_interval", r.cfg_interval);
    reader.read("temperature", r.sampling.temperature);
    reader.read("top_k", r.sampling.top_k);
    reader.read("top_p", r.sampling.top_p);
    reader.read("min_p", r.sampling.min_p);
    reader.read("greedy", r.sampling.greedy);
    reader.read("truncate", r.truncate);
    check_request(r, plan.model);
    plan.requests.push_back(std::move(r));
    return plan;
  } catch (const json::exception& e) {
    damaged_png(png, e.what());
  }
}

// ---- inputs, read before the model --------------------------------------------------------------

struct Prepared {
  json images;              // [{path, xxh64}, ...]
  Tensor<float> pixels;     // [N, 3, S, S] CLIP-preprocessed reference images (MENTOR)
  text::Encoding encoding;  // the prompt's ids (MENTOR)
  Tensor<float> caption;    // [cls_token_num, caption_dim] (t2i)
  Tensor<bool> emb_mask;    // [cls_token_num] (t2i)
  json caption_record;      // {path, xxh64} (t2i)
};

void check_output_folder(const fs::path& out) {
  std::error_code error;
  if (fs::exists(out, error) && !fs::is_directory(out, error))
    fail("the output folder ", quoted(out), " exists and is not a folder");
  fs::create_directories(out, error);
  if (error) fail("cannot create the output folder ", quoted(out), ": ", error.message());
  const fs::path probe = out / (".generate-probe-" + std::to_string(::getpid()));
  {
    std::ofstream file(probe);
    file << "probe\n";
    file.close();
    if (!file.good())
      fail("cannot write into the output folder ", quoted(out), ": ", std::strerror(errno));
  }
  fs::remove(probe, error);
}

// T5 caption features for a LlamaGen t2i model: tensor "caption" (or the file's only tensor)
// [L, caption_dim] or [1, L, caption_dim] as T5's last_hidden_state gives it (real tokens first),
// with an optional "attention_mask" [L] or [1, L] (nonzero = a real token; absent: all real).
// They are left-padded into cls_token_num slots as upstream's sampler does.
void read_caption_features(const fs::path& path, const models::GPTConfig& gpt, Prepared& p,
                           const std::string& origin) {
  p.caption_record = file_record(path, "caption features");
  io::SafeTensorsFile file = [&] {
    try {
      return io::SafeTensorsFile::open(path.string());
    } catch (const Error& e) {
      fail(origin, ": the caption features ", quoted(path), " are not readable: ", e.what());
    }
  }();
  std::string key = "caption";
  if (!file.contains(key)) {
    std::vector<std::string> keys = file.keys();
    std::erase(keys, "attention_mask");
    if (keys.size() != 1)
      fail(origin, ": the caption features ", quoted(path), " hold no tensor \"caption\" (and ",
           keys.size(), " other tensors, not one)");
    key = keys[0];
  }
  std::vector<int64_t> shape = file.info(key).shape;
  if (shape.size() == 3 && shape[0] == 1) shape.erase(shape.begin());
  if (shape.size() != 2 || shape[1] != gpt.caption_dim || shape[0] < 1)
    fail(origin, ": the caption features \"", key, "\" in ", quoted(path), " are ",
         io::detail::format_shape(file.info(key).shape), ", not [L, ", gpt.caption_dim,
         "] (caption_dim of the model)");
  const int64_t length = shape[0];
  std::vector<float> values;
  try {
    values = file.read_as<float>(key);
  } catch (const Error& e) {
    fail(origin, ": ", e.what());
  }
  std::vector<bool> valid(static_cast<size_t>(length), true);
  if (file.contains("attention_mask")) {
    const io::TensorInfo& info = file.info("attention_mask");
    if (static_cast<int64_t>(info.numel()) != length)
      fail(origin, ": \"attention_mask\" in ", quoted(path), " is ",
           io::detail::format_shape(info.shape), ", not [", length, "]");
    if (io::is_floating(info.dtype)) {
      const std::vector<float> mask = file.read_as<float>("attention_mask");
      for (int64_t t = 0; t < length; ++t)
        valid[static_cast<size_t>(t)] = mask[static_cast<size_t>(t)] != 0;
    } else {
      const std::vector<int64_t> mask = file.read_as<int64_t>("attention_mask");
      for (int64_t t = 0; t < length; ++t)
        valid[static_cast<size_t>(t)] = mask[static_cast<size_t>(t)] != 0;
    }
  }
  const models::ConditionPrefix<float, CPU> prefix = models::left_pad_condition(
      Tensor<float>::from_vector(values, Shape{1, length, gpt.caption_dim}),
      Tensor<bool>::from_vector(valid, Shape{1, length}), gpt.cls_token_num);
  p.caption = prefix.embeddings.reshape({gpt.cls_token_num, gpt.caption_dim});
  p.emb_mask = prefix.mask.reshape({gpt.cls_token_num});
}

std::vector<Prepared> prepare_inputs(const Plan& plan, std::vector<std::string>& warnings) {
  const ModelFiles& m = plan.model;
  std::optional<text::Tokenizer> tokenizer;
  if (m.arch == Arch::Mentor) {
    text::TokenizerConfig config;
    config.model_path = m.tokenizer->string();
    config.image_token_id = m.mentor.encoder.image_token_id;
    config.tokens_per_image = m.mentor.encoder.tokens_per_image();
    config.max_length = m.gpt.cls_token_num;
    config.image_marker = kImageMarker;
    config.truncate = true;  // --no-truncate is checked below, with the request's name
    try {
      tokenizer.emplace(config);
    } catch (const Error& e) {
      fail("the tokenizer cannot be used: ", e.what());
    }
    if (tokenizer->piece_count() > m.mentor.encoder.text.vocab_size)
      fail("the tokenizer ", quoted(*m.tokenizer), " has ", tokenizer->piece_count(),
           " pieces, more than the T5 vocabulary of the model (", m.mentor.encoder.text.vocab_size,
           "): it is not this model's tokenizer");
  }
  std::vector<Prepared> out;
  for (const Request& r : plan.requests) {
    Prepared p;
    p.images = json::array();
    if (m.arch == Arch::Mentor) {
      const int size = static_cast<int>(m.mentor.encoder.vision.image_size);
      std::vector<float> pixels;
      for (size_t i = 0; i < r.images.size(); ++i) {
        const fs::path& path = r.images[i];
        try {
          const data::ImageCHW chw = data::clip_preprocess(data::load_image(path, 3), size);
          pixels.insert(pixels.end(), chw.data.begin(), chw.data.end());
        } catch (const Error& e) {
          fail(r.origin, ": reference image ", i + 1, " (", path.string(),
               ") cannot be used: ", e.what());
        }
        p.images.push_back(file_record(path, "reference image"));
      }
      if (!r.images.empty())
        p.pixels = Tensor<float>::from_vector(
            pixels, Shape{static_cast<int64_t>(r.images.size()), 3, size, size});
      p.encoding = tokenizer->encode(r.prompt);
      const text::Encoding& e = p.encoding;
      if (e.truncated > 0) {
        const std::string what = mentor::detail::concat(
            r.origin, ": the prompt is ", e.length + e.truncated, " tokens (", e.image_markers, " ",
            kImageMarker, " markers of ", m.mentor.encoder.tokens_per_image(),
            " placeholders and </s> included), ", e.truncated, " over cls_token_num ",
            m.gpt.cls_token_num);
        if (!r.truncate) fail(what, "; --no-truncate refuses it (without it the prompt is cut)");
        std::string cut = what + ": cut " + std::to_string(e.truncated) + " tokens";
        if (e.images_kept < e.image_markers)
          cut +=
              mentor::detail::concat("; only ", e.image_tokens, " of the ",
                                     e.image_markers * m.mentor.encoder.tokens_per_image(),
                                     " image feature rows are used (as upstream, the first ones)");
        warnings.push_back(cut + " (--no-truncate refuses instead)");
      }
    } else if (m.arch == Arch::TextToImage) {
      read_caption_features(*r.caption_features, m.gpt, p, r.origin);
    }
    out.push_back(std::move(p));
  }
  return out;
}

// ---- the model ----------------------------------------------------------------------------------

template <class T, class D>
struct Engine {
  std::unique_ptr<models::MentorModel<T, D>> mentor;
  std::unique_ptr<models::GPT<T, D>> gpt_only;
  std::unique_ptr<models::VQModel<T, D>> vq_only;
  models::GPT<T, D>& gpt() { return mentor ? mentor->gpt : *gpt_only; }
  const models::VQModel<T, D>& vq() const { return mentor ? mentor->vq : *vq_only; }
  void eval() {
    if (mentor) {
      mentor->eval();
      mentor->gpt.eval();  // MentorModel's visitor reaches the GPT's children, not its flag
      mentor->vq.eval();
    }
    if (gpt_only) gpt_only->eval();
    if (vq_only) vq_only->eval();
  }
};

// Keys an upstream file converted by tools/convert_checkpoint.py may still hold that are not
// state here (the RoPE table, the mask and the KV caches).
std::vector<std::string> ignorable_keys(const io::SafeTensorsFile& file) {
  static const std::regex ignorable(
      "(freqs_cis|causal_mask|layers\\.[0-9]+\\.attention\\.kv_cache\\.[kv]_cache)");
  std::vector<std::string> keys;
  for (const std::string& key : file.keys())
    if (std::regex_match(key, ignorable)) keys.push_back(key);
  return keys;
}

// LlamaGen's t2i files hold 120 rows of cls_embedding.uncond_embedding; a model with more condition
// slots takes them as its first rows and keeps its own initialisation (N(0, 1) / sqrt(caption_dim),
// generator seed 0, so it is the same on every run) for the rest, as MENTOR's --load_fixed_llamagen
// does (docs/weights.md). Any other shape difference is left to the loader's error.
template <class Load>
void load_growing_uncond(models::GPT<float>& gpt, const io::SafeTensorsFile& file, Load&& load,
                         std::vector<std::string>& notes) {
  const std::string key = "cls_embedding.uncond_embedding";
  if (gpt.config().is_c2i() || !file.contains(key)) return load();
  Tensor<float>& uncond = gpt.caption_embedder().uncond_embedding;
  const std::vector<int64_t>& shape = file.info(key).shape;
  const int64_t slots = uncond.size(0);
  if (shape.size() != 2 || shape[1] != uncond.size(1) || shape[0] < 1 || shape[0] >= slots)
    return load();
  const int64_t rows = shape[0];
  const Tensor<float> init = uncond.clone();
  uncond = init.narrow(0, 0, rows).contiguous();
  load();
  NoGradGuard no_grad;
  uncond = concat(std::vector<Tensor<float>>{uncond, init.narrow(0, rows, slots - rows)}, 0)
               .contiguous();
  notes.push_back(mentor::detail::concat(
      "the checkpoint's ", key, " has ", rows, " rows and the model ", slots,
      " condition slots: rows 0..", rows - 1, " are the file's, rows ", rows, "..", slots - 1,
      " the model's own initialisation (as MENTOR's --load_fixed_llamagen)"));
}

io::SafeTensorsFile open_weights(const fs::path& path) {
  try {
    return io::SafeTensorsFile::open(path.string());
  } catch (const Error& e) {
    fail("the checkpoint ", quoted(path), " is not a readable safetensors file: ", e.what());
  }
}

Engine<float, CPU> load_float_engine(const ModelFiles& m, std::vector<std::string>& notes) {
  Engine<float, CPU> e;
  const std::string what = arch_name(m.arch);
  try {
    if (m.is_checkpoint) {
      if (m.arch == Arch::Mentor)
        e.mentor = train::load_for_inference<models::MentorModel<float>>(m.weights);
      else
        e.gpt_only = train::load_for_inference<models::GPT<float>>(m.weights);
    } else {
      const io::SafeTensorsFile file = open_weights(m.weights);
      Generator gen(0);  // the values are the file's, except grown uncond rows (see above)
      nn::LoadOptions options;
      options.ignore = ignorable_keys(file);
      if (m.arch == Arch::Mentor) {
        e.mentor = std::make_unique<models::MentorModel<float>>(m.mentor, gen);
        load_growing_uncond(
            e.mentor->gpt, file, [&] { e.mentor->load(file); }, notes);
      } else {
        e.gpt_only = std::make_unique<models::GPT<float>>(m.gpt, gen);
        load_growing_uncond(
            *e.gpt_only, file, [&] { nn::load_state_dict(*e.gpt_only, file, options); }, notes);
      }
    }
  } catch (const Error& error) {
    fail("cannot load the ", what, " model from ", quoted(m.weights),
         " (a damaged file, or one of another architecture than its configuration says): ",
         error.what());
  }
  if (m.vq) {
    try {
      const io::SafeTensorsFile file = io::SafeTensorsFile::open(m.vq->string());
      if (e.mentor) {
        e.mentor->load_vq(file);
      } else {
        Generator gen(0);
        e.vq_only = std::make_unique<models::VQModel<float>>(m.vq_config, gen);
        nn::load_state_dict(*e.vq_only, file);
      }
    } catch (const Error& error) {
      fail("cannot load the VQ from ", quoted(*m.vq), ": ", error.what());
    }
  }
  e.eval();
  return e;
}

// The float CPU weights copied into a model of element type T on device D, name by name.
template <class T, class D, class Source>
void copy_state(nn::Module<T, D>& target, Source& source) {
  std::map<std::string, Tensor<float>*> from;
  for (auto& [name, tensor] : source.state()) from.emplace(name, tensor);
  NoGradGuard no_grad;
  for (auto& [name, tensor] : target.state()) {
    const auto found = from.find(name);
    MENTOR_CHECK(found != from.end(), "generate: no tensor ", name, " to convert");
    *tensor = found->second->template to<T>().template to<D>();
  }
}

template <class T, class D>
Engine<T, D> convert_engine(Engine<float, CPU>&& source, const ModelFiles& m) {
  Engine<T, D> e;
  Generator gen(0);
  if (source.mentor) {
    e.mentor = std::make_unique<models::MentorModel<T, D>>(m.mentor, gen);
    copy_state(*e.mentor, *source.mentor);
    copy_state(e.mentor->vq, source.mentor->vq);
  } else {
    e.gpt_only = std::make_unique<models::GPT<T, D>>(m.gpt, gen);
    copy_state(*e.gpt_only, *source.gpt_only);
    if (source.vq_only) {
      e.vq_only = std::make_unique<models::VQModel<T, D>>(m.vq_config, gen);
      copy_state(*e.vq_only, *source.vq_only);
    }
  }
  e.eval();
  return e;
}

// A MENTOR request's condition, encoded alone: prompt ids, their mask and its reference images
// -> the left-padded prefix [cls_token_num, caption_dim] and emb_mask [cls_token_num].
template <class T, class D>
void mentor_condition(models::MentorModel<T, D>& model, const Prepared& p,
                      generate::GenerationRequest& request) {
  NoGradGuard no_grad;
  const text::Encoding& e = p.encoding;
  const auto length = static_cast<int64_t>(e.ids.size());
  std::vector<bool> valid;
  for (int64_t flag : e.mask) valid.push_back(flag != 0);
  const Tensor<int64_t, D> ids =
      Tensor<int64_t>::from_vector(e.ids, Shape{1, length}).template to<D>();
  const Tensor<bool, D> mask = Tensor<bool>::from_vector(valid, Shape{1, length}).template to<D>();
  auto& encoder = model.multimodal_encoder;
  Tensor<T, D> embeds = encoder.language_model.embed(ids);
  if (p.pixels.defined()) {
    const Tensor<T, D> features =
        encoder.image_features(p.pixels.template to<T>().template to<D>());
    // One request: upstream's rule for a placeholder run cut by truncation (the first feature
    // rows fill the placeholders left) cannot hand this request's features to another.
    embeds = models::splice_image_features(embeds, ids, features, encoder.config().image_token_id,
                                           models::PlaceholderMismatch::TruncateLikeUpstream);
  }
  const Tensor<T, D> hidden = encoder.language_model.forward_embeds(embeds, mask);
  const int64_t slots = model.config().gpt.cls_token_num, width = model.config().gpt.caption_dim;
  const models::ConditionPrefix<T, D> prefix = models::left_pad_condition(hidden, mask, slots);
  request.caption = prefix.embeddings.template to<CPU>().template to<float>().contiguous().reshape(
      {slots, width});
  request.emb_mask = prefix.mask.template to<CPU>().contiguous().reshape({slots});
}

// ---- output -------------------------------------------------------------------------------------

struct Sample {
  size_t request = 0;
  uint64_t seed = 0;
  std::string file;  // output file name
  generate::GenerationRequest generation;
  Tensor<int64_t> tokens;  // [num_tokens]
  int64_t batch_rows = 0;  // the size of the batch it was decoded in
};

json sample_metadata(const Plan& plan, const Request& r, const Prepared& p, uint64_t seed,
                     int64_t batch_used) {
  json j = {{"format", "mentor-generate"},
            {"version", kFormatVersion},
            {"mentor_version", MENTOR_GENERATE_VERSION},
            {"model", plan.model.record},
            {"seed", seed},
            {"cfg", r.cfg},
            {"cfg_interval", r.cfg_interval},
            {"temperature", r.sampling.temperature},
            {"top_k", r.sampling.top_k},
            {"top_p", r.sampling.top_p},
            {"min_p", r.sampling.min_p},
            {"greedy", r.sampling.greedy},
            {"truncate", r.truncate},
            {"dtype", plan.dtype},
            {"device", plan.device}};
  switch (plan.model.arch) {
    case Arch::Mentor:
      j["prompt"] = r.prompt;
      j["images"] = p.images;
      j["tokens_cut"] = p.encoding.truncated;
      break;
    case Arch::TextToImage:
      j["caption_features"] = p.caption_record;
      break;
    case Arch::ClassToImage:
      j["class_label"] = *r.class_label;
      break;
  }
  // The op path's GEMMs block by batch size, so its tokens may depend on the batch.
  if (batch_used > 0) j["batch"] = batch_used;
  return j;
}

// ASCII only (non-ASCII escaped as \uXXXX): tEXt holds Latin-1.
std::string metadata_text(const json& j) { return j.dump(-1, ' ', true); }

void write_bytes(const fs::path& path, const std::vector<uint8_t>& bytes) {
  try {
    io::write_file_atomically(
        path.string(), std::string_view(reinterpret_cast<const char*>(bytes.data()), bytes.size()));
  } catch (const Error& e) {
    fail("cannot write ", quoted(path), ": ", e.what());
  }
}

data::Image grid_of(const std::vector<data::Image>& images) {
  const size_t count = std::min(images.size(), kMaxGridSamples);
  const int gap = 2;
  const int columns = static_cast<int>(std::ceil(std::sqrt(static_cast<double>(count))));
  const int rows =
      static_cast<int>((count + static_cast<size_t>(columns) - 1) / static_cast<size_t>(columns));
  const int w = images[0].width, h = images[0].height;
  data::Image grid(columns * w + (columns - 1) * gap, rows * h + (rows - 1) * gap, 3);
  for (size_t i = 0; i < count; ++i) {
    const int x0 = static_cast<int>(i) % columns * (w + gap);
    const int y0 = static_cast<int>(i) / columns * (h + gap);
    for (int y = 0; y < h; ++y)
      for (int x = 0; x < w; ++x)
        for (int c = 0; c < 3; ++c) grid.at(y0 + y, x0 + x, c) = images[i].at(y, x, c);
  }
  return grid;
}

template <class T, class D>
data::Image decode_sample(const Engine<T, D>& e, const Tensor<int64_t>& tokens, int64_t grid) {
  NoGradGuard no_grad;
  const Tensor<float> pixels =
      e.vq()
          .decode_code(tokens.reshape({1, grid * grid}).template to<D>(), 1, grid, grid)
          .template to<CPU>()
          .template to<float>()
          .contiguous();
  data::ImageCHW chw(static_cast<int>(pixels.size(1)), static_cast<int>(pixels.size(2)),
                     static_cast<int>(pixels.size(3)));
  chw.data = pixels.to_vector();
  return data::to_image_from_minus1_1(chw);
}

// ---- the run ------------------------------------------------------------------------------------

template <class T, class D>
int execute(const Plan& plan, const std::vector<Prepared>& prepared,
            std::vector<std::string>& notes) {
  constexpr bool kCpuDecoder = std::is_same_v<T, float> && std::is_same_v<D, CPU>;
  constexpr bool kCudaDecoder = std::is_same_v<D, CUDA>;
  const ModelFiles& m = plan.model;
  std::cerr << "generate: loading the " << arch_name(m.arch) << " model from " << m.weights.string()
            << " (" << plan.dtype << ", " << plan.device << ")\n";
  Engine<T, D> engine = [&] {
    Engine<float, CPU> loaded = load_float_engine(m, notes);
    if constexpr (kCpuDecoder)
      return loaded;
    else
      return convert_engine<T, D>(std::move(loaded), m);
  }();
  for (const std::string& note : notes) std::cerr << "generate: note: " << note << "\n";

  // Samples: request r's n samples have seeds seed .. seed + n - 1.
  std::vector<Sample> samples;
  for (size_t i = 0; i < plan.requests.size(); ++i) {
    const Request& r = plan.requests[i];
    generate::GenerationRequest g;
    g.cfg_scale = r.cfg;
    g.sampling = r.sampling;
    if (m.arch == Arch::Mentor) {
      mentor_condition(*engine.mentor, prepared[i], g);
    } else if (m.arch == Arch::TextToImage) {
      g.caption = prepared[i].caption;
      g.emb_mask = prepared[i].emb_mask;
    } else {
      g.class_label = *r.class_label;
    }
    for (int64_t k = 0; k < r.n; ++k) {
      Sample s;
      s.request = i;
      s.seed = r.seed + static_cast<uint64_t>(k);
      s.generation = g;
      s.generation.seed = s.seed;
      char name[64];
      std::snprintf(name, sizeof name, "%04zu-seed%llu", i,
                    static_cast<unsigned long long>(s.seed));
      s.file = name;
      samples.push_back(std::move(s));
    }
  }
  if (plan.from_png) samples[0].file = plan.from_png->stem().string();

  models::GPT<T, D>& gpt = engine.gpt();
  const int64_t num_tokens = m.gpt.block_size, grid = m.gpt.grid_size();
  std::cerr << "generate: " << samples.size() << " sample" << (samples.size() == 1 ? "" : "s")
            << " of " << num_tokens << " tokens, batch " << plan.batch << "\n";
  {
    NoGradGuard no_grad;
    train::ProgressBar bar(static_cast<int64_t>(samples.size()) * num_tokens, "generate",
                           std::cerr);
    int64_t done = 0;
    // Each guidance interval is a generation of its own (one decoder per interval).
    std::vector<int64_t> intervals;
    for (const Sample& s : samples) {
      const int64_t interval = plan.requests[s.request].cfg_interval;
      if (std::find(intervals.begin(), intervals.end(), interval) == intervals.end())
        intervals.push_back(interval);
    }
    for (const int64_t interval : intervals) {
      std::vector<size_t> members;
      for (size_t i = 0; i < samples.size(); ++i)
        if (plan.requests[samples[i].request].cfg_interval == interval) members.push_back(i);
      const int64_t width = std::min<int64_t>(plan.batch, static_cast<int64_t>(members.size()));
      std::unique_ptr<generate::CpuGeneration> decoder;
      if constexpr (kCpuDecoder)
        decoder = std::make_unique<generate::CpuGeneration>(gpt, width, num_tokens, interval);
#if defined(MENTOR_WITH_CUDA)
      // CUDA: the decode step captured in a graph, sampling on the device; the host reads the
      // tokens once per batch (so the bar moves per batch). Compiled only where the CUDA backend
      // is linked (the decoder's stream and graph live in mentor_cuda).
      std::unique_ptr<generate::CudaDecoder<T>> gpu_decoder;
      if constexpr (kCudaDecoder)
        gpu_decoder =
            std::make_unique<generate::CudaDecoder<T>>(gpt, width, num_tokens, true, interval);
#endif
      for (size_t start = 0; start < members.size(); start += static_cast<size_t>(width)) {
        const size_t end = std::min(members.size(), start + static_cast<size_t>(width));
        std::vector<generate::GenerationRequest> batch;
        for (size_t i = start; i < end; ++i) batch.push_back(samples[members[i]].generation);
        const auto rows = static_cast<int64_t>(batch.size());
        Tensor<int64_t> tokens;
        if constexpr (kCpuDecoder) {
          tokens = decoder->run(
              batch, [&](int64_t produced, int64_t) { bar.update(done + produced * rows); });
        } else if constexpr (kCudaDecoder) {
#if defined(MENTOR_WITH_CUDA)
          tokens = gpu_decoder->run(batch);
#endif
        } else {  // bf16 on the CPU
          tokens = generate::generate_op_path(gpt, batch, num_tokens, interval);
        }
        done += rows * num_tokens;
        bar.update(done);
        for (size_t i = start; i < end; ++i) samples[members[i]].batch_rows = rows;
        for (size_t i = start; i < end; ++i)
          samples[members[i]].tokens = tokens.narrow(0, static_cast<int64_t>(i - start), 1)
                                           .contiguous()
                                           .reshape({num_tokens});
      }
    }
    bar.finish();
  }

  // The op path's and the CUDA decoder's tokens may depend on the batch (their GEMMs block by
  // batch size): recorded.
  const auto batch_recorded = [&](const Sample& s) { return kCpuDecoder ? 0 : s.batch_rows; };
  if (!m.vq) {
    for (const Sample& s : samples) {
      io::SafeTensorsWriter writer;
      std::vector<int64_t> values = s.tokens.to_vector();
      writer.add("tokens", {grid, grid}, std::span<const int64_t>(values));
      writer.set_metadata(
          kTextKey, metadata_text(sample_metadata(plan, plan.requests[s.request],
                                                  prepared[s.request], s.seed, batch_recorded(s))));
      const fs::path path = plan.out / (s.file + ".safetensors");
      try {
        writer.write(path.string());
      } catch (const Error& e) {
        fail("cannot write ", quoted(path), ": ", e.what());
      }
    }
    std::cout << "generate: no --vq given: wrote " << samples.size() << " token grid"
              << (samples.size() == 1 ? "" : "s") << " (" << grid << "x" << grid
              << ", tensor \"tokens\") as .safetensors to " << plan.out.string()
              << "; pass --vq VQ.safetensors to decode them into PNGs\n";
    return 0;
  }

  std::vector<data::Image> images;
  for (const Sample& s : samples) {
    data::Image image = decode_sample(engine, s.tokens, grid);
    const json metadata = sample_metadata(plan, plan.requests[s.request], prepared[s.request],
                                          s.seed, batch_recorded(s));
    const std::string text = metadata_text(metadata);
    if (plan.from_png && text != plan.recorded_text)
      std::cerr << "generate: warning: the parameters recomputed for " << plan.from_png->string()
                << " differ from those it records (another mentor version?), so its bytes will "
                   "differ\n";
    const fs::path path = plan.out / (s.file + ".png");
    if (plan.from_png) {
      std::error_code error;
      if (fs::equivalent(path, *plan.from_png, error))
        fail("--from-png would overwrite its own source ", quoted(path),
             "; give another --out folder");
    }
    write_bytes(path, data::encode_png_with_text(image, {{kTextKey, text}}));
    images.push_back(std::move(image));
  }
  if (plan.from_png) {
    std::cout << "generate: regenerated " << (plan.out / (samples[0].file + ".png")).string()
              << "\n";
    return 0;
  }
  write_bytes(plan.out / "grid.png", data::encode_png_with_text(grid_of(images), {}));
  std::cout << "generate: wrote " << images.size() << " image" << (images.size() == 1 ? "" : "s")
            << " and grid.png";
  if (images.size() > kMaxGridSamples) std::cout << " (the first " << kMaxGridSamples << ")";
  std::cout << " to " << plan.out.string() << "\n";
  return 0;
}

int run(const Options& o, const CLI::App& app) {
  if (o.threads < 0) fail("--threads ", o.threads, " must be >= 0 (0: the default)");
  if (o.threads > 0) cpu::set_num_threads(o.threads);
  const Plan plan = o.from_png.empty() ? plan_from_options(o, app) : plan_from_png(o, app);
  check_output_folder(plan.out);
  std::vector<std::string> notes;
  const std::vector<Prepared> prepared = prepare_inputs(plan, notes);
  for (const std::string& note : notes) std::cerr << "generate: warning: " << note << "\n";
  notes.clear();
  if (plan.device == "cpu")
    return plan.dtype == "float32" ? execute<float, CPU>(plan, prepared, notes)
                                   : execute<bf16, CPU>(plan, prepared, notes);
#if defined(MENTOR_WITH_CUDA)
  return plan.dtype == "float32" ? execute<float, CUDA>(plan, prepared, notes)
                                 : execute<bf16, CUDA>(plan, prepared, notes);
#else
  fail("--device cuda: this build of mentor has no CUDA backend");
#endif
}

}  // namespace

int main(int argc, char** argv) {
  Options o;
  CLI::App app{
      "generate: images from a MENTOR model (prompt with <image> markers + reference images), a "
      "LlamaGen class-conditional model (--class-label) or a LlamaGen t2i model "
      "(--caption-features). Writes one PNG per sample and grid.png; each PNG carries its "
      "parameters in a tEXt chunk \"mentor-generate\", and --from-png FILE makes the same bytes "
      "again."};
  app.footer(
      "Checkpoints: a mentor training checkpoint (its folder, or the .json/.safetensors of one "
      "step), which carries its configuration; or a safetensors file (upstream weights converted "
      "by tools/convert_checkpoint.py) with --config CONFIG.json: a MentorConfig (keys encoder, "
      "gpt, vq) or a GPTConfig. A LlamaGen t2i file with fewer uncond_embedding rows than the "
      "model's cls_token_num is grown as MENTOR does (docs/weights.md).\n"
      "LlamaGen t2i: this program does not run T5 on text; give T5 features with "
      "--caption-features FILE.safetensors (tensor \"caption\" [L, caption_dim] as T5's "
      "last_hidden_state, optional \"attention_mask\" [L]).\n"
      "Without --vq the token grids are written as .safetensors (tensor \"tokens\").\n"
      "Defaults (upstream's): MENTOR cfg 2.5, temperature 0.9, top-k 5000, top-p 1.0; LlamaGen "
      "t2i cfg 7.5, top-k 1000, temperature 1.0; c2i cfg 4.0, top-k 2000, temperature 1.0.\n"
      "--requests FILE.jsonl: one JSON object per line with any of prompt, images (paths, "
      "relative to the file's folder), class_label, caption_features, seed, n, cfg, "
      "cfg_interval, temperature, top_k, top_p, min_p, greedy, truncate; the command line gives "
      "the rest.\n"
      "Reproducibility: on --device cpu --dtype float32 a sample's bytes depend only on its "
      "request, seed and files, not on --batch or --threads. The bfloat16 and CUDA paths may "
      "depend on the batch (recorded as \"batch\"); --from-png reruns them at batch 1.");
  app.add_option("--checkpoint", o.checkpoint,
                 "model: a mentor checkpoint folder/file, or a .safetensors with --config "
                 "(default: the shipped model, docs/model)");
  app.add_option("--config", o.config, "the model configuration JSON of a .safetensors checkpoint");
  app.add_option("--vq", o.vq, "VQ tokenizer weights (.safetensors, LlamaGen names) for pixels");
  app.add_option("--vq-config", o.vq_config, "LlamaGen: the VQ's VQConfig JSON (default VQ-16)");
  app.add_option("--tokenizer", o.tokenizer, "MENTOR: T5's SentencePiece model (spiece.model)");
  app.add_option("--prompt", o.prompt, "MENTOR: the prompt, one <image> marker per --image");
  app.add_option("--image", o.images, "MENTOR: a reference image (PNG/JPEG), once per marker")
      ->expected(1)
      ->multi_option_policy(CLI::MultiOptionPolicy::TakeAll);
  app.add_option("--class-label", o.class_label, "LlamaGen c2i: the class");
  app.add_option("--caption-features", o.caption_features,
                 "LlamaGen t2i: T5 features (.safetensors, see below)");
  app.add_option("--requests", o.requests, "many requests, one JSON object per line");
  app.add_option("--out", o.out, "output folder (created)")->capture_default_str();
  app.add_option("--device", o.device, "cpu or cuda")->capture_default_str();
  app.add_option("--dtype", o.dtype, "float32 or bfloat16")->capture_default_str();
  app.add_option("--cfg", o.cfg, "guidance scale (<= 1: off)");
  app.add_option("--cfg-interval", o.cfg_interval,
                 "guide tokens up to this decode step only (-1: all)")
      ->capture_default_str();
  app.add_option("--temperature", o.temperature, "sampling temperature (>= 0)");
  app.add_option("--top-k", o.top_k, "keep the k most likely tokens (0: off)");
  app.add_option("--top-p", o.top_p, "nucleus mass in (0, 1] (1: off)");
  app.add_option("--min-p", o.min_p, "drop tokens below min_p * the top probability (0: off)")
      ->capture_default_str();
  app.add_flag("--greedy", o.greedy, "argmax instead of sampling");
  app.add_option("--seed", o.seed, "seed of the first sample")->capture_default_str();
  app.add_option("--n", o.n, "samples per request (seeds seed .. seed + n - 1)")
      ->capture_default_str();
  app.add_option("--batch", o.batch, "samples decoded together")->capture_default_str();
  app.add_flag("--truncate,!--no-truncate", o.truncate,
               "cut a prompt longer than cls_token_num with a warning (default), or refuse it");
  app.add_option("--from-png", o.from_png, "regenerate the PNG FILE from its parameters");
  app.add_option("--threads", o.threads, "CPU threads (0: the default)")->capture_default_str();
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    return app.exit(e);
  }
  try {
    return run(o, app);
  } catch (const std::exception& e) {
    std::cerr << "generate: error: " << e.what() << "\n";
    return 1;
  } catch (...) {
    std::cerr << "generate: an unknown error stopped the run\n";
    return 1;
  }
}
