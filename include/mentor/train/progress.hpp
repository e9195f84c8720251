#pragma once
// A progress bar for long work (training, sampling, tokenizing a data set).
//
// On a terminal it redraws one line in place with '\r' (at most every redraw_seconds); elsewhere
// (a log file, a CI pipe) it prints a plain line on the first update, then every line_every_steps
// steps and/or line_every_seconds seconds, and on finish(), so logs stay readable and small.
// Shows step/total, percentage, loss, lr, tokens/s, any extra fields, elapsed time and the ETA
// (from the rate since the first update, so a resumed run's ETA is not distorted by the steps it
// skipped).
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <functional>
#include <iostream>
#include <map>
#include <optional>
#include <ostream>
#include <sstream>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "mentor/core/error.hpp"

namespace mentor::train {

struct ProgressFields {
  std::optional<double> loss;
  std::optional<double> lr;
  std::optional<double> tokens_per_second;
  std::vector<std::pair<std::string, double>> extra;  // shown after the others, in this order
};

struct ProgressOptions {
  enum class Mode { automatic, terminal, lines };
  Mode mode = Mode::automatic;   // automatic: terminal when the stream is a tty
  int64_t line_every_steps = 0;  // lines mode: print every this many steps (0: never by steps)
  double line_every_seconds =
      30;                       // lines mode: print when this long since the last line (0: never)
  double redraw_seconds = 0.1;  // terminal mode: minimum time between redraws
  int bar_width = 24;
  std::function<double()> clock;  // seconds, monotonic; defaults to steady_clock (tests inject one)
};

namespace detail {

// "1:02:03" or "02:03".
inline std::string format_duration(double seconds) {
  if (!std::isfinite(seconds) || seconds < 0) return "?";
  const auto total = static_cast<int64_t>(seconds + 0.5);
  const int64_t hours = total / 3600, minutes = total / 60 % 60, secs = total % 60;
  char buffer[48];
  if (hours > 0)
    std::snprintf(buffer, sizeof buffer, "%lld:%02lld:%02lld", static_cast<long long>(hours),
                  static_cast<long long>(minutes), static_cast<long long>(secs));
  else
    std::snprintf(buffer, sizeof buffer, "%02lld:%02lld", static_cast<long long>(minutes),
                  static_cast<long long>(secs));
  return buffer;
}

// Four decimals, switching to exponent notation for very small or large values.
inline std::string format_value(double value) {
  char buffer[48];
  const double magnitude = std::fabs(value);
  if (value != 0 && (magnitude < 1e-3 || magnitude >= 1e5))
    std::snprintf(buffer, sizeof buffer, "%.3e", value);
  else
    std::snprintf(buffer, sizeof buffer, "%.4f", value);
  return buffer;
}

// 12.3k, 4.56M: throughput at a glance.
inline std::string format_rate(double value) {
  char buffer[48];
  const double magnitude = std::fabs(value);
  if (magnitude >= 1e9)
    std::snprintf(buffer, sizeof buffer, "%.3gG", value / 1e9);
  else if (magnitude >= 1e6)
    std::snprintf(buffer, sizeof buffer, "%.3gM", value / 1e6);
  else if (magnitude >= 1e3)
    std::snprintf(buffer, sizeof buffer, "%.3gk", value / 1e3);
  else
    std::snprintf(buffer, sizeof buffer, "%.3g", value);
  return buffer;
}

inline bool stream_is_terminal(const std::ostream& out) {
  if (&out == &std::cerr || &out == &std::clog) return ::isatty(STDERR_FILENO) != 0;
  if (&out == &std::cout) return ::isatty(STDOUT_FILENO) != 0;
  return false;
}

}  // namespace detail

class ProgressBar {
 public:
  // total <= 0: the total is unknown (no percentage, bar or ETA).
  ProgressBar(int64_t total, std::string label, std::ostream& out = std::cerr,
              ProgressOptions options = {})
      : total_(total), label_(std::move(label)), out_(out), options_(std::move(options)) {
    MENTOR_CHECK(options_.bar_width >= 0, "ProgressBar: negative bar_width ", options_.bar_width);
    if (!options_.clock) {
      options_.clock = [] {
        return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch())
            .count();
      };
    }
    terminal_ =
        options_.mode == ProgressOptions::Mode::terminal ||
        (options_.mode == ProgressOptions::Mode::automatic && detail::stream_is_terminal(out_));
    start_time_ = options_.clock();
  }

  ProgressBar(const ProgressBar&) = delete;
  ProgressBar& operator=(const ProgressBar&) = delete;

  ~ProgressBar() {
    try {
      finish();
    } catch (...) {  // a destructor must not throw; the stream's state tells what failed
    }
  }

