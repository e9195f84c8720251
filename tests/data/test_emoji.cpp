// The Noto colour emoji (fonts-noto-color-emoji + unicode-data) against facts checked
// independently: emoji-test.txt's own counts and names (read here with plain string search), the
// strike's 136 x 128 PNGs (their IHDR read here), colours anyone can see (a red apple, green
// broccoli), skin-tone variants that recolour the same silhouette, and small fonts written here in
// the OpenType layout (cmap 12 and 4, CBLC index formats 1, 2, 3, CBDT 17, 18, 19, GSUB ligatures
// direct and through an Extension) from glyphs of the real font, which must read back to the same
// PNG bytes; those fonts, truncated and bit-flipped, must give errors naming a table, never a
// crash. Every test skips with a message when the packages are absent.
#include <algorithm>
#include <array>
#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <fstream>
#include <iterator>
#include <map>
#include <memory>
#include <set>
#include <string>
#include <vector>

#include "catch.hpp"
#include "mentor/data/emoji.hpp"

namespace test_emoji {

namespace data = mentor::data;
namespace ot = mentor::data::opentype;
using data::Image;

namespace {

#define EMOJI_TEST_OR_SKIP()                                                             \
  do {                                                                                   \
    if (!data::emoji_available()) {                                                      \
      WARN(                                                                              \
          "skipped: the emoji files are absent (apt-get install fonts-noto-color-emoji " \
          "unicode-data, or set MENTOR_EMOJI_FONT and MENTOR_EMOJI_TEST)");              \
      return;                                                                            \
    }                                                                                    \
  } while (0)

const data::EmojiSet& real_set() {
  static const data::EmojiSet set;  // loaded once for the whole program
  return set;
}

std::string read_text(const std::filesystem::path& path) {
  std::ifstream in(path, std::ios::binary);
  REQUIRE(in.good());
  return {std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
}

// The fully-qualified data lines, counted without the parser.
int64_t count_fully_qualified_lines(const std::string& text) {
  int64_t count = 0;
  size_t at = 0;
  while (at < text.size()) {
    const size_t end = std::min(text.find('\n', at), text.size());
    const std::string line = text.substr(at, end - at);
    if (!line.empty() && line[0] != '#' && line.find("; fully-qualified") != std::string::npos)
      ++count;
    at = end + 1;
  }
  return count;
}

// PNG width and height from the IHDR chunk (bytes 16..23), read without a decoder.
std::pair<int, int> png_size(std::span<const uint8_t> png) {
  REQUIRE(png.size() >= 24);
  REQUIRE(png[0] == 0x89);
  REQUIRE(png[1] == 'P');
  auto be32 = [&](size_t at) {
    return static_cast<int>(uint32_t{png[at]} << 24 | uint32_t{png[at + 1]} << 16 |
                            uint32_t{png[at + 2]} << 8 | uint32_t{png[at + 3]});
  };
  return {be32(16), be32(20)};
}

enum class Hue { red, green, blue, other };

// The hue of a clearly coloured pixel: one channel leads the others by 60 or more.
Hue hue(int r, int g, int b) {
  if (r > g + 60 && r > b + 60) return Hue::red;
  if (g > r + 40 && g > b + 40) return Hue::green;
  if (b > r + 60 && b > g + 30) return Hue::blue;
  return Hue::other;
}

std::map<Hue, double> hue_fractions(const Image& rgba) {
  std::map<Hue, double> count;
  double opaque = 0;
  for (int y = 0; y < rgba.height; ++y)
    for (int x = 0; x < rgba.width; ++x) {
      if (rgba.at(y, x, 3) < 200) continue;
      ++opaque;
      ++count[hue(rgba.at(y, x, 0), rgba.at(y, x, 1), rgba.at(y, x, 2))];
    }
  for (auto& [h, n] : count) n /= opaque;
  return count;
}

// ---- A writer of small emoji fonts (OpenType layout written from the specification) -------------

void put16(std::vector<uint8_t>& out, uint32_t v) {
  out.push_back(static_cast<uint8_t>(v >> 8));
  out.push_back(static_cast<uint8_t>(v));
}
void put32(std::vector<uint8_t>& out, uint32_t v) {
  put16(out, v >> 16);
  put16(out, v & 0xFFFF);
}
void set16(std::vector<uint8_t>& out, size_t at, uint32_t v) {
  out[at] = static_cast<uint8_t>(v >> 8);
  out[at + 1] = static_cast<uint8_t>(v);
}
void set32(std::vector<uint8_t>& out, size_t at, uint32_t v) {
  set16(out, at, v >> 16);
  set16(out, at + 2, v & 0xFFFF);
}
void pad4(std::vector<uint8_t>& out) {
  while (out.size() % 4) out.push_back(0);
}

struct SubsetOptions {
  int cmap_format = 12;          // 12 or 4 (BMP code points only)
  bool extension_lookup = true;  // the ligature lookup behind an Extension (type 7)
  int coverage_format = 1;
};

struct SubsetGlyph {
  std::vector<uint8_t> png;  // empty: no bitmap
  ot::GlyphBitmap metrics;
};

struct Subset {
  std::vector<uint8_t> bytes;
  std::vector<std::u32string> sequences;   // each renders as one glyph
  std::vector<std::vector<uint8_t>> pngs;  // the real font's PNG of each sequence
};

// Glyph 0 is .notdef; 1..n the sequences' code points (sorted); then one ligature glyph per
// multi-code-point sequence. CBLC: code-point glyphs in an index format 1 subtable (image format
// 17) and a format 3 one (18); ligature glyphs in a format 2 one (19, PNGs padded to one size).
Subset write_subset(const ot::ColorBitmapFont& real, const std::vector<std::u32string>& sequences,
                    SubsetOptions options) {
  Subset subset;
  std::set<char32_t> code_point_set;
  for (const auto& s : sequences)
    for (char32_t c : s) code_point_set.insert(c);
  const std::vector<char32_t> code_points(code_point_set.begin(), code_point_set.end());
  auto cp_glyph = [&](char32_t c) {
    return static_cast<uint16_t>(
        1 + (std::lower_bound(code_points.begin(), code_points.end(), c) - code_points.begin()));
  };
  std::vector<SubsetGlyph> glyphs(1 + code_points.size());
  auto take = [&](uint16_t real_glyph) {
    SubsetGlyph g;
    if (!real.has_bitmap(real_glyph)) return g;
    g.metrics = real.bitmap(real_glyph);
    g.png.assign(g.metrics.png.begin(), g.metrics.png.end());
    return g;
  };
  for (size_t i = 0; i < code_points.size(); ++i)
    glyphs[1 + i] = take(real.glyph_for(code_points[i]));
  struct Lig {
    std::vector<uint16_t> components;
    uint16_t glyph;
  };
  std::vector<Lig> ligatures;
  for (const auto& s : sequences) {
    const auto real_glyph = real.glyph_for_sequence(s);
    REQUIRE(real_glyph.has_value());
    subset.sequences.push_back(s);
    const auto bitmap = real.bitmap(*real_glyph);
    subset.pngs.emplace_back(bitmap.png.begin(), bitmap.png.end());
    if (s.size() == 1) continue;
    Lig lig{{}, static_cast<uint16_t>(glyphs.size())};
    for (char32_t c : s) lig.components.push_back(cp_glyph(c));
    ligatures.push_back(lig);
    glyphs.push_back(take(*real_glyph));
  }
  const size_t first_lig = 1 + code_points.size();
  const uint16_t last_glyph = static_cast<uint16_t>(glyphs.size() - 1);
  REQUIRE(first_lig <= last_glyph);  // at least one ligature
  const uint16_t split = static_cast<uint16_t>(1 + code_points.size() / 2);  // format 1 | 3

  // CBDT and CBLC together.
  std::vector<uint8_t> cbdt;
  put32(cbdt, 0x00030000);
  std::vector<uint8_t> cblc;
  put32(cblc, 0x00030000);
  put32(cblc, 1);
  const size_t size_record = cblc.size();
  cblc.resize(cblc.size() + 48);
  const size_t array_at = cblc.size();
  struct Range {
    uint16_t first, last;
    int index_format, image_format;
  };
  const std::array<Range, 3> ranges = {{{1, static_cast<uint16_t>(split - 1), 1, 17},
                                        {split, static_cast<uint16_t>(first_lig - 1), 3, 18},
                                        {static_cast<uint16_t>(first_lig), last_glyph, 2, 19}}};
  cblc.resize(cblc.size() + 8 * ranges.size());
  size_t image_size = 0;
  for (size_t g = first_lig; g < glyphs.size(); ++g)
    image_size = std::max(image_size, 4 + glyphs[g].png.size());
  for (size_t r = 0; r < ranges.size(); ++r) {
    const Range& range = ranges[r];
    REQUIRE(range.first <= range.last);
    set16(cblc, array_at + 8 * r, range.first);
    set16(cblc, array_at + 8 * r + 2, range.last);
    set32(cblc, array_at + 8 * r + 4, static_cast<uint32_t>(cblc.size() - array_at));
    const size_t image_data = cbdt.size();
    put16(cblc, static_cast<uint32_t>(range.index_format));
    put16(cblc, static_cast<uint32_t>(range.image_format));
    put32(cblc, static_cast<uint32_t>(image_data));
    std::vector<uint32_t> offsets;
    for (uint16_t g = range.first; g <= range.last; ++g) {
      offsets.push_back(static_cast<uint32_t>(cbdt.size() - image_data));
      const SubsetGlyph& glyph = glyphs[g];
      const auto& m = glyph.metrics;
      if (range.image_format == 19) {
        REQUIRE(!glyph.png.empty());
        put32(cbdt, static_cast<uint32_t>(glyph.png.size()));
        cbdt.insert(cbdt.end(), glyph.png.begin(), glyph.png.end());
        cbdt.resize(image_data + (g - range.first + 1) * image_size);  // pad to imageSize
        continue;
      }
      if (glyph.png.empty()) continue;  // equal offsets: no bitmap
      for (int v : {m.height, m.width, m.bearing_x, m.bearing_y, m.advance})
        cbdt.push_back(static_cast<uint8_t>(v));
      if (range.image_format == 18)
        for (int v : {0, 0, m.advance}) cbdt.push_back(static_cast<uint8_t>(v));
      put32(cbdt, static_cast<uint32_t>(glyph.png.size()));
      cbdt.insert(cbdt.end(), glyph.png.begin(), glyph.png.end());
    }
    offsets.push_back(static_cast<uint32_t>(cbdt.size() - image_data));
    if (range.index_format == 1) {
      for (uint32_t o : offsets) put32(cblc, o);
    } else if (range.index_format == 3) {
      for (uint32_t o : offsets) {
        REQUIRE(o < 65536);
        put16(cblc, o);
      }
      pad4(cblc);
    } else {
      const auto& m = glyphs[range.first].metrics;
      put32(cblc, static_cast<uint32_t>(image_size));
      for (int v : {m.height, m.width, m.bearing_x, m.bearing_y, m.advance, 0, 0, m.advance})
        cblc.push_back(static_cast<uint8_t>(v));
    }
  }
  set32(cblc, size_record, static_cast<uint32_t>(array_at));
  set32(cblc, size_record + 4, static_cast<uint32_t>(cblc.size() - array_at));
  set32(cblc, size_record + 8, static_cast<uint32_t>(ranges.size()));
  set16(cblc, size_record + 40, 1);
  set16(cblc, size_record + 42, last_glyph);
  cblc[size_record + 44] = cblc[size_record + 45] = static_cast<uint8_t>(real.ppem_y());
  cblc[size_record + 46] = 32;
  cblc[size_record + 47] = 1;

  // cmap
  std::vector<uint8_t> cmap;
  put16(cmap, 0);
  put16(cmap, 1);
  put16(cmap, 3);
  put16(cmap, options.cmap_format == 12 ? 10 : 1);
  put32(cmap, 12);
  if (options.cmap_format == 12) {
    put16(cmap, 12);
    put16(cmap, 0);
    put32(cmap, static_cast<uint32_t>(16 + 12 * code_points.size()));
    put32(cmap, 0);
    put32(cmap, static_cast<uint32_t>(code_points.size()));
    for (char32_t c : code_points) {
      put32(cmap, c);
      put32(cmap, c);
      put32(cmap, cp_glyph(c));
    }
  } else {
    // One segment per code point, odd ones through glyphIdArray, then the final 0xFFFF segment.
    const size_t segments = code_points.size() + 1;
    std::vector<uint16_t> ends, starts, deltas, range_offsets, glyph_array;
    for (size_t s = 0; s < code_points.size(); ++s) {
      const char32_t c = code_points[s];
      REQUIRE(c < 0xFFFF);
      ends.push_back(static_cast<uint16_t>(c));
      starts.push_back(static_cast<uint16_t>(c));
      if (s % 2 == 0) {
        deltas.push_back(static_cast<uint16_t>((cp_glyph(c) - c) & 0xFFFF));
        range_offsets.push_back(0);
      } else {
        deltas.push_back(0);
        range_offsets.push_back(static_cast<uint16_t>(2 * (segments - s + glyph_array.size())));
        glyph_array.push_back(cp_glyph(c));
      }
    }
    ends.push_back(0xFFFF), starts.push_back(0xFFFF), deltas.push_back(1),
        range_offsets.push_back(0);
    put16(cmap, 4);
    put16(cmap, static_cast<uint32_t>(16 + 8 * segments + 2 * glyph_array.size()));
    put16(cmap, 0);
    put16(cmap, static_cast<uint32_t>(2 * segments));
    put16(cmap, 0), put16(cmap, 0), put16(cmap, 0);  // search hints (unused by readers here)
    for (uint16_t v : ends) put16(cmap, v);
    put16(cmap, 0);
    for (const auto* array : {&starts, &deltas, &range_offsets, &glyph_array})
      for (uint16_t v : *array) put16(cmap, v);
  }

  // GSUB: no scripts, feature 'ccmp' -> lookup 0 (LigatureSubst, maybe behind an Extension).
  std::vector<uint8_t> gsub;
  put32(gsub, 0x00010000);
  put16(gsub, 10), put16(gsub, 12), put16(gsub, 26);
  put16(gsub, 0);  // ScriptList (10): no scripts
  put16(gsub, 1), gsub.insert(gsub.end(), {'c', 'c', 'm', 'p'}), put16(gsub, 8);  // FeatureList
  put16(gsub, 0), put16(gsub, 1), put16(gsub, 0);  // Feature: lookup 0
  put16(gsub, 1), put16(gsub, 4);                  // LookupList (26)
  put16(gsub, options.extension_lookup ? 7 : 4), put16(gsub, 0), put16(gsub, 1), put16(gsub, 8);
  if (options.extension_lookup) put16(gsub, 1), put16(gsub, 4), put32(gsub, 8);
  const size_t subst = gsub.size();
  std::map<uint16_t, std::vector<const Lig*>> by_first;
  for (const Lig& lig : ligatures) by_first[lig.components[0]].push_back(&lig);
  for (auto& [first, list] : by_first)  // longest first, as fonts order them
    std::stable_sort(list.begin(), list.end(), [](const Lig* a, const Lig* b) {
      return a->components.size() > b->components.size();
    });
  put16(gsub, 1);
  const size_t coverage_field = gsub.size();
  put16(gsub, 0);
  put16(gsub, static_cast<uint32_t>(by_first.size()));
  const size_t set_offsets = gsub.size();
  gsub.resize(gsub.size() + 2 * by_first.size());
  size_t k = 0;
  for (const auto& [first, list] : by_first) {
    const size_t set = gsub.size();
    set16(gsub, set_offsets + 2 * k++, static_cast<uint32_t>(set - subst));
    put16(gsub, static_cast<uint32_t>(list.size()));
    gsub.resize(gsub.size() + 2 * list.size());
    for (size_t l = 0; l < list.size(); ++l) {
      set16(gsub, set + 2 + 2 * l, static_cast<uint32_t>(gsub.size() - set));
      put16(gsub, list[l]->glyph);
      put16(gsub, static_cast<uint32_t>(list[l]->components.size()));
      for (size_t c = 1; c < list[l]->components.size(); ++c) put16(gsub, list[l]->components[c]);
    }
  }
  set16(gsub, coverage_field, static_cast<uint32_t>(gsub.size() - subst));
  put16(gsub, static_cast<uint32_t>(options.coverage_format));
  if (options.coverage_format == 1) {
    put16(gsub, static_cast<uint32_t>(by_first.size()));
    for (const auto& entry : by_first) put16(gsub, entry.first);
  } else {  // one range per run of consecutive glyphs
    std::vector<std::array<uint16_t, 3>> runs;
    uint16_t index = 0;
    for (const auto& entry : by_first) {
      if (!runs.empty() && runs.back()[1] + 1 == entry.first) {
        runs.back()[1] = entry.first;
      } else {
        runs.push_back({entry.first, entry.first, index});
      }
      ++index;
    }
    put16(gsub, static_cast<uint32_t>(runs.size()));
    for (const auto& run : runs)
      for (uint16_t v : run) put16(gsub, v);
  }

  // The table directory, tables sorted by tag, 4-byte aligned, with checksums.
  const std::vector<std::pair<std::string, const std::vector<uint8_t>*>> tables = {
      {"CBDT", &cbdt}, {"CBLC", &cblc}, {"GSUB", &gsub}, {"cmap", &cmap}};
  std::vector<uint8_t>& out = subset.bytes;
  put32(out, 0x00010000);
  put16(out, static_cast<uint32_t>(tables.size()));
  put16(out, 64), put16(out, 2), put16(out, 0);
  const size_t records = out.size();
  out.resize(out.size() + 16 * tables.size());
  for (size_t t = 0; t < tables.size(); ++t) {
    pad4(out);
    const auto& [tag, body] = tables[t];
    uint32_t checksum = 0;
    for (size_t i = 0; i < body->size(); ++i) checksum += uint32_t{(*body)[i]} << (8 * (3 - i % 4));
    std::copy(tag.begin(), tag.end(), out.begin() + static_cast<std::ptrdiff_t>(records + 16 * t));
    set32(out, records + 16 * t + 4, checksum);
    set32(out, records + 16 * t + 8, static_cast<uint32_t>(out.size()));
    set32(out, records + 16 * t + 12, static_cast<uint32_t>(body->size()));
    out.insert(out.end(), body->begin(), body->end());
  }
  return subset;
}

// Sequences whose glyphs the subsets copy: single emoji, a skin tone, a ZWJ role, a flag.
const std::vector<std::u32string>& subset_sequences() {
  static const std::vector<std::u32string> sequences = {U"\U0001F34E",
                                                        U"\U0001F966",
                                                        U"\U0001F44D",
                                                        U"\U0001F44D\U0001F3FF",
                                                        U"\U0001F469\u200D\U0001F4BB",
                                                        U"\U0001F1EB\U0001F1F7"};
  return sequences;
}

// BMP-only sequences for the format 4 cmap (hot beverage, soccer ball, snowman without snow; and
// the keycap "1" whose ligature starts with an ASCII digit).
const std::vector<std::u32string>& bmp_sequences() {
  static const std::vector<std::u32string> sequences = {U"\u2615", U"\u26BD", U"\u26C4",
                                                        U"1\u20E3"};
  return sequences;
}

bool names_a_table(const std::string& message) {
  for (const char* table : {"table directory", "cmap", "CBLC", "CBDT", "GSUB"})
    if (message.find(table) != std::string::npos) return true;
  return false;
}

// Reads a font and every glyph the subset's sequences name. Returns the error's text ("" when the
// font read cleanly); anything but a mentor::Error fails the test.
std::string exercise(std::vector<uint8_t> bytes, const std::vector<std::u32string>& sequences) {
  try {
    const ot::ColorBitmapFont font(std::move(bytes), "mutant");
    for (const auto& s : sequences) {
      const auto glyph = font.glyph_for_sequence(s);
      if (!glyph) continue;
      const Image rgba = font.decode_rgba(*glyph);
      if (rgba.width <= 0 || rgba.height <= 0) return "empty image";
    }
    return "";
  } catch (const mentor::Error& e) {
    return e.what();
  }
}

}  // namespace

// ---- emoji-test.txt ----------------------------------------------------------------------------

TEST_CASE("emoji-test.txt: counts, names, groups", "[emoji]") {
  EMOJI_TEST_OR_SKIP();
  const std::string text = read_text(data::emoji_test_default_path());
  const auto entries = data::parse_emoji_test(text);
  const int64_t fully_qualified = static_cast<int64_t>(
      std::count_if(entries.begin(), entries.end(), [](const data::EmojiTestEntry& e) {
        return e.status == data::EmojiStatus::fully_qualified;
      }));
  CHECK(fully_qualified == count_fully_qualified_lines(text));
  // The file's own total ("# fully-qualified : 3655" in Unicode 15.0).
  const size_t total_at = text.find("# fully-qualified : ");
  REQUIRE(total_at != std::string::npos);
  CHECK(fully_qualified == std::stoll(text.substr(total_at + 20)));
  CHECK(real_set().fully_qualified_count() == fully_qualified);

  struct Known {
    std::u32string code_points;
    const char* name;
    const char* group;
    const char* subgroup;
  };
  for (const Known& known :
       std::vector<Known>{{U"\U0001F34E", "red apple", "Food & Drink", "food-fruit"},
                          {U"\U0001F966", "broccoli", "Food & Drink", "food-vegetable"},
                          {U"\U0001F44D\U0001F3FD", "thumbs up: medium skin tone", "People & Body",
                           "hand-fingers-closed"},
                          {U"\U0001F469\U0001F3FF\u200D\U0001F4BB",
                           "woman technologist: dark skin tone", "People & Body", "person-role"},
                          {U"\U0001F1EB\U0001F1F7", "flag: France", "Flags", "country-flag"},
                          {U"\u2764\uFE0F", "red heart", "Smileys & Emotion", "heart"}}) {
    CAPTURE(known.name);
    const auto index = real_set().find(known.code_points);
    REQUIRE(index.has_value());
    const data::Emoji& emoji = real_set().at(*index);
    CHECK(emoji.name == known.name);
    CHECK(emoji.group == known.group);
    CHECK(emoji.subgroup == known.subgroup);
    CHECK(real_set().find_name(known.name) == index);
  }
}

TEST_CASE("parse_emoji_test: the line format and its errors", "[emoji]") {
  const auto entries = data::parse_emoji_test(
      "# group: Food & Drink\n# subgroup: food-fruit\n"
      "1F34E   ; fully-qualified     # \xF0\x9F\x8D\x8E E0.6 red apple\r\n"
      "\n263A ; unqualified # \xE2\x98\xBA E0.6 smiling face\n");
  REQUIRE(entries.size() == 2);
  CHECK(entries[0].code_points == U"\U0001F34E");
  CHECK(entries[0].name == "red apple");
  CHECK(entries[0].version == "E0.6");
  CHECK(entries[0].group == "Food & Drink");
  CHECK(entries[0].subgroup == "food-fruit");
  CHECK(entries[1].status == data::EmojiStatus::unqualified);
  CHECK_THROWS_WITH(data::parse_emoji_test("# x\n1F34G ; fully-qualified # x E0.6 y\n", "t.txt"),
                    Catch::Contains("t.txt line 2") && Catch::Contains("1F34G"));
  CHECK_THROWS_WITH(data::parse_emoji_test("1F34E fully-qualified\n"), Catch::Contains("line 1"));
  CHECK_THROWS_WITH(data::parse_emoji_test("1F34E ; odd # x E0.6 y\n"),
                    Catch::Contains("unknown status 'odd'"));
}

// ---- The font
// ------------------------------------------------------------------------------------

TEST_CASE("Noto Color Emoji: tables, strike and PNG bitmaps", "[emoji]") {
  EMOJI_TEST_OR_SKIP();
  const ot::ColorBitmapFont& font = real_set().font();
  std::set<std::string> tags;
  for (const auto& t : font.tables()) tags.insert(t.tag);
  for (const char* tag : {"cmap", "CBLC", "CBDT", "GSUB"}) CHECK(tags.count(tag) == 1);
  CHECK(font.cmap_format() == 12);
  CHECK(font.ppem_y() == 109);  // Noto's one strike
  // Most fully-qualified emoji render (2.042 covers all of Emoji 15.0).
  const data::EmojiSet& set = real_set();
  CHECK(set.size() >= set.fully_qualified_count() * 98 / 100);
  CHECK(set.size() + static_cast<int64_t>(set.unrendered().size()) == set.fully_qualified_count());
  // Every rendered emoji's PNG says (in its IHDR) the size its CBDT metrics say: 136 x 128.
  int64_t strike_sized = 0;
  for (const data::Emoji& emoji : set.emoji()) {
    const ot::GlyphBitmap bitmap = font.bitmap(emoji.glyph);
    const auto [width, height] = png_size(bitmap.png);
    if (width != bitmap.width || height != bitmap.height) {
      FAIL_CHECK(emoji.name << ": PNG " << width << "x" << height << ", metrics " << bitmap.width
                            << "x" << bitmap.height);
    }
    strike_sized += width == 136 && height == 128;
  }
  CHECK(strike_sized == set.size());
  // Decoding: a few known glyphs to 136 x 128 RGBA with transparent corners.
  for (const std::u32string& s : subset_sequences()) {
    const Image rgba = set.rgba(*set.find(s));
    CHECK(rgba.width == 136);
    CHECK(rgba.height == 128);
    CHECK(rgba.channels == 4);
    CHECK(int{rgba.at(0, 0, 3)} == 0);
  }
  CHECK(font.glyph_for(U'A') == 0);  // no Latin letters in an emoji font
  CHECK(font.glyph_for(0x10FFFF) == 0);
}

TEST_CASE("GSUB ligatures: skin tones, ZWJ roles and flags resolve to their own glyphs",
          "[emoji]") {
  EMOJI_TEST_OR_SKIP();
  const ot::ColorBitmapFont& font = real_set().font();
  const uint16_t thumbs_up = font.glyph_for(0x1F44D);
  const uint16_t dark = font.glyph_for(0x1F3FF);
  REQUIRE(font.has_bitmap(thumbs_up));
  // Without the ligature the sequence would stay two glyphs.
  const auto toned = font.glyph_for_sequence(U"\U0001F44D\U0001F3FF");
  REQUIRE(toned.has_value());
  CHECK(*toned != thumbs_up);
  CHECK(*toned != dark);
  CHECK(font.shape(U"\U0001F44D\U0001F3FF") == std::vector<uint16_t>{*toned});
  // The five tones are five different glyphs.
  std::set<uint16_t> tones;
  for (char32_t tone = 0x1F3FB; tone <= 0x1F3FF; ++tone)
    tones.insert(font.glyph_for_sequence(std::u32string{0x1F44D, tone}).value_or(0));
  CHECK(tones.size() == 5);
  CHECK(tones.count(0) == 0);
  // A ZWJ role sequence: woman + ZWJ + laptop is one glyph, neither the woman's nor the laptop's.
  const auto technologist = font.glyph_for_sequence(U"\U0001F469\u200D\U0001F4BB");
  REQUIRE(technologist.has_value());
  CHECK(*technologist != font.glyph_for(0x1F469));
  CHECK(*technologist != font.glyph_for(0x1F4BB));
  // Regional indicators F + R: the flag of France; England's tag sequence.
  const auto france = font.glyph_for_sequence(U"\U0001F1EB\U0001F1F7");
  const auto england = font.glyph_for_sequence(
      U"\U0001F3F4\U000E0067\U000E0062\U000E0065\U000E006E\U000E0067\U000E007F");
  REQUIRE(france.has_value());
  REQUIRE(england.has_value());
  CHECK(*france != *england);
  CHECK(*england != font.glyph_for(0x1F3F4));
  // Unknown sequences do not resolve.
  CHECK_FALSE(font.glyph_for_sequence(U"\U0001F34E\U0001F3FF").has_value());
  CHECK_FALSE(font.glyph_for_sequence(U"").has_value());
}

// ---- Pictures
// ------------------------------------------------------------------------------------

TEST_CASE("Emoji pictures: dominant colours, backgrounds, resolution", "[emoji]") {
  EMOJI_TEST_OR_SKIP();
  const data::EmojiSet& set = real_set();
  const auto apple = hue_fractions(set.rgba(*set.find(U"\U0001F34E")));
  const auto broccoli = hue_fractions(set.rgba(*set.find(U"\U0001F966")));
  const auto blue_heart = hue_fractions(set.rgba(*set.find(U"\U0001F499")));
  CAPTURE(apple.count(Hue::red) ? apple.at(Hue::red) : 0.0,
          broccoli.count(Hue::green) ? broccoli.at(Hue::green) : 0.0);
  CHECK(apple.at(Hue::red) > 0.5);
  CHECK(apple.count(Hue::blue) == 0);
  CHECK(broccoli.at(Hue::green) > 0.5);
  CHECK(broccoli.count(Hue::red) == 0);
  CHECK(blue_heart.at(Hue::blue) > 0.5);

  // Over white and over black: the corners are the background, the centre is the apple's red.
  const int64_t index = *set.find(U"\U0001F34E");
  for (const data::Rgb8 background : {data::Rgb8{255, 255, 255}, data::Rgb8{0, 0, 0}}) {
    const Image image = set.image(index, 64, background);
    REQUIRE(image.width == 64);
    REQUIRE(image.height == 64);
    REQUIRE(image.channels == 3);
    for (int c = 0; c < 3; ++c) CHECK(image.at(0, 0, c) == background[static_cast<size_t>(c)]);
    CHECK(hue(image.at(36, 32, 0), image.at(36, 32, 1), image.at(36, 32, 2)) == Hue::red);
  }
  // At the glyph's own longer side no resampling happens: the composite is exact.
  const Image rgba = set.rgba(index);
  const Image full = set.image(index, 136);
  const int top = (136 - 128) / 2;
  for (int y = 0; y < 128; y += 7)
    for (int x = 0; x < 136; x += 5) {
      const int a = rgba.at(y, x, 3);
      for (int c = 0; c < 3; ++c)
        CHECK(int{full.at(top + y, x, c)} == (rgba.at(y, x, c) * a + 255 * (255 - a) + 127) / 255);
    }
  CHECK_THROWS_WITH(set.image(index, 0), Catch::Contains("resolution 0"));
  CHECK_THROWS_WITH(set.at(set.size()), Catch::Contains("outside"));
}

TEST_CASE("Skin-tone variants recolour the same subject", "[emoji]") {
  EMOJI_TEST_OR_SKIP();
  const data::EmojiSet& set = real_set();
  // Noto's default skin is yellow; a skin-tone variant recolours exactly those pixels (and, for
  // people, the hair), with the same silhouette.
  auto is_default_skin = [](int r, int g, int b) {
    return r > 180 && g > 120 && b < 120 && r > b + 100;
  };
  struct Change {
    double alpha_changed = 0;     // of all pixels
    double colour_changed = 0;    // of opaque pixels
    double changed_are_skin = 0;  // of the changed pixels: default skin in the base
    double skin_unchanged = 0;    // of the base's skin pixels: the same in the variant
  };
  auto compare = [&](const Image& a, const Image& b) {
    REQUIRE(a.width == b.width);
    REQUIRE(a.height == b.height);
    double alpha = 0, colour = 0, opaque = 0, changed_skin = 0, skin = 0, skin_same = 0;
    for (int y = 0; y < a.height; ++y)
      for (int x = 0; x < a.width; ++x) {
        alpha += std::abs(a.at(y, x, 3) - b.at(y, x, 3)) > 64;
        if (a.at(y, x, 3) < 200 || b.at(y, x, 3) < 200) continue;
        ++opaque;
        int d = 0;
        for (int c = 0; c < 3; ++c) d = std::max(d, std::abs(a.at(y, x, c) - b.at(y, x, c)));
        const bool base_skin = is_default_skin(a.at(y, x, 0), a.at(y, x, 1), a.at(y, x, 2));
        skin += base_skin;
        colour += d > 24;
        changed_skin += d > 24 && base_skin;
        skin_same += d <= 24 && base_skin;
      }
    return Change{alpha / (a.width * a.height), colour / opaque, changed_skin / colour,
                  skin_same / skin};
  };
  // A hand: the silhouette stays, the skin (all of it) changes colour.
  const Change hand =
      compare(set.rgba(*set.find(U"\U0001F44D")), set.rgba(*set.find(U"\U0001F44D\U0001F3FF")));
  // A technologist: the skin changes, the laptop and clothes do not.
  const Change technologist = compare(set.rgba(*set.find(U"\U0001F469\u200D\U0001F4BB")),
                                      set.rgba(*set.find(U"\U0001F469\U0001F3FF\u200D\U0001F4BB")));
  CAPTURE(hand.alpha_changed, hand.colour_changed, hand.changed_are_skin, hand.skin_unchanged);
  CAPTURE(technologist.alpha_changed, technologist.colour_changed, technologist.changed_are_skin,
          technologist.skin_unchanged);
  CHECK(hand.alpha_changed < 0.02);
  CHECK(hand.colour_changed > 0.5);
  CHECK(hand.changed_are_skin > 0.95);
  CHECK(hand.skin_unchanged < 0.01);
  CHECK(technologist.alpha_changed < 0.05);
  CHECK(technologist.colour_changed > 0.05);
  CHECK(technologist.colour_changed < 0.6);
  CHECK(technologist.changed_are_skin > 0.25);
  CHECK(technologist.skin_unchanged < 0.01);
}

TEST_CASE("Variant groups: one subject, several forms", "[emoji]") {
  CHECK(data::emoji_variant_base(U"\U0001F44D\U0001F3FF") == U"\U0001F44D");
  CHECK(data::emoji_variant_base(U"\U0001F469\U0001F3FF\u200D\U0001F4BB") ==
        U"\U0001F9D1\u200D\U0001F4BB");
  CHECK(data::emoji_variant_base(U"\U0001F3C3\U0001F3FD\u200D\u2642\uFE0F") == U"\U0001F3C3");
  CHECK(data::emoji_variant_base(U"\U0001F468") == U"\U0001F9D1");
  // Families keep their members; the female sign alone is its own subject.
  CHECK(data::emoji_variant_base(U"\U0001F468\u200D\U0001F466") == U"\U0001F468\u200D\U0001F466");
  CHECK(data::emoji_variant_base(U"\u2640\uFE0F") == U"\u2640");

  EMOJI_TEST_OR_SKIP();
  const data::EmojiSet& set = real_set();
  auto group_of = [&](std::u32string_view member) -> const data::EmojiVariantGroup* {
    const int64_t index = *set.find(member);
    for (const auto& group : set.variant_groups())
      if (std::find(group.members.begin(), group.members.end(), index) != group.members.end())
        return &group;
    return nullptr;
  };
  const auto* thumbs = group_of(U"\U0001F44D\U0001F3FB");
  REQUIRE(thumbs != nullptr);
  CHECK(thumbs->members.size() == 6);  // base + 5 tones
  CHECK(thumbs->name == "thumbs up");
  REQUIRE(thumbs->base_index.has_value());
  CHECK(set.at(*thumbs->base_index).code_points == U"\U0001F44D");
  const auto* technologists = group_of(U"\U0001F469\u200D\U0001F4BB");
  REQUIRE(technologists != nullptr);
  CHECK(technologists->members.size() == 18);  // person, man, woman x (none + 5 tones)
  CHECK(technologists->name == "technologist");
  for (int64_t m : technologists->members)
    CHECK(set.at(m).name.find("technologist") != std::string::npos);
  CHECK(group_of(U"\U0001F34E") == nullptr);  // an apple has no variants
  size_t expected_pairs = 0;
  for (const auto& group : set.variant_groups()) {
    CHECK(group.members.size() >= 2);
    expected_pairs += group.members.size() * (group.members.size() - 1) / 2;
  }
  const auto pairs = set.variant_pairs();
  CHECK(pairs.size() == expected_pairs);
  for (size_t i = 0; i < pairs.size(); i += 97)
    CHECK(data::emoji_variant_base(set.at(pairs[i].reference).code_points) ==
          data::emoji_variant_base(set.at(pairs[i].target).code_points));

  // The datasets.
  const auto shared = std::shared_ptr<const data::EmojiSet>(&set, [](const data::EmojiSet*) {});
  const data::EmojiDataset images(shared, 32);
  CHECK(images.size() == set.size());
  const data::EmojiImage apple = images.get(*set.find(U"\U0001F34E"));
  CHECK(apple.name == "red apple");
  CHECK(apple.image.width == 32);
  const data::EmojiPairDataset pair_set(shared, 48);
  CHECK(pair_set.size() == static_cast<int64_t>(pairs.size()));
  const data::EmojiPairSample sample = pair_set.get(0);
  CHECK(sample.reference.image.width == 48);
  CHECK(sample.reference.index == pairs[0].reference);
  CHECK(sample.target.index == pairs[0].target);
  CHECK(sample.reference.image.data != sample.target.image.data);
}

// ---- Written fonts
// ---------------------------------------------------------------------------------

TEST_CASE("Small fonts written from the specification read back to the real glyphs", "[emoji]") {
  EMOJI_TEST_OR_SKIP();
  const ot::ColorBitmapFont& real = real_set().font();
  for (const auto& [options, sequences] :
       {std::pair{SubsetOptions{12, true, 1}, subset_sequences()},
        std::pair{SubsetOptions{12, false, 2}, subset_sequences()},
        std::pair{SubsetOptions{4, false, 1}, bmp_sequences()},
        std::pair{SubsetOptions{4, true, 2}, bmp_sequences()}}) {
    CAPTURE(options.cmap_format, options.extension_lookup, options.coverage_format);
    const Subset subset = write_subset(real, sequences, options);
    const ot::ColorBitmapFont font(subset.bytes, "subset");
    CHECK(font.cmap_format() == options.cmap_format);
    CHECK(font.ppem_y() == real.ppem_y());
    for (size_t i = 0; i < subset.sequences.size(); ++i) {
      const auto glyph = font.glyph_for_sequence(subset.sequences[i]);
      REQUIRE(glyph.has_value());
      const ot::GlyphBitmap bitmap = font.bitmap(*glyph);
      CHECK(std::vector<uint8_t>(bitmap.png.begin(), bitmap.png.end()) == subset.pngs[i]);
      CHECK(bitmap.width == 136);
      CHECK(bitmap.height == 128);
    }
    // Each CBDT format is used by some glyph.
    std::set<int> formats;
    for (const auto& s : subset.sequences)
      formats.insert(font.bitmap(*font.glyph_for_sequence(s)).image_format);
    CHECK(formats.count(19) == 1);
  }
}

TEST_CASE("Hostile fonts: truncations, bad offsets and bit flips give errors naming the table",
          "[emoji]") {
  EMOJI_TEST_OR_SKIP();
  const ot::ColorBitmapFont& real = real_set().font();
  const Subset subset = write_subset(real, subset_sequences(), SubsetOptions{12, true, 2});
  const std::vector<uint8_t>& good = subset.bytes;
  REQUIRE(exercise(good, subset.sequences).empty());
  std::map<std::string, int> errors_by_table;
  int64_t cases = 0;
  auto run = [&](std::vector<uint8_t> bytes) {
    ++cases;
    const std::string message = exercise(std::move(bytes), subset.sequences);
    if (message.empty()) return;
    if (!names_a_table(message)) FAIL_CHECK("an error without a table's name: " << message);
    for (const char* table : {"table directory", "cmap", "CBLC", "CBDT", "GSUB"})
      if (message.find(table) != std::string::npos) ++errors_by_table[table];
  };
  // The table records (tag, checksum, offset, length) and the tables' extents.
  std::map<std::string, std::pair<uint32_t, uint32_t>> extent;
  const ot::ColorBitmapFont good_font(good, "subset");
  for (const auto& t : good_font.tables()) extent[t.tag] = {t.offset, t.length};
  // 1. Truncated files: every length through the directory and the small tables, then a stride.
  const size_t cbdt_end = extent["CBDT"].first + extent["CBDT"].second;
  for (size_t length = 0; length < good.size(); length += length < 200 ? 1 : 97)
    run(std::vector<uint8_t>(good.begin(), good.begin() + static_cast<std::ptrdiff_t>(length)));
  // 2. Each table made shorter in its record (the file stays whole), at every length of the
  //    small tables and a stride through CBDT.
  for (size_t t = 0; t < extent.size(); ++t) {
    const size_t record = 12 + 16 * t;
    const uint32_t length = uint32_t{good[record + 12]} << 24 | uint32_t{good[record + 13]} << 16 |
                            uint32_t{good[record + 14]} << 8 | good[record + 15];
    for (uint32_t shorter = 0; shorter<length; shorter += length> 4096 ? 61 : 1) {
      std::vector<uint8_t> bytes = good;
      set32(bytes, record + 12, shorter);
      run(std::move(bytes));
    }
  }
  // 3. Offsets and counts made hostile: every 16-bit word of CBLC, GSUB and cmap set to 0xFFFF
  //    and to 0x8000 in turn.
  for (const char* tag : {"CBLC", "GSUB", "cmap"}) {
    const auto [offset, length] = extent[tag];
    for (uint32_t at = 0; at + 1 < length; at += 2)
      for (uint32_t value : {0xFFFFu, 0x8000u}) {
        std::vector<uint8_t> bytes = good;
        set16(bytes, offset + at, value);
        run(std::move(bytes));
      }
  }
  // 4. Random bit flips (seeded), one to four at a time, anywhere but mostly outside the PNGs.
  data::SplitMix64 rng(20240611);
  const uint64_t headers_end = extent["CBDT"].first + 64;
  for (int trial = 0; trial < 3000; ++trial) {
    std::vector<uint8_t> bytes = good;
    const int flips = 1 + static_cast<int>(rng.bounded(4));
    for (int f = 0; f < flips; ++f) {
      uint64_t at = rng.bounded(good.size());
      if (trial % 4 != 0 && at >= extent["CBDT"].first && at < cbdt_end)
        at = at % headers_end;  // fold most flips into the directory, cmap, CBLC and GSUB
      bytes[at] ^= static_cast<uint8_t>(1u << rng.bounded(8));
    }
    run(std::move(bytes));
  }
  INFO(cases << " hostile fonts");
  for (const char* table : {"table directory", "cmap", "CBLC", "CBDT", "GSUB"}) {
    CAPTURE(table);
    CHECK(errors_by_table[table] > 0);
  }

  // The real font with one table cut short in its record: the error names that table.
  const std::vector<uint8_t> real_bytes =
      data::read_file_bytes(data::emoji_font_default_path(), "test");
  const uint16_t tables = static_cast<uint16_t>(real_bytes[4] << 8 | real_bytes[5]);
  for (uint16_t t = 0; t < tables; ++t) {
    const std::string tag(real_bytes.begin() + 12 + 16 * t, real_bytes.begin() + 16 + 16 * t);
    if (tag != "cmap" && tag != "CBLC" && tag != "GSUB") continue;
    CAPTURE(tag);
    std::vector<uint8_t> bytes = real_bytes;
    set32(bytes, 12 + 16 * t + 12, 40);
    CHECK_THROWS_WITH(ot::ColorBitmapFont(std::move(bytes), "cut"),
                      Catch::Contains("OpenType " + tag) && Catch::Contains("offset"));
  }
  CHECK_THROWS_WITH(ot::ColorBitmapFont(
                        std::vector<uint8_t>(real_bytes.begin(), real_bytes.begin() + 5000), "cut"),
                    Catch::Contains("table directory") && Catch::Contains("extends past the end"));
  CHECK_THROWS_WITH(ot::ColorBitmapFont(std::vector<uint8_t>{'t', 't', 'c', 'f', 0, 0}, "ttc"),
                    Catch::Contains("font collection"));
}

}  // namespace test_emoji
