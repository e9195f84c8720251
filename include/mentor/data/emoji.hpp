#pragma once
// The Noto colour emoji as a real image set: pictures out of Debian's fonts-noto-color-emoji
// (/usr/share/fonts/truetype/noto/NotoColorEmoji.ttf, a CBDT/CBLC bitmap font whose glyphs are
// 136 x 128 PNGs in one strike of 109 ppem) named by unicode-data's emoji-test.txt
// (/usr/share/unicode/emoji/emoji-test.txt: every emoji sequence with its status, group, subgroup
// and CLDR name, "thumbs up: medium skin tone"). Skin-tone and gender variants of one subject give
// subject-driven pairs (the same subject, one attribute changed).
//
//   opentype::ColorBitmapFont  a bounds-checked reader of the OpenType tables an emoji font needs:
//                              the table directory, cmap (format 12; format 4 as fallback), CBLC
//                              (the largest strike; index subtable formats 1, 2, 3), CBDT (PNG
//                              glyph images, formats 17, 18, 19) and GSUB ligatures (LookupType 4,
//                              directly or through Extension lookups, type 7) of the ccmp, liga,
//                              clig and rlig features, so that a multi-code-point sequence (skin
//                              tone, ZWJ gender and role sequences, flags) resolves to its glyph.
//   parse_emoji_test           emoji-test.txt's data lines (code points, status, group, subgroup,
//                              name).
//   EmojiSet                   the fully-qualified emoji the font renders, decoded to RGB at a
//                              chosen resolution over a chosen background, and their variant
//                              groups (emoji_variant_base).
//   EmojiDataset, EmojiPairDataset  Datasets for the loader: one emoji image; a variant pair.
//
// The font is untrusted input: every offset and length is checked against its table and the file
// before it is read, and an error names the table, the offset and what was being read. Counts that
// a hostile file could inflate (glyph ranges, coverage, ligatures) are capped. The glyph PNGs go
// through image.hpp's hardened decoder, with a pixel cap.
//
// Paths: MENTOR_EMOJI_FONT and MENTOR_EMOJI_TEST override the two files (as
// MENTOR_FASHION_MNIST_DIR does for Fashion-MNIST); the constructor takes them too.
#include <algorithm>
#include <array>
#include <cstdint>
#include <cstdlib>
#include <filesystem>
#include <map>
#include <memory>
#include <optional>
#include <set>
#include <span>
#include <string>
#include <string_view>
#include <unordered_map>
#include <utility>
#include <vector>

#include "mentor/core/error.hpp"
#include "mentor/data/image.hpp"
#include "mentor/data/loader.hpp"

namespace mentor::data {

namespace opentype {

// The bytes of one table (or of the table directory: the whole file); every read is checked
// against the table's end, and an error names the table, the offset inside it and what was read.
class TableReader {
 public:
  TableReader() = default;
  TableReader(std::span<const uint8_t> bytes, std::string_view tag, uint64_t file_offset)
      : bytes_(bytes), tag_(tag), file_offset_(file_offset) {}

  std::string_view tag() const { return tag_; }
  uint64_t size() const { return bytes_.size(); }

  void require(uint64_t at, uint64_t count, std::string_view what) const {
    MENTOR_CHECK(at <= bytes_.size() && count <= bytes_.size() - at, "OpenType ", tag_, ": ", what,
                 " (", count, " bytes at offset ", at, ") lies outside the ", bytes_.size(),
                 "-byte ", tag_, " (at file offset ", file_offset_, ")");
  }
  uint8_t u8(uint64_t at, std::string_view what) const {
    require(at, 1, what);
    return bytes_[at];
  }
  int8_t i8(uint64_t at, std::string_view what) const { return static_cast<int8_t>(u8(at, what)); }
  uint16_t u16(uint64_t at, std::string_view what) const {
    require(at, 2, what);
    return static_cast<uint16_t>(bytes_[at] << 8 | bytes_[at + 1]);
  }
  int16_t i16(uint64_t at, std::string_view what) const {
    return static_cast<int16_t>(u16(at, what));
  }
  uint32_t u32(uint64_t at, std::string_view what) const {
    require(at, 4, what);
    return uint32_t{bytes_[at]} << 24 | uint32_t{bytes_[at + 1]} << 16 |
           uint32_t{bytes_[at + 2]} << 8 | uint32_t{bytes_[at + 3]};
  }
  std::span<const uint8_t> bytes(uint64_t at, uint64_t count, std::string_view what) const {
    require(at, count, what);
    return bytes_.subspan(at, count);
  }

 private:
  std::span<const uint8_t> bytes_;
  std::string_view tag_;  // a literal or a tag held by the font
  uint64_t file_offset_ = 0;
};

struct TableRecord {
  std::string tag;
  uint32_t offset = 0;
  uint32_t length = 0;
};

// A PNG glyph image as CBDT holds it (the bytes point into the font).
struct GlyphBitmap {
  int width = 0;  // the glyph's metrics (the PNG says its own size too)
  int height = 0;
  int bearing_x = 0;
  int bearing_y = 0;
  int advance = 0;
  int image_format = 0;  // CBDT format: 17 (small metrics), 18 (big metrics), 19 (metrics in CBLC)
  std::span<const uint8_t> png;
};

// Caps on what a hostile file could make the reader enumerate (the real font: 3,967 bitmaps,
// 3,985 ligatures).
inline constexpr uint64_t kMaxGlyphs = 65536;  // glyph ids are 16-bit
inline constexpr uint64_t kMaxLigatures = uint64_t{1} << 20;
inline constexpr uint64_t kMaxLigatureComponents = uint64_t{1} << 22;
// CBDT metrics are 8-bit, so a glyph is at most 255 x 255: anything larger is a hostile PNG.
inline constexpr int64_t kMaxGlyphPixels = 256 * 256;

class ColorBitmapFont {
 public:
  // `name` (the path, usually) appears in errors.
  explicit ColorBitmapFont(std::vector<uint8_t> bytes, std::string name = "<memory>")
      : bytes_(std::move(bytes)), name_(std::move(name)) {
    read_table_directory();
    read_cmap();
    read_cblc();
    if (find_table("GSUB") != nullptr) read_gsub();
  }

  static ColorBitmapFont load(const std::filesystem::path& path) {
    return ColorBitmapFont(read_file_bytes(path, "ColorBitmapFont"), path.string());
  }

  const std::string& name() const { return name_; }
  const std::vector<TableRecord>& tables() const { return tables_; }
  int cmap_format() const { return cmap_format_; }  // the subtable used: 12 or 4
  int ppem_x() const { return ppem_x_; }
  int ppem_y() const { return ppem_y_; }
  int64_t bitmap_count() const { return bitmap_count_; }
  int64_t ligature_count() const { return ligature_count_; }

