#pragma once
// SynthBench: a fixed benchmark of held-out subjects x prompts in four categories, scored from the
// generated pixels against the renderer's ground truth, deterministically and without a learned
// judge (DreamBench++'s CP and PF, mentor-system.md section 6, with GPT-4o replaced by measures).
// docs/synthbench.md explains each measure and constant, the validity checks that hold them
// (tests/data/test_synthbench.cpp) and how to read the table.
//
//   synthbench_items(seed, resolution, per_category)  the benchmark (references, prompts, truths)
//   score(item, image)                  one generated image -> CP and PF, with every measure
//   synthbench_report(scores)           per category and overall: CP, PF, CP·PF, CP/PF, measures
//   evaluate_synthbench(items, generate)  generate each item's image by a callback, score, report
//   to_json(report), to_markdown(report)
//
// The items. Every subject is one of sampling.hpp's kHeldOutSubjects, a combination no trained
// model has seen. Its reference (prompts.hpp's subject_reference) shows it large, upright and
// centred on a plain background of another colour. The truth changes what its category names and
// keeps the rest of the reference:
//   new_position    large, on the reference's background, at one of the 8 places but the centre
//   new_background  large and centred, on a background of any kind none of whose colours is near
//                   the reference's background colour
//   new_size        small or medium, centred, on the reference's background
//   two_subjects    two held-out subjects (other shapes, other colours), each small or medium, at
//                   two places kPairMargin clear of each other, on the references' shared plain
//                   background
// Truths are upright and unjittered (no prompt says either). The prompt is subject_driven_prompt:
// a line per reference, then the caption, which names the subjects by size and shape only.
//
// The measures, each in [0, 1], from the pixels alone (colours compared in CIELAB, Delta E 1976):
//   objects     the pixels more than kForegroundDeltaE from the truth background
//   (render_background)
//               form 8-connected objects of kMinObjectArea..kMaxObjectArea of the image; so do the
//               pixels of a subject's own tones, so that a subject on a wrong background is still
//               found. Each subject is matched to the object that maximises its CP (two subjects:
//               the best pair of distinct objects; ties go to the object nearer its place).
//   CP  colour  the share of the object's interior whose nearest tone (a palette colour or its
//               shade, within kToneTolerance) is the subject's colour
//       shape   the IoU of the object with the subject's shape at its centroid, scaled to its area
//               and turned within +-30 degrees, the best of a search; ramped by kShapeIoU
//       texture the object's lightness at the four frequencies of the world's textures, against the
//               truth subject drawn at the fitted pose in each texture: 1 near the truth texture's
//               signature, 0 as near to another's
//   PF  position  the object's centroid against the truth's grid place, ramped by kPosition
//       size    the object's extent (its farthest edge from its centroid) over the truth's,
//       measured
//               alike on the rendered truth, ramped by kSize
//       background  over the pixels away from the truth's subjects and the matched objects, the
//               share within kBackgroundDeltaE of the truth background
//       second  two-subject items: sqrt(position x size) of the second subject, 0 if not found
// A subject's CP is (shape x colour x texture)^(1/3), an item's the mean over its subjects; PF is
// the geometric mean of position and size (the first subject's), background and, for two subjects,
// second. Geometric means because a subject is kept only when all of it is and a prompt followed
// only when all of it is: the reference pasted unchanged earns nothing for the parts of the prompt
// it happens to share. The report gives, per category and overall, mean CP, mean PF,
// CP·PF = mean CP x mean PF and CP/PF = mean CP / mean PF: DreamBench++'s product and ratio of the
// means.
#include <algorithm>
#include <array>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <functional>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include <nlohmann/json.hpp>

#include "mentor/core/error.hpp"
#include "mentor/data/image.hpp"
#include "mentor/data/world/attributes.hpp"
#include "mentor/data/world/prompts.hpp"
#include "mentor/data/world/render.hpp"
#include "mentor/data/world/sampling.hpp"
#include "mentor/data/world/shapes.hpp"

