// Every file in the upstream fixture folder through the verifiers that mentor-verify runs.
#include <cstdlib>
#include <filesystem>

#include "catch.hpp"
#include "mentor/models/verify_all.hpp"

namespace fs = std::filesystem;
using namespace mentor;

static fs::path fixture_dir() {
  if (const char* env = std::getenv("MENTOR_FIXTURES")) return env;
  return MENTOR_FIXTURES_DIR;
}

TEST_CASE("every upstream fixture file verifies on the CPU in float32", "[models][fixtures]") {
  fs::path dir = fixture_dir();
  if (!fs::is_directory(dir) || !fs::exists(dir / "configs.json")) {
    WARN("upstream fixtures not found at " << dir.string() << ": skipped");
    return;
  }
  nlohmann::json configs = models::load_fixture_configs(dir);
  int files = 0;
  for (const auto& entry : fs::directory_iterator(dir)) {
    if (entry.path().extension() != ".safetensors") continue;
    ++files;
    models::VerifyReport report = models::verify_fixture<float, CPU>(entry.path(), configs);
    std::ostringstream text;
    report.print(text);
    INFO(text.str());
    CHECK(report.pass());
    CHECK(report.comparisons.size() > 3);
  }
  CHECK(files > 0);
}

TEST_CASE("mentor-verify's dispatch names what it cannot verify", "[models][fixtures][errors]") {
  nlohmann::json configs = {{"llamagen_gpt_c2i", nlohmann::json::object()}};
  REQUIRE(models::fixture_config_key("llamagen_gpt_c2i_s12.safetensors") == "llamagen_gpt_c2i");
  auto verify_unknown = [&] {
    return models::verify_fixture<float, CPU>("unknown_model_s0.safetensors", configs);
  };
  REQUIRE_THROWS_WITH(verify_unknown(), Catch::Contains("unknown_model"));
}
