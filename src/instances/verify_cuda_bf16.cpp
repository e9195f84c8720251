// The fixture verifiers for bf16 on CUDA, compiled once (see verify_instances.hpp).
#include "verify_instances.hpp"

namespace mentor::verify {
MENTOR_VERIFY_INSTANCES(, bf16, CUDA)
}  // namespace mentor::verify
