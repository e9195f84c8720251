// The world's renderer against truth computed here from the documented geometry (attributes.hpp):
// a disc's exact pixel areas (supersampled in double), mask centroids at their grid places, exact
// palette values inside solid subjects and plain backgrounds, intermediate edge pixels, the
// periods of stripes and checks, occlusion, the subject-alone renders and the errors.
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <string>
#include <vector>

#include "catch.hpp"
#include "mentor/data/world/render.hpp"
#include "mentor/data/world/shapes.hpp"

namespace test_world_render {

namespace world = mentor::data::world;
using mentor::data::Image;
using world::BackgroundKind;
using world::Colour;
using world::Mask;
using world::Position;
using world::Scene;
using world::Shape;
using world::Size;
using world::Subject;
using world::Texture;

namespace {

constexpr double kPi = 3.14159265358979323846;

Subject make_subject(Shape shape, Colour colour, Texture texture, Size size, Position position,
                     float jitter_x = 0.0f, float jitter_y = 0.0f, float rotation = 0.0f) {
  Subject s;
  s.shape = shape, s.colour = colour, s.texture = texture, s.size = size, s.position = position;
  s.jitter_x = jitter_x, s.jitter_y = jitter_y, s.rotation_degrees = rotation;
  return s;
}

world::Rgb pixel(const Image& image, int y, int x) {
  return {image.at(y, x, 0), image.at(y, x, 1), image.at(y, x, 2)};
}

double sum(const Mask& m) {
  double total = 0.0;
  for (float v : m.data) total += v;
  return total;
}

// Centroid of a mask in pixels (x, y), pixel centres at +0.5.
std::pair<double, double> centroid(const Mask& m) {
  double sx = 0.0, sy = 0.0, total = 0.0;
  for (int y = 0; y < m.height; ++y)
    for (int x = 0; x < m.width; ++x) {
      sx += m.at(y, x) * (x + 0.5), sy += m.at(y, x) * (y + 0.5), total += m.at(y, x);
    }
  return {sx / total, sy / total};
}

// Fraction of pixel (x, y) inside the disc (cx, cy, r), from 32 x 32 samples.
double disc_pixel_area(int x, int y, double cx, double cy, double r) {
  constexpr int kSamples = 32;
  int inside = 0;
  for (int i = 0; i < kSamples; ++i)
    for (int j = 0; j < kSamples; ++j) {
      const double px = x + (j + 0.5) / kSamples, py = y + (i + 0.5) / kSamples;
      inside += (px - cx) * (px - cx) + (py - cy) * (py - cy) < r * r;
    }
  return double(inside) / (kSamples * kSamples);
}

}  // namespace

TEST_CASE("world: a disc's coverage sums to pi r^2 and matches its exact pixel areas",
          "[data][world]") {
  for (int R : {32, 64, 100, 256}) {
    CAPTURE(R);
    const Subject s = make_subject(Shape::circle, Colour::red, Texture::solid, Size::medium,
                                   Position::center, 0.013f, -0.007f, 0.0f);
    const Mask m = world::shape_mask(s, R);
    REQUIRE(m.width == R);
    REQUIRE(m.height == R);
    // The truth: centre and radius from the documented geometry (grid 0.5, medium diameter 0.32).
    const double cx = (0.5 + 0.013) * R, cy = (0.5 - 0.007) * R, r = 0.16 * R;
    const double area = kPi * r * r;
    CHECK(std::abs(sum(m) - area) / area < 3e-3);
    double max_error = 0.0, edge_error = 0.0;
    int edge_pixels = 0, intermediate = 0;
    for (int y = 0; y < R; ++y)
      for (int x = 0; x < R; ++x) {
        const double exact = disc_pixel_area(x, y, cx, cy, r);
        const double error = std::abs(m.at(y, x) - exact);
        max_error = std::max(max_error, error);
        if (exact > 0.0 && exact < 1.0) edge_error += error, ++edge_pixels;
        intermediate += m.at(y, x) > 0.02f && m.at(y, x) < 0.98f;
      }
    // A linear ramp over one pixel against the exact area: at most ~0.06 off (45 degree edges),
    // a few hundredths on average over the edge.
    CHECK(max_error < 0.08);
    CHECK(edge_error / edge_pixels < 0.02);
    // Anti-aliased: the edge is a ring of intermediate values about as long as the perimeter.
    CHECK(intermediate > 0.8 * 2.0 * kPi * r);
  }
}

TEST_CASE("world: signed distances are exact (1-Lipschitz, unit gradient at the edge)",
          "[data][world]") {
  for (int shape = 0; shape < world::kShapeCount; ++shape) {
    CAPTURE(shape);
    const auto d = [&](double x, double y) {
      return double(world::signed_distance(Shape(shape), float(x), float(y)));
    };
    int near_edge = 0, unit_gradient = 0;
    for (int i = 0; i < 200; ++i)
      for (int j = 0; j < 200; ++j) {
        const double x = -1.2 + 2.4 * (j + 0.5) / 200, y = -1.2 + 2.4 * (i + 0.5) / 200;
        const double h = 1e-3;
        const double gx = (d(x + h, y) - d(x - h, y)) / (2 * h);
        const double gy = (d(x, y + h) - d(x, y - h)) / (2 * h);
        const double g = std::hypot(gx, gy);
        REQUIRE(g < 1.02);  // never steeper than a distance
        if (std::abs(d(x, y)) < 0.05) {
          ++near_edge;
          unit_gradient += std::abs(g - 1.0) < 0.02;
        }
      }
    // Corners and the medial axis are the only places with another gradient.
    CHECK(unit_gradient > 0.95 * near_edge);
    // Inside the unit disc: nothing of the shape beyond radius 1.
    for (int k = 0; k < 720; ++k) {
      const double a = k * kPi / 360;
      CHECK(d(1.001 * std::cos(a), 1.001 * std::sin(a)) > 0.0);
    }
  }
}

TEST_CASE("world: every shape's mask centroid is its centre, inside its named third",
          "[data][world]") {
  constexpr int R = 64;
  for (int shape = 0; shape < world::kShapeCount; ++shape)
    for (int position = 0; position < world::kPositionCount; ++position)
      for (Size size : {Size::small, Size::large})
        for (float jitter : {-world::kMaxJitter, world::kMaxJitter})
          for (float rotation : {-30.0f, 0.0f, 30.0f}) {
            CAPTURE(shape, position, int(size), jitter, rotation);
            const Subject s = make_subject(Shape(shape), Colour::green, Texture::solid, size,
                                           Position(position), jitter, -jitter, rotation);
            const Mask m = world::shape_mask(s, R);
            const auto [cx, cy] = centroid(m);
            // The grid place from the documented geometry: centres at 0.25, 0.5, 0.75.
            const double ex = (0.25 + 0.25 * (position % 3) + jitter) * R;
            const double ey = (0.25 + 0.25 * (position / 3) - jitter) * R;
            CHECK(std::abs(cx - ex) < 0.2);
            CHECK(std::abs(cy - ey) < 0.2);
            CHECK(int(3 * cx / R) == position % 3);
            CHECK(int(3 * cy / R) == position / 3);
            // Nothing is cut off at the image border: the same subject moved to the middle (by
            // a whole number of pixels: grid places are 16 px apart at 64 px) covers as much.
            Subject middle = s;
            middle.position = Position::center;
            CHECK(std::abs(sum(m) - sum(world::shape_mask(middle, R))) < 1e-3);
          }
}

TEST_CASE("world: solid subjects and plain backgrounds hold exact palette values",
          "[data][world]") {
  constexpr int R = 64;
  for (int colour = 0; colour < world::kColourCount; ++colour) {
    const Colour fg = Colour(colour), bg = Colour((colour + 3) % world::kColourCount);
    const Subject s = make_subject(Shape::hexagon, fg, Texture::solid, Size::large,
                                   Position::center, 0.01f, 0.0f, 12.0f);
    Scene scene;
    scene.background = world::solid_background(bg);
    scene.subjects = {s};
    const world::RenderedScene out = world::render(scene, R);
    REQUIRE(out.image.width == R);
    REQUIRE(out.image.height == R);
    REQUIRE(out.image.channels == 3);
    REQUIRE(out.masks.size() == 1);
    REQUIRE(out.scene == scene);
    int inside = 0, outside = 0, edge = 0;
    for (int y = 0; y < R; ++y)
      for (int x = 0; x < R; ++x) {
        const float m = out.masks[0].at(y, x);
        const world::Rgb p = pixel(out.image, y, x);
        if (m == 1.0f) {
          ++inside;
          REQUIRE(p == world::rgb(fg));
        } else if (m == 0.0f) {
          ++outside;
          REQUIRE(p == world::rgb(bg));
        } else if (m > 0.1f && m < 0.9f) {
          // An edge pixel is a mix: on each channel where the colours differ by more than a few
          // levels, strictly between them.
          ++edge;
          const world::Rgb a = world::rgb(bg), b = world::rgb(fg);
          const int pa[3] = {a.r, a.g, a.b}, pb[3] = {b.r, b.g, b.b}, pp[3] = {p.r, p.g, p.b};
          for (int c = 0; c < 3; ++c)
            if (std::abs(pa[c] - pb[c]) > 20) {
              CHECK(pp[c] > std::min(pa[c], pb[c]));
              CHECK(pp[c] < std::max(pa[c], pb[c]));
            }
        }
      }
    CHECK(inside > 400);
    CHECK(outside > 2000);
    CHECK(edge > 40);
    // The same subject alone on the same plain background is the same image.
    CHECK(world::render_subject(s, scene.background, R).data == out.image.data);
  }
}

TEST_CASE("world: textures are two tones of the colour with the documented period",
          "[data][world]") {
  constexpr int R = 256;
  const double r = 0.22 * R;                     // large: diameter 0.44
  const double period = std::max(0.6 * r, 5.0);  // kTexturePeriod x radius, >= 5 px
  const world::Rgb base = world::rgb(Colour::blue), shade = world::shade(Colour::blue);
  const auto tone = [&](const Image& image, int y, int x) {
    const world::Rgb p = pixel(image, y, x);
    if (p == base) return 0;
    if (p == shade) return 1;
    return -1;  // an anti-aliased boundary
  };
  for (Texture texture : {Texture::striped, Texture::checkered, Texture::dotted}) {
    CAPTURE(int(texture));
    const Subject s =
        make_subject(Shape::square, Colour::blue, texture, Size::large, Position::center);
    const Image image = world::render_subject(s, world::solid_background(Colour::white), R);
    const Mask m = world::shape_mask(s, R);
    int base_pixels = 0, shade_pixels = 0, inside = 0;
    for (int y = 0; y < R; ++y)
      for (int x = 0; x < R; ++x) {
        if (m.at(y, x) < 1.0f) continue;
        ++inside;
        const world::Rgb p = pixel(image, y, x);
        base_pixels += p == base, shade_pixels += p == shade;
        // Every pixel lies between the two tones, channel by channel.
        REQUIRE(std::min(base.r, shade.r) <= p.r);
        REQUIRE(p.r <= std::max(base.r, shade.r));
        REQUIRE(std::min(base.b, shade.b) <= p.b);
        REQUIRE(p.b <= std::max(base.b, shade.b));
      }
    // The base tone is the larger part (stripes and checks half, dots 28%), so the colour stays
    // the subject's.
    CHECK(base_pixels > shade_pixels);
    CHECK(shade_pixels > inside / 6);
    if (texture == Texture::striped) {
      // Horizontal bands (rotation 0) of height period / 2, the centre row in the base tone:
      // along the centre column, runs of one tone are period / 2 long.
      const int x = R / 2;
      CHECK(tone(image, R / 2, x) == 0);
      std::vector<int> edges;
      for (int y = R / 2 - 36; y < R / 2 + 36; ++y)
        if (tone(image, y, x) >= 0 && tone(image, y + 1, x) >= 0 &&
            tone(image, y, x) != tone(image, y + 1, x))
          edges.push_back(y);
        else if (tone(image, y, x) < 0)
          edges.push_back(y);
      // Merge an anti-aliased pixel with its neighbours: one edge per boundary.
      std::vector<int> boundaries;
      for (int e : edges)
        if (boundaries.empty() || e - boundaries.back() > 2) boundaries.push_back(e);
      REQUIRE(boundaries.size() >= 3);
      for (size_t i = 1; i < boundaries.size(); ++i)
        CHECK(std::abs((boundaries[i] - boundaries[i - 1]) - period / 2) <= 1.5);
      // and constant along a row.
      for (int dx = -30; dx <= 30; ++dx) CHECK(image.at(R / 2, x + dx, 0) == image.at(R / 2, x, 0));
    }
  }
  // Stripes turn with the subject: at 30 degrees the band of a pixel follows
  // ly = sin(a) dx + cos(a) dy (the subject's frame), away from band edges.
  const Subject turned = make_subject(Shape::circle, Colour::blue, Texture::striped, Size::large,
                                      Position::center, 0.0f, 0.0f, 30.0f);
  const Image image = world::render_subject(turned, world::solid_background(Colour::white), R);
  int checked = 0;
  for (int y = 0; y < R; ++y)
    for (int x = 0; x < R; ++x) {
      const double dx = x + 0.5 - R / 2.0, dy = y + 0.5 - R / 2.0;
      if (dx * dx + dy * dy > 0.8 * r * r) continue;
      const double a = 30.0 * kPi / 180.0;
      const double ly = std::sin(a) * dx + std::cos(a) * dy;
      const double f = ly / period - std::floor(ly / period);  // 0 at the centre: base band
      const double to_edge = std::abs(std::abs(f - 0.5) - 0.25) * period;
      if (to_edge < 1.0) continue;
      const int expected = std::abs(f - 0.5) < 0.25 ? 1 : 0;
      REQUIRE(tone(image, y, x) == expected);
      ++checked;
    }
  CHECK(checked > 3000);
}

TEST_CASE("world: backgrounds: gradients, stripes and checks as documented", "[data][world]") {
  const world::Rgb a = world::rgb(Colour::orange), b = world::rgb(Colour::blue);
  const auto scene_with = [](BackgroundKind kind, uint32_t noise_seed = 0) {
    Scene scene;
    scene.background = {kind, Colour::orange, Colour::blue, noise_seed};
    return scene;
  };
  {  // Vertical gradient: row y is a + (b - a) (y + 0.5) / R, within rounding.
    constexpr int R = 50;
    const Image image = world::render(scene_with(BackgroundKind::vertical_gradient), R).image;
    for (int y = 0; y < R; ++y)
      for (int x : {0, R / 2, R - 1}) {
        const double t = (y + 0.5) / R;
        CHECK(std::abs(image.at(y, x, 0) - (a.r + (b.r - a.r) * t)) <= 0.51);
        CHECK(std::abs(image.at(y, x, 2) - (a.b + (b.b - a.b) * t)) <= 0.51);
      }
  }
  {  // Horizontal gradient: the same along x.
    constexpr int R = 50;
    const Image image = world::render(scene_with(BackgroundKind::horizontal_gradient), R).image;
    for (int x = 0; x < R; ++x) {
      const double t = (x + 0.5) / R;
      CHECK(std::abs(image.at(R / 3, x, 1) - (a.g + (b.g - a.g) * t)) <= 0.51);
    }
  }
  {  // Stripes: 6 periods of vertical bands, the first in `colour`; at 96 px a band is 8 px, so
     // band edges fall between pixels and every pixel holds one of the two colours exactly.
    constexpr int R = 96;
    const Image image = world::render(scene_with(BackgroundKind::stripes), R).image;
    for (int y = 0; y < R; y += 7)
      for (int x = 0; x < R; ++x) REQUIRE(pixel(image, y, x) == ((x / 8) % 2 == 0 ? a : b));
  }
  {  // Checks: an 8 x 8 board, the top left cell in `colour`; 8 px cells at 64 px.
    constexpr int R = 64;
    const Image image = world::render(scene_with(BackgroundKind::checks), R).image;
    for (int y = 0; y < R; ++y)
      for (int x = 0; x < R; ++x) REQUIRE(pixel(image, y, x) == ((x / 8 + y / 8) % 2 == 0 ? a : b));
  }
  {  // Noise: smooth, between the colour and its shade, and a function of its seed.
    constexpr int R = 64;
    const world::Rgb shade = world::shade(Colour::orange);
    const Image image = world::render(scene_with(BackgroundKind::noise, 7), R).image;
    int max_step = 0, low = 255, high = 0;
    for (int y = 0; y < R; ++y)
      for (int x = 0; x < R; ++x) {
        const int g = image.at(y, x, 1);
        CHECK(g >= std::min(a.g, shade.g));
        CHECK(g <= std::max(a.g, shade.g));
        low = std::min(low, g), high = std::max(high, g);
        if (x > 0) max_step = std::max(max_step, std::abs(g - image.at(y, x - 1, 1)));
      }
    CHECK(high - low > (shade.g - a.g) / 2);  // the noise spans both tones
    CHECK(max_step <= 6);                     // and has no edges (40 levels over ~16 px)
    CHECK(world::render(scene_with(BackgroundKind::noise, 8), R).image.data != image.data);
    CHECK(world::render(scene_with(BackgroundKind::noise, 7), R).image.data == image.data);
  }
}

TEST_CASE("world: the second subject is drawn over the first; masks are visible coverage",
          "[data][world]") {
  constexpr int R = 64;
  const Subject first =
      make_subject(Shape::circle, Colour::red, Texture::solid, Size::large, Position::center);
  const Subject second = make_subject(Shape::square, Colour::white, Texture::solid, Size::small,
                                      Position::center, 0.02f, 0.01f, 10.0f);
  Scene scene;
  scene.background = world::solid_background(Colour::blue);
  scene.subjects = {first, second};
  const world::RenderedScene out = world::render(scene, R);
  REQUIRE(out.masks.size() == 2);
  const Mask whole_first = world::shape_mask(first, R), whole_second = world::shape_mask(second, R);
  for (int y = 0; y < R; ++y)
    for (int x = 0; x < R; ++x) {
      CHECK(out.masks[1].at(y, x) == whole_second.at(y, x));
      CHECK(std::abs(out.masks[0].at(y, x) -
                     whole_first.at(y, x) * (1.0f - whole_second.at(y, x))) < 1e-6f);
      if (whole_second.at(y, x) == 1.0f) CHECK(pixel(out.image, y, x) == world::rgb(Colour::white));
    }
  // The whole first mask covers more than its visible part by the second's area.
  CHECK(sum(whole_first) - sum(out.masks[0]) == Approx(sum(whole_second)).epsilon(1e-3));
}

TEST_CASE("world: a subject alone on black is colour times coverage", "[data][world]") {
  constexpr int R = 64;
  const Subject s = make_subject(Shape::star, Colour::yellow, Texture::solid, Size::large,
                                 Position::top_right, -0.01f, 0.02f, -20.0f);
  const Image image = world::render_on_black(s, R);
  const Mask m = world::shape_mask(s, R);
  const world::Rgb c = world::rgb(Colour::yellow);
  int edge = 0;
  for (int y = 0; y < R; ++y)
    for (int x = 0; x < R; ++x) {
      const float v = m.at(y, x);
      CHECK(std::abs(image.at(y, x, 0) - c.r * v) <= 0.5001f);
      CHECK(std::abs(image.at(y, x, 1) - c.g * v) <= 0.5001f);
      if (v == 0.0f) CHECK(pixel(image, y, x) == world::Rgb{0, 0, 0});
      edge += v > 0.0f && v < 1.0f;
    }
  CHECK(edge > 30);
}

TEST_CASE("world: renders are byte-identical every time", "[data][world]") {
  Scene scene;
  scene.background = {BackgroundKind::noise, Colour::green, Colour::green, 12345};
  scene.subjects = {make_subject(Shape::heart, Colour::pink, Texture::dotted, Size::medium,
                                 Position::left, 0.01f, -0.02f, 17.0f),
                    make_subject(Shape::ring, Colour::brown, Texture::checkered, Size::large,
                                 Position::right, -0.02f, 0.0f, -28.0f)};
  for (int R : {32, 64, 77, 256}) {
    const world::RenderedScene a = world::render(scene, R), b = world::render(scene, R);
    CHECK(a.image.data == b.image.data);
    CHECK(a.masks[0].data == b.masks[0].data);
    CHECK(a.masks[1].data == b.masks[1].data);
    world::RenderedScene reused = a;  // render_into over used buffers gives the same
    world::render_into(scene, R, reused);
    CHECK(reused.image.data == a.image.data);
  }
}

TEST_CASE("world: errors name the bad value", "[data][world]") {
  Scene scene;
  scene.subjects = {Subject{}};
  REQUIRE_THROWS_WITH(world::render(scene, 16),
                      Catch::Contains("resolution 16") && Catch::Contains("32..256"));
  REQUIRE_THROWS_WITH(world::render(scene, 300),
                      Catch::Contains("resolution 300") && Catch::Contains("32..256"));
  REQUIRE_THROWS_WITH(world::render_on_black(Subject{}, 31), Catch::Contains("resolution 31"));
  REQUIRE_THROWS_WITH(world::shape_mask(Subject{}, 257), Catch::Contains("resolution 257"));
  REQUIRE_THROWS_WITH(world::render_batch(std::vector<Scene>{scene}, 0),
                      Catch::Contains("resolution 0"));
  Scene crowded = scene;
  crowded.subjects = {Subject{}, Subject{}, Subject{}};
  REQUIRE_THROWS_WITH(world::render(crowded, 64),
                      Catch::Contains("at most 2 subjects") && Catch::Contains("has 3"));
  Scene bad_shape = scene;
  bad_shape.subjects[0].shape = Shape(42);
  REQUIRE_THROWS_WITH(world::render(bad_shape, 64), Catch::Contains("shape 42"));
  Scene far = scene;
  far.subjects[0].jitter_x = 0.3f;
  REQUIRE_THROWS_WITH(world::render(far, 64),
                      Catch::Contains("jitter (0.3") && Catch::Contains("grid place"));
  Scene turned = scene;
  turned.subjects[0].rotation_degrees = 45.0f;
  REQUIRE_THROWS_WITH(world::render(turned, 64), Catch::Contains("rotation 45"));
  Scene bad_background = scene;
  bad_background.background.kind = BackgroundKind(9);
  REQUIRE_THROWS_WITH(world::render(bad_background, 64), Catch::Contains("kind 9"));
  // A bad scene in a batch fails the batch (the error comes back to the caller's thread).
  REQUIRE_THROWS_WITH(world::render_batch(std::vector<Scene>{scene, crowded}, 64),
                      Catch::Contains("at most 2 subjects"));
}

}  // namespace test_world_render
