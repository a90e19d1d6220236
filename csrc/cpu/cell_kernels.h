// The cell step and its backward over the cells of one batch row, in SIMD vectors: the pointwise
// part of every forward and backward path.
#pragma once

#include <ATen/OpMathType.h>

#include <algorithm>
#include <ATen/Parallel.h>

#include "thread_split.h"
#include "vec_math.h"

namespace lstm1997 {
namespace cpu {

// The cell step of up to L cells of one row (`lanes`), from their three net inputs in registers.
// Stores s_t and h_t and, with `save`, the activated gates (the three gates' columns of `gates`,
// H apart) and h(s_t) for the backward pass. The small-layer loop calls it on net inputs straight
// from its product kernel. With gate feedback and no memory cell blocks, `recurrent` (else null)
// receives the step's recurrent state r_t: its input gates, cell outputs and output gates, also H
// apart (K = H).
template <typename LanesT, typename V, typename scalar_t, typename opmath_t>
inline void apply_cell_step(const LanesT& lanes, const V* net, scalar_t* gates, opmath_t* state,
                            scalar_t* squashed_state, scalar_t* hidden, scalar_t* recurrent,
                            int64_t H, bool save, Squash<opmath_t> g, Squash<opmath_t> h) {
  const CellStep<V> step =
      cell_forward(net[kInputGate], net[kCellInput], net[kOutputGate], lanes.load(state), g, h);
  if (save) {
    lanes.store(step.input_gate, gates + kInputGate * H);
    lanes.store(step.cell_input, gates + kCellInput * H);
    lanes.store(step.output_gate, gates + kOutputGate * H);
    lanes.store(step.squashed_state, squashed_state);
  }
  lanes.store(step.cell_state, state);
  lanes.store(step.hidden, hidden);
  if (recurrent != nullptr) {
    lanes.store(step.input_gate, recurrent);
    lanes.store(step.hidden, recurrent + H);
    lanes.store(step.output_gate, recurrent + 2 * H);
  }
}

// One time step of cells [j_begin, j_end) of batch row b, from net inputs in memory (`net`).
// `gates` receives the activated gates (it may be `net` itself), so the backward pass reads them
// back without recomputing them. `state` is the running cell state, in opmath precision, updated in
// place; `squashed_state` receives h(s_t), which is what the backward pass needs of it.
template <typename scalar_t, typename opmath_t>
inline void cell_steps_of_row(const scalar_t* net, scalar_t* gates, opmath_t* state,
                              scalar_t* squashed_state, scalar_t* hidden, int64_t b,
                              int64_t j_begin, int64_t j_end, int64_t H, Squash<opmath_t> g,
                              Squash<opmath_t> h) {
  const scalar_t* row_net = net + b * kNumGates * H;
  scalar_t* row_gates = gates + b * kNumGates * H;
  const int64_t row = b * H;
  for_each_lane<scalar_t>(j_begin, j_end, [&](int64_t j, auto lanes) {
    using V = typename decltype(lanes)::Value;
    const V cell_net[kNumGates] = {lanes.load(row_net + kInputGate * H + j),
                                   lanes.load(row_net + kCellInput * H + j),
                                   lanes.load(row_net + kOutputGate * H + j)};
    apply_cell_step(lanes, cell_net, row_gates + j, state + row + j, squashed_state + row + j,
                    hidden + row + j, static_cast<scalar_t*>(nullptr), H, /*save=*/true, g, h);
  });
}

// One time step of the cell over `rows` batch rows, in parallel (see cell_steps_of_row).
template <typename scalar_t, typename opmath_t>
void pointwise_step(const scalar_t* net, scalar_t* gates, opmath_t* state, scalar_t* squashed_state,
                    scalar_t* hidden, int64_t rows, int64_t hidden_size, Squash<opmath_t> g,
                    Squash<opmath_t> h) {
  const int64_t H = hidden_size;
  at::parallel_for(0, rows * H, kElementsPerTask, [&](int64_t begin, int64_t end) {
    for_each_row_piece(begin, end, H, [&](int64_t b, int64_t j_begin, int64_t j_end) {
      cell_steps_of_row(net, gates, state, squashed_state, hidden, b, j_begin, j_end, H, g, h);
    });
  });
}

// The error of the net inputs of cells [j_begin, j_end) of one row at one step: reads the row's
// activated gates and h(s_t), writes dnet, updates the carried ds.
template <typename scalar_t, typename opmath_t>
inline void net_errors_of_row(const scalar_t* dh_external, const scalar_t* dh_extra, opmath_t* ds,
                              const scalar_t* gates, const scalar_t* squashed_state, scalar_t* dnet,
                              int64_t j_begin, int64_t j_end, int64_t H, Squash<opmath_t> g,
                              Squash<opmath_t> h) {
  for_each_lane<scalar_t>(j_begin, j_end, [&](int64_t j, auto lanes) {
    using V = typename decltype(lanes)::Value;
    V dh = lanes.load(dh_external + j);
    if (dh_extra != nullptr) {
      dh = dh + lanes.load(dh_extra + j);
    }
    V carried = lanes.load(ds + j);
    const NetErrors<V> errors = cell_backward(
        dh, carried, lanes.load(gates + kInputGate * H + j), lanes.load(gates + kCellInput * H + j),
        lanes.load(gates + kOutputGate * H + j), lanes.load(squashed_state + j), g, h);
    lanes.store(carried, ds + j);
    lanes.store(errors.input_gate, dnet + kInputGate * H + j);
    lanes.store(errors.cell_input, dnet + kCellInput * H + j);
    lanes.store(errors.output_gate, dnet + kOutputGate * H + j);
  });
}

// With gate feedback, the recurrent state r_t = [input gates (K) | h_t (H) | output gates (K)] of
// `rows` rows from their per-cell gates (rows, 3H) and outputs (rows, H), a block's gates read at
// its first cell, into `recurrent` (rows, K + H + K). A plain loop: on the per-step path of small
// layers, ATen copies would cost more than the step's arithmetic.
template <typename scalar_t>
void store_recurrent_rows(const scalar_t* gates, const scalar_t* hidden, scalar_t* recurrent,
                          int64_t rows, int64_t H, int64_t cells_per_block) {
  const int64_t S = cells_per_block, K = H / S, R = H + 2 * K;
  for (int64_t b = 0; b < rows; ++b) {
    const scalar_t* row_gates = gates + b * kNumGates * H;
    scalar_t* row = recurrent + b * R;
    for (int64_t k = 0; k < K; ++k) {
      row[k] = row_gates[kInputGate * H + k * S];
      row[K + H + k] = row_gates[kOutputGate * H + k * S];
    }
    std::copy(hidden + b * H, hidden + (b + 1) * H, row + K);
  }
}

// With gate feedback a row's gate outputs at step t are part of its recurrent state r_t (read by
// step t + 1, and h_n at the last step), whose error `d_recurrent` (width K + H + K) reaches the
// gates' net inputs through f' = y (1 - y). Added to the per-cell errors of the cells among
// [j_begin, j_end) that begin a block, so that summing a block's cells (sum_block_gates) counts
// it once.
template <typename scalar_t>
inline void add_gate_output_errors(const scalar_t* d_recurrent, const scalar_t* gates,
                                   scalar_t* dnet, int64_t j_begin, int64_t j_end, int64_t H,
                                   int64_t cells_per_block) {
  using opmath_t = at::opmath_type<scalar_t>;
  const int64_t S = cells_per_block, K = H / S;
  for (int64_t j = (j_begin + S - 1) / S * S; j < j_end; j += S) {
    const int64_t k = j / S;
    const opmath_t input_gate = gates[kInputGate * H + j];
    const opmath_t output_gate = gates[kOutputGate * H + j];
    dnet[kInputGate * H + j] = opmath_t(dnet[kInputGate * H + j]) +
                               opmath_t(d_recurrent[k]) * input_gate * (1 - input_gate);
    dnet[kOutputGate * H + j] = opmath_t(dnet[kOutputGate * H + j]) +
                                opmath_t(d_recurrent[K + H + k]) * output_gate * (1 - output_gate);
  }
}

}  // namespace cpu
}  // namespace lstm1997
