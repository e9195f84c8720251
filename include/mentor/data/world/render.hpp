#pragma once
// The world's renderer: a Scene (attributes.hpp) -> an RGB image with one coverage mask per
// subject, at any square resolution from 32 to 256 px.
//
//   render(scene, resolution)          image + each subject's visible coverage + the scene
//   render_batch(scenes, resolution)   the same over cpu::parallel_for (identical bytes at any
//                                      thread count: each image depends only on its scene)
//   render_subject(subject, bg, res)   one subject alone on a background (e.g. a plain one)
//   render_on_black(subject, res)      one subject alone on black: the segmentation target
//   shape_mask(subject, res)           a subject's whole coverage, unoccluded (for IoU)
//   render_background(bg, res)         the background alone, as a scene without subjects shows it
//
// How a pixel is made: pixel (x, y) is the point (x + 0.5, y + 0.5) in pixels. A subject's shape
// is its signed distance (shapes.hpp) scaled to pixels; its coverage of a pixel is
// clamp(0.5 - distance, 0, 1): the part of the pixel inside an axis-aligned edge at that distance,
// a close approximation for any other edge, so edges hold intermediate values and a disc's
// coverage sums to pi r^2 (within 0.25% at 32 and 64 px, 0.002% at 256). Texture and background
// boundaries (stripes, checks, dots) are anti-aliased the same way from their own distances.
// Colours are mixed in float (sRGB values, no gamma) and rounded once at the end, so a pixel fully
// inside a solid subject holds exactly the palette value. Subjects are composited in order, the
// second over the first (subject i's mask is its coverage times (1 - coverage) of every later
// subject). All arithmetic is in float, in a fixed order, without any state: the same scene gives
// the same bytes on every run and thread (a compiler or CPU that contracts multiply-adds
// differently may change an edge pixel by one level).
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <span>
#include <vector>

#include "mentor/backend/cpu/parallel.hpp"
#include "mentor/core/error.hpp"
#include "mentor/core/random.hpp"
#include "mentor/data/image.hpp"
#include "mentor/data/world/attributes.hpp"
#include "mentor/data/world/shapes.hpp"

namespace mentor::data::world {

inline constexpr int64_t kMinResolution = 32;
inline constexpr int64_t kMaxResolution = 256;

// A coverage mask, row-major [height, width], values in [0, 1].
struct Mask {
  int width = 0;
  int height = 0;
  std::vector<float> data;

