#pragma once
// A JSONL metrics log: one JSON object per line, {"step": ..., "time": ..., <fields>...}, flushed
// after every record so a crash loses at most the record being written and `tail -f` / the plot
// tool (tools/plot_metrics.py) see progress live. "time" is Unix time in seconds (wall clock, so
// records of a resumed run line up with the first run's). Non-finite numbers are written as null
// (JSON has no NaN/Inf).
//
// Resuming: truncate_after(path, step) drops the records a crashed run wrote after its last
// checkpoint (and a torn last line), then JsonlLogger(path, Mode::append) continues the file.
#include <chrono>
#include <cstdint>
#include <filesystem>
#include <fstream>
#include <functional>
#include <mutex>
#include <nlohmann/json.hpp>
#include <string>
#include <utility>
#include <vector>

#include "mentor/core/error.hpp"

namespace mentor::train {

class JsonlLogger {
 public:
  enum class Mode { truncate, append };

  explicit JsonlLogger(std::filesystem::path path, Mode mode = Mode::truncate,
                       std::function<double()> clock = {})
      : path_(std::move(path)), clock_(std::move(clock)) {
    if (!clock_) {
      clock_ = [] {
        return std::chrono::duration<double>(std::chrono::system_clock::now().time_since_epoch())
            .count();
      };
    }
    bool needs_newline = false;
    if (mode == Mode::append && std::filesystem::exists(path_)) {
      // A torn last record (no trailing newline) must not swallow the first new one.
      std::ifstream existing(path_, std::ios::binary | std::ios::ate);
      const auto size = static_cast<std::streamoff>(existing.tellg());
      if (size > 0) {
        existing.seekg(size - 1);
        needs_newline = existing.get() != '\n';
      }
    }
    out_.open(path_, mode == Mode::append ? std::ios::app : std::ios::trunc);
    MENTOR_CHECK(out_.good(), "JsonlLogger: cannot open ", path_.string(), " for writing");
    if (needs_newline) out_ << '\n';
  }

  // Writes {"step": step, "time": now, ...fields}. fields must be an object and must not contain
  // "step" or "time". Accepts nlohmann::json or ordered_json (whose key order is kept).
  void log(int64_t step, const nlohmann::ordered_json& fields) {
    MENTOR_CHECK(fields.is_object() || fields.is_null(), "JsonlLogger::log: fields for step ", step,
                 " must be a JSON object, got ", fields.type_name());
    nlohmann::ordered_json record;
    record["step"] = step;
    record["time"] = clock_();
    if (fields.is_object()) {
      for (const auto& [key, value] : fields.items()) {
        MENTOR_CHECK(key != "step" && key != "time", "JsonlLogger::log: field \"", key,
                     "\" is reserved (added automatically), in ", path_.string());
        record[key] = value;
      }
    }
    const std::string line = record.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
    std::lock_guard lock(mutex_);
    out_ << line << '\n';
    out_.flush();
    MENTOR_CHECK(out_.good(), "JsonlLogger: write to ", path_.string(), " failed at step ", step);
  }

  const std::filesystem::path& path() const { return path_; }

  // Every record of a JSONL file. A malformed line is an error naming the file and line number,
  // except a malformed last line when skip_torn_last_line (what a crash mid-write leaves).
  static std::vector<nlohmann::json> read(const std::filesystem::path& path,
                                          bool skip_torn_last_line = false) {
    std::vector<nlohmann::json> records;
    for (auto& line : read_lines(path, skip_torn_last_line))
      records.push_back(std::move(line.record));
    return records;
  }

  // Rewrites `path` keeping only records with step <= last_step (and records without a step),
  // byte for byte, dropping a torn last line. Call before reopening the log in append mode on
  // resume. The file is replaced by rename, so an interruption leaves either the old or the new
  // file. A missing file is left missing.
  static void truncate_after(const std::filesystem::path& path, int64_t last_step) {
    if (!std::filesystem::exists(path)) return;
    const std::vector<Line> lines = read_lines(path, /*skip_torn_last_line=*/true);
    const std::filesystem::path temporary = path.string() + ".tmp";
    {
      std::ofstream out(temporary, std::ios::trunc);
      MENTOR_CHECK(out.good(), "JsonlLogger::truncate_after: cannot write ", temporary.string());
      for (const auto& line : lines) {
        const auto step = line.record.find("step");
        if (step != line.record.end() && step->is_number() && step->get<int64_t>() > last_step)
          continue;
        out << line.text << '\n';
      }
      out.flush();
      MENTOR_CHECK(out.good(), "JsonlLogger::truncate_after: error writing ", temporary.string());
    }
    std::error_code error;
    std::filesystem::rename(temporary, path, error);
    MENTOR_CHECK(!error, "JsonlLogger::truncate_after: cannot rename ", temporary.string(), " to ",
                 path.string(), ": ", error.message());
  }

 private:
  struct Line {
    std::string text;
    nlohmann::json record;
  };

  static std::vector<Line> read_lines(const std::filesystem::path& path, bool skip_torn_last_line) {
    MENTOR_CHECK(std::filesystem::exists(path),
                 "JsonlLogger::read: file not found: ", path.string());
    std::ifstream in(path);
    MENTOR_CHECK(in.good(), "JsonlLogger::read: cannot open ", path.string());
    std::vector<std::string> texts;
    for (std::string text; std::getline(in, text);)
      if (text.find_first_not_of(" \t\r") != std::string::npos) texts.push_back(std::move(text));
    std::vector<Line> lines;
    for (size_t i = 0; i < texts.size(); ++i) {
      nlohmann::json record = nlohmann::json::parse(texts[i], nullptr, false);
      if (record.is_discarded() || !record.is_object()) {
        if (skip_torn_last_line && i + 1 == texts.size()) break;
        throw Error(mentor::detail::concat("JsonlLogger::read: ", path.string(), " line ", i + 1,
                                   " is not a JSON object: ", texts[i].substr(0, 80)));
      }
      lines.push_back({std::move(texts[i]), std::move(record)});
    }
    return lines;
  }

  std::filesystem::path path_;
  std::function<double()> clock_;
  std::ofstream out_;
  std::mutex mutex_;
};

}  // namespace mentor::train
