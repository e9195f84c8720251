// Pre-tokenised targets (data/pretokenized.hpp, models/vq_codes.hpp): a small random VQ encodes a
// task stream's targets in batches; the file read back gives each sample the codes the VQ gives
// that target alone; the loader over the coded stream resumes exactly; a file from another stream,
// another VQ or an image that changed since is refused with a message naming the difference.
#include <unistd.h>
#include <cstdint>
#include <filesystem>
#include <memory>
#include <set>
#include <string>
#include <vector>

#include "catch.hpp"
#include "mentor/data/loader.hpp"
#include "mentor/data/pretokenized.hpp"
#include "mentor/io/safetensors.hpp"
#include "mentor/models/vq.hpp"
#include "mentor/models/vq_codes.hpp"

namespace test_vq_codes {

namespace world = mentor::data::world;
namespace data = mentor::data;
namespace fs = std::filesystem;
using mentor::Generator;
using mentor::Shape;
using mentor::Tensor;
using mentor::models::VQConfig;
using mentor::models::VQModel;

namespace {

VQConfig small_vq() {
  VQConfig c;
  c.ch = 32;
  c.encoder_ch_mult = {1, 2, 2};  // 32 px -> an 8 x 8 grid
  c.decoder_ch_mult = {1, 2, 2};
  c.num_res_blocks = 1;
  c.z_channels = 16;
  c.codebook_size = 64;
  c.codebook_embed_dim = 8;
  c.codebook_usage_window = 64;
  return c;
}

std::shared_ptr<const world::TaskStream> stream(uint64_t seed = 4, int64_t count = 24) {
  world::TaskConfig config;
  config.resolution = 32;
  return std::make_shared<const world::TaskStream>(config, seed, 2, world::Split::train, count);
}

fs::path temp_file(const std::string& name) {
  const fs::path dir = fs::temp_directory_path() / ("mentor_vq_codes." + std::to_string(getpid()));
  fs::create_directories(dir);
  return dir / name;
}

// The codes the VQ gives one image alone.
std::vector<int32_t> codes_alone(VQModel<float>& vq, const mentor::data::Image& target) {
  mentor::NoGradGuard no_grad;
  const data::ImageCHW chw = data::adm_center_crop(target, target.width);
  const auto x = Tensor<float>::from_vector(chw.data, Shape{1, 3, chw.height, chw.width});
  std::vector<int32_t> out;
  for (int64_t c : vq.encode(x).indices.to_vector()) out.push_back(static_cast<int32_t>(c));
  return out;
}

}  // namespace

TEST_CASE("pretokenized targets: stored codes are the VQ's codes of each target",
          "[data][models][vq]") {
  Generator gen(3);
  VQModel<float> vq(small_vq(), gen);
  const auto s = stream();
  int64_t reported = 0;
  const data::PretokenizedContents contents =
      mentor::models::encode_task_targets(vq, *s, 5, "vq-under-test", [&](int64_t done) {
        CHECK(done > reported);
        reported = done;
      });
  CHECK(reported == 24);
  REQUIRE(contents.grid_height == 8);
  REQUIRE(contents.grid_width == 8);
  const fs::path path = temp_file("codes.safetensors");
  data::write_pretokenized(path.string(), contents);

  const auto targets = std::make_shared<const data::PretokenizedTargets>(path.string());
  CHECK(targets->count() == 24);
  CHECK(targets->tokens() == 64);
  CHECK(targets->codebook_size() == 64);
  CHECK(targets->vq() == "vq-under-test");
  const data::CodedTaskStream coded(s, targets, "vq-under-test");
  std::set<int32_t> distinct;
  for (int64_t i = 0; i < coded.size(); ++i) {
    INFO("sample " << i);
    const data::CodedTaskSample c = coded.get(i);
    CHECK(c.sample.task == s->get(i).task);
    CHECK(c.codes == codes_alone(vq, c.sample.target));
    distinct.insert(c.codes.begin(), c.codes.end());
  }
  CHECK(distinct.size() > 4);  // a random VQ still tells images apart

  // The loader over the coded stream: resumed from a state, the same batches as without a stop.
  data::LoaderOptions options;
  options.batch_size = 4;
  options.seed = 8;
  options.num_workers = 2;
  const auto dataset = std::make_shared<const data::CodedTaskStream>(s, targets);
  using Batch = std::vector<data::CodedTaskSample>;
  const auto collate = [](std::vector<data::CodedTaskSample>&& b) { return std::move(b); };
  data::DataLoader<data::CodedTaskSample, Batch> straight(dataset, options, collate);
  for (int b = 0; b < 3; ++b) straight.next();
  const data::LoaderState state = straight.state();
  data::DataLoader<data::CodedTaskSample, Batch> resumed(dataset, options, collate, state);
  for (int b = 0; b < 5; ++b) {  // across the epoch boundary (6 batches per epoch)
    const Batch x = straight.next(), y = resumed.next();
    REQUIRE(x.size() == y.size());
    for (size_t i = 0; i < x.size(); ++i) {
      CHECK(x[i].codes == y[i].codes);
      CHECK(x[i].sample.prompt == y[i].sample.prompt);
    }
  }
  fs::remove_all(path.parent_path());
}

TEST_CASE("pretokenized targets: files from another stream, VQ or image are refused",
          "[data][models][vq]") {
  Generator gen(3);
  VQModel<float> vq(small_vq(), gen);
  const auto s = stream();
  data::PretokenizedContents contents = mentor::models::encode_task_targets(vq, *s, 8, "vq-a");
  const fs::path path = temp_file("codes.safetensors");
  data::write_pretokenized(path.string(), contents);
  const auto targets = std::make_shared<const data::PretokenizedTargets>(path.string());

  CHECK_THROWS_WITH(data::CodedTaskStream(stream(5), targets), Catch::Contains("seed"));
  CHECK_THROWS_WITH(data::CodedTaskStream(stream(4, 25), targets), Catch::Contains("count"));
  CHECK_THROWS_WITH(data::CodedTaskStream(s, targets, "vq-b"),
                    Catch::Contains("encoded with VQ vq-a"));

  // A target that no longer renders as it did when encoded.
  contents.hashes[3] ^= 1;
  const fs::path changed = temp_file("changed.safetensors");
  data::write_pretokenized(changed.string(), contents);
  const data::CodedTaskStream stale(
      s, std::make_shared<const data::PretokenizedTargets>(changed.string()));
  CHECK_NOTHROW(stale.get(2));
  CHECK_THROWS_WITH(stale.get(3), Catch::Contains("target image differs"));
  CHECK_THROWS_WITH(stale.get(24), Catch::Contains("outside 0..23"));

  contents.codes[7] = 64;
  CHECK_THROWS_WITH(data::write_pretokenized(changed.string(), contents),
                    Catch::Contains("outside the codebook of 64"));

  // Any safetensors file is not a codes file.
  mentor::io::SafeTensorsWriter plain;
  plain.add("codes", {1, 1}, std::vector<int32_t>{0});
  const fs::path other = temp_file("plain.safetensors");
  plain.write(other.string());
  CHECK_THROWS_WITH(data::PretokenizedTargets(other.string()),
                    Catch::Contains("not a file written by examples/pretokenize"));
  fs::remove_all(path.parent_path());
}

}  // namespace test_vq_codes
