// MENTOR's six tasks on the world: every training batch of every task (both stages, through the
// loader) is scanned for held-out combinations in every image it shows; each task's prompt is
// upstream's template over the right caption and its images are what the template says (checked
// against the renderer); the stage mixes follow their weights and the ablations remove their task;
// samples depend only on their coordinates (identical from 2 threads and across loader workers);
// the config is strict JSON.
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <memory>
#include <set>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "catch.hpp"
#include "mentor/data/loader.hpp"
#include "mentor/data/world/world.hpp"

namespace test_world_tasks {

namespace world = mentor::data::world;
using mentor::data::Image;
using world::Scene;
using world::Split;
using world::Task;
using world::TaskConfig;
using world::TaskSample;

namespace {

bool shows_heldout(const TaskSample& s) {
  for (const Scene& scene : s.shown)
    if (world::has_heldout(scene)) return true;
  return world::has_heldout(s.target_scene);
}

std::set<std::string> words_of(const std::string& text) {
  std::set<std::string> out;
  std::string word;
  for (char c : text + " ") {
    if (std::isalpha(static_cast<unsigned char>(c)) || c == '-') {
      word += c;
    } else if (!word.empty()) {
      out.insert(word);
      word.clear();
    }
  }
  return out;
}

size_t markers(const std::string& prompt) {
  size_t n = 0;
  for (size_t at = prompt.find(world::kImageMarker); at != std::string::npos;
       at = prompt.find(world::kImageMarker, at + 1))
    ++n;
  return n;
}

// Pixels where two images differ.
int64_t differing(const Image& a, const Image& b) {
  REQUIRE(a.data.size() == b.data.size());
  int64_t n = 0;
  for (size_t i = 0; i < a.data.size(); i += 3)
    n += a.data[i] != b.data[i] || a.data[i + 1] != b.data[i + 1] || a.data[i + 2] != b.data[i + 2];
  return n;
}

Image background_alone(const world::Background& bg, int64_t resolution) {
  Scene empty;
  empty.background = bg;
  return world::render(empty, resolution).image;
}

}  // namespace

TEST_CASE("world tasks: no training batch of any task shows a held-out combination",
          "[data][world][tasks]") {
  const TaskConfig config;
  // Every task alone, then both stages' mixes through the loader, batch by batch.
  for (int t = 0; t < world::kTaskCount; ++t)
    for (uint64_t i = 0; i < 400; ++i) {
      const TaskSample s = world::make_task_sample(config, 5, Task(t), Split::train, i);
      INFO(world::name(Task(t)) << " sample " << i);
      REQUIRE(!shows_heldout(s));
    }
  for (int stage = 1; stage <= 2; ++stage) {
    auto stream = std::make_shared<world::TaskStream>(config, 11, stage, Split::train, 1600);
    mentor::data::LoaderOptions options;
    options.batch_size = 16;
    options.num_workers = 2;
    mentor::data::DataLoader<TaskSample, std::vector<TaskSample>> loader(
        stream, options, [](std::vector<TaskSample>&& b) { return std::move(b); });
    std::set<int> tasks_seen;
    for (int64_t b = 0; b < stream->size() / 16; ++b) {
      const std::vector<TaskSample> batch = loader.next();
      for (const TaskSample& s : batch) {
        INFO("stage " << stage << " batch " << b << " task " << world::name(s.task));
        REQUIRE(world::stage_of(s.task) <= stage);
        REQUIRE(!shows_heldout(s));
        tasks_seen.insert(static_cast<int>(s.task));
      }
    }
    CHECK(tasks_seen.size() == (stage == 1 ? 3u : 5u));
  }
}

TEST_CASE("world tasks: the held-out split of a task shows its held-out combination",
          "[data][world][tasks]") {
  const TaskConfig config;
  for (const Task task : {Task::subject_driven, Task::multi_subject, Task::text_to_image})
    for (uint64_t i = 0; i < 60; ++i) {
      const TaskSample s = world::make_task_sample(config, 2, task, Split::heldout, i);
      INFO(world::name(task) << " held-out sample " << i);
      CHECK(world::has_heldout(s.target_scene));
    }
}

TEST_CASE("world tasks: each task's prompt and images are what upstream's template says",
          "[data][world][tasks]") {
  TaskConfig config;
  const int64_t R = config.resolution;
  int image_only = 0, reconstructions = 0;
  for (uint64_t i = 0; i < 300; ++i) {
    INFO("sample " << i);
    // reconstruction: the scene in, the scene out.
    {
      const TaskSample s =
          world::make_task_sample(config, 1, Task::reconstruction, Split::train, i);
      const world::RenderedScene truth = world::render(s.target_scene, R);
      REQUIRE(s.references.size() == 1);
      CHECK(s.references[0].data == truth.image.data);
      CHECK(s.target.data == truth.image.data);
      ++reconstructions;
      if (s.image_only) {
        ++image_only;
        CHECK(s.prompt == "<image>\n");
      } else {
        CHECK(s.prompt == "The image is <image>\n" + world::caption(s.target_scene));
      }
    }
    // segmentation: the scene in, one subject alone on black out.
    {
      const TaskSample s = world::make_task_sample(config, 1, Task::segmentation, Split::train, i);
      REQUIRE(s.target_scene.subjects.size() == 1);
      REQUIRE(s.target_on_black);
      const world::Subject& subject = s.target_scene.subjects[0];
      CHECK(s.prompt == "The " + world::subject_name(subject) + " in <image>.");
      REQUIRE(s.shown.size() == 1);
      CHECK(s.references[0].data == world::render(s.shown[0], R).image.data);
      // Exactly render_on_black where nothing covers the subject; black wherever it is absent.
      const Image alone = world::render_on_black(subject, R);
      const world::Mask whole = world::shape_mask(subject, R);
      const bool last = s.shown[0].subjects.back() == subject;
      if (last) CHECK(s.target.data == alone.data);
      for (int y = 0; y < R; ++y)
        for (int x = 0; x < R; ++x)
          for (int c = 0; c < 3; ++c) {
            if (whole.at(y, x) == 0.0f) REQUIRE(s.target.at(y, x, c) == 0);
            REQUIRE(s.target.at(y, x, c) <= alone.at(y, x, c));
          }
    }
    // text-to-image: the caption alone.
    {
      const TaskSample s = world::make_task_sample(config, 1, Task::text_to_image, Split::train, i);
      CHECK(s.references.empty());
      CHECK(s.prompt == world::caption(s.target_scene));
      CHECK(s.target.data == world::render(s.target_scene, R).image.data);
    }
    // recovery: the subject, warped, on another background -> the original scene.
    {
      const TaskSample s = world::make_task_sample(config, 1, Task::recovery, Split::train, i);
      REQUIRE(s.references.size() == 1);
      REQUIRE(s.shown.size() == 2);
      const world::Subject& pasted = s.shown[1].subjects.at(0);
      CHECK(s.prompt == "The " + std::string(world::name(pasted.shape)) + " in <image>.\n" +
                            world::caption(s.target_scene));
      CHECK(s.target.data == world::render(s.target_scene, R).image.data);
      // The subject is one of the scene's; the reference is the new background except where the
      // pasted subject lies (at most the whole image, at least a few pixels).
      bool found = false;
      for (const auto& subject : s.target_scene.subjects)
        found = found || (subject.shape == pasted.shape && subject.colour == pasted.colour &&
                          subject.texture == pasted.texture);
      CHECK(found);
      CHECK(!s.shown[1].background.uses(pasted.colour));
      const int64_t changed =
          differing(s.references[0], background_alone(s.shown[1].background, R));
      CHECK(changed >= 4);
      CHECK(changed < R * R);
    }
    // subject-driven and multi-subject: references on plain backgrounds; captions without the
    // referenced subjects' colour and texture.
    for (const Task task : {Task::subject_driven, Task::multi_subject}) {
      const TaskSample s = world::make_task_sample(config, 1, task, Split::train, i);
      const size_t n = task == Task::subject_driven ? 1 : 2;
      REQUIRE(s.target_scene.subjects.size() == n);
      REQUIRE(s.references.size() == n);
      REQUIRE(s.shown.size() == n + 1);
      CHECK(markers(s.prompt) == n);
      CHECK(s.target.data == world::render(s.target_scene, R).image.data);
      std::string lines;
      for (size_t k = 0; k < n; ++k) {
        const world::Subject& subject = s.target_scene.subjects[k];
        const Scene& ref = s.shown[k + 1];
        CHECK(ref.background.kind == world::BackgroundKind::solid);
        CHECK(ref.background.colour != subject.colour);
        CHECK(s.references[k].data ==
              world::subject_reference(subject, ref.background.colour, R).data);
        lines += "The " + std::string(world::name(subject.shape)) + " in <image>.\n";
      }
      if (n == 2) CHECK(s.target_scene.subjects[0].shape != s.target_scene.subjects[1].shape);
      REQUIRE(s.prompt.rfind(lines, 0) == 0);
      const std::set<std::string> words = words_of(s.prompt.substr(lines.size()));
      for (const auto& subject : s.target_scene.subjects) {
        CHECK(words.count(std::string(world::name(subject.colour))) == 0);
        CHECK(words.count(std::string(world::name(subject.shape))) == 1);
      }
      CHECK(s.prompt.substr(lines.size()) ==
            world::caption(s.target_scene, s.target_scene.phrasing, n == 1 ? 1u : 3u));
    }
  }
  // Upstream's image-only rate (0.1) over 300 reconstructions: within 4 standard deviations.
  const double rate = double(image_only) / reconstructions;
  CHECK(std::abs(rate - config.image_only_rate) <
        4 * std::sqrt(config.image_only_rate * (1 - config.image_only_rate) / reconstructions));
}

TEST_CASE("world tasks: recovery's warp is upstream's chain of maps", "[data][world][tasks]") {
  using world::detail::Homography;
  // four_points maps the four points exactly, and inverse() undoes the map.
  const std::array<std::array<double, 2>, 4> from = {{{-3, -2}, {3, -2}, {3, 2}, {-3, 2}}};
  const std::array<std::array<double, 2>, 4> to = {
      {{-2.5, -1.6}, {2.9, -1.9}, {2.4, 1.7}, {-2.8, 1.5}}};
  const Homography h = Homography::four_points(from, to);
  for (size_t i = 0; i < 4; ++i) {
    const auto q = h.apply(from[i][0], from[i][1]);
    CHECK(std::abs(q[0] - to[i][0]) < 1e-9);
    CHECK(std::abs(q[1] - to[i][1]) < 1e-9);
    const auto back = h.inverse().apply(q[0], q[1]);
    CHECK(std::abs(back[0] - from[i][0]) < 1e-9);
    CHECK(std::abs(back[1] - from[i][1]) < 1e-9);
  }
  // Without warp and at full scale a solid subject is pasted at the largest size that fits: its
  // box spans the whole image on its longer side, and its colour is the palette's inside.
  TaskConfig config;
  config.recovery.min_scale = 1.0;
  config.recovery.warp_rate = 0.0;
  for (uint64_t i = 0; i < 40; ++i) {
    const TaskSample s = world::make_task_sample(config, 3, Task::recovery, Split::train, i);
    const world::Subject& pasted = s.shown[1].subjects[0];
    const Image bg = background_alone(s.shown[1].background, config.resolution);
    int x0 = 1 << 30, x1 = -1, y0 = 1 << 30, y1 = -1;
    for (int y = 0; y < bg.height; ++y)
      for (int x = 0; x < bg.width; ++x)
        for (int c = 0; c < 3; ++c)
          if (std::abs(int(s.references[0].at(y, x, c)) - int(bg.at(y, x, c))) > 24)
            x0 = std::min(x0, x), x1 = std::max(x1, x), y0 = std::min(y0, y), y1 = std::max(y1, y);
    INFO("sample " << i << ": the pasted " << world::name(pasted.shape) << " spans [" << x0 << ", "
                   << x1 << "] x [" << y0 << ", " << y1 << "]");
    REQUIRE(x1 >= 0);
    CHECK(std::max(x1 - x0, y1 - y0) + 1 >= config.resolution - 8);  // faint tips aside
  }
}

TEST_CASE("world tasks: the stage mixes follow their weights and the ablations drop their task",
          "[data][world][tasks]") {
  const auto fractions = [](const TaskConfig& config, int stage) {
    const world::TaskStream stream(config, 9, stage, Split::train, 8000);
    std::array<double, world::kTaskCount> f{};
    for (int64_t i = 0; i < stream.size(); ++i) f[static_cast<size_t>(stream.task_of(i))] += 1;
    for (double& v : f) v /= double(stream.size());
    return f;
  };
  const auto expect = [&](const TaskConfig& config, int stage) {
    const auto w = config.weights(stage);
    double total = 0;
    for (double v : w) total += v;
    const auto f = fractions(config, stage);
    for (int t = 0; t < world::kTaskCount; ++t) {
      const double p = w[static_cast<size_t>(t)] / total;
      INFO("stage " << stage << " " << world::name(Task(t)) << ": weight share " << p << ", drawn "
                    << f[static_cast<size_t>(t)]);
      if (p == 0) {
        CHECK(f[static_cast<size_t>(t)] == 0);
      } else {
        CHECK(std::abs(f[static_cast<size_t>(t)] - p) < 5 * std::sqrt(p * (1 - p) / 8000));
      }
    }
  };
  TaskConfig config;
  expect(config, 1);
  expect(config, 2);
  config.no_segmentation = true;
  expect(config, 1);
  CHECK(config.weights(1)[static_cast<size_t>(Task::segmentation)] == 0);
  config.no_recovery = true;
  expect(config, 2);
  CHECK(config.weights(2)[static_cast<size_t>(Task::recovery)] == 0);
  config.no_stage1 = true;
  CHECK_THROWS_WITH(world::TaskStream(config, 0, 1), Catch::Contains("no_stage1"));
  CHECK_NOTHROW(world::TaskStream(config, 0, 2));
  TaskConfig empty;
  empty.stage1 = {0, 1, 0, 0, 0, 0};
  empty.no_segmentation = true;
  CHECK_THROWS_WITH(empty.validate(), Catch::Contains("stage 1 has no task left"));
}

TEST_CASE("world tasks: a sample depends only on its coordinates", "[data][world][tasks]") {
  const TaskConfig config;
  const world::TaskStream stream(config, 21, 2, Split::train, 64);
  std::vector<TaskSample> first(64), second(64);
  for (int64_t i = 0; i < 64; ++i) first[static_cast<size_t>(i)] = stream.get(i);
  // Again, in reverse order, from two threads.
  std::thread a([&] {
    for (int64_t i = 63; i >= 0; i -= 2) second[static_cast<size_t>(i)] = stream.get(i);
  });
  std::thread b([&] {
    for (int64_t i = 62; i >= 0; i -= 2) second[static_cast<size_t>(i)] = stream.get(i);
  });
  a.join();
  b.join();
  for (size_t i = 0; i < 64; ++i) {
    INFO("sample " << i);
    CHECK(first[i].task == second[i].task);
    CHECK(first[i].prompt == second[i].prompt);
    CHECK(first[i].target.data == second[i].target.data);
    REQUIRE(first[i].references.size() == second[i].references.size());
    for (size_t r = 0; r < first[i].references.size(); ++r)
      CHECK(first[i].references[r].data == second[i].references[r].data);
  }
  // Another seed or stage gives other samples.
  const world::TaskStream other(config, 22, 2, Split::train, 64);
  int same = 0;
  for (int64_t i = 0; i < 64; ++i)
    same += other.get(i).target.data == first[static_cast<size_t>(i)].target.data;
  CHECK(same == 0);
}

TEST_CASE("world tasks: the config is strict JSON", "[data][world][tasks]") {
  TaskConfig config;
  config.resolution = 32;
  config.stage2 = {0, 0, 1, 2, 3, 4};
  config.no_recovery = true;
  config.recovery.max_rotation = 10;
  const TaskConfig back = TaskConfig::from_json(config.to_json());
  CHECK(back.to_json() == config.to_json());
  CHECK(back.stage2 == config.stage2);
  CHECK(back.recovery.max_rotation == 10);
  CHECK_THROWS_WITH(
      TaskConfig::from_json(nlohmann::json::parse(R"({"stage1": {"reconstructon": 1}})")),
      Catch::Contains("reconstructon") && Catch::Contains("TaskConfig.stage1"));
  CHECK_THROWS_WITH(
      TaskConfig::from_json(nlohmann::json::parse(R"({"ablation": {"no_seg": true}})")),
      Catch::Contains("no_seg"));
  CHECK_THROWS_WITH(TaskConfig::from_json(nlohmann::json::parse(R"({"image_only_rate": 1.5})")),
                    Catch::Contains("image_only_rate"));
  CHECK_THROWS_WITH(TaskConfig::from_json(nlohmann::json::parse(R"({"resolution": 16})")),
                    Catch::Contains("resolution 16"));
  CHECK_THROWS_WITH(
      TaskConfig::from_json(nlohmann::json::parse(R"({"recovery": {"min_scale": 0}})")),
      Catch::Contains("min_scale"));
}

}  // namespace test_world_tasks
