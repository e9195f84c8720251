#pragma once
// T5's tokenizer as MENTOR uses it, through libsentencepiece (link mentor::text; users of
// mentor::mentor who do not tokenize need not link it).
//
// The rule (mentor-system.md §1.2). MENTOR's dataset/t2i.py writes the image marker `<image>` 256
// times into the text where an image goes; gpt.py adds `<image>` to HF's slow T5Tokenizer as an
// additional special token (id 32100, after T5's 32000 pieces and 100 <extra_id_N>); the call is
// tokenizer(text, padding='max_length', max_length=512, truncation=True, add_special_tokens=True).
// Here each marker is expanded instead of written out, which gives the same ids:
//   1. the prompt is split at every image marker; each text segment is encoded by SentencePiece
//      alone, as is: its normalizer drops the whitespace at the segment's ends and starts it with
//      a word boundary, as HF's tokenizer in legacy mode does for the text between added tokens;
//   2. each marker becomes tokens_per_image copies of image_token_id;
//   3. `</s>` (the model's eos) is appended;
//   4. longer than max_length L: the first L-1 ids and `</s>` are kept (or, with truncate off, an
//      error); shorter: right padding with the model's pad id. The mask is 1 on the tokens and
//      `</s>`, 0 on the padding.
// A placeholder run cut by truncation is reported (Encoding::image_tokens): upstream then fills
// only the placeholders left with image features (it truncates the rest).
//
// pad, eos and unk are read from the model (T5's spiece.model: pad 0, eos 1, unk 2); ids below the
// model's piece count are its pieces, so image_token_id must be at or past it. Not handled: the
// `<extra_id_N>`, `</s>` and `<pad>` strings in a prompt, which HF would turn into their special
// ids (SentencePiece spells them out); MENTOR's prompts contain none.
#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <memory>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include <nlohmann/json.hpp>

#include "mentor/core/error.hpp"
#include "mentor/core/tensor.hpp"
#include "mentor/io/json_config.hpp"

// Without libsentencepiece-dev the header still compiles (it is part of every-header builds), and
// constructing a Tokenizer throws an error that says what to install.
#if __has_include(<sentencepiece_processor.h>)
#include <sentencepiece_processor.h>
#define MENTOR_HAS_SENTENCEPIECE 1
#else
#define MENTOR_HAS_SENTENCEPIECE 0
namespace sentencepiece {
class SentencePieceProcessor;
}
#endif

namespace mentor::text {

struct TokenizerConfig {
  std::string model_path;          // a SentencePiece model (T5's spiece.model)
  int64_t image_token_id = 32100;  // MENTOR's `<image>` added to T5's tokenizer
  int64_t tokens_per_image = 256;  // CLIP ViT-L/14 patches per image (32 for Q-Former encoders)
  int64_t max_length = 512;        // upstream cls_token_num
  std::string image_marker = "<image>";
  bool truncate = true;  // false: a prompt longer than max_length is an error

  void validate() const {
    MENTOR_CHECK(!image_marker.empty(), "TokenizerConfig: image_marker is empty");
    MENTOR_CHECK(image_token_id >= 0 && image_token_id <= io::kMaxConfigSize,
                 "TokenizerConfig: image_token_id ", image_token_id, " is outside [0, ",
                 io::kMaxConfigSize, "]");
    MENTOR_CHECK(tokens_per_image >= 1 && tokens_per_image <= io::kMaxConfigSize,
                 "TokenizerConfig: tokens_per_image ", tokens_per_image, " is outside [1, ",
                 io::kMaxConfigSize, "]");
    // At least 1: the position of `</s>`.
    MENTOR_CHECK(max_length >= 1 && max_length <= io::kMaxConfigSize,
                 "TokenizerConfig: max_length ", max_length, " is outside [1, ", io::kMaxConfigSize,
                 "]");
  }

