// PNG text chunks (data/png_text.hpp): the encoder's chunks are found by a chunk walk written here
// with zlib's crc32 (not the library's), its pixels decode back through libpng, the same input
// gives the same bytes, and bad keys, texts and files are errors that say what is wrong.
#include <zlib.h>

#include <cstdint>
#include <cstring>
#include <string>
#include <utility>
#include <vector>

#include "catch.hpp"
#include "mentor/data/image.hpp"
#include "mentor/data/png_text.hpp"

namespace test_png_text {

namespace data = mentor::data;

namespace {

#ifdef MENTOR_CATCH3
auto has_text(const std::string& text) { return Catch::Matchers::ContainsSubstring(text); }
#else
auto has_text(const std::string& text) { return Catch::Contains(text); }
#endif

data::Image gradient(int width, int height, int channels) {
  data::Image image(width, height, channels);
  for (size_t i = 0; i < image.data.size(); ++i) image.data[i] = static_cast<uint8_t>(i * 37 % 251);
  return image;
}

uint32_t be32(const uint8_t* p) {
  return uint32_t{p[0]} << 24 | uint32_t{p[1]} << 16 | uint32_t{p[2]} << 8 | uint32_t{p[3]};
}

// (type, data) of every chunk, each CRC checked with zlib.
std::vector<std::pair<std::string, std::string>> chunks_of(const std::vector<uint8_t>& png) {
  REQUIRE(png.size() >= 8);
  REQUIRE(std::memcmp(png.data(), "\x89PNG\r\n\x1a\n", 8) == 0);
  std::vector<std::pair<std::string, std::string>> out;
  for (size_t at = 8; at < png.size();) {
    REQUIRE(png.size() - at >= 12);
    const uint32_t length = be32(png.data() + at);
    REQUIRE(png.size() - at - 12 >= length);
    const uLong crc = crc32(0L, png.data() + at + 4, static_cast<uInt>(4 + length));
    CHECK(crc == be32(png.data() + at + 8 + length));
    out.emplace_back(std::string(reinterpret_cast<const char*>(png.data() + at + 4), 4),
                     std::string(reinterpret_cast<const char*>(png.data() + at + 8), length));
    at += 12 + length;
  }
  return out;
}

}  // namespace

TEST_CASE("png_text: tEXt chunks are written before the pixels and read back", "[png_text]") {
  const std::string json = R"({"prompt": "a cat in <image>\n\u00e9t\u00e9", "seed": 7})";
  const std::vector<data::PngText> texts = {{"mentor-generate", json}, {"Comment", ""}};
  for (int channels : {1, 2, 3, 4}) {
    INFO("channels " << channels);
    const data::Image image = gradient(13, 7, channels);
    const std::vector<uint8_t> png = data::encode_png_with_text(image, texts);
    CHECK(data::encode_png_with_text(image, texts) == png);  // deterministic

    const auto chunks = chunks_of(png);
    REQUIRE(chunks.size() >= 5);
    CHECK(chunks.front().first == "IHDR");
    CHECK(chunks[1] == std::pair<std::string, std::string>{
                           "tEXt", "mentor-generate" + std::string(1, '\0') + json});
    CHECK(chunks[2] ==
          std::pair<std::string, std::string>{"tEXt", "Comment" + std::string(1, '\0')});
    CHECK(chunks[3].first == "IDAT");
    CHECK(chunks.back().first == "IEND");

    CHECK(data::read_png_text(png) == texts);
    CHECK(data::find_png_text(data::read_png_text(png), "mentor-generate") == json);
    CHECK_FALSE(data::find_png_text(data::read_png_text(png), "Title").has_value());
    const data::Image decoded = data::decode_image(png, 0, "text.png");
    CHECK(decoded.channels == channels);
    CHECK(decoded.data == image.data);
  }
  // A PNG without text chunks (stb_image_write's) reads as none.
  CHECK(data::read_png_text(data::encode_png(gradient(3, 3, 3))).empty());
}

TEST_CASE("png_text: bad keys, texts and files are errors", "[png_text]") {
  const data::Image image = gradient(4, 4, 3);
  CHECK_THROWS_WITH(data::encode_png_with_text(image, {{"", "x"}}), has_text("1..79"));
  CHECK_THROWS_WITH(data::encode_png_with_text(image, {{std::string(80, 'k'), "x"}}),
                    has_text("80 bytes"));
  CHECK_THROWS_WITH(data::encode_png_with_text(image, {{" key", "x"}}),
                    has_text("leading, trailing or double space"));
  CHECK_THROWS_WITH(data::encode_png_with_text(image, {{"a\tb", "x"}}),
                    has_text("outside printable Latin-1"));
  CHECK_THROWS_WITH(data::encode_png_with_text(image, {{"key", std::string("a\0b", 3)}}),
                    has_text("NUL"));
  CHECK_THROWS_WITH(data::encode_png_with_text(data::Image(0, 4, 3), {}), has_text("zero-size"));

  const std::vector<uint8_t> png = data::encode_png_with_text(image, {{"k", "value"}});
  CHECK_THROWS_WITH(data::read_png_text(std::vector<uint8_t>{'G', 'I', 'F', '8'}, "a.gif"),
                    has_text("a.gif is not a PNG file"));
  for (size_t cut : {size_t{8}, size_t{20}, png.size() - 12, png.size() - 1}) {
    INFO("cut at " << cut);
    CHECK_THROWS_WITH(
        data::read_png_text(std::vector<uint8_t>(png.begin(), png.begin() + static_cast<long>(cut)),
                            "cut.png"),
        has_text("cut.png is truncated"));
  }
  std::vector<uint8_t> damaged = png;
  damaged[33 + 8 + 1] ^= 1;  // in the tEXt chunk, which follows the signature and IHDR (33 bytes)
  CHECK_THROWS_WITH(data::read_png_text(damaged, "bad.png"),
                    has_text("bad.png is damaged: the CRC of chunk 1 (tEXt) fails"));
  CHECK_THROWS_WITH(data::read_png_text(std::filesystem::path("/nonexistent/x.png")),
                    has_text("file not found"));
}

}  // namespace test_png_text
