// evaluate: SynthBench (data/world/synthbench.hpp, docs/synthbench.md), the synthetic world's
// deterministic stand-in for DreamBench++: held-out subjects x prompts in four categories, scored
// from the pixels against the renderer's truth.
//
//   evaluate --write-benchmark bench/              references, prompts and truths for a generator
//   evaluate --images generated/ --out synthbench.json --markdown synthbench.md
//   evaluate --truth                               the rendered truths themselves (a sanity run)
//
// --write-benchmark DIR writes DIR/prompts.jsonl (one line per item: id, category, prompt, the
// reference file names and the truth's, relative to DIR), DIR/references/<id>_<k>.png,
// DIR/truth/<id>.png, and DIR/requests.jsonl: the items as examples/generate's --requests (line i:
// item i's prompt and references, seed 0), so that a checkpoint is scored with
//   evaluate --write-benchmark bench/
//   generate --checkpoint CKPT --requests bench/requests.jsonl --out generated/
//   evaluate --images generated/
// --images DIR scores, for item i, DIR/<id>.png, or else generate's name for request i
// (DIR/<iiii>-seed0.png); RGB or grey, as the PNG reader converts it, at the benchmark's
// resolution. The same --seed, --resolution and
// --per-category give the same benchmark, and the same images the same scores, byte for byte.
#include <CLI/CLI.hpp>
#include <cstdint>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "mentor/core/error.hpp"
#include "mentor/data/image.hpp"
#include "mentor/data/world/synthbench.hpp"

#include "cli.hpp"

namespace fs = std::filesystem;
namespace world = mentor::data::world;
using mentor::data::Image;

namespace {

struct Options {
  uint64_t seed = 0;
  int64_t resolution = 64;
  int per_category = world::kSynthBenchPerCategory;
  std::string images;
  bool truth = false;
  std::string write_benchmark;
  std::string out;
  std::string markdown;
};

void write_text(const fs::path& path, const std::string& text) {
  std::ofstream file(path, std::ios::binary | std::ios::trunc);
  MENTOR_CHECK(file.good(), "cannot open ", path.string(), " for writing");
  file << text;
  file.close();
  MENTOR_CHECK(file.good(), "error while writing ", path.string());
}

std::string reference_name(const world::SynthBenchItem& item, size_t k) {
  return "references/" + item.id + "_" + std::to_string(k) + ".png";
}

void write_benchmark(const std::vector<world::SynthBenchItem>& items, const fs::path& dir) {
  fs::create_directories(dir / "references");
  fs::create_directories(dir / "truth");
  std::string lines, requests;
  for (const world::SynthBenchItem& item : items) {
    nlohmann::json references = nlohmann::json::array();
    for (size_t k = 0; k < item.references.size(); ++k) {
      mentor::data::save_png(item.references[k], dir / reference_name(item, k));
      references.push_back(reference_name(item, k));
    }
    const std::string truth = "truth/" + item.id + ".png";
    mentor::data::save_png(world::render(item.truth, item.resolution).image, dir / truth);
    const nlohmann::json line = {{"id", item.id},
                                 {"category", std::string(world::name(item.category))},
                                 {"prompt", item.prompt},
                                 {"references", references},
                                 {"truth", truth}};
    lines += line.dump() + "\n";
    requests +=
        nlohmann::json{{"prompt", item.prompt}, {"images", references}, {"seed", 0}}.dump() + "\n";
  }
  write_text(dir / "prompts.jsonl", lines);
  write_text(dir / "requests.jsonl", requests);
}

// Where the images come from. A checkpoint-driven mode (generate, then score) is one more
// callback here: the model's generation of item.prompt with item.references, at item.resolution.
world::SynthBenchGenerate image_source(const Options& o,
                                       const std::vector<world::SynthBenchItem>& items) {
  if (o.truth)
    return [](const world::SynthBenchItem& item) {
      return world::render(item.truth, item.resolution).image;
    };
  const fs::path dir = o.images;
  auto index = std::make_shared<std::map<std::string, size_t>>();
  for (const world::SynthBenchItem& item : items) index->emplace(item.id, index->size());
  return [dir, index](const world::SynthBenchItem& item) {
    fs::path path = dir / (item.id + ".png");
    char generated[64];  // examples/generate's file name for request i, seed 0
    std::snprintf(generated, sizeof generated, "%04zu-seed0.png", index->at(item.id));
    if (!fs::exists(path)) path = dir / generated;
    MENTOR_CHECK(fs::exists(path), "no image for item ", item.id, ": neither ",
                 (dir / (item.id + ".png")).string(), " nor ", path.string(),
                 " exists (--write-benchmark lists the items)");
    Image image = mentor::data::load_image(path, 3);
    MENTOR_CHECK(image.width == item.resolution && image.height == item.resolution, path.string(),
                 " is ", image.width, "x", image.height, ", the benchmark is ", item.resolution,
                 " px (pass --resolution ", image.width, " if it was generated at that size)");
    return image;
  };
}

int run(const Options& o) {
  MENTOR_CHECK(!(o.truth && !o.images.empty()), "--truth and --images are exclusive");
  MENTOR_CHECK(o.truth || !o.images.empty() || !o.write_benchmark.empty(),
               "nothing to do: give --images DIR, --truth or --write-benchmark DIR");
  const std::vector<world::SynthBenchItem> items =
      world::synthbench_items(o.seed, o.resolution, o.per_category);
  if (!o.write_benchmark.empty()) {
    write_benchmark(items, o.write_benchmark);
    std::cout << "evaluate: " << items.size() << " items (" << o.resolution << " px, seed "
              << o.seed << ") -> " << o.write_benchmark << "/prompts.jsonl\n";
  }
  if (!o.truth && o.images.empty()) return 0;
  const world::SynthBenchReport report = world::evaluate_synthbench(items, image_source(o, items));
  nlohmann::json j = world::to_json(report);
  j["benchmark"] = {{"seed", o.seed},
                    {"resolution", o.resolution},
                    {"per_category", o.per_category},
                    {"images", o.truth ? std::string("rendered truth") : o.images}};
  if (!o.out.empty()) write_text(o.out, j.dump(2) + "\n");
  const std::string md = world::to_markdown(
      report, "SynthBench (seed " + std::to_string(o.seed) + ", " + std::to_string(o.resolution) +
                  " px, " + std::to_string(items.size()) + " items" +
                  (o.truth ? ", rendered truth" : "") + ")");
  if (!o.markdown.empty()) write_text(o.markdown, md);
  std::cout << md;
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  Options o;
  CLI::App app{
      "evaluate: SynthBench, subject-driven generation scored from the pixels against the "
      "synthetic world's truth (CP, PF, CP·PF, CP/PF per category and overall)."};
  app.add_option("--images", o.images, "a directory of generated PNGs named <item id>.png");
  app.add_flag("--truth", o.truth, "score the rendered truths themselves (a sanity run)");
  app.add_option("--write-benchmark", o.write_benchmark,
                 "write references, prompts (prompts.jsonl) and truths into this directory");
  app.add_option("--out", o.out, "the report as JSON");
  app.add_option("--markdown", o.markdown, "the report as a Markdown table");
  app.add_option("--seed", o.seed, "the benchmark's seed");
  app.add_option("--resolution", o.resolution, "the images' side in pixels (32..256)");
  app.add_option("--per-category", o.per_category, "items in each of the four categories");
  return mentor::examples::parse_and_run(app, argc, argv, "evaluate", [&] { return run(o); });
}
