// The C++ API of lstm1997 for LibTorch programs: link liblstm1997_ops and include this header.
#pragma once

#include <ATen/core/Tensor.h>
#include <c10/util/string_view.h>

#include <optional>
#include <tuple>

namespace lstm1997 {

// One layer of the 1997 LSTM over a whole sequence: torch.ops.lstm1997.lstm, differentiable with
// the paper's truncated gradient (truncate = true) or exact BPTT. input (T, B, I), or packed (N, I)
// with batch_sizes; weight_ih (3H, I), weight_hh (3H, H), biases (3H), h0 and s0 (B, H). With
// cells_per_block = S > 1 (memory cell blocks) the 3H gate rows become H + 2H/S = K + H + K.
// With gate_feedback (the paper's network) every cell and gate also sees the gate outputs of t-1:
// weight_hh is (K + H + K, H + 2K), and h0, h_n are the recurrent state [input gates | cell
// outputs | output gates], (B, K + H + K). Returns (output, h_n, s_n). Bad arguments throw
// c10::Error naming the argument.
std::tuple<at::Tensor, at::Tensor, at::Tensor> lstm(
    const at::Tensor& input,
    const at::Tensor& weight_ih,
    const at::Tensor& weight_hh,
    const std::optional<at::Tensor>& bias_ih = std::nullopt,
    const std::optional<at::Tensor>& bias_hh = std::nullopt,
    const std::optional<at::Tensor>& h0 = std::nullopt,
    const std::optional<at::Tensor>& s0 = std::nullopt,
    bool truncate = true,
    c10::string_view activation = "tanh",
    const std::optional<at::Tensor>& batch_sizes = std::nullopt,
    int64_t cells_per_block = 1,
    bool gate_feedback = false);

// Both directions of one layer (torch.ops.lstm1997.lstm_bidirectional): lstm over input with the
// first weights, and over input read backwards with the `_reverse` ones. input (T, B, I), not
// packed; h0, s0, h_n and s_n stack the two directions, (2, B, width); output is (T, B, 2H), the
// forward direction's outputs, then the reverse direction's in the input's order.
std::tuple<at::Tensor, at::Tensor, at::Tensor> lstm_bidirectional(
    const at::Tensor& input,
    const at::Tensor& weight_ih,
    const at::Tensor& weight_hh,
    const std::optional<at::Tensor>& bias_ih,
    const std::optional<at::Tensor>& bias_hh,
    const at::Tensor& weight_ih_reverse,
    const at::Tensor& weight_hh_reverse,
    const std::optional<at::Tensor>& bias_ih_reverse,
    const std::optional<at::Tensor>& bias_hh_reverse,
    const std::optional<at::Tensor>& h0 = std::nullopt,
    const std::optional<at::Tensor>& s0 = std::nullopt,
    bool truncate = true,
    c10::string_view activation = "tanh",
    const std::optional<at::Tensor>& batch_sizes = std::nullopt,
    int64_t cells_per_block = 1,
    bool gate_feedback = false);

}  // namespace lstm1997
