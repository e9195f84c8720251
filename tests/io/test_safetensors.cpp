// safetensors reader/writer, atomic file writes and state-dict checks.
//
// References are independent of the code under test: half/bfloat16 bit patterns computed by hand,
// the byte layout of a written file decoded here by hand, the upstream fixture's shapes from its
// README and identities between its stored values (loss = sum of its parts, rec_loss = MSE).
#include <unistd.h>

#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <limits>
#include <nlohmann/json.hpp>
#include <random>
#include <string>
#include <vector>

#include "catch.hpp"
#include "fixture_files.hpp"
#include "mentor/core/bf16.hpp"
#include "mentor/io/atomic_file.hpp"
#include "mentor/io/safetensors.hpp"
#include "mentor/io/state_dict.hpp"

namespace test_safetensors {

namespace fs = std::filesystem;
using mentor::io::SafeTensorsFile;
using mentor::io::SafeTensorsWriter;
using mentor::io::StDType;

namespace {

// Catch2 v2 and v3 name the substring matcher differently.
#ifdef MENTOR_CATCH3
auto has_text(const std::string& text) { return Catch::Matchers::ContainsSubstring(text); }
#else
auto has_text(const std::string& text) { return Catch::Contains(text); }
#endif

// A fresh directory per test, removed afterwards.
struct ScratchDir {
  fs::path path;
  ScratchDir() {
    static int counter = 0;
    path = fs::temp_directory_path() / ("mentor_test_safetensors_" + std::to_string(::getpid()) +
                                        "_" + std::to_string(counter++));
    fs::remove_all(path);
    fs::create_directories(path);
  }
  ~ScratchDir() {
    std::error_code ignored;
    fs::remove_all(path, ignored);
  }
  std::string file(const std::string& name) const { return (path / name).string(); }
  std::vector<std::string> entries() const {
    std::vector<std::string> names;
    for (const auto& entry : fs::directory_iterator(path)) {
      names.push_back(entry.path().filename().string());
    }
    std::sort(names.begin(), names.end());
    return names;
  }
};

std::vector<uint8_t> read_file_bytes(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return {std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
}

void write_file_bytes(const std::string& path, const std::vector<uint8_t>& bytes) {
  std::ofstream out(path, std::ios::binary);
  out.write(reinterpret_cast<const char*>(bytes.data()),
            static_cast<std::streamsize>(bytes.size()));
}

// A file made by hand: length prefix (by default the header's size), header text, data bytes.
std::vector<uint8_t> hand_made(const std::string& header, size_t data_bytes,
                               std::optional<uint64_t> length_prefix = std::nullopt) {
  const uint64_t length = length_prefix.value_or(header.size());
  std::vector<uint8_t> bytes;
  for (int i = 0; i < 8; ++i) bytes.push_back(static_cast<uint8_t>(length >> (8 * i)));
  bytes.insert(bytes.end(), header.begin(), header.end());
  for (size_t i = 0; i < data_bytes; ++i) bytes.push_back(static_cast<uint8_t>(i * 7 + 1));
  return bytes;
}

SafeTensorsFile from_header(const std::string& header, size_t data_bytes) {
  return SafeTensorsFile::from_bytes(hand_made(header, data_bytes), "hand.safetensors");
}

template <class T>
std::span<const std::byte> as_bytes_of(const std::vector<T>& values) {
  return std::as_bytes(std::span<const T>(values));
}

uint32_t float_bits(float value) {
  uint32_t word;
  std::memcpy(&word, &value, 4);
  return word;
}

// Independent reference for a half: (-1)^s * 2^(e-15) * (1 + m/1024), or subnormal m * 2^-24.
double half_reference(uint16_t bits) {
  const int sign = (bits >> 15) ? -1 : 1;
  const int exponent = (bits >> 10) & 0x1f;
  const int mantissa = bits & 0x3ff;
  if (exponent == 0) return sign * std::ldexp(static_cast<double>(mantissa), -24);
  return sign * std::ldexp(1024.0 + mantissa, exponent - 25);
}

// A valid two-tensor file on disk as bytes: "a" F32 [2,3], "b" I32 [4].
std::vector<uint8_t> valid_file_bytes(const ScratchDir& dir) {
  SafeTensorsWriter writer;
  std::vector<float> a{1, 2, 3, 4, 5, 6};
  std::vector<int32_t> b{7, 8, 9, 10};
  writer.add("a", {2, 3}, a);
  writer.add("b", {4}, b);
  const std::string path = dir.file("valid.safetensors");
  writer.write(path);
  return read_file_bytes(path);
}

}  // namespace

// ---- half and bfloat16 bit conversions -------------------------------------------------------

TEST_CASE("f16 and bf16 bits decode to hand-computed values", "[safetensors][half]") {
  using mentor::io::bf16_bits_to_float;
  using mentor::io::f16_bits_to_float;
  CHECK(f16_bits_to_float(0x3C00) == 1.0f);
  CHECK(f16_bits_to_float(0xC000) == -2.0f);
  CHECK(f16_bits_to_float(0x3555) == 0.333251953125f);
  CHECK(f16_bits_to_float(0x7BFF) == 65504.0f);
  CHECK(f16_bits_to_float(0x0400) == std::ldexp(1.0f, -14));     // smallest normal
  CHECK(f16_bits_to_float(0x0001) == std::ldexp(1.0f, -24));     // smallest subnormal
  CHECK(f16_bits_to_float(0x03FF) == std::ldexp(1023.0f, -24));  // largest subnormal
  CHECK(f16_bits_to_float(0x7C00) == std::numeric_limits<float>::infinity());
  CHECK(f16_bits_to_float(0xFC00) == -std::numeric_limits<float>::infinity());
  CHECK(std::isnan(f16_bits_to_float(0x7E00)));
  CHECK(float_bits(f16_bits_to_float(0x8000)) == 0x80000000u);  // negative zero

  CHECK(bf16_bits_to_float(0x3F80) == 1.0f);
  CHECK(bf16_bits_to_float(0xC000) == -2.0f);
  CHECK(bf16_bits_to_float(0x4049) == 3.140625f);
  CHECK(bf16_bits_to_float(0x7F80) == std::numeric_limits<float>::infinity());

  // Every finite half against the formula.
  for (uint32_t bits = 0; bits < 0x10000; ++bits) {
    const auto half = static_cast<uint16_t>(bits);
    if (((half >> 10) & 0x1f) == 0x1f) continue;
    REQUIRE(static_cast<double>(f16_bits_to_float(half)) == half_reference(half));
  }
}

TEST_CASE("float to f16 rounds to nearest even", "[safetensors][half]") {
  using mentor::io::f16_bits_to_float;
  using mentor::io::float_to_f16_bits;
  CHECK(float_to_f16_bits(1.0f) == 0x3C00);
  CHECK(float_to_f16_bits(-2.0f) == 0xC000);
  CHECK(float_to_f16_bits(0.1f) == 0x2E66);
  CHECK(float_to_f16_bits(65504.0f) == 0x7BFF);
  CHECK(float_to_f16_bits(65519.0f) == 0x7BFF);  // below the midpoint to 65536
  CHECK(float_to_f16_bits(65520.0f) == 0x7C00);  // the midpoint: ties to even, which is infinity
  CHECK(float_to_f16_bits(1e6f) == 0x7C00);
  CHECK(float_to_f16_bits(1.0f + std::ldexp(1.0f, -11)) == 0x3C00);      // tie -> even (down)
  CHECK(float_to_f16_bits(1.0f + 3 * std::ldexp(1.0f, -11)) == 0x3C02);  // tie -> even (up)
  CHECK(float_to_f16_bits(std::ldexp(1.0f, -14)) == 0x0400);
  CHECK(float_to_f16_bits(std::ldexp(1.0f, -24)) == 0x0001);
  CHECK(float_to_f16_bits(std::ldexp(1.0f, -25)) == 0x0000);  // tie -> even (zero)
  CHECK(float_to_f16_bits(std::ldexp(1.5f, -25)) == 0x0001);  // above the tie
  CHECK(float_to_f16_bits(std::ldexp(3.0f, -25)) == 0x0002);  // tie between 1 and 2
  CHECK(float_to_f16_bits(std::ldexp(1023.0f, -24)) == 0x03FF);
  CHECK(float_to_f16_bits(std::ldexp(1.0f, -30)) == 0x0000);
  CHECK(float_to_f16_bits(-0.0f) == 0x8000);
  CHECK(float_to_f16_bits(std::numeric_limits<float>::infinity()) == 0x7C00);
  CHECK(float_to_f16_bits(-std::numeric_limits<float>::infinity()) == 0xFC00);
  const uint16_t nan = float_to_f16_bits(std::numeric_limits<float>::quiet_NaN());
  CHECK((nan & 0x7C00) == 0x7C00);
  CHECK((nan & 0x03FF) != 0);

  // Every finite half survives a round trip through float.
  for (uint32_t bits = 0; bits < 0x10000; ++bits) {
    const auto half = static_cast<uint16_t>(bits);
    if (((half >> 10) & 0x1f) == 0x1f && (half & 0x3ff) != 0) continue;  // NaN payloads
    REQUIRE(float_to_f16_bits(f16_bits_to_float(half)) == half);
  }
}

// ---- round trips -----------------------------------------------------------------------------

TEST_CASE("every dtype round-trips through a file", "[safetensors]") {
  ScratchDir dir;
  const std::string path = dir.file("all.safetensors");

  const std::vector<double> f64{1.5, -2.25, 1e300};
  const std::vector<float> f32{1.0f, -0.5f, 3.25f, 1e-30f, -7.0f, 0.0f};
  const std::vector<uint16_t> f16_bits{0x3C00, 0xC000, 0x3555, 0x0001};
  const std::vector<mentor::bf16> bf16_values{mentor::bf16(1.0f), mentor::bf16(-2.0f),
                                              mentor::bf16(3.14159265f)};
  const std::vector<int64_t> i64{-(int64_t{1} << 40), 0, 42};
  const std::vector<int32_t> i32{-5, 6, 2147483647};
  const std::vector<int16_t> i16{-32768, 12};
  const std::vector<int8_t> i8{-128, 127};
  const std::vector<uint8_t> u8{0, 255, 3};
  const std::vector<bool> flags{true, false, true, true};

  SafeTensorsWriter writer;
  writer.add("f64", {3}, f64);
  writer.add("f32", {2, 3}, f32);
  writer.add("f16", StDType::F16, {2, 2}, as_bytes_of(f16_bits));
  writer.add("bf16", {3}, bf16_values);
  writer.add("i64", {3}, i64);
  writer.add("i32", {1, 3}, i32);
  writer.add("i16", {2}, i16);
  writer.add("i8", {2}, i8);
  writer.add("u8", {3}, u8);
  writer.add("bool", {2, 2}, flags);
  writer.add("empty", {0, 3}, std::vector<float>{});
  writer.add("scalar", {}, std::vector<float>{2.5f});
  writer.set_metadata("format", "pt");
  writer.set_metadata("step", "1200");
  writer.write(path);

  const SafeTensorsFile file = SafeTensorsFile::open(path);
  CHECK(file.path() == path);
  CHECK(file.keys() == std::vector<std::string>{"bf16", "bool", "empty", "f16", "f32", "f64", "i16",
                                                "i32", "i64", "i8", "scalar", "u8"});
  CHECK(file.metadata() == std::map<std::string, std::string>{{"format", "pt"}, {"step", "1200"}});

  CHECK(file.info("f32").dtype == StDType::F32);
  CHECK(file.info("f32").shape == std::vector<int64_t>{2, 3});
  CHECK(file.read_as<float>("f32") == f32);
  CHECK(file.read_as<double>("f64") == f64);
  CHECK(file.read_as<int64_t>("i64") == i64);
  CHECK(file.read_as<int32_t>("i32") == i32);
  CHECK(file.read_as<int16_t>("i16") == i16);
  CHECK(file.read_as<int8_t>("i8") == i8);
  CHECK(file.read_as<uint8_t>("u8") == u8);
  CHECK(file.read_as<bool>("bool") == flags);
  CHECK(file.info("bool").dtype == StDType::BOOL);
  CHECK(file.read_as<uint8_t>("bool") == std::vector<uint8_t>{1, 0, 1, 1});

  // bf16: stored bits are the hand-computed patterns (pi rounds to 0x4049 = 3.140625).
  CHECK(file.info("bf16").dtype == StDType::BF16);
  const auto bf16_raw = file.bytes("bf16");
  REQUIRE(bf16_raw.size() == 6);
  const std::vector<uint8_t> expected_bf16_bytes{0x80, 0x3F, 0x00, 0xC0, 0x49, 0x40};
  for (size_t i = 0; i < 6; ++i) CHECK(static_cast<uint8_t>(bf16_raw[i]) == expected_bf16_bytes[i]);
  CHECK(file.read_as<float>("bf16") == std::vector<float>{1.0f, -2.0f, 3.140625f});
  const auto bf16_back = file.read_as<mentor::bf16>("bf16");
  REQUIRE(bf16_back.size() == 3);
  CHECK(bf16_back[2].bits == 0x4049);

  // f16 decodes to the values its bits denote.
  CHECK(file.info("f16").dtype == StDType::F16);
  CHECK(file.read_as<float>("f16") ==
        std::vector<float>{1.0f, -2.0f, 0.333251953125f, std::ldexp(1.0f, -24)});
  CHECK(file.read_as<double>("f16")[2] == 0.333251953125);
  CHECK(file.read_as<mentor::bf16>("f16")[0].bits == 0x3F80);

  // Float widening/narrowing and integer widening/narrowing within range.
  CHECK(file.read_as<double>("f32")[2] == 3.25);
  CHECK(file.read_as<float>("f64")[1] == -2.25f);
  CHECK(file.read_as<mentor::bf16>("f32")[0].bits == 0x3F80);
  CHECK(file.read_as<int64_t>("i32") == std::vector<int64_t>{-5, 6, 2147483647});
  CHECK(file.read_as<int32_t>("u8") == std::vector<int32_t>{0, 255, 3});

  CHECK(file.info("empty").shape == std::vector<int64_t>{0, 3});
  CHECK(file.bytes("empty").empty());
  CHECK(file.read_as<float>("empty").empty());
  CHECK(file.info("scalar").shape.empty());
  CHECK(file.read_as<float>("scalar") == std::vector<float>{2.5f});

  std::vector<float> buffer(6);
  file.read_into<float>("f32", buffer);
  CHECK(buffer == f32);
  std::vector<float> wrong_size(5);
  REQUIRE_THROWS_WITH(file.read_into<float>("f32", wrong_size),
                      has_text("tensor 'f32' has 6 elements") && has_text("buffer holds 5"));
}

TEST_CASE("a written file has the safetensors byte layout", "[safetensors]") {
  ScratchDir dir;
  const std::string path = dir.file("layout.safetensors");
  SafeTensorsWriter writer;
  writer.add("weight", {2}, std::vector<float>{1.0f, -2.0f});
  writer.add("bias", {1}, std::vector<int64_t>{7});
  writer.set_metadata("note", "hi");
  writer.write(path);

  const std::vector<uint8_t> bytes = read_file_bytes(path);
  REQUIRE(bytes.size() >= 8);
  uint64_t header_size = 0;
  for (int i = 7; i >= 0; --i) header_size = header_size * 256 + bytes[i];
  CHECK(header_size % 8 == 0);  // so the data section starts 8-byte aligned
  REQUIRE(bytes.size() == 8 + header_size + 8 + 8);

  const std::string header_text(bytes.begin() + 8, bytes.begin() + 8 + header_size);
  CHECK(header_text.front() == '{');
  const size_t closing = header_text.find_last_of('}');
  CHECK(header_text.find_first_not_of(' ', closing + 1) == std::string::npos);  // space padding
  const auto header = nlohmann::json::parse(header_text);
  CHECK(header["__metadata__"] == nlohmann::json({{"note", "hi"}}));
  CHECK(header["weight"]["dtype"] == "F32");
  CHECK(header["weight"]["shape"] == nlohmann::json({2}));
  CHECK(header["weight"]["data_offsets"] == nlohmann::json({0, 8}));  // insertion order
  CHECK(header["bias"]["dtype"] == "I64");
  CHECK(header["bias"]["data_offsets"] == nlohmann::json({8, 16}));

  const uint8_t* data = bytes.data() + 8 + header_size;
  const std::vector<uint8_t> expected_data{0x00, 0x00, 0x80, 0x3F, 0x00, 0x00, 0x00, 0xC0,
                                           0x07, 0,    0,    0,    0,    0,    0,    0};
  CHECK(std::vector<uint8_t>(data, data + 16) == expected_data);
}

TEST_CASE("an opened file stays valid when moved", "[safetensors]") {
  ScratchDir dir;
  const std::vector<uint8_t> bytes = valid_file_bytes(dir);
  SafeTensorsFile first = SafeTensorsFile::open(dir.file("valid.safetensors"));
  SafeTensorsFile moved = std::move(first);
  CHECK(moved.read_as<int32_t>("b") == std::vector<int32_t>{7, 8, 9, 10});
  SafeTensorsFile from_memory = SafeTensorsFile::from_bytes(bytes, "memory");
  from_memory = std::move(moved);
  CHECK(from_memory.read_as<float>("a")[5] == 6.0f);
}

// ---- the upstream fixture --------------------------------------------------------------------

// Required (tests/fixture_files.hpp): a missing file fails; MENTOR_FIXTURES=skip skips.
TEST_CASE("reads the upstream LlamaGen VQ fixture", "[safetensors][fixture]") {
  MENTOR_FIXTURE_TEST_OR_SKIP();
  const std::string path =
      mentor::test::fixture_file("upstream", "llamagen_vq_s0.safetensors").string();
  const SafeTensorsFile file = SafeTensorsFile::open(path);
  // Shapes from the fixture README.
  CHECK(file.info("in.image").shape == std::vector<int64_t>{2, 3, 16, 16});
  CHECK(file.info("out.quant").shape == std::vector<int64_t>{2, 4, 8, 8});
  CHECK(file.info("out.indices").shape == std::vector<int64_t>{128});
  CHECK(file.info("out.dec").shape == std::vector<int64_t>{2, 3, 16, 16});
  CHECK(file.info("w.quantize.embedding.weight").shape == std::vector<int64_t>{64, 4});

  // Values: indices address a 64-entry codebook, the image is in [-1, 1], and the stored losses
  // obey the README's identities.
  for (int32_t index : file.read_as<int32_t>("out.indices")) {
    REQUIRE(index >= 0);
    REQUIRE(index < 64);
  }
  const auto image = file.read_as<float>("in.image");
  for (float value : image) REQUIRE(std::abs(value) <= 1.0f);
  const float loss = file.read_as<float>("out.loss").at(0);
  const float rec_loss = file.read_as<float>("out.rec_loss").at(0);
  const float parts = rec_loss + file.read_as<float>("out.vq_loss").at(0) +
                      file.read_as<float>("out.commit_loss").at(0);
  CHECK(std::abs(loss - parts) <= 1e-6f * std::abs(loss));
  const auto decoded = file.read_as<double>("out.dec");
  double squared_error = 0;
  for (size_t i = 0; i < image.size(); ++i) {
    squared_error += (decoded[i] - image[i]) * (decoded[i] - image[i]);
  }
  CHECK(std::abs(squared_error / image.size() - rec_loss) <= 1e-5 * rec_loss);

  // State-dict check on the `w.` keys (208 parameters and buffers upstream).
  const std::vector<std::pair<std::string, std::vector<int64_t>>> expected{
      {"quantize.embedding.weight", {64, 4}},
      {"quant_conv.weight", {4, 32, 1, 1}},
      {"encoder.conv_in.weight", {32, 3, 3, 3}}};
  const auto report = mentor::io::check_state_dict(file, expected, /*strict=*/false, "w.");
  CHECK(report.missing.empty());
  CHECK(report.mismatched.empty());
  CHECK(report.unexpected.size() == 208 - 3);
  REQUIRE_THROWS_WITH(
      mentor::io::check_state_dict(file, {{"quantize.embedding.weight", {64, 8}}}, false, "w."),
      has_text("quantize.embedding.weight: expected [64,8], file has [64,4]"));
}

// ---- error paths -----------------------------------------------------------------------------

TEST_CASE("a truncated file names the truncation", "[safetensors][errors]") {
  ScratchDir dir;
  const std::vector<uint8_t> bytes = valid_file_bytes(dir);
  uint64_t header_size = 0;
  for (int i = 7; i >= 0; --i) header_size = header_size * 256 + bytes[i];
  const size_t data_size = bytes.size() - 8 - header_size;
  REQUIRE(data_size == 24 + 16);

  const auto cut = [&](size_t length) {
    return SafeTensorsFile::from_bytes({bytes.begin(), bytes.begin() + length}, "cut.safetensors");
  };
  REQUIRE_THROWS_WITH(cut(0), has_text("safetensors cut.safetensors: truncated") &&
                                  has_text("fewer than the 8-byte header length"));
  REQUIRE_THROWS_WITH(cut(7), has_text("truncated: the file has 7 bytes"));
  REQUIRE_THROWS_WITH(cut(8), has_text("truncated: header length"));
  REQUIRE_THROWS_WITH(cut(8 + header_size / 2),
                      has_text("truncated: header length " + std::to_string(header_size)));
  // Cut inside the data: tensor 'b' (bytes 24..40) no longer fits.
  REQUIRE_THROWS_WITH(cut(bytes.size() - 1),
                      has_text("truncated: the data section has 39 bytes but tensor 'b' needs up "
                               "to 40"));
  REQUIRE_THROWS_WITH(cut(8 + header_size + 10),
                      has_text("truncated: the data section has 10 bytes but tensor"));
  // Every shorter length fails cleanly with "truncated".
  for (size_t length = 0; length < bytes.size(); ++length) {
    REQUIRE_THROWS_WITH(cut(length), has_text("truncated"));
  }
  CHECK_NOTHROW(cut(bytes.size()));

  // The same through open() (the mmap path), including an empty file.
  const std::string short_path = dir.file("short.safetensors");
  write_file_bytes(short_path, {});
  REQUIRE_THROWS_WITH(SafeTensorsFile::open(short_path),
                      has_text(short_path) && has_text("truncated: the file has 0 bytes"));
  write_file_bytes(short_path, {bytes.begin(), bytes.end() - 5});
  REQUIRE_THROWS_WITH(SafeTensorsFile::open(short_path),
                      has_text(short_path) && has_text("truncated") && has_text("tensor 'b'"));
}

TEST_CASE("header length errors", "[safetensors][errors]") {
  REQUIRE_THROWS_WITH(
      SafeTensorsFile::from_bytes(hand_made("{}", 0, 1000), "long.safetensors"),
      has_text("safetensors long.safetensors: truncated: header length 1000 but only 2 bytes"));
  REQUIRE_THROWS_WITH(SafeTensorsFile::from_bytes(hand_made("{}", 0, uint64_t{1} << 63), "huge"),
                      has_text("header length 9223372036854775808 is absurd"));
  REQUIRE_THROWS_WITH(
      SafeTensorsFile::from_bytes(hand_made("{}", 0, std::numeric_limits<uint64_t>::max()), "max"),
      has_text("is absurd"));
  CHECK_NOTHROW(SafeTensorsFile::from_bytes(hand_made("{}", 0), "empty"));
  CHECK(SafeTensorsFile::from_bytes(hand_made("{}  ", 0), "padded").keys().empty());
}

TEST_CASE("bad JSON and non-object headers", "[safetensors][errors]") {
  REQUIRE_THROWS_WITH(from_header("{\"a\": ", 0),
                      has_text("safetensors hand.safetensors: header is not valid JSON"));
  REQUIRE_THROWS_WITH(from_header("", 0), has_text("header is not valid JSON"));
  REQUIRE_THROWS_WITH(from_header(std::string("{\0}", 3), 0), has_text("header is not valid JSON"));
  REQUIRE_THROWS_WITH(from_header("        ", 0), has_text("header is not valid JSON"));
  REQUIRE_THROWS_WITH(from_header("{\"a\":\"\xff\"}", 0), has_text("header is not valid JSON"));
  REQUIRE_THROWS_WITH(from_header("[1, 2]", 0),
                      has_text("header is not a JSON object (found array)"));
  REQUIRE_THROWS_WITH(from_header("42", 0), has_text("header is not a JSON object"));
  REQUIRE_THROWS_WITH(from_header(R"({"a": 1})", 0),
                      has_text("tensor 'a': entry is not an object (found number)"));
  REQUIRE_THROWS_WITH(from_header(R"({"a": {"dtype":"F32","shape":[1],"data_offsets":[0,4]},
                      "a": {"dtype":"F32","shape":[1],"data_offsets":[4,8]}})",
                                  8),
                      has_text("duplicate key 'a' in header"));
}

