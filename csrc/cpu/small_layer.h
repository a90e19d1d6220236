// The fused time loops of small layers (no memory cell blocks, float and double): the forward
// and the exact backward. Each runs all its time steps in one parallel region, every thread
// computing its share of a step (thread_split.h) with the register-tiled products of
// small_gemm.h, with no library call per step. matmul.h's use_small_layer_loop says which layers
// take them.
#pragma once

#include "../step_rows.h"
#include "kernels.h"
#include "cell_kernels.h"
#include "small_gemm.h"
#include "thread_split.h"

#include <algorithm>
#include <array>
#include <type_traits>
#include <vector>

namespace lstm1997 {
namespace cpu {

// The input side of a small layer's forward steps: either the input projections, already in the
// gate buffer, or (`folded`) the input rows themselves, multiplied inside the step kernel.
template <typename scalar_t>
struct StepInput {
  const scalar_t* input = nullptr;   // (rows, I), when folded
  const scalar_t* panels = nullptr;  // pack_grouped_panels(W_ih^T, 3), when folded
  const scalar_t* bias = nullptr;    // (3H) or null, when folded
  int64_t input_size = 0;
  bool folded() const { return input != nullptr; }
};

// Where the steps of a small layer read their recurrent input r_{t-1}: h_{t-1} in the output rows
// of the previous step (r_0 in `initial`), or with gate feedback the whole recurrent state
// [input gates | cell outputs | output gates] (width 3H), which step t writes to slot t % 2 of
// `fed_back` (2, B, 3H) for step t + 1 to read (slot 1 starts as r_0): the previous step's gates
// may no longer be in memory (inference keeps none) or may sit in another chunk's buffer.
template <typename scalar_t>
struct RecurrentInput {
  const scalar_t* initial = nullptr;  // (B, width)
  scalar_t* fed_back = nullptr;
  int64_t width = 0;

