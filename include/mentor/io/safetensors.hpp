#pragma once
// safetensors I/O at the byte level (no dependency on the tensor type).
//
// Format: 8-byte little-endian header length N, N bytes of JSON header, then the data section.
// The header maps tensor names to {"dtype", "shape", "data_offsets": [begin, end]} (offsets
// relative to the data section) and may hold "__metadata__": {string: string}.
//
// SafeTensorsFile::open memory-maps the file read-only and validates the whole header before
// returning, so every later access is in bounds: a malformed, truncated or hostile file gives a
// mentor::Error "safetensors <path>: <problem>" naming the tensor, never a crash. (A file truncated
// by another process *after* it was mapped can still raise SIGBUS; that is outside our control.)
//
// SafeTensorsWriter collects tensors and writes them atomically (atomic_file.hpp), with the header
// padded with spaces to 8-byte alignment as the reference implementation does.
#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <bit>
#include <cerrno>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <limits>
#include <map>
#include <memory>
#include <nlohmann/json.hpp>
#include <optional>
#include <set>
#include <span>
#include <string>
#include <string_view>
#include <type_traits>
#include <utility>
#include <vector>

#include "mentor/core/bf16.hpp"
#include "mentor/core/error.hpp"
#include "mentor/io/atomic_file.hpp"