  // The glyph of one code point, 0 (.notdef) when the font has none.
  uint16_t glyph_for(char32_t code_point) const {
    auto it = std::upper_bound(cmap_.begin(), cmap_.end(), code_point,
                               [](char32_t c, const CmapRange& range) { return c < range.first; });
    if (it == cmap_.begin()) return 0;
    --it;
    if (code_point > it->last) return 0;
    return static_cast<uint16_t>(it->glyph + (code_point - it->first));
  }

  // cmap, then the ligature lookups in lookup-list order (the OpenType order of application).
  std::vector<uint16_t> shape(std::u32string_view code_points) const {
    std::vector<uint16_t> glyphs;
    glyphs.reserve(code_points.size());
    for (char32_t c : code_points) glyphs.push_back(glyph_for(c));
    for (const LigatureLookup& lookup : lookups_) apply_ligatures(lookup, glyphs);
    return glyphs;
  }

  // The glyph a sequence renders as: one glyph with a bitmap after shaping. Emoji fonts built by
  // nototools drop the variation selectors from their ligatures (a renderer skips them as default
  // ignorables), so a sequence that does not reduce to one glyph is retried without U+FE0E/FE0F.
  std::optional<uint16_t> glyph_for_sequence(std::u32string_view code_points) const {
    if (code_points.empty()) return std::nullopt;
    std::vector<uint16_t> glyphs = shape(code_points);
    if (glyphs.size() == 1 && has_bitmap(glyphs[0])) return glyphs[0];
    std::u32string stripped;
    for (char32_t c : code_points)
      if (c != 0xFE0E && c != 0xFE0F) stripped += c;
    if (stripped.size() == code_points.size() || stripped.empty()) return std::nullopt;
    glyphs = shape(stripped);
    if (glyphs.size() == 1 && has_bitmap(glyphs[0])) return glyphs[0];
    return std::nullopt;
  }

  bool has_bitmap(uint16_t glyph) const {
    return glyph < locations_.size() && locations_[glyph].length != 0;
  }

  // The CBDT record of a glyph with a bitmap (errors name CBDT and the glyph).
  GlyphBitmap bitmap(uint16_t glyph) const {
    MENTOR_CHECK(has_bitmap(glyph), "OpenType CBLC of ", name_, ": glyph ", glyph,
                 " has no bitmap in the strike of ", ppem_y_, " ppem");
    const GlyphLocation& at = locations_[glyph];
    const TableReader cbdt = table_reader("CBDT");
    const std::string what = "glyph " + std::to_string(glyph) + " record";
    GlyphBitmap bitmap;
    bitmap.image_format = at.image_format;
    uint64_t header = 0;
    if (at.image_format == 17) {  // smallGlyphMetrics, uint32 dataLen, data
      bitmap.height = cbdt.u8(at.offset, what);
      bitmap.width = cbdt.u8(at.offset + 1, what);
      bitmap.bearing_x = cbdt.i8(at.offset + 2, what);
      bitmap.bearing_y = cbdt.i8(at.offset + 3, what);
      bitmap.advance = cbdt.u8(at.offset + 4, what);
      header = 5;
    } else if (at.image_format == 18) {  // bigGlyphMetrics (horizontal half used), dataLen, data
      bitmap.height = cbdt.u8(at.offset, what);
      bitmap.width = cbdt.u8(at.offset + 1, what);
      bitmap.bearing_x = cbdt.i8(at.offset + 2, what);
      bitmap.bearing_y = cbdt.i8(at.offset + 3, what);
      bitmap.advance = cbdt.u8(at.offset + 4, what);
      header = 8;
    } else {  // 19: the metrics are the index subtable's
      bitmap.height = at.metrics[0];
      bitmap.width = at.metrics[1];
      bitmap.bearing_x = static_cast<int8_t>(at.metrics[2]);
      bitmap.bearing_y = static_cast<int8_t>(at.metrics[3]);
      bitmap.advance = at.metrics[4];
    }
    const uint32_t data_length = cbdt.u32(at.offset + header, what + " data length");
    MENTOR_CHECK(header + 4 + uint64_t{data_length} <= at.length, "OpenType CBDT of ", name_,
                 ": glyph ", glyph, " (format ", at.image_format, ", at offset ", at.offset,
                 ") says its PNG holds ", data_length, " bytes, its CBLC record has room for ",
                 at.length < header + 4 ? 0 : at.length - header - 4);
    bitmap.png = cbdt.bytes(at.offset + header + 4, data_length, what + " PNG data");
    return bitmap;
  }

  // The glyph's PNG decoded to RGBA.
  Image decode_rgba(uint16_t glyph) const {
    const GlyphBitmap b = bitmap(glyph);
    return decode_image(b.png, 4,
                        "OpenType CBDT glyph " + std::to_string(glyph) + " PNG of " + name_,
                        kMaxGlyphPixels);
  }

 private:
  struct CmapRange {
    char32_t first = 0;
    char32_t last = 0;
    uint32_t glyph = 0;  // the glyph of `first`
  };
  struct GlyphLocation {
    uint64_t offset = 0;  // in CBDT
    uint64_t length = 0;  // 0: no bitmap
    int image_format = 0;
    std::array<uint8_t, 5> metrics{};  // index format 2's: height, width, bearing x, y, advance
  };
  struct Ligature {
    uint16_t glyph = 0;
    std::vector<uint16_t> rest;  // components after the first
  };
  // One LigatureSubst subtable: first component -> its ligatures, in the font's order (the first
  // that matches wins; fonts list longer ones first).
  using LigatureSubtable = std::unordered_map<uint16_t, std::vector<Ligature>>;
  struct LigatureLookup {
    std::vector<LigatureSubtable> subtables;
  };

  const TableRecord* find_table(std::string_view tag) const {
    for (const TableRecord& t : tables_)
      if (t.tag == tag) return &t;
    return nullptr;
  }

  TableReader table_reader(std::string_view tag) const {
    const TableRecord* t = find_table(tag);
    MENTOR_CHECK(t != nullptr, "OpenType table directory of ", name_, ": no ", tag,
                 " table (an emoji font needs cmap, CBLC and CBDT)");
    return TableReader(std::span<const uint8_t>(bytes_).subspan(t->offset, t->length), t->tag,
                       t->offset);
  }

