// examples/generate, run as a user runs it: tiny random MENTOR, LlamaGen c2i and t2i models and
// VQs saved the ways a user's files come (a mentor training checkpoint; safetensors + a config
// JSON), reference PNGs, and the SentencePiece model of the text_spm_models fixture (trained by
// spm_train). The program's exit status, its messages and the files it writes are checked:
// reproducibility (the same bytes for the same seed, whatever the batch; --from-png gives the
// same bytes again), n samples and a grid, the metadata chunk read back and compared with hashes
// computed here, and each bad input of issue 10 item 5 giving a message and exit status 1.
#include <sys/wait.h>
#include <unistd.h>

#include <cstdio>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "catch.hpp"
#include "mentor/data/image.hpp"
#include "mentor/data/png_text.hpp"
#include "mentor/io/safetensors.hpp"
#include "mentor/models/gpt.hpp"
#include "mentor/models/mentor.hpp"
#include "mentor/models/vq.hpp"
#include "mentor/nn/state_dict.hpp"
#include "mentor/train/checkpoint.hpp"

namespace test_generate_program {

using namespace mentor;
using namespace mentor::models;
namespace fs = std::filesystem;
using json = nlohmann::json;

namespace {

#ifdef MENTOR_CATCH3
auto has_text(const std::string& text) { return Catch::Matchers::ContainsSubstring(text); }
#else
auto has_text(const std::string& text) { return Catch::Contains(text); }
#endif

constexpr int64_t kImageToken = 250;  // past the ~200 pieces of the fixture's tokenizer

std::string spm_model() { return std::string(MENTOR_BINARY_DIR) + "/tests/text_spm/t5like.model"; }

VQConfig tiny_vq() {
  VQConfig q;
  q.ch = 32;
  q.encoder_ch_mult = q.decoder_ch_mult = {1, 2};  // downsampling 2
  q.num_res_blocks = 1;
  q.z_channels = 32;
  q.codebook_size = 16;
  q.codebook_embed_dim = 4;
  q.codebook_usage_window = 64;
  return q;
}

MentorConfig tiny_mentor() {
  MentorConfig c;
  MultimodalEncoderConfig& e = c.encoder;
  e.vision.hidden_size = 16;
  e.vision.intermediate_size = 24;
  e.vision.num_hidden_layers = 3;
  e.vision.num_attention_heads = 2;
  e.vision.image_size = 16;
  e.vision.patch_size = 8;  // 4 placeholders per image
  e.text.vocab_size = 256;
  e.text.d_model = 12;
  e.text.d_kv = 4;
  e.text.d_ff = 20;
  e.text.num_layers = 2;
  e.text.num_heads = 3;
  e.text.relative_attention_num_buckets = 8;
  e.text.relative_attention_max_distance = 16;
  e.text.dropout_rate = 0.0;
  e.image_token_id = kImageToken;
  GPTConfig& g = c.gpt;
  g = GPTConfig{};
  g.dim = 32;
  g.n_layer = 2;
  g.n_head = 4;
  g.multiple_of = 16;
  g.vocab_size = 16;
  g.block_size = 16;  // 4x4 codes -> 8x8 pixels
  g.cls_token_num = 24;
  g.caption_dim = 12;
  g.model_type = GPTModelType::TextToImage;
  g.rope_prefix = RopePrefix::Identity;
  g.token_dropout_p = g.resid_dropout_p = g.ffn_dropout_p = 0.0;
  c.vq = tiny_vq();
  return c;
}

GPTConfig tiny_gpt(GPTModelType type, int64_t cls_token_num) {
  GPTConfig g;
  g.dim = 32;
  g.n_layer = 2;
  g.n_head = 4;
  g.multiple_of = 16;
  g.vocab_size = 16;
  g.block_size = 16;
  g.model_type = type;
  g.num_classes = 10;
  g.cls_token_num = cls_token_num;
  g.caption_dim = 12;
  g.token_dropout_p = g.resid_dropout_p = g.ffn_dropout_p = 0.0;
  return g;
}

// Upstream zero-initialises the output head: random rows make the tokens depend on the seed
// through a distribution that is not uniform.
template <class Module>
void randomise_head(Module& gpt, uint64_t seed) {
  Generator gen(seed);
  gpt.output.weight = Tensor<float>::randn(gpt.output.weight.shape(), gen);
}

std::vector<uint8_t> read_bytes(const fs::path& path) {
  std::ifstream in(path, std::ios::binary);
  return {std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
}
void write_bytes(const fs::path& path, const std::vector<uint8_t>& bytes) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out.write(reinterpret_cast<const char*>(bytes.data()),
            static_cast<std::streamsize>(bytes.size()));
}
void write_text(const fs::path& path, const std::string& text) {
  std::ofstream out(path, std::ios::trunc);
  out << text;
}
std::string xxh64_of(const fs::path& path) {
  const std::vector<uint8_t> bytes = read_bytes(path);
  return train::hex64(train::xxh64(bytes.data(), bytes.size()));
}

void save_safetensors(nn::Module<float, CPU>& module, const fs::path& path) {
  io::SafeTensorsWriter writer;
  nn::add_state_dict(module, writer);
  writer.write(path.string());
}

data::Image random_image(int width, int height, uint64_t seed) {
  Generator gen(seed);
  const std::vector<float> noise =
      Tensor<float>::rand({static_cast<int64_t>(width) * height * 3}, gen, 0.f, 255.f).to_vector();
  data::Image image(width, height, 3);
  for (size_t i = 0; i < noise.size(); ++i) image.data[i] = static_cast<uint8_t>(noise[i]);
  return image;
}

// Every file the tests hand to the program, made once per test process in its own folder.
struct Files {
  fs::path dir, checkpoint, mentor_weights, mentor_config, vq, other_mentor_weights;
  fs::path c2i_weights, c2i_config, c2i_vq, vq_config;
  fs::path t2i_weights, t2i_config, caption;
  fs::path red, blue, big, corrupt, truncated, not_image, regular_file;

