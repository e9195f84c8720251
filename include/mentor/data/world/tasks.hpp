#pragma once
// MENTOR's six training tasks on the synthetic world (upstream dataset/t2i.py; mentor-system.md
// §1.2 and §4.1), each sample a (reference images, prompt with one `<image>` marker per reference,
// target image) triple with the truth of what every image shows:
//
//   stage 1 (alignment)
//     reconstruction   reference = the scene, target = the same scene; prompt "The image is
//                      <image>\n" + caption, or "<image>\n" alone at image_only_rate (upstream 0.1)
//     segmentation     reference = the scene, target = one subject alone on black where it stood
//                      (upstream's "segment" crop: the source image times the subject's mask; here
//                      the subject's own colours times its visible coverage, so edges are not
//                      darkened twice); prompt "The {red striped star} in <image>."
//     text_to_image    no reference; prompt = the caption
//   stage 2 (instruction tuning)
//     recovery         reference = the subject cut out of the scene, warped and pasted on another
//                      background; target = the original scene; prompt "The {star} in <image>.\n"
//                      + caption
//     subject_driven   reference = the subject large, upright and centred on a plain background;
//                      target = a scene holding it; prompt "The {star} in <image>.\n" + the caption
//                      with the subject named by size and shape only (prompts.hpp)
//     multi_subject    two references, one per subject (distinct shapes); target = both in one
//                      scene; one object line per subject, then the caption
//
// Recovery's augmentation, as upstream's random_transform (scale, then with probability
// warp_rate = 0.5 an affine stretch, a rotation and a perspective warp together, then a paste at a
// uniform offset) over the subject's bounding box: the box is scaled to u x the largest size that
// fits the image, u uniform in [min_scale, 1] (upstream: 0.2 to 1 of the fit); the stretch scales
// x and y by 1 +- stretch (0.7..1.3) and shears x by +-shear (0.3) times y; the rotation is
// +-max_rotation degrees (20) about the box centre; a result wider than the image is shrunk to 0.9
// of the fit, as upstream; the perspective warp moves each corner of the box inward by up to
// perspective (0.2) of its width and height. One homography carries the whole chain; every output
// pixel takes the mean of 2 x 2 bilinear samples of the subject (its colours premultiplied by its
// visible coverage) and is composited over the new background. Two departures from upstream, both
// for a 64-px world: the box is the subject's, not the whole frame's (upstream scales the full
// masked frame, so a subject could shrink to a few pixels), and the stretch is the forward map
// (PIL's AFFINE matrix is the inverse map and can crop the object).
//
// Determinism: sample (stage, split, index) depends only on (seed, stage, split, index) and the
// config: the task is drawn from its own Philox stream, the target scene is sample_scene with a
// seed derived from (seed, stage, task, attempt), other draws come from the task's own stream.
// Training samples (Split::train) never show a held-out combination (sampling.hpp), references
// included: TaskSample::shown lists the scenes every image shows, and
// tests/data/test_world_tasks.cpp scans them for every task.
#include <algorithm>
#include <array>
#include <cmath>
#include <cstdint>
#include <numbers>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include <nlohmann/json.hpp>

#include "mentor/core/error.hpp"
#include "mentor/data/image.hpp"
#include "mentor/data/loader.hpp"
#include "mentor/data/world/attributes.hpp"
#include "mentor/data/world/caption.hpp"
#include "mentor/data/world/prompts.hpp"
#include "mentor/data/world/render.hpp"
#include "mentor/data/world/sampling.hpp"
#include "mentor/io/json_config.hpp"

namespace mentor::data::world {

enum class Task : uint8_t {
  reconstruction,
  segmentation,
  text_to_image,
  recovery,
  subject_driven,
  multi_subject
};
inline constexpr int kTaskCount = 6;
inline constexpr std::array<std::string_view, kTaskCount> kTaskNames = {
    "reconstruction", "segmentation",   "text_to_image",
    "recovery",       "subject_driven", "multi_subject"};
inline constexpr std::string_view name(Task t) { return kTaskNames[static_cast<size_t>(t)]; }
inline constexpr int stage_of(Task t) { return static_cast<int>(t) < 3 ? 1 : 2; }

// ---- Configuration ------------------------------------------------------------------------------

struct RecoveryAugmentation {
  double min_scale = 0.2;    // of the largest size that fits
  double warp_rate = 0.5;    // probability of stretch + rotation + perspective together
  double stretch = 0.3;      // x and y scale 1 +- stretch
  double shear = 0.3;        // x += shear * y, |shear| <= this
  double max_rotation = 20;  // degrees
  double perspective = 0.2;  // corner displacement, a fraction of the box's width and height

