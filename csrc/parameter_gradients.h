// What _lstm_backward computes once it has the net-input errors of every row: the gradients of the
// input, the weights and the bias, as large matrix products over all rows at once (each only if
// asked for: the input of a first layer rarely needs its gradient). Every backend finds the
// net-input errors its own way (the backward modes) and passes its own matrix products.
#pragma once

#include "layer_args.h"
#include "step_rows.h"

#include <ATen/core/Tensor.h>

namespace lstm1997 {

struct MatrixProducts {
  // rows @ weight^T: a new (rows, out_features) tensor.
  at::Tensor (*linear)(const at::Tensor& rows, const at::Tensor& weight);
  // a^T @ b for a (N, M) and b (N, K), summed over the N rows; may be a transposed view.
  at::Tensor (*transposed)(const at::Tensor& a, const at::Tensor& b);
};

// _lstm_backward's results from a backend's _lstm_net_errors results: errors.net_errors (N, G),
// the error of every row's net inputs in the weights' block layout and the input's dtype, gives
// grad_input, grad_weight_ih, grad_weight_hh and grad_bias as args.wanted asks (the others stay
// undefined).
LayerGradients backward_from_net_errors(const BackwardArgs& args, const StepRows& steps,
                                        NetErrorResult errors, const MatrixProducts& products);

}  // namespace lstm1997
