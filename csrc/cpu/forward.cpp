// The CPU kernels of lstm (inference) and _lstm_forward: one forward pass, by one of three paths,
// which choose_path picks and says why.
//
// The input projection x_t W_ih^T + b runs outside the time loop, as one library product over the
// rows of many steps, except where the small-layer loop folds it into its steps. Tensors are
// handled as 2-D (rows, features), where the rows of step t are given by StepRows, so dense and
// packed input share every loop. Pointwise math runs in at::opmath_type (float for float16 and
// bfloat16), and so does the carry through time, the cell state.
#include "../blocks.h"
#include "cell_kernels.h"
#include "kernels.h"
#include "matmul.h"
#include "small_layer.h"
#include "tiny_layer.h"

#include <ATen/ATen.h>
#include <ATen/Dispatch.h>
#include <ATen/OpMathType.h>

#include <algorithm>
#include <type_traits>
#include <vector>

namespace lstm1997 {
namespace cpu {
namespace {

enum class ForwardPath {
  kSmallLayerWithInput,  // the small-layer loop, which also does the input product step by step
  kSmallLayer,           // the small-layer loop on input projections made beforehand
  kPerStep,              // a library product and a parallel pointwise kernel per step
};

ForwardPath choose_path(const LayerArgs& args) {
  const int64_t B = args.sizes.batch.expect_int(), H = args.sizes.hidden_size.expect_int();
  // Only the per-step path spreads the shared gates of memory cell blocks to their cells.
  if (args.options.cells_per_block > 1) {
    return ForwardPath::kPerStep;
  }
  // A library call per step costs about as much as a small step's arithmetic (matmul.h); bigger
  // steps, and dtypes other than float and double, go to the library.
  if (!use_small_layer_loop(args.input, B, kNumGates * H, args.sizes.recurrent_size.expect_int())) {
    return ForwardPath::kPerStep;
  }
  // Folding the input product into the steps saves writing the projections and reading them back;
  // it pays once a step has the rows of a whole register tile to share each weight load (with
  // fewer, a step's product is bound by loading W_ih). The tile height is the same for float and
  // double vectors.
  return B >= small_gemm::grouped_rows<float, kNumGates>() ? ForwardPath::kSmallLayerWithInput
                                                            : ForwardPath::kSmallLayer;
}

// Rows of the gate buffer that an inference pass projects at once: about 1 MiB of float32, so that
// a chunk's input projection is still in cache when its steps run.
constexpr int64_t kInferenceChunkElements = 1 << 18;

// One forward pass: its sizes, and the buffers that every path writes.
struct ForwardPass {
  ForwardPass(const LayerArgs& layer, ForwardPath path, bool save_for_backward);

  const LayerArgs& args;
  StepRows steps;
  int64_t T, B, N, I, H, G;
  int64_t R;  // the width of the recurrent input: H, or K + H + K with gate feedback
  // Whether the gates and h(s_t) of every step are kept for the backward pass. Without (inference)
  // the buffers are scratch for one chunk of steps at a time: the input projection then runs chunk
  // by chunk, and the pass needs no T*B*3H buffer.
  bool save;
  int64_t chunk_steps;        // steps whose input is projected at once: all of them when saving
  int64_t buffer_rows;        // rows of the gate and squashed_state buffers: N, or a chunk's
  at::Tensor input_2d;        // (N, I)
  at::Tensor bias;            // bias_ih + bias_hh, or the one given, or undefined
  at::Tensor initial_hidden;  // (B, R): r_0
  // With gate feedback, (2, B, R): step t writes its recurrent state r_t (gate and cell outputs)
  // to slot t % 2, where step t + 1 reads it; slot 1 starts as r_0. Rows of sequences that have
  // ended keep their last r (h_n).
  at::Tensor fed_back;
  at::Tensor state;           // (B, H) opmath: the carousel's running sum; ended rows keep s_n
  at::Tensor output;          // (N, H)
  at::Tensor squashed_state;  // (buffer_rows, H); undefined when nothing reads it
  // (buffer_rows, 3H): the activated gates, per cell. Without memory cell blocks the buffer of
  // each chunk's projections, activated in place.
  at::Tensor gates;