TEST_CASE("entry fields are validated", "[safetensors][errors]") {
  REQUIRE_THROWS_WITH(from_header(R"({"w": {"shape":[1],"data_offsets":[0,4]}})", 4),
                      has_text("tensor 'w': entry has no \"dtype\""));
  REQUIRE_THROWS_WITH(from_header(R"({"w": {"dtype":"F32","data_offsets":[0,4]}})", 4),
                      has_text("tensor 'w': entry has no \"shape\""));
  REQUIRE_THROWS_WITH(from_header(R"({"w": {"dtype":"F32","shape":[1]}})", 4),
                      has_text("tensor 'w': entry has no \"data_offsets\""));
  // Wrong dtype in the header.
  REQUIRE_THROWS_WITH(
      from_header(R"({"w": {"dtype":"F8_E4M3","shape":[4],"data_offsets":[0,4]}})", 4),
      has_text("tensor 'w': unknown dtype 'F8_E4M3'"));
  REQUIRE_THROWS_WITH(from_header(R"({"w": {"dtype":7,"shape":[1],"data_offsets":[0,4]}})", 4),
                      has_text("tensor 'w': dtype is not a string"));
  // Shapes.
  REQUIRE_THROWS_WITH(from_header(R"({"w": {"dtype":"F32","shape":[-1],"data_offsets":[0,4]}})", 4),
                      has_text("tensor 'w': negative shape dimension -1"));
  REQUIRE_THROWS_WITH(
      from_header(R"({"w": {"dtype":"F32","shape":[2.5],"data_offsets":[0,4]}})", 4),
      has_text("tensor 'w': shape dimension is not an integer (found 2.5)"));
  REQUIRE_THROWS_WITH(
      from_header(R"({"w": {"dtype":"F32","shape":["2"],"data_offsets":[0,4]}})", 4),
      has_text("shape dimension is not an integer"));
  REQUIRE_THROWS_WITH(from_header(R"({"w": {"dtype":"F32","shape":3,"data_offsets":[0,4]}})", 4),
                      has_text("tensor 'w': shape is not an array"));
  REQUIRE_THROWS_WITH(
      from_header(R"({"w": {"dtype":"F32","shape":[1e400],"data_offsets":[0,4]}})", 4),
      has_text("header is not valid JSON") && has_text("number overflow parsing '1e400'"));
  REQUIRE_THROWS_WITH(
      from_header(R"({"w": {"dtype":"F32","shape":[18446744073709551615],"data_offsets":[0,4]}})",
                  4),
      has_text("tensor 'w': shape dimension 18446744073709551615 is too large"));
  REQUIRE_THROWS_WITH(
      from_header(R"({"w": {"dtype":"F32","shape":[4294967296,4294967296],"data_offsets":[0,4]}})",
                  4),
      has_text("tensor 'w': shape [4294967296,4294967296] overflows"));
  REQUIRE_THROWS_WITH(
      from_header(R"({"w": {"dtype":"F64","shape":[4611686018427387904],"data_offsets":[0,4]}})",
                  4),
      has_text("overflows"));
}

