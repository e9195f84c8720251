// The ops and Tensor<double, CPU>, compiled once (see ops_instances.hpp).
#include "ops_instances.hpp"

namespace mentor {
MENTOR_OPS_INSTANCES(, double, CPU)
}  // namespace mentor
