// The paper's truncated backward (appendix A.1): dh_t is only the external error (no recurrent
// term), so ds is a reverse cumulative sum of local terms and every (b, j) cell runs through time
// independently of the others: no matrix product at all.
#include "cell_kernels.h"
#include "kernels.h"

#include <ATen/Dispatch.h>
#include <ATen/OpMathType.h>
#include <ATen/Parallel.h>

#include <algorithm>

namespace lstm1997 {
namespace cpu {
namespace {

template <typename scalar_t>
void truncated_net_errors_typed(const NetErrorInputs& inputs, at::Tensor& dnet,
                                at::Tensor& ds_carry) {
  using opmath_t = at::opmath_type<scalar_t>;
  const StepRows& steps = inputs.steps;
  const int64_t T = steps.steps(), B = steps.batch, H = inputs.grad_output.size(-1);
  const int64_t R = inputs.recurrent_width(), hidden_offset = inputs.hidden_offset();
  const bool feedback = inputs.options.gate_feedback;
  const int64_t cells_per_block = inputs.options.cells_per_block;
  const auto g = cell_input_squash<opmath_t>(inputs.options.activation);
  const auto h = cell_output_squash<opmath_t>(inputs.options.activation);
  opmath_t* ds = ds_carry.data_ptr<opmath_t>();
  const scalar_t* dh_ext = inputs.grad_output.const_data_ptr<scalar_t>();
  const scalar_t* dh_last = inputs.grad_h_n.const_data_ptr<scalar_t>();
  const scalar_t* hs = inputs.squashed_state.const_data_ptr<scalar_t>();
  const scalar_t* gate = inputs.gates.const_data_ptr<scalar_t>();
  scalar_t* dnet_ptr = dnet.data_ptr<scalar_t>();
  const int64_t grain = std::max<int64_t>(1, kElementsPerTask / std::max<int64_t>(1, T));

  at::parallel_for(0, B * H, grain, [&](int64_t begin, int64_t end) {
    for (int64_t t = T - 1; t >= 0; --t) {
      const int64_t active = steps.count[t], ending = steps.active_after(t);
      for_each_row_piece(begin, end, H, [&](int64_t b, int64_t j_begin, int64_t j_end) {
        if (b >= active) {
          return;  // this sequence has ended before step t
        }
        const int64_t row = steps.offset[t] + b;
        // h_n of a sequence is its state at its last step: that error joins there (with gate
        // feedback, also on the gates; the truncation cuts only the recurrent connections).
        const bool last = b >= ending;
        const scalar_t* dh_extra = last ? dh_last + b * R + hidden_offset : nullptr;
        scalar_t* row_dnet = dnet_ptr + row * kNumGates * H;
        net_errors_of_row(dh_ext + row * H, dh_extra, ds + b * H, gate + row * kNumGates * H,
                          hs + row * H, row_dnet, j_begin, j_end, H, g, h);
        if (last && feedback) {
          add_gate_output_errors(dh_last + b * R, gate + row * kNumGates * H, row_dnet, j_begin,
                                 j_end, H, cells_per_block);
        }
      });
    }
  });
}

}  // namespace

void truncated_net_errors(const NetErrorInputs& inputs, at::Tensor& dnet, at::Tensor& ds_carry) {
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, dnet.scalar_type(),
                                  "lstm1997_truncated_backward_cpu", [&] {
                                    truncated_net_errors_typed<scalar_t>(inputs, dnet, ds_carry);
                                  });
}

}  // namespace cpu
}  // namespace lstm1997
