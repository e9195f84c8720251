// The fixture verifiers for float on CUDA, compiled once (see verify_instances.hpp).
#include "verify_instances.hpp"

namespace mentor::verify {
MENTOR_VERIFY_INSTANCES(, float, CUDA)
}  // namespace mentor::verify
