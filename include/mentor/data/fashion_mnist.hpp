#pragma once
// Fashion-MNIST (Zalando, MIT) from Debian's dataset-fashion-mnist package: 60,000 train and 10,000
// test 28x28 greyscale product photos in 10 classes, as IDX files, gzip-compressed, under
// /usr/share/datasets/fashion-mnist/. Uncompressed copies (the same names without .gz) are read
// too. The directory can be overridden with the MENTOR_FASHION_MNIST_DIR environment variable.
//
// IDX: big-endian; bytes 0-1 zero, byte 2 the element type (0x08 = uint8), byte 3 the number of
// dimensions, then one uint32 per dimension, then the elements row-major.
// gzip is inflated by zlib with a bounded output (see image.hpp).
#include <algorithm>
#include <array>
#include <cstdint>
#include <cstdlib>
#include <filesystem>
#include <ios>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "mentor/core/error.hpp"
#include "mentor/data/image.hpp"
#include "mentor/data/loader.hpp"

namespace mentor::data {

struct IdxArray {
  std::vector<int64_t> dims;
  std::vector<uint8_t> data;
};

// Parses IDX bytes of element type uint8. `name` is used in errors.
inline IdxArray parse_idx(std::span<const uint8_t> bytes, std::string_view name) {
  MENTOR_CHECK(bytes.size() >= 4, "parse_idx: ", name, " is too short for an IDX header (",
               bytes.size(), " bytes)");
  MENTOR_CHECK(bytes[0] == 0 && bytes[1] == 0, "parse_idx: ", name,
               " is not an IDX file (bad magic)");
  MENTOR_CHECK(bytes[2] == 0x08, "parse_idx: ", name, " has element type 0x", std::hex,
               int{bytes[2]}, ", only uint8 (0x08) is supported");
  const int rank = bytes[3];
  MENTOR_CHECK(bytes.size() >= 4 + 4 * static_cast<size_t>(rank), "parse_idx: ", name,
               " is truncated inside its header");
  const size_t header = 4 + 4 * static_cast<size_t>(rank);
  const size_t data_bytes = bytes.size() - header;
  IdxArray array;
  // The product of hostile dims is computed with overflow detection, so it can never wrap around
  // to match the bytes present (e.g. [2^31, 2^31, 4] with no data).
  uint64_t count = 1;
  bool overflow = false;
  std::string dims;
  for (int d = 0; d < rank; ++d) {
    const uint8_t* p = bytes.data() + 4 + 4 * d;
    const uint32_t dim =
        uint32_t{p[0]} << 24 | uint32_t{p[1]} << 16 | uint32_t{p[2]} << 8 | uint32_t{p[3]};
    array.dims.push_back(dim);
    overflow = overflow || __builtin_mul_overflow(count, uint64_t{dim}, &count);
    dims += (d ? ", " : "") + std::to_string(dim);
  }
  MENTOR_CHECK(!overflow, "parse_idx: ", name, " has dims [", dims,
               "]: more elements than 2^64, its data holds ", data_bytes, " bytes");
  MENTOR_CHECK(data_bytes == count, "parse_idx: ", name, " holds ", data_bytes,
               " data bytes, its header promises ", count, " (dims [", dims, "])");
  array.data.assign(bytes.begin() + static_cast<std::ptrdiff_t>(header), bytes.end());
  return array;
}

// Reads an IDX file, gzip-compressed (by its magic bytes, whatever the name) or not; max_bytes
// bounds the decompressed size.
inline IdxArray read_idx(const std::filesystem::path& path,
                         size_t max_bytes = kDefaultMaxGunzipBytes) {
  std::vector<uint8_t> bytes = read_file_bytes(path, "read_idx");
  if (bytes.size() >= 2 && bytes[0] == 0x1f && bytes[1] == 0x8b)
    bytes = gunzip(bytes, path.string(), max_bytes);
  return parse_idx(bytes, path.string());
}

enum class FashionMnistSplit { train, test };

inline constexpr std::array<std::string_view, 10> kFashionMnistClassNames = {
    "T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
    "Sandal",      "Shirt",   "Sneaker",  "Bag",   "Ankle boot"};

inline std::filesystem::path fashion_mnist_default_dir() {
  if (const char* dir = std::getenv("MENTOR_FASHION_MNIST_DIR"); dir != nullptr && *dir != '\0')
    return dir;
  return "/usr/share/datasets/fashion-mnist";
}

// True when both files of a split are present (tests skip cleanly when the package is missing).
inline bool fashion_mnist_available(
    const std::filesystem::path& dir = fashion_mnist_default_dir()) {
  for (std::string_view stem : {"train-images-idx3-ubyte", "train-labels-idx1-ubyte",
                                "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"}) {
    const auto plain = dir / std::string(stem);
    if (!std::filesystem::exists(plain) && !std::filesystem::exists(plain.string() + ".gz"))
      return false;
  }
  return true;
}

struct LabeledImage {
  Image image;  // 28 x 28 x 1 (FashionMnist) or resolution^2 x 3 (FashionMnistRgb)
  int label = 0;
};

class FashionMnist final : public Dataset<LabeledImage> {
 public:
  static constexpr int kRows = 28;
  static constexpr int kCols = 28;
  static constexpr int kClasses = 10;

