// The T5 tokenizer (text/tokenizer.hpp) on SentencePiece models trained at test time by the ctest
// fixture text.spm_models (tests/text/make_spm_models.cmake: Debian's spm_train on a generated
// caption corpus; models and references in <build>/tests/text_spm, or MENTOR_TEST_SPM_DIR).
//
// Independent references: ids of sample lines written by the spm_encode executable; the special
// ids and piece counts given to (and listed by) spm_train; text segments encoded alone by a
// SentencePieceProcessor of the test's own; the normalised text written out by hand; HF's
// truncation rule (first L-1 ids, then `</s>`) applied to the untruncated ids.
#include <sentencepiece_processor.h>
#include <unistd.h>
#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <functional>
#include <sstream>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "catch.hpp"
#include "mentor/text/tokenizer.hpp"

namespace test_tokenizer {

using namespace mentor;
using namespace mentor::text;
namespace fs = std::filesystem;
using Ids = std::vector<int64_t>;

namespace {

fs::path spm_dir() {
  const char* env = std::getenv("MENTOR_TEST_SPM_DIR");
  const fs::path dir =
      env != nullptr ? fs::path(env) : fs::path(MENTOR_BINARY_DIR) / "tests/text_spm";
  INFO("no SentencePiece models in " << dir.string()
                                     << ": run them through ctest (fixture text.spm_models) or "
                                        "`ctest -R text.spm_models` first");
  REQUIRE(fs::exists(dir / "t5like.model"));
  return dir;
}
std::string model(const std::string& name) { return (spm_dir() / (name + ".model")).string(); }

TokenizerConfig config_for(const std::string& name) {
  TokenizerConfig c;
  c.model_path = model(name);
  return c;
}

std::vector<std::string> read_lines(const fs::path& path) {
  std::ifstream in(path);
  REQUIRE(in.good());
  std::vector<std::string> lines;
  for (std::string line; std::getline(in, line);) lines.push_back(line);
  return lines;
}
std::vector<Ids> read_ids(const fs::path& path) {
  std::vector<Ids> out;
  for (const auto& line : read_lines(path)) {
    std::istringstream words(line);
    Ids ids;
    for (int64_t id; words >> id;) ids.push_back(id);
    out.push_back(ids);
  }
  return out;
}

// The test's own SentencePiece, to encode segments alone.
struct Reference {
  sentencepiece::SentencePieceProcessor sp;
  explicit Reference(const std::string& path) { REQUIRE(sp.Load(path).ok()); }
  Ids encode(const std::string& text) const {
    const std::vector<int> ids = sp.EncodeAsIds(text);
    return Ids(ids.begin(), ids.end());
  }
};

Ids concat(std::initializer_list<Ids> parts) {
  Ids out;
  for (const auto& part : parts) out.insert(out.end(), part.begin(), part.end());
  return out;
}
Ids repeat(int64_t id, int64_t n) { return Ids(static_cast<size_t>(n), id); }
// `tokens`, `</s>`, then padding to `length`; the mask of that.
Ids padded(Ids tokens, int64_t eos, int64_t pad, int64_t length) {
  tokens.push_back(eos);
  tokens.resize(static_cast<size_t>(length), pad);
  return tokens;
}
Ids mask_of(int64_t ones, int64_t length) {
  Ids m(static_cast<size_t>(length), 0);
  std::fill_n(m.begin(), ones, 1);
  return m;
}

std::string error_of(const std::function<void()>& f) {
  try {
    f();
  } catch (const Error& e) {
    return e.what();
  }
  return "";
}
bool has(const std::string& message, const std::string& part) {
  return message.find(part) != std::string::npos;
}

}  // namespace

TEST_CASE("tokenizer: plain text gives spm_encode's ids, then </s> and padding",
          "[text][tokenizer]") {
  const fs::path dir = spm_dir();
  const auto samples = read_lines(dir / "samples.txt");
  struct Model {
    std::string name;
    int64_t pad, eos, unk;  // as given to spm_train
  };
  for (const Model& m : {Model{"t5like", 0, 1, 2}, Model{"other_ids", 5, 0, 3}}) {
    SECTION(m.name) {
      const Tokenizer tok(config_for(m.name));
      CHECK(tok.pad_id() == m.pad);
      CHECK(tok.eos_id() == m.eos);
      CHECK(tok.unk_id() == m.unk);
      CHECK(tok.piece_count() ==
            static_cast<int64_t>(read_lines(dir / (m.name + ".vocab")).size()));
      const auto golden = read_ids(dir / ("samples." + m.name + ".ids"));
      REQUIRE(golden.size() == samples.size());
      bool saw_unk = false;
      for (size_t i = 0; i < samples.size(); ++i) {
        INFO("sample " << i << ": \"" << samples[i] << "\"");
        const Encoding e = tok.encode(samples[i]);
        const int64_t n = static_cast<int64_t>(golden[i].size());
        REQUIRE(n > 0);
        CHECK(e.ids == padded(golden[i], m.eos, m.pad, 512));
        CHECK(e.mask == mask_of(n + 1, 512));
        CHECK(e.length == n + 1);
        CHECK(e.truncated == 0);
        CHECK(e.image_markers == 0);
        CHECK(e.images_kept == 0);
        CHECK(e.image_tokens == 0);
        CHECK(tok.encode_text(samples[i]) == golden[i]);
        saw_unk |= std::count(golden[i].begin(), golden[i].end(), m.unk) > 0;
      }
      CHECK(saw_unk);  // the sample with characters outside the corpus
    }
  }
}

TEST_CASE("tokenizer: decode inverts encode on text", "[text][tokenizer]") {
  const Tokenizer tok(config_for("t5like"));
  // Normalised text comes back as is; the normaliser collapses and trims whitespace (tabs too).
  for (const char* text : {"a small red star at the top left on a blue background.",
                           "The heart in the image is golden, huge and in the center.",
                           "A cat in a 16-bit fantasy pixel-art scene"})
    CHECK(tok.decode(tok.encode(text).ids) == std::string(text));
  CHECK(tok.decode(tok.encode("  a   large    blue   moon   near the edge  ").ids) ==
        "a large blue moon near the edge");
  CHECK(tok.decode(tok.encode("a\tpink arrow, drawn as a cross").ids) ==
        "a pink arrow, drawn as a cross");
  // Every sample decodes as SentencePiece decodes spm_encode's ids, and, where no character fell
  // outside the model (unk decodes to " ⁇ ", itself unknown), encodes back to the same ids.
  const Reference ref(tok.config().model_path);
  const auto samples = read_lines(spm_dir() / "samples.txt");
  const auto golden = read_ids(spm_dir() / "samples.t5like.ids");
  REQUIRE(golden.size() == samples.size());
  for (size_t i = 0; i < samples.size(); ++i) {
    INFO(samples[i]);
    const Encoding e = tok.encode(samples[i]);
    const std::string text = tok.decode(e.ids);
    CHECK(text == ref.sp.DecodeIds(std::vector<int>(golden[i].begin(), golden[i].end())));
    if (std::count(golden[i].begin(), golden[i].end(), tok.unk_id()) == 0)
      CHECK(tok.encode(text).ids == e.ids);
  }
  CHECK(tok.decode({}).empty());
  CHECK(tok.decode({tok.eos_id(), tok.pad_id(), tok.pad_id()}).empty());
}

TEST_CASE("tokenizer: image markers become contiguous runs between the segments' own ids",
          "[text][tokenizer]") {
  const Tokenizer tok(config_for("t5like"));
  const Reference ref(tok.config().model_path);
  const int64_t img = 32100, eos = tok.eos_id(), pad = tok.pad_id();

  SECTION("MENTOR's subject template, 256 tokens per image") {
    const std::string before = "The star in ", after = ".\n a small red star at the top left";
    const Encoding e = tok.encode(before + "<image>" + after);
    const Ids a = ref.encode(before), b = ref.encode(after);
    REQUIRE(!a.empty());
    REQUIRE(!b.empty());
    const Ids expected = concat({a, repeat(img, 256), b});
    CHECK(e.ids == padded(expected, eos, pad, 512));
    CHECK(e.mask == mask_of(static_cast<int64_t>(expected.size()) + 1, 512));
    CHECK(e.image_markers == 1);
    CHECK(e.images_kept == 1);
    CHECK(e.image_tokens == 256);
    CHECK(e.truncated == 0);
    // One contiguous run, starting right after the first segment.
    const auto first = std::find(e.ids.begin(), e.ids.end(), img);
    CHECK(first - e.ids.begin() == static_cast<std::ptrdiff_t>(a.size()));
    CHECK(std::count(e.ids.begin(), e.ids.end(), img) == 256);
    CHECK(std::all_of(first, first + 256, [&](int64_t id) { return id == img; }));
    // Whitespace at a marker does not matter: the normaliser trims each segment.
    CHECK(tok.encode("The star in<image>.\n a small red star at the top left").ids == e.ids);
    CHECK(tok.encode("The star in <image> .  a small red star at the top left").ids == e.ids);
    // Decoding gives the markers back, and the text encodes to the same ids.
    const std::string text = tok.decode(e.ids);
    CHECK(text == "The star in <image> . a small red star at the top left");
    CHECK(tok.encode(text).ids == e.ids);
  }

  SECTION("several markers, adjacent ones form one run; image-only prompt") {
    TokenizerConfig c = config_for("t5like");
    c.tokens_per_image = 3;
    c.max_length = 40;
    const Tokenizer small(c);
    const Encoding e = small.encode("<image><image>\nThe heart in <image>.");
    const Ids expected =
        concat({repeat(img, 6), ref.encode("\nThe heart in "), repeat(img, 3), ref.encode(".")});
    CHECK(e.ids == padded(expected, eos, pad, 40));
    CHECK(e.image_markers == 3);
    CHECK(e.images_kept == 3);
    CHECK(e.image_tokens == 9);
    CHECK(small.decode(e.ids) == "<image><image> The heart in <image> .");
    CHECK(small.encode(small.decode(e.ids)).ids == e.ids);

    const Encoding only = small.encode("<image>\n");  // MENTOR's image-only template
    CHECK(only.ids == padded(repeat(img, 3), eos, pad, 40));
    CHECK(only.images_kept == 1);
  }

  SECTION("another image id and marker") {
    TokenizerConfig c = config_for("t5like");
    c.image_token_id = tok.piece_count();  // the first id past the model's pieces
    c.image_marker = "[IMG]";
    c.tokens_per_image = 2;
    const Tokenizer other(c);
    const Encoding e = other.encode("a red star [IMG] <image>");
    const Ids expected =
        concat({ref.encode("a red star "), repeat(tok.piece_count(), 2), ref.encode(" <image>")});
    CHECK(e.ids == padded(expected, eos, pad, 512));
    CHECK(e.image_markers == 1);
  }
}

TEST_CASE("tokenizer: </s> and right padding at the edges of max_length", "[text][tokenizer]") {
  TokenizerConfig c = config_for("t5like");
  c.max_length = 8;
  c.tokens_per_image = 7;
  const Tokenizer tok(c);
  const int64_t eos = tok.eos_id(), pad = tok.pad_id();

  const Encoding empty = tok.encode("");  // HF: [</s>] and padding
  CHECK(empty.ids == Ids{eos, pad, pad, pad, pad, pad, pad, pad});
  CHECK(empty.mask == Ids{1, 0, 0, 0, 0, 0, 0, 0});
  CHECK(empty.length == 1);

  const Encoding exact = tok.encode("<image>");  // 7 placeholders and </s>: exactly 8
  CHECK(exact.ids == padded(repeat(32100, 7), eos, pad, 8));
  CHECK(exact.mask == mask_of(8, 8));
  CHECK(exact.truncated == 0);
  CHECK(exact.images_kept == 1);

  c.max_length = 1;  // room for </s> alone
  const Encoding one = Tokenizer(c).encode("a red star <image>");
  CHECK(one.ids == Ids{eos});
  CHECK(one.image_markers == 1);
  CHECK(one.images_kept == 0);
  CHECK(one.image_tokens == 0);
  CHECK(one.truncated == static_cast<int64_t>(tok.encode_text("a red star").size()) + 7);
}

TEST_CASE("tokenizer: truncation keeps the first L-1 ids and </s>, and reports a cut run",
          "[text][tokenizer]") {
  const Reference ref(model("t5like"));
  TokenizerConfig c = config_for("t5like");
  const std::string prompt = "The star in <image> and the heart in <image>. a small red star";
  c.tokens_per_image = 10;
  c.max_length = 100;
  const Tokenizer wide(c);
  const Encoding full = wide.encode(prompt);
  const Ids a = ref.encode("The star in "), b = ref.encode(" and the heart in "),
            tail = ref.encode(". a small red star");
  const Ids untruncated = concat({a, repeat(32100, 10), b, repeat(32100, 10), tail});
  REQUIRE(full.ids == padded(untruncated, 1, 0, 100));
  const int64_t total = static_cast<int64_t>(untruncated.size()) + 1;

  // HF's rule on the untruncated ids.
  const auto truncated = [&](int64_t length) {
    Ids kept(untruncated.begin(), untruncated.begin() + (length - 1));
    kept.push_back(1);
    return kept;
  };
  struct Case {
    std::string what;
    int64_t length, images_kept, image_tokens;
  };
  const int64_t na = static_cast<int64_t>(a.size()), nb = static_cast<int64_t>(b.size());
  for (const Case& k : {
           Case{"inside the first run", na + 4 + 1, 0, 4},
           Case{"right after the first run", na + 10 + 1, 1, 10},
           Case{"inside the second run", na + 10 + nb + 5 + 1, 1, 15},
           Case{"inside the text after both runs", total - 2, 2, 20},
       }) {
    SECTION(k.what) {
      c.max_length = k.length;
      const Encoding e = Tokenizer(c).encode(prompt);
      CHECK(e.ids == truncated(k.length));
      CHECK(e.ids.back() == 1);  // </s> last
      CHECK(e.mask == mask_of(k.length, k.length));
      CHECK(e.length == k.length);
      CHECK(e.truncated == total - k.length);
      CHECK(e.image_markers == 2);
      CHECK(e.images_kept == k.images_kept);
      CHECK(e.image_tokens == k.image_tokens);
    }
  }

  SECTION("truncate false: an error saying how many tokens over") {
    c.max_length = total - 3;
    c.truncate = false;
    const std::string message = error_of([&] { Tokenizer(c).encode(prompt); });
    CHECK(has(message, "the prompt is " + std::to_string(total) + " tokens"));
    CHECK(has(message, "3 over max_length " + std::to_string(total - 3)));
    CHECK(has(message, "truncate is false"));
    c.max_length = total;  // fits exactly: no error
    CHECK(Tokenizer(c).encode(prompt).truncated == 0);
  }

  SECTION("a run cut short still decodes to a marker") {
    c.max_length = na + 4 + 1;
    const Tokenizer narrow(c);
    CHECK(narrow.decode(narrow.encode(prompt).ids) == "The star in <image>");
  }
}

TEST_CASE("tokenizer: a batch is [B, max_length] ids and mask, row by row encode()",
          "[text][tokenizer]") {
  TokenizerConfig c = config_for("t5like");
  c.max_length = 24;
  c.tokens_per_image = 4;
  const Tokenizer tok(c);
  const std::vector<std::string> prompts = {
      "The image is <image>\na small red star at the top left on a blue background", "",
      "<image>\n", "a pink arrow"};
  const BatchEncoding batch = tok.encode_batch(prompts);
  REQUIRE(batch.ids.shape() == Shape{4, 24});
  REQUIRE(batch.mask.shape() == Shape{4, 24});
  REQUIRE(batch.rows.size() == 4);
  const Ids ids = batch.ids.to_vector(), mask = batch.mask.to_vector();
  for (size_t b = 0; b < prompts.size(); ++b) {
    const Encoding e = tok.encode(prompts[b]);
    CHECK(Ids(ids.begin() + static_cast<std::ptrdiff_t>(b * 24),
              ids.begin() + static_cast<std::ptrdiff_t>((b + 1) * 24)) == e.ids);
    CHECK(Ids(mask.begin() + static_cast<std::ptrdiff_t>(b * 24),
              mask.begin() + static_cast<std::ptrdiff_t>((b + 1) * 24)) == e.mask);
    CHECK(batch.rows[b].ids == e.ids);
    CHECK(batch.rows[b].truncated == e.truncated);
  }
  CHECK(batch.rows[0].truncated > 0);  // the long caption is cut at 24
  CHECK(has(error_of([&] { tok.encode_batch({}); }), "no prompts"));
}

TEST_CASE("tokenizer: bad models and configs are errors naming the problem", "[text][tokenizer]") {
  const fs::path scratch =
      fs::temp_directory_path() / ("mentor_test_tokenizer_" + std::to_string(::getpid()));
  fs::create_directories(scratch);
  const auto with_model = [](const std::string& path) {
    TokenizerConfig c;
    c.model_path = path;
    return c;
  };

  SECTION("image_token_id colliding with a piece") {
    const Reference ref(model("t5like"));
    TokenizerConfig c = config_for("t5like");
    c.image_token_id = 5;
    const std::string message = error_of([&] { Tokenizer{c}; });
    CHECK(has(message, "image_token_id 5 collides with the piece \"" + ref.sp.IdToPiece(5) + "\""));
    CHECK(has(message, c.model_path));
    CHECK(has(message, "use an id >= " + std::to_string(ref.sp.GetPieceSize())));
    c.image_token_id = ref.sp.GetPieceSize() - 1;
    CHECK(has(error_of([&] { Tokenizer{c}; }), "collides"));
    c.image_token_id = ref.sp.GetPieceSize();
    CHECK(error_of([&] { Tokenizer{c}; }).empty());
  }

  SECTION("a missing model file") {
    const std::string path = (scratch / "no_such_dir" / "spiece.model").string();
    const std::string message = error_of([&] { Tokenizer{with_model(path)}; });
    CHECK(has(message, path));
    CHECK(has(message, "does not exist"));
    CHECK(has(error_of([&] { Tokenizer{with_model(scratch.string())}; }), "is not a file"));
    CHECK(has(error_of([&] { Tokenizer{with_model("")}; }), "model_path is empty"));
  }

  SECTION("a corrupt or truncated model file") {
    const std::string garbage = (scratch / "garbage.model").string();
    std::ofstream(garbage, std::ios::binary) << "this is not a protobuf \x01\x02\xff\xfe\x7f";
    std::string message = error_of([&] { Tokenizer{with_model(garbage)}; });
    CHECK(has(message, garbage));
    CHECK(has(message, "is not a valid SentencePiece model"));

    std::ifstream in(model("t5like"), std::ios::binary);
    const std::string bytes((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
    const std::string cut = (scratch / "cut.model").string();
    std::ofstream(cut, std::ios::binary) << bytes.substr(0, bytes.size() / 2);
    message = error_of([&] { Tokenizer{with_model(cut)}; });
    CHECK(has(message, cut));
    CHECK(has(message, "is not a valid SentencePiece model"));

    const std::string empty = (scratch / "empty.model").string();
    std::ofstream(empty, std::ios::binary).flush();
    CHECK(has(error_of([&] { Tokenizer{with_model(empty)}; }), "is not a valid SentencePiece"));
  }

  SECTION("a model without a pad piece") {
    const std::string message = error_of([&] { Tokenizer{config_for("no_pad")}; });
    CHECK(has(message, model("no_pad")));
    CHECK(has(message, "has no pad piece"));
  }

  SECTION("config values") {
    TokenizerConfig c = config_for("t5like");
    c.tokens_per_image = 0;
    CHECK(has(error_of([&] { Tokenizer{c}; }), "tokens_per_image 0 is outside"));
    c = config_for("t5like");
    c.max_length = 0;
    CHECK(has(error_of([&] { Tokenizer{c}; }), "max_length 0 is outside"));
    c = config_for("t5like");
    c.image_token_id = -1;
    CHECK(has(error_of([&] { Tokenizer{c}; }), "image_token_id -1 is outside"));
    c = config_for("t5like");
    c.image_marker.clear();
    CHECK(has(error_of([&] { Tokenizer{c}; }), "image_marker is empty"));
  }

  SECTION("decoding an id the model does not have") {
    const Tokenizer tok(config_for("t5like"));
    const std::string message = error_of([&] { (void)tok.decode({3, 4, 32099}); });
    CHECK(has(message, "id 32099 at position 2"));
    CHECK(has(error_of([&] { (void)tok.decode({-1}); }), "id -1 at position 0"));
  }
  fs::remove_all(scratch);
}

TEST_CASE("tokenizer: TokenizerConfig JSON is strict and round-trips", "[text][tokenizer]") {
  TokenizerConfig c;
  c.model_path = "/models/spiece.model";
  c.image_token_id = 32101;
  c.tokens_per_image = 32;
  c.max_length = 120;
  c.image_marker = "<img>";
  c.truncate = false;
  const nlohmann::json j = c.to_json();
  CHECK(j == nlohmann::json{{"model_path", "/models/spiece.model"},
                            {"image_token_id", 32101},
                            {"tokens_per_image", 32},
                            {"max_length", 120},
                            {"image_marker", "<img>"},
                            {"truncate", false}});
  CHECK(TokenizerConfig::from_json(j).to_json() == j);
  // Missing keys keep MENTOR's values.
  const TokenizerConfig d = TokenizerConfig::from_json({{"model_path", "m"}});
  CHECK(d.image_token_id == 32100);
  CHECK(d.tokens_per_image == 256);
  CHECK(d.max_length == 512);
  CHECK(d.image_marker == "<image>");
  CHECK(d.truncate);

  std::string message = error_of([] { TokenizerConfig::from_json({{"max_len", 512}}); });
  CHECK(has(message, "TokenizerConfig"));
  CHECK(has(message, "unknown key \"max_len\""));
  CHECK(has(message, "max_length"));
  message = error_of([] { TokenizerConfig::from_json({{"max_length", "512"}}); });
  CHECK(has(message, "key \"max_length\" must be an integer"));
  message = error_of([] { TokenizerConfig::from_json({{"truncate", 1}}); });
  CHECK(has(message, "key \"truncate\" must be true or false"));
  message = error_of([] {
    TokenizerConfig::from_json({{"tokens_per_image", 0}}, "MentorData.tokenizer");
  });
  CHECK(has(message, "tokens_per_image 0 is outside"));
  message = error_of([] {
    TokenizerConfig::from_json({{"image_marker", 7}}, "MentorData.tokenizer");
  });
  CHECK(has(message, "at MentorData.tokenizer"));
}

}  // namespace test_tokenizer
