#pragma once
// The fixture verifiers (tools/verify/), instantiated once per element type and device that
// mentor-verify and the model tests run them on: each instantiates a whole model's forward and
// backward, the largest compile of those programs. As ops_instances.hpp: declared `extern
// template` here, defined in src/instances/verify_<type>.cpp (the mentor_verify library).
#include <filesystem>

#include <nlohmann/json.hpp>

#include "ops_instances.hpp"
#include "verify/verify_all.hpp"

#define MENTOR_VERIFY_INSTANCES(PREFIX, T, D)                                                      \
  PREFIX template VerifyReport verify_fixture<T, D>(const std::filesystem::path&,                  \
                                                    const nlohmann::json&);                        \
  PREFIX template VerifyReport verify_gpt<T, D>(const io::SafeTensorsFile&,                        \
                                                const nlohmann::json&);                            \
  PREFIX template VerifyReport verify_vq<T, D>(const io::SafeTensorsFile&, const nlohmann::json&); \
  PREFIX template VerifyReport verify_t5<T, D>(const io::SafeTensorsFile&, const nlohmann::json&); \
  PREFIX template VerifyReport verify_clip<T, D>(const io::SafeTensorsFile&,                       \
                                                 const nlohmann::json&);                           \
  PREFIX template VerifyReport verify_mentor<T, D>(const io::SafeTensorsFile&,                     \
                                                   const nlohmann::json&);

namespace mentor::verify {
MENTOR_VERIFY_INSTANCES(extern, float, CPU)
MENTOR_VERIFY_INSTANCES(extern, bf16, CPU)
#ifdef MENTOR_WITH_CUDA
MENTOR_VERIFY_INSTANCES(extern, float, CUDA)
MENTOR_VERIFY_INSTANCES(extern, bf16, CUDA)
#endif
}  // namespace mentor::verify
