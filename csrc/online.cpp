// Online learning with the paper's truncated gradient, computed forward in time (its appendix A.1:
// "local in space and time"). Under the truncation the cell state s_t is the only path by which a
// weight influences later steps, and s_t[b, j] depends only on row j of the input-gate and
// cell-input rows. So the derivatives
//     trace[b, r, k] = d s_t[b, j(r)] / d W[r, k]       r in the input-gate and cell-input rows
// are running sums of local terms (d s_t = i_t g(z_t) through the carousel):
//     input gate row j:  trace += g(z_t[j]) f'(a_t[j]) u_t[k]
//     cell input row j:  trace += f(a_t[j]) g'(z_t[j]) u_t[k]
// with u_t = [x_t | r_{t-1} | 1] split into the three trace tensors, r_{t-1} the recurrent input
// (h_{t-1}, or with gate feedback [input gates | h_{t-1} | output gates] of t-1). The output gate
// needs no trace: its weights act on h_t at step t only. The gradient of a loss on the outputs of a
// chunk of steps is then the truncated backward over the chunk (_lstm_backward) plus what the
// error reaching the chunk's first cell state, ds, does through the traces carried in:
// dW[r, k] += sum_b ds[b, j(r)] trace[b, r, k]. Memory: the traces, B * 2H * (I + R + 1) values,
// whatever the stream's length.
//
// The ops are compositions of _lstm_backward and ATen ops, so one kernel serves every backend
// (CompositeExplicitAutograd) and the meta tensors of torch.compile; lstm_online_step_, which
// updates the traces in place, also has a CPU kernel with a pass of its own over them
// (cpu/online_step.cpp).
#include "online.h"

#include "blocks.h"
#include "generic/cell_tensors.h"
#include "checks.h"
#include "layer_ops.h"

#include <ATen/ATen.h>
#include <torch/library.h>

#include <array>