  Files() {
    dir = fs::path(MENTOR_BINARY_DIR) / "tests" / "generate_program" / std::to_string(::getpid());
    fs::remove_all(dir);
    fs::create_directories(dir);
    Generator gen(11);
    const MentorConfig config = tiny_mentor();
    MentorModel<float> model(config, gen);
    randomise_head(model.gpt, 12);
    // A training checkpoint as train::Trainer::save writes it: model.* tensors and the config.
    train::CheckpointWriter writer;
    writer.add_all("model.", model.state());
    writer.manifest()["step"] = 1;
    writer.manifest()["config"] = config.to_json();
    checkpoint = dir / "run";
    writer.commit(checkpoint, "step-00000001");
    // The same weights as a converted upstream file: safetensors + --config.
    mentor_weights = dir / "mentor.safetensors";
    {
      io::SafeTensorsWriter st;
      model.save(st);
      st.write(mentor_weights.string());
    }
    mentor_config = dir / "mentor.json";
    write_text(mentor_config, config.to_json().dump(1));
    vq = dir / "vq.safetensors";
    save_safetensors(model.vq, vq);
    {
      Generator other(99);
      MentorModel<float> different(config, other);
      randomise_head(different.gpt, 98);
      io::SafeTensorsWriter st;
      different.save(st);
      other_mentor_weights = dir / "other.safetensors";
      st.write(other_mentor_weights.string());
    }

    const GPTConfig c2i = tiny_gpt(GPTModelType::ClassToImage, 1);
    GPT<float> c2i_model(c2i, gen);
    randomise_head(c2i_model, 13);
    c2i_weights = dir / "c2i.safetensors";
    save_safetensors(c2i_model, c2i_weights);
    c2i_config = dir / "c2i.json";
    write_text(c2i_config, c2i.to_json().dump());
    VQModel<float> c2i_vq_model(tiny_vq(), gen);
    c2i_vq = dir / "c2i_vq.safetensors";
    save_safetensors(c2i_vq_model, c2i_vq);
    vq_config = dir / "vq.json";
    write_text(vq_config, tiny_vq().to_json().dump());

    // A t2i file with 6 uncond rows for a model of 10 condition slots (LlamaGen's 120 -> 512).
    GPT<float> t2i_model(tiny_gpt(GPTModelType::TextToImage, 6), gen);
    randomise_head(t2i_model, 14);
    t2i_weights = dir / "t2i.safetensors";
    save_safetensors(t2i_model, t2i_weights);
    t2i_config = dir / "t2i.json";
    write_text(t2i_config, tiny_gpt(GPTModelType::TextToImage, 10).to_json().dump());
    caption = dir / "caption.safetensors";
    {
      io::SafeTensorsWriter st;
      std::vector<float> features = Tensor<float>::randn({5 * 12}, gen).to_vector();
      std::vector<int64_t> mask = {1, 1, 1, 1, 0};
      st.add("caption", {5, 12}, std::span<const float>(features));
      st.add("attention_mask", {5}, std::span<const int64_t>(mask));
      st.write(caption.string());
    }

    red = dir / "red.png";
    blue = dir / "blue.png";
    big = dir / "big.png";
    data::save_png(random_image(20, 24, 1), red);
    data::save_png(random_image(17, 16, 2), blue);
    data::save_png(random_image(64, 64, 3), big);
    std::vector<uint8_t> bytes = read_bytes(big);
    truncated = dir / "truncated.png";
    write_bytes(truncated, std::vector<uint8_t>(bytes.begin(), bytes.begin() + bytes.size() / 2));
    corrupt = dir / "corrupt.png";
    for (size_t i = 40; i < bytes.size(); i += 7) bytes[i] ^= 0x5A;
    write_bytes(corrupt, bytes);
    not_image = dir / "notes.png";
    write_text(not_image, "this is a text file, not an image\n");
    regular_file = dir / "a_file";
    write_text(regular_file, "x");
  }
  ~Files() {
    std::error_code error;
    fs::remove_all(dir, error);
  }
};

const Files& files() {
  static const Files f;
  return f;
}

std::string q(const fs::path& path) { return "'" + path.string() + "'"; }

struct Result {
  int status = -1;
  std::string output;
};

// Runs the program with `args` (shell words), stdout and stderr together. A crash (a signal)
// fails the test here: bad input must end in a message and a non-zero exit status.
Result run(const std::string& args) {
  const std::string command = q(MENTOR_GENERATE_PROGRAM) + " " + args + " 2>&1";
  FILE* pipe = ::popen(command.c_str(), "r");
  REQUIRE(pipe != nullptr);
  Result r;
  char buffer[4096];
  for (size_t got; (got = std::fread(buffer, 1, sizeof buffer, pipe)) > 0;)
    r.output.append(buffer, got);
  const int raw = ::pclose(pipe);
  INFO(command << "\n" << r.output);
  REQUIRE(WIFEXITED(raw));
  r.status = WEXITSTATUS(raw);
  return r;
}

std::string mentor_args() {
  const Files& f = files();
  return "--checkpoint " + q(f.checkpoint) + " --tokenizer " + q(spm_model()) + " --vq " + q(f.vq);
}

const char* kPrompt = "a small red star <image> on a blue background";

fs::path out_dir(const std::string& name) { return files().dir / ("out-" + name); }

json metadata_of(const fs::path& png) {
  const auto texts = data::read_png_text(png);
  const auto text = data::find_png_text(texts, "mentor-generate");
  REQUIRE(text.has_value());
  return json::parse(*text);
}

// Expects a refusal: exit status 1 and a message holding every one of `parts`.
void expect_error(const std::string& args, const std::vector<std::string>& parts) {
  const Result r = run(args);
  INFO(args << "\n" << r.output);
  CHECK(r.status == 1);
  CHECK_THAT(r.output, has_text("generate: error: "));
  for (const std::string& part : parts) CHECK_THAT(r.output, has_text(part));
}

}  // namespace

TEST_CASE("generate program: help names the modes", "[generate_program]") {
  const Result r = run("--help");
  CHECK(r.status == 0);
  CHECK_THAT(r.output, has_text("--caption-features"));
  CHECK_THAT(r.output, has_text("does not run T5"));
  CHECK_THAT(r.output, has_text("--from-png"));
}

TEST_CASE("generate program: MENTOR samples, grid, metadata and reproducibility",
          "[generate_program]") {
  const Files& f = files();
  const fs::path a = out_dir("a");
  const Result first = run(mentor_args() + " --prompt '" + kPrompt + "' --image " + q(f.red) +
                           " --n 3 --seed 7 --out " + q(a));
  INFO(first.output);
  REQUIRE(first.status == 0);
  // Plain progress lines (the output is a pipe, not a terminal), ending at 3 x 16 tokens.
  CHECK_THAT(first.output, has_text("48/48"));
  CHECK_THAT(first.output, has_text("wrote 3 images and grid.png"));
  for (const char* name : {"0000-seed7.png", "0000-seed8.png", "0000-seed9.png", "grid.png"})
    CHECK(fs::exists(a / name));
  const data::Image sample = data::load_image(a / "0000-seed8.png");
  CHECK(sample.width == 8);
  CHECK(sample.height == 8);
  const data::Image grid = data::load_image(a / "grid.png");  // 2 x 2 cells, 2 px apart
  CHECK(grid.width == 18);
  CHECK(grid.height == 18);

  // The chunk parses back and names every parameter; the hashes are the files' own.
  const json m = metadata_of(a / "0000-seed8.png");
  CHECK(m["format"] == "mentor-generate");
  CHECK(m["seed"] == 8);
  CHECK(m["prompt"] == kPrompt);
  CHECK(m["cfg"] == 2.5);  // upstream MENTOR defaults
  CHECK(m["temperature"] == 0.9);
  CHECK(m["top_k"] == 5000);
  CHECK(m["top_p"] == 1.0);
  CHECK(m["min_p"] == 0.0);
  CHECK(m["cfg_interval"] == -1);
  CHECK(m["dtype"] == "float32");
  CHECK(m["device"] == "cpu");
  CHECK(m["tokens_cut"] == 0);
  CHECK(m["mentor_version"].is_string());
  CHECK_FALSE(m.contains("batch"));  // the CPU decoder's tokens do not depend on it
  REQUIRE(m["images"].size() == 1);
  CHECK(m["images"][0]["path"] == fs::absolute(f.red).lexically_normal().string());
  CHECK(m["images"][0]["xxh64"] == xxh64_of(f.red));
  CHECK(m["model"]["kind"] == "mentor");
  const fs::path data = f.checkpoint / "step-00000001.safetensors";
  CHECK(m["model"]["checkpoint"]["path"] == fs::absolute(data).lexically_normal().string());
  CHECK(m["model"]["checkpoint"]["xxh64"] == xxh64_of(data));
  CHECK(m["model"]["manifest"]["xxh64"] == xxh64_of(f.checkpoint / "step-00000001.json"));
  CHECK(m["model"]["tokenizer"]["xxh64"] == xxh64_of(spm_model()));
  CHECK(m["model"]["vq"]["xxh64"] == xxh64_of(f.vq));

  // Different seeds give different samples.
  CHECK(read_bytes(a / "0000-seed7.png") != read_bytes(a / "0000-seed8.png"));

  SECTION("the same seed gives the same bytes, at any batch and thread count") {
    const fs::path b = out_dir("b");
    const Result again = run(mentor_args() + " --prompt '" + kPrompt + "' --image " + q(f.red) +
                             " --n 3 --seed 7 --batch 1 --threads 1 --out " + q(b));
    REQUIRE(again.status == 0);
    for (const char* name : {"0000-seed7.png", "0000-seed8.png", "0000-seed9.png", "grid.png"})
      CHECK(read_bytes(a / name) == read_bytes(b / name));
    // One sample alone is the same as inside the run of three.
    const fs::path c = out_dir("c");
    REQUIRE(run(mentor_args() + " --prompt '" + kPrompt + "' --image " + q(f.red) +
                " --seed 8 --out " + q(c))
                .status == 0);
    CHECK(read_bytes(c / "0000-seed8.png") == read_bytes(a / "0000-seed8.png"));
  }

  SECTION("--from-png makes the same bytes again") {
    const fs::path d = out_dir("d");
    const Result again = run("--from-png " + q(a / "0000-seed9.png") + " --out " + q(d));
    INFO(again.output);
    REQUIRE(again.status == 0);
    CHECK(read_bytes(d / "0000-seed9.png") == read_bytes(a / "0000-seed9.png"));
    expect_error("--from-png " + q(a / "0000-seed9.png") + " --seed 3 --out " + q(d),
                 {"--from-png takes every parameter from the PNG", "--seed"});
    expect_error("--from-png " + q(a / "grid.png") + " --out " + q(d),
                 {"carries no \"mentor-generate\" text chunk"});
    expect_error("--from-png " + q(a / "0000-seed9.png") + " --out " + q(a),
                 {"would overwrite its own source"});
  }

  SECTION("the safetensors file + --config gives the same pixels as the checkpoint") {
    const fs::path e = out_dir("e");
    REQUIRE(run("--checkpoint " + q(f.mentor_weights) + " --config " + q(f.mentor_config) +
                " --tokenizer " + q(spm_model()) + " --vq " + q(f.vq) + " --prompt '" + kPrompt +
                "' --image " + q(f.red) + " --seed 8 --out " + q(e))
                .status == 0);
    CHECK(data::load_image(e / "0000-seed8.png").data == sample.data);
  }
}

TEST_CASE("generate program: --from-png refuses changed inputs", "[generate_program]") {
  const Files& f = files();
  const fs::path work = out_dir("changed");
  fs::create_directories(work);
  const fs::path weights = work / "mentor.safetensors", image = work / "ref.png";
  fs::copy_file(f.mentor_weights, weights, fs::copy_options::overwrite_existing);
  fs::copy_file(f.red, image, fs::copy_options::overwrite_existing);
  const std::string common = "--checkpoint " + q(weights) + " --config " + q(f.mentor_config) +
                             " --tokenizer " + q(spm_model()) + " --vq " + q(f.vq);
  REQUIRE(run(common + " --prompt '" + kPrompt + "' --image " + q(image) + " --seed 1 --out " +
              q(work / "first"))
              .status == 0);
  const fs::path png = work / "first" / "0000-seed1.png";
  REQUIRE(run("--from-png " + q(png) + " --out " + q(work / "second")).status == 0);
  CHECK(read_bytes(work / "second" / "0000-seed1.png") == read_bytes(png));

  fs::copy_file(f.blue, image, fs::copy_options::overwrite_existing);
  expect_error("--from-png " + q(png) + " --out " + q(work / "third"),
               {"the reference image", "differs from the one that made this image"});
  fs::copy_file(f.red, image, fs::copy_options::overwrite_existing);
  fs::copy_file(f.other_mentor_weights, weights, fs::copy_options::overwrite_existing);
  expect_error("--from-png " + q(png) + " --out " + q(work / "third"),
               {"the checkpoint", "differs from the one that made this image",
                "refusing to regenerate it from other weights"});
  fs::remove(weights);
  expect_error("--from-png " + q(png) + " --out " + q(work / "third"), {"no longer exists"});
}

TEST_CASE("generate program: bfloat16 through the op path", "[generate_program]") {
  const Files& f = files();
  const fs::path out = out_dir("bf16");
  const Result r = run(mentor_args() + " --prompt '" + kPrompt + "' --image " + q(f.red) +
                       " --dtype bfloat16 --seed 4 --out " + q(out));
  INFO(r.output);
  REQUIRE(r.status == 0);
  const json m = metadata_of(out / "0000-seed4.png");
  CHECK(m["dtype"] == "bfloat16");
  CHECK(m["batch"] == 1);
  REQUIRE(run("--from-png " + q(out / "0000-seed4.png") + " --out " + q(out_dir("bf16-again")))
              .status == 0);
  CHECK(read_bytes(out_dir("bf16-again") / "0000-seed4.png") == read_bytes(out / "0000-seed4.png"));
}

TEST_CASE("generate program: requests from a JSONL file", "[generate_program]") {
  const Files& f = files();
  const fs::path folder = out_dir("jsonl");
  fs::create_directories(folder);
  fs::copy_file(f.red, folder / "red.png", fs::copy_options::overwrite_existing);
  const fs::path requests = folder / "requests.jsonl";
  write_text(requests, std::string("{\"prompt\": \"") + kPrompt +
                           "\", \"images\": [\"red.png\"], \"seed\": 3, \"n\": 2}\n\n"
                           "{\"prompt\": \"a blue circle\", \"seed\": 5, \"cfg\": 1.0, "
                           "\"temperature\": 0.5, \"top_k\": 0}\n");
  const fs::path out = folder / "out";
  const Result r = run(mentor_args() + " --requests " + q(requests) + " --out " + q(out));
  INFO(r.output);
  REQUIRE(r.status == 0);
  for (const char* name : {"0000-seed3.png", "0000-seed4.png", "0001-seed5.png", "grid.png"})
    CHECK(fs::exists(out / name));
  const json m = metadata_of(out / "0001-seed5.png");
  CHECK(m["cfg"] == 1.0);
  CHECK(m["temperature"] == 0.5);
  CHECK(m["top_k"] == 0);
  CHECK(m["images"].empty());
  // A request's sample is the same alone and beside another (guided or not) request.
  const fs::path alone = folder / "alone";
  REQUIRE(run(mentor_args() + " --prompt '" + kPrompt + "' --image " + q(folder / "red.png") +
              " --seed 4 --out " + q(alone))
              .status == 0);
  CHECK(read_bytes(alone / "0000-seed4.png") == read_bytes(out / "0000-seed4.png"));

  write_text(requests, "{\"prompt\": \"a\"}\n{\"prompt\": \"b\", \"temprature\": 2}\n");
  expect_error(mentor_args() + " --requests " + q(requests) + " --out " + q(out),
               {"requests.jsonl line 2", "unknown key \"temprature\""});
  write_text(requests, "{\"prompt\": \"a\", \"seed\": -4}\n");
  expect_error(mentor_args() + " --requests " + q(requests) + " --out " + q(out),
               {"requests.jsonl line 1", "\"seed\" must be an integer >= 0"});
  write_text(requests, "{\"prompt\": \"a\"\n");
  expect_error(mentor_args() + " --requests " + q(requests) + " --out " + q(out),
               {"requests.jsonl line 1", "not a JSON object"});
  expect_error(mentor_args() + " --requests " + q(requests) + " --prompt x --out " + q(out),
               {"not both"});
}

TEST_CASE("generate program: LlamaGen class-conditional and t2i models", "[generate_program]") {
  const Files& f = files();
  const std::string c2i = "--checkpoint " + q(f.c2i_weights) + " --config " + q(f.c2i_config) +
                          " --vq " + q(f.c2i_vq) + " --vq-config " + q(f.vq_config);
  const fs::path out = out_dir("c2i");
  const Result r = run(c2i + " --class-label 3 --n 2 --out " + q(out));
  INFO(r.output);
  REQUIRE(r.status == 0);
  const json m = metadata_of(out / "0000-seed1.png");
  CHECK(m["class_label"] == 3);
  CHECK(m["model"]["kind"] == "llamagen-c2i");
  CHECK(m["cfg"] == 4.0);  // LlamaGen's c2i demo defaults
  CHECK(m["top_k"] == 2000);
  CHECK(read_bytes(out / "0000-seed0.png") != read_bytes(out / "0000-seed1.png"));
  // Greedy decoding takes no draw: two seeds give the same pixels.
  const fs::path greedy = out_dir("c2i-greedy");
  REQUIRE(run(c2i + " --class-label 5 --greedy --n 2 --out " + q(greedy)).status == 0);
  CHECK(data::load_image(greedy / "0000-seed0.png").data ==
        data::load_image(greedy / "0000-seed1.png").data);
  CHECK(metadata_of(greedy / "0000-seed1.png")["greedy"] == true);
  expect_error(c2i + " --out " + q(out), {"nothing to generate"});
  expect_error(c2i + " --class-label 10 --out " + q(out), {"class label 10 is outside [0, 10)"});
  expect_error(c2i + " --prompt 'a cat' --out " + q(out), {"takes --class-label, not a prompt"});

  const std::string t2i = "--checkpoint " + q(f.t2i_weights) + " --config " + q(f.t2i_config) +
                          " --vq " + q(f.c2i_vq) + " --vq-config " + q(f.vq_config);
  const Result grown =
      run(t2i + " --caption-features " + q(f.caption) + " --out " + q(out_dir("t2i")));
  INFO(grown.output);
  REQUIRE(grown.status == 0);
  CHECK_THAT(grown.output, has_text("has 6 rows and the model 10 condition slots"));
  const json t = metadata_of(out_dir("t2i") / "0000-seed0.png");
  CHECK(t["caption_features"]["xxh64"] == xxh64_of(f.caption));
  CHECK(t["cfg"] == 7.5);
  expect_error(t2i + " --prompt 'a cat' --out " + q(out), {"does not run T5 on text"});
  expect_error(t2i + " --caption-features " + q(f.red) + " --out " + q(out),
               {"caption features", "not readable"});
}

TEST_CASE("generate program: without --vq the token grids are written", "[generate_program]") {
  const Files& f = files();
  const fs::path out = out_dir("tokens");
  const Result r = run("--checkpoint " + q(f.checkpoint) + " --tokenizer " + q(spm_model()) +
                       " --prompt 'a red star' --seed 2 --out " + q(out));
  INFO(r.output);
  REQUIRE(r.status == 0);
  CHECK_THAT(r.output, has_text("no --vq given"));
  const io::SafeTensorsFile tokens =
      io::SafeTensorsFile::open((out / "0000-seed2.safetensors").string());
  CHECK(tokens.info("tokens").shape == std::vector<int64_t>{4, 4});
  for (int64_t t : tokens.read_as<int64_t>("tokens")) CHECK((t >= 0 && t < 16));
  CHECK(json::parse(tokens.metadata().at("mentor-generate"))["seed"] == 2);
}

TEST_CASE("generate program: bad input gives a message and exit status 1", "[generate_program]") {
  const Files& f = files();
  const std::string base = mentor_args() + " --out " + q(out_dir("bad"));
  const std::string prompt = std::string(" --prompt '") + kPrompt + "'";

  SECTION("reference images") {
    expect_error(base + prompt + " --image " + q(f.dir / "missing.png"),
                 {"reference image 1", "missing.png", "file not found"});
    expect_error(base + prompt + " --image " + q(f.corrupt),
                 {"corrupt.png", "not a decodable image"});
    expect_error(base + prompt + " --image " + q(f.truncated),
                 {"truncated.png", "not a decodable image"});
    expect_error(base + prompt + " --image " + q(f.not_image),
                 {"notes.png", "only PNG and JPEG are accepted"});
    expect_error(base + " --prompt 'a <image> and <image>' --image " + q(f.red),
                 {"2 <image> markers but 1 reference image"});
    expect_error(base + " --prompt 'no marker' --image " + q(f.red),
                 {"0 <image> markers but 1 reference image"});
  }
  SECTION("checkpoints") {
    expect_error("--checkpoint " + q(f.c2i_weights) + " --config " + q(f.mentor_config) +
                     " --tokenizer " + q(spm_model()) + prompt + " --image " + q(f.red) +
                     " --out " + q(out_dir("bad")),
                 {"cannot load the mentor model", "another architecture", "missing"});
    // A damaged byte in a training checkpoint.
    const fs::path copy = out_dir("damaged-run");
    fs::remove_all(copy);
    fs::copy(f.checkpoint, copy, fs::copy_options::recursive);
    const fs::path data = copy / "step-00000001.safetensors";
    std::vector<uint8_t> bytes = read_bytes(data);
    bytes[bytes.size() - 5] ^= 0xFF;
    write_bytes(data, bytes);
    expect_error("--checkpoint " + q(copy) + " --tokenizer " + q(spm_model()) + prompt +
                     " --image " + q(f.red) + " --out " + q(out_dir("bad")),
                 {"fails its integrity check", "damaged"});
    // A truncated safetensors file.
    bytes = read_bytes(f.mentor_weights);
    const fs::path cut = out_dir("bad-cut.safetensors");
    write_bytes(cut, std::vector<uint8_t>(bytes.begin(), bytes.begin() + bytes.size() / 3));
    expect_error("--checkpoint " + q(cut) + " --config " + q(f.mentor_config) + " --tokenizer " +
                     q(spm_model()) + prompt + " --image " + q(f.red) + " --out " +
                     q(out_dir("bad")),
                 {"bad-cut.safetensors"});
    expect_error("--checkpoint " + q(f.dir / "nothing") + prompt, {"does not exist"});
    expect_error("--config " + q(f.mentor_config) + prompt, {"--config needs --checkpoint"});
    expect_error("--checkpoint " + q(f.mentor_weights) + prompt, {"--config"});
    expect_error("--checkpoint " + q(f.checkpoint) + prompt + " --image " + q(f.red),
                 {"needs --tokenizer"});
  }
  SECTION("a prompt longer than the condition") {
    const std::string long_prompt =
        " --prompt 'a large red star at the top left on a blue background, a small green "
        "circle at the bottom right on a dark background <image>'";
    expect_error(base + long_prompt + " --image " + q(f.red) + " --no-truncate",
                 {"over cls_token_num 24", "--no-truncate refuses it"});
    const Result cut = run(base + long_prompt + " --image " + q(f.red));
    INFO(cut.output);
    CHECK(cut.status == 0);
    CHECK_THAT(cut.output, has_text("warning"));
    CHECK_THAT(cut.output, has_text("over cls_token_num 24: cut "));
    CHECK_THAT(cut.output, has_text("image feature rows are used"));
  }
  SECTION("option values") {
    const std::string ok = base + prompt + " --image " + q(f.red);
    expect_error(ok + " --temperature -1", {"temperature -1"});
    expect_error(ok + " --top-p 0", {"top_p 0", "(0, 1]"});
    expect_error(ok + " --top-p 1.5", {"top_p 1.5"});
    expect_error(ok + " --min-p 1", {"min_p 1"});
    expect_error(ok + " --top-k -3", {"top_k -3"});
    expect_error(ok + " --cfg -2", {"cfg -2"});
    expect_error(ok + " --n 0", {"n 0"});
    expect_error(ok + " --batch 0", {"--batch 0"});
    expect_error(ok + " --cfg-interval -5", {"cfg_interval -5"});
    expect_error(ok + " --dtype float16", {"--dtype float16"});
    if (!cuda_built) expect_error(ok + " --device cuda", {"no CUDA backend"});
    const Result fine = run(ok + " --top-k 0 --top-p 1");  // both filters off is fine
    INFO(fine.output);
    CHECK(fine.status == 0);
    // CLI11 refuses what is not a number at all, with its own message.
    const Result word = run(ok + " --temperature warm");
    CHECK(word.status != 0);
    CHECK_THAT(word.output, has_text("--temperature"));
  }
  SECTION("an output folder that cannot be written") {
    const std::string args = mentor_args() + prompt + " --image " + q(f.red);
    expect_error(args + " --out " + q(f.regular_file / "sub"), {"cannot create the output folder"});
    expect_error(args + " --out " + q(f.regular_file), {"exists and is not a folder"});
  }
}

TEST_CASE("generate program: without --checkpoint it draws with the shipped model",
          "[generate_program]") {
  const fs::path shipped = fs::path(MENTOR_SOURCE_DIR) / "docs" / "model";
  const fs::path out = out_dir("shipped");
  const fs::path reference = files().red;
  const std::string args =
      " --prompt 'The star in <image>.\na large striped star at the top left "
      "on a blue background' --image " +
      q(reference) + " --out " + q(out);
  if (!fs::exists(shipped / "mentor.safetensors")) {
    expect_error(args, {"no shipped model"});
    return;
  }
  const Result r = run(args);
  INFO(r.output);
  REQUIRE(r.status == 0);
  const data::Image image = data::load_image(out / "0000-seed0.png", 3);
  const json config = json::parse(std::ifstream(shipped / "config.json"));
  CHECK(image.width == config.at("tasks").at("resolution").get<int>());
  CHECK(metadata_of(out / "0000-seed0.png").at("model").contains("checkpoint"));
}

}  // namespace test_generate_program
