#pragma once
// Crash-safe checkpoints: a safetensors file of tensors plus a JSON manifest, committed in an order
// that makes a crash at any instant harmless.
//
// A checkpoint `<dir>/<stem>` is two files:
//   <stem>.safetensors  the tensors (model.*, master.*, optim.m.*, optim.v.*, ... by convention)
//   <stem>.json         the manifest: caller fields (step, rng, loader position, config, ...) plus
//                       {"format": "mentor.checkpoint", "version": 1,
//                        "data": {"file": "<stem>.safetensors", "bytes": N, "xxh64": "<16 hex>"},
//                        "tensors": {"<key>": {"dtype": "F32", "shape": [...]}, ...}}
// and `<dir>/latest` names the newest complete one (its stem and a newline).
//
// Commit order: the safetensors file, then the manifest, then `latest`, each written to a
// temporary file, fsynced and renamed over its target (io/atomic_file.hpp). Until the manifest
// exists the checkpoint does not exist; until `latest` is renamed it still names the previous
// checkpoint. So a process killed (or a machine losing power) at any point leaves `latest` naming
// a complete checkpoint, plus at worst an orphaned temporary file, which the next save removes.
//
// Loading checks, before any tensor is copied: the manifest parses and has the expected format;
// the data file has exactly the recorded size (a truncated copy says so) and the recorded XXH64
// content hash (a damaged one says so); the safetensors header is valid and lists exactly the
// manifest's tensors. Callers then compare the architecture (names, dtypes, shapes) with
// check_tensors(), which names every difference.
//
// XXH64 is Yann Collet's xxHash64 (seed 0), checked against the reference implementation's
// sanity vectors in tests/train/test_checkpoint.cpp; it hashes at several GB/s, so verifying a
// multi-GB checkpoint costs about as much as reading it.
#include <signal.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdint>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <map>
#include <nlohmann/json.hpp>
#include <optional>
#include <sstream>
#include <string>
#include <utility>
#include <vector>

#include "mentor/core/error.hpp"
#include "mentor/core/tensor.hpp"
#include "mentor/io/atomic_file.hpp"
#include "mentor/io/safetensors.hpp"

