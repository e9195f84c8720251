// The fixture verifiers for float on CPU, compiled once (see verify_instances.hpp).
#include "verify_instances.hpp"

namespace mentor::verify {
MENTOR_VERIFY_INSTANCES(, float, CPU)
}  // namespace mentor::verify
