// The synthetic world's speed on one core (issue 11's acceptance: >= 2,000 scenes of 64 x 64 per
// second per core, so that data never limits training). Every benchmark runs on the calling
// thread; "scenes/s" is per core. The scenes are the training split's own (textured backgrounds,
// one or two textured subjects), cycled over 4096 of them so that no one scene decides the figure.
#include <benchmark/benchmark.h>

#include <cstdint>
#include <string>
#include <vector>

#include "mentor/data/world/caption.hpp"
#include "mentor/data/world/render.hpp"
#include "mentor/data/world/sampling.hpp"

namespace world = mentor::data::world;

namespace {

const std::vector<world::Scene>& scenes() {
  static const std::vector<world::Scene> value =
      world::sample_scenes(1, world::Split::train, 0, 4096);
  return value;
}

void per_scene_counter(benchmark::State& state) {
  state.counters["scenes/s"] =
      benchmark::Counter(static_cast<double>(state.iterations()), benchmark::Counter::kIsRate);
}

}  // namespace

// Render only, into reused buffers (what a loader does), at side `range(0)`.
static void world_render(benchmark::State& state) {
  const int64_t resolution = state.range(0);
  world::RenderedScene out;
  size_t i = 0;
  for (auto _ : state) {
    world::render_into(scenes()[i++ % scenes().size()], resolution, out);
    benchmark::DoNotOptimize(out.image.data.data());
  }
  per_scene_counter(state);
}
BENCHMARK(world_render)->Arg(32)->Arg(64)->Arg(128)->Arg(256)->UseRealTime();

// Everything a training sample needs: draw the scene, render it at 64 px, write its caption.
static void world_sample_render_caption_64(benchmark::State& state) {
  world::RenderedScene out;
  uint64_t i = 0;
  for (auto _ : state) {
    const world::Scene scene = world::sample_scene(1, world::Split::train, i++);
    world::render_into(scene, 64, out);
    std::string text = world::caption(scene);
    benchmark::DoNotOptimize(out.image.data.data());
    benchmark::DoNotOptimize(text.data());
  }
  per_scene_counter(state);
}
BENCHMARK(world_sample_render_caption_64)->UseRealTime();

// Drawing scenes alone.
static void world_sample(benchmark::State& state) {
  uint64_t i = 0;
  for (auto _ : state) {
    world::Scene scene = world::sample_scene(1, world::Split::train, i++);
    benchmark::DoNotOptimize(scene.subjects.data());
  }
  per_scene_counter(state);
}
BENCHMARK(world_sample)->UseRealTime();

BENCHMARK_MAIN();