namespace mentor::train {

// ---- XXH64 ------------------------------------------------------------------------------------

namespace detail {

inline constexpr uint64_t kXxPrime1 = 0x9E3779B185EBCA87ull;
inline constexpr uint64_t kXxPrime2 = 0xC2B2AE3D27D4EB4Full;
inline constexpr uint64_t kXxPrime3 = 0x165667B19E3779F9ull;
inline constexpr uint64_t kXxPrime4 = 0x85EBCA77C2B2AE63ull;
inline constexpr uint64_t kXxPrime5 = 0x27D4EB2F165667C5ull;

inline uint64_t rotl64(uint64_t x, int r) { return (x << r) | (x >> (64 - r)); }
inline uint64_t read_le64(const uint8_t* p) {
  uint64_t v;
  std::memcpy(&v, p, 8);
  return v;  // little-endian host (io/safetensors.hpp asserts it)
}
inline uint32_t read_le32(const uint8_t* p) {
  uint32_t v;
  std::memcpy(&v, p, 4);
  return v;
}
inline uint64_t xxh64_round(uint64_t acc, uint64_t input) {
  acc += input * kXxPrime2;
  acc = rotl64(acc, 31);
  return acc * kXxPrime1;
}
inline uint64_t xxh64_merge(uint64_t acc, uint64_t value) {
  acc ^= xxh64_round(0, value);
  return acc * kXxPrime1 + kXxPrime4;
}

}  // namespace detail

inline uint64_t xxh64(const void* data, size_t size, uint64_t seed = 0) {
  using namespace detail;
  const auto* p = static_cast<const uint8_t*>(data);
  const uint8_t* const end = p + size;
  uint64_t h;
  if (size >= 32) {
    uint64_t v1 = seed + kXxPrime1 + kXxPrime2, v2 = seed + kXxPrime2, v3 = seed,
             v4 = seed - kXxPrime1;
    const uint8_t* const limit = end - 32;
    do {
      v1 = xxh64_round(v1, read_le64(p));
      v2 = xxh64_round(v2, read_le64(p + 8));
      v3 = xxh64_round(v3, read_le64(p + 16));
      v4 = xxh64_round(v4, read_le64(p + 24));
      p += 32;
    } while (p <= limit);
    h = rotl64(v1, 1) + rotl64(v2, 7) + rotl64(v3, 12) + rotl64(v4, 18);
    h = xxh64_merge(h, v1);
    h = xxh64_merge(h, v2);
    h = xxh64_merge(h, v3);
    h = xxh64_merge(h, v4);
  } else {
    h = seed + kXxPrime5;
  }
  h += static_cast<uint64_t>(size);
  while (p + 8 <= end) {
    h ^= xxh64_round(0, read_le64(p));
    h = rotl64(h, 27) * kXxPrime1 + kXxPrime4;
    p += 8;
  }
  if (p + 4 <= end) {
    h ^= static_cast<uint64_t>(read_le32(p)) * kXxPrime1;
    h = rotl64(h, 23) * kXxPrime2 + kXxPrime3;
    p += 4;
  }
  while (p < end) {
    h ^= (*p) * kXxPrime5;
    h = rotl64(h, 11) * kXxPrime1;
    ++p;
  }
  h ^= h >> 33;
  h *= kXxPrime2;
  h ^= h >> 29;
  h *= kXxPrime3;
  h ^= h >> 32;
  return h;
}

inline std::string hex64(uint64_t value) {
  char buffer[17];
  std::snprintf(buffer, sizeof buffer, "%016llx", static_cast<unsigned long long>(value));
  return buffer;
}

// ---- paths ------------------------------------------------------------------------------------

inline std::filesystem::path manifest_path(const std::filesystem::path& stem) {
  return stem.string() + ".json";
}
inline std::filesystem::path data_path(const std::filesystem::path& stem) {
  return stem.string() + ".safetensors";
}

// The stem a user's path names: a directory means its `latest` checkpoint; "x.json" and
// "x.safetensors" mean "x".
inline std::filesystem::path resolve_checkpoint(const std::filesystem::path& path) {
  if (std::filesystem::is_directory(path)) {
    const auto pointer = path / "latest";
    MENTOR_CHECK(std::filesystem::exists(pointer), "checkpoint directory ", path.string(),
                 " has no 'latest' file: no checkpoint was completed there");
    std::ifstream in(pointer);
    std::string stem;
    std::getline(in, stem);
    MENTOR_CHECK(!stem.empty() && stem.find('/') == std::string::npos, "checkpoint pointer ",
                 pointer.string(), " is empty or damaged (content \"", stem, "\")");
    return path / stem;
  }
  const std::string text = path.string();
  for (const std::string suffix : {".json", ".safetensors"})
    if (text.size() > suffix.size() && text.ends_with(suffix))
      return text.substr(0, text.size() - suffix.size());
  return path;
}

// Removes temporary files left in `dir` by writers that no longer run (a process killed while
// saving). Files of live processes, including this one, are kept.
inline int remove_stale_temporaries(const std::filesystem::path& dir) {
  int removed = 0;
  std::error_code error;
  if (!std::filesystem::is_directory(dir, error)) return 0;
  for (const auto& entry : std::filesystem::directory_iterator(dir, error)) {
    const std::string name = entry.path().filename().string();
    const size_t at = name.rfind(".tmp.");
    if (at == std::string::npos) continue;
    const std::string rest = name.substr(at + 5);  // "<pid>.<sequence>"
    const size_t dot = rest.find('.');
    if (dot == std::string::npos || dot == 0) continue;
    if (rest.find_first_not_of("0123456789.") != std::string::npos) continue;
    const auto pid = static_cast<pid_t>(std::stoll(rest.substr(0, dot)));
    if (pid == ::getpid()) continue;
    if (::kill(pid, 0) == 0 || errno != ESRCH) continue;  // alive (or not ours to judge)
    if (std::filesystem::remove(entry.path(), error)) ++removed;
  }
  return removed;
}

// ---- signatures -------------------------------------------------------------------------------

struct TensorSignature {
  std::string dtype;  // safetensors spelling: F32, BF16, F64, I64, ...
  std::vector<int64_t> shape;
  friend bool operator==(const TensorSignature&, const TensorSignature&) = default;
};

template <class T>
TensorSignature signature_of(const Shape& shape) {
  return {std::string(io::dtype_name(io::detail::dtype_of<T>())), shape.vec()};
}

inline std::string describe(const TensorSignature& s) {
  return mentor::detail::concat(s.dtype, " ", Shape(s.shape).str());
}

// ---- writing ----------------------------------------------------------------------------------

class CheckpointWriter {
 public:
  template <class T, class D>
  void add(const std::string& key, const Tensor<T, D>& tensor) {
    MENTOR_CHECK(tensor.defined(), "checkpoint: tensor '", key, "' is undefined");
    Tensor<T, CPU> host = tensor.detach().template to<CPU>().contiguous_nograd();
    const auto* bytes = reinterpret_cast<const std::byte*>(host.data());
    writer_.add(key, io::detail::dtype_of<T>(), host.shape().vec(),
                std::span<const std::byte>(bytes, host.nbytes()));
    signatures_[key] = signature_of<T>(host.shape());
  }

