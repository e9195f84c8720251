// ProgressBar (both display modes, ETA arithmetic) and the JSONL metrics log (format, flushing,
// resume by truncate + append, torn lines).
#include <cmath>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>
#include <string>
#include <vector>

#include "catch.hpp"
#include "mentor/train/jsonl.hpp"
#include "mentor/train/progress.hpp"

namespace test_logging {

using mentor::train::JsonlLogger;
using mentor::train::ProgressBar;
using mentor::train::ProgressFields;
using mentor::train::ProgressOptions;

namespace {

std::vector<std::string> split_lines(const std::string& text) {
  std::vector<std::string> lines;
  std::istringstream in(text);
  for (std::string line; std::getline(in, line);) lines.push_back(line);
  return lines;
}

bool contains(const std::string& text, const std::string& part) {
  return text.find(part) != std::string::npos;
}

// A fake clock the test advances by hand.
struct FakeClock {
  double now = 0;
  std::function<double()> function() {
    return [this] { return now; };
  }
};

std::filesystem::path scratch(const std::string& name) {
  const auto dir = std::filesystem::path(MENTOR_BINARY_DIR) / "test_logging_scratch";
  std::filesystem::create_directories(dir);
  const auto path = dir / name;
  std::filesystem::remove(path);
  return path;
}

std::vector<std::string> file_lines(const std::filesystem::path& path) {
  std::ifstream in(path);
  std::stringstream text;
  text << in.rdbuf();
  return split_lines(text.str());
}

}  // namespace

TEST_CASE("durations are formatted as [h:]mm:ss", "[progress]") {
  using mentor::train::detail::format_duration;
  CHECK(format_duration(65) == "01:05");
  CHECK(format_duration(3725) == "1:02:05");
  CHECK(format_duration(0.4) == "00:00");
  CHECK(format_duration(std::nan("")) == "?");
}

TEST_CASE("a progress bar on a non-terminal prints plain lines every N steps", "[progress]") {
  std::ostringstream out;  // not a tty: automatic mode chooses lines
  FakeClock clock;
  ProgressOptions options;
  options.line_every_steps = 10;
  options.line_every_seconds = 0;
  options.clock = clock.function();
  {
    ProgressBar bar(100, "train", out, options);
    CHECK_FALSE(bar.is_terminal());
    for (int step = 1; step <= 100; ++step) {
      clock.now = step;  // one second per step
      ProgressFields fields;
      fields.loss = 2.5;
      fields.lr = 1e-4;
      fields.tokens_per_second = 12345;
      bar.update(step, fields);
    }
    bar.finish();
  }
  const std::string text = out.str();
  CHECK_FALSE(contains(text, "\r"));
  const auto lines = split_lines(text);
  // Steps 1, 11, ..., 91, and the final 100 from finish().
  REQUIRE(lines.size() == 11);
  CHECK(contains(lines[0], "train"));
  CHECK(contains(lines[0], "1/100"));
  CHECK(contains(lines[0], "  1.0%"));
  CHECK(contains(lines[0], "loss 2.5"));
  CHECK(contains(lines[0], "lr 1.00e-04"));
  CHECK(contains(lines[0], "tok/s 12.3k"));
  // Step 51 at t = 51 s: 51 s elapsed since construction at t = 0; 50 steps in the 50 s since the
  // first update, so 49 steps remain at 1 step/s.
  CHECK(contains(lines[5], " 51/100"));
  CHECK(contains(lines[5], "[00:51<00:49]"));
  CHECK(contains(lines[10], "100/100"));
  CHECK(contains(lines[10], "100.0%"));
  CHECK(contains(lines[10], "<00:00]"));
}

TEST_CASE("a non-terminal progress bar also prints by elapsed time", "[progress]") {
  std::ostringstream out;
  FakeClock clock;
  ProgressOptions options;
  options.line_every_seconds = 5;
  options.clock = clock.function();
  ProgressBar bar(0, "tokenize", out, options);  // unknown total
  for (int step = 1; step <= 12; ++step) {
    clock.now = step;
    bar.update(step, std::map<std::string, double>{{"loss", 1.0}, {"grad_norm", 0.25}});
  }
  bar.finish();
  const auto lines = split_lines(out.str());
  // t = 1 (first), 6, 11, then 12 from finish().
  REQUIRE(lines.size() == 4);
  CHECK(contains(lines[1], "tokenize 6 "));
  CHECK(contains(lines[1], "grad_norm 0.25"));
  CHECK_FALSE(contains(lines[1], "%"));  // no total, no percentage
  CHECK_FALSE(contains(lines[1], "<"));  // and no ETA
  CHECK(contains(lines[3], "tokenize 12 "));
}

TEST_CASE("a terminal progress bar redraws in place", "[progress]") {
  std::ostringstream out;
  FakeClock clock;
  ProgressOptions options;
  options.mode = ProgressOptions::Mode::terminal;
  options.redraw_seconds = 0.1;
  options.bar_width = 10;
  options.clock = clock.function();
  ProgressBar bar(50, "sample", out, options);
  for (int step = 1; step <= 50; ++step) {
    clock.now = step * 0.01;  // 100 updates per second: throttled to 10 redraws per second
    bar.update(step);
    if (step == 25) bar.message("checkpoint saved");
  }
  const std::string before_finish = out.str();
  bar.finish();
  const std::string text = out.str();
  const auto redraws = std::count(before_finish.begin(), before_finish.end(), '\r');
  CHECK(redraws >= 5);
  CHECK(redraws <= 12);
  // Only the message has ended a line before finish().
  CHECK(std::count(before_finish.begin(), before_finish.end(), '\n') == 1);
  CHECK(contains(before_finish, "checkpoint saved\n"));
  CHECK(contains(text, "|##########| 50/50"));
  CHECK(text.back() == '\n');
}

TEST_CASE("the JSONL log writes one flushed object per line", "[jsonl]") {
  const auto path = scratch("metrics.jsonl");
  FakeClock clock;
  clock.now = 1700000000.5;
  JsonlLogger log(path, JsonlLogger::Mode::truncate, clock.function());
  log.log(1, {{"loss", 2.5}, {"lr", 1e-4}});
  clock.now += 2;
  nlohmann::json sorted_fields = {{"tokens_per_second", 1000}, {"loss", 2.25}};
  log.log(2, sorted_fields);
  log.log(3, {{"loss", std::nan("")}, {"note", "nan becomes null"}});

  // Read while the logger is still open: every record is already on disk.
  const auto lines = file_lines(path);
  REQUIRE(lines.size() == 3);
  // Independent check of the bytes: step and time come first, fields keep their order.
  CHECK(lines[0].rfind("{\"step\":1,\"time\":1700000000.5,\"loss\":2.5,\"lr\":0.0001}", 0) == 0);
  const auto second = nlohmann::json::parse(lines[1]);
  CHECK(second["step"] == 2);
  CHECK(second["time"].get<double>() == 1700000002.5);
  CHECK(second["tokens_per_second"] == 1000);
  const auto third = nlohmann::json::parse(lines[2]);
  CHECK(third["loss"].is_null());

  const auto records = JsonlLogger::read(path);
  REQUIRE(records.size() == 3);
  CHECK(records[1]["loss"].get<double>() == 2.25);

  CHECK_THROWS_WITH(log.log(4, {{"step", 1}}), Catch::Contains("\"step\" is reserved"));
  CHECK_THROWS_WITH(log.log(4, nlohmann::ordered_json::array({1, 2})),
                    Catch::Contains("must be a JSON object"));
}

TEST_CASE("a resumed run truncates the log to its checkpoint and appends", "[jsonl]") {
  const auto path = scratch("resume.jsonl");
  {
    JsonlLogger log(path);
    for (int step = 1; step <= 5; ++step) log.log(step, {{"loss", 10.0 - step}});
  }
  // Simulate a crash in the middle of writing step 6.
  std::ofstream(path, std::ios::app) << "{\"step\":6,\"ti";

  CHECK_THROWS_WITH(JsonlLogger::read(path),
                    Catch::Contains("line 6") && Catch::Contains(path.string()));
  CHECK(JsonlLogger::read(path, /*skip_torn_last_line=*/true).size() == 5);

  // Checkpoint was at step 3: steps 4, 5 and the torn line go; the run continues from step 4.
  JsonlLogger::truncate_after(path, 3);
  {
    JsonlLogger log(path, JsonlLogger::Mode::append);
    log.log(4, {{"loss", 0.5}});
  }
  const auto records = JsonlLogger::read(path);
  REQUIRE(records.size() == 4);
  for (int i = 0; i < 4; ++i) CHECK(records[static_cast<size_t>(i)]["step"] == i + 1);
  CHECK(records[2]["loss"].get<double>() == 7.0);
  CHECK(records[3]["loss"].get<double>() == 0.5);
}

TEST_CASE("appending after a torn line starts a new line", "[jsonl]") {
  const auto path = scratch("torn.jsonl");
  std::ofstream(path) << "{\"step\":1,\"time\":0}\n{\"step\":2,";
  {
    JsonlLogger log(path, JsonlLogger::Mode::append);
    log.log(3, {{"loss", 1.0}});
  }
  const auto lines = file_lines(path);
  REQUIRE(lines.size() == 3);
  CHECK(lines[1] == "{\"step\":2,");
  CHECK(nlohmann::json::parse(lines[2])["step"] == 3);
  CHECK_THROWS_WITH(JsonlLogger::read(path), Catch::Contains("line 2"));
}

TEST_CASE("JSONL errors name the file", "[jsonl]") {
  const auto missing = scratch("missing.jsonl");
  CHECK_THROWS_WITH(JsonlLogger::read(missing), Catch::Contains(missing.string()));
  CHECK_THROWS_WITH(JsonlLogger("/nonexistent-dir/metrics.jsonl"),
                    Catch::Contains("/nonexistent-dir/metrics.jsonl"));
}

}  // namespace test_logging