  explicit FashionMnist(FashionMnistSplit split,
                        const std::filesystem::path& dir = fashion_mnist_default_dir()) {
    const std::string prefix = split == FashionMnistSplit::train ? "train" : "t10k";
    const auto images_path = locate(dir, prefix + "-images-idx3-ubyte");
    const auto labels_path = locate(dir, prefix + "-labels-idx1-ubyte");
    IdxArray images = read_idx(images_path);
    IdxArray labels = read_idx(labels_path);
    MENTOR_CHECK(images.dims.size() == 3 && images.dims[1] == kRows && images.dims[2] == kCols,
                 "FashionMnist: ", images_path.string(), " is not an N x 28 x 28 image array");
    MENTOR_CHECK(labels.dims.size() == 1, "FashionMnist: ", labels_path.string(),
                 " is not a 1-D label array");
    MENTOR_CHECK(labels.dims[0] == images.dims[0], "FashionMnist: ", images_path.string(), " has ",
                 images.dims[0], " images but ", labels_path.string(), " has ", labels.dims[0],
                 " labels");
    for (size_t i = 0; i < labels.data.size(); ++i)
      MENTOR_CHECK(labels.data[i] < kClasses, "FashionMnist: ", labels_path.string(), " label ", i,
                   " is ", int{labels.data[i]}, ", outside 0..9");
    count_ = images.dims[0];
    pixels_ = std::move(images.data);
    labels_ = std::move(labels.data);
  }

  int64_t size() const override { return count_; }

  LabeledImage get(int64_t index) const override {
    MENTOR_CHECK(index >= 0 && index < count_, "FashionMnist: index ", index, " outside [0, ",
                 count_, ")");
    LabeledImage sample{Image(kCols, kRows, 1), labels_[static_cast<size_t>(index)]};
    const auto begin = pixels_.begin() + index * kRows * kCols;
    std::copy(begin, begin + kRows * kCols, sample.image.data.begin());
    return sample;
  }

  int label(int64_t index) const { return labels_.at(static_cast<size_t>(index)); }
  static std::string_view class_name(int label) {
    MENTOR_CHECK(label >= 0 && label < kClasses, "FashionMnist: class label ", label,
                 " outside 0..9");
    return kFashionMnistClassNames[static_cast<size_t>(label)];
  }
  // All images, N x 28 x 28 row-major, and all labels.
  const std::vector<uint8_t>& pixels() const { return pixels_; }
  const std::vector<uint8_t>& labels() const { return labels_; }

 private:
  static std::filesystem::path locate(const std::filesystem::path& dir, const std::string& stem) {
    const auto plain = dir / stem;
    if (std::filesystem::exists(plain)) return plain;
    const auto gz = std::filesystem::path(plain.string() + ".gz");
    MENTOR_CHECK(std::filesystem::exists(gz), "FashionMnist: neither ", plain.string(), " nor ",
                 gz.string(), " exists (install Debian's dataset-fashion-mnist, or set ",
                 "MENTOR_FASHION_MNIST_DIR)");
    return gz;
  }

  int64_t count_ = 0;
  std::vector<uint8_t> pixels_;
  std::vector<uint8_t> labels_;
};

// Fashion-MNIST as the RGB pictures an image model takes (the VQ tokenizer, beside the emoji and
// photo sets): grey replicated to three channels, resampled from 28 x 28 to resolution x resolution
// with Pillow's bicubic (unchanged at 28). Light products on a black ground, as in the files.
class FashionMnistRgb final : public Dataset<LabeledImage> {
 public:
  FashionMnistRgb(std::shared_ptr<const FashionMnist> images, int resolution)
      : images_(std::move(images)), resolution_(resolution) {
    MENTOR_CHECK(images_ != nullptr, "FashionMnistRgb: no FashionMnist");
    MENTOR_CHECK(resolution > 0 && resolution <= 4096, "FashionMnistRgb: resolution ", resolution,
                 " is outside 1..4096");
  }
  int64_t size() const override { return images_->size(); }
  LabeledImage get(int64_t index) const override {
    LabeledImage sample = images_->get(index);
    sample.image = to_rgb(sample.image);
    if (resolution_ != FashionMnist::kCols)
      sample.image = resize(sample.image, resolution_, resolution_, ResampleFilter::bicubic);
    return sample;
  }
  int resolution() const { return resolution_; }

 private:
  std::shared_ptr<const FashionMnist> images_;
  int resolution_;
};

}  // namespace mentor::data