namespace mentor::io {

static_assert(std::endian::native == std::endian::little,
              "safetensors data is little-endian; a big-endian host would need byte swaps");

// ---- dtypes ----------------------------------------------------------------------------------

enum class StDType { F64, F32, F16, BF16, I64, I32, I16, I8, U8, BOOL };

inline size_t element_size(StDType dtype) {
  switch (dtype) {
    case StDType::F64:
    case StDType::I64:
      return 8;
    case StDType::F32:
    case StDType::I32:
      return 4;
    case StDType::F16:
    case StDType::BF16:
    case StDType::I16:
      return 2;
    case StDType::I8:
    case StDType::U8:
    case StDType::BOOL:
      return 1;
  }
  throw Error("safetensors: invalid StDType value");
}

inline std::string_view dtype_name(StDType dtype) {
  switch (dtype) {
    case StDType::F64:
      return "F64";
    case StDType::F32:
      return "F32";
    case StDType::F16:
      return "F16";
    case StDType::BF16:
      return "BF16";
    case StDType::I64:
      return "I64";
    case StDType::I32:
      return "I32";
    case StDType::I16:
      return "I16";
    case StDType::I8:
      return "I8";
    case StDType::U8:
      return "U8";
    case StDType::BOOL:
      return "BOOL";
  }
  return "<invalid StDType>";
}

// The dtype spelled `name` in a header, or nullopt for one we do not support (F8_*, U16, C64...).
inline std::optional<StDType> parse_dtype(std::string_view name) {
  for (StDType dtype : {StDType::F64, StDType::F32, StDType::F16, StDType::BF16, StDType::I64,
                        StDType::I32, StDType::I16, StDType::I8, StDType::U8, StDType::BOOL}) {
    if (dtype_name(dtype) == name) return dtype;
  }
  return std::nullopt;
}

inline bool is_floating(StDType dtype) {
  return dtype == StDType::F64 || dtype == StDType::F32 || dtype == StDType::F16 ||
         dtype == StDType::BF16;
}

// ---- half-precision bit conversions ----------------------------------------------------------

// IEEE binary16 -> float (exact: every half is a float). Handles subnormals, infinities, NaN.
inline float f16_bits_to_float(uint16_t bits) {
  const uint32_t sign = static_cast<uint32_t>(bits & 0x8000u) << 16;
  const uint32_t exponent = (bits >> 10) & 0x1fu;
  uint32_t mantissa = bits & 0x3ffu;
  uint32_t word;
  if (exponent == 0x1f) {
    word = sign | 0x7f800000u | (mantissa << 13);  // inf or NaN (payload kept)
  } else if (exponent != 0) {
    word = sign | ((exponent + 127 - 15) << 23) | (mantissa << 13);
  } else if (mantissa == 0) {
    word = sign;  // signed zero
  } else {
    // Subnormal half: normalise the mantissa; the value is mantissa * 2^-24.
    int float_exponent = 127 - 15 + 1;
    while ((mantissa & 0x400u) == 0) {
      mantissa <<= 1;
      --float_exponent;
    }
    word = sign | (static_cast<uint32_t>(float_exponent) << 23) | ((mantissa & 0x3ffu) << 13);
  }
  return std::bit_cast<float>(word);
}

// float -> IEEE binary16, rounding to nearest even; overflow gives infinity, NaN stays NaN.
inline uint16_t float_to_f16_bits(float value) {
  const uint32_t word = std::bit_cast<uint32_t>(value);
  const uint16_t sign = static_cast<uint16_t>((word >> 16) & 0x8000u);
  const uint32_t exponent = (word >> 23) & 0xffu;
  const uint32_t mantissa = word & 0x7fffffu;
  if (exponent == 0xff) {
    if (mantissa == 0) return sign | 0x7c00u;                         // infinity
    return static_cast<uint16_t>(sign | 0x7e00u | (mantissa >> 13));  // quiet NaN
  }
  const int half_exponent = static_cast<int>(exponent) - 127 + 15;
  if (half_exponent >= 0x1f) return sign | 0x7c00u;  // too large: infinity
  if (half_exponent <= 0) {
    // Subnormal half (or zero): shift the full significand right, rounding to nearest even.
    if (half_exponent < -10) return sign;  // below half the smallest subnormal: zero
    const uint32_t significand = mantissa | 0x800000u;
    const int shift = 14 - half_exponent;  // 14..24
    uint32_t result = significand >> shift;
    const uint32_t remainder = significand & ((1u << shift) - 1);
    const uint32_t halfway = 1u << (shift - 1);
    if (remainder > halfway || (remainder == halfway && (result & 1u))) ++result;
    return static_cast<uint16_t>(sign | result);
  }
  uint32_t result = (static_cast<uint32_t>(half_exponent) << 10) | (mantissa >> 13);
  const uint32_t remainder = mantissa & 0x1fffu;
  if (remainder > 0x1000u || (remainder == 0x1000u && (result & 1u))) ++result;  // may carry to inf
  return static_cast<uint16_t>(sign | result);
}

// bfloat16 -> float (exact: the upper half of a float).
inline float bf16_bits_to_float(uint16_t bits) {
  return std::bit_cast<float>(static_cast<uint32_t>(bits) << 16);
}

// ---- element types usable with read_as / add ---------------------------------------------------

namespace detail {

template <class T>
inline constexpr bool is_float_element_v =
    std::is_same_v<T, float> || std::is_same_v<T, double> || std::is_same_v<T, mentor::bf16>;

template <class T>
inline constexpr bool is_integer_element_v =
    std::is_same_v<T, int64_t> || std::is_same_v<T, int32_t> || std::is_same_v<T, int16_t> ||
    std::is_same_v<T, int8_t> || std::is_same_v<T, uint8_t>;

template <class T>
inline constexpr bool is_element_v =
    is_float_element_v<T> || is_integer_element_v<T> || std::is_same_v<T, bool>;

// The dtype a C++ element type is stored as.
template <class T>
constexpr StDType dtype_of() {
  static_assert(is_element_v<T>,
                "safetensors element types: float, double, mentor::bf16, int64_t, int32_t, "
                "int16_t, int8_t, uint8_t, bool");
  if constexpr (std::is_same_v<T, float>)
    return StDType::F32;
  else if constexpr (std::is_same_v<T, double>)
    return StDType::F64;
  else if constexpr (std::is_same_v<T, mentor::bf16>)
    return StDType::BF16;
  else if constexpr (std::is_same_v<T, int64_t>)
    return StDType::I64;
  else if constexpr (std::is_same_v<T, int32_t>)
    return StDType::I32;
  else if constexpr (std::is_same_v<T, int16_t>)
    return StDType::I16;
  else if constexpr (std::is_same_v<T, int8_t>)
    return StDType::I8;
  else if constexpr (std::is_same_v<T, uint8_t>)
    return StDType::U8;
  else
    return StDType::BOOL;
}

template <class T>
constexpr std::string_view element_type_name() {
  if constexpr (std::is_same_v<T, float>)
    return "float";
  else if constexpr (std::is_same_v<T, double>)
    return "double";
  else if constexpr (std::is_same_v<T, mentor::bf16>)
    return "bf16";
  else if constexpr (std::is_same_v<T, int64_t>)
    return "int64";
  else if constexpr (std::is_same_v<T, int32_t>)
    return "int32";
  else if constexpr (std::is_same_v<T, int16_t>)
    return "int16";
  else if constexpr (std::is_same_v<T, int8_t>)
    return "int8";
  else if constexpr (std::is_same_v<T, uint8_t>)
    return "uint8";
  else if constexpr (std::is_same_v<T, bool>)
    return "bool";
  else
    return "unsupported";
}

// Unaligned little-endian load of element `index` (the data section need not be aligned).
template <class S>
S load_element(const std::byte* base, size_t index) {
  S value;
  std::memcpy(&value, base + index * sizeof(S), sizeof(S));
  return value;
}

inline std::string format_shape(std::span<const int64_t> shape) {
  std::string out = "[";
  for (size_t i = 0; i < shape.size(); ++i) {
    if (i) out += ",";
    out += std::to_string(shape[i]);
  }
  return out + "]";
}

// Product of the dims, or nullopt on a negative dim or overflow past int64.
inline std::optional<uint64_t> checked_numel(std::span<const int64_t> shape) {
  uint64_t numel = 1;
  for (int64_t dim : shape) {
    if (dim < 0) return std::nullopt;
    if (__builtin_mul_overflow(numel, static_cast<uint64_t>(dim), &numel)) return std::nullopt;
  }
  if (numel > static_cast<uint64_t>(std::numeric_limits<int64_t>::max())) return std::nullopt;
  return numel;
}

// A short description of a header value for an error message. Only flat values are printed: a
// hostile header can nest arrays thousands deep, and nlohmann's dump() recurses.
inline std::string describe_json(const nlohmann::json& value) {
  const auto is_flat = [](const nlohmann::json& item) { return !item.is_structured(); };
  if (!value.is_structured() ||
      (value.is_array() && value.size() <= 8 && std::all_of(value.begin(), value.end(), is_flat))) {
    std::string text = value.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
    if (text.size() > 80) text = text.substr(0, 80) + "...";
    return text;
  }
  return mentor::detail::concat("an ", value.type_name(), " of ", value.size(), " items");
}

// Owns the file bytes: a read-only private mapping, or a vector (from_bytes). Both keep their
// address when moved, so offsets into them stay valid.
class FileBytes {
 public:
  FileBytes() = default;
  explicit FileBytes(std::vector<uint8_t> owned) : owned_(std::move(owned)) {}
  FileBytes(FileBytes&& other) noexcept
      : mapping_(std::exchange(other.mapping_, nullptr)),
        mapping_size_(std::exchange(other.mapping_size_, 0)),
        owned_(std::move(other.owned_)) {}
  FileBytes& operator=(FileBytes&& other) noexcept {
    if (this != &other) {
      unmap();
      mapping_ = std::exchange(other.mapping_, nullptr);
      mapping_size_ = std::exchange(other.mapping_size_, 0);
      owned_ = std::move(other.owned_);
    }
    return *this;
  }
  FileBytes(const FileBytes&) = delete;
  FileBytes& operator=(const FileBytes&) = delete;
  ~FileBytes() { unmap(); }

