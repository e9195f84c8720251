#pragma once
// Pre-tokenised targets: the VQ codes of a task stream's target images, encoded once
// (examples/pretokenize, models/vq_codes.hpp) and read back by index, so that a training step never
// runs the VQ encoder (LlamaGen pre-extracts its c2i codes the same way; on a CPU it decides
// whether training takes minutes or hours).
//
// The file is safetensors, memory-mapped when read:
//   "codes"        I32 [count, tokens]  sample i's code grid, row-major over (h, w)
//   "tasks"        U8  [count]          sample i's task (world::Task)
//   "target_hash"  I64 [count]          FNV-1a 64 of sample i's target image bytes
//   __metadata__   "mentor.format"         "pretokenized-targets/1"
//                  "mentor.source"         JSON {"tasks": TaskConfig, "seed", "stage", "split",
//                                          "count"}: the stream the targets came from
//                  "mentor.vq"             the VQ checkpoint's identity (the tool writes its XXH64)
//                  "mentor.grid"           JSON [h, w];  "mentor.codebook_size"  JSON integer
// CodedTaskStream pairs a TaskStream with such a file: it refuses a file written from another
// stream (any difference in config, seed, stage or split), and checks each sample's task and the
// hash of its freshly rendered target against the file, so that codes never silently drift from
// their images (a changed renderer is caught at the first sample). get(i) depends only on i, so
// the loader stays deterministic and resumable over it.
#include <cstdint>
#include <cstring>
#include <memory>
#include <span>
#include <string>
#include <utility>
#include <vector>

#include <nlohmann/json.hpp>

#include "mentor/core/error.hpp"
#include "mentor/data/image.hpp"
#include "mentor/data/loader.hpp"
#include "mentor/data/world/tasks.hpp"
#include "mentor/io/safetensors.hpp"

