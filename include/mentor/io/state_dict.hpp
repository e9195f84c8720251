#pragma once
// Checking a safetensors file against the parameters a model expects, before any data is copied:
// which names are missing, which are unexpected, and which have the wrong shape. Loading then
// reads each tensor with SafeTensorsFile::read_into / read_as.
#include <cstdint>
#include <map>
#include <set>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "mentor/core/error.hpp"
#include "mentor/io/safetensors.hpp"

namespace mentor::io {

struct LoadReport {
  std::vector<std::string> missing;     // expected names the file lacks
  std::vector<std::string> unexpected;  // file names (under the prefix) the model does not have
  std::vector<std::string> mismatched;  // "key: expected [a,b], file has [c,d]"

  bool ok() const { return missing.empty() && unexpected.empty() && mismatched.empty(); }

  // One line per problem kind; long lists are cut (a wrong prefix would list every parameter).
  std::string summary() const {
    if (ok()) return "state dict matches";
    constexpr size_t kListed = 20;
    std::string out;
    const auto list = [&](std::string_view kind, const std::vector<std::string>& names) {
      if (names.empty()) return;
      if (!out.empty()) out += "; ";
      out += mentor::detail::concat(names.size(), " ", kind, ": ");
      for (size_t i = 0; i < names.size() && i < kListed; ++i) {
        if (i) out += ", ";
        out += names[i];
      }
      if (names.size() > kListed)
        out += mentor::detail::concat(", ... (", names.size() - kListed, " more)");
    };
    list("missing", missing);
    list("unexpected", unexpected);
    list("mismatched", mismatched);
    return out;
  }
};

// Compare the file's tensors (only keys starting with `prefix`, with the prefix stripped) with the
// expected (name, shape) list. strict: throws mentor::Error with summary() on any problem;
// non-strict: throws only on mismatched shapes (missing and unexpected are left to the caller).
inline LoadReport check_state_dict(
    const SafeTensorsFile& file,
    const std::vector<std::pair<std::string, std::vector<int64_t>>>& expected, bool strict,
    std::string_view prefix = "") {
  std::map<std::string, const std::vector<int64_t>*, std::less<>> expected_shapes;
  for (const auto& [name, shape] : expected) {
    if (!expected_shapes.emplace(name, &shape).second) {
      throw Error(
          mentor::detail::concat("check_state_dict: the expected list names '", name, "' twice"));
    }
  }

  LoadReport report;
  std::set<std::string, std::less<>> found;
  for (const std::string& key : file.keys()) {  // sorted, so the report is too
    if (!std::string_view(key).starts_with(prefix)) continue;
    const std::string name = key.substr(prefix.size());
    const auto wanted = expected_shapes.find(name);
    if (wanted == expected_shapes.end()) {
      report.unexpected.push_back(name);
      continue;
    }
    found.insert(name);
    const std::vector<int64_t>& file_shape = file.info(key).shape;
    if (file_shape != *wanted->second) {
      report.mismatched.push_back(
          mentor::detail::concat(name, ": expected ", detail::format_shape(*wanted->second),
                                 ", file has ", detail::format_shape(file_shape)));
    }
  }
  for (const auto& [name, shape] : expected) {
    if (!found.count(name)) report.missing.push_back(name);
  }

  if ((strict && !report.ok()) || !report.mismatched.empty()) {
    const std::string where =
        prefix.empty() ? std::string() : mentor::detail::concat(" (keys under '", prefix, "')");
    throw Error(mentor::detail::concat("safetensors ", file.path(), ": state dict does not match",
                                       where, ": ", report.summary()));
  }
  return report;
}

}  // namespace mentor::io
