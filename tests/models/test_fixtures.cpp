// Every fixture file through the verifiers that mentor-verify runs: the upstream modules
// (../shared/fixtures/upstream) and the MENTOR composition (../shared/fixtures/mentor), in float32
// and bf16; the rule that fixtures are required; the completeness rule of the verifiers; and the
// <image> placeholder splice in mentor's mode (error) and upstream's (truncation across samples).
//
// Fixtures are REQUIRED: a missing folder or a file of the READMEs' tables fails these tests.
// MENTOR_FIXTURES=skip skips them (for machines without the shared folder; CI never sets it);
// MENTOR_FIXTURES=/some/dir uses /some/dir/upstream and /some/dir/mentor (tests/fixture_files.hpp).
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <regex>
#include <set>
#include <sstream>

#include "catch.hpp"
#include "fixture_files.hpp"
#include "verify/verify_all.hpp"

namespace test_fixtures {

namespace fs = std::filesystem;
using namespace mentor;

namespace {

#ifdef MENTOR_CATCH3
auto has_text(const std::string& text) { return Catch::Matchers::ContainsSubstring(text); }
#else
auto has_text(const std::string& text) { return Catch::Contains(text); }
#endif

std::string printed(const verify::VerifyReport& report) {
  std::ostringstream text;
  report.print(text);
  return text.str();
}

// The fixture files named in the first column of a README's tables, `name_s{0,1}` expanded.
std::set<std::string> readme_files(const fs::path& readme) {
  std::ifstream in(readme);
  std::set<std::string> files;
  static const std::regex row(R"(^\| `([a-z0-9_]+?)(?:_s\{([0-9,]+)\}|(_s[0-9]+))` \|)");
  std::string line;
  while (std::getline(in, line)) {
    std::smatch m;
    if (!std::regex_search(line, m, row)) continue;
    if (m[3].matched) {
      files.insert(m[1].str() + m[3].str() + ".safetensors");
    } else {
      std::stringstream seeds(m[2].str());
      std::string seed;
      while (std::getline(seeds, seed, ','))
        files.insert(m[1].str() + "_s" + seed + ".safetensors");
    }
  }
  return files;
}

std::set<std::string> listed_safetensors(const std::vector<std::string>& required) {
  std::set<std::string> out;
  for (const auto& name : required)
    if (fs::path(name).extension() == ".safetensors") out.insert(name);
  return out;
}

// Sets MENTOR_FIXTURES for one scope.
struct FixtureEnv {
  explicit FixtureEnv(const std::string& value) {
    if (const char* old = std::getenv("MENTOR_FIXTURES")) saved = old;
    had = std::getenv("MENTOR_FIXTURES") != nullptr;
    ::setenv("MENTOR_FIXTURES", value.c_str(), 1);
  }
  ~FixtureEnv() {
    if (had)
      ::setenv("MENTOR_FIXTURES", saved.c_str(), 1);
    else
      ::unsetenv("MENTOR_FIXTURES");
  }
  std::string saved;
  bool had = false;
};

}  // namespace

TEST_CASE("the fixture READMEs' files are all present, and the tests require exactly those",
          "[models][fixtures]") {
  MENTOR_FIXTURE_TEST_OR_SKIP();
  const fs::path upstream = test::fixtures_dir("upstream"),
                 mentor_dir = test::fixtures_dir("mentor");
  CHECK(readme_files(upstream / "README.md") ==
        listed_safetensors(test::required_upstream_fixtures()));
  CHECK(readme_files(mentor_dir / "README.md") ==
        listed_safetensors(test::required_mentor_fixtures()));
  CHECK(readme_files(upstream / "README.md").size() == 7);
}

TEST_CASE("a missing fixture folder or file fails instead of skipping", "[models][fixtures]") {
  const fs::path root = fs::temp_directory_path() / "mentor_test_fixtures_missing";
  fs::remove_all(root);
  fs::create_directories(root / "mentor");
  {
    FixtureEnv env(root.string());
    REQUIRE_FALSE(test::fixtures_skipped());
    REQUIRE_THROWS_WITH(test::fixtures_dir("upstream"), has_text("upstream is missing"));
    // The folder exists but a listed file does not.
    std::ofstream(root / "mentor" / "configs.json") << "{}";
    std::ofstream(root / "mentor" / "README.md") << "";
    REQUIRE_THROWS_WITH(test::fixtures_dir("mentor"),
                        has_text("mentor_mm_s0.safetensors is missing"));
  }
  {
    FixtureEnv env("skip");
    CHECK(test::fixtures_skipped());
  }
  fs::remove_all(root);
}

TEST_CASE("every upstream fixture file verifies on the CPU in float32", "[models][fixtures]") {
  MENTOR_FIXTURE_TEST_OR_SKIP();
  const fs::path dir = test::fixtures_dir("upstream");
  nlohmann::json configs = verify::load_fixture_configs(dir);
  // Every listed file (fixtures_dir checked that they exist) and any other one in the folder.
  std::set<fs::path> files;
  for (const auto& name : listed_safetensors(test::required_upstream_fixtures()))
    files.insert(dir / name);
  for (const auto& entry : fs::directory_iterator(dir))
    if (entry.path().extension() == ".safetensors") files.insert(entry.path());
  for (const fs::path& path : files) {
    verify::VerifyReport report = verify::verify_fixture<float, CPU>(path, configs);
    INFO(printed(report));
    CHECK(report.pass());
    CHECK(report.comparisons.size() > 3);
  }
}

TEST_CASE("the MENTOR composition verifies against MENTOR's own code (float32)",
          "[models][fixtures][mentor]") {
  MENTOR_FIXTURE_TEST_OR_SKIP();
  const fs::path dir = test::fixtures_dir("mentor");
  nlohmann::json configs = verify::load_fixture_configs(dir);
  verify::VerifyReport report =
      verify::verify_fixture<float, CPU>(dir / "mentor_mm_s0.safetensors", configs);
  std::cout << printed(report);
  INFO(printed(report));
  for (const auto& c : report.comparisons) {
    INFO(c.name << ": " << c.error << " (tol " << c.tolerance << ")");
    CHECK(c.pass());
  }
  CHECK(report.not_compared.empty());
  // The README's counts: 44 stage-2 and 28 stage-1 gradients, 14 outputs, 2 trainable-set checks.
  int grads = 0, grads1 = 0, outputs = 0;
  for (const auto& c : report.comparisons) {
    grads += c.name.rfind("grad.", 0) == 0;
    grads1 += c.name.rfind("grad1.", 0) == 0;
    outputs += c.name.rfind("out.", 0) == 0;
  }
  CHECK(grads == 44);
  CHECK(grads1 == 28);
  CHECK(outputs == 14);
  CHECK(report.comparisons.size() == 44 + 28 + 14 + 2);
  REQUIRE(report.pass());
}

// bf16 bounds: verify.hpp (default_tolerances, t5_tolerances). Greedy tokens are generated and
// reported, not required. (The VQ's code indices are an argmin: not a bf16 target.)
TEST_CASE("the MENTOR composition, the GPT, T5 and CLIP verify in bf16 on the CPU",
          "[models][fixtures][bf16]") {
  MENTOR_FIXTURE_TEST_OR_SKIP();
  const std::vector<std::pair<std::string, std::string>> files = {
      {"mentor", "mentor_mm_s0.safetensors"},
      {"upstream", "llamagen_gpt_c2i_s0.safetensors"},
      {"upstream", "llamagen_gpt_t2i_s0.safetensors"},
      {"upstream", "hf_t5enc_s0.safetensors"},
      {"upstream", "hf_clipvis_s0.safetensors"}};
  for (const auto& [set, name] : files) {
    const fs::path dir = test::fixtures_dir(set);
    verify::VerifyReport report =
        verify::verify_fixture<bf16, CPU>(dir / name, verify::load_fixture_configs(dir));
    std::cout << printed(report);
    INFO(printed(report));
    CHECK(report.pass());
  }
}

TEST_CASE("verifiers fail on a file key they did not compare or use", "[models][fixtures]") {
  const fs::path path = fs::temp_directory_path() / "mentor_test_fixtures_coverage.safetensors";
  io::SafeTensorsWriter writer;
  writer.add("w.weight", {1}, std::vector<float>{1});
  writer.add("in.x", {1}, std::vector<float>{1});
  writer.add("out.y", {1}, std::vector<float>{2});
  writer.add("grad.weight", {1}, std::vector<float>{3});
  writer.add("grad1.weight", {1}, std::vector<float>{3});
  writer.write(path.string());
  const io::SafeTensorsFile file = io::SafeTensorsFile::open(path.string());

  verify::VerifyReport report;
  report.comparisons.push_back({"out.y", 0, 1e-5, false});
  report.comparisons.push_back({"grad.weight (~0: error / |all grads|)", 0, 1e-6, false});
  verify::check_coverage(report, file);
  REQUIRE_FALSE(report.pass());
  std::vector<std::string> unchecked;
  for (const auto& c : report.comparisons)
    if (!c.pass()) unchecked.push_back(c.name.substr(0, c.name.find(' ')));
  CHECK(unchecked == std::vector<std::string>{"grad1.weight", "in.x"});

  // Used, or listed as not compared with a reason: complete.
  report.comparisons.resize(2);
  report.inputs_used.push_back("in.x");
  report.not_compared.emplace_back("grad1.weight", "a reason");
  verify::check_coverage(report, file);
  CHECK(report.pass());
  fs::remove(path);
}

// README "Upstream behaviour" 1, on the fixture's own inputs and projected patches: with the last
// 4 placeholders of sample 0 removed there are 44 placeholders for 48 feature rows.
TEST_CASE("the <image> splice: mentor's error and upstream's cross-sample truncation",
          "[models][fixtures][mentor]") {
  MENTOR_FIXTURE_TEST_OR_SKIP();
  const fs::path path = test::fixture_file("mentor", "mentor_mm_s0.safetensors");
  const io::SafeTensorsFile file = io::SafeTensorsFile::open(path.string());
  const int64_t image_token = test::fixture_config("mentor", "mentor_mm")
                                  .at("tokenizer")
                                  .at("image_token_id")
                                  .get<int64_t>();
  const Tensor<float> projected = nn::load_tensor<float>(file, "out.projected");  // [3, 16, C]
  const Tensor<float> embeds = nn::load_tensor<float>(file, "out.t5_inputs_embeds");
  std::vector<int64_t> ids = nn::load_tensor<int64_t>(file, "in.input_ids").to_vector();
  const int64_t length = file.info("in.input_ids").shape.at(1);
  const int64_t channels = projected.size(2), patches = projected.size(1);
  REQUIRE(patches == 16);

  // The full prompts reproduce the fixture's splice exactly.
  const Tensor<int64_t> full = Tensor<int64_t>::from_vector(ids, Shape{2, length});
  CHECK(verify::relative_error(models::splice_image_features(embeds, full, projected, image_token),
                               embeds) == 0);

  std::vector<int64_t> sample0;
  for (int64_t t = 0; t < length; ++t)
    if (ids[static_cast<size_t>(t)] == image_token) sample0.push_back(t);
  REQUIRE(sample0.size() == 16);
  for (size_t k = 12; k < 16; ++k) ids[static_cast<size_t>(sample0[k])] = 3;  // "The"
  const Tensor<int64_t> cut = Tensor<int64_t>::from_vector(ids, Shape{2, length});

  REQUIRE_THROWS_WITH(models::splice_image_features(embeds, cut, projected, image_token),
                      has_text("44 <image> placeholders") && has_text("per sample: 12, 32") &&
                          has_text("48 feature rows"));

  const Tensor<float> spliced = models::splice_image_features(
      embeds, cut, projected, image_token, models::PlaceholderMismatch::TruncateLikeUpstream);
  const std::vector<float> out = spliced.to_vector(), rows = projected.to_vector(),
                           base = embeds.to_vector();
  auto row_equals = [&](const std::vector<float>& a, int64_t ra, const std::vector<float>& b,
                        int64_t rb) {
    for (int64_t c = 0; c < channels; ++c)
      if (a[static_cast<size_t>(ra * channels + c)] != b[static_cast<size_t>(rb * channels + c)])
        return false;
    return true;
  };
  // Sample 0 keeps its first 12 patches; the removed slots keep their (here: fixture) embedding.
  for (size_t k = 0; k < 12; ++k) CHECK(row_equals(out, sample0[k], rows, static_cast<int64_t>(k)));
  for (size_t k = 12; k < 16; ++k) CHECK(row_equals(out, sample0[k], base, sample0[k]));
  // Sample 1's k-th placeholder gets flat row 12 + k: its first is sample 0's 13th patch, and
  // the last 4 patches of its second image (rows 44..47) are dropped.
  int64_t k = 0;
  for (int64_t t = 0; t < length; ++t) {
    if (ids[static_cast<size_t>(length + t)] != image_token) continue;
    CHECK(row_equals(out, length + t, rows, 12 + k));
    ++k;
  }
  CHECK(k == 32);
  // More placeholders than rows stays an error in both modes (upstream raises too).
  CHECK_THROWS_WITH(
      models::splice_image_features(embeds, full, projected.narrow(0, 0, 2), image_token,
                                    models::PlaceholderMismatch::TruncateLikeUpstream),
      has_text("48 <image> placeholders"));
}

TEST_CASE("the mentor fixture's configuration comes from configs.json",
          "[models][fixtures][mentor]") {
  MENTOR_FIXTURE_TEST_OR_SKIP();
  nlohmann::json j = test::fixture_config("mentor", "mentor_mm");
  models::MentorConfig c = verify::mentor_fixture_config(j);
  CHECK(c.gpt.cls_token_num == j.at("gpt").at("cls_token_num").get<int64_t>());
  CHECK(c.encoder.image_token_id == 100);
  CHECK(c.encoder.text.d_model == 32);
  CHECK(c.gpt.caption_dim == 32);
  // A changed entry is used, not ignored; an inconsistent one is an error naming the key.
  j["gpt"]["cls_token_num"] = 64;
  CHECK(verify::mentor_fixture_config(j).gpt.cls_token_num == 64);
  j["gpt"].erase("rope_prefix");
  CHECK_THROWS_WITH(verify::mentor_fixture_config(j), has_text("'rope_prefix'"));
}

TEST_CASE("mentor-verify's dispatch names what it cannot verify", "[models][fixtures][errors]") {
  nlohmann::json configs = {{"llamagen_gpt_c2i", nlohmann::json::object()}};
  REQUIRE(verify::fixture_config_key("llamagen_gpt_c2i_s12.safetensors") == "llamagen_gpt_c2i");
  REQUIRE(verify::fixture_config_key("mentor_mm_s3.safetensors") == "mentor_mm");
  auto verify_unknown = [&] {
    return verify::verify_fixture<float, CPU>("unknown_model_s0.safetensors", configs);
  };
  REQUIRE_THROWS_WITH(verify_unknown(), has_text("unknown_model"));
}

}  // namespace test_fixtures
