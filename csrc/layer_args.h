// One description of a call of the layer op: its tensors, its options and the sizes the argument
// checks derived from them. The checks (checks.h) make it from the op's arguments; every backend
// kernel, the meta kernels and the autograd read it; layer_ops.h maps it to and from the schemas.
//
// A new option of the layer op goes into LayerOptions (and its to_ivalue/from_ivalue), the schemas
// (ops.cpp) with their check functions (checks.h) and dispatcher calls (layer_ops.cpp), and the
// kernels that use it.
#pragma once

#include "lstm1997.h"

#include <ATen/core/Tensor.h>
#include <ATen/core/ivalue.h>
#include <c10/core/SymInt.h>
#include <c10/util/string_view.h>

#include <optional>
#include <tuple>

namespace lstm1997 {

// Everything in a layer op's schema that is not a tensor.
struct LayerOptions {
  // The backward mode: the paper's truncated gradient (true) or exact BPTT. The forward ignores it.
  bool truncate = true;
  Activation activation = Activation::Tanh;
  // S cells share one input gate and one output gate (memory cell blocks, lstm1997.h).
  int64_t cells_per_block = 1;
  // Every cell and gate also sees the gate outputs of t-1 (the paper's network, lstm1997.h).
  bool gate_feedback = false;

  // As one IValue, for the autograd context, which outlives the call.
  c10::IValue to_ivalue() const;
  static LayerOptions from_ivalue(const c10::IValue& value);
};

Activation parse_activation(c10::string_view name);  // "tanh" or "paper", else ValueError
c10::string_view activation_name(Activation activation);

// Sizes of one layer call, symbolic so that the same checks serve real and fake (meta) tensors.
struct LayerSizes {
  c10::SymInt seq_len;
  c10::SymInt batch;
  c10::SymInt input_size;
  c10::SymInt hidden_size;
  c10::SymInt recurrent_size;  // R: columns of weight_hh, h0 and h_n (lstm1997.h)
  c10::SymInt gate_rows;  // rows of the weights: K + H + K (lstm1997.h)
  c10::SymInt rows;       // rows of the (rows, features) view of input and output: T*B, or N
  bool packed = false;
};

// A layer call. The dispatcher calls of layer_ops.h read the tensors and options only: the sizes
// are the checks' (each op's kernels check their arguments again).
struct LayerArgs {
  at::Tensor input;
  at::Tensor weight_ih;
  at::Tensor weight_hh;
  std::optional<at::Tensor> bias_ih;
  std::optional<at::Tensor> bias_hh;
  std::optional<at::Tensor> h0;
  std::optional<at::Tensor> s0;
  std::optional<at::Tensor> batch_sizes;  // packed input (a PackedSequence's batch_sizes)
  LayerOptions options;
  LayerSizes sizes;
};

// What a forward pass keeps for the backward pass, besides its inputs.
struct SavedForward {
  at::Tensor output;          // h_t of every step
  at::Tensor squashed_state;  // h(s_t) of every step
  at::Tensor gates;           // the activated gates of every step, per cell (3H)
};

// The results of the lstm op.
struct LayerOutputs {
  at::Tensor output, h_n, s_n;
};

// The results of the forward op: the lstm op's, and what the backward needs (`saved`, whose
// squashed_state and gates are undefined when a kernel runs for inference).
struct ForwardResult {
  at::Tensor h_n, s_n;
  SavedForward saved;
};

// Which gradients a backward call computes (the others are returned undefined).
struct GradientMask {
  bool input = true, weight_ih = true, weight_hh = true, bias = true;
};

// A call of the backward op: the errors of the forward's outputs, the layer as the forward ran it
// (its biases and s0 are absent: the backward needs neither) and what the forward saved.
struct BackwardArgs {
  at::Tensor grad_output, grad_h_n, grad_s_n;
  LayerArgs layer;
  SavedForward saved;
  GradientMask wanted;
};

// One grad_bias serves both bias_ih and bias_hh: they enter the cell as a sum.
struct LayerGradients {
  at::Tensor grad_input, grad_weight_ih, grad_weight_hh, grad_bias, grad_h0, grad_s0;
};

// The results of the net-errors op: the first half of a backward call.
struct NetErrorResult {
  at::Tensor net_errors;  // (rows, G): the error of every row's net inputs, block layout
  at::Tensor grad_h0, grad_s0;
};

// Whether an optional tensor argument (Tensor? in a schema) was given.
inline bool present(const std::optional<at::Tensor>& tensor) {
  return tensor.has_value() && tensor->defined();
}

}  // namespace lstm1997
