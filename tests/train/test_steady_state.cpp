// A steady-state training step reuses its buffers: once the first steps have sized them, every
// tensor a MENTOR stage-2 step makes (activations, gradients, dropout masks, the clipped and
// averaged gradients, the optimizer's temporaries) comes from the host allocator's cache, and the
// system allocator is not asked for a single tensor buffer. Small autograd bookkeeping (graph
// nodes, shapes) still uses the C++ heap; this counts tensor memory.
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <vector>

#include "catch.hpp"
#include "mentor/core/storage.hpp"
#include "tiny_mentor.hpp"

namespace test_steady_state {

using namespace mentor;

TEST_CASE("a steady-state MENTOR training step takes no tensor memory from the system",
          "[train][memory]") {
  HostAllocator& host = HostAllocator::instance();
  if (host.cache_limit() == 0) {
    WARN("the host allocator does not cache here (a sanitizer build or MENTOR_HOST_CACHE_MB=0)");
    return;
  }
  auto model = tiny_mentor::model(5, 16);
  const auto data = tiny_mentor::dataset(16);
  std::vector<tiny_mentor::Sample> samples;
  for (int64_t i = 0; i < 4; ++i) samples.push_back(data->get(i));
  const tiny_mentor::Batch batch = tiny_mentor::collate(std::move(samples));
  train::TrainerOptions options;  // AdamW, clipping at 1.0
  options.accumulation_steps = 2;
  options.schedule = train::Constant{1e-3};
  train::Trainer<float> trainer(*model, options);
  auto step = [&] {
    return trainer.step([&](int64_t) { return tiny_mentor::loss(*model, batch); }).loss;
  };
  for (int i = 0; i < 3; ++i) step();  // the first steps size the buffers and the moments
  const uint64_t before = host.system_allocations();
  double loss = 0;
  for (int i = 0; i < 4; ++i) loss = step();
  CHECK(host.system_allocations() == before);
  CHECK(std::isfinite(loss));
  CHECK(host.cached_bytes() > 0);
  // The counter does count: a buffer of a size no step uses comes from the system.
  const Tensor<float> unusual = Tensor<float>::zeros({12345, 7});
  CHECK(host.system_allocations() == before + 1);
}

TEST_CASE("the host allocator's size classes waste at most an eighth", "[train][memory]") {
  for (size_t bytes : {size_t{1}, size_t{64}, size_t{65}, size_t{511}, size_t{512}, size_t{4097},
                       size_t{1} << 20, (size_t{1} << 20) + 1, size_t{123456789}}) {
    const size_t rounded = HostAllocator::size_class(bytes);
    INFO("bytes " << bytes << " -> " << rounded);
    CHECK(rounded >= bytes);
    CHECK(rounded % 64 == 0);
    CHECK(rounded - bytes < std::max<size_t>(64, bytes / 8 + 64));
    CHECK(HostAllocator::size_class(rounded) == rounded);  // a class is its own class
  }
}

}  // namespace test_steady_state
