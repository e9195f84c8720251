#pragma once
// Strict, safe reading of JSON configs (GPTConfig, VQConfig, T5Config, ...).
//
// - Every key of a config object is either read into a field or declared known without effect;
//   any other key is an error naming the key, the config type, where it sits in an enclosing
//   config, and the known keys (a typo such as "n_layers" must not silently build a default model).
// - Values are checked before conversion: an integer field takes a JSON integer that fits its C++
//   type (1e300, 2.5, true or "8" are errors, never an undefined conversion); a float field takes a
//   finite number; nlohmann's exceptions never escape.
// - Messages describe values without recursion (type and size for containers, at most 60
//   characters of a scalar), so a 100000-deep value cannot overflow the stack through dump().
// - parse_json_config() rejects documents nested deeper than kMaxJsonConfigDepth while parsing, so
//   no deep tree is ever built from config text.
// Depends only on core/error.hpp, so every layer may use it.
#include <cmath>
#include <concepts>
#include <cstdint>
#include <filesystem>
#include <fstream>
#include <initializer_list>
#include <limits>
#include <optional>
#include <set>
#include <sstream>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include <nlohmann/json.hpp>

#include "mentor/core/error.hpp"

namespace mentor::io {

// mentor's deepest config (MentorConfig.encoder.text_config.id2label) nests 4 levels.
inline constexpr int kMaxJsonConfigDepth = 64;

// A bounded, non-recursive description: `the string "abc"`, `the integer 5`, `the number 2.5`,
// `true`, `null`, `an object of 3 keys`, `an array of 2 elements`.
inline std::string describe_json(const nlohmann::json& value) {
  using Type = nlohmann::json::value_t;
  switch (value.type()) {
    case Type::object:
      return mentor::detail::concat("an object of ", value.size(),
                                    value.size() == 1 ? " key" : " keys");
    case Type::array:
      return mentor::detail::concat("an array of ", value.size(),
                                    value.size() == 1 ? " element" : " elements");
    case Type::string: {
      const auto& text = value.get_ref<const std::string&>();
      constexpr size_t kShown = 60;
      // dump() of a string is flat; `replace` keeps a cut UTF-8 sequence from throwing.
      const std::string shown = nlohmann::json(text.substr(0, kShown))
                                    .dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
      return mentor::detail::concat("the string ", shown,
                                    text.size() > kShown
                                        ? mentor::detail::concat("... (", text.size(), " bytes)")
                                        : std::string());
    }
    case Type::boolean:
      return value.get<bool>() ? "true" : "false";
    case Type::number_integer:
    case Type::number_unsigned:
      return "the integer " + value.dump();
    case Type::number_float:
      // NaN and infinity (only reachable from C++) would dump as null.
      return std::isfinite(value.get<double>())
                 ? "the number " + value.dump()
                 : mentor::detail::concat("the number ", value.get<double>());
    case Type::null:
      return "null";
    case Type::binary:
      return "binary data";
    case Type::discarded:
      return "a discarded value";
  }
  return "a JSON value";
}

// Parses config text; `source` names it in errors (a file name). Nesting deeper than `max_depth`
// is an error raised while parsing.
inline nlohmann::json parse_json_config(std::string_view text, std::string_view source,
                                        int max_depth = kMaxJsonConfigDepth) {
  using Event = nlohmann::json::parse_event_t;
  const auto guard = [&](int depth, Event event, nlohmann::json&) {
    if ((event == Event::object_start || event == Event::array_start) && depth >= max_depth)
      throw Error(
          mentor::detail::concat(source, ": JSON nested deeper than ", max_depth, " levels"));
    return true;
  };
  try {
    return nlohmann::json::parse(text.begin(), text.end(), guard);
  } catch (const nlohmann::json::exception& error) {
    throw Error(mentor::detail::concat(source, ": not valid JSON: ", error.what()));
  }
}

inline nlohmann::json load_json_config(const std::filesystem::path& path,
                                       int max_depth = kMaxJsonConfigDepth) {
  std::ifstream in(path, std::ios::binary);
  MENTOR_CHECK(in.good(), "cannot open the config ", path.string());
  std::ostringstream text;
  text << in.rdbuf();
  MENTOR_CHECK(!in.bad(), "cannot read the config ", path.string());
  return parse_json_config(text.str(), path.string(), max_depth);
}

// Keys of Hugging Face's PretrainedConfig (and of T5/CLIP configs) that do not change the encoder
// mentor builds: accepted in HF config files, so that only unknown keys are errors.
inline const std::vector<std::string_view>& hf_keys_without_effect() {
  // clang-format off
  static const std::vector<std::string_view> keys = {
      "_attn_implementation_autoset", "_commit_hash", "_name_or_path", "add_cross_attention",
      "architectures", "bad_words_ids", "begin_suppress_tokens", "bos_token_id",
      "chunk_size_feed_forward", "classifier_dropout", "cross_attention_hidden_size",
      "decoder_start_token_id", "diversity_penalty", "do_sample", "dropout", "dtype",
      "early_stopping", "encoder_no_repeat_ngram_size", "eos_token_id",
      "exponential_decay_length_penalty", "finetuning_task", "forced_bos_token_id",
      "forced_eos_token_id", "gradient_checkpointing", "id2label", "is_decoder",
      "is_encoder_decoder", "label2id", "length_penalty", "max_length", "min_length",
      "n_positions", "no_repeat_ngram_size", "num_beam_groups", "num_beams", "num_decoder_layers",
      "num_labels", "num_return_sequences", "output_attentions", "output_hidden_states",
      "output_past", "output_scores", "pad_token_id", "prefix", "problem_type", "projection_dim",
      "pruned_heads", "remove_invalid_values", "repetition_penalty", "return_dict",
      "return_dict_in_generate", "scale_decoder_outputs", "sep_token_id", "suppress_tokens",
      "task_specific_params", "temperature", "tf_legacy_loss", "tie_encoder_decoder",
      "tie_word_embeddings", "tokenizer_class", "top_k", "top_p", "torch_dtype", "torchscript",
      "transformers_version", "typical_p", "use_bfloat16", "use_cache"};
  // clang-format on
  return keys;
}

// Reads one config object. Call read()/find() for every key the config has (present or not),
// declare keys without effect with ignore(), then finish() to reject any other key.
//   type: the config's C++ name ("GPTConfig"); path: where the object sits in an enclosing config
//   ("MentorConfig.encoder.text_config"), empty when it is the document itself.
class JsonConfigReader {
 public:
  JsonConfigReader(const nlohmann::json& object, std::string type, std::string path = {})
      : json_(object), type_(std::move(type)), path_(std::move(path)) {
    if (!json_.is_object())
      fail(mentor::detail::concat("expected a JSON object, got ", describe_json(json_)));
  }

