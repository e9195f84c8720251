#pragma once
// Crash-safe checkpoints: a safetensors file of tensors plus a JSON manifest, committed in an order
// that makes a crash at any instant harmless.
//
// A checkpoint `<dir>/<stem>` is two files:
//   <stem>.safetensors  the tensors (model.*, master.*, optim.m.*, optim.v.*, ... by convention)
//   <stem>.json         the manifest: caller fields (step, rng, loader position, config, ...) plus
//                       {"format": "mentor.checkpoint", "version": 2,
//                        "data": {"file": "<stem>.safetensors", "bytes": N, "xxh64": "<16 hex>"},
//                        "tensors": {"<key>": {"dtype": "F32", "shape": [...]}, ...},
//                        "manifest_xxh64": "<16 hex>"}
// and `<dir>/latest` names the newest complete one (its stem and a newline).
//
// "manifest_xxh64" hashes the manifest itself (its compact dump() without that field; nlohmann
// sorts object keys, so the text is canonical), so an edited step, RNG offset or option cannot
// load silently, just as "data.xxh64" guards the tensors. Version 1 manifests had no such hash and
// are refused.
//
// Commit order: the safetensors file, then the manifest, then `latest`, each written to a
// temporary file, fsynced and renamed over its target (io/atomic_file.hpp). Until the manifest
// exists the checkpoint does not exist; until `latest` is renamed it still names the previous
// checkpoint. So a process killed (or a machine losing power) at any point leaves `latest` naming
// a complete checkpoint, plus at worst an orphaned temporary file, which the next save removes.
//
// Loading checks, before any tensor is copied: the manifest parses, has the expected format and
// its own hash (parse_checkpoint_manifest, which fuzzing exercises); data.file is a plain file
// name inside the checkpoint's folder (never an absolute path or `../`); the data file has exactly
// the recorded size (a truncated copy says so) and the recorded XXH64 content hash (a damaged one
// says so); the safetensors header is valid and lists exactly the manifest's tensors. Callers then
// compare the architecture (names, dtypes, shapes) with check_tensors(), which names every
// difference.
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
#include <limits>
#include <map>
#include <nlohmann/json.hpp>
#include <optional>
#include <sstream>
#include <string>
#include <string_view>
#include <type_traits>
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

