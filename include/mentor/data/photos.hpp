#pragma once
// The photographs that Debian's python3-skimage ships (scikit-image 0.19's data directory,
// /usr/lib/python3/dist-packages/skimage/data/, BSD/CC0/public domain, see its README): a fixed
// list of colour photos and greyscale photos (converted to RGB), and deterministic square crops
// of them resampled to one resolution, for the tokenizer's reconstruction scores on real pictures.
// The directory can be overridden with the MENTOR_SKIMAGE_DATA_DIR environment variable.
//
// Crop k of photo j: a SplitMix64 stream seeded with sample_seed(seed, j, k) (loader.hpp) draws
// the side uniformly in [ceil(min_fraction * short side), short side], then the left and top
// corners uniformly among the positions that keep the window inside the photo; the window is
// resampled to resolution x resolution (Pillow's bicubic, antialiased when shrinking). The same
// options give the same crops on every machine.
//
// The files are decoded by image.hpp's hardened libpng/libjpeg-turbo path (not stb_image, whose
// decoders misbehaved on fuzzed input).
#include <algorithm>
#include <array>
#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <filesystem>
#include <memory>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "mentor/core/error.hpp"
#include "mentor/data/image.hpp"
#include "mentor/data/loader.hpp"

namespace mentor::data {

struct PhotoFile {
  std::string_view file;
  std::string_view name;
  bool colour = true;  // false: greyscale in the file (replicated to RGB here)
};

// Photographs only (no drawings, text pages, palettes or test patterns), in a fixed order that
// indexes PhotoCrops.
inline constexpr std::array<PhotoFile, 14> kSkimagePhotos = {{
    {"astronaut.png", "astronaut (Eileen Collins)", true},
    {"chelsea.png", "Chelsea the cat", true},
    {"coffee.png", "cup of coffee", true},
    {"rocket.jpg", "Falcon 9 rocket", true},
    {"motorcycle_left.png", "motorcycle (stereo, left view)", true},
    {"hubble_deep_field.jpg", "Hubble eXtreme Deep Field", true},
    {"retina.jpg", "human retina", true},
    {"ihc.png", "immunohistochemistry slide", true},
    {"camera.png", "cameraman", false},
    {"coins.png", "Greek coins", false},
    {"moon.png", "lunar surface", false},
    {"brick.png", "brick wall", false},
    {"grass.png", "grass", false},
    {"gravel.png", "gravel", false},
}};

inline std::filesystem::path skimage_data_default_dir() {
  if (const char* dir = std::getenv("MENTOR_SKIMAGE_DATA_DIR"); dir != nullptr && *dir != '\0')
    return dir;
  return "/usr/lib/python3/dist-packages/skimage/data";
}

// True when every listed photo is present (tests skip cleanly when the package is missing).
inline bool skimage_photos_available(
    const std::filesystem::path& dir = skimage_data_default_dir()) {
  for (const PhotoFile& photo : kSkimagePhotos)
    if (!std::filesystem::exists(dir / std::string(photo.file))) return false;
  return true;
}

// The listed photos, decoded once, as RGB.
class SkimagePhotos {
 public:
  explicit SkimagePhotos(const std::filesystem::path& dir = skimage_data_default_dir()) {
    for (const PhotoFile& photo : kSkimagePhotos) {
      const auto path = dir / std::string(photo.file);
      MENTOR_CHECK(std::filesystem::exists(path), "SkimagePhotos: ", path.string(),
                   " not found (install Debian's python3-skimage, or set MENTOR_SKIMAGE_DATA_DIR)");
      images_.push_back(load_image(path, 3));
    }
  }
  int size() const { return static_cast<int>(images_.size()); }
  const Image& image(int index) const {
    MENTOR_CHECK(index >= 0 && index < size(), "SkimagePhotos: photo ", index, " outside [0, ",
                 size(), ")");
    return images_[static_cast<size_t>(index)];
  }
  static const PhotoFile& file(int index) {
    MENTOR_CHECK(index >= 0 && index < static_cast<int>(kSkimagePhotos.size()),
                 "SkimagePhotos: photo ", index, " outside [0, ", kSkimagePhotos.size(), ")");
    return kSkimagePhotos[static_cast<size_t>(index)];
  }