  template <class T, class D>
  void add_all(const std::string& prefix,
               const std::vector<std::pair<std::string, Tensor<T, D>*>>& named) {
    for (const auto& [name, tensor] : named) add(prefix + name, *tensor);
  }

  // Caller fields of the manifest (anything but "format", "version", "data", "tensors").
  nlohmann::json& manifest() { return manifest_; }

  // Writes <dir>/<stem>.safetensors, <dir>/<stem>.json and then <dir>/latest, each atomically
  // (see the file comment). Returns the stem path.
  std::filesystem::path commit(const std::filesystem::path& dir, const std::string& stem,
                               bool update_latest = true) const {
    MENTOR_CHECK(!stem.empty() && stem.find('/') == std::string::npos && stem != "latest",
                 "checkpoint: invalid name \"", stem, "\"");
    for (const char* reserved : {"format", "version", "data", "tensors"})
      MENTOR_CHECK(!manifest_.contains(reserved), "checkpoint: manifest field \"", reserved,
                   "\" is reserved");
    std::filesystem::create_directories(dir);
    remove_stale_temporaries(dir);
    const std::filesystem::path base = dir / stem;
    const std::filesystem::path data = data_path(base);
    writer_.write(data.string());

    // Hash what is on disk (from the page cache): the manifest then vouches for the real bytes.
    const auto mapped = io::detail::FileBytes::map_file(data.string());
    nlohmann::json manifest = manifest_.is_null() ? nlohmann::json::object() : manifest_;
    manifest["format"] = "mentor.checkpoint";
    manifest["version"] = 1;
    manifest["data"] = {{"file", data.filename().string()},
                        {"bytes", mapped.size()},
                        {"xxh64", hex64(xxh64(mapped.data(), mapped.size()))}};
    nlohmann::json tensors = nlohmann::json::object();
    for (const auto& [key, s] : signatures_)
      tensors[key] = {{"dtype", s.dtype}, {"shape", s.shape}};
    manifest["tensors"] = std::move(tensors);
    io::write_file_atomically(manifest_path(base).string(), manifest.dump(1) + "\n");
    if (update_latest) io::write_file_atomically((dir / "latest").string(), stem + "\n");
    return base;
  }

 private:
  io::SafeTensorsWriter writer_;
  std::map<std::string, TensorSignature> signatures_;
  nlohmann::json manifest_ = nlohmann::json::object();
};

// ---- reading ----------------------------------------------------------------------------------

class CheckpointReader {
 public:
  // `path`: a checkpoint directory (its latest), a stem, or either file of a checkpoint.
  static CheckpointReader open(const std::filesystem::path& path) {
    CheckpointReader reader;
    reader.stem_ = resolve_checkpoint(path);
    reader.read_manifest();
    reader.verify_data();
    return reader;
  }

  const std::filesystem::path& stem() const { return stem_; }
  const nlohmann::json& manifest() const { return manifest_; }
  const std::map<std::string, TensorSignature>& tensors() const { return tensors_; }
  bool contains(const std::string& key) const { return tensors_.count(key) != 0; }

  // Compares the checkpoint's tensors whose keys start with `prefix` against `expected` (key
  // without the prefix -> signature) and throws one error naming every missing, unexpected and
  // mis-shaped or mis-typed tensor. `what` names the part ("model", "optimizer state") for the
  // message.
  void check_tensors(const std::string& prefix,
                     const std::vector<std::pair<std::string, TensorSignature>>& expected,
                     const std::string& what) const {
    std::map<std::string, TensorSignature> wanted(expected.begin(), expected.end());
    std::vector<std::string> missing, unexpected, different;
    for (const auto& [key, signature] : tensors_) {
      if (!key.starts_with(prefix)) continue;
      const std::string name = key.substr(prefix.size());
      const auto found = wanted.find(name);
      if (found == wanted.end()) {
        unexpected.push_back(name + " (" + describe(signature) + ")");
      } else if (!(found->second == signature)) {
        different.push_back(name + ": expected " + describe(found->second) + ", checkpoint has " +
                            describe(signature));
      }
    }
    for (const auto& [name, signature] : wanted)
      if (!tensors_.count(prefix + name))
        missing.push_back(name + " (" + describe(signature) + ")");
    if (missing.empty() && unexpected.empty() && different.empty()) return;
    std::ostringstream message;
    message << "checkpoint " << stem_.string() << ": the " << what
            << " does not match (saved from a different architecture or configuration):";
    const char* separator = " ";
    const auto list = [&](const char* kind, const std::vector<std::string>& names) {
      if (names.empty()) return;
      message << separator << names.size() << ' ' << kind << ": ";
      for (size_t i = 0; i < names.size() && i < 20; ++i) message << (i ? ", " : "") << names[i];
      if (names.size() > 20) message << ", ... (" << names.size() - 20 << " more)";
      separator = "; ";
    };
    list("missing from the checkpoint", missing);
    list("in the checkpoint but not expected", unexpected);
    list("differ", different);
    throw Error(message.str());
  }