TEST_CASE("bad data offsets", "[safetensors][errors]") {
  // end past the data section
  REQUIRE_THROWS_WITH(
      from_header(R"({"w": {"dtype":"F32","shape":[4],"data_offsets":[0,16]}})", 12),
      has_text("truncated: the data section has 12 bytes but tensor 'w' needs up to 16"));
  REQUIRE_THROWS_WITH(
      from_header(
          R"({"w": {"dtype":"F32","shape":[1],"data_offsets":[18446744073709551612,18446744073709551615]}})",
          4),
      has_text("dtype/shape inconsistent"));
  REQUIRE_THROWS_WITH(
      from_header(
          R"({"w": {"dtype":"F32","shape":[1],"data_offsets":[18446744073709551611,18446744073709551615]}})",
          4),
      has_text("tensor 'w' needs up to 18446744073709551615"));
  // begin > end
  REQUIRE_THROWS_WITH(from_header(R"({"w": {"dtype":"F32","shape":[1],"data_offsets":[8,4]}})", 8),
                      has_text("tensor 'w': bad data_offsets: begin 8 > end 4"));
  // not a pair of non-negative integers
  REQUIRE_THROWS_WITH(
      from_header(R"({"w": {"dtype":"F32","shape":[1],"data_offsets":[0,4,8]}})", 8),
      has_text("tensor 'w': data_offsets is not [begin, end] (found [0,4,8])"));
  REQUIRE_THROWS_WITH(from_header(R"({"w": {"dtype":"F32","shape":[1],"data_offsets":4}})", 8),
                      has_text("data_offsets is not [begin, end]"));
  REQUIRE_THROWS_WITH(from_header(R"({"w": {"dtype":"F32","shape":[1],"data_offsets":[-4,0]}})", 8),
                      has_text("tensor 'w': negative data_offsets begin -4"));
  REQUIRE_THROWS_WITH(
      from_header(R"({"w": {"dtype":"F32","shape":[1],"data_offsets":[0,4.0]}})", 8),
      has_text("tensor 'w': data_offsets end is not an integer"));
}

