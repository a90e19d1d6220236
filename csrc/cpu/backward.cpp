// The CPU kernel of _lstm_backward: the net-input errors of every step, by the backward mode
// (truncated_backward.cpp or exact_backward.cpp), then the weight and input gradients as large
// products over all rows at once (parameter_gradients.h, with the products of matmul.h).
// Pointwise math and the carries through time (the cell state's error) run in at::opmath_type:
// float for float16 and bfloat16.
#include "../blocks.h"
#include "../parameter_gradients.h"
#include "kernels.h"
#include "matmul.h"
#include "tiny_layer.h"

#include <ATen/ATen.h>
#include <ATen/OpMathType.h>

namespace lstm1997 {
namespace cpu {

namespace {

// The net-input errors as (rows, G), and the errors of h0 and s0.
NetErrorResult net_errors_of_rows(const BackwardArgs& args, const StepRows& steps) {
  const LayerArgs& layer = args.layer;
  const LayerSizes& sizes = layer.sizes;
  const int64_t T = steps.steps(), B = steps.batch, N = sizes.rows.expect_int(),
                H = sizes.hidden_size.expect_int(), R = sizes.recurrent_size.expect_int();
  const at::Tensor& input = layer.input;
  const auto options = input.options();
  const auto opmath_options = options.dtype(at::toOpMathType(input.scalar_type()));
  // Incoming gradients are often expanded (stride 0) views, e.g. from a sum().
  const NetErrorInputs inputs{steps,
                              args.grad_output.contiguous(),
                              args.grad_h_n.contiguous(),
                              args.saved.squashed_state.contiguous(),
                              args.saved.gates.contiguous(),
                              layer.options};

  at::Tensor dnet = at::empty({N, kNumGates * H}, options);
  at::Tensor ds_carry = args.grad_s_n.to(opmath_options, /*non_blocking=*/false,
                                         /*copy=*/true, at::MemoryFormat::Contiguous);
  at::Tensor grad_h0;
  if (layer.options.truncate) {
    truncated_net_errors(inputs, dnet, ds_carry);
    // h0 reaches the cell only through the truncated recurrent product, except for an empty
    // sequence, where h_n is h0 itself.
    grad_h0 = T == 0 ? inputs.grad_h_n.clone() : at::zeros({B, R}, options);
  } else {
    grad_h0 = inputs.grad_h_n.clone();
    exact_net_errors(inputs, layer, dnet, grad_h0, ds_carry);
  }
  // The errors of the weights' rows: a shared gate's error is the sum over its block's cells.
  return {sum_block_gates(dnet, H, layer.options.cells_per_block, 1), grad_h0,
          ds_carry.to(input.scalar_type())};
}

}  // namespace

NetErrorResult lstm_net_errors(const BackwardArgs& args) {
  return net_errors_of_rows(args, step_rows(args.layer));
}

LayerGradients lstm_backward(const BackwardArgs& args) {
  static constexpr MatrixProducts products{
      [](const at::Tensor& rows, const at::Tensor& weight) { return linear_product(rows, weight); },
      &transposed_product};
  const StepRows steps = step_rows(args.layer);
  if (use_tiny_layer(args.layer)) {
    return tiny_layer_backward(args, steps);
  }
  return backward_from_net_errors(args, steps, net_errors_of_rows(args, steps), products);
}

}  // namespace cpu
}  // namespace lstm1997