  void read_table_directory() {
    const TableReader file(bytes_, "table directory", 0);
    const uint32_t version = file.u32(0, "sfnt version");
    MENTOR_CHECK(version != 0x74746366, "OpenType table directory of ", name_,
                 ": a font collection (ttcf); one font is expected");
    MENTOR_CHECK(version == 0x00010000 || version == 0x74727565 || version == 0x4F54544F,
                 "OpenType table directory of ", name_, ": sfnt version 0x", std::hex, version,
                 " is not 0x00010000, 'true' or 'OTTO' (not an OpenType font)");
    const uint16_t count = file.u16(4, "numTables");
    file.require(12, 16 * uint64_t{count}, "table records");
    for (uint16_t i = 0; i < count; ++i) {
      const uint64_t at = 12 + 16 * uint64_t{i};
      const auto tag = file.bytes(at, 4, "table tag");
      TableRecord t{std::string(tag.begin(), tag.end()), file.u32(at + 8, "table offset"),
                    file.u32(at + 12, "table length")};
      MENTOR_CHECK(uint64_t{t.offset} + t.length <= bytes_.size(), "OpenType table directory of ",
                   name_, ": table '", t.tag, "' (record ", i, ") at offset ", t.offset,
                   " with length ", t.length, " extends past the end of the ", bytes_.size(),
                   "-byte file");
      MENTOR_CHECK(find_table(t.tag) == nullptr, "OpenType table directory of ", name_, ": table '",
                   t.tag, "' is listed twice (record ", i, ")");
      tables_.push_back(std::move(t));
    }
  }

  // ---- cmap: code point -> glyph

  void read_cmap() {
    const TableReader cmap = table_reader("cmap");
    const uint16_t count = cmap.u16(2, "numTables");
    uint64_t format12 = 0, format4 = 0;
    bool has12 = false, has4 = false;
    std::string seen;
    for (uint16_t i = 0; i < count; ++i) {
      const uint64_t at = 4 + 8 * uint64_t{i};
      const uint16_t platform = cmap.u16(at, "encoding record platformID");
      const uint16_t encoding = cmap.u16(at + 2, "encoding record encodingID");
      const uint32_t offset = cmap.u32(at + 4, "encoding record subtable offset");
      const uint16_t format = cmap.u16(offset, "subtable format");
      seen += (seen.empty() ? "" : ", ") + std::to_string(platform) + "/" +
              std::to_string(encoding) + " format " + std::to_string(format);
      const bool unicode = platform == 0 || (platform == 3 && (encoding == 1 || encoding == 10));
      if (unicode && format == 12 && !has12) has12 = true, format12 = offset;
      if (unicode && format == 4 && !has4) has4 = true, format4 = offset;
    }
    MENTOR_CHECK(has12 || has4, "OpenType cmap of ", name_,
                 ": no Unicode subtable of format 12 or 4 (found: ", seen.empty() ? "none" : seen,
                 ")");
    if (has12) {
      read_cmap12(cmap, format12);
    } else {
      read_cmap4(cmap, format4);
    }
  }

  void read_cmap12(const TableReader& cmap, uint64_t at) {
    cmap_format_ = 12;
    const uint32_t groups = cmap.u32(at + 12, "format 12 numGroups");
    cmap.require(at + 16, 12 * uint64_t{groups}, "format 12 groups");
    cmap_.reserve(groups);
    for (uint32_t g = 0; g < groups; ++g) {
      const uint64_t p = at + 16 + 12 * uint64_t{g};
      const CmapRange range{cmap.u32(p, "group start"), cmap.u32(p + 4, "group end"),
                            cmap.u32(p + 8, "group start glyph")};
      MENTOR_CHECK(range.first <= range.last && range.last <= 0x10FFFF, "OpenType cmap of ", name_,
                   ": format 12 group ", g, " at offset ", p, " covers U+", std::hex,
                   uint32_t{range.first}, "..U+", uint32_t{range.last},
                   " (start after end, or past U+10FFFF)");
      MENTOR_CHECK(uint64_t{range.glyph} + (range.last - range.first) < kMaxGlyphs,
                   "OpenType cmap of ", name_, ": format 12 group ", g, " at offset ", p,
                   " maps to glyphs past 65535 (start glyph ", range.glyph, ")");
      MENTOR_CHECK(cmap_.empty() || range.first > cmap_.back().last, "OpenType cmap of ", name_,
                   ": format 12 group ", g, " at offset ", p,
                   " is not after the previous group (groups must be sorted and disjoint)");
      cmap_.push_back(range);
    }
  }

  // Format 4 (BMP only), expanded to ranges of consecutive glyphs.
  void read_cmap4(const TableReader& cmap, uint64_t at) {
    cmap_format_ = 4;
    const uint16_t seg_x2 = cmap.u16(at + 6, "format 4 segCountX2");
    MENTOR_CHECK(seg_x2 != 0 && seg_x2 % 2 == 0, "OpenType cmap of ", name_,
                 ": format 4 segCountX2 at offset ", at + 6, " is ", seg_x2,
                 " (must be even and positive)");
    const uint64_t segments = seg_x2 / 2;
    const uint64_t ends = at + 14, starts = ends + seg_x2 + 2, deltas = starts + seg_x2,
                   range_offsets = deltas + seg_x2;
    cmap.require(ends, 4 * uint64_t{seg_x2} + 2, "format 4 segment arrays");
    char32_t previous_end = 0;
    for (uint64_t s = 0; s < segments; ++s) {
      const uint16_t end = cmap.u16(ends + 2 * s, "format 4 endCode");
      const uint16_t start = cmap.u16(starts + 2 * s, "format 4 startCode");
      const uint16_t delta = cmap.u16(deltas + 2 * s, "format 4 idDelta");
      const uint64_t range_at = range_offsets + 2 * s;
      const uint16_t range_offset = cmap.u16(range_at, "format 4 idRangeOffset");
      MENTOR_CHECK(start <= end && (s == 0 || start > previous_end), "OpenType cmap of ", name_,
                   ": format 4 segment ", s, " covers ", start, "..", end,
                   " (start after end, or not after the previous segment)");
      previous_end = end;
      for (uint32_t c = start; c <= end && c != 0xFFFF; ++c) {
        uint32_t glyph = 0;
        if (range_offset == 0) {
          glyph = (c + delta) & 0xFFFF;
        } else {
          glyph = cmap.u16(range_at + range_offset + 2 * uint64_t{c - start},
                           "format 4 glyphIdArray entry");
          if (glyph != 0) glyph = (glyph + delta) & 0xFFFF;
        }
        if (glyph == 0) continue;
        if (!cmap_.empty() && cmap_.back().last + 1 == c &&
            cmap_.back().glyph + (cmap_.back().last - cmap_.back().first) + 1 == glyph) {
          cmap_.back().last = c;
        } else {
          cmap_.push_back(CmapRange{c, c, glyph});
        }
      }
    }
  }

  // ---- CBLC: glyph -> where its bitmap lies in CBDT

