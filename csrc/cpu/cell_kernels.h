// The cell step and its backward over the cells of one batch row, in SIMD vectors: the pointwise
// part of every forward and backward path.
#pragma once

#include <ATen/Parallel.h>

#include "thread_split.h"
#include "vec_math.h"

namespace lstm1997 {
namespace cpu {

// The cell step of up to L cells of one row (`lanes`), from their three net inputs in registers.
// Stores s_t and h_t and, with `save`, the activated gates (the three gates' columns of `gates`,
// H apart) and h(s_t) for the backward pass. The small-layer loop calls it on net inputs straight
// from its product kernel.
template <typename LanesT, typename V, typename scalar_t, typename opmath_t>
inline void apply_cell_step(const LanesT& lanes, const V* net, scalar_t* gates, opmath_t* state,
                            scalar_t* squashed_state, scalar_t* hidden, int64_t H, bool save,
                            Squash<opmath_t> g, Squash<opmath_t> h) {
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
                    hidden + row + j, H, /*save=*/true, g, h);
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

}  // namespace cpu
}  // namespace lstm1997
