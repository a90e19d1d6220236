// The CPU backend's kernels, as its files call each other: forward.cpp and backward.cpp hold the
// op kernels that register.cpp registers; the backward reaches the net-input errors of its two
// modes in truncated_backward.cpp and exact_backward.cpp.
#pragma once

#include "../ensemble.h"
#include "../layer_args.h"
#include "../step_rows.h"

#include <ATen/core/Tensor.h>

namespace lstm1997 {
namespace cpu {

// Whether the CPU's online kernels (online_one_step.cpp, online_step.cpp) take the traces
// (B, 2H, I), (B, 2H, R) and the biases' (B, 2H): each with its values without gaps or overlap,
// a row's features next to each other, and its rows batch row by batch row (contiguous) or gate
// row by gate row (the (2H, B, width) tensor transposed, as OnlineLSTM allocates it: the update's
// pass reads one gate row of every batch row in turn, which then lie next to each other). The
// kernels index rows by the traces' strides; other layouts go to the ATen implementations.
inline bool online_kernel_layout(const at::Tensor& trace_ih, const at::Tensor& trace_hh,
                                 const at::Tensor& trace_bias) {
  const auto taken = [](const at::Tensor& trace) {
    return trace.is_non_overlapping_and_dense() &&
           (trace.dim() != 3 || trace.size(2) == 1 || trace.stride(2) == 1);
  };
  return taken(trace_ih) && taken(trace_hh) && taken(trace_bias);
}

// forward.cpp: the lstm op without autograd (nothing saved for backward), and _lstm_forward.
LayerOutputs lstm_inference(const LayerArgs& args);
ForwardResult lstm_forward(const LayerArgs& args);

// ensemble.cpp: _lstm_ensemble_forward and _lstm_ensemble_backward.
ForwardResult lstm_ensemble_forward(const EnsembleArgs& args);
LayerGradients lstm_ensemble_backward(const EnsembleBackwardArgs& args);

// backward.cpp: _lstm_backward, and its first half, _lstm_net_errors.
LayerGradients lstm_backward(const BackwardArgs& args);
NetErrorResult lstm_net_errors(const BackwardArgs& args);

// What both backward modes read, contiguous, with the rows of each step in `steps`.
struct NetErrorInputs {
  const StepRows& steps;
  at::Tensor grad_output;     // (rows, H): the error reaching h_t from outside
  at::Tensor grad_h_n;        // (B, R): the error of the recurrent state at each last step
  at::Tensor squashed_state;  // (rows, H)
  at::Tensor gates;           // (rows, 3H)
  LayerOptions options;

  // R, and where the cell outputs begin in a row of the recurrent state (lstm1997.h).
  int64_t recurrent_width() const {
    return lstm1997::recurrent_width(grad_output.size(-1), options.cells_per_block,
                                     options.gate_feedback);
  }
  int64_t hidden_offset() const {
    return lstm1997::hidden_offset(grad_output.size(-1), options.cells_per_block,
                                   options.gate_feedback);
  }
};

// The error of every net input, into dnet (rows, 3H, per cell). `ds_carry` (B, H, in opmath
// precision) enters as grad_s_n and leaves as the error on s0.
// truncated_backward.cpp: the paper's truncation, a reverse scan with no matrix product.
void truncated_net_errors(const NetErrorInputs& inputs, at::Tensor& dnet, at::Tensor& ds_carry);
// exact_backward.cpp: exact BPTT, a product with W_hh per step. `dh_carry` (B, R), the error of
// the recurrent state, enters as grad_h_n and leaves as the error on h0.
void exact_net_errors(const NetErrorInputs& inputs, const LayerArgs& layer, at::Tensor& dnet,
                      at::Tensor& dh_carry, at::Tensor& ds_carry);

}  // namespace cpu
}  // namespace lstm1997