namespace mentor::data::world {

// ---- The benchmark ----------------------------------------------------------------------------

enum class SynthCategory : uint8_t { new_position, new_background, new_size, two_subjects };
inline constexpr int kSynthCategoryCount = 4;
inline constexpr std::array<std::string_view, kSynthCategoryCount> kSynthCategoryNames = {
    "new_position", "new_background", "new_size", "two_subjects"};
inline constexpr std::string_view name(SynthCategory c) {
  return kSynthCategoryNames[static_cast<size_t>(c)];
}

// Draws (sampling.hpp) of item i of category c: stream kSynthBenchStream, index c << 32 | i
// (streams 1 and 2 are the scene splits, tasks.hpp takes 16 to 43).
inline constexpr uint64_t kSynthBenchStream = 64;
inline constexpr int kSynthBenchPerCategory = 16;
inline constexpr int kSynthBenchMaxPerCategory = 1 << 20;
// Two-subject items: grid centres at least r1 + r2 + kPairMargin apart (fractions of the side),
// so that the subjects never touch and each is its own object.
inline constexpr float kPairMargin = 0.05f;
// Every item keeps kToneSeparation Delta E between the subject's tones (its colour, its shade and
// their mixes) and every colour of the truth background, and (new_background) between the
// reference's background colour and the truth background: the subject is found by difference
// and the reference's background matches none of the truth's.
inline constexpr float kToneSeparation = 24.0f;

struct SynthBenchItem {
  std::string id;  // "<category>_<index>", index of at least 2 digits: "new_size_07"
  SynthCategory category = SynthCategory::new_position;
  int64_t resolution = 64;
  Scene truth;                      // the target; each of its subjects is referenced, in order
  std::vector<Subject> referenced;  // reference_pose(truth.subjects[i]): what references[i] shows
  std::vector<Colour> reference_backgrounds;  // the plain background of each reference
  std::vector<Image> references;  // subject_reference(truth.subjects[i], ..., resolution)
  std::string prompt;             // subject_driven_prompt(truth, every subject)
};

// ---- CIELAB ------------------------------------------------------------------------------------

namespace detail {

struct Lab {
  float L = 0.0f, a = 0.0f, b = 0.0f;
};

inline double srgb_to_linear(double v) {  // v in [0, 255]
  const double c = v / 255.0;
  return c <= 0.04045 ? c / 12.92 : std::pow((c + 0.055) / 1.055, 2.4);
}
inline const std::array<double, 256>& srgb_linear_table() {
  static const std::array<double, 256> table = [] {
    std::array<double, 256> t{};
    for (int i = 0; i < 256; ++i) t[static_cast<size_t>(i)] = srgb_to_linear(double(i));
    return t;
  }();
  return table;
}
inline double lab_f(double t) {
  constexpr double d = 6.0 / 29.0;
  return t > d * d * d ? std::cbrt(t) : t / (3.0 * d * d) + 4.0 / 29.0;
}
// Linear sRGB -> CIELAB, D65 white.
inline Lab lab_from_linear(double r, double g, double b) {
  const double x = 0.4124564 * r + 0.3575761 * g + 0.1804375 * b;
  const double y = 0.2126729 * r + 0.7151522 * g + 0.0721750 * b;
  const double z = 0.0193339 * r + 0.1191920 * g + 0.9503041 * b;
  const double fx = lab_f(x / 0.95047), fy = lab_f(y), fz = lab_f(z / 1.08883);
  return {float(116.0 * fy - 16.0), float(500.0 * (fx - fy)), float(200.0 * (fy - fz))};
}
inline Lab lab_of(uint8_t r, uint8_t g, uint8_t b) {
  const auto& t = srgb_linear_table();
  return lab_from_linear(t[r], t[g], t[b]);
}
inline Lab lab_of(float r, float g, float b) {  // a mix, sRGB values in [0, 255]
  return lab_from_linear(srgb_to_linear(r), srgb_to_linear(g), srgb_to_linear(b));
}
inline Lab lab_of(Rgb c) { return lab_of(c.r, c.g, c.b); }
inline float delta_e(const Lab& p, const Lab& q) {
  const float dl = p.L - q.L, da = p.a - q.a, db = p.b - q.b;
  return std::sqrt(dl * dl + da * da + db * db);
}

// The colours of the sRGB line from a to b (the renderer mixes tones linearly in sRGB), sampled.
inline constexpr int kLineSamples = 17;
using ColourLine = std::array<Lab, kLineSamples>;
inline ColourLine colour_line(Rgb a, Rgb b) {
  ColourLine line;
  for (int k = 0; k < kLineSamples; ++k) {
    const float t = float(k) / float(kLineSamples - 1);
    line[static_cast<size_t>(k)] = lab_of(float(a.r) + (float(b.r) - float(a.r)) * t,
                                          float(a.g) + (float(b.g) - float(a.g)) * t,
                                          float(a.b) + (float(b.b) - float(a.b)) * t);
  }
  return line;
}
inline float line_distance(const ColourLine& line, const Lab& p) {
  float best = delta_e(line[0], p);
  for (const Lab& q : line) best = std::min(best, delta_e(q, p));
  return best;
}
inline float lines_distance(const ColourLine& a, const ColourLine& b) {
  float best = line_distance(b, a[0]);
  for (const Lab& p : a) best = std::min(best, line_distance(b, p));
  return best;
}

// The colour lines a background shows.
inline std::vector<ColourLine> background_lines(const Background& b) {
  switch (b.kind) {
    case BackgroundKind::solid:
      return {colour_line(rgb(b.colour), rgb(b.colour))};
    case BackgroundKind::vertical_gradient:
    case BackgroundKind::horizontal_gradient:
      return {colour_line(rgb(b.colour), rgb(b.second))};
    case BackgroundKind::stripes:
    case BackgroundKind::checks:  // the mixes too: a blurred band or cell edge
      return {colour_line(rgb(b.colour), rgb(b.second))};
    case BackgroundKind::noise:
      return {colour_line(rgb(b.colour), shade(b.colour))};
  }
  return {};
}

// The least Delta E between a line of colours and any colour of a background.
inline float separation(const ColourLine& line, const Background& b) {
  float best = 1e9f;
  for (const ColourLine& l : background_lines(b)) best = std::min(best, lines_distance(line, l));
  return best;
}
inline ColourLine subject_tones(Colour c) { return colour_line(rgb(c), shade(c)); }
inline ColourLine plain_tone(Colour c) { return colour_line(rgb(c), rgb(c)); }

}  // namespace detail

// ---- Items --------------------------------------------------------------------------------------

namespace detail {

inline Subject heldout_subject(size_t k) {
  const SubjectCombo& combo = kHeldOutSubjects[k % kHeldOutSubjects.size()];
  Subject s;
  s.shape = combo.shape, s.colour = combo.colour, s.texture = combo.texture;
  return reference_pose(s);
}

// Uniform among the colours `ok` accepts.
template <class Ok>
Colour draw_colour(Draws& draws, Ok ok, const char* what) {
  std::array<Colour, kColourCount> candidates{};
  int count = 0;
  for (int c = 0; c < kColourCount; ++c)
    if (ok(Colour(c))) candidates[static_cast<size_t>(count++)] = Colour(c);
  MENTOR_CHECK(count > 0, "synthbench: no colour fits the ", what);
  return candidates[static_cast<size_t>(draws.below(count))];
}

// A background of any kind whose colours keep kToneSeparation from the subject's tones and from
// the reference's background colour (drawn again until they do).
inline Background draw_new_background(Draws& draws, Colour subject, Colour reference) {
  const ColourLine tones = subject_tones(subject), plain = plain_tone(reference);
  for (int attempt = 0; attempt < 1000; ++attempt) {
    Background b;
    b.kind = BackgroundKind(draws.below(kBackgroundKindCount));
    b.colour = Colour(draws.below(kColourCount));
    b.second = two_colour(b.kind)  // sampling.hpp
                   ? Colour((static_cast<int>(b.colour) + 1 + draws.below(kColourCount - 1)) %
                            kColourCount)
                   : b.colour;
    b.noise_seed = draws.word();
    if (separation(tones, b) >= kToneSeparation && separation(plain, b) >= kToneSeparation)
      return b;
  }
  MENTOR_CHECK(false, "synthbench: no new background fits the ", name(subject), " subject");
  return {};
}

inline std::string item_id(SynthCategory category, int index) {
  std::string number = std::to_string(index);
  if (number.size() < 2) number.insert(0, 2 - number.size(), '0');
  return std::string(name(category)) + "_" + number;
}

}  // namespace detail

// Item `index` of a category: it depends only on (seed, category, index); the resolution changes
// only its pictures.
inline SynthBenchItem synthbench_item(uint64_t seed, SynthCategory category, int index,
                                      int64_t resolution = 64) {
  MENTOR_CHECK(static_cast<int>(category) < kSynthCategoryCount, "synthbench_item: category ",
               static_cast<int>(category), " is not one of the ", kSynthCategoryCount);
  MENTOR_CHECK(index >= 0 && index < kSynthBenchMaxPerCategory, "synthbench_item: index ", index,
               " is outside 0..", kSynthBenchMaxPerCategory - 1);
  MENTOR_CHECK(resolution >= kMinResolution && resolution <= kMaxResolution,
               "synthbench_item: resolution ", resolution, " is outside ", kMinResolution, "..",
               kMaxResolution);
  const uint64_t c = static_cast<uint64_t>(category);
  // Each category walks the held-out subjects from its own offset, so that 20 items of it show
  // the 20 subjects once each.
  Draws offset_draws(seed, kSynthBenchStream, uint64_t{kSynthCategoryCount} << 32 | c);
  const auto offset = static_cast<size_t>(offset_draws.below(int(kHeldOutSubjects.size())));
  Draws draws(seed, kSynthBenchStream, c << 32 | static_cast<uint64_t>(index));

  SynthBenchItem item;
  item.id = detail::item_id(category, index);
  item.category = category;
  item.resolution = resolution;
  Scene& scene = item.truth;
  scene.phrasing = draws.word();
  Subject first = detail::heldout_subject(offset + static_cast<size_t>(index));
  const detail::ColourLine first_tones = detail::subject_tones(first.colour);
  Colour reference_bg{};
  if (category != SynthCategory::two_subjects) {
    reference_bg = detail::draw_colour(
        draws,
        [&](Colour bg) {
          return detail::separation(first_tones, solid_background(bg)) >= kToneSeparation;
        },
        "reference background");
    scene.background = solid_background(reference_bg);
  }
  switch (category) {
    case SynthCategory::new_position: {
      int place = draws.below(kPositionCount - 1);  // the 8 places other than the centre
      if (place >= static_cast<int>(Position::center)) ++place;
      first.position = Position(place);
      scene.subjects = {first};
      break;
    }
    case SynthCategory::new_background:
      scene.background = detail::draw_new_background(draws, first.colour, reference_bg);
      scene.subjects = {first};
      break;
    case SynthCategory::new_size:
      first.size = Size(draws.below(2));  // small or medium
      scene.subjects = {first};
      break;
    case SynthCategory::two_subjects: {
      std::array<size_t, kHeldOutSubjects.size()> others{};
      int count = 0;
      for (size_t k = 0; k < kHeldOutSubjects.size(); ++k)
        if (kHeldOutSubjects[k].shape != first.shape && kHeldOutSubjects[k].colour != first.colour)
          others[static_cast<size_t>(count++)] = k;
      Subject second = detail::heldout_subject(others[static_cast<size_t>(draws.below(count))]);
      const detail::ColourLine second_tones = detail::subject_tones(second.colour);
      reference_bg = detail::draw_colour(
          draws,
          [&](Colour bg) {
            return detail::separation(first_tones, solid_background(bg)) >= kToneSeparation &&
                   detail::separation(second_tones, solid_background(bg)) >= kToneSeparation;
          },
          "two subjects' reference background");
      scene.background = solid_background(reference_bg);
      first.size = Size(draws.below(2));
      second.size = Size(draws.below(2));
      std::vector<std::pair<Position, Position>> places;
      for (int p = 0; p < kPositionCount; ++p)
        for (int q = 0; q < kPositionCount; ++q)
          if (p != q && detail::grid_distance(Position(p), Position(q)) >=
                            first.radius() + second.radius() + kPairMargin)
            places.emplace_back(Position(p), Position(q));
      const auto& chosen = places[static_cast<size_t>(draws.below(int(places.size())))];
      first.position = chosen.first, second.position = chosen.second;
      scene.subjects = {first, second};
      break;
    }
  }
  const auto all = static_cast<uint32_t>((1u << scene.subjects.size()) - 1u);
  item.prompt = subject_driven_prompt(scene, all);
  for (const Subject& s : scene.subjects) {
    item.referenced.push_back(reference_pose(s));
    item.reference_backgrounds.push_back(reference_bg);
    item.references.push_back(subject_reference(s, reference_bg, resolution));
  }
  return item;
}

// The benchmark: per_category items of each category, category by category.
inline std::vector<SynthBenchItem> synthbench_items(uint64_t seed, int64_t resolution = 64,
                                                    int per_category = kSynthBenchPerCategory) {
  MENTOR_CHECK(per_category >= 1 && per_category <= kSynthBenchMaxPerCategory,
               "synthbench_items: per_category ", per_category, " is outside 1..",
               kSynthBenchMaxPerCategory);
  std::vector<SynthBenchItem> items;
  items.reserve(static_cast<size_t>(kSynthCategoryCount * per_category));
  for (int c = 0; c < kSynthCategoryCount; ++c)
    for (int i = 0; i < per_category; ++i)
      items.push_back(synthbench_item(seed, SynthCategory(c), i, resolution));
  return items;
}

// ---- Scores -------------------------------------------------------------------------------------

// Thresholds of the measures (docs/synthbench.md has the measurements behind them).
// Foreground: above a generator's colour noise, below the 24 Delta E an item keeps between a
// subject's tones and its background.
inline constexpr float kForegroundDeltaE = 14.0f;
// Background: a pixel within [0] of the truth background counts in full, beyond [1] not at all.
inline constexpr std::array<float, 2> kBackgroundDeltaE = {8.0f, 20.0f};
// Colour votes: past half the colour-shade step (24 to 37), short of the palette's nearest 36.
inline constexpr float kToneTolerance = 20.0f;
// Objects, in fractions of the image's area: a third of the smallest subject (a small crescent,
// 1.2%) to twice the largest (a large circle, 15%).
inline constexpr float kMinObjectArea = 0.004f;
inline constexpr float kMaxObjectArea = 0.30f;
// Shape: IoU at [0] scores 0, at [1] 1 (the truth's own IoU is 0.94 or more at 64 px).
inline constexpr std::array<float, 2> kShapeIoU = {0.70f, 0.90f};
// Position: the centroid within [0] of the grid place scores 1, beyond [1] 0 (fractions of the
// side; neighbouring places are 0.25 apart, jitter at most 0.035).
inline constexpr std::array<float, 2> kPosition = {0.05f, 0.20f};
// Size: an extent ratio within x [0] scores 1, beyond x [1] 0 (the sizes are 1.375 and 1.45
// apart).
inline constexpr std::array<float, 2> kSize = {1.15f, 1.32f};
// Texture: an object whose texture-frequency amplitude is below kTexturedness[0] of its tones'
// lightness contrast is solid, above [1] textured (a drawn texture has 0.42 to 0.76 at 64 px;
// blurred by a 3 x 3 binomial, 0.15 or more; a solid subject under that blur or noise of 6
// levels, below 0.1).
inline constexpr std::array<float, 2> kTexturedness = {0.05f, 0.15f};
// The distance from the truth texture's signature to the nearest other one's (both drawn at the
// fitted pose) is the score's scale, taken as at least kMinTextureSeparation: where the pixels can
// hardly tell two textures apart (checkered and dotted on a cross's arms at 64 px, one period
// wide) a signature between them is uncertain, not a coin toss. A signature within
// kTextureTolerance of the scale from the truth's counts in full (a subject drawn a fraction of a
// pixel off changes it a little).
inline constexpr float kMinTextureSeparation = 0.3f;
inline constexpr float kTextureTolerance = 0.25f;
// A texture is measured on at least kMinTexturePixels pixels inside both the object and the
// fitted shape (fewer: a small subject at 32 px, whose texture is then left out of its CP).
inline constexpr size_t kMinTexturePixels = 16;
// The texture is read two pixels in from both edges when that leaves kDeepTexturePixels (so that a
// blurred edge is not taken for a pattern), else one pixel in.
inline constexpr size_t kDeepTexturePixels = 32;

struct SynthSubjectScore {
  bool found = false;  // an object was matched to this subject
  float shape = 0.0f, colour = 0.0f;
  // None when the object's inside is too small to show a texture (fewer than
  // kMinTexturePixels pixels: a small subject at 32 px); then CP leaves it out.
  std::optional<float> texture = 0.0f;
  // This subject's CP: (shape x colour x texture)^(1/3), or (shape x colour)^(1/2).
  float cp = 0.0f;
  float position = 0.0f, size = 0.0f;
  // What was measured (fractions of the side; 0 when not found): the object's centroid, its extent
  // and the truth's, the fitted shape's rotation (degrees) and the object's area (of the image).
  float x = 0.0f, y = 0.0f, extent = 0.0f, truth_extent = 0.0f, rotation_degrees = 0.0f,
        area = 0.0f;
  bool operator==(const SynthSubjectScore&) const = default;
};

struct SynthScore {
  std::string id;
  SynthCategory category = SynthCategory::new_position;
  std::vector<SynthSubjectScore> subjects;  // in the truth's order
  float shape = 0.0f, colour = 0.0f;        // means over the subjects
  std::optional<float> texture;             // mean over the subjects whose texture was measured
  float position = 0.0f, size = 0.0f;       // the first subject's
  float background = 0.0f;
  std::optional<float> second;  // two-subject items: the second subject's placement
  float cp = 0.0f, pf = 0.0f;
  bool operator==(const SynthScore&) const = default;
};

namespace detail {

inline float ramp_down(float v, float full, float zero) {  // 1 at or below full, 0 at or above zero
  return std::clamp((zero - v) / (zero - full), 0.0f, 1.0f);
}
inline float ramp_up(float v, float zero, float full) {
  return std::clamp((v - zero) / (full - zero), 0.0f, 1.0f);
}

// Every pixel's CIELAB; a direct-mapped cache of recent colours (a rendered image has few).
inline std::vector<Lab> image_lab(const Image& image) {
  constexpr size_t kSlots = 4096;
  std::vector<uint32_t> keys(kSlots, 0xFFFFFFFFu);
  std::vector<Lab> values(kSlots);
  std::vector<Lab> out(static_cast<size_t>(image.width) * static_cast<size_t>(image.height));
  for (size_t i = 0; i < out.size(); ++i) {
    const uint8_t r = image.data[3 * i], g = image.data[3 * i + 1], b = image.data[3 * i + 2];
    const uint32_t key = uint32_t{r} << 16 | uint32_t{g} << 8 | b;
    const size_t slot = ((key * 2654435761u) >> 20) % kSlots;
    if (keys[slot] != key) keys[slot] = key, values[slot] = lab_of(r, g, b);
    out[i] = values[slot];
  }
  return out;
}

// Each pixel's Delta E from the truth background: the least over the background's pixels within
// a window of max(1, R / 64) pixels (exact only above kBackgroundDeltaE[0]: below it the pixel is
// background whatever its neighbours); a mottled background by the distance to its colour line.
inline std::vector<float> background_distance(const std::vector<Lab>& image, const Background& bg,
                                              int R) {
  std::vector<float> out(image.size());
  if (bg.kind == BackgroundKind::noise) {
    const ColourLine line = colour_line(rgb(bg.colour), shade(bg.colour));
    for (size_t i = 0; i < image.size(); ++i) out[i] = line_distance(line, image[i]);
    return out;
  }
  const std::vector<Lab> background = image_lab(render_background(bg, R));
  const int window = std::max(1, (R + 32) / 64);
  for (int y = 0; y < R; ++y)
    for (int x = 0; x < R; ++x) {
      const size_t i = static_cast<size_t>(y) * static_cast<size_t>(R) + static_cast<size_t>(x);
      float d = delta_e(image[i], background[i]);
      if (d > kBackgroundDeltaE[0])
        for (int v = std::max(0, y - window); v <= std::min(R - 1, y + window); ++v)
          for (int u = std::max(0, x - window); u <= std::min(R - 1, x + window); ++u)
            d = std::min(d, delta_e(image[i], background[static_cast<size_t>(v * R + u)]));
      out[i] = d;
    }
  return out;
}

// What tells an object from the background: the distance above, except that on bands and cells
// a mix of their two colours is background too (a blurred edge between them is no object).
inline std::vector<float> foreground_distance(const std::vector<Lab>& image,
                                              std::vector<float> distance, const Background& bg) {
  if (bg.kind != BackgroundKind::stripes && bg.kind != BackgroundKind::checks) return distance;
  const ColourLine line = colour_line(rgb(bg.colour), rgb(bg.second));
  for (size_t i = 0; i < image.size(); ++i)
    if (distance[i] > kForegroundDeltaE)
      distance[i] = std::min(distance[i], line_distance(line, image[i]));
  return distance;
}

// The palette colour whose colour or shade is nearest to p within kToneTolerance, or -1.
inline int tone_class(const Lab& p) {
  static const std::array<Lab, 2 * kColourCount> tones = [] {
    std::array<Lab, 2 * kColourCount> t{};
    for (int c = 0; c < kColourCount; ++c) {
      t[static_cast<size_t>(c)] = lab_of(rgb(Colour(c)));
      t[static_cast<size_t>(kColourCount + c)] = lab_of(shade(Colour(c)));
    }
    return t;
  }();
  int best = -1;
  float best_distance = kToneTolerance;
  for (size_t k = 0; k < tones.size(); ++k) {
    const float d = delta_e(tones[k], p);
    if (d <= best_distance) best = static_cast<int>(k) % kColourCount, best_distance = d;
  }
  return best;
}

// A connected set of pixels.
struct Object {
  std::vector<int> pixels;      // y * R + x, in scan order
  std::vector<uint8_t> member;  // [R * R], 1 on the object's pixels
  double cx = 0.0, cy = 0.0;    // centroid in pixels (pixel centres at +0.5)
  // How far the object reaches from its centroid: its farthest pixel centre + 1/2 px, or, with the
  // pixels' coverage known (soft_extent), their edges'.
  double extent = 0.0;
  std::vector<int> interior;  // pixels whose 8 neighbours are all the object's
  std::vector<int> deep;      // pixels whose 8 neighbours are all interior
};

inline std::vector<int> eroded(const std::vector<int>& pixels, const std::vector<uint8_t>& member,
                               int R) {
  std::vector<int> out;
  for (int p : pixels) {
    const int x = p % R, y = p / R;
    if (x == 0 || y == 0 || x == R - 1 || y == R - 1) continue;
    bool inside = true;
    for (int dy = -1; dy <= 1 && inside; ++dy)
      for (int dx = -1; dx <= 1 && inside; ++dx)
        inside = member[static_cast<size_t>(p + dy * R + dx)];
    if (inside) out.push_back(p);
  }
  return out;
}

inline void describe(Object& o, int R) {
  o.member.assign(static_cast<size_t>(R) * static_cast<size_t>(R), 0);
  std::sort(o.pixels.begin(), o.pixels.end());
  double sx = 0.0, sy = 0.0;
  for (int p : o.pixels) {
    const int x = p % R, y = p / R;
    o.member[static_cast<size_t>(p)] = 1;
    sx += x + 0.5, sy += y + 0.5;
  }
  o.cx = sx / double(o.pixels.size()), o.cy = sy / double(o.pixels.size());
  double far = 0.0;
  for (int p : o.pixels) {
    const double dx = p % R + 0.5 - o.cx, dy = p / R + 0.5 - o.cy;
    far = std::max(far, dx * dx + dy * dy);
  }
  o.extent = std::sqrt(far) + 0.5;
  o.interior = eroded(o.pixels, o.member, R);
  std::vector<uint8_t> inside(o.member.size(), 0);
  for (int p : o.interior) inside[static_cast<size_t>(p)] = 1;
  o.deep = eroded(o.interior, inside, R);
}

// The 8-connected components of `mask` between min_area and max_area pixels, largest first (ties
// in scan order), at most max_count of them.
inline std::vector<Object> objects_of(const std::vector<uint8_t>& mask, int R, size_t max_count) {
  const double image_area = double(R) * double(R);
  const auto min_area = static_cast<size_t>(std::ceil(kMinObjectArea * image_area));
  const auto max_area = static_cast<size_t>(kMaxObjectArea * image_area);
  std::vector<uint8_t> seen(mask.size(), 0);
  std::vector<Object> found;
  std::vector<int> stack;
  for (size_t start = 0; start < mask.size(); ++start) {
    if (!mask[start] || seen[start]) continue;
    Object o;
    stack.assign(1, static_cast<int>(start));
    seen[start] = 1;
    while (!stack.empty()) {
      const int p = stack.back();
      stack.pop_back();
      o.pixels.push_back(p);
      const int x = p % R, y = p / R;
      for (int dy = -1; dy <= 1; ++dy)
        for (int dx = -1; dx <= 1; ++dx) {
          const int u = x + dx, v = y + dy;
          if (u < 0 || v < 0 || u >= R || v >= R) continue;
          const auto q = static_cast<size_t>(v * R + u);
          if (mask[q] && !seen[q]) seen[q] = 1, stack.push_back(static_cast<int>(q));
        }
    }
    if (o.pixels.size() >= min_area && o.pixels.size() <= max_area) found.push_back(std::move(o));
  }
  std::stable_sort(found.begin(), found.end(), [](const Object& a, const Object& b) {
    return a.pixels.size() > b.pixels.size();
  });
  if (found.size() > max_count) found.resize(max_count);
  for (Object& o : found) describe(o, R);
  return found;
}

// The object's extent from its pixels' edges: a pixel of coverage w has its edge w - 1/2 px
// beyond its centre (an edge through a pixel covers 1/2 - its signed distance), and w is its
// distance from the background over the largest of its neighbours' (the subject's own contrast
// there). Sub-pixel, and the same for a subject of any contrast against its background.
inline void soft_extent(Object& o, const std::vector<float>& distance, int R) {
  double far = 0.0;
  for (int p : o.pixels) {
    const int x = p % R, y = p / R;
    float contrast = 0.0f;
    for (int v = std::max(0, y - 1); v <= std::min(R - 1, y + 1); ++v)
      for (int u = std::max(0, x - 1); u <= std::min(R - 1, x + 1); ++u)
        if (o.member[static_cast<size_t>(v * R + u)])
          contrast = std::max(contrast, distance[static_cast<size_t>(v * R + u)]);
    const double w = std::min(1.0, double(distance[static_cast<size_t>(p)]) / double(contrast));
    far = std::max(far, std::hypot(x + 0.5 - o.cx, y + 0.5 - o.cy) + w - 0.5);
  }
  o.extent = far;
}

inline size_t overlap(const Object& a, const Object& b) {
  size_t n = 0;
  for (int p : a.pixels) n += b.member[static_cast<size_t>(p)];
  return n;
}

// ---- Shape: IoU with the truth shape at the best pose ----

// Each shape's area in its unit frame (shapes.hpp), from a 256 x 256 grid of samples (the fit
// searches the scale around it).
inline double unit_area(Shape s) {
  static const std::array<double, kShapeCount> areas = [] {
    std::array<double, kShapeCount> a{};
    constexpr int n = 256;
    for (int k = 0; k < kShapeCount; ++k) {
      int inside = 0;
      for (int i = 0; i < n; ++i)
        for (int j = 0; j < n; ++j)
          inside += signed_distance(Shape(k), -1.0f + 2.0f * (float(j) + 0.5f) / float(n),
                                    -1.0f + 2.0f * (float(i) + 0.5f) / float(n)) <= 0.0f;
      a[static_cast<size_t>(k)] = 4.0 * double(inside) / (double(n) * double(n));
    }
    return a;
  }();
  return areas[static_cast<size_t>(s)];
}

struct Pose {
  double cx = 0.0, cy = 0.0, radius = 0.0, rotation_degrees = 0.0;  // pixels, degrees
};
struct ShapeFit {
  float iou = 0.0f;
  Pose pose;
};

// IoU of the object with shape s at `pose` (pixels whose centre the shape covers: coverage
// >= 1/2), over the pixels of a lattice of `stride`.
inline float pose_iou(const Object& o, size_t object_on_lattice, int R, Shape s, const Pose& pose,
                      int stride) {
  const double angle = pose.rotation_degrees * (3.14159265358979323846 / 180.0);
  const float cs = float(std::cos(angle)), sn = float(std::sin(angle));
  const float r = float(pose.radius), inv_r = 1.0f / r;
  const auto lattice = [&](double v) {  // the first lattice coordinate at or above v
    const int i = std::max(0, int(std::floor(v)));
    return (i + stride - 1) / stride * stride;
  };
  const int x_start = lattice(pose.cx - pose.radius - 1.0),
            y_start = lattice(pose.cy - pose.radius - 1.0);
  const int x_end = std::min(R, int(std::ceil(pose.cx + pose.radius + 1.0)));
  const int y_end = std::min(R, int(std::ceil(pose.cy + pose.radius + 1.0)));
  size_t in_shape = 0, in_both = 0;
  with_shape(s, [&](auto tag) {
    for (int y = y_start; y < y_end; y += stride) {
      const float dy = float(y) + 0.5f - float(pose.cy);
      for (int x = x_start; x < x_end; x += stride) {
        const float dx = float(x) + 0.5f - float(pose.cx);
        const float lx = cs * dx - sn * dy, ly = sn * dx + cs * dy;
        if (shapes::signed_distance<decltype(tag)::value>(lx * inv_r, ly * inv_r) > 0.0f) continue;
        ++in_shape;
        in_both += o.member[static_cast<size_t>(y * R + x)];
      }
    }
  });
  const size_t either = object_on_lattice + in_shape - in_both;
  return either == 0 ? 0.0f : float(double(in_both) / double(either));
}

// The pose of shape s that best covers the object: centred on its centroid (a shape's origin is
// its area centroid), radius from its area (x 0.85..1.15), rotation within +-30 degrees (0 for the
// circle and the ring); a grid then a pattern search of halving steps.
inline ShapeFit fit_shape(const Object& o, int R, Shape s) {
  const double area = double(o.pixels.size());
  const double r0 = std::sqrt(area / unit_area(s));
  const int stride = std::max(1, int(r0 / 24.0));  // at most ~50 x 50 samples at 256 px
  size_t on_lattice = 0;
  for (int p : o.pixels) on_lattice += (p % R) % stride == 0 && (p / R) % stride == 0;
  const bool turns = s != Shape::circle && s != Shape::ring;
  ShapeFit best;
  const auto consider = [&](double scale, double degrees) {
    const Pose pose{o.cx, o.cy, r0 * scale, degrees};
    const float iou = pose_iou(o, on_lattice, R, s, pose, stride);
    if (iou > best.iou) best = {iou, pose};
  };
  for (double scale : {0.92, 1.0, 1.08})
    for (int k = -3; k <= 3; ++k)
      if (turns || k == 0) consider(scale, 10.0 * k);
  if (best.iou == 0.0f) return best;
  double step_scale = 0.04, step_degrees = 5.0;
  for (int round = 0; round < 3; ++round, step_scale *= 0.5, step_degrees *= 0.5) {
    const Pose centre = best.pose;
    const double scale = centre.radius / r0;
    for (double ds : {-step_scale, step_scale})
      if (std::abs(scale + ds - 1.0) <= 0.15) consider(scale + ds, centre.rotation_degrees);
    if (turns)
      for (double dd : {-step_degrees, step_degrees})
        if (std::abs(centre.rotation_degrees + dd) <= double(kMaxRotationDegrees))
          consider(best.pose.radius / r0, centre.rotation_degrees + dd);
  }
  return best;
}

// ---- Texture: a signature of the interior's lightness ----

using TextureSignature = std::array<float, 5>;

// The four frequencies of the world's textures in the subject's frame, for a period p as
// render.hpp draws it at a pose: (0, 1/p) stripes, (1/p, 0) and (0, 1/p) the dots' grid,
// (1/p, +-1/p) checks; cos and sin of each at every pixel of a region.
struct TextureBasis {
  static constexpr std::array<std::array<double, 2>, 4> kFrequencies = {
      {{0.0, 1.0}, {1.0, 0.0}, {1.0, 1.0}, {1.0, -1.0}}};
  std::array<std::vector<double>, 4> cos, sin;