TEST_CASE("dtype and shape must agree with the byte range", "[safetensors][errors]") {
  REQUIRE_THROWS_WITH(
      from_header(R"({"w": {"dtype":"F32","shape":[3],"data_offsets":[0,8]}})", 8),
      has_text("tensor 'w': dtype/shape inconsistent: F32 [3] needs 12 bytes but data_offsets "
               "[0,8] span 8"));
  REQUIRE_THROWS_WITH(
      from_header(R"({"w": {"dtype":"BF16","shape":[2,2],"data_offsets":[0,16]}})", 16),
      has_text("dtype/shape inconsistent: BF16 [2,2] needs 8 bytes"));
  // Empty tensors take no bytes, anywhere in range.
  const SafeTensorsFile empty =
      from_header(R"({"e": {"dtype":"F32","shape":[0,5],"data_offsets":[4,4]},
                      "w": {"dtype":"F32","shape":[2],"data_offsets":[0,8]}})",
                  8);
  CHECK(empty.read_as<float>("e").empty());
  REQUIRE_THROWS_WITH(from_header(R"({"e": {"dtype":"F32","shape":[0],"data_offsets":[0,4]}})", 4),
                      has_text("tensor 'e': dtype/shape inconsistent: F32 [0] needs 0 bytes"));
}

