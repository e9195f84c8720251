// examples/train, run as a user runs it on configs/ci.json: every stage (tokenizer, VQ with
// PatchGAN, CLIP + T5 contrastive, decoder, stage 1, stage 2) for a few dozen steps. Checked: each
// stage's loss falls by the margin stated below (first logged records against the last), each
// stage's products and pictures exist, examples/generate draws a picture with the trained model,
// a killed run (SIGKILL at several points, each in another stage) resumed with the same command
// ends with byte-identical weights and identical metrics to the uninterrupted run, and an unknown
// config key is an error naming it.
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <iterator>
#include <nlohmann/json.hpp>
#include <string>
#include <thread>
#include <vector>

#include "catch.hpp"
#include "mentor/data/image.hpp"

namespace test_train_program {

namespace fs = std::filesystem;
using json = nlohmann::json;

namespace {

const std::string kConfig = std::string(MENTOR_SOURCE_DIR) + "/configs/ci.json";

fs::path scratch(const std::string& name) {
  const fs::path dir = fs::path(MENTOR_BINARY_DIR) / "tests" /
                       ("train_program." + name + "." + std::to_string(getpid()));
  fs::remove_all(dir);
  fs::create_directories(dir);
  return dir;
}

std::string read_file(const fs::path& path) {
  std::ifstream in(path, std::ios::binary);
  return {std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
}

struct Result {
  int status = -1;
  std::string output;
};

std::string train_command(const fs::path& out, const std::string& extra = "") {
  return std::string(MENTOR_TRAIN_PROGRAM) + " --config " + kConfig + " --out " + out.string() +
         " --threads 1 " + extra;
}

Result run(const std::string& command) {
  Result r;
  FILE* pipe = popen((command + " 2>&1").c_str(), "r");
  REQUIRE(pipe != nullptr);
  char buffer[4096];
  while (size_t n = fread(buffer, 1, sizeof buffer, pipe)) r.output.append(buffer, n);
  const int status = pclose(pipe);
  r.status = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
  return r;
}

// Every record of a stage's metrics.jsonl.
std::vector<json> metrics(const fs::path& out, const std::string& stage) {
  std::ifstream in(out / stage / "metrics.jsonl");
  std::vector<json> records;
  for (std::string line; std::getline(in, line);)
    if (!line.empty()) records.push_back(json::parse(line));
  return records;
}

double mean_of(const std::vector<json>& records, size_t first, size_t count, const char* key) {
  double sum = 0;
  for (size_t i = first; i < first + count; ++i) sum += records.at(i).at(key).get<double>();
  return sum / double(count);
}

// The uninterrupted run, once per process.
const fs::path& full_run() {
  static const fs::path out = [] {
    const fs::path dir = scratch("full");
    const auto started = std::chrono::steady_clock::now();
    const Result r = run(train_command(dir));
    const double seconds =
        std::chrono::duration<double>(std::chrono::steady_clock::now() - started).count();
    INFO(r.output);
    REQUIRE(r.status == 0);
    std::cout << "test_train_program: configs/ci.json, every stage, in " << seconds
              << " s (1 thread)\n";
    return dir;
  }();
  return out;
}

// Lines of metrics without their wall-clock "time".
std::vector<json> without_time(std::vector<json> records) {
  for (json& r : records) r.erase("time");
  return records;
}

}  // namespace

TEST_CASE("train: configs/ci.json runs every stage and each stage's loss falls",
          "[examples][train]") {
  const fs::path& out = full_run();
  // Stage, key, the drop of the mean of the last three records below the first three's, as a
  // fraction of the first (24 steps from random or earlier-stage weights).
  struct Expect {
    const char* stage;
    const char* key;
    double drop;
  };
  for (const Expect& e : {Expect{"vq", "rec_loss", 0.05}, Expect{"clip", "loss", 0.05},
                          Expect{"decoder", "loss", 0.2}, Expect{"stage1", "loss", 0.05},
                          Expect{"stage2", "loss", 0.05}}) {
    const std::vector<json> records = metrics(out, e.stage);
    INFO(e.stage << " has " << records.size() << " records");
    REQUIRE(records.size() >= 6);
    const double first = mean_of(records, 0, 3, e.key);
    const double last = mean_of(records, records.size() - 3, 3, e.key);
    INFO(e.stage << "." << e.key << ": first " << first << ", last " << last);
    CHECK(last < first * (1.0 - e.drop));
    CHECK(fs::exists(out / e.stage / "done.json"));
    if (std::string(e.stage) != "clip")  // CLIP logs held-out retrieval instead of pictures
      CHECK(fs::exists(out / e.stage / "samples" / "latest.png"));
  }
  CHECK(fs::exists(out / "tokenizer" / "spiece.model"));
  CHECK(fs::exists(out / "vq" / "vq.safetensors"));
  CHECK(fs::exists(out / "clip" / "towers.safetensors"));
  // The MENTOR stages score the SynthBench subset at their last step.
  const json last = metrics(out, "stage2").back();
  CHECK(last.contains("synthbench_cp_pf"));
  CHECK(last.at("synthbench_cp_pf").get<double>() >= 0.0);
  // The sample grid: rows of (references, target, sample) tiles of the world's resolution.
  const mentor::data::Image grid =
      mentor::data::load_image(out / "stage2" / "samples" / "latest.png", 3);
  CHECK(grid.width == 2 + 4 * (32 + 2));
}

TEST_CASE("train: examples/generate draws with the trained model", "[examples][train]") {
  const fs::path& out = full_run();
  const fs::path dir = scratch("generate");
  // A reference: the first held-out segmentation grid's first tile is not needed; any picture
  // of the world's resolution does.
  mentor::data::Image reference(32, 32, 3);
  for (size_t i = 0; i < reference.data.size(); ++i)
    reference.data[i] = static_cast<uint8_t>(i % 3 == 0 ? 200 : 30);
  mentor::data::save_png(reference, dir / "reference.png");
  const Result r = run(std::string(MENTOR_GENERATE_PROGRAM) + " --checkpoint " +
                       (out / "stage2" / "model").string() + " --vq " +
                       (out / "vq" / "vq.safetensors").string() + " --tokenizer " +
                       (out / "tokenizer" / "spiece.model").string() +
                       " --prompt 'The circle in <image>.\na small circle on a blue background.'"
                       " --image " +
                       (dir / "reference.png").string() + " --out " + (dir / "png").string());
  INFO(r.output);
  REQUIRE(r.status == 0);
  const mentor::data::Image image = mentor::data::load_image(dir / "png" / "0000-seed0.png", 3);
  CHECK(image.width == 32);
  CHECK(image.height == 32);
}

TEST_CASE("train: killed in several stages and rerun, it ends bit-identical", "[examples][train]") {
  const fs::path& full = full_run();
  const fs::path out = scratch("killed");
  // Kill when each of these files first appears (inside the VQ, CLIP, stage-1 and stage-2 loops,
  // and while stage 1's targets are being encoded), then rerun the same command.
  const std::vector<fs::path> kill_at = {
      out / "vq" / "checkpoints" / "latest", out / "clip" / "checkpoints" / "latest",
      out / "decoder" / "done.json", out / "stage1" / "checkpoints" / "latest",
      out / "stage2" / "checkpoints" / "latest"};
  int kills = 0;
  for (const fs::path& marker : kill_at) {
    const pid_t child = fork();
    REQUIRE(child >= 0);
    if (child == 0) {
      const std::string command = train_command(out) + " > /dev/null 2>&1";
      execl("/bin/sh", "sh", "-c", ("exec " + command).c_str(), static_cast<char*>(nullptr));
      _exit(127);
    }
    int status = 0;
    bool exited = false;
    while (!fs::exists(marker)) {
      if (waitpid(child, &status, WNOHANG) == child) {
        exited = true;
        break;
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(20));
    }
    if (!exited) {
      kill(child, SIGKILL);
      waitpid(child, &status, 0);
      ++kills;
    }
  }
  CHECK(kills >= 4);
  const Result r = run(train_command(out));
  INFO(r.output);
  REQUIRE(r.status == 0);
  for (const char* file : {"vq/vq.safetensors", "clip/towers.safetensors",
                           "decoder/model/model.safetensors", "stage1/model/model.safetensors",
                           "stage2/model/model.safetensors", "tokenizer/spiece.model"}) {
    INFO(file);
    CHECK(read_file(out / file) == read_file(full / file));
  }
  for (const char* stage : {"vq", "clip", "decoder", "stage1", "stage2"}) {
    INFO(stage);
    CHECK(without_time(metrics(out, stage)) == without_time(metrics(full, stage)));
  }
}

TEST_CASE("train: an unknown config key is an error naming it", "[examples][train]") {
  const fs::path out = scratch("bad");
  const Result r = run(train_command(out, "--set stage1.stepz=3"));
  CHECK(r.status == 1);
  CHECK(r.output.find("stepz") != std::string::npos);
  const Result stage = run(train_command(out, "--stage stage3"));
  CHECK(stage.status != 0);
  CHECK(stage.output.find("stage3") != std::string::npos);
}

}  // namespace test_train_program