namespace lstm1997 {
namespace {

// The error ds on the chunk's first cell state, once for each traced group of rows: row j of the
// input gates and row j of the cell inputs both act through s[j].
at::Tensor per_traced_row(const at::Tensor& per_unit) {
  return at::cat({per_unit, per_unit}, -1);
}

// d s_t / d net_t for the traced rows, (T, B, 2H): the local terms of the traces.
at::Tensor local_state_derivatives(const at::Tensor& gates, Activation activation) {
  const int64_t H = gates.size(2) / kNumGates;
  const at::Tensor input_gate = gates.narrow(2, kInputGate * H, H);
  const at::Tensor cell_input = gates.narrow(2, kCellInput * H, H);  // g(z_t)
  const at::Tensor g_prime =
      generic::squash_grad_from_value(cell_input, cell_input_squash<double>(activation));
  return at::cat({cell_input * generic::sigmoid_grad_from_value(input_gate),
                  input_gate * g_prime},
                 2);
}

// r_{t-1} for every step of the chunk: h0 (zeros when absent), then the recurrent state of the
// chunk's own steps but the last.
at::Tensor previous_recurrent(const at::Tensor& output, const at::Tensor& gates,
                              const std::optional<at::Tensor>& h0,
                              const c10::SymInt& recurrent_width, int64_t cells_per_block,
                              bool gate_feedback) {
  const at::Tensor first =
      present(h0) ? h0->unsqueeze(0)
                  : at::zeros_symint({1, output.sym_size(1), recurrent_width}, output.options());
  const c10::SymInt earlier = output.sym_size(0) - 1;
  const at::Tensor later =
      gate_feedback ? recurrent_state(gates.narrow_symint(0, 0, earlier),
                                      output.narrow_symint(0, 0, earlier), cells_per_block)
                    : output.narrow_symint(0, 0, earlier);
  return at::cat({first, later}, 0);
}

std::tuple<at::Tensor, at::Tensor, at::Tensor> lstm_online_traces(
    const at::Tensor& input, const std::optional<at::Tensor>& h0, const at::Tensor& output,
    const at::Tensor& gates, const at::Tensor& trace_ih, const at::Tensor& trace_hh,
    const at::Tensor& trace_bias, c10::string_view activation, int64_t cells_per_block,
    bool gate_feedback) {
  const c10::SymInt R = check_online_args(input, h0, output, gates, trace_ih, trace_hh,
                                          trace_bias, cells_per_block, gate_feedback);
  const Activation kind = parse_activation(activation);
  if (input.size(0) == 0) {
    return {trace_ih.clone(), trace_hh.clone(), trace_bias.clone()};
  }
  const at::Tensor local = local_state_derivatives(gates, kind);
  const at::Tensor previous =
      previous_recurrent(output, gates, h0, R, cells_per_block, gate_feedback);
  // trace[b] += sum over the chunk's steps of local_t[b]^T u_t[b]: for one step (the paper's
  // online case) an outer product per batch row, in one pass over the trace; for longer chunks one
  // (2H, T) x (T, features) product per batch row.
  const auto advance = [&](const at::Tensor& trace, const at::Tensor& features) {
    if (input.size(0) == 1) {
      return at::addcmul(trace, local[0].unsqueeze(2), features[0].unsqueeze(1));
    }
    return at::baddbmm(trace, local.permute({1, 2, 0}), features.permute({1, 0, 2}));
  };
  return {advance(trace_ih, input), advance(trace_hh, previous), trace_bias + local.sum(0)};
}

// The truncated backward of the chunk's own steps (it also gives the error ds of the state
// carried in, as grad_s0).
LayerGradients chunk_backward(const at::Tensor& grad_output, const at::Tensor& input,
                              const at::Tensor& weight_ih, const at::Tensor& weight_hh,
                              const std::optional<at::Tensor>& h0, const at::Tensor& output,
                              const at::Tensor& squashed_state, const at::Tensor& gates,
                              const c10::SymInt& R, c10::string_view activation,
                              int64_t cells_per_block, bool gate_feedback) {
  BackwardArgs chunk;
  chunk.grad_output = grad_output;
  chunk.grad_h_n = at::zeros_symint({output.sym_size(1), R}, output.options());
  chunk.grad_s_n = at::zeros_symint({output.sym_size(1), output.sym_size(2)}, output.options());
  chunk.layer.input = input;
  chunk.layer.weight_ih = weight_ih;
  chunk.layer.weight_hh = weight_hh;
  chunk.layer.h0 = h0;
  chunk.layer.options.truncate = true;  // the paper's gradient, which the traces carry on
  chunk.layer.options.activation = parse_activation(activation);
  chunk.layer.options.cells_per_block = cells_per_block;
  chunk.layer.options.gate_feedback = gate_feedback;
  chunk.saved = SavedForward{output, squashed_state, gates};
  chunk.wanted.input = false;
  return dispatch_backward(chunk);
}

// Adds the sums over the traces (per cell: 2H rows) to the rows of the input gates and cell
// inputs of the weight gradients; a block's shared input gate gets the sum of its cells' copies.
void add_traced(LayerGradients& gradients, const at::Tensor& traced_ih,
                const at::Tensor& traced_hh, const at::Tensor& traced_bias, int64_t H,
                int64_t cells_per_block) {
  const auto carried = [&](const at::Tensor& per_cell) {
    return sum_block_gates(per_cell, H, cells_per_block, 0);
  };
  const int64_t traced_rows = H / cells_per_block + H;  // the input gates and the cell inputs
  gradients.grad_weight_ih.narrow(0, 0, traced_rows).add_(carried(traced_ih));
  gradients.grad_weight_hh.narrow(0, 0, traced_rows).add_(carried(traced_hh));
  gradients.grad_bias.narrow(0, 0, traced_rows).add_(carried(traced_bias));
}

std::tuple<at::Tensor, at::Tensor, at::Tensor> lstm_online_grads(
    const at::Tensor& grad_output, const at::Tensor& input, const at::Tensor& weight_ih,
    const at::Tensor& weight_hh, const std::optional<at::Tensor>& h0, const at::Tensor& output,
    const at::Tensor& squashed_state, const at::Tensor& gates, const at::Tensor& trace_ih,
    const at::Tensor& trace_hh, const at::Tensor& trace_bias, c10::string_view activation,
    int64_t cells_per_block, bool gate_feedback) {
  const c10::SymInt R = check_online_args(input, h0, output, gates, trace_ih, trace_hh,
                                          trace_bias, cells_per_block, gate_feedback);
  const int64_t H = output.size(2);
  LayerGradients gradients =
      chunk_backward(grad_output, input, weight_ih, weight_hh, h0, output, squashed_state, gates,
                     R, activation, cells_per_block, gate_feedback);
  // The steps before the chunk, through the traces: sum_b ds[b, r] trace[b, r, :].
  const at::Tensor carried_error = per_traced_row(gradients.grad_s0);  // (B, 2H)
  add_traced(gradients, (carried_error.unsqueeze(2) * trace_ih).sum(0),
             (carried_error.unsqueeze(2) * trace_hh).sum(0), (carried_error * trace_bias).sum(0),
             H, cells_per_block);
  return {gradients.grad_weight_ih, gradients.grad_weight_hh, gradients.grad_bias};
}

}  // namespace

void online_aten_trace_pass(TracePass& pass) {
  if (pass.carried_error.defined()) {
    const at::Tensor& error = pass.carried_error;
    pass.grad_traced_ih.add_((error.unsqueeze(2) * pass.trace_ih).sum(0));
    pass.grad_traced_hh.add_((error.unsqueeze(2) * pass.trace_hh).sum(0));
    pass.grad_traced_bias.add_((error * pass.trace_bias).sum(0));
  }
  if (!pass.advance || pass.input.size(0) == 0) {
    return;
  }
  const at::Tensor& local = pass.local;
  const auto advance = [&](const at::Tensor& trace, const at::Tensor& features) {
    if (features.size(0) == 1) {
      trace.addcmul_(local[0].unsqueeze(2), features[0].unsqueeze(1));
    } else {
      trace.baddbmm_(local.permute({1, 2, 0}), features.permute({1, 0, 2}));
    }
  };
  advance(pass.trace_ih, pass.input);
  advance(pass.trace_hh, pass.previous);
  pass.trace_bias.add_(local.sum(0));
}

std::tuple<at::Tensor, at::Tensor, at::Tensor> online_step(
    const at::Tensor& trace_ih, const at::Tensor& trace_hh, const at::Tensor& trace_bias,
    const std::optional<at::Tensor>& grad_output, const at::Tensor& input,
    const at::Tensor& weight_ih, const at::Tensor& weight_hh, const std::optional<at::Tensor>& h0,
    const at::Tensor& output, const at::Tensor& squashed_state, const at::Tensor& gates,
    c10::string_view activation, int64_t cells_per_block, bool gate_feedback, bool advance,
    TracePassFn trace_pass) {
  const c10::SymInt R = check_online_args(input, h0, output, gates, trace_ih, trace_hh,
                                          trace_bias, cells_per_block, gate_feedback);
  const int64_t H = output.size(2), I = input.size(2);
  LayerGradients gradients;
  at::Tensor carried_error;
  if (present(grad_output)) {
    gradients = chunk_backward(*grad_output, input, weight_ih, weight_hh, h0, output,
                               squashed_state, gates, R, activation, cells_per_block,
                               gate_feedback);
    carried_error = per_traced_row(gradients.grad_s0).contiguous();
  } else {
    const int64_t G = weight_hh.size(0);
    gradients.grad_weight_ih = at::zeros({G, I}, output.options());
    gradients.grad_weight_hh = at::zeros({G, R.expect_int()}, output.options());
    gradients.grad_bias = at::zeros({G}, output.options());
  }
  const bool chunk_terms = advance && input.size(0) > 0;
  const at::Tensor local =
      chunk_terms ? local_state_derivatives(gates, parse_activation(activation)).contiguous()
                  : at::Tensor();
  const at::Tensor previous =
      chunk_terms
          ? previous_recurrent(output, gates, h0, R, cells_per_block, gate_feedback).contiguous()
          : at::Tensor();
  const at::Tensor chunk_input = input.contiguous();
  if (!carried_error.defined() && !chunk_terms) {
    return {gradients.grad_weight_ih, gradients.grad_weight_hh, gradients.grad_bias};
  }
  TracePass pass{trace_ih, trace_hh, trace_bias, local, chunk_input, previous, carried_error,
                 at::Tensor(), at::Tensor(), at::Tensor(), chunk_terms};
  if (carried_error.defined()) {
    pass.grad_traced_ih = at::zeros({2 * H, I}, output.options());
    pass.grad_traced_hh = at::zeros({2 * H, R.expect_int()}, output.options());
    pass.grad_traced_bias = at::zeros({2 * H}, output.options());
  }
  trace_pass(pass);
  if (carried_error.defined()) {
    add_traced(gradients, pass.grad_traced_ih, pass.grad_traced_hh, pass.grad_traced_bias, H,
               cells_per_block);
  }
  return {gradients.grad_weight_ih, gradients.grad_weight_hh, gradients.grad_bias};
}

namespace {

// sum_block_gates along dim 0 of (3H, ...) per-cell rows, in symbolic sizes (the ops' meta runs
// under torch.compile's dynamic shapes).
at::Tensor block_rows(const at::Tensor& per_cell, const c10::SymInt& H, int64_t cells_per_block) {
  if (cells_per_block == 1) {
    return per_cell;
  }
  const auto shared = [&](int64_t gate) {  // (H, ...) -> (K, ...): the sum of each block's cells
    c10::SymDimVector shape{H / cells_per_block, cells_per_block};
    for (int64_t d = 1; d < per_cell.dim(); ++d) {
      shape.push_back(per_cell.sym_size(d));
    }
    return per_cell.narrow_symint(0, gate * H, H).reshape_symint(shape).sum(1);
  };
  return at::cat({shared(kInputGate), per_cell.narrow_symint(0, kCellInput * H, H),
                  shared(kOutputGate)},
                 0);
}

}  // namespace

at::Tensor online_forward_by_ops(
    const at::Tensor& hidden, const at::Tensor& cell_state, const at::Tensor& step_input,
    const at::Tensor& previous, const at::Tensor& squashed_state, const at::Tensor& gates,
    const at::Tensor& input, const at::Tensor& weight_ih, const at::Tensor& weight_hh,
    const std::optional<at::Tensor>& bias_ih, const std::optional<at::Tensor>& bias_hh,
    c10::string_view activation, int64_t cells_per_block, bool gate_feedback) {
  LayerArgs args = check_online_forward_args(hidden, cell_state, step_input, previous,
                                             squashed_state, gates, input, weight_ih, weight_hh,
                                             bias_ih, bias_hh, activation, cells_per_block,
                                             gate_feedback);
  // The forward reads hidden as h0: r_{t-1} is kept before hidden becomes r_t.
  previous.copy_(hidden);
  step_input.copy_(args.input[0]);
  args.h0 = previous;
  const ForwardResult result = dispatch_forward(args);
  hidden.copy_(result.h_n);
  cell_state.copy_(result.s_n);
  squashed_state.copy_(result.saved.squashed_state[0]);
  gates.copy_(result.saved.gates[0]);
  return input.dim() == 3 ? result.saved.output : result.saved.output[0];
}

void online_update_by_ops(const at::Tensor& trace_ih, const at::Tensor& trace_hh,
                          const at::Tensor& trace_bias, const at::Tensor& target_weight_ih,
                          const at::Tensor& target_weight_hh, const at::Tensor& target_bias_ih,
                          const at::Tensor& target_bias_hh,
                          const std::optional<at::Tensor>& grad_output,
                          const at::Tensor& step_input, const at::Tensor& previous,
                          const at::Tensor& squashed_state, const at::Tensor& gates, double alpha,
                          c10::string_view activation, int64_t cells_per_block,
                          bool gate_feedback) {
  const LayerSizes sizes = check_online_update_args(
      trace_ih, trace_hh, trace_bias, target_weight_ih, target_weight_hh, target_bias_ih,
      target_bias_hh, grad_output, step_input, previous, squashed_state, gates, activation,
      cells_per_block, gate_feedback);
  const Activation kind = parse_activation(activation);
  const c10::SymInt& H = sizes.hidden_size;
  const at::Tensor input_gate = gates.narrow_symint(1, kInputGate * H, H);
  const at::Tensor cell_input = gates.narrow_symint(1, kCellInput * H, H);  // g(z_t)
  const at::Tensor output_gate = gates.narrow_symint(1, kOutputGate * H, H);
  // The step's own terms join the traces first: the error of s_t reaches the weights through
  // every step's terms up to and including this one. (B, 2H): d s_t / d net of the traced rows.
  const at::Tensor local = at::cat(
      {cell_input * generic::sigmoid_grad_from_value(input_gate),
       input_gate * generic::squash_grad_from_value(cell_input, cell_input_squash<double>(kind))},
      1);
  trace_ih.addcmul_(local.unsqueeze(2), step_input.unsqueeze(1));
  trace_hh.addcmul_(local.unsqueeze(2), previous.unsqueeze(1));
  trace_bias.add_(local);
  if (!present(grad_output)) {
    return;
  }
  const at::Tensor output_error = grad_output->dim() == 3 ? (*grad_output)[0] : *grad_output;
  const at::Tensor state_error =
      output_error * output_gate *
      generic::squash_grad_from_value(squashed_state, cell_output_squash<double>(kind));
  const at::Tensor output_gate_error =
      output_error * squashed_state * generic::sigmoid_grad_from_value(output_gate);
  const at::Tensor carried_error = per_traced_row(state_error);  // (B, 2H)
  // Per cell (3H rows: the traced input-gate and cell-input rows, then the output gates), then
  // the block layout (G rows), where a shared gate's row is the sum of its cells'.
  const auto per_gate_row = [&](const at::Tensor& traced, const at::Tensor& output_rows) {
    return block_rows(at::cat({traced, output_rows}, 0), H, cells_per_block);
  };
  const at::Tensor gradients[3] = {
      per_gate_row((carried_error.unsqueeze(2) * trace_ih).sum(0),
                   output_gate_error.t().mm(step_input)),
      per_gate_row((carried_error.unsqueeze(2) * trace_hh).sum(0),
                   output_gate_error.t().mm(previous)),
      per_gate_row((carried_error * trace_bias).sum(0), output_gate_error.sum(0))};
  const at::Tensor* targets[4] = {&target_weight_ih, &target_weight_hh, &target_bias_ih,
                                  &target_bias_hh};
  for (size_t k = 0; k < 4; ++k) {
    if (targets[k]->sym_numel() != 0) {
      targets[k]->add_(gradients[std::min<size_t>(k, 2)], alpha);
    }
  }
}

TORCH_LIBRARY_IMPL(lstm1997, CompositeExplicitAutograd, m) {
  m.impl("_lstm_online_forward_", &online_forward_by_ops);
  m.impl("_lstm_online_update_", &online_update_by_ops);
  m.impl("lstm_online_traces", &lstm_online_traces);
  m.impl("lstm_online_grads", &lstm_online_grads);
  m.impl("lstm_online_step_", &online_step_kernel<&online_aten_trace_pass>);
}

}  // namespace lstm1997