TEST_CASE("overlapping tensors are rejected", "[safetensors][errors]") {
  REQUIRE_THROWS_WITH(from_header(R"({"a": {"dtype":"F32","shape":[2],"data_offsets":[0,8]},
                                       "b": {"dtype":"F32","shape":[2],"data_offsets":[4,12]}})",
                                  12),
                      has_text("overlap between 'a' [0,8) and 'b' [4,12)"));
  // Identical ranges, and a small tensor inside a big one after a gap.
  REQUIRE_THROWS_WITH(from_header(R"({"x": {"dtype":"I32","shape":[1],"data_offsets":[0,4]},
                                       "y": {"dtype":"F32","shape":[1],"data_offsets":[0,4]}})",
                                  4),
                      has_text("overlap between 'x'") && has_text("'y'"));
  REQUIRE_THROWS_WITH(from_header(R"({"big": {"dtype":"F32","shape":[8],"data_offsets":[8,40]},
                                       "mid": {"dtype":"F32","shape":[1],"data_offsets":[12,16]},
                                       "z": {"dtype":"F32","shape":[1],"data_offsets":[0,4]}})",
                                  40),
                      has_text("overlap between 'big' [8,40) and 'mid' [12,16)"));
  // Adjacent and gapped ranges are fine.
  CHECK_NOTHROW(from_header(R"({"a": {"dtype":"F32","shape":[2],"data_offsets":[0,8]},
                                "b": {"dtype":"F32","shape":[1],"data_offsets":[12,16]},
                                "c": {"dtype":"U8","shape":[4],"data_offsets":[8,12]}})",
                            16));
}