// The XXH64 of a file's bytes as 16 hex digits: the identity a pre-tokenised codes file records
// for its VQ, and examples/generate for its inputs. The file is memory-mapped (8 bytes at least).
inline std::string file_xxh64(const std::filesystem::path& path) {
  const auto mapped = io::detail::FileBytes::map_file(path.string());
  return hex64(xxh64(mapped.data(), mapped.size()));
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
  std::error_code error;
  if (std::filesystem::is_directory(path, error)) {
    const auto pointer = path / "latest";
    MENTOR_CHECK(std::filesystem::exists(pointer, error), "checkpoint directory ", path.string(),
                 " has no 'latest' file: no checkpoint was completed there");
    std::ifstream in(pointer);
    std::string stem;
    std::getline(in, stem);
    // A plain name: `latest` must not lead out of its folder either.
    MENTOR_CHECK(!stem.empty() && stem != "." && stem != ".." &&
                     stem.find_first_of(std::string("/\\\0", 3)) == std::string::npos,
                 "checkpoint pointer ", pointer.string(), " is empty or damaged (content \"",
                 stem.substr(0, 200), "\")");
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

// ---- manifests --------------------------------------------------------------------------------

inline constexpr int kCheckpointVersion = 2;
inline constexpr int kManifestMaxDepth = 64;  // deeper documents are refused before dump() recurses

namespace detail {

inline std::string json_kind(const nlohmann::json& j) { return std::string(j.type_name()); }

// An integer field, checked: a float (even 1e300 or 3.0), a string, a negative value for an
// unsigned type or a value out of Int's range is an error naming the field, never a cast (a float
// out of an integer's range converts with undefined behaviour).
template <class Int>
Int json_integer(const nlohmann::json& j, const std::string& what) {
  static_assert(std::is_integral_v<Int>);
  MENTOR_CHECK(j.is_number_integer(), what, " must be an integer, got ", json_kind(j),
               j.is_number_float() ? mentor::detail::concat(" ", j.get<double>()) : std::string());
  if (j.is_number_unsigned()) {
    const uint64_t value = j.get<uint64_t>();
    MENTOR_CHECK(value <= static_cast<uint64_t>(std::numeric_limits<Int>::max()), what, " ", value,
                 " is out of range (at most ", std::numeric_limits<Int>::max(), ")");
    return static_cast<Int>(value);
  }
  const int64_t value = j.get<int64_t>();
  if constexpr (std::is_unsigned_v<Int>) {
    MENTOR_CHECK(value >= 0, what, " must not be negative, got ", value);
    MENTOR_CHECK(static_cast<uint64_t>(value) <= std::numeric_limits<Int>::max(), what, " ", value,
                 " is out of range");
  } else {
    MENTOR_CHECK(value >= static_cast<int64_t>(std::numeric_limits<Int>::min()) &&
                     value <= static_cast<int64_t>(std::numeric_limits<Int>::max()),
                 what, " ", value, " is out of range");
  }
  return static_cast<Int>(value);
}

inline std::string json_string(const nlohmann::json& j, const std::string& what) {
  MENTOR_CHECK(j.is_string(), what, " must be a string, got ", json_kind(j));
  return j.get<std::string>();
}

// The member `key` of object `j`, which must exist.
inline const nlohmann::json& json_member(const nlohmann::json& j, const std::string& key,
                                         const std::string& what) {
  MENTOR_CHECK(j.is_object(), what, " must be an object, got ", json_kind(j));
  const auto found = j.find(key);
  MENTOR_CHECK(found != j.end(), what, " has no \"", key, "\"");
  return *found;
}

// The hash "manifest_xxh64" records: of the compact dump of the manifest without that field.
inline std::string manifest_hash(nlohmann::json manifest) {
  manifest.erase("manifest_xxh64");
  const std::string text = manifest.dump();
  return hex64(xxh64(text.data(), text.size()));
}

// A file name that stays inside its folder: not empty, no directory part, not "." or "..".
inline bool is_plain_file_name(const std::string& name) {
  return !name.empty() && name != "." && name != ".." &&
         name.find_first_of(std::string("/\\\0", 3)) == std::string::npos;
}

}  // namespace detail

// A parsed and validated manifest.
struct CheckpointManifest {
  nlohmann::json json;    // the whole document (caller fields included)
  std::string data_file;  // a plain file name in the checkpoint's folder
  uint64_t data_bytes = 0;
  std::string data_xxh64;
  std::map<std::string, TensorSignature> tensors;
};

// Parses and validates a manifest from its JSON text: the format and version, every reserved field
// with its type and range, and the manifest's own hash. Any problem is a mentor::Error saying what
// is wrong (no nlohmann exception or unchecked conversion escapes). Pure: touches no file.
// fuzzed by tests/fuzz/fuzz_checkpoint_manifest.cpp
inline CheckpointManifest parse_checkpoint_manifest(std::string_view text) {
  bool too_deep = false;
  CheckpointManifest out;
  try {
    out.json = nlohmann::json::parse(
        text.begin(), text.end(),
        [&](int depth, nlohmann::json::parse_event_t, nlohmann::json&) {
          if (depth > kManifestMaxDepth) too_deep = true;
          return depth <= kManifestMaxDepth;  // drop what is deeper, so nothing deep is built
        },
        /*allow_exceptions=*/false);
  } catch (const nlohmann::json::exception& error) {  // defensive: parse should not throw here
    throw Error(mentor::detail::concat("is invalid JSON (", error.what(), ")"));
  }
  MENTOR_CHECK(!too_deep, "is nested deeper than ", kManifestMaxDepth, " levels");
  MENTOR_CHECK(!out.json.is_discarded(), "is damaged or truncated (", text.size(),
               " bytes of invalid JSON)");
  const nlohmann::json& m = out.json;
  MENTOR_CHECK(m.is_object(), "is not a JSON object (", detail::json_kind(m), ")");
  MENTOR_CHECK(m.contains("format") && m["format"].is_string() &&
                   m["format"].get<std::string>() == "mentor.checkpoint",
               "is not a mentor checkpoint (\"format\" is ",
               m.contains("format") ? m["format"].dump().substr(0, 80) : std::string("missing"),
               ", expected \"mentor.checkpoint\")");
  const auto version =
      detail::json_integer<int64_t>(detail::json_member(m, "version", "manifest"), "\"version\"");
  MENTOR_CHECK(version == kCheckpointVersion, "has version ", version,
               "; this build reads version ", kCheckpointVersion,
               version == 1 ? " (version 1 manifests carry no hash of their own, so their fields "
                              "cannot be trusted)"
                            : "");

  const nlohmann::json& data = detail::json_member(m, "data", "manifest");
  out.data_file = detail::json_string(detail::json_member(data, "file", "\"data\""), "data.file");
  MENTOR_CHECK(detail::is_plain_file_name(out.data_file), "data.file \"",
               out.data_file.substr(0, 200),
               "\" is not a plain file name in the checkpoint's folder (no directories, absolute "
               "paths or \"..\")");
  out.data_bytes =
      detail::json_integer<uint64_t>(detail::json_member(data, "bytes", "\"data\""), "data.bytes");
  out.data_xxh64 =
      detail::json_string(detail::json_member(data, "xxh64", "\"data\""), "data.xxh64");
  const nlohmann::json& tensors = detail::json_member(m, "tensors", "manifest");
  MENTOR_CHECK(tensors.is_object(), "\"tensors\" must be an object, got ",
               detail::json_kind(tensors));
  for (const auto& [key, value] : tensors.items()) {
    const std::string where = "tensors[\"" + key + "\"]";
    TensorSignature signature;
    signature.dtype =
        detail::json_string(detail::json_member(value, "dtype", where), where + ".dtype");
    const nlohmann::json& shape = detail::json_member(value, "shape", where);
    MENTOR_CHECK(shape.is_array(), where, ".shape must be an array, got ",
                 detail::json_kind(shape));
    for (size_t i = 0; i < shape.size(); ++i)
      signature.shape.push_back(detail::json_integer<int64_t>(
          shape[i], mentor::detail::concat(where, ".shape[", i, "]")));
    for (int64_t extent : signature.shape)
      MENTOR_CHECK(extent >= 0, where, ".shape has a negative extent ", extent);
    out.tensors.emplace(key, std::move(signature));
  }
  // Last, the manifest's own hash (checked after the fields so that their errors are specific).
  const std::string recorded =
      detail::json_string(detail::json_member(m, "manifest_xxh64", "manifest"), "manifest_xxh64");
  std::string actual;
  try {
    actual = detail::manifest_hash(m);
  } catch (const nlohmann::json::exception& error) {  // e.g. a string that is not UTF-8
    throw Error(mentor::detail::concat("cannot be hashed (", error.what(), ")"));
  }
  MENTOR_CHECK(actual == recorded, "fails its own integrity check (manifest_xxh64 ", actual,
               ", recorded ", recorded, "): it was edited or damaged after it was written");

  return out;
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

  // Caller fields of the manifest (anything but "format", "version", "data", "tensors",
  // "manifest_xxh64").
  nlohmann::json& manifest() { return manifest_; }

  // Writes <dir>/<stem>.safetensors, <dir>/<stem>.json and then <dir>/latest, each atomically
  // (see the file comment). Returns the stem path.
  std::filesystem::path commit(const std::filesystem::path& dir, const std::string& stem,
                               bool update_latest = true) const {
    MENTOR_CHECK(!stem.empty() && stem.find('/') == std::string::npos && stem != "latest",
                 "checkpoint: invalid name \"", stem, "\"");
    for (const char* reserved : {"format", "version", "data", "tensors", "manifest_xxh64"})
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
    manifest["version"] = kCheckpointVersion;
    manifest["data"] = {{"file", data.filename().string()},
                        {"bytes", mapped.size()},
                        {"xxh64", hex64(xxh64(mapped.data(), mapped.size()))}};
    nlohmann::json tensors = nlohmann::json::object();
    for (const auto& [key, s] : signatures_)
      tensors[key] = {{"dtype", s.dtype}, {"shape", s.shape}};
    manifest["tensors"] = std::move(tensors);
    manifest["manifest_xxh64"] = detail::manifest_hash(manifest);
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
    std::error_code error;
    MENTOR_CHECK(std::filesystem::exists(path, error), "checkpoint ", stem_.string(), ": manifest ",
                 path.string(),
                 " not found (the save never completed, or this is not a checkpoint)");
    MENTOR_CHECK(std::filesystem::is_regular_file(path, error), "checkpoint manifest ",
                 path.string(), " is not a regular file");
    std::ifstream in(path, std::ios::binary);
    std::stringstream text;
    text << in.rdbuf();
    MENTOR_CHECK(in.good() || in.eof(), "checkpoint manifest ", path.string(), " cannot be read");
    CheckpointManifest parsed;
    try {
      parsed = parse_checkpoint_manifest(text.str());
    } catch (const Error& problem) {
      throw Error(
          mentor::detail::concat("checkpoint manifest ", path.string(), ": ", problem.what()));
    }
    manifest_ = std::move(parsed.json);
    data_file_ = stem_.parent_path() / parsed.data_file;
    data_bytes_ = parsed.data_bytes;
    data_hash_ = std::move(parsed.data_xxh64);
    tensors_ = std::move(parsed.tensors);
  }

  void verify_data() {
    const std::string data = data_file_.string();
    std::error_code fs_error;
    MENTOR_CHECK(std::filesystem::exists(data_file_, fs_error), "checkpoint ", stem_.string(),
                 ": data file ", data, " is missing");
    MENTOR_CHECK(std::filesystem::is_regular_file(data_file_, fs_error), "checkpoint ",
                 stem_.string(), ": data file ", data, " is not a regular file");
    const auto size = static_cast<uint64_t>(std::filesystem::file_size(data_file_, fs_error));
    MENTOR_CHECK(!fs_error, "checkpoint ", stem_.string(), ": cannot read the size of data file ",
                 data, " (", fs_error.message(), ")");
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

// A file in a checkpoint folder that looks like a checkpoint but cannot be used, and why.
struct SkippedCheckpoint {
  std::filesystem::path manifest;
  std::string reason;
};

// Complete checkpoints in `dir` (a manifest that passes parse_checkpoint_manifest, with its data
// file present), as stems sorted by their manifest's "step" (then name). The data itself is not
// verified here (open() does). A bad checkpoint never stops the listing: a manifest that claims to
// be a checkpoint (or has a .safetensors beside it) but does not validate is left out and, when
// `skipped` is given, reported there; other .json files are not checkpoints and are ignored.
inline std::vector<std::pair<int64_t, std::filesystem::path>> list_checkpoints(
    const std::filesystem::path& dir, std::vector<SkippedCheckpoint>* skipped = nullptr) {
  std::vector<std::pair<int64_t, std::filesystem::path>> out;
  std::error_code error;
  if (!std::filesystem::is_directory(dir, error)) return out;
  for (auto it = std::filesystem::directory_iterator(dir, error);
       !error && it != std::filesystem::directory_iterator(); it.increment(error)) {
    const auto& path = it->path();
    if (path.extension() != ".json") continue;
    std::filesystem::path stem = path;
    stem.replace_extension();
    std::ifstream in(path, std::ios::binary);
    std::stringstream text;
    text << in.rdbuf();
    const std::string content = text.str();
    const bool has_data = std::filesystem::exists(data_path(stem), error);
    const bool claims = content.find("mentor.checkpoint") != std::string::npos;
    if (!has_data && !claims) continue;  // somebody else's JSON file
    std::string reason;
    int64_t step = -1;
    try {
      const CheckpointManifest manifest = parse_checkpoint_manifest(content);
      if (!has_data)
        reason = "its data file " + data_path(stem).filename().string() + " is missing";
      const auto found = manifest.json.find("step");
      if (found != manifest.json.end() && found->is_number_integer())
        step = detail::json_integer<int64_t>(*found, "step");
    } catch (const Error& problem) {
      reason = problem.what();
    }
    if (!reason.empty()) {
      if (skipped) skipped->push_back({path, reason});
      continue;
    }
    out.emplace_back(step, stem);
  }
  std::sort(out.begin(), out.end());
  return out;
}

struct PruneReport {
  std::vector<std::filesystem::path> removed;  // stems
  std::vector<SkippedCheckpoint> skipped;      // bad checkpoints, left alone
};

// Deletes all but the newest `keep_last` complete checkpoints of `dir` (never the one `latest`
// names). The manifest goes first, so a checkpoint interrupted mid-deletion is simply incomplete.
// Bad checkpoints are not counted, not deleted, and reported; a damaged `latest` stops pruning
// (which checkpoint it meant is unknown) and is reported too.
inline PruneReport prune_checkpoints(const std::filesystem::path& dir, int keep_last) {
  PruneReport report;
  if (keep_last <= 0) return report;
  std::optional<std::filesystem::path> latest;
  std::error_code error;
  if (std::filesystem::exists(dir / "latest", error)) {
    try {
      latest = resolve_checkpoint(dir);
    } catch (const Error& problem) {
      report.skipped.push_back({dir / "latest", std::string(problem.what()) + "; nothing pruned"});
      return report;
    }
  }
  auto all = list_checkpoints(dir, &report.skipped);
  if (static_cast<int>(all.size()) <= keep_last) return report;
  all.resize(all.size() - static_cast<size_t>(keep_last));
  for (const auto& [step, stem] : all) {
    if (latest && std::filesystem::equivalent(manifest_path(*latest), manifest_path(stem), error))
      continue;
    std::filesystem::remove(manifest_path(stem), error);
    std::filesystem::remove(data_path(stem), error);
    report.removed.push_back(stem);
  }
  return report;
}

}  // namespace mentor::train
