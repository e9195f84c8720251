#pragma once
// The configuration of MENTOR's vision-to-language projector (models/projector.hpp): its type
// (linear, mlpNx_gelu, identity), widths and initialisation.
#include <cmath>
#include <cstdint>
#include <regex>
#include <string>

#include "mentor/core/error.hpp"
#include "mentor/io/json_config.hpp"

namespace mentor::models {

struct ProjectorConfig {
  std::string type = "mlp2x_gelu";  // linear | mlpNx_gelu | identity
  int64_t in_features = 1024;       // upstream mm_hidden_size (the vision tower's width)
  int64_t out_features = 2048;      // upstream hidden_size (the language model's d_model)
  double init_std = 0.02;           // MENTOR re-initialises every Linear with N(0, 0.02), bias 0

  // Number of Linear layers (0 for identity).
  int64_t depth() const {
    if (type == "linear") return 1;
    if (type == "identity") return 0;
    // At most two digits: a deeper MLP is a typo (and std::stoll would throw past int64).
    static const std::regex mlp("^mlp([0-9]{1,2})x_gelu$");
    std::smatch m;
    if (std::regex_match(type, m, mlp)) return std::stoll(m[1].str());
    throw Error(mentor::detail::concat("ProjectorConfig: unknown projector type '", type,
                                       "' (linear, mlpNx_gelu, identity)"));
  }
  void validate() const {
    const int64_t n = depth();
    MENTOR_CHECK(type != "identity" || in_features == out_features, "ProjectorConfig: identity ",
                 "projector needs in_features ", in_features, " == out_features ", out_features);
    MENTOR_CHECK(type == "identity" || n >= 1, "ProjectorConfig: ", type, " has no layers");
    MENTOR_CHECK(in_features > 0 && out_features > 0, "ProjectorConfig: in_features ", in_features,
                 " and out_features ", out_features, " must be positive");
    MENTOR_CHECK(in_features <= io::kMaxConfigSize && out_features <= io::kMaxConfigSize,
                 "ProjectorConfig: in_features ", in_features, " and out_features ", out_features,
                 " must be at most ", io::kMaxConfigSize);
    MENTOR_CHECK(std::isfinite(init_std) && init_std >= 0, "ProjectorConfig: init_std ", init_std,
                 " must be finite and >= 0");
  }
};

}  // namespace mentor::models