  // Maps `path`; files shorter than 8 bytes are rejected here because mmap of 0 bytes fails.
  static FileBytes map_file(const std::string& path) {
    const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
      const int error_number = errno;
      throw Error(mentor::detail::concat("safetensors ", path,
                                         ": cannot open: ", errno_text(error_number)));
    }
    struct stat status {};
    if (::fstat(fd, &status) != 0) {
      const int error_number = errno;
      ::close(fd);
      throw Error(mentor::detail::concat("safetensors ", path,
                                         ": cannot stat: ", errno_text(error_number)));
    }
    if (!S_ISREG(status.st_mode)) {
      ::close(fd);
      throw Error(mentor::detail::concat("safetensors ", path, ": not a regular file"));
    }
    const auto size = static_cast<uint64_t>(status.st_size);
    if (size < 8) {
      ::close(fd);
      throw Error(mentor::detail::concat("safetensors ", path, ": truncated: the file has ", size,
                                         " bytes, fewer than the 8-byte header length"));
    }
    void* mapping = ::mmap(nullptr, size, PROT_READ, MAP_PRIVATE, fd, 0);
    const int error_number = errno;
    ::close(fd);  // the mapping keeps the file alive
    if (mapping == MAP_FAILED) {
      throw Error(mentor::detail::concat("safetensors ", path,
                                         ": cannot mmap: ", errno_text(error_number)));
    }
    FileBytes bytes;
    bytes.mapping_ = mapping;
    bytes.mapping_size_ = size;
    return bytes;
  }

