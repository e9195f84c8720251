#pragma once
// The VQ codes of a task stream's target images, encoded batch by batch in eval mode without
// gradients: what examples/pretokenize stores (data/pretokenized.hpp) so that training reads codes
// instead of running the encoder every step. Targets are normalised as upstream's t2i dataset does
// (adm_center_crop: [-1, 1]); the world's targets are already square at the stream's resolution.
#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "mentor/autograd/node.hpp"
#include "mentor/core/error.hpp"
#include "mentor/core/tensor.hpp"
#include "mentor/data/image.hpp"
#include "mentor/data/pretokenized.hpp"
#include "mentor/data/world/tasks.hpp"
#include "mentor/models/vq.hpp"

namespace mentor::models {

// Encodes samples 0..stream.size()-1; `progress(done)` after each batch. `vq_identity` is stored
// with the codes (the tool passes the checkpoint's XXH64).
template <class T, class D>
data::PretokenizedContents encode_task_targets(VQModel<T, D>& vq,
                                               const data::world::TaskStream& stream, int64_t batch,
                                               const std::string& vq_identity,
                                               const std::function<void(int64_t)>& progress = {}) {
  MENTOR_CHECK(batch >= 1, "encode_task_targets: batch ", batch, " must be at least 1");
  const int64_t R = stream.config().resolution, count = stream.size();
  vq.eval();
  NoGradGuard no_grad;
  data::PretokenizedContents out;
  out.source = data::pretokenized_source(stream);
  out.vq = vq_identity;
  out.codebook_size = vq.config.codebook_size;
  out.tasks.reserve(static_cast<size_t>(count));
  out.hashes.reserve(static_cast<size_t>(count));
  std::vector<float> pixels;
  for (int64_t first = 0; first < count; first += batch) {
    const int64_t n = std::min(batch, count - first);
    pixels.assign(static_cast<size_t>(n * 3 * R * R), 0.0f);
    for (int64_t b = 0; b < n; ++b) {
      const data::world::TaskSample s = stream.get(first + b);
      const data::ImageCHW chw = data::adm_center_crop(s.target, static_cast<int>(R));
      std::copy(chw.data.begin(), chw.data.end(),
                pixels.begin() + static_cast<std::ptrdiff_t>(b * 3 * R * R));
      out.tasks.push_back(static_cast<uint8_t>(s.task));
      out.hashes.push_back(static_cast<int64_t>(data::image_hash(s.target)));
    }
    const auto images = Tensor<float, CPU>::from_vector(pixels, Shape{n, 3, R, R})
                            .template to<T>()
                            .template to<D>();
    const auto result = vq.encode(images);
    if (first == 0) out.grid_height = result.height, out.grid_width = result.width;
    const std::vector<int64_t> codes = result.indices.template to<CPU>().to_vector();
    MENTOR_CHECK(static_cast<int64_t>(codes.size()) == n * out.grid_height * out.grid_width,
                 "encode_task_targets: the VQ gave ", codes.size(), " codes for ", n, " images of ",
                 out.grid_height, " x ", out.grid_width);
    for (const int64_t code : codes) out.codes.push_back(static_cast<int32_t>(code));
    if (progress) progress(first + n);
  }
  return out;
}

}  // namespace mentor::models
