#pragma once
// Learning-rate schedules, as pure functions of the optimizer step (0-based: the lr used by the
// step that is about to run). A schedule has no state of its own, so resuming a run only needs the
// step count, which the checkpoint holds.
//
//   Constant{lr}:                      lr(s) = lr
//   WarmupCosine{peak, warmup, total, floor_ratio}:
//     s < warmup:          lr(s) = peak · (s + 1) / warmup            (linear warm-up, never 0)
//     warmup <= s < total: lr(s) = floor + (peak − floor) · ½ (1 + cos(π (s − warmup) / (total −
//     warmup))) s >= total:          lr(s) = floor                              (training past the
//     plan)
//   with floor = floor_ratio · peak. This is the formula of tools/reference/make_optim_goldens.py
//   and of MENTOR's intended schedule (mentor-system.md §4.1: 5 % warm-up, cosine to 0.1 × peak,
//   counted in optimizer steps; upstream counted micro-batches by mistake, see
//   WarmupCosine::mentor).
#include <cmath>
#include <cstdint>
#include <nlohmann/json.hpp>
#include <numbers>
#include <string>
#include <variant>

#include "mentor/core/error.hpp"
#include "mentor/io/json_config.hpp"

namespace mentor::train {

struct Constant {
  double value = 1e-4;

  double lr(int64_t step) const {
    MENTOR_CHECK(step >= 0, "Constant::lr: negative step ", step);
    return value;
  }
};

struct WarmupCosine {
  double peak = 1e-4;
  int64_t warmup_steps = 0;
  int64_t total_steps = 1;
  double floor_ratio = 0.1;

  // MENTOR's recipe for a run of `total_steps` optimizer steps: 5 % warm-up (rounded, at least one
  // step), cosine decay to 0.1 × peak. Upstream built its scheduler from the number of
  // micro-batches while stepping it once per optimizer step, so with 4-fold accumulation its
  // warm-up covered ~20 % of the run and the lr ended near 0.91 × peak; this counts optimizer
  // steps, which is what the paper's recipe describes.
  static WarmupCosine mentor(double peak_lr, int64_t total_steps) {
    MENTOR_CHECK(total_steps >= 1, "WarmupCosine::mentor: total_steps must be >= 1, got ",
                 total_steps);
    const auto warmup = std::max<int64_t>(1, std::llround(0.05 * static_cast<double>(total_steps)));
    return WarmupCosine{peak_lr, std::min(warmup, total_steps), total_steps, 0.1};
  }

  void validate() const {
    MENTOR_CHECK(std::isfinite(peak) && peak >= 0,
                 "WarmupCosine: peak lr must be finite and >= 0, got ", peak);
    MENTOR_CHECK(warmup_steps >= 0, "WarmupCosine: negative warmup_steps ", warmup_steps);
    MENTOR_CHECK(total_steps >= 1 && total_steps >= warmup_steps, "WarmupCosine: total_steps (",
                 total_steps, ") must be >= 1 and >= warmup_steps (", warmup_steps, ")");
    MENTOR_CHECK(floor_ratio >= 0 && floor_ratio <= 1,
                 "WarmupCosine: floor_ratio must lie in [0, 1], got ", floor_ratio);
  }

  double floor() const { return floor_ratio * peak; }

  double lr(int64_t step) const {
    validate();
    MENTOR_CHECK(step >= 0, "WarmupCosine::lr: negative step ", step);
    if (step < warmup_steps)
      return peak * static_cast<double>(step + 1) / static_cast<double>(warmup_steps);
    if (step >= total_steps || total_steps == warmup_steps) return floor();
    const double progress =
        static_cast<double>(step - warmup_steps) / static_cast<double>(total_steps - warmup_steps);
    return floor() + (peak - floor()) * 0.5 * (1.0 + std::cos(std::numbers::pi * progress));
  }
};

using LrSchedule = std::variant<Constant, WarmupCosine>;

inline double lr_at(const LrSchedule& schedule, int64_t step) {
  return std::visit([step](const auto& s) { return s.lr(step); }, schedule);
}

inline nlohmann::json to_json(const LrSchedule& schedule) {
  if (const auto* c = std::get_if<Constant>(&schedule))
    return {{"type", "constant"}, {"lr", c->value}};
  const auto& w = std::get<WarmupCosine>(schedule);
  return {{"type", "warmup_cosine"},
          {"peak", w.peak},
          {"warmup_steps", w.warmup_steps},
          {"total_steps", w.total_steps},
          {"floor_ratio", w.floor_ratio}};
}

// {"type": "constant", "lr"} or {"type": "warmup_cosine", "peak", "warmup_steps", "total_steps",
// "floor_ratio"}: every key required, any other key an error.
inline LrSchedule schedule_from_json(const nlohmann::json& j, const std::string& path = {}) {
  io::JsonConfigReader r(j, "LrSchedule", path);
  const auto type = r.read_string("type");
  if (!type) r.fail("expected a \"type\" (constant or warmup_cosine)");
  const auto require = [&](const char* key, auto& field) {
    if (!r.read(key, field))
      r.fail(mentor::detail::concat("a ", *type, " schedule needs \"", key, "\""));
  };
  if (*type == "constant") {
    Constant c;
    require("lr", c.value);
    r.finish();
    MENTOR_CHECK(c.value >= 0, "schedule_from_json: negative lr ", c.value);
    return c;
  }
  MENTOR_CHECK(*type == "warmup_cosine", "schedule_from_json: unknown schedule type \"", *type,
               "\" (expected constant or warmup_cosine)");
  WarmupCosine w;
  require("peak", w.peak);
  require("warmup_steps", w.warmup_steps);
  require("total_steps", w.total_steps);
  require("floor_ratio", w.floor_ratio);
  r.finish();
  w.validate();
  return w;
}

}  // namespace mentor::train
