#pragma once
// The whole of mentor's core: typed tensors, autograd and every op. Models, training and I/O have
// their own headers (mentor/models/..., mentor/train/..., mentor/io/...).
#include "mentor/core/tensor.hpp"
#include "mentor/ops/ops.hpp"