  TextureBasis(const std::vector<int>& pixels, int R, const Pose& pose) {
    const double angle = pose.rotation_degrees * (3.14159265358979323846 / 180.0);
    const double cs = std::cos(angle), sn = std::sin(angle);
    const double period =
        std::max(double(kTexturePeriod) * pose.radius, double(kMinTexturePeriodPixels));
    const double w = 2.0 * 3.14159265358979323846 / period;
    for (size_t k = 0; k < kFrequencies.size(); ++k) {
      cos[k].resize(pixels.size()), sin[k].resize(pixels.size());
      for (size_t i = 0; i < pixels.size(); ++i) {
        const double dx = pixels[i] % R + 0.5 - pose.cx, dy = pixels[i] / R + 0.5 - pose.cy;
        const double lx = cs * dx - sn * dy, ly = sn * dx + cs * dy;  // the subject's frame
        const double phase = w * (kFrequencies[k][0] * lx + kFrequencies[k][1] * ly);
        cos[k][i] = std::cos(phase), sin[k][i] = std::sin(phase);
      }
    }
  }
};

// Over `pixels` (inside both the object and the fitted shape), from the Fourier coefficients of L*
// at the basis' frequencies (as energy: blind to where the pattern starts): texturedness, the
// amplitude of those components over the subject's own tone contrast (|L*(colour) - L*(shade)|),
// ramped by kTexturedness (0 for a solid subject; a blurred texture keeps most of it, noise
// spreads thinly over every frequency); then, times it, the share of L*'s variance at each
// frequency (1 for a pure sinusoid), which is the pattern whatever its contrast.
inline TextureSignature texture_signature(const std::vector<float>& L,
                                          const std::vector<int>& pixels, const TextureBasis& basis,
                                          float tone_contrast) {
  TextureSignature out{};
  if (pixels.size() < 2) return out;
  double sum = 0.0;
  for (int p : pixels) sum += L[static_cast<size_t>(p)];
  const double mean = sum / double(pixels.size());
  double variance = 0.0;
  for (int p : pixels) {
    const double v = L[static_cast<size_t>(p)] - mean;
    variance += v * v;
  }
  if (variance <= 0.0) return out;
  std::array<double, 4> energy{};  // c^2 + s^2 at each frequency
  double amplitude2 = 0.0;         // sum of the components' squared amplitudes (2 |c + i s| / n)^2
  const double n = double(pixels.size());
  for (size_t k = 0; k < basis.cos.size(); ++k) {
    double c = 0.0, s = 0.0;
    for (size_t i = 0; i < pixels.size(); ++i) {
      const double v = L[static_cast<size_t>(pixels[i])] - mean;
      c += v * basis.cos[k][i], s += v * basis.sin[k][i];
    }
    energy[k] = c * c + s * s;
    amplitude2 += 4.0 * energy[k] / (n * n);
  }
  const float textured =
      ramp_up(float(std::sqrt(amplitude2) / double(std::max(tone_contrast, 1.0f))),
              kTexturedness[0], kTexturedness[1]);
  out[0] = textured;
  for (size_t k = 0; k < energy.size(); ++k)
    out[k + 1] = textured * float(std::min(1.0, 2.0 * energy[k] / (n * variance)));
  return out;
}

inline float signature_distance(const TextureSignature& a, const TextureSignature& b) {
  float sum = 0.0f;
  for (size_t k = 0; k < a.size(); ++k) sum += (a[k] - b[k]) * (a[k] - b[k]);
  return std::sqrt(sum);
}

// L* of the subject (shape, colour, texture) drawn on black at `pose`, into `L` over the pose's
// square (as render.hpp draws it: coverage, tones mixed by the texture's weight).
inline void draw_lightness(Shape shape, Colour colour, Texture texture, const Pose& pose, int R,
                           std::vector<float>& L) {
  const double angle = pose.rotation_degrees * (3.14159265358979323846 / 180.0);
  const float cs = float(std::cos(angle)), sn = float(std::sin(angle));
  const float r = float(pose.radius), inv_r = 1.0f / r;
  const float period = std::max(kTexturePeriod * r, kMinTexturePeriodPixels);
  const Tones t = tones(rgb(colour), shade(colour));
  const std::array<double, 256>& linear = srgb_linear_table();
  const int x0 = std::max(0, int(std::floor(pose.cx - pose.radius - 2.0)));
  const int x1 = std::min(R, int(std::ceil(pose.cx + pose.radius + 2.0)));
  const int y0 = std::max(0, int(std::floor(pose.cy - pose.radius - 2.0)));
  const int y1 = std::min(R, int(std::ceil(pose.cy + pose.radius + 2.0)));
  with_shape(shape, [&](auto tag) {
    for (int y = y0; y < y1; ++y) {
      const float dy = float(y) + 0.5f - float(pose.cy);
      for (int x = x0; x < x1; ++x) {
        const float dx = float(x) + 0.5f - float(pose.cx);
        const float lx = cs * dx - sn * dy, ly = sn * dx + cs * dy;
        const float cover = saturate(
            0.5f - shapes::signed_distance<decltype(tag)::value>(lx * inv_r, ly * inv_r) * r);
        float px[3];
        put(px, t, texture_weight(texture, lx, ly, period));
        // Rounded to 8 bits as the renderer's image is, then its L*.
        const auto level = [&](int c) { return linear[static_cast<size_t>(px[c] * cover + 0.5f)]; };
        const double luminance = 0.2126729 * level(0) + 0.7151522 * level(1) + 0.0721750 * level(2);
        L[static_cast<size_t>(y * R + x)] = float(116.0 * lab_f(luminance) - 16.0);
      }
    }
  });
}

struct ConceptMeasures {
  float colour = 0.0f, shape = 0.0f, cp = 0.0f;
  std::optional<float> texture = 0.0f;
  ShapeFit fit;
};

inline float colour_share(const Object& o, const std::vector<int>& classes, Colour colour) {
  const std::vector<int>& pixels = o.interior.empty() ? o.pixels : o.interior;
  size_t votes = 0;
  for (int p : pixels) votes += classes[static_cast<size_t>(p)] == static_cast<int>(colour);
  return float(double(votes) / double(pixels.size()));
}

// The pixels whose centre shape s covers at `pose` (coverage >= 1/2), as an object.
inline Object shape_object(Shape s, const Pose& pose, int R) {
  const double angle = pose.rotation_degrees * (3.14159265358979323846 / 180.0);
  const float cs = float(std::cos(angle)), sn = float(std::sin(angle));
  const float r = float(pose.radius), inv_r = 1.0f / r;
  const int x0 = std::max(0, int(std::floor(pose.cx - pose.radius - 1.0)));
  const int x1 = std::min(R, int(std::ceil(pose.cx + pose.radius + 1.0)));
  const int y0 = std::max(0, int(std::floor(pose.cy - pose.radius - 1.0)));
  const int y1 = std::min(R, int(std::ceil(pose.cy + pose.radius + 1.0)));
  Object o;
  with_shape(s, [&](auto tag) {
    for (int y = y0; y < y1; ++y) {
      const float dy = float(y) + 0.5f - float(pose.cy);
      for (int x = x0; x < x1; ++x) {
        const float dx = float(x) + 0.5f - float(pose.cx);
        const float lx = cs * dx - sn * dy, ly = sn * dx + cs * dy;
        if (shapes::signed_distance<decltype(tag)::value>(lx * inv_r, ly * inv_r) <= 0.0f)
          o.pixels.push_back(y * R + x);
      }
    }
  });
  if (!o.pixels.empty()) describe(o, R);
  return o;
}

inline std::vector<int> common(const std::vector<int>& pixels, const std::vector<int>& others,
                               size_t R2) {
  std::vector<uint8_t> in(R2, 0);
  for (int p : others) in[static_cast<size_t>(p)] = 1;
  std::vector<int> out;
  for (int p : pixels)
    if (in[static_cast<size_t>(p)]) out.push_back(p);
  return out;
}

// Texture: the object's signature against those of the truth subject drawn at the fitted pose in
// each texture, over the pixels inside both the object and the fitted shape (so that neither's
// edge counts as texture): 1 within kTextureTolerance of the scale (the distance from the truth
// texture's to the nearest other one's), 0 at the scale. None when the pixels are too few.
inline std::optional<float> texture_score(const Object& o, const std::vector<float>& lightness,
                                          int R, const Subject& truth, const Pose& pose) {
  const size_t R2 = static_cast<size_t>(R) * static_cast<size_t>(R);
  const Object fitted = shape_object(truth.shape, pose, R);
  std::vector<int> pixels = common(o.deep, fitted.deep, R2);
  if (pixels.size() < kDeepTexturePixels) pixels = common(o.interior, fitted.interior, R2);
  if (pixels.size() < kMinTexturePixels) return std::nullopt;
  const TextureBasis basis(pixels, R, pose);
  const float tone_contrast = std::abs(lab_of(rgb(truth.colour)).L - lab_of(shade(truth.colour)).L);
  const TextureSignature measured = texture_signature(lightness, pixels, basis, tone_contrast);
  std::vector<float> L(R2, 0.0f);
  std::array<TextureSignature, kTextureCount> expected{};
  for (int t = 0; t < kTextureCount; ++t) {
    draw_lightness(truth.shape, truth.colour, Texture(t), pose, R, L);
    expected[static_cast<size_t>(t)] = texture_signature(L, pixels, basis, tone_contrast);
  }
  const TextureSignature& own = expected[static_cast<size_t>(truth.texture)];
  float nearest_other = 1e9f;
  for (int t = 0; t < kTextureCount; ++t)
    if (Texture(t) != truth.texture)
      nearest_other =
          std::min(nearest_other, signature_distance(own, expected[static_cast<size_t>(t)]));
  const float scale = std::max(nearest_other, kMinTextureSeparation);
  return ramp_down(signature_distance(measured, own) / scale, kTextureTolerance, 1.0f);
}

inline float concept_of(float shape, float colour, std::optional<float> texture) {
  if (!texture) return float(std::sqrt(double(shape) * double(colour)));
  return float(std::cbrt(double(shape) * double(colour) * double(*texture)));
}

// One subject against one object: CP's measures (shape and texture only where the colour is there
// at all, unless `always`: a subject of no colour share has CP 0 whatever its shape).
inline ConceptMeasures concept_measures(const Object& o, const std::vector<int>& classes,
                                        const std::vector<float>& lightness, int R,
                                        const Subject& truth, bool always) {
  ConceptMeasures m;
  m.colour = colour_share(o, classes, truth.colour);
  if (m.colour <= 0.0f && !always) return m;
  m.fit = fit_shape(o, R, truth.shape);
  m.shape = ramp_up(m.fit.iou, kShapeIoU[0], kShapeIoU[1]);
  if (m.fit.iou > 0.0f) m.texture = texture_score(o, lightness, R, truth, m.fit.pose);
  m.cp = concept_of(m.shape, m.colour, m.texture);
  return m;
}

struct Placement {
  float position = 0.0f, size = 0.0f;
};
// PF's measures of one subject at one object. `truth_extent` in pixels.
inline Placement placement(const Object& o, const Subject& truth, double truth_extent, int R) {
  const double side = double(R);
  const double gx = kGridCentre[static_cast<size_t>(column_of(truth.position))];
  const double gy = kGridCentre[static_cast<size_t>(row_of(truth.position))];
  const double off = std::hypot(o.cx / side - gx, o.cy / side - gy);
  const double ratio = std::abs(std::log(o.extent / truth_extent));
  return {ramp_down(float(off), kPosition[0], kPosition[1]),
          ramp_down(float(ratio), std::log(kSize[0]), std::log(kSize[1]))};
}

inline std::vector<uint8_t> dilated(const std::vector<uint8_t>& mask, int R) {
  std::vector<uint8_t> out(mask.size(), 0);
  for (int y = 0; y < R; ++y)
    for (int x = 0; x < R; ++x) {
      if (!mask[static_cast<size_t>(y * R + x)]) continue;
      for (int v = std::max(0, y - 1); v <= std::min(R - 1, y + 1); ++v)
        for (int u = std::max(0, x - 1); u <= std::min(R - 1, x + 1); ++u)
          out[static_cast<size_t>(v * R + u)] = 1;
    }
  return out;
}

// An object found by its colour (on a background that is not the truth's) takes in its edge: the
// pixels next to it nearer to its tones than to the local background (the median, channel by
// channel, of the pixels two away from it): those it covers more than half of, as a rendered
// mask's >= 1/2.
inline void grow_by_local_background(Object& o, const std::vector<Lab>& lab, Colour colour, int R) {
  const std::vector<uint8_t> near = dilated(o.member, R);
  const std::vector<uint8_t> far = dilated(near, R);
  std::array<std::vector<float>, 3> ring;
  for (size_t i = 0; i < near.size(); ++i)
    if (far[i] && !near[i])
      ring[0].push_back(lab[i].L), ring[1].push_back(lab[i].a), ring[2].push_back(lab[i].b);
  if (ring[0].empty()) return;
  std::array<float, 3> median{};
  for (size_t c = 0; c < 3; ++c) {
    std::vector<float>& v = ring[c];
    std::nth_element(v.begin(), v.begin() + static_cast<std::ptrdiff_t>(v.size() / 2), v.end());
    median[c] = v[v.size() / 2];
  }
  const Lab local{median[0], median[1], median[2]};
  const ColourLine tones = subject_tones(colour);
  bool grew = false;
  for (size_t i = 0; i < near.size(); ++i)
    if (near[i] && !o.member[i] && line_distance(tones, lab[i]) < delta_e(lab[i], local))
      o.pixels.push_back(static_cast<int>(i)), grew = true;
  if (grew) describe(o, R);
}

}  // namespace detail

// Scores one generated image (RGB, the item's resolution) against its item's truth.
inline SynthScore score(const SynthBenchItem& item, const Image& image) {
  const int64_t resolution = item.resolution;
  MENTOR_CHECK(image.width == resolution && image.height == resolution && image.channels == 3 &&
                   image.data.size() == static_cast<size_t>(resolution * resolution * 3),
               "synthbench score: item ", item.id, " wants a ", resolution, "x", resolution,
               " RGB image, got ", image.width, "x", image.height, "x", image.channels);
  const Scene& truth = item.truth;
  MENTOR_CHECK(!truth.subjects.empty() && truth.subjects.size() <= size_t{kMaxSubjects},
               "synthbench score: item ", item.id, " has ", truth.subjects.size(),
               " subjects, not 1 or 2");
  const int R = static_cast<int>(resolution);
  const size_t R2 = static_cast<size_t>(R) * static_cast<size_t>(R);
  const size_t n = truth.subjects.size();

  // The image: its colours, its distance from the truth background, its objects.
  const std::vector<detail::Lab> lab = detail::image_lab(image);
  const std::vector<float> distance = detail::background_distance(lab, truth.background, R);
  const std::vector<float> apart = detail::foreground_distance(lab, distance, truth.background);
  std::vector<int> classes(R2);
  std::vector<float> lightness(R2);
  std::vector<uint8_t> foreground(R2);
  for (size_t i = 0; i < R2; ++i) {
    classes[i] = detail::tone_class(lab[i]);
    lightness[i] = lab[i].L;
    foreground[i] = apart[i] > kForegroundDeltaE;
  }
  std::vector<detail::Object> candidates = detail::objects_of(foreground, R, 6);
  for (detail::Object& o : candidates) detail::soft_extent(o, apart, R);
  for (const Subject& s : truth.subjects) {
    std::vector<uint8_t> own_colour(R2);
    for (size_t i = 0; i < R2; ++i) own_colour[i] = classes[i] == static_cast<int>(s.colour);
    for (detail::Object& o : detail::objects_of(own_colour, R, 2)) {
      detail::grow_by_local_background(o, lab, s.colour, R);
      // An object found by difference already is seen again when this one, with its edge pixels
      // (foreground pixels next to it), is nine tenths of it and it nine tenths of that.
      const std::vector<uint8_t> near = detail::dilated(o.member, R);
      size_t grown = 0;
      for (size_t i = 0; i < R2; ++i) grown += o.member[i] || (near[i] && foreground[i]);
      bool seen = false;
      for (const detail::Object& c : candidates) {
        size_t common = 0;
        for (int p : c.pixels)
          common += o.member[static_cast<size_t>(p)] || near[static_cast<size_t>(p)];
        seen = seen || (common * 10 >= 9 * c.pixels.size() && common * 10 >= 9 * grown);
      }
      if (!seen) candidates.push_back(std::move(o));
    }
  }
  const size_t C = candidates.size();

  // The truth measured alike: each subject's extent on the rendered truth.
  const RenderedScene rendered = render(truth, resolution);
  const std::vector<detail::Lab> truth_lab = detail::image_lab(rendered.image);
  const std::vector<float> truth_distance = detail::foreground_distance(
      truth_lab, detail::background_distance(truth_lab, truth.background, R), truth.background);
  std::vector<double> truth_extent(n);
  std::vector<uint8_t> truth_cover(R2, 0);
  for (size_t k = 0; k < n; ++k) {
    detail::Object o;
    for (size_t i = 0; i < R2; ++i) {
      const float m = rendered.masks[k].data[i];
      if (m > 0.0f) truth_cover[i] = 1;
      if (m > 0.0f && truth_distance[i] > kForegroundDeltaE) o.pixels.push_back(int(i));
    }
    MENTOR_CHECK(!o.pixels.empty(), "synthbench score: item ", item.id, "'s subject ", k,
                 " is invisible on its own background (an item that synthbench_item never makes)");
    detail::describe(o, R);
    detail::soft_extent(o, truth_distance, R);
    truth_extent[k] = o.extent;
  }

  // Every subject against every object, then the match that maximises CP (ties: the object
  // nearer the subject's place; a found object before none).
  std::vector<std::vector<detail::ConceptMeasures>> concepts(
      n, std::vector<detail::ConceptMeasures>(C));
  std::vector<std::vector<detail::Placement>> place(n, std::vector<detail::Placement>(C));
  for (size_t k = 0; k < n; ++k)
    for (size_t c = 0; c < C; ++c) {
      concepts[k][c] =
          detail::concept_measures(candidates[c], classes, lightness, R, truth.subjects[k], false);
      place[k][c] = detail::placement(candidates[c], truth.subjects[k], truth_extent[k], R);
    }
  const auto key = [&](size_t k, int c) {
    if (c < 0) return 0.0;
    const auto cc = static_cast<size_t>(c);
    return double(concepts[k][cc].cp) + 1e-3 * double(place[k][cc].position);
  };
  std::vector<int> order(C + 1, -1);  // every object, then none
  for (size_t c = 0; c < C; ++c) order[c] = static_cast<int>(c);
  std::vector<int> match(n, -1);
  double best = -1.0;
  for (int c0 : order) {
    if (n == 1) {
      if (key(0, c0) > best) best = key(0, c0), match[0] = c0;
      continue;
    }
    for (int c1 : order) {
      if (c0 >= 0 && c1 >= 0) {  // two distinct objects, not two views of one
        const detail::Object& a = candidates[static_cast<size_t>(c0)];
        const detail::Object& b = candidates[static_cast<size_t>(c1)];
        if (c0 == c1 || detail::overlap(a, b) * 2 > std::min(a.pixels.size(), b.pixels.size()))
          continue;
      }
      if (key(0, c0) + key(1, c1) > best) best = key(0, c0) + key(1, c1), match = {c0, c1};
    }
  }

  SynthScore out;
  out.id = item.id;
  out.category = item.category;
  out.subjects.resize(n);
  std::vector<uint8_t> matched = truth_cover;
  for (size_t k = 0; k < n; ++k) {
    SynthSubjectScore& s = out.subjects[k];
    if (match[k] < 0) continue;
    const auto c = static_cast<size_t>(match[k]);
    const detail::Object& o = candidates[c];
    detail::ConceptMeasures m = concepts[k][c];
    if (m.fit.iou == 0.0f)  // not measured while matching (no colour share): measure now
      m = detail::concept_measures(o, classes, lightness, R, truth.subjects[k], true);
    s.found = true;
    s.shape = m.shape, s.colour = m.colour, s.texture = m.texture, s.cp = m.cp;
    s.position = place[k][c].position, s.size = place[k][c].size;
    const double side = double(R);
    s.x = float(o.cx / side), s.y = float(o.cy / side);
    s.extent = float(o.extent / side), s.truth_extent = float(truth_extent[k] / side);
    s.rotation_degrees = float(m.fit.pose.rotation_degrees);
    s.area = float(double(o.pixels.size()) / double(R2));
    for (int p : o.pixels) matched[static_cast<size_t>(p)] = 1;
  }

  // Background: away from the truth's subjects and the matched objects.
  const std::vector<uint8_t> excluded = detail::dilated(matched, R);
  double background_sum = 0.0;
  size_t background_count = 0;
  for (size_t i = 0; i < R2; ++i)
    if (!excluded[i])
      background_sum += detail::ramp_down(distance[i], kBackgroundDeltaE[0], kBackgroundDeltaE[1]),
          ++background_count;
  out.background = background_count == 0 ? 0.0f : float(background_sum / double(background_count));

  double cp = 0.0, texture = 0.0;
  int textures = 0;
  for (const SynthSubjectScore& s : out.subjects) {
    out.shape += s.shape / float(n), out.colour += s.colour / float(n);
    if (s.texture) texture += *s.texture, ++textures;
    cp += s.cp;
  }
  if (textures > 0) out.texture = float(texture / textures);
  out.cp = float(cp / double(n));
  out.position = out.subjects[0].position, out.size = out.subjects[0].size;
  double pf = double(out.position) * double(out.size) * double(out.background);
  if (n == 2) {
    const SynthSubjectScore& s = out.subjects[1];
    out.second = s.found ? float(std::sqrt(double(s.position) * double(s.size))) : 0.0f;
    out.pf = float(std::sqrt(std::sqrt(pf * double(*out.second))));
  } else {
    out.pf = float(std::cbrt(pf));
  }
  return out;
}

// ---- Report -------------------------------------------------------------------------------------

// Means over a set of items (a category, or all of them).
struct SynthBenchRow {
  std::string name;  // the category's, or "overall"
  int items = 0;
  double cp = 0.0, pf = 0.0;
  double cp_pf = 0.0;                // mean CP x mean PF
  std::optional<double> cp_over_pf;  // mean CP / mean PF (none when mean PF is 0)
  double shape = 0.0, colour = 0.0, position = 0.0, size = 0.0, background = 0.0;
  std::optional<double> texture;  // over the items whose texture was measured
  std::optional<double> second;   // over the two-subject items
};

struct SynthBenchReport {
  std::vector<SynthBenchRow> rows;  // each category with items, in order, then "overall"
  std::vector<SynthScore> scores;
};

namespace detail {

inline SynthBenchRow report_row(std::string row_name,
                                const std::vector<const SynthScore*>& scores) {
  SynthBenchRow row;
  row.name = std::move(row_name);
  row.items = static_cast<int>(scores.size());
  if (scores.empty()) return row;
  double second = 0.0, texture = 0.0;
  int seconds = 0, textures = 0;
  for (const SynthScore* s : scores) {
    row.cp += s->cp, row.pf += s->pf;
    row.shape += s->shape, row.colour += s->colour;
    row.position += s->position, row.size += s->size, row.background += s->background;
    if (s->texture) texture += *s->texture, ++textures;
    if (s->second) second += *s->second, ++seconds;
  }
  const double count = double(scores.size());
  row.cp /= count, row.pf /= count;
  row.shape /= count, row.colour /= count;
  row.position /= count, row.size /= count, row.background /= count;
  if (textures > 0) row.texture = texture / double(textures);
  if (seconds > 0) row.second = second / double(seconds);
  row.cp_pf = row.cp * row.pf;
  if (row.pf > 0.0) row.cp_over_pf = row.cp / row.pf;
  return row;
}

}  // namespace detail

inline SynthBenchReport synthbench_report(std::span<const SynthScore> scores) {
  SynthBenchReport report;
  report.scores.assign(scores.begin(), scores.end());
  for (int c = 0; c < kSynthCategoryCount; ++c) {
    std::vector<const SynthScore*> in;
    for (const SynthScore& s : report.scores)
      if (s.category == SynthCategory(c)) in.push_back(&s);
    if (!in.empty())
      report.rows.push_back(detail::report_row(std::string(name(SynthCategory(c))), in));
  }
  std::vector<const SynthScore*> all;
  for (const SynthScore& s : report.scores) all.push_back(&s);
  report.rows.push_back(detail::report_row("overall", all));
  return report;
}

// What makes an item's image: a model (prompt and references in, picture out), or a stand-in.
using SynthBenchGenerate = std::function<Image(const SynthBenchItem&)>;

// Generates, scores and reports every item, in order. The seam for a checkpoint-driven run: wrap
// the model's generation in `generate`.
inline SynthBenchReport evaluate_synthbench(std::span<const SynthBenchItem> items,
                                            const SynthBenchGenerate& generate) {
  std::vector<SynthScore> scores;
  scores.reserve(items.size());
  for (const SynthBenchItem& item : items) scores.push_back(score(item, generate(item)));
  return synthbench_report(scores);
}

inline nlohmann::json to_json(const SynthBenchRow& row) {
  nlohmann::json j = {{"items", row.items},
                      {"cp", row.cp},
                      {"pf", row.pf},
                      {"cp_pf", row.cp_pf},
                      {"cp_over_pf", nullptr},
                      {"shape", row.shape},
                      {"colour", row.colour},
                      {"texture", nullptr},
                      {"position", row.position},
                      {"size", row.size},
                      {"background", row.background},
                      {"second", nullptr}};
  if (row.cp_over_pf) j["cp_over_pf"] = *row.cp_over_pf;
  if (row.texture) j["texture"] = *row.texture;
  if (row.second) j["second"] = *row.second;
  return j;
}

inline nlohmann::json to_json(const SynthScore& s) {
  nlohmann::json subjects = nlohmann::json::array();
  for (const SynthSubjectScore& t : s.subjects) {
    subjects.push_back({{"found", t.found},
                        {"cp", t.cp},
                        {"shape", t.shape},
                        {"colour", t.colour},
                        {"texture", nullptr},
                        {"position", t.position},
                        {"size", t.size},
                        {"x", t.x},
                        {"y", t.y},
                        {"extent", t.extent},
                        {"truth_extent", t.truth_extent},
                        {"rotation_degrees", t.rotation_degrees},
                        {"area", t.area}});
    if (t.texture) subjects.back()["texture"] = *t.texture;
  }
  nlohmann::json j = {{"id", s.id},         {"category", std::string(name(s.category))},
                      {"cp", s.cp},         {"pf", s.pf},
                      {"shape", s.shape},   {"colour", s.colour},
                      {"texture", nullptr}, {"position", s.position},
                      {"size", s.size},     {"background", s.background},
                      {"second", nullptr},  {"subjects", subjects}};
  if (s.texture) j["texture"] = *s.texture;
  if (s.second) j["second"] = *s.second;
  return j;
}

// {"categories": {name: row}, "overall": row, "items": [score]}.
inline nlohmann::json to_json(const SynthBenchReport& report) {
  nlohmann::json categories = nlohmann::json::object();
  nlohmann::json overall;
  for (const SynthBenchRow& row : report.rows) {
    if (row.name == "overall")
      overall = to_json(row);
    else
      categories[row.name] = to_json(row);
  }
  nlohmann::json items = nlohmann::json::array();
  for (const SynthScore& s : report.scores) items.push_back(to_json(s));
  return {{"categories", categories}, {"overall", overall}, {"items", items}};
}

namespace detail {
inline std::string fixed3(double v) {
  char text[32];
  std::snprintf(text, sizeof text, "%.3f", v);
  return text;
}
}  // namespace detail

// DreamBench++'s table (CP, PF, CP·PF, CP/PF per category and overall), then the measures.
inline std::string to_markdown(const SynthBenchReport& report,
                               std::string_view title = "SynthBench") {
  std::string md = "## " + std::string(title) + "\n\n";
  md += "| Category | Items | CP↑ | PF↑ | CP·PF↑ | CP/PF↓ |\n|---|---:|---:|---:|---:|---:|\n";
  for (const SynthBenchRow& r : report.rows) {
    const bool overall = r.name == "overall";
    md += "| " + (overall ? "**overall**" : r.name) + " | " + std::to_string(r.items) + " | " +
          detail::fixed3(r.cp) + " | " + detail::fixed3(r.pf) + " | " + detail::fixed3(r.cp_pf) +
          " | " + (r.cp_over_pf ? detail::fixed3(*r.cp_over_pf) : std::string("—")) + " |\n";
  }
  md += "\n| Category | shape | colour | texture | position | size | background | second |\n";
  md += "|---|---:|---:|---:|---:|---:|---:|---:|\n";
  for (const SynthBenchRow& r : report.rows)
    md += "| " + (r.name == "overall" ? std::string("**overall**") : r.name) + " | " +
          detail::fixed3(r.shape) + " | " + detail::fixed3(r.colour) + " | " +
          (r.texture ? detail::fixed3(*r.texture) : std::string("—")) + " | " +
          detail::fixed3(r.position) + " | " + detail::fixed3(r.size) + " | " +
          detail::fixed3(r.background) + " | " +
          (r.second ? detail::fixed3(*r.second) : std::string("—")) + " |\n";
  return md;
}

}  // namespace mentor::data::world
