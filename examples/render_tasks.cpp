// render_tasks: one contact sheet per MENTOR training task on the synthetic world (PNG), with the
// prompts of its rows (text).
//
//   render_tasks --seed 0 --rows 6 --resolution 64 --out-dir docs/images/tasks
//
// Writes <task>.png and <task>.txt for each of the six tasks. Row i of a sheet is sample i of the
// task (world::make_task_sample, Split::train): its references from the left (none for
// text-to-image, two for multi-subject), a gap, then the target. <task>.txt has one line per row:
// "row<TAB>prompt", the prompt's line breaks written as \n. The same options write the same bytes
// on every run.
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
#include "mentor/data/world/tasks.hpp"

#include "cli.hpp"

namespace world = mentor::data::world;
using mentor::data::Image;

namespace {

struct Options {
  uint64_t seed = 0;
  int rows = 6;
  int resolution = 64;
  int gap = 2;
  std::string out_dir = "tasks";
};

void paste(Image& sheet, const Image& image, int x0, int y0) {
  for (int y = 0; y < image.height; ++y)
    for (int x = 0; x < image.width; ++x)
      for (int c = 0; c < 3; ++c) sheet.at(y0 + y, x0 + x, c) = image.at(y, x, c);
}

std::string one_line(const std::string& prompt) {
  std::string out;
  for (char ch : prompt) out += ch == '\n' ? std::string("\\n") : std::string(1, ch);
  return out;
}

int run(const Options& o) {
  MENTOR_CHECK(o.rows >= 1 && o.rows <= 256, "--rows ", o.rows, " is outside 1..256");
  MENTOR_CHECK(o.gap >= 0 && o.gap <= 64, "--gap ", o.gap, " is outside 0..64");
  world::TaskConfig config;
  config.resolution = o.resolution;
  config.validate();
  std::filesystem::create_directories(o.out_dir);
  const int R = o.resolution, cell = R + o.gap;
  for (int t = 0; t < world::kTaskCount; ++t) {
    const auto task = world::Task(t);
    const std::string name(world::name(task));
    std::vector<world::TaskSample> samples;
    size_t columns = 0;  // reference columns: 0 (text-to-image), 1, or 2 (multi-subject)
    for (int row = 0; row < o.rows; ++row) {
      samples.push_back(world::make_task_sample(config, o.seed, task, world::Split::train,
                                                static_cast<uint64_t>(row)));
      columns = std::max(columns, samples.back().references.size());
    }
    // The reference columns, a wider gap (the task's arrow), the target.
    const int target_x = o.gap + static_cast<int>(columns) * cell + (columns ? 3 * o.gap : 0);
    Image sheet(target_x + cell, o.rows * cell + o.gap, 3);
    std::fill(sheet.data.begin(), sheet.data.end(), uint8_t{40});
    const std::string text_path = o.out_dir + "/" + name + ".txt";
    std::ofstream text(text_path, std::ios::trunc);
    MENTOR_CHECK(text.good(), "cannot open ", text_path, " for writing");
    for (int row = 0; row < o.rows; ++row) {
      const world::TaskSample& s = samples[static_cast<size_t>(row)];
      const int y0 = o.gap + row * cell;
      for (size_t r = 0; r < s.references.size(); ++r)
        paste(sheet, s.references[r], o.gap + static_cast<int>(r) * cell, y0);
      paste(sheet, s.target, target_x, y0);
      text << row << "\t" << one_line(s.prompt) << "\n";
    }
    text.close();
    MENTOR_CHECK(text.good(), "error while writing ", text_path);
    mentor::data::save_png(sheet, o.out_dir + "/" + name + ".png");
  }
  std::cout << "render_tasks: " << world::kTaskCount << " sheets of " << o.rows << " samples (" << R
            << " px) -> " << o.out_dir << "\n";
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  Options o;
  CLI::App app{
      "render_tasks: a contact sheet (PNG) per MENTOR training task on the synthetic world, each "
      "row the references then the target, and the rows' prompts (text)."};
  app.add_option("--seed", o.seed, "the world's seed");
  app.add_option("--rows", o.rows, "samples per sheet (1..256)");
  app.add_option("--resolution", o.resolution, "each image's side in pixels (32..256)");
  app.add_option("--gap", o.gap, "pixels between images");
  app.add_option("--out-dir", o.out_dir, "the folder for <task>.png and <task>.txt");
  return mentor::examples::parse_and_run(app, argc, argv, "render_tasks", [&] { return run(o); });
}
