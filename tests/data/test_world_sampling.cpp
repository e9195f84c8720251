// Scene sampling: the held-out lists follow their documented rules; 10^5 training scenes never
// hold a held-out combination and held-out scenes always do; the draws' distributions; scenes
// that depend only on (seed, split, index); batch renders identical at 1 and 2 threads.
#include <array>
#include <cmath>
#include <cstdint>
#include <set>
#include <string>
#include <tuple>
#include <vector>

#include "catch.hpp"
#include "mentor/backend/cpu/parallel.hpp"
#include "mentor/data/world/caption.hpp"
#include "mentor/data/world/render.hpp"
#include "mentor/data/world/sampling.hpp"

namespace test_world_sampling {

namespace world = mentor::data::world;
using world::BackgroundKind;
using world::Scene;
using world::Split;
using world::Subject;

namespace {

// Linear searches of the published lists (independent of the sampler's lookup tables).
bool listed_subject(const Subject& s) {
  for (const auto& c : world::kHeldOutSubjects)
    if (c.shape == s.shape && c.colour == s.colour && c.texture == s.texture) return true;
  return false;
}
bool listed_placement(const Subject& s, BackgroundKind kind) {
  for (const auto& c : world::kHeldOutPlacements)
    if (c.shape == s.shape && c.position == s.position && c.background == kind) return true;
  return false;
}
bool listed_pair(const Scene& scene) {
  if (scene.subjects.size() < 2) return false;
  for (const auto& p : world::kHeldOutPairs)
    if ((p.first == scene.subjects[0].shape && p.second == scene.subjects[1].shape) ||
        (p.second == scene.subjects[0].shape && p.first == scene.subjects[1].shape))
      return true;
  return false;
}

// Pearson's chi-square statistic of counts against equal expected counts.
double chi_square(const std::vector<int>& counts) {
  double total = 0.0;
  for (int c : counts) total += c;
  const double expected = total / double(counts.size());
  double chi = 0.0;
  for (int c : counts) chi += (c - expected) * (c - expected) / expected;
  return chi;
}

uint64_t fnv1a(uint64_t h, const std::vector<uint8_t>& bytes) {
  for (uint8_t b : bytes) h = (h ^ b) * 1099511628211ull;
  return h;
}

}  // namespace

TEST_CASE("world: the held-out lists follow their documented rules", "[data][world]") {
  // Subjects: for shape s, (s, (3s + 1) % 10, s % 4) and (s, (7s + 4) % 10, (s + 2) % 4).
  REQUIRE(world::kHeldOutSubjects.size() == 20);
  std::array<int, world::kColourCount> per_colour{};
  std::array<int, world::kTextureCount> per_texture{};
  for (int s = 0; s < world::kShapeCount; ++s) {
    const auto& a = world::kHeldOutSubjects[static_cast<size_t>(2 * s)];
    const auto& b = world::kHeldOutSubjects[static_cast<size_t>(2 * s + 1)];
    CHECK(int(a.shape) == s);
    CHECK(int(a.colour) == (3 * s + 1) % 10);
    CHECK(int(a.texture) == s % 4);
    CHECK(int(b.shape) == s);
    CHECK(int(b.colour) == (7 * s + 4) % 10);
    CHECK(int(b.texture) == (s + 2) % 4);
    ++per_colour[int(a.colour)], ++per_colour[int(b.colour)];
    ++per_texture[int(a.texture)], ++per_texture[int(b.texture)];
  }
  for (int c : per_colour) CHECK(c == 2);
  for (int t : per_texture) CHECK(t == 5);
  // Placements: (s, (s + 3j) % 9, (s + 2j) % 6), j = 0, 1, 2; one position per (shape, kind).
  REQUIRE(world::kHeldOutPlacements.size() == 30);
  for (int s = 0; s < world::kShapeCount; ++s)
    for (int j = 0; j < 3; ++j) {
      const auto& p = world::kHeldOutPlacements[static_cast<size_t>(3 * s + j)];
      CHECK(int(p.shape) == s);
      CHECK(int(p.position) == (s + 3 * j) % 9);
      CHECK(int(p.background) == (s + 2 * j) % 6);
    }
  // Pairs: every shape in exactly one.
  std::array<int, world::kShapeCount> per_shape{};
  for (const auto& p : world::kHeldOutPairs) ++per_shape[int(p.first)], ++per_shape[int(p.second)];
  for (int n : per_shape) CHECK(n == 1);
  // The lookup tables say the same as the lists.
  int subjects = 0, placements = 0;
  for (int s = 0; s < world::kShapeCount; ++s) {
    for (int c = 0; c < world::kColourCount; ++c)
      for (int t = 0; t < world::kTextureCount; ++t) {
        Subject x;
        x.shape = world::Shape(s), x.colour = world::Colour(c), x.texture = world::Texture(t);
        CHECK(world::is_heldout_subject(x) == listed_subject(x));
        subjects += world::is_heldout_subject(x);
      }
    for (int p = 0; p < world::kPositionCount; ++p)
      for (int k = 0; k < world::kBackgroundKindCount; ++k) {
        Subject x;
        x.shape = world::Shape(s), x.position = world::Position(p);
        CHECK(world::is_heldout_placement(x.shape, x.position, BackgroundKind(k)) ==
              listed_placement(x, BackgroundKind(k)));
        placements += world::is_heldout_placement(x.shape, x.position, BackgroundKind(k));
      }
  }
  CHECK(subjects == 20);
  CHECK(placements == 30);
}

TEST_CASE("world: 10^5 training scenes never hold a held-out combination", "[data][world]") {
  std::set<std::tuple<int, int, int>> subjects_seen, placements_seen;
  std::vector<int> kinds(6), colours(10), sizes(3), counts(2);
  double jitter_sum = 0.0, jitter_square = 0.0, rotation_max = 0.0;
  int jitters = 0;
  for (uint64_t i = 0; i < 100000; ++i) {
    const Scene scene = world::sample_scene(2024, Split::train, i);
    CAPTURE(i);
    REQUIRE(!scene.subjects.empty());
    REQUIRE(scene.subjects.size() <= 2);
    REQUIRE(!listed_pair(scene));
    REQUIRE(!world::has_heldout(scene));
    const world::Background& b = scene.background;
    ++kinds[int(b.kind)], ++colours[int(b.colour)], ++counts[scene.subjects.size() - 1];
    const bool two_colours = b.kind != BackgroundKind::solid && b.kind != BackgroundKind::noise;
    REQUIRE((b.second != b.colour) == two_colours);
    for (const Subject& s : scene.subjects) {
      REQUIRE(!listed_subject(s));
      REQUIRE(!listed_placement(s, b.kind));
      // A subject never takes a colour of its background.
      REQUIRE(s.colour != b.colour);
      if (two_colours) REQUIRE(s.colour != b.second);
      REQUIRE(std::abs(s.jitter_x) <= world::kMaxJitter);
      REQUIRE(std::abs(s.jitter_y) <= world::kMaxJitter);
      REQUIRE(std::abs(s.rotation_degrees) <= world::kMaxRotationDegrees);
      subjects_seen.insert({int(s.shape), int(s.colour), int(s.texture)});
      placements_seen.insert({int(s.shape), int(s.position), int(b.kind)});
      jitter_sum += s.jitter_x, jitter_square += double(s.jitter_x) * s.jitter_x, ++jitters;
      rotation_max = std::max(rotation_max, double(std::abs(s.rotation_degrees)));
    }
    ++sizes[int(scene.subjects[0].size)];
    if (scene.subjects.size() == 2) {
      const Subject &a = scene.subjects[0], &c = scene.subjects[1];
      REQUIRE(a.position != c.position);
      const double dx = a.centre_x() - a.jitter_x - (c.centre_x() - c.jitter_x);
      const double dy = a.centre_y() - a.jitter_y - (c.centre_y() - c.jitter_y);
      REQUIRE(std::hypot(dx, dy) >= 0.8 * (a.radius() + c.radius()) - 1e-6);
    }
  }
  // Everything else is seen: all 380 training subjects and all 510 training placements.
  CHECK(subjects_seen.size() == 400 - 20);
  CHECK(placements_seen.size() == 540 - 30);
  // Uniform draws (chi-square below its 10^-4 quantile: 25.7 for 5 degrees of freedom, 33.7 for
  // 9, 18.4 for 2, 15.1 for 1).
  CHECK(chi_square(kinds) < 25.7);
  CHECK(chi_square(colours) < 33.7);
  CHECK(chi_square(sizes) < 18.4);
  CHECK(chi_square(counts) < 15.1);
  // Jitter uniform in [-J, J]: mean 0, variance J^2 / 3 (5 standard errors).
  const double mean = jitter_sum / jitters, variance = jitter_square / jitters - mean * mean;
  const double j2 = double(world::kMaxJitter) * world::kMaxJitter;
  CHECK(std::abs(mean) < 5.0 * std::sqrt(j2 / 3.0 / jitters));
  CHECK(std::abs(variance - j2 / 3.0) < 5.0 * j2 * std::sqrt(4.0 / 45.0 / jitters));
  CHECK(rotation_max > 29.9);
}

TEST_CASE("world: held-out scenes always hold exactly their kind of held-out combination",
          "[data][world]") {
  std::set<std::tuple<int, int, int>> subjects_seen, placements_seen;
  std::set<std::pair<int, int>> pairs_seen;
  for (uint64_t i = 0; i < 30000; ++i) {
    const Scene scene = world::sample_scene(2024, Split::heldout, i);
    CAPTURE(i);
    REQUIRE(world::has_heldout(scene));
    const Subject& first = scene.subjects.at(0);
    const bool subject = listed_subject(first);
    const bool placement = listed_placement(first, scene.background.kind);
    const bool pair = listed_pair(scene);
    // Scene i carries kind i % 3 and nothing else held out.
    REQUIRE(subject == (i % 3 == 0));
    REQUIRE(placement == (i % 3 == 1));
    REQUIRE(pair == (i % 3 == 2));
    if (scene.subjects.size() == 2) {
      REQUIRE(!listed_subject(scene.subjects[1]));
      REQUIRE(!listed_placement(scene.subjects[1], scene.background.kind));
    }
    for (const Subject& s : scene.subjects) REQUIRE(!scene.background.uses(s.colour));
    if (subject) subjects_seen.insert({int(first.shape), int(first.colour), int(first.texture)});
    if (placement)
      placements_seen.insert({int(first.shape), int(first.position), int(scene.background.kind)});
    if (pair)
      pairs_seen.insert({std::min(int(first.shape), int(scene.subjects[1].shape)),
                         std::max(int(first.shape), int(scene.subjects[1].shape))});
  }
  CHECK(subjects_seen.size() == 20);
  CHECK(placements_seen.size() == 30);
  CHECK(pairs_seen.size() == 5);
  // A chosen kind, and one-subject scenes (kinds alternate between subject and placement).
  world::SceneOptions only_pairs;
  only_pairs.heldout_kind = world::HeldOutKind::pair;
  world::SceneOptions single;
  single.max_subjects = 1;
  for (uint64_t i = 0; i < 1000; ++i) {
    const Scene p = world::sample_scene(5, Split::heldout, i, only_pairs);
    REQUIRE(p.subjects.size() == 2);
    REQUIRE(listed_pair(p));
    const Scene s = world::sample_scene(5, Split::heldout, i, single);
    REQUIRE(s.subjects.size() == 1);
    REQUIRE(listed_subject(s.subjects[0]) == (i % 2 == 0));
    REQUIRE(listed_placement(s.subjects[0], s.background.kind) == (i % 2 == 1));
  }
}

TEST_CASE("world: a scene depends only on (seed, split, index)", "[data][world]") {
  const std::vector<Scene> batch = world::sample_scenes(9, Split::train, 100, 50);
  for (int i = 49; i >= 0; --i)  // any order, one at a time
    CHECK(world::sample_scene(9, Split::train, 100 + static_cast<uint64_t>(i)) ==
          batch[static_cast<size_t>(i)]);
  CHECK(world::sample_scenes(9, Split::train, 120, 5)[0] == batch[20]);
  int differ_seed = 0, differ_split = 0;
  for (uint64_t i = 0; i < 50; ++i) {
    differ_seed += !(world::sample_scene(10, Split::train, 100 + i) == batch[i]);
    differ_split += !(world::sample_scene(9, Split::heldout, 100 + i) == batch[i]);
  }
  CHECK(differ_seed == 50);
  CHECK(differ_split == 50);
  // The discrete draws are integer arithmetic on Philox words: the same on every machine. These
  // captions pin the sampler; a change to it changes every dataset and benchmark drawn from it.
  CHECK(world::caption(world::sample_scene(0, Split::train, 0)) ==
        "a picture of a small checkered blue star at the bottom right and a medium purple "
        "striped square in the center, against a vertical gradient from pink to orange");
  CHECK(world::caption(world::sample_scene(0, Split::train, 1)) ==
        "a vertical gradient from cyan to red with a medium striped blue triangle at the bottom "
        "right and a little plain brown hexagon at the top left");
  CHECK(world::caption(world::sample_scene(0, Split::heldout, 0)) ==
        "a picture of a little brown dotted hexagon in the center and a medium dotted green "
        "cross at the top right, against a horizontal gradient from cyan to orange");
}

TEST_CASE("world: batch renders are identical at 1 and 2 threads", "[data][world]") {
  const std::vector<Scene> scenes = world::sample_scenes(31, Split::train, 0, 96);
  const int threads = mentor::cpu::num_threads();
  std::vector<uint64_t> hashes;
  for (int t : {1, 2}) {
    mentor::cpu::set_num_threads(t);
    const std::vector<world::RenderedScene> out = world::render_batch(scenes, 64);
    REQUIRE(out.size() == scenes.size());
    uint64_t h = 1469598103934665603ull;
    for (const auto& r : out) h = fnv1a(h, r.image.data);
    hashes.push_back(h);
    for (size_t i = 0; i < scenes.size(); i += 17) {
      CHECK(out[i].scene == scenes[i]);
      CHECK(out[i].image.data == world::render(scenes[i], 64).image.data);
    }
  }
  mentor::cpu::set_num_threads(threads);
  CHECK(hashes[0] == hashes[1]);
}

TEST_CASE("world: sampling errors name the bad option", "[data][world]") {
  world::SceneOptions options;
  options.min_subjects = 2, options.max_subjects = 1;
  REQUIRE_THROWS_WITH(world::sample_scene(0, Split::train, 0, options),
                      Catch::Contains("min 2, max 1"));
  options.min_subjects = 0, options.max_subjects = 3;
  REQUIRE_THROWS_WITH(world::sample_scene(0, Split::train, 0, options), Catch::Contains("max 3"));
  options.max_subjects = 1;
  options.heldout_kind = world::HeldOutKind::pair;
  REQUIRE_THROWS_WITH(world::sample_scene(0, Split::heldout, 0, options),
                      Catch::Contains("pairs need two subjects"));
  options.max_subjects = 0;
  REQUIRE_THROWS_WITH(world::sample_scene(0, Split::heldout, 0, options),
                      Catch::Contains("needs a subject"));
  REQUIRE_THROWS_WITH(world::sample_scene(0, Split::train, uint64_t{1} << 44),
                      Catch::Contains("index 17592186044416"));
  REQUIRE_THROWS_WITH(world::Draws(0, 256, 0), Catch::Contains("stream 256"));
  REQUIRE_THROWS_WITH(world::sample_scenes(0, Split::train, 0, -1), Catch::Contains("count -1"));
  // Zero subjects are allowed in training (a background alone).
  options = {};
  options.min_subjects = options.max_subjects = 0;
  CHECK(world::sample_scene(0, Split::train, 0, options).subjects.empty());
}

}  // namespace test_world_sampling
