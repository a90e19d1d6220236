// The one source of truth for the layout of the 1997 LSTM layer op.
//
// Shapes (one layer, one direction, whole sequence):
//   input       (T, B, I), or packed (N, I) with batch_sizes (T): see StepRows
//   weight_ih   (G, I)       rows in gate order: input gate, cell input, output gate
//   weight_hh   (G, H)
//   bias_ih     (G)          optional
//   bias_hh     (G)          optional
//   h0, s0      (B, H)       optional, zero when absent
//   output      (T, B, H)    h_t for every step
//   squashed_state (T, B, H) h(s_t) for every step: all that backward needs of the cell state
//   gates       (T, B, 3H)   activated [f(a_t) | g(z_t) | f(c_t)] of every cell (saved for backward)
//
// Memory cell blocks (the paper's section 4): with cells_per_block = S, the H cells form K = H / S
// blocks whose S cells share one input gate and one output gate. The gate rows of the weights are
// then G = K + H + K: K input gates, H cell inputs, K output gates; S = 1 (the default) gives the
// plain layout G = 3H. Saved gates stay per cell (a block's gates repeated for each of its cells),
// so every per-cell kernel serves blocks unchanged; only the matrix products see the K-row blocks.
#pragma once

#include <ATen/core/Tensor.h>
#include <c10/core/SymInt.h>
#include <c10/util/string_view.h>

#include <array>
#include <cmath>
#include <optional>
#include <tuple>
#include <vector>

namespace lstm1997 {

// Position of each gate block along the 3H axis of weights, biases and gate buffers.
enum GateBlock : int64_t {
  kInputGate = 0,
  kCellInput = 1,
  kOutputGate = 2,
  kNumGateBlocks = 3,
};

// The squashing functions g (cell input) and h (cell output).
enum class Activation {
  Tanh,   // g = h = tanh: the modern form, equal to torch.nn.LSTM with its forget gate pinned open
  Paper,  // g(x) = 4 sigmoid(x) - 2, h(x) = 2 sigmoid(x) - 1 (Hochreiter & Schmidhuber 1997)
};

Activation parse_activation(c10::string_view name);

// Whether an optional tensor argument (Tensor? in a schema) was given.
inline bool present(const std::optional<at::Tensor>& tensor) {
  return tensor.has_value() && tensor->defined();
}

// The transcendental functions of the cell's formulas, for scalars. A backend specialises this for
// its vector types (the CPU kernels for at::vec::Vectorized), so that each formula is written once
// and instantiated for a vectorised loop body and for its scalar tail.
template <typename V>
struct ElementwiseMath {
  static V tanh(V x) { return std::tanh(x); }
  static V exp(V x) { return std::exp(x); }
  static V reciprocal(V x) { return V(1) / x; }
};

template <typename V>
inline V sigmoid(V x) {
  return ElementwiseMath<V>::reciprocal(V(1) + ElementwiseMath<V>::exp(V(0) - x));
}

// Every squasher used here is scale * tanh(slope * x):
//   tanh                                 scale 1, slope 1
//   paper g: 4 sigmoid(x) - 2 = 2 tanh(x/2)  scale 2, slope 1/2
//   paper h: 2 sigmoid(x) - 1 =   tanh(x/2)  scale 1, slope 1/2
// so one code path serves both activations, and the derivative can be taken from the squashed
// value alone (backward then needs no pre-activations): y' = slope * (scale - y^2 / scale).
template <typename scalar_t>
struct Squash {
  scalar_t scale;
  scalar_t slope;

  template <typename V>
  V operator()(V x) const {
    return V(scale) * ElementwiseMath<V>::tanh(V(slope) * x);
  }
  template <typename V>
  V grad_from_value(V y) const {
    return V(slope) * (V(scale) - y * y / V(scale));
  }
};

template <typename scalar_t>
Squash<scalar_t> cell_input_squash(Activation activation) {
  return activation == Activation::Tanh ? Squash<scalar_t>{1, 1} : Squash<scalar_t>{2, 0.5};
}

template <typename scalar_t>
Squash<scalar_t> cell_output_squash(Activation activation) {
  return activation == Activation::Tanh ? Squash<scalar_t>{1, 1} : Squash<scalar_t>{1, 0.5};
}

// Sizes of one layer call, symbolic so that the same checks serve real and fake (meta) tensors.
struct LayerSizes {
  c10::SymInt seq_len;
  c10::SymInt batch;
  c10::SymInt input_size;
  c10::SymInt hidden_size;
  c10::SymInt rows;  // rows of the 2-D (rows, features) view of input and output: T*B, or N packed
  bool packed;
  int64_t cells_per_block = 1;
  c10::SymInt blocks;  // hidden_size / cells_per_block: the number of input (and output) gates

