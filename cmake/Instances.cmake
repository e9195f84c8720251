# Compiled instances for this repository's own programs (tests, examples): a build speed-up that
# user code never sees (it stays header-only and links only mentor::mentor).
#
#   mentor_instances  every op of mentor/ops and Tensor<T, D>, for float, double, bf16 on the CPU
#                     and float, bf16 on CUDA (src/instances/ops_instances.hpp)
#   mentor_verify     the fixture verifiers of tools/verify/, for float and bf16 on each device
#                     (src/instances/verify_instances.hpp)
#
# A program opts in with mentor_use_instances(target): it links them, and its C++ sources see their
# `extern template` declarations first, so they call the compiled instances instead of compiling
# each op, Eigen kernel and model verifier again. The declarations come with one precompiled header
# of every public header, built once for mentor_instances and reused by every program (parsing
# Eigen, nlohmann-json, <regex> and mentor was the rest of each translation unit's time). Without
# the declarations (a new op not yet in the lists) the code is instantiated in place: only slower.
set(MENTOR_INSTANCES_DIR ${PROJECT_SOURCE_DIR}/src/instances)

set(mentor_instance_types float double bf16)
set(mentor_verify_types float bf16)
if(MENTOR_WITH_CUDA)
  list(APPEND mentor_instance_types cuda_float cuda_bf16)
  list(APPEND mentor_verify_types cuda_float cuda_bf16)
endif()

list(TRANSFORM mentor_instance_types REPLACE "(.+)" "${MENTOR_INSTANCES_DIR}/ops_\\1.cpp"
  OUTPUT_VARIABLE mentor_instance_sources)
add_library(mentor_instances STATIC EXCLUDE_FROM_ALL ${mentor_instance_sources})
target_include_directories(mentor_instances PUBLIC ${MENTOR_INSTANCES_DIR} ${PROJECT_SOURCE_DIR}/tools)
target_link_libraries(mentor_instances PUBLIC mentor::mentor PRIVATE mentor_warnings)
file(GLOB_RECURSE mentor_public_headers CONFIGURE_DEPENDS ${PROJECT_SOURCE_DIR}/include/mentor/*.hpp)
list(SORT mentor_public_headers)
target_precompile_headers(mentor_instances PRIVATE ${mentor_public_headers}
  ${MENTOR_INSTANCES_DIR}/ops_instances.hpp ${MENTOR_INSTANCES_DIR}/verify_instances.hpp)

list(TRANSFORM mentor_verify_types REPLACE "(.+)" "${MENTOR_INSTANCES_DIR}/verify_\\1.cpp"
  OUTPUT_VARIABLE mentor_verify_sources)
add_library(mentor_verify STATIC EXCLUDE_FROM_ALL ${mentor_verify_sources})
target_link_libraries(mentor_verify PUBLIC mentor_instances PRIVATE mentor_warnings)
target_precompile_headers(mentor_verify REUSE_FROM mentor_instances)

# Test programs in a Release build compile at MENTOR_TEST_OPTIMIZATION (-O1): what they spend
# their time in (ops, Eigen, verifiers) is compiled at -O3 in the libraries above, and what is
# left in a test's own translation unit (the inline model glue, Catch2's test bodies, reference
# loops) compiled at -O3 was most of the build. A precompiled header fixes the optimisation level
# of everything parsed through it, so the tests have their own, built at that level.
# (GCC 12 at -O1 reports its own AVX-512 intrinsics' deliberately undefined `__Y` operands as
# uninitialized: a false positive, silenced for these programs only.)
set(MENTOR_TEST_OPTIMIZATION "-O1;-Wno-uninitialized" CACHE STRING
  "Optimisation of the test programs in a Release build (empty: the build type's)")
set(mentor_test_pch mentor_instances)
if(CMAKE_BUILD_TYPE STREQUAL "Release" AND MENTOR_TEST_OPTIMIZATION)
  add_library(mentor_test_pch OBJECT EXCLUDE_FROM_ALL ${MENTOR_INSTANCES_DIR}/test_pch.cpp)
  target_link_libraries(mentor_test_pch PRIVATE mentor_instances mentor_warnings)
  target_compile_options(mentor_test_pch PRIVATE
    $<$<COMPILE_LANGUAGE:CXX>:${MENTOR_TEST_OPTIMIZATION}>)
  target_precompile_headers(mentor_test_pch PRIVATE ${mentor_public_headers}
    ${MENTOR_INSTANCES_DIR}/ops_instances.hpp ${MENTOR_INSTANCES_DIR}/verify_instances.hpp)
  set(mentor_test_pch mentor_test_pch)
endif()

# mentor_use_instances(<target> [VERIFY] [TEXT_INCLUDE] [TEST])
#   VERIFY        also the fixture verifiers (links mentor_verify)
#   TEXT_INCLUDE  a target whose flags differ from the precompiled header's (GCC would refuse it):
#                 it includes the declarations' header as text instead
#   TEST          a test program: compiled at MENTOR_TEST_OPTIMIZATION (see above)
# A reusing target must be compiled with mentor_instances' flags: link mentor_warnings, and define
# no macro that mentor's headers read.
function(mentor_use_instances target)
  cmake_parse_arguments(ARG "VERIFY;TEXT_INCLUDE;TEST" "" "" ${ARGN})
  if(ARG_VERIFY)
    target_link_libraries(${target} PRIVATE mentor_verify)
  else()
    target_link_libraries(${target} PRIVATE mentor_instances)
  endif()
  set(pch mentor_instances)
  if(ARG_TEST AND CMAKE_BUILD_TYPE STREQUAL "Release" AND MENTOR_TEST_OPTIMIZATION)
    target_compile_options(${target} PRIVATE
      $<$<COMPILE_LANGUAGE:CXX>:${MENTOR_TEST_OPTIMIZATION}>)
    set(pch ${mentor_test_pch})
  endif()
  if(ARG_TEXT_INCLUDE)
    target_compile_options(${target} PRIVATE
      $<$<COMPILE_LANGUAGE:CXX>:-include${MENTOR_INSTANCES_DIR}/ops_instances.hpp>)
  else()
    target_precompile_headers(${target} REUSE_FROM ${pch})
  endif()
endfunction()