  template <typename scalar_t>
  scalar_t* squashed_state_at(int64_t row, int64_t base) const {
    return squashed_state.data_ptr<scalar_t>() + (row - base) * H;
  }
};

ForwardPass::ForwardPass(const LayerArgs& layer, ForwardPath path, bool save_for_backward)
    : args(layer), steps(step_rows(layer)), save(save_for_backward) {
  T = steps.steps();
  B = steps.batch;
  N = args.sizes.rows.expect_int();
  I = args.sizes.input_size.expect_int();
  H = args.sizes.hidden_size.expect_int();
  G = args.sizes.gate_rows.expect_int();
  R = args.sizes.recurrent_size.expect_int();
  const auto options = args.input.options();
  const auto opmath_options = options.dtype(at::toOpMathType(args.input.scalar_type()));
  chunk_steps = save ? std::max<int64_t>(T, 1)
                     : std::max<int64_t>(1, kInferenceChunkElements /
                                                std::max<int64_t>(1, B * kNumGates * H));
  buffer_rows = save ? N : std::min(N, chunk_steps * B);
  input_2d = args.input.reshape({N, I});
  if (present(args.bias_ih) && present(args.bias_hh)) {
    bias = *args.bias_ih + *args.bias_hh;
  } else if (present(args.bias_ih) || present(args.bias_hh)) {
    bias = present(args.bias_ih) ? *args.bias_ih : *args.bias_hh;
  }
  initial_hidden = present(args.h0) ? args.h0->contiguous() : at::zeros({B, R}, options);
  if (args.options.gate_feedback) {
    fed_back = at::empty({2, B, R}, options);
    fed_back[1].copy_(initial_hidden);
  }
  state = present(args.s0) ? args.s0->to(opmath_options, /*non_blocking=*/false, /*copy=*/true,
                                         at::MemoryFormat::Contiguous)
                           : at::zeros({B, H}, opmath_options);
  output = at::empty({N, H}, options);
  if (save || path != ForwardPath::kSmallLayerWithInput) {
    squashed_state = at::empty({buffer_rows, H}, options);
  }
  if (args.options.cells_per_block > 1 || T == 0) {
    gates = at::empty({buffer_rows, kNumGates * H}, options);
  }
}

// Runs fn(t_begin, t_end, chunk_first, base, net) for each chunk of steps, where `net` holds the
// chunk's input projections (block layout, G columns), row r of the sequence at row
// r - chunk_first, and row r of the chunk's buffers (gates, squashed_state) is r - base. Without
// memory cell blocks `net` becomes the gate buffer, activated in place by the steps.
template <typename Fn>
void for_each_projected_chunk(ForwardPass& pass, const Fn& fn) {
  const bool blocked = pass.args.options.cells_per_block > 1;
  const RepeatedProduct projection(pass.args.weight_ih, pass.buffer_rows, pass.N);
  const StepRows& steps = pass.steps;
  for (int64_t t_begin = 0; t_begin < pass.T; t_begin += pass.chunk_steps) {
    const int64_t t_end = std::min(pass.T, t_begin + pass.chunk_steps);
    const int64_t first = steps.offset[t_begin];
    const int64_t rows = steps.offset[t_end - 1] + steps.count[t_end - 1] - first;
    const int64_t base = pass.save ? 0 : first;
    at::Tensor net = blocked || !pass.gates.defined()
                         ? at::empty({rows, pass.G}, pass.input_2d.options())
                         : pass.gates.narrow(0, 0, rows);
    net = projection.compute(net, pass.input_2d.narrow(0, first, rows), pass.bias);
    if (!blocked) {
      pass.gates = net;
    }
    fn(t_begin, t_end, first, base, net);
  }
}

template <typename scalar_t>
RecurrentInput<scalar_t> recurrent_input(ForwardPass& pass) {
  return {pass.initial_hidden.const_data_ptr<scalar_t>(),
          pass.fed_back.defined() ? pass.fed_back.data_ptr<scalar_t>() : nullptr, pass.R};
}

template <typename scalar_t>
void forward_small_layer_with_input(ForwardPass& pass) {
  const at::Tensor input_rows = pass.input_2d.contiguous();
  const at::Tensor input_panels =
      pack_grouped_panels<scalar_t>(pass.args.weight_ih.t(), kNumGates);
  const at::Tensor recurrent_panels =
      pack_grouped_panels<scalar_t>(pass.args.weight_hh.t(), kNumGates);
  const at::Tensor bias_rows = pass.bias.defined() ? pass.bias.contiguous() : at::Tensor();
  StepInput<scalar_t> step_input;
  step_input.input = input_rows.const_data_ptr<scalar_t>();
  step_input.panels = input_panels.const_data_ptr<scalar_t>();
  step_input.bias = bias_rows.defined() ? bias_rows.const_data_ptr<scalar_t>() : nullptr;
  step_input.input_size = pass.I;
  if (pass.save) {
    pass.gates = at::empty({pass.N, pass.G}, pass.input_2d.options());
  }
  const Activation activation = pass.args.options.activation;
  small_layer_forward_steps<scalar_t, scalar_t>(
      pass.steps, 0, pass.T, 0, step_input, recurrent_panels.const_data_ptr<scalar_t>(),
      recurrent_input<scalar_t>(pass), pass.save ? pass.gates.data_ptr<scalar_t>() : nullptr,
      pass.state.data_ptr<scalar_t>(),
      pass.save ? pass.squashed_state.data_ptr<scalar_t>() : nullptr,
      pass.output.data_ptr<scalar_t>(), pass.H, pass.save,
      cell_input_squash<scalar_t>(activation), cell_output_squash<scalar_t>(activation));
}

template <typename scalar_t>
void forward_small_layer(ForwardPass& pass) {
  const at::Tensor recurrent_panels =
      pack_grouped_panels<scalar_t>(pass.args.weight_hh.t(), kNumGates);
  const Activation activation = pass.args.options.activation;
  for_each_projected_chunk(pass, [&](int64_t t_begin, int64_t t_end, int64_t first, int64_t base,
                                     at::Tensor& net) {
    small_layer_forward_steps<scalar_t, scalar_t>(
        pass.steps, t_begin, t_end, first, StepInput<scalar_t>{},
        recurrent_panels.const_data_ptr<scalar_t>(), recurrent_input<scalar_t>(pass),
        net.data_ptr<scalar_t>(),
        pass.state.data_ptr<scalar_t>(), pass.squashed_state_at<scalar_t>(first, base),
        pass.output.data_ptr<scalar_t>(), pass.H, pass.save,
        cell_input_squash<scalar_t>(activation), cell_output_squash<scalar_t>(activation));
  });
}

template <typename scalar_t>
void forward_per_step(ForwardPass& pass) {
  using opmath_t = at::opmath_type<scalar_t>;
  const LayerArgs& args = pass.args;
  const int64_t H = pass.H;
  const bool blocked = args.options.cells_per_block > 1;
  const bool feedback = args.options.gate_feedback;
  const at::Tensor fed_back_slots[2] = {feedback ? pass.fed_back[0] : at::Tensor(),
                                        feedback ? pass.fed_back[1] : at::Tensor()};
  const RepeatedProduct recurrent(args.weight_hh, pass.B, pass.N);
  const at::Tensor expansion =
      blocked ? block_expansion_index(H, args.options.cells_per_block, args.input.options())
              : at::Tensor();
  const auto g = cell_input_squash<opmath_t>(args.options.activation);
  const auto h = cell_output_squash<opmath_t>(args.options.activation);
  const StepRows& steps = pass.steps;
  for_each_projected_chunk(pass, [&](int64_t t_begin, int64_t t_end, int64_t chunk_first,
                                     int64_t base, at::Tensor& chunk_net) {
    for (int64_t t = t_begin; t < t_end; ++t) {
      const int64_t first = steps.offset[t], rows = steps.count[t];
      at::Tensor net = chunk_net.narrow(0, first - chunk_first, rows);
      // The rows active now are a prefix of those active at the previous step.
      const at::Tensor previous =
          feedback ? fed_back_slots[(t + 1) % 2].narrow(0, 0, rows)
          : t == 0 ? pass.initial_hidden.narrow(0, 0, rows)
                   : pass.output.narrow(0, steps.offset[t - 1], rows);
      at::Tensor summed = recurrent.add(net, previous);
      at::Tensor cell_gates = pass.gates.narrow(0, first - base, rows);
      if (blocked) {
        at::index_select_out(cell_gates, summed, 1, expansion);
        summed = cell_gates;
      }
      pointwise_step<scalar_t, opmath_t>(
          summed.const_data_ptr<scalar_t>(), cell_gates.data_ptr<scalar_t>(),
          pass.state.data_ptr<opmath_t>(), pass.squashed_state_at<scalar_t>(first, base),
          pass.output.data_ptr<scalar_t>() + first * H, rows, H, g, h);
      if (feedback) {
        store_recurrent_rows(cell_gates.const_data_ptr<scalar_t>(),
                             pass.output.const_data_ptr<scalar_t>() + first * H,
                             pass.fed_back.data_ptr<scalar_t>() + (t % 2) * pass.B * pass.R, rows,
                             H, args.options.cells_per_block);
      }
    }
  });
}

// Row of each sequence's last step, where h_n is read; with gate feedback, its row in the
// (2 B, R) view of pass.fed_back.
at::Tensor last_rows(const StepRows& steps, bool fed_back) {
  std::vector<int64_t> rows(steps.batch);
  for (int64_t t = 0; t < steps.steps(); ++t) {
    for (int64_t b = steps.active_after(t); b < steps.count[t]; ++b) {
      rows[b] = fed_back ? (t % 2) * steps.batch + b : steps.offset[t] + b;
    }
  }
  return at::tensor(rows, at::kLong);
}

ForwardResult run_forward(const LayerArgs& args, bool save_for_backward) {
  if (use_tiny_layer(args)) {
    return tiny_layer_forward(args, step_rows(args), save_for_backward);
  }
  const ForwardPath path = choose_path(args);
  ForwardPass pass(args, path, save_for_backward);
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, args.input.scalar_type(),
                                  "lstm1997_forward_cpu", [&] {
    if constexpr (std::is_same_v<scalar_t, float> || std::is_same_v<scalar_t, double>) {
      if (path == ForwardPath::kSmallLayerWithInput && pass.T > 0) {
        return forward_small_layer_with_input<scalar_t>(pass);
      }
      if (path == ForwardPath::kSmallLayer) {
        return forward_small_layer<scalar_t>(pass);
      }
    }
    forward_per_step<scalar_t>(pass);
  });
  // Fresh tensors, not views: an op's outputs must not alias each other.
  const bool feedback = args.options.gate_feedback;
  const at::Tensor last_outputs =
      feedback ? pass.fed_back.view({2 * pass.B, pass.R}) : pass.output;
  at::Tensor h_n = pass.T == 0 ? pass.initial_hidden.clone()
                                : last_outputs.index_select(0, last_rows(pass.steps, feedback));
  at::Tensor s_n = pass.state.to(args.input.scalar_type(), /*non_blocking=*/false, /*copy=*/true);
  const auto per_step = [&](const at::Tensor& tensor) {
    return args.sizes.packed ? tensor : tensor.view({pass.T, pass.B, tensor.size(1)});
  };
  if (!pass.save) {
    return {h_n, s_n, {per_step(pass.output), at::Tensor(), at::Tensor()}};
  }
  return {h_n, s_n, {per_step(pass.output), per_step(pass.squashed_state), per_step(pass.gates)}};
}

}  // namespace

ForwardResult lstm_forward(const LayerArgs& args) {
  return run_forward(args, /*save_for_backward=*/true);
}

LayerOutputs lstm_inference(const LayerArgs& args) {
  ForwardResult result = run_forward(args, /*save_for_backward=*/false);
  return {result.saved.output, result.h_n, result.s_n};
}

}  // namespace cpu
}  // namespace lstm1997
