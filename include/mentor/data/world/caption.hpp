#pragma once
// Captions written from a scene's attributes, in varied phrasings:
//   "a large red striped star at the top left on a blue background"
//   "top left: a big striped red star; the background is blue"
//   "an orange and white checkered background with a small plain green circle in the center"
// A caption names, for every subject, its shape, colour, texture (a solid one is said "plain" or
// not at all), size (any word of kSizeWords) and place (kPositionNames or kPositionPhrases), in
// scene order, and the background (its kind and colours; see background_phrase). The template
// and the synonyms are chosen from Scene::phrasing, so a scene always has the same caption. No
// other word of a caption is a word of the vocabularies in attributes.hpp, so a caption can be
// parsed back (tests/data/test_world_caption.cpp does).
//
// A subject shown by a reference image (subject-driven and multi-subject tasks, SynthBench) is
// named by its size and shape only ("a large star at the top left on a blue background"): its
// colour and texture must come from the reference, as DreamBench++'s prompts name only the class
// of their subject ("a dog on the beach"). caption(scene, phrasing, referenced) takes the set of
// such subjects as a bit mask over scene order.
#include <cstdint>
#include <string>
#include <string_view>

#include "mentor/core/error.hpp"
#include "mentor/data/world/attributes.hpp"

namespace mentor::data::world {

inline constexpr int kCaptionTemplates = 6;  // for scenes of one and of two subjects

namespace detail {

// Choice `slot` of a phrasing, uniform in [0, n): the phrasing mixed with the slot
// (MurmurHash3's finaliser), so that the choices of one caption are independent.
inline int phrasing_choice(uint32_t phrasing, uint32_t slot, int n) {
  uint32_t h = phrasing ^ (slot * 0x9E3779B9u + 0x7F4A7C15u);
  h ^= h >> 16, h *= 0x85EBCA6Bu, h ^= h >> 13, h *= 0xC2B2AE35u, h ^= h >> 16;
  return static_cast<int>(h % static_cast<uint32_t>(n));
}

inline std::string with_article(std::string_view phrase) {
  const bool vowel =
      !phrase.empty() && std::string_view("aeiou").find(phrase[0]) != std::string_view::npos;
  return std::string(vowel ? "an " : "a ") + std::string(phrase);
}

inline void check_caption_scene(const Scene& scene) {
  MENTOR_CHECK(scene.subjects.size() <= static_cast<size_t>(kMaxSubjects),
               "world::caption: a scene holds at most ", kMaxSubjects, " subjects, this one has ",
               scene.subjects.size());
  const Background& b = scene.background;
  MENTOR_CHECK(static_cast<int>(b.kind) < kBackgroundKindCount &&
                   static_cast<int>(b.colour) < kColourCount &&
                   static_cast<int>(b.second) < kColourCount,
               "world::caption: background attribute outside its vocabulary");
  for (const Subject& s : scene.subjects)
    MENTOR_CHECK(
        static_cast<int>(s.shape) < kShapeCount && static_cast<int>(s.colour) < kColourCount &&
            static_cast<int>(s.texture) < kTextureCount && static_cast<int>(s.size) < kSizeCount &&
            static_cast<int>(s.position) < kPositionCount,
        "world::caption: subject attribute outside its vocabulary");
}

}  // namespace detail

// The subject as upstream's templates name an object ("The {obj} in <image>."): colour, texture
// unless solid, shape: "red striped star", "green circle".
inline std::string subject_name(const Subject& s) {
  std::string out(name(s.colour));
  if (s.texture != Texture::solid) out += " " + std::string(name(s.texture));
  return out + " " + std::string(name(s.shape));
}

// "a large red striped star", "a big striped red star", "a small plain green circle", ...:
// `variant` picks the size word (bit 0), the order of colour and texture (bit 1) and whether a
// solid texture is said (bit 2; "plain" always comes before the colour).
inline std::string subject_phrase(const Subject& s, uint32_t variant = 0) {
  const std::string_view size =
      kSizeWords[static_cast<size_t>(s.size)][static_cast<size_t>(variant & 1)];
  std::string texture;
  if (s.texture != Texture::solid || (variant & 4) != 0) texture = std::string(name(s.texture));
  std::string out = "a " + std::string(size);
  const std::string colour(name(s.colour));
  if (texture.empty()) {
    out += " " + colour;
  } else if ((variant & 2) != 0 || s.texture == Texture::solid) {  // "plain" before the colour
    out += " " + texture + " " + colour;
  } else {
    out += " " + colour + " " + texture;
  }
  return out + " " + std::string(name(s.shape));
}

// A subject shown by a reference image: "a large star", "a big star" (variant bit 0 picks the
// size word, as in subject_phrase).
inline std::string referenced_subject_phrase(const Subject& s, uint32_t variant = 0) {
  return "a " +
         std::string(kSizeWords[static_cast<size_t>(s.size)][static_cast<size_t>(variant & 1)]) +
         " " + std::string(name(s.shape));
}

// The background as a noun phrase: "a blue background", "a vertical gradient from blue to green"
// (blue at the top), "a horizontal gradient from blue to green" (blue on the left), "an orange and
// white striped background", "a blue and white checkered background", "a mottled blue background".
inline std::string background_phrase(const Background& b) {
  const std::string a(name(b.colour)), second(name(b.second));
  switch (b.kind) {
    case BackgroundKind::solid:
      return detail::with_article(a + " background");
    case BackgroundKind::vertical_gradient:
      return "a vertical gradient from " + a + " to " + second;
    case BackgroundKind::horizontal_gradient:
      return "a horizontal gradient from " + a + " to " + second;
    case BackgroundKind::stripes:
      return detail::with_article(a + " and " + second + " striped background");
    case BackgroundKind::checks:
      return detail::with_article(a + " and " + second + " checkered background");
    case BackgroundKind::noise:
      return "a mottled " + a + " background";
  }
  return {};
}

// What follows "the background is": "blue", "striped blue and white", "mottled blue", "a
// vertical gradient from blue to green".
inline std::string background_predicate(const Background& b) {
  const std::string a(name(b.colour)), second(name(b.second));
  switch (b.kind) {
    case BackgroundKind::solid:
      return a;
    case BackgroundKind::vertical_gradient:
    case BackgroundKind::horizontal_gradient:
      return background_phrase(b);
    case BackgroundKind::stripes:
      return "striped " + a + " and " + second;
    case BackgroundKind::checks:
      return "checkered " + a + " and " + second;
    case BackgroundKind::noise:
      return "mottled " + a;
  }
  return {};
}

// The caption of `scene` with an explicit phrasing (caption(scene) uses scene.phrasing). Template
// t = phrasing choice 0 of kCaptionTemplates; each subject's phrase variant is choice 1 + i.
// Subject i with bit i of `referenced` set is named by referenced_subject_phrase.
inline std::string caption(const Scene& scene, uint32_t phrasing, uint32_t referenced = 0) {
  detail::check_caption_scene(scene);
  MENTOR_CHECK(referenced >> scene.subjects.size() == 0, "world::caption: referenced mask ",
               referenced, " names a subject past the scene's ", scene.subjects.size());
  const std::string bg = background_phrase(scene.background);
  const std::string predicate = background_predicate(scene.background);
  const size_t n = scene.subjects.size();
  if (n == 0) return detail::phrasing_choice(phrasing, 0, 2) == 0 ? bg : "an empty scene on " + bg;
  std::string subject[kMaxSubjects], place[kMaxSubjects], where[kMaxSubjects];
  for (size_t i = 0; i < n; ++i) {
    const Subject& s = scene.subjects[i];
    const auto variant =
        static_cast<uint32_t>(detail::phrasing_choice(phrasing, 1 + static_cast<uint32_t>(i), 8));
    subject[i] = (referenced >> i & 1u) != 0 ? referenced_subject_phrase(s, variant)
                                             : subject_phrase(s, variant);
    place[i] = std::string(name(s.position));
    where[i] = std::string(kPositionPhrases[static_cast<size_t>(s.position)]);
  }
  const int t = detail::phrasing_choice(phrasing, 0, kCaptionTemplates);
  if (n == 1) {
    const std::string s = subject[0] + " " + where[0];
    switch (t) {
      case 0:
        return s + " on " + bg;
      case 1:
        return place[0] + ": " + subject[0] + "; the background is " + predicate;
      case 2:
        return bg + " with " + s;
      case 3:
        return where[0] + ", " + subject[0] + " on " + bg;
      case 4:
        return "a picture of " + s + ", against " + bg;
      default:
        return s + "; the background is " + predicate;
    }
  }
  const std::string s0 = subject[0] + " " + where[0], s1 = subject[1] + " " + where[1];
  switch (t) {
    case 0:
      return s0 + " and " + s1 + " on " + bg;
    case 1:
      return place[0] + ": " + subject[0] + "; " + place[1] + ": " + subject[1] +
             "; the background is " + predicate;
    case 2:
      return bg + " with " + s0 + " and " + s1;
    case 3:
      return where[0] + ", " + subject[0] + "; " + where[1] + ", " + subject[1] + "; both on " + bg;
    case 4:
      return "a picture of " + s0 + " and " + s1 + ", against " + bg;
    default:
      return "two shapes on " + bg + ": " + s0 + " and " + s1;
  }
}

inline std::string caption(const Scene& scene) { return caption(scene, scene.phrasing); }

}  // namespace mentor::data::world
