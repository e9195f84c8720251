#pragma once
// Images: loading PNG and JPEG (libpng, libjpeg-turbo), saving PNG (stb_image_write),
// Pillow-exact resampling, and the two preprocessing pipelines MENTOR uses:
//   clip_preprocess   HF CLIPImageProcessor: RGB, resize shortest side to `size` (bicubic),
//                     center crop size x size, x/255, (x - CLIP mean) / CLIP std, CHW float.
//   adm_center_crop   guided-diffusion's center_crop_arr, as LlamaGen/MENTOR targets: BOX-halve
//                     while the short side >= 2 * size, bicubic resize so the short side is `size`,
//                     center crop, x/255 then (x - 0.5) / 0.5, CHW float in [-1, 1].
//
// Resampling is a port of Pillow's Resample.c (9.x), so results match PIL's Image.resize byte for
// byte on 8-bit images: separable, horizontal pass first with the intermediate rounded to 8 bits;
// the filter is stretched by the scale factor when downscaling (antialiasing); 8-bit weights are
// fixed point with 22 fractional bits. The float overloads follow Pillow's mode "F" path (double
// weights, double accumulation, float storage). Differences from PIL: RGBA is resized as four
// independent channels (PIL premultiplies alpha first).
//
// Decoding treats every file as hostile: only PNG and JPEG are accepted (by signature), their
// headers are validated here (PNG IHDR; JPEG markers up to the frame header) and the pixel count is
// capped before a decoder allocates anything; the decoders are Debian's hardened libpng and
// libjpeg-turbo (stb_image's decoders wrote out of bounds on fuzzed input), with every warning
// (truncated or corrupt data) treated as an error, so no partly uninitialised image comes back.
// gzip goes through zlib with a bounded output. stb_image_write is compiled into every translation
// unit that includes this header, with internal linkage, which keeps mentor header-only.
#include <algorithm>
#include <array>
#include <cmath>
#include <csetjmp>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <vector>

// MENTOR_IMAGE_CODECS=0 (set by CMake when libpng, libjpeg-turbo or zlib is missing, e.g. on a
// bare GPU machine) keeps the rest of this header usable; decoding and gunzip then throw.
#ifndef MENTOR_IMAGE_CODECS
#define MENTOR_IMAGE_CODECS 1
#endif
#if MENTOR_IMAGE_CODECS
#include <jpeglib.h>
#include <png.h>
#include <zlib.h>
#endif

#include "mentor/core/error.hpp"

#if defined(INCLUDE_STB_IMAGE_WRITE_H)
#error "mentor/data/image.hpp compiles stb_image_write privately; include it first (or only it)"
#endif

#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wunused-function"
#pragma GCC diagnostic ignored "-Wmissing-field-initializers"
#pragma GCC diagnostic ignored "-Wsign-compare"
#pragma GCC diagnostic ignored "-Wshadow"
#pragma GCC diagnostic ignored "-Wunused-parameter"
#pragma GCC diagnostic ignored "-Wimplicit-fallthrough"
#pragma GCC diagnostic ignored "-Wdouble-promotion"
#pragma GCC diagnostic ignored "-Wconversion"
#define STB_IMAGE_WRITE_STATIC
#define STB_IMAGE_WRITE_IMPLEMENTATION
#define STBI_WRITE_NO_STDIO
#if __has_include(<stb_image_write.h>)
#include <stb_image_write.h>
#else
#include <stb/stb_image_write.h>
#endif
// A later #include of the stb header must not compile the implementation a second time.
#undef STB_IMAGE_WRITE_IMPLEMENTATION
#pragma GCC diagnostic pop

namespace mentor::data {

// 8-bit image, HWC, rows top to bottom.
struct Image {
  int width = 0;
  int height = 0;
  int channels = 0;
  std::vector<uint8_t> data;

  Image() = default;
  Image(int width_, int height_, int channels_)
      : width(width_),
        height(height_),
        channels(channels_),
        data(static_cast<size_t>(width_) * static_cast<size_t>(height_) *
             static_cast<size_t>(channels_)) {}
  uint8_t& at(int y, int x, int c) {
    return data[(static_cast<size_t>(y) * static_cast<size_t>(width) + static_cast<size_t>(x)) *
                    static_cast<size_t>(channels) +
                static_cast<size_t>(c)];
  }
  uint8_t at(int y, int x, int c) const { return const_cast<Image&>(*this).at(y, x, c); }
};

// Float image, CHW planes (the layout models consume).
struct ImageCHW {
  int channels = 0;
  int height = 0;
  int width = 0;
  std::vector<float> data;

