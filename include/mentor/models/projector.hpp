#pragma once
// The vision-to-language projector of MENTOR's multimodal encoder (LLaVA's build_vision_projector,
// as MENTOR's modeling_llavat5.py builds it under the name `language_projection`):
//   "linear"       nn.Linear(in -> out, bias)                  keys `weight`, `bias`
//   "mlpNx_gelu"   Sequential(Linear(in -> out), GELU, Linear(out -> out), GELU, ...): N linears
//                  with exact (erf) GELUs between them         keys `0.*`, `2.*`, `4.*`, ...
//   "identity"     no parameters (in must equal out)
// MENTOR uses mlp2x_gelu, 1024 (CLIP-L) -> 2048 (FlanT5-XL d_model): keys
// `language_projection.{0,2}.{weight,bias}`, initialised from a LLaVA-style projector pre-training.
#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include "mentor/core/error.hpp"
#include "mentor/models/projector_config.hpp"
#include "mentor/nn/layers.hpp"
#include "mentor/nn/module.hpp"
#include "mentor/ops/unary.hpp"

namespace mentor::models {

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

// Every parameter by name (relative to the projector) and shape in named_parameters() order, from
// the module tree built on the shape-only device.
inline std::vector<std::pair<std::string, Shape>> projector_parameter_shapes(
    const ProjectorConfig& config) {
  return nn::parameter_shapes_of<Projector<float, ShapeOnly>>(config);
}

}  // namespace mentor::models