  // The path of a member, for the from_json of a nested config.
  std::string child_path(std::string_view key) const {
    return mentor::detail::concat(path_.empty() ? type_ : path_, ".", key);
  }

  // The value under `key`, or nullptr when absent or null (null means "not set": the default).
  const nlohmann::json* find(std::string_view key) {
    known_.emplace_back(key);
    const auto it = json_.find(key);
    return it == json_.end() || it->is_null() ? nullptr : &*it;
  }

  // Integers: a JSON integer representable in I; anything else is an error naming the key.
  template <std::integral I>
  requires(!std::same_as<I, bool>) bool read(std::string_view key, I& field) {
    const nlohmann::json* value = find(key);
    if (value == nullptr) return false;
    field = integer<I>(key, *value);
    return true;
  }
  bool read(std::string_view key, bool& field) {
    const nlohmann::json* value = find(key);
    if (value == nullptr) return false;
    if (!value->is_boolean()) fail_key(key, "must be true or false", *value);
    field = value->get<bool>();
    return true;
  }
  bool read(std::string_view key, double& field) {
    const nlohmann::json* value = find(key);
    if (value == nullptr) return false;
    field = number(key, *value);
    return true;
  }
  bool read(std::string_view key, std::optional<double>& field) {
    double number_value = 0;
    if (!read(key, number_value)) return false;
    field = number_value;
    return true;
  }
  bool read(std::string_view key, std::string& field) {
    const nlohmann::json* value = find(key);
    if (value == nullptr) return false;
    if (!value->is_string()) fail_key(key, "must be a string", *value);
    field = value->get<std::string>();
    return true;
  }
  // A list of integers of at most `max_size` elements.
  template <std::integral I>
  requires(!std::same_as<I, bool>) bool read(std::string_view key, std::vector<I>& field,
                                             size_t max_size = 64) {
    const nlohmann::json* value = find(key);
    if (value == nullptr) return false;
    if (!value->is_array()) fail_key(key, "must be an array of integers", *value);
    if (value->size() > max_size)
      fail_key(key, mentor::detail::concat("has more than ", max_size, " elements"), *value);
    std::vector<I> out;
    for (size_t i = 0; i < value->size(); ++i)
      out.push_back(integer<I>(mentor::detail::concat(key, "[", i, "]"), (*value)[i]));
    field = std::move(out);
    return true;
  }
  std::optional<std::string> read_string(std::string_view key) {
    std::string text;
    if (!read(key, text)) return std::nullopt;
    return text;
  }

