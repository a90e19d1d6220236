// The device-generic _lstm_backward. The net-input errors of every row come from one of the two
// modes; then parameter_gradients.h's large products over all rows at once. Pointwise math and the
// cell state's error run in at::opmath_type (float for float16 and bfloat16), as on the CPU.
//
// Truncated (the paper's gradient): the error reaching h_t is only the external one, so the cell
// state's error is ds_t = grad_s_n + sum_{t' >= t} dh_t' o_t' h'(s_t') over the sequence's own
// steps: one reverse cumulative sum over time, and every other term pointwise over all rows at
// once. Exact BPTT: the recurrent state's error dr_{t-1} = dnet_t W_hh, one product per step.
#include "../blocks.h"
#include "../parameter_gradients.h"
#include "../step_rows.h"
#include "cell_tensors.h"
#include "kernels.h"

#include <ATen/ATen.h>
#include <ATen/OpMathType.h>

#include <utility>
#include <vector>

namespace lstm1997 {
namespace generic {
namespace {

// A kernel's host-made row indices, on the device of `like`.
at::Tensor row_index(const std::vector<int64_t>& rows, const at::Tensor& like) {
  return at::tensor(rows, at::kLong).to(like.device());
}

// What the forward saved of some rows, in opmath precision: the activated gates (per cell) and
// h(s_t); and the cell's derivatives there.
class SavedRows {
 public:
  SavedRows(const at::Tensor& gates, const at::Tensor& squashed_state, Activation activation)
      : SavedRows(gates, squashed_state, cell_input_squash<double>(activation),
                  cell_output_squash<double>(activation)) {}

  SavedRows narrow(int64_t first, int64_t rows) const {
    return {gates_.narrow(0, first, rows), squashed_state_.narrow(0, first, rows), g_, h_};
  }
  SavedRows select(const at::Tensor& rows) const {
    return {gates_.index_select(0, rows), squashed_state_.index_select(0, rows), g_, h_};
  }

  // The error that dh (the error of h_t) adds to s_t's.
  at::Tensor state_error(const at::Tensor& dh) const {
    return dh * output_gate() * squash_grad_from_value(squashed_state_, h_);
  }
  // The per-cell net-input errors (rows, 3H) from ds (the error of s_t) and dh.
  at::Tensor net_errors(const at::Tensor& ds, const at::Tensor& dh) const {
    return at::cat({ds * cell_input() * sigmoid_grad_from_value(input_gate()),
                    ds * input_gate() * squash_grad_from_value(cell_input(), g_),
                    dh * squashed_state_ * sigmoid_grad_from_value(output_gate())},
                   1);
  }
  // With gate feedback, the net-input errors that the error of the recurrent state's gate parts
  // (d_recurrent's first and last K columns) causes, in the block layout (rows, G); a block's
  // gate is read at its first cell (blocks.h).
  at::Tensor gate_output_errors(const at::Tensor& d_recurrent, int64_t cells_per_block) const {
    const int64_t H = squashed_state_.size(1), K = H / cells_per_block;
    const auto block_gate_slope = [&](const at::Tensor& cell_gate) {
      return sigmoid_grad_from_value(cell_gate.slice(1, 0, H, cells_per_block));
    };
    return at::cat({d_recurrent.narrow(1, 0, K) * block_gate_slope(input_gate()),
                    at::zeros({d_recurrent.size(0), H}, d_recurrent.options()),
                    d_recurrent.narrow(1, K + H, K) * block_gate_slope(output_gate())},
                   1);
  }

 private:
  SavedRows(at::Tensor gates, at::Tensor squashed_state, Squash<double> g, Squash<double> h)
      : gates_(std::move(gates)), squashed_state_(std::move(squashed_state)), g_(g), h_(h) {}

  at::Tensor gate(Gate which) const {
    const int64_t H = squashed_state_.size(1);
    return gates_.narrow(1, which * H, H);
  }
  at::Tensor input_gate() const { return gate(kInputGate); }
  at::Tensor cell_input() const { return gate(kCellInput); }
  at::Tensor output_gate() const { return gate(kOutputGate); }