TEST_CASE("metadata must map strings to strings", "[safetensors][errors]") {
  const SafeTensorsFile file = from_header(R"({"__metadata__": {"format": "pt"}})", 0);
  CHECK(file.metadata().at("format") == "pt");
  CHECK(file.keys().empty());
  REQUIRE_THROWS_WITH(from_header(R"({"__metadata__": {"step": 3}})", 0),
                      has_text("__metadata__ value for 'step' is not a string (found number)"));
  REQUIRE_THROWS_WITH(from_header(R"({"__metadata__": "pt"})", 0),
                      has_text("__metadata__ is not an object"));
}

TEST_CASE("missing keys and unconvertible reads name the key", "[safetensors][errors]") {
  ScratchDir dir;
  SafeTensorsWriter writer;
  writer.add("weight", {2}, std::vector<float>{1.5f, 2.0f});
  writer.add("ids", {3}, std::vector<int64_t>{1, int64_t{1} << 40, -1});
  writer.add("mask", {2}, std::vector<int32_t>{0, 2});
  const std::string path = dir.file("keys.safetensors");
  writer.write(path);
  const SafeTensorsFile file = SafeTensorsFile::open(path);

  CHECK(file.contains("weight"));
  CHECK_FALSE(file.contains("weights"));
  REQUIRE_THROWS_WITH(file.info("weights"),
                      has_text("safetensors " + path + ": no tensor named 'weights'"));
  REQUIRE_THROWS_WITH(file.bytes("nope"), has_text("no tensor named 'nope'"));
  REQUIRE_THROWS_WITH(file.read_as<float>("nope"), has_text("no tensor named 'nope'"));

  // Float data into an integer buffer and back.
  REQUIRE_THROWS_WITH(file.read_as<int32_t>("weight"),
                      has_text("tensor 'weight' is stored as F32 and cannot be read as int32"));
  REQUIRE_THROWS_WITH(file.read_as<bool>("weight"),
                      has_text("tensor 'weight' is stored as F32 and cannot be read as bool"));
  REQUIRE_THROWS_WITH(file.read_as<float>("ids"),
                      has_text("tensor 'ids' is stored as I64 and cannot be read as float"));
  REQUIRE_THROWS_WITH(file.read_as<mentor::bf16>("ids"), has_text("cannot be read as bf16"));
  // Narrowing out of range.
  REQUIRE_THROWS_WITH(file.read_as<int32_t>("ids"),
                      has_text("tensor 'ids' (I64): value 1099511627776 at index 1 does not fit "
                               "in int32"));
  REQUIRE_THROWS_WITH(file.read_as<uint8_t>("ids"), has_text("does not fit in uint8"));
  REQUIRE_THROWS_WITH(file.read_as<bool>("mask"),
                      has_text("tensor 'mask' (I32): value 2 at index 1 does not fit in bool"));
  CHECK(file.read_as<int64_t>("ids")[2] == -1);
}