  // Copies tensor `key` into `dst` (same dtype and shape required: a checkpoint restores exactly).
  template <class T, class D>
  void read_into(const std::string& key, Tensor<T, D>& dst) const {
    const TensorSignature& stored = signature(key);
    const TensorSignature wanted = signature_of<T>(dst.shape());
    MENTOR_CHECK(stored == wanted, "checkpoint ", stem_.string(), ": tensor '", key, "' is ",
                 describe(stored), ", expected ", describe(wanted));
    Tensor<T, CPU> host = read_host<T>(key);
    NoGradGuard no_grad;
    dst.copy_(host.template to<D>());
  }

  // Tensor `key` as a new Tensor<T, D> (dtype must match).
  template <class T, class D = CPU>
  Tensor<T, D> read(const std::string& key) const {
    const TensorSignature& stored = signature(key);
    MENTOR_CHECK(stored.dtype == io::dtype_name(io::detail::dtype_of<T>()), "checkpoint ",
                 stem_.string(), ": tensor '", key, "' is ", stored.dtype, ", expected ",
                 io::dtype_name(io::detail::dtype_of<T>()));
    return read_host<T>(key).template to<D>();
  }

 private:
  CheckpointReader() = default;

  const TensorSignature& signature(const std::string& key) const {
    const auto found = tensors_.find(key);
    MENTOR_CHECK(found != tensors_.end(), "checkpoint ", stem_.string(), ": no tensor '", key, "'");
    return found->second;
  }

  template <class T>
  Tensor<T, CPU> read_host(const std::string& key) const {
    const auto bytes = file_->bytes(key);
    Tensor<T, CPU> host = Tensor<T, CPU>::empty(Shape(file_->info(key).shape));
    MENTOR_CHECK(bytes.size() == host.nbytes(), "checkpoint ", stem_.string(), ": tensor '", key,
                 "' holds ", bytes.size(), " bytes, expected ", host.nbytes());
    if (!bytes.empty()) std::memcpy(host.data(), bytes.data(), bytes.size());
    return host;
  }

  void read_manifest() {
    const auto path = manifest_path(stem_);
    MENTOR_CHECK(std::filesystem::exists(path), "checkpoint ", stem_.string(), ": manifest ",
                 path.string(),
                 " not found (the save never completed, or this is not a checkpoint)");
    std::ifstream in(path, std::ios::binary);
    std::stringstream text;
    text << in.rdbuf();
    manifest_ = nlohmann::json::parse(text.str(), nullptr, false);
    MENTOR_CHECK(!manifest_.is_discarded() && manifest_.is_object(), "checkpoint manifest ",
                 path.string(), " is damaged or truncated (", text.str().size(),
                 " bytes of invalid JSON)");
    MENTOR_CHECK(manifest_.value("format", "") == "mentor.checkpoint", "checkpoint manifest ",
                 path.string(), " is not a mentor checkpoint (format \"",
                 manifest_.value("format", ""), "\")");
    MENTOR_CHECK(manifest_.value("version", 0) == 1, "checkpoint manifest ", path.string(),
                 " has version ", manifest_.value("version", 0), "; this build reads version 1");
    try {
      const auto& data = manifest_.at("data");
      data_file_ = stem_.parent_path() / data.at("file").get<std::string>();
      data_bytes_ = data.at("bytes").get<uint64_t>();
      data_hash_ = data.at("xxh64").get<std::string>();
      for (const auto& [key, value] : manifest_.at("tensors").items())
        tensors_[key] = {value.at("dtype").get<std::string>(),
                         value.at("shape").get<std::vector<int64_t>>()};
    } catch (const nlohmann::json::exception& error) {
      throw Error(mentor::detail::concat("checkpoint manifest ", path.string(),
                                         " is damaged: ", error.what()));
    }
  }

