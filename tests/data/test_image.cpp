// Image I/O, Pillow-exact resampling, CLIP and ADM preprocessing, gzip/IDX and Fashion-MNIST.
// Goldens: tools/reference/make_image_goldens.py (Pillow 9.4 + numpy), in tests/goldens/image_*.
#include <cmath>
#include <cstdint>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "catch.hpp"
#include "mentor/data/fashion_mnist.hpp"
#include "mentor/data/image.hpp"

namespace test_image {

namespace data = mentor::data;
using data::Image;
using data::ImageCHW;
using data::ResampleFilter;

namespace {

const std::filesystem::path kGoldens = std::filesystem::path(MENTOR_SOURCE_DIR) / "tests/goldens";

const nlohmann::json& manifest() {
  static const nlohmann::json value = [] {
    std::ifstream in(kGoldens / "image_goldens.json");
    REQUIRE(in.good());
    return nlohmann::json::parse(in);
  }();
  return value;
}

Image golden_png(const std::string& name) { return data::load_image(kGoldens / name); }

std::vector<float> golden_f32(const std::string& name) {
  std::ifstream in(kGoldens / name, std::ios::binary | std::ios::ate);
  REQUIRE(in.good());
  const auto bytes = static_cast<size_t>(in.tellg());
  std::vector<float> values(bytes / sizeof(float));
  in.seekg(0);
  in.read(reinterpret_cast<char*>(values.data()), static_cast<std::streamsize>(bytes));
  return values;
}

ResampleFilter filter_named(const std::string& name) {
  if (name == "box") return ResampleFilter::box;
  if (name == "bilinear") return ResampleFilter::bilinear;
  if (name == "bicubic") return ResampleFilter::bicubic;
  REQUIRE(name == "lanczos");
  return ResampleFilter::lanczos;
}

size_t count_mismatches(const Image& a, const Image& b) {
  REQUIRE(a.width == b.width);
  REQUIRE(a.height == b.height);
  REQUIRE(a.channels == b.channels);
  size_t mismatches = 0;
  for (size_t i = 0; i < a.data.size(); ++i) mismatches += a.data[i] != b.data[i];
  return mismatches;
}

double max_abs_difference(const std::vector<float>& a, const std::vector<float>& b) {
  REQUIRE(a.size() == b.size());
  double worst = 0;
  for (size_t i = 0; i < a.size(); ++i)
    worst = std::max(worst, std::fabs(static_cast<double>(a[i]) - b[i]));
  return worst;
}

std::filesystem::path scratch(const std::string& name) {
  const auto dir = std::filesystem::path(MENTOR_BINARY_DIR) / "test_image_scratch";
  std::filesystem::create_directories(dir);
  return dir / name;
}

}  // namespace

TEST_CASE("8-bit resize matches Pillow byte for byte", "[image]") {
  const Image source = golden_png(manifest()["source"]);
  REQUIRE(source.width == 45);
  REQUIRE(source.height == 31);
  REQUIRE(source.channels == 3);
  for (const auto& entry : manifest()["resize_u8"]) {
    const std::string filter = entry["filter"];
    const int width = entry["width"], height = entry["height"];
    CAPTURE(filter, width, height);
    const Image ours = data::resize(source, width, height, filter_named(filter));
    CHECK(count_mismatches(ours, golden_png(entry["file"])) == 0);
  }
  CHECK(count_mismatches(data::resize_box_half(source), golden_png(manifest()["box_half"])) == 0);
  // Same size: a copy, as PIL.
  CHECK(count_mismatches(data::resize_bicubic(source, 45, 31), source) == 0);
}

TEST_CASE("float resize matches Pillow's mode F", "[image]") {
  const auto& plane_info = manifest()["plane_f32"];
  ImageCHW plane(1, plane_info["height"], plane_info["width"]);
  plane.data = golden_f32(plane_info["file"]);
  REQUIRE(plane.data.size() == 45u * 31u);
  for (const auto& entry : manifest()["resize_f32"]) {
    const std::string filter = entry["filter"];
    const int width = entry["width"], height = entry["height"];
    CAPTURE(filter, width, height);
    const ImageCHW ours = data::resize(plane, width, height, filter_named(filter));
    CHECK(ours.width == width);
    CHECK(ours.height == height);
    CHECK(max_abs_difference(ours.data, golden_f32(entry["file"])) <= 1e-6);
  }
}

TEST_CASE("clip_preprocess matches HF CLIPImageProcessor's steps", "[image]") {
  for (const auto& entry : manifest()["clip"]) {
    const std::string source_name = entry["source"];
    const int size = entry["size"];
    CAPTURE(source_name, size);
    const ImageCHW ours = data::clip_preprocess(golden_png(manifest()[source_name]), size);
    CHECK(ours.channels == 3);
    CHECK(ours.height == size);
    CHECK(ours.width == size);
    CHECK(max_abs_difference(ours.data, golden_f32(entry["file"])) <= 1e-6);
  }
  // The resize rule: short side -> 224, long side truncated (640 * 224 / 480 = 298.67).
  CHECK(data::clip_resize_size(640, 480, 224) == std::array<int, 2>{298, 224});
  CHECK(data::clip_resize_size(480, 640, 224) == std::array<int, 2>{224, 298});
  CHECK(data::clip_resize_size(224, 500, 224) == std::array<int, 2>{224, 500});
}

TEST_CASE("adm_center_crop matches guided-diffusion's center_crop_arr", "[image]") {
  for (const auto& entry : manifest()["adm"]) {
    const std::string source_name = entry["source"];
    const int size = entry["size"];
    CAPTURE(source_name, size);
    const Image source = golden_png(manifest()[source_name]);
    const ImageCHW ours = data::adm_center_crop(source, size);
    CHECK(max_abs_difference(ours.data, golden_f32(entry["file"])) == 0.0);
    // The inverse used to save generated images recovers the 8-bit crop exactly.
    CHECK(count_mismatches(data::to_image_from_minus1_1(ours),
                           data::adm_center_crop_u8(source, size)) == 0);
  }
}

TEST_CASE("to_image_from_minus1_1 follows torchvision's save_image", "[image]") {
  ImageCHW image(1, 1, 6);
  image.data = {-1.0f, 1.0f, 0.0f, -3.0f, 2.0f, NAN};
  const Image out = data::to_image_from_minus1_1(image);
  // (x + 1) / 2 * 255 + 0.5, truncated: 0, 255, 128 (127.5 + 0.5), clamped 0 and 255, NaN -> 0.
  CHECK(out.data == std::vector<uint8_t>{0, 255, 128, 0, 255, 0});
}

TEST_CASE("center_crop uses floor offsets and zero-pads like HF", "[image]") {
  Image small(3, 2, 1);
  small.data = {1, 2, 3, 4, 5, 6};
  // Larger window 5 x 4: offsets floor((3 - 5) / 2) = -1, floor((2 - 4) / 2) = -1.
  const Image padded = data::center_crop(small, 5, 4);
  CHECK(padded.data == std::vector<uint8_t>{0, 0, 0, 0, 0,  //
                                            0, 1, 2, 3, 0,  //
                                            0, 4, 5, 6, 0,  //
                                            0, 0, 0, 0, 0});
  // Smaller window 2 x 1 of a 3 x 2 image: offsets floor(1 / 2) = 0, floor(1 / 2) = 0.
  CHECK(data::center_crop(small, 2, 1).data == std::vector<uint8_t>{1, 2});
}

TEST_CASE("decoding PNG and JPEG, channel conversion", "[image]") {
  const Image source = golden_png(manifest()["source"]);
  SECTION("JPEG decodes close to libjpeg (different IDCTs)") {
    const Image ours = data::load_image(kGoldens / manifest()["jpeg"].get<std::string>());
    const Image pil = golden_png(manifest()["jpeg_decoded_by_pil"]);
    REQUIRE(ours.channels == 3);
    REQUIRE(ours.width == pil.width);
    REQUIRE(ours.height == pil.height);
    int worst = 0;
    double total = 0;
    for (size_t i = 0; i < ours.data.size(); ++i) {
      const int difference = std::abs(int{ours.data[i]} - int{pil.data[i]});
      worst = std::max(worst, difference);
      total += difference;
    }
    CHECK(worst <= 3);
    CHECK(total / static_cast<double>(ours.data.size()) < 0.5);
  }
  SECTION("grey PNG: one channel, or replicated to RGB as PIL's convert") {
    const Image grey = golden_png(manifest()["grey"]);
    CHECK(grey.channels == 1);
    const Image expected = golden_png(manifest()["grey_as_rgb"]);
    CHECK(count_mismatches(data::load_image(kGoldens / manifest()["grey"].get<std::string>(), 3),
                           expected) == 0);
    CHECK(count_mismatches(data::to_rgb(grey), expected) == 0);
  }
  SECTION("RGBA PNG: alpha dropped by to_rgb") {
    const Image rgba = golden_png(manifest()["rgba"]);
    CHECK(rgba.channels == 4);
    CHECK(count_mismatches(data::to_rgb(rgba), source) == 0);
  }
  SECTION("save_png round trip") {
    const auto path = scratch("roundtrip.png");
    data::save_png(source, path);
    CHECK(count_mismatches(data::load_image(path), source) == 0);
  }
}

TEST_CASE("image errors name the file", "[image]") {
  const auto missing = scratch("does_not_exist.png");
  std::filesystem::remove(missing);
  CHECK_THROWS_WITH(data::load_image(missing),
                    Catch::Contains("file not found") && Catch::Contains(missing.string()));

  const auto empty = scratch("empty.png");
  std::ofstream(empty).close();
  CHECK_THROWS_WITH(data::load_image(empty),
                    Catch::Contains("empty") && Catch::Contains(empty.string()));

  const auto text = scratch("not_an_image.png");
  std::ofstream(text) << "this is not a picture\n";
  CHECK_THROWS_WITH(data::load_image(text),
                    Catch::Contains("not a decodable image") && Catch::Contains(text.string()));

  CHECK_THROWS_WITH(data::resize(Image(), 4, 4, ResampleFilter::bicubic),
                    Catch::Contains("zero-size"));
}

TEST_CASE("gzip and IDX files", "[image][idx]") {
  const auto gz_path = kGoldens / manifest()["idx_gz"].get<std::string>();
  const auto raw_path = kGoldens / manifest()["idx_raw"].get<std::string>();
  for (const auto& path : {gz_path, raw_path}) {
    CAPTURE(path.string());
    const data::IdxArray array = data::read_idx(path);
    CHECK(array.dims == std::vector<int64_t>{3, 4, 5});
    REQUIRE(array.data.size() == 60);
    for (int i = 0; i < 60; ++i) CHECK(int{array.data[static_cast<size_t>(i)]} == i * 7 % 256);
  }
  // A corrupted CRC is caught and the message names the file.
  std::ifstream in(gz_path, std::ios::binary);
  std::vector<char> bytes((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  bytes[bytes.size() - 8] ^= 0x01;
  const auto corrupt = scratch("corrupt.idx.gz");
  std::ofstream(corrupt, std::ios::binary)
      .write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
  CHECK_THROWS_WITH(data::read_idx(corrupt),
                    Catch::Contains("CRC-32") && Catch::Contains(corrupt.string()));
  // A truncated data section is caught by the IDX header check.
  const auto truncated = scratch("truncated.idx");
  {
    std::ifstream raw(raw_path, std::ios::binary);
    std::vector<char> raw_bytes((std::istreambuf_iterator<char>(raw)),
                                std::istreambuf_iterator<char>());
    std::ofstream(truncated, std::ios::binary).write(raw_bytes.data(), 40);
  }
  CHECK_THROWS_WITH(data::read_idx(truncated), Catch::Contains("header promises 60"));
}

TEST_CASE("Fashion-MNIST from Debian's package", "[image][fashion_mnist]") {
  if (!data::fashion_mnist_available() || !manifest().contains("fashion_mnist")) {
    WARN("skipped: dataset-fashion-mnist is not installed (apt-get install dataset-fashion-mnist)");
    return;
  }
  for (const auto& [split, key] : {std::pair{data::FashionMnistSplit::train, "train"},
                                   std::pair{data::FashionMnistSplit::test, "test"}}) {
    CAPTURE(key);
    const auto& expected = manifest()["fashion_mnist"][key];
    const data::FashionMnist dataset(split);
    REQUIRE(dataset.size() == expected["count"].get<int64_t>());
    for (int i = 0; i < 10; ++i) CHECK(dataset.label(i) == expected["first_labels"][i].get<int>());
    std::vector<int64_t> histogram(10, 0);
    for (uint8_t label : dataset.labels()) ++histogram[label];
    CHECK(histogram == expected["label_histogram"].get<std::vector<int64_t>>());
    auto pixel_sum = [](const Image& image) {
      int64_t sum = 0;
      for (uint8_t v : image.data) sum += v;
      return sum;
    };
    const data::LabeledImage first = dataset.get(0);
    CHECK(first.image.width == 28);
    CHECK(first.image.height == 28);
    CHECK(first.image.channels == 1);
    CHECK(pixel_sum(first.image) == expected["first_image_pixel_sum"].get<int64_t>());
    CHECK(pixel_sum(dataset.get(dataset.size() - 1).image) ==
          expected["last_image_pixel_sum"].get<int64_t>());
    for (int x = 0; x < 28; ++x)
      CHECK(int{first.image.at(14, x, 0)} == expected["first_image_row_14"][x]);
  }
  CHECK(data::FashionMnist::class_name(9) == "Ankle boot");
  CHECK(data::FashionMnist::class_name(0) == "T-shirt/top");
  CHECK_THROWS_WITH(data::FashionMnist(data::FashionMnistSplit::train, "/nonexistent/fmnist"),
                    Catch::Contains("/nonexistent/fmnist/train-images-idx3-ubyte"));
}

// ---- Hostile files (issue 8, item 4: each input below crashed or misled the stb-based decoder)

namespace {

std::vector<uint8_t> golden_bytes(const std::string& name) {
  std::ifstream in(kGoldens / name, std::ios::binary);
  REQUIRE(in.good());
  return {std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
}

std::vector<uint8_t> bytes_of(std::string_view text) { return {text.begin(), text.end()}; }

void put_le(std::vector<uint8_t>& bytes, size_t at, uint32_t value, int width) {
  for (int i = 0; i < width; ++i)
    bytes[at + static_cast<size_t>(i)] = static_cast<uint8_t>(value >> (8 * i));
}

void put_be32(std::vector<uint8_t>& bytes, size_t at, uint32_t value) {
  for (int i = 0; i < 4; ++i)
    bytes[at + static_cast<size_t>(i)] = static_cast<uint8_t>(value >> (24 - 8 * i));
}

}  // namespace

TEST_CASE("untrusted image bytes: only PNG and JPEG, headers checked first", "[image][hostile]") {
  // The fuzzer's 10-byte input as reported starts 00 (then stb's JPEG sniffing does not apply);
  // without the 00 it is SOI + a DHT segment claiming 0x2000 bytes, which stb overran.
  const std::vector<uint8_t> reported = {0x00, 0xff, 0xd8, 0xff, 0xc4,
                                         0x20, 0x00, 0x01, 0x96, 0x96};
  CHECK_THROWS_WITH(data::decode_image(reported, 0, "reported.jpg"),
                    Catch::Contains("reported.jpg") && Catch::Contains("only PNG and JPEG") &&
                        Catch::Contains("first bytes 00 ff d8 ff c4 20 00 01"));
  const std::vector<uint8_t> dht(reported.begin() + 1, reported.end());
  CHECK_THROWS_WITH(data::decode_image(dht, 0, "dht.jpg"),
                    Catch::Contains("dht.jpg") && Catch::Contains("segment 0xffc4") &&
                        Catch::Contains("past the end of the file (9 bytes)"));

  // A truncated PNM used to decode with uninitialised pixels; PNM is no longer accepted at all.
  CHECK_THROWS_WITH(data::decode_image(bytes_of("P6 8 8 255\nAB"), 0, "cut.ppm"),
                    Catch::Contains("cut.ppm") && Catch::Contains("PNM"));

  // 55 bytes of BMP (file header, BITMAPINFOHEADER, one byte) asking for 32768 x 32768 x 32 bits.
  std::vector<uint8_t> bmp(55, 0);
  bmp[0] = 'B';
  bmp[1] = 'M';
  put_le(bmp, 2, 55, 4);
  put_le(bmp, 10, 54, 4);
  put_le(bmp, 14, 40, 4);
  put_le(bmp, 18, 32768, 4);
  put_le(bmp, 22, 32768, 4);
  put_le(bmp, 26, 1, 2);
  put_le(bmp, 28, 32, 2);
  CHECK_THROWS_WITH(data::decode_image(bmp, 0, "huge.bmp"),
                    Catch::Contains("huge.bmp") && Catch::Contains("BMP"));

  // Pixel cap: a PNG header asking for 100000 x 100000 is refused before any allocation, and the
  // cap is an option (the 45 x 31 source decodes at exactly its pixel count, not one below).
  std::vector<uint8_t> png = golden_bytes(manifest()["source"]);
  const Image source = data::decode_image(png);
  const int64_t pixels = int64_t{source.width} * source.height;
  CHECK(data::decode_image(png, 0, "source.png", pixels).data == source.data);
  CHECK_THROWS_WITH(data::decode_image(png, 0, "source.png", pixels - 1),
                    Catch::Contains("source.png") &&
                        Catch::Contains("more than the limit of " + std::to_string(pixels - 1)));
  std::vector<uint8_t> wide = png;
  put_be32(wide, 16, 100000);
  put_be32(wide, 20, 100000);
  CHECK_THROWS_WITH(data::decode_image(wide, 0, "wide.png"),
                    Catch::Contains("wide.png is 100000x100000 = 10000000000 pixels") &&
                        Catch::Contains("limit of 67108864"));
  std::vector<uint8_t> bad_depth = png;
  bad_depth[24] = 7;
  CHECK_THROWS_WITH(data::decode_image(bad_depth, 0, "depth.png"),
                    Catch::Contains("bit depth 7 is invalid"));

  // Truncated files are errors, never images with made-up pixels.
  png.resize(png.size() / 2);
  CHECK_THROWS_WITH(data::decode_image(png, 0, "half.png"),
                    Catch::Contains("half.png is not a decodable image (libpng"));
  std::vector<uint8_t> jpeg = golden_bytes(manifest()["jpeg"]);
  const Image whole = data::decode_image(jpeg);
  jpeg.resize(jpeg.size() - jpeg.size() / 4);
  CHECK_THROWS_WITH(data::decode_image(jpeg, 0, "cut.jpg"),
                    Catch::Contains("cut.jpg is not a decodable image (libjpeg"));

  // libjpeg-turbo with its default (accurate) IDCT and fancy upsampling, as in Pillow: the decode
  // is identical to Pillow's, byte for byte.
  CHECK(count_mismatches(whole, golden_png(manifest()["jpeg_decoded_by_pil"])) == 0);
}

TEST_CASE("gunzip bounds its output and names what is wrong", "[image][idx][hostile]") {
  const std::vector<uint8_t> gz = golden_bytes(manifest()["idx_gz"]);
  const size_t size = golden_bytes(manifest()["idx_raw"]).size();
  CHECK(data::gunzip(gz, "sample.gz", size).size() == size);
  CHECK_THROWS_WITH(data::gunzip(gz, "sample.gz", size - 1),
                    Catch::Contains("sample.gz") &&
                        Catch::Contains("inflates to more than " + std::to_string(size - 1)));
  std::vector<uint8_t> cut(gz.begin(), gz.end() - 5);
  CHECK_THROWS_WITH(data::gunzip(cut, "cut.gz"), Catch::Contains("cut.gz: truncated"));
  std::vector<uint8_t> two = gz;
  two.insert(two.end(), gz.begin(), gz.end());
  CHECK_THROWS_WITH(data::gunzip(two, "two.gz"), Catch::Contains("multi-member"));
  std::vector<uint8_t> length = gz;
  length[length.size() - 1] ^= 0x40;
  CHECK_THROWS_WITH(data::gunzip(length, "length.gz"), Catch::Contains("length mismatch"));
}

TEST_CASE("IDX element counts cannot wrap", "[image][idx][hostile]") {
  // dims [2^31, 2^31, 4] multiply to 2^64, which wrapped to 0 and matched the empty data section.
  const std::vector<uint8_t> wraps = {0, 0, 8, 3, 0x80, 0, 0, 0, 0x80, 0, 0, 0, 0, 0, 0, 4};
  CHECK_THROWS_WITH(data::parse_idx(wraps, "wraps.idx"),
                    Catch::Contains("wraps.idx") &&
                        Catch::Contains("dims [2147483648, 2147483648, 4]") &&
                        Catch::Contains("more elements than 2^64"));
  // [2^32 - 1, 0]: zero elements, a legal empty array.
  const std::vector<uint8_t> empty = {0, 0, 8, 2, 0xff, 0xff, 0xff, 0xff, 0, 0, 0, 0};
  CHECK(data::parse_idx(empty, "empty.idx").dims == std::vector<int64_t>{4294967295, 0});
  const std::vector<uint8_t> one_short = {0, 0, 8, 2, 0, 0, 0, 2, 0, 0, 0, 2, 1, 2, 3};
  CHECK_THROWS_WITH(data::parse_idx(one_short, "short.idx"),
                    Catch::Contains("holds 3 data bytes, its header promises 4 (dims [2, 2])"));
}

}  // namespace test_image