  void validate() const {
    MENTOR_CHECK(min_scale > 0 && min_scale <= 1, "RecoveryAugmentation: min_scale ", min_scale,
                 " is outside (0, 1]");
    MENTOR_CHECK(warp_rate >= 0 && warp_rate <= 1, "RecoveryAugmentation: warp_rate ", warp_rate,
                 " is outside [0, 1]");
    MENTOR_CHECK(stretch >= 0 && stretch < 1, "RecoveryAugmentation: stretch ", stretch,
                 " is outside [0, 1)");
    MENTOR_CHECK(shear >= 0 && shear <= 1, "RecoveryAugmentation: shear ", shear,
                 " is outside [0, 1]");
    MENTOR_CHECK(max_rotation >= 0 && max_rotation <= 180, "RecoveryAugmentation: max_rotation ",
                 max_rotation, " is outside [0, 180]");
    MENTOR_CHECK(perspective >= 0 && perspective < 0.5, "RecoveryAugmentation: perspective ",
                 perspective, " is outside [0, 0.5)");
  }
  static RecoveryAugmentation from_json(const nlohmann::json& j, const std::string& path = {}) {
    io::JsonConfigReader r(j, "RecoveryAugmentation", path);
    RecoveryAugmentation c;
    r.read("min_scale", c.min_scale);
    r.read("warp_rate", c.warp_rate);
    r.read("stretch", c.stretch);
    r.read("shear", c.shear);
    r.read("max_rotation", c.max_rotation);
    r.read("perspective", c.perspective);
    r.finish();
    c.validate();
    return c;
  }
  nlohmann::json to_json() const {
    return {{"min_scale", min_scale}, {"warp_rate", warp_rate},       {"stretch", stretch},
            {"shear", shear},         {"max_rotation", max_rotation}, {"perspective", perspective}};
  }
};

// The tasks' configuration (the "tasks" object of a training config):
//   {"resolution": 64, "image_only_rate": 0.1,
//    "stage1": {"reconstruction": 1, "segmentation": 1, "text_to_image": 1},
//    "stage2": {"recovery": 3, "subject_driven": 3, "multi_subject": 2, "reconstruction": 1,
//               "text_to_image": 1},
//    "ablation": {"no_segmentation": false, "no_recovery": false, "no_stage1": false},
//    "recovery": {RecoveryAugmentation}}
// A stage's weights are relative (normalised over the tasks left after the ablations); a task
// absent from a stage's object has weight 0. Upstream's per-task counts are not published; stage 2
// keeps some reconstruction and text-to-image samples, as upstream's stage-2 data does. The
// ablations are the paper's: without segmentation, without image recovery, without stage 1 (the
// trainer skips stage 1; its stream then refuses to give samples).
struct TaskConfig {
  int64_t resolution = 64;
  double image_only_rate = 0.1;
  std::array<double, kTaskCount> stage1 = {1, 1, 1, 0, 0, 0};
  std::array<double, kTaskCount> stage2 = {1, 0, 1, 3, 3, 2};
  bool no_segmentation = false;
  bool no_recovery = false;
  bool no_stage1 = false;
  RecoveryAugmentation recovery;

  bool stage_enabled(int stage) const { return !(stage == 1 && no_stage1); }

  // The weights a stage samples with, ablations applied.
  std::array<double, kTaskCount> weights(int stage) const {
    MENTOR_CHECK(stage == 1 || stage == 2, "TaskConfig: stage ", stage, " is not 1 or 2");
    std::array<double, kTaskCount> w = stage == 1 ? stage1 : stage2;
    if (no_segmentation) w[static_cast<size_t>(Task::segmentation)] = 0;
    if (no_recovery) w[static_cast<size_t>(Task::recovery)] = 0;
    return w;
  }