TEST_CASE("hostile headers never crash", "[safetensors][errors]") {
  // Deep nesting.
  const std::string deep = std::string(100000, '[') + std::string(100000, ']');
  REQUIRE_THROWS_WITH(from_header(deep, 0), has_text("not a JSON object"));
  REQUIRE_THROWS_WITH(from_header(std::string(100000, '{'), 0), has_text("not valid JSON"));
  const std::string deep_entry = R"({"w": {"dtype":"F32","shape":)" + std::string(50000, '[') +
                                 std::string(50000, ']') + R"(,"data_offsets":[0,4]}})";
  REQUIRE_THROWS_WITH(from_header(deep_entry, 4), has_text("shape dimension is not an integer"));
  const std::string deep_offsets = R"({"w": {"dtype":"F32","shape":[1],"data_offsets":[)" +
                                   std::string(50000, '[') + std::string(50000, ']') + R"(,4]}})";
  REQUIRE_THROWS_WITH(from_header(deep_offsets, 4),
                      has_text("data_offsets begin is not an integer (found an array of 1 items)"));
  // A huge shape whose byte count wraps around to a small number must not pass.
  REQUIRE_THROWS_WITH(
      from_header(R"({"w": {"dtype":"F32","shape":[4611686018427387905],"data_offsets":[0,4]}})",
                  4),
      has_text("overflows"));
  // Offsets that would wrap when added to the data start.
  REQUIRE_THROWS_WITH(
      from_header(
          R"({"w": {"dtype":"U8","shape":[0],"data_offsets":[18446744073709551615,18446744073709551615]}})",
          4),
      has_text("truncated"));

  // Random corruption of a valid file: every outcome is a clean Error or a readable file.
  ScratchDir dir;
  const std::vector<uint8_t> original = valid_file_bytes(dir);
  std::mt19937 rng(1234);
  int opened = 0, rejected = 0;
  for (int trial = 0; trial < 3000; ++trial) {
    std::vector<uint8_t> bytes = original;
    const int flips = 1 + static_cast<int>(rng() % 4);
    for (int f = 0; f < flips; ++f) {
      // Mostly hit the length prefix and header, where the structure is.
      const size_t limit = (rng() % 4 == 0) ? bytes.size() : std::min<size_t>(bytes.size(), 120);
      bytes[rng() % limit] = static_cast<uint8_t>(rng());
    }
    if (rng() % 8 == 0) bytes.resize(rng() % bytes.size());
    try {
      const SafeTensorsFile file = SafeTensorsFile::from_bytes(std::move(bytes), "fuzz");
      for (const std::string& key : file.keys()) {
        const auto raw = file.bytes(key);
        unsigned checksum = 0;
        for (std::byte value : raw) checksum += static_cast<unsigned>(value);
        (void)checksum;
        try {
          (void)file.read_as<double>(key);
        } catch (const mentor::Error&) {
        }
        try {
          (void)file.read_as<int64_t>(key);
        } catch (const mentor::Error&) {
        }
      }
      ++opened;
    } catch (const mentor::Error& error) {
      REQUIRE_THAT(error.what(), has_text("safetensors fuzz: "));
      ++rejected;
    }
  }
  CHECK(rejected > 0);
  CHECK(opened > 0);
}

TEST_CASE("open names unreadable paths", "[safetensors][errors]") {
  ScratchDir dir;
  const std::string missing = dir.file("absent.safetensors");
  REQUIRE_THROWS_WITH(SafeTensorsFile::open(missing),
                      has_text("safetensors " + missing + ": cannot open: No such file"));
  REQUIRE_THROWS_WITH(SafeTensorsFile::open(dir.path.string()), has_text("not a regular file"));
}

TEST_CASE("the writer validates what it is given", "[safetensors][errors]") {
  SafeTensorsWriter writer;
  const std::vector<float> three{1, 2, 3};
  REQUIRE_THROWS_WITH(writer.add("w", StDType::F32, {2, 2}, as_bytes_of(three)),
                      has_text("tensor 'w' is F32 [2,2] = 16 bytes but 12 bytes were given"));
  REQUIRE_THROWS_WITH(writer.add("w", {-3}, three), has_text("tensor 'w': shape [-3]"));
  writer.add("w", {3}, three);
  REQUIRE_THROWS_WITH(writer.add("w", {3}, three), has_text("duplicate tensor name 'w'"));
  REQUIRE_THROWS_WITH(writer.add("__metadata__", {3}, three),
                      has_text("'__metadata__' is reserved"));
  REQUIRE_THROWS_WITH(writer.add("", {3}, three), has_text("empty tensor name"));
  CHECK(writer.size() == 1);
}

// ---- state dicts -----------------------------------------------------------------------------