  float& at(int y, int x) {
    return data[static_cast<size_t>(y) * static_cast<size_t>(width) + static_cast<size_t>(x)];
  }
  float at(int y, int x) const { return const_cast<Mask&>(*this).at(y, x); }
};

struct RenderedScene {
  Image image;              // RGB, 8 bits, [resolution, resolution, 3]
  std::vector<Mask> masks;  // masks[i]: subject i's visible coverage, its weight in each pixel
  Scene scene;              // the attribute record the image was drawn from
};

namespace detail {

inline void check_resolution(int64_t resolution, const char* who) {
  MENTOR_CHECK(resolution >= kMinResolution && resolution <= kMaxResolution, who, ": resolution ",
               resolution, " is outside ", kMinResolution, "..", kMaxResolution,
               " (the world renders square images of that side)");
}

inline void check_subject(const Subject& s, const char* who, size_t index) {
  MENTOR_CHECK(
      static_cast<int>(s.shape) < kShapeCount && static_cast<int>(s.colour) < kColourCount &&
          static_cast<int>(s.texture) < kTextureCount && static_cast<int>(s.size) < kSizeCount &&
          static_cast<int>(s.position) < kPositionCount,
      who, ": subject ", index, " has an attribute outside its vocabulary (shape ",
      static_cast<int>(s.shape), ", colour ", static_cast<int>(s.colour), ", texture ",
      static_cast<int>(s.texture), ", size ", static_cast<int>(s.size), ", position ",
      static_cast<int>(s.position), ")");
  MENTOR_CHECK(std::abs(s.jitter_x) <= kMaxJitter && std::abs(s.jitter_y) <= kMaxJitter, who,
               ": subject ", index, " has jitter (", s.jitter_x, ", ", s.jitter_y, ") beyond +-",
               kMaxJitter, " (its centre would leave its grid place)");
  MENTOR_CHECK(std::abs(s.rotation_degrees) <= kMaxRotationDegrees, who, ": subject ", index,
               " has rotation ", s.rotation_degrees, " degrees, beyond +-", kMaxRotationDegrees);
}

inline void check_background(const Background& b, const char* who) {
  MENTOR_CHECK(
      static_cast<int>(b.kind) < kBackgroundKindCount &&
          static_cast<int>(b.colour) < kColourCount && static_cast<int>(b.second) < kColourCount,
      who, ": background has an attribute outside its vocabulary (kind ", static_cast<int>(b.kind),
      ", colour ", static_cast<int>(b.colour), ", second ", static_cast<int>(b.second), ")");
}

inline void check_scene(const Scene& scene, const char* who) {
  MENTOR_CHECK(scene.subjects.size() <= static_cast<size_t>(kMaxSubjects), who,
               ": a scene holds at most ", kMaxSubjects, " subjects, this one has ",
               scene.subjects.size());
  check_background(scene.background, who);
  for (size_t i = 0; i < scene.subjects.size(); ++i) check_subject(scene.subjects[i], who, i);
}

inline float saturate(float v) { return std::min(std::max(v, 0.0f), 1.0f); }

// Signed distance (pixels, positive inside) of u into the band of tone B of a two-band pattern of
// the given period whose B band is centred on u = centre * period (mod period).
inline float band_distance(float u, float period, float centre) {
  const float f = u / period - centre + 0.5f;
  return (0.25f - std::abs(f - std::floor(f) - 0.5f)) * period;
}

// The weight of tone B (0: tone A) of a checkerboard of cells period/2 wide whose B cells start
// at offset (centre - 0.25) * period on each axis.
inline float checker_weight(float u, float v, float period, float centre) {
  const float du = band_distance(u, period, centre), dv = band_distance(v, period, centre);
  // Tone B where exactly one axis is in its band; the distance to the nearest cell edge is the
  // smaller of the two band distances.
  const float d = std::min(std::abs(du), std::abs(dv));
  return saturate(0.5f + ((du > 0.0f) != (dv > 0.0f) ? d : -d));
}

struct Tones {
  float a[3];
  float b[3];
};
inline Tones tones(Rgb a, Rgb b) {
  return {{float(a.r), float(a.g), float(a.b)}, {float(b.r), float(b.g), float(b.b)}};
}

inline void put(float* px, const Tones& t, float w) {
  for (int c = 0; c < 3; ++c) px[c] = t.a[c] + (t.b[c] - t.a[c]) * w;
}

// Smooth value noise in [0, 1] at (u, v) in [0, 1)^2: two octaves of bilinearly interpolated
// (smoothstep) lattice values, stretched so its typical range spans both tones.
struct ValueNoise {
  static constexpr int kCoarse = kNoiseCells + 1, kFine = 2 * kNoiseCells + 1;
  float coarse[kCoarse * kCoarse];
  float fine[kFine * kFine];

