#pragma once
// Where the tests find the golden fixtures, and the rule that they are required.
//
// The fixtures live outside the repository, in ../shared/fixtures/{upstream,mentor}/ beside the
// checkout (MENTOR_FIXTURES_ROOT, set by tests/CMakeLists.txt). The environment variable
// MENTOR_FIXTURES changes that:
//   MENTOR_FIXTURES=skip           skip every fixture test (with a message): for machines without
//                                  the shared folder. CI never sets it.
//   MENTOR_FIXTURES=/path/to/dir   use /path/to/dir/upstream/ and /path/to/dir/mentor/ instead.
// Otherwise a missing folder or a missing file of the READMEs' tables is a test FAILURE (an error
// naming the path), never a warning: CI must not pass without comparing against upstream.
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <stdexcept>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

namespace mentor::test {

// The files of the fixture READMEs' tables (upstream/README.md, mentor/README.md).
inline const std::vector<std::string>& required_upstream_fixtures() {
  static const std::vector<std::string> files = {"llamagen_gpt_c2i_s0.safetensors",
                                                 "llamagen_gpt_c2i_s1.safetensors",
                                                 "llamagen_gpt_t2i_s0.safetensors",
                                                 "llamagen_gpt_t2i_s1.safetensors",
                                                 "llamagen_vq_s0.safetensors",
                                                 "hf_t5enc_s0.safetensors",
                                                 "hf_clipvis_s0.safetensors",
                                                 "configs.json",
                                                 "README.md"};
  return files;
}
inline const std::vector<std::string>& required_mentor_fixtures() {
  static const std::vector<std::string> files = {"mentor_mm_s0.safetensors", "configs.json",
                                                 "README.md"};
  return files;
}

inline bool fixtures_skipped() {
  const char* env = std::getenv("MENTOR_FIXTURES");
  return env != nullptr && std::string(env) == "skip";
}

inline std::filesystem::path fixtures_root() {
  const char* env = std::getenv("MENTOR_FIXTURES");
  if (env != nullptr && *env != '\0' && std::string(env) != "skip") return env;
  return MENTOR_FIXTURES_ROOT;
}

// The folder `set` ("upstream" or "mentor") of the fixture root; throws (a test failure) when it
// or any file its README lists is missing.
inline std::filesystem::path fixtures_dir(const std::string& set) {
  const std::filesystem::path dir = fixtures_root() / set;
  const std::string how =
      " (set MENTOR_FIXTURES=/path/with/upstream-and-mentor, or MENTOR_FIXTURES=skip to skip "
      "the fixture tests)";
  if (!std::filesystem::is_directory(dir))
    throw std::runtime_error("fixture folder " + dir.string() + " is missing" + how);
  const auto& required =
      set == "upstream" ? required_upstream_fixtures() : required_mentor_fixtures();
  for (const std::string& name : required)
    if (!std::filesystem::is_regular_file(dir / name))
      throw std::runtime_error("fixture file " + (dir / name).string() + " is missing" + how);
  return dir;
}

// One required file of a set (fails as fixtures_dir does).
inline std::filesystem::path fixture_file(const std::string& set, const std::string& name) {
  const std::filesystem::path path = fixtures_dir(set) / name;
  if (!std::filesystem::is_regular_file(path))
    throw std::runtime_error("fixture file " + path.string() + " is missing");
  return path;
}

// The entry `key` of the set's configs.json.
inline nlohmann::json fixture_config(const std::string& set, const std::string& key) {
  const std::filesystem::path path = fixtures_dir(set) / "configs.json";
  std::ifstream in(path);
  const nlohmann::json all = nlohmann::json::parse(in);
  if (!all.contains(key)) throw std::runtime_error(path.string() + " has no entry '" + key + "'");
  return all.at(key);
}

}  // namespace mentor::test

// First statement of every fixture test: returns (with a message) under MENTOR_FIXTURES=skip.
#define MENTOR_FIXTURE_TEST_OR_SKIP()                                        \
  do {                                                                       \
    if (::mentor::test::fixtures_skipped()) {                                \
      WARN("MENTOR_FIXTURES=skip: fixture comparison skipped (not a pass)"); \
      return;                                                                \
    }                                                                        \
  } while (false)