  const scalar_t* previous(const StepRows& steps, int64_t t, const scalar_t* output) const {
    if (fed_back != nullptr) {
      return fed_back + ((t + 1) % 2) * steps.batch * width;
    }
    return t == 0 ? initial : output + steps.offset[t - 1] * width;
  }
  scalar_t* current(const StepRows& steps, int64_t t) const {
    return fed_back == nullptr ? nullptr : fed_back + (t % 2) * steps.batch * width;
  }
};

// Forward steps [t_begin, t_end) of a small layer (no memory cell blocks). For each tile of its
// share (small_gemm_grouped: a few rows by L cells), a thread computes the three gates' net inputs
// and runs the cell step on them in registers: the net inputs never go back to memory.
// `recurrent_panels` is pack_grouped_panels(W_hh^T, 3), W_hh^T (width, 3H). `gates` (rows of the
// steps, 3H), indexed from row `base`, receives with `save` the activated gates (and
// `squashed_state` h(s_t)); unless the input product is folded in, it first holds the steps'
// input projections.
template <typename scalar_t, typename opmath_t>
void small_layer_forward_steps(const StepRows& steps, int64_t t_begin, int64_t t_end,
                               int64_t base, const StepInput<scalar_t>& step_input,
                               const scalar_t* recurrent_panels,
                               const RecurrentInput<scalar_t>& recurrent_input, scalar_t* gates,
                               opmath_t* state, scalar_t* squashed_state, scalar_t* output,
                               int64_t H, bool save, Squash<opmath_t> g, Squash<opmath_t> h) {
  static_assert(std::is_same_v<scalar_t, opmath_t>, "the small-layer loop is for float and double");
  using Vec = at::vec::Vectorized<scalar_t>;
  constexpr int64_t L = Vec::size();
  const int64_t G = kNumGates * H, I = step_input.input_size, R = recurrent_input.width;
  for_grid_slices<scalar_t>(steps.batch, H, [&](const GridSlice& slice) {
    const int64_t p_begin = slice.j_begin / L, p_end = (slice.j_end + L - 1) / L;
    for (int64_t t = t_begin; t < t_end; ++t) {
      const int64_t first = steps.offset[t];
      // Active rows are a prefix of the batch: this thread's share of them.
      const int64_t b_end = std::min(slice.b_end, steps.count[t]), b_begin = slice.b_begin;
      // A thread may have no rows left at this step (packed input) or no cells: it only meets
      // the others at the barrier.
      if (p_begin < p_end && b_begin < b_end) {
        const scalar_t* previous = recurrent_input.previous(steps, t, output);
        scalar_t* step_recurrent = recurrent_input.current(steps, t);
        // Without `save` a folded pass has no gate buffer at all (and writes none).
        scalar_t* step_gates = gates == nullptr ? nullptr : gates + ((first - base) + b_begin) * G;
        scalar_t* step_squashed =
            squashed_state == nullptr ? nullptr : squashed_state + ((first - base) + b_begin) * H;
        scalar_t* step_output = output + (first + b_begin) * H;
        opmath_t* step_state = state + b_begin * H;
        const GroupedOperand<scalar_t> recurrent{previous + b_begin * R, R, recurrent_panels, R};
        const auto finish = [&](int64_t r, int64_t p, const Vec* cell_net) {
          const int64_t j = p * L, count = std::min(L, H - j);
          const auto run = [&](auto lanes) {
            apply_cell_step(lanes, cell_net, save ? step_gates + r * G + j : nullptr,
                            step_state + r * H + j, save ? step_squashed + r * H + j : nullptr,
                            step_output + r * H + j,
                            step_recurrent == nullptr ? nullptr
                                                      : step_recurrent + (b_begin + r) * R + j,
                            H, save, g, h);
          };
          if (count == L) {
            run(Lanes<Vec, false>{L});
          } else {
            run(Lanes<Vec, true>{count});
          }
        };
        // Loads from the gate buffer or the bias, masked past cell H (where the next gate begins).
        const auto load = [&](const scalar_t* source, int64_t p) {
          const int64_t count = std::min(L, H - p * L);
          return count == L ? Vec::loadu(source) : Vec::loadu(source, count);
        };
        if (step_input.folded()) {
          const GroupedOperand<scalar_t> projection{
              step_input.input + (first + b_begin) * I, I, step_input.panels, I};
          const auto bias = [&](int64_t, int64_t p, int gate) {
            return step_input.bias == nullptr ? Vec(0)
                                              : load(step_input.bias + gate * H + p * L, p);
          };
          small_gemm_grouped<scalar_t, kNumGates>(
              std::array<GroupedOperand<scalar_t>, 2>{projection, recurrent}, b_end - b_begin,
              p_begin, p_end, bias, finish);
        } else {
          const auto projected = [&](int64_t r, int64_t p, int gate) {
            return load(step_gates + r * G + gate * H + p * L, p);
          };
          small_gemm_grouped<scalar_t, kNumGates>(
              std::array<GroupedOperand<scalar_t>, 1>{recurrent}, b_end - b_begin, p_begin, p_end,
              projected, finish);
        }
      }
      step_barrier(slice);  // the next step reads every cell's h_t
    }
  });
}

// Exact BPTT of a small layer (no memory cell blocks): each thread computes its share's errors,
// then its share of dr_{t-1} = dnet_t W_hh. Split by cells, that product reads every thread's
// dnet_t: one barrier per step; the next step's errors need only the thread's own share.
// `weight_hh_panels` holds pack_panels of each (3H, H) part of W_hh: one (h) or, with gate
// feedback, three (input gates, h, output gates). Same contract as exact_net_errors.
template <typename scalar_t>
void small_layer_exact_errors(const NetErrorInputs& inputs,
                              const std::vector<at::Tensor>& weight_hh_panels, at::Tensor& dnet,
                              at::Tensor& dh_carry, at::Tensor& ds_carry) {
  using opmath_t = at::opmath_type<scalar_t>;
  const StepRows& steps = inputs.steps;
  const int64_t H = inputs.grad_output.size(-1), G = kNumGates * H;
  const int64_t R = inputs.recurrent_width(), hidden_offset = inputs.hidden_offset();
  const bool feedback = inputs.options.gate_feedback;
  const auto g = cell_input_squash<opmath_t>(inputs.options.activation);
  const auto h = cell_output_squash<opmath_t>(inputs.options.activation);
  const at::Tensor &grad_output = inputs.grad_output, &squashed_state = inputs.squashed_state,
                   &gates = inputs.gates;
  scalar_t* dh_rec = dh_carry.data_ptr<scalar_t>();
  opmath_t* ds = ds_carry.data_ptr<opmath_t>();
  for_grid_slices<scalar_t>(steps.batch, H, [&](const GridSlice& slice) {
    const int64_t j_begin = slice.j_begin, j_end = slice.j_end;
    for (int64_t t = steps.steps() - 1; t >= 0; --t) {
      const int64_t first = steps.offset[t];
      const int64_t b_end = std::min(slice.b_end, steps.count[t]), b_begin = slice.b_begin;
      const scalar_t* dh_ext = grad_output.const_data_ptr<scalar_t>() + first * H;
      const scalar_t* hs = squashed_state.const_data_ptr<scalar_t>() + first * H;
      const scalar_t* gate = gates.const_data_ptr<scalar_t>() + first * G;
      scalar_t* dnet_ptr = dnet.data_ptr<scalar_t>() + first * G;
      for (int64_t b = b_begin; b < b_end && j_begin < j_end; ++b) {
        net_errors_of_row(dh_ext + b * H, dh_rec + b * R + hidden_offset, ds + b * H,
                          gate + b * G, hs + b * H, dnet_ptr + b * G, j_begin, j_end, H, g, h);
        if (feedback) {
          add_gate_output_errors(dh_rec + b * R, gate + b * G, dnet_ptr + b * G, j_begin, j_end,
                                 H, /*cells_per_block=*/1);
        }
      }
      step_barrier(slice);  // the product below reads every cell's dnet_t
      if (j_begin < j_end && b_begin < b_end) {
        for (size_t part = 0; part < weight_hh_panels.size(); ++part) {
          scalar_t* d_part = dh_rec + part * H;
          for (int64_t b = b_begin; b < b_end; ++b) {
            std::fill(d_part + b * R + j_begin, d_part + b * R + j_end, scalar_t(0));
          }
          small_gemm_accumulate(dnet_ptr + b_begin * G, G,
                                weight_hh_panels[part].template const_data_ptr<scalar_t>(), G,
                                d_part + b_begin * R, R, b_end - b_begin, j_begin, j_end);
        }
      }
    }
  });
}

}  // namespace cpu
}  // namespace lstm1997