  explicit ValueNoise(uint32_t seed) {
    // Lattice values are the Philox stream of the noise seed (key), one word each.
    for (int i = 0; i < kCoarse * kCoarse; ++i) coarse[i] = philox_uniform_at(seed, 0, i);
    for (int i = 0; i < kFine * kFine; ++i) fine[i] = philox_uniform_at(seed, 1 << 20, i);
  }
  static float smooth(float t) { return t * t * (3.0f - 2.0f * t); }
  static float lattice(const float* values, int side, float u, float v) {
    const float x = u * float(side - 1), y = v * float(side - 1);
    const int ix = std::min(int(x), side - 2), iy = std::min(int(y), side - 2);
    const float sx = smooth(x - float(ix)), sy = smooth(y - float(iy));
    const float* row0 = values + iy * side + ix;
    const float* row1 = row0 + side;
    const float top = row0[0] + (row0[1] - row0[0]) * sx;
    const float bottom = row1[0] + (row1[1] - row1[0]) * sx;
    return top + (bottom - top) * sy;
  }
  float at(float u, float v) const {
    const float n = (lattice(coarse, kCoarse, u, v) + 0.5f * lattice(fine, kFine, u, v)) / 1.5f;
    return saturate(0.5f + 1.8f * (n - 0.5f));
  }
};

// Fills an RGB float canvas [R, R, 3] with the background.
inline void fill_background(const Background& bg, int R, float* canvas) {
  const float side = float(R);
  const size_t row_floats = static_cast<size_t>(R) * 3;
  switch (bg.kind) {
    case BackgroundKind::solid:
    case BackgroundKind::horizontal_gradient:
    case BackgroundKind::stripes: {
      // One row, then copies: these vary along x only.
      const Tones t = tones(rgb(bg.colour), rgb(bg.second));
      for (int x = 0; x < R; ++x) {
        float w = 0.0f;
        if (bg.kind == BackgroundKind::horizontal_gradient) w = (float(x) + 0.5f) / side;
        if (bg.kind == BackgroundKind::stripes)
          w = saturate(
              0.5f + band_distance(float(x) + 0.5f, side / float(kBackgroundStripePeriods), 0.75f));
        put(canvas + 3 * x, t, w);
      }
      for (int y = 1; y < R; ++y)
        std::copy(canvas, canvas + row_floats, canvas + static_cast<size_t>(y) * row_floats);
      return;
    }
    case BackgroundKind::vertical_gradient: {
      const Tones t = tones(rgb(bg.colour), rgb(bg.second));
      for (int y = 0; y < R; ++y) {
        float px[3];
        put(px, t, (float(y) + 0.5f) / side);
        float* row = canvas + static_cast<size_t>(y) * row_floats;
        for (int x = 0; x < R; ++x) std::copy(px, px + 3, row + 3 * x);
      }
      return;
    }
    case BackgroundKind::checks: {
      const Tones t = tones(rgb(bg.colour), rgb(bg.second));
      const float period = 2.0f * side / float(kBackgroundChecks);
      for (int y = 0; y < R; ++y)
        for (int x = 0; x < R; ++x)
          put(canvas + static_cast<size_t>(y) * row_floats + 3 * static_cast<size_t>(x), t,
              checker_weight(float(x) + 0.5f, float(y) + 0.5f, period, 0.75f));
      return;
    }
    case BackgroundKind::noise: {
      const Tones t = tones(rgb(bg.colour), shade(bg.colour));
      const ValueNoise noise(bg.noise_seed);
      for (int y = 0; y < R; ++y)
        for (int x = 0; x < R; ++x)
          put(canvas + static_cast<size_t>(y) * row_floats + 3 * static_cast<size_t>(x), t,
              noise.at((float(x) + 0.5f) / side, (float(y) + 0.5f) / side));
      return;
    }
  }
}

// The weight of the shade at (lx, ly), pixels in the subject's rotated frame.
inline float texture_weight(Texture texture, float lx, float ly, float period) {
  switch (texture) {
    case Texture::solid:
      return 0.0f;
    case Texture::striped:
      return saturate(0.5f + band_distance(ly, period, 0.5f));
    case Texture::checkered:
      return checker_weight(lx, ly, period, 0.5f);
    case Texture::dotted: {
      // A dot of radius 0.3 period on a square grid, one dot on the subject's centre.
      const float fx = lx / period - std::floor(lx / period + 0.5f);
      const float fy = ly / period - std::floor(ly / period + 0.5f);
      return saturate(0.5f + (0.3f - std::sqrt(fx * fx + fy * fy)) * period);
    }
  }
  return 0.0f;
}

// Draws one subject of shape S into [R, R]: its coverage into `coverage` (zeroed beforehand), its
// colour over `canvas` when it is not null, and multiplies each of the `occluded` masks by
// (1 - coverage). Only the subject's bounding square is visited.
template <Shape S>
void draw_subject(const Subject& s, int R, float* canvas, float* coverage,
                  std::span<Mask> occluded) {
  const float side = float(R);
  const float cx = s.centre_x() * side, cy = s.centre_y() * side, r = s.radius() * side;
  const float inv_r = 1.0f / r;
  const double angle = double(s.rotation_degrees) * (3.14159265358979323846 / 180.0);
  const float cs = float(std::cos(angle)), sn = float(std::sin(angle));
  const float period = std::max(kTexturePeriod * r, kMinTexturePeriodPixels);
  const Tones t = tones(rgb(s.colour), shade(s.colour));
  const int x0 = std::max(0, int(std::floor(cx - r - 1.0f)));
  const int x1 = std::min(R, int(std::ceil(cx + r + 1.0f)));
  const int y0 = std::max(0, int(std::floor(cy - r - 1.0f)));
  const int y1 = std::min(R, int(std::ceil(cy + r + 1.0f)));
  for (int y = y0; y < y1; ++y) {
    const float dy = float(y) + 0.5f - cy;
    for (int x = x0; x < x1; ++x) {
      const float dx = float(x) + 0.5f - cx;
      // Screen offset -> the subject's frame (rotation by -angle on screen, y down).
      const float lx = cs * dx - sn * dy, ly = sn * dx + cs * dy;
      const float distance = shapes::signed_distance<S>(lx * inv_r, ly * inv_r) * r;
      const float cover = saturate(0.5f - distance);
      if (cover <= 0.0f) continue;
      const size_t i = static_cast<size_t>(y) * static_cast<size_t>(R) + static_cast<size_t>(x);
      coverage[i] = cover;
      for (Mask& m : occluded) m.data[i] *= 1.0f - cover;
      if (canvas == nullptr) continue;
      float colour[3];
      put(colour, t, texture_weight(s.texture, lx, ly, period));
      float* px = canvas + 3 * i;
      for (int c = 0; c < 3; ++c) px[c] += (colour[c] - px[c]) * cover;
    }
  }
}

inline void draw(const Subject& s, int R, float* canvas, float* coverage,
                 std::span<Mask> occluded) {
  with_shape(s.shape, [&](auto tag) {
    draw_subject<decltype(tag)::value>(s, R, canvas, coverage, occluded);
  });
}

inline void zeroed_mask(Mask& m, int R) {
  m.width = R, m.height = R;
  m.data.assign(static_cast<size_t>(R) * static_cast<size_t>(R), 0.0f);
}

// Rounds the canvas into an 8-bit RGB image (round half up; values are within [0, 255]).
inline void quantise(const std::vector<float>& canvas, int R, Image& out) {
  out.width = R, out.height = R, out.channels = 3;
  out.data.resize(canvas.size());
  for (size_t i = 0; i < canvas.size(); ++i)
    out.data[i] = static_cast<uint8_t>(std::min(std::max(canvas[i], 0.0f), 255.0f) + 0.5f);
}

}  // namespace detail

// Renders `scene` into `out`, reusing its buffers (a loader's way to avoid allocations).
inline void render_into(const Scene& scene, int64_t resolution, RenderedScene& out) {
  detail::check_resolution(resolution, "world::render");
  detail::check_scene(scene, "world::render");
  const int R = static_cast<int>(resolution);
  std::vector<float> canvas(static_cast<size_t>(R) * static_cast<size_t>(R) * 3);
  detail::fill_background(scene.background, R, canvas.data());
  out.masks.resize(scene.subjects.size());
  for (size_t i = 0; i < scene.subjects.size(); ++i) {
    detail::zeroed_mask(out.masks[i], R);
    detail::draw(scene.subjects[i], R, canvas.data(), out.masks[i].data.data(),
                 std::span<Mask>(out.masks.data(), i));
  }
  detail::quantise(canvas, R, out.image);
  out.scene = scene;
}

inline RenderedScene render(const Scene& scene, int64_t resolution) {
  RenderedScene out;
  render_into(scene, resolution, out);
  return out;
}

// Every scene rendered, split over cpu::parallel_for; out[i] depends only on scenes[i].
inline std::vector<RenderedScene> render_batch(std::span<const Scene> scenes, int64_t resolution) {
  detail::check_resolution(resolution, "world::render_batch");
  std::vector<RenderedScene> out(scenes.size());
  cpu::parallel_for(static_cast<int64_t>(scenes.size()), 8, [&](int64_t begin, int64_t end) {
    for (int64_t i = begin; i < end; ++i)
      render_into(scenes[static_cast<size_t>(i)], resolution, out[static_cast<size_t>(i)]);
  });
  return out;
}

namespace detail {

// One subject drawn over `background`, or over black when it is null.
inline Image render_alone(const Subject& subject, const Background* background, int64_t resolution,
                          const char* what) {
  check_resolution(resolution, what);
  if (background) check_background(*background, what);
  check_subject(subject, what, 0);
  const int R = static_cast<int>(resolution);
  std::vector<float> canvas(static_cast<size_t>(R) * static_cast<size_t>(R) * 3, 0.0f);
  if (background) fill_background(*background, R, canvas.data());
  Mask coverage;
  zeroed_mask(coverage, R);
  draw(subject, R, canvas.data(), coverage.data.data(), {});
  Image image;
  quantise(canvas, R, image);
  return image;
}

}  // namespace detail

// One subject alone on `background` (solid_background(c) for a plain one), placed as its record
// says.
inline Image render_subject(const Subject& subject, const Background& background,
                            int64_t resolution) {
  return detail::render_alone(subject, &background, resolution, "world::render_subject");
}

// One subject alone on black (colour x coverage): the segmentation target.
inline Image render_on_black(const Subject& subject, int64_t resolution) {
  return detail::render_alone(subject, nullptr, resolution, "world::render_on_black");
}

// The background alone, as a scene with no subject renders it (SynthBench's foreground is what
// differs from it).
inline Image render_background(const Background& background, int64_t resolution) {
  detail::check_resolution(resolution, "world::render_background");
  detail::check_background(background, "world::render_background");
  const int R = static_cast<int>(resolution);
  std::vector<float> canvas(static_cast<size_t>(R) * static_cast<size_t>(R) * 3);
  detail::fill_background(background, R, canvas.data());
  Image image;
  detail::quantise(canvas, R, image);
  return image;
}

// A subject's whole coverage [R, R], as if nothing were drawn over it.
inline Mask shape_mask(const Subject& subject, int64_t resolution) {
  detail::check_resolution(resolution, "world::shape_mask");
  detail::check_subject(subject, "world::shape_mask", 0);
  Mask coverage;
  detail::zeroed_mask(coverage, static_cast<int>(resolution));
  detail::draw(subject, static_cast<int>(resolution), nullptr, coverage.data.data(), {});
  return coverage;
}

}  // namespace mentor::data::world
