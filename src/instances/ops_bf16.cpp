// The ops and Tensor<bf16, CPU>, compiled once (see ops_instances.hpp).
#include "ops_instances.hpp"

namespace mentor {
MENTOR_OPS_INSTANCES(, bf16, CPU)
}  // namespace mentor
