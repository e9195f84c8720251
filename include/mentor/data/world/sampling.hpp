#pragma once
// Scenes drawn from a seed, with combinations held out of training.
//
//   sample_scene(seed, split, index)   scene `index` of a split; it depends only on (seed, split,
//                                      index), never on which scenes were drawn before or where
//   Draws(seed, stream, index)         the counter-based stream behind it (Philox4x32-10, key =
//                                      seed, counter = stream << 56 | index << 12 | block), for
//                                      other users of the world that need their own draws per
//                                      item: streams 1 and 2 are the scene splits, take others
//
// Held out (the same lists for every seed; tests/data/test_world_sampling.cpp checks them):
//   kHeldOutSubjects    20 of the 400 shape x colour x texture subjects (5%): for each shape s
//                       (in enum order) the subjects (s, colour (3s + 1) % 10, texture s % 4) and
//                       (s, colour (7s + 4) % 10, texture (s + 2) % 4); every shape and colour is
//                       held out twice, every texture five times, so each single attribute is
//                       seen in training and only the combination is new
//   kHeldOutPlacements  30 of the 540 shape x position x background-kind placements (5.6%): for
//                       each shape s, (s, position (s + 3j) % 9, kind (s + 2j) % 6), j = 0, 1, 2
//   kHeldOutPairs       5 unordered pairs of shapes that never share a training scene
// Split::train never draws any of them. Split::heldout draws scenes that carry exactly one kind
// of held-out combination (HeldOutKind; by default scene i carries kind i % 3, or i % 2 when a
// scene holds one subject at most) and are training-like in everything else.
//
// How a scene is drawn: background kind (uniform over 6), colour (uniform over 10), a second
// colour (uniform over the other 9) for gradients, stripes and checks; then each subject uniformly
// among the allowed (shape, colour, texture) subjects whose colour the background does not use;
// size uniform; position uniform among the allowed places (the second subject: another place whose
// grid centre is at least kMinSeparation x (r1 + r2) away, so that they overlap little); jitter and
// rotation uniform in their ranges. The caption's phrasing is the scene's first draw.
#include <algorithm>
#include <array>
#include <cmath>
#include <cstdint>
#include <optional>
#include <utility>
#include <vector>

#include "mentor/core/error.hpp"
#include "mentor/core/random.hpp"
#include "mentor/data/world/attributes.hpp"

