// The cell's formulas (cell_math.h) on whole tensors of ATen ops: what the device-generic kernels
// and the online ops compute with, on any device.
#pragma once

#include "../cell_math.h"

#include <ATen/ATen.h>

namespace lstm1997 {
namespace generic {

// scale * tanh(slope * x), without the two multiplications for plain tanh.
inline at::Tensor squash(const at::Tensor& x, const Squash<double>& f) {
  if (f.scale == 1 && f.slope == 1) {
    return at::tanh(x);
  }
  return at::tanh(x * f.slope) * f.scale;
}

// The squasher's derivative from its value y: slope * (scale - y^2 / scale).
inline at::Tensor squash_grad_from_value(const at::Tensor& y, const Squash<double>& f) {
  if (f.scale == 1 && f.slope == 1) {
    return 1 - y * y;
  }
  return (f.scale - y * y / f.scale) * f.slope;
}

// The logistic gate's derivative from its value.
inline at::Tensor sigmoid_grad_from_value(const at::Tensor& y) {
  return y * (1 - y);
}

}  // namespace generic
}  // namespace lstm1997
