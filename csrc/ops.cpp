// Every schema of the lstm1997 namespace, and nothing else. Kernels live beside their backend.
#include <torch/library.h>

TORCH_LIBRARY(lstm1997, m) {
  // One layer, one direction, a whole sequence; differentiable (truncated or exact BPTT).
  // With batch_sizes, input is the data of a PackedSequence (N, I): each sequence stops at its own
  // length and h_n, s_n hold each sequence's state at its last step.
  m.def(
      "lstm(Tensor input, Tensor weight_ih, Tensor weight_hh, Tensor? bias_ih=None, "
      "Tensor? bias_hh=None, Tensor? h0=None, Tensor? s0=None, bool truncate=True, "
      "str activation=\"tanh\", Tensor? batch_sizes=None) -> (Tensor output, Tensor h_n, "
      "Tensor s_n)");
  // The forward pass, returning also what the backward pass needs.
  m.def(
      "lstm_forward(Tensor input, Tensor weight_ih, Tensor weight_hh, Tensor? bias_ih, "
      "Tensor? bias_hh, Tensor? h0, Tensor? s0, str activation=\"tanh\", "
      "Tensor? batch_sizes=None) -> (Tensor output, Tensor h_n, Tensor s_n, Tensor squashed_state, "
      "Tensor gates)");
  // Gradients of lstm_forward's output, h_n and s_n with respect to its inputs. One grad_bias
  // serves both bias_ih and bias_hh (they enter the cell as a sum). output_mask says which of
  // grad_input, grad_weight_ih, grad_weight_hh and grad_bias to compute; the others are None.
  m.def(
      "lstm_backward(Tensor grad_output, Tensor grad_h_n, Tensor grad_s_n, Tensor input, "
      "Tensor weight_ih, Tensor weight_hh, Tensor? h0, Tensor output, Tensor squashed_state, "
      "Tensor gates, bool truncate=True, str activation=\"tanh\", Tensor? batch_sizes=None, "
      "bool[4] output_mask=[True, True, True, True]) -> "
      "(Tensor grad_input, Tensor grad_weight_ih, Tensor grad_weight_hh, Tensor grad_bias, "
      "Tensor grad_h0, Tensor grad_s0)");
}
