// The device-generic lstm (inference) and _lstm_forward: the input projection of many steps as one
// product, then per step one product with W_hh and the cell's pointwise ops on all active rows.
// Pointwise math and the cell state run in at::opmath_type (float for float16 and bfloat16), as
// on the CPU; what is saved for backward has the input's dtype.
#include "../blocks.h"
#include "../step_rows.h"
#include "cell_tensors.h"
#include "kernels.h"

#include <ATen/ATen.h>
#include <ATen/OpMathType.h>

#include <algorithm>
#include <vector>

namespace lstm1997 {
namespace generic {
namespace {

// Elements of input projections that an inference pass (which keeps nothing per step) computes
// at once: the projection then needs no (T, B, G) buffer.
constexpr int64_t kInferenceChunkElements = 1 << 20;

// Rows [0, rows) of `state` replaced by `rows_state`: the sequences still running at a step are
// a prefix of the batch; those that have ended keep their last state.
at::Tensor with_rows(const at::Tensor& state, const at::Tensor& rows_state) {
  const int64_t rows = rows_state.size(0);
  return rows == state.size(0)
             ? rows_state
             : at::cat({rows_state, state.narrow(0, rows, state.size(0) - rows)}, 0);
}

// Written without in-place updates, so that autograd can also differentiate it (the double
// backward of autograd.cpp runs it under autograd): each step makes new tensors, and the
// per-step results are concatenated at the end. detach_recurrent detaches the recurrent input
// where it enters the recurrent product, which makes autograd's gradient through the pass the
// paper's truncated one.
ForwardResult run_forward(const LayerArgs& args, bool save_for_backward, bool detach_recurrent) {
  const StepRows steps = step_rows(args);
  const LayerSizes& sizes = args.sizes;
  const int64_t T = steps.steps(), B = steps.batch, N = sizes.rows.expect_int(),
                I = sizes.input_size.expect_int(), H = sizes.hidden_size.expect_int(),
                G = sizes.gate_rows.expect_int(), R = sizes.recurrent_size.expect_int();
  const int64_t cells_per_block = args.options.cells_per_block;
  const at::Tensor& input = args.input;
  const at::ScalarType dtype = input.scalar_type();
  const auto options = input.options();
  const auto opmath_options = options.dtype(at::toOpMathType(dtype));
  const Squash<double> g = cell_input_squash<double>(args.options.activation);
  const Squash<double> h = cell_output_squash<double>(args.options.activation);

  at::Tensor bias;
  if (present(args.bias_ih) && present(args.bias_hh)) {
    bias = *args.bias_ih + *args.bias_hh;
  } else if (present(args.bias_ih) || present(args.bias_hh)) {
    bias = present(args.bias_ih) ? *args.bias_ih : *args.bias_hh;
  }
  // The recurrent state r of every sequence (r_0, then each step's for the rows active there: a
  // sequence that has ended keeps its last one, h_n), and likewise the cell state.
  at::Tensor recurrent = present(args.h0) ? *args.h0 : at::zeros({B, R}, options);
  at::Tensor state = present(args.s0) ? args.s0->to(opmath_options.dtype())
                                      : at::zeros({B, H}, opmath_options);
  std::vector<at::Tensor> outputs, squashed_states, cell_gates;
  outputs.reserve(T);
  if (save_for_backward) {
    squashed_states.reserve(T);
    cell_gates.reserve(T);
  }
  const at::Tensor expansion = cells_per_block > 1
                                   ? block_expansion_index(H, cells_per_block, options)
                                   : at::Tensor();
  const at::Tensor input_2d = input.reshape({N, I});
  const at::Tensor weight_ih_t = args.weight_ih.t(), weight_hh_t = args.weight_hh.t();
  const int64_t chunk_steps =
      save_for_backward ? std::max<int64_t>(T, 1)
                        : std::max<int64_t>(1, kInferenceChunkElements / std::max<int64_t>(1, B * G));

  for (int64_t t_begin = 0; t_begin < T; t_begin += chunk_steps) {
    const int64_t t_end = std::min(T, t_begin + chunk_steps);
    const int64_t chunk_first = steps.offset[t_begin];
    const int64_t chunk_rows = steps.offset[t_end - 1] + steps.count[t_end - 1] - chunk_first;
    const at::Tensor chunk_input = input_2d.narrow(0, chunk_first, chunk_rows);
    const at::Tensor projection = bias.defined() ? at::addmm(bias, chunk_input, weight_ih_t)
                                                 : at::mm(chunk_input, weight_ih_t);
    for (int64_t t = t_begin; t < t_end; ++t) {
      const int64_t first = steps.offset[t], rows = steps.count[t];
      at::Tensor previous = recurrent.narrow(0, 0, rows);
      if (detach_recurrent) {
        previous = previous.detach();
      }
      at::Tensor net =
          at::addmm(projection.narrow(0, first - chunk_first, rows), previous, weight_hh_t);
      if (cells_per_block > 1) {
        net = net.index_select(1, expansion);  // each block's gates repeated for its cells
      }
      net = net.to(opmath_options.dtype());
      const at::Tensor input_gate = at::sigmoid(net.narrow(1, kInputGate * H, H));
      const at::Tensor cell_input = squash(net.narrow(1, kCellInput * H, H), g);
      const at::Tensor output_gate = at::sigmoid(net.narrow(1, kOutputGate * H, H));
      // The constant error carousel.
      const at::Tensor cell_state = state.narrow(0, 0, rows) + input_gate * cell_input;
      const at::Tensor squashed = squash(cell_state, h);
      const at::Tensor hidden = (output_gate * squashed).to(dtype);
      state = with_rows(state, cell_state);
      outputs.push_back(hidden);
      at::Tensor gates;
      if (save_for_backward || args.options.gate_feedback) {
        gates = at::cat({input_gate, cell_input, output_gate}, 1).to(dtype);
      }
      if (save_for_backward) {
        squashed_states.push_back(squashed.to(dtype));
        cell_gates.push_back(gates);
      }
      recurrent = with_rows(recurrent, args.options.gate_feedback
                                           ? recurrent_state(gates, hidden, cells_per_block)
                                           : hidden);
    }
  }
  const auto per_step = [&](std::vector<at::Tensor>& pieces, int64_t width) {
    const at::Tensor rows = pieces.empty() ? at::empty({0, width}, options) : at::cat(pieces, 0);
    return sizes.packed ? rows : rows.view({T, B, width});
  };
  // Fresh tensors: an op's outputs must not alias its inputs or each other.
  at::Tensor h_n = T == 0 && present(args.h0) ? recurrent.clone() : recurrent;
  at::Tensor s_n = state.to(dtype, /*non_blocking=*/false, /*copy=*/true);
  if (!save_for_backward) {
    return {h_n, s_n, {per_step(outputs, H), at::Tensor(), at::Tensor()}};
  }
  return {h_n, s_n,
          {per_step(outputs, H), per_step(squashed_states, H),
           per_step(cell_gates, kNumGates * H)}};
}

}  // namespace

ForwardResult lstm_forward(const LayerArgs& args) {
  return run_forward(args, /*save_for_backward=*/true, /*detach_recurrent=*/false);
}

LayerOutputs lstm_inference(const LayerArgs& args) {
  ForwardResult result = run_forward(args, /*save_for_backward=*/false, /*detach_recurrent=*/false);
  return {result.saved.output, result.h_n, result.s_n};
}

LayerOutputs differentiable_lstm(const LayerArgs& args) {
  ForwardResult result = run_forward(args, /*save_for_backward=*/false,
                                     /*detach_recurrent=*/args.options.truncate);
  return {result.saved.output, result.h_n, result.s_n};
}

}  // namespace generic
}  // namespace lstm1997
