#include "api.h"

#include "layer_ops.h"

namespace lstm1997 {

std::tuple<at::Tensor, at::Tensor, at::Tensor> lstm(
    const at::Tensor& input, const at::Tensor& weight_ih, const at::Tensor& weight_hh,
    const std::optional<at::Tensor>& bias_ih, const std::optional<at::Tensor>& bias_hh,
    const std::optional<at::Tensor>& h0, const std::optional<at::Tensor>& s0, bool truncate,
    c10::string_view activation, const std::optional<at::Tensor>& batch_sizes,
    int64_t cells_per_block, bool gate_feedback) {
  return to_tuple(dispatch_lstm(describe_lstm_args(input, weight_ih, weight_hh, bias_ih, bias_hh,
                                                    h0, s0, truncate, activation, batch_sizes,
                                                    cells_per_block, gate_feedback)));
}

}  // namespace lstm1997