  void verify_data() {
    const std::string data = data_file_.string();
    MENTOR_CHECK(std::filesystem::exists(data_file_), "checkpoint ", stem_.string(), ": data file ",
                 data, " is missing");
    const auto size = static_cast<uint64_t>(std::filesystem::file_size(data_file_));
    MENTOR_CHECK(size == data_bytes_, "checkpoint data ", data, " is ", size,
                 " bytes but its manifest records ", data_bytes_, ": the file is ",
                 size < data_bytes_ ? "truncated" : "damaged (extra bytes)");
    {
      const auto mapped = io::detail::FileBytes::map_file(data);
      const std::string hash = hex64(xxh64(mapped.data(), mapped.size()));
      MENTOR_CHECK(hash == data_hash_, "checkpoint data ", data,
                   " fails its integrity check (xxh64 ", hash, ", manifest records ", data_hash_,
                   "): the file is damaged");
    }
    try {
      file_.emplace(io::SafeTensorsFile::open(data));
    } catch (const Error& error) {
      throw Error(mentor::detail::concat("checkpoint ", stem_.string(), ": ", error.what()));
    }
    std::vector<std::string> problems;
    for (const auto& [key, s] : tensors_) {
      if (!file_->contains(key)) {
        problems.push_back("'" + key + "' listed in the manifest is not in the data file");
        continue;
      }
      const auto& info = file_->info(key);
      const TensorSignature actual{std::string(io::dtype_name(info.dtype)), info.shape};
      if (!(actual == s))
        problems.push_back("'" + key + "' is " + describe(actual) + " in the data file, " +
                           describe(s) + " in the manifest");
    }
    for (const std::string& key : file_->keys())
      if (!tensors_.count(key)) problems.push_back("'" + key + "' is not listed in the manifest");
    MENTOR_CHECK(problems.empty(), "checkpoint ", stem_.string(),
                 ": data file and manifest disagree: ", problems.front(),
                 problems.size() > 1
                     ? mentor::detail::concat(" (and ", problems.size() - 1, " more)")
                     : std::string());
  }

  std::filesystem::path stem_;
  nlohmann::json manifest_;
  std::filesystem::path data_file_;
  uint64_t data_bytes_ = 0;
  std::string data_hash_;
  std::map<std::string, TensorSignature> tensors_;
  std::optional<io::SafeTensorsFile> file_;
};

// Complete checkpoints in `dir` (a manifest that parses, with its data file present), as stems
// sorted by their manifest's "step" (then name). Integrity is not verified here (open() does).
inline std::vector<std::pair<int64_t, std::filesystem::path>> list_checkpoints(
    const std::filesystem::path& dir) {
  std::vector<std::pair<int64_t, std::filesystem::path>> out;
  std::error_code error;
  if (!std::filesystem::is_directory(dir, error)) return out;
  for (const auto& entry : std::filesystem::directory_iterator(dir, error)) {
    const auto& path = entry.path();
    if (path.extension() != ".json") continue;
    std::ifstream in(path, std::ios::binary);
    std::stringstream text;
    text << in.rdbuf();
    const auto manifest = nlohmann::json::parse(text.str(), nullptr, false);
    if (manifest.is_discarded() || !manifest.is_object() ||
        manifest.value("format", "") != "mentor.checkpoint")
      continue;
    std::filesystem::path stem = path;
    stem.replace_extension();
    if (!std::filesystem::exists(data_path(stem))) continue;
    const auto step = manifest.contains("step") && manifest["step"].is_number_integer()
                          ? manifest["step"].get<int64_t>()
                          : -1;
    out.emplace_back(step, stem);
  }
  std::sort(out.begin(), out.end());
  return out;
}

// Deletes all but the newest `keep_last` complete checkpoints of `dir` (never the one `latest`
// names). The manifest goes first, so a checkpoint interrupted mid-deletion is simply incomplete.
inline void prune_checkpoints(const std::filesystem::path& dir, int keep_last) {
  if (keep_last <= 0) return;
  std::optional<std::filesystem::path> latest;
  if (std::filesystem::exists(dir / "latest")) latest = resolve_checkpoint(dir);
  auto all = list_checkpoints(dir);
  if (static_cast<int>(all.size()) <= keep_last) return;
  all.resize(all.size() - static_cast<size_t>(keep_last));
  std::error_code error;
  for (const auto& [step, stem] : all) {
    if (latest && std::filesystem::equivalent(manifest_path(*latest), manifest_path(stem), error))
      continue;
    std::filesystem::remove(manifest_path(stem), error);
    std::filesystem::remove(data_path(stem), error);
  }
}

}  // namespace mentor::train