namespace mentor::data::world {

enum class Split : uint8_t { train, heldout };
enum class HeldOutKind : uint8_t {
  subject,    // subject 0 is a held-out subject
  placement,  // subject 0's (shape, position, background kind) is a held-out placement
  pair        // two subjects whose shapes are a held-out pair
};

struct SubjectCombo {
  Shape shape;
  Colour colour;
  Texture texture;
};
struct PlacementCombo {
  Shape shape;
  Position position;
  BackgroundKind background;
};
struct ShapePair {
  Shape first;
  Shape second;
};

inline constexpr std::array<SubjectCombo, 20> kHeldOutSubjects = {{
    {Shape::circle, Colour::orange, Texture::solid},
    {Shape::circle, Colour::cyan, Texture::checkered},
    {Shape::square, Colour::cyan, Texture::striped},
    {Shape::square, Colour::orange, Texture::dotted},
    {Shape::triangle, Colour::pink, Texture::checkered},
    {Shape::triangle, Colour::white, Texture::solid},
    {Shape::star, Colour::red, Texture::dotted},
    {Shape::star, Colour::blue, Texture::striped},
    {Shape::heart, Colour::green, Texture::solid},
    {Shape::heart, Colour::yellow, Texture::checkered},
    {Shape::hexagon, Colour::purple, Texture::striped},
    {Shape::hexagon, Colour::brown, Texture::dotted},
    {Shape::cross, Colour::brown, Texture::checkered},
    {Shape::cross, Colour::purple, Texture::solid},
    {Shape::diamond, Colour::yellow, Texture::dotted},
    {Shape::diamond, Colour::green, Texture::striped},
    {Shape::crescent, Colour::blue, Texture::solid},
    {Shape::crescent, Colour::red, Texture::checkered},
    {Shape::ring, Colour::white, Texture::striped},
    {Shape::ring, Colour::pink, Texture::dotted},
}};

inline constexpr std::array<PlacementCombo, 30> kHeldOutPlacements = {{
    {Shape::circle, Position::top_left, BackgroundKind::solid},
    {Shape::circle, Position::left, BackgroundKind::horizontal_gradient},
    {Shape::circle, Position::bottom_left, BackgroundKind::checks},
    {Shape::square, Position::top, BackgroundKind::vertical_gradient},
    {Shape::square, Position::center, BackgroundKind::stripes},
    {Shape::square, Position::bottom, BackgroundKind::noise},
    {Shape::triangle, Position::top_right, BackgroundKind::horizontal_gradient},
    {Shape::triangle, Position::right, BackgroundKind::checks},
    {Shape::triangle, Position::bottom_right, BackgroundKind::solid},
    {Shape::star, Position::left, BackgroundKind::stripes},
    {Shape::star, Position::bottom_left, BackgroundKind::noise},
    {Shape::star, Position::top_left, BackgroundKind::vertical_gradient},
    {Shape::heart, Position::center, BackgroundKind::checks},
    {Shape::heart, Position::bottom, BackgroundKind::solid},
    {Shape::heart, Position::top, BackgroundKind::horizontal_gradient},
    {Shape::hexagon, Position::right, BackgroundKind::noise},
    {Shape::hexagon, Position::bottom_right, BackgroundKind::vertical_gradient},
    {Shape::hexagon, Position::top_right, BackgroundKind::stripes},
    {Shape::cross, Position::bottom_left, BackgroundKind::solid},
    {Shape::cross, Position::top_left, BackgroundKind::horizontal_gradient},
    {Shape::cross, Position::left, BackgroundKind::checks},
    {Shape::diamond, Position::bottom, BackgroundKind::vertical_gradient},
    {Shape::diamond, Position::top, BackgroundKind::stripes},
    {Shape::diamond, Position::center, BackgroundKind::noise},
    {Shape::crescent, Position::bottom_right, BackgroundKind::horizontal_gradient},
    {Shape::crescent, Position::top_right, BackgroundKind::checks},
    {Shape::crescent, Position::right, BackgroundKind::solid},
    {Shape::ring, Position::top_left, BackgroundKind::stripes},
    {Shape::ring, Position::left, BackgroundKind::noise},
    {Shape::ring, Position::bottom_left, BackgroundKind::vertical_gradient},
}};

inline constexpr std::array<ShapePair, 5> kHeldOutPairs = {{
    {Shape::circle, Shape::heart},
    {Shape::square, Shape::crescent},
    {Shape::triangle, Shape::ring},
    {Shape::star, Shape::cross},
    {Shape::hexagon, Shape::diamond},
}};

// Grid centres of two subjects are at least this many times the sum of their radii apart.
inline constexpr float kMinSeparation = 0.8f;

inline constexpr uint64_t kTrainStream = 1;
inline constexpr uint64_t kHeldOutStream = 2;

namespace detail {

inline constexpr int subject_key(Shape s, Colour c, Texture t) {
  return (static_cast<int>(s) * kColourCount + static_cast<int>(c)) * kTextureCount +
         static_cast<int>(t);
}
inline constexpr int placement_key(Shape s, Position p, BackgroundKind b) {
  return (static_cast<int>(s) * kPositionCount + static_cast<int>(p)) * kBackgroundKindCount +
         static_cast<int>(b);
}
inline constexpr auto kHeldOutSubjectTable = [] {
  std::array<bool, kShapeCount * kColourCount * kTextureCount> table{};
  for (const SubjectCombo& c : kHeldOutSubjects)
    table[static_cast<size_t>(subject_key(c.shape, c.colour, c.texture))] = true;
  return table;
}();
inline constexpr auto kHeldOutPlacementTable = [] {
  std::array<bool, kShapeCount * kPositionCount * kBackgroundKindCount> table{};
  for (const PlacementCombo& c : kHeldOutPlacements)
    table[static_cast<size_t>(placement_key(c.shape, c.position, c.background))] = true;
  return table;
}();

}  // namespace detail

inline constexpr bool is_heldout_subject(Shape s, Colour c, Texture t) {
  return detail::kHeldOutSubjectTable[static_cast<size_t>(detail::subject_key(s, c, t))];
}
inline constexpr bool is_heldout_subject(const Subject& s) {
  return is_heldout_subject(s.shape, s.colour, s.texture);
}
inline constexpr bool is_heldout_placement(Shape s, Position p, BackgroundKind b) {
  return detail::kHeldOutPlacementTable[static_cast<size_t>(detail::placement_key(s, p, b))];
}
inline constexpr bool is_heldout_pair(Shape a, Shape b) {
  for (const ShapePair& p : kHeldOutPairs)
    if ((p.first == a && p.second == b) || (p.first == b && p.second == a)) return true;
  return false;
}

// True when the scene holds any held-out subject, placement or pair of shapes.
inline bool has_heldout(const Scene& scene) {
  for (const Subject& s : scene.subjects)
    if (is_heldout_subject(s) || is_heldout_placement(s.shape, s.position, scene.background.kind))
      return true;
  for (size_t i = 0; i < scene.subjects.size(); ++i)
    for (size_t j = i + 1; j < scene.subjects.size(); ++j)
      if (is_heldout_pair(scene.subjects[i].shape, scene.subjects[j].shape)) return true;
  return false;
}

// The draws of one item: words of Philox blocks at counters stream << 56 | index << 12 | block,
// taken in order. Item `index` of a stream depends only on (seed, stream, index).
class Draws {
 public:
  static constexpr uint64_t kMaxStream = 255;
  static constexpr uint64_t kMaxIndex = (uint64_t{1} << 44) - 1;
  static constexpr uint64_t kBlocksPerItem = uint64_t{1} << 12;