  void validate() const {
    detail::check_resolution(resolution, "TaskConfig");
    MENTOR_CHECK(image_only_rate >= 0 && image_only_rate <= 1, "TaskConfig: image_only_rate ",
                 image_only_rate, " is outside [0, 1]");
    for (int stage = 1; stage <= 2; ++stage) {
      const auto& raw = stage == 1 ? stage1 : stage2;
      for (int t = 0; t < kTaskCount; ++t)
        MENTOR_CHECK(raw[static_cast<size_t>(t)] >= 0, "TaskConfig: stage", stage, " weight of ",
                     kTaskNames[static_cast<size_t>(t)], " is ", raw[static_cast<size_t>(t)],
                     " (weights are >= 0)");
      if (!stage_enabled(stage)) continue;
      double total = 0;
      for (double v : weights(stage)) total += v;
      MENTOR_CHECK(total > 0, "TaskConfig: stage ", stage,
                   " has no task left to sample (every weight is 0 after the ablations)");
    }
    recovery.validate();
  }

  static TaskConfig from_json(const nlohmann::json& j, const std::string& path = {}) {
    io::JsonConfigReader r(j, "TaskConfig", path);
    TaskConfig c;
    r.read("resolution", c.resolution);
    r.read("image_only_rate", c.image_only_rate);
    for (int stage = 1; stage <= 2; ++stage) {
      const std::string key = stage == 1 ? "stage1" : "stage2";
      if (const nlohmann::json* mix = r.find(key)) {
        io::JsonConfigReader m(*mix, "TaskConfig", r.child_path(key));
        auto& w = stage == 1 ? c.stage1 : c.stage2;
        w.fill(0);
        for (int t = 0; t < kTaskCount; ++t) m.read(kTaskNames[static_cast<size_t>(t)], w[t]);
        m.finish();
      }
    }
    if (const nlohmann::json* ablation = r.find("ablation")) {
      io::JsonConfigReader a(*ablation, "TaskConfig", r.child_path("ablation"));
      a.read("no_segmentation", c.no_segmentation);
      a.read("no_recovery", c.no_recovery);
      a.read("no_stage1", c.no_stage1);
      a.finish();
    }
    if (const nlohmann::json* recovery = r.find("recovery"))
      c.recovery = RecoveryAugmentation::from_json(*recovery, r.child_path("recovery"));
    r.finish();
    c.validate();
    return c;
  }
  nlohmann::json to_json() const {
    nlohmann::json out = {{"resolution", resolution}, {"image_only_rate", image_only_rate}};
    for (int stage = 1; stage <= 2; ++stage) {
      nlohmann::json mix = nlohmann::json::object();
      const auto& w = stage == 1 ? stage1 : stage2;
      for (int t = 0; t < kTaskCount; ++t)
        if (w[static_cast<size_t>(t)] != 0)
          mix[std::string(kTaskNames[static_cast<size_t>(t)])] = w[static_cast<size_t>(t)];
      out[stage == 1 ? "stage1" : "stage2"] = mix;
    }
    out["ablation"] = {{"no_segmentation", no_segmentation},
                       {"no_recovery", no_recovery},
                       {"no_stage1", no_stage1}};
    out["recovery"] = recovery.to_json();
    return out;
  }
};

// ---- Samples -----------------------------------------------------------------------------------

struct TaskSample {
  Task task = Task::reconstruction;
  std::vector<Image> references;  // one per `<image>` marker of the prompt, in order
  std::string prompt;
  Image target;
  bool image_only = false;  // reconstruction's prompt is the marker alone
  // What the target shows: its scene (segmentation: the one subject, over `target_on_black`).
  Scene target_scene;
  bool target_on_black = false;
  // Every scene an image of the sample shows, references included (a recovery reference: the
  // subject at the grid place nearest to where it was pasted, on the new background; a
  // subject-driven reference: reference_pose on its plain background).
  std::vector<Scene> shown;
};

namespace detail {

// Seeds derived from the sample's coordinates (SplitMix64's finaliser over a running mix).
inline uint64_t mix_seed(uint64_t h, uint64_t v) {
  h ^= v + 0x9E3779B97F4A7C15ull + (h << 6) + (h >> 2);
  h ^= h >> 30, h *= 0xBF58476D1CE4E5B9ull, h ^= h >> 27, h *= 0x94D049BB133111EBull;
  return h ^ (h >> 31);
}

// Draw streams of the tasks (sampling.hpp's Draws; streams 1 and 2 are the scene splits).
inline constexpr uint64_t kTaskChoiceStream = 16;  // + 2 (stage - 1) + split
inline constexpr uint64_t kTaskDrawStream = 32;    // + 2 task + split

inline uint64_t split_bit(Split split) { return split == Split::heldout ? 1 : 0; }

// A colour the subject does not have, uniform over the other nine.
inline Colour other_colour(Draws& draws, Colour not_this) {
  return Colour((static_cast<int>(not_this) + 1 + draws.below(kColourCount - 1)) % kColourCount);
}

// ---- Recovery's warp -----------------------------------------------------------------------

struct Homography {
  std::array<double, 9> m{1, 0, 0, 0, 1, 0, 0, 0, 1};  // row-major, maps (x, y, 1)