namespace mentor::data {

inline constexpr std::string_view kPretokenizedFormat = "pretokenized-targets/1";

// FNV-1a, 64 bits, of an image's dimensions and bytes.
inline uint64_t image_hash(const Image& image) {
  uint64_t h = 0xCBF29CE484222325ull;
  const auto mix = [&](uint8_t byte) { h = (h ^ byte) * 0x100000001B3ull; };
  for (const int v : {image.width, image.height, image.channels})
    for (int b = 0; b < 4; ++b) mix(static_cast<uint8_t>(static_cast<uint32_t>(v) >> (8 * b)));
  for (const uint8_t byte : image.data) mix(byte);
  return h;
}

// The identity of a stream's targets, as the file records it.
inline nlohmann::json pretokenized_source(const world::TaskStream& stream) {
  return {{"tasks", stream.config().to_json()},
          {"seed", stream.seed()},
          {"stage", stream.stage()},
          {"split", stream.split() == world::Split::train ? "train" : "heldout"},
          {"count", stream.size()}};
}

struct PretokenizedContents {
  nlohmann::json source;
  std::string vq;  // the VQ checkpoint's identity
  int64_t grid_height = 0, grid_width = 0, codebook_size = 0;
  std::vector<int32_t> codes;   // [count, grid_height * grid_width]
  std::vector<uint8_t> tasks;   // [count]
  std::vector<int64_t> hashes;  // [count], image_hash as a two's-complement int64
};

// Writes the file atomically (io::SafeTensorsWriter).
inline void write_pretokenized(const std::string& path, const PretokenizedContents& c) {
  const int64_t tokens = c.grid_height * c.grid_width;
  const auto count = static_cast<int64_t>(c.tasks.size());
  MENTOR_CHECK(c.grid_height > 0 && c.grid_width > 0, "write_pretokenized ", path, ": grid ",
               c.grid_height, " x ", c.grid_width, " is empty");
  MENTOR_CHECK(static_cast<int64_t>(c.codes.size()) == count * tokens &&
                   static_cast<int64_t>(c.hashes.size()) == count,
               "write_pretokenized ", path, ": ", c.codes.size(), " codes and ", c.hashes.size(),
               " hashes for ", count, " samples of ", tokens, " tokens");
  for (size_t i = 0; i < c.codes.size(); ++i)
    MENTOR_CHECK(c.codes[i] >= 0 && c.codes[i] < c.codebook_size, "write_pretokenized ", path,
                 ": code ", c.codes[i], " at ", i, " is outside the codebook of ", c.codebook_size);
  io::SafeTensorsWriter writer;
  writer.add("codes", {count, tokens}, c.codes);
  writer.add("tasks", {count}, c.tasks);
  writer.add("target_hash", {count}, c.hashes);
  writer.set_metadata("mentor.format", std::string(kPretokenizedFormat));
  writer.set_metadata("mentor.source", c.source.dump());
  writer.set_metadata("mentor.vq", c.vq);
  writer.set_metadata("mentor.grid", nlohmann::json::array({c.grid_height, c.grid_width}).dump());
  writer.set_metadata("mentor.codebook_size", std::to_string(c.codebook_size));
  writer.write(path);
}

// A pre-tokenised file, memory-mapped; codes are read per sample.
class PretokenizedTargets {
 public:
  explicit PretokenizedTargets(const std::string& path)
      : file_(io::SafeTensorsFile::open(path)), path_(path) {
    const auto& meta = file_.metadata();
    const auto field = [&](const char* key) -> const std::string& {
      const auto found = meta.find(key);
      MENTOR_CHECK(found != meta.end(), "pretokenized targets ", path_, ": no metadata \"", key,
                   "\" (not a file written by examples/pretokenize)");
      return found->second;
    };
    MENTOR_CHECK(field("mentor.format") == kPretokenizedFormat, "pretokenized targets ", path_,
                 ": format \"", field("mentor.format"), "\", expected \"", kPretokenizedFormat,
                 "\"");
    try {
      source_ = nlohmann::json::parse(field("mentor.source"));
      const auto grid = nlohmann::json::parse(field("mentor.grid"));
      grid_height_ = grid.at(0).get<int64_t>();
      grid_width_ = grid.at(1).get<int64_t>();
      codebook_size_ = std::stoll(field("mentor.codebook_size"));
    } catch (const nlohmann::json::exception& e) {
      throw Error(mentor::detail::concat("pretokenized targets ", path_,
                                         ": unreadable metadata: ", e.what()));
    } catch (const std::logic_error& e) {
      throw Error(mentor::detail::concat("pretokenized targets ", path_,
                                         ": unreadable codebook size: ", e.what()));
    }
    vq_ = field("mentor.vq");
    const io::TensorInfo& codes = file_.info("codes");
    count_ = codes.shape.empty() ? 0 : codes.shape[0];
    MENTOR_CHECK(codes.dtype == io::StDType::I32 && codes.shape.size() == 2 && grid_height_ > 0 &&
                     grid_width_ > 0 && codes.shape[1] == grid_height_ * grid_width_,
                 "pretokenized targets ", path_, ": codes must be I32 [count, ", grid_height_,
                 " x ", grid_width_, "], got ", io::dtype_name(codes.dtype), " ",
                 io::detail::format_shape(codes.shape));
    tasks_ = file_.read_as<uint8_t>("tasks");
    hashes_ = file_.read_as<int64_t>("target_hash");
    MENTOR_CHECK(static_cast<int64_t>(tasks_.size()) == count_ &&
                     static_cast<int64_t>(hashes_.size()) == count_,
                 "pretokenized targets ", path_, ": ", tasks_.size(), " tasks and ", hashes_.size(),
                 " hashes for ", count_, " code rows");
  }

  const std::string& path() const { return path_; }
  const nlohmann::json& source() const { return source_; }
  const std::string& vq() const { return vq_; }
  int64_t count() const { return count_; }
  int64_t tokens() const { return grid_height_ * grid_width_; }
  int64_t grid_height() const { return grid_height_; }
  int64_t grid_width() const { return grid_width_; }
  int64_t codebook_size() const { return codebook_size_; }
  world::Task task(int64_t i) const { return world::Task(tasks_[checked(i)]); }
  uint64_t target_hash(int64_t i) const { return static_cast<uint64_t>(hashes_[checked(i)]); }

