// The ops and Tensor<float, CPU>, compiled once (see ops_instances.hpp).
#include "ops_instances.hpp"

namespace mentor {
MENTOR_OPS_INSTANCES(, float, CPU)
}  // namespace mentor
