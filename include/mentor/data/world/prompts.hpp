#pragma once
// MENTOR's prompt templates (upstream dataset/t2i.py `_process_text_info`; mentor-system.md §1.2)
// written over the world's captions, and the reference image of a subject-driven prompt. Each
// `<image>` marker here stands for one reference image; the tokenizer (text/tokenizer.hpp) expands
// it to the configured number of placeholder ids, as upstream writes the marker 256 times.
//
//   reconstruction      "The image is <image>\n" + caption
//   image only          "<image>\n"                 (stage 1, at image_only_rate)
//   segmentation        "The {obj} in <image>."
//   recovery, subject   "The {obj} in <image>.\n" + caption
//   multi-subject       "The {obj_1} in <image>.\nThe {obj_2} in <image>.\n" + caption
//   text-to-image       caption
//
// {obj} is the word upstream's objects list holds for a subject. Segmentation names the subject in
// full (subject_name: "red striped star"), so that the words pick one subject of a two-subject
// scene. The tasks whose reference shows the subject (recovery, subject-driven, multi-subject)
// name it by its shape ("star"), as upstream names a class ("dog"), and subject-driven and
// multi-subject captions leave the referenced subject's colour and texture unsaid (caption.hpp),
// so that they can come only from the reference.
#include <cstdint>
#include <string>
#include <string_view>

#include "mentor/core/error.hpp"
#include "mentor/data/image.hpp"
#include "mentor/data/world/attributes.hpp"
#include "mentor/data/world/caption.hpp"
#include "mentor/data/world/render.hpp"

namespace mentor::data::world {

inline constexpr std::string_view kImageMarker = "<image>";

inline std::string reconstruction_prompt(std::string_view caption_text) {
  return "The image is " + std::string(kImageMarker) + "\n" + std::string(caption_text);
}
inline std::string image_only_prompt() { return std::string(kImageMarker) + "\n"; }
inline std::string object_line(std::string_view object) {
  return "The " + std::string(object) + " in " + std::string(kImageMarker) + ".";
}
inline std::string segmentation_prompt(std::string_view object) { return object_line(object); }
inline std::string object_prompt(std::string_view object, std::string_view caption_text) {
  return object_line(object) + "\n" + std::string(caption_text);
}
inline std::string multi_object_prompt(std::string_view first, std::string_view second,
                                       std::string_view caption_text) {
  return object_line(first) + "\n" + object_line(second) + "\n" + std::string(caption_text);
}

// The prompt of a subject-driven scene (SynthBench's prompts, the subject-driven and
// multi-subject tasks): one object line per referenced subject (bit i of `referenced`, in scene
// order), then the caption with those subjects named by size and shape only.
inline std::string subject_driven_prompt(const Scene& scene, uint32_t referenced) {
  MENTOR_CHECK(referenced != 0 && referenced >> scene.subjects.size() == 0,
               "world::subject_driven_prompt: referenced mask ", referenced,
               " must name at least one of the scene's ", scene.subjects.size(), " subjects");
  std::string out;
  for (size_t i = 0; i < scene.subjects.size(); ++i)
    if ((referenced >> i & 1u) != 0) out += object_line(name(scene.subjects[i].shape)) + "\n";
  return out + caption(scene, scene.phrasing, referenced);
}

// The reference picture of a subject (DreamBench++'s reference photo): the subject large, upright
// and centred on a plain background of `background` (a colour the subject does not have).
inline constexpr Size kReferenceSize = Size::large;
inline Subject reference_pose(Subject subject) {
  subject.size = kReferenceSize;
  subject.position = Position::center;
  subject.jitter_x = subject.jitter_y = subject.rotation_degrees = 0.0f;
  return subject;
}
inline Image subject_reference(const Subject& subject, Colour background, int64_t resolution) {
  MENTOR_CHECK(background != subject.colour, "world::subject_reference: the background colour ",
               name(background), " is the subject's own");
  return render_subject(reference_pose(subject), solid_background(background), resolution);
}

}  // namespace mentor::data::world