  void read_cblc() {
    const TableReader cblc = table_reader("CBLC");
    const TableReader cbdt = table_reader("CBDT");
    const uint16_t major = cblc.u16(0, "majorVersion");
    MENTOR_CHECK(major == 2 || major == 3, "OpenType CBLC of ", name_, ": majorVersion ", major,
                 " at offset 0 (2 or 3 expected)");
    const uint16_t cbdt_major = cbdt.u16(0, "majorVersion");
    MENTOR_CHECK(cbdt_major == 2 || cbdt_major == 3, "OpenType CBDT of ", name_, ": majorVersion ",
                 cbdt_major, " at offset 0 (2 or 3 expected)");
    const uint32_t strikes = cblc.u32(4, "numSizes");
    MENTOR_CHECK(strikes > 0, "OpenType CBLC of ", name_, ": numSizes is 0 (no strike)");
    cblc.require(8, 48 * uint64_t{strikes}, "BitmapSize records");
    uint64_t strike = 8;  // the largest (ppemY) strike: the sharpest pictures
    for (uint32_t s = 1; s < strikes; ++s) {
      const uint64_t at = 8 + 48 * uint64_t{s};
      if (cblc.u8(at + 45, "ppemY") > cblc.u8(strike + 45, "ppemY")) strike = at;
    }
    ppem_x_ = cblc.u8(strike + 44, "ppemX");
    ppem_y_ = cblc.u8(strike + 45, "ppemY");
    const uint32_t array_at = cblc.u32(strike, "indexSubTableArrayOffset");
    const uint32_t subtables = cblc.u32(strike + 8, "numberOfIndexSubTables");
    cblc.require(array_at, 8 * uint64_t{subtables}, "IndexSubTableArray");
    uint64_t covered = 0;
    for (uint32_t i = 0; i < subtables; ++i) {
      const uint64_t record = array_at + 8 * uint64_t{i};
      const uint16_t first = cblc.u16(record, "IndexSubTableRecord firstGlyphIndex");
      const uint16_t last = cblc.u16(record + 2, "IndexSubTableRecord lastGlyphIndex");
      const uint64_t at =
          array_at + uint64_t{cblc.u32(record + 4, "additionalOffsetToIndexSubtable")};
      MENTOR_CHECK(first <= last, "OpenType CBLC of ", name_, ": index subtable ", i,
                   " (record at offset ", record, ") has firstGlyphIndex ", first,
                   " after lastGlyphIndex ", last);
      covered += uint64_t{last} - first + 1;
      MENTOR_CHECK(covered <= kMaxGlyphs, "OpenType CBLC of ", name_, ": index subtables up to ", i,
                   " cover more than ", kMaxGlyphs, " glyphs (overlapping ranges)");
      read_index_subtable(cblc, cbdt, i, at, first, last);
    }
  }

  void read_index_subtable(const TableReader& cblc, const TableReader& cbdt, uint32_t index,
                           uint64_t at, uint16_t first, uint16_t last) {
    const uint16_t index_format = cblc.u16(at, "indexFormat");
    const uint16_t image_format = cblc.u16(at + 2, "imageFormat");
    const uint64_t image_data = cblc.u32(at + 4, "imageDataOffset");
    MENTOR_CHECK(image_format == 17 || image_format == 18 || image_format == 19,
                 "OpenType CBLC of ", name_, ": index subtable ", index, " at offset ", at,
                 " has image format ", image_format, " (the PNG formats 17, 18, 19 are read)");
    MENTOR_CHECK(index_format >= 1 && index_format <= 3, "OpenType CBLC of ", name_,
                 ": index subtable ", index, " at offset ", at, " has index format ", index_format,
                 " (formats 1, 2 and 3 are read)");
    MENTOR_CHECK((image_format == 19) == (index_format == 2), "OpenType CBLC of ", name_,
                 ": index subtable ", index, " at offset ", at, " pairs index format ",
                 index_format, " with image format ", image_format,
                 " (format 19 takes its metrics from index format 2; 17 and 18 carry their own)");
    if (locations_.size() <= last) locations_.resize(uint64_t{last} + 1);
    const uint64_t glyphs = uint64_t{last} - first + 1;
    auto place = [&](uint64_t g, uint64_t begin, uint64_t end, const std::array<uint8_t, 5>& m) {
      MENTOR_CHECK(begin <= end, "OpenType CBLC of ", name_, ": index subtable ", index,
                   " at offset ", at, ": glyph ", first + g, "'s offset ", begin,
                   " is after the next glyph's ", end);
      MENTOR_CHECK(image_data + end <= cbdt.size(), "OpenType CBLC of ", name_, ": index subtable ",
                   index, " at offset ", at, " places glyph ", first + g, " at CBDT bytes ",
                   image_data + begin, "..", image_data + end, ", past the end of the ",
                   cbdt.size(), "-byte CBDT");
      GlyphLocation& location = locations_[first + g];
      if (location.length != 0 || begin == end) return;  // the first strike entry wins
      location = GlyphLocation{image_data + begin, end - begin, image_format, m};
      ++bitmap_count_;
    };
    if (index_format == 1 || index_format == 3) {  // offsets[glyphs + 1], uint32 or uint16
      const uint64_t width = index_format == 1 ? 4 : 2;
      cblc.require(at + 8, width * (glyphs + 1), "index subtable offset array");
      auto offset = [&](uint64_t k) -> uint64_t {
        return width == 4 ? cblc.u32(at + 8 + 4 * k, "sbitOffset")
                          : cblc.u16(at + 8 + 2 * k, "sbitOffset");
      };
      for (uint64_t g = 0; g < glyphs; ++g) place(g, offset(g), offset(g + 1), {});
    } else {  // 2: every glyph imageSize bytes, one set of big metrics
      const uint64_t image_size = cblc.u32(at + 8, "format 2 imageSize");
      cblc.require(at + 12, 8, "format 2 bigMetrics");
      const std::array<uint8_t, 5> metrics = {
          cblc.u8(at + 12, "bigMetrics height"), cblc.u8(at + 13, "bigMetrics width"),
          cblc.u8(at + 14, "bigMetrics horiBearingX"), cblc.u8(at + 15, "bigMetrics horiBearingY"),
          cblc.u8(at + 16, "bigMetrics horiAdvance")};
      for (uint64_t g = 0; g < glyphs; ++g) place(g, g * image_size, (g + 1) * image_size, metrics);
    }
  }

  // ---- GSUB: ligatures

