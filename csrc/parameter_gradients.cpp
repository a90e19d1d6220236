#include "parameter_gradients.h"

#include "blocks.h"
#include "lstm1997.h"

#include <ATen/ATen.h>

#include <utility>

namespace lstm1997 {
namespace {

// r_{t-1} for every row of the steps t >= 1, in row order, from the recurrent state of every row
// (N, R): the previous step's, restricted to the rows still active.
at::Tensor previous_recurrent(const StepRows& steps, const at::Tensor& recurrent_2d) {
  const int64_t later_rows = recurrent_2d.size(0) - (steps.steps() > 0 ? steps.count[0] : 0);
  if (steps.dense) {
    return recurrent_2d.narrow(0, 0, later_rows);
  }
  const at::Tensor rows =
      at::tensor(previous_step_rows(steps), at::kLong).to(recurrent_2d.device());
  return recurrent_2d.index_select(0, rows);
}

void parameter_gradients(const BackwardArgs& args, const StepRows& steps,
                         const at::Tensor& net_errors, const MatrixProducts& products,
                         LayerGradients& gradients) {
  const LayerArgs& layer = args.layer;
  const int64_t T = steps.steps(), N = net_errors.size(0), G = net_errors.size(1),
                I = layer.sizes.input_size.expect_int(), H = layer.sizes.hidden_size.expect_int(),
                R = layer.sizes.recurrent_size.expect_int();
  const GradientMask& wanted = args.wanted;
  if (wanted.input) {
    gradients.grad_input =
        products.linear(net_errors, layer.weight_ih.t()).view(layer.input.sizes());
  }
  if (wanted.weight_ih) {
    gradients.grad_weight_ih =
        products.transposed(net_errors, layer.input.reshape({N, I})).contiguous();
  }
  if (wanted.weight_hh) {
    at::Tensor& grad_weight_hh = gradients.grad_weight_hh;
    const int64_t first_rows = T > 0 ? steps.count[0] : 0;
    if (N > first_rows) {
      // With gate feedback dW_hh also takes the gate outputs of t-1: the recurrent state of every
      // row, made from what the forward saved.
      const at::Tensor output_2d = args.saved.output.reshape({N, H});
      const at::Tensor recurrent_2d =
          layer.options.gate_feedback
              ? recurrent_state(args.saved.gates.reshape({N, kNumGates * H}), output_2d,
                                layer.options.cells_per_block)
              : output_2d;
      grad_weight_hh = products
                           .transposed(net_errors.narrow(0, first_rows, N - first_rows),
                                       previous_recurrent(steps, recurrent_2d))
                           .contiguous();
    } else {
      grad_weight_hh = at::zeros({G, R}, net_errors.options());
    }
    if (T > 0 && present(layer.h0)) {
      grad_weight_hh.add_(products.transposed(net_errors.narrow(0, 0, first_rows), *layer.h0));
    }
  }
  if (wanted.bias) {
    gradients.grad_bias = net_errors.sum(0);
  }
}

}  // namespace

LayerGradients backward_from_net_errors(const BackwardArgs& args, const StepRows& steps,
                                        NetErrorResult errors, const MatrixProducts& products) {
  LayerGradients gradients;
  gradients.grad_h0 = std::move(errors.grad_h0);
  gradients.grad_s0 = std::move(errors.grad_s0);
  parameter_gradients(args, steps, errors.net_errors, products, gradients);
  return gradients;
}

}  // namespace lstm1997
