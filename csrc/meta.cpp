// Shape-only kernels, so that torch.compile, torch.export and FakeTensor can trace the ops. They
// run the same argument checks as the real kernels and work with symbolic sizes.
#include "lstm1997.h"

#include <ATen/ATen.h>
#include <torch/library.h>

#include <array>

namespace lstm1997 {
namespace {

ForwardResult lstm_forward_meta(const at::Tensor& input, const at::Tensor& weight_ih,
                                const at::Tensor& weight_hh,
                                const std::optional<at::Tensor>& bias_ih,
                                const std::optional<at::Tensor>& bias_hh,
                                const std::optional<at::Tensor>& h0,
                                const std::optional<at::Tensor>& s0,
                                c10::string_view activation,
                                const std::optional<at::Tensor>& batch_sizes,
                                int64_t cells_per_block) {
  const LayerSizes sizes = check_forward_args(input, weight_ih, weight_hh, bias_ih, bias_hh, h0, s0,
                                              batch_sizes, cells_per_block);
  parse_activation(activation);
  const c10::SymInt &B = sizes.batch, &H = sizes.hidden_size;
  return {input.new_empty_symint(per_step_shape(sizes, H)), input.new_empty_symint({B, H}),
          input.new_empty_symint({B, H}), input.new_empty_symint(per_step_shape(sizes, H)),
          input.new_empty_symint(per_step_shape(sizes, H * kNumGateBlocks))};
}

BackwardResult lstm_backward_meta(const at::Tensor& grad_output, const at::Tensor& grad_h_n,
                                  const at::Tensor& grad_s_n, const at::Tensor& input,
                                  const at::Tensor& weight_ih, const at::Tensor& weight_hh,
                                  const std::optional<at::Tensor>& h0, const at::Tensor& output,
                                  const at::Tensor& squashed_state, const at::Tensor& gates,
                                  bool truncate, c10::string_view activation,
                                  const std::optional<at::Tensor>& batch_sizes,
                                  std::array<bool, 4> output_mask, int64_t cells_per_block) {
  const LayerSizes sizes = check_backward_args(grad_output, grad_h_n, grad_s_n, input, weight_ih,
                                               weight_hh, h0, output, squashed_state, gates,
                                               batch_sizes, cells_per_block);
  parse_activation(activation);
  const c10::SymInt &B = sizes.batch, &H = sizes.hidden_size;
  const auto maybe = [&](bool wanted, c10::SymIntArrayRef shape) {
    return wanted ? input.new_empty_symint(shape) : at::Tensor();
  };
  return {maybe(output_mask[0], input.sym_sizes()),
          maybe(output_mask[1], weight_ih.sym_sizes()),
          maybe(output_mask[2], weight_hh.sym_sizes()),
          maybe(output_mask[3], {sizes.gate_rows()}),
          input.new_empty_symint({B, H}),
          input.new_empty_symint({B, H})};
}

}  // namespace

TORCH_LIBRARY_IMPL(lstm1997, Meta, m) {
  m.impl("lstm_forward", &lstm_forward_meta);
  m.impl("lstm_backward", &lstm_backward_meta);
}

}  // namespace lstm1997
