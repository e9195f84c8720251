#pragma once
// PNG files that carry text (PNG spec 11.3.4.3, tEXt): a libpng encoder that writes key/value
// chunks before the image data, and a reader of those chunks.
//
// tEXt holds Latin-1 by the spec; callers that store UTF-8 (a prompt) escape it first, e.g. JSON
// dumped with ensure_ascii. Keys are 1..79 printable Latin-1 characters without leading, trailing
// or double spaces; text may not contain NUL. The encoder's output depends only on the pixels and
// the texts (no time chunk, fixed compression settings), so the same input gives the same bytes.
//
// The reader does not decode pixels: it walks the chunk list, checking every length against the
// file and every CRC, so a truncated or damaged file is an error that says which, not a partial
// answer. zTXt and iTXt chunks are not read.
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "mentor/core/error.hpp"
#include "mentor/data/image.hpp"

namespace mentor::data {

struct PngText {
  std::string key;
  std::string text;
  friend bool operator==(const PngText&, const PngText&) = default;
};

namespace detail {

inline constexpr std::string_view kPngSignature = "\x89PNG\r\n\x1a\n";

inline uint32_t png_be32(const uint8_t* p) {
  return uint32_t{p[0]} << 24 | uint32_t{p[1]} << 16 | uint32_t{p[2]} << 8 | uint32_t{p[3]};
}

inline void check_png_text_key(const std::string& key) {
  MENTOR_CHECK(!key.empty() && key.size() <= 79, "PNG text: key \"", key, "\" has ", key.size(),
               " bytes; the PNG spec allows 1..79");
  bool printable = true;
  for (unsigned char c : key) printable = printable && ((c >= 32 && c <= 126) || c >= 161);
  MENTOR_CHECK(printable, "PNG text: key \"", key,
               "\" holds a character outside printable Latin-1 (32..126, 161..255)");
  MENTOR_CHECK(key.front() != ' ' && key.back() != ' ' && key.find("  ") == std::string::npos,
               "PNG text: key \"", key, "\" has a leading, trailing or double space");
}

#if MENTOR_IMAGE_CODECS
// The encoder's output, malloc'd: libpng reports errors by longjmp, so nothing with a destructor
// may live in the frames between setjmp and libpng (as in image.hpp's decoders).
struct PngWriteBuffer {
  unsigned char* data = nullptr;
  size_t size = 0;
  size_t capacity = 0;
  char message[256] = {};
};

inline void png_write_bytes(png_structp png, png_bytep bytes, size_t count) {
  auto* out = static_cast<PngWriteBuffer*>(png_get_io_ptr(png));
  if (count > out->capacity - out->size) {
    size_t capacity = out->capacity == 0 ? 4096 : out->capacity;
    while (capacity - out->size < count) capacity *= 2;
    void* grown = std::realloc(out->data, capacity);
    if (grown == nullptr) png_error(png, "out of memory");
    out->data = static_cast<unsigned char*>(grown);
    out->capacity = capacity;
  }
  std::memcpy(out->data + out->size, bytes, count);
  out->size += count;
}
inline void png_flush_nothing(png_structp) {}
inline void png_write_on_error(png_structp png, png_const_charp message) {
  auto* out = static_cast<PngWriteBuffer*>(png_get_error_ptr(png));
  std::snprintf(out->message, sizeof out->message, "libpng: %s", message);
  png_longjmp(png, 1);
}
inline void png_write_on_warning(png_structp, png_const_charp) {}

inline void png_encode_body(png_structp png, png_infop info, PngWriteBuffer* out,
                            const Image* image, png_text* texts, int text_count) {
  static constexpr int kColorType[] = {PNG_COLOR_TYPE_GRAY, PNG_COLOR_TYPE_GRAY_ALPHA,
                                       PNG_COLOR_TYPE_RGB, PNG_COLOR_TYPE_RGB_ALPHA};
  png_set_write_fn(png, out, png_write_bytes, png_flush_nothing);
  png_set_IHDR(png, info, static_cast<png_uint_32>(image->width),
               static_cast<png_uint_32>(image->height), 8, kColorType[image->channels - 1],
               PNG_INTERLACE_NONE, PNG_COMPRESSION_TYPE_DEFAULT, PNG_FILTER_TYPE_DEFAULT);
  // Fixed settings, so that the bytes do not depend on libpng's defaults changing.
  png_set_compression_level(png, 6);
  png_set_filter(png, PNG_FILTER_TYPE_BASE, PNG_ALL_FILTERS);
  if (text_count > 0) png_set_text(png, info, texts, text_count);
  png_write_info(png, info);
  const size_t row_bytes = static_cast<size_t>(image->width) * static_cast<size_t>(image->channels);
  for (int y = 0; y < image->height; ++y)
    png_write_row(png, image->data.data() + row_bytes * static_cast<size_t>(y));
  png_write_end(png, nullptr);
}

inline bool png_encode(PngWriteBuffer* out, const Image* image, png_text* texts, int text_count) {
  png_structp png =
      png_create_write_struct(PNG_LIBPNG_VER_STRING, out, png_write_on_error, png_write_on_warning);
  if (png == nullptr) return false;
  png_infop info = png_create_info_struct(png);
  if (info == nullptr) {
    png_destroy_write_struct(&png, nullptr);
    return false;
  }
  if (setjmp(png_jmpbuf(png))) {
    png_destroy_write_struct(&png, &info);
    return false;
  }
  png_encode_body(png, info, out, image, texts, text_count);
  png_destroy_write_struct(&png, &info);
  return true;
}
#endif

}  // namespace detail

// An 8-bit image (1..4 channels) as PNG bytes with `texts` as tEXt chunks, in order, before the
// image data.
inline std::vector<uint8_t> encode_png_with_text(const Image& image,
                                                 const std::vector<PngText>& texts) {
  MENTOR_CHECK(image.width > 0 && image.height > 0, "encode_png_with_text: zero-size image (",
               image.width, "x", image.height, ")");
  MENTOR_CHECK(image.channels >= 1 && image.channels <= 4,
               "encode_png_with_text: channels must be 1..4, got ", image.channels);
  MENTOR_CHECK(image.data.size() == static_cast<size_t>(image.width) *
                                        static_cast<size_t>(image.height) *
                                        static_cast<size_t>(image.channels),
               "encode_png_with_text: data holds ", image.data.size(), " bytes, expected ",
               image.width, "x", image.height, "x", image.channels);
  for (const PngText& t : texts) {
    detail::check_png_text_key(t.key);
    MENTOR_CHECK(t.text.find('\0') == std::string::npos, "PNG text: the text of key \"", t.key,
                 "\" contains a NUL byte");
  }
#if MENTOR_IMAGE_CODECS
  // libpng copies key and text in png_set_text; these only need to outlive the call.
  std::vector<std::string> keys, values;
  for (const PngText& t : texts) {
    keys.push_back(t.key);
    values.push_back(t.text);
  }
  std::vector<png_text> chunks(texts.size());
  for (size_t i = 0; i < texts.size(); ++i) {
    chunks[i] = png_text{};
    chunks[i].compression = PNG_TEXT_COMPRESSION_NONE;
    chunks[i].key = keys[i].data();
    chunks[i].text = values[i].data();
    chunks[i].text_length = values[i].size();
  }
  detail::PngWriteBuffer out;
  const bool ok = detail::png_encode(&out, &image, chunks.data(), static_cast<int>(chunks.size()));
  std::vector<uint8_t> bytes;
  if (ok) bytes.assign(out.data, out.data + out.size);
  std::free(out.data);
  MENTOR_CHECK(ok, "encode_png_with_text: a ", image.width, "x", image.height, "x", image.channels,
               " image could not be encoded (",
               out.message[0] ? out.message : "libpng could not start", ")");
  return bytes;
#else
  throw Error(::mentor::detail::concat(
      "encode_png_with_text: mentor was built without libpng (install libpng-dev and re-run "
      "CMake)"));
#endif
}

inline void save_png_with_text(const Image& image, const std::vector<PngText>& texts,
                               const std::filesystem::path& path) {
  const std::vector<uint8_t> png = encode_png_with_text(image, texts);
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  MENTOR_CHECK(out.good(), "save_png_with_text: cannot open ", path.string(), " for writing");
  out.write(reinterpret_cast<const char*>(png.data()), static_cast<std::streamsize>(png.size()));
  out.close();
  MENTOR_CHECK(out.good(), "save_png_with_text: error while writing ", path.string());
}

// Every tEXt chunk of PNG bytes, in file order. `name` is used in errors.
inline std::vector<PngText> read_png_text(std::span<const uint8_t> bytes,
                                          std::string_view name = "<memory>") {
  const auto fail = [&](auto&&... why) {
    throw Error(::mentor::detail::concat("read_png_text: ", name, " ", why...));
  };
  const std::string_view signature = detail::kPngSignature;
  if (bytes.size() < signature.size() ||
      std::memcmp(bytes.data(), signature.data(), signature.size()) != 0)
    fail("is not a PNG file (it does not start with the PNG signature)");
  std::vector<PngText> out;
  size_t at = signature.size();
  for (int64_t chunk = 0;; ++chunk) {
    if (bytes.size() - at < 12)
      fail("is truncated: it ends at byte ", bytes.size(), " before its IEND chunk");
    const uint32_t length = detail::png_be32(bytes.data() + at);
    if (length > 0x7FFFFFFFu) fail("is damaged: chunk ", chunk, " claims ", length, " bytes");
    if (bytes.size() - at - 12 < length)
      fail("is truncated: chunk ", chunk, " needs ", length, " bytes, ", bytes.size() - at - 12,
           " are left");
    const std::span<const uint8_t> typed = bytes.subspan(at + 4, size_t{4} + length);
    const uint32_t crc = detail::png_be32(bytes.data() + at + 8 + length);
    const std::string type(reinterpret_cast<const char*>(typed.data()), 4);
    if (crc32_ieee(typed) != crc)
      fail("is damaged: the CRC of chunk ", chunk, " (", type, ") fails");
    if (type == "tEXt") {
      const std::span<const uint8_t> body = typed.subspan(4);
      const auto* text = reinterpret_cast<const char*>(body.data());
      const void* nul = std::memchr(text, 0, body.size());
      if (nul == nullptr)
        fail("has a tEXt chunk (chunk ", chunk, ") without the NUL after its key");
      const size_t key_length = static_cast<size_t>(static_cast<const char*>(nul) - text);
      if (key_length == 0 || key_length > 79)
        fail("has a tEXt chunk (chunk ", chunk, ") whose key has ", key_length,
             " bytes (1..79 allowed)");
      out.push_back({std::string(text, key_length),
                     std::string(text + key_length + 1, body.size() - key_length - 1)});
    }
    at += size_t{12} + length;
    if (type == "IEND") break;
  }
  return out;
}

inline std::vector<PngText> read_png_text(const std::filesystem::path& path) {
  const std::vector<uint8_t> bytes = read_file_bytes(path, "read_png_text");
  return read_png_text(bytes, path.string());
}

// The text of the first chunk named `key`, if any.
inline std::optional<std::string> find_png_text(const std::vector<PngText>& texts,
                                                std::string_view key) {
  for (const PngText& t : texts)
    if (t.key == key) return t.text;
  return std::nullopt;
}

}  // namespace mentor::data
