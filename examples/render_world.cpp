// render_world: a contact sheet of the synthetic world's scenes (PNG) and their captions (text).
//
//   render_world --seed 0 --split train --count 64 --columns 8 --resolution 64
//       --out docs/images/world.png --captions world.txt
//
// Scene i of the sheet (row-major, from the top left) is scene first + i of the split; the
// captions file has one line per scene: "index<TAB>caption". The same options write the same
// bytes on every run.
#include <CLI/CLI.hpp>
#include <algorithm>
#include <cstdint>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <string>
#include <vector>

#include "mentor/core/error.hpp"
#include "mentor/data/image.hpp"
#include "mentor/data/world/caption.hpp"
#include "mentor/data/world/render.hpp"
#include "mentor/data/world/sampling.hpp"

#include "cli.hpp"

namespace world = mentor::data::world;
using mentor::data::Image;

namespace {

struct Options {
  uint64_t seed = 0;
  std::string split = "train";
  uint64_t first = 0;
  int count = 64;
  int columns = 8;
  int resolution = 64;
  int gap = 2;
  std::string out = "world.png";
  std::string captions = "world.txt";
};

int run(const Options& o) {
  MENTOR_CHECK(o.split == "train" || o.split == "heldout",
               "--split must be train or heldout, got \"", o.split, "\"");
  MENTOR_CHECK(o.count >= 1 && o.count <= 4096, "--count ", o.count, " is outside 1..4096");
  MENTOR_CHECK(o.columns >= 1, "--columns ", o.columns, " must be at least 1");
  MENTOR_CHECK(o.gap >= 0 && o.gap <= 64, "--gap ", o.gap, " is outside 0..64");
  const world::Split split = o.split == "train" ? world::Split::train : world::Split::heldout;
  const std::vector<world::Scene> scenes = world::sample_scenes(o.seed, split, o.first, o.count);
  const std::vector<world::RenderedScene> rendered = world::render_batch(scenes, o.resolution);
  const int columns = std::min(o.columns, o.count);
  const int rows = (o.count + columns - 1) / columns;
  const int cell = o.resolution + o.gap;
  Image sheet(columns * cell + o.gap, rows * cell + o.gap, 3);
  std::fill(sheet.data.begin(), sheet.data.end(), uint8_t{40});  // dark grey between scenes
  std::ofstream text(o.captions, std::ios::trunc);
  MENTOR_CHECK(text.good(), "cannot open ", o.captions, " for writing");
  for (int i = 0; i < o.count; ++i) {
    const Image& image = rendered[static_cast<size_t>(i)].image;
    const int x0 = o.gap + (i % columns) * cell, y0 = o.gap + (i / columns) * cell;
    for (int y = 0; y < o.resolution; ++y)
      for (int x = 0; x < o.resolution; ++x)
        for (int c = 0; c < 3; ++c) sheet.at(y0 + y, x0 + x, c) = image.at(y, x, c);
    text << o.first + static_cast<uint64_t>(i) << "\t"
         << world::caption(scenes[static_cast<size_t>(i)]) << "\n";
  }
  text.close();
  MENTOR_CHECK(text.good(), "error while writing ", o.captions);
  mentor::data::save_png(sheet, o.out);
  std::cout << "render_world: " << o.count << " scenes (" << o.resolution << " px) -> " << o.out
            << ", captions -> " << o.captions << "\n";
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  Options o;
  CLI::App app{
      "render_world: a contact sheet (PNG) of the synthetic world's scenes and their captions "
      "(one line per scene: index, tab, caption)."};
  app.add_option("--seed", o.seed, "the world's seed");
  app.add_option("--split", o.split, "train or heldout");
  app.add_option("--first", o.first, "the first scene's index");
  app.add_option("--count", o.count, "scenes on the sheet (1..4096)");
  app.add_option("--columns", o.columns, "scenes per row");
  app.add_option("--resolution", o.resolution, "each scene's side in pixels (32..256)");
  app.add_option("--gap", o.gap, "pixels between scenes");
  app.add_option("--out", o.out, "the contact sheet PNG");
  app.add_option("--captions", o.captions, "the captions text file");
  return mentor::examples::parse_and_run(app, argc, argv, "render_world", [&] { return run(o); });
}
