// The op_cases program over the registry of mentor's ops (docs/adding-an-op.md's test runs the
// same driver, op_cases.cpp, over its own case).
#include "registry.hpp"

int main(int argc, char** argv) {
  return mentor::op_cases::run(argc, argv, [](mentor::op_cases::Registry& r) {
    mentor::op_cases::register_pointwise_cases(r);
    mentor::op_cases::register_layer_cases(r);
    mentor::op_cases::register_shape_cases(r);
  });
}