  const uint8_t* data() const {
    return mapping_ ? static_cast<const uint8_t*>(mapping_) : owned_.data();
  }
  size_t size() const { return mapping_ ? mapping_size_ : owned_.size(); }

 private:
  void unmap() noexcept {
    if (mapping_) ::munmap(mapping_, mapping_size_);
    mapping_ = nullptr;
    mapping_size_ = 0;
  }

  void* mapping_ = nullptr;
  size_t mapping_size_ = 0;
  std::vector<uint8_t> owned_;
};

}  // namespace detail

// ---- reading ---------------------------------------------------------------------------------

struct TensorInfo {
  std::string name;
  StDType dtype = StDType::F32;
  std::vector<int64_t> shape;
  size_t begin = 0, end = 0;  // byte offsets relative to the data section

  size_t numel() const {
    size_t count = 1;
    for (int64_t dim : shape) count *= static_cast<size_t>(dim);  // validated: no overflow
    return count;
  }
  size_t nbytes() const { return end - begin; }
};

class SafeTensorsFile {
 public:
  // Headers above this size are refused before parsing (the reference implementation's limit).
  static constexpr uint64_t kMaxHeaderBytes = 100'000'000;

  static SafeTensorsFile open(const std::string& path) {
    return SafeTensorsFile(detail::FileBytes::map_file(path), path);
  }

  // Same validation as open(), on bytes in memory; `label` stands for the path in messages.
  static SafeTensorsFile from_bytes(std::vector<uint8_t> bytes, std::string label) {
    return SafeTensorsFile(detail::FileBytes(std::move(bytes)), std::move(label));
  }

  SafeTensorsFile(SafeTensorsFile&&) noexcept = default;
  SafeTensorsFile& operator=(SafeTensorsFile&&) noexcept = default;
  SafeTensorsFile(const SafeTensorsFile&) = delete;
  SafeTensorsFile& operator=(const SafeTensorsFile&) = delete;

  const std::string& path() const { return path_; }
  size_t size() const { return tensors_.size(); }

  std::vector<std::string> keys() const {  // sorted
    std::vector<std::string> names;
    names.reserve(tensors_.size());
    for (const auto& [name, entry] : tensors_) names.push_back(name);
    return names;
  }

  bool contains(std::string_view key) const { return tensors_.find(key) != tensors_.end(); }

  const TensorInfo& info(std::string_view key) const {
    const auto found = tensors_.find(key);
    if (found == tensors_.end()) {
      throw Error(mentor::detail::concat("safetensors ", path_, ": no tensor named '", key, "'"));
    }
    return found->second;
  }

  std::span<const std::byte> bytes(std::string_view key) const {
    const TensorInfo& entry = info(key);
    return {tensor_data(entry), entry.nbytes()};
  }

  const std::map<std::string, std::string>& metadata() const { return metadata_; }

  // Convert tensor `key` into `out` (out.size() must equal its element count). Floating dtypes
  // convert to float, double and bf16; integer and BOOL dtypes to the integer types and bool, with
  // a range check. Anything else (float data into an int buffer) throws naming key and both types.
  template <class T>
  void read_into(std::string_view key, std::span<T> out) const {
    static_assert(!std::is_same_v<T, bool>, "read_into<bool>: use read_as<bool>");
    const TensorInfo& entry = info(key);
    if (out.size() != entry.numel()) {
      throw Error(mentor::detail::concat("safetensors ", path_, ": tensor '", entry.name, "' has ",
                                         entry.numel(), " elements (shape ",
                                         detail::format_shape(entry.shape),
                                         ") but the buffer holds ", out.size()));
    }
    if (entry.dtype == detail::dtype_of<T>()) {  // stored as T already: one copy
      static_assert(std::is_trivially_copyable_v<T>);
      if (entry.nbytes() != 0) std::memcpy(out.data(), tensor_data(entry), entry.nbytes());
      return;
    }
    convert_each<T>(entry, [&](size_t index, T value) { out[index] = value; });
  }

