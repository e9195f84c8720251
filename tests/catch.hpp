#pragma once
// Catch2 v2 (Debian 12) and v3 (Ubuntu 24.04 on the GPU machine) spell their headers and the
// substring matcher differently; tests write Catch::Contains(...) for both.
#ifdef MENTOR_CATCH3
#include <catch2/catch_all.hpp>
namespace Catch {
inline auto Contains(const std::string& text) { return Matchers::ContainsSubstring(text); }
}  // namespace Catch
#else
#include <catch2/catch.hpp>
#endif