  c10::SymInt gate_rows() const { return hidden_size + blocks * 2; }
};

// Column index (3H) that repeats each block's gates for its cells: net (..., G) indexed with it
// along its last dimension gives the per-cell layout (..., 3H) the pointwise kernels use.
at::Tensor block_expansion_index(int64_t hidden_size, int64_t cells_per_block,
                                 const at::TensorOptions& options);

// The reverse for errors: along `dim`, a per-cell layout [input gate | cell input] (2H) or
// [input gate | cell input | output gate] (3H) becomes the block layout (K + H or G rows) by summing
// the errors of the S copies of each shared gate (a shared weight's gradient is the sum over its
// uses). Returns `per_cell` itself when cells_per_block is 1.
at::Tensor sum_block_gates(const at::Tensor& per_cell, int64_t hidden_size, int64_t cells_per_block,
                           int64_t dim);

// Argument checks shared by every backend and the meta kernels: each names the argument and what
// was expected. Kernels after these checks assume valid input. With batch_sizes (packed input),
// h0 and s0 are required: they give the batch size, which tracing cannot read from batch_sizes.
LayerSizes check_forward_args(
    const at::Tensor& input,
    const at::Tensor& weight_ih,
    const at::Tensor& weight_hh,
    const std::optional<at::Tensor>& bias_ih,
    const std::optional<at::Tensor>& bias_hh,
    const std::optional<at::Tensor>& h0,
    const std::optional<at::Tensor>& s0,
    const std::optional<at::Tensor>& batch_sizes,
    int64_t cells_per_block);

LayerSizes check_backward_args(
    const at::Tensor& grad_output,
    const at::Tensor& grad_h_n,
    const at::Tensor& grad_s_n,
    const at::Tensor& input,
    const at::Tensor& weight_ih,
    const at::Tensor& weight_hh,
    const std::optional<at::Tensor>& h0,
    const at::Tensor& output,
    const at::Tensor& squashed_state,
    const at::Tensor& gates,
    const std::optional<at::Tensor>& batch_sizes,
    int64_t cells_per_block);

// Checks of the online ops' chunk and traces (lstm_online_traces, lstm_online_grads); the other
// arguments of lstm_online_grads are checked by lstm_backward, which it calls.
void check_online_args(const at::Tensor& input, const std::optional<at::Tensor>& h0,
                       const at::Tensor& output, const at::Tensor& gates,
                       const at::Tensor& trace_ih, const at::Tensor& trace_hh,
                       const at::Tensor& trace_bias);

// Shape of a per-step tensor with `width` features: (T, B, width), or (N, width) when packed.
c10::SymDimVector per_step_shape(const LayerSizes& sizes, const c10::SymInt& width);

// Which rows of the 2-D (rows, features) layout each time step occupies. Dense input has B rows per
// step. Packed input (torch.nn.utils.rnn.PackedSequence, sequences sorted by decreasing length)
// has batch_sizes[t] rows at step t: always the first batch_sizes[t] sequences of the batch, so the
// rows active at step t+1 are a prefix of those active at step t.
struct StepRows {
  std::vector<int64_t> offset;  // first row of step t
  std::vector<int64_t> count;   // rows of step t, non-increasing in t
  int64_t batch = 0;
  bool dense = true;

  int64_t steps() const { return static_cast<int64_t>(count.size()); }
  // Rows at step t+1 (0 past the end): sequence b takes its last step at t iff
  // active(t+1) <= b < active(t).
  int64_t active_after(int64_t t) const { return t + 1 < steps() ? count[t + 1] : 0; }
};

// Reads (and checks the values of) batch_sizes; for dense input builds the uniform layout.
StepRows step_rows(const LayerSizes& sizes, const std::optional<at::Tensor>& batch_sizes);

using ForwardResult = std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor, at::Tensor>;
using BackwardResult =
    std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor, at::Tensor, at::Tensor>;

// The lstm_backward op, called through the dispatcher (so on the tensors' backend).
BackwardResult call_backward(const at::Tensor& grad_output, const at::Tensor& grad_h_n,
                             const at::Tensor& grad_s_n, const at::Tensor& input,
                             const at::Tensor& weight_ih, const at::Tensor& weight_hh,
                             const std::optional<at::Tensor>& h0, const at::Tensor& output,
                             const at::Tensor& squashed_state, const at::Tensor& gates,
                             bool truncate, c10::string_view activation,
                             const std::optional<at::Tensor>& batch_sizes,
                             std::array<bool, 4> output_mask, int64_t cells_per_block);

}  // namespace lstm1997