  // `step` is the number of completed steps (1..total).
  void update(int64_t step, const ProgressFields& fields = {}) {
    if (finished_) return;
    const double now = options_.clock();
    if (!first_step_) {
      first_step_ = step;
      first_step_time_ = now;
    }
    step_ = step;
    fields_ = fields;
    if (terminal_) {
      if (last_print_time_ && now - *last_print_time_ < options_.redraw_seconds && step != total_)
        return;
      draw_in_place(now);
    } else {
      const bool first = !last_print_time_;
      const bool by_steps = options_.line_every_steps > 0 && last_printed_step_ &&
                            step - *last_printed_step_ >= options_.line_every_steps;
      const bool by_time = options_.line_every_seconds > 0 && last_print_time_ &&
                           now - *last_print_time_ >= options_.line_every_seconds;
      if (first || by_steps || by_time) print_line(now);
    }
  }

  // Keys "loss", "lr", "tokens/s" fill the named fields; other keys are shown as extras.
  void update(int64_t step, const std::map<std::string, double>& fields) {
    ProgressFields typed;
    for (const auto& [key, value] : fields) {
      if (key == "loss")
        typed.loss = value;
      else if (key == "lr")
        typed.lr = value;
      else if (key == "tokens/s" || key == "tokens_per_second")
        typed.tokens_per_second = value;
      else
        typed.extra.emplace_back(key, value);
    }
    update(step, typed);
  }

  // Prints a line of text without tearing the bar (which is redrawn below it on a terminal).
  void message(std::string_view text) {
    if (terminal_ && drawn_length_ > 0) {
      out_ << '\r' << std::string(drawn_length_, ' ') << '\r' << text << '\n';
      drawn_length_ = 0;
      if (step_) draw_in_place(options_.clock());
    } else {
      out_ << text << '\n';
    }
    out_.flush();
  }

  // Draws the final state (if not yet shown) and ends the line. Idempotent.
  void finish() {
    if (finished_) return;
    finished_ = true;
    const double now = options_.clock();
    if (terminal_) {
      if (step_) draw_in_place(now);
      if (drawn_length_ > 0) out_ << '\n';
    } else if (step_ && last_printed_step_ != step_) {
      print_line(now);
    }
    out_.flush();
  }

  // The status text (without '\r' or newline) as it would be shown now; for tests and logs.
  std::string status_text(double now) const {
    // Built with a stream: GCC 12 at -O3 raises a false -Wrestrict on "literal" + std::string.
    std::ostringstream text;
    text << label_;
    const int64_t step = step_.value_or(0);
    if (total_ > 0) {
      const double fraction = std::clamp(static_cast<double>(step) / total_, 0.0, 1.0);
      char percent[32];
      std::snprintf(percent, sizeof percent, " %5.1f%%", 100.0 * fraction);
      text << percent;
      if (terminal_ && options_.bar_width > 0) {
        const int filled = static_cast<int>(fraction * options_.bar_width);
        text << " |" << std::string(static_cast<size_t>(filled), '#')
             << std::string(static_cast<size_t>(options_.bar_width - filled), '.') << '|';
      }
      text << ' ' << step << '/' << total_;
    } else {
      text << ' ' << step;
    }
    if (fields_.loss) text << " loss " << detail::format_value(*fields_.loss);
    if (fields_.lr) {
      char lr[32];
      std::snprintf(lr, sizeof lr, "%.2e", *fields_.lr);
      text << " lr " << lr;
    }
    if (fields_.tokens_per_second)
      text << " tok/s " << detail::format_rate(*fields_.tokens_per_second);
    for (const auto& [key, value] : fields_.extra)
      text << ' ' << key << ' ' << detail::format_value(value);
    text << " [" << detail::format_duration(now - start_time_);
    if (total_ > 0) text << '<' << detail::format_duration(eta_seconds(now));
    text << ']';
    return text.str();
  }

  // Seconds left at the rate observed since the first update; NaN before the rate is known.
  double eta_seconds(double now) const {
    if (!first_step_ || !step_ || *step_ <= *first_step_ || total_ <= 0) {
      if (step_ && total_ > 0 && *step_ >= total_) return 0.0;
      return std::nan("");
    }
    const double rate = static_cast<double>(*step_ - *first_step_) / (now - first_step_time_);
    return static_cast<double>(std::max<int64_t>(total_ - *step_, 0)) / rate;
  }

  bool is_terminal() const { return terminal_; }

 private:
  void draw_in_place(double now) {
    const std::string text = status_text(now);
    out_ << '\r' << text;
    // Blank what is left of a longer previous line.
    if (text.size() < drawn_length_) out_ << std::string(drawn_length_ - text.size(), ' ');
    drawn_length_ = text.size();
    out_.flush();
    last_print_time_ = now;
  }

  void print_line(double now) {
    out_ << status_text(now) << '\n';
    out_.flush();
    last_print_time_ = now;
    last_printed_step_ = step_;
  }

  int64_t total_;
  std::string label_;
  std::ostream& out_;
  ProgressOptions options_;
  bool terminal_ = false;
  bool finished_ = false;
  double start_time_ = 0;
  std::optional<int64_t> step_;
  std::optional<int64_t> first_step_;
  double first_step_time_ = 0;
  ProgressFields fields_;
  std::optional<double> last_print_time_;
  std::optional<int64_t> last_printed_step_;
  size_t drawn_length_ = 0;
};

}  // namespace mentor::train
