// libFuzzer: decode_image on arbitrary bytes, keeping the file's channels and converting to each
// channel count. The pixel cap is lowered to 2^20 so that every input decodes quickly; the cap
// itself is the same code at any value.
#include "fuzz_common.hpp"
#include "mentor/core/error.hpp"
#include "mentor/data/image.hpp"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::span<const uint8_t> bytes(data, size);
  const int channels = static_cast<int>(size % 5);  // 0 (as stored) .. 4, varied by the input
  try {
    const mentor::data::Image image = mentor::data::decode_image(bytes, channels, "fuzz", 1 << 20);
    if (image.width <= 0 || image.height <= 0 || image.channels < 1 || image.channels > 4 ||
        image.data.size() != static_cast<size_t>(image.width) * image.height * image.channels)
      __builtin_trap();  // a decoded image must be complete and consistent
    volatile unsigned sum = 0;
    for (uint8_t v : image.data) sum = sum + v;  // every pixel is initialised (MSan-style read)
  } catch (const mentor::Error&) {
  }
  return 0;
}
