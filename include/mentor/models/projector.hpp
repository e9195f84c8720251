#pragma once
// The vision-to-language projector of MENTOR's multimodal encoder (LLaVA's build_vision_projector,
// as MENTOR's modeling_llavat5.py builds it under the name `language_projection`):
//   "linear"       nn.Linear(in -> out, bias)                  keys `weight`, `bias`
//   "mlpNx_gelu"   Sequential(Linear(in -> out), GELU, Linear(out -> out), GELU, ...): N linears
//                  with exact (erf) GELUs between them         keys `0.*`, `2.*`, `4.*`, ...
//   "identity"     no parameters (in must equal out)
// MENTOR uses mlp2x_gelu, 1024 (CLIP-L) -> 2048 (FlanT5-XL d_model): keys
// `language_projection.{0,2}.{weight,bias}`, initialised from a LLaVA-style projector pre-training.
#include <cmath>
#include <cstdint>
#include <regex>
#include <string>
#include <utility>
#include <vector>

#include "mentor/core/error.hpp"
#include "mentor/io/json_config.hpp"
#include "mentor/nn/layers.hpp"
#include "mentor/nn/module.hpp"
#include "mentor/ops/unary.hpp"

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

// Every parameter by name (relative to the projector) and shape, in named_parameters() order.
inline std::vector<std::pair<std::string, Shape>> projector_parameter_shapes(
    const ProjectorConfig& c) {
  c.validate();
  std::vector<std::pair<std::string, Shape>> shapes;
  const int64_t n = c.depth();
  for (int64_t i = 0; i < n; ++i) {
    const std::string p = c.type == "linear" ? "" : std::to_string(2 * i) + ".";
    const int64_t in = i == 0 ? c.in_features : c.out_features;
    shapes.emplace_back(p + "weight", Shape{c.out_features, in});
    shapes.emplace_back(p + "bias", Shape{c.out_features});
  }
  return shapes;
}

template <FloatingElement T, class D = CPU>
class Projector : public nn::Module<T, D> {
 public:
  Projector() = default;
  Projector(const ProjectorConfig& config, Generator& gen) : config_((config.validate(), config)) {
    const int64_t n = config.depth();
    linears.reserve(static_cast<size_t>(n));
    for (int64_t i = 0; i < n; ++i)
      linears.emplace_back(i == 0 ? config.in_features : config.out_features, config.out_features,
                           true, gen, config.init_std);
  }

  const ProjectorConfig& config() const { return config_; }

  // x [..., in_features] -> [..., out_features].
  Tensor<T, D> operator()(const Tensor<T, D>& x) const {
    MENTOR_CHECK_SHAPE(x.dim() >= 1 && x.size(-1) == config_.in_features, "Projector (",
                       config_.type, "): input ", x.shape().str(), " does not end in ",
                       config_.in_features, " features");
    Tensor<T, D> h = x;
    for (size_t i = 0; i < linears.size(); ++i) {
      if (i > 0) h = gelu(h, GeluApprox::None);  // nn.GELU(): the exact erf form
      h = linears[i](h);
    }
    return h;
  }

  void visit(nn::Visitor<T, D>& v) override {
    if (config_.type == "linear") {
      linears.front().visit(v);  // a bare nn.Linear: `weight`, `bias`
      return;
    }
    // nn.Sequential numbering: the GELUs take the odd indices.
    for (size_t i = 0; i < linears.size(); ++i) v.child(std::to_string(2 * i), linears[i]);
  }

  std::vector<nn::Linear<T, D>> linears;

 private:
  ProjectorConfig config_;
};

}  // namespace mentor::models
