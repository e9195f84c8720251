#pragma once
// The synthetic world: subjects (shape x colour x texture) in scenes with backgrounds, positions,
// sizes and rotations; rendered with their masks, captioned, and drawn from a seed with held-out
// combinations. One header per concern:
//   attributes.hpp  the vocabularies, their caption words, colours and geometry; Subject, Scene
//   shapes.hpp      the shapes' signed distances
//   render.hpp      scene -> RGB image + masks; a subject alone; shape masks; batches
//   caption.hpp     scene -> caption
//   sampling.hpp    (seed, split, index) -> scene; the held-out lists
//   prompts.hpp     MENTOR's prompt templates over captions; a subject's reference picture
//   tasks.hpp       MENTOR's six training tasks as samples; stage mixes and ablations
//   synthbench.hpp  the benchmark of held-out subjects and its deterministic CP / PF scorer
#include "mentor/data/world/attributes.hpp"
#include "mentor/data/world/caption.hpp"
#include "mentor/data/world/prompts.hpp"
#include "mentor/data/world/render.hpp"
#include "mentor/data/world/sampling.hpp"
#include "mentor/data/world/shapes.hpp"
#include "mentor/data/world/synthbench.hpp"
#include "mentor/data/world/tasks.hpp"
