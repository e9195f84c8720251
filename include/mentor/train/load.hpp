#pragma once
// One call from a training checkpoint to a model ready for inference:
//
//   auto model = train::load_for_inference<models::MentorModel<float>>("runs/a/checkpoints");
//   model->gpt ...   // eval mode, every weight and buffer from the checkpoint
//
// The checkpoint is what train::Trainer::save writes (checkpoint.hpp: safetensors + JSON
// manifest); a folder means its newest checkpoint. The model is built from the configuration the
// run saved in the manifest's "config" (the JSON given to Trainer::save: the model's
// config().to_json(), or an object holding it under `config_key`), then its "model.*" tensors are
// checked against the model's own state (one error listing every missing, unexpected or
// mis-shaped tensor) and read. No Trainer, optimizer state or data loader is involved; the
// optimizer's and master weights' tensors in the file are ignored.
//
// Model: a module with `Model(Config, Generator&)`, `config()` whose type has `from_json`, and
// `state()` (MentorModel, GPT, VQModel, CLIPVisionModel, T5Encoder, ...).
#include <filesystem>
#include <memory>
#include <string>
#include <type_traits>
#include <utility>
#include <vector>

#include "mentor/train/checkpoint.hpp"

namespace mentor::train {

template <class Model>
std::unique_ptr<Model> load_for_inference(const std::filesystem::path& checkpoint,
                                          const std::string& config_key = "") {
  using Config = std::decay_t<decltype(std::declval<const Model&>().config())>;
  const train::CheckpointReader reader = train::CheckpointReader::open(checkpoint);
  const std::string where = "load_for_inference: checkpoint " + reader.stem().string() + ": ";
  const nlohmann::json& manifest = reader.manifest();

  const nlohmann::json* config = manifest.contains("config") ? &manifest.at("config") : nullptr;
  if (config && !config_key.empty())
    config =
        config->is_object() && config->contains(config_key) ? &config->at(config_key) : nullptr;
  const std::string config_name =
      config_key.empty() ? std::string("\"config\"") : "\"config\"." + config_key;
  if (!config || !config->is_object() || config->empty())
    throw Error(where + "the manifest has no model configuration at " + config_name +
                " (save it with Trainer::save(dir, loader_state, rng, model.config().to_json()))");

  std::unique_ptr<Model> model;
  try {
    const Config parsed = Config::from_json(*config);
    Generator unused(0);  // initial values are overwritten by the checkpoint's
    model = std::make_unique<Model>(parsed, unused);
  } catch (const Error& error) {
    throw Error(where + "its " + config_name + " does not build a model: " + error.what());
  }

  auto state = model->state();
  std::vector<std::pair<std::string, train::TensorSignature>> expected;
  for (auto& [name, tensor] : state) {
    using Element = typename std::remove_pointer_t<decltype(tensor)>::value_type;
    expected.emplace_back(name, train::signature_of<Element>(tensor->shape()));
  }
  try {
    reader.check_tensors("model.", expected, "model");
  } catch (const Error& error) {
    throw Error(where + "it does not hold this architecture's weights: " + error.what());
  }
  {
    NoGradGuard no_grad;
    for (auto& [name, tensor] : state) reader.read_into("model." + name, *tensor);
  }
  model->eval();
  return model;
}

}  // namespace mentor::train
