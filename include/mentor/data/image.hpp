#pragma once
// Images: loading (PNG, JPEG, BMP, PNM via stb_image), saving PNG (stb_image_write), Pillow-exact
// resampling, and the two preprocessing pipelines MENTOR uses:
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
// stb is compiled into every translation unit that includes this header, with internal linkage
// (STB_IMAGE_STATIC / STB_IMAGE_WRITE_STATIC), which keeps mentor header-only. Include this header
// rather than stb_image.h / stb_image_write.h directly.
#include <algorithm>
#include <array>
#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "mentor/core/error.hpp"

#if defined(STBI_INCLUDE_STB_IMAGE_H) || defined(INCLUDE_STB_IMAGE_WRITE_H)
#error "mentor/data/image.hpp compiles stb privately; include it before (or instead of) stb headers"
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
#define STB_IMAGE_STATIC
#define STB_IMAGE_IMPLEMENTATION
#define STBI_NO_STDIO  // files are read here, so errors can tell "missing" from "not an image"
#define STBI_ONLY_PNG
#define STBI_ONLY_JPEG
#define STBI_ONLY_BMP
#define STBI_ONLY_PNM
#if __has_include(<stb_image.h>)
#include <stb_image.h>
#else
#include <stb/stb_image.h>
#endif
#define STB_IMAGE_WRITE_STATIC
#define STB_IMAGE_WRITE_IMPLEMENTATION
#define STBI_WRITE_NO_STDIO
#if __has_include(<stb_image_write.h>)
#include <stb_image_write.h>
#else
#include <stb/stb_image_write.h>
#endif
// A later #include of either stb header must not compile the implementation a second time.
#undef STB_IMAGE_IMPLEMENTATION
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

// Decodes PNG/JPEG/BMP/PNM bytes. channels: 0 keeps the file's channel count; 1..4 converts (grey
// is replicated to RGB, alpha dropped: like PIL's convert("RGB")). `name` is used in errors.
inline Image decode_image(std::span<const uint8_t> bytes, int channels = 0,
                          std::string_view name = "<memory>") {
  MENTOR_CHECK(channels >= 0 && channels <= 4, "decode_image: channels must be 0..4, got ",
               channels, " for ", name);
  MENTOR_CHECK(!bytes.empty(), "decode_image: ", name, " is empty (0 bytes)");
  MENTOR_CHECK(bytes.size() <= static_cast<size_t>(INT32_MAX), "decode_image: ", name, " (",
               bytes.size(), " bytes) is too large for stb_image");
  int width = 0, height = 0, file_channels = 0;
  stbi_uc* pixels = stbi_load_from_memory(bytes.data(), static_cast<int>(bytes.size()), &width,
                                          &height, &file_channels, channels);
  MENTOR_CHECK(pixels != nullptr, "decode_image: ", name, " is not a decodable image (",
               stbi_failure_reason(), ")");
  Image image;
  image.width = width;
  image.height = height;
  image.channels = channels != 0 ? channels : file_channels;
  const size_t count = static_cast<size_t>(width) * static_cast<size_t>(height) *
                       static_cast<size_t>(image.channels);
  image.data.assign(pixels, pixels + count);
  stbi_image_free(pixels);
  MENTOR_CHECK(width > 0 && height > 0, "decode_image: ", name, " has zero size (", width, "x",
               height, ")");
  return image;
}

inline Image load_image(const std::filesystem::path& path, int channels = 0) {
  const std::vector<uint8_t> bytes = read_file_bytes(path, "load_image");
  return decode_image(bytes, channels, path.string());
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

// ---- gzip (stb's inflate; no zlib link needed)
// ------------------------------------------------------

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

// Decompresses a single-member gzip file (RFC 1952) and checks its CRC-32 and length.
inline std::vector<uint8_t> gunzip(std::span<const uint8_t> bytes, std::string_view name) {
  auto fail = [&](std::string_view why) {
    throw Error(detail::concat("gunzip: ", name, ": ", why));
  };
  if (bytes.size() < 18 || bytes[0] != 0x1f || bytes[1] != 0x8b) fail("not a gzip file");
  if (bytes[2] != 8) fail("unsupported compression method (not deflate)");
  const uint8_t flags = bytes[3];
  size_t at = 10;
  if (flags & 0x04) {  // FEXTRA
    if (at + 2 > bytes.size()) fail("truncated header");
    at += 2 + (bytes[at] | (bytes[at + 1] << 8));
  }
  for (uint8_t flag : {uint8_t{0x08}, uint8_t{0x10}}) {  // FNAME, FCOMMENT: zero-terminated
    if (!(flags & flag)) continue;
    while (at < bytes.size() && bytes[at] != 0) ++at;
    ++at;
  }
  if (flags & 0x02) at += 2;  // FHCRC
  if (at + 8 > bytes.size()) fail("truncated header");
  const uint8_t* trailer = bytes.data() + bytes.size() - 8;
  auto le32 = [](const uint8_t* p) {
    return uint32_t{p[0]} | uint32_t{p[1]} << 8 | uint32_t{p[2]} << 16 | uint32_t{p[3]} << 24;
  };
  const uint32_t expected_crc = le32(trailer);
  const uint32_t expected_size = le32(trailer + 4);  // length mod 2^32
  // The 8-byte trailer is passed along with the deflate data: stb's decoder wants 16 bits of
  // look-ahead and reports "unexpected end" when a stream ends flush with its buffer (in PNG and
  // zlib streams a checksum always follows). It stops at the final block, so never reads them.
  const size_t deflate_size = bytes.size() - at;
  if (deflate_size > static_cast<size_t>(INT32_MAX)) fail("too large");
  int out_size = 0;
  char* raw = stbi_zlib_decode_malloc_guesssize_headerflag(
      reinterpret_cast<const char*>(bytes.data() + at), static_cast<int>(deflate_size),
      expected_size > 0 && expected_size < INT32_MAX ? static_cast<int>(expected_size) : 1 << 16,
      &out_size, 0);
  if (raw == nullptr) fail("corrupt deflate data");
  std::vector<uint8_t> out(reinterpret_cast<uint8_t*>(raw),
                           reinterpret_cast<uint8_t*>(raw) + out_size);
  STBI_FREE(raw);
  if (static_cast<uint32_t>(out.size()) != expected_size)
    fail("length mismatch (corrupt, truncated, or a multi-member gzip)");
  if (crc32_ieee(out) != expected_crc) fail("CRC-32 mismatch (corrupt file)");
  return out;
}

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
