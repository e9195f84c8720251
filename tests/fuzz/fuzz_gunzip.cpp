// libFuzzer: gunzip with a bounded output (16 MiB here, so a gzip bomb is an error, not an OOM).
#include "fuzz_common.hpp"
#include "mentor/core/error.hpp"
#include "mentor/data/image.hpp"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  try {
    const std::vector<uint8_t> out = mentor::data::gunzip({data, size}, "fuzz", size_t{1} << 24);
    if (out.size() > (size_t{1} << 24)) __builtin_trap();
  } catch (const mentor::Error&) {
  }
  return 0;
}
