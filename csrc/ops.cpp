// Every schema of the lstm1997 namespace, and nothing else. Kernels live beside their backend;
// checks.h has one check function per layer op, with its arguments in the order below.
//
// Options come after `*`: keyword-only, so that callers name them and a new option can take any
// place. Ops whose names begin with an underscore are internal pieces of lstm's autograd (as in
// torchvision): called by the library itself, not a stable interface.
#include <torch/library.h>

TORCH_LIBRARY(lstm1997, m) {
  // One layer, one direction, a whole sequence; differentiable (truncated or exact BPTT).
  // cells_per_block: S cells share one input gate and one output gate (memory cell blocks);
  // the weights then have hidden_size + 2 * hidden_size / S gate rows (see lstm1997.h).
  // With batch_sizes, input is the data of a PackedSequence (N, I): each sequence stops at its own
  // length and h_n, s_n hold each sequence's state at its last step.
  // gate_feedback: every cell and gate also sees the gate outputs of t-1 (the paper's network);
  // weight_hh is then (G, G), and h0, h_n are the whole recurrent state [input gates | cell
  // outputs | output gates] (see lstm1997.h).
  m.def(
      "lstm(Tensor input, Tensor weight_ih, Tensor weight_hh, Tensor? bias_ih=None, "
      "Tensor? bias_hh=None, Tensor? h0=None, Tensor? s0=None, *, bool truncate=True, "
      "str activation=\"tanh\", Tensor? batch_sizes=None, int cells_per_block=1, "
      "bool gate_feedback=False) -> (Tensor output, Tensor h_n, Tensor s_n)");
  // Both directions of one layer: lstm over input, and over input read backwards with the
  // `_reverse` weights; output (T, B, 2H) is [forward | reverse] in the input's order, h0, s0,
  // h_n and s_n stack the directions (2, B, width). With batch_sizes (packed input, values
  // needed: not on meta) each sequence is read backwards within its own length. A composition of
  // lstm (csrc/bidirectional.cpp): it makes a bidirectional layer one op in captured graphs.
  m.def(
      "lstm_bidirectional(Tensor input, Tensor weight_ih, Tensor weight_hh, Tensor? bias_ih, "
      "Tensor? bias_hh, Tensor weight_ih_reverse, Tensor weight_hh_reverse, "
      "Tensor? bias_ih_reverse, Tensor? bias_hh_reverse, Tensor? h0=None, Tensor? s0=None, *, "
      "bool truncate=True, str activation=\"tanh\", Tensor? batch_sizes=None, "
      "int cells_per_block=1, bool gate_feedback=False) -> (Tensor output, Tensor h_n, "
      "Tensor s_n)");
  // lstm as a composition of ATen ops (the device-generic forward, with the recurrent input
  // detached in truncated mode), which autograd and torch.func differentiate by themselves: the
  // slow, differentiable path of double backward and of forward-mode AD
  // (python/lstm1997/_transforms.py).
  m.def(
      "_lstm_differentiable(Tensor input, Tensor weight_ih, Tensor weight_hh, "
      "Tensor? bias_ih=None, Tensor? bias_hh=None, Tensor? h0=None, Tensor? s0=None, *, "
      "bool truncate=True, str activation=\"tanh\", Tensor? batch_sizes=None, "
      "int cells_per_block=1, bool gate_feedback=False) -> (Tensor output, Tensor h_n, "
      "Tensor s_n)");
  // The forward pass, returning also what the backward pass needs.
  m.def(
      "_lstm_forward(Tensor input, Tensor weight_ih, Tensor weight_hh, Tensor? bias_ih=None, "
      "Tensor? bias_hh=None, Tensor? h0=None, Tensor? s0=None, *, str activation=\"tanh\", "
      "Tensor? batch_sizes=None, int cells_per_block=1, bool gate_feedback=False) -> "
      "(Tensor output, Tensor h_n, Tensor s_n, Tensor squashed_state, Tensor gates)");
  // Gradients of _lstm_forward's output, h_n and s_n with respect to its inputs. One grad_bias
  // serves both bias_ih and bias_hh (they enter the cell as a sum). output_mask says which of
  // grad_input, grad_weight_ih, grad_weight_hh and grad_bias to compute; the others are None.
  m.def(
      "_lstm_backward(Tensor grad_output, Tensor grad_h_n, Tensor grad_s_n, Tensor input, "
      "Tensor weight_ih, Tensor weight_hh, Tensor? h0, Tensor output, Tensor squashed_state, "
      "Tensor gates, *, bool truncate=True, str activation=\"tanh\", Tensor? batch_sizes=None, "
      "bool[4] output_mask=[True, True, True, True], int cells_per_block=1, "
      "bool gate_feedback=False) -> (Tensor grad_input, Tensor grad_weight_ih, "
      "Tensor grad_weight_hh, Tensor grad_bias, Tensor grad_h0, Tensor grad_s0)");
  // The first half of _lstm_backward (same arguments, no output_mask): the error of every row's
  // net inputs, (rows, G) in the weights' block layout (rows as in the (rows, features) view of
  // input: T * B, step by step, or the N packed rows), and the errors of h0 and s0. Every weight
  // gradient is a product of net_errors with what the forward read, so a caller can form them
  // per group of rows (torch.func's per-sample gradients: python/lstm1997/_transforms.py).
  m.def(
      "_lstm_net_errors(Tensor grad_output, Tensor grad_h_n, Tensor grad_s_n, Tensor input, "
      "Tensor weight_ih, Tensor weight_hh, Tensor? h0, Tensor output, Tensor squashed_state, "
      "Tensor gates, *, bool truncate=True, str activation=\"tanh\", Tensor? batch_sizes=None, "
      "int cells_per_block=1, bool gate_feedback=False) -> (Tensor net_errors, Tensor grad_h0, "
      "Tensor grad_s0)");
  // An ensemble of E layers of the same sizes and options (torch.func's vmap over stacked
  // weights): _lstm_forward and _lstm_backward of every member in one call. Every tensor argument
  // and result has the members in front (dim 0) and one member's tensor behind; batch_sizes is
  // shared. See ensemble.h.
  m.def(
      "_lstm_ensemble_forward(Tensor input, Tensor weight_ih, Tensor weight_hh, "
      "Tensor? bias_ih=None, Tensor? bias_hh=None, Tensor? h0=None, Tensor? s0=None, *, "
      "str activation=\"tanh\", Tensor? batch_sizes=None, int cells_per_block=1, "
      "bool gate_feedback=False) -> (Tensor output, Tensor h_n, Tensor s_n, "
      "Tensor squashed_state, Tensor gates)");
  m.def(
      "_lstm_ensemble_backward(Tensor grad_output, Tensor grad_h_n, Tensor grad_s_n, "
      "Tensor input, Tensor weight_ih, Tensor weight_hh, Tensor? h0, Tensor output, "
      "Tensor squashed_state, Tensor gates, *, bool truncate=True, str activation=\"tanh\", "
      "Tensor? batch_sizes=None, bool[4] output_mask=[True, True, True, True], "
      "int cells_per_block=1, bool gate_feedback=False) -> (Tensor grad_input, "
      "Tensor grad_weight_ih, Tensor grad_weight_hh, Tensor grad_bias, Tensor grad_h0, "
      "Tensor grad_s0)");
  // Online learning: the paper's truncated gradient computed forward in time. The traces hold,
  // for each batch row, the derivative of the cell state with respect to the weights of the rows
  // it depends on through the carousel, the input-gate and cell-input rows of each cell (2H, a
  // block's shared input gate counted once per cell):
  // trace_ih (B, 2H, I), trace_hh (B, 2H, R), trace_bias (B, 2H), R the recurrent input's width
  // (H, or K + H + K with gate_feedback). Both ops take a chunk of steps run by _lstm_forward
  // (input, h0, output, squashed_state, gates as there, with the same options; dense only).
  // The traces after the chunk.
  m.def(
      "lstm_online_traces(Tensor input, Tensor? h0, Tensor output, Tensor gates, "
      "Tensor trace_ih, Tensor trace_hh, Tensor trace_bias, *, str activation=\"tanh\", "
      "int cells_per_block=1, bool gate_feedback=False) -> (Tensor trace_ih, Tensor trace_hh, "
      "Tensor trace_bias)");
  // The weight gradients of a loss on the chunk's outputs (grad_output), including the effect of
  // the weights through the cell state carried in from before the chunk (traces at its start):
  // over a sequence, the sum of these per chunk is the truncated backward's gradient.
  m.def(
      "lstm_online_grads(Tensor grad_output, Tensor input, Tensor weight_ih, Tensor weight_hh, "
      "Tensor? h0, Tensor output, Tensor squashed_state, Tensor gates, Tensor trace_ih, "
      "Tensor trace_hh, Tensor trace_bias, *, str activation=\"tanh\", int cells_per_block=1, "
      "bool gate_feedback=False) -> (Tensor grad_weight_ih, Tensor grad_weight_hh, "
      "Tensor grad_bias)");
  // The online step with the traces updated in place: lstm_online_grads's gradients (zeros when
  // grad_output is None) from the traces as they are, then, with `advance`, the chunk's terms
  // added to the traces (what lstm_online_traces returns), in one pass over them.
  m.def(
      "lstm_online_step_(Tensor(a!) trace_ih, Tensor(b!) trace_hh, Tensor(c!) trace_bias, "
      "Tensor? grad_output, Tensor input, Tensor weight_ih, Tensor weight_hh, Tensor? h0, "
      "Tensor output, Tensor squashed_state, Tensor gates, *, str activation=\"tanh\", "
      "int cells_per_block=1, bool gate_feedback=False, bool advance=True) -> "
      "(Tensor grad_weight_ih, Tensor grad_weight_hh, Tensor grad_bias)");
  // The paper's recipe, an update after every step, at the cost of a step: OnlineLSTM's one-step
  // calls run these two ops on buffers kept between calls, in place of _lstm_forward,
  // lstm_online_step_ and a parameter update, with nothing allocated but the step's output.
  // Shapes as in the layer ops for one step (T = 1, no time dimension).
  // _lstm_online_forward_: one step of input (B, I) from the recurrent state `hidden` (B, R) and
  // `cell_state` (B, H), both advanced in place; it writes what _lstm_online_update_ needs to the
  // step's buffers: step_input (B, I) a copy of input, previous (B, R) the recurrent input r_{t-1},
  // squashed_state (B, H) h(s_t) and gates (B, 3H) per cell. Returns the cell outputs h_t (B, H).
  // A chunk of one step, input (1, B, I), gives output (1, B, H) (and grad_output may then be
  // (1, B, H)): the shapes of a sequence's chunks, with no view made in Python.
  m.def(
      "_lstm_online_forward_(Tensor(a!) hidden, Tensor(b!) cell_state, Tensor(c!) step_input, "
      "Tensor(d!) previous, Tensor(e!) squashed_state, Tensor(f!) gates, Tensor input, "
      "Tensor weight_ih, Tensor weight_hh, Tensor? bias_ih=None, Tensor? bias_hh=None, *, "
      "str activation=\"tanh\", int cells_per_block=1, bool gate_feedback=False) -> Tensor");
  // _lstm_online_update_: the step's terms added to the traces and, with grad_output (B, H), the
  // gradient of a loss on the step's outputs through them (lstm_online_step_'s, with the traces
  // as they come out), added times alpha to each target, shaped as weight_ih, weight_hh, bias_ih
  // and bias_hh (the parameters with alpha = -lr: the paper's update; or their .grad with
  // alpha = 1). An empty target is left alone (a frozen or absent parameter). One pass over the
  // traces; the gradient itself is never stored.
  m.def(
      "_lstm_online_update_(Tensor(a!) trace_ih, Tensor(b!) trace_hh, Tensor(c!) trace_bias, "
      "Tensor(d!) target_weight_ih, Tensor(e!) target_weight_hh, Tensor(f!) target_bias_ih, "
      "Tensor(g!) target_bias_hh, Tensor? grad_output, Tensor step_input, Tensor previous, "
      "Tensor squashed_state, Tensor gates, *, float alpha, str activation=\"tanh\", "
      "int cells_per_block=1, bool gate_feedback=False) -> ()");
}