  // Sample i's codes into `out` (tokens() values), each checked against the codebook.
  void codes_into(int64_t i, std::span<int32_t> out) const {
    MENTOR_CHECK(static_cast<int64_t>(out.size()) == tokens(), "pretokenized targets ", path_,
                 ": a buffer of ", out.size(), " for ", tokens(), " codes");
    const std::span<const std::byte> all = file_.bytes("codes");
    std::memcpy(out.data(), all.data() + checked(i) * out.size_bytes(), out.size_bytes());
    for (const int32_t code : out)
      MENTOR_CHECK(code >= 0 && code < codebook_size_, "pretokenized targets ", path_, ": sample ",
                   i, " holds code ", code, ", outside the codebook of ", codebook_size_);
  }

 private:
  size_t checked(int64_t i) const {
    MENTOR_CHECK(i >= 0 && i < count_, "pretokenized targets ", path_, ": sample ", i,
                 " is outside 0..", count_ - 1);
    return static_cast<size_t>(i);
  }

  io::SafeTensorsFile file_;
  std::string path_;
  nlohmann::json source_;
  std::string vq_;
  int64_t count_ = 0, grid_height_ = 0, grid_width_ = 0, codebook_size_ = 0;
  std::vector<uint8_t> tasks_;
  std::vector<int64_t> hashes_;
};

struct CodedTaskSample {
  world::TaskSample sample;
  std::vector<int32_t> codes;  // the target's VQ codes, row-major over the grid
};

// A task stream whose targets come with their stored codes.
class CodedTaskStream final : public Dataset<CodedTaskSample> {
 public:
  // `expected_vq`, when not empty, must equal the file's VQ identity (training with another VQ
  // than the one that wrote the codes is an error).
  CodedTaskStream(std::shared_ptr<const world::TaskStream> stream,
                  std::shared_ptr<const PretokenizedTargets> targets,
                  const std::string& expected_vq = {})
      : stream_(std::move(stream)), targets_(std::move(targets)) {
    MENTOR_CHECK(stream_ && targets_, "CodedTaskStream: null stream or targets");
    const nlohmann::json mine = pretokenized_source(*stream_);
    if (mine != targets_->source()) {
      std::string differs;
      for (const auto& item : mine.items())
        if (!targets_->source().contains(item.key()) ||
            targets_->source()[item.key()] != item.value())
          differs += (differs.empty() ? "" : ", ") + item.key();
      throw Error(mentor::detail::concat(
          "CodedTaskStream: ", targets_->path(), " was written from another stream (",
          differs.empty() ? std::string("extra keys") : differs, " differ): the file has ",
          targets_->source().dump(), ", this stream is ", mine.dump()));
    }
    MENTOR_CHECK(targets_->count() == stream_->size(), "CodedTaskStream: ", targets_->path(),
                 " holds ", targets_->count(), " samples, the stream ", stream_->size());
    MENTOR_CHECK(expected_vq.empty() || expected_vq == targets_->vq(),
                 "CodedTaskStream: ", targets_->path(), " was encoded with VQ ", targets_->vq(),
                 ", not ", expected_vq);
  }

  int64_t size() const override { return stream_->size(); }
  const PretokenizedTargets& targets() const { return *targets_; }

  CodedTaskSample get(int64_t index) const override {
    CodedTaskSample out;
    out.sample = stream_->get(index);
    MENTOR_CHECK(out.sample.task == targets_->task(index), "CodedTaskStream: sample ", index,
                 " is ", world::name(out.sample.task), " but ", targets_->path(), " says ",
                 world::name(targets_->task(index)));
    MENTOR_CHECK(image_hash(out.sample.target) == targets_->target_hash(index),
                 "CodedTaskStream: sample ", index, "'s target image differs from the one ",
                 targets_->path(),
                 " encoded (the renderer changed since): pretokenize the stream again");
    out.codes.resize(static_cast<size_t>(targets_->tokens()));
    targets_->codes_into(index, out.codes);
    return out;
  }

 private:
  std::shared_ptr<const world::TaskStream> stream_;
  std::shared_ptr<const PretokenizedTargets> targets_;
};

}  // namespace mentor::data