TEST_CASE("check_state_dict reports missing, unexpected and mis-shaped keys", "[safetensors]") {
  ScratchDir dir;
  SafeTensorsWriter writer;
  writer.add("w.fc.weight", {3, 2}, std::vector<float>(6, 0.5f));
  writer.add("w.fc.bias", {3}, std::vector<float>(3, 0.0f));
  writer.add("w.extra", {1}, std::vector<float>{1.0f});
  writer.add("out.logits", {2}, std::vector<float>{1.0f, 2.0f});
  const std::string path = dir.file("state.safetensors");
  writer.write(path);
  const SafeTensorsFile file = SafeTensorsFile::open(path);

  using Expected = std::vector<std::pair<std::string, std::vector<int64_t>>>;
  const Expected exact{{"fc.weight", {3, 2}}, {"fc.bias", {3}}, {"extra", {1}}};
  const auto clean = mentor::io::check_state_dict(file, exact, /*strict=*/true, "w.");
  CHECK(clean.ok());
  CHECK(clean.summary() == "state dict matches");

  // Mis-shaped: names the key and both shapes, strict or not.
  const Expected transposed{{"fc.weight", {2, 3}}, {"fc.bias", {3}}, {"extra", {1}}};
  REQUIRE_THROWS_WITH(mentor::io::check_state_dict(file, transposed, false, "w."),
                      has_text("safetensors " + path + ": state dict does not match") &&
                          has_text("fc.weight: expected [2,3], file has [3,2]"));

  // Missing and unexpected: strict throws naming them; non-strict reports them.
  const Expected with_missing{{"fc.weight", {3, 2}}, {"fc.bias", {3}}, {"norm.weight", {3}}};
  REQUIRE_THROWS_WITH(mentor::io::check_state_dict(file, with_missing, true, "w."),
                      has_text("1 missing: norm.weight") && has_text("1 unexpected: extra"));
  const auto lenient = mentor::io::check_state_dict(file, with_missing, false, "w.");
  CHECK(lenient.missing == std::vector<std::string>{"norm.weight"});
  CHECK(lenient.unexpected == std::vector<std::string>{"extra"});
  CHECK(lenient.mismatched.empty());

  // Without a prefix every file key counts.
  const auto unprefixed = mentor::io::check_state_dict(file, {{"w.fc.bias", {3}}}, false);
  CHECK(unprefixed.unexpected == std::vector<std::string>{"out.logits", "w.extra", "w.fc.weight"});
  REQUIRE_THROWS_WITH(mentor::io::check_state_dict(file, {{"w.fc.bias", {3}}}, true),
                      has_text("3 unexpected: out.logits, w.extra, w.fc.weight"));
  REQUIRE_THROWS_WITH(
      mentor::io::check_state_dict(file, {{"fc.bias", {3}}, {"fc.bias", {3}}}, false, "w."),
      has_text("names 'fc.bias' twice"));
}

// ---- atomic writes ---------------------------------------------------------------------------

TEST_CASE("atomic writes leave no temporary file and replace only on completion",
          "[safetensors][atomic]") {
  ScratchDir dir;
  const std::string target = dir.file("model.safetensors");

  SafeTensorsWriter first;
  first.add("v", {1}, std::vector<float>{1.0f});
  first.write(target);
  CHECK(dir.entries() == std::vector<std::string>{"model.safetensors"});

  SafeTensorsWriter second;
  second.add("v", {2}, std::vector<float>{2.0f, 3.0f});
  second.write(target);  // replaces the existing file
  CHECK(dir.entries() == std::vector<std::string>{"model.safetensors"});
  CHECK(SafeTensorsFile::open(target).read_as<float>("v") == std::vector<float>{2.0f, 3.0f});

  const std::vector<uint8_t> before = read_file_bytes(target);
  {
    // An interrupted write: the target keeps its old contents while the temp file is written,
    // and abandoning the write removes the temp file.
    mentor::io::AtomicFile pending(target);
    pending.write(std::string_view("partial bytes"));
    CHECK(read_file_bytes(target) == before);
    CHECK(fs::exists(pending.temp_path()));
    CHECK(pending.temp_path().starts_with(target + ".tmp." + std::to_string(::getpid())));
  }
  CHECK(read_file_bytes(target) == before);
  CHECK(dir.entries() == std::vector<std::string>{"model.safetensors"});

  {
    mentor::io::AtomicFile complete(target);
    complete.write(std::string_view("new contents"));
    CHECK(read_file_bytes(target) == before);
    complete.commit();
  }
  const std::vector<uint8_t> after = read_file_bytes(target);
  CHECK(std::string(after.begin(), after.end()) == "new contents");
  CHECK(dir.entries() == std::vector<std::string>{"model.safetensors"});

  mentor::io::write_file_atomically(dir.file("plain.txt"), std::string_view("abc"));
  CHECK(dir.entries() == std::vector<std::string>{"model.safetensors", "plain.txt"});
}

TEST_CASE("atomic write failures name the path and leave nothing behind", "[safetensors][atomic]") {
  ScratchDir dir;
  const std::string in_missing_dir = dir.file("no_such_dir/model.safetensors");
  SafeTensorsWriter writer;
  writer.add("v", {1}, std::vector<float>{1.0f});
  REQUIRE_THROWS_WITH(writer.write(in_missing_dir),
                      has_text("atomic write of '" + in_missing_dir + "'") &&
                          has_text("No such file or directory"));

  // The rename fails when the target is a non-empty directory; the directory survives.
  const std::string directory_target = dir.file("occupied");
  fs::create_directories(directory_target + "/inside");
  REQUIRE_THROWS_WITH(
      writer.write(directory_target),
      has_text("atomic write of '" + directory_target + "'") && has_text("cannot rename"));
  CHECK(fs::is_directory(directory_target + "/inside"));
  CHECK(dir.entries() == std::vector<std::string>{"occupied"});
}

}  // namespace test_safetensors
