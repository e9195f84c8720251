// Every JSON config is strict and safe to read: unknown keys (also nested ones) are errors naming
// the key, the config and the known keys; wrong types and out-of-range integers are errors naming
// the key and the value, never an nlohmann exception or an undefined conversion; validate() has no
// overflow or division by zero; messages stay bounded and nothing recurses over a hostile value.
//
// Independent references: the expected keys and limits are the ones written in each config's
// struct; the closed-form parameter counts of validate() are checked against the enumerated shape
// lists; round trips compare to_json before and after.
#include <unistd.h>
#include <cstdint>
#include <filesystem>
#include <fstream>
#include <functional>
#include <limits>
#include <nlohmann/json.hpp>
#include <string>
#include <utility>
#include <vector>

#include "catch.hpp"
#include "mentor/data/loader.hpp"
#include "mentor/io/json_config.hpp"
#include "mentor/models/mentor.hpp"
#include "mentor/train/schedule.hpp"
#include "mentor/train/trainer.hpp"

namespace test_config_json {

using namespace mentor;
using namespace mentor::models;
using nlohmann::json;

namespace {

// The message of the mentor::Error that `parse` throws ("" when it throws none). Any other
// exception type fails the test: nlohmann's must never escape.
std::string error_of(const std::function<void()>& parse) {
  try {
    parse();
  } catch (const Error& e) {
    return e.what();
  }
  return "";
}
bool has(const std::string& message, const std::string& part) {
  return message.find(part) != std::string::npos;
}

// One config type: its name, a valid base object, and its entry point.
struct ConfigCase {
  std::string type;
  json base;
  std::function<void(const json&)> parse;
  std::string int_key;     // an integer field
  std::string number_key;  // a floating-point field
  std::string string_key;  // a string field
};

std::vector<ConfigCase> config_cases() {
  return {
      {"GPTConfig", json::object(), [](const json& j) { (void)GPTConfig::from_json(j); }, "dim",
       "norm_eps", "model_type"},
      {"VQConfig", json::object(), [](const json& j) { (void)VQConfig::from_json(j); }, "ch",
       "commit_loss_beta", ""},
      {"T5Config", json::object(), [](const json& j) { (void)T5Config::from_json(j); }, "d_model",
       "dropout_rate", "feed_forward_proj"},
      {"CLIPVisionConfig", json::object(),
       [](const json& j) { (void)CLIPVisionConfig::from_json(j); }, "hidden_size", "layer_norm_eps",
       "hidden_act"},
      {"MultimodalEncoderConfig", json::object(),
       [](const json& j) { (void)MultimodalEncoderConfig::from_json(j); }, "image_token_id",
       "projector_init_std", "mm_projector_type"},
      {"MentorConfig", json::object(), [](const json& j) { (void)MentorConfig::from_json(j); }, "",
       "", ""},
      {"TrainerOptions", json::object(),
       [](const json& j) { (void)train::TrainerOptions::from_json(j); }, "accumulation_steps",
       "beta1", "optimizer"},
      {"LrSchedule",
       {{"type", "warmup_cosine"},
        {"peak", 1e-3},
        {"warmup_steps", 2},
        {"total_steps", 10},
        {"floor_ratio", 0.1}},
       [](const json& j) { (void)train::schedule_from_json(j); },
       "total_steps",
       "peak",
       "type"},
      {"LoaderState",
       {{"epoch", 1}, {"batch_index", 2}},
       [](const json& j) { (void)j.get<data::LoaderState>(); },
       "epoch",
       "",
       ""},
  };
}

json with(json j, const std::string& key, json value) {
  j[key] = std::move(value);
  return j;
}

// "[[[...]]]" nested `depth` deep, as text (building it as a tree would itself recurse).
std::string nested_arrays(size_t depth) {
  return std::string(depth, '[') + std::string(depth, ']');
}

}  // namespace

TEST_CASE("every config accepts its base and rejects unknown keys, naming key, type, known keys",
          "[config][json]") {
  for (const ConfigCase& c : config_cases()) {
    INFO(c.type);
    CHECK(error_of([&] { c.parse(c.base); }).empty());
    const std::string message = error_of([&] { c.parse(with(c.base, "n_layers", 2)); });
    CHECK(has(message, c.type + "::from_json"));
    CHECK(has(message, "unknown key \"n_layers\""));
    CHECK(has(message, "known: "));
    // Not an object at all.
    CHECK(has(error_of([&] {
                c.parse(json::array({1, 2}));
              }),
              "expected a JSON object, got an array of 2 elements"));
  }
  // The issue's example: "n_layers" used to build a default 32-layer GPT.
  const std::string gpt = error_of([] { (void)GPTConfig::from_json({{"n_layers", 2}}); });
  CHECK(has(gpt, "known: gpt_model, dim, n_layer, n_head"));
  CHECK(has(error_of([] { (void)VQConfig::from_json({{"chmult", {1, 2}}}); }), "ch_mult"));
}

TEST_CASE("nested configs report the path of an unknown key", "[config][json]") {
  const std::string text = error_of([] {
    (void)MentorConfig::from_json({{"encoder", {{"text_config", {{"d_modle", 32}}}}}});
  });
  CHECK(has(text,
            "T5Config::from_json at MentorConfig.encoder.text_config: unknown key \"d_modle\"; "
            "known: model_type, vocab_size, d_model, d_kv"));
  CHECK(has(error_of([] {
              (void)MentorConfig::from_json({{"encoder", {{"vision_config", {{"hiden", 1}}}}}});
            }),
            "CLIPVisionConfig::from_json at MentorConfig.encoder.vision_config: unknown key"));
  CHECK(has(error_of([] {
              (void)MentorConfig::from_json({{"gpt", {{"n_layers", 2}}}});
            }),
            "GPTConfig::from_json at MentorConfig.gpt: unknown key \"n_layers\""));
  CHECK(has(error_of([] {
              (void)MentorConfig::from_json({{"vq", {{"groups", 2}}}});
            }),
            "VQConfig::from_json at MentorConfig.vq: unknown key \"groups\""));
  CHECK(has(error_of([] {
              (void)MentorConfig::from_json({{"encoder", {{"mm_typo", 2}}}});
            }),
            "MultimodalEncoderConfig::from_json at MentorConfig.encoder: unknown key"));
  CHECK(has(error_of([] {
              (void)MentorConfig::from_json({{"gtp", json::object()}});
            }),
            "MentorConfig::from_json: unknown key \"gtp\"; known: encoder, gpt, vq"));
  CHECK(has(error_of([] {
              (void)train::TrainerOptions::from_json(
                  {{"schedule", {{"type", "constant"}, {"lr", 1e-4}, {"lr_min", 0}}}});
            }),
            "LrSchedule::from_json at TrainerOptions.schedule: unknown key \"lr_min\""));
  // A nested part that is not an object.
  CHECK(has(error_of([] {
              (void)MentorConfig::from_json({{"encoder", 5}});
            }),
            "at MentorConfig.encoder: expected a JSON object, got the integer 5"));
  // Nested wrong type: the path and the key.
  CHECK(has(error_of([] {
              (void)MentorConfig::from_json({{"gpt", {{"dim", "wide"}}}});
            }),
            "at MentorConfig.gpt: key \"dim\" must be an integer, got the string \"wide\""));
}

TEST_CASE("wrong types are mentor errors naming key, expected type and value", "[config][json]") {
  for (const ConfigCase& c : config_cases()) {
    INFO(c.type);
    if (!c.int_key.empty()) {
      const auto integer_error = [&](json value) {
        return error_of([&] { c.parse(with(c.base, c.int_key, std::move(value))); });
      };
      const std::string key = "key \"" + c.int_key + "\" must be an integer";
      CHECK(has(integer_error("8"), key + ", got the string \"8\""));
      CHECK(has(integer_error(true), key + ", got true"));
      CHECK(has(integer_error(json::array({1})), key + ", got an array of 1 element"));
      CHECK(has(integer_error(json::object()), key + ", got an object of 0 keys"));
      // JSON floats never become integers: no UB conversion of 1e300 or -1e19, no rounding of 2.5.
      CHECK(has(integer_error(1e300), key + ", got the number 1e+300"));
      CHECK(has(integer_error(-1e19), key + ", got the number -1e+19"));
      CHECK(has(integer_error(2.5), key + ", got the number 2.5"));
      // Integers past int64, in both signs.
      CHECK(has(integer_error(std::numeric_limits<uint64_t>::max()),
                key + " in [-9223372036854775808, 9223372036854775807], got the integer "
                      "18446744073709551615"));
      CHECK(has(integer_error(json::parse("9223372036854775808")), "in [-9223372036854775808"));
    }
    if (!c.number_key.empty()) {
      const std::string message = error_of([&] { c.parse(with(c.base, c.number_key, "0.5")); });
      CHECK(has(message, "key \"" + c.number_key + "\" must be a number, got the string \"0.5\""));
      CHECK(has(error_of([&] { c.parse(with(c.base, c.number_key, false)); }), "got false"));
    }
    if (!c.string_key.empty())
      CHECK(has(error_of([&] { c.parse(with(c.base, c.string_key, 3)); }),
                "key \"" + c.string_key + "\" must be a string, got the integer 3"));
  }
  CHECK(has(error_of([] {
              (void)VQConfig::from_json({{"codebook_l2_norm", 1}});
            }),
            "key \"codebook_l2_norm\" must be true or false, got the integer 1"));
  CHECK(has(error_of([] {
              (void)VQConfig::from_json({{"ch_mult", {1, 2.5}}});
            }),
            "key \"ch_mult[1]\" must be an integer, got the number 2.5"));
  CHECK(has(error_of([] {
              (void)VQConfig::from_json({{"ch_mult", json(std::vector<int>(65, 1))}});
            }),
            "has more than 64 elements"));
  CHECK(has(error_of([] {
              (void)GPTConfig::from_json({{"gpt_model", 7}});
            }),
            "key \"gpt_model\" must be a string"));
  CHECK(has(error_of([] {
              (void)T5Config::from_json({{"model_type", "bert"}});
            }),
            "model_type 'bert' is not t5"));
  // A float reached from C++ (JSON text cannot hold it) is still rejected.
  CHECK(has(error_of([] {
              (void)GPTConfig::from_json({{"norm_eps", std::numeric_limits<double>::infinity()}});
            }),
            "key \"norm_eps\" must be a finite number, got the number inf"));
  // Schedules name what they need.
  CHECK(has(error_of([] {
              (void)train::schedule_from_json({{"type", "constant"}});
            }),
            "a constant schedule needs \"lr\""));
  CHECK(has(error_of([] { (void)train::schedule_from_json({{"lr", 1}}); }), "expected a \"type\""));
  CHECK(has(error_of([] {
              (void)json({{"epoch", 1}}).get<data::LoaderState>();
            }),
            "needs \"epoch\" and \"batch_index\""));
  CHECK(has(error_of([] {
              (void)json({{"epoch", -1}, {"batch_index", 0}}).get<data::LoaderState>();
            }),
            "epoch -1"));
}

TEST_CASE("null keeps a default; HF bookkeeping keys are accepted", "[config][json]") {
  CHECK(GPTConfig::from_json({{"n_kv_head", nullptr}, {"ffn_dim_multiplier", nullptr}}).n_kv_head ==
        0);
  const json t5 = {{"architectures", {"T5ForConditionalGeneration"}},
                   {"transformers_version", "4.23.1"},
                   {"task_specific_params", {{"summarization", {{"prefix", "summarize: "}}}}},
                   {"model_type", "t5"},
                   {"d_model", 64},
                   {"d_kv", 8},
                   {"num_heads", 8}};
  CHECK(T5Config::from_json(t5).d_model == 64);
  CHECK(CLIPVisionConfig::from_json({{"projection_dim", 768}, {"dropout", 0.0}}).hidden_size ==
        1024);
  // A typo is still an error beside them, and the message says how many are accepted.
  CHECK(has(error_of([&] { (void)T5Config::from_json(with(t5, "num_layer", 2)); }),
            "keys accepted without effect"));
}

TEST_CASE("integer limits and validate(): no overflow, no division by zero", "[config][json]") {
  const auto gpt = [](json j) { return error_of([&] { (void)GPTConfig::from_json(j); }); };
  const auto vq = [](json j) { return error_of([&] { (void)VQConfig::from_json(j); }); };
  const auto t5 = [](json j) { return error_of([&] { (void)T5Config::from_json(j); }); };
  const auto clip = [](json j) { return error_of([&] { (void)CLIPVisionConfig::from_json(j); }); };
  constexpr int64_t kBig = int64_t{1} << 31;

  // Negative and zero sizes.
  CHECK(has(gpt({{"dim", -1}}), "dim -1"));
  CHECK(has(gpt({{"n_kv_head", -4}}), "n_kv_head -4"));
  CHECK(has(gpt({{"vocab_size", 0}}), "vocab_size 0"));
  CHECK(has(vq({{"ch", -1}}), "ch -1"));
  CHECK(has(vq({{"codebook_size", -1}}), "codebook -1x8"));
  CHECK(has(t5({{"d_model", -1}}), "d_model -1"));
  CHECK(has(clip({{"hidden_size", -1}}), "hidden_size -1"));
  CHECK(has(clip({{"patch_size", 0}}), "patch_size 0"));
  // Sizes past the bound, and layer counts past theirs.
  CHECK(has(gpt({{"dim", kBig * 4}, {"n_head", 1}}), "dim 8589934592 is outside [0, 2147483648]"));
  CHECK(has(gpt({{"n_layer", kBig}}), "n_layer 2147483648 is more than 65536"));
  CHECK(has(t5({{"num_layers", std::numeric_limits<int64_t>::max()}}), "is more than 65536"));
  CHECK(
      has(error_of([] {
            (void)MultimodalEncoderConfig::from_json(
                {{"vision_config", {{"num_hidden_layers", std::numeric_limits<int64_t>::max()}}}});
          }),
          "num_hidden_layers 9223372036854775807 is more than 65536"));

  // Products of in-bound sizes that overflow int64: rejected by validate(), before allocation.
  CHECK(has(gpt({{"dim", kBig}, {"n_head", kBig / 16}, {"vocab_size", kBig}}),
            "GPTConfig: the parameter count (dim 2147483648"));
  CHECK(has(gpt({{"dim", kBig}, {"n_head", kBig / 16}, {"vocab_size", kBig}}), "overflows int64"));
  CHECK(has(vq({{"ch", kBig / 2}, {"ch_mult", {1, 2}}}), "VQConfig: the parameter count"));
  CHECK(has(vq({{"ch", 1024}, {"ch_mult", {1, kBig}}}), "more than 2147483648 channels"));
  CHECK(has(vq({{"ch", 1024}, {"ch_mult", {1, std::numeric_limits<int64_t>::max()}}}),
            "multiplier 9223372036854775807 is more than"));
  CHECK(has(t5({{"num_heads", kBig}, {"d_kv", kBig}}), "T5Config: the parameter count"));
  CHECK(has(clip({{"hidden_size", kBig}, {"intermediate_size", kBig}, {"num_attention_heads", 1}}),
            "CLIPVisionConfig: the parameter count"));
  CHECK(has(clip({{"image_size", kBig}, {"patch_size", 1}}),
            "CLIPVisionConfig: the parameter count"));

  // Division by zero: GroupNorm groups.
  CHECK(has(vq({{"norm_groups", 0}}), "norm_groups 0 must lie in [1, 2147483648]"));
  CHECK(has(vq({{"norm_groups", -32}}), "norm_groups -32"));

  // ffn_dim_multiplier: negative, zero, huge, or so small that the layer has no width.
  for (double bad : {-1.0, 0.0, 1e300, 2048.0})
    CHECK(has(gpt({{"ffn_dim_multiplier", bad}}), "ffn_dim_multiplier"));
  CHECK(has(gpt({{"ffn_dim_multiplier", 1e-300}}), "the feed-forward width 0 must be positive"));
  CHECK(GPTConfig::from_json({{"ffn_dim_multiplier", 1.3}}).ffn_hidden_dim() > 0);

  // Doubles that must be positive.
  CHECK(has(gpt({{"rope_base", 0}}), "rope_base 0"));
  CHECK(has(gpt({{"norm_eps", -1e-5}}), "norm_eps -1e-05"));
  CHECK(has(vq({{"norm_eps", 0}}), "norm_eps 0"));
  CHECK(has(error_of([] {
              (void)train::TrainerOptions::from_json({{"accumulation_steps", 0}});
            }),
            "accumulation_steps must be >= 1"));
  CHECK(has(error_of([] {
              (void)train::schedule_from_json({{"type", "warmup_cosine"},
                                               {"peak", 1e-3},
                                               {"warmup_steps", 5},
                                               {"total_steps", 3},
                                               {"floor_ratio", 0.1}});
            }),
            "total_steps (3)"));

  // The projector type's depth cannot overflow std::stoll.
  MultimodalEncoderConfig mm;
  mm.projector_type = "mlp99999999999999999999x_gelu";
  CHECK(has(error_of([&] { mm.validate(); }), "unknown projector type"));
}

TEST_CASE("closed-form parameter counts of validate() match the enumerated shapes",
          "[config][json]") {
  for (const auto& [name, sizes] : GPTConfig::presets()) {
    INFO(name);
    GPTConfig c = GPTConfig::preset(name);
    CHECK(c.parameter_count() == gpt_parameter_count(c));
    c.model_type = GPTModelType::TextToImage;
    c.cls_token_num = 120;
    c.n_kv_head = c.n_head / 2 % 2 == 0 ? c.n_head / 2 : c.n_head;
    c.ffn_dim_multiplier = 1.3;
    CHECK(c.parameter_count() == gpt_parameter_count(c));
  }
  for (const VQConfig& c : {VQConfig::vq_16(), VQConfig::vq_8()}) {
    CHECK(c.parameter_count() == vq_parameter_count(c));
    VQConfig odd = c;
    odd.num_res_blocks = 1;  // one block per encoder level: no repeats
    odd.decoder_ch_mult = {1, 4, 2};
    CHECK(odd.parameter_count() == vq_parameter_count(odd));
  }
  T5Config t5 = T5Config::flan_t5_xl();
  CHECK(t5.parameter_count() == t5_encoder_parameter_count(t5));
  t5.is_gated_act = false;
  CHECK(t5.parameter_count() == t5_encoder_parameter_count(t5));
  const CLIPVisionConfig clip = CLIPVisionConfig::vit_large_patch14();
  CHECK(clip.parameter_count() == clip_vision_parameter_count(clip));
}

TEST_CASE("presets and defaults survive a JSON round trip", "[config][json]") {
  for (const auto& [name, sizes] : GPTConfig::presets()) {
    const GPTConfig c = GPTConfig::preset(name);
    CHECK(GPTConfig::from_json(c.to_json()).to_json() == c.to_json());
  }
  for (const VQConfig& c : {VQConfig::vq_16(), VQConfig::vq_8()})
    CHECK(VQConfig::from_json(c.to_json()).to_json() == c.to_json());
  VQConfig vq = VQConfig::vq_8();
  vq.norm_eps = 1e-5;
  vq.entropy_temperature = 0.5;
  vq.decoder_ch_mult = {1, 1, 2, 2};
  const VQConfig vq_back = VQConfig::from_json(vq.to_json());
  CHECK(vq_back.norm_eps == 1e-5);
  CHECK(vq_back.entropy_temperature == 0.5);
  CHECK(vq_back.decoder_ch_mult == vq.decoder_ch_mult);
  CHECK(T5Config::from_json(T5Config::flan_t5_xl().to_json()).to_json() ==
        T5Config::flan_t5_xl().to_json());
  CHECK(CLIPVisionConfig::from_json(CLIPVisionConfig::vit_large_patch14().to_json()).to_json() ==
        CLIPVisionConfig::vit_large_patch14().to_json());
  const MultimodalEncoderConfig mm = MultimodalEncoderConfig::mentor();
  CHECK(MultimodalEncoderConfig::from_json(mm.to_json()).to_json() == mm.to_json());
  MultimodalEncoderConfig like_upstream = mm;
  like_upstream.placeholder_mismatch = PlaceholderMismatch::TruncateLikeUpstream;
  CHECK(MultimodalEncoderConfig::from_json(like_upstream.to_json()).placeholder_mismatch ==
        PlaceholderMismatch::TruncateLikeUpstream);
  CHECK(has(error_of([] {
              (void)MultimodalEncoderConfig::from_json({{"placeholder_mismatch", "ignore"}});
            }),
            "placeholder_mismatch 'ignore' is not error or truncate_like_upstream"));
  const MentorConfig mentor = MentorConfig::mentor();
  CHECK(MentorConfig::from_json(mentor.to_json()).to_json() == mentor.to_json());
  for (int stage : {1, 2}) {
    const auto options = train::TrainerOptions::mentor_stage(stage, 1000);
    CHECK(train::TrainerOptions::from_json(options.to_json()).to_json() == options.to_json());
  }
  const data::LoaderState state{3, 7};
  CHECK(json(state).get<data::LoaderState>() == state);
}

TEST_CASE("deep nesting: parsing is guarded, messages never recurse", "[config][json]") {
  const std::string deep = nested_arrays(100000);
  // Config text is parsed with a depth limit: no deep tree is built.
  CHECK(has(error_of([&] { (void)io::parse_json_config("{\"dim\": " + deep + "}", "gpt.json"); }),
            "gpt.json: JSON nested deeper than 64 levels"));
  CHECK(io::parse_json_config(nested_arrays(64), "ok.json").is_array());
  CHECK(has(error_of([&] { (void)io::parse_json_config(nested_arrays(65), "x.json"); }),
            "nested deeper than 64"));
  CHECK(has(error_of([] { (void)io::parse_json_config("{\"dim\": 1,}", "bad.json"); }),
            "bad.json: not valid JSON"));

  // A deep tree built elsewhere (nlohmann's parser is iterative) is described flat.
  json tree = json::parse(deep);
  json config = json::object();
  config["dim"] = std::move(tree);
  CHECK(has(error_of([&] { (void)GPTConfig::from_json(config); }),
            "key \"dim\" must be an integer, got an array of 1 element"));
  json nested = json::object();
  nested["gpt"] = json::object();
  nested["gpt"]["n_layers"] = std::move(config["dim"]);
  CHECK(has(error_of([&] { (void)MentorConfig::from_json(nested); }),
            "at MentorConfig.gpt: unknown key \"n_layers\""));

  // Long strings and keys are cut.
  const std::string long_text(100000, 'x');
  const std::string message = error_of([&] {
    (void)GPTConfig::from_json({{"dim", long_text}, {"vocab_size", 1}});
  });
  CHECK(has(message, "... (100000 bytes)"));
  CHECK(message.size() < 400);
  const std::string key_message = error_of([&] { (void)VQConfig::from_json({{long_text, 1}}); });
  CHECK(key_message.size() < 1000);

  // From a file.
  const auto dir =
      std::filesystem::temp_directory_path() / ("mentor_config_json_" + std::to_string(::getpid()));
  std::filesystem::create_directories(dir);
  std::ofstream(dir / "deep.json") << "{\"encoder\": " << deep << "}";
  std::ofstream(dir / "ok.json") << R"({"gpt": {"gpt_model": "GPT-B", "model_type": "t2i",
                                        "caption_dim": 2048}})";
  CHECK(has(error_of([&] { (void)io::load_json_config(dir / "deep.json"); }),
            "deep.json: JSON nested deeper than 64 levels"));
  CHECK(MentorConfig::from_json(io::load_json_config(dir / "ok.json")).gpt.dim == 768);
  CHECK(has(error_of([&] { (void)io::load_json_config(dir / "missing.json"); }),
            "cannot open the config"));
  std::filesystem::remove_all(dir);
}

TEST_CASE("describe_json is bounded and flat", "[config][json]") {
  CHECK(io::describe_json(json()) == "null");
  CHECK(io::describe_json(json(-3)) == "the integer -3");
  CHECK(io::describe_json(json(0.25)) == "the number 0.25");
  CHECK(io::describe_json(json("a\"b")) == "the string \"a\\\"b\"");
  CHECK(io::describe_json(json::object({{"a", 1}})) == "an object of 1 key");
  // A cut inside a UTF-8 sequence does not throw (59 ASCII bytes, then a 2-byte character).
  const std::string text = std::string(59, 'a') + "\xc3\xa9" + "tail";
  CHECK(has(io::describe_json(json(text)), "... (65 bytes)"));
}

}  // namespace test_config_json
