// mentor-verify: checks mentor's modules against fixtures written by the upstream code.
//   mentor-verify [--device cpu|cuda] [--dtype float32|bfloat16] PATH...
// PATH is a fixture .safetensors file or a folder searched recursively for them (each file's
// configs.json lies beside it), e.g. ../shared/fixtures (upstream/ and mentor/ together),
// ../shared/fixtures/mentor, or ../shared/fixtures/mentor/mentor_mm_s0.safetensors.
// Prints each compared tensor's relative error; exits 0 only if every comparison is within
// tolerance.
#include <CLI/CLI.hpp>
#include <algorithm>
#include <filesystem>
#include <iostream>

#include "verify/verify_all.hpp"

namespace fs = std::filesystem;
using namespace mentor;

int main(int argc, char** argv) {
  CLI::App app{"Verify mentor's modules and the MENTOR composition against upstream fixture files"};
  std::vector<std::string> paths;
  std::string device = "cpu", dtype = "float32";
  app.add_option("paths", paths, "fixture files or folders")->required();
  app.add_option("--device", device, "cpu or cuda")->check(CLI::IsMember({"cpu", "cuda"}));
  app.add_option("--dtype", dtype, "float32 or bfloat16")
      ->check(CLI::IsMember({"float32", "bfloat16"}));
  CLI11_PARSE(app, argc, argv);

  std::vector<fs::path> files;
  for (const auto& p : paths) {
    if (fs::is_directory(p)) {
      for (const auto& entry : fs::recursive_directory_iterator(p))
        if (entry.is_regular_file() && entry.path().extension() == ".safetensors")
          files.push_back(entry.path());
    } else if (fs::exists(p)) {
      files.push_back(p);
    } else {
      std::cerr << "mentor-verify: no such file or folder: " << p << "\n";
      return 2;
    }
  }
  std::sort(files.begin(), files.end());
  if (files.empty()) {
    std::cerr << "mentor-verify: no .safetensors fixture files found\n";
    return 2;
  }
  int failed = 0;
  for (const auto& file : files) {
    try {
      nlohmann::json configs = verify::load_fixture_configs(file.parent_path());
      verify::VerifyReport report;
      if (device == "cpu" && dtype == "float32")
        report = verify::verify_fixture<float, CPU>(file, configs);
      else if (device == "cpu")
        report = verify::verify_fixture<bf16, CPU>(file, configs);
      else if (dtype == "float32")
        report = verify::verify_fixture<float, CUDA>(file, configs);
      else
        report = verify::verify_fixture<bf16, CUDA>(file, configs);
      report.print(std::cout);
      failed += !report.pass();
    } catch (const std::exception& e) {
      std::cout << file.string() << "\n  ERROR " << e.what() << "\n  => FAIL\n";
      ++failed;
    }
  }
  std::cout << files.size() - failed << " passed, " << failed << " failed\n";
  return failed ? 1 : 0;
}