  static TokenizerConfig from_json(const nlohmann::json& j, const std::string& path = {}) {
    io::JsonConfigReader r(j, "TokenizerConfig", path);
    TokenizerConfig c;
    r.read("model_path", c.model_path);
    r.read("image_token_id", c.image_token_id);
    r.read("tokens_per_image", c.tokens_per_image);
    r.read("max_length", c.max_length);
    r.read("image_marker", c.image_marker);
    r.read("truncate", c.truncate);
    r.finish();
    c.validate();
    return c;
  }
  nlohmann::json to_json() const {
    return {{"model_path", model_path},
            {"image_token_id", image_token_id},
            {"tokens_per_image", tokens_per_image},
            {"max_length", max_length},
            {"image_marker", image_marker},
            {"truncate", truncate}};
  }
};

// One prompt as upstream's tokenizer call returns it, and what truncation cut.
struct Encoding {
  std::vector<int64_t> ids;   // max_length ids: the tokens, `</s>`, then padding
  std::vector<int64_t> mask;  // 1 on the tokens and `</s>`, 0 on the padding
  int64_t length = 0;         // ids kept, `</s>` included (the 1s of mask)
  int64_t truncated = 0;      // ids cut (0 when the prompt fits)
  int64_t image_markers = 0;  // image markers in the prompt
  int64_t images_kept = 0;    // complete placeholder runs kept
  // Placeholder ids kept, those of a run cut short included: the image feature rows the caller
  // can place. image_tokens > images_kept * tokens_per_image when a run was cut inside.
  int64_t image_tokens = 0;
};

// Several prompts: ids and mask [B, max_length], and each prompt's own Encoding.
// Truncation is upstream's behaviour and loses prompt text or image rows silently there; the
// counts let a trainer log a warning per batch (TokenizerConfig.truncate = false makes it an
// error).
struct BatchEncoding {
  Tensor<int64_t, CPU> ids;
  Tensor<int64_t, CPU> mask;
  std::vector<Encoding> rows;
  int64_t truncated_prompts = 0;  // rows with ids cut
  int64_t cut_images = 0;         // image markers whose placeholder run was cut or dropped
};

// Loads the model once; encode() and decode() are const and keep no state, and copies share the
// loaded model.
class Tokenizer {
 public:
  explicit Tokenizer(TokenizerConfig config) : config_(std::move(config)) {
    config_.validate();
    const std::string& path = config_.model_path;
    MENTOR_CHECK(!path.empty(), "Tokenizer: TokenizerConfig.model_path is empty");
#if MENTOR_HAS_SENTENCEPIECE
    std::error_code ec;
    MENTOR_CHECK(std::filesystem::is_regular_file(path, ec), "Tokenizer: the SentencePiece model ",
                 path, " does not exist or is not a file");
    auto sp = std::make_shared<sentencepiece::SentencePieceProcessor>();
    const auto status = sp->Load(path);
    MENTOR_CHECK(status.ok(), "Tokenizer: ", path, " is not a valid SentencePiece model (",
                 status.ToString(), ")");
    pieces_ = sp->GetPieceSize();
    pad_ = sp->pad_id();
    eos_ = sp->eos_id();
    unk_ = sp->unk_id();
    MENTOR_CHECK(pad_ >= 0, "Tokenizer: the SentencePiece model ", path,
                 " has no pad piece (trained with --pad_id=-1); T5's has pad 0");
    MENTOR_CHECK(eos_ >= 0, "Tokenizer: the SentencePiece model ", path,
                 " has no eos piece `</s>` (trained with --eos_id=-1); T5's has eos 1");
    MENTOR_CHECK(config_.image_token_id >= pieces_, "Tokenizer: image_token_id ",
                 config_.image_token_id, " collides with the piece \"",
                 sp->IdToPiece(static_cast<int>(config_.image_token_id)), "\" of ", path, " (its ",
                 pieces_, " pieces take ids 0..", pieces_ - 1, "); use an id >= ", pieces_);
    sp_ = std::move(sp);
#else
    throw Error(mentor::detail::concat(
        "Tokenizer: mentor was compiled without libsentencepiece, so it cannot load ", path,
        " (install Debian's libsentencepiece-dev and link mentor::text)"));
#endif
  }

  const TokenizerConfig& config() const { return config_; }
  int64_t pad_id() const { return pad_; }
  int64_t eos_id() const { return eos_; }
  int64_t unk_id() const { return unk_; }
  int64_t piece_count() const { return pieces_; }  // ids 0..piece_count()-1 are the model's

  // One text segment as SentencePiece encodes it alone: no marker expansion, no `</s>`.
  std::vector<int64_t> encode_text(std::string_view text) const {
    std::vector<int64_t> out;
#if MENTOR_HAS_SENTENCEPIECE
    std::vector<int> ids;
    const auto status = sp_->Encode(text, &ids);
    MENTOR_CHECK(status.ok(), "Tokenizer: SentencePiece cannot encode a text of ", text.size(),
                 " bytes with ", config_.model_path, " (", status.ToString(), ")");
    out.assign(ids.begin(), ids.end());
#else
    (void)text;
#endif
    return out;
  }

