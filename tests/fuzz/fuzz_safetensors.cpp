// libFuzzer: the safetensors reader, from bytes in memory and from a file (memory-mapped), and
// every way a tensor is read out of it (raw bytes, converted values, nn::load_tensor).
#include "fuzz_common.hpp"
#include "mentor/core/error.hpp"
#include "mentor/io/safetensors.hpp"
#include "mentor/nn/state_dict.hpp"

namespace {

void read_everything(const mentor::io::SafeTensorsFile& file) {
  for (const std::string& key : file.keys()) {
    const auto raw = file.bytes(key);
    volatile unsigned sum = 0;
    for (std::byte b : raw) sum = sum + static_cast<unsigned>(b);
    try {
      (void)file.read_as<double>(key);
    } catch (const mentor::Error&) {
    }
    try {
      (void)file.read_as<int64_t>(key);
    } catch (const mentor::Error&) {
    }
    try {
      (void)file.read_as<bool>(key);
    } catch (const mentor::Error&) {
    }
    try {
      (void)mentor::nn::load_tensor<float>(file, key);
    } catch (const mentor::Error&) {
    }
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  try {
    read_everything(
        mentor::io::SafeTensorsFile::from_bytes(std::vector<uint8_t>(data, data + size), "fuzz"));
  } catch (const mentor::Error&) {
  }
  const auto path = mentor::fuzz::scratch_dir() / "input.safetensors";
  mentor::fuzz::write_bytes(path, data, size);
  try {
    read_everything(mentor::io::SafeTensorsFile::open(path.string()));
  } catch (const mentor::Error&) {
  }
  return 0;
}
