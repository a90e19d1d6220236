// Exact BPTT: dh_{t-1} also receives dnet_t W_hh, a product per step, so the steps run in order.
// Small layers run all steps in one parallel region (small_layer.h); the others call a library
// product per step (matmul.h).
#include "../blocks.h"
#include "cell_kernels.h"
#include "kernels.h"
#include "matmul.h"
#include "small_layer.h"

#include <ATen/ATen.h>
#include <ATen/Dispatch.h>
#include <ATen/OpMathType.h>
#include <ATen/Parallel.h>

#include <type_traits>
#include <vector>

namespace lstm1997 {
namespace cpu {
namespace {

// Rows of sequences not yet started (in reverse time) keep their grad_h_n in dh_carry until their
// last step.
template <typename scalar_t>
void per_step_exact_errors(const NetErrorInputs& inputs, const RepeatedProduct& recurrent,
                           at::Tensor& dnet, at::Tensor& dh_carry, at::Tensor& ds_carry) {
  using opmath_t = at::opmath_type<scalar_t>;
  const StepRows& steps = inputs.steps;
  const int64_t H = inputs.grad_output.size(-1), G = kNumGates * H;
  const int64_t R = inputs.recurrent_width(), hidden_offset = inputs.hidden_offset();
  const bool feedback = inputs.options.gate_feedback;
  const int64_t cells_per_block = inputs.options.cells_per_block;
  const auto g = cell_input_squash<opmath_t>(inputs.options.activation);
  const auto h = cell_output_squash<opmath_t>(inputs.options.activation);
  scalar_t* dh_rec = dh_carry.data_ptr<scalar_t>();
  opmath_t* ds = ds_carry.data_ptr<opmath_t>();
  for (int64_t t = steps.steps() - 1; t >= 0; --t) {
    const int64_t first = steps.offset[t], rows = steps.count[t];
    const scalar_t* dh_ext = inputs.grad_output.const_data_ptr<scalar_t>() + first * H;
    const scalar_t* hs = inputs.squashed_state.const_data_ptr<scalar_t>() + first * H;
    const scalar_t* gate = inputs.gates.const_data_ptr<scalar_t>() + first * G;
    scalar_t* dnet_ptr = dnet.data_ptr<scalar_t>() + first * G;
    at::parallel_for(0, rows * H, kElementsPerTask, [&](int64_t begin, int64_t end) {
      for_each_row_piece(begin, end, H, [&](int64_t b, int64_t j_begin, int64_t j_end) {
        net_errors_of_row(dh_ext + b * H, dh_rec + b * R + hidden_offset, ds + b * H,
                          gate + b * G, hs + b * H, dnet_ptr + b * G, j_begin, j_end, H, g, h);
        if (feedback) {
          add_gate_output_errors(dh_rec + b * R, gate + b * G, dnet_ptr + b * G, j_begin, j_end,
                                 H, cells_per_block);
        }
      });
    });
    at::Tensor dh_rows = dh_carry.narrow(0, 0, rows);
    const at::Tensor product = recurrent.compute(dh_rows, dnet.narrow(0, first, rows));
    if (!product.is_same(dh_rows)) {
      dh_rows.copy_(product);
    }
  }
}

}  // namespace

void exact_net_errors(const NetErrorInputs& inputs, const LayerArgs& layer, at::Tensor& dnet,
                      at::Tensor& dh_carry, at::Tensor& ds_carry) {
  const int64_t B = inputs.steps.batch, H = inputs.grad_output.size(-1), N = dnet.size(0);
  const int64_t cells_per_block = layer.options.cells_per_block;
  const at::Tensor& weight_hh = layer.weight_hh;
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, dnet.scalar_type(),
                                  "lstm1997_exact_backward_cpu", [&] {
    if constexpr (std::is_same_v<scalar_t, float> || std::is_same_v<scalar_t, double>) {
      if (cells_per_block == 1 &&
          use_small_layer_loop(dnet, B, kNumGates * H, inputs.recurrent_width())) {
        // One panel set per part of the recurrent state (just h without gate feedback): a
        // thread's share of cells then covers the same columns of each part.
        std::vector<at::Tensor> panels;
        for (int64_t part = 0; part < weight_hh.size(1) / H; ++part) {
          panels.push_back(pack_panels<scalar_t>(weight_hh.narrow(1, part * H, H)));
        }
        small_layer_exact_errors<scalar_t>(inputs, panels, dnet, dh_carry, ds_carry);
        return;
      }
    }
    // Per-cell rows of weight_hh, so that each step's product takes the per-cell errors.
    const at::Tensor cell_weight_hh =
        cells_per_block == 1
            ? weight_hh
            : weight_hh.index_select(0, block_expansion_index(H, cells_per_block, dnet.options()));
    // dh_{t-1} = dnet_t @ W_hh = dnet_t @ (W_hh^T)^T: a product with the weight W_hh^T.
    const RepeatedProduct recurrent(cell_weight_hh.t(), B, N);
    per_step_exact_errors<scalar_t>(inputs, recurrent, dnet, dh_carry, ds_carry);
  });
}

}  // namespace cpu
}  // namespace lstm1997