  void read_gsub() {
    const TableReader gsub = table_reader("GSUB");
    const uint16_t major = gsub.u16(0, "majorVersion");
    MENTOR_CHECK(major == 1, "OpenType GSUB of ", name_, ": majorVersion ", major,
                 " at offset 0 (1 expected)");
    const uint64_t features = gsub.u16(6, "featureListOffset");
    const uint64_t lookups = gsub.u16(8, "lookupListOffset");
    // The lookups of the features a renderer applies to emoji by default, in lookup-list order.
    std::set<uint16_t> wanted;
    const uint16_t feature_count = gsub.u16(features, "FeatureList featureCount");
    for (uint16_t f = 0; f < feature_count; ++f) {
      const uint64_t record = features + 2 + 6 * uint64_t{f};
      const auto tag_bytes = gsub.bytes(record, 4, "FeatureRecord tag");
      const std::string_view tag(reinterpret_cast<const char*>(tag_bytes.data()), 4);
      const uint64_t feature = features + gsub.u16(record + 4, "FeatureRecord featureOffset");
      if (tag != "ccmp" && tag != "liga" && tag != "clig" && tag != "rlig") continue;
      const uint16_t indices = gsub.u16(feature + 2, "Feature lookupIndexCount");
      for (uint16_t k = 0; k < indices; ++k)
        wanted.insert(gsub.u16(feature + 4 + 2 * uint64_t{k}, "Feature lookupListIndices"));
    }
    const uint16_t lookup_count = gsub.u16(lookups, "LookupList lookupCount");
    for (uint16_t index : wanted) {
      MENTOR_CHECK(index < lookup_count, "OpenType GSUB of ", name_, ": a feature names lookup ",
                   index, ", the LookupList at offset ", lookups, " holds ", lookup_count);
      const uint64_t lookup =
          lookups + gsub.u16(lookups + 2 + 2 * uint64_t{index}, "LookupList lookupOffsets");
      // lookupFlag is not applied: it only says which marks to skip, and emoji fonts have none.
      const uint16_t type = gsub.u16(lookup, "Lookup lookupType");
      const uint16_t subtables = gsub.u16(lookup + 4, "Lookup subTableCount");
      LigatureLookup ligatures;
      for (uint16_t s = 0; s < subtables; ++s) {
        uint64_t subtable =
            lookup + gsub.u16(lookup + 6 + 2 * uint64_t{s}, "Lookup subtableOffsets");
        uint16_t subtable_type = type;
        if (type == 7) {  // Extension: format 1, the real type, a 32-bit offset from here
          const uint16_t format = gsub.u16(subtable, "Extension substFormat");
          MENTOR_CHECK(format == 1, "OpenType GSUB of ", name_, ": Extension subtable at offset ",
                       subtable, " has format ", format, " (1 expected)");
          subtable_type = gsub.u16(subtable + 2, "Extension extensionLookupType");
          MENTOR_CHECK(subtable_type != 7, "OpenType GSUB of ", name_,
                       ": Extension subtable at offset ", subtable, " points to another Extension");
          subtable += gsub.u32(subtable + 4, "Extension extensionOffset");
        }
        if (subtable_type == 4) ligatures.subtables.push_back(read_ligature_subst(gsub, subtable));
      }
      if (!ligatures.subtables.empty()) lookups_.push_back(std::move(ligatures));
    }
  }

  // The glyphs of a Coverage table, in coverage-index order.
  std::vector<uint16_t> read_coverage(const TableReader& gsub, uint64_t at) const {
    const uint16_t format = gsub.u16(at, "Coverage format");
    const uint16_t count = gsub.u16(at + 2, "Coverage count");
    std::vector<uint16_t> glyphs;
    if (format == 1) {
      gsub.require(at + 4, 2 * uint64_t{count}, "Coverage glyphArray");
      for (uint16_t i = 0; i < count; ++i)
        glyphs.push_back(gsub.u16(at + 4 + 2 * uint64_t{i}, "Coverage glyph"));
      return glyphs;
    }
    MENTOR_CHECK(format == 2, "OpenType GSUB of ", name_, ": Coverage table at offset ", at,
                 " has format ", format, " (1 or 2 expected)");
    for (uint16_t r = 0; r < count; ++r) {
      const uint64_t record = at + 4 + 6 * uint64_t{r};
      const uint16_t start = gsub.u16(record, "Coverage range start");
      const uint16_t end = gsub.u16(record + 2, "Coverage range end");
      const uint16_t start_index = gsub.u16(record + 4, "Coverage range startCoverageIndex");
      MENTOR_CHECK(start <= end && start_index == glyphs.size(), "OpenType GSUB of ", name_,
                   ": Coverage range ", r, " at offset ", record, " (glyphs ", start, "..", end,
                   ", first index ", start_index, ") is reversed or out of order");
      MENTOR_CHECK(glyphs.size() + (end - start) < kMaxGlyphs, "OpenType GSUB of ", name_,
                   ": Coverage table at offset ", at, " covers more than ", kMaxGlyphs, " glyphs");
      for (uint32_t g = start; g <= end; ++g) glyphs.push_back(static_cast<uint16_t>(g));
    }
    return glyphs;
  }

  LigatureSubtable read_ligature_subst(const TableReader& gsub, uint64_t at) {
    const uint16_t format = gsub.u16(at, "LigatureSubst substFormat");
    MENTOR_CHECK(format == 1, "OpenType GSUB of ", name_, ": LigatureSubst at offset ", at,
                 " has format ", format, " (1 expected)");
    const std::vector<uint16_t> coverage =
        read_coverage(gsub, at + gsub.u16(at + 2, "LigatureSubst coverageOffset"));
    const uint16_t set_count = gsub.u16(at + 4, "LigatureSubst ligatureSetCount");
    MENTOR_CHECK(set_count == coverage.size(), "OpenType GSUB of ", name_,
                 ": LigatureSubst at offset ", at, " has ", set_count, " ligature sets for ",
                 coverage.size(), " covered glyphs");
    LigatureSubtable table;
    for (uint16_t k = 0; k < set_count; ++k) {
      const uint64_t set = at + gsub.u16(at + 6 + 2 * uint64_t{k}, "ligatureSetOffsets");
      const uint16_t count = gsub.u16(set, "LigatureSet ligatureCount");
      std::vector<Ligature>& ligatures = table[coverage[k]];
      for (uint16_t l = 0; l < count; ++l) {
        const uint64_t lig = set + gsub.u16(set + 2 + 2 * uint64_t{l}, "ligatureOffsets");
        Ligature ligature;
        ligature.glyph = gsub.u16(lig, "Ligature ligatureGlyph");
        const uint16_t components = gsub.u16(lig + 2, "Ligature componentCount");
        MENTOR_CHECK(components >= 1, "OpenType GSUB of ", name_, ": Ligature at offset ", lig,
                     " has componentCount 0");
        gsub.require(lig + 4, 2 * (uint64_t{components} - 1), "Ligature componentGlyphIDs");
        for (uint16_t c = 1; c < components; ++c)
          ligature.rest.push_back(gsub.u16(lig + 2 + 2 * uint64_t{c}, "component glyph"));
        ++ligature_count_;
        component_count_ += components;
        MENTOR_CHECK(ligature_count_ <= kMaxLigatures && component_count_ <= kMaxLigatureComponents,
                     "OpenType GSUB of ", name_, ": more than ", kMaxLigatures, " ligatures or ",
                     kMaxLigatureComponents, " components (at the Ligature at offset ", lig, ")");
        ligatures.push_back(std::move(ligature));
      }
    }
    return table;
  }

