#pragma once
// Dispatch of a fixture file to its module's verifier, by the file's name:
// <config key>_s<seed>.safetensors, where <config key> names the entry of configs.json beside it
// (../shared/fixtures/upstream/: llamagen_gpt_*, llamagen_vq, hf_t5enc, hf_clipvis;
// ../shared/fixtures/mentor/: mentor_mm, the MENTOR composition).
#include <filesystem>
#include <fstream>
#include <regex>

#include <nlohmann/json.hpp>

#include "mentor/io/json_config.hpp"

#include "verify/verify_clip.hpp"
#include "verify/verify_gpt.hpp"
#include "verify/verify_mentor.hpp"
#include "verify/verify_t5.hpp"
#include "verify/verify_vq.hpp"

namespace mentor::verify {
using namespace mentor::models;

// "llamagen_gpt_c2i_s0.safetensors" -> "llamagen_gpt_c2i"
inline std::string fixture_config_key(const std::filesystem::path& file) {
  std::string stem = file.stem().string();
  std::smatch m;
  static const std::regex seeded("(.*)_s[0-9]+");
  return std::regex_match(stem, m, seeded) ? m[1].str() : stem;
}

inline nlohmann::json load_fixture_configs(const std::filesystem::path& dir) {
  // Depth-guarded parse: a hostile configs.json cannot build a tree that recursion overflows on.
  return io::load_json_config(dir / "configs.json");
}

template <class T, class D>
VerifyReport verify_fixture(const std::filesystem::path& file, const nlohmann::json& configs) {
  std::string key = fixture_config_key(file);
  MENTOR_CHECK(configs.contains(key), "verify: ", file.string(), ": configs.json has no entry '",
               key, "'");
  const nlohmann::json& config = configs.at(key);
  io::SafeTensorsFile st = io::SafeTensorsFile::open(file.string());
  VerifyReport report;
  if (key.rfind("llamagen_gpt", 0) == 0)
    report = verify_gpt<T, D>(st, config);
  else if (key.rfind("llamagen_vq", 0) == 0)
    report = verify_vq<T, D>(st, config);
  else if (key.rfind("hf_t5enc", 0) == 0)
    report = verify_t5<T, D>(st, config);
  else if (key.rfind("hf_clipvis", 0) == 0)
    report = verify_clip<T, D>(st, config);
  else if (key.rfind("mentor_mm", 0) == 0)
    report = verify_mentor<T, D>(st, config);
  else
    throw Error(::mentor::detail::concat("verify: ", file.string(), ": no verifier for config '",
                                         key, "'"));
  report.file = file.string();
  return report;
}

}  // namespace mentor::verify