  at::Tensor gates_, squashed_state_;  // (rows, 3H), (rows, H)
  Squash<double> g_, h_;
};

// ds of every row: grad_s_n plus the reverse cumulative sum of `local` (N, H) over each
// sequence's own steps. Packed rows are padded to a dense (T, B) grid, where the steps after a
// sequence's end add zeros.
at::Tensor reverse_state_errors(const at::Tensor& local, const at::Tensor& grad_s_n,
                                const StepRows& steps) {
  const int64_t T = steps.steps(), B = steps.batch, H = local.size(1);
  at::Tensor padded_index;
  at::Tensor padded = local;
  if (!steps.dense) {
    padded_index = row_index(padded_rows(steps), local);
    padded = at::zeros({T * B, H}, local.options()).index_copy_(0, padded_index, local);
  }
  // grad_s_n first, then the steps from the last: a running sum in the order of the carousel.
  const at::Tensor sums =
      at::cat({grad_s_n.unsqueeze(0), padded.view({T, B, H}).flip(0)}, 0).cumsum(0);
  const at::Tensor per_step = sums.narrow(0, 1, T).flip(0).reshape({T * B, H});
  return steps.dense ? per_step : per_step.index_select(0, padded_index);
}

// The net-input errors as (rows, G), and the errors of h0 and s0.
NetErrorResult net_errors_of_rows(const BackwardArgs& args, const StepRows& steps) {
  const LayerArgs& layer = args.layer;
  const LayerSizes& sizes = layer.sizes;
  const int64_t T = steps.steps(), B = steps.batch, N = sizes.rows.expect_int(),
                H = sizes.hidden_size.expect_int(), R = sizes.recurrent_size.expect_int();
  const LayerOptions& options = layer.options;
  const int64_t cells_per_block = options.cells_per_block;
  const bool feedback = options.gate_feedback;
  const int64_t hidden_offset = lstm1997::hidden_offset(H, cells_per_block, feedback);
  const at::ScalarType dtype = layer.input.scalar_type(), opmath = at::toOpMathType(dtype);
  const at::Tensor grad_output = args.grad_output.reshape({N, H}).to(opmath);
  const at::Tensor grad_s_n = args.grad_s_n.to(opmath);
  const SavedRows saved(args.saved.gates.reshape({N, kNumGates * H}).to(opmath),
                        args.saved.squashed_state.reshape({N, H}).to(opmath), options.activation);

  NetErrorResult result;
  at::Tensor& net_errors = result.net_errors;  // (N, G), block layout, the input's dtype
  if (options.truncate) {
    // h_n of a sequence is its recurrent state at its last step: that error joins there.
    const at::Tensor last = row_index(last_step_rows(steps), grad_output);
    const at::Tensor grad_h_n = args.grad_h_n.to(opmath);
    const at::Tensor dh =
        T == 0 ? grad_output
               : grad_output.index_add(0, last, grad_h_n.narrow(1, hidden_offset, H));
    const at::Tensor ds = reverse_state_errors(saved.state_error(dh), grad_s_n, steps);
    at::Tensor block_errors =
        sum_block_gates(saved.net_errors(ds, dh), H, cells_per_block, 1);
    if (feedback && T > 0) {
      // The truncation cuts the recurrent connections only: the gates' own outputs at the last
      // step are part of h_n.
      block_errors.index_add_(0, last,
                              saved.select(last).gate_output_errors(grad_h_n, cells_per_block));
    }
    net_errors = block_errors.to(dtype);
    // h0 reaches the cell only through the truncated recurrent product, except for an empty
    // sequence, where h_n is h0 itself.
    result.grad_h0 = T == 0 ? args.grad_h_n.clone() : at::zeros({B, R}, args.grad_h_n.options());
    result.grad_s0 = (T == 0 ? grad_s_n : ds.narrow(0, 0, B))
                         .to(dtype, /*non_blocking=*/false, /*copy=*/true);
  } else {
    // The errors of the recurrent state and of the cell state of every sequence: rows of
    // sequences not yet started (in reverse time) keep grad_h_n and grad_s_n until their last
    // step.
    at::Tensor d_recurrent = args.grad_h_n.clone(at::MemoryFormat::Contiguous);
    at::Tensor ds_carry = grad_s_n.clone(at::MemoryFormat::Contiguous);
    net_errors = at::empty({N, sizes.gate_rows.expect_int()}, args.grad_h_n.options());
    for (int64_t t = T - 1; t >= 0; --t) {
      const int64_t first = steps.offset[t], rows = steps.count[t];
      at::Tensor dr = d_recurrent.narrow(0, 0, rows);
      at::Tensor ds = ds_carry.narrow(0, 0, rows);
      const SavedRows step = saved.narrow(first, rows);
      const at::Tensor dr_opmath = dr.to(opmath);
      const at::Tensor dh = grad_output.narrow(0, first, rows) + dr_opmath.narrow(1, hidden_offset, H);
      const at::Tensor ds_step = ds + step.state_error(dh);
      at::Tensor block_errors = sum_block_gates(step.net_errors(ds_step, dh), H, cells_per_block, 1);
      if (feedback) {
        block_errors = block_errors + step.gate_output_errors(dr_opmath, cells_per_block);
      }
      at::Tensor step_errors = net_errors.narrow(0, first, rows);
      step_errors.copy_(block_errors);
      ds.copy_(ds_step);
      dr.copy_(at::mm(step_errors, layer.weight_hh));
    }
    result.grad_h0 = d_recurrent;
    result.grad_s0 = ds_carry.to(dtype);
  }
  return result;
}

}  // namespace

NetErrorResult lstm_net_errors(const BackwardArgs& args) {
  return net_errors_of_rows(args, step_rows(args.layer));
}

LayerGradients lstm_backward(const BackwardArgs& args) {
  static constexpr MatrixProducts products{
      [](const at::Tensor& rows, const at::Tensor& weight) { return at::mm(rows, weight.t()); },
      [](const at::Tensor& a, const at::Tensor& b) { return at::mm(a.t(), b); }};
  const StepRows steps = step_rows(args.layer);
  return backward_from_net_errors(args, steps, net_errors_of_rows(args, steps), products);
}

}  // namespace generic
}  // namespace lstm1997