  ImageCHW() = default;
  ImageCHW(int channels_, int height_, int width_)
      : channels(channels_),
        height(height_),
        width(width_),
        data(static_cast<size_t>(channels_) * static_cast<size_t>(height_) *
             static_cast<size_t>(width_)) {}
  float& at(int c, int y, int x) {
    return data[(static_cast<size_t>(c) * static_cast<size_t>(height) + static_cast<size_t>(y)) *
                    static_cast<size_t>(width) +
                static_cast<size_t>(x)];
  }
  float at(int c, int y, int x) const { return const_cast<ImageCHW&>(*this).at(c, y, x); }
};

// ---- Files
// ---------------------------------------------------------------------------------------

// Whole file as bytes; errors say whether the file is missing, unreadable or empty.
inline std::vector<uint8_t> read_file_bytes(const std::filesystem::path& path,
                                            std::string_view who) {
  std::error_code error;
  const auto status = std::filesystem::status(path, error);
  MENTOR_CHECK(std::filesystem::exists(status), who, ": file not found: ", path.string());
  MENTOR_CHECK(!std::filesystem::is_directory(status), who, ": ", path.string(),
               " is a directory, not a file");
  std::ifstream in(path, std::ios::binary);
  MENTOR_CHECK(in.good(), who, ": cannot open ", path.string());
  std::vector<uint8_t> bytes((std::istreambuf_iterator<char>(in)),
                             std::istreambuf_iterator<char>());
  MENTOR_CHECK(!in.bad(), who, ": error while reading ", path.string());
  MENTOR_CHECK(!bytes.empty(), who, ": ", path.string(), " is empty (0 bytes)");
  return bytes;
}

// ---- Decoding (untrusted bytes) ----------------------------------------------------------------

// Default cap on width * height for decode_image / load_image: 2^26 pixels (8192 x 8192), far
// above what MENTOR uses, far below what a hostile header can ask for.
inline constexpr int64_t kDefaultMaxImagePixels = int64_t{1} << 26;

#if MENTOR_IMAGE_CODECS
namespace detail {

enum class ImageFormat { png, jpeg };

struct ImageHeader {
  ImageFormat format = ImageFormat::png;
  int64_t width = 0;
  int64_t height = 0;
  int channels = 0;  // before a tRNS chunk adds alpha
};

inline uint32_t read_be32(const uint8_t* p) {
  return uint32_t{p[0]} << 24 | uint32_t{p[1]} << 16 | uint32_t{p[2]} << 8 | uint32_t{p[3]};
}
inline uint32_t read_be16(const uint8_t* p) { return uint32_t{p[0]} << 8 | uint32_t{p[1]}; }

inline bool starts_with(std::span<const uint8_t> bytes, std::string_view prefix) {
  return bytes.size() >= prefix.size() &&
         std::memcmp(bytes.data(), prefix.data(), prefix.size()) == 0;
}

// What a file that is neither PNG nor JPEG looks like, for the error message.
inline std::string describe_signature(std::span<const uint8_t> bytes) {
  if (starts_with(bytes, "BM")) return "a BMP signature";
  if (starts_with(bytes, "GIF8")) return "a GIF signature";
  if (bytes.size() >= 2 && bytes[0] == 'P' && bytes[1] >= '1' && bytes[1] <= '7')
    return "a PNM (P1..P7) signature";
  if (starts_with(bytes, "RIFF") && bytes.size() >= 12 &&
      std::memcmp(bytes.data() + 8, "WEBP", 4) == 0)
    return "a WebP signature";
  if (starts_with(bytes, std::string_view("II*\0", 4)) ||
      starts_with(bytes, std::string_view("MM\0*", 4)))
    return "a TIFF signature";
  std::string out = "first bytes";
  const char* hex = "0123456789abcdef";
  for (size_t i = 0; i < std::min<size_t>(bytes.size(), 8); ++i) {
    out += ' ';
    out += hex[bytes[i] >> 4];
    out += hex[bytes[i] & 15];
  }
  return out;
}

// PNG: the signature, then IHDR must be the first chunk (PNG spec 11.2.2).
inline ImageHeader png_header(std::span<const uint8_t> bytes, std::string_view name) {
  auto fail = [&](auto&&... why) {
    throw Error(::mentor::detail::concat("decode_image: ", name, " is not a decodable image (PNG ",
                                         why..., ")"));
  };
  if (bytes.size() < 8 + 8 + 13 + 4) fail("truncated before the end of its IHDR chunk");
  if (read_be32(bytes.data() + 8) != 13 || std::memcmp(bytes.data() + 12, "IHDR", 4) != 0)
    fail("does not start with a 13-byte IHDR chunk");
  const uint8_t* ihdr = bytes.data() + 16;
  ImageHeader header;
  header.format = ImageFormat::png;
  header.width = read_be32(ihdr);
  header.height = read_be32(ihdr + 4);
  const int depth = ihdr[8], color = ihdr[9];
  if (header.width == 0 || header.height == 0 || header.width > INT32_MAX ||
      header.height > INT32_MAX)
    fail("size ", header.width, "x", header.height, " is invalid");
  const bool depth_ok =
      (color == 0 && (depth == 1 || depth == 2 || depth == 4 || depth == 8 || depth == 16)) ||
      (color == 3 && (depth == 1 || depth == 2 || depth == 4 || depth == 8)) ||
      ((color == 2 || color == 4 || color == 6) && (depth == 8 || depth == 16));
  if (!depth_ok) fail("colour type ", color, " with bit depth ", depth, " is invalid");
  if (ihdr[10] != 0 || ihdr[11] != 0 || ihdr[12] > 1)
    fail("compression/filter/interlace method ", int{ihdr[10]}, "/", int{ihdr[11]}, "/",
         int{ihdr[12]}, " is invalid");
  header.channels = color == 0 ? 1 : color == 4 ? 2 : color == 6 ? 4 : 3;
  return header;
}

// JPEG: walks the marker segments from SOI to the first frame header (SOFn).
inline ImageHeader jpeg_header(std::span<const uint8_t> bytes, std::string_view name) {
  auto fail = [&](auto&&... why) {
    throw Error(::mentor::detail::concat("decode_image: ", name, " is not a decodable image (JPEG ",
                                         why..., ")"));
  };
  size_t at = 2;
  for (;;) {
    if (at >= bytes.size()) fail("ends before its frame header (SOF)");
    if (bytes[at] != 0xFF) fail("has no marker at byte ", at);
    while (at < bytes.size() && bytes[at] == 0xFF) ++at;  // fill bytes
    if (at >= bytes.size()) fail("ends before its frame header (SOF)");
    const int marker = bytes[at++];
    if (marker == 0xD8 || marker == 0x01 || (marker >= 0xD0 && marker <= 0xD7)) continue;
    if (marker == 0xD9) fail("ends (EOI) before its frame header (SOF)");
    if (marker == 0xDA) fail("has scan data before its frame header (SOF)");
    if (at + 2 > bytes.size()) fail("is truncated in marker 0xff", std::hex, marker);
    const size_t length = read_be16(bytes.data() + at);
    if (length < 2 || at + length > bytes.size())
      fail("segment 0xff", std::hex, marker, std::dec, " at byte ", at, " has length ", length,
           " past the end of the file (", bytes.size(), " bytes)");
    const bool is_frame =
        marker >= 0xC0 && marker <= 0xCF && marker != 0xC4 && marker != 0xC8 && marker != 0xCC;
    if (!is_frame) {
      at += length;
      continue;
    }
    // Baseline, extended, progressive; Huffman or arithmetic: what libjpeg-turbo 2.x decodes.
    if (marker != 0xC0 && marker != 0xC1 && marker != 0xC2 && marker != 0xC9 && marker != 0xCA)
      fail("process SOF 0xff", std::hex, marker, " (lossless or hierarchical) is not supported");
    if (length < 8) fail("frame header is ", length, " bytes, less than 8");
    const uint8_t* sof = bytes.data() + at + 2;
    ImageHeader header;
    header.format = ImageFormat::jpeg;
    header.height = read_be16(sof + 1);
    header.width = read_be16(sof + 3);
    header.channels = sof[5];
    if (sof[0] != 8) fail("sample precision is ", int{sof[0]}, " bits, only 8 is supported");
    if (header.width == 0 || header.height == 0)
      fail("size ", header.width, "x", header.height, " is invalid");
    if (header.channels != 1 && header.channels != 3)
      fail("has ", header.channels, " components; only greyscale (1) and colour (3) are supported");
    if (length < 8 + 3 * static_cast<size_t>(header.channels))
      fail("frame header is ", length, " bytes, too short for ", header.channels, " components");
    return header;
  }
}

// Decoded pixels in the file's own channel count, malloc'd (the decoders report errors by longjmp,
// so nothing with a destructor may live in the frames between setjmp and the decoder).
struct RawDecode {
  const uint8_t* data = nullptr;
  size_t size = 0;
  size_t at = 0;  // PNG read position
  unsigned char* pixels = nullptr;
  void* rows = nullptr;
  int width = 0;
  int height = 0;
  int channels = 0;
  char message[JMSG_LENGTH_MAX + 64] = {};
};

inline void png_read_bytes(png_structp png, png_bytep out, size_t count) {
  auto* raw = static_cast<RawDecode*>(png_get_io_ptr(png));
  if (count > raw->size - raw->at) png_error(png, "truncated file");
  std::memcpy(out, raw->data + raw->at, count);
  raw->at += count;
}
inline void png_on_error(png_structp png, png_const_charp message) {
  auto* raw = static_cast<RawDecode*>(png_get_error_ptr(png));
  std::snprintf(raw->message, sizeof raw->message, "libpng: %s", message);
  png_longjmp(png, 1);
}
// Warnings are about ancillary chunks or benign excess data; the pixels are still complete.
inline void png_on_warning(png_structp, png_const_charp) {}

inline void png_decode_body(png_structp png, png_infop info, RawDecode* raw) {
  png_set_read_fn(png, raw, png_read_bytes);
  png_read_info(png, info);
  const png_uint_32 width = png_get_image_width(png, info);
  const png_uint_32 height = png_get_image_height(png, info);
  if (static_cast<int64_t>(width) != raw->width || static_cast<int64_t>(height) != raw->height)
    png_error(png, "IHDR changed size");
  // As stb_image did (and PIL's convert): 16-bit keeps the high byte; palette and low bit depths
  // expand to 8-bit RGB / grey; a tRNS chunk becomes an alpha channel; no gamma is applied.
  png_set_strip_16(png);
  png_set_packing(png);
  const int color = png_get_color_type(png, info);
  if (color == PNG_COLOR_TYPE_PALETTE) png_set_palette_to_rgb(png);
  if (color == PNG_COLOR_TYPE_GRAY && png_get_bit_depth(png, info) < 8)
    png_set_expand_gray_1_2_4_to_8(png);
  if (png_get_valid(png, info, PNG_INFO_tRNS)) png_set_tRNS_to_alpha(png);
  png_set_interlace_handling(png);
  png_read_update_info(png, info);
  const int channels = png_get_channels(png, info);
  const size_t row_bytes = png_get_rowbytes(png, info);
  if (channels < 1 || channels > 4 || row_bytes != static_cast<size_t>(width) * channels)
    png_error(png, "unexpected row layout");
  raw->channels = channels;
  raw->pixels = static_cast<unsigned char*>(std::malloc(row_bytes * height));
  raw->rows = std::malloc(sizeof(png_bytep) * height);
  if (raw->pixels == nullptr || raw->rows == nullptr) png_error(png, "out of memory");
  auto** rows = static_cast<png_bytep*>(raw->rows);
  for (png_uint_32 y = 0; y < height; ++y) rows[y] = raw->pixels + row_bytes * y;
  png_read_image(png, rows);  // errors when the image data runs out: no partial image
}

inline bool png_decode(RawDecode* raw) {
  png_structp png =
      png_create_read_struct(PNG_LIBPNG_VER_STRING, raw, png_on_error, png_on_warning);
  if (png == nullptr) return false;
  png_infop info = png_create_info_struct(png);
  if (info == nullptr) {
    png_destroy_read_struct(&png, nullptr, nullptr);
    return false;
  }
  if (setjmp(png_jmpbuf(png))) {  // the whole condition, as C requires of setjmp
    png_destroy_read_struct(&png, &info, nullptr);
    return false;
  }
  png_decode_body(png, info, raw);
  png_destroy_read_struct(&png, &info, nullptr);
  return true;
}

// A progressive JPEG may hold any number of scans, each re-reading the whole coefficient buffer;
// libjpeg-turbo's own fuzzers stop at 500.
inline constexpr int kMaxJpegScans = 500;  // (the message in jpeg_on_progress says 500)

struct JpegErrors {
  jpeg_error_mgr manager;
  jpeg_progress_mgr progress;
  std::jmp_buf jump;
  RawDecode* raw;
};

[[noreturn]] inline void jpeg_on_error(j_common_ptr cinfo) {
  auto* errors = reinterpret_cast<JpegErrors*>(cinfo->err);
  char text[JMSG_LENGTH_MAX];
  (*cinfo->err->format_message)(cinfo, text);
  std::snprintf(errors->raw->message, sizeof errors->raw->message, "libjpeg: %s", text);
  std::longjmp(errors->jump, 1);
}
// Level -1 is a warning about corrupt or truncated data (libjpeg then invents pixels): an error
// here. Other levels are trace messages.
inline void jpeg_on_message(j_common_ptr cinfo, int level) {
  if (level < 0) jpeg_on_error(cinfo);
}
[[noreturn]] inline void jpeg_fail(j_decompress_ptr cinfo, const char* why) {
  auto* errors = reinterpret_cast<JpegErrors*>(cinfo->err);
  std::snprintf(errors->raw->message, sizeof errors->raw->message, "libjpeg: %s", why);
  std::longjmp(errors->jump, 1);
}
inline void jpeg_on_progress(j_common_ptr cinfo) {
  const auto decompress = reinterpret_cast<j_decompress_ptr>(cinfo);
  if (decompress->input_scan_number > kMaxJpegScans)
    jpeg_fail(decompress, "more than 500 progressive scans");
}

inline void jpeg_decode_body(jpeg_decompress_struct* cinfo, RawDecode* raw) {
  jpeg_mem_src(cinfo, raw->data, static_cast<unsigned long>(raw->size));
  jpeg_read_header(cinfo, TRUE);
  if (static_cast<int>(cinfo->image_width) != raw->width ||
      static_cast<int>(cinfo->image_height) != raw->height ||
      cinfo->num_components != raw->channels)
    jpeg_fail(cinfo, "its frame header disagrees with the marker walk");
  // libjpeg-turbo's defaults (JDCT_ISLOW, fancy upsampling), as Pillow decodes.
  cinfo->out_color_space = raw->channels == 1 ? JCS_GRAYSCALE : JCS_RGB;
  jpeg_start_decompress(cinfo);
  const int channels = cinfo->output_components;
  if ((channels != 1 && channels != 3) || static_cast<int>(cinfo->output_width) != raw->width ||
      static_cast<int>(cinfo->output_height) != raw->height)
    jpeg_fail(cinfo, "unexpected output layout");
  raw->channels = channels;
  const size_t row_bytes = static_cast<size_t>(raw->width) * static_cast<size_t>(channels);
  raw->pixels =
      static_cast<unsigned char*>(std::malloc(row_bytes * static_cast<size_t>(raw->height)));
  if (raw->pixels == nullptr) jpeg_fail(cinfo, "out of memory");
  while (cinfo->output_scanline < cinfo->output_height) {
    JSAMPROW row = raw->pixels + row_bytes * cinfo->output_scanline;
    jpeg_read_scanlines(cinfo, &row, 1);
  }
  jpeg_finish_decompress(cinfo);
}

inline bool jpeg_decode(RawDecode* raw) {
  jpeg_decompress_struct cinfo;
  JpegErrors errors;
  errors.raw = raw;
  cinfo.err = jpeg_std_error(&errors.manager);
  errors.manager.error_exit = jpeg_on_error;
  errors.manager.emit_message = jpeg_on_message;
  errors.manager.output_message = [](j_common_ptr) {};
  if (setjmp(errors.jump)) {
    jpeg_destroy_decompress(&cinfo);
    return false;
  }
  jpeg_create_decompress(&cinfo);
  errors.progress.progress_monitor = jpeg_on_progress;
  cinfo.progress = &errors.progress;
  jpeg_decode_body(&cinfo, raw);
  jpeg_destroy_decompress(&cinfo);
  return true;
}

inline uint8_t luma(uint8_t r, uint8_t g, uint8_t b) {  // stb_image's (and ITU-R 601's) weights
  return static_cast<uint8_t>((r * 77 + g * 150 + b * 29) >> 8);
}

// Channel conversion as stb_image did: grey replicates, colour to grey by luma, alpha is dropped
// or added as 255.
inline void convert_channels(const uint8_t* in, int from, uint8_t* out, int to, size_t pixels) {
  for (size_t i = 0; i < pixels; ++i, in += from, out += to) {
    const bool colour = from >= 3;
    const uint8_t grey = colour ? luma(in[0], in[1], in[2]) : in[0];
    const uint8_t alpha = from == 2 ? in[1] : from == 4 ? in[3] : 255;
    if (to <= 2) {
      out[0] = grey;
    } else {
      out[0] = in[0];
      out[1] = colour ? in[1] : in[0];
      out[2] = colour ? in[2] : in[0];
    }
    if (to == 2) out[1] = alpha;
    if (to == 4) out[3] = alpha;
  }
}

}  // namespace detail

// Decodes PNG or JPEG bytes (nothing else: bytes are treated as hostile, see the top of this
// file). channels: 0 keeps the file's channel count; 1..4 converts (grey is replicated to RGB,
// alpha dropped: like PIL's convert("RGB")). max_pixels caps width * height before any decoding
// allocation. `name` is used in errors.
inline Image decode_image(std::span<const uint8_t> bytes, int channels = 0,
                          std::string_view name = "<memory>",
                          int64_t max_pixels = kDefaultMaxImagePixels) {
  MENTOR_CHECK(channels >= 0 && channels <= 4, "decode_image: channels must be 0..4, got ",
               channels, " for ", name);
  MENTOR_CHECK(max_pixels > 0, "decode_image: max_pixels must be positive, got ", max_pixels);
  MENTOR_CHECK(!bytes.empty(), "decode_image: ", name, " is empty (0 bytes)");
  const bool png = detail::starts_with(bytes, "\x89PNG\r\n\x1a\n");
  const bool jpeg = bytes.size() >= 3 && bytes[0] == 0xFF && bytes[1] == 0xD8 && bytes[2] == 0xFF;
  MENTOR_CHECK(png || jpeg, "decode_image: ", name,
               " is not a decodable image: only PNG and JPEG are accepted, found ",
               detail::describe_signature(bytes));
  const detail::ImageHeader header =
      png ? detail::png_header(bytes, name) : detail::jpeg_header(bytes, name);
  MENTOR_CHECK(header.width * header.height <= max_pixels, "decode_image: ", name, " is ",
               header.width, "x", header.height, " = ", header.width * header.height,
               " pixels, more than the limit of ", max_pixels, " (max_pixels)");
  detail::RawDecode raw;
  raw.data = bytes.data();
  raw.size = bytes.size();
  raw.width = static_cast<int>(header.width);
  raw.height = static_cast<int>(header.height);
  raw.channels = header.channels;
  const bool ok = png ? detail::png_decode(&raw) : detail::jpeg_decode(&raw);
  std::free(raw.rows);
  // Own the pixels before anything can throw.
  std::unique_ptr<unsigned char, decltype(&std::free)> pixels(raw.pixels, &std::free);
  MENTOR_CHECK(ok, "decode_image: ", name, " is not a decodable image (", raw.message, ")");
  Image image(raw.width, raw.height, channels != 0 ? channels : raw.channels);
  detail::convert_channels(pixels.get(), raw.channels, image.data.data(), image.channels,
                           static_cast<size_t>(raw.width) * static_cast<size_t>(raw.height));
  return image;
}

#else
inline Image decode_image(std::span<const uint8_t>, int = 0, std::string_view name = "<memory>",
                          int64_t = kDefaultMaxImagePixels) {
  throw Error(
      ::mentor::detail::concat("decode_image: cannot decode ", name, ": mentor was built without ",
                               "libpng/libjpeg-turbo/zlib (install libpng-dev libjpeg62-turbo-dev ",
                               "zlib1g-dev and re-run CMake)"));
}
#endif

inline Image load_image(const std::filesystem::path& path, int channels = 0,
                        int64_t max_pixels = kDefaultMaxImagePixels) {
  const std::vector<uint8_t> bytes = read_file_bytes(path, "load_image");
  return decode_image(bytes, channels, path.string(), max_pixels);
}

inline std::vector<uint8_t> encode_png(const Image& image) {
  MENTOR_CHECK(image.width > 0 && image.height > 0, "encode_png: zero-size image (", image.width,
               "x", image.height, ")");
  MENTOR_CHECK(image.channels >= 1 && image.channels <= 4,
               "encode_png: channels must be 1..4, got ", image.channels);
  MENTOR_CHECK(
      image.data.size() == static_cast<size_t>(image.width) * image.height * image.channels,
      "encode_png: data holds ", image.data.size(), " bytes, expected ", image.width, "x",
      image.height, "x", image.channels);
  std::vector<uint8_t> png;
  auto append = [](void* context, void* data, int size) {
    auto* out = static_cast<std::vector<uint8_t>*>(context);
    const auto* begin = static_cast<const uint8_t*>(data);
    out->insert(out->end(), begin, begin + size);
  };
  const int ok = stbi_write_png_to_func(append, &png, image.width, image.height, image.channels,
                                        image.data.data(), image.width * image.channels);
  MENTOR_CHECK(ok != 0, "encode_png: stb_image_write failed for a ", image.width, "x", image.height,
               "x", image.channels, " image");
  return png;
}

inline void save_png(const Image& image, const std::filesystem::path& path) {
  const std::vector<uint8_t> png = encode_png(image);
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  MENTOR_CHECK(out.good(), "save_png: cannot open ", path.string(), " for writing");
  out.write(reinterpret_cast<const char*>(png.data()), static_cast<std::streamsize>(png.size()));
  out.close();
  MENTOR_CHECK(out.good(), "save_png: error while writing ", path.string());
}

// ---- gzip (zlib)
// ------------------------------------------------------------------------------------

inline uint32_t crc32_ieee(std::span<const uint8_t> bytes) {
  static const std::array<uint32_t, 256> table = [] {
    std::array<uint32_t, 256> t{};
    for (uint32_t n = 0; n < 256; ++n) {
      uint32_t c = n;
      for (int k = 0; k < 8; ++k) c = (c & 1) ? 0xEDB88320u ^ (c >> 1) : c >> 1;
      t[n] = c;
    }
    return t;
  }();
  uint32_t crc = 0xFFFFFFFFu;
  for (uint8_t byte : bytes) crc = table[(crc ^ byte) & 0xFFu] ^ (crc >> 8);
  return crc ^ 0xFFFFFFFFu;
}

// Default bound on gunzip's output: 1 GiB (Fashion-MNIST's largest file inflates to 47 MB).
inline constexpr size_t kDefaultMaxGunzipBytes = size_t{1} << 30;

#if MENTOR_IMAGE_CODECS
// Decompresses a single-member gzip file (RFC 1952); zlib checks its CRC-32 and length. Output
// past max_output bytes is an error (a few KB of deflate can claim gigabytes).
inline std::vector<uint8_t> gunzip(std::span<const uint8_t> bytes, std::string_view name,
                                   size_t max_output = kDefaultMaxGunzipBytes) {
  auto fail = [&](auto&&... why) {
    throw Error(::mentor::detail::concat("gunzip: ", name, ": ", why...));
  };
  if (bytes.size() < 18 || bytes[0] != 0x1f || bytes[1] != 0x8b) fail("not a gzip file");
  if (bytes[2] != 8) fail("unsupported compression method (not deflate)");
  if (bytes.size() > UINT32_MAX) fail("too large (", bytes.size(), " bytes compressed)");
  z_stream stream{};
  if (inflateInit2(&stream, 16 + MAX_WBITS) != Z_OK) fail("zlib could not start");  // gzip only
  struct End {
    z_stream* stream;
    ~End() { inflateEnd(stream); }
  } end{&stream};
  stream.next_in = const_cast<Bytef*>(bytes.data());
  stream.avail_in = static_cast<uInt>(bytes.size());
  // The trailer's length (mod 2^32) sizes the first buffer, but only as far as deflate can expand
  // (at most 1032:1), so a forged trailer cannot make a small file allocate much.
  const uint8_t* trailer = bytes.data() + bytes.size() - 4;
  const size_t hint = uint32_t{trailer[0]} | uint32_t{trailer[1]} << 8 |
                      uint32_t{trailer[2]} << 16 | uint32_t{trailer[3]} << 24;
  std::vector<uint8_t> out(std::max<size_t>(
      1, std::min({max_output, std::max<size_t>(hint, 4096), bytes.size() * 1032})));
  for (;;) {
    if (stream.total_out == out.size()) {
      if (out.size() >= max_output)
        fail("inflates to more than ", max_output, " bytes (the limit, max_output)");
      out.resize(std::min(max_output, out.size() * 2));
    }
    stream.next_out = out.data() + stream.total_out;
    stream.avail_out =
        static_cast<uInt>(std::min<size_t>(out.size() - stream.total_out, UINT32_MAX));
    const int status = inflate(&stream, Z_NO_FLUSH);
    if (status == Z_STREAM_END) break;
    if (status == Z_OK || (status == Z_BUF_ERROR && stream.avail_out == 0)) continue;
    const std::string_view message = stream.msg != nullptr ? stream.msg : "";
    if (status == Z_BUF_ERROR) fail("truncated (the deflate stream or trailer is cut off)");
    if (message == "incorrect data check") fail("CRC-32 mismatch (corrupt file)");
    if (message == "incorrect length check") fail("length mismatch (corrupt file)");
    if (status == Z_MEM_ERROR) fail("out of memory");
    fail("corrupt data (zlib: ", message.empty() ? "error" : message, ")");
  }
  if (stream.avail_in != 0)
    fail(stream.avail_in, " bytes after the gzip member (multi-member gzip is not supported)");
  out.resize(stream.total_out);
  return out;
}

#else
inline std::vector<uint8_t> gunzip(std::span<const uint8_t>, std::string_view name,
                                   size_t = kDefaultMaxGunzipBytes) {
  throw Error(::mentor::detail::concat("gunzip: ", name,
                                       ": mentor was built without zlib (install ",
                                       "zlib1g-dev and re-run CMake)"));
}
#endif

// ---- Pillow-compatible resampling
// -------------------------------------------------------------------

enum class ResampleFilter { box, bilinear, bicubic, lanczos };

namespace detail {

inline double resample_support(ResampleFilter filter) {
  switch (filter) {
    case ResampleFilter::box:
      return 0.5;
    case ResampleFilter::bilinear:
      return 1.0;
    case ResampleFilter::bicubic:
      return 2.0;
    case ResampleFilter::lanczos:
      return 3.0;
  }
  return 0.0;
}

inline double sinc(double x) {
  if (x == 0.0) return 1.0;
  x *= 3.14159265358979323846;
  return std::sin(x) / x;
}

inline double resample_weight(ResampleFilter filter, double x) {
  switch (filter) {
    case ResampleFilter::box:
      return (x > -0.5 && x <= 0.5) ? 1.0 : 0.0;
    case ResampleFilter::bilinear:
      x = std::fabs(x);
      return x < 1.0 ? 1.0 - x : 0.0;
    case ResampleFilter::bicubic: {
      constexpr double a = -0.5;  // Pillow's (and Keys') choice
      x = std::fabs(x);
      if (x < 1.0) return ((a + 2.0) * x - (a + 3.0)) * x * x + 1.0;
      if (x < 2.0) return (((x - 5.0) * x + 8.0) * x - 4.0) * a;
      return 0.0;
    }
    case ResampleFilter::lanczos:
      return (x >= -3.0 && x < 3.0) ? sinc(x) * sinc(x / 3.0) : 0.0;
  }
  return 0.0;
}

// Pillow's precompute_coeffs: for output sample i, inputs start[i] .. start[i]+count[i]-1 with
// weights weight[i * taps + k] (normalised to sum 1).
struct ResampleTaps {
  int taps = 0;
  std::vector<int> start;
  std::vector<int> count;
  std::vector<double> weight;
};

inline ResampleTaps resample_taps(int in_size, int out_size, ResampleFilter filter) {
  const double scale = static_cast<double>(in_size) / out_size;
  const double filter_scale = std::max(scale, 1.0);  // stretch the filter when downscaling
  const double support = resample_support(filter) * filter_scale;
  ResampleTaps t;
  t.taps = static_cast<int>(std::ceil(support)) * 2 + 1;
  t.start.resize(static_cast<size_t>(out_size));
  t.count.resize(static_cast<size_t>(out_size));
  t.weight.assign(static_cast<size_t>(out_size) * static_cast<size_t>(t.taps), 0.0);
  for (int i = 0; i < out_size; ++i) {
    const double center = (i + 0.5) * scale;
    const double inverse_scale = 1.0 / filter_scale;
    int lo = static_cast<int>(center - support + 0.5);
    lo = std::max(lo, 0);
    int hi = static_cast<int>(center + support + 0.5);
    hi = std::min(hi, in_size);
    const int n = hi - lo;
    double* w = &t.weight[static_cast<size_t>(i) * static_cast<size_t>(t.taps)];
    double total = 0.0;
    for (int k = 0; k < n; ++k) {
      w[k] = resample_weight(filter, (k + lo - center + 0.5) * inverse_scale);
      total += w[k];
    }
    if (total != 0.0)
      for (int k = 0; k < n; ++k) w[k] /= total;
    t.start[static_cast<size_t>(i)] = lo;
    t.count[static_cast<size_t>(i)] = n;
  }
  return t;
}

constexpr int kResamplePrecisionBits = 32 - 8 - 2;

// Pillow's normalize_coeffs_8bpc: round half away from zero to 22-bit fixed point.
inline std::vector<int32_t> fixed_point_weights(const std::vector<double>& weights) {
  std::vector<int32_t> fixed(weights.size());
  for (size_t k = 0; k < weights.size(); ++k) {
    const double scaled = weights[k] * (1 << kResamplePrecisionBits);
    fixed[k] = static_cast<int32_t>(scaled < 0 ? scaled - 0.5 : scaled + 0.5);
  }
  return fixed;
}

inline uint8_t clip8(int32_t accumulator) {
  return static_cast<uint8_t>(std::clamp(accumulator >> kResamplePrecisionBits, 0, 255));
}

// One 8-bit pass along x (horizontal) or y (vertical).
inline Image resample_pass_u8(const Image& in, int out_size, ResampleFilter filter,
                              bool horizontal) {
  const int in_size = horizontal ? in.width : in.height;
  const ResampleTaps t = resample_taps(in_size, out_size, filter);
  const std::vector<int32_t> w = fixed_point_weights(t.weight);
  Image out(horizontal ? out_size : in.width, horizontal ? in.height : out_size, in.channels);
  const int channels = in.channels;
  for (int y = 0; y < out.height; ++y) {
    for (int x = 0; x < out.width; ++x) {
      const int i = horizontal ? x : y;
      const int lo = t.start[static_cast<size_t>(i)], n = t.count[static_cast<size_t>(i)];
      const int32_t* wi = &w[static_cast<size_t>(i) * static_cast<size_t>(t.taps)];
      for (int c = 0; c < channels; ++c) {
        int32_t sum = 1 << (kResamplePrecisionBits - 1);
        for (int k = 0; k < n; ++k) {
          const uint8_t v = horizontal ? in.at(y, lo + k, c) : in.at(lo + k, x, c);
          sum += static_cast<int32_t>(v) * wi[k];
        }
        out.at(y, x, c) = clip8(sum);
      }
    }
  }
  return out;
}

inline ImageCHW resample_pass_f32(const ImageCHW& in, int out_size, ResampleFilter filter,
                                  bool horizontal) {
  const int in_size = horizontal ? in.width : in.height;
  const ResampleTaps t = resample_taps(in_size, out_size, filter);
  ImageCHW out(in.channels, horizontal ? in.height : out_size, horizontal ? out_size : in.width);
  for (int c = 0; c < out.channels; ++c) {
    for (int y = 0; y < out.height; ++y) {
      for (int x = 0; x < out.width; ++x) {
        const int i = horizontal ? x : y;
        const int lo = t.start[static_cast<size_t>(i)], n = t.count[static_cast<size_t>(i)];
        const double* wi = &t.weight[static_cast<size_t>(i) * static_cast<size_t>(t.taps)];
        double sum = 0.0;
        for (int k = 0; k < n; ++k)
          sum +=
              static_cast<double>(horizontal ? in.at(c, y, lo + k) : in.at(c, lo + k, x)) * wi[k];
        out.at(c, y, x) = static_cast<float>(sum);
      }
    }
  }
  return out;
}

inline void check_resize_args(int in_width, int in_height, int channels, size_t data_size,
                              int width, int height, std::string_view who) {
  MENTOR_CHECK(in_width > 0 && in_height > 0, who, ": zero-size input image (", in_width, "x",
               in_height, ")");
  MENTOR_CHECK(width > 0 && height > 0, who, ": target size must be positive, got ", width, "x",
               height);
  MENTOR_CHECK(data_size == static_cast<size_t>(in_width) * in_height * channels, who,
               ": image data holds ", data_size, " values, expected ", in_width, "x", in_height,
               "x", channels);
}

}  // namespace detail

// PIL's Image.resize((width, height), filter) for 8-bit images, byte for byte.
inline Image resize(const Image& image, int width, int height, ResampleFilter filter) {
  detail::check_resize_args(image.width, image.height, image.channels, image.data.size(), width,
                            height, "resize");
  Image out = image;
  if (width != out.width) out = detail::resample_pass_u8(out, width, filter, true);
  if (height != out.height) out = detail::resample_pass_u8(out, height, filter, false);
  return out;
}

// PIL's Image.resize on mode "F" images, plane by plane.
inline ImageCHW resize(const ImageCHW& image, int width, int height, ResampleFilter filter) {
  detail::check_resize_args(image.width, image.height, image.channels, image.data.size(), width,
                            height, "resize");
  ImageCHW out = image;
  if (width != out.width) out = detail::resample_pass_f32(out, width, filter, true);
  if (height != out.height) out = detail::resample_pass_f32(out, height, filter, false);
  return out;
}

inline Image resize_bicubic(const Image& image, int width, int height) {
  return resize(image, width, height, ResampleFilter::bicubic);
}
inline ImageCHW resize_bicubic(const ImageCHW& image, int width, int height) {
  return resize(image, width, height, ResampleFilter::bicubic);
}

// PIL's image.resize((w // 2, h // 2), Image.BOX): the reduction step of ADM's center crop.
inline Image resize_box_half(const Image& image) {
  MENTOR_CHECK(image.width >= 2 && image.height >= 2, "resize_box_half: image ", image.width, "x",
               image.height, " is too small to halve");
  return resize(image, image.width / 2, image.height / 2, ResampleFilter::box);
}

namespace detail {
inline int floor_div2(int v) { return v >= 0 ? v / 2 : -((-v + 1) / 2); }
}  // namespace detail

// The centred width x height window, offset floor((in - out) / 2) on each axis (as HF's
// center_crop and ADM's crop). A window larger than the image is padded with zeros (as HF).
inline Image center_crop(const Image& image, int width, int height) {
  MENTOR_CHECK(width > 0 && height > 0, "center_crop: crop size must be positive, got ", width, "x",
               height);
  Image out(width, height, image.channels);
  const int top = detail::floor_div2(image.height - height);
  const int left = detail::floor_div2(image.width - width);
  for (int y = 0; y < height; ++y) {
    const int sy = y + top;
    if (sy < 0 || sy >= image.height) continue;
    for (int x = 0; x < width; ++x) {
      const int sx = x + left;
      if (sx < 0 || sx >= image.width) continue;
      for (int c = 0; c < image.channels; ++c) out.at(y, x, c) = image.at(sy, sx, c);
    }
  }
  return out;
}

// PIL's convert("RGB") for 1 (L), 2 (LA), 3 and 4 (RGBA) channels: grey replicated, alpha dropped.
inline Image to_rgb(const Image& image) {
  MENTOR_CHECK(image.channels >= 1 && image.channels <= 4, "to_rgb: channels must be 1..4, got ",
               image.channels);
  if (image.channels == 3) return image;
  Image out(image.width, image.height, 3);
  for (int y = 0; y < image.height; ++y)
    for (int x = 0; x < image.width; ++x)
      for (int c = 0; c < 3; ++c) out.at(y, x, c) = image.at(y, x, image.channels <= 2 ? 0 : c);
  return out;
}

// x / 255 as CHW float in [0, 1].
inline ImageCHW to_chw_unit(const Image& image) {
  ImageCHW out(image.channels, image.height, image.width);
  for (int c = 0; c < image.channels; ++c)
    for (int y = 0; y < image.height; ++y)
      for (int x = 0; x < image.width; ++x)
        out.at(c, y, x) = static_cast<float>(image.at(y, x, c)) / 255.0f;
  return out;
}

inline constexpr std::array<float, 3> kClipMean = {0.48145466f, 0.4578275f, 0.40821073f};
inline constexpr std::array<float, 3> kClipStd = {0.26862954f, 0.26130258f, 0.27577711f};

// The (width, height) HF's CLIPImageProcessor resizes to: short side = size, long side =
// int(size * long / short) (truncated); unchanged when the short side already equals size.
inline std::array<int, 2> clip_resize_size(int width, int height, int size) {
  const int short_side = std::min(width, height), long_side = std::max(width, height);
  if (short_side == size) return {width, height};
  const int new_long =
      static_cast<int>(static_cast<double>(static_cast<int64_t>(size) * long_side) /
                       static_cast<double>(short_side));
  return width <= height ? std::array<int, 2>{size, new_long} : std::array<int, 2>{new_long, size};
}

// HF CLIPImageProcessor (openai/clip-vit-large-patch14 settings) -> 3 x size x size floats.
inline ImageCHW clip_preprocess(const Image& image, int size = 224) {
  MENTOR_CHECK(size > 0, "clip_preprocess: size must be positive, got ", size);
  MENTOR_CHECK(image.width > 0 && image.height > 0, "clip_preprocess: zero-size image (",
               image.width, "x", image.height, ")");
  Image rgb = to_rgb(image);
  const auto [width, height] = clip_resize_size(rgb.width, rgb.height, size);
  rgb = resize(rgb, width, height, ResampleFilter::bicubic);
  rgb = center_crop(rgb, size, size);
  ImageCHW out(3, size, size);
  for (int c = 0; c < 3; ++c)
    for (int y = 0; y < size; ++y)
      for (int x = 0; x < size; ++x) {
        // HF rescales in float64 then casts to float32, and normalises in float32.
        const auto unit = static_cast<float>(static_cast<double>(rgb.at(y, x, c)) * (1.0 / 255.0));
        out.at(c, y, x) =
            (unit - kClipMean[static_cast<size_t>(c)]) / kClipStd[static_cast<size_t>(c)];
      }
  return out;
}

// guided-diffusion's center_crop_arr on the RGB image, before normalisation.
inline Image adm_center_crop_u8(const Image& image, int size) {
  MENTOR_CHECK(size > 0, "adm_center_crop: size must be positive, got ", size);
  MENTOR_CHECK(image.width > 0 && image.height > 0, "adm_center_crop: zero-size image (",
               image.width, "x", image.height, ")");
  Image current = to_rgb(image);
  while (std::min(current.width, current.height) >= 2 * size) current = resize_box_half(current);
  const double scale = static_cast<double>(size) / std::min(current.width, current.height);
  // Python's round(): half to even, which std::nearbyint does in the default rounding mode.
  const int width = static_cast<int>(std::nearbyint(current.width * scale));
  const int height = static_cast<int>(std::nearbyint(current.height * scale));
  current = resize(current, width, height, ResampleFilter::bicubic);
  return center_crop(current, size, size);
}

// adm_center_crop_u8, then ToTensor + Normalize(0.5, 0.5): 3 x size x size floats in [-1, 1].
inline ImageCHW adm_center_crop(const Image& image, int size) {
  const Image cropped = adm_center_crop_u8(image, size);
  ImageCHW out(3, size, size);
  for (int c = 0; c < 3; ++c)
    for (int y = 0; y < size; ++y)
      for (int x = 0; x < size; ++x) {
        const float unit = static_cast<float>(cropped.at(y, x, c)) / 255.0f;
        out.at(c, y, x) = (unit - 0.5f) / 0.5f;
      }
  return out;
}

// Inverse of the [-1, 1] normalisation, as torchvision's save_image(normalize=True,
// value_range=(-1, 1)): clamp, (x + 1) / 2, * 255 + 0.5, truncate. NaN becomes 0.
inline Image to_image_from_minus1_1(const ImageCHW& image) {
  MENTOR_CHECK(image.channels >= 1 && image.channels <= 4,
               "to_image_from_minus1_1: channels must be 1..4, got ", image.channels);
  Image out(image.width, image.height, image.channels);
  for (int c = 0; c < image.channels; ++c)
    for (int y = 0; y < image.height; ++y)
      for (int x = 0; x < image.width; ++x) {
        const float v = image.at(c, y, x);
        if (std::isnan(v)) continue;
        const float unit = (std::clamp(v, -1.0f, 1.0f) + 1.0f) / 2.0f;
        out.at(y, x, c) = static_cast<uint8_t>(std::clamp(unit * 255.0f + 0.5f, 0.0f, 255.0f));
      }
  return out;
}

}  // namespace mentor::data