  Draws(uint64_t seed, uint64_t stream, uint64_t index) : seed_(seed) {
    MENTOR_CHECK(stream <= kMaxStream, "world::Draws: stream ", stream, " is above ", kMaxStream);
    MENTOR_CHECK(index <= kMaxIndex, "world::Draws: index ", index, " is above 2^44 - 1");
    base_ = stream << 56 | index << 12;
  }

  uint32_t word() {
    if (used_ == 4) {
      ++block_;
      MENTOR_CHECK(block_ < kBlocksPerItem, "world::Draws: an item took more than ",
                   kBlocksPerItem * 4, " draws");
      used_ = 0;
    }
    if (used_ == 0) words_ = philox4x32_10(seed_, base_ | block_);
    return words_.word[used_++];
  }
  float uniform() { return philox_uniform_word(word()); }                     // [0, 1)
  float symmetric(float bound) { return (2.0f * uniform() - 1.0f) * bound; }  // [-bound, bound)
  // Uniform in [0, n), n >= 1 (Lemire's multiply-shift; its bias, n / 2^32, is immaterial here).
  int below(int n) {
    return static_cast<int>((static_cast<uint64_t>(word()) * static_cast<uint64_t>(n)) >> 32);
  }

 private:
  uint64_t seed_;
  uint64_t base_ = 0;
  uint64_t block_ = 0;
  int used_ = 0;
  PhiloxBlock words_{};
};

struct SceneOptions {
  int min_subjects = 1;
  int max_subjects = 2;
  // Split::heldout only: the kind every scene carries (pair makes a scene of two subjects);
  // unset, scene i carries kind i % 3 (i % 2, subject or placement, when max_subjects is 1).
  std::optional<HeldOutKind> heldout_kind;
};

namespace detail {

// Picks uniformly among the (shape, colour, texture) subjects `allowed` accepts.
template <class Allowed>
Subject pick_subject(Draws& draws, Allowed allowed) {
  std::array<SubjectCombo, kShapeCount * kColourCount * kTextureCount> candidates{};
  int count = 0;
  for (int s = 0; s < kShapeCount; ++s)
    for (int c = 0; c < kColourCount; ++c)
      for (int t = 0; t < kTextureCount; ++t) {
        const SubjectCombo combo{Shape(s), Colour(c), Texture(t)};
        if (allowed(combo)) candidates[static_cast<size_t>(count++)] = combo;
      }
  MENTOR_CHECK(count > 0, "world::sample_scene: no subject fits (a bug in the held-out lists)");
  const SubjectCombo chosen = candidates[static_cast<size_t>(draws.below(count))];
  Subject subject;
  subject.shape = chosen.shape, subject.colour = chosen.colour, subject.texture = chosen.texture;
  return subject;
}

inline float grid_distance(Position a, Position b) {
  const float dx = kGridCentre[static_cast<size_t>(column_of(a))] -
                   kGridCentre[static_cast<size_t>(column_of(b))];
  const float dy =
      kGridCentre[static_cast<size_t>(row_of(a))] - kGridCentre[static_cast<size_t>(row_of(b))];
  return std::sqrt(dx * dx + dy * dy);
}

// Size, position (uniform among those `allowed` accepts), jitter and rotation.
template <class Allowed>
void place_subject(Draws& draws, Subject& subject, Allowed allowed) {
  subject.size = Size(draws.below(kSizeCount));
  std::array<Position, kPositionCount> candidates{};
  int count = 0;
  for (int p = 0; p < kPositionCount; ++p)
    if (allowed(subject, Position(p))) candidates[static_cast<size_t>(count++)] = Position(p);
  MENTOR_CHECK(count > 0, "world::sample_scene: no position fits (a bug in the held-out lists)");
  subject.position = candidates[static_cast<size_t>(draws.below(count))];
  subject.jitter_x = draws.symmetric(kMaxJitter);
  subject.jitter_y = draws.symmetric(kMaxJitter);
  subject.rotation_degrees = draws.symmetric(kMaxRotationDegrees);
}

inline bool two_colour(BackgroundKind kind) {
  return kind == BackgroundKind::vertical_gradient || kind == BackgroundKind::horizontal_gradient ||
         kind == BackgroundKind::stripes || kind == BackgroundKind::checks;
}

}  // namespace detail

inline Scene sample_scene(uint64_t seed, Split split, uint64_t index,
                          const SceneOptions& options = {}) {
  MENTOR_CHECK(options.min_subjects >= 0 && options.min_subjects <= options.max_subjects &&
                   options.max_subjects <= kMaxSubjects,
               "world::sample_scene: subjects per scene must satisfy 0 <= min <= max <= ",
               kMaxSubjects, ", got min ", options.min_subjects, ", max ", options.max_subjects);
  const bool heldout = split == Split::heldout;
  MENTOR_CHECK(!heldout || options.max_subjects >= 1,
               "world::sample_scene: a held-out scene needs a subject (max_subjects is 0)");
  HeldOutKind kind = HeldOutKind::subject;
  if (heldout) {
    if (options.heldout_kind) {
      kind = *options.heldout_kind;
      MENTOR_CHECK(static_cast<int>(kind) <= 2, "world::sample_scene: held-out kind ",
                   static_cast<int>(kind), " is not subject, placement or pair");
    } else {
      kind = HeldOutKind(index % (options.max_subjects >= 2 ? 3 : 2));
    }
    MENTOR_CHECK(kind != HeldOutKind::pair || options.max_subjects >= 2,
                 "world::sample_scene: held-out pairs need two subjects, max_subjects is ",
                 options.max_subjects);
  }
  Draws draws(seed, heldout ? kHeldOutStream : kTrainStream, index);
  Scene scene;
  scene.phrasing = draws.word();

  int subjects =
      options.min_subjects + draws.below(options.max_subjects - options.min_subjects + 1);
  if (heldout) subjects = std::max(subjects, 1);
  PlacementCombo placement{};
  ShapePair pair{};
  if (heldout && kind == HeldOutKind::placement)
    placement = kHeldOutPlacements[static_cast<size_t>(
        draws.below(static_cast<int>(kHeldOutPlacements.size())))];
  if (heldout && kind == HeldOutKind::pair) {
    subjects = 2;
    pair = kHeldOutPairs[static_cast<size_t>(draws.below(static_cast<int>(kHeldOutPairs.size())))];
    if (draws.below(2) == 1) std::swap(pair.first, pair.second);
  }

  Background& bg = scene.background;
  bg.kind = heldout && kind == HeldOutKind::placement
                ? placement.background
                : BackgroundKind(draws.below(kBackgroundKindCount));
  bg.colour = Colour(draws.below(kColourCount));
  bg.second =
      detail::two_colour(bg.kind)
          ? Colour((static_cast<int>(bg.colour) + 1 + draws.below(kColourCount - 1)) % kColourCount)
          : bg.colour;
  bg.noise_seed = draws.word();

  // What training allows, beside a forced held-out combination.
  const auto training_subject = [&](const SubjectCombo& c) {
    return !is_heldout_subject(c.shape, c.colour, c.texture) && !bg.uses(c.colour);
  };
  const auto training_place = [&](const Subject& s, Position p) {
    return !is_heldout_placement(s.shape, p, bg.kind);
  };

  for (int i = 0; i < subjects; ++i) {
    Subject subject;
    if (i == 0) {
      if (heldout && kind == HeldOutKind::subject) {
        subject = detail::pick_subject(draws, [&](const SubjectCombo& c) {
          return is_heldout_subject(c.shape, c.colour, c.texture) && !bg.uses(c.colour);
        });
      } else {
        const bool forced = heldout && kind != HeldOutKind::subject;
        const Shape shape = kind == HeldOutKind::placement ? placement.shape : pair.first;
        subject = detail::pick_subject(draws, [&](const SubjectCombo& c) {
          return training_subject(c) && (!forced || c.shape == shape);
        });
      }
      if (heldout && kind == HeldOutKind::placement) {
        detail::place_subject(draws, subject,
                              [&](const Subject&, Position p) { return p == placement.position; });
      } else {
        detail::place_subject(draws, subject, training_place);
      }
    } else {
      const Subject& first = scene.subjects[0];
      const bool forced = heldout && kind == HeldOutKind::pair;
      subject = detail::pick_subject(draws, [&](const SubjectCombo& c) {
        return training_subject(c) &&
               (forced ? c.shape == pair.second : !is_heldout_pair(first.shape, c.shape));
      });
      detail::place_subject(draws, subject, [&](const Subject& s, Position p) {
        return training_place(s, p) && p != first.position &&
               detail::grid_distance(p, first.position) >=
                   kMinSeparation * (s.radius() + first.radius());
      });
    }
    scene.subjects.push_back(subject);
  }
  return scene;
}

// Scenes first, first + 1, ..., first + count - 1 of a split.
inline std::vector<Scene> sample_scenes(uint64_t seed, Split split, uint64_t first, int64_t count,
                                        const SceneOptions& options = {}) {
  MENTOR_CHECK(count >= 0, "world::sample_scenes: count ", count, " is negative");
  std::vector<Scene> scenes;
  scenes.reserve(static_cast<size_t>(count));
  for (int64_t i = 0; i < count; ++i)
    scenes.push_back(sample_scene(seed, split, first + static_cast<uint64_t>(i), options));
  return scenes;
}

}  // namespace mentor::data::world
