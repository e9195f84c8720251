#pragma once
// The synthetic world's vocabulary: what a subject and a scene are made of, the words a caption
// uses for each attribute, and the geometry every attribute stands for. A Scene is the complete
// attribute record of one image: render.hpp draws it, caption.hpp describes it, sampling.hpp draws
// it from a seed.
//
// Geometry, in fractions of the (square) image side, origin at the top left, y down:
//   size       the diameter of the disc the shape fits in: small 0.22, medium 0.32, large 0.44
//   position   a 3x3 grid; the centre of a subject is at (kGridCentre[column], kGridCentre[row])
//              (0.25, 0.5, 0.75) plus a jitter of at most kMaxJitter (0.025) on each axis, so a
//              large subject stays inside the image and every subject's centre stays inside its
//              third of the image
//   rotation   degrees, counter-clockwise on screen, |rotation| <= kMaxRotationDegrees (30), so a
//              square is never mistaken for the (taller) diamond; textures turn with the subject
// Colours are sRGB values far apart in CIELAB (the nearest pair, blue and purple, is 36 apart in
// Delta E 1976). A texture uses two tones: the colour itself and its shade (kShades), lighter or
// darker by 24 to 37 Delta E, and always nearer to its own colour than to any other, so a striped
// red star is still red. Black is not a colour of the world: it is the segmentation background.
#include <array>
#include <cstdint>
#include <string_view>
#include <vector>

namespace mentor::data::world {

enum class Shape : uint8_t {
  circle,
  square,
  triangle,
  star,
  heart,
  hexagon,
  cross,
  diamond,
  crescent,
  ring
};
enum class Colour : uint8_t { red, orange, yellow, green, cyan, blue, purple, pink, white, brown };
enum class Texture : uint8_t { solid, striped, checkered, dotted };
enum class Size : uint8_t { small, medium, large };
enum class Position : uint8_t {
  top_left,
  top,
  top_right,
  left,
  center,
  right,
  bottom_left,
  bottom,
  bottom_right
};
enum class BackgroundKind : uint8_t {
  solid,                // one colour
  vertical_gradient,    // `colour` at the top to `second` at the bottom, linear in sRGB
  horizontal_gradient,  // `colour` on the left to `second` on the right
  stripes,              // vertical bands of `colour` and `second`, kBackgroundStripePeriods periods
  checks,               // a kBackgroundChecks x kBackgroundChecks board of `colour` and `second`
  noise                 // smooth value noise between `colour` and its shade
};

inline constexpr int kShapeCount = 10;
inline constexpr int kColourCount = 10;
inline constexpr int kTextureCount = 4;
inline constexpr int kSizeCount = 3;
inline constexpr int kPositionCount = 9;
inline constexpr int kBackgroundKindCount = 6;
inline constexpr int kMaxSubjects = 2;

// ---- Names (the first word of each list is the canonical name; captions may use any) ----------

inline constexpr std::array<std::string_view, kShapeCount> kShapeNames = {
    "circle",  "square", "triangle", "star",     "heart",
    "hexagon", "cross",  "diamond",  "crescent", "ring"};
inline constexpr std::array<std::string_view, kColourCount> kColourNames = {
    "red", "orange", "yellow", "green", "cyan", "blue", "purple", "pink", "white", "brown"};
// A solid subject's texture is said "plain" or not said at all.
inline constexpr std::array<std::string_view, kTextureCount> kTextureNames = {
    "plain", "striped", "checkered", "dotted"};
inline constexpr std::array<std::array<std::string_view, 2>, kSizeCount> kSizeWords = {
    {{"small", "little"}, {"medium-sized", "medium"}, {"large", "big"}}};
// A place's name ("top left: a red star") and its locative phrase ("a red star at the top left").
inline constexpr std::array<std::string_view, kPositionCount> kPositionNames = {
    "top left", "top",         "top right", "left",        "center",
    "right",    "bottom left", "bottom",    "bottom right"};
inline constexpr std::array<std::string_view, kPositionCount> kPositionPhrases = {
    "at the top left",    "at the top",    "at the top right",
    "on the left",        "in the center", "on the right",
    "at the bottom left", "at the bottom", "at the bottom right"};
inline constexpr std::array<std::string_view, kBackgroundKindCount> kBackgroundKindNames = {
    "solid", "vertical gradient", "horizontal gradient", "striped", "checkered", "mottled"};

inline constexpr std::string_view name(Shape v) { return kShapeNames[static_cast<size_t>(v)]; }
inline constexpr std::string_view name(Colour v) { return kColourNames[static_cast<size_t>(v)]; }
inline constexpr std::string_view name(Texture v) { return kTextureNames[static_cast<size_t>(v)]; }
inline constexpr std::string_view name(Size v) { return kSizeWords[static_cast<size_t>(v)][0]; }
inline constexpr std::string_view name(Position v) {
  return kPositionNames[static_cast<size_t>(v)];
}
inline constexpr std::string_view name(BackgroundKind v) {
  return kBackgroundKindNames[static_cast<size_t>(v)];
}

// ---- Colours -----------------------------------------------------------------------------------

struct Rgb {
  uint8_t r = 0, g = 0, b = 0;
  constexpr bool operator==(const Rgb&) const = default;
};

inline constexpr std::array<Rgb, kColourCount> kPalette = {{
    {220, 40, 40},    // red
    {245, 140, 30},   // orange
    {245, 215, 40},   // yellow
    {50, 160, 70},    // green
    {50, 200, 210},   // cyan
    {35, 90, 215},    // blue
    {150, 50, 190},   // purple
    {240, 140, 190},  // pink
    {245, 245, 245},  // white
    {125, 75, 40},    // brown
}};
// The second tone of a texture (and of a mottled background): the colour mixed towards black
// (x (1 - f)) or white (x + (255 - x) f), rounded: red dark 0.30, orange light 0.35, yellow dark
// 0.25, green dark 0.45, cyan dark 0.45, blue light 0.35, purple dark 0.35, pink dark 0.35, white
// dark 0.30, brown light 0.30 (steps 24 to 37 Delta E, each shade still nearest its own colour).
inline constexpr std::array<Rgb, kColourCount> kShades = {{
    {154, 28, 28},    // red
    {248, 180, 109},  // orange
    {184, 161, 30},   // yellow
    {28, 88, 38},     // green
    {28, 110, 116},   // cyan
    {112, 148, 229},  // blue
    {98, 32, 124},    // purple
    {156, 91, 124},   // pink
    {172, 172, 172},  // white
    {164, 129, 104},  // brown
}};

inline constexpr Rgb rgb(Colour c) { return kPalette[static_cast<size_t>(c)]; }
inline constexpr Rgb shade(Colour c) { return kShades[static_cast<size_t>(c)]; }

// ---- Geometry ----------------------------------------------------------------------------------

inline constexpr std::array<float, kSizeCount> kSizeDiameter = {0.22f, 0.32f, 0.44f};
inline constexpr std::array<float, 3> kGridCentre = {0.25f, 0.5f, 0.75f};
inline constexpr float kMaxJitter = 0.025f;
inline constexpr float kMaxRotationDegrees = 30.0f;
// Texture period (stripes: one band of each tone; dots: the dot grid; checks: two cells) in units
// of the subject's radius, never finer than kMinTexturePeriodPixels so that a small subject's
// texture stays visible at 32 or 64 px.
inline constexpr float kTexturePeriod = 0.6f;
inline constexpr float kMinTexturePeriodPixels = 5.0f;
inline constexpr int kBackgroundStripePeriods = 6;
inline constexpr int kBackgroundChecks = 8;
// Value noise: a lattice of kNoiseCells x kNoiseCells cells over the image, plus an octave at
// twice the frequency with half the amplitude.
inline constexpr int kNoiseCells = 4;

inline constexpr int column_of(Position p) { return static_cast<int>(p) % 3; }
inline constexpr int row_of(Position p) { return static_cast<int>(p) / 3; }

// ---- Records -----------------------------------------------------------------------------------

struct Subject {
  Shape shape = Shape::circle;
  Colour colour = Colour::red;
  Texture texture = Texture::solid;
  Size size = Size::medium;
  Position position = Position::center;
  float jitter_x = 0.0f;  // centre offset from the grid place, fractions of the side, |.| <= 0.025
  float jitter_y = 0.0f;
  float rotation_degrees = 0.0f;  // counter-clockwise, |.| <= 30
  bool operator==(const Subject&) const = default;