  template <class T>
  std::vector<T> read_as(std::string_view key) const {
    const TensorInfo& entry = info(key);
    std::vector<T> out(entry.numel());
    if constexpr (std::is_same_v<T, bool>) {  // vector<bool> is packed: element by element
      convert_each<T>(entry, [&](size_t index, bool value) { out[index] = value; });
    } else {
      read_into<T>(key, out);
    }
    return out;
  }

 private:
  SafeTensorsFile(detail::FileBytes bytes, std::string path)
      : bytes_(std::move(bytes)), path_(std::move(path)) {
    parse_and_validate();
  }

  template <class... Parts>
  [[noreturn]] void fail(const Parts&... parts) const {
    throw Error(mentor::detail::concat("safetensors ", path_, ": ", parts...));
  }

  const std::byte* tensor_data(const TensorInfo& entry) const {
    return reinterpret_cast<const std::byte*>(bytes_.data()) + data_start_ + entry.begin;
  }

  void parse_and_validate() {
    const uint8_t* file = bytes_.data();
    const uint64_t file_size = bytes_.size();
    if (file_size < 8) {
      fail("truncated: the file has ", file_size, " bytes, fewer than the 8-byte header length");
    }
    uint64_t header_size = 0;
    for (int i = 7; i >= 0; --i) header_size = (header_size << 8) | file[i];
    if (header_size > kMaxHeaderBytes) {
      fail("header length ", header_size, " is absurd (more than ", kMaxHeaderBytes,
           " bytes): not a safetensors file or a corrupt one");
    }
    if (header_size > file_size - 8) {
      fail("truncated: header length ", header_size, " but only ", file_size - 8,
           " bytes follow the length prefix");
    }
    data_start_ = 8 + header_size;
    const uint64_t data_size = file_size - data_start_;

    // Parse with a callback that notices repeated top-level keys (a plain parse keeps the last one
    // silently, so two headers could disagree about which tensor a name means).
    std::string duplicate_key;
    std::set<std::string, std::less<>> seen_keys;
    const auto note_keys = [&](int depth, nlohmann::json::parse_event_t event,
                               nlohmann::json& parsed) {
      if (event == nlohmann::json::parse_event_t::key && depth == 1 && parsed.is_string()) {
        const auto& name = parsed.get_ref<const std::string&>();
        if (!seen_keys.insert(name).second && duplicate_key.empty()) duplicate_key = name;
      }
      return true;
    };
    nlohmann::json header;
    try {
      const char* text = reinterpret_cast<const char*>(file + 8);
      header = nlohmann::json::parse(text, text + header_size, note_keys);
    } catch (const nlohmann::json::exception& error) {
      fail("header is not valid JSON: ", error.what());
    }
    if (!header.is_object()) fail("header is not a JSON object (found ", header.type_name(), ")");
    if (!duplicate_key.empty()) fail("duplicate key '", duplicate_key, "' in header");

    for (const auto& [name, value] : header.items()) {
      if (name == "__metadata__") {
        parse_metadata(value);
        continue;
      }
      TensorInfo entry = parse_entry(name, value);
      if (entry.end > data_size) {
        fail("truncated: the data section has ", data_size, " bytes but tensor '", name,
             "' needs up to ", entry.end);
      }
      tensors_.emplace(entry.name, std::move(entry));
    }
    check_no_overlap();
  }

  void parse_metadata(const nlohmann::json& value) {
    if (!value.is_object()) fail("__metadata__ is not an object (found ", value.type_name(), ")");
    for (const auto& [key, item] : value.items()) {
      if (!item.is_string()) {
        fail("__metadata__ value for '", key, "' is not a string (found ", item.type_name(), ")");
      }
      metadata_.emplace(key, item.get<std::string>());
    }
  }

  // A non-negative JSON integer, or a failure naming the tensor and field.
  uint64_t parse_count(const nlohmann::json& value, const std::string& name,
                       std::string_view field) const {
    if (value.is_number_unsigned()) return value.get<uint64_t>();
    if (value.is_number_integer()) {
      fail("tensor '", name, "': negative ", field, " ", value.get<int64_t>());
    }
    fail("tensor '", name, "': ", field, " is not an integer (found ", detail::describe_json(value),
         ")");
  }