  // One pass of a ligature lookup: at each position the first subtable that has a matching
  // ligature replaces the matched glyphs, and matching resumes after it.
  static void apply_ligatures(const LigatureLookup& lookup, std::vector<uint16_t>& glyphs) {
    for (size_t i = 0; i < glyphs.size(); ++i) {
      for (const LigatureSubtable& subtable : lookup.subtables) {
        const auto it = subtable.find(glyphs[i]);
        if (it == subtable.end()) continue;
        const Ligature* match = nullptr;
        for (const Ligature& ligature : it->second) {
          if (i + 1 + ligature.rest.size() > glyphs.size()) continue;
          if (std::equal(ligature.rest.begin(), ligature.rest.end(),
                         glyphs.begin() + static_cast<std::ptrdiff_t>(i + 1))) {
            match = &ligature;
            break;
          }
        }
        if (match == nullptr) continue;
        glyphs[i] = match->glyph;
        glyphs.erase(glyphs.begin() + static_cast<std::ptrdiff_t>(i + 1),
                     glyphs.begin() + static_cast<std::ptrdiff_t>(i + 1 + match->rest.size()));
        break;
      }
    }
  }

  std::vector<uint8_t> bytes_;
  std::string name_;
  std::vector<TableRecord> tables_;
  std::vector<CmapRange> cmap_;
  int cmap_format_ = 0;
  std::vector<GlyphLocation> locations_;
  int64_t bitmap_count_ = 0;
  int ppem_x_ = 0;
  int ppem_y_ = 0;
  std::vector<LigatureLookup> lookups_;
  uint64_t ligature_count_ = 0;
  uint64_t component_count_ = 0;
};

}  // namespace opentype

// ---- emoji-test.txt ---------------------------------------------------------------------------

enum class EmojiStatus { component, fully_qualified, minimally_qualified, unqualified };

struct EmojiTestEntry {
  std::u32string code_points;
  EmojiStatus status = EmojiStatus::fully_qualified;
  std::string group;     // "Smileys & Emotion"
  std::string subgroup;  // "face-smiling"
  std::string version;   // "E1.0": the Emoji version that added it
  std::string name;      // CLDR short name: "thumbs up: medium skin tone"
};

namespace detail {

inline std::string_view trim_spaces(std::string_view s) {
  while (!s.empty() && (s.front() == ' ' || s.front() == '\t')) s.remove_prefix(1);
  while (!s.empty() && (s.back() == ' ' || s.back() == '\t' || s.back() == '\r'))
    s.remove_suffix(1);
  return s;
}

}  // namespace detail

// Data lines "1F44D 1F3FD ; fully-qualified # 👍🏽 E1.0 thumbs up: medium skin tone" with the
// group and subgroup of the "# group:" / "# subgroup:" comments above them. Malformed lines are
// errors naming `name` and the line number.
inline std::vector<EmojiTestEntry> parse_emoji_test(std::string_view text,
                                                    std::string_view name = "emoji-test.txt") {
  std::vector<EmojiTestEntry> entries;
  std::string group, subgroup;
  int64_t line_number = 0;
  while (!text.empty()) {
    const size_t newline = text.find('\n');
    const std::string_view line = detail::trim_spaces(
        text.substr(0, newline == std::string_view::npos ? text.size() : newline));
    text.remove_prefix(newline == std::string_view::npos ? text.size() : newline + 1);
    ++line_number;
    if (line.empty()) continue;
    if (line.front() == '#') {
      if (line.starts_with("# group:")) group = detail::trim_spaces(line.substr(8));
      if (line.starts_with("# subgroup:")) subgroup = detail::trim_spaces(line.substr(11));
      continue;
    }
    const size_t semicolon = line.find(';'), hash = line.find('#');
    MENTOR_CHECK(
        semicolon != std::string_view::npos && hash != std::string_view::npos && semicolon < hash,
        "parse_emoji_test: ", name, " line ", line_number,
        " is not 'code points ; status # emoji version name': ", line);
    EmojiTestEntry entry;
    entry.group = group;
    entry.subgroup = subgroup;
    std::string_view hex = line.substr(0, semicolon);
    while (!(hex = detail::trim_spaces(hex)).empty()) {
      const size_t space = std::min(hex.find(' '), hex.size());
      const std::string_view token = hex.substr(0, space);
      uint32_t value = 0;
      bool ok = !token.empty() && token.size() <= 6;
      for (char c : token) {
        const int digit = c >= '0' && c <= '9'   ? c - '0'
                          : c >= 'A' && c <= 'F' ? c - 'A' + 10
                          : c >= 'a' && c <= 'f' ? c - 'a' + 10
                                                 : -1;
        ok = ok && digit >= 0;
        value = value * 16 + static_cast<uint32_t>(std::max(digit, 0));
      }
      MENTOR_CHECK(ok && value <= 0x10FFFF, "parse_emoji_test: ", name, " line ", line_number,
                   ": '", token, "' is not a code point");
      entry.code_points += static_cast<char32_t>(value);
      hex.remove_prefix(space);
    }
    MENTOR_CHECK(!entry.code_points.empty(), "parse_emoji_test: ", name, " line ", line_number,
                 " has no code points");
    const std::string_view status =
        detail::trim_spaces(line.substr(semicolon + 1, hash - semicolon - 1));
    if (status == "fully-qualified") {
      entry.status = EmojiStatus::fully_qualified;
    } else if (status == "minimally-qualified") {
      entry.status = EmojiStatus::minimally_qualified;
    } else if (status == "unqualified") {
      entry.status = EmojiStatus::unqualified;
    } else if (status == "component") {
      entry.status = EmojiStatus::component;
    } else {
      MENTOR_CHECK(false, "parse_emoji_test: ", name, " line ", line_number, ": unknown status '",
                   status, "'");
    }
    // "# <emoji> E<version> <name>": the version is the first " E<digit>" word after the emoji.
    const std::string_view comment = line.substr(hash + 1);
    size_t version = comment.find(" E");
    while (version != std::string_view::npos &&
           !(version + 2 < comment.size() && comment[version + 2] >= '0' &&
             comment[version + 2] <= '9'))
      version = comment.find(" E", version + 1);
    MENTOR_CHECK(version != std::string_view::npos, "parse_emoji_test: ", name, " line ",
                 line_number, " has no ' E<version> <name>' after its '#'");
    const size_t name_at = comment.find(' ', version + 1);
    MENTOR_CHECK(name_at != std::string_view::npos, "parse_emoji_test: ", name, " line ",
                 line_number, " has no name after its version");
    entry.version = comment.substr(version + 1, name_at - version - 1);
    entry.name = detail::trim_spaces(comment.substr(name_at + 1));
    MENTOR_CHECK(!entry.name.empty(), "parse_emoji_test: ", name, " line ", line_number,
                 " has an empty name");
    entries.push_back(std::move(entry));
  }
  return entries;
}

// ---- Variants -----------------------------------------------------------------------------------

inline constexpr char32_t kZeroWidthJoiner = 0x200D;
inline bool is_skin_tone_modifier(char32_t c) { return c >= 0x1F3FB && c <= 0x1F3FF; }

// The subject an emoji shows with its skin tone and gender taken away: skin-tone modifiers
// (U+1F3FB..U+1F3FF) and variation selectors are dropped, ZWJ + female/male sign (U+2640, U+2642)
// too, and man (U+1F468) or woman (U+1F469) become person (U+1F9D1) when they stand alone or with
// one role after a ZWJ ("woman technologist" -> "technologist"), but not inside families and
// couples. Emoji with one base are variants of one subject.
inline std::u32string emoji_variant_base(std::u32string_view code_points) {
  std::vector<std::u32string> parts(1);
  for (char32_t c : code_points) {
    if (is_skin_tone_modifier(c) || c == 0xFE0F || c == 0xFE0E) continue;
    if (c == kZeroWidthJoiner) {
      parts.emplace_back();
    } else {
      parts.back() += c;
    }
  }
  // The signs themselves (U+2640 alone: "female sign") keep their part 0.
  for (size_t i = parts.size(); i-- > 1;)
    if (parts[i] == U"\u2640" || parts[i] == U"\u2642")
      parts.erase(parts.begin() + static_cast<std::ptrdiff_t>(i));
  auto is_person = [](const std::u32string& p) {
    static constexpr std::array<char32_t, 8> people = {0x1F466, 0x1F467, 0x1F468, 0x1F469,
                                                       0x1F9D1, 0x1F9D2, 0x2764,  0x1F48B};
    return p.size() == 1 && std::find(people.begin(), people.end(), p[0]) != people.end();
  };
  const bool gendered = !parts.empty() && (parts[0] == U"\U0001F468" || parts[0] == U"\U0001F469");
  if (gendered && (parts.size() == 1 || (parts.size() == 2 && !is_person(parts[1]))))
    parts[0].assign(1, U'\U0001F9D1');
  std::u32string base;
  for (size_t i = 0; i < parts.size(); ++i) {
    if (i) base += kZeroWidthJoiner;
    base += parts[i];
  }
  return base;
}

// ---- The emoji set ------------------------------------------------------------------------------

inline std::filesystem::path emoji_font_default_path() {
  if (const char* p = std::getenv("MENTOR_EMOJI_FONT"); p != nullptr && *p != '\0') return p;
  return "/usr/share/fonts/truetype/noto/NotoColorEmoji.ttf";
}
inline std::filesystem::path emoji_test_default_path() {
  if (const char* p = std::getenv("MENTOR_EMOJI_TEST"); p != nullptr && *p != '\0') return p;
  return "/usr/share/unicode/emoji/emoji-test.txt";
}

// True when both files are present (tests skip cleanly when the packages are missing).
inline bool emoji_available(const std::filesystem::path& font = emoji_font_default_path(),
                            const std::filesystem::path& test = emoji_test_default_path()) {
  return std::filesystem::exists(font) && std::filesystem::exists(test);
}

using Rgb8 = std::array<uint8_t, 3>;
inline constexpr Rgb8 kWhite = {255, 255, 255};

// An RGBA picture over `background` ("over" compositing, rounded), centred on a square canvas of
// its longer side (the Noto glyphs are 136 x 128), resampled to resolution x resolution (Pillow's
// bicubic, antialiased when shrinking). Compositing comes first so that transparent pixels' colours
// never bleed into the edges.
inline Image composite_square(const Image& rgba, int resolution, Rgb8 background = kWhite) {
  MENTOR_CHECK(rgba.channels == 4 && rgba.width > 0 && rgba.height > 0,
               "composite_square: expected a non-empty RGBA image, got ", rgba.width, "x",
               rgba.height, "x", rgba.channels);
  MENTOR_CHECK(resolution > 0 && resolution <= 4096, "composite_square: resolution ", resolution,
               " is outside 1..4096");
  const int side = std::max(rgba.width, rgba.height);
  Image canvas(side, side, 3);
  for (int y = 0; y < side; ++y)
    for (int x = 0; x < side; ++x)
      for (int c = 0; c < 3; ++c) canvas.at(y, x, c) = background[static_cast<size_t>(c)];
  const int left = (side - rgba.width) / 2, top = (side - rgba.height) / 2;
  for (int y = 0; y < rgba.height; ++y)
    for (int x = 0; x < rgba.width; ++x) {
      const int alpha = rgba.at(y, x, 3);
      for (int c = 0; c < 3; ++c)
        canvas.at(top + y, left + x, c) = static_cast<uint8_t>(
            (rgba.at(y, x, c) * alpha + background[static_cast<size_t>(c)] * (255 - alpha) + 127) /
            255);
    }
  if (side == resolution) return canvas;
  return resize(canvas, resolution, resolution, ResampleFilter::bicubic);
}

struct Emoji {
  std::u32string code_points;
  std::string name;
  std::string group;
  std::string subgroup;
  uint16_t glyph = 0;
};

// Emoji of one subject (one emoji_variant_base) in two or more forms.
struct EmojiVariantGroup {
  std::u32string base;  // emoji_variant_base of every member
  std::string name;     // the base emoji's name, else the first member's before its ':'
  std::optional<int64_t> base_index;  // the member that is the base itself, if listed
  std::vector<int64_t> members;       // indices into EmojiSet, in emoji-test.txt order
};

// Two forms of one subject (EmojiSet indices), a subject-driven pair.
struct EmojiPair {
  int64_t reference = 0;
  int64_t target = 0;
};

class EmojiSet {
 public:
  explicit EmojiSet(const std::filesystem::path& font_path = emoji_font_default_path(),
                    const std::filesystem::path& test_path = emoji_test_default_path())
      : EmojiSet(load_font(font_path), load_test(test_path)) {}

