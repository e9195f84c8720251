// Checkpoints: the XXH64 content hash against the reference implementation's vectors, a full
// save/load round trip, and every way a checkpoint can be unusable (truncated at many offsets,
// flipped bytes, a torn manifest, another architecture, another dtype, another trainable set),
// each failing with a message that says what is wrong while the previous checkpoint stays usable.
#include <sys/wait.h>
#include <unistd.h>

#include <cstdint>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "catch.hpp"
#include "mentor/generate/greedy.hpp"
#include "mentor/nn/layers.hpp"
#include "mentor/ops/ops.hpp"
#include "mentor/train/checkpoint.hpp"
#include "mentor/train/load.hpp"
#include "mentor/train/trainer.hpp"
#include "tiny_mentor.hpp"

namespace test_checkpoint {

using namespace mentor;
namespace fs = std::filesystem;

namespace {

template <class T>
struct Mlp : nn::Module<T, CPU> {
  nn::Linear<T> fc1, fc2;
  Mlp(int64_t in, int64_t hidden, int64_t out, uint64_t seed) {
    Generator gen(seed);
    fc1 = nn::Linear<T>(in, hidden, true, gen, 0.3);
    fc2 = nn::Linear<T>(hidden, out, true, gen, 0.3);
  }
  void visit(nn::Visitor<T, CPU>& v) override {
    v.child("fc1", fc1);
    v.child("fc2", fc2);
  }
  Tensor<T> loss(const Tensor<T>& x, const Tensor<T>& y) const {
    return mse_loss(fc2(tanh(fc1(x))), y);
  }
};

fs::path scratch(const std::string& name) {
  const auto dir = fs::path(MENTOR_BINARY_DIR) / "test_checkpoint_scratch" / name;
  fs::remove_all(dir);
  fs::create_directories(dir);
  return dir;
}

template <class T>
std::vector<T> values(nn::Module<T, CPU>& m) {
  std::vector<T> out;
  for (auto& [name, t] : m.named_parameters()) {
    auto v = t->to_vector();
    out.insert(out.end(), v.begin(), v.end());
  }
  return out;
}

template <class T>
bool same_bytes(const std::vector<T>& a, const std::vector<T>& b) {
  return a.size() == b.size() && std::memcmp(a.data(), b.data(), a.size() * sizeof(T)) == 0;
}

std::vector<char> read_bytes(const fs::path& path) {
  std::ifstream in(path, std::ios::binary);
  return {std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
}
void write_bytes(const fs::path& path, const std::vector<char>& bytes) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
}

template <class T>
void train_steps(train::Trainer<T>& trainer, Mlp<T>& model, int steps, uint64_t seed) {
  for (int s = 0; s < steps; ++s) {
    Generator gen(seed + static_cast<uint64_t>(trainer.step_count()));
    const auto x = Tensor<float>::randn({6, 5}, gen).template to<T>();
    const auto y = Tensor<float>::randn({6, 3}, gen).template to<T>();
    trainer.step([&](int64_t) { return model.loss(x, y); });
  }
}

train::TrainerOptions options() {
  train::TrainerOptions o;
  o.schedule = train::WarmupCosine{1e-2, 2, 20, 0.1};
  return o;
}

}  // namespace

TEST_CASE("xxh64 matches the reference implementation's sanity vectors", "[checkpoint][hash]") {
  // xxHash's xxhsum sanity buffer: 101 bytes from a 32-bit generator.
  std::vector<uint8_t> buffer(101);
  uint32_t generator = 2654435761u;
  for (auto& byte : buffer) {
    byte = static_cast<uint8_t>(generator >> 24);
    generator *= generator;
  }
  const uint64_t prime = 2654435761u;
  CHECK(train::xxh64(nullptr, 0, 0) == 0xEF46DB3751D8E999ull);
  CHECK(train::xxh64(nullptr, 0, prime) == 0xAC75FDA2929B17EFull);
  CHECK(train::xxh64(buffer.data(), 1, 0) == 0x4FCE394CC88952D8ull);
  CHECK(train::xxh64(buffer.data(), 1, prime) == 0x739840CB819FA723ull);
  CHECK(train::xxh64(buffer.data(), 14, 0) == 0xCFFA8DB881BC3A3Dull);
  CHECK(train::xxh64(buffer.data(), 14, prime) == 0x5B9611585EFCC9CBull);
  CHECK(train::xxh64(buffer.data(), 101, 0) == 0x0EAB543384F878ADull);
  CHECK(train::xxh64(buffer.data(), 101, prime) == 0xCAA65939306F1E21ull);
  CHECK(train::hex64(0xEF46DB3751D8E999ull) == "ef46db3751d8e999");
}

TEST_CASE("a checkpoint restores model, optimizer, step, rng, loader position and config",
          "[checkpoint]") {
  const auto dir = scratch("roundtrip");
  Mlp<float> model(5, 7, 3, 1);
  train::Trainer<float> trainer(model, options());
  train_steps(trainer, model, 3, 100);
  Generator rng(42);
  rng.offset = 1234;
  const nlohmann::json config = {{"run", "roundtrip"}, {"hidden", 7}};
  const auto stem = trainer.save(dir, data::LoaderState{2, 17}, rng, config);
  CHECK(stem == dir / "step-00000003");
  CHECK(fs::exists(dir / "step-00000003.safetensors"));
  CHECK(fs::exists(dir / "step-00000003.json"));
  CHECK(train::resolve_checkpoint(dir) == stem);

  const auto manifest = nlohmann::json::parse(std::ifstream(dir / "step-00000003.json"));
  CHECK(manifest["format"] == "mentor.checkpoint");
  CHECK(manifest["step"] == 3);
  CHECK(manifest["tensors"].contains("model.fc1.weight"));
  CHECK(manifest["tensors"].contains("optim.m.fc2.bias"));
  CHECK(!manifest["tensors"].contains("master.fc1.weight"));  // float32: the model is the master
  CHECK(manifest["data"]["bytes"] == fs::file_size(dir / "step-00000003.safetensors"));

  // A fresh model and trainer (different init) load it back exactly.
  Mlp<float> other(5, 7, 3, 99);
  train::Trainer<float> resumed(other, options());
  CHECK(!same_bytes(values(model), values(other)));
  const auto point = resumed.load(dir);
  CHECK(same_bytes(values(model), values(other)));
  CHECK(point.step == 3);
  CHECK(resumed.step_count() == 3);
  CHECK(point.loader == data::LoaderState{2, 17});
  CHECK(point.rng.seed == 42);
  CHECK(point.rng.offset == 1234);
  CHECK(point.config == config);
  CHECK(point.checkpoint == stem);
  for (const auto& [name, state] : trainer.optimizer().state()) {
    const auto& loaded = resumed.optimizer().state().at(name);
    CHECK(loaded.step == state.step);
    CHECK(same_bytes(loaded.m.to_vector(), state.m.to_vector()));
    CHECK(same_bytes(loaded.v.to_vector(), state.v.to_vector()));
  }
  // Both continue identically.
  train_steps(trainer, model, 2, 100);
  train_steps(resumed, other, 2, 100);
  CHECK(same_bytes(values(model), values(other)));
}

TEST_CASE("bf16 checkpoints keep the float32 masters", "[checkpoint][bf16]") {
  const auto dir = scratch("bf16");
  Mlp<bf16> model(5, 7, 3, 1);
  train::Trainer<bf16> trainer(model, options());
  train_steps(trainer, model, 3, 7);
  trainer.save(dir, {}, Generator(1));
  const train::CheckpointReader reader = train::CheckpointReader::open(dir);
  CHECK(reader.tensors().at("model.fc1.weight").dtype == "BF16");
  CHECK(reader.tensors().at("master.fc1.weight").dtype == "F32");
  CHECK(reader.tensors().at("optim.m.fc1.weight").dtype == "F32");

  Mlp<bf16> other(5, 7, 3, 2);
  train::Trainer<bf16> resumed(other, options());
  resumed.load(dir);
  auto ours = trainer.masters().named(), theirs = resumed.masters().named();
  for (size_t i = 0; i < ours.size(); ++i)
    CHECK(same_bytes(ours[i].second->to_vector(), theirs[i].second->to_vector()));

  // Loading it into a float32 model is a dtype mismatch, reported as such.
  Mlp<float> fp32(5, 7, 3, 1);
  train::Trainer<float> fp32_trainer(fp32, options());
  CHECK_THROWS_WITH(
      fp32_trainer.load(dir),
      Catch::Contains("does not match") &&
          Catch::Contains("fc1.weight: expected F32 [7, 5], checkpoint has BF16 [7, 5]"));
}

TEST_CASE("truncated or damaged checkpoints fail clearly; the previous one stays usable",
          "[checkpoint][damage]") {
  const auto dir = scratch("damage");
  Mlp<float> model(5, 7, 3, 1);
  train::Trainer<float> trainer(model, options());
  train_steps(trainer, model, 2, 5);
  const auto previous = trainer.save(dir, {}, Generator(1));
  const auto previous_values = values(model);
  train_steps(trainer, model, 2, 5);
  const auto newest = trainer.save(dir, {}, Generator(1));
  CHECK(train::resolve_checkpoint(dir) == newest);

  const auto data_file = train::data_path(newest);
  const auto manifest_file = train::manifest_path(newest);
  const auto good_data = read_bytes(data_file);
  const auto good_manifest = read_bytes(manifest_file);
  uint64_t header = 0;
  std::memcpy(&header, good_data.data(), 8);
  const size_t n = good_data.size();

  auto expect_previous_usable = [&] {
    Mlp<float> fresh(5, 7, 3, 77);
    train::Trainer<float> t(fresh, options());
    const auto point = t.load(previous);
    CHECK(point.step == 2);
    CHECK(same_bytes(values(fresh), previous_values));
  };
  auto expect_failure = [&](const std::string& fragment) {
    Mlp<float> fresh(5, 7, 3, 77);
    const auto before = values(fresh);
    train::Trainer<float> t(fresh, options());
    CHECK_THROWS_WITH(t.load(dir), Catch::Contains(fragment));
    CHECK(same_bytes(values(fresh), before));  // nothing was half-loaded
    CHECK(t.step_count() == 0);
  };

  // Truncated data file, at offsets inside the length prefix, the header, and the tensor data.
  const std::vector<size_t> offsets = {
      0, 3, 8, 8 + header / 2, 8 + header, 8 + header + 1, (8 + header + n) / 2, n - 4, n - 1};
  for (size_t offset : offsets) {
    INFO("data truncated to " << offset << " of " << n << " bytes");
    fs::resize_file(data_file, offset);
    expect_failure("is " + std::to_string(offset) + " bytes but its manifest records " +
                   std::to_string(n) + ": the file is truncated");
    expect_previous_usable();
    write_bytes(data_file, good_data);
  }

  // Same size, flipped bytes (header and data): the content hash catches them.
  for (size_t offset : {size_t{2}, size_t{8 + 5}, static_cast<size_t>(8 + header + 3), n - 1}) {
    INFO("byte " << offset << " flipped");
    auto damaged = good_data;
    damaged[offset] = static_cast<char>(damaged[offset] ^ 0x5a);
    write_bytes(data_file, damaged);
    expect_failure("fails its integrity check");
    expect_previous_usable();
  }
  write_bytes(data_file, good_data);

  // Extra bytes appended.
  {
    auto longer = good_data;
    longer.push_back('x');
    write_bytes(data_file, longer);
    expect_failure("damaged (extra bytes)");
    write_bytes(data_file, good_data);
  }

  // A torn manifest.
  for (size_t offset : {size_t{0}, size_t{1}, good_manifest.size() / 3, good_manifest.size() - 3}) {
    INFO("manifest truncated to " << offset);
    write_bytes(manifest_file, {good_manifest.begin(), good_manifest.begin() + offset});
    expect_failure("is damaged or truncated");
    expect_previous_usable();
  }
  write_bytes(manifest_file, good_manifest);

  // Missing pieces.
  fs::remove(data_file);
  expect_failure("data file " + data_file.string() + " is missing");
  write_bytes(data_file, good_data);
  {
    Mlp<float> fresh(5, 7, 3, 77);
    train::Trainer<float> t(fresh, options());
    CHECK(t.load(dir).step == 4);  // repaired: loads again
  }
  CHECK_THROWS_WITH(train::CheckpointReader::open(scratch("empty")),
                    Catch::Contains("has no 'latest' file"));
}

TEST_CASE("a checkpoint of another architecture names every difference", "[checkpoint][arch]") {
  const auto dir = scratch("arch");
  Mlp<float> model(5, 7, 3, 1);
  train::Trainer<float> trainer(model, options());
  train_steps(trainer, model, 1, 5);
  trainer.save(dir, {}, Generator(1));

  Mlp<float> wider(5, 9, 3, 1);
  train::Trainer<float> t(wider, options());
  const auto before = values(wider);
  try {
    t.load(dir);
    FAIL("loading another architecture must throw");
  } catch (const Error& e) {
    const std::string message = e.what();
    INFO(message);
    CHECK(message.find("the model does not match") != std::string::npos);
    CHECK(message.find("fc1.weight: expected F32 [9, 5], checkpoint has F32 [7, 5]") !=
          std::string::npos);
    CHECK(message.find("fc1.bias: expected F32 [9], checkpoint has F32 [7]") != std::string::npos);
    CHECK(message.find("fc2.weight: expected F32 [3, 9], checkpoint has F32 [3, 7]") !=
          std::string::npos);
  }
  CHECK(same_bytes(values(wider), before));

  // Missing and unexpected tensors.
  struct Deeper : Mlp<float> {
    nn::Linear<float> fc3;
    Deeper() : Mlp<float>(5, 7, 3, 1) {
      Generator gen(4);
      fc3 = nn::Linear<float>(3, 3, false, gen);
    }
    void visit(nn::Visitor<float, CPU>& v) override {
      Mlp<float>::visit(v);
      v.child("fc3", fc3);
    }
  } deeper;
  train::Trainer<float> t2(deeper, options());
  CHECK_THROWS_WITH(t2.load(dir),
                    Catch::Contains("1 missing from the checkpoint: fc3.weight (F32 [3, 3])"));

  // A trainable set that differs is refused for a full resume, accepted for weights_only.
  Mlp<float> partly_frozen(5, 7, 3, 1);
  train::freeze(partly_frozen, {"fc1\\..*"});
  train::Trainer<float> t3(partly_frozen, options());
  CHECK_THROWS_WITH(t3.load(dir),
                    Catch::Contains("fc1.weight was trainable in the checkpoint but is frozen") &&
                        Catch::Contains("LoadMode::weights_only"));
  const auto point = t3.load(dir, train::LoadMode::weights_only);
  CHECK(point.step == 1);
  CHECK(t3.step_count() == 0);  // weights only: a new run starts at step 0
  CHECK(same_bytes(values(partly_frozen), values(model)));
}

TEST_CASE("latest, pruning, listing and stale temporary files", "[checkpoint][files]") {
  const auto dir = scratch("files");
  Mlp<float> model(5, 7, 3, 1);
  train::Trainer<float> trainer(model, options());
  for (int i = 0; i < 5; ++i) {
    train_steps(trainer, model, 1, 5);
    trainer.save(dir, {}, Generator(1), {}, /*keep_last=*/2);
  }
  const auto listed = train::list_checkpoints(dir);
  REQUIRE(listed.size() == 2);
  CHECK(listed[0].first == 4);
  CHECK(listed[1].first == 5);
  CHECK(!fs::exists(dir / "step-00000003.json"));
  CHECK(!fs::exists(dir / "step-00000003.safetensors"));
  CHECK(train::resolve_checkpoint(dir) == dir / "step-00000005");
  // Paths to either file name the same checkpoint.
  CHECK(train::resolve_checkpoint(dir / "step-00000004.json") == dir / "step-00000004");
  CHECK(train::resolve_checkpoint(dir / "step-00000004.safetensors") == dir / "step-00000004");

  // A temporary file of a dead writer is removed by the next save; ours (a live pid) is kept.
  const pid_t child = ::fork();
  if (child == 0) ::_exit(0);
  ::waitpid(child, nullptr, 0);
  const auto stale = dir / ("step-00000006.safetensors.tmp." + std::to_string(child) + ".0");
  const auto live = dir / ("other.tmp." + std::to_string(::getpid()) + ".7");
  write_bytes(stale, {'x'});
  write_bytes(live, {'x'});
  train_steps(trainer, model, 1, 5);
  trainer.save(dir, {}, Generator(1), {}, 2);
  CHECK(!fs::exists(stale));
  CHECK(fs::exists(live));

  // A damaged `latest` pointer is reported.
  write_bytes(dir / "latest", {});
  CHECK_THROWS_WITH(train::resolve_checkpoint(dir), Catch::Contains("is empty or damaged"));

  // Reserved manifest fields and bad names.
  train::CheckpointWriter writer;
  writer.manifest()["data"] = 1;
  CHECK_THROWS_WITH(writer.commit(dir, "x"), Catch::Contains("\"data\" is reserved"));
  train::CheckpointWriter writer2;
  CHECK_THROWS_WITH(writer2.commit(dir, "a/b"), Catch::Contains("invalid name"));
}

// ---- manifests that cannot lie or escape -------------------------------------------------------

namespace {

nlohmann::json read_json(const fs::path& path) {
  return nlohmann::json::parse(std::ifstream(path));
}

// Writes `manifest` re-signed with a valid manifest_xxh64, as a tool that knows the format would:
// the checks behind the hash must hold on their own.
void write_signed(const fs::path& path, nlohmann::json manifest) {
  manifest["manifest_xxh64"] = train::detail::manifest_hash(manifest);
  std::ofstream(path, std::ios::trunc) << manifest.dump(1);
}

// parse_checkpoint_manifest throws a mentor::Error (any other exception fails the test) whose
// message contains `fragment`.
void expect_manifest_error(const std::string& text, const std::string& fragment) {
  INFO("manifest: " << text.substr(0, 300));
  try {
    train::parse_checkpoint_manifest(text);
    FAIL("parse_checkpoint_manifest accepted it");
  } catch (const Error& e) {
    CHECK_THAT(std::string(e.what()), Catch::Contains(fragment));
  }
}
void expect_signed_error(nlohmann::json manifest, const std::string& fragment) {
  manifest["manifest_xxh64"] = train::detail::manifest_hash(manifest);
  expect_manifest_error(manifest.dump(), fragment);
}

}  // namespace

TEST_CASE("the manifest is covered by its own hash: an edited step or RNG offset does not load",
          "[checkpoint][manifest]") {
  const auto dir = scratch("manifest_hash");
  Mlp<float> model(5, 7, 3, 1);
  train::Trainer<float> trainer(model, options());
  train_steps(trainer, model, 2, 5);
  Generator rng(42);
  rng.offset = 10;
  const auto stem = trainer.save(dir, {}, rng);
  const auto path = train::manifest_path(stem);
  const auto good = read_bytes(path);
  const nlohmann::json manifest = read_json(path);
  CHECK(manifest["version"] == 2);
  CHECK(manifest["manifest_xxh64"] == train::detail::manifest_hash(manifest));

  const auto expect_refused = [&](nlohmann::json edited, const std::string& fragment) {
    std::ofstream(path, std::ios::trunc) << edited.dump(1);
    Mlp<float> fresh(5, 7, 3, 77);
    train::Trainer<float> t(fresh, options());
    CHECK_THROWS_WITH(t.load(dir), Catch::Contains(fragment));
    CHECK(t.step_count() == 0);
    write_bytes(path, good);
  };
  nlohmann::json edited = manifest;
  edited["rng"]["offset"] = 11;
  expect_refused(edited, "fails its own integrity check");
  edited = manifest;
  edited["step"] = 3;
  expect_refused(edited, "fails its own integrity check");
  edited = manifest;
  edited["trainer"]["max_grad_norm"] = 2.0;
  expect_refused(edited, "fails its own integrity check");
  edited = manifest;
  edited.erase("manifest_xxh64");
  expect_refused(edited, "has no \"manifest_xxh64\"");
  edited = manifest;
  edited["version"] = 1;  // the old format had no manifest hash: refused, not trusted
  expect_refused(edited, "has version 1; this build reads version 2");
  // Whitespace is not content: the canonical text is hashed.
  std::ofstream(path, std::ios::trunc) << manifest.dump(4);
  Mlp<float> fresh(5, 7, 3, 77);
  train::Trainer<float> t(fresh, options());
  CHECK(t.load(dir).rng.offset == 10);
}

TEST_CASE("parse_checkpoint_manifest: bad fields are mentor errors, never casts or escapes",
          "[checkpoint][manifest]") {
  const auto dir = scratch("manifest_fields");
  Mlp<float> model(5, 7, 3, 1);
  train::Trainer<float> trainer(model, options());
  const auto stem = trainer.save(dir, {}, Generator(1));
  const nlohmann::json good = read_json(train::manifest_path(stem));
  const auto parsed = train::parse_checkpoint_manifest(good.dump());
  CHECK(parsed.data_file == "step-00000000.safetensors");
  CHECK(parsed.tensors.at("model.fc1.weight").shape == std::vector<int64_t>{7, 5});

  expect_manifest_error("{\"format\":1}", "is not a mentor checkpoint (\"format\" is 1");
  expect_manifest_error("[1, 2]", "is not a JSON object");
  expect_manifest_error("{\"format\": \"mentor.chec", "is damaged or truncated");
  expect_manifest_error(std::string(100000, '[') + std::string(100000, ']'), "nested deeper");
  expect_manifest_error("{\"format\":\"mentor.checkpoint\",\"version\":1e300}",
                        "\"version\" must be an integer, got number 1e+300");
  expect_manifest_error("{\"format\":\"mentor.checkpoint\",\"version\":\"2\"}",
                        "\"version\" must be an integer, got string");
  expect_manifest_error("{\"format\":\"mentor.checkpoint\",\"version\":18446744073709551615}",
                        "out of range");

  const auto with = [&](const std::function<void(nlohmann::json&)>& edit) {
    nlohmann::json m = good;
    edit(m);
    return m;
  };
  expect_signed_error(with([](auto& m) { m["data"]["bytes"] = 1e300; }),
                      "data.bytes must be an integer, got number");
  expect_signed_error(with([](auto& m) { m["data"]["bytes"] = -5; }),
                      "data.bytes must not be negative");
  expect_signed_error(with([](auto& m) { m["data"]["bytes"] = "12"; }),
                      "data.bytes must be an integer, got string");
  expect_signed_error(with([](auto& m) { m["data"] = 3; }), "\"data\" must be an object");
  expect_signed_error(with([](auto& m) { m["data"].erase("xxh64"); }), "has no \"xxh64\"");
  expect_signed_error(with([](auto& m) {
                        m["tensors"]["model.fc1.weight"]["shape"] = {7, 1e300};
                      }),
                      "tensors[\"model.fc1.weight\"].shape[1] must be an integer");
  expect_signed_error(with([](auto& m) {
                        m["tensors"]["model.fc1.weight"]["shape"] = {-7, 5};
                      }),
                      "negative extent -7");
  expect_signed_error(with([](auto& m) { m["tensors"]["model.fc1.weight"]["shape"] = "7x5"; }),
                      ".shape must be an array, got string");
  expect_signed_error(with([](auto& m) { m["tensors"]["model.fc1.weight"]["dtype"] = 32; }),
                      ".dtype must be a string, got number");
  expect_signed_error(with([](auto& m) {
                        m["tensors"] = {1, 2};
                      }),
                      "\"tensors\" must be an object, got array");
  // data.file stays inside the checkpoint's folder.
  for (const std::string file : {"/etc/passwd", "../step-00000000.safetensors", "sub/x.safetensors",
                                 "..", ".", "", "a\\b"}) {
    INFO("data.file " << file);
    expect_signed_error(with([&](auto& m) { m["data"]["file"] = file; }),
                        "is not a plain file name in the checkpoint's folder");
  }
  expect_signed_error(with([](auto& m) { m["data"]["file"] = 7; }),
                      "data.file must be a string, got number");
}

TEST_CASE("data.file naming a folder, or unreadable training fields, fail clearly",
          "[checkpoint][manifest]") {
  const auto dir = scratch("manifest_folder");
  Mlp<float> model(5, 7, 3, 1);
  train::Trainer<float> trainer(model, options());
  train_steps(trainer, model, 1, 5);
  const auto stem = trainer.save(dir, {}, Generator(1));
  const auto path = train::manifest_path(stem);
  const nlohmann::json good = read_json(path);
  const auto expect_refused = [&](const std::function<void(nlohmann::json&)>& edit,
                                  const std::string& fragment) {
    nlohmann::json m = good;
    edit(m);
    write_signed(path, m);
    Mlp<float> fresh(5, 7, 3, 77);
    train::Trainer<float> t(fresh, options());
    CHECK_THROWS_WITH(t.load(dir), Catch::Contains(fragment));
    CHECK(t.step_count() == 0);
  };
  fs::create_directories(dir / "folder.safetensors");
  expect_refused([](auto& m) { m["data"]["file"] = "folder.safetensors"; },
                 "folder.safetensors is not a regular file");
  expect_refused([](auto& m) { m["step"] = 1e300; }, "step must be an integer, got number");
  expect_refused([](auto& m) { m["rng"]["offset"] = -1; }, "rng.offset must not be negative");
  expect_refused([](auto& m) { m["rng"]["seed"] = 0.5; }, "rng.seed must be an integer");
  expect_refused([](auto& m) { m["loader"]["epoch"] = "x"; }, "loader.epoch must be an integer");
  expect_refused(
      [](auto& m) {
        m["generators"] = {{"ghost", {{"seed", 1}, {"offset", 2}}}};
      },
      "generator 'ghost' in the checkpoint is not a generator of this model");
  expect_refused([](auto& m) { m["optimizer"]["param_steps"]["fc1.weight"] = 1e300; },
                 "optimizer.param_steps.fc1.weight must be an integer");
  expect_refused([](auto& m) { m["optimizer"]["type"] = 5; }, "malformed \"optimizer\"");
  write_signed(path, good);
  Mlp<float> fresh(5, 7, 3, 77);
  train::Trainer<float> t(fresh, options());
  CHECK(t.load(dir).step == 1);
}

TEST_CASE("listing and pruning skip bad checkpoints, report them, and keep working",
          "[checkpoint][files]") {
  const auto dir = scratch("bad_in_folder");
  Mlp<float> model(5, 7, 3, 1);
  train::Trainer<float> trainer(model, options());
  for (int i = 0; i < 4; ++i) {
    train_steps(trainer, model, 1, 5);
    trainer.save(dir, {}, Generator(1), {}, /*keep_last=*/0);
  }
  // Step 2's manifest is replaced by a bad one (its data file stays), step 3's is torn, and an
  // unrelated JSON file sits beside them.
  write_bytes(dir / "step-00000002.json",
              {'{', '"', 'f', 'o', 'r', 'm', 'a', 't', '"', ':', '1', '}'});
  const auto torn = read_bytes(dir / "step-00000003.json");
  write_bytes(dir / "step-00000003.json", {torn.begin(), torn.begin() + 40});
  std::ofstream(dir / "settings.json") << "{\"lr\": 1}";

  std::vector<train::SkippedCheckpoint> skipped;
  const auto listed = train::list_checkpoints(dir, &skipped);
  REQUIRE(listed.size() == 2);
  CHECK(listed[0].second == dir / "step-00000001");
  CHECK(listed[1].second == dir / "step-00000004");
  REQUIRE(skipped.size() == 2);
  std::sort(skipped.begin(), skipped.end(),
            [](const auto& a, const auto& b) { return a.manifest < b.manifest; });
  CHECK(skipped[0].manifest == dir / "step-00000002.json");
  CHECK_THAT(skipped[0].reason, Catch::Contains("is not a mentor checkpoint"));
  CHECK(skipped[1].manifest == dir / "step-00000003.json");
  CHECK_THAT(skipped[1].reason, Catch::Contains("is damaged or truncated"));
  CHECK(train::list_checkpoints(dir).size() == 2);  // without a report, too

  const auto report = train::prune_checkpoints(dir, 1);
  CHECK(report.removed == std::vector<fs::path>{dir / "step-00000001"});
  CHECK(report.skipped.size() == 2);
  CHECK(!fs::exists(dir / "step-00000001.json"));
  CHECK(fs::exists(dir / "step-00000002.json"));  // not ours to judge: left alone
  CHECK(fs::exists(dir / "step-00000003.json"));
  CHECK(fs::exists(dir / "settings.json"));
  // Saving keeps working in that folder (and warns about the bad ones).
  train_steps(trainer, model, 1, 5);
  trainer.save(dir, {}, Generator(1), {}, 1);
  CHECK(train::list_checkpoints(dir).size() == 1);
  CHECK(train::resolve_checkpoint(dir) == dir / "step-00000005");

  // A damaged `latest`: which checkpoint it meant is unknown, so nothing is pruned.
  write_bytes(dir / "latest", {'.', '.', '\n'});
  const auto cautious = train::prune_checkpoints(dir, 1);
  CHECK(cautious.removed.empty());
  REQUIRE(!cautious.skipped.empty());
  CHECK_THAT(cautious.skipped[0].reason, Catch::Contains("nothing pruned"));
  CHECK_THROWS_WITH(train::resolve_checkpoint(dir), Catch::Contains("is empty or damaged"));
}

TEST_CASE("resuming with other trainer options or config is an error naming each, unless allowed",
          "[checkpoint][options]") {
  const auto dir = scratch("options");
  Mlp<float> model(5, 7, 3, 1);
  train::Trainer<float> trainer(model, options());
  train_steps(trainer, model, 2, 5);
  trainer.save(dir, {}, Generator(1), {{"batch_size", 4}, {"data", {{"seed", 3}}}});

  train::TrainerOptions changed = options();
  changed.schedule = train::WarmupCosine{2e-2, 2, 20, 0.1};
  changed.max_grad_norm = 0.5;
  changed.accumulation_steps = 3;
  {
    Mlp<float> fresh(5, 7, 3, 77);
    const auto before = values(fresh);
    train::Trainer<float> t(fresh, changed);
    try {
      t.load(dir);
      FAIL("changed options must be refused");
    } catch (const Error& e) {
      const std::string message = e.what();
      INFO(message);
      CHECK(message.find("3 option(s) differ from the saved run") != std::string::npos);
      CHECK(message.find("schedule.peak: saved 0.01, given 0.02") != std::string::npos);
      CHECK(message.find("max_grad_norm: saved 1.0, given 0.5") != std::string::npos);
      CHECK(message.find("accumulation_steps: saved 1, given 3") != std::string::npos);
      CHECK(message.find("allow_option_changes") != std::string::npos);
    }
    CHECK(same_bytes(values(fresh), before));
    CHECK(t.step_count() == 0);

    // Allowed by name (a prefix covers an object's leaves); the given options are kept.
    train::ResumeOptions allow;
    allow.allow_option_changes = {"schedule", "max_grad_norm"};
    CHECK_THROWS_WITH(t.load(dir, allow), Catch::Contains("1 option(s) differ") &&
                                              Catch::Contains("accumulation_steps"));
    allow.allow_option_changes.push_back("accumulation_steps");
    CHECK(t.load(dir, allow).step == 2);
    CHECK(t.options().accumulation_steps == 3);
    CHECK(t.next_lr() == train::lr_at(changed.schedule, 2));
    train::ResumeOptions any;
    any.allow_option_changes = {"*"};
    CHECK(t.load(dir, any).step == 2);
    // A new stage from these weights compares nothing.
    CHECK(t.load(dir, train::LoadMode::weights_only).step == 2);
  }
  // The caller's config, when given, is compared the same way ("config.<key>").
  Mlp<float> fresh(5, 7, 3, 77);
  train::Trainer<float> t(fresh, options());
  train::ResumeOptions with_config;
  with_config.config = {{"batch_size", 8}, {"data", {{"seed", 4}}}};
  CHECK_THROWS_WITH(t.load(dir, with_config),
                    Catch::Contains("2 option(s) differ") &&
                        Catch::Contains("config.batch_size: saved 4, given 8") &&
                        Catch::Contains("config.data.seed: saved 3, given 4"));
  with_config.allow_option_changes = {"config.batch_size", "config.data"};
  CHECK(t.load(dir, with_config).step == 2);
  with_config.config = {{"batch_size", 4}, {"data", {{"seed", 3}}}};
  with_config.allow_option_changes.clear();
  CHECK(t.load(dir, with_config).step == 2);
}

TEST_CASE("load_for_inference: one call from a trainer checkpoint to an eval-mode model",
          "[checkpoint][inference]") {
  const auto dir = scratch("inference");
  auto trained = tiny_mentor::model(5, 16);
  train::TrainerOptions options;
  options.schedule = train::WarmupCosine{5e-3, 1, 4, 0.1};
  train::Trainer<float> trainer(*trained, options);
  const auto batch =
      tiny_mentor::collate({tiny_mentor::dataset(16)->get(0), tiny_mentor::dataset(16)->get(1)});
  for (int i = 0; i < 2; ++i)
    trainer.step([&](int64_t) { return tiny_mentor::loss(*trained, batch); });
  trainer.save(dir, data::LoaderState{}, Generator(1), trained->config().to_json());

  SECTION("the weights, buffers and config are the trained model's; eval mode; same tokens") {
    auto loaded = train::load_for_inference<models::MentorModel<float>>(dir);
    CHECK_FALSE(loaded->training());
    CHECK(loaded->config().to_json() == trained->config().to_json());
    auto theirs = trained->state();
    auto ours = loaded->state();
    REQUIRE(ours.size() == theirs.size());
    for (size_t i = 0; i < ours.size(); ++i) {
      INFO(ours[i].first);
      CHECK(ours[i].first == theirs[i].first);
      CHECK(ours[i].second->to_vector() == theirs[i].second->to_vector());
    }
    trained->eval();
    auto prefix_a = trained->condition(batch.ids, batch.mask, batch.images);
    auto prefix_b = loaded->condition(batch.ids, batch.mask, batch.images);
    CHECK(generate::generate_greedy(loaded->gpt, prefix_b.embeddings, prefix_b.mask, 4, 3.0)
              .to_vector() ==
          generate::generate_greedy(trained->gpt, prefix_a.embeddings, prefix_a.mask, 4, 3.0)
              .to_vector());
  }
  SECTION("another architecture is refused, naming the tensors that do not fit") {
    REQUIRE_THROWS_WITH(train::load_for_inference<models::GPT<float>>(dir, "gpt"),
                        Catch::Contains("does not hold this architecture") &&
                            Catch::Contains("multimodal_encoder."));
  }
  SECTION("a checkpoint without a model config is refused") {
    const auto bare = scratch("inference_bare");
    trainer.save(bare, data::LoaderState{}, Generator(1));
    REQUIRE_THROWS_WITH(train::load_for_inference<models::MentorModel<float>>(bare),
                        Catch::Contains("no model configuration") && Catch::Contains("config"));
  }
  SECTION("a config that disagrees with the saved weights is refused before reading") {
    const auto lying = scratch("inference_lying");
    nlohmann::json config = trained->config().to_json();
    config["gpt"]["n_layer"] = 3;
    trainer.save(lying, data::LoaderState{}, Generator(1), config);
    REQUIRE_THROWS_WITH(
        train::load_for_inference<models::MentorModel<float>>(lying),
        Catch::Contains("does not hold this architecture") && Catch::Contains("layers.2."));
  }
}

}  // namespace test_checkpoint