  TensorInfo parse_entry(const std::string& name, const nlohmann::json& value) const {
    if (!value.is_object()) {
      fail("tensor '", name, "': entry is not an object (found ", value.type_name(), ")");
    }
    for (const char* field : {"dtype", "shape", "data_offsets"}) {
      if (!value.contains(field)) fail("tensor '", name, "': entry has no \"", field, "\"");
    }
    TensorInfo entry;
    entry.name = name;

    const nlohmann::json& dtype = value.at("dtype");
    if (!dtype.is_string()) fail("tensor '", name, "': dtype is not a string");
    const std::optional<StDType> parsed_dtype = parse_dtype(dtype.get_ref<const std::string&>());
    if (!parsed_dtype) {
      fail("tensor '", name, "': unknown dtype '", dtype.get_ref<const std::string&>(), "'");
    }
    entry.dtype = *parsed_dtype;

    const nlohmann::json& shape = value.at("shape");
    if (!shape.is_array()) fail("tensor '", name, "': shape is not an array");
    for (const nlohmann::json& dim : shape) {
      const uint64_t extent = parse_count(dim, name, "shape dimension");
      if (extent > static_cast<uint64_t>(std::numeric_limits<int64_t>::max())) {
        fail("tensor '", name, "': shape dimension ", extent, " is too large");
      }
      entry.shape.push_back(static_cast<int64_t>(extent));
    }
    const std::optional<uint64_t> numel = detail::checked_numel(entry.shape);
    uint64_t expected_bytes = 0;
    if (!numel || __builtin_mul_overflow(*numel, element_size(entry.dtype), &expected_bytes)) {
      fail("tensor '", name, "': shape ", detail::format_shape(entry.shape),
           " overflows (the element count times the element size exceeds 64 bits)");
    }

    const nlohmann::json& offsets = value.at("data_offsets");
    if (!offsets.is_array() || offsets.size() != 2) {
      fail("tensor '", name, "': data_offsets is not [begin, end] (found ",
           detail::describe_json(offsets), ")");
    }
    const uint64_t begin = parse_count(offsets[0], name, "data_offsets begin");
    const uint64_t end = parse_count(offsets[1], name, "data_offsets end");
    if (begin > end) {
      fail("tensor '", name, "': bad data_offsets: begin ", begin, " > end ", end);
    }
    entry.begin = begin;
    entry.end = end;
    if (end - begin != expected_bytes) {
      fail("tensor '", name, "': dtype/shape inconsistent: ", dtype_name(entry.dtype), " ",
           detail::format_shape(entry.shape), " needs ", expected_bytes,
           " bytes but data_offsets [", begin, ",", end, "] span ", end - begin);
    }
    return entry;
  }

  // Non-empty tensors must occupy disjoint byte ranges (empty ones occupy nothing).
  void check_no_overlap() const {
    std::vector<const TensorInfo*> by_offset;
    for (const auto& [name, entry] : tensors_) {
      if (entry.begin != entry.end) by_offset.push_back(&entry);
    }
    std::sort(by_offset.begin(), by_offset.end(), [](const TensorInfo* a, const TensorInfo* b) {
      return a->begin != b->begin ? a->begin < b->begin : a->name < b->name;
    });
    const TensorInfo* furthest = nullptr;  // the tensor reaching furthest so far
    for (const TensorInfo* entry : by_offset) {
      if (furthest && entry->begin < furthest->end) {
        fail("overlap between '", furthest->name, "' [", furthest->begin, ",", furthest->end,
             ") and '", entry->name, "' [", entry->begin, ",", entry->end, ")");
      }
      if (!furthest || entry->end > furthest->end) furthest = entry;
    }
  }

  [[noreturn]] void fail_conversion(const TensorInfo& entry, std::string_view requested) const {
    fail("tensor '", entry.name, "' is stored as ", dtype_name(entry.dtype),
         " and cannot be read as ", requested);
  }