  // From an already read font and emoji-test.txt entries (every status; fully-qualified are kept).
  EmojiSet(opentype::ColorBitmapFont font, const std::vector<EmojiTestEntry>& entries)
      : font_(std::move(font)) {
    for (const EmojiTestEntry& entry : entries) {
      if (entry.status != EmojiStatus::fully_qualified) continue;
      ++fully_qualified_;
      const std::optional<uint16_t> glyph = font_.glyph_for_sequence(entry.code_points);
      if (!glyph) {
        unrendered_.push_back(entry);
        continue;
      }
      index_.emplace(entry.code_points, static_cast<int64_t>(emoji_.size()));
      emoji_.push_back(Emoji{entry.code_points, entry.name, entry.group, entry.subgroup, *glyph});
    }
    build_variant_groups();
  }

  int64_t size() const { return static_cast<int64_t>(emoji_.size()); }
  const std::vector<Emoji>& emoji() const { return emoji_; }
  const Emoji& at(int64_t index) const {
    MENTOR_CHECK(index >= 0 && index < size(), "EmojiSet: index ", index, " outside [0, ", size(),
                 ")");
    return emoji_[static_cast<size_t>(index)];
  }
  // Fully-qualified entries of emoji-test.txt, and those the font has no picture for.
  int64_t fully_qualified_count() const { return fully_qualified_; }
  const std::vector<EmojiTestEntry>& unrendered() const { return unrendered_; }
  const opentype::ColorBitmapFont& font() const { return font_; }

