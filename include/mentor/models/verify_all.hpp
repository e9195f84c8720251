#pragma once
// Dispatch of a fixture file to its module's verifier, by the file's name:
// <config key>_s<seed>.safetensors, where <config key> names the entry of configs.json beside it.
#include <filesystem>
#include <fstream>
#include <regex>

#include <nlohmann/json.hpp>

#include "mentor/models/verify_clip.hpp"
#include "mentor/models/verify_gpt.hpp"
#include "mentor/models/verify_t5.hpp"
#include "mentor/models/verify_vq.hpp"

namespace mentor::models {

// "llamagen_gpt_c2i_s0.safetensors" -> "llamagen_gpt_c2i"
inline std::string fixture_config_key(const std::filesystem::path& file) {
  std::string stem = file.stem().string();
  std::smatch m;
  static const std::regex seeded("(.*)_s[0-9]+");
  return std::regex_match(stem, m, seeded) ? m[1].str() : stem;
}

inline nlohmann::json load_fixture_configs(const std::filesystem::path& dir) {
  std::filesystem::path path = dir / "configs.json";
  std::ifstream in(path);
  MENTOR_CHECK(in.good(), "verify: cannot open ", path.string());
  try {
    return nlohmann::json::parse(in);
  } catch (const std::exception& e) {
    throw Error(::mentor::detail::concat("verify: ", path.string(), " is not valid JSON: ", e.what()));
  }
}

template <class T, class D>
VerifyReport verify_fixture(const std::filesystem::path& file, const nlohmann::json& configs) {
  std::string key = fixture_config_key(file);
  MENTOR_CHECK(configs.contains(key), "verify: ", file.string(), ": configs.json has no entry '", key,
               "'");
  const nlohmann::json& config = configs.at(key);
  io::SafeTensorsFile st = io::SafeTensorsFile::open(file.string());
  VerifyReport report;
  if (key.rfind("llamagen_gpt", 0) == 0) report = verify_gpt<T, D>(st, config);
  else if (key.rfind("llamagen_vq", 0) == 0) report = verify_vq<T, D>(st, config);
  else if (key.rfind("hf_t5enc", 0) == 0) report = verify_t5<T, D>(st, config);
  else if (key.rfind("hf_clipvis", 0) == 0) report = verify_clip<T, D>(st, config);
  else throw Error(::mentor::detail::concat("verify: ", file.string(), ": no verifier for config '", key, "'"));
  report.file = file.string();
  return report;
}

}  // namespace mentor::models
