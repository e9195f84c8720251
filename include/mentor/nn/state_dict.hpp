#pragma once
// Loading and saving a module's parameters and buffers by upstream's names, from and to
// safetensors. Missing, unexpected and mis-shaped keys are reported by name with both shapes.
#include <string>
#include <vector>

#include "mentor/io/safetensors.hpp"
#include "mentor/io/state_dict.hpp"
#include "mentor/nn/module.hpp"

namespace mentor::nn {

// A file tensor as Tensor<T, D> (converted from the stored dtype; bool/int kept exact).
template <class T, class D = CPU>
Tensor<T, D> load_tensor(const io::SafeTensorsFile& file, const std::string& key) {
  const auto& info = file.info(key);
  std::vector<T> values = file.read_as<T>(key);
  return Tensor<T, CPU>::from_vector(values, Shape(info.shape)).template to<D>();
}

struct LoadOptions {
  bool strict = true;        // missing or unexpected keys are errors (mis-shaped ones always are)
  std::string prefix;        // only file keys under this prefix, with it stripped (e.g. "w.")
  std::vector<std::string> ignore;  // file keys (after the prefix) never reported as unexpected
};

// Copies every tensor of `module.state()` from `file`. Values land in the existing tensors, which
// keep their requires_grad flags. Returns the report (missing keys are left untouched when not strict).
template <class T, class D>
io::LoadReport load_state_dict(Module<T, D>& module, const io::SafeTensorsFile& file,
                               const LoadOptions& options = {}) {
  auto entries = module.state();
  std::vector<std::pair<std::string, std::vector<int64_t>>> expected;
  for (auto& [name, t] : entries) expected.emplace_back(name, t->shape().vec());
  io::LoadReport report = io::check_state_dict(file, expected, false, options.prefix);
  std::erase_if(report.unexpected, [&](const std::string& key) {
    for (const auto& ig : options.ignore)
      if (key == ig) return true;
    return false;
  });
  MENTOR_CHECK(report.mismatched.empty() &&
                   (!options.strict || (report.missing.empty() && report.unexpected.empty())),
               "load_state_dict from ", file.path(), ": ", report.summary());
  NoGradGuard no_grad;
  for (auto& [name, t] : entries) {
    std::string key = options.prefix + name;
    if (!file.contains(key)) continue;
    Tensor<T, D> value = load_tensor<T, D>(file, key);
    bool trainable = t->requires_grad();
    *t = value;
    if (trainable) t->requires_grad_(true);
  }
  return report;
}

// Adds the module's parameters and buffers (float32 on disk, or the module's own type) to a writer.
template <class T, class D>
void add_state_dict(Module<T, D>& module, io::SafeTensorsWriter& writer, const std::string& prefix = "") {
  for (auto& [name, t] : module.state()) {
    Tensor<T, CPU> host = t->detach().template to<CPU>().contiguous();
    std::vector<T> values = host.to_vector();
    writer.add(prefix + name, host.shape().vec(), values);
  }
}

}  // namespace mentor::nn