  Encoding encode(std::string_view prompt) const {
    // Split at the markers; segments.size() == markers + 1.
    std::vector<std::vector<int64_t>> segments;
    const std::string_view marker = config_.image_marker;
    for (size_t start = 0;;) {
      const size_t at = prompt.find(marker, start);
      segments.push_back(encode_text(prompt.substr(start, at - start)));
      if (at == std::string_view::npos) break;
      start = at + marker.size();
    }
    Encoding e;
    e.image_markers = static_cast<int64_t>(segments.size()) - 1;
    const int64_t per_image = config_.tokens_per_image, length = config_.max_length;

    // The untruncated length, `</s>` included; checked, since markers * tokens_per_image is
    // unbounded.
    int64_t total = 1;
    for (const auto& segment : segments)
      MENTOR_CHECK(!__builtin_add_overflow(total, static_cast<int64_t>(segment.size()), &total),
                   "Tokenizer: the prompt's token count overflows int64");
    int64_t image_total = 0;
    MENTOR_CHECK(!__builtin_mul_overflow(e.image_markers, per_image, &image_total) &&
                     !__builtin_add_overflow(total, image_total, &total),
                 "Tokenizer: ", e.image_markers, " image markers of ", per_image,
                 " tokens overflow int64");
    MENTOR_CHECK(config_.truncate || total <= length, "Tokenizer: the prompt is ", total,
                 " tokens (", e.image_markers, " image markers of ", per_image, " included, ",
                 "`</s>` too), ", total - length, " over max_length ", length,
                 ", and TokenizerConfig.truncate is false");
    e.length = std::min(total, length);
    e.truncated = total - e.length;

    // The first length-1 ids, then `</s>`.
    const size_t room = static_cast<size_t>(e.length - 1);
    e.ids.reserve(static_cast<size_t>(length));
    for (size_t s = 0; s < segments.size() && e.ids.size() < room; ++s) {
      const auto& segment = segments[s];
      const size_t take = std::min(segment.size(), room - e.ids.size());
      e.ids.insert(e.ids.end(), segment.begin(),
                   segment.begin() + static_cast<std::ptrdiff_t>(take));
      if (s + 1 == segments.size() || e.ids.size() == room) break;
      const auto run = std::min(static_cast<size_t>(per_image), room - e.ids.size());
      e.ids.insert(e.ids.end(), run, config_.image_token_id);
      e.image_tokens += static_cast<int64_t>(run);
      if (run == static_cast<size_t>(per_image)) ++e.images_kept;
    }
    e.ids.push_back(eos_);
    e.mask.assign(e.ids.size(), 1);
    e.ids.resize(static_cast<size_t>(length), pad_);
    e.mask.resize(static_cast<size_t>(length), 0);
    return e;
  }

  BatchEncoding encode_batch(const std::vector<std::string>& prompts) const {
    MENTOR_CHECK(!prompts.empty(), "Tokenizer::encode_batch: no prompts");
    BatchEncoding out;
    const int64_t batch = static_cast<int64_t>(prompts.size()), length = config_.max_length;
    std::vector<int64_t> ids, mask;
    ids.reserve(static_cast<size_t>(batch * length));
    mask.reserve(static_cast<size_t>(batch * length));
    for (const auto& prompt : prompts) {
      out.rows.push_back(encode(prompt));
      out.truncated_prompts += out.rows.back().truncated > 0;
      out.cut_images += out.rows.back().image_markers - out.rows.back().images_kept;
      ids.insert(ids.end(), out.rows.back().ids.begin(), out.rows.back().ids.end());
      mask.insert(mask.end(), out.rows.back().mask.begin(), out.rows.back().mask.end());
    }
    out.ids = Tensor<int64_t, CPU>::from_vector(ids, Shape{batch, length});
    out.mask = Tensor<int64_t, CPU>::from_vector(mask, Shape{batch, length});
    return out;
  }

  // Text back from ids: pad and `</s>` dropped, each run of placeholders back to one marker per
  // tokens_per_image (a run cut short still gives one), text between them decoded by
  // SentencePiece. A marker is set off from the text beside it by one space, since the
  // normalizer dropped the segment's own whitespace; encoding the result gives the same ids.
  std::string decode(const std::vector<int64_t>& ids) const {
    std::string out;
    bool last_was_marker = false;
    std::vector<int> text;
    const auto flush_text = [&] {
      if (text.empty()) return;
      const std::string piece = decode_text(text);
      text.clear();
      if (piece.empty()) return;
      if (!out.empty()) out += ' ';
      out += piece;
      last_was_marker = false;
    };
    for (size_t i = 0; i < ids.size();) {
      const int64_t id = ids[i];
      if (id == config_.image_token_id) {
        flush_text();
        size_t run = 0;
        while (i < ids.size() && ids[i] == config_.image_token_id) ++run, ++i;
        const size_t per_image = static_cast<size_t>(config_.tokens_per_image);
        if (!out.empty() && !last_was_marker) out += ' ';
        for (size_t m = 0; m < (run + per_image - 1) / per_image; ++m) out += config_.image_marker;
        last_was_marker = true;
        continue;
      }
      MENTOR_CHECK(id >= 0 && id < pieces_, "Tokenizer::decode: id ", id, " at position ", i,
                   " is neither a piece of ", config_.model_path, " (0..", pieces_ - 1,
                   ") nor image_token_id ", config_.image_token_id);
      if (id != pad_ && id != eos_) text.push_back(static_cast<int>(id));
      ++i;
    }
    flush_text();
    return out;
  }

 private:
  std::string decode_text(const std::vector<int>& ids) const {
    std::string out;
#if MENTOR_HAS_SENTENCEPIECE
    const auto status = sp_->Decode(ids, &out);
    MENTOR_CHECK(status.ok(), "Tokenizer::decode: SentencePiece cannot decode ", ids.size(),
                 " ids with ", config_.model_path, " (", status.ToString(), ")");
#else
    (void)ids;
#endif
    return out;
  }

  TokenizerConfig config_;
  std::shared_ptr<const sentencepiece::SentencePieceProcessor> sp_;
  int64_t pieces_ = 0, pad_ = -1, eos_ = -1, unk_ = -1;
};

}  // namespace mentor::text
