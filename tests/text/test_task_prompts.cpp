// MENTOR's task prompts through a real SentencePiece model: a unigram model trained at test time
// with Debian's spm_train on the world's task prompts (markers removed), then prompts of other
// samples encoded by the tokenizer. Each `<image>` marker becomes one run of tokens_per_image
// placeholders, the text between markers decodes back to the template's text, `</s>` and padding
// follow, and truncation (upstream's behaviour, or an error by option) is counted per batch.
#include <unistd.h>
#include <cstdint>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include "catch.hpp"
#include "mentor/data/world/tasks.hpp"
#include "mentor/text/tokenizer.hpp"

namespace test_task_prompts {

namespace world = mentor::data::world;
namespace fs = std::filesystem;
using mentor::text::Tokenizer;
using mentor::text::TokenizerConfig;

namespace {

constexpr int64_t kTokensPerImage = 16;
constexpr int64_t kImageId = 1000;  // past the model's pieces (vocab 400)

std::string without_markers(const std::string& prompt) {
  std::string out = prompt;
  for (size_t at = out.find(world::kImageMarker); at != std::string::npos;
       at = out.find(world::kImageMarker))
    out.erase(at, world::kImageMarker.size());
  return out;
}

// SentencePiece's normalizer: whitespace runs (line breaks too) become one space, none at the ends.
std::string normalized(const std::string& text) {
  std::string out;
  bool space = false;
  for (char c : text) {
    if (c == ' ' || c == '\n' || c == '\t') {
      space = !out.empty();
    } else {
      if (space) out += ' ';
      out += c;
      space = false;
    }
  }
  return out;
}

// The model, trained once per process into its own folder.
const std::string& world_model() {
  static const std::string path = [] {
    const fs::path dir =
        fs::path(MENTOR_BINARY_DIR) / "tests" / ("text_spm_world." + std::to_string(getpid()));
    fs::create_directories(dir);
    std::ofstream corpus(dir / "corpus.txt");
    const world::TaskConfig config;
    for (int t = 0; t < world::kTaskCount; ++t)
      for (uint64_t i = 0; i < 400; ++i)
        corpus << without_markers(
                      world::make_task_sample(config, 0, world::Task(t), world::Split::train, i)
                          .prompt)
               << "\n";
    corpus.close();
    INFO("spm_train (Debian's sentencepiece package) must be on PATH");
    const std::string command = "spm_train --input=" + (dir / "corpus.txt").string() +
                                " --model_prefix=" + (dir / "world").string() +
                                " --model_type=unigram --vocab_size=400 --hard_vocab_limit=false"
                                " --character_coverage=1.0 --num_threads=1 --pad_id=0 --eos_id=1"
                                " --unk_id=2 --bos_id=-1 > " +
                                (dir / "spm_train.log").string() + " 2>&1";
    REQUIRE(std::system(command.c_str()) == 0);
    return (dir / "world.model").string();
  }();
  return path;
}

Tokenizer tokenizer(int64_t max_length, bool truncate = true) {
  TokenizerConfig c;
  c.model_path = world_model();
  c.image_token_id = kImageId;
  c.tokens_per_image = kTokensPerImage;
  c.max_length = max_length;
  c.truncate = truncate;
  return Tokenizer(c);
}

}  // namespace

TEST_CASE("task prompts: markers become placeholder runs and the text decodes back",
          "[text][world][tasks]") {
  const Tokenizer tok = tokenizer(200);
  REQUIRE(tok.piece_count() <= kImageId);
  const world::TaskConfig config;
  for (int t = 0; t < world::kTaskCount; ++t)
    for (uint64_t i = 1000; i < 1060; ++i) {  // samples the model was not trained on
      const world::TaskSample s =
          world::make_task_sample(config, 0, world::Task(t), world::Split::train, i);
      INFO(world::name(s.task) << " sample " << i << ": " << s.prompt);
      const auto e = tok.encode(s.prompt);
      const auto images = static_cast<int64_t>(s.references.size());
      REQUIRE(e.truncated == 0);
      CHECK(e.image_markers == images);
      CHECK(e.images_kept == images);
      CHECK(e.image_tokens == images * kTokensPerImage);

      // Split the ids at the placeholder runs: one full run per image, text between.
      std::vector<std::vector<int64_t>> text(1);
      std::vector<int64_t> runs;
      bool in_run = false;
      for (int64_t k = 0; k + 1 < e.length; ++k) {  // the last kept id is `</s>`
        const int64_t id = e.ids[static_cast<size_t>(k)];
        CHECK(id != tok.unk_id());
        if (id == kImageId) {
          if (!in_run) runs.push_back(0);
          ++runs.back();
          in_run = true;
        } else {
          if (in_run) text.emplace_back();
          text.back().push_back(id);
          in_run = false;
        }
      }
      if (in_run) text.emplace_back();  // "<image>\n": nothing after the run
      CHECK(runs == std::vector<int64_t>(static_cast<size_t>(images), kTokensPerImage));
      CHECK(e.ids[static_cast<size_t>(e.length - 1)] == tok.eos_id());
      for (int64_t k = e.length; k < 200; ++k) CHECK(e.ids[static_cast<size_t>(k)] == tok.pad_id());

      // Each text segment is the template's text between markers, as the normalizer writes it.
      std::vector<std::string> expected;
      std::string rest = s.prompt;
      for (size_t at; (at = rest.find(world::kImageMarker)) != std::string::npos;) {
        expected.push_back(normalized(rest.substr(0, at)));
        rest = rest.substr(at + world::kImageMarker.size());
      }
      expected.push_back(normalized(rest));
      REQUIRE(text.size() == expected.size());
      for (size_t k = 0; k < text.size(); ++k) CHECK(tok.decode(text[k]) == expected[k]);
      // The whole decode encodes to the same ids.
      CHECK(tok.encode(tok.decode(e.ids)).ids == e.ids);
    }
}

TEST_CASE("task prompts: truncation follows upstream and is counted, or fails by option",
          "[text][world][tasks]") {
  const world::TaskConfig config;
  std::vector<std::string> prompts;
  for (uint64_t i = 0; i < 8; ++i)
    prompts.push_back(
        world::make_task_sample(config, 0, world::Task::multi_subject, world::Split::train, i)
            .prompt);
  prompts.push_back("a red star");  // short: fits

  const Tokenizer tok = tokenizer(24);  // less than two runs of 16 placeholders
  const auto batch = tok.encode_batch(prompts);
  int64_t truncated = 0, cut = 0;
  for (const auto& row : batch.rows) {
    CHECK(row.length <= 24);
    CHECK(row.ids[static_cast<size_t>(row.length - 1)] == tok.eos_id());
    truncated += row.truncated > 0;
    cut += row.image_markers - row.images_kept;
  }
  CHECK(batch.truncated_prompts == truncated);
  CHECK(batch.cut_images == cut);
  CHECK(batch.truncated_prompts == 8);
  CHECK(batch.cut_images >= 8);  // each multi-subject prompt loses its second run at least
  CHECK(batch.rows.back().truncated == 0);

  const Tokenizer strict = tokenizer(24, false);
  CHECK_THROWS_WITH(strict.encode(prompts[0]), Catch::Contains("max_length 24"));
  CHECK_NOTHROW(strict.encode(prompts.back()));
}

}  // namespace test_task_prompts
