#pragma once
// Signed distances of the world's shapes (negative inside), exact Euclidean distances after
// Inigo Quilez's 2-D distance functions (iquilezles.org/articles/distfunctions2d), so that the
// renderer's anti-aliasing (coverage = clamp(0.5 - distance in pixels, 0, 1)) is right on every
// edge. Each shape lives in its unit frame: x right, y down (image rows), centred on its area
// centroid (so a subject's centre is where its mask's centroid lies), inside the unit disc.
#include <algorithm>
#include <cmath>
#include <type_traits>
#include <utility>

#include "mentor/data/world/attributes.hpp"

namespace mentor::data::world {

namespace shapes {

inline float length(float x, float y) { return std::sqrt(x * x + y * y); }
inline float sign_of(float v) { return v > 0.0f ? 1.0f : (v < 0.0f ? -1.0f : 0.0f); }

inline float circle(float x, float y) { return length(x, y) - 1.0f; }

// Half side 0.7: corners on the unit circle (0.99).
inline float square(float x, float y) {
  constexpr float kHalf = 0.7f;
  const float dx = std::abs(x) - kHalf, dy = std::abs(y) - kHalf;
  return length(std::max(dx, 0.0f), std::max(dy, 0.0f)) + std::min(std::max(dx, dy), 0.0f);
}

// Equilateral, apex up, circumradius 1 (half side sqrt(3)/2), centroid at the origin.
inline float triangle(float x, float y) {
  constexpr float kSqrt3 = 1.7320508f, kHalfSide = 0.8660254f;
  float px = std::abs(x) - kHalfSide, py = -y + kHalfSide / kSqrt3;
  if (px + kSqrt3 * py > 0.0f) {
    const float qx = 0.5f * (px - kSqrt3 * py), qy = 0.5f * (-kSqrt3 * px - py);
    px = qx, py = qy;
  }
  px -= std::clamp(px, -2.0f * kHalfSide, 0.0f);
  return -length(px, py) * sign_of(py);
}

// Five points, one up, outer radius 1 (iq's sdStar5 with inner factor rf = 0.45).
inline float star(float x, float y) {
  constexpr float k1x = 0.809016994f, k1y = -0.587785252f, kInner = 0.45f;
  float px = std::abs(x), py = -y;
  float d1 = std::max(k1x * px + k1y * py, 0.0f);
  px -= 2.0f * d1 * k1x, py -= 2.0f * d1 * k1y;
  float d2 = std::max(-k1x * px + k1y * py, 0.0f);
  px -= 2.0f * d2 * -k1x, py -= 2.0f * d2 * k1y;
  px = std::abs(px);
  py -= 1.0f;
  const float bax = kInner * -k1y, bay = kInner * k1x - 1.0f;
  const float h = std::clamp((px * bax + py * bay) / (bax * bax + bay * bay), 0.0f, 1.0f);
  return length(px - bax * h, py - bay * h) * sign_of(py * bax - px * bay);
}

// iq's sdHeart (tip at (0, 0), lobes up to y = 1.1) mapped into the unit frame: heart coordinates
// = (x, -y) * kHeartScale + (0, kHeartCentroidY), distances divided by the scale.
// (centroid and farthest point measured on a 4000 x 4000 grid)
inline constexpr float kHeartScale = 0.6563f;
inline constexpr float kHeartCentroidY = 0.6567f;
inline float heart_raw(float x, float y) {
  x = std::abs(x);
  if (y + x > 1.0f) return length(x - 0.25f, y - 0.75f) - 0.35355339f;
  const float a = x * x + (y - 1.0f) * (y - 1.0f);
  const float t = 0.5f * std::max(x + y, 0.0f);
  const float b = (x - t) * (x - t) + (y - t) * (y - t);
  return std::sqrt(std::min(a, b)) * sign_of(x - y);
}
inline float heart(float x, float y) {
  return heart_raw(x * kHeartScale, -y * kHeartScale + kHeartCentroidY) / kHeartScale;
}

// Flat top and bottom, circumradius 1 (apothem sqrt(3)/2).
inline float hexagon(float x, float y) {
  constexpr float kx = -0.866025404f, ky = 0.5f, kz = 0.577350269f, kApothem = 0.8660254f;
  float px = std::abs(x), py = std::abs(y);
  const float d = 2.0f * std::min(kx * px + ky * py, 0.0f);
  px -= d * kx, py -= d * ky;
  px -= std::clamp(px, -kz * kApothem, kz * kApothem);
  py -= kApothem;
  return length(px, py) * sign_of(py);
}

// A plus sign: arms 0.92 long from the centre and 0.30 half-wide (corners at radius 0.97).
inline float cross(float x, float y) {
  constexpr float kArm = 0.92f, kHalfWidth = 0.30f;
  float px = std::abs(x), py = std::abs(y);
  if (py > px) std::swap(px, py);
  const float qx = px - kArm, qy = py - kHalfWidth;
  const float k = std::max(qy, qx);
  const float wx = k > 0.0f ? qx : kHalfWidth - px, wy = k > 0.0f ? qy : -k;
  return sign_of(k) * length(std::max(wx, 0.0f), std::max(wy, 0.0f));
}

// A rhombus 0.62 wide and 1 tall (half diagonals), so that a rotated square never looks like it.
inline float diamond(float x, float y) {
  constexpr float bx = 0.62f, by = 1.0f;
  const float px = std::abs(x), py = std::abs(y);
  const float ndot = (bx - 2.0f * px) * bx - (by - 2.0f * py) * by;
  const float h = std::clamp(ndot / (bx * bx + by * by), -1.0f, 1.0f);
  const float d = length(px - 0.5f * bx * (1.0f - h), py - 0.5f * by * (1.0f + h));
  return d * sign_of(px * by + py * bx - bx * by);
}

// iq's sdMoon: a disc of radius 1 less a disc of radius kMoonCut at kMoonOffset on +x (the horns
// point right), shifted so its centroid is the origin and scaled into the unit disc.
inline constexpr float kMoonCut = 0.8f, kMoonOffset = 0.55f;
inline constexpr float kMoonScale = 1.2596f;
inline constexpr float kMoonCentroidX = -0.3722f;
inline float moon_raw(float x, float y) {
  y = std::abs(y);
  constexpr float d = kMoonOffset, ra = 1.0f, rb = kMoonCut;
  constexpr float a = (ra * ra - rb * rb + d * d) / (2.0f * d);
  const float b = std::sqrt(std::max(ra * ra - a * a, 0.0f));
  if (d * (x * b - y * a) > d * d * std::max(b - y, 0.0f)) return length(x - a, y - b);
  return std::max(length(x, y) - ra, -(length(x - d, y) - rb));
}
inline float crescent(float x, float y) {
  return moon_raw(x * kMoonScale + kMoonCentroidX, y * kMoonScale) / kMoonScale;
}

// An annulus from radius 0.5 to 1.
inline float ring(float x, float y) { return std::abs(length(x, y) - 0.75f) - 0.25f; }

template <Shape S>
inline float signed_distance(float x, float y) {
  if constexpr (S == Shape::circle) return circle(x, y);
  if constexpr (S == Shape::square) return square(x, y);
  if constexpr (S == Shape::triangle) return triangle(x, y);
  if constexpr (S == Shape::star) return star(x, y);
  if constexpr (S == Shape::heart) return heart(x, y);
  if constexpr (S == Shape::hexagon) return hexagon(x, y);
  if constexpr (S == Shape::cross) return cross(x, y);
  if constexpr (S == Shape::diamond) return diamond(x, y);
  if constexpr (S == Shape::crescent) return crescent(x, y);
  if constexpr (S == Shape::ring) return ring(x, y);
}

}  // namespace shapes

// Calls f(std::integral_constant<Shape, s>{}): one switch per subject, so that the per-pixel
// loops are compiled once per shape without a branch on it.
template <class F>
decltype(auto) with_shape(Shape s, F&& f) {
  switch (s) {
    case Shape::circle:
      return f(std::integral_constant<Shape, Shape::circle>{});
    case Shape::square:
      return f(std::integral_constant<Shape, Shape::square>{});
    case Shape::triangle:
      return f(std::integral_constant<Shape, Shape::triangle>{});
    case Shape::star:
      return f(std::integral_constant<Shape, Shape::star>{});
    case Shape::heart:
      return f(std::integral_constant<Shape, Shape::heart>{});
    case Shape::hexagon:
      return f(std::integral_constant<Shape, Shape::hexagon>{});
    case Shape::cross:
      return f(std::integral_constant<Shape, Shape::cross>{});
    case Shape::diamond:
      return f(std::integral_constant<Shape, Shape::diamond>{});
    case Shape::crescent:
      return f(std::integral_constant<Shape, Shape::crescent>{});
    case Shape::ring:
      break;
  }
  return f(std::integral_constant<Shape, Shape::ring>{});
}

// The signed distance of shape s at (x, y) of its unit frame.
inline float signed_distance(Shape s, float x, float y) {
  return with_shape(s,
                    [&](auto tag) { return shapes::signed_distance<decltype(tag)::value>(x, y); });
}

}  // namespace mentor::data::world