  // Calls sink(index, value) for every element of `entry` converted to T.
  template <class T, class Sink>
  void convert_each(const TensorInfo& entry, Sink&& sink) const {
    static_assert(detail::is_element_v<T>,
                  "read_as/read_into: T must be float, double, mentor::bf16, int64_t, int32_t, "
                  "int16_t, int8_t, uint8_t or bool");
    const std::byte* data = tensor_data(entry);
    const size_t count = entry.numel();
    if constexpr (detail::is_float_element_v<T>) {
      const auto emit = [&](auto load_as_float) {
        for (size_t i = 0; i < count; ++i) sink(i, T(load_as_float(i)));
      };
      switch (entry.dtype) {
        case StDType::F64:
          emit([&](size_t i) { return detail::load_element<double>(data, i); });
          return;
        case StDType::F32:
          emit([&](size_t i) { return detail::load_element<float>(data, i); });
          return;
        case StDType::F16:
          emit(
              [&](size_t i) { return f16_bits_to_float(detail::load_element<uint16_t>(data, i)); });
          return;
        case StDType::BF16:
          if constexpr (std::is_same_v<T, mentor::bf16>) {  // bit copy, no rounding
            for (size_t i = 0; i < count; ++i) {
              sink(i, mentor::bf16::from_bits(detail::load_element<uint16_t>(data, i)));
            }
          } else {
            emit([&](size_t i) {
              return bf16_bits_to_float(detail::load_element<uint16_t>(data, i));
            });
          }
          return;
        default:
          fail_conversion(entry, detail::element_type_name<T>());
      }
    } else {
      const auto emit = [&](auto load_as_int64) {
        for (size_t i = 0; i < count; ++i) {
          const int64_t value = load_as_int64(i);
          if constexpr (std::is_same_v<T, bool>) {
            if (value != 0 && value != 1) out_of_range(entry, i, value, "bool");
            sink(i, value != 0);
          } else {
            if (!std::in_range<T>(value)) {
              out_of_range(entry, i, value, detail::element_type_name<T>());
            }
            sink(i, static_cast<T>(value));
          }
        }
      };
      switch (entry.dtype) {
        case StDType::I64:
          emit([&](size_t i) { return detail::load_element<int64_t>(data, i); });
          return;
        case StDType::I32:
          emit([&](size_t i) { return int64_t{detail::load_element<int32_t>(data, i)}; });
          return;
        case StDType::I16:
          emit([&](size_t i) { return int64_t{detail::load_element<int16_t>(data, i)}; });
          return;
        case StDType::I8:
          emit([&](size_t i) { return int64_t{detail::load_element<int8_t>(data, i)}; });
          return;
        case StDType::U8:
          emit([&](size_t i) { return int64_t{detail::load_element<uint8_t>(data, i)}; });
          return;
        case StDType::BOOL:  // any nonzero byte is true (a bool byte other than 0/1 is not UB here)
          emit([&](size_t i) { return int64_t{detail::load_element<uint8_t>(data, i) != 0}; });
          return;
        default:
          fail_conversion(entry, detail::element_type_name<T>());
      }
    }
  }

  [[noreturn]] void out_of_range(const TensorInfo& entry, size_t index, int64_t value,
                                 std::string_view requested) const {
    fail("tensor '", entry.name, "' (", dtype_name(entry.dtype), "): value ", value, " at index ",
         index, " does not fit in ", requested);
  }

  detail::FileBytes bytes_;
  std::string path_;
  uint64_t data_start_ = 0;  // 8 + header length
  std::map<std::string, TensorInfo, std::less<>> tensors_;
  std::map<std::string, std::string> metadata_;
};

// ---- writing ---------------------------------------------------------------------------------

class SafeTensorsWriter {
 public:
  // Copies `data`; its size must be numel(shape) * element_size(dtype).
  void add(std::string name, StDType dtype, std::vector<int64_t> shape,
           std::span<const std::byte> data) {
    check_name(name);
    const std::optional<uint64_t> numel = detail::checked_numel(shape);
    uint64_t expected_bytes = 0;
    if (!numel || __builtin_mul_overflow(*numel, element_size(dtype), &expected_bytes)) {
      throw Error(mentor::detail::concat("safetensors writer: tensor '", name, "': shape ",
                                         detail::format_shape(shape),
                                         " has a negative dimension or overflows"));
    }
    if (data.size() != expected_bytes) {
      throw Error(mentor::detail::concat("safetensors writer: tensor '", name, "' is ",
                                         dtype_name(dtype), " ", detail::format_shape(shape), " = ",
                                         expected_bytes, " bytes but ", data.size(),
                                         " bytes were given"));
    }
    names_.insert(name);
    tensors_.push_back(
        Pending{std::move(name), dtype, std::move(shape), {data.begin(), data.end()}});
  }

