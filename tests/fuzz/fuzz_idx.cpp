// libFuzzer: the IDX reader, on the bytes as given (parse_idx) and through a file (read_idx, which
// also inflates gzip'd files).
#include "fuzz_common.hpp"
#include "mentor/core/error.hpp"
#include "mentor/data/fashion_mnist.hpp"

namespace {

void check(const mentor::data::IdxArray& array) {
  uint64_t count = 1;
  for (int64_t dim : array.dims) count *= static_cast<uint64_t>(dim);
  if (count != array.data.size()) __builtin_trap();  // dims and data must agree
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  try {
    check(mentor::data::parse_idx({data, size}, "fuzz"));
  } catch (const mentor::Error&) {
  }
  const auto path = mentor::fuzz::scratch_dir() / "input.idx";
  mentor::fuzz::write_bytes(path, data, size);
  try {
    check(mentor::data::read_idx(path, size_t{1} << 24));
  } catch (const mentor::Error&) {
  }
  return 0;
}
