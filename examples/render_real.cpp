// render_real: a contact sheet of the real image sets behind the dataset interface.
//
//   render_real --resolution 64 --columns 16 --seed 0 --out docs/images/real_data.png
//
// Bands from the top, separated by a lighter gap: emoji spread over emoji-test.txt's order (two
// rows); variant groups, one row each (thumbs up's skin tones, the technologist's person/man/woman
// forms and tones, the person running's, the zombie's genders); crops of scikit-image's photos
// (two per photo, PhotoCrops with --seed); the first Fashion-MNIST test images, as RGB. A band
// whose package is absent is left out with a message. The same options write the same bytes.
#include <CLI/CLI.hpp>
#include <algorithm>
#include <cstdint>
#include <iostream>
#include <memory>
#include <string>
#include <vector>

#include "mentor/core/error.hpp"
#include "mentor/data/emoji.hpp"
#include "mentor/data/fashion_mnist.hpp"
#include "mentor/data/image.hpp"
#include "mentor/data/photos.hpp"

#include "cli.hpp"

namespace data = mentor::data;
using data::Image;

namespace {

struct Options {
  int resolution = 64;
  int columns = 16;
  uint64_t seed = 0;
  std::string out = "real_data.png";
};

using Band = std::vector<std::vector<Image>>;  // rows of tiles

Band emoji_bands(const data::EmojiSet& set, int resolution, int columns) {
  Band band(2);
  const int64_t count = 2 * int64_t{columns};
  for (int64_t i = 0; i < count; ++i)
    band[static_cast<size_t>(i / columns)].push_back(set.image(i * set.size() / count, resolution));
  return band;
}

Band variant_band(const data::EmojiSet& set, int resolution, int columns) {
  Band band;
  for (const std::u32string& member :
       {std::u32string(U"\U0001F44D"), std::u32string(U"\U0001F9D1\u200D\U0001F4BB"),
        std::u32string(U"\U0001F3C3"), std::u32string(U"\U0001F9DF")}) {
    const std::optional<int64_t> index = set.find(member);
    if (!index) continue;
    for (const data::EmojiVariantGroup& group : set.variant_groups()) {
      if (std::find(group.members.begin(), group.members.end(), *index) == group.members.end())
        continue;
      std::vector<Image> row;
      for (size_t m = 0; m < group.members.size() && row.size() < static_cast<size_t>(columns); ++m)
        row.push_back(set.image(group.members[m], resolution));
      band.push_back(std::move(row));
    }
  }
  return band;
}

Band photo_band(int resolution, int columns, uint64_t seed) {
  const auto photos = std::make_shared<const data::SkimagePhotos>();
  const data::PhotoCrops crops(photos, data::PhotoCropOptions{resolution, 2, 0.25, seed});
  Band band;
  for (int64_t i = 0; i < crops.size(); ++i) {
    if (i % columns == 0) band.emplace_back();
    band.back().push_back(crops.get(i).image);
  }
  return band;
}

Band fashion_band(int resolution, int columns) {
  const auto grey = std::make_shared<const data::FashionMnist>(data::FashionMnistSplit::test);
  const data::FashionMnistRgb rgb(grey, resolution);
  Band band(1);
  for (int i = 0; i < columns; ++i) band[0].push_back(rgb.get(i).image);
  return band;
}

int run(const Options& o) {
  MENTOR_CHECK(o.resolution >= 16 && o.resolution <= 256, "--resolution ", o.resolution,
               " is outside 16..256");
  MENTOR_CHECK(o.columns >= 4 && o.columns <= 64, "--columns ", o.columns, " is outside 4..64");
  std::vector<Band> bands;
  if (data::emoji_available()) {
    const data::EmojiSet set;
    bands.push_back(emoji_bands(set, o.resolution, o.columns));
    bands.push_back(variant_band(set, o.resolution, o.columns));
  } else {
    std::cerr << "render_real: no emoji band (install fonts-noto-color-emoji unicode-data)\n";
  }
  if (data::skimage_photos_available()) {
    bands.push_back(photo_band(o.resolution, o.columns, o.seed));
  } else {
    std::cerr << "render_real: no photo band (install python3-skimage)\n";
  }
  if (data::fashion_mnist_available()) {
    bands.push_back(fashion_band(o.resolution, o.columns));
  } else {
    std::cerr << "render_real: no Fashion-MNIST band (install dataset-fashion-mnist)\n";
  }
  MENTOR_CHECK(!bands.empty(), "render_real: none of the real data sets is installed");

  constexpr int kGap = 2, kBandGap = 10;
  const int cell = o.resolution + kGap;
  int height = kGap;
  for (const Band& band : bands) height += static_cast<int>(band.size()) * cell + kBandGap;
  height -= kBandGap;
  Image sheet(o.columns * cell + kGap, height, 3);
  std::fill(sheet.data.begin(), sheet.data.end(), uint8_t{40});  // dark grey between tiles
  int y0 = kGap;
  for (size_t b = 0; b < bands.size(); ++b) {
    for (const std::vector<Image>& row : bands[b]) {
      for (size_t t = 0; t < row.size(); ++t) {
        const Image& tile = row[t];
        const int x0 = kGap + static_cast<int>(t) * cell;
        for (int y = 0; y < tile.height; ++y)
          for (int x = 0; x < tile.width; ++x)
            for (int c = 0; c < 3; ++c) sheet.at(y0 + y, x0 + x, c) = tile.at(y, x, c);
      }
      y0 += cell;
    }
    if (b + 1 == bands.size()) break;
    for (int y = y0 + kBandGap / 2 - 2; y < y0 + kBandGap / 2 + 1; ++y)  // a light rule
      for (int x = 0; x < sheet.width; ++x)
        for (int c = 0; c < 3; ++c) sheet.at(y, x, c) = 150;
    y0 += kBandGap;
  }
  data::save_png(sheet, o.out);
  std::cout << "render_real: " << bands.size() << " bands (" << o.resolution << " px) -> " << o.out
            << "\n";
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  Options o;
  CLI::App app{
      "render_real: a contact sheet (PNG) of the real image sets: Noto emoji and their variant "
      "groups, crops of scikit-image's photos, Fashion-MNIST."};
  app.add_option("--resolution", o.resolution, "each tile's side in pixels (16..256)");
  app.add_option("--columns", o.columns, "tiles per row (4..64)");
  app.add_option("--seed", o.seed, "the photo crops' seed");
  app.add_option("--out", o.out, "the contact sheet PNG");
  return mentor::examples::parse_and_run(app, argc, argv, "render_real", [&] { return run(o); });
}
