// Captions of the world: every attribute parsed back from 10^4 captions by a parser that knows
// only the name tables (not the templates), every template used; the palette and its shades
// nameable (nearest colour in CIELAB is their own).
#include <array>
#include <cmath>
#include <cstdint>
#include <optional>
#include <set>
#include <sstream>
#include <string>
#include <string_view>
#include <vector>

#include "catch.hpp"
#include "mentor/data/world/caption.hpp"
#include "mentor/data/world/sampling.hpp"

namespace test_world_caption {

namespace world = mentor::data::world;
using world::Scene;
using world::Subject;

namespace {

template <size_t N>
std::optional<int> index_in(const std::array<std::string_view, N>& names, std::string_view word) {
  for (size_t i = 0; i < N; ++i)
    if (names[i] == word) return static_cast<int>(i);
  return std::nullopt;
}

std::optional<int> size_of(std::string_view word) {
  for (size_t i = 0; i < world::kSizeWords.size(); ++i)
    for (std::string_view w : world::kSizeWords[i])
      if (w == word) return static_cast<int>(i);
  return std::nullopt;
}

struct ParsedSubject {
  int shape = -1, colour = -1, texture = 0, size = -1, position = -1;
};
struct Parsed {
  std::vector<ParsedSubject> subjects;
  std::string background_kind = "solid";
  std::vector<int> background_colours;
};

// Words of a caption: lower case, split at spaces, punctuation dropped.
std::vector<std::string> words_of(const std::string& caption) {
  std::string cleaned;
  for (char c : caption) cleaned += (c == ',' || c == ';' || c == ':') ? ' ' : c;
  std::istringstream in(cleaned);
  std::vector<std::string> words;
  for (std::string w; in >> w;) words.push_back(w);
  return words;
}

// A parser over the name tables: a subject is a run of size/colour/texture words ending in a
// shape word; positions are the place names, longest first, assigned to subjects in order; the
// background is every colour word outside the subjects, in order, and its kind from the words
// "vertical", "horizontal", "striped", "checkered", "mottled" outside the subjects.
Parsed parse(const std::string& caption) {
  const std::vector<std::string> words = words_of(caption);
  std::vector<bool> used(words.size(), false);
  Parsed parsed;
  for (size_t k = 0; k < words.size(); ++k) {
    const auto shape = index_in(world::kShapeNames, words[k]);
    if (!shape) continue;
    ParsedSubject s;
    s.shape = *shape;
    used[k] = true;
    for (size_t j = k; j-- > 0;) {
      if (const auto c = index_in(world::kColourNames, words[j])) {
        REQUIRE(s.colour == -1);
        s.colour = *c;
      } else if (const auto t = index_in(world::kTextureNames, words[j])) {
        s.texture = *t;
      } else if (const auto z = size_of(words[j])) {
        REQUIRE(s.size == -1);
        s.size = *z;
      } else {
        break;
      }
      used[j] = true;
    }
    parsed.subjects.push_back(s);
  }
  size_t next_subject = 0;
  for (size_t k = 0; k < words.size(); ++k) {
    if (used[k]) continue;
    // Two-word places first ("top left"), then one-word ones ("top", "center").
    std::optional<int> place;
    if (k + 1 < words.size() && !used[k + 1]) {
      place = index_in(world::kPositionNames, words[k] + " " + words[k + 1]);
      if (place) used[k + 1] = true;
    }
    if (!place) place = index_in(world::kPositionNames, words[k]);
    if (place) {
      REQUIRE(next_subject < parsed.subjects.size());
      parsed.subjects[next_subject++].position = *place;
      used[k] = true;
      continue;
    }
    if (const auto c = index_in(world::kColourNames, words[k]))
      parsed.background_colours.push_back(*c);
    if (words[k] == "vertical") parsed.background_kind = "vertical gradient";
    if (words[k] == "horizontal") parsed.background_kind = "horizontal gradient";
    if (words[k] == "striped") parsed.background_kind = "striped";
    if (words[k] == "checkered") parsed.background_kind = "checkered";
    if (words[k] == "mottled") parsed.background_kind = "mottled";
  }
  return parsed;
}

// sRGB -> CIELAB (D65), Delta E 1976.
std::array<double, 3> lab(world::Rgb c) {
  const auto linear = [](double v) {
    v /= 255.0;
    return v <= 0.04045 ? v / 12.92 : std::pow((v + 0.055) / 1.055, 2.4);
  };
  const double r = linear(c.r), g = linear(c.g), b = linear(c.b);
  const double x = (0.4124 * r + 0.3576 * g + 0.1805 * b) / 0.95047;
  const double y = 0.2126 * r + 0.7152 * g + 0.0722 * b;
  const double z = (0.0193 * r + 0.1192 * g + 0.9505 * b) / 1.08883;
  const auto f = [](double t) { return t > 0.008856 ? std::cbrt(t) : 7.787 * t + 16.0 / 116.0; };
  return {116.0 * f(y) - 16.0, 500.0 * (f(x) - f(y)), 200.0 * (f(y) - f(z))};
}
double delta_e(world::Rgb a, world::Rgb b) {
  const auto p = lab(a), q = lab(b);
  return std::sqrt((p[0] - q[0]) * (p[0] - q[0]) + (p[1] - q[1]) * (p[1] - q[1]) +
                   (p[2] - q[2]) * (p[2] - q[2]));
}

}  // namespace

TEST_CASE("world: every attribute parses back from 10^4 captions", "[data][world]") {
  std::set<std::string> forms;
  for (uint64_t i = 0; i < 10000; ++i) {
    const world::Split split = i % 4 == 3 ? world::Split::heldout : world::Split::train;
    world::SceneOptions options;
    options.min_subjects = 0;
    if (split == world::Split::heldout) options.min_subjects = 1;
    const Scene scene = world::sample_scene(42, split, i, options);
    const std::string text = world::caption(scene);
    CAPTURE(i, text);
    const Parsed parsed = parse(text);
    REQUIRE(parsed.subjects.size() == scene.subjects.size());
    for (size_t k = 0; k < scene.subjects.size(); ++k) {
      const Subject& s = scene.subjects[k];
      CHECK(parsed.subjects[k].shape == int(s.shape));
      CHECK(parsed.subjects[k].colour == int(s.colour));
      CHECK(parsed.subjects[k].texture == int(s.texture));
      CHECK(parsed.subjects[k].size == int(s.size));
      CHECK(parsed.subjects[k].position == int(s.position));
    }
    const world::Background& b = scene.background;
    CHECK(parsed.background_kind == std::string(world::name(b.kind)));
    std::vector<int> colours = {int(b.colour)};
    if (b.second != b.colour) colours.push_back(int(b.second));
    CHECK(parsed.background_colours == colours);
    // Which template: told apart by its fixed words and by what comes first.
    std::string form;
    const std::string bg = world::background_phrase(b);
    if (text.find("a picture of") == 0) {
      form = "picture";
    } else if (text.find("two shapes") == 0) {
      form = "two shapes";
    } else if (text.find(bg) == 0) {
      form = "background first";
    } else if (text.find(':') != std::string::npos) {
      form = "place: subject";
    } else if (text.find("the background is") != std::string::npos) {
      form = "subject; the background is";
    } else if (text.find("at the ") == 0 || text.find("on the ") == 0 ||
               text.find("in the ") == 0) {
      form = "place first";
    } else {
      form = "subject first";
    }
    forms.insert(std::to_string(scene.subjects.size()) + " " + form);
  }
  // Varied phrasings: all 6 templates of one subject and of two show up.
  int one = 0, two = 0;
  for (const std::string& f : forms) one += f[0] == '1', two += f[0] == '2';
  CHECK(one == 6);
  CHECK(two == 6);
}

TEST_CASE("world: each template reads as documented", "[data][world]") {
  Scene scene;
  scene.background = world::solid_background(world::Colour::blue);
  Subject star;
  star.shape = world::Shape::star, star.colour = world::Colour::red;
  star.texture = world::Texture::striped, star.size = world::Size::large;
  star.position = world::Position::top_left;
  scene.subjects = {star};
  std::set<std::string> texts;
  for (uint32_t p = 0; p < 2000; ++p) texts.insert(world::caption(scene, p));
  CHECK(texts.count("a large red striped star at the top left on a blue background") == 1);
  CHECK(texts.count("top left: a big striped red star; the background is blue") == 1);
  CHECK(texts.count("a blue background with a large red striped star at the top left") == 1);
  CHECK(texts.count("at the top left, a big red striped star on a blue background") == 1);
  CHECK(texts.count("a picture of a large striped red star at the top left, against a blue "
                    "background") == 1);
  CHECK(world::subject_name(star) == "red striped star");
  star.texture = world::Texture::solid;
  CHECK(world::subject_name(star) == "red star");
  CHECK(world::subject_phrase(star, 0) == "a large red star");
  CHECK(world::subject_phrase(star, 5) == "a big plain red star");
  world::Background b{world::BackgroundKind::stripes, world::Colour::orange, world::Colour::white,
                      0};
  CHECK(world::background_phrase(b) == "an orange and white striped background");
  b.kind = world::BackgroundKind::vertical_gradient;
  CHECK(world::background_phrase(b) == "a vertical gradient from orange to white");
  b.kind = world::BackgroundKind::noise;
  CHECK(world::background_predicate(b) == "mottled orange");
  // The caption is the scene's: fixed by its phrasing.
  scene.phrasing = 77;
  CHECK(world::caption(scene) == world::caption(scene, 77));
  scene.subjects.push_back(star);
  scene.subjects.push_back(star);
  REQUIRE_THROWS_WITH(world::caption(scene), Catch::Contains("at most 2 subjects"));
}

TEST_CASE("world: the palette is far apart and every shade keeps its colour's name",
          "[data][world]") {
  double nearest_pair = 1e9;
  for (int a = 0; a < world::kColourCount; ++a)
    for (int b = a + 1; b < world::kColourCount; ++b)
      nearest_pair = std::min(nearest_pair, delta_e(world::kPalette[a], world::kPalette[b]));
  CHECK(nearest_pair > 35.0);
  for (int c = 0; c < world::kColourCount; ++c) {
    CAPTURE(world::kColourNames[c]);
    const world::Rgb s = world::kShades[c];
    CHECK(delta_e(s, world::kPalette[c]) > 20.0);  // a texture is visible
    for (int other = 0; other < world::kColourCount; ++other)
      if (other != c) CHECK(delta_e(s, world::kPalette[c]) < delta_e(s, world::kPalette[other]));
    // Not black, the segmentation background.
    CHECK(delta_e(s, world::Rgb{0, 0, 0}) > 25.0);
  }
}

}  // namespace test_world_caption