 private:
  std::vector<Image> images_;
};

// The width x height window at (left, top), inside the image.
inline Image crop(const Image& image, int left, int top, int width, int height) {
  MENTOR_CHECK(width > 0 && height > 0 && left >= 0 && top >= 0 && left + width <= image.width &&
                   top + height <= image.height,
               "crop: window ", width, "x", height, " at (", left, ", ", top,
               ") is not inside the ", image.width, "x", image.height, " image");
  Image out(width, height, image.channels);
  const size_t row = static_cast<size_t>(width) * static_cast<size_t>(image.channels);
  for (int y = 0; y < height; ++y)
    std::copy_n(&image.data[(static_cast<size_t>(top + y) * static_cast<size_t>(image.width) +
                             static_cast<size_t>(left)) *
                            static_cast<size_t>(image.channels)],
                row, &out.data[static_cast<size_t>(y) * row]);
  return out;
}

struct PhotoCropOptions {
  int resolution = 256;
  int crops_per_photo = 16;
  double min_fraction = 0.25;  // the smallest side, as a fraction of the photo's short side
  uint64_t seed = 0;
};

struct PhotoWindow {
  int left = 0;
  int top = 0;
  int side = 0;
};

struct PhotoCrop {
  Image image;  // resolution x resolution x 3
  int photo = 0;
  int crop = 0;
  PhotoWindow window;  // in the photo's pixels
};

// Crop k of photo j is sample j * crops_per_photo + k.
class PhotoCrops final : public Dataset<PhotoCrop> {
 public:
  PhotoCrops(std::shared_ptr<const SkimagePhotos> photos, PhotoCropOptions options = {})
      : photos_(std::move(photos)), options_(options) {
    MENTOR_CHECK(photos_ != nullptr, "PhotoCrops: no photos");
    MENTOR_CHECK(options.resolution > 0 && options.resolution <= 4096, "PhotoCrops: resolution ",
                 options.resolution, " is outside 1..4096");
    MENTOR_CHECK(options.crops_per_photo > 0, "PhotoCrops: crops_per_photo must be positive, got ",
                 options.crops_per_photo);
    MENTOR_CHECK(options.min_fraction > 0.0 && options.min_fraction <= 1.0,
                 "PhotoCrops: min_fraction ", options.min_fraction, " is outside (0, 1]");
  }

  int64_t size() const override {
    return int64_t{photos_->size()} * int64_t{options_.crops_per_photo};
  }

  PhotoWindow window(int photo, int crop_index) const {
    MENTOR_CHECK(crop_index >= 0 && crop_index < options_.crops_per_photo, "PhotoCrops: crop ",
                 crop_index, " outside [0, ", options_.crops_per_photo, ")");
    const Image& image = photos_->image(photo);
    const int short_side = std::min(image.width, image.height);
    const int smallest =
        std::clamp(static_cast<int>(std::ceil(options_.min_fraction * short_side)), 1, short_side);
    SplitMix64 rng(sample_seed(options_.seed, photo, crop_index));
    PhotoWindow w;
    w.side =
        smallest + static_cast<int>(rng.bounded(static_cast<uint64_t>(short_side - smallest + 1)));
    w.left = static_cast<int>(rng.bounded(static_cast<uint64_t>(image.width - w.side + 1)));
    w.top = static_cast<int>(rng.bounded(static_cast<uint64_t>(image.height - w.side + 1)));
    return w;
  }

  PhotoCrop get(int64_t index) const override {
    MENTOR_CHECK(index >= 0 && index < size(), "PhotoCrops: index ", index, " outside [0, ", size(),
                 ")");
    const int photo = static_cast<int>(index / options_.crops_per_photo);
    const int crop_index = static_cast<int>(index % options_.crops_per_photo);
    const PhotoWindow w = window(photo, crop_index);
    Image pixels = crop(photos_->image(photo), w.left, w.top, w.side, w.side);
    if (w.side != options_.resolution)
      pixels = resize(pixels, options_.resolution, options_.resolution, ResampleFilter::bicubic);
    return PhotoCrop{std::move(pixels), photo, crop_index, w};
  }

  const SkimagePhotos& photos() const { return *photos_; }
  const PhotoCropOptions& options() const { return options_; }

 private:
  std::shared_ptr<const SkimagePhotos> photos_;
  PhotoCropOptions options_;
};

}  // namespace mentor::data
