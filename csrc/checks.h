// The argument checks of every op, shared by all backends and the meta kernels. Each check names
// the argument and what was expected, with the exception type torch uses for the mistake
// (TypeError for a dtype, ValueError for an option, RuntimeError for shapes and devices); kernels
// after these checks assume valid input.
//
// The layer ops' checks take the op's arguments in schema order (ops.cpp) and return the call's
// description (layer_args.h): layer_ops.h builds the ops' kernels from them.
#pragma once

#include "layer_args.h"

#include <ATen/core/Tensor.h>
#include <c10/core/SymInt.h>
#include <c10/util/string_view.h>

#include <array>
#include <optional>

namespace lstm1997 {

// lstm's arguments as a description, options parsed (a bad activation throws) but nothing else
// checked: for the kernels that pass the call on to an op whose kernel checks it (autograd), and
// for the C++ API.
LayerArgs describe_lstm_args(const at::Tensor& input, const at::Tensor& weight_ih,
                             const at::Tensor& weight_hh, const std::optional<at::Tensor>& bias_ih,
                             const std::optional<at::Tensor>& bias_hh,
                             const std::optional<at::Tensor>& h0,
                             const std::optional<at::Tensor>& s0, bool truncate,
                             c10::string_view activation,
                             const std::optional<at::Tensor>& batch_sizes,
                             int64_t cells_per_block, bool gate_feedback);

// The checks of lstm and _lstm_forward; fills in args.sizes. With batch_sizes (packed input), h0
// and s0 are required: they give the batch size, which tracing cannot read from batch_sizes.
void check_layer_args(LayerArgs& args);

// _lstm_forward: lstm's arguments but truncate (a backward option), described and checked.
LayerArgs check_forward_args(const at::Tensor& input, const at::Tensor& weight_ih,
                             const at::Tensor& weight_hh, const std::optional<at::Tensor>& bias_ih,
                             const std::optional<at::Tensor>& bias_hh,
                             const std::optional<at::Tensor>& h0,
                             const std::optional<at::Tensor>& s0, c10::string_view activation,
                             const std::optional<at::Tensor>& batch_sizes,
                             int64_t cells_per_block, bool gate_feedback);

// _lstm_backward. With packed input grad_h_n gives the batch size.
BackwardArgs check_backward_args(const at::Tensor& grad_output, const at::Tensor& grad_h_n,
                                 const at::Tensor& grad_s_n, const at::Tensor& input,
                                 const at::Tensor& weight_ih, const at::Tensor& weight_hh,
                                 const std::optional<at::Tensor>& h0, const at::Tensor& output,
                                 const at::Tensor& squashed_state, const at::Tensor& gates,
                                 bool truncate, c10::string_view activation,
                                 const std::optional<at::Tensor>& batch_sizes,
                                 std::array<bool, 4> output_mask, int64_t cells_per_block,
                                 bool gate_feedback);

// _lstm_net_errors: _lstm_backward's arguments but output_mask.
BackwardArgs check_net_error_args(const at::Tensor& grad_output, const at::Tensor& grad_h_n,
                                  const at::Tensor& grad_s_n, const at::Tensor& input,
                                  const at::Tensor& weight_ih, const at::Tensor& weight_hh,
                                  const std::optional<at::Tensor>& h0, const at::Tensor& output,
                                  const at::Tensor& squashed_state, const at::Tensor& gates,
                                  bool truncate, c10::string_view activation,
                                  const std::optional<at::Tensor>& batch_sizes,
                                  int64_t cells_per_block, bool gate_feedback);

// The online ops' chunk and traces (lstm_online_traces, lstm_online_grads); the other arguments
// of lstm_online_grads are checked by _lstm_backward, which it calls. Returns R, the width of the
// recurrent input (h0 and the traces of weight_hh).
c10::SymInt check_online_args(const at::Tensor& input, const std::optional<at::Tensor>& h0,
                              const at::Tensor& output, const at::Tensor& gates,
                              const at::Tensor& trace_ih, const at::Tensor& trace_hh,
                              const at::Tensor& trace_bias, int64_t cells_per_block,
                              bool gate_feedback);

// _lstm_online_forward_: the step's input ((B, I), or (1, B, I)), weights, biases and options
// (check_forward_args on the step as a chunk of one), then the state and the step's buffers. Returns the call's description:
// input as a (1, B, I) chunk, hidden as h0, cell_state as s0.
LayerArgs check_online_forward_args(
    const at::Tensor& hidden, const at::Tensor& cell_state, const at::Tensor& step_input,
    const at::Tensor& previous, const at::Tensor& squashed_state, const at::Tensor& gates,
    const at::Tensor& input, const at::Tensor& weight_ih, const at::Tensor& weight_hh,
    const std::optional<at::Tensor>& bias_ih, const std::optional<at::Tensor>& bias_hh,
    c10::string_view activation, int64_t cells_per_block, bool gate_feedback);

// _lstm_online_update_ (its four targets in their order); returns the sizes (seq_len 1, rows B;
// recurrent_size R, gate_rows G). The one-step path's usual call is recognised on plain sizes
// first (see check_online_forward_sizes).
LayerSizes check_online_update_args(
    const at::Tensor& trace_ih, const at::Tensor& trace_hh, const at::Tensor& trace_bias,
    const at::Tensor& target_weight_ih, const at::Tensor& target_weight_hh,
    const at::Tensor& target_bias_ih, const at::Tensor& target_bias_hh,
    const std::optional<at::Tensor>& grad_output,
    const at::Tensor& step_input, const at::Tensor& previous, const at::Tensor& squashed_state,
    const at::Tensor& gates, c10::string_view activation, int64_t cells_per_block,
    bool gate_feedback);

// check_online_forward_args's sizes. Like check_online_update_args, it first recognises the
// one-step path's usual call on plain sizes (every tensor given, of the input's dtype, float32 or
// float64, and device, with the expected shapes, valid options), and runs the full checks, which
// name what is wrong, only for any other call. (The full checks' LayerArgs, SymInt sizes and
// checks cost OnlineLSTM's one-step calls about 0.3-0.5 us a step, against 5-6 us for the step's
// two calls at I = 32, H = 64: benchmarks/README.md, "Issue #20, seventh session".)
LayerSizes check_online_forward_sizes(
    const at::Tensor& hidden, const at::Tensor& cell_state, const at::Tensor& step_input,
    const at::Tensor& previous, const at::Tensor& squashed_state, const at::Tensor& gates,
    const at::Tensor& input, const at::Tensor& weight_ih, const at::Tensor& weight_hh,
    const std::optional<at::Tensor>& bias_ih, const std::optional<at::Tensor>& bias_hh,
    c10::string_view activation, int64_t cells_per_block, bool gate_feedback);

// Shape of a per-step tensor with `width` features: (T, B, width), or (N, width) when packed.
c10::SymDimVector per_step_shape(const LayerSizes& sizes, const c10::SymInt& width);

}  // namespace lstm1997
