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

namespace lstm1997 {
namespace generic {
namespace {

// Elements of input projections that an inference pass (which keeps nothing per step) computes
// at once: the projection then needs no (T, B, G) buffer.
constexpr int64_t kInferenceChunkElements = 1 << 20;

ForwardResult run_forward(const LayerArgs& args, bool save_for_backward) {
  const StepRows steps = step_rows(args);
  const LayerSizes& sizes = args.sizes;
  const int64_t T = steps.steps(), B = steps.batch, N = sizes.rows.expect_int(),
                I = sizes.input_size.expect_int(), H = sizes.hidden_size.expect_int(),
                G = sizes.gate_rows.expect_int(), R = sizes.recurrent_size.expect_int();
  const int64_t cells_per_block = args.options.cells_per_block;
  const at::Tensor& input = args.input;
  const auto options = input.options();
  const auto opmath_options = options.dtype(at::toOpMathType(input.scalar_type()));
  const Squash<double> g = cell_input_squash<double>(args.options.activation);
  const Squash<double> h = cell_output_squash<double>(args.options.activation);

  at::Tensor bias;
  if (present(args.bias_ih) && present(args.bias_hh)) {
    bias = *args.bias_ih + *args.bias_hh;
  } else if (present(args.bias_ih) || present(args.bias_hh)) {
    bias = present(args.bias_ih) ? *args.bias_ih : *args.bias_hh;
  }
  // The recurrent state r of every sequence: r_0, then at each step that of the rows active
  // there, so that a sequence that has ended keeps its last one (h_n). Likewise the cell state.
  at::Tensor recurrent =
      present(args.h0) ? args.h0->clone(at::MemoryFormat::Contiguous) : at::zeros({B, R}, options);
  at::Tensor state = present(args.s0)
                         ? args.s0->to(opmath_options, /*non_blocking=*/false, /*copy=*/true,
                                       at::MemoryFormat::Contiguous)
                         : at::zeros({B, H}, opmath_options);
  at::Tensor output = at::empty({N, H}, options);
  at::Tensor squashed_state, gates;
  if (save_for_backward) {
    squashed_state = at::empty({N, H}, options);
    gates = at::empty({N, kNumGates * H}, options);
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
      // The rows active at step t are a prefix of those active at step t - 1.
      at::Tensor previous = recurrent.narrow(0, 0, rows);
      at::Tensor net =
          at::addmm(projection.narrow(0, first - chunk_first, rows), previous, weight_hh_t);
      if (cells_per_block > 1) {
        net = net.index_select(1, expansion);  // each block's gates repeated for its cells
      }
      net = net.to(opmath_options.dtype());
      const at::Tensor input_gate = at::sigmoid(net.narrow(1, kInputGate * H, H));
      const at::Tensor cell_input = squash(net.narrow(1, kCellInput * H, H), g);
      const at::Tensor output_gate = at::sigmoid(net.narrow(1, kOutputGate * H, H));
      at::Tensor cell_state = state.narrow(0, 0, rows);
      cell_state.add_(input_gate * cell_input);  // the constant error carousel
      const at::Tensor squashed = squash(cell_state, h);
      const at::Tensor hidden = output_gate * squashed;
      output.narrow(0, first, rows).copy_(hidden);
      if (save_for_backward) {
        squashed_state.narrow(0, first, rows).copy_(squashed);
        at::Tensor saved_gates = gates.narrow(0, first, rows);
        saved_gates.narrow(1, kInputGate * H, H).copy_(input_gate);
        saved_gates.narrow(1, kCellInput * H, H).copy_(cell_input);
        saved_gates.narrow(1, kOutputGate * H, H).copy_(output_gate);
      }
      if (args.options.gate_feedback) {
        previous.copy_(recurrent_state(at::cat({input_gate, cell_input, output_gate}, 1), hidden,
                                       cells_per_block));
      } else {
        previous.copy_(hidden);
      }
    }
  }
  at::Tensor s_n = state.to(input.scalar_type(), /*non_blocking=*/false, /*copy=*/true);
  const auto per_step = [&](const at::Tensor& tensor) {
    return sizes.packed ? tensor : tensor.view({T, B, tensor.size(1)});
  };
  if (!save_for_backward) {
    return {recurrent, s_n, {per_step(output), at::Tensor(), at::Tensor()}};
  }
  return {recurrent, s_n, {per_step(output), per_step(squashed_state), per_step(gates)}};
}

}  // namespace

ForwardResult lstm_forward(const LayerArgs& args) {
  return run_forward(args, /*save_for_backward=*/true);
}

LayerOutputs lstm_inference(const LayerArgs& args) {
  ForwardResult result = run_forward(args, /*save_for_backward=*/false);
  return {result.saved.output, result.h_n, result.s_n};
}

}  // namespace generic
}  // namespace lstm1997
