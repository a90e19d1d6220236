// The layout of the 1997 LSTM layer op: shapes, gate order and memory cell blocks. Nothing else
// lives here: the description of a call is layer_args.h, the checks checks.h, the cell's math
// cell_math.h.
//
// Shapes (one layer, one direction, a whole sequence):
//   input           (T, B, I), or packed (N, I) with batch_sizes (T): see step_rows.h
//   weight_ih       (G, I)     rows in gate order: input gates, cell inputs, output gates
//   weight_hh       (G, R)     R = H, or K + H + K with gate feedback (below)
//   bias_ih         (G)        optional
//   bias_hh         (G)        optional
//   h0              (B, R)     optional, zero when absent: the recurrent input r_0
//   s0              (B, H)     optional, zero when absent
//   output          (T, B, H)  h_t for every step
//   squashed_state  (T, B, H)  h(s_t) for every step: all that the backward needs of the cell state
//   gates           (T, B, 3H) activated [f(a_t) | g(z_t) | f(c_t)] of every cell, for backward
//
// Memory cell blocks (the paper's section 4): with cells_per_block = S, the H cells form K = H / S
// blocks whose S cells share one input gate and one output gate. The gate rows of the weights are
// then G = K + H + K: K input gates, H cell inputs, K output gates; S = 1 (the default) gives the
// plain layout G = 3H. Saved gates stay per cell (a block's gates repeated for each of its cells),
// so every per-cell kernel serves blocks unchanged; only the matrix products see the K-row blocks
// (blocks.h maps between the two).
//
// Gate feedback (the paper's network, its section 4): every cell and gate also sees the gate
// outputs of t-1. The recurrent input is then r_{t-1} = [input gates (K) | cell outputs h_{t-1}
// (H) | output gates (K)], in the gate rows' order, so weight_hh is (G, G) with R = G = K + H + K.
// h0 and h_n are that whole recurrent state r (the outputs of every hidden unit), so that a
// sequence split into calls continues exactly; `output` stays the cell outputs h_t.
#pragma once

#include <cstdint>

namespace lstm1997 {

// Position of each gate along the 3H axis of the per-cell layout (saved gates, net-input errors)
// and, with cells_per_block = 1, of the weights and biases.
enum Gate : int64_t {
  kInputGate = 0,
  kCellInput = 1,
  kOutputGate = 2,
  kNumGates = 3,
};

// The squashing functions g (cell input) and h (cell output).
enum class Activation {
  Tanh,   // g = h = tanh: the modern form, equal to torch.nn.LSTM with its forget gate pinned open
  Paper,  // g(x) = 4 sigmoid(x) - 2, h(x) = 2 sigmoid(x) - 1 (Hochreiter & Schmidhuber 1997)
};

// Rows of weight_ih, weight_hh and the biases: K input gates, H cell inputs, K output gates.
// Int is int64_t or c10::SymInt (the checks run on fake tensors too).
template <typename Int>
Int gate_rows(const Int& hidden_size, int64_t cells_per_block) {
  return hidden_size + hidden_size / cells_per_block * 2;
}

// Width R of the recurrent input (the columns of weight_hh, and of h0 and h_n).
template <typename Int>
Int recurrent_width(const Int& hidden_size, int64_t cells_per_block, bool gate_feedback) {
  return gate_feedback ? gate_rows(hidden_size, cells_per_block) : hidden_size;
}

// Where the cell outputs h_{t-1} start within the recurrent input: after the K input gates.
template <typename Int>
Int hidden_offset(const Int& hidden_size, int64_t cells_per_block, bool gate_feedback) {
  return gate_feedback ? hidden_size / cells_per_block : Int(0);
}

}  // namespace lstm1997
