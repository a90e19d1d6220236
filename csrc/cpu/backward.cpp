// The CPU kernel of _lstm_backward: the net-input errors of every step, by the backward mode
// (truncated_backward.cpp or exact_backward.cpp), then the weight and input gradients as large
// products over all rows at once (matmul.h). Pointwise math and the carries through time (the
// cell state's error) run in at::opmath_type: float for float16 and bfloat16.
#include "../blocks.h"
#include "kernels.h"
#include "matmul.h"

#include <ATen/ATen.h>
#include <ATen/OpMathType.h>

#include <vector>

namespace lstm1997 {
namespace cpu {
namespace {

// r_{t-1} for every row of steps t >= 1, in row order, from the recurrent state of every row
// (N, R): the previous step's, restricted to the rows still active.
at::Tensor previous_recurrent(const StepRows& steps, const at::Tensor& recurrent_2d) {
  const int64_t later_rows = recurrent_2d.size(0) - (steps.steps() > 0 ? steps.count[0] : 0);
  if (steps.dense) {
    return recurrent_2d.narrow(0, 0, later_rows);
  }
  std::vector<int64_t> rows;
  rows.reserve(later_rows);
  for (int64_t t = 1; t < steps.steps(); ++t) {
    for (int64_t b = 0; b < steps.count[t]; ++b) {
      rows.push_back(steps.offset[t - 1] + b);
    }
  }
  return recurrent_2d.index_select(0, at::tensor(rows, at::kLong));
}

}  // namespace

LayerGradients lstm_backward(const BackwardArgs& args) {
  const LayerArgs& layer = args.layer;
  const LayerSizes& sizes = layer.sizes;
  const StepRows steps = step_rows(layer);
  const int64_t T = steps.steps(), B = steps.batch, N = sizes.rows.expect_int(),
                I = sizes.input_size.expect_int(), H = sizes.hidden_size.expect_int(),
                R = sizes.recurrent_size.expect_int();
  const int64_t cells_per_block = layer.options.cells_per_block;
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
  at::Tensor grad_s0 = ds_carry.to(input.scalar_type());
  // The errors of the weights' rows: a shared gate's error is the sum over its block's cells.
  const at::Tensor dnet_rows = sum_block_gates(dnet, H, cells_per_block, 1);
  const int64_t G = dnet_rows.size(1);

  // Weight and input gradients: large GEMMs over all rows at once, each only if asked for (the
  // input of a first layer rarely needs its gradient).
  const GradientMask& wanted = args.wanted;
  at::Tensor grad_input, grad_weight_ih, grad_weight_hh;
  if (wanted.input) {
    grad_input = linear_product(dnet_rows, layer.weight_ih.t()).view(input.sizes());
  }
  if (wanted.weight_ih) {
    grad_weight_ih = transposed_product(dnet_rows, input.reshape({N, I})).contiguous();
  }
  if (wanted.weight_hh) {
    const int64_t first_rows = T > 0 ? steps.count[0] : 0;
    if (N > first_rows) {
      // With gate feedback dW_hh also takes the gate outputs of t-1: the recurrent state of every
      // row, made from what the forward saved.
      const at::Tensor output_2d = args.saved.output.reshape({N, H});
      const at::Tensor recurrent_2d =
          layer.options.gate_feedback
              ? recurrent_state(args.saved.gates.reshape({N, kNumGates * H}), output_2d,
                                cells_per_block)
              : output_2d;
      grad_weight_hh = transposed_product(dnet_rows.narrow(0, first_rows, N - first_rows),
                                          previous_recurrent(steps, recurrent_2d))
                           .contiguous();
    } else {
      grad_weight_hh = at::zeros({G, R}, options);
    }
    if (T > 0 && present(layer.h0)) {
      grad_weight_hh.add_(transposed_product(dnet_rows.narrow(0, 0, first_rows), *layer.h0));
    }
  }
  const at::Tensor grad_bias = wanted.bias ? dnet_rows.sum(0) : at::Tensor();
  return {grad_input, grad_weight_ih, grad_weight_hh, grad_bias, grad_h0, grad_s0};
}

}  // namespace cpu
}  // namespace lstm1997