  std::optional<int64_t> find(std::u32string_view code_points) const {
    const auto it = index_.find(std::u32string(code_points));
    if (it == index_.end()) return std::nullopt;
    return it->second;
  }
  std::optional<int64_t> find_name(std::string_view name) const {
    for (size_t i = 0; i < emoji_.size(); ++i)
      if (emoji_[i].name == name) return static_cast<int64_t>(i);
    return std::nullopt;
  }

  // The emoji's RGBA PNG as the font holds it, and as RGB at a resolution over a background.
  Image rgba(int64_t index) const { return font_.decode_rgba(at(index).glyph); }
  Image image(int64_t index, int resolution, Rgb8 background = kWhite) const {
    return composite_square(rgba(index), resolution, background);
  }

  const std::vector<EmojiVariantGroup>& variant_groups() const { return groups_; }
  // Every unordered pair of members of every variant group (a before b in the group's order).
  std::vector<EmojiPair> variant_pairs() const {
    std::vector<EmojiPair> pairs;
    for (const EmojiVariantGroup& group : groups_)
      for (size_t a = 0; a < group.members.size(); ++a)
        for (size_t b = a + 1; b < group.members.size(); ++b)
          pairs.push_back(EmojiPair{group.members[a], group.members[b]});
    return pairs;
  }

 private:
  static opentype::ColorBitmapFont load_font(const std::filesystem::path& path) {
    MENTOR_CHECK(std::filesystem::exists(path), "EmojiSet: font ", path.string(),
                 " not found (install Debian's fonts-noto-color-emoji, or set MENTOR_EMOJI_FONT)");
    return opentype::ColorBitmapFont::load(path);
  }
  static std::vector<EmojiTestEntry> load_test(const std::filesystem::path& path) {
    MENTOR_CHECK(std::filesystem::exists(path), "EmojiSet: ", path.string(),
                 " not found (install Debian's unicode-data, or set MENTOR_EMOJI_TEST)");
    const std::vector<uint8_t> bytes = read_file_bytes(path, "EmojiSet");
    return parse_emoji_test(
        std::string_view(reinterpret_cast<const char*>(bytes.data()), bytes.size()), path.string());
  }

  void build_variant_groups() {
    std::map<std::u32string, size_t> by_base;
    for (size_t i = 0; i < emoji_.size(); ++i) {
      const std::u32string base = emoji_variant_base(emoji_[i].code_points);
      auto [it, added] = by_base.emplace(base, groups_.size());
      if (added) groups_.push_back(EmojiVariantGroup{base, "", std::nullopt, {}});
      EmojiVariantGroup& group = groups_[it->second];
      group.members.push_back(static_cast<int64_t>(i));
      std::u32string plain = emoji_[i].code_points;
      std::erase_if(plain, [](char32_t c) { return c == 0xFE0F || c == 0xFE0E; });
      if (plain == base) group.base_index = static_cast<int64_t>(i);
    }
    std::erase_if(groups_, [](const EmojiVariantGroup& g) { return g.members.size() < 2; });
    for (EmojiVariantGroup& group : groups_) {
      const std::string& first = emoji_[static_cast<size_t>(group.members[0])].name;
      group.name = group.base_index ? emoji_[static_cast<size_t>(*group.base_index)].name
                                    : first.substr(0, first.find(':'));
    }
  }

  opentype::ColorBitmapFont font_;
  std::vector<Emoji> emoji_;
  std::map<std::u32string, int64_t> index_;
  int64_t fully_qualified_ = 0;
  std::vector<EmojiTestEntry> unrendered_;
  std::vector<EmojiVariantGroup> groups_;
};

// ---- Datasets -----------------------------------------------------------------------------------

struct EmojiImage {
  Image image;        // resolution x resolution x 3
  int64_t index = 0;  // into the EmojiSet
  std::string name;
};

// Every emoji of a set as an RGB image.
class EmojiDataset final : public Dataset<EmojiImage> {
 public:
  EmojiDataset(std::shared_ptr<const EmojiSet> set, int resolution, Rgb8 background = kWhite)
      : set_(std::move(set)), resolution_(resolution), background_(background) {
    MENTOR_CHECK(set_ != nullptr, "EmojiDataset: no EmojiSet");
    MENTOR_CHECK(resolution > 0 && resolution <= 4096, "EmojiDataset: resolution ", resolution,
                 " is outside 1..4096");
  }
  int64_t size() const override { return set_->size(); }
  EmojiImage get(int64_t index) const override {
    return EmojiImage{set_->image(index, resolution_, background_), index, set_->at(index).name};
  }

 private:
  std::shared_ptr<const EmojiSet> set_;
  int resolution_;
  Rgb8 background_;
};

struct EmojiPairSample {
  EmojiImage reference;
  EmojiImage target;
};

// The set's variant pairs (EmojiSet::variant_pairs), both images at one resolution.
class EmojiPairDataset final : public Dataset<EmojiPairSample> {
 public:
  EmojiPairDataset(std::shared_ptr<const EmojiSet> set, int resolution, Rgb8 background = kWhite)
      : images_(set, resolution, background), pairs_(set->variant_pairs()) {}
  int64_t size() const override { return static_cast<int64_t>(pairs_.size()); }
  EmojiPairSample get(int64_t index) const override {
    MENTOR_CHECK(index >= 0 && index < size(), "EmojiPairDataset: index ", index, " outside [0, ",
                 size(), ")");
    const EmojiPair& pair = pairs_[static_cast<size_t>(index)];
    return EmojiPairSample{images_.get(pair.reference), images_.get(pair.target)};
  }
  const std::vector<EmojiPair>& pairs() const { return pairs_; }

 private:
  EmojiDataset images_;
  std::vector<EmojiPair> pairs_;
};

}  // namespace mentor::data