  // dtype from T (float -> F32, mentor::bf16 -> BF16, bool -> BOOL, ...).
  template <class T>
  void add(std::string name, std::vector<int64_t> shape, std::span<T> values) {
    using Value = std::remove_const_t<T>;
    constexpr StDType dtype = detail::dtype_of<Value>();
    std::vector<std::byte> encoded(values.size() * element_size(dtype));
    for (size_t i = 0; i < values.size(); ++i) {
      if constexpr (std::is_same_v<Value, bool>) {
        encoded[i] = std::byte{values[i] ? uint8_t{1} : uint8_t{0}};
      } else if constexpr (std::is_same_v<Value, mentor::bf16>) {
        std::memcpy(encoded.data() + 2 * i, &values[i].bits, 2);
      } else {
        std::memcpy(encoded.data() + sizeof(Value) * i, &values[i], sizeof(Value));
      }
    }
    add(std::move(name), dtype, std::move(shape), encoded);
  }

  template <class T>
  void add(std::string name, std::vector<int64_t> shape, const std::vector<T>& values) {
    if constexpr (std::is_same_v<T, bool>) {  // vector<bool> has no contiguous storage
      const std::unique_ptr<bool[]> copy(new bool[values.size()]);
      std::copy(values.begin(), values.end(), copy.get());
      add(std::move(name), std::move(shape), std::span<const bool>(copy.get(), values.size()));
    } else {
      add(std::move(name), std::move(shape), std::span<const T>(values));
    }
  }

  void set_metadata(std::string key, std::string value) {
    metadata_[std::move(key)] = std::move(value);
  }

  size_t size() const { return tensors_.size(); }

  // Header JSON padded with spaces to 8-byte alignment, then the data in insertion order.
  void write(const std::string& path) const {
    nlohmann::ordered_json header = nlohmann::ordered_json::object();
    if (!metadata_.empty()) header["__metadata__"] = metadata_;
    uint64_t offset = 0;
    for (const Pending& tensor : tensors_) {
      header[tensor.name] = {{"dtype", dtype_name(tensor.dtype)},
                             {"shape", tensor.shape},
                             {"data_offsets", {offset, offset + tensor.data.size()}}};
      offset += tensor.data.size();
    }
    std::string text;
    try {
      text = header.dump();
    } catch (const nlohmann::json::exception& error) {
      throw Error(mentor::detail::concat(
          "safetensors writer ", path,
          ": header cannot be encoded (names must be UTF-8): ", error.what()));
    }
    text.append((8 - text.size() % 8) % 8, ' ');
    if (text.size() > SafeTensorsFile::kMaxHeaderBytes) {
      throw Error(mentor::detail::concat("safetensors writer ", path, ": header of ", text.size(),
                                         " bytes exceeds the ", SafeTensorsFile::kMaxHeaderBytes,
                                         "-byte limit readers accept"));
    }
    uint8_t length_prefix[8];
    for (int i = 0; i < 8; ++i) length_prefix[i] = static_cast<uint8_t>(text.size() >> (8 * i));

    AtomicFile file(path);
    file.write(length_prefix, sizeof(length_prefix));
    file.write(text);
    for (const Pending& tensor : tensors_) file.write(tensor.data);
    file.commit();
  }

 private:
  struct Pending {
    std::string name;
    StDType dtype;
    std::vector<int64_t> shape;
    std::vector<std::byte> data;
  };

  void check_name(const std::string& name) const {
    if (name.empty()) throw Error("safetensors writer: empty tensor name");
    if (name == "__metadata__") {
      throw Error("safetensors writer: '__metadata__' is reserved and cannot name a tensor");
    }
    if (names_.count(name)) {
      throw Error(mentor::detail::concat("safetensors writer: duplicate tensor name '", name, "'"));
    }
  }

  std::vector<Pending> tensors_;
  std::set<std::string> names_;
  std::map<std::string, std::string> metadata_;
};

}  // namespace mentor::io