  // Keys accepted without effect (HF bookkeeping, descriptive notes).
  template <class Keys>
  void ignore(const Keys& keys) {
    for (const auto& key : keys) ignored_.emplace(key);
  }
  void ignore(std::initializer_list<std::string_view> keys) {
    for (const auto& key : keys) ignored_.emplace(key);
  }

  // Rejects keys neither read nor ignored.
  void finish() const {
    const std::set<std::string, std::less<>> known(known_.begin(), known_.end());
    for (const auto& item : json_.items()) {
      const std::string& key = item.key();
      if (known.count(key) != 0 || ignored_.count(key) != 0) continue;
      std::string list;
      for (const auto& name : known_) list += (list.empty() ? "" : ", ") + name;
      if (!ignored_.empty())
        list += mentor::detail::concat(" (and ", ignored_.size(), " keys accepted without effect)");
      fail(mentor::detail::concat("unknown key ", quoted(key), "; known: ", list));
    }
  }

  [[noreturn]] void fail(const std::string& message) const {
    throw Error(mentor::detail::concat(type_, "::from_json", path_.empty() ? "" : " at " + path_,
                                       ": ", message));
  }
  [[noreturn]] void fail_key(std::string_view key, std::string_view problem,
                             const nlohmann::json& value) const {
    fail(mentor::detail::concat("key ", quoted(key), " ", problem, ", got ", describe_json(value)));
  }

 private:
  // A key as the user wrote it, bounded and escaped.
  static std::string quoted(std::string_view key) {
    constexpr size_t kShown = 60;
    std::string shown = nlohmann::json(std::string(key.substr(0, kShown)))
                            .dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
    return key.size() > kShown ? shown + "..." : shown;
  }

  template <std::integral I>
  I integer(std::string_view key, const nlohmann::json& value) const {
    const auto out_of_range = [&] {
      fail_key(key,
               mentor::detail::concat("must be an integer in [", +std::numeric_limits<I>::min(),
                                      ", ", +std::numeric_limits<I>::max(), "]"),
               value);
    };
    if (value.is_number_unsigned()) {
      const auto v = value.get<uint64_t>();
      if (!std::in_range<I>(v)) out_of_range();
      return static_cast<I>(v);
    }
    if (value.is_number_integer()) {
      const auto v = value.get<int64_t>();
      if (!std::in_range<I>(v)) out_of_range();
      return static_cast<I>(v);
    }
    fail_key(key, "must be an integer", value);
  }

  double number(std::string_view key, const nlohmann::json& value) const {
    if (!value.is_number()) fail_key(key, "must be a number", value);
    const double v = value.get<double>();
    if (!std::isfinite(v)) fail_key(key, "must be a finite number", value);
    return v;
  }

  const nlohmann::json& json_;
  std::string type_;
  std::string path_;
  std::vector<std::string> known_;
  std::set<std::string, std::less<>> ignored_;
};

// A sum of products of sizes in int64: overflow is an error naming `what` (e.g. "GPTConfig: the
// parameter count"), raised from validate() before anything is allocated.
class CheckedCount {
 public:
  explicit CheckedCount(std::string what) : what_(std::move(what)) {}
  int64_t product(std::initializer_list<int64_t> factors) const {
    int64_t n = 1;
    for (int64_t f : factors)
      MENTOR_CHECK(!__builtin_mul_overflow(n, f, &n), what_, " overflows int64");
    return n;
  }
  CheckedCount& add(std::initializer_list<int64_t> factors) {
    MENTOR_CHECK(!__builtin_add_overflow(total_, product(factors), &total_), what_,
                 " overflows int64");
    return *this;
  }
  int64_t total() const { return total_; }

 private:
  std::string what_;
  int64_t total_ = 0;
};

// Upper bound of every size field of a model config (widths, vocabularies, lengths): sizes past
// it are typos or attacks, and products of two such sizes still fit int64.
inline constexpr int64_t kMaxConfigSize = int64_t{1} << 31;
// Upper bound of layer and block counts (the models build one module per layer).
inline constexpr int64_t kMaxConfigLayers = int64_t{1} << 16;

}  // namespace mentor::io