  Homography operator*(const Homography& o) const {
    Homography r;
    for (int i = 0; i < 3; ++i)
      for (int j = 0; j < 3; ++j) {
        double s = 0;
        for (int k = 0; k < 3; ++k)
          s += m[static_cast<size_t>(3 * i + k)] * o.m[static_cast<size_t>(3 * k + j)];
        r.m[static_cast<size_t>(3 * i + j)] = s;
      }
    return r;
  }
  std::array<double, 2> apply(double x, double y) const {
    const double w = m[6] * x + m[7] * y + m[8];
    return {(m[0] * x + m[1] * y + m[2]) / w, (m[3] * x + m[4] * y + m[5]) / w};
  }
  Homography inverse() const {
    const auto& a = m;
    Homography r;
    r.m = {a[4] * a[8] - a[5] * a[7], a[2] * a[7] - a[1] * a[8], a[1] * a[5] - a[2] * a[4],
           a[5] * a[6] - a[3] * a[8], a[0] * a[8] - a[2] * a[6], a[2] * a[3] - a[0] * a[5],
           a[3] * a[7] - a[4] * a[6], a[1] * a[6] - a[0] * a[7], a[0] * a[4] - a[1] * a[3]};
    const double det = a[0] * r.m[0] + a[1] * r.m[3] + a[2] * r.m[6];
    MENTOR_CHECK(std::abs(det) > 1e-12, "world::recovery: singular warp (determinant ", det, ")");
    for (double& v : r.m) v /= det;
    return r;
  }
  static Homography affine(double a, double b, double c, double d, double tx, double ty) {
    return Homography{{a, b, tx, c, d, ty, 0, 0, 1}};
  }
  // The projective map taking the four points `from` to `to` (Gaussian elimination with partial
  // pivoting on the 8 x 8 system, h33 = 1).
  static Homography four_points(const std::array<std::array<double, 2>, 4>& from,
                                const std::array<std::array<double, 2>, 4>& to) {
    double a[8][9] = {};
    for (int i = 0; i < 4; ++i) {
      const double x = from[static_cast<size_t>(i)][0], y = from[static_cast<size_t>(i)][1];
      const double u = to[static_cast<size_t>(i)][0], v = to[static_cast<size_t>(i)][1];
      double* r0 = a[2 * i];
      double* r1 = a[2 * i + 1];
      r0[0] = x, r0[1] = y, r0[2] = 1, r0[6] = -u * x, r0[7] = -u * y, r0[8] = u;
      r1[3] = x, r1[4] = y, r1[5] = 1, r1[6] = -v * x, r1[7] = -v * y, r1[8] = v;
    }
    for (int col = 0; col < 8; ++col) {
      int pivot = col;
      for (int row = col + 1; row < 8; ++row)
        if (std::abs(a[row][col]) > std::abs(a[pivot][col])) pivot = row;
      MENTOR_CHECK(std::abs(a[pivot][col]) > 1e-12, "world::recovery: degenerate perspective");
      for (int k = 0; k < 9; ++k) std::swap(a[col][k], a[pivot][k]);
      for (int row = 0; row < 8; ++row) {
        if (row == col) continue;
        const double f = a[row][col] / a[col][col];
        for (int k = col; k < 9; ++k) a[row][k] -= f * a[col][k];
      }
    }
    Homography h;
    for (int i = 0; i < 8; ++i) h.m[static_cast<size_t>(i)] = a[i][8] / a[i][i];
    h.m[8] = 1;
    return h;
  }
};

struct Paste {
  Image image;
  float centre_x = 0, centre_y = 0;  // where the subject's box centre landed, fractions of the side
};

// The subject (colours `image`, visible coverage `mask`) cut out, warped as the file comment says
// and composited over `background`.
inline Paste warp_and_paste(const Image& image, const Mask& mask, const Background& background,
                            const RecoveryAugmentation& aug, Draws& draws) {
  const int R = image.width;
  int x0 = R, y0 = R, x1 = -1, y1 = -1;
  for (int y = 0; y < R; ++y)
    for (int x = 0; x < R; ++x)
      if (mask.at(y, x) > 0.0f)
        x0 = std::min(x0, x), x1 = std::max(x1, x), y0 = std::min(y0, y), y1 = std::max(y1, y);
  MENTOR_CHECK(x1 >= 0, "world::recovery: the subject is not visible in its scene");
  const double w = x1 + 1 - x0, h = y1 + 1 - y0;
  const double cx = 0.5 * (x0 + x1 + 1), cy = 0.5 * (y0 + y1 + 1);

  // Linear part: scale, then (warp) stretch + shear and rotation.
  const double fit = std::min(R / w, R / h);
  const double scale = fit * (aug.min_scale + (1.0 - aug.min_scale) * draws.uniform());
  const bool warp = draws.uniform() < aug.warp_rate;
  Homography linear = Homography::affine(scale, 0, 0, scale, 0, 0);
  if (warp) {
    const double sx = 1.0 + aug.stretch * (2.0 * draws.uniform() - 1.0);
    const double sy = 1.0 + aug.stretch * (2.0 * draws.uniform() - 1.0);
    const double shear = aug.shear * (2.0 * draws.uniform() - 1.0);
    const double angle =
        aug.max_rotation * (2.0 * draws.uniform() - 1.0) * std::numbers::pi / 180.0;
    // On screen (y down) a counter-clockwise turn by `angle`.
    const double c = std::cos(angle), s = std::sin(angle);
    linear =
        Homography::affine(c, s, -s, c, 0, 0) * Homography::affine(sx, shear, 0, sy, 0, 0) * linear;
  }
  // The box's extent after the linear part; shrunk to 0.9 of the fit when it outgrows the image.
  const auto extent = [&](const Homography& map) {
    double hx = 0, hy = 0;
    for (const double px : {-0.5 * w, 0.5 * w})
      for (const double py : {-0.5 * h, 0.5 * h}) {
        const auto q = map.apply(px, py);
        hx = std::max(hx, std::abs(q[0])), hy = std::max(hy, std::abs(q[1]));
      }
    return std::array<double, 2>{2 * hx, 2 * hy};
  };
  auto box = extent(linear);
  if (box[0] > R || box[1] > R) {
    const double shrink = 0.9 * std::min(R / box[0], R / box[1]);
    linear = Homography::affine(shrink, 0, 0, shrink, 0, 0) * linear;
    box = extent(linear);
  }
  Homography perspective;
  if (warp) {
    const double bx = 0.5 * box[0], by = 0.5 * box[1];
    const double dx = aug.perspective * box[0], dy = aug.perspective * box[1];
    const std::array<std::array<double, 2>, 4> from = {
        {{-bx, -by}, {bx, -by}, {bx, by}, {-bx, by}}};
    std::array<std::array<double, 2>, 4> to{};
    const double sign_x[4] = {1, -1, -1, 1}, sign_y[4] = {1, 1, -1, -1};
    for (size_t i = 0; i < 4; ++i)
      to[i] = {from[i][0] + sign_x[i] * dx * draws.uniform(),
               from[i][1] + sign_y[i] * dy * draws.uniform()};
    perspective = Homography::four_points(from, to);
  }
  const double ox = 0.5 * box[0] + (R - box[0]) * draws.uniform();
  const double oy = 0.5 * box[1] + (R - box[1]) * draws.uniform();
  const Homography forward = Homography::affine(1, 0, 0, 1, ox, oy) * perspective * linear *
                             Homography::affine(1, 0, 0, 1, -cx, -cy);
  const Homography back = forward.inverse();

  // Premultiplied bilinear sample of the subject at (x, y), pixel coordinates (centres at +0.5).
  const auto sample = [&](double x, double y, float* rgba) {
    const double fx = x - 0.5, fy = y - 0.5;
    const double gx = std::floor(fx), gy = std::floor(fy);
    const float tx = static_cast<float>(fx - gx), ty = static_cast<float>(fy - gy);
    rgba[0] = rgba[1] = rgba[2] = rgba[3] = 0.0f;
    for (int j = 0; j < 2; ++j)
      for (int i = 0; i < 2; ++i) {
        const double px = gx + i, py = gy + j;
        if (px < 0 || py < 0 || px >= R || py >= R) continue;
        const int ix = static_cast<int>(px), iy = static_cast<int>(py);
        const float a = mask.at(iy, ix);
        if (a == 0.0f) continue;
        const float weight = (i ? tx : 1.0f - tx) * (j ? ty : 1.0f - ty) * a;
        for (int c = 0; c < 3; ++c) rgba[c] += weight * float(image.at(iy, ix, c));
        rgba[3] += weight;
      }
  };

  std::vector<float> canvas(static_cast<size_t>(R) * static_cast<size_t>(R) * 3);
  fill_background(background, R, canvas.data());
  Paste out;
  out.image = Image(R, R, 3);
  for (int y = 0; y < R; ++y)
    for (int x = 0; x < R; ++x) {
      float acc[4] = {0, 0, 0, 0};
      for (int sy = 0; sy < 2; ++sy)
        for (int sx = 0; sx < 2; ++sx) {
          const auto p = back.apply(x + 0.25 + 0.5 * sx, y + 0.25 + 0.5 * sy);
          float rgba[4];
          sample(p[0], p[1], rgba);
          for (int c = 0; c < 4; ++c) acc[c] += 0.25f * rgba[c];
        }
      const float* bg =
          canvas.data() +
          (static_cast<size_t>(y) * static_cast<size_t>(R) + static_cast<size_t>(x)) * 3;
      for (int c = 0; c < 3; ++c) {
        const float v = bg[c] * (1.0f - acc[3]) + acc[c];
        out.image.at(y, x, c) = static_cast<uint8_t>(std::lround(std::clamp(v, 0.0f, 255.0f)));
      }
    }
  const auto centre = forward.apply(cx, cy);
  out.centre_x = static_cast<float>(centre[0] / R);
  out.centre_y = static_cast<float>(centre[1] / R);
  return out;
}

// The grid place whose third of the image holds (x, y) (fractions of the side).
inline Position nearest_place(float x, float y) {
  const auto third = [](float v) { return std::clamp(static_cast<int>(v * 3.0f), 0, 2); };
  return Position(3 * third(y) + third(x));
}

// The subject alone on black where it stood, cut by whatever the scene drew over it: its own
// colours (render_on_black) times its visible share of its coverage.
inline Image segmentation_target(const RenderedScene& rendered, size_t subject,
                                 int64_t resolution) {
  const Subject& s = rendered.scene.subjects[subject];
  Image out = render_on_black(s, resolution);
  if (subject + 1 == rendered.scene.subjects.size()) return out;  // nothing drawn over it
  const Mask whole = shape_mask(s, resolution);
  const Mask& visible = rendered.masks[subject];
  for (int y = 0; y < out.height; ++y)
    for (int x = 0; x < out.width; ++x) {
      const float c = whole.at(y, x);
      const float share = c > 0.0f ? std::min(visible.at(y, x) / c, 1.0f) : 0.0f;
      for (int ch = 0; ch < 3; ++ch)
        out.at(y, x, ch) = static_cast<uint8_t>(std::lround(float(out.at(y, x, ch)) * share));
    }
  return out;
}

inline bool same_name(const Subject& a, const Subject& b) {
  return a.shape == b.shape && a.colour == b.colour && a.texture == b.texture;
}

}  // namespace detail

// Sample `index` of one task (Split::train: a training sample; Split::heldout: the same task over
// held-out scenes, for validation). `seed` is the stage's (TaskStream mixes the stage in).
inline TaskSample make_task_sample(const TaskConfig& config, uint64_t seed, Task task, Split split,
                                   uint64_t index) {
  MENTOR_CHECK(static_cast<int>(task) < kTaskCount, "world::make_task_sample: task ",
               static_cast<int>(task), " is not one of the ", kTaskCount, " tasks");
  const int64_t R = config.resolution;
  Draws draws(seed,
              detail::kTaskDrawStream + 2 * static_cast<uint64_t>(task) + detail::split_bit(split),
              index);
  // The target scene: the first attempt that suits the task (a few are enough in practice).
  SceneOptions options;
  if (task == Task::subject_driven) options.min_subjects = options.max_subjects = 1;
  if (task == Task::multi_subject) {
    options.min_subjects = options.max_subjects = 2;
    if (split == Split::heldout) options.heldout_kind = HeldOutKind::pair;
  }
  if (task == Task::subject_driven && split == Split::heldout)
    options.heldout_kind = HeldOutKind::subject;
  Scene scene;
  for (uint64_t attempt = 0;; ++attempt) {
    MENTOR_CHECK(attempt < 64, "world::make_task_sample: no suitable scene in 64 attempts for ",
                 name(task), " sample ", index);
    const uint64_t scene_seed =
        detail::mix_seed(detail::mix_seed(seed, static_cast<uint64_t>(task) + 1), attempt);
    scene = sample_scene(scene_seed, split, index, options);
    // The object word must say which subject a reference shows.
    if ((task == Task::multi_subject || task == Task::recovery) && scene.subjects.size() == 2 &&
        scene.subjects[0].shape == scene.subjects[1].shape)
      continue;
    if (task == Task::segmentation && scene.subjects.size() == 2 &&
        detail::same_name(scene.subjects[0], scene.subjects[1]))
      continue;
    break;
  }
  const RenderedScene rendered = render(scene, R);

  TaskSample out;
  out.task = task;
  out.target_scene = scene;
  out.target = rendered.image;
  out.shown = {scene};
  const std::string text = caption(scene);
  switch (task) {
    case Task::reconstruction:
      out.references = {rendered.image};
      out.image_only = draws.uniform() < config.image_only_rate;
      out.prompt = out.image_only ? image_only_prompt() : reconstruction_prompt(text);
      break;
    case Task::segmentation: {
      const size_t k = static_cast<size_t>(draws.below(static_cast<int>(scene.subjects.size())));
      out.references = {rendered.image};
      out.prompt = segmentation_prompt(subject_name(scene.subjects[k]));
      out.target = detail::segmentation_target(rendered, k, R);
      out.target_scene.subjects = {scene.subjects[k]};
      out.target_on_black = true;
      break;
    }
    case Task::text_to_image:
      out.prompt = text;
      break;
    case Task::recovery: {
      const size_t k = static_cast<size_t>(draws.below(static_cast<int>(scene.subjects.size())));
      const Subject& subject = scene.subjects[k];
      // Another background the subject does not vanish into, whose placement with the pasted
      // subject is not held out (on Split::train).
      for (uint64_t attempt = 0;; ++attempt) {
        MENTOR_CHECK(attempt < 64, "world::make_task_sample: no background for recovery sample ",
                     index, " in 64 attempts");
        const Background bg = sample_scene(detail::mix_seed(detail::mix_seed(seed, 101), attempt),
                                           Split::train, index, {0, 0, std::nullopt})
                                  .background;
        if (bg.uses(subject.colour)) continue;
        detail::Paste paste =
            detail::warp_and_paste(rendered.image, rendered.masks[k], bg, config.recovery, draws);
        Scene reference;
        reference.background = bg;
        reference.subjects = {subject};
        reference.subjects[0].position = detail::nearest_place(paste.centre_x, paste.centre_y);
        if (split == Split::train && has_heldout(reference)) continue;
        out.references = {std::move(paste.image)};
        out.shown.push_back(std::move(reference));
        break;
      }
      out.prompt = object_prompt(name(subject.shape), text);
      break;
    }
    case Task::subject_driven:
    case Task::multi_subject: {
      for (const Subject& subject : scene.subjects) {
        const Colour plain = detail::other_colour(draws, subject.colour);
        out.references.push_back(subject_reference(subject, plain, R));
        Scene reference;
        reference.background = solid_background(plain);
        reference.subjects = {reference_pose(subject)};
        MENTOR_CHECK(!(split == Split::train && has_heldout(reference)),
                     "world::make_task_sample: a reference pose is a held-out placement (a bug "
                     "in the held-out lists)");
        out.shown.push_back(std::move(reference));
      }
      out.prompt = subject_driven_prompt(scene, task == Task::subject_driven ? 1u : 3u);
      break;
    }
  }
  return out;
}

// The samples of one training stage: sample `index` draws its task by the stage's weights from
// its own stream, then is make_task_sample of that task under the stage's seed.
class TaskStream final : public Dataset<TaskSample> {
 public:
  TaskStream(TaskConfig config, uint64_t seed, int stage, Split split = Split::train,
             int64_t size = int64_t{1} << 20)
      : config_((config.validate(), std::move(config))),
        seed_(seed),
        stage_(stage),
        split_(split),
        size_(size) {
    MENTOR_CHECK(stage == 1 || stage == 2, "world::TaskStream: stage ", stage, " is not 1 or 2");
    MENTOR_CHECK(config_.stage_enabled(stage), "world::TaskStream: stage ", stage,
                 " is switched off by the ablation no_stage1");
    MENTOR_CHECK(size >= 1 && static_cast<uint64_t>(size) <= Draws::kMaxIndex + 1,
                 "world::TaskStream: size ", size, " is outside 1..2^44");
    weights_ = config_.weights(stage);
    double total = 0;
    for (double v : weights_) total += v;
    double running = 0;  // the same sums in the same order: the last positive task reaches 1.0
    for (int t = 0; t < kTaskCount; ++t) {
      running += weights_[static_cast<size_t>(t)];
      cumulative_[static_cast<size_t>(t)] = running / total;
    }
  }

