#pragma once
// Counts heap allocations, for tests that require a code path to allocate nothing. The count comes
// from replaced global operator new / new[] (every form, aligned and nothrow included) defined in
// alloc_counter.cpp, which tests/CMakeLists.txt links into every program of tests/generate/. The
// function is defined there too, so a program that forgot the .cpp fails to link instead of
// counting zero.
//
//   const int64_t before = mentor_test::allocations();
//   code_under_test();
//   REQUIRE(mentor_test::allocations() == before);
//
// The counter is process-wide (atomic): keep other threads quiet while measuring.
#include <cstdint>

namespace mentor_test {

// The number of operator new calls since the program started.
int64_t allocations() noexcept;

}  // namespace mentor_test