  // Centre and radius in fractions of the image side.
  float centre_x() const {
    return kGridCentre[static_cast<size_t>(column_of(position))] + jitter_x;
  }
  float centre_y() const { return kGridCentre[static_cast<size_t>(row_of(position))] + jitter_y; }
  float radius() const { return 0.5f * kSizeDiameter[static_cast<size_t>(size)]; }
};

struct Background {
  BackgroundKind kind = BackgroundKind::solid;
  Colour colour = Colour::blue;  // the solid colour, a gradient's start, the first band or cell,
                                 // the noise's base
  Colour second = Colour::blue;  // a gradient's end, the other band or cell (== colour when unused)
  uint32_t noise_seed = 0;       // the noise lattice (unused by the other kinds)
  bool operator==(const Background&) const = default;

  // The colours a subject must not have on this background (so it never vanishes into it).
  bool uses(Colour c) const {
    return c == colour ||
           (c == second && (kind == BackgroundKind::vertical_gradient ||
                            kind == BackgroundKind::horizontal_gradient ||
                            kind == BackgroundKind::stripes || kind == BackgroundKind::checks));
  }
};

inline Background solid_background(Colour c) { return {BackgroundKind::solid, c, c, 0}; }

struct Scene {
  Background background;
  std::vector<Subject> subjects;  // at most kMaxSubjects, drawn in order: the second over the first
  uint32_t phrasing = 0;          // chooses the caption's template and synonyms (caption.hpp)
  bool operator==(const Scene&) const = default;
};

}  // namespace mentor::data::world