  int64_t size() const override { return size_; }
  const TaskConfig& config() const { return config_; }
  uint64_t seed() const { return seed_; }
  int stage() const { return stage_; }
  Split split() const { return split_; }

  Task task_of(int64_t index) const {
    check_index(index);
    Draws draws(seed_,
                detail::kTaskChoiceStream + 2 * static_cast<uint64_t>(stage_ - 1) +
                    detail::split_bit(split_),
                static_cast<uint64_t>(index));
    const double u = draws.uniform();
    int t = 0;  // the first task with u < cumulative weight (a task of weight 0 is never chosen)
    while (t + 1 < kTaskCount &&
           (cumulative_[static_cast<size_t>(t)] <= u || weights_[static_cast<size_t>(t)] == 0))
      ++t;
    return Task(t);
  }

  TaskSample get(int64_t index) const override {
    return make_task_sample(config_, detail::mix_seed(seed_, static_cast<uint64_t>(stage_)),
                            task_of(index), split_, static_cast<uint64_t>(index));
  }

 private:
  void check_index(int64_t index) const {
    MENTOR_CHECK(index >= 0 && index < size_, "world::TaskStream: index ", index, " is outside 0..",
                 size_ - 1);
  }

  TaskConfig config_;
  uint64_t seed_;
  int stage_;
  Split split_;
  int64_t size_;
  std::array<double, kTaskCount> weights_{};
  std::array<double, kTaskCount> cumulative_{};
};

}  // namespace mentor::data::world
