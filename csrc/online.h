// The online step (online.cpp): lstm_online_step_, whose one pass over the traces each backend may
// run its own way (the CPU fuses it: cpu/online_step.cpp).
#pragma once

#include <ATen/core/Tensor.h>
#include <c10/util/string_view.h>

#include <optional>
#include <tuple>

namespace lstm1997 {

// The pass over the traces of a chunk, in place: with `carried_error` (B, 2H) defined, the sums
// sum_b carried_error[b, r] trace[b, r, :] of the traces as they come in (grad_traced_*: (2H, I),
// (2H, R), (2H), added to); with `advance`, trace[b] += sum_t local[t, b]^T features_t[b] for the
// features input (T, B, I), previous (T, B, R) (r_{t-1}) and 1.
struct TracePass {
  const at::Tensor &trace_ih, &trace_hh, &trace_bias;
  const at::Tensor &local, &input, &previous;  // (T, B, 2H), (T, B, I), (T, B, R)
  at::Tensor carried_error;                    // (B, 2H), or undefined
  at::Tensor grad_traced_ih, grad_traced_hh, grad_traced_bias;
  bool advance;
};
using TracePassFn = void (*)(TracePass& pass);

// lstm_online_step_ with the trace pass of a backend.
std::tuple<at::Tensor, at::Tensor, at::Tensor> online_step(
    const at::Tensor& trace_ih, const at::Tensor& trace_hh, const at::Tensor& trace_bias,
    const std::optional<at::Tensor>& grad_output, const at::Tensor& input,
    const at::Tensor& weight_ih, const at::Tensor& weight_hh, const std::optional<at::Tensor>& h0,
    const at::Tensor& output, const at::Tensor& squashed_state, const at::Tensor& gates,
    c10::string_view activation, int64_t cells_per_block, bool gate_feedback, bool advance,
    TracePassFn trace_pass);

// The pass by ATen ops in place, for every device and dtype.
void online_aten_trace_pass(TracePass& pass);

// The kernel of lstm_online_step_ for a backend's trace pass.
template <TracePassFn trace_pass>
std::tuple<at::Tensor, at::Tensor, at::Tensor> online_step_kernel(
    const at::Tensor& trace_ih, const at::Tensor& trace_hh, const at::Tensor& trace_bias,
    const std::optional<at::Tensor>& grad_output, const at::Tensor& input,
    const at::Tensor& weight_ih, const at::Tensor& weight_hh, const std::optional<at::Tensor>& h0,
    const at::Tensor& output, const at::Tensor& squashed_state, const at::Tensor& gates,
    c10::string_view activation, int64_t cells_per_block, bool gate_feedback, bool advance) {
  return online_step(trace_ih, trace_hh, trace_bias, grad_output, input, weight_ih, weight_hh, h0,
                     output, squashed_state, gates, activation, cells_per_block, gate_feedback,
                     advance, trace_pass);
}

// _lstm_online_forward_ and _lstm_online_update_ by ATen ops and _lstm_forward, for every device
// and dtype (and for the CPU kernels' arguments that their loops do not take).
at::Tensor online_forward_by_ops(
    const at::Tensor& hidden, const at::Tensor& cell_state, const at::Tensor& step_input,
    const at::Tensor& previous, const at::Tensor& squashed_state, const at::Tensor& gates,
    const at::Tensor& input, const at::Tensor& weight_ih, const at::Tensor& weight_hh,
    const std::optional<at::Tensor>& bias_ih, const std::optional<at::Tensor>& bias_hh,
    c10::string_view activation, int64_t cells_per_block, bool gate_feedback);
void online_update_by_ops(const at::Tensor& trace_ih, const at::Tensor& trace_hh,
                          const at::Tensor& trace_bias, const at::Tensor& target_weight_ih,
                          const at::Tensor& target_weight_hh, const at::Tensor& target_bias_ih,
                          const at::Tensor& target_bias_hh,
                          const std::optional<at::Tensor>& grad_output,
                          const at::Tensor& step_input, const at::Tensor& previous,
                          const at::Tensor& squashed_state, const at::Tensor& gates, double alpha,
                          c10::string_view activation, int64_t cells_per_block,
                          bool gate_feedback);

namespace cpu {
// Gate or trace rows per task of the CPU's online loops: enough values that a task outweighs its
// hand-off (as at::parallel_for's users in ATen size theirs).
inline int64_t row_grain(int64_t values_per_row) {
  return values_per_row >= 32768 ? 1 : 32768 / (values_per_row < 1 ? 1 : values_per_row);
}

// The CPU's trace pass: every trace row read and written once (float and double; other dtypes
// take the ATen pass).
void online_trace_pass(TracePass& pass);
}  // namespace cpu

}  // namespace lstm1997
