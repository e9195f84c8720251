#pragma once
// Catch2 v2 (Debian 12) and v3 (Ubuntu 24.04 on the GPU machine) spell their headers and some
// names differently. Tests write the v2 spellings for both: unqualified `Approx(...)` and
// `Catch::Contains(...)` for a substring; Catch::Matchers::ContainsSubstring exists under v3 only.
#ifdef MENTOR_CATCH3
#include <catch2/catch_all.hpp>

#include <string>
// v2 puts Approx in the global namespace; v3 keeps it in Catch (catch2/catch_approx.hpp).
using Catch::Approx;
namespace Catch {
// v3's Matchers::Contains matches range elements, not substrings; v2's matches substrings.
inline auto Contains(const std::string& text, CaseSensitive sensitivity = CaseSensitive::Yes) {
  return Matchers::ContainsSubstring(text, sensitivity);
}
}  // namespace Catch
#else
#include <catch2/catch.hpp>
#endif
