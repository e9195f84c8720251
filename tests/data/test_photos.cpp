// scikit-image's photographs (python3-skimage) and Fashion-MNIST's RGB view: the files' known
// sizes (read here from the PNG IHDR, without a decoder), greyscale photos replicated to RGB,
// crops that are deterministic, inside their photo, of the promised count and spread, and equal
// to the photo's pixels where no resampling happens; the loader yields the same crops. Each test
// skips with a message when its package is absent.
#include <algorithm>
#include <cstdint>
#include <fstream>
#include <iterator>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "catch.hpp"
#include "mentor/data/fashion_mnist.hpp"
#include "mentor/data/photos.hpp"

namespace test_photos {

namespace data = mentor::data;
using data::Image;

namespace {

#define PHOTOS_TEST_OR_SKIP()                                                             \
  do {                                                                                    \
    if (!data::skimage_photos_available()) {                                              \
      WARN(                                                                               \
          "skipped: scikit-image's photographs are absent (apt-get install --no-install-" \
          "recommends python3-skimage, or set MENTOR_SKIMAGE_DATA_DIR)");                 \
      return;                                                                             \
    }                                                                                     \
  } while (0)

std::shared_ptr<const data::SkimagePhotos> photos() {
  static const auto loaded = std::make_shared<const data::SkimagePhotos>();
  return loaded;
}

int index_of(std::string_view file) {
  for (size_t i = 0; i < data::kSkimagePhotos.size(); ++i)
    if (data::kSkimagePhotos[i].file == file) return static_cast<int>(i);
  FAIL("no photo " << file);
  return -1;
}

bool grey_everywhere(const Image& image) {
  for (int y = 0; y < image.height; ++y)
    for (int x = 0; x < image.width; ++x)
      if (image.at(y, x, 0) != image.at(y, x, 1) || image.at(y, x, 1) != image.at(y, x, 2))
        return false;
  return true;
}

}  // namespace

TEST_CASE("scikit-image photographs: sizes, colour and greyscale", "[photos]") {
  PHOTOS_TEST_OR_SKIP();
  const auto& set = *photos();
  REQUIRE(set.size() == static_cast<int>(data::kSkimagePhotos.size()));
  // Sizes as scikit-image documents them (skimage.data: astronaut 512x512, chelsea 451x300, ...).
  const std::map<std::string_view, std::pair<int, int>> known = {
      {"astronaut.png", {512, 512}},       {"chelsea.png", {451, 300}},
      {"coffee.png", {600, 400}},          {"rocket.jpg", {640, 427}},
      {"motorcycle_left.png", {741, 500}}, {"hubble_deep_field.jpg", {1000, 872}},
      {"retina.jpg", {1411, 1411}},        {"camera.png", {512, 512}},
      {"coins.png", {384, 303}},           {"moon.png", {512, 512}}};
  for (const auto& [file, size] : known) {
    CAPTURE(file);
    const Image& image = set.image(index_of(file));
    CHECK(image.width == size.first);
    CHECK(image.height == size.second);
    CHECK(image.channels == 3);
  }
  for (int i = 0; i < set.size(); ++i) {
    CAPTURE(data::SkimagePhotos::file(i).file);
    // Greyscale files come back as RGB with equal channels; colour photos are not grey.
    CHECK(grey_everywhere(set.image(i)) == !data::SkimagePhotos::file(i).colour);
  }
  CHECK_THROWS_WITH(
      data::SkimagePhotos("/nonexistent/skimage"),
      Catch::Contains("/nonexistent/skimage/astronaut.png") && Catch::Contains("python3-skimage"));
  CHECK_THROWS_WITH(set.image(set.size()), Catch::Contains("outside"));
}

TEST_CASE("Photo crops: count, windows, determinism", "[photos]") {
  PHOTOS_TEST_OR_SKIP();
  data::PhotoCropOptions options;
  options.resolution = 64;
  options.crops_per_photo = 24;
  options.min_fraction = 0.25;
  options.seed = 7;
  const data::PhotoCrops crops(photos(), options);
  CHECK(crops.size() == static_cast<int64_t>(data::kSkimagePhotos.size()) * 24);
  int smallest = 1 << 30, largest = 0;
  std::vector<int> lefts;
  for (int64_t i = 0; i < crops.size(); ++i) {
    const int photo = static_cast<int>(i / 24), k = static_cast<int>(i % 24);
    const data::PhotoWindow w = crops.window(photo, k);
    const Image& image = photos()->image(photo);
    const int short_side = std::min(image.width, image.height);
    CAPTURE(i, w.left, w.top, w.side);
    CHECK(w.side >= (short_side + 3) / 4);
    CHECK(w.side <= short_side);
    CHECK(w.left >= 0);
    CHECK(w.top >= 0);
    CHECK(w.left + w.side <= image.width);
    CHECK(w.top + w.side <= image.height);
    const double fraction = static_cast<double>(w.side) / short_side;
    smallest = std::min(smallest, static_cast<int>(fraction * 100));
    largest = std::max(largest, static_cast<int>(fraction * 100));
    if (photo == 0) lefts.push_back(w.left);
  }
  // Sides spread over [25%, 100%] of the short side; positions vary.
  CHECK(smallest < 35);
  CHECK(largest > 90);
  std::sort(lefts.begin(), lefts.end());
  CHECK(std::unique(lefts.begin(), lefts.end()) - lefts.begin() > 12);

  // Deterministic: the same options give the same pixels; another seed other windows.
  const data::PhotoCrops again(photos(), options);
  for (int64_t i : {int64_t{0}, int64_t{5}, int64_t{100}, crops.size() - 1}) {
    const data::PhotoCrop a = crops.get(i), b = again.get(i);
    CHECK(a.image.data == b.image.data);
    CHECK(a.image.width == 64);
    CHECK(a.image.height == 64);
    CHECK(a.image.channels == 3);
    CHECK(a.photo == static_cast<int>(i / 24));
    CHECK(a.crop == static_cast<int>(i % 24));
  }
  data::PhotoCropOptions other = options;
  other.seed = 8;
  const data::PhotoCrops reseeded(photos(), other);
  int same = 0;
  for (int k = 0; k < 24; ++k) {
    const auto a = crops.window(0, k), b = reseeded.window(0, k);
    same += a.left == b.left && a.top == b.top && a.side == b.side;
  }
  CHECK(same < 3);

  CHECK_THROWS_WITH(crops.get(crops.size()), Catch::Contains("outside"));
  CHECK_THROWS_WITH(crops.window(0, 24), Catch::Contains("crop 24"));
  data::PhotoCropOptions bad = options;
  bad.min_fraction = 0.0;
  CHECK_THROWS_WITH(data::PhotoCrops(photos(), bad), Catch::Contains("min_fraction"));
}

TEST_CASE("Photo crops are the photo's pixels", "[photos]") {
  PHOTOS_TEST_OR_SKIP();
  // The whole short side at its own resolution: no resampling, the crop is the window itself.
  data::PhotoCropOptions options;
  options.resolution = 512;
  options.crops_per_photo = 3;
  options.min_fraction = 1.0;
  const data::PhotoCrops crops(photos(), options);
  for (const char* file : {"astronaut.png", "camera.png", "moon.png"}) {
    CAPTURE(file);
    const int photo = index_of(file);
    const data::PhotoCrop crop = crops.get(int64_t{photo} * 3 + 1);
    CHECK(crop.window.side == 512);  // a 512 x 512 photo: the only window is the whole photo
    CHECK(crop.image.data == photos()->image(photo).data);
  }
  // A window of coffee (600 x 400), pixel by pixel.
  const int coffee = index_of("coffee.png");
  const data::PhotoCrops full(photos(), data::PhotoCropOptions{400, 4, 1.0, 3});
  for (int k = 0; k < 4; ++k) {
    const data::PhotoCrop crop = full.get(int64_t{coffee} * 4 + k);
    REQUIRE(crop.window.side == 400);
    CHECK(crop.window.top == 0);
    const Image& image = photos()->image(coffee);
    bool equal = true;
    for (int y = 0; y < 400; y += 3)
      for (int x = 0; x < 400; x += 3)
        for (int c = 0; c < 3; ++c)
          equal = equal && crop.image.at(y, x, c) == image.at(y, crop.window.left + x, c);
    CHECK(equal);
  }
  // Resampled crops keep the photo's mean colour (a low-pass view of the same window).
  const data::PhotoCrops small(photos(), data::PhotoCropOptions{32, 4, 1.0, 3});
  const data::PhotoCrop crop = small.get(int64_t{coffee} * 4);
  const Image window = data::crop(photos()->image(coffee), crop.window.left, crop.window.top,
                                  crop.window.side, crop.window.side);
  for (int c = 0; c < 3; ++c) {
    double a = 0, b = 0;
    for (int y = 0; y < 32; ++y)
      for (int x = 0; x < 32; ++x) a += crop.image.at(y, x, c);
    for (int y = 0; y < 400; ++y)
      for (int x = 0; x < 400; ++x) b += window.at(y, x, c);
    CHECK(a / (32 * 32) == Approx(b / (400 * 400)).margin(2.0));
  }
  CHECK_THROWS_WITH(data::crop(window, 390, 0, 20, 20), Catch::Contains("not inside"));
}

TEST_CASE("Photo crops through the DataLoader", "[photos]") {
  PHOTOS_TEST_OR_SKIP();
  auto crops =
      std::make_shared<const data::PhotoCrops>(photos(), data::PhotoCropOptions{32, 2, 0.5, 11});
  data::LoaderOptions options;
  options.batch_size = 5;
  options.shuffle = false;
  options.num_workers = 2;
  data::DataLoader<data::PhotoCrop> loader(crops, options);
  int64_t seen = 0;
  while (seen < crops->size()) {
    const std::vector<data::PhotoCrop> batch = loader.next();
    for (const data::PhotoCrop& crop : batch) {
      CHECK(crop.image.data == crops->get(seen).image.data);
      ++seen;
    }
  }
}

TEST_CASE("Fashion-MNIST as RGB at a resolution", "[photos][fashion_mnist]") {
  if (!data::fashion_mnist_available()) {
    WARN("skipped: dataset-fashion-mnist is not installed (apt-get install dataset-fashion-mnist)");
    return;
  }
  const auto grey = std::make_shared<const data::FashionMnist>(data::FashionMnistSplit::test);
  const data::FashionMnistRgb same(grey, 28), big(grey, 64);
  CHECK(big.size() == grey->size());
  for (int64_t i : {int64_t{0}, int64_t{1}, grey->size() - 1}) {
    const data::LabeledImage g = grey->get(i), s = same.get(i), b = big.get(i);
    CHECK(s.label == g.label);
    CHECK(b.label == g.label);
    REQUIRE(s.image.channels == 3);
    for (int y = 0; y < 28; ++y)
      for (int x = 0; x < 28; ++x)
        for (int c = 0; c < 3; ++c) CHECK(s.image.at(y, x, c) == g.image.at(y, x, 0));
    CHECK(b.image.width == 64);
    CHECK(b.image.height == 64);
    CHECK(grey_everywhere(b.image));
    double mean_small = 0, mean_big = 0;
    for (uint8_t v : g.image.data) mean_small += v;
    for (int y = 0; y < 64; ++y)
      for (int x = 0; x < 64; ++x) mean_big += b.image.at(y, x, 0);
    CHECK(mean_big / (64 * 64) == Approx(mean_small / (28 * 28)).margin(3.0));
  }
  CHECK_THROWS_WITH(data::FashionMnistRgb(grey, 0), Catch::Contains("resolution 0"));
}

}  // namespace test_photos
