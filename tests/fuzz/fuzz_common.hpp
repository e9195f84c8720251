#pragma once
// Shared by the libFuzzer harnesses (tools/fuzz.sh builds them). A mentor::Error is the expected
// way to refuse bad input; any other exception escapes the harness and libFuzzer reports it as a
// crash, as it does sanitizer reports, timeouts and allocations over -malloc_limit_mb.
#include <unistd.h>

#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

namespace mentor::fuzz {

// A folder of this process's own (several harnesses may run at once), made on first use.
inline const std::filesystem::path& scratch_dir() {
  static const std::filesystem::path dir = [] {
    const char* base = std::getenv("TMPDIR");
    auto path = std::filesystem::path(base != nullptr && *base != '\0' ? base : "/tmp") /
                ("mentor-fuzz-" + std::to_string(getpid()));
    std::filesystem::create_directories(path);
    return path;
  }();
  return dir;
}

inline void write_bytes(const std::filesystem::path& path, const uint8_t* data, size_t size) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out.write(reinterpret_cast<const char*>(data), static_cast<std::streamsize>(size));
}

}  // namespace mentor::fuzz
